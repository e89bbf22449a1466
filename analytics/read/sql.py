"""What every read-layer module shares: the tables it reads, the SQL of the filter scope, the
choice between the two grains of derived tables, and the small-cell rule on its answers.

The read layer reads the derived tables of the data version a request sees, nothing else:

- the rollups (`res_activity_weekly`, `res_people`, … of `analytics.derive.rollups`): per-cell
  sums keyed by the dimensions the filter bar restricts, a few thousand rows;
- the day facts (`res_person_days`, `res_answer_days`, `res_person_hours`, `res_person_scores`,
  `res_person_gains`, keyed by `res_person_keys`): one row per participant, exchange and UTC
  day (or score), for what cell sums cannot answer.

One rule picks between them (`use_rollups`): the rollups when they answer the filters exactly
(no date range, and for counts of distinct participants no participant in two exchanges), else
the day facts. A warehouse whose data version has no derived tables (written by an older
version) raises `DerivedTablesMissing`, whose message says to run `python -m analytics refresh`.
The raw event log is the test oracle of both (tests/read_oracle.py), never read here.

Small groups: every row a page shows about fewer than `MIN_CELL` participants goes through the
project's one small-cell rule, `analytics.suppression.suppress` (`suppress` here); a count of a
subset of a shown row's people goes through the same rule (`suppress_subset`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from analytics import suppression
from analytics.derive.rollups import (
    GENDER_SQL,
    MASK_MONTHS,
    META_MONTHS_BASE,
    META_MULTI,
    META_VERSION,
    week_sql,
)
from analytics.read.cache import version_key
from analytics.read.filters import EQUITY_GROUPINGS, Filters, month_end
from analytics.stats.longitudinal import wave_key
from etl import schema
from etl.errors import WarehouseError

__all__ = ["DerivedTablesMissing", "REFRESH_HINT", "require_derived", "use_rollups", "df", "rdf",
           "arrow_df", "table_exists", "dims", "Scope", "scope", "month_index", "mask_bits",
           "mask_range", "assemble_scope", "cells", "suppress", "suppress_subset", "term_sql",
           "group_col", "equity_col", "equity_sql", "moments_sql", "wave_rank", "AGE_BAND_SQL",
           "WEEK_SQL"]

# Dimension tables (small; what the filters name) and the load log.
T_CLUSTERS = schema.CLUSTERS.name
T_INST = schema.INSTITUTIONS.name
T_EXCH = schema.EXCHANGES.name
T_PARTNER = schema.PARTNERSHIPS.name
T_BATCHES = schema.LOAD_BATCHES.name
T_REJECTS = schema.REJECTS.name
T_META = schema.META.name
# Day facts.
T_PKEYS = schema.RES_PERSON_KEYS.name
T_PDAYS = schema.RES_PERSON_DAYS.name
T_PMONTHS = schema.RES_PAIR_MONTHS.name
T_PMCUBE = schema.RES_PAIR_MONTH_CUBE.name
T_WMONTHS = schema.RES_WEEK_MONTHS.name
T_RMONTHS = schema.RES_RETENTION_MONTHS.name
T_SMONTHS = schema.RES_SCORE_MONTHS.name
T_GMONTHS = schema.RES_GAIN_MONTHS.name
T_ADAYS = schema.RES_ANSWER_DAYS.name
T_PSCORES = schema.RES_PERSON_SCORES.name
T_PGAINS = schema.RES_PERSON_GAINS.name
T_PHOURS = schema.RES_PERSON_HOURS.name
# Rollups.
R_WEEKLY = schema.RES_ACTIVITY_WEEKLY.name
R_MONTHLY = schema.RES_ACTIVITY_MONTHLY.name
R_HOURLY = schema.RES_ACTIVITY_HOURLY.name
R_RETENTION = schema.RES_RETENTION.name
R_PEOPLE = schema.RES_PEOPLE.name
R_WAVES = schema.RES_RESPONSE_WAVES.name
R_SCORES = schema.RES_SCORE_CUBE.name
R_GAINS = schema.RES_GAIN_CUBE.name

# Column names are spelled in the SQL for readability; this check at import fails loudly if
# `etl.schema` renames one of them.
_COLUMNS_USED: tuple[tuple[schema.Table, tuple[str, ...]], ...] = (
    (schema.CLUSTERS, ("cluster_id", "name")),
    (schema.INSTITUTIONS, ("institution_id", "name", "country", "cluster_id", "timezone",
                          "income_group", "connectivity")),
    (schema.EXCHANGES, ("exchange_id", "name", "program", "cluster_id", "modality", "setting",
                       "start_date", "end_date")),
    (schema.PARTNERSHIPS, ("partnership_id", "exchange_id", "institution_a", "institution_b",
                          "started_on", "ended_on")),
    (schema.RES_PERSON_KEYS, ("pid", "participant_id", "institution_id", "role", "gender",
                             "birth_year", "comparison")),
    (schema.RES_PERSON_DAYS, ("pid", "exchange_id", "day", "events", "minutes")),
    (schema.RES_ANSWER_DAYS, ("pid", "exchange_id", "wave", "day")),
    (schema.RES_PERSON_HOURS, ("pid", "exchange_id", "day", "weekday", "hour", "events")),
    (schema.RES_PERSON_SCORES, ("pid", "exchange_id", "instrument", "scale", "wave", "score")),
    (schema.RES_PERSON_GAINS, ("pid", "exchange_id", "instrument", "scale", "gain", "pre",
                              "post")),
)
for _t, _cols in _COLUMNS_USED:
    for _c in _cols:
        _t.col(_c)  # raises KeyError naming the table and column if schema.py renamed it


# ---------------------------------------------------------------------------------------------
# The derived tables and the one rule that picks their grain
# ---------------------------------------------------------------------------------------------

REFRESH_HINT = "run `python -m analytics refresh` to build them"


class DerivedTablesMissing(WarehouseError):
    """The warehouse's data version has no dashboard tables (rollups and day facts): it was
    written by an older version, or its load stopped before they were built."""


_DERIVED_STATE: dict[str, bool] = {}  # per warehouse build: distinct counts add up over cells
_DERIVED_LOCK = threading.Lock()


def require_derived(cur: duckdb.DuckDBPyConnection) -> bool:
    """Check that this data version has every derived table (meta `rollups_data_version` equals
    `data_version` and each table of `schema.ROLLUP_TABLES` exists with its columns), raising
    `DerivedTablesMissing` otherwise; returns whether their distinct participant counts add up
    over cells (no participant in two exchanges). Checked once per warehouse build."""
    key = version_key(cur)
    exact = _DERIVED_STATE.get(key)
    if exact is not None:
        return exact
    meta = dict(cur.execute(
        f"SELECT key, value FROM {T_META} WHERE key IN ('data_version', ?, ?)",
        [META_VERSION, META_MULTI]).fetchall())
    present = {r[0] for r in cur.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    missing = sorted(t for t in schema.ROLLUP_TABLES if t not in present)
    if not missing:  # tables an older version built without a column read now (e.g. pre, post)
        cols = set(cur.execute(
            "SELECT table_name, column_name FROM information_schema.columns").fetchall())
        missing = [f"{t}.{c}" for t, table in schema.ROLLUP_TABLES.items()
                   for c in table.column_names if (t, c) not in cols]
    if missing or meta.get(META_VERSION) != meta.get("data_version"):
        what = (f"lacks {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}" if missing
                else f"has them for data version {meta.get(META_VERSION)!r}, not "
                     f"{meta.get('data_version')!r}")
        raise DerivedTablesMissing(
            f"The warehouse has no dashboard tables for its data version (it {what}); "
            f"{REFRESH_HINT}.")
    exact = meta.get(META_MULTI) == "0"
    with _DERIVED_LOCK:
        _DERIVED_STATE[key] = exact
    return exact


_MONTHS_BASE: dict[str, date | None] = {}


def months_base(cur: duckdb.DuckDBPyConnection) -> date | None:
    """The month of bit 0 of the stored month masks (res_pair_months and the rule's cubes), or
    None when this data version has none (a span over `rollups.MASK_MONTHS`): the
    differencing rule then reads the day facts. Read once per warehouse build."""
    key = version_key(cur)
    if key not in _MONTHS_BASE:
        require_derived(cur)
        row = cur.execute(f"SELECT value FROM {T_META} WHERE key = ?",
                          [META_MONTHS_BASE]).fetchone()
        value = date.fromisoformat(row[0]) if row and row[0] else None
        with _DERIVED_LOCK:
            _MONTHS_BASE[key] = value
    return _MONTHS_BASE[key]


def use_rollups(cur: duckdb.DuckDBPyConnection, f: Filters, *, distinct: bool = True) -> bool:
    """The read layer's one grain rule: True when the rollups answer these filters exactly, so a
    query reads them; False when it must read the day facts. The rollups are weekly and
    undated, so a date range needs the day facts; and a count of distinct participants summed
    over cells counts a participant in two exchanges twice, so with such participants
    (`distinct=True`) it needs the day facts too. Raises `DerivedTablesMissing` when this data
    version has neither."""
    exact = require_derived(cur)
    if f.restricts_dates:
        return False
    return exact or not distinct


# ---------------------------------------------------------------------------------------------
# Running SQL
# ---------------------------------------------------------------------------------------------

def df(cur: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None
       ) -> pd.DataFrame:
    return cur.execute(sql, dict(params or {})).df()


def _named(sql: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of `p` that `sql` names (DuckDB rejects unused ones; keys starting with
    `_` are SQL fragments, not parameters)."""
    return {k: v for k, v in p.items() if not k.startswith("_") and re.search(rf"\${k}\b", sql)}


def rdf(cur: duckdb.DuckDBPyConnection, sql: str, p: Mapping[str, Any]) -> pd.DataFrame:
    """`df` with only the parameters the statement names."""
    return df(cur, sql, _named(sql, p))


def arrow_df(cur: duckdb.DuckDBPyConnection, sql: str, p: Mapping[str, Any]) -> pd.DataFrame:
    """`rdf` through Arrow: for many rows of strings and numbers, half the time of `.df()`
    (strings land in pandas' Arrow-backed str dtype without a per-value conversion). Dates
    and wide integers come back as Arrow maps them, so `rdf` stays the default."""
    cur.abort()  # a cursor's earlier read left unfinished (`fetchone`) would block `sql`
    return cur.sql(sql, params=_named(sql, p)).to_arrow_table().to_pandas()


def table_exists(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = cur.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


# ---------------------------------------------------------------------------------------------
# SQL fragments
# ---------------------------------------------------------------------------------------------

WEEK_SQL = week_sql("day")


def term_sql(col: str) -> str:
    # A cohort/term is the half-year an exchange starts in: '2025-H1' (Jan–Jun), '2025-H2'.
    return f"(strftime({col}, '%Y') || CASE WHEN month({col}) <= 6 THEN '-H1' ELSE '-H2' END)"


AGE_BAND_SQL = (
    "CASE WHEN birth_year IS NULL THEN 'not reported' "
    "WHEN year(current_date) - birth_year <= 12 THEN '12 or under' "
    "WHEN year(current_date) - birth_year <= 15 THEN '13–15' "
    "WHEN year(current_date) - birth_year <= 18 THEN '16–18' "
    "WHEN year(current_date) - birth_year <= 24 THEN '19–24' ELSE '25 or over' END"
)


def group_col(by: str | None) -> str:
    """The column of scope CTE fe (or of `cells`) that a weekly series is grouped by."""
    cols = {None: "'all'", "cluster": "coalesce(cluster_name, cluster_id)", "country": "country",
            "modality": "modality", "setting": "setting", "exchange": "exchange_name",
            "term": "term"}
    if by not in cols:
        raise ValueError(f"cannot group by {by!r}; choose one of {sorted(k for k in cols if k)}")
    return cols[by]


def equity_col(by: str) -> str:
    if by not in EQUITY_GROUPINGS:
        raise ValueError(f"cannot group by {by!r}; choose one of {sorted(EQUITY_GROUPINGS)}")
    return by


def equity_sql(col: str) -> str:
    """An equity grouping over a rollup's cells (the age band is derived from birth_year)."""
    return AGE_BAND_SQL if col == "age_band" else col


def moments_sql(n: str = "n", s: str = "sum", ss: str = "sumsq") -> str:
    """Mean and sample SD from summed count, sum and sum of squares (n − 1 denominator)."""
    return (f"CAST(sum({n}) AS BIGINT) AS n, sum({s}) / sum({n}) AS mean, "
            f"CASE WHEN sum({n}) > 1 THEN sqrt(greatest(sum({ss}) - sum({s}) * sum({s}) / sum({n}),"
            f" 0) / (sum({n}) - 1)) END AS sd")


def wave_rank(wave: pd.Series) -> pd.Series:
    """Sort key per row in time order of the waves (`analytics.stats.longitudinal.wave_key`)."""
    return wave.map(wave_key)


def _in(f: Filters, p: dict[str, Any], name: str, col: str) -> str:
    """' AND list_contains($name, col)' when filter `name` has values (put into `p`), else ''."""
    vals = getattr(f, name)
    if not vals:
        return ""
    p[name] = list(vals)
    return f" AND list_contains(${name}, {col})"


# ---------------------------------------------------------------------------------------------
# The filter scope
# ---------------------------------------------------------------------------------------------

def dims(f: Filters) -> tuple[str, dict[str, Any]]:
    """CTEs fi (institutions) and fx (exchanges) in scope: the base of `scope` and of the
    rollup queries. `p['_role']` is the role condition on a rollup cell `c` (not a parameter)."""
    p: dict[str, Any] = {}
    sql = f"""
    fi AS (
        SELECT i.institution_id, i.name AS institution_name, i.country, i.cluster_id,
               i.timezone, coalesce(i.income_group, 'not reported') AS income_group,
               coalesce(i.connectivity, 'not reported') AS connectivity,
               c.name AS cluster_name
        FROM {T_INST} i LEFT JOIN {T_CLUSTERS} c USING (cluster_id)
        WHERE TRUE{_in(f, p, "cluster", "i.cluster_id")}{_in(f, p, "country", "i.country")}
    ),
    fx AS (
        SELECT x.exchange_id, x.name AS exchange_name, x.program, x.modality, x.setting,
               x.start_date, x.end_date, {term_sql("x.start_date")} AS term
        FROM {T_EXCH} x
        WHERE TRUE{_in(f, p, "program", "x.program")}{_in(f, p, "exchange", "x.exchange_id")}
              {_in(f, p, "modality", "x.modality")}{_in(f, p, "setting", "x.setting")}
              {_in(f, p, "term", term_sql("x.start_date"))}
    )"""
    role = _in(f, p, "role", "c.role")
    return sql, p | {"_role": role}


# A builder of the scope CTEs: `scope` (the day facts) in production; the day-facts queries take
# it as a parameter so that the test oracle can pass its event-log builder instead.
Scope = Callable[..., tuple[str, dict[str, Any]]]


def month_index(d: date, base: date) -> int:
    """The bit of `d`'s month in a month mask whose bit 0 is `base`'s month."""
    return (d.year - base.year) * 12 + d.month - base.month


def mask_bits(lo: int, hi: int) -> str:
    """A HUGEINT literal with bits lo..hi set (clamped to the masks' months; 0 when empty)."""
    lo, hi = max(lo, 0), min(hi, MASK_MONTHS - 1)
    return f"CAST({(1 << (hi + 1)) - (1 << lo) if lo <= hi else 0} AS HUGEINT)"


def mask_range(f: Filters, base: date) -> str:
    """The mask of the months of `f`'s date range (whole months, `canonical_filters`)."""
    return mask_bits(month_index(f.start, base) if f.start else 0,
                     month_index(f.end, base) if f.end else MASK_MONTHS - 1)


def _people_with_pairs(f: Filters, months: date | None) -> str | None:
    """SQL of the people with events or answers in fx within `f`'s dates, from the stored
    month masks (res_pair_months, bit 0 = `months`): one row per pair instead of their days.
    None when the masks cannot say: none stored, or a date range that is not whole months
    (the pages' ranges are, `filters.canonical_filters`)."""
    if months is None:
        return None
    if (f.start and f.start.day != 1) or (f.end and f.end != month_end(f.end)):
        return None
    rows = f"SELECT pid FROM {T_PMONTHS} JOIN fx USING (exchange_id)"
    if not f.restricts_dates:
        return rows
    return f"{rows} WHERE (active_months | answer_months) & {mask_range(f, months)} <> 0"


def scope(f: Filters, *, include_comparison: bool = False, scores: bool = False,
          hours: bool = False, months: date | None = None) -> tuple[str, dict[str, Any]]:
    """CTEs that every day-facts query starts from: fi (institutions), fx (exchanges), fp
    (participants, with their institution's attributes), fe (activity of fp in fx within the
    dates: one row per participant, exchange and UTC day with `events` and `minutes`) and fr
    (answered waves of fx by the people of fp, undated; one row per answer day: its readers
    count distinct people; kept to fp's people before they group it, which at 1M took a
    dated funnel's rule from 0.8 to 0.3 s), and ffirst (each participant × exchange of fx's
    first day with events, undated: retention counts weeks from it). People are `pid`
    throughout; fp also has participant_id.

    `scores=True` adds fs (scored rows: pid, exchange_id, instrument, scale, wave, score) and fg
    (complete pairs: pid, exchange_id, instrument, scale, gain = post − pre, pre, post) of the
    exchanges in scope, for everyone; join them to fp to keep the people in scope. `hours=True`
    adds fh (pid, local ISO weekday, local hour, events) of the activity in scope.

    `months`: the stored month masks' first month (`months_base`); with it, the people of an
    exchange-restricted or dated view are found on res_pair_months instead of their days (at
    1M participants a scan of 24M person-days per query)."""
    day_cond = ""
    if f.start is not None:
        day_cond += " AND day >= $start"
    if f.end is not None:
        day_cond += " AND day <= $end"
    parts = {
        "fev": f"""SELECT pid, exchange_id, day, events, minutes
            FROM {T_PDAYS} JOIN fx USING (exchange_id) WHERE TRUE{day_cond}""",
        "active": "SELECT pid FROM fev",
        "answered": f"SELECT pid FROM {T_ADAYS} JOIN fx USING (exchange_id) WHERE TRUE{day_cond}",
        "people": f"{T_PKEYS} p",
        "fe_people": "ev.* FROM fev ev JOIN fp USING (pid)",
        "fr": f"SELECT pid, exchange_id, wave FROM {T_ADAYS} JOIN fx USING (exchange_id)",
        "ffirst": f"""SELECT pid, exchange_id, min(day) AS d0
            FROM {T_PDAYS} JOIN fx USING (exchange_id) GROUP BY ALL""",
        "fh": f"""SELECT h.pid, h.weekday, h.hour, h.events
            FROM {T_PHOURS} h JOIN fx USING (exchange_id) JOIN fp USING (pid)
            WHERE TRUE{day_cond}""",
        "fs": f"SELECT * FROM {T_PSCORES} JOIN fx USING (exchange_id)",
        "fg": f"SELECT * FROM {T_PGAINS} JOIN fx USING (exchange_id)",
    }
    if (pairs := _people_with_pairs(f, months)) is not None:
        parts["people_in"] = pairs
    return assemble_scope(f, parts, include_comparison=include_comparison, scores=scores,
                          hours=hours)


def assemble_scope(f: Filters, parts: Mapping[str, str], *, include_comparison: bool = False,
                   scores: bool = False, hours: bool = False) -> tuple[str, dict[str, Any]]:
    """The scope CTEs (see `scope`) from the SQL of their sources in `parts`: fev (activity in
    fx within the dates), active / answered (who has activity or answers in scope), people
    (the participants, aliased p), fe_people (fev joined to fp), fr, fh, fs and fg, and
    optionally people_in (who has activity or answers in scope, in one query). `scope` gives
    the day facts; the test oracle gives the event log."""
    base, p = dims(f)
    del p["_role"]
    if f.start is not None:
        p["start"] = f.start
    if f.end is not None:
        p["end"] = f.end
    restrict_people = ""
    if f.restricts_exchanges or f.restricts_dates:
        inside = parts.get("people_in") or f"{parts['active']} UNION {parts['answered']}"
        restrict_people = f" AND p.pid IN ({inside})"
    comparison = "" if include_comparison else " AND NOT coalesce(p.comparison, FALSE)"
    sql = f"""{base},
    fev AS ({parts['fev']}),
    fp AS (
        SELECT p.pid, p.participant_id, p.institution_id, p.role,
               {GENDER_SQL} AS gender,
               {AGE_BAND_SQL} AS age_band, coalesce(p.comparison, FALSE) AS comparison,
               fi.country, fi.cluster_id, fi.cluster_name, fi.timezone, fi.income_group,
               fi.connectivity, fi.institution_name
        FROM {parts['people']} JOIN fi USING (institution_id)
        WHERE TRUE{_in(f, p, "role", "p.role")}{comparison}{restrict_people}
    ),
    fe AS (
        SELECT fp.country, fp.cluster_id, fp.cluster_name, fp.timezone, fp.institution_id,
               fx.modality, fx.setting, fx.term, fx.exchange_name, {parts['fe_people']}
        JOIN fx USING (exchange_id)
    ),
    fr AS (SELECT * FROM ({parts['fr']}) WHERE pid IN (SELECT pid FROM fp)),
    ffirst AS ({parts['ffirst']})"""
    if hours:
        sql += f""",
    fh AS ({parts['fh']})"""
    if scores:
        sql += f""",
    fs AS ({parts['fs']}),
    fg AS ({parts['fg']})"""
    return sql, p


def cells(table: str, f: Filters, p: dict[str, Any], *, comparison: bool = False,
          people: bool = False, extra: str = "") -> str:
    """A rollup's rows in scope (after `dims`) joined to their institution and exchange
    attributes. People with no exchange yet (exchange_id NULL) count unless the filters
    restrict exchanges."""
    join_x = ("JOIN fx USING (exchange_id)" if not people or f.restricts_exchanges
              else "LEFT JOIN fx USING (exchange_id)")
    comp = "" if comparison else " AND NOT c.comparison"
    return (f"SELECT c.*, fi.country, fi.cluster_id, fi.cluster_name, fi.income_group, "
            f"fi.connectivity, fx.exchange_name, fx.modality, fx.setting, fx.term{extra} "
            f"FROM {table} c JOIN fi USING (institution_id) {join_x} "
            f"WHERE TRUE{p['_role']}{comp}")


# ---------------------------------------------------------------------------------------------
# The small-cell rule on the read layer's tables
# ---------------------------------------------------------------------------------------------

def suppress(df: pd.DataFrame, n_col: str, keep: Sequence[str] = (),
             dims: Sequence[str] | None = None, hide: Sequence[bool] | None = None
             ) -> pd.DataFrame:
    """The project's one small-cell rule (`analytics.suppression.suppress`, k = MIN_CELL) on a
    read-layer table: every number of a row whose participant count `n_col` is under k is
    blanked, its own count included; `keep` names the numeric columns that only locate the row
    (a weekday, a week number). The pages want a flag, so `suppressed` is a bool here, and
    blanked columns are float64 with NaN (plotly and the tables read NaN as "no value").

    `dims`: the table is shown beside its total (the headline's participants, an "all" row),
    so `analytics.suppression.protect` also blanks complementary cells (secondary suppression)
    until no suppressed count is recoverable by subtraction; `dims` are the table's group
    columns (one row per combination). `hide`: rows that the differencing rule hides
    (`analytics.read.disclosure`), blanked as primary cells before the secondary step; a
    `hide` that hides no row is no `hide` (no secondary step without `dims`)."""
    if hide is not None and not any(hide):
        hide = None
    if dims is None and hide is None:
        out = suppression.suppress(df, n=n_col, keep=keep)
    else:
        out = suppression.protect(df, n=n_col, keep=keep, dims=dims or (), hide=hide)
    flagged = out["suppressed"] != ""
    out["suppressed"] = flagged.to_numpy(bool)
    if flagged.any():
        for c in out.columns:
            if c in keep or c == "suppressed":
                continue
            if isinstance(out[c].dtype, pd.Int64Dtype | pd.BooleanDtype | pd.Float64Dtype):
                out[c] = out[c].astype("float64")
    return out


def suppress_subset(df: pd.DataFrame, count: str, derived: Sequence[str] = (),
                    flag: str = "subset_suppressed", hide: Sequence[bool] | None = None
                    ) -> pd.DataFrame:
    """The same small-cell rule on a count of a SUBSET of a shown row's people (a week's active
    participants, a group's drop-outs or active participants): where `count` is under MIN_CELL
    (decided by `suppress`, the one rule), `count` and the `derived` numbers computed from
    those people (their share, minutes, events) are blanked (NaN) and `flag` is True. The row's
    own `suppressed` flag and its group count stay, so a group is never shown as suppressed
    because one of its subsets was. A count of 0 stays 0: no person is in it, so it identifies
    no one (and a week without activity is a real zero, not a gap). Rows already suppressed
    whole are left as they are (flag False). `hide`: subsets the differencing rule hides
    (`analytics.read.disclosure`; a week of a shown group), blanked and flagged the same way."""
    out = df.copy()
    cols = [count, *derived]
    counts = pd.to_numeric(out[count], errors="coerce")
    shown = ~out["suppressed"].to_numpy(bool)
    rows = shown & (counts.fillna(0) != 0).to_numpy(bool)
    part = suppress(out.loc[rows, cols], count)
    hit = pd.Series(False, index=out.index)
    hit.loc[part.index] = part["suppressed"].to_numpy(bool)
    if hide is not None:
        hit |= np.asarray(hide, dtype=bool) & shown
    if hit.any():
        for c in cols:
            out[c] = out[c].astype("float64")
        out.loc[hit.to_numpy(bool), cols] = np.nan
    out[flag] = hit.to_numpy(bool)
    return out


def stored_result(cur: duckdb.DuckDBPyConnection, table: schema.Table, n_cols: Sequence[str],
                  where: str = "", params: dict[str, Any] | None = None,
                  keep: Sequence[str] = ()) -> pd.DataFrame:
    """A stored res_* table (with a `suppressed` column) with the small-cell rule applied again
    at today's k: a row's count is the smallest of `n_cols`, and a row stored as suppressed (at
    the k of its computation) counts as missing, so it stays blanked whatever k is now. Empty
    with the table's columns when the results are not computed yet."""
    if not table_exists(cur, table.name):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in table.column_names}).assign(
            suppressed=pd.Series(dtype=bool))
    df = rdf(cur, f"SELECT * FROM {table.name} {where}", params or {})
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
    n = df[list(n_cols)].apply(pd.to_numeric, errors="coerce").min(axis=1).mask(stored)
    return suppress(df.drop(columns="suppressed").assign(_n=n), "_n", keep=keep).drop(
        columns="_n")
