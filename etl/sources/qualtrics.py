"""Qualtrics survey exports (Data & Analysis > Export > CSV or TSV) as responses.

Two layouts are read:
- the current export: three header rows, the export tags (`StartDate, ..., Q1, Q2_1`), the
  question text in the survey's language, and one JSON cell per column
  (`{"ImportId":"QID2_1"}`, with `"timeZone":"Europe/Berlin"` on the dates when the export
  chose a zone);
- the legacy export: two header rows (`ResponseID, ResponseSet, Name, ExternalDataReference,
  EmailAddress, IPAddress, Status, StartDate, EndDate, Finished, Q1...` and the question text),
  usually with a UTF-8 byte order mark and a trailing comma on every line.

Rows: responses whose `Finished` is 0 (or whose `Progress` is under 100 without `Finished`) are
not loaded and counted in the notes (`unfinished: load` in the mapping loads them); previews,
tests and spam (`Status`) likewise. `submitted_at` is `RecordedDate` (legacy: `EndDate`), read in
the zone of the JSON row, else the mapping's `timezone`, else left naive (the loader reads it in
the participant's institution's zone). Columns: the mapping's `items` name which export tag or
ImportId (QID) is which instrument item (a tag that already is an item id needs none);
`participant` names the id column (default `ExternalReference`, else `RecipientEmail`; an
e-mail is lower-cased so that waves link). Everything else (IP address, location, names,
e-mails, other metadata) is dropped here, so it never reaches the warehouse; the participant
id is pseudonymised by the loader.

Answers: an export made with "Export values" holds the numeric codes, one with "Export choice
text" the labels ("Strongly agree"). The mapping's `answers` (label or code -> value, compared
without case, as for LimeSurvey) turns labels into values; a label it does not name is passed on
as written, so the loader rejects that answer naming the file, row, item and label, and the notes
list such labels. `mapping new` writes the labels it finds into `answers:` for the user to fill.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

import surveys
from etl import readers
from etl.errors import RefusedFile
from etl.sources import _dates, _text
from etl.sources import _surveys as S

__all__ = ["FORMAT", "KIND", "sniff", "read", "describe", "mapping_template"]

FORMAT = "qualtrics"
KIND = "responses"

# Qualtrics' own columns (current and legacy names, lower case): metadata, never items.
METADATA = {
    "startdate", "enddate", "status", "ipaddress", "progress", "duration (in seconds)",
    "finished", "recordeddate", "responseid", "recipientlastname", "recipientfirstname",
    "recipientemail", "externalreference", "locationlatitude", "locationlongitude",
    "distributionchannel", "userlanguage", "responseset", "name", "externaldatareference",
    "emailaddress", "locationaccuracy", "q_recaptchascore", "q_relevantidduplicate",
    "q_relevantidduplicatescore", "q_relevantidfraudscore", "q_relevantidlaststartdate",
    "q_ballotboxstuffing", "q_totalduration", "q_url", "q_language", "q_languagepreference",
}
PARTICIPANT_DEFAULTS = ("externalreference", "externaldatareference", "recipientemail",
                        "emailaddress")
DATE_COLUMNS = ("recordeddate", "enddate")
# Status values of responses that are not real answers: preview, test, spam (numeric or text).
NOT_REAL = ("1", "2", "8", "9", "12", "survey preview", "survey test", "spam",
            "preview spam", "imported spam")
TRUE = ("1", "true", "yes", "wahr", "verdadero", "vrai")


def _records(text: str, n: int) -> tuple[list[list[str]], int, str]:
    """The first `n` CSV records of `text`, the lines they span, and the separator."""
    first = text.split("\n", 1)[0]
    delim = max((",", "\t", ";"), key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delim, quotechar='"')
    recs: list[list[str]] = []
    try:
        for rec in reader:
            recs.append(rec)
            if len(recs) == n:
                break
    except csv.Error:
        pass
    return recs, reader.line_num, delim


def _is_export_header(rec: list[str]) -> bool:
    low = {c.strip().lower().lstrip("\ufeff") for c in rec}
    return ({"startdate", "enddate"} <= low and bool(low & {"responseid", "_recordid"})) or (
        {"responseid", "responseset"} <= low)


def sniff(path: Path, head: str) -> bool:
    recs, _, _ = _records(head, 1)
    return bool(recs) and _is_export_header(recs[0])


def _layout(path: Path, text_path: Path) -> dict[str, Any]:
    """Header rows, separator, tags, question texts, import ids and zones of the columns."""
    with open(text_path, encoding="utf-8-sig", newline="") as f:
        head = f.read(4 << 20)
    recs, _, delim = _records(head, 3)
    if not recs or not _is_export_header(recs[0]):
        raise RefusedFile(str(path), "is not a Qualtrics export: its first row has no StartDate, "
                                     "EndDate and ResponseId columns")
    tags = [t.strip().lstrip("\ufeff") for t in recs[0]]
    while tags and not tags[-1]:  # the legacy export's trailing comma
        tags.pop()
    if len(recs) < 2 or len(recs[1]) < len(tags) or (
            len(recs) > 2 and recs[2] and recs[2][0].lstrip().startswith("{")
            and len(recs[2]) < len(tags)):
        raise RefusedFile(str(path), "ends inside its header rows: a truncated or damaged "
                                     "export? Export it again")
    texts = recs[1]
    import_ids: list[str] = [""] * len(tags)
    zones: dict[str, str] = {}
    n_header = 2
    if len(recs) > 2 and recs[2] and recs[2][0].lstrip().startswith("{"):
        n_header = 3
        for i, cell in enumerate(recs[2][:len(tags)]):
            try:
                meta = json.loads(cell) if cell.strip() else {}
            except ValueError:
                raise RefusedFile(str(path), f"third header row, column {i + 1}: not the JSON "
                                             "{\"ImportId\": ...} Qualtrics writes (a damaged "
                                             "export?)") from None
            if isinstance(meta, dict):
                import_ids[i] = str(meta.get("ImportId", ""))
                if meta.get("timeZone"):
                    zones[tags[i].lower()] = str(meta["timeZone"])
    # DuckDB's `skip` counts records, so a question text with a line break needs no care.
    low = [t.lower() for t in tags]
    dup = sorted({t for t in low if t and low.count(t) > 1})
    if dup:
        raise RefusedFile(str(path), f"has duplicate export tags {', '.join(dup)}: give the "
                                     "questions unique export tags in Qualtrics and export again")
    more, _, _ = _records(head, n_header + 1)
    return {"empty": len(more) == n_header and len(head) < (4 << 20), "tags": tags,
            # Data rows may carry one more (empty) value than the header (a trailing comma).
            "width": max(len(recs[0]), len(more[n_header]) if len(more) > n_header else 0),
            "texts": [(texts[i] if i < len(texts) else "") for i in range(len(tags))],
            "import_ids": import_ids, "zones": zones, "header_rows": n_header,
            "separator": delim, "version": "three header rows (ImportId JSON)" if n_header == 3
            else "legacy two header rows"}


def describe(path: Path) -> dict[str, Any]:
    codec, note = readers._encoding(path)
    with readers._as_utf8(path, codec) as text:
        lay = _layout(path, text)
    lay["encoding"] = "UTF-8" if codec in ("utf-8", "utf-8-sig") else codec.upper()
    lay["bom"] = codec == "utf-8-sig"
    lay["encoding_note"] = note
    return lay


def _item_of(path: Path, tags: list[str], import_ids: list[str], mapping: dict
             ) -> dict[int, str]:
    """Column position -> instrument item id, from the mapping or a tag that is an item id."""
    items = set(surveys.item_index(surveys.load_instruments()))
    given = {str(k).strip().lower(): str(v).strip() for k, v in (mapping.get("items") or {}).items()
             if v not in (None, "")}
    out: dict[int, str] = {}
    for i, tag in enumerate(tags):
        if tag.lower() in METADATA:
            continue
        target = given.get(tag.lower()) or given.get(import_ids[i].lower())
        if target is None and readers.normalise_name(tag) in items:
            target = readers.normalise_name(tag)
        if target is not None:
            out[i] = target
    unknown = sorted({t for t in given.values() if t not in items})
    if unknown:
        raise RefusedFile(
            str(path), f"the mapping names item{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(unknown)}, in no instrument (surveys/*.yaml); "
                       f"known items look like {', '.join(sorted(items)[:4])} …")
    return out


def _instant_sql(col: str, zone: str | None, dayfirst: bool) -> str:
    """An export's date text as ISO 8601: with its offset when it has one or a zone is known."""
    naive = (f"coalesce(TRY_CAST({col} AS TIMESTAMP), "
             f"TRY_STRPTIME({col}, ['{'%d/%m/%Y' if dayfirst else '%m/%d/%Y'} %H:%M:%S', "
             f"'{'%d/%m/%Y' if dayfirst else '%m/%d/%Y'} %H:%M', "
             f"'{'%d/%m/%Y' if dayfirst else '%m/%d/%Y'} %I:%M:%S %p', "
             f"'{'%d/%m/%Y' if dayfirst else '%m/%d/%Y'} %I:%M %p']))")
    iso = "strftime({t}, '%Y-%m-%dT%H:%M:%S')"
    offset = f"regexp_matches({col}, '(Z|[+-]\\d\\d:?\\d\\d)$')"
    if zone:
        zoned = (iso.format(t=f"timezone('UTC', timezone({_text.sql_str(zone)}, {naive}))")
                 + " || '+00:00'")
    else:
        zoned = iso.format(t=naive)
    # Text that parses neither way is passed on as it is: the loader rejects it with its row.
    return (f"CASE WHEN {col} IS NULL THEN NULL WHEN {offset} THEN {col} "
            f"WHEN {naive} IS NULL THEN {col} ELSE {zoned} END")


