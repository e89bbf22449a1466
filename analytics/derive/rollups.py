"""Per-data-version rollups of the event log and survey answers that the dashboard reads instead of
scanning `events`, `responses` and `res_scale_scores` on a page view.

They are built inside every load (from `analytics.derive.materialise.refresh`, on the writer's
connection of the next warehouse file), set-based in DuckDB, so each data version pays for its
rollups once and a page view aggregates a few thousand rows instead of millions. In two phases:
`build_facts` makes the day facts (below) before the result tables, which read them instead of
the event log; `build_cubes` makes everything else after the result tables, since the score
cubes read res_scale_scores. `build(con)` runs both.

Grain. Every rollup is keyed by the dimensions the filter bar can restrict: `exchange_id`
(program, exchange, cohort/term, modality and setting are attributes of the exchange),
`institution_id` (cluster and country are its attributes), `role` and `comparison`; the equity
cubes add `gender` and `birth_year` (the age band is derived at query time, because it depends
on today's date). Events, minutes, score sums and participant×exchange counts add up exactly
over any union of cells. Distinct-participant counts add up exactly only if each participant sits
in one cell, i.e. has events or answers in at most one exchange (their institution and role are
fixed): `build` records the number of participants who do not in meta `rollups_multi_exchange`,
and the read layer (`analytics.read.sql.use_rollups`) answers distinct counts from the day facts
when it is not 0.
Retention is defined per participant×exchange pair, so its rollup is exact either way.

A date-range filter cannot be answered by per-cell sums. Queries with one (and the fallbacks
above) read the day facts instead of the event log: `res_person_keys` gives every participant
an integer key for this data version, `res_person_days` holds events and minutes per
participant, exchange and UTC day, `res_answer_days` the days with answers per wave, and
`res_person_scores` / `res_person_gains` the scores and paired gains by that key, and
`res_person_hours` the events per local weekday and hour. A range of UTC days selects exactly
the events the range's timestamps would. The event log and the answers are read once, into
these facts; every rollup above is then built from them. `res_person_activities` (events and
minutes per participant, exchange, UTC day and activity) is read by the result tables only
(`analytics.derive.scheduling`, `.persistence`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

import duckdb

from analytics.derive import portable
from etl import schema
from etl.errors import EtlError

__all__ = ["ROLLUP_TABLES", "build", "build_facts", "build_cubes", "Facts", "facts_current",
           "current_facts", "temporary_facts", "events_in_lake", "EventsInLake", "META_MULTI",
           "META_MONTHS_BASE", "MASK_MONTHS",
           "META_VERSION", "META_FACTS_VERSION", "META_INCREMENTAL", "META_TIMINGS", "week_sql",
           "day_sql", "GENDER_SQL", "Step", "fact_steps", "activities_step", "cube_steps",
           "month_steps", "months_base", "MONTH_SPAN_SQL", "MULTI_SQL", "duckdb_statements"]

META_MULTI = "rollups_multi_exchange"
META_MONTHS_BASE = "rule_months_base"
# Months a HUGEINT mask holds (bit 127 is the sign; one spare).
MASK_MONTHS = 126
META_VERSION = "rollups_data_version"
# The data version the day facts (`fact_steps`) are of: written by `build_facts`, before the
# result tables read them; META_VERSION follows once the cubes are built too.
META_FACTS_VERSION = "rollups_facts_data_version"
META_INCREMENTAL = "rollups_incremental"
META_TIMINGS = "rollups_timings"

ROLLUP_TABLES: dict[str, schema.Table] = schema.ROLLUP_TABLES  # named once, in the schema

EV = schema.EVENTS.name
RESP = schema.RESPONSES.name
PEOPLE = schema.PARTICIPANTS.name
INST = schema.INSTITUTIONS.name
SCORES = schema.RES_SCALE_SCORES.name
KEYS = schema.RES_PERSON_KEYS.name
HOURS = schema.RES_PERSON_HOURS.name
ACTIVITIES = schema.RES_PERSON_ACTIVITIES.name

def week_sql(ts: str) -> str:
    """Monday of the UTC week of timestamp column `ts`, by epoch arithmetic (1970-01-05 is a
    Monday): DuckDB's date_trunc on TIMESTAMPTZ goes through ICU time-zone rules per row and
    was 12× slower on the demo's events. The read layer uses it; the rollups' weeks are of UTC
    days, by the portable `ei_week(day)`, the same Monday for a date (tests/test_derive_spark.py
    checks every day of 1969-2031), so weekly cells line up with the direct query's weeks."""
    return (f"(DATE '1970-01-05' + 7 * CAST(floor((epoch({ts}) - 345600) / 604800) "
            "AS INTEGER))")


def day_sql(ts: str) -> str:
    """The UTC date of timestamp column `ts`, by epoch arithmetic (a cast to DATE would go through
    the session's time zone per row)."""
    return f"(DATE '1970-01-01' + CAST(floor(epoch({ts}) / 86400) AS INTEGER))"


_PEOPLE_DIMS = ("p.institution_id, p.role, coalesce(p.comparison, FALSE) AS comparison")
# A participant's gender as every grouping shows it (participants aliased p): the rollups,
# the read layer and `analytics.derive.materialise` all use this one expression.
GENDER_SQL = "coalesce(nullif(trim(p.gender), ''), 'not reported')"


def _sql(t: schema.Table, select: str) -> list[str]:
    cols = ", ".join(f'"{c}"' for c in t.column_names)
    return [f'DROP TABLE IF EXISTS "{t.name}"', schema.ddl(t),
            f'INSERT INTO "{t.name}" ({cols}) {select}']


