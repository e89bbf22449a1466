"""The Data page's downloads are the very files `python -m analytics export` writes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests import access_helpers as ah
from tests import program as P

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("dl") / "warehouse.duckdb"
    res = P.run_etl("demo", "--participants", "800", "--warehouse", str(wh), "--quiet",
                    timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return wh


def respond(client, button: str, table: object, fmt: object, pending: object = None) -> dict:
    """The callback's whole response: the file (data-download-file), the status line, the
    pending request and whether the page keeps polling."""
    r = ah.post(client, ah.download_body(button, table, fmt, pending))
    assert r.status_code == 200, r.data[:500]
    return json.loads(r.data)["response"]


def click(client, button: str, table: str, fmt: str) -> tuple[str, bytes]:
    """Click, poll until the file is ready, fetch it from its URL as the browser does
    (`access_helpers.download`): the file's name and bytes, served as an attachment."""
    got, data, r = ah.download(client, table, fmt, button=button)
    assert data is not None, json.dumps(got)[:500]  # neither a file nor still building
    ready = got["data-download-file"]["data"]
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert ready["filename"] in r.headers["Content-Disposition"]
    return ready["filename"], data


def test_a_file_that_cannot_be_made_says_why_beside_the_button(demo_warehouse: Path,
                                                               monkeypatch):
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(demo_warehouse))
    import app
    from analytics.outputs import downloads, export

    monkeypatch.setattr(export, "XLSX_MAX_ROWS", 100)  # the demo's scores are longer
    artefact = downloads.Artefact("scale_scores", "xlsx")
    with pytest.raises(export.ExportError):  # the builder, run here so that the patch applies
        downloads.build(demo_warehouse, artefact)
    pending = {"table": "scale_scores", "fmt": "xlsx", "polls": 1}
    got = respond(app.server.test_client(), "data-download-poll", None, None, pending)
    assert "data-download-file" not in got  # no file, and no server error
    status = json.dumps(got["data-download-status"]["children"])
    assert "No file" in status and "XLSX" in status
    assert got["data-download-poll"]["disabled"] is True


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_table_download_equals_the_cli_export(demo_warehouse: Path, tmp_path: Path,
                                                monkeypatch, fmt):
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(demo_warehouse))
    import app

    filename, data = click(app.server.test_client(), "data-download-button", "prepost", fmt)
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
        assert filename.startswith("prepost_v") and filename.endswith(".csv")
    else:
        import pandas as pd

        a = pd.read_excel(io.BytesIO(data), sheet_name=0)
        b = pd.read_excel(out, sheet_name=0)
        pd.testing.assert_frame_equal(a.drop(columns=["generated_at"], errors="ignore"),
                                      b.drop(columns=["generated_at"], errors="ignore"))


def test_all_tables_download_is_a_zip_with_the_codebook(demo_warehouse: Path, monkeypatch):
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(demo_warehouse))
    import app

    filename, data = click(app.server.test_client(), "data-download-all", "prepost", "parquet")
    assert filename.endswith("_parquet.zip")
    z = zipfile.ZipFile(io.BytesIO(data))
    names = set(z.namelist())
    assert {"datapackage.json", "CODEBOOK.md"} <= names
    assert any(n.startswith("prepost") and n.endswith(".parquet") for n in names)
    package = json.loads(z.read("datapackage.json"))
    assert len(package["resources"]) >= 5


