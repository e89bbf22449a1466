"""What each column of the input contract must satisfy, as SQL over the staging row.

A `Field` turns one source column into its warehouse value (`typed`) and lists the `Check`s that
reject a row: `broken` is a SQL condition that is true when the row breaks the rule. The loader
evaluates every field and check of a kind in one set-based pass (see `etl.load`).

Names the SQL can use: `s."<column>"` (trimmed text, NULL when empty or absent), `p._pid` (the
participant pseudonym), `p.participant_id` (the same, NULL when the participant is unknown),
`p.timezone` and `p.tz_id` (their institution's zone, its name and number), both for events and
responses; `i` (the institution of a participants row), `x` (the referenced exchange). `p` is a
lookup of the file's distinct participant ids, so the hash and the roster joins run once per
person, not once per row. `h_<column>.delta_us` is the offset of the participant's zone in the
local hour of that column's naive time, `s."_local_<column>"` that time parsed (see
`LOCAL_TIME`, `LOCAL_JOINS`): the time-zone rules run once per zone and hour, not per row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from etl import languages, privacy, schema

__all__ = ["Check", "Field", "fields_for", "plausible_date", "vocabulary_sql", "ENUMS",
           "SYNONYMS", "WAVE_PATTERN", "EARLIEST_DATE"]

ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("clusters", "kind"): ("cluster", "network", "consortium"),
    ("institutions", "kind"): ("school", "university", "other"),
    ("institutions", "connectivity"): ("low", "medium", "high"),
    ("institutions", "income_group"): ("low", "lower-middle", "upper-middle", "high"),
    ("exchanges", "modality"): ("virtual", "blended", "physical"),
    ("exchanges", "setting"): ("curricular", "extracurricular"),
    ("participants", "role"): ("student", "teacher"),
    ("participants", "gender"): ("female", "male", "non-binary", "another", "not reported"),
}
# Other spellings of a vocabulary's values, compared after lower-casing, trimming and turning runs
# of spaces, '_' and '-' into one space (so "Non-Binary", "non_binary" and "non binary" are one).
# An empty cell stays empty (NULL); the dashboard counts it as "not reported".
SYNONYMS: dict[tuple[str, str], dict[str, str]] = {
    ("participants", "gender"): {
        "f": "female", "woman": "female", "girl": "female",
        "m": "male", "man": "male", "boy": "male",
        "non binary": "non-binary", "nonbinary": "non-binary", "nb": "non-binary",
        "enby": "non-binary", "genderqueer": "non-binary",
        "other": "another", "another gender": "another", "self described": "another",
        "diverse": "another",
        "prefer not to say": "not reported", "prefer not to answer": "not reported",
        "unknown": "not reported", "not stated": "not reported", "undisclosed": "not reported",
        "declined": "not reported", "n/a": "not reported", "na": "not reported",
    },
}
WAVE_PATTERN = r"^(pre|mid|post|follow_?up(_[a-z0-9]+)?)$"
# No exchange, partnership, event or survey answer of the program predates this.
EARLIEST_DATE = dt.date(1950, 1, 1)
# An explicit offset or Z at the end of an ISO date-time; anything else is local (naive) time.
_OFFSET = r"(Z|z|[+-]\d\d(:?\d\d)?)$"


@dataclass(frozen=True)
class Check:
    rule: str
    broken: str
    message: str  # SQL expression for the readable explanation


@dataclass(frozen=True)
class Field:
    name: str
    typed: str
    checks: tuple[Check, ...] = field(default_factory=tuple)
    shown: str | None = None  # what a reject shows as the offending value (pseudonym for ids)


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _raw(col: str) -> str:
    return f's."{col}"'


def _quote_value(expr: str) -> str:
    """A value quoted in a reject's message, masked as `etl.privacy` says (e-mails, phones, IPs)."""
    return f"'''' || coalesce({privacy.mask_sql(expr)}, '') || ''''"


def _required(col: str, what: str) -> Check:
    return Check("required", f"{_raw(col)} IS NULL", _lit(f"{col} is required ({what}) but empty"))


def _text(col: str, required: bool, doc: str) -> Field:
    checks = (_required(col, doc),) if required else ()
    return Field(col, _raw(col), checks)


def _synonym_key(expr: str) -> str:
    return f"trim(regexp_replace(lower({expr}), '[\\s_-]+', ' ', 'g'))"


