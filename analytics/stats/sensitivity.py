"""How far does dropout move the gain? Completers, inverse-probability weighting and a
delta-adjusted tipping-point analysis, side by side, per scale and wave.

The units are exchange participants with a pre score (the caller leaves the comparison group
out). For a later wave W (post, followup) a unit *responded* when it has a score at W; its
change is d = score(W) − score(pre). Three estimates of the mean change, each row naming its
method:

- ``completers``: the mean change of the responders only (what the paired pre/post table
  shows), CR2 cluster-robust by exchange with Satterthwaite df (`prepost.cr2_mean`;
  Pustejovsky & Tipton 2018). It answers how much those who answered W changed.
- ``ipw``: inverse-probability weighting (Robins, Rotnitzky & Zhao 1995; Seaman & White 2013,
  SMMR 22(3)). A logistic regression (statsmodels ``GLM``, binomial, logit link; fitted on the
  responder and non-responder counts per distinct design row, the same likelihood) of
  responding at W on log1p(events logged), the pre score and, when it varies, the modality
  gives p̂_i;
  responders get the stabilised weight w_i = P̂(respond) / p̂_i, truncated at the 1st and 99th
  percentiles of the responders' weights (Cole & Hernán 2008, AJE 168(6)). The estimate is the
  weighted mean change, the intercept of statsmodels ``WLS(d ~ 1, weights=w)`` with
  ``cov_type="cluster"`` by exchange: CR1 sandwich (G/(G − 1) · (N − 1)/(N − 1) small-sample
  factor), t reference with G − 1 df (G = exchanges). The weights are treated as known, which
  ignores the propensity model's estimation (usually conservative for the mean; Lunceford &
  Davidian 2004). It targets all participants' mean change if responding is missing at random
  given engagement, pre score and modality (MAR). Truncation trades bias for variance: in
  tests/test_sensitivity.py's simulation with strong selection (200 programs) it leaves a bias
  of 0.010 (0.7 SE; completers 0.072) and 91 % coverage, where untruncated weights give no bias
  and 94 %; pass ``truncate=(0, 1)`` for untruncated weights.
- ``delta``: a delta-adjusted pattern-mixture analysis (Carpenter & Kenward 2013, ch. 10;
  Ratitch, O'Kelly & Tosiello 2013, Pharm Stat 12(6)). An OLS regression of the responders'
  change on the pre score, log1p(events) and modality predicts each non-responder's change;
  the non-responders' change is that prediction + delta · s, s = SD of the responders' change,
  delta in `DELTAS`. The estimate is the mean over every unit (observed change for responders,
  adjusted prediction for the others). delta = 0 is regression imputation under MAR; delta < 0
  says non-responders changed less than comparable responders (missing not at random, MNAR).
  Its SE is the cluster-robust sandwich of the estimator's influence function (the regression
  coefficients' estimation included; Tsiatis 2006, ch. 3), with the CR1 factor G/(G − 1) and t
  with G − 1 df, the same reference as the IPW row.
- ``tipping_point``: the delta (continuous, by root finding) at which the 95% CI's lower bound
  of the ``delta`` estimate reaches 0: how much worse than comparable responders the
  non-responders would have to have changed for the gain to lose significance. Its
  ``estimate`` is the mean change at that delta, its ``ci_low`` 0. Empty when no delta in
  [−`TIPPING_RANGE`, `TIPPING_RANGE`] SDs reaches it.

Rows with fewer than k responders, or (for the all-participant methods) fewer than k
non-responders, are suppressed (`analytics.suppression.suppress`): both groups are cells the
all-participants mean rests on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from analytics.stats.prepost import FEW_CLUSTERS, _codes, cr2_mean
from analytics.suppression import DEFAULT_K, suppress

__all__ = ["DELTAS", "METHODS", "OUTPUT_COLUMNS", "TIPPING_RANGE", "TRUNCATE", "delta_adjusted",
           "ipw_mean", "sensitivity", "sensitivity_units",
           "tipping_delta"]

DELTAS: tuple[float, ...] = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5)  # SDs of the responders' change
TIPPING_RANGE = 10.0
TRUNCATE = (0.01, 0.99)  # percentiles of the responders' weights the IPW weights are cut to
METHODS = ("completers", "ipw", "delta", "tipping_point")
OUTPUT_COLUMNS = ["instrument", "scale", "wave", "method", "delta", "estimate", "se", "dof",
                  "ci_low", "ci_high", "n", "n_responded", "n_clusters", "few_clusters",
                  "suppressed"]


def _design(pre: np.ndarray, engagement: np.ndarray,
            modality: pd.Series | np.ndarray | None) -> np.ndarray:
    """[1, pre, log1p(engagement), modality dummies (first level in sorted order the reference;
    a missing modality is 0 in each)]."""
    cols = [np.ones(len(pre)), pre, np.log1p(engagement)]
    if modality is not None:
        codes, uniques = pd.factorize(pd.Series(modality, copy=False))  # -1: missing
        order = sorted(range(len(uniques)), key=lambda j: uniques[j])
        cols += [(codes == j).astype(float) for j in order[1:]]
    return np.column_stack(cols)


def _distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `x` (no NaN) and each row's index among them, by hashing one column
    at a time (`pandas.factorize`): `np.unique(axis=0)` sorts the rows as byte strings, 1.7 s
    for 1M rows of 5 columns against 0.1 s."""
    key = np.zeros(len(x), dtype=np.int64)
    for j in range(x.shape[1]):
        codes, levels = pd.factorize(x[:, j])
        key = pd.factorize(key * len(levels) + codes)[0]
    first = np.empty(int(key.max(initial=-1)) + 1, dtype=np.int64)
    first[key] = np.arange(len(key))
    return x[first], key


