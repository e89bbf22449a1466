"""Paired pre/post change per scale, overall and by group, with tests and labelled effect sizes.

Each row is one instrument x scale x group: the participants with both a pre and a post score
(complete pairs), their mean change post - pre (positive = gain; negative changes and nulls are
shown as they are), the paired t test and its CI (R's ``t.test(post, pre, paired = TRUE)``),
Benjamini-Hochberg adjusted p values across the scales of one grouping (``p.adjust(p, "BH")``
within each group_by x group), the Wilcoxon signed-rank p (as R's ``wilcox.test(paired = TRUE)``:
exact without ties or zeros below n = 50, else normal approximation with continuity correction),
and three effect sizes, each with its exact definition:

- ``d_z``  = mean(diff) / sd(diff)                         (Lakens 2013, eq. 6; = t / sqrt(n))
- ``d_av`` = (mean_post - mean_pre) / sqrt((sd_pre^2 + sd_post^2) / 2)   (Cumming 2012), which
  is what ``pingouin.compute_effsize(post, pre, paired=True)`` returns in pingouin 0.7 — no
  small-sample correction despite the "unbiased" wording in its docstring
- ``hedges_g`` = g_av = d_av * (1 - 3 / (4 * (2n) - 9)), pingouin's Hedges correction for two
  samples of n (``eftype="hedges"``); CI g +/- t(0.975, n-1) * SE with
  SE = sqrt((1/n + g^2 / (2n)) * (2 - 2r)), r = Pearson correlation of pre and post — the
  paired-samples formula of R's ``effsize::cohen.d``.

Groups with fewer than k complete pairs (default 10) are suppressed (see `suppression`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analytics.suppression import DEFAULT_K, suppress

__all__ = ["OUTPUT_COLUMNS", "paired_change", "prepost", "bh_adjust"]

OUTPUT_COLUMNS = [
    "instrument", "scale", "group_by", "group", "n", "mean_pre", "mean_post", "diff",
    "diff_ci_low", "diff_ci_high", "t", "dof", "p", "p_fdr", "wilcoxon_p", "d_z", "d_av",
    "hedges_g", "hedges_g_ci_low", "hedges_g_ci_high", "suppressed",
]
_STATS = OUTPUT_COLUMNS[4:20]
OVERALL = "overall"


def bh_adjust(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values (R ``p.adjust(p, "BH")``); NaN stays NaN.

    >>> bh_adjust([0.01, 0.04, 0.03, np.nan]).round(3).tolist()
    [0.03, 0.04, 0.04, nan]
    """
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    q = p[ok]
    order = np.argsort(q)[::-1]
    ranked = q[order] * m / np.arange(m, 0, -1)
    adj = np.minimum(1.0, np.minimum.accumulate(ranked))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def _wilcoxon_p(d: np.ndarray) -> float:
    """Signed-rank p as R's ``wilcox.test(post, pre, paired = TRUE)``: exact for fewer than 50
    non-zero differences without ties or zeros, else the normal approximation with continuity
    correction; zero differences dropped."""
    # scores are means of a few integer answers; round away float noise so equal changes tie
    d = np.round(d, 10)
    nz = d[d != 0]
    if len(nz) == 0:
        return float("nan")
    ties = len(np.unique(np.abs(nz))) < len(nz)
    exact = len(nz) < 50 and not ties and len(nz) == len(d)
    if exact:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's small-sample notes; the p is still right
            return float(stats.wilcoxon(nz, method="exact").pvalue)
    # Normal approximation with tie and continuity corrections, R's formula, written out
    # because scipy's wrapper costs milliseconds per call and a table has thousands of cells.
    n = len(nz)
    r = stats.rankdata(np.abs(nz))
    v = float(r[nz > 0].sum())
    _, t = np.unique(r, return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - float((t**3 - t).sum()) / 48
    if var <= 0:
        return float("nan")
    z = v - n * (n + 1) / 4
    z = (z - 0.5 * np.sign(z)) / math.sqrt(var)
    return float(2 * stats.norm.sf(abs(z)))


def paired_change(pre: np.ndarray, post: np.ndarray, *, ci: float = 0.95) -> dict[str, float]:
    """Paired statistics of post - pre for complete pairs (NaN pairs are dropped).

    Method: paired t test as R's ``t.test(post, pre, paired = TRUE)``; Wilcoxon signed-rank
    p as R's ``wilcox.test(post, pre, paired = TRUE)`` (exact for n < 50 without ties or zeros,
    else normal approximation with continuity correction); effect sizes as in the module
    docstring.

    Returns
    -------
    dict with n, mean_pre, mean_post, diff, diff_ci_low, diff_ci_high, t, dof, p, wilcoxon_p,
    d_z, d_av, hedges_g, hedges_g_ci_low, hedges_g_ci_high (NaN where undefined, e.g. n < 2
    or no variation).

    Examples
    --------
    Student's sleep data, as ``t.test(extra ~ group, data = sleep, paired = TRUE)`` in R
    (t = -4.0621 for group 1 - group 2; here post = group 2, so the sign is positive):

    >>> g1 = np.array([0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0])
    >>> g2 = np.array([1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4])
    >>> r = paired_change(g1, g2)
    >>> round(r["t"], 4), r["dof"], round(r["p"], 6), round(r["diff_ci_low"], 4)
    (4.0621, 9.0, 0.002833, 0.7001)
    """
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")
    pre = np.asarray(pre, dtype=float)
    post = np.asarray(post, dtype=float)
    if pre.shape != post.shape or pre.ndim != 1:
        raise ValueError("pre and post must be 1-D arrays of the same length")
    ok = ~(np.isnan(pre) | np.isnan(post))
    x, y = pre[ok], post[ok]
    n = int(len(x))
    nan = float("nan")
    out = dict.fromkeys(_STATS, nan)
    out["n"] = n
    if n == 0:
        return out
    d = y - x
    out["mean_pre"], out["mean_post"], out["diff"] = float(x.mean()), float(y.mean()), \
        float(d.mean())
    if n < 2:
        return out
    dof = n - 1
    sd = float(d.std(ddof=1))
    out["dof"] = float(dof)
    tcrit = float(stats.t.ppf(0.5 + ci / 2, dof))
    if sd > 0:
        se = sd / math.sqrt(n)
        tval = out["diff"] / se
        out.update(t=tval, p=float(2 * stats.t.sf(abs(tval), dof)),
                   diff_ci_low=out["diff"] - tcrit * se, diff_ci_high=out["diff"] + tcrit * se,
                   d_z=out["diff"] / sd)
    out["wilcoxon_p"] = _wilcoxon_p(d)
    sx, sy = float(x.std(ddof=1)), float(y.std(ddof=1))
    s_av = math.sqrt((sx * sx + sy * sy) / 2)
    if s_av > 0:
        d_av = (out["mean_post"] - out["mean_pre"]) / s_av
        g = d_av * (1 - 3 / (4 * (2 * n) - 9))
        out["d_av"], out["hedges_g"] = d_av, g
        r = float(np.corrcoef(x, y)[0, 1]) if sx > 0 and sy > 0 else 0.0
        se_g = math.sqrt(max((1 / n + g * g / (2 * n)) * (2 - 2 * r), 0.0))
        out["hedges_g_ci_low"], out["hedges_g_ci_high"] = g - tcrit * se_g, g + tcrit * se_g
    return out


def prepost(
    scores: pd.DataFrame,
    *,
    participant: str = "participant",
    exchange: str | None = "exchange_id",
    wave: str = "wave",
    score: str = "score",
    pre: str = "pre",
    post: str = "post",
    by: str | Sequence[str] | None = None,
    instrument: str = "instrument",
    scale: str = "scale",
    ci: float = 0.95,
    k: int = DEFAULT_K,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """Pre/post change per instrument x scale, overall and by each grouping column in `by`.

    Pairs are formed per participant (and exchange, when `exchange` is given: the same person in
    two exchanges is two pairs); a pair is complete when both scores are present. Grouping
    columns (cluster, country, modality, role, gender, comparison …) must be in `scores`,
    constant within a pair; a pair with a missing group value is left out of that grouping
    only. ``p_fdr`` adjusts p across the scales of each group_by x group (R ``p.adjust``
    "BH"). See `paired_change` and the module docstring for each column's definition.

    Returns
    -------
    DataFrame with columns instrument, scale, group_by, group, n, mean_pre, mean_post, diff,
    diff_ci_low, diff_ci_high, t, dof, p, p_fdr, wilcoxon_p, d_z, d_av, hedges_g,
    hedges_g_ci_low, hedges_g_ci_high, suppressed. Overall rows have group_by = group =
    "overall". Rows with n < k have every number blanked and ``suppressed = "n < k"`` unless
    `unsuppressed`.

    Examples
    --------
    >>> s = pd.DataFrame({"participant": np.repeat(np.arange(12), 2), "exchange_id": "e",
    ...                   "wave": ["pre", "post"] * 12, "instrument": "icc", "scale": "open",
    ...                   "score": np.tile([3.0, 3.5], 12) + np.repeat(np.arange(12) / 10, 2)})
    >>> prepost(s)[["n", "diff", "suppressed"]].to_dict("records")
    [{'n': 12, 'diff': 0.5, 'suppressed': ''}]
    """
    by_cols = [by] if isinstance(by, str) else list(by or [])
    keys = [participant] + ([exchange] if exchange else [])
    need = list(dict.fromkeys(keys + [wave, score, instrument, scale] + by_cols))
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ValueError(f"scores has no column(s) {missing}")
    d = scores.loc[scores[wave].isin([pre, post]), need]
    idx = keys + [instrument, scale]
    wide = (d.groupby([*idx, wave], sort=False, observed=True, dropna=False)[score].first()
            .unstack(wave).reindex(columns=[pre, post]))
    extra = [c for c in by_cols if c not in idx]
    if extra:
        attrs = d.drop_duplicates(idx).set_index(idx)[extra]
        wide = wide.join(attrs)
    wide = wide.reset_index()

    rows: list[dict] = []
    groupings: list[tuple[str, str | None]] = [(OVERALL, None)] + [(c, c) for c in by_cols]
    for label, col in groupings:
        if col is None:
            parts = wide.groupby([instrument, scale], sort=True, observed=True)
            for (inst, sc), g in parts:
                rows.append({"instrument": inst, "scale": sc, "group_by": label, "group": OVERALL,
                             **paired_change(g[pre].to_numpy(float), g[post].to_numpy(float),
                                             ci=ci)})
        else:
            sub = wide[wide[col].notna()]
            parts = sub.groupby([instrument, scale, col], sort=True, observed=True)
            for (inst, sc, gv), g in parts:
                rows.append({"instrument": inst, "scale": sc, "group_by": label,
                             "group": str(gv),
                             **paired_change(g[pre].to_numpy(float), g[post].to_numpy(float),
                                             ci=ci)})
    out = pd.DataFrame(rows, columns=[c for c in OUTPUT_COLUMNS if c != "suppressed"])
    out["n"] = out["n"].astype("int64")
    out["p_fdr"] = np.nan
    for _, ix in out.groupby(["group_by", "group"], sort=False).groups.items():
        out.loc[ix, "p_fdr"] = bh_adjust(out.loc[ix, "p"].to_numpy(float))
    out = suppress(out, n="n", k=k, unsuppressed=unsuppressed)
    return out[OUTPUT_COLUMNS]
