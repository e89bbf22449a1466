"""What the log readers (Zoom, Moodle) share: the text of a file, its header record, its rows as
a DuckDB table, and local clock times as UTC instants.

Encoding is settled as for the contract's CSVs (`etl.readers`: byte order mark, UTF-8, else
Windows-1252 with a note). The small head of a file (its preamble and header record) is parsed
with Python's csv module; the rows themselves only ever by DuckDB.

Local times (`11/19/2021 9:54:15 AM`, `23/01/23, 12:09`) are taken apart in SQL: day-first or
month-first is told from the values where one of the first two numbers is above 12, else the
mapping must say; the clock time is read in the mapping's IANA zone by DuckDB's `timezone()`,
the function the contract's loader uses, so a time in the hour repeated when summer time ends is
read the same way (the second, standard-time, reading) and a time in the skipped hour is read
with the offset before the change. A value that is not a time is passed on as written, so the
loader rejects its row naming the value.
"""

from __future__ import annotations

import contextlib
import csv
import io
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from etl import readers
from etl.errors import RefusedFile

__all__ = [
    "EVENT_COLUMNS", "EMPTY_DUMP", "EMPTY_REPORT", "HEAD_CHARS", "HEAD_RECORDS", "connect",
    "decoded", "head_records", "delimiter_of", "header_line", "stage_rows", "column_for",
    "clock_parts_sql", "day_first", "zone", "has_naive_sql", "local_sql", "instant_sql",
    "iso_sql", "ambiguous_note", "refused", "events_table", "sql_str", "text_sql",
]

EVENT_COLUMNS = ("participant_id", "exchange_id", "occurred_at", "activity", "minutes")
HEAD_CHARS = 1 << 16
HEAD_RECORDS = 40  # a preamble is a few lines; the header record is looked for this far
# Cells that mean "nothing": Moodle's log report writes `-`, database dumps NULL or \N.
EMPTY_REPORT = ("", "-")
EMPTY_DUMP = ("", "NULL", "\\N")

# day/month/year then the clock: `11/19/2021 9:54:15 AM`, `23/01/23, 12:09`, `1.2.2023 13:05`.
_CLOCK = (r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2}),?\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
          r"\s*([AaPp]\.?[Mm]\.?)?\s*$")
_OFFSET = r"(Z|z|[+-]\d\d(:?\d\d)?)$"


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def refused(path: Path, problem: str) -> RefusedFile:
    return RefusedFile(str(path), problem)


