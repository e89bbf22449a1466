"""Participants vs the comparison group: cluster-robust OLS, baseline balance, raw and adjusted
differences. The comparison group is observational (not randomised), so every estimate here
comes with the check and the assumption a reviewer asks for.

- `cr2_ols` / `cr2_fit`: OLS coefficients with the CR2 cluster-robust covariance (the
  bias-reduced linearisation of Bell & McCaffrey 2002, developed by Pustejovsky & Tipton 2018,
  JBES 36(4)) and a Satterthwaite t reference per coefficient or contrast, working model
  sigma^2 I: what R's ``clubSandwich::coef_test(lm(...), vcov = "CR2", cluster = ...,
  test = "Satterthwaite")`` reports. `cr2_from_cells` does the same from per-cluster sums
  (X_j'X_j, X_j'y_j), so aggregated data (e.g. per exchange x arm moments) give the exact
  same numbers. `analytics.stats.prepost.cr2_mean` is this estimator's closed form for X = 1,
  kept there because it is vectorised over thousands of table cells; tests hold the two equal.
- `balance_table`: baseline standardised mean differences, participants minus comparison,
  pooled SD sqrt((s_T^2 + s_C^2) / 2) for means and sqrt((p_T(1 - p_T) + p_C(1 - p_C)) / 2)
  for each level of a categorical covariate (Austin 2009, Stat Med 28: 3083-3107);
  |SMD| > 0.1 is flagged ``imbalanced``.
- `ancova`: per scale, the raw difference in mean change (participants - comparison; the
  difference-in-differences of completers, change ~ arm) and the adjusted arm effect of
  post ~ pre + arm + covariates (ANCOVA), both with CR2 errors clustered by exchange and
  Satterthwaite df, the number of clusters and a flag below `FEW_CLUSTERS`.

Algebra of CR2 (one cluster j with rows X_j, residuals e_j; M = (X'X)^-1; H_jj = X_j M X_j'):
A_j = (I - H_jj)^(-1/2) (symmetric; directions with eigenvalue 0 get 0, as clubSandwich's
pseudo-inverse square root), V = M (sum_j X_j' A_j e_j e_j' A_j X_j) M. With G_j = X_j'X_j =
V_j S_j^2 V_j' (rank r) and F^(q) = (I - S_j V_j' M V_j S_j)^q, every term depends on the data
only through G_j and X_j'e_j: X_j' A_j e_j = V_j S_j F^(-1/2) S_j^-1 V_j' X_j'e_j and
X_j' A_j^q X_j = V_j S_j F^(q) S_j V_j'. The Satterthwaite df of c'beta is
(sum_j p_j'p_j)^2 / sum_ij (p_i'p_j)^2 with p_j = (I - H)_j' A_j X_j M c (Pustejovsky &
Tipton 2018, eq. 11 with Phi = I); p_i'p_j = [i = j] w_j'w_j - u_i' M u_j with
w_j'w_j = c'M X_j'A_j^2 X_j M c and u_j = X_j' A_j X_j M c.

Not estimable: sum_j p_j'p_j is the CR2 variance's expectation under sigma^2 I. When it is 0
(relative to c'Mc) the CR2 variance of c'beta is 0 for every y, since every cluster informing
it has leverage 1 there; when every cluster's X_j'e_j is 0 it is 0 for these y (a perfect
fit). Floating point turns either 0 into noise (se ~1e-16 with p ~1e-16, or df ~0.004 with an
interval of +-1e145), so `Cr2Fit.test` reports se, df, CI and p as NaN there and keeps the
estimate (`prepost.CR2_ZERO_TOL` says why the tolerance is 1e-10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analytics.stats.prepost import FEW_CLUSTERS, cr2_not_estimable, cr2_scores_vanish
from analytics.suppression import DEFAULT_K, suppress

__all__ = [
    "BALANCE_COLUMNS",
    "COMPARISON_COLUMNS",
    "CR2_COLUMNS",
    "Cr2Fit",
    "METHOD_ANCOVA",
    "METHOD_RAW",
    "SMD_THRESHOLD",
    "PAIR_MOMENTS",
    "ancova",
    "ancova_cells",
    "balance_from_sums",
    "balance_table",
    "cluster_codes",
    "cr2_fit",
    "cr2_from_cells",
    "cr2_ols",
    "pair_cells",
    "smd_mean",
    "smd_proportion",
]

SMD_THRESHOLD = 0.1  # Austin 2009: |SMD| above 0.1 is a meaningful imbalance
_EIG_TOL = 1e-12  # clubSandwich's Sym_power: eigenvalues below 1e-12 count as zero

CR2_COLUMNS = ["estimate", "se_cr2", "df_cr2", "ci_low_cr2", "ci_high_cr2", "p_cr2",
               "n_clusters", "few_clusters"]


@dataclass(frozen=True)
class Cr2Fit:
    """An OLS fit with what CR2 tests need: coefficients, the CR2 covariance and, per cluster,
    X_j'A_j X_j and X_j'A_j^2 X_j (for the Satterthwaite df of any contrast)."""

    names: list[str]
    beta: np.ndarray
    vcov: np.ndarray
    bread: np.ndarray  # M = (X'X)^-1
    k_half: np.ndarray  # (J, p, p): X_j' A_j X_j
    k_one: np.ndarray  # (J, p, p): X_j' A_j^2 X_j
    n_obs: int
    n_clusters: int
    # every cluster's score X_j'e_j is 0 up to rounding (`prepost.cr2_scores_vanish`): the
    # model reproduces the data, and every CR2 variance is 0 in exact arithmetic
    scores_vanish: bool = False

    def test(self, c: np.ndarray | Sequence[float], *, ci: float = 0.95) -> dict[str, float]:
        """c'beta with its CR2 SE, Satterthwaite df, t CI and two-sided p. NaN below 2
        clusters, and NaN (the estimate kept) where the CR2 variance of c'beta is 0 in exact
        arithmetic, for any y (`prepost.cr2_not_estimable`: the clusters that inform it have
        leverage 1) or for these y (`scores_vanish`): floating point then gives rounding noise
        (se ~1e-16, df ~0.004, p anywhere), not a standard error."""
        c = np.asarray(c, dtype=float)
        est = float(c @ self.beta)
        nan = float("nan")
        out = {"estimate": est, "se_cr2": nan, "df_cr2": nan, "ci_low_cr2": nan,
               "ci_high_cr2": nan, "p_cr2": nan, "n_clusters": self.n_clusters,
               "few_clusters": self.n_clusters < FEW_CLUSTERS}
        if self.n_clusters < 2 or self.scores_vanish:
            return out
        mc = self.bread @ c
        ww = np.einsum("i,jik,k->j", mc, self.k_one, mc)  # w_j'w_j
        u = self.k_half @ mc  # (J, p): u_j
        umu = np.einsum("ji,ik,jk->j", u, self.bread, u)  # u_j' M u_j
        cross = u @ self.bread @ u.T  # u_i' M u_j
        num = float((ww - umu).sum())  # sum_j p_j'p_j: E(CR2 variance) / sigma^2
        cmc = float(c @ mc)
        if cmc <= 0 or cr2_not_estimable(num / cmc):
            return out
        var = float(c @ self.vcov @ c)
        se = math.sqrt(max(var, 0.0))
        den = float((ww * ww).sum() - 2 * (ww * umu).sum() + (cross * cross).sum())
        dof = num * num / den if den > 0 else nan
        out.update(se_cr2=se, df_cr2=dof)
        if se > 0 and dof > 0:
            q = float(stats.t.ppf(0.5 + ci / 2, dof))
            out.update(ci_low_cr2=est - q * se, ci_high_cr2=est + q * se,
                       p_cr2=float(2 * stats.t.sf(abs(est / se), dof)))
        return out


def _sym_power(a: np.ndarray, q: float) -> np.ndarray:
    """a^q for stacked symmetric matrices; eigenvalues below `_EIG_TOL` give 0 (pseudo)."""
    val, vec = np.linalg.eigh(a)
    keep = val > _EIG_TOL
    powered = np.where(keep, np.where(keep, val, 1.0) ** q, 0.0)
    return (vec * powered[..., None, :]) @ np.swapaxes(vec, -1, -2)


def cr2_from_cells(gram: np.ndarray, xy: np.ndarray, *, names: Sequence[str] | None = None,
                   n_obs: int | None = None) -> Cr2Fit:
    """OLS with CR2 from per-cluster sums: `gram` (J, p, p) = X_j'X_j, `xy` (J, p) = X_j'y_j.

    Exact, not an approximation: OLS, the CR2 meat and the Satterthwaite df depend on the data
    only through these sums (module docstring), so per exchange x arm counts and sums of a
    two-group comparison give what `cr2_ols` gives on the rows. Raises ValueError when X'X is
    singular (drop aliased columns first)."""
    gram = np.asarray(gram, dtype=float)
    xy = np.asarray(xy, dtype=float)
    if gram.ndim != 3 or gram.shape[1] != gram.shape[2] or xy.shape != gram.shape[:2]:
        raise ValueError("gram must be (J, p, p) and xy (J, p)")
    n_cl, p = xy.shape
    xtx = gram.sum(axis=0)
    if np.linalg.matrix_rank(xtx) < p:
        raise ValueError("the design matrix is rank deficient: drop aliased columns")
    bread = np.linalg.inv(xtx)
    bread = (bread + bread.T) / 2
    beta = bread @ xy.sum(axis=0)
    xe = xy - gram @ beta  # X_j'e_j
    # G_j = V S^2 V' (rank r_j <= p); directions with S = 0 carry nothing
    lam, vec = np.linalg.eigh(gram)
    scale = np.maximum(lam.max(axis=1, keepdims=True), 1.0)
    live = lam > 1e-10 * scale
    s = np.sqrt(np.where(live, lam, 0.0))
    s_inv = np.where(live, 1.0 / np.where(live, s, 1.0), 0.0)
    vs = vec * s[:, None, :]  # V S
    inner = np.eye(p) - np.swapaxes(vs, 1, 2) @ bread @ vs  # I - S V' M V S
    # dead directions (S = 0) are not in the cluster's column space: leave them at 0
    inner = np.where(live[:, :, None] & live[:, None, :], inner, 0.0)
    f_half = _sym_power(inner, -0.5)
    f_one = _sym_power(inner, -1.0)
    k_half = vs @ f_half @ np.swapaxes(vs, 1, 2)
    k_one = vs @ f_one @ np.swapaxes(vs, 1, 2)
    vsi = vec * s_inv[:, None, :]  # V S^-1
    a = np.einsum("jik,jk->ji", vs @ f_half @ np.swapaxes(vsi, 1, 2), xe)  # X_j' A_j e_j
    meat = a.T @ a
    vcov = bread @ meat @ bread
    nm = list(names) if names is not None else [f"x{i}" for i in range(p)]
    # X_j'e_j = X_j'y_j - G_j beta: rounding relative to the size of the terms it subtracts
    vanish = cr2_scores_vanish(xe, np.abs(xy) + np.abs(gram) @ np.abs(beta))
    return Cr2Fit(nm, beta, (vcov + vcov.T) / 2, bread, k_half, k_one,
                  int(n_obs) if n_obs is not None else -1, int(n_cl), vanish)


def cluster_codes(cluster: np.ndarray | pd.Series) -> np.ndarray:
    """Integer cluster codes 0..J-1 from labels; a missing label makes the row a cluster of its
    own. The product's rule for rows without a cluster label in every cluster-robust estimate
    (CR2 here, `prepost.cr2_mean`, `means.cr2_means`, the equity gaps); cells that hold several
    unlabelled rows are split first (`means.unlabelled_rows`)."""
    codes, _ = pd.factorize(pd.Series(np.asarray(cluster), dtype=object), use_na_sentinel=True)
    codes = codes.astype(np.int64)
    miss = codes < 0
    if miss.any():
        codes[miss] = codes.max(initial=-1) + 1 + np.arange(int(miss.sum()))
    return codes


def cr2_fit(X: np.ndarray, y: np.ndarray, cluster: np.ndarray | pd.Series,
            names: Sequence[str] | None = None) -> Cr2Fit:
    """`Cr2Fit` of OLS y ~ X with clusters `cluster` (one label per row)."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or y.shape != (len(X),):
        raise ValueError("X must be (n, p) and y (n,)")
    codes = cluster_codes(cluster)
    if codes.shape != y.shape:
        raise ValueError("cluster must have one label per row")
    n_cl = int(codes.max()) + 1 if len(codes) else 0
    p = X.shape[1]
    gram = np.zeros((n_cl, p, p))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_cl + 1))
    xs = X[order]
    for j in range(n_cl):
        xj = xs[bounds[j]:bounds[j + 1]]
        gram[j] = xj.T @ xj
    xy = np.zeros((n_cl, p))
    for i in range(p):
        xy[:, i] = np.bincount(codes, weights=X[:, i] * y, minlength=n_cl)
    return cr2_from_cells(gram, xy, names=names, n_obs=len(y))


