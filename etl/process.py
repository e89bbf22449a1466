"""Process-wide settings for the heavy work of a load and its derive step.

Two settings, both measured on the derive of a 1M-participant demo (2 cores, 2026-12-05):

- **No transparent huge pages.** numpy asks the kernel for huge pages on every large array
  (``madvise(MADV_HUGEPAGE)``), and so do the allocators behind DuckDB and Arrow; each first
  touch of such memory then zeroes a whole 2 MB page. The derive allocates and frees arrays of
  a million rows many times, and profiles (``perf``) put 20 % of its time in the kernel's
  ``clear_page`` under ``do_huge_pmd_anonymous_page``. ``prctl(PR_SET_THP_DISABLE)`` turns
  huge pages off for this process only (the machine's setting is left alone): sensitivity and
  dose-response with their reads went 24.6–30.8 s → 18.7–19.2 s wall, system time 11–19 s →
  3.7 s.
- **BLAS on one thread.** OpenBLAS's worker threads spin after each call, waiting for the
  next; on 2 cores they take a core from DuckDB and Python while the derive's matrices (a few
  columns, a million rows) gain nothing from a second thread. `threadpoolctl` limits them at
  run time (the environment variable would have to be set before numpy is imported): the same
  step's CPU time went 30 → 25 s at the same wall time.

`for_heavy_work()` applies both and is idempotent; on a system without ``prctl`` (not Linux)
the huge-page setting is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["for_heavy_work"]

_PR_SET_THP_DISABLE = 41  # linux/prctl.h
_done = False
_blas_limit: object | None = None  # the threadpool_limits object: dropping it would undo it


def for_heavy_work() -> None:
    """Turn off transparent huge pages for this process and run BLAS on one thread."""
    global _done, _blas_limit
    if _done:
        return
    _done = True
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # an unusual libc: the setting is a speed-up, not a requirement
    from threadpoolctl import threadpool_limits

    _blas_limit = threadpool_limits(limits=1, user_api="blas")
