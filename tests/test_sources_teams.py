"""Microsoft Teams attendance reports read as events (etl/sources/teams.py): through `read()`
and through `python -m etl load --format teams`.

Fixtures are written here in the real download's shape: UTF-16 LE with a byte order mark, tabs,
sections `1. Summary`, `2. Participants`, `3. In-Meeting Activities`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl import sources
from etl.errors import RefusedFile
from etl.pseudonym import pseudonym
from etl.sources import teams
from tests import program as P
from tests.sources_fuzz import check_read_or_refused, mangle

PARTS = ["Name", "First Join", "Last Leave", "In-Meeting Duration", "Email",
         "Participant ID (UPN)", "Role"]
ACTS = ["Name", "Join Time", "Leave Time", "Duration", "Email", "Role"]
PEOPLE = ["ana.lima@school.example", "ben.okafor@school.example"]

ROWS = [  # the participants' section starts on line 11
    ["Ana Lima", "3/4/26, 10:01:00 AM", "3/4/26, 11:14:42 AM", "1h 13m 42s",
     "Ana.Lima@School.example", "ana.lima@school.example", "Organizer"],
    ["Ben Okafor", "3/4/26, 10:02:30 AM", "3/4/26, 10:47:33 AM", "45m 3s",
     "", "BEN.OKAFOR@school.example", "Attendee"],
    ["Guest Cy", "3/4/26, 1:05:00 PM", "3/4/26, 1:05:38 PM", "38s", "", "", "Attendee"],
]


# Loads here are about the rows read and loaded, never the derived tables (conftest.py).
pytestmark = pytest.mark.usefixtures("no_derive")


def write_report(path: Path, rows: list[list[str]], start: str = "3/4/26, 10:00:12 AM",
                 encoding: str = "utf-16") -> Path:
    """A Teams attendance download: UTF-16 LE with BOM ("utf-16" writes the BOM), tabs, CRLF."""
    lines = [["1. Summary"], ["Meeting title", "Water Futures, session 3"],
             ["Attended participants", str(len(rows))], ["Start time", start],
             ["End time", "3/4/26, 11:15:00 AM"], ["Meeting duration", "1h 14m 48s"],
             ["Average attendance time", "39m 48s"], [], ["2. Participants"], PARTS, *rows, [],
             ["3. In-Meeting Activities"], ACTS,
             ["Ana Lima", "3/4/26, 10:01:00 AM", "3/4/26, 11:14:42 AM", "1h 13m 42s",
              "Ana.Lima@School.example", "Organizer"]]
    text = "".join("\t".join(r) + "\r\n" for r in lines)
    if encoding == "utf-16":
        path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    else:
        path.write_bytes(text.encode(encoding))
    return path


MAP = {"timezone": "Europe/Madrid", "exchange_id": "E1", "dayfirst": False}


def test_fixture_is_the_real_shape(tmp_path):
    f = write_report(tmp_path / "a.csv", ROWS)
    raw = f.read_bytes()
    assert raw[:2] == b"\xff\xfe" and "\t".encode("utf-16-le") in raw
    assert teams.sniff(f, sources.head_text(f))
    assert sources.detect(f) is teams


def test_one_event_per_participant_from_the_participants_section(tmp_path):
    notes: list[str] = []
    t = teams.read(write_report(tmp_path / "a.csv", ROWS), MAP, notes).to_pylist()
    # Madrid is UTC+1 on 4 March; In-Meeting Activities (line 18 on) are not read again.
    assert t == [
        {"participant_id": "ana.lima@school.example", "exchange_id": "E1",
         "occurred_at": "2026-03-04T09:01:00+00:00", "activity": "live_session",
         "minutes": "73.7", "_row": 11},
        {"participant_id": "ben.okafor@school.example", "exchange_id": "E1",
         "occurred_at": "2026-03-04T09:02:30+00:00", "activity": "live_session",
         "minutes": "45.05", "_row": 12},
        {"participant_id": "Guest Cy", "exchange_id": "E1",
         "occurred_at": "2026-03-04T12:05:00+00:00", "activity": "live_session",
         "minutes": "0.63", "_row": 13},
    ]
    assert any("UPN" in n for n in notes)
    assert any("Role" in n for n in notes)  # not read, said so


@pytest.mark.parametrize("dur,minutes", [("1h 13m 42s", "73.7"), ("45m 3s", "45.05"),
                                         ("38s", "0.63"), ("2h", "120"), ("1m", "1"),
                                         ("1h 0m 30s", "60.5")])
def test_durations(tmp_path, dur, minutes):
    rows = [["Ana", "3/4/26, 10:01:00 AM", "3/4/26, 11:14:42 AM", dur, "a@x.org", "", "R"]]
    t = teams.read(write_report(tmp_path / "a.csv", rows), MAP, []).to_pylist()
    assert t[0]["minutes"] == minutes


@pytest.mark.parametrize("dur", ["ninety minutes", "1:13:42", ""])
def test_bad_durations_pass_as_written_on_their_own_row(tmp_path, dur):
    rows = [["Ana", "3/4/26, 10:01:00 AM", "3/4/26, 11:14:42 AM", dur, "a@x.org", "", "R"],
            ["Bo", "3/4/26, 10:01:00 AM", "3/4/26, 11:14:42 AM", "5m", "b@x.org", "", "R"]]
    t = teams.read(write_report(tmp_path / "a.csv", rows), MAP, []).to_pylist()
    assert [(r["participant_id"], r["minutes"], r["_row"]) for r in t] == [
        ("a@x.org", dur or None, 11), ("b@x.org", "5", 12)]


def test_time_zone(tmp_path):
    f = write_report(tmp_path / "a.csv", ROWS)
    ny = teams.read(f, {**MAP, "timezone": "America/New_York"}, []).to_pylist()
    assert ny[0]["occurred_at"] == "2026-03-04T15:01:00+00:00"  # EST, UTC-5
    with pytest.raises(RefusedFile, match="timezone"):
        teams.read(f, {"dayfirst": False}, [])
    with pytest.raises(RefusedFile, match="not an IANA"):
        teams.read(f, {**MAP, "timezone": "Mars/Olympus"}, [])


def test_day_first_detected_or_required(tmp_path):
    rows = [["Ana", "3/4/26, 10:01:00 AM", "", "5m", "a@x.org", "", "R"]]
    f = write_report(tmp_path / "a.csv", rows)
    with pytest.raises(RefusedFile, match="--dayfirst / --monthfirst"):
        teams.read(f, {"timezone": "UTC"}, [])
    assert teams.read(f, {"timezone": "UTC", "dayfirst": True}, []).to_pylist()[0][
        "occurred_at"] == "2026-04-03T10:01:00+00:00"
    late = write_report(tmp_path / "b.csv", [["Ana", "25/4/26, 10:01:00", "", "5m", "a@x.org",
                                              "", "R"]], start="25/4/26, 10:00:00")
    notes: list[str] = []
    assert teams.read(late, {"timezone": "UTC"}, notes).to_pylist()[0][
        "occurred_at"] == "2026-04-25T10:01:00+00:00"
    assert any("day-first" in n for n in notes)


def test_activity_from_the_mapping(tmp_path):
    t = teams.read(write_report(tmp_path / "a.csv", ROWS), {**MAP, "activity": "video_call"}, [])
    assert set(t.column("activity").to_pylist()) == {"video_call"}


def test_utf8_export_reads_too(tmp_path):
    t = teams.read(write_report(tmp_path / "a.csv", ROWS, encoding="utf-8"), MAP, [])
    assert t.num_rows == 3


def write_old(path: Path, rows: list[list[str]]) -> Path:
    """The older single-table download: UTF-16 LE, tabs, `Full Name, User Action, Timestamp`."""
    lines = [["Full Name", "User Action", "Timestamp"], *rows]
    path.write_bytes(b"\xff\xfe" + "".join("\t".join(r) + "\r\n" for r in lines
                                          ).encode("utf-16-le"))
    return path


def test_older_single_table_pairs_joins_and_leaves(tmp_path):
    f = write_old(tmp_path / "old.csv", [
        ["Ana Lima", "Joined", "3/4/2026, 10:01:00 AM"],
        ["Ben Okafor", "Joined before", "3/4/2026, 10:00:00 AM"],
        ["Ana Lima", "Left", "3/4/2026, 10:31:00 AM"],
        ["Ana Lima", "Joined", "3/4/2026, 10:40:00 AM"],
        ["Ana Lima", "Left", "3/4/2026, 10:55:30 AM"],
        ["Ben Okafor", "Left", "3/4/2026, 10:18:00 AM"],
        ["Cy", "Joined", "3/4/2026, 1:05:00 PM"],
        ["Dee", "Waved", "3/4/2026, 1:05:00 PM"],
    ])
    assert teams.sniff(f, sources.head_text(f)) and sources.detect(f) is teams
    notes: list[str] = []
    t = teams.read(f, MAP, notes).to_pylist()
    assert [(r["participant_id"], r["occurred_at"], r["minutes"], r["_row"]) for r in t] == [
        ("Ana Lima", "2026-03-04T09:01:00+00:00", "45.5", 2),
        ("Ben Okafor", "2026-03-04T09:00:00+00:00", "18", 3),
        ("Cy", "2026-03-04T12:05:00+00:00", "0", 8),
        ("Dee", "3/4/2026, 1:05:00 PM", None, 9),  # an action it does not know: its own row
    ]
    assert any("without a leave" in n for n in notes)
    assert any("full name only" in n for n in notes)


def test_not_teams(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("participant_id,exchange_id,occurred_at,activity\nP1,E1,x,y\n")
    assert not teams.sniff(f, f.read_text())
    with pytest.raises(RefusedFile, match="no Teams participants' section"):
        teams.read(f, MAP, [])


# -- through `python -m etl load` ----------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("base")
    wh = P.loaded_program(d)
    roster = P.write_csv(d / "participants_roster.csv", [
        {"participant_id": p, "institution_id": "I1", "role": "student"} for p in PEOPLE])
    res = P.run_etl("load", str(roster), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    return wh


def test_load_through_the_cli(base, tmp_path):
    wh = P.warehouse_copy(base, tmp_path)
    f = write_report(tmp_path / "attendance.csv", ROWS[:2])
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"timezone": "Europe/Madrid"}), encoding="utf-8")
    args = ("--format", "teams", "--mapping", str(m), "--exchange", "E1", "--warehouse", str(wh))
    res = P.run_etl("load", str(f), *args)  # 3/4/26 could be either: the file cannot tell
    assert res.returncode != 0 and "--dayfirst / --monthfirst" in res.stdout + res.stderr
    res = P.run_etl("load", str(f), *args, "--monthfirst")
    assert res.returncode == 0, res.stdout + res.stderr
    got = {}
    for who in PEOPLE:
        got[who] = P.q(wh, "SELECT strftime(occurred_at, '%Y-%m-%d %H:%M:%S'), activity, minutes "
                           "FROM events WHERE participant_id = ? AND exchange_id = 'E1'",
                       [pseudonym(who, P.TEST_KEY.encode())])
    assert got == {PEOPLE[0]: [("2026-03-04 09:01:00", "live_session", 73.7)],
                   PEOPLE[1]: [("2026-03-04 09:02:30", "live_session", 45.05)]}
    blob = wh.read_bytes()
    for v in (*PEOPLE, "Ana.Lima@School.example", "BEN.OKAFOR", "Ana Lima", "Ben Okafor"):
        assert v.encode() not in blob and v.encode("utf-16-le") not in blob, v


# -- fuzzing ---------------------------------------------------------------------------------------

FIXTURE = [HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(seed=st.integers(0, 2**32))
def test_mangled_reports_read_or_refused(tmp_path, seed):
    data = write_report(tmp_path / "ok.csv", ROWS).read_bytes()
    f = tmp_path / "bad.csv"
    f.write_bytes(mangle(data, seed))
    check_read_or_refused(lambda: teams.read(f, MAP, []))


@pytest.mark.parametrize("cut", [0, 1, 2, 40, 200, 400, 600])
def test_truncated_reports_read_or_refused(tmp_path, cut):
    data = write_report(tmp_path / "ok.csv", ROWS).read_bytes()
    f = tmp_path / "cut.csv"
    f.write_bytes(data[:cut])
    check_read_or_refused(lambda: teams.read(f, MAP, []))


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(seed=st.integers(0, 2**32))
def test_mangled_older_lists_read_or_refused(tmp_path, seed):
    data = write_old(tmp_path / "ok.csv", [["Ana", "Joined", "3/4/2026, 10:01:00 AM"],
                                           ["Ana", "Left", "3/4/2026, 10:31:00 AM"]]).read_bytes()
    f = tmp_path / "bad.csv"
    f.write_bytes(mangle(data, seed))
    check_read_or_refused(lambda: teams.read(f, MAP, []))


def test_a_zoom_report_is_still_zoom(tmp_path):
    """Teams is tried before Zoom by `detect`; its sniff must not take Zoom's reports."""
    from etl.sources import zoom
    f = tmp_path / "z.csv"
    f.write_text("Meeting ID,Topic,Start Time\n1,T,11/19/2021 10:00:00 AM\n,,\n"
                 "Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes)\n"
                 "Ana,a@x.org,11/19/2021 10:00:00 AM,11/19/2021 10:30:00 AM,30\n")
    assert not teams.sniff(f, sources.head_text(f))
    assert sources.detect(f) is zoom


