"""The Data page's download files: built once per data version, off the request, served as files.

A table in one format (`prepost_v7.xlsx`, the very file `python -m analytics export` writes) or
every table of one format with `datapackage.json` and `CODEBOOK.md` (`exchange_impact_v7_csv.zip`)
is an *artefact*. Its file lives in a cache folder beside the warehouse, one sub-folder per
warehouse build and suppression threshold:

    data/warehouse.duckdb.downloads/<build_id>-k<min_cell>/scale_scores_v7.xlsx

An account limited to some programs or clusters, and a funder (counts rounded), get their own
folder, `<build_id>-<scope key>-r<base>-k<min_cell>` (`audience_tag`): the same export code run
on the scope's participants only (`export.scoped`), rounded for funders. The dashboard's guard
serves a folder only to the accounts whose tag it ends with (`pages._access`).

The build id (meta table) changes with every file the loader swaps in, so a cached file is never
stale; a later build removes earlier builds' folders unchanged for `KEEP_OLD_SECONDS`.
Folders are owner-only (0700), files too (0600): they hold the same numbers as the warehouse.

Why not in the request: an XLSX of the row-level scores of 10,000 people takes 15-30 s to write
(xlsxwriter, 1.7 M cells), longer than gunicorn's 30 s timeout on a busy machine, and two such
clicks held both workers. `request` answers at once: the path when the file is there, else it
starts the build in a separate process (`python -m analytics downloads …`, so the worker's
memory and GIL stay free) and says "building"; the page asks again every second.

Several gunicorn workers: "building" means "the artefact's lock file is locked" (flock). The
process that starts a build takes the lock *before* it spawns the builder and hands it over as
an inherited file descriptor, so two workers asked at once never start two builds, and a poll
arriving while the builder is still importing sees the lock held. The builder writes to a
temporary name and `os.replace`s it into place, so a reader sees the whole file or none. The
lock goes when the builder exits, however it exits; a builder that failed leaves
`<name>.error` with the reason, shown beside the button until the next click retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from analytics import suppression
from analytics.derive import materialise
from analytics.outputs import export
from etl import schema
from etl.warehouse import connect_read_only, data_version

__all__ = [
    "Artefact",
    "Status",
    "KEEP_OLD_SECONDS",
    "cache_root",
    "build_key",
    "audience_tag",
    "folder",
    "request",
    "build",
    "cached_file",
]

KEEP_OLD_SECONDS = 3600.0  # an earlier build's folder goes once unchanged for an hour
_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Artefact:
    """One download: `table` in `fmt`, or every table (`table` None) zipped with the codebook."""

    table: str | None
    fmt: str

    def check(self) -> None:
        """ExportError for an unknown table or format (the page only offers known ones)."""
        if self.fmt not in export.FORMATS:
            raise export.ExportError(f"unknown format {self.fmt!r}; choose one of "
                                     f"{', '.join(export.FORMATS)}")
        if self.table is not None and self.table not in export.TABLES:
            raise export.ExportError(f"unknown table {self.table!r}; choose one of "
                                     f"{', '.join(export.TABLES)}")

    def filename(self, version: int) -> str:
        """The file's name, as `python -m analytics export` names it (bundle: the zip's)."""
        if self.table is None:
            return f"exchange_impact_v{version}_{self.fmt}.zip"
        return f"{self.table}_v{version}.{self.fmt}"


_FORMATS = "|".join(export.FORMATS)
_NAME = re.compile(rf"(?:(?:{'|'.join(export.TABLES)})_v\d+\.(?:{_FORMATS})"
                   rf"|exchange_impact_v\d+_(?:{_FORMATS})\.zip)")
_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}-k\d{1,4}")


def cached_file(warehouse: Path, key: str, name: str) -> Path | None:
    """The built file `name` in the cache folder `key` (as in `folder`), or None: the names are
    checked against what this module writes (so a URL can name nothing else, no lock file, no
    path outside the cache) before the file system is asked."""
    if not _KEY.fullmatch(key) or not _NAME.fullmatch(name):
        return None
    path = cache_root(warehouse) / key / name
    return path if path.is_file() else None


@dataclass(frozen=True)
class Status:
    """Where an artefact stands: `path` when the file is ready, `error` when its build failed,
    neither while it is being built."""

    filename: str
    path: Path | None = None
    error: str | None = None

    @property
    def building(self) -> bool:
        return self.path is None and self.error is None


def cache_root(warehouse: Path) -> Path:
    """The cache folder beside the warehouse (`warehouse.duckdb.downloads/`)."""
    return warehouse.with_name(warehouse.name + ".downloads")


def build_key(con: duckdb.DuckDBPyConnection) -> tuple[str, int]:
    """(build id, data version) of the warehouse behind `con`. A warehouse written before build
    ids existed is keyed by its version and build time."""
    meta = dict(con.execute(
        f"SELECT key, value FROM {schema.META.name} "
        "WHERE key IN ('build_id', 'built_at')").fetchall())
    version = data_version(con)
    key = meta.get("build_id") or f"v{version}-{meta.get('built_at', '')}"
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key), version


def audience_tag(scope: export.Scope | None = None, round_to: int | None = None) -> str:
    """What a cache folder's name says of whom its files are for, before `-k<min_cell>`: '' for
    every program unrounded, else `-<scope key>` and/or `-r<base>`."""
    tag = f"-{scope.key()}" if scope is not None and not scope.whole else ""
    return tag + (f"-r{int(round_to)}" if round_to else "")


def folder(warehouse: Path, build_id: str, min_cell: int, scope: export.Scope | None = None,
           round_to: int | None = None) -> Path:
    return cache_root(warehouse) / f"{build_id}{audience_tag(scope, round_to)}-k{int(min_cell)}"


def _private_dir(path: Path) -> None:
    """`path` and its parent (the cache root) as owner-only folders."""
    for p in (path.parent, path):
        p.mkdir(mode=0o700, exist_ok=True)
        os.chmod(p, 0o700)  # an existing folder may be wider; mkdir's mode is masked by umask


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _error_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.error")


def _try_lock(target: Path) -> int | None:
    """An fd holding the artefact's lock (flock, released when every copy of the fd is closed,
    i.e. when its holder exits), or None when another process holds it."""
    fd = os.open(_lock_path(target), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _status(target: Path) -> Status:
    if target.exists():
        return Status(target.name, path=target)
    err = _error_path(target)
    if err.exists():
        with contextlib.suppress(FileNotFoundError):
            return Status(target.name, error=err.read_text(encoding="utf-8").strip())
    return Status(target.name)


def request(con: duckdb.DuckDBPyConnection, warehouse: Path, artefact: Artefact, *,
            min_cell: int = suppression.MIN_CELL, retry: bool = False,
            scope: export.Scope | None = None, round_to: int | None = None) -> Status:
    """The artefact of the data version `con` reads: ready, failed, or now being built.

    Never builds in the calling process and never waits for a build: it returns in
    milliseconds. `retry=True` (a new click) forgets an earlier failure and tries again.
    `scope`, `round_to`: the file of those programs/clusters, counts rounded (as `build`).
    """
    artefact.check()
    build_id, version = build_key(con)
    where = folder(warehouse, build_id, min_cell, scope, round_to)
    _private_dir(where)
    target = where / artefact.filename(version)
    if retry:
        with contextlib.suppress(FileNotFoundError):
            _error_path(target).unlink()
    status = _status(target)
    if not status.building:
        return status
    fd = _try_lock(target)
    if fd is None:  # another process is building it
        return status
    try:
        status = _status(target)  # finished between the first look and the lock
        if status.building:
            _spawn(warehouse, artefact, build_id, min_cell, fd, scope, round_to)
    finally:
        os.close(fd)  # the builder keeps its inherited copy, and with it the lock
    return status


_BUILDERS: list[subprocess.Popen] = []  # builders this process started, until reaped


def _spawn(warehouse: Path, artefact: Artefact, build_id: str, min_cell: int, fd: int,
           scope: export.Scope | None = None, round_to: int | None = None) -> None:
    cmd = [sys.executable, "-m", "analytics", "downloads",
           *(["--all"] if artefact.table is None else [artefact.table]),
           "--format", artefact.fmt, "--warehouse", str(warehouse),
           "--min-cell", str(min_cell), "--build-id", build_id, "--lock-fd", str(fd)]
    if scope is not None:
        # --program=ID: an id that starts with '-' stays a value
        cmd += [*(f"--program={p}" for p in scope.programs),
                *(f"--cluster={c}" for c in scope.clusters)]
    if round_to:
        cmd.append(f"--round-to={int(round_to)}")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH"))
                                         if p)}
    # stdout is the CLI's one-line summary, not worth the server log; stderr (a failure's
    # message, or a crash's traceback) goes to the server's log.
    proc = subprocess.Popen(cmd, cwd=_ROOT, env=env, pass_fds=(fd,),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    # Reap the builders that have ended, so a long-lived worker collects no zombies. Polled here
    # rather than waited on in a thread: nothing of ours runs in the background of a worker (and
    # dash.testing stops a test server by raising SystemExit in every thread it did not start).
    _BUILDERS[:] = [p for p in _BUILDERS if p.poll() is None]
    _BUILDERS.append(proc)


def build(warehouse: Path, artefact: Artefact, *,
          min_cell: int = suppression.MIN_CELL, build_id: str | None = None,
          lock_fd: int | None = None, scope: export.Scope | None = None,
          round_to: int | None = None) -> Status:
    """Build the artefact of the warehouse's current version into the cache (what the builder
    process runs; also `python -m analytics downloads` to have files ready after a load).

    `build_id`: the build the request was for; when the warehouse has moved on, nothing is
    built (the page's next poll asks for the new version). `lock_fd`: the artefact's lock,
    already held and inherited from `request`; without it the lock is taken here, waiting for
    another builder of the same file, which then usually has built it. `scope`: computed from
    those programs and clusters only; `round_to`: counts rounded to that base (funders); each
    combination has its own folder (`audience_tag`).
    """
    artefact.check()
    con = connect_read_only(warehouse)
    try:
        key, version = build_key(con)
        if build_id is not None and key != build_id:
            return Status(artefact.filename(version),
                          error=f"the warehouse moved on to data version {version}; ask again")
        where = folder(warehouse, key, min_cell, scope, round_to)
        _private_dir(where)
        target = where / artefact.filename(version)
        if lock_fd is None:
            lock_fd = os.open(_lock_path(target), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            status = _status(target)
            if status.path is not None:
                return status
            try:
                how = {"min_cell": min_cell, "unsuppressed": min_cell < suppression.MIN_CELL,
                       "scope": scope, "round_to": round_to}
                if artefact.table is None:
                    _name, data = export.export_bundle(con, artefact.fmt, **how)
                else:
                    data = export.build_export(con, artefact.table, artefact.fmt, **how).data
            except (export.ExportError, materialise.ResultsError) as e:
                _write_atomic(_error_path(target), str(e).encode("utf-8"))
                raise
            except Exception as e:
                # Unexpected: the page shows a short reason; the traceback goes to the log.
                _write_atomic(_error_path(target),
                              f"the file could not be built ({type(e).__name__}); "
                              "see the server log".encode())
                raise
            _write_atomic(target, data)
            with contextlib.suppress(FileNotFoundError):
                _error_path(target).unlink()
        finally:
            os.close(lock_fd)
    finally:
        con.close()
    _remove_old(warehouse, key)
    return Status(target.name, path=target)


def _write_atomic(target: Path, data: bytes) -> None:
    """Write to a private temporary file beside `target` and rename it into place: readers see
    the old state or the whole new file, never part of it."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _remove_old(warehouse: Path, build_id: str) -> None:
    """Remove other builds' folders unchanged for `KEEP_OLD_SECONDS` (not at once: a worker
    may still read the previous build for a moment after a load, and serve its files). The
    folders of this build (its other thresholds and audiences) stay, however old."""
    now = time.time()
    for p in cache_root(warehouse).iterdir():
        if p.name.startswith(f"{build_id}-") or not p.is_dir():
            continue
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > KEEP_OLD_SECONDS:
                shutil.rmtree(p)
