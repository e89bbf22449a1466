"""Loading contract files into the warehouse: read → validate → pseudonymise → load atomically.

`load_paths()` is what `python -m etl load` calls. All files of one call are loaded into one
next-warehouse file that replaces the live one in a single rename (see `etl.warehouse`), so the
data version moves once per call. Within it each file is its own transaction: a file that cannot
be read is refused whole (nothing of it stays, the others load), a readable file loads its good
rows and sends each bad row to `rejects` with the rule it broke.

Everything is set-based: one SQL pass evaluates every field and check of a file (DuckDB, all
cores); rows are never inserted one by one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import blake3
import duckdb
import pandas as pd
import pycountry

import surveys
from etl import languages, phases, privacy, readers, rules, schema, sources
from etl.errors import DeriveFailed, EtlError, RefusedFile
from etl.pseudonym import check_key, hmac_sql, resolve_key
from etl.warehouse import (
    DEFAULT_WAREHOUSE,
    NoChange,
    build_next,
    damaged,
    data_version,
    out_of_memory,
)

__all__ = ["FileReport", "load_paths", "file_hash", "sha256_file", "COUNTRY_ALIASES"]

# Names people write that pycountry's lookup does not know.
COUNTRY_ALIASES = {
    "uk": "GBR", "great britain": "GBR", "england": "GBR", "scotland": "GBR", "wales": "GBR",
    "usa": "USA", "us": "USA", "united states of america": "USA", "america": "USA",
    "russia": "RUS", "south korea": "KOR", "korea": "KOR", "north korea": "PRK",
    "turkey": "TUR", "türkiye": "TUR", "turkiye": "TUR", "czech republic": "CZE",
    "ivory coast": "CIV", "cote d'ivoire": "CIV", "vietnam": "VNM", "iran": "IRN",
    "syria": "SYR", "laos": "LAO", "bolivia": "BOL", "venezuela": "VEN", "tanzania": "TZA",
    "moldova": "MDA", "taiwan": "TWN", "palestine": "PSE", "the netherlands": "NLD",
    "holland": "NLD", "dr congo": "COD", "drc": "COD", "congo": "COG", "cape verde": "CPV",
    "eswatini": "SWZ", "swaziland": "SWZ", "macedonia": "MKD", "brunei": "BRN",
    "kosovo": "XKX",
}
PARTICIPANT_KINDS = ("participants", "events", "responses")
CHUNK = 1 << 20
# Up to this many (zone, local hour) offsets are tabulated per file (`_FileLoader._tz_hours`).
TZ_HOURS_MAX = 2_000_000
TZ_HOURS_SAMPLE_FROM = 1_000_000  # rows; larger files find their hours in a sample


@dataclass
class FileReport:
    file: str
    kind: str | None = None
    status: str = "pending"  # loaded | unchanged | refused
    rows_in: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_replaced: int = 0  # rows of earlier loads this one took the place of (see `_settle`)
    rows_added: int = 0
    rows_changed: int = 0
    rows_unchanged: int = 0
    rows_removed: int = 0
    source: str = ""
    batch_id: int | None = None
    notes: list[str] = field(default_factory=list)
    rejects_by_rule: Counter = field(default_factory=Counter)
    first_rejects: list[str] = field(default_factory=list)
    problem: str = ""

    def refuse(self, problem: str) -> None:
        """The file's transaction was rolled back: it brought nothing and changed nothing."""
        self.status, self.problem, self.notes = "refused", problem, []
        self.rows_in = self.rows_accepted = self.rows_rejected = self.rows_replaced = 0
        self.rows_added = self.rows_changed = self.rows_removed = self.rows_unchanged = 0

    def summary(self) -> str:
        if self.status == "refused":
            return f"{self.file}: refused: {self.problem}"
        if self.status == "unchanged":
            return f"{self.file}: unchanged ({self.notes[0] if self.notes else 'already loaded'})"
        rules_txt = ", ".join(f"{r} {n:,}" for r, n in self.rejects_by_rule.most_common())
        out = (f"{self.file}: {self.kind}: {self.rows_accepted:,} of {self.rows_in:,} rows loaded, "
               f"{self.rows_rejected:,} rows rejected"
               + (f"; rejects by rule: {rules_txt}" if rules_txt else ""))
        return out + f"; {self.changes()} [batch {self.batch_id}]"

    def changes(self) -> str:
        """What the file did to its table, e.g. "12 answers added, 1 changed, 0 removed,
        40 unchanged"."""
        unit = "answers" if self.kind == "responses" else "rows"
        return (f"{unit} in {self.kind}: {self.rows_added:,} added, {self.rows_changed:,} changed, "
                f"{self.rows_removed:,} removed, {self.rows_unchanged:,} unchanged")


def file_hash(path: Path) -> str:
    """BLAKE3 of the file's bytes: the content id that makes a second load of the same file
    `unchanged`. 2.6x less CPU than SHA-256 with the SHA extensions (0.20 vs 0.52 s for 900 MB),
    which counts because it runs beside DuckDB's read of the same file on 2 cores (issue 11)."""
    h = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)  # releases the GIL: runs beside DuckDB's read of the same file
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of the file: only to recognise files loaded by versions that stored it
    (load_batches.sha256, before the blake3 column)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _country_table() -> pd.DataFrame:
    rows: dict[str, str] = {}
    for c in pycountry.countries:
        for attr in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            v = getattr(c, attr, None)
            if v:
                rows[v.lower()] = c.alpha_3
    rows.update(COUNTRY_ALIASES)
    return pd.DataFrame({"key": list(rows), "alpha3": list(rows.values())})


