"""Means with their intervals: the t-interval of a mean, its cluster-robust (CR2) version from
per-cluster sums, and Welch's difference of two means."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["t_interval", "cr2_means", "unlabelled_rows", "welch_difference"]


def t_interval(df: pd.DataFrame, mean: str = "mean", sd: str = "sd", n: str = "n"
               ) -> pd.DataFrame:
    """`df` with `ci_low`/`ci_high`: the 95% t-interval of the mean, mean ± t(0.975, n−1)·sd/√n
    (R's `t.test(x)$conf.int`); one row per group, from its n, mean and sample SD."""
    df = df.copy()
    nn = df[n].astype("float64")
    se = df[sd].astype("float64") / np.sqrt(nn)
    tcrit = stats.t.ppf(0.975, (nn - 1).clip(lower=1))
    df["ci_low"] = df[mean] - tcrit * se
    df["ci_high"] = df[mean] + tcrit * se
    return df


def welch_difference(na: int, ma: float, va: float, nb: int, mb: float, vb: float
                     ) -> tuple[float, float, float]:
    """Difference of means with a Welch 95% CI (R's `t.test(var.equal = FALSE)`) from each
    group's n, mean and variance: the read layer has only these summaries, and scipy's
    `ttest_ind_from_stats` gives t and p but neither the interval nor the degrees of freedom
    (tests hold this equal to `scipy.stats.ttest_ind(...).confidence_interval()` on raw data).

    >>> [round(v, 4) for v in welch_difference(4, 2.5, 5 / 3, 5, 6.0, 10.0)]
    [-3.5, -7.3854, 0.3854]
    """
    sa, sb = va / na, vb / nb
    se = math.sqrt(sa + sb)
    dof = (sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1)) if se else 1.0
    diff = ma - mb
    tcrit = float(stats.t.ppf(0.975, dof))
    return diff, diff - tcrit * se, diff + tcrit * se


def unlabelled_rows(cells: pd.DataFrame, *, cluster: str, n: str = "n", s: str = "sum",
                    ss: str = "sumsq") -> pd.DataFrame:
    """`cells` (count `n`, sum `s` and sum of squares `ss` of a score per cell) with every cell
    of several rows and no `cluster` label split into one cell per row, so that each such row
    is a cluster of its own, the product's rule (`comparison.cluster_codes`). A GROUP BY puts
    all unlabelled rows of a group in one cell (NULL keys group together).

    Exact for CR2 and its Satterthwaite df, though the rows' own values are gone: rows that
    share their design row (all of one cell's do) and are each a cluster enter the CR2 meat
    only through their count and sum of squared residuals (each adds x x' e_i^2 / (1 - h), h
    the same for all) and the df only through their count, and the sum of squared residuals
    follows from n, s and ss. So any values with the cell's sum and sum of squares give the
    same numbers; these are the mean plus and minus sqrt(SS / 2) for two rows and the mean for
    the others (SS the cell's sum of squared deviations).

    >>> c = pd.DataFrame({"exchange_id": ["X1", None], "n": [3, 4], "sum": [6.0, 8.0],
    ...                   "sumsq": [14.0, 18.0]})
    >>> u = unlabelled_rows(c, cluster="exchange_id")
    >>> len(u), u["n"].tolist(), float(u["sum"].sum()), float(u["sumsq"].sum())
    (5, [3, 1, 1, 1, 1], 14.0, 32.0)
    """
    split = (cells[cluster].isna() & (cells[n] > 1)).to_numpy()
    if not split.any():
        return cells
    part = cells[split]
    k = part[n].to_numpy(np.int64)
    nn = k.astype(float)
    mean = part[s].to_numpy(float) / nn
    dev = np.sqrt(np.maximum(part[ss].to_numpy(float) - nn * mean * mean, 0.0) / 2)
    rows = part.loc[part.index.repeat(k)]
    at = np.arange(len(rows)) - np.repeat(np.cumsum(k) - k, k)  # each row's place in its cell
    value = np.repeat(mean, k) + np.where(at == 0, 1.0, np.where(at == 1, -1.0, 0.0)) * \
        np.repeat(dev, k)
    rows = rows.assign(**{n: 1, s: value, ss: value * value})
    return pd.concat([cells[~split], rows], ignore_index=True).astype({n: cells[n].dtype})


