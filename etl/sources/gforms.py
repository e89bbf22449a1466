"""Google Forms responses (the form's "Download responses (.csv)", or its linked Sheet saved as
CSV) as the contract's wide responses.

`Timestamp` comes first (in the form owner's language: `Marca temporal`, `Horodateur`, ...),
written in the owner's locale: `2024/03/05 10:11:12 AM GMT+1` from the form's own download,
`05/03/2024 10:11:12` or `3/5/2024 10:11:12` from a Sheet. Day-first or month-first comes from
the mapping's `dayfirst`, else from a date whose first or second number is above 12; when no
date tells, the file is refused naming --dayfirst/--monthfirst. A time with `GMT+1` keeps that
offset; one without is read in the mapping's `timezone`, else left for the loader to read in
the institution's zone.

Questions are columns named by their text; a grid (`Multiple choice grid`) is one column per row,
`Question [Row]`; checkbox answers are one cell joined with `, `. The mapping's `items` names
columns by their text (case and runs of spaces ignored); `answers` maps answer labels to values
(a checkbox cell part by part when every part is a label). The participant is the mapping's
`participant` column, else `Email Address` (forms that collect e-mails). `Score` columns of
quizzes are dropped.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from etl.errors import RefusedFile
from etl.sources import _surveys as S

__all__ = ["FORMAT", "KIND", "sniff", "read", "describe", "mapping_template"]

FORMAT = "gforms"
KIND = "responses"

TIMESTAMP = {"timestamp", "marca temporal", "horodateur", "zeitstempel", "carimbo de data/hora",
             "informazioni cronologiche", "tijdstempel", "sygnatura czasowa", "marca de tiempo"}
EMAIL = ("Email Address", "Email address", "Email", "Dirección de correo electrónico",
         "Adresse e-mail", "Adresse e-mail", "E-Mail-Adresse", "Endereço de e-mail",
         "Indirizzo email", "Username")
META = {"score", "total score", "puntuación", "score total", "punkte", "pontuação", "punteggio"}


def _keys(header: str) -> list[str]:
    return [header]


def sniff(path: Path, head: str) -> bool:
    """The first column of the header is `Timestamp` (in one of the owner's languages)."""
    header, _ = S.split_header(head)
    return bool(header) and S.key(header[0]) in TIMESTAMP


def read(path: Path, mapping: dict, notes: list[str]) -> pa.Table:
    with S.guarded(path, "a Google Forms export"):
        st = S.stage_csv(path, notes)
        return _read(path, st, mapping)


def _read(path: Path, st: S.Staged, mapping: dict) -> pa.Table:
    ts = next((i for i, h in enumerate(st.header) if S.key(h) in TIMESTAMP), None)
    if ts is None:
        raise RefusedFile(str(path), "has no 'Timestamp' column: is it a Google Forms export?")
    given = mapping.get("participant")
    part = S.column_named(st, given, _keys)
    if given and part is None:
        raise RefusedFile(str(path), f"the mapping's participant column '{given}' is not in "
                                     "the file")
    if part is None:
        part = next((i for n in EMAIL if (i := S.column_named(st, n, _keys)) is not None), None)
    if part is None:
        raise RefusedFile(str(path), "no participant column: the form does not collect e-mail "
                                     "addresses; name the question holding the participant's id "
                                     "or e-mail as participant in the mapping")
    fill, fill_cols = S.file_columns(st, mapping)
    meta = {i for i, h in enumerate(st.header) if S.key(h) in META}
    skip = {ts, part} | meta | fill_cols
    items = S.items_for(path, st, mapping, _keys, skip)
    if meta:
        st.notes.append(f"quiz columns dropped: {S.listed([st.header[i] for i in sorted(meta)])}")

    col = st.col(ts)
    dayfirst = S.day_first(st, path, col, mapping)
    tz = S.zone(path, mapping)
    return S.responses_table(
        st, participant=S.participant_sql(st.col(part)), fill=fill,
        submitted=S.clock_sql(st, col, dayfirst, tz),
        items={k: S.answer_sql(st.col(i), mapping, split=", ") for k, i in items.items()})


def describe(path: Path) -> dict:
    return S.describe_file(path)


def mapping_template(path: Path) -> str:
    """A starting mapping: question texts (grid rows as `Question [Row]`) to items."""
    return S.template(
        path, FORMAT, "Google Forms",
        lambda h: S.key(h) in TIMESTAMP or S.key(h) in META or S.key(h) in {
            S.key(e) for e in EMAIL}, ("participant_id", *EMAIL),
        ["# dayfirst: true   # dates such as 05/03/2024 are day-first (false: month-first)",
         "answers:          # answer label: value on the instrument's scale",
         "  Strongly disagree: 1", "  Disagree: 2", "  Neutral: 3", "  Agree: 4",
         "  Strongly agree: 5"])