def cr2_ols(X: np.ndarray, y: np.ndarray, cluster: np.ndarray | pd.Series,
            names: Sequence[str] | None = None, *, ci: float = 0.95) -> pd.DataFrame:
    """OLS coefficients with CR2 cluster-robust SEs and Satterthwaite df, one row per term:
    term, estimate, se_cr2, df_cr2, ci_low_cr2, ci_high_cr2, p_cr2, n_clusters, few_clusters
    (R: ``clubSandwich::coef_test(lm(y ~ X - 1), vcov = "CR2", cluster = cluster,
    test = "Satterthwaite")`` and ``conf_int(...)``).

    >>> X = np.column_stack([np.ones(6), [0, 1, 0, 1, 0, 1]])
    >>> r = cr2_ols(X, np.array([1.0, 2, 2, 4, 3, 3]), list("aabbcc"), ["Intercept", "arm"])
    >>> r.loc[1, "term"], round(float(r.loc[1, "estimate"]), 6), int(r.loc[1, "n_clusters"])
    ('arm', 1.0, 3)
    """
    fit = cr2_fit(X, y, cluster, names)
    eye = np.eye(len(fit.beta))
    rows = [{"term": nm, **fit.test(eye[i], ci=ci)} for i, nm in enumerate(fit.names)]
    return pd.DataFrame(rows, columns=["term", *CR2_COLUMNS])


