"""Survival: the Kaplan–Meier product-limit estimate and its median.

The estimate and Greenwood's standard error come from statsmodels (`SurvfuncRight`); the 95 %
pointwise interval is R's ``survival::survfit(conf.type = "log-log")``, which statsmodels does not
offer: S^exp(±1.96·se), se = √(Σ dᵢ / (nᵢ(nᵢ − dᵢ))) / |log S|.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from statsmodels.duration.survfunc import SurvfuncRight

__all__ = ["kaplan_meier", "km_median"]

COLUMNS = ["days", "survival", "at_risk", "ended", "ci_low", "ci_high"]


def kaplan_meier(durations: np.ndarray, ended: np.ndarray) -> pd.DataFrame:
    """Product-limit estimate S(t) = Π (1 − dᵢ/nᵢ) at each time with an end, after a first row
    (0, 1.0, n, 0, 1.0, 1.0), with a log(−log) 95 % CI (R's `survfit(conf.type = "log-log")`).

    >>> km = kaplan_meier(np.array([1, 2, 3, 3, 4.0]), np.array([1, 0, 1, 1, 0], bool))
    >>> km[["days", "survival", "at_risk", "ended"]].round(4).values.tolist()
    [[0.0, 1.0, 5.0, 0.0], [1.0, 0.8, 5.0, 1.0], [3.0, 0.2667, 3.0, 2.0]]
    """
    durations = np.asarray(durations, float)
    ended = np.asarray(ended, bool)
    first = pd.DataFrame([(0.0, 1.0, len(durations), 0, 1.0, 1.0)], columns=COLUMNS)
    if not ended.any():
        return first
    sf = SurvfuncRight(durations, ended.astype(float))
    s = np.asarray(sf.surv_prob, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Greenwood's se of S is S·√gw; the log(−log) se is √gw / |log S|.
        se = np.asarray(sf.surv_prob_se, float) / (s * np.abs(np.log(s)))
        inside = (s > 0) & (s < 1)
        lo = np.where(inside, s ** np.exp(1.96 * se), s)
        hi = np.where(inside, s ** np.exp(-1.96 * se), s)
    rows = pd.DataFrame({"days": np.asarray(sf.surv_times, float), "survival": s,
                         "at_risk": np.asarray(sf.n_risk, np.int64),
                         "ended": np.asarray(sf.n_events, np.int64), "ci_low": lo, "ci_high": hi})
    return pd.concat([first, rows], ignore_index=True)


def km_median(km: pd.DataFrame) -> float:
    """First time the Kaplan–Meier curve reaches 0.5 or below; NaN while it has not."""
    below = km[km.survival <= 0.5]
    return float(below.days.iloc[0]) if len(below) else math.nan
