"""Result tables per data version: read the warehouse, call the pure functions, store `res_*`.

`refresh(con)` runs at the end of every load (`etl.load.load_paths`), on the read-write
connection to the *next* warehouse file before it is swapped in, so the results are computed once
per data version and the dashboard only reads them. `compute_results(con)` does the same work
without writing (a read-only connection is enough); the export uses it when the stored tables
are stale or another suppression threshold is asked for.

What is computed (the pure functions live in `analytics.stats.reliability`, `.prepost`,
`.longitudinal`, `.attrition` and `analytics.suppression`):

- res_scale_scores: scale score per participant × exchange × wave × scale, in SQL here (the one
  scoring in production; `tests/scoring_oracle.py` re-states it for the tests).
- res_reliability: Cronbach's alpha per instrument × scale × wave (all respondents).
- res_prepost: paired pre/post change per scale, ``group_by = 'overall'`` and one grouping per
  dimension of `GROUP_DIMENSIONS`; BH-adjusted across the scales of each group. Every grouping
  but 'comparison' holds exchange participants only; 'comparison' compares the two arms.
- res_longitudinal: random-intercept model per scale, ``score ~ wave * modality [* arm] +
  (1 | participant)``, the comparison arm (and its difference in differences) when comparison
  participants exist; simpler models when a wave × modality × arm cell is empty (the model
  used per scale is recorded in meta ``results_models``).
- res_attrition: the response funnel per wave, overall and by each dimension.
- res_attrition_baseline: completers vs non-completers of the post survey, on their pre score
  per scale and on engagement (events logged), Welch t.
- res_sensitivity: how far dropout moves the gain per scale and later wave (exchange
  participants with a pre score): completers, IPW on engagement and pre score, delta-adjusted
  and tipping point (`analytics.stats.sensitivity`).
- res_reliability_groups: α (Feldt CI) and McDonald's ω per scale × wave, overall, per language
  the survey was taken in and per country (`analytics.stats.reliability.reliability_groups`).
- res_floor_ceiling: share of scored respondents at the scale's minimum and maximum per wave.
- res_invariance: differential item functioning screen across languages at the pre wave, with
  a verdict per scale (`analytics.stats.measurement.dif_screen`).
- res_persistence_curves, res_persistence, res_persistence_cox, res_partnership_links:
  partnerships and participants as durations with censoring (Kaplan–Meier, log-rank, Cox) and
  classroom-to-classroom vs single-class links (`analytics.derive.persistence`).
- res_reciprocity, res_reciprocity_shares: per partnership and scale (and a composite), both
  sides' mean gains, the gap, the category and index; the share reciprocal by cluster and
  modality (`analytics.stats.reciprocity`).
- res_equity_gaps: best- vs worst-served group per grouping and measure, CR2 by exchange at a
  Bonferroni level (`analytics.stats.equity`).
- res_dose_response, res_dose_bins: the pre→post change of exchange participants against
  their events and minutes logged in the exchange: the slope on log1p(dose) adjusted for
  modality and setting, CR2 by exchange, and the quantile-bin curve (`analytics.stats.dose`).
- res_cost: cost per participant, per active participant and per unit of standardised gain
  by program and cluster of the exchanges, per currency or converted with the rates kind
  (`analytics.stats.cost`).
- res_moderation: gains by setting, modality and purpose from the longitudinal model with the
  attribute crossed with wave, differences and the interaction test
  (`analytics.stats.moderation`).
- res_scheduling, res_scheduling_model: per partnership, school-hours overlap across the two
  time zones and the joint (synchronous) share of events; the slope of the share on overlap,
  CR2 by exchange (`analytics.derive.scheduling`).
- res_scale: breadth vs depth per cluster × term and the term-on-term quadrant
  (`analytics.derive.scale`, `analytics.stats.scale`).

Aggregates are stored suppressed: a group with fewer than k participants
(`analytics.suppression.MIN_CELL`, the one setting) has ``suppressed = 'n < k'`` and NULL
numbers. Bookkeeping goes into the `meta` table under ``results_*`` keys: the data version the
results belong to, when they were generated, how long they took in all and per table, k, and the
longitudinal model fitted per scale. Tables without a `suppressed` column (reliability,
longitudinal) get NULL numbers where they rest on fewer than k participants; in the longitudinal
table per estimate, on the arm x wave x modality cells each row rests on (`_blank_small_cells`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import re
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from analytics.derive.fetch import frame as _df
from analytics.derive.rollups import (
    GENDER_SQL,
    Facts,
    build_cubes,
    build_facts,
    current_facts,
)
from analytics.suppression import MIN_CELL
from etl import process, schema
from etl.errors import EtlError
from etl.warehouse import data_version as _data_version

__all__ = [
    "GROUP_DIMENSIONS",
    "RESULT_NAMES",
    "Results",
    "ResultsError",
    "StoredState",
    "EVENTS_FREE",
    "EVENTS_FREE_ROWS",
    "PAIRS_ONLY",
    "compute_results",
    "kept_on",
    "refresh",
    "stored_state",
    "group_attributes",
]

GROUP_DIMENSIONS: tuple[str, ...] = ("cluster", "country", "exchange", "program", "modality",
                                     "setting", "role", "gender", "comparison")
# Export name -> warehouse table, in computation order (defined once, in the schema).
RESULT_NAMES: dict[str, schema.Table] = schema.RESULT_EXPORTS
_META_PREFIX = "results_"
ARM_PARTICIPANT, ARM_COMPARISON = "participant", "comparison"


@dataclass
class Results:
    """Result tables of one data version, keyed by export name (see `RESULT_NAMES`)."""

    tables: dict[str, pd.DataFrame]
    data_version: int
    generated_at: str
    min_cell: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredState:
    """What `meta` says about the stored result tables."""

    data_version: int
    generated_at: str
    min_cell: int
    seconds: float
    timings: dict[str, float]
    models: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading the warehouse
# ---------------------------------------------------------------------------------------------

# `group_attributes`' query: engagement from the day facts, one row per pair.
_GROUP_ATTRIBUTES_SQL = f"""
        WITH eng AS (  -- grouped on the integer key, then named
            SELECT k.participant_id, d.exchange_id, d.n_events, d.minutes
            FROM (SELECT pid, exchange_id, sum(events) AS n_events, sum(minutes) AS minutes
                  FROM {schema.RES_PERSON_DAYS.name} GROUP BY ALL) d
            JOIN {schema.RES_PERSON_KEYS.name} k USING (pid)
        ),
        seen AS (
            SELECT DISTINCT participant_id, exchange_id FROM {schema.RESPONSES.name}
            UNION
            SELECT participant_id, exchange_id FROM eng
        ),
        pe AS (  -- enrolled participants with neither answers nor events: exchange unknown
            SELECT p.participant_id, s.exchange_id
            FROM {schema.PARTICIPANTS.name} p LEFT JOIN seen s USING (participant_id)
        )
        SELECT pe.participant_id AS participant, pe.exchange_id,
               i.cluster_id AS cluster, i.country, pe.exchange_id AS exchange, x.program,
               x.modality, x.setting, p.role,
               {GENDER_SQL} AS gender,
               CASE WHEN coalesce(p.comparison, FALSE) THEN '{ARM_COMPARISON}'
                    ELSE '{ARM_PARTICIPANT}' END AS comparison,
               coalesce(p.comparison, FALSE) AS is_comparison,
               coalesce(eng.n_events, 0)::BIGINT AS n_events,
               coalesce(eng.minutes, 0)::DOUBLE AS minutes,
               x.cluster_id AS network
        FROM pe JOIN {schema.PARTICIPANTS.name} p USING (participant_id)
        LEFT JOIN {schema.INSTITUTIONS.name} i USING (institution_id)
        LEFT JOIN {schema.EXCHANGES.name} x ON x.exchange_id = pe.exchange_id
        LEFT JOIN eng ON eng.participant_id = pe.participant_id
                     AND eng.exchange_id = pe.exchange_id
        ORDER BY participant, exchange_id
"""


def group_attributes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per participant × exchange seen in responses or events (and one with exchange
    NULL for an enrolled participant with neither), with every grouping.

    Columns: participant, exchange_id, then `GROUP_DIMENSIONS` (cluster and country are the home
    institution's; exchange, program, modality, setting the exchange's; gender 'not reported'
    when empty; comparison 'participant' | 'comparison'), plus is_comparison (bool), n_events and
    minutes (engagement from the participation log) and network (the exchange's cluster, the
    level exchanges nest in; `cluster` is the home institution's).

    The participation log is read through its day facts (res_person_days by res_person_keys,
    `analytics.derive.rollups.current_facts`): the same pairs and sums for every enrolled
    participant.
    """
    with current_facts(con):
        return _df(con, _GROUP_ATTRIBUTES_SQL)


# ---------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------

_SEP = "\x1f"  # joins instrument and scale into one key (a control character no id contains)


def _unit_codes(participant: pd.Series, exchange: pd.Series) -> pd.Series:
    """Integer code per participant × exchange: the pairing unit. Pivots on one integer level
    are several times faster than on two string levels."""
    a, _ = pd.factorize(participant)  # -1 for a missing value, as a pair key should allow
    b, b_levels = pd.factorize(exchange)
    key = (a.astype(np.int64) + 1) * (len(b_levels) + 1) + (b.astype(np.int64) + 1)
    return pd.Series(pd.factorize(key)[0], index=participant.index)


def _prepost(scored: pd.DataFrame, k: int) -> pd.DataFrame:
    """Overall and per dimension; exchange participants only, except the 'comparison' grouping
    which sets the two arms side by side.

    `prepost` pivots on the product of its index levels, so it gets one integer unit
    (participant × exchange) and one instrument-and-scale key: with separate participant,
    exchange, instrument and scale levels the product holds pairs that do not exist (and
    empty rows for scales of another instrument). BH stays across the scales of each
    group_by × group, as `prepost` computes it. The exchange is the cluster of the CR2
    (design-aware) columns.
    """
    from analytics.stats.prepost import OUTPUT_COLUMNS, prepost

    exchange_dims = [d for d in GROUP_DIMENSIONS if d != "comparison"]
    d = scored[scored["wave"].isin(["pre", "post"])]
    d = d.assign(_unit=_unit_codes(d["participant"], d["exchange_id"]), _inst="",
                 _scale=d["instrument"].astype("string") + _SEP + d["scale"].astype("string"),
                 _cluster=d["exchange_id"].astype("category"))
    # Text columns as categories: filtering and grouping 2M rows then moves integer codes, not
    # Arrow strings (a third of the time at a million participants). Categories sort as text,
    # so groups come out in the same order.
    text = [c for c in ("wave", "_scale", *GROUP_DIMENSIONS)
            if c in d.columns and pd.api.types.is_string_dtype(d[c])]
    d = d.drop(columns=["participant", "exchange_id", "instrument", "scale"], errors="ignore")
    d = d.assign(**{c: d[c].astype("category") for c in text})
    kw = {"participant": "_unit", "exchange": None, "instrument": "_inst", "scale": "_scale",
          "k": k, "cluster": "_cluster"}
    parts = [prepost(d[~d["is_comparison"]], by=exchange_dims, **kw)]
    if "comparison" in GROUP_DIMENSIONS:
        both = prepost(d, by=["comparison"], **kw)
        parts.append(both[both["group_by"] == "comparison"])
    out = pd.concat(parts, ignore_index=True)
    split = out["scale"].astype("string").str.split(_SEP, n=1, expand=True)
    out = out.assign(instrument=split[0], scale=split[1]) if len(out) else out
    return out[OUTPUT_COLUMNS].reset_index(drop=True)


