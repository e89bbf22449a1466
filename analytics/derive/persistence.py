"""The persistence tables of a data version (issue 13): partnerships and participants as
durations with censoring, and classroom-to-classroom vs single-class links.

Read here (SQL; the participation log through its day facts res_person_days,
res_person_activities and res_person_keys of `analytics.derive.rollups`, not the event log:
`rollups.current_facts` makes them for the call when the warehouse has none),
computed by `analytics.stats.persistence`, suppressed by `analytics.suppression.suppress`,
stored by `analytics.derive.materialise`:

- res_persistence_curves: Kaplan–Meier curves with 95 % log(−log) bands, per subject and
  grouping.
- res_persistence: per group n, ended, censored, KM median (95 % CI), S(t) at one time point,
  and the log-rank test of the grouping.
- res_persistence_cox: Cox models (Efron ties, baseline hazard per cluster, sandwich errors
  clustered by exchange): the hazard ratio of cross-border vs domestic partnerships adjusted
  for modality; of single-class vs classroom-to-classroom links adjusted for kind and
  modality; of participants' modality and setting.
- res_partnership_links: activity per link kind (active participants per partnership, events
  and minutes per active participant, 95 % t-intervals over partnerships) beside its persistence.

Durations:
- partnership: days from started_on to ended_on; one with no ended_on, or ended after the
  data's end date, is censored at that date (`DATA_END_SQL`: the latest date the data holds).
- participant (per exchange, comparison participants excluded): weeks from the first to the last
  UTC day with an event in that exchange. The participant stopped (an event) when that last
  day falls before the exchange's final week and the exchange ended by the data's end date;
  otherwise (active in the final week, or the exchange still running) it is censored there.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from analytics.derive.fetch import frame
from analytics.derive.rollups import current_facts
from analytics.stats import persistence as ps
from analytics.suppression import suppress
from etl import schema

__all__ = ["DATA_END_SQL", "PARTNERSHIP_AT_DAYS", "PARTICIPANT_AT_WEEKS", "COX_MODELS",
           "partnership_units", "participant_units", "compute"]

_R, _P = schema.RESPONSES.name, schema.PARTNERSHIPS.name
_DAYS, _KEYS = schema.RES_PERSON_DAYS.name, schema.RES_PERSON_KEYS.name


def _utc_day(ts: str) -> str:
    return f"(DATE '1970-01-01' + CAST(floor(epoch({ts}) / 86400) AS INTEGER))"


# The data's end date: the latest day the warehouse knows of (an event, an answer, a
# partnership's start or end), so that censoring is a property of the data version, not of the
# day the dashboard is opened. An event's day is read from res_person_activities, which keeps
# the events of participants no longer on the roster, as the log does.
DATA_END_SQL = f"""(SELECT greatest(
    (SELECT max(day) FROM {schema.RES_PERSON_ACTIVITIES.name}),
    (SELECT max({_utc_day('submitted_at')}) FROM {_R}),
    (SELECT max(started_on) FROM {_P}), (SELECT max(ended_on) FROM {_P})))"""
PARTNERSHIP_AT_DAYS = 365.0
PARTICIPANT_AT_WEEKS = 4.0
KIND_DOMESTIC, KIND_CROSS = "domestic", "cross-border"
COX_MODELS = {
    "partnership_cross_border": "cross-border vs domestic, adjusted for modality; baseline "
                                "hazard per cluster (strata); sandwich errors by exchange",
    "partnership_link": "single-class vs classroom-to-classroom links (partnerships with a "
                        "teacher recorded on both sides), adjusted for kind and modality; "
                        "baseline hazard per cluster; sandwich errors by exchange",
    "participant": "participants' modality and setting; baseline hazard per cluster; sandwich "
                   "errors by exchange",
}


def partnership_units(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per partnership: kind (domestic | cross-border), the exchange's modality, setting
    and cluster, days and ended (censoring as the module says), teachers per side, the link kind,
    active participants of both sides in the exchange, their events and minutes, data_end."""
    t_part, t_inst = schema.PARTICIPANTS.name, schema.INSTITUTIONS.name
    t_ex = schema.EXCHANGES.name
    sql = f"""
        WITH data_end AS (SELECT {DATA_END_SQL} AS d),
        seen AS (SELECT k.participant_id, d.exchange_id
                 FROM (SELECT DISTINCT pid, exchange_id FROM {_DAYS}) d JOIN {_KEYS} k USING (pid)
                 UNION SELECT DISTINCT participant_id, exchange_id FROM {_R}),
        side AS (  -- per institution and exchange: teachers seen, active people, their activity
            SELECT p.institution_id, s.exchange_id,
                   count(DISTINCT s.participant_id) FILTER (WHERE p.role = 'teacher')
                       AS teachers
            FROM seen s JOIN {t_part} p USING (participant_id)
            WHERE NOT coalesce(p.comparison, FALSE) GROUP BY ALL),
        act AS (
            SELECT p.institution_id, d.exchange_id, count(DISTINCT d.pid) AS active,
                   sum(d.events) AS events, coalesce(sum(d.minutes), 0) AS minutes
            FROM {_DAYS} d JOIN {_KEYS} p USING (pid)
            WHERE NOT coalesce(p.comparison, FALSE) GROUP BY ALL)
        SELECT pt.partnership_id, pt.exchange_id,
               CASE WHEN ia.country = ib.country THEN '{KIND_DOMESTIC}'
                    ELSE '{KIND_CROSS}' END AS kind,
               x.modality, x.setting, x.cluster_id AS cluster,
               date_diff('day', pt.started_on,
                         least(coalesce(pt.ended_on, de.d), de.d))::DOUBLE AS days,
               coalesce(pt.ended_on <= de.d, FALSE) AS ended,
               coalesce(sa.teachers, 0)::BIGINT AS teachers_a,
               coalesce(sb.teachers, 0)::BIGINT AS teachers_b,
               (coalesce(aa.active, 0) + coalesce(ab.active, 0))::BIGINT AS active,
               (coalesce(aa.events, 0) + coalesce(ab.events, 0))::BIGINT AS events,
               (coalesce(aa.minutes, 0) + coalesce(ab.minutes, 0))::DOUBLE AS minutes,
               de.d AS data_end
        FROM {_P} pt CROSS JOIN data_end de
        JOIN {t_ex} x USING (exchange_id)
        JOIN {t_inst} ia ON ia.institution_id = pt.institution_a
        JOIN {t_inst} ib ON ib.institution_id = pt.institution_b
        LEFT JOIN side sa ON sa.institution_id = pt.institution_a
                         AND sa.exchange_id = pt.exchange_id
        LEFT JOIN side sb ON sb.institution_id = pt.institution_b
                         AND sb.exchange_id = pt.exchange_id
        LEFT JOIN act aa ON aa.institution_id = pt.institution_a
                        AND aa.exchange_id = pt.exchange_id
        LEFT JOIN act ab ON ab.institution_id = pt.institution_b
                        AND ab.exchange_id = pt.exchange_id
        WHERE pt.started_on <= de.d
        ORDER BY pt.partnership_id
    """
    with current_facts(con):
        d = con.execute(sql).df()
    d["link"] = ps.link_kind(d["teachers_a"], d["teachers_b"])
    return d


