"""A day of events appended to a lake (issue 16, toward issue 17's "a load costs what it adds"),
against the same day appended to the warehouse, in the same run.

    python benchmarks/lake_append.py --participants 100000
    python benchmarks/lake_append.py --warehouse W            # a demo warehouse, demo/ beside it
    python benchmarks/lake_append.py --warehouse W --rows 50000

With --participants, builds the demo first (`python -m etl demo`). Then:
1. loads the demo's contract files into a new lake (`etl.lake.load_into_lake`; timed: the first
   load) and derives it once (`analytics.derive.lake.derive` on DuckDB);
2. writes one new day of `--rows` events of people and exchanges already there
   (`incremental_load.day_of_events`);
3. the baseline: loads that day into a copy of the warehouse (`etl.load.load_paths`: the copy of
   the live file, the rows, the derive of every table, checkpoint and swap; phases timed);
4. the lake: loads the same day into the lake, then re-derives the touched days' facts and the
   cubes.

It prints each part, and the ratio of the parts that do the same work: storing the rows (the
warehouse's copy, read/insert, checkpoint and swap against the lake load) and the day facts and
cubes (the warehouse derive's rollups step against the lake derive). The warehouse's result
tables have no lake counterpart yet: their time is printed, not compared.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from incremental_load import day_of_events, meta, timed_load  # noqa: E402


def _demo(participants: int, folder: Path) -> Path:
    wh = folder / "warehouse.duckdb"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "etl", "demo", "--participants", str(participants),
                    "--warehouse", str(wh), "--quiet"], cwd=ROOT, check=True)
    print(f"demo of {participants:,} participants built in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return wh


def main(argv: list[str] | None = None) -> int:
    from analytics.derive import lake as derive_lake
    from etl import lake as lakes
    from etl.pseudonym import key_file

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--warehouse", type=Path, help="a demo warehouse with demo/ beside it")
    src.add_argument("--participants", type=int, help="build a demo of this size first")
    ap.add_argument("--rows", type=int, default=50_000, help="events in the new day")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lake-append-"))
    try:
        wh = args.warehouse or _demo(args.participants, work / "demo-wh")
        demo = wh.parent / "demo"
        lake = work / "lake"
        lake.mkdir()
        shutil.copy2(key_file(wh), lake / "pseudonym.key")  # the same pseudonyms as the warehouse
        t0 = time.perf_counter()
        lakes.load_into_lake([demo], lake)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        derive_lake.derive(lake)
        first_derive = time.perf_counter() - t0
        print(f"lake: first load {first:.1f} s, first derive {first_derive:.1f} s", flush=True)

        day = day_of_events(demo / "events.csv", args.rows, work / "day" / "events.csv")
        base = timed_load(wh, day, work / "baseline", keep=True)
        timings = json.loads(meta(work / "baseline" / "warehouse.duckdb")
                             .get("results_timings", "{}"))
        ph = base["phases_s"]
        store_wh = sum(ph.get(k, 0.0) for k in ("copy", "read", "insert", "before_swap",
                                                 "after_swap"))
        rollups_wh = float(timings.get("rollups", float("nan")))
        print(f"warehouse append: {base['load_s']:.1f} s (phases {json.dumps(ph)}; derive "
              f"{base['derive_s']:.1f} s, of which rollups {rollups_wh:.1f} s)", flush=True)

        t0 = time.perf_counter()
        (rep,) = lakes.load_into_lake([day], lake)
        store_lake = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = derive_lake.derive(lake)
        derive_s = time.perf_counter() - t0
        if rep.status != "loaded" or done.mode != "incremental":
            raise SystemExit(f"lake append: expected a loaded file and an incremental derive, got "
                             f"{rep.status} and {done.mode}")
        print(f"lake append: load {store_lake:.1f} s ({rep.rows_added:,} added), derive "
              f"{derive_s:.1f} s ({done.mode}, {len(done.days)} days)", flush=True)
        print(f"storing the rows: warehouse {store_wh:.1f} s -> lake {store_lake:.1f} s "
              f"(ratio {store_lake / store_wh:.2f})")
        print(f"day facts and cubes: warehouse rollups {rollups_wh:.1f} s -> lake derive "
              f"{derive_s:.1f} s (ratio {derive_s / rollups_wh:.2f})")
        print(f"result tables (warehouse only, no lake counterpart yet): "
              f"{base['derive_s'] - rollups_wh:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
