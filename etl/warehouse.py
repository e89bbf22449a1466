"""The warehouse file's life cycle: one writer builds the next file and swaps it in; readers
reopen when it changes.

Writer (`build_next`): take the lock file, copy the live file into a private `.next` folder in
the same folder (owner-only, 0700; the copy, its WAL and the final file are 0600), let the caller
change it, bump `data_version`, CHECKPOINT, close, fsync and `os.replace` it over the live path.
A writer killed at any point leaves the live file as it was; the half-built `.next` folder is
removed by the next writer. A second writer waits for the lock (up to `lock_timeout` seconds) and
then starts from the first one's result, so no load is lost.

Readers (`Reader`): open `read_only=True` lazily, in the process that uses it (after a gunicorn
fork), and reopen when the live path points at a new file (inode, size or mtime changed; checked
on every `cursor()`, a `stat` call). Within one process DuckDB hands back the already-open
database for a path (symlinks and /proc/self/fd resolved) until every connection to it is
closed, and a request thread may still hold a cursor on it; so each open goes through a path of
its own: a hard link to the live file, made beside it and removed once DuckDB holds the file
open. The old connection is not closed under a request in flight: it goes when its last cursor
does. Each reading process spills into its own temporary folder (`reader_temp_root`), so server
workers never overwrite each other's spill files.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
from filelock import FileLock, Timeout

from etl import phases, process, schema
from etl.errors import WarehouseBusy, WarehouseError

__all__ = [
    "DEFAULT_WAREHOUSE",
    "build_next",
    "writer_lock",
    "connect_read_only",
    "create_schema",
    "damaged",
    "data_version",
    "Reader",
    "lock_path",
    "out_of_memory",
    "reader_temp_root",
]

DEFAULT_WAREHOUSE = Path(os.environ.get("EXCHANGE_IMPACT_WAREHOUSE", "data/warehouse.duckdb"))

# A load's own DuckDB settings: bounded memory (spills to a private temp folder), all cores.
LOAD_MEMORY_LIMIT = os.environ.get("EXCHANGE_IMPACT_LOAD_MEMORY", "1200MB")


def out_of_memory(error: BaseException, *, command: str = "load") -> str | None:
    """What to do when `error` (or an error it arose from) is DuckDB running out of the memory a
    load (or `command`, e.g. "refresh": every writer of `build_next` has the load's limit) may
    use; None for any other error."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, duckdb.OutOfMemoryException):
            return (f"the {command} ran out of the memory it may use (EXCHANGE_IMPACT_LOAD_MEMORY="
                    f"{LOAD_MEMORY_LIMIT}); set EXCHANGE_IMPACT_LOAD_MEMORY higher (e.g. 4GB) "
                    f"and {command} again")
        seen = seen.__cause__ or seen.__context__
    return None


# What DuckDB says when a database file itself is damaged, whatever the query was.
_DAMAGE = ("not a valid DuckDB database file", "Corrupt database file")


def damaged(warehouse: Path, error: BaseException, *copies: Path) -> WarehouseError | None:
    """A one-line `WarehouseError` if `error` (or an error it arose from) says the warehouse file
    is damaged (truncated, overwritten, not a DuckDB file); None for any other error.

    `copies` are files made from the warehouse (the next file): an error naming them is the
    warehouse's too, and the message names the warehouse instead.
    """
    # DuckDB names files by absolute path: `build_next` gets relative ones from the command line.
    names = [str(warehouse)] + [str(Path(p).absolute()) for p in (warehouse, *copies)] + [
        str(p) for p in copies]
    # A reader opens the file through a private link (`_open_link`): its name is the file's too.
    links = re.compile(re.escape(str(Path(warehouse).absolute().with_name(
        f".{Path(warehouse).name}.open-"))) + r"[0-9]+-[0-9a-f]+")
    seen: BaseException | None = error
    while seen is not None:
        msg = links.sub(str(Path(warehouse).absolute()), str(seen))
        if isinstance(seen, duckdb.Error) and (
                any(m in msg for m in _DAMAGE)
                or ("Could not read" in msg and any(f'"{n}"' in msg for n in names))):
            first = msg.strip().splitlines()[0]
            for n in names[1:]:
                first = first.replace(n, names[0])
            return WarehouseError(
                f"{warehouse}: not a readable warehouse ({first}); it was left as it is: restore "
                "it from a backup, or move it aside and load the files of the earlier loads "
                "again to rebuild it")
        seen = seen.__cause__ or seen.__context__
    return None


def lock_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".lock")


