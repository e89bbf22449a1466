"""Progress for long loads: a rich status line that names the current step (off with --quiet)."""

from __future__ import annotations

import time

from rich.console import Console


class Steps:
    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet
        self._status = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> Steps:
        if not self.quiet and self.console.is_terminal:
            self._status = self.console.status("loading…")
            self._status.__enter__()
        return self

    def say(self, msg: str) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self._t0
        if self._status is not None:
            self._status.update(f"[{elapsed:5.1f} s] {msg}")

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)
