"""Survival: the Kaplan–Meier product-limit estimate and its median."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["kaplan_meier", "km_median"]


def kaplan_meier(durations: np.ndarray, ended: np.ndarray) -> pd.DataFrame:
    """Product-limit estimate S(t) = Π (1 − dᵢ/nᵢ) with Greenwood's variance and a log(−log)
    95% CI (R's `survival::survfit(conf.type = "log-log")`)."""
    order = np.argsort(durations, kind="stable")
    t_all, e_all = durations[order], ended[order]
    times = np.unique(t_all[e_all])
    rows = [(0.0, 1.0, len(t_all), 0, 1.0, 1.0)]
    s, gw = 1.0, 0.0
    for t in times:
        n_risk = int((t_all >= t).sum())
        d = int(((t_all == t) & e_all).sum())
        s *= 1 - d / n_risk
        if n_risk > d:
            gw += d / (n_risk * (n_risk - d))
        if 0 < s < 1:
            se = math.sqrt(gw) / abs(math.log(s))
            lo, hi = s ** math.exp(1.96 * se), s ** math.exp(-1.96 * se)
        else:
            lo = hi = s
        rows.append((float(t), s, n_risk, d, lo, hi))
    return pd.DataFrame(rows, columns=["days", "survival", "at_risk", "ended", "ci_low", "ci_high"])


def km_median(km: pd.DataFrame) -> float:
    """First time the Kaplan–Meier curve reaches 0.5 or below; NaN while it has not."""
    below = km[km.survival <= 0.5]
    return float(below.days.iloc[0]) if len(below) else math.nan
