"""A scoped account's PDF snapshot (issue 14): the parts precomputed over all programs are
replaced by the scope note, and the table of contents says so with the same headings as the
body (no "(whole program)" heading for a part that shows nothing of the whole program).

The warehouse is the dashboard fixture with its result tables computed (`analytics refresh`),
so that every whole-program part (dose, cost, persistence models, reciprocity, equity gaps) has
something to hide; the PDF is made by `python -m reports snapshot --scoped` and read back with
pdftotext.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analytics.outputs import cli
from reports import content
from tests.dashboard_fixture import build_fixture_warehouse

ROOT = Path(__file__).resolve().parent.parent
NOTE = "Hidden for your account:"

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils")


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("scoped_pdf")
    wh = build_fixture_warehouse(folder / "warehouse.duckdb")
    assert cli.main(["refresh", "--warehouse", str(wh)]) == 0
    pdf = folder / "scoped.pdf"
    res = subprocess.run([sys.executable, "-m", "reports", "snapshot", "--scoped", "--program",
                          "Bridges", "--out", str(pdf), "--warehouse", str(wh)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "EXCHANGE_IMPACT_WAREHOUSE": str(wh)})
    assert res.returncode == 0, res.stderr[-2000:]
    return subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout


def _toc_and_body(text: str) -> tuple[list[str], str]:
    head, _, body = text.partition("page 1 of")
    toc = head.partition("Contents")[2]
    entries = [re.sub(r"^\d+\.\s*", "", ln).strip() for ln in toc.splitlines()]
    return [e for e in entries if e], " ".join(body.split())


def test_contents_and_body_name_the_hidden_parts_alike(text: str) -> None:
    toc, body = _toc_and_body(text)
    hidden = [e for e in toc if e.endswith(f"({content.HIDDEN})")]
    assert len(hidden) >= 5, toc  # dose, cost (section and table), persistence, reciprocity, gaps
    notes = body.split(NOTE)[:-1]
    assert len(notes) >= 5
    for before in notes:  # the heading right above every note is a hidden entry of the contents
        assert any(before.endswith(f"{h} ") for h in hidden), before[-200:]
    for h in hidden:  # and every hidden entry of the contents is a heading of the body
        assert f"{h} " in body


def test_no_whole_program_heading_in_a_scoped_pdf(text: str) -> None:
    assert "(whole program)" not in text
    assert "whole program" not in " ".join(_toc_and_body(text)[0])
