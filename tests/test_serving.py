"""The dashboard under gunicorn keeps answering while a load replaces the warehouse."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from benchmarks.dash_driver import callback_bodies, post
from etl.phases import ENV as PHASES_ENV
from tests import program as P
from tests.analytics_fixture import demo_copy

ROOT = Path(__file__).resolve().parent.parent
FILTERS = {"filters": {}, "query": ""}
VALUES = {"equity-by": "gender", "participation-by": "cluster", "outcomes-forest-by": "modality",
          "outcomes-effect": "hedges_g"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(wh: Path, *args: str) -> tuple[str, subprocess.Popen]:
    """`gunicorn app:server` with 2 workers on a free local port, serving `wh`; returns the base
    URL once it answers, and the process (its output is gunicorn's log)."""
    port = free_port()
    env = {**os.environ, "EXCHANGE_IMPACT_WAREHOUSE": str(wh), "EXCHANGE_IMPACT_KEY": "",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "app:server", "--workers", "2", "--bind",
         f"127.0.0.1:{port}", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/_dash-dependencies", timeout=2)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("gunicorn did not start:\n" + proc.communicate()[0])
    return base, proc


def demo(tmp_path: Path, participants: int = 1000) -> Path:
    """This test's own copy of `python -m etl demo --participants N` (built once per run)."""
    return demo_copy(tmp_path / "data", participants)


@pytest.fixture
def served(tmp_path: Path):
    wh = demo(tmp_path)
    base, proc = start_gunicorn(wh, "--timeout", "60")
    yield base, wh
    proc.terminate()
    out = proc.communicate(timeout=30)[0]
    assert "Traceback" not in out, out


def version_shown(base: str) -> str:
    body = [b for b in callback_bodies(base, FILTERS) if "data-version" in b["output"]][0]
    code, data = post(base, body)
    assert code == 200
    text = data.decode()
    return text[text.index("Data version ") + 13:].split('"')[0]


def _answers(base: str, bodies: list[dict]) -> list:
    """One request for every page callback: those not answered 200, with the end of their
    answer (the error)."""
    failed = []
    for body in bodies:
        code, data = post(base, body)
        if code != 200:
            failed.append((code, body["output"], data[-300:]))
    return failed


def test_gunicorn_answers_every_request_during_a_load_and_then_shows_the_new_version(served,
                                                                                   tmp_path):
    """The load is held at each of its phases in turn (`etl.phases`: a file read, its rows in
    the next file, the derive step done on it, the next file complete beside the live one), and
    at each every page callback is asked and answered from the old version; after the swap the
    pages show the new one. Where each request falls is set by the test, not by timing."""
    base, wh = served
    bodies = callback_bodies(base, FILTERS, VALUES)
    assert len(bodies) >= 15  # every page's data callbacks
    assert version_shown(base) == "1"
    # The demo's own people again, an hour later, as another activity: rows the load adds.
    extra = tmp_path / "more" / "events_more.csv"
    extra.parent.mkdir()
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT participant_id, exchange_id, strftime(TRY_CAST(occurred_at AS TIMESTAMP) + "
        f"INTERVAL 1 HOUR, '%Y-%m-%d %H:%M:%S') AS occurred_at, activity || ' (replay)' AS "
        f"activity, minutes FROM read_csv('{wh.parent / 'demo' / 'events.csv'}', all_varchar=true)"
        f" WHERE TRY_CAST(occurred_at AS TIMESTAMP) IS NOT NULL) TO '{extra}'")
    con.close()
    hold = tmp_path / "hold"
    hold.mkdir()
    held = ("read", "insert", "derive", "before_swap")
    load = subprocess.Popen(
        [sys.executable, "-m", "etl", "load", str(extra), "--warehouse", str(wh), "--quiet"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "EXCHANGE_IMPACT_KEY": P.TEST_KEY,
                       PHASES_ENV: ",".join(f"{p}=hold:{hold}" for p in held)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for phase in held:
            P.wait_for_phase(hold / f"{phase}.reached", load)
            assert _answers(base, bodies) == [], phase
            assert version_shown(base) == "1", phase
            (hold / f"{phase}.go").touch()
        out, err = load.communicate(timeout=300)
    finally:
        if load.poll() is None:
            load.kill()
    assert load.returncode == 3, out + err  # the demo's planted bad events come along: rejected
    assert _answers(base, bodies) == []  # and after the swap
    assert version_shown(base) == "2"  # readers check the live file on every request


# ---- downloads under gunicorn (issue 8, §5) -----------------------------------------------------

def _download_body(button: str, pending: dict | None = None) -> dict:
    from tests.access_helpers import download_body

    return download_body(button, "scale_scores", "xlsx", pending)


def _fetch(base: str, button: str) -> tuple[tuple[str, bytes], list[int]]:
    """Click, poll as the page does until the file is ready, then GET it from its URL: the
    file's name and bytes, and every status code on the way."""
    codes = []
    code, data = post(base, _download_body(button))
    codes.append(code)
    got = json.loads(data)["response"] if code == 200 else {}
    while code == 200 and "data-download-file" not in got:
        pending = got["data-download-pending"]["data"]
        if not pending:  # neither a file nor still building
            return ("", b""), codes
        time.sleep(0.2)
        code, data = post(base, _download_body("data-download-poll", pending))
        codes.append(code)
        got = json.loads(data)["response"] if code == 200 else {}
    if code != 200:
        return ("", b""), codes
    ready = got["data-download-file"]["data"]
    with urllib.request.urlopen(base + ready["url"], timeout=60) as r:
        codes.append(r.status)
        return (ready["filename"], r.read()), codes


def _pages(base: str, bodies: list[dict], stop: threading.Event, codes: list) -> None:
    while True:  # at least one round, then until told
        for body in bodies:
            code, data = post(base, body)
            codes.append((body["output"], code) if code == 200 else
                         (body["output"], code, data[-300:]))
        if stop.wait(0.2):  # a pause between rounds; at least one round is always asked
            return


def _failed(page_codes: list) -> list:
    """The page requests not answered 200, each with the end of its answer (the error)."""
    return [x for x in page_codes if x[1] != 200]


def test_downloads_are_built_off_the_request_and_pages_answer_meanwhile(tmp_path):
    """The README's `gunicorn app:server` (2 workers, default 30 s timeout): the XLSX of the
    row-level scores and the zip of every table asked for at once, with page requests alongside.
    While the test holds the XLSX's build lock (a build that cannot finish), the click is
    answered without the file and every page request is answered: no request waits for a build.
    Then both files arrive whole, and no worker timed out."""
    import openpyxl

    from analytics.outputs import downloads
    from etl.warehouse import connect_read_only

    wh = demo(tmp_path)
    con = connect_read_only(wh)
    build_id, version = downloads.build_key(con)
    con.close()
    base, proc = start_gunicorn(wh)  # gunicorn's defaults: 30 s timeout
    try:
        bodies = callback_bodies(base, FILTERS, VALUES)
        where = downloads.folder(wh, build_id, downloads.suppression.MIN_CELL)
        downloads._private_dir(where)
        xlsx = where / f"scale_scores_v{version}.xlsx"
        held = downloads._try_lock(xlsx)  # the test is "the builder" for now
        assert held is not None
        # 1. Both downloads and the pages at once, while the XLSX cannot be built.
        page_codes: list = []
        stop = threading.Event()
        pages = threading.Thread(target=_pages, args=(base, bodies, stop, page_codes))
        pages.start()
        with ThreadPoolExecutor(2) as pool:
            first_click = pool.submit(post, base, _download_body("data-download-button"))
            zipped = pool.submit(_fetch, base, "data-download-all")
            code, data = first_click.result()
            assert code == 200, data[:300]
            got = json.loads(data)["response"]
            assert "data-download-file" not in got  # answered, and not by building it
            assert "Preparing" in json.dumps(got["data-download-status"])
            bundle, zip_codes = zipped.result()
        stop.set()
        pages.join()
        assert page_codes and not _failed(page_codes), _failed(page_codes)[:5]
        assert set(zip_codes) == {200}
        # 2. The build may run now; pages keep answering while it does.
        os.close(held)
        page_codes.clear()
        stop.clear()
        pages = threading.Thread(target=_pages, args=(base, bodies, stop, page_codes))
        pages.start()
        table, codes = _fetch(base, "data-download-button")
        stop.set()
        pages.join()
        assert set(codes) == {200} and not _failed(page_codes), _failed(page_codes)[:5]
    finally:
        proc.terminate()
        log = proc.communicate(timeout=60)[0]
    assert table[0] == f"scale_scores_v{version}.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(table[1]), read_only=True)
    assert book.sheetnames == ["scale_scores", "about"]
    assert book["scale_scores"].max_row > 1000
    assert bundle[0] == f"exchange_impact_v{version}_xlsx.zip"
    z = zipfile.ZipFile(io.BytesIO(bundle[1]))
    names = set(z.namelist())
    assert {"datapackage.json", "CODEBOOK.md"} <= names
    assert {f"{t}_v{version}.xlsx" for t in downloads.export.TABLES} <= names
    assert z.testzip() is None
    assert "WORKER TIMEOUT" not in log, log
    assert "Traceback" not in log, log


# ---- the threaded dev server sees a load made in its own process (issue 9, bugs) ----------------

def test_the_threaded_dev_server_sees_a_new_version_while_a_request_holds_the_old_one(
        tmp_path, monkeypatch):
    """DuckDB hands a process the database it already has open for a path until every
    connection to it is closed. The dev server (threads) and a load in the same process: a
    cursor still open on the old file (a request in flight) must not pin the old version for
    every later request, and must itself go on reading the file it started on."""
    from werkzeug.serving import make_server

    from etl.load import load_paths
    from pages import _ui

    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    load_paths([src], wh)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(wh))
    import app as app_module

    server = make_server("127.0.0.1", 0, app_module.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert version_shown(base) == "1"
        in_flight = _ui.reader().cursor()  # a request that has not finished yet
        more = P.write_csv(tmp_path / "more" / "events.csv", [dict(P.EVENTS[0], minutes="50")])
        load_paths([more], wh)  # the swap, in this very process
        assert version_shown(base) == "2"  # the next request, no waiting
        assert _ui.reader().data_version() == 2
        old = in_flight.execute("SELECT value FROM meta WHERE key = 'data_version'").fetchall()
        assert old == [("1",)]  # the request in flight finished on the file it started on
        in_flight.close()
        assert version_shown(base) == "2"
    finally:
        server.shutdown()
        thread.join()


def test_each_reading_process_spills_into_a_private_folder(tmp_path, monkeypatch):
    """Readers set their own temp_directory: gunicorn workers must not share spill files, and
    nothing is spilled beside the warehouse where another process writes."""
    import os

    from etl.load import load_paths
    from etl.warehouse import Reader, reader_temp_root

    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)
    wh = tmp_path / "wh" / "warehouse.duckdb"
    load_paths([P.write_program(tmp_path / "in")], wh)
    a, b = Reader(wh), Reader(wh)
    spill_a = a.cursor().execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    spill_b = b.cursor().execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    root = reader_temp_root()
    assert Path(spill_a).parent == root and Path(spill_b).parent == root and spill_a != spill_b
    assert str(os.getpid()) in root.name and oct(root.stat().st_mode)[-3:] == "700"
    assert not str(spill_a).startswith(str(wh.parent))
    a.close()
    b.close()


def test_a_cursor_bound_to_its_file_answers_the_cache_key_without_asking_and_a_swap_forgets_it(
        tmp_path, monkeypatch):
    """The read cache's key is read once per open file (`Reader.cursor_and_facts`,
    `cache.bound_version`): the cached answer of the old file is never served after a swap,
    and a cursor outside the block still asks its own file."""
    from analytics.read import cache
    from etl.load import load_paths
    from etl.warehouse import Reader

    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)
    wh = tmp_path / "wh" / "warehouse.duckdb"
    load_paths([P.write_program(tmp_path / "in")], wh)
    monkeypatch.setattr(cache, "CACHE", cache.QueryCache(2**20, 2**20))

    @cache.cached
    def version(cur):
        return cur.execute("SELECT value FROM meta WHERE key = 'data_version'").fetchall()[0][0]

    r = Reader(wh)
    cur, facts = r.cursor_and_facts()
    with cache.bound_version(cur, facts):
        assert version(cur) == "1"
        key = facts["version_key"]
        assert cache.version_key(cur) == key
    cur.close()
    cur2, facts2 = r.cursor_and_facts()
    assert facts2 is facts  # same file, same connection: the key is not read again
    cur2.close()
    load_paths([P.write_csv(tmp_path / "more" / "events.csv",
                            [dict(P.EVENTS[0], minutes="50")])], wh)
    cur3, facts3 = r.cursor_and_facts()
    assert facts3 is not facts and facts3 == {}
    with cache.bound_version(cur3, facts3):
        assert version(cur3) == "2"
        assert facts3["version_key"] != key
    # A forged binding for another cursor is not used: that cursor asks its file.
    other = r.cursor()
    with cache.bound_version(cur3, {"version_key": "forged"}):
        assert cache.version_key(other) == facts3["version_key"]
    other.close()
    cur3.close()
    r.close()
