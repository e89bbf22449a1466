"""`python -m etl inspect` and `mapping new`, the shared real samples, and damaged exports.

inspect must say what a load would do without touching the warehouse; a damaged export must be
one line and a non-zero exit, with nothing of it in the warehouse.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import yaml

from etl.load import load_paths
from etl.pseudonym import KEY_ENV, pseudonym
from tests import program as P
from tests.test_sources_qualtrics import MAPPING, write_mapping, write_qualtrics

q = P.q
ROOT = Path(__file__).resolve().parent.parent
SHARED = next((d for d in (Path("/work/shared"), ROOT.parent / "shared", ROOT.parent.parent
                           / "shared") if (d / "samples" / "qualtrics_sample.csv").exists()), None)


# Loads here are about the rows read and loaded, never the derived tables (conftest.py).
pytestmark = pytest.mark.usefixtures("no_derive")


def digest(folder: Path) -> dict[str, str]:
    """Every file under the warehouse's folder with its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return P.loaded_program(tmp_path_factory.mktemp("base"))


@pytest.fixture
def wh(base: Path, tmp_path: Path) -> Path:
    return P.warehouse_copy(base, tmp_path)


def load_roster(roster: Path, wh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The roster a sample's people join first, loaded whole (what exit 0 of `etl load` said).
    Loaded in this process (`load_paths`): it sets the stage for the inspect and load under
    test, which stay commands of their own; a new process would add ≈ 2.5 s of imports."""
    monkeypatch.setenv(KEY_ENV, P.TEST_KEY)
    reports = load_paths([roster], wh)
    assert [(r.status, r.rows_rejected) for r in reports] == [("loaded", 0)], [
        r.summary() for r in reports]


def test_inspect_says_what_the_file_is_and_what_a_load_would_reject(wh: Path, tmp_path: Path):
    f = write_qualtrics(tmp_path / "qualtrics_post.csv")
    m = write_mapping(tmp_path / "m.yaml", {**MAPPING, "exchange": "E1"})
    before = digest(wh.parent)
    res = P.run_etl("inspect", str(f), "--mapping", str(m), "--wave", "post",
                    "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    for line in (
        "format: qualtrics (three header rows (ImportId JSON)), holds responses",
        "encoding: UTF-8",
        "separator: comma; header rows: 3",
        "kind: responses",
        "rows: 2",  # 4 responses: one unfinished, one preview
        "date range (submitted_at): 2026-06-20 14:00:00 to 2026-06-21 15:30:00",
        "participant id: column participant_id, pseudonymised (HMAC) on load",
        "wave: 'post' (--wave or mapping)",
        "exchange_id: 'E1' (--exchange or mapping)",
        "items: icc_1, icc_2, icc_3, icc_4",
        "note: 1 unfinished response (Finished = 0 or Progress < 100) not loaded",
        "note: Qualtrics metadata not stored (IP address, location, names and e-mails included)",
        f"would reject: {f}: row 5, column icc_2: range: '9' is outside the range 1 to 5",
    ):
        assert line in out, (line, out)
    # STU-0001's post answers in the program (icc_1..3; icc_4 was refused there) were submitted
    # at another time: a load would change those 3 and add icc_4 and STU-0002's 3.
    assert "a load would bring 2 of 2 rows, reject 0 (by rule: range 1)" in out
    assert "answers in responses: 4 added, 3 changed, 0 removed, 0 unchanged" in out, out
    # Nothing of the warehouse's folder changed: no new version, no lock, no next file.
    assert digest(wh.parent) == before
    assert "203.0.113.7" not in out and "Anna" not in out


def test_inspect_without_a_warehouse_creates_none(tmp_path: Path):
    f = write_qualtrics(tmp_path / "export.csv")
    m = write_mapping(tmp_path / "m.yaml", {**MAPPING, "exchange": "E1", "wave": "pre"})
    wh = tmp_path / "none" / "warehouse.duckdb"
    res = P.run_etl("inspect", str(f), "--mapping", str(m), "--warehouse", str(wh),
                    env={"EXCHANGE_IMPACT_KEY": ""})
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"no warehouse at {wh}" in res.stdout
    assert "reference" in res.stdout
    assert not wh.parent.exists()


def test_inspect_of_contract_files_and_of_an_unreadable_one(wh: Path, tmp_path: Path):
    ev = P.write_csv(tmp_path / "events_new.csv", [
        {"participant_id": "STU-0001", "exchange_id": "E1", "occurred_at": "2026-04-01 10:00",
         "activity": "message", "minutes": "2"},
        {"participant_id": "STU-0777", "exchange_id": "E1", "occurred_at": "2026-04-02 10:00",
         "activity": "message", "minutes": "2"}])
    bad = tmp_path / "broken.csv"
    write_qualtrics(bad)
    bad.write_bytes(bad.read_bytes()[:250])
    res = P.run_etl("inspect", str(ev), str(bad), "--warehouse", str(wh))
    assert res.returncode == 1
    assert "format: contract file" in res.stdout and "kind: events" in res.stdout
    assert "rows: 2" in res.stdout
    assert f"would reject: {ev}: row 3, column participant_id: reference" in res.stdout
    assert res.stderr.strip() == (f"error: {bad}: refused: ends inside its header rows: a "
                                  "truncated or damaged export? Export it again")


def test_mapping_new_writes_a_starting_mapping_that_loads_once_filled(wh: Path,
                                                                      tmp_path: Path):
    f = write_qualtrics(tmp_path / "qualtrics_post.csv")
    res = P.run_etl("mapping", "new", str(f))
    out = tmp_path / "qualtrics_post.mapping.yaml"
    assert res.returncode == 0 and str(out) in res.stdout, res.stdout + res.stderr
    text = out.read_text(encoding="utf-8")
    assert "QID7_2: ¿Cuánto está de acuerdo? - Hablo con personas de otros países" in text
    m = yaml.safe_load(text)
    assert m["format"] == "qualtrics" and m["participant"] == "ExternalReference"
    assert m["timezone"] == "America/Denver"  # from the export's JSON header row
    assert list(m["items"]) == ["Q1_1", "Q1_2", "Q1_3", "Q1_4", "Q2"]
    # A second run does not overwrite the user's edits.
    again = P.run_etl("mapping", "new", str(f))
    assert again.returncode == 1 and "exists" in again.stderr
    m["items"].update({"Q1_1": "icc_1", "Q1_2": "icc_2", "Q1_3": "icc_3", "Q1_4": "icc_4"})
    m.update({"wave": "followup", "exchange": "E1"})
    write_mapping(out, m)
    res = P.run_etl("load", str(f), "--mapping", str(out), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    assert q(wh, "SELECT count(*) FROM responses WHERE wave = 'followup'") == [(7,)]


@pytest.mark.skipif(SHARED is None, reason="the shared samples (../shared) are not here")
def test_the_shared_qualtrics_sample_through_inspect_and_load(wh: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    sample = SHARED / "samples" / "qualtrics_sample.csv"
    # The sample has no ExternalReference or e-mail: its ResponseId is the person here, and
    # that person joins the program's roster first.
    rid = "R_2YPOQ602ER1jkf1"
    roster = P.write_csv(tmp_path / "participants_sample.csv", [
        {"participant_id": rid, "institution_id": "I1", "role": "student"}])
    load_roster(roster, wh, monkeypatch)
    m = write_mapping(tmp_path / "m.yaml", {"participant": "ResponseId", "items": {"QID1": "icc_1"},
                                            "timezone": "Europe/Zurich"})
    ins = P.run_etl("inspect", str(sample), "--mapping", str(m), "--wave", "pre",
                    "--exchange", "E1", "--warehouse", str(wh))
    assert ins.returncode == 0, ins.stdout + ins.stderr
    assert "format: qualtrics (three header rows (ImportId JSON))" in ins.stdout
    assert "rows: 1" in ins.stdout and "a load would bring 1 of 1 rows" in ins.stdout
    res = P.run_etl("load", str(sample), "--mapping", str(m), "--wave", "pre", "--exchange",
                    "E1", "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    pid = pseudonym(rid, P.TEST_KEY.encode())
    assert q(wh, "SELECT item, value, strftime(submitted_at, '%Y-%m-%d %H:%M:%S'), language "
                 "FROM responses WHERE participant_id = ?", [pid]) == [
        ("icc_1", 2.0, "2017-07-18 06:28:48", "de")]  # Zurich, CEST = UTC+2
    nowhere_in_the_warehouse(wh, ["130.92.34.66", "47.115097045898", rid])


def nowhere_in_the_warehouse(wh: Path, values: list[str]) -> None:
    """No value is in any cell of any table (as text, any case), nor in the file's bytes.

    DuckDB compresses strings on disk, so the bytes alone prove little: every table is read
    back and each of its cells searched too.
    """
    import duckdb

    blob = wh.read_bytes()
    con = duckdb.connect(str(wh), read_only=True)
    try:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                             "WHERE table_type = 'BASE TABLE'").fetchall()
        assert len(tables) > 5, tables
        cells = ["\x1f".join(map(str, row)).lower()
                 for schema, table in tables
                 for row in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()]
    finally:
        con.close()
    text = "\x1e".join(cells)
    for v in values:
        assert v.lower() not in text, v
        assert v.encode() not in blob and v.encode("utf-16-le") not in blob, v


def _zoom_sample(tmp_path: Path) -> tuple[list[dict], dict, list[str]]:
    """The Zoom sample's people (by e-mail, lower case, as the reader links them) in the
    roster; the exchange from --exchange (the report has none)."""
    import csv

    with open(SHARED / "samples" / "zoom_participants_heroes_full.csv", encoding="utf-8") as f:
        recs = list(csv.reader(f))[4:]  # after the preamble, separator and header
    people = sorted({r[1].lower() for r in recs})
    names = [r[0] for r in recs]
    return ([{"participant_id": p, "institution_id": "I1", "role": "student"} for p in people],
            {"timezone": "America/Chicago"}, people + names + ["Loki Laufeyson"])


@pytest.mark.skipif(SHARED is None, reason="the shared samples (../shared) are not here")
@pytest.mark.parametrize("sample,roster,mapping,args,events,secrets", [
    # 31 rows, 27 people: rejoins add up (Loki: one row, 9:54:15 AM Chicago = 15:54:15 UTC)
    ("zoom_participants_heroes_full.csv", None, None, ("--exchange", "E1"),
     {"loki_asgardian@marvel.com": [("2021-11-19 15:54:15", "live_session", 128.0)],
      "thunderbird-ii_unknown@marvel.com": [("2021-11-19 16:11:03", "live_session", 3.0)]},
     None),
    # 20 log lines, 13 of no logged-in user; `dd/mm/yy, HH:MM` in Madrid (CET = UTC+1)
    ("moodle_example_platform_logs.csv", ["User 58", "User 287"],
     {"timezone": "Europe/Madrid", "exchange": "E1"}, (),
     {"User 58": [("2023-01-23 11:09:00", "moodle:Dashboard viewed", None),
                  ("2023-01-23 11:09:00", "moodle:Log report viewed", None),
                  ("2023-01-23 11:09:00", "moodle:User has logged in", None)],
      "User 287": [("2023-01-23 10:56:00", "moodle:Course module viewed", None),
                   ("2023-01-23 10:56:00", "moodle:Course module viewed", None),
                   ("2023-01-23 10:56:00", "moodle:Course viewed", None),
                   ("2023-01-23 10:56:00", "moodle:The status of the submission has been "
                                           "viewed.", None)]},
     ["000.00.00.000"]),
    # one statement; the actor is an LMS account; the course (grouping) mapped to E1
    ("xapi_moodle_assignment_submitted.json", ["stutest"],
     {"exchange_from": {"http://localhost:8080/moodle/moodle/course/view.php?id=2": "E1"}}, (),
     {"stutest": [("2016-04-07 16:03:40", "completed", None)]},
     ["0:0:0:0:0:0:0:1", "FYcVzA4iDF"]),
])
def test_the_shared_log_samples_through_inspect_and_load(wh: Path, tmp_path: Path, sample,
                                                         roster, mapping, args, events,
                                                         secrets, monkeypatch: pytest.MonkeyPatch):
    """The real Zoom, Moodle and xAPI samples: inspect says what a load would do, the load
    brings every event of the roster's people, pseudonymised, and no identifier, name or IP
    address of the file is in any table of the warehouse."""
    f = SHARED / "samples" / sample
    if roster is None:
        people, mapping, secrets = _zoom_sample(tmp_path)
    else:
        people = [{"participant_id": p, "institution_id": "I1", "role": "student"}
                  for p in roster]
        secrets = [*roster, *secrets]
    r = P.write_csv(tmp_path / "participants_sample.csv", people)
    load_roster(r, wh, monkeypatch)
    m = write_mapping(tmp_path / "m.yaml", mapping)
    n = sum(len(v) for v in events.values()) if roster else 27
    before = digest(wh.parent)
    ins = P.run_etl("inspect", str(f), "--mapping", str(m), *args, "--warehouse", str(wh))
    assert ins.returncode == 0, ins.stdout + ins.stderr
    assert digest(wh.parent) == before
    fmt = sample.split("_")[0]
    assert f"format: {fmt}" in ins.stdout and "exchange_id: MISSING" not in ins.stdout
    assert f"a load would bring {n} of {n} rows, reject 0" in ins.stdout, ins.stdout
    res = P.run_etl("load", str(f), "--mapping", str(m), *args, "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    batch = q(wh, "SELECT max(batch_id) FROM load_batches WHERE status = 'loaded'")[0][0]
    assert q(wh, "SELECT count(*), count(DISTINCT participant_id), min(exchange_id), "
                 "max(exchange_id) FROM events WHERE batch_id = ?", [batch]) == [
        (n, len(people), "E1", "E1")]
    key = P.TEST_KEY.encode()
    for who, want in events.items():
        assert q(wh, "SELECT strftime(occurred_at, '%Y-%m-%d %H:%M:%S'), activity, minutes "
                     "FROM events WHERE participant_id = ? AND batch_id = ? ORDER BY ALL",
                 [pseudonym(who, key), batch]) == want, who
    # every participant id of the batch is a pseudonym of someone on the roster
    pids = {p for (p,) in q(wh, "SELECT participant_id FROM events WHERE batch_id = ?", [batch])}
    assert pids == {pseudonym(p["participant_id"], key) for p in people}
    nowhere_in_the_warehouse(wh, secrets)


# -- damaged exports ---------------------------------------------------------------------------

def _damaged(tmp_path: Path) -> list[Path]:
    good = write_qualtrics(tmp_path / "good.csv").read_bytes()
    lines = good.split(b"\r\n")
    out = []
    for name, data in (
        ("cut_in_header.csv", good[:200]),
        ("cut_in_json_row.csv", b"\r\n".join(lines[:3])[:-40]),
        ("cut_mid_row.csv", good[:-60]),
        ("binary.csv", bytes(random.Random(3).randrange(256) for _ in range(3000))),
        ("zero_bytes.csv", good[:500] + b"\0\0\0\x81\x8d" + good[500:]),
    ):
        p = tmp_path / name
        p.write_bytes(data)
        out.append(p)
    return out


def test_truncated_or_mangled_exports_are_one_line_and_leave_the_warehouse_as_it_was(
        wh: Path, tmp_path: Path):
    """Each damaged file is refused in one line of its own that names it, by `load` (with the
    format detected and named) and by `inspect`. The five files go through one command each
    (a command's files are read one by one, each refused on its own: one command of five
    costs what one of one does, the derive step and the interpreter's start included)."""
    m = write_mapping(tmp_path / "m.yaml", {**MAPPING, "exchange": "E1", "wave": "followup"})
    tables = ("participants", "events", "responses", "rejects")
    before = {t: q(wh, f"SELECT count(*) FROM {t}") for t in tables}
    damaged = _damaged(tmp_path)
    names = [str(f) for f in damaged]

    def one_line_each(out: str, what: str) -> None:
        lines = out.strip().splitlines()
        assert len(lines) == len(damaged), (what, lines)
        for f in names:
            mine = [ln for ln in lines if f"{f}:" in ln]
            assert len(mine) == 1 and "refused" in mine[0], (what, f, lines)

    for fmt in ("auto", "qualtrics"):
        res = P.run_etl("load", *names, "--format", fmt, "--mapping", str(m),
                        "--warehouse", str(wh))
        assert res.returncode == 1, (fmt, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        one_line_each(res.stdout + res.stderr, f"load --format {fmt}")
    ins = P.run_etl("inspect", *names, "--format", "qualtrics", "--mapping", str(m),
                    "--warehouse", str(wh))
    assert ins.returncode == 1 and "Traceback" not in ins.stderr, ins.stderr
    one_line_each(ins.stderr, "inspect")
    # Refusals are recorded as such; no row of any damaged file reached a table.
    assert {t: q(wh, f"SELECT count(*) FROM {t}") for t in tables} == before
    assert q(wh, "SELECT DISTINCT status FROM load_batches WHERE file LIKE ?",
             [f"{tmp_path}%"]) == [("refused",)]
    assert {f for (f,) in q(wh, "SELECT DISTINCT file FROM load_batches WHERE file LIKE ?",
                            [f"{tmp_path}%"])} == set(names)


def test_randomly_mangled_exports_never_give_a_traceback(wh: Path, tmp_path: Path):
    good = write_qualtrics(tmp_path / "good.csv").read_bytes()
    m = write_mapping(tmp_path / "m.yaml", {**MAPPING, "exchange": "E1", "wave": "followup"})
    rnd = random.Random(11)
    for i in range(4):
        data = bytearray(good)
        for _ in range(rnd.choice((1, 5, 40))):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        f = tmp_path / f"mangled_{i}.csv"
        f.write_bytes(bytes(data))
        n_before = q(wh, "SELECT count(*) FROM responses")[0][0]
        res = P.run_etl("load", str(f), "--format", "qualtrics", "--mapping", str(m),
                        "--warehouse", str(wh))
        assert "Traceback" not in res.stderr, res.stderr
        assert res.returncode in (0, 1, 3), res.stderr
        if res.returncode == 1:
            assert len((res.stdout + res.stderr).strip().splitlines()) == 1
            assert q(wh, "SELECT count(*) FROM responses")[0][0] == n_before
