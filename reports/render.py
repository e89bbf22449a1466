"""A gathered `Report` as a print-styled HTML page, and that page as a PDF with its metadata.

The HTML is self-contained apart from the installed plotly.js, which it loads from the plotly
package's own file (no CDN); the world map's topojson is inlined from assets/geo, so nothing
is fetched from the network. Chromium prints it (`reports.engine`); pypdf then adds the
subject and keywords (Chromium writes only the title, from <title>) in an incremental update,
which leaves Chromium's structure tree (the tags), outline and links as they are.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import jinja2
import plotly
from plotly.io.json import to_json_plotly

from analytics import suppression
from reports.content import Report, Sub

__all__ = ["PLOTLY_JS", "TOPOJSON", "to_html", "footer_template", "subject_of", "set_metadata"]

ROOT = Path(__file__).resolve().parent.parent
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
TOPOJSON = ROOT / "assets" / "geo" / "world_110m.json"
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES),
                          autoescape=jinja2.select_autoescape(["html", "j2"]),
                          trim_blocks=True, lstrip_blocks=True)


def _fig_json(fig: dict[str, Any]) -> str:
    # Inside <script>, "</" would close the element: escaped, it is the same JSON string.
    return to_json_plotly(fig).replace("</", "<\\/")


def subject_of(r: Report) -> str:
    return f"{'; '.join(r.filters_text)}. Period {r.period}. Data version {r.data_version}."


def to_html(r: Report) -> str:
    """The report page; figures are drawn by plotly.js when Chromium opens it."""
    template = _ENV.get_template("report.html.j2")
    return template.render(
        r=r,
        css=(_TEMPLATES / "report.css").read_text(encoding="utf-8"),
        subject=subject_of(r),
        k=suppression.MIN_CELL,
        suppressed_label=suppression.SUPPRESSED_LABEL,
        kind=lambda b: type(b).__name__,
        subs_of=lambda s: [b for b in s.blocks if isinstance(b, Sub) and b.id],
        fig_json=_fig_json,
        topojson=TOPOJSON.read_text(encoding="utf-8").replace("</", "<\\/"),
        plotly_src=PLOTLY_JS.as_uri(),
    )


def footer_template(r: Report) -> str:
    """Chromium's footer: the report's title and data version left, page n of m right."""
    left = html.escape(f"{r.title} · data version {r.data_version}")
    return ('<div style="font-family: DejaVu Sans, sans-serif; font-size: 7.5pt; color: #555; '
            'width: 100%; margin: 0 16mm; display: flex; justify-content: space-between;">'
            f'<span>{left}</span><span>page <span class="pageNumber"></span> of '
            '<span class="totalPages"></span></span></div>')


def set_metadata(pdf: Path, r: Report) -> None:
    """Add subject, keywords, author and creator to Chromium's PDF (incremental update)."""
    from pypdf import PdfWriter

    writer = PdfWriter(pdf, incremental=True)
    writer.add_metadata({
        "/Title": r.title,
        "/Subject": subject_of(r),
        "/Keywords": "; ".join(r.keywords),
        "/Author": "Exchange Impact",
        "/Creator": "Exchange Impact reports (python -m reports snapshot)",
    })
    with open(pdf, "r+b") as fh:
        writer.write(fh)