def _prepare_lookups(con: duckdb.DuckDBPyConnection) -> None:
    con.register("_country_df", _country_table())
    con.execute("CREATE OR REPLACE TEMP TABLE _country AS SELECT * FROM _country_df")
    con.unregister("_country_df")
    con.register("_language_df", languages.language_table())
    con.execute("CREATE OR REPLACE TEMP TABLE _language AS SELECT * FROM _language_df")
    con.unregister("_language_df")
    con.register("_currency_df", pd.DataFrame(
        {"code": sorted(c.alpha_3 for c in pycountry.currencies)}))
    con.execute("CREATE OR REPLACE TEMP TABLE _currency AS SELECT * FROM _currency_df")
    con.unregister("_currency_df")
    # IANA zones (tzdata) that DuckDB's ICU also knows: `localtime` is a tzdata alias of the
    # machine's own zone, not a place, and DuckDB cannot convert with it.
    icu = {r[0] for r in con.execute("SELECT name FROM pg_timezone_names()").fetchall()}
    zones = sorted(zoneinfo.available_timezones() & icu)
    # A zone's number keys the per-hour offsets (`_tz_hours_*`): a small integer joins faster
    # than a name, which is longer than the 12 bytes DuckDB keeps inline.
    con.register("_tz_df", pd.DataFrame({"name": zones, "id": range(1, len(zones) + 1)}))
    con.execute("CREATE OR REPLACE TEMP TABLE _tz AS SELECT name, id::INTEGER AS id FROM _tz_df")
    con.unregister("_tz_df")
    items = [
        (item, inst.id, s.id, s.min, s.max)
        for item, (inst, s) in surveys.item_index(surveys.load_instruments()).items()
    ]
    con.register("_items_df",
                 pd.DataFrame(items, columns=["item", "instrument", "scale", "lo", "hi"]))
    con.execute("CREATE OR REPLACE TEMP TABLE _items AS SELECT * FROM _items_df")
    con.unregister("_items_df")


def _reader_of(path: Path, fmt: str | None, kind: str | None) -> ModuleType | None:
    """The source reader of a file that is not in the contract's shape (None: a contract file)."""
    if fmt in (None, "auto"):
        mod = sources.detect(path)
    elif fmt == "csv":
        return None
    else:
        mod = sources.by_name(fmt, path)
    if mod is not None and kind and kind != mod.KIND:
        raise RefusedFile(str(path), f"is a {mod.FORMAT} export, which holds {mod.KIND}, not "
                                     f"--kind {kind}")
    return mod


# --wave/--exchange fill the columns an export lacks. A file in the contract's shape carries its
# own wave and exchange_id on every row (or is a kind that has none), so a flag cannot apply to
# it. Given with exports too (`load roster/ zoom.csv --exchange E1`), the flag fills the exports
# and each contract file says, in its notes, that the flag was not applied to it. Given with
# contract files alone, the flag applies to nothing: the user believes something the load would
# not do, so those files are refused, saying so.
_NOT_FOR_CONTRACT_FILES = (
    "{flags}: these fill in what an export (Qualtrics, Zoom, ...) leaves out, but this file is "
    "in the input contract's own shape, whose rows carry their own exchange_id (and wave): load "
    "it without {flags}")
_NOT_APPLIED = ("{flags} not applied to this file: it is in the input contract's own shape, "
                "whose rows carry their own exchange_id (and wave); {flags} filled the exports "
                "of this command only")


def _kind_of(path: Path, kind: str | None, con: duckdb.DuckDBPyConnection) -> str:
    if kind:
        if kind not in schema.CONTRACT_KINDS:
            raise RefusedFile(
                str(path), f"--kind {kind} is not one of {', '.join(schema.LOAD_ORDER)}")
        return kind
    named = readers.detect_kind(path, [], set())
    if named:
        return named
    cols = readers.read_into(con, path, "_peek")
    readers.drop_source(con, "_peek")
    item_ids = set(surveys.item_index(surveys.load_instruments()))
    found = readers.detect_kind(path, cols, item_ids)
    if not found:
        raise RefusedFile(
            str(path),
            "cannot tell what it holds: name it after its kind (e.g. events_2026.csv), pass "
            f"--kind, or give it the contract's columns ({', '.join(schema.LOAD_ORDER)})",
        )
    return found


