"""Build an expensive test input once per test run, however many xdist workers ask for it.

Each pytest-xdist worker is its own process with its own session fixtures, so a demo warehouse
that two modules on two workers need was built twice (≈ 15–25 s each). `built_once(name, key,
build)` builds it into a folder shared by the run's workers, keyed by `key` and by the content of
the code that builds it (etl/, analytics/, surveys/), under a `FileLock`: the first worker
builds, the others wait and then use the finished folder. `worker_copy` gives each worker its own
copy of that folder, so a test that writes beside the warehouse (job files, download caches)
touches only its worker's copy, as when each worker built its own.

The shared folder is the run's pytest base temporary directory (the parent of the workers' own
under xdist), set by `tests/conftest.py`; without it (a helper run by hand) each process builds
its own in a temporary directory, as before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from tests.program import ROOT

__all__ = ["built_once", "set_shared_root", "worker_copy"]

_SHARED_ROOT: list[Path] = []
_CODE_DIGEST: list[str] = []
_COPIES: dict[Path, Path] = {}
_CODE_FOLDERS = ("etl", "analytics", "surveys")


def set_shared_root(folder: Path) -> None:
    """Where this run's workers share their builds (called once per process by conftest)."""
    _SHARED_ROOT[:] = [Path(folder)]


def _code_digest() -> str:
    """The content of the code a build runs: a build made by other code is never reused."""
    if not _CODE_DIGEST:
        h = hashlib.sha256()
        for top in _CODE_FOLDERS:
            for p in sorted((ROOT / top).rglob("*")):
                if p.is_file() and p.suffix in (".py", ".yaml", ".yml", ".json", ".csv"):
                    h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
        _CODE_DIGEST.append(h.hexdigest()[:16])
    return _CODE_DIGEST[0]


def built_once(name: str, key: tuple, build: Callable[[Path], None]) -> Path:
    """The folder that `build(folder)` filled, for this `name` and `key`; built by the first
    worker of the run that asks, under a lock, and reused by the others.

    `build` must fill the (empty, existing) folder it is given or raise; a failed build leaves
    nothing behind, so the next caller tries again and sees the same error."""
    digest = hashlib.sha256(repr((name, key, _code_digest())).encode()).hexdigest()[:16]
    if not _SHARED_ROOT:
        folder = Path(tempfile.mkdtemp(prefix=f"ei-{name}-"))
        build(folder)
        return folder
    root = _SHARED_ROOT[0] / "shared-builds"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{name}-{digest}"
    with FileLock(str(folder) + ".lock"):
        if not folder.is_dir():
            work = root / f".{folder.name}.building-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            try:
                build(work)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            work.rename(folder)  # complete or absent: a reader never sees half a build
    return folder


def worker_copy(folder: Path) -> Path:
    """This process's own copy of a shared build folder (made once per process)."""
    if folder not in _COPIES:
        if not _SHARED_ROOT:  # built by this process in its own temporary directory
            _COPIES[folder] = folder
        else:
            own = Path(tempfile.mkdtemp(prefix=f"{folder.name}-", dir=_SHARED_ROOT[0]))
            shutil.copytree(folder, own, dirs_exist_ok=True)
            _COPIES[folder] = own
    return _COPIES[folder]
