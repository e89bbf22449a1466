"""Zoom participant reports read as events (etl/sources/zoom.py), through `read()` directly.

Fixtures are written here in the real report's shape: the meeting preamble, the separator row,
then `Name (Original Name), User Email, Join Time, Leave Time, Duration (Minutes), Guest, ...`.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.errors import RefusedFile
from etl.sources import zoom
from tests.sources_fuzz import SAMPLES, check_read_or_refused, mangle

PREAMBLE = ["Meeting ID", "Topic", "Start Time", "End Time", "User Email", "Duration (Minutes)",
            "Participants"]
HEADER = ["Name (Original Name)", "User Email", "Join Time", "Leave Time", "Duration (Minutes)",
          "Guest", "Recording Consent"]
HOST = "host.person@example.org"


def us(t: dt.datetime) -> str:
    """Zoom's US clock: 11/19/2021 9:54:15 AM."""
    return f"{t.month}/{t.day}/{t.year} {t.strftime('%I').lstrip('0')}:{t:%M:%S} {t:%p}"


def write_report(path: Path, rows: list[list[str]], *, preamble: bool = True,
                 start: str = "11/19/2021 10:00:00 AM", header: list[str] = HEADER,
                 encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f, lineterminator="\n")
        if preamble:
            w.writerow(PREAMBLE)
            w.writerow(["60245167821", "Weekly exchange, session 3", start,
                        "11/19/2021 12:00:00 PM", HOST, "120", str(len(rows))])
            w.writerow([""] * len(PREAMBLE))
        w.writerow(header)
        w.writerows(rows)
    return path


ROWS = [  # line 5 on
    ["Ana Lima", "Ana.Lima@Example.org", "11/19/2021 9:58:00 AM", "11/19/2021 10:30:10 AM", "33",
     "No", "Y"],
    ["Bo (Bo Original)", "", "11/19/2021 10:02:00 AM", "11/19/2021 11:00:00 AM", "58", "Yes",
     "Y"],
    ["Ana Lima", "ana.lima@example.org", "11/19/2021 10:40:00 AM", "11/19/2021 11:00:00 AM", "20",
     "No", "Y"],
    ["Cy", "cy@example.org", "11/19/2021 1:05:00 PM", "11/19/2021 1:06:00 PM", "1", "No", "NA"],
]
MAP = {"timezone": "Europe/Madrid", "exchange_id": "E1"}


def rows_of(t) -> list[dict]:
    return t.to_pylist()


def test_rejoins_add_up_at_the_first_join_in_utc(tmp_path):
    notes: list[str] = []
    t = zoom.read(write_report(tmp_path / "z.csv", ROWS), MAP, notes)
    assert rows_of(t) == [
        {"participant_id": "ana.lima@example.org", "exchange_id": "E1",
         "occurred_at": "2021-11-19T08:58:00+00:00", "activity": "live_session", "minutes": "53",
         "_row": 5},
        {"participant_id": "Bo Original", "exchange_id": "E1",
         "occurred_at": "2021-11-19T09:02:00+00:00", "activity": "live_session", "minutes": "58",
         "_row": 6},
        {"participant_id": "cy@example.org", "exchange_id": "E1",
         "occurred_at": "2021-11-19T12:05:00+00:00", "activity": "live_session", "minutes": "1",
         "_row": 8},
    ]
    assert any("4 rows are 3 events" in n for n in notes)
    assert any("rows without one by name" in n for n in notes)
    assert any("not read: Guest, Recording Consent" in n for n in notes)


def test_overlapping_rows_of_one_person_count_once(tmp_path):
    rows = [
        ["Di", "di@example.org", "11/19/2021 10:00:00 AM", "11/19/2021 11:00:00 AM", "60", "", ""],
        ["Di", "di@example.org", "11/19/2021 10:30:00 AM", "11/19/2021 11:10:00 AM", "40", "", ""],
        ["Di", "di@example.org", "11/19/2021 11:30:00 AM", "11/19/2021 11:40:00 AM", "10", "", ""],
    ]
    notes: list[str] = []
    t = zoom.read(write_report(tmp_path / "z.csv", rows), MAP, notes)
    # 10:00-11:10 on two devices is 70 minutes, not 100; the later stretch adds its 10.
    assert [(r["minutes"], r["_row"]) for r in rows_of(t)] == [("80", 5)]
    assert any("two rows at once" in n for n in notes)


