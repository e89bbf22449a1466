"""The Overview page's queries: headline counts, survey completion per wave, participants per
country and weekly activity.

Each public query reads the rollups when `sql.use_rollups` says they answer the filters exactly,
else the day facts (`_…_days`, over the CTEs of `scope`, which the test oracle replaces with the
event log's)."""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from analytics import suppression
from analytics.read import sql
from analytics.read.cache import cached
from analytics.read.filters import Filters
from analytics.read.sql import Scope

__all__ = ["headline", "selects_nobody", "completion_by_wave", "participants_by_country",
           "activity_over_time", "cost_per_participant", "scale_terms", "cost_results"]


def _partnerships_active(cur: duckdb.DuckDBPyConnection, ctes: str, p: dict[str, Any]) -> int:
    """Partnerships active today of an exchange in scope (CTE fx) with at least one side among
    the institutions in scope (CTE fi)."""
    part = sql.rdf(cur, f"""WITH {ctes}
        SELECT count(*) AS n FROM {sql.T_PARTNER} pt JOIN fx USING (exchange_id)
        WHERE (pt.institution_a IN (SELECT institution_id FROM fi)
               OR pt.institution_b IN (SELECT institution_id FROM fi))
          AND pt.started_on <= current_date
          AND (pt.ended_on IS NULL OR pt.ended_on >= current_date)
    """, p)
    return int(part.n.iloc[0])


def _headline_finish(row: dict[str, Any]) -> dict[str, Any]:
    """The small-cell rule on the headline: under MIN_CELL participants, no figure at all."""
    one = sql.suppress(pd.DataFrame([row]), "participants")
    # "Active this month" counts a subset of the selection: fewer than MIN_CELL is blanked too.
    one = sql.suppress_subset(one, "active_month", flag="active_month_suppressed")
    out = one.iloc[0].to_dict()
    out["suppressed"] = bool(out["suppressed"])
    out["active_month_suppressed"] = bool(out["active_month_suppressed"])
    if out["suppressed"]:
        out["active_month_label"] = None  # when the last of them was active is theirs too
    return out


