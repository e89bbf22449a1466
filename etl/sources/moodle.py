"""Moodle logs as events, in either of the two shapes programs get them in.

- The log report's download (Site administration > Reports > Logs, "Download table data as
  CSV"): `Time, User full name, Affected user, Event context, Component, Event name,
  Description, Origin, IP address`, newest first, `-` for empty, and times in the site's short
  date format, `23/01/23, 12:09` in English (day-first; month-first where the language pack says
  so: told from the dates, else the mapping's `dayfirst`), local to the mapping's time zone and
  to the minute. A leading unnamed index column (a spreadsheet's or pandas' row numbers) is
  ignored. The participant is the user's full name, or with `participant: userid` the Moodle
  user id the description states ("The user with id '58' ...").
- The database table `mdl_logstore_standard_log` dumped to CSV (`id, eventname, component,
  action, target, ..., userid, courseid, ..., timecreated, origin, ip, realuserid`):
  `timecreated` is Unix time, so no zone is needed; the participant is the Moodle user id.

Rows of no logged-in user (`-`, user id 0 or below) are dropped, and in the table so are rows
Moodle marks `anonymous` (an anonymous feedback must stay anonymous) and rows an administrator
did "logged in as" the user (`realuserid`). The activity is the
mapping's name for the event (`activity: {"Course viewed": "course_view", ...}`; a null
drops that event), else `moodle:<event name>`. IP addresses, descriptions, affected users and
contexts are not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from etl import readers
from etl.sources import _logs

__all__ = ["FORMAT", "KIND", "sniff", "read", "describe"]

FORMAT = "moodle"
KIND = "events"

EXPORT = ("time", "user_full_name", "event_name")  # the report's download: required columns
TABLE = ("eventname", "userid", "timecreated")  # mdl_logstore_standard_log
USER_ID = r"[Tt]he user with id '(-?\d+)'"


def _layout(rec: list[str]) -> str | None:
    norm = {readers.normalise_name(c) for c in rec}
    if set(EXPORT) <= norm:
        return "export"
    if set(TABLE) <= norm:
        return "table"
    return None


def sniff(path: Path, head: str) -> bool:
    """The log report's or the log table's header among the first records."""
    return _logs.head_has(head, lambda rec: _layout(rec) is not None, within=3)


def describe(path: Path) -> dict[str, Any]:
    """The log's layout for `python -m etl inspect`: the log report's download or the log
    table's dump, its encoding and separator, and the line its header ends on."""
    return _logs.describe_export(path, [
        (lambda rec: _layout(rec) == "export", 3, lambda _: "log report download"),
        (lambda rec: _layout(rec) == "table", 3, lambda _: "mdl_logstore_standard_log table")])


def read(path: Path, mapping: dict, notes: list[str]) -> pa.Table:
    return _logs.read_decoded(path, mapping, notes, "a Moodle log", _read)


def _read(path: Path, text: Path, mapping: dict, notes: list[str]) -> pa.Table:
    found = _logs.find_header(text, lambda rec: _layout(rec) is not None, within=3)
    if found is None:
        raise _logs.refused(path, "no Moodle log header: expected the log report's columns "
                                  "(Time, User full name, ..., Event name, ...) or the log "
                                  "table's (eventname, userid, timecreated, ...)")
    header_ends, header, _, delimiter = found
    layout = _layout(header)
    con, header = _logs.stage_table(
        path, text, header_ends, header, delimiter,
        _logs.EMPTY_REPORT if layout == "export" else _logs.EMPTY_DUMP)
    if con.execute("SELECT count(*) FROM rows").fetchall()[0][0] == 0:
        raise _logs.refused(path, "the log has no rows")

    def col(*names: str) -> str | None:
        return _logs.column_for(header, *names)

    if layout == "export":
        event = col("event_name")
        when, keep, minutes_note = _export_times(con, path, mapping, notes, col("time"))
        pid, keep_user = _export_participant(path, mapping, header)
    else:
        event = col("eventname")
        secs = f"TRY_CAST({col('timecreated')} AS BIGINT)"
        # An unreadable Unix time is passed on as written: the loader rejects its row.
        iso = _logs.iso_sql(f"try(to_timestamp({secs}))")
        when = f"coalesce({iso}, {col('timecreated')})"
        keep, minutes_note = "true", None
        pid, keep_user = _table_participant(path, mapping, header)
        anon = col("anonymous")
        if anon:
            n = con.execute(f"SELECT count(*) FROM rows WHERE {anon} IN ('1', 'true')"
                            ).fetchall()[0][0]
            keep = f"coalesce({anon} NOT IN ('1', 'true'), true)"
            if n:
                notes.append(f"{n:,} row(s) Moodle marks anonymous dropped")
        real = col("realuserid")
        if real:
            # An administrator "logged in as" the user: not the participant's own activity.
            n = con.execute(f"SELECT count(*) FROM rows WHERE {real} IS NOT NULL AND {real} <> "
                            f"coalesce({col('userid') or 'NULL'}, '')").fetchall()[0][0]
            keep = (f"({keep}) AND ({real} IS NULL OR {real} = "
                    f"coalesce({col('userid') or 'NULL'}, ''))")
            if n:
                notes.append(f"{n:,} row(s) an administrator did logged in as the user dropped")
    if minutes_note:
        notes.append(minutes_note)
    default = "name" if layout == "export" else "userid"
    how = {"name": "the user's full name", "userid": "the Moodle user id"}
    choice = str(mapping.get("participant") or default)
    notes.append(f"participants by {how.get(choice, f'the column {choice!r}')}")

    dropped_users = con.execute(f"SELECT count(*) FROM rows WHERE NOT ({keep_user})"
                                ).fetchall()[0][0]
    if dropped_users:
        notes.append(f"{dropped_users:,} row(s) of no logged-in user (guest, '-' or user id 0) "
                     "dropped")

    activity, keep_event = _activity(con, path, mapping, event, notes)
    exchange = _logs.sql_str(str(mapping["exchange_id"])) if mapping.get("exchange_id") \
        else "NULL"
    ip = col("ip_address", "ip")
    if ip:
        notes.append("IP addresses dropped")
    used = {c for c in (event, col("time"), col("timecreated"), col("user_full_name"),
                        col("userid"), pid if pid.startswith("c") else col("description"))
            if c}
    other = [h for i, h in enumerate(header, start=1)
             if f"c{i}" not in used and h.strip() and f"c{i}" != ip]
    if other:
        notes.append(f"not read: {', '.join(other)}")
    sql = (f"SELECT {pid} AS participant_id, {exchange} AS exchange_id, {when} AS occurred_at, "
           f"{activity} AS activity, NULL AS minutes, r._row FROM rows r "
           f"LEFT JOIN _activity a ON a.event = lower(trim({event})) "
           f"WHERE ({keep}) AND ({keep_user}) AND ({keep_event})")
    table = _logs.events_table(con, sql)
    con.close()
    return table