def test_a_bad_duration_is_rejected_on_its_own_row(base, tmp_path):
    wh = P.warehouse_copy(base, tmp_path)
    rows = [ROWS[0], ["Ben Okafor", "3/4/26, 10:02:30 AM", "3/4/26, 10:47:33 AM", "ninety",
                      "ben.okafor@school.example", "", "Attendee"]]
    f = write_report(tmp_path / "attendance.csv", rows)
    res = P.run_etl(
        "load", str(f), "--format", "teams", "--exchange", "E1", "--monthfirst",
        "--mapping", str(_utc_mapping(tmp_path)), "--warehouse", str(wh))
    out = res.stdout + res.stderr
    assert "attendance.csv: row 12, column minutes: number: 'ninety' is not a number" in out
    assert "column occurred_at" not in out  # its First Join was read: only the minutes are bad
    got = P.q(wh, "SELECT file, row_number, column_name FROM rejects WHERE file LIKE ?",
              ["%attendance.csv"])
    assert [(Path(r[0]).name, r[1], r[2]) for r in got] == [("attendance.csv", 12, "minutes")], got
    assert P.q(wh, "SELECT count(*) FROM events WHERE participant_id = ?",
               [pseudonym(PEOPLE[0], P.TEST_KEY.encode())]) == [(1,)]


