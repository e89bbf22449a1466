"""What the survey-tool readers (LimeSurvey, Google Forms, KoboToolbox) share: staging a file's
records as a DuckDB table of text columns, matching its columns to instrument items through the
mapping, reading its dates, and giving the contract's wide responses as an Arrow table.

Encoding and separator are settled as for the contract's CSVs (`etl.readers`: byte order mark,
UTF-8, else Windows-1252 with a note; the separator that splits the header record into the most
columns). The header record is split with Python's csv module; the rows only ever by DuckDB
(`read_csv`, or pandas' `read_excel` for a workbook), and every value is reshaped in SQL.

Columns are addressed by position (`c1`, `c2`, ...), so a header may hold anything a survey tool
writes there: brackets, full question text, line breaks, the same words twice.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

import surveys
from etl import readers
from etl.errors import RefusedFile
from etl.sources import _dates, _text
from etl.sources._dates import zone
from etl.sources._text import sql_str

__all__ = ["Staged", "stage_csv", "stage_xlsx", "split_header", "items_for", "column_named",
           "clock_sql", "day_first", "zone", "answer_sql", "responses_table", "guarded",
           "sql_str", "key", "listed", "EMPTY"]

EMPTY = ("", "N/A", "NA", "-", "NULL", "\\N")  # cells that mean "no answer" in these exports
LISTED = 8  # names a note lists before saying "and N more"

# A date and clock time: year first (`2024/03/05 10:11:12 AM GMT+1`, `2024-03-05 10:11`) or
# day/month first (`05/03/2024 10:11:12`, `3/5/2024 10:11:12`, `05.03.2024 10:11`), an optional
# AM/PM and an optional zone written as GMT/UTC with an offset, or Z.
_CLOCK = (r"^\s*(\d{1,4})[/.\-](\d{1,2})[/.\-](\d{1,4})(?:,?\s+|T)(\d{1,2}):(\d{2})"
          r"(?::(\d{2})(?:[.,]\d+)?)?\s*([AaPp]\.?\s?[Mm]\.?)?\s*"
          r"(?:(?:GMT|UTC)?\s*([+-])(\d{1,2})(?::?(\d{2}))?|(GMT|UTC|Z))?\s*$")
_PARTS = "['a', 'b', 'c', 'h', 'mi', 's', 'ap', 'sign', 'oh', 'om', 'utc']"


def key(s: str) -> str:
    """How headers and mapping keys are compared: case, runs of spaces and a BOM ignored."""
    return re.sub(r"\s+", " ", str(s).lstrip("\ufeff")).strip().casefold()


def listed(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:LISTED])
    return shown + (f" and {len(names) - LISTED:,} more" if len(names) > LISTED else "")


@dataclass
class Staged:
    """A file's records in TEMP TABLE `rows` of `con`: `_row` (the spreadsheet row: header = 1)
    and `c1`..`c<n>`, trimmed text, the exports' empty markers as NULL."""

    con: duckdb.DuckDBPyConnection
    header: list[str]
    notes: list[str] = field(default_factory=list)
    clocks: int = 0  # time columns parsed so far (`_p<n>`, `_t<n>` in `rows`)

    def col(self, i: int) -> str:
        return f"c{i + 1}"


# The first record of a text and its separator (the one of `,` `;` tab `|` giving the most
# fields), as for the contract's CSVs.
split_header = readers.split_header


def _check_width(path: Path, header: list[str]) -> list[str]:
    while header and not header[-1].strip():  # a trailing separator on the header line
        header = header[:-1]
    if not header:
        raise RefusedFile(str(path), "has no header record")
    if len(header) > readers.max_columns():
        raise RefusedFile(str(path), f"has {len(header):,} columns; at most "
                                     f"{readers.max_columns():,} are read")
    return header


