"""Issue 16: statistics stay exact at scale. The data are split into k partitions (some empty,
clusters spread over several), each partition's sufficient statistics are computed alone,
merged (`analytics.stats.merge`), and the statistics from the merged summaries equal the
single-pass ones: the paired change with every column (t, CIs, effect sizes, Wilcoxon p, CR2 by
cluster), Welch's difference of two arms, and Cronbach's α with its CI (pairwise deletion)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from analytics.stats import merge, prepost, reliability
from analytics.stats.means import welch_difference


def _close(a: float, b: float) -> bool:
    if isinstance(a, bool | np.bool_) or isinstance(b, bool | np.bool_):
        return bool(a) == bool(b)
    if a is None or b is None:
        return a is b
    a, b = float(a), float(b)
    if a == b:  # equal infinities too (alpha of two respondents can be -inf)
        return True
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _parts(rng: np.random.Generator, n: int, k: int) -> list[np.ndarray]:
    which = rng.integers(0, k, n)
    return [np.flatnonzero(which == j) for j in range(k)]  # some may be empty


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 120), k=st.integers(1, 7))
def test_the_paired_change_from_merged_partitions_equals_the_single_pass(seed, n, k) -> None:
    rng = np.random.default_rng(seed)
    pre = rng.integers(4, 21, n) / 4.0  # scale scores: means of few integer answers (ties)
    post = pre + rng.integers(-4, 9, n) / 4.0
    pre[rng.random(n) < 0.1] = np.nan  # incomplete pairs are dropped on both sides
    cluster = rng.choice([f"X{i}" for i in range(6)], n)
    want = prepost.paired_change(pre, post, cluster=cluster)
    cells, counts = [], []
    for idx in _parts(rng, n, k):
        cells.append(merge.pair_moments_by(pre[idx], post[idx], cluster[idx]))
        ok = ~(np.isnan(pre[idx]) | np.isnan(post[idx]))
        v, c = np.unique(np.round(post[idx][ok] - pre[idx][ok], 10), return_counts=True)
        counts.append(dict(zip(v, c, strict=True)))
    values, freq = merge.merge_counts(counts)
    got = prepost.change_from_moments(merge.merge_pair_moments(cells), values, freq)
    assert set(got) == set(want)
    bad = {key: (got[key], want[key]) for key in want if not _close(got[key], want[key])}
    assert not bad, bad


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 6))
def test_welch_from_merged_moments_equals_scipy_on_the_raw_values(seed, k) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(3.2, 0.9, rng.integers(3, 90)) + 1e6  # far from 0: naive sums would drift
    b = rng.normal(2.9, 1.4, rng.integers(3, 90)) + 1e6
    merged = []
    for x in (a, b):
        merged.append(merge.merge_moments(merge.moments(x[idx]) for idx in _parts(rng, len(x), k)))
    (na, ma, m2a), (nb, mb, m2b) = merged
    got = welch_difference(int(na), ma, m2a / (na - 1), int(nb), mb, m2b / (nb - 1))
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    want = (a.mean() - b.mean(), ci.low, ci.high)
    assert all(abs(g - w) < 1e-8 for g, w in zip(got, want, strict=True)), (got, want)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 150), items=st.integers(2, 7),
       k=st.integers(1, 7))
def test_alpha_from_merged_sums_equals_the_single_pass(seed, n, items, k) -> None:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 1))
    wide = pd.DataFrame(np.clip(np.round(3 + latent + rng.normal(size=(n, items))), 1, 5),
                        columns=[f"i{j}" for j in range(items)])
    wide = wide.mask(rng.random(wide.shape) < 0.15)  # pairwise deletion
    cov = wide.dropna(how="all").cov().to_numpy()
    # alpha divides by the covariances' sum: where it is ~0 (two or three respondents can give
    # exactly 0), any two computations differ by rounding noise blown up; not a merge question
    assume(not np.isfinite(cov.sum()) or abs(cov.sum()) > 1e-9 * np.abs(cov).sum())
    want = reliability.cronbach_alpha(wide)
    parts = [merge.alpha_sums(wide.iloc[idx]) for idx in _parts(rng, n, k)]
    got = merge.alpha_from_sums(merge.merge_alpha_sums(parts))
    assert got[3] == want[3]
    assert all(_close(g, w) for g, w in zip(got[:3], want[:3], strict=True)), (got, want)


def test_the_merge_is_what_makes_it_exact() -> None:
    """Averaging the partitions' statistics instead of merging their sums is wrong: the
    comparison above is not vacuous."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, 50), rng.normal(5, 1, 10)])
    parts = [merge.moments(x[:50]), merge.moments(x[50:])]
    n, _, m2 = merge.merge_moments(parts)
    assert _close(m2 / (n - 1), float(np.var(x, ddof=1)))
    naive = sum(p[2] / (p[0] - 1) for p in parts) / 2
    assert abs(naive - float(np.var(x, ddof=1))) > 1
