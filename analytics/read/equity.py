"""The Equity & access page's queries: gains, participation and drop-out per equity group
(gender, age band, connectivity, income group) and the attrition funnel.

Each public query reads the rollups when `sql.use_rollups` says they answer the filters exactly,
else the day facts (`_…_days`)."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pandas as pd

from analytics.read import sql
from analytics.read.cache import cached
from analytics.read.filters import Filters
from analytics.read.sql import Scope
from analytics.stats.longitudinal import wave_key
from analytics.stats.means import cr2_means
from etl import schema

__all__ = ["gains_by_group", "participation_by_group", "attrition_funnel", "dropout_by_group",
           "equity_gap_table"]

_GAINS_COLUMNS = ["instrument", "scale", "group", "n", "mean", "sd", "ci_low", "ci_high",
                  "ci_low_cr2", "ci_high_cr2", "df_cr2", "n_clusters", "few_clusters",
                  "suppressed"]


def _gains_finish(cells: pd.DataFrame, hidden: set[Any] = frozenset()) -> pd.DataFrame:
    """Per-exchange cells -> means with the t and CR2 intervals, the small-cell rule, and the
    differencing rule's `hidden` cells (`disclosure.isolating_gains`) blanked."""
    from analytics.read import disclosure

    if not len(cells):
        return pd.DataFrame(columns=_GAINS_COLUMNS)
    df = cr2_means(cells, ["instrument", "scale", "group"])
    hide = disclosure.hidden_rows(df, hidden, ["instrument", "scale", "group"])
    return sql.suppress(df, "n", hide=hide)[_GAINS_COLUMNS]


def _gains_by_group_days(cur: duckdb.DuckDBPyConnection, f: Filters, by: str,
                         scope: Scope = sql.scope, hidden: set[Any] = frozenset()
                         ) -> pd.DataFrame:
    col = sql.equity_col(by)
    ctes, p = scope(f, include_comparison=True, scores=True, months=sql.months_base(cur))
    return _gains_finish(sql.df(cur, f"""WITH {ctes}
        SELECT fg.instrument, fg.scale, fp.{col} AS "group", fg.exchange_id, count(*) AS n,
               sum(fg.gain) AS sum, sum(fg.gain * fg.gain) AS sumsq
        FROM fg JOIN fp USING (pid)
        WHERE NOT fp.comparison
        GROUP BY ALL ORDER BY ALL
    """, p), hidden)


def _gains_by_group_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str,
                           hidden: set[Any] = frozenset()) -> pd.DataFrame:
    col = sql.equity_col(by)
    dims, p = sql.dims(f)
    return _gains_finish(sql.rdf(cur, f"""WITH {dims}
        SELECT instrument, scale, {sql.equity_sql(col)} AS "group", exchange_id,
               sum(n) AS n, sum(sum) AS sum, sum(sumsq) AS sumsq
        FROM ({sql.cells(sql.R_GAINS, f, p)}) GROUP BY ALL ORDER BY instrument, scale, "group"
    """, p), hidden)


