"""Microsoft Teams attendance reports (the meeting's "Attendance" > Download) as events.

The download is UTF-16 LE with a byte order mark, tab-separated, in sections: `1. Summary`
(label and value lines: Meeting title, Attended participants, Start time, End time, Meeting
duration, Average attendance time), `2. Participants` (`Name, First Join, Last Leave,
In-Meeting Duration, Email, Participant ID (UPN), Role`) and `3. In-Meeting Activities` (each
join and leave: `Name, Join Time, Leave Time, Duration, Email, Role`). Only the participants'
section is read: it already sums each person's stretches.

One event per participant and meeting, at their first join, with the minutes of
`In-Meeting Duration` (`1h 13m 42s`, `45m 3s`, `38s`; parsed in SQL). Times are the report's
local clock times (`3/4/26, 10:01:00 AM`), read in the mapping's `timezone`; day-first or
month-first as the mapping says (`dayfirst`, --dayfirst/--monthfirst) or as the dates tell. The
participant is the e-mail (lower case), else the Participant ID (UPN, lower case), else the
name, unless the mapping's `participant` says `email`, `upn`, `name` or a column of the
section. Role and the other sections are not read. The report names no exchange: it comes from
--exchange or the mapping's `exchange`. The older single-table download (`Full Name,
User Action, Timestamp`, one line per join or leave, names only) is read too: one event per
name at the first join, with the minutes from each `Joined` to the `Left` after it (a join
without a leave counts nothing, and is noted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from etl import readers
from etl.sources import _logs

__all__ = ["FORMAT", "KIND", "sniff", "read", "describe"]

FORMAT = "teams"
KIND = "events"
ACTIVITY = "live_session"

NAME = ("name", "full_name")
FIRST_JOIN = ("first_join", "first_join_time")
LAST_LEAVE = ("last_leave", "last_leave_time")
DURATION = ("in_meeting_duration", "duration")
EMAIL = ("email", "e_mail")
UPN = ("participant_id_(upn)", "participant_id")
# `1h 13m 42s`, `45m 3s`, `38s` (also `1h`, `2m`); anything else is passed on as written.
_DURATION = r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$"


def _is_table_header(rec: list[str]) -> bool:
    norm = {readers.normalise_name(c) for c in rec}
    return bool(norm & set(NAME)) and bool(norm & set(FIRST_JOIN)) \
        and bool(norm & {"in_meeting_duration"})


def _is_old_header(rec: list[str]) -> bool:
    norm = {readers.normalise_name(c) for c in rec}
    return {"full_name", "user_action", "timestamp"} <= norm


def sniff(path: Path, head: str) -> bool:
    """The `2. Participants` header (First Join, In-Meeting Duration) among the first records,
    or the `1. Summary` section title opening the file."""
    if head.lstrip("\ufeff").lstrip().lower().startswith("1. summary"):
        return True
    return _logs.head_has(head, lambda rec: _is_table_header(rec) or _is_old_header(rec))


def read(path: Path, mapping: dict, notes: list[str]) -> pa.Table:
    return _logs.read_decoded(path, mapping, notes, "a Teams attendance report", _read)


def _read(path: Path, text: Path, mapping: dict, notes: list[str]) -> pa.Table:
    found = _logs.find_header(text, _is_table_header, within=400)
    if found is None:
        old = _logs.find_header(text, _is_old_header)
        if old is not None:
            return _read_old(path, text, old, mapping, notes)
        raise _logs.refused(path, "no Teams participants' section: no header with 'Name', "
                                  "'First Join' and 'In-Meeting Duration' in its first lines")
    header_ends, header, before, delimiter = found
    summary = _summary(before)
    width = len(header)
    con, header = _logs.stage_table(path, text, header_ends, header, delimiter)
    # The section ends at the next section's title (`3. In-Meeting Activities`) or header.
    others = " AND ".join(f"c{i} IS NULL" for i in range(2, width + 1)) or "TRUE"
    end = con.execute(
        f"SELECT min(_row) FROM rows WHERE (regexp_matches(c1, '^\\d+\\.\\s') AND {others}) "
        "OR (lower(c1) = 'name' AND lower(coalesce(c2, '')) = 'join time')").fetchall()[0][0]
    if end is not None:
        con.execute(f"DELETE FROM rows WHERE _row >= {int(end)}")
    if con.execute("SELECT count(*) FROM rows").fetchall()[0][0] == 0:
        raise _logs.refused(path, "the '2. Participants' section has no rows")

    name = _logs.column_for(header, *NAME)
    join = _logs.column_for(header, *FIRST_JOIN)
    leave = _logs.column_for(header, *LAST_LEAVE)
    duration = _logs.column_for(header, *DURATION)
    email = _logs.column_for(header, *EMAIL)
    upn = _logs.column_for(header, *UPN)
    if join is None or duration is None:  # the header test asks for both
        raise _logs.refused(path, "the participants table has no First Join or In-Meeting "
                                  "Duration column")
    start = summary.get("start_time")
    times = {"j": join, **({"l": leave} if leave else {})}
    start_sql = _logs.sql_str(start) if start else None
    _logs.parse_times(con, "rows", {**times, **({"s": start_sql} if start_sql else {})})
    names = list(times) + (["s"] if start_sql else [])
    dayfirst = _logs.day_first(con, path, "rows", names, mapping, notes)
    naive = _logs.local_times(con, "rows", list(times), dayfirst)
    tz = _logs.zone(path, mapping, naive)
    _logs.instants(con, "rows", list(times), tz, notes)

    pid, how = _participant(path, mapping, header, name, email, upn)
    notes.append(how)
    d = _logs.sql_str(_DURATION)
    parts = f"regexp_extract({duration}, {d}, ['h', 'm', 's'])"
    con.execute(f"CREATE TEMP TABLE _parts AS SELECT *, {parts} AS _d FROM rows")
    minutes = ("(coalesce(TRY_CAST(nullif(_d.h, '') AS BIGINT), 0) * 60 "
               "+ coalesce(TRY_CAST(nullif(_d.m, '') AS BIGINT), 0) "
               "+ coalesce(TRY_CAST(nullif(_d.s, '') AS BIGINT), 0) / 60.0)")
    ok_dur = (f"(regexp_full_match({duration}, {d}) AND regexp_matches({duration}, '\\d'))")
    # A row the loader must see as written: a time that is not one, a duration not of the shape.
    odd = f"(j IS NULL OR {duration} IS NULL OR NOT {ok_dur})"
    meeting = _logs.sql_str(summary.get("meeting_title") or "")
    con.execute(
        f"CREATE TEMP TABLE _ev AS SELECT _row, {pid} AS pid, {meeting} AS meeting, "
        f"_t_j AS join_raw, j AS join_ts, {duration} AS dur_raw, "
        f"CASE WHEN {ok_dur} THEN round({minutes}, 2) END AS minutes, {odd} AS odd, "
        f"CASE WHEN {odd} OR {pid} IS NULL THEN _row END AS alone FROM _parts")

    exchange = _logs.sql_str(str(mapping["exchange_id"])) if mapping.get("exchange_id") \
        else "NULL"
    activity = mapping.get("activity") or ACTIVITY
    if not isinstance(activity, str):
        raise _logs.refused(path, "the mapping's activity for a Teams report is one name "
                                  f"(default '{ACTIVITY}')")
    sql = (
        f"SELECT pid AS participant_id, {exchange} AS exchange_id, "
        # an odd row is alone: its bad value as written, the other one read (one reject each)
        "CASE WHEN bool_or(join_ts IS NULL) THEN first(join_raw) ELSE "
        f"{_logs.iso_sql('min(join_ts)')} END AS occurred_at, "
        f"{_logs.sql_str(activity)} AS activity, CASE WHEN bool_or(minutes IS NULL) THEN "
        f"first(dur_raw) ELSE {_logs.text_sql('sum(minutes)')} END AS minutes, "
        "min(_row) AS _row, count(*) AS n FROM _ev GROUP BY pid, meeting, alone")
    rows, events = con.execute(f"SELECT sum(n), count(*) FROM ({sql})").fetchall()[0]
    if rows > events:
        notes.append(f"{rows:,} rows are {events:,} events: a person on several rows of the "
                     "participants' section has their minutes added up, at their first join")
    known = NAME + FIRST_JOIN + LAST_LEAVE + DURATION + EMAIL + UPN
    dropped = [h for h in header if _logs.column_for([h], *known) is None]
    if dropped:
        notes.append(f"not read: {', '.join(dropped)}")
    table = _logs.events_table(con, sql)
    con.close()
    return table


def _read_old(path: Path, text: Path, found: tuple[int, list[str], list[list[str]], str],
              mapping: dict, notes: list[str]) -> pa.Table:
    header_ends, header, _before, delimiter = found
    con, header = _logs.stage_table(path, text, header_ends, header, delimiter)
    if con.execute("SELECT count(*) FROM rows").fetchall()[0][0] == 0:
        raise _logs.refused(path, "the attendance list has no rows")
    name = _logs.column_for(header, "full_name")
    action = _logs.column_for(header, "user_action")
    stamp = _logs.column_for(header, "timestamp")
    if not (name and action and stamp):  # the header test asks for all three
        raise _logs.refused(path, "the attendance list needs Full Name, User Action and "
                                  "Timestamp columns")
    _logs.parse_times(con, "rows", {"t": stamp})
    dayfirst = _logs.day_first(con, path, "rows", ["t"], mapping, notes)
    naive = _logs.local_times(con, "rows", ["t"], dayfirst)
    tz = _logs.zone(path, mapping, naive)
    _logs.instants(con, "rows", ["t"], tz, notes)
    notes.append("an older Teams attendance list: participants by full name only (names must "
                 "be participant ids in the roster)")
    act = f"lower(trim({action}))"
    odd = f"(t IS NULL OR {act} NOT IN ('joined', 'left', 'joined before'))"
    person = "PARTITION BY pid, alone ORDER BY t, _row"
    con.execute(
        f"CREATE TEMP TABLE _ev AS SELECT *, lead(act) OVER ({person}) AS next_act, "
        f"lead(t) OVER ({person}) AS next_t FROM (SELECT _row, {name} AS pid, {act} AS act, "
        f"_t_t AS raw, t, {odd} AS odd, CASE WHEN {odd} OR {name} IS NULL THEN _row END "
        "AS alone FROM rows)")
    open_joins = con.execute("SELECT count(*) FROM _ev WHERE NOT odd AND act LIKE 'joined%' "
                             "AND coalesce(next_act, '') <> 'left'").fetchall()[0][0]
    if open_joins:
        notes.append(f"{open_joins:,} join(s) without a leave after them: they count no minutes")
    exchange = _logs.sql_str(str(mapping["exchange_id"])) if mapping.get("exchange_id") \
        else "NULL"
    activity = mapping.get("activity") or ACTIVITY
    if not isinstance(activity, str):
        raise _logs.refused(path, "the mapping's activity for a Teams report is one name "
                                  f"(default '{ACTIVITY}')")
    stretch = ("CASE WHEN act LIKE 'joined%' AND next_act = 'left' THEN "
               "date_diff('second', t, next_t) ELSE 0 END")
    first_join = _logs.iso_sql("min(t) FILTER (WHERE act LIKE 'joined%')")
    sql = (
        f"SELECT pid AS participant_id, {exchange} AS exchange_id, "
        f"CASE WHEN bool_or(odd) THEN first(raw) ELSE {first_join} END AS occurred_at, "
        f"{_logs.sql_str(activity)} AS activity, CASE WHEN bool_or(odd) THEN NULL ELSE "
        f"{_logs.text_sql(f'round(sum({stretch}) / 60.0, 2)')} END AS minutes, "
        "min(_row) AS _row FROM _ev GROUP BY pid, alone")
    table = _logs.events_table(con, sql)
    con.close()
    return table


def _summary(recs: list[list[str]]) -> dict[str, str]:
    """The `1. Summary` section's label and value lines, by normalised label."""
    out: dict[str, str] = {}
    for rec in recs:
        if len(rec) >= 2 and rec[0].strip():
            out.setdefault(readers.normalise_name(rec[0]), rec[1].strip())
    return out


