"""Researcher exports of the result tables: CSV, XLSX or Parquet, with a codebook.

Reads the warehouse through a connection passed in (read-only is enough) and returns bytes, so
that the CLI (`python -m analytics export`) and the dashboard's Data page (`export_table`) make
byte-for-byte the same files.

Where the numbers come from: the `res_*` tables stored in the warehouse by the load
(`analytics.derive.materialise.refresh`), when they belong to the warehouse's current data version
and were suppressed with the threshold asked for. Otherwise — stored results missing or stale, or
another `min_cell` (e.g. 0 for unsuppressed output) for a table that k changes (all but the
row-level scale scores) — they are computed for this export only, from the same warehouse
version, without writing anything; `Export.note` says so.

Scope (issue 14): an account limited to some programs or clusters gets the same tables computed
from its scope's participants and exchanges only (`Scope`, `scoped`: the raw tables are shadowed
by temporary copies restricted to the scope on the export's connection, so the one computation,
`analytics.derive.materialise.compute_results`, runs unchanged); a funder's counts are rounded
(`round_to`, by `analytics.read.rounding.apply`, the pages' rule).

Provenance: every exported row carries `data_version` and `generated_at` (UTC time the numbers
were computed). XLSX files repeat them with the method and the suppression threshold in an
"about" sheet; Parquet files in the schema's key-value metadata (keys `exchange_impact.*`).

Spreadsheet safety: CSV is UTF-8 with a byte-order mark (Excel then reads non-Latin names
correctly). A text cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
prefixed with a single quote in CSV and XLSX (OWASP "CSV injection"); numeric columns are never
touched, so a negative difference stays a number. XLSX cells are written as typed cells with
formula and URL detection off.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analytics import suppression
from analytics.derive import materialise, rollups
from analytics.outputs import codebook
from etl import schema
from etl.warehouse import data_version

__all__ = [
    "FORMATS",
    "TABLES",
    "BY_TABLES",
    "ROW_LEVEL_TABLES",
    "DANGEROUS_PREFIXES",
    "ExportError",
    "Export",
    "Scope",
    "scoped",
    "audience",
    "neutralise",
    "neutralise_frame",
    "to_csv_bytes",
    "to_xlsx_bytes",
    "to_parquet_bytes",
    "build_export",
    "export_table",
    "export_all",
]

FORMATS = ("csv", "xlsx", "parquet")
TABLES: tuple[str, ...] = tuple(codebook.EXPORT_TABLES)
# Tables --by applies to: the grouped aggregates (rows of one grouping) and the row-level scores
# (the group's column is added to every row).
BY_TABLES = ("prepost", "attrition", "scale_scores")
# Tables with one row per participant (pseudonymised): the "rowlevel" capability of issue 14's
# roles (the Data page and the CLI ask for it; every all-tables bundle holds them too).
ROW_LEVEL_TABLES: tuple[str, ...] = ("scale_scores",)
DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit, less the header row


# Tables that hold, per grouping, one row per group beside the "overall" row (their total):
# the count the small-cell rule reads and the columns that pick one set of groups with its
# total. `suppression.protect_blanked` blanks a complement so that no suppressed group is the
# total minus the groups shown.
TOTALLED: dict[str, tuple[str, tuple[str, ...]]] = {
    "prepost": ("n", ("instrument", "scale")),
    "attrition": ("n_invited", ("wave",)),
    "reliability_groups": ("n", ("instrument", "scale", "wave")),
    "persistence": ("n", ("subject", "unit")),
    "reciprocity_shares": ("n_participants", ("instrument", "scale")),
    "cost": ("n_participants", ("currency",)),
}


def protect_totals(df: pd.DataFrame, table: str, k: int) -> pd.DataFrame:
    """Secondary suppression of a result table beside its "overall" rows (`TOTALLED`): in each
    grouping whose total is shown, a group with a suppressed neighbour and no other hidden one
    is blanked too ('complementary'). Other tables, and k of 0 or 1, are returned as they are."""
    spec = TOTALLED.get(table)
    if spec is None or k <= 1 or not len(df) or "group_by" not in df.columns:
        return df
    n, keys = spec
    keys = tuple(c for c in keys if c in df.columns)
    why = df["suppressed"].astype("string").fillna("")
    flag = (why != "") & ~why.str.startswith("not suppressed")  # a researcher's marks only
    by = df["group_by"].astype("string")
    key = df[list(keys)].astype("string").fillna("\x00").agg("\x1f".join, axis=1) if keys \
        else pd.Series("", index=df.index)
    shown_totals = set(key[(by == "overall") & ~flag])
    rows = (by != "overall") & key.isin(shown_totals)
    if not (rows & flag).any():
        return df
    part = suppression.protect_blanked(df[rows], n=n, k=k, lines=[*keys, "group_by"])
    new = part.index[(part["suppressed"].astype("string") == suppression.SECONDARY)
                     .fillna(False).to_numpy(bool)]
    out = df.copy()
    for c in out.columns:
        gone = part.loc[new, c].isna() & out.loc[new, c].notna()
        if c == "suppressed" or not gone.any():
            continue
        if pd.api.types.is_bool_dtype(out[c].dtype):
            out[c] = out[c].astype("boolean")
        elif pd.api.types.is_integer_dtype(out[c].dtype):
            out[c] = out[c].astype("Int64")
        out.loc[gone[gone].index, c] = (np.nan if pd.api.types.is_float_dtype(out[c].dtype)
                                        else pd.NA)
    out.loc[new, "suppressed"] = suppression.SECONDARY
    return out


class ExportError(Exception):
    """A request the export cannot honour; the message says what to do instead."""


@dataclass(frozen=True)
class Export:
    """One exported file: its suggested name, its bytes and where the numbers came from."""

    filename: str
    data: bytes
    table: str
    fmt: str
    rows: int
    data_version: int
    generated_at: str
    min_cell: int
    note: str | None = None  # set when the results were computed for this export only


@dataclass(frozen=True)
class Scope:
    """The programs and clusters an account is limited to (`etl.accounts.Account`); both limits
    apply together, as in the dashboard's filters (`pages._access.scope_filters`): the
    participants of the clusters' institutions, in the programs' exchanges."""

    programs: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("programs", "clusters"):
            vals = getattr(self, name)
            if isinstance(vals, str) or not all(isinstance(v, str) and v for v in vals):
                raise ExportError(f"a scope's {name} are a list of ids, got {vals!r}")
            object.__setattr__(self, name, tuple(sorted(set(vals))))

    @property
    def whole(self) -> bool:
        """No limit: every program."""
        return not self.programs and not self.clusters

    def key(self) -> str:
        """A short name for the scope, safe in a folder name: 's' and 16 hex digits of a hash of
        its ids (the ids themselves may be any text)."""
        text = json.dumps([self.programs, self.clusters], ensure_ascii=False)
        return "s" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def describe(self) -> str:
        parts = [f"{label} {', '.join(vals)}" for label, vals in
                 (("programs", self.programs), ("clusters", self.clusters)) if vals]
        return "; ".join(parts) or "every program"


def audience(account: object | None) -> tuple[Scope | None, int | None]:
    """Whom an export is for, from the account asking (`etl.accounts.Account`, or None: no
    account): its scope (None: every program) and the rounding base of its counts (a role with
    the "rounded" capability, funders; None: exact). The Data page's downloads and
    `python -m analytics export --user NAME` both ask this."""
    if account is None:
        return None, None
    from etl import accounts

    programs, clusters = getattr(account, "programs", ()), getattr(account, "clusters", ())
    scope = Scope(tuple(programs), tuple(clusters)) if programs or clusters else None
    rounded = accounts.can(getattr(account, "role", None), "rounded")
    return scope, (suppression.ROUND_TO if rounded else None)


# The raw tables a computation reads, shadowed in `scoped` (rates, the load log and the stored
# results are not: the rates are no one's data, and the stored results are never read for a
# scope).
_SHADOWED = (schema.EXCHANGES, schema.PARTICIPANTS, schema.EVENTS, schema.RESPONSES,
             schema.PARTNERSHIPS, schema.INSTITUTIONS, schema.CLUSTERS)


@contextlib.contextmanager
def scoped(con: duckdb.DuckDBPyConnection, scope: Scope | None
           ) -> Iterator[duckdb.DuckDBPyConnection]:
    """Within the block, `con` reads the raw tables of `scope` only: temporary tables of the
    same names (temporary tables come first in DuckDB's search path, and belong to this
    connection alone) hold the scope's exchanges (their program), participants (their home
    institution's cluster; with programs, those active or answering in the programs'
    exchanges), their events and answers in those exchanges, the partnerships of those
    exchanges (with clusters: those with a side in them), and the institutions and clusters
    these name. A whole scope (or None) changes nothing. Works on a read-only connection."""
    if scope is None or scope.whole:
        yield con
        return
    lake = rollups.events_in_lake(con)
    if lake is not None:
        # Its `events` table is empty by design: a scope's facts made from it would count none.
        raise ExportError(f"an export for {scope.describe()} is computed from the event log, "
                          f"which this serving warehouse does not hold: the events are in the "
                          f"lake at {lake}; export for every program instead")
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    src = {t.name: f'"{db.replace(chr(34), chr(34) * 2)}".main."{t.name}"' for t in _SHADOWED}
    tmp = {t.name: f'temp.main."{t.name}"' for t in _SHADOWED}
    x, p, e, r, pt, i, c = (schema.EXCHANGES.name, schema.PARTICIPANTS.name, schema.EVENTS.name,
                            schema.RESPONSES.name, schema.PARTNERSHIPS.name,
                            schema.INSTITUTIONS.name, schema.CLUSTERS.name)
    params = {"programs": list(scope.programs), "clusters": list(scope.clusters)}
    in_programs = "list_contains($programs, x.program)" if scope.programs else "TRUE"
    in_clusters = "list_contains($clusters, i.cluster_id)" if scope.clusters else "TRUE"
    seen = (f"SELECT participant_id, exchange_id FROM {src[e]} UNION "
            f"SELECT participant_id, exchange_id FROM {src[r]}")
    home = f"SELECT institution_id FROM {src[i]} i WHERE {in_clusters}"
    active = (f"AND p.participant_id IN (SELECT participant_id FROM ({seen}) "
              f"WHERE exchange_id IN (SELECT exchange_id FROM _ei_scope_x))"
              if scope.programs else "")
    steps = [
        ("_ei_scope_x", f"SELECT * FROM {src[x]} x WHERE {in_programs}"),
        (p, f"SELECT p.* FROM {src[p]} p WHERE p.institution_id IN ({home}) {active}"),
        (e, f"SELECT * FROM {src[e]} WHERE participant_id IN (SELECT participant_id FROM {tmp[p]})"
            " AND exchange_id IN (SELECT exchange_id FROM _ei_scope_x)"),
        (r, f"SELECT * FROM {src[r]} WHERE participant_id IN (SELECT participant_id FROM {tmp[p]})"
            " AND exchange_id IN (SELECT exchange_id FROM _ei_scope_x)"),
        # with clusters, the exchanges their participants took part in (or that the clusters run)
        (x, "SELECT x.* FROM _ei_scope_x x WHERE "
            + ("list_contains($clusters, x.cluster_id) OR x.exchange_id IN ("
               f"SELECT exchange_id FROM {tmp[e]} UNION SELECT exchange_id FROM {tmp[r]})"
               if scope.clusters else "TRUE")),
        (pt, f"SELECT * FROM {src[pt]} WHERE exchange_id IN (SELECT exchange_id FROM {tmp[x]})"
             + (f" AND (institution_a IN ({home}) OR institution_b IN ({home}))"
                if scope.clusters else "")),
        (i, f"SELECT * FROM {src[i]} WHERE institution_id IN ("
            f"SELECT institution_id FROM {tmp[p]} UNION SELECT institution_a FROM {tmp[pt]} "
            f"UNION SELECT institution_b FROM {tmp[pt]})"),
        (c, f"SELECT * FROM {src[c]} WHERE cluster_id IN (SELECT cluster_id FROM {tmp[i]} "
            f"UNION SELECT cluster_id FROM {tmp[x]})"),
    ]
    made: list[str] = []
    try:
        for name, sql in steps:
            used = {k: v for k, v in params.items() if f"${k}" in sql}
            con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {sql}', used)
            made.append(name)
        # The result tables read the participation log through its day facts: the scope's,
        # made from the tables above, not the stored ones of every program.
        with rollups.temporary_facts(con):
            yield con
    finally:
        for name in reversed(made):
            con.execute(f'DROP TABLE IF EXISTS temp.main."{name}"')


# ---------------------------------------------------------------------------------------------
# Cell-level safety and typing
# ---------------------------------------------------------------------------------------------

def neutralise(value: str) -> str:
    """Prefix a text that a spreadsheet would run as a formula with a single quote (OWASP)."""
    return "'" + value if value[:1] in DANGEROUS_PREFIXES else value


def _is_text(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s.dtype) or s.dtype == object


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with every text column's cells neutralised; numeric and boolean columns as is."""
    out = df.copy()
    for c in out.columns:
        if _is_text(out[c]):
            s = out[c].astype("string")
            out[c] = s.where(~s.str[:1].isin(DANGEROUS_PREFIXES), "'" + s)
    return out


