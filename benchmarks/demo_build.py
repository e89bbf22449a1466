"""The demo build end to end: `python -m etl demo` of a base revision and of this tree, one run
each in the same session, wall time, CPU time and peak RSS, and their ratios.

Issue 17's target: `etl demo --participants 1000000` under 5 minutes and under 3 GB peak RSS on
the 2-core machine. The base revision (default `main`) is exported with `git archive` into a
temporary folder and run from there with the same Python; both builds use the same seed and the
same pseudonymisation key, so their warehouses can be compared table by table (--compare: every
res_ table, floats to a relative 1e-8 and an absolute 1e-9). Each build runs in its own process;
its peak RSS is the kernel's ru_maxrss of that process (os.wait4), as `/usr/bin/time -v`
reports. The derive step's own timings (meta `results_timings`) are printed for each, so a
ratio can be traced to the steps that moved.

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
# Floats agree when |a − b| ≤ ATOL + RTOL·|a|: two builds of the same tree differ in the last bits
# where row order feeds a sum; res_invariance's F near 0 moved by up to 8e-10 (statsmodels'
# subtraction of two residual sums against one QR, `measurement._nested_fits`).
RTOL, ATOL = 1e-8, 1e-9
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
    """Every res_ table of warehouse `a` against `b`: same rows, floats to RTOL/ATOL.

    In DuckDB, both files attached: rows are numbered in the order of their non-float columns
    then their floats, and the two numberings joined (pandas took minutes per 10M-row table).
    """
    import duckdb

    con = duckdb.connect()
    problems = []
    try:
        con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
        names = sorted(r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'a' "
            "AND table_name LIKE 'res_%'").fetchall())
        have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_catalog = 'b'").fetchall()}
        for t in names:
            if t not in have:
                problems.append(f"{t}: missing in the candidate")
                continue
            desc = con.execute(f'DESCRIBE a."{t}"').fetchall()
            if [(r[0], r[1]) for r in desc] != [
                    (r[0], r[1]) for r in con.execute(f'DESCRIBE b."{t}"').fetchall()]:
                problems.append(f"{t}: columns differ")
                continue
            cols = [r[0] for r in desc]
            floats = [r[0] for r in desc if r[1] in ("DOUBLE", "FLOAT")]
            order = ", ".join(f'"{c}"' for c in [*[c for c in cols if c not in floats], *floats])
            n_a, n_b = (con.execute(f'SELECT count(*) FROM {s}."{t}"').fetchall()[0][0]
                        for s in ("a", "b"))
            if n_a != n_b:
                problems.append(f"{t}: {n_a} rows vs {n_b}")
                continue
            if not cols or not n_a:
                continue
            checks = ", ".join(
                (f'count(*) FILTER (WHERE (x."{c}" IS NULL) <> (y."{c}" IS NULL) OR NOT ('
                 f'x."{c}" = y."{c}" OR abs(x."{c}" - y."{c}") <= {ATOL} + {RTOL} * abs(x."{c}")))')
                if c in floats else
                f'count(*) FILTER (WHERE x."{c}" IS DISTINCT FROM y."{c}")' for c in cols)
            numbered = "SELECT *, row_number() OVER (ORDER BY {o}) AS _rn FROM {s}.\"{t}\""
            bad = con.execute(
                f"SELECT {checks} FROM ({numbered.format(o=order, s='a', t=t)}) x "
                f"JOIN ({numbered.format(o=order, s='b', t=t)}) y USING (_rn)").fetchall()[0]
            for c, n in zip(cols, bad, strict=True):
                if n:
                    problems.append(f"{t}.{c}: {n} of {n_a} rows differ")
        print(f"compared {len(names)} res_ tables")
    finally:
        con.close()
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
    p.add_argument("--compare-only", nargs=2, type=Path, metavar=("BASE", "CANDIDATE"),
                   help="only compare two warehouses already built")
    args = p.parse_args()
    if args.compare_only:
        problems = _compare(*args.compare_only)
        for line in problems:
            print("  DIFFERS:", line)
        if not problems:
            print(f"every res_ table equal (floats to a relative {RTOL:g}, absolute {ATOL:g})")
        return 1 if problems else 0

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
                print(f"every res_ table equal (floats to a relative {RTOL:g}, absolute {ATOL:g})")
        else:
            r = next(iter(runs.values()))
            print("derive step seconds:", {k: v for k, v in r["timings"].items() if v >= 0.5})
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
