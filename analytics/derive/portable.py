"""The derive SQL's portable subset: one text for DuckDB and Spark (issue 16).

The derive statements are written in DuckDB's SQL and run as they are on DuckDB. For Spark,
SQLGlot transpiles them (`to_spark`). Measured on DuckDB 2.0, PySpark 4.0 and SQLGlot 30, most
of what the statements use transpiles correctly (window functions, FILTER, GROUP BY ALL,
integer division, USING joins, CAST, DISTINCT). Some constructs do not:
- Spark rejects what SQLGlot writes for `timezone()`, `quantile_cont` and `len(list)`;
- three give silently different answers: `epoch(ts)` becomes `unix_timestamp` (whole
  seconds: milliseconds lost), `list(x ORDER BY t)` loses its order, and `date_diff('day',
  …)` counts boundary crossings in DuckDB and whole units in Spark.

The event cubes (`rollups.cube_steps`, `rollups.month_steps`) added, measured on the same
versions: GROUP BY ALL, count(DISTINCT x), FILTER (WHERE …), bool_or, AND/OR/NOT with NULLs,
integer `//`, FULL JOIN … USING and coalesce on its columns answer the same. These do not:
- date − date is an INTERVAL on Spark, so `(day - d0) // 7` is rejected (`ei_day_diff`);
- the week's epoch arithmetic (`rollups.week_sql`) becomes unix_timestamp(date), which counts
  from midnight in the session's time zone: east of UTC a Monday falls in the week before;
- `trim(s)` strips the Unicode space separators in DuckDB, only U+0020 in Spark (rewritten);
- a month mask is a 128-bit integer (HUGEINT, up to `rollups.MASK_MONTHS` bits) and its
  `bit_or`; Spark has no integer wider than 64 bits and rejects the transpiled INT128.

Those are written as small per-dialect macros, `MACROS`, named `ei_…`:
- On DuckDB they are temporary SQL macros (`install`), so the statement text runs unchanged and
  DuckDB inlines them (no cost at run time).
- For Spark, `to_spark` replaces each call with the macro's Spark expression in SQLGlot's tree
  before writing Spark SQL.

`trim(s)` is kept as it is (the read layer, which installs no macros, shares the expressions
that use it) and written for Spark with DuckDB's set of characters (`SPARK_FORMS`).

`problems` is the lint: a statement may use only the functions in `ALLOWED` and the macros. A
construct known to differ is refused with the macro to use instead; any other is refused until
someone checks that both engines agree and adds it. `tests/test_derive_spark.py` runs every
portable statement on both engines and compares the tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

__all__ = ["Macro", "MACROS", "SPARK_FORMS", "ALLOWED", "REFUSED", "install", "problems", "check",
           "to_spark", "PortabilityError"]


class PortabilityError(ValueError):
    """A derive statement outside the portable subset."""


@dataclass(frozen=True)
class Macro:
    params: tuple[str, ...]
    duckdb: str
    spark: str
    doc: str


def _mask_spark(n: str) -> str:
    """Spark SQL of the mask of month numbers `n` (0-125): bit_or of the low and the high 63 bits
    as BIGINTs, combined as DECIMAL(38,0) (2^126 - 1 < 10^38). A NULL n sets no bit."""
    def half(take: str, rest: str, shift: str) -> str:
        return (f"CAST(bit_or(CASE WHEN {n} {take} THEN shiftleft(CAST(1 AS BIGINT), {shift}) "
                f"WHEN {n} {rest} THEN CAST(0 AS BIGINT) END) AS DECIMAL(38,0))")

    return (f"{half('< 63', '>= 63', n)} + {half('>= 63', '< 63', f'{n} - 63')}"
            " * CAST(9223372036854775808 AS DECIMAL(38,0))")


MACROS: dict[str, Macro] = {
    "ei_epoch": Macro(
        ("ts",), "epoch(ts)", "CAST(unix_micros(ts) AS DOUBLE) / 1000000",
        "seconds since 1970-01-01 UTC, milliseconds kept (Spark's unix_timestamp drops them)"),
    "ei_utc_day": Macro(
        ("ts",), "(DATE '1970-01-01' + CAST(floor(epoch(ts) / 86400) AS INTEGER))",
        "date_add(DATE '1970-01-01', CAST(floor(CAST(unix_micros(ts) AS DOUBLE) / 86400000000)"
        " AS INT))",
        "the UTC date of a timestamp, without the session's time zone"),
    "ei_utc_offset": Macro(
        ("tz", "s"), "CAST(epoch(timezone(tz, to_timestamp(s))) AS BIGINT) - s",
        "unix_timestamp(from_utc_timestamp(timestamp_seconds(s), tz)) - s",
        "seconds east of UTC in IANA zone tz at epoch second s (daylight saving included)"),
    "ei_day_diff": Macro(
        ("a", "b"), "(CAST(b AS DATE) - CAST(a AS DATE))",
        "datediff(CAST(b AS DATE), CAST(a AS DATE))",
        "whole days from date a to date b (date_diff('day', …) differs between the engines)"),
    "ei_ordered_list": Macro(
        ("x", "t"), "list(x ORDER BY t, x)",
        "transform(array_sort(collect_list(named_struct('t', t, 'x', x))), e -> e.x)",
        "the values x in the order of t (ties by x) as a list; SQLGlot drops the order"),
    "ei_quantile": Macro(
        ("x", "q"), "quantile_cont(x, q)", "percentile(x, q)",
        "the continuous (interpolated) q-quantile, as R's type 7"),
    "ei_list_len": Macro(
        ("l",), "len(l)", "size(l)", "the number of elements of a list"),
    "ei_week": Macro(
        ("day",), "(DATE '1970-01-05' + 7 * CAST(floor((CAST(day AS DATE) - DATE '1970-01-05')"
        " / 7) AS INTEGER))",
        "date_add(DATE '1970-01-05', 7 * CAST(floor(datediff(CAST(day AS DATE), "
        "DATE '1970-01-05') / 7) AS INT))",
        "the Monday of the week of date `day` (1970-01-05 was a Monday), by date arithmetic: "
        "the same Monday as rollups.week_sql, in any session time zone"),
    "ei_month": Macro(
        ("day",), "CAST(date_trunc('month', day) AS DATE)", "trunc(day, 'MM')",
        "the first day of the month of date `day`"),
    "ei_month_mask": Macro(
        ("day", "base"),
        "bit_or(CAST(1 AS HUGEINT) << CAST((year(day) - year(base)) * 12 + month(day)"
        " - month(base) AS INTEGER))",
        _mask_spark("((year(day) - year(base)) * 12 + month(day) - month(base))"),
        "an aggregate: the months of the dates `day` as a bit mask, bit i the i-th month after "
        "the month of `base` (i < 126); a HUGEINT on DuckDB, a DECIMAL(38,0) of equal value on "
        "Spark (no 128-bit integer there: bits 0-62 and 63-125 are or-ed as two BIGINTs and "
        "added)"),
}

# Built-in functions kept as written (the read layer shares the expressions that use them and
# installs no macros), with the Spark form that answers as DuckDB does.
# DuckDB's trim(s) strips the Unicode space separators (category Zs: these 17, measured on
# every code point below U+3100); Spark's strips U+0020 only. Spark's trim(BOTH chars FROM s)
# with the same characters gives DuckDB's answer.
_SPACE_SEPARATORS = "".join(map(chr, (0x20, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F,
                                      0x205F, 0x3000)))
SPARK_FORMS: dict[str, Macro] = {
    "Trim": Macro(("s",), "trim(s)", f"trim(BOTH '{_SPACE_SEPARATORS}' FROM s)",
                  "spaces stripped from both ends: every Unicode space separator, as DuckDB"),
}

# SQLGlot expression classes the statements may use: checked to mean the same on both engines.
ALLOWED: frozenset[str] = frozenset({
    "Sum", "Count", "Min", "Max", "Avg", "Coalesce", "Cast", "TryCast", "Floor", "Ceil", "Abs",
    "Round", "RowNumber", "Rank", "DenseRank", "Lag", "Lead", "If", "Case", "Greatest",
    "Least", "Lower", "Upper", "Concat", "Nullif", "Sqrt", "Ln", "Exp", "Pow", "Stddev",
    "StddevSamp", "Variance", "VarianceSamp", "CountIf", "Filter", "LogicalOr", "And", "Or",
})

# Constructs known to fail or to differ on Spark: the macro to write instead.
REFUSED: dict[str, str] = {
    "TimeToUnix": "ei_epoch(ts) (epoch() becomes unix_timestamp: milliseconds lost)",
    "ArrayAgg": "ei_ordered_list(x, t) (list(x ORDER BY t) loses its order on Spark)",
    "DateDiff": "ei_day_diff(a, b) (date_diff('day', …) counts differently on Spark)",
    "PercentileCont": "ei_quantile(x, q) (Spark rejects the transpiled quantile_cont)",
    "Quantile": "ei_quantile(x, q) (Spark rejects the transpiled quantile)",
    "Length": "ei_list_len(l) for a list (Spark rejects len(list) as transpiled)",
    "ArraySize": "ei_list_len(l)",
    "AtTimeZone": "ei_utc_offset(tz, s) (timezone() is rejected by Spark as transpiled)",
    "ConvertTimezone": "ei_utc_offset(tz, s)",
    "DateTrunc": "ei_month(day) or ei_week(day) (truncation of a timestamp depends on the "
                 "session's time zone)",
    "TimestampTrunc": "ei_month(day) or ei_week(day) (truncation of a timestamp depends on the "
                      "session's time zone)",
    "BitwiseOrAgg": "ei_month_mask(day, base) for a month mask (no 128-bit integer on Spark)",
}
# Operators refused: a month mask is a DECIMAL(38,0) on Spark, which has no bitwise operators
# on decimals; nothing else in the derive needs them.
_REFUSED_OPERATORS = ("BitwiseOr", "BitwiseAnd", "BitwiseXor", "BitwiseLeftShift",
                      "BitwiseRightShift", "BitwiseNot")
_REFUSED_NAMES = {"timezone": "AtTimeZone", "epoch": "TimeToUnix", "list": "ArrayAgg",
                  "quantile_cont": "PercentileCont", "len": "Length"}


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Define the macros on a DuckDB connection (temporary: they live as long as it does)."""
    for name, m in MACROS.items():
        con.execute(f"CREATE OR REPLACE TEMP MACRO {name}({', '.join(m.params)}) AS {m.duckdb}")