_PANDAS_TYPES = {"VARCHAR": "string", "DOUBLE": "float64", "INTEGER": "Int64",
                 "BIGINT": "Int64", "BOOLEAN": "boolean"}


def _typed(df: pd.DataFrame, columns: Sequence[schema.Column]) -> pd.DataFrame:
    """The columns in export order with the export's dtypes (nullable ints and booleans, so that
    a suppressed count is an empty cell, not 'nan' or '12.0')."""
    out = {}
    for c in columns:
        s = df[c.name] if c.name in df.columns else pd.Series(pd.NA, index=df.index)
        kind = _PANDAS_TYPES.get(c.sql_type.upper(), "string")
        if kind == "float64":
            s = pd.to_numeric(s, errors="coerce").astype("float64")
        elif kind == "Int64":
            s = pd.to_numeric(s, errors="coerce").round().astype("Int64")
        elif kind == "boolean":
            s = s.astype("boolean")
        else:
            s = s.astype("string")
        out[c.name] = s
    return pd.DataFrame(out, index=df.index).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------

def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """RFC 4180 CSV (CRLF), UTF-8 with a byte-order mark, text cells neutralised, NULL = empty."""
    buf = io.StringIO()
    neutralise_frame(df).to_csv(buf, index=False, lineterminator="\r\n", na_rep="")
    return buf.getvalue().encode("utf-8-sig")