def test_missing_duration_counts_join_to_leave(tmp_path):
    rows = [["Di", "di@example.org", "11/19/2021 10:00:00 AM", "11/19/2021 10:10:30 AM", "", "",
             ""]]
    t = zoom.read(write_report(tmp_path / "z.csv", rows), MAP, [])
    assert rows_of(t)[0]["minutes"] == "11"


def test_local_times_need_a_zone(tmp_path):
    f = write_report(tmp_path / "z.csv", ROWS)
    with pytest.raises(RefusedFile, match="set timezone in the mapping"):
        zoom.read(f, {"exchange_id": "E1"}, [])
    with pytest.raises(RefusedFile, match="'Mars/Olympus' is not an IANA time zone"):
        zoom.read(f, {"timezone": "Mars/Olympus"}, [])


def test_times_with_an_offset_need_no_zone(tmp_path):
    rows = [["Di", "di@example.org", "2021-11-19T10:00:00+01:00", "2021-11-19T10:20:00+01:00",
             "20", "", ""]]
    t = zoom.read(write_report(tmp_path / "z.csv", rows, preamble=False), {}, [])
    assert rows_of(t)[0]["occurred_at"] == "2021-11-19T09:00:00+00:00"
    assert rows_of(t)[0]["exchange_id"] is None


def test_iso_local_times_read_in_the_zone(tmp_path):
    rows = [["Di", "di@example.org", "2021-07-01 10:00:00", "2021-07-01 10:20:00", "20", "", ""]]
    t = zoom.read(write_report(tmp_path / "z.csv", rows, preamble=False),
                  {"timezone": "America/Lima"}, [])
    assert rows_of(t)[0]["occurred_at"] == "2021-07-01T15:00:00+00:00"


def test_summer_time_changes(tmp_path):
    """New York: 2021-03-14 02:30 does not exist, 2021-11-07 01:30 happens twice. Read as the
    contract's loader reads them (DuckDB's timezone()): the skipped hour with the offset before
    the change (EST, 07:30Z), the repeated hour with the offset after it (EST, 06:30Z)."""
    rows = [
        ["A", "a@example.org", "3/14/2021 2:30:00 AM", "3/14/2021 3:40:00 AM", "10", "", ""],
        ["B", "b@example.org", "11/7/2021 1:30:00 AM", "11/7/2021 1:40:00 AM", "10", "", ""],
        ["C", "c@example.org", "7/13/2021 1:30:00 PM", "7/13/2021 1:40:00 PM", "10", "", ""],
    ]
    notes: list[str] = []
    t = zoom.read(write_report(tmp_path / "z.csv", rows, preamble=False),
                  {"timezone": "America/New_York"}, notes)
    assert [r["occurred_at"] for r in rows_of(t)] == [
        "2021-03-14T07:30:00+00:00", "2021-11-07T06:30:00+00:00", "2021-07-13T17:30:00+00:00"]
    assert any(n.startswith("2 local time(s) fall in the hour America/New_York repeats or skips")
               for n in notes)


def test_day_first_detected_or_required(tmp_path):
    row = ["Di", "{d}@example.org", "{d} 10:00", "{d} 10:20", "20", "", ""]

    def one(d: str) -> list[str]:  # one person a day
        return [c.format(d=d) for c in row]

    f = write_report(tmp_path / "a.csv", [one("02/03/2021")], preamble=False)
    with pytest.raises(RefusedFile, match="day-first or month-first.*dayfirst"):
        zoom.read(f, {"timezone": "UTC"}, [])
    assert rows_of(zoom.read(f, {"timezone": "UTC", "dayfirst": True}, []))[0][
        "occurred_at"] == "2021-03-02T10:00:00+00:00"
    assert rows_of(zoom.read(f, {"timezone": "UTC", "dayfirst": False}, []))[0][
        "occurred_at"] == "2021-02-03T10:00:00+00:00"
    notes: list[str] = []
    f = write_report(tmp_path / "b.csv", [one("02/03/2021"), one("25/03/2021")], preamble=False)
    assert [r["occurred_at"][:10] for r in rows_of(zoom.read(f, {"timezone": "UTC"}, notes))] \
        == ["2021-03-02", "2021-03-25"]
    assert any("day-first" in n for n in notes)
    f = write_report(tmp_path / "c.csv", [one("25/03/2021"), one("03/25/2021")], preamble=False)
    with pytest.raises(RefusedFile, match="neither all day-first nor all month-first"):
        zoom.read(f, {"timezone": "UTC"}, [])


