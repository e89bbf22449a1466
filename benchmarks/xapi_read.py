"""xAPI benchmark: a million statements as JSON lines against the same events as contract CSV.

Generates N statements in the shape Moodle's xAPI plugin sends to Learning Locker (actor as an
LMS account with a name, verb with display, object with definition, context with the course in
`grouping` and extensions, result with an ISO 8601 duration, timestamp with an offset, stored,
authority; about 870 bytes each), the same N events as a contract `events.csv`
(participant_id, exchange_id, occurred_at, activity, minutes; about 115 bytes a row), a mapping
(actor: account; the course IRIs to the roster's exchanges) and a roster (the foundation
benchmark's, `benchmarks/etl_ingest.generate`). Then, in this process, in the same run:

  (a) read only, best of `--repeat`:
      xapi   `etl.sources.xapi.read` of the JSON lines into an Arrow table of the contract's
             columns (parse, repeated ids, voiding, actors, durations, UTC times);
      csv    DuckDB `read_csv(all_varchar)` of events.csv into an Arrow table;
  (b) end to end, once each: `etl.load.load_paths` of each file (validation, pseudonyms, the
      derive step, the atomic swap) into its own copy of a warehouse that holds the roster.

Prints rows/s, the ratios xapi/csv with the issue's target (issue 11: the xAPI file loads at no
less than half the contract CSV's rate), CPU seconds (the machine may be shared: wall time waits
for other processes, CPU time does not) and the load average before and after.

    python benchmarks/xapi_read.py                        # 1,000,000 statements
    python benchmarks/xapi_read.py --statements 100000    # a quick look
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.etl_ingest import generate as generate_roster  # noqa: E402

COURSES = 50  # etl_ingest's roster has exchanges E0..E49
COURSE = "http://lms.example.org/course/view.php?id="
TARGET = 0.5


def generate(folder: Path, n: int, participants: int) -> tuple[Path, Path, Path]:
    """Write `statements.jsonl`, `events.csv` (the same n events) and `mapping.yaml`."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Each participant in one exchange, as in etl_ingest (and a real program).
    base = (
        f"SELECT i, 'P' || lpad((i % {participants})::VARCHAR, 8, '0') AS who, "
        f"(i % {participants}) % {COURSES} AS course, "
        f"(['completed', 'attempted', 'experienced', 'answered'])[i % 4 + 1] AS verb, "
        f"TIMESTAMPTZ '2026-01-05 08:00:00+00' + to_seconds(i * 7) AS ts, "
        f"i % 5400 AS secs FROM range({n}) t(i)")
    statements = folder / "statements.jsonl"
    # One JSON text per line; COPY as CSV with no quoting writes it as is.
    con.execute(
        f"COPY (SELECT json_object("
        f"'id', uuid()::VARCHAR, 'version', '1.0.0', "
        f"'actor', json_object('objectType', 'Agent', 'name', 'Student ' || who, "
        f"  'account', json_object('homePage', 'http://lms.example.org', 'name', who)), "
        f"'verb', json_object('id', 'http://adlnet.gov/expapi/verbs/' || verb, "
        f"  'display', json_object('en', verb)), "
        f"'object', json_object('objectType', 'Activity', 'id', "
        f"  'http://lms.example.org/mod/assign/view.php?id=' || (i % 400), 'definition', "
        f"  json_object('type', 'http://adlnet.gov/expapi/activities/module', "
        f"  'name', json_object('en', 'Assignment ' || (i % 400)))), "
        f"'result', json_object('duration', 'PT' || (secs // 3600) || 'H' || (secs // 60 % 60) "
        f"  || 'M' || (secs % 60) || 'S', 'completion', true), "
        f"'context', json_object('contextActivities', json_object('grouping', "
        f"  json_array(json_object('objectType', 'Activity', 'id', '{COURSE}' || course))), "
        f"  'platform', 'Moodle', 'extensions', json_object("
        f"  'http://id.tincanapi.com/extension/ip-address', '10.0.' || (i % 250) || '.7')), "
        f"'timestamp', strftime(ts AT TIME ZONE 'Europe/Berlin', '%Y-%m-%dT%H:%M:%S') "
        f"  || '+01:00', "
        f"'stored', strftime(ts, '%Y-%m-%dT%H:%M:%S.%f') || '+00:00', "
        f"'authority', json_object('objectType', 'Agent', 'name', 'LRS client', "
        f"  'mbox', 'mailto:lrs@example.org')) "
        f"FROM ({base})) TO '{statements}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')")
    events = folder / "events.csv"
    con.execute(
        f"COPY (SELECT who AS participant_id, 'E' || course AS exchange_id, "
        f"strftime(ts, '%Y-%m-%dT%H:%M:%S') || '+00:00' AS occurred_at, verb AS activity, "
        f"round(secs / 60, 6) AS minutes FROM ({base})) TO '{events}' (HEADER)")
    con.close()
    mapping = folder / "mapping.yaml"
    mapping.write_text("format: xapi\nactor: account\nexchange_from:\n" + "".join(
        f"  '{COURSE}{k}': E{k}\n" for k in range(COURSES)), encoding="utf-8")
    return statements, events, mapping


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, float, object]:
    """(best wall seconds, CPU seconds of that run, its result)."""
    best: tuple[float, float, object] | None = None
    for _ in range(repeat):
        t, c = time.perf_counter(), cpu()
        out = fn()
        run = (time.perf_counter() - t, cpu() - c, out)
        if best is None or run[0] < best[0]:
            best = run
    if best is None:
        raise SystemExit(f"--repeat must be at least 1 (got {repeat})")
    return best


