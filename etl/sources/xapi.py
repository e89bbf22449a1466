"""xAPI statements (Experience API 1.0.x) as the contract's events.

What an LRS or an LMS plugin exports: one statement object, a JSON array of statements, JSON
lines (one statement per line, or pretty-printed objects one after another), or LRS
`StatementResult` pages (`{"statements": [...], "more": "/xAPI/statements?..."}`; the `more`
link is noted, it cannot be followed offline). DuckDB parses the file and every field is taken
in SQL, so a million statements never pass through a Python loop: the usual file (a JSON array
or JSON lines of statements) by `read_json` with a typed schema of only the fields read, which
parses each statement once straight into columns; any other shape, or a statement that does
not fit the schema (a plain-string language map, one context activity not in an array), by
`read_records` (`read_json_objects` and one `json_extract_string` per statement).
Times are written at UTC as DuckDB prints them (`2024-03-30T23:30:00.5+00:00`).

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
- minutes: `result.duration` (ISO 8601, `PT1H2M3.5S`), by `duration_sql` (one regular
  expression in bulk; isodate, the maintained parser, is its oracle in the tests: calling it
  per statement would be a Python loop). Durations in years or months have no length in
  minutes and are left empty (noted); malformed ones are passed on for validation to reject.
- Every statement's columns come out of one SQL pass from the file to Arrow; what needs the
  whole file (repeated ids, voiding, accounts of several systems) is done on the Arrow table,
  and durations, verbs and mapped courses are worked out once per distinct value (those
  columns are marked CLEAN, so the loader does not trim them again).
- repeated ids: an export joined from two overlapping pulls holds some statements twice; the
  first statement of each id (compared case-insensitively) is kept and the others dropped,
  noted, with how many ids had copies that differ (an LRS keeps the one it stored first).
- voiding: a statement with verb `.../voided` and a `StatementRef` object removes the statement
  it names and is no event itself; voided ids absent from the file are noted (an earlier load
  may hold them).
- Language maps (`verb.display`, `object.definition.name`) are not needed for events; the common
  invalid variant with a plain string instead of a map is accepted and noted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.errors import RefusedFile
from etl.sources import CLEAN_SQL, clean

__all__ = [
    "FORMAT", "KIND", "sniff", "read", "DURATION_RE", "duration_sql", "minutes_sql",
    "duration_minutes", "utc_sql", "read_records", "case_map", "lit", "q", "one", "one_line",
    "listed",
]

FORMAT = "xapi"
KIND = "events"
VOIDED = "http://adlnet.gov/expapi/verbs/voided"
ACTORS = ("mbox", "mbox_sha1sum", "account", "openid")
CONTEXT_KEYS = ("grouping", "parent", "category", "other")
SHOWN = 5  # how many distinct values a note lists
OUTPUT = ["participant_id", "exchange_id", "occurred_at", "activity", "minutes", "_row"]

# ISO 8601 duration: P[nY][nM][nW][nD][T[nH][nM][nS]], a decimal point or comma in any number.
_N = r"(\d+(?:[.,]\d+)?)"
DURATION_RE = f"^P(?:{_N}Y)?(?:{_N}M)?(?:{_N}W)?(?:{_N}D)?(?:T(?:{_N}H)?(?:{_N}M)?(?:{_N}S)?)?$"
_PARTS = ("y", "mo", "w", "d", "h", "mi", "s")


def lit(s: str) -> str:
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def duration_sql(expr: str) -> tuple[str, str]:
    """SQL for an ISO 8601 duration `expr` (VARCHAR): (its parts, whether it is well formed).

    One regular expression per value: a value that does not match gives all parts empty, and
    only `P` and `PT` match with all parts empty. As lenient as isodate: `PT` (zero) and `P1DT`
    pass; a bare `P` and negative durations do not. Select the parts as a column (`AS d`) and
    give it to `minutes_sql` with the flag computed from it (`ok` refers to `d`).
    """
    parts = f"regexp_extract({expr}, {lit(DURATION_RE)}, {list(_PARTS)!r})"
    ok = f"({expr} = 'PT' OR " + " OR ".join(f"d.{p} <> ''" for p in _PARTS) + ")"
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
            f"SELECT {minutes} FROM (SELECT i, d, {ok} AS d_ok FROM (SELECT i, v, {parts} AS d "
            f"FROM (SELECT unnest(range(len($vals))) AS i, unnest($vals) AS v))) ORDER BY i",
            {"vals": values}).fetchall()
    return [r[0] for r in rows]


def utc_sql(ts: str, instant: str, cleaned: bool = False) -> tuple[str, str]:
    """SQL: (the instant, the ISO 8601 time at UTC) of a time `ts` (VARCHAR).

    Select the first as a column named `instant`, then the second over it: the cast is done
    once. A time with an offset is written at UTC (`2024-03-30T23:30:00.5+00:00`); one without
    goes on unchanged for the loader to read in the institution's zone, and one that does not
    parse goes on for validation to reject; `cleaned`: trimmed, empty as NULL (`CLEAN_SQL`).
    The connection's TimeZone must be UTC.

    The instant is printed from its microseconds since the epoch (`make_timestamp`), not by
    casting it to TIMESTAMP, which goes through ICU's calendar; and only the times passed on
    as written are trimmed, since a printed one has no spaces: on a million statements the
    cast and the trim were half the cost of every other column together.
    """
    has_offset = f"(regexp_matches({ts}, '(Z|z|[+-]\\d\\d(:?\\d\\d)?)$') AND length({ts}) > 10)"
    cast = f"CASE WHEN {has_offset} THEN TRY_CAST({ts} AS TIMESTAMPTZ) END"
    utc = f"make_timestamp(epoch_us({instant}))"
    text = (f"CASE WHEN {instant} IS NOT NULL THEN replace(CAST({utc} AS VARCHAR), ' ', 'T') "
            f"|| '+00:00' ELSE {CLEAN_SQL.format(ts) if cleaned else ts} END")
    return cast, text


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


def _formats(path: Path) -> list[str]:
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
    return (["array"] if body[:1] == b"[" else
            ["newline_delimited", "unstructured"] if first.endswith(b"}") else ["unstructured"])


def _refuse(path: Path, e: duckdb.Error) -> RefusedFile:
    if "UTF-16" in str(e):
        return RefusedFile(str(path), _UTF16)
    if "UTF-8" in str(e):
        return RefusedFile(str(path), "is not UTF-8 (JSON's encoding), perhaps Windows-1252: "
                           "convert it, e.g. 'iconv -f WINDOWS-1252 -t UTF-8 in.json > out.json'"
                           f" ({one_line(str(e), path)})")
    return RefusedFile(str(path), f"is not valid JSON: {one_line(str(e), path)}")


def read_records(con: duckdb.DuckDBPyConnection, path: Path, unwrap: str,
                 fields: tuple[str, ...], select: Callable[[str], str]) -> pa.Table:
    """Run `select(source)` over the records of a JSON file; return its rows with `_row`.

    `select` makes a query that keeps every row and its order (no WHERE, no join) and passes
    on the columns `_odd` and `_page`. `source` is a relation with one VARCHAR column per
    field (a JSON path below `$`, as text; `a.b[0].c` is column `a_b_0_c`), one row per record
    in file order. A top-level object with
    an array under `unwrap` (a StatementResult page, a Caliper envelope) stands for that
    array's elements. Each record is parsed once, by one `json_extract_string` of all fields,
    in one pass from file to Arrow: no table in between, and `_row` (records numbered from 1)
    is the row's position, since DuckDB keeps the file's order. Refuses a file that is not JSON
    in UTF-8, is empty, or holds records that are not objects.
    """
    paths = [f"$.{p}" for p in fields] + [f"$.{unwrap}"]
    cols = ", ".join(f'x[{i + 1}] AS "{_name(p)}"' for i, p in enumerate(fields))
    u = f"x[{len(paths)}]"
    table = None
    for fmt in (formats := _formats(path)):
        source = (f"(SELECT {cols}, NOT starts_with(json, '{{') AS _odd, "
                  f"coalesce(starts_with(ltrim({u}), '['), false) AS _page FROM ("
                  f"SELECT json, json_extract_string(json, {paths!r}) AS x "
                  f"FROM read_json_objects({lit(str(path))}, format={lit(fmt)})))")
        try:
            table = con.sql(select(source)).to_arrow_table()
            break
        except duckdb.Error as e:
            if fmt == formats[-1]:
                raise _refuse(path, e) from None
    if table is None:  # unreachable: the last format's error was raised
        raise RefusedFile(str(path), "cannot be read")
    if not table.num_rows:
        raise RefusedFile(str(path), "holds no records")
    odd = pc.index(table["_odd"], True).as_py()
    if odd >= 0:
        raise RefusedFile(str(path), f"record {odd + 1} is not a JSON object")
    if pc.any(table["_page"]).as_py():
        table = _unwrapped(con, path, unwrap, fields, select, cols, paths, formats)
    table = table.drop_columns(["_odd", "_page"])
    return table.append_column("_row", pa.array(np.arange(1, table.num_rows + 1)))


def _unwrapped(con: duckdb.DuckDBPyConnection, path: Path, unwrap: str,
               fields: tuple[str, ...], select: Callable[[str], str], cols: str,
               paths: list[str], formats: list[str]) -> pa.Table:
    """`read_records` for files of pages or envelopes: their elements in order, numbered."""
    u = f"x[{len(paths)}]"
    names = ", ".join(f'"{_name(p)}"' for p in fields)
    # An element's field, else its page's (the page's `more` link, the envelope's sensor).
    inherit = ", ".join(f'coalesce(x[{i + 1}], "{_name(p)}") AS "{_name(p)}"'
                        for i, p in enumerate(fields))
    for fmt in formats:
        try:
            q(con, f"CREATE OR REPLACE TEMP TABLE _records AS SELECT {cols}, "
                   f"CASE WHEN starts_with(ltrim({u}), '[') THEN {u} END AS _unwrap FROM ("
                   f"SELECT json_extract_string(json, {paths!r}) AS x "
                   f"FROM read_json_objects({lit(str(path))}, format={lit(fmt)}))")
            break
        except duckdb.Error:
            if fmt == formats[-1]:
                raise
    q(con, f"CREATE OR REPLACE TEMP TABLE _flat AS "
           f"WITH numbered AS (SELECT rowid + 1 AS rec, * FROM _records), flat AS ("
           f" SELECT rec, 0 AS i, {names}, false AS _odd FROM numbered WHERE _unwrap IS NULL"
           f" UNION ALL"
           f" SELECT rec, i, {inherit}, NOT starts_with(ltrim(e), '{{') FROM ("
           f"  SELECT *, json_extract_string(e, {paths[:-1]!r}) AS x FROM ("
           f"   SELECT *, unnest(range(1, CAST(json_array_length(_unwrap) AS BIGINT) + 1)) AS i,"
           f"   unnest(json_extract(_unwrap, '$[*]')) AS e FROM numbered"
           f"   WHERE _unwrap IS NOT NULL))) "
           f"SELECT row_number() OVER (ORDER BY rec, i) AS _row, * EXCLUDE (rec, i) FROM flat")
    odd = one(con, "SELECT min(_row) FROM _flat WHERE _odd")[0]
    if odd is not None:
        raise RefusedFile(str(path), f"element {odd} of its '{unwrap}' is not a JSON object")
    # _flat was written in _row order, and a scan keeps it.
    return con.sql(select("(SELECT * EXCLUDE (_row), false AS _page FROM _flat)")) \
        .to_arrow_table()


def case_map(expr: str, table: dict[str, str]) -> str:
    """SQL: `table[lower(expr)]` (keys in lower case), NULL when absent; a CASE, not a join,
    so that rows keep the file's order."""
    if not table:
        return "CAST(NULL AS VARCHAR)"
    whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in table.items())
    return f"CASE lower({expr}) {whens} END"


