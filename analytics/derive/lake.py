"""The derive step over a lake, on DuckDB or Spark (issue 16): `python -m analytics derive`.

A lake is a folder (a local path; on a cluster, any URI Spark reads) of Parquet tables:
`<lake>/<table>/…` for the canonical tables the day facts read (`BASE`). Events may be
Hive-partitioned, e.g. `events/event_date=2026-03-29/program=PA/part-0.parquet`. `derive` runs
the portable derive steps on the chosen engine, in two phases, and writes each derived table to
`<lake>/derived/<table>/`:
1. the day facts (`rollups.fact_steps`): res_person_keys as one file; res_person_hours,
   res_person_days, res_answer_days and res_person_activities partitioned by `day`;
2. from the day facts as written, the cubes (`rollups.cube_steps`: weekly, monthly, hourly,
   retention, people, response waves) and the month masks (`rollups.month_steps`:
   res_pair_months and the pair, week and retention-week month cubes), each as one folder.

Every table has the schema's column names and types on both engines, but for the month masks:
a HUGEINT in the embedded warehouse, a DECIMAL(38,0) of the same value in a lake (`LAKE_MASK`),
since Spark has no 128-bit integer and DuckDB writes a HUGEINT to Parquet as a DOUBLE.

Each table is written to a new folder first, then swapped in by two renames. A failed run
leaves the previous tables; a reader that lists a folder during the swap may find it missing
for that instant. `<lake>/derived/_manifest.json` records the input files a derive read, so
that the next one re-derives only the days of new event files (`derive`), and the values a
serving warehouse keeps in meta (`rollups.META_MULTI`, `rollups.META_MONTHS_BASE`).

A lake that `python -m etl load --lake` writes (`etl.lake`) is read at its newest version (the
files its log's newest entry lists); a folder of Parquet files without a log is read whole. What
is not here (README, "Scale-out"): the scores, gains and their cubes (their input,
res_scale_scores, comes from the statistics) and the result tables; `python -m analytics serve`
computes them in the serving warehouse it builds from the day facts here (`serve`), after
checking the manifest's inputs are the lake's newest version's.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from analytics.derive import portable, rollups
from etl import lake as lakes
from etl import schema

__all__ = ["BASE", "PARTITIONED", "FACTS", "ENGINES", "MANIFEST", "LAKE_MASK", "Derived",
           "derive", "spark_frame", "LakeError", "base_paths", "inventory", "typed_columns"]

# lake folder -> the table the derive SQL names
BASE = {"participants": schema.PARTICIPANTS.name, "institutions": schema.INSTITUTIONS.name,
        "events": schema.EVENTS.name, "responses": schema.RESPONSES.name}
PARTITIONED = {schema.RES_PERSON_HOURS.name, schema.RES_PERSON_DAYS.name,
               schema.RES_ANSWER_DAYS.name,
               schema.RES_PERSON_ACTIVITIES.name}  # written partitioned by day
FACTS = (schema.RES_PERSON_KEYS, schema.RES_PERSON_HOURS, schema.RES_PERSON_DAYS,
         schema.RES_ANSWER_DAYS)  # what the cubes are built from
MASKS = (schema.RES_PAIR_MONTHS, schema.RES_PAIR_MONTH_CUBE, schema.RES_WEEK_MONTHS,
         schema.RES_RETENTION_MONTHS)  # the month-mask tables a lake holds
ENGINES = ("duckdb", "spark")
# A month mask in a lake: DECIMAL(38,0) holds every 126-bit mask (2^126 - 1 < 10^38) exactly,
# on both engines; a serving warehouse casts it to HUGEINT.
LAKE_MASK = "DECIMAL(38,0)"
_SPARK_TYPES = {"INTEGER": "INT", "BIGINT": "BIGINT", "TINYINT": "TINYINT", "DOUBLE": "DOUBLE",
                "VARCHAR": "STRING", "DATE": "DATE", "BOOLEAN": "BOOLEAN", "HUGEINT": LAKE_MASK}


class LakeError(ValueError):
    """A lake the derive cannot read, said with the folder and what is missing."""


def base_paths(lake: Path, snap: lakes.Snapshot) -> dict[str, list[Path]]:
    """Each base table's Parquet files: those version `snap` of the lake's log lists (a lake
    `python -m etl load --lake` writes, `etl.lake`), else (version 0, no log) every file under
    its folder."""
    return {f: (snap.paths(lake, t) if snap.version else sorted((lake / f).rglob("*.parquet")))
            for f, t in BASE.items()}


def _base_paths(lake: Path) -> tuple[dict[str, list[Path]], int]:
    """`base_paths` of the newest version, and that version; refused when a table has none."""
    snap = lakes.snapshot(lake)
    files = base_paths(lake, snap)
    missing = [f for f, listed in files.items() if not listed]
    if missing:
        raise LakeError(f"{lake}: no Parquet files under {', '.join(missing)} (a lake holds "
                        f"{', '.join(BASE)}, each a folder of Parquet files)")
    return files, snap.version


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
    """What a derive wrote: rows per table written, "full" or "incremental", the UTC days
    an incremental run re-derived, and the meta values of the cubes (`rollups.META_MULTI`,
    `rollups.META_MONTHS_BASE`; '' when the masks were not made)."""
    counts: dict[str, int]
    mode: str
    days: tuple[str, ...] = ()
    meta: dict[str, str] | None = None


def inventory(lake: Path, paths: dict[str, list[Path]]) -> dict[str, dict[str, list[int]]]:
    """The Parquet files of each base table: path relative to the table's folder ->
    [size, mtime_ns]; the manifest records it as the derive's inputs."""
    return {f: {str(p.relative_to(lake / f)): [p.stat().st_size, p.stat().st_mtime_ns]
                for p in files} for f, files in paths.items()}


