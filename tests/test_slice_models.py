"""Issue 17: the mixed model, the raw/adjusted comparison and the baseline balance of any filter
combination, computed on request (`analytics.read.slices`) with the derive step's functions.

Where the stored table exists (the unfiltered view) the on-request computation equals it to
1e-9; for seeded random combinations (date ranges included) it equals the derive step's
functions on rows selected in pandas from the loaded tables (`_raw`, `_select`: the oracle of
the scope, written without the day facts); a combination under k is suppressed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.read import disclosure
from analytics.read.filters import Filters
from tests.analytics_fixture import demo_warehouse

MODEL_NUM = ["estimate", "se", "ci_low", "ci_high", "p", "n_participants", "n_obs"]
CMP_NUM = ["n_participant", "n_comparison", "estimate", "se_cr2", "df_cr2", "ci_low_cr2",
           "ci_high_cr2", "p_cr2", "n_clusters"]
BAL_NUM = ["n_participant", "n_comparison", "value_participant", "value_comparison",
           "sd_participant", "sd_comparison", "smd"]


@pytest.fixture(scope="module")
def cur():
    from analytics.read import cache
    from etl.warehouse import Reader

    cache.clear_cache()
    reader = Reader(demo_warehouse())
    yield reader.cursor()


def _close(a: pd.DataFrame, b: pd.DataFrame, key: list[str], num: list[str], what: str) -> None:
    """Same rows (by `key`), same suppression, numbers equal to 1e-9 (NaN where NaN)."""
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b), (what, len(a), len(b))
    for c in key:
        assert list(a[c].astype("string").fillna("")) == list(b[c].astype("string").fillna("")), \
            (what, c)
    sa = a.suppressed.astype("string").fillna("").isin(["", "False"]).to_numpy()
    sb = b.suppressed.astype("string").fillna("").isin(["", "False"]).to_numpy()
    assert list(sa) == list(sb), (what, "suppressed")
    for c in num:
        x = pd.to_numeric(a[c], errors="coerce").to_numpy(float)
        y = pd.to_numeric(b[c], errors="coerce").to_numpy(float)
        assert np.array_equal(np.isnan(x), np.isnan(y)), (what, c)
        np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=1e-9, atol=1e-9,
                                   err_msg=f"{what}: {c}")


def test_on_request_equals_the_stored_tables_for_the_unfiltered_view(cur):
    from analytics.read import outcomes, slices
    from etl import schema

    f = Filters()
    stored = outcomes.longitudinal(cur)
    assert len(stored) and stored.estimate.notna().any()
    computed = slices._longitudinal_computed(cur, f)
    _close(computed, stored, ["instrument", "scale", "term"], MODEL_NUM, "model")
    assert slices.longitudinal_slice(cur, f).equals(stored)  # the stored table answers

    cmp_, bal = slices._compare(cur, f)
    stored_cmp, stored_bal = outcomes.comparison_results(cur), outcomes.balance(cur)
    assert len(stored_cmp) and len(stored_bal)
    _close(slices._reread(cmp_, schema.RES_COMPARISON, ["n_participant", "n_comparison"]),
           stored_cmp, ["instrument", "scale", "method"], CMP_NUM, "comparison")
    _close(slices._reread(bal, schema.RES_BALANCE, ["n_participant", "n_comparison"]),
           stored_bal, ["covariate", "instrument", "scale", "level"], BAL_NUM, "balance")


# ---- the oracle: rows selected in pandas from the loaded tables ------------------------------

def _band(age: pd.Series) -> pd.Series:
    bands = np.select([age <= 12, age <= 15, age <= 18, age <= 24],
                      ["12 or under", "13–15", "16–18", "19–24"], "25 or over")
    return pd.Series(bands, index=age.index).where(age.notna(), "not reported")


def _text(s: pd.Series) -> pd.Series:
    s = s.astype("object").where(s.notna(), "").astype(str).str.strip()
    return s.where(s != "", "not reported")


def _raw(cur) -> pd.DataFrame:
    d = cur.execute("""
        SELECT s.participant, s.exchange_id, s.wave, s.instrument, s.scale, s.score,
               x.modality, x.cluster_id AS network, p.comparison AS is_comparison, p.role,
               p.gender, p.birth_year, year(x.start_date) AS start_year, i.income_group,
               i.connectivity, i.kind, i.cluster_id AS cluster, i.country, x.program, x.setting
        FROM res_scale_scores s JOIN participants p ON p.participant_id = s.participant
        JOIN institutions i USING (institution_id) JOIN exchanges x USING (exchange_id)
        WHERE s.score IS NOT NULL""").df()
    d["is_comparison"] = d["is_comparison"].fillna(False).astype(bool)
    age = (pd.to_numeric(d.pop("start_year"), errors="coerce")
           - pd.to_numeric(d.pop("birth_year"), errors="coerce"))
    d["age_band"] = _band(age)
    d["gender"] = _text(d["gender"])
    d["institution_kind"] = _text(d.pop("kind"))
    for c in ("income_group", "connectivity"):
        d[c] = _text(d[c])
    for c in ("age_band", "income_group", "connectivity", "institution_kind"):
        d[c] = pd.Categorical(d[c].to_numpy(object))
    return d


def _seen(cur) -> pd.DataFrame:
    """(participant, exchange_id, UTC day) of every event and answer."""
    return cur.execute("""
        SELECT participant_id AS participant, exchange_id,
               CAST(occurred_at AT TIME ZONE 'UTC' AS DATE) AS day FROM events
        UNION
        SELECT participant_id, exchange_id, CAST(submitted_at AT TIME ZONE 'UTC' AS DATE)
        FROM responses""").df()


_EXCHANGE_DIMS = ("program", "modality", "setting")


def _select(raw: pd.DataFrame, seen: pd.DataFrame, kw: dict) -> pd.DataFrame:
    """The rows of the people the filters `kw` keep, in the exchanges they keep."""
    d = raw
    for dim in ("program", "modality", "setting", "cluster", "country", "role"):
        if dim in kw:
            d = d[d[dim].astype(str).isin(kw[dim])]
    if any(k in kw for k in _EXCHANGE_DIMS) or "start" in kw:
        ex = raw.drop_duplicates("exchange_id")
        for dim in _EXCHANGE_DIMS:
            if dim in kw:
                ex = ex[ex[dim].astype(str).isin(kw[dim])]
        s = seen[seen.exchange_id.isin(set(ex.exchange_id))]
        if "start" in kw:
            day = pd.to_datetime(s["day"]).dt.date
            s = s[(day >= kw["start"]) & (day <= kw["end"])]
        d = d[d.participant.isin(set(s.participant))]
    return d


def _oracle(d: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from analytics.derive import materialise as m
    from analytics.read import slices
    from analytics.suppression import MIN_CELL
    from etl import schema

    both = bool(d.is_comparison.any() and (~d.is_comparison).any())
    groups = [g for _, g in d.groupby(["instrument", "scale"], sort=True)]
    model = pd.concat([m._longitudinal(g, MIN_CELL, has_comparison=both)[0] for g in groups],
                      ignore_index=True)
    if not both:
        return model, pd.DataFrame(), pd.DataFrame()
    parts = [m._compare_scale(g, MIN_CELL) for g in groups]
    attrs = d.drop_duplicates(["participant", "exchange_id"])
    bal = m._balance_combine([p[0] for p in parts], [p[2] for p in parts], attrs, MIN_CELL)
    cmp_ = pd.concat([p[1] for p in parts], ignore_index=True)
    n = ["n_participant", "n_comparison"]
    return (model, slices._reread(cmp_, schema.RES_COMPARISON, n),
            slices._reread(bal, schema.RES_BALANCE, n))


def test_random_combinations_equal_the_derive_functions_on_the_raw_rows(cur):
    from analytics.read import slices

    raw, seen = _raw(cur), _seen(cur)
    lo, hi = pd.to_datetime(seen["day"]).min().date(), pd.to_datetime(seen["day"]).max().date()
    rng = np.random.default_rng(1717)
    dims = ["program", "cluster", "country", "modality", "setting", "role"]
    checked = dated = with_comparison = 0
    for _ in range(6):
        kw: dict = {}
        for dim in rng.choice(dims, size=rng.integers(1, 3), replace=False):
            vals = sorted(raw[dim].dropna().astype(str).unique())
            kw[dim] = tuple(sorted(rng.choice(vals, size=min(len(vals), 2), replace=False)))
        if rng.random() < 0.5:
            span = (hi - lo).days
            kw["start"] = lo + pd.Timedelta(days=int(rng.integers(0, span // 2)))
            kw["end"] = kw["start"] + pd.Timedelta(days=int(rng.integers(60, span)))
        f = Filters(**kw)
        d = _select(raw, seen, kw)
        got_model = slices.longitudinal_slice(cur, f)
        if not len(d):
            assert not len(got_model)
            continue
        want_model, want_cmp, want_bal = _oracle(d)
        # the differencing rule (issue 14, tested in test_differencing) blanks the same scales
        # whichever way the table was computed
        scores = slices._isolated_scales(disclosure.isolating_scores(cur, f))
        want_model = slices._difference_hidden(want_model, *scores)
        want_cmp = slices._difference_hidden(
            want_cmp, *slices._isolated_scales(disclosure.isolating_gains(cur, f)))
        want_bal = slices.balance_hidden(cur, f, want_bal)
        _close(got_model, want_model, ["instrument", "scale", "term"], MODEL_NUM, f"model {kw}")
        got_cmp, got_bal = slices.comparison_slice(cur, f), slices.balance_slice(cur, f)
        if len(want_cmp):
            with_comparison += 1
            _close(got_cmp, want_cmp, ["instrument", "scale", "method"], CMP_NUM, f"cmp {kw}")
            _close(got_bal, want_bal, ["covariate", "instrument", "scale", "level"], BAL_NUM,
                   f"balance {kw}")
        else:
            assert not len(got_cmp) and not len(got_bal)
        # one scale alone is that scale's rows of the whole fit
        one = f"{got_model.instrument.iloc[0]}/{got_model.scale.iloc[0]}"
        alone = slices.longitudinal_slice(cur, f, one)
        mine = got_model[(got_model.instrument + "/" + got_model.scale) == one]
        _close(alone, mine, ["instrument", "scale", "term"], MODEL_NUM, f"one scale {kw}")
        checked += 1
        dated += "start" in kw
    assert checked >= 4 and dated >= 1 and with_comparison >= 1, (checked, dated,
                                                                   with_comparison)


def test_a_combination_under_k_is_suppressed(cur):
    from analytics.read import slices
    from analytics.suppression import MIN_CELL, reason

    raw = _raw(cur)
    n = raw[~raw.is_comparison].groupby("exchange_id").participant.nunique()
    small = n[n < MIN_CELL]
    assert len(small), "the demo has no exchange under k"
    f = Filters(exchange=(str(small.index[0]),))
    got = slices.longitudinal_slice(cur, f)
    assert len(got)
    assert got.estimate.isna().all(), "a model on fewer than k participants shows a number"
    shown = got[got.suppressed.astype(str) != ""]
    assert len(shown) and set(shown.suppressed.astype(str)) == {reason(MIN_CELL)}
    cmp_ = slices.comparison_slice(cur, f)
    assert not len(cmp_) or (cmp_.suppressed.all() and cmp_.estimate.isna().all())
