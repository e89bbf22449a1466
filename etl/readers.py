"""Reading source files into a staging table of text columns, and telling their kind.

Every format lands the same way: a TEMP table whose columns are VARCHAR with normalised names
(lower case, spaces and dashes to `_`) plus `_row`, the row's number in the file as a user
would count it in a spreadsheet (CSV and XLSX: header = row 1, so the first data row is 2;
Parquet: first row 1). A CSV record whose quoted value holds a line break is one row, as in
Excel, so in a text editor such a file's later rows sit on higher line numbers than `_row`.
Validation then works on text, one code path for all formats.

What is read is settled before DuckDB sees the file, from its bytes and its header record:

- the encoding: a byte order mark (UTF-8, UTF-16, UTF-32), else UTF-8 if every byte is valid
  UTF-8, else Windows-1252 (Excel's "CSV" on Windows). Anything but UTF-8 is transcoded to a
  private temporary UTF-8 copy, and the report says which encoding was assumed;
- the dialect: RFC 4180 (fields quoted with `"`, a `"` inside doubled), as Python's csv module
  and Excel write it, with the separator (`,` `;` tab `|`) that splits the header record into
  the most columns. DuckDB's own sniffer guessed other dialects on such files;
- the width (at most `max_columns()`) and unique column names, from the header alone, so a file
  of 20,000 columns is refused in milliseconds instead of exhausting memory;
- for XLSX, the sheet: the only one, or the one named after the file's kind.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import duckdb
import pandas as pd

import surveys
from etl import schema
from etl.errors import RefusedFile

__all__ = [
    "SUFFIXES", "read_into", "drop_source", "arrow_name", "detect_kind", "normalise_name",
    "expand_paths", "max_columns", "split_header",
]

SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}
DELIMITERS = (",", ";", "\t", "|")  # tried in this order; the first of equal splits wins
HEADER_CHARS = 4 << 20  # the header record is looked for in this much of the text
CHUNK = 1 << 20
# (byte order mark, Python codec, what the report calls it); UTF-32's marks start like UTF-16's.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"), (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
CONVERT = ("save it from Excel as 'CSV UTF-8 (comma delimited)', or convert it, e.g. "
           "'iconv -f SHIFT_JIS -t UTF-8 in.csv > out.csv' with its real encoding")


def normalise_name(name: str) -> str:
    n = re.sub(r"[\s\-]+", "_", str(name).strip().lower().lstrip("\ufeff"))
    return n


@cache
def max_columns() -> int:
    """The widest file the loader reads: four times what any kind can use, and at least 1,000.

    A kind can use its contract columns, the items of every instrument (responses) and the
    identifying columns it drops; exports carry more (Qualtrics adds ~20 of its own), so the
    limit is generous. Far wider files are mistakes (a transposed sheet) and cost minutes and
    gigabytes to stage column by column, so they are refused from their header.
    """
    items = len(surveys.item_index(surveys.load_instruments()))
    widest = max(len(t.column_names) for t in schema.TABLES.values())
    return max(1_000, 4 * (widest + items + len(schema.IDENTIFYING_COLUMNS)))


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their readable files (sorted); unknown names refused."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)
            )
        elif p.exists():
            out.append(p)
        else:
            raise RefusedFile(str(p), "no such file or folder")
    return out


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# -- encodings -----------------------------------------------------------------------------------

def _first_undecodable(path: Path, codec: str) -> int | None:
    """Offset of the first byte `codec` cannot decode, or None when the whole file decodes."""
    dec = codecs.getincrementaldecoder(codec)()
    offset = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            # ASCII is valid UTF-8: skip it, unless a character is pending across the chunks.
            if not (codec == "utf-8" and chunk.isascii() and not dec.getstate()[0]):
                try:
                    dec.decode(chunk)
                except UnicodeDecodeError as e:
                    return offset + e.start
            offset += len(chunk)
    try:
        dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return offset
    return None


def _encoding(path: Path) -> tuple[str, str | None]:
    """The file's Python codec, and a note for the report when it is not UTF-8."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    for bom, codec, label in BOMS:
        if head.startswith(bom):
            return codec, None if label == "UTF-8" else f"read as {label} (byte order mark)"
    if b"\0" in head:  # ASCII text in UTF-16 has a zero in every other byte
        codec = "utf-16-le" if head[1::2].count(0) > head[0::2].count(0) else "utf-16-be"
        if _first_undecodable(path, codec) is None:
            return codec, f"read as {codec.upper()} (no byte order mark)"
        raise RefusedFile(str(path), "holds zero bytes but is not UTF-16 text: is it a "
                                     f"spreadsheet or database file renamed? {CONVERT}")
    bad = _first_undecodable(path, "utf-8")
    if bad is None:
        return "utf-8", None
    if _first_undecodable(path, "cp1252") is None:
        return "cp1252", ("not UTF-8: read as Windows-1252 (Excel's 'CSV' on Windows); if "
                          "accented letters look wrong, save it as 'CSV UTF-8' and load it again")
    with open(path, "rb") as f:
        f.seek(bad)
        byte = f.read(1)
    raise RefusedFile(str(path), f"is not UTF-8, UTF-16 or Windows-1252 text (byte 0x{byte.hex()} "
                                 f"at offset {bad:,}): {CONVERT}")