def _normalised(kind: str, col: str, expr: str) -> str:
    """`expr` as the vocabulary of (kind, col) compares it: lower case, spellings mapped."""
    allowed = ENUMS[(kind, col)]
    norm = f"lower({expr})"
    if col == "income_group":
        norm = (
            f"regexp_replace(regexp_replace(lower({expr}), '\\s*income$', ''), '[\\s_]+', '-', 'g')"
        )
    if (kind, col) in SYNONYMS:
        spelt = {a: a for a in allowed}
        spelt.update(SYNONYMS[(kind, col)])
        key = _synonym_key(expr)
        # Keys as the comparison sees them: the vocabulary's own "non-binary" is "non binary".
        whens = " ".join(f"WHEN {_lit(' '.join(a.replace('-', ' ').split()))} THEN {_lit(v)}"
                         for a, v in spelt.items())
        norm = f"CASE {key} {whens} ELSE {key} END"
    return norm


def vocabulary_sql(kind: str, col: str, expr: str) -> str:
    """The vocabulary's value that `expr` spells (see `ENUMS`, `SYNONYMS`), NULL if none."""
    norm = _normalised(kind, col, expr)
    return f"CASE WHEN {norm} IN ({', '.join(map(_lit, ENUMS[(kind, col)]))}) THEN {norm} END"


def _enum(kind: str, col: str, required: bool) -> Field:
    allowed = ENUMS[(kind, col)]
    norm = _normalised(kind, col, _raw(col))
    cond = f"{_raw(col)} IS NOT NULL AND {norm} NOT IN ({', '.join(map(_lit, allowed))})"
    if (kind, col) in privacy.WITHHELD_COLUMNS:  # free text about a person: never quoted
        msg = _lit(f"{col} is not one of: {', '.join(allowed)} (the value is withheld: personal "
                   "data; see the row in the file)")
    else:
        msg = f"{_quote_value(_raw(col))} || ' is not one of: {', '.join(allowed)}'"
    checks = [Check("allowed_values", cond, msg)]
    if required:
        checks.insert(0, _required(col, " | ".join(allowed)))
    return Field(col, vocabulary_sql(kind, col, _raw(col)), tuple(checks))


def _latest_date(today: dt.date) -> dt.date:
    """A year from `today` (29 February: 28 February of the next year)."""
    try:
        return today.replace(year=today.year + 1)
    except ValueError:
        return today.replace(year=today.year + 1, day=28)


def plausible_date(col: str, value: str) -> Check:
    """The bounds of every date and time of the contract: from 1950 to a year from today.

    `value` is the column parsed (a SQL DATE or TIMESTAMP, NULL when it does not parse: parsing
    has its own rule). 1850 and 2099 are typing slips or placeholders, not dates of a program;
    a planned exchange may start within the year ahead.
    """
    lo, hi = EARLIEST_DATE.isoformat(), _latest_date(dt.date.today()).isoformat()
    return Check(
        "plausible_date", f"CAST({value} AS DATE) NOT BETWEEN DATE '{lo}' AND DATE '{hi}'",
        f"{_quote_value(_raw(col))} || ' is not a plausible date (expected {lo} to {hi}, "
        "a year from today)'",
    )


def _date(col: str, required: bool) -> Field:
    typed = f"TRY_CAST({_raw(col)} AS DATE)"
    checks = [Check(
        "date", f"{_raw(col)} IS NOT NULL AND {typed} IS NULL",
        f"{_quote_value(_raw(col))} || ' is not a date (expected ISO 8601, YYYY-MM-DD)'",
    ), plausible_date(col, typed)]
    if required:
        checks.insert(0, _required(col, "a date, YYYY-MM-DD"))
    return Field(col, typed, tuple(checks))


def _timestamp(col: str) -> Field:
    """UTC instant: explicit offsets are honoured; naive times are read in the institution's zone.

    A naive time is shifted by its zone's offset in that local hour (`h_<col>`, see
    `LOCAL_TIME`), which is exactly what `timezone()` gives for every time of that hour; ICU's
    `timezone()` per row (several times dearer than the whole rest of the row) is left for the
    hours the lookup does not cover: a change of offset inside the hour, or a time out of range.
    """
    r = _raw(col)
    local = f's."_local_{col}"'
    has_offset = f"regexp_matches({r}, {_lit(_OFFSET)}) AND length({r}) > 10"
    typed = (
        f"CASE WHEN {has_offset} THEN TRY_CAST({r} AS TIMESTAMPTZ) "
        f"WHEN h_{col}.delta_us IS NOT NULL "
        f"THEN make_timestamptz(epoch_us({local}) + h_{col}.delta_us) "
        f"WHEN p.timezone IS NOT NULL THEN timezone(p.timezone, {local}) END"
    )
    parse_fails = f"{r} IS NOT NULL AND {local} IS NULL"
    return Field(col, typed, (
        _required(col, "an ISO 8601 date-time"),
        Check("timestamp", parse_fails,
              f"{_quote_value(r)} || ' is not an ISO 8601 date-time "
              "(YYYY-MM-DD HH:MM[:SS][±HH:MM])'"),
        plausible_date(col, local),  # the clock time as written: its date is the one meant
    ))


