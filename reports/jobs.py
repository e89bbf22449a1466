"""The dashboard's "PDF snapshot" button as a background job: one process per report, state on disk.

    job = start(warehouse, Filters(cluster=("CL01",)))   # returns at once with the job's id
    status(warehouse, job)                               # JobStatus: running 40% "outcomes" …

A snapshot takes seconds (queries, a Chromium start, printing), longer than a callback may hold
a Dash/gunicorn worker. `start` spawns `python -m reports snapshot … --progress-file F` and
returns; the page polls `status`, which only reads files. Everything about a job lives in its
own folder beside the warehouse, never in a process's memory, so a poll answered by another
gunicorn worker than the one that started the job sees the same state:

    data/warehouse.duckdb.snapshots/<job id>/state.json     what the job says (`write_state`)
    data/warehouse.duckdb.snapshots/<job id>/.lock          held (flock) while the job runs
    data/warehouse.duckdb.snapshots/<job id>/<name>.pdf     the report, once done

The id is a random uuid4 kept in the browser session's dcc.Store: two users pressing at once
get two folders and two reports, and nobody can fetch a report without its id. The starter takes
the job's lock before it spawns the process and hands it over as an inherited descriptor (as
`analytics.outputs.downloads` does), so the lock is released exactly when the job process ends,
however it ends: a job whose state still says "running" with its lock free died without a word
(killed, out of memory) and is reported as failed. Job folders older than a day are removed when
the next job starts. Folders are owner-only: a report holds the warehouse's numbers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from analytics.read.filters import Filters

__all__ = ["JobStatus", "KEEP_SECONDS", "ENV_TEST_GATE", "jobs_root", "start", "status",
           "result_file", "write_state", "wait_gate", "remove_old"]

KEEP_SECONDS = 24 * 3600.0  # a job's folder goes a day after its last change
# Test hook: when set, a job waits after its first progress step until this file exists, so a
# browser test can act while a job is certainly running, without guessing how long it takes.
ENV_TEST_GATE = "EXCHANGE_IMPACT_TEST_SNAPSHOT_GATE"
GATE_TIMEOUT_S = 300.0
STATE = "state.json"
_ID = re.compile(r"[0-9a-f]{32}")
_PDF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}\.pdf")
_ROOT = Path(__file__).resolve().parents[1]
_RUNNING: list[subprocess.Popen] = []  # job processes this process started, until reaped


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands. `state` is "running", "done" or "failed"; `fraction` (0 … 1) and
    `stage` say how far a running job is; `path` is the PDF of a done job, `error` the one-line
    reason of a failed one."""

    state: str
    fraction: float = 0.0
    stage: str = ""
    path: Path | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"


def jobs_root(warehouse: Path) -> Path:
    """The jobs folder beside the warehouse (`warehouse.duckdb.snapshots/`)."""
    return warehouse.with_name(warehouse.name + ".snapshots")


def _private_dir(path: Path) -> None:
    for p in (path.parent, path):
        p.mkdir(mode=0o700, exist_ok=True)
        os.chmod(p, 0o700)  # mkdir's mode is masked by the umask


def _folder(warehouse: Path, job: str) -> Path | None:
    if not isinstance(job, str) or not _ID.fullmatch(job):
        return None
    return jobs_root(warehouse) / job


def report_name(filters: Filters, today: date | None = None) -> str:
    """The download's file name: `exchange_impact_snapshot_2026-12-04.pdf`, with the single
    cluster or country when the filters pick exactly one (file-name-safe characters only)."""
    parts = ["exchange_impact_snapshot"]
    for field in ("cluster", "country"):
        vals = getattr(filters, field)
        if len(vals) == 1:
            parts.append(re.sub(r"[^A-Za-z0-9-]+", "-", vals[0]).strip("-")[:40] or field)
    parts.append((today or date.today()).isoformat())
    return "_".join(p for p in parts if p) + ".pdf"


