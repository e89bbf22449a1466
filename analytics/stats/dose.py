"""Dose–response: does more participation go with more gain?

Per participant (unit: participant x exchange) the change in a scale score from pre to post is
set against the participation logged for that exchange (events, minutes), on a log scale.

- `dose_slopes`: OLS of change on log1p(dose) (plus treatment-coded adjustment columns, e.g.
  the exchange's modality and setting), the slope with CR2 cluster-robust standard errors by
  exchange and Satterthwaite degrees of freedom (`analytics.stats.comparison.cr2_fit`, what R's
  ``clubSandwich::coef_test(lm(change ~ log1p(dose) + ...), vcov = "CR2", cluster = exchange,
  test = "Satterthwaite")`` reports). The slope is the change per one unit of log1p(dose): a
  participant with e^1 = 2.7 times the (dose + 1) of another changes by `estimate` more.
- `dose_bins`: quantile bins of dose, the mean change per bin with a t interval and a CR2
  interval by exchange (`analytics.stats.means.cr2_means`): the curve without the log-linear
  assumption.

Dose is self-selected: participants choose how much they take part, and those who take part
more may differ in ways that also change their gain (motivation, time, teachers who push). A
slope is an association, not the effect of adding a session.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analytics.suppression import DEFAULT_K, reason, suppress

__all__ = ["BIN_COLUMNS", "SLOPE_COLUMNS", "METHOD", "dose_bins", "dose_slopes"]

METHOD = "ols_log1p_cr2"
SLOPE_COLUMNS = [
    "instrument", "scale", "measure", "method", "n", "estimate", "se_cr2", "df_cr2",
    "ci_low_cr2", "ci_high_cr2", "p_cr2", "n_clusters", "few_clusters", "adjusted_for",
    "suppressed",
]
BIN_COLUMNS = [
    "instrument", "scale", "measure", "bin", "n_bins", "dose_low", "dose_high", "dose_median",
    "n", "mean_change", "ci_low", "ci_high", "ci_low_cr2", "ci_high_cr2", "df_cr2",
    "n_clusters", "few_clusters", "suppressed",
]


def _check(units: pd.DataFrame, need: Sequence[str], ci: float) -> None:
    missing = [c for c in need if c not in units.columns]
    if missing:
        raise ValueError(f"units has no column(s) {missing}")
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")


def _usable(units: pd.DataFrame, change: str, dose: str) -> pd.DataFrame:
    """Rows with a change and a dose; a negative dose is refused (minutes and events count up
    from 0)."""
    d = units[units[change].notna() & units[dose].notna()]
    if (d[dose].astype(float) < 0).any():
        raise ValueError(f"column {dose!r} has negative values; a dose counts up from 0")
    return d


def dose_slopes(
    units: pd.DataFrame,
    *,
    change: str = "change",
    doses: Sequence[str] = ("events", "minutes"),
    cluster: str = "exchange_id",
    adjust: Sequence[str] = (),
    instrument: str = "instrument",
    scale: str = "scale",
    ci: float = 0.95,
    k: int = DEFAULT_K,
) -> pd.DataFrame:
    """Slope of the change on log1p(dose), per instrument x scale x dose measure.

    Model: ``change ~ log1p(dose) + adjust`` by OLS (adjustment columns treatment-coded, the
    first level in sorted order the reference, aliased columns dropped as R's lm does), CR2
    covariance clustered by `cluster` with a Satterthwaite t reference for the slope. A missing
    adjustment value is its own level "not reported". ``adjusted_for`` names the adjustment
    columns that kept a term. A slope on fewer than k units is suppressed (its row stays, its
    numbers blank); fewer than 3 units or a dose that does not vary give an empty estimate.

    Rows: instrument, scale, measure (the dose column), method ``ols_log1p_cr2``, n (units),
    estimate (change per unit of log1p(dose)), se_cr2, df_cr2, ci_low_cr2, ci_high_cr2, p_cr2,
    n_clusters, few_clusters (fewer than 10 clusters), adjusted_for, suppressed.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> u = pd.DataFrame({"instrument": "i", "scale": "s", "exchange_id": rng.integers(0, 30, 600),
    ...                   "events": rng.poisson(20, 600)})
    >>> u["change"] = 0.1 + 0.2 * np.log1p(u["events"]) + rng.normal(0, 0.3, 600)
    >>> r = dose_slopes(u, doses=["events"])
    >>> bool(r.loc[0, "ci_low_cr2"] < 0.2 < r.loc[0, "ci_high_cr2"]), int(r.loc[0, "n"])
    (True, 600)
    """
    from analytics.stats.comparison import _design, cluster_codes, cr2_fit
    from analytics.stats.prepost import FEW_CLUSTERS

    _check(units, [change, cluster, instrument, scale, *doses, *adjust], ci)
    rows: list[dict] = []
    for measure in doses:
        d = _usable(units, change, measure)
        for (inst, sc), g in d.groupby([instrument, scale], sort=True, observed=True):
            n = len(g)
            cl = g[cluster].to_numpy()
            n_cl = int(cluster_codes(cl).max(initial=-1)) + 1  # as the fit counts them
            row = {"instrument": str(inst), "scale": str(sc), "measure": measure,
                   "method": METHOD, "n": n, "estimate": math.nan, "se_cr2": math.nan,
                   "df_cr2": math.nan, "ci_low_cr2": math.nan, "ci_high_cr2": math.nan,
                   "p_cr2": math.nan, "n_clusters": n_cl, "few_clusters": n_cl < FEW_CLUSTERS,
                   "adjusted_for": ""}
            x = np.log1p(g[measure].to_numpy(float))
            if n >= 3 and np.ptp(x) > 0:
                frame = g.assign(_log_dose=x)
                X, names = _design(frame, ["_log_dose"], list(adjust))
                if "_log_dose" in names:
                    fit = cr2_fit(X, g[change].to_numpy(float), cl, names)
                    c = np.zeros(len(names))
                    c[names.index("_log_dose")] = 1.0
                    t = fit.test(c, ci=ci)
                    row.update({key: t[key] for key in ("estimate", "se_cr2", "df_cr2",
                                                        "ci_low_cr2", "ci_high_cr2", "p_cr2")})
                    row["adjusted_for"] = ", ".join(
                        a for a in adjust if any(nm.startswith(f"{a}[T.") for nm in names))
            rows.append(row)
    out = pd.DataFrame(rows, columns=SLOPE_COLUMNS[:-1])
    out["n"] = out["n"].astype("int64")
    out["n_clusters"] = out["n_clusters"].astype("int64")
    out["few_clusters"] = out["few_clusters"].astype(bool)
    return suppress(out, n="n", k=k)[SLOPE_COLUMNS].reset_index(drop=True)


def dose_bins(
    units: pd.DataFrame,
    *,
    change: str = "change",
    doses: Sequence[str] = ("events", "minutes"),
    cluster: str = "exchange_id",
    bins: int = 5,
    instrument: str = "instrument",
    scale: str = "scale",
    ci: float = 0.95,
    k: int = DEFAULT_K,
) -> pd.DataFrame:
    """Mean change per quantile bin of dose, per instrument x scale x dose measure.

    Bins: quantiles of the dose (``pd.qcut``; tied doses stay in one bin, so with many equal
    doses there are fewer bins than asked). Never more than n // k bins, so that each holds about
    k units or more. Each bin reports its dose range and median, the mean change with the t
    interval (units as independent) and the CR2 interval by `cluster` (Satterthwaite df;
    `analytics.stats.means.cr2_means`).

    Small cells: if any bin of a scale x measure has fewer than k units, every bin of it is
    suppressed (numbers blank, reason ``n < k``): one blank bin among shown ones and the
    shown slope's n would give its size away by subtraction.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> u = pd.DataFrame({"instrument": "i", "scale": "s", "exchange_id": rng.integers(0, 30, 500),
    ...                   "events": rng.poisson(20, 500)})
    >>> u["change"] = 0.2 * np.log1p(u["events"]) + rng.normal(0, 0.3, 500)
    >>> b = dose_bins(u, doses=["events"], bins=4)
    >>> len(b), bool(b["mean_change"].is_monotonic_increasing)
    (4, True)
    """
    from analytics.stats.comparison import cluster_codes
    from analytics.stats.means import cr2_means

    _check(units, [change, cluster, instrument, scale, *doses], ci)
    if bins < 1:
        raise ValueError(f"bins must be 1 or more, got {bins}")
    parts: list[pd.DataFrame] = []
    for measure in doses:
        d = _usable(units, change, measure)
        for (inst, sc), g in d.groupby([instrument, scale], sort=True, observed=True):
            n = len(g)
            q = max(1, min(bins, n // k if k > 0 else n))
            x = g[measure].to_numpy(float)
            if q > 1 and np.ptp(x) > 0:
                codes = pd.qcut(x, q, labels=False, duplicates="drop")
            else:
                codes = np.zeros(n, dtype=np.int64)
            codes = np.asarray(codes, dtype=np.int64)
            y = g[change].to_numpy(float)
            # per bin x cluster count, sum and sum of squares (a missing cluster label is a
            # cluster of its own, as in cr2_means)
            cl = cluster_codes(g[cluster])
            n_cl = int(cl.max(initial=-1)) + 1
            key = codes * n_cl + cl
            uk, inv = np.unique(key, return_inverse=True)
            cells = pd.DataFrame({"bin": uk // n_cl + 1, "_cl": uk % n_cl,
                                  "n": np.bincount(inv), "sum": np.bincount(inv, weights=y),
                                  "sumsq": np.bincount(inv, weights=y * y)})
            means = cr2_means(cells, ["bin"], cluster="_cl", ci=ci)
            ranges = pd.DataFrame({"bin": codes + 1, "x": x}).groupby("bin")["x"].agg(
                dose_low="min", dose_high="max", dose_median="median").reset_index()
            out = means.merge(ranges, on="bin").rename(columns={"mean": "mean_change"})
            out = out.assign(instrument=str(inst), scale=str(sc), measure=measure,
                             n_bins=len(out))
            parts.append(out)
    if not parts:
        empty = pd.DataFrame(columns=BIN_COLUMNS)
        return empty
    out = pd.concat(parts, ignore_index=True)
    out["n"] = out["n"].astype("int64")
    out["bin"] = out["bin"].astype("int64")
    out["n_bins"] = out["n_bins"].astype("int64")
    # one bin under k blanks the whole curve (complementary suppression, see above)
    smallest = out.groupby(["instrument", "scale", "measure"])["n"].transform("min")
    out = suppress(out.assign(_n=smallest), n="_n", k=k, keep=["bin", "n_bins"])
    out["suppressed"] = np.where(out["suppressed"] != "", reason(int(k)), "")
    return out[BIN_COLUMNS].reset_index(drop=True)
