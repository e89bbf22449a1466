"""Time of a full funder PDF snapshot of the demo, cold (a new process) and warm (engine up).

    python benchmarks/snapshot.py                              # the 2,000 demo, built here
    python benchmarks/snapshot.py --reuse /tmp/w2k             # build once, then reuse
    python benchmarks/snapshot.py --participants 1000000 --reuse /tmp/w1m
    python benchmarks/snapshot.py --warehouse data/warehouse.duckdb --repeat 5

Cold: `python -m reports snapshot` in a new process, as cron runs it (imports, the warehouse
opened, Chromium started, every query and figure computed, the PDF printed). Warm: in this
process, after one snapshot has started the engine and filled the query cache, the median of
--repeat snapshots of the whole program, and (warm, new filters) of a filter never asked
before, whose queries are not cached. Targets (issue 12): cold < 15 s and warm < 5 s on
2 cores, the 1M demo under 30 s. The ratio printed is time / target (below 1: met).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_COLD, TARGET_WARM, TARGET_1M = 15.0, 5.0, 30.0


def _warehouse(args: argparse.Namespace) -> Path:
    if args.warehouse:
        return Path(args.warehouse)
    folder = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="ei-snap-"))
    wh = folder / "warehouse.duckdb"
    if not wh.exists():
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "EXCHANGE_IMPACT_KEY": os.environ.get(
            "EXCHANGE_IMPACT_KEY", "benchmark-key-not-secret-0123456789")}
        r = subprocess.run([sys.executable, "-m", "etl", "demo", "--participants",
                            str(args.participants), "--warehouse", str(wh), "--quiet"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"building the demo failed: {r.stderr.strip()}")
    return wh


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--participants", type=int, default=2000)
    p.add_argument("--reuse", help="folder to build the demo in once and reuse")
    p.add_argument("--warehouse", help="an existing warehouse file")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    wh = _warehouse(args)
    os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = str(wh)
    out = Path(tempfile.mkdtemp(prefix="ei-snap-out-"))

    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "reports", "snapshot", "--out",
                        str(out / "cold.pdf"), "--quiet"], cwd=ROOT, capture_output=True,
                       text=True)
    cold = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"cold snapshot failed: {r.stderr.strip()}")

    from analytics.read.filters import Filters
    from reports import engine
    from reports.snapshot import write_snapshot

    write_snapshot(Filters(), out / "first.pdf")  # engine up, cache filled
    warm = []
    for i in range(args.repeat):
        t = time.perf_counter()
        write_snapshot(Filters(), out / f"warm{i}.pdf")
        warm.append(time.perf_counter() - t)
    t = time.perf_counter()
    write_snapshot(Filters(role=("teacher",)), out / "warm-new-filter.pdf")
    warm_new = time.perf_counter() - t
    engine.shutdown()

    import duckdb

    con = duckdb.connect(str(wh), read_only=True)
    try:  # what the warehouse holds, whichever way it was named
        people = con.execute("SELECT count(*) FROM participants").fetchall()[0][0]
    finally:
        con.close()
    target_cold = TARGET_1M if people >= 1_000_000 else TARGET_COLD
    res = {
        "warehouse": str(wh), "participants": people, "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 1),
        "cold_s": round(cold, 2), "cold_target_s": target_cold,
        "cold_ratio": round(cold / target_cold, 2),
        "warm_median_s": round(statistics.median(warm), 2), "warm_runs_s":
            [round(w, 2) for w in warm], "warm_target_s": TARGET_WARM,
        "warm_ratio": round(statistics.median(warm) / TARGET_WARM, 2),
        "warm_new_filter_s": round(warm_new, 2),
        "warm_new_filter_ratio": round(warm_new / TARGET_WARM, 2),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
