"""Funder PDF snapshots of the dashboard's evidence (issue 12).

    python -m reports snapshot --out snapshot.pdf --cluster CL01

`reports.snapshot.write_snapshot` is the library call beneath the CLI (`reports.cli`). Importing
this package needs no browser: Chromium is looked for, and started, only when a PDF is printed
(`reports.engine`), and its absence is one clear message saying how to install it.
"""

from __future__ import annotations

__all__ = ["snapshot", "engine", "content", "render", "cli"]
