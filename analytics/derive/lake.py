"""The derive step over a lake, on DuckDB or Spark (issue 16): `python -m analytics derive`.

A lake is a folder (a local path; on a cluster, any URI Spark reads) of Parquet tables:
`<lake>/<table>/…` for the canonical tables the day facts read (`BASE`). Events may be
Hive-partitioned, e.g. `events/event_date=2026-03-29/program=PA/part-0.parquet`. `derive` runs
the portable day-fact steps (`rollups.fact_steps`) on the chosen engine and writes each derived
table to `<lake>/derived/<table>/`:
- res_person_keys as one file;
- res_person_hours, res_person_days and res_answer_days partitioned by `day`.

Each table is written to a new folder first, then swapped in by two renames. A failed run
leaves the previous tables; a reader that lists a folder during the swap may find it missing
for that instant. `<lake>/derived/_manifest.json` records the input files a derive read, so
that the next one re-derives only the days of new event files (`derive`).

A lake that `python -m etl load --lake` writes (`etl.lake`) is read at its newest version (the
files its log's newest entry lists); a folder of Parquet files without a log is read whole. What
is not here yet (README, "Scale-out"): the result tables, and the serving warehouse from a lake.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from analytics.derive import portable, rollups
from etl import schema

__all__ = ["BASE", "PARTITIONED", "ENGINES", "MANIFEST", "Derived", "derive", "LakeError"]

# lake folder -> the table the derive SQL names
BASE = {"participants": schema.PARTICIPANTS.name, "institutions": schema.INSTITUTIONS.name,
        "events": schema.EVENTS.name, "responses": schema.RESPONSES.name}
PARTITIONED = {schema.RES_PERSON_HOURS.name, schema.RES_PERSON_DAYS.name,
               schema.RES_ANSWER_DAYS.name}  # written partitioned by day
ENGINES = ("duckdb", "spark")
# Spark settings a derive starts with (`--conf` overrides them). Broadcasting the person keys
# (autoBroadcastJoinThreshold 512 MB) was tried: at 10^7 events on 2 busy cores it took 461 s
# and a 23 GB peak, against 233 s and 10 GB without it under the same load; Spark's own choice
# of join is kept.
SPARK_DEFAULTS: dict[str, str] = {}


class LakeError(ValueError):
    """A lake the derive cannot read, said with the folder and what is missing."""


def _base_paths(lake: Path) -> dict[str, list[Path]]:
    """Each base table's Parquet files: those the newest version of the lake's log lists (a lake
    `python -m etl load --lake` writes, `etl.lake`), else every file under its folder."""
    from etl import lake as lakes

    snap = lakes.snapshot(lake)
    files = {f: (snap.paths(lake, t) if snap.version else sorted((lake / f).rglob("*.parquet")))
             for f, t in BASE.items()}
    missing = [f for f, listed in files.items() if not listed]
    if missing:
        raise LakeError(f"{lake}: no Parquet files under {', '.join(missing)} (a lake holds "
                        f"{', '.join(BASE)}, each a folder of Parquet files)")
    return files


def lake_root(files: list[Path], folder: str) -> Path:
    """The table folder `folder` the files lie under (Spark's basePath for their partitions)."""
    p = files[0]
    while p.name != folder:
        p = p.parent
    return p


def _swap(tmp: Path, final: Path) -> None:
    old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class Derived:
    """What a derive wrote: rows per table written, "full" or "incremental", and the UTC days
    an incremental run re-derived."""
    counts: dict[str, int]
    mode: str
    days: tuple[str, ...] = ()


def _inventory(lake: Path, paths: dict[str, list[Path]]) -> dict[str, dict[str, list[int]]]:
    """The Parquet files of each base table: path relative to the table's folder ->
    [size, mtime_ns]."""
    return {f: {str(p.relative_to(lake / f)): [p.stat().st_size, p.stat().st_mtime_ns]
                for p in files} for f, files in paths.items()}


def _appended_days(lake: Path, now: dict, before: dict | None) -> list[str] | None:
    """The UTC days to re-derive when the only change since the last derive is in event files:
    new files (an append, late events included), and files that went or changed where their
    path names their UTC day (`event_date=…`, as a load into a lake rewrites a day it touched);
    every other table as it was. Each day of those events, and the day before it. None: a full
    derive is needed (no previous run, another table changed, or an event file of no known
    day went or changed)."""
    from etl import lake as lakes

    if before is None or set(before) != set(now):
        return None
    if any(before[f] != now[f] for f in now if f != "events"):
        return None
    old, new = before["events"], now["events"]
    gone = [k for k, v in old.items() if new.get(k) != v]
    gone_days = {lakes.partition_of(schema.EVENTS.name, f"events/{k}") for k in gone}
    if None in gone_days:
        return None  # an event file of no known day changed or went: not an append
    added = [lake / "events" / k for k in new if old.get(k) != new[k]]
    if not added and not gone_days:
        return []
    import duckdb

    con = duckdb.connect()
    try:
        portable.install(con)
        files = ", ".join(f"'{p}'" for p in added)
        days = [f"SELECT DATE '{d}' AS d" for d in sorted(gone_days)]
        if added:
            days.append(f"SELECT ei_utc_day(occurred_at) AS d FROM read_parquet([{files}], "
                        "hive_partitioning = false)")
        rows = con.execute(f"""WITH e AS ({' UNION '.join(days)})
                SELECT DISTINCT d FROM (SELECT d FROM e UNION SELECT d - 1 FROM e)
                WHERE d IS NOT NULL ORDER BY d""").fetchall()
    finally:
        con.close()
    return [r[0].isoformat() for r in rows]


def derive(lake: str | Path, engine: str = "duckdb", master: str = "local[*]", *,
           full: bool = False, conf: dict[str, str] | None = None) -> Derived:
    """Run the day-fact steps over `lake` on `engine` and write them to `<lake>/derived/`.

    When the only change since the last derive is new event files (a load's append, late
    events included), only the UTC days of their events, and the day before each, are
    re-derived: their partitions of res_person_hours and res_person_days are recomputed from
    every event of those days and swapped in; the person keys and the answer days stay. Any
    other change, or `full`, derives everything. Both give the same tables. `conf`: Spark
    settings, e.g. {"spark.driver.memory": "8g"}."""
    if engine not in ENGINES:
        raise LakeError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    lake = Path(lake)
    paths = _base_paths(lake)
    out_dir = lake / "derived"
    out_dir.mkdir(exist_ok=True)
    now = _inventory(lake, paths)
    before = None
    if not full and (out_dir / MANIFEST).exists():
        before = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8")).get("inputs")
    days = _appended_days(lake, now, before) if not full else None
    if days is None:
        steps = rollups.fact_steps()
        views: dict[str, Path] = {}
    else:
        literals = ", ".join(f"DATE '{d}'" for d in days) or "NULL"
        events = f"(SELECT * FROM {schema.EVENTS.name} WHERE ei_utc_day(occurred_at) IN " \
                 f"({literals}))"
        steps = [*rollups.hours_steps(events),
                 rollups.Step(schema.RES_PERSON_DAYS.name, rollups._days_sql())]
        views = {schema.RES_PERSON_KEYS.name: out_dir / schema.RES_PERSON_KEYS.name}
    portable.check(st.select for st in steps)
    work = out_dir / f".tmp-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        counts = ({} if days == [] else
                  _on_duckdb(paths, steps, work, views) if engine == "duckdb"
                  else _on_spark(paths, steps, work, master, views, conf or {}))
        for name in counts:
            if days is None:
                _swap(work / name, out_dir / name)
                continue
            for part in sorted((work / name).glob("day=*")):
                _swap(part, out_dir / name / part.name)
        manifest = {"inputs": now, "mode": "full" if days is None else "incremental",
                    "days": days or [], "engine": engine}
        tmp = out_dir / f".{MANIFEST}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(manifest), encoding="utf-8")
        os.replace(tmp, out_dir / MANIFEST)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Derived(counts, "full" if days is None else "incremental", tuple(days or ()))