def test_preamble_start_time_tells_month_first(tmp_path):
    rows = [["Di", "di@example.org", "11/01/2021 10:00:00 AM", "11/01/2021 10:20:00 AM", "20",
             "", ""]]
    f = write_report(tmp_path / "z.csv", rows, start="11/13/2021 10:00:00 AM")
    assert rows_of(zoom.read(f, {"timezone": "UTC"}, []))[0]["occurred_at"] \
        == "2021-11-01T10:00:00+00:00"


def test_participant_by_mapping(tmp_path):
    f = write_report(tmp_path / "z.csv", ROWS)
    by_email = rows_of(zoom.read(f, {**MAP, "participant": "email"}, []))
    # Bo has no e-mail: the row stays alone with no participant, for the loader to reject.
    assert [(r["participant_id"], r["_row"]) for r in by_email] == [
        ("ana.lima@example.org", 5), (None, 6), ("cy@example.org", 8)]
    by_name = rows_of(zoom.read(f, {**MAP, "participant": "name"}, []))
    assert [r["participant_id"] for r in by_name] == ["Ana Lima", "Bo Original", "Cy"]
    by_col = rows_of(zoom.read(f, {**MAP, "participant": "Recording Consent"}, []))
    assert {r["participant_id"] for r in by_col} == {"Y", "NA"}
    with pytest.raises(RefusedFile, match="participant column 'Student ID' is not in"):
        zoom.read(f, {**MAP, "participant": "Student ID"}, [])


def test_activity_from_the_mapping(tmp_path):
    t = zoom.read(write_report(tmp_path / "z.csv", ROWS), {**MAP, "activity": "video_call"}, [])
    assert {r["activity"] for r in rows_of(t)} == {"video_call"}


def test_bad_values_pass_as_written_on_their_own_row(tmp_path):
    rows = [ROWS[0], ["Ana Lima", "ana.lima@example.org", "yesterday", "", "20", "", ""],
            ["Cy", "cy@example.org", "11/19/2021 1:05:00 PM", "", "ten", "", ""]]
    t = rows_of(zoom.read(write_report(tmp_path / "z.csv", rows), MAP, []))
    assert [(r["occurred_at"], r["minutes"], r["_row"]) for r in t] == [
        ("2021-11-19T08:58:00+00:00", "33", 5), ("yesterday", "20", 6),
        ("11/19/2021 1:05:00 PM", "ten", 7)]


def test_newer_spellings_without_preamble(tmp_path):
    header = ["Name (original name)", "Email", "Join time", "Leave time", "Duration (minutes)",
              "Guest", "In waiting room"]
    rows = [["Ana", "ana@example.org", "11/19/2021 09:58:00 AM", "11/19/2021 10:30:00 AM", "32",
             "No", "No"]]
    f = write_report(tmp_path / "z.csv", rows, preamble=False, header=header)
    assert zoom.sniff(f, f.read_text())
    assert rows_of(zoom.read(f, MAP, [])) == [
        {"participant_id": "ana@example.org", "exchange_id": "E1",
         "occurred_at": "2021-11-19T08:58:00+00:00", "activity": "live_session", "minutes": "32",
         "_row": 2}]


def test_windows_1252_and_utf16_read_with_a_note(tmp_path):
    rows = [["José (José Pérez)", "", "11/19/2021 9:58:00 AM", "11/19/2021 10:30:00 AM", "33",
             "Yes", "Y"]]
    for enc in ("cp1252", "utf-16"):
        notes: list[str] = []
        t = zoom.read(write_report(tmp_path / f"{enc}.csv", rows, encoding=enc), MAP, notes)
        assert rows_of(t)[0]["participant_id"] == "José Pérez"
        assert any("read as" in n for n in notes)


