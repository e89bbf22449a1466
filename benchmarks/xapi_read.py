"""xAPI reading benchmark: a million statements as JSON lines against the same events as CSV.

Generates N statements in the shape Learning Locker stores Moodle's (actor with name and mbox,
verb with display, object with definition, context with grouping and extensions, result with an
ISO 8601 duration, timestamp with an offset, stored, authority), and the same N events as a
contract `events.csv` (participant_id, exchange_id, occurred_at, activity, minutes). Then, in
this process, one after the other, best of `--repeat`:

  xapi   `etl.sources.xapi.read` on the JSON lines: parse, voiding, actors, durations, UTC times,
         into an Arrow table of the contract's columns;
  csv    DuckDB `read_csv(all_varchar)` of events.csv into an Arrow table: the rate at which the
         contract's own file is read, the baseline.

Prints rows/s of each and the ratio. Target (issue 11): xapi at least half the csv rate. Both
read into the same Arrow form; what the loader does after (validation, pseudonyms, the swap) is
the same for both and measured by benchmarks/etl_ingest.py.

    python benchmarks/xapi_read.py                        # 1,000,000 statements
    python benchmarks/xapi_read.py --statements 100000    # a quick look
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate(folder: Path, n: int) -> tuple[Path, Path]:
    """Write `statements.jsonl` and `events.csv` holding the same n events."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    base = (
        f"SELECT i, 'student' || (i % 5000) || '@example.org' AS who, "
        f"'http://lms.example.org/course/view.php?id=' || (i % 50) AS course, "
        f"(['completed', 'attempted', 'experienced', 'answered'])[i % 4 + 1] AS verb, "
        f"TIMESTAMPTZ '2026-01-05 08:00:00+00' + to_seconds(i * 7) AS ts, "
        f"i % 5400 AS secs FROM range({n}) t(i)")
    statements = folder / "statements.jsonl"
    # One JSON text per line; COPY as CSV with no quoting writes it as is.
    con.execute(
        f"COPY (SELECT json_object("
        f"'id', uuid()::VARCHAR, 'version', '1.0.0', "
        f"'actor', json_object('objectType', 'Agent', 'name', 'Student ' || (i % 5000), "
        f"  'mbox', 'mailto:' || who), "
        f"'verb', json_object('id', 'http://adlnet.gov/expapi/verbs/' || verb, "
        f"  'display', json_object('en', verb)), "
        f"'object', json_object('objectType', 'Activity', 'id', "
        f"  'http://lms.example.org/mod/assign/view.php?id=' || (i % 400), 'definition', "
        f"  json_object('type', 'http://adlnet.gov/expapi/activities/module', "
        f"  'name', json_object('en', 'Assignment ' || (i % 400)))), "
        f"'result', json_object('duration', 'PT' || (secs // 3600) || 'H' || (secs // 60 % 60) "
        f"  || 'M' || (secs % 60) || 'S', 'completion', true), "
        f"'context', json_object('contextActivities', json_object('grouping', "
        f"  json_array(json_object('objectType', 'Activity', 'id', course))), "
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
        f"COPY (SELECT who AS participant_id, course AS exchange_id, "
        f"strftime(ts, '%Y-%m-%dT%H:%M:%S') || '+00:00' AS occurred_at, verb AS activity, "
        f"round(secs / 60, 6) AS minutes FROM ({base})) TO '{events}' (HEADER)")
    con.close()
    return statements, events


def best(fn: object, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--statements", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import duckdb

    from etl.sources import xapi

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        statements, events = generate(folder, args.statements)
        print(f"generated {args.statements:,} statements ({statements.stat().st_size / 1e6:,.0f}"
              f" MB) and events.csv ({events.stat().st_size / 1e6:,.0f} MB) in "
              f"{time.perf_counter() - t:.1f} s")

        def read_csv() -> object:
            with duckdb.connect() as con:
                return con.sql(f"SELECT * FROM read_csv('{events}', all_varchar = true)") \
                    .to_arrow_table()

        def read_xapi() -> object:
            return xapi.read(statements, {}, [])

        csv_s, csv_table = best(read_csv, args.repeat)
        xapi_s, table = best(read_xapi, args.repeat)
        n = table.num_rows  # type: ignore[attr-defined]
        if n != args.statements or csv_table.num_rows != n:  # type: ignore[attr-defined]
            raise SystemExit(f"row counts differ: xapi {n}, csv {csv_table.num_rows}")
        rows = table.column("_row").to_pylist()  # type: ignore[attr-defined]
        if rows != sorted(rows):
            raise SystemExit("xapi rows are out of file order")
        same = table.select(["participant_id", "exchange_id", "occurred_at", "activity"]) \
            .equals(csv_table.select(["participant_id", "exchange_id", "occurred_at",  # type: ignore[attr-defined]
                                      "activity"]))
        print(f"xapi read(): {xapi_s:6.2f} s  {n / xapi_s:12,.0f} rows/s")
        print(f"csv read_csv:{csv_s:6.2f} s  {n / csv_s:12,.0f} rows/s")
        print(f"ratio xapi/csv rate: {csv_s / xapi_s:.2f} (target >= 0.50); same events: {same}")


if __name__ == "__main__":
    main()
