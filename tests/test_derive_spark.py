"""Issue 16, first step: one derive step, two engines. The day-fact steps of the derive
(`analytics.derive.rollups.fact_steps`: person keys, local hours, days, answer days) run as
written on DuckDB and, transpiled by `analytics.derive.portable.to_spark`, on a local Spark,
both over the same generated lake (Hive-partitioned Parquet). Every table is equal as a
multiset (floats within 1e-9). The lake holds what breaks naive ports:
- daylight-saving switches in five zones (with 30- and 45-minute offsets);
- millisecond timestamps on both sides of UTC midnight, ties, NULL minutes;
- an institution without a zone, and a participant of an unknown institution;
- events of unknown participants, and late events written by a later load into an old day's
  partition.
The lint refuses what is outside the portable subset, naming the macro to use, and the macros
fix the three constructs that transpile to silently different answers."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from analytics.derive import portable, rollups
from etl import schema

pytestmark = pytest.mark.spark

ZONES = {"I1": "Europe/Paris", "I2": "America/New_York", "I3": "Australia/Lord_Howe",
         "I4": "Asia/Kathmandu", "I5": None, "I6": "Pacific/Chatham"}
# UTC instants around each zone's switch in 2026, and around UTC midnight
SWITCHES = ["2026-03-08 07:00", "2026-03-29 01:00", "2026-10-25 01:00", "2026-04-04 15:00",
            "2026-04-04 14:00", "2026-11-01 06:00", "2026-09-26 14:00", "2026-06-30 00:00"]


def _spark_missing() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="module")
def spark():
    why = _spark_missing()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and Spark cannot run: {why}", pytrace=False)
        pytest.skip(why)
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("exchange-impact-tests")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.driver.memory", "1g")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _people(rng: np.random.Generator) -> pd.DataFrame:
    n = 60
    inst = rng.choice([*ZONES, "I9"], n)  # I9: an institution the lake does not hold
    return pd.DataFrame({
        "participant_id": [f"P{i:03d}" for i in rng.permutation(n)],
        "institution_id": inst,
        "role": rng.choice(["student", "teacher", None], n),
        "gender": rng.choice(["f", "m", "x", None], n),
        "birth_year": pd.Series(rng.choice([2005, 2008, 1980, -1], n)).astype("Int64")
        .where(lambda s: s > 0),
        "comparison": pd.array(rng.choice([True, False, None], n), dtype="boolean"),
    })


def _events(rng: np.random.Generator, people: pd.DataFrame, n: int) -> pd.DataFrame:
    base = pd.to_datetime(rng.choice(SWITCHES, n), utc=True)
    # within ±90 minutes of a switch, to the millisecond
    ts = base + pd.to_timedelta(rng.integers(-5_400_000, 5_400_000, n), unit="ms")
    ids = rng.choice([*people.participant_id, "NOBODY"], n)
    ev = pd.DataFrame({
        "participant_id": ids,
        "exchange_id": rng.choice(["X1", "X2", "X3"], n),
        "occurred_at": ts,
        "minutes": rng.choice([0.5, 1.25, 30.0, np.nan], n),
    })
    ties = ev.sample(20, random_state=1).assign(minutes=2.0)  # same person, instant and exchange
    return pd.concat([ev, ties], ignore_index=True)


def _write_lake(folder: Path) -> Path:
    """The lake: base tables as Parquet, events partitioned by event date and program (Hive),
    with a second load's late events for old days in their own files."""
    rng = np.random.default_rng(16)
    people = _people(rng)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    lake = folder / "lake"
    for name, df in {
        "participants": people,
        "institutions": pd.DataFrame({"institution_id": list(ZONES),
                                      "timezone": list(ZONES.values())}),
        "responses": pd.DataFrame({
            "participant_id": rng.choice(people.participant_id, 150),
            "exchange_id": rng.choice(["X1", "X2"], 150),
            "wave": rng.choice(["pre", "post"], 150),
            "submitted_at": pd.to_datetime(rng.choice(SWITCHES, 150), utc=True)
            + pd.to_timedelta(rng.integers(-3_600_000, 3_600_000, 150), unit="ms"),
        }),
    }.items():
        (lake / name).mkdir(parents=True)
        con.register("df", df)
        con.execute(f"COPY (SELECT * FROM df) TO '{lake / name / 'part-0.parquet'}' "
                    "(FORMAT parquet)")
        con.unregister("df")
    for load, n in (("load1", 1500), ("load2", 200)):  # load2: late events into old days
        ev = _events(rng, people, n)
        if load == "load2":
            ev = ev[ev.occurred_at < pd.Timestamp("2026-06-30", tz="UTC")]
        ev = ev.assign(program=ev.exchange_id.map({"X1": "PA", "X2": "PA", "X3": "PB"}))
        con.register("ev", ev)
        con.execute(f"""COPY (SELECT *, CAST(occurred_at AS DATE) AS event_date FROM ev)
            TO '{lake / 'events'}' (FORMAT parquet, PARTITION_BY (event_date, program),
            FILENAME_PATTERN '{load}_{{uuid}}', APPEND)""")
        con.unregister("ev")
    con.close()
    return lake