def _number(col: str, lo: float | None, hi: float | None, integer: bool = False) -> Field:
    typ = "INTEGER" if integer else "DOUBLE"
    typed = f"TRY_CAST({_raw(col)} AS {typ})"
    checks = [Check(
        "number", f"{_raw(col)} IS NOT NULL AND {typed} IS NULL",
        f"{_quote_value(_raw(col))} || ' is not a{'' if integer else ''} number'",
    )]
    conds = []
    if lo is not None:
        conds.append(f"{typed} < {lo}")
    if hi is not None:
        conds.append(f"{typed} > {hi}")
    if conds:
        rng = f"from {lo if lo is not None else '-∞'} to {hi if hi is not None else '∞'}"
        checks.append(Check("range", " OR ".join(conds),
                            f"{_quote_value(_raw(col))} || ' is outside the range {rng}'"))
    return Field(col, typed, tuple(checks))


def _reference(col: str, table: str, key: str, joined: str, *, shown: str | None = None,
               typed: str | None = None) -> Field:
    """`joined` is the referenced table's key as joined in the staging query (NULL = no match)."""
    if shown:  # a pseudonymised id: say so, the row number finds it in the file
        msg = (f"'the participant of this row (pseudonym ' || {shown} || ') is not in "
               f"{table}; load them first'")
    else:
        msg = f"{_quote_value(_raw(col))} || ' is not a known {key} (table {table})'"
    return Field(col, typed or _raw(col), (
        _required(col, f"a {key} from {table}"),
        Check("reference", f"{_raw(col)} IS NOT NULL AND {joined} IS NULL", msg),
    ), shown=shown)


def fields_for(kind: str, current_year: int) -> list[Field]:
    """The fields of one contract kind, in warehouse column order (without batch_id).

    A field's `shown` (what its rejects show of the value) is the pseudonym for participant ids,
    else what `etl.privacy.shown_sql` allows: masked, or withheld for a person's attributes.
    Free-text columns (`etl.privacy.FREE_TEXT`) are stored masked.
    """
    return [Field(f.name,
                  privacy.mask_sql(f.typed) if (kind, f.name) in privacy.FREE_TEXT else f.typed,
                  f.checks, f.shown or privacy.shown_sql(kind, f.name, _raw(f.name)))
            for f in _fields(kind, current_year)]