def stage_csv(path: Path, notes: list[str]) -> Staged:
    """The records of a CSV export (any of the readers' encodings and separators)."""
    with _text.decoded(path, notes) as text:
        with open(text, encoding="utf-8-sig", newline="") as f:
            head = f.read(readers.HEADER_CHARS)
        header, delimiter = split_header(head)
        full = len(header)
        header = _check_width(path, header)
        con = _text.connect()
        _text.scan_csv(con, text, width=full, delimiter=delimiter, header=True)
        _text.finish_rows(con, len(header), 2, EMPTY)
    return Staged(con, header, notes)


def stage_xlsx(path: Path, notes: list[str], what: str) -> Staged:
    """The records of a workbook's first sheet; the other sheets are noted as `what`."""
    with pd.ExcelFile(path, engine="openpyxl") as book:
        names = list(book.sheet_names)
        df = pd.read_excel(book, sheet_name=names[0], header=None, dtype=str,
                           keep_default_na=False)
    if len(names) > 1:
        notes.append(f"sheet '{names[0]}' read; {what} not read: {listed(names[1:])}")
    if df.empty:
        raise RefusedFile(str(path), f"sheet '{names[0]}' is empty")
    header = _check_width(path, ["" if v is None else str(v) for v in df.iloc[0].tolist()])
    body = df.iloc[1:, : len(header)].copy()
    body.columns = [f"c{i}" for i in range(1, len(header) + 1)]
    body = body.astype("object").where(body.notna(), None)
    con = _text.connect()
    con.register("_xlsx", body)
    con.execute("CREATE TEMP TABLE _raw AS SELECT * FROM _xlsx")
    con.unregister("_xlsx")
    _text.finish_rows(con, len(header), 2, EMPTY)
    return Staged(con, header, notes)


@contextlib.contextmanager
def guarded(path: Path, what: str) -> Iterator[None]:
    """Any failure to parse the file (a workbook's too) becomes one RefusedFile line naming the
    format."""
    try:
        with _text.guarded(path, what, (KeyError, IndexError, zipfile.BadZipFile)):
            yield
    except Exception as e:
        if not _invalid_workbook(e):
            raise
        raise RefusedFile(str(path), f"cannot be read as {what} ({readers._first_line(e)})"
                          ) from None


def _invalid_workbook(e: BaseException) -> bool:
    """Whether `e` is openpyxl's InvalidFileException. openpyxl is imported only when a workbook
    is read (≈ 0.2 s of every command's start otherwise), and only it raises that exception, so
    it is looked up among the imported modules rather than imported here."""
    mod = sys.modules.get("openpyxl.utils.exceptions")
    return mod is not None and isinstance(e, mod.InvalidFileException)


# -- mapping -------------------------------------------------------------------------------------

def column_named(st: Staged, wanted: str | None, keys_of: Callable[[str], list[str]]
                 ) -> int | None:
    """The index of the column the mapping (or a default) names, by any of its keys."""
    if not wanted:
        return None
    k = key(wanted)
    for i, h in enumerate(st.header):
        if k in {key(c) for c in keys_of(h)}:
            return i
    return None


