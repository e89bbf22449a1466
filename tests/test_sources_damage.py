"""Damaged exports of every format through the loader (`python -m etl load`, in process).

Each format's fixture (written by that format's own tests, in the real export's shape) is
damaged: cut inside its header, re-encoded as EBCDIC (both must be refused), bytes overwritten,
cut in the middle of a record, re-encoded as UTF-32 (read or refused); and, by hypothesis, by
`sources_fuzz.mangle`. Whatever the damage, the command gives no traceback (an exception out of
`main` fails the test) and says per file, in a line naming it, that it was refused or what it
loaded. A refused file leaves nothing of itself (no row of its batch in any table, no reject),
and a command whose files are all refused leaves every table as it was, but the log of load
batches that records the refusals and the data version stamps.

The readers' own fuzz tests (tests/test_sources_*.py) call `read()` many times; these go through
the whole load (staging, validation, transaction, derive, swap), so they are few: two commands
per format, and a handful of hypothesis examples of three files each.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.derive import rollups
from etl.cli import main
from tests import program as P
from tests import test_sources_caliper as caliper_t
from tests import test_sources_moodle as moodle_t
from tests import test_sources_qualtrics as qualtrics_t
from tests import test_sources_surveys as surveys_t
from tests import test_sources_teams as teams_t
from tests import test_sources_xapi as xapi_t
from tests import test_sources_zoom as zoom_t
from tests.sources_fuzz import mangle

FORMATS = ("qualtrics", "limesurvey", "gforms", "kobo", "teams", "zoom", "moodle", "xapi",
           "caliper")
SURVEY = {"exchange": "E1", "wave": "followup"}


def good_file(fmt: str, folder: Path) -> tuple[Path, dict]:
    """A valid export of `fmt` in its real shape, and the mapping that loads it."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "qualtrics":
        return (qualtrics_t.write_qualtrics(folder / "qualtrics.csv"),
                {**qualtrics_t.MAPPING, **SURVEY})
    if fmt in ("limesurvey", "gforms", "kobo"):
        by_mod = {m.FORMAT: (p, mp) for m, (p, mp) in surveys_t._good_files(folder).items()}
        path, mapping = by_mod[fmt]
        return path, {**{k: v for k, v in mapping.items() if k != "exchange_id"}, **SURVEY}
    if fmt == "teams":
        return (teams_t.write_report(folder / "teams.csv", teams_t.ROWS),
                {"timezone": "Europe/Madrid", "exchange": "E1", "dayfirst": False})
    if fmt == "zoom":
        return (zoom_t.write_report(folder / "zoom.csv", zoom_t.ROWS),
                {"timezone": "Europe/Madrid", "exchange": "E1"})
    if fmt == "moodle":
        return (moodle_t.write_export(folder / "moodle.csv", moodle_t.ROWS),
                {"timezone": "Europe/Madrid", "exchange": "E1"})
    if fmt == "xapi":
        return (xapi_t.write(folder, "xapi.json", [xapi_t.statement(i) for i in range(1, 6)]),
                {"exchange_id": "E1"})
    if fmt == "caliper":
        events = [caliper_t.assessment(i) for i in range(1, 6)]
        return caliper_t.write(folder, "caliper.json", caliper_t.envelope(events)), {
            "exchange_id": "E1"}
    raise AssertionError(fmt)


def _text(data: bytes) -> str:
    """The export's text (Teams downloads are UTF-16 with a byte order mark)."""
    return data.decode("utf-16") if data[:2] == b"\xff\xfe" else data.decode("utf-8-sig")


def damaged(fmt: str, folder: Path) -> tuple[Path, dict, list[Path], list[Path]]:
    """The fixture of `fmt`, its mapping, the damaged copies a load must refuse (cut inside
    the header; re-encoded as EBCDIC, which no export is in) and those it may read or refuse
    (bytes overwritten; cut in the middle of a record; re-encoded as UTF-32 with its byte order
    mark, which the loader reads, or a JSON reader refuses)."""
    good, mapping = good_file(fmt, folder / "good")
    data = good.read_bytes()
    rng = random.Random(f"damage-{fmt}")
    flipped = bytearray(data)
    for _ in range(12):
        flipped[rng.randrange(len(flipped))] = rng.randrange(256)
    # cut inside a record, past the header: the middle of a line in the file's last quarter
    cut = len(data) * 3 // 4
    while data[cut - 1:cut + 1] in (b"\n", b"\r\n") or data[cut:cut + 1] in (b"\n", b"\r"):
        cut += 1
    text = _text(data)
    files = {}
    for name, raw in (("header_cut", data[:25]),
                      ("ebcdic", text.encode("cp037", errors="replace")),
                      ("flipped", bytes(flipped)), ("truncated", data[:cut]),
                      ("utf32", text.encode("utf-32"))):
        files[name] = folder / f"{fmt}_{name}{good.suffix}"
        files[name].write_bytes(raw)
    return good, mapping, [files["header_cut"], files["ebcdic"]], [
        files["flipped"], files["truncated"], files["utf32"]]


# -- the warehouse before and after ---------------------------------------------------------------

