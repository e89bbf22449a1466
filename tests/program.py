"""A small hand-written program in the contract's formats, for ETL tests (and a key to load it).

Written by hand, not by the demo generator, so the expected rows, rejects and row numbers are
known exactly. `BAD_ROWS` lists each deliberate mistake with the rule it must be rejected for.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_KEY = "tests-pseudonymisation-key-0123456789"

CLUSTERS = [
    {"cluster_id": "C1", "name": "North Sea Schools", "kind": "cluster"},
    {"cluster_id": "C2", "name": "Red Andina", "kind": "Network"},
]
INSTITUTIONS = [
    {"institution_id": "I1", "name": "Gymnasium Nord", "country": "DE", "cluster_id": "C1",
     "timezone": "Europe/Berlin", "kind": "school", "city": "Bremen",
     "income_group": "High income", "connectivity": "high"},
    {"institution_id": "I2", "name": "Colegio Sur", "country": "Peru", "cluster_id": "C2",
     "timezone": "America/Lima", "kind": "school", "city": "Lima",
     "income_group": "upper-middle", "connectivity": "low"},
    {"institution_id": "I3", "name": "Tokyo Kōgyō", "country": "JPN", "cluster_id": "C1",
     "timezone": "Asia/Tokyo", "kind": "university", "city": "東京",
     "income_group": "high", "connectivity": "medium"},
    {"institution_id": "I4", "name": "Atlantis Academy", "country": "Atlantis", "cluster_id": "C1",
     "timezone": "Europe/Berlin", "kind": "school", "city": "", "income_group": "",
     "connectivity": ""},  # row 5: country
    {"institution_id": "I5", "name": "Moon School", "country": "FR", "cluster_id": "C2",
     "timezone": "Mars/Olympus", "kind": "school", "city": "", "income_group": "",
     "connectivity": ""},  # row 6: timezone
]
EXCHANGES = [
    {"exchange_id": "E1", "name": "Water Futures", "program": "Stevens", "cluster_id": "C1",
     "modality": "virtual", "setting": "curricular", "purpose": "joint science project",
     "language": "en", "start_date": "2026-01-10", "end_date": "2026-06-30", "budget": "12000",
     "currency": "EUR"},
    {"exchange_id": "E2", "name": "Voces", "program": "eTwinning", "cluster_id": "C2",
     "modality": "blended", "setting": "extracurricular", "purpose": "language practice",
     "language": "es", "start_date": "soon", "end_date": "2026-05-01", "budget": "",
     "currency": ""},  # row 3: date
]
PARTICIPANTS = [
    {"participant_id": "STU-0001", "institution_id": "I1", "role": "student", "gender": "f",
     "birth_year": "2009", "comparison": "false", "name": "Anna Schmidt",
     "email": "anna.schmidt@example.org"},
    {"participant_id": "STU-0002", "institution_id": "I2", "role": "student", "gender": "m",
     "birth_year": "2008", "comparison": "", "name": "José Pérez",
     "email": "jose.perez@example.org"},
    {"participant_id": "STU-0003", "institution_id": "I3", "role": "teacher", "gender": "",
     "birth_year": "1979", "comparison": "yes", "name": "佐藤 花子",
     "email": "sato.hanako@example.jp"},
    {"participant_id": "STU-0004", "institution_id": "I9", "role": "student", "gender": "",
     "birth_year": "2010", "comparison": "", "name": "Nobody Known",
     "email": "nobody@example.org"},  # row 5: reference
]
EVENTS = [
    {"participant_id": "STU-0001", "exchange_id": "E1", "occurred_at": "2026-03-04 10:00:00",
     "activity": "video call", "minutes": "45"},  # naive, Berlin (CET): 09:00 UTC
    {"participant_id": "STU-0002", "exchange_id": "E1", "occurred_at": "2026-03-04T10:00:00-05:00",
     "activity": "message", "minutes": ""},  # explicit offset: 15:00 UTC
    {"participant_id": "STU-0003", "exchange_id": "E1", "occurred_at": "2026-03-05 08:30",
     "activity": "upload", "minutes": "5"},  # naive, Tokyo: 23:30 UTC the day before
    {"participant_id": "STU-9999", "exchange_id": "E1", "occurred_at": "2026-03-05 09:00",
     "activity": "message", "minutes": "3"},  # row 5: reference (participant)
    {"participant_id": "STU-0001", "exchange_id": "E7", "occurred_at": "2026-03-06 09:00",
     "activity": "message", "minutes": "3"},  # row 6: reference (exchange)
    {"participant_id": "STU-0001", "exchange_id": "E1", "occurred_at": "2026-13-45 09:00",
     "activity": "message", "minutes": "3"},  # row 7: timestamp
]
ITEMS = ["icc_1", "icc_2", "icc_3", "icc_4"]
RESPONSES = [
    {"participant_id": "STU-0001", "exchange_id": "E1", "wave": "pre",
     "submitted_at": "2026-01-12T09:00:00+01:00",
     "icc_1": "4", "icc_2": "5", "icc_3": "2", "icc_4": "4"},
    {"participant_id": "STU-0001", "exchange_id": "E1", "wave": "post",
     "submitted_at": "2026-06-20T09:00:00+01:00",
     "icc_1": "5", "icc_2": "5", "icc_3": "1", "icc_4": "9"},
    # row 3, icc_4: range
    {"participant_id": "STU-0002", "exchange_id": "E1", "wave": "pre",
     "submitted_at": "2026-01-12 09:00", "icc_1": "3", "icc_2": "", "icc_3": "3", "icc_4": "3"},
    {"participant_id": "STU-0002", "exchange_id": "E1", "wave": "later",
     "submitted_at": "2026-01-12 09:00", "icc_1": "3", "icc_2": "3", "icc_3": "3", "icc_4": "3"},
    # row 5: wave
]
BAD_ROWS = {  # (file, row, column, rule)
    ("institutions.csv", 5, "country", "country"),
    ("institutions.csv", 6, "timezone", "timezone"),
    ("exchanges.csv", 3, "start_date", "date"),
    ("participants.csv", 5, "institution_id", "reference"),
    ("events.csv", 5, "participant_id", "reference"),
    ("events.csv", 6, "exchange_id", "reference"),
    ("events.csv", 7, "occurred_at", "timestamp"),
    ("responses.csv", 3, "icc_4", "range"),
    ("responses.csv", 5, "wave", "wave"),
}
IDENTIFYING = [p[k] for p in PARTICIPANTS for k in ("participant_id", "name", "email")] + [
    "STU-9999"]


def q(wh: Path, sql: str, params=None) -> list[tuple]:
    """Rows of a query on a warehouse file, opened read-only as a reader would."""
    import duckdb

    con = duckdb.connect(str(wh), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_program(folder: Path) -> Path:
    for name, rows in (("clusters", CLUSTERS), ("institutions", INSTITUTIONS),
                       ("exchanges", EXCHANGES), ("participants", PARTICIPANTS),
                       ("events", EVENTS), ("responses", RESPONSES)):
        write_csv(folder / f"{name}.csv", rows)
    return folder


def run_etl(
    *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the real command line, as a user would."""
    e = {**os.environ, "EXCHANGE_IMPACT_KEY": TEST_KEY, "PYTHONPATH": str(ROOT)}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "etl", *args], capture_output=True, text=True,
                          cwd=ROOT, env=e, timeout=timeout)


