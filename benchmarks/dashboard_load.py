"""Dashboard under load: gunicorn with sync workers, concurrent simulated users, real callbacks.

    python benchmarks/dashboard_load.py                                # the 10,000 demo
    python benchmarks/dashboard_load.py --reuse /tmp/w10k              # build once, then reuse
    python benchmarks/dashboard_load.py --participants 1000000 --reuse /tmp/w1m
    python benchmarks/dashboard_load.py --reuse /tmp/w10k --baseline-src /tmp/head
    python benchmarks/dashboard_load.py --reuse /tmp/w1m --date-share 1   # every view dated
    python benchmarks/dashboard_load.py --reuse /tmp/w10k --combo-share 0.25  # issue 17

Builds a demo warehouse with `python -m etl demo --participants N` (into --reuse DIR, or reuses
DIR/warehouse.duckdb when it is there; --warehouse FILE takes a warehouse as it is), starts
`gunicorn -w 3 app:server` on it, and lets 16 simulated users each loop: visit a page with a
filter selection and the page's own controls (group-by, effect size) drawn at random, posting
every data callback the page runs (the bodies the Dash renderer would post, built from
/_dash-dependencies by `benchmarks.dash_driver`). Filter selections are drawn from the data:
nothing, or one or two values of country, cluster, modality, setting, cohort, role, program or
exchange. A first pass over every callback of the first --cold selections, one request at a
time, is reported as the cold figure (the per-process caches are empty then).

With --combo-share P, that share of page visits uses a filter combination instead (two to four
filters at once, a third of them with a date range: `combo_pool`), which no stored result table
answers: the Outcomes page's model, comparison and balance are then computed on request (issue
17); their latencies are also reported apart ("combo_ms" / "plain_ms").

The server adds its CPU time to every answer (`pages._timing`, switched on here by
EXCHANGE_IMPACT_CPU_HEADER=1): "cpu_ms_per_callback" is p50/p95 of the worker process's CPU
milliseconds per callback under load (all its threads, DuckDB's included), beside the wall-clock
latency, which also holds the time a request waits for a worker or a core.

Prints p50/p95/p99 latency, the request rate and the error count (overall and per page) as JSON;
the issue's target is p95 < 300 ms and p99 < 500 ms with no errors. With --baseline-src (another
checkout of the app, e.g. `git worktree add /tmp/head HEAD~3`) the same load runs first against
that code on the same warehouse, and the ratio baseline/candidate is printed: both are measured
in one run, on the same machine state.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/dashboard_load.py` as the README runs it

from benchmarks.dash_driver import callback_bodies, dependencies, post  # noqa: E402

# Each page's own controls and the values a user can pick (the layouts' options).
CONTROLS: dict[str, list[Any]] = {
    "equity-by": ["gender", "age_band", "connectivity", "income_group"],
    "participation-by": ["cluster", "country"],
    "outcomes-forest-by": ["cluster", "country", "modality", "setting"],
    "outcomes-effect": ["hedges_g", "diff"],
    "equity-scale": ["all"],  # and every scale of the warehouse (`page_controls`)
}


def page_controls(wh: Path) -> dict[str, list[Any]]:
    """`CONTROLS` plus the scale dropdowns' values ('instrument/scale') of this warehouse."""
    con = duckdb.connect(str(wh), read_only=True)
    try:
        scales = [r[0] for r in con.execute(
            "SELECT DISTINCT instrument || '/' || scale FROM res_prepost ORDER BY 1").fetchall()]
    except duckdb.Error:  # no result tables: the dropdowns are empty too
        scales = []
    finally:
        con.close()
    return {**CONTROLS, "equity-scale": ["all", *scales], "outcomes-scale": scales or [""]}
