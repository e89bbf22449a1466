"""Statistics from per-partition sufficient statistics, merged (issue 16).

At agency scale the derive step runs per partition (a day of events, a program), on a cluster.
The statistics still have to be the single-pass ones. Each estimator here has summaries that
each partition computes alone, a merge that is exact, and the statistic from the merged
summaries:

- **paired change** (`analytics.stats.prepost.change_from_moments`: t, its CI, d_z, d_av,
  Hedges' g with its intervals, and the CR2 columns by cluster): per cluster, the pair moments
  (n, means, sums of squared deviations m2, co-deviation of pre and post). They are merged with
  Chan, Golub & LeVeque's pairwise update (`merge_pair_moments`):
  `m2 = m2_a + m2_b + δ² n_a n_b / n`, numerically stable. The Wilcoxon test needs the rank of
  every difference: the rounded differences' counts are merged by adding them
  (`merge_counts`), which is exact because scale scores take few values.
- **Welch's difference of two means** (`analytics.stats.means.welch_difference`): each arm's
  (n, mean, m2), merged the same way (`merge_moments`).
- **Cronbach's α** (`analytics.stats.reliability.cronbach_alpha`, pairwise-complete covariance
  as pingouin and psych): per pair of items, the count of rows that answer both, their sums and
  their sum of products (`alpha_sums`). Sums add exactly, and integer answers keep them exact
  in floating point; `alpha_from_sums` then gives α and Feldt's CI.
- **The random-intercept REML model** (`analytics.stats.longitudinal.fit_random_intercept`):
  per group (participant) g its rows n_g, summed design rows S_g = X_g'1 and summed score
  t_g = 1'y_g, and over every row X'X, X'y, y'y (`group_sums`). The likelihood needs no
  per-group X_g'X_g, only their total. The merge adds the totals and adds n, S and t of the
  same group key across partitions (`merge_group_sums`); t_g^2 is taken only after the merge,
  since a split group's partial sums do not square-add. `random_intercept_from_sums` then fits
  through the product's own code (`longitudinal._size_blocks`, `_ri_fit`), both SE methods.
- **OLS with cluster-robust errors**: per cluster (exchange) c its n_c, X_c'X_c, X_c'y_c and
  y_c'y_c (`cluster_sums`), added by cluster key (`merge_cluster_sums`; a row without a label
  stays a cluster of its own). The product's estimator is CR2 with Satterthwaite df
  (`analytics.stats.comparison.cr2_fit`, used by the ANCOVA, dose, equity, moderation and
  scheduling tables): its adjustment A_c = (I - X_c M X_c')^(-1/2) needs the per-cluster hat
  block, yet every term of the estimate, the covariance and the df depends on a cluster's rows
  only through X_c'X_c and the score X_c'e_c = X_c'y_c - X_c'X_c beta (`comparison`'s module
  docstring), so `cr2_from_sums` is exact through `comparison.cr2_from_cells`, the function
  `ancova_cells` already feeds from cell moments; neither rows nor design cells are needed.
  `cr1_from_sums` gives statsmodels' ``cov_type="cluster"`` (CR1, factor G/(G-1) (N-1)/(N-p))
  from the same sums.

Not merged here: the two-level model (`fit_nested_intercepts`, participants within
exchanges). Its likelihood needs the same per-unit sums (keyed by participant x exchange, each
with its exchange), so they would merge the same way, but the product's nested fit takes sums
only as `UnitTypes` (design cells, not X'X and per-unit S), so its core would first have to be
split out as `_ri_fit` is; until then it is fitted as before (`longitudinal_model`, or
`longitudinal_model_types` from one GROUP BY). Weighted fits (the IPW row of
`analytics.stats.sensitivity`) would merge with X_c'WX_c and X_c'Wy_c; not wired here.
Estimators that need every value, such as medians and Kaplan–Meier, are computed on the
per-person tables, which fit one node.

Exact here means equal to the single pass up to rounding (tests: 1e-9 relative). The decisions
that used to turn on rounding are now made from the sums themselves, so both routes make them
alike: a REML participant variance on its boundary of 0 (the sign of the likelihood's
derivative there), a residual variance of 0 (refused, `longitudinal._refuse_no_residual`) and a
CR2 variance of 0 (not estimable, `comparison.Cr2Fit.test`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.stats import comparison, longitudinal, prepost, reliability

__all__ = ["Moments", "moments", "merge_moments", "pair_moments_by", "merge_pair_moments",
           "merge_counts", "alpha_sums", "merge_alpha_sums", "alpha_from_sums",
           "GroupSums", "group_sums", "merge_group_sums", "random_intercept_from_sums",
           "ClusterSums", "cluster_sums", "merge_cluster_sums", "cr2_from_sums",
           "cr1_from_sums"]

Moments = tuple[float, float, float]  # n, mean, m2 (sum of squared deviations)


def moments(x: np.ndarray) -> Moments:
    """(n, mean, m2) of the non-missing values of `x`."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return 0.0, math.nan, 0.0
    mean = float(x.mean())
    return float(len(x)), mean, float(((x - mean) ** 2).sum())


