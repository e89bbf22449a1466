"""Issue 16: one derive, two engines. Every derive statement a lake runs (the day facts,
`rollups.fact_steps`; the cubes, `rollups.cube_steps`; the month masks, `rollups.month_steps`)
runs as written on DuckDB and, transpiled by `analytics.derive.portable.to_spark`, on a local
Spark, both over the same generated lake (Hive-partitioned Parquet). Every table is equal as a
multiset (floats within 1e-9, masks exactly). The lake holds what breaks naive ports:
- daylight-saving switches in five zones (with 30- and 45-minute offsets);
- millisecond timestamps on both sides of UTC midnight, ties, NULL minutes;
- an institution without a zone, and a participant of an unknown institution;
- events of unknown participants, and late events written by a later load into an old day's
  partition;
- events and answers over 71 months, so that masks have bits on both sides of bit 63 (no
  64-bit integer holds them); participants in two exchanges; people with no events or answers;
  genders padded with no-break and figure spaces.
The lint refuses what is outside the portable subset, naming the macro to use, and the macros
fix the constructs that transpile to rejected or silently different answers."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import re
import shutil
from dataclasses import dataclass
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


# Bit 0 of the lake's masks: the month of the earliest events (`_early`); the switches of 2026
# are months 62 (March) to 70 (November), the appended load's December month 71.
MASK_BASE = dt.date(2021, 1, 1)


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
        # by position, not drawn: the generator's later draws stay as they were
        "activity": np.array(["message", "video call", "upload"])[np.arange(n) % 3],
        "minutes": rng.choice([0.5, 1.25, 30.0, np.nan], n),
    })
    ties = ev.sample(20, random_state=1).assign(minutes=2.0)  # same person, instant and exchange
    return pd.concat([ev, ties], ignore_index=True)


def _early(people: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events of 2021-01 (mask bit 0), 2023-07 (bit 30) and 2025-12 (bit 59) for a few people,
    and answers of 2021-02 (bit 1), one of someone with no events (Q004, `_idle`): a span of
    71 months with the 2026 switches, so a mask needs more than 64 bits. Their own generator:
    the rest of the lake stays as it was."""
    rng = np.random.default_rng(63)
    who = people.participant_id.iloc[:8].tolist()
    days = ["2021-01-01 00:00:00.001", "2021-01-31 23:59:59.999", "2023-07-15 12:00",
            "2025-12-31 23:30"]
    ev = pd.DataFrame({
        "participant_id": rng.choice(who, 24),
        "exchange_id": rng.choice(["X1", "X2"], 24),
        "occurred_at": pd.to_datetime(rng.choice(days, 24), utc=True, format="ISO8601"),
        "activity": "message",
        "minutes": rng.choice([5.0, np.nan], 24),
    })
    answers = pd.DataFrame({
        "participant_id": [*who[:4], "Q004"], "exchange_id": ["X1", "X2", "X1", "X3", "X2"],
        "wave": ["pre"] * 5,
        "submitted_at": pd.to_datetime(["2021-02-10 08:00"] * 5, utc=True),
    })
    return ev, answers


def _idle() -> pd.DataFrame:
    """People with no events and no answers (their cube rows have no exchange), one with a
    gender padded with Unicode spaces; and Q004, with answers only."""
    return pd.DataFrame({
        "participant_id": ["Q001", "Q002", "Q003", "Q004"],
        "institution_id": ["I1", "I2", "I9", "I4"],
        "role": ["student", "teacher", None, "student"],
        "gender": ["\u00a0f\u2007", "m", None, "x"],
        "birth_year": pd.array([2004, None, 1990, 2006], dtype="Int64"),
        "comparison": pd.array([False, None, True, False], dtype="boolean"),
    })


