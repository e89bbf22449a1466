"""What the warehouse holds: its data version (`data_info`), the values each filter can take
(`filter_options`), the loads and rejected rows of the Data page, and which researcher result
tables this data version has."""

from __future__ import annotations

import duckdb
import pandas as pd

from analytics.read import sql
from analytics.read.cache import cached
from analytics.read.filters import FilterOptions
from etl import schema

__all__ = ["data_info", "results_computed", "filter_options", "scope_values", "load_batches",
           "rejects", "result_table_status"]


@cached
def data_info(cur: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """meta as a dict: data_version, built_at …"""
    rows = cur.execute(f"SELECT key, value FROM {sql.T_META}").fetchall()
    return {k: v for k, v in rows}


@cached
def filter_options(cur: duckdb.DuckDBPyConnection) -> FilterOptions:
    """Every value each filter can take, with a readable label (names are user data: text), and
    the first and last UTC day with events. Raises `sql.DerivedTablesMissing` on a data version
    without its derived tables (the filter bar then says to refresh)."""
    sql.require_derived(cur)
    opts: dict[str, tuple[tuple[str, str], ...]] = {}

    def pairs(q: str) -> tuple[tuple[str, str], ...]:
        return tuple((str(v), str(lbl)) for v, lbl in cur.execute(q).fetchall() if v is not None)

    opts["program"] = pairs(f"SELECT DISTINCT program, program FROM {sql.T_EXCH} ORDER BY 1")
    opts["cluster"] = pairs(
        f"SELECT cluster_id, coalesce(name, cluster_id) FROM {sql.T_CLUSTERS} ORDER BY 2")
    opts["country"] = pairs(f"SELECT DISTINCT country, country FROM {sql.T_INST} ORDER BY 1")
    opts["exchange"] = pairs(
        f"SELECT exchange_id, coalesce(name, exchange_id) FROM {sql.T_EXCH} ORDER BY 2")
    opts["term"] = pairs(
        f"SELECT DISTINCT {sql.term_sql('start_date')} AS t, t FROM {sql.T_EXCH} "
        "WHERE start_date IS NOT NULL ORDER BY 1")
    opts["role"] = pairs(f"SELECT DISTINCT role, role FROM {sql.T_PKEYS} ORDER BY 1")
    opts["modality"] = pairs(f"SELECT DISTINCT modality, modality FROM {sql.T_EXCH} ORDER BY 1")
    opts["setting"] = pairs(f"SELECT DISTINCT setting, setting FROM {sql.T_EXCH} ORDER BY 1")
    first, last = cur.execute(f"SELECT min(day), max(day) FROM {sql.T_PDAYS}").fetchone()
    return FilterOptions(opts, first, last)


@cached
def scope_values(cur: duckdb.DuckDBPyConnection, programs: tuple[str, ...],
                 clusters: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """The programs, clusters, exchanges and countries an account limited to `programs` and/or
    `clusters` (issue 14; empty = no limit) can reach: what its filter bar may name.

    As the filters read them (`sql.dims`): a program limits exchanges, a cluster limits the
    participants' institutions. An institution takes part in an exchange through a partnership
    or through a participant with activity in it; an exchange's own cluster (the one running
    it) belongs to its program's clusters. Example: a lead of Bridges sees Bridges' exchanges,
    the clusters running them or sending participants to them, and those institutions'
    countries; never a cluster, exchange or country only another program has."""
    exchanges = cur.execute(
        f"SELECT exchange_id, program, cluster_id FROM {sql.T_EXCH}").fetchall()
    institutions = {i: (country, cluster) for i, country, cluster in cur.execute(
        f"SELECT institution_id, country, cluster_id FROM {sql.T_INST}").fetchall()}
    links = cur.execute(f"""
        SELECT exchange_id, institution_a FROM {sql.T_PARTNER}
        UNION SELECT exchange_id, institution_b FROM {sql.T_PARTNER}
        UNION SELECT DISTINCT d.exchange_id, k.institution_id
              FROM {sql.T_PDAYS} d JOIN {sql.T_PKEYS} k USING (pid)""").fetchall()
    in_c = (lambda c: c in clusters) if clusters else (lambda c: True)
    # exchange -> the institutions of the scope's clusters taking part in it
    taking_part: dict[str, set[str]] = {}
    for x, i in links:
        if i in institutions and in_c(institutions[i][1]):
            taking_part.setdefault(x, set()).add(i)
    kept = [(x, p, c) for x, p, c in exchanges
            if (not programs or p in programs) and (not clusters or c in clusters
                                                    or x in taking_part)]
    inst = ({i for x, _p, _c in kept for i in taking_part.get(x, ())} if programs
            else {i for i, (_co, c) in institutions.items() if in_c(c)})
    reach_clusters = {institutions[i][1] for i in inst} | {c for _x, _p, c in kept}
    return {
        "program": frozenset(p for _x, p, _c in kept),
        "exchange": frozenset(x for x, _p, _c in kept),
        "cluster": frozenset(c for c in reach_clusters if in_c(c)),
        "country": frozenset(institutions[i][0] for i in inst),
    }


@cached
def load_batches(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The load log, newest first."""
    return sql.df(cur, f"""SELECT batch_id, coalesce(source, source_name) AS source, kind, status,
               rows_in, rows_accepted, rows_rejected, rows_added, rows_changed, rows_removed,
               finished_at, data_version, message
        FROM {sql.T_BATCHES} ORDER BY batch_id DESC""")


@cached
def rejects(cur: duckdb.DuckDBPyConnection, limit: int = 500) -> pd.DataFrame:
    """The rejected rows of the loads, newest batch first, at most `limit`."""
    return sql.df(cur, f"""SELECT batch_id, file, row_number, column_name, rule, value, message
        FROM {sql.T_REJECTS} ORDER BY batch_id DESC, row_number LIMIT $limit""", {"limit": limit})


@cached
def results_computed(cur: duckdb.DuckDBPyConnection) -> bool:
    """Whether this data version has its researcher result tables (a load computes them, or
    `python -m analytics refresh`)."""
    return all(sql.table_exists(cur, t.name) for t in schema.RESULT_TABLES.values())


@cached
def result_table_status(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Rows per researcher result table (0 = not computed yet for this data version)."""
    rows = []
    for t in schema.RESULT_TABLES.values():
        n = (cur.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]
             if sql.table_exists(cur, t.name) else 0)
        rows.append({"table": t.name, "rows": int(n), "description": t.doc})
    return pd.DataFrame(rows)