def _utc_mapping(tmp_path: Path) -> Path:
    m = tmp_path / "utc.yaml"
    m.write_text("timezone: UTC\n", encoding="utf-8")
    return m


# -- the mapping's participant, describe(), and a round trip of random reports -------------------

@pytest.mark.parametrize("choice,ids", [
    ("upn", ["ana.lima@school.example", "ben.okafor@school.example", None]),
    ("email", ["ana.lima@school.example", None, None]),
    ("name", ["Ana Lima", "Ben Okafor", "Guest Cy"]),
    # any column of the section, by its header; one person per value (two attendees: one)
    ("Role", ["Organizer", "Attendee"]),
])
def test_the_mapping_chooses_the_participant(tmp_path, choice, ids):
    notes: list[str] = []
    t = teams.read(write_report(tmp_path / "a.csv", ROWS), {**MAP, "participant": choice}, notes)
    assert t.column("participant_id").to_pylist() == ids
    # rows without one stay, each on its own, for the loader to reject
    assert t.column("_row").to_pylist() == [11, 12, 13][:len(ids)]


def test_a_participant_the_report_lacks_is_refused(tmp_path):
    f = write_report(tmp_path / "a.csv", ROWS)
    with pytest.raises(RefusedFile, match="participant column 'Student number' is not in"):
        teams.read(f, {**MAP, "participant": "Student number"}, [])
    no_upn = tmp_path / "b.csv"
    no_upn.write_bytes(f.read_bytes().decode("utf-16").replace("\tParticipant ID (UPN)", "\tX")
                       .encode("utf-16"))
    with pytest.raises(RefusedFile, match=r"by upn but .* no 'Participant ID \(UPN\)' column"):
        teams.read(no_upn, {**MAP, "participant": "upn"}, [])