def _write_lake(folder: Path) -> Path:
    """The lake: base tables as Parquet, events partitioned by event date and program (Hive),
    with a second load's late events for old days in their own files."""
    rng = np.random.default_rng(16)
    people = _people(rng)
    early_events, early_answers = _early(people)
    # DuckDB's trim strips every Unicode space separator, Spark's only U+0020
    people.loc[people.index[:2], "gender"] = ["\u00a0f", "m\u3000"]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    lake = folder / "lake"
    for name, df in {
        "participants": pd.concat([people, _idle()], ignore_index=True),
        "institutions": pd.DataFrame({"institution_id": list(ZONES),
                                      "timezone": list(ZONES.values())}),
        "responses": pd.concat([pd.DataFrame({
            "participant_id": rng.choice(people.participant_id, 150),
            "exchange_id": rng.choice(["X1", "X2"], 150),
            "wave": rng.choice(["pre", "post"], 150),
            "submitted_at": pd.to_datetime(rng.choice(SWITCHES, 150), utc=True)
            + pd.to_timedelta(rng.integers(-3_600_000, 3_600_000, 150), unit="ms"),
        }), early_answers], ignore_index=True),
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
        else:
            ev = pd.concat([ev, early_events], ignore_index=True)
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


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    """A query's rows as Python values (a HUGEINT or DECIMAL mask exactly: `.df()` would make
    it a float)."""
    cur = con.execute(sql)
    return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description], dtype=object)


def _collect(df) -> pd.DataFrame:  # noqa: ANN001 (a Spark DataFrame)
    """A Spark frame's rows as Python values (toPandas makes nullable integers floats)."""
    return pd.DataFrame([tuple(r) for r in df.collect()], columns=df.columns, dtype=object)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    """The generated lake, written once; a test that derives copies it (`_copy`)."""
    return _write_lake(tmp_path_factory.mktemp("lake"))


def _copy(lake: Path, folder: Path) -> Path:
    out = folder / "lake"
    for sub in BASE:
        shutil.copytree(lake / sub, out / sub)
    return out


@dataclass(frozen=True)
class _Derived:
    """A copy of the lake after a full derive on one engine: every derived table (read back
    by DuckDB, masks exactly), the manifest's meta values, the rows the derive reported."""
    folder: Path
    tables: dict[str, pd.DataFrame]
    meta: dict[str, str]
    counts: dict[str, int] | None = None
    said: str = ""


