"""Funders' outputs (issue 14): counts rounded by role in callbacks and PDFs, a scoped account's
PDF without the statistics precomputed over all programs, and secondary suppression beside a
shown total in exports, downloads and PDF tables.

Callbacks go through the app's real endpoints (Flask test client, logged in); PDFs are made by
the dashboard's job (`reports.jobs.start`, its own process) and read back with pdftotext. The
secondary-suppression cases use a warehouse whose result rows are written by hand so that
exactly one group is under k beside its shown total.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import suppression
from analytics.outputs import downloads, export
from analytics.read import overview, participation, rounding
from analytics.read.filters import Filters
from etl import accounts
from etl.warehouse import Reader, connect_read_only
from pages import _access
from tests import access_helpers as ah
from tests.access_helpers import PW
from tests.dashboard_fixture import build_fixture_warehouse
from tests.grids import grids

BASE = suppression.ROUND_TO
K = suppression.MIN_CELL


def _hand_made(path: Path) -> Path:
    """The dashboard fixture with hand-written result rows: res_prepost and
    res_reciprocity_shares hold an overall row and four clusters, one of them (C4) under k, and
    the stored results say they are current at today's k (so exports read them as they are)."""
    wh = build_fixture_warehouse(path)
    con = duckdb.connect(str(wh))
    try:
        version = con.execute("SELECT value FROM meta WHERE key = 'data_version'").fetchall()[0][0]
        pre = con.execute("SELECT * FROM res_prepost WHERE group_by = 'overall' LIMIT 1").df()
        rows = [pre.assign(n=100)]
        for g, n in (("C1", 40), ("C2", 35), ("C3", 20), ("C4", 5)):
            rows.append(pre.assign(group_by="cluster", group=g, n=n))
        prepost = pd.concat(rows, ignore_index=True)
        small = prepost["group"] == "C4"
        for c in prepost.columns:
            if c not in ("instrument", "scale", "group_by", "group", "suppressed") and \
                    pd.api.types.is_numeric_dtype(prepost[c].dtype):
                prepost[c] = prepost[c].astype("float64").mask(small)
        prepost["suppressed"] = [f"n < {K}" if s else None for s in small]
        con.execute("DELETE FROM res_prepost")
        con.register("_p", prepost)
        con.execute("INSERT INTO res_prepost BY NAME SELECT * FROM _p")
        rs = con.execute("SELECT * FROM res_reciprocity_shares "
                         "WHERE group_by = 'overall'").df()
        shares = [rs.assign(n_participants=200, n_assessable=20, n_both=12, n_a_only=4,
                            n_b_only=2, n_neither=2)]
        for g, n in (("C1", 80), ("C2", 70), ("C3", 45), ("C4", 5)):
            shares.append(rs.assign(group_by="cluster", group=g, n_participants=n,
                                    n_assessable=5, n_both=3, n_a_only=1, n_b_only=0,
                                    n_neither=1))
        shares = pd.concat(shares, ignore_index=True)
        small = (shares["group"] == "C4").to_numpy()
        for c in ("n_participants", "n_assessable", "n_both", "n_a_only", "n_b_only",
                  "n_neither", "share_reciprocal", "share_ci_low", "share_ci_high"):
            shares[c] = shares[c].astype("float64").mask(small)
        shares["suppressed"] = [f"n < {K}" if s else "" for s in small]
        con.execute("DELETE FROM res_reciprocity_shares")
        con.register("_s", shares)
        con.execute("INSERT INTO res_reciprocity_shares BY NAME SELECT * FROM _s")
        con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
            ("results_data_version", str(version)), ("results_generated_at", "2026-01-01T00:00Z"),
            ("results_min_cell", str(K))])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return wh


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    wh = _hand_made(tmp_path_factory.mktemp("funder") / "warehouse.duckdb")
    accounts.add_user(wh, "admin1", "admin", PW)
    accounts.add_user(wh, "funder1", "funder", PW)
    accounts.add_user(wh, "funder2", "funder", PW, programs=["Bridges"])
    return wh


@pytest.fixture
def app_(warehouse, monkeypatch):
    return ah.dashboard(monkeypatch, warehouse)


# ---- rounding in the callbacks --------------------------------------------------------------