BASE = {"participants": schema.PARTICIPANTS.name, "institutions": schema.INSTITUTIONS.name,
        "responses": schema.RESPONSES.name, "events": schema.EVENTS.name}


def _on_duckdb(lake: Path, steps: list[rollups.Step]) -> dict[str, pd.DataFrame]:
    con = duckdb.connect()
    for folder, table in BASE.items():
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
                    f"'{lake / folder}/**/*.parquet', hive_partitioning = true)")
    portable.install(con)
    for stmt in rollups.duckdb_statements(steps):
        con.execute(stmt)
    out = {st.name: con.execute(f'SELECT * FROM "{st.name}"').df()
           for st in steps if not st.temp}
    con.close()
    return out


def _on_spark(spark, lake: Path, steps: list[rollups.Step]) -> dict[str, pd.DataFrame]:
    for folder, table in BASE.items():
        spark.read.parquet(str(lake / folder)).createOrReplaceTempView(table)
    out = {}
    for st in steps:
        df = spark.sql(portable.to_spark(st.select)).cache()
        df.createOrReplaceTempView(st.name)
        if not st.temp:
            out[st.name] = df.toPandas()
    return out


def _rows(df: pd.DataFrame, table: schema.Table) -> list[tuple]:
    """The rows as comparable tuples, in the schema's column order: dates as ISO text, floats
    rounded to 9 places (sums may add in another order), NULL as None; sorted."""
    out = []
    for row in df[list(table.column_names)].itertuples(index=False):
        vals = []
        for v in row:
            if v is None or (not isinstance(v, str) and pd.isna(v)):
                vals.append(None)
            elif isinstance(v, dt.date | pd.Timestamp | np.datetime64):
                vals.append(pd.Timestamp(v).date().isoformat())
            elif isinstance(v, float | np.floating):
                vals.append(round(float(v), 9))
            elif isinstance(v, bool | np.bool_):
                vals.append(bool(v))
            elif isinstance(v, int | np.integer):
                vals.append(int(v))
            else:
                vals.append(str(v))
        out.append(tuple(vals))
    return sorted(out, key=repr)


def test_every_day_fact_step_gives_the_same_table_on_duckdb_and_spark(spark, tmp_path) -> None:
    lake = _write_lake(tmp_path)
    steps = rollups.fact_steps()
    ours, theirs = _on_duckdb(lake, steps), _on_spark(spark, lake, steps)
    assert set(ours) == {schema.RES_PERSON_KEYS.name, schema.RES_PERSON_HOURS.name,
                         schema.RES_PERSON_DAYS.name, schema.RES_ANSWER_DAYS.name}
    for name, want in ours.items():
        table = schema.ROLLUP_TABLES[name]
        assert len(want) > 20, name  # the comparison is not vacuous
        assert _rows(theirs[name], table) == _rows(want, table), name
    hours = ours[schema.RES_PERSON_HOURS.name]
    # the lake did hold what breaks a naive port: several local hours on switch days, events of
    # a person without a zone (no local hour), and every weekday
    assert hours["hour"].isna().any() and hours["hour"].nunique() > 12
    assert hours["weekday"].dropna().nunique() >= 3