def _next_dir(warehouse: Path) -> Path:
    return warehouse.with_name(f".{warehouse.name}.next-{os.getpid()}")


def _owner_only(folder: Path) -> None:
    """Make what DuckDB created in `folder` (by the umask) owner-only: files 0600, folders 0700."""
    for p in folder.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            p.chmod(0o700 if p.is_dir() else 0o600)


def _private_copy(src: Path, dst: Path) -> None:
    """Copy `src` to a new owner-only file `dst` (created 0600, whatever the umask)."""
    os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    shutil.copyfile(src, dst)  # keeps dst's mode; copies in the kernel (sendfile) on Linux


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the contract and bookkeeping tables; add columns a newer release introduced."""
    for t in schema.TABLES.values():
        con.execute(schema.ddl(t))
        have = {r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
            "AND database_name = current_database()", [t.name]).fetchall()}
        for c in t.columns:
            if c.name not in have:  # a warehouse built before the column existed
                con.execute(f'ALTER TABLE "{t.name}" ADD COLUMN "{c.name}" {c.sql_type}')
    con.execute(
        "INSERT INTO meta SELECT 'data_version', '0' "
        "WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'data_version')"
    )


def data_version(con: duckdb.DuckDBPyConnection) -> int:
    rows = con.execute("SELECT value FROM meta WHERE key = 'data_version'").fetchall()
    return int(rows[0][0]) if rows else 0


def _configure_writer(con: duckdb.DuckDBPyConnection, tmp_dir: Path) -> None:
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{LOAD_MEMORY_LIMIT}'")
    # Each writer spills into its own folder: two processes sharing one overwrite each other.
    con.execute(f"SET temp_directory = '{tmp_dir}'")


def _remove_stale(warehouse: Path) -> None:
    """Delete half-built files that a killed writer left (we hold the lock, so none is live), and
    the open-links of readers killed while opening (each would pin an old file's disk space)."""
    for p in warehouse.parent.glob(f".{warehouse.name}.next-*"):
        with contextlib.suppress(FileNotFoundError):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
    for p in warehouse.parent.glob(f".{warehouse.name}.open-*"):
        pid = p.name.rsplit(".open-", 1)[1].split("-", 1)[0]
        if not (pid.isdigit() and _alive(int(pid))):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _open_next(warehouse: Path, nxt: Path, tmp_dir: Path) -> duckdb.DuckDBPyConnection:
    """Open the next file (a copy of the live one) for writing, one version ahead of it.

    The next file carries its own version from the start, so whatever is written in it (load
    batches, result tables) is stamped with the version readers will see; the live file keeps
    the old one until the rename. A damaged live file fails here, on open or on its first read:
    one line for the user, and the live file, only ever read, stays as it was.
    """
    con = None
    try:
        con = duckdb.connect(str(nxt))
        _configure_writer(con, tmp_dir)
        create_schema(con)
        version = data_version(con) + 1
        con.execute("UPDATE meta SET value = ? WHERE key = 'data_version'", [str(version)])
        return con
    except duckdb.Error as e:
        if con is not None:
            con.close()
        damage = damaged(warehouse, e, nxt)
        if damage is None:
            raise
        raise damage from None


def writer_lock(path: Path, busy: str, *, lock_timeout: float,
                on_wait: Callable[[], None] | None) -> FileLock:
    """The writers' lock file `path`, held: at once, or after `on_wait()` and up to
    `lock_timeout` seconds; else `WarehouseBusy` saying `busy` (what holds it) and for how long.
    Also the lock of a lake's loads (`etl.lake`)."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait:
            on_wait()
        try:
            lock.acquire(timeout=lock_timeout)
        except Timeout:
            raise WarehouseBusy(f"{busy} for over {lock_timeout:.0f} s; try again when it has "
                                "finished") from None
    return lock


@contextlib.contextmanager
def build_next(
    warehouse: Path | str = DEFAULT_WAREHOUSE,
    *,
    lock_timeout: float = 600.0,
    on_wait: Callable[[], None] | None = None,
    fresh: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a read-write connection to the next warehouse; swap it in if the block succeeds.

    The block may raise `NoChange` to leave the live file untouched. Inside the block,
    `data_version(con)` is already the version this build will have once it is swapped in (one
    more than the live file's). `fresh`: the next file starts empty (the schema only, version 1)
    instead of as a copy of the live one; a serving warehouse built from a lake
    (`analytics.derive.serve`) replaces the live file whole, with the same lock and swap.
    """
    process.for_heavy_work()  # a writer's settings: no transparent huge pages, one BLAS thread
    warehouse = Path(warehouse)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    lock = writer_lock(lock_path(warehouse), f"{warehouse}: another load has held the warehouse",
                       lock_timeout=lock_timeout, on_wait=on_wait)
    try:
        _remove_stale(warehouse)
        # Everything a build writes (the copy, DuckDB's WAL and spill files) lives in a folder only
        # the owner can enter: a writer killed mid-load leaves a full copy of the warehouse
        # behind until the next load, and it must not be readable by other users meanwhile.
        private = _next_dir(warehouse)
        private.mkdir(mode=0o700)
        private.chmod(0o700)  # mkdir's mode is filtered by the umask; this one is not
        nxt = private / warehouse.name
        tmp_dir = private / "tmp"
        if warehouse.exists() and not fresh:
            _private_copy(warehouse, nxt)
        con = _open_next(warehouse, nxt, tmp_dir)
        try:
            _owner_only(private)  # the new file and its WAL, which DuckDB made by the umask
            try:
                yield con
            except NoChange:
                con.close()
                return
            except Exception as e:  # a broken block of the copied file, met while loading
                damage = damaged(warehouse, e, nxt)
                if damage is None:
                    raise
                raise damage from None
            # built_at is to the second, for people; build_id tells apart two files built in the
            # same second with the same version (readers key their caches on it).
            con.execute("DELETE FROM meta WHERE key IN ('built_at', 'build_id')")
            con.execute("INSERT INTO meta VALUES "
                        "('built_at', strftime(now(), '%Y-%m-%dT%H:%M:%SZ')), ('build_id', ?)",
                        [uuid.uuid4().hex])
            con.execute("CHECKPOINT")
        finally:
            con.close()
        _owner_only(private)  # the live warehouse is owner-only, whatever the umask
        fd = os.open(nxt, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        phases.reached("before_swap")
        os.replace(nxt, warehouse)
        dfd = os.open(warehouse.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        phases.reached("after_swap")
    finally:
        _remove_stale(warehouse)
        lock.release()


class NoChange(Exception):
    """Raised inside `build_next` to keep the live warehouse as it is."""


_TEMP_ROOT: tuple[int, Path] | None = None
_TEMP_LOCK = threading.Lock()


def reader_temp_root() -> Path:
    """This process's private folder for reading (created on first use, removed at exit).

    Named with the pid under the system temp folder, owner-only; a forked child (a gunicorn
    worker) gets its own. Each read-only connection spills into a subfolder of its own.
    """
    global _TEMP_ROOT
    with _TEMP_LOCK:
        if _TEMP_ROOT is None or _TEMP_ROOT[0] != os.getpid():
            pid = os.getpid()
            root = Path(tempfile.mkdtemp(prefix=f"exchange-impact-reader-{pid}-"))
            atexit.register(_remove_temp_root, root, pid)
            _TEMP_ROOT = (pid, root)
        return _TEMP_ROOT[1]


def _remove_temp_root(root: Path, pid: int) -> None:
    if os.getpid() == pid:  # a forked child inherits the handler, not the folder
        shutil.rmtree(root, ignore_errors=True)


def _open_link(warehouse: Path) -> Path | None:
    """A new hard link to the live file, beside it: a path DuckDB has never seen in this process.

    None where the folder takes no links (read-only, or a file system without them): then the
    live path is opened, and a replaced file is seen once no connection to the old one is left.
    """
    link = warehouse.with_name(f".{warehouse.name}.open-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        os.link(warehouse, link)
    except OSError:
        return None
    return link


def connect_read_only(warehouse: Path | str, *, threads: int | None = None
                      ) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the file now at `warehouse`, opened through a path of its own
    (`_open_link`) and spilling into a folder of its own under `reader_temp_root()`."""
    warehouse = Path(warehouse)
    if not warehouse.exists():
        raise WarehouseError(
            f"{warehouse}: no warehouse here; load data with 'python -m etl load PATH' "
            "or build the demo with 'python -m etl demo'"
        )
    link = _open_link(warehouse)
    try:
        con = duckdb.connect(str(link or warehouse), read_only=True)
    except duckdb.Error as e:
        damage = damaged(warehouse, e, *([link] if link else []))
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if link:
            first = first.replace(str(link), str(warehouse))
        raise damage or WarehouseError(f"{warehouse}: cannot be opened ({first})") from None
    finally:
        if link:  # DuckDB holds the file open: the name is no longer needed
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
    spill = reader_temp_root() / uuid.uuid4().hex
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        # Several server processes on few cores: one thread each avoids oversubscription when
        # the queries are small (the dashboard reads rollups of a few thousand rows).
        con.execute(f"SET threads = {int(threads)}")
    return con


class Reader:
    """One read-only connection per process, reopened when the live file is replaced.

    `cursor()` is cheap (a `stat` of the live path); call it once per request. Thread-safe:
    threaded servers (Flask's dev server, dash_duo) share the reader. A cursor handed out before
    a swap keeps reading the file it started on until it is closed; every cursor handed out
    after the swap reads the new file.
    """

    def __init__(self, warehouse: Path | str = DEFAULT_WAREHOUSE, *, threads: int | None = None):
        self.warehouse = Path(warehouse)
        self._threads = threads
        self._con: duckdb.DuckDBPyConnection | None = None
        self._stamp: tuple | None = None
        self._pid: int | None = None
        self._facts: dict = {}
        self._lock = threading.Lock()

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.warehouse)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.cursor_and_facts()[0]

    def cursor_and_facts(self) -> tuple[duckdb.DuckDBPyConnection, dict]:
        """A cursor, and a dict that lives exactly as long as the connection it came from: a
        place for callers to memoise facts of the open file (the read cache keeps its version
        key there instead of asking the file on every cached call). The file behind one
        connection never changes (a load swaps in a new file), so neither do those facts; a
        reopen starts an empty dict."""
        with self._lock:
            stamp = self._file_stamp()
            if self._con is None or self._pid != os.getpid() or stamp != self._stamp:
                # Not closed: requests in flight hold cursors on it (closing a connection closes
                # its cursors). It goes when the last of them does; new ones read the new file.
                self._con = None
                self._con = connect_read_only(self.warehouse, threads=self._threads)
                # The stamp was taken before the open: a file swapped in between is newer than
                # the stamp says, and the next call opens it once more; never the other way.
                self._stamp = stamp
                self._pid = os.getpid()
                self._facts = {}
            return self._con.cursor(), self._facts

    def data_version(self) -> int:
        cur = self.cursor()
        try:
            return data_version(cur)
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None
