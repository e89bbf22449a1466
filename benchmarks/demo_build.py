"""The demo build end to end: `python -m etl demo` of a base revision and of this tree, one run
each in the same session, wall time, CPU time and peak RSS, and their ratios.

Issue 17's target: `etl demo --participants 1000000` under 5 minutes and under 3 GB peak RSS on
the 2-core machine. The base revision (default `main`) is exported with `git archive` into a
temporary folder and run from there with the same Python; both builds use the same seed and the
same pseudonymisation key, so their warehouses can be compared table by table (--compare: every
res_ table, floats to a relative 1e-8). Each build runs in its own process; its peak RSS is the
kernel's ru_maxrss of that process (os.wait4), as `/usr/bin/time -v` reports it. The derive
step's own timings (meta `results_timings`) are printed for each, so a ratio can be traced to
the steps that moved.

    python benchmarks/demo_build.py --participants 200000
    python benchmarks/demo_build.py --participants 1000000 --base main --compare
    python benchmarks/demo_build.py --participants 100000 --only candidate   # this tree only

Builds 1M at ~10+ minutes and several GB each: run it on a machine you do not share.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "demo-build-benchmark-" + "k" * 32  # the same key for both builds: same pseudonyms


def _export(rev: str, dest: Path) -> Path:
    """The tree of `rev` as plain files under `dest` (git archive, no worktree left behind)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _build(src: Path, work: Path, participants: int, seed: int) -> dict:
    """Run `python -m etl demo` from `src` into `work`; wall, CPU, peak RSS and derive timings."""
    work.mkdir(parents=True)
    wh = work / "warehouse.duckdb"
    env = {**os.environ, "EXCHANGE_IMPACT_KEY": KEY, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "etl", "demo", "--participants", str(participants),
           "--seed", str(seed), "--warehouse", str(wh), "--out", str(work / "demo"), "--quiet"]
    t0 = time.perf_counter()
    with open(work / "output.txt", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = (work / "output.txt").read_text(errors="replace")[-2000:]
        raise SystemExit(f"{src}: etl demo exited with {proc.returncode}:\n{tail}")
    out = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
           "rss_mb": usage.ru_maxrss / 1024, "warehouse": wh, "timings": {}, "derive": None}
    import duckdb

    con = duckdb.connect(str(wh), read_only=True)
    try:
        meta = dict(con.execute("SELECT key, value FROM meta WHERE key LIKE 'results_%'")
                    .fetchall())
    finally:
        con.close()
    out["timings"] = json.loads(meta.get("results_timings", "{}"))
    out["derive"] = float(meta["results_seconds"]) if "results_seconds" in meta else None
    return out


def _compare(a: Path, b: Path) -> list[str]:
    """Every res_ table of warehouse `a` against `b`: same rows, floats to a relative 1e-8."""
    import duckdb
    import numpy as np

    ca, cb = duckdb.connect(str(a), read_only=True), duckdb.connect(str(b), read_only=True)
    problems = []
    try:
        names = sorted(r[0] for r in ca.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'res_%'"
        ).fetchall())
        have = {r[0] for r in cb.execute("SELECT table_name FROM information_schema.tables")
                .fetchall()}
        for t in names:
            if t not in have:
                problems.append(f"{t}: missing in the candidate")
                continue
            cols = [r[0] for r in ca.execute(f'DESCRIBE "{t}"').fetchall()]
            types = {r[0]: r[1] for r in ca.execute(f'DESCRIBE "{t}"').fetchall()}
            floats = [c for c in cols if types[c] in ("DOUBLE", "FLOAT")]
            order = ", ".join(f'"{c}"' for c in [*[c for c in cols if c not in floats], *floats])
            q = f'SELECT * FROM "{t}" ORDER BY {order}' if order else f'SELECT * FROM "{t}"'
            x, y = ca.execute(q).df(), cb.execute(q).df()
            if x.shape != y.shape or list(x.columns) != list(y.columns):
                problems.append(f"{t}: shape {x.shape} vs {y.shape}")
                continue
            for c in cols:
                if c in floats:
                    u, v = x[c].to_numpy(float), y[c].to_numpy(float)
                    if not np.array_equal(np.isnan(u), np.isnan(v)):
                        problems.append(f"{t}.{c}: missing values differ")
                    elif not np.allclose(u, v, rtol=1e-8, atol=1e-12, equal_nan=True):
                        worst = np.nanmax(np.abs(u - v) / np.maximum(np.abs(u), 1e-300))
                        problems.append(f"{t}.{c}: differs (largest relative {worst:.2e})")
                elif not x[c].astype(object).where(x[c].notna(), None).equals(
                        y[c].astype(object).where(y[c].notna(), None)):
                    problems.append(f"{t}.{c}: values differ")
        print(f"compared {len(names)} res_ tables")
    finally:
        ca.close()
        cb.close()
    return problems


def _show(name: str, r: dict) -> None:
    derive = f"{r['derive']:.1f} s" if r["derive"] is not None else "?"
    print(f"{name:>9}: wall {r['wall']:7.1f} s  CPU {r['cpu']:7.1f} s  peak RSS "
          f"{r['rss_mb']:7.0f} MB  (derive {derive})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--participants", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--base", default="main", help="git revision to compare against (main)")
    p.add_argument("--only", choices=["base", "candidate"], help="build one side only")
    p.add_argument("--compare", action="store_true",
                   help="compare every res_ table of the two warehouses")
    p.add_argument("--keep", type=Path, help="build under this folder and keep it")
    args = p.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="demo_build_"))
    try:
        print(f"{args.participants:,} participants; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; work in {work}")
        runs: dict[str, dict] = {}
        if args.only != "candidate":
            src = _export(args.base, work / "base-src")
            runs["base"] = _build(src, work / "base", args.participants, args.seed)
            _show(f"{args.base}"[:9], runs["base"])
        if args.only != "base":
            runs["candidate"] = _build(ROOT, work / "candidate", args.participants, args.seed)
            _show("this tree", runs["candidate"])
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if len(runs) == 2:
            b, c = runs["base"], runs["candidate"]
            print(f"ratio this tree / {args.base}: wall {c['wall'] / b['wall']:.2f}, CPU "
                  f"{c['cpu'] / b['cpu']:.2f}, peak RSS {c['rss_mb'] / b['rss_mb']:.2f}")
            steps = sorted(set(b["timings"]) | set(c["timings"]),
                           key=lambda s: -b["timings"].get(s, 0.0))
            print("derive step seconds (base → this tree):")
            for s in steps:
                tb, tc = b["timings"].get(s), c["timings"].get(s)
                if max(tb or 0, tc or 0) >= 0.5:
                    print(f"  {s:<22} {tb if tb is not None else '-':>8} → "
                          f"{tc if tc is not None else '-'}")
            if args.compare:
                problems = _compare(b["warehouse"], c["warehouse"])
                for line in problems:
                    print("  DIFFERS:", line)
                if problems:
                    return 1
                print("every res_ table equal (floats to a relative 1e-8)")
        else:
            r = next(iter(runs.values()))
            print("derive step seconds:", {k: v for k, v in r["timings"].items() if v >= 0.5})
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