def test_sniff(tmp_path):
    f = write_report(tmp_path / "z.csv", ROWS)
    assert zoom.sniff(f, f.read_text())
    assert not zoom.sniff(f, "participant_id,exchange_id,occurred_at,activity\nP1,E1,x,y\n")


def test_describe_says_which_report_and_where_its_table_is(tmp_path):
    d = zoom.describe(write_report(tmp_path / "z.csv", ROWS))
    assert d == {"encoding": "UTF-8", "bom": False, "encoding_note": None,
                 "version": "participant report with the meeting's details", "header_rows": 4,
                 "separator": ","}
    bare = zoom.describe(write_report(tmp_path / "b.csv", ROWS, preamble=False,
                                      encoding="utf-16"))
    assert (bare["version"], bare["header_rows"], bare["encoding"]) == (
        "participant list", 1, "UTF-16 LE")
    garbage = tmp_path / "g.csv"
    garbage.write_text("Meeting ID,Topic\n1,no participants' table here\n")
    assert "version" not in zoom.describe(garbage)


def test_no_participants_table_refused(tmp_path):
    f = tmp_path / "z.csv"
    f.write_text("participant_id,exchange_id\nP1,E1\n")
    with pytest.raises(RefusedFile, match="no Zoom participants' table"):
        zoom.read(f, MAP, [])


def test_identifiers_only_as_participant_id(tmp_path):
    """The host's e-mail, display names and the topic appear in no column and no note; e-mails
    only as participant ids (which the loader pseudonymises)."""
    notes: list[str] = []
    t = zoom.read(write_report(tmp_path / "z.csv", ROWS), MAP, notes)
    others = [v for r in rows_of(t) for k, v in r.items() if k != "participant_id"]
    text = " ".join(str(v) for v in others) + " ".join(notes)
    for secret in (HOST, "ana.lima", "Ana Lima", "Bo Original", "cy@example.org", "exchange,"):
        assert secret not in text


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared sample exports are not here")
def test_the_shared_sample():
    f = SAMPLES / "zoom_participants_heroes_full.csv"
    assert zoom.sniff(f, f.read_text()[:65536])
    notes: list[str] = []
    t = rows_of(zoom.read(f, {"timezone": "America/New_York", "exchange_id": "E1"}, notes))
    assert len(t) == 27  # 31 rows, four people on two rows each
    by = {r["participant_id"]: r for r in t}
    # Cyborg Superman left and came back: 52 + 34 minutes, at the first join (EST = UTC-5).
    assert by["cyborg-superman_cyborg@dc.com"]["minutes"] == "86"
    assert by["cyborg-superman_cyborg@dc.com"]["occurred_at"] == "2021-11-19T15:08:32+00:00"
    # Power Girl was in on two rows at once, 10:08:26 to 12:01:58: 114 minutes, not 225.
    assert by["power-girl_kryptonian@dc.com"]["minutes"] == "114"
    assert all("@" in r["participant_id"] for r in t)


# -- properties and fuzzing ----------------------------------------------------------------------

BASE = dt.datetime(2024, 1, 1)
FIXTURE = [HealthCheck.function_scoped_fixture]  # tmp_path: each example writes its own file
person = st.tuples(
    st.text(st.characters(codec="utf-8", categories=["L", "N", "Zs"]), min_size=1, max_size=12)
    .map(str.strip).filter(bool),
    st.lists(st.tuples(st.integers(0, 600), st.integers(1, 90)), min_size=1, max_size=3),
)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(people=st.lists(person, min_size=1, max_size=6), start_minutes=st.integers(0, 10**6))
def test_random_reports_read_back(tmp_path, people, start_minutes):
    """Random people, each on one to three separate stretches, written as a Zoom report in UTC:
    one event each, at their first join, with their minutes added up."""
    base = BASE + dt.timedelta(minutes=start_minutes)
    rows, expected = [], []
    for i, (name, gaps) in enumerate(people):
        email = f"p{i}@example.org"
        t = base
        first, total = None, 0
        for gap, minutes in gaps:
            join = t + dt.timedelta(minutes=gap, seconds=7)
            leave = join + dt.timedelta(minutes=minutes)
            rows.append([name, email, us(join), us(leave), str(minutes), "No", "Y"])
            first = first or join
            total += minutes
            t = leave
        expected.append((email, f"{first:%Y-%m-%dT%H:%M:%S}+00:00", str(total)))
    t = zoom.read(write_report(tmp_path / "r.csv", rows, start=us(base)),
                  {"timezone": "UTC", "dayfirst": False}, [])
    got = sorted((r["participant_id"], r["occurred_at"], r["minutes"]) for r in rows_of(t))
    assert got == sorted(expected)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(seed=st.integers(0, 2**32))