def _attrition(attrs: pd.DataFrame, responses: pd.DataFrame, k: int) -> pd.DataFrame:
    """Funnel per wave; the roster is every enrolled participant (one row each, with their
    groupings), the invited of a group are its roster members. Exchange participants only,
    except the 'comparison' grouping."""
    from analytics.stats.attrition import FUNNEL_COLUMNS, attrition_funnel

    roster = attrs.drop_duplicates("participant")
    seen = responses[["participant_id", "wave"]].drop_duplicates().rename(
        columns={"participant_id": "participant"})
    waves = _waves(seen["wave"])
    exchange_dims = [d for d in GROUP_DIMENSIONS if d != "comparison"]
    parts = [attrition_funnel(seen, roster=roster[~roster["is_comparison"]], by=exchange_dims,
                              waves=waves, k=k)]
    if "comparison" in GROUP_DIMENSIONS:
        both = attrition_funnel(seen, roster=roster, by=["comparison"], waves=waves, k=k)
        parts.append(both[both["group_by"] == "comparison"])
    return pd.concat(parts, ignore_index=True)[FUNNEL_COLUMNS]


def _waves(w: pd.Series) -> list[str]:
    from analytics.stats.longitudinal import wave_order

    return wave_order(w.dropna().astype(str).unique())


def _blank_small(df: pd.DataFrame, n_col: str, k: int, cols: Sequence[str]) -> pd.DataFrame:
    """NULL the statistics of rows resting on fewer than k respondents (tables without a
    `suppressed` column)."""
    if k <= 0 or not len(df):
        return df
    small = df[n_col].isna() | (df[n_col] < k)
    out = df.copy()
    for c in cols:
        if c in out.columns:
            out[c] = out[c].astype("object" if out[c].dtype == bool else out[c].dtype).mask(small)
    return out


def _longitudinal(scored: pd.DataFrame, k: int, *, has_comparison: bool | None = None
                  ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Random-intercept model per scale with modality and, if present, the comparison arm;
    participants (units: participant x exchange) nested in exchanges, each with a random
    intercept (`longitudinal_model` with ``exchange``; Wald t CIs with between-within df).

    A scale whose full design has an empty cell is refitted with fewer terms, in this order:
    wave*modality*arm, wave*arm, wave*modality, wave. The formula used is returned per scale.
    `has_comparison`: whether both arms have scores in the whole program (default: in
    `scored`); given when `scored` holds one scale, so that each scale tries the designs it
    would when all scales are fitted together.

    The scored rows go in as one unit type per unit (`longitudinal_types`), the form the
    on-request model sums in DuckDB (`analytics.read.slices`): one computation for both.
    """
    data = scored[scored["score"].notna()]
    unit = _unit_codes(data["participant"], data["exchange_id"]).to_numpy()
    y = data["score"].to_numpy(float)
    # a unit's summed score per scale (the frame may hold several)
    a, a_lv = pd.factorize(data["instrument"])
    b, b_lv = pd.factorize(data["scale"])
    per_scale = pd.factorize((a.astype(np.int64) * (len(b_lv) + 1) + b)
                             * (int(unit.max(initial=0)) + 1) + unit)[0]
    t = np.bincount(per_scale, weights=y)[per_scale] if len(unit) else y
    keep = [c for c in ("instrument", "scale", "wave", "exchange_id", "network", "modality",
                        "is_comparison") if c in data.columns]
    types = data[keep].assign(type=unit, units=1.0, rows=1.0, sum=y, sum_sq=y * y, t_sum=t,
                              t_sq=t * t)
    return longitudinal_types(types, k, has_comparison=has_comparison)


def longitudinal_types(types: pd.DataFrame, k: int, *, has_comparison: bool | None = None
                       ) -> tuple[pd.DataFrame, dict[str, str]]:
    """`_longitudinal` from the scores' sums per unit type (`longitudinal_model_types`'s
    `TYPE_COLUMNS` with instrument, scale, wave, exchange_id, network, modality and
    is_comparison): the same designs, network rows and small-cell rule."""
    from analytics.stats.longitudinal import longitudinal_model_types

    data = types
    if has_comparison is None:
        has_comparison = (bool(data["is_comparison"].any())
                          and bool((~data["is_comparison"]).any()))
    designs: list[tuple[str | None, str | None]] = (
        [("modality", "is_comparison"), (None, "is_comparison")] if has_comparison else [])
    designs += [("modality", None), (None, None)]
    parts: list[pd.DataFrame] = []
    models: dict[str, str] = {}
    for (inst, sc), d in data.groupby(["instrument", "scale"], sort=True, observed=True):
        out = None
        for grp, comp in designs:
            out = longitudinal_model_types(d, wave="wave", group=grp, comparison=comp,
                                           exchange="exchange_id", instrument="instrument",
                                           scale="scale")
            if not (len(out) == 1 and out["term"].iloc[0] == "not_estimable"):
                models[f"{inst}.{sc}"] = ("score ~ wave" + (" * modality" if grp else "")
                                          + (" * arm" if comp else "")
                                          + " + (1 | participant) + (1 | exchange)")
                break
        else:
            models[f"{inst}.{sc}"] = "not estimable"
        if out is not None:
            parts.append(_suppress_model_rows(_with_network_levels(out, d), d, k))
    if not parts:
        from analytics.stats.longitudinal import OUTPUT_COLUMNS
        return pd.DataFrame(columns=[*OUTPUT_COLUMNS, "suppressed"]), models
    return pd.concat(parts, ignore_index=True), models


def _with_network_levels(out: pd.DataFrame, d: pd.DataFrame) -> pd.DataFrame:
    """`out` (one scale's model rows) plus the network rows of
    `analytics.stats.longitudinal.network_levels` (baseline model with networks > exchanges >
    participants) on the unit types `d`, their other columns as the model's variance rows
    have them."""
    from analytics.stats.longitudinal import network_levels_types

    if not len(out) or out["term"].iloc[0] == "not_estimable" or "network" not in d:
        return out
    design = [c for c in ("modality", "is_comparison") if c in d and d[c].nunique() > 1]
    net = network_levels_types(d, exchange="exchange_id", network="network", design=design)
    if not len(net):
        return out
    first = out.iloc[0]
    extra = net.assign(**{c: first[c] for c in ("instrument", "scale", "n_participants",
                                                 "n_obs", "converged") if c in out})
    return pd.concat([out, extra.reindex(columns=out.columns)], ignore_index=True)


def _suppress_model_rows(out: pd.DataFrame, d: pd.DataFrame, k: int) -> pd.DataFrame:
    """The small-cell rule on one fitted longitudinal model (`out`, fitted on the unit types
    `d`): `_blank_small_terms` (the whole model, a modality level, the comparison arm) then
    `_blank_small_cells` (per estimate, on the cells each row rests on). Adds the reason column
    ``suppressed`` (``"n < k"`` on every row these blanked, else empty), as
    `analytics.suppression.suppress` writes it; numbers the fit itself leaves empty (the se of
    a variance component) are not suppression and carry no reason."""
    from analytics.suppression import reason

    terms = _blank_small_terms(out, d, k)
    res = _blank_small_cells(terms, d, k)
    by_terms = (out["estimate"].notna() & terms["estimate"].isna()).to_numpy(bool)
    why = np.where(by_terms, reason(int(k)), "")
    if "suppressed" in res.columns:
        why = np.where(res["suppressed"].astype(str) != "", res["suppressed"].astype(str), why)
    return res.assign(suppressed=pd.Series(why, index=res.index, dtype="str"))


def _blank_small_terms(out: pd.DataFrame, d: pd.DataFrame, k: int) -> pd.DataFrame:
    """NULL the estimates of a model on fewer than k participants, and of the terms that rest on
    a modality level, on the comparison arm, or on the comparison arm within a modality level
    with fewer than k participants (the table has no `suppressed` column)."""
    if k <= 0 or not len(out):
        return out
    units = d.drop_duplicates("type")
    small = out["n_participants"] < k
    terms = out["term"].astype(str)
    about_arm = (terms.str.contains("arm[", regex=False) | terms.str.contains("arm=", regex=False)
                 | terms.str.startswith("did["))

    def about(level: str) -> pd.Series:
        return (terms.str.contains(f"modality[T.{level}]", regex=False)
                | terms.str.contains(f"modality={level}", regex=False))

    per_mod = units[~units["is_comparison"]].groupby("modality")["units"].sum()
    comp_mod = units[units["is_comparison"]].groupby("modality")["units"].sum()
    for level, n in per_mod.items():
        if n < k:
            small |= about(str(level))
    for level, n in comp_mod.items():
        if n < k:
            small |= about(str(level)) & about_arm
    n_comp = int(round(units.loc[units["is_comparison"], "units"].sum()))
    if 0 < n_comp < k:
        small |= about_arm
    if not small.any():
        return out
    out = out.copy()
    for c in ("estimate", "se", "ci_low", "ci_high", "p"):
        out[c] = out[c].mask(small)
    return out


_WHOLE_MODEL_TERMS = frozenset({"var_participant", "var_residual", "icc_participant",
                                 "icc_cluster", "n_exchanges", "df_between_exchanges",
                                 "n_networks", "not_estimable"})
_MODEL_STATS = ("estimate", "se", "ci_low", "ci_high", "p")


def _term_cells(term: str, levels: dict[str, list[str]]) -> set[tuple[str, ...]] | None:
    """The cells (one level per factor of `levels`, in its order) that the row `term` of the
    longitudinal table rests on; None for the rows that rest on the whole model. See
    `_blank_small_cells` for the rule."""
    names = list(levels)
    ref = {f: lv[0] for f, lv in levels.items()}

    def cells(spec: dict[str, list[str]]) -> set[tuple[str, ...]]:
        return set(itertools.product(*(spec.get(f, levels[f]) for f in names)))

    if term in _WHOLE_MODEL_TERMS or term.startswith(("var_", "icc_")):
        return None  # variance components and ICCs of any level (exchange, cluster, …)
    if term == "Intercept":
        return {tuple(ref[f] for f in names)}
    m = re.fullmatch(r"(emm|contrast|did)\[(.*)\]", term)
    if m:
        kind, inner = m.groups()
        head, _, cond = inner.partition("|")
        spec: dict[str, list[str]] = {}
        if kind == "emm":
            spec["wave"] = [head.removeprefix("wave=")]
        else:
            first = levels["wave"][0]
            spec["wave"] = [head.removesuffix(f"-{first}"), first]
        if "arm" in levels and kind != "did":
            spec["arm"] = ["participant"]  # emm and contrast: exchange participants by default
        if cond:
            f, _, lv = cond.partition("=")
            spec[f] = [lv]
        return cells(spec)
    pieces = [re.fullmatch(r"(\w+)\[T\.(.*)\]", p) for p in term.split(":")]
    if all(pieces) and all(p.group(1) in levels for p in pieces if p):
        at = {p.group(1): p.group(2) for p in pieces if p}
        enters = cells({f: [lv] for f, lv in at.items()})
        defined_by = cells({f: ([ref[f], at[f]] if f in at else [ref[f]]) for f in names})
        return enters | defined_by
    return cells({})  # a row this rule does not know: it rests on every cell


def _blank_small_cells(out: pd.DataFrame, d: pd.DataFrame, k: int) -> pd.DataFrame:
    """NULL (estimate, se, ci_low, ci_high, p) of every row of one fitted longitudinal model
    that rests on a cell with fewer than k participants, with `analytics.suppression.suppress`.

    A cell is one level of each factor in the fitted model (wave x modality x arm, or the
    factors of the simpler design used); its count is the number of participants (units) with
    a score in it, from the unit types `d` the model was fitted on. A row rests on:

    - ``emm[wave=W]``: the cells of wave W it averages: every modality level, the exchange
      participants (arm = participant) when the model has an arm; ``|modality=M`` keeps M
      only, ``|arm=comparison`` takes the comparison arm instead;
    - ``contrast[W-pre…]``: the cells of both waves (W and pre), otherwise as its emm;
    - ``did[W-pre…]``: both waves x both arms (x every modality level, or M for
      ``|modality=M``): its four cells per level;
    - a fixed-effect coefficient (treatment coding): every cell whose mean it enters (its
      factors at the term's levels, the other factors at any level) and every cell that
      defines it (in the saturated model a coefficient is the inclusion-exclusion contrast of
      the cells with its factors at their reference or the term's level and the other
      factors at their reference level); ``Intercept`` rests on the reference cell (pre,
      first modality, comparison arm);
    - variance components and ICCs (``var_*``, ``icc_*``, of any level): the whole model (its
      ``n_participants``, blanked by `_blank_small_terms`); a term this rule does not know:
      every cell.

    So a published row is a function of cells with at least k participants only, and no
    published number, nor any linear combination of them, gives a small cell's mean (the
    fitted cell means of the saturated model are linearly independent).
    """
    if k <= 0 or not len(out) or out["estimate"].notna().sum() == 0:
        return out
    from analytics.stats.longitudinal import wave_order
    from analytics.suppression import suppress

    terms = out["term"].astype(str)
    levels: dict[str, list[str]] = {"wave": wave_order(d["wave"].dropna().astype(str).unique())}
    keys = {"wave": d["wave"].astype(str)}
    if terms.str.contains("modality", regex=False).any():
        levels["modality"] = sorted(d["modality"].dropna().astype(str).unique())
        keys["modality"] = d["modality"].astype(str).where(d["modality"].notna())
    if terms.str.contains("arm", regex=False).any():
        levels["arm"] = ["comparison", "participant"]
        keys["arm"] = pd.Series(np.where(d["is_comparison"].astype(bool), "comparison",
                                         "participant"), index=d.index)
    cells = pd.DataFrame({**keys, "type": d["type"], "units": d["units"]}).dropna()
    n_cell = (cells.drop_duplicates([*levels, "type"])
              .groupby(list(levels), sort=False)["units"].sum())
    count = {(c if isinstance(c, tuple) else (c,)): int(round(n)) for c, n in n_cell.items()}
    n_min = []
    for term, n_model in zip(terms, out["n_participants"], strict=True):
        rests_on = _term_cells(term, levels)
        n_min.append(n_model if rests_on is None
                     else min(count.get(c, 0) for c in rests_on))
    blanked = suppress(out[list(_MODEL_STATS)].assign(n_cell=n_min), n="n_cell", k=k)
    res = out.copy()
    for c in _MODEL_STATS:
        res[c] = blanked[c].astype(out[c].dtype)
    # the reason where a number was shown before (a row the fit left empty is not suppression)
    shown = out["estimate"].notna().to_numpy(bool)
    res["suppressed"] = np.where(shown, blanked["suppressed"].astype(str), "")
    return res


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------

def utc_now() -> str:
    """The time stamp results and exports carry: ISO 8601 UTC to the second."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conform(df: pd.DataFrame, table: schema.Table) -> pd.DataFrame:
    """The table's columns in schema order (extra columns of a pure function are dropped)."""
    missing = [c for c in table.column_names if c not in df.columns]
    if missing:
        raise ValueError(f"{table.name}: the computed table lacks column(s) {missing}")
    return df[table.column_names].reset_index(drop=True)


class ResultsError(EtlError):
    """The result tables cannot be computed from this warehouse (the message says why)."""


# Scale scores in SQL, the one scoring in production; its oracle is tests/scoring_oracle.py.
# Reverse-coded items become min + max - x; the score is the mean of the answered items, NULL
# with fewer than min_items answered; a scale has a row when one of its items appears for that
# participant x exchange x wave (answered or not). Answers to unknown items are ignored.
_ITEMS = "_ei_items"
_ATTRS = "_ei_attrs"
_SCORES_TMP = "_ei_scale_scores"
_NO_UNIT = 10**15  # respondents missing from group_attributes get a unit code above this
_SCORES_SQL = f"""
    SELECT r.participant_id AS participant, r.exchange_id, r.wave, i.instrument, i.scale,
           CASE WHEN count(r.value) >= any_value(i.min_items)
                THEN sum(CASE WHEN i.reverse THEN i.lo + i.hi - r.value ELSE r.value END)
                     / nullif(count(r.value), 0) END AS score,
           count(r.value)::INTEGER AS n_items_answered
    FROM {schema.RESPONSES.name} r JOIN {_ITEMS} i ON i.item = r.item
    GROUP BY r.participant_id, r.exchange_id, r.wave, i.instrument, i.scale
"""


def _load_items(con: duckdb.DuckDBPyConnection, instruments: dict) -> pd.DataFrame:
    from analytics.stats.scales import item_table

    items = item_table(instruments)
    df = pd.DataFrame({
        "item": items["item"].astype(str).to_numpy(object),
        "instrument": items["instrument"].astype(str).to_numpy(object),
        "scale": items["scale"].astype(str).to_numpy(object),
        "reverse": items["reverse"].to_numpy(bool),
        "lo": items["min"].to_numpy(float), "hi": items["max"].to_numpy(float),
        "min_items": items["min_items"].to_numpy("int64"),
    })
    con.register("_ei_items_df", df)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_ITEMS} AS SELECT * FROM _ei_items_df")
    finally:
        con.unregister("_ei_items_df")
    return items