def read(path: Path, mapping: dict, notes: list[str]) -> pa.Table:
    with _text.decoded(path, notes) as text:
        lay = _layout(path, text)
        return _read(path, text, lay, mapping, notes)


def _scan(con: duckdb.DuckDBPyConnection, path: Path, text: Path, lay: dict[str, Any]) -> int:
    """TEMP TABLE `raw` of the export's data rows (columns c0.., text); return its width."""
    try:
        con.execute(
            f"CREATE TABLE raw AS SELECT * FROM read_csv({_text.sql_str(str(text))}, "
            f"header = false, skip = {lay['header_rows']}, all_varchar = true, "
            f"delim = {_text.sql_str(lay['separator'])}, quote = '\"', escape = '\"', "
            "strict_mode = true, null_padding = false, auto_detect = false, columns = {"
            + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(lay["width"])) + "})")
        return len(con.execute("DESCRIBE raw").fetchall())
    except duckdb.Error as e:
        # Qualtrics writes every value of every row: a short or long row is damage
        # (a truncated download, an edit in a text editor), refused rather than padded.
        line = re.search(r"CSV Error on Line: (\d+)", str(e))
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RefusedFile(str(path), (
            f"line {line.group(1)} has another number of values than the header "
            f"({len(lay['tags'])} columns)" if line else f"cannot be read as a Qualtrics CSV "
            f"({first})") + ": a truncated or damaged export? Export it again") from None


