"""What the command line promises about dates, refused answers and a broken warehouse file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import pytest

from tests import program as P

q = P.q


def _load(*args: str):
    return P.run_etl("load", *args)


def test_implausible_dates_are_rejected_with_their_own_rule(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    events = [dict(e) for e in P.EVENTS] + [
        {**P.EVENTS[0], "occurred_at": "1850-03-04 10:00:00"},  # row 8
        {**P.EVENTS[0], "occurred_at": "2099-03-04T10:00:00Z"},  # row 9
        {**P.EVENTS[0], "occurred_at": "1999-03-04 10:00:00"},  # row 10: old but plausible
    ]
    P.write_csv(src / "events.csv", events)
    exchanges = [dict(x) for x in P.EXCHANGES] + [
        {**P.EXCHANGES[0], "exchange_id": "E3", "start_date": "1850-01-10"},  # row 4
        {**P.EXCHANGES[0], "exchange_id": "E4", "end_date": "2099-06-30"},  # row 5
    ]
    P.write_csv(src / "exchanges.csv", exchanges)
    responses = [dict(r) for r in P.RESPONSES[:3]] + [
        {**P.RESPONSES[0], "wave": "post", "submitted_at": "2099-01-01 09:00"}]  # row 5
    P.write_csv(src / "responses.csv", responses)
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = _load(str(src), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    got = {(Path(f).name, r, c) for f, r, c in q(
        wh, "SELECT file, row_number, column_name FROM rejects WHERE rule = 'plausible_date'")}
    assert got == {("events.csv", 8, "occurred_at"), ("events.csv", 9, "occurred_at"),
                   ("exchanges.csv", 4, "start_date"), ("exchanges.csv", 5, "end_date"),
                   ("responses.csv", 5, "submitted_at")}
    assert q(wh, "SELECT count(*) FROM events WHERE year(occurred_at) = 1999") == [(1,)]
    assert "plausible_date: '1850-03-04 10:00:00' is not a plausible date" in res.stdout


def test_refused_answers_in_rows_that_otherwise_loaded_exit_with_status_3(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    assert _load(str(src), "--warehouse", str(wh)).returncode == 3  # the program's bad rows
    wave2 = [{**P.RESPONSES[0], "wave": "followup", "icc_1": "9", "icc_2": "0", "icc_3": "6",
              "icc_4": "4"},
             {**P.RESPONSES[2], "wave": "followup", "icc_1": "7", "icc_2": "x", "icc_3": "3",
              "icc_4": "3"}]  # five answers refused, every row otherwise fine
    f = P.write_csv(tmp_path / "w2" / "responses_followup.csv", wave2)
    res = _load(str(f), "--warehouse", str(wh))
    assert "5 answers refused" in res.stdout, res.stdout + res.stderr
    assert q(wh, "SELECT count(*) FROM responses WHERE wave = 'followup'") == [(3,)]
    assert res.returncode == 3, res.stdout + res.stderr


def _truncated(b: bytes) -> bytes:  # DuckDB cannot open it
    return b[:4096]


def _garbled(b: bytes) -> bytes:  # header intact, every data block fails its checksum
    return b[:12288] + bytes((i * 7919 + 13) % 251 for i in range(len(b) - 12288))


def _text(b: bytes) -> bytes:
    return b"this is not a database\n"


def _cut(b: bytes) -> bytes:
    """A prefix DuckDB opens and then fails to read (found by trying, since it depends on the
    file's layout): the damage met by a query, not on open."""
    probe = Path(tempfile.mkdtemp()) / "probe.duckdb"
    for twentieths in range(19, 0, -1):
        cut = b[: len(b) * twentieths // 20 // 4096 * 4096]
        probe.write_bytes(cut)
        try:
            con = duckdb.connect(str(probe), read_only=True)
        except duckdb.Error:
            continue
        try:
            con.execute("SELECT * FROM meta").fetchall()
        except duckdb.Error:
            return cut
        finally:
            con.close()
    pytest.fail("no prefix of the warehouse opens and then fails: find another damage")


@pytest.fixture(scope="module")
def _clusters_loaded(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a warehouse that one load of the program's clusters made (once for the
    eight damages and commands below)."""
    src = P.write_program(tmp_path_factory.mktemp("clusters") / "in")
    wh = src.parent / "wh" / "warehouse.duckdb"
    assert _load(str(src / "clusters.csv"), "--warehouse", str(wh)).returncode == 0
    return wh.read_bytes()


@pytest.mark.parametrize("damage", [_truncated, _garbled, _text, _cut])
@pytest.mark.parametrize("command", ["load", "status"])
def test_a_corrupt_warehouse_gives_one_line_and_is_left_untouched(tmp_path, _clusters_loaded,
                                                                  damage, command):
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    wh.parent.mkdir()
    wh.write_bytes(damage(_clusters_loaded))
    before = (wh.read_bytes(), wh.stat().st_mtime_ns)
    args = [str(src / "institutions.csv")] if command == "load" else []
    res = P.run_etl(command, *args, "--warehouse", str(wh))
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: {wh}: not a readable warehouse"), lines[0]
    assert "restore" in lines[0] and "load" in lines[0]
    assert (wh.read_bytes(), wh.stat().st_mtime_ns) == before
    assert not [p for p in wh.parent.iterdir() if ".next-" in p.name]
    assert os.stat(wh).st_size == len(before[0])
