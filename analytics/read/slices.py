"""Issue 17: the longitudinal mixed model, the raw vs ANCOVA-adjusted comparison and the baseline
balance of exactly the filtered participants (any filter combination, date range included),
computed on request from the per-person facts (res_person_scores, res_person_keys).

The statistics are the derive step's own functions (`analytics.derive.materialise`:
`longitudinal_types`; `analytics.stats.comparison`: `ancova_cells`, `balance_from_sums`), at
the project's k, on sums over the people in scope (`sql.scope` with the comparison group) that
DuckDB computes in one GROUP BY each: per unit type for the mixed model (`model_types`), per
cell of exchange x arm x covariates for the comparison and balance (`_unit_cells`). Each
estimator is exact on its sums, and the derive step fits the same sums (of one unit each), so
a slice's table is what `python -m analytics` would store if the program held only those
people. The stored tables (res_longitudinal, res_comparison, res_balance) answer the
unfiltered view they were computed for.

Scope: the filtered participants and comparison people (by home institution, role, the
exchange they took part in or were matched to; with a date range, those with activity or
answers in it), every scored wave of theirs in the exchanges in scope.

Differencing (issue 14): a scale whose scored rows (the model), pairs (the comparison) or pre
scores (balance) one filter value would change by 1 to k − 1 people (`disclosure`) has its
estimates blanked, whatever path answered: two such views' estimates would rest on a small
group's difference. Covariate balance rows go when the view's people do.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

from analytics import suppression
from analytics.read import disclosure, outcomes, sql
from analytics.read.cache import cached
from analytics.read.filters import Filters
from etl import schema

__all__ = ["longitudinal_slice", "comparison_slice", "balance_slice", "model_types",
           "slice_scope"]


def slice_scope(f: Filters) -> str:
    """Who a slice's statistics are computed on, in words for a caption."""
    return ("all participants and the comparison group" if f.is_empty
            else "the filtered participants and comparison group")


def _has_comparison(cur: duckdb.DuckDBPyConnection, f: Filters) -> bool:
    """Whether both arms have a score in scope, on any scale (as the derive step decides it over
    the whole program, so one scale tries the designs it would with all scales fitted)."""
    ctes, p = sql.scope(f, include_comparison=True, scores=True, months=sql.months_base(cur))
    row = sql.df(cur, f"""WITH {ctes}
        SELECT coalesce(bool_or(fp.comparison) AND bool_or(NOT fp.comparison), FALSE) AS both
        FROM fs JOIN fp USING (pid)""", p)
    return bool(row["both"].iloc[0]) if len(row) else False


def _per_scale(d: pd.DataFrame) -> list[pd.DataFrame]:
    return [g for _, g in d.groupby(["instrument", "scale"], sort=True, observed=True)]


_LOCATORS = {"instrument", "scale", "term", "covariate", "level", "statistic", "method",
             "adjusted_for", "suppressed", "converged", "few_clusters", "imbalanced"}


def _difference_hidden(df: pd.DataFrame, scales: set[tuple[str, str]],
                       rows: pd.DataFrame, everything: bool = False) -> pd.DataFrame:
    """`df` with the rows of the scales (instrument, scale) in `scales` (or every row,
    `everything`) blanked for the differencing rule: numbers NaN, `suppressed` set (True, or
    the reason where it is text), and `attrs['isolating']` saying which filter values."""
    if not len(df) or not (scales or everything):
        return df
    hide = (pd.Series(True, index=df.index) if everything else pd.Series(
        [(str(i), str(c)) in scales for i, c in zip(df.instrument, df.scale, strict=True)],
        index=df.index))
    if not hide.any():
        return df
    out = df.copy()
    for c in out.columns:
        if c not in _LOCATORS and pd.api.types.is_numeric_dtype(out[c]) \
                and not pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].astype("float64").mask(hide.to_numpy())
    if pd.api.types.is_bool_dtype(out["suppressed"]):
        out["suppressed"] = out["suppressed"] | hide
    else:
        was = out["suppressed"].astype("string").fillna("") != ""
        out["suppressed"] = out["suppressed"].astype("object").mask(hide & ~was,
                                                                    suppression.DIFFERENCE)
    if len(rows):
        out.attrs["isolating"] = disclosure.describe(rows)
    return out


def _isolated_scales(rows: pd.DataFrame, waves: tuple[str, ...] | None = None
                     ) -> tuple[set[tuple[str, str]], pd.DataFrame]:
    """The scales (instrument, scale) of an `isolating_scores`/`isolating_gains` answer (only
    its `waves`, when given) and the rows behind them."""
    if not len(rows):
        return set(), rows
    keep = rows[[waves is None or c[2] in waves for c in rows.cell]]
    return {(str(c[0]), str(c[1])) for c in keep.cell}, keep


