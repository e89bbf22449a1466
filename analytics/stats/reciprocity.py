"""Reciprocity: do both sides of a partnership gain, or only one?

A partnership links institution a and institution b within one exchange. Its *side* a is the
exchange participants of institution a in that exchange (units: participant x exchange) with a
paired gain (post − pre score); side b likewise. An institution with several partnerships in
one exchange brings the same people to each of them.

Per partnership and scale (or the composite, see `composite_gains`):

- each side's mean gain with the 95% t interval of the mean paired change, mean ± t(0.975,
  n − 1)·sd/√n (R ``t.test(post, pre, paired = TRUE)$conf.int``; `analytics.stats.means`);
- the gap, mean_a − mean_b, with Welch's 95% interval (R ``t.test(gain_a, gain_b,
  var.equal = FALSE)``): the two sides are different people;
- ``reciprocity``: a side *gains* when the lower bound of its 95% interval lies above 0.
  ``both`` (reciprocal) when both sides gain, ``a_only`` / ``b_only`` (one-sided) when exactly
  one does, ``neither`` when no side does. Defined whenever both sides have n ≥ 2;
- ``reciprocity_index``: the balance of the point estimates, min(g_a⁺, g_b⁺) / max(g_a⁺, g_b⁺)
  with g⁺ = max(g, 0): 1 when both gain equally, towards 0 the more one side's gain exceeds
  the other's, and 0 by definition when one side's mean gain is ≤ 0 (one-sided or neither in
  the point estimates, including both ≤ 0). Always in [0, 1], defined whenever both means are.

`reciprocity_shares` counts the categories per group (overall, cluster, modality) with the
share of reciprocal partnerships among the assessable ones and its Wilson 95% interval (R
``prop.test(x, n, correct = FALSE)$conf.int``).

Small cells: a partnership with fewer than k units on either side is kept, marked suppressed,
its numbers blank and its category empty (`analytics.suppression.suppress`).

Example
-------
>>> g = pd.DataFrame({"exchange_id": "X1", "institution_id": ["A"] * 3 + ["B"] * 3,
...                   "unit": range(6), "gain": [1.0, 1.2, 0.8, 0.1, -0.1, 0.0]})
>>> p = pd.DataFrame({"partnership_id": ["P1"], "exchange_id": ["X1"],
...                   "institution_a": ["A"], "institution_b": ["B"]})
>>> r = reciprocity(g, p, keys=(), k=0)
>>> r["reciprocity"].iloc[0], float(r["reciprocity_index"].iloc[0])
('a_only', 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analytics.suppression import DEFAULT_K, suppress

__all__ = ["RECIPROCITY_COLUMNS", "SHARE_COLUMNS", "CATEGORIES", "composite_gains",
           "reciprocity", "reciprocity_from_sides", "reciprocity_shares", "wilson_interval",
           "COMPOSITE"]

CATEGORIES = ("both", "a_only", "b_only", "neither")
COMPOSITE = ("all", "composite")  # (instrument, scale) of the composite rows

RECIPROCITY_COLUMNS = [
    "partnership_id", "exchange_id", "cluster", "modality", "institution_a", "institution_b",
    "instrument", "scale", "n_a", "mean_a", "ci_low_a", "ci_high_a", "n_b", "mean_b",
    "ci_low_b", "ci_high_b", "gap", "gap_ci_low", "gap_ci_high", "gap_dof", "reciprocity",
    "reciprocity_index", "suppressed",
]
SHARE_COLUMNS = ["instrument", "scale", "group_by", "group", "n_partnerships", "n_assessable",
                 "n_both", "n_a_only", "n_b_only", "n_neither", "share_reciprocal",
                 "share_ci_low", "share_ci_high", "n_participants", "suppressed"]


def composite_gains(gains: pd.DataFrame, pre_sd: pd.Series, *, unit: str = "unit",
                    keys: Sequence[str] = ("instrument", "scale"), gain: str = "gain"
                    ) -> pd.DataFrame:
    """One composite gain per unit: the mean over the scales it has of gain / SD(pre score of
    the scale), i.e. the gain in pre-score standard deviations averaged across scales.

    `pre_sd` is indexed by `keys` (the pre-score SD of each scale, over all exchange
    participants). Other columns of `gains` that are constant within a unit are kept."""
    keys = list(keys)
    sd = pre_sd.reindex(pd.MultiIndex.from_frame(gains[keys]) if len(keys) > 1
                        else gains[keys[0]]).to_numpy(float)
    z = gains[gain].to_numpy(float) / np.where(sd > 0, sd, np.nan)
    d = gains.drop(columns=[*keys, gain]).assign(_z=z)
    d = d[np.isfinite(d["_z"])]
    extra = [c for c in d.columns if c not in (unit, "_z")]
    out = d.groupby(unit, sort=True, observed=True).agg(
        gain=("_z", "mean"), **{c: (c, "first") for c in extra}).reset_index()
    return out.assign(**{keys[0]: COMPOSITE[0], **({keys[1]: COMPOSITE[1]} if len(keys) > 1
                                                    else {})})


def _sides(gains: pd.DataFrame, keys: list[str], exchange: str, institution: str, gain: str
           ) -> pd.DataFrame:
    g = gains.groupby([exchange, institution, *keys], sort=False, observed=True)[gain]
    s = g.agg(["count", "mean", "var"]).reset_index()
    return s.rename(columns={"count": "n", "var": "v"})


def _t_ci(n: np.ndarray, m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(v / n)
        q = stats.t.ppf(0.975, np.where(n > 1, n - 1, np.nan))
    return m - q * se, m + q * se


def reciprocity(
    gains: pd.DataFrame,
    partnerships: pd.DataFrame,
    *,
    keys: Sequence[str] = ("instrument", "scale"),
    exchange: str = "exchange_id",
    institution: str = "institution_id",
    gain: str = "gain",
    k: int = DEFAULT_K,
) -> pd.DataFrame:
    """One row per partnership x `keys` combination present in `gains` (see the module doc).

    `gains`: one row per unit (and `keys`) with its exchange, home institution and gain.
    `partnerships`: partnership_id, exchange_id, institution_a, institution_b, and optionally
    cluster and modality (carried through). Every partnership gets a row for every key
    combination, sides without gains count n = 0 (and are suppressed under k)."""
    keys = list(keys)
    for c in ("partnership_id", "exchange_id", "institution_a", "institution_b"):
        if c not in partnerships.columns:
            raise ValueError(f"partnerships lack column {c!r}")
    for c in (exchange, institution, gain, *keys):
        if c not in gains.columns:
            raise ValueError(f"gains lack column {c!r}")
    return reciprocity_from_sides(_sides(gains, keys, exchange, institution, gain), partnerships,
                                  keys=keys, exchange=exchange, institution=institution, k=k)


def reciprocity_from_sides(
    sides: pd.DataFrame,
    partnerships: pd.DataFrame,
    *,
    keys: Sequence[str] = ("instrument", "scale"),
    exchange: str = "exchange_id",
    institution: str = "institution_id",
    k: int = DEFAULT_K,
) -> pd.DataFrame:
    """`reciprocity` from each side's summary instead of its units: `sides` has one row per
    exchange x institution x `keys` with ``n`` (units with a gain), ``mean`` and ``v`` (the
    sample variance of their gains, NaN when n < 2). Every number follows from these three, so
    the result is the same as `reciprocity` on the units (up to rounding in the sums); the
    derive step computes them in SQL so that the units' gains never leave the warehouse."""
    keys = list(keys)
    for c in ("partnership_id", "exchange_id", "institution_a", "institution_b"):
        if c not in partnerships.columns:
            raise ValueError(f"partnerships lack column {c!r}")
    for c in (exchange, institution, "n", "mean", "v", *keys):
        if c not in sides.columns:
            raise ValueError(f"sides lack column {c!r}")
    p = partnerships.copy()
    for c in ("cluster", "modality"):
        if c not in p.columns:
            p[c] = pd.NA
    p = p.rename(columns={"exchange_id": exchange}) if exchange != "exchange_id" else p
    sides = sides[[exchange, institution, *keys, "n", "mean", "v"]]
    combos = (sides[keys].drop_duplicates() if keys else pd.DataFrame(index=[0]))
    if keys and not len(combos) and len(keys) <= len(COMPOSITE):
        # no gains at all: every partnership still gets its (suppressed) composite row
        combos = pd.DataFrame([list(COMPOSITE[:len(keys)])], columns=keys).astype(
            sides[keys].dtypes.to_dict())
    grid = p.merge(combos, how="cross") if keys else p
    out = grid
    for s in ("a", "b"):
        side = sides.rename(columns={institution: f"institution_{s}", "n": f"n_{s}",
                                     "mean": f"mean_{s}", "v": f"_v_{s}"})
        out = out.merge(side, on=[exchange, f"institution_{s}", *keys], how="left")
    for s in ("a", "b"):
        out[f"n_{s}"] = out[f"n_{s}"].fillna(0).astype("int64")
        n, m, v = (out[c].to_numpy(float) for c in (f"n_{s}", f"mean_{s}", f"_v_{s}"))
        out[f"ci_low_{s}"], out[f"ci_high_{s}"] = _t_ci(n, m, v)
    na, nb = out["n_a"].to_numpy(float), out["n_b"].to_numpy(float)
    ma, mb = out["mean_a"].to_numpy(float), out["mean_b"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        sa, sb = out["_v_a"].to_numpy(float) / na, out["_v_b"].to_numpy(float) / nb
        se = np.sqrt(sa + sb)
        dof = (sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))
        q = stats.t.ppf(0.975, dof)
    out["gap"] = ma - mb
    out["gap_ci_low"], out["gap_ci_high"] = ma - mb - q * se, ma - mb + q * se
    out["gap_dof"] = dof
    gain_a = out["ci_low_a"].to_numpy(float) > 0
    gain_b = out["ci_low_b"].to_numpy(float) > 0
    cat = np.select([gain_a & gain_b, gain_a, gain_b], ["both", "a_only", "b_only"], "neither")
    ok = (na >= 2) & (nb >= 2) & np.isfinite(out["ci_low_a"]) & np.isfinite(out["ci_low_b"])
    out["reciprocity"] = pd.Series(np.where(ok, cat, None), index=out.index, dtype="string")
    pa_, pb_ = np.maximum(ma, 0), np.maximum(mb, 0)
    lo, hi = np.minimum(pa_, pb_), np.maximum(pa_, pb_)
    with np.errstate(invalid="ignore", divide="ignore"):
        idx = np.where(hi > 0, lo / np.where(hi > 0, hi, 1.0), 0.0)
    out["reciprocity_index"] = np.where(np.isfinite(ma) & np.isfinite(mb), idx, np.nan)
    out["_n"] = np.minimum(na, nb)
    out = suppress(out, n="_n", k=k)
    hidden = out["suppressed"].astype(str) != ""
    out["reciprocity"] = out["reciprocity"].mask(hidden)
    if not keys:
        out = out.assign(instrument=pd.NA, scale=pd.NA)
    out = out.rename(columns={exchange: "exchange_id"})
    return out[RECIPROCITY_COLUMNS].sort_values(
        ["instrument", "scale", "partnership_id"], kind="stable").reset_index(drop=True)


