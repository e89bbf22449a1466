"""xAPI statements (Experience API 1.0.x) as the contract's events.

What an LRS or an LMS plugin exports: one statement object, a JSON array of statements, JSON
lines (one statement per line, or pretty-printed objects one after another), or LRS
`StatementResult` pages (`{"statements": [...], "more": "/xAPI/statements?..."}`; the `more`
link is noted, it cannot be followed offline). DuckDB parses the file (`read_json_objects`) and
every field is taken in SQL with one `json_extract_string` per statement, so a million
statements never pass through a Python loop.

- participant_id: the actor's identifier named by the mapping's `actor` (`mbox`,
  `mbox_sha1sum`, `account`, `openid`), else the first present in that order. An mbox loses its
  `mailto:` and is lower-cased so that it links with the e-mail column of a survey export; an
  account is its `name` (the LMS user id), qualified by its `homePage` only when the file holds
  accounts of more than one system. Names and IP addresses (context extensions) are not read.
- exchange_id: the mapping's `exchange_id`, else the first activity id of
  `context.contextActivities.grouping` (the course), or of the key named by `exchange_from`
  (`grouping`, `parent`, `category`, `other`); `exchange_from` may also map those activity ids
  to exchange ids.
- occurred_at: `timestamp` (else `stored`, noted) at UTC (`+00:00`); a time without an offset
  is passed on as written, for the loader to read in the institution's zone, and one that does
  not parse is passed on for validation to reject with its row.
- activity: the mapping's `verbs` (IRI -> activity), else the verb IRI's last path segment in
  lower case (`.../verbs/completed` -> `completed`). IRIs are compared case-insensitively; a
  verb IRI not in lower case (the form of the ADL and registry vocabularies) is noted.
- minutes: `result.duration` (ISO 8601, `PT1H2M3.5S`), by `DURATION_MINUTES_SQL`, held equal
  to the maintained parser isodate in tests. Durations in years or months have no length in
  minutes and are left empty (noted); malformed ones are passed on for validation to reject.
- voiding: a statement with verb `.../voided` and a `StatementRef` object removes the statement
  it names and is no event itself; voided ids absent from the file are noted (an earlier load
  may hold them).
- Language maps (`verb.display`, `object.definition.name`) are not needed for events; the common
  invalid variant with a plain string instead of a map is accepted and noted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa

from etl.errors import RefusedFile

__all__ = [
    "FORMAT", "KIND", "sniff", "read", "DURATION_RE", "duration_sql", "minutes_sql",
    "duration_minutes", "utc_sql", "open_json", "case_map", "lit", "q", "one", "one_line",
    "listed",
]

FORMAT = "xapi"
KIND = "events"
VOIDED = "http://adlnet.gov/expapi/verbs/voided"
ACTORS = ("mbox", "mbox_sha1sum", "account", "openid")
CONTEXT_KEYS = ("grouping", "parent", "category", "other")
SHOWN = 5  # how many distinct values a note lists

# ISO 8601 duration: P[nY][nM][nW][nD][T[nH][nM][nS]], a decimal point or comma in any number.
_N = r"(\d+(?:[.,]\d+)?)"
DURATION_RE = f"^P(?:{_N}Y)?(?:{_N}M)?(?:{_N}W)?(?:{_N}D)?(?:T(?:{_N}H)?(?:{_N}M)?(?:{_N}S)?)?$"
_PARTS = ("y", "mo", "w", "d", "h", "mi", "s")


def lit(s: str) -> str:
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def duration_sql(expr: str) -> tuple[str, str]:
    """SQL for an ISO 8601 duration `expr` (VARCHAR): (its parts, whether it is well formed).

    Select both as columns (`AS d`, `AS d_ok`) and give them to `minutes_sql`: computed once per
    row, not once per use.
    """
    parts = f"regexp_extract({expr}, {lit(DURATION_RE)}, {list(_PARTS)!r})"
    # As lenient as isodate: `PT` (zero) and `P1DT` pass; a bare `P` and negatives do not.
    ok = f"(regexp_full_match({expr}, {lit(DURATION_RE)}) AND {expr} <> 'P')"
    return parts, ok


def minutes_sql(d: str, ok: str) -> tuple[str, str]:
    """(minutes DOUBLE, calendar BOOLEAN) of parsed durations `d` (see `duration_sql`).

    Minutes are NULL when the duration is malformed or has years or months: a calendar length,
    for which isodate returns a `Duration` rather than a `timedelta`, since a month has no fixed
    number of minutes. Weeks are 7 days.
    """
    def num(p: str) -> str:
        return f"coalesce(TRY_CAST(nullif(replace({d}.{p}, ',', '.'), '') AS DOUBLE), 0)"

    calendar = f"({ok} AND ({num('y')} <> 0 OR {num('mo')} <> 0))"
    minutes = (f"CASE WHEN {ok} AND NOT {calendar} THEN {num('w')} * 10080 + {num('d')} * 1440 "
               f"+ {num('h')} * 60 + {num('mi')} + {num('s')} / 60 END")
    return minutes, calendar


def duration_minutes(values: list[str | None]) -> list[float | None]:
    """Minutes of each ISO 8601 duration (None: malformed or calendar), in bulk in DuckDB."""
    parts, ok = duration_sql("v")
    minutes, _ = minutes_sql("d", "d_ok")
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT {minutes} FROM (SELECT i, {parts} AS d, {ok} AS d_ok FROM "
            f"(SELECT unnest(range(len($vals))) AS i, unnest($vals) AS v)) ORDER BY i",
            {"vals": values}).fetchall()
    return [r[0] for r in rows]


def utc_sql(ts: str) -> str:
    """SQL: an ISO 8601 time `ts` with an offset, written at UTC (`…+00:00`); else `ts` as is.

    The connection's TimeZone must be UTC. Times without an offset go on unchanged for the
    loader to read in the institution's zone; ones that do not parse for validation to reject.
    """
    instant = f"TRY_CAST({ts} AS TIMESTAMPTZ)"
    has_offset = f"(regexp_matches({ts}, '(Z|z|[+-]\\d\\d(:?\\d\\d)?)$') AND length({ts}) > 10)"
    return (f"CASE WHEN {has_offset} AND {instant} IS NOT NULL THEN "
            f"strftime({instant}, CASE WHEN microsecond({instant}) % 1000000 = 0 "
            f"THEN '%Y-%m-%dT%H:%M:%S+00:00' ELSE '%Y-%m-%dT%H:%M:%S.%f+00:00' END) "
            f"ELSE {ts} END")


def q(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> list[tuple]:
    """All rows of `sql` (DuckDB wants every result fetched before the next statement)."""
    return con.execute(sql, params).fetchall()


def one(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple:
    """The first row of `sql`."""
    return q(con, sql, params)[0]


def listed(values: list[str]) -> str:
    """At most `SHOWN` values for a note, and how many more there are."""
    more = f" and {len(values) - SHOWN} more" if len(values) > SHOWN else ""
    return ", ".join(values[:SHOWN]) + more


def sniff(path: Path, head: str) -> bool:
    """An xAPI file: JSON whose first statement has an `actor` and a `verb`."""
    text = head.lstrip("\ufeff \t\r\n")
    return (text[:1] in ("[", "{") and re.search(r'"verb"\s*:', text) is not None
            and re.search(r'"actor"\s*:', text) is not None)


def one_line(message: str, path: Path) -> str:
    first = " ".join(message.split())
    first = re.sub(r"^[A-Za-z ]+Error: ", "", first)
    return first.replace(f'in file "{path}", ', "").replace(str(path), "the file")


_UTF16 = ("is UTF-16, but JSON files are UTF-8: convert it, e.g. "
          "'iconv -f UTF-16 -t UTF-8 in.json > out.json'")


def _name(field: str) -> str:
    return re.sub(r"\W+", "_", field).strip("_")


def open_json(con: duckdb.DuckDBPyConnection, path: Path, unwrap: str,
              fields: tuple[str, ...], table: str) -> int:
    """Parse `path` into TEMP table `table`: `_row` (records numbered from 1 in file order) and
    one VARCHAR column per field (a JSON path below `$`, as text; `a.b[0].c` -> `a_b_0_c`).

    A top-level object with an array under `unwrap` (a StatementResult page, a Caliper
    envelope) stands for that array's elements. Each record is parsed once, by one
    `json_extract_string` of all fields. Refuses a file that is not JSON in UTF-8, is empty, or
    holds records that are not objects. Returns how many top-level values held such an array.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError as e:
        raise RefusedFile(str(path), f"cannot be opened ({e.strerror})") from None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) > 1 and head[1:2] == b"\0"):
        raise RefusedFile(str(path), _UTF16)
    body = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    if not body:
        raise RefusedFile(str(path), "is empty: no JSON value in it")
    # Told, not detected: DuckDB's detection misses an array behind a byte order mark. JSON
    # lines parse in parallel; objects spread over lines (pretty-printed) need "unstructured".
    first = body.split(b"\n", 1)[0].strip()
    formats = (["array"] if body[:1] == b"[" else
               ["newline_delimited", "unstructured"] if first.endswith(b"}") else
               ["unstructured"])
    paths = [f"$.{p}" for p in fields] + [f"$.{unwrap}"]
    cols = ", ".join(f'x[{i + 1}] AS "{_name(p)}"' for i, p in enumerate(fields))
    u = f"x[{len(paths)}]"  # the array to unwrap, when there is one
    for fmt in formats:
        try:
            # A table keeps the file's order (insertion order), so rowid numbers the records
            # without a window over the whole file.
            q(con, f"CREATE OR REPLACE TEMP TABLE _records AS SELECT odd, {cols}, "
                   f"CASE WHEN starts_with(ltrim({u}), '[') THEN {u} END AS _unwrap FROM ("
                   f"SELECT NOT starts_with(ltrim(json), '{{') AS odd, "
                   f"json_extract_string(json, {paths!r}) AS x "
                   f"FROM read_json_objects({lit(str(path))}, format={lit(fmt)}))")
            break
        except duckdb.Error as e:
            if fmt != formats[-1]:
                continue
            if "UTF-16" in str(e):
                raise RefusedFile(str(path), _UTF16) from None
            if "UTF-8" in str(e):
                raise RefusedFile(str(path), "is not UTF-8 (JSON's encoding), perhaps "
                                  "Windows-1252: convert it, e.g. 'iconv -f WINDOWS-1252 -t "
                                  f"UTF-8 in.json > out.json' ({one_line(str(e), path)})") \
                    from None
            raise RefusedFile(str(path), f"is not valid JSON: {one_line(str(e), path)}") \
                from None
    n, odd, pages = one(con, "SELECT count(*), min(rowid + 1) FILTER (WHERE odd), "
                             "count(_unwrap) FROM _records")
    if not n:
        raise RefusedFile(str(path), "holds no records")
    if odd is not None:
        raise RefusedFile(str(path), f"record {odd} is not a JSON object")
    names = ", ".join(f'"{_name(p)}"' for p in fields)
    if not pages:
        q(con, f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT rowid + 1 AS _row, {names}, "
               f"false AS _odd FROM _records")
        return 0
    # Pages are few: their elements are extracted again, then all records renumbered.
    q(con, f"CREATE OR REPLACE TEMP TABLE {table} AS "
           f"WITH numbered AS (SELECT rowid + 1 AS rec, * FROM _records), flat AS ("
           f" SELECT rec, 0 AS i, {names}, false AS _odd FROM numbered WHERE _unwrap IS NULL"
           f" UNION ALL"
           f" SELECT rec, i, {cols}, NOT starts_with(ltrim(e), '{{') FROM ("
           f"  SELECT rec, i, e, json_extract_string(e, {paths[:-1]!r}) AS x FROM ("
           f"   SELECT rec, unnest(range(1, CAST(json_array_length(_unwrap) AS BIGINT) + 1)) AS i,"
           f"   unnest(json_extract(_unwrap, '$[*]')) AS e FROM numbered"
           f"   WHERE _unwrap IS NOT NULL))) "
           f"SELECT row_number() OVER (ORDER BY rec, i) AS _row, * EXCLUDE (rec, i) FROM flat")
    odd = one(con, f"SELECT min(_row) FROM {table} WHERE _odd")[0]
    if odd is not None:
        raise RefusedFile(str(path), f"element {odd} of its '{unwrap}' is not a JSON object")
    return int(pages)