def test_mangled_reports_read_or_refused(tmp_path, seed):
    data = write_report(tmp_path / "ok.csv", ROWS).read_bytes()
    f = tmp_path / "bad.csv"
    f.write_bytes(mangle(data, seed))
    check_read_or_refused(lambda: zoom.read(f, MAP, []))


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared sample exports are not here")
@pytest.mark.parametrize("seed", range(30))
def test_mangled_sample_read_or_refused(tmp_path, seed):
    f = tmp_path / "bad.csv"
    f.write_bytes(mangle((SAMPLES / "zoom_participants_heroes_full.csv").read_bytes(), seed))
    check_read_or_refused(lambda: zoom.read(f, {"timezone": "America/New_York"}, []))


def test_binary_and_empty_files_refused(tmp_path):
    for name, data in (("empty.csv", b""), ("zip.csv", b"PK\x03\x04" + bytes(range(256))),
                       ("header.csv", ",".join(HEADER).encode())):
        f = tmp_path / name
        f.write_bytes(data)
        with pytest.raises(RefusedFile):
            zoom.read(f, MAP, [])


def test_unique_users_report_counts_from_the_meeting_start(tmp_path):
    """Zoom's "show unique users" export has no join times: the meeting's start is used."""
    header = ["Name (Original Name)", "User Email", "Total Duration (Minutes)", "Guest"]
    f = write_report(tmp_path / "z.csv", [["Ana", "ana@example.org", "95", "No"]], header=header,
                     start="11/19/2021 10:00:00 AM")
    assert rows_of(zoom.read(f, {"timezone": "UTC"}, [])) == [
        {"participant_id": "ana@example.org", "exchange_id": None,
         "occurred_at": "2021-11-19T10:00:00+00:00", "activity": "live_session", "minutes": "95",
         "_row": 5}]


def test_meeting_id_column_keeps_meetings_apart(tmp_path):
    header = ["Meeting ID", "Name (Original Name)", "User Email", "Join Time", "Leave Time",
              "Duration (Minutes)"]
    rows = [["111", "Ana", "ana@example.org", "11/19/2021 10:00:00 AM", "11/19/2021 10:30:00 AM",
             "30"],
            ["222", "Ana", "ana@example.org", "11/20/2021 10:00:00 AM", "11/20/2021 10:10:00 AM",
             "10"],
            ["111", "Ana", "ana@example.org", "11/19/2021 10:40:00 AM", "11/19/2021 10:50:00 AM",
             "10"]]
    f = write_report(tmp_path / "z.csv", rows, preamble=False, header=header)
    assert [(r["occurred_at"], r["minutes"]) for r in rows_of(zoom.read(f, {"timezone": "UTC"},
                                                                         []))] == [
        ("2021-11-19T10:00:00+00:00", "40"), ("2021-11-20T10:00:00+00:00", "10")]


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared sample exports are not here")
def test_other_formats_are_not_zoom():
    for name in ("moodle_example_platform_logs.csv", "qualtrics_sample.csv",
                 "xapi_moodle_assignment_submitted.json"):
        f = SAMPLES / name
        assert not zoom.sniff(f, f.read_text(encoding="utf-8-sig")[:65536]), name


