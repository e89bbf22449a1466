"""IMS Caliper events (1.0 to 1.2) as the contract's events.

What a Caliper sensor sends or an event store exports: one event, a JSON array of events, JSON
lines, or envelopes (`{"sensor", "sendTime", "dataVersion", "data": [...]}`; one, an array or
one per line). Parsed by DuckDB like xAPI (`etl.sources.xapi.read_records`), every field in SQL.

- participant_id: the actor's `id` (an IRI such as `https://example.edu/users/554433`; an actor
  given as a bare IRI string is its own id). The actor's name and other fields are not read.
- exchange_id: the mapping's `exchange_id`, else the `group` (the course section) id, which
  `exchange_from` may map to exchange ids (`{group IRI: exchange id}`).
- occurred_at: `eventTime` at UTC (`+00:00`), as in `etl.sources.xapi.utc_sql`.
- activity: the mapping's `verbs` (action -> activity, compared case-insensitively), else the
  action's term as the Caliper vocabulary writes it (`Submitted`, `NavigatedTo`; Caliper 1.0's
  action IRIs `…/action#Submitted` give their last segment).
- minutes: the ISO 8601 `duration` of the `generated` Attempt, else of the `object` (a Session
  that ended), by the same SQL as xAPI's.
- Entities described beside events in an envelope's `data` (no `action`) are not events: they
  are counted in a note and dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from etl.errors import RefusedFile
from etl.sources.xapi import (
    OUTPUT,
    case_map,
    duration_sql,
    listed,
    lit,
    minutes_sql,
    one_line,
    q,
    read_records,
    utc_sql,
)

__all__ = ["FORMAT", "KIND", "sniff", "read"]

FORMAT = "caliper"
KIND = "events"

_FIELDS = ("id", "type", "actor.id", "actor", "action", "eventTime", "group.id", "group",
           "generated.duration", "object.duration", "sensor")


def sniff(path: Path, head: str) -> bool:
    """A Caliper file: JSON with an event's `action` and `eventTime`, or an envelope."""
    text = head.lstrip("\ufeff \t\r\n")
    if text[:1] not in ("[", "{") or re.search(r'"verb"\s*:', text):
        return False
    event = (re.search(r'"action"\s*:', text) is not None
             and re.search(r'"eventTime"\s*:', text) is not None)
    envelope = (re.search(r'"dataVersion"\s*:', text) is not None
                and re.search(r'"data"\s*:', text) is not None and "caliper" in text.lower())
    return event or envelope


def _checks(path: Path, mapping: Mapping[str, object], notes: list[str]) -> tuple[
        str | None, dict[str, str], dict[str, str]]:
    verbs = mapping.get("verbs") or {}
    if not isinstance(verbs, Mapping):
        raise RefusedFile(str(path), "mapping: verbs must map Caliper actions to activities")
    source = mapping.get("exchange_from")
    table: dict[str, str] = {}
    if isinstance(source, Mapping):
        table = {str(k).lower(): str(v) for k, v in source.items()}
    elif source not in (None, "group"):
        raise RefusedFile(str(path), f"mapping: exchange_from {source!r}: Caliper events name "
                          "their exchange by 'group', or by a map of group ids to exchanges")
    if mapping.get("actor") not in (None, "id"):
        notes.append(f"Caliper: the mapping's actor {mapping['actor']!r} is an xAPI identifier; "
                     "Caliper actors are identified by their id")
    ex = mapping.get("exchange_id")
    return (None if ex is None else str(ex), {str(k).lower(): str(v) for k, v in verbs.items()},
            table)


def read(path: Path, mapping: dict, notes: list[str]) -> pa.Table:
    """The events of a Caliper file as contract events (see the module's docstring)."""
    path = Path(path)
    exchange_id, verbs, exchange_table = _checks(path, mapping or {}, notes)
    con = duckdb.connect()
    try:
        q(con, "SET TimeZone = 'UTC'")
        return _read(con, path, exchange_id, verbs, exchange_table, notes)
    except duckdb.Error as e:
        raise RefusedFile(str(path), f"cannot be read as Caliper: {one_line(str(e), path)}") \
            from None
    finally:
        con.close()


