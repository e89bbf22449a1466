"""The dashboard under gunicorn keeps answering while a load replaces the warehouse."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from benchmarks.dash_driver import callback_bodies, post
from tests import program as P

ROOT = Path(__file__).resolve().parent.parent
FILTERS = {"filters": {}, "query": ""}
VALUES = {"equity-by": "gender", "participation-by": "cluster", "outcomes-forest-by": "modality",
          "outcomes-effect": "hedges_g"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path):
    wh = tmp_path / "data" / "warehouse.duckdb"
    res = P.run_etl("demo", "--participants", "1000", "--warehouse", str(wh), "--quiet",
                    timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    port = free_port()
    env = {**os.environ, "EXCHANGE_IMPACT_WAREHOUSE": str(wh), "EXCHANGE_IMPACT_KEY": "",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "app:server", "--workers", "2", "--bind",
         f"127.0.0.1:{port}", "--timeout", "60"],
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


def test_gunicorn_answers_every_request_during_a_load_and_then_shows_the_new_version(served,
                                                                                   tmp_path):
    base, wh = served
    bodies = callback_bodies(base, FILTERS, VALUES)
    assert len(bodies) >= 15  # every page's data callbacks
    assert version_shown(base) == "1"
    # A big extra log for the demo's own people: the load takes seconds, not milliseconds.
    extra = tmp_path / "more" / "events_more.csv"
    extra.parent.mkdir()
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT participant_id, exchange_id, strftime(TRY_CAST(occurred_at AS TIMESTAMP) + "
        f"to_minutes(k::BIGINT), '%Y-%m-%d %H:%M:%S') AS occurred_at, activity || ' (replay)' AS "
        f"activity, minutes FROM read_csv('{wh.parent / 'demo' / 'events.csv'}', all_varchar=true),"
        f" range(1, 21) r(k) WHERE TRY_CAST(occurred_at AS TIMESTAMP) IS NOT NULL) TO '{extra}'")
    con.close()
    load = subprocess.Popen(
        [sys.executable, "-m", "etl", "load", str(extra), "--warehouse", str(wh), "--quiet"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "EXCHANGE_IMPACT_KEY": P.TEST_KEY},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answered, failures, during = 0, [], 0
    while load.poll() is None:
        for body in bodies:
            code, data = post(base, body)
            answered += 1
            during += load.poll() is None
            if code != 200:
                failures.append((code, body["output"], data[:300]))
    out, err = load.communicate()
    assert load.returncode == 3, out + err  # the demo's planted bad events come along: rejected
    for body in bodies:  # and after the swap
        code, data = post(base, body)
        answered += 1
        if code != 200:
            failures.append((code, body["output"], data[:300]))
    assert during >= len(bodies), "the load finished before the dashboard was asked anything"
    assert failures == [], failures
    time.sleep(1.0)  # readers look for a new file at most every half second
    assert version_shown(base) == "2"
