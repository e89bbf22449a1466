"""`python -m reports snapshot`: the funder PDF for the dashboard's filters.

A thin layer over `reports.snapshot.write_snapshot`: it turns the arguments (the dashboard's
URL filters, or a dashboard link as it is) into `Filters` with the dashboard's own parser
(`analytics.read.filters.parse_filters`), prints one clear line per problem and sets the exit
status:

  0  written
  1  the report could not be made (no warehouse, no Chromium, …; the message says why)
  2  the command line was wrong
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from analytics.read.filters import FILTER_KEYS, Filters, parse_filters

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

EPILOG = """examples:
  python -m reports snapshot --out snapshot.pdf                          the whole program
  python -m reports snapshot --out cl.pdf --cluster CL01 --title "Andes network, 2025"
  python -m reports snapshot --out ken.pdf --country KEN --from 2025-01-01 --to 2025-06-30
  python -m reports snapshot --out s.pdf --url 'http://127.0.0.1:8050/outcomes?cluster=CL01'
  EXCHANGE_IMPACT_WAREHOUSE=/srv/ei/warehouse.duckdb python -m reports snapshot --out s.pdf

Filter values are those of the dashboard's links (ids for clusters and exchanges, ISO alpha-3
for countries); several values are comma-separated. The warehouse is the dashboard's:
EXCHANGE_IMPACT_WAREHOUSE, else data/warehouse.duckdb (or --warehouse).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reports", description=__doc__.split("\n")[0],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("snapshot", help="write the funder PDF snapshot", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--out", required=True, type=Path, help="the PDF to write")
    for key in FILTER_KEYS:
        s.add_argument(f"--{key}", dest=f"f_{key}", metavar="DATE" if key in ("from", "to")
                       else "VALUES", help=f"the dashboard's '{key}' filter")
    s.add_argument("--url", help="a dashboard link; its filters are used (given filter "
                                 "options override the link's)")
    s.add_argument("--title", help="the report's title (default: Exchange Impact: funder "
                                   "snapshot)")
    s.add_argument("--lang", default="en", help="language of the report (en)")
    s.add_argument("--warehouse", type=Path, help="the warehouse file (default: the "
                                                  "dashboard's)")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    s.add_argument("--scoped", action="store_true",
                   help="for an account limited to some programs: leave out the statistics "
                        "precomputed over all programs, with the dashboard's note")
    s.add_argument("--round-to", type=_base, metavar="N",
                   help="round every count to a multiple of N (funders; issue 14)")
    s.add_argument("--progress-file", type=Path, metavar="FILE",
                   help="keep FILE (JSON: state, fraction, stage, error) up to date as the report "
                        "advances; what the dashboard's button polls (reports.jobs)")
    return p


def _base(raw: str) -> int:
    try:
        base = int(raw)
    except ValueError:
        base = 0
    if base < 1:
        raise argparse.ArgumentTypeError(f"{raw!r}: a whole number 1 or more")
    return base


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def snapshot_filters(args: argparse.Namespace) -> tuple[Filters, list[str], str | None]:
    """The filters of the command line as the dashboard would read them: the link's query
    string (`--url`), with each filter option given replacing the link's. Returns the raw
    filters (checked against the data later), the notes on what was ignored, and the link's
    page path."""
    raw: dict[str, list[str]] = {}
    page = None
    if args.url:
        parts = urlsplit(args.url)
        page = parts.path or "/"
        from urllib.parse import parse_qs

        raw.update(parse_qs(parts.query, keep_blank_values=False))
    for key in FILTER_KEYS:
        v = getattr(args, f"f_{key}")
        if v is not None:
            raw[key] = [v]
    f, notes = parse_filters(raw, page=page)
    return f, notes, page


def cmd_snapshot(args: argparse.Namespace) -> int:
    from reports import engine
    from reports.snapshot import ReportError, write_snapshot

    state = _StateFile(args.progress_file, args.out.name)
    if args.warehouse is not None:
        if not args.warehouse.exists():
            _say(f"error: {args.warehouse}: no such warehouse file")
            state.failed(f"{args.warehouse}: no such warehouse file")
            return EXIT_ERROR
        os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = str(args.warehouse)
    f, notes, _ = snapshot_filters(args)
    for n in notes:
        _say(f"note: {n}")
    t0 = time.perf_counter()

    def progress(x: float, what: str) -> None:
        if not args.quiet:
            _say(f"[{100 * x:3.0f}%] {what}")
        state.progress(x, what)

    try:
        out = write_snapshot(f, args.out, title=args.title, lang=args.lang,
                             progress=progress, notes=notes,
                             whole_program=not args.scoped, round_to=args.round_to)
    except (ReportError, engine.ChromiumMissing, engine.ReportRenderError) as e:
        _say(f"error: {e}")
        state.failed(str(e))
        return EXIT_ERROR
    except OSError as e:
        msg = f"{e.filename or args.out}: {e.strerror or e}"
        _say(f"error: {msg}")
        state.failed(msg)
        return EXIT_ERROR
    except BaseException as e:
        # Unexpected (a bug): the button shows a short reason, the traceback goes to stderr
        # (the server's log when the dashboard started the job).
        state.failed("interrupted: no report was written" if isinstance(e, KeyboardInterrupt)
                     else f"the report could not be made ({type(e).__name__}); see the "
                          "server log")
        raise
    state.done()
    if not args.quiet:
        _say(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


class _StateFile:
    """The `--progress-file` of a job (`reports.jobs`): running with its fraction and stage,
    then done or failed with the one-line reason. Without the option, nothing is written."""

    def __init__(self, path: Path | None, out: str) -> None:
        self.path, self.out, self.started = path, out, False

    def _write(self, **state: object) -> None:
        if self.path is not None:
            from reports.jobs import write_state

            write_state(self.path, out=self.out, **state)

    def progress(self, fraction: float, stage: str) -> None:
        self._write(state="running", fraction=fraction, stage=stage)
        if self.path is not None and not self.started:
            from reports.jobs import wait_gate

            self.started = True
            wait_gate()

    def done(self) -> None:
        self._write(state="done", fraction=1.0, stage="done")

    def failed(self, message: str) -> None:
        self._write(state="failed", error=message)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"snapshot": cmd_snapshot}[args.command](args)
    except KeyboardInterrupt:
        _say("interrupted: no report was written")
        return 130