# What every load rewrites, refused files or not: the data version and when it was built.
BOOKKEEPING = ("data_version", "rollups_data_version", rollups.META_FACTS_VERSION,
               "results_data_version", "built_at", "build_id", "results_generated_at",
               "results_seconds", "results_timings", "results_kept", "results_kept_rows",
               "rollups_timings", "rollups_incremental")


def tables(wh: Path) -> dict[str, str]:
    """Every table as a hash of its sorted rows; but the log of load batches (where a refusal
    is recorded) and the version and build stamps of `meta`."""
    con = duckdb.connect(str(wh), read_only=True)
    try:
        names = [(s, t) for s, t in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = "
            "'BASE TABLE' AND table_name <> 'load_batches' ORDER BY ALL").fetchall()]
        assert ("main", "meta") in names and len(names) > 10, names
        out = {}
        for s, t in names:
            where = (f"WHERE key NOT IN ({', '.join(repr(k) for k in BOOKKEEPING)})"
                     if t == "meta" else "")
            rows = con.execute(f'SELECT * FROM "{s}"."{t}" {where} ORDER BY ALL').fetchall()
            out[f"{s}.{t}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
        return out
    finally:
        con.close()


def traces_of(wh: Path, file: Path) -> dict[str, int]:
    """Rows that the file's batches left in any table with a batch_id, and its rejects."""
    con = duckdb.connect(str(wh), read_only=True)
    try:
        batches = [b for (b,) in con.execute(
            "SELECT batch_id FROM load_batches WHERE file = ?", [str(file)]).fetchall()]
        assert batches, f"{file}: no load batch records it"
        with_batch = [t for (t,) in con.execute(
            "SELECT DISTINCT table_name FROM information_schema.columns WHERE column_name = "
            "'batch_id' AND table_name <> 'load_batches'").fetchall()]
        out = {t: con.execute(f'SELECT count(*) FROM "{t}" WHERE batch_id IN '
                              f'({", ".join(map(str, batches))})').fetchall()[0][0]
               for t in with_batch}
        out["rejects (by file)"] = con.execute(
            "SELECT count(*) FROM rejects WHERE file = ?", [str(file)]).fetchall()[0][0]
        return {t: n for t, n in out.items() if n}
    finally:
        con.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return P.loaded_program(tmp_path_factory.mktemp("base"))


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", P.TEST_KEY)


def load(files: list[Path], fmt: str, mapping: dict, wh: Path, capsys) -> tuple[int, str]:
    """`python -m etl load FILES --format FMT --mapping M` in this process: exit code, output.
    An exception escaping `main` (a traceback for the user) fails the test by itself."""
    m = qualtrics_t.write_mapping(files[0].parent / f"{fmt}.mapping.yaml", mapping)
    capsys.readouterr()
    code = main(["load", *map(str, files), "--format", fmt, "--mapping", str(m),
                 "--warehouse", str(wh), "--quiet"])
    out = capsys.readouterr()
    return code, out.out + out.err


def check(files: list[Path], code: int, out: str, wh: Path, before: dict[str, str]) -> list[str]:
    """Each file: one summary line naming it, refused or loaded; a refused one left nothing."""
    assert code in (0, 1, 3), (code, out)
    assert "Traceback" not in out, out
    lines = out.splitlines()
    outcomes = []
    for f in files:
        refused = [ln for ln in lines if ln.startswith(f"error: {f}: refused: ")]
        loaded = [ln for ln in lines if ln.startswith(f"{f}: ") and "rows loaded" in ln]
        assert len(refused) + len(loaded) == 1, (f, out)
        if refused:
            assert len(refused[0]) < 700, refused[0]
            assert traces_of(wh, f) == {}, (f, traces_of(wh, f))
            outcomes.append("refused")
        else:
            outcomes.append("loaded")
    if code == 1 and set(outcomes) == {"refused"}:
        assert tables(wh) == before, "a refused load changed a table"
    return outcomes


@pytest.mark.parametrize("fmt", FORMATS)
def test_damaged_exports_of_every_format_through_the_loader(base, tmp_path, capsys, fmt):
    wh = P.warehouse_copy(base, tmp_path)
    good, mapping, refused, either = damaged(fmt, tmp_path / "in")
    before = tables(wh)
    code, out = load(refused, fmt, mapping, wh, capsys)
    assert code == 1 and check(refused, code, out, wh, before) == ["refused", "refused"], out
    assert tables(wh) == before  # table for table, nothing of either file
    # The good file beside the damaged ones: it loads, whatever they do.
    code, out = load([good, *either], fmt, mapping, wh, capsys)
    assert check([good, *either], code, out, wh, before)[0] == "loaded", out


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fmt=st.sampled_from(FORMATS), seeds=st.lists(st.integers(0, 2**32), min_size=3,
                                                   max_size=3, unique=True))
def test_randomly_mangled_exports_through_the_loader(base, capsys, fmt, seeds):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        wh = P.warehouse_copy(base, tmp)
        good, mapping = good_file(fmt, tmp / "good")
        files = []
        for s in seeds:
            f = tmp / f"mangled_{s}{good.suffix}"
            f.write_bytes(mangle(good.read_bytes(), s))
            files.append(f)
        before = tables(wh)
        code, out = load(files, fmt, mapping, wh, capsys)
        check(files, code, out, wh, before)
        shutil.rmtree(tmp / "good")
