"""Scale scoring: reverse coding, missing items, the minimum-items rule, unknown items.

Every rule runs on the production path (SQL in the derive step, over a `responses` table made
from the warehouse schema) and on its oracle (`tests/scoring_oracle.py`).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.derive import materialise
from analytics.stats.scales import OUTPUT_COLUMNS
from etl import schema
from surveys import Instrument, Scale, load_instruments
from tests.scoring_oracle import score_scales as oracle_scores

INST = {"t": Instrument("t", 1, "test", (
    Scale("a", "A", ("a1", "a2", "a3", "a4"), ("a3",), 1.0, 5.0, 3),
    Scale("b", "B", ("b1", "b2"), (), 0.0, 10.0, 1),
))}


def sql_scores(responses: pd.DataFrame, instruments: dict) -> pd.DataFrame:
    """The derive step's scoring, on `responses` put in a warehouse-shaped table."""
    with duckdb.connect() as con:
        con.execute(schema.ddl(schema.RESPONSES))
        con.register("answers", responses)
        con.execute(f"INSERT INTO {schema.RESPONSES.name} "
                    "(participant_id, exchange_id, wave, item, value) "
                    "SELECT participant_id, exchange_id, wave, item, value FROM answers")
        materialise._load_items(con, instruments)
        table = materialise._sql_scale_scores(con, None)
        return con.execute(f"SELECT * FROM {table}").df()


@pytest.fixture(params=[sql_scores, oracle_scores], ids=["sql", "oracle"])
def score_scales(request):
    return request.param


def long(rows: list[tuple[str, str, str, float | None]], exchange: str = "e1") -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["participant_id", "wave", "item", "value"]).assign(
        exchange_id=exchange)


def one(out: pd.DataFrame, participant: str, wave: str, scale: str) -> pd.Series:
    r = out[(out.participant == participant) & (out.wave == wave) & (out.scale == scale)]
    assert len(r) == 1
    return r.iloc[0]


def test_reverse_coding_is_min_plus_max_minus_x(score_scales):
    out = score_scales(long([("p", "pre", "a1", 5), ("p", "pre", "a2", 5), ("p", "pre", "a3", 1),
                             ("p", "pre", "a4", 5)]), INST)
    assert list(out.columns) == OUTPUT_COLUMNS
    r = one(out, "p", "pre", "a")
    assert r.score == 5.0  # a3 = 1 reversed on 1..5 is 5
    assert r.n_items_answered == 4


def test_score_is_mean_of_answered_items(score_scales):
    out = score_scales(long([("p", "pre", "a1", 4), ("p", "pre", "a2", 2), ("p", "pre", "a3", 5),
                             ("p", "pre", "a4", None)]), INST)
    r = one(out, "p", "pre", "a")
    assert r.n_items_answered == 3
    assert r.score == pytest.approx((4 + 2 + 1) / 3)


def test_min_items_rule_keeps_row_with_nan_score(score_scales):
    out = score_scales(long([("p", "pre", "a1", 4), ("p", "pre", "a2", 2),
                             ("q", "pre", "b1", 7)]), INST)
    r = one(out, "p", "pre", "a")
    assert np.isnan(r.score) and r.n_items_answered == 2  # 2 < min_items = 3
    assert one(out, "q", "pre", "b").score == 7.0  # min_items 1 on a 0..10 scale


def test_unknown_items_ignored_and_waves_exchanges_kept_apart(score_scales):
    d = pd.concat([
        long([("p", "pre", "b1", 2), ("p", "pre", "zz_9", 99), ("p", "post", "b1", 6)]),
        long([("p", "pre", "b1", 10)], exchange="e2"),
    ])
    out = score_scales(d, INST)
    assert len(out) == 3
    assert set(out.scale) == {"b"}
    by = out.set_index(["exchange_id", "wave"]).score
    assert by[("e1", "pre")] == 2 and by[("e1", "post")] == 6 and by[("e2", "pre")] == 10


def test_an_answer_out_of_its_scale_range_is_refused_with_the_item(score_scales):
    with pytest.raises(ValueError, match=r"1 answer\(s\) .* item 'a1' = 6 \(range 1..5\)"):
        score_scales(long([("p", "pre", "a1", 6), ("p", "pre", "a2", 3)]), INST)


def test_the_oracle_names_a_missing_column():
    with pytest.raises(ValueError, match="no column"):
        oracle_scores(long([("p", "pre", "a1", 3)]).drop(columns="wave"), INST)


def test_shipped_instruments_and_vectorised_path_agree_with_a_plain_loop(score_scales):
    inst = load_instruments()
    rng = np.random.default_rng(3)
    items = [(i.id, s, it) for i in inst.values() for s in i.scales for it in s.items]
    rows = []
    for p in range(40):
        for w in ("pre", "post"):
            for _, s, it in items:
                if rng.random() < 0.15:
                    continue
                v = None if rng.random() < 0.1 else float(rng.integers(int(s.min), int(s.max) + 1))
                rows.append((f"p{p}", w, it, v))
    d = long(rows)
    out = score_scales(d, inst).set_index(["participant", "wave", "instrument", "scale"])
    for (p, w, iid, sid), r in out.iterrows():
        s = inst[iid].scale(sid)
        sub = d[(d.participant_id == p) & (d.wave == w) & d["item"].isin(s.items)]
        vals = [s.min + s.max - v if it in s.reverse else v
                for it, v in zip(sub["item"], sub["value"], strict=True) if pd.notna(v)]
        assert r.n_items_answered == len(vals)
        if len(vals) >= s.min_items:
            assert r.score == pytest.approx(np.mean(vals))
        else:
            assert np.isnan(r.score)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a1", "a2", "a3", "a4", "b1", "b2"]),
                          st.one_of(st.none(), st.integers(0, 10))), min_size=1, max_size=12))
def test_scores_stay_in_range_and_follow_the_min_items_rule(answers):
    # keep answers in each item's range: a* on 1..5, b* on 0..10
    rows = [("p", "pre", it, None if v is None else (min(max(v, 1), 5) if it[0] == "a" else v))
            for it, v in answers]
    d = long(rows).drop_duplicates(["participant_id", "wave", "item"])
    out = sql_scores(d, INST)
    key = ["participant", "exchange_id", "wave", "instrument", "scale"]
    pd.testing.assert_frame_equal(
        out.sort_values(key).reset_index(drop=True),
        oracle_scores(d, INST).sort_values(key).reset_index(drop=True),
        check_dtype=False)
    for r in out.itertuples():
        sc = INST["t"].scale(r.scale)
        answered = d[d["item"].isin(sc.items) & d["value"].notna()]
        assert r.n_items_answered == len(answered)
        if r.n_items_answered >= sc.min_items:
            assert sc.min <= r.score <= sc.max
        else:
            assert np.isnan(r.score)


def test_docstring_examples_of_the_analytics_modules_run():
    import doctest

    import analytics.stats.attrition
    import analytics.stats.longitudinal
    import analytics.stats.means
    import analytics.stats.prepost
    import analytics.stats.reliability
    import analytics.stats.survival
    import analytics.suppression

    for mod in (analytics.stats.reliability, analytics.stats.prepost,
                analytics.stats.longitudinal, analytics.stats.attrition, analytics.suppression,
                analytics.stats.means, analytics.stats.survival):
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0, mod.__name__