CR2_MEAN_COLUMNS = ["n", "mean", "sd", "ci_low", "ci_high", "ci_low_cr2", "ci_high_cr2",
                    "df_cr2", "n_clusters", "few_clusters"]


def cr2_means(cells: pd.DataFrame, keys: list[str], *, cluster: str = "exchange_id",
              n: str = "n", s: str = "sum", ss: str = "sumsq", ci: float = 0.95
              ) -> pd.DataFrame:
    """Mean per `keys` group from per-cluster cells (one row per group x cluster with count
    `n`, sum `s` and sum of squares `ss`), with two 95% intervals:

    - ``ci_low``/``ci_high``: the t interval (`t_interval`), participants as independent;
    - ``ci_low_cr2``/``ci_high_cr2``: cluster-robust by `cluster` (the exchange): the intercept
      of ``lm(y ~ 1)`` with the CR2 covariance and Satterthwaite df (``df_cr2``), R
      ``clubSandwich::coef_test(vcov = "CR2", test = "Satterthwaite")``; exact from the cells
      (`analytics.stats.comparison.cr2_from_cells`), so filtered pages get it from rollups.
      ``n_clusters`` counts the clusters behind the mean and ``few_clusters`` flags fewer than
      10 (NaN interval below 2 clusters).

    A row with a missing cluster label is a cluster of its own (as `cr2_mean`): a cell of
    several such rows (a GROUP BY gives one per group) is split exactly (`unlabelled_rows`)."""
    from analytics.stats.comparison import cluster_codes, cr2_from_cells
    from analytics.stats.prepost import FEW_CLUSTERS

    cells = unlabelled_rows(cells, cluster=cluster, n=n, s=s, ss=ss)
    rows = []
    for key, d in cells.groupby(keys, sort=True, dropna=False, observed=True):
        nn, s1, s2 = (d[c].to_numpy(float) for c in (n, s, ss))
        tot = float(nn.sum())
        mean = float(s1.sum()) / tot if tot else math.nan
        var = (float(s2.sum()) - tot * mean * mean) / (tot - 1) if tot > 1 else math.nan
        codes = cluster_codes(d[cluster])
        n_cl = int(codes.max(initial=-1)) + 1
        gram = np.bincount(codes, weights=nn, minlength=n_cl)[:, None, None]
        xy = np.bincount(codes, weights=s1, minlength=n_cl)[:, None]
        lo = hi = dof = math.nan
        if n_cl >= 2 and tot > 1:
            t = cr2_from_cells(gram, xy).test(np.array([1.0]), ci=ci)
            lo, hi, dof = t["ci_low_cr2"], t["ci_high_cr2"], t["df_cr2"]
        key = key if isinstance(key, tuple) else (key,)
        rows.append([*key, int(tot), mean, math.sqrt(max(var, 0.0)) if var == var else var,
                     lo, hi, dof, n_cl, n_cl < FEW_CLUSTERS])
    out = pd.DataFrame(rows, columns=[*keys, "n", "mean", "sd", "ci_low_cr2", "ci_high_cr2",
                                      "df_cr2", "n_clusters", "few_clusters"])
    out = t_interval(out) if len(out) else out.assign(ci_low=[], ci_high=[])
    out["n_clusters"] = pd.array(out["n_clusters"], dtype="Int64")
    out["few_clusters"] = pd.array(out["few_clusters"], dtype="boolean")
    return out[[*keys, *CR2_MEAN_COLUMNS]]