def test_requests_for_one_file_start_one_build_and_the_file_is_private(demo_warehouse: Path,
                                                                       monkeypatch):
    """Four requests at once (as from several workers) start one builder; the file appears
    whole (temp name + rename), owner-only, in the build's folder beside the warehouse."""
    import threading

    from analytics.outputs import downloads
    from etl.warehouse import connect_read_only

    spawned = []
    real_spawn = downloads._spawn
    monkeypatch.setattr(downloads, "_spawn",
                        lambda *a: (spawned.append(a[1]), real_spawn(*a))[1])
    artefact = downloads.Artefact("reliability", "parquet")
    con = connect_read_only(demo_warehouse)
    build_id, version = downloads.build_key(con)
    start = threading.Barrier(4)
    answers: list[downloads.Status] = []

    def ask() -> None:
        cur = con.cursor()
        start.wait()
        answers.append(downloads.request(cur, demo_warehouse, artefact, retry=True))
        cur.close()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 4 and spawned == [artefact]
    status = answers[0]
    while status.path is None:  # wait for the builder (state, not time)
        assert status.error is None, status.error
        time.sleep(0.2)
        status = downloads.request(con, demo_warehouse, artefact)
    con.close()
    assert spawned == [artefact]
    where = downloads.folder(demo_warehouse, build_id, downloads.suppression.MIN_CELL)
    assert status.path == where / f"reliability_v{version}.parquet"
    assert where.parent == demo_warehouse.with_name(demo_warehouse.name + ".downloads")
    assert oct(where.stat().st_mode & 0o777) == "0o700"
    assert oct(where.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(status.path.stat().st_mode & 0o777) == "0o600"
    assert not list(where.glob("*.tmp"))
    import pyarrow.parquet as pq

    assert pq.read_table(status.path).num_rows > 0


@pytest.mark.browser
def test_in_the_browser_a_click_says_preparing_and_the_file_then_downloads(
        dash_duo, demo_warehouse: Path, monkeypatch):
    """The real page in headless Chromium: the zip of every table as XLSX (not built yet) is
    announced as being prepared, and arrives by itself in the download folder."""
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(demo_warehouse))
    import app

    dash_duo.start_server(app.app)
    dash_duo.wait_for_page(dash_duo.server_url + "/data")
    dash_duo.wait_for_element("#data-download-all")
    js_click = "arguments[0].click()"  # below the fold: no scrolling needed
    dash_duo.driver.execute_script(
        js_click, dash_duo.find_element("#data-download-format input[value='xlsx']"))
    dash_duo.driver.execute_script(js_click, dash_duo.find_element("#data-download-all"))
    dash_duo.wait_for_contains_text("#data-download-status", "Preparing", timeout=30)
    dash_duo.wait_for_no_elements("#data-download-preparing", timeout=240)
    got = Path(dash_duo.download_path) / "exchange_impact_v1_xlsx.zip"
    while not got.exists():  # Chromium renames its .crdownload file when complete
        time.sleep(0.2)
    names = set(zipfile.ZipFile(got).namelist())
    assert {"datapackage.json", "CODEBOOK.md", "scale_scores_v1.xlsx"} <= names
    assert dash_duo.get_logs() == []


def test_a_failed_write_leaves_no_file_and_old_builds_are_removed(demo_warehouse: Path):
    """The file is the whole file or none (a write that fails leaves neither it nor its temp
    file); a build removes earlier builds' folders unchanged for an hour, and keeps newer
    ones (a worker may still be reading them)."""
    import os

    from analytics.outputs import downloads
    from etl.warehouse import connect_read_only

    root = downloads.cache_root(demo_warehouse)
    downloads._private_dir(root / "scratch")
    target = root / "scratch" / "x.csv"
    with pytest.raises(TypeError):
        downloads._write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert list((root / "scratch").iterdir()) == []
    old, recent = root / "0ld-k10", root / "recent-k10"
    for p in (old, recent):
        downloads._private_dir(p)
        (p / "prepost_v0.csv").write_bytes(b"x")
    st = old.stat()
    os.utime(old, (st.st_atime - 2 * downloads.KEEP_OLD_SECONDS,
                   st.st_mtime - 2 * downloads.KEEP_OLD_SECONDS))
    status = downloads.build(demo_warehouse, downloads.Artefact("attrition", "csv"))
    assert status.path is not None and status.path.exists()
    assert not old.exists() and recent.exists()
    con = connect_read_only(demo_warehouse)
    k = downloads.suppression.MIN_CELL
    assert status.path.parent.name == f"{downloads.build_key(con)[0]}-k{k}"
    con.close()


def test_the_file_route_serves_only_built_download_files(demo_warehouse: Path, monkeypatch):
    """/_downloads/<key>/<name> names a built file or answers 404: no lock or error file, no
    path outside the cache, no file of a build that is not there."""
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(demo_warehouse))
    import app
    from analytics.outputs import downloads

    client = app.server.test_client()
    status = downloads.build(demo_warehouse, downloads.Artefact("prepost", "csv"))
    key = status.path.parent.name
    assert client.get(f"/_downloads/{key}/{status.path.name}").status_code == 200
    for url in (f"/_downloads/{key}/.{status.path.name}.lock",
                f"/_downloads/{key}/prepost_v999.csv",
                f"/_downloads/{key}/..%2F..%2Fwarehouse.duckdb",
                f"/_downloads/..%2F{key}/{status.path.name}",
                f"/_downloads/nokey-k10/{status.path.name}"):
        r = client.get(url)
        # 404 from the route, or (a path it does not match) the app's own page: never a file
        assert r.status_code == 404 or r.mimetype == "text/html", (url, r.status_code)
        assert "Content-Disposition" not in r.headers, url


def test_the_downloads_command_readies_a_file_once(demo_warehouse: Path):
    """`python -m analytics downloads` (what the page starts; also run by hand after a load)
    builds the file into the cache, leaves it as it is when asked again, and refuses a
    command line that names no file with one line and exit 1."""
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "analytics", "downloads", *args,
                               "--warehouse", str(demo_warehouse)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    first = run("longitudinal", "--format", "csv")
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip().removeprefix("ready: "))
    assert path.is_file() and path.name.startswith("longitudinal_v")
    stamp = path.stat().st_mtime_ns
    again = run("longitudinal", "--format", "csv")
    assert again.returncode == 0 and again.stdout == first.stdout
    assert path.stat().st_mtime_ns == stamp  # not rebuilt
    bad = run("--format", "csv")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