def _read_derived(lake: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect()
    out = {name: con.execute(f"SELECT * FROM read_parquet('{lake}/derived/{name}/**/*.parquet', "
                             "hive_partitioning = true)").df()
           for name in (schema.RES_PERSON_KEYS.name, schema.RES_PERSON_HOURS.name,
                        schema.RES_PERSON_DAYS.name, schema.RES_ANSWER_DAYS.name)}
    con.close()
    return out


def test_the_derive_command_writes_the_same_lake_tables_on_both_engines(spark, tmp_path
                                                                         ) -> None:
    """`python -m analytics derive --lake DIR` (DuckDB) and `--engine spark` write the same
    derived tables to DIR/derived/, the day facts partitioned by day; a lake without events
    is refused with one line naming the folder."""
    import subprocess
    import sys

    from analytics.derive import lake as lakes

    lake = _write_lake(tmp_path)
    r = subprocess.run([sys.executable, "-m", "analytics", "derive", "--lake", str(lake)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "res_person_hours:" in r.stderr
    by_duckdb = _read_derived(lake)
    assert any(p.name.startswith("day=") for p in (lake / "derived" / "res_person_days").iterdir())
    counts = lakes.derive(lake, engine="spark", full=True).counts  # the test's session
    by_spark = _read_derived(lake)
    for name, want in by_duckdb.items():
        table = schema.ROLLUP_TABLES[name]
        assert counts[name] == len(want) > 20, name
        assert _rows(by_spark[name], table) == _rows(want, table), name
    assert not [p for p in (lake / "derived").iterdir() if p.name.startswith(".")]
    shutil.rmtree(lake / "events")
    r = subprocess.run([sys.executable, "-m", "analytics", "derive", "--lake", str(lake)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and f"{lake}: no Parquet files under events" in r.stderr, r.stderr
    assert len(_read_derived(lake)[schema.RES_PERSON_DAYS.name]) == len(
        by_duckdb[schema.RES_PERSON_DAYS.name])  # the failed run left the tables


def _append_load(lake: Path) -> None:
    """A third load: a new day D (2026-12-01, events up to the last millisecond before UTC
    midnight and from its first), and one late event of day D - 3 (2026-11-28), written into
    their own event-date partitions."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    people = con.execute(f"SELECT participant_id FROM read_parquet('{lake}/participants/*.parquet')"
                         " ORDER BY participant_id LIMIT 12").fetchall()
    rows = []
    for i, (pid,) in enumerate(people):
        rows += [(pid, "X1", f"2026-12-01 {i:02d}:15:00.250+00", 3.5),
                 (pid, "X3", "2026-12-01 23:59:59.999+00", None)]
    rows += [(people[0][0], "X2", "2026-12-02 00:00:00.000+00", 1.0),
             (people[1][0], "X2", "2026-11-28 22:10:00.001+00", 7.25)]  # the late event
    con.execute("CREATE TABLE ev (participant_id VARCHAR, exchange_id VARCHAR, "
                "occurred_at TIMESTAMPTZ, minutes DOUBLE)")
    con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?)", rows)
    con.execute(f"""COPY (SELECT *, CASE WHEN exchange_id = 'X3' THEN 'PB' ELSE 'PA' END AS program,
                           CAST(occurred_at AS DATE) AS event_date FROM ev)
        TO '{lake / 'events'}' (FORMAT parquet, PARTITION_BY (event_date, program),
        FILENAME_PATTERN 'load3_{{uuid}}', APPEND)""")
    con.close()


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_an_appended_day_and_a_late_event_rederive_their_days_only_and_equal_a_rebuild(
        spark, tmp_path, engine) -> None:
    """After a derive, a load appends day D and a late event of day D - 3: the next derive
    re-derives only those days and the day before each (their partitions swapped in, every
    other partition untouched), and every derived table equals a full rebuild's."""
    from analytics.derive import lake as lakes

    lake = _write_lake(tmp_path)
    assert lakes.derive(lake, engine=engine).mode == "full"
    days_dir = lake / "derived" / schema.RES_PERSON_DAYS.name
    untouched = {p.name: p.stat().st_ino for p in days_dir.iterdir()}
    _append_load(lake)
    done = lakes.derive(lake, engine=engine)
    assert done.mode == "incremental"
    assert done.days == ("2026-11-27", "2026-11-28", "2026-11-30", "2026-12-01", "2026-12-02")
    assert {p.name: p.stat().st_ino for p in days_dir.iterdir()
            if p.name in untouched} == untouched  # the old days' partitions were not rewritten
    assert "day=2026-12-01" in {p.name for p in days_dir.iterdir()}
    incremental = _read_derived(lake)
    again = tmp_path / "again"
    again.mkdir()
    for folder in lakes.BASE:
        shutil.copytree(lake / folder, again / folder)
    lakes.derive(again, engine="duckdb", full=True)
    rebuilt = _read_derived(again)
    for name, want in rebuilt.items():
        table = schema.ROLLUP_TABLES[name]
        assert _rows(incremental[name], table) == _rows(want, table), name
    assert lakes.derive(lake, engine=engine).days == ()  # nothing new: nothing re-derived


def test_the_lint_refuses_what_is_outside_the_portable_subset_naming_the_macro() -> None:
    for step in rollups.fact_steps():
        assert portable.problems(step.select) == [], step.name
    cases = {
        "SELECT epoch(ts) FROM t": "ei_epoch",
        "SELECT timezone('Europe/Paris', ts) FROM t": "ei_utc_offset",
        "SELECT list(x ORDER BY t) FROM t": "ei_ordered_list",
        "SELECT date_diff('day', a, b) FROM t": "ei_day_diff",
        "SELECT quantile_cont(x, 0.5) FROM t": "ei_quantile",
        "SELECT len(l) FROM t": "ei_list_len",
        "SELECT strftime(ts, '%Y') FROM t": "not in the portable subset",
        "SELECT arg_max(a, b) FROM t": "not in the portable subset",
    }
    for sql, said in cases.items():
        found = portable.problems(sql)
        assert found and said in found[0], (sql, found)
        with pytest.raises(portable.PortabilityError, match=said):
            portable.to_spark(sql)


def test_the_macros_give_the_answers_a_plain_transpile_gets_wrong(spark) -> None:
    """epoch with milliseconds, a list in order of another column, and whole days between two
    timestamps: SQLGlot's own transpile answers differently on Spark; the macros do not."""
    import sqlglot

    rows = [(1, "b", dt.datetime(2026, 3, 29, 0, 59, 59, 999000, tzinfo=dt.UTC), 3),
            (1, "a", dt.datetime(2026, 3, 29, 1, 0, 0, 250000, tzinfo=dt.UTC), 1),
            (1, "c", dt.datetime(2026, 3, 30, 0, 30, tzinfo=dt.UTC), 2)]
    frame = pd.DataFrame(rows, columns=["g", "x", "ts", "t"])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("v", frame)
    portable.install(con)
    spark.createDataFrame(frame).createOrReplaceTempView("v")
    queries = {
        "epoch": ("SELECT sum(epoch(ts)) FROM v", "SELECT sum(ei_epoch(ts)) FROM v"),
        "order": ("SELECT list(x ORDER BY t) FROM v GROUP BY g",
                  "SELECT ei_ordered_list(x, t) FROM v GROUP BY g"),
        "days": ("SELECT max(date_diff('day', TIMESTAMP '2026-03-28 23:00:00', ts)) FROM v",
                 "SELECT max(ei_day_diff(TIMESTAMP '2026-03-28 23:00:00', ts)) FROM v"),
    }
    differs = 0
    for name, (plain, macro) in queries.items():
        want = con.execute(macro).fetchone()[0]
        assert con.execute(plain).fetchone()[0] == want, name  # the same on DuckDB
        got = spark.sql(portable.to_spark(macro)).collect()[0][0]
        assert _same(got, want), (name, got, want)
        naive = spark.sql(sqlglot.transpile(plain, read="duckdb", write="spark")[0]
                          ).collect()[0][0]
        differs += not _same(naive, want)
    assert differs >= 2  # the plain transpile's answers differ: the macros are needed
    con.close()


def _same(a: object, b: object) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(float(a) - float(b)) < 1e-6
    return list(a) == list(b) if isinstance(a, list | tuple) else a == b