def case_map(expr: str, table: dict[str, str]) -> str:
    """SQL: `table[lower(expr)]` (keys in lower case), NULL when absent; a CASE, not a join,
    so that rows keep the file's order."""
    if not table:
        return "CAST(NULL AS VARCHAR)"
    whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in table.items())
    return f"CASE lower({expr}) {whens} END"


_CTX = tuple(f"context.contextActivities.{k}{i}.id" for k in CONTEXT_KEYS for i in ("[0]", ""))
_FIELDS = (
    "id", "actor.objectType", "actor.mbox", "actor.mbox_sha1sum", "actor.account.homePage",
    "actor.account.name", "actor.openid", "verb.id", "verb.display", "object.objectType",
    "object.id", "object.definition.name", "timestamp", "stored", "result.duration", "more",
) + _CTX


def _mapping_checks(path: Path, mapping: Mapping[str, object]) -> tuple[
        str | None, str | None, dict[str, str], str, dict[str, str]]:
    actor = mapping.get("actor")
    if actor is not None and actor not in ACTORS:
        raise RefusedFile(str(path), f"mapping: actor {actor!r} is none of {', '.join(ACTORS)}")
    verbs = mapping.get("verbs") or {}
    if not isinstance(verbs, Mapping):
        raise RefusedFile(str(path), "mapping: verbs must map verb IRIs to activities")
    source = mapping.get("exchange_from") or "grouping"
    table: dict[str, str] = {}
    if isinstance(source, Mapping):
        table = {str(k).lower(): str(v) for k, v in source.items()}
        source = "any"
    elif source not in CONTEXT_KEYS:
        raise RefusedFile(str(path), f"mapping: exchange_from {source!r} is none of "
                          f"{', '.join(CONTEXT_KEYS)}, nor a map of activity ids to exchanges")
    ex = mapping.get("exchange_id")
    return (None if actor is None else str(actor), None if ex is None else str(ex),
            {str(k): str(v) for k, v in verbs.items()}, str(source), table)


