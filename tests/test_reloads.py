"""Reloads never lose data: sources are places, not file names, and removal is asked for.

Issue 8 §1: a file named like an earlier one (header only, entirely rejected, one row, or a
partner's half of a log) used to delete what the earlier file had brought. Each test here failed
before the fix: the counts in the warehouse are what they check.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import blake3
import duckdb
import pytest

from etl.load import load_paths
from tests import program as P
from tests.test_etl_load import count, q

# Loads here are about the rows read and loaded, never the derived tables (conftest.py).
pytestmark = pytest.mark.usefixtures("no_derive")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The issue's reproduction: a 300-participant demo, loaded once for the module."""
    root = tmp_path_factory.mktemp("demo")
    res = P.run_etl("demo", "--participants", "300", "--out", str(root / "d"), "--warehouse",
                    str(root / "w.duckdb"), "--quiet", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return root / "d", root / "w.duckdb"


@pytest.fixture
def demo_copy(demo, tmp_path: Path) -> tuple[Path, Path]:
    src, wh = demo
    shutil.copyfile(wh, tmp_path / "w.duckdb")
    return src, tmp_path / "w.duckdb"


def _head(src: Path, dst: Path, lines: int) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, encoding="utf-8") as f:
        dst.write_text("".join(f.readline() for _ in range(lines)), encoding="utf-8")
    return dst


