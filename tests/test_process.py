"""etl.process: the load's process-wide settings (no transparent huge pages, one BLAS thread),
checked in a fresh process: they change the process for good."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import ctypes
import json
import numpy as np
from threadpoolctl import threadpool_info
from etl import process, warehouse

def thp():
    for line in open("/proc/self/status"):
        if line.startswith("THP_enabled:"):
            return line.split()[1]
    return "absent"

def blas():
    return sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})

ctypes.CDLL(None).prctl(41, 0, 0, 0, 0)  # huge pages on, whatever this process inherited
before = (thp(), blas())
np.ones((300, 300)) @ np.ones((300, 300))  # BLAS loaded and used
with warehouse.build_next(r"WAREHOUSE") as con:  # a load's writer applies them
    pass
print(json.dumps([before, (thp(), blas())]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")
def test_a_writer_turns_off_huge_pages_and_blas_threads(tmp_path: Path) -> None:
    probe = _PROBE.replace("WAREHOUSE", str(tmp_path / "w.duckdb"))
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert after[0] == "0", out.stdout  # /proc's THP_enabled: 0 once the writer has started
    assert after[1] == [1], out.stdout
    assert before[0] == "1", out.stdout  # on before the writer started
