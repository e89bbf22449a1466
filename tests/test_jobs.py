"""The "PDF snapshot" button's jobs (`reports.jobs`) and the button itself in the dashboard.

Jobs are real `python -m reports snapshot` processes on the demo warehouse. Nothing here waits
on time to decide an assertion: a job is held at its first step by the test gate
(`reports.jobs.ENV_TEST_GATE`, a file the test creates when it wants the job to go on), and the
tests poll the job's state with a deadline that only bounds a hang.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from analytics.read import loads, overview
from analytics.read.filters import Filters
from etl.warehouse import Reader
from reports import engine, jobs
from tests.analytics_fixture import demo_warehouse

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

DEADLINE_S = 240.0  # bounds a hang only; a snapshot of the demo takes seconds
PAGE_S = 120.0  # bounds a hang of a page update only (the 2 cores are shared with other runs)


@pytest.fixture(scope="module")
def warehouse() -> Path:
    wh = demo_warehouse()
    old = os.environ.get("EXCHANGE_IMPACT_WAREHOUSE")
    os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = str(wh)
    yield wh
    if old is None:
        os.environ.pop("EXCHANGE_IMPACT_WAREHOUSE", None)
    else:
        os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = old


@pytest.fixture(scope="module")
def first_cluster(warehouse: Path) -> tuple[str, str]:
    r = Reader(warehouse)
    cur = r.cursor()
    try:
        return loads.filter_options(cur).options["cluster"][0]
    finally:
        cur.close()
        r.close()


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A gate file (not there yet): jobs started now wait at their first step until it is."""
    path = tmp_path / "go"
    monkeypatch.setenv(jobs.ENV_TEST_GATE, str(path))
    return path