def _about_rows(about: dict[str, object]) -> list[tuple[str, str]]:
    return [(k, "" if v is None else str(v)) for k, v in about.items()]


def to_xlsx_bytes(df: pd.DataFrame, *, sheet: str = "data",
                  about: dict[str, object] | None = None) -> bytes:
    """XLSX with the table in `sheet` and, when given, an "about" sheet of key/value rows.

    Cells are typed (numbers as numbers, booleans as booleans, NULL as a blank cell); text cells
    are neutralised and formula/URL detection is off, so no cell is ever a formula.
    """
    import xlsxwriter  # imported here: only XLSX exports need it

    if len(df) > XLSX_MAX_ROWS:
        raise ExportError(f"{len(df):,} rows do not fit an XLSX sheet ({XLSX_MAX_ROWS:,} at most); "
                          "use --format csv or --format parquet")
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True,
                                   "strings_to_formulas": False, "strings_to_urls": False,
                                   "strings_to_numbers": False, "nan_inf_to_errors": False})
    bold = wb.add_format({"bold": True})
    ws = wb.add_worksheet(sheet[:31])
    for j, name in enumerate(df.columns):
        ws.write_string(0, j, str(name), bold)
    safe = neutralise_frame(df)
    writers = [(getattr(ws, _XLSX_WRITE[kind]), j, vals) for j, (kind, vals) in
               enumerate(_xlsx_cells(safe[c]) for c in safe.columns)]
    # A NULL is a blank cell. Nearly all the time is xlsxwriter's own per-cell work (~7 µs a
    # cell: 12 s for the 1.7 M cells of the 10,000-person demo's scale scores; its
    # constant_memory mode is no faster and drops shared strings), which is why the Data page
    # builds each file once per data version, off the request (analytics.outputs.downloads).
    for i in range(len(safe)):
        row = i + 1
        for write, j, vals in writers:
            v = vals[i]
            if v is not None:
                write(row, j, v)
    ws.freeze_panes(1, 0)
    if about is not None:
        wa = wb.add_worksheet("about")
        wa.write_string(0, 0, "key", bold)
        wa.write_string(0, 1, "value", bold)
        for i, (k, v) in enumerate(_about_rows(about), start=1):
            wa.write_string(i, 0, neutralise(k))
            wa.write_string(i, 1, neutralise(v))
        wa.set_column(0, 0, 18)
        wa.set_column(1, 1, 100)
    wb.close()
    return buf.getvalue()


