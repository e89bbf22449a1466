"""The loader through its real command line: rows in the warehouse, rejects, exit statuses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etl.pseudonym import pseudonym
from tests import program as P

q = P.q


def count(wh: Path, table: str) -> int:
    return q(wh, f'SELECT count(*) FROM "{table}"')[0][0]


def _load_program(folder: Path):
    src = P.write_program(folder / "in")
    wh = folder / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    return src, wh, res


@pytest.fixture(scope="module")
def _program(tmp_path_factory: pytest.TempPathFactory):
    """The program loaded once through the command line (a load and its derive: 5-6 s)."""
    return _load_program(tmp_path_factory.mktemp("program"))


@pytest.fixture
def loaded(_program, tmp_path: Path):
    """(the program's folder, a private copy of its warehouse, the load's output). The folder is
    shared by the module's tests: a test writes its own files under tmp_path; one that must
    change the program's own files (a --replace of the same path) takes `loaded_own`."""
    src, wh, res = _program
    return src, P.warehouse_copy(wh, tmp_path), res


@pytest.fixture
def loaded_own(tmp_path: Path):
    return _load_program(tmp_path)


def test_folder_loads_in_dependency_order_with_good_rows(loaded):
    src, wh, res = loaded
    # events.csv and exchanges.csv sort before institutions.csv: only dependency order works.
    assert res.returncode == 3, res.stderr  # loaded, with rejected rows
    assert count(wh, "clusters") == 2
    assert count(wh, "institutions") == 3
    assert count(wh, "exchanges") == 1
    assert count(wh, "participants") == 3
    assert count(wh, "events") == 3
    # STU-0001 pre 4 + post 3 (icc_4=9 refused) + STU-0002 pre 3 (icc_2 empty) = 10 answers
    assert count(wh, "responses") == 10
    kinds = [r[0] for r in q(wh, "SELECT kind FROM load_batches ORDER BY batch_id")]
    assert kinds == ["clusters", "institutions", "exchanges", "participants", "events", "responses"]
    assert q(wh, "SELECT value FROM meta WHERE key = 'data_version'") == [("1",)]


def test_every_bad_row_is_rejected_with_file_row_column_and_rule(loaded):
    src, wh, res = loaded
    got = {(Path(f).name, r, c, rule) for f, r, c, rule in q(
        wh, "SELECT file, row_number, column_name, rule FROM rejects")}
    assert got == P.BAD_ROWS
    # The command line names them too: file, row, column and rule on one line.
    assert f"{src / 'institutions.csv'}: row 5, column country: country: 'Atlantis'" in res.stdout
    assert "row 3, column icc_4: range: '9' is outside the range 1 to 5" in res.stdout
    batches = q(wh, "SELECT kind, rows_in, rows_accepted, rows_rejected FROM load_batches "
                    "ORDER BY batch_id")
    assert ("institutions", 5, 3, 2) in batches
    assert ("events", 6, 3, 3) in batches


def test_countries_are_alpha3_and_enums_normalised(loaded):
    _, wh, _ = loaded
    assert q(wh, "SELECT institution_id, country, income_group FROM institutions ORDER BY 1") == [
        ("I1", "DEU", "high"), ("I2", "PER", "upper-middle"), ("I3", "JPN", "high")]
    assert q(wh, "SELECT kind FROM clusters WHERE cluster_id = 'C2'") == [("network",)]


def test_timestamps_are_utc_naive_ones_read_in_the_institutions_zone(loaded):
    _, wh, _ = loaded
    rows = q(wh, "SELECT activity, strftime(occurred_at, '%Y-%m-%d %H:%M') FROM events ORDER BY 1")
    assert rows == [
        ("message", "2026-03-04 15:00"),  # -05:00 honoured
        ("upload", "2026-03-04 23:30"),  # Tokyo 08:30 the next day
        ("video call", "2026-03-04 09:00"),  # Berlin 10:00 in CET
    ]
    # A naive submitted_at of a Lima participant: 09:00 local = 14:00 UTC.
    rows = q(wh, "SELECT DISTINCT strftime(submitted_at, '%H:%M') FROM responses r JOIN "
                 "participants p USING (participant_id) WHERE p.institution_id = 'I2'")
    assert rows == [("14:00",)]


def test_no_identifier_name_or_email_reaches_the_warehouse_file(loaded):
    _, wh, _ = loaded
    blob = wh.read_bytes()
    for value in P.IDENTIFYING:
        assert value.encode() not in blob, value
        assert value.encode("utf-16-le") not in blob, value
    # Pseudonyms are the keyed hash: the same id and key always give the same one.
    ids = {r[0] for r in q(wh, "SELECT participant_id FROM participants")}
    assert ids == {pseudonym(f"STU-000{i}", P.TEST_KEY.encode()) for i in (1, 2, 3)}
    # The unknown participant's reject shows its pseudonym, not its id.
    assert q(wh, "SELECT value FROM rejects WHERE file LIKE '%events.csv' AND row_number = 5") == [
        (pseudonym("STU-9999", P.TEST_KEY.encode()),)]