@contextlib.contextmanager
def _as_utf8(path: Path, codec: str) -> Iterator[Path]:
    """The file itself when it is UTF-8, else a private UTF-8 copy removed afterwards."""
    if codec in ("utf-8", "utf-8-sig"):
        yield path
        return
    fd, tmp = tempfile.mkstemp(prefix="exchange-impact-", suffix=".csv")  # owner-only
    try:
        with open(path, encoding=codec, newline="") as src, \
                open(fd, "w", encoding="utf-8", newline="") as out:
            while text := src.read(CHUNK):
                out.write(text)
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def split_header(text: str) -> tuple[list[str], str]:
    """The first record of `text` and its separator: the one of `,` `;` tab `|` giving the most
    fields (the first of equal splits)."""
    best: tuple[list[str], str] = ([], ",")
    for d in DELIMITERS:
        try:
            rec = next(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=d,
                                  quotechar='"'), [])
        except csv.Error:  # e.g. a record longer than the csv module's field limit
            continue
        if len(rec) > len(best[0]):
            best = (rec, d)
    return best


def _header(path: Path) -> tuple[list[str], str]:
    """The header record of a UTF-8 CSV and its separator: the one giving the most columns."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        return split_header(f.read(HEADER_CHARS))


def _check_columns(path: Path, header: list[str]) -> None:
    """Refuse a file far wider than any kind, or one with two columns of the same name."""
    while header and not str(header[-1] or "").strip():  # trailing empty header cells
        header = header[:-1]
    if len(header) > max_columns():
        raise RefusedFile(
            str(path), f"has {len(header):,} columns; at most {max_columns():,} are read (the "
                       "contract and the instruments use far fewer): is the sheet transposed?")
    seen: dict[str, int] = {}
    dups: list[str] = []
    for i, name in enumerate(header, start=1):
        n = normalise_name(name or "")
        if not n:
            continue
        if n in seen:
            dups.append(f"'{n}' (columns {seen[n]} and {i})")
        else:
            seen[n] = i
    if dups:
        raise RefusedFile(str(path), f"duplicate column name{'s' if len(dups) > 1 else ''} "
                                     f"{', '.join(dups)}: rename or remove one of each")


def _sheet(path: Path, kind: str | None, notes: list[str]) -> str:
    """The sheet to read: the only one, else the one named after the kind; width checked."""
    from openpyxl import load_workbook  # only a workbook needs it: ≈ 0.2 s of every start

    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        names = list(wb.sheetnames)
        wanted = {kind} if kind else set(schema.CONTRACT_KINDS)
        named = [n for n in names if normalise_name(n) in wanted
                 or normalise_name(n).rstrip("s") + "s" in wanted]
        if len(names) == 1:
            sheet = names[0]
        elif len(named) == 1:
            sheet = named[0]
            notes.append(f"sheet '{sheet}' read; other sheets not read: "
                         f"{', '.join(n for n in names if n != sheet)}")
        else:
            target = f"'{kind}'" if kind else "after its kind (e.g. 'events')"
            raise RefusedFile(
                str(path), f"has {len(names)} sheets ({', '.join(names)}) and "
                           f"{'none' if not named else 'more than one'} is named after its kind: "
                           f"name the sheet to load {target}, or save each sheet as its own file")
        header = next(wb[sheet].iter_rows(max_row=1, values_only=True), ())
    finally:
        wb.close()
    _check_columns(path, ["" if v is None else str(v) for v in header])
    return sheet


def _csv_sql(path: Path, delimiter: str, parallel: bool) -> str:
    # Text only: types are checked by validation, which can say which row broke which rule.
    # null_padding fills short rows; DuckDB's parallel scanner cannot combine it with a quoted
    # line break, so such files are read again single-threaded (see read_into).
    return (f"SELECT * FROM read_csv({_sql_str(str(path))}, all_varchar = true, header = true, "
            f"auto_detect = true, delim = {_sql_str(delimiter)}, quote = '\"', escape = '\"', "
            "strict_mode = false, null_padding = true, sample_size = 20480"
            f"{'' if parallel else ', parallel = false'})")


def read_into(con: duckdb.DuckDBPyConnection, path: Path, table: str = "src", *,
              kind: str | None = None, notes: list[str] | None = None) -> list[str]:
    """Create TEMP TABLE `table` from the file; return its (normalised) data column names.

    `kind` picks the sheet of a workbook; `notes` receives what was assumed on the way (an
    encoding other than UTF-8, the sheet read) for the file's report.
    """
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise RefusedFile(
            str(path),
            f"unknown format '{path.suffix}'; expected one of {', '.join(sorted(SUFFIXES))}",
        )
    notes = notes if notes is not None else []
    if fmt == "csv":
        codec, note = _encoding(path)
        if note:
            notes.append(note)
        with _as_utf8(path, codec) as text:
            header, delimiter = _header(text)
            _check_columns(path, header)
            try:
                return _stage(con, path, _csv_sql(text, delimiter, True), 2, fmt, table)
            except RefusedFile as e:
                if "parallel=false" not in e.problem:
                    raise
                return _stage(con, path, _csv_sql(text, delimiter, False), 2, fmt, table)
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            _check_columns(path, list(pq.read_schema(path).names))
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise RefusedFile(str(path), f"cannot be read as PARQUET ({_first_line(e)})") from None
        return _stage(con, path, f"SELECT * FROM read_parquet({_sql_str(str(path))})", 1, fmt,
                      table)
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        sheet = _sheet(path, kind, notes)
        df = pd.read_excel(path, sheet_name=sheet, dtype=str, engine="openpyxl",
                           keep_default_na=False)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, InvalidFileException) as e:
        raise RefusedFile(str(path), f"cannot be read as XLSX ({_first_line(e)})") from None
    df = df.astype("object").where(df.notna(), None)
    con.register("_xlsx_src", df)
    try:
        return _stage(con, path, "SELECT * FROM _xlsx_src", 2, fmt, table)
    finally:
        con.unregister("_xlsx_src")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _stage(con: duckdb.DuckDBPyConnection, path: Path, rel_sql: str, offset: int, fmt: str,
           table: str) -> list[str]:
    """Store `rel_sql` as the trimmed text table `<table>_raw`, and the view `<table>` with `_row`
    added."""
    try:
        cols = [d[0] for d in con.execute(f"DESCRIBE {rel_sql}").fetchall()]
    except (duckdb.Error, ValueError, OSError, KeyError) as e:
        raise RefusedFile(str(path), f"cannot be read as {fmt.upper()} ({_first_line(e)}"
                                     f"{_hint(e)})") from None
    if not cols:
        raise RefusedFile(str(path), "has no columns")
    names = [normalise_name(c) for c in cols]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RefusedFile(str(path), f"has duplicate columns {dup}")
    select = ", ".join(
        f'NULLIF(trim(CAST("{c}" AS VARCHAR)), \'\') AS "{n}"'
        for c, n in zip(cols, names, strict=False)
    )
    try:
        # One pass reads, trims and stores; preserve_insertion_order (DuckDB's default) keeps
        # file order, so the stored table's rowid is the row's position in the file.
        drop_source(con, table)
        con.execute(f'CREATE TEMP TABLE "{table}_raw" AS SELECT {select} FROM ({rel_sql})')
        con.execute(
            f'CREATE TEMP VIEW "{table}" AS SELECT rowid + {offset} AS _row, * FROM "{table}_raw"'
        )
    except duckdb.Error as e:
        raise RefusedFile(str(path), f"cannot be read ({_first_line(e)}{_hint(e)})") from None
    return names


def _hint(e: BaseException) -> str:
    """DuckDB's own explanation of a CSV error, when its first line is only 'CSV Error on Line'."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith(("CSV Error", "Invalid Input Error: CSV Error")):
        return f": {lines[1]}"
    return ""


