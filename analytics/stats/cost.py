"""Cost per outcome: what a participant, an active participant and a unit of gain cost.

Inputs are three tidy frames: the exchanges (budget, currency, the year whose rate applies,
program, cluster), the exchange participants' units (participant × exchange: active or not,
standardised gain or none) and an optional rate table (currency, year, rate = units of currency
per one unit of base, base).

Currencies are never added up silently:

- without rates, every group's figures are kept apart per currency (one row per currency);
- with rates, the *base* is the base of most rate rows (ties: the first alphabetically), and an
  exchange's budget is converted into it as budget / rate of (its currency, its year). An
  exchange whose currency-year has no rate against the base stays in its own currency, on a row
  of its own, and ``note`` says which currency-years were missing. A budget in the base
  currency itself needs no rate.
- an exchange with no budget (or a budget without a currency) is left out of every cost and
  counted: ``n_exchanges_no_budget`` of ``n_exchanges_group`` on each row of its group, and the
  note says "3 of 40 exchanges have no budget". Never a zero.

Per group (overall, program, cluster of the exchange) and currency, for the exchanges of the row
(``n_exchanges``, with budget ``budget``):

- ``cost_per_participant`` = budget / n_participants, the exchange participants (participant ×
  exchange units seen in the participation log or the surveys; comparison people excluded);
- ``cost_per_active`` = budget / n_active, those with at least one logged event;
- ``cost_per_gain`` = budget / (n_participants × ḡ): the cost of one standard deviation of gain
  for one participant. ḡ is the mean *standardised gain* of the units with a pre and a post
  score: per scale, (post − pre) / SD(pre score of the scale over all exchange participants),
  averaged over the scales the unit has (`analytics.stats.reciprocity.composite_gains`, the
  composite of res_reciprocity and res_equity_gaps; a Glass-type d in pre-score SDs). Units
  without a gain are assumed to gain like those with one (completers' gain).
- the 95% CI of ḡ is clustered by exchange (budgets are per exchange): ḡ = ΣS_e / Σn_e, V =
  G/(G − 1) · Σ(S_e − ḡ n_e)² / (Σn_e)², ḡ ± t(0.975, G − 1) √V (the CR1 sandwich of an
  intercept-only regression; R ``sandwich::vcovCL(lm(gain ~ 1), cluster = ~exchange,
  type = "HC1")`` up to its (n − 1)/(n − k) factor, which is 1 here). No interval for one
  exchange; ``few_clusters`` below 10.
- the CI of cost_per_gain takes the budget and the participant count as known and inverts the
  interval of ḡ (Fieller's interval with a fixed numerator): [c / ḡ_high, c / ḡ_low] with c =
  budget / n_participants. When the interval of ḡ reaches 0 or below, the cost per unit of gain
  is **unbounded** above: ``cost_per_gain_ci_high`` is empty and ``unbounded`` true (the data
  are compatible with no gain at all). When ḡ ≤ 0 itself there is no cost per unit of gain.

Small cells (`analytics.suppression.suppress`): a row with fewer than k participants is kept,
marked ``n < k`` and its numbers blank; a row with fewer than k units with a gain keeps its cost
per participant but its gain figures are blank (``suppressed`` = ``gain n < k``).

Example
-------
>>> ex = pd.DataFrame({"exchange_id": ["X1", "X2"], "program": "P", "cluster": "C",
...                    "budget": [1000.0, 500.0], "currency": ["EUR", "USD"],
...                    "year": 2025})
>>> units = pd.DataFrame({"exchange_id": ["X1"] * 4 + ["X2"] * 2, "active": True,
...                       "gain": [0.5, 0.5, 0.5, 0.5, None, None]})
>>> r = cost_per_outcome(ex, units, k=0, groupings=("overall",))
>>> r[["currency", "cost_per_participant", "cost_per_gain"]].values.tolist()
[['EUR', 250.0, 500.0], ['USD', 250.0, nan]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analytics.suppression import reason, suppress

__all__ = ["COLUMNS", "GROUPINGS", "GAIN_DEFINITION", "CI_METHOD", "choose_base",
           "convert_budgets", "clustered_mean", "cost_per_outcome"]

GROUPINGS: tuple[str, ...] = ("overall", "program", "cluster")
GAIN_DEFINITION = ("composite standardised gain: per scale (post − pre) / SD(pre score over all "
                   "exchange participants), averaged over the unit's scales")
CI_METHOD = ("95% CI of the mean standardised gain clustered by exchange (CR1, t with G − 1 df), "
             "inverted with budget and participants taken as known (Fieller, fixed numerator)")
FEW_CLUSTERS = 10

COLUMNS: tuple[str, ...] = (
    "group_by", "group", "currency", "converted", "converted_from", "n_exchanges_group",
    "n_exchanges_no_budget", "n_exchanges", "budget", "n_participants", "n_active",
    "cost_per_participant", "cost_per_active", "n_gain", "mean_gain", "mean_gain_ci_low",
    "mean_gain_ci_high", "n_clusters", "few_clusters", "cost_per_gain", "cost_per_gain_ci_low",
    "cost_per_gain_ci_high", "unbounded", "note", "gain_measure", "ci_method", "suppressed",
)


def choose_base(rates: pd.DataFrame | None) -> str | None:
    """The base currency conversions go into: the base of most rate rows, ties alphabetical;
    None without rates."""
    if rates is None or not len(rates):
        return None
    counts = rates["base"].astype(str).value_counts()
    return str(sorted(counts[counts == counts.max()].index)[0])


def convert_budgets(exchanges: pd.DataFrame, rates: pd.DataFrame | None) -> pd.DataFrame:
    """`exchanges` with ``amount`` and ``in_currency`` (what the cost figures add up),
    ``converted`` (bool) and ``missing_rate`` ('CUR YEAR' when a rate was wanted and absent).

    No budget or no currency: amount NaN, in_currency NaN. With a base (`choose_base`): budgets
    in the base stay as they are (converted), others are divided by their currency-year's rate
    against the base when there is one, else stay in their own currency."""
    x = exchanges.copy()
    budget = pd.to_numeric(x["budget"], errors="coerce").astype(float)
    cur = x["currency"].astype("object").where(x["currency"].notna(), None)
    has = budget.notna() & pd.Series([c is not None and c == c for c in cur], index=x.index)
    x["amount"] = budget.where(has)
    x["in_currency"] = cur.where(has)
    x["converted"] = False
    x["missing_rate"] = None
    base = choose_base(rates)
    if base is None:
        return x
    r = rates[rates["base"].astype(str) == base]
    lookup = {(str(c), int(y)): float(v) for c, y, v in zip(r["currency"], r["year"], r["rate"],
                                                            strict=True)}
    for i in x.index[has]:
        c, y = str(cur[i]), x.at[i, "year"]
        if c == base:
            x.at[i, "converted"] = True
            continue
        rate = lookup.get((c, int(y))) if pd.notna(y) else None
        if rate is None:
            x.at[i, "missing_rate"] = f"{c} {int(y) if pd.notna(y) else '(no year)'}"
            continue
        x.at[i, "amount"] = budget[i] / rate
        x.at[i, "in_currency"] = base
        x.at[i, "converted"] = True
    return x


def clustered_mean(values: np.ndarray, clusters: np.ndarray
                   ) -> tuple[float, float, float, int]:
    """(mean, CI low, CI high, G): the mean of `values` with its 95% interval clustered by
    `clusters` (CR1 sandwich of an intercept-only model, t with G − 1 df; no interval for
    G < 2)."""
    v = np.asarray(values, float)
    if not len(v):
        return np.nan, np.nan, np.nan, 0
    codes, inv = np.unique(np.asarray(clusters), return_inverse=True)
    g = len(codes)
    s = np.bincount(inv, weights=v, minlength=g)
    n = np.bincount(inv, minlength=g).astype(float)
    m = s.sum() / n.sum()
    if g < 2:
        return float(m), np.nan, np.nan, g
    var = g / (g - 1) * np.sum((s - m * n) ** 2) / n.sum() ** 2
    half = stats.t.ppf(0.975, g - 1) * np.sqrt(var)
    return float(m), float(m - half), float(m + half), g


def _row(ex: pd.DataFrame, units: pd.DataFrame) -> dict:
    """The figures of one group × currency: `ex` its exchanges (with amount), `units` theirs."""
    budget = float(ex["amount"].sum())
    n = len(units)
    n_active = int(units["active"].astype(bool).sum())
    with_gain = units[units["gain"].notna()]
    m, lo, hi, g = clustered_mean(with_gain["gain"].to_numpy(float),
                                  with_gain["exchange_id"].astype(str).to_numpy())
    per = budget / n if n else np.nan
    cost = per / m if n and m > 0 else np.nan
    unbounded = bool(n and m > 0 and lo <= 0)
    c_lo = per / hi if n and hi > 0 else np.nan
    c_hi = per / lo if n and m > 0 and lo > 0 else np.nan
    return {
        "n_exchanges": len(ex), "budget": budget, "n_participants": n, "n_active": n_active,
        "cost_per_participant": per, "cost_per_active": budget / n_active if n_active else np.nan,
        "n_gain": len(with_gain), "mean_gain": m, "mean_gain_ci_low": lo,
        "mean_gain_ci_high": hi, "n_clusters": g, "few_clusters": bool(g < FEW_CLUSTERS),
        "cost_per_gain": cost, "cost_per_gain_ci_low": c_lo if m > 0 else np.nan,
        "cost_per_gain_ci_high": c_hi, "unbounded": unbounded,
    }


def _note(row: dict, n_group: int, n_none: int, missing: list[str], m: float) -> str:
    parts = []
    if n_none:
        parts.append(f"{n_none} of {n_group} exchanges have no budget (or no currency): left out")
    if missing:
        parts.append("kept in their own currency, no rate for " + ", ".join(sorted(set(missing))))
    if row["n_gain"] and not m > 0:
        parts.append("no mean gain above 0: no cost per unit of gain")
    elif row["unbounded"] and row["n_gain"]:
        parts.append("the gain's CI reaches 0: cost per unit of gain unbounded above")
    elif row["n_gain"] and row["n_clusters"] < 2:
        parts.append("one exchange: no interval for the gain")
    if row["n_exchanges"] and not row["n_participants"]:
        parts.append("no participants in these exchanges")
    return "; ".join(parts)


def cost_per_outcome(
    exchanges: pd.DataFrame,
    units: pd.DataFrame,
    rates: pd.DataFrame | None = None,
    *,
    groupings: Sequence[str] = GROUPINGS,
    k: int = 10,
) -> pd.DataFrame:
    """Cost per participant, per active participant and per unit of standardised gain, per
    group and currency (see the module docstring for every definition).

    `exchanges`: exchange_id, budget, currency, year (of the rate that applies: the exchange's
    start year) and one column per grouping but 'overall'. `units`: exchange_id, active (bool),
    gain (standardised; NaN when the unit has no pre/post pair), one row per exchange
    participant (participant × exchange). `rates`: currency, year, rate, base (or None).
    Returns `COLUMNS`, one row per group × currency the group's budgets are in (a group whose
    exchanges have no budget at all gets one row with an empty currency and the count)."""
    for col in ("exchange_id", "budget", "currency", "year"):
        if col not in exchanges.columns:
            raise ValueError(f"exchanges has no column {col!r}")
    for col in ("exchange_id", "active", "gain"):
        if col not in units.columns:
            raise ValueError(f"units has no column {col!r}")
    x = convert_budgets(exchanges, rates)
    u = units.copy()
    u["exchange_id"] = u["exchange_id"].astype(str)
    x["exchange_id"] = x["exchange_id"].astype(str)
    rows = []
    for gb in groupings:
        if gb == "overall":
            groups = [("overall", x)]
        else:
            if gb not in x.columns:
                raise ValueError(f"exchanges has no column {gb!r} to group by")
            key = x[gb].astype("object").where(x[gb].notna(), "not reported").astype(str)
            groups = [(str(g), d) for g, d in x.groupby(key, sort=True)]
        for name, d in groups:
            with_budget = d[d["amount"].notna()]
            n_none = len(d) - len(with_budget)
            base_row = {"group_by": gb, "group": name, "n_exchanges_group": len(d),
                        "n_exchanges_no_budget": n_none}
            if not len(with_budget):
                rows.append({**base_row, "currency": None, "converted": False,
                             "converted_from": None, "n_exchanges": 0, "n_participants": np.nan,
                             "note": f"{n_none} of {len(d)} exchanges have no budget (or no "
                                     "currency): no cost figures"})
                continue
            missing = [m for m in d["missing_rate"] if m]
            for cur, dc in with_budget.groupby("in_currency", sort=True):
                conv = dc[dc["converted"]]
                r = _row(dc, u[u["exchange_id"].isin(set(dc["exchange_id"]))])
                rows.append({**base_row, "currency": str(cur), "converted": bool(len(conv)),
                             "converted_from": ", ".join(sorted(set(conv["currency"].astype(str))))
                             if len(conv) else None, **r,
                             "note": _note(r, len(d), n_none, missing, r["mean_gain"])})
    out = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    out["gain_measure"], out["ci_method"] = GAIN_DEFINITION, CI_METHOD
    out = out[list(COLUMNS)]
    for c in ("n_exchanges_group", "n_exchanges_no_budget", "n_exchanges", "n_participants",
              "n_active", "n_gain", "n_clusters"):
        out[c] = pd.to_numeric(out[c]).astype("Int64")
    for c in ("converted", "few_clusters", "unbounded"):
        out[c] = out[c].astype("boolean")
    out = suppress(out, n="n_participants", k=k, keep=(
        "n_exchanges_group", "n_exchanges_no_budget", "n_exchanges", "converted"))
    # Enough participants but too few gains: the gain figures go, the costs per head stay.
    small_gain = (out["suppressed"] == "") & (out["n_gain"].fillna(0) < k) & (out["n_gain"] > 0)
    if small_gain.any():
        for c in ("n_gain", "mean_gain", "mean_gain_ci_low", "mean_gain_ci_high", "n_clusters",
                  "few_clusters", "cost_per_gain", "cost_per_gain_ci_low",
                  "cost_per_gain_ci_high", "unbounded"):
            out[c] = out[c].mask(small_gain)
        out.loc[small_gain, "suppressed"] = "gain " + reason(int(k))
    return out.reset_index(drop=True)
