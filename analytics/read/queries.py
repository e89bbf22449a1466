"""The dashboard's read side: aggregate SQL over a cursor passed in, tidy DataFrames out.

Every query takes a DuckDB cursor (one per request, from `etl.warehouse.Reader`) and a `Filters`
value parsed from the URL's query string, and returns a DataFrame with one row per estimate or
group. Nothing here opens a connection or knows about Dash. Results are cached per process in a
`QueryCache` bounded by bytes and keyed by (warehouse data version, query, filters): the
warehouse only changes through a new data version, so a cached answer is never stale, and
nothing is shared across gunicorn workers (each forks with an empty cache). Filters reach a
query only through `known_filters` (values the data has), so a forged request cannot grow it.

Table names come from `etl.schema`. Column names are spelled in the SQL for readability; the
`_COLUMNS_USED` check at import fails loudly if `etl.schema` renames one of them.

Small groups: every row a page shows (a group, a heatmap cell, a survey wave, the headline of
the whole selection) about fewer than `MIN_CELL` participants goes through the project's one
small-cell rule, `analytics.suppression.suppress`: it is flagged `suppressed` and every number in
it, its count included, is blanked (NaN, never 0), so pages show "suppressed (n < k)" instead;
k is `analytics.suppression.MIN_CELL`, the deployment's one setting. Pages
never apply the rule themselves. A count of a subset of a shown row's people (a week's active
participants, a group's drop-outs or active participants, "active this month") goes through the
same rule (`_suppress_subset`): under k (and above 0) it is blanked with the numbers computed
from those people and flagged in its own column (`week_suppressed`, `subset_suppressed`,
`active_month_suppressed`), so `suppressed` keeps meaning "the group is under k".
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import wraps
from typing import Any
from urllib.parse import parse_qs, urlencode

import duckdb
import numpy as np
import pandas as pd

from analytics import suppression
from analytics.derive.rollups import GENDER_SQL, META_MULTI, META_VERSION, day_sql, week_sql
from analytics.stats.longitudinal import wave_key
from analytics.stats.means import t_interval, welch_difference
from analytics.stats.survival import kaplan_meier, km_median
from analytics.suppression import MIN_CELL, SMALL_SELECTION, SUPPRESSED_LABEL
from etl import schema

__all__ = [
    "MIN_CELL",
    "SUPPRESSED_LABEL",
    "SMALL_SELECTION",
    "Filters",
    "FilterOptions",
    "GROUPINGS",
    "EQUITY_GROUPINGS",
    "data_info",
    "filter_options",
    "parse_filters",
    "known_filters",
    "headline",
    "completion_by_wave",
    "participants_by_country",
    "activity_over_time",
    "activity_heatmap",
    "retention_by_cohort",
    "breakdown",
    "prepost_results",
    "prepost_extremes",
    "reliability",
    "longitudinal",
    "wave_means",
    "comparison_difference",
    "gains_by_group",
    "participation_by_group",
    "attrition_funnel",
    "dropout_by_group",
    "partnership_network",
    "partnership_persistence",
    "partnership_summary",
    "load_batches",
    "rejects",
    "result_table_status",
    "clear_cache",
    "cache_keys",
    "CACHE",
    "QueryCache",
]


T_CLUSTERS = schema.CLUSTERS.name
T_INST = schema.INSTITUTIONS.name
T_EXCH = schema.EXCHANGES.name
T_PARTNER = schema.PARTNERSHIPS.name
T_PEOPLE = schema.PARTICIPANTS.name
T_EVENTS = schema.EVENTS.name
T_RESP = schema.RESPONSES.name
T_BATCHES = schema.LOAD_BATCHES.name
T_REJECTS = schema.REJECTS.name
T_META = schema.META.name
T_PREPOST = schema.RES_PREPOST.name
T_RELIAB = schema.RES_RELIABILITY.name
T_LONG = schema.RES_LONGITUDINAL.name
T_ATTR = schema.RES_ATTRITION.name
T_SCORES = schema.RES_SCALE_SCORES.name
T_PKEYS = schema.RES_PERSON_KEYS.name
T_PDAYS = schema.RES_PERSON_DAYS.name
T_ADAYS = schema.RES_ANSWER_DAYS.name
T_PSCORES = schema.RES_PERSON_SCORES.name
T_PGAINS = schema.RES_PERSON_GAINS.name
T_PHOURS = schema.RES_PERSON_HOURS.name

_COLUMNS_USED: tuple[tuple[schema.Table, tuple[str, ...]], ...] = (
    (schema.CLUSTERS, ("cluster_id", "name")),
    (schema.INSTITUTIONS, ("institution_id", "name", "country", "cluster_id", "timezone",
                          "income_group", "connectivity")),
    (schema.EXCHANGES, ("exchange_id", "name", "program", "cluster_id", "modality", "setting",
                       "start_date", "end_date")),
    (schema.PARTNERSHIPS, ("partnership_id", "exchange_id", "institution_a", "institution_b",
                          "started_on", "ended_on")),
    (schema.PARTICIPANTS, ("participant_id", "institution_id", "role", "gender", "birth_year",
                          "comparison")),
    (schema.EVENTS, ("participant_id", "exchange_id", "occurred_at", "minutes")),
    (schema.RESPONSES, ("participant_id", "exchange_id", "wave", "submitted_at")),
    (schema.RES_SCALE_SCORES, ("participant", "exchange_id", "wave", "instrument", "scale",
                              "score")),
    (schema.RES_PERSON_KEYS, ("pid", "participant_id", "institution_id", "role", "gender",
                             "birth_year", "comparison")),
    (schema.RES_PERSON_DAYS, ("pid", "exchange_id", "day", "events", "minutes")),
    (schema.RES_ANSWER_DAYS, ("pid", "exchange_id", "wave", "day")),
    (schema.RES_PERSON_HOURS, ("pid", "exchange_id", "day", "weekday", "hour", "events")),
    (schema.RES_PERSON_SCORES, ("pid", "exchange_id", "instrument", "scale", "wave", "score")),
    (schema.RES_PERSON_GAINS, ("pid", "exchange_id", "instrument", "scale", "gain")),
)
for _t, _cols in _COLUMNS_USED:
    for _c in _cols:
        _t.col(_c)  # raises KeyError naming the table and column if schema.py renamed it

# The page-level groupings a user can choose, value -> label.
GROUPINGS: dict[str, str] = {
    "cluster": "Cluster",
    "country": "Country",
    "modality": "Modality",
    "setting": "Setting",
}
EQUITY_GROUPINGS: dict[str, str] = {
    "gender": "Gender",
    "age_band": "Age band",
    "connectivity": "Connectivity",
    "income_group": "Country income group",
}


# ---------------------------------------------------------------------------------------------
# Filters: the query string's typed form
# ---------------------------------------------------------------------------------------------

_LIST_FIELDS = ("program", "cluster", "country", "exchange", "term", "role", "modality", "setting")
_DATE_FIELDS = {"start": "from", "end": "to"}  # field -> query-string key


@dataclass(frozen=True)
class Filters:
    """What the filter bar selects. Empty tuple = no restriction. Hashable (cache key)."""

    program: tuple[str, ...] = ()
    cluster: tuple[str, ...] = ()
    country: tuple[str, ...] = ()
    exchange: tuple[str, ...] = ()
    term: tuple[str, ...] = ()
    role: tuple[str, ...] = ()
    modality: tuple[str, ...] = ()
    setting: tuple[str, ...] = ()
    start: date | None = None
    end: date | None = None

    def to_query(self) -> str:
        """The canonical query string ('' when nothing is selected), e.g. '?country=FRA,KEN'."""
        pairs: list[tuple[str, str]] = []
        for name in _LIST_FIELDS:
            vals = getattr(self, name)
            if vals:
                pairs.append((name, ",".join(vals)))
        for name, key in _DATE_FIELDS.items():
            d = getattr(self, name)
            if d is not None:
                pairs.append((key, d.isoformat()))
        return "?" + urlencode(pairs, safe=",") if pairs else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for a dcc.Store."""
        out: dict[str, Any] = {n: list(getattr(self, n)) for n in _LIST_FIELDS}
        for name in _DATE_FIELDS:
            d = getattr(self, name)
            out[name] = d.isoformat() if d else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Filters:
        """Inverse of `to_dict`; tolerant of missing keys (an empty store means no filter).

        Raises ValueError, naming the field, for a shape no filter bar sends (a list or number
        instead of the dict, a list of numbers instead of texts): a forged request, refused
        rather than guessed at. Values are not checked against the data here; see
        `known_filters`."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"filters must be an object of field: [values], not "
                             f"{type(data).__name__}")
        kw: dict[str, Any] = {}
        for n in _LIST_FIELDS:
            v = data.get(n) or ()
            items = [v] if isinstance(v, str) else v
            if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
                raise ValueError(f"filter {n!r} must be a list of texts")
            kw[n] = tuple(sorted(set(items)))
        for n in _DATE_FIELDS:
            v = data.get(n)
            if v is not None and not isinstance(v, str | date):
                raise ValueError(f"filter {n!r} must be a date YYYY-MM-DD or empty")
            kw[n] = _parse_date(v)
        return cls(**kw)

    @property
    def is_empty(self) -> bool:
        return self == Filters()

    @property
    def restricts_exchanges(self) -> bool:
        return bool(self.program or self.exchange or self.term or self.modality or self.setting)

    @property
    def restricts_dates(self) -> bool:
        return self.start is not None or self.end is not None


@dataclass(frozen=True)
class FilterOptions:
    """The values each filter can take in the current warehouse: field -> ((value, label), …)."""

    options: Mapping[str, tuple[tuple[str, str], ...]]
    first_date: date | None = None
    last_date: date | None = None

    def values(self, name: str) -> set[str]:
        return {v for v, _ in self.options.get(name, ())}


def _parse_date(v: Any) -> date | None:
    if v in (None, ""):
        return None
    if isinstance(v, date):
        return v
    try:
        return date.fromisoformat(str(v)[:10])
    except ValueError:
        return None


# A forged link or request may name thousands of unknown values: the note names a few and
# counts the rest, so it stays a line on the page.
_NOTE_EXAMPLES = 3


def _unknown_note(name: str, bad: Sequence[str]) -> str:
    if len(bad) == 1:
        return f"{name}={bad[0]} is not in the data (ignored)"
    shown = ", ".join(bad[:_NOTE_EXAMPLES]) + (", …" if len(bad) > _NOTE_EXAMPLES else "")
    return f"{name}: {len(bad):,} values are not in the data (ignored: {shown})"


def known_filters(f: Filters, options: FilterOptions) -> tuple[Filters, list[str]]:
    """`f` with only the values the data has (`options`), and one note per filter that lost
    any ("country: 3 values are not in the data (ignored: …)").

    The one place callback and link input is checked against the data: an unknown value
    selects nothing anyway, and keeping it would make every forged request a new, ever larger
    query-cache key."""
    notes: list[str] = []
    kw: dict[str, Any] = {}
    for name in _LIST_FIELDS:
        vals = getattr(f, name)
        if not vals:
            continue
        allowed = options.values(name)
        bad = [v for v in vals if v not in allowed]
        if bad:
            notes.append(_unknown_note(name, bad))
            kw[name] = tuple(v for v in vals if v in allowed)
    return (replace(f, **kw) if kw else f), notes


def parse_filters(search: str | Mapping[str, Any] | None,
                  options: FilterOptions | None = None) -> tuple[Filters, list[str]]:
    """Parse a URL query string (or a dict of it) into `Filters`, dropping what is invalid.

    Returns the filters and the notes on what was ignored ("country=XYZ is not in the data"),
    so the page can say what it ignored instead of failing. Lists are comma-separated or
    repeated keys. With `options`, values are checked against the data (`known_filters`).
    """
    if search is None:
        raw: dict[str, list[str]] = {}
    elif isinstance(search, str):
        raw = parse_qs(search.lstrip("?"), keep_blank_values=False)
    else:
        raw = {k: (v if isinstance(v, list) else [v]) for k, v in search.items()}
    notes: list[str] = []
    kw: dict[str, Any] = {}
    known = set(_LIST_FIELDS) | set(_DATE_FIELDS.values())
    for key in raw:
        if key not in known:
            notes.append(f"'{key}' is not a filter (ignored)")
    for name in _LIST_FIELDS:
        kw[name] = tuple(sorted({p.strip() for v in raw.get(name, [])
                                 for p in str(v).split(",") if p.strip()}))
    for name, key in _DATE_FIELDS.items():
        v = raw.get(key, [None])[-1]
        d = _parse_date(v)
        if v not in (None, "") and d is None:
            notes.append(f"{key}={v} is not a date YYYY-MM-DD (ignored)")
        kw[name] = d
    f = Filters(**kw)
    if options is not None:
        f, dropped = known_filters(f, options)
        notes += dropped
    if f.start and f.end and f.start > f.end:
        notes.append(f"from={f.start} is after to={f.end}; date range ignored")
        f = replace(f, start=None, end=None)
    return f, notes


# ---------------------------------------------------------------------------------------------
# Cache and helpers
# ---------------------------------------------------------------------------------------------

def _sizeof(obj: Any) -> int:
    """Approximate bytes held by a cache key or value: DataFrames by pandas' deep memory
    usage, containers by their items, anything else by sys.getsizeof."""
    if isinstance(obj, pd.DataFrame | pd.Series):
        return int(obj.memory_usage(index=True, deep=True).sum()
                   if isinstance(obj, pd.DataFrame) else obj.memory_usage(index=True, deep=True))
    if isinstance(obj, Mapping):
        return sys.getsizeof(obj) + sum(_sizeof(k) + _sizeof(v) for k, v in obj.items())
    if isinstance(obj, list | tuple | set | frozenset):
        return sys.getsizeof(obj) + sum(_sizeof(x) for x in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sys.getsizeof(obj) + sum(_sizeof(getattr(obj, f.name))
                                        for f in dataclasses.fields(obj))
    return sys.getsizeof(obj)


class QueryCache:
    """Least-recently-used answers of the read queries, bounded by their size in bytes.

    Keys and values are both counted (`_sizeof`): an entry above `max_entry_bytes` is not kept
    at all, and the oldest entries go once the total passes `max_bytes`. A count bound would
    not do: a key is as large as the filter lists a request sends, and a value as large as the
    rows it returns. Thread-safe (threaded servers share it); one per process."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        if max_bytes < 0 or max_entry_bytes < 0:
            raise ValueError("cache bounds must be 0 or more bytes")
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """Bytes the cached keys and values hold, as counted on insertion."""
        return self._bytes

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._items)

    def get(self, key: tuple) -> tuple[bool, Any]:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return False, None
            self._items.move_to_end(key)
            return True, hit[0]

    def put(self, key: tuple, value: Any) -> bool:
        """Keep `value` under `key` unless it is too large; True when kept."""
        size = _sizeof(key) + _sizeof(value)
        if size > self.max_entry_bytes:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, freed) = self._items.popitem(last=False)
                self._bytes -= freed
        return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def _mb_env(name: str, default: float) -> int:
    try:
        return int(float(os.environ.get(name, default)) * 2**20)
    except ValueError:
        return int(default * 2**20)