def _check_ranges(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse answers outside their scale's range (before any score is written)."""
    n, item, x, lo, hi = con.execute(f"""
        SELECT count(*), first(r.item), first(r.value), first(i.lo), first(i.hi)
        FROM {schema.RESPONSES.name} r JOIN {_ITEMS} i ON i.item = r.item
        WHERE r.value IS NOT NULL AND (r.value < i.lo OR r.value > i.hi)
    """).fetchone()
    if n:
        raise ValueError(f"{n} answer(s) lie outside their scale's range, e.g. item {item!r} = "
                         f"{x:g} (range {lo:g}..{hi:g})")


def _sql_scale_scores(con: duckdb.DuckDBPyConnection, target: str | None) -> str:
    """Score every scale in SQL into `target` (a result table, created from the schema) or a
    temporary table; returns the name of the table holding the scores."""
    _check_ranges(con)
    if target is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_SCORES_TMP} AS {_SCORES_SQL}")
        return _SCORES_TMP
    table = schema.RES_SCALE_SCORES
    con.execute(f'DROP TABLE IF EXISTS "{table.name}"')
    con.execute(schema.ddl(table))
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    con.execute(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM ({_SCORES_SQL})')
    return table.name


def _scored_scale(con: duckdb.DuckDBPyConnection, scores: str, inst: str, sc: str,
                  attrs: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One scale's scores with the groupings of their participant x exchange (as
    ``scores.merge(group_attributes, how='left')`` gives them; `columns`: only those of
    `attrs`, default all). `attrs` is the frame behind the `_ATTRS` table (its unit is the row
    number): DuckDB hands back only the unit and the groupings are taken from `attrs`, twice
    as fast as reading their strings again."""
    d = _df(con, f"""
        SELECT s.participant, s.exchange_id, s.wave, s.instrument, s.scale, s.score,
               s.n_items_answered, a._unit
        FROM {scores} s LEFT JOIN {_ATTRS} a
          ON a.participant = s.participant AND a.exchange_id = s.exchange_id
        WHERE s.instrument = ? AND s.scale = ?
    """, [inst, sc])
    unit = d.pop("_unit").to_numpy(dtype=float, na_value=np.nan)
    found = ~np.isnan(unit)
    extra = (attrs.drop(columns=["participant", "exchange_id"]) if columns is None
             else attrs[list(columns)]).take(
        np.where(found, unit - 1, 0).astype(np.int64)).reset_index(drop=True)
    if not found.all():
        extra = extra.where(pd.Series(found).to_numpy()[:, None] & np.ones(extra.shape, bool))
        extra["is_comparison"] = extra["is_comparison"].fillna(False).astype(bool)
    return pd.concat([d, extra], axis=1)


def _prepost_combine(parts: list[pd.DataFrame], k: int) -> pd.DataFrame:
    """Per-scale `_prepost(…, k=0)` outputs -> the table `_prepost(all, k)` gives: BH across the
    scales of each group_by x group and across each group_by's shown rows (p_fdr_table), then
    suppression, in its row order."""
    from analytics.stats.prepost import OUTPUT_COLUMNS, bh_adjust, table_fdr
    from analytics.suppression import suppress

    if not parts:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    labels = {lab: i for i, lab in enumerate(("overall", *GROUP_DIMENSIONS))}
    out = pd.concat([p.assign(_scale_ix=i) for i, p in enumerate(parts)], ignore_index=True)
    out["_label_ix"] = out["group_by"].astype(str).map(labels).fillna(len(labels))
    out = out.sort_values(["_label_ix", "_scale_ix"], kind="stable").reset_index(drop=True)
    out["p_fdr"] = np.nan
    for _, ix in out.groupby(["group_by", "group"], sort=False).groups.items():
        out.loc[ix, "p_fdr"] = bh_adjust(out.loc[ix, "p"].to_numpy(float))
    out["p_fdr_table"] = table_fdr(out, k)
    out = suppress(out.drop(columns=["_scale_ix", "_label_ix"]), n="n", k=k)
    return out[OUTPUT_COLUMNS].reset_index(drop=True)


def _baseline_scale(scored: pd.DataFrame, completers: pd.Series, k: int) -> pd.DataFrame:
    """`_attrition_baseline`'s row for one scale. Completion is answering the post survey (any
    scale), so the program's completers come along as score-less post rows."""
    from analytics.stats.attrition import attrition_baseline

    inst, sc = scored["instrument"].iloc[0], scored["scale"].iloc[0]
    mine = scored.loc[~scored["is_comparison"] & (scored["wave"] == "pre"),
                      ["participant", "wave", "score", "instrument", "scale"]]
    done = pd.DataFrame({"participant": completers.to_numpy(), "wave": "post", "score": np.nan,
                         "instrument": inst, "scale": sc})
    return attrition_baseline(pd.concat([mine, done], ignore_index=True), k=k)


_UNITS = "_ei_scale_units"