def participant_units(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per participant × exchange with events (comparison participants excluded):
    weeks from first to last active UTC day, stopped (see the module), the exchange's modality,
    setting and cluster, and the exchange id (the cluster of the robust errors)."""
    t_ex = schema.EXCHANGES.name
    sql = f"""
        WITH data_end AS (SELECT {DATA_END_SQL} AS d),
        span AS (
            SELECT pid, exchange_id, min(day) AS first_day, max(day) AS last_day
            FROM {_DAYS} GROUP BY ALL)
        SELECT s.exchange_id, x.modality, x.setting, x.cluster_id AS cluster,
               date_diff('day', s.first_day, s.last_day) / 7.0 AS weeks,
               (x.end_date <= de.d AND s.last_day < x.end_date - 6) AS stopped
        FROM span s CROSS JOIN data_end de
        JOIN {_KEYS} p USING (pid)
        JOIN {t_ex} x ON x.exchange_id = s.exchange_id
        WHERE NOT coalesce(p.comparison, FALSE)
        ORDER BY s.exchange_id, s.pid  -- the Cox fit sums in row order: the same bits each run
    """
    with current_facts(con):
        return frame(con, sql)


_CURVE_COLS = ["subject", "group_by", "group", "unit", "n", "time", "survival", "ci_low",
               "ci_high", "at_risk", "ended"]
_SUMMARY_COLS = ["subject", "group_by", "group", "unit", "n", "ended", "censored", "median",
                 "median_ci_low", "median_ci_high", "at_time", "survival_at",
                 "survival_at_ci_low", "survival_at_ci_high", "logrank_chi2", "logrank_df",
                 "logrank_p", "data_end"]
# "ended" rather than survival's "events": this product's events are the participation log.
_COX_COLS = ["subject", "model", *(c if c != "events" else "ended" for c in ps.COX_COLUMNS)]


def _survival_tables(units: pd.DataFrame, *, subject: str, unit: str, duration: str,
                     event: str, groupings: list[str], at: float
                     ) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    curves, summaries = [], []
    for by in ["overall", *groupings]:
        group = None if by == "overall" else by
        d = units if group is None else units[units[group].notna()]
        c = ps.km_curves(d, duration=duration, event=event, group=group)
        curves.append(c.assign(subject=subject, group_by=by, unit=unit))
        s = ps.km_summary(d, duration=duration, event=event, group=group, at=at)
        lr = (ps.logrank(d, duration=duration, event=event, group=group) if group
              else {"chi2": np.nan, "df": np.nan, "p": np.nan})
        if by == "link":  # the unknown links are shown, not tested: their kind is not known
            known = d[d[group] != ps.LINK_UNKNOWN]
            lr = ps.logrank(known, duration=duration, event=event, group=group)
        summaries.append(s.assign(subject=subject, group_by=by, unit=unit,
                                  logrank_chi2=lr["chi2"], logrank_df=lr["df"],
                                  logrank_p=lr["p"]))
    return curves, summaries


def _cox_rows(units: pd.DataFrame, model: str, subject: str, duration: str, event: str,
              terms: list[str], reference: dict[str, str]) -> pd.DataFrame:
    fit = ps.cox(units, duration=duration, event=event, terms=terms, reference=reference,
                 strata="cluster", cluster="exchange_id")
    return fit.assign(subject=subject, model=model)


def _link_activity(units: pd.DataFrame, k: int) -> pd.DataFrame:
    """res_partnership_links: per link kind, activity means over partnerships with 95 %
    t-intervals beside the KM median duration (95 % CI)."""
    from analytics.stats.means import t_interval

    u = units.assign(events_per_active=units["events"] / units["active"].where(units["active"] > 0),
                     minutes_per_active=units["minutes"] / units["active"].where(
                         units["active"] > 0))
    med = ps.km_summary(u, duration="days", event="ended", group="link").set_index("group")
    rows = []
    for link, d in u.groupby("link", sort=True):
        row: dict[str, object] = {"link": link, "n": len(d),
                                  "n_participants": int(d["active"].sum()),
                                  "teachers_median": float(np.median(
                                      np.minimum(d["teachers_a"], d["teachers_b"])))}
        for col, name in (("active", "active_per_partnership"),
                          ("events_per_active", "events_per_active"),
                          ("minutes_per_active", "minutes_per_active")):
            v = d[col].dropna().astype(float)
            ci = t_interval(pd.DataFrame({"mean": [v.mean() if len(v) else np.nan],
                                          "sd": [v.std(ddof=1) if len(v) > 1 else np.nan],
                                          "n": [len(v)]}))
            row[name] = float(ci["mean"].iloc[0])
            row[f"{name}_ci_low"] = float(ci["ci_low"].iloc[0])
            row[f"{name}_ci_high"] = float(ci["ci_high"].iloc[0])
        row["ended"] = int(d["ended"].sum())
        for c in ("median", "median_ci_low", "median_ci_high"):
            row[c.replace("median", "median_days")] = float(med.at[str(link), c])
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=schema.RES_PARTNERSHIP_LINKS.column_names)
    out = pd.DataFrame(rows)
    out["definition"] = ps.LINK_DEFINITION
    # A link kind rests on its partnerships and on the people active in them: the smaller count
    # decides whether it is shown.
    out["_cell"] = np.minimum(out["n"], out["n_participants"])
    return suppress(out, n="_cell", k=k).drop(columns="_cell")


def compute(con: duckdb.DuckDBPyConnection, k: int) -> dict[str, pd.DataFrame]:
    """The four persistence tables (export names as keys), suppressed at `k`."""
    pu = partnership_units(con)
    qu = participant_units(con)
    data_end = pu["data_end"].iloc[0] if len(pu) else pd.NaT
    curves, summaries = _survival_tables(pu, subject="partnership", unit="days",
                                         duration="days", event="ended",
                                         groupings=["kind", "modality", "cluster", "link"],
                                         at=PARTNERSHIP_AT_DAYS)
    c2, s2 = _survival_tables(qu, subject="participant", unit="weeks", duration="weeks",
                              event="stopped", groupings=["modality", "setting"],
                              at=PARTICIPANT_AT_WEEKS)
    curves += c2
    summaries += s2
    cox_parts = [
        _cox_rows(pu, "partnership_cross_border", "partnership", "days", "ended",
                  ["kind", "modality"], {"kind": KIND_DOMESTIC}),
        _cox_rows(pu[pu["link"] != ps.LINK_UNKNOWN], "partnership_link", "partnership", "days",
                  "ended", ["link", "kind", "modality"],
                  {"link": ps.LINK_SEVERAL, "kind": KIND_DOMESTIC}),
        _cox_rows(qu, "participant", "participant", "weeks", "stopped",
                  ["modality", "setting"], {}),
    ]
    curve = pd.concat(curves, ignore_index=True)[_CURVE_COLS]
    summary = (pd.concat(summaries, ignore_index=True).rename(columns={"events": "ended"})
               .assign(data_end=data_end)[_SUMMARY_COLS])
    cox = pd.concat(cox_parts, ignore_index=True).rename(columns={"events": "ended"})[_COX_COLS]
    cox["_cell"] = np.minimum(cox["n_level"], cox["n_reference"])
    return {
        "persistence_curves": suppress(curve, n="n", k=k, keep=["time"]),
        "persistence": suppress(summary, n="n", k=k, keep=["at_time"]),
        "persistence_cox": suppress(cox, n="_cell", k=k).drop(columns="_cell"),
        "partnership_links": _link_activity(pu, k),
    }