def _read(path: Path, text: Path, lay: dict[str, Any], mapping: dict, notes: list[str]
          ) -> pa.Table:
    tags: list[str] = lay["tags"]
    low = [t.lower() for t in tags]
    if lay["empty"]:
        notes.append("the export has no responses")
        return _empty(path, lay, mapping)
    answers = mapping.get("answers") or {}
    if not isinstance(answers, dict):
        raise RefusedFile(str(path), "the mapping's answers must be a table of choice text or "
                                     "code -> value, e.g. 'answers: {Strongly agree: 5}'")
    con = _text.connect()
    try:
        width = _scan(con, path, text, lay)
        if not con.execute("SELECT count(*) FROM raw").fetchall()[0][0]:
            notes.append("the export has no responses")
            return _empty(path, lay, mapping)
        names = [r[0] for r in con.execute("DESCRIBE raw").fetchall()]
        if width < len(tags):
            # null_padding gives short rows NULLs; a file narrower than its header is broken.
            raise RefusedFile(str(path), f"its data rows have {width} columns but the header "
                                         f"{len(tags)}: a truncated or damaged export?")
        extra = names[len(tags):]
        if extra:
            filled = con.execute(
                "SELECT count(*) FROM raw WHERE " + " OR ".join(
                    f"NULLIF(trim(\"{c}\"), '') IS NOT NULL" for c in extra)).fetchall()[0][0]
            if filled:
                raise RefusedFile(str(path), f"{filled:,} rows have more values than the header "
                                             f"has columns ({len(tags)}): a damaged export?")
        col = {t: f'"{names[i]}"' for i, t in enumerate(low) if t}
        n_rows = con.execute("SELECT count(*) FROM raw").fetchall()[0][0]
        first_row = lay["header_rows"] + 1  # as a spreadsheet numbers the file's rows
        keep = ["TRUE"]
        if mapping.get("unfinished") != "load":
            if "finished" in col:
                keep.append(f"coalesce(lower(trim({col['finished']})) IN {TRUE}, false)")
            elif "progress" in col:
                keep.append(f"coalesce(TRY_CAST({col['progress']} AS DOUBLE) >= 100, false)")
        unfinished = con.execute(
            f"SELECT count(*) FROM raw WHERE NOT ({' AND '.join(keep)})").fetchall()[0][0]
        if unfinished:
            notes.append(f"{unfinished:,} unfinished response{'s' if unfinished > 1 else ''} "
                         "(Finished = 0 or Progress < 100) not loaded; 'unfinished: load' in the "
                         "mapping loads them")
        if "status" in col:
            st = f"coalesce(lower(trim({col['status']})), '')"
            not_real = con.execute(
                f"SELECT count(*) FROM raw WHERE {' AND '.join(keep)} AND {st} IN {NOT_REAL}"
            ).fetchall()[0][0]
            keep.append(f"{st} NOT IN {NOT_REAL}")
            if not_real:
                notes.append(f"{not_real:,} preview, test or spam response"
                             f"{'s' if not_real > 1 else ''} (Status) not loaded")
        pid = _participant_col(path, tags, low, col, con, mapping)
        items = _item_of(path, tags, lay["import_ids"], mapping)
        if not items:
            raise RefusedFile(
                str(path), "no question is mapped to an instrument item: list them under "
                           "'items:' in a mapping (e.g. QID1: icc_1), which "
                           f"'python -m etl mapping new {path}' starts for you")
        targets = list(items.values())
        dup = sorted({t for t in targets if targets.count(t) > 1})
        if dup:
            raise RefusedFile(str(path), f"the mapping sends two questions to item "
                                         f"{', '.join(dup)}")
        dated = next((d for d in DATE_COLUMNS if d in col), None)
        zone = lay["zones"].get(dated or "") or _dates.zone(path, mapping)
        dayfirst = bool(mapping.get("dayfirst"))
        sel = [f"(rowid + {first_row})::BIGINT AS _row"]
        pid_sql = f"NULLIF(trim({col[pid]}), '')"
        if "email" in pid:
            pid_sql = f"lower({pid_sql})"
        sel.append(f"{pid_sql} AS participant_id")
        sel.append((_instant_sql(f"NULLIF(trim({col[dated]}), '')", zone, dayfirst)
                    if dated else "NULL::VARCHAR") + " AS submitted_at")
        if "userlanguage" in col:
            sel.append(f"NULLIF(lower(split_part(trim({col['userlanguage']}), '-', 1)), '') "
                       "AS language")
        sel += [f'{S.answer_sql(col[low[i]], mapping)} AS "{item}"' for i, item in items.items()]
        out = con.sql(
            f"SELECT {', '.join(sel)} FROM raw WHERE {' AND '.join(keep)} ORDER BY rowid"
        ).to_arrow_table()
        _note_unmapped_labels(con, out, list(items.values()), bool(answers), notes)
    finally:
        con.close()
    questions = [t for i, t in enumerate(tags)
                 if t and i not in items and t.lower() not in METADATA]
    if questions:
        notes.append(f"questions not mapped to an item (not loaded): {', '.join(questions[:15])}"
                     f"{' …' if len(questions) > 15 else ''}")
    used = (pid, dated, "userlanguage")
    dropped = [t for t in tags if t.lower() in METADATA and t.lower() not in used]
    notes.append(f"Qualtrics metadata not stored (IP address, location, names and e-mails "
                 f"included): {', '.join(dropped)}" if dropped else "no Qualtrics metadata")
    notes.append(f"participant id from {tags[low.index(pid)]} (pseudonymised)"
                 + ("" if dated else "; no RecordedDate or EndDate column: submitted_at empty")
                 + (f"; dates read in {zone}" if dated and zone else ""))
    if not n_rows:
        notes.append("the export has no responses")
    return out


