"""Reliability shown, not claimed: loads killed at random points, two loads at once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from filelock import FileLock

from etl.warehouse import lock_path
from tests import program as P

ROOT = Path(__file__).resolve().parent.parent


def big_events(path: Path, n: int, minutes: int) -> Path:
    """n events of the test program's participants (known keys, so a reload replaces them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT (['STU-0001', 'STU-0002', 'STU-0003'])[(i % 3 + 1)::BIGINT] AS participant_id, "
        "'E1' AS exchange_id, strftime(TIMESTAMP '2026-02-01 08:00' + to_seconds(i::BIGINT), "
        f"'%Y-%m-%d %H:%M:%S') AS occurred_at, 'message' AS activity, {minutes} AS minutes "
        f"FROM range({n}) t(i)) TO '{path}'"
    )
    con.close()
    return path


def snapshot(wh: Path) -> dict:
    """Open the warehouse as a reader would and check that no batch is half there."""
    con = duckdb.connect(str(wh), read_only=True)
    try:
        version = int(con.execute("SELECT value FROM meta WHERE key='data_version'").fetchall()[0][0])
        events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        batches = dict(con.execute(
            "SELECT batch_id, rows_accepted FROM load_batches WHERE kind = 'events'").fetchall())
        per_batch = dict(con.execute(
            "SELECT batch_id, count(*) FROM events GROUP BY batch_id").fetchall())
        versions = {r[0] for r in con.execute("SELECT DISTINCT data_version FROM load_batches").fetchall()}
    finally:
        con.close()
    for b, n in per_batch.items():
        assert b in batches, f"rows of batch {b} without its load_batches row"
        assert n <= batches[b]
    latest = max(per_batch)
    assert per_batch[latest] == batches[latest], "the newest batch is only partly there"
    assert max(versions) == version
    return {"version": version, "events": events}


def _env() -> dict:
    return {**os.environ, "EXCHANGE_IMPACT_KEY": P.TEST_KEY, "PYTHONPATH": str(ROOT)}


def test_a_load_killed_at_any_point_leaves_the_previous_or_the_new_warehouse(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    assert P.run_etl("load", str(src), "--warehouse", str(wh)).returncode == 3
    n = 150_000
    files = [big_events(tmp_path / f"ev{i}" / "events_big.csv", n, minutes=i % 60)
             for i in range(2)]
    # How long a whole load takes here, so kills fall at every stage of it.
    t0 = time.perf_counter()
    assert P.run_etl("load", str(files[0]), "--warehouse", str(wh)).returncode == 0
    full = time.perf_counter() - t0
    state = snapshot(wh)
    rng = random.Random(20261123)
    outcomes = {"old": 0, "new": 0}
    for i in range(24):
        f = files[(i + 1) % 2]
        # Same content as a batch already loaded would be a no-op; vary it per round.
        big_events(f, n, minutes=(i * 7 + 3) % 60)
        proc = subprocess.Popen([sys.executable, "-m", "etl", "load", str(f), "--warehouse",
                                 str(wh), "--quiet"], env=_env(), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, full * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = snapshot(wh)  # opens, and no batch is half there
        assert after["version"] in (state["version"], state["version"] + 1)
        assert after["events"] == n + 3  # replaced by natural key, never duplicated
        outcomes["new" if after["version"] > state["version"] else "old"] += 1
        state = after
    assert outcomes["old"] >= 3, outcomes  # some kills did land mid-load
    leftovers = [p.name for p in wh.parent.iterdir() if ".next-" in p.name]
    # A killed writer may leave its half-built file; the next writer removes it.
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [p for p in wh.parent.iterdir() if ".next-" in p.name], leftovers


def test_two_loads_started_at_once_both_land_one_after_the_other(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    assert P.run_etl("load", str(src), "--warehouse", str(wh)).returncode == 3
    a = big_events(tmp_path / "a" / "events_a.csv", 100_000, 1)
    b = tmp_path / "b" / "events_b.csv"
    b.parent.mkdir()
    con = duckdb.connect()
    con.execute(f"COPY (SELECT participant_id, exchange_id, occurred_at, 'upload' AS activity, "
                f"2 AS minutes FROM read_csv('{a}')) TO '{b}'")  # other keys: adds rows
    con.close()
    procs = [subprocess.Popen([sys.executable, "-m", "etl", "load", str(f), "--warehouse", str(wh)],
                              env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for f in (a, b)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    s = snapshot(wh)
    assert s["version"] == 3 and s["events"] == 200_003
    assert any("waiting for another load" in err for _, err in outs), outs


def test_a_load_that_may_not_wait_refuses_with_a_clear_message(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    assert P.run_etl("load", str(src), "--warehouse", str(wh)).returncode == 3
    before = wh.read_bytes()
    with FileLock(str(lock_path(wh))):
        res = P.run_etl("load", str(src / "events.csv"), "--warehouse", str(wh), "--wait", "0")
    assert res.returncode == 1
    assert "another load has held the warehouse" in res.stderr
    assert wh.read_bytes() == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_load_says_the_warehouse_is_unchanged(tmp_path: Path, sig):
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    assert P.run_etl("load", str(src), "--warehouse", str(wh)).returncode == 3
    f = big_events(tmp_path / "ev" / "events_big.csv", 600_000, 5)
    proc = subprocess.Popen([sys.executable, "-m", "etl", "load", str(f), "--warehouse", str(wh)],
                            env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    s = snapshot(wh)
    if s["version"] == 1:  # interrupted before the swap
        assert proc.returncode != 0
        assert "left as it was" in err
    assert s["events"] in (3, 600_003)


def test_a_signal_that_lands_in_an_import_still_says_the_warehouse_is_unchanged(
        monkeypatch, capsys):
    """CI once sent SIGTERM while `etl load` was importing its modules: Python reported the
    KeyboardInterrupt as "ImportError: initialization failed" and the user got a traceback
    instead of the line saying their warehouse is untouched."""
    from etl import cli

    def load_interrupted_in_an_import(args, console, err):
        cli._stopping = True
        raise ImportError("initialization failed")

    monkeypatch.setattr(cli, "cmd_load", load_interrupted_in_an_import)
    monkeypatch.setattr(cli, "_stopping", False)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # leave pytest's handlers alone
    assert cli.main(["load", "nothing.csv"]) == 130
    assert "left as it was" in capsys.readouterr().err
    monkeypatch.setattr(cli, "_stopping", False)
    monkeypatch.setattr(cli, "cmd_load", lambda *a: (_ for _ in ()).throw(ImportError("real")))
    with pytest.raises(ImportError):  # not stopping: a real import error is not hidden
        cli.main(["load", "nothing.csv"])