def items_for(path: Path, st: Staged, mapping: dict, keys_of: Callable[[str], list[str]],
              skip: set[int], built: frozenset[str] = frozenset()) -> dict[str, int]:
    """{item id: column index}: the mapping's `items` (question id/code/text -> item id) matched
    against each header's keys, and headers that are an item id themselves. Columns in `skip`
    (metadata, the participant) are not items; the other unmatched ones are noted as dropped.
    `built` are questions the reader makes from several columns (their items are not returned)."""
    index = surveys.item_index(surveys.load_instruments())
    given = mapping.get("items") or {}
    if not isinstance(given, dict):
        raise RefusedFile(str(path), "the mapping's items must be a table of question -> item id")
    if not isinstance(mapping.get("answers") or {}, dict):
        raise RefusedFile(str(path), "the mapping's answers must be a table of answer code or "
                                     "label -> value")
    # An empty target skips the question (a starting mapping lists every question with '').
    skipped = {key(k) for k, v in given.items() if v in (None, "")}
    wanted = {key(k): str(v).strip() for k, v in given.items() if v not in (None, "")}
    unknown = sorted({v for v in wanted.values() if v not in index})
    if unknown:
        raise RefusedFile(str(path), f"the mapping names item{'s' if len(unknown) > 1 else ''} "
                                     f"{listed(unknown)} that no instrument in surveys/ has")
    by_id = {key(i): i for i in index}
    out: dict[str, int] = {}
    used: set[str] = set()
    dropped: list[str] = []
    for i, h in enumerate(st.header):
        if i in skip or not h.strip():
            continue
        keys = [key(c) for c in keys_of(h)]
        named = next((k for k in keys if k in wanted), None)
        if named is not None:
            used.add(named)
            item = wanted[named]
        elif set(keys) & skipped:
            continue
        else:
            item = next((by_id[k] for k in keys if k in by_id), None)
        if item is None:
            dropped.append(h)
            continue
        if item in out:
            raise RefusedFile(str(path), f"columns '{st.header[out[item]]}' and '{h}' both map "
                                         f"to item '{item}': map one of them only")
        out[item] = i
    used |= {key(b) for b in built}
    unmatched = [k for k, v in given.items() if key(k) not in used | skipped]
    if unmatched:
        st.notes.append(f"mapping's items not in the file: {listed([str(u) for u in unmatched])}")
    if dropped:
        st.notes.append(f"{len(dropped):,} column(s) not mapped to an item and dropped: "
                        f"{listed(dropped)}")
    if not out and not built:
        raise RefusedFile(str(path), "no column maps to an instrument item: name the questions "
                                     "in the mapping's items (question -> item id)")
    return out


def answer_sql(expr: str, mapping: dict, split: str | None = None) -> str:
    """The answer's value: the mapping's `answers` (code or label -> value, compared without
    case) where it names the answer, else the answer as written (a label with an empty value
    included). With `split` (Google Forms' checkbox answers joined with ", "), an answer that is
    not a code itself is mapped part by part when every part is one."""
    # A label left '' (as a starting mapping writes it) names no value: the answer passes as
    # written and the loader rejects it, where a value '' would drop it unseen.
    answers = {k: v for k, v in (mapping.get("answers") or {}).items()
               if v is not None and str(v).strip() != ""}
    if not answers:
        return expr
    pairs = ", ".join(f"{sql_str(key(k))}: {sql_str(_value_text(v))}" for k, v in answers.items())
    m = f"MAP {{{pairs}}}"
    whole = f"{m}[lower(trim({expr}))]"
    if split is None:
        return f"coalesce({whole}, {expr})"
    sep = sql_str(split)
    parts = f"list_transform(string_split({expr}, {sep}), lambda x: {m}[lower(trim(x))])"
    return (f"coalesce({whole}, CASE WHEN list_count({parts}) = len(string_split({expr}, "
            f"{sql_str(split)})) THEN array_to_string({parts}, {sql_str(split)}) END, {expr})")