def ratio_line(what: str, n: int, xapi: tuple[float, float], csv: tuple[float, float]) -> str:
    return (f"{what}: xapi {n / xapi[0]:11,.0f} rows/s ({xapi[0]:6.2f} s wall, {xapi[1]:6.2f} s "
            f"CPU)  csv {n / csv[0]:11,.0f} rows/s ({csv[0]:6.2f} s, {csv[1]:6.2f} s CPU)\n"
            f"    ratio xapi/csv rate: {csv[0] / xapi[0]:.2f} wall, {csv[1] / xapi[1]:.2f} CPU  "
            f"(target >= {TARGET})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--statements", type=int, default=1_000_000)
    ap.add_argument("--participants", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3, help="read-only runs; the best is kept")
    args = ap.parse_args()
    os.environ.setdefault("EXCHANGE_IMPACT_KEY", "benchmark-pseudonymisation-key-0123456789")

    import duckdb

    from etl.load import load_paths
    from etl.sources import load_mapping, xapi

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="ei-xapi-bench-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        n = args.statements
        statements, events, mapping_file = generate(folder, n, args.participants)
        mapping = load_mapping(mapping_file)
        print(f"generated {n:,} statements ({statements.stat().st_size / 1e6:,.0f} MB) and "
              f"events.csv ({events.stat().st_size / 1e6:,.0f} MB) in "
              f"{time.perf_counter() - t:.1f} s")

        # (a) read only
        def read_csv() -> object:
            with duckdb.connect() as con:
                return con.sql(f"SELECT * FROM read_csv('{events}', all_varchar = true)") \
                    .to_arrow_table()

        csv_s, csv_cpu, csv_table = timed(read_csv, args.repeat)
        xapi_s, xapi_cpu, table = timed(lambda: xapi.read(statements, mapping, []), args.repeat)
        cols = ["participant_id", "exchange_id", "occurred_at", "activity"]
        if table.num_rows != n or csv_table.num_rows != n:  # type: ignore[attr-defined]
            raise SystemExit(f"row counts differ: xapi {table.num_rows}, "  # type: ignore[attr-defined]
                             f"csv {csv_table.num_rows}")  # type: ignore[attr-defined]
        same = table.select(cols).equals(csv_table.select(cols))  # type: ignore[attr-defined]
        if not same:
            raise SystemExit("xapi and csv read different events")
        print(ratio_line(f"(a) read only, best of {args.repeat}", n, (xapi_s, xapi_cpu),
                         (csv_s, csv_cpu)))
        del table, csv_table

        # (b) end to end, into copies of one warehouse holding the roster
        roster_dir = folder / "roster"
        roster_dir.mkdir()
        generate_roster(roster_dir, 0, args.participants)
        (roster_dir / "events.csv").unlink()
        roster = folder / "roster.duckdb"
        load_paths([roster_dir], roster)
        runs = {}
        for name, path, kw in (("csv", events, {}), ("xapi", statements, {"mapping": mapping})):
            wh = folder / name / "warehouse.duckdb"
            wh.parent.mkdir()
            shutil.copyfile(roster, wh)
            derive: list[float] = []

            def said(msg: str, derive: list[float] = derive) -> None:
                if msg == "computing result tables":
                    derive.append(time.perf_counter())

            t, c = time.perf_counter(), cpu()
            (rep,) = load_paths([path], wh, progress=said, **kw)
            end = time.perf_counter()
            if rep.status != "loaded" or rep.rows_accepted != n:
                raise SystemExit(f"{name}: the load did not take every row: {rep.summary()}")
            runs[name] = (end - t, cpu() - c, end - derive[0] if derive else 0.0)
        print(ratio_line("(b) load_paths end to end", n, runs["xapi"][:2], runs["csv"][:2]))
        xi, ci = runs["xapi"][0] - runs["xapi"][2], runs["csv"][0] - runs["csv"][2]
        print(f"    up to the derive step (same for both: {runs['csv'][2]:.2f} s csv, "
              f"{runs['xapi'][2]:.2f} s xapi): ratio {ci / xi:.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
