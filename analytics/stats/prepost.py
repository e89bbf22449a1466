"""Paired pre/post change per scale, overall and by group, with tests and labelled effect sizes.

Each row is one instrument x scale x group: the participants with both a pre and a post score
(complete pairs), their mean change post - pre (positive = gain; negative changes and nulls are
shown as they are), and, with the method named next to each column:

- the paired t test and its CI, as R's ``t.test(post, pre, paired = TRUE)`` (participants
  treated as independent: ``diff_ci_low``, ``diff_ci_high``, ``t``, ``dof``, ``p``);
- the design-aware version of the same mean change (``*_cr2`` columns): the mean change is the
  intercept of an OLS regression of the change on 1, its standard error is cluster-robust by
  exchange with the CR2 bias-reduced linearisation (Bell & McCaffrey 2002; Pustejovsky & Tipton
  2018, JBES 36(4)), working model the identity, and its t reference has Satterthwaite degrees
  of freedom — what R's ``clubSandwich::coef_test(lm(change ~ 1), vcov = "CR2", cluster =
  exchange, test = "Satterthwaite")`` reports. ``n_clusters`` counts the exchanges behind the
  row; ``few_clusters`` is true below `FEW_CLUSTERS` (10), where even CR2 intervals are rough;
- Benjamini-Hochberg adjusted p values (R ``p.adjust(p, "BH")``) over two families:
  ``p_fdr`` across the scales of one group_by x group, and ``p_fdr_table`` across every row the
  user sees at once in one group_by table (all its groups x instruments x scales; rows
  suppressed for n < k are not shown and are left out of the family);
- the Wilcoxon signed-rank p with one stated rule: the differences post - pre are rounded to
  10 decimals (scores are means of a few integer answers; rounding removes float noise so equal
  changes tie), zeros are dropped, and then R's ``wilcox.test`` rule is applied: exact null
  distribution when fewer than 50 differences remain and there are no ties and no zeros, else
  the normal approximation with tie-corrected variance and continuity correction. This equals R
  ``wilcox.test(round(post - pre, 10))``; it can differ from ``wilcox.test(post, pre, paired =
  TRUE)`` on unrounded doubles when changes that are equal in exact arithmetic differ in the
  last bits (R then sees no tie and may use the exact test);
- three effect sizes, each with its exact definition:

  - ``d_z``  = mean(diff) / sd(diff)                      (Lakens 2013, eq. 6; = t / sqrt(n))
  - ``d_av`` = (mean_post - mean_pre) / s_av, s_av = sqrt((sd_pre^2 + sd_post^2) / 2)
    (Cumming 2012; Lakens 2013, eq. 10) = ``pingouin.compute_effsize(post, pre, paired=True)``
    in pingouin 0.7 (no small-sample correction despite its docstring)
  - ``hedges_g`` = g_av = J(nu) * d_av, the small-sample bias correction for correlated
    samples: J(nu) = Gamma(nu/2) / (sqrt(nu/2) Gamma((nu-1)/2)) (Hedges 1981, exact form) with
    nu = 2(n - 1) / (1 + r^2), r = Pearson correlation of pre and post — the Satterthwaite
    degrees of freedom of s_av^2 for paired samples (Fitts 2020, TQMP 16(4); Cousineau &
    Goulet-Pelletier 2020, TQMP 16(4)). It lies between n - 1 (r = +-1) and 2(n - 1) (r = 0);
    pingouin's 1 - 3 / (4 * 2n - 9) treats pre and post as independent samples of n.
    ``hedges_g_ci_low``/``_high``: 95% CI of the population delta_av by the noncentral t: the
    noncentrality of the paired t (df = n - 1) is bounded by inverting the noncentral t cdf
    (Steiger & Fouladi 1997; ``scipy.special.nctdtrinc``, the computation of MBESS
    ``conf.limits.nct``) and the bounds are rescaled by sd(diff) / (sqrt(n) s_av), the exact
    factor between t and d_av, taken as fixed (the noncentral-t interval Algina, Keselman &
    Penfield 2005 studied for two repeated measures). Coverage 0.95-0.97 at n = 10 for r in
    [0, 0.95], delta_av in [0, 2] (tests/test_prepost.py simulates it).
    ``hedges_g_ci_low_cr2``/``_high_cr2``: the design-aware interval of delta_av the pages show:
    the CR2 interval of the mean change divided by s_av, s_av taken as known (its sampling error
    is small next to the between-exchange one; s_av is the total SD, so g stays Hedges 2007's
    delta_T for clustered designs, J Educ Behav Stat 32(4)). Coverage 0.94-0.97 with an exchange
    ICC of 0.05-0.10 and 8-30 exchanges of equal or unequal size, where the plain interval
    covers 0.6-0.84 (tests/test_prepost_design.py). Inverting the noncentral t at the CR2 t and
    its Satterthwaite df instead over-covers (0.97-0.985 at 30 exchanges): that df measures the
    SE's uncertainty, not an SD's.

Groups with fewer than k complete pairs (default 10) are suppressed (see `suppression`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from analytics.suppression import DEFAULT_K, suppress

__all__ = ["OUTPUT_COLUMNS", "FEW_CLUSTERS", "MOMENTS", "paired_change", "prepost",
           "prepost_from_moments", "change_from_moments", "pair_moments", "bh_adjust",
           "cr2_mean", "cr2_mean_cells", "wilcoxon_from_counts", "hedges_j", "table_fdr",
           "CR2_ZERO_TOL", "cr2_scores_vanish", "cr2_not_estimable"]

# The first 21 columns are the plain (participants-independent) table and keep their names and
# values; the design-aware and table-wide columns are appended after "suppressed".
DESIGN_COLUMNS = [
    "p_fdr_table", "n_clusters", "diff_se_cr2", "diff_df_cr2", "diff_ci_low_cr2",
    "diff_ci_high_cr2", "p_cr2", "few_clusters", "hedges_g_ci_low_cr2", "hedges_g_ci_high_cr2",
]
OUTPUT_COLUMNS = [
    "instrument", "scale", "group_by", "group", "n", "mean_pre", "mean_post", "diff",
    "diff_ci_low", "diff_ci_high", "t", "dof", "p", "p_fdr", "wilcoxon_p", "d_z", "d_av",
    "hedges_g", "hedges_g_ci_low", "hedges_g_ci_high", "suppressed", *DESIGN_COLUMNS,
]
_STATS = OUTPUT_COLUMNS[4:20]
_CR2_STATS = ["n_clusters", "diff_se_cr2", "diff_df_cr2", "diff_ci_low_cr2", "diff_ci_high_cr2",
              "p_cr2", "few_clusters", "hedges_g_ci_low_cr2", "hedges_g_ci_high_cr2"]
FEW_CLUSTERS = 10  # fewer exchanges than this: the cluster-robust interval is flagged
# A CR2 quantity that is 0 in exact arithmetic comes out of floating point as rounding of about
# eps * cond(X'X) of its scale (eps = 2.2e-16); 1e-10 leaves room for condition numbers to ~1e5.
# Quantities that are not 0 sit far above it: on 150,000 coefficients and contrasts of small
# random ANCOVA designs (8-15 rows, 2-14 clusters, a column scaled by 1000) the design share
# below was <= 5e-14 where it is 0 and >= 1.7e-5 where it is not (`cr2_not_estimable`).
CR2_ZERO_TOL = 1e-10
# A standard deviation that is 0 in exact arithmetic (every pair changed by the same amount, or
# every pre score equal) comes out of two-pass sums as rounding of about eps times the scores'
# magnitude; a real SD of scale scores (means of items in whole steps) is at least ~1e-3 of it.
# Below SD_ZERO_TOL of the magnitude the SD is taken as 0: no t, p, interval or d, as R's
# t.test refuses "essentially constant" data, instead of t ~ 1e15 and p ~ 0 from rounding.
SD_ZERO_TOL = 1e-10
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
    values, counts = np.unique(np.round(np.asarray(d, dtype=float), 10), return_counts=True)
    return wilcoxon_from_counts(values, counts)


def wilcoxon_from_counts(values: np.ndarray, counts: np.ndarray) -> float:
    """`_wilcoxon_p` from the distinct rounded differences (``round(post - pre, 10)``, as
    numpy's or DuckDB's ``round_even``) and how many pairs have each: the signed ranks of tied
    values are their average ranks, so the counts hold all the test needs. This is how a
    table computed in SQL (`prepost_from_moments`) gets the same p without the pairs."""
    values = np.asarray(values, dtype=float)
    counts = np.asarray(counts, dtype=np.int64)
    keep = (counts > 0) & (values != 0)
    zeros = int(counts[(values == 0)].sum())
    v, c = values[keep], counts[keep]
    n = int(c.sum())
    if n == 0:
        return float("nan")
    mags, inverse = np.unique(np.abs(v), return_inverse=True)
    per_mag = np.bincount(inverse, weights=c).astype(np.int64)
    ties = bool((per_mag > 1).any())
    if n < 50 and not ties and zeros == 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's small-sample notes; the p is still right
            return float(stats.wilcoxon(np.repeat(v, c), method="exact").pvalue)
    # Normal approximation with tie and continuity corrections, R's formula, written out
    # because scipy's wrapper costs milliseconds per call and a table has thousands of cells.
    # The average rank of the t values tied at one magnitude is the ranks before them + (t+1)/2.
    rank = np.cumsum(per_mag) - per_mag + (per_mag + 1) / 2
    pos = np.bincount(inverse, weights=np.where(v > 0, c, 0)).astype(float)
    w = float((pos * rank).sum())
    t = per_mag.astype(float)
    var = n * (n + 1) * (2 * n + 1) / 24 - float((t**3 - t).sum()) / 48
    if var <= 0:
        return float("nan")
    z = w - n * (n + 1) / 4
    z = (z - 0.5 * np.sign(z)) / math.sqrt(var)
    return float(2 * stats.norm.sf(abs(z)))


def hedges_j(nu: float) -> float:
    """Hedges' (1981) exact small-sample correction J(nu) = Gamma(nu/2) / (sqrt(nu/2) *
    Gamma((nu - 1)/2)); NaN for nu <= 1.

    >>> round(hedges_j(9.0), 4), round(1 - 3 / (4 * 9 - 1), 4)  # exact J(9) vs. 1 - 3/(4nu - 1)
    (0.9139, 0.9143)
    """
    if not nu > 1:
        return float("nan")
    return float(math.exp(special.gammaln(nu / 2) - special.gammaln((nu - 1) / 2))
                 / math.sqrt(nu / 2))


def cr2_scores_vanish(scores: np.ndarray, terms: np.ndarray) -> bool:
    """True when every cluster's score X_j'e_j is 0 up to rounding: `scores` (J, ...) are
    computed as differences of sums whose magnitude is `terms` (same shape, >= 0, e.g.
    |X_j'y_j| + |X_j'X_j| |beta|), and each is within `CR2_ZERO_TOL` of its terms. Then the
    model reproduces every cluster's sums exactly, the CR2 meat is 0, and so is the variance
    of every estimate: what is left is rounding, not a standard error (`cr2_not_estimable`).

    >>> cr2_scores_vanish(np.array([1e-17, -2e-17]), np.array([0.3, 0.6]))
    True
    """
    return bool(np.all(np.abs(scores) <= CR2_ZERO_TOL * np.asarray(terms)))


def cr2_not_estimable(design_share: float) -> bool:
    """True when a CR2 variance is 0 for any scores: `design_share` is its expected value under
    the working model sigma^2 I as a share of the model-based sigma^2 c'(X'X)^-1 c, i.e.
    sum_j p_j'p_j / c'Mc in the Satterthwaite df's notation (`comparison`'s module docstring).
    It is 0 when every cluster that informs c'beta has leverage 1 in the directions that do
    (I - H_jj singular there, so its residuals are 0 whatever y is and CR2's pseudo-inverse
    square root leaves them out): e.g. a mean resting on one cluster, or a dummy that is 1 only
    within one cluster. Such an estimate has no CR2 standard error, df, interval or p: the
    numbers the algebra gives are rounding (se ~1e-16, p ~1e-16 or df ~0.004 with an interval
    of +-1e145) and are reported as NaN, "not estimable" on the pages."""
    return not design_share > CR2_ZERO_TOL


def cr2_mean(d: np.ndarray, cluster: np.ndarray, *, ci: float = 0.95) -> dict[str, float]:
    """Mean of `d` with a CR2 cluster-robust SE and Satterthwaite df (clubSandwich's
    ``coef_test(lm(d ~ 1), vcov = "CR2", cluster = cluster, test = "Satterthwaite")``).

    For the intercept-only OLS fit (X = 1, N rows, clusters j of n_j rows, f_j = n_j / N,
    residual sums S_j) the CR2 adjustment A_j = (I - H_jj)^(-1/2) has the closed form
    1' A_j = 1' / sqrt(1 - f_j), so (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018, eq. 5)

        V_CR2 = sum_j S_j^2 / (1 - f_j) / N^2,

    and the Satterthwaite df under the working model sigma^2 I (Pustejovsky & Tipton 2018,
    sec. 3.1), with b_j = n_j / sqrt(1 - f_j):

        df = N^2 / (sum_j n_j^2 + ((sum_j b_j^2)^2 - sum_j b_j^4) / N^2),

    which is J - 1 for J equal clusters (then V_CR2 also equals statsmodels' CR1 cluster
    variance, G/(G - 1) * sum S_j^2 / N^2). NaN when fewer than 2 clusters, and SE, df, CI
    and p NaN when every cluster's residual sum S_j is 0 up to rounding (`cr2_scores_vanish`:
    e.g. every change the same; the variance is then 0 in exact arithmetic and the number
    floating point gives is noise). A missing cluster label makes the row a cluster of its own.

    >>> r = cr2_mean(np.array([1.0, 2.0, 3.0, 4.0]), np.array(["a", "a", "b", "b"]))
    >>> r["n_clusters"], round(r["diff_se_cr2"], 6), r["diff_df_cr2"]
    (2, 1.0, 1.0)
    """
    d = np.asarray(d, dtype=float)
    codes = _codes(np.asarray(cluster))
    nj = np.bincount(codes).astype(float) if len(d) else np.zeros(0)
    sums = np.bincount(codes, weights=d) if len(d) else np.zeros(0)
    return cr2_mean_cells(nj, sums, ci=ci)


def _codes(cluster: np.ndarray) -> np.ndarray:
    """Integer cluster codes from labels (or codes already, < 0 = NA); a missing label is a
    cluster of its own."""
    if np.issubdtype(cluster.dtype, np.integer):  # codes already (prepost passes them); < 0 = NA
        codes = cluster.astype(np.int64)
    else:
        codes, _ = pd.factorize(pd.Series(cluster, dtype=object), use_na_sentinel=True)
    if (codes < 0).any():
        miss = codes < 0
        codes = codes.copy()
        codes[miss] = codes.max() + 1 + np.arange(int(miss.sum()))
    return codes


def cr2_mean_cells(nj: np.ndarray, sums: np.ndarray, *, ci: float = 0.95) -> dict[str, float]:
    """`cr2_mean` from each cluster's number of rows and sum of `d`: the intercept-only fit's
    CR2 variance and Satterthwaite df need nothing else (clusters with no rows are skipped)."""
    nan = float("nan")
    nj = np.asarray(nj, dtype=float)
    sums = np.asarray(sums, dtype=float)
    keep = nj > 0
    nj, sums = nj[keep], sums[keep]
    n_cl = int(len(nj))
    out = {"n_clusters": n_cl, "diff_se_cr2": nan, "diff_df_cr2": nan,
           "diff_ci_low_cr2": nan, "diff_ci_high_cr2": nan, "p_cr2": nan,
           "few_clusters": n_cl < FEW_CLUSTERS}
    if n_cl < 2:
        return out
    n_tot = float(nj.sum())
    mean = float(sums.sum()) / n_tot
    sj = sums - nj * mean
    if cr2_scores_vanish(sj, np.abs(sums) + nj * abs(mean)):
        return out  # X = 1 has no design zero with 2 clusters: only the data's
    fj = nj / n_tot
    var = float((sj * sj / (1 - fj)).sum()) / (n_tot * n_tot)
    b2 = nj * nj / (1 - fj)
    dof = n_tot * n_tot / (float((nj * nj).sum())
                           + (float(b2.sum()) ** 2 - float((b2 * b2).sum())) / (n_tot * n_tot))
    se = math.sqrt(var)
    out.update(diff_se_cr2=se, diff_df_cr2=dof)
    if se > 0:
        tcrit = float(stats.t.ppf(0.5 + ci / 2, dof))
        out.update(diff_ci_low_cr2=mean - tcrit * se, diff_ci_high_cr2=mean + tcrit * se,
                   p_cr2=float(2 * stats.t.sf(abs(mean / se), dof)))
    return out


_MAX_T_FOR_NCT = 1000.0  # nctdtrinc takes 10 ms at |t| = 1000 and hangs at 1e7


def paired_change(pre: np.ndarray, post: np.ndarray, *, ci: float = 0.95,
                  cluster: np.ndarray | None = None) -> dict[str, float]:
    """Paired statistics of post - pre for complete pairs (NaN pairs are dropped).

    Method: paired t test as R's ``t.test(post, pre, paired = TRUE)``; Wilcoxon signed-rank
    p as R's ``wilcox.test(round(post - pre, 10))`` (exact for fewer than 50 non-zero
    differences without ties or zeros, else normal approximation with tie and continuity
    corrections); effect sizes and their CIs as in the module docstring. With `cluster` (one
    label per pair, e.g. the exchange), also the CR2 cluster-robust columns of `cr2_mean`.

    Returns
    -------
    dict with n, mean_pre, mean_post, diff, diff_ci_low, diff_ci_high, t, dof, p, wilcoxon_p,
    d_z, d_av, hedges_g, hedges_g_ci_low, hedges_g_ci_high (NaN where undefined, e.g. n < 2
    or no variation; hedges_g needs n >= 3), and with `cluster` n_clusters, diff_se_cr2,
    diff_df_cr2, diff_ci_low_cr2, diff_ci_high_cr2, p_cr2, few_clusters.

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
    if cluster is not None:
        cl = np.asarray(cluster)
        if cl.shape != pre.shape:
            raise ValueError("cluster must have one label per pair")
        codes = _codes(cl[ok])
    else:
        codes = np.zeros(len(x), dtype=np.int64)
    values, counts = np.unique(np.round(y - x, 10), return_counts=True)
    return change_from_moments(pair_moments(x, y, codes), values, counts, ci=ci,
                               clustered=cluster is not None)