# What the loader reads as no answer (besides empty), and how many labels a note names.
NO_ANSWER = ("NA", "N/A", "-", ".")
LABELS_SHOWN = 8


def _note_unmapped_labels(con: duckdb.DuckDBPyConnection, out: pa.Table, items: list[str],
                          has_answers: bool, notes: list[str]) -> None:
    """Note the answers that are text, not numbers, after the mapping's `answers`: choice text
    (the export's "choice text" option) the mapping does not name. The loader rejects each such
    answer on its row; the note says what to add to the mapping."""
    if not items or not out.num_rows:
        return
    con.register("_answers", out)
    try:
        cols = ", ".join(f'"{i}"' for i in items)
        no_answer = ", ".join(_text.sql_str(v) for v in NO_ANSWER)
        found = con.execute(
            # Labels are compared without case, as the answers table compares them.
            "SELECT min_by(label, _row), list(DISTINCT item ORDER BY item), count(*), min(_row) "
            "FROM ("
            f"SELECT _row, item, trim(v) AS label FROM (UNPIVOT (SELECT _row, {cols} FROM "
            f"_answers) ON {cols} INTO NAME item VALUE v)) WHERE label <> '' AND upper(label) "
            f"NOT IN ({no_answer}) AND TRY_CAST(label AS DOUBLE) IS NULL "
            "GROUP BY lower(label) ORDER BY min(_row), min(item)").fetchall()
    finally:
        con.unregister("_answers")
    if not found:
        return
    total = sum(n for _, _, n, _ in found)
    shown = "; ".join(f"'{label[:60]}' ({', '.join(its)}: {n:,}, first in row {row})"
                      for label, its, n, row in found[:LABELS_SHOWN])
    more = f"; and {len(found) - LABELS_SHOWN:,} more" if len(found) > LABELS_SHOWN else ""
    what = "that the mapping's answers do not name" if has_answers else "not numbers"
    notes.append(
        f"{total:,} answer(s) are text {what} (rejected): {shown}{more}; if they are "
        "Qualtrics choice text, give each label its "
        "value under 'answers:' in the mapping (e.g. Strongly agree: 5), which "
        "'python -m etl mapping new' starts for you")


