"""Issue 16: `python -m etl load … --lake DIR` appends to a lake of Parquet files (`etl.lake`).

The same files loaded into a lake and into a warehouse give the same rows (every contract
table, rejects, batches), and the lake's derive (`python -m analytics derive --lake`) gives the
warehouse's day facts. An append writes only the partitions its rows fall in, replaces a row by
a new row with its natural key as the warehouse does, and the incremental derive that follows
equals a full one. A load killed at any phase leaves the previous version; two loads at once
both land; the same file twice changes nothing; what a lake cannot do is refused in one line."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from analytics.derive import lake as derive_lake
from etl import lake as lakes
from etl import schema
from etl.errors import EtlError
from etl.load import load_paths
from etl.phases import ENV as PHASES_ENV
from etl.phases import LAKE_PHASES
from tests import program as P

CONTRACT = [*schema.LOAD_ORDER, schema.REJECTS.name]
DAY_FACTS = [schema.RES_PERSON_KEYS.name, schema.RES_PERSON_HOURS.name,
             schema.RES_PERSON_DAYS.name, schema.RES_ANSWER_DAYS.name,
             schema.RES_PERSON_ACTIVITIES.name]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)


def _days_of_events(folder: Path, name: str, days: range, *, minutes: int = 10) -> Path:
    """Events of the program's three people on 2026-03-<day> for each day: Berlin's naive
    noon, a Lima time with its offset, and Tokyo's 08:30 (the UTC day before)."""
    rows = []
    for d in days:
        rows += [
            {"participant_id": "STU-0001", "exchange_id": "E1",
             "occurred_at": f"2026-03-{d:02d} 12:00", "activity": "message", "minutes": minutes},
            {"participant_id": "STU-0002", "exchange_id": "E1",
             "occurred_at": f"2026-03-{d:02d}T21:30:00-05:00", "activity": "video call",
             "minutes": minutes + 1},
            {"participant_id": "STU-0003", "exchange_id": "E1",
             "occurred_at": f"2026-03-{d:02d} 08:30", "activity": "upload", "minutes": ""},
        ]
    return P.write_csv(folder / name, rows)


def _lake_rows(lake: Path, table: str) -> list[tuple]:
    files = lakes.snapshot(lake).paths(lake, table)
    if not files:
        return []
    cols = ", ".join(f'"{c}"' for c in schema.TABLES[table].column_names)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        return sorted(con.execute(f"SELECT {cols} FROM read_parquet({[str(f) for f in files]}, "
                                  "union_by_name = true, hive_partitioning = false)").fetchall(),
                      key=repr)
    finally:
        con.close()


def _warehouse_rows(wh: Path, table: str) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in schema.TABLES[table].column_names)
    return sorted(P.q(wh, f'SELECT {cols} FROM "{table}"'), key=repr)


