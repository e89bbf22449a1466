"""The scheduling-friction tables of a data version (issue 13).

Read here (SQL: partnerships with both institutions' IANA zones and their exchange's dates and
modality; events of exchange participants, comparison participants excluded, counted per
exchange × institution × activity), computed by `analytics.stats.scheduling`, stored by
`analytics.derive.materialise`:

- res_scheduling: per partnership, school-hours overlap per school day, zero-overlap days, the
  joint (synchronous) share of events; suppressed under k active participants.
- res_scheduling_model: the OLS slope of the joint share on overlap, CR2 by exchange.

The settings in force (school hours and days, synchronous activities) are read once per call
(`configured_school_hours`, `configured_sync_activities`) and stored in both tables.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from analytics.stats import scheduling as sch
from etl import schema

__all__ = ["inputs", "compute"]


def inputs(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(partnerships with tz_a, tz_b, start_date, end_date, modality; activity per exchange ×
    institution × activity, and one row per side with activity NULL holding its distinct active
    participants) — the inputs of `analytics.stats.scheduling.scheduling`."""
    t_p, t_i, t_x = schema.PARTNERSHIPS.name, schema.INSTITUTIONS.name, schema.EXCHANGES.name
    t_e, t_part = schema.EVENTS.name, schema.PARTICIPANTS.name
    pairs = con.execute(f"""
        SELECT pt.partnership_id, pt.exchange_id, x.modality, pt.institution_a,
               pt.institution_b, ia.timezone AS tz_a, ib.timezone AS tz_b,
               x.start_date, x.end_date
        FROM {t_p} pt JOIN {t_x} x USING (exchange_id)
        JOIN {t_i} ia ON ia.institution_id = pt.institution_a
        JOIN {t_i} ib ON ib.institution_id = pt.institution_b
        ORDER BY pt.partnership_id
    """).df()
    act = con.execute(f"""
        WITH sides AS (SELECT exchange_id, institution_a AS institution_id FROM {t_p}
                       UNION SELECT exchange_id, institution_b FROM {t_p}),
        ev AS (SELECT e.exchange_id, p.institution_id, e.activity, e.participant_id,
                      e.minutes
               FROM {t_e} e JOIN {t_part} p USING (participant_id)
               SEMI JOIN sides s ON s.exchange_id = e.exchange_id
                                AND s.institution_id = p.institution_id
               WHERE NOT coalesce(p.comparison, FALSE))
        SELECT exchange_id, institution_id, activity,
               count(DISTINCT participant_id)::BIGINT AS participants,
               count(*)::BIGINT AS events, coalesce(sum(minutes), 0)::DOUBLE AS minutes
        FROM ev GROUP BY GROUPING SETS ((exchange_id, institution_id, activity),
                                        (exchange_id, institution_id))
    """).df()
    return pairs, act


def compute(con: duckdb.DuckDBPyConnection, k: int) -> dict[str, pd.DataFrame]:
    """{"scheduling": res_scheduling rows, "scheduling_model": res_scheduling_model rows}."""
    hours = sch.configured_school_hours()
    sync = sch.configured_sync_activities()
    pairs, act = inputs(con)
    table = sch.scheduling(pairs, act, hours=hours, sync=sync, k=k)
    return {"scheduling": table, "scheduling_model": sch.scheduling_model(table, k=k)}