def _read(con: duckdb.DuckDBPyConnection, path: Path, exchange_id: str | None,
          verbs: dict[str, str], exchange_table: dict[str, str], notes: list[str]) -> pa.Table:
    actor = "coalesce(actor_id, CASE WHEN NOT starts_with(ltrim(actor), '{') THEN actor END)"
    group = ('coalesce(group_id, CASE WHEN NOT starts_with(ltrim("group"), \'{\') '
             'THEN "group" END)')
    if exchange_id is not None:
        exchange = lit(exchange_id)
    elif exchange_table:
        exchange = case_map(group, exchange_table)
    else:
        exchange = group
    term = "regexp_extract(action, '([^/#]+)[/#]*$', 1)"
    mapped = case_map("action", verbs)
    parts, ok = duration_sql("duration")
    minutes, calendar = minutes_sql("d", "d_ok")
    cast, text = utc_sql("eventTime", "instant")

    def select(src: str) -> str:
        return (
            f"SELECT _odd, _page, CAST(nullif({actor}, '') AS VARCHAR) AS participant_id, "
            f"CAST({exchange} AS VARCHAR) AS exchange_id, "
            f"CAST({text} AS VARCHAR) AS occurred_at, "
            f"CAST(nullif(coalesce({mapped}, {term}), '') AS VARCHAR) AS activity, "
            f"CAST(CASE WHEN duration IS NOT NULL AND NOT d_ok THEN duration "
            f"ELSE CAST(round({minutes}, 6) AS VARCHAR) END AS VARCHAR) AS minutes, "
            f"action IS NOT NULL AS _event, {calendar} AS _calendar, "
            f"duration IS NOT NULL AND NOT d_ok AS _malformed, "
            f"CASE WHEN {mapped} IS NULL THEN action END AS _unmapped, sensor AS _sensor "
            f"FROM (SELECT *, {ok} AS d_ok FROM (SELECT *, {parts} AS d, {cast} AS instant "
            f"FROM (SELECT *, coalesce(generated_duration, object_duration) AS duration "
            f"FROM {src})))")

    t = read_records(con, path, "data", _FIELDS, select)
    events = t["_event"]
    n = pc.sum(events).as_py() or 0
    if not n:
        raise RefusedFile(str(path), "holds no Caliper events (objects with an action)")
    if pc.count(t["_sensor"]).as_py():
        notes.append("Caliper: events read from envelopes; sensor and sendTime are not kept")
    if t.num_rows > n:
        notes.append(f"Caliper: {t.num_rows - n} record(s) without an action (entity "
                     "descriptions) are not events and were dropped")
    t = t.filter(events)
    if verbs:
        unmapped = sorted(v for v in pc.unique(t["_unmapped"]).to_pylist() if v)
        if unmapped:
            notes.append(f"Caliper: actions not in the mapping, named as written: "
                         f"{listed(unmapped)}")
    no_group = pc.sum(pc.is_null(t["exchange_id"])).as_py() or 0
    if no_group and exchange_id is None:
        notes.append(f"Caliper: {no_group} event(s) name no group (course section) and the "
                     "mapping no exchange_id: their rows have no exchange and are rejected")
    n_cal = pc.sum(t["_calendar"]).as_py() or 0
    if n_cal:
        notes.append(f"Caliper: {n_cal} duration(s) in years or months have no length in "
                     "minutes: left empty")
    n_bad = pc.sum(t["_malformed"]).as_py() or 0
    if n_bad:
        notes.append(f"Caliper: {n_bad} duration value(s) are not ISO 8601 durations "
                     "(PT1H2M3S): those rows are rejected")
    notes.append("Caliper: actor names, edApp, membership and session details are not read")
    return t.select(OUTPUT)