def write_state(path: Path, **state: Any) -> None:
    """Write a job's state file whole or not at all (a temporary file renamed over it), so a
    poll never reads half a JSON document. What the job process calls (`reports.cli`)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({**state, "updated": time.time()}, fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def wait_gate() -> None:
    """The test hook (`ENV_TEST_GATE`): wait until the named file exists (at most
    `GATE_TIMEOUT_S`, so a forgotten gate cannot hold a job for ever). Unset: returns at once."""
    gate = os.environ.get(ENV_TEST_GATE, "").strip()
    if not gate:
        return
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)


def start(warehouse: Path, filters: Filters, *, title: str | None = None,
          whole_program: bool = True, round_to: int | None = None) -> str:
    """Start the snapshot of `filters` in its own process and return the job's id at once.

    What the caller's account may see is passed explicitly (the job has no Flask request):
    `whole_program=False` for an account scoped to some programs/clusters leaves out the
    statistics precomputed over all programs, with the pages' note; `round_to` rounds the
    counts to that base (funders). The job writes `<name>.pdf` into its folder and its progress
    into `state.json`; read both with `status`. Removes job folders older than `KEEP_SECONDS`
    first."""
    warehouse = Path(warehouse)
    root = jobs_root(warehouse)
    _private_dir(root)
    remove_old(root)
    job = uuid.uuid4().hex
    where = root / job
    _private_dir(where)
    out = where / report_name(filters)
    write_state(where / STATE, state="running", fraction=0.0, stage="starting", out=out.name)
    fd = os.open(where / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new folder: nobody else can hold it
        cmd = [sys.executable, "-m", "reports", "snapshot", "--quiet", "--out", str(out),
               "--warehouse", str(warehouse), "--progress-file", str(where / STATE),
               *(f"--{key}={value}" for key, value in filters.pairs()),
               *([f"--title={title}"] if title else []),
               *([] if whole_program else ["--scoped"]),
               *([f"--round-to={int(round_to)}"] if round_to is not None else [])]
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH"))
                                             if p)}
        # stderr (a crash's traceback) goes to the server's log; the job's own messages are in
        # its state file.
        proc = subprocess.Popen(cmd, cwd=_ROOT, env=env, pass_fds=(fd,),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as e:
        write_state(where / STATE, state="failed", error=f"the report process could not start: {e}")
        return job
    finally:
        os.close(fd)  # the job process keeps its inherited copy, and with it the lock
    # Reap the jobs that have ended (polled, not waited on in a thread: nothing of ours runs in
    # the background of a worker), so a long-lived worker collects no zombies.
    _RUNNING[:] = [p for p in _RUNNING if p.poll() is None]
    _RUNNING.append(proc)
    return job


def _lock_free(where: Path) -> bool:
    """True when no process holds the job's lock (it has ended)."""
    try:
        fd = os.open(where / ".lock", os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock we took
    return True


def _read_state(where: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((where / STATE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def status(warehouse: Path, job: str) -> JobStatus:
    """What `job` says now: only reads its folder (milliseconds), from any process.

    An unknown or removed job is failed with a reason; so is a job whose process ended without
    writing "done" or "failed" (its lock is free)."""
    _RUNNING[:] = [p for p in _RUNNING if p.poll() is None]
    where = _folder(Path(warehouse), job)
    data = _read_state(where) if where is not None else None
    if data is None:
        return JobStatus("failed", error="this snapshot is no longer on the server (jobs are "
                                         "kept for a day); press the button again")
    state = data.get("state")
    if state == "done":
        name = data.get("out")
        path = where / name if isinstance(name, str) and _PDF.fullmatch(name) else None
        if path is None or not path.is_file():
            return JobStatus("failed", error="the report file is missing; press the button again")
        return JobStatus("done", 1.0, "done", path=path)
    if state == "failed":
        return JobStatus("failed", error=str(data.get("error") or "the report could not be made"))
    if _lock_free(where):
        # Read again: the job may have written its last state between the two reads.
        data = _read_state(where) or {}
        if data.get("state") in ("done", "failed"):
            return status(warehouse, job)
        return JobStatus("failed", error="the report process ended without finishing (see the "
                                         "server log); press the button again")
    fraction = data.get("fraction")
    return JobStatus("running",
                     float(fraction) if isinstance(fraction, int | float) else 0.0,
                     str(data.get("stage") or ""))


def result_file(warehouse: Path, job: str, name: str) -> Path | None:
    """The finished report `name` of `job`, or None: the id and the name are checked against
    what this module writes (no other file, no path outside the jobs folder) before the file
    system is asked. For the download route (`pages._ui.send_download`)."""
    where = _folder(Path(warehouse), job)
    if where is None or not isinstance(name, str) or not _PDF.fullmatch(name):
        return None
    path = where / name
    return path if path.is_file() else None


def remove_old(root: Path, keep_seconds: float = KEEP_SECONDS) -> list[Path]:
    """Remove the job folders under `root` unchanged for `keep_seconds` whose process has
    ended; returns those removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for p in root.iterdir():
        if not p.is_dir() or not _ID.fullmatch(p.name):
            continue
        with contextlib.suppress(OSError):
            changed = max((f.stat().st_mtime for f in p.iterdir()), default=p.stat().st_mtime)
            if now - changed > keep_seconds and _lock_free(p):
                shutil.rmtree(p)
                removed.append(p)
    return removed