def ipw_mean(d: np.ndarray, responded: np.ndarray, x: np.ndarray, cluster: np.ndarray, *,
             ci: float = 0.95, truncate: tuple[float, float] = TRUNCATE,
             distinct: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """Weighted mean change of the responders with stabilised, truncated inverse-probability
    weights (see the module docstring): statsmodels GLM logit for P(respond | x), WLS with a
    cluster-robust (CR1) SE and t(G − 1).

    `d`: change per unit (NaN for non-responders), `responded`: bool, `x`: design matrix with an
    intercept column, `cluster`: one label per unit. `distinct`: `_distinct_rows(x)`, when the
    caller has it (the later waves of a scale share one design).

    >>> rng = np.random.default_rng(1)
    >>> x = np.column_stack([np.ones(400), rng.normal(size=400)])
    >>> r = rng.random(400) < 1 / (1 + np.exp(-x[:, 1]))
    >>> out = ipw_mean(np.where(r, 1.0 + x[:, 1], np.nan), r, x, np.arange(400) % 20)
    >>> round(out["estimate"], 1), out["dof"]  # the all-units mean of 1 + x is about 1
    (1.0, 19.0)
    """
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.regression.linear_model import WLS

    nan = float("nan")
    out = {"estimate": nan, "se": nan, "dof": nan, "ci_low": nan, "ci_high": nan,
           "weight_max": nan}
    r = np.asarray(responded, bool)
    if r.sum() < 2 or r.all() or not (~r).any():
        return out
    # Units with the same design row share p̂: the binomial likelihood of the distinct rows'
    # (responders, non-responders) counts is the units' likelihood, so the fit is the same MLE
    # on far fewer rows (1M units of a scale have ~25,000 distinct rows: 1.3 s -> 0.05 s).
    rows, inv = _distinct_rows(x) if distinct is None else distinct
    yes = np.bincount(inv, weights=r.astype(float), minlength=len(rows))
    no = np.bincount(inv, minlength=len(rows)) - yes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # perfect-separation notes: the weights say it anyway
        fit = GLM(np.column_stack([yes, no]), rows, family=families.Binomial()).fit()
    p = np.clip(fit.predict(rows)[inv], 1e-6, 1.0)
    w = r.mean() / p[r]
    lo, hi = np.quantile(w, truncate)
    w = np.clip(w, lo, hi)
    codes = _codes(np.asarray(cluster)[r])
    g = len(np.unique(codes))
    if g < 2:
        return out
    wls = WLS(np.asarray(d, float)[r], np.ones((int(r.sum()), 1)), weights=w).fit(
        cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)
    est, se = float(wls.params[0]), float(wls.bse[0])
    dof = float(g - 1)  # statsmodels' t reference for cluster covariance: G - 1
    tcrit = float(stats.t.ppf(0.5 + ci / 2, dof))
    out.update(estimate=est, se=se, dof=dof, ci_low=est - tcrit * se, ci_high=est + tcrit * se,
               weight_max=float(w.max()))
    return out


class _DeltaFit:
    """Regression imputation fitted once; `at(delta)` gives estimate and SE for any delta.

    mu(delta) = mean_i [R_i d_i + (1 - R_i)(x_i'beta + delta s)]; its influence function is
    psi_i = y_i - mu0 + x_i'h R_i e_i + delta s ((1 - R_i) - pi_NR), h = M^-1 g,
    M = X_r'X_r / n, g = sum over non-responders of x_i / n, e_i the OLS residual: the
    non-responders' predictions carry the estimation error of beta.
    """

    def __init__(self, d: np.ndarray, responded: np.ndarray, x: np.ndarray,
                 cluster: np.ndarray, ci: float) -> None:
        r = np.asarray(responded, bool)
        n = len(r)
        self.codes = pd.factorize(_codes(np.asarray(cluster)))[0]
        self.g = int(self.codes.max()) + 1 if n else 0
        self.ok = bool(r.sum() >= 2 and self.g >= 2)
        self.dof = float(self.g - 1)
        self.tcrit = float(stats.t.ppf(0.5 + ci / 2, self.dof)) if self.ok else float("nan")
        if not self.ok:
            return
        xr, dr = x[r], np.asarray(d, float)[r]
        beta = np.linalg.lstsq(xr, dr, rcond=None)[0]
        y = np.where(r, np.asarray(d, float), x @ beta)
        self.mu0 = float(y.mean())
        h = np.linalg.lstsq(xr.T @ xr / n, x[~r].sum(axis=0) / n, rcond=None)[0]
        resid = np.zeros(n)
        resid[r] = dr - xr @ beta
        psi0 = y - self.mu0 + (x @ h) * resid
        self.pi_nr = float((~r).mean())
        self.s = float(dr.std(ddof=1))
        slope = self.s * ((~r).astype(float) - self.pi_nr)
        # the influence is linear in delta, so its cluster totals are too: keep them, and any
        # delta costs O(clusters) (the tipping point's search evaluates many)
        self.n = n
        self.s0 = np.bincount(self.codes, weights=psi0, minlength=self.g)
        self.s1 = np.bincount(self.codes, weights=slope, minlength=self.g)

    def at(self, delta: float) -> dict[str, float]:
        nan = float("nan")
        if not self.ok:
            return {"delta": float(delta), "estimate": nan, "se": nan, "dof": nan,
                    "ci_low": nan, "ci_high": nan}
        est = self.mu0 + delta * self.s * self.pi_nr
        sums = self.s0 + delta * self.s1
        # CR1: G / (G - 1) times the sum of squared cluster totals of the influence, over n^2
        se = math.sqrt(self.g / (self.g - 1) * float((sums * sums).sum())) / self.n
        return {"delta": float(delta), "estimate": est, "se": se, "dof": self.dof,
                "ci_low": est - self.tcrit * se, "ci_high": est + self.tcrit * se}


def delta_adjusted(d: np.ndarray, responded: np.ndarray, x: np.ndarray, cluster: np.ndarray,
                   deltas: Sequence[float] = DELTAS, *, ci: float = 0.95) -> pd.DataFrame:
    """All-units mean change when non-responders' change = OLS prediction from the responders
    + delta · SD(responders' change), for each delta; CR1 cluster-robust SE of the influence
    function, t with G − 1 df (module docstring). Columns delta, estimate, se, dof, ci_low,
    ci_high.

    >>> d = np.array([1.0, 2.0, np.nan, 3.0, 4.0, np.nan])
    >>> r = ~np.isnan(d)
    >>> out = delta_adjusted(d, r, np.ones((6, 1)), np.array([0, 0, 0, 1, 1, 1]), [0.0, -1.0])
    >>> out["estimate"].round(4).tolist()  # imputed 2.5, then 2.5 - 1 * sd (1.291) * 1/3
    [2.5, 2.0697]
    """
    fit = _DeltaFit(d, responded, x, cluster, ci)
    return pd.DataFrame([fit.at(dl) for dl in deltas],
                        columns=["delta", "estimate", "se", "dof", "ci_low", "ci_high"])


def tipping_delta(d: np.ndarray, responded: np.ndarray, x: np.ndarray, cluster: np.ndarray, *,
                  ci: float = 0.95, limit: float = TIPPING_RANGE) -> float:
    """The delta (in SDs of the responders' change) at which the lower bound of the
    `delta_adjusted` CI equals 0, by Brent's method (scipy ``brentq``) in [−limit, limit]; the
    crossing nearest to delta = 0 when there are two (the SE grows with |delta| too); NaN when
    there is none or everyone responded. Negative: the gain stays above 0 unless the
    non-responders changed that much less than comparable responders."""
    r = np.asarray(responded, bool)
    return _tipping(_DeltaFit(d, r, x, cluster, ci), r, limit)


def _tipping(fit: _DeltaFit, r: np.ndarray, limit: float) -> float:
    """`tipping_delta` on a fitted `_DeltaFit` (`r`: who responded)."""
    if not fit.ok or r.all() or not np.isfinite(fit.tcrit):
        return float("nan")

    def lower(delta: float) -> float:
        return fit.at(delta)["ci_low"]

    grid = np.linspace(-limit, limit, 161)
    vals = np.array([lower(g) for g in grid])
    cross = np.flatnonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) <= 0)
    if not len(cross):
        return float("nan")
    j = cross[np.argmin(np.minimum(np.abs(grid[cross]), np.abs(grid[cross + 1])))]
    if vals[j] == 0:
        return float(grid[j])
    if vals[j + 1] == 0:
        return float(grid[j + 1])
    return float(optimize.brentq(lower, grid[j], grid[j + 1], xtol=1e-12))


