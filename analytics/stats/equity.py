"""Equity gaps: how far apart are the best- and worst-served groups?

For one grouping (gender, age band, connectivity, income group) and one measure (a gain, the
minutes of activity per participant, the drop-out rate), from per group x exchange cells of
count ``n`` and sum ``sum`` of the measure over units (participant x exchange; a unit without
an exchange is a cluster of its own, so its cell must hold that unit alone):

- each group's mean is sum / n; the best-served group is the one with the highest mean (the
  lowest for a measure where lower is better, such as drop-out), the worst the opposite;
- the gap is best − worst (worst − best when lower is better), so a gap is never negative;
- its interval is cluster-robust by exchange: OLS of the measure on the two groups'
  indicators (no intercept) over their units, CR2 covariance and Satterthwaite df for the
  contrast (Pustejovsky & Tipton 2018; R ``clubSandwich::coef_test(vcov = "CR2", test =
  "Satterthwaite")``), exact from the cells (`analytics.stats.comparison.cr2_from_cells`);
- because the pair is chosen *after* looking at the data (the extremes), a plain 95% interval
  would cover too rarely; the interval is Bonferroni-adjusted over all m = G(G − 1)/2 pairs of
  the G groups compared (level 1 − 0.05 / m, in ``ci_level``), so it covers the true gap of the
  chosen pair whatever pair the data pick, with probability at least 95%.

Groups with fewer than k units (or, when `subsets` are given, fewer than k units in such a
subset, e.g. the active participants or the drop-outs) are not compared and are listed in
``groups_left_out`` with the reason, as are groups named in `not_groups` ("not reported").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analytics.stats.comparison import cluster_codes, cr2_from_cells
from analytics.stats.prepost import FEW_CLUSTERS
from analytics.suppression import DEFAULT_K, reason

__all__ = ["GAP_COLUMNS", "equity_gaps", "NOT_REPORTED"]

NOT_REPORTED = "not reported"
GAP_COLUMNS = ["grouping", "measure", "instrument", "scale", "best_group", "worst_group",
               "n_best", "n_worst", "value_best", "value_worst", "gap", "se_cr2", "df_cr2",
               "ci_low", "ci_high", "ci_level", "n_groups_compared", "groups_left_out",
               "n_clusters", "few_clusters", "suppressed"]


def _one(cells: pd.DataFrame, *, group: str, cluster: str, n: str, s: str,
         subsets: Sequence[str], lower_is_better: bool, k: int, not_groups: Sequence[str]
         ) -> dict:
    # numpy throughout: this runs once per grouping x measure x scale
    codes, labels = pd.factorize(cells[group].to_numpy(object), sort=True)
    n_g = len(labels)
    nn, ss = cells[n].to_numpy(float), cells[s].to_numpy(float)
    n_tot = np.bincount(codes, weights=nn, minlength=n_g)
    s_tot = np.bincount(codes, weights=ss, minlength=n_g)
    sub_tot = []
    for c in subsets:  # NaN (not applicable) stays NaN, not 0
        v = cells[c].to_numpy(float)
        tot = np.bincount(codes, weights=np.nan_to_num(v), minlength=n_g)
        seen = np.bincount(codes, weights=~np.isnan(v), minlength=n_g) > 0
        sub_tot.append(np.where(seen, tot, np.nan))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_tot > 0, s_tot / n_tot, np.nan)
    left, eligible = [], []
    for i, g in enumerate(labels):
        if str(g) in not_groups:
            left.append(f"{g} (not a group)")
        elif n_tot[i] < k or any(t[i] == t[i] and t[i] < k for t in sub_tot):
            left.append(f"{g} ({reason(k)})")
        else:
            eligible.append(i)
    row: dict = {c: np.nan for c in GAP_COLUMNS}
    row.update(n_groups_compared=len(eligible), groups_left_out="; ".join(left),
               best_group=None, worst_group=None, n_clusters=pd.NA, few_clusters=pd.NA,
               suppressed="")
    if not eligible:
        row["suppressed"] = reason(k)  # no group to show: nothing behind the row
        return row
    order = sorted(eligible, key=lambda i: (mean[i] if lower_is_better else -mean[i], i))
    best, worst = order[0], order[-1]
    row.update(best_group=str(labels[best]), worst_group=str(labels[worst]),
               n_best=int(n_tot[best]), value_best=float(mean[best]))
    if len(eligible) < 2:
        return row
    row.update(n_worst=int(n_tot[worst]), value_worst=float(mean[worst]))
    sign = -1.0 if lower_is_better else 1.0
    row["gap"] = sign * (float(mean[best]) - float(mean[worst]))
    two = (codes == best) | (codes == worst)
    labels = cells[cluster].to_numpy(object)[two]
    if (pd.isna(labels) & (nn[two] > 1)).any():
        # each unit without an exchange is a cluster of its own; a cell of several cannot be
        # split from its count and sum (the CR2 meat needs their sum of squares)
        raise ValueError("a cell without an exchange holds several units: give each unit "
                         "without an exchange a cell of its own")
    cl = cluster_codes(labels)
    j = int(cl.max()) + 1
    is_best = codes[two] == best
    gram = np.zeros((j, 2, 2))
    xy = np.zeros((j, 2))
    for col, mask in ((0, is_best), (1, ~is_best)):
        gram[:, col, col] = np.bincount(cl[mask], weights=nn[two][mask], minlength=j)
        xy[:, col] = np.bincount(cl[mask], weights=ss[two][mask], minlength=j)
    pairs = len(eligible) * (len(eligible) - 1) // 2
    level = 1 - 0.05 / pairs
    t = cr2_from_cells(gram, xy).test(np.array([sign, -sign]), ci=level)
    row.update(se_cr2=t["se_cr2"], df_cr2=t["df_cr2"], ci_low=t["ci_low_cr2"],
               ci_high=t["ci_high_cr2"], ci_level=level, n_clusters=int(t["n_clusters"]),
               few_clusters=bool(t["n_clusters"] < FEW_CLUSTERS))
    return row


def equity_gaps(
    cells: pd.DataFrame,
    *,
    keys: Sequence[str] = ("grouping", "measure", "instrument", "scale"),
    group: str = "group",
    cluster: str = "exchange_id",
    n: str = "n",
    s: str = "sum",
    subsets: Sequence[str] = (),
    lower_is_better: Mapping[str, bool] | None = None,
    measure: str = "measure",
    not_groups: Sequence[str] = (NOT_REPORTED,),
    k: int = DEFAULT_K,
) -> pd.DataFrame:
    """One row per `keys` combination of `cells` (see the module doc).

    `cells`: one row per keys x group x cluster with the units' count `n` and the sum `s` of
    the measure (a 0/1 measure's sum is its count of ones); `subsets`: count columns of subsets
    each of which must reach k for a group to be compared (NaN = not applicable). A key column
    may hold NA (e.g. the scale of a measure that has none).
    `lower_is_better`: per value of the `measure` column, True where lower is better.

    Example
    -------
    >>> c = pd.DataFrame({"grouping": "g", "measure": "m", "instrument": None, "scale": None,
    ...                   "group": ["x", "x", "y", "y"], "exchange_id": ["e1", "e2"] * 2,
    ...                   "n": [10, 10, 10, 10], "sum": [10.0, 12.0, 5.0, 6.0]})
    >>> r = equity_gaps(c, k=10).iloc[0]
    >>> r["best_group"], r["worst_group"], round(float(r["gap"]), 2)
    ('x', 'y', 0.55)
    """
    lower = dict(lower_is_better or {})
    keys = list(keys)
    missing = [c for c in (*keys, group, cluster, n, s, *subsets) if c not in cells.columns]
    if missing:
        raise ValueError(f"cells lack column(s) {missing}")
    # Labels as plain objects: Arrow-backed strings cost a conversion on every filter below.
    cells = cells.astype({c: object for c in (*keys, group, cluster)})
    rows = []
    for key, d in cells.groupby(keys, sort=True, dropna=False, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        spec = dict(zip(keys, key, strict=True))
        row = _one(d, group=group, cluster=cluster, n=n, s=s, subsets=subsets,
                   lower_is_better=bool(lower.get(spec.get(measure), False)), k=k,
                   not_groups=not_groups)
        row.update(spec)
        rows.append(row)
    out = pd.DataFrame(rows, columns=GAP_COLUMNS) if rows else pd.DataFrame(columns=GAP_COLUMNS)
    for c in ("n_best", "n_worst", "n_groups_compared", "n_clusters"):
        out[c] = pd.array(pd.to_numeric(out[c], errors="coerce"), dtype="Int64")
    out["few_clusters"] = pd.array(out["few_clusters"], dtype="boolean")
    for c in ("value_best", "value_worst", "gap", "se_cr2", "df_cr2", "ci_low", "ci_high",
              "ci_level"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    out["suppressed"] = out["suppressed"].astype("str")
    return out[GAP_COLUMNS]