def _fields(kind: str, current_year: int) -> list[Field]:
    s = _raw
    if kind == "clusters":
        return [
            _text("cluster_id", True, "an identifier"),
            _text("name", True, "a display name"),
            _enum("clusters", "kind", True),
        ]
    if kind == "institutions":
        return [
            _text("institution_id", True, "an identifier"),
            _text("name", True, "a display name"),
            Field("country", "ctry.alpha3", (
                _required("country", "ISO 3166-1 alpha-2, alpha-3 or English name"),
                Check("country", f"{s('country')} IS NOT NULL AND ctry.alpha3 IS NULL",
                      f"{_quote_value(s('country'))} || ' is not a country (ISO 3166-1 alpha-2, "
                      "alpha-3 or English name)'"),
            )),
            _reference("cluster_id", "clusters", "cluster_id", "cl.cluster_id"),
            Field("timezone", "tz.name", (
                _required("timezone", "an IANA time zone such as Europe/Berlin"),
                Check("timezone", f"{s('timezone')} IS NOT NULL AND tz.name IS NULL",
                      f"{_quote_value(s('timezone'))} || ' is not an IANA time zone "
                      "(e.g. Europe/Berlin, America/Lima)'"),
            )),
            _enum("institutions", "kind", True),
            _text("city", False, ""),
            _enum("institutions", "income_group", False),
            _enum("institutions", "connectivity", False),
        ]
    if kind == "exchanges":
        start, end = _date("start_date", True), _date("end_date", True)
        end = Field(end.name, end.typed, end.checks + (Check(
            "date_order", f"{end.typed} < {start.typed}",
            f"'end_date ' || {_quote_value(s('end_date'))} || ' is before start_date ' || "
            f"{_quote_value(s('start_date'))}"),))
        return [
            _text("exchange_id", True, "an identifier"),
            _text("name", True, "a display name"),
            _text("program", True, "the program"),
            _reference("cluster_id", "clusters", "cluster_id", "cl.cluster_id"),
            _enum("exchanges", "modality", True),
            _enum("exchanges", "setting", True),
            _text("purpose", True, "the purpose"),
            _text("language", True, "the working language"),
            start,
            end,
            _number("budget", 0, None),
            Field("currency", f"upper({s('currency')})", (Check(
                "currency",
                f"{s('currency')} IS NOT NULL "
                f"AND NOT regexp_matches({s('currency')}, '^[A-Za-z]{{3}}$')",
                f"{_quote_value(s('currency'))} || ' is not an ISO 4217 currency code "
                "such as EUR'"),)),
        ]
    if kind == "partnerships":
        started, ended = _date("started_on", True), _date("ended_on", False)
        ended = Field(ended.name, ended.typed, ended.checks + (Check(
            "date_order", f"{ended.typed} < {started.typed}",
            f"'ended_on ' || {_quote_value(s('ended_on'))} || ' is before started_on ' || "
            f"{_quote_value(s('started_on'))}"),))
        b = _reference("institution_b", "institutions", "institution_id", "ib.institution_id")
        b = Field(b.name, b.typed, b.checks + (Check(
            "self_partnership", f"{s('institution_a')} = {s('institution_b')}",
            "'an institution cannot partner with itself'"),))
        return [
            _text("partnership_id", True, "an identifier"),
            _reference("exchange_id", "exchanges", "exchange_id", "x.exchange_id"),
            _reference("institution_a", "institutions", "institution_id", "ia.institution_id"),
            b,
            started,
            ended,
        ]
    if kind == "participants":
        comparison = f"lower(coalesce({s('comparison')}, 'false'))"
        truthy, falsy = "('true','t','yes','y','1')", "('false','f','no','n','0')"
        return [
            Field("participant_id", "p._pid", (_required("participant_id", "the source id"),),
                  shown="p._pid"),
            _reference("institution_id", "institutions", "institution_id", "i.institution_id"),
            _enum("participants", "role", True),
            _enum("participants", "gender", False),
            _number("birth_year", 1900, current_year, integer=True),
            Field("comparison", f"CASE WHEN {comparison} IN {truthy} THEN true "
                                f"WHEN {comparison} IN {falsy} THEN false END",
                  (Check("boolean", f"{comparison} NOT IN {truthy} AND {comparison} NOT IN {falsy}",
                         f"{_quote_value(s('comparison'))} || ' is not true or false'"),)),
        ]
    if kind == "events":
        return [
            _reference("participant_id", "participants", "participant_id", "p.participant_id",
                       shown="p._pid", typed="p._pid"),
            _reference("exchange_id", "exchanges", "exchange_id", "x.exchange_id"),
            _timestamp("occurred_at"),
            _text("activity", True, "what was done"),
            _number("minutes", 0, 24 * 60),
        ]
    if kind == "responses":  # the row part; item columns are checked cell by cell
        return [
            _reference("participant_id", "participants", "participant_id", "p.participant_id",
                       shown="p._pid", typed="p._pid"),
            _reference("exchange_id", "exchanges", "exchange_id", "x.exchange_id"),
            Field("wave", f"replace(lower({s('wave')}), 'follow_up', 'followup')", (
                _required("wave", "pre, post, followup or followup_6m ..."),
                Check("wave", f"{s('wave')} IS NOT NULL AND NOT regexp_matches(lower({s('wave')}), "
                              f"{_lit(WAVE_PATTERN)})",
                      f"{_quote_value(s('wave'))} || ' is not a wave (pre, post, followup, "
                      "followup_6m ...)'"),
            )),
            _timestamp("submitted_at"),
            # The language the survey was taken in; empty: the exchange's working language
            # (its name or code mapped the same way; none when that names no language).
            Field("language", "coalesce(lng.code, xlng.code)", (Check(
                "language", f"{s('language')} IS NOT NULL AND lng.code IS NULL",
                f"{_quote_value(s('language'))} || ' is not a language (ISO 639-1 code such "
                "as en, es, fr; an ISO 639-2 code; or a name such as Spanish or español)'"),)),
        ]
    if kind == "rates":
        return _rates_fields(current_year)
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(schema.LOAD_ORDER)}")


