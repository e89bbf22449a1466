"""Zoom participant reports (Reports > Usage > Participants, "Export with meeting data") as events.

The file opens with the meeting: a header (`Meeting ID, Topic, Start Time, End Time, User
Email, Duration (Minutes), Participants`; newer accounts `Topic, ID, Host, ...`) and one row,
then a separator row, then the participants' table: `Name (Original Name), User Email, Join
Time, Leave Time, Duration (Minutes), Guest, ...` (older and newer spellings: `Email`,
`Join time`, `Total duration (minutes)`). A report exported without meeting data has the
participants' table alone.

Someone who left and rejoined is on several rows: one event per person and meeting, at their
first join, with the minutes of all their rows added (Zoom's own per-row durations; a row
without one counts from join to leave). Times are the report's local clock times, read in the
mapping's time zone. The participant is the e-mail (lower case) where the row has one, else the
name (the original name in parentheses when the person was renamed), unless the mapping's
`participant` says `email`, `name` or a column. Guest, recording consent and waiting-room
columns are not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from etl import readers
from etl.sources import _logs

__all__ = ["FORMAT", "KIND", "sniff", "read", "describe"]

FORMAT = "zoom"
KIND = "events"
ACTIVITY = "live_session"

NAME = ("name_(original_name)", "name", "participant", "user_name", "display_name")
EMAIL = ("user_email", "email", "e_mail")
JOIN = ("join_time",)
LEAVE = ("leave_time",)
DURATION = ("duration_(minutes)", "total_duration_(minutes)", "duration")
MEETING = ("meeting_id", "id")
START = ("start_time",)


def _is_table_header(rec: list[str]) -> bool:
    norm = {readers.normalise_name(c) for c in rec}
    has_name = bool(norm & set(NAME))
    return has_name and bool(norm & {"join_time", "total_duration_(minutes)"})


def sniff(path: Path, head: str) -> bool:
    """A participants' table header among the first records, or Zoom's meeting preamble."""
    return _logs.head_has(head, lambda rec: _is_table_header(rec) or _is_preamble(rec))


def _is_preamble(rec: list[str]) -> bool:
    norm = {readers.normalise_name(c) for c in rec}
    return {"meeting_id", "topic", "start_time"} <= norm or {"topic", "id", "host"} <= norm


def describe(path: Path) -> dict[str, Any]:
    """The report's layout for `python -m etl inspect`: with or without the meeting's details
    above the participants' table, its encoding and separator, and the line its header ends
    on."""
    return _logs.describe_export(path, [(
        _is_table_header, _logs.HEAD_RECORDS,
        lambda before: "participant report with the meeting's details" if any(
            _is_preamble(r) for r in before) else "participant list")])


def read(path: Path, mapping: dict, notes: list[str]) -> pa.Table:
    return _logs.read_decoded(path, mapping, notes, "a Zoom participant report", _read)


def _read(path: Path, text: Path, mapping: dict, notes: list[str]) -> pa.Table:
    found = _logs.find_header(text, _is_table_header)
    if found is None:
        raise _logs.refused(path, "no Zoom participants' table: no header with 'Name (Original "
                                  "Name)' and 'Join Time' in its first lines")
    header_ends, header, before, delimiter = found
    meeting = _preamble(before)
    con, header = _logs.stage_table(path, text, header_ends, header, delimiter)
    if con.execute("SELECT count(*) FROM rows").fetchall()[0][0] == 0:
        raise _logs.refused(path, "the participants' table has no rows")

    name = _logs.column_for(header, *NAME)
    email = _logs.column_for(header, *EMAIL)
    join = _logs.column_for(header, *JOIN)
    leave = _logs.column_for(header, *LEAVE)
    duration = _logs.column_for(header, *DURATION)
    meeting_col = _logs.column_for(header, *MEETING)
    start = meeting.get("start")
    start_sql = _logs.sql_str(start) if start else "NULL"
    # Without join times (the "unique users" report) the meeting's start is when they came.
    join_sql = join or (f"CAST({start_sql} AS VARCHAR)" if start else None)
    if join_sql is None:
        raise _logs.refused(path, "has neither a 'Join Time' column nor a meeting start time")

    # Dates tell day-first from month-first over every time in the file, preamble included.
    times = {"j": join_sql, **({"l": leave} if leave else {})}
    _logs.parse_times(con, "rows", {**times, **({"s": start_sql} if start else {})})
    dayfirst = _logs.day_first(con, path, "rows", list(times) + (["s"] if start else []),
                               mapping, notes)
    naive = _logs.local_times(con, "rows", list(times), dayfirst)
    tz = _logs.zone(path, mapping, naive)
    _logs.instants(con, "rows", list(times), tz, notes)

    pid, how = _participant(path, mapping, header, name, email)
    notes.extend(how)
    join_ts = "j"
    leave_ts = "l" if leave else "NULL::TIMESTAMPTZ"
    dur_num = f"TRY_CAST({duration} AS DOUBLE)" if duration else "NULL::DOUBLE"
    dur_raw = duration or "NULL::VARCHAR"
    # Zoom rounds each row's duration up to the minute; so does the fallback from join to leave.
    computed = f"ceil(date_diff('second', {join_ts}, {leave_ts}) / 60.0)"
    meeting_key = meeting_col or _logs.sql_str(meeting.get("id") or "")
    con.execute(
        f"CREATE TEMP TABLE _parts AS SELECT _row, {pid} AS pid, {meeting_key} AS meeting, "
        f"_t_j AS join_raw, {join_ts} AS join_ts, {leave_ts} AS leave_ts, "
        f"{dur_raw} AS dur_raw, coalesce({dur_num}, {computed}) AS minutes, "
        # a row the loader must see as written: a time that is not one, minutes not a number
        f"({join_ts} IS NULL OR ({dur_raw} IS NOT NULL AND {dur_num} IS NULL)) AS odd FROM rows")
    # Odd rows and rows without a participant stay alone, so the loader rejects each naming
    # its own row.
    con.execute("ALTER TABLE _parts ADD COLUMN alone BIGINT")
    con.execute("UPDATE _parts SET alone = CASE WHEN odd OR pid IS NULL THEN _row END")
    # Rows of one person that overlap in time (two devices at once, or a rejoin before Zoom saw
    # them leave) are one stretch, counted from its first join to its last leave; separate
    # stretches add their Zoom durations.
    person = "PARTITION BY pid, meeting, alone ORDER BY join_ts NULLS LAST, _row"
    con.execute(
        "CREATE TEMP TABLE _stretches AS SELECT pid, meeting, alone, stretch, min(_row) AS "
        "_row_min, arg_min(_row, join_ts) AS _row_first, min(join_ts) AS join_ts, "
        "first(join_raw) AS join_raw, first(dur_raw) AS dur_raw, bool_or(odd) AS odd, "
        "count(*) AS n, CASE WHEN count(*) = 1 OR count(leave_ts) < count(*) THEN sum(minutes) "
        "ELSE ceil(date_diff('second', min(join_ts), max(leave_ts)) / 60.0) END AS minutes "
        f"FROM (SELECT *, sum(new) OVER ({person}) AS stretch FROM (SELECT *, CASE WHEN join_ts "
        f"< max(leave_ts) OVER ({person} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) "
        "THEN 0 ELSE 1 END AS new FROM _parts)) GROUP BY pid, meeting, alone, stretch")
    overlaps = con.execute("SELECT count(DISTINCT (pid, meeting)) FROM _stretches WHERE n > 1"
                           ).fetchall()[0][0]
    if overlaps:
        notes.append(f"{overlaps:,} participant(s) were in a meeting on two rows at once (two "
                     "devices, or a rejoin before Zoom saw them leave): that time counted once")

    exchange = _logs.sql_str(str(mapping["exchange_id"])) if mapping.get("exchange_id") \
        else "NULL"
    activity = mapping.get("activity") or ACTIVITY
    if not isinstance(activity, str):
        raise _logs.refused(path, "the mapping's activity for a Zoom report is one name "
                                  f"(default '{ACTIVITY}')")
    # One event per person and meeting.
    sql = (
        f"SELECT pid AS participant_id, {exchange} AS exchange_id, "
        f"CASE WHEN bool_or(odd) THEN first(join_raw) ELSE {_logs.iso_sql('min(join_ts)')} END "
        f"AS occurred_at, {_logs.sql_str(activity)} AS activity, "
        f"CASE WHEN bool_or(odd) THEN first(dur_raw) ELSE {_logs.text_sql('sum(minutes)')} END "
        "AS minutes, arg_min(_row_first, join_ts) AS _row_first, min(_row_min) AS _row_min, "
        "sum(n) AS n FROM _stretches GROUP BY pid, meeting, alone")
    out = f"SELECT *, coalesce(_row_first, _row_min) AS _row FROM ({sql})"
    rows, events = con.execute(f"SELECT sum(n), count(*) FROM ({out})").fetchall()[0]
    if rows > events:
        notes.append(f"{rows:,} rows are {events:,} events: the minutes of people who left and "
                     "rejoined are added up, at their first join")
    dropped = [h for h in header if _logs.column_for([h], *(NAME + EMAIL + JOIN + LEAVE
                                                            + DURATION + MEETING)) is None]
    if dropped:
        notes.append(f"not read: {', '.join(dropped)}")
    table = _logs.events_table(con, out)
    con.close()
    return table


def _preamble(recs: list[list[str]]) -> dict[str, str]:
    """The meeting's id and start time from the preamble's header and row, if there is one."""
    for i, rec in enumerate(recs[:-1]):
        norm = [readers.normalise_name(c) for c in rec]
        if "topic" in norm and ("meeting_id" in norm or "id" in norm):
            row = recs[i + 1]
            got = dict(zip(norm, (v.strip() for v in row), strict=False))
            return {"id": got.get("meeting_id") or got.get("id") or "",
                    "start": got.get("start_time") or ""}
    return {}


def _participant(path: Path, mapping: dict, header: list[str], name: str | None,
                 email: str | None) -> tuple[str, list[str]]:
    """SQL of the participant's id per row, and the notes saying how it was chosen."""
    # "015_Loki (Loki Laufeyson)": renamed in the meeting; the account's name is in parentheses.
    original = (f"coalesce(nullif(trim(regexp_extract({name}, '\\(([^()]*)\\)\\s*$', 1)), ''), "
                f"{name})") if name else "NULL"
    mail = f"lower({email})" if email else "NULL"
    choice = mapping.get("participant")
    if choice == "email":
        if not email:
            raise _logs.refused(path, "the mapping says participants by e-mail but the report "
                                      "has no 'User Email' column")
        return mail, ["participants by e-mail (lower case); rows without one are rejected"]
    if choice == "name":
        if not name:
            raise _logs.refused(path, "the mapping says participants by name but the report "
                                      "has no 'Name (Original Name)' column")
        return original, ["participants by name (the original name when renamed)"]
    if choice:
        col = _logs.column_for(header, readers.normalise_name(str(choice)))
        if col is None:
            raise _logs.refused(path, f"the mapping's participant column '{choice}' is not in "
                                      "the report")
        return col, [f"participants by the column '{choice}'"]
    if email and name:
        return f"coalesce({mail}, {original})", [
            "participants by e-mail (lower case); rows without one by name (the original name "
            "when renamed): such names must be participant ids in the roster"]
    if email:
        return mail, ["participants by e-mail (lower case)"]
    if name:
        return original, ["participants by name (no e-mail column)"]
    raise _logs.refused(path, "has neither a name nor an e-mail column to tell participants")