def _pivot_units(con: duckdb.DuckDBPyConnection, scores: str
                 ) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """Every scale's exchange participants (units: participant × exchange with a score row on
    the scale), one row each, into the temporary table `_UNITS`: the score at every wave
    (column w<i> for the i-th wave, NULL when not answered) and the rows at it (n<i>).
    Pivoted in DuckDB, in one pass over the scores: at 1M participants a scale's 2.1M scores
    took ~4 s to fetch and pivot in pandas, and the nine scales take ~8 s so. Returns the
    waves (column order) and, per scale, the waves its exchange participants have rows for
    (in `wave_order`)."""
    from analytics.stats.longitudinal import wave_order

    waves = [w for (w,) in con.execute(
        f"SELECT DISTINCT wave FROM {scores} WHERE wave IS NOT NULL ORDER BY wave").fetchall()]
    cols = "".join(f', max(s.score) FILTER (WHERE s.wave = ?) AS "w{i}", '
                   f'count(*) FILTER (WHERE s.wave = ?) AS "n{i}"' for i in range(len(waves)))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {_UNITS} AS
        SELECT s.instrument, s.scale, a._unit{cols}
        FROM {scores} s JOIN {_ATTRS} a
          ON a.participant = s.participant AND a.exchange_id = s.exchange_id
        WHERE NOT a.is_comparison
        GROUP BY s.instrument, s.scale, a._unit
    """, [w for w in waves for _ in (0, 1)])
    sums = "".join(f', sum("n{i}")' for i in range(len(waves)))
    present = {}
    for inst, sc, *n in con.execute(
            f"SELECT instrument, scale{sums} FROM {_UNITS} GROUP BY ALL").fetchall():
        present[(inst, sc)] = wave_order([w for w, k in zip(waves, n, strict=True) if k])
    return waves, present


def _unit_attrs(attrs: pd.DataFrame) -> pd.DataFrame:
    """The columns of `attrs` (row i = unit i + 1) that a scale's units carry, in a form cheap
    to take 800,000 rows of nine times: the exchange as an integer code (the cluster: only which
    units share one matters), engagement, and modality and setting as categories."""
    return pd.DataFrame({
        "exchange_id": pd.factorize(attrs["exchange_id"])[0],
        **{c: attrs[c].to_numpy(float) for c in DOSE_MEASURES.values()},
        **{c: pd.Categorical(attrs[c].to_numpy(object)) for c in DOSE_ADJUST},
    })


def _scale_units(con: duckdb.DuckDBPyConnection, inst: str, sc: str, waves: list[str],
                 unit_attrs: pd.DataFrame) -> pd.DataFrame:
    """One scale's units from `_UNITS` (`_pivot_units`): a column per wave (named by it, NaN
    when not answered), then their exchange code, engagement, modality and setting
    (`_unit_attrs`). What sensitivity and dose–response read: no frame of single scores
    (`_scored_scale`)."""
    d = _df(con, f"SELECT * EXCLUDE (instrument, scale) FROM {_UNITS} "
                 "WHERE instrument = ? AND scale = ?", [inst, sc])
    units = pd.DataFrame({w: d[f"w{i}"].to_numpy(dtype=float, na_value=np.nan)
                          for i, w in enumerate(waves)})
    extra = unit_attrs.take(d["_unit"].to_numpy(np.int64) - 1)
    return pd.concat([units, extra.reset_index(drop=True)], axis=1)


def _sensitivity(units: pd.DataFrame, waves: list[str], inst: str, sc: str,
                 k: int) -> pd.DataFrame:
    """`analytics.stats.sensitivity` on one scale's units (`_scale_units`) and the waves they
    have rows for: exchange participants (participant x exchange) with a pre score, clustered
    by exchange, engagement = events logged."""
    from analytics.stats.sensitivity import sensitivity_units

    return sensitivity_units(units, instrument=inst, scale=sc,
                             waves=[w for w in waves if w != "pre"], cluster="exchange_id",
                             engagement="n_events", modality="modality", k=k)


def _baseline_engagement(con: duckdb.DuckDBPyConnection, scores: str, k: int) -> pd.DataFrame:
    """`_attrition_baseline`'s engagement row: completers (any post score) vs non-completers
    among the exchange participants with a pre score (any scale), on events logged in every
    exchange; one value per participant, summed in SQL (no text reaches pandas)."""
    from analytics.stats.attrition import engagement_baseline

    per = con.execute(f"""
        WITH base AS (
            SELECT DISTINCT s.participant FROM {scores} s LEFT JOIN {_ATTRS} a
              ON a.participant = s.participant AND a.exchange_id = s.exchange_id
            WHERE s.wave = 'pre' AND s.score IS NOT NULL
              AND NOT coalesce(a.is_comparison, FALSE)),
        done AS (
            SELECT DISTINCT s.participant FROM {scores} s LEFT JOIN {_ATTRS} a
              ON a.participant = s.participant AND a.exchange_id = s.exchange_id
            WHERE s.wave = 'post' AND NOT coalesce(a.is_comparison, FALSE))
        SELECT sum(a.n_events)::DOUBLE AS n_events, bool_or(d.participant IS NOT NULL) AS done
        FROM {_ATTRS} a SEMI JOIN base b ON b.participant = a.participant
        LEFT JOIN done d ON d.participant = a.participant
        WHERE NOT a.is_comparison
        GROUP BY a.participant
    """).fetchnumpy()
    return engagement_baseline(per["n_events"], per["done"], k=k)


# The covariates of the balance table and the ANCOVA (issue 10 §2): what the contract has about
# a person at baseline. Age is counted at the start of the unit's exchange (the comparison
# person's: the exchange their class was matched to), in the filter bar's age bands.
COMPARISON_COVARIATES: tuple[str, ...] = ("gender", "role", "age_band", "income_group",
                                          "connectivity", "institution_kind")
_NOT_REPORTED = "not reported"
_AGE_AT_START_SQL = (
    "CASE WHEN p.birth_year IS NULL OR x.start_date IS NULL THEN 'not reported' "
    "WHEN year(x.start_date) - p.birth_year <= 12 THEN '12 or under' "
    "WHEN year(x.start_date) - p.birth_year <= 15 THEN '13–15' "
    "WHEN year(x.start_date) - p.birth_year <= 18 THEN '16–18' "
    "WHEN year(x.start_date) - p.birth_year <= 24 THEN '19–24' ELSE '25 or over' END"
)

# The covariates `group_attributes` lacks, over participants p, institutions i and exchanges x:
# the one spelling, which the read layer's on-request comparison (analytics.read.slices) uses too.
COVARIATE_SQL = f"""{_AGE_AT_START_SQL} AS age_band,
               coalesce(nullif(trim(i.income_group), ''), '{_NOT_REPORTED}') AS income_group,
               coalesce(nullif(trim(i.connectivity), ''), '{_NOT_REPORTED}') AS connectivity,
               coalesce(nullif(trim(i.kind), ''), '{_NOT_REPORTED}') AS institution_kind"""


def _with_covariates(con: duckdb.DuckDBPyConnection, attrs: pd.DataFrame) -> pd.DataFrame:
    """`attrs` (the frame behind `_ATTRS`, row i = unit i + 1) with the covariates of
    `COMPARISON_COVARIATES` that `group_attributes` lacks: age band at the exchange's start,
    the home institution's income group, connectivity and kind ('not reported' when empty)."""
    cov = con.execute(f"""
        SELECT a._unit, {COVARIATE_SQL}
        FROM {_ATTRS} a
        LEFT JOIN {schema.PARTICIPANTS.name} p ON p.participant_id = a.participant
        LEFT JOIN {schema.INSTITUTIONS.name} i ON i.institution_id = p.institution_id
        LEFT JOIN {schema.EXCHANGES.name} x ON x.exchange_id = a.exchange_id
        ORDER BY a._unit
    """).df()
    return attrs.assign(**{c: pd.Categorical(cov[c].to_numpy(object))
                           for c in ("age_band", "income_group", "connectivity",
                                     "institution_kind")})