MOMENTS = ["n", "mean_pre", "mean_post", "mean_diff", "m2_pre", "m2_post", "m2_diff",
           "c_prepost"]


def pair_moments(x: np.ndarray, y: np.ndarray, codes: np.ndarray) -> dict[str, np.ndarray]:
    """The moments of complete pairs (pre `x`, post `y`) per cluster code: `MOMENTS`, i.e. n,
    the means of pre, post and post − pre, their sums of squared deviations from the cluster's
    mean (m2_*) and the sum of co-deviations of pre and post (two passes, as numpy's var)."""
    return pair_moments_masked(x, y, np.ones(len(x), bool), codes,
                               max(int(codes.max(initial=-1)) + 1, 1))


def change_from_moments(cells: dict[str, np.ndarray] | pd.DataFrame, values: np.ndarray,
                        counts: np.ndarray, *, ci: float = 0.95, clustered: bool = True
                        ) -> dict[str, float]:
    """`paired_change` of one group from its per-cluster pair moments (`MOMENTS`, one entry
    per cluster; see `pair_moments`) and its rounded differences' counts (see
    `wilcoxon_from_counts`): every column of the table needs only these, so a table can be
    computed from sums taken in SQL. Clusters are merged with Chan, Golub & LeVeque's update
    (the pooled m2 = the clusters' m2 + their n × squared distance to the pooled mean)."""
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")
    nj = np.asarray(cells["n"], dtype=float)
    live = nj > 0
    nj = nj[live]
    col = {k: np.asarray(cells[k], dtype=float)[live] for k in MOMENTS[1:]}
    n = int(nj.sum())
    nan = float("nan")
    out = dict.fromkeys(_STATS, nan)
    out["n"] = n
    if clustered:
        out.update(cr2_mean_cells(nj, nj * col["mean_diff"], ci=ci))
    if n == 0:
        return out
    mean = {k: float((nj * col[f"mean_{k}"]).sum()) / n for k in ("pre", "post", "diff")}
    out["mean_pre"], out["mean_post"], out["diff"] = mean["pre"], mean["post"], mean["diff"]
    if n < 2:
        return out
    dist = {k: col[f"mean_{k}"] - mean[k] for k in ("pre", "post", "diff")}
    m2 = {k: float(col[f"m2_{k}"].sum() + (nj * dist[k] ** 2).sum())
          for k in ("pre", "post", "diff")}
    cxy = float(col["c_prepost"].sum() + (nj * dist["pre"] * dist["post"]).sum())
    dof = n - 1
    magnitude = abs(mean["pre"]) + abs(mean["post"]) + abs(mean["diff"])

    def sd_of(m2_k: float) -> float:  # 0 when within rounding of 0 (`SD_ZERO_TOL`)
        value = math.sqrt(max(m2_k, 0.0) / dof)
        return value if value > SD_ZERO_TOL * magnitude else 0.0

    sd = sd_of(m2["diff"])
    out["dof"] = float(dof)
    tcrit = float(stats.t.ppf(0.5 + ci / 2, dof))
    if sd > 0:
        se = sd / math.sqrt(n)
        tval = out["diff"] / se
        out.update(t=tval, p=float(2 * stats.t.sf(abs(tval), dof)),
                   diff_ci_low=out["diff"] - tcrit * se, diff_ci_high=out["diff"] + tcrit * se,
                   d_z=out["diff"] / sd)
    out["wilcoxon_p"] = wilcoxon_from_counts(values, counts)
    sx, sy = sd_of(m2["pre"]), sd_of(m2["post"])
    s_av = math.sqrt((sx * sx + sy * sy) / 2)
    if s_av > 0:
        d_av = (out["mean_post"] - out["mean_pre"]) / s_av
        out["d_av"] = d_av
        r = (min(1.0, max(-1.0, cxy / math.sqrt(m2["pre"] * m2["post"])))
             if sx > 0 and sy > 0 else 0.0)
        if n >= 3:
            out["hedges_g"] = hedges_j(2 * (n - 1) / (1 + r * r)) * d_av
        # scipy's nctdtrinc does not return for |t| far beyond any real data (e.g. 1e8 from
        # two pairs with near-equal changes): such an interval is left undefined (NaN).
        if sd > 0 and abs(out["t"]) <= _MAX_T_FOR_NCT:
            # noncentral-t interval for the paired t's noncentrality, rescaled to delta_av
            scale = sd / (math.sqrt(n) * s_av)
            alpha = 1 - ci
            lam_lo = float(special.nctdtrinc(dof, 1 - alpha / 2, out["t"]))
            lam_hi = float(special.nctdtrinc(dof, alpha / 2, out["t"]))
            out["hedges_g_ci_low"], out["hedges_g_ci_high"] = lam_lo * scale, lam_hi * scale
        out.update(_g_interval_cr2(out, s_av))
    return out