def test_a_header_only_file_of_the_same_name_elsewhere_removes_nothing(demo_copy, tmp_path):
    src, wh = demo_copy
    before = count(wh, "events")
    empty = _head(src / "events.csv", tmp_path / "o" / "events.csv", 1)
    res = P.run_etl("load", str(empty), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert count(wh, "events") == before > 0
    assert "0 removed" in res.stdout and "replaced" not in res.stdout


def test_a_one_row_responses_file_elsewhere_keeps_every_answer(demo_copy, tmp_path):
    src, wh = demo_copy
    before = count(wh, "responses")
    one = _head(src / "responses.csv", tmp_path / "o" / "responses.csv", 2)
    res = P.run_etl("load", str(one), "--warehouse", str(wh))
    assert res.returncode in (0, 3), res.stdout + res.stderr
    assert count(wh, "responses") == before == 21_747  # demo n=300, small cells
    assert "0 removed" in res.stdout


def test_two_partners_halves_of_one_log_both_load(demo_copy, tmp_path):
    src, wh = demo_copy
    everything = count(wh, "events")  # what the demo's whole log loaded as
    con = duckdb.connect(str(wh))
    con.execute("DELETE FROM events")  # start from no events: the halves must add up to all
    con.execute("DELETE FROM load_batches WHERE kind = 'events'")
    con.close()
    lines = (src / "events.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "pa").mkdir()
    (tmp_path / "pb").mkdir()
    (tmp_path / "pa" / "events.csv").write_text("".join(lines[:half]), encoding="utf-8")
    (tmp_path / "pb" / "events.csv").write_text(lines[0] + "".join(lines[half:]),
                                                encoding="utf-8")
    res = P.run_etl("load", str(tmp_path / "pa" / "events.csv"),
                    str(tmp_path / "pb" / "events.csv"), "--warehouse", str(wh))
    assert res.returncode in (0, 3), res.stdout + res.stderr
    assert count(wh, "events") == everything > 0
    assert q(wh, "SELECT count(DISTINCT source) FROM load_batches WHERE kind = 'events'") == [(2,)]


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    load_paths([src], wh)
    return src, wh


def _participants(src: Path, rows: list[dict]) -> Path:
    return P.write_csv(src / "participants.csv", rows)


def test_a_corrected_file_without_replace_keeps_the_withdrawn_row_and_says_so(small):
    src, wh = small
    rows = [dict(r) for r in P.PARTICIPANTS[:2]]
    rows[0]["role"] = "teacher"
    _participants(src, rows)
    (rep,) = load_paths([src / "participants.csv"], wh)
    assert count(wh, "participants") == 3  # STU-0003 stays
    assert q(wh, "SELECT count(*) FROM participants WHERE role = 'teacher'") == [(2,)]
    assert (rep.rows_added, rep.rows_changed, rep.rows_unchanged, rep.rows_removed) == (0, 1, 1, 0)
    assert any("--replace" in n for n in rep.notes)


def test_replace_removes_what_the_source_no_longer_holds(small):
    src, wh = small
    rows = [dict(r) for r in P.PARTICIPANTS[:2]]
    rows[0]["role"] = "teacher"
    _participants(src, rows)
    res = P.run_etl("load", str(src / "participants.csv"), "--replace", "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert count(wh, "participants") == 2
    assert "0 added, 1 changed, 1 removed, 1 unchanged" in res.stdout


@pytest.mark.parametrize("case", ["empty", "all rejected", "more than half"])
def test_a_replace_that_would_gut_the_source_is_refused_unless_forced(small, case):
    src, wh = small
    good = P.EVENTS[:3]
    if case == "empty":
        (src / "events.csv").write_text(",".join(P.EVENTS[0]) + "\n", encoding="utf-8")
    elif case == "all rejected":
        P.write_csv(src / "events.csv", [{**e, "exchange_id": "E404"} for e in good])
    else:
        P.write_csv(src / "events.csv", good[:1])  # removes 2 of 3
    before = q(wh, "SELECT value FROM meta WHERE key = 'data_version'")
    res = P.run_etl("load", str(src / "events.csv"), "--replace", "--warehouse", str(wh))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "nothing was changed" in res.stdout and "--force" in res.stdout
    assert count(wh, "events") == 3
    assert q(wh, "SELECT status FROM load_batches ORDER BY batch_id DESC LIMIT 1") == [("refused",)]
    assert q(wh, "SELECT value FROM meta WHERE key = 'data_version'") != before  # recorded
    res = P.run_etl("load", str(src / "events.csv"), "--replace", "--force", "--warehouse",
                    str(wh))
    assert res.returncode in (0, 3), res.stdout + res.stderr
    assert count(wh, "events") == (1 if case == "more than half" else 0)


def test_dry_run_counts_per_table_and_leaves_the_warehouse_alone(small):
    src, wh = small
    rows = [dict(r) for r in P.PARTICIPANTS[:2]]
    rows[0]["role"] = "teacher"
    rows.append({**P.PARTICIPANTS[0], "participant_id": "STU-0042"})
    _participants(src, rows)
    mtime = wh.stat().st_mtime_ns
    res = P.run_etl("load", str(src / "participants.csv"), "--replace", "--dry-run",
                    "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert ("dry run: participants: 1 added, 1 changed, 1 removed, 1 unchanged "
            "(nothing was written)") in res.stdout
    assert wh.stat().st_mtime_ns == mtime
    assert count(wh, "participants") == 3


def test_source_names_a_file_from_another_path(small, tmp_path):
    src, wh = small
    moved = P.write_csv(tmp_path / "moved" / "participants_v2.csv", P.PARTICIPANTS[:2])
    (rep,) = load_paths([moved], wh, replace=True, source=str((src / "participants.csv").resolve()))
    assert rep.status == "loaded" and rep.rows_removed == 1
    assert count(wh, "participants") == 2


def test_the_same_content_from_one_source_is_unchanged_and_from_another_loads(small, tmp_path):
    src, wh = small
    copy = tmp_path / "elsewhere" / "events.csv"
    copy.parent.mkdir()
    shutil.copyfile(src / "events.csv", copy)
    (rep,) = load_paths([copy], wh)
    assert rep.status == "loaded" and rep.rows_unchanged == 3 and rep.rows_added == 0
    assert count(wh, "events") == 3


def test_a_first_load_records_the_files_hash_and_a_second_is_unchanged(small):
    """A source's first load reads while the hash is computed beside it (nothing of that
    source can match yet); the batch still records the file's BLAKE3, which is what makes
    the next load of the same content from the same source `unchanged`."""
    src, wh = small
    events = src / "events.csv"
    recorded = q(wh, "SELECT blake3, sha256 FROM load_batches WHERE source = ? "
                 "AND status = 'loaded'", [str(events.resolve())])
    assert recorded == [(blake3.blake3(events.read_bytes()).hexdigest(), None)]
    (rep,) = load_paths([events], wh)
    assert rep.status == "unchanged" and "same content already loaded" in rep.notes[0]
    assert count(wh, "events") == 3


def test_files_loaded_by_a_version_that_stored_sha256_are_still_recognised(small):
    """Warehouses written before the blake3 column hold SHA-256 only: loading the same file
    again is still `unchanged` (its SHA-256 is computed for that comparison), a changed file
    loads, and the new batch records BLAKE3."""
    src, wh = small
    events = src / "events.csv"
    con = duckdb.connect(str(wh))
    con.execute("UPDATE load_batches SET sha256 = ? WHERE source = ?",
                [hashlib.sha256(events.read_bytes()).hexdigest(), str(events.resolve())])
    con.execute("ALTER TABLE load_batches DROP COLUMN blake3")  # the older file's shape
    con.close()
    (rep,) = load_paths([events], wh)
    assert rep.status == "unchanged" and "same content already loaded" in rep.notes[0]
    assert count(wh, "events") == 3
    P.write_csv(events, P.EVENTS + [{**P.EVENTS[0], "occurred_at": "2026-03-09 10:00:00"}])
    (rep,) = load_paths([events], wh)
    assert rep.status == "loaded" and rep.rows_added == 1 and count(wh, "events") == 4
    assert q(wh, "SELECT blake3 FROM load_batches WHERE batch_id = ?", [rep.batch_id]) == [
        (blake3.blake3(events.read_bytes()).hexdigest(),)]
    (rep,) = load_paths([events], wh)
    assert rep.status == "unchanged"


def test_an_older_warehouse_gets_the_new_bookkeeping_columns(small):
    src, wh = small
    con = duckdb.connect(str(wh))
    for c in ("source", "rows_added", "rows_changed", "rows_removed", "rows_unchanged"):
        con.execute(f"ALTER TABLE load_batches DROP COLUMN {c}")
    con.close()
    P.write_csv(src / "clusters.csv", P.CLUSTERS + [
        {"cluster_id": "C3", "name": "Sahel", "kind": "cluster"}])
    (rep,) = load_paths([src / "clusters.csv"], wh)
    assert rep.status == "loaded" and rep.rows_added == 1 and count(wh, "clusters") == 3


def test_status_lists_each_source_with_the_rows_it_holds(small, tmp_path):
    src, wh = small
    other = P.write_csv(tmp_path / "pb" / "events.csv", [
        {**P.EVENTS[0], "occurred_at": "2026-03-09 10:00:00"}])
    load_paths([other], wh)
    res = P.run_etl("status", "--warehouse", str(wh))
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "events.csv" in ln and "│" in ln]
    held = {ln.split("│")[1].strip(): ln.split("│")[4].strip() for ln in lines
            if ln.split("│")[2].strip() == "events"}
    assert held == {str((src / "events.csv").resolve()): "3", str(other.resolve()): "1"}


def test_a_demo_written_again_into_the_same_folder_replaces_the_earlier_demo(tmp_path):
    out, wh = tmp_path / "d", tmp_path / "w.duckdb"
    for n, seed in ((250, 1), (100, 2)):
        res = P.run_etl("demo", "--participants", str(n), "--seed", str(seed), "--out", str(out),
                        "--warehouse", str(wh), "--quiet", timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    res = P.run_etl("demo", "--participants", "60", "--out", str(out), "--warehouse", str(wh))
    assert res.returncode == 1 and "at least 100" in res.stderr and "Traceback" not in res.stderr
    last = q(wh, "SELECT max(batch_id) FROM load_batches WHERE kind = 'events'")[0][0]
    assert count(wh, "events") == q(wh, "SELECT rows_accepted FROM load_batches WHERE batch_id = ?",
                                    [last])[0][0]
    assert count(wh, "participants") == 100
