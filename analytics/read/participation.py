"""The Participation page's queries: the local-time heatmap, retention by cohort and the
breakdown tables (its weekly series is `overview.activity_over_time`).

Each public query reads the rollups when `sql.use_rollups` says they answer the filters exactly,
else the day facts (`_…_days`)."""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from analytics.read import sql
from analytics.read.cache import cached
from analytics.read.filters import Filters
from analytics.read.sql import Scope
from etl import schema

__all__ = ["activity_heatmap", "retention_by_cohort", "breakdown", "BREAKDOWN_KEYS",
           "scheduling", "scheduling_model"]


def _activity_heatmap_days(cur: duckdb.DuckDBPyConnection, f: Filters,
                           scope: Scope = sql.scope) -> pd.DataFrame:
    ctes, p = scope(f, hours=True, months=sql.months_base(cur))
    df = sql.df(cur, f"""WITH {ctes}
        SELECT weekday, hour, sum(events) AS events, count(DISTINCT pid) AS n
        FROM fh GROUP BY ALL ORDER BY weekday, hour
    """, p)
    return sql.suppress(df, "n", keep=["weekday", "hour"])


def _activity_heatmap_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    dims, p = sql.dims(f)
    df = sql.rdf(cur, f"""WITH {dims}
        SELECT CAST(weekday AS BIGINT) AS weekday, CAST(hour AS BIGINT) AS hour,
               CAST(sum(events) AS BIGINT) AS events, CAST(sum(n) AS BIGINT) AS n
        FROM ({sql.cells(sql.R_HOURLY, f, p)}) GROUP BY ALL ORDER BY weekday, hour
    """, p)
    return sql.suppress(df, "n", keep=["weekday", "hour"])


@cached
def activity_heatmap(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Events by local weekday × hour, each event in its institution's IANA time zone
    (ISO weekday 1 = Monday), with distinct participants per cell. A cell with fewer than
    MIN_CELL participants is suppressed (its events and n blanked; weekday and hour stay)."""
    if sql.use_rollups(cur, f):
        return _activity_heatmap_rollup(cur, f)
    return _activity_heatmap_days(cur, f)


def _retention_finish(df: pd.DataFrame, hidden: set[Any] = frozenset()) -> pd.DataFrame:
    """Cohorts under MIN_CELL suppressed whole; in a shown cohort, a week with fewer than
    MIN_CELL active pairs shows no count and no share (flag `week_suppressed`). The
    differencing rule's `hidden` cells (`disclosure.isolating_retention`: (term, week) or
    (term, 'n')) are blanked the same way: a cohort's size hides the cohort, a week the week."""
    return sql.suppress_subset(
        sql.suppress(df, "n", keep=["week"], hide=[(str(c), "n") in hidden for c in df.cohort]),
        "active", ["share"], flag="week_suppressed",
        hide=[(str(c), str(w)) in hidden for c, w in zip(df.cohort, df.week, strict=True)])


def _retention_by_cohort_days(cur: duckdb.DuckDBPyConnection, f: Filters, max_weeks: int = 16,
                              scope: Scope = sql.scope, hidden: set[Any] = frozenset()
                              ) -> pd.DataFrame:
    ctes, p = scope(f, months=sql.months_base(cur))
    p["maxw"] = max_weeks
    # Weeks count from the pair's first active day over all its days (CTE ffirst), so that a
    # date range selects weeks and never renumbers them (without one, the pairs' first days in
    # scope are those days: exchange and person filters keep or drop a pair whole). The cohort
    # is the pairs with events in the range.
    df = sql.df(cur, f"""WITH {ctes},
        pairs AS (SELECT DISTINCT pid, exchange_id, term FROM fe),
        wk AS (SELECT DISTINCT fe.pid, fe.exchange_id, fe.term,
                      CAST((fe.day - ffirst.d0) // 7 AS INTEGER) AS week
               FROM fe JOIN ffirst USING (pid, exchange_id)),
        sizes AS (SELECT term, count(*) AS n FROM pairs GROUP BY term)
        SELECT wk.term AS cohort, wk.week, count(*) AS active, sizes.n
        FROM wk JOIN sizes USING (term) WHERE wk.week <= $maxw
        GROUP BY ALL ORDER BY cohort, week
    """, p)
    df["share"] = df.active / df.n
    return _retention_finish(df, hidden)