def _export_times(con: duckdb.DuckDBPyConnection, path: Path, mapping: dict, notes: list[str],
                  time: str | None) -> tuple[str, str, str]:
    """The report's local times as UTC text (unreadable ones as written)."""
    if time is None:
        raise _logs.refused(path, "has no Time column")
    _logs.parse_times(con, "rows", {"ts": time})
    dayfirst = _logs.day_first(con, path, "rows", ["ts"], mapping, notes)
    naive = _logs.local_times(con, "rows", ["ts"], dayfirst)
    tz = _logs.zone(path, mapping, naive)
    _logs.instants(con, "rows", ["ts"], tz, notes)
    when = f"CASE WHEN ts IS NULL THEN {time} ELSE {_logs.iso_sql('ts')} END"
    return when, "true", ("times are to the minute (the log report's format): events of one "
                          "minute share their time")


def _export_participant(path: Path, mapping: dict, header: list[str]) -> tuple[str, str]:
    """The participant's id per row and the condition of a row having one."""
    choice = mapping.get("participant") or "name"
    if choice == "email":
        raise _logs.refused(path, "Moodle's log report has no e-mail column: set participant to "
                                  "name (User full name) or userid (the id in the description)")
    if choice == "name":
        user = _logs.column_for(header, "user_full_name")
        return user, f"{user} IS NOT NULL"
    if choice == "userid":
        desc = _logs.column_for(header, "description")
        if desc is None:
            raise _logs.refused(path, "participant: userid needs the Description column")
        uid = f"nullif(regexp_extract({desc}, {_logs.sql_str(USER_ID)}, 1), '')"
        return uid, f"coalesce(TRY_CAST({uid} AS BIGINT) > 0, false)"
    c = _logs.column_for(header, readers.normalise_name(str(choice)))
    if c is None:
        raise _logs.refused(path, f"the mapping's participant column '{choice}' is not in the log")
    return c, f"{c} IS NOT NULL"


def _table_participant(path: Path, mapping: dict, header: list[str]) -> tuple[str, str]:
    choice = mapping.get("participant") or "userid"
    if choice in ("email", "name"):
        raise _logs.refused(path, f"the log table has no {choice}s, only user ids: map "
                                  "participants by Moodle user id (participant: userid)")
    c = _logs.column_for(header, "userid" if choice == "userid"
                         else readers.normalise_name(str(choice)))
    if c is None:
        raise _logs.refused(path, f"the mapping's participant column '{choice}' is not in the log")
    if choice == "userid":
        return c, f"coalesce(TRY_CAST({c} AS BIGINT) > 0, {c} IS NOT NULL AND TRY_CAST({c} AS " \
                  "BIGINT) IS NULL)"
    return c, f"{c} IS NOT NULL"


def _activity(con: duckdb.DuckDBPyConnection, path: Path, mapping: dict, event: str | None,
              notes: list[str]) -> tuple[str, str]:
    """The activity per row (`a` joined on the event) and the condition of keeping the row."""
    if event is None:
        raise _logs.refused(path, "has no event name column")
    given = mapping.get("activity")
    pairs: list[tuple[str, str | None]] = []
    if isinstance(given, dict):
        pairs = [(str(k).strip().lower(), None if v is None else str(v))
                 for k, v in given.items()]
    elif given is not None:
        raise _logs.refused(path, "the mapping's activity for a Moodle log is a map of event "
                                  "name to activity")
    con.execute("CREATE OR REPLACE TEMP TABLE _activity (event VARCHAR, activity VARCHAR)")
    if pairs:
        con.executemany("INSERT INTO _activity VALUES (?, ?)", pairs)
    dropped = [k for k, v in pairs if v is None]
    if dropped:
        n = con.execute(f"SELECT count(*) FROM rows WHERE lower(trim({event})) IN "
                        "(SELECT event FROM _activity WHERE activity IS NULL)").fetchall()[0][0]
        notes.append(f"{n:,} row(s) of events the mapping leaves out dropped")
    activity = f"coalesce(a.activity, 'moodle:' || {event})"
    keep = "a.event IS NULL OR a.activity IS NOT NULL"
    return activity, keep
