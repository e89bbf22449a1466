"""Differencing across filters: which cells of a filtered view could be subtracted from a
neighbouring view to reveal a group of fewer than k participants.

Two requests that differ by one filter value (cluster in {A, B} vs {A}; every country vs every
country but one; March–June vs April–June) give, by subtraction, the people that one value adds
or removes. The rule, for a cell (the whole selection, or one country / cluster of a table) of
the view of filters F:

- for each filter dimension d restricted to a set S with two or more values, and each v in S,
  the people of the cell that removing v would lose (those whose values of d within S are
  exactly {v}) number 0 or at least k; and
- when S lacks exactly one value w of the data (so adding w gives the unrestricted view), the
  people of the cell that the unrestricted view adds (none of their values in S, including
  people with no value of d at all, e.g. no exchange yet) number 0 or at least k;
- dates are whole months (`filters.canonical_filters`), a range's months being the values of
  one more dimension, removable or addable only at its two ends.

An unrestricted dimension checks nothing itself: its neighbours are the restricted views above,
which do. Every pair of requests that differ by one value has one of its two views checking
exactly that pair's difference, so when both are shown the difference is 0 or at least k
participants (a count), and a mean or sum that changes between them is over those people or
over people who have v among several values: the rule bounds those too (for exchange
dimensions and months, the people of the cell who have v at all number 0 or at least k).
Cells that break the rule are suppressed like a small cell (pages say which filter isolates a
small group, never how small). This module computes, for one view, one or two GROUP BYs per
dimension, exact whatever the rollups hold: over each row's months as stored bit masks
(res_pair_months) or over stored cubes of rows by cell and month set (res_week_months,
res_retention_months, res_score_months, res_gain_months) when the data version has them, else
over the day facts.

Means are sums over rows divided by their number, so the same rule runs over the rows a mean
counts (a `_Unit`): participants (`isolating`: counts, shares and minutes per country, cluster
or equity group), scored rows (`isolating_scores`: wave means) and pairs with both pre and post
scored (`isolating_gains`: pre/post tables, the comparison difference, gains per group). Each
is `@cached` per data version and request; `explain` gives a read answer the page's words.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import duckdb
import pandas as pd

from analytics import suppression
from analytics.derive.rollups import MASK_MONTHS
from analytics.read import sql
from analytics.read.cache import cached
from analytics.read.filters import FilterOptions, Filters, canonical_filters, month_end

__all__ = ["DIMENSIONS", "CELLS", "GAIN_GROUPS", "isolating", "isolating_cells",
           "isolating_scores", "isolating_gains", "isolating_stages", "isolating_dropout",
           "isolating_exchange_activity", "isolating_retention", "isolating_weekly",
           "hidden_rows", "describe", "explain"]

# Filter dimensions: person-level (one value per participant, from fp) and exchange-level (the
# values of the exchanges a participant has activity or answers in, from fx).
_PERSON = {"cluster": "fp.cluster_id", "country": "fp.country", "role": "fp.role"}
_EXCHANGE = {"program": "fx.program", "exchange": "fx.exchange_id", "term": "fx.term",
             "modality": "fx.modality", "setting": "fx.setting"}
DIMENSIONS: tuple[str, ...] = (*_PERSON, *_EXCHANGE, "month")
# The cells a view can be split into: None = the whole selection.
CELLS: dict[str | None, str] = {None: "'all'", "country": "fp.country",
                                "cluster": "fp.cluster_id", "gender": "fp.gender",
                                "age_band": "fp.age_band", "connectivity": "fp.connectivity",
                                "income_group": "fp.income_group"}
_COLUMNS = ["cell", "dimension", "value", "change", "n"]


@dataclass(frozen=True)
class _Unit:
    """What a cell counts: its rows (FROM clause over the scope's CTEs, with fp joined), each
    row's identity for distinct counts, the scope's options those rows need, and whether each
    row belongs to one exchange (a scored row, a pair, a person's activity in one exchange:
    then an exchange dimension moves the row whole) or to a person (whose exchanges may hold
    several values of a dimension). A date range keeps a row when it has a day in the range:
    `months` (SQL over the undated scope, columns `keys` and m) gives each row's months, by
    default its person's months with activity or answers (as the scope keeps people).

    With the stored month masks (`sql.months_base`), `masks` gives the same months as one bit
    mask per row (columns `keys`, months; default: the person's, from res_pair_months), so no
    query groups the day facts. A cube unit (`weight` set) counts the rows of a stored cube
    (res_week_months, res_retention_months, res_pair_month_cube) instead of people: its `rows`
    (aliased fp, with the cube's `months` and the columns its cells and the filter dimensions
    read) keep a `{where}` for the scope's role, comparison and month range, and each row
    counts `weight` pairs."""
    rows: str
    key: str
    scope: dict[str, bool]
    one_exchange: bool = False
    months: str | None = None
    keys: str = "pid"
    masks: str | None = None
    weight: str | None = None


def _months_of(days: str, keys: str) -> str:
    """SQL of the distinct months (m) per row (`keys`) of `days` (columns `keys`, day)."""
    return f"SELECT DISTINCT {keys}, CAST(date_trunc('month', day) AS DATE) AS m FROM ({days})"


_PAIRS = f"{sql.T_PMONTHS} JOIN fx USING (exchange_id)"
# A person's months with events or answers in the exchanges in scope, as a mask per pair.
_PERSON_MASKS = f"SELECT pid, active_months | answer_months AS months FROM {_PAIRS}"
_ACTIVE_MASKS = f"SELECT pid, exchange_id, active_months AS months FROM {_PAIRS} " \
                "WHERE active_months <> 0"

# Counts of people (the headline, countries, clusters).
PEOPLE = _Unit("fp", "pid", {})
# The attrition funnel's stages: each counts the people of the view who reached it (enrolled;
# with events in the range; with answers in a wave, undated). Cell: the stage's name as the
# funnel shows it. Being active is a row's own days (events only), the rest its person's.
_ACTIVE = "'active in the log'"
STAGES = _Unit(f"""(SELECT pid, 'enrolled' AS stage FROM fp
                    UNION ALL SELECT DISTINCT pid, {_ACTIVE} FROM ({{active}})
                    UNION ALL SELECT DISTINCT pid, 'answered ' || wave FROM fr) st
                   JOIN fp USING (pid)""", "(pid, st.stage)", {},
               months=f"""SELECT DISTINCT pid, st.stage, pm.m
                   FROM (SELECT pid, 'enrolled' AS stage FROM fp
                         UNION ALL SELECT DISTINCT pid, 'answered ' || wave FROM fr) st
                   JOIN (SELECT DISTINCT pid, CAST(date_trunc('month', day) AS DATE) AS m
                         FROM (SELECT pid, day FROM fev UNION ALL
                               SELECT pid, day FROM {{answers}})) pm USING (pid)
                   UNION ALL SELECT DISTINCT pid, {_ACTIVE},
                                    CAST(date_trunc('month', day) AS DATE) FROM fev""",
               keys="pid, stage",
               masks=f"""SELECT pid, st.stage, pm.months
                   FROM (SELECT pid, 'enrolled' AS stage FROM fp
                         UNION ALL SELECT DISTINCT pid, 'answered ' || wave FROM fr) st
                   JOIN ({_PERSON_MASKS}) pm USING (pid)
                   UNION ALL SELECT pid, {_ACTIVE}, months FROM ({_ACTIVE_MASKS})""")
STAGE_CELL = "st.stage"
# Drop-out per group: the people who answered pre (the base) and, among them, those who did not
# answer post. Cell: group '|' part ('answered pre' or 'dropped').
DROPOUT = _Unit("""(SELECT pid, 'answered pre' AS part FROM fr GROUP BY pid
                    HAVING bool_or(wave = 'pre')
                    UNION ALL SELECT pid, 'dropped' FROM fr GROUP BY pid
                    HAVING bool_or(wave = 'pre') AND NOT bool_or(wave = 'post')) st
                   JOIN fp USING (pid)""", "(pid, st.part)", {})
# Activity per exchange (Participation by exchange: active people, minutes per active person):
# one row per person and exchange with events in the range. Cell: the exchange.
EXCHANGE_ACTIVITY = _Unit("({active}) st JOIN fp USING (pid)",
                          "(pid, st.exchange_id)", {}, one_exchange=True,
                          months=_months_of("SELECT pid, exchange_id, day FROM fev",
                                            "pid, exchange_id"),
                          keys="pid, exchange_id", masks=_ACTIVE_MASKS)
# Retention per cohort (`participation.retention_by_cohort`): one row per person × exchange ×
# week since the pair's first active day in that exchange (over all its days, so a date range
# selects weeks and never renumbers them) with events in the range, and one per pair for the
# cohort's size (week 'n'). Cell: term '|' week.
_WEEK_SINCE = "CAST(CAST((day - d0) // 7 AS INTEGER) AS VARCHAR)"
RETENTION = _Unit(f"""(SELECT DISTINCT pid, exchange_id, term, {_WEEK_SINCE} AS week
                       FROM fe JOIN ffirst USING (pid, exchange_id)
                       UNION ALL SELECT DISTINCT pid, exchange_id, term, 'n' FROM fe) st
                      JOIN fp USING (pid)""", "(pid, st.exchange_id, st.week)", {},
                  one_exchange=True,
                  months=_months_of(f"""SELECT pid, exchange_id, {_WEEK_SINCE} AS week, day
                                        FROM fev JOIN ffirst USING (pid, exchange_id)
                                        UNION ALL SELECT pid, exchange_id, 'n', day FROM fev""",
                                    "pid, exchange_id, week"),
                  keys="pid, exchange_id, week")
RETENTION_CELL = "st.term || '|' || st.week"


def _cube(table: str, cols: str) -> str:
    """Rows of the cube `table` (alias c: a cell, months and a count) in scope, with their
    person's institution (fi) and exchange (fx) attributes: a cube unit's rows (`_Unit`)."""
    return f"""SELECT c.exchange_id, c.role, c.comparison, c.months, fi.country, fi.cluster_id,
                      fx.term, {cols}
               FROM {table} c JOIN fi USING (institution_id) JOIN fx USING (exchange_id)
               WHERE TRUE{{where}}"""


def _cube_rows(table: str, label: str, extra: str = "") -> str:
    """A cube unit's rows: `table`'s (pairs per cell and months) labelled `label` in column
    wk, and the pairs with events of res_pair_month_cube (the 'n' rows) labelled 'n'; `extra`
    adds columns."""
    return f"""({_cube(table, f"c.pairs AS w{extra}, {label} AS wk")}
                UNION ALL {_cube(sql.T_PMCUBE, f"c.pairs{extra}, 'n'")}) fp"""


# RETENTION from res_retention_months: a pair's week is one row there, so it is exact with
# participants in several exchanges too.
RETENTION_CUBE = _Unit(_cube_rows(sql.T_RMONTHS, "CAST(c.week AS VARCHAR)"),
                       "(pid, exchange_id, week)", {}, one_exchange=True, weight="fp.w")
RETENTION_CUBE_CELL = "fp.term || '|' || fp.wk"
# Means of scale scores (wave means): the cell is a scale's wave (comparison group apart) and
# its rows are the scored rows, one per respondent and exchange, as `n` counts them. Two views
# that differ by 1..k-1 such rows would give a small group's sum of scores by subtraction.
SCORES = _Unit("fs JOIN fp USING (pid)", "(pid, fs.exchange_id)",
               {"scores": True, "include_comparison": True}, one_exchange=True)
SCORE_CELL = ("fs.instrument || '|' || fs.scale || '|' || fs.wave || '|' || "
              "CAST(fp.comparison AS VARCHAR)")
# SCORES from res_score_months (each participant in one exchange: a person's months are their
# pair's).
SCORES_CUBE = _Unit(f"({_cube(sql.T_SMONTHS, 'c.instrument, c.scale, c.wave, c.n AS w')}) fp",
                    "(pid, exchange_id)", SCORES.scope, one_exchange=True, weight="fp.w")
SCORES_CUBE_CELL = SCORE_CELL.replace("fs.", "fp.")
# Means of paired gains (pre/post tables, the comparison difference, gains per equity group):
# the cell is a scale's pairs (both waves scored, res_person_gains: one row per participant
# and exchange) in one group of a grouping, comparison group apart; its rows are the pairs, as
# the tables' `n` counts them.
GAINS = _Unit("fg JOIN fp USING (pid)", "(pid, fg.exchange_id)",
              {"scores": True, "include_comparison": True}, one_exchange=True)
# GAINS from res_gain_months, for the groupings the cube holds (each participant in one
# exchange: a person's months are their pair's).
GAINS_CUBE = _Unit(f"({_cube(sql.T_GMONTHS, 'c.instrument, c.scale, c.n AS w')}) fp",
                   "(pid, exchange_id)", GAINS.scope, one_exchange=True, weight="fp.w")
_GAINS_CUBE_GROUPS = (None, "cluster", "country")
# The groupings a table of gains is split by (person attributes from fp; an exchange's
# modality or setting from the gain row's own exchange).
GAIN_GROUPS: dict[str | None, str] = {
    None: "'all'", "cluster": "fp.cluster_id", "country": "fp.country",
    "gender": "fp.gender", "age_band": "fp.age_band", "connectivity": "fp.connectivity",
    "income_group": "fp.income_group", "modality": "fg.modality", "setting": "fg.setting"}


def _gain_cell(by: str | None) -> str:
    if by not in GAIN_GROUPS:
        raise ValueError(f"cannot check gains by {by!r}; choose one of "
                         f"{sorted(g for g in GAIN_GROUPS if g)} or None")
    return (f"fg.instrument || '|' || fg.scale || '|' || "
            f"coalesce(CAST({GAIN_GROUPS[by]} AS VARCHAR), '') || '|' || "
            "CAST(fp.comparison AS VARCHAR)")


def _on_cubes(cur: duckdb.DuckDBPyConnection) -> bool:
    """Whether the rule may count rows on the stored cubes (res_week_months, res_score_months,
    res_gain_months): the data version has month masks and each participant is in one
    exchange, so a person's months and rows are their one pair's."""
    return bool(sql.months_base(cur)) and sql.require_derived(cur)


def _count(unit: _Unit) -> str:
    """The SQL of how many rows (pairs, for a cube unit) a group of `unit`'s rows holds."""
    return "count(*)" if unit.weight is None else f"CAST(sum({unit.weight}) AS BIGINT)"


def _scope_of(cur: duckdb.DuckDBPyConnection, unit: _Unit, g: Filters
              ) -> tuple[str, dict[str, Any], str]:
    """The CTEs, parameters and FROM clause of `unit`'s rows in the view of filters `g`: the
    scope (`sql.scope`) for rows of people; for a cube unit, the institutions and exchanges in
    scope and the cube's rows of the roles, comparison group and months in scope."""
    if unit.weight is None:
        ctes, p = sql.scope(g, **unit.scope, months=sql.months_base(cur))
        return ctes, p, _person_rows(unit, g, sql.months_base(cur))
    ctes, p = sql.dims(g)
    where = p.pop("_role")
    if not unit.scope.get("include_comparison"):
        where += " AND NOT c.comparison"
    if g.restricts_dates:
        where += f" AND (c.months & {sql.mask_range(g, _base(cur))}) <> 0"
    return ctes, p, unit.rows.replace("{where}", where)


def _person_rows(unit: _Unit, g: Filters, base: date | None) -> str:
    """The FROM clause of a unit of people's rows in the view of `g`: `{active}` (the pairs
    with events in the exchanges and months in scope) from the stored month masks when there
    are any (one row per pair), else from the day facts (one per pair and day)."""
    if base is None:
        active = "SELECT DISTINCT pid, exchange_id FROM fev"
    else:
        active = f"SELECT pid, exchange_id FROM {_PAIRS} WHERE active_months <> 0"
        if g.restricts_dates:
            active += f" AND (active_months & {sql.mask_range(g, base)}) <> 0"
    return unit.rows.replace("{active}", active)


def _base(cur: duckdb.DuckDBPyConnection) -> date:
    base = sql.months_base(cur)
    if base is None:
        raise RuntimeError("this data version has no month masks; use the day-facts units")
    return base


def _mask_flags(m: str, f: Filters, base: date) -> str:
    """`_month_counts`' columns (value, ns, before, after, first_month, last_month) from the
    month mask `m` of a row and the date range of `f`, as the day facts' months give them."""
    lo = sql.month_index(f.start, base) if f.start else None
    hi = sql.month_index(f.end, base) if f.end else None
    inside = f"({m} & {sql.mask_range(f, base)})"
    bits, none = sql.mask_bits, sql.mask_bits(1, 0)
    before = bits(0, lo - 1) if lo is not None else none
    after = bits(hi + 1, MASK_MONTHS - 1) if hi is not None else none
    first = bits(lo, lo) if lo is not None else none
    last = bits(hi, hi) if hi is not None else none
    return f"""CASE WHEN {inside} <> 0 THEN CAST(DATE '{base.isoformat()}'
                    + to_months(bit_count(({inside} & -{inside}) - 1)) AS DATE) END AS value,
               CAST(bit_count({inside}) AS INTEGER) AS ns,
               ({m} & {before}) <> 0 AS before, ({m} & {after}) <> 0 AS after,
               ({m} & {first}) <> 0 AS first_month, ({m} & {last}) <> 0 AS last_month"""


def _options(cur: duckdb.DuckDBPyConnection) -> FilterOptions:
    from analytics.read import loads

    return loads.filter_options(cur)


def _cell(by: str | None) -> str:
    if by not in CELLS:
        raise ValueError(f"cannot check cells by {by!r}; choose one of "
                         f"{sorted(c for c in CELLS if c)} or None")
    return CELLS[by]


def _answers(f: Filters) -> str:
    cond = (" AND day >= $start" if f.start else "") + (" AND day <= $end" if f.end else "")
    return f"SELECT pid, exchange_id, day FROM {sql.T_ADAYS} JOIN fx USING (exchange_id) " \
           f"WHERE TRUE{cond}"


def _checks(f: Filters, d: str, options: FilterOptions) -> bool:
    """Whether dimension `d` of `f` has a neighbour the rule looks at (`_judge`): a value to
    remove (two or more selected) or the one value left out. Otherwise no query is needed."""
    sel = getattr(f, d)
    return bool(sel) and (len(sel) >= 2 or len(options.values(d) - set(sel)) == 1)


def _person_dim(cur: duckdb.DuckDBPyConnection, f: Filters, d: str, cell: str,
                options: FilterOptions, unit: _Unit | None = None) -> list[dict[str, Any]]:
    sel = getattr(f, d)
    if not _checks(f, d, options):
        return []
    unit = unit or PEOPLE
    ctes, p, rows = _scope_of(cur, unit, replace(f, **{d: ()}))
    df = sql.rdf(cur, f"""WITH {ctes}
        SELECT {cell} AS cell, CAST({_PERSON[d]} AS VARCHAR) AS value, {_count(unit)} AS n
        FROM {rows} GROUP BY ALL""", p)
    return _judge(df.assign(ns=df.value.isin(sel).astype(int)), d, sel, options)


def _exchange_dim(cur: duckdb.DuckDBPyConnection, f: Filters, d: str, cell: str,
                  options: FilterOptions, unit: _Unit = PEOPLE) -> list[dict[str, Any]]:
    """An exchange dimension for rows of a person (`unit.one_exchange` False): a person's
    exchanges may hold several values, so removing v loses the people whose values in the
    selection are exactly {v}, and the sums over everyone who has v at all change too."""
    sel = getattr(f, d)
    if not _checks(f, d, options):
        return []
    g = replace(f, **{d: ()})
    ctes, p, rows = _scope_of(cur, unit, g)
    p["sel"] = list(sel)
    df = sql.rdf(cur, f"""WITH {ctes},
        px AS (SELECT pid, exchange_id FROM fev UNION SELECT pid, exchange_id FROM ({_answers(g)})),
        pv AS (SELECT DISTINCT px.pid, CAST({_EXCHANGE[d]} AS VARCHAR) AS v
               FROM px JOIN fx USING (exchange_id)),
        ps AS (SELECT pid, count(DISTINCT v) FILTER (WHERE list_contains($sel, v)) AS ns,
                      min(v) FILTER (WHERE list_contains($sel, v)) AS vs
               FROM pv GROUP BY pid)
        SELECT {cell} AS cell, ps.vs AS value, CAST(coalesce(ps.ns, 0) AS INTEGER) AS ns,
               count(*) AS n
        FROM {rows} LEFT JOIN ps USING (pid) WHERE coalesce(ps.ns, 0) <= 1
        GROUP BY ALL""", p)
    # Who has each value at all (perhaps beside others): a sum or mean over their activity
    # changes with it even when they stay in the view.
    has = sql.rdf(cur, f"""WITH {ctes},
        px AS (SELECT pid, exchange_id FROM fev UNION SELECT pid, exchange_id FROM ({_answers(g)})),
        pv AS (SELECT DISTINCT px.pid, CAST({_EXCHANGE[d]} AS VARCHAR) AS v
               FROM px JOIN fx USING (exchange_id))
        SELECT {cell} AS cell, pv.v AS value, count(*) AS n
        FROM {rows} JOIN pv USING (pid) GROUP BY ALL""", p)
    return _judge(df, d, sel, options, has)


def _judge(df: pd.DataFrame, d: str, sel: tuple[str, ...], options: FilterOptions,
           has: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Rows of `df` (cell, value, ns = the person's number of values in `sel`, n) that break
    the rule for dimension `d` selected to `sel`; `has` (cell, value, n: people with that value
    among others) bounds the people whose sums change too (exchange dimensions)."""
    k = suppression.MIN_CELL
    out: list[dict[str, Any]] = []

    def flag(c: Any, v: Any, change: str, n: int) -> None:
        if 0 < n < k:
            out.append({"cell": c, "dimension": d, "value": v, "change": change, "n": n})

    if len(sel) >= 2:
        only = df[df.ns == 1].groupby(["cell", "value"], dropna=False).n.sum()
        for (c, v), n in only.items():
            flag(c, v, "remove", n)
        if has is not None:
            for r in has[has.value.isin(sel)].itertuples():
                flag(r.cell, r.value, "remove", r.n)
    missing = sorted(options.values(d) - set(sel))
    if len(missing) == 1:
        gain = df[df.ns == 0].groupby("cell", dropna=False).n.sum()
        for c, n in gain.items():
            flag(c, missing[0], "add", n)
        if has is not None:
            for r in has[has.value == missing[0]].itertuples():
                flag(r.cell, r.value, "add", r.n)
    return out


def _month_counts(cur: duckdb.DuckDBPyConnection, f: Filters, cell: str, unit: _Unit
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For `_month_dim`: per cell, the people by how many of the range's months they have
    (0 or 1, with the first such month, and whether they have months before or after it), and
    the people (rows of `unit`) with activity or answers in the range's end months and before
    or after it: the view's sums change by their days even when they stay in it.

    One query: each row's months (`unit.months`; by default its person's) are reduced once to
    counts and flags. A unit's rows are unique within a cell (a person; a person's scored row
    or pair of one exchange, instrument, scale (and wave); a pair's week), so counting rows
    counts `unit.key`s.
    """
    g = replace(f, start=None, end=None)
    rows = (_month_rows_masked(cur, f, g, cell, unit) if sql.months_base(cur)
            else _month_rows_days(cur, f, g, cell, unit))
    df = rows[rows.ns <= 1].groupby(["cell", "value", "ns", "before", "after", "nothing"],
                                    dropna=False, as_index=False).n.sum()
    has = pd.DataFrame({c: rows.n.where(rows[c].astype(bool), 0).groupby(rows.cell).sum()
                        for c in ("first_month", "last_month", "before", "after")},
                       columns=["first_month", "last_month", "before", "after"])
    return df, has.rename_axis("cell")


def _month_rows_masked(cur: duckdb.DuckDBPyConnection, f: Filters, g: Filters, cell: str,
                       unit: _Unit) -> pd.DataFrame:
    """`_month_counts`' rows from the stored month masks: a cube unit's rows carry theirs; a
    unit of people takes each row's from `unit.masks` (default: the person's)."""
    base = _base(cur)
    ctes, p, rows = _scope_of(cur, unit, g)
    if unit.weight is not None:
        return sql.rdf(cur, f"""WITH {ctes}
            SELECT {cell} AS cell, {_mask_flags("fp.months", f, base)}, FALSE AS nothing,
                   {_count(unit)} AS n
            FROM {rows} GROUP BY ALL""", p)
    masks = (unit.masks or _PERSON_MASKS).replace("{answers}", f"({_answers(g)})")
    return sql.rdf(cur, f"""WITH {ctes},
        ps AS (SELECT {unit.keys}, bit_or(months) AS m FROM ({masks}) GROUP BY ALL)
        SELECT {cell} AS cell, {_mask_flags("coalesce(ps.m, 0)", f, base)},
               coalesce(ps.m, 0) = 0 AS nothing, count(*) AS n
        FROM {rows} LEFT JOIN ps USING ({unit.keys}) GROUP BY ALL""", p)


def _month_rows_days(cur: duckdb.DuckDBPyConnection, f: Filters, g: Filters, cell: str,
                     unit: _Unit) -> pd.DataFrame:
    """`_month_counts`' rows from the day facts (a data version without month masks)."""
    ctes, p = sql.scope(g, **unit.scope, months=sql.months_base(cur))
    a = f.start or date(1, 1, 1)
    b = f.end or date(9999, 12, 31)
    p |= {"a": a, "b": b, "am": a.replace(day=1), "bm": b.replace(day=1)}
    answers = f"({_answers(g)})"
    months = (unit.months.replace("{answers}", answers) if unit.months else
              _months_of(f"SELECT pid, day FROM fev UNION ALL SELECT pid, day FROM {answers}",
                         "pid"))
    return sql.rdf(cur, f"""WITH {ctes},
        pm AS ({months}),
        ps AS (SELECT {unit.keys}, count(*) FILTER (WHERE m BETWEEN $a AND $b) AS ns,
                      min(m) FILTER (WHERE m BETWEEN $a AND $b) AS vs,
                      bool_or(m < $a) AS before, bool_or(m > $b) AS after,
                      bool_or(m = $am) AS first_month, bool_or(m = $bm) AS last_month
               FROM pm GROUP BY {unit.keys})
        SELECT {cell} AS cell, ps.vs AS value, CAST(coalesce(ps.ns, 0) AS INTEGER) AS ns,
               coalesce(ps.before, FALSE) AS before, coalesce(ps.after, FALSE) AS after,
               ps.pid IS NULL AS nothing, coalesce(ps.first_month, FALSE) AS first_month,
               coalesce(ps.last_month, FALSE) AS last_month, count(*) AS n
        FROM {_person_rows(unit, g, None)} LEFT JOIN ps USING ({unit.keys}) GROUP BY ALL""", p)


def _month_dim(cur: duckdb.DuckDBPyConnection, f: Filters, cell: str,
               options: FilterOptions, unit: _Unit | None = None) -> list[dict[str, Any]]:
    if f.start is None and f.end is None:
        return []
    df, has = _month_counts(cur, f, cell, unit or PEOPLE)
    k = suppression.MIN_CELL
    out: list[dict[str, Any]] = []
    first, last = options.first_date, options.last_date
    ends = [m for m in (f.start, f.end.replace(day=1) if f.end else None) if m is not None]
    if f.start and f.end and f.start.replace(day=1) == f.end.replace(day=1):
        ends = []  # one month: removing it leaves no range, not a neighbouring view
    value = pd.to_datetime(df.value).dt.date
    for m in ends:
        only = df[(df.ns == 1) & (value == m)].groupby("cell", dropna=False).n.sum()
        col = "first_month" if f.start and m == f.start else "last_month"
        for c, n in [*only.items(), *has[col].items()]:
            if 0 < n < k:
                out.append({"cell": c, "dimension": "month", "value": m.strftime("%Y-%m"),
                            "change": "remove", "n": int(n)})
    # Widening to the data's first (last) month is the request without a start (end): it adds
    # the people with months only before (after) the range, and, when it leaves no date limit
    # and no exchange filter, the people with no activity or answers at all.
    widen = []
    if f.start and first and _prev_month(f.start) <= first.replace(day=1):
        widen.append(("before", f.end is None, _prev_month(f.start).strftime("%Y-%m")))
    if f.end and last and _next_month(f.end) >= last.replace(day=1):
        widen.append(("after", f.start is None, _next_month(f.end).strftime("%Y-%m")))
    for side, open_range, label in widen:
        rows = df[(df.ns == 0) & (df[side] | (df.nothing & open_range))]
        for c, n in [*rows.groupby("cell", dropna=False).n.sum().items(), *has[side].items()]:
            if 0 < n < k:
                out.append({"cell": c, "dimension": "month", "value": label, "change": "add",
                            "n": n})
    return out


def _prev_month(d: date) -> date:
    return date.fromordinal(d.replace(day=1).toordinal() - 1).replace(day=1)


def _next_month(d: date) -> date:
    return date.fromordinal(month_end(d).toordinal() + 1)


@cached
def isolating(cur: duckdb.DuckDBPyConnection, f: Filters, by: str | None = None
              ) -> pd.DataFrame:
    """The cells of the view of `f` (the whole selection when `by` is None, else each country,
    cluster or equity group: gender, age band, connectivity, income group) that break the
    differencing rule (module docstring): one row per cell, dimension and value whose
    one-value neighbour differs by 0 < n < k participants, with `change` 'remove' or 'add'.
    `n` is for tests and the audit, never for display. Empty when every cell may be shown.
    `f` is taken as its canonical request."""
    return _rule(cur, f, PEOPLE, _cell(by))


def _rule(cur: duckdb.DuckDBPyConnection, f: Filters, unit: _Unit, cell: str) -> pd.DataFrame:
    """The rule (module docstring) for the rows of `unit`, its cells named by the SQL `cell`:
    one row per cell, dimension and value that breaks it."""
    options = _options(cur)
    f = canonical_filters(f, options)
    rows: list[dict[str, Any]] = []
    for d in _PERSON:
        rows += _person_dim(cur, f, d, cell, options, unit)
    for d in _EXCHANGE:
        rows += (_row_exchange_dim(cur, f, d, options, unit, cell) if unit.one_exchange
                 else _exchange_dim(cur, f, d, cell, options, unit))
    rows += _month_dim(cur, f, cell, options, unit)
    return pd.DataFrame(rows, columns=_COLUMNS)


def _row_exchange_dim(cur: duckdb.DuckDBPyConnection, f: Filters, d: str,
                      options: FilterOptions, unit: _Unit, cell: str) -> list[dict[str, Any]]:
    """An exchange dimension for rows of one exchange each (scored rows, pairs): each row has
    one value, so removing v loses exactly the rows of v's exchanges, and the unrestricted view
    adds the rows of the one missing value."""
    sel = getattr(f, d)
    if not _checks(f, d, options):
        return []
    ctes, p, rows = _scope_of(cur, unit, replace(f, **{d: ()}))
    p["sel"] = list(sel)
    df = sql.rdf(cur, f"""WITH {ctes}
        SELECT {cell} AS cell, CAST({_EXCHANGE[d]} AS VARCHAR) AS value,
               CAST(list_contains($sel, CAST({_EXCHANGE[d]} AS VARCHAR)) AS INTEGER) AS ns,
               {_count(unit)} AS n
        FROM {rows} JOIN fx USING (exchange_id) GROUP BY ALL""", p)
    return _judge(df, d, sel, options)


def _isolating_rows(cur: duckdb.DuckDBPyConnection, f: Filters, unit: _Unit, cell: str
                    ) -> pd.DataFrame:
    """The rule for `unit`, its cells named by the SQL `cell` ('|'-joined); `cell` of the
    answer is the list of those parts (strings)."""
    out = _rule(cur, f, unit, cell)
    out["cell"] = (list(out.cell.astype("string").str.split("|", n=3)) if len(out)
                   else out.cell)
    return out


@cached
def isolating_scores(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """`isolating` for means of scale scores: the cells (instrument, scale, wave, comparison)
    of the view of `f` whose scored rows a one-value neighbour changes by 0 < n < k, so that
    the difference of the two views' sums would be a small group's. Same rule, same columns;
    `cell` is a tuple (instrument, scale, wave, comparison)."""
    out = (_isolating_rows(cur, f, SCORES_CUBE, SCORES_CUBE_CELL) if _on_cubes(cur)
           else _isolating_rows(cur, f, SCORES, SCORE_CELL))
    out["cell"] = [(a, b, c, d == "true") for a, b, c, d in out.cell] if len(out) else out.cell
    return out


@cached
def isolating_gains(cur: duckdb.DuckDBPyConnection, f: Filters, by: str | None = None
                    ) -> pd.DataFrame:
    """`isolating` for means of paired post − pre gains (and the pre and post means of the same
    pairs): the cells (instrument, scale, group, comparison) of the view of `f`, split by
    `by` (a key of `GAIN_GROUPS`; None: group 'all'), whose pairs a one-value neighbour changes
    by 0 < n < k. Same rule, same columns; `cell` is a tuple (instrument, scale, group,
    comparison), the group as a string ('' for pairs without a value of `by`)."""
    cell = _gain_cell(by)
    out = (_isolating_rows(cur, f, GAINS_CUBE, cell.replace("fg.", "fp."))
           if by in _GAINS_CUBE_GROUPS and _on_cubes(cur)
           else _isolating_rows(cur, f, GAINS, cell))
    out["cell"] = [(a, b, c, d == "true") for a, b, c, d in out.cell] if len(out) else out.cell
    return out


@cached
def isolating_stages(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """`isolating` for the attrition funnel: the stages ('enrolled', 'active in the log',
    'answered <wave>') whose people a one-value neighbour changes by 0 < n < k. `cell` is the
    stage's name."""
    return _rule(cur, f, STAGES, STAGE_CELL)


@cached
def isolating_dropout(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> pd.DataFrame:
    """`isolating` for drop-out per group (`by`: gender, age band, connectivity, income group):
    the cells (group, 'answered pre' | 'dropped') whose people a one-value neighbour changes
    by 0 < n < k. `cell` is a tuple of strings, the group '' where it has no value."""
    cell = f"coalesce(CAST({_cell(by)} AS VARCHAR), '') || '|' || st.part"
    out = _isolating_rows(cur, f, DROPOUT, cell)
    out["cell"] = [tuple(c) for c in out.cell] if len(out) else out.cell
    return out


@cached
def isolating_exchange_activity(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """`isolating` for activity per exchange: the exchanges whose active people a one-value
    neighbour changes by 0 < n < k. `cell` is the exchange id."""
    return _rule(cur, f, EXCHANGE_ACTIVITY, "st.exchange_id")


@cached
def isolating_retention(cur: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """`isolating` for retention per cohort: the cells (term, week as a string, or 'n' for the
    cohort's size) whose person × exchange pairs a one-value neighbour changes by 0 < n < k."""
    out = (_isolating_rows(cur, f, RETENTION_CUBE, RETENTION_CUBE_CELL)
           if sql.months_base(cur) else _isolating_rows(cur, f, RETENTION, RETENTION_CELL))
    out["cell"] = [tuple(c) for c in out.cell] if len(out) else out.cell
    return out


@cached
def isolating_weekly(cur: duckdb.DuckDBPyConnection, f: Filters, by: str | None = None
                     ) -> pd.DataFrame:
    """`isolating` for the weekly series grouped `by` (`sql.group_col`): the cells (group,
    week's Monday as YYYY-MM-DD, or 'n' for the group's people over the period) whose active
    people a one-value neighbour changes by 0 < n < k."""
    group = f"coalesce(CAST({sql.group_col(by)} AS VARCHAR), '')"
    if _on_cubes(cur):  # a person's week is one pair's week of the cube
        unit = _Unit(_cube_rows(sql.T_WMONTHS, "strftime(c.week, '%Y-%m-%d')",
                                f", {group} AS grp"),
                     "(pid, week)", {}, one_exchange=True, weight="fp.w")
        out = _isolating_rows(cur, f, unit, "fp.grp || '|' || fp.wk")
        out["cell"] = [tuple(c) for c in out.cell] if len(out) else out.cell
        return out
    week = f"strftime({sql.WEEK_SQL}, '%Y-%m-%d')"
    unit = _Unit(f"""(SELECT DISTINCT pid, {group} AS grp, {week} AS week FROM fe
                      UNION ALL SELECT DISTINCT pid, {group}, 'n' FROM fe) st
                     JOIN fp USING (pid)""", "(pid, st.grp, st.week)", {},
                 months=_months_of(f"""SELECT pid, {group} AS grp, {week} AS week, day FROM fe
                                       UNION ALL SELECT pid, {group}, 'n', day FROM fe""",
                                   "pid, grp, week"),
                 keys="pid, grp, week")
    out = _isolating_rows(cur, f, unit, "st.grp || '|' || st.week")
    out["cell"] = [tuple(c) for c in out.cell] if len(out) else out.cell
    return out


def hidden_rows(df: pd.DataFrame, cells: set[Any], keys: list[str],
                comparison: bool | None = False) -> list[bool] | None:
    """Per row of `df`, whether its cell (the values of `keys` as strings, then `comparison`
    when not None) is in `cells` (an `isolating_*` answer's); None when none is, as
    `sql.suppress(hide=…)` takes it."""
    tail = () if comparison is None else (comparison,)
    hide = [(*("" if pd.isna(v) else str(v) for v in row), *tail) in cells
            for row in df[keys].itertuples(index=False)]
    return hide if any(hide) else None


def isolating_cells(cur: duckdb.DuckDBPyConnection, f: Filters, by: str) -> set[Any]:
    """The cells (countries, cluster ids) of `by` that the differencing rule hides in view `f`."""
    return set(isolating(cur, f, by).cell)


def describe(rows: pd.DataFrame) -> str:
    """The page's words for why a selection is hidden: which filter values isolate a small
    group (never how small), e.g. "removing modality 'blended' or adding country 'KEN'"."""
    parts = []
    for r in rows.drop_duplicates(["dimension", "value", "change"]).itertuples():
        verb = "removing" if r.change == "remove" else "adding"
        parts.append(f"{verb} {r.dimension} {r.value!s}")
    return " or ".join(parts[:4]) + (" or …" if len(parts) > 4 else "")


def explain(df: pd.DataFrame, rows: pd.DataFrame, cells: list[Any]) -> pd.DataFrame:
    """`df` (a read-layer table whose row i is cell `cells[i]`) with `df.attrs['isolating']`
    set to `describe` of the rule's `rows` (an `isolating*` answer) on those cells, when any:
    the page's words for why some of its rows are hidden beside the small-cell ones."""
    mine = set(cells)
    hit = rows[[c in mine for c in rows.cell]] if len(rows) else rows
    if len(hit):
        df.attrs["isolating"] = describe(hit)
    return df
