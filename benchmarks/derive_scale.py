"""The derive step over a generated lake, DuckDB against local Spark (issue 16): the day facts,
then (since the cubes were ported) the cubes and month masks from them.

    python benchmarks/derive_scale.py                          # 10^6 and 10^7 events
    python benchmarks/derive_scale.py --events 1e7 1e8         # the issue's sizes
    python benchmarks/derive_scale.py --events 1e6 --engines duckdb

For each size the script writes a lake with DuckDB:
- 100 events per participant, over one year, with millisecond timestamps;
- events Hive-partitioned by event date and program;
- 500 institutions in 12 time zones, and two survey answers per participant.

It then runs `python -m analytics derive --lake L --engine E --full` once per engine, in a
child process, and measures two things:
- the wall time;
- the peak memory of the whole process tree (the JVM included), the sum of its processes'
  resident sets, sampled every 0.2 s.

It prints one row per size and engine, Spark's time over DuckDB's (the baseline, same run,
same lake), and each engine's cost per 10⁹ events. That cost is extrapolated from the slope
between the two largest sizes: seconds = intercept + slope × events.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import psutil  # noqa: E402

ZONES = ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Africa/Lagos", "Asia/Tokyo",
         "America/Sao_Paulo", "Australia/Sydney", "Europe/London", "Asia/Kathmandu",
         "America/Mexico_City", "Pacific/Auckland", "Africa/Nairobi"]
PER_PERSON = 100


def write_lake(folder: Path, events: int) -> Path:
    people = max(events // PER_PERSON, 1)
    lake = folder / f"lake-{events}"
    if lake.exists():
        shutil.rmtree(lake)
    for name in ("participants", "institutions", "responses"):
        (lake / name).mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SELECT setseed(0.16)")
    zones = ", ".join(f"'{z}'" for z in ZONES)
    con.execute(f"""COPY (SELECT 'I' || i AS institution_id,
                                 list_extract([{zones}], 1 + i % {len(ZONES)}) AS timezone
                          FROM range(500) t(i))
                    TO '{lake}/institutions/part-0.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT printf('P%09d', i) AS participant_id,
                                 'I' || (hash(i) % 500) AS institution_id,
                                 CASE WHEN i % 20 = 0 THEN 'teacher' ELSE 'student' END AS role,
                                 list_extract(['f', 'm', 'x'], 1 + i % 3) AS gender,
                                 2000 + i % 10 AS birth_year, i % 7 = 0 AS comparison
                          FROM range({people}) t(i))
                    TO '{lake}/participants/part-0.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT printf('P%09d', i % {people}) AS participant_id,
                                 'X' || (i % {people} % 997) AS exchange_id,
                                 list_extract(['pre', 'post'], 1 + (i // {people})) AS wave,
                                 TIMESTAMPTZ '2026-01-10 00:00:00+00'
                                   + to_milliseconds(hash(i * 7) % 30000000000) AS submitted_at
                          FROM range({2 * people}) t(i))
                    TO '{lake}/responses/part-0.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (
            SELECT *, CAST(occurred_at AS DATE) AS event_date FROM (
                SELECT printf('P%09d', i % {people}) AS participant_id,
                       'X' || (i % {people} % 997) AS exchange_id,
                       TIMESTAMPTZ '2026-01-01 00:00:00+00'
                         + to_milliseconds(hash(i) % 31536000000) AS occurred_at,
                       CASE WHEN i % 11 = 0 THEN NULL ELSE (hash(i * 3) % 600) / 10.0
                       END AS minutes,
                       'PROG' || (i % {people} % 997 % 4) AS program
                FROM range({events}) t(i)))
        TO '{lake}/events' (FORMAT parquet, PARTITION_BY (event_date, program),
                            FILENAME_PATTERN 'part_{{i}}')""")
    con.close()
    return lake


def run(lake: Path, engine: str, conf: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak resident GB (the process tree) of one derive, and its output."""
    cmd = [sys.executable, "-m", "analytics", "derive", "--lake", str(lake), "--engine", engine,
           "--full", *(a for c in conf for a in ("--conf", c))]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    top = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [top, *top.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed on {lake}:\n{out[-3000:]}")
    return seconds, peak / 2**30, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", nargs="+", type=float, default=[1e6, 1e7])
    ap.add_argument("--engines", nargs="+", default=["duckdb", "spark"],
                    choices=["duckdb", "spark"])
    ap.add_argument("--folder", type=Path, default=None,
                    help="where the lakes are written (default: a temporary folder)")
    ap.add_argument("--conf", action="append", default=["spark.driver.memory=8g"],
                    help="Spark settings for the derive (default spark.driver.memory=8g)")
    args = ap.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="derive-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"lakes in {folder}")
    print(f"{'events':>12} {'engine':>7} {'seconds':>9} {'peak GB':>8} {'events/s':>12}")
    results: dict[str, list[tuple[int, float]]] = {e: [] for e in args.engines}
    for n in sorted(int(e) for e in args.events):
        t0 = time.perf_counter()
        lake = write_lake(folder, n)
        print(f"{n:>12,} {'(write)':>7} {time.perf_counter() - t0:>9.1f}")
        row: dict[str, float] = {}
        for engine in args.engines:
            seconds, peak, _ = run(lake, engine, args.conf)
            results[engine].append((n, seconds))
            row[engine] = seconds
            print(f"{n:>12,} {engine:>7} {seconds:>9.1f} {peak:>8.2f} {n / seconds:>12,.0f}")
        if "duckdb" in row and "spark" in row:
            print(f"{'':>12} spark / duckdb = {row['spark'] / row['duckdb']:.2f}x")
        if not args.folder:
            shutil.rmtree(lake, ignore_errors=True)
    for engine, pts in results.items():
        if len(pts) >= 2:
            (n1, t1), (n2, t2) = pts[-2], pts[-1]
            slope = (t2 - t1) / (n2 - n1)
            at = t2 + slope * (1e9 - n2)
            print(f"{engine}: {slope * 1e9:,.0f} s per 10^9 events from the slope "
                  f"{n1:,} -> {n2:,}; 10^9 events extrapolated: {at / 3600:.1f} h on this "
                  "machine")


if __name__ == "__main__":
    main()