class _FileLoader:
    """Loads one file into the open next-warehouse connection (inside a transaction)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, kind: str, key: bytes,
                 batch_id: int, source: str, *, replace: bool = False,
                 force: bool = False, reader: ModuleType | None = None,
                 mapping: dict | None = None, fill: dict[str, str] | None = None) -> None:
        self.con, self.path, self.kind, self.key = con, path, kind, key
        self.reader, self.mapping, self.fill = reader, mapping or {}, fill or {}
        self.batch_id, self.source = batch_id, source
        self.replace, self.force = replace, force
        self.table = schema.TABLES[kind]
        self.report = FileReport(str(path), kind, batch_id=batch_id, source=source)
        # What this source brought before: replaced only on request (`--replace`), else kept.
        self.earlier_batches: list[int] = sorted(con.execute(
            "SELECT list(batch_id) FROM load_batches WHERE source = ? AND kind = ? "
            "AND status = 'loaded'", [source, kind]).fetchall()[0][0] or [])
        if self.earlier_batches and not replace:
            self.report.notes.append(
                f"what earlier loads of this source brought (batch"
                f"{'es' if len(self.earlier_batches) > 1 else ''} "
                f"{', '.join(map(str, self.earlier_batches))}) stays; to replace it with this "
                "file, load again with --replace (see it first with --dry-run)")
        self.fields = rules.fields_for(kind, dt.date.today().year)
        # A log is written straight from the staging query, never materialised: it has no
        # window over the file (identical lines are kept) and is by far the largest kind.
        self.direct = kind == "events"

    # -- reading -------------------------------------------------------------------------------
    def read(self) -> list[str]:
        if self.reader is not None:  # an export (Qualtrics, Zoom, ...) reshaped by its reader
            self.report.notes.append(f"read as a {self.reader.FORMAT} export")
            cols = sources.stage(self.con, self.reader, self.path, self.mapping, self.fill,
                                 self.report.notes)
            self._refuse_unfilled(cols)
        else:
            cols = readers.read_into(self.con, self.path, "src", kind=self.kind,
                                     notes=self.report.notes)
        contract = set(self.table.column_names) - {"batch_id"}
        if self.kind in PARTICIPANT_KINDS:
            identifying = sorted(set(cols) & schema.IDENTIFYING_COLUMNS)
            if identifying:
                self.report.notes.append(privacy.mask(
                    f"identifying columns not stored: {', '.join(identifying)}"))
        else:
            identifying = []
        if self.kind == "responses":
            contract -= {"instrument", "item", "value"}
            items = set(surveys.item_index(surveys.load_instruments()))
            self.item_cols = [c for c in cols if c in items]
            if not self.item_cols:
                raise RefusedFile(
                    str(self.path),
                    "no column is an item of a known instrument (surveys/*.yaml); "
                    f"columns are: {', '.join(cols[:12])}{' …' if len(cols) > 12 else ''}",
                )
            unknown = [c for c in cols
                       if c not in contract and c not in items and c not in identifying]
        else:
            unknown = [c for c in cols if c not in contract and c not in identifying]
        missing = [c for c in self.table.required
                   if c not in cols and c not in ("instrument", "item", "value")]
        if missing:
            fillable = [f"--{c.split('_')[0]}" for c in missing if c in ("wave", "exchange_id")]
            raise RefusedFile(
                str(self.path),
                f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"for {self.kind} (found: {', '.join(cols[:12])})"
                + (f": give {' and '.join(fillable)} or put them in the mapping"
                   if fillable and self.reader is not None else ""),
            )
        if unknown:
            # A header row may be data (an e-mail as a column name): notes are masked too.
            self.report.notes.append(
                privacy.mask(f"columns ignored (not in the contract): {', '.join(unknown)}"))
        self.cols = cols
        return cols

    def _refuse_unfilled(self, cols: list[str]) -> None:
        """Refuse an export whose reader found no exchange (or wave) on any row, none given.

        A Zoom, Teams or Moodle report says nothing of the exchange it belongs to, and an xAPI
        or Caliper file may name no course: without --exchange or the mapping's `exchange`
        every row would be rejected for the same reason, so the file is refused whole with
        the remedy instead.
        """
        for col in ("exchange_id", "wave"):
            if col not in cols or col in self.fill:
                continue
            n, given = self.con.execute(
                f'SELECT count(*), count("{col}") FROM src').fetchall()[0]
            if n and not given:
                why = sources.missing(self.reader, col)
                raise RefusedFile(str(self.path),
                                  f"says nothing of the {col.split('_')[0]} of its rows ({why})")

    # -- validating ----------------------------------------------------------------------------
    def _source_sql(self) -> str:
        """The staging source with absent optional columns as NULL; `_ids` for participant kinds."""
        extra = [f'NULL::VARCHAR AS "{f.name}"' for f in self.fields if f.name not in self.cols]
        if self.kind in PARTICIPANT_KINDS:
            # Hash each distinct id once and look it up in the roster once: a log has far more
            # rows than people.
            roster = (
                "LEFT JOIN participants kp ON kp.participant_id = ids._pid "
                "LEFT JOIN institutions ki ON ki.institution_id = kp.institution_id "
                "LEFT JOIN _tz kz ON kz.name = ki.timezone"
                if self.kind != "participants" else "")
            known = ("kp.participant_id, ki.timezone, kz.id AS tz_id" if self.kind != "participants"
                     else "NULL::VARCHAR AS participant_id, NULL::VARCHAR AS timezone, "
                          "NULL::INTEGER AS tz_id")
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE _ids AS SELECT ids._src_id, ids._pid, {known} FROM "
                "(SELECT participant_id AS _src_id, "
                f"{hmac_sql('participant_id', self.key)} AS _pid "
                "FROM (SELECT DISTINCT participant_id FROM src WHERE participant_id IS NOT NULL)) "
                f"ids {roster}"
            )
        if self.kind in rules.LOCAL_TIME:
            col = rules.LOCAL_TIME[self.kind]
            self._tz_hours(col)
            # Parsed once here: the typed value, its check and the offset join all need it.
            parsed = (f'TRY_CAST(src."{col}" AS TIMESTAMP)' if col in self.cols
                      else "NULL::TIMESTAMP")
            extra.append(f'{parsed} AS "_local_{col}"')
        return f"(SELECT src.*{''.join(', ' + e for e in extra)} FROM src)"

    def _tz_hours(self, col: str) -> None:
        """`_tz_hours_<col>`: the offset of each of the file's zones in each local hour it has.

        An hour gets an offset only if `timezone()` gives the same one at its start, middle and
        last microsecond, so rows of an hour in which the offset changes (DST, a zone's new
        rules), and rows outside 1900-2199, fall back to `timezone()` per row: the result is the
        same as converting every row with `timezone()`, at a fraction of the cost. For the same
        reason the hours of a large file may come from a sample of its rows: a row whose hour
        the sample missed is converted by `timezone()` and comes out the same.
        """
        table = f"_tz_hours_{col}"
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} "
                         "(tz_id INTEGER, hour TIMESTAMP, delta_us BIGINT)")
        if col not in self.cols:
            return
        n_rows = self.con.execute("SELECT count(*) FROM src_raw").fetchall()[0][0]
        # 2% of ten million rows still hits every hour that holds more than a few hundred of
        # them, for a quarter of the cost of parsing every row twice.
        sample = " USING SAMPLE 2 PERCENT (bernoulli)" if n_rows > TZ_HOURS_SAMPLE_FROM else ""
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _hours AS SELECT DISTINCT hour FROM (SELECT "
            f'date_trunc(\'hour\', TRY_CAST("{col}" AS TIMESTAMP)) AS hour FROM src_raw{sample}) '
            "WHERE hour >= TIMESTAMP '1900-01-01' AND hour < TIMESTAMP '2200-01-01'")
        zones = "SELECT DISTINCT tz_id, timezone FROM _ids WHERE tz_id IS NOT NULL"
        n_hours, n_zones = self.con.execute(
            f"SELECT (SELECT count(*) FROM _hours), (SELECT count(*) FROM ({zones}))").fetchall()[0]
        if n_hours * n_zones <= TZ_HOURS_MAX:  # else a file of scattered times: per row is cheaper
            delta = "epoch_us(timezone(z.timezone, {t})) - epoch_us({t})"
            at = [f"h.hour + INTERVAL {us} MICROSECOND" for us in (0, 1_800_000_000, 3_599_999_999)]
            self.con.execute(
                f"INSERT INTO {table} SELECT tz_id, hour, d0 FROM (SELECT z.tz_id, h.hour, "
                + ", ".join(f"{delta.format(t=t)} AS d{i}" for i, t in enumerate(at))
                + f" FROM ({zones}) z, _hours h) WHERE d0 = d1 AND d0 = d2")
        self.con.execute("DROP TABLE _hours")

    def _staging_sql(self, source: str, typed: bool = True) -> str:
        """The staging query: `_row`, typed values `t_<field>`, `_bad`, and for bad rows only,
        `_fails`, the list of rules they broke. Without `typed` (the reject pass of events) it
        also leaves out the per-hour offset join, which only typed values use."""
        checks = [(f, c) for f in self.fields for c in f.checks]
        key = (self.table.key if self.kind != "responses"
               else ("participant_id", "exchange_id", "wave"))
        sel = ["s._row"] + [f'{f.typed} AS "t_{f.name}"' for f in self.fields if typed]
        broken = [f"coalesce({c.broken}, false)" for _, c in checks]
        if self.kind != "events":  # a log may hold identical lines; keys replace across files
            part = ", ".join(f"{f.typed}" for k in key for f in self.fields if f.name == k)
            sel.append(f"min(s._row) OVER (PARTITION BY {part}) AS _first")
            broken.append("s._row <> _first")
        # DuckDB lets later select items use earlier aliases: the failure list (strings built
        # only for bad rows) reads `_bad` instead of evaluating the checks a second time.
        sel.append(f"({' OR '.join(broken)}) AS _bad")
        fails = [
            f"CASE WHEN {c.broken} THEN {{'col': '{f.name}', 'rule': '{c.rule}', "
            f"'value': {f.shown or 's.' + chr(34) + f.name + chr(34)}, 'msg': {c.message}}} END"
            for f, c in checks
        ]
        if self.kind != "events":
            keytxt = ", ".join(key)
            shown = next(f.shown for f in self.fields if f.name == key[0])
            fails.append(
                f"CASE WHEN s._row <> _first THEN {{'col': '{key[0]}', 'rule': 'duplicate', "
                f"'value': {shown}, 'msg': 'same {keytxt} as row ' || _first || "
                "'; the first row is kept'} END")
        sel.append(f"CASE WHEN _bad THEN list_filter([{', '.join(fails)}], "
                   "lambda x: x IS NOT NULL) END AS _fails")
        if self.kind == "responses":
            sel += [f's."{c}" AS "i_{c}"' for c in self.item_cols]
        joins = rules.JOINS[self.kind] + (rules.LOCAL_JOINS.get(self.kind, "") if typed else "")
        return f"SELECT {', '.join(sel)} FROM {source} s {joins}"

    def stage(self) -> None:
        """Evaluate every field and check; reject the bad rows (events: see `_insert_direct`)."""
        source = self._source_sql()
        sql = self._staging_sql(source)
        self.report.rows_in = self.con.execute("SELECT count(*) FROM src_raw").fetchall()[0][0]
        if self.direct:
            self.staged = f"({sql})"
            self.rejects_from = f"({self._staging_sql(source, typed=False)})"
            return
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE stage AS {sql}")
        self.staged = self.rejects_from = "stage"
        self._reject()
        self.report.rows_rejected = self.con.execute(
            "SELECT count(*) FROM stage WHERE _bad").fetchall()[0][0]

    def _reject(self) -> None:
        self.con.execute(
            "INSERT INTO rejects SELECT ?, ?, _row, f.col, f.rule, f.value, f.msg "
            f"FROM (SELECT _row, unnest(_fails) AS f FROM {self.rejects_from} WHERE _bad)",
            [self.batch_id, str(self.path)],
        )

    # -- writing -------------------------------------------------------------------------------
    def write(self) -> None:
        """Insert the good rows under this batch, then settle what they take the place of."""
        if self.kind == "responses":
            self._insert_responses()
        elif self.direct:
            self._insert_direct()
        else:
            self.report.rows_accepted = self._insert_good("stage")
        self._settle()

    def _insert_good(self, staged: str) -> int:
        """Insert the typed values of the staged rows that broke no rule, under this batch."""
        names = [f.name for f in self.fields]
        cols = ", ".join(f'"{n}"' for n in names)
        return self.con.execute(
            f'INSERT INTO "{self.table.name}" ({cols}, batch_id) SELECT '
            + ", ".join(f'"t_{n}"' for n in names)
            + f", {self.batch_id} FROM {staged} WHERE NOT _bad").fetchall()[0][0]

    def _insert_direct(self) -> None:
        """Insert the good rows straight from the staging query; reject only if some were left out.

        The rejects are computed (a second pass over the file's rows) only when the insert left
        rows out; the transaction around the file keeps it all-or-nothing.
        """
        self.report.rows_accepted = self._insert_good(self.staged)
        self.report.rows_rejected = self.report.rows_in - self.report.rows_accepted
        if self.report.rows_rejected:
            self._reject()

    def _insert_responses(self) -> None:
        """Unpivot the good rows' item columns; check each answer against its item's range."""
        cols = ", ".join(f'"i_{c}" AS "{c}"' for c in self.item_cols)
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE cells AS "
            "SELECT u.*, it.instrument, it.lo, it.hi, TRY_CAST(u.raw AS DOUBLE) AS value "
            f'FROM (UNPIVOT (SELECT _row, "t_participant_id", "t_exchange_id", "t_wave", '
            f'"t_submitted_at", "t_language", {cols} FROM stage WHERE NOT _bad) '
            f'ON {", ".join(chr(34) + c + chr(34) for c in self.item_cols)} '
            "INTO NAME item VALUE raw) u JOIN _items it USING (item) "
            "WHERE u.raw IS NOT NULL AND upper(u.raw) NOT IN ('NA', 'N/A', '-', '.')"
        )
        for rule, cond, msg in (
            ("number", "value IS NULL",
             "'''' || shown || ''' is not a number (answer to ' || item || ')'"),
            ("range", "value < lo OR value > hi",
             "'''' || shown || ''' is outside the range ' || lo::INTEGER || ' to ' || hi::INTEGER "
             "|| ' of ' || item || ' (instrument ' || instrument || ')'"),
        ):
            self.con.execute(
                # An answer may be anything a person typed: stored and quoted masked.
                f"INSERT INTO rejects SELECT ?, ?, _row, item, ?, shown, {msg} FROM (SELECT *, "
                f"{privacy.mask_sql('raw')} AS shown FROM cells WHERE {cond})",
                [self.batch_id, str(self.path), rule],
            )
        self.con.execute(
            "INSERT INTO responses (participant_id, exchange_id, wave, instrument, item, value, "
            "submitted_at, batch_id, language) SELECT "
            '"t_participant_id", "t_exchange_id", "t_wave", instrument, item, value, '
            f'"t_submitted_at", {self.batch_id}, "t_language" '
            "FROM cells WHERE value IS NOT NULL AND value BETWEEN lo AND hi")
        n_cells_bad, rows_ok = self.con.execute(
            "SELECT (SELECT count(*) FROM cells "
            "WHERE value IS NULL OR value NOT BETWEEN lo AND hi),"
            " (SELECT count(DISTINCT _row) FROM cells WHERE value BETWEEN lo AND hi)").fetchall()[0]
        self.report.rows_accepted = rows_ok
        if n_cells_bad:
            self.report.notes.append(
                f"{n_cells_bad:,} answers refused (number/range) in rows that otherwise loaded")

    def _settle(self) -> None:
        """Retire the rows the new ones take the place of, count the difference, guard a replace.

        Two kinds of earlier rows go: those with the natural key of a new row, from any source
        (a corrected row replaces the old one; nothing is lost, it is "changed" or "unchanged"),
        and, only when the user asked for `--replace`, every row the same source's earlier
        loads contributed (what the new version no longer holds is "removed"). A replace that
        would empty the source, or remove more than half of its rows, is refused without
        `--force`. Runs inside the file's transaction: a refusal rolls everything back.
        """
        t, batch, rep = self.table.name, self.batch_id, self.report
        key = self.table.key
        names = [c for c in self.table.column_names if c != "batch_id"]
        match = " AND ".join(f'g."{k}" IS NOT DISTINCT FROM n."{k}"' for k in key)
        same = " AND ".join(f'g."{c}" IS NOT DISTINCT FROM n."{c}"' for c in names)
        new_rows = f'(SELECT * FROM "{t}" WHERE batch_id = {batch})'
        earlier = self.earlier_batches if self.replace else []
        source_rows = (self.con.execute(
            f'SELECT count(*) FROM "{t}" WHERE batch_id IN ({", ".join(map(str, earlier))})'
        ).fetchall()[0][0] if earlier else 0)
        conds = []
        if earlier:
            conds.append(f'old.batch_id IN ({", ".join(map(str, earlier))})')
        if self.con.execute(f'SELECT 1 FROM "{t}" WHERE batch_id IS DISTINCT FROM {batch} '
                            "LIMIT 1").fetchall():
            conds.append(f"EXISTS (SELECT 1 FROM {new_rows} n WHERE "
                         + match.replace("g.", "old.") + ")")
        rep.rows_added = rep.rows_accepted if t != "responses" else self._answers_in()
        if conds:
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE _gone AS SELECT old.rowid AS _rid, "
                + ", ".join(f'old."{c}"' for c in names) + f', old.batch_id FROM "{t}" old '
                f"WHERE old.batch_id IS DISTINCT FROM {batch} AND ({' OR '.join(conds)})")
            n_gone = self.con.execute("SELECT count(*) FROM _gone").fetchall()[0][0]
            if n_gone:
                self.con.execute(f'DELETE FROM "{t}" WHERE rowid IN (SELECT _rid FROM _gone)')
                rep.rows_replaced = n_gone
                rep.rows_unchanged, rep.rows_added, rep.rows_removed = self.con.execute(
                    f"SELECT (SELECT count(*) FROM {new_rows} n WHERE EXISTS "
                    f"(SELECT 1 FROM _gone g WHERE {same})), "
                    f"(SELECT count(*) FROM {new_rows} n WHERE NOT EXISTS "
                    f"(SELECT 1 FROM _gone g WHERE {match})), "
                    f"(SELECT count(*) FROM _gone g WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {new_rows} n WHERE {match}))").fetchall()[0]
                rep.rows_changed = (self._answers_in() if t == "responses" else rep.rows_accepted
                                    ) - rep.rows_added - rep.rows_unchanged
            self.con.execute("DROP TABLE _gone")
        if self.replace:
            self._guard_replace(source_rows)

    def _answers_in(self) -> int:
        return self.con.execute(
            f"SELECT count(*) FROM responses WHERE batch_id = {self.batch_id}").fetchall()[0][0]

    def _guard_replace(self, source_rows: int) -> None:
        rep = self.report
        if not self.earlier_batches:
            rep.notes.append(f"--replace: no earlier load of source {self.source} to replace; "
                             "loaded as a new source")
            return
        plural = "es" if len(self.earlier_batches) > 1 else ""
        what = (f"replacing source {self.source} (batch{plural}"
                f" {', '.join(map(str, self.earlier_batches))}, {source_rows:,} "
                f"{'answers' if self.kind == 'responses' else 'rows'} now)")
        problem = ""
        if rep.rows_in == 0:
            problem = f"the file has no data rows; {what} would remove all of them"
        elif rep.rows_accepted == 0:
            problem = f"every row of the file was rejected; {what} would remove all of them"
        elif rep.rows_removed * 2 > source_rows:
            problem = (f"{what} would remove {rep.rows_removed:,} of them, more than half")
        if not problem:
            return
        if self.force:
            rep.notes.append(f"--force: {problem}")
            return
        self.summarise_rejects()
        raise RefusedFile(str(self.path), f"{problem}; nothing was changed. Check the file, look "
                          "with --dry-run, and add --force if that is what you want")

    def _pseudonymise_known_ids(self) -> None:
        """Show a rejected value that is a known participant's id as its pseudonym.

        A file with swapped headers puts participant ids under another column (`exchange_id`),
        where they are rejected as unknown references; the mask cannot tell an id from other
        text, the roster can. Only this batch's reference rejects are looked at (a number out of
        range that happens to equal a numeric id is not one), once per distinct value.
        """
        self.con.execute(
            "UPDATE rejects SET value = k.pid, message = replace(message, "
            "'''' || k.v || '''', 'a participant''s id (pseudonym ' || k.pid || ')') "
            f"FROM (SELECT v, {hmac_sql('v', self.key)} AS pid FROM (SELECT DISTINCT value AS v "
            "FROM rejects WHERE batch_id = $b AND rule = 'reference' AND value IS NOT NULL)) k "
            "SEMI JOIN participants p ON p.participant_id = k.pid "
            "WHERE rejects.batch_id = $b AND rejects.rule = 'reference' AND rejects.value = k.v",
            {"b": self.batch_id})

    def summarise_rejects(self) -> None:
        self._pseudonymise_known_ids()
        for rule, n in self.con.execute(
            "SELECT rule, count(*) FROM rejects WHERE batch_id = ? GROUP BY rule ORDER BY 2 DESC",
            [self.batch_id]).fetchall():
            self.report.rejects_by_rule[rule] = n
        for row, col, rule, msg in self.con.execute(
            "SELECT row_number, column_name, rule, message FROM rejects WHERE batch_id = ? "
            "ORDER BY row_number LIMIT 5", [self.batch_id]).fetchall():
            self.report.first_rejects.append(
                f"{self.path}: row {row}, column {col}: {rule}: {msg}")

    def cleanup(self) -> None:
        readers.drop_source(self.con, "src")
        for t in ("stage", "cells", "_gone", "_ids", "_hours",
                  *(f"_tz_hours_{c}" for c in rules.LOCAL_TIME.values())):
            self.con.execute(f"DROP TABLE IF EXISTS {t}")


def _record(con: duckdb.DuckDBPyConnection, rep: FileReport, sha: str | None,
            started: dt.datetime) -> None:
    values = {
        "batch_id": rep.batch_id, "file": rep.file, "source_name": Path(rep.file).name,
        "source": rep.source or None, "blake3": sha, "kind": rep.kind, "rows_in": rep.rows_in,
        "rows_accepted": rep.rows_accepted, "rows_rejected": rep.rows_rejected,
        "rows_replaced": rep.rows_replaced, "rows_added": rep.rows_added,
        "rows_changed": rep.rows_changed, "rows_removed": rep.rows_removed,
        "rows_unchanged": rep.rows_unchanged, "started_at": started, "status": rep.status,
        "message": "; ".join(([rep.problem] if rep.problem else []) + rep.notes),
    }
    con.execute(
        f"INSERT INTO load_batches ({', '.join(values)}, finished_at, data_version) "
        f"VALUES ({', '.join('?' * len(values))}, now(), "
        "(SELECT value::INTEGER FROM meta WHERE key = 'data_version'))", list(values.values()))


def source_of(path: Path, named: str | None = None) -> str:
    """The source a file's rows belong to: the name the user gave, else its absolute path.

    Two files with the same name from two folders are two sources; a file moved to another
    folder is a new source unless the user names it (`--source`).
    """
    return named if named else str(Path(path).resolve())


def load_paths(
    paths: list[Path | str],
    warehouse: Path | str = DEFAULT_WAREHOUSE,
    *,
    kind: str | None = None,
    source: str | None = None,
    replace: bool = False,
    force: bool = False,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    lock_timeout: float = 600.0,
    on_wait: Callable[[], None] | None = None,
    fmt: str | None = None,
    mapping: dict | None = None,
    wave: str | None = None,
    exchange: str | None = None,
    derive: bool = True,
    before_write: Callable[[duckdb.DuckDBPyConnection, _FileLoader],
                           Callable[[], None] | None] | None = None,
    key_for: Path | None = None,
) -> list[FileReport]:
    """Load files and folders; return one report per file. Raises `EtlError` for what stops all.

    Files of a folder load in dependency order (clusters → institutions → exchanges →
    partnerships → participants → events → responses; rates, which need nothing, last).
    `progress(msg)` is called at each step.

    A load adds; it never removes what an earlier load brought, except that a row with the
    natural key of a new row is replaced by it. With `replace`, each file also takes the place
    of what its source's earlier loads contributed (refused when that empties the source or
    removes more than half of it, unless `force`). `source` names the source of a single file
    (default: its absolute path). `dry_run` does everything but the swap: the reports say what
    would be added, changed and removed, and the live warehouse is not touched.

    A file that is not in the contract's shape is read by the source reader that recognises it
    (`etl.sources`), or the one `fmt` names (`csv`: the contract reader only), with `mapping`
    (a program's mapping YAML as a dict); `wave` and `exchange` fill those columns where the
    file has none. Everything after reading is the same for every format.

    A load finishes its own work: before the swap it runs the derive step
    (`analytics.derive.materialise.refresh`: result tables, day facts, rollups) on the next file,
    so the new data version goes live with its derived tables. If that step fails, whatever the
    reason, the load raises `DeriveFailed` and the live warehouse stays as it was.

    For a lake (`etl.lake`, which loads through a private staging file): `derive=False` skips the
    derive step; `before_write(con, loader)` runs inside each file's transaction, after its rows
    are validated and before they are written (the lake brings in the stored rows they may
    replace), and may return what to undo if the file's transaction is rolled back; `key_for`
    is the path whose pseudonymisation key to use instead of the warehouse's.
    """
    warehouse = Path(warehouse)
    files = readers.expand_paths([Path(p) for p in paths])
    if not files:
        raise EtlError(f"nothing to load in {', '.join(map(str, paths))} (looked for "
                       f"{', '.join(sorted(readers.SUFFIXES))} files)")
    if source and len(files) > 1:
        raise EtlError(f"--source names the source of one file, but {len(files)} were given "
                       f"({', '.join(f.name for f in files[:4])}{' …' if len(files) > 4 else ''})")
    key = resolve_key(key_for or warehouse)
    say = progress or (lambda _m: None)
    reports: list[FileReport] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashes = {f: pool.submit(file_hash, f) for f in files}
        with build_next(warehouse, lock_timeout=lock_timeout, on_wait=on_wait) as con:
            check_key(con, key, warehouse)
            if con.execute("SELECT 1 FROM meta WHERE key = ?",
                           [schema.META_EVENTS_IN_LAKE]).fetchall():
                # Its events stay in a lake: the derive would count only this load's events.
                raise EtlError(f"{warehouse}: a serving warehouse built from a lake ('python -m "
                               "analytics serve'); load into the lake with --lake, derive and "
                               "serve again")
            privacy.mask_stored_personal_data(con)
            _prepare_lookups(con)
            kinds: dict[Path, str] = {}
            reader_of: dict[Path, ModuleType | None] = {}
            fill = sources.fill_values(mapping or {}, wave, exchange)
            if fmt in (None, "auto") and (mapping or {}).get("format"):
                fmt = str((mapping or {})["format"])  # the mapping names its export's format
            for f in files:
                try:
                    reader_of[f] = _reader_of(f, fmt, kind)
                except RefusedFile as e:
                    reports.append(FileReport(str(f), None, "refused", problem=e.problem,
                                              source=source_of(f, source)))
            flags = " and ".join(x for x, v in (("--wave", wave), ("--exchange", exchange)) if v)
            exports = any(m is not None for m in reader_of.values())
            for f, mod in reader_of.items():
                try:
                    if mod is None and flags and not exports:
                        raise RefusedFile(str(f), _NOT_FOR_CONTRACT_FILES.format(flags=flags))
                    kinds[f] = mod.KIND if mod is not None else _kind_of(f, kind, con)
                except RefusedFile as e:
                    reports.append(FileReport(str(f), None, "refused", problem=e.problem,
                                              source=source_of(f, source)))
            order = sorted(kinds, key=lambda f: (schema.LOAD_ORDER.index(kinds[f]), str(f)))
            changed = False
            for f in order:
                started = dt.datetime.now(dt.UTC)
                mod = reader_of[f]

                def content(f: Path = f, mod: ModuleType | None = mod, legacy: bool = False
                            ) -> str:
                    sha = sha256_file(f) if legacy else hashes[f].result()
                    if mod is None:
                        return sha
                    # What an export loads depends on its mapping too: the same file read with
                    # another mapping or --wave is another content.
                    return hashlib.sha256(repr((sha, mod.FORMAT, sorted(
                        (mapping or {}).items(), key=str), sorted(fill.items()))).encode()
                    ).hexdigest()

                src = source_of(f, source)
                # Content already loaded is skipped, but only a source that loaded this kind
                # before can hold it: a first load reads at once while the hash goes on beside
                # it (a large file's hash took as long as the loader's setup and more), and
                # waits for it only to record the batch.
                # Batches from before the blake3 column hold SHA-256 only: a source with such
                # a batch of this kind is also checked by SHA-256 (computed then, and only then).
                sha = None
                loaded, legacy = con.execute(
                    "SELECT count(*), count(*) FILTER (WHERE blake3 IS NULL) FROM load_batches "
                    "WHERE kind = ? AND source = ? AND status = 'loaded'",
                    [kinds[f], src]).fetchall()[0]
                if loaded:
                    sha = content()
                old_sha = content(legacy=True) if legacy else None
                prior = [] if sha is None else con.execute(
                    "SELECT batch_id, file FROM load_batches WHERE kind = ? AND source = ? "
                    "AND status = 'loaded' AND (blake3 = ? OR (blake3 IS NULL AND sha256 = ?)) "
                    "ORDER BY batch_id DESC LIMIT 1",
                    [kinds[f], src, sha, old_sha]).fetchall()
                if prior:
                    same = f"same content already loaded as batch {prior[0][0]}"
                    reports.append(FileReport(str(f), kinds[f], "unchanged", notes=[same]))
                    say(f"{f.name}: unchanged")
                    continue
                batch_id = con.execute(
                    "SELECT coalesce(max(batch_id), 0) + 1 FROM load_batches").fetchall()[0][0]
                fl = _FileLoader(con, f, kinds[f], key, batch_id, src, replace=replace,
                                 force=force, reader=reader_of[f], mapping=mapping, fill=fill)
                if mod is None and flags:
                    fl.report.notes.append(_NOT_APPLIED.format(flags=flags))
                try:
                    # Read before the transaction: rows a transaction adds get provisional rowids
                    # (from 2**55), and rowid is how a row's number in the file is known.
                    say(f"{f.name}: reading")
                    fl.read()
                    phases.reached("read")
                except RefusedFile as e:
                    fl.cleanup()
                    fl.report.status, fl.report.problem = "refused", e.problem
                    _record(con, fl.report, sha or content(), started)
                    reports.append(fl.report)
                    changed = True
                    continue
                con.execute("BEGIN TRANSACTION")
                undo = None
                try:
                    say(f"{f.name}: validating")
                    fl.stage()
                    if before_write is not None:
                        undo = before_write(con, fl)
                    say(f"{f.name}: writing")
                    fl.write()
                    fl.summarise_rejects()
                    fl.report.status = "loaded"
                    sha = sha or content()
                    _record(con, fl.report, sha, started)
                    con.execute("COMMIT")
                    phases.reached("insert")
                except RefusedFile as e:
                    con.execute("ROLLBACK")
                    if undo is not None:
                        undo()
                    fl.report.refuse(e.problem)
                    _record(con, fl.report, sha or content(), started)
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                finally:
                    fl.cleanup()
                reports.append(fl.report)
                changed = True
            for r in reports:
                if r.status == "refused" and r.batch_id is None:
                    r.batch_id = con.execute(
                        "SELECT coalesce(max(batch_id), 0) + 1 FROM load_batches").fetchall()[0][0]
                    _record(con, r, None, dt.datetime.now(dt.UTC))
                    changed = True
            if not changed or dry_run:
                raise NoChange
            # The canonical tables this load changed: the derive keeps what reads none of them.
            touched = {r.kind for r in reports if r.status == "loaded" and r.kind}
            # Events only added (a row replaced had the new row's key: same person, same day):
            # the dashboard tables follow from what those batches touch.
            ev = [r for r in reports if r.status == "loaded" and r.kind == schema.EVENTS.name]
            appended = ([r.batch_id for r in ev] if all(r.rows_removed == 0 for r in ev)
                        else None)
            if derive:
                _derive(con, warehouse, say, touched, appended)
            phases.reached("derive")
    return reports


def _derive(con: duckdb.DuckDBPyConnection, warehouse: Path, say: Callable[[str], None],
            changed: set[str] | None = None, appended_events: list[int] | None = None) -> None:
    """Run the derive step on the next file: the result and dashboard tables of its version;
    `changed` names the canonical tables the load changed, `appended_events` the batches of
    events it only added (see `materialise.refresh`).

    Any failure (an import, a computation, a write) stops the load before the swap: a data
    version never goes live without its derived tables. Interrupts pass through as they are.
    """
    if phases.derive_skipped():  # a test hook, never set outside tests (etl.phases)
        return
    live = data_version(con) - 1  # the next file is one version ahead of the live one
    say("computing result tables")
    try:
        from analytics.derive.materialise import refresh

        refresh(con, changed=changed, appended_events=appended_events)
    except Exception as e:
        if damaged(warehouse, e) is not None:
            raise  # a damaged copy of the warehouse: `build_next` says so in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        fix = out_of_memory(e) or "fix the cause and load again"
        raise DeriveFailed(
            f"{warehouse}: the load was not applied: computing the result and dashboard tables "
            f"failed ({type(e).__name__}{': ' + first if first else ''}); the warehouse was left "
            f"as it was (data version {live}). To go on: {fix}; "
            "'python -m analytics refresh' rebuilds the tables of the live version") from e
