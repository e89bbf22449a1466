"""Issue 17, first step: the pre/post table of any filter combination, computed on request
(`analytics.read.outcomes.prepost_slice`) with the same `prepost` as the stored res_prepost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.read.filters import Filters
from tests.analytics_fixture import demo_warehouse

NUM = ["n", "mean_pre", "mean_post", "diff", "diff_ci_low", "diff_ci_high", "p", "p_fdr",
       "hedges_g", "hedges_g_ci_low", "hedges_g_ci_high", "p_fdr_table", "diff_ci_low_cr2",
       "diff_ci_high_cr2", "p_cr2"]


@pytest.fixture(scope="module")
def cur():
    from analytics.read import cache
    from etl.warehouse import Reader

    cache.clear_cache()
    reader = Reader(demo_warehouse())
    yield reader.cursor()


def _same(a: pd.DataFrame, b: pd.DataFrame, skip: tuple[str, ...] = ()) -> None:
    key = ["instrument", "scale"]
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)
    assert list(a.instrument) == list(b.instrument) and list(a.scale) == list(b.scale)
    assert list(a.suppressed.astype(bool)) == list(b.suppressed.astype(bool))
    for c in (c for c in NUM if c not in skip):
        x, y = a[c].to_numpy(float), b[c].to_numpy(float)
        assert np.array_equal(np.isnan(x), np.isnan(y)), c
        np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=1e-9, atol=1e-9,
                                   err_msg=c)


def _same_shown(got: pd.DataFrame, want: pd.DataFrame, hidden: set,
                key: tuple[str, ...] = ("instrument", "scale")) -> None:
    """`got` (the read layer's) is `want` (prepost on the raw rows, small-cell rule) where it
    shows a row; it blanks every row `want` blanks, and beside them only rows whose (instrument,
    scale) the differencing rule hides (`hidden`; tested in tests/test_differencing.py), plus
    at most the one complement the secondary step adds beside them. Rows are keyed by `key`."""
    key = list(key)
    if "group" in key:
        got, want = (d.assign(group=d["group"].astype(str)) for d in (got, want))
    g = got.set_index(key).suppressed.astype(bool)
    w = want.set_index(key).suppressed.astype(bool)
    assert set(g.index) == set(w.index)
    assert not (w & ~g.reindex(w.index)).any()
    extra = {k for k in g.index if g[k] and not w[k]}
    assert len(extra - hidden) <= (1 if extra & hidden else 0), (extra, hidden)
    shown = [k for k in g.index if not g[k]]
    for k in {k[2:] for k in shown} if "group" in key else [()]:
        rows = [r for r in shown if r[2:] == k]
        pick = lambda d: d.set_index(key).loc[rows].reset_index()  # noqa: E731, B023
        _same(pick(got), pick(want))


def _raw(cur) -> pd.DataFrame:
    """Scores with the filter columns, straight from the loaded tables."""
    return cur.execute("""
        SELECT s.participant, s.exchange_id, s.instrument, s.scale, s.wave, s.score,
               p.role, coalesce(p.comparison, FALSE) AS comparison, i.cluster_id AS cluster,
               i.country, x.program, x.modality, x.setting
        FROM res_scale_scores s JOIN participants p ON p.participant_id = s.participant
        JOIN institutions i USING (institution_id) JOIN exchanges x USING (exchange_id)
        WHERE s.wave IN ('pre', 'post')""").df()


def test_computed_equals_the_stored_table_where_both_exist(cur):
    from analytics.read import outcomes

    raw = _raw(cur)
    picks = [Filters()] + [Filters(**{g: (str(raw[g].dropna().iloc[0]),)})
                           for g in ("cluster", "country", "modality", "setting")]
    for f in picks:
        stored = outcomes.prepost_slice(cur, f)
        assert len(stored), f
        # p_fdr_table's family is the whole stored table of a grouping (every group); a slice's
        # family is its own rows, so it matches the stored one only overall
        _same(outcomes._prepost_computed(cur, f), stored,
              skip=() if f == Filters() else ("p_fdr_table",))


def test_random_combinations_equal_prepost_on_the_raw_rows(cur):
    """Where the on-request table shows a row it is `prepost` on the raw rows; the rows it
    hides beside the small ones are the differencing rule's (issue 14)."""
    from analytics.read import disclosure, outcomes
    from analytics.stats.prepost import prepost
    from analytics.suppression import MIN_CELL

    raw = _raw(cur)
    raw = raw[~raw.comparison.astype(bool)]
    rng = np.random.default_rng(17)
    dims = ["program", "cluster", "country", "modality", "setting", "role"]
    checked = 0
    for _ in range(8):
        chosen = rng.choice(dims, size=rng.integers(2, 4), replace=False)
        kw = {}
        for d in chosen:
            vals = sorted(raw[d].dropna().astype(str).unique())
            kw[d] = tuple(rng.choice(vals, size=min(len(vals), rng.integers(1, 3)),
                                     replace=False))
        f = Filters(**{k: tuple(sorted(v)) for k, v in kw.items()})
        mine = raw
        for d, v in kw.items():
            mine = mine[mine[d].astype(str).isin(v)]
        got = outcomes.prepost_slice(cur, f)
        if not len(mine):
            assert not len(got) or got.suppressed.all()
            continue
        want = prepost(mine, participant="participant", exchange="exchange_id",
                       cluster="exchange_id", k=MIN_CELL)
        rule = disclosure.isolating_gains(cur, f)
        _same_shown(got, want.assign(suppressed=want.suppressed != ""),
                    {(a, b) for a, b, _, c in rule.cell if not c})
        by = str(rng.choice(["cluster", "country", "modality", "setting"]))
        got = outcomes.prepost_slice(cur, f, by)
        want = prepost(mine, participant="participant", exchange="exchange_id",
                       cluster="exchange_id", by=by, k=MIN_CELL)
        want = want[want.group_by == by]
        rule = disclosure.isolating_gains(cur, f, by)
        _same_shown(got, want.assign(suppressed=want.suppressed != ""),
                    {(a, b, grp) for a, b, grp, c in rule.cell if not c},
                    ("instrument", "scale", "group"))
        assert set(got.group) == set(want.group)
        checked += 1
    assert checked >= 3


def test_a_combination_under_k_is_suppressed(cur):
    from analytics.read import outcomes
    from analytics.suppression import MIN_CELL

    raw = _raw(cur)
    raw = raw[~raw.comparison.astype(bool)]
    n = raw.groupby("exchange_id").participant.nunique()
    small = n[n < MIN_CELL]
    # The demo plants exchanges under k; without one this test would check nothing.
    assert len(small), "the demo has no exchange under k"
    ex = small.index[0]
    got = outcomes.prepost_slice(cur, Filters(exchange=(str(ex),)))
    assert len(got) and got.suppressed.all()
    assert got.hedges_g.isna().all() and got.n.isna().all()