def arrow_name(table: str) -> str:
    """The name under which `etl.sources.stage` registers a reader's Arrow table."""
    return f"{table}_arrow"


def drop_source(con: duckdb.DuckDBPyConnection, table: str = "src") -> None:
    """Drop `<table>` and `<table>_raw`, which is a TEMP table, or a view of a registered
    Arrow table (`etl.sources.stage`), unregistered too."""
    con.execute(f'DROP VIEW IF EXISTS "{table}"')
    is_view = con.execute("SELECT count(*) FROM duckdb_views() WHERE temporary AND view_name = ?",
                          [f"{table}_raw"]).fetchall()[0][0]
    con.execute(f'DROP {"VIEW" if is_view else "TABLE"} IF EXISTS "{table}_raw"')
    con.unregister(arrow_name(table))


def detect_kind(path: Path, columns: list[str], item_ids: set[str]) -> str | None:
    """The contract kind: the file name's first word, else the best match of required columns."""
    words = re.split(r"[^a-z]+", path.stem.lower()) if path.stem else [""]
    first = words[0]
    if "rates" in words:  # "exchange_rates_2026.csv" holds rates, not exchanges
        return "rates"
    if first in schema.CONTRACT_KINDS:
        return first
    if first.rstrip("s") + "s" in schema.CONTRACT_KINDS:  # "event.csv", "response_wave2.csv"
        return first.rstrip("s") + "s"
    cols = set(columns)
    if item_ids & cols and {"participant_id", "wave"} <= cols:
        return "responses"
    best, best_score = None, 0.0
    for kind in schema.LOAD_ORDER:
        req = set(schema.TABLES[kind].required)
        if kind == "responses":
            continue
        if req <= cols:
            score = len(req) / len(cols | req)
            if score > best_score:
                best, best_score = kind, score
    return best
