"""Reading source files into a staging table of text columns, and telling their kind.

Every format lands the same way: a TEMP table whose columns are VARCHAR with normalised names
(lower case, spaces and dashes to `_`) plus `_row`, the row's number in the file as a user
would count it (CSV and XLSX: header = row 1, so the first data row is 2; Parquet: first row 1).
Validation then works on text, one code path for all formats.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd

from etl import schema
from etl.errors import RefusedFile

__all__ = ["SUFFIXES", "read_into", "drop_source", "detect_kind", "normalise_name", "expand_paths"]

SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}


def normalise_name(name: str) -> str:
    n = re.sub(r"[\s\-]+", "_", str(name).strip().lower().lstrip("\ufeff"))
    return n


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


def read_into(con: duckdb.DuckDBPyConnection, path: Path, table: str = "src") -> list[str]:
    """Create TEMP TABLE `table` from the file; return its (normalised) data column names."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise RefusedFile(
            str(path), f"unknown format '{path.suffix}'; expected one of {', '.join(sorted(SUFFIXES))}"
        )
    try:
        if fmt == "csv":
            # Text only: types are checked by validation, which can say which row broke which rule.
            rel_sql = (
                f"SELECT * FROM read_csv({_sql_str(str(path))}, all_varchar = true, header = true, "
                "auto_detect = true, strict_mode = false, null_padding = true, sample_size = 20480)"
            )
            offset = 2
        elif fmt == "parquet":
            rel_sql = f"SELECT * FROM read_parquet({_sql_str(str(path))})"
            offset = 1
        else:
            df = pd.read_excel(path, dtype=str, engine="openpyxl", keep_default_na=False)
            df = df.astype("object").where(df.notna(), None)
            con.register("_xlsx_src", df)
            rel_sql = "SELECT * FROM _xlsx_src"
            offset = 2
        cols = [d[0] for d in con.execute(f"DESCRIBE {rel_sql}").fetchall()]
    except (duckdb.Error, ValueError, OSError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RefusedFile(str(path), f"cannot be read as {fmt.upper()} ({first})") from None
    if not cols:
        raise RefusedFile(str(path), "has no columns")
    names = [normalise_name(c) for c in cols]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RefusedFile(str(path), f"has duplicate columns {dup}")
    select = ", ".join(
        f'NULLIF(trim(CAST("{c}" AS VARCHAR)), \'\') AS "{n}"' for c, n in zip(cols, names, strict=False)
    )
    try:
        # One pass reads, trims and stores; preserve_insertion_order (DuckDB's default) keeps
        # file order, so the stored table's rowid is the row's position in the file.
        con.execute(f'DROP VIEW IF EXISTS "{table}"')
        con.execute(f'DROP TABLE IF EXISTS "{table}_raw"')
        con.execute(f'CREATE TEMP TABLE "{table}_raw" AS SELECT {select} FROM ({rel_sql})')
        con.execute(
            f'CREATE TEMP VIEW "{table}" AS SELECT rowid + {offset} AS _row, * FROM "{table}_raw"'
        )
    except duckdb.Error as e:
        raise RefusedFile(str(path), f"cannot be read ({str(e).splitlines()[0]})") from None
    finally:
        if fmt == "xlsx":
            con.unregister("_xlsx_src")
    return names


def drop_source(con: duckdb.DuckDBPyConnection, table: str = "src") -> None:
    con.execute(f'DROP VIEW IF EXISTS "{table}"')
    con.execute(f'DROP TABLE IF EXISTS "{table}_raw"')


def detect_kind(path: Path, columns: list[str], item_ids: set[str]) -> str | None:
    """The contract kind: the file name's first word, else the best match of required columns."""
    first = re.split(r"[^a-z]+", path.stem.lower())[0] if path.stem else ""
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
