"""The derive step over a lake, on DuckDB or Spark (issue 16): `python -m analytics derive`.

A lake is a folder (a local path; on a cluster, any URI Spark reads) of Parquet tables:
`<lake>/<table>/…` for the canonical tables the day facts read (`BASE`). Events may be
Hive-partitioned, e.g. `events/event_date=2026-03-29/program=PA/part-0.parquet`; the partition
columns are not read. `derive` runs the portable day-fact steps (`rollups.fact_steps`) on the
chosen engine and writes each derived table to `<lake>/derived/<table>/`:
- res_person_keys as one file;
- res_person_hours, res_person_days and res_answer_days partitioned by `day`.

Each table is written to a new folder first, then swapped in by two renames. A failed run
leaves the previous tables; a reader that lists a folder during the swap may find it missing
for that instant.

What is not here yet (README, "Scale-out"): appending to a lake from `python -m etl load`,
re-deriving only the touched days, and the rollup cubes and result tables.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from analytics.derive import portable, rollups
from etl import schema

__all__ = ["BASE", "PARTITIONED", "ENGINES", "derive", "LakeError"]

# lake folder -> the table the derive SQL names
BASE = {"participants": schema.PARTICIPANTS.name, "institutions": schema.INSTITUTIONS.name,
        "events": schema.EVENTS.name, "responses": schema.RESPONSES.name}
PARTITIONED = {schema.RES_PERSON_HOURS.name, schema.RES_PERSON_DAYS.name,
               schema.RES_ANSWER_DAYS.name}  # written partitioned by day
ENGINES = ("duckdb", "spark")


class LakeError(ValueError):
    """A lake the derive cannot read, said with the folder and what is missing."""


def _base_paths(lake: Path) -> dict[str, Path]:
    missing = [f for f in BASE if not any((lake / f).rglob("*.parquet"))]
    if missing:
        raise LakeError(f"{lake}: no Parquet files under {', '.join(missing)} (a lake holds "
                        f"{', '.join(BASE)}, each a folder of Parquet files)")
    return {f: lake / f for f in BASE}


def _swap(tmp: Path, final: Path) -> None:
    old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def derive(lake: str | Path, engine: str = "duckdb", master: str = "local[*]"
           ) -> dict[str, int]:
    """Run the day-fact steps over `lake` on `engine`; returns the rows of each derived
    table written to `<lake>/derived/`."""
    if engine not in ENGINES:
        raise LakeError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    lake = Path(lake)
    paths = _base_paths(lake)
    out_dir = lake / "derived"
    out_dir.mkdir(exist_ok=True)
    steps = rollups.fact_steps()
    portable.check(st.select for st in steps)
    work = out_dir / f".tmp-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        counts = (_on_duckdb(paths, steps, work) if engine == "duckdb"
                  else _on_spark(paths, steps, work, master))
        for name in counts:
            _swap(work / name, out_dir / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts


def _on_duckdb(paths: dict[str, Path], steps: list[rollups.Step], work: Path
               ) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    try:
        for folder, table in BASE.items():
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
                        f"'{paths[folder]}/**/*.parquet', hive_partitioning = true, "
                        "union_by_name = true)")
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


def _on_spark(paths: dict[str, Path], steps: list[rollups.Step], work: Path, master: str
              ) -> dict[str, int]:
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(master).appName("exchange-impact-derive")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    for folder, table in BASE.items():
        spark.read.option("mergeSchema", "true").parquet(str(paths[folder])
                                                          ).createOrReplaceTempView(table)
    counts = {}
    for st in steps:
        df = spark.sql(portable.to_spark(st.select))
        if st.temp:
            df.cache().createOrReplaceTempView(st.name)
            continue
        df = df.cache()
        df.createOrReplaceTempView(st.name)
        writer = df.write.mode("overwrite")
        if st.name in PARTITIONED:
            writer = writer.partitionBy("day")
        writer.parquet(str(work / st.name))
        counts[st.name] = df.count()
    return counts