def _reread(df: pd.DataFrame, table: schema.Table, n_cols: Sequence[str]) -> pd.DataFrame:
    """A computed res_comparison / res_balance frame as the read layer hands out the stored one
    (`outcomes.comparison_results`, `outcomes.balance`): the table's columns, the small-cell
    rule again through `sql.suppress` (a row the statistics suppressed counts as n missing),
    `suppressed` a bool."""
    df = df.reindex(columns=table.column_names).reset_index(drop=True)
    if not len(df):
        return df.assign(suppressed=pd.Series(dtype=bool))
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
    n = df[list(n_cols)].apply(pd.to_numeric, errors="coerce").min(axis=1).mask(stored)
    return sql.suppress(df.drop(columns="suppressed").assign(_n=n), "_n").drop(columns="_n")


@cached
def longitudinal_slice(cur: duckdb.DuckDBPyConnection, f: Filters, scale: str | None = None
                       ) -> pd.DataFrame:
    """The mixed model's fixed effects, contrasts and variance components (res_longitudinal's
    rows) of exactly the filtered people, per scale, or of one scale ('instrument/scale'):
    `materialise._longitudinal` (participants nested in exchanges, the design simplified
    where a cell is empty, the small-cell rule per estimate) on their scored rows. The stored
    table answers the unfiltered view."""
    if f.is_empty:
        df = outcomes.longitudinal(cur)
        if scale and len(df):
            inst, _, sc = scale.partition("/")
            df = df[(df.instrument == inst) & (df.scale == sc)].reset_index(drop=True)
    else:
        df = _longitudinal_computed(cur, f, scale)
    return _difference_hidden(df, *_isolated_scales(disclosure.isolating_scores(cur, f)))


def _longitudinal_computed(cur: duckdb.DuckDBPyConnection, f: Filters,
                           scale: str | None = None) -> pd.DataFrame:
    from analytics.derive.materialise import longitudinal_types

    cols = schema.RES_LONGITUDINAL.column_names
    d = model_types(cur, f, scale)
    if not len(d):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    both = _has_comparison(cur, f)
    parts = [longitudinal_types(g, suppression.MIN_CELL, has_comparison=both)[0]
             for g in _per_scale(d)]
    return pd.concat(parts, ignore_index=True).reindex(columns=cols)


@cached
def _score_waves(cur: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    """The waves of the scored rows (41 ms at 1M participants, once per data version)."""
    rows = cur.execute(f"SELECT DISTINCT wave FROM {schema.RES_PERSON_SCORES.name} "
                       "WHERE wave IS NOT NULL ORDER BY wave").fetchall()
    return tuple(str(r[0]) for r in rows)


def model_types(cur: duckdb.DuckDBPyConnection, f: Filters, scale: str | None = None
                ) -> pd.DataFrame:
    """The mixed model's data for the people in scope as sums per unit type
    (`analytics.stats.longitudinal.longitudinal_model_types`), in one GROUP BY: a unit is a
    participant x exchange x scale, a type the units of one exchange and arm that scored the
    same number of times in each wave. Per type and wave its rows, their sum and sum of
    squares; per type its units and the sum of t and t^2 over them (t a unit's summed score).
    The model fitted on these sums is the model on the scored rows they stand for, and a view
    of 19M scored rows (1M participants) is some 47,000 entries: fetching the rows took 18 s
    and fitting them in pandas 78 s, the sums take 6.5 s and their fits 0.7 s (one scale, as
    the Outcomes page asks: 1.3 s in all)."""
    waves = _score_waves(cur)
    if not waves:
        return pd.DataFrame()
    ctes, p = sql.scope(f, include_comparison=True, scores=True, months=sql.months_base(cur))
    where = ""
    if scale:
        inst, _, sc = scale.partition("/")
        p = p | {"one_instrument": inst, "one_scale": sc}
        where = " AND fs.instrument = $one_instrument AND fs.scale = $one_scale"
    p = p | {f"w{i}": w for i, w in enumerate(waves)}
    per_unit = ", ".join(
        f"count(*) FILTER (fs.wave = $w{i}) AS n{i}, "
        f"sum(fs.score) FILTER (fs.wave = $w{i}) AS s{i}, "
        f"sum(fs.score * fs.score) FILTER (fs.wave = $w{i}) AS q{i}" for i in range(len(waves)))
    per_type = ", ".join(f"n{i}, sum(s{i}) AS s{i}, sum(q{i}) AS q{i}"
                         for i in range(len(waves)))
    d = sql.arrow_df(cur, f"""WITH {ctes},
        u AS (SELECT fs.instrument, fs.scale, fs.exchange_id, pid, fp.comparison,
                     sum(fs.score) AS t, {per_unit}
              FROM fs JOIN fp USING (pid)
              WHERE fs.score IS NOT NULL{where}
              GROUP BY fs.instrument, fs.scale, fs.exchange_id, pid, fp.comparison)
        SELECT u.instrument, u.scale, u.exchange_id, x.modality, x.cluster_id AS network,
               u.comparison AS is_comparison, count(*) AS units, sum(t) AS t_sum,
               sum(t * t) AS t_sq, {per_type}
        FROM u JOIN {schema.EXCHANGES.name} x ON x.exchange_id = u.exchange_id
        GROUP BY ALL""", p)
    return _type_rows(d, waves)


def _type_rows(d: pd.DataFrame, waves: Sequence[str]) -> pd.DataFrame:
    """`model_types`' one row per type (n_i, s_i, q_i per wave i) as one row per type and wave
    with a score (`TYPE_COLUMNS`)."""
    keep = ["instrument", "scale", "exchange_id", "modality", "network", "is_comparison",
            "units", "t_sum", "t_sq"]
    parts = []
    for i, w in enumerate(waves):
        n = d[f"n{i}"].to_numpy(dtype=float)
        has = n > 0
        part = d.loc[has, keep].assign(type=d.index[has], wave=w,
                                        rows=n[has] * d.loc[has, "units"].to_numpy(float),
                                        sum=d.loc[has, f"s{i}"].to_numpy(float),
                                        sum_sq=d.loc[has, f"q{i}"].to_numpy(float))
        parts.append(part)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=keep)
    out["is_comparison"] = out["is_comparison"].astype(bool)
    return out.sort_values(["instrument", "scale", "type", "wave"], kind="stable",
                           ignore_index=True)