def _appended_days(lake: Path, now: dict, before: dict | None) -> list[str] | None:
    """The UTC days to re-derive when the only change since the last derive is in event files:
    new files (an append, late events included), and files that went or changed where their
    path names their UTC day (`event_date=…`, as a load into a lake rewrites a day it touched);
    every other table as it was. Each day of those events, and the day before it. None: a full
    derive is needed (no previous run, another table changed, or an event file of no known
    day went or changed)."""
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
    """Run the derive steps over `lake` on `engine` and write them to `<lake>/derived/`.

    Day facts. When the only change since the last derive is new event files (a load's append,
    late events included), only the UTC days of their events, and the day before each, are
    re-derived: their partitions of res_person_hours, res_person_days and res_person_activities
    are recomputed from every event of those days and swapped in; the person keys and the answer
    days stay. Any
    other change, or `full`, derives everything. Both give the same tables.
    Cubes and month masks: recomputed in full from the day facts as written, after every
    derive that changed them. They are small (a cube row is a cell, a mask row a pair), and a
    full pass needs no subtraction of old contributions, which would need the old facts.
    `conf`: Spark settings, e.g. {"spark.driver.memory": "8g"}."""
    if engine not in ENGINES:
        raise LakeError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    lake = Path(lake)
    paths, version = _base_paths(lake)
    out_dir = lake / "derived"
    out_dir.mkdir(exist_ok=True)
    now = inventory(lake, paths)
    before = None
    if not full and (out_dir / MANIFEST).exists():
        before = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    days = _appended_days(lake, now, before.get("inputs") if before else None) \
        if not full else None
    if days is not None and not all((out_dir / st.name).exists() for st in rollups.fact_steps()
                        if not st.temp):
        days = None  # derived before a fact table existed: it is made in full
    if days is None:
        steps = rollups.fact_steps()
        views: dict[str, Path] = {}
    else:
        literals = ", ".join(f"DATE '{d}'" for d in days) or "NULL"
        events = f"(SELECT * FROM {schema.EVENTS.name} WHERE ei_utc_day(occurred_at) IN " \
                 f"({literals}))"
        steps = [*rollups.hours_steps(events),
                 rollups.Step(schema.RES_PERSON_DAYS.name, rollups._days_sql()),
                 rollups.activities_step(events)]
        views = {schema.RES_PERSON_KEYS.name: out_dir / schema.RES_PERSON_KEYS.name}
    portable.check(st.select for st in [*steps, *rollups.cube_steps()])
    work = out_dir / f".tmp-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    counts: dict[str, int] = {}
    meta = (before or {}).get("meta")
    try:
        if days != []:
            run = _DuckDB if engine == "duckdb" else partial(_Spark, master, conf or {})
            facts = run(paths, views)
            try:
                counts = facts.write(steps, work)
            finally:
                facts.close()
            for name in counts:
                if days is None:
                    _swap(work / name, out_dir / name)
                    continue
                for part in sorted((work / name).glob("day=*")):
                    _swap(part, out_dir / name / part.name)
            cubes = run({}, {t.name: out_dir / t.name for t in FACTS})
            try:
                done, meta = _cubes(cubes, work)
            finally:
                cubes.close()
            for name in done:
                _swap(work / name, out_dir / name)
            if not meta[rollups.META_MONTHS_BASE]:  # no masks: none stale left either
                for t in MASKS:
                    shutil.rmtree(out_dir / t.name, ignore_errors=True)
            counts |= done
        manifest = {"inputs": now, "version": version,
                    "mode": "full" if days is None else "incremental",
                    "days": days or [], "engine": engine, "meta": meta}
        tmp = out_dir / f".{MANIFEST}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(manifest), encoding="utf-8")
        os.replace(tmp, out_dir / MANIFEST)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Derived(counts, "full" if days is None else "incremental", tuple(days or ()), meta)