# Per process: 64 MB of answers by default (the dashboard's figures read rollups of a few
# thousand rows; a page's answers are a few hundred kB), one entry at most 8 MB.
CACHE = QueryCache(_mb_env("EXCHANGE_IMPACT_QUERY_CACHE_MB", 64),
                   _mb_env("EXCHANGE_IMPACT_QUERY_CACHE_ENTRY_MB", 8))


def clear_cache() -> None:
    CACHE.clear()


def cache_keys() -> list[tuple]:
    """The keys the query cache holds now, oldest first (for tests and diagnostics)."""
    return CACHE.keys()


def _version_key(cur: duckdb.DuckDBPyConnection) -> str:
    """data_version plus the build's random id: two warehouse files never share a key, even when
    built in the same second with the same version (tests swap files; so can `--warehouse`)."""
    row = cur.execute(
        f"SELECT string_agg(value, '|' ORDER BY key) FROM {T_META} "
        "WHERE key IN ('data_version', 'built_at', 'build_id')"
    ).fetchone()
    return row[0] if row and row[0] else "0"


def _cached(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(cur: duckdb.DuckDBPyConnection, *args: Any, **kwargs: Any) -> Any:
        key = (fn.__name__, _version_key(cur), args, tuple(sorted(kwargs.items())))
        hit, value = CACHE.get(key)
        if hit:
            return value
        value = fn(cur, *args, **kwargs)
        CACHE.put(key, value)
        return value

    return wrapper


def _df(cur: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None
        ) -> pd.DataFrame:
    return cur.execute(sql, dict(params or {})).df()


def _table_exists(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = cur.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


_WEEK_SQL = week_sql("day")
_DAY_SQL = day_sql("ev.occurred_at")


def _term_sql(col: str) -> str:
    # A cohort/term is the half-year an exchange starts in: '2025-H1' (Jan–Jun), '2025-H2'.
    return f"(strftime({col}, '%Y') || CASE WHEN month({col}) <= 6 THEN '-H1' ELSE '-H2' END)"


_AGE_BAND_SQL = (
    "CASE WHEN birth_year IS NULL THEN 'not reported' "
    "WHEN year(current_date) - birth_year <= 12 THEN '12 or under' "
    "WHEN year(current_date) - birth_year <= 15 THEN '13–15' "
    "WHEN year(current_date) - birth_year <= 18 THEN '16–18' "
    "WHEN year(current_date) - birth_year <= 24 THEN '19–24' ELSE '25 or over' END"
)


def _in(f: Filters, p: dict[str, Any], name: str, col: str) -> str:
    """' AND list_contains($name, col)' when filter `name` has values (put into `p`), else ''."""
    vals = getattr(f, name)
    if not vals:
        return ""
    p[name] = list(vals)
    return f" AND list_contains(${name}, {col})"


def _dims(f: Filters) -> tuple[str, dict[str, Any]]:
    """CTEs fi (institutions) and fx (exchanges) in scope: the base of `_scope` and of the
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
               x.start_date, x.end_date, {_term_sql("x.start_date")} AS term
        FROM {T_EXCH} x
        WHERE TRUE{_in(f, p, "program", "x.program")}{_in(f, p, "exchange", "x.exchange_id")}
              {_in(f, p, "modality", "x.modality")}{_in(f, p, "setting", "x.setting")}
              {_in(f, p, "term", _term_sql("x.start_date"))}
    )"""
    role = _in(f, p, "role", "c.role")
    return sql, p | {"_role": role}


def _day_facts(cur: duckdb.DuckDBPyConnection) -> bool:
    """Whether this data version has the day facts (`res_person_days` …), built with the rollups."""
    return _rollup_state(cur)[0]


def _scope(cur: duckdb.DuckDBPyConnection, f: Filters, *, include_comparison: bool = False,
           scores: bool = False, hours: bool = False) -> tuple[str, dict[str, Any]]:
    """CTEs that every query starts from: fi (institutions), fx (exchanges), fp (participants,
    with their institution's attributes), fe (activity of fp in fx within the dates) and fr
    (answered waves of fx, undated; a pid and wave may repeat). People are `pid` throughout;
    fp also has participant_id.

    fe has one row per participant, exchange and UTC day with `events` and `minutes` (summed),
    read from the day facts when this data version has them, else from the event log (one row
    per event, `events` = 1).

    `scores=True` adds fs (scored rows: pid, exchange_id, instrument, scale, wave, score) and fg
    (paired post − pre gains: pid, exchange_id, instrument, scale, gain) of the exchanges in
    scope, for everyone; join them to fp to keep the people in scope. `hours=True` adds fh
    (pid, local ISO weekday, local hour, events) of the activity in scope, in each institution's
    time zone."""
    dims, p = _dims(f)
    del p["_role"]
    facts = _day_facts(cur)

    day_cond = ts_cond = ""
    if f.start is not None:
        p["start"] = f.start
        day_cond += " AND day >= $start"
        ts_cond += " AND {ts} >= timezone('UTC', $start::TIMESTAMP)"
    if f.end is not None:
        p["end"] = f.end
        day_cond += " AND day <= $end"
        ts_cond += " AND {ts} < timezone('UTC', ($end + INTERVAL 1 DAY)::TIMESTAMP)"
    if facts:
        fev = f"""SELECT pid, exchange_id, day, events, minutes
            FROM {T_PDAYS} JOIN fx USING (exchange_id) WHERE TRUE{day_cond}"""
        active = "SELECT pid FROM fev"
        answered = f"SELECT pid FROM {T_ADAYS} JOIN fx USING (exchange_id) WHERE TRUE{day_cond}"
        people = f"{T_PKEYS} p"
        fe_people = "ev.* FROM fev ev JOIN fp USING (pid)"
        # One row per answer day, not per wave: every reader of fr counts distinct people.
        fr = f"SELECT pid, exchange_id, wave FROM {T_ADAYS} JOIN fx USING (exchange_id)"
        fh = f"""SELECT h.pid, h.weekday, h.hour, h.events
            FROM {T_PHOURS} h JOIN fx USING (exchange_id) JOIN fp USING (pid)
            WHERE TRUE{day_cond}"""
    else:
        fev = f"""SELECT ev.participant_id, ev.exchange_id, {_DAY_SQL} AS day, 1 AS events,
                   coalesce(ev.minutes, 0) AS minutes, ev.occurred_at
            FROM {T_EVENTS} ev JOIN fx USING (exchange_id)
            WHERE TRUE{ts_cond.format(ts='ev.occurred_at')}"""
        active = "SELECT participant_id FROM fev"
        answered = (f"SELECT participant_id FROM {T_RESP} r JOIN fx USING (exchange_id) "
                    f"WHERE TRUE{ts_cond.format(ts='r.submitted_at')}")
        people = f"(SELECT participant_id AS pid, * FROM {T_PEOPLE}) p"
        fe_people = ("fp.pid, ev.* EXCLUDE (participant_id) FROM fev ev "
                     "JOIN fp ON fp.participant_id = ev.participant_id")
        fr = f"""SELECT DISTINCT r.participant_id AS pid, r.exchange_id, r.wave
            FROM {T_RESP} r JOIN fx USING (exchange_id)"""
        fh = """SELECT pid, isodow(t) AS weekday, hour(t) AS hour, 1 AS events
            FROM (SELECT pid, timezone(timezone, occurred_at) AS t FROM fe)"""

    restrict_people = ""
    if f.restricts_exchanges or f.restricts_dates:
        restrict_people = f" AND p.pid IN ({active} UNION {answered})"
    comparison = "" if include_comparison else " AND NOT coalesce(p.comparison, FALSE)"
    sql = f"""{dims},
    fev AS ({fev}),
    fp AS (
        SELECT p.pid, p.participant_id, p.institution_id, p.role,
               {GENDER_SQL} AS gender,
               {_AGE_BAND_SQL} AS age_band, coalesce(p.comparison, FALSE) AS comparison,
               fi.country, fi.cluster_id, fi.cluster_name, fi.timezone, fi.income_group,
               fi.connectivity, fi.institution_name
        FROM {people} JOIN fi USING (institution_id)
        WHERE TRUE{_in(f, p, "role", "p.role")}{comparison}{restrict_people}
    ),
    fe AS (
        SELECT fp.country, fp.cluster_id, fp.cluster_name, fp.timezone, fp.institution_id,
               fx.modality, fx.setting, fx.term, fx.exchange_name, {fe_people}
        JOIN fx USING (exchange_id)
    ),
    fr AS ({fr})"""
    if hours:
        sql += f""",
    fh AS ({fh})"""
    if scores and facts:
        sql += f""",
    fs AS (SELECT * FROM {T_PSCORES} JOIN fx USING (exchange_id)),
    fg AS (SELECT * FROM {T_PGAINS} JOIN fx USING (exchange_id))"""
    elif scores:
        sql += f""",
    fs AS (SELECT s.participant AS pid, s.exchange_id, s.instrument, s.scale, s.wave, s.score
           FROM {T_SCORES} s JOIN fx USING (exchange_id) WHERE s.score IS NOT NULL),
    fg AS (SELECT * FROM (
               SELECT pid, exchange_id, instrument, scale,
                      max(score) FILTER (WHERE wave = 'post')
                      - max(score) FILTER (WHERE wave = 'pre') AS gain
               FROM fs WHERE wave IN ('pre', 'post') AND pid IN (SELECT pid FROM fp)
               GROUP BY ALL)
           WHERE gain IS NOT NULL)"""
    return sql, p


def _suppress(df: pd.DataFrame, n_col: str, keep: Sequence[str] = ()) -> pd.DataFrame:
    """The project's one small-cell rule (`analytics.suppression.suppress`, k = MIN_CELL) on a
    read-layer table: every number of a row whose participant count `n_col` is under k is
    blanked, its own count included; `keep` names the numeric columns that only locate the row
    (a weekday, a week number). The pages want a flag, so `suppressed` is a bool here, and
    blanked columns are float64 with NaN (plotly and the tables read NaN as "no value")."""
    out = suppression.suppress(df, n=n_col, keep=keep)
    flagged = out["suppressed"] != ""
    out["suppressed"] = flagged.to_numpy(bool)
    if flagged.any():
        for c in out.columns:
            if c in keep or c == "suppressed":
                continue
            if isinstance(out[c].dtype, pd.Int64Dtype | pd.BooleanDtype | pd.Float64Dtype):
                out[c] = out[c].astype("float64")
    return out


def _suppress_subset(df: pd.DataFrame, count: str, derived: Sequence[str] = (),
                     flag: str = "subset_suppressed") -> pd.DataFrame:
    """The same small-cell rule on a count of a SUBSET of a shown row's people (a week's active
    participants, a group's drop-outs or active participants): where `count` is under MIN_CELL
    (decided by `_suppress`, the one rule), `count` and the `derived` numbers computed from
    those people (their share, minutes, events) are blanked (NaN) and `flag` is True. The row's
    own `suppressed` flag and its group count stay, so a group is never shown as suppressed
    because one of its subsets was. A count of 0 stays 0: no person is in it, so it identifies
    no one (and a week without activity is a real zero, not a gap). Rows already suppressed
    whole are left as they are (flag False)."""
    out = df.copy()
    cols = [count, *derived]
    counts = pd.to_numeric(out[count], errors="coerce")
    rows = (~out["suppressed"].to_numpy(bool)) & (counts.fillna(0) != 0).to_numpy(bool)
    part = _suppress(out.loc[rows, cols], count)
    hit = pd.Series(False, index=out.index)
    hit.loc[part.index] = part["suppressed"].to_numpy(bool)
    if hit.any():
        for c in cols:
            out[c] = out[c].astype("float64")
            out.loc[part.index, c] = part[c].astype("float64")
    out[flag] = hit.to_numpy(bool)
    return out


# ---------------------------------------------------------------------------------------------
# Facts about the warehouse and the filter choices
# ---------------------------------------------------------------------------------------------

@_cached
def data_info(cur: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """meta as a dict: data_version, built_at …"""
    rows = cur.execute(f"SELECT key, value FROM {T_META}").fetchall()
    return {k: v for k, v in rows}


@_cached
def filter_options(cur: duckdb.DuckDBPyConnection) -> FilterOptions:
    """Every value each filter can take, with a readable label (names are user data: text)."""
    opts: dict[str, tuple[tuple[str, str], ...]] = {}

    def pairs(sql: str) -> tuple[tuple[str, str], ...]:
        return tuple((str(v), str(lbl)) for v, lbl in cur.execute(sql).fetchall() if v is not None)

    opts["program"] = pairs(f"SELECT DISTINCT program, program FROM {T_EXCH} ORDER BY 1")
    opts["cluster"] = pairs(
        f"SELECT cluster_id, coalesce(name, cluster_id) FROM {T_CLUSTERS} ORDER BY 2")
    opts["country"] = pairs(f"SELECT DISTINCT country, country FROM {T_INST} ORDER BY 1")
    opts["exchange"] = pairs(
        f"SELECT exchange_id, coalesce(name, exchange_id) FROM {T_EXCH} ORDER BY 2")
    opts["term"] = pairs(
        f"SELECT DISTINCT {_term_sql('start_date')} AS t, t FROM {T_EXCH} "
        "WHERE start_date IS NOT NULL ORDER BY 1")
    opts["role"] = pairs(f"SELECT DISTINCT role, role FROM {T_PEOPLE} ORDER BY 1")
    opts["modality"] = pairs(f"SELECT DISTINCT modality, modality FROM {T_EXCH} ORDER BY 1")
    opts["setting"] = pairs(f"SELECT DISTINCT setting, setting FROM {T_EXCH} ORDER BY 1")
    first, last = cur.execute(
        f"SELECT min(occurred_at)::DATE, max(occurred_at)::DATE FROM {T_EVENTS}").fetchone()
    return FilterOptions(opts, first, last)


# ---------------------------------------------------------------------------------------------
# Overview
# ---------------------------------------------------------------------------------------------

def _partnerships_active(cur: duckdb.DuckDBPyConnection, ctes: str, p: dict[str, Any]) -> int:
    """Partnerships active today of an exchange in scope (CTE fx) with at least one side among
    the institutions in scope (CTE fi)."""
    part = _rdf(cur, f"""WITH {ctes}
        SELECT count(*) AS n FROM {T_PARTNER} pt JOIN fx USING (exchange_id)
        WHERE (pt.institution_a IN (SELECT institution_id FROM fi)
               OR pt.institution_b IN (SELECT institution_id FROM fi))
          AND pt.started_on <= current_date
          AND (pt.ended_on IS NULL OR pt.ended_on >= current_date)
    """, p)
    return int(part.n.iloc[0])


def _headline_base(cur: duckdb.DuckDBPyConnection, f: Filters) -> dict[str, Any]:
    """Headline counts for the filters. 'Active this month' is the calendar month of the latest
    event in scope (named in `active_month`), so an archive of a past program is not all zeros."""
    scope, p = _scope(cur, f)
    row = _df(cur, f"""WITH {scope},
        lastmonth AS (SELECT CAST(date_trunc('month', max(day)) AS DATE) AS m FROM fe)
        SELECT
          (SELECT count(*) FROM fp) AS participants,
          (SELECT count(DISTINCT pid) FROM fe, lastmonth
             WHERE day >= lastmonth.m AND day < lastmonth.m + INTERVAL 1 MONTH) AS active_month,
          (SELECT strftime(m, '%B %Y') FROM lastmonth) AS active_month_label,
          (SELECT count(DISTINCT institution_id) FROM fp) AS institutions,
          (SELECT count(DISTINCT country) FROM fp) AS countries,
          (SELECT count(DISTINCT cluster_id) FROM fp) AS clusters,
          (SELECT count(DISTINCT exchange_id) FROM fe) AS exchanges,
          (SELECT coalesce(sum(events), 0) FROM fe) AS events
    """, p).iloc[0].to_dict()
    row["partnerships_active"] = _partnerships_active(cur, scope, p)
    return _headline_finish(row)


def _breakdown_finish(df: pd.DataFrame) -> pd.DataFrame:
    """Groups under MIN_CELL participants suppressed whole; fewer than MIN_CELL active in a shown
    group blanks the active count and everything summed over those people (events, minutes,
    exchanges with activity, minutes per active participant)."""
    return _suppress_subset(_suppress(df, "participants"), "active",
                            ["events", "minutes", "exchanges", "minutes_per_active"])


def _headline_finish(row: dict[str, Any]) -> dict[str, Any]:
    """The small-cell rule on the headline: under MIN_CELL participants, no figure at all."""
    one = _suppress(pd.DataFrame([row]), "participants")
    # "Active this month" counts a subset of the selection: fewer than MIN_CELL is blanked too.
    one = _suppress_subset(one, "active_month", flag="active_month_suppressed")
    out = one.iloc[0].to_dict()
    out["suppressed"] = bool(out["suppressed"])
    out["active_month_suppressed"] = bool(out["active_month_suppressed"])
    if out["suppressed"]:
        out["active_month_label"] = None  # when the last of them was active is theirs too
    return out


def _completion_finish(df: pd.DataFrame) -> pd.DataFrame:
    """Rate, wave order, and the small-cell rule: responded <= invited, so a row is about its
    `responded` people."""
    df["rate"] = df.responded / df.invited.where(df.invited > 0)
    df = df.assign(_o=_wave_rank(df.wave)).sort_values(["_o", "wave"]).drop(columns="_o")
    return _suppress(df.reset_index(drop=True), "responded")


def _wave_rank(wave: pd.Series) -> pd.Series:
    """Sort key per row in time order of the waves (`analytics.stats.longitudinal.wave_key`)."""
    return wave.map(wave_key)


def _completion_by_wave_base(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Survey completion per wave: participants (incl. the comparison group, who take the surveys)
    with any answer in the wave, over participants in scope."""
    scope, p = _scope(cur, f, include_comparison=True)
    df = _df(cur, f"""WITH {scope}
        SELECT fr.wave, count(DISTINCT fr.pid) AS responded,
               (SELECT count(*) FROM fp) AS invited
        FROM fr JOIN fp USING (pid)
        GROUP BY fr.wave
    """, p)
    return _completion_finish(df)


def _participants_by_country_base(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Participants (excl. comparison group) per country (alpha-3); small countries suppressed."""
    scope, p = _scope(cur, f)
    df = _df(cur, f"""WITH {scope}
        SELECT country, count(*) AS participants, count(DISTINCT institution_id) AS institutions
        FROM fp GROUP BY country ORDER BY participants DESC
    """, p)
    df["n"] = df.participants
    return _suppress(df, "n")


def _activity_over_time_base(cur: duckdb.DuckDBPyConnection, f: Filters, by: str | None = None
                       ) -> pd.DataFrame:
    """Weekly active participants and minutes, overall or per cluster/country/modality/setting.
    Groups with fewer than MIN_CELL participants over the period are suppressed whole."""
    scope, p = _scope(cur, f)
    group = _group_col(by)
    # One scan for the weekly series and each group's size (week NULL) over the period.
    both = _df(cur, f"""WITH {scope}
        SELECT {_WEEK_SQL} AS week, {group} AS grp, GROUPING({_WEEK_SQL}) = 1 AS total,
               count(DISTINCT pid) AS active, sum(minutes) AS minutes, sum(events) AS events
        FROM fe GROUP BY GROUPING SETS (({_WEEK_SQL}, {group}), ({group})) ORDER BY week
    """, p)
    sizes = both[both.total][["grp", "active"]].rename(columns={"active": "n"})
    df = both[~both.total].drop(columns="total").reset_index(drop=True)
    return _complete_weeks(df, sizes.reset_index(drop=True))


def _group_col(by: str | None) -> str:
    cols = {None: "'all'", "cluster": "coalesce(cluster_name, cluster_id)", "country": "country",
            "modality": "modality", "setting": "setting", "exchange": "exchange_name",
            "term": "term"}
    if by not in cols:
        raise ValueError(f"cannot group by {by!r}; choose one of {sorted(k for k in cols if k)}")
    return cols[by]


# ---------------------------------------------------------------------------------------------
# Participation
# ---------------------------------------------------------------------------------------------

def _activity_heatmap_base(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Events by local weekday × hour, each event in its institution's IANA time zone (ISO
    weekday 1 = Monday): from res_person_hours when the data version has the day facts, else
    by DuckDB's `timezone(zone, timestamptz)` per event."""
    scope, p = _scope(cur, f, hours=True)
    df = _df(cur, f"""WITH {scope}
        SELECT weekday, hour, sum(events) AS events, count(DISTINCT pid) AS n
        FROM fh GROUP BY ALL ORDER BY weekday, hour
    """, p)
    return _suppress(df, "n", keep=["weekday", "hour"])


def _retention_by_cohort_base(cur: duckdb.DuckDBPyConnection, f: Filters, max_weeks: int = 16
                        ) -> pd.DataFrame:
    """Share of each cohort (term of the exchange) active in week k after their first activity in
    that exchange: k = whole days since the first active day (UTC) // 7, so week 0 is that day
    and the six after it. Cohorts under MIN_CELL participants are suppressed."""
    scope, p = _scope(cur, f)
    p["maxw"] = max_weeks
    df = _df(cur, f"""WITH {scope},
        firsts AS (SELECT pid, exchange_id, term, min(day) AS d0 FROM fe GROUP BY ALL),
        wk AS (SELECT DISTINCT fe.pid, fe.exchange_id, firsts.term,
                      CAST((fe.day - firsts.d0) // 7 AS INTEGER) AS week
               FROM fe JOIN firsts USING (pid, exchange_id)),
        sizes AS (SELECT term, count(*) AS n FROM firsts GROUP BY term)
        SELECT wk.term AS cohort, wk.week, count(*) AS active, sizes.n
        FROM wk JOIN sizes USING (term) WHERE wk.week <= $maxw
        GROUP BY ALL ORDER BY cohort, week
    """, p)
    df["share"] = df.active / df.n
    return _retention_finish(df)


def _retention_finish(df: pd.DataFrame) -> pd.DataFrame:
    """Cohorts under MIN_CELL suppressed whole; in a shown cohort, a week with fewer than
    MIN_CELL active pairs shows no count and no share (flag `week_suppressed`)."""
    return _suppress_subset(_suppress(df, "n", keep=["week"]), "active", ["share"],
                            flag="week_suppressed")


def _breakdown_base(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Per cluster/country/exchange: participants, active participants, events, minutes.
    `key` is the filter value of the group (cluster_id, country, exchange_id)."""
    scope, p = _scope(cur, f)
    keys = {"cluster": ("cluster_id", "coalesce(cluster_name, cluster_id)"),
            "country": ("country", "country"), "exchange": ("exchange_id", "exchange_name")}
    if by not in keys:
        raise ValueError(f"cannot break down by {by!r}; choose one of {sorted(keys)}")
    key, label = keys[by]
    if by == "exchange":
        df = _df(cur, f"""WITH {scope}
            SELECT {key} AS key, {label} AS "group", count(DISTINCT pid) AS participants,
                   count(DISTINCT pid) AS active, sum(events) AS events,
                   sum(minutes) AS minutes, 1 AS exchanges
            FROM fe GROUP BY ALL ORDER BY participants DESC
        """, p)
    else:
        df = _df(cur, f"""WITH {scope},
            ppl AS (SELECT {key} AS key, {label} AS grp, count(*) AS participants
                    FROM fp GROUP BY ALL),
            act AS (SELECT {key} AS key, count(DISTINCT pid) AS active,
                           sum(events) AS events, sum(minutes) AS minutes,
                           count(DISTINCT exchange_id) AS exchanges FROM fe GROUP BY ALL)
            SELECT key, grp AS "group", participants, coalesce(active, 0) AS active,
                   coalesce(events, 0) AS events, coalesce(minutes, 0) AS minutes,
                   coalesce(exchanges, 0) AS exchanges
            FROM ppl LEFT JOIN act USING (key) ORDER BY participants DESC
        """, p)
    df["minutes_per_active"] = df.minutes / df.active.where(df.active > 0)
    return _breakdown_finish(df)


# ---------------------------------------------------------------------------------------------
# Outcomes: result tables written per data version by the statistics engineer
# ---------------------------------------------------------------------------------------------

def _result(cur: duckdb.DuckDBPyConnection, table: schema.Table, where: str = "",
            params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    if not _table_exists(cur, table.name):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in table.column_names})
    return _df(cur, f"SELECT * FROM {table.name} {where}", params)


@_cached
def result_table_status(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Rows per researcher result table (0 = not computed yet for this data version)."""
    rows = []
    for t in schema.RESULT_TABLES.values():
        n = (cur.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]
             if _table_exists(cur, t.name) else 0)
        rows.append({"table": t.name, "rows": int(n), "description": t.doc})
    return pd.DataFrame(rows)


@_cached
def prepost_results(cur: duckdb.DuckDBPyConnection, group_by: str = "overall") -> pd.DataFrame:
    """res_prepost rows for one grouping (overall, cluster, country, modality, setting …)."""
    df = _result(cur, schema.RES_PREPOST, "WHERE group_by = $g ORDER BY instrument, scale, \"group\"",
                 {"g": group_by})
    if len(df):
        # A row stored as suppressed (at the k of its computation) counts as n missing, so the
        # small-cell rule blanks it whatever k is now.
        stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
        df = _suppress(df.drop(columns="suppressed").assign(_n=df.n.mask(stored)), "_n")
        df = df.drop(columns="_n")
    return df


def _single_group(f: Filters) -> tuple[str, str] | None:
    """If the filters pick exactly one cluster/country/modality/setting, the precomputed group
    that matches them."""
    picks = [(g, getattr(f, g)) for g in ("cluster", "country", "modality", "setting")]
    chosen = [(g, v[0]) for g, v in picks if len(v) == 1]
    others = [g for g, v in picks if len(v) > 1]
    if len(chosen) == 1 and not others:
        return chosen[0]
    return None


@_cached
def prepost_extremes(cur: duckdb.DuckDBPyConnection, f: Filters, k: int = 3
                     ) -> tuple[pd.DataFrame, str]:
    """The k strongest and k weakest pre→post changes (Hedges' g) and what they are computed on.

    Results are precomputed per data version for fixed groupings, so the filters are honoured only
    when they select one precomputed group; otherwise the overall results are shown and the
    returned scope says so.
    """
    single = _single_group(f)
    scope = "all participants (the statistics are precomputed; other filters do not apply)"
    df = pd.DataFrame()
    if single is not None:
        df = prepost_results(cur, single[0])
        df = df[df["group"].astype("string") == single[1]]
        scope = f"{single[0]} = {single[1]}"
    if not len(df):
        df = prepost_results(cur, "overall")
        if single is not None and len(df):
            scope = f"all participants (no precomputed results for {single[0]} = {single[1]})"
    if not len(df):
        return df, scope
    df = df[~df.suppressed].dropna(subset=["hedges_g"]).sort_values("hedges_g", ascending=False)
    if len(df) > 2 * k:
        df = pd.concat([df.head(k), df.tail(k)])
    return df, scope


@_cached
def reliability(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return _result(cur, schema.RES_RELIABILITY, "ORDER BY instrument, scale, wave")


@_cached
def longitudinal(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return _result(cur, schema.RES_LONGITUDINAL, "ORDER BY instrument, scale")


def _wave_means_base(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Mean scale score per wave for the filtered participants, with a t-based 95% CI
    (mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n, as R's `t.test`). Uses res_scale_scores; comparison group apart."""
    if not _table_exists(cur, T_SCORES):
        return pd.DataFrame(columns=["instrument", "scale", "wave", "comparison", "n", "mean",
                                     "sd", "ci_low", "ci_high", "suppressed"])
    scope, p = _scope(cur, f, include_comparison=True, scores=True)
    df = _df(cur, f"""WITH {scope}
        SELECT fs.instrument, fs.scale, fs.wave, fp.comparison, count(*) AS n,
               avg(fs.score) AS mean, stddev_samp(fs.score) AS sd
        FROM fs JOIN fp USING (pid) GROUP BY ALL
    """, p)
    df = t_interval(df)
    df = df.assign(_o=_wave_rank(df.wave)).sort_values(["instrument", "scale", "comparison", "_o"])
    return _suppress(df.drop(columns="_o"), "n", keep=["comparison"])


def _gain_moments(cur: duckdb.DuckDBPyConnection, f: Filters, by: Sequence[str] = (),
                  where: str = "") -> pd.DataFrame:
    """Paired post − pre gains per participant, exchange and scale (both waves scored), reduced to
    n, mean and sample SD per instrument × scale × `by` (columns of fp, e.g. comparison, gender).
    The gains are `res_person_gains` when this data version has the day facts, else one pass over
    the scores pivots the two waves (a self-join was 3× slower). At 1M participants with a date
    range: 1.7 s from the scores, 0.1 s from the gains."""
    scope, p = _scope(cur, f, include_comparison=True, scores=True)
    keys = ", ".join(["fg.instrument", "fg.scale", *(f"fp.{c}" for c in by)])
    return _df(cur, f"""WITH {scope}
        SELECT {keys}, count(*) AS n, avg(fg.gain) AS mean, stddev_samp(fg.gain) AS sd
        FROM fg JOIN fp USING (pid)
        WHERE TRUE{where}
        GROUP BY ALL ORDER BY ALL
    """, p)


_COMPARISON_COLUMNS = ["instrument", "scale", "n_exchange", "n_comparison", "gain_exchange",
                       "gain_comparison", "diff", "ci_low", "ci_high", "suppressed"]


def _comparison_from_moments(g: pd.DataFrame) -> pd.DataFrame:
    """Participants' minus comparison group's gain per scale from per-arm moments (instrument,
    scale, comparison, n, mean, sd), Welch CI; either arm under MIN_CELL suppresses the row
    (both counts included)."""
    rows = []
    for (inst, scale), d in g.groupby(["instrument", "scale"], sort=True):
        a, b = d[~d.comparison.astype(bool)], d[d.comparison.astype(bool)]
        if not len(b):
            continue
        na, nb = (int(a.n.iloc[0]) if len(a) else 0), int(b.n.iloc[0])
        ma = float(a["mean"].iloc[0]) if len(a) else math.nan
        diff = lo = hi = math.nan
        if na > 1 and nb > 1:
            diff, lo, hi = welch_difference(na, ma, float(a.sd.iloc[0]) ** 2,
                                  nb, float(b["mean"].iloc[0]), float(b.sd.iloc[0]) ** 2)
        rows.append([inst, scale, na, nb, ma, float(b["mean"].iloc[0]), diff, lo, hi,
                     min(na, nb)])
    df = pd.DataFrame(rows, columns=[*_COMPARISON_COLUMNS[:-1], "_n"])
    return _suppress(df, "_n")[_COMPARISON_COLUMNS]


def _comparison_difference_base(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Mean post−pre gain of participants minus that of the comparison group, per scale, with a
    Welch 95% CI (as R's `t.test(var.equal = FALSE)`). Empty when there is no comparison group."""
    if not _table_exists(cur, T_SCORES):
        return pd.DataFrame(columns=_COMPARISON_COLUMNS)
    return _comparison_from_moments(_gain_moments(cur, f, ["comparison"]))


# ---------------------------------------------------------------------------------------------
# Equity and access
# ---------------------------------------------------------------------------------------------

def _equity_col(by: str) -> str:
    if by not in EQUITY_GROUPINGS:
        raise ValueError(f"cannot group by {by!r}; choose one of {sorted(EQUITY_GROUPINGS)}")
    return by


def _gains_by_group_base(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Mean post−pre gain per scale and group (exchange participants only), t 95% CI."""
    col = _equity_col(by)
    cols = ["instrument", "scale", "group", "n", "mean", "sd", "ci_low", "ci_high", "suppressed"]
    if not _table_exists(cur, T_SCORES):
        return pd.DataFrame(columns=cols)
    df = _gain_moments(cur, f, [col], where=" AND NOT fp.comparison").rename(
        columns={col: "group"})
    if not len(df):
        return pd.DataFrame(columns=cols)
    df = t_interval(df)
    return _suppress(df, "n")[cols]


def _participation_by_group_base(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Participants, share ever active and mean minutes per participant, per group."""
    col = _equity_col(by)
    scope, p = _scope(cur, f)
    df = _df(cur, f"""WITH {scope},
        act AS (SELECT pid, sum(minutes) AS minutes FROM fe GROUP BY ALL)
        SELECT fp.{col} AS "group", count(*) AS n, count(act.pid) AS active,
               coalesce(sum(act.minutes), 0) / count(*) AS minutes_per_participant
        FROM fp LEFT JOIN act USING (pid) GROUP BY ALL ORDER BY "group"
    """, p)
    df["active_share"] = df.active / df.n
    return _participation_finish(df)


def _participation_finish(df: pd.DataFrame) -> pd.DataFrame:
    """Groups under MIN_CELL suppressed whole; fewer than MIN_CELL active people in a shown group
    blanks their count, their share and the minutes per participant (all minutes are theirs)."""
    return _suppress_subset(_suppress(df, "n"), "active",
                            ["active_share", "minutes_per_participant"])


def _dropout_finish(df: pd.DataFrame) -> pd.DataFrame:
    """Groups under MIN_CELL suppressed whole; fewer than MIN_CELL drop-outs in a shown group
    blanks their count and the drop-out rate."""
    return _suppress_subset(_suppress(df, "n"), "dropped", ["dropout_rate"])


def _attrition_funnel_base(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Exchange participants in scope → active → answered pre → post → follow-up (each stage
    counts participants who reached it; later waves need not include earlier ones)."""
    scope, p = _scope(cur, f)
    df = _df(cur, f"""WITH {scope},
        resp AS (SELECT DISTINCT fr.pid, fr.wave FROM fr JOIN fp USING (pid))
        SELECT 'enrolled' AS stage, count(*) AS n FROM fp
        UNION ALL SELECT 'active in the log', count(DISTINCT pid) FROM fe
        UNION ALL SELECT 'answered ' || wave, count(*) FROM resp GROUP BY wave
    """, p)
    return _funnel_finish(df)


def _dropout_by_group_base(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Of those who answered the pre survey, the share who did not answer the post survey."""
    col = _equity_col(by)
    scope, p = _scope(cur, f)
    df = _df(cur, f"""WITH {scope},
        w AS (SELECT pid, bool_or(wave = 'pre') AS pre, bool_or(wave = 'post') AS post
              FROM fr GROUP BY ALL)
        SELECT fp.{col} AS "group", count(*) AS n, count(*) FILTER (WHERE NOT w.post) AS dropped
        FROM fp JOIN w USING (pid) WHERE w.pre GROUP BY ALL ORDER BY "group"
    """, p)
    df["dropout_rate"] = df.dropped / df.n
    return _dropout_finish(df)


# ---------------------------------------------------------------------------------------------
# Partnerships
# ---------------------------------------------------------------------------------------------

@_cached
def partnership_network(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """One row per partnership touching an institution in scope: both ends with names and
    countries, cross-border flag, active flag, duration so far in days."""
    dims, p = _dims(f)
    return _rdf(cur, f"""WITH {dims}
        SELECT pt.partnership_id, pt.exchange_id, fx.exchange_name,
               pt.institution_a, ia.name AS name_a, ia.country AS country_a,
               pt.institution_b, ib.name AS name_b, ib.country AS country_b,
               ia.country <> ib.country AS cross_border,
               pt.started_on, pt.ended_on,
               pt.ended_on IS NULL OR pt.ended_on >= current_date AS active,
               date_diff('day', pt.started_on, coalesce(least(pt.ended_on, current_date),
                                                        current_date)) AS days
        FROM {T_PARTNER} pt JOIN fx USING (exchange_id)
        JOIN {T_INST} ia ON ia.institution_id = pt.institution_a
        JOIN {T_INST} ib ON ib.institution_id = pt.institution_b
        WHERE pt.institution_a IN (SELECT institution_id FROM fi)
           OR pt.institution_b IN (SELECT institution_id FROM fi)
        ORDER BY pt.partnership_id
    """, p)


@_cached
def partnership_persistence(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Kaplan–Meier persistence of partnerships, domestic vs cross-border; still-active ones are
    censored today."""
    net = partnership_network(cur, f)
    out = []
    for cross, d in net.groupby("cross_border"):
        label = "cross-border" if cross else "domestic"
        km = kaplan_meier(d.days.to_numpy(float), (~d.active).to_numpy(bool))
        km["group"] = label
        km["n"] = len(d)
        out.append(km)
    if not out:
        return pd.DataFrame(columns=["days", "survival", "at_risk", "ended", "ci_low", "ci_high",
                                     "group", "n", "suppressed"])
    return _suppress(pd.concat(out, ignore_index=True), "n", keep=["days"])


@_cached
def partnership_summary(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Per kind (domestic, cross-border): partnerships in scope, still active, median days so
    far and the Kaplan–Meier median duration; kinds with fewer than MIN_CELL partnerships are
    suppressed like any small group."""
    cols = ["kind", "n", "active", "median_days", "median_km", "suppressed"]
    net = partnership_network(cur, f)
    if not len(net):
        return pd.DataFrame(columns=cols)
    km = partnership_persistence(cur, f)
    summary = (
        net.assign(kind=net.cross_border.map({True: "cross-border", False: "domestic"}))
        .groupby("kind", as_index=False)
        .agg(n=("partnership_id", "size"), active=("active", "sum"),
             median_days=("days", "median"))
    )
    summary["median_km"] = [km_median(km[km.group == k]) for k in summary.kind]
    return _suppress(summary, "n")[cols]


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

@_cached
def load_batches(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return _df(cur, f"""SELECT batch_id, coalesce(source, source_name) AS source, kind, status, rows_in,
               rows_accepted, rows_rejected, rows_added, rows_changed, rows_removed, finished_at,
               data_version, message
        FROM {T_BATCHES} ORDER BY batch_id DESC""")


@_cached
def rejects(cur: duckdb.DuckDBPyConnection, limit: int = 500) -> pd.DataFrame:
    return _df(cur, f"""SELECT batch_id, file, row_number, column_name, rule, value, message
        FROM {T_REJECTS} ORDER BY batch_id DESC, row_number LIMIT $limit""", {"limit": limit})






# ---------------------------------------------------------------------------------------------
# The same figures from the per-data-version rollups (analytics.derive.rollups). The public functions
# read the rollups when they answer the filters exactly and the base tables otherwise; the
# `_…_base` functions above stay the definition that tests compare the rollups against.
# ---------------------------------------------------------------------------------------------

_R_WEEKLY = schema.RES_ACTIVITY_WEEKLY.name
_R_MONTHLY = schema.RES_ACTIVITY_MONTHLY.name
_R_HOURLY = schema.RES_ACTIVITY_HOURLY.name
_R_RETENTION = schema.RES_RETENTION.name
_R_PEOPLE = schema.RES_PEOPLE.name
_R_WAVES = schema.RES_RESPONSE_WAVES.name
_R_SCORES = schema.RES_SCORE_CUBE.name
_R_GAINS = schema.RES_GAIN_CUBE.name

_ROLLUP_STATE: dict[str, tuple[bool, bool]] = {}  # one small entry per data version
_ROLLUP_LOCK = threading.Lock()


def _rollup_state(cur: duckdb.DuckDBPyConnection) -> tuple[bool, bool]:
    """(rollups present for this data version, their distinct participant counts are exact)."""
    key = _version_key(cur)
    state = _ROLLUP_STATE.get(key)
    if state is None:
        meta = dict(cur.execute(
            f"SELECT key, value FROM {T_META} WHERE key IN ('data_version', ?, ?)",
            [META_VERSION, META_MULTI]).fetchall())
        present = {r[0] for r in cur.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        ok = (all(t in present for t in schema.ROLLUP_TABLES)
              and meta.get(META_VERSION) == meta.get("data_version"))
        state = (ok, ok and meta.get(META_MULTI) == "0")
        with _ROLLUP_LOCK:
            _ROLLUP_STATE[key] = state
    return state


def _use_rollups(cur: duckdb.DuckDBPyConnection, f: Filters, *, distinct: bool = True) -> bool:
    """Whether the rollups answer these filters exactly: they exist for this data version, no
    date range is set (they are weekly and undated), and — for counts of distinct participants —
    no participant spans two exchanges (then summing over cells would count them twice)."""
    if f.restricts_dates:
        return False
    present, exact = _rollup_state(cur)
    return exact if distinct else present


def _cells(table: str, f: Filters, p: dict[str, Any], *, comparison: bool = False,
           people: bool = False, extra: str = "") -> str:
    """The rollup's rows in scope joined to their institution (and exchange) attributes. People
    with no exchange yet (exchange_id NULL) count unless the filters restrict exchanges."""
    join_x = ("JOIN fx USING (exchange_id)" if not people or f.restricts_exchanges
              else "LEFT JOIN fx USING (exchange_id)")
    comp = "" if comparison else " AND NOT c.comparison"
    return (f"SELECT c.*, fi.country, fi.cluster_id, fi.cluster_name, fi.income_group, "
            f"fi.connectivity, fx.exchange_name, fx.modality, fx.setting, fx.term{extra} "
            f"FROM {table} c JOIN fi USING (institution_id) {join_x} "
            f"WHERE TRUE{p['_role']}{comp}")


def _rdf(cur: duckdb.DuckDBPyConnection, sql: str, p: dict[str, Any]) -> pd.DataFrame:
    """`_df` with only the parameters the statement names (DuckDB rejects unused ones)."""
    return _df(cur, sql, {k: v for k, v in p.items()
                          if not k.startswith("_") and re.search(rf"\${k}\b", sql)})


def _headline_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> dict[str, Any]:
    dims, p = _dims(f)
    row = _rdf(cur, f"""WITH {dims},
        ppl AS ({_cells(_R_PEOPLE, f, p, people=True)}),
        wk AS ({_cells(_R_WEEKLY, f, p)}),
        mo AS ({_cells(_R_MONTHLY, f, p)}),
        lastmonth AS (SELECT max(month) AS m FROM mo)
        SELECT
          CAST(coalesce((SELECT sum(n) FROM ppl), 0) AS BIGINT) AS participants,
          CAST(coalesce((SELECT sum(active) FROM mo, lastmonth WHERE mo.month = lastmonth.m), 0)
               AS BIGINT) AS active_month,
          (SELECT strftime(m, '%B %Y') FROM lastmonth) AS active_month_label,
          (SELECT count(DISTINCT institution_id) FROM ppl) AS institutions,
          (SELECT count(DISTINCT country) FROM ppl) AS countries,
          (SELECT count(DISTINCT cluster_id) FROM ppl) AS clusters,
          (SELECT count(DISTINCT exchange_id) FROM wk) AS exchanges,
          CAST(coalesce((SELECT sum(events) FROM wk), 0) AS BIGINT) AS events
    """, p).iloc[0].to_dict()
    row["partnerships_active"] = _partnerships_active(cur, dims, p)
    return _headline_finish(row)


@_cached
def headline(cur: duckdb.DuckDBPyConnection, f: Filters) -> dict[str, Any]:
    """Headline counts for the filters: participants, active this month (the calendar month of
    the latest event in scope, named in `active_month_label`), institutions, countries, clusters,
    exchanges, events and active partnerships.

    A selection with fewer than MIN_CELL participants shows none of them: every figure is
    blanked by the small-cell rule and `suppressed` is True (pages then say
    `SMALL_SELECTION`)."""
    if _use_rollups(cur, f):
        return _headline_rollup(cur, f)
    return _headline_base(cur, f)


def _completion_by_wave_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    dims, p = _dims(f)
    df = _rdf(cur, f"""WITH {dims},
        invited AS (SELECT CAST(coalesce(sum(n), 0) AS BIGINT) AS n
                    FROM ({_cells(_R_PEOPLE, f, p, comparison=True, people=True)}))
        SELECT wave, CAST(sum(responded) AS BIGINT) AS responded,
               (SELECT n FROM invited) AS invited
        FROM ({_cells(_R_WAVES, f, p, comparison=True)}) GROUP BY wave
    """, p)
    return _completion_finish(df)


@_cached
def completion_by_wave(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Survey completion per wave: participants (incl. the comparison group, who take the surveys)
    with any answer in the wave, over participants in scope. A wave answered by fewer than
    MIN_CELL people (so also every wave of a selection under MIN_CELL) is suppressed."""
    if _use_rollups(cur, f):
        return _completion_by_wave_rollup(cur, f)
    return _completion_by_wave_base(cur, f)


def _participants_by_country_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    dims, p = _dims(f)
    df = _rdf(cur, f"""WITH {dims}
        SELECT country, CAST(sum(n) AS BIGINT) AS participants,
               count(DISTINCT institution_id) AS institutions
        FROM ({_cells(_R_PEOPLE, f, p, people=True)}) GROUP BY country
        ORDER BY participants DESC
    """, p)
    df["n"] = df.participants
    return _suppress(df, "n")


@_cached
def participants_by_country(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Participants (excl. comparison group) per country (alpha-3); small countries suppressed."""
    if _use_rollups(cur, f):
        return _participants_by_country_rollup(cur, f)
    return _participants_by_country_base(cur, f)


def _complete_weeks(df: pd.DataFrame, sizes: pd.DataFrame) -> pd.DataFrame:
    if len(df):
        # Weeks without any event are real zeros: complete the grid so lines drop to 0 instead
        # of bridging a gap between terms.
        weeks = pd.date_range(df.week.min(), df.week.max(), freq="7D")
        grid = pd.MultiIndex.from_product([weeks, sorted(df.grp.unique())], names=["week", "grp"])
        df["week"] = pd.to_datetime(df.week)
        df = (df.set_index(["week", "grp"]).reindex(grid, fill_value=0).reset_index())
    df = df.merge(sizes, on="grp", how="left")
    # A group under MIN_CELL is suppressed whole; in a shown group, a week with fewer than
    # MIN_CELL active people shows none of their numbers (a gap in the line, flag `week_suppressed`).
    return _suppress_subset(_suppress(df, "n"), "active", ["minutes", "events"],
                            flag="week_suppressed")


def _activity_over_time_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str | None = None
                               ) -> pd.DataFrame:
    dims, p = _dims(f)
    group = _group_col(by)
    df = _rdf(cur, f"""WITH {dims}
        SELECT week, {group} AS grp, CAST(sum(active) AS BIGINT) AS active,
               sum(minutes) AS minutes, CAST(sum(events) AS BIGINT) AS events
        FROM ({_cells(_R_WEEKLY, f, p)}) GROUP BY ALL ORDER BY week
    """, p)
    sizes = _rdf(cur, f"""WITH {dims}
        SELECT {group} AS grp, CAST(sum(active) AS BIGINT) AS n
        FROM ({_cells(_R_PEOPLE, f, p, people=True)}) WHERE active > 0 GROUP BY ALL
    """, p)
    return _complete_weeks(df, sizes)


@_cached
def activity_over_time(cur: duckdb.DuckDBPyConnection, f: Filters, by: str | None = None
                       ) -> pd.DataFrame:
    """Weekly active participants and minutes, overall or per cluster/country/modality/setting.
    Groups with fewer than MIN_CELL participants over the period are suppressed whole; in a
    shown group, a week with fewer than MIN_CELL active has no active, minutes or events (NaN)
    and `week_suppressed` True."""
    _group_col(by)
    if _use_rollups(cur, f):
        return _activity_over_time_rollup(cur, f, by)
    return _activity_over_time_base(cur, f, by)


def _activity_heatmap_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    dims, p = _dims(f)
    df = _rdf(cur, f"""WITH {dims}
        SELECT CAST(weekday AS BIGINT) AS weekday, CAST(hour AS BIGINT) AS hour,
               CAST(sum(events) AS BIGINT) AS events, CAST(sum(n) AS BIGINT) AS n
        FROM ({_cells(_R_HOURLY, f, p)}) GROUP BY ALL ORDER BY weekday, hour
    """, p)
    return _suppress(df, "n", keep=["weekday", "hour"])


@_cached
def activity_heatmap(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Events by local weekday × hour, each event in its institution's IANA time zone
    (ISO weekday 1 = Monday), with distinct participants per cell. A cell with fewer than
    MIN_CELL participants is suppressed (its events and n blanked; weekday and hour stay)."""
    if _use_rollups(cur, f):
        return _activity_heatmap_rollup(cur, f)
    return _activity_heatmap_base(cur, f)


def _retention_by_cohort_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, max_weeks: int = 16
                                ) -> pd.DataFrame:
    dims, p = _dims(f)
    p["maxw"] = max_weeks
    df = _rdf(cur, f"""WITH {dims},
        r AS (SELECT term, week, CAST(sum(active) AS BIGINT) AS active
              FROM ({_cells(_R_RETENTION, f, p)}) GROUP BY ALL),
        sizes AS (SELECT term, active AS n FROM r WHERE week = 0)
        SELECT r.term AS cohort, r.week, r.active, sizes.n
        FROM r JOIN sizes USING (term) WHERE r.week <= $maxw ORDER BY cohort, week
    """, p)
    df["share"] = df.active / df.n
    return _retention_finish(df)


@_cached
def retention_by_cohort(cur: duckdb.DuckDBPyConnection, f: Filters, max_weeks: int = 16
                        ) -> pd.DataFrame:
    """Share of each cohort (term of the exchange) active in week k after their first active day
    in that exchange (participant×exchange pairs; k = days since // 7). Cohorts under MIN_CELL
    are suppressed; a week with fewer than MIN_CELL active pairs has no active and no share
    (`week_suppressed`)."""
    if _use_rollups(cur, f, distinct=False):
        return _retention_by_cohort_rollup(cur, f, max_weeks)
    return _retention_by_cohort_base(cur, f, max_weeks)


_BREAKDOWN_KEYS = {"cluster": ("cluster_id", "coalesce(cluster_name, cluster_id)"),
                   "country": ("country", "country"), "exchange": ("exchange_id", "exchange_name")}


def _breakdown_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    dims, p = _dims(f)
    key, label = _BREAKDOWN_KEYS[by]
    if by == "exchange":
        # Week 0 of the retention rollup holds every participant×exchange pair with events:
        # the distinct participants of each exchange.
        df = _rdf(cur, f"""WITH {dims},
            ppl AS (SELECT {key} AS key, {label} AS grp, CAST(sum(active) AS BIGINT) AS n
                    FROM ({_cells(_R_RETENTION, f, p)}) WHERE week = 0 GROUP BY ALL),
            act AS (SELECT {key} AS key, CAST(sum(events) AS BIGINT) AS events,
                           sum(minutes) AS minutes FROM ({_cells(_R_WEEKLY, f, p)}) GROUP BY ALL)
            SELECT key, grp AS "group", n AS participants, n AS active, events, minutes,
                   1 AS exchanges
            FROM ppl JOIN act USING (key) ORDER BY participants DESC
        """, p)
    else:
        df = _rdf(cur, f"""WITH {dims},
            ppl AS (SELECT {key} AS key, {label} AS grp, CAST(sum(n) AS BIGINT) AS participants,
                           CAST(sum(active) AS BIGINT) AS active
                    FROM ({_cells(_R_PEOPLE, f, p, people=True)}) GROUP BY ALL),
            act AS (SELECT {key} AS key, CAST(sum(events) AS BIGINT) AS events,
                           sum(minutes) AS minutes,
                           count(DISTINCT exchange_id) AS exchanges
                    FROM ({_cells(_R_WEEKLY, f, p)}) GROUP BY ALL)
            SELECT key, grp AS "group", participants, coalesce(active, 0) AS active,
                   coalesce(events, 0) AS events, coalesce(minutes, 0) AS minutes,
                   coalesce(exchanges, 0) AS exchanges
            FROM ppl LEFT JOIN act USING (key) ORDER BY participants DESC
        """, p)
    df["minutes_per_active"] = df.minutes / df.active.where(df.active > 0)
    return _breakdown_finish(df)


@_cached
def breakdown(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Per cluster/country/exchange: participants, active participants, events, minutes.
    `key` is the filter value of the group (cluster_id, country, exchange_id)."""
    if by not in _BREAKDOWN_KEYS:
        raise ValueError(f"cannot break down by {by!r}; choose one of {sorted(_BREAKDOWN_KEYS)}")
    if _use_rollups(cur, f, distinct=by != "exchange"):
        return _breakdown_rollup(cur, f, by)
    return _breakdown_base(cur, f, by)


def _moments_sql(n: str = "n", s: str = "sum", ss: str = "sumsq") -> str:
    """Mean and sample SD from summed count, sum and sum of squares (n − 1 denominator)."""
    return (f"CAST(sum({n}) AS BIGINT) AS n, sum({s}) / sum({n}) AS mean, "
            f"CASE WHEN sum({n}) > 1 THEN sqrt(greatest(sum({ss}) - sum({s}) * sum({s}) / sum({n}),"
            f" 0) / (sum({n}) - 1)) END AS sd")


def _wave_means_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    dims, p = _dims(f)
    df = _rdf(cur, f"""WITH {dims}
        SELECT instrument, scale, wave, comparison, {_moments_sql()}
        FROM ({_cells(_R_SCORES, f, p, comparison=True)}) GROUP BY ALL
    """, p)
    df = t_interval(df)
    df = df.assign(_o=_wave_rank(df.wave)).sort_values(["instrument", "scale", "comparison", "_o"])
    return _suppress(df.drop(columns="_o"), "n", keep=["comparison"])


@_cached
def wave_means(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Mean scale score per wave for the filtered participants, with a t-based 95% CI
    (mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n, as R's `t.test`); comparison group apart."""
    if _table_exists(cur, T_SCORES) and _use_rollups(cur, f):
        return _wave_means_rollup(cur, f)
    return _wave_means_base(cur, f)


def _comparison_difference_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    dims, p = _dims(f)
    g = _rdf(cur, f"""WITH {dims}
        SELECT instrument, scale, comparison, {_moments_sql()}
        FROM ({_cells(_R_GAINS, f, p, comparison=True)}) GROUP BY ALL
        ORDER BY instrument, scale
    """, p)
    return _comparison_from_moments(g)


@_cached
def comparison_difference(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Mean post−pre gain of participants minus that of the comparison group, per scale, with a
    Welch 95% CI (as R's `t.test(var.equal = FALSE)`). Empty when there is no comparison group."""
    if _table_exists(cur, T_SCORES) and _use_rollups(cur, f):
        return _comparison_difference_rollup(cur, f)
    return _comparison_difference_base(cur, f)


def _equity_sql(col: str) -> str:
    return _AGE_BAND_SQL if col == "age_band" else col


def _gains_by_group_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    col = _equity_col(by)
    cols = ["instrument", "scale", "group", "n", "mean", "sd", "ci_low", "ci_high", "suppressed"]
    dims, p = _dims(f)
    df = _rdf(cur, f"""WITH {dims}
        SELECT instrument, scale, {_equity_sql(col)} AS "group", {_moments_sql()}
        FROM ({_cells(_R_GAINS, f, p)}) GROUP BY ALL ORDER BY instrument, scale, "group"
    """, p)
    if not len(df):
        return pd.DataFrame(columns=cols)
    df = t_interval(df)
    return _suppress(df, "n")[cols]


@_cached
def gains_by_group(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Mean post−pre gain per scale and group (exchange participants only), t 95% CI."""
    _equity_col(by)
    if _table_exists(cur, T_SCORES) and _use_rollups(cur, f):
        return _gains_by_group_rollup(cur, f, by)
    return _gains_by_group_base(cur, f, by)


def _participation_by_group_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str
                                   ) -> pd.DataFrame:
    col = _equity_col(by)
    dims, p = _dims(f)
    df = _rdf(cur, f"""WITH {dims}
        SELECT {_equity_sql(col)} AS "group", CAST(sum(n) AS BIGINT) AS n,
               CAST(sum(active) AS BIGINT) AS active,
               coalesce(sum(minutes), 0) / sum(n) AS minutes_per_participant
        FROM ({_cells(_R_PEOPLE, f, p, people=True)}) GROUP BY ALL ORDER BY "group"
    """, p)
    df["active_share"] = df.active / df.n
    return _participation_finish(df)


@_cached
def participation_by_group(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Participants, share ever active and mean minutes per participant, per group."""
    _equity_col(by)
    if _use_rollups(cur, f):
        return _participation_by_group_rollup(cur, f, by)
    return _participation_by_group_base(cur, f, by)


def _attrition_funnel_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    dims, p = _dims(f)
    df = _rdf(cur, f"""WITH {dims}
        SELECT 'enrolled' AS stage, CAST(coalesce(sum(n), 0) AS BIGINT) AS n
        FROM ({_cells(_R_PEOPLE, f, p, people=True)})
        UNION ALL SELECT 'active in the log', CAST(coalesce(sum(active), 0) AS BIGINT)
        FROM ({_cells(_R_PEOPLE, f, p, people=True)})
        UNION ALL SELECT 'answered ' || wave, CAST(sum(responded) AS BIGINT)
        FROM ({_cells(_R_WAVES, f, p)}) GROUP BY wave
    """, p)
    return _funnel_finish(df)


def _funnel_finish(df: pd.DataFrame) -> pd.DataFrame:
    order = {"enrolled": (0,), "active in the log": (1,)}
    rank = df.stage.map(lambda s: order.get(s, (2, *wave_key(s.removeprefix("answered ")))))
    df = df.assign(_o=rank).sort_values("_o").drop(columns="_o").reset_index(drop=True)
    first = df.n.iloc[0] if len(df) else 0
    df["share"] = df.n / first if first else np.nan
    return _suppress(df, "n")


@_cached
def attrition_funnel(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Exchange participants in scope → active → answered pre → post → follow-up (each stage
    counts participants who reached it; later waves need not include earlier ones)."""
    if _use_rollups(cur, f):
        return _attrition_funnel_rollup(cur, f)
    return _attrition_funnel_base(cur, f)


def _dropout_by_group_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str
                             ) -> pd.DataFrame:
    col = _equity_col(by)
    dims, p = _dims(f)
    df = _rdf(cur, f"""WITH {dims}
        SELECT {_equity_sql(col)} AS "group", CAST(sum(answered_pre) AS BIGINT) AS n,
               CAST(sum(pre_not_post) AS BIGINT) AS dropped
        FROM ({_cells(_R_PEOPLE, f, p, people=True)}) GROUP BY ALL
        HAVING sum(answered_pre) > 0 ORDER BY "group"
    """, p)
    df["dropout_rate"] = df.dropped / df.n
    return _dropout_finish(df)


@_cached
def dropout_by_group(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Of those who answered the pre survey, the share who did not answer the post survey."""
    _equity_col(by)
    if _use_rollups(cur, f):
        return _dropout_by_group_rollup(cur, f, by)
    return _dropout_by_group_base(cur, f, by)
