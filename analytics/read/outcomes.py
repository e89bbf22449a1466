"""The Outcomes page's queries: the researcher result tables of this data version (pre/post
effects, reliability, the mixed model), and the filtered wave means and participant-vs-
comparison difference, read from the score and gain rollups or the day facts (`sql.use_rollups`).
The comparison difference carries CR2 intervals clustered by exchange, exact from per exchange x
arm sums; the stored baseline balance and raw/adjusted comparison (res_balance, res_comparison)
are read as computed per data version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from analytics import suppression
from analytics.read import sql
from analytics.read.cache import cached
from analytics.read.filters import Filters
from analytics.read.sql import Scope
from analytics.stats.means import cr2_means, welch_difference
from etl import schema

__all__ = ["prepost_results", "prepost_slice", "prepost_extremes", "reliability",
           "longitudinal", "wave_means",
           "comparison_difference", "gain_moments", "COMPARISON_COLUMNS", "balance",
           "comparison_results", "sensitivity", "reliability_groups",
           "floor_ceiling", "invariance"]


def _result(cur: duckdb.DuckDBPyConnection, table: schema.Table, where: str = "",
            params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """A researcher result table; empty (with its columns) when not computed yet."""
    if not sql.table_exists(cur, table.name):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in table.column_names})
    return sql.df(cur, f"SELECT * FROM {table.name} {where}", params)


def _prepost_suppress(df: pd.DataFrame, hide: Sequence[bool] | None = None) -> pd.DataFrame:
    """Pre/post rows (stored or computed, `suppressed` a string) through the small-cell rule at
    today's k: a row flagged suppressed (at the k of its computation) counts as n missing, so
    it stays blanked whatever k is now; `hide`: the differencing rule's rows
    (`disclosure.isolating_gains`)."""
    if not len(df):
        return df
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
    out = sql.suppress(df.drop(columns="suppressed").assign(_n=df.n.mask(stored)), "_n",
                       hide=hide)
    return out.drop(columns="_n")


def _prepost_stored(cur: duckdb.DuckDBPyConnection, group_by: str) -> pd.DataFrame:
    return _result(cur, schema.RES_PREPOST,
                   "WHERE group_by = $g ORDER BY instrument, scale, \"group\"", {"g": group_by})


@cached
def prepost_results(cur: duckdb.DuckDBPyConnection, group_by: str = "overall") -> pd.DataFrame:
    """res_prepost rows for one grouping (overall, cluster, country, modality, setting …)."""
    return _prepost_suppress(_prepost_stored(cur, group_by))


def _single_group(f: Filters) -> tuple[str, str] | None:
    """If the filters pick exactly one cluster/country/modality/setting, the precomputed group
    that matches them."""
    picks = [(g, getattr(f, g)) for g in ("cluster", "country", "modality", "setting")]
    chosen = [(g, v[0]) for g, v in picks if len(v) == 1]
    others = [g for g, v in picks if len(v) > 1]
    if len(chosen) == 1 and not others:
        return chosen[0]
    return None


def _is_precomputed(f: Filters) -> tuple[str, str | None] | None:
    """(group_by, group) of the stored res_prepost rows that are exactly the filtered people:
    no filter at all -> overall; one value of one stored grouping and nothing else -> it."""
    if f.start is not None or f.end is not None or f.program or f.exchange or f.term or f.role:
        return None
    if not any(getattr(f, g) for g in ("cluster", "country", "modality", "setting")):
        return ("overall", None)
    return _single_group(f)


_SLICE_BY = {"cluster": "fp.cluster_id", "country": "fp.country", "modality": "fx.modality",
             "setting": "fx.setting"}


@cached
def prepost_slice(cur: duckdb.DuckDBPyConnection, f: Filters, by: str = "overall"
                  ) -> pd.DataFrame:
    """The pre/post table of exactly the filtered participants: its overall rows (one per
    instrument x scale), or with `by` (cluster, country, modality, setting) that grouping's
    rows, computed with `analytics.stats.prepost.prepost` (the function the derive step uses)
    on the per-person scale scores (res_person_scores) in scope: pairs per participant x
    exchange, CR2 intervals clustered by exchange, the small-cell rule at the project's k.
    The stored res_prepost answers when the filters are exactly one of its groups (issue 17)."""
    if by != "overall" and by not in _SLICE_BY:
        raise ValueError(f"unknown grouping {by!r}; one of overall, {', '.join(_SLICE_BY)}")
    from analytics.read import disclosure

    rows = disclosure.isolating_gains(cur, f, None if by == "overall" else by)
    hidden = set(rows.cell)
    out = None
    stored = _is_precomputed(f)
    if stored is not None and (by == "overall" or stored[0] == "overall"):
        df = _prepost_stored(cur, by if stored[0] == "overall" else stored[0])
        if stored[1] is not None:
            df = df[df["group"].astype("string") == stored[1]]
        if len(df) or stored[0] == "overall":
            out = _prepost_suppress(df.reset_index(drop=True),
                                    _prepost_hide(df, by, hidden)).reset_index(drop=True)
    if out is None:
        out = _prepost_computed(cur, f, by, hidden)
    if not len(out):
        return out
    groups = ["all"] * len(out) if by == "overall" else [
        "" if pd.isna(g) else str(g) for g in out["group"]]
    return disclosure.explain(out, rows, [(str(a), str(b), g, False) for a, b, g in
                                          zip(out.instrument, out.scale, groups, strict=True)])


def _prepost_hide(df: pd.DataFrame, by: str, hidden: set[Any]) -> list[bool] | None:
    """The pre/post rows whose pairs one filter value changes by fewer than k (their cells in
    `hidden`, `disclosure.isolating_gains` of the view by `by`): the difference of the two
    views' mean × n would be a small group's sum of pre scores, post scores or gains."""
    from analytics.read import disclosure

    if not len(df):
        return None
    if by == "overall":
        return disclosure.hidden_rows(df.assign(_g="all"), hidden, ["instrument", "scale", "_g"])
    return disclosure.hidden_rows(df, hidden, ["instrument", "scale", "group"])


def _prepost_computed(cur: duckdb.DuckDBPyConnection, f: Filters, by: str = "overall",
                      hidden: set[Any] = frozenset()) -> pd.DataFrame:
    """`prepost_slice` computed from the per-person pairs, never from the stored table: DuckDB
    reduces the complete pairs in scope (res_person_gains' pre and post, formed once at load)
    to per-exchange moments and the counts of rounded changes, and
    `analytics.stats.prepost.prepost_from_moments` (what `prepost` itself reduces to) makes
    the table from those sums, so no pair leaves the database. A group none of whose pairs is
    complete has no row here (the pairs table holds complete pairs only); `prepost` gives it a
    suppressed n = 0 row, which says nothing a reader could use (issue 17: pivoting every score
    to find those groups cost 6 s of a 1M-participant request)."""
    from analytics.stats.prepost import prepost_from_moments

    base, p = sql.scope(f, scores=True, months=sql.months_base(cur))
    grp = f"CAST({_SLICE_BY[by]} AS VARCHAR)" if by != "overall" else "'overall'"
    pairs = f"""{base},
        ok AS (
            SELECT fg.exchange_id, fg.instrument, fg.scale, {grp} AS "group", fg.pre AS x,
                   fg.post AS y, fg.post - fg.pre AS d
            FROM fg JOIN fp USING (pid) JOIN fx USING (exchange_id){
                f" WHERE {_SLICE_BY[by]} IS NOT NULL" if by != "overall" else ""})"""
    cells = sql.df(cur, f"""WITH {pairs}
        SELECT instrument, scale, "group", exchange_id, count(*) AS n, avg(x) AS mean_pre,
               avg(y) AS mean_post, avg(d) AS mean_diff, var_pop(x) * count(*) AS m2_pre,
               var_pop(y) * count(*) AS m2_post, var_pop(d) * count(*) AS m2_diff,
               covar_pop(x, y) * count(*) AS c_prepost
        FROM ok GROUP BY ALL
        ORDER BY instrument, scale, "group", exchange_id""", p)
    if not len(cells):
        return prepost_results(cur, "overall").iloc[0:0]
    hist = sql.df(cur, f"""WITH {pairs}
        SELECT instrument, scale, "group", round_even(d, 10) AS diff, count(*) AS count
        FROM ok GROUP BY ALL""", p)
    out = prepost_from_moments(cells.assign(group_by=by), hist.assign(group_by=by),
                               k=suppression.MIN_CELL)
    return _prepost_suppress(out, _prepost_hide(out, by, hidden)).reset_index(drop=True)


@cached
def prepost_extremes(cur: duckdb.DuckDBPyConnection, f: Filters, k: int = 3
                     ) -> tuple[pd.DataFrame, str]:
    """The k strongest and k weakest pre→post changes (Hedges' g) of the filtered participants
    (`prepost_slice`) and what they are computed on."""
    df = prepost_slice(cur, f)
    scope = "the filtered participants"
    if not len(df):
        return df, scope
    df = df[~df.suppressed.astype(bool)].dropna(subset=["hedges_g"]).sort_values(
        "hedges_g", ascending=False)
    if len(df) > 2 * k:
        df = pd.concat([df.head(k), df.tail(k)])
    return df, scope


@cached
def reliability(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return _result(cur, schema.RES_RELIABILITY, "ORDER BY instrument, scale, wave")


def _resuppressed(df: pd.DataFrame) -> pd.DataFrame:
    """A stored table with `n` and `suppressed`, through the small-cell rule at today's k: a
    row stored as suppressed (at the k of its computation) counts as n missing."""
    if not len(df):
        return df.assign(suppressed=pd.Series(dtype=bool))
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
    keep = [c for c in ("n_items", "scale_min", "scale_max") if c in df.columns]
    out = sql.suppress(df.drop(columns="suppressed").assign(_n=df.n.mask(stored)), "_n",
                       keep=keep)
    return out.drop(columns="_n")


@cached
def reliability_groups(cur: duckdb.DuckDBPyConnection, group_by: str = "language",
                       wave: str | None = "pre") -> pd.DataFrame:
    """α and ω of one grouping (all, language, country) at one wave, or every wave when `wave`
    is None (res_reliability_groups), suppressed under k."""
    df = _result(cur, schema.RES_RELIABILITY_GROUPS,
                 "WHERE group_by = $g AND (wave = $w OR $w IS NULL) "
                 "ORDER BY instrument, scale, wave, \"group\"", {"g": group_by, "w": wave})
    return _resuppressed(df)


@cached
def floor_ceiling(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Floor and ceiling shares per scale and wave (res_floor_ceiling), suppressed under k."""
    df = _result(cur, schema.RES_FLOOR_CEILING, "ORDER BY instrument, scale, wave")
    return _resuppressed(df)


@cached
def invariance(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The invariance (DIF) screen across languages (res_invariance): one row per scale x item x
    language tested, with the scale's verdict on each row."""
    return _result(cur, schema.RES_INVARIANCE, "ORDER BY instrument, scale, item, language")


@cached
def longitudinal(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return _result(cur, schema.RES_LONGITUDINAL, "ORDER BY instrument, scale")


_WAVE_MEANS_COLUMNS = ["instrument", "scale", "wave", "comparison", "n", "mean", "sd",
                       "ci_low", "ci_high", "ci_low_cr2", "ci_high_cr2", "df_cr2",
                       "n_clusters", "few_clusters", "suppressed"]


def _wave_means_finish(cells: pd.DataFrame, hidden: set[Any] = frozenset()) -> pd.DataFrame:
    """Per-exchange cells -> means with the t and the CR2 (by exchange) interval, wave order,
    and the small-cell rule (the comparison flag locates the row); `hidden` rows (instrument,
    scale, wave, comparison) are the differencing rule's (`disclosure.isolating_scores`)."""
    if not len(cells):
        return pd.DataFrame(columns=_WAVE_MEANS_COLUMNS)
    df = cr2_means(cells, ["instrument", "scale", "wave", "comparison"])
    df = df.assign(_o=sql.wave_rank(df.wave)).sort_values(["instrument", "scale", "comparison",
                                                           "_o"])
    hide = [(str(a), str(b), str(c), bool(d)) in hidden for a, b, c, d in
            df[["instrument", "scale", "wave", "comparison"]].itertuples(index=False)]
    return sql.suppress(df.drop(columns="_o"), "n", keep=["comparison"],
                        hide=hide)[_WAVE_MEANS_COLUMNS]


def _wave_means_days(cur: duckdb.DuckDBPyConnection, f: Filters, scope: Scope = sql.scope,
                     hidden: set[Any] = frozenset()) -> pd.DataFrame:
    ctes, p = scope(f, include_comparison=True, scores=True, months=sql.months_base(cur))
    return _wave_means_finish(sql.df(cur, f"""WITH {ctes}
        SELECT fs.instrument, fs.scale, fs.wave, fp.comparison, fs.exchange_id, count(*) AS n,
               sum(fs.score) AS sum, sum(fs.score * fs.score) AS sumsq
        FROM fs JOIN fp USING (pid) GROUP BY ALL
    """, p), hidden)


def _wave_means_rollup(cur: duckdb.DuckDBPyConnection, f: Filters,
                       hidden: set[Any] = frozenset()) -> pd.DataFrame:
    dims, p = sql.dims(f)
    return _wave_means_finish(sql.rdf(cur, f"""WITH {dims}
        SELECT instrument, scale, wave, comparison, exchange_id, sum(n) AS n, sum(sum) AS sum,
               sum(sumsq) AS sumsq
        FROM ({sql.cells(sql.R_SCORES, f, p, comparison=True)}) GROUP BY ALL
    """, p), hidden)


@cached
def wave_means(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Mean scale score per wave for the filtered participants, with the t-based 95% CI
    (``ci_low``/``ci_high``: mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n, as R's `t.test`, participants as
    independent) and the design-aware one the page shows (``ci_low_cr2``/``ci_high_cr2``:
    cluster-robust by exchange, CR2 with Satterthwaite df, `analytics.stats.means.cr2_means`);
    comparison group apart. Empty before the scores are computed. A wave whose respondents
    one filter value would change by fewer than k is hidden (`disclosure.isolating_scores`):
    two such views' means would give that small group's sum of scores."""
    from analytics.read import disclosure

    rows = disclosure.isolating_scores(cur, f)
    hidden = set(rows.cell)
    if sql.use_rollups(cur, f):
        out = _wave_means_rollup(cur, f, hidden)
    else:
        out = _wave_means_days(cur, f, hidden=hidden)
    return disclosure.explain(out, rows, [
        (str(a), str(b), str(c), bool(d)) for a, b, c, d in
        out[["instrument", "scale", "wave", "comparison"]].itertuples(index=False)])


def gain_moments(cur: duckdb.DuckDBPyConnection, f: Filters, by: Sequence[str] = (),
                 where: str = "", scope: Scope = sql.scope) -> pd.DataFrame:
    """Paired post − pre gains per participant, exchange and scale (both waves scored, from
    `res_person_gains`), reduced to n, mean and sample SD per instrument × scale × `by`
    (columns of fp, e.g. comparison, gender). At 1M participants with a date range: 1.7 s
    from the scores, 0.1 s from the gains."""
    ctes, p = scope(f, include_comparison=True, scores=True, months=sql.months_base(cur))
    keys = ", ".join(["fg.instrument", "fg.scale", *(f"fp.{c}" for c in by)])
    return sql.df(cur, f"""WITH {ctes}
        SELECT {keys}, count(*) AS n, avg(fg.gain) AS mean, stddev_samp(fg.gain) AS sd
        FROM fg JOIN fp USING (pid)
        WHERE TRUE{where}
        GROUP BY ALL ORDER BY ALL
    """, p)


COMPARISON_COLUMNS = ["instrument", "scale", "n_exchange", "n_comparison", "gain_exchange",
                      "gain_comparison", "diff", "ci_low", "ci_high", "se_cr2", "df_cr2",
                      "ci_low_cr2", "ci_high_cr2", "p_cr2", "n_clusters", "few_clusters",
                      "suppressed"]


def _comparison_from_cells(g: pd.DataFrame, hidden: set[Any] = frozenset()) -> pd.DataFrame:
    """Participants' minus comparison group's gain per scale from per exchange x arm sums
    (instrument, scale, comparison, exchange_id, n, sum, sumsq).

    ``diff`` with the Welch 95% CI (``ci_low``, ``ci_high``: participants treated as
    independent, R ``t.test(var.equal = FALSE)``) and, beside it, the design-aware columns:
    CR2 cluster-robust SE by exchange with Satterthwaite df (``*_cr2``, R clubSandwich), exact
    from these sums (`analytics.stats.comparison.cr2_from_cells`), the number of exchanges and
    ``few_clusters`` below 10. Either arm under MIN_CELL suppresses the row, and so does either
    arm's cell in `hidden` (`disclosure.isolating_gains`: one filter value changes its pairs
    by fewer than k, so two views' gain × n would give a small group's sum of gains). Rows
    without an exchange are each a cluster of its own (`means.unlabelled_rows`)."""
    from analytics.read import disclosure
    from analytics.stats.comparison import cluster_codes, cr2_from_cells
    from analytics.stats.means import unlabelled_rows

    g = unlabelled_rows(g, cluster="exchange_id")
    rows = []
    cr2_nan = dict.fromkeys(COMPARISON_COLUMNS[9:16], math.nan)
    for (inst, scale), d in g.groupby(["instrument", "scale"], sort=True):
        comp = d.comparison.astype(bool).to_numpy()
        if not comp.any():
            continue
        n, s1, s2 = (d[c].to_numpy(float) for c in ("n", "sum", "sumsq"))
        arms = []
        for mine in (~comp, comp):
            na = float(n[mine].sum())
            mean = float(s1[mine].sum()) / na if na else math.nan
            var = ((float(s2[mine].sum()) - na * mean * mean) / (na - 1) if na > 1
                   else math.nan)
            arms.append((int(na), mean, max(var, 0.0) if var == var else var))
        (na, ma, va), (nb, mb, vb) = arms
        diff = lo = hi = math.nan
        if na > 1 and nb > 1:
            diff, lo, hi = welch_difference(na, ma, va, nb, mb, vb)
        cr2 = dict(cr2_nan)
        if na > 1 and nb > 1:
            ex = cluster_codes(d["exchange_id"])
            x = np.column_stack([np.ones(len(d)), (~comp).astype(float)])
            gram = np.zeros((ex.max() + 1, 2, 2))
            np.add.at(gram, ex, n[:, None, None] * x[:, :, None] * x[:, None, :])
            xy = np.zeros((ex.max() + 1, 2))
            np.add.at(xy, ex, s1[:, None] * x)
            fit = cr2_from_cells(gram, xy)
            t = fit.test(np.array([0.0, 1.0]))
            cr2 = {k: t[k] for k in cr2_nan}
        rows.append([inst, scale, na, nb, ma, mb, diff, lo, hi, *cr2.values(), min(na, nb)])
    df = pd.DataFrame(rows, columns=[*COMPARISON_COLUMNS[:-1], "_n"])
    df["n_clusters"] = pd.array(df["n_clusters"], dtype="Int64")
    df["few_clusters"] = pd.array(df["few_clusters"], dtype="boolean")
    hide = None
    if len(df) and hidden:
        cell = df[["instrument", "scale"]].assign(_g="all")
        arms = [disclosure.hidden_rows(cell, hidden, ["instrument", "scale", "_g"], c) or
                [False] * len(df) for c in (False, True)]
        hide = [a or b for a, b in zip(*arms, strict=True)]
    return sql.suppress(df, "_n", hide=hide)[COMPARISON_COLUMNS]


def _comparison_difference_days(cur: duckdb.DuckDBPyConnection, f: Filters,
                                scope: Scope = sql.scope, hidden: set[Any] = frozenset()
                                ) -> pd.DataFrame:
    ctes, p = scope(f, include_comparison=True, scores=True, months=sql.months_base(cur))
    return _comparison_from_cells(sql.df(cur, f"""WITH {ctes}
        SELECT fg.instrument, fg.scale, fp.comparison, fg.exchange_id, count(*) AS n,
               sum(fg.gain) AS sum, sum(fg.gain * fg.gain) AS sumsq
        FROM fg JOIN fp USING (pid)
        GROUP BY ALL ORDER BY ALL
    """, p), hidden)


def _comparison_difference_rollup(cur: duckdb.DuckDBPyConnection, f: Filters,
                                  hidden: set[Any] = frozenset()) -> pd.DataFrame:
    dims, p = sql.dims(f)
    g = sql.rdf(cur, f"""WITH {dims}
        SELECT instrument, scale, comparison, exchange_id, sum(n) AS n, sum(sum) AS sum,
               sum(sumsq) AS sumsq
        FROM ({sql.cells(sql.R_GAINS, f, p, comparison=True)}) GROUP BY ALL
        ORDER BY ALL
    """, p)
    return _comparison_from_cells(g, hidden)


@cached
def comparison_difference(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Mean post−pre gain of participants minus that of the comparison group, per scale, for
    the filtered people: the CR2 columns (clustered by exchange, Satterthwaite df) are the
    design-aware interval the page shows; the Welch 95% CI (as R's `t.test(var.equal =
    FALSE)`, participants independent) stays beside it, labelled. Empty when there is no
    comparison group. A scale whose pairs in either arm one filter value would change by
    fewer than k is hidden (`disclosure.isolating_gains`)."""
    from analytics.read import disclosure

    rows = disclosure.isolating_gains(cur, f)
    hidden = set(rows.cell)
    if sql.use_rollups(cur, f):
        out = _comparison_difference_rollup(cur, f, hidden)
    else:
        out = _comparison_difference_days(cur, f, hidden=hidden)
    return disclosure.explain(out, rows, [(str(a), str(b), "all", c) for a, b in
                                          zip(out.instrument, out.scale, strict=True)
                                          for c in (False, True)])


def _stored(cur: duckdb.DuckDBPyConnection, table: schema.Table, order: str,
            n_cols: Sequence[str]) -> pd.DataFrame:
    """A stored res_* table with a `suppressed` column, the small-cell rule applied again at
    today's k: a row stored as suppressed counts as n missing."""
    df = _result(cur, table, f"ORDER BY {order}")
    if not len(df):
        return df
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
    n = df[list(n_cols)].min(axis=1).mask(stored)
    return sql.suppress(df.drop(columns="suppressed").assign(_n=n), "_n").drop(columns="_n")


@cached
def balance(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """res_balance (baseline SMDs participants vs comparison, all participants; precomputed
    per data version, so the filters do not apply)."""
    return _stored(cur, schema.RES_BALANCE, "covariate <> 'pre_score', covariate, instrument, "
                   "scale, level", ["n_participant", "n_comparison"])


@cached
def comparison_results(cur: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """res_comparison: raw and ANCOVA-adjusted differences with CR2 errors per scale (all
    participants; precomputed per data version)."""
    return _stored(cur, schema.RES_COMPARISON, "instrument, scale, method DESC",
                   ["n_participant", "n_comparison"])


@cached
def sensitivity(cur: duckdb.DuckDBPyConnection, wave: str = "followup") -> pd.DataFrame:
    """res_sensitivity rows of one wave (completers, ipw, delta grid, tipping_point per scale).

    The small-cell rule is applied again at today's k, on the cells each row rests on: the
    responders (completers' rows) or the smaller of responders and non-responders (the
    all-participant rows); a row stored as suppressed stays suppressed. The grid's delta
    locates its row and is kept; a suppressed tipping point's delta is a result and is blanked.
    """
    df = _result(cur, schema.RES_SENSITIVITY, "WHERE wave = $w ORDER BY instrument, scale",
                 {"w": wave})
    if not len(df):
        return df.assign(suppressed=pd.Series(dtype=bool))
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
    n = pd.to_numeric(df["n"], errors="coerce").to_numpy(float)
    resp = pd.to_numeric(df["n_responded"], errors="coerce").to_numpy(float)
    cell = np.where(df["method"].astype(str) == "completers", resp, np.minimum(resp, n - resp))
    cell = np.where(stored, np.nan, cell)
    out = sql.suppress(df.drop(columns="suppressed").assign(_n=cell), "_n", keep=["delta"])
    hide = out["suppressed"].to_numpy(bool) & (out["method"].astype(str) == "tipping_point")
    out["delta"] = out["delta"].astype("float64").mask(hide)
    return out.drop(columns="_n")


# ---- What goes with larger gains (issue 13): dose–response; setting, modality and purpose ----
# res_dose_response, res_dose_bins, res_moderation are computed once per data version over all
# exchange participants (the page's filters do not apply, as for the mixed model). The
# small-cell rule is applied again here at today's k: a row stored as suppressed stays
# suppressed, and a dose curve with one bin under k is blanked whole (its bins' counts add up to
# the slope's n, so one blank bin among shown ones would be recoverable by subtraction).

__all__ += ["dose_bins", "dose_response", "moderation", "moderators"]


def _gains_resuppress(df: pd.DataFrame, n: pd.Series, keep: tuple[str, ...] = ()
                      ) -> pd.DataFrame:
    if not len(df):
        return df.assign(suppressed=pd.Series(dtype=bool))
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != "")).to_numpy(bool)
    out = sql.suppress(df.drop(columns="suppressed").assign(_n=n.mask(stored)), "_n", keep=keep)
    return out.drop(columns="_n")


@cached
def dose_response(cur: duckdb.DuckDBPyConnection, measure: str = "events") -> pd.DataFrame:
    """res_dose_response rows of one dose measure (events | minutes), one per scale."""
    df = _result(cur, schema.RES_DOSE_RESPONSE,
                 "WHERE measure = $m ORDER BY instrument, scale", {"m": measure})
    return _gains_resuppress(df, pd.to_numeric(df["n"], errors="coerce"))


@cached
def dose_bins(cur: duckdb.DuckDBPyConnection, measure: str = "events") -> pd.DataFrame:
    """res_dose_bins rows of one dose measure: the binned curve per scale."""
    df = _result(cur, schema.RES_DOSE_BINS,
               "WHERE measure = $m ORDER BY instrument, scale, bin", {"m": measure})
    if not len(df):
        return _gains_resuppress(df, df.get("n", pd.Series(dtype=float)))
    n = pd.to_numeric(df["n"], errors="coerce")
    # the smallest bin decides for the whole curve (a stored blank bin counts as missing)
    stored = (df.suppressed.notna() & (df.suppressed.astype("string") != ""))
    n = n.mask(stored)
    curve = n.groupby([df["instrument"], df["scale"]]).transform(
        lambda s: s.min() if s.notna().all() else float("nan"))
    return _gains_resuppress(df, curve, keep=("bin", "n_bins"))


@cached
def moderators(cur: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """(moderators, later waves) present in res_moderation, in the table's order."""
    df = _result(cur, schema.RES_MODERATION, "")
    if not len(df):
        return [], []
    from analytics.stats.longitudinal import wave_order
    from analytics.stats.moderation import MODERATORS

    present = set(df["moderator"].astype(str))
    mods = [m for m in MODERATORS if m in present] + sorted(present - set(MODERATORS))
    return mods, wave_order(df["wave"].astype(str).unique())


@cached
def moderation(cur: duckdb.DuckDBPyConnection, moderator: str = "modality",
               wave: str = "post") -> pd.DataFrame:
    """res_moderation rows of one moderator and later wave: each level's gain, its difference
    from the reference level and the interaction test, per scale."""
    df = _result(cur, schema.RES_MODERATION,
               "WHERE moderator = $m AND wave = $w ORDER BY instrument, scale, "
               "CASE row WHEN 'gain' THEN 0 WHEN 'difference' THEN 1 ELSE 2 END, level",
               {"m": moderator, "w": wave})
    return _gains_resuppress(df, pd.to_numeric(df["n"], errors="coerce"), keep=("df_num",))