def _parse(sql: str):  # noqa: ANN202 (sqlglot's Expression; imported lazily)
    import sqlglot

    return sqlglot.parse_one(sql, read="duckdb")


def problems(sql: str) -> list[str]:
    """Why `sql` is outside the portable subset (an empty list: it is inside)."""
    from sqlglot import exp

    out: list[str] = []
    tree = _parse(sql)
    for node in tree.find_all(*(getattr(exp, k) for k in _REFUSED_OPERATORS)):
        out.append(f"{node.sql(dialect='duckdb')}: bitwise operators are not in the portable "
                   "subset (a month mask is a DECIMAL(38,0) on Spark; ei_month_mask builds one)")
    for node in tree.find_all(exp.Func):
        kind = type(node).__name__
        if isinstance(node, exp.Trim):
            if node.args.get("expression") is not None or node.args.get("position"):
                out.append(f"{node.sql(dialect='duckdb')}: only trim(s) is in the portable "
                           "subset")
            continue
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name in MACROS:
                continue
            if name in _REFUSED_NAMES:
                out.append(f"{name}(): use {REFUSED[_REFUSED_NAMES[name]]}")
            else:
                out.append(f"{name}(): not in the portable subset (no macro, not checked on "
                           "Spark)")
        elif kind in REFUSED:
            out.append(f"{node.sql(dialect='duckdb')}: use {REFUSED[kind]}")
        elif kind not in ALLOWED:
            out.append(f"{node.sql(dialect='duckdb')}: {kind} is not in the portable subset "
                       "(check DuckDB and Spark agree, then add it to ALLOWED)")
    return out


