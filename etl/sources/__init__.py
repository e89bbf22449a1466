"""Readers of what programs actually export (survey tools, LMS logs, video platforms).

Each format is one module `etl/sources/<name>.py` with
    FORMAT: str   the name `--format` uses ("qualtrics", "zoom", "moodle", ...)
    KIND: str     the contract kind it yields ("responses" or "events")
    sniff(path, head) -> bool                   head: the file's first ~64 KB as text
    read(path, mapping, notes) -> pyarrow.Table the contract columns of KIND as strings plus
                                                `_row` (int64, the record's number in the file)
and optionally `describe(path) -> dict` (what `python -m etl inspect` and `mapping new` show:
header rows, separator, questions). A reader only reshapes: validation, pseudonymisation and
writing stay in `etl.load`, so every format gets the contract loader's guarantees.

`stage()` puts a reader's table where `etl.readers.read_into` puts a contract file: `src_raw`
of trimmed text columns (a TEMP table, or a view of the reader's table when the reader trimmed
every column itself) and the view `src` with `_row`.
"""

from __future__ import annotations

import csv
import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from etl import readers
from etl.errors import RefusedFile

__all__ = ["MODULES", "FORMATS", "available", "detect", "by_name", "load_mapping", "stage",
           "head_text", "fill_values", "describe", "where_from",
           "missing",            "EXCHANGE_IN_FILE"]

# Tried in this order by `detect`; the first whose sniff says yes reads the file. Teams before
# Zoom: a Teams report's `3. In-Meeting Activities` header (Name, Join Time) passes Zoom's sniff.
MODULES = ("qualtrics", "limesurvey", "gforms", "kobo", "teams", "zoom", "moodle", "xapi",
           "caliper")
FORMATS = ("auto", "csv", *MODULES)
HEAD_BYTES = 64 << 10
# Keys a mapping may give for every format; each reader documents its own (items, participant...).
FILL_KEYS = {"wave": "wave", "exchange": "exchange_id"}
# Where a format's files say which exchange a row belongs to, if they can (inspect shows it, a
# load refusing a file without any names it). Zoom, Teams and Moodle reports carry no exchange:
# it comes from --exchange or the mapping's `exchange`, else the file is refused.
_SURVEY_COLUMN = "a column named exchange_id, or the column the mapping's 'exchange' names"
EXCHANGE_IN_FILE = {
    "qualtrics": _SURVEY_COLUMN, "limesurvey": _SURVEY_COLUMN, "gforms": _SURVEY_COLUMN,
    "kobo": _SURVEY_COLUMN,
    "xapi": "each statement's course (context.contextActivities.grouping, or the key and the "
            "map the mapping's 'exchange_from' gives)",
    "caliper": "each event's group (the course section; mapped by the mapping's "
               "'exchange_from')",
}
WAVE_IN_FILE = "a column named wave, or the column the mapping's 'wave' names"


def available() -> dict[str, ModuleType]:
    """The reader modules that import; one missing (not written yet) is tolerated."""
    out: dict[str, ModuleType] = {}
    for name in MODULES:
        try:
            out[name] = importlib.import_module(f"etl.sources.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"etl.sources.{name}":
                raise  # a module that exists but imports something missing is a real error
    return out


def head_text(path: Path) -> str:
    """The first ~64 KB as text: by byte order mark, else UTF-8, else Windows-1252."""
    with open(path, "rb") as f:
        raw = f.read(HEAD_BYTES)
    for bom, codec, _ in readers.BOMS:  # the byte order marks the loader reads
        if raw.startswith(bom):
            return raw.decode(codec, errors="ignore")
    if b"\0" in raw[:4096]:
        le = raw[1::2].count(0) > raw[0::2].count(0)
        return raw.decode("utf-16-le" if le else "utf-16-be", errors="ignore")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start > len(raw) - 4:  # a character cut by the 64 KB boundary
            return raw[:e.start].decode("utf-8")
        return raw.decode("cp1252", errors="replace")


def detect(path: Path) -> ModuleType | None:
    """The reader whose sniff recognises the file, or None (a contract file, or unknown)."""
    try:
        head = head_text(path)
    except OSError:
        return None
    for mod in available().values():
        try:
            if mod.sniff(path, head):
                return mod
        except Exception:  # a sniffer must never stop detection of the other formats
            continue
    return None


def by_name(fmt: str, path: Path) -> ModuleType:
    mods = available()
    if fmt not in mods:
        raise RefusedFile(str(path), f"--format {fmt}: no reader for it in this version (readers: "
                               f"{', '.join(sorted(mods)) or 'none'}, or csv for the contract)")
    return mods[fmt]


def load_mapping(path: Path | None) -> dict:
    """A program's mapping YAML as a dict ({} without one); one clear line when it is broken."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise RefusedFile(str(path), f"mapping cannot be read ({e.strerror or e})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RefusedFile(str(path), f"mapping is not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RefusedFile(str(path), "mapping must be a YAML mapping (key: value lines), e.g. "
                                     "'wave: pre' and 'items: {QID1: icc_1}'")
    items = data.get("items")
    if items is not None and not isinstance(items, dict):
        raise RefusedFile(str(path), "mapping's 'items' must map question ids to item ids, e.g. "
                                     "'items: {QID1: icc_1, Q2_1: icc_2}'")
    return data


def fill_values(mapping: dict, wave: str | None, exchange: str | None) -> dict[str, str]:
    """Contract columns to fill where a file has none: the command line over the mapping."""
    out = {col: str(mapping[key]) for key, col in FILL_KEYS.items()
           if mapping.get(key) not in (None, "")}
    if wave:
        out["wave"] = wave
    if exchange:
        out["exchange_id"] = exchange
    return out


def where_from(mod: ModuleType, col: str) -> str | None:
    """Where the files of `mod`'s format carry `col` (exchange_id or wave), in words; None when
    they never do (Zoom, Teams and Moodle reports name no exchange; logs have no wave)."""
    if col == "wave":
        return WAVE_IN_FILE if mod.KIND == "responses" else None
    return EXCHANGE_IN_FILE.get(mod.FORMAT)


def missing(mod: ModuleType, col: str) -> str:
    """Why a file of `mod`'s format has no `col` on any row, and the remedy."""
    what = col.split("_")[0]
    src = where_from(mod, col)
    why = (f"a {mod.FORMAT} export carries no {what}" if src is None
           else f"no row has one in {src}")
    return f"{why}: give --{what} ID or put '{what}: ID' in the mapping"


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower().lstrip("\ufeff"))


