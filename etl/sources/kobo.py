"""KoboToolbox data exports (Project > Data > Downloads, CSV or XLS) as the contract's wide
responses.

Questions are columns named by XML name, with their groups as a `/`-joined path when the export
includes groups (`group_x/q1`); a mapping may name a column by its path or by its last part.
Kobo's own columns (`start`, `end`, `today`, `deviceid`, `_id`, `_uuid`, `_submission_time`,
`_validation_status`, `_status`, `_submitted_by`, `__version__`, `_tags`, `_index`, `meta/...`,
`formhub/...`) are dropped. A select-multiple question is one column of the chosen options
joined with spaces, or one 0/1 column per option (`q/option`), or both: the single column is read
where there is one, else it is rebuilt from the 0/1 columns for a question the mapping names.
The CSV is `;`-separated by default (any of the readers' separators is read). An XLSX export has
the main table in its first sheet and each repeat group in a sheet of its own: the first sheet is
read, the others are noted.

The submission time is `end` (the device's clock with its offset, when the form was finished),
else `_submission_time` (the server's receipt, in UTC). The participant is the mapping's
`participant` column, else a `participant_id` question.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from etl.errors import RefusedFile
from etl.sources import _surveys as S

__all__ = ["FORMAT", "KIND", "sniff", "read", "describe", "mapping_template"]

FORMAT = "kobo"
KIND = "responses"

META = {"start", "end", "today", "deviceid", "subscriberid", "simserial", "phonenumber",
        "username", "email", "audit", "start-geopoint", "instanceid"}
META_GROUPS = ("meta/", "formhub/")
TRUE = ("1", "1.0", "true", "TRUE", "True")


def _keys(header: str) -> list[str]:
    h = header.strip().lstrip("\ufeff")
    return [h, h.rsplit("/", 1)[-1]] if "/" in h else [h]


def _is_meta(header: str) -> bool:
    k = S.key(header)
    return k.startswith("_") or k in META or k.startswith(META_GROUPS)


def sniff(path: Path, head: str) -> bool:
    """A header with Kobo's `_uuid` and `_submission_time` (of a workbook: its first sheet's)."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            header = S.describe_file(path)["header"]
        except RefusedFile:
            return False
    else:
        header, _ = S.split_header(head)
    names = {S.key(h) for h in header}
    return {"_uuid", "_submission_time"} <= names


def read(path: Path, mapping: dict, notes: list[str]) -> pa.Table:
    with S.guarded(path, "a KoboToolbox export"):
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            st = S.stage_xlsx(path, notes, "repeat groups")
        else:
            st = S.stage_csv(path, notes)
        return _read(path, st, mapping)


def _read(path: Path, st: S.Staged, mapping: dict) -> pa.Table:
    keys = [S.key(h) for h in st.header]
    if "_submission_time" not in keys and "end" not in keys:
        raise RefusedFile(str(path), "has neither '_submission_time' nor 'end': is it a "
                                     "KoboToolbox export?")
    given = mapping.get("participant")
    part = S.column_named(st, given or "participant_id", _keys)
    if given and part is None:
        raise RefusedFile(str(path), f"the mapping's participant column '{given}' is not in "
                                     "the file")
    if part is None:
        raise RefusedFile(str(path), "no participant column: name the question holding the "
                                     "participant's id or e-mail as participant in the mapping")
    fill, fill_cols = S.file_columns(st, mapping)
    meta = {i for i, h in enumerate(st.header) if _is_meta(h) and i != part}

    # Select-multiple as 0/1 columns: `q/option` whose `q` is a column too (the single column is
    # read), or whose `q` the mapping names as a question (rebuilt from the options).
    singles = {S.key(h): i for i, h in enumerate(st.header)}
    wanted = {S.key(k) for k in (mapping.get("items") or {})} if isinstance(
        mapping.get("items"), dict) else set()
    options: dict[str, list[tuple[str, int]]] = {}
    for i, h in enumerate(st.header):
        if "/" in h and i not in meta:
            q, opt = h.strip().rsplit("/", 1)
            named = ({S.key(k) for k in _keys(q)} & wanted
                     and not {S.key(k) for k in _keys(h)} & wanted)
            if S.key(q) in singles or named:
                options.setdefault(q, []).append((opt, i))
    option_cols = {i for opts in options.values() for _, i in opts}
    rebuilt = {q: opts for q, opts in options.items() if S.key(q) not in singles}

    skip = meta | option_cols | {part} | fill_cols
    found = S.items_for(path, st, mapping, _keys, skip,
                         frozenset(k for q in rebuilt for k in _keys(q)))
    items = {k: S.answer_sql(st.col(i), mapping) for k, i in found.items()}
    for item, q in _rebuilt_items(path, mapping, rebuilt).items():
        parts = ", ".join(f"CASE WHEN {st.col(i)} IN ({', '.join(map(S.sql_str, TRUE))}) "
                          f"THEN {S.sql_str(opt)} END" for opt, i in rebuilt[q])
        items[item] = f"nullif(concat_ws(' ', {parts}), '')"
    timed = {S.key(st.header[i]) for i in meta} & {"end", "_submission_time"}
    dropped = [st.header[i] for i in sorted(meta) if S.key(st.header[i]) not in timed]
    if dropped:
        st.notes.append(f"Kobo's metadata columns dropped: {S.listed(dropped)}")
    if timed:
        st.notes.append("submitted_at from " + " else ".join(
            d for k, d in (("end", "end (the device's clock when the form was finished)"),
                           ("_submission_time", "_submission_time (the server's receipt, UTC)"))
            if k in timed))
    kept = [q for q in options if q not in rebuilt]
    if kept:
        st.notes.append(f"select-multiple 0/1 columns dropped (their single column is read): "
                        f"{S.listed(kept)}")

    status = singles.get("_validation_status")
    if status is not None:
        n = st.con.execute(f"SELECT count(*) FROM rows WHERE {st.col(status)} ILIKE "
                           "'%not_approved%'").fetchall()[0][0]
        if n:
            st.notes.append(f"{n:,} submission(s) marked 'not approved' in KoboToolbox are "
                            "loaded: remove them from the export to leave them out")
    end = singles.get("end")
    sub = singles.get("_submission_time")
    tz = S.zone(path, mapping)
    times = []
    if end is not None:
        times.append(S.clock_sql(st, st.col(end), False, tz))
    if sub is not None:
        c = st.col(sub)
        # The server's receipt time is UTC written without an offset.
        times.append(f"CASE WHEN regexp_matches({c}, '(Z|[+-]\\d\\d:?\\d\\d)$') THEN {c} "
                     f"ELSE {S.clock_sql(st, c, False, 'UTC')} END")
    return S.responses_table(
        st, participant=S.participant_sql(st.col(part)), fill=fill,
        submitted=f"coalesce({', '.join(times)})", items=items)


def _rebuilt_items(path: Path, mapping: dict, rebuilt: dict) -> dict[str, str]:
    """{item id: question} for select-multiple questions rebuilt from their 0/1 columns."""
    given = mapping.get("items") or {}
    by_key = {S.key(k): q for q in rebuilt for k in _keys(q)}
    return {str(v): by_key[S.key(k)] for k, v in given.items() if S.key(k) in by_key}


def describe(path: Path) -> dict:
    return S.describe_file(path)


def mapping_template(path: Path) -> str:
    """A starting mapping: group paths to items (Kobo's own columns left out)."""
    return S.template(path, FORMAT, "KoboToolbox", _is_meta, ("participant_id",),
                      ["# answers: {agree: 4}   # choice name: value, when choices are words"])