def _g_interval_cr2(r: dict, s_av: float) -> dict[str, float]:
    """The CR2 interval of the mean change divided by s_av (see the module docstring); empty
    without CR2 columns."""
    lo, hi = r.get("diff_ci_low_cr2", math.nan), r.get("diff_ci_high_cr2", math.nan)
    if not (s_av > 0 and np.isfinite(lo) and np.isfinite(hi)):
        return {}
    return {"hedges_g_ci_low_cr2": lo / s_av, "hedges_g_ci_high_cr2": hi / s_av}


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
    cluster: str | None = None,
) -> pd.DataFrame:
    """Pre/post change per instrument x scale, overall and by each grouping column in `by`.

    Pairs are formed per participant (and exchange, when `exchange` is given: the same person in
    two exchanges is two pairs); a pair is complete when both scores are present. Grouping
    columns (cluster, country, modality, role, gender, comparison …) must be in `scores`,
    constant within a pair; a pair with a missing group value is left out of that grouping
    only. ``p_fdr`` adjusts p across the scales of each group_by x group, ``p_fdr_table``
    across all rows of one group_by with n >= k (R ``p.adjust`` "BH"). `cluster` names the
    column whose labels are the clusters of the CR2 columns (e.g. "exchange_id"; constant within
    a pair); without it those columns are empty. See `paired_change` and the module docstring
    for each column's definition.

    Returns
    -------
    DataFrame with `OUTPUT_COLUMNS`: instrument, scale, group_by, group, n, mean_pre,
    mean_post, diff, diff_ci_low, diff_ci_high, t, dof, p, p_fdr, wilcoxon_p, d_z, d_av,
    hedges_g, hedges_g_ci_low, hedges_g_ci_high, suppressed, then p_fdr_table, n_clusters,
    diff_se_cr2, diff_df_cr2, diff_ci_low_cr2, diff_ci_high_cr2, p_cr2, few_clusters,
    hedges_g_ci_low_cr2, hedges_g_ci_high_cr2. Overall rows have group_by = group =
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
    cl_cols = [cluster] if cluster else []
    need = list(dict.fromkeys(keys + [wave, score, instrument, scale] + by_cols + cl_cols))
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ValueError(f"scores has no column(s) {missing}")
    d = scores.loc[scores[wave].isin([pre, post]), need].reset_index(drop=True)
    idx = keys + [instrument, scale]
    extra = list(dict.fromkeys(c for c in by_cols + cl_cols if c not in idx))
    # One row per pair (participant x exchange x instrument x scale, attributes from its first
    # row) with its first non-missing pre and post score: integer group ids and one-key
    # groupbys (a MultiIndex unstack and join took 8 s of 20 at 150,000 participants).
    gid = d.groupby(idx, sort=False, observed=True, dropna=False).ngroup().to_numpy()
    wide = d.loc[pd.Series(gid).drop_duplicates().index, idx + extra].reset_index(drop=True)
    sc = d[score].to_numpy(float)
    for name in (pre, post):
        m = (d[wave] == name).to_numpy(bool) & ~np.isnan(sc)
        vals = np.full(len(wide), np.nan)
        first = pd.Series(sc[m]).groupby(gid[m], sort=False).first()
        vals[first.index.to_numpy()] = first.to_numpy()
        wide[name] = vals

    ok = (wide[pre].notna() & wide[post].notna()).to_numpy()
    x = wide[pre].to_numpy(float)
    y = wide[post].to_numpy(float)
    codes = (_codes(pd.factorize(wide[cluster], use_na_sentinel=True)[0]) if cluster
             else np.zeros(len(wide), dtype=np.int64))
    cells, hists = [], []
    groupings: list[tuple[str, str | None]] = [(OVERALL, None)] + [(c, c) for c in by_cols]
    for label, col in groupings:
        keep = np.ones(len(wide), bool) if col is None else wide[col].notna().to_numpy()
        base = pd.DataFrame({"instrument": wide[instrument].to_numpy()[keep],
                             "scale": wide[scale].to_numpy()[keep],
                             "group": (wide[col].to_numpy()[keep] if col is not None
                                       else np.full(int(keep.sum()), OVERALL, dtype=object))})
        c, h = _moments_frame(base, x[keep], y[keep], ok[keep], codes[keep])
        cells.append(c.assign(group_by=label, group=c["group"].astype(str)))
        hists.append(h.assign(group_by=label, group=h["group"].astype(str)))
    return prepost_from_moments(pd.concat(cells, ignore_index=True),
                                pd.concat(hists, ignore_index=True), ci=ci, k=k,
                                unsuppressed=unsuppressed, clustered=bool(cluster))


_KEYS = ["instrument", "scale", "group"]


def _moments_frame(base: pd.DataFrame, x: np.ndarray, y: np.ndarray, ok: np.ndarray,
                   codes: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per instrument x scale x group x cluster code of `base`'s rows: `MOMENTS` of the
    complete pairs (`ok`); and per instrument x scale x group the counts of round(post − pre,
    10). A group whose pairs are all incomplete keeps a cell with n = 0 (its row says n = 0)."""
    # group ids 0 … G − 1 in key order; `groups` holds each group's keys (its first row)
    gid = base.groupby(_KEYS, sort=True, observed=True, dropna=False).ngroup().to_numpy()
    groups = base.iloc[np.unique(gid, return_index=True)[1]].reset_index(drop=True)
    # one code per group x cluster, in group then cluster order (bincount does the sums)
    per = int(codes.max(initial=0)) + 1
    cell_ids, cell = np.unique(gid.astype(np.int64) * per + codes, return_inverse=True)
    xo, yo = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    cells = groups.iloc[cell_ids // per].reset_index(drop=True).assign(
        **pair_moments_masked(xo, yo, ok, cell, len(cell_ids)))
    vals, vcode = np.unique(np.round(yo[ok] - xo[ok], 10), return_inverse=True)
    nv = max(len(vals), 1)
    pair, counts = np.unique(gid[ok].astype(np.int64) * nv + vcode, return_counts=True)
    hist = groups.iloc[pair // nv].reset_index(drop=True).assign(diff=vals[pair % nv],
                                                                 count=counts)
    return cells, hist


