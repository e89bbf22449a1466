"""What the log readers (Zoom, Moodle) share: the text of a file, its header record, its rows as
a DuckDB table, and local clock times as UTC instants.

Encoding is settled as for the contract's CSVs (`etl.readers`: byte order mark, UTF-8, else
Windows-1252 with a note). The small head of a file (its preamble and header record) is parsed
with Python's csv module; the rows themselves only ever by DuckDB.

Local times (`11/19/2021 9:54:15 AM`, `23/01/23, 12:09`) are taken apart in SQL: day-first or
month-first is told from the values where one of the first two numbers is above 12, else the
mapping must say; the clock time is read in the mapping's IANA zone exactly as DuckDB's
`timezone()` reads it (the contract's loader's reading; through a table of offsets per distinct
local hour, with `timezone()` per row only in hours where the offset changes): a time in the
hour repeated when summer time ends gets the second, standard-time, reading, and a time in the
skipped hour the offset before the change. A value that is not a time is passed on as written,
so the loader rejects its row naming the value.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from etl import readers
from etl.errors import RefusedFile
from etl.sources import _dates, _text
from etl.sources._text import connect, decoded, sql_str

__all__ = [
    "EVENT_COLUMNS", "EMPTY_DUMP", "EMPTY_REPORT", "HEAD_CHARS", "HEAD_RECORDS", "connect",
    "decoded", "find_header", "head_has", "stage_rows", "column_for",
    "clock_parts_sql", "parse_times", "day_first", "zone", "local_times", "instants", "iso_sql",
    "refused", "events_table", "sql_str", "text_sql",
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


def refused(path: Path, problem: str) -> RefusedFile:
    return RefusedFile(str(path), problem)


def read_decoded(path: Path, mapping: dict, notes: list[str], what: str,
                 read: Callable[[Path, Path, dict, list[str]], pa.Table]) -> pa.Table:
    """`read(path, text, mapping, notes)` on the file decoded to UTF-8 (`decoded`): what a
    log reader's `read` does. A `RefusedFile` passes; anything the parsers trip over in a
    damaged file becomes one line, "cannot be read as <what> (...)", never a traceback."""
    with _text.guarded(path, what), decoded(path, notes) as text:
        return read(path, text, mapping, notes)


def find_header(text: Path, is_header: Callable[[list[str]], bool], within: int = HEAD_RECORDS
                ) -> tuple[int, list[str], list[list[str]], str] | None:
    """The header record among the first `within` records of a UTF-8 CSV: the line it ends on,
    its cells, the records before it (a preamble) and the separator (`,` `;` tab `|`, the
    first with which a record passes `is_header`); None when there is none."""
    with open(text, encoding="utf-8-sig", newline="") as f:
        head = f.read(HEAD_CHARS)
    if len(head) == HEAD_CHARS and "\n" in head:
        head = head[: head.rfind("\n") + 1]  # not a record cut in the middle
    for d in readers.DELIMITERS:
        reader = csv.reader(io.StringIO(head), delimiter=d, quotechar='"')
        before: list[list[str]] = []
        try:
            for rec in reader:
                if is_header(rec):
                    return reader.line_num, rec, before, d
                before.append(rec)
                if len(before) >= within:
                    break
        except csv.Error:
            continue
    return None


def head_has(head: str, test: Callable[[list[str]], bool], within: int = HEAD_RECORDS) -> bool:
    """Whether one of the first `within` records of `head` (split on any of the separators)
    passes `test`: for `sniff`, which sees only the decoded head of a file."""
    text = "\n".join(head.lstrip("\ufeff").splitlines()[:within])
    for d in readers.DELIMITERS:
        try:
            if any(test(rec) for rec in csv.reader(io.StringIO(text), delimiter=d)):
                return True
        except csv.Error:
            continue
    return False


def stage_rows(con: duckdb.DuckDBPyConnection, path: Path, text: Path, header_ends: int,
               width: int, delimiter: str, empty: tuple[str, ...] = ("",)) -> None:
    """TEMP TABLE `rows`: columns c1..c<width> (trimmed text, the exports' empty markers as NULL)
    and `_row`, the line of the file each record starts on (the header record ends on line
    `header_ends`), with `empty` values as NULL. Fully empty records (Zoom's separator row) are
    left out."""
    try:
        _text.scan_csv(con, text, width=width, delimiter=delimiter, skip=header_ends)
        _text.finish_rows(con, width, header_ends + 1, empty)
    except duckdb.Error as e:
        raise refused(path, f"cannot be read as CSV ({_first_line(e)})") from None


def stage_table(path: Path, text: Path, header_ends: int, header: list[str], delimiter: str,
                empty: tuple[str, ...] = ("",)) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A new connection with the export's table staged (`stage_rows`) and the header as the
    readers use it: trailing empty header cells dropped (a trailing empty cell still has its
    field on every line, so the width counts it), the names checked (`readers._check_columns`:
    a file with two columns of one name is refused, naming them)."""
    width = len(header)
    header = header[:]
    while header and not header[-1].strip():
        header.pop()
    readers._check_columns(path, header)
    con = connect()
    stage_rows(con, path, text, header_ends, width, delimiter, empty)
    return con, header


def describe_export(path: Path, layouts: list[tuple[Callable[[list[str]], bool], int,
                                                   Callable[[list[list[str]]], str]]]
                    ) -> dict[str, Any]:
    """A log export's layout for `python -m etl inspect`: its encoding (the BOM's byte order
    named), and for the first of `layouts` (is_header, within, version) whose header is found,
    `version(the records before the header)`, the line the header ends on and the separator. A
    file that cannot be read says so in `read`; here it is described as far as it goes."""
    codec, note = readers._encoding(path)
    bom = codec in ("utf-8-sig", "utf-16", "utf-32")
    label = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8"}.get(codec, codec.upper())
    if codec == "utf-16":
        with open(path, "rb") as f:
            label = "UTF-16 LE" if f.read(2) == b"\xff\xfe" else "UTF-16 BE"
    out: dict[str, Any] = {"encoding": label, "bom": bom, "encoding_note": None if bom else note}
    with readers._as_utf8(path, codec) as text:
        for is_header, within, version in layouts:
            found = find_header(text, is_header, within=within)
            if found is not None:
                out.update(version=version(found[2]), header_rows=found[0], separator=found[3])
                break
    return out


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


# Times are parsed in passes over a staging table, each adding columns, so that every regular
# expression and zone lookup runs once per row (or once per distinct hour): `parse_times` takes
# the text apart, `day_first` decides the order of day and month, `local_times` makes the naive
# and the offset-bearing readings, `instants` reads the naive ones in the zone.

def parse_times(con: duckdb.DuckDBPyConnection, table: str, times: dict[str, str]) -> None:
    """Add `_p_<name>`, the parts of each time `times` names (name -> text expression), and
    `_t_<name>`, its text."""
    cols = ", ".join(f"{raw} AS _t_{n}, {clock_parts_sql(raw)} AS _p_{n}"
                     for n, raw in times.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT *, {cols} FROM {table}")


def day_first(con: duckdb.DuckDBPyConnection, path: Path, table: str, names: list[str],
              mapping: dict, notes: list[str]) -> bool:
    """Whether `d/d/y` dates of the parsed times `names` are day-first: the mapping's `dayfirst`,
    else told by a first number above 12 (day-first) or a second one (month-first)."""
    given = _dates.dayfirst_given(mapping)
    if given is not None:
        return given
    firsts = ", ".join(f"max(TRY_CAST(nullif(_p_{n}.a, '') AS INTEGER))" for n in names)
    seconds = ", ".join(f"max(TRY_CAST(nullif(_p_{n}.b, '') AS INTEGER))" for n in names)
    # No date of that shape (ISO 8601 or Unix times only) gives None: the order does not matter.
    a, b = con.execute(f"SELECT greatest({firsts}), greatest({seconds}) FROM {table}"
                       ).fetchall()[0]
    return _dates.dayfirst_from(path, a, b, notes)


zone = _dates.zone


def _local_sql(n: str, dayfirst: bool) -> str:
    """The naive TIMESTAMP a `d/d/y h:m[:s] [AM|PM]` or ISO 8601 text writes (NULL if neither)."""
    p = f"_p_{n}"
    day, month = (f"{p}.a", f"{p}.b") if dayfirst else (f"{p}.b", f"{p}.a")
    made = _dates.timestamp_sql(f"{p}.y", month, day, f"{p}.h", f"{p}.mi", f"{p}.s", f"{p}.ap")
    aware = f"regexp_matches(_t_{n}, {sql_str(_OFFSET)}) AND length(_t_{n}) > 10"
    return (f"CASE WHEN {p}.h <> '' THEN {made} WHEN {aware} THEN NULL "
            f"ELSE TRY_CAST(_t_{n} AS TIMESTAMP) END")


def local_times(con: duckdb.DuckDBPyConnection, table: str, names: list[str],
                dayfirst: bool) -> bool:
    """Add `_l_<name>` (a naive clock time) and `_a_<name>` (a time with its own offset) for
    each parsed time; say whether any time is a naive one (which needs a zone)."""
    cols = []
    for n in names:
        aware = (f"CASE WHEN regexp_matches(_t_{n}, {sql_str(_OFFSET)}) AND length(_t_{n}) > 10 "
                 f"THEN TRY_CAST(_t_{n} AS TIMESTAMPTZ) END")
        cols.append(f"{_local_sql(n, dayfirst)} AS _l_{n}, {aware} AS _a_{n}")
    parts = ", ".join(f"_p_{n}" for n in names)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * EXCLUDE ({parts}), "
                f"{', '.join(cols)} FROM {table}")
    naive = " OR ".join(f"_l_{n} IS NOT NULL" for n in names)
    return bool(con.execute(f"SELECT bool_or({naive}) FROM {table}").fetchall()[0][0])


def instants(con: duckdb.DuckDBPyConnection, table: str, names: list[str], tz: str | None,
             notes: list[str]) -> None:
    """Add `<name>`, the TIMESTAMPTZ of each time: its own offset, else its clock time read in
    `tz` (NULL when it is not a time; its text stays in `_t_<name>`)."""
    if tz is None:
        cols = ", ".join(f"_a_{n} AS {n}" for n in names)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT *, {cols} FROM {table}")
        return
    z = sql_str(tz)
    # The zone's offset per distinct local hour (at its start and end, and two hours around it):
    # ICU's timezone() per row would cost more than all the rest of the reading.
    hours = " UNION ".join(f"SELECT DISTINCT date_trunc('hour', _l_{n}) AS h FROM {table} "
                           f"WHERE _l_{n} IS NOT NULL" for n in names)

    def delta(at: str) -> str:
        return f"epoch_us(timezone({z}, {at})) - epoch_us({at})"

    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _hours AS SELECT h, {delta('h')} AS d0, "
        f"{delta('(h + INTERVAL 3599 SECOND)')} AS d1, "
        f"{delta('(h - INTERVAL 2 HOUR)')} <> {delta('(h + INTERVAL 3 HOUR)')} AS near "
        f"FROM ({hours})")
    cols, joins = [], []
    for n in names:
        joins.append(f"LEFT JOIN _hours h_{n} ON h_{n}.h = date_trunc('hour', t._l_{n})")
        cols.append(f"coalesce(_a_{n}, CASE WHEN h_{n}.d0 = h_{n}.d1 THEN "
                    f"make_timestamptz(epoch_us(_l_{n}) + h_{n}.d0) "
                    f"ELSE timezone({z}, _l_{n}) END) AS {n}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT t.*, {', '.join(cols)} "
                f"FROM {table} t {' '.join(joins)}")
    # Skipped: the instant read back is another clock time. Repeated: the instant an hour before
    # or after reads back as the same clock time (changes of an hour). Only near a change.
    n0 = names[0]
    count = con.execute(
        f"SELECT count(*) FROM (SELECT _l_{n0} AS t, {n0} AS u FROM {table} WHERE date_trunc("
        f"'hour', _l_{n0}) IN (SELECT h FROM _hours WHERE near)) WHERE timezone({z}, u) <> t OR "
        f"timezone({z}, u - INTERVAL 1 HOUR) = t OR timezone({z}, u + INTERVAL 1 HOUR) = t"
    ).fetchall()[0][0]
    if count:
        notes.append(f"{count:,} local time(s) fall in the hour {tz} repeats or skips when "
                     "summer time starts or ends: read with the offset after the change "
                     "(repeated hour) or before it (skipped hour), as the contract's loader "
                     "reads local times")


def iso_sql(instant: str) -> str:
    """ISO 8601 text of a TIMESTAMPTZ in UTC (the connection's zone), with an explicit +00:00."""
    return f"strftime({instant}, '%Y-%m-%dT%H:%M:%S+00:00')"


def text_sql(expr: str) -> str:
    """A number's text without a trailing `.0`."""
    return f"regexp_replace(CAST({expr} AS VARCHAR), '\\.0$', '')"


def events_table(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """The events' contract columns (text) and `_row` (int64) from a query giving them."""
    cols = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in EVENT_COLUMNS)
    return con.sql(f"SELECT {cols}, CAST(_row AS BIGINT) AS _row FROM ({sql}) ORDER BY _row"
                   ).to_arrow_table()
