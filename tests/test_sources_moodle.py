"""Moodle logs read as events (etl/sources/moodle.py), through `read()` directly.

Fixtures are written here in Moodle's two real shapes: the log report's CSV download (`Time,
User full name, Affected user, Event context, Component, Event name, Description, Origin, IP
address`, newest first, `-` for empty, `dd/mm/yy, HH:MM`) and the `mdl_logstore_standard_log`
table dumped to CSV (Unix `timecreated`).
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.errors import RefusedFile
from etl.sources import moodle
from tests.sources_fuzz import SAMPLES, check_read_or_refused, mangle

EXPORT = ["Time", "User full name", "Affected user", "Event context", "Component", "Event name",
          "Description", "Origin", "IP address"]
TABLE = ["id", "eventname", "component", "action", "target", "objecttable", "objectid", "crud",
         "edulevel", "contextid", "contextlevel", "contextinstanceid", "userid", "courseid",
         "relateduserid", "anonymous", "other", "timecreated", "origin", "ip", "realuserid"]
IP = "192.168.17.42"


def export_row(when: str, user: str, uid: int, event: str, ip: str = IP) -> list[str]:
    return [when, user, "-", "Course: Water Futures", "System", event,
            f"The user with id '{uid}' did '{event}' in the course with id '2'.", "web", ip]


def write_export(path: Path, rows: list[list[str]], *, index: bool = False,
                 encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(([""] if index else []) + EXPORT)
        w.writerows(([str(i)] if index else []) + r for i, r in enumerate(rows))
    return path


def table_row(i: int, event: str, uid: int, t: int, anonymous: int = 0) -> list[str]:
    return [str(i), event, "core", "viewed", "course", "", "", "r", "2", "25", "50", "2",
            str(uid), "2", "", str(anonymous), "N;", str(t), "web", IP, ""]


def write_table(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(TABLE)
        w.writerows(rows)
    return path


ROWS = [  # newest first, as Moodle writes them; lines 2..6
    export_row("15/03/24, 09:05", "Ana Lima", 58, "Course viewed"),
    export_row("15/03/24, 09:04", "-", 0, "Course viewed"),
    export_row("14/03/24, 18:30", "Bo Chen", 61, "Discussion created"),
    export_row("14/03/24, 18:30", "Bo Chen", 61, "Discussion created"),
    export_row("01/03/24, 08:00", "Ana Lima", 58, "User has logged in"),
]
MAP = {"timezone": "Europe/Madrid", "exchange_id": "E1"}


def rows_of(t) -> list[dict]:
    return t.to_pylist()


def test_log_report_rows(tmp_path):
    notes: list[str] = []
    t = moodle.read(write_export(tmp_path / "logs.csv", ROWS), MAP, notes)
    assert rows_of(t) == [
        {"participant_id": "Ana Lima", "exchange_id": "E1",
         "occurred_at": "2024-03-15T08:05:00+00:00", "activity": "moodle:Course viewed",
         "minutes": None, "_row": 2},
        {"participant_id": "Bo Chen", "exchange_id": "E1",
         "occurred_at": "2024-03-14T17:30:00+00:00", "activity": "moodle:Discussion created",
         "minutes": None, "_row": 4},
        {"participant_id": "Bo Chen", "exchange_id": "E1",  # the log's identical lines are kept
         "occurred_at": "2024-03-14T17:30:00+00:00", "activity": "moodle:Discussion created",
         "minutes": None, "_row": 5},
        {"participant_id": "Ana Lima", "exchange_id": "E1",
         "occurred_at": "2024-03-01T07:00:00+00:00", "activity": "moodle:User has logged in",
         "minutes": None, "_row": 6},
    ]
    assert "1 row(s) of no logged-in user (guest, '-' or user id 0) dropped" in notes
    assert "IP addresses dropped" in notes
    assert any(n.startswith("dates read day-first") for n in notes)
    assert "participants by the user's full name" in notes


def test_leading_index_column_and_user_ids(tmp_path):
    f = write_export(tmp_path / "logs.csv", ROWS, index=True)
    t = rows_of(moodle.read(f, {**MAP, "participant": "userid"}, []))
    assert [(r["participant_id"], r["_row"]) for r in t] == [
        ("58", 2), ("61", 4), ("61", 5), ("58", 6)]


def test_activities_from_the_mapping(tmp_path):
    notes: list[str] = []
    t = moodle.read(write_export(tmp_path / "logs.csv", ROWS),
                    {**MAP, "activity": {"course viewed": "course_view",
                                         "User has logged in": None}}, notes)
    assert [r["activity"] for r in rows_of(t)] == [
        "course_view", "moodle:Discussion created", "moodle:Discussion created"]
    assert "1 row(s) of events the mapping leaves out dropped" in notes
    with pytest.raises(RefusedFile, match="map of event name to activity"):
        moodle.read(write_export(tmp_path / "logs.csv", ROWS), {**MAP, "activity": "x"}, [])


def test_summer_time_and_zone(tmp_path):
    """Madrid: 2024-03-31 02:30 is skipped, 2024-10-27 02:30 happens twice (read as the
    contract's loader reads them: before the change, and after it)."""
    rows = [export_row("27/10/24, 02:30", "Ana Lima", 58, "Course viewed"),
            export_row("31/03/24, 02:30", "Ana Lima", 58, "Course viewed"),
            export_row("13/07/24, 12:00", "Ana Lima", 58, "Course viewed")]
    f = write_export(tmp_path / "logs.csv", rows)
    notes: list[str] = []
    t = rows_of(moodle.read(f, MAP, notes))
    assert [r["occurred_at"] for r in t] == [
        "2024-10-27T01:30:00+00:00", "2024-03-31T01:30:00+00:00", "2024-07-13T10:00:00+00:00"]
    assert any(n.startswith("2 local time(s)") for n in notes)
    with pytest.raises(RefusedFile, match="set timezone in the mapping"):
        moodle.read(f, {"exchange_id": "E1"}, [])


def test_month_first_sites_and_ambiguous_dates(tmp_path):
    f = write_export(tmp_path / "us.csv", [export_row("03/15/24, 9:05 PM", "Ana", 5, "x")])
    assert rows_of(moodle.read(f, {"timezone": "UTC"}, []))[0]["occurred_at"] \
        == "2024-03-15T21:05:00+00:00"
    f = write_export(tmp_path / "amb.csv", [export_row("03/04/24, 09:05", "Ana", 5, "x")])
    with pytest.raises(RefusedFile, match="dayfirst"):
        moodle.read(f, {"timezone": "UTC"}, [])
    assert rows_of(moodle.read(f, {"timezone": "UTC", "dayfirst": True}, []))[0][
        "occurred_at"] == "2024-04-03T09:05:00+00:00"


def test_bad_time_passes_as_written(tmp_path):
    rows = [ROWS[0], export_row("soon", "Ana Lima", 58, "Course viewed")]
    t = rows_of(moodle.read(write_export(tmp_path / "logs.csv", rows), MAP, []))
    assert [(r["occurred_at"], r["_row"]) for r in t] == [
        ("2024-03-15T08:05:00+00:00", 2), ("soon", 3)]


def test_email_participants_refused_for_the_report(tmp_path):
    with pytest.raises(RefusedFile, match="no e-mail column"):
        moodle.read(write_export(tmp_path / "logs.csv", ROWS), {**MAP, "participant": "email"}, [])


def test_database_table(tmp_path):
    rows = [table_row(101, "\\core\\event\\course_viewed", 7, 1710493500),
            table_row(102, "\\mod_forum\\event\\post_created", 8, 1710493560),
            table_row(103, "\\core\\event\\user_loggedin", 0, 1710493600),
            table_row(104, "\\mod_feedback\\event\\response_submitted", 9, 1710493700, 1),
            table_row(105, "\\core\\event\\course_viewed", 7, -99999999999999999),
            table_row(106, "\\core\\event\\course_viewed", 7, 1710493800)[:-1] + ["2"]]
    notes: list[str] = []
    t = moodle.read(write_table(tmp_path / "mdl.csv", rows),
                    {"activity": {"\\core\\event\\course_viewed": "course_view"}}, notes)
    assert rows_of(t) == [
        {"participant_id": "7", "exchange_id": None, "occurred_at": "2024-03-15T09:05:00+00:00",
         "activity": "course_view", "minutes": None, "_row": 2},
        {"participant_id": "8", "exchange_id": None, "occurred_at": "2024-03-15T09:06:00+00:00",
         "activity": "moodle:\\mod_forum\\event\\post_created", "minutes": None, "_row": 3},
        {"participant_id": "7", "exchange_id": None, "occurred_at": "-99999999999999999",
         "activity": "course_view", "minutes": None, "_row": 6},
    ]
    assert "1 row(s) Moodle marks anonymous dropped" in notes
    assert "1 row(s) an administrator did logged in as the user dropped" in notes
    assert "participants by the Moodle user id" in notes
    with pytest.raises(RefusedFile, match="only user ids"):
        moodle.read(write_table(tmp_path / "mdl.csv", rows), {"participant": "name"}, [])


def test_tab_separated_table_with_nulls(tmp_path):
    f = tmp_path / "mdl.tsv"
    f.write_text("\t".join(TABLE) + "\n" + "\t".join(
        table_row(1, "\\core\\event\\course_viewed", 7, 1710493500)).replace("\t\t", "\t\\N\t")
        + "\n")
    assert [r["participant_id"] for r in rows_of(moodle.read(f, {}, []))] == ["7"]


def test_sniff(tmp_path):
    f = write_export(tmp_path / "logs.csv", ROWS, index=True)
    assert moodle.sniff(f, f.read_text())
    g = write_table(tmp_path / "mdl.csv", [table_row(1, "x", 7, 1)])
    assert moodle.sniff(g, g.read_text())
    assert not moodle.sniff(f, "participant_id,exchange_id,occurred_at,activity\n")


def test_describe_says_which_layout(tmp_path):
    d = moodle.describe(write_export(tmp_path / "e.csv", ROWS, index=True))
    assert d == {"encoding": "UTF-8", "bom": False, "encoding_note": None,
                 "version": "log report download", "header_rows": 1, "separator": ","}
    t = moodle.describe(write_table(tmp_path / "t.csv", [table_row(1, "x", 58, 1710489600)]))
    assert t["version"] == "mdl_logstore_standard_log table"


def test_windows_1252_read_with_a_note(tmp_path):
    notes: list[str] = []
    f = write_export(tmp_path / "logs.csv", [export_row("15/03/24, 09:05", "José Pérez", 5,
                                                        "Course viewed")], encoding="cp1252")
    assert rows_of(moodle.read(f, MAP, notes))[0]["participant_id"] == "José Pérez"
    assert any("Windows-1252" in n for n in notes)


def test_ip_addresses_and_descriptions_never_come_out(tmp_path):
    notes: list[str] = []
    t = moodle.read(write_export(tmp_path / "logs.csv", ROWS), MAP, notes)
    text = " ".join(str(v) for r in rows_of(t) for v in r.values()) + " ".join(notes)
    assert IP not in text and "192.168" not in text and "with id" not in text
    names = {r["participant_id"] for r in rows_of(t)}
    others = " ".join(str(v) for r in rows_of(t) for k, v in r.items() if k != "participant_id")
    assert not any(n in others for n in names)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared sample exports are not here")
def test_the_shared_sample():
    f = SAMPLES / "moodle_example_platform_logs.csv"
    assert moodle.sniff(f, f.read_text()[:65536])
    notes: list[str] = []
    t = rows_of(moodle.read(f, {"timezone": "Europe/Madrid", "exchange_id": "E1"}, notes))
    # 20 lines: 13 by no logged-in user, 7 by users 58 and 287; 12:09 in Madrid is 11:09 UTC.
    assert len(t) == 7
    assert t[0] == {"participant_id": "User 58", "exchange_id": "E1",
                    "occurred_at": "2023-01-23T11:09:00+00:00",
                    "activity": "moodle:Log report viewed", "minutes": None, "_row": 2}
    assert {r["participant_id"] for r in t} == {"User 58", "User 287"}
    assert "13 row(s) of no logged-in user (guest, '-' or user id 0) dropped" in notes
    ids = rows_of(moodle.read(f, {"timezone": "Europe/Madrid", "participant": "userid"}, []))
    assert {r["participant_id"] for r in ids} == {"58", "287"}


# -- properties and fuzzing ----------------------------------------------------------------------

FIXTURE = [HealthCheck.function_scoped_fixture]  # tmp_path: each example writes its own file
name = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"],
                             exclude_characters="-"), min_size=1, max_size=15).map(str.strip)