def _headline_days(cur: duckdb.DuckDBPyConnection, f: Filters, scope: Scope = sql.scope
                   ) -> dict[str, Any]:
    ctes, p = scope(f, months=sql.months_base(cur))
    row = sql.df(cur, f"""WITH {ctes},
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
    row["partnerships_active"] = _partnerships_active(cur, ctes, p)
    return _headline_finish(row)


def _headline_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> dict[str, Any]:
    dims, p = sql.dims(f)
    row = sql.rdf(cur, f"""WITH {dims},
        ppl AS ({sql.cells(sql.R_PEOPLE, f, p, people=True)}),
        wk AS ({sql.cells(sql.R_WEEKLY, f, p)}),
        mo AS ({sql.cells(sql.R_MONTHLY, f, p)}),
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


@cached
def selects_nobody(cur: duckdb.DuckDBPyConnection, f: Filters) -> bool:
    """Whether the filters select no participant at all. An empty figure then says "no data
    for this filter" rather than "suppressed": an empty selection has no one to protect."""
    if sql.use_rollups(cur, f):
        dims, p = sql.dims(f)
        n = sql.rdf(cur, f"""WITH {dims}, ppl AS ({sql.cells(sql.R_PEOPLE, f, p, people=True)})
                             SELECT coalesce(sum(n), 0) AS n FROM ppl""", p).iloc[0, 0]
    else:
        ctes, p = sql.scope(f, months=sql.months_base(cur))
        n = sql.df(cur, f"WITH {ctes} SELECT count(*) AS n FROM fp", p).iloc[0, 0]
    return int(n) == 0


@cached
def headline(cur: duckdb.DuckDBPyConnection, f: Filters) -> dict[str, Any]:
    """Headline counts for the filters: participants, active this month (the calendar month of
    the latest event in scope, named in `active_month_label`, so an archive of a past program
    is not all zeros), institutions, countries, clusters, exchanges, events and active
    partnerships.

    A selection with fewer than MIN_CELL participants shows none of them: every figure is
    blanked by the small-cell rule and `suppressed` is True (pages then say
    `SMALL_SELECTION`). So is a selection that one filter value would change by fewer than
    MIN_CELL participants (`analytics.read.disclosure`; `suppressed_why` then says
    `ISOLATING_SELECTION` and which values, never how many people)."""
    from analytics.read import disclosure

    out = _headline_rollup(cur, f) if sql.use_rollups(cur, f) else _headline_days(cur, f)
    out["suppressed_why"] = suppression.SMALL_SELECTION if out["suppressed"] else ""
    if not out["suppressed"]:
        rows = disclosure.isolating(cur, f, None)
        if len(rows):
            # One filter value would show a small group by subtraction: nothing of the
            # selection is shown, as for a selection under k, and the page says which values.
            for key, value in out.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[key] = float("nan")
            out["active_month_label"] = None
            out["suppressed"] = True
            out["suppressed_why"] = (f"{suppression.ISOLATING_SELECTION} "
                                     f"({disclosure.describe(rows)})")
    return out


def _completion_finish(df: pd.DataFrame) -> pd.DataFrame:
    """Rate, wave order, and the small-cell rule: responded <= invited, so a row is about its
    `responded` people."""
    df["rate"] = df.responded / df.invited.where(df.invited > 0)
    df = df.assign(_o=sql.wave_rank(df.wave)).sort_values(["_o", "wave"]).drop(columns="_o")
    return sql.suppress(df.reset_index(drop=True), "responded")


def _completion_by_wave_days(cur: duckdb.DuckDBPyConnection, f: Filters,
                             scope: Scope = sql.scope) -> pd.DataFrame:
    ctes, p = scope(f, include_comparison=True, months=sql.months_base(cur))
    df = sql.df(cur, f"""WITH {ctes}
        SELECT fr.wave, count(DISTINCT fr.pid) AS responded,
               (SELECT count(*) FROM fp) AS invited
        FROM fr JOIN fp USING (pid)
        GROUP BY fr.wave
    """, p)
    return _completion_finish(df)


def _completion_by_wave_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    dims, p = sql.dims(f)
    df = sql.rdf(cur, f"""WITH {dims},
        invited AS (SELECT CAST(coalesce(sum(n), 0) AS BIGINT) AS n
                    FROM ({sql.cells(sql.R_PEOPLE, f, p, comparison=True, people=True)}))
        SELECT wave, CAST(sum(responded) AS BIGINT) AS responded,
               (SELECT n FROM invited) AS invited
        FROM ({sql.cells(sql.R_WAVES, f, p, comparison=True)}) GROUP BY wave
    """, p)
    return _completion_finish(df)


@cached
def completion_by_wave(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Survey completion per wave: participants (incl. the comparison group, who take the surveys)
    with any answer in the wave, over participants in scope. A wave answered by fewer than
    MIN_CELL people (so also every wave of a selection under MIN_CELL) is suppressed."""
    if sql.use_rollups(cur, f):
        return _completion_by_wave_rollup(cur, f)
    return _completion_by_wave_days(cur, f)


def _by_country_finish(cur: duckdb.DuckDBPyConnection, f: Filters, df: pd.DataFrame
                       ) -> pd.DataFrame:
    """The disclosure rules on the per-country table: a country that one filter value would
    change by fewer than k participants is hidden (`disclosure.isolating`), and, as the table is
    shown beside the headline's participant count, a lone hidden country would be that total
    minus the others, so a complementary country is blanked with it (secondary suppression)."""
    from analytics.read import disclosure

    df["n"] = df.participants
    hide = df.country.isin(disclosure.isolating_cells(cur, f, "country")).to_numpy(bool)
    return sql.suppress(df, "n", dims=["country"], hide=hide)


def _participants_by_country_days(cur: duckdb.DuckDBPyConnection, f: Filters,
                                  scope: Scope = sql.scope) -> pd.DataFrame:
    ctes, p = scope(f, months=sql.months_base(cur))
    df = sql.df(cur, f"""WITH {ctes}
        SELECT country, count(*) AS participants, count(DISTINCT institution_id) AS institutions
        FROM fp GROUP BY country ORDER BY participants DESC
    """, p)
    return _by_country_finish(cur, f, df)


def _participants_by_country_rollup(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    dims, p = sql.dims(f)
    df = sql.rdf(cur, f"""WITH {dims}
        SELECT country, CAST(sum(n) AS BIGINT) AS participants,
               count(DISTINCT institution_id) AS institutions
        FROM ({sql.cells(sql.R_PEOPLE, f, p, people=True)}) GROUP BY country
        ORDER BY participants DESC
    """, p)
    return _by_country_finish(cur, f, df)


@cached
def participants_by_country(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Participants (excl. comparison group) per country (alpha-3); small countries suppressed,
    and with them the next-smallest where one alone could be recovered from the headline total
    (secondary suppression, `analytics.suppression.protect`)."""
    if sql.use_rollups(cur, f):
        return _participants_by_country_rollup(cur, f)
    return _participants_by_country_days(cur, f)


def _complete_weeks(df: pd.DataFrame, sizes: pd.DataFrame, hidden: set[Any] = frozenset()
                    ) -> pd.DataFrame:
    if len(df):
        # Weeks without any event are real zeros: complete the grid so lines drop to 0 instead
        # of bridging a gap between terms.
        weeks = pd.date_range(df.week.min(), df.week.max(), freq="7D")
        grid = pd.MultiIndex.from_product([weeks, sorted(df.grp.unique())], names=["week", "grp"])
        df["week"] = pd.to_datetime(df.week)
        df = (df.set_index(["week", "grp"]).reindex(grid, fill_value=0).reset_index())
    df = df.merge(sizes, on="grp", how="left")
    # A group under MIN_CELL is suppressed whole; in a shown group, a week with fewer than
    # MIN_CELL active people shows none of their numbers (a gap in the line, flag
    # `week_suppressed`). The differencing rule's `hidden` cells
    # (`disclosure.isolating_weekly`: (group, week) or (group, 'n')) are blanked the same way.
    grp = ["" if pd.isna(g) else str(g) for g in df.grp]
    return sql.suppress_subset(
        sql.suppress(df, "n", hide=[(g, "n") in hidden for g in grp]), "active",
        ["minutes", "events"], flag="week_suppressed",
        hide=[(g, _iso_week(w)) in hidden for g, w in zip(grp, df.week, strict=True)])


def _iso_week(w: Any) -> str:
    return "" if w is None or pd.isna(w) else pd.Timestamp(w).strftime("%Y-%m-%d")


def _activity_over_time_days(cur: duckdb.DuckDBPyConnection, f: Filters, by: str | None = None,
                             scope: Scope = sql.scope, hidden: set[Any] = frozenset()
                             ) -> pd.DataFrame:
    ctes, p = scope(f, months=sql.months_base(cur))
    group, week = sql.group_col(by), sql.WEEK_SQL
    # One scan for the weekly series and each group's size (week NULL) over the period.
    both = sql.df(cur, f"""WITH {ctes}
        SELECT {week} AS week, {group} AS grp, GROUPING({week}) = 1 AS total,
               count(DISTINCT pid) AS active, sum(minutes) AS minutes, sum(events) AS events
        FROM fe GROUP BY GROUPING SETS (({week}, {group}), ({group})) ORDER BY week
    """, p)
    sizes = both[both.total][["grp", "active"]].rename(columns={"active": "n"})
    df = both[~both.total].drop(columns="total").reset_index(drop=True)
    return _complete_weeks(df, sizes.reset_index(drop=True), hidden)


def _activity_over_time_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str | None = None,
                               hidden: set[Any] = frozenset()) -> pd.DataFrame:
    dims, p = sql.dims(f)
    group = sql.group_col(by)
    df = sql.rdf(cur, f"""WITH {dims}
        SELECT week, {group} AS grp, CAST(sum(active) AS BIGINT) AS active,
               sum(minutes) AS minutes, CAST(sum(events) AS BIGINT) AS events
        FROM ({sql.cells(sql.R_WEEKLY, f, p)}) GROUP BY ALL ORDER BY week
    """, p)
    sizes = sql.rdf(cur, f"""WITH {dims}
        SELECT {group} AS grp, CAST(sum(active) AS BIGINT) AS n
        FROM ({sql.cells(sql.R_PEOPLE, f, p, people=True)}) WHERE active > 0 GROUP BY ALL
    """, p)
    return _complete_weeks(df, sizes, hidden)


@cached
def activity_over_time(cur: duckdb.DuckDBPyConnection, f: Filters, by: str | None = None
                       ) -> pd.DataFrame:
    """Weekly active participants and minutes, overall or per cluster/country/modality/setting/
    exchange/term. Groups with fewer than MIN_CELL participants over the period are suppressed
    whole; in a shown group, a week with fewer than MIN_CELL active has no active, minutes or
    events (NaN) and `week_suppressed` True. A group or week whose active people one filter
    value would change by fewer than k is hidden the same way (`disclosure.isolating_weekly`)."""
    from analytics.read import disclosure

    sql.group_col(by)
    rows = disclosure.isolating_weekly(cur, f, by)
    hidden = set(rows.cell)
    if sql.use_rollups(cur, f):
        out = _activity_over_time_rollup(cur, f, by, hidden)
    else:
        out = _activity_over_time_days(cur, f, by, hidden=hidden)
    grp = ["" if pd.isna(g) else str(g) for g in out.grp]
    return disclosure.explain(out, rows, [(g, _iso_week(w)) for g, w in zip(
        grp, out.week, strict=True)] + [(g, "n") for g in grp])


@cached
def cost_per_participant(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Budget per participant of the exchanges in scope that have a budget, per currency (no
    exchange rates are assumed): exchanges, their total budget, their participants and the
    quotient. A budget pays for a whole exchange, so its participants are all who took part in
    it (with events in the log), not only those the filters select; an exchange whose own
    count is under MIN_CELL is left out (its size is not shown anywhere), and a currency
    whose participants are under MIN_CELL is suppressed."""
    from analytics.read.participation import breakdown

    cols = ["currency", "exchanges", "budget", "participants", "per_participant", "suppressed"]
    in_scope = breakdown(cur, f, "exchange")
    if not len(in_scope):
        return pd.DataFrame(columns=cols)
    sizes = breakdown(cur, Filters(), "exchange")
    sizes = sizes[~sizes.suppressed.astype(bool)][["key", "participants"]]
    budgets = sql.df(cur, f"""SELECT exchange_id AS key, budget, currency FROM {sql.T_EXCH}
        WHERE budget IS NOT NULL AND currency IS NOT NULL""")
    df = (budgets[budgets.key.isin(set(in_scope.key))].merge(sizes, on="key", how="inner"))
    if not len(df):
        return pd.DataFrame(columns=cols)
    out = (df.groupby("currency", as_index=False, sort=True)
           .agg(exchanges=("key", "size"), budget=("budget", "sum"),
                participants=("participants", "sum")))
    out["participants"] = out.participants.astype("int64")
    out["per_participant"] = out.budget / out.participants
    return sql.suppress(out, "participants")[cols]


# Issue 13: scale-up vs scale-in, precomputed per data version (res_scale)
@cached
def scale_terms(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """res_scale rows (cluster × term) of the clusters and terms the filters select, with the
    cluster's display name (`cluster_name`), suppressed again at today's k. Only the cluster and
    term filters apply: the table is per cluster and term, not per participant."""
    from etl import schema

    where, params = [], {}
    if f.cluster:
        where.append("cluster IN (SELECT unnest($cluster::VARCHAR[]))")
        params["cluster"] = list(f.cluster)
    if f.term:
        where.append("term IN (SELECT unnest($term::VARCHAR[]))")
        params["term"] = list(f.term)
    df = sql.stored_result(cur, schema.RES_SCALE, ["participants"],
                           ("WHERE " + " AND ".join(where)) if where else "", params,
                           keep=["dose_sessions", "dose_minutes", "sustained_weeks"])
    if not len(df):
        return df.assign(cluster_name=pd.Series(dtype="object"))
    names = sql.df(cur, f"SELECT cluster_id AS cluster, name AS cluster_name FROM {sql.T_CLUSTERS}")
    return (df.merge(names, on="cluster", how="left")
            .sort_values(["cluster", "term"]).reset_index(drop=True))


# ---- Cost per outcome (issue 13): res_cost, computed once per data version over every
# exchange (a budget pays for a whole exchange, so the filter bar does not narrow it). The
# small-cell rule is applied again at today's k: a row stored suppressed stays suppressed.

_GAIN_COLS = ("n_gain", "mean_gain", "mean_gain_ci_low", "mean_gain_ci_high", "n_clusters",
              "few_clusters", "cost_per_gain", "cost_per_gain_ci_low", "cost_per_gain_ci_high",
              "unbounded")


@cached
def cost_results(cur: duckdb.DuckDBPyConnection, group_by: str = "program") -> pd.DataFrame:
    """res_cost rows of the overall group and of `group_by` (program | cluster), overall first;
    `suppressed` is a bool (participants under k), `gain_suppressed` too (gains under k)."""
    from etl import schema

    cols = schema.RES_COST.column_names
    if not sql.table_exists(cur, schema.RES_COST.name):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols}).assign(
            gain_suppressed=pd.Series(dtype=bool))
    df = sql.df(cur, f"""SELECT * FROM {schema.RES_COST.name}
        WHERE group_by IN ('overall', $g)
        ORDER BY group_by <> 'overall', "group", currency NULLS LAST""", {"g": group_by})
    stored = df.suppressed.fillna("").astype(str)
    n = pd.to_numeric(df.n_participants, errors="coerce").mask(stored.str.startswith("n <"))
    keep = ("n_exchanges_group", "n_exchanges_no_budget", "n_exchanges")
    out = sql.suppress(df.drop(columns="suppressed").assign(_n=n), "_n", keep=keep)
    n_gain = pd.to_numeric(out.n_gain, errors="coerce")
    small = ~out.suppressed & (stored.str.startswith("gain").to_numpy(bool)
                               | ((n_gain > 0) & (n_gain < suppression.MIN_CELL)).to_numpy(bool))
    for c in _GAIN_COLS:
        out[c] = out[c].astype("float64" if c not in ("few_clusters", "unbounded")
                                else "object").mask(small)
    out["gain_suppressed"] = small.to_numpy(bool)
    return out.drop(columns="_n")
