"""Issue 16: `python -m analytics serve --lake --warehouse` builds the serving warehouse from a
derived lake (`analytics.derive.serve`).

The same files loaded into a lake (derived on DuckDB) and into a warehouse (the embedded load):
the served file equals the warehouse table by table (every contract table but the events' rows,
every res_* table, the meta the dashboard reads) and the read layer answers the same, before
and after an appended day. A lake not derived since its last load is refused in one line; a
serve killed at a phase leaves the previous file; what would read the events of a served file
(a scoped export, a load) refuses and names the lake."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from analytics.derive import lake as derive_lake
from analytics.derive import materialise, rollups, serve
from analytics.outputs import export
from analytics.read import cache, overview, participation
from analytics.read.filters import Filters
from etl import lake as lakes
from etl import schema
from etl.errors import EtlError
from etl.load import load_paths
from etl.phases import ENV as PHASES_ENV
from etl.warehouse import build_next
from tests import program as P
from tests.test_lake_load import CONTRACT, _days_of_events, _warehouse_rows

# Meta of one build, not of its data: when, how fast, and how (what an incremental load kept;
# a serve computes everything from the facts).
BUILD_META = {"built_at", "build_id", "results_generated_at", "results_seconds",
              "results_timings", "rollups_timings", "results_kept", "results_kept_rows",
              "rollups_incremental"}
BATCH_COLUMNS = "batch_id, kind, rows_in, rows_accepted, rows_rejected, status, blake3"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)


def _more_people(folder: Path) -> Path:
    """Sixty more people (so that the headline is above k) in the program's institutions,
    a second program's exchange E3, and seeded events of theirs on 2026-03-01 … 20."""
    rng = random.Random(16)
    people = [{"participant_id": f"STU-1{i:03d}", "institution_id": f"I{1 + i % 3}",
               "role": ("student", "teacher")[i % 4 == 0], "gender": "fmx"[i % 3],
               "birth_year": str(2005 + i % 5), "comparison": "", "name": "", "email": ""}
              for i in range(60)]
    P.write_csv(folder / "participants_more.csv", people)
    P.write_csv(folder / "exchanges_more.csv", [
        {"exchange_id": "E3", "name": "Harbours", "program": "Bridges", "cluster_id": "C2",
         "modality": "virtual", "setting": "curricular", "purpose": "joint project",
         "language": "en", "start_date": "2026-02-01", "end_date": "2026-07-31",
         "budget": "9000", "currency": "EUR"}])
    events = [{"participant_id": p["participant_id"], "exchange_id": ("E1", "E3")[i % 2],
               "occurred_at": f"2026-03-{rng.randint(1, 20):02d} {rng.randint(0, 23):02d}:"
                              f"{rng.randint(0, 59):02d}",
               "activity": rng.choice(["message", "video call", "upload"]),
               "minutes": str(rng.randint(1, 60))}
              for i, p in enumerate(people) for _ in range(rng.randint(1, 6))]
    return P.write_csv(folder / "events_more.csv", events)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program, more people and twenty days of events in a lake (derived, served) and in
    a warehouse (embedded load), once for the module."""
    folder = tmp_path_factory.mktemp("serve")
    src = P.write_program(folder / "in")
    _days_of_events(src, "events_march.csv", range(1, 21))
    _more_people(src)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)
        lakes.load_into_lake([src], folder / "lake")
        load_paths([src], folder / "wh" / "warehouse.duckdb")
        derive_lake.derive(folder / "lake")
        serve.serve(folder / "lake", folder / "sv" / "warehouse.duckdb")
    return folder


@pytest.fixture
def both(built: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of `built` for one test: (lake, warehouse, served warehouse)."""
    for name in ("in", "lake", "wh", "sv"):
        shutil.copytree(built / name, tmp_path / name)
    return tmp_path / "lake", tmp_path / "wh" / "warehouse.duckdb", \
        tmp_path / "sv" / "warehouse.duckdb"


def _key_of(row: tuple) -> tuple:
    return tuple("" if v is None else f"{v:.6g}" if isinstance(v, float) else repr(v)
                 for v in row)


def _same_rows(a: list[tuple], b: list[tuple]) -> bool:
    """Rows as multisets; floats equal within 1e-9 relative (NaN equals NaN)."""
    if len(a) != len(b):
        return False
    for x, y in zip(sorted(a, key=_key_of), sorted(b, key=_key_of), strict=True):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float) and isinstance(v, float):
                if not (math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12)
                        or (math.isnan(u) and math.isnan(v))):
                    return False
            elif u != v:
                return False
    return True


def _tables(wh: Path) -> set[str]:
    return {r[0] for r in P.q(wh, "SELECT table_name FROM duckdb_tables()")}


