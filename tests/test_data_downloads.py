"""The Data page's downloads are the very files `python -m analytics export` writes."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests import program as P

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("dl") / "warehouse.duckdb"
    res = P.run_etl("demo", "--participants", "800", "--warehouse", str(wh), "--quiet",
                    timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return wh


def respond(client, button: str, table: str, fmt: str) -> dict:
    """The callback's whole response: the file (data-download-file) and the status line."""
    body = {
        "output": "..data-download-file.data...data-download-status.children..",
        "outputs": [{"id": "data-download-file", "property": "data"},
                    {"id": "data-download-status", "property": "children"}],
        "inputs": [{"id": "data-download-button", "property": "n_clicks",
                    "value": 1 if button == "data-download-button" else None},
                   {"id": "data-download-all", "property": "n_clicks",
                    "value": 1 if button == "data-download-all" else None}],
        "state": [{"id": "data-download-table", "property": "value", "value": table},
                  {"id": "data-download-format", "property": "value", "value": fmt}],
        "changedPropIds": [f"{button}.n_clicks"],
    }
    r = client.post("/_dash-update-component", data=json.dumps(body),
                    content_type="application/json")
    assert r.status_code == 200, r.data[:500]
    return json.loads(r.data)["response"]


def click(client, button: str, table: str, fmt: str) -> dict:
    return respond(client, button, table, fmt)["data-download-file"]["data"]


def test_a_file_that_cannot_be_made_says_why_beside_the_button(demo_warehouse: Path,
                                                               monkeypatch):
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(demo_warehouse))
    import app
    from analytics import export

    monkeypatch.setattr(export, "XLSX_MAX_ROWS", 100)  # the demo's scores are longer
    got = respond(app.server.test_client(), "data-download-button", "scale_scores", "xlsx")
    assert "data-download-file" not in got  # no file, and no server error
    status = json.dumps(got["data-download-status"]["children"])
    assert "No file" in status and "XLSX" in status


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_table_download_equals_the_cli_export(demo_warehouse: Path, tmp_path: Path,
                                                monkeypatch, fmt):
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(demo_warehouse))
    import app

    got = click(app.server.test_client(), "data-download-button", "prepost", fmt)
    data = base64.b64decode(got["content"])
    out = tmp_path / f"prepost.{fmt}"
    res = subprocess.run([sys.executable, "-m", "analytics", "export", "prepost", "--format", fmt,
                          "--out", str(out), "--warehouse", str(demo_warehouse)],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    if fmt == "csv":
        # Identical but for the export time stamped into each row.
        strip = lambda b: [ln.rsplit(b",", 1)[0] for ln in b.splitlines()]  # noqa: E731
        assert data.startswith(b"\xef\xbb\xbf")
        assert strip(data) == strip(out.read_bytes())
        assert got["filename"] == out.name or got["filename"].startswith("prepost")
    else:
        import pandas as pd

        a = pd.read_excel(io.BytesIO(data), sheet_name=0)
        b = pd.read_excel(out, sheet_name=0)
        pd.testing.assert_frame_equal(a.drop(columns=["generated_at"], errors="ignore"),
                                      b.drop(columns=["generated_at"], errors="ignore"))


def test_all_tables_download_is_a_zip_with_the_codebook(demo_warehouse: Path, monkeypatch):
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(demo_warehouse))
    import app

    got = click(app.server.test_client(), "data-download-all", "prepost", "parquet")
    z = zipfile.ZipFile(io.BytesIO(base64.b64decode(got["content"])))
    names = set(z.namelist())
    assert {"datapackage.json", "CODEBOOK.md"} <= names
    assert any(n.startswith("prepost") and n.endswith(".parquet") for n in names)
    package = json.loads(z.read("datapackage.json"))
    assert len(package["resources"]) >= 5
