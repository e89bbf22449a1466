"""Ingest benchmark: 10 million events through the real loader against two baselines.

Generates a roster (clusters, institutions, exchanges, participants) and N events as CSV with
naive local times (so the time-zone path runs), then, each in its own process so that peak memory
is that process's own:

  loader  `etl.load.load_paths` on the events file (validation, references, pseudonymisation,
          time zones, atomic swap) into a warehouse that already holds the roster;
  pandas  `pd.read_csv` + `DataFrame.to_sql` into SQLite: what a user would otherwise write;
  floor   DuckDB `CREATE TABLE … AS SELECT * FROM read_csv(…)` into a new file: the floor no
          loader can beat on this machine.

Prints rows/s, peak memory and the ratios. Targets (issue 2): ≥ 1,000,000 rows/s, ≥ 4× pandas,
within 2× of the floor, peak memory < 2 GB.

    python benchmarks/etl_ingest.py                  # 10,000,000 events
    python benchmarks/etl_ingest.py --events 200000  # a quick look
    python benchmarks/etl_ingest.py --bad-every 1000  # 0.1% rejected rows: the reject pass too
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate(folder: Path, events: int, participants: int, bad_every: int = 0) -> None:
    """Write the roster and the events; with `bad_every` N, every Nth event is bad for the loader
    (alternately an unknown participant and minutes out of range) but still well-typed CSV, so
    the floor and pandas read the same file without error."""
    import duckdb

    con = duckdb.connect()
    zones = ["Europe/Berlin", "America/Lima", "Asia/Tokyo", "Africa/Nairobi", "Europe/Madrid",
             "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
    countries = ["DEU", "PER", "JPN", "KEN", "ESP", "USA", "IND", "AUS"]
    con.execute(f"COPY (SELECT 'C' || i AS cluster_id, 'Cluster ' || i AS name, 'cluster' AS kind "
                f"FROM range(6) t(i)) TO '{folder}/clusters.csv'")
    con.execute(
        "COPY (SELECT 'I' || i AS institution_id, 'Institution ' || i AS name, "
        f"({countries})[i % 8 + 1] AS country, 'C' || (i % 6) AS cluster_id, "
        f"({zones})[i % 8 + 1] AS timezone, 'school' AS kind FROM range(150) t(i)) "
        f"TO '{folder}/institutions.csv'")
    con.execute(
        "COPY (SELECT 'E' || i AS exchange_id, 'Exchange ' || i AS name, 'Bench' AS program, "
        "'C' || (i % 6) AS cluster_id, 'virtual' AS modality, 'curricular' AS setting, "
        "'language practice' AS purpose, 'en' AS language, DATE '2026-01-01' AS start_date, "
        f"DATE '2026-12-31' AS end_date FROM range(50) t(i)) TO '{folder}/exchanges.csv'")
    con.execute(
        "COPY (SELECT 'P' || lpad(i::VARCHAR, 8, '0') AS participant_id, 'I' || (i % 150) AS "
        "institution_id, CASE WHEN i % 12 = 0 THEN 'teacher' ELSE 'student' END AS role "
        f"FROM range({participants}) t(i)) TO '{folder}/participants.csv'")
    bad = f"{bad_every} > 0 AND i % {bad_every} = {bad_every} - 1" if bad_every else "false"
    con.execute(
        f"COPY (SELECT CASE WHEN {bad} AND (i // {bad_every}) % 2 = 0 THEN 'P99999999' ELSE "
        "'P' || lpad((hash(i) % {p})::VARCHAR, 8, '0') END AS participant_id, "
        # Each participant takes part in one exchange, as in a real program (an exchange drawn
        # per event made ~40 exchanges per person and a derive step far from any real one).
        "'E' || ((hash(i) % {p}) % 50) AS exchange_id, "
        "strftime(TIMESTAMP '2026-01-05 08:00:00' + to_seconds((hash(i * 3) % 25000000)::BIGINT), "
        "'%Y-%m-%d %H:%M:%S') AS occurred_at, "
        "(['message', 'video call', 'upload', 'comment', 'quiz'])"
        "[(hash(i * 5) % 5 + 1)::BIGINT] AS activity, "
        f"CASE WHEN {bad} AND (i // {bad_every}) % 2 = 1 THEN 5000 "
        "ELSE (hash(i * 11) % 90)::INTEGER END AS minutes "
        f"FROM range({events}) t(i)) TO '{folder}/events.csv'".replace("{p}", str(participants)))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_loader(folder: Path, warehouse: Path) -> dict:
    from etl.load import load_paths

    derive_from = []

    def said(msg: str) -> None:  # the load says when it starts its derive step
        if msg == "computing result tables":
            derive_from.append(time.perf_counter())

    t0 = time.perf_counter()
    reports = load_paths([folder / "events.csv"], warehouse, progress=said)
    end = time.perf_counter()
    r = reports[0]
    derive = end - derive_from[0] if derive_from else 0.0
    return {"seconds": end - t0, "derive_s": derive, "rows": r.rows_accepted,
            "rejected": r.rows_rejected, "status": r.status, "peak_mb": _peak_mb()}


def run_pandas(folder: Path, out: Path) -> dict:
    import sqlite3

    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_csv(folder / "events.csv")
    with sqlite3.connect(out) as con:
        df.to_sql("events", con, index=False, chunksize=100_000)
    return {"seconds": time.perf_counter() - t0, "rows": len(df), "peak_mb": _peak_mb()}


def run_floor(folder: Path, out: Path) -> dict:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect(str(out))
    con.execute(f"CREATE TABLE events AS SELECT * FROM read_csv('{folder}/events.csv')")
    n = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    return {"seconds": time.perf_counter() - t0, "rows": n, "peak_mb": _peak_mb()}


def _child(what: str, folder: Path, target: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", what, "--dir", str(folder), "--target", str(target)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--participants", type=int, default=200_000)
    ap.add_argument("--skip-pandas", action="store_true", help="skip the slow pandas baseline")
    ap.add_argument("--bad-every", type=int, default=0, metavar="N",
                    help="make every Nth event a row the loader rejects (default 0: none)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        fn = {"loader": run_loader, "pandas": run_pandas, "floor": run_floor}[a.child]
        print(json.dumps(fn(a.dir, a.target)))
        return

    os.environ.setdefault("EXCHANGE_IMPACT_KEY", "benchmark-key-not-secret-0123456789")
    work = Path(tempfile.mkdtemp(prefix="ei-ingest-"))
    try:
        t0 = time.perf_counter()
        generate(work, a.events, a.participants, a.bad_every)
        size = (work / "events.csv").stat().st_size / 1e6
        print(f"generated {a.events:,} events ({size:,.0f} MB CSV) and a roster of "
              f"{a.participants:,} in {time.perf_counter() - t0:.1f} s")
        from etl.load import load_paths

        wh = work / "wh" / "warehouse.duckdb"
        roster = [work / f"{k}.csv"
                  for k in ("clusters", "institutions", "exchanges", "participants")]
        t0 = time.perf_counter()
        load_paths(roster, wh)
        print(f"roster loaded in {time.perf_counter() - t0:.1f} s")
        res = {"loader": _child("loader", work, wh)}
        res["floor"] = _child("floor", work, work / "floor.duckdb")
        if not a.skip_pandas:
            res["pandas"] = _child("pandas", work, work / "pandas.sqlite")
        print()
        print(f"{'path':<8} {'seconds':>8} {'rows/s':>12} {'peak MB':>8}")
        for k, r in res.items():
            rate = r["rows"] / r["seconds"]
            print(f"{k:<8} {r['seconds']:8.2f} {rate:12,.0f} {r['peak_mb']:8.0f}")
        lo = res["loader"]
        print()
        print(f"loader: {lo['rows']:,} rows loaded, {lo['rejected']:,} rejected; of its "
              f"{lo['seconds']:.1f} s, {lo['derive_s']:.1f} s are the derive step (result and "
              "dashboard tables, part of every load since issue 9)")
        ingest = lo["seconds"] - lo["derive_s"]
        print(f"ingest alone (the load up to its derive step): {lo['rows'] / ingest:,.0f} rows/s, "
              f"{ingest / res['floor']['seconds']:.2f}x the floor")
        rate = lo["rows"] / lo["seconds"]
        print(f"loader rows/s: {rate:,.0f} (target >= 1,000,000)")
        if "pandas" in res:
            ratio = res["pandas"]["seconds"] / lo["seconds"]
            print(f"speed-up over pandas read_csv+to_sql: {ratio:.1f}x (target >= 4x)")
        print(f"loader time / bare DuckDB floor: {lo['seconds'] / res['floor']['seconds']:.2f}x "
              "(target <= 2x)")
        print(f"loader peak memory: {lo['peak_mb']:,.0f} MB (target < 2,000 MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