def _res_rows(wh: Path, table: str) -> list[tuple]:
    cols = [r[0] for r in P.q(wh, "SELECT column_name FROM duckdb_columns() WHERE table_name = ?",
                              [table]) if r[0] != "generated_at"]
    return P.q(wh, f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{table}"')


def _meta(wh: Path) -> dict[str, str]:
    return {k: v for k, v in P.q(wh, "SELECT key, value FROM meta") if k not in BUILD_META}


def _answers(wh: Path) -> list:
    """What the dashboard's read layer shows for a few filters (uncached)."""
    con = duckdb.connect(str(wh), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    out = []
    try:
        for f in (Filters(), Filters(program=("Stevens",)),
                  Filters(start=dt.date(2026, 2, 1), end=dt.date(2026, 3, 10)),
                  Filters(program=("Bridges",), start=dt.date(2026, 3, 1),
                          end=dt.date(2026, 3, 10))):
            cache.clear_cache()
            out.append((f, overview.headline(con.cursor(), f),
                        overview.activity_over_time(con.cursor(), f).to_dict("records"),
                        participation.breakdown(con.cursor(), f, "country").to_dict("records"),
                        participation.activity_heatmap(con.cursor(), f).to_dict("records")))
    finally:
        con.close()
    return out


def _same_answers(a: list, b: list) -> None:
    for x, y in zip(a, b, strict=True):
        assert x[0] == y[0]
        assert sorted(x[1]) == sorted(y[1])
        assert _same_rows([tuple(x[1][k] for k in sorted(x[1]))],
                          [tuple(y[1][k] for k in sorted(y[1]))]), (x[0], x[1], y[1])
        for recs_a, recs_b in zip(x[2:], y[2:], strict=True):
            assert [list(r) for r in recs_a] == [list(r) for r in recs_b]  # the columns
            assert _same_rows([tuple(r.values()) for r in recs_a],
                              [tuple(r.values()) for r in recs_b]), x[0]


def _assert_served_equals(wh: Path, sv: Path) -> list:
    """The served file `sv` equals the warehouse `wh` but for the events' rows; returns what
    the read layer showed."""
    for table in CONTRACT:
        if table == schema.EVENTS.name:
            assert P.q(sv, f"SELECT count(*) FROM {table}") == [(0,)]
            assert P.q(wh, f"SELECT count(*) FROM {table}")[0][0] > 0
        else:
            assert _warehouse_rows(sv, table) == _warehouse_rows(wh, table), table
    assert sorted(P.q(sv, f"SELECT {BATCH_COLUMNS} FROM load_batches")) == \
        sorted(P.q(wh, f"SELECT {BATCH_COLUMNS} FROM load_batches"))
    derived = sorted(t for t in _tables(wh) if t.startswith("res_"))
    assert len(derived) > 30 and set(derived) <= _tables(sv)
    for table in derived:
        assert _same_rows(_res_rows(sv, table), _res_rows(wh, table)), table
    served = _meta(sv)
    where = json.loads(served.pop(schema.META_EVENTS_IN_LAKE))
    assert where["version"] == int(served["data_version"])
    assert served == _meta(wh)
    shown = _answers(sv)
    _same_answers(shown, _answers(wh))
    return shown


def test_a_served_warehouse_equals_the_warehouse_of_the_same_files(both, built) -> None:
    lake, wh, sv = both
    shown = _assert_served_equals(wh, sv)
    # each filter selects enough people to be shown: the numbers compared are numbers
    assert not any(headline["suppressed"] for _, headline, *_ in shown)
    assert shown[0][1]["events"] > 0
    where = json.loads(dict(P.q(sv, "SELECT key, value FROM meta"))[schema.META_EVENTS_IN_LAKE])
    assert where == {"lake": str(built / "lake"), "version": 1}  # the lake it was built from
    assert sv.stat().st_mode & 0o077 == 0  # owner-only, as a load's
    # the cubes it rebuilt from the facts are the lake's derive's (masks DECIMAL -> HUGEINT)
    con = duckdb.connect()
    try:
        for t in (schema.RES_ACTIVITY_WEEKLY, schema.RES_PAIR_MONTHS):
            got = con.execute(f"SELECT {', '.join(derive_lake.typed_columns(t))} FROM "
                              f"read_parquet('{lake}/derived/{t.name}/**/*.parquet')").fetchall()
            want = P.q(sv, f'SELECT {", ".join(t.column_names)} FROM "{t.name}"')
            assert len(want) > 0 and _same_rows(got, want), t.name
    finally:
        con.close()


def test_an_appended_day_derived_and_served_equals_the_warehouse_with_it(both) -> None:
    lake, wh, sv = both
    day = _days_of_events(lake.parent / "in2", "events_21.csv", range(21, 22), minutes=17)
    lakes.load_into_lake([day], lake)
    load_paths([day], wh)
    before = P.q(sv, "SELECT value FROM meta WHERE key = 'build_id'")
    with pytest.raises(derive_lake.LakeError, match=r"lake is at version 2; run 'python -m "):
        serve.serve(lake, sv)
    assert P.q(sv, "SELECT value FROM meta WHERE key = 'build_id'") == before
    assert derive_lake.derive(lake).mode == "incremental"
    done = serve.serve(lake, sv)
    assert done.version == 2 and done.counts[schema.EVENTS.name] == 0
    _assert_served_equals(wh, sv)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {**P.os.environ, "EXCHANGE_IMPACT_KEY": P.TEST_KEY, "PYTHONPATH": str(P.ROOT),
         **(env or {})}
    return subprocess.run([sys.executable, "-m", "analytics", *args], capture_output=True,
                          text=True, cwd=P.ROOT, env=e, timeout=180)


def test_a_lake_not_derived_since_its_last_load_is_refused_then_served(both, tmp_path) -> None:
    lake, _, sv = both
    day = _days_of_events(tmp_path / "in3", "events_22.csv", range(22, 23))
    lakes.load_into_lake([day], lake)
    stamp = sv.stat().st_mtime_ns
    r = _cli("serve", "--lake", str(lake), "--warehouse", str(sv))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"error: {lake}: derived at version 1, but the lake is at version 2; run 'python -m "
        f"analytics derive --lake {lake}' again first"]
    assert sv.stat().st_mtime_ns == stamp
    derive_lake.derive(lake)
    ok = _cli("serve", "--lake", str(lake), "--warehouse", str(sv))
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.strip().splitlines()[-1] == (
        f"{sv}: data version 2 from {lake}; the events stay in the lake")
    assert P.q(sv, "SELECT value FROM meta WHERE key = 'data_version'") == [("2",)]
    assert P.q(sv, "SELECT count(*) FROM events") == [(0,)]
    assert P.q(sv, "SELECT count(*) FROM res_person_days WHERE day = DATE '2026-03-22'")[0][0] > 0
    fresh = tmp_path / "fresh"
    lakes.load_into_lake([day], fresh)
    with pytest.raises(derive_lake.LakeError, match=r"fresh: never derived; run 'python -m "
                                                    r"analytics derive --lake"):
        serve.check_derived(fresh)
    with pytest.raises(derive_lake.LakeError, match="not a lake that 'python -m etl load"):
        serve.check_derived(tmp_path / "nothing")


@pytest.mark.parametrize("phase", ["derive", "before_swap"])
def test_a_serve_killed_at_a_phase_leaves_the_previous_file(both, phase: str) -> None:
    lake, _, sv = both
    before = P.q(sv, "SELECT key, value FROM meta ORDER BY key")
    r = _cli("serve", "--lake", str(lake), "--warehouse", str(sv),
             env={PHASES_ENV: f"{phase}=kill"})
    assert r.returncode == -signal.SIGKILL
    assert P.q(sv, "SELECT key, value FROM meta ORDER BY key") == before
    assert list(sv.parent.glob(f".{sv.name}.next-*"))  # the half-built file, not swapped in
    serve.serve(lake, sv)  # the next serve clears the half-built file and lands
    assert not list(sv.parent.glob(f".{sv.name}.next-*"))
    after = dict(P.q(sv, "SELECT key, value FROM meta"))
    assert after["build_id"] != dict(before)["build_id"]
    assert after["data_version"] == dict(before)["data_version"] == "1"


def test_what_needs_the_events_of_a_served_warehouse_names_the_lake(both, built, tmp_path
                                                                   ) -> None:
    _, _, sv = both
    lake = built / "lake"  # where the served file was built from (`both` copies it)
    con = duckdb.connect(str(sv), read_only=True)
    try:
        with pytest.raises(export.ExportError, match=rf"the events are in the lake at "
                                                      rf"{lake} \(version 1\)"):
            export.build_export(con, "attrition", "csv",
                                scope=export.Scope(programs=("Stevens",)))
        with pytest.raises(rollups.EventsInLake, match=rf"in the lake at {lake} \(version 1\)"):
            with rollups.temporary_facts(con):
                pass
        # every program: the stored tables, no event needed
        assert export.build_export(con, "attrition", "csv").data
    finally:
        con.close()
    r = _cli("downloads", "attrition", "--program", "Stevens", "--warehouse", str(sv))
    assert r.returncode == 1
    assert f"the events are in the lake at {lake} (version 1)" in r.stderr
    assert not [p for p in sv.parent.rglob("attrition_v*.csv")]  # no empty file either
    day = _days_of_events(tmp_path / "in4", "events_23.csv", range(23, 24))
    with pytest.raises(EtlError, match="a serving warehouse built from a lake"):
        load_paths([day], sv)
    status = P.run_etl("status", "--warehouse", str(sv))  # not "events 0"
    assert status.returncode == 0
    assert "in the lake at" in status.stdout and "(version 1)" in status.stdout
    # 'python -m analytics refresh' would rebuild the facts from the empty events
    before = P.q(sv, "SELECT value FROM meta WHERE key = 'build_id'")
    with pytest.raises(rollups.EventsInLake, match=rf"in the lake at {lake} \(version 1\)"):
        with build_next(sv) as con:
            materialise.refresh(con)
    assert P.q(sv, "SELECT value FROM meta WHERE key = 'build_id'") == before

