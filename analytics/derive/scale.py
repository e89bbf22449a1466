"""The scale-up vs scale-in table of a data version (issue 13): `res_scale`.

Read here (SQL: one row per participant × cluster × term with events, minutes and distinct
active weeks, from the day facts res_person_days and res_person_keys of
`analytics.derive.rollups`, not the event log), computed by
`analytics.stats.scale.scale_terms`, suppressed by `analytics.suppression.suppress` (a cluster ×
term with fewer than k participants reached keeps its row with blank numbers; a quadrant built
on a suppressed previous term is blanked too), stored by `analytics.derive.materialise`.

The cluster is the exchange's (the cluster that runs it); the term is the calendar half-year of
the exchange's start_date; comparison participants are left out; weeks are ISO weeks (Monday
start) of the UTC instant of each event, i.e. of its UTC day, which lies in the same week. The
data's last term is the latest term of any exchange's start_date, so its "institutions
returning next term" is missing (no next term).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from analytics.derive.fetch import frame
from analytics.derive.rollups import current_facts
from analytics.stats import scale as sc
from analytics.suppression import suppress
from etl import schema

__all__ = ["units", "compute"]


def units(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, str | None]:
    """Participant × cluster × term rows (exchange participants with at least one event) and
    the data's last term. Reads the day facts of this data version
    (`analytics.derive.rollups.current_facts`: made for the call when the warehouse has none)."""
    term = ("(CAST(year(x.start_date) AS VARCHAR) || CASE WHEN month(x.start_date) <= 6 "
            "THEN '-H1' ELSE '-H2' END)")
    sql = f"""
        SELECT x.cluster_id AS cluster, {term} AS term, p.participant_id AS participant,
               any_value(p.institution_id) AS institution, any_value(i.country) AS country,
               sum(d.events)::BIGINT AS events, coalesce(sum(d.minutes), 0)::DOUBLE AS minutes,
               count(DISTINCT date_trunc('week', d.day)) AS weeks
        FROM {schema.RES_PERSON_DAYS.name} d
        JOIN {schema.EXCHANGES.name} x USING (exchange_id)
        JOIN {schema.RES_PERSON_KEYS.name} p USING (pid)
        LEFT JOIN {schema.INSTITUTIONS.name} i ON i.institution_id = p.institution_id
        WHERE NOT coalesce(p.comparison, FALSE)
        GROUP BY 1, 2, 3
    """
    with current_facts(con):
        df = frame(con, sql)
    last = con.execute(f"""
        SELECT max(CAST(year(start_date) AS VARCHAR) || CASE WHEN month(start_date) <= 6
                   THEN '-H1' ELSE '-H2' END) FROM {schema.EXCHANGES.name}
    """).fetchall()[0][0]
    return df, last


def compute(con: duckdb.DuckDBPyConnection, k: int,
            dose: tuple[int, float] | None = None) -> dict[str, pd.DataFrame]:
    """{"scale": res_scale rows} with the small-cell rule at `k` and the meaningful dose
    `dose` (default: `analytics.stats.scale.configured_dose()`)."""
    u, last = units(con)
    out = sc.scale_terms(u, last_term=last, dose=dose or sc.configured_dose())
    if out.empty:
        return {"scale": out.assign(suppressed=pd.Series(dtype="string"))}
    # the previous term's count decides whether the term-on-term change may be shown
    prev_small = out["participants_previous"].notna() & (out["participants_previous"] < k)
    keep = ["dose_sessions", "dose_minutes", "sustained_weeks"]
    out = suppress(out, n="participants", k=k, keep=keep)
    change = ["participants_previous", "breadth_change_pct", "depth_change",
              "depth_change_ci_low", "depth_change_ci_high"]
    out.loc[prev_small.to_numpy(bool), change] = np.nan
    out.loc[prev_small.to_numpy(bool) | out["suppressed"].astype(bool).to_numpy(), "quadrant"] = (
        None)
    return {"scale": out}