def test_reloading_the_same_files_changes_nothing(loaded):
    src, wh, _ = loaded
    before = wh.stat().st_mtime_ns
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 0, res.stderr
    assert "unchanged" in res.stdout
    assert wh.stat().st_mtime_ns == before
    assert count(wh, "events") == 3 and count(wh, "load_batches") == 6


def test_a_corrected_file_loaded_with_replace_replaces_its_earlier_version(loaded_own):
    src, wh, _ = loaded_own
    rows = [dict(r) for r in P.PARTICIPANTS[:3]]
    rows[0]["role"] = "teacher"  # corrected
    rows = rows[:2]  # STU-0003 withdrawn from this file
    P.write_csv(src / "participants.csv", rows)
    res = P.run_etl("load", str(src / "participants.csv"), "--replace", "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert count(wh, "participants") == 2
    key = P.TEST_KEY.encode()
    assert q(wh, "SELECT role FROM participants WHERE participant_id = ?",
             [pseudonym("STU-0001", key)]) == [("teacher",)]
    assert "rows in participants: 0 added, 1 changed, 1 removed, 1 unchanged" in res.stdout
    assert q(wh, "SELECT value FROM meta WHERE key = 'data_version'") == [("2",)]


def test_an_event_file_loaded_under_another_name_does_not_duplicate(loaded, tmp_path: Path):
    src, wh, _ = loaded
    copy = tmp_path / "again" / "events_copy.csv"
    P.write_csv(copy, [{**P.EVENTS[0], "minutes": "50"}] + P.EVENTS[1:3])
    res = P.run_etl("load", str(copy), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert count(wh, "events") == 3  # same natural keys: replaced, not added
    assert q(wh, "SELECT max(minutes) FROM events") == [(50.0,)]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("participants.csv", "participant_id,role\nX1,student\n",
         "missing required column institution_id for participants"),
        ("responses.csv", "participant_id,exchange_id,wave,submitted_at,q1\nSTU-0001,E1,pre,"
                          "2026-01-01,3\n", "no column is an item of a known instrument"),
        ("events.json", '{"a": 1}', "unknown format '.json'"),
        ("notes.csv", "alpha,beta\n1,2\n", "cannot tell what it holds"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole(loaded, tmp_path, name, content, expected):
    src, wh, _ = loaded
    bad = tmp_path / "bad" / name
    bad.parent.mkdir()
    bad.write_text(content)
    before = {t: count(wh, t) for t in ("participants", "responses", "events")}
    res = P.run_etl("load", str(bad), "--warehouse", str(wh))
    assert res.returncode == 1
    line = [ln for ln in (res.stdout + res.stderr).splitlines() if "refused" in ln]
    assert line and str(bad) in line[0] and expected in line[0], res.stdout + res.stderr
    assert {t: count(wh, t) for t in before} == before
    assert q(wh, "SELECT status FROM load_batches WHERE file = ?", [str(bad)]) == [("refused",)]


def test_garbage_bytes_are_refused_or_rejected_never_loaded(loaded, tmp_path: Path):
    src, wh, _ = loaded
    bad = tmp_path / "garbage" / "events.csv"
    bad.parent.mkdir()
    bad.write_bytes(bytes(range(256)) * 40)
    res = P.run_etl("load", str(bad), "--warehouse", str(wh))
    assert res.returncode == 1, res.stdout
    assert count(wh, "events") == 3


def test_xlsx_and_parquet_load_like_csv(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    pd.read_csv(src / "clusters.csv", dtype=str).to_excel(src / "clusters.xlsx", index=False)
    (src / "clusters.csv").unlink()
    pd.read_csv(src / "exchanges.csv", dtype=str, keep_default_na=False).to_parquet(
        src / "exchanges.parquet")
    (src / "exchanges.csv").unlink()
    wh = tmp_path / "w.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 3, res.stderr
    assert count(wh, "clusters") == 2 and count(wh, "exchanges") == 1
    assert ("exchanges.parquet", 2, "start_date", "date") in {
        (Path(f).name, r, c, rule) for f, r, c, rule in q(
            wh, "SELECT file, row_number, column_name, rule FROM rejects")}


def test_kind_flag_and_kind_from_columns(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "w.duckdb"
    (src / "clusters.csv").rename(src / "networks_2026.csv")  # kind from its columns
    res = P.run_etl("load", str(src / "networks_2026.csv"), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert count(wh, "clusters") == 2
    (src / "institutions.csv").rename(src / "schools.csv")
    res = P.run_etl("load", str(src / "schools.csv"), "--kind", "institutions", "--warehouse",
                    str(wh))
    assert res.returncode == 3 and count(wh, "institutions") == 3


def test_status_reports_version_counts_and_loads(loaded):
    _, wh, _ = loaded
    res = P.run_etl("status", "--warehouse", str(wh))
    assert res.returncode == 0, res.stderr
    assert "data version 1" in res.stdout
    assert "events" in res.stdout and "rejects" in res.stdout
    assert "institutions.csv" in res.stdout


def test_missing_key_and_missing_warehouse_give_one_clear_line(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    res = P.run_etl("load", str(src), "--warehouse", str(tmp_path / "w.duckdb"),
                    env={"EXCHANGE_IMPACT_KEY": ""})
    assert res.returncode == 1
    assert "no pseudonymisation key: set EXCHANGE_IMPACT_KEY" in res.stderr
    assert "Traceback" not in res.stderr
    res = P.run_etl("status", "--warehouse", str(tmp_path / "none.duckdb"))
    assert res.returncode == 1 and "no warehouse here" in res.stderr


def test_help_explains_every_option_with_an_example():
    for cmd in ("load", "demo", "status"):
        res = P.run_etl(cmd, "--help")
        assert res.returncode == 0
        assert "--warehouse" in res.stdout and "--quiet" in res.stdout
        assert "example" in res.stdout.lower()
    assert "--participants" in P.run_etl("demo", "--help").stdout


def test_quiet_prints_no_progress(loaded, tmp_path: Path):
    src, _, _ = loaded
    res = P.run_etl("load", str(src), "--warehouse", str(tmp_path / "q.duckdb"), "--quiet")
    assert "reading" not in res.stdout and "validating" not in res.stdout


def test_a_zone_duckdb_cannot_convert_with_is_rejected_not_a_crash(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    rows = [dict(r) for r in P.INSTITUTIONS[:3]]
    rows[0]["timezone"] = "localtime"  # in tzdata, but an alias of the machine's zone
    P.write_csv(src / "institutions.csv", rows)
    res = P.run_etl("load", str(src), "--warehouse", str(tmp_path / "w.duckdb"))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "row 2, column timezone: timezone: 'localtime' is not an IANA time zone" in res.stdout


# ---- the library call finishes its own work (issue 9, item 2) -----------------------------------

def _meta(wh: Path) -> dict[str, str]:
    return dict(q(wh, "SELECT key, value FROM meta"))


def _tables(wh: Path) -> set[str]:
    return {r[0] for r in q(wh, "SELECT table_name FROM information_schema.tables")}


def _derived_of_version(wh: Path, version: int) -> None:
    """Every result and dashboard table is there, stamped with the warehouse's data version."""
    from etl import schema

    meta = _meta(wh)
    assert meta["data_version"] == str(version)
    assert meta["results_data_version"] == str(version)
    assert meta["rollups_data_version"] == str(version)
    missing = (set(schema.RESULT_TABLES) | set(schema.ROLLUP_TABLES)) - _tables(wh)
    assert not missing, missing
    assert count(wh, "res_scale_scores") > 0 and count(wh, "res_activity_weekly") > 0


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)


def test_the_library_load_leaves_result_and_dashboard_tables_of_its_version(tmp_path, key_env):
    from etl.load import load_paths

    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    steps: list[str] = []
    load_paths([src], wh, progress=steps.append)  # the library, not the command line
    _derived_of_version(wh, 1)
    assert "computing result tables" in steps
    P.write_csv(tmp_path / "more" / "events.csv", [dict(P.EVENTS[0], minutes="50")])
    load_paths([tmp_path / "more" / "events.csv"], wh)
    _derived_of_version(wh, 2)
    # --replace and --dry-run through the library: a replace derives too, a dry run writes nothing
    load_paths([tmp_path / "more" / "events.csv"], wh, source="more", replace=True)
    _derived_of_version(wh, 3)
    before = wh.read_bytes()
    P.write_csv(tmp_path / "more" / "events.csv", [dict(P.EVENTS[0], minutes="55")])
    reports = load_paths([tmp_path / "more" / "events.csv"], wh, source="more", replace=True,
                         dry_run=True)
    assert reports[0].rows_changed == 1
    assert wh.read_bytes() == before


@pytest.mark.parametrize("failure", [RuntimeError("the model did not converge"),
                                     ImportError("No module named 'statsmodels'")])
def test_a_failing_derive_step_fails_the_load_and_leaves_the_warehouse_alone(
        tmp_path, key_env, monkeypatch, capsys, failure):
    from analytics.derive import materialise
    from etl.errors import DeriveFailed
    from etl.load import load_paths

    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    load_paths([src], wh)
    before = wh.read_bytes()

    def broken(con, **kw):
        raise failure

    monkeypatch.setattr(materialise, "refresh", broken)
    P.write_csv(tmp_path / "more" / "events.csv", [dict(P.EVENTS[0], minutes="50")])
    with pytest.raises(DeriveFailed) as e:
        load_paths([tmp_path / "more" / "events.csv"], wh)
    msg = str(e.value)
    assert type(failure).__name__ in msg and str(failure) in msg
    assert "left as it was (data version 1)" in msg
    assert wh.read_bytes() == before  # not swapped: byte for byte the old file
    assert not [p for p in wh.parent.iterdir() if ".next-" in p.name]
    # The command line says it in one line, exit status 1, no traceback.
    import signal

    from etl import cli

    monkeypatch.setattr(signal, "signal", lambda *a: None)  # leave pytest's handlers alone
    assert cli.main(["load", str(tmp_path / "more" / "events.csv"), "--warehouse", str(wh),
                     "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "the load was not applied" in err and "Traceback" not in err
    assert wh.read_bytes() == before