def _retention_by_cohort_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, max_weeks: int = 16,
                                hidden: set[Any] = frozenset()) -> pd.DataFrame:
    dims, p = sql.dims(f)
    p["maxw"] = max_weeks
    df = sql.rdf(cur, f"""WITH {dims},
        r AS (SELECT term, week, CAST(sum(active) AS BIGINT) AS active
              FROM ({sql.cells(sql.R_RETENTION, f, p)}) GROUP BY ALL),
        sizes AS (SELECT term, active AS n FROM r WHERE week = 0)
        SELECT r.term AS cohort, r.week, r.active, sizes.n
        FROM r JOIN sizes USING (term) WHERE r.week <= $maxw ORDER BY cohort, week
    """, p)
    df["share"] = df.active / df.n
    return _retention_finish(df, hidden)


@cached
def retention_by_cohort(cur: duckdb.DuckDBPyConnection, f: Filters, max_weeks: int = 16
                        ) -> pd.DataFrame:
    """Share of each cohort (term of the exchange) active in week k after their first active day
    in that exchange (participant×exchange pairs; k = whole days since that day // 7, so week 0
    is that day and the six after it). With a date range, the cohort is the pairs active in it
    and their weeks still count from their first day ever (a range selects weeks). Cohorts
    under MIN_CELL are suppressed; a week with fewer than MIN_CELL active pairs has no active
    and no share (`week_suppressed`). Per pair, so the rollup is exact even with participants
    in two exchanges (`distinct=False`). A cohort or week whose pairs one filter value would
    change by fewer than k is hidden too (`disclosure.isolating_retention`)."""
    from analytics.read import disclosure

    rows = disclosure.isolating_retention(cur, f)
    hidden = set(rows.cell)
    if sql.use_rollups(cur, f, distinct=False):
        out = _retention_by_cohort_rollup(cur, f, max_weeks, hidden)
    else:
        out = _retention_by_cohort_days(cur, f, max_weeks, hidden=hidden)
    return disclosure.explain(out, rows, [(str(c), str(w)) for c, w in zip(
        out.cohort, out.week, strict=True)] + [(str(c), "n") for c in out.cohort])


BREAKDOWN_KEYS = {"cluster": ("cluster_id", "coalesce(cluster_name, cluster_id)"),
                  "country": ("country", "country"), "exchange": ("exchange_id", "exchange_name")}


def _breakdown_finish(df: pd.DataFrame, hidden: set | frozenset = frozenset()) -> pd.DataFrame:
    """Minutes per active participant; groups under MIN_CELL participants suppressed whole;
    fewer than MIN_CELL active in a shown group blanks the active count and everything summed
    over those people (events, minutes, exchanges with activity, minutes per active)."""
    df["minutes_per_active"] = df.minutes / df.active.where(df.active > 0)
    # Per cluster and per country the groups add up to the headline's participants: secondary
    # suppression keeps a lone small group from being that total minus the others.
    hide = df.key.isin(hidden).to_numpy(bool) if hidden else None
    return sql.suppress_subset(sql.suppress(df, "participants", dims=["key"], hide=hide), "active",
                               ["events", "minutes", "exchanges", "minutes_per_active"])


def _breakdown_days(cur: duckdb.DuckDBPyConnection, f: Filters, by: str,
                    scope: Scope = sql.scope, hidden: set | frozenset = frozenset()
                    ) -> pd.DataFrame:
    ctes, p = scope(f, months=sql.months_base(cur))
    key, label = BREAKDOWN_KEYS[by]
    if by == "exchange":
        return _breakdown_finish(sql.df(cur, f"""WITH {ctes}
            SELECT {key} AS key, {label} AS "group", count(DISTINCT pid) AS participants,
                   count(DISTINCT pid) AS active, sum(events) AS events,
                   sum(minutes) AS minutes, 1 AS exchanges
            FROM fe GROUP BY ALL ORDER BY participants DESC
        """, p), hidden)
    return _breakdown_finish(sql.df(cur, f"""WITH {ctes},
        ppl AS (SELECT {key} AS key, {label} AS grp, count(*) AS participants
                FROM fp GROUP BY ALL),
        act AS (SELECT {key} AS key, count(DISTINCT pid) AS active,
                       sum(events) AS events, sum(minutes) AS minutes,
                       count(DISTINCT exchange_id) AS exchanges FROM fe GROUP BY ALL)
        SELECT key, grp AS "group", participants, coalesce(active, 0) AS active,
               coalesce(events, 0) AS events, coalesce(minutes, 0) AS minutes,
               coalesce(exchanges, 0) AS exchanges
        FROM ppl LEFT JOIN act USING (key) ORDER BY participants DESC
    """, p), hidden)