def _cubes(run: _DuckDB | _Spark, work: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Write the cubes and, when the facts' span allows (`rollups.months_base`), the month
    masks from the day facts `run` reads; returns the rows written and the meta values."""
    counts = run.write(rollups.cube_steps(), work)
    multi = run.one(rollups.MULTI_SQL)[0]
    base = rollups.months_base(*run.one(rollups.MONTH_SPAN_SQL))
    if base is not None:
        counts |= run.write(rollups.month_steps(base), work)
    return counts, {rollups.META_MULTI: str(int(multi)),
                    rollups.META_MONTHS_BASE: base.isoformat() if base else ""}


def typed_columns(table: schema.Table, types: dict[str, str] | None = None, quote: str = '"'
           ) -> list[str]:
    """`table`'s columns, each cast to its type (`types` maps a schema type to the engine's)."""
    return [f"CAST({quote}{c.name}{quote} AS {(types or {}).get(c.sql_type, c.sql_type)}) "
            f"AS {quote}{c.name}{quote}" for c in table.columns]


def _empty(table: schema.Table, types: dict[str, str] | None = None, quote: str = '"') -> str:
    """A select list of one row of NULLs with `table`'s columns and types (for a table whose
    folder holds no file)."""
    return ", ".join(f"CAST(NULL AS {(types or {}).get(c.sql_type, c.sql_type)}) "
                     f"AS {quote}{c.name}{quote}" for c in table.columns)


class _DuckDB:
    """One DuckDB connection over the lake: `base` folders and derived `views` as views."""

    def __init__(self, base: dict[str, list[Path]], views: dict[str, Path]) -> None:
        import duckdb

        self.con = duckdb.connect()
        for f, files in base.items():
            listed = ", ".join(f"'{p}'" for p in files)
            self.con.execute(f"CREATE VIEW {BASE[f]} AS SELECT * FROM read_parquet([{listed}], "
                             "hive_partitioning = true, union_by_name = true)")
        for table, path in views.items():
            if table not in rollups.ROLLUP_TABLES:
                scan = "*"
            elif not any(path.rglob("*.parquet")):  # e.g. no answers yet: no file written
                self.con.execute(f"CREATE VIEW {table} AS SELECT * FROM "
                                 f"(SELECT {_empty(rollups.ROLLUP_TABLES[table])}) WHERE false")
                continue
            else:
                scan = ", ".join(typed_columns(rollups.ROLLUP_TABLES[table]))
            self.con.execute(f"CREATE VIEW {table} AS SELECT {scan} FROM read_parquet("
                             f"'{path}/**/*.parquet', hive_partitioning = true, "
                             "union_by_name = true)")
        portable.install(self.con)

    def write(self, steps: list[rollups.Step], work: Path) -> dict[str, int]:
        portable.check(st.select for st in steps)  # what Spark would run, DuckDB runs
        for stmt in rollups.duckdb_statements(steps):
            self.con.execute(stmt)
        counts = {}
        for st in steps:
            if st.temp:
                continue
            part = " , PARTITION_BY (day)" if st.name in PARTITIONED else ""
            target = work / st.name if part else work / st.name / "part-0.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            cols = ", ".join(typed_columns(rollups.ROLLUP_TABLES[st.name], {"HUGEINT": LAKE_MASK}))
            self.con.execute(f"COPY (SELECT {cols} FROM \"{st.name}\") TO '{target}' "
                             f"(FORMAT parquet{part})")
            counts[st.name] = self.con.execute(f'SELECT count(*) FROM "{st.name}"').fetchone()[0]
        return counts

    def one(self, sql: str) -> tuple:
        return self.con.execute(sql).fetchone()

    def close(self) -> None:
        self.con.close()


def spark_frame(spark, step: rollups.Step):  # noqa: ANN001, ANN201 (pyspark, imported lazily)
    """The Spark DataFrame of `step`: its statement transpiled (`portable.to_spark`); for a
    derived table, its columns named and cast as the schema's (by position, as DuckDB's INSERT
    into the table's DDL does), the month masks as LAKE_MASK."""
    df = spark.sql(portable.to_spark(step.select, table=not step.temp))
    if step.temp:
        return df
    table = rollups.ROLLUP_TABLES[step.name]
    if len(df.columns) != len(table.columns):
        raise ValueError(f"{step.name}: the statement gives {len(df.columns)} columns, the "
                         f"table has {len(table.columns)}")
    return df.toDF(*table.column_names).selectExpr(*typed_columns(table, _SPARK_TYPES, "`"))