# ---------------------------------------------------------------------------------------------
# Baseline balance
# ---------------------------------------------------------------------------------------------

BALANCE_COLUMNS = [
    "covariate", "instrument", "scale", "level", "statistic", "n_participant", "n_comparison",
    "value_participant", "value_comparison", "sd_participant", "sd_comparison", "smd",
    "imbalanced", "suppressed",
]


def smd_mean(x_t: np.ndarray, x_c: np.ndarray) -> float:
    """(mean_T - mean_C) / sqrt((s_T^2 + s_C^2) / 2), sample SDs (Austin 2009, eq. 1).

    >>> round(smd_mean(np.array([2.0, 4.0]), np.array([1.0, 3.0])), 4)
    0.7071
    """
    x_t, x_c = np.asarray(x_t, float), np.asarray(x_c, float)
    if len(x_t) < 2 or len(x_c) < 2:
        return float("nan")
    pooled = math.sqrt((x_t.var(ddof=1) + x_c.var(ddof=1)) / 2)
    return float((x_t.mean() - x_c.mean()) / pooled) if pooled > 0 else float("nan")


def smd_proportion(p_t: float, p_c: float) -> float:
    """(p_T - p_C) / sqrt((p_T(1 - p_T) + p_C(1 - p_C)) / 2) (Austin 2009, eq. 2).

    >>> round(smd_proportion(0.5, 0.3), 4)
    0.417
    """
    pooled = math.sqrt((p_t * (1 - p_t) + p_c * (1 - p_c)) / 2)
    return float((p_t - p_c) / pooled) if pooled > 0 else float("nan")