def _unit_cells(cur: duckdb.DuckDBPyConnection, f: Filters, source: str, keys: str,
                sums: dict[str, str], where: str = "") -> tuple[str, dict]:
    """Per-cell sums over the units of `source` (fs, fg or a subquery of theirs, aliased u) of
    the people in scope: one row per `keys` (over u), exchange, arm (is_comparison), role,
    gender and the covariates of `COVARIATE_SQL`, with `sums` (name -> SQL over u) added up.
    Two steps: the units are summed per person attribute first (institution, birth year), and
    only those few rows are joined to their exchange and institution for the covariates (at
    1M participants that halves the query)."""
    from analytics.derive.materialise import COVARIATE_SQL

    ctes, p = sql.scope(f, include_comparison=True, scores=True, months=sql.months_base(cur))
    inner = ", ".join(f"{expr} AS {name}" for name, expr in sums.items())
    outer = ", ".join(f"sum(p.{name}) AS {name}" for name in sums)
    return f"""WITH {ctes},
        a AS (SELECT {keys}, u.exchange_id, fp.comparison AS is_comparison, fp.role,
                     fp.gender, fp.institution_id, k.birth_year, {inner}
              FROM {source} u JOIN fp USING (pid)
              JOIN {schema.RES_PERSON_KEYS.name} k USING (pid)
              WHERE TRUE {where} GROUP BY ALL)
        SELECT p.* EXCLUDE (institution_id, birth_year, {", ".join(sums)}),
               {COVARIATE_SQL}, {outer}
        FROM a p JOIN {schema.EXCHANGES.name} x ON x.exchange_id = p.exchange_id
        LEFT JOIN {schema.INSTITUTIONS.name} i ON i.institution_id = p.institution_id
        GROUP BY ALL""", p


_PAIR_SUMS = {"n": "count(*)", "s_pre": "sum(u.pre)", "s_post": "sum(u.post)",
              "s_pre2": "sum(u.pre * u.pre)", "s_prepost": "sum(u.pre * u.post)",
              "s_post2": "sum(u.post * u.post)"}


def _both_arms(arms: pd.Series, cur: duckdb.DuckDBPyConnection, f: Filters) -> bool:
    """Whether the view has both arms (`_has_comparison`), asked only when the rows at hand
    (`arms`: is_comparison of some of the view's scored units) do not already show both."""
    seen = set(arms.astype(bool))
    return seen == {False, True} or _has_comparison(cur, f)


