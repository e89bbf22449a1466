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

from etl.phases import ENV as PHASES_ENV
from etl.phases import PHASES
from etl.warehouse import lock_path
from tests import program as P

ROOT = Path(__file__).resolve().parent.parent


def big_events(path: Path, n: int, minutes: int) -> Path:
    """n events of the test program's participants (known keys, so a reload replaces them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT (['STU-0001', 'STU-0002', 'STU-0003'])[(i % 3 + 1)::BIGINT] "
        "AS participant_id, "
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
        version = int(con.execute(
            "SELECT value FROM meta WHERE key='data_version'").fetchall()[0][0])
        events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        batches = dict(con.execute(
            "SELECT batch_id, rows_accepted FROM load_batches WHERE kind = 'events'").fetchall())
        per_batch = dict(con.execute(
            "SELECT batch_id, count(*) FROM events GROUP BY batch_id").fetchall())
        versions = {r[0] for r in con.execute(
            "SELECT DISTINCT data_version FROM load_batches").fetchall()}
    finally:
        con.close()
    for b, n in per_batch.items():
        assert b in batches, f"rows of batch {b} without its load_batches row"
        assert n <= batches[b]
    latest = max(per_batch)
    assert per_batch[latest] == batches[latest], "the newest batch is only partly there"
    assert max(versions) == version
    return {"version": version, "events": events}


def _env(derive: bool = True) -> dict:
    """A load's environment; `derive=False` for the loads that only set the stage or clean up
    after the one under test: they skip the derive step (`tests.program.NO_DERIVE`), which the
    load under test always runs."""
    return {**os.environ, "EXCHANGE_IMPACT_KEY": P.TEST_KEY, "PYTHONPATH": str(ROOT),
            **({} if derive else P.NO_DERIVE)}


def _load(f: Path, wh: Path, phases: str = "", derive: bool = True, **kw) -> subprocess.Popen:
    env = {**_env(derive), **({PHASES_ENV: phases} if phases else {})}
    return subprocess.Popen([sys.executable, "-m", "etl", "load", str(f), "--warehouse", str(wh),
                             "--quiet"], env=env, cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def _program_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-written program loaded once, without its derive step (exit 3: its planted bad
    rows), through the command line: the warehouse the module's tests start from. Setting the
    stage is not what they test; the loads they kill, hold or signal stay processes of their
    own, each on a private copy (`staged`)."""
    return P.loaded_program(tmp_path_factory.mktemp("program"), derive=False)