# The environment of a load that skips the derive step (`etl.phases.derive_skipped`), for tests
# of loading and reading rows: their loads need not compute every result table (≈ 1 s a load,
# and the statistics libraries' import in a new process). Never for a test that reads a
# derived table or checks the derive step.
NO_DERIVE = {"EXCHANGE_IMPACT_TEST_SKIP_DERIVE": "1"}


def loaded_program(folder: Path, *, derive: bool = True) -> Path:
    """The hand-written program loaded into a warehouse under `folder` (participants STU-0001..3
    and exchange E1 exist; the program's planted bad rows make the load exit 3). With
    `derive=False` the load skips the derive step (`NO_DERIVE`): no result or rollup tables."""
    wh = folder / "wh" / "warehouse.duckdb"
    res = run_etl("load", str(write_program(folder / "in")), "--warehouse", str(wh), "--quiet",
                  env=None if derive else NO_DERIVE)
    assert res.returncode == 3, res.stdout + res.stderr
    return wh


def warehouse_copy(base: Path, folder: Path) -> Path:
    """A copy of the warehouse `base` for one test to load into."""
    import shutil

    out = folder / "wh" / "warehouse.duckdb"
    out.parent.mkdir(parents=True)
    shutil.copyfile(base, out)
    return out


def wait_for_phase(flag: Path, proc: subprocess.Popen) -> None:
    """Until a load held by the phase hook (`etl.phases`, ``PHASE=hold:DIR``) says it reached
    its phase (`flag` = DIR/PHASE.reached); if the load ends first, the test fails with its
    status. Polls for the file the loader creates; no outcome depends on timing."""
    import pytest

    while not flag.exists():
        if proc.poll() is not None:
            pytest.fail(f"the load ended (status {proc.returncode}) before {flag.stem}")
        time.sleep(0.01)
