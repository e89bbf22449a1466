"""Means with their intervals: the t-interval of a mean and Welch's difference of two means."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["t_interval", "welch_difference"]


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