def read(path: Path, mapping: dict, notes: list[str]) -> pa.Table:
    """The statements of an xAPI file as events (see the module's docstring)."""
    path = Path(path)
    actor, exchange_id, verbs, source, exchange_table = _mapping_checks(path, mapping or {})
    con = duckdb.connect()
    try:
        q(con, "SET TimeZone = 'UTC'")
        return _read(con, path, actor, exchange_id, verbs, source, exchange_table, notes)
    except duckdb.Error as e:
        raise RefusedFile(str(path), f"cannot be read as xAPI: {one_line(str(e), path)}") \
            from None
    finally:
        con.close()


def _read(con: duckdb.DuckDBPyConnection, path: Path, actor: str | None,
          exchange_id: str | None, verbs: dict[str, str], source: str,
          exchange_table: dict[str, str], notes: list[str]) -> pa.Table:
    open_json(con, path, "statements", _FIELDS, "_stmts")
    more = [m for m in one(con, "SELECT list(DISTINCT more) FROM _records")[0] or [] if m]
    if more:
        notes.append(f"xAPI: the StatementResult 'more' link ({listed(sorted(more))}) names "
                     "further statements that are not in this file: fetch them from the LRS "
                     "and load them too")
    voider = f"coalesce(lower(verb_id) = {lit(VOIDED)}, false)"
    statements, homepages, n_voiders = one(con,
        "SELECT count(*) FILTER (WHERE verb_id IS NOT NULL OR actor_mbox IS NOT NULL "
        "OR actor_account_name IS NOT NULL OR actor_mbox_sha1sum IS NOT NULL "
        "OR actor_openid IS NOT NULL), count(DISTINCT actor_account_homePage), "
        f"count(*) FILTER (WHERE {voider}) FROM _stmts")
    if not statements:
        raise RefusedFile(str(path), "holds no xAPI statements (objects with an actor and a verb)")

    # Voiding: voiders name their targets; neither is an event.
    q(con, "CREATE OR REPLACE TEMP TABLE _void AS SELECT DISTINCT lower(object_id) AS target "
           f"FROM _stmts WHERE {voider} AND object_objectType = 'StatementRef' "
           "AND object_id IS NOT NULL")
    if n_voiders:
        n_voided, absent, n_bad_voiders = one(con,
            f"SELECT (SELECT count(*) FROM _stmts WHERE NOT {voider} AND lower(id) IN "
            "(SELECT target FROM _void)), (SELECT count(*) FROM _void WHERE target NOT IN "
            f"(SELECT lower(id) FROM _stmts WHERE id IS NOT NULL AND NOT {voider})), "
            f"(SELECT count(*) FROM _stmts WHERE {voider} AND object_objectType IS DISTINCT "
            "FROM 'StatementRef')")
        notes.append(f"xAPI: {n_voiders} voiding statement(s) removed {n_voided} voided "
                     f"statement(s); neither counts as an event"
                     + (f"; {absent} voided id(s) are not in this file (an earlier load may "
                        "hold them: reload that file without them)" if absent else "")
                     + (f"; {n_bad_voiders} 'voided' statement(s) without a StatementRef "
                        "object were dropped" if n_bad_voiders else ""))

    # Actor: accounts of several systems are told apart by their homePage.
    account = ("actor_account_homePage || '|' || actor_account_name" if homepages > 1
               else "actor_account_name")
    if homepages > 1:
        notes.append(f"xAPI: accounts of {homepages} systems (homePage): participant ids are "
                     "homePage|name, so the same name on two systems is two people")
    ids = {
        "mbox": "nullif(lower(trim(regexp_replace(actor_mbox, '^mailto:', '', 'i'))), '')",
        "mbox_sha1sum": "nullif(lower(trim(actor_mbox_sha1sum)), '')",
        "account": f"CASE WHEN actor_account_name <> '' THEN {account} END",
        "openid": "nullif(actor_openid, '')",
    }
    participant = ids[actor] if actor else f"coalesce({', '.join(ids[a] for a in ACTORS)})"

    # Exchange: a constant, or an activity id of the context (an array of activities, or one).
    def first_id(key: str) -> str:
        base = f"context_contextActivities_{key}"
        return f"coalesce({base}_0_id, {base}_id)"

    if exchange_id is not None:
        exchange = lit(exchange_id)
    elif exchange_table:
        exchange = ("coalesce(" + ", ".join(case_map(first_id(k), exchange_table)
                                            for k in CONTEXT_KEYS) + ")")
    else:
        exchange = first_id(source)

    # Every output column and every flag a note counts, computed once per statement.
    parts, ok = duration_sql("result_duration")
    minutes, calendar = minutes_sql("d", "d_ok")
    mapped = case_map("verb_id", {k.lower(): v for k, v in verbs.items()})
    activity = f"coalesce({mapped}, lower(regexp_extract(verb_id, '([^/#]+)[/#]*$', 1)))"
    mins = (f"CASE WHEN result_duration IS NOT NULL AND NOT d_ok THEN result_duration "
            f"ELSE CAST(round({minutes}, 6) AS VARCHAR) END")
    void = (" OR (id IS NOT NULL AND lower(id) IN (SELECT target FROM _void))"
            if n_voiders else "")
    q(con, f"CREATE OR REPLACE TEMP TABLE _out AS SELECT "
           f"CAST({participant} AS VARCHAR) AS participant_id, "
           f"CAST({exchange} AS VARCHAR) AS exchange_id, "
           f"CAST({utc_sql('coalesce(timestamp, stored)')} AS VARCHAR) AS occurred_at, "
           f"CAST(nullif({activity}, '') AS VARCHAR) AS activity, "
           f"CAST({mins} AS VARCHAR) AS minutes, CAST(_row AS BIGINT) AS _row, "
           f"{voider}{void} AS _dropped, coalesce(actor_objectType = 'Group', false) AS _grp, "
           f"{calendar} AS _calendar, result_duration IS NOT NULL AND NOT d_ok AS _malformed, "
           f"timestamp IS NULL AND stored IS NOT NULL AS _stored, "
           f"(NOT starts_with(ltrim(verb_display), '{{') OR "
           f"NOT starts_with(ltrim(object_definition_name), '{{')) AS _plain, "
           f"verb_id AS _verb, {mapped} IS NOT NULL AS _mapped "
           f"FROM (SELECT *, {parts} AS d, {ok} AS d_ok FROM _stmts)")
    groups, plain, n_cal, n_bad, no_ts, missing = one(con,
        "SELECT count(*) FILTER (WHERE _grp), count(*) FILTER (WHERE _plain), "
        "count(*) FILTER (WHERE _calendar), count(*) FILTER (WHERE _malformed), "
        "count(*) FILTER (WHERE _stored), count(*) FILTER (WHERE participant_id IS NULL "
        "AND NOT _grp AND NOT _dropped) FROM _out")
    if actor and missing:
        notes.append(f"xAPI: {missing} statement(s) have no actor {actor} (the mapping's "
                     "actor): their rows have no participant id and are rejected")
    if groups:
        notes.append(f"xAPI: {groups} statement(s) by a Group actor were dropped: events are "
                     "a participant's")
    odd = [r[0] for r in q(con, "SELECT DISTINCT _verb FROM _out WHERE _verb <> lower(_verb) "
                                "ORDER BY 1")]
    if odd:
        notes.append(f"xAPI: verb IRIs not in the standard lower case, compared "
                     f"case-insensitively: {listed(odd)}")
    if verbs:
        unmapped = [r[0] for r in q(con,
            "SELECT DISTINCT lower(_verb) FROM _out WHERE _verb IS NOT NULL AND NOT _mapped "
            f"AND lower(_verb) <> {lit(VOIDED)} ORDER BY 1")]
        if unmapped:
            notes.append(f"xAPI: verbs not in the mapping, named by their last segment: "
                         f"{listed(unmapped)}")
    if plain:
        notes.append(f"xAPI: {plain} statement(s) give a display or name as a plain string, "
                     "not a language map (invalid xAPI, accepted)")
    if n_cal:
        notes.append(f"xAPI: {n_cal} duration(s) in years or months have no length in minutes: "
                     "left empty")
    if n_bad:
        notes.append(f"xAPI: {n_bad} result.duration value(s) are not ISO 8601 durations "
                     "(PT1H2M3S): those rows are rejected")
    if no_ts:
        notes.append(f"xAPI: {no_ts} statement(s) without a timestamp are dated by 'stored' "
                     "(when the LRS received them)")
    notes.append("xAPI: actor names, context extensions (IP addresses, sessions) and results "
                 "other than the duration are not read")
    return con.sql("SELECT participant_id, exchange_id, occurred_at, activity, minutes, _row "
                   "FROM _out WHERE NOT _dropped AND NOT _grp ORDER BY _row").to_arrow_table()