def merge_moments(parts: Iterable[Moments]) -> Moments:
    """The moments of the union of the parts (Chan, Golub & LeVeque's update)."""
    n, mean, m2 = 0.0, math.nan, 0.0
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        if n == 0:
            n, mean, m2 = nb, mb, m2b
            continue
        total = n + nb
        delta = mb - mean
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    return n, mean, m2


def pair_moments_by(pre: np.ndarray, post: np.ndarray, cluster: np.ndarray) -> pd.DataFrame:
    """The pair moments (`prepost.MOMENTS`) of one partition's complete pairs, one row per
    cluster label (index)."""
    pre, post = np.asarray(pre, dtype=float), np.asarray(post, dtype=float)
    ok = ~(np.isnan(pre) | np.isnan(post))
    labels, codes = np.unique(np.asarray(cluster)[ok], return_inverse=True)
    m = prepost.pair_moments(pre[ok], post[ok], codes.astype(np.int64))
    return pd.DataFrame({k: np.asarray(m[k])[:len(labels)] for k in prepost.MOMENTS},
                        index=pd.Index(labels, name="cluster"))


def merge_pair_moments(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The per-cluster pair moments of the union of partitions (`pair_moments_by` each): the
    same cluster in several partitions is merged with the pairwise update; the co-deviation
    of pre and post merges as m2 does, with the product of the two means' deltas."""
    merged: dict[object, dict[str, float]] = {}
    for part in parts:
        for label, r in part.iterrows():
            b = {k: float(r[k]) for k in prepost.MOMENTS}
            if b["n"] == 0:
                continue
            a = merged.get(label)
            if a is None:
                merged[label] = b
                continue
            n = a["n"] + b["n"]
            w = a["n"] * b["n"] / n
            d = {k: b[f"mean_{k}"] - a[f"mean_{k}"] for k in ("pre", "post", "diff")}
            out = {"n": n}
            for k in ("pre", "post", "diff"):
                out[f"mean_{k}"] = a[f"mean_{k}"] + d[k] * b["n"] / n
                out[f"m2_{k}"] = a[f"m2_{k}"] + b[f"m2_{k}"] + d[k] * d[k] * w
            out["c_prepost"] = a["c_prepost"] + b["c_prepost"] + d["pre"] * d["post"] * w
            merged[label] = out
    labels = sorted(merged, key=str)
    return pd.DataFrame([merged[k] for k in labels], index=pd.Index(labels, name="cluster"),
                        columns=prepost.MOMENTS)


def merge_counts(parts: Iterable[Mapping[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The value counts of the union (e.g. the rounded differences of a Wilcoxon test), as
    sorted (values, counts)."""
    total: dict[float, int] = {}
    for part in parts:
        for v, c in part.items():
            total[float(v)] = total.get(float(v), 0) + int(c)
    values = np.array(sorted(total), dtype=float)
    return values, np.array([total[v] for v in values], dtype=np.int64)


def alpha_sums(wide: pd.DataFrame) -> dict[str, np.ndarray | int]:
    """One partition's sums for Cronbach's α with pairwise deletion: for items i, j, the rows
    answering both (`n`), the sum of item i's answers over them (`s`, i by row, j by column)
    and the sum of products (`sxy`); `rows`: rows answering at least one item."""
    w = wide.dropna(how="all").astype(float).to_numpy()
    present = ~np.isnan(w)
    x = np.where(present, w, 0.0)
    p = present.astype(float)
    return {"n": p.T @ p, "s": x.T @ p, "sxy": x.T @ x, "rows": int(len(w))}


def merge_alpha_sums(parts: Iterable[dict[str, np.ndarray | int]]) -> dict[str, np.ndarray | int]:
    """The sums of the union of partitions: they add."""
    out: dict[str, np.ndarray | int] | None = None
    for part in parts:
        out = dict(part) if out is None else {k: out[k] + part[k] for k in out}
    if out is None:
        raise ValueError("no partition")
    return out


def alpha_from_sums(sums: Mapping[str, np.ndarray | int], *, ci: float = 0.95
                    ) -> tuple[float, float, float, int]:
    """`reliability.cronbach_alpha` from merged `alpha_sums`: the pairwise-complete covariance
    C_ij = (Σx_i x_j − Σx_i Σx_j / n_ij) / (n_ij − 1), then α and Feldt's CI."""
    n = np.asarray(sums["n"], dtype=float)
    s = np.asarray(sums["s"], dtype=float)
    sxy = np.asarray(sums["sxy"], dtype=float)
    rows = int(sums["rows"])
    k = n.shape[0]
    nan = float("nan")
    if k < 2 or rows < 2:
        return nan, nan, nan, rows
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (sxy - s * s.T / n) / (n - 1)
    a, lo, hi = reliability._alpha_feldt(cov, rows, ci)
    return a, lo, hi, rows


def _add_by_code(codes: np.ndarray, size: int, values: np.ndarray) -> np.ndarray:
    """Sum the rows of `values` (any trailing shape) that share a code 0..size-1."""
    values = np.asarray(values, dtype=float)
    flat = values.reshape(len(values), math.prod(values.shape[1:]))
    out = np.zeros((size, flat.shape[1]))
    for j in range(flat.shape[1]):
        out[:, j] = np.bincount(codes, weights=flat[:, j], minlength=size)
    return out.reshape((size, *values.shape[1:]))


def _checked_rows(y: np.ndarray, X: np.ndarray, labels: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y and X as finite floats and one label per row, or ValueError."""
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    labels = np.asarray(labels, dtype=object)
    if X.ndim != 2 or y.ndim != 1 or labels.ndim != 1 or not len(X) == len(y) == len(labels):
        raise ValueError("y (N,), X (N, p) and the labels (N,) must have matching lengths")
    if not (np.isfinite(y).all() and np.isfinite(X).all()):
        raise ValueError("y and X must be finite; drop missing values first")
    return y, X, labels


@dataclass(frozen=True)
class GroupSums:
    """What the REML fit of ``y ~ X + (1 | group)`` needs from some rows (`group_sums`): per
    group, its rows n_g, its summed design rows S_g = X_g'1 and summed score t_g = 1'y_g; over
    every row, X'X, X'y and y'y. Per-group X_g'X_g are not kept: the likelihood uses only
    their total (`analytics.stats.longitudinal.fit_random_intercept`'s method)."""

    keys: np.ndarray  # (G,) group labels, distinct
    n: np.ndarray  # (G,) rows per group
    s: np.ndarray  # (G, p) X_g'1
    t: np.ndarray  # (G,) 1'y_g
    xtx: np.ndarray  # (p, p)
    xty: np.ndarray  # (p,)
    yty: float


def group_sums(y: np.ndarray, X: np.ndarray, groups: np.ndarray) -> GroupSums:
    """One partition's `GroupSums`: `groups` holds one label per row (a participant's id),
    the same label in every partition; a partition may hold only part of a group's rows."""
    y, X, groups = _checked_rows(y, X, groups)
    codes, uniq = pd.factorize(groups, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError("every row needs a group label")
    size = len(uniq)
    return GroupSums(keys=np.asarray(uniq, dtype=object),
                     n=np.bincount(codes, minlength=size).astype(float),
                     s=_add_by_code(codes, size, X), t=np.bincount(codes, weights=y,
                                                                    minlength=size),
                     xtx=X.T @ X, xty=X.T @ y, yty=float(y @ y))


def merge_group_sums(parts: Iterable[GroupSums]) -> GroupSums:
    """The `GroupSums` of the union of partitions: totals add, and so do the n, S and t of
    one group key found in several partitions. That is what keeps the merge exact: a group's
    t_g^2 (which the likelihood needs) is taken only after the merge, since the squares of a
    split group's partial sums do not add up to the square of its sum."""
    parts = list(parts)
    if not parts:
        raise ValueError("no partition")
    p = parts[0].xtx.shape[0]
    if any(part.xtx.shape != (p, p) or part.s.shape[1:] != (p,) for part in parts):
        raise ValueError("the partitions' designs must have the same columns")
    codes, uniq = pd.factorize(np.concatenate([part.keys for part in parts]))
    size = len(uniq)
    return GroupSums(keys=np.asarray(uniq, dtype=object),
                     n=_add_by_code(codes, size, np.concatenate([part.n for part in parts])),
                     s=_add_by_code(codes, size, np.concatenate([part.s for part in parts])),
                     t=_add_by_code(codes, size, np.concatenate([part.t for part in parts])),
                     xtx=sum(part.xtx for part in parts), xty=sum(part.xty for part in parts),
                     yty=float(sum(part.yty for part in parts)))


def random_intercept_from_sums(sums: GroupSums, *, names: Sequence[str] | None = None,
                               se_method: str = "conditional"
                               ) -> longitudinal.RandomInterceptFit:
    """`longitudinal.fit_random_intercept` from merged `GroupSums`: the same REML fit
    (coefficients, both SE methods, variance components, likelihood) as on the rows, through
    the product's own code (`_size_blocks`, `_ri_fit`); `residual` is empty. The input checks
    repeat those `longitudinal._checked_types` makes on the sums of unit types; scores with no
    residual variance left (reproduced by the fixed effects, or by them and a participant
    intercept) are refused by `_ri_fit` itself (`longitudinal._refuse_no_residual`), with the
    one threshold of every route.

    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(40), 3)
    >>> X = np.column_stack([np.ones(120), np.tile([0.0, 1.0, 1.0], 40)])
    >>> y = 3 + 0.5 * X[:, 1] + rng.normal(0, 1, 40)[g] + rng.normal(0, 0.5, 120)
    >>> parts = [group_sums(y[i::2], X[i::2], g[i::2]) for i in (0, 1)]  # groups split
    >>> f = random_intercept_from_sums(merge_group_sums(parts))
    >>> bool(np.allclose(f.beta, longitudinal.fit_random_intercept(y, X, g).beta, atol=1e-12))
    True
    """
    xtx = np.asarray(sums.xtx, dtype=float)
    xty = np.asarray(sums.xty, dtype=float)
    n = np.asarray(sums.n, dtype=float)
    p = xtx.shape[0]
    N = int(round(float(n.sum())))
    out_names = longitudinal._checked_shape(N, p, names, se_method)
    if not all(np.isfinite(a).all() for a in (xtx, xty, sums.s, sums.t)) or not math.isfinite(
            sums.yty):
        raise ValueError("y and X must be finite; drop missing values first")
    t = np.asarray(sums.t, dtype=float)
    blocks = longitudinal._size_blocks(n, np.ones(len(n)), np.asarray(sums.s, dtype=float),
                                       t, t * t)
    return longitudinal._ri_fit(N, xtx, xty, float(sums.yty), blocks[:5], out_names,
                                se_method, n_groups=len(n))


@dataclass(frozen=True)
class ClusterSums:
    """What OLS with cluster-robust errors needs from some rows (`cluster_sums`), per
    cluster: its rows n_c, X_c'X_c, X_c'y_c and y_c'y_c. A row without a cluster label is a
    cluster of its own (key NaN), as in `analytics.stats.comparison.cr2_fit`."""

    keys: np.ndarray  # (J,) cluster labels; NaN: one unlabelled row
    n: np.ndarray  # (J,)
    xtx: np.ndarray  # (J, p, p)
    xty: np.ndarray  # (J, p)
    yty: np.ndarray  # (J,)


def _labelled_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and keys of `labels`, a missing label a code (and a NaN key) of its own."""
    codes, uniq = pd.factorize(np.asarray(labels, dtype=object), use_na_sentinel=True)
    codes = codes.astype(np.int64)
    miss = codes < 0
    codes[miss] = len(uniq) + np.arange(int(miss.sum()))
    keys = np.concatenate([np.asarray(uniq, dtype=object),
                           np.full(int(miss.sum()), np.nan, dtype=object)])
    return codes, keys


def cluster_sums(y: np.ndarray, X: np.ndarray, cluster: np.ndarray) -> ClusterSums:
    """One partition's `ClusterSums`: `cluster` holds one label per row (the exchange), the
    same label in every partition."""
    y, X, cluster = _checked_rows(y, X, cluster)
    codes, keys = _labelled_codes(cluster)
    size, p = len(keys), X.shape[1]
    # p x p bincounts over the rows: no (N, p, p) array of outer products
    xtx = np.zeros((size, p, p))
    for a in range(p):
        for b in range(a, p):
            xtx[:, a, b] = xtx[:, b, a] = np.bincount(codes, weights=X[:, a] * X[:, b],
                                                      minlength=size)
    return ClusterSums(keys=keys, n=np.bincount(codes, minlength=size).astype(float), xtx=xtx,
                       xty=_add_by_code(codes, size, X * y[:, None]),
                       yty=np.bincount(codes, weights=y * y, minlength=size))


def merge_cluster_sums(parts: Iterable[ClusterSums]) -> ClusterSums:
    """The `ClusterSums` of the union of partitions: the sums of one cluster key found in
    several partitions add (an unlabelled row stays a cluster of its own)."""
    parts = list(parts)
    if not parts:
        raise ValueError("no partition")
    p = parts[0].xty.shape[1]
    if any(part.xty.shape[1:] != (p,) for part in parts):
        raise ValueError("the partitions' designs must have the same columns")
    codes, keys = _labelled_codes(np.concatenate([part.keys for part in parts]))
    size = len(keys)

    def add(field: str) -> np.ndarray:
        return _add_by_code(codes, size, np.concatenate([getattr(part, field)
                                                          for part in parts]))

    return ClusterSums(keys=keys, n=add("n"), xtx=add("xtx"), xty=add("xty"), yty=add("yty"))


def cr2_from_sums(sums: ClusterSums, *, names: Sequence[str] | None = None
                  ) -> comparison.Cr2Fit:
    """The product's cluster-robust OLS (`comparison.cr2_fit`: CR2, and the Satterthwaite df
    of any contrast through `Cr2Fit.test`) from merged `ClusterSums`, through
    `comparison.cr2_from_cells`. Exact: CR2's adjustment and its df depend on a cluster's rows
    only through X_c'X_c and X_c'e_c (`comparison`'s module docstring)."""
    return comparison.cr2_from_cells(sums.xtx, sums.xty, names=names,
                                     n_obs=int(round(float(np.sum(sums.n)))))


def cr1_from_sums(sums: ClusterSums) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and the CR1 cluster-robust covariance from merged `ClusterSums`:
    with M = (X'X)^-1 and each cluster's score s_c = X_c'y_c - X_c'X_c beta,
    V = G/(G-1) (N-1)/(N-p) M (sum_c s_c s_c') M, the small-sample factor of statsmodels'
    ``OLS(...).fit(cov_type="cluster")`` (Stata's ``vce(cluster)``), which
    `analytics.stats.sensitivity` reads from statsmodels. Needs two clusters."""
    xtx_c = np.asarray(sums.xtx, dtype=float)
    xty_c = np.asarray(sums.xty, dtype=float)
    G, p = xty_c.shape
    N = float(np.sum(sums.n))
    if G < 2 or N <= p:
        raise ValueError("CR1 needs two clusters and more rows than coefficients")
    xtx = xtx_c.sum(axis=0)
    if np.linalg.matrix_rank(xtx) < p:
        raise ValueError("the design matrix is rank deficient: drop aliased columns")
    bread = np.linalg.inv(xtx)
    beta = bread @ xty_c.sum(axis=0)
    scores = xty_c - xtx_c @ beta
    vcov = G / (G - 1) * (N - 1) / (N - p) * bread @ (scores.T @ scores) @ bread
    return beta, (vcov + vcov.T) / 2