def test_describe_says_which_download_and_where_its_table_is(tmp_path):
    d = teams.describe(write_report(tmp_path / "a.csv", ROWS))
    assert d == {"encoding": "UTF-16 LE", "bom": True, "encoding_note": None,
                 "version": "attendance report, '2. Participants' section read",
                 "header_rows": 10, "separator": "\t"}
    old = teams.describe(write_old(tmp_path / "o.csv", [["Ana", "Joined", "3/4/2026, 10:01 AM"]]))
    assert old["version"].startswith("older attendance list") and old["header_rows"] == 1
    assert teams.describe(write_report(tmp_path / "u.csv", ROWS, encoding="utf-8"))[
        "encoding"] == "UTF-8"


def test_inspect_shows_the_layout_and_where_the_exchange_comes_from(base, tmp_path):
    wh = P.warehouse_copy(base, tmp_path)
    f = write_report(tmp_path / "attendance.csv", ROWS[:2])
    m = _utc_mapping(tmp_path)
    res = P.run_etl("inspect", str(f), "--mapping", str(m), "--monthfirst", "--warehouse",
                    str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    for line in ("format: teams (attendance report, '2. Participants' section read), holds "
                 "events", "encoding: UTF-16 LE with byte order mark",
                 "separator: tab; header rows: 10", "rows: 2",
                 "exchange_id: MISSING: a teams export carries no exchange: give --exchange ID "
                 "or put 'exchange: ID' in the mapping (without it a load refuses the file)",
                 "a load would refuse it: says nothing of the exchange of its rows"):
        assert line in res.stdout, (line, res.stdout)
    res = P.run_etl("inspect", str(f), "--mapping", str(m), "--monthfirst", "--exchange", "E1",
                    "--warehouse", str(wh))
    assert "exchange_id: 'E1' (--exchange or mapping)" in res.stdout, res.stdout
    assert "a load would bring 2 of 2 rows, reject 0" in res.stdout, res.stdout
    # and the load itself refuses the report without an exchange, leaving events as they were
    before = P.q(wh, "SELECT count(*) FROM events")
    res = P.run_etl("load", str(f), "--mapping", str(m), "--monthfirst", "--warehouse", str(wh))
    assert res.returncode == 1 and (res.stdout + res.stderr).strip() == (
        f"error: {f}: refused: says nothing of the exchange of its rows (a teams export carries "
        "no exchange: give --exchange ID or put 'exchange: ID' in the mapping)"), res
    assert P.q(wh, "SELECT count(*) FROM events") == before


def _clock(t) -> str:
    """Teams' local clock time: `3/4/26, 1:05:00 PM` (month-first, two-digit year)."""
    half = "AM" if t.hour < 12 else "PM"
    return f"{t.month}/{t.day}/{t:%y}, {t.hour % 12 or 12}:{t:%M:%S} {half}"


def _duration(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v]
    return " ".join(parts) or "0s"


_names = st.from_regex(r"[A-Z][a-z]{1,7} [A-Z][a-z]{1,7}", fullmatch=True)
_people = st.lists(
    st.tuples(_names, st.sampled_from(["email", "upn", "both", "name"]),
              st.datetimes(min_value=dt.datetime(2020, 1, 1),
                           max_value=dt.datetime(2035, 12, 31)),
              st.integers(0, 5 * 3600)),
    min_size=1, max_size=10, unique_by=lambda p: p[0])


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE)
@given(people=_people, zone=st.sampled_from(["UTC", "Europe/Madrid", "America/New_York",
                                             "Asia/Kolkata"]))
