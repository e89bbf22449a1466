"""Named phases of a load, where tests stop the loader deterministically (no timed kills).

A load passes these phases in order, each once per call (`insert` once per file loaded):

  read         a file has been read into staging (before its transaction)
  insert       a file's rows are committed to the next warehouse file
  derive       the derive step (result tables, day facts, rollups) has run on the next file
  before_swap  the next file is complete, checkpointed, closed and synced; the live one untouched
  after_swap   the next file has replaced the live one

A load into a lake (`etl.lake`) loads through a private staging file (the phases above), then:

  lake_files   the new Parquet files are in the lake's folders; no log entry lists them yet
  lake_commit  the log entry of the new version is written

A serve (`analytics.derive.serve`) builds its file through the same writer: `derive` once its
result tables and cubes are computed, then `before_swap` and `after_swap`.

`reached(phase)` does nothing unless the environment variable `EXCHANGE_IMPACT_TEST_PHASES`
names the phase, as a comma-separated list of ``phase=action``:

  kill           the process SIGKILLs itself (a crash or an OOM kill at that point)
  SIGTERM|SIGINT the process sends itself that signal (a service manager, Ctrl-C)
  hold:DIR       create DIR/<phase>.reached, then wait until DIR/<phase>.go exists

e.g. ``EXCHANGE_IMPACT_TEST_PHASES="derive=kill"`` or ``"before_swap=hold:/tmp/x"``. It is a
test hook: production never sets it, and an unset variable costs one dictionary lookup.

A second test hook, `EXCHANGE_IMPACT_TEST_SKIP_DERIVE=1` (`derive_skipped()`), makes a load skip
the derive step's work (result tables, day facts, rollups; the `derive` phase is still reached):
the new version goes live with the derived tables of the one before, if any, left stale. Tests about
reading and loading rows set it (`tests.program.NO_DERIVE`) so that each of their many small
loads does not compute every statistical table of data it never looks at; a test that reads a
derived table, or the derive step's failure handling, never sets it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["ENV", "PHASES", "LAKE_PHASES", "SKIP_DERIVE_ENV", "derive_skipped", "reached"]

ENV = "EXCHANGE_IMPACT_TEST_PHASES"
SKIP_DERIVE_ENV = "EXCHANGE_IMPACT_TEST_SKIP_DERIVE"
PHASES = ("read", "insert", "derive", "before_swap", "after_swap")
LAKE_PHASES = ("lake_files", "lake_commit")


def _actions() -> dict[str, str]:
    raw = os.environ.get(ENV, "")
    out = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        phase, _, action = part.partition("=")
        if phase not in PHASES + LAKE_PHASES:
            raise ValueError(f"{ENV}: unknown phase {phase!r} "
                             f"(one of {', '.join(PHASES + LAKE_PHASES)})")
        out[phase] = action
    return out


def derive_skipped() -> bool:
    """True when the test hook asks loads to skip the derive step's work (see above)."""
    return os.environ.get(SKIP_DERIVE_ENV) == "1"


def reached(phase: str) -> None:
    """Called by the loader at each phase; acts only when the test hook names the phase."""
    if ENV not in os.environ:
        return
    action = _actions().get(phase)
    if not action:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action in ("SIGTERM", "SIGINT"):
        os.kill(os.getpid(), getattr(signal, action))
    elif action.startswith("hold:"):
        folder = Path(action[5:])
        (folder / f"{phase}.reached").touch()
        while not (folder / f"{phase}.go").exists():
            time.sleep(0.02)  # waits on a file the test creates; no outcome depends on timing
    else:
        raise ValueError(f"{ENV}: unknown action {action!r} for phase {phase}")