@dataclass(frozen=True)
class _Facts:
    """The per-person facts a cube is built from: the warehouse's own (`_ALL`), or one set of
    people's rows of them, copied into temporary tables (`_append_events`).

    Every cube built from these is a sum over people: each participant sits in one cell (their
    institution, role and group are fixed), so a count of distinct participants within a cell is
    a count of people, and events, minutes and pair counts add up. The cube over all people is
    therefore the cube over the touched people plus the cube over the rest, and an append that
    touches a few people changes a cube by their new contribution minus their old one."""
    people: str = KEYS
    days: str = schema.RES_PERSON_DAYS.name
    hours: str = HOURS
    answers: str = schema.RES_ANSWER_DAYS.name
    pairs: str = "_rollup_px"
    scores: str = schema.RES_PERSON_SCORES.name
    gains: str = schema.RES_PERSON_GAINS.name
    pair_months: str = schema.RES_PAIR_MONTHS.name


_ALL = _Facts()
_CELL_SQL = "p.institution_id, p.role, coalesce(p.comparison, FALSE)"


def _pairs_sql(f: _Facts) -> str:
    """The exchange each participant took part in (events or answers): one row per pair."""
    return (f"SELECT DISTINCT pid, exchange_id FROM {f.days} "
            f"UNION SELECT DISTINCT pid, exchange_id FROM {f.answers}")


def _multi_sql(f: _Facts) -> str:
    """Participants with events or answers in more than one exchange (a sum over people)."""
    return (f"SELECT count(*) FROM (SELECT pid FROM {f.pairs} GROUP BY 1 HAVING count(*) > 1) "
            "AS multi")


# Weeks and months from the day facts (a UTC day lies in one UTC week and month): half the
# rows of the event log, and the same sums and distinct counts. The cubes are in the portable
# subset (`cube_steps`, `month_steps`): a lake's derive runs them on Spark too.
def _weekly(f: _Facts, _base: str) -> str:
    return f"""
        SELECT ei_week(d.day) AS week, d.exchange_id, {_PEOPLE_DIMS},
               count(DISTINCT d.pid), sum(d.events), sum(d.minutes)
        FROM {f.days} d JOIN {KEYS} p USING (pid) GROUP BY ALL"""


def _monthly(f: _Facts, _base: str) -> str:
    return f"""
        SELECT ei_month(d.day) AS month, d.exchange_id,
               {_PEOPLE_DIMS}, count(DISTINCT d.pid), sum(d.events), sum(d.minutes)
        FROM {f.days} d JOIN {KEYS} p USING (pid) GROUP BY ALL"""


def _hourly(f: _Facts, _base: str) -> str:
    return f"""
        SELECT h.exchange_id, {_PEOPLE_DIMS}, h.weekday, h.hour, sum(h.events),
               count(DISTINCT h.pid)
        FROM {f.hours} h JOIN {KEYS} p USING (pid) GROUP BY ALL"""


def _retention(f: _Facts, _base: str) -> str:
    # Weeks since the pair's first active day (days since // 7): the direct query's definition,
    # per participant×exchange.
    return f"""
        WITH firsts AS (SELECT pid, exchange_id, min(day) AS d0 FROM {f.days} GROUP BY ALL),
             wk AS (SELECT DISTINCT d.pid, d.exchange_id,
                           CAST(ei_day_diff(f.d0, d.day) // 7 AS INTEGER) AS week
                    FROM {f.days} d JOIN firsts f USING (pid, exchange_id))
        SELECT wk.exchange_id, {_PEOPLE_DIMS}, wk.week, count(*)
        FROM wk JOIN {KEYS} p USING (pid) GROUP BY ALL"""


def _people(f: _Facts, _base: str) -> str:
    # One row per (cell, gender, birth year): people, those active, their events and minutes, and
    # survey stages. exchange_id is the participant's one exchange (NULL: none yet); with
    # multi-exchange participants it is their first by id and meta says the cube is not exact.
    return f"""
        WITH px AS (SELECT pid, min(exchange_id) AS exchange_id FROM {f.pairs} GROUP BY 1),
             act AS (SELECT pid, sum(events) AS events, sum(minutes) AS minutes
                     FROM {f.days} GROUP BY 1),
             w AS (SELECT pid, bool_or(wave = 'pre') AS pre, bool_or(wave = 'post') AS post
                   FROM {f.answers} GROUP BY 1)
        SELECT px.exchange_id, {_PEOPLE_DIMS}, {GENDER_SQL} AS gender, p.birth_year,
               count(*), count(act.pid), coalesce(sum(act.events), 0),
               coalesce(sum(act.minutes), 0), count(*) FILTER (WHERE w.pre),
               count(*) FILTER (WHERE w.pre AND NOT w.post)
        FROM {f.people} p LEFT JOIN px USING (pid) LEFT JOIN act USING (pid)
             LEFT JOIN w USING (pid)
        GROUP BY ALL"""


# The differencing rule's month sets (`analytics.read.disclosure`): per pair, per week and cell,
# per retention week and cell, the months with events (and answers) as bit masks, so the rule
# judges a month range on a few thousand cube rows instead of grouping the day facts (at 1M
# participants the weekly rule took 6-14 s cold on 24M person-days). Bit 0 is `base`, the data's
# first month, recorded in meta.
def _pair_months(f: _Facts, base: str) -> str:
    mask = f"ei_month_mask(day, {base})"
    return f"""
        SELECT pid, exchange_id, coalesce(a.m, 0) AS active_months,
               coalesce(r.m, 0) AS answer_months
        FROM (SELECT pid, exchange_id, {mask} AS m FROM {f.days} GROUP BY ALL) a
        FULL JOIN (SELECT pid, exchange_id, {mask} AS m FROM {f.answers} GROUP BY ALL) r
        USING (pid, exchange_id)"""


