"""What the dose–response and setting/modality/purpose tables (issue 13) add to the derive step.

Recomputes the result tables of a demo warehouse in this process (read-only, nothing written)
with and without res_dose_response, res_dose_bins and res_moderation, alternating the two runs
`--repeat` times, and prints the best time of each, the issue-13 tables' own timings and the
ratio (target: under 1.20). On a shared machine wall-clock times swing with the other
processes (the load average is printed), so the ratio is also given in CPU time of this
process (time.process_time: every thread, DuckDB's included), which they disturb much less.

    python benchmarks/gains_tables.py                         # fresh 10,000-participant demo
    python benchmarks/gains_tables.py --warehouse path/to/warehouse.duckdb
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--participants", type=int, default=10_000)
    p.add_argument("--warehouse", type=Path)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()

    import duckdb

    from analytics.derive import materialise

    wh = args.warehouse
    if wh is None:
        wh = Path(tempfile.mkdtemp(prefix="ei-bench-")) / "warehouse.duckdb"
        subprocess.run([sys.executable, "-m", "etl", "demo", "--participants",
                        str(args.participants), "--warehouse", str(wh), "--quiet"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    mine = set(materialise.ISSUE13_TABLES)
    without = [t for t in materialise.RESULT_NAMES if t not in mine]
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = {}
    con = duckdb.connect(str(wh), read_only=True)
    try:
        for _ in range(args.repeat):
            for label, tables in (("without", without), ("with", None)):
                t0, c0 = time.perf_counter(), time.process_time()
                res = materialise.compute_results(con, tables=tables)
                s = time.perf_counter() - t0
                cpu[label] = min(cpu.get(label, float("inf")), time.process_time() - c0)
                if s < best.get(label, float("inf")):
                    best[label] = s
                    steps[label] = dict(res.timings)
    finally:
        con.close()
    print(f"warehouse {wh}; load average {os.getloadavg()[0]:.1f}")
    print(f"derive without the issue-13 tables: {best['without']:.1f} s (best of {args.repeat})")
    print(f"derive with them:                   {best['with']:.1f} s")
    print("their own timings: " + ", ".join(f"{k} {steps['with'].get(k, 0.0):.2f} s"
                                            for k in sorted(mine)))
    print("the other steps, without → with: " + ", ".join(
        f"{k} {v:.1f} → {steps['with'].get(k, 0.0):.1f}" for k, v in steps["without"].items()))
    print(f"ratio with / without, wall clock: {best['with'] / best['without']:.3f}")
    print(f"CPU time without {cpu['without']:.1f} s, with {cpu['with']:.1f} s: ratio "
          f"{cpu['with'] / cpu['without']:.3f} (target < 1.20)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
