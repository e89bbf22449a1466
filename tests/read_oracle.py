"""The test oracle of the read layer: every dashboard figure computed from the raw event log,
the survey answers and res_scale_scores, for the derived tables (rollups and day facts) to be
checked against.

The read layer (analytics.read) reads only the derived tables. Its day-facts queries are written
over the scope CTEs (fp, fe, fr, fh, fs, fg) of `analytics.read.sql.scope`; `event_scope` builds
the same CTEs straight from the base tables (one row per event, `events` = 1; the local hour of
each event by DuckDB's `timezone(zone, timestamptz)`), so `figure(name, …)` is the figure as
the event log gives it. `days(name, …)` and `rollup(name, …)` are the two grains the read layer
picks between (`analytics.read.sql.use_rollups`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb

from analytics.derive.rollups import day_sql
from analytics.read import equity, outcomes, overview, participation, sql
from analytics.read.filters import Filters
from etl import schema

EVENTS = schema.EVENTS.name
RESPONSES = schema.RESPONSES.name
PEOPLE = schema.PARTICIPANTS.name
SCORES = schema.RES_SCALE_SCORES.name

_MODULES = {
    "headline": overview, "completion_by_wave": overview, "participants_by_country": overview,
    "activity_over_time": overview, "activity_heatmap": participation,
    "retention_by_cohort": participation, "breakdown": participation,
    "wave_means": outcomes, "comparison_difference": outcomes, "gains_by_group": equity,
    "participation_by_group": equity, "attrition_funnel": equity, "dropout_by_group": equity,
}


def event_scope(f: Filters, *, include_comparison: bool = False, scores: bool = False,
                hours: bool = False, months: date | None = None) -> tuple[str, dict[str, Any]]:
    """`analytics.read.sql.scope`'s CTEs from the event log, the answers and the scores: a date
    range keeps the events whose timestamp lies in its UTC days. `months` (the stored masks'
    base) is not read: the oracle finds people on their events and answers."""
    ts_cond = ""
    if f.start is not None:
        ts_cond += " AND {ts} >= timezone('UTC', $start::TIMESTAMP)"
    if f.end is not None:
        ts_cond += " AND {ts} < timezone('UTC', ($end + INTERVAL 1 DAY)::TIMESTAMP)"
    parts = {
        "fev": f"""SELECT ev.participant_id, ev.exchange_id, {day_sql("ev.occurred_at")} AS day,
                   1 AS events, coalesce(ev.minutes, 0) AS minutes, ev.occurred_at
            FROM {EVENTS} ev JOIN fx USING (exchange_id)
            WHERE TRUE{ts_cond.format(ts='ev.occurred_at')}""",
        "active": "SELECT participant_id FROM fev",
        "answered": (f"SELECT participant_id FROM {RESPONSES} r JOIN fx USING (exchange_id) "
                     f"WHERE TRUE{ts_cond.format(ts='r.submitted_at')}"),
        "people": f"(SELECT participant_id AS pid, * FROM {PEOPLE}) p",
        "fe_people": ("fp.pid, ev.* EXCLUDE (participant_id) FROM fev ev "
                      "JOIN fp ON fp.participant_id = ev.participant_id"),
        "fr": f"""SELECT DISTINCT r.participant_id AS pid, r.exchange_id, r.wave
            FROM {RESPONSES} r JOIN fx USING (exchange_id)""",
        "ffirst": f"""SELECT ev.participant_id AS pid, ev.exchange_id,
                   min({day_sql("ev.occurred_at")}) AS d0
            FROM {EVENTS} ev JOIN fx USING (exchange_id) GROUP BY ALL""",
        "fh": """SELECT pid, isodow(t) AS weekday, hour(t) AS hour, 1 AS events
            FROM (SELECT pid, timezone(timezone, occurred_at) AS t FROM fe)""",
        "fs": f"""SELECT s.participant AS pid, s.exchange_id, s.instrument, s.scale, s.wave,
                  s.score
           FROM {SCORES} s JOIN fx USING (exchange_id) WHERE s.score IS NOT NULL""",
        "fg": """SELECT pid, exchange_id, instrument, scale, post - pre AS gain, pre, post
           FROM (
               SELECT pid, exchange_id, instrument, scale,
                      max(score) FILTER (WHERE wave = 'pre') AS pre,
                      max(score) FILTER (WHERE wave = 'post') AS post
               FROM fs WHERE wave IN ('pre', 'post') AND pid IN (SELECT pid FROM fp)
               GROUP BY ALL)
           WHERE pre IS NOT NULL AND post IS NOT NULL""",
    }
    return sql.assemble_scope(f, parts, include_comparison=include_comparison, scores=scores,
                              hours=hours)


def figure(name: str, cur: duckdb.DuckDBPyConnection, f: Filters, *args: Any) -> Any:
    """Figure `name` (a public query of analytics.read) as the event log gives it."""
    return getattr(_MODULES[name], f"_{name}_days")(cur, f, *args, scope=event_scope)


def days(name: str, cur: duckdb.DuckDBPyConnection, f: Filters, *args: Any) -> Any:
    """Figure `name` read from the day facts (what a date range reads)."""
    return getattr(_MODULES[name], f"_{name}_days")(cur, f, *args)


def rollup(name: str, cur: duckdb.DuckDBPyConnection, f: Filters, *args: Any) -> Any:
    """Figure `name` read from the rollups (what an undated view reads)."""
    return getattr(_MODULES[name], f"_{name}_rollup")(cur, f, *args)