event = st.text(st.characters(codec="utf-8", categories=["L", "Zs"]), min_size=1,
                max_size=20).map(str.strip)
log_row = st.tuples(name.filter(bool), event.filter(bool), st.integers(0, 10**6))


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(rows=st.lists(log_row, min_size=1, max_size=8))
def test_random_log_reports_read_back(tmp_path, rows):
    """Random users, events and times (to the minute), written newest first in the report's
    shape, read back in UTC."""
    base = dt.datetime(2024, 1, 13, 0, 0)
    written = sorted(((base + dt.timedelta(minutes=m), u, e) for u, e, m in rows), reverse=True)
    f = write_export(tmp_path / "r.csv",
                     [export_row(f"{t:%d/%m/%y, %H:%M}", u, 5, e) for t, u, e in written])
    got = rows_of(moodle.read(f, {"timezone": "UTC", "dayfirst": True}, []))
    assert [(r["participant_id"], r["activity"], r["occurred_at"], r["_row"]) for r in got] == [
        (u, f"moodle:{e}", f"{t:%Y-%m-%dT%H:%M:00+00:00}", i + 2)
        for i, (t, u, e) in enumerate(written)]


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE)
@given(rows=st.lists(st.tuples(st.integers(1, 10**6), st.integers(0, 2 * 10**9)), min_size=1,
                     max_size=8))
