"""The log and statement readers through the real path: `python -m etl load --format … --mapping
… --exchange …` puts Zoom, Moodle and xAPI activity into the warehouse's events, pseudonymised,
with IP addresses and e-mails nowhere in the warehouse file (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from etl.pseudonym import pseudonym
from tests import program as P

q = P.q
PEOPLE = ["ana.lima@school.example", "ben.okafor@school.example"]


# Loads here are about the rows read and loaded, never the derived tables (conftest.py).
pytestmark = pytest.mark.usefixtures("no_derive")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("base")
    wh = P.loaded_program(d)
    roster = P.write_csv(d / "participants_roster.csv", [
        {"participant_id": p, "institution_id": "I1", "role": "student"} for p in PEOPLE])
    res = P.run_etl("load", str(roster), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    return wh


@pytest.fixture
def wh(base: Path, tmp_path: Path) -> Path:
    return P.warehouse_copy(base, tmp_path)


def _mapping(path: Path, m: dict) -> Path:
    path.write_text(yaml.safe_dump(m), encoding="utf-8")
    return path


def _events(wh: Path, who: str) -> list[tuple]:
    return q(wh, "SELECT strftime(occurred_at, '%Y-%m-%d %H:%M'), activity, minutes FROM events "
                 "WHERE participant_id = ? AND exchange_id = 'E1' ORDER BY ALL",
             [pseudonym(who, P.TEST_KEY.encode())])


def _nothing_in_clear(wh: Path, *values: str) -> None:
    blob = wh.read_bytes()
    for v in values:
        assert v.encode() not in blob, v


def test_a_zoom_participant_report_loads_as_one_event_per_person_and_meeting(wh, tmp_path):
    f = tmp_path / "participants_8812.csv"
    f.write_text(
        "Meeting ID,Topic,Start Time,End Time,User Email,Duration (Minutes),Participants\n"
        "8812,Water Futures,03/04/2026 10:00:00 AM,03/04/2026 11:00:00 AM,host@school.example,"
        "60,2\n"
        ",,,,,,\n"
        "Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes),Guest\n"
        "Ana Lima,Ana.Lima@school.example,03/04/2026 10:01:00 AM,03/04/2026 10:31:00 AM,30,No\n"
        "Ben Okafor,ben.okafor@school.example,03/04/2026 10:02:00 AM,03/04/2026 10:20:00 AM,"
        "18,No\n"
        "Ana Lima,ana.lima@school.example,03/04/2026 10:40:00 AM,03/04/2026 10:55:00 AM,15,No\n",
        encoding="utf-8")
    m = _mapping(tmp_path / "zoom.yaml", {"timezone": "Europe/Madrid"})
    args = ("--format", "zoom", "--mapping", str(m), "--exchange", "E1", "--warehouse", str(wh))
    res = P.run_etl("load", str(f), *args)  # 03/04 could be either: the file cannot tell
    assert res.returncode != 0 and "--dayfirst / --monthfirst" in res.stdout + res.stderr
    assert q(wh, "SELECT count(*) FROM events WHERE exchange_id = 'E1' AND participant_id = ?",
             [pseudonym(PEOPLE[0], P.TEST_KEY.encode())]) == [(0,)]
    res = P.run_etl("load", str(f), *args, "--monthfirst")
    assert res.returncode == 0, res.stdout + res.stderr
    # Madrid is UTC+1 on 4 March: 10:01 local is 09:01 UTC; Ana's rejoin is added (30 + 15)
    assert _events(wh, PEOPLE[0]) == [("2026-03-04 09:01", "live_session", 45.0)]
    assert _events(wh, PEOPLE[1]) == [("2026-03-04 09:02", "live_session", 18.0)]
    _nothing_in_clear(wh, *PEOPLE, "host@school.example", "Ana Lima")


def test_a_moodle_log_report_loads_its_events_and_drops_ip_addresses(wh, tmp_path):
    f = tmp_path / "logs_course_12.csv"
    f.write_text(
        "Time,User full name,Affected user,Event context,Component,Event name,Description,"
        "Origin,IP address\n"
        '"4/03/26, 12:30",Ben Okafor,-,Forum: Water,Forum,Post created,'
        "The user with id '7' has created the post,web,203.0.113.77\n"
        '"4/03/26, 11:05",Ana Lima,-,Course: Water Futures,System,Course viewed,'
        "The user with id '6' viewed the course,web,198.51.100.23\n",
        encoding="utf-8")
    m = _mapping(tmp_path / "moodle.yaml", {
        "timezone": "Europe/Madrid", "participant": "name", "dayfirst": True,
        "activity": {"Post created": "forum_post", "Course viewed": "view"}})
    roster = P.write_csv(tmp_path / "participants_names.csv", [
        {"participant_id": n, "institution_id": "I1", "role": "student"}
        for n in ("Ana Lima", "Ben Okafor")])
    assert P.run_etl("load", str(roster), "--warehouse", str(wh)).returncode == 0
    res = P.run_etl("load", str(f), "--format", "moodle", "--mapping", str(m), "--exchange",
                    "E1", "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert _events(wh, "Ana Lima") == [("2026-03-04 10:05", "view", None)]
    assert _events(wh, "Ben Okafor") == [("2026-03-04 11:30", "forum_post", None)]
    _nothing_in_clear(wh, "203.0.113.77", "198.51.100.23")


def test_xapi_statements_load_with_voided_ones_removed(wh, tmp_path):
    def st(i: str, who: str, verb: str, when: str, dur: str | None = None) -> dict:
        s = {"id": i, "actor": {"mbox": f"mailto:{who}", "objectType": "Agent"},
             "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}",
                      "display": {"en-US": verb}},
             "object": {"id": "https://lms.example/course/water", "objectType": "Activity"},
             "timestamp": when}
        if dur:
            s["result"] = {"duration": dur}
        return s

    statements = [
        st("a1", PEOPLE[0], "completed", "2026-03-05T08:00:00Z", "PT1H30M"),
        st("b1", PEOPLE[1], "attempted", "2026-03-05T09:00:00+02:00"),
        st("b2", PEOPLE[1], "completed", "2026-03-05T09:30:00+02:00", "PT12M"),
        {"id": "v1", "actor": {"mbox": f"mailto:{PEOPLE[1]}"},
         "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
         "object": {"objectType": "StatementRef", "id": "b2"},
         "timestamp": "2026-03-05T10:00:00Z"},
    ]
    f = tmp_path / "statements.jsonl"
    f.write_text("\n".join(json.dumps(s) for s in statements) + "\n", encoding="utf-8")
    res = P.run_etl("load", str(f), "--format", "xapi", "--exchange", "E1", "--warehouse",
                    str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert _events(wh, PEOPLE[0]) == [("2026-03-05 08:00", "completed", 90.0)]
    assert _events(wh, PEOPLE[1]) == [("2026-03-05 07:00", "attempted", None)]  # b2 voided
    _nothing_in_clear(wh, *PEOPLE)


def test_wave_or_exchange_with_contract_files_only_is_refused_not_ignored(wh, tmp_path):
    """A contract file's rows carry their own exchange_id and wave, so --exchange/--wave cannot
    apply to it: given with contract files alone, the flag applies to nothing and the files are
    refused, naming the flag; given with an export too, the export is filled and the contract
    file loads as it is, its report saying the flag was not applied to it."""
    ev = P.write_csv(tmp_path / "events_extra.csv", [
        {"participant_id": PEOPLE[0], "exchange_id": "E1", "occurred_at": "2026-03-06 10:00",
         "activity": "message", "minutes": "3"}])
    stmt = {"actor": {"mbox": f"mailto:{PEOPLE[1]}"},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
            "object": {"id": "https://lms.example/course/water"},
            "timestamp": "2026-03-06T11:00:00Z"}
    x = tmp_path / "statements.json"
    x.write_text(json.dumps(stmt), encoding="utf-8")
    before = q(wh, "SELECT count(*) FROM events")
    res = P.run_etl("load", str(ev), "--exchange", "E1", "--wave", "pre", "--warehouse", str(wh))
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert (f"error: {ev}: refused: --wave and --exchange: these fill in what an export "
            "(Qualtrics, Zoom, ...) leaves out, but this file is in the input contract's own "
            "shape, whose rows carry their own exchange_id (and wave): load it without --wave "
            "and --exchange") in out, out
    assert _events(wh, PEOPLE[0]) == []  # nothing of the contract file
    assert q(wh, "SELECT count(*) FROM events") == before

    res = P.run_etl("load", str(ev), str(x), "--exchange", "E1", "--warehouse", str(wh))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert ("--exchange not applied to this file: it is in the input contract's own shape, "
            "whose rows carry their own exchange_id (and wave); --exchange filled the exports "
            "of this command only") in out, out
    # (a naive time, read in I1's zone: UTC+1 in March)
    assert _events(wh, PEOPLE[0]) == [("2026-03-06 09:00", "message", 3.0)]
    assert _events(wh, PEOPLE[1]) == [("2026-03-06 11:00", "completed", None)]
    assert q(wh, "SELECT count(*) FROM events") == [(before[0][0] + 2,)]