FILTER_FIELDS = (("country", 0.35), ("cluster", 0.25), ("modality", 0.2), ("setting", 0.1),
                 ("term", 0.1), ("role", 0.1), ("program", 0.05), ("exchange", 0.05))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_demo(participants: int, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wh = folder / "warehouse.duckdb"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "etl", "demo", "--quiet", "--participants",
                    str(participants), "--warehouse", str(wh), "--out", str(folder / "files")],
                   cwd=ROOT, check=False)
    if not wh.exists():
        raise SystemExit("the demo warehouse was not built")
    print(f"built the demo ({participants:,} participants) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return wh


def filter_pool(wh: Path, size: int, seed: int, date_share: float = 0.0) -> list[dict]:
    """Realistic filter selections drawn from the warehouse's values: nothing, or one or two
    values of a few filters (the common ones more often); with `date_share`, that share of the
    selections also sets a date range (a random quarter of the log), which the rollups cannot
    answer: those views read the day facts."""
    from analytics.read.filters import Filters
    from analytics.read.loads import filter_options

    con = duckdb.connect(str(wh), read_only=True)
    try:
        opts = filter_options(con.cursor())
    finally:
        con.close()
    values = {name: sorted(opts.values(name)) for name, _ in FILTER_FIELDS}
    rng = random.Random(seed)
    pool: list[dict] = [{}]
    while len(pool) < size:
        f: dict[str, list[str]] = {}
        for name, p in FILTER_FIELDS:
            if values[name] and rng.random() < p:
                k = 2 if rng.random() < 0.2 and len(values[name]) > 1 else 1
                f[name] = rng.sample(values[name], k)
        if opts.first_date and opts.last_date and rng.random() < date_share:
            span = max((opts.last_date - opts.first_date).days - 91, 1)
            start = opts.first_date + timedelta(days=rng.randrange(span))
            f["start"], f["end"] = start.isoformat(), (start + timedelta(days=91)).isoformat()
        pool.append(f)
    return [{"filters": Filters.from_dict(f).to_dict(), "query": Filters.from_dict(f).to_query()}
            for f in pool]


def combo_pool(wh: Path, size: int, seed: int) -> list[dict]:
    """Filter combinations no stored table answers: two to four of program, cluster, country,
    modality, setting, cohort and role, one or two values each, a third of them also with a date
    range (a random quarter of the log, as `filter_pool`'s)."""
    from analytics.read.filters import Filters
    from analytics.read.loads import filter_options

    con = duckdb.connect(str(wh), read_only=True)
    try:
        opts = filter_options(con.cursor())
    finally:
        con.close()
    names = ["program", "cluster", "country", "modality", "setting", "term", "role"]
    values = {name: sorted(opts.values(name)) for name in names}
    names = [n for n in names if values[n]]
    rng = random.Random(seed + 17)
    pool: list[dict] = []
    while len(pool) < size:
        f: dict[str, Any] = {}
        for name in rng.sample(names, min(len(names), rng.randint(2, 4))):
            f[name] = rng.sample(values[name], min(len(values[name]), rng.randint(1, 2)))
        if opts.first_date and opts.last_date and rng.random() < 1 / 3:
            span = max((opts.last_date - opts.first_date).days - 91, 1)
            start = opts.first_date + timedelta(days=rng.randrange(span))
            f["start"], f["end"] = start.isoformat(), (start + timedelta(days=91)).isoformat()
        pool.append(f)
    return [{"filters": Filters.from_dict(f).to_dict(), "query": Filters.from_dict(f).to_query(),
             "combo": True} for f in pool]


def post_cpu(base: str, body: dict, timeout: float = 60) -> tuple[int, float | None]:
    """`dash_driver.post`, returning the status and the server's CPU milliseconds (the
    `pages._timing` header; None when absent)."""
    from pages._timing import CPU_HEADER

    req = urllib.request.Request(
        base + "/_dash-update-component", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            cpu = r.headers.get(CPU_HEADER)
            return r.status, float(cpu) if cpu else None
    except urllib.error.HTTPError as e:
        e.read()
        return e.code, None
    except OSError:
        return 599, None


def page_of(body: dict) -> str:
    first = body["output"].strip(".").split(".")[0]
    return first.split("-")[0]


def _pct(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    a = np.array(xs) * 1000
    return {f"p{p}": round(float(np.percentile(a, p)), 1) for p in (50, 95, 99)}


def run_load(src: Path, wh: Path, pool: list[dict], args: argparse.Namespace,
             combos: list[dict] | None = None) -> dict[str, Any]:
    """Start gunicorn on the app in `src`, run the cold pass and the timed load, stop it. With
    `combos`, a page visit uses one of them with probability `args.combo_share`."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EXCHANGE_IMPACT_WAREHOUSE": str(wh), "EXCHANGE_IMPACT_CPU_HEADER": "1",
           "EXCHANGE_IMPACT_READER_THREADS": str(args.threads), "PYTHONPATH": str(src)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
         "--timeout", "120", "--log-level", "warning", "app:server"],
        cwd=src, env=env)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        deps = dependencies(base)
        rng0 = random.Random(args.seed)
        controls = page_controls(wh)
        pick = lambda rng: {k: rng.choice(v) for k, v in controls.items()}  # noqa: E731
        first = callback_bodies(base, pool[0], pick(rng0), deps)
        pages = sorted({page_of(b) for b in first})
        print(f"{src}: {len(first)} data callbacks on {len(pages)} pages ({', '.join(pages)}); "
              f"{len(pool)} filter selections; {args.workers} workers, {args.users} users, "
              f"DuckDB threads per worker: {args.threads or 'default'}", flush=True)

        cold: list[float] = []
        errors = 0
        for f in pool[: args.cold]:
            for b in callback_bodies(base, f, pick(rng0), deps):
                t = time.perf_counter()
                status, _ = post(base, b, timeout=args.timeout)
                cold.append(time.perf_counter() - t)
                errors += status not in (200, 204)

        latencies: list[tuple[str, float]] = []
        kinds: list[bool] = []  # per request: a filter combination (True) or not
        cpu: list[tuple[bool, float]] = []
        cpu_pages: list[tuple[str, float]] = []
        lock = threading.Lock()
        stop = time.monotonic() + args.duration

        def user(i: int) -> None:
            nonlocal errors
            rng = random.Random(args.seed * 1000 + i)
            mine: list[tuple[str, float]] = []
            my_kinds: list[bool] = []
            my_cpu: list[tuple[bool, float]] = []
            my_cpu_pages: list[tuple[str, float]] = []
            bad = 0
            while time.monotonic() < stop:
                page = rng.choice(pages)
                combo = bool(combos) and rng.random() < args.combo_share
                chosen = rng.choice(combos) if combo else rng.choice(pool)
                store = {k: v for k, v in chosen.items() if k != "combo"}
                bodies = callback_bodies(base, store, pick(rng), deps)
                for b in bodies:
                    if page_of(b) != page:
                        continue
                    t = time.perf_counter()
                    status, ms = post_cpu(base, b, timeout=args.timeout)
                    mine.append((page, time.perf_counter() - t))
                    my_kinds.append(combo)
                    if ms is not None:
                        my_cpu.append((combo, ms))
                        my_cpu_pages.append((page, ms))
                    bad += status not in (200, 204)
            with lock:
                latencies.extend(mine)
                kinds.extend(my_kinds)
                cpu.extend(my_cpu)
                cpu_pages.extend(my_cpu_pages)
                errors += bad

        threads = [threading.Thread(target=user, args=(i,)) for i in range(args.users)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)

    load = [x for _, x in latencies]
    result = {
        "app": str(src),
        "cold_ms": _pct(cold),
        "load_ms": _pct(load),
        "per_page_ms": {p: _pct([x for q, x in latencies if q == p]) for p in pages},
        "cpu_ms_per_callback": _pct([ms / 1000 for _, ms in cpu]),
        "cpu_ms_per_page": {p: _pct([ms / 1000 for q, ms in cpu_pages if q == p]) for p in pages},
        "requests": len(load),
        "requests_per_s": round(len(load) / elapsed, 1),
        "errors": errors,
    }
    if combos:
        result["combo_ms"] = _pct([x for x, c in zip(load, kinds, strict=True) if c])
        result["plain_ms"] = _pct([x for x, c in zip(load, kinds, strict=True) if not c])
        result["combo_requests"] = int(sum(kinds))
        result["cpu_ms_per_callback_combo"] = _pct([ms / 1000 for c, ms in cpu if c])
        result["cpu_ms_per_callback_plain"] = _pct([ms / 1000 for c, ms in cpu if not c])
    result["targets_met"] = bool(result["load_ms"]["p95"] < 300 and result["load_ms"]["p99"] < 500
                                 and errors == 0)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=10_000)
    ap.add_argument("--reuse", type=Path, metavar="DIR",
                    help="build the demo into DIR once; later runs reuse DIR/warehouse.duckdb")
    ap.add_argument("--warehouse", type=Path, help="use this warehouse file as it is")
    ap.add_argument("--baseline-src", type=Path, metavar="DIR",
                    help="also load-test the app in DIR (another checkout) first, same warehouse")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1,
                    help="DuckDB threads per worker (0 = DuckDB's default, one per core)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    ap.add_argument("--filters", type=int, default=40, help="distinct filter selections")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a request fails")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--date-share", type=float, default=0.0, metavar="P",
                    help="share of filter selections that also set a date range (default 0)")
    ap.add_argument("--combo-share", type=float, default=0.0, metavar="P",
                    help="share of page visits with a filter combination (issue 17; default 0)")
    ap.add_argument("--cold", type=int, default=8,
                    help="filter selections measured cold, one request at a time")
    args = ap.parse_args(argv)

    if args.warehouse:
        wh = args.warehouse
    else:
        folder = args.reuse or Path(tempfile.mkdtemp(prefix="dash-load-"))
        wh = folder / "warehouse.duckdb"
        if wh.exists():
            print(f"reusing {wh}", flush=True)
        else:
            wh = build_demo(args.participants, folder)
    pool = filter_pool(wh, args.filters, args.seed, args.date_share)
    combos = combo_pool(wh, args.filters, args.seed) if args.combo_share > 0 else None
    con = duckdb.connect(str(wh), read_only=True)
    try:
        participants, events = con.execute(
            "SELECT (SELECT count(*) FROM participants), (SELECT count(*) FROM events)").fetchone()
    finally:
        con.close()

    runs = []
    if args.baseline_src:
        runs.append(("baseline", run_load(args.baseline_src.resolve(), wh, pool, args, combos)))
    runs.append(("candidate", run_load(ROOT, wh, pool, args, combos)))
    out: dict[str, Any] = {"warehouse": str(wh), "participants": participants, "events": events,
                           "workers": args.workers, "users": args.users,
                           "duration_s": args.duration, "date_share": args.date_share,
                           "combo_share": args.combo_share,
                           **dict(runs)}
    if args.baseline_src:
        b, c = out["baseline"]["load_ms"], out["candidate"]["load_ms"]
        out["baseline_over_candidate"] = {k: round(b[k] / c[k], 1) if c[k] else None for k in b}
    print(json.dumps(out, indent=2))
    return 0 if out["candidate"]["targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
