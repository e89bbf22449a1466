"""Dates as exports write them, for every reader: one place for the mapping's time zone, for
telling day-first from month-first dates, for a clock time built from its written parts (AM/PM,
two-digit years) and for Excel's date serials.

The readers take a date apart with their own pattern (a log's `23/01/23, 12:09` is not a survey
tool's `2024/03/05 10:11:12 AM GMT+1`), then build the timestamp and decide the order here, so
a rule (the messages, the refusals, the arithmetic) is the same for all of them.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path

from etl.errors import RefusedFile

__all__ = ["zone", "dayfirst_given", "dayfirst_from", "timestamp_sql", "excel_serial_sql"]


def zone(path: Path, mapping: dict, needed: bool = False) -> str | None:
    """The mapping's IANA time zone, checked; refused when local times need one and none given."""
    tz = mapping.get("timezone")
    if not tz:
        if needed:
            raise RefusedFile(str(path), "its times are local clock times without a UTC offset: "
                                         "set timezone in the mapping (an IANA name such as "
                                         "Europe/Madrid)")
        return None
    try:
        zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise RefusedFile(str(path), f"the mapping's timezone '{tz}' is not an IANA time zone "
                                     "name (such as Europe/Madrid or America/New_York)") from None
    return str(tz)


def dayfirst_given(mapping: dict) -> bool | None:
    """The mapping's `dayfirst` (set by --dayfirst / --monthfirst), or None when it is silent."""
    given = mapping.get("dayfirst")
    return None if given is None else bool(given)


def dayfirst_from(path: Path, first: int | None, second: int | None, notes: list[str]) -> bool:
    """Whether `d/d/y` dates are day-first, from the largest first and second numbers of the
    file's dates: one above 12 tells (and is noted); both above 12 or neither is refused. With
    no such date (`first` None) the answer does not matter: False."""
    if first is None:
        return False
    if first > 12 and second is not None and second > 12:
        raise RefusedFile(str(path), "dates are neither all day-first nor all month-first (a "
                                     "first and a second number above 12): fix the file or set "
                                     "dayfirst in the mapping")
    if first > 12:
        notes.append("dates read day-first (DD/MM/YYYY): a first number is above 12")
        return True
    if second is not None and second > 12:
        notes.append("dates read month-first (MM/DD/YYYY): a second number is above 12")
        return False
    raise RefusedFile(str(path), "dates such as 01/02/2024 could be day-first or month-first "
                                 "and no date in the file tells: set dayfirst: true or false in "
                                 "the mapping (--dayfirst / --monthfirst)")


def timestamp_sql(year: str, month: str, day: str, hour: str, minute: str, second: str,
                  ampm: str) -> str:
    """The naive TIMESTAMP that written parts make (SQL text expressions; `second` and `ampm`
    may be ''), NULL when they make none: a two-digit year is 20yy, an hour with AM/PM must be
    1 to 12."""
    y = f"TRY_CAST({year} AS INTEGER)"
    y4 = f"CASE WHEN length({year}) = 2 THEN 2000 + {y} ELSE {y} END"
    h = f"TRY_CAST({hour} AS INTEGER)"
    ap = f"lower(left({ampm}, 1))"
    h24 = (f"CASE WHEN {ap} = '' THEN {h} WHEN {h} NOT BETWEEN 1 AND 12 THEN NULL "
           f"WHEN {ap} = 'p' THEN {h} % 12 + 12 ELSE {h} % 12 END")
    return (f"try(make_timestamp({y4}, TRY_CAST({month} AS INTEGER), TRY_CAST({day} AS INTEGER), "
            f"{h24}, TRY_CAST({minute} AS INTEGER), "
            f"coalesce(TRY_CAST(nullif({second}, '') AS DOUBLE), 0)))")


def excel_serial_sql(expr: str) -> str:
    """The TIMESTAMP of Excel's date serial (days since 1899-12-30, the fraction the time of day)
    as a workbook saved from a spreadsheet holds it: 45356.5 is 2024-03-05 12:00. NULL for text
    that is no five-digit serial."""
    return (f"CASE WHEN regexp_full_match({expr}, '\\d{{5}}(\\.\\d+)?') THEN "
            f"TIMESTAMP '1899-12-30' + to_seconds(CAST(round(CAST({expr} AS DOUBLE) * 86400) "
            "AS BIGINT)) END")