def _compare(cur: duckdb.DuckDBPyConnection, f: Filters, balance: bool = True,
             comparison: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(res_comparison, res_balance) of the people in scope, as the derive step computes them
    (`_compare_scale` per scale, `_balance_combine`), from sums in SQL instead of their rows:
    the ANCOVA from the complete pairs' moments per scale, exchange, arm and covariate levels
    (`ancova_cells`, exact), the balance from the pre scores' moments per scale and arm and
    the baseline units' counts per covariate level (`balance_from_sums`). Empty without both
    arms. `balance` / `comparison` False: that table is left empty (not computed)."""
    from analytics.derive.materialise import COMPARISON_COVARIATES
    from analytics.stats.comparison import (
        BALANCE_COLUMNS,
        COMPARISON_COLUMNS,
        ancova_cells,
        balance_from_sums,
    )

    empty = pd.DataFrame(columns=COMPARISON_COLUMNS), pd.DataFrame(columns=BALANCE_COLUMNS)
    cmp_, bal = empty
    k, covs = suppression.MIN_CELL, list(COMPARISON_COVARIATES)
    if comparison:
        cells = sql.rdf(cur, *_unit_cells(cur, f, "fg", "u.instrument, u.scale", _PAIR_SUMS,
                                          "AND u.pre IS NOT NULL AND u.post IS NOT NULL"))
        if not _both_arms(cells.is_comparison, cur, f):
            return empty
        cmp_ = ancova_cells(cells, covariates=covs, k=k)
    if balance:
        pre = "AND u.wave = 'pre' AND u.score IS NOT NULL"
        ctes, p = sql.scope(f, include_comparison=True, scores=True, months=sql.months_base(cur))
        moments = sql.rdf(cur, f"""WITH {ctes}
            SELECT u.instrument, u.scale, fp.comparison, count(*) AS n, avg(u.score) AS mean,
                   stddev_samp(u.score) AS sd
            FROM fs u JOIN fp USING (pid) WHERE TRUE {pre} GROUP BY ALL""", p)
        if not _both_arms(moments.comparison, cur, f):
            return empty
        baseline = f"""(SELECT DISTINCT pid, exchange_id FROM fs u JOIN fp USING (pid)
                        WHERE TRUE {pre})"""
        units = sql.rdf(cur, *_unit_cells(cur, f, baseline, "TRUE AS _all", {"n": "count(*)"}))
        levels = pd.concat([units.groupby([c, "is_comparison"], dropna=False, observed=True)
                            ["n"].sum().reset_index()
                            .rename(columns={c: "level", "is_comparison": "comparison"})
                            .assign(covariate=c) for c in covs])
        levels["level"] = levels["level"].astype("object").where(levels["level"].notna(),
                                                                 "not reported")
        arms = units.groupby("is_comparison")["n"].sum()
        bal = balance_from_sums(moments, levels, n_units=(int(arms.get(False, 0)),
                                                          int(arms.get(True, 0))),
                                categorical=covs, k=k)
    return cmp_, bal


@cached
def comparison_slice(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Raw and ANCOVA-adjusted participants − comparison per scale (res_comparison's rows, CR2 by
    exchange) of exactly the filtered people; the stored table answers the unfiltered view."""
    if f.is_empty:
        df = outcomes.comparison_results(cur)
    else:  # each table alone: the page's two callbacks often run in two worker processes
        df = _reread(_compare(cur, f, balance=False)[0], schema.RES_COMPARISON,
                     ["n_participant", "n_comparison"])
    return _difference_hidden(df, *_isolated_scales(disclosure.isolating_gains(cur, f)))


@cached
def balance_slice(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Baseline balance (res_balance's rows: SMD of the pre scores and of each covariate level)
    of exactly the filtered people; the stored table answers the unfiltered view."""
    if f.is_empty:
        df = outcomes.balance(cur)
    else:
        df = _reread(_compare(cur, f, comparison=False)[1], schema.RES_BALANCE,
                     ["n_participant", "n_comparison"])
        if not len(df):
            return df
        order = df.assign(_pre=(df.covariate.astype(str) != "pre_score"))
        df = order.sort_values(["_pre", "covariate", "instrument", "scale", "level"],
                               kind="stable").drop(columns="_pre").reset_index(drop=True)
    return balance_hidden(cur, f, df)


def balance_hidden(cur: duckdb.DuckDBPyConnection, f: Filters, df: pd.DataFrame
                   ) -> pd.DataFrame:
    """A balance table of view `f` under the differencing rule: the pre-score rows of the
    scales whose pre scores one filter value changes by 1..k-1, and every covariate row when
    the view's people change so."""
    if not len(df):
        return df
    pre = (df.covariate.astype(str) == "pre_score").to_numpy()
    people = disclosure.isolating(cur, f)
    scales, rows = _isolated_scales(disclosure.isolating_scores(cur, f), ("pre",))
    parts = [_difference_hidden(df[pre], scales, rows),
             _difference_hidden(df[~pre], set(), people, everything=len(people) > 0)]
    out = pd.concat(parts).sort_index()
    why = [p.attrs["isolating"] for p in parts if "isolating" in p.attrs]
    out.attrs = {"isolating": " or ".join(why)} if why else {}
    return out