@pytest.fixture(scope="module")
def both(spark, lake, tmp_path_factory) -> tuple[_Derived, _Derived]:
    """The lake derived in full by the command on DuckDB (`python -m analytics derive --lake`)
    and by `lake.derive` on Spark (the test's session): every derive statement (day facts,
    cubes, month masks) once on each engine, each engine's tables written and read back."""
    import json
    import subprocess
    import sys

    from analytics.derive import lake as lakes

    by_duckdb = _copy(lake, tmp_path_factory.mktemp("duckdb"))
    r = subprocess.run([sys.executable, "-m", "analytics", "derive", "--lake", str(by_duckdb)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    meta = json.loads((by_duckdb / "derived" / lakes.MANIFEST).read_text())["meta"]
    by_spark = _copy(lake, tmp_path_factory.mktemp("spark"))
    done = lakes.derive(by_spark, engine="spark", full=True)
    return (_Derived(by_duckdb, _read_derived(by_duckdb), meta, said=r.stderr),
            _Derived(by_spark, _read_derived(by_spark), done.meta or {}, done.counts))


def _rows(df: pd.DataFrame, table: schema.Table | None = None) -> list[tuple]:
    """The rows as comparable tuples, in the schema's column order (no table: the frame's, by
    position): dates as ISO text, whole
    numbers (masks, and floats that are whole) as ints, other floats rounded to 9 places (sums
    may add in another order), NULL as None; sorted."""
    out = []
    for row in (df[list(table.column_names)] if table else df).itertuples(index=False):
        vals = []
        for v in row:
            if v is None or (not isinstance(v, str) and pd.isna(v)):
                vals.append(None)
            elif isinstance(v, dt.date | pd.Timestamp | np.datetime64):
                vals.append(pd.Timestamp(v).date().isoformat())
            elif isinstance(v, decimal.Decimal):
                if v != v.to_integral_value():
                    raise AssertionError(f"a fractional decimal: {v}")
                vals.append(int(v))
            elif isinstance(v, float | np.floating):
                vals.append(int(v) if float(v).is_integer() else round(float(v), 9))
            elif isinstance(v, bool | np.bool_):
                vals.append(bool(v))
            elif isinstance(v, int | np.integer):
                vals.append(int(v))
            else:
                vals.append(str(v))
        out.append(tuple(vals))
    return sorted(out, key=repr)


FACT_TABLES = {schema.RES_PERSON_KEYS.name, schema.RES_PERSON_HOURS.name,
               schema.RES_PERSON_DAYS.name, schema.RES_ANSWER_DAYS.name,
               schema.RES_PERSON_ACTIVITIES.name}
CUBE_TABLES = {schema.RES_ACTIVITY_WEEKLY.name, schema.RES_ACTIVITY_MONTHLY.name,
               schema.RES_ACTIVITY_HOURLY.name, schema.RES_RETENTION.name, schema.RES_PEOPLE.name,
               schema.RES_RESPONSE_WAVES.name}
MASK_TABLES = {schema.RES_PAIR_MONTHS.name, schema.RES_PAIR_MONTH_CUBE.name,
               schema.RES_WEEK_MONTHS.name, schema.RES_RETENTION_MONTHS.name}
MASK_COLUMNS = ("active_months", "answer_months", "months")


def test_every_day_fact_step_gives_the_same_table_on_duckdb_and_spark(both) -> None:
    duck, sprk = both
    for name in sorted(FACT_TABLES):
        table, want = schema.ROLLUP_TABLES[name], duck.tables[name]
        assert len(want) > 20, name  # the comparison is not vacuous
        assert _rows(sprk.tables[name], table) == _rows(want, table), name
    hours = duck.tables[schema.RES_PERSON_HOURS.name]
    # the lake did hold what breaks a naive port: several local hours on switch days, events of
    # a person without a zone (no local hour), and every weekday
    assert hours["hour"].isna().any() and hours["hour"].nunique() > 12
    assert hours["weekday"].dropna().nunique() >= 3


def test_every_cube_and_month_mask_step_gives_the_same_table_on_duckdb_and_spark(both) -> None:
    """The cubes and the month masks from Spark equal DuckDB's; the masks hold months on both
    sides of bit 63 (a HUGEINT on DuckDB, a DECIMAL(38,0) on Spark, equal as integers)."""
    duck, sprk = both
    assert duck.meta == sprk.meta
    assert duck.meta[rollups.META_MONTHS_BASE] == MASK_BASE.isoformat()
    assert int(duck.meta[rollups.META_MULTI]) > 0  # participants in two exchanges
    for name in sorted(CUBE_TABLES | MASK_TABLES):
        table = schema.ROLLUP_TABLES[name]
        want = duck.tables[name]
        assert len(want) > 5, name  # the comparison is not vacuous
        assert _rows(sprk.tables[name], table) == _rows(want, table), name
    masks = {int(m) for name in MASK_TABLES for c in MASK_COLUMNS
             if c in duck.tables[name] for m in duck.tables[name][c].dropna()}
    bits = {i for m in masks for i in range(127) if m >> i & 1}
    assert {0, 1, 30, 59, 62, 63, 65, 70} <= bits and max(bits) < rollups.MASK_MONTHS, bits
    assert any(m >> 63 and m & (1 << 63) - 1 for m in masks)  # bits on both sides of 63
    pairs = duck.tables[schema.RES_PAIR_MONTHS.name]  # both sides of its FULL JOIN … USING
    assert (pairs.active_months == 0).any() and (pairs.answer_months == 0).any()
    people = duck.tables[schema.RES_PEOPLE.name]
    assert people.exchange_id.isna().any()  # people with no events or answers
    assert "f" in set(people.gender) and not any(g != g.strip() for g in people.gender)


def _read_derived(lake: Path) -> dict[str, pd.DataFrame]:
    """Every table under LAKE/derived/, read by DuckDB as Python values (masks exactly)."""
    con = duckdb.connect()
    out = {name: _fetch(con, f"SELECT * FROM read_parquet('{lake}/derived/{name}/**/*.parquet', "
                             "hive_partitioning = true)")
           for name in sorted(FACT_TABLES | CUBE_TABLES | MASK_TABLES)}
    con.close()
    return out


def _mask_types(lake: Path) -> set[str]:
    con = duckdb.connect()
    types = {r[1] for name in MASK_TABLES for r in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{lake}/derived/{name}/**/*.parquet')").fetchall()
        if r[0] in MASK_COLUMNS}
    con.close()
    return types


def test_the_derive_command_writes_the_same_lake_tables_on_both_engines(both, tmp_path
                                                                         ) -> None:
    """`python -m analytics derive --lake DIR` (DuckDB) and `--engine spark` write the same
    derived tables to DIR/derived/ (compared above: the day facts partitioned by day; the cubes
    and month masks, the masks as DECIMAL(38,0) on both) and the same meta values in the
    manifest; a lake without events is refused with one line naming the folder."""
    import subprocess
    import sys

    duck, sprk = both
    assert "res_person_hours:" in duck.said and "res_week_months:" in duck.said
    for done in both:
        assert _mask_types(done.folder) == {"DECIMAL(38,0)"}
        days = done.folder / "derived" / schema.RES_PERSON_DAYS.name
        assert any(p.name.startswith("day=") for p in days.iterdir())
        assert not [p for p in (done.folder / "derived").iterdir() if p.name.startswith(".")]
    assert sprk.counts == {name: len(t) for name, t in sprk.tables.items()}
    lake = tmp_path / "lake"
    shutil.copytree(duck.folder, lake)
    shutil.rmtree(lake / "events")
    r = subprocess.run([sys.executable, "-m", "analytics", "derive", "--lake", str(lake)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and f"{lake}: no Parquet files under events" in r.stderr, r.stderr
    assert len(_read_derived(lake)[schema.RES_PERSON_DAYS.name]) == len(
        duck.tables[schema.RES_PERSON_DAYS.name])  # the failed run left the tables


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
        rows += [(pid, "X1", f"2026-12-01 {i:02d}:15:00.250+00", "message", 3.5),
                 (pid, "X3", "2026-12-01 23:59:59.999+00", "upload", None)]
    rows += [(people[0][0], "X2", "2026-12-02 00:00:00.000+00", "message", 1.0),
             (people[1][0], "X2", "2026-11-28 22:10:00.001+00", "video call", 7.25)]  # late
    con.execute("CREATE TABLE ev (participant_id VARCHAR, exchange_id VARCHAR, "
                "occurred_at TIMESTAMPTZ, activity VARCHAR, minutes DOUBLE)")
    con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?, ?)", rows)
    con.execute(f"""COPY (SELECT *, CASE WHEN exchange_id = 'X3' THEN 'PB' ELSE 'PA' END AS program,
                           CAST(occurred_at AS DATE) AS event_date FROM ev)
        TO '{lake / 'events'}' (FORMAT parquet, PARTITION_BY (event_date, program),
        FILENAME_PATTERN 'load3_{{uuid}}', APPEND)""")
    con.close()


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_an_appended_day_and_a_late_event_rederive_their_days_only_and_equal_a_rebuild(
        spark, lake, tmp_path, engine) -> None:
    """After a derive, a load appends day D and a late event of day D - 3: the next derive
    re-derives only those days and the day before each (their partitions swapped in, every
    other partition untouched), and every derived table equals a full rebuild's."""
    from analytics.derive import lake as lakes

    lake = _copy(lake, tmp_path)
    # the lake as derived before (by DuckDB: either engine's tables are the same, and a full
    # Spark derive is tested above)
    assert lakes.derive(lake, engine="duckdb").mode == "full"
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
    weeks = incremental[schema.RES_ACTIVITY_WEEKLY.name].week
    assert dt.date(2026, 11, 30) in set(weeks)  # the cubes were recomputed with the new days
    again = _copy(lake, tmp_path / "again")
    lakes.derive(again, engine="duckdb", full=True)
    rebuilt = _read_derived(again)
    assert set(rebuilt) == set(incremental)
    for name, want in rebuilt.items():
        table = schema.ROLLUP_TABLES[name]
        assert _rows(incremental[name], table) == _rows(want, table), name
    assert lakes.derive(lake, engine=engine).days == ()  # nothing new: nothing re-derived


def test_a_lake_without_answers_yet_derives_with_empty_answer_tables(spark, lake, tmp_path
                                                                      ) -> None:
    """A program before its first survey: responses hold no row, so no answer-day file is
    written, and the cubes' pass still reads the answer days (an empty table of their types)
    on either engine."""
    from analytics.derive import lake as lakes

    lake = _copy(lake, tmp_path)
    con = duckdb.connect()
    for f in (lake / "responses").glob("*.parquet"):
        con.execute(f"COPY (SELECT * FROM read_parquet('{f}') WHERE false) TO '{f}.tmp' "
                    "(FORMAT parquet)")
        os.replace(f"{f}.tmp", f)
    con.close()
    done = lakes.derive(lake, engine="duckdb")
    assert done.counts[schema.RES_ANSWER_DAYS.name] == 0
    assert done.counts[schema.RES_RESPONSE_WAVES.name] == 0
    assert done.counts[schema.RES_ACTIVITY_WEEKLY.name] > 0
    con = duckdb.connect()
    pairs = _fetch(con, f"SELECT * FROM read_parquet('{lake}/derived/"
                        f"{schema.RES_PAIR_MONTHS.name}/*.parquet')")
    con.close()
    assert len(pairs) and set(pairs.answer_months) == {0}
    answers = lake / "derived" / schema.RES_ANSWER_DAYS.name
    assert not any(answers.rglob("*.parquet"))
    lakes._Spark("local[2]", {}, {}, {schema.RES_ANSWER_DAYS.name: answers})  # the same case
    df = spark.sql(f"SELECT * FROM {schema.RES_ANSWER_DAYS.name}")
    assert df.count() == 0
    assert [f.name for f in df.schema.fields] == list(schema.RES_ANSWER_DAYS.column_names)
    assert df.schema["day"].dataType.simpleString() == "date"


def test_the_lint_refuses_what_is_outside_the_portable_subset_naming_the_macro() -> None:
    for step in [*rollups.fact_steps(), *rollups.cube_steps(), *rollups.month_steps(MASK_BASE)]:
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
        "SELECT bit_or(CAST(1 AS HUGEINT) << m) FROM t": "bitwise operators",
        "SELECT bit_or(m) FROM t": "ei_month_mask",
        "SELECT a | b FROM t": "ei_month_mask builds one",
        "SELECT date_trunc('month', d) FROM t": "ei_month",
        "SELECT trim(s, 'x') FROM t": "only trim(s)",
    }
    for sql, said in cases.items():
        found = portable.problems(sql)
        assert found and said in found[0], (sql, found)
        with pytest.raises(portable.PortabilityError, match=re.escape(said)):
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


def test_the_cube_macros_give_the_answers_a_plain_transpile_gets_wrong(spark) -> None:
    """The cubes' constructs on real Spark, plain (SQLGlot's transpile) and through the macros:
    - a month mask (bit_or of HUGEINT bits, here months 0, 62, 63, 64 and 125): Spark rejects
      the INT128 the plain transpile writes; ei_month_mask gives the same integer, as a
      DECIMAL(38,0);
    - weeks since a first day ((day - d0) // 7): rejected (a day difference is an INTERVAL);
    - the week's epoch arithmetic in a session east of UTC: a Monday falls in the week before;
    - trim of a no-break or ideographic space: kept by Spark's plain trim.
    The rest of what the cubes use answers the same plain: GROUP BY ALL, count(DISTINCT),
    FILTER, bool_or and AND/NOT with NULLs here; FULL JOIN … USING with coalesce on its
    columns, and date_trunc('month', date), in the cubes over the lake."""
    import sqlglot

    days = [dt.date(2021, 1, 4), dt.date(2026, 3, 30), dt.date(2026, 4, 2), dt.date(2026, 5, 3),
            dt.date(2031, 6, 30), dt.date(2026, 4, 6)]
    rows = [(1, d, dt.date(2021, 1, 4), x, f) for d, x, f in zip(
        days, ["\u00a0f", "m\u3000", None, "x", "x", " f "], [True, None, False, True, None,
                                                              False], strict=True)]
    rows.append((2, None, None, None, None))
    con = duckdb.connect()
    con.execute("CREATE TABLE v (g INTEGER, day DATE, d0 DATE, s VARCHAR, flag BOOLEAN)")
    con.executemany("INSERT INTO v VALUES (?, ?, ?, ?, ?)", rows)
    portable.install(con)
    spark.createDataFrame(rows, "g INT, day DATE, d0 DATE, s STRING, flag BOOLEAN"
                          ).createOrReplaceTempView("v")
    base = f"DATE '{MASK_BASE}'"
    n = f"CAST((year(day) - year({base})) * 12 + month(day) - month({base}) AS INTEGER)"
    cases = {  # name: (plain, through the macros; None: the plain statement is in the subset)
        "mask": (f"SELECT g, bit_or(CAST(1 AS HUGEINT) << {n}) FROM v GROUP BY ALL",
                 f"SELECT g, ei_month_mask(day, {base}) FROM v GROUP BY ALL"),
        "retention week": ("SELECT CAST((day - d0) // 7 AS INTEGER) FROM v",
                           "SELECT CAST(ei_day_diff(d0, day) // 7 AS INTEGER) FROM v"),
        "week": (f"SELECT {rollups.week_sql('day')} FROM v", "SELECT ei_week(day) FROM v"),
        "trim": ("SELECT trim(s) FROM v", None),
        "same plain": ("""SELECT g, count(DISTINCT s), count(*) FILTER (WHERE flag AND NOT
                                 s = 'x'), bool_or(flag), bool_or(flag OR s = 'x')
                          FROM v GROUP BY ALL""", None),
    }
    want = {}
    wrong = set()
    try:
        # east of UTC, as a cluster's default session may be: the macros must not care
        spark.conf.set("spark.sql.session.timeZone", "Asia/Tokyo")
        for name, (plain, macro) in cases.items():
            want[name] = _rows(_fetch(con, plain))
            if macro is not None:
                assert _rows(_fetch(con, macro)) == want[name], name  # the same on DuckDB
            got = _rows(_collect(spark.sql(portable.to_spark(macro or plain))))
            assert got == want[name], (name, got, want[name])
            try:
                naive = _rows(_collect(spark.sql(
                    sqlglot.transpile(plain, read="duckdb", write="spark")[0])))
            except Exception:  # noqa: BLE001 (Spark rejects it: also "wrong")
                naive = None
            if naive != want[name]:
                wrong.add(name)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert wrong == {"mask", "retention week", "week", "trim"}, wrong
    masks = dict(want["mask"])
    assert masks[1] == sum(1 << i for i in (0, 62, 63, 64, 125)) and masks[2] is None
    # ei_week is rollups.week_sql's Monday for every day of 1969-2031 (the read layer's weeks)
    assert con.execute(f"""SELECT count(*) FROM (SELECT CAST(range AS DATE) AS day
                           FROM range(DATE '1969-01-01', DATE '2032-01-01', INTERVAL 1 DAY))
                           WHERE ei_week(day) <> {rollups.week_sql('day')}""").fetchone() == (0,)
    con.close()