class _Spark:
    """The Spark session (created with `master` and `conf` unless one is running) over the lake:
    `base` folders and derived `views` as temporary views."""

    def __init__(self, master: str, conf: dict[str, str], base: dict[str, list[Path]],
                 views: dict[str, Path]) -> None:
        from pyspark.sql import SparkSession

        builder = (SparkSession.builder.master(master).appName("exchange-impact-derive")
                   .config("spark.sql.session.timeZone", "UTC"))
        # Spark chooses its joins: broadcasting the person keys (autoBroadcastJoinThreshold
        # 512 MB) was tried, and at 10^7 events on 2 busy cores it took 461 s and a 23 GB peak
        # against 233 s and 10 GB without it under the same load.
        for key, value in conf.items():
            builder = builder.config(key, value)
        self.spark = builder.getOrCreate()
        self.cached: list = []
        for f, files in base.items():
            (self.spark.read.option("mergeSchema", "true")
             .option("basePath", str(lake_root(files, f))).parquet(*map(str, files))
             .createOrReplaceTempView(BASE[f]))
        for table, path in views.items():
            derived = rollups.ROLLUP_TABLES.get(table)
            if derived is not None and not any(path.rglob("*.parquet")):
                # e.g. no answers yet: Spark wrote no file and cannot read the folder
                df = self.spark.sql(f"SELECT {_empty(derived, _SPARK_TYPES, '`')} WHERE false")
            else:
                df = self.spark.read.option("mergeSchema", "true").parquet(str(path))
                if derived is not None:
                    df = df.selectExpr(*typed_columns(derived, _SPARK_TYPES, "`"))
            df.createOrReplaceTempView(table)

    def write(self, steps: list[rollups.Step], work: Path) -> dict[str, int]:
        counts = {}
        for st in steps:
            df = spark_frame(self.spark, st)
            if st.temp:  # small working tables (zones, offsets, person keys): kept in memory
                df = df.cache()
                self.cached.append(df)
                df.createOrReplaceTempView(st.name)
                continue
            writer = df.write.mode("overwrite")
            if st.name in PARTITIONED:
                writer = writer.partitionBy("day")
            writer.parquet(str(work / st.name))
            # Later steps read the table back from its files, and its count comes from their
            # footers: a cached table as large as the log's hours would sit in the driver's
            # memory.
            written = self.spark.read.parquet(str(work / st.name))
            written.createOrReplaceTempView(st.name)
            counts[st.name] = written.count()
        return counts

    def one(self, sql: str) -> tuple:
        return tuple(self.spark.sql(portable.to_spark(sql)).collect()[0])

    def close(self) -> None:
        for df in self.cached:
            df.unpersist()