def _derived(lake: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect()
    try:
        return {t: con.execute(f"SELECT * FROM read_parquet('{lake}/derived/{t}/**/*.parquet', "
                               "hive_partitioning = true)").df() for t in DAY_FACTS}
    finally:
        con.close()


def _fact_rows(frame: pd.DataFrame, table: str) -> list[tuple]:
    cols = schema.ROLLUP_TABLES[table].column_names
    out = frame[cols].copy()
    if "day" in cols:
        out["day"] = pd.to_datetime(out["day"]).dt.date
    return sorted((tuple(None if pd.isna(v) else v for v in r)
                   for r in out.itertuples(index=False)), key=repr)


def _warehouse_facts(wh: Path, table: str) -> list[tuple]:
    cols = schema.ROLLUP_TABLES[table].column_names
    return sorted(P.q(wh, f'SELECT {", ".join(cols)} FROM "{table}"'), key=repr)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program and twenty days of events, loaded into a lake and into a warehouse (once)."""
    folder = tmp_path_factory.mktemp("lake")
    src = P.write_program(folder / "in")
    _days_of_events(src, "events_march.csv", range(1, 21))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)
        lakes.load_into_lake([src], folder / "lake")
        load_paths([src], folder / "wh" / "warehouse.duckdb")
    return folder


@pytest.fixture
def both(built: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of `built` for one test: (lake, warehouse, its folder)."""
    for name in ("in", "lake", "wh"):
        shutil.copytree(built / name, tmp_path / name)
    return tmp_path / "lake", tmp_path / "wh" / "warehouse.duckdb", tmp_path


def test_a_lake_holds_the_warehouse_rows_and_derives_its_day_facts(both) -> None:
    lake, wh, _ = both
    assert lakes.snapshot(lake).version == 1
    assert lake.stat().st_mode & 0o077 == 0  # participants' rows: owner-only, as the warehouse
    assert not [p for p in lake.rglob("*.parquet") if p.stat().st_mode & 0o077]
    for table in CONTRACT:
        assert _lake_rows(lake, table) == _warehouse_rows(wh, table), table
    # the program's upload of 2026-03-05 08:30 in Tokyo is one of March's: loaded once
    assert len(_lake_rows(lake, schema.EVENTS.name)) == 3 + 60 - 1
    batches = "batch_id, kind, rows_in, rows_accepted, rows_rejected, status, blake3"
    con = duckdb.connect()
    lb = sorted(con.execute(f"SELECT {batches} FROM read_parquet("
                            f"{[str(f) for f in lakes.snapshot(lake).paths(lake, 'load_batches')]})"
                            ).fetchall())
    con.close()
    assert lb == sorted(P.q(wh, f"SELECT {batches} FROM load_batches"))
    # events partitioned by UTC day and program; Tokyo's 08:30 lies in the UTC day before
    days = {lakes.partition_of("events", f) for f in lakes.snapshot(lake).files["events"]}
    assert "2026-02-28" in days and "2026-03-20" in days and len(days) == 22
    assert all("/program=Stevens/" in f for f in lakes.snapshot(lake).files["events"])
    done = derive_lake.derive(lake)
    assert done.mode == "full"
    got = _derived(lake)
    for t in DAY_FACTS:
        assert _fact_rows(got[t], t) == _warehouse_facts(wh, t), t
        assert len(got[t]) > 0


def test_an_append_rewrites_only_its_days_and_replaces_by_natural_key(both) -> None:
    lake, wh, tmp = both
    derive_lake.derive(lake)
    before = lakes.snapshot(lake)
    stamp = {f: (lake / f).stat().st_mtime_ns for f in before.files["events"]}
    # a new day, a late event for an old day, and a corrected event (its key: same person,
    # exchange, instant and activity; other minutes)
    late = P.write_csv(tmp / "in2" / "events_late.csv", [
        {"participant_id": "STU-0001", "exchange_id": "E1", "occurred_at": "2026-03-25 12:00",
         "activity": "message", "minutes": "7"},
        {"participant_id": "STU-0002", "exchange_id": "E1", "occurred_at": "2026-03-05 13:00",
         "activity": "upload", "minutes": "2"},
        {"participant_id": "STU-0001", "exchange_id": "E1", "occurred_at": "2026-03-10 12:00",
         "activity": "message", "minutes": "99"},
    ])
    [rep] = lakes.load_into_lake([late], lake)
    [wrep] = load_paths([late], wh)
    assert (rep.rows_added, rep.rows_changed, rep.rows_unchanged) == (2, 1, 0)
    assert (rep.rows_added, rep.rows_changed) == (wrep.rows_added, wrep.rows_changed)
    after = lakes.snapshot(lake)
    assert after.version == 2
    touched = {"2026-03-25", "2026-03-05", "2026-03-10"}
    for f in before.files["events"]:  # every other day's file is the same file, untouched
        if lakes.partition_of("events", f) in touched:
            assert f not in after.files["events"]
        else:
            assert f in after.files["events"] and (lake / f).stat().st_mtime_ns == stamp[f]
    for t in (schema.EVENTS.name, schema.PARTICIPANTS.name, schema.REJECTS.name):
        assert _lake_rows(lake, t) == _warehouse_rows(wh, t), t
    inc = derive_lake.derive(lake)
    assert inc.mode == "incremental"
    assert set(inc.days) == touched | {"2026-03-24", "2026-03-04", "2026-03-09"}
    incremental = _derived(lake)
    derive_lake.derive(lake, full=True)
    full = _derived(lake)
    for t in DAY_FACTS:
        assert _fact_rows(incremental[t], t) == _fact_rows(full[t], t) \
            == _warehouse_facts(wh, t), t
    # 2026-03-10 in UTC: Berlin's noon (corrected to 99 minutes: the new value, once), Lima's
    # evening of the 9th (11) and Tokyo's morning of the 11th (no minutes)
    tenth = sorted(r[4] for r in _fact_rows(full[schema.RES_PERSON_DAYS.name],
                                            schema.RES_PERSON_DAYS.name)
                   if r[2] == pd.Timestamp("2026-03-10").date())
    assert tenth == [0, 11, 99]


def test_a_survey_wave_rewrites_only_its_exchanges_bucket(both, monkeypatch) -> None:
    lake, wh, tmp = both
    monkeypatch.setenv(*next(iter(P.NO_DERIVE.items())))  # rows only: no result tables
    before = lakes.snapshot(lake)
    wave = P.write_csv(tmp / "in3" / "responses_followup.csv", [
        {"participant_id": "STU-0002", "exchange_id": "E1", "wave": "post",
         "submitted_at": "2026-06-21 10:00", "icc_1": "4", "icc_2": "4", "icc_3": "2",
         "icc_4": "5"}])
    lakes.load_into_lake([wave], lake)
    load_paths([wave], wh)
    after = lakes.snapshot(lake)
    assert after.files["events"] == before.files["events"]
    assert after.files["participants"] == before.files["participants"]
    assert len(after.files["responses"]) == len(before.files["responses"]) == 1
    assert after.files["responses"] != before.files["responses"]
    assert _lake_rows(lake, "responses") == _warehouse_rows(wh, "responses")


def test_the_same_file_twice_changes_nothing(both, built) -> None:
    lake, _, _ = both
    files = sorted(p for p in lake.rglob("*.parquet"))
    reps = lakes.load_into_lake([built / "in"], lake)  # the same files, from the same path
    assert {r.status for r in reps} == {"unchanged"}
    assert lakes.snapshot(lake).version == 1
    assert sorted(p for p in lake.rglob("*.parquet")) == files


def test_what_a_lake_cannot_do_is_refused_in_one_line(both, monkeypatch) -> None:
    lake, _, tmp = both
    extra = _days_of_events(tmp / "in4", "events_more.csv", range(21, 23))
    with pytest.raises(EtlError, match=r"events_more\.csv: --replace is not available for "
                                       "events loaded into a lake"):
        lakes.load_into_lake([extra], lake, replace=True)
    assert lakes.snapshot(lake).version == 1
    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", "another-key-" + "x" * 30)
    with pytest.raises(EtlError, match="built with another pseudonymisation key"):
        lakes.load_into_lake([extra], lake)
    (tmp / "file").write_text("x")
    with pytest.raises(EtlError, match="not a folder"):
        lakes.load_into_lake([extra], tmp / "file")


def _cli(src: Path, lake: Path, phases: str = "", **kw) -> subprocess.Popen:
    env = {**P.os.environ, "EXCHANGE_IMPACT_KEY": P.TEST_KEY, "PYTHONPATH": str(P.ROOT),
           **({PHASES_ENV: phases} if phases else {})}
    return subprocess.Popen([sys.executable, "-m", "etl", "load", str(src), "--lake", str(lake),
                             "--quiet"], env=env, cwd=P.ROOT, **kw)


# The staging file's last phase before it is complete, its swap, and the lake's own phases.
@pytest.mark.parametrize("phase", ["insert", "after_swap", *LAKE_PHASES])
def test_a_lake_load_killed_at_each_phase_leaves_the_previous_or_the_new_version(
        both, phase: str) -> None:
    lake, _, tmp = both
    extra = _days_of_events(tmp / "in5", "events_more.csv", range(21, 24))
    rows = _lake_rows(lake, "events")
    proc = _cli(extra, lake, f"{phase}=kill", stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    assert proc.wait(timeout=120) == -signal.SIGKILL
    committed = phase == "lake_commit"
    assert lakes.snapshot(lake).version == 1 + committed
    assert len(_lake_rows(lake, "events")) == len(rows) + 9 * committed
    derive_lake.derive(lake, full=True)  # a reader finds the lake whole
    again = _cli(extra, lake, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, out + err
    assert len(_lake_rows(lake, "events")) == len(rows) + 9
    listed = {f for fs in lakes.snapshot(lake).files.values() for f in fs}
    on_disk = {str(p.relative_to(lake)) for p in lake.rglob("*.parquet")
               if "derived" not in p.parts}
    older = {f for v in range(1, lakes.snapshot(lake).version)
             for fs in lakes.snapshot(lake, v).files.values() for f in fs}
    assert on_disk - listed <= older  # only files an earlier version lists; no orphan
    assert not list(lake.glob(".load-*"))


def test_two_loads_at_once_both_land(both) -> None:
    lake, _, tmp = both
    a = _days_of_events(tmp / "a", "events_a.csv", range(21, 23))
    b = _days_of_events(tmp / "b", "events_b.csv", range(22, 25), minutes=30)
    hold = tmp / "hold"
    hold.mkdir()
    first = _cli(a, lake, f"lake_files=hold:{hold}")
    P.wait_for_phase(hold / "lake_files.reached", first)
    err_b = tmp / "b.err"
    with open(err_b, "w") as f:
        second = _cli(b, lake, stdout=subprocess.DEVNULL, stderr=f)
        while "waiting for another load" not in err_b.read_text():
            assert second.poll() is None
            time.sleep(0.02)  # polls for the waiting load's message
        (hold / "lake_files.go").touch()
        assert first.wait(timeout=120) == 0
        assert second.wait(timeout=120) == 0
    assert lakes.snapshot(lake).version == 3
    got = _lake_rows(lake, "events")
    assert len(got) == 62 + 6 + 9 - 3  # day 22's three events: b's replaced a's
    day22 = [r for r in got if str(r[2]).startswith("2026-03-22 11")]
    assert [r[4] for r in day22] == [30.0]  # the second load's minutes, by natural key