def connect() -> duckdb.DuckDBPyConnection:
    """A private in-memory connection whose TIMESTAMPTZ text is UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


@contextlib.contextmanager
def decoded(path: Path, notes: list[str]) -> Iterator[Path]:
    """The file as UTF-8 (itself, or a private copy), noting an encoding that was assumed."""
    codec, note = readers._encoding(path)
    if note:
        notes.append(note)
    with readers._as_utf8(path, codec) as text:
        yield text


def head_records(text: Path) -> list[tuple[int, list[str]]]:
    """The first records of a UTF-8 CSV, each with the line it ends on, split on the separator
    that gives the widest record among them (`,` `;` tab `|`)."""
    with open(text, encoding="utf-8-sig", newline="") as f:
        head = f.read(HEAD_CHARS)
    lines = head.splitlines(keepends=True)
    if len(head) == HEAD_CHARS and len(lines) > 1:
        head = "".join(lines[:-1])  # not a record cut in the middle
    best: list[tuple[int, list[str]]] = []
    for d in readers.DELIMITERS:
        reader = csv.reader(io.StringIO(head), delimiter=d, quotechar='"')
        recs: list[tuple[int, list[str]]] = []
        try:
            for rec in reader:
                recs.append((reader.line_num, rec))
                if len(recs) >= HEAD_RECORDS:
                    break
        except csv.Error:
            continue
        if max((len(r) for _, r in recs), default=0) > max((len(r) for _, r in best), default=0):
            best = recs
    return best


def delimiter_of(record_line: str) -> str:
    """The separator that splits a header line into the most fields."""
    counts = {d: len(next(csv.reader([record_line], delimiter=d), [])) for d in readers.DELIMITERS}
    return max(readers.DELIMITERS, key=lambda d: counts[d])


def header_line(text: Path, line_no: int) -> str:
    with open(text, encoding="utf-8-sig", newline="") as f:
        head = f.read(HEAD_CHARS)
    lines = head.splitlines()
    return lines[line_no - 1] if 0 < line_no <= len(lines) else ""


def stage_rows(con: duckdb.DuckDBPyConnection, path: Path, text: Path, header_ends: int,
               width: int, delimiter: str, empty: tuple[str, ...] = ("",)) -> None:
    """TEMP TABLE `rows`: columns c1..c<width> (trimmed text, the exports' empty markers as NULL)
    and `_row`, the line of the file each record starts on (the header record ends on line
    `header_ends`), with `empty` values as NULL. Fully empty records (Zoom's separator row) are
    left out."""
    cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(1, width + 1))
    nothing = ", ".join(sql_str(e) for e in empty)
    sel = ", ".join(f"CASE WHEN trim(c{i}) IN ({nothing}) THEN NULL ELSE trim(c{i}) END AS c{i}"
                    for i in range(1, width + 1))

    def scan(parallel: bool) -> None:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _raw AS SELECT * FROM read_csv({sql_str(str(text))}, "
            f"header = false, skip = {header_ends}, columns = {{{cols}}}, auto_detect = false, "
            f"delim = {sql_str(delimiter)}, quote = '\"', escape = '\"', strict_mode = false, "
            f"null_padding = true{'' if parallel else ', parallel = false'})")

    try:
        try:
            scan(True)
        except duckdb.Error as e:
            if "parallel" not in str(e):
                raise
            scan(False)
        # rowid is the record's position in the file (insertion order is kept).
        con.execute(f"CREATE OR REPLACE TEMP TABLE rows AS SELECT rowid + {header_ends + 1} AS "
                    f"_row, {sel} FROM _raw")
        nonempty = " OR ".join(f"c{i} IS NOT NULL" for i in range(1, width + 1))
        con.execute(f"DELETE FROM rows WHERE NOT ({nonempty})")
        con.execute("DROP TABLE _raw")
    except duckdb.Error as e:
        raise refused(path, f"cannot be read as CSV ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return readers._first_line(e)


def column_for(header: list[str], *names: str) -> str | None:
    """`c<i>` of the first header cell whose normalised name is one of `names`."""
    norm = [readers.normalise_name(h) for h in header]
    for n in names:
        if n in norm:
            return f"c{norm.index(n) + 1}"
    return None


def clock_parts_sql(expr: str) -> str:
    return f"regexp_extract({expr}, {sql_str(_CLOCK)}, ['a', 'b', 'y', 'h', 'mi', 's', 'ap'])"


def day_first(con: duckdb.DuckDBPyConnection, path: Path, exprs: list[str], source: str,
              mapping: dict, notes: list[str]) -> bool:
    """Whether `d/d/y` dates in `exprs` over `source` are day-first: the mapping's `dayfirst`, else
    told by a first number above 12 (day-first) or a second one (month-first)."""
    given = mapping.get("dayfirst")
    if given is not None:
        return bool(given)
    firsts, seconds = [], []
    for e in exprs:
        p = clock_parts_sql(e)
        firsts.append(f"max(TRY_CAST(nullif({p}.a, '') AS INTEGER))")
        seconds.append(f"max(TRY_CAST(nullif({p}.b, '') AS INTEGER))")
    row = con.execute(f"SELECT greatest({', '.join(firsts)}), greatest({', '.join(seconds)}) "
                      f"FROM {source}").fetchall()[0]
    a, b = (row or (None, None))
    if a is None:  # no date of that shape: ISO 8601 or Unix times only
        return False
    if a > 12 and b is not None and b > 12:
        raise refused(path, "dates are neither all day-first nor all month-first (a first and a "
                            "second number above 12): fix the file or set dayfirst in the mapping")
    if a > 12:
        notes.append("dates read day-first (DD/MM/YYYY): a first number is above 12")
        return True
    if b is not None and b > 12:
        notes.append("dates read month-first (MM/DD/YYYY): a second number is above 12")
        return False
    raise refused(path, "dates such as 01/02 could be day-first or month-first and no date in "
                        "the file tells: set dayfirst: true or false in the mapping "
                        "(--dayfirst / --monthfirst)")


def zone(path: Path, mapping: dict, needed: bool) -> str | None:
    """The mapping's IANA time zone, checked; refused when local times need one and none given."""
    tz = mapping.get("timezone")
    if not tz:
        if needed:
            raise refused(path, "its times are local clock times without a UTC offset: set "
                                "timezone in the mapping (an IANA name such as Europe/Madrid)")
        return None
    try:
        zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise refused(path, f"the mapping's timezone '{tz}' is not an IANA time zone name "
                            "(such as Europe/Madrid or America/New_York)") from None
    return str(tz)


def has_naive_sql(expr: str) -> str:
    """Whether a text time is a clock time without a UTC offset (and is a time at all)."""
    return (f"({expr} IS NOT NULL AND NOT (regexp_matches({expr}, {sql_str(_OFFSET)}) AND "
            f"length({expr}) > 10) AND ({clock_parts_sql(expr)}.h <> '' OR TRY_CAST({expr} AS "
            "TIMESTAMP) IS NOT NULL))")


def local_sql(expr: str, dayfirst: bool) -> str:
    """The naive TIMESTAMP a `d/d/y h:m[:s] [AM|PM]` or ISO 8601 text writes (NULL if neither)."""
    p = clock_parts_sql(expr)
    day, month = (f"{p}.a", f"{p}.b") if dayfirst else (f"{p}.b", f"{p}.a")
    hour = f"TRY_CAST({p}.h AS INTEGER)"
    ap = f"lower(left({p}.ap, 1))"
    hour24 = (f"CASE WHEN {ap} = '' THEN {hour} WHEN {hour} NOT BETWEEN 1 AND 12 THEN NULL "
              f"WHEN {ap} = 'p' THEN {hour} % 12 + 12 ELSE {hour} % 12 END")
    year = f"TRY_CAST({p}.y AS INTEGER)"
    year4 = f"CASE WHEN length({p}.y) = 2 THEN 2000 + {year} ELSE {year} END"
    made = (f"try(make_timestamp({year4}, TRY_CAST({month} AS INTEGER), TRY_CAST({day} AS "
            f"INTEGER), {hour24}, TRY_CAST({p}.mi AS INTEGER), "
            f"coalesce(TRY_CAST(nullif({p}.s, '') AS DOUBLE), 0)))")
    return f"CASE WHEN {p}.h <> '' THEN {made} ELSE TRY_CAST({expr} AS TIMESTAMP) END"


def instant_sql(expr: str, dayfirst: bool, tz: str | None) -> str:
    """The TIMESTAMPTZ of a text time: its own offset when it has one, else read in `tz`."""
    aware = f"regexp_matches({expr}, {sql_str(_OFFSET)}) AND length({expr}) > 10"
    local = local_sql(expr, dayfirst)
    in_zone = f"timezone({sql_str(tz)}, {local})" if tz else "NULL::TIMESTAMPTZ"
    return f"CASE WHEN {aware} THEN TRY_CAST({expr} AS TIMESTAMPTZ) ELSE {in_zone} END"


def iso_sql(instant: str) -> str:
    """ISO 8601 text of a TIMESTAMPTZ in UTC (the connection's zone), e.g. 2021-11-19T14:54:15Z
    written with an explicit +00:00."""
    return f"strftime({instant}, '%Y-%m-%dT%H:%M:%S+00:00')"


def ambiguous_note(con: duckdb.DuckDBPyConnection, locals_sql: str, source: str, tz: str,
                   notes: list[str]) -> None:
    """Say how many local times fall in an hour that is repeated or skipped in `tz`."""
    # Skipped: the instant read back is another clock time. Repeated: the instant an hour
    # before or after reads back as the same clock time (transitions of an hour).
    z = sql_str(tz)
    n = con.execute(
        f"SELECT count(*) FROM (SELECT t, timezone({z}, t) AS u FROM (SELECT {locals_sql} AS t "
        f"FROM {source})) WHERE t IS NOT NULL AND (timezone({z}, u) <> t OR "
        f"timezone({z}, u - INTERVAL 1 HOUR) = t OR timezone({z}, u + INTERVAL 1 HOUR) = t)"
    ).fetchall()[0]
    if n and n[0]:
        notes.append(f"{n[0]:,} local time(s) fall in the hour {tz} repeats or skips when summer "
                     "time starts or ends: read with the offset after the change (repeated hour) "
                     "or before it (skipped hour), as the contract's loader reads local times")


def text_sql(expr: str) -> str:
    """A number's text without a trailing `.0`."""
    return f"regexp_replace(CAST({expr} AS VARCHAR), '\\.0$', '')"


def events_table(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """The events' contract columns (text) and `_row` (int64) from a query giving them."""
    cols = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in EVENT_COLUMNS)
    return con.sql(f"SELECT {cols}, CAST(_row AS BIGINT) AS _row FROM ({sql}) ORDER BY _row"
                   ).to_arrow_table()
