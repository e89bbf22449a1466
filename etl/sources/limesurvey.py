"""LimeSurvey response exports (Responses > Export > CSV) as the contract's wide responses.

The export is `;`-separated, every field quoted, UTF-8 with a byte order mark. Its header names
questions by question code (`G01Q01`, sub-questions `G01Q01[SQ001]`, with "question code &
text" `G01Q01[SQ001]. I enjoy ... [sub-question]`) or, in older exports, by SGQA
(`12345X6X78`, sub-questions `12345X6X78SQ001`); the metadata columns come first (`id`,
`submitdate`, `lastpage`, `startlanguage`, `seed`, `token`, `startdate`, `datestamp`, `ipaddr`,
`refurl`; "Response ID", "Date submitted", ... with full headers) and timings may follow.

Answers exported as codes (`A1`..`A5`) or labels become values through the mapping's `answers`.
A response without a `submitdate` is incomplete: reported, not loaded. A survey run without date
stamping writes `1980-01-01 00:00:00` for every completed response: that is no submission time,
so the mapping's `submitted_at` (a date for the whole file) is used, else it is left empty (the
loader then rejects the rows as missing submitted_at) with a note. `submitdate` is the server's
clock time: read in the mapping's `timezone`, else left naive for the loader to read in the
institution's zone. The participant is the mapping's `participant` column, else `token`.
`startlanguage` becomes the response's language.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from etl.errors import RefusedFile
from etl.sources import _surveys as S

__all__ = ["FORMAT", "KIND", "sniff", "read", "describe", "mapping_template"]

FORMAT = "limesurvey"
KIND = "responses"

# Metadata columns by code and by their full-header labels (English).
META = {
    "id": "id", "response id": "id", "submitdate": "submitdate", "date submitted": "submitdate",
    "lastpage": "lastpage", "last page": "lastpage", "startlanguage": "startlanguage",
    "start language": "startlanguage", "seed": "seed", "token": "token",
    "access code": "token", "startdate": "startdate", "date started": "startdate",
    "datestamp": "datestamp", "date last action": "datestamp", "ipaddr": "ipaddr",
    "ip address": "ipaddr", "refurl": "refurl", "referrer url": "refurl",
    "interviewtime": "interviewtime", "total time": "interviewtime", "firstname": "firstname",
    "first name": "firstname", "lastname": "lastname", "last name": "lastname",
    "email": "email", "email address": "email",
}
NO_STAMP = "1980-01-01 00:00:00"
_SGQA = re.compile(r"^(\d+X\d+X\d+)(\w*?)(time|comment|other)?$", re.I)
_CODE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*(?:\[[^\]]*\])*)(?:\.\s.*)?$", re.S)
_TIMING = re.compile(r"^(grouptime\d+|\d+X\d+(X\d+\w*)?time|(group|question) time: .*)$", re.I)


def _keys(header: str) -> list[str]:
    """What a mapping may call this column: the header, its code part (before `. text`), the
    code with `[SQ001]` written `_SQ001`, and an SGQA's plain form."""
    h = header.strip().lstrip("\ufeff")
    out = [h]
    m = _CODE.match(h)
    if m:
        code = m.group(1)
        out += [code, re.sub(r"\[([^\]]*)\]", r"_\1", code)]
    return out


def _meta(header: str) -> str | None:
    return META.get(S.key(header))


def sniff(path: Path, head: str) -> bool:
    """A header with LimeSurvey's `submitdate` and `lastpage` (or their full labels)."""
    header, _ = S.split_header(head)
    names = {_meta(h) for h in header}
    return {"submitdate", "lastpage"} <= names or {"id", "submitdate", "startlanguage"} <= names


def read(path: Path, mapping: dict, notes: list[str]) -> pa.Table:
    with S.guarded(path, "a LimeSurvey export"):
        st = S.stage_csv(path, notes)
        return _read(path, st, mapping)


def _read(path: Path, st: S.Staged, mapping: dict) -> pa.Table:
    meta = {m: i for i, h in enumerate(st.header) if (m := _meta(h))}
    if "submitdate" not in meta:
        raise RefusedFile(str(path), "has no 'submitdate' column: is it a LimeSurvey export?")
    part = S.column_named(st, mapping.get("participant"), _keys)
    if mapping.get("participant") and part is None:
        raise RefusedFile(str(path), f"the mapping's participant column "
                                     f"'{mapping['participant']}' is not in the file")
    if part is None:
        part = meta.get("token")
    if part is None:
        raise RefusedFile(str(path), "no participant column: the export has no 'token' (survey "
                                     "without participants): name the column holding the "
                                     "participant's id or e-mail as participant in the mapping")
    fill, fill_cols = S.file_columns(st, mapping)
    timings = {i for i, h in enumerate(st.header) if i not in meta.values() and _TIMING.match(h)}
    skip = set(meta.values()) | timings | {part} | fill_cols
    items = S.items_for(path, st, mapping, _keys, skip)

    dropped = sorted({st.header[i] for m, i in meta.items()
                      if i != part and m != "startlanguage"})
    if dropped:
        st.notes.append(f"metadata columns dropped: {S.listed(dropped)}")
    if timings:
        st.notes.append(f"{len(timings):,} timing column(s) dropped")

    sub = st.col(meta["submitdate"])
    incomplete = st.con.execute(f"SELECT count(*), list(_row ORDER BY _row)[1:{S.LISTED}] FROM "
                                f"rows WHERE {sub} IS NULL").fetchall()[0]
    if incomplete[0]:
        st.notes.append(f"{incomplete[0]:,} incomplete response(s) (no submitdate) not loaded: "
                        f"row(s) {', '.join(str(r) for r in incomplete[1])}"
                        f"{' ...' if incomplete[0] > S.LISTED else ''}")
    unstamped = st.con.execute(f"SELECT count(*) FROM rows WHERE {sub} = {S.sql_str(NO_STAMP)}"
                               ).fetchall()[0][0]
    fallback = mapping.get("submitted_at")
    if unstamped:
        st.notes.append(
            f"{unstamped:,} response(s) with submitdate {NO_STAMP} (the survey does not record "
            "dates): no submission time; "
            + (f"the mapping's submitted_at {fallback} used" if fallback else
               "set submitted_at in the mapping (a date for the whole file), or these rows are "
               "rejected as missing submitted_at"))
    tz = S.zone(path, mapping)
    when = S.clock_sql(st, sub, False, tz)
    submitted = (f"CASE WHEN {sub} = {S.sql_str(NO_STAMP)} THEN "
                 f"{S.sql_str(str(fallback)) if fallback else 'NULL'} ELSE {when} END")
    extra = {}
    if "startlanguage" in meta:
        extra["language"] = st.col(meta["startlanguage"])
    return S.responses_table(
        st, participant=S.participant_sql(st.col(part)), fill=fill,
        submitted=submitted, items={k: S.answer_sql(st.col(i), mapping) for k, i in items.items()},
        where=f"{sub} IS NOT NULL", extra=extra)


def describe(path: Path) -> dict:
    return S.describe_file(path)


def mapping_template(path: Path) -> str:
    """A starting mapping: question codes (or SGQA) to items, the A1..A5 codes to values."""
    return S.template(
        path, FORMAT, "LimeSurvey", lambda h: bool(_meta(h) or _TIMING.match(h)),
        ("token", "email"),
        ["answers:          # answer code or label: value on the instrument's scale",
         *(f"  A{i}: {i}" for i in range(1, 6)),
         "# submitted_at: 2024-06-30   # only when the survey does not record dates (1980-01-01)"])