@pytest.fixture
def staged(_program_base: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(the program's files under tmp_path/in, a private copy of the loaded warehouse at
    tmp_path/wh/warehouse.duckdb)."""
    return P.write_program(tmp_path / "in"), P.warehouse_copy(_program_base, tmp_path)


@pytest.mark.parametrize("phase", PHASES)
def test_a_load_killed_at_each_phase_leaves_the_previous_or_the_new_warehouse(
        tmp_path: Path, staged: tuple[Path, Path], phase: str):
    """SIGKILL at each of the loader's own phases (`etl.phases`): before the swap the live file
    is the old one, whole; after it the new one, whole; the next load clears what was left."""
    _, wh = staged
    n = 20_000
    f = big_events(tmp_path / "ev" / "events_big.csv", n, minutes=1)
    before = snapshot(wh)
    proc = _load(f, wh, f"{phase}=kill", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.wait() == -signal.SIGKILL
    after = snapshot(wh)  # opens, and no batch is half there
    swapped = phase == "after_swap"
    assert after["version"] == before["version"] + swapped
    assert after["events"] == (n + 3 if swapped else 3)
    res = P.run_etl("load", str(f), "--warehouse", str(wh), env=P.NO_DERIVE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert snapshot(wh)["events"] == n + 3  # replaced by natural key, never duplicated
    assert not [p for p in wh.parent.iterdir() if ".next-" in p.name or ".open-" in p.name]


def test_a_load_killed_at_seeded_random_points_never_leaves_half_a_batch(tmp_path: Path):
    """Kills at points drawn from a seeded schedule, inside the phases as well as between them.
    Which of old or new each kill leaves depends on the machine's speed; what is asserted holds
    for both: the file opens, no batch is half there, no row is duplicated."""
    # its own staging load, not `staged`: the last load, of the same files at the same paths,
    # finds them already loaded (a copy of the module's warehouse holds other paths)
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    assert P.run_etl("load", str(src), "--warehouse", str(wh), env=P.NO_DERIVE).returncode == 3
    n = 150_000
    files = [big_events(tmp_path / f"ev{i}" / "events_big.csv", n, minutes=i % 60)
             for i in range(2)]
    assert P.run_etl("load", str(files[0]), "--warehouse", str(wh),
                     env=P.NO_DERIVE).returncode == 0
    state = snapshot(wh)
    rng = random.Random(20261123)
    # One kill in each fifth of the 2 s after reading (stratified, not 8 uniform draws that
    # could bunch up): the points still spread over the inserts, the derive step and the swap.
    points = 5
    for i in range(points):
        f = files[(i + 1) % 2]
        big_events(f, n, minutes=(i * 7 + 3) % 60)  # a batch already loaded would be a no-op
        hold = tmp_path / f"hold{i}"
        hold.mkdir()
        proc = _load(f, wh, f"read=hold:{hold}", stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        P.wait_for_phase(hold / "read.reached", proc)  # the schedule counts from a known point
        (hold / "read.go").touch()
        # where the kill falls; no assertion depends on it
        time.sleep(rng.uniform(2.0 * i / points, 2.0 * (i + 1) / points))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = snapshot(wh)
        assert after["version"] in (state["version"], state["version"] + 1)
        assert after["events"] == n + 3
        state = after
    res = P.run_etl("load", str(src), "--warehouse", str(wh), env=P.NO_DERIVE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [p for p in wh.parent.iterdir() if ".next-" in p.name]


def test_two_loads_started_at_once_both_land_one_after_the_other(
        tmp_path: Path, staged: tuple[Path, Path]):
    _, wh = staged
    a = big_events(tmp_path / "a" / "events_a.csv", 100_000, 1)
    b = tmp_path / "b" / "events_b.csv"
    b.parent.mkdir()
    con = duckdb.connect()
    con.execute(f"COPY (SELECT participant_id, exchange_id, occurred_at, 'upload' AS activity, "
                f"2 AS minutes FROM read_csv('{a}')) TO '{b}'")  # other keys: adds rows
    con.close()
    # A holds the lock at its last step before the swap; B starts, says it waits, and only
    # then is A let go: the order is set by the test, not by which process the OS runs first.
    hold = tmp_path / "hold"
    hold.mkdir()
    # (about the lock, not the derive step: neither load derives)
    first = _load(a, wh, f"before_swap=hold:{hold}", derive=False, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True)
    P.wait_for_phase(hold / "before_swap.reached", first)
    second = subprocess.Popen([sys.executable, "-m", "etl", "load", str(b), "--warehouse",
                               str(wh)], env=_env(derive=False), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    said = ""
    while "waiting for another load" not in said:
        line = second.stderr.readline()
        assert line, f"the second load ended without waiting: {said}"
        said += line
    (hold / "before_swap.go").touch()
    outs = [first.communicate(), second.communicate()]
    assert [first.returncode, second.returncode] == [0, 0], outs
    s = snapshot(wh)
    assert s["version"] == 3 and s["events"] == 200_003


def test_a_load_that_may_not_wait_refuses_with_a_clear_message(staged: tuple[Path, Path]):
    src, wh = staged
    before = wh.read_bytes()
    with FileLock(str(lock_path(wh))):
        res = P.run_etl("load", str(src / "events.csv"), "--warehouse", str(wh), "--wait", "0",
                        env=P.NO_DERIVE)
    assert res.returncode == 1
    assert "another load has held the warehouse" in res.stderr
    assert wh.read_bytes() == before


@pytest.mark.parametrize("phase", ["read", "insert", "derive", "before_swap"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_load_says_the_warehouse_is_unchanged(
        tmp_path: Path, staged: tuple[Path, Path], sig, phase):
    """The signal arrives while the loader is held at a phase before the swap: it stops, says
    the warehouse was left as it was, and it was."""
    _, wh = staged
    before = wh.read_bytes()
    f = big_events(tmp_path / "ev" / "events_big.csv", 20_000, 5)
    hold = tmp_path / "hold"
    hold.mkdir()
    proc = _load(f, wh, f"{phase}=hold:{hold}", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)
    P.wait_for_phase(hold / f"{phase}.reached", proc)
    proc.send_signal(sig)
    out, err = proc.communicate()
    assert proc.returncode != 0, out + err
    assert "left as it was" in err, err
    assert "Traceback" not in err, err
    assert wh.read_bytes() == before
    assert snapshot(wh)["events"] == 3
    assert not [p for p in wh.parent.iterdir() if ".next-" in p.name]


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


def test_a_load_out_of_memory_says_which_setting_and_changes_nothing(tmp_path: Path):
    """A load (here its derive step) that runs out of the memory it may use says so in one line
    naming the setting, exits 1 and leaves the warehouse as it was."""
    wh = P.loaded_program(tmp_path)
    before = snapshot(wh)
    ev = big_events(tmp_path / "big" / "events.csv", 20_000, 5)
    res = P.run_etl("load", str(ev), "--warehouse", str(wh),
                    env={"EXCHANGE_IMPACT_LOAD_MEMORY": "1MB"})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "EXCHANGE_IMPACT_LOAD_MEMORY=1MB); set EXCHANGE_IMPACT_LOAD_MEMORY higher" in (
        res.stderr), res.stderr
    assert snapshot(wh) == before


def test_a_refresh_out_of_memory_says_which_setting_and_changes_nothing(
        staged: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture):
    """`analytics refresh` writes with the load's memory limit: running out of it, in a result
    table (the derive step names the table and chains DuckDB's error:
    tests/test_materialise.py) or outside one (writing, rollups), is one line naming the
    setting, exit 1, and the warehouse as it was."""
    from analytics.derive import materialise
    from analytics.outputs import cli
    from etl.warehouse import LOAD_MEMORY_LIMIT

    _, wh = staged  # the program loaded without its derive step: refresh makes the results
    before = snapshot(wh)
    oom = duckdb.OutOfMemoryException(
        "Out of Memory Error: failed to allocate data of size 64.0 MiB")

    def in_a_table(*_a, **_k):
        raise materialise.ResultsError(
            "res_reciprocity: cannot be computed: OutOfMemoryException: Out of Memory Error: "
            "failed to allocate data of size 64.0 MiB") from oom

    def outside(*_a, **_k):
        raise oom

    hint = (f"the refresh ran out of the memory it may use (EXCHANGE_IMPACT_LOAD_MEMORY="
            f"{LOAD_MEMORY_LIMIT}); set EXCHANGE_IMPACT_LOAD_MEMORY higher (e.g. 4GB) and "
            "refresh again; the warehouse was left as it was before this command")
    for fails, starts in ((in_a_table, "error: res_reciprocity: cannot be computed: "
                                       "OutOfMemoryException: Out of Memory Error"),
                          (outside, f"error: {wh}: ")):
        monkeypatch.setattr(materialise, "refresh", fails)
        code = cli.main(["refresh", "--warehouse", str(wh)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1
        assert len(err) == 1 and err[0].startswith(starts) and err[0].endswith(hint), err
        assert snapshot(wh) == before
    # any other error is not dressed up as a memory problem
    monkeypatch.setattr(materialise, "refresh", lambda *_a, **_k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["refresh", "--warehouse", str(wh)])


def test_out_of_memory_anywhere_in_a_load_is_a_message_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Out of memory while staging a file (before the derive step) reaches the command line as
    one line naming the setting."""
    from etl import cli, load

    def staging_fails(*_a, **_k):
        raise duckdb.OutOfMemoryException(
            "Out of Memory Error: could not allocate block of size 256.0 KiB")

    monkeypatch.setattr(load, "load_paths", staging_fails)
    monkeypatch.setattr(cli.signal, "signal", lambda *_a: None)  # keep pytest's handlers
    code = cli.main(["load", str(tmp_path / "events.csv"), "--warehouse",
                     str(tmp_path / "w.duckdb"), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "the load ran out of the memory it may use (EXCHANGE_IMPACT_LOAD_MEMORY=" in err
    assert "the warehouse was left as it was" in err