def _currency_code(col: str, joined: str) -> Field:
    """A required ISO 4217 code (any case), checked against pycountry's list (`_currency`)."""
    return Field(col, f"upper({_raw(col)})", (
        _required(col, "an ISO 4217 currency code such as EUR"),
        Check("currency", f"{_raw(col)} IS NOT NULL AND {joined} IS NULL",
              f"{_quote_value(_raw(col))} || ' is not an ISO 4217 currency code such as EUR, "
              "USD, KES'"),
    ))


def _rates_fields(current_year: int) -> list[Field]:
    """rates: currency, year, rate (> 0, units of currency per one base), base.

    A duplicate currency-year within a file is the loader's `duplicate` rule (the table's key);
    a later file's row for the same currency and year replaces the earlier one."""
    year = _number("year", EARLIEST_DATE.year, current_year + 1, integer=True)
    rate = _number("rate", None, None)
    base = _currency_code("base", "bcur.code")
    return [
        _currency_code("currency", "cur.code"),
        Field(year.name, year.typed, (_required("year", "a calendar year such as 2026"),)
              + year.checks),
        Field(rate.name, rate.typed, (_required("rate", "units of currency per one base"),)
              + rate.checks + (
            Check("positive", f"{rate.typed} <= 0",
                  f"'rate ' || {_quote_value(_raw('rate'))} || ' is not positive: a rate is "
                  "units of currency per one unit of base, above 0'"),
            Check("base_rate", f"upper({_raw('currency')}) = upper({_raw('base')}) "
                               f"AND {rate.typed} <> 1",
                  f"'the base currency ' || upper({_raw('base')}) || ' against itself must "
                  f"have rate 1, not ' || {_quote_value(_raw('rate'))}"),
        )),
        base,
    ]


# The joins each kind's fields refer to, given the staging alias `s`.
JOINS: dict[str, str] = {
    "clusters": "",
    "institutions": (
        'LEFT JOIN _country ctry ON ctry.key = lower(s."country") '
        'LEFT JOIN _tz tz ON tz.name = s."timezone" '
        'LEFT JOIN clusters cl ON cl.cluster_id = s."cluster_id"'
    ),
    "exchanges": 'LEFT JOIN clusters cl ON cl.cluster_id = s."cluster_id"',
    "partnerships": (
        'LEFT JOIN exchanges x ON x.exchange_id = s."exchange_id" '
        'LEFT JOIN institutions ia ON ia.institution_id = s."institution_a" '
        'LEFT JOIN institutions ib ON ib.institution_id = s."institution_b"'
    ),
    "participants": (
        'LEFT JOIN _ids p ON p._src_id = s."participant_id" '
        'LEFT JOIN institutions i ON i.institution_id = s."institution_id"'
    ),
    "events": (
        'LEFT JOIN _ids p ON p._src_id = s."participant_id" '
        'LEFT JOIN exchanges x ON x.exchange_id = s."exchange_id"'
    ),
}
JOINS["rates"] = (
    'LEFT JOIN _currency cur ON cur.code = upper(s."currency") '
    'LEFT JOIN _currency bcur ON bcur.code = upper(s."base")'
)
JOINS["responses"] = JOINS["events"] + (
    f' LEFT JOIN _language lng ON lng.key = {languages.key_sql(_raw("language"))}'
    f" LEFT JOIN _language xlng ON xlng.key = {languages.key_sql('x.language')}"
)

# The naive local time of each kind: the staging source gives it parsed once as
# `s."_local_<column>"` (TRY_CAST AS TIMESTAMP), and `etl.load` tabulates `_tz_hours_<column>`
# (zone id, local hour, offset in microseconds) before staging, for the `h_<column>` join below.
LOCAL_TIME: dict[str, str] = {"events": "occurred_at", "responses": "submitted_at"}
# Only typed values use it (no check does), so the loader leaves it out of a pass for rejects.
LOCAL_JOINS: dict[str, str] = {
    kind: f' LEFT JOIN _tz_hours_{col} h_{col} ON h_{col}.tz_id = p.tz_id '
          f'AND h_{col}.hour = date_trunc(\'hour\', s."_local_{col}")'
    for kind, col in LOCAL_TIME.items()
}
__all__ += ["JOINS", "LOCAL_TIME", "LOCAL_JOINS"]