def stage(con: duckdb.DuckDBPyConnection, mod: ModuleType, path: Path, mapping: dict,
          fill: dict[str, str], notes: list[str], table: str = "src") -> list[str]:
    """Read the file with `mod` into TEMP table `<table>_raw` and view `<table>`; return columns.

    The reader's columns become trimmed text (empty = NULL); `fill` adds the contract columns
    the file does not carry (wave, exchange_id from --wave/--exchange or the mapping).
    """
    try:
        data = mod.read(path, mapping, notes)
    except (duckdb.Error, pa.ArrowException, OSError, ValueError, csv.Error) as e:
        # A reader refuses what it knows is wrong; anything its parsers trip over in a damaged
        # file is still one line naming the file, never a traceback.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RefusedFile(str(path), f"cannot be read as a {mod.FORMAT} export ({first})"
                          ) from None
    if not isinstance(data, pa.Table) or "_row" not in data.column_names:
        raise RefusedFile(str(path), f"the {mod.FORMAT} reader gave no `_row` column "
                                     "(a bug in the reader)")
    cols = [c for c in data.column_names if c != "_row"]
    names = [_norm(c) for c in cols]
    # A reader may mark a column it already gave as CLEAN (trimmed text, no empty strings):
    # it made each value once per distinct value, and trimming a million rows again is waste.
    select = [f'CAST("{c}" AS VARCHAR) AS "{n}"' if is_clean(data.schema.field(c)) else
              f'NULLIF(trim(CAST("{c}" AS VARCHAR)), \'\') AS "{n}"' for c, n in zip(
                  cols, names, strict=True)]
    for col, value in fill.items():
        if col in names:
            i = names.index(col)
            if _all_empty(data.column(cols[i])):  # Zoom's, Teams' exchange: the reader has none
                select[i] = f'{_sql_str(value)} AS "{col}"'
                continue
            notes.append(f"{col} taken from the file; '{value}' (--{col.split('_')[0]} or "
                         "the mapping) only fills rows where it is empty")
            select[i] = (f'coalesce(NULLIF(trim(CAST("{cols[i]}" AS VARCHAR)), \'\'), '
                         f"{_sql_str(value)}) AS \"{col}\"")
        else:
            select.append(f'{_sql_str(value)} AS "{col}"')
            names.append(col)
    readers.drop_source(con, table)
    arrow = readers.arrow_name(table)
    con.register(arrow, data)
    # A table whose every column is CLEAN (xAPI's) is read where it is, through a view: the
    # loader scans it three or four times, each scan cheaper than copying a million rows into
    # a TEMP table. Columns still to trim are trimmed once, into a TEMP table, as CSV's are.
    view = all(is_clean(data.schema.field(c)) for c in cols)
    try:
        con.execute(f'CREATE TEMP {"VIEW" if view else "TABLE"} "{table}_raw" AS SELECT '
                    f'{", ".join(select)}, _row::BIGINT AS _row FROM "{arrow}"')
    finally:
        if not view:
            con.unregister(arrow)
    con.execute(f'CREATE TEMP VIEW "{table}" AS SELECT * FROM "{table}_raw"')
    return names


CLEAN = {b"clean": b"trimmed, no empty strings"}
"""Field metadata of a reader's column whose text `stage` need not trim: see `clean`."""

CLEAN_SQL = "NULLIF(trim(CAST({} AS VARCHAR)), '')"
"""What `stage` does to each value of a column not marked CLEAN (DuckDB SQL)."""


def clean(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`table` with `column` (text that went through `CLEAN_SQL`) set as `name`, marked CLEAN."""
    field = pa.field(name, column.type, metadata=CLEAN)
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), field, column)
    return table.append_column(field, column)


def is_clean(field: pa.Field) -> bool:
    return bool(field.metadata) and b"clean" in field.metadata


def _all_empty(column: pa.ChunkedArray) -> bool:
    if column.null_count == len(column):
        return True
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    return not pc.any(pc.greater(pc.utf8_length(text), 0)).as_py()


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def describe(mod: ModuleType, path: Path) -> dict[str, Any]:
    """What the reader can say about the file's layout (empty when it has no `describe`)."""
    fn = getattr(mod, "describe", None)
    return fn(path) if fn else {}
