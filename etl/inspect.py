"""`python -m etl inspect`: what a file is and what loading it would do, warehouse untouched.

Per file: the detected format (a source export or a contract file), encoding, separator, header
rows, row count, date range; how its columns map onto the contract (participant id, wave,
exchange, items; the metadata dropped); and what a load would reject and why. The rejects come
from the loader itself (`load_paths(dry_run=True)`) run on a private temporary copy of the
warehouse, so the answer is the load's answer and the live file, its lock and its folder are
never touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import duckdb

from etl import readers, sources
from etl.errors import EtlError, RefusedFile
from etl.pseudonym import KEY_ENV, key_file, resolve_key

__all__ = ["Inspection", "inspect_paths", "mapping_new"]

DATE_COLUMN = {"responses": "submitted_at", "events": "occurred_at"}


@dataclass
class Inspection:
    file: str
    lines: list[str] = field(default_factory=list)
    refused: str = ""

    def text(self) -> str:
        if self.refused:
            return f"{self.file}: refused: {self.refused}"
        return "\n".join([self.file, *(f"  {ln}" for ln in self.lines)])


def _layout_lines(path: Path, mod: ModuleType | None) -> list[str]:
    if mod is not None:
        d = sources.describe(mod, path)
        out = [f"format: {mod.FORMAT}{' (' + d['version'] + ')' if d.get('version') else ''}, "
               f"holds {mod.KIND}"]
        if d:
            out.append(f"encoding: {d.get('encoding', '?')}"
                       f"{' with byte order mark' if d.get('bom') else ''}"
                       f"{'; ' + d['encoding_note'] if d.get('encoding_note') else ''}")
            sep = {"\t": "tab", ",": "comma", ";": "semicolon"}.get(d.get("separator", ""), "?")
            out.append(f"separator: {sep}; header rows: {d.get('header_rows', 1)}")
        else:
            codec, note = readers._encoding(path)
            out.append(f"encoding: {codec}{'; ' + note if note else ''}")
        return out
    out = ["format: contract file (CSV, XLSX or Parquet in the input contract's shape)"]
    if readers.SUFFIXES.get(path.suffix.lower()) == "csv":
        codec, note = readers._encoding(path)
        with readers._as_utf8(path, codec) as text:
            _, delim = readers._header(text)
        sep = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "bar"}[delim]
        out.append(f"encoding: {codec}{'; ' + note if note else ''}")
        out.append(f"separator: {sep}; header rows: 1")
    return out


def _content_lines(path: Path, mod: ModuleType | None, kind: str | None, mapping: dict,
                   fill: dict[str, str]) -> list[str]:
    """Rows, date range and the column mapping, read into a private in-memory database."""
    con = duckdb.connect()
    notes: list[str] = []
    try:
        con.execute("SET TimeZone = 'UTC'")
        if mod is not None:
            cols = sources.stage(con, mod, path, mapping, fill, notes)
            kind = mod.KIND
        else:
            cols = readers.read_into(con, path, "src", notes=notes)
            if kind is None:
                import surveys

                kind = readers.detect_kind(path, cols, set(surveys.item_index(
                    surveys.load_instruments())))
        n = con.execute("SELECT count(*) FROM src").fetchall()[0][0]
        out = [f"kind: {kind or 'unknown (name the file after its kind or pass --kind)'}",
               f"rows: {n:,}"]
        date = DATE_COLUMN.get(kind or "")
        if date and date in cols:
            lo, hi, bad = con.execute(
                f'SELECT min(TRY_CAST("{date}" AS TIMESTAMPTZ)), '
                f'max(TRY_CAST("{date}" AS TIMESTAMPTZ)), '
                f'count(*) FILTER ("{date}" IS NOT NULL AND '
                f'TRY_CAST("{date}" AS TIMESTAMPTZ) IS NULL) FROM src').fetchall()[0]
            out.append(f"date range ({date}): {_ts(lo)} to {_ts(hi)}"
                       + (f"; {bad:,} not readable as dates" if bad else ""))
        if kind in ("responses", "events", "participants"):
            out.append("participant id: column participant_id, pseudonymised (HMAC) on load"
                       if "participant_id" in cols else "participant id: none found")
        for col in ("wave", "exchange_id"):
            if kind in ("responses", "events") and (col != "wave" or kind == "responses"):
                out.append(f"{col}: {_where(con, mod, col, cols, fill)}")
        if kind == "responses":
            import surveys

            items = [c for c in cols if c in surveys.item_index(surveys.load_instruments())]
            out.append(f"items: {', '.join(items) if items else 'none (no column is an item)'}")
        out += [f"note: {x}" for x in notes]
        return out
    finally:
        con.close()


def _where(con: duckdb.DuckDBPyConnection, mod: ModuleType | None, col: str, cols: list[str],
           fill: dict[str, str]) -> str:
    """Where a load takes the file's wave or exchange from, as the loader does."""
    flag = f"--{col.split('_')[0]}"
    if mod is None:  # a contract file: its own column, and the flags are refused with it
        return "from the file" if col in cols else f"MISSING: the column {col}"
    given = fill.get(col)
    n, have = (con.execute(f'SELECT count(*), count(*) FILTER ("{col}" IS NOT NULL AND '
                           f'"{col}" IS DISTINCT FROM {_lit(given)}) FROM src').fetchall()[0]
               if col in cols else (0, 0))
    if given:
        return (f"'{given}' ({flag} or mapping)" if not have else
                f"from the file, '{given}' ({flag} or mapping) where a row has none")
    if have == 0:
        return f"MISSING: {sources.missing(mod, col)} (without it a load refuses the file)"
    src = sources.where_from(mod, col)
    return (f"from the file ({src})" + (f"; {n - have:,} row(s) without one would be rejected"
                                       if have < n else ""))


