"""A load that adds a day of events: what it costs with the derive keeping what reads no event
and the rollups following the touched days and people (issue 17 part 2), against the same load
recomputing every result table and rebuilding every rollup (as before issue 17).

    python benchmarks/incremental_load.py --warehouse W      # W beside its demo/ folder
    python benchmarks/incremental_load.py --warehouse W --rows 50000

Takes a demo warehouse (`python -m etl demo --participants N --warehouse W`, which writes the
demo's contract files to demo/ beside W), writes one new day of `--rows` events of people and
exchanges already there (after the last event), copies W twice and loads the file into each
copy with `etl.load.load_paths`: once as this revision does (result tables that read no event
kept, `materialise.EVENTS_FREE`; rollups brought up to date, `rollups._append_events`), once
with nothing kept and every rollup rebuilt. Prints wall seconds of each load, of
its derive step (meta results_seconds) and the derive's slowest steps, the wall time of the
load's phases (copy of the live file, the file, derive, checkpoint and sync, swap), and the
ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def day_of_events(demo_events: Path, rows: int, out: Path) -> Path:
    ev = pd.read_csv(demo_events, dtype=str)
    when = pd.to_datetime(ev.occurred_at, format="ISO8601", errors="coerce", utc=True)
    last = when[when.dt.year < 2100].max().normalize()  # the demo plants a mistyped year
    rng = np.random.default_rng(7)
    pick = ev.iloc[rng.integers(0, len(ev), rows)]
    secs = rng.integers(7 * 3600, 20 * 3600, rows)
    stamp = (last + pd.Timedelta(days=1) + pd.to_timedelta(secs, unit="s"))
    out.parent.mkdir(parents=True, exist_ok=True)
    pick.assign(occurred_at=stamp.strftime("%Y-%m-%d %H:%M:%S")).to_csv(out, index=False)
    return out


def meta(wh: Path) -> dict[str, str]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return dict(con.execute("SELECT key, value FROM meta WHERE key LIKE 'results_%' "
                                   "OR key LIKE 'rollups_%'")
                    .fetchall())
    finally:
        con.close()


def timed_load(src: Path, events: Path, folder: Path, keep: bool) -> dict:
    from analytics.derive import materialise
    from etl.load import load_paths
    from etl.pseudonym import key_file

    wh = folder / "warehouse.duckdb"
    folder.mkdir(parents=True)
    shutil.copyfile(src, wh)
    if key_file(src).exists():  # the demo's pseudonymisation key travels with its warehouse
        shutil.copy2(key_file(src), key_file(wh))
    os.sync()  # a live warehouse is at rest: the copy just made is not still being written back
    saved = materialise.kept_on, materialise.build_facts
    marks = _phase_clock()
    if not keep:  # as before issue 17: every result table recomputed, every rollup rebuilt
        materialise.kept_on = lambda *_a, **_k: frozenset()
        materialise.build_facts = lambda con, appended_events=None: saved[1](con)
    try:
        t0 = time.perf_counter()
        (rep,) = load_paths([events], wh)
        wall = time.perf_counter() - t0
    finally:
        materialise.kept_on, materialise.build_facts = saved
        marks.close()
    m = meta(wh)
    timings = json.loads(m.get("results_timings", "{}"))
    top = dict(sorted(timings.items(), key=lambda kv: -kv[1])[:10])
    roll = json.loads(m.get("rollups_timings", "{}"))
    return {"status": rep.status, "rows_added": rep.rows_added, "load_s": round(wall, 2),
            "derive_s": float(m.get("results_seconds", "nan")),
            "phases_s": marks.spans(t0),
            "kept": json.loads(m.get("results_kept", "[]")), "slowest_steps_s": top,
            "rollups": m.get("rollups_incremental") or "rebuilt",
            "slowest_rollup_steps_s": dict(sorted(roll.items(), key=lambda kv: -kv[1])[:6])}


class _phase_clock:
    """Wall time of a load's phases (`etl.phases`: the copy of the live file, reading and
    inserting the file, the derive step, checkpoint + close + fsync, the swap), by wrapping
    `etl.warehouse._private_copy` and `etl.phases.reached` while the load runs."""

    def __init__(self) -> None:
        from etl import phases, warehouse

        self._saved = (phases.reached, warehouse._private_copy)
        self.at: list[tuple[str, float]] = []
        reached, copy = self._saved

        def timed_copy(*a: object) -> None:
            copy(*a)
            self.at.append(("copy", time.perf_counter()))

        def timed_reached(phase: str) -> None:
            self.at.append((phase, time.perf_counter()))
            reached(phase)

        phases.reached, warehouse._private_copy = timed_reached, timed_copy

    def close(self) -> None:
        from etl import phases, warehouse

        phases.reached, warehouse._private_copy = self._saved

    def spans(self, t0: float) -> dict[str, float]:
        """Seconds from the previous mark to each phase: copy (lock and copy of the live
        file), read/insert (the file), derive, before_swap (checkpoint, close, fsync),
        after_swap (the rename and the folder's fsync)."""
        out: dict[str, float] = {}
        last = t0
        for name, t in self.at:
            out[name] = round(out.get(name, 0.0) + t - last, 2)
            last = t
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--warehouse", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=50_000, help="events in the new day")
    ap.add_argument("--no-baseline", action="store_true",
                    help="load only as this revision does (at 1M the baseline takes minutes)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="incr-"))
    try:
        events = day_of_events(args.warehouse.parent / "demo" / "events.csv", args.rows,
                               work / "day" / "events.csv")
        size = args.warehouse.stat().st_size / 2**20
        print(f"warehouse {args.warehouse} ({size:,.0f} MB); appending {args.rows:,} events",
              flush=True)
        full = None
        if not args.no_baseline:
            full = timed_load(args.warehouse, events, work / "full", keep=False)
            print("recompute everything:", json.dumps(full), flush=True)
        incr = timed_load(args.warehouse, events, work / "incr", keep=True)
        print("keep what reads no event:", json.dumps(incr), flush=True)
        if full is None:
            print(f"load: {incr['load_s']:.1f} s; derive: {incr['derive_s']:.1f} s; "
                  "target (issue 17) < 30 s at 1M participants")
            return 0
        print(f"load: {full['load_s']:.1f} s -> {incr['load_s']:.1f} s "
              f"(ratio {incr['load_s'] / full['load_s']:.2f}); derive: {full['derive_s']:.1f} s "
              f"-> {incr['derive_s']:.1f} s; target (issue 17) < 30 s at 1M participants")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
