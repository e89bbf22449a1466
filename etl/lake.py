"""Loading into a lake: the canonical tables as Parquet files under a commit log (issue 16).

At agency scale the canonical tables do not fit one DuckDB file copied at every load. A lake
keeps them as Parquet files in a folder, and `python -m etl load … --lake LAKE` adds to it what
a load brings:

    LAKE/_log/00000007.json     one per load: every live file of every table (a snapshot)
    LAKE/events/event_date=2026-03-29/program=KA2/v7_<uuid>.parquet
    LAKE/responses/exchange_bucket=0412/v7_<uuid>.parquet
    LAKE/participants/v7_<uuid>.parquet          (and the other small tables, one file each)
    LAKE/pseudonym.key                           (unless the key comes from the environment)

**The same load, not a second one.** Every file goes through `etl.load.load_paths`: the same
readers, rules, rejects, pseudonyms, idempotence (a content already loaded is "unchanged") and
replacement of a row by a new row with its natural key. It loads into a private staging file
that holds the small tables of the lake (clusters to participants, rates, load batches) and,
of the two large ones, only the partitions the load's rows fall in: the UTC days of its events
(all programs of a day) and the buckets of its answers' exchanges. A row's natural key fixes its
partition (an event's instant fixes its day; an answer's exchange its bucket), so whatever a
new row replaces is in the staging file. Those partitions are then written anew; every other
file of the lake stays as it is. A load costs what it adds plus the partitions it touches.

**Atomic.** New files are written under names no other load uses; nothing reads a file until
a log entry lists it. The load ends by creating the next log entry (exclusively: of two loads
only one can create version n + 1; the lock file makes the other wait its turn). A load killed
at any point leaves the lake at the previous version; its half-written files are listed by no
entry and the next load removes them. Files that a new version no longer lists are kept for
`KEEP_VERSIONS` versions, so a derive reading an older version can finish.

**Readers** take the newest entry's file lists (`snapshot`); `python -m analytics derive
--lake` does (`analytics.derive.lake`).

Not available on a lake (yet): `--replace` for events and answers (it would remove rows of a
source's earlier loads from every partition; refused with a message) and the embedded derive
(result tables). `python -m analytics serve --lake` reads a derived lake into the serving
warehouse (`analytics.derive.serve`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from etl import phases, schema
from etl.errors import EtlError
from etl.pseudonym import FINGERPRINT_KEY
from etl.warehouse import create_schema, writer_lock

if TYPE_CHECKING:
    from etl.load import _FileLoader

__all__ = ["LOG", "KEEP_VERSIONS", "BUCKETS", "WHOLE", "APPENDED", "Snapshot", "snapshot",
           "load_into_lake", "partition_of", "copy_tables"]

LOG = "_log"
KEEP_VERSIONS = 3
BUCKETS = 1024
EV, RESP = schema.EVENTS.name, schema.RESPONSES.name
# The tables a lake keeps whole (one file each, written anew when a load changes them).
WHOLE = tuple(t for t in schema.LOAD_ORDER if t not in (EV, RESP)) + (
    schema.LOAD_BATCHES.name,)
# Appended: each load adds a file of its own batches' rows.
APPENDED = (schema.REJECTS.name,)
BUCKET_SQL = f"lpad(CAST(md5_number(exchange_id) % {BUCKETS} AS VARCHAR), 4, '0')"


@dataclass
class Snapshot:
    """One version of a lake: its number, every live file of each table (paths relative to the
    lake), and the pseudonymisation key's fingerprint."""
    version: int = 0
    files: dict[str, list[str]] = field(default_factory=dict)
    fingerprint: str | None = None

    def paths(self, lake: Path, table: str) -> list[Path]:
        return [lake / f for f in self.files.get(table, [])]


def _entry(lake: Path, version: int) -> Path:
    return lake / LOG / f"{version:08d}.json"


def snapshot(lake: Path | str, version: int | None = None) -> Snapshot:
    """The newest version of `lake` (or `version`); version 0 with no files for a new lake."""
    lake = Path(lake)
    entries = sorted((lake / LOG).glob("[0-9]" * 8 + ".json"))
    if version is not None:
        entries = [e for e in entries if int(e.stem) == version]
    if not entries:
        return Snapshot()
    data = json.loads(entries[-1].read_text(encoding="utf-8"))
    return Snapshot(int(entries[-1].stem), data["files"], data.get("fingerprint"))