def _lit(v: str | None) -> str:
    return "NULL" if v is None else "'" + v.replace("'", "''") + "'"


def _ts(v: object) -> str:
    return "-" if v is None else str(v)[:19]


@contextlib.contextmanager
def _scratch_copy(warehouse: Path) -> Iterator[tuple[Path, str]]:
    """A private copy of the warehouse (or none, if there is none yet) and its key."""
    with tempfile.TemporaryDirectory(prefix="exchange-impact-inspect-") as d:
        copy = Path(d) / "warehouse.duckdb"
        note = ""
        if warehouse.exists():
            shutil.copyfile(warehouse, copy)
        else:
            note = (f"no warehouse at {warehouse}: every participant and exchange is unknown, so "
                    "each row would be rejected as a reference; load the roster first")
        if not os.environ.get(KEY_ENV):
            try:
                key = resolve_key(warehouse)
            except EtlError:
                key = secrets.token_hex(32).encode()  # only message texts depend on it
            kf = key_file(copy)
            kf.write_bytes(key)
            kf.chmod(0o600)
        yield copy, note


def inspect_paths(paths: list[Path], warehouse: Path, *, fmt: str | None = None,
                  kind: str | None = None, mapping: dict | None = None, wave: str | None = None,
                  exchange: str | None = None) -> list[Inspection]:
    """One `Inspection` per file; the live warehouse is only read (copied), never written."""
    from etl.load import _reader_of, load_paths

    mapping = mapping or {}
    if fmt in (None, "auto") and mapping.get("format"):
        fmt = str(mapping["format"])
    fill = sources.fill_values(mapping, wave, exchange)
    out: list[Inspection] = []
    readable: list[Path] = []
    for path in readers.expand_paths(paths):
        ins = Inspection(str(path))
        try:
            mod = _reader_of(path, fmt, kind)
            ins.lines += _layout_lines(path, mod)
            ins.lines += _content_lines(path, mod, kind, mapping, fill)
            readable.append(path)
        except RefusedFile as e:
            ins.refused = e.problem
        except (OSError, duckdb.Error, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            ins.refused = f"cannot be read ({first})"
        out.append(ins)
    if readable:
        with _scratch_copy(Path(warehouse)) as (copy, note):
            reports = load_paths(readable, copy, kind=kind, dry_run=True, lock_timeout=0,
                                 fmt=fmt, mapping=mapping, wave=wave, exchange=exchange)
        by_file = {r.file: r for r in reports}
        for ins in out:
            r = by_file.get(ins.file)
            if r is None:
                continue
            if r.status == "refused":
                ins.lines.append(f"a load would refuse it: {r.problem}")
                continue
            if note:
                ins.lines.append(f"note: {note}")
            if r.status == "unchanged":
                ins.lines.append(f"a load would change nothing ({'; '.join(r.notes)})")
                continue
            by_rule = ", ".join(f"{k} {v:,}" for k, v in r.rejects_by_rule.most_common())
            ins.lines.append(
                f"a load would bring {r.rows_accepted:,} of {r.rows_in:,} rows, reject "
                f"{r.rows_rejected:,}{' (by rule: ' + by_rule + ')' if by_rule else ''}; "
                f"{r.changes()}")
            ins.lines += [f"would reject: {x.replace(str(copy), str(warehouse))}"
                          for x in r.first_rejects]
    return out


def mapping_new(path: Path, out: Path | None = None, *, fmt: str | None = None,
                force: bool = False) -> Path:
    """Write a starting mapping YAML from the file's headers; return where it was written."""
    from etl.load import _reader_of

    path = Path(path)
    if not path.is_file():
        raise RefusedFile(str(path), "no such file")
    mod = _reader_of(path, fmt, None)
    if mod is None:
        raise RefusedFile(str(path), "is not an export any reader recognises (it may already be "
                                     "in the contract's shape, which needs no mapping); name its "
                                     f"format with --format ({', '.join(sources.MODULES)})")
    out = Path(out) if out else path.with_name(path.stem + ".mapping.yaml")
    if out.exists() and not force:
        raise EtlError(f"{out}: exists; edit it, or pass --force to write a new one over it")
    template = getattr(mod, "mapping_template", None)
    if template is not None:
        text = template(path)
    else:
        text = (f"# Mapping for {path.name} ({mod.FORMAT}); edit, then\n"
                f"#   python -m etl load {path.name} --mapping THIS_FILE\n"
                f"format: {mod.FORMAT}\nexchange: ''   # the exchange's id; or --exchange\n"
                "# timezone: Europe/Berlin   # the zone of the file's local times\n"
                "# participant: email        # which column identifies a person\n")
        if mod.KIND == "responses":
            text += "wave: pre   # or --wave\n"
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise EtlError(f"{out}: cannot be written ({e.strerror or e})") from None
    return out