def wait_until(what: Callable[[], jobs.JobStatus], done: Callable[[jobs.JobStatus], bool]
               ) -> jobs.JobStatus:
    """Poll `what()` until `done(status)`; fail (with the last status) after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    st = what()
    while not done(st):
        if time.monotonic() > deadline:
            raise AssertionError(f"no change after {DEADLINE_S:g} s: {st}")
        time.sleep(0.1)
        st = what()
    return st


def pdftext(pdf: Path) -> str:
    return " ".join(subprocess.run(["pdftotext", "-l", "1", str(pdf), "-"], capture_output=True,
                                   text=True, check=True).stdout.split())


def test_a_job_returns_at_once_shows_its_stage_and_ends_with_the_pdf(warehouse: Path,
                                                                     gate: Path) -> None:
    t0 = time.monotonic()
    job = jobs.start(warehouse, Filters())
    where = jobs.jobs_root(warehouse) / job
    # Started, not run: the job is held at the gate, so whatever start() took, it did not wait
    # for a report.
    st = jobs.status(warehouse, job)
    assert st.running and st.path is None and st.error is None
    st = wait_until(lambda: jobs.status(warehouse, job), lambda s: s.stage != "starting")
    assert st.running and st.stage == "reading the warehouse" and st.fraction == 0.0
    assert [p.suffix for p in where.glob("*.pdf")] == []
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    assert stat.S_IMODE(jobs.jobs_root(warehouse).stat().st_mode) == 0o700
    gate.touch()
    stages: set[str] = set()

    def look() -> jobs.JobStatus:
        s = jobs.status(warehouse, job)
        stages.add(s.stage)
        return s

    st = wait_until(look, lambda s: not s.running)
    assert st.state == "done" and st.error is None, st
    assert st.path is not None and st.path.parent == where
    assert st.path.read_bytes()[:5] == b"%PDF-"
    assert "No filter" in pdftext(st.path)
    assert jobs.result_file(warehouse, job, st.path.name) == st.path
    assert "done" in stages
    assert time.monotonic() - t0 < DEADLINE_S


def test_two_jobs_at_once_each_get_their_own_report(warehouse: Path,
                                                    first_cluster: tuple[str, str]) -> None:
    cluster_id, cluster_name = first_cluster
    a = jobs.start(warehouse, Filters())
    b = jobs.start(warehouse, Filters(cluster=(cluster_id,)))
    assert a != b
    sa = wait_until(lambda: jobs.status(warehouse, a), lambda s: not s.running)
    sb = wait_until(lambda: jobs.status(warehouse, b), lambda s: not s.running)
    assert sa.state == sb.state == "done", (sa, sb)
    assert sa.path != sb.path and sa.path.parent.name == a and sb.path.parent.name == b
    assert cluster_id in sb.path.name and cluster_id not in sa.path.name
    cover_a, cover_b = pdftext(sa.path), pdftext(sb.path)
    assert "No filter" in cover_a and f"Cluster: {cluster_name}" not in cover_a
    assert f"Cluster: {cluster_name}" in cover_b and "No filter" not in cover_b


def test_a_job_without_chromium_fails_with_the_install_line(warehouse: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    monkeypatch.setenv(engine.ENV_CHROMIUM, str(tmp_path / "no-chromium"))
    job = jobs.start(warehouse, Filters())
    st = wait_until(lambda: jobs.status(warehouse, job), lambda s: not s.running)
    assert st.state == "failed" and st.path is None
    assert st.error == engine.INSTALL_HINT
    assert list((jobs.jobs_root(warehouse) / job).glob("*.pdf")) == []


def test_a_job_whose_process_dies_is_reported_as_failed(warehouse: Path, gate: Path) -> None:
    job = jobs.start(warehouse, Filters())
    wait_until(lambda: jobs.status(warehouse, job), lambda s: s.stage != "starting")
    proc = next(p for p in jobs._RUNNING if job in " ".join(map(str, p.args)))
    os.killpg(proc.pid, signal.SIGKILL)  # its own session: the job and its Chromium, if any
    proc.wait(timeout=30)
    st = jobs.status(warehouse, job)
    assert st.state == "failed" and "ended without finishing" in (st.error or "")


def test_unknown_jobs_and_names_are_refused(warehouse: Path, tmp_path: Path) -> None:
    for job in ("../../etc", "0" * 31, "G" * 32, "0" * 32):
        st = jobs.status(warehouse, job)
        assert st.state == "failed" and "no longer on the server" in (st.error or "")
    real = tmp_path / "x.pdf"
    real.write_bytes(b"%PDF-")
    assert jobs.result_file(warehouse, "0" * 32, "x.pdf") is None
    assert jobs.result_file(warehouse, "0" * 32, "../../x.pdf") is None
    assert jobs.result_file(warehouse, "0" * 32, "state.json") is None


def test_old_jobs_are_removed_running_and_recent_ones_kept(tmp_path: Path) -> None:
    import fcntl

    root = tmp_path / "wh.duckdb.snapshots"
    old, recent, held = (root / (c * 32) for c in "abc")
    for p in (old, recent, held):
        p.mkdir(parents=True)
        jobs.write_state(p / jobs.STATE, state="done", out="r.pdf")
        (p / ".lock").touch()
    day_ago = time.time() - jobs.KEEP_SECONDS - 60
    for p in (old, held):
        for f in (*p.iterdir(), p):
            os.utime(f, (day_ago, day_ago))
    other = root / "not-a-job"
    other.mkdir()
    fd = os.open(held / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert jobs.remove_old(root) == [old]
    finally:
        os.close(fd)
    assert not old.exists() and recent.exists() and held.exists() and other.exists()


def test_the_state_file_is_valid_json_at_every_write(tmp_path: Path) -> None:
    path = tmp_path / jobs.STATE
    for i in range(50):
        jobs.write_state(path, state="running", fraction=i / 50, stage=f"step {i}")
        assert json.loads(path.read_text())["stage"] == f"step {i}"
    assert [p.name for p in tmp_path.iterdir()] == [jobs.STATE]  # no temporary file left


# ---- the button's callback and the download route (Flask test client) ------------------------

def _body(button: str, store: dict | None, job: object) -> dict:
    """The button callback's request, as the filter bar posts it for a click or a poll."""
    prop = "n_clicks" if button == "snapshot-button" else "n_intervals"
    return {
        "output": "..snapshot-job.data...snapshot-poll.disabled...snapshot-status.children"
                  "...snapshot-file.data...snapshot-button.disabled..",
        "outputs": [{"id": i, "property": p} for i, p in (
            ("snapshot-job", "data"), ("snapshot-poll", "disabled"),
            ("snapshot-status", "children"), ("snapshot-file", "data"),
            ("snapshot-button", "disabled"))],
        "inputs": [{"id": "snapshot-button", "property": "n_clicks",
                    "value": 1 if button == "snapshot-button" else None},
                   {"id": "snapshot-poll", "property": "n_intervals",
                    "value": 1 if button == "snapshot-poll" else None}],
        "state": [{"id": "filters-store", "property": "data", "value": store},
                  {"id": "snapshot-job", "property": "data", "value": job}],
        "changedPropIds": [f"{button}.{prop}"],
    }


def _post(client, button: str, store: dict | None, job: object) -> dict:
    r = client.post("/_dash-update-component", json=_body(button, store, job))
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    return r.get_json()["response"]


def test_the_button_starts_a_job_polls_it_and_the_route_serves_the_pdf(
        warehouse: Path, first_cluster: tuple[str, str]) -> None:
    import app

    client = app.server.test_client()
    store = {"filters": Filters(cluster=(first_cluster[0],)).to_dict()}
    got = _post(client, "snapshot-button", store, None)
    job = got["snapshot-job"]["data"]
    assert got["snapshot-poll"]["disabled"] is False and got["snapshot-button"]["disabled"]
    assert set(job) == {"job", "polls"} and job["polls"] == 0
    deadline = time.monotonic() + DEADLINE_S
    while "snapshot-file" not in got or got["snapshot-file"]["data"] is None:
        assert time.monotonic() < deadline, got
        assert "snapshot-error" not in json.dumps(got), got
        time.sleep(0.2)
        job = got["snapshot-job"]["data"] or job
        got = _post(client, "snapshot-poll", store, job)
    ready = got["snapshot-file"]["data"]
    assert got["snapshot-poll"]["disabled"] is True and got["snapshot-job"]["data"] is None
    assert ready["url"] == f"/_downloads/{job['job']}/{ready['filename']}"
    r = client.get(ready["url"])
    assert r.status_code == 200 and r.data[:5] == b"%PDF-"
    assert "attachment" in r.headers["Content-Disposition"]
    assert f"Cluster: {first_cluster[1]}" in pdftext(
        jobs.result_file(warehouse, job["job"], ready["filename"]))
    # Another job's id or a file that is not its report: nothing.
    assert client.get(f"/_downloads/{'0' * 32}/{ready['filename']}").status_code == 404
    assert client.get(f"/_downloads/{job['job']}/state.json").status_code == 404
    # A forged job store is a 400, not a 500.
    bad = client.post("/_dash-update-component", json=_body("snapshot-poll", store, {"job": 5}))
    assert bad.status_code == 400