def test_trailing_commas_and_a_topic_full_of_semicolons(tmp_path):
    """Excel's re-save adds a trailing empty cell to every line; a topic may hold separators."""
    f = tmp_path / "z.csv"
    f.write_text(
        "Meeting ID,Topic,Start Time,End Time,User Email,Duration (Minutes),Participants,\n"
        f'1,"a;b;c;d;e;f;g;h;i;j",11/19/2021 10:00:00 AM,11/19/2021 11:00:00 AM,{HOST},60,1,\n'
        ",,,,,,,\n" + ",".join(HEADER) + ",\n"
        "Ana,ana@example.org,11/19/2021 10:00:00 AM,11/19/2021 10:20:00 AM,20,No,Y,\n")
    assert [(r["participant_id"], r["minutes"], r["_row"])
            for r in rows_of(zoom.read(f, MAP, []))] == [("ana@example.org", "20", 5)]


def test_output_loads_through_the_contract_loader(tmp_path):
    """What the reader gives, written as the contract's events file, loads with no reject:
    times as UTC instants, minutes added up, and no e-mail left in clear in the warehouse."""
    from tests import program as P

    src = tmp_path / "in"
    for name, rows in (("clusters", P.CLUSTERS), ("institutions", P.INSTITUTIONS[:3]),
                       ("exchanges", P.EXCHANGES[:1])):
        P.write_csv(src / f"{name}.csv", rows)
    P.write_csv(src / "participants.csv", [
        {"participant_id": pid, "institution_id": "I1", "role": "student"}
        for pid in ("ana.lima@example.org", "Bo Original", "cy@example.org")])
    t = zoom.read(write_report(tmp_path / "z.csv", ROWS), MAP, [])
    P.write_csv(src / "events.csv", [{k: v for k, v in r.items() if k != "_row"}
                                     for r in rows_of(t)])
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 0, res.stderr
    assert P.q(wh, "SELECT count(*) FROM rejects")[0][0] == 0
    assert sorted(P.q(wh, "SELECT CAST(occurred_at AS VARCHAR), minutes FROM events")) == [
        ("2021-11-19 08:58:00+00", 53.0), ("2021-11-19 09:02:00+00", 58.0),
        ("2021-11-19 12:05:00+00", 1.0)]
    data = wh.read_bytes()
    assert b"example.org" not in data and b"Bo Original" not in data


ZONES = ["America/New_York", "Europe/Madrid", "Australia/Lord_Howe", "Asia/Kathmandu",
         "America/Santiago", "Pacific/Apia", "UTC"]


@settings(max_examples=30, deadline=None)
@given(zone=st.sampled_from(ZONES),
       seconds=st.lists(st.integers(0, 40 * 365 * 86400), min_size=1, max_size=30),
       near=st.lists(st.integers(0, 8 * 3600), max_size=20))
def test_local_times_match_timezone_per_row(zone, seconds, near):
    """The per-hour offset table gives what DuckDB's timezone() gives row by row (the contract
    loader's reading), also in the hours around the zone's changes of offset."""
    from zoneinfo import ZoneInfo

    from etl.sources import _logs

    base = dt.datetime(1995, 1, 1)
    times = [base + dt.timedelta(seconds=s) for s in seconds]
    # Clock times from 22:00 to 06:00 around each change of offset in the first time's year.
    tzinfo = ZoneInfo(zone)
    noon = dt.datetime(times[0].year, 1, 1, 12)
    for d in range(366):
        day = noon + dt.timedelta(days=d)
        if day.replace(tzinfo=tzinfo).utcoffset() != \
                (day - dt.timedelta(days=1)).replace(tzinfo=tzinfo).utcoffset():
            grid = list(range(0, 8 * 3600 + 1, 900)) + near  # every quarter hour, and random
            times += [day - dt.timedelta(hours=14) + dt.timedelta(seconds=s) for s in grid]
    con = _logs.connect()
    con.execute("CREATE TEMP TABLE r (raw VARCHAR)")
    con.executemany("INSERT INTO r VALUES (?)", [[f"{t:%Y-%m-%d %H:%M:%S}"] for t in times])
    _logs.parse_times(con, "r", {"x": "raw"})
    _logs.local_times(con, "r", ["x"], False)
    _logs.instants(con, "r", ["x"], zone, [])
    diff = con.execute(f"SELECT raw, x, timezone('{zone}', CAST(raw AS TIMESTAMP)) FROM r "
                       f"WHERE x IS DISTINCT FROM timezone('{zone}', CAST(raw AS TIMESTAMP))"
                       ).fetchall()
    assert diff == []