def balance_table(
    units: pd.DataFrame,
    *,
    arm: str = "is_comparison",
    categorical: Sequence[str] = (),
    pre_scores: pd.DataFrame | None = None,
    instrument: str = "instrument",
    scale: str = "scale",
    score: str = "score",
    k: int = DEFAULT_K,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """Baseline standardised mean differences, participants minus comparison group.

    `units`: one row per unit (participant x exchange) of the baseline sample, with the
    boolean `arm` (True = comparison group) and the `categorical` covariates (a missing value
    is its own level "not reported"). `pre_scores`: long pre-wave scores (the `arm` column,
    `instrument`, `scale`, `score`), one SMD of means per scale over those with a score.

    Rows: pre scores (covariate "pre_score", statistic "mean", value = mean, sd = sample SD)
    then each level of each categorical covariate (statistic "proportion", value = share of
    the arm in that level, sd = sqrt(p(1 - p))). ``imbalanced``: |smd| > `SMD_THRESHOLD`.
    Small cells (`analytics.suppression.suppress`, threshold k): a row is blanked when either
    arm has fewer than k units, or when the level's count, or the count outside the level, in
    either arm is between 1 and k - 1 (its proportion would reveal those few people).

    >>> u = pd.DataFrame({"is_comparison": [False] * 12 + [True] * 12,
    ...                   "role": ["student"] * 6 + ["teacher"] * 6 + ["student"] * 12})
    >>> b = balance_table(u, categorical=["role"], k=0)
    >>> b[["level", "value_participant", "value_comparison", "smd"]].round(4).values.tolist()
    [['student', 0.5, 1.0, -1.4142], ['teacher', 0.5, 0.0, 1.4142]]
    """
    if arm not in units.columns:
        raise ValueError(f"units has no column {arm!r}")
    moments = None
    if pre_scores is not None and len(pre_scores):
        ps = pre_scores[pre_scores[score].notna()]
        g = ps.assign(_arm=ps[arm].astype(bool)).groupby(
            [instrument, scale, "_arm"], sort=True, observed=True)[score]
        moments = pd.concat({"n": g.size(), "mean": g.mean(), "sd": g.std(ddof=1)}, axis=1)
        moments = moments.reset_index().rename(columns={instrument: "instrument",
                                                        scale: "scale", "_arm": "comparison"})
    comp = units[arm].astype(bool)
    counts = []
    for cov in categorical:
        if cov not in units.columns:
            raise ValueError(f"units has no column {cov!r}")
        v = units[cov].astype("object").where(units[cov].notna(), "not reported").astype(str)
        counts.append(pd.DataFrame({"covariate": cov, "level": v.to_numpy(),
                                    "comparison": comp.to_numpy()}))
    levels = (pd.concat(counts).value_counts().rename("n").reset_index() if counts else None)
    return balance_from_sums(moments, levels, n_units=(int((~comp).sum()), int(comp.sum())),
                             categorical=categorical, k=k, unsuppressed=unsuppressed)


def balance_from_sums(
    moments: pd.DataFrame | None,
    levels: pd.DataFrame | None,
    *,
    n_units: tuple[int, int],
    categorical: Sequence[str] = (),
    k: int = DEFAULT_K,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """`balance_table` from counts and moments (a GROUP BY in SQL, or pandas').

    `moments`: per instrument, scale and arm (`comparison`, True = comparison group) of the
    pre scores, `n`, `mean` and `sd` (sample SD). `levels`: per `covariate`, `level` and arm,
    the number `n` of units in that level; `n_units` = (participants, comparison) units of the
    baseline sample. Rows, columns and suppression are `balance_table`'s."""
    rows: list[dict] = []
    if moments is not None and len(moments):
        for (inst, sc), g in moments.groupby(["instrument", "scale"], sort=True,
                                             observed=True):
            arms = g.set_index(g["comparison"].astype(bool))
            n = {a: int(arms.loc[a, "n"]) if a in arms.index else 0 for a in (False, True)}
            nt, nc = n[False], n[True]

            st, sc_, mt, mc = (float(arms.loc[a, c]) if n[a] >= need else math.nan
                               for a, c, need in ((False, "sd", 2), (True, "sd", 2),
                                                  (False, "mean", 1), (True, "mean", 1)))
            pooled = math.sqrt((st * st + sc_ * sc_) / 2)
            rows.append({
                "covariate": "pre_score", "instrument": str(inst), "scale": str(sc),
                "level": "", "statistic": "mean", "n_participant": nt, "n_comparison": nc,
                "value_participant": mt, "value_comparison": mc,
                "sd_participant": st, "sd_comparison": sc_,
                "smd": (mt - mc) / pooled if pooled > 0 else math.nan, "_n": min(nt, nc)})
    nt, nc = n_units
    by = ({} if levels is None or not len(levels) else
          {(str(c), str(lv), bool(a)): int(n) for c, lv, a, n in zip(
              levels["covariate"], levels["level"], levels["comparison"], levels["n"],
              strict=True)})
    for cov in categorical:
        for level in sorted({lv for c, lv, _ in by if c == cov}):
            at, ac = by.get((cov, level, False), 0), by.get((cov, level, True), 0)
            pt = at / nt if nt else math.nan
            pc = ac / nc if nc else math.nan
            counts = [nt, nc] + [m for m in (at, ac, nt - at, nc - ac) if m > 0]
            rows.append({
                "covariate": cov, "instrument": "", "scale": "", "level": level,
                "statistic": "proportion", "n_participant": nt, "n_comparison": nc,
                "value_participant": pt, "value_comparison": pc,
                "sd_participant": math.sqrt(pt * (1 - pt)) if nt else math.nan,
                "sd_comparison": math.sqrt(pc * (1 - pc)) if nc else math.nan,
                "smd": smd_proportion(pt, pc) if nt and nc else math.nan,
                "_n": min(counts)})
    out = pd.DataFrame(rows, columns=[*BALANCE_COLUMNS[:-2], "_n"])
    out["n_participant"] = out["n_participant"].astype("int64")
    out["n_comparison"] = out["n_comparison"].astype("int64")
    out["imbalanced"] = pd.array(np.where(out["smd"].isna(), None,
                                          out["smd"].abs() > SMD_THRESHOLD), dtype="boolean")
    out = suppress(out, n="_n", k=k, unsuppressed=unsuppressed)
    return out[BALANCE_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Raw and adjusted comparison
# ---------------------------------------------------------------------------------------------

METHOD_RAW = "raw_change_difference"
METHOD_ANCOVA = "ancova"
COMPARISON_COLUMNS = [
    "instrument", "scale", "method", "n_participant", "n_comparison", *CR2_COLUMNS,
    "adjusted_for", "suppressed",
]


def _design(d: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
            ) -> tuple[np.ndarray, list[str]]:
    """Intercept, numeric columns, then treatment-coded dummies (reference: the first level in
    sorted order, as R's factor); columns that are constant or aliased with earlier ones are
    dropped, as R's lm does (in column order)."""
    cols = [np.ones(len(d))]
    names = ["Intercept"]
    for c in numeric:
        cols.append(d[c].to_numpy(float))
        names.append(c)
    for c in categorical:
        # levels as text, a missing value "not reported"; dummies from integer codes, not from
        # comparing text row by row
        codes, uniques = pd.factorize(d[c], use_na_sentinel=True)
        labels = [str(u) for u in uniques] + ["not reported"]
        levels = sorted(set(labels[:len(uniques)] + (["not reported"] if (codes < 0).any()
                                                      else [])))
        at = {lv: j for j, lv in enumerate(levels)}
        level_of = np.array([at.get(lab, -1) for lab in labels], dtype=np.int64)
        lc = level_of[codes]  # code -1 (missing) picks the last label, "not reported"
        for j, level in enumerate(levels[1:], start=1):
            cols.append((lc == j).astype(float))
            names.append(f"{c}[T.{level}]")
    X = np.column_stack(cols)
    keep: list[int] = []
    # the kept columns' orthonormal basis, filled in order (column-major: a slice of its first
    # columns is one contiguous block)
    q = np.empty((len(X), X.shape[1]), order="F")
    for i, x in enumerate(cols):
        basis = q[:, :len(keep)]
        r = x - basis @ (basis.T @ x)
        norm = float(np.linalg.norm(r))
        if norm > 1e-9 * max(float(np.linalg.norm(x)), 1.0):
            q[:, len(keep)] = r / norm
            keep.append(i)
    return X[:, keep], [names[i] for i in keep]


PAIR_MOMENTS = ("n", "s_pre", "s_post", "s_pre2", "s_prepost", "s_post2")
_ALIAS_TOL = 1e-9  # `_kept_columns`: share of a column's sum of squares left after the others


def pair_cells(pairs: pd.DataFrame, *, pre: str = "pre", post: str = "post",
               keys: Sequence[str] = ()) -> pd.DataFrame:
    """The per-cell sums `ancova_cells` reads, from one row per unit: `keys` (the scale, the
    cluster, the arm and the covariates) and `PAIR_MOMENTS` (n, Σpre, Σpost, Σpre², Σpre·post,
    Σpost²) of the rows with both scores. A missing key is a level of its own."""
    d = pairs[pairs[pre].notna() & pairs[post].notna()]
    x, y = d[pre].to_numpy(float), d[post].to_numpy(float)
    m = pd.DataFrame({"n": np.ones(len(d)), "s_pre": x, "s_post": y, "s_pre2": x * x,
                      "s_prepost": x * y, "s_post2": y * y}, index=d.index)
    cells = pd.concat([d[list(keys)], m], axis=1).groupby(
        list(keys), sort=False, observed=True, dropna=False)[list(PAIR_MOMENTS)].sum()
    return cells.reset_index().assign(n=lambda c: c["n"].astype("int64"))


def _kept_columns(xtx: np.ndarray) -> list[int]:
    """The columns of a design that `_design` keeps, decided on X'X alone: in column order, a
    column stays when the part of it orthogonal to the columns kept before it has more than
    `_ALIAS_TOL` of its sum of squares (a zero or aliased column goes, as R's lm drops it).
    On sums, not rows: the tolerance is looser than `_design`'s QR (X'X squares the
    condition), which only matters for a column within 1e-4 of aliased."""
    keep: list[int] = []
    for i in range(len(xtx)):
        gii = float(xtx[i, i])
        if gii <= 0:
            continue
        if keep:
            g = xtx[keep, i]
            gii_left = gii - float(g @ np.linalg.solve(xtx[np.ix_(keep, keep)], g))
        else:
            gii_left = gii
        if gii_left > _ALIAS_TOL * gii:
            keep.append(i)
    return keep


def _levels(cells: pd.DataFrame, covariates: Sequence[str]
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per covariate, each cell's level code and the levels in sorted order (a missing value
    is "not reported"): coded once for every scale's design."""
    out = {}
    for c in covariates:
        v = cells[c].astype("object").where(cells[c].notna(), "not reported").astype(str)
        codes, uniq = pd.factorize(v.to_numpy(object), sort=True)
        out[c] = (codes, np.asarray(uniq, dtype=object))
    return out


def _cell_design(comp: np.ndarray, levels: dict[str, tuple[np.ndarray, np.ndarray]],
                 rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The design row of each cell in `rows`, pre score left out: intercept, participant
    (1 = not the comparison arm `comp`), then treatment-coded dummies of the covariates
    (`_levels`; reference: the first level present, in sorted order, as R's factor)."""
    cols = [np.ones(len(rows)), (~comp[rows]).astype(float)]
    names = ["Intercept", "_participant"]
    for c, (codes, uniq) in levels.items():
        mine = codes[rows]
        for code in np.unique(mine)[1:]:
            cols.append((mine == code).astype(float))
            names.append(f"{c}[T.{uniq[code]}]")
    return np.column_stack(cols), names


def _cluster_sums(codes: np.ndarray, n_cl: int, rows: np.ndarray, xy: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster (`codes` of each row), the sums of rows' outer products r r' (n_cl, p, p)
    and of `xy` (n_cl, p): sparse one-hot products, no (rows, p, p) array."""
    from scipy import sparse

    onehot = sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))),
                               shape=(n_cl, len(codes)))
    p = rows.shape[1]
    gram = np.stack([onehot @ (rows * rows[:, [a]]) for a in range(p)], axis=1)
    return gram.reshape(n_cl, p, p), onehot @ xy


def _cell_fit(z: np.ndarray, names: list[str], m: dict[str, np.ndarray], codes: np.ndarray,
              n_cl: int, *, with_pre: bool) -> Cr2Fit | None:
    """The CR2 fit of one specification from the cells' sums: with `with_pre`, post on
    [intercept, pre, the rest of z]; without, post − pre on z's first two columns. None when
    the participant column is aliased (no contrast to test).

    A cell's share of X'X is that of two rows: sqrt(n)·[z, mean pre] and [0, sqrt of the
    pre scores' sum of squared deviations] (their outer products give n z z', z Σpre and
    Σpre²)."""
    n = m["n"]
    root = np.sqrt(n)
    if with_pre:
        zz = np.insert(z, 1, m["s_pre"] / n, axis=1)
        dev = np.zeros_like(zz)
        dev[:, 1] = np.sqrt(np.maximum(m["s_pre2"] - m["s_pre"] ** 2 / n, 0.0))
        rows = np.concatenate([zz * root[:, None], dev])
        xy = np.insert(z * m["s_post"][:, None], 1, m["s_prepost"], axis=1)
        xy = np.concatenate([xy, np.zeros_like(xy)])  # the deviation rows add nothing to X'y
        names = [names[0], "pre", *names[1:]]
        codes = np.concatenate([codes, codes])
    else:
        rows = z[:, :2] * root[:, None]
        xy = z[:, :2] * (m["s_post"] - m["s_pre"])[:, None]
        names = names[:2]
    gram_j, xy_j = _cluster_sums(codes, n_cl, rows, xy)
    keep = _kept_columns(gram_j.sum(axis=0))
    kept = [names[i] for i in keep]
    if "_participant" not in kept:
        return None
    return cr2_from_cells(gram_j[:, keep][:, :, keep], xy_j[:, keep], names=kept,
                          n_obs=int(n.sum()))


def ancova_cells(
    cells: pd.DataFrame,
    *,
    arm: str = "is_comparison",
    cluster: str = "exchange_id",
    covariates: Sequence[str] = (),
    instrument: str = "instrument",
    scale: str = "scale",
    ci: float = 0.95,
    k: int = DEFAULT_K,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """`ancova` from per-cell sums: one row per instrument × scale × `cluster` × `arm` ×
    covariate levels with `PAIR_MOMENTS` over its units with both scores (`pair_cells`, or a
    GROUP BY in SQL). Exact, not an approximation: within a cell every design column but the
    pre score is constant, so each cluster's X'X and X'y (all OLS, CR2 and its Satterthwaite
    df depend on, `cr2_from_cells`) are sums of the cells' moments. The read layer computes a
    filtered view's comparison this way without fetching its rows (issue 17)."""
    need = [arm, cluster, instrument, scale, *covariates, *PAIR_MOMENTS]
    missing = [c for c in need if c not in cells.columns]
    if missing:
        raise ValueError(f"cells has no column(s) {missing}")
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")
    rows: list[dict] = []
    live = cells[cells["n"] > 0].reset_index(drop=True)
    levels = _levels(live, covariates)
    arms = live[arm].astype(bool).to_numpy()
    for (inst, sc), idx in sorted(live.groupby([instrument, scale], observed=True)
                                  .indices.items()):
        g = live.iloc[idx]
        comp = arms[idx]
        n = g["n"].to_numpy(float)
        nt, nc = int(n[~comp].sum()), int(n[comp].sum())
        base = {"instrument": str(inst), "scale": str(sc), "n_participant": nt,
                "n_comparison": nc, "_n": min(nt, nc)}
        codes = cluster_codes(g[cluster])
        n_cl = int(codes.max()) + 1
        m = {c: g[c].to_numpy(float) for c in PAIR_MOMENTS}
        z, names = _cell_design(arms, levels, idx)
        for method, with_pre in ((METHOD_RAW, False), (METHOD_ANCOVA, True)):
            row = {**base, "method": method, **dict.fromkeys(CR2_COLUMNS, math.nan),
                   "n_clusters": n_cl, "few_clusters": n_cl < FEW_CLUSTERS,
                   "adjusted_for": "none (post − pre on arm)" if not with_pre else ""}
            if nt >= 2 and nc >= 2:
                fit = _cell_fit(z, names, m, codes, n_cl, with_pre=with_pre)
                if fit is not None:
                    c = np.zeros(len(fit.names))
                    c[fit.names.index("_participant")] = 1.0
                    row.update(fit.test(c, ci=ci))
                if with_pre:  # the covariates that kept at least one column
                    kept = fit.names if fit is not None else []
                    row["adjusted_for"] = ", ".join(
                        (["pre score"] if "pre" in kept else [])
                        + [c for c in covariates if any(nm.startswith(f"{c}[T.") for nm in kept)])
            rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c != "suppressed"]
                       + ["_n"])
    out["n_participant"] = out["n_participant"].astype("int64")
    out["n_comparison"] = out["n_comparison"].astype("int64")
    out["n_clusters"] = pd.array(out["n_clusters"], dtype="Int64")
    out["few_clusters"] = pd.array(out["few_clusters"], dtype="boolean")
    out = suppress(out, n="_n", k=k, unsuppressed=unsuppressed, keep=())
    return out[COMPARISON_COLUMNS].reset_index(drop=True)


def ancova(
    pairs: pd.DataFrame,
    *,
    pre: str = "pre",
    post: str = "post",
    arm: str = "is_comparison",
    cluster: str = "exchange_id",
    covariates: Sequence[str] = (),
    instrument: str = "instrument",
    scale: str = "scale",
    ci: float = 0.95,
    k: int = DEFAULT_K,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """Participants minus comparison group per scale, raw and adjusted, CR2 by `cluster`.

    `pairs`: one row per unit with both a `pre` and a `post` score (rows missing either are
    dropped), the boolean `arm` (True = comparison group), the `cluster` label (the exchange:
    a comparison person's is the exchange their class was matched to) and the categorical
    `covariates`. Two rows per instrument x scale:

    - ``raw_change_difference``: OLS of post - pre on 1 + participant, i.e. the mean change of
      participants minus that of the comparison group (the completers' difference in
      differences), CR2 SE by cluster, Satterthwaite df;
    - ``ancova``: OLS of post on 1 + pre + participant + covariates (treatment-coded, aliased
      columns dropped), the coefficient of participant with CR2 / Satterthwaite. It assumes no
      unmeasured confounding given pre and the covariates (and a common pre slope).

    ``adjusted_for`` names the terms of the model. Suppression (`analytics.suppression`): a row
    with fewer than k units in either arm is blanked and says why. Computed as `ancova_cells`
    on the units' sums per cluster, arm and covariate levels (`pair_cells`); a missing cluster
    label makes the unit a cluster of its own.

    >>> rng = np.random.default_rng(1)
    >>> n = 400
    >>> d = pd.DataFrame({"instrument": "i", "scale": "s", "exchange_id": rng.integers(0, 20, n),
    ...                   "is_comparison": rng.random(n) < 0.5, "pre": rng.normal(3, 1, n)})
    >>> d["post"] = d["pre"] + 0.5 * ~d["is_comparison"] + rng.normal(0, 0.3, n)
    >>> r = ancova(d)
    >>> r["method"].tolist(), bool((r["ci_low_cr2"] < 0.5).all() and (r["ci_high_cr2"] > 0.5).all())
    (['raw_change_difference', 'ancova'], True)
    """
    need = [pre, post, arm, cluster, instrument, scale, *covariates]
    missing = [c for c in need if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs has no column(s) {missing}")
    d = pairs[pairs[pre].notna() & pairs[post].notna()]
    d = d.assign(**{cluster: cluster_codes(d[cluster]), arm: d[arm].astype(bool)})
    cells = pair_cells(d, pre=pre, post=post,
                       keys=[instrument, scale, cluster, arm, *covariates])
    return ancova_cells(cells, arm=arm, cluster=cluster, covariates=covariates,
                        instrument=instrument, scale=scale, ci=ci, k=k,
                        unsuppressed=unsuppressed)
