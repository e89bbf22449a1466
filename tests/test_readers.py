"""Valid files as people save them read exactly: dialects, encodings, sheets, widths.

The loader is driven for real (in process for the property test, through the command line for
the rest) and the outcome is read from the warehouse: values as stored, rejects with their row,
exit statuses and the lines the user sees.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl import readers
from etl.errors import RefusedFile
from etl.load import load_paths
from tests import program as P

# shared/ lies beside the checkout, here and on CI.
SAMPLES = P.ROOT.parent / "shared" / "samples"


q = P.q


# Loads here are about the rows read and loaded, never the derived tables (conftest.py).
pytestmark = pytest.mark.usefixtures("no_derive")


def _warehouse(folder: Path) -> Path:
    """A warehouse path with its own key file (owner-only), so no environment is needed."""
    wh = folder / "wh" / "warehouse.duckdb"
    wh.parent.mkdir(parents=True)
    key = wh.parent / "pseudonym.key"
    key.write_text(P.TEST_KEY)
    key.chmod(0o600)
    return wh


def _write(path: Path, rows: list[list[str]], *, delimiter: str = ",",
           encoding: str = "utf-8") -> Path:
    """Rows written by Python's csv module (RFC 4180 quoting, CRLF), as Excel writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


# -- dialect ---------------------------------------------------------------------------------

NAME_CHARS = st.sampled_from(
    list("abcXYZ019 \"',;\t\n\r|\\") + ["é", "ñ", "ß", "東", "京", "한", "ع", "ж", "😀", "“", "€"])