_XLSX_WRITE = {"bool": "write_boolean", "number": "write_number", "text": "write_string"}


def _xlsx_cells(s: pd.Series) -> tuple[str, list[object]]:
    """A column as (kind, Python values with None for NULL): booleans, numbers (whole numbers
    of an integer column as int, so Excel shows 12 and not 12.0) or text."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return "bool", [None if pd.isna(v) else bool(v) for v in s]
    if pd.api.types.is_numeric_dtype(s.dtype):
        vals = s.astype("float64").to_numpy(na_value=np.nan)
        finite = np.isfinite(vals)
        as_int = (not pd.api.types.is_float_dtype(s.dtype)) & finite & (np.abs(vals) < 2**53)
        as_int &= np.equal(np.mod(vals, 1, where=finite, out=np.zeros_like(vals)), 0)
        return "number", [None if not f else (int(v) if i else float(v))
                          for v, f, i in zip(vals.tolist(), finite.tolist(), as_int.tolist(),
                                             strict=True)]
    return "text", [None if pd.isna(v) else str(v) for v in s]


_ARROW_TYPES = {"VARCHAR": "string", "DOUBLE": "float64", "INTEGER": "int64", "BIGINT": "int64",
                "BOOLEAN": "bool"}


def to_parquet_bytes(df: pd.DataFrame, columns: Sequence[schema.Column],
                     about: dict[str, object] | None = None) -> bytes:
    """Parquet (zstd) with the export's types; `about` goes into the schema's key-value metadata
    as ``exchange_impact.<key>``. Text is not neutralised: Parquet is not opened by spreadsheets
    as formulas, and the values must round-trip exactly."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow_schema = pa.schema([pa.field(c.name, pa.type_for_alias(
        _ARROW_TYPES.get(c.sql_type.upper(), "string"))) for c in columns])
    table = pa.Table.from_pandas(df, schema=arrow_schema, preserve_index=False)
    meta = {f"exchange_impact.{k}".encode(): str(v).encode() for k, v in (about or {}).items()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Tables as exported
# ---------------------------------------------------------------------------------------------

def _check_request(table: str, fmt: str, by: str | None, min_cell: int,
                   unsuppressed: bool = False) -> None:
    if min_cell < suppression.MIN_CELL and min_cell >= 0 and not unsuppressed:
        # Issue 14: less suppression than the deployment's k is row-level access; the caller
        # (the CLI, or a download for a role entitled to it) says so explicitly.
        raise ExportError(f"min_cell {min_cell} is below this deployment's k "
                          f"({suppression.MIN_CELL}): unsuppressed output is for people with "
                          "row-level access only, and must be asked for as such "
                          "(unsuppressed=True)")
    if table not in TABLES:
        raise ExportError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if min_cell < 0:
        raise ExportError(f"--min-cell must be 0 or more, got {min_cell}")
    if by is not None:
        if table not in BY_TABLES:
            raise ExportError(f"--by applies to {', '.join(BY_TABLES)}, not to {table}")
        allowed = materialise.GROUP_DIMENSIONS + (("overall",) if table != "scale_scores" else ())
        if by not in allowed:
            raise ExportError(f"cannot group by {by!r}; choose one of {', '.join(allowed)}")


# Row-level and never suppressed: a stored copy serves whatever k an export asks for.
_K_FREE = frozenset({"scale_scores"})


class _Source:
    """The result tables of one export request: stored ones when current (and, for the
    suppressed tables, stored at the k asked for), else computed once."""

    def __init__(self, con: duckdb.DuckDBPyConnection, min_cell: int,
                 scope: Scope | None = None, round_to: int | None = None) -> None:
        self.con = con
        self.min_cell = min_cell
        self.round_to = round_to
        self.version = data_version(con)
        self.state = materialise.stored_state(con)
        # why the stored tables do not serve: for every table (`_stale`) or for those that
        # depend on k (`_other_k`)
        self._stale: str | None = None
        self._other_k: str | None = None
        self._computed: materialise.Results | None = None
        st = self.state
        if scope is not None and not scope.whole:
            # `con` reads the scope's raw tables (`scoped`); the stored tables hold every program
            self.state = None
            self._stale = (f"computed for this export from {scope.describe()} only (the stored "
                           "result tables cover every program)")
        elif st is None:
            self._stale = (f"no stored result tables for data version {self.version}; computed "
                           "for this export only (run 'python -m analytics refresh' to store "
                           "them)")
        elif st.data_version != self.version:
            self._stale = (f"the stored result tables are for data version {st.data_version}, "
                           f"the warehouse is at {self.version}; computed for this export only "
                           "(run 'python -m analytics refresh' to store them)")
        elif st.min_cell != min_cell:
            self._other_k = (f"stored results are suppressed at k = {st.min_cell}; computed with "
                             f"k = {min_cell} for this export only")

    def note_for(self, table: str) -> str | None:
        """Where `table`'s numbers come from when not from the stored tables (None: stored)."""
        return self._stale or (None if table in _K_FREE else self._other_k)

    @property
    def note(self) -> str | None:
        """The note for the request as a whole (any table computed rather than read)."""
        return self._stale or self._other_k

    def compute_all(self) -> None:
        """Compute every table the stored ones do not serve at once (before rendering several)."""
        missing = [t for t in TABLES if self.note_for(t) is not None]
        if missing and self._computed is None:
            self._computed = materialise.compute_results(self.con, min_cell=self.min_cell,
                                                         tables=missing,
                                                         data_version=self.version)

    @property
    def models(self) -> dict[str, str]:
        """Longitudinal model formula per instrument.scale, as fitted."""
        if self._computed is not None and self._computed.models:
            return self._computed.models
        return self.state.models if self.state is not None else {}

    def frame(self, table: str, needed: Sequence[str]) -> tuple[pd.DataFrame, str]:
        """The table's rows and the time they were computed."""
        if self.note_for(table) is None and self.state is not None:
            df = self.con.execute(
                f'SELECT * FROM "{codebook.EXPORT_TABLES[table].name}"').df()
            return df, self.state.generated_at
        if self._computed is None or table not in self._computed.tables:
            self._computed = materialise.compute_results(
                self.con, min_cell=self.min_cell, tables=list(needed),
                data_version=self.version)
        return self._computed.tables[table], self._computed.generated_at


def _about(table: str, version: int, generated_at: str, exported_at: str, min_cell: int,
           note: str | None, by: str | None, round_to: int | None = None) -> dict[str, object]:
    rounded = ({"rounding": f"counts of people and events rounded to a multiple of {round_to}"}
               if round_to else {})
    return rounded | {
        "table": table,
        "title": codebook.EXPORT_TABLES[table].doc,
        "data_version": version,
        "generated_at": generated_at,
        "exported_at": exported_at,
        "min_cell": min_cell,
        "suppression": (f"groups with fewer than {min_cell} participants suppressed ('n < "
                        f"{min_cell}', numbers empty); beside a shown total (the 'overall' "
                        "row) another group is blanked too ('complementary') where the "
                        "suppressed one would be the total minus the groups shown"
                        if min_cell > 0
                        else "none: unsuppressed output for people with row-level access"),
        "by": by or "",
        "method": codebook.METHODS[table],
        "general": codebook.GENERAL_METHODS,
        "source": note or "result tables stored in the warehouse for this data version",
    }


def _render(src: _Source, table: str, fmt: str, by: str | None, exported_at: str) -> Export:
    df, generated_at = src.frame(table, [table])
    cols = list(codebook.EXPORT_TABLES[table].columns)
    if by is not None and table == "scale_scores":
        attrs = materialise.group_attributes(src.con)[["participant", "exchange_id", by]]
        df = df.merge(attrs, on=["participant", "exchange_id"], how="left")
        cols.append(schema.Column(by, "VARCHAR", doc=f"the participant's {by} (added by --by)"))
    elif by is not None:
        df = df[df["group_by"].astype("string") == by]
    df = protect_totals(df, table, src.min_cell)
    if src.round_to:
        # funders: the counts rounded as on the pages (suppressed ones stay empty)
        from analytics.read import rounding

        df = rounding.apply(df, src.round_to)
    df = df.assign(data_version=src.version, generated_at=generated_at)
    cols += list(codebook.PROVENANCE_COLUMNS)
    out = _typed(df, cols)
    about = _about(table, src.version, generated_at, exported_at, src.min_cell,
                   src.note_for(table), by, src.round_to)
    if fmt == "csv":
        data = to_csv_bytes(out)
    elif fmt == "xlsx":
        data = to_xlsx_bytes(out, sheet=table, about=about)
    else:
        data = to_parquet_bytes(out, cols, about)
    name = f"{table}{'_by_' + by if by else ''}_v{src.version}.{fmt}"
    return Export(name, data, table, fmt, len(out), src.version, generated_at, src.min_cell,
                  src.note_for(table))


def build_export(con: duckdb.DuckDBPyConnection, table: str, fmt: str = "csv", *,
                 by: str | None = None, min_cell: int = suppression.MIN_CELL,
                 unsuppressed: bool = False, scope: Scope | None = None,
                 round_to: int | None = None) -> Export:
    """One table as a file's bytes, with its provenance (see the module docstring). A
    `min_cell` below the deployment's k needs `unsuppressed=True`: the caller's statement that
    the reader has row-level access (the role check is the caller's). `scope`: computed from
    those programs and clusters only; `round_to`: counts rounded to that base (funders)."""
    _check_request(table, fmt, by, min_cell, unsuppressed)
    _check_rounding(round_to)
    with scoped(con, scope):
        return _render(_Source(con, min_cell, scope, round_to), table, fmt, by,
                       materialise.utc_now())


def _check_rounding(round_to: int | None) -> None:
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int)
                                 or round_to < 1):
        raise ExportError(f"the rounding base must be a whole number 1 or more, got {round_to!r}")