def _on_duckdb(paths: dict[str, list[Path]], steps: list[rollups.Step], work: Path,
               views: dict[str, Path]) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    try:
        sources = {t: ", ".join(f"'{p}'" for p in paths[f]) for f, t in BASE.items()}
        sources |= {t: f"'{path}/**/*.parquet'" for t, path in views.items()}
        for table, files in sources.items():
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{files}], "
                        "hive_partitioning = true, union_by_name = true)")
        portable.install(con)
        for stmt in rollups.duckdb_statements(steps):
            con.execute(stmt)
        counts = {}
        for st in steps:
            if st.temp:
                continue
            part = " , PARTITION_BY (day)" if st.name in PARTITIONED else ""
            target = work / st.name if part else work / st.name / "part-0.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY \"{st.name}\" TO '{target}' (FORMAT parquet{part})")
            counts[st.name] = con.execute(f'SELECT count(*) FROM "{st.name}"').fetchone()[0]
        return counts
    finally:
        con.close()


def _on_spark(paths: dict[str, list[Path]], steps: list[rollups.Step], work: Path, master: str,
              views: dict[str, Path], conf: dict[str, str]) -> dict[str, int]:
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(master).appName("exchange-impact-derive")
               .config("spark.sql.session.timeZone", "UTC"))
    for key, value in {**SPARK_DEFAULTS, **conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    sources = {t: (lake_root(paths[f], f), [str(p) for p in paths[f]]) for f, t in BASE.items()}
    sources |= {t: (path, [str(path)]) for t, path in views.items()}
    for table, (root, files) in sources.items():
        (spark.read.option("mergeSchema", "true").option("basePath", str(root))
         .parquet(*files).createOrReplaceTempView(table))
    counts = {}
    for st in steps:
        df = spark.sql(portable.to_spark(st.select, table=not st.temp))
        if st.temp:  # small working tables (zones, offsets, person keys): kept in memory
            df.cache().createOrReplaceTempView(st.name)
            continue
        writer = df.write.mode("overwrite")
        if st.name in PARTITIONED:
            writer = writer.partitionBy("day")
        writer.parquet(str(work / st.name))
        # Later steps read the table back from its files, and its count comes from their
        # footers: a cached table as large as the log's hours would sit in the driver's memory.
        written = spark.read.parquet(str(work / st.name))
        written.createOrReplaceTempView(st.name)
        counts[st.name] = written.count()
    return counts