def _texts(node, out: list[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "children" and isinstance(v, str):
                out.append(v)
            else:
                _texts(v, out)
    elif isinstance(node, list):
        for v in node:
            _texts(v, out)


def _nodes(node, kind: str | Callable[[dict], bool]):
    """The components of type `kind` (or that `kind` accepts) in a Dash answer, outermost
    first, not inside each other."""
    if isinstance(node, dict):
        if node.get("type") == kind if isinstance(kind, str) else kind(node):
            yield node
            return
        for v in node.values():
            yield from _nodes(v, kind)
    elif isinstance(node, list):
        for v in node:
            yield from _nodes(v, kind)


def _text(node) -> str:
    t: list[str] = []
    _texts(node.get("props", {}), t)
    return "".join(t)


def _table_counts(tree, columns: set[str]) -> list[int]:
    """The numbers shown in the `columns` of every grid in a Dash answer."""
    found: list[int] = []
    for grid in grids(tree):
        for row in grid:
            for h, v in row.items():
                if h in columns and re.fullmatch(r"[\d,]+", v):
                    found.append(int(v.replace(",", "")))
    return found


def _answer(app_, client, name: str) -> dict:
    cbs = ah.callbacks(app_)
    out = next(o for o, e in cbs.items() if _access._callback_name(e["callback"]) == name)
    f = Filters()
    r = ah.post(client, ah.body(out, cbs[out], {"filters": f.to_dict(), "query": f.to_query()}))
    assert r.status_code == 200, (name, r.status_code)
    return json.loads(r.get_data(as_text=True))["response"]


def _counts(app_, client) -> list[int]:
    """Counts an Overview and a Participation answer show: the headline's participants and
    active-this-month, the cluster bars and their hover texts, the participation tables."""
    vals: list[int] = []
    cards = _answer(app_, client, "pages.overview.cards")
    texts = [str(n["props"].get("children")) for n in _nodes(cards, lambda n: str(
        n.get("props", {}).get("id", "")).startswith(("overview-stat-participants",
                                                      "overview-stat-active")))]
    assert len(texts) == 2, texts
    vals += [int(t.replace(",", "")) for t in texts]
    fig = _answer(app_, client, "pages.participation.clusters")["participation-clusters"]["figure"]
    bars = fig["data"][0]
    vals += [int(x) for x in bars["x"]]
    vals += [int(re.search(r"(\d+)$", h).group(1)) for h in bars["hovertext"]]
    vals += _table_counts(_answer(app_, client, "pages.participation.tables"),
                          {"participants", "active (any event)", "events"})
    assert len(vals) > 10
    return vals


def _rounded_for_a_funder_exact_for_an_admin(app_, counts) -> list[int]:
    """`counts(app_, client)` as a funder sees them (all multiples of BASE) and then, from the
    same thread, as an admin (not all multiples): the cache holds exact answers, the role
    decides. Returns the admin's."""
    funder = app_.server.test_client()
    assert ah.login(funder, "funder1").status_code == 302
    rounded = counts(app_, funder)
    assert all(v % BASE == 0 for v in rounded), rounded
    admin = app_.server.test_client()
    assert ah.login(admin, "admin1").status_code == 302
    exact = counts(app_, admin)
    assert not all(v % BASE == 0 for v in exact), exact
    return exact


def test_a_funder_sees_counts_rounded_and_an_admin_exact(app_, warehouse) -> None:
    exact = _rounded_for_a_funder_exact_for_an_admin(app_, _counts)
    r = Reader(warehouse)
    cur = r.cursor()
    try:
        clusters = participation.breakdown(cur, Filters(), "cluster")
        assert sorted(int(x) for x in clusters.participants) == sorted(exact[2:6])
        assert rounding.ROUND_TO.get() is None  # nothing left behind by the requests
    finally:
        cur.close()
        r.close()
    # Means are not counts: the rounding leaves them alone.
    df = pd.DataFrame({"n": [12, 13], "mean": [3.14, 2.72], "participants": [101.0, None]})
    out = rounding.apply(df, 5)
    assert out.n.tolist() == [10, 15] and out["mean"].tolist() == [3.14, 2.72]
    assert out.participants.iloc[0] == 100 and pd.isna(out.participants.iloc[1])


# ---- secondary suppression in exports and downloads -----------------------------------------

def _prepost_rows(data: bytes) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    return [r for r in rows if r["group_by"] == "cluster"]


def test_export_and_download_blank_a_second_group_beside_the_total(warehouse) -> None:
    con = connect_read_only(warehouse)
    try:
        e = export.build_export(con, "prepost", "csv")
        xl = export.build_export(con, "prepost", "xlsx")
    finally:
        con.close()
    rows = {r["group"]: r for r in _prepost_rows(e.data)}
    assert rows["C4"]["suppressed"] == f"n < {K}" and rows["C4"]["n"] == ""
    # C3 (20) is the smallest other cluster: blanked so that C4 is not 100 − 40 − 35 − 20.
    assert rows["C3"]["suppressed"] == suppression.SECONDARY
    assert rows["C3"]["n"] == "" and rows["C3"]["mean_pre"] == ""
    assert rows["C1"]["n"] == "40" and rows["C2"]["n"] == "35" and rows["C1"]["suppressed"] == ""
    assert b"complementary" in xl.data or xl.rows == e.rows  # xlsx is zipped XML
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(xl.data))
    about = " ".join(str(c.value) for row in wb["about"].iter_rows() for c in row)
    assert "complementary" in about
    # The Data page's download is built by the same function.
    status = downloads.build(warehouse, downloads.Artefact("prepost", "csv"))
    assert status.path is not None
    got = {r["group"]: r for r in _prepost_rows(status.path.read_bytes())}
    assert got["C3"]["suppressed"] == suppression.SECONDARY and got["C3"]["n"] == ""
    # A researcher's unsuppressed export blanks nothing.
    con = connect_read_only(warehouse)
    try:
        free = export.build_export(con, "prepost", "csv", min_cell=0, unsuppressed=True)
    finally:
        con.close()
    assert suppression.SECONDARY.encode() not in free.data


@pytest.mark.parametrize(("name", "whole", "base"), [("funder2", False, BASE),
                                                     ("funder1", True, BASE),
                                                     ("admin1", True, None)])
def test_the_snapshot_button_passes_the_accounts_limits_to_the_job(app_, monkeypatch, name,
                                                                   whole, base) -> None:
    """The job process has no Flask request: scope and rounding go with it explicitly."""
    from pages import _ui
    from reports import jobs

    seen: list[tuple[Filters, dict]] = []
    monkeypatch.setattr(jobs, "start", lambda wh, f, **kw: seen.append((f, kw)) or "0" * 32)
    cbs = ah.callbacks(app_)
    out = next(o for o, e in cbs.items()
               if _access._callback_name(e["callback"]) == "pages._ui.snapshot")
    body = ah.body(out, cbs[out], {"filters": Filters().to_dict(), "query": ""})
    for item in body["inputs"]:
        if item["id"] == _ui.SNAP_BUTTON:
            item["value"] = 1
    body["changedPropIds"] = [f"{_ui.SNAP_BUTTON}.n_clicks"]
    c = app_.server.test_client()
    assert ah.login(c, name).status_code == 302
    assert ah.post(c, body).status_code == 200
    (f, kw), = seen
    assert kw == {"whole_program": whole, "round_to": base}
    assert f.program == (("Bridges",) if name == "funder2" else ())


# ---- the PDF snapshot job -------------------------------------------------------------------

def _pdf_text(pdf: Path) -> str:
    txt = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                         check=True).stdout
    return re.sub(r"\s+", " ", txt)