def _ctx(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The paths of the first activity id under each contextActivities key (array or one)."""
    return tuple(f"context.contextActivities.{k}{i}.id" for k in keys for i in ("[0]", ""))


_FIELDS = (
    "id", "actor.objectType", "actor.mbox", "actor.mbox_sha1sum", "actor.account.homePage",
    "actor.account.name", "actor.openid", "verb.id", "verb.display", "object.objectType",
    "object.id", "object.definition.name", "timestamp", "stored", "result.duration", "more",
)


def _typed_columns(keys: tuple[str, ...]) -> dict[str, str]:
    """The `read_json` schema of the fields a statement is read for, and nothing else.

    A language map is typed as an object of one key no language has (`_`): a plain string
    there fails the typed read, which sends the file to `read_records`, where it is accepted
    and noted, while a map is only checked to be an object, none of its text copied (typed
    `STRUCT(en VARCHAR)`, the maps cost a seventh of the read). Context activities are typed
    as arrays; a single object fails alike.
    """
    lang = "STRUCT(_ BOOLEAN)"
    ctx = ", ".join(f"{k} STRUCT(id VARCHAR)[]" for k in keys)
    cols = {
        "id": "VARCHAR",
        "actor": "STRUCT(objectType VARCHAR, mbox VARCHAR, mbox_sha1sum VARCHAR, "
                 "account STRUCT(homePage VARCHAR, name VARCHAR), openid VARCHAR)",
        "verb": f"STRUCT(id VARCHAR, display {lang})",
        "object": f"STRUCT(objectType VARCHAR, id VARCHAR, definition STRUCT(name {lang}))",
        "timestamp": "VARCHAR", "stored": "VARCHAR", "result": "STRUCT(duration VARCHAR)",
        "more": "VARCHAR", "statements": "JSON",
    }
    if keys:
        cols["context"] = f"STRUCT(contextActivities STRUCT({ctx}))"
    return cols


def _read_typed(con: duckdb.DuckDBPyConnection, path: Path, keys: tuple[str, ...],
                select: Callable[[str], str]) -> pa.Table | None:
    """`read_records` for the usual file, a JSON array or JSON lines of statements; else None.

    DuckDB's `read_json` with a typed schema of only the fields read parses each statement
    once, straight into columns, several times faster than `read_json_objects` and a
    `json_extract_string` of each path. Anything it does not expect (a plain-string language
    map, one context activity not in an array, a StatementResult page, a record that is not
    an object, pretty-printed objects, a byte order mark before JSON lines) gives None, and
    the file is read by `read_records`, which reads and notes all of those. Columns are named
    as `read_records` names them, so `select` is the same query over either.
    """
    fmt = _formats(path)[0]
    if fmt not in ("array", "newline_delimited"):
        return None
    cols = _typed_columns(keys)
    ctx = []
    for k in keys:
        base = f"context_contextActivities_{k}"
        ctx += [f'context.contextActivities.{k}[1].id AS "{base}_0_id"',
                f'CAST(NULL AS VARCHAR) AS "{base}_id"']
    # A record whose every field is empty may be `null` rather than `{}`: read_records tells.
    empty = " AND ".join(f'"{c}" IS NULL' for c in cols)
    # A language map that is a plain string fails this read, so none here is plain: the two
    # maps are the constant '{}' (an object), which `select` tests once per chunk of rows
    # instead of once per statement (0.08 s CPU on a million).
    source = (
        "(SELECT id, actor.objectType AS actor_objectType, actor.mbox AS actor_mbox, "
        "actor.mbox_sha1sum AS actor_mbox_sha1sum, "
        "actor.account.homePage AS actor_account_homePage, "
        "actor.account.name AS actor_account_name, actor.openid AS actor_openid, "
        "verb.id AS verb_id, '{}' AS verb_display, "
        "object.objectType AS object_objectType, object.id AS object_id, "
        "'{}' AS object_definition_name, timestamp, stored, result.duration AS result_duration, "
        "more, "
        + "".join(c + ", " for c in ctx)
        + f"{empty} AS _odd, statements IS NOT NULL AS _page "
        f"FROM read_json({lit(str(path))}, format={lit(fmt)}, records='true', "
        f"columns={cols!r}))")
    try:
        table = con.sql(select(source)).to_arrow_table()
    except duckdb.Error:
        return None
    if not table.num_rows or pc.any(table["_odd"]).as_py() or pc.any(table["_page"]).as_py():
        return None
    table = table.drop_columns(["_odd", "_page"])
    return table.append_column("_row", pa.array(np.arange(1, table.num_rows + 1)))


def _with_minutes(con: duckdb.DuckDBPyConnection, t: pa.Table) -> pa.Table:
    """`t` with its `minutes` (the durations as read) as minutes, and the columns `_calendar`
    and `_malformed` saying which durations have none.

    A file holds few distinct durations for its many statements (seconds of a session repeat),
    so each distinct value is parsed once, by `duration_sql` over a dictionary of them, and the
    results are taken back by index: parsing each of a million strings cost more than all the
    other columns together. A malformed duration is passed on as written, for validation to
    reject with its row.
    """
    coded = pc.dictionary_encode(t["minutes"].combine_chunks())
    parts, ok = duration_sql("v")
    minutes, calendar = minutes_sql("d", "d_ok")
    values = pa.table({"i": pa.array(np.arange(len(coded.dictionary))), "v": coded.dictionary})
    text = f"CASE WHEN NOT d_ok THEN v ELSE CAST(round({minutes}, 6) AS VARCHAR) END"
    con.register("_durations", values)
    try:
        parsed = con.sql(
            f"SELECT {CLEAN_SQL.format(text)} AS minutes, "
            f"coalesce({calendar}, false) AS _calendar, "
            f"NOT d_ok AS _malformed FROM (SELECT i, v, d, {ok} AS d_ok FROM (SELECT i, v, "
            f"{parts} AS d FROM _durations)) ORDER BY i").to_arrow_table()
    finally:
        con.unregister("_durations")
    for name in ("minutes", "_calendar", "_malformed"):
        column = pc.take(parsed[name], coded.indices)
        if name == "minutes":
            t = clean(t, name, column)
        else:
            t = t.append_column(name, pc.fill_null(column, False))
    return t


def _with_verbs(con: duckdb.DuckDBPyConnection, t: pa.Table, verbs: dict[str, str]) -> pa.Table:
    """`t` with what its verbs say, computed once per distinct verb IRI (a file uses a handful):
    `activity`; `_voider`, the verb is `voided`; `_verb`, the IRI when it is worth a note (not
    in lower case, or not in the mapping's `verbs`); and, from the statement's object,
    `_target` (the id a voider voids) and `_bad_voider` (a voider whose object is no
    StatementRef). A regular expression and three `lower` per statement cost a tenth of the
    read; per distinct IRI they cost nothing.
    """
    coded = pc.dictionary_encode(t["_verb_iri"].combine_chunks())
    mapped = case_map("v", {k.lower(): v for k, v in verbs.items()})
    activity = f"coalesce({mapped}, lower(regexp_extract(v, '([^/#]+)[/#]*$', 1)))"
    odd = "v <> lower(v)" + (f" OR {mapped} IS NULL" if verbs else "")
    con.register("_verbs", pa.table({"i": pa.array(np.arange(len(coded.dictionary))),
                                     "v": coded.dictionary}))
    try:
        per = con.sql(
            f"SELECT {CLEAN_SQL.format(activity)} AS activity, "
            f"coalesce(lower(v) = {lit(VOIDED)}, false) AS _voider, "
            f"CAST(CASE WHEN {odd} THEN v END AS VARCHAR) AS _verb FROM _verbs ORDER BY i"
        ).to_arrow_table()
    finally:
        con.unregister("_verbs")
    voider = pc.fill_null(pc.take(per["_voider"], coded.indices), False)
    t = t.drop_columns(["_verb_iri"])
    t = clean(t, "activity", pc.take(per["activity"], coded.indices))
    t = t.append_column("_voider", voider)
    t = t.append_column("_verb", pc.take(per["_verb"], coded.indices))
    t = t.append_column("_target", pc.if_else(voider, t["_ref"], pa.scalar(None, pa.string())))
    t = t.append_column("_bad_voider", pc.and_(voider, pc.invert(t["_is_ref"])))
    return t.drop_columns(["_ref", "_is_ref"])


def _exchanges(con: duckdb.DuckDBPyConnection, t: pa.Table, table: dict[str, str]) -> pa.Table:
    """`t` with the exchange of its first context activity (`_in_grouping`, then `_in_parent`,
    ...) that `table` (lower-case activity id -> exchange) names, and without those columns.

    Looked up per distinct activity id (a file names few courses), by Arrow: a CASE of every
    mapped id over every statement and context key cost a third of the whole read.
    """
    keys = pa.array(list(table), pa.string())
    # The exchanges as `stage` would make them (trimmed, none empty), once each: CLEAN.
    values = pa.array(one(con, f"SELECT list_transform($v, lambda x: {CLEAN_SQL.format('x')})",
                          {"v": list(table.values())})[0], pa.string())
    found = None
    for k in CONTEXT_KEYS:
        coded = pc.dictionary_encode(t[f"_in_{k}"].combine_chunks())
        index = pc.index_in(pc.utf8_lower(coded.dictionary), value_set=keys)
        mapped = pc.take(pc.take(values, index), coded.indices)
        found = mapped if found is None else pc.coalesce(found, mapped)
    t = t.drop_columns([f"_in_{k}" for k in CONTEXT_KEYS])
    return clean(t, "exchange_id", found)


def _drop_repeated_ids(con: duckdb.DuckDBPyConnection, t: pa.Table,
                       notes: list[str]) -> pa.Table:
    """`t` without the statements whose id (compared case-insensitively) came earlier in it.

    An LRS stores an id once, but an export joined from two overlapping pulls holds some
    statements twice. The first in the file is kept: an LRS keeps the statement it stored first
    and refuses a later one with the same id and other content (xAPI 1.0.3, 409 Conflict), and
    pulls are joined in the order they were made. Copies that differ in what an event is read
    from (actor, exchange, time, verb, duration, voiding) are counted in the note. Statements
    without an id are all kept.
    """
    ids = t["_id"]
    # Counted by DuckDB on all cores: Arrow's count_distinct of a million ids takes longer.
    con.register("_ids", pa.table({"_id": ids}))
    try:
        distinct = one(con, "SELECT count(DISTINCT _id) FROM _ids")[0]
    finally:
        con.unregister("_ids")
    if distinct == len(ids) - ids.null_count:
        return t
    order = pa.array(np.arange(t.num_rows))
    content = ["participant_id", "exchange_id", "occurred_at", "activity", "minutes",
               "_home", "_voider", "_target"]
    every = pc.CountOptions(mode="all")
    groups = pa.table({"_id": ids, "i": order, **{c: t[c] for c in content}}) \
        .filter(pc.is_valid(ids)).group_by("_id", use_threads=False).aggregate(
            [("i", "min"), ("i", "count")] + [(c, "count_distinct", every) for c in content])
    groups = groups.filter(pc.greater(groups["i_count"], 1))
    widest = pc.max_element_wise(*(groups[f"{c}_count_distinct"] for c in content))
    n_differ = pc.sum(pc.greater(widest, 1)).as_py() or 0
    dropped = (pc.sum(groups["i_count"]).as_py() or 0) - groups.num_rows
    repeated = pc.is_in(ids, value_set=groups["_id"])
    first = pc.is_in(order, value_set=groups["i_min"])
    t = t.filter(pc.or_kleene(pc.invert(pc.fill_null(repeated, False)), first))
    notes.append(
        f"xAPI: {dropped} statement(s) repeat the id of an earlier one in the file (exports of "
        f"overlapping pulls joined together): dropped, the first of each id kept"
        + (f"; {n_differ} of the {groups.num_rows} repeated id(s) have copies that differ "
           "(actor, exchange, time, verb, duration or voiding): the first in the file was "
           "kept, as an LRS keeps the statement it stored first" if n_differ else ""))
    return t


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
    ids = {
        "mbox": "nullif(lower(trim(CASE WHEN lower(left(actor_mbox, 7)) = 'mailto:' "
                "THEN substr(actor_mbox, 8) ELSE actor_mbox END)), '')",
        "mbox_sha1sum": "nullif(lower(trim(actor_mbox_sha1sum)), '')",
        "account": "nullif(actor_account_name, '')",
        "openid": "nullif(actor_openid, '')",
    }
    participant = ids[actor] if actor else f"coalesce({', '.join(ids[a] for a in ACTORS)})"
    by_account = (f"{ids['account']} IS NOT NULL" if actor in (None, "account") else "false")
    if actor is None:
        by_account += " AND " + " AND ".join(f"{ids[a]} IS NULL" for a in ACTORS[:2])

    def first_id(key: str) -> str:  # an array of activities, or one
        base = f"context_contextActivities_{key}"
        return f"coalesce({base}_0_id, {base}_id)"

    if exchange_id is not None:
        exchange = lit(exchange_id)
    elif exchange_table:  # looked up after the query, in `_exchanges`
        exchange = "NULL"
    else:
        exchange = first_id(source)
    cast, text = utc_sql("coalesce(timestamp, stored)", "instant", cleaned=True)

    def select(src: str) -> str:
        # Every output column and every flag a note counts, computed once per record.
        return (
            f"SELECT _odd, _page, {CLEAN_SQL.format(participant)} AS participant_id, "
            f"{CLEAN_SQL.format(exchange)} AS exchange_id, "
            f"{text} AS occurred_at,"
            + "".join(f" {first_id(k)} AS _in_{k}," for k in CONTEXT_KEYS if exchange_table)
            + " CAST(verb_id AS VARCHAR) AS _verb_iri, "
            f"CAST(result_duration AS VARCHAR) AS minutes, "
            f"coalesce(object_objectType = 'StatementRef', false) AS _is_ref, "
            f"CASE WHEN object_objectType = 'StatementRef' THEN lower(object_id) END AS _ref, "
            f"lower(id) AS _id, "
            f"coalesce(actor_objectType = 'Group', false) AS _grp, "
            f"coalesce({by_account}, false) AS _by_account, actor_account_homePage AS _home, "
            f"(verb_id IS NOT NULL OR actor_mbox IS NOT NULL OR actor_account_name IS NOT NULL "
            f"OR actor_mbox_sha1sum IS NOT NULL OR actor_openid IS NOT NULL) AS _statement, "
            f"timestamp IS NULL AND stored IS NOT NULL AS _stored, "
            f"(NOT starts_with(ltrim(verb_display), '{{') OR "
            f"NOT starts_with(ltrim(object_definition_name), '{{')) AS _plain, "
            f"more AS _more "
            f"FROM (SELECT *, {cast} AS instant FROM {src})")

    # Only the context keys used are extracted: each path costs time on a million statements.
    keys = (() if exchange_id is not None else CONTEXT_KEYS if exchange_table else (source,))
    t = _read_typed(con, path, keys, select)
    if t is None:
        t = read_records(con, path, "statements", _FIELDS + _ctx(keys), select)
    if not pc.any(t["_statement"]).as_py():
        raise RefusedFile(str(path), "holds no xAPI statements (objects with an actor and a verb)")
    more = sorted(m for m in pc.unique(t["_more"]).to_pylist() if m)
    if more:
        notes.append(f"xAPI: the StatementResult 'more' link ({listed(more)}) names "
                     "further statements that are not in this file: fetch them from the LRS "
                     "and load them too")

    # Trimmed in the query above, as `stage` would: marked CLEAN, the loader reads the table
    # as it is, without copying it (see `etl.sources.stage`).
    for name in ("participant_id", "exchange_id", "occurred_at"):
        t = clean(t, name, t[name])
    t = _with_minutes(con, t)
    t = _with_verbs(con, t, verbs)
    if exchange_table:
        t = _exchanges(con, t, exchange_table)
    t = _drop_repeated_ids(con, t, notes)

    # Voiding: voiders name their targets; neither is an event.
    targets = pc.unique(pc.drop_null(t["_target"]))
    voided = pc.and_(pc.is_in(t["_id"], value_set=targets), pc.invert(t["_voider"]))
    voided = pc.fill_null(voided, False)
    n_voiders = pc.sum(t["_voider"]).as_py() or 0
    if n_voiders:
        ids_here = pc.unique(pc.drop_null(pc.filter(t["_id"], pc.invert(t["_voider"]))))
        absent = len(targets) - pc.sum(pc.is_in(targets, value_set=ids_here)).as_py()
        n_bad = pc.sum(t["_bad_voider"]).as_py() or 0
        notes.append(f"xAPI: {n_voiders} voiding statement(s) removed "
                     f"{pc.sum(voided).as_py() or 0} voided statement(s); neither counts as an "
                     "event"
                     + (f"; {absent} voided id(s) are not in this file (an earlier load may "
                        "hold them: reload that file without them)" if absent else "")
                     + (f"; {n_bad} 'voided' statement(s) without a StatementRef object were "
                        "dropped" if n_bad else ""))

    # Accounts of several systems are told apart by their homePage.
    homes = pc.count_distinct(pc.filter(t["_home"], t["_by_account"])).as_py()
    if homes > 1:
        qualified = pc.binary_join_element_wise(t["_home"], t["participant_id"], "|")
        # Not marked CLEAN: a homePage may bring spaces, which `stage` trims.
        t = t.set_column(t.schema.get_field_index("participant_id"), "participant_id",
                         pc.if_else(t["_by_account"], qualified, t["participant_id"]))
        notes.append(f"xAPI: accounts of {homes} systems (homePage): participant ids are "
                     "homePage|name, so the same name on two systems is two people")

    keep = pc.invert(pc.or_(pc.or_(t["_voider"], voided), t["_grp"]))
    count = {c: pc.sum(pc.and_(t[c], keep)).as_py() or 0
             for c in ("_grp", "_plain", "_calendar", "_malformed", "_stored")}
    count["_grp"] = pc.sum(t["_grp"]).as_py() or 0
    missing = pc.sum(pc.and_(pc.is_null(t["participant_id"]), keep)).as_py() or 0
    if actor and missing:
        notes.append(f"xAPI: {missing} statement(s) have no actor {actor} (the mapping's "
                     "actor): their rows have no participant id and are rejected")
    if count["_grp"]:
        notes.append(f"xAPI: {count['_grp']} statement(s) by a Group actor were dropped: events "
                     "are a participant's")
    odd = sorted({v for v in pc.unique(t["_verb"]).to_pylist() if v})
    upper = [v for v in odd if v != v.lower()]
    if upper:
        notes.append(f"xAPI: verb IRIs not in the standard lower case, compared "
                     f"case-insensitively: {listed(upper)}")
    unmapped = sorted({v.lower() for v in odd} - {k.lower() for k in verbs} - {VOIDED})
    if verbs and unmapped:
        notes.append(f"xAPI: verbs not in the mapping, named by their last segment: "
                     f"{listed(unmapped)}")
    if count["_plain"]:
        notes.append(f"xAPI: {count['_plain']} statement(s) give a display or name as a plain "
                     "string, not a language map (invalid xAPI, accepted)")
    if count["_calendar"]:
        notes.append(f"xAPI: {count['_calendar']} duration(s) in years or months have no length "
                     "in minutes: left empty")
    if count["_malformed"]:
        notes.append(f"xAPI: {count['_malformed']} result.duration value(s) are not ISO 8601 "
                     "durations (PT1H2M3S): those rows are rejected")
    if count["_stored"]:
        notes.append(f"xAPI: {count['_stored']} statement(s) without a timestamp are dated by "
                     "'stored' (when the LRS received them)")
    notes.append("xAPI: actor names, context extensions (IP addresses, sessions) and results "
                 "other than the duration are not read")
    # Only the output's columns are filtered, and only when a statement goes: filtering every
    # working column of a million statements cost a tenth of the read.
    out = t.select(OUTPUT)
    return out if pc.all(keep).as_py() else out.filter(keep)
