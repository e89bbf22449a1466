"""What the warehouse and its reports may keep of a value a person wrote: the masking rule.

Free text and misplaced values carry personal data: an events file with swapped headers puts a
participant's e-mail under `exchange_id`, an `activity` note quotes an address, a `gender` cell
holds a name. Three things are masked wherever such a value is stored or shown (free-text
columns, `rejects.value` and `rejects.message`, the notes of `load_batches`, the command line):

- e-mail addresses → `[e-mail]`
- IP addresses (v4; v6 of eight groups, or with a `::` beside a group) → `[IP address]`
- phone numbers → `[phone]`: with an international prefix (`+33 6 12…`, `0033 6 12…`), a
  national trunk `0` and 9 to 13 digits (`06 12 34 56 78`), an area code in parentheses
  (`(555) 123-4567`), or the North American 3-3-4 form (`555-123-4567`). Dates and times
  (`2026-03-04 10:00`) are none of these, so rejected dates still read as they were.

The rest of the text is kept. The free-text columns (`FREE_TEXT`: activity, city, names…) are
stored masked. A person's coded attributes (`WITHHELD_COLUMNS`: gender) are not shown at all when
they fail their vocabulary: a free-text gender is a description of someone. Participant ids are
shown as their pseudonym (`etl.rules`, `Field.shown`; `etl.load` for ids under another column),
never masked here. `mask_stored_personal_data` applies all this once to a warehouse that an
earlier version filled.

The rule is written once, as a list of RE2-compatible patterns; `mask()` applies it in Python
(notes, refused files' messages) and `mask_sql()` in DuckDB (set-based, for rejects and stored
text). Tests check that the two agree.
"""

from __future__ import annotations

import re

import duckdb

__all__ = [
    "MASKS", "WITHHELD", "WITHHELD_COLUMNS", "FREE_TEXT", "mask", "mask_sql", "shown_sql",
    "mask_stored_personal_data",
]

_H = "[0-9A-Fa-f]{1,4}"
# (pattern, replacement), applied in this order: an e-mail's digits are not a phone number, and
# an IP address's dotted groups are not one either.
MASKS: tuple[tuple[str, str], ...] = (
    (r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}", "[e-mail]"),
    (r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b", "[IP address]"),
    (rf"\b{_H}(?::{_H}){{7}}\b|\b{_H}(?::{_H}){{0,6}}::(?:{_H}(?::{_H}){{0,6}}\b)?"
     rf"|::{_H}(?::{_H}){{0,6}}\b", "[IP address]"),
    (r"(?:\+|\b00)[1-9](?:[ ./()\-]{0,2}[0-9]){6,14}"
     r"|\b0[1-9](?:[ ./\-]?[0-9]){7,11}\b"
     r"|\([0-9]{2,4}\)[ .\-]?[0-9]{3,4}[ .\-]?[0-9]{3,4}\b"
     r"|\b[0-9]{3}[ .\-][0-9]{3}[ .\-][0-9]{4}\b", "[phone]"),
)
# Only text with one of these characters can hold a match: the rest skips the patterns (a log of
# ten million "message" and "video call" rows costs one cheap test per row).
_MAY_MATCH = "[0-9@:]"

WITHHELD = "[withheld]"
# A person's coded attributes (kind, column): a value outside the vocabulary is not shown.
WITHHELD_COLUMNS = frozenset({("participants", "gender")})
# Free-text columns (kind = table, column): stored with the masks applied.
FREE_TEXT = frozenset({
    ("clusters", "name"), ("institutions", "name"), ("institutions", "city"),
    ("exchanges", "name"), ("exchanges", "program"), ("exchanges", "purpose"),
    ("exchanges", "language"), ("events", "activity"),
})

_COMPILED = [(re.compile(p, re.ASCII), r) for p, r in MASKS]


def mask(text: str | None) -> str | None:
    """`text` with e-mails, IP addresses and phone numbers replaced (see the module doc)."""
    if text is None:
        return None
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    return text


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def mask_sql(expr: str) -> str:
    """A DuckDB expression giving `mask(expr)` for a VARCHAR expression (NULL stays NULL)."""
    out = expr
    for pattern, replacement in MASKS:
        out = f"regexp_replace({out}, {_lit(pattern)}, {_lit(replacement)}, 'g')"
    return f"CASE WHEN regexp_matches({expr}, {_lit(_MAY_MATCH)}) THEN {out} ELSE {expr} END"


def shown_sql(kind: str, column: str, expr: str) -> str:
    """What a reject or report may show of the value `expr` of `column` in a file of `kind`."""
    if (kind, column) in WITHHELD_COLUMNS:
        return _lit(WITHHELD)
    return mask_sql(expr)


MASKED_FLAG = "masked_personal_data"  # meta row: what earlier versions stored has been masked


def mask_stored_personal_data(con: duckdb.DuckDBPyConnection) -> None:
    """Apply this module's rules to what an earlier version stored; once per warehouse.

    Rejects (value, message) and load notes are masked, free-text columns too, and a person's
    coded attributes are recoded to their vocabulary (a value outside it becomes NULL, which
    reads as "not reported"). Runs inside a load, on the next warehouse, before the load's own
    files; the meta flag skips it afterwards. The file's freed pages may keep the old bytes until
    the warehouse is rebuilt from its sources.
    """
    from etl.rules import vocabulary_sql  # rules builds on this module

    if con.execute("SELECT 1 FROM meta WHERE key = ?", [MASKED_FLAG]).fetchall():
        return
    value, message = mask_sql("value"), mask_sql("message")
    con.execute(f"UPDATE rejects SET value = {value}, message = {message} "
                f"WHERE value IS DISTINCT FROM {value} OR message IS DISTINCT FROM {message}")
    con.execute(f"UPDATE load_batches SET message = {message} "
                f"WHERE message IS DISTINCT FROM {message}")
    for table, col in sorted(FREE_TEXT):
        masked = mask_sql(f'"{col}"')
        con.execute(f'UPDATE "{table}" SET "{col}" = {masked} '
                    f'WHERE "{col}" IS DISTINCT FROM {masked}')
    for table, col in sorted(WITHHELD_COLUMNS):
        coded = vocabulary_sql(table, col, f'"{col}"')
        con.execute(f'UPDATE "{table}" SET "{col}" = {coded} '
                    f'WHERE "{col}" IS DISTINCT FROM {coded}')
    con.execute("INSERT INTO meta VALUES (?, '1')", [MASKED_FLAG])
