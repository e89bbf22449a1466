"""What the dose–response and setting/modality/purpose tables (issue 13) add to the derive step.

Recomputes the result tables of a demo warehouse in this process (read-only, nothing written)
with and without res_dose_response, res_dose_bins and res_moderation, alternating the two runs
`--repeat` times, and prints the best time of each, the issue-13 tables' own timings and the
ratio (target: under 1.20). The machine's load average is printed: on a shared machine
wall-clock times grow with it, the ratio much less.

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
    own: dict[str, float] = {}
    con = duckdb.connect(str(wh), read_only=True)
    try:
        for _ in range(args.repeat):
            for label, tables in (("without", without), ("with", None)):
                t0 = time.perf_counter()
                res = materialise.compute_results(con, tables=tables)
                s = time.perf_counter() - t0
                if s < best.get(label, float("inf")):
                    best[label] = s
                    if label == "with":
                        own = {t: res.timings.get(t, 0.0) for t in sorted(mine)}
    finally:
        con.close()
    print(f"warehouse {wh}; load average {os.getloadavg()[0]:.1f}")
    print(f"derive without the issue-13 tables: {best['without']:.1f} s (best of {args.repeat})")
    print(f"derive with them:                   {best['with']:.1f} s")
    print("their own timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in own.items()))
    print(f"ratio with / without: {best['with'] / best['without']:.3f} (target < 1.20)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