def export_table(con: duckdb.DuckDBPyConnection, table: str, fmt: str = "csv",
                 by: str | None = None,
                 min_cell: int = suppression.MIN_CELL, unsuppressed: bool = False
                 ) -> tuple[str, bytes]:
    """(file name, bytes) of one table: what the Data page offers for download (e.g. with
    ``dcc.send_bytes``), identical to ``python -m analytics export``'s file."""
    e = build_export(con, table, fmt, by=by, min_cell=min_cell, unsuppressed=unsuppressed)
    return e.filename, e.data


def export_bundle(con: duckdb.DuckDBPyConnection, fmt: str = "csv", *,
                  min_cell: int = suppression.MIN_CELL, unsuppressed: bool = False,
                  scope: Scope | None = None, round_to: int | None = None
                  ) -> tuple[str, bytes]:
    """(file name, bytes) of a zip holding every table, `datapackage.json` and `CODEBOOK.md`:
    what ``python -m analytics export --all`` writes, as one download for the Data page."""
    import io
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory(prefix="ei-export-") as tmp:
        files, _note = export_all(con, tmp, fmt, min_cell=min_cell, unsuppressed=unsuppressed,
                                  scope=scope, round_to=round_to)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(Path(tmp).iterdir()):
                z.write(f, f.name)
    return f"exchange_impact_v{data_version(con)}_{fmt}.zip", buf.getvalue()


