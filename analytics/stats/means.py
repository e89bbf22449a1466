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
    """Difference of means with a Welch 95% CI (R's `t.test(var.equal = FALSE)`)."""
    sa, sb = va / na, vb / nb
    se = math.sqrt(sa + sb)
    dof = (sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1)) if se else 1.0
    diff = ma - mb
    tcrit = stats.t.ppf(0.975, dof)
    return diff, diff - tcrit * se, diff + tcrit * se