def test_random_reports_read_back(tmp_path, people, zone):
    """Random participants written as a Teams report read back to the same people, first
    joins (local clock times in the mapping's zone, to UTC) and minutes."""
    # Whole seconds, and away from daylight-saving changes (a folded clock hour is ambiguous).
    people = [(n, how, t.replace(month=t.month if t.month in (1, 2, 6, 7, 8) else 7,
                                 day=min(t.day, 28), microsecond=0), s)
              for n, how, t, s in people]
    rows, want = [], []
    for i, (name, how, t, secs) in enumerate(people):
        user = name.lower().replace(" ", ".")
        email = f"{user.title()}@School.example" if how in ("email", "both") else ""
        upn = f"{user.upper()}@school.example" if how in ("upn", "both") else ""
        leave = t + dt.timedelta(seconds=secs)
        rows.append([name, _clock(t), _clock(leave), _duration(secs), email, upn, "Attendee"])
        pid = (email or upn).lower() or name
        utc = t.replace(tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)
        want.append((pid, utc.strftime("%Y-%m-%dT%H:%M:%S+00:00"), secs, 11 + i))
    f = write_report(tmp_path / "random.csv", rows)
    got = teams.read(f, {"timezone": zone, "exchange_id": "E9", "dayfirst": False}, []).to_pylist()
    assert [(r["participant_id"], r["occurred_at"], r["_row"]) for r in got] == [
        (p, at, row) for p, at, _, row in want]
    for r, (_, _, secs, _) in zip(got, want, strict=True):
        assert abs(float(r["minutes"]) * 60 - secs) <= 0.3 + 1e-6, (r["minutes"], secs)
        assert r["exchange_id"] == "E9" and r["activity"] == "live_session"