def export_all(con: duckdb.DuckDBPyConnection, out_dir: Path | str, fmt: str = "csv", *,
               min_cell: int = suppression.MIN_CELL, unsuppressed: bool = False,
               scope: Scope | None = None, round_to: int | None = None
               ) -> tuple[list[Path], str | None]:
    """Write every table, `datapackage.json` and `CODEBOOK.md` into `out_dir` (`scope` and
    `round_to` as in `build_export`).

    Returns the files written and the note on where the numbers came from (None when the stored
    result tables were used).
    """
    for t in TABLES:
        _check_request(t, fmt, None, min_cell, unsuppressed)
    _check_rounding(round_to)
    with scoped(con, scope):
        return _write_all(out_dir, fmt, _Source(con, min_cell, scope, round_to))


def _write_all(out_dir: Path | str, fmt: str, src: _Source) -> tuple[list[Path], str | None]:
    min_cell = src.min_cell
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: is a file; --all writes a folder (e.g. --out exports/)")
    out.mkdir(parents=True, exist_ok=True)
    exported_at = materialise.utc_now()
    src.compute_all()
    written: list[Path] = []
    resources = []
    generated_at = ""
    for t in TABLES:
        e = _render(src, t, fmt, None, exported_at)
        generated_at = e.generated_at
        path = out / e.filename
        path.write_bytes(e.data)
        written.append(path)
        resources.append({"table": t, "path": e.filename, "format": fmt, "rows": e.rows})
    package = codebook.datapackage(resources, data_version=src.version, generated_at=generated_at,
                                   exported_at=exported_at, min_cell=min_cell, models=src.models)
    if src.note:
        package["exchange_impact"]["source"] = src.note
    dp = out / "datapackage.json"
    dp.write_text(json.dumps(package, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = out / "CODEBOOK.md"
    md.write_text(codebook.markdown(package), encoding="utf-8")
    return written + [dp, md], src.note