def _compare_scale(scored: pd.DataFrame, k: int, *, balance: bool = True,
                   comparison: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One scale's balance row (its pre score), its raw and ANCOVA comparison rows, and the
    units with a pre score (for the covariate rows of the balance table).

    Units are participant x exchange; the cluster of the CR2 errors is the exchange (a
    comparison person's: the one their class was matched to). `balance=False` or
    `comparison=False` leaves that frame empty (the read layer's on-request tables,
    `analytics.read.slices`, compute one per request)."""
    from analytics.stats.comparison import (
        BALANCE_COLUMNS,
        COMPARISON_COLUMNS,
        ancova,
        balance_table,
    )

    d = scored[scored["wave"].isin(["pre", "post"]) & scored["score"].notna()]
    d = d.assign(_u=_unit_codes(d["participant"], d["exchange_id"]).to_numpy())
    pre = d[d["wave"] == "pre"].drop_duplicates("_u")
    bal = (balance_table(pre.iloc[:0], pre_scores=pre, k=k) if balance
           else pd.DataFrame(columns=BALANCE_COLUMNS))
    cmp_ = pd.DataFrame(columns=COMPARISON_COLUMNS)
    if comparison:
        post = d[d["wave"] == "post"].drop_duplicates("_u").set_index("_u")["score"]
        pairs = pre.assign(pre=pre["score"].to_numpy(float),
                           post=post.reindex(pre["_u"]).to_numpy(float))
        cmp_ = ancova(pairs, covariates=list(COMPARISON_COVARIATES), k=k)
    return bal, cmp_, pre[["participant", "exchange_id"]]


def _balance_combine(parts: list[pd.DataFrame], units: list[pd.DataFrame],
                     attrs: pd.DataFrame, k: int) -> pd.DataFrame:
    """The pre-score rows of every scale, then one row per level of each covariate over the
    baseline sample: the units (participant x exchange) with a pre score on any scale."""
    from analytics.stats.comparison import BALANCE_COLUMNS, balance_table

    if not parts:
        return pd.DataFrame(columns=BALANCE_COLUMNS)
    base = pd.concat(units, ignore_index=True).drop_duplicates(["participant", "exchange_id"])
    sample = attrs.merge(base[["participant", "exchange_id"]], on=["participant", "exchange_id"])
    cov = balance_table(sample, categorical=list(COMPARISON_COVARIATES), k=k)
    return pd.concat([*parts, cov], ignore_index=True)[BALANCE_COLUMNS]


# ---------------------------------------------------------------------------------------------
# Issue 13: dose–response and setting/modality/purpose, one scale at a time
# ---------------------------------------------------------------------------------------------

ISSUE13_TABLES: tuple[str, ...] = ("dose_response", "dose_bins", "moderation")
DOSE_MEASURES: dict[str, str] = {"events": "n_events", "minutes": "minutes"}
DOSE_ADJUST: tuple[str, ...] = ("modality", "setting")
DOSE_BINS = 5

# The per-scale tables that read a scale's units, one row per participant x exchange pivoted in
# DuckDB (`_scale_units`); the others read its single scores (`_scored_scale`).
_UNIT_TABLES = frozenset({"sensitivity", "dose_response", "dose_bins"})

# The columns of `group_attributes` each per-scale table reads from `_scored_scale` (beside the
# scores' own); a table not named here reads them all. At 1M one scale's read went 2.28 ->
# 2.17 s warm, 14.1 -> 6.8 s cold.
_SCALE_ATTRS: dict[str, frozenset[str]] = {
    "attrition_baseline": frozenset({"is_comparison"}),
}


def _scale_attr_columns(per_scale: Collection[str], attrs: pd.DataFrame) -> list[str] | None:
    """The columns of `attrs` the per-scale tables `per_scale` read; None: all of them."""
    if not set(per_scale) <= set(_SCALE_ATTRS):
        return None
    need = set().union(*(_SCALE_ATTRS[t] for t in per_scale))
    return [c for c in attrs.columns if c in need]


def _with_purpose(con: duckdb.DuckDBPyConnection, attrs: pd.DataFrame) -> pd.DataFrame:
    """`attrs` (row i = unit i + 1) with the exchange's purpose, which `group_attributes` does
    not carry (text as given, trimmed; NULL when the unit has no exchange)."""
    pur = con.execute(f"""
        SELECT a._unit, nullif(trim(x.purpose), '') AS purpose
        FROM {_ATTRS} a LEFT JOIN {schema.EXCHANGES.name} x ON x.exchange_id = a.exchange_id
        ORDER BY a._unit
    """).df()
    return attrs.assign(purpose=pd.Categorical(pur["purpose"].to_numpy(object)))


def _dose_units(units: pd.DataFrame, inst: str, sc: str) -> pd.DataFrame:
    """One scale's exchange participants (units, from `_scale_units`) with a pre and a post
    score: their change and dose (events and minutes logged in that exchange) and the
    adjustment columns."""
    if "pre" not in units.columns or "post" not in units.columns:
        units = units.iloc[:0].assign(pre=np.nan, post=np.nan)
    both = (units["pre"].notna() & units["post"].notna()).to_numpy()
    base = units[both]
    return pd.DataFrame({
        "instrument": inst,
        "scale": sc,
        "exchange_id": pd.factorize(base["exchange_id"])[0],
        "change": base["post"].to_numpy(float) - base["pre"].to_numpy(float),
        **{m: base[c].to_numpy(float) for m, c in DOSE_MEASURES.items()},
        **{a: base[a].array for a in DOSE_ADJUST},  # categories, as `_unit_attrs` has them
    })


def _issue13_scale(scored: pd.DataFrame | None, units: pd.DataFrame | None, inst: str, sc: str,
                   k: int, per_scale: set[str], parts: dict[str, list[pd.DataFrame]],
                   step: Callable[[str], contextlib.AbstractContextManager]) -> None:
    """res_dose_response, res_dose_bins (from the scale's `units`) and res_moderation (from its
    `scored` rows) of one scale into `parts`."""
    from analytics.stats.dose import dose_bins, dose_slopes
    from analytics.stats.moderation import moderation

    if {"dose_response", "dose_bins"} & per_scale:
        with step("dose_response"):
            dose = _dose_units(units, inst, sc)
            if "dose_response" in per_scale:
                parts["dose_response"].append(dose_slopes(
                    dose, doses=list(DOSE_MEASURES), adjust=list(DOSE_ADJUST), k=k))
        if "dose_bins" in per_scale:
            with step("dose_bins"):
                parts["dose_bins"].append(dose_bins(dose, doses=list(DOSE_MEASURES),
                                                    bins=DOSE_BINS, k=k))
    if "moderation" in per_scale:
        with step("moderation"):
            d = scored[~scored["is_comparison"].astype(bool) & scored["score"].notna()]
            if len(d):
                # one scale: its name is put on the rows, not converted on every score
                d = d.assign(unit=_unit_codes(d["participant"], d["exchange_id"]))
                parts["moderation"].append(moderation(
                    d, participant="unit", instrument=None, scale=None, k=k,
                    exchange_level=False).assign(instrument=inst, scale=sc))


def _issue13_combine(parts: dict[str, list[pd.DataFrame]], per_scale: set[str]
                     ) -> dict[str, pd.DataFrame]:
    """The per-scale rows of `_issue13_scale` as whole tables (empty with their columns)."""
    from analytics.stats.dose import BIN_COLUMNS, SLOPE_COLUMNS
    from analytics.stats.moderation import MODERATION_COLUMNS

    columns = {"dose_response": SLOPE_COLUMNS, "dose_bins": BIN_COLUMNS,
               "moderation": MODERATION_COLUMNS}
    return {name: (pd.concat(parts[name], ignore_index=True) if parts[name]
                   else pd.DataFrame(columns=columns[name]))
            for name in ISSUE13_TABLES if name in per_scale}


def compute_results(
    con: duckdb.DuckDBPyConnection,
    *,
    min_cell: int = MIN_CELL,
    tables: Sequence[str] | None = None,
    data_version: int | None = None,
    instruments: dict | None = None,
    progress: Callable[[str], None] | None = None,
    scores_table: str | None = None,
    reuse_scores: bool = False,
    shed: Callable[[], None] | None = None,
    stored_rows: Collection[str] = (),
) -> Results:
    """Compute the result tables from the warehouse behind `con`, writing nothing but
    `scores_table` when given.

    `shed`, when given, is called before each step that holds large pandas frames (reliability,
    each scale of the per-scale tables) to let DuckDB give back the memory it caches
    (`refresh` passes `_shed_cache`); it changes no result.

    `tables`: export names to compute (default all; what they depend on is computed too).
    `data_version`: the version to stamp on the results (default: the connection's).
    `min_cell`: suppression threshold k; 0 gives unsuppressed output.
    `scores_table`: `refresh` passes the result table, and the scale scores are stored there by
    SQL and not read back (`Results` then holds an empty scale_scores frame); by default they go
    to a temporary table and are read back. `reuse_scores`: `scores_table` already holds this
    data's scores (the answers did not change): read them, compute none. `stored_rows`: tables
    of `EVENTS_FREE_ROWS` whose rows that read no event are read back from the warehouse as they
    are (the answers and roster did not change), and only the others computed.
    Raises `ResultsError` when a pure function refuses the data (e.g. an answer out of range).
    (Temporary tables ``_ei_*`` are created on `con`, which works read-only too.)

    Set-based and one scale at a time, so memory holds one scale's data: scale scores in SQL;
    pre/post, longitudinal models and attrition baselines read one scale's scores at a time
    (reliability one scale's answers) and call the pure functions on it; BH across scales is
    applied afterwards.

    The participation log is read through the day facts (`analytics.derive.rollups`), never as
    `events`: those of this data version, which a load builds before its result tables, or,
    when the warehouse has none (`rollups.current_facts`), temporary ones built from the log.
    """
    if min_cell < 0:
        raise ValueError(f"min_cell must be 0 or more, got {min_cell}")
    wanted = list(tables) if tables is not None else list(RESULT_NAMES)
    unknown = [t for t in wanted if t not in RESULT_NAMES]
    if unknown:
        raise ValueError(f"unknown result table(s) {unknown}; choose from {list(RESULT_NAMES)}")
    t_start = time.perf_counter()
    with current_facts(con):
        return _compute_results(
            con, wanted, t_start, min_cell=min_cell, data_version=data_version,
            instruments=instruments, progress=progress, scores_table=scores_table,
            reuse_scores=reuse_scores, shed=shed, stored_rows=stored_rows)


def _compute_results(
    con: duckdb.DuckDBPyConnection,
    wanted: list[str],
    t_start: float,
    *,
    min_cell: int,
    data_version: int | None,
    instruments: dict | None,
    progress: Callable[[str], None] | None,
    scores_table: str | None,
    reuse_scores: bool,
    shed: Callable[[], None] | None,
    stored_rows: Collection[str],
) -> Results:
    """`compute_results` of the tables `wanted`, the day facts in place."""
    import surveys

    say = progress or (lambda _m: None)
    timings: dict[str, float] = {}
    version = _data_version(con) if data_version is None else int(data_version)
    instruments = instruments if instruments is not None else surveys.load_instruments()
    k = min_cell

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        except ValueError as e:
            raise ResultsError(f"{RESULT_NAMES[name].name}: cannot be computed: {e}") from e
        except duckdb.Error as e:
            if isinstance(e, duckdb.InterruptException):
                raise
            # Name the table (an out-of-memory or I/O error says nothing of where it happened);
            # the cause stays chained, so a damaged file is still recognised as one.
            first = (str(e).strip().splitlines() or [""])[0]
            raise ResultsError(f"{RESULT_NAMES[name].name}: cannot be computed: "
                               f"{type(e).__name__}: {first}") from e
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0

    t0 = time.perf_counter()
    items = _load_items(con, instruments)
    attrs = group_attributes(con)
    # _unit: the row number in `attrs` (1-based), set here, not by SQL's scan order
    con.register("_ei_attrs_df", attrs.assign(_unit=np.arange(1, len(attrs) + 1, dtype=np.int64)))
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_ATTRS} AS SELECT * FROM _ei_attrs_df")
    finally:
        con.unregister("_ei_attrs_df")
    for t in (_GAINS, _COMPOSITE, _HOME, _GAIN_SCALES):  # this derive's, never an earlier one's
        con.execute(f"DROP TABLE IF EXISTS {t}")
    timings["read"] = time.perf_counter() - t0

    out: dict[str, pd.DataFrame] = {}
    models: dict[str, str] = {}
    per_scale = {"prepost", "longitudinal", "attrition_baseline", "balance",
                 "comparison", "sensitivity"} & set(wanted)
    per_scale |= set(ISSUE13_TABLES) & set(wanted)
    if {"balance", "comparison"} & per_scale:
        attrs = _with_covariates(con, attrs)
    if "moderation" in per_scale:
        attrs = _with_purpose(con, attrs)
    scores: str | None = None
    reused = reuse_scores and scores_table is not None and "scale_scores" not in wanted
    if reused:
        scores = scores_table
    elif "scale_scores" in wanted or per_scale or "floor_ceiling" in wanted:
        say("scale scores")
        with step("scale_scores"):
            scores = _sql_scale_scores(con, scores_table)
            if "scale_scores" in wanted:
                from analytics.stats.scales import OUTPUT_COLUMNS as SCORE_COLUMNS
                if scores_table is None:
                    out["scale_scores"] = con.execute(
                        f"SELECT * FROM {scores} ORDER BY participant, exchange_id, wave, "
                        "instrument, scale").df()
                else:  # stored by SQL; not read back
                    out["scale_scores"] = pd.DataFrame(columns=SCORE_COLUMNS)

    shed = shed or (lambda: None)
    if "reliability" in wanted:
        say("reliability")
        shed()
        with step("reliability"):
            from analytics.stats.reliability import reliability

            parts = []
            # One scale and wave at a time: α is computed per scale x wave, each from its own
            # block of answers, so the rows are those of one call per scale; at 1M participants
            # a whole scale's ~8M answers read at once took this step to 3.6 GB peak RSS.
            waves = sorted(r[0] for r in con.execute(
                f"SELECT DISTINCT wave FROM {schema.RESPONSES.name} WHERE wave IS NOT NULL"
            ).fetchall())
            for _, its in items.groupby(["instrument", "scale"], sort=True):
                for wave in waves:
                    # the respondent (participant x exchange) as one integer, joined in SQL:
                    # 8M pseudonyms per scale at 1M participants need not become Python strings
                    resp = con.execute(f"""
                        SELECT coalesce(a._unit, {_NO_UNIT} + hash(r.participant_id,
                                        r.exchange_id) % {_NO_UNIT}) AS _unit, r.wave, r.item,
                               r.value
                        FROM {schema.RESPONSES.name} r LEFT JOIN {_ATTRS} a
                          ON a.participant = r.participant_id AND a.exchange_id = r.exchange_id
                        WHERE r.item IN (SELECT unnest(?::VARCHAR[])) AND r.value IS NOT NULL
                          AND r.wave = ?
                    """, [list(its["item"].astype(str)), wave]).df()
                    if len(resp):
                        parts.append(reliability(resp, instruments, participant="_unit",
                                                 exchange=None))
                    del resp
            from analytics.stats.reliability import OUTPUT_COLUMNS as REL_COLUMNS
            rel = (pd.concat(parts, ignore_index=True) if parts
                   else pd.DataFrame(columns=REL_COLUMNS))
            out["reliability"] = _blank_small(rel, "n", k, ["n", "alpha", "alpha_ci_low",
                                                            "alpha_ci_high", "below_threshold"])

    if {"reliability_groups", "invariance"} & set(wanted):
        say("reliability by language and country, invariance across languages")
        with step("reliability_groups"):
            out["reliability_groups"], out["invariance"], dif_s = _measurement(con, items, k)
        # one pass over the answers feeds both tables; the screen's own time is its timing
        timings["reliability_groups"] -= dif_s
        timings["invariance"] = dif_s
    if "floor_ceiling" in wanted:
        say("floor and ceiling shares")
        with step("floor_ceiling"):
            if scores is None:
                raise RuntimeError("floor and ceiling shares need the scale scores first")
            out["floor_ceiling"] = _floor_ceiling(con, scores, items, k)

    if per_scale:
        say("pre/post change, longitudinal models, attrition baselines (per scale)")
        if scores is None:  # the scale-score step above always runs when per_scale is set
            raise RuntimeError("per-scale tables need the scale scores computed first")
        scales = sorted(con.execute(f"SELECT DISTINCT instrument, scale FROM {scores}").fetchall())
        long_tables = set(per_scale) - _UNIT_TABLES
        if "attrition_baseline" in stored_rows:  # its rows are read back, not recomputed
            long_tables.discard("attrition_baseline")
        has_comparison = bool(long_tables & {"longitudinal", "balance", "comparison"}
                              and con.execute(f"""
            SELECT bool_or(c) AND bool_or(NOT c) FROM (
                SELECT coalesce(a.is_comparison, FALSE) AS c FROM {scores} s LEFT JOIN {_ATTRS} a
                  ON a.participant = s.participant AND a.exchange_id = s.exchange_id
                WHERE s.score IS NOT NULL)
        """).fetchone()[0])
        attr_columns = _scale_attr_columns(long_tables, attrs)
        completers = (_df(con, f"""
            SELECT DISTINCT s.participant FROM {scores} s LEFT JOIN {_ATTRS} a
              ON a.participant = s.participant AND a.exchange_id = s.exchange_id
            WHERE s.wave = 'post' AND NOT coalesce(a.is_comparison, FALSE)
        """)["participant"] if "attrition_baseline" in long_tables else None)
        if _UNIT_TABLES & per_scale:
            t0 = time.perf_counter()
            all_waves, unit_waves = _pivot_units(con, scores)
            unit_attrs = _unit_attrs(attrs)
            timings["read"] += time.perf_counter() - t0
        pp_parts, lg_parts, bl_parts, se_parts = [], [], [], []
        i13_parts: dict[str, list[pd.DataFrame]] = {name: [] for name in ISSUE13_TABLES}
        bal_parts: list[pd.DataFrame] = []
        cmp_parts: list[pd.DataFrame] = []
        baseline_units: list[pd.DataFrame] = []
        for inst, sc in scales:
            shed()
            t0 = time.perf_counter()
            scored = (_scored_scale(con, scores, inst, sc, attrs, attr_columns) if long_tables
                      else None)
            unit_rows = (_scale_units(con, inst, sc, all_waves, unit_attrs)
                         if _UNIT_TABLES & per_scale else None)
            waves = unit_waves.get((inst, sc), []) if unit_rows is not None else []
            timings["read"] += time.perf_counter() - t0
            if "prepost" in per_scale:
                with step("prepost"):
                    pp_parts.append(_prepost(scored, 0))
            if "longitudinal" in per_scale:
                with step("longitudinal"):
                    df, m = _longitudinal(scored, k, has_comparison=has_comparison)
                    lg_parts.append(df)
                    models.update(m)
            if "attrition_baseline" in per_scale and "attrition_baseline" not in stored_rows:
                with step("attrition_baseline"):
                    bl_parts.append(_baseline_scale(scored, completers, k))
            if has_comparison and {"balance", "comparison"} & per_scale:
                with step("comparison" if "comparison" in per_scale else "balance"):
                    bal, cmp_, units = _compare_scale(scored, k)
                    bal_parts.append(bal)
                    cmp_parts.append(cmp_)
                    baseline_units.append(units)
            if "sensitivity" in per_scale:
                with step("sensitivity"):
                    se_parts.append(_sensitivity(unit_rows, waves, inst, sc, k))
            _issue13_scale(scored, unit_rows, inst, sc, k, per_scale, i13_parts, step)
            del scored, unit_rows
        con.execute(f"DROP TABLE IF EXISTS {_UNITS}")
        if "prepost" in per_scale:
            with step("prepost"):
                out["prepost"] = _prepost_combine(pp_parts, k)
        if "longitudinal" in per_scale:
            from analytics.stats.longitudinal import OUTPUT_COLUMNS as LONG_COLUMNS
            out["longitudinal"] = (pd.concat(lg_parts, ignore_index=True) if lg_parts
                                   else pd.DataFrame(columns=[*LONG_COLUMNS, "suppressed"]))
        if "balance" in per_scale:
            with step("balance"):
                out["balance"] = _balance_combine(bal_parts, baseline_units, attrs, k)
        if "comparison" in per_scale:
            with step("comparison"):
                from analytics.stats.comparison import COMPARISON_COLUMNS
                out["comparison"] = (pd.concat(cmp_parts, ignore_index=True) if cmp_parts
                                     else pd.DataFrame(columns=COMPARISON_COLUMNS))
        if "attrition_baseline" in per_scale:
            with step("attrition_baseline"):
                if "attrition_baseline" in stored_rows:
                    bl_parts = [_stored_rows(con, "attrition_baseline")]
                bl_parts.append(_baseline_engagement(con, scores, k))
                out["attrition_baseline"] = pd.concat(bl_parts, ignore_index=True)
        out.update(_issue13_combine(i13_parts, per_scale))
        if "sensitivity" in per_scale:
            from analytics.stats.sensitivity import OUTPUT_COLUMNS as SENS_COLUMNS
            out["sensitivity"] = (pd.concat(se_parts, ignore_index=True) if se_parts
                                  else pd.DataFrame(columns=SENS_COLUMNS))

    if "attrition" in wanted:
        say("attrition funnel")
        with step("attrition"):
            seen = _df(con, f"SELECT DISTINCT participant_id, wave "
                               f"FROM {schema.RESPONSES.name}")
            out["attrition"] = _attrition(attrs, seen, k)

    # Issue 13: persistence of partnerships and participants (analytics.derive.persistence).
    persistence_names = [t.name.removeprefix("res_") for t in schema.PERSISTENCE_TABLES]
    if set(persistence_names) & set(wanted):
        say("persistence of partnerships and participants")
        with step("persistence"):
            from analytics.derive.persistence import compute as compute_persistence
            out.update(compute_persistence(con, k))
        # one pass computes the four tables; its time is under "persistence", theirs is 0
        timings.update({n: 0.0 for n in persistence_names if n not in timings})
    if set(_ISSUE13_G) & set(wanted):
        say("reciprocity of partnerships, equity gaps")
        if scores is None:
            scores = _sql_scale_scores(con, None)
        if "age_band" not in attrs.columns:
            attrs = _with_covariates(con, attrs)
        out.update(_reciprocity_and_equity(con, scores, attrs, k, wanted, step,
                                           reused and _gains_stored(con)))

    # Issue 13: scheduling friction (analytics.derive.scheduling).
    scheduling_names = [t.name.removeprefix("res_") for t in schema.SCHEDULING_TABLES]
    if set(scheduling_names) & set(wanted):
        say("scheduling friction of partnerships")
        with step("scheduling"):
            from analytics.derive.scheduling import compute as compute_scheduling
            out.update(compute_scheduling(con, k))
        timings.update({n: 0.0 for n in scheduling_names if n not in timings})
    if "scale" in wanted:  # issue 13: scale-up vs scale-in (analytics.derive.scale)
        say("scale-up vs scale-in per cluster and term")
        with step("scale"):
            from analytics.derive.scale import compute as compute_scale
            out.update(compute_scale(con, k))
    if "cost" in wanted:
        say("cost per outcome")
        with step("cost"):
            if scores is None:
                scores = _sql_scale_scores(con, None)
            out["cost"] = _cost(con, scores, attrs, k)

    tables_out = {name: _conform(out[name], RESULT_NAMES[name]) for name in wanted}
    return Results(tables_out, version, utc_now(), min_cell, time.perf_counter() - t_start,
                   timings, models)


def _scale_answers(con: duckdb.DuckDBPyConnection, its: pd.DataFrame) -> pd.DataFrame:
    """One scale's answers, one row per respondent (participant x exchange) and wave, items as
    columns after reverse coding (min + max − answer), with the language the survey was taken
    in and the participant's country (ISO 3166-1 alpha-3).

    Reverse coding and the pivot run in DuckDB: at 1M participants a scale has ~8M answers, and
    reading them long into pandas to map, pivot and group them took ~40% of this step's time
    and several times the memory of the wide result. Rows are ordered by unit and wave, items
    in name order, as pandas' pivot_table gave them; an item nobody answered has no column.
    """
    names = sorted(its["item"].astype(str))
    meta = its.set_index(its["item"].astype(str))

    def lit(x: str) -> str:
        return "'" + x.replace("'", "''") + "'"

    reverse = [n for n in names if bool(meta.loc[n, "reverse"])]
    value = "r.value::DOUBLE"
    if reverse:
        flip = {n: float(meta.loc[n, "min"]) + float(meta.loc[n, "max"]) for n in reverse}
        cases = " ".join(f"WHEN {lit(n)} THEN {flip[n]!r} - r.value::DOUBLE" for n in reverse)
        value = f"CASE r.item {cases} ELSE r.value::DOUBLE END"
    pivot = ", ".join(f"first(v) FILTER (WHERE item = {lit(n)}) AS " + '"' + n.replace('"', '""')
                      + '"' for n in names)
    wide = con.execute(f"""
        SELECT _unit, wave, {pivot}, any_value(language) AS language,
               any_value(country) AS country
        FROM (SELECT coalesce(a._unit, {_NO_UNIT} + hash(r.participant_id, r.exchange_id)
                              % {_NO_UNIT}) AS _unit, r.wave, r.item, {value} AS v,
                     r.language, a.country
              FROM {schema.RESPONSES.name} r LEFT JOIN {_ATTRS} a
                ON a.participant = r.participant_id AND a.exchange_id = r.exchange_id
              WHERE r.item IN (SELECT unnest(?::VARCHAR[])) AND r.value IS NOT NULL)
        GROUP BY _unit, wave ORDER BY _unit, wave
    """, [names]).df()
    if not len(wide):
        return pd.DataFrame(columns=["_unit", "wave", "language", "country", *names])
    empty = [n for n in names if wide[n].isna().all()]
    return wide.drop(columns=empty)


def _measurement(con: duckdb.DuckDBPyConnection, items: pd.DataFrame, k: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """res_reliability_groups (α and ω per wave, overall, per language and per country; rows
    under k respondents suppressed) and res_invariance (DIF screen across languages at the pre
    wave), one scale's answers at a time; and the seconds the DIF screen took."""
    from analytics.stats.measurement import DIF_COLUMNS, dif_screen
    from analytics.stats.reliability import GROUP_OUTPUT_COLUMNS, reliability_groups
    from analytics.suppression import suppress

    rel_parts, dif_parts = [], []
    dif_s = 0.0
    for (inst, sc), its in items.groupby(["instrument", "scale"], sort=True):
        wide = _scale_answers(con, its)
        if not len(wide):
            continue
        cols = [c for c in its["item"].astype(str) if c in wide.columns]
        rel_parts.append(reliability_groups(wide, items=cols, instrument=str(inst),
                                            scale=str(sc), min_n=k))
        pre = wide[wide["wave"] == "pre"]
        if len(pre):
            t0 = time.perf_counter()
            dif_parts.append(dif_screen(pre, items=cols, instrument=str(inst), scale=str(sc)))
            dif_s += time.perf_counter() - t0
        del wide
    rel = (pd.concat(rel_parts, ignore_index=True) if rel_parts
           else pd.DataFrame(columns=GROUP_OUTPUT_COLUMNS))
    rel = suppress(rel, n="n", k=k, keep=["n_items"])
    dif = (pd.concat(dif_parts, ignore_index=True) if dif_parts
           else pd.DataFrame(columns=DIF_COLUMNS))
    return rel, dif, dif_s


def _floor_ceiling(con: duckdb.DuckDBPyConnection, scores: str, items: pd.DataFrame,
                   k: int) -> pd.DataFrame:
    """res_floor_ceiling per scale and wave from the stored scale scores. A wave under k scored
    respondents is suppressed; a floor or ceiling count from 1 to k − 1 is blanked with its
    share (a subset under k, as the dashboard's rule says); 0 stays 0."""
    from analytics.stats.measurement import FLOOR_CEILING_COLUMNS, floor_ceiling
    from analytics.suppression import suppress

    parts = []
    for (inst, sc), its in items.groupby(["instrument", "scale"], sort=True):
        d = con.execute(f"SELECT wave, score FROM {scores} WHERE instrument = ? AND scale = ? "
                        "AND score IS NOT NULL", [str(inst), str(sc)]).df()
        if len(d):
            parts.append(floor_ceiling(d, instrument=str(inst), scale=str(sc),
                                       scale_min=float(its["min"].iloc[0]),
                                       scale_max=float(its["max"].iloc[0])))
    out = (pd.concat(parts, ignore_index=True) if parts
           else pd.DataFrame(columns=FLOOR_CEILING_COLUMNS))
    out = suppress(out, n="n", k=k, keep=["scale_min", "scale_max"])
    for end in ("floor", "ceiling"):
        few = pd.to_numeric(out[f"n_{end}"], errors="coerce").between(1, k - 1)
        for c in (f"n_{end}", f"{end}_share"):
            out[c] = out[c].astype("object" if out[c].dtype == bool else out[c].dtype).mask(few)
    return out


# ---------------------------------------------------------------------------------------------
# Issue 13: reciprocity of partnerships and equity gaps (analytics.stats.reciprocity, .equity)
# ---------------------------------------------------------------------------------------------

_ISSUE13_G = ("reciprocity", "reciprocity_shares", "equity_gaps")
EQUITY_GAP_GROUPINGS: tuple[str, ...] = ("gender", "age_band", "connectivity", "income_group")


_GAINS, _COMPOSITE = "_ei_gains", "_ei_composite"
_HOME, _GAIN_SCALES = "_ei_gain_home", "_ei_gain_scales"


def _gains_stored(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether res_person_gains holds the pairs' gains of the stored scale scores: the rollups
    and the result tables in the file are of the same data version. A derive that reuses those
    scores (`compute_results(reuse_scores=True)`) may then read the gains instead of pairing
    the scores again."""
    meta = dict(con.execute(
        f"SELECT key, value FROM {schema.META.name} WHERE key IN (?, ?)",
        [_META_PREFIX + "data_version", "rollups_data_version"]).fetchall())
    have = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()}
    return (len(meta) == 2 and len(set(meta.values())) == 1
            and {schema.RES_PERSON_GAINS.name, schema.RES_PERSON_KEYS.name} <= have)


def _gain_tables(con: duckdb.DuckDBPyConnection, scores: str, stored: bool = False) -> None:
    """Temporary tables of the exchange participants' paired gains, made once per derive and
    shared by res_reciprocity, res_equity_gaps and res_cost (comparison people left out):

    - `_HOME`: per unit (participant x exchange, `_unit` of `_ATTRS`) its exchange and home
      institution; `_GAIN_SCALES`: per scale a small code ``k`` and the SD of its pre score over
      exchange participants (the composite's unit);
    - `_GAINS`: post − pre gain per unit and scale code, one scale at a time;
    - `_COMPOSITE`: one composite gain per unit, the mean over the scales it has of
      gain / SD(pre score of the scale), as `analytics.stats.reciprocity.composite_gains`
      computes it (scales with SD 0 or none left out).

    They stay in the warehouse, narrow (integers and the gain): at 1M participants the per
    unit x scale gains are ~8M rows, which pandas need not hold and which, grouped by strings
    all at once, did not fit in the load's 1,200 MB (only per-partnership and per-group sums
    are fetched).

    `stored`: the scores are those res_person_gains was made from (`_gains_stored`); `_GAINS`
    is then read from it (the same pairs, post − pre of the same scores) instead of pairing
    ~19M scores per scale again (9.6 s of an events append at 1M)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {_HOME} AS
        SELECT a._unit AS unit, a.exchange_id, p.institution_id
        FROM {_ATTRS} a JOIN {schema.PARTICIPANTS.name} p ON p.participant_id = a.participant
        WHERE NOT a.is_comparison
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {_GAIN_SCALES} AS
        SELECT (row_number() OVER (ORDER BY instrument, scale))::INTEGER AS k, *
        FROM (SELECT s.instrument, s.scale, stddev_samp(s.score) AS sd
              FROM {scores} s
              JOIN {_ATTRS} a ON a.participant = s.participant AND a.exchange_id = s.exchange_id
              WHERE s.wave = 'pre' AND NOT a.is_comparison AND s.score IS NOT NULL
              GROUP BY ALL)
    """)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_GAINS} (unit BIGINT, k INTEGER, gain DOUBLE)")
    if stored:
        con.execute(f"""
            INSERT INTO {_GAINS}
            SELECT a._unit, c.k, g.gain
            FROM {schema.RES_PERSON_GAINS.name} g
            JOIN {schema.RES_PERSON_KEYS.name} p USING (pid)
            JOIN {_ATTRS} a ON a.participant = p.participant_id AND a.exchange_id = g.exchange_id
            JOIN {_GAIN_SCALES} c USING (instrument, scale)
            WHERE NOT a.is_comparison
            ORDER BY c.k, a._unit
        """)
    for k, inst, sc in [] if stored else con.execute(
            f"SELECT k, instrument, scale FROM {_GAIN_SCALES} ORDER BY k").fetchall():
        con.execute(f"""
            INSERT INTO {_GAINS}
            SELECT a._unit, {int(k)}, max(s.score) FILTER (WHERE s.wave = 'post')
                                      - max(s.score) FILTER (WHERE s.wave = 'pre')
            FROM {scores} s
            JOIN {_ATTRS} a ON a.participant = s.participant AND a.exchange_id = s.exchange_id
            WHERE s.instrument = ? AND s.scale = ? AND NOT a.is_comparison
              AND s.score IS NOT NULL AND s.wave IN ('pre', 'post')
              AND a._unit IN (SELECT unit FROM {_HOME})
            GROUP BY a._unit
            HAVING count(*) FILTER (WHERE s.wave = 'post') > 0
               AND count(*) FILTER (WHERE s.wave = 'pre') > 0
        """, [inst, sc])
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {_COMPOSITE} AS
        SELECT g.unit, avg(g.gain / c.sd) AS gain
        FROM {_GAINS} g JOIN {_GAIN_SCALES} c USING (k)
        WHERE c.sd > 0 AND isfinite(g.gain / c.sd)
        GROUP BY g.unit
    """)


def _gains_and_composite_sql() -> str:
    """`_GAINS` and `_COMPOSITE` as one relation of unit, exchange_id, institution_id,
    instrument, scale, gain (the composite as instrument 'all', scale 'composite',
    `analytics.stats.reciprocity.COMPOSITE`)."""
    from analytics.stats.reciprocity import COMPOSITE

    return (f"(SELECT g.unit, h.exchange_id, h.institution_id, c.instrument, c.scale, g.gain "
            f"FROM {_GAINS} g JOIN {_HOME} h USING (unit) JOIN {_GAIN_SCALES} c USING (k) "
            f"UNION ALL SELECT g.unit, h.exchange_id, h.institution_id, '{COMPOSITE[0]}', "
            f"'{COMPOSITE[1]}', g.gain FROM {_COMPOSITE} g JOIN {_HOME} h USING (unit))")


def _reciprocity_and_equity(con: duckdb.DuckDBPyConnection, scores: str, attrs: pd.DataFrame,
                            k: int, wanted: Sequence[str], step: Callable,
                            stored_gains: bool = False) -> dict[str, pd.DataFrame]:
    """res_reciprocity, res_reciprocity_shares and res_equity_gaps from the units' gains per
    scale and their composite (`_gain_tables`, made here unless already made) and `attrs` (the
    frame behind `_ATTRS`, with the covariates of `_with_covariates`). Each side's n, mean and
    variance and the equity cells' counts and sums are computed in SQL."""
    from analytics.stats.equity import equity_gaps
    from analytics.stats.reciprocity import reciprocity_from_sides, reciprocity_shares

    out: dict[str, pd.DataFrame] = {}
    with step("reciprocity"):
        _gain_tables(con, scores, stored_gains)
    if {"reciprocity", "reciprocity_shares"} & set(wanted):
        with step("reciprocity"):
            parts = con.execute(f"""
                SELECT pt.partnership_id, pt.exchange_id, x.cluster_id AS cluster, x.modality,
                       pt.institution_a, pt.institution_b
                FROM {schema.PARTNERSHIPS.name} pt
                LEFT JOIN {schema.EXCHANGES.name} x USING (exchange_id)
                ORDER BY pt.partnership_id
            """).df()
            sides = con.execute(f"""
                SELECT exchange_id, institution_id, instrument, scale, count(*) AS n,
                       avg(gain) AS mean, var_samp(gain) AS v
                FROM {_gains_and_composite_sql()} g
                GROUP BY ALL ORDER BY ALL
            """).df()
            rec = reciprocity_from_sides(sides, parts, k=k)
            out["reciprocity"] = rec
        with step("reciprocity_shares"):
            out["reciprocity_shares"] = reciprocity_shares(rec, k=k)
    if "equity_gaps" in wanted:
        with step("equity_gaps"):
            out["equity_gaps"] = equity_gaps(_equity_cells(con, attrs), subsets=(
                "active", "dropped", "stayed"), lower_is_better={"dropout": True}, k=k)
    return out


def _equity_cells(con: duckdb.DuckDBPyConnection, attrs: pd.DataFrame) -> pd.DataFrame:
    """Per grouping x group x exchange x measure: units and the measure's sum, for
    `analytics.stats.equity.equity_gaps`. Units are exchange participants (participant x
    exchange; an enrolled participant with neither answers nor events is one unit with no
    exchange, labelled "(none) <unit>": a cluster and a cell of its own). Measures: gain (per
    scale and composite, `_gain_tables`; units with a pre and a post score), minutes (minutes
    logged per unit, every unit; ``active`` counts units with events), dropout (units that
    answered the pre survey; 1 when they did not answer the post survey). Summed in SQL: only
    the cells reach pandas."""
    units = attrs.assign(unit=np.arange(1, len(attrs) + 1, dtype=np.int64))
    units = units[~units["is_comparison"].astype(bool)]
    # A unit without an exchange is a cluster of its own (the product's rule for unlabelled
    # rows): a label of its own keeps it out of one "(none)" cell and cluster in the GROUP BY.
    no_x = units["exchange_id"].isna().to_numpy()
    units = pd.DataFrame({
        "unit": units["unit"].to_numpy(),
        "exchange_id": np.where(no_x, "(none) " + units["unit"].astype(str),
                                units["exchange_id"].astype("object").astype(str)),
        "minutes": units["minutes"].to_numpy(float),
        "active": (units["n_events"].to_numpy() > 0).astype(float),
        **{g: units[g].astype("object").fillna("not reported").astype(str)
           for g in EQUITY_GAP_GROUPINGS},
    })
    view, waves = "_ei_equity_units", "_ei_unit_waves"
    con.register(view, units)
    try:
        # which surveys each unit answered: one pass over the answers for every grouping
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {waves} AS
            SELECT a._unit AS unit, bool_or(r.wave = 'pre') AS pre,
                   bool_or(r.wave = 'post') AS post
            FROM (SELECT DISTINCT participant_id, exchange_id, wave
                  FROM {schema.RESPONSES.name}) r
            JOIN {_ATTRS} a ON a.participant = r.participant_id
                           AND a.exchange_id = r.exchange_id
            GROUP BY ALL""")
        parts = []
        for grouping in EQUITY_GAP_GROUPINGS:
            cells = con.execute(f"""
                WITH u AS (SELECT unit, exchange_id, "{grouping}" AS grp, minutes, active
                           FROM {view}),
                pre AS (SELECT u.*, CASE WHEN coalesce(w.post, FALSE) THEN 0.0 ELSE 1.0 END
                               AS dropped
                        FROM u JOIN {waves} w USING (unit) WHERE w.pre)
                SELECT 'minutes' AS measure, NULL::VARCHAR AS instrument,
                       NULL::VARCHAR AS scale, grp AS "group", exchange_id, count(*) AS n,
                       coalesce(sum(minutes), 0.0) AS sum, sum(active) AS active,
                       NULL::DOUBLE AS dropped, NULL::DOUBLE AS stayed
                FROM u GROUP BY ALL
                UNION ALL
                SELECT 'dropout', NULL, NULL, grp, exchange_id, count(*), sum(dropped), NULL,
                       sum(dropped), sum(1.0 - dropped)
                FROM pre GROUP BY ALL
                UNION ALL
                SELECT 'gain', g.instrument, g.scale, u.grp, u.exchange_id, count(*),
                       coalesce(sum(g.gain), 0.0), NULL, NULL, NULL
                FROM {_gains_and_composite_sql()} g JOIN u USING (unit) GROUP BY ALL
                ORDER BY ALL
            """).df()
            parts.append(cells.assign(grouping=grouping))
    finally:
        con.unregister(view)
        con.execute(f"DROP TABLE IF EXISTS {waves}")
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Issue 13: cost per outcome (analytics.stats.cost) from exchange budgets and the rates kind
# ---------------------------------------------------------------------------------------------

def _cost(con: duckdb.DuckDBPyConnection, scores: str, attrs: pd.DataFrame, k: int
          ) -> pd.DataFrame:
    """res_cost: exchanges (budget, currency, start year, program, cluster of the exchange),
    the exchange participants' units of `attrs` (active: an event logged; gain: the composite
    standardised gain of `_gain_tables`, as `analytics.stats.reciprocity.composite_gains`) and
    the rates."""
    from analytics.stats.cost import cost_per_outcome

    exchanges = con.execute(f"""
        SELECT exchange_id, program, cluster_id AS cluster, budget, currency,
               year(start_date) AS year
        FROM {schema.EXCHANGES.name} ORDER BY exchange_id
    """).df()
    has_rates = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? "
        "AND database_name = current_database()", [schema.RATES.name]).fetchall()[0][0]
    rates = (con.execute(f"SELECT currency, year, rate, base FROM {schema.RATES.name} "
                         "ORDER BY currency, year").df() if has_rates else None)
    own = attrs.assign(unit=np.arange(1, len(attrs) + 1, dtype=np.int64))
    own = own[own["exchange_id"].notna() & ~own["is_comparison"].astype(bool)]
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary "
                       "AND table_name = ?", [_COMPOSITE]).fetchall()[0][0]:
        _gain_tables(con, scores)  # not made by res_reciprocity in this derive
    comp = con.execute(f"SELECT unit, gain FROM {_COMPOSITE} ORDER BY unit").df()
    units = own[["unit", "exchange_id"]].assign(active=own["n_events"].to_numpy() > 0).merge(
        comp[["unit", "gain"]], on="unit", how="left")
    return cost_per_outcome(exchanges, units, rates, k=k)


def _write_table(con: duckdb.DuckDBPyConnection, table: schema.Table, df: pd.DataFrame) -> None:
    con.execute(f'DROP TABLE IF EXISTS "{table.name}"')
    con.execute(schema.ddl(table))
    if not len(df):
        return
    view = f"_res_{table.name}"
    con.register(view, df)
    try:
        cols = ", ".join(f'"{c}"' for c in table.column_names)
        con.execute(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM "{view}"')
    finally:
        con.unregister(view)


def _shed_cache(con: duckdb.DuckDBPyConnection) -> None:
    """Make DuckDB give back the memory it holds between queries (best effort).

    After the scale scores DuckDB kept ~600-700 MB at 200k participants (up to its limit, 1.2
    GB, at 1M: cached blocks of temporary tables and freed query memory) beside the per-scale
    pandas frames. Asking for a 1 MB limit makes it evict what it can (RSS 838 → 183 MB at
    200k); DuckDB then refuses the limit as too small and keeps the one it had, untouched. Were
    the limit accepted, the writer's (`etl.warehouse.LOAD_MEMORY_LIMIT`, which `refresh`'s
    connection runs under) is set back at once.
    """
    from etl.warehouse import LOAD_MEMORY_LIMIT

    try:
        con.execute("SET memory_limit = '1MB'")
    except duckdb.Error:
        return  # the usual outcome: evicted, limit unchanged
    con.execute(f"SET memory_limit = '{LOAD_MEMORY_LIMIT}'")


# Result tables that read no event (participation log): scale scores and everything computed
# from scores, answers and the roster alone. A load that changed only `events` keeps them as
# they are in the copied file, whose inputs they were computed from are unchanged (issue 17
# part 2; `tests/test_incremental.py` checks the kept tables equal a full refresh). The
# others read engagement (n_events, minutes), activity or the event log itself.
EVENTS_FREE: frozenset[str] = frozenset({
    "scale_scores", "reliability", "prepost", "longitudinal", "reliability_groups",
    "floor_ceiling", "invariance", "balance", "comparison", "moderation", "reciprocity",
    "reciprocity_shares"})
# Result tables that read the participation log only through which participant × exchange pairs
# have events: the attrition funnel (its roster is the pairs seen in answers or events, each
# person grouped by their first) and cost per outcome (a unit is active when it has an event).
# An events append whose every pair already had events keeps them too.
PAIRS_ONLY: frozenset[str] = frozenset({"attrition", "cost"})


def kept_on(changed: Collection[str] | None, state: StoredState | None, version: int, k: int,
            *, same_pairs: bool = False) -> frozenset[str]:
    """The result tables a derive may keep as they are: those that read none of the `changed`
    canonical tables (None: unknown, keep none; empty, e.g. every file refused: keep all), when
    the stored results are complete and of the version just before `version`, at the same k;
    `same_pairs`: the change to the event log gave no pair its first event (`PAIRS_ONLY`)."""
    if (changed is None or not set(changed) <= {schema.EVENTS.name} or state is None
            or state.data_version != version - 1 or state.min_cell != k):
        return frozenset()
    if not changed:
        return frozenset(RESULT_NAMES)
    return EVENTS_FREE | (PAIRS_ONLY if same_pairs else frozenset())


# Rows of a result table that read no event, by the SQL condition that selects them: the
# attrition baselines' per-scale rows compare completers' and drop-outs' pre scores (only the
# engagement row reads the log). An events-only load that keeps `EVENTS_FREE` reads these rows
# back and computes the rest.
EVENTS_FREE_ROWS: dict[str, str] = {"attrition_baseline": "measure = 'baseline_score'"}


def _stored_rows(con: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    """The stored rows of result table `name` that `EVENTS_FREE_ROWS` names, in stored order."""
    return con.execute(f'SELECT * FROM "{RESULT_NAMES[name].name}" '
                       f"WHERE {EVENTS_FREE_ROWS[name]}").df()


def _pairs_had_events(con: duckdb.DuckDBPyConnection, batches: Collection[int]) -> bool:
    """Whether every participant × exchange pair with an event in `batches` has an event of an
    earlier load too (a pair whose only earlier event the new one replaced counts as new)."""
    ids = ", ".join(str(int(b)) for b in batches) or "NULL"
    ev = schema.EVENTS.name
    return not con.execute(f"""
        SELECT 1 FROM (SELECT DISTINCT participant_id, exchange_id FROM {ev}
                       WHERE batch_id IN ({ids})) n
        ANTI JOIN (SELECT DISTINCT participant_id, exchange_id FROM {ev}
                   WHERE batch_id NOT IN ({ids})) o USING (participant_id, exchange_id)
        LIMIT 1""").fetchall()


def refresh(
    con: duckdb.DuckDBPyConnection,
    *,
    min_cell: int | None = None,
    progress: Callable[[str], None] | None = None,
    changed: Collection[str] | None = None,
    appended_events: Collection[int] | None = None,
    day_facts: Facts | None = None,
) -> Results:
    """Recompute the result tables and store them in the warehouse behind `con`.

    Call it on the writer's connection inside `etl.warehouse.build_next` (the load does): there
    `data_version(con)` is already the version readers will see once the file is swapped in, and
    the results are stamped with it. `changed`: the canonical tables the load changed (None:
    unknown, recompute everything, as `python -m analytics refresh` does); the tables that read
    none of them are kept (`kept_on`) and named in meta ``results_kept``; so are `PAIRS_ONLY`
    when an events append gave no pair its first event. `appended_events`:
    the batches whose events are all the load added (nothing removed); with `changed` just
    the event log, the rollups are then brought up to date from what those events touch
    (`analytics.derive.rollups.build_facts`).

    Order: the day facts (`rollups.build_facts`), which the result tables read; the result
    tables; the other rollups (`rollups.build_cubes`), which read res_scale_scores.
    `day_facts`: the day facts of this version are in place already (a serving warehouse read
    them from a lake's derive, `analytics.derive.serve`); they are not built again.
    """
    process.for_heavy_work()  # no transparent huge pages, one BLAS thread (etl.process)
    k = MIN_CELL if min_cell is None else int(min_cell)
    version = _data_version(con)
    only_events = changed is not None and set(changed) == {schema.EVENTS.name}
    same_pairs = (only_events and appended_events is not None
                  and _pairs_had_events(con, appended_events))
    keep = kept_on(changed, stored_state(con), version, k, same_pairs=same_pairs)
    wanted = [name for name in RESULT_NAMES if name not in keep]
    kept_rows = sorted(t for t in EVENTS_FREE_ROWS if EVENTS_FREE <= keep and t in wanted)
    # The day facts first: the result tables read the participation log through them (a
    # serving warehouse needs no `events`). An events append updates them, and the cubes with
    # them, from what it touched (`rollups.build_facts`); meta `rollups_data_version` stays
    # the previous version's until `build_cubes`, so the result tables below still see the
    # stored scores' gains as theirs (`_gains_stored`).
    t0 = time.perf_counter()
    if day_facts is None:
        day_facts = build_facts(con, appended_events=appended_events if only_events else None)
    facts_s = time.perf_counter() - t0
    # res_scale_scores is written by SQL while computing (no pandas round trip of its ~20
    # rows per participant); res.tables["scale_scores"] is then an empty frame. Kept, it is
    # read as it is by the tables that need scores.
    res = compute_results(con, min_cell=k, data_version=version, progress=progress,
                          tables=wanted, scores_table=schema.RES_SCALE_SCORES.name,
                          reuse_scores="scale_scores" in keep,
                          stored_rows=kept_rows,
                          shed=lambda: _shed_cache(con))
    t0 = time.perf_counter()
    for name, table in RESULT_NAMES.items():
        if name != "scale_scores" and name in res.tables:
            _write_table(con, table, res.tables[name])
    res.timings["write"] = time.perf_counter() - t0
    # The rest of the dashboard's rollups read res_scale_scores, so they follow the result
    # tables; "rollups" is the time of both phases.
    t0 = time.perf_counter()
    build_cubes(con, day_facts)
    res.timings["rollups"] = facts_s + time.perf_counter() - t0
    res.seconds += res.timings["write"] + res.timings["rollups"]
    facts = {
        "data_version": str(version),
        "generated_at": res.generated_at,
        "min_cell": str(k),
        "seconds": f"{res.seconds:.3f}",
        "timings": json.dumps({k_: round(v, 3) for k_, v in res.timings.items()}),
        "models": json.dumps(res.models, sort_keys=True),
        "kept": json.dumps(sorted(keep)),
        "kept_rows": json.dumps(kept_rows),
    }
    if "longitudinal" in keep:  # the kept table's models, as recorded when it was computed
        prev = con.execute(f"SELECT value FROM {schema.META.name} WHERE key = ?",
                           [_META_PREFIX + "models"]).fetchall()
        facts["models"] = prev[0][0] if prev else facts["models"]
    con.execute(f"DELETE FROM {schema.META.name} WHERE key LIKE '{_META_PREFIX}%'")
    con.executemany(f"INSERT INTO {schema.META.name} VALUES (?, ?)",
                    [[_META_PREFIX + key, v] for key, v in facts.items()])
    return res


def stored_state(con: duckdb.DuckDBPyConnection) -> StoredState | None:
    """The stored results' version, time, threshold and timings; None if there are none (no
    meta rows, or a result table is missing)."""
    rows = dict(con.execute(
        f"SELECT key, value FROM {schema.META.name} WHERE key LIKE '{_META_PREFIX}%'").fetchall())
    if not rows or _META_PREFIX + "data_version" not in rows:
        return None
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    if any(t.name not in present for t in RESULT_NAMES.values()):
        return None
    def _json(key: str) -> dict:
        try:
            return json.loads(rows.get(_META_PREFIX + key, "{}"))
        except ValueError:
            return {}

    return StoredState(
        data_version=int(rows[_META_PREFIX + "data_version"]),
        generated_at=rows.get(_META_PREFIX + "generated_at", ""),
        min_cell=int(rows.get(_META_PREFIX + "min_cell", MIN_CELL)),
        seconds=float(rows.get(_META_PREFIX + "seconds", "nan")),
        timings=_json("timings"),
        models=_json("models"),
    )