def _breakdown_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str,
                      hidden: set | frozenset = frozenset()) -> pd.DataFrame:
    dims, p = sql.dims(f)
    key, label = BREAKDOWN_KEYS[by]
    if by == "exchange":
        # Week 0 of the retention rollup holds every participant×exchange pair with events:
        # the distinct participants of each exchange.
        return _breakdown_finish(sql.rdf(cur, f"""WITH {dims},
            ppl AS (SELECT {key} AS key, {label} AS grp, CAST(sum(active) AS BIGINT) AS n
                    FROM ({sql.cells(sql.R_RETENTION, f, p)}) WHERE week = 0 GROUP BY ALL),
            act AS (SELECT {key} AS key, CAST(sum(events) AS BIGINT) AS events,
                           sum(minutes) AS minutes
                    FROM ({sql.cells(sql.R_WEEKLY, f, p)}) GROUP BY ALL)
            SELECT key, grp AS "group", n AS participants, n AS active, events, minutes,
                   1 AS exchanges
            FROM ppl JOIN act USING (key) ORDER BY participants DESC
        """, p), hidden)
    return _breakdown_finish(sql.rdf(cur, f"""WITH {dims},
        ppl AS (SELECT {key} AS key, {label} AS grp, CAST(sum(n) AS BIGINT) AS participants,
                       CAST(sum(active) AS BIGINT) AS active
                FROM ({sql.cells(sql.R_PEOPLE, f, p, people=True)}) GROUP BY ALL),
        act AS (SELECT {key} AS key, CAST(sum(events) AS BIGINT) AS events,
                       sum(minutes) AS minutes,
                       count(DISTINCT exchange_id) AS exchanges
                FROM ({sql.cells(sql.R_WEEKLY, f, p)}) GROUP BY ALL)
        SELECT key, grp AS "group", participants, coalesce(active, 0) AS active,
               coalesce(events, 0) AS events, coalesce(minutes, 0) AS minutes,
               coalesce(exchanges, 0) AS exchanges
        FROM ppl LEFT JOIN act USING (key) ORDER BY participants DESC
    """, p), hidden)


@cached
def breakdown(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Per cluster/country/exchange: participants, active participants, events, minutes.
    `key` is the filter value of the group (cluster_id, country, exchange_id). Per exchange,
    the counts are per participant×exchange pair, exact in the rollups either way."""
    if by not in BREAKDOWN_KEYS:
        raise ValueError(f"cannot break down by {by!r}; choose one of {sorted(BREAKDOWN_KEYS)}")
    # Countries and clusters that one filter value would change by fewer than k participants
    # are hidden too (`disclosure.isolating`), with their complements.
    from analytics.read import disclosure

    # Per exchange, the exchanges whose active people it would change so (their minutes per
    # active person would give those people's minutes).
    rows = (disclosure.isolating(cur, f, by) if by != "exchange"
            else disclosure.isolating_exchange_activity(cur, f))
    hidden = set(rows.cell)
    if sql.use_rollups(cur, f, distinct=by != "exchange"):
        out = _breakdown_rollup(cur, f, by, hidden)
    else:
        out = _breakdown_days(cur, f, by, hidden=hidden)
    return disclosure.explain(out, rows, [str(k) for k in out.key])


# Issue 13: scheduling friction, precomputed per data version (res_scheduling,
# res_scheduling_model) for every partnership of the program: the filters do not apply.

@cached
def scheduling(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """res_scheduling, one row per partnership, least overlap first: overlap hours per school
    day, zero-overlap days, joint share; a partnership under today's k is suppressed (its
    overlap stays: it describes two time zones, not people)."""
    return sql.stored_result(cur, schema.RES_SCHEDULING, ["n_participants"],
                             "ORDER BY overlap_hours_per_day NULLS LAST, partnership_id",
                             keep=["school_days", "overlap_hours_per_day",
                                   "zero_overlap_days", "zero_overlap"])


@cached
def scheduling_model(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """res_scheduling_model: the slope of the joint share on overlap hours with its CR2 CI."""
    return sql.stored_result(cur, schema.RES_SCHEDULING_MODEL, ["n_partnerships"],
                             keep=["n_partnerships", "n_clusters"])