def _commit(lake: Path, snap: Snapshot) -> None:
    """Create the log entry of `snap.version`: exclusively, fsynced, so that a version exists
    whole or not at all and two writers can never both create it."""
    tmp = lake / LOG / f".{snap.version:08d}.{uuid.uuid4().hex}"
    tmp.write_text(json.dumps({"files": snap.files, "fingerprint": snap.fingerprint},
                              indent=0), encoding="utf-8")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, _entry(lake, snap.version))  # fails if the version exists
    except FileExistsError:
        raise EtlError(f"{lake}: version {snap.version} was written by another load meanwhile; "
                       "load again") from None
    finally:
        tmp.unlink()
    dfd = os.open(lake / LOG, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


_DAY = re.compile(r"event_date=(\d{4}-\d{2}-\d{2})/")
_BUCKET = re.compile(r"exchange_bucket=(\d{4})/")


def partition_of(table: str, rel: str) -> str | None:
    """The partition a lake file of `table` is in (an event's UTC day, an answer's exchange
    bucket), read from its path; None for a file outside the partitioned layout."""
    m = (_DAY if table == EV else _BUCKET).search(rel)
    return m.group(1) if m else None


def _remove_unlisted(lake: Path, current: Snapshot) -> None:
    """Delete what no recent version lists: files of killed loads, and files that the last
    `KEEP_VERSIONS` versions no longer use. Work folders of killed loads go too."""
    keep: set[str] = set()
    for v in range(max(1, current.version - KEEP_VERSIONS + 1), current.version + 1):
        for files in snapshot(lake, v).files.values():
            keep.update(files)
    for folder in lake.glob(".load-*"):
        shutil.rmtree(folder, ignore_errors=True)
    for t in (*WHOLE, *APPENDED, EV, RESP):
        for p in (lake / t).rglob("*.parquet"):
            if str(p.relative_to(lake)) not in keep:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def _read(files: Iterable[Path]) -> str:
    names = ", ".join(f"'{p}'" for p in files)
    return f"read_parquet([{names}], union_by_name = true, hive_partitioning = false)"


class _Partitions:
    """What a staging file holds of the lake's events and answers, brought in as the load's
    files need them (`etl.load.load_paths`' `before_write`)."""

    def __init__(self, lake: Path, snap: Snapshot) -> None:
        self.lake, self.snap = lake, snap
        self.held: dict[str, set[str]] = {EV: set(), RESP: set()}

    def __call__(self, con: duckdb.DuckDBPyConnection, loader: _FileLoader
                 ) -> Callable[[], None] | None:
        table = loader.table.name
        if table not in self.held:
            return None
        if loader.replace:
            raise EtlError(f"{loader.path}: --replace is not available for {table} loaded into "
                           "a lake (it would take rows of the source's earlier loads out of "
                           "every partition); load without --replace, or into a warehouse")
        ok = f"{loader.staged} WHERE NOT _bad"
        want = {r[0] for r in con.execute(
            f"SELECT DISTINCT strftime(CAST(t_occurred_at AS DATE), '%Y-%m-%d') FROM {ok}"
            if table == EV else
            f"SELECT DISTINCT {BUCKET_SQL.replace('exchange_id', 't_exchange_id')} FROM {ok}"
        ).fetchall() if r[0] is not None}
        new = want - self.held[table]
        files = [self.lake / f for f in self.snap.files.get(table, [])
                 if partition_of(table, f) in new]
        if files:
            cols = ", ".join(f'"{c}"' for c in schema.TABLES[table].column_names)
            con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM {_read(files)}')
        self.held[table] |= new
        return lambda: self.held[table].difference_update(new)


def copy_tables(con: duckdb.DuckDBPyConnection, lake: Path, snap: Snapshot,
                tables: Iterable[str]) -> None:
    """Insert the rows of `tables` at version `snap` of `lake` into the same tables behind
    `con` (made by `create_schema`); a partitioned table's partition columns are left out."""
    for t in tables:
        files = snap.paths(lake, t)
        if files:
            cols = ", ".join(f'"{c}"' for c in schema.TABLES[t].column_names)
            con.execute(f'INSERT INTO "{t}" ({cols}) SELECT {cols} FROM {_read(files)}')


def _seed(con: duckdb.DuckDBPyConnection, lake: Path, snap: Snapshot) -> None:
    con.execute("SET TimeZone = 'UTC'")
    create_schema(con)
    copy_tables(con, lake, snap, WHOLE)
    con.execute("UPDATE meta SET value = ? WHERE key = 'data_version'", [str(snap.version)])
    if snap.fingerprint:
        con.execute("INSERT INTO meta VALUES (?, ?)", [FINGERPRINT_KEY, snap.fingerprint])


def _write_out(con: duckdb.DuckDBPyConnection, lake: Path, work: Path, snap: Snapshot,
               held: dict[str, set[str]], changed: set[str], batches: list[int]) -> Snapshot:
    """The next version: the staging file's changed tables and touched partitions written as
    new files, every other file of `snap` kept."""
    version = snap.version + 1
    files = {t: list(v) for t, v in snap.files.items()}
    tag = f"v{version}_{uuid.uuid4().hex[:12]}"
    out = work / "out"
    for t in WHOLE:
        if t in changed or t == schema.LOAD_BATCHES.name or t not in files:
            rel = f"{t}/{tag}.parquet"
            (out / t).mkdir(parents=True, exist_ok=True)
            con.execute(f'COPY (SELECT * FROM "{t}") TO \'{out / rel}\' (FORMAT parquet)')
            files[t] = [rel]
    if batches:
        rel = f"{schema.REJECTS.name}/{tag}.parquet"
        (out / schema.REJECTS.name).mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * FROM rejects WHERE batch_id IN "
                    f"({', '.join(map(str, batches))})) TO '{out / rel}' (FORMAT parquet)")
        files.setdefault(schema.REJECTS.name, []).append(rel)
    for t, select, parts in (
        (EV, "SELECT e.*, CAST(e.occurred_at AS DATE) AS event_date, "
             "coalesce(x.program, '') AS program FROM events e "
             "LEFT JOIN exchanges x USING (exchange_id)", "event_date, program"),
        (RESP, f"SELECT *, {BUCKET_SQL} AS exchange_bucket FROM responses", "exchange_bucket"),
    ):
        if not held[t]:
            continue
        con.execute(f"COPY ({select}) TO '{out / t}' (FORMAT parquet, PARTITION_BY ({parts}), "
                    f"FILENAME_PATTERN '{tag}_{{i}}', WRITE_PARTITION_COLUMNS true)")
        written = sorted(str(p.relative_to(out)) for p in (out / t).rglob("*.parquet")) \
            if (out / t).exists() else []
        files[t] = [f for f in files.get(t, []) if partition_of(t, f) not in held[t]] + written
    for p in sorted(out.rglob("*.parquet")):
        final = lake / p.relative_to(out)
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        p.chmod(0o600)  # participants' rows: owner-only, as the warehouse file, whatever the umask
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(p, final)  # a new name: no file of the lake is overwritten
    return Snapshot(version, files, snap.fingerprint)