def check(statements: Iterable[str]) -> None:
    """Raise PortabilityError naming every construct outside the subset."""
    found = [f"{p}\n  in: {' '.join(s.split())[:160]}" for s in statements for p in problems(s)]
    if found:
        raise PortabilityError("outside the portable subset:\n" + "\n".join(found))


def _spark_bodies() -> dict:
    import sqlglot

    return {name: sqlglot.parse_one(m.spark, read="spark")
            for name, m in [*MACROS.items(), *SPARK_FORMS.items()]}


def to_spark(sql: str, *, table: bool = False) -> str:
    """`sql` (DuckDB, in the portable subset) as Spark SQL: the macros expanded to their Spark
    expressions, the rest transpiled by SQLGlot. With `table`, the query makes a table (its
    rows are a set): its outermost ORDER BY, which on DuckDB only lays the rows out for zone
    maps, is dropped, since on Spark it is a global sort of every row before the write."""
    from sqlglot import exp

    check([sql])
    bodies = _spark_bodies()

    def expand(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Trim):  # trim(s): the lint let no other form through
            name, given = "Trim", [node.this]
        elif isinstance(node, exp.Anonymous) and node.name.lower() in MACROS:
            name, given = node.name.lower(), node.expressions
        else:
            return node
        params = (SPARK_FORMS[name] if name in SPARK_FORMS else MACROS[name]).params
        # a macro's arguments may hold macros too: expanded first
        args = dict(zip(params, (a.transform(expand) for a in given), strict=True))

        def put(n: exp.Expression) -> exp.Expression:
            if isinstance(n, exp.Column) and not n.table and n.name in args:
                return args[n.name].copy()
            return n

        return bodies[name].copy().transform(put)

    tree = _parse(sql)
    if table:
        tree.set("order", None)
    return tree.transform(expand).sql(dialect="spark")