def _pair_month_cube(f: _Facts, _base: str) -> str:
    return f"""
        SELECT m.exchange_id, {_CELL_SQL}, m.active_months, count(*)
        FROM {f.pair_months} m JOIN {KEYS} p USING (pid)
        WHERE m.active_months <> 0 GROUP BY ALL"""


def _week_months(f: _Facts, base: str) -> str:
    return f"""
        SELECT w.week, w.exchange_id, {_CELL_SQL}, w.m, count(*)
        FROM (SELECT pid, exchange_id, ei_week(day) AS week, ei_month_mask(day, {base}) AS m
              FROM {f.days} GROUP BY ALL) w JOIN {KEYS} p USING (pid) GROUP BY ALL"""


def _retention_months(f: _Facts, base: str) -> str:
    return f"""
        WITH firsts AS (SELECT pid, exchange_id, min(day) AS d0 FROM {f.days} GROUP BY ALL),
             wk AS (SELECT d.pid, d.exchange_id,
                           CAST(ei_day_diff(f.d0, d.day) // 7 AS INTEGER) AS week,
                           ei_month_mask(d.day, {base}) AS m
                    FROM {f.days} d JOIN firsts f USING (pid, exchange_id) GROUP BY ALL)
        SELECT wk.exchange_id, {_CELL_SQL}, wk.week, wk.m, count(*)
        FROM wk JOIN {KEYS} p USING (pid) GROUP BY ALL"""


# The scores' and gains' month cubes read res_person_scores / res_person_gains, which come from
# the statistics (res_scale_scores), not from a lake: DuckDB only. They or two masks (`|`),
# which Spark could not do on its DECIMAL(38,0) masks.
def _score_months(f: _Facts, _base: str) -> str:
    return f"""
        SELECT s.exchange_id, {_CELL_SQL}, s.instrument, s.scale, s.wave,
               m.active_months | m.answer_months, count(*)
        FROM {f.scores} s JOIN {KEYS} p USING (pid)
        JOIN {f.pair_months} m USING (pid, exchange_id) GROUP BY ALL"""


def _gain_months(f: _Facts, _base: str) -> str:
    return f"""
        SELECT g.exchange_id, {_CELL_SQL}, g.instrument, g.scale,
               m.active_months | m.answer_months, count(*)
        FROM {f.gains} g JOIN {KEYS} p USING (pid)
        JOIN {f.pair_months} m USING (pid, exchange_id) GROUP BY ALL"""


# The cubes that read the participation log (through the day facts), each with its additive
# measures (the first of them is a count, 0 exactly when the row would not exist). An events
# append updates these and only these (`_append_events`).
_EVENT_CUBES: tuple[tuple[schema.Table, Callable[[_Facts, str], str], tuple[str, ...]], ...] = (
    (schema.RES_ACTIVITY_WEEKLY, _weekly, ("active", "events", "minutes")),
    (schema.RES_ACTIVITY_MONTHLY, _monthly, ("active", "events", "minutes")),
    (schema.RES_ACTIVITY_HOURLY, _hourly, ("n", "events")),
    (schema.RES_RETENTION, _retention, ("active",)),
    (schema.RES_PEOPLE, _people, ("n", "active", "events", "minutes", "answered_pre",
                                  "pre_not_post")),
)
_MONTH_CUBES: tuple[tuple[schema.Table, Callable[[_Facts, str], str], tuple[str, ...]], ...] = (
    (schema.RES_PAIR_MONTH_CUBE, _pair_month_cube, ("pairs",)),
    (schema.RES_WEEK_MONTHS, _week_months, ("pairs",)),
    (schema.RES_RETENTION_MONTHS, _retention_months, ("pairs",)),
)
_SCORE_MONTH_CUBES: tuple[tuple[schema.Table, Callable[[_Facts, str], str], tuple[str, ...]],
                          ...] = (
    (schema.RES_SCORE_MONTHS, _score_months, ("n",)),
    (schema.RES_GAIN_MONTHS, _gain_months, ("n",)),
)
_MONTH_TABLES = (schema.RES_PAIR_MONTHS,
                 *(t for t, _, _ in (*_MONTH_CUBES, *_SCORE_MONTH_CUBES)))


def _month_span(first: dt.date, last: dt.date) -> int:
    return (last.year - first.year) * 12 + last.month - first.month + 1


# The first and last day of the day facts (events and answers): the month masks' span.
MONTH_SPAN_SQL = f"""
    SELECT min(d), max(d) FROM (SELECT min(day) AS d FROM {schema.RES_PERSON_DAYS.name} UNION ALL
                                SELECT max(day) FROM {schema.RES_PERSON_DAYS.name} UNION ALL
                                SELECT min(day) FROM {schema.RES_ANSWER_DAYS.name} UNION ALL
                                SELECT max(day) FROM {schema.RES_ANSWER_DAYS.name}) AS span"""
# Participants in more than one exchange, once `cube_steps`' working table _rollup_px exists.
MULTI_SQL = _multi_sql(_ALL)


def months_base(first: dt.date | None, last: dt.date | None) -> dt.date | None:
    """Bit 0 of the month masks for facts from `first` to `last` (MONTH_SPAN_SQL's row): the
    first month, or None when there are no facts or they span more than MASK_MONTHS months
    (then no masks are stored and the rule reads the day facts)."""
    if not first or not last or _month_span(first, last) > MASK_MONTHS:
        return None
    return first.replace(day=1)


def _response_waves() -> str:
    return f"""
        SELECT a.exchange_id, {_PEOPLE_DIMS}, {GENDER_SQL} AS gender, p.birth_year, a.wave,
               count(DISTINCT a.pid)
        FROM {schema.RES_ANSWER_DAYS.name} a JOIN {KEYS} p USING (pid) GROUP BY ALL"""