def _job_pdf(warehouse: Path, f: Filters, **kw) -> str:
    from reports import jobs

    job = jobs.start(warehouse, f, **kw)
    deadline = time.monotonic() + 300
    st = jobs.status(warehouse, job)
    while st.running and time.monotonic() < deadline:
        time.sleep(0.2)  # waits on the job's state; the assertions below decide
        st = jobs.status(warehouse, job)
    assert st.state == "done", st.error
    return _pdf_text(st.path)


def needs_pdf(fn):
    """A test that reads PDFs the job makes with Chromium, through pdftotext."""
    for mark in (pytest.mark.browser, pytest.mark.timeout(600),
                 pytest.mark.skipif(shutil.which("pdftotext") is None,
                                    reason="poppler-utils (pdftotext) is not installed")):
        fn = mark(fn)
    return fn


@pytest.fixture(scope="module")
def pdfs(warehouse) -> dict[str, str]:
    return {
        "funder": _job_pdf(warehouse, Filters(program=("Bridges",)), whole_program=False,
                           round_to=BASE),
        "admin": _job_pdf(warehouse, Filters()),
    }


RECIPROCITY_CAPTION = "Share of reciprocal partnerships (composite gain), whole program"


@needs_pdf
def test_a_scoped_funders_pdf_has_its_headline_rounded_and_the_note(pdfs, warehouse) -> None:
    text = pdfs["funder"]
    r = Reader(warehouse)
    cur = r.cursor()
    try:
        h = overview.headline(cur, Filters(program=("Bridges",)))
        whole = overview.headline(cur, Filters())
    finally:
        cur.close()
        r.close()
    assert not h["suppressed"] and h["participants"] != whole["participants"]
    shown = int(re.search(r"Participants \(comparison group excluded\) ([\d,]+)", text)
                .group(1).replace(",", ""))
    assert shown % BASE == 0
    assert shown == int(suppression.round_counts(pd.Series([h["participants"]]), BASE)[0])
    assert _access.SCOPE_NOTE in text
    assert RECIPROCITY_CAPTION not in text
    assert f"rounded to the nearest multiple of {BASE}" in text
    # On the cover as a fact of the report, not under "Ignored in the request".
    assert "Ignored in the request" not in text
    assert "Counts Every count of people" in " ".join(text.split())
    # The cluster table's participants, active participants and events (each row: those and
    # the exchanges, a count of the program's structure, not rounded) are multiples of the base.
    nums = _cluster_table_counts(text)
    assert nums and all(v % BASE == 0 for v in nums), nums


