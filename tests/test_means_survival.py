"""The means and survival helpers of `analytics.stats` against the libraries and a hand example.

`welch_difference` works from summaries (the read layer has no raw scores); it must equal scipy's
Welch test on the raw data those summaries come from. Kaplan–Meier is statsmodels' estimate with
R's log(−log) interval added.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from analytics.stats.means import t_interval, welch_difference
from analytics.stats.survival import kaplan_meier, km_median

samples = st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=40).filter(
    lambda v: np.var(v) > 1e-6)


@settings(max_examples=80, deadline=None)
@given(samples, samples)
def test_welch_difference_from_summaries_equals_scipy_on_the_raw_data(a, b) -> None:
    a, b = np.array(a), np.array(b)
    diff, low, high = welch_difference(len(a), a.mean(), a.var(ddof=1),
                                       len(b), b.mean(), b.var(ddof=1))
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(a.mean() - b.mean(), abs=1e-9)
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-9)


def test_t_interval_equals_scipy_per_group() -> None:
    rng = np.random.default_rng(5)
    groups = [rng.normal(3, 1, n) for n in (2, 7, 40)]
    df = pd.DataFrame({"mean": [g.mean() for g in groups], "sd": [g.std(ddof=1) for g in groups],
                       "n": [len(g) for g in groups]})
    out = t_interval(df)
    for g, (_, r) in zip(groups, out.iterrows(), strict=True):
        ci = stats.ttest_1samp(g, 0).confidence_interval(0.95)
        assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-12)


def test_kaplan_meier_interval_is_greenwood_on_the_log_minus_log_scale() -> None:
    # Durations 1, 2+, 3, 3, 4+ (+ = censored). By hand: S(1) = 0.8, Greenwood sum 1/(5·4);
    # S(3) = 0.8/3, sum 1/20 + 2/(3·1). se = √sum / |log S|; CI S^exp(±1.96 se).
    km = kaplan_meier(np.array([1, 2, 3, 3, 4.0]), np.array([1, 0, 1, 1, 0], bool))
    assert km.days.tolist() == [0.0, 1.0, 3.0]
    assert km.at_risk.tolist() == [5, 5, 3] and km.ended.tolist() == [0, 1, 2]
    for row, s, gw in ((1, 0.8, 1 / 20), (2, 0.8 / 3, 1 / 20 + 2 / 3)):
        se = math.sqrt(gw) / abs(math.log(s))
        assert km.survival[row] == pytest.approx(s, rel=1e-12)
        assert km.ci_low[row] == pytest.approx(s ** math.exp(1.96 * se), rel=1e-12)
        assert km.ci_high[row] == pytest.approx(s ** math.exp(-1.96 * se), rel=1e-12)
    assert km_median(km) == 3.0


def test_kaplan_meier_with_nothing_ended_or_everything_ended() -> None:
    none = kaplan_meier(np.array([3.0, 5.0]), np.array([False, False]))
    assert none.survival.tolist() == [1.0] and math.isnan(km_median(none))
    every = kaplan_meier(np.array([2.0, 2.0, 4.0]), np.array([True, True, True]))
    assert every.survival.tolist() == pytest.approx([1.0, 1 / 3, 0.0])
    assert every.ci_low.iloc[-1] == 0.0 and every.ci_high.iloc[-1] == 0.0


def _unlabelled_rows(seed: int) -> pd.DataFrame:
    """Scores of two groups in a few exchanges, some rows without an exchange label."""
    rng = np.random.default_rng(seed)
    n = 40
    labels = rng.choice(["X1", "X2", "X3", "X4"], n).astype(object)
    labels[rng.random(n) < 0.2] = None
    return pd.DataFrame({"g": rng.choice(["a", "b"], n), "exchange_id": labels,
                         "y": rng.integers(4, 21, n) / 4 + rng.normal(0, 0.5, n)})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cr2_means_from_cells_equals_cr2_mean_on_the_rows_with_unlabelled_rows(seed) -> None:
    """The product's rule (README, Statistics): a row without a cluster label is a cluster of
    its own. Cells grouped as SQL's GROUP BY does (every unlabelled row of a group in one
    cell) made `cr2_means` count them as one cluster (e.g. 4 clusters and df 2.60 where the
    rows give 6 and 4.37); the cell's n, sum and sum of squares are all CR2 needs to count
    each row, so it now equals `cr2_mean` on the rows."""
    from analytics.stats.means import cr2_means
    from analytics.stats.prepost import cr2_mean

    rows = _unlabelled_rows(seed)
    assert rows.groupby("g").exchange_id.apply(lambda v: v.isna().sum()).min() >= 2
    cells = rows.groupby(["g", "exchange_id"], dropna=False).y.agg(
        n="size", sum="sum", sumsq=lambda v: float((v * v).sum())).reset_index()
    got = cr2_means(cells, ["g"]).set_index("g")
    for g, d in rows.groupby("g"):
        want = cr2_mean(d.y.to_numpy(), d.exchange_id.to_numpy(object))
        r = got.loc[g]
        assert r["n_clusters"] == want["n_clusters"] == d.exchange_id.nunique() + int(
            d.exchange_id.isna().sum())
        assert r["mean"] == pytest.approx(d.y.mean(), rel=1e-12)
        assert r["sd"] == pytest.approx(d.y.std(ddof=1), rel=1e-10)
        for ours, theirs in (("df_cr2", "diff_df_cr2"), ("ci_low_cr2", "diff_ci_low_cr2"),
                             ("ci_high_cr2", "diff_ci_high_cr2")):
            assert r[ours] == pytest.approx(want[theirs], rel=1e-10), ours


def test_the_pages_comparison_from_cells_counts_unlabelled_rows_as_clusters_of_their_own(
        ) -> None:
    """The filtered participants-minus-comparison gain (`analytics.read.outcomes`) from
    per-arm x exchange cells equals CR2 OLS on the rows, unlabelled rows each a cluster."""
    from analytics.read.outcomes import _comparison_from_cells
    from analytics.stats.comparison import cr2_fit

    rows = _unlabelled_rows(3).assign(comparison=lambda d: d.g == "b", instrument="i",
                                      scale="s")
    cells = rows.groupby(["instrument", "scale", "comparison", "exchange_id"], dropna=False
                         ).y.agg(n="size", sum="sum",
                                 sumsq=lambda v: float((v * v).sum())).reset_index()
    got = _comparison_from_cells(cells).iloc[0]
    X = np.column_stack([np.ones(len(rows)), ~rows.comparison]).astype(float)
    want = cr2_fit(X, rows.y.to_numpy(), rows.exchange_id.to_numpy(object)).test([0.0, 1.0])
    assert got["n_clusters"] == want["n_clusters"]
    for c in ("se_cr2", "df_cr2", "ci_low_cr2", "ci_high_cr2", "p_cr2"):
        assert got[c] == pytest.approx(want[c], rel=1e-10), c