def wilson_interval(x: np.ndarray, n: np.ndarray, level: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion x / n without continuity correction, as R
    ``prop.test(x, n, correct = FALSE)$conf.int``; NaN where n = 0."""
    x, n = np.asarray(x, float), np.asarray(n, float)
    z = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def reciprocity_shares(rec: pd.DataFrame, *, by: Sequence[str] = ("cluster", "modality"),
                       k: int = DEFAULT_K) -> pd.DataFrame:
    """Per instrument x scale: counts of each category and the share reciprocal (``both``)
    among the assessable (unsuppressed) partnerships, overall and per group of each `by`
    column, with the Wilson 95% interval. ``n_participants`` is the number of units on the
    assessable partnerships' sides (a unit on two partnerships counts twice); the small-cell
    rule applies to it (a row resting on no assessable partnership is suppressed)."""
    rows = []
    d = rec.assign(_overall="all")
    # plain objects: Arrow-backed strings cost a conversion in every group below
    d = d.astype({c: object for c in ("instrument", "scale", "reciprocity", *by)})
    for dim in ("overall", *by):
        col = "_overall" if dim == "overall" else dim
        for (inst, sc, grp), g in d.groupby(["instrument", "scale", col], sort=True,
                                              dropna=False, observed=True):
            cat = g["reciprocity"]
            shown = cat.notna()
            counts = {c: int((cat == c).sum()) for c in CATEGORIES}
            n_ok = int(shown.sum())
            n_people = int((g.loc[shown, "n_a"].fillna(0) + g.loc[shown, "n_b"].fillna(0)).sum())
            rows.append([inst, sc, dim, "all" if dim == "overall" else grp, len(g), n_ok,
                         *counts.values(), n_people])
    out = pd.DataFrame(rows, columns=["instrument", "scale", "group_by", "group",
                                      "n_partnerships", "n_assessable", "n_both", "n_a_only",
                                      "n_b_only", "n_neither", "n_participants"])
    lo, hi = wilson_interval(out["n_both"].to_numpy(), out["n_assessable"].to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        out["share_reciprocal"] = out["n_both"] / out["n_assessable"].where(
            out["n_assessable"] > 0)
    out["share_ci_low"], out["share_ci_high"] = lo, hi
    out["n_participants"] = out["n_participants"].where(out["n_assessable"] > 0)
    out = suppress(out, n="n_participants", k=k, keep=["n_partnerships"])
    return out[SHARE_COLUMNS]