@cached
def gains_by_group(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Mean post−pre gain per scale and group (exchange participants only) with the t 95% CI
    (``ci_low``/``ci_high``, participants as independent) and the design-aware one the page
    shows (``ci_low_cr2``/``ci_high_cr2``: cluster-robust by exchange, CR2 with Satterthwaite
    df; ``n_clusters``, ``few_clusters``). A group whose pairs one filter value would change
    by fewer than k is hidden (`disclosure.isolating_gains`)."""
    from analytics.read import disclosure

    sql.equity_col(by)
    rows = disclosure.isolating_gains(cur, f, by)
    hidden = set(rows.cell)
    if sql.use_rollups(cur, f):
        out = _gains_by_group_rollup(cur, f, by, hidden)
    else:
        out = _gains_by_group_days(cur, f, by, hidden=hidden)
    return disclosure.explain(out, rows, [(str(a), str(b), str(g), False) for a, b, g in
                                          zip(out.instrument, out.scale, out.group, strict=True)])


def _participation_finish(df: pd.DataFrame, hidden: set[Any] = frozenset()) -> pd.DataFrame:
    """Share active; groups under MIN_CELL suppressed whole, and so are the differencing
    rule's `hidden` groups (`disclosure.isolating` by the grouping); fewer than MIN_CELL
    active people in a shown group blanks their count, their share and the minutes per
    participant (all minutes are theirs)."""
    df["active_share"] = df.active / df.n
    hide = [str(g) in hidden for g in df["group"]]
    return sql.suppress_subset(sql.suppress(df, "n", hide=hide),
                               "active", ["active_share", "minutes_per_participant"])


def _participation_by_group_days(cur: duckdb.DuckDBPyConnection, f: Filters, by: str,
                                 scope: Scope = sql.scope, hidden: set[Any] = frozenset()
                                 ) -> pd.DataFrame:
    col = sql.equity_col(by)
    ctes, p = scope(f, months=sql.months_base(cur))
    return _participation_finish(sql.df(cur, f"""WITH {ctes},
        act AS (SELECT pid, sum(minutes) AS minutes FROM fe GROUP BY ALL)
        SELECT fp.{col} AS "group", count(*) AS n, count(act.pid) AS active,
               coalesce(sum(act.minutes), 0) / count(*) AS minutes_per_participant
        FROM fp LEFT JOIN act USING (pid) GROUP BY ALL ORDER BY "group"
    """, p), hidden)


def _participation_by_group_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str,
                                   hidden: set[Any] = frozenset()) -> pd.DataFrame:
    col = sql.equity_col(by)
    dims, p = sql.dims(f)
    return _participation_finish(sql.rdf(cur, f"""WITH {dims}
        SELECT {sql.equity_sql(col)} AS "group", CAST(sum(n) AS BIGINT) AS n,
               CAST(sum(active) AS BIGINT) AS active,
               coalesce(sum(minutes), 0) / sum(n) AS minutes_per_participant
        FROM ({sql.cells(sql.R_PEOPLE, f, p, people=True)}) GROUP BY ALL ORDER BY "group"
    """, p), hidden)


@cached
def participation_by_group(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Participants, share ever active and mean minutes per participant, per group. A group
    whose people (or whose people's activity, for exchange and month filters) one filter value
    would change by fewer than k is hidden (`disclosure.isolating` by the grouping): two views'
    counts, shares or minutes × n would give that small group's."""
    from analytics.read import disclosure

    sql.equity_col(by)
    rows = disclosure.isolating(cur, f, by).assign(cell=lambda d: d.cell.astype(str))
    hidden = set(rows.cell)
    if sql.use_rollups(cur, f):
        out = _participation_by_group_rollup(cur, f, by, hidden)
    else:
        out = _participation_by_group_days(cur, f, by, hidden=hidden)
    return disclosure.explain(out, rows, [str(g) for g in out["group"]])


def _funnel_finish(df: pd.DataFrame, hidden: set[Any] = frozenset()) -> pd.DataFrame:
    """Stages in order (enrolled, active, then the waves in `wave_key` order), each stage's share
    of the enrolled, and the small-cell rule per stage; the differencing rule's `hidden` stages
    (`disclosure.isolating_stages`) are blanked as small cells."""
    order = {"enrolled": (0,), "active in the log": (1,)}
    rank = df.stage.map(lambda s: order.get(s, (2, *wave_key(s.removeprefix("answered ")))))
    df = df.assign(_o=rank).sort_values("_o").drop(columns="_o").reset_index(drop=True)
    first = df.n.iloc[0] if len(df) else 0
    df["share"] = df.n / first if first else np.nan
    hide = [str(st) in hidden for st in df.stage]
    return sql.suppress(df, "n", hide=hide)


def _attrition_funnel_days(cur: duckdb.DuckDBPyConnection, f: Filters,
                           scope: Scope = sql.scope, hidden: set[Any] = frozenset()
                           ) -> pd.DataFrame:
    ctes, p = scope(f, months=sql.months_base(cur))
    return _funnel_finish(sql.df(cur, f"""WITH {ctes},
        resp AS (SELECT DISTINCT fr.pid, fr.wave FROM fr JOIN fp USING (pid))
        SELECT 'enrolled' AS stage, count(*) AS n FROM fp
        UNION ALL SELECT 'active in the log', count(DISTINCT pid) FROM fe
        UNION ALL SELECT 'answered ' || wave, count(*) FROM resp GROUP BY wave
    """, p), hidden)


def _attrition_funnel_rollup(cur: duckdb.DuckDBPyConnection, f: Filters,
                             hidden: set[Any] = frozenset()) -> pd.DataFrame:
    dims, p = sql.dims(f)
    return _funnel_finish(sql.rdf(cur, f"""WITH {dims}
        SELECT 'enrolled' AS stage, CAST(coalesce(sum(n), 0) AS BIGINT) AS n
        FROM ({sql.cells(sql.R_PEOPLE, f, p, people=True)})
        UNION ALL SELECT 'active in the log', CAST(coalesce(sum(active), 0) AS BIGINT)
        FROM ({sql.cells(sql.R_PEOPLE, f, p, people=True)})
        UNION ALL SELECT 'answered ' || wave, CAST(sum(responded) AS BIGINT)
        FROM ({sql.cells(sql.R_WAVES, f, p)}) GROUP BY wave
    """, p), hidden)


@cached
def attrition_funnel(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Exchange participants in scope → active → answered pre → post → follow-up (each stage
    counts participants who reached it; later waves need not include earlier ones). A stage
    whose people one filter value would change by fewer than k is hidden
    (`disclosure.isolating_stages`)."""
    from analytics.read import disclosure

    rows = disclosure.isolating_stages(cur, f)
    hidden = set(rows.cell)
    if sql.use_rollups(cur, f):
        out = _attrition_funnel_rollup(cur, f, hidden)
    else:
        out = _attrition_funnel_days(cur, f, hidden=hidden)
    return disclosure.explain(out, rows, [str(st) for st in out.stage])


def _dropout_finish(df: pd.DataFrame, hidden: set[Any] = frozenset()) -> pd.DataFrame:
    """Drop-out rate; groups under MIN_CELL suppressed whole, and so are the groups either of
    whose counts the differencing rule hides (`hidden`: `disclosure.isolating_dropout` cells);
    fewer than MIN_CELL drop-outs in a shown group blanks their count and the drop-out rate."""
    df["dropout_rate"] = df.dropped / df.n
    groups = {g for g, _ in hidden}
    hide = [("" if pd.isna(g) else str(g)) in groups for g in df["group"]]
    return sql.suppress_subset(sql.suppress(df, "n", hide=hide),
                               "dropped", ["dropout_rate"])


def _dropout_by_group_days(cur: duckdb.DuckDBPyConnection, f: Filters, by: str,
                           scope: Scope = sql.scope, hidden: set[Any] = frozenset()
                           ) -> pd.DataFrame:
    col = sql.equity_col(by)
    ctes, p = scope(f, months=sql.months_base(cur))
    return _dropout_finish(sql.df(cur, f"""WITH {ctes},
        w AS (SELECT pid, bool_or(wave = 'pre') AS pre, bool_or(wave = 'post') AS post
              FROM fr GROUP BY ALL)
        SELECT fp.{col} AS "group", count(*) AS n, count(*) FILTER (WHERE NOT w.post) AS dropped
        FROM fp JOIN w USING (pid) WHERE w.pre GROUP BY ALL ORDER BY "group"
    """, p), hidden)


def _dropout_by_group_rollup(cur: duckdb.DuckDBPyConnection, f: Filters, by: str,
                             hidden: set[Any] = frozenset()) -> pd.DataFrame:
    col = sql.equity_col(by)
    dims, p = sql.dims(f)
    return _dropout_finish(sql.rdf(cur, f"""WITH {dims}
        SELECT {sql.equity_sql(col)} AS "group", CAST(sum(answered_pre) AS BIGINT) AS n,
               CAST(sum(pre_not_post) AS BIGINT) AS dropped
        FROM ({sql.cells(sql.R_PEOPLE, f, p, people=True)}) GROUP BY ALL
        HAVING sum(answered_pre) > 0 ORDER BY "group"
    """, p), hidden)


@cached
def dropout_by_group(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """Of those who answered the pre survey, the share who did not answer the post survey. A
    group whose base or drop-outs one filter value would change by fewer than k is hidden
    (`disclosure.isolating_dropout`): two views' rates times their bases would give them."""
    from analytics.read import disclosure

    sql.equity_col(by)
    rows = disclosure.isolating_dropout(cur, f, by)
    hidden = set(rows.cell)
    if sql.use_rollups(cur, f):
        out = _dropout_by_group_rollup(cur, f, by, hidden)
    else:
        out = _dropout_by_group_days(cur, f, by, hidden=hidden)
    return disclosure.explain(out, rows, [("" if pd.isna(g) else str(g), part)
                                          for g in out["group"]
                                          for part in ("answered pre", "dropped")])


@cached
def equity_gap_table(cur: duckdb.DuckDBPyConnection, by: str, instrument: str = "all",
                     scale: str = "composite") -> pd.DataFrame:
    """res_equity_gaps for one grouping: the gap between the best- and worst-served groups in
    the gain of one scale (default the composite), minutes per participant and drop-out, with
    the Bonferroni-level CR2 interval by exchange (precomputed per data version for the whole
    program: the filters do not apply). A row whose best or worst group is under today's k is
    suppressed."""
    sql.equity_col(by)
    return sql.stored_result(
        cur, schema.RES_EQUITY_GAPS, ["n_best", "n_worst"],
        "WHERE grouping = $g AND (measure <> 'gain' OR (instrument = $i AND scale = $s)) "
        "ORDER BY CASE measure WHEN 'gain' THEN 0 WHEN 'minutes' THEN 1 ELSE 2 END",
        {"g": by, "i": instrument, "s": scale}, keep=["ci_level", "n_groups_compared"])
