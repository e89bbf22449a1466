"""`write_snapshot`: the funder PDF of the dashboard's evidence for one set of filters.

    from reports.snapshot import write_snapshot
    write_snapshot(Filters(cluster=("CL01",)), Path("cl01.pdf"), progress=print)

Reads the warehouse the dashboard reads (`pages._ui.reader()`: EXCHANGE_IMPACT_WAREHOUSE, else
data/warehouse.duckdb), gathers the sections (`reports.content`), renders them to HTML
(`reports.render`) and prints that with the process's headless Chromium (`reports.engine`),
which stays up for the next report.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from analytics.read.filters import Filters

__all__ = ["write_snapshot", "ReportError", "LANGUAGES"]

LANGUAGES = ("en",)


class ReportError(ValueError):
    """A snapshot that cannot be made (no warehouse, an unsupported language, an unwritable
    output path); the message says what to do."""


def write_snapshot(filters: Filters, out: Path, *, title: str | None = None, lang: str = "en",
                   progress: Callable[[float, str], None] | None = None,
                   notes: Iterable[str] = (), whole_program: bool = True,
                   round_to: int | None = None) -> Path:
    """Write the PDF snapshot of `filters` to `out` and return its path.

    `progress(fraction, what)` is called as the report advances (0 … 1). `notes` are lines the
    caller wants on the cover (e.g. what the CLI ignored in a link). `whole_program=False`
    (an account scoped to some programs) leaves out the statistics precomputed over all
    programs, with the dashboard's note; `round_to` rounds every count to that base (funders,
    `analytics.read.rounding`). Raises ReportError for a
    missing warehouse or language, `reports.engine.ChromiumMissing` without a browser, and
    `reports.engine.ReportRenderError` when the page fails to draw."""
    from analytics.read import rounding
    from etl.errors import WarehouseError
    from pages import _ui
    from reports import content, engine, render

    if lang not in LANGUAGES:
        raise ReportError(f"--lang {lang}: snapshots are written in {', '.join(LANGUAGES)} only")
    out = Path(out)
    if not out.parent.exists():
        raise ReportError(f"{out}: the folder {out.parent} does not exist")

    def step(x: float, what: str) -> None:
        if progress is not None:
            progress(x, what)

    step(0.0, "reading the warehouse")
    try:
        cur = _ui.reader().cursor()
    except WarehouseError as e:
        raise ReportError(f"no data to report: {e}") from None
    try:
        with rounding.rounded(round_to):
            report = content.gather(cur, filters, title=title, lang=lang, notes=notes,
                                    progress=progress, whole_program=whole_program)
    except WarehouseError as e:
        raise ReportError(f"no data to report: {e}") from None
    finally:
        cur.close()
    step(0.9, "printing the PDF")
    with tempfile.TemporaryDirectory(prefix="ei-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(render.to_html(report), encoding="utf-8")
        pdf = engine.engine().print_pdf(page, footer=render.footer_template(report))
    # Written beside the target and renamed over it: a reader never sees half a PDF.
    fd, partial = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pdf)
        render.set_metadata(Path(partial), report)
        os.replace(partial, out)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    step(1.0, "done")
    return out