def load_into_lake(paths: list[Path | str], lake: Path | str, *, lock_timeout: float = 600.0,
                   on_wait: Callable[[], None] | None = None, dry_run: bool = False,
                   **options) -> list:
    """Load files into `lake` (created if new); return `etl.load.load_paths`' reports.

    `options` are load_paths' (kind, source, replace, force, progress, fmt, mapping, wave,
    exchange). The pseudonymisation key is the lake's (`LAKE/pseudonym.key`, or the environment).
    """
    from etl.load import load_paths
    from etl.pseudonym import key_fingerprint, resolve_key

    lake = Path(lake)
    if lake.exists() and not lake.is_dir():
        raise EtlError(f"{lake}: not a folder; a lake is a folder of Parquet files")
    (lake / LOG).mkdir(mode=0o700, parents=True, exist_ok=True)
    lake.chmod(0o700)  # the lake holds participants' rows: only its owner may enter it
    lock = writer_lock(lake / "_lock", f"{lake}: another load has held the lake",
                       lock_timeout=lock_timeout, on_wait=on_wait)
    try:
        snap = snapshot(lake)
        _remove_unlisted(lake, snap)
        key_path = lake / "warehouse"  # its key file: LAKE/pseudonym.key
        key = resolve_key(key_path)
        if snap.fingerprint and snap.fingerprint != key_fingerprint(key):
            raise EtlError(f"{lake}: the lake was built with another pseudonymisation key; loads "
                           "under this key would not link to earlier participants; use the "
                           "original key or start a new lake")
        work = lake / f".load-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        work.mkdir(mode=0o700)
        try:
            staging = work / "staging.duckdb"
            con = duckdb.connect(str(staging))
            try:
                _seed(con, lake, snap)
            finally:
                con.close()
            parts = _Partitions(lake, snap)
            reports = load_paths(paths, staging, derive=False, before_write=parts,
                                 key_for=key_path, dry_run=dry_run, lock_timeout=lock_timeout,
                                 **options)
            con = duckdb.connect(str(staging), read_only=True)
            try:
                con.execute("SET TimeZone = 'UTC'")
                if dry_run or int(con.execute("SELECT value FROM meta WHERE key = "
                                              "'data_version'").fetchall()[0][0]) == snap.version:
                    return reports
                batches = [r.batch_id for r in reports if r.batch_id is not None]
                changed = {r.kind for r in reports if r.status == "loaded" and r.kind}
                nxt = _write_out(con, lake, work, snap, parts.held, changed, batches)
            finally:
                con.close()
            nxt.fingerprint = key_fingerprint(key)
            phases.reached("lake_files")
            _commit(lake, nxt)
            phases.reached("lake_commit")
            for r in reports:
                r.notes.append(f"in lake {lake}, version {nxt.version}")
            return reports
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        lock.release()
