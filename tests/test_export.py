"""Researcher exports through `python -m analytics export`, on a generated demo warehouse.

What a researcher relies on: the files exist with the interface's columns, CSV starts with a
UTF-8 byte-order mark, every file carries the data version and generation time, the codebook
(datapackage.json + CODEBOOK.md) describes every column and states the methods and threshold,
suppressed groups show "n < 10" and no numbers, errors are one line with a non-zero exit, and
no text cell can run as a spreadsheet formula while numbers stay numbers (hypothesis).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import duckdb
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics import suppression
from analytics.outputs import cli, codebook, export
from etl.warehouse import build_next, connect_read_only
from tests.analytics_fixture import demo_warehouse, run

REQUIRED = {  # the minimum column sets
    "reliability": "instrument, scale, wave, n, n_items, alpha, alpha_ci_low, alpha_ci_high",
    "prepost": "instrument, scale, group_by, group, n, mean_pre, mean_post, diff, diff_ci_low, "
               "diff_ci_high, t, dof, p, p_fdr, wilcoxon_p, d_z, d_av, hedges_g, "
               "hedges_g_ci_low, hedges_g_ci_high, suppressed",
    "scale_scores": "participant, exchange_id, wave, instrument, scale, score, n_items_answered",
    "longitudinal": "instrument, scale, term, estimate, se, ci_low, ci_high, p, n_participants, "
                    "n_obs, converged",
    "attrition": "group_by, group, wave, n_invited, n_responded, rate, suppressed",
}
FRICTIONLESS_TYPES = {"string", "number", "integer", "boolean", "date", "datetime", "time",
                      "year", "yearmonth", "duration", "geopoint", "geojson", "object", "array",
                      "any"}


@pytest.fixture(scope="module")
def demo() -> Path:
    return demo_warehouse()


def _version(wh: Path) -> str:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute("SELECT value FROM meta WHERE key = 'data_version'").fetchone()[0]
    finally:
        con.close()


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "CSV must start with the UTF-8 byte-order mark"
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


# ---------------------------------------------------------------------------------------------
# CSV/XLSX injection: a property of the writers
# ---------------------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
# XLSX text: no other control characters (XML 1.0 cannot hold them) and no "_" (OOXML's
# _xHHHH_ escapes, which xlsxwriter writes for \r and openpyxl does not decode, are undone below).
_xlsx_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"),
                                            blacklist_characters="_",
                                            whitelist_characters="\t\r\n"), max_size=12)
_risky = st.sampled_from(["=", "+", "-", "@", "\t", "\r"])
_cell = st.one_of(_text, st.builds(lambda a, b: a + b, _risky, _text))
_xlsx_cell = st.one_of(_xlsx_text, st.builds(lambda a, b: a + b, _risky, _xlsx_text))
_number = st.floats(allow_nan=True, allow_infinity=False, width=64)
_xlsx_number = st.one_of(st.floats(min_value=-1e300, max_value=1e300),  # Excel: |x| < 1e308
                         st.just(float("nan")))


def _ooxml_unescape(v: str) -> str:
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), v)


def _frame(texts: list[str], numbers: list[float], ints: list[int]) -> pd.DataFrame:
    n = min(len(texts), len(numbers), len(ints))
    return pd.DataFrame({
        "group": pd.Series(texts[:n], dtype="string"),
        "diff": pd.Series(numbers[:n], dtype="float64"),
        "n": pd.Series(ints[:n], dtype="Int64"),
    })


def _expected_text(v: str) -> str:
    return "'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


@given(st.lists(_cell, min_size=1, max_size=8), st.lists(_number, min_size=8, max_size=8),
       st.lists(st.integers(-10**6, 10**6), min_size=8, max_size=8))
@settings(max_examples=200, deadline=None)
def test_csv_neutralises_text_and_keeps_numbers(texts: list[str], numbers: list[float],
                                                ints: list[int]) -> None:
    df = _frame(texts, numbers, ints)
    raw = export.to_csv_bytes(df)
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["group", "diff", "n"]
    body = rows[1:]
    assert len(body) == len(df)
    for (g, d, n), tv, nv, iv in zip(body, df["group"], df["diff"], df["n"], strict=True):
        assert g == _expected_text(tv)
        assert g[:1] not in ("=", "+", "-", "@", "\t", "\r")
        if pd.isna(nv):
            assert d == ""
        else:  # a negative number is written as a number, not quoted or prefixed
            assert float(d) == nv and not d.startswith("'")
        assert int(n) == iv and not n.startswith("'")


@given(st.lists(_xlsx_cell, min_size=1, max_size=6),
       st.lists(_xlsx_number, min_size=6, max_size=6),
       st.lists(st.integers(-10**6, 10**6), min_size=6, max_size=6))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_xlsx_neutralises_text_and_keeps_numbers(texts: list[str], numbers: list[float],
                                                 ints: list[int]) -> None:
    df = _frame(texts, numbers, ints)
    wb = openpyxl.load_workbook(io.BytesIO(export.to_xlsx_bytes(df, about={"k": "=v"})))
    ws = wb["data"]
    rows = list(ws.iter_rows(min_row=2))
    assert len(rows) == len(df)
    for (g, d, n), tv, nv, iv in zip(rows, df["group"], df["diff"], df["n"], strict=True):
        assert g.data_type != "f" and d.data_type != "f"
        if tv == "":
            assert g.value in (None, "")
        else:
            assert _ooxml_unescape(g.value) == _expected_text(tv) and g.data_type == "s"
        if pd.isna(nv):
            assert d.value is None
        else:  # XLSX keeps 16 significant digits (xlsxwriter writes %.16g; Excel shows 15)
            assert d.data_type == "n" and d.value == pytest.approx(nv, rel=1e-15, abs=0)
        assert n.data_type == "n" and n.value == iv
    assert wb["about"]["B2"].value == "'=v"


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

def test_export_csv_has_bom_columns_and_version(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "pp.csv"
    r = run("analytics", "export", "prepost", "--warehouse", str(demo), "--out", str(out))
    assert r.returncode == 0, r.stderr
    header, rows = _read_csv(out)
    required = [c.strip() for c in REQUIRED["prepost"].split(",")]
    assert header[:len(required)] == required
    assert header[-2:] == ["data_version", "generated_at"]
    version = _version(demo)
    assert rows and {x["data_version"] for x in rows} == {version}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", x["generated_at"]) for x in rows)
    negative = [x for x in rows if x["diff"].startswith("-")]
    assert all(float(x["diff"]) < 0 for x in negative)  # numbers are not neutralised
    # issue 14: the audit log beside the warehouse names the OS user who exported what (no
    # accounts here: tests/test_export_access.py has the role checks)
    import getpass

    from etl import accounts

    last = accounts.audit_rows(demo, 50)
    assert any(r[1] == f"(no accounts) {getpass.getuser()}" and r[2] == "cli-export"
               and r[3] == f"prepost -> {out}" and r[5] == str(version) for r in last)


def test_export_all_writes_every_table_and_a_complete_codebook(demo: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "all"
    r = run("analytics", "export", "--all", "--out", str(out), "--warehouse", str(demo))
    assert r.returncode == 0, r.stderr
    package = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    md = (out / "CODEBOOK.md").read_text(encoding="utf-8")
    version = _version(demo)
    assert package["profile"] == "tabular-data-package"
    assert str(package["exchange_impact"]["data_version"]) == version
    assert package["exchange_impact"]["min_cell"] == 10
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                        package["exchange_impact"]["generated_at"])
    names = {res["name"] for res in package["resources"]}
    assert names == set(export.TABLES) >= set(REQUIRED)
    methods = json.dumps(package["exchange_impact"]["methods"])
    for phrase in ("d_z", "d_av", "Hedges", "t.test", "REML", "(1 | participant)", "Feldt",
                   "Benjamini"):
        assert phrase in methods, phrase
    # What each estimate answers and assumes travels with the tables (issue 10, §2-3).
    for phrase in ("Completers' gain", "missing at random", "not randomised", "parallel trends"):
        assert phrase in methods and phrase in md, phrase
    models = package["exchange_impact"]["longitudinal_models"]
    assert models and all("(1 | participant)" in f for f in models.values())
    assert "score ~ wave * modality * arm + (1 | participant)" in md  # the demo has comparisons
    assert "fewer than 10 participants" in md and f"data version: **{version}**" in md
    for res in package["resources"]:
        assert re.fullmatch(r"[a-z0-9._-]+", res["name"])
        header, rows = _read_csv(out / res["path"])
        fields = res["schema"]["fields"]
        assert [f["name"] for f in fields] == header
        assert len(rows) == res["rows"]
        required = [c.strip() for c in REQUIRED.get(res["name"], "").split(",") if c.strip()]
        assert set(required) <= set(header), res["name"]
        for f in fields:
            assert f["type"] in FRICTIONLESS_TYPES and f["description"]
            assert f"`{f['name']}`" in md.split(f"## {res['name']} ")[1].split("\n## ")[0]
        assert {x["data_version"] for x in rows} <= {version}


def test_xlsx_and_parquet_carry_the_provenance(demo: Path, tmp_path: Path) -> None:
    version = _version(demo)
    x = tmp_path / "rel.xlsx"
    r = run("analytics", "export", "reliability", "--warehouse", str(demo), "--out", str(x))
    assert r.returncode == 0, r.stderr
    wb = openpyxl.load_workbook(x)
    about = {k: v for k, v in wb["about"].iter_rows(min_row=2, values_only=True)}
    assert about["data_version"] == version and about["min_cell"] == "10"
    assert "Feldt" in about["method"]
    header = [c.value for c in wb["reliability"][1]]
    assert header[:8] == [c.strip() for c in REQUIRED["reliability"].split(",")]
    p = tmp_path / "scores.parquet"
    r = run("analytics", "export", "scale_scores", "--by", "modality", "--format", "parquet",
            "--warehouse", str(demo), "--out", str(p))
    assert r.returncode == 0, r.stderr
    t = pq.read_table(p)
    meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
    assert meta["exchange_impact.data_version"] == version
    assert meta["exchange_impact.by"] == "modality"
    assert t.column_names[:7] == [c.strip() for c in REQUIRED["scale_scores"].split(",")]
    assert "modality" in t.column_names
    assert str(t.schema.field("score").type) == "double"


def test_suppressed_groups_show_the_reason_and_no_numbers(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "by_exchange.csv"
    r = run("analytics", "export", "prepost", "--by", "exchange", "--warehouse", str(demo),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    header, rows = _read_csv(out)
    assert {x["group_by"] for x in rows} == {"exchange"}
    numeric = header[4:20]
    small = [x for x in rows if x["suppressed"]]
    assert small, "the demo has exchanges with fewer than 10 complete pairs"
    for x in small:
        assert x["suppressed"] == "n < 10"
        assert all(x[c] == "" for c in numeric), x
    assert all(int(x["n"]) >= 10 for x in rows if not x["suppressed"])
    # Unsuppressed on explicit request only, with a warning; the same groups get numbers.
    # (The attrition funnel: it is cheap to compute again, and the demo has small exchanges.)
    counts = ["n_invited", "n_responded", "rate"]
    paths = {}
    for k in ("10", "0"):
        paths[k] = tmp_path / f"attrition_{k}.csv"
        r = run("analytics", "export", "attrition", "--by", "exchange", "--min-cell", k,
                "--warehouse", str(demo), "--out", str(paths[k]))
        assert r.returncode == 0, r.stderr
        assert ("warning:" in r.stderr and "row-level access" in r.stderr) == (k == "0")
    _, rows10 = _read_csv(paths["10"])
    _, rows0 = _read_csv(paths["0"])
    small = {(x["group"], x["wave"]) for x in rows10 if x["suppressed"]}
    assert small and all(x["suppressed"] == "n < 10" and all(x[c] == "" for c in counts)
                         for x in rows10 if x["suppressed"])
    shown = [x for x in rows0 if (x["group"], x["wave"]) in small]
    assert len(shown) == len(small)
    assert all(0 < int(x["n_invited"]) < 10 and x["rate"] != "" for x in shown)
    assert not any(x["suppressed"].startswith("n <") for x in rows0)


@pytest.mark.parametrize("args, message", [
    (["export", "nope"], "invalid choice"),
    (["export", "reliability", "--by", "modality"], "--by applies to"),
    (["export", "prepost", "--by", "shoe_size"], "cannot group by"),
    (["export", "prepost", "--min-cell", "-1"], "--min-cell"),
    (["export", "prepost", "--out", "x.csv", "--format", "xlsx"], "does not match"),
    (["export", "--all"], "--all needs --out"),
    (["export"], "name one TABLE"),
    (["export", "prepost", "--warehouse", "/nonexistent/w.duckdb"], "no warehouse here"),
])
def test_errors_are_one_line_and_non_zero(demo: Path, args: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # In-process through the CLI's own main(); the process exit status is checked just below.
    if "--warehouse" not in args:
        args = [*args, "--warehouse", str(demo)]
    try:
        code = cli.main(args)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    assert code not in (0, None)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_error_exit_status_of_the_real_command(demo: Path) -> None:
    r = run("analytics", "export", "reliability", "--by", "modality", "--warehouse", str(demo))
    assert r.returncode == 1
    assert r.stderr.strip() == ("error: --by applies to prepost, attrition, scale_scores, not "
                                "to reliability")
    r = run("analytics", "export", "nope")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_help_has_an_example_per_option() -> None:
    r = run("analytics", "export", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for opt in ("--all", "--format", "--out", "--by", "--warehouse", "--min-cell"):
        assert f"e.g. {opt}" in text or f"e.g. --all {opt}" in text, opt
        assert re.search(rf"python -m analytics export .*{opt}", r.stdout), opt


def test_dashboard_download_is_the_cli_file(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "att.csv"
    r = run("analytics", "export", "attrition", "--by", "modality", "--warehouse", str(demo),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    con = connect_read_only(demo)
    try:
        name, data = export.export_table(con, "attrition", "csv", by="modality")
    finally:
        con.close()
    assert name == f"attrition_by_modality_v{_version(demo)}.csv"
    assert data == out.read_bytes()


def test_stale_results_are_computed_for_the_export_only(demo: Path, tmp_path: Path) -> None:
    wh = tmp_path / "warehouse.duckdb"
    shutil.copyfile(demo, wh)
    stored = int(_version(demo))
    with build_next(wh) as con:  # a new data version whose load did not refresh the results
        con.execute("DELETE FROM rejects")
    out = tmp_path / "attrition.csv"
    r = run("analytics", "export", "attrition", "--warehouse", str(wh), "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: ")
    assert f"data version {stored}" in lines[0] and "computed for this export only" in lines[0]
    _, rows = _read_csv(out)
    assert rows and {x["data_version"] for x in rows} == {str(stored + 1)}
    con = duckdb.connect(str(wh), read_only=True)  # nothing was written
    try:
        state = con.execute(
            "SELECT value FROM meta WHERE key = 'results_data_version'").fetchone()[0]
    finally:
        con.close()
    assert state == str(stored)


def test_codebook_describes_every_result_column() -> None:
    for table in export.TABLES:
        for col in codebook.export_columns(table):
            assert col.doc, (table, col.name)
            codebook.frictionless_type(col.sql_type)


def test_another_k_recomputes_the_suppressed_tables_only(demo: Path, monkeypatch) -> None:
    """Scale scores are row-level and never suppressed: the stored copy serves any --min-cell;
    a suppressed table asked at another k is computed for the export and says so."""
    from analytics.derive import materialise

    calls: list[list[str] | None] = []
    real = materialise.compute_results

    def spy(con, **kw):
        calls.append(kw.get("tables"))
        return real(con, **kw)

    monkeypatch.setattr(materialise, "compute_results", spy)
    con = connect_read_only(demo)
    try:
        stored_at = materialise.stored_state(con).generated_at
        scores = export.build_export(con, "scale_scores", "parquet", min_cell=0,
                                     unsuppressed=True)
        assert scores.note is None and scores.generated_at == stored_at and calls == []
        pre = export.build_export(con, "prepost", "parquet", min_cell=0, unsuppressed=True)
        assert "k = 0" in (pre.note or "") and calls == [["prepost"]]
    finally:
        con.close()


def test_export_carries_the_missing_data_sensitivity_with_its_methods(demo: Path,
                                                                      tmp_path: Path) -> None:
    """The sensitivity table exports with a codebook that names each method, its reference
    and the MAR / MNAR assumptions in the words the Outcomes page uses."""
    from analytics import estimands

    out = tmp_path / "sens.csv"
    r = run("analytics", "export", "sensitivity", "--out", str(out), "--warehouse", str(demo))
    assert r.returncode == 0, r.stderr
    header, rows = _read_csv(out)
    assert header[:15] == ["instrument", "scale", "wave", "method", "delta", "estimate", "se",
                           "dof", "ci_low", "ci_high", "n", "n_responded", "n_clusters",
                           "few_clusters", "suppressed"]
    assert {x["method"] for x in rows} == {"completers", "ipw", "delta", "tipping_point"}
    method = codebook.METHODS["sensitivity"]
    for phrase in ("inverse-probability", "Seaman & White 2013", "Carpenter & Kenward 2013",
                   "1st and 99th percentiles", "G − 1", estimands.SENSITIVITY_MAR,
                   estimands.SENSITIVITY_MNAR):
        assert phrase in method, phrase


def test_less_suppression_than_k_must_be_asked_for_as_unsuppressed() -> None:
    """Issue 14: min_cell below the deployment's k is row-level output; the library refuses it
    unless the caller says so (the CLI's --min-cell does, after its warning; roles decide who
    may run it)."""
    for k in (0, suppression.MIN_CELL - 1):
        with pytest.raises(export.ExportError, match="row-level access"):
            export.build_export(None, "prepost", "csv", min_cell=k)  # type: ignore[arg-type]
