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

Not merged here (left for the next steps of issue 16): the random-intercept REML from
per-group XᵀX, Xᵀy, yᵀy, and cluster-robust errors from per-cluster scores. Estimators that
need every value, such as medians and Kaplan–Meier, are computed on the per-person tables,
which fit one node.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from analytics.stats import prepost, reliability

__all__ = ["Moments", "moments", "merge_moments", "pair_moments_by", "merge_pair_moments",
           "merge_counts", "alpha_sums", "merge_alpha_sums", "alpha_from_sums"]

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
