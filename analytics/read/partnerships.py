"""The Partnerships page's queries: the network of partnerships touching the institutions in
scope, their Kaplan–Meier persistence and a summary per kind (domestic, cross-border). They
read the partnerships and institutions (small dimension tables), not the activity."""

from __future__ import annotations

import duckdb
import pandas as pd

from analytics.read import sql
from analytics.read.cache import cached
from analytics.read.filters import Filters
from analytics.stats.survival import kaplan_meier, km_median
from etl import schema

__all__ = ["partnership_network", "partnership_persistence", "partnership_summary",
           "persistence_curves", "persistence_groups", "persistence_cox", "partnership_links",
           "reciprocity", "reciprocity_shares"]


@cached
def partnership_network(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """One row per partnership touching an institution in scope: both ends with names and
    countries, cross-border flag, active flag, duration so far in days."""
    dims, p = sql.dims(f)
    # Still-active partnerships are censored at the data's end date stored with the data
    # version's persistence results (analytics.derive.persistence.DATA_END_SQL), so this curve
    # and res_persistence agree and neither moves with the day the dashboard is opened; a
    # warehouse without those results falls back to today.
    end = (f"coalesce((SELECT max(data_end) FROM {schema.RES_PERSISTENCE.name}), current_date)"
           if sql.table_exists(cur, schema.RES_PERSISTENCE.name) else "current_date")
    return sql.rdf(cur, f"""WITH {dims}
        SELECT pt.partnership_id, pt.exchange_id, fx.exchange_name,
               pt.institution_a, ia.name AS name_a, ia.country AS country_a,
               pt.institution_b, ib.name AS name_b, ib.country AS country_b,
               ia.country <> ib.country AS cross_border,
               pt.started_on, pt.ended_on,
               pt.ended_on IS NULL OR pt.ended_on > {end} AS active,
               date_diff('day', pt.started_on, coalesce(least(pt.ended_on, {end}),
                                                        {end})) AS days
        FROM {sql.T_PARTNER} pt JOIN fx USING (exchange_id)
        JOIN {sql.T_INST} ia ON ia.institution_id = pt.institution_a
        JOIN {sql.T_INST} ib ON ib.institution_id = pt.institution_b
        WHERE pt.institution_a IN (SELECT institution_id FROM fi)
           OR pt.institution_b IN (SELECT institution_id FROM fi)
        ORDER BY pt.partnership_id
    """, p)


@cached
def partnership_persistence(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Kaplan–Meier persistence of partnerships, domestic vs cross-border; still-active ones are
    censored at the data's end date (see `partnership_network`)."""
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
    return sql.suppress(pd.concat(out, ignore_index=True), "n", keep=["days"])


@cached
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
    return sql.suppress(summary, "n")[cols]


# ---------------------------------------------------------------------------------------------
# Issue 13: persistence results of the data version (res_persistence*, res_partnership_links),
# computed once per load for the whole program; the filter bar does not narrow them.
# ---------------------------------------------------------------------------------------------

def _split(grouping: str) -> dict[str, str]:
    subject, _, group_by = grouping.partition(":")
    return {"s": subject, "g": group_by}


@cached
def persistence_curves(cur: duckdb.DuckDBPyConnection, grouping: str) -> pd.DataFrame:
    """Kaplan–Meier curves of one `subject:group_by` (e.g. 'partnership:kind')."""
    return sql.stored_result(cur, schema.RES_PERSISTENCE_CURVES, ("n",),
                             'WHERE subject = $s AND group_by = $g ORDER BY "group", time',
                             _split(grouping), keep=("time",))


@cached
def persistence_groups(cur: duckdb.DuckDBPyConnection, grouping: str) -> pd.DataFrame:
    """Medians (95% CI), S(t) and the grouping's log-rank test per group."""
    return sql.stored_result(cur, schema.RES_PERSISTENCE, ("n",),
                             'WHERE subject = $s AND group_by = $g ORDER BY "group"',
                             _split(grouping), keep=("at_time",))


@cached
def persistence_cox(cur: duckdb.DuckDBPyConnection, subject: str) -> pd.DataFrame:
    """Cox hazard ratios (95% CI) of the subject's models; a row rests on the smaller of its
    level's and its reference's units."""
    if not sql.table_exists(cur, schema.RES_PERSISTENCE_COX.name):
        return pd.DataFrame(columns=schema.RES_PERSISTENCE_COX.column_names)
    df = sql.df(cur, f"SELECT * FROM {schema.RES_PERSISTENCE_COX.name} WHERE subject = $s "
                     "ORDER BY model, term, level", {"s": subject})
    df["_n"] = pd.concat([pd.to_numeric(df.n_level, errors="coerce"),
                          pd.to_numeric(df.n_reference, errors="coerce")], axis=1).min(axis=1)
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
    df["_n"] = df["_n"].mask(stored)
    return sql.suppress(df.drop(columns="suppressed"), "_n").drop(columns="_n")


@cached
def partnership_links(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Classroom-to-classroom vs single-class links: activity and median duration per kind."""
    if not sql.table_exists(cur, schema.RES_PARTNERSHIP_LINKS.name):
        return pd.DataFrame(columns=schema.RES_PARTNERSHIP_LINKS.column_names)
    df = sql.df(cur, f"SELECT * FROM {schema.RES_PARTNERSHIP_LINKS.name} ORDER BY link", {})
    df["_n"] = pd.concat([pd.to_numeric(df.n, errors="coerce"),
                          pd.to_numeric(df.n_participants, errors="coerce")], axis=1).min(axis=1)
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
    df["_n"] = df["_n"].mask(stored)
    return sql.suppress(df.drop(columns="suppressed"), "_n").drop(columns="_n")
# Issue 13: reciprocity, precomputed per data version (res_reciprocity, res_reciprocity_shares)
# for every partnership of the program: the filters do not apply.

@cached
def reciprocity(cur: duckdb.DuckDBPyConnection, instrument: str = "all",
                scale: str = "composite") -> pd.DataFrame:
    """res_reciprocity rows of one scale (default the composite), one per partnership: each
    side's mean gain with its t interval, the gap with Welch's interval, the category and the
    index; a partnership with a side under today's k is suppressed (category blanked too)."""
    out = sql.stored_result(cur, schema.RES_RECIPROCITY, ["n_a", "n_b"],
                            "WHERE instrument = $i AND scale = $s ORDER BY partnership_id",
                            {"i": instrument, "s": scale})
    if "reciprocity" in out.columns and len(out):
        out["reciprocity"] = out["reciprocity"].astype("object").mask(
            out["suppressed"].to_numpy(bool))
    return out


@cached
def reciprocity_shares(cur: duckdb.DuckDBPyConnection, instrument: str = "all",
                       scale: str = "composite") -> pd.DataFrame:
    """res_reciprocity_shares of one scale: share of reciprocal partnerships overall, by
    cluster and by modality, with the Wilson interval."""
    return sql.stored_result(cur, schema.RES_RECIPROCITY_SHARES, ["n_participants"],
                             "WHERE instrument = $i AND scale = $s "
                             "ORDER BY group_by <> 'overall', group_by, \"group\"",
                             {"i": instrument, "s": scale}, keep=["n_partnerships"])