def _value_text(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# -- dates ---------------------------------------------------------------------------------------

def _parts(expr: str) -> str:
    return f"regexp_extract({expr}, {sql_str(_CLOCK)}, {_PARTS})"


def day_first(st: Staged, path: Path, expr: str, mapping: dict) -> bool:
    """Whether `d/d/y` dates in `expr` are day-first: the mapping's `dayfirst`, else told by a
    first number above 12 (day-first) or a second one (month-first); year-first dates say
    nothing. Refused when no date tells."""
    given = _dates.dayfirst_given(mapping)
    if given is not None:
        return given
    p = _parts(expr)
    dmy = f"({p}.a <> '' AND length({p}.a) <= 2)"
    a, b = st.con.execute(
        f"SELECT max(TRY_CAST({p}.a AS INTEGER)) FILTER (WHERE {dmy}), "
        f"max(TRY_CAST({p}.b AS INTEGER)) FILTER (WHERE {dmy}) FROM rows").fetchall()[0]
    return _dates.dayfirst_from(path, a, b, st.notes)


def clock_sql(st: Staged, expr: str, dayfirst: bool, tz: str | None) -> str:
    """ISO 8601 text of a date and clock time as the exports write it (or an Excel serial):
    with its own offset when it has one (`GMT+1`, `+01:00`, `Z`), else read in `tz` and written
    in UTC, else naive (the loader reads it in the institution's zone). A value that is no date
    is passed on as written, so the loader rejects its row naming it.

    The value's parts and its clock time are stored as columns of `rows` first: written as one
    expression, DuckDB would match the pattern once per use (thirty times slower)."""
    st.clocks += 1
    p, t = f"_p{st.clocks}", f"_t{st.clocks}"
    st.con.execute(f"CREATE OR REPLACE TEMP TABLE rows AS SELECT *, {_parts(expr)} AS {p} "
                   "FROM rows")
    ymd = f"length({p}.a) = 4"
    year = f"CASE WHEN {ymd} THEN {p}.a ELSE {p}.c END"
    month = f"CASE WHEN {ymd} THEN {p}.b ELSE {p}.{'b' if dayfirst else 'a'} END"
    day = f"CASE WHEN {ymd} THEN {p}.c ELSE {p}.{'a' if dayfirst else 'b'} END"
    made = _dates.timestamp_sql(year, month, day, f"{p}.h", f"{p}.mi", f"{p}.s", f"{p}.ap")
    serial = _dates.excel_serial_sql(expr)
    st.con.execute(f"CREATE OR REPLACE TEMP TABLE rows AS SELECT *, coalesce({made}, {serial}) "
                   f"AS {t} FROM rows")
    local = t
    naive = f"strftime({local}, '%Y-%m-%dT%H:%M:%S')"
    offset = (f"{p}.sign || lpad({p}.oh, 2, '0') || ':' || "
              f"CASE WHEN {p}.om = '' THEN '00' ELSE {p}.om END")
    in_zone = (f"strftime(timezone({sql_str(tz)}, {local}), '%Y-%m-%dT%H:%M:%S+00:00')"
               if tz else naive)
    written = (f"CASE WHEN {local} IS NULL THEN NULL WHEN {p}.sign <> '' THEN {naive} || {offset} "
               f"WHEN {p}.utc <> '' THEN {naive} || '+00:00' ELSE {in_zone} END")
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE coalesce({written}, {expr}) END"


# -- output --------------------------------------------------------------------------------------

def responses_table(st: Staged, *, participant: str, submitted: str, items: dict[str, str],
                    fill: dict[str, str], where: str = "true",
                    extra: dict[str, str] | None = None) -> pa.Table:
    """The contract's wide responses (text) and `_row` (int64) from SQL over `rows`: the
    participant, the exchange and wave where the file holds them (`fill`, see `file_columns`),
    the submission time, `extra` columns (language) and the items."""
    cols = [f"CAST({participant} AS VARCHAR) AS participant_id"]
    cols += [f"CAST({fill[c]} AS VARCHAR) AS {c}" for c in ("exchange_id", "wave") if c in fill]
    cols.append(f"CAST({submitted} AS VARCHAR) AS submitted_at")
    cols += [f'CAST({e} AS VARCHAR) AS "{n}"' for n, e in (extra or {}).items()]
    cols += [f'CAST({e} AS VARCHAR) AS "{item}"' for item, e in items.items()]
    table = st.con.sql(f"SELECT {', '.join(cols)}, CAST(_row AS BIGINT) AS _row FROM rows "
                       f"WHERE {where} ORDER BY _row").to_arrow_table()
    st.con.register("_out", table)
    try:
        people, answers = st.con.execute(
            "SELECT count(*), sum(n) FROM (SELECT count(*) AS n FROM _out WHERE participant_id "
            f"IS NOT NULL GROUP BY participant_id{''.join(', ' + c for c in fill)} "
            "HAVING count(*) > 1)"
        ).fetchall()[0]
    finally:
        st.con.unregister("_out")
    if people:
        st.notes.append(f"{people:,} participant(s) answered more than once in the same wave "
                        f"({answers:,} responses): the loader keeps the first of each and rejects "
                        "the others as duplicates")
    return table


def file_columns(st: Staged, mapping: dict) -> tuple[dict[str, str], set[int]]:
    """The exchange and wave columns the file itself holds: the column the mapping's `wave` or
    `exchange_id` (`exchange`) names, else one called `wave` or `exchange_id`; {column: SQL} and
    their indexes. A mapping value that names no column is a value for the whole file, which the
    registry fills in (with --wave/--exchange over the mapping), so it is not written here.
    Only a whole header names a column (a Kobo group path's last part could be any short
    word)."""
    out: dict[str, str] = {}
    used: set[int] = set()
    for col, keys in (("exchange_id", ("exchange_id", "exchange")), ("wave", ("wave",))):
        named = [str(mapping[k]) for k in keys if mapping.get(k) not in (None, "")]
        for n in named + [col]:
            i = column_named(st, n, _whole)
            if i is not None:
                out[col] = st.col(i)
                used.add(i)
                break
    return out, used


def _whole(header: str) -> list[str]:
    return [header]


def participant_sql(col: str) -> str:
    """An e-mail compared without case (the same person in every wave); other ids as written."""
    return f"CASE WHEN {col} LIKE '%@%' THEN lower({col}) ELSE {col} END"


__all__ += ["file_columns", "participant_sql"]


# -- inspect and mapping new ---------------------------------------------------------------------

def describe_file(path: Path) -> dict:
    """What `python -m etl inspect` shows of the layout: encoding, separator, header, sheets."""
    with guarded(path, "an export"):
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            from openpyxl import load_workbook

            wb = load_workbook(path, read_only=True, data_only=True)
            try:
                names = list(wb.sheetnames)
                first = next(wb[names[0]].iter_rows(max_row=1, values_only=True), ())
            finally:
                wb.close()
            return {"encoding": "XLSX", "header_rows": 1, "sheets": names,
                    "header": ["" if v is None else str(v) for v in first]}
        codec, note = readers._encoding(path)
        with readers._as_utf8(path, codec) as text:
            with open(text, encoding="utf-8-sig", newline="") as f:
                header, sep = split_header(f.read(readers.HEADER_CHARS))
        return {"encoding": "UTF-8" if codec in ("utf-8", "utf-8-sig") else codec.upper(),
                "bom": codec == "utf-8-sig", "encoding_note": note, "separator": sep,
                "header_rows": 1, "header": header}


def template(path: Path, fmt: str, label: str, is_meta: Callable[[str], bool],
             participants: tuple[str, ...], extra: list[str]) -> str:
    """A starting mapping YAML: the participant column (the first of `participants` the file
    has), every question column with its item filled in where the header is an item id, ''
    (skipped) elsewhere."""
    header = describe_file(path)["header"]
    ids = {key(i): i for i in surveys.item_index(surveys.load_instruments())}
    wanted = [key(p) for p in participants]
    pid = next((h for w in wanted for h in header if key(h) == w), "")
    lines = [f"# Mapping for {path.name} ({label}); edit, then",
             f"#   python -m etl load {path.name} --mapping THIS_FILE",
             f"format: {fmt}",
             f"participant: {json.dumps(pid.strip(), ensure_ascii=False)}   # the column that "
             "identifies a person (id or e-mail)" + ("" if pid else ": REQUIRED, none found"),
             "wave: pre          # pre | post | followup ...; or --wave",
             "exchange: ''       # the exchange's id; or --exchange",
             "# timezone: Europe/Berlin   # the zone of times written without an offset",
             *extra,
             "items:             # question: instrument item id (surveys/*.yaml); '' = skip"]
    for h in header:
        if not h.strip() or is_meta(h) or h == pid:
            continue
        guess = ids.get(key(h.rsplit("/", 1)[-1]), "")
        lines.append(f"  {json.dumps(h.strip(), ensure_ascii=False)}: '{guess}'")
    return "\n".join(lines) + "\n"


__all__ += ["describe_file", "template"]