# ---- in the browser ---------------------------------------------------------------------------

def button_disabled(dash_duo) -> bool:
    # Read in the page (no element handle kept across a re-render: it could go stale).
    return dash_duo.driver.execute_script(
        "return document.querySelector('#snapshot-button').disabled")


def test_in_the_browser_the_button_shows_progress_the_app_answers_and_the_pdf_arrives(
        dash_duo, warehouse: Path, gate: Path) -> None:
    """Click on the Overview; while the job is held at its first step, a filter changes the
    headline and another page opens (the app answers while the job runs, and the progress
    stays on screen); then the job goes on and the PDF lands in the download folder."""
    import app

    r = Reader(warehouse)
    cur = r.cursor()
    try:
        everyone, teachers = (overview.headline(cur, f) for f in (Filters(),
                                                                  Filters(role=("teacher",))))
    finally:
        cur.close()
        r.close()
    assert not teachers["suppressed"] and teachers["participants"] < everyone["participants"]
    stat = "#overview-stat-participants"
    dash_duo.start_server(app.app)
    dash_duo.wait_for_text_to_equal(stat, f"{everyone['participants']:,}", timeout=PAGE_S)
    dash_duo.find_element("#snapshot-button").click()
    dash_duo.wait_for_contains_text("#snapshot-stage", "reading the warehouse", timeout=PAGE_S)
    assert button_disabled(dash_duo)
    # The job is certainly still running (held at the gate): the app answers meanwhile.
    dash_duo.find_element("a[href^='/participation']").click()
    dash_duo.wait_for_element("#participation-heatmap .main-svg", timeout=PAGE_S)
    assert dash_duo.find_elements("#snapshot-running"), "the progress went away"
    dash_duo.find_element("a.nav-link[href='/']").click()
    dash_duo.wait_for_text_to_equal(stat, f"{everyone['participants']:,}", timeout=PAGE_S)
    dash_duo.select_dcc_dropdown("#filter-role", value="teacher")
    dash_duo.wait_for_text_to_equal(stat, f"{teachers['participants']:,}", timeout=PAGE_S)
    assert dash_duo.find_elements("#snapshot-running"), "the progress went away"
    # A reload while the job runs: the tab's session remembers the job and polls it again.
    dash_duo.driver.refresh()
    dash_duo.wait_for_contains_text("#snapshot-stage", "reading the warehouse", timeout=PAGE_S)
    assert not list(Path(dash_duo.download_path).glob("*.pdf"))
    gate.touch()
    dash_duo.wait_for_element("#snapshot-done", timeout=DEADLINE_S)
    deadline = time.monotonic() + PAGE_S
    got: list[Path] = []
    while not got:  # Chromium renames its .crdownload file when complete
        assert time.monotonic() < deadline, "the PDF did not arrive in the download folder"
        got = list(Path(dash_duo.download_path).glob("exchange_impact_snapshot_*.pdf"))
        time.sleep(0.2)
    assert got[0].read_bytes()[:5] == b"%PDF-"
    # The report is of the filters on screen when the button was pressed: none.
    assert "No filter" in pdftext(got[0])
    assert not button_disabled(dash_duo)
    assert dash_duo.get_logs() == []


def test_the_button_shows_a_failed_jobs_one_line(warehouse: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """No Chromium on the server: the filter bar says how to install it, and no file comes."""
    import app

    monkeypatch.setenv(engine.ENV_CHROMIUM, str(tmp_path / "no-chromium"))
    client = app.server.test_client()
    got = _post(client, "snapshot-button", {"filters": Filters().to_dict()}, None)
    job = got["snapshot-job"]["data"]
    deadline = time.monotonic() + DEADLINE_S
    while got["snapshot-job"]["data"] is not None:
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
        job = got["snapshot-job"]["data"]
        got = _post(client, "snapshot-poll", {"filters": Filters().to_dict()}, job)
    status = json.dumps(got["snapshot-status"]["children"])
    assert "snapshot-error" in status and engine.INSTALL_HINT in status
    assert "snapshot-file" not in got or got["snapshot-file"]["data"] is None
    assert got["snapshot-poll"]["disabled"] is True and got["snapshot-button"]["disabled"] is False