def _participant(path: Path, mapping: dict, header: list[str], name: str | None,
                 email: str | None, upn: str | None) -> tuple[str, str]:
    """SQL of the participant's id per row, and the note saying how it was chosen: the mapping's
    `participant` (`email`, `upn`, `name` or a column's header), else the first of e-mail, UPN
    and name that the row has."""
    choice = mapping.get("participant")
    if choice not in (None, ""):
        chosen = {"email": (f"lower({email})" if email else None, "Email",
                            "participants by e-mail (lower case); rows without one are rejected"),
                  "upn": (f"lower({upn})" if upn else None, "Participant ID (UPN)",
                          "participants by Participant ID (UPN, lower case); rows without one "
                          "are rejected"),
                  "name": (name, "Name", "participants by name (names must be participant ids "
                                         "in the roster)")}
        key = str(choice).strip().lower()
        if key in chosen:
            sql, column, how = chosen[key]
            if sql is None:
                raise _logs.refused(path, f"the mapping says participants by {key} but the "
                                          f"participants' section has no '{column}' column")
            return sql, how
        col = _logs.column_for(header, readers.normalise_name(str(choice)))
        if col is None:
            raise _logs.refused(path, f"the mapping's participant column '{choice}' is not in "
                                      "the participants' section (or say email, upn or name)")
        return col, f"participants by the column '{choice}'"
    parts = [f"lower({c})" for c in (email, upn) if c] + ([name] if name else [])
    if not parts:
        return "NULL", "no Email, Participant ID (UPN) or Name column: every row is rejected"
    how = "participants by e-mail (lower case), else Participant ID (UPN), else name"
    if name:
        how += " (rows known by name only must have names that are participant ids in the roster)"
    return f"coalesce({', '.join(parts)})", how


def describe(path: Path) -> dict[str, Any]:
    """The report's layout for `python -m etl inspect`: which download (the sectioned report
    or the older single list), its encoding and separator, and the line its table's header
    ends on."""
    return _logs.describe_export(path, [
        (_is_table_header, 400, lambda _: "attendance report, '2. Participants' section read"),
        (_is_old_header, _logs.HEAD_RECORDS,
         lambda _: "older attendance list (Full Name, User Action, Timestamp)")])