def _cluster_table_counts(text: str) -> list[int]:
    part = (text.split("Participation per cluster", 1)[1].split("exchanges events", 1)[1]
            .split("Exchange Impact", 1)[0])
    nums = [int(x.replace(",", "")) for x in re.findall(r"(?<![\d.])\d[\d,]*(?![\d.%])", part)]
    assert len(nums) % 4 == 0, nums
    return [v for i, v in enumerate(nums) if i % 4 != 2]


@needs_pdf
def test_an_admins_pdf_keeps_the_whole_program_and_blanks_a_complement(pdfs) -> None:
    text = pdfs["admin"]
    assert _access.SCOPE_NOTE not in text
    assert RECIPROCITY_CAPTION in text
    assert "Rounded counts" not in text
    # C4 (5) is under k beside the whole program's total: C3 (45) goes with it, marked.
    assert f"suppressed ({suppression.SECONDARY})" in text
    assert "Reciprocity by cluster (complementary, hidden too so that" in text
    nums = _cluster_table_counts(text)
    assert nums and not all(v % BASE == 0 for v in nums), nums  # exact for an admin


# ---- protect_blanked is protect, on a table whose small cells are already gone ----------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=8))
def test_protect_blanked_blanks_what_protect_blanks(counts) -> None:
    """The export and the PDF see tables after the primary rule: what they blank beside a
    total equals what `protect` blanks with the exact counts in hand (the oracle)."""
    t = pd.DataFrame({"group": [f"g{i}" for i in range(len(counts))], "n": counts,
                      "mean": [0.5 * c for c in counts]})
    want = suppression.protect(t, dims=["group"])
    got = suppression.protect_blanked(suppression.suppress(t))
    assert got["suppressed"].tolist() == want["suppressed"].tolist()
    assert got["n"].isna().tolist() == want["n"].isna().tolist()
    assert got["mean"].isna().tolist() == want["mean"].isna().tolist()


# ---- counts a page computes itself ----------------------------------------------------------

_PAGE_COUNTS = {  # callback -> how its own counts (len of a read answer) read in the answer
    "pages.partnerships.network": r"\(n = ([\d,]+)\)",
    "pages.partnerships.reciprocity": r"\(n = ([\d,]+)\)|above 0 \(([\d,]+)\)",
    "pages.participation.scheduling": r"\(n = ([\d,]+)\)|([\d,]+) of ([\d,]+) partnerships",
}


def _page_counts(app_, client) -> list[int]:
    found: list[int] = []
    for name, pattern in _PAGE_COUNTS.items():
        raw = json.dumps(_answer(app_, client, name), ensure_ascii=False)
        got = [int(g.replace(",", "")) for m in re.finditer(pattern, raw) for g in m.groups()
               if g]
        assert got, name  # the fixture gives every one of them something to count
        found += got
    return found


def test_counts_a_page_formats_itself_are_rounded_for_funders(app_) -> None:
    """The legends' n of the network, reciprocity and scheduling figures, the one-sided
    partnerships' count and the zero-overlap sentence are counted by the page (len of a read
    answer), outside the read cache's rounding: they go through the same rounding."""
    _rounded_for_a_funder_exact_for_an_admin(app_, _page_counts)
    assert rounding.count(12, 5) == 10 and rounding.count(13, 5) == 15
    assert rounding.count(7) == 7  # no caller's base: as it is


def test_every_count_of_people_in_the_scale_table_is_rounded() -> None:
    """res_scale's counts of people (exported for funders and drawn on the Overview) are
    rounded with its participants: exact parts of a rounded total give the total away."""
    from etl import schema

    people = [c.name for c in schema.RES_SCALE.columns
              if c.name.startswith("participants") or c.name in ("dosed", "sustained")]
    assert len(people) == 6 and all(rounding.is_count(c) for c in people), people
    df = pd.DataFrame({"participants": [23], "participants_new": [11],
                       "participants_returning": [12], "institutions": [7]})
    out = rounding.apply(df, BASE).iloc[0]
    assert out.participants_new % BASE == 0 and out.participants_returning % BASE == 0
    assert out.institutions == 7  # the program's structure, no one's personal data