def _choice_labels(path: Path, lay: dict[str, Any]) -> list[str]:
    """The distinct choice texts in the export's question columns, in order of first use: what
    an export made with "Export choice text" holds instead of numbers. Text-entry columns
    (ImportId `..._TEXT`) and columns of many distinct texts (free text) are left out: a
    mapping file is no place for what people wrote."""
    questions = [i for i, t in enumerate(lay["tags"]) if t and t.lower() not in METADATA
                 and not lay["import_ids"][i].upper().endswith("_TEXT")
                 and not t.upper().endswith("_TEXT")]
    if not questions or lay["empty"]:
        return []
    no_answer = ", ".join(_text.sql_str(v) for v in NO_ANSWER)
    with _text.decoded(path, []) as text:
        con = _text.connect()
        try:
            _scan(con, path, text, lay)
            parts = " UNION ALL ".join(
                f"SELECT {i} AS col, rowid AS r, trim(c{i}) AS label FROM raw" for i in questions)
            found = con.execute(
                f"SELECT col, label, min(r) AS first FROM ({parts}) WHERE label <> '' AND "
                f"upper(label) NOT IN ({no_answer}) AND TRY_CAST(label AS DOUBLE) IS NULL "
                "AND length(label) <= 60 GROUP BY col, label").fetchall()
        finally:
            con.close()
    per_col: dict[int, int] = {}
    for c, _, _ in found:
        per_col[c] = per_col.get(c, 0) + 1
    out: list[str] = []
    seen: set[str] = set()
    for _, _, label in sorted((first, c, label) for c, label, first in found
                              if per_col[c] <= CHOICES_AT_MOST):
        if S.key(label) not in seen:  # labels are compared without case, as answers are
            seen.add(S.key(label))
            out.append(label)
    return out


