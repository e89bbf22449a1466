"""Persistence: how long partnerships (and participants) last, as durations with censoring.

Every estimate comes from statsmodels' survival code, each matching an R `survival` function:

- `km_curves`: Kaplan–Meier product-limit curves per group (`SurvfuncRight`; R
  ``survfit(Surv(t, e) ~ g, conf.type = "log-log")``), the pointwise 95 % interval on the
  log(−log) scale (`analytics.stats.survival.kaplan_meier`).
- `km_summary`: per group n, events, censored, the median with its 95 % interval (Brookmeyer–
  Crowley: the times where the log-transformed pointwise band crosses 0.5,
  `SurvfuncRight.quantile_ci(method="log")`, as R's ``print(survfit(...))`` with its default
  ``conf.type = "log"``) and S(t) at a chosen time with its log(−log) interval (R
  ``summary(fit, times = t)``).
- `logrank`: the log-rank test between groups (`survdiff`; R ``survdiff(Surv(t, e) ~ g)``),
  χ² on (groups − 1) df.
- `cox`: a Cox proportional-hazards model (`PHReg`, Efron ties as R's ``coxph`` default) with
  categorical terms, optional strata (R ``strata(s)``: a baseline hazard of its own per
  stratum) and optional cluster-robust sandwich errors (R ``cluster = c``); hazard ratios with
  95 % Wald intervals, one row per level against the term's reference.

Checked against R's printed output on the NCCTG lung cancer data (tests/test_persistence.py).
Pure: DataFrames in, tidy DataFrames out; no DuckDB, no Dash, no files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.duration.hazard_regression import PHReg
from statsmodels.duration.survfunc import SurvfuncRight, survdiff

from analytics.stats.survival import kaplan_meier

__all__ = ["CURVE_COLUMNS", "SUMMARY_COLUMNS", "COX_COLUMNS", "LINK_SEVERAL", "LINK_ONE",
           "LINK_UNKNOWN", "LINK_DEFINITION", "km_curves", "km_summary", "logrank", "cox",
           "link_kind"]

CURVE_COLUMNS = ["group", "n", "time", "survival", "ci_low", "ci_high", "at_risk", "ended"]
SUMMARY_COLUMNS = ["group", "n", "events", "censored", "median", "median_ci_low",
                   "median_ci_high", "at_time", "survival_at", "survival_at_ci_low",
                   "survival_at_ci_high"]
COX_COLUMNS = ["term", "level", "reference", "n", "events", "n_level", "n_reference", "log_hr",
               "se", "hr", "ci_low", "ci_high", "p", "se_kind", "converged"]
ALL = "all"
Z = float(stats.norm.ppf(0.975))  # R's qnorm(0.975), not 1.96


def _check(data: pd.DataFrame, duration: str, event: str, *more: str | None) -> pd.DataFrame:
    missing = [c for c in (duration, event, *more) if c is not None and c not in data.columns]
    if missing:
        raise ValueError(f"data has no column(s) {missing}")
    t = pd.to_numeric(data[duration], errors="coerce")
    if t.isna().any() or (t < 0).any():
        raise ValueError(f"{duration!r} must be a non-negative number in every row")
    return data.assign(**{duration: t.astype(float), event: data[event].astype(bool)})


def _groups(data: pd.DataFrame, group: str | None) -> list[tuple[str, pd.DataFrame]]:
    if group is None:
        return [(ALL, data)] if len(data) else []
    return [(str(g), d) for g, d in data.groupby(data[group].astype(str), sort=True)]


def km_curves(data: pd.DataFrame, *, duration: str, event: str,
              group: str | None = None) -> pd.DataFrame:
    """Kaplan–Meier curve per group (one row per time with an end, after a first row at 0).

    Returns `CURVE_COLUMNS`; ``group`` is ``"all"`` without a grouping. A group where nothing
    ended is a flat line at 1 (its first row only).

    >>> d = pd.DataFrame({"t": [1, 2, 3, 3, 4.0], "e": [1, 0, 1, 1, 0]})
    >>> km_curves(d, duration="t", event="e").survival.round(4).tolist()
    [1.0, 0.8, 0.2667]
    """
    data = _check(data, duration, event, group)
    parts = []
    for g, d in _groups(data, group):
        km = kaplan_meier(d[duration].to_numpy(float), d[event].to_numpy(bool))
        parts.append(km.rename(columns={"days": "time"}).assign(group=g, n=len(d)))
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CURVE_COLUMNS]


def km_summary(data: pd.DataFrame, *, duration: str, event: str, group: str | None = None,
               at: float | None = None) -> pd.DataFrame:
    """Per group: n, events, censored, the Kaplan–Meier median with its 95 % interval, and S(at)
    with its log(−log) 95 % interval. A median the curve never reaches is NaN ("not reached"),
    as R prints NA; so is an interval end the curve's band never reaches.

    >>> d = pd.DataFrame({"t": [1, 2, 3, 3, 4.0], "e": [1, 0, 1, 1, 0]})
    >>> km_summary(d, duration="t", event="e", at=2)[["n", "events", "median", "survival_at"]
    ...                                              ].values.tolist()
    [[5.0, 3.0, 3.0, 0.8]]
    """
    data = _check(data, duration, event, group)
    rows = []
    for g, d in _groups(data, group):
        t, e = d[duration].to_numpy(float), d[event].to_numpy(bool)
        med = lo = hi = math.nan
        if e.any():
            sf = SurvfuncRight(t, e.astype(float))
            med = _nan(sf.quantile(0.5))
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lo, hi = (_nan(v) for v in sf.quantile_ci(0.5, method="log"))
        s_at = s_lo = s_hi = math.nan
        if at is not None:
            km = kaplan_meier(t, e)
            before = km[km.days <= at]
            if len(before) and at <= t.max():
                last = before.iloc[-1]
                s_at, s_lo, s_hi = float(last.survival), float(last.ci_low), float(last.ci_high)
        rows.append((g, len(d), int(e.sum()), int((~e).sum()), med, lo, hi,
                     math.nan if at is None else float(at), s_at, s_lo, s_hi))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype(
        {"n": "int64", "events": "int64", "censored": "int64"})


def _nan(v: object) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def logrank(data: pd.DataFrame, *, duration: str, event: str, group: str) -> dict[str, float]:
    """Log-rank test of equal survival across the groups of `group`: χ², df = groups − 1, p.

    With fewer than two groups, or no event at all, there is nothing to test: χ², df and p are
    NaN (``groups`` says how many there were).
    """
    data = _check(data, duration, event, group)
    g = data[group].astype(str).to_numpy()
    k = len(set(g))
    if k < 2 or not data[event].any():
        return {"chi2": math.nan, "df": math.nan, "p": math.nan, "groups": float(k)}
    chi2, p = survdiff(data[duration].to_numpy(float), data[event].to_numpy(float), g)
    return {"chi2": float(chi2), "df": float(k - 1), "p": float(p), "groups": float(k)}


def cox(data: pd.DataFrame, *, duration: str, event: str, terms: Sequence[str],
        reference: dict[str, str] | None = None, strata: str | None = None,
        cluster: str | None = None) -> pd.DataFrame:
    """Cox model ``h(t) = h0_s(t) · exp(Σ β·x)`` with every term categorical (treatment coded
    against `reference[term]`, else the term's most frequent level), Efron ties, a baseline per
    stratum when `strata` is given, and sandwich errors clustered by `cluster` when given
    (``se_kind`` says which). One row per non-reference level: log hazard ratio, se, HR and its
    95 % Wald interval exp(β ± z₀.₉₇₅·se), Wald p; ``n_level`` / ``n_reference`` are the units at
    that level and at the reference (what the small-cell rule reads).

    Levels of a term that do not vary within any stratum cannot be estimated; a term with one
    level only gives no row. A model that cannot be fitted (no events, singular design) gives
    its rows with NaN estimates and ``converged`` False rather than an error.
    """
    data = _check(data, duration, event, *terms, strata, cluster)
    reference = dict(reference or {})
    cols, meta = [], []
    x = pd.DataFrame(index=data.index)
    for term in terms:
        v = data[term].astype(str)
        counts = v.value_counts()
        if counts.empty:
            continue
        ref = reference.get(term)
        if ref is None or ref not in counts.index:
            ref = str(sorted(counts.index, key=lambda s: (-counts[s], s))[0])
        for level in sorted(set(counts.index) - {ref}):
            name = f"{term}={level}"
            x[name] = (v == level).astype(float)
            cols.append(name)
            meta.append((term, level, ref, int(counts[level]), int(counts[ref])))
    n, events = len(data), int(data[event].sum())
    est = np.full((len(cols), 2), np.nan)
    p = np.full(len(cols), np.nan)
    converged = False
    se_kind = f"robust (sandwich) clustered by {cluster}" if cluster else "model-based"
    if cols and events:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = PHReg(data[duration].to_numpy(float), x[cols].to_numpy(float),
                              status=data[event].to_numpy(float), ties="efron",
                              strata=None if strata is None else data[strata].astype(str)
                              .to_numpy())
                fit = model.fit()
            est[:, 0], est[:, 1] = fit.params, fit.bse
            if cluster is not None:
                cov = _sandwich(model, fit.params, pd.factorize(data[cluster].astype(str))[0])
                est[:, 1] = np.sqrt(np.diag(cov))
            converged = bool(np.all(np.isfinite(est)))
            z = est[:, 0] / est[:, 1]
            p = 2 * stats.norm.sf(np.abs(z))
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError):
            converged = False
    rows = []
    for (term, level, ref, n_lv, n_ref), (b, se), pv in zip(meta, est, p, strict=True):
        ok = converged and math.isfinite(b) and math.isfinite(se) and abs(b) < 20
        rows.append((term, level, ref, n, events, n_lv, n_ref,
                     b if ok else math.nan, se if ok else math.nan,
                     math.exp(b) if ok else math.nan,
                     math.exp(b - Z * se) if ok else math.nan,
                     math.exp(b + Z * se) if ok else math.nan,
                     pv if ok else math.nan, se_kind, ok))
    return pd.DataFrame(rows, columns=COX_COLUMNS).astype(
        {"n": "int64", "events": "int64", "n_level": "int64", "n_reference": "int64",
         "converged": "bool"})


def _sandwich(model: PHReg, params: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Huber–White covariance H⁻¹ (Σ_g U_g U_gᵀ) H⁻¹ from the score residuals summed per group,
    as `PHReg.robust_covariance` (R ``coxph(..., cluster = g)``), with one repair: statsmodels
    returns NaN residuals for a unit censored before its stratum's first event, whose true
    residual is 0 (it never was in a risk set at an event time); those become 0. Any other NaN
    is left, so the se stays NaN rather than wrong."""
    resid = _score_residuals(model, params)
    bad = np.isnan(resid).any(axis=1)
    if bad.any():
        status = np.asarray(model.status, float)
        time = np.asarray(model.endog, float)
        strata = np.full(len(time), -1)  # -1: a stratum statsmodels dropped (no events)
        for j, ix in enumerate(model.surv.stratum_rows):
            strata[ix] = j
        first = {j: time[(strata == j) & (status == 1)].min(initial=np.inf)
                 for j in np.unique(strata)}
        early = (status == 0) & (time < np.array([first[j] for j in strata]))
        resid[bad & early] = 0.0
    sums = pd.DataFrame(resid).groupby(groups).sum().to_numpy()
    h_inv = np.linalg.inv(model.hessian(params))
    return h_inv @ (sums.T @ sums) @ h_inv


def _score_residuals(model: PHReg, params: np.ndarray) -> np.ndarray:
    """`PHReg.score_residuals` (statsmodels' formula: Breslow increments of the cumulative
    hazard at each distinct failure time, NaN for units outside every risk set), computed with
    cumulative sums instead of statsmodels' loop over failure times, which rebuilds the risk
    set as a Python set at each one (O(units x failure times); minutes at 1M participants).

    Unit i of a stratum is at risk at the failure times t_j <= t_i (no late entry), so
    r_i = d_i (x_i - w_J) - e_i (x_i A_J - B_J) with J the last failure time <= t_i, w_j the
    risk-weighted covariate mean at t_j (statsmodels' own `weighted_covariate_averages`),
    A_J = sum_{j<=J} m_j / s_j and B_J = sum_{j<=J} w_j m_j / s_j (m_j failures, s_j the risk
    set's sum of exp(x'beta)). Equal to statsmodels' up to rounding (tests/test_persistence.py).
    Late entry or an offset: statsmodels' own loop."""
    surv = model.surv
    if surv.offset_s is not None or any(np.any(e != 0) for e in surv.entry_s):
        return np.asarray(model.score_residuals(params), float)
    out = np.full(model.exog.shape, np.nan)
    w_avg = model.weighted_covariate_averages(params)
    for stx in range(surv.nstrat):
        x, t = surv.exog_s[stx], surv.time_s[stx]
        status = surv.status_s[stx]
        lp = x @ params
        e = np.exp(lp - lp.max())
        uft = surv.ufailt[stx]
        last = np.searchsorted(uft, t, "right") - 1  # J of each unit (>= 0: see PHReg)
        m = np.array([len(ix) for ix in surv.ufailt_ix[stx]], dtype=float)
        # s_j: exp(x'beta) summed over the units with J >= j
        s_j = np.cumsum(np.bincount(last, weights=e, minlength=len(uft))[::-1])[::-1]
        dchaz = m / s_j
        a = np.cumsum(dchaz)
        b = np.cumsum(w_avg[stx] * dchaz[:, None], axis=0)
        failed = (status == 1)[:, None]
        r = (np.where(failed, x - w_avg[stx][last], 0.0)
             - e[:, None] * (x * a[last][:, None] - b[last]))
        out[surv.stratum_rows[stx]] = r
    return out


# Classroom-to-classroom vs single-class links. The input contract has no class: a participant
# belongs to an institution and takes part in exchanges, and a partnership joins two
# institutions within one exchange. The closest the data can tell is the number of teachers of
# each side who took part in the partnership's exchange (events or survey answers); a teacher
# is taken to bring a class. A teacher of an institution with several partnerships in the same
# exchange counts for each of them: the data does not say which partnership a person was in.
LINK_SEVERAL = "several classes each side"
LINK_ONE = "one class on a side"
LINK_UNKNOWN = "no teacher recorded on a side"
LINK_DEFINITION = (
    "classes are not in the input contract, so a class is proxied by a teacher: the teachers "
    "of each partner institution who took part in the partnership's exchange (events or survey "
    f"answers). '{LINK_SEVERAL}': 2 or more teachers on both sides; '{LINK_ONE}': exactly one "
    f"teacher on at least one side (and at least one on the other); '{LINK_UNKNOWN}': a side "
    "with no teacher in the data, so the kind of link cannot be told. A teacher of an "
    "institution with several partnerships in one exchange counts for each of them.")


def link_kind(teachers_a: pd.Series, teachers_b: pd.Series) -> pd.Series:
    """The link kind of each partnership from the teachers of its two sides (`LINK_DEFINITION`).

    >>> link_kind(pd.Series([3, 1, 0, 2]), pd.Series([2, 4, 5, 2])).tolist()
    ['several classes each side', 'one class on a side', 'no teacher recorded on a side', \
'several classes each side']
    """
    low = np.minimum(pd.to_numeric(teachers_a).fillna(0).to_numpy(),
                     pd.to_numeric(teachers_b).fillna(0).to_numpy())
    kind = np.where(low >= 2, LINK_SEVERAL, np.where(low == 1, LINK_ONE, LINK_UNKNOWN))
    return pd.Series(kind, index=teachers_a.index, dtype="str")
