"""The Data page's downloads for accounts limited to some programs or clusters, and for funders
(issue 14): each gets files computed from its scope only (funders' counts rounded), built into a
folder of its own that no other scope may fetch, and every download is in the audit log.

Through the app's real endpoints (Flask test client, logged in); the files are built by the
page's builder process (`python -m analytics downloads`), as in production.
"""

from __future__ import annotations

import csv
import io
import json

import duckdb
import pytest

from analytics import suppression
from etl import accounts
from tests import access_helpers as ah

USERS = {"admin1": ("admin", {}), "lead_c1": ("lead", {"clusters": ["C1"]}),
         "lead_c2": ("lead", {"clusters": ["C2"]}),
         "res_bridges": ("researcher", {"programs": ["Bridges"]}),
         "funder_b": ("funder", {"programs": ["Bridges"]})}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return ah.with_accounts(tmp_path_factory.mktemp("scoped") / "warehouse.duckdb", USERS)


@pytest.fixture
def app_(warehouse, monkeypatch):
    return ah.dashboard(monkeypatch, warehouse)


_client = ah.logged_in


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def _fetch(client, table: str) -> tuple[str, list[dict[str, str]]]:
    got, data, _ = ah.download(client, table)
    assert data is not None, json.dumps(got)[:500]
    return got["data-download-file"]["data"]["url"], _rows(data)


def _ids(wh, sql: str) -> set[str]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return {r[0] for r in con.execute(sql).fetchall()}
    finally:
        con.close()


def test_a_cluster_lead_downloads_its_cluster_only(app_, warehouse) -> None:
    url, rows = _fetch(_client(app_, "lead_c1"), "prepost")
    clusters = {r["group"] for r in rows if r["group_by"] == "cluster"}
    assert clusters == {"C1"}  # the whole program's file has C1..C4
    overall = {(r["instrument"], r["scale"]): r["n"] for r in rows if r["group_by"] == "overall"}
    c1 = {(r["instrument"], r["scale"]): r["n"] for r in rows if r["group"] == "C1"}
    assert overall and overall == c1  # every participant counted is C1's
    _url, whole = _fetch(_client(app_, "admin1"), "prepost")
    assert {r["group"] for r in whole if r["group_by"] == "cluster"} >= {"C1", "C2", "C3"}
    assert sum(int(r["n"] or 0) for r in whole if r["group_by"] == "overall") > \
        sum(int(n or 0) for n in overall.values())
    # the file's own folder, and its download in the audit log
    assert url != _url and "/_downloads/" in url
    assert any(r[1] == "lead_c1" and r[2] == "download" and url.split("/")[2] in r[3]
               for r in accounts.audit_rows(warehouse, 50))


def test_a_program_researchers_row_level_table_holds_its_participants(app_, warehouse) -> None:
    _url, rows = _fetch(_client(app_, "res_bridges"), "scale_scores")
    bridges = _ids(warehouse, "SELECT exchange_id FROM exchanges WHERE program = 'Bridges'")
    assert rows and {r["exchange_id"] for r in rows} <= bridges
    everyone = _ids(warehouse, "SELECT participant_id FROM participants")
    assert {r["participant"] for r in rows} < everyone


def test_a_funders_counts_are_multiples_of_the_rounding_base(app_) -> None:
    base = suppression.ROUND_TO
    funder = _client(app_, "funder_b")
    _url, rows = _fetch(funder, "attrition")
    counts = [int(float(r[c])) for r in rows for c in ("n_invited", "n_responded") if r[c]]
    assert counts and all(n % base == 0 for n in counts)
    _url, exact = _fetch(_client(app_, "admin1"), "attrition")
    assert any(int(float(r["n_responded"])) % base for r in exact if r["n_responded"])
    got, data, _ = ah.download(funder, "scale_scores")  # row-level: never for funders
    assert data is None and "row-level tables" in json.dumps(got)


def test_another_scope_cannot_fetch_a_file_by_name(app_) -> None:
    lead_c1, lead_c2 = _client(app_, "lead_c1"), _client(app_, "lead_c2")
    url_c1, _ = _fetch(lead_c1, "attrition")
    url_c2, _ = _fetch(lead_c2, "attrition")
    url_all, _ = _fetch(_client(app_, "admin1"), "attrition")
    url_funder, _ = _fetch(_client(app_, "funder_b"), "attrition")
    assert len({url_c1, url_c2, url_all, url_funder}) == 4
    assert lead_c2.get(url_c1).status_code == 403
    assert lead_c1.get(url_c2).status_code == 403
    for url in (url_all, url_funder):  # every program's file; a funder's other scope
        assert lead_c1.get(url).status_code == 403
    funder = _client(app_, "funder_b")
    for url in (url_all, url_c1):  # unrounded files
        assert funder.get(url).status_code == 403
    assert lead_c1.get(url_c1).status_code == 200


def test_a_build_keeps_its_other_audiences_folders(warehouse) -> None:
    """Building a file removes earlier builds' folders unchanged for an hour, never the
    folders of the same build for other scopes or thresholds (they would be rebuilt)."""
    import os

    from analytics.outputs import downloads, export
    from etl.warehouse import connect_read_only

    con = connect_read_only(warehouse)
    try:
        build_id, _version = downloads.build_key(con)
    finally:
        con.close()
    other = downloads.folder(warehouse, build_id, 10, export.Scope(clusters=("C3",)), 5)
    earlier = downloads.cache_root(warehouse) / "earlier-build-k10"
    for p in (other, earlier):
        downloads._private_dir(p)
        old = p.stat().st_mtime - 2 * downloads.KEEP_OLD_SECONDS
        os.utime(p, (old, old))
    status = downloads.build(warehouse, downloads.Artefact("reliability", "csv"))
    assert status.path is not None
    assert other.is_dir() and not earlier.exists()