def pair_moments_masked(x: np.ndarray, y: np.ndarray, ok: np.ndarray, cell: np.ndarray,
                        n_cells: int) -> dict[str, np.ndarray]:
    """`pair_moments` of the rows with `ok` per `cell` code (0 … n_cells − 1); a cell with no
    complete pair has n = 0 and NaN means."""
    w = ok.astype(float)
    n = np.bincount(cell, weights=w, minlength=n_cells)
    out: dict[str, np.ndarray] = {"n": n}
    dev = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, v in (("pre", x), ("post", y), ("diff", y - x)):
            mean = np.bincount(cell, weights=v * w, minlength=n_cells) / n
            out[f"mean_{name}"] = mean
            dev[name] = np.where(ok, v - mean[cell], 0.0)
            out[f"m2_{name}"] = np.bincount(cell, weights=dev[name] ** 2, minlength=n_cells)
    out["c_prepost"] = np.bincount(cell, weights=dev["pre"] * dev["post"], minlength=n_cells)
    return out


def prepost_from_moments(cells: pd.DataFrame, hist: pd.DataFrame, *, ci: float = 0.95,
                         k: int = DEFAULT_K, unsuppressed: bool = False,
                         clustered: bool = True) -> pd.DataFrame:
    """The `prepost` table from sums: `cells` has one row per instrument x scale x group_by x
    group x cluster (exchange) with `MOMENTS` of its complete pairs, `hist` per instrument x
    scale x group_by x group the `count` of pairs with each `diff` = round(post − pre, 10).
    Rows come in the order of the cells' first appearance. `prepost` reduces its rows to these
    in pandas; the read layer takes the same sums in SQL (`analytics.read.outcomes`), so a
    filtered table costs one aggregation instead of a pivot of every score."""
    keys = ["group_by", "instrument", "scale", "group"]
    hist_at = hist.groupby(keys, sort=False, observed=True).indices if len(hist) else {}
    hv = hist["diff"].to_numpy(float) if len(hist) else np.zeros(0)
    hc = hist["count"].to_numpy(np.int64) if len(hist) else np.zeros(0, np.int64)
    empty = np.zeros(0, dtype=np.int64)
    rows: list[dict] = []
    for key, ix in cells.groupby(keys, sort=False, observed=True).indices.items():
        at = hist_at.get(key, empty)
        c = {m: cells[m].to_numpy(float)[ix] for m in MOMENTS}
        rows.append({"instrument": key[1], "scale": key[2], "group_by": key[0], "group": key[3],
                     **change_from_moments(c, hv[at], hc[at], ci=ci, clustered=clustered)})
    out = pd.DataFrame(rows, columns=[c for c in OUTPUT_COLUMNS if c != "suppressed"])
    out["n"] = out["n"].astype("int64")
    out["n_clusters"] = pd.array(out["n_clusters"], dtype="Int64")
    out["few_clusters"] = pd.array(out["few_clusters"], dtype="boolean")
    out["p_fdr"] = np.nan
    for _, ix in out.groupby(["group_by", "group"], sort=False).groups.items():
        out.loc[ix, "p_fdr"] = bh_adjust(out.loc[ix, "p"].to_numpy(float))
    out["p_fdr_table"] = table_fdr(out, 0 if unsuppressed else k)
    out = suppress(out, n="n", k=k, unsuppressed=unsuppressed)
    return out[OUTPUT_COLUMNS]


def table_fdr(out: pd.DataFrame, k: int) -> np.ndarray:
    """BH q-values across each group_by's rows with n >= k (the family one table shows: all
    its groups x instruments x scales); NaN for the rows below k, which are not shown."""
    q = np.full(len(out), np.nan)
    n = out["n"].to_numpy(float)
    p = out["p"].to_numpy(float)
    for _, ix in out.groupby("group_by", sort=False).indices.items():
        ix = ix[n[ix] >= k]
        q[ix] = bh_adjust(p[ix])
    return q