def _rule_months(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The month-mask tables (see `_pair_months`), built from all the facts: the portable
    `month_steps`, then the scores' and gains' cubes. A span over MASK_MONTHS leaves the tables
    empty and the meta value '' (the rule then reads the day facts)."""
    base = months_base(*con.execute(MONTH_SPAN_SQL).fetchone())
    empty = [s for t in _MONTH_TABLES for s in (f'DROP TABLE IF EXISTS "{t.name}"', schema.ddl(t))]
    meta = f"DELETE FROM {schema.META.name} WHERE key = '{META_MONTHS_BASE}'"
    if base is None:
        return [*empty, meta, f"INSERT INTO {schema.META.name} VALUES ('{META_MONTHS_BASE}', '')"]
    return [
        *duckdb_statements(month_steps(base)),
        *(s for t, cube, _ in _SCORE_MONTH_CUBES
          for s in _sql(t, cube(_ALL, f"DATE '{base.isoformat()}'"))),
        meta,
        f"INSERT INTO {schema.META.name} VALUES ('{META_MONTHS_BASE}', '{base.isoformat()}')",
    ]


@dataclass(frozen=True)
class Step:
    """One derive statement in the portable subset (`analytics.derive.portable`): `select`
    makes table `name`, a working table (`temp`) or a derived table of the schema. DuckDB runs
    it as written (`duckdb_statements`); Spark runs its transpiled form
    (tests/test_derive_spark.py)."""
    name: str
    select: str
    temp: bool = False


def hours_steps(events: str = EV) -> list[Step]:
    """The steps that make res_person_hours' rows of the events `events` selects (a table or a
    subquery with the event log's columns; every event of a UTC day it holds must be in it).

    Local time of each event in its institution's zone. ICU's per-row conversion took 135 s at
    47M events, so the UTC offset is looked up instead: once per (zone, 15-minute UTC slot that
    holds an event). Every offset and every DST switch in the tz database falls on a multiple of
    15 minutes, so the offset is constant within a slot; local weekday and hour are then integer
    arithmetic on the event's epoch plus that offset. Only slots with events: every slot from
    the first to the last event made one mistyped year (2125) into hundreds of millions of rows.
    The lookup is keyed by one integer (zone number × 2³² + slot): joined on the (zone name,
    slot) pair it took 104 s at 47M events, on the integer 4 s."""
    cols = schema.RES_PERSON_HOURS.column_names
    return [
        Step("_rollup_zones", f"""
            SELECT timezone, CAST(row_number() OVER (ORDER BY timezone) AS BIGINT) AS z
            FROM (SELECT DISTINCT timezone FROM {INST} WHERE timezone IS NOT NULL) AS tz""",
             temp=True),
        Step("_rollup_offsets", f"""
            WITH s AS (SELECT DISTINCT CAST(floor(ei_epoch(occurred_at) / 900) AS BIGINT) AS slot
                       FROM {events} AS ev)
            SELECT z.z * 4294967296 + s.slot AS k, ei_utc_offset(z.timezone, s.slot * 900)
                     AS offset_s
            FROM _rollup_zones AS z, s""", temp=True),
        Step("_rollup_pz", f"""
            SELECT k.pid, k.participant_id, z.z
            FROM {KEYS} AS k LEFT JOIN {INST} AS i USING (institution_id)
            LEFT JOIN _rollup_zones AS z USING (timezone)""", temp=True),
        # 1970-01-01 was a Thursday: ISO weekday ((days + 3) mod 7) + 1.
        Step(HOURS, f"""
            WITH loc AS (
                SELECT pz.pid, e.exchange_id, ei_utc_day(e.occurred_at) AS day, e.minutes,
                       CAST(floor(ei_epoch(e.occurred_at)) AS BIGINT) + o.offset_s AS t
                FROM {events} AS e JOIN _rollup_pz AS pz USING (participant_id)
                LEFT JOIN _rollup_offsets AS o
                  ON o.k = pz.z * 4294967296
                           + CAST(floor(ei_epoch(e.occurred_at) / 900) AS BIGINT))
            SELECT pid AS {cols[0]}, exchange_id AS {cols[1]}, day AS {cols[2]},
                   CAST(((t // 86400 + 3) % 7) + 1 AS TINYINT) AS {cols[3]},
                   CAST((t // 3600) % 24 AS TINYINT) AS {cols[4]},
                   count(*) AS {cols[5]}, sum(coalesce(minutes, 0)) AS {cols[6]}
            FROM loc GROUP BY ALL ORDER BY day"""),
    ]


def activities_step(events: str = EV) -> Step:
    """The step that makes res_person_activities' rows of the events `events` selects (as
    `hours_steps`: every event of a UTC day it holds must be in it): events and minutes per
    participant, exchange, UTC day and activity, what the result tables read of the log.

    Unlike the other day facts it keeps the events of a participant no longer in participants
    (pid NULL; a roster replaced without them leaves their events), so that the data's last day
    (`analytics.derive.persistence.DATA_END_SQL`) is the log's. One row per participant ×
    exchange × day × activity with events."""
    return Step(ACTIVITIES, f"""
        SELECT k.pid, e.exchange_id, ei_utc_day(e.occurred_at) AS day, e.activity,
               count(*) AS events, sum(coalesce(e.minutes, 0)) AS minutes
        FROM {events} AS e LEFT JOIN {KEYS} AS k USING (participant_id)
        GROUP BY ALL ORDER BY day""")


def fact_steps() -> list[Step]:
    """Every step from the event log, the people and the answers to the day facts (person keys,
    hours, days, answer days, activities): what a lake's derive runs on Spark (issue 16)."""
    return [
        Step(KEYS, f"""
            SELECT CAST(row_number() OVER (ORDER BY participant_id) AS INTEGER) AS pid,
                   participant_id, institution_id, role, gender, birth_year, comparison
            FROM {PEOPLE}"""),
        *hours_steps(),
        Step(schema.RES_PERSON_DAYS.name, _days_sql()),
        Step(schema.RES_ANSWER_DAYS.name, _answer_days_sql()),
        activities_step(),
    ]


def cube_steps() -> list[Step]:
    """The steps from the day facts and person keys to the event cubes (weekly, monthly, hourly,
    retention, people) and res_response_waves, with their working table _rollup_px (each
    participant's exchanges, which `MULTI_SQL` counts): portable, run by the embedded build and
    by a lake's derive."""
    return [
        Step("_rollup_px", _pairs_sql(_ALL), temp=True),
        *(Step(t.name, cube(_ALL, "")) for t, cube, _ in _EVENT_CUBES),
        Step(schema.RES_RESPONSE_WAVES.name, _response_waves()),
    ]


def month_steps(base: dt.date) -> list[Step]:
    """The steps from the day facts to res_pair_months and the month-mask cubes of events
    (pairs, weeks, retention weeks), bit 0 the month of `base` (`months_base`): portable. The
    masks are HUGEINT on DuckDB and DECIMAL(38,0) on Spark (`portable` ei_month_mask)."""
    b = f"DATE '{base.isoformat()}'"
    return [Step(schema.RES_PAIR_MONTHS.name, _pair_months(_ALL, b)),
            *(Step(t.name, cube(_ALL, b)) for t, cube, _ in _MONTH_CUBES)]


def duckdb_statements(steps: list[Step], *, insert: bool = False, temp: bool = False
                      ) -> list[str]:
    """The DuckDB statements of `steps`: a working table is (re)made; a schema table is
    recreated with its DDL, or with `insert` its rows are added; with `temp` it is made as a
    temporary table of its columns instead, which the later statements on this connection
    read in place of the stored one (`current_facts`)."""
    out: list[str] = []
    for st in steps:
        if st.temp:
            out += [f"DROP TABLE IF EXISTS {st.name}",
                    f"CREATE TEMP TABLE {st.name} AS {st.select}"]
        elif temp:
            t = ROLLUP_TABLES[st.name]
            cols = ", ".join(f'"{c.name}" {c.sql_type}' for c in t.columns)
            out += [f'DROP TABLE IF EXISTS temp.main."{t.name}"',
                    f'CREATE TEMP TABLE "{t.name}" ({cols})',
                    f'INSERT INTO temp.main."{t.name}" ({", ".join(t.column_names)}) '
                    f"{st.select}"]
        elif insert:
            t = ROLLUP_TABLES[st.name]
            out.append(f'INSERT INTO "{t.name}" ({", ".join(t.column_names)}) {st.select}')
        else:
            out += _sql(ROLLUP_TABLES[st.name], st.select)
    return out


_DROP_HOURS_WORK = ["DROP TABLE IF EXISTS _rollup_offsets", "DROP TABLE IF EXISTS _rollup_pz",
                    "DROP TABLE IF EXISTS _rollup_zones"]


def _hours_sql(events: str) -> list[str]:
    """DuckDB statements that add to res_person_hours the rows of the events `events` selects
    (`hours_steps`), working tables dropped after."""
    return [*duckdb_statements(hours_steps(events), insert=True), *_DROP_HOURS_WORK]


def _answer_days_sql() -> str:
    return f"""SELECT DISTINCT k.pid, r.exchange_id, r.wave, ei_utc_day(r.submitted_at) AS day
               FROM {RESP} AS r JOIN {KEYS} AS k USING (participant_id)
               ORDER BY day"""


def _days_sql(where: str = "") -> str:
    return f"""SELECT pid, exchange_id, day, sum(events) AS events, sum(minutes) AS minutes
               FROM {HOURS} {where} GROUP BY ALL ORDER BY day"""


def _set_meta(con: duckdb.DuckDBPyConnection, facts: dict[str, str]) -> None:
    con.execute(f"DELETE FROM {schema.META.name} WHERE key IN (SELECT unnest(?::VARCHAR[]))",
                [list(facts)])
    con.executemany(f"INSERT INTO {schema.META.name} VALUES (?, ?)", [[k, v] for k, v in
                                                                      facts.items()])


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    rows = con.execute(f"SELECT value FROM {schema.META.name} WHERE key = ?", [key]).fetchall()
    return rows[0][0] if rows else None


@dataclass
class Facts:
    """What `build_facts` did, for `build_cubes`: seconds per step so far and, when an events
    append was brought in incrementally (`_append_events`, which updates the cubes with the
    facts: none of that reads a result table), what was done (meta `rollups_incremental`)."""
    timings: dict[str, float] = field(default_factory=dict)
    incremental: str | None = None


def _runner(con: duckdb.DuckDBPyConnection, timings: dict[str, float]
            ) -> Callable[[str, list[str]], None]:
    def run(name: str, stmts: list[str]) -> None:
        t0 = time.perf_counter()
        for s in stmts:
            con.execute(s)
        timings[name] = round(time.perf_counter() - t0, 3)

    return run


def build(con: duckdb.DuckDBPyConnection, *, appended_events: Collection[int] | None = None
          ) -> dict[str, float]:
    """(Re)build every rollup table in the warehouse behind `con`; returns seconds per table:
    `build_facts` then `build_cubes` (a load runs its result tables between the two)."""
    return build_cubes(con, build_facts(con, appended_events=appended_events))


def build_facts(con: duckdb.DuckDBPyConnection, *,
                appended_events: Collection[int] | None = None) -> Facts:
    """(Re)build the day facts (`fact_steps`) in the warehouse behind `con` and record their
    data version (meta `rollups_facts_data_version`): the first phase of a load's derive,
    before the result tables, which read these facts instead of the event log. Refused
    (`EventsInLake`) on a serving warehouse whose events stay in a lake
    (`analytics.derive.serve`, which reads the lake's facts instead).

    `appended_events`: the load changed nothing but the event log, and only by adding the events
    of these batches (a row it replaced had the new row's key, so the same person and day). Then,
    when the stored rollups are of the version before this one, only what those events touch is
    recomputed (`_append_events`), facts and cubes both, and `build_cubes` has nothing left to
    build; otherwise (and always without `appended_events`) the facts are rebuilt from the event
    log and answers, and `build_cubes` rebuilds everything else from them.
    """
    _refuse_without_events(con)
    facts = Facts()
    run = _runner(con, facts.timings)
    version = _meta(con, "data_version") or "0"
    portable.install(con)  # the ei_ macros the portable steps use
    if appended_events is not None:
        facts.incremental = _append_events(con, sorted(appended_events), run)
        if facts.incremental is not None:
            _set_meta(con, {META_FACTS_VERSION: version})
            return facts

    # Day facts: what a date range reads. A dated view needs distinct participants over any span
    # of days, which no per-cell sum gives; these tables keep one row per participant, exchange
    # and UTC day (24M rows for the 1M demo's 47.5M events) keyed by a 4-byte integer instead
    # of the 12-character pseudonym. On the 1M demo a dated headline count took 0.64 s on the
    # events and answers and 0.09 s here.
    # The steps are portable (issue 16): the same statements run on Spark over a lake.
    keys, *hours, days, answers, activities = fact_steps()
    run(schema.RES_PERSON_KEYS.name, duckdb_statements([keys]))
    run(schema.RES_PERSON_HOURS.name, [*duckdb_statements(hours), *_DROP_HOURS_WORK])
    run(schema.RES_PERSON_DAYS.name, duckdb_statements([days]))
    run(schema.RES_ANSWER_DAYS.name, duckdb_statements([answers]))
    run(ACTIVITIES, duckdb_statements([activities]))
    _set_meta(con, {META_FACTS_VERSION: version})
    return facts


def build_cubes(con: duckdb.DuckDBPyConnection, facts: Facts) -> dict[str, float]:
    """Build every rollup but the day facts from the facts `build_facts` made on `con` (and
    res_scale_scores, when the warehouse has it): the second phase of a load's derive, after
    the result tables. Records meta `rollups_data_version` (the rollups are complete),
    `rollups_incremental` and `rollups_timings`; returns seconds per table, both phases."""
    timings = dict(facts.timings)
    run = _runner(con, timings)
    version = _meta(con, "data_version") or "0"
    if facts.incremental is not None:  # `_append_events` brought the cubes up to date too
        _set_meta(con, {META_VERSION: version, META_INCREMENTAL: facts.incremental,
                        META_TIMINGS: json.dumps(timings)})
        return timings
    portable.install(con)
    have_scores = bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [SCORES]
    ).fetchone()[0])
    # The cubes: portable too (a lake's derive runs these steps, and `month_steps` below).
    pairs, *cubes = cube_steps()
    run("participant_exchanges", duckdb_statements([pairs]))
    multi = con.execute(MULTI_SQL).fetchone()[0]
    for st in cubes:
        run(st.name, duckdb_statements([st]))
    if have_scores:
        # Scores and paired gains keyed by pid, then the cubes from them: a self-join of the
        # scores on the pseudonym took 4.8 s at 1M participants; the cubes' sums are the same.
        run(schema.RES_PERSON_SCORES.name, _sql(schema.RES_PERSON_SCORES, f"""
            SELECT k.pid, s.exchange_id, s.instrument, s.scale, s.wave, s.score
            FROM {SCORES} s JOIN {KEYS} k ON k.participant_id = s.participant
            WHERE s.score IS NOT NULL"""))
        run(schema.RES_PERSON_GAINS.name, _sql(schema.RES_PERSON_GAINS, f"""
            SELECT pid, exchange_id, instrument, scale, post - pre, pre, post FROM (
                SELECT pid, exchange_id, instrument, scale,
                       max(score) FILTER (WHERE wave = 'pre') AS pre,
                       max(score) FILTER (WHERE wave = 'post') AS post
                FROM {schema.RES_PERSON_SCORES.name} WHERE wave IN ('pre', 'post') GROUP BY ALL)
            WHERE pre IS NOT NULL AND post IS NOT NULL"""))
        run(schema.RES_SCORE_CUBE.name, _sql(schema.RES_SCORE_CUBE, f"""
            SELECT s.exchange_id, {_PEOPLE_DIMS}, s.instrument, s.scale, s.wave,
                   count(*), sum(s.score), sum(s.score * s.score)
            FROM {schema.RES_PERSON_SCORES.name} s JOIN {KEYS} p USING (pid) GROUP BY ALL"""))
        run(schema.RES_GAIN_CUBE.name, _sql(schema.RES_GAIN_CUBE, f"""
            SELECT g.exchange_id, {_PEOPLE_DIMS}, {GENDER_SQL} AS gender, p.birth_year,
                   g.instrument, g.scale, count(*), sum(g.gain), sum(g.gain * g.gain)
            FROM {schema.RES_PERSON_GAINS.name} g JOIN {KEYS} p USING (pid) GROUP BY ALL"""))
    else:
        for t in (schema.RES_PERSON_SCORES, schema.RES_PERSON_GAINS, schema.RES_SCORE_CUBE,
                  schema.RES_GAIN_CUBE):
            con.execute(f'DROP TABLE IF EXISTS "{t.name}"')
            con.execute(schema.ddl(t))
    run("rule_months", _rule_months(con))
    con.execute("DROP TABLE IF EXISTS _rollup_px")
    _set_meta(con, {META_MULTI: str(int(multi)), META_VERSION: version, META_INCREMENTAL: "",
                    META_TIMINGS: json.dumps(timings)})
    return timings


def facts_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse behind `con` holds the day facts of its data version (every table
    of `fact_steps`, meta `rollups_facts_data_version` its version)."""
    if _meta(con, META_FACTS_VERSION) != (_meta(con, "data_version") or "0"):
        return False
    stored = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()}
    return all(st.name in stored for st in fact_steps() if not st.temp)


@contextlib.contextmanager
def current_facts(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Within: the day facts of the data version behind `con`, which the result tables read.
    The stored ones when they are of it (`facts_current`; a load's derive builds them first),
    or the temporary ones an enclosing `temporary_facts` made. Otherwise (a version whose load
    skipped the derive, a warehouse from before a fact table) `temporary_facts`."""
    made = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()}
    if all(st.name in made for st in fact_steps() if not st.temp) or facts_current(con):
        yield
        return
    with temporary_facts(con):
        yield


class EventsInLake(EtlError):
    """Something needs the event log of a serving warehouse whose events stay in a lake."""


def events_in_lake(con: duckdb.DuckDBPyConnection) -> str | None:
    """Where the event log of the warehouse behind `con` is, when not in its `events` table
    (a serving warehouse built from a lake, `analytics.derive.serve`): "LAKE (version N)";
    None for a warehouse that holds its events."""
    raw = _meta(con, schema.META_EVENTS_IN_LAKE)
    if not raw:
        return None
    where = json.loads(raw)
    return f"{where['lake']} (version {where['version']})"


def _refuse_without_events(con: duckdb.DuckDBPyConnection) -> None:
    """`EventsInLake` when the warehouse behind `con` keeps its events in a lake: day facts
    built from its empty `events` would be facts of no events."""
    lake = events_in_lake(con)
    if lake is not None:
        raise EventsInLake(f"the events of this warehouse are in the lake at {lake}, not in "
                           "the warehouse; what needs them is computed on the lake "
                           "('python -m analytics derive --lake', then 'serve')")


@contextlib.contextmanager
def temporary_facts(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Within: day facts built from the tables `con` reads now (the warehouse's, or the
    temporary ones of an export's scope that shadow them, `analytics.outputs.export.scoped`)
    as temporary tables, which this connection (read-only too) reads in place of the stored
    ones; dropped on leaving. Raises `EventsInLake` on a serving warehouse whose events stay
    in a lake: its empty `events` would give facts of no events."""
    _refuse_without_events(con)
    steps = fact_steps()
    try:
        portable.install(con)
        for stmt in duckdb_statements(steps, temp=True):
            con.execute(stmt)
        yield
    finally:
        for st in steps:
            con.execute(f'DROP TABLE IF EXISTS temp.main."{st.name}"')


def _append_events(con: duckdb.DuckDBPyConnection, batches: list[int],
                   run: Callable[[str, list[str]], None]) -> str | None:
    """Bring the rollups of the version before up to date with the events of `batches`, the only
    change since; None (nothing done) when that cannot be done exactly, e.g. the stored rollups
    or day facts are of another version, or the new events lie before the month-mask base.

    1. The touched days (UTC days of the new events) are deleted from the day facts
       (res_person_hours, res_person_days, res_person_activities) and recomputed from every
       event of those days.
    2. The touched people (those with new events) are the only ones whose facts changed. Each
       cube over people (`_Facts`) gets their new contribution minus their old one, both
       computed on copies of their rows only; a cell whose count falls to 0 goes.
    3. Their pair month masks are recomputed; participants in more than one exchange are
       counted again the same way.
    What reads no event (person keys, answer days, scores, gains and their cubes) stays.
    Returns what was done, for meta `rollups_incremental`.
    """
    version = int(_meta(con, "data_version") or 0)
    if _meta(con, META_VERSION) != str(version - 1) or _meta(con, META_MULTI) is None:
        return None
    if _meta(con, META_FACTS_VERSION) != str(version - 1):
        return None  # facts of an older version or code (no res_person_activities)
    base = _meta(con, META_MONTHS_BASE)
    if base is None:
        return None
    ids = ", ".join(str(int(b)) for b in batches) or "NULL"
    run("appended_events", [
        "DROP TABLE IF EXISTS _rollup_days",
        f"""CREATE TEMP TABLE _rollup_days AS SELECT DISTINCT {day_sql("occurred_at")} AS day
            FROM {EV} WHERE batch_id IN ({ids})""",
        "DROP TABLE IF EXISTS _rollup_who",
        f"""CREATE TEMP TABLE _rollup_who AS SELECT DISTINCT k.pid
            FROM {EV} e JOIN {KEYS} k USING (participant_id) WHERE e.batch_id IN ({ids})""",
    ])
    lo, hi, n_days = con.execute("SELECT min(day), max(day), count(*) FROM _rollup_days"
                                 ).fetchone()
    n_people = con.execute("SELECT count(*) FROM _rollup_who").fetchone()[0]
    if n_days == 0:
        return "no new events"
    months = base != ""
    if months:
        first = dt.date.fromisoformat(base)
        if lo < first or _month_span(first, hi) > MASK_MONTHS:
            return None  # the mask's bit 0 would move, or the span outgrow it: rebuild
        base_sql = f"DATE '{base}'"
    cubes = [*_EVENT_CUBES, *((*_MONTH_CUBES, *_SCORE_MONTH_CUBES) if months else ())]

    def restricted(name: str, table: str) -> list[str]:
        return [f"DROP TABLE IF EXISTS {name}", f"CREATE TEMP TABLE {name} AS SELECT * "
                f"FROM {table} SEMI JOIN _rollup_who USING (pid)"]

    def facts(tag: str) -> _Facts:
        return _Facts(people="_rollup_t_people", days=f"_rollup_{tag}_days",
                      hours=f"_rollup_{tag}_hours", answers="_rollup_t_answers",
                      pairs=f"_rollup_{tag}_pairs", scores="_rollup_t_scores",
                      gains="_rollup_t_gains", pair_months=f"_rollup_{tag}_pm")

    def contributions(tag: str) -> int:
        f = facts(tag)
        stmts = [*restricted(f.days, schema.RES_PERSON_DAYS.name),
                 *restricted(f.hours, HOURS),
                 f"DROP TABLE IF EXISTS {f.pairs}",
                 f"CREATE TEMP TABLE {f.pairs} AS {_pairs_sql(f)}"]
        if months:
            stmts += [f"DROP TABLE IF EXISTS {f.pair_months}",
                      f"CREATE TEMP TABLE {f.pair_months} AS {_pair_months(f, base_sql)}"]
        for t, cube, _ in cubes:
            stmts += [f"DROP TABLE IF EXISTS _rollup_{tag}_{t.name}",
                      f"CREATE TEMP TABLE _rollup_{tag}_{t.name} AS SELECT * FROM "
                      f"({cube(f, base_sql if months else '')}) AS c("
                      + ", ".join(f'"{c}"' for c in t.column_names) + ")"]
        run(f"{tag}_contributions", stmts)
        return con.execute(_multi_sql(f)).fetchone()[0]

    run("touched_people", [
        *restricted("_rollup_t_people", KEYS),
        *restricted("_rollup_t_answers", schema.RES_ANSWER_DAYS.name),
        # scores and gains: read only by the month-mask cubes (19M scored rows at 1M)
        *(s for t, src in (("_rollup_t_scores", schema.RES_PERSON_SCORES.name),
                           ("_rollup_t_gains", schema.RES_PERSON_GAINS.name))
          for s in (restricted(t, src) if months else [])),
    ])
    multi_old = contributions("old")
    in_days = "WHERE day IN (SELECT day FROM _rollup_days)"
    # Every event of a touched day, found by its time range first (a zone-map skip), then its day.
    day_events = (f"(SELECT * FROM {EV} WHERE occurred_at >= TIMESTAMPTZ '{lo} 00:00:00+00' "
                  f"AND occurred_at < TIMESTAMPTZ '{hi + dt.timedelta(days=1)} 00:00:00+00' "
                  f"AND {day_sql('occurred_at')} IN (SELECT day FROM _rollup_days))")
    days_cols = ", ".join(f'"{c}"' for c in schema.RES_PERSON_DAYS.column_names)
    run(schema.RES_PERSON_HOURS.name, [f"DELETE FROM {HOURS} {in_days}", *_hours_sql(day_events)])
    run(schema.RES_PERSON_DAYS.name, [
        f"DELETE FROM {schema.RES_PERSON_DAYS.name} {in_days}",
        f"INSERT INTO {schema.RES_PERSON_DAYS.name} ({days_cols}) {_days_sql(in_days)}"])
    run(ACTIVITIES, [f"DELETE FROM {ACTIVITIES} {in_days}",
                     *duckdb_statements([activities_step(day_events)], insert=True)])
    multi_new = contributions("new")
    if months:
        pm = schema.RES_PAIR_MONTHS.name
        run(pm, [f"DELETE FROM {pm} WHERE pid IN (SELECT pid FROM _rollup_who)",
                 f"INSERT INTO {pm} SELECT * FROM _rollup_new_pm"])
    for t, _, measures in cubes:
        run(t.name, _merge_sql(t, measures, f"_rollup_old_{t.name}", f"_rollup_new_{t.name}"))
    multi = int(_meta(con, META_MULTI)) - multi_old + multi_new
    _set_meta(con, {META_MULTI: str(multi)})
    for name in [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary "
            "AND table_name LIKE '\\_rollup\\_%' ESCAPE '\\'").fetchall()]:
        con.execute(f'DROP TABLE IF EXISTS "{name}"')
    return f"{n_days} day(s) of events, {n_people} participant(s)"


def _merge_sql(t: schema.Table, measures: tuple[str, ...], old: str, new: str) -> list[str]:
    """Statements that make cube `t` = `t` − `old` + `new` (contributions with `t`'s columns),
    summing `measures` per value of the other columns and dropping the rows whose first
    measure (a count) falls to 0."""
    cols = [f'"{c}"' for c in t.column_names]
    keys = [f'"{c}"' for c in t.column_names if c not in measures]
    neg = ", ".join(f'-"{c}"' if c in measures else f'"{c}"' for c in t.column_names)
    sums = ", ".join(f'sum("{m}") AS "{m}"' for m in measures)
    every = ", ".join(cols)
    return [
        "DROP TABLE IF EXISTS _rollup_merged",
        f"""CREATE TEMP TABLE _rollup_merged AS
            SELECT {", ".join(keys)}, {sums} FROM (
                SELECT {every} FROM "{t.name}" UNION ALL SELECT {neg} FROM {old}
                UNION ALL SELECT {every} FROM {new})
            GROUP BY ALL HAVING sum("{measures[0]}") <> 0""",
        f'DELETE FROM "{t.name}"',
        f'INSERT INTO "{t.name}" ({every}) SELECT {every} FROM _rollup_merged',
        "DROP TABLE _rollup_merged",
    ]