def sensitivity(
    scores: pd.DataFrame,
    *,
    participant: str = "participant",
    cluster: str = "exchange_id",
    wave: str = "wave",
    score: str = "score",
    engagement: str = "n_events",
    modality: str | None = "modality",
    instrument: str = "instrument",
    scale: str = "scale",
    pre: str = "pre",
    waves: Sequence[str] | None = None,
    deltas: Sequence[float] = DELTAS,
    ci: float = 0.95,
    k: int = DEFAULT_K,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """Completers, IPW, delta-adjusted and tipping-point estimates of the mean change from
    `pre` to each later wave, per instrument × scale (module docstring for the methods).

    `scores`: long format, one row per participant unit × wave (× instrument × scale) with the
    score (NaN = not answered), the unit's engagement (events logged), cluster (exchange) and,
    optionally, modality; every unit with a `pre` score is in the denominator. Pass exchange
    participants only. `waves`: the later waves (default: every wave but pre in the data).

    Returns `OUTPUT_COLUMNS`: one completers row, one ipw row, one row per delta and one
    tipping_point row per instrument × scale × wave. ``n`` counts the units the estimate is
    about (responders for completers, all units with a pre score otherwise); ``n_responded``
    those with a score at the wave.
    """
    need = [participant, cluster, wave, score, engagement, instrument, scale]
    if modality:
        need.append(modality)
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ValueError(f"scores has no column(s) {missing}")
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")
    s = scores[need]
    if waves is None:
        from analytics.stats.longitudinal import wave_order

        waves = [w for w in wave_order(s[wave].dropna().astype(str).unique()) if w != pre]
    parts = []
    for (inst, sc), g in s.groupby([instrument, scale], sort=True, observed=True):
        wide = (g.groupby([participant, wave], sort=False, observed=True)[score].first()
                .unstack(wave))
        attrs = g.drop_duplicates(participant).set_index(participant)
        units = wide.join(attrs[[cluster, engagement, *([modality] if modality else [])]])
        parts.append(sensitivity_units(
            units, instrument=inst, scale=sc, waves=waves, cluster=cluster,
            engagement=engagement, modality=modality, pre=pre, deltas=deltas, ci=ci, k=k,
            unsuppressed=unsuppressed))
    return (pd.concat(parts, ignore_index=True) if parts
            else _table([], k, unsuppressed))


def sensitivity_units(
    units: pd.DataFrame,
    *,
    instrument: str,
    scale: str,
    waves: Sequence[str],
    cluster: str = "exchange_id",
    engagement: str = "n_events",
    modality: str | None = "modality",
    pre: str = "pre",
    deltas: Sequence[float] = DELTAS,
    ci: float = 0.95,
    k: int = DEFAULT_K,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """`sensitivity` on one scale given wide: one row per unit with its score at `pre` and at
    each of `waves` (columns named by the wave, NaN = not answered), its cluster, engagement
    and, optionally, modality. Units without a pre score are left out. The same rows as
    `sensitivity` on the long scores, without the pivot (the derive step reads the units so,
    pivoted in DuckDB)."""
    if pre not in units.columns:
        return _table([], k, unsuppressed)
    has_pre = units[pre].notna().to_numpy()
    u = units[has_pre] if not has_pre.all() else units
    later = {w: (u[w].to_numpy(float) if w in u.columns else np.full(len(u), np.nan))
             for w in waves}
    rows = (_scale_rows(instrument, scale, u[pre].to_numpy(float), later, u[engagement],
                        u[modality] if modality else None, u[cluster].to_numpy(), deltas, ci)
            if len(u) else [])
    return _table(rows, k, unsuppressed)


def _scale_rows(inst: str, sc: str, pre_v: np.ndarray, later: dict[str, np.ndarray],
                engagement: pd.Series, modality: pd.Series | None, cl: np.ndarray,
                deltas: Sequence[float], ci: float) -> list[dict]:
    """The unsuppressed rows of one scale: units with a pre score `pre_v`, their score at each
    later wave (`later`), engagement, modality (None: not in the design) and cluster."""
    eng = pd.to_numeric(engagement, errors="coerce").fillna(0).to_numpy(float)
    mod = modality if modality is not None and modality.nunique() >= 2 else None
    x = _design(pre_v, eng, mod)
    distinct = _distinct_rows(x) if len(x) else None
    cl = _codes(np.asarray(cl))
    n_cl = int(len(np.unique(cl)))
    rows: list[dict] = []
    for w, y in later.items():
        resp = ~np.isnan(y)
        d = y - pre_v
        n, n_r = len(pre_v), int(resp.sum())
        head = {"instrument": inst, "scale": sc, "wave": w}
        comp = cr2_mean(d[resp], cl[resp], ci=ci) if n_r else {"n_clusters": 0}
        mean_r = float(np.mean(d[resp])) if n_r else float("nan")
        rows.append({**head, "method": "completers", "delta": np.nan, "estimate": mean_r,
                     "se": comp.get("diff_se_cr2", np.nan),
                     "dof": comp.get("diff_df_cr2", np.nan),
                     "ci_low": comp.get("diff_ci_low_cr2", np.nan),
                     "ci_high": comp.get("diff_ci_high_cr2", np.nan), "n": n_r,
                     "n_responded": n_r, "n_clusters": int(comp["n_clusters"]),
                     "_cell": n_r})
        cell = min(n_r, n - n_r)
        common = {"n": n, "n_responded": n_r, "n_clusters": n_cl, "_cell": cell}
        ipw = ipw_mean(d, resp, x, cl, ci=ci, distinct=distinct)
        rows.append({**head, "method": "ipw", "delta": np.nan,
                     **{c: ipw[c] for c in ("estimate", "se", "dof", "ci_low", "ci_high")},
                     **common})
        fit = _DeltaFit(d, resp, x, cl, ci)
        for dl in deltas:
            rows.append({**head, "method": "delta", **fit.at(dl), **common})
        tip = _tipping(fit, resp, TIPPING_RANGE)  # the delta rows' fit
        if np.isfinite(tip):
            at = fit.at(tip)
            at["ci_low"] = 0.0  # by definition (root found to 1e-12)
        else:
            at = {"delta": np.nan, "estimate": np.nan, "se": np.nan, "dof": np.nan,
                  "ci_low": np.nan, "ci_high": np.nan}
        rows.append({**head, "method": "tipping_point", **at, **common})
    return rows


def _table(rows: list[dict], k: int, unsuppressed: bool) -> pd.DataFrame:
    """`OUTPUT_COLUMNS` from `_scale_rows`' rows, small cells suppressed."""
    out = pd.DataFrame(rows, columns=[c for c in OUTPUT_COLUMNS if c not in (
        "few_clusters", "suppressed")] + ["_cell"])
    out["n"] = out["n"].astype("int64")
    out["n_responded"] = out["n_responded"].astype("int64")
    out["n_clusters"] = out["n_clusters"].astype("int64")
    out["few_clusters"] = out["n_clusters"] < FEW_CLUSTERS
    out = suppress(out, n="_cell", k=k, keep=["delta"], unsuppressed=unsuppressed)
    # the grid's delta names the row; the tipping point's delta is a result: blank it too
    hide = (out["suppressed"] != "") & (out["method"] == "tipping_point")
    out.loc[hide, "delta"] = np.nan
    return out[OUTPUT_COLUMNS].reset_index(drop=True)
