"""What every text-export reader needs before its format's own rules: a private DuckDB
connection, the file decoded to UTF-8, its records staged as positional text columns, and one
refusal line for whatever the parsers trip over.

Encoding and separator are settled by `etl.readers`, as for the contract's CSVs, so an export and
a contract file are decoded the same way.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path

import duckdb

from etl import readers
from etl.errors import RefusedFile

__all__ = ["sql_str", "connect", "decoded", "guarded", "scan_csv", "finish_rows"]

# What a damaged file makes the parsers raise; a reader adds what its own parsers raise.
PARSE_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.Error, csv.Error, UnicodeError, ValueError, OSError, OverflowError)


def sql_str(s: str) -> str:
    """A SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def connect() -> duckdb.DuckDBPyConnection:
    """A private in-memory connection whose TIMESTAMPTZ text (and strftime) is UTC."""
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


@contextlib.contextmanager
def guarded(path: Path, what: str, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Any failure to parse the file (`PARSE_ERRORS` and `also`) becomes one RefusedFile line,
    "cannot be read as <what> (...)", never a traceback; a RefusedFile passes as it is."""
    try:
        yield
    except RefusedFile:
        raise
    except (*PARSE_ERRORS, *also) as e:
        raise RefusedFile(str(path), f"cannot be read as {what} ({readers._first_line(e)})"
                          ) from None


def scan_csv(con: duckdb.DuckDBPyConnection, text: Path, *, width: int, delimiter: str,
             skip: int = 0, header: bool = False) -> None:
    """TEMP TABLE `_raw`: columns c1..c<width> of text, every record of the UTF-8 CSV `text`
    after `skip` (and, with `header`, the header record), short records padded with NULL.

    DuckDB's parallel scanner cannot combine null_padding with a quoted line break; such a file
    is read again single-threaded."""
    cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(1, width + 1))

    def scan(parallel: bool) -> None:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _raw AS SELECT * FROM read_csv({sql_str(str(text))}, "
            f"header = {'true' if header else 'false'}, skip = {skip}, columns = {{{cols}}}, "
            f"auto_detect = false, delim = {sql_str(delimiter)}, quote = '\"', escape = '\"', "
            f"strict_mode = false, null_padding = true{'' if parallel else ', parallel = false'})")

    try:
        scan(True)
    except duckdb.Error as e:
        if "parallel" not in str(e):
            raise
        scan(False)


def finish_rows(con: duckdb.DuckDBPyConnection, width: int, first_row: int,
                empty: tuple[str, ...] = ("",)) -> None:
    """TEMP TABLE `rows` from `_raw` (dropped): `_row`, the number of each record with the first
    one `first_row`, and c1..c<width> trimmed, the `empty` markers as NULL; fully empty records
    (a separator row) are left out."""
    nothing = ", ".join(sql_str(e) for e in empty)
    sel = ", ".join(f"CASE WHEN trim(c{i}) IN ({nothing}) THEN NULL ELSE trim(c{i}) END AS c{i}"
                    for i in range(1, width + 1))
    # rowid is the record's position in the file: insertion order is kept.
    con.execute(f"CREATE OR REPLACE TEMP TABLE rows AS SELECT rowid + {first_row} AS _row, {sel} "
                "FROM _raw")
    nonempty = " OR ".join(f"c{i} IS NOT NULL" for i in range(1, width + 1))
    con.execute(f"DELETE FROM rows WHERE NOT ({nonempty})")
    con.execute("DROP TABLE _raw")