def test_random_tables_read_back(tmp_path, rows):
    f = write_table(tmp_path / "t.csv", [table_row(i, "\\core\\event\\course_viewed", u, t)
                                         for i, (u, t) in enumerate(rows)])
    got = rows_of(moodle.read(f, {}, []))
    assert [(r["participant_id"], r["occurred_at"]) for r in got] == [
        (str(u), dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00"))
        for u, t in rows]


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(seed=st.integers(0, 2**32), table=st.booleans())
def test_mangled_logs_read_or_refused(tmp_path, seed, table):
    if table:
        ok = write_table(tmp_path / "ok.csv", [table_row(i, "\\core\\event\\course_viewed", 7,
                                                         1710493500 + i) for i in range(5)])
    else:
        ok = write_export(tmp_path / "ok.csv", ROWS, index=True)
    f = tmp_path / "bad.csv"
    f.write_bytes(mangle(ok.read_bytes(), seed))
    check_read_or_refused(lambda: moodle.read(f, MAP, []))


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared sample exports are not here")
@pytest.mark.parametrize("seed", range(30))
def test_mangled_sample_read_or_refused(tmp_path, seed):
    f = tmp_path / "bad.csv"
    f.write_bytes(mangle((SAMPLES / "moodle_example_platform_logs.csv").read_bytes(), seed))
    check_read_or_refused(lambda: moodle.read(f, MAP, []))


def test_binary_and_empty_files_refused(tmp_path):
    for fname, data in (("empty.csv", b""), ("zip.csv", b"PK\x03\x04" + bytes(range(256))),
                        ("header.csv", ",".join(EXPORT).encode())):
        f = tmp_path / fname
        f.write_bytes(data)
        with pytest.raises(RefusedFile):
            moodle.read(f, MAP, [])


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared sample exports are not here")
def test_other_formats_are_not_moodle():
    for name in ("zoom_participants_heroes_full.csv", "qualtrics_sample.csv",
                 "xapi_moodle_assignment_submitted.json"):
        f = SAMPLES / name
        assert not moodle.sniff(f, f.read_text(encoding="utf-8-sig")[:65536]), name


def test_semicolon_separated_export(tmp_path):
    """A log report re-saved by a European Excel: `;` between fields, a BOM."""
    f = tmp_path / "logs.csv"
    with open(f, "w", newline="", encoding="utf-8-sig") as out:
        w = csv.writer(out, delimiter=";", lineterminator="\r\n")
        w.writerow(EXPORT)
        w.writerow(export_row("15/03/24, 09:05", "Ana Lima", 58, "Course viewed"))
    assert moodle.sniff(f, f.read_text(encoding="utf-8-sig"))
    assert rows_of(moodle.read(f, MAP, [])) == [
        {"participant_id": "Ana Lima", "exchange_id": "E1",
         "occurred_at": "2024-03-15T08:05:00+00:00", "activity": "moodle:Course viewed",
         "minutes": None, "_row": 2}]


def test_output_loads_through_the_contract_loader(tmp_path):
    """What the reader gives, written as the contract's events file, loads with no reject:
    the log's identical lines both kept, times as UTC instants, no name or IP in the warehouse."""
    from tests import program as P

    src = tmp_path / "in"
    for name, rows in (("clusters", P.CLUSTERS), ("institutions", P.INSTITUTIONS[:3]),
                       ("exchanges", P.EXCHANGES[:1])):
        P.write_csv(src / f"{name}.csv", rows)
    P.write_csv(src / "participants.csv", [
        {"participant_id": pid, "institution_id": "I1", "role": "student"}
        for pid in ("Ana Lima", "Bo Chen")])
    t = moodle.read(write_export(tmp_path / "logs.csv", ROWS, index=True), MAP, [])
    P.write_csv(src / "events.csv", [{k: v for k, v in r.items() if k != "_row"}
                                     for r in rows_of(t)])
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 0, res.stderr
    assert P.q(wh, "SELECT count(*) FROM rejects")[0][0] == 0
    assert sorted(P.q(wh, "SELECT CAST(occurred_at AS VARCHAR), activity FROM events")) == [
        ("2024-03-01 07:00:00+00", "moodle:User has logged in"),
        ("2024-03-14 17:30:00+00", "moodle:Discussion created"),
        ("2024-03-14 17:30:00+00", "moodle:Discussion created"),
        ("2024-03-15 08:05:00+00", "moodle:Course viewed")]
    data = wh.read_bytes()
    assert b"Ana Lima" not in data and b"Bo Chen" not in data and IP.encode() not in data
