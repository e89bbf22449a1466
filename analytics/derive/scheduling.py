"""The scheduling-friction tables of a data version (issue 13).

Read here (SQL: partnerships with both institutions' IANA zones and their exchange's dates and
modality; events of exchange participants, comparison participants excluded, counted per
exchange × institution × activity from the day facts res_person_activities and res_person_keys
of `analytics.derive.rollups`, not the event log), computed by `analytics.stats.scheduling`,
stored by `analytics.derive.materialise`:

- res_scheduling: per partnership, school-hours overlap per school day, zero-overlap days, the
  joint (synchronous) share of events; suppressed under k active participants.
- res_scheduling_model: the OLS slope of the joint share on overlap, CR2 by exchange.

The settings in force (school hours and days, synchronous activities) are read once per call
(`configured_school_hours`, `configured_sync_activities`) and stored in both tables.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from analytics.derive.rollups import current_facts
from analytics.stats import scheduling as sch
from etl import schema

__all__ = ["inputs", "compute"]


def inputs(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(partnerships with tz_a, tz_b, start_date, end_date, modality; activity per exchange ×
    institution × activity, and one row per side with activity NULL holding its distinct active
    participants) — the inputs of `analytics.stats.scheduling.scheduling`. Reads the day facts
    of this data version (`analytics.derive.rollups.current_facts`: made for the call when the
    warehouse has none)."""
    t_p, t_i, t_x = schema.PARTNERSHIPS.name, schema.INSTITUTIONS.name, schema.EXCHANGES.name
    t_a, t_k = schema.RES_PERSON_ACTIVITIES.name, schema.RES_PERSON_KEYS.name
    pairs = con.execute(f"""
        SELECT pt.partnership_id, pt.exchange_id, x.modality, pt.institution_a,
               pt.institution_b, ia.timezone AS tz_a, ib.timezone AS tz_b,
               x.start_date, x.end_date
        FROM {t_p} pt JOIN {t_x} x USING (exchange_id)
        JOIN {t_i} ia ON ia.institution_id = pt.institution_a
        JOIN {t_i} ib ON ib.institution_id = pt.institution_b
        ORDER BY pt.partnership_id
    """).df()
    sql = f"""
        WITH sides AS (SELECT exchange_id, institution_a AS institution_id FROM {t_p}
                       UNION SELECT exchange_id, institution_b FROM {t_p}),
        ev AS (SELECT a.exchange_id, p.institution_id, a.activity, a.pid, a.events,
                      a.minutes
               FROM {t_a} a JOIN {t_k} p USING (pid)
               SEMI JOIN sides s ON s.exchange_id = a.exchange_id
                                AND s.institution_id = p.institution_id
               WHERE NOT coalesce(p.comparison, FALSE))
        SELECT exchange_id, institution_id, activity,
               count(DISTINCT pid)::BIGINT AS participants,
               sum(events)::BIGINT AS events, coalesce(sum(minutes), 0)::DOUBLE AS minutes
        FROM ev GROUP BY GROUPING SETS ((exchange_id, institution_id, activity),
                                        (exchange_id, institution_id))
    """
    with current_facts(con):
        act = con.execute(sql).df()
    return pairs, act


def compute(con: duckdb.DuckDBPyConnection, k: int) -> dict[str, pd.DataFrame]:
    """{"scheduling": res_scheduling rows, "scheduling_model": res_scheduling_model rows}."""
    hours = sch.configured_school_hours()
    sync = sch.configured_sync_activities()
    pairs, act = inputs(con)
    table = sch.scheduling(pairs, act, hours=hours, sync=sync, k=k)
    return {"scheduling": table, "scheduling_model": sch.scheduling_model(table, k=k)}