NAMES = st.text(NAME_CHARS, min_size=1, max_size=24).filter(lambda s: s == s.strip() and s)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(NAMES, min_size=1, max_size=6),
       delimiter=st.sampled_from([",", ";", "\t"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_names_with_quotes_separators_newlines_and_any_script_come_back_exactly(
        names, delimiter, encoding):
    """Whatever a name holds, written by the csv module it is read back as it was written."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wh = _warehouse(folder)
        rows = [["cluster_id", "name", "kind"]] + [
            [f"C{i}", n, "cluster"] for i, n in enumerate(names)]
        src = _write(folder / "in" / "clusters.csv", rows, delimiter=delimiter, encoding=encoding)
        [rep] = load_paths([src], wh)
        assert rep.status == "loaded", rep.summary()
        assert rep.rows_rejected == 0, rep.summary()
        got = dict(q(wh, "SELECT cluster_id, name FROM clusters"))
        assert got == {f"C{i}": n for i, n in enumerate(names)}


def test_doubled_quotes_and_a_quoted_newline_load_and_rows_count_records(tmp_path: Path):
    """The issue's names load whole; `row` counts records (spreadsheet rows), not text lines."""
    rows = [["cluster_id", "name", "kind"],
            ["C1", 'Colégio "Nova Esperança", Unidade 2', "cluster"],
            ["C2", "Red Andina\nsede Lima", "network"],
            ["C3", "Broken kind", "galaxy"]]  # record 4 of the file (line 5 of the text)
    src = _write(tmp_path / "in" / "clusters.csv", rows)
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    assert dict(q(wh, "SELECT cluster_id, name FROM clusters")) == {
        "C1": 'Colégio "Nova Esperança", Unidade 2', "C2": "Red Andina\nsede Lima"}
    assert q(wh, "SELECT row_number, column_name, rule FROM rejects") == [
        (4, "kind", "allowed_values")]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_european_excel_semicolon_and_tab_files_still_load(tmp_path: Path, delimiter: str):
    rows = [["cluster_id", "name", "kind"], ["C1", "Escola 1; Porto", "cluster"],
            ["C2", "Schule, Nord", "network"]]
    src = _write(tmp_path / "in" / "clusters.csv", rows, delimiter=delimiter)
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert dict(q(wh, "SELECT cluster_id, name FROM clusters")) == {
        "C1": "Escola 1; Porto", "C2": "Schule, Nord"}


# -- encodings -------------------------------------------------------------------------------

CLUSTERS = [["cluster_id", "name", "kind"], ["C1", "Café “Central” – 5 €", "cluster"],
            ["C2", "Øresund Skolen", "network"]]


def test_utf16_unicode_text_from_excel_loads_and_says_so(tmp_path: Path):
    """Excel's "Unicode text": UTF-16 with a byte order mark, tab separated."""
    src = _write(tmp_path / "in" / "clusters.txt", CLUSTERS, delimiter="\t", encoding="utf-16")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert dict(q(wh, "SELECT cluster_id, name FROM clusters")) == {
        "C1": "Café “Central” – 5 €", "C2": "Øresund Skolen"}
    assert "note: read as UTF-16" in res.stdout


def test_windows_1252_csv_loads_and_says_which_encoding_was_assumed(tmp_path: Path):
    src = _write(tmp_path / "in" / "clusters.csv", CLUSTERS, delimiter=";", encoding="cp1252")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert dict(q(wh, "SELECT cluster_id, name FROM clusters")) == {
        "C1": "Café “Central” – 5 €", "C2": "Øresund Skolen"}
    assert "note: not UTF-8: read as Windows-1252" in res.stdout
    # The assumption is kept with the load, for the Data page and `etl status`.
    assert "Windows-1252" in q(wh, "SELECT message FROM load_batches")[0][0]


def test_a_file_in_no_encoding_we_read_is_refused_naming_the_encodings_and_the_fix(tmp_path):
    src = tmp_path / "in" / "clusters.csv"
    src.parent.mkdir()
    # 0x81 and 0x8d are undefined in Windows-1252 and invalid UTF-8.
    src.write_bytes(b"cluster_id,name,kind\nC1,Caf\x81\x8d,cluster\n")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 1
    assert "not UTF-8, UTF-16 or Windows-1252" in res.stdout
    assert "CSV UTF-8" in res.stdout  # how to convert


# -- columns and sheets ----------------------------------------------------------------------

def test_duplicate_column_names_refuse_the_file_naming_them(tmp_path: Path):
    src = tmp_path / "in" / "clusters.csv"
    _write(src, [["cluster_id", "name", "kind", "name"], ["C1", "A", "cluster", "B"]])
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "duplicate column name" in res.stdout and "'name'" in res.stdout


def test_duplicate_minutes_columns_of_an_events_file_are_refused():
    with tempfile.TemporaryDirectory() as tmp:
        src = _write(Path(tmp) / "events.csv",
                     [["participant_id", "exchange_id", "occurred_at", "activity", "minutes",
                       "minutes"], ["STU-0001", "E1", "2026-03-04 10:00", "call", "5", "50"]])
        con = duckdb.connect()
        with pytest.raises(RefusedFile, match="duplicate column name.*minutes"):
            readers.read_into(con, src)


def _workbook(path: Path, sheets: dict[str, list[list[str]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        for name, rows in sheets.items():
            pd.DataFrame(rows[1:], columns=rows[0]).to_excel(xw, sheet_name=name, index=False)
    return path


def test_duplicate_column_names_of_a_workbook_are_refused_too(tmp_path: Path):
    """pandas renames the second `name` to `name.1`; the header row itself is checked."""
    src = _workbook(tmp_path / "clusters.xlsx", {
        "clusters": [["cluster_id", "name", "kind", "name"], ["C1", "A", "cluster", "B"]]})
    with pytest.raises(RefusedFile, match=r"duplicate column name 'name' \(columns 2 and 4\)"):
        readers.read_into(duckdb.connect(), src, kind="clusters")


def test_a_workbook_of_several_sheets_none_named_after_the_kind_is_refused_naming_them(tmp_path):
    head = ["cluster_id", "name", "kind"]
    src = _workbook(tmp_path / "in" / "clusters.xlsx", {
        "North": [head, ["C1", "North Sea Schools", "cluster"]],
        "South": [head, ["C2", "Red Andina", "network"], ["C3", "Sur", "cluster"]]})
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "2 sheets (North, South)" in res.stdout and "'clusters'" in res.stdout


def test_the_sheet_named_after_the_kind_loads_and_the_others_are_named(tmp_path: Path):
    head = ["cluster_id", "name", "kind"]
    src = _workbook(tmp_path / "in" / "clusters.xlsx", {
        "README": [["about"], ["exported 2026-03-01"]],
        "Clusters": [head, ["C1", "North Sea Schools", "cluster"], ["C2", "Red Andina", "network"],
                     ["C3", "Sur", "cluster"]]})
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert q(wh, "SELECT count(*) FROM clusters") == [(3,)]
    assert "sheet 'Clusters' read; other sheets not read: README" in res.stdout


class _Untouchable:
    """A connection that fails any use: a refusal that reaches DuckDB shows up as this error."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the reader used DuckDB ({name}) before refusing the file")


def test_a_file_far_wider_than_any_contract_is_refused_at_once_naming_count_and_limit(tmp_path):
    """20,000 columns: refused from the header line, before DuckDB sniffs the width."""
    n = 20_000
    src = tmp_path / "in" / "events.csv"
    src.parent.mkdir()
    src.write_text(",".join(f"c{i}" for i in range(n)) + "\n" + ",".join("1" * n) + "\n")
    with pytest.raises(RefusedFile, match="has 20,000 columns"):
        readers.read_into(_Untouchable(), src)
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"has 20,000 columns; at most {readers.max_columns():,}" in res.stdout


# -- real exports ----------------------------------------------------------------------------

@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared sample exports are not here")
@pytest.mark.parametrize("name", ["qualtrics_sample.csv", "zoom_participants_heroes_full.csv",
                                  "moodle_example_platform_logs.csv"])
def test_real_exports_read_as_pythons_csv_module_reads_them(name: str):
    """Qualtrics (three header rows, JSON with doubled quotes), Zoom and Moodle exports: every
    value as the csv module reads it (the loader trims and keeps empty cells as NULL)."""
    con = duckdb.connect()
    cols = readers.read_into(con, SAMPLES / name)
    with open(SAMPLES / name, encoding="utf-8-sig", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert len(cols) == len(header)
    want = [tuple(v.strip() or None for v in r) for r in rows]
    assert con.execute("SELECT * EXCLUDE (_row) FROM src ORDER BY _row").fetchall() == want