CHOICES_AT_MOST = 12  # a column of more distinct texts is free text, not a choice question


def _participant_col(path: Path, tags: list[str], low: list[str], col: dict[str, str],
                     con: duckdb.DuckDBPyConnection, mapping: dict) -> str:
    named = mapping.get("participant")
    if named:
        if str(named).lower() not in col:
            raise RefusedFile(str(path), f"the mapping's participant column '{named}' is not in "
                                         "the export (its columns: "
                                         f"{', '.join(t for t in tags if t)[:300]})")
        return str(named).lower()
    for c in PARTICIPANT_DEFAULTS:
        if c in col and con.execute(
                f"SELECT count(*) FROM raw WHERE NULLIF(trim({col[c]}), '') IS NOT NULL"
        ).fetchall()[0][0]:
            return c
    raise RefusedFile(str(path), "no participant id: ExternalReference and RecipientEmail are "
                                 "empty or absent; name the column that identifies people in the "
                                 "mapping, e.g. 'participant: Q5' (an embedded data field)")


def _empty(path: Path, lay: dict[str, Any], mapping: dict) -> pa.Table:
    items = _item_of(path, lay["tags"], lay["import_ids"], mapping)
    cols = {"_row": pa.array([], pa.int64()), "participant_id": pa.array([], pa.string()),
            "submitted_at": pa.array([], pa.string())}
    cols.update({item: pa.array([], pa.string()) for item in items.values()})
    return pa.table(cols)


def mapping_template(path: Path) -> str:
    """A starting mapping YAML: every question with its text, matched items filled in."""
    lay = describe(path)
    items = _item_of(path, lay["tags"], lay["import_ids"], {})
    low = [t.lower() for t in lay["tags"]]
    pid = next((lay["tags"][low.index(c)] for c in PARTICIPANT_DEFAULTS if c in low), "")
    zone = next(iter(lay["zones"].values()), "")
    lines = [
        f"# Mapping for {path.name} (Qualtrics, {lay['version']}); edit, then",
        f"#   python -m etl load {path.name} --mapping THIS_FILE",
        "format: qualtrics",
        f"participant: {pid or 'ExternalReference'}   # the column that identifies a person",
        "wave: pre          # pre | post | followup ...; or --wave",
        "exchange: ''       # the exchange's id; or --exchange",
        (f"timezone: {zone}" if zone else "# timezone: Europe/Berlin   # the zone of RecordedDate "
         "(the export gives none; without it, the institution's zone)"),
        "unfinished: skip   # 'load' also loads responses with Finished = 0",
        "items:             # export tag or QID: instrument item id (surveys/*.yaml); '' = skip",
    ]
    for i, tag in enumerate(lay["tags"]):
        if not tag or tag.lower() in METADATA:
            continue
        text = re.sub(r"\s+", " ", lay["texts"][i]).strip()[:70]
        key = json.dumps(tag, ensure_ascii=False)
        qid = lay["import_ids"][i]
        lines.append(f"  {key}: '{items.get(i, '')}'   # {qid + ': ' if qid else ''}{text}")
    labels = _choice_labels(path, lay)
    if labels:
        lines += ["# The export holds choice text: give each label its value on the instrument's",
                  "# scale (e.g. Strongly agree: 5); an answer whose label is left '' is rejected.",
                  "answers:"]
        lines += [f"  {json.dumps(label, ensure_ascii=False)}: ''" for label in labels]
    return "\n".join(lines) + "\n"
