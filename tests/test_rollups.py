"""analytics.derive.rollups: every dashboard figure read from the rollups, and from the day facts,
equals the test oracle's figure from the base tables (events, responses, res_scale_scores;
tests/read_oracle.py), for several filter combinations; the queries read the day facts where
the rollups cannot be exact; and a warehouse without its derived tables gets one clear error."""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd
import pytest

from analytics.derive.rollups import META_MONTHS_BASE, META_MULTI, META_VERSION, build
from analytics.read import disclosure, overview, participation, sql
from analytics.read.filters import Filters
from etl import schema
from etl.warehouse import Reader
from tests import read_oracle as oracle
from tests.dashboard_fixture import build_fixture_warehouse

CALLS = [
    ("headline", ()), ("completion_by_wave", ()), ("participants_by_country", ()),
    ("activity_over_time", (None,)), ("activity_over_time", ("country",)),
    ("activity_over_time", ("term",)), ("activity_over_time", ("modality",)),
    ("activity_heatmap", ()), ("retention_by_cohort", ()), ("retention_by_cohort", (4,)),
    ("breakdown", ("cluster",)), ("breakdown", ("country",)), ("breakdown", ("exchange",)),
    ("wave_means", ()), ("comparison_difference", ()),
    ("gains_by_group", ("gender",)), ("gains_by_group", ("age_band",)),
    ("gains_by_group", ("connectivity",)), ("participation_by_group", ("income_group",)),
    ("participation_by_group", ("age_band",)), ("attrition_funnel", ()),
    ("dropout_by_group", ("gender",)), ("dropout_by_group", ("age_band",)),
]

FILTERS = [
    Filters(),
    Filters(country=("FRA",)),
    Filters(country=("FRA", "KEN"), role=("student",)),
    Filters(cluster=("C2",), modality=("virtual",)),
    Filters(exchange=("X1", "X4")),
    Filters(program=("Horizons",), setting=("curricular",)),
    Filters(term=("2025-H2",), role=("teacher",)),
    Filters(country=("XXX",)),  # nothing in scope
]


@pytest.fixture(scope="module")
def cur(tmp_path_factory):
    path = build_fixture_warehouse(tmp_path_factory.mktemp("r") / "w.duckdb")
    reader = Reader(path)
    yield reader.cursor()
    reader.close()


def _same(a, b) -> None:
    if isinstance(a, dict):
        # The public headline says why it is hidden (`suppressed_why`, disclosure control, tested
        # in test_differencing.py); the oracle computes the figures only.
        if "suppressed_why" not in b:
            a = {k: v for k, v in a.items() if k != "suppressed_why"}
        clean = lambda d: {k: (None if pd.isna(v) else v) for k, v in d.items()}  # noqa: E731
        assert clean(a) == clean(b)
        return
    assert list(a.columns) == list(b.columns)
    keys = [c for c in a.columns if c in ("week", "grp", "weekday", "hour", "key", "group",
                                          "instrument", "scale", "wave", "comparison", "cohort",
                                          "stage", "country")]
    a = a.sort_values(keys).reset_index(drop=True) if keys else a.reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True) if keys else b.reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-9)


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: f.to_query() or "all")
@pytest.mark.parametrize(("name", "args"), CALLS, ids=[f"{n}{a}" for n, a in CALLS])
def test_rollup_equals_the_event_log(cur, name, args, f) -> None:
    _same(oracle.figure(name, cur, f, *args), oracle.rollup(name, cur, f, *args))


DATED = [
    Filters(start=date(2025, 3, 1)),
    Filters(end=date(2025, 6, 30)),
    Filters(start=date(2025, 2, 1), end=date(2025, 2, 28)),  # an event at 23:00 on 31 January
    Filters(start=date(2025, 3, 1), end=date(2025, 6, 30), country=("FRA", "KEN")),
    Filters(start=date(2025, 4, 15), end=date(2025, 4, 15)),
    Filters(start=date(2025, 9, 1), exchange=("X1", "X4"), role=("student",)),
    Filters(start=date(2026, 3, 1)),  # answers but no events
]


@pytest.mark.parametrize("f", FILTERS + DATED, ids=lambda f: f.to_query() or "all")
@pytest.mark.parametrize(("name", "args"), CALLS, ids=[f"{n}{a}" for n, a in CALLS])
def test_day_facts_equal_the_event_log(cur, name, args, f) -> None:
    """A date range (and a distinct count the rollups cannot give) reads res_person_days /
    res_answer_days; each figure must be what the log gives."""
    _same(oracle.days(name, cur, f, *args), oracle.figure(name, cur, f, *args))


def test_a_dated_view_does_not_read_the_event_log(cur, monkeypatch) -> None:
    f = Filters(start=date(2025, 3, 1), end=date(2025, 6, 30))
    expected = oracle.figure("headline", cur, f)
    assert expected["events"] > 0
    assert not sql.use_rollups(cur, f)
    for name in (schema.EVENTS.name, schema.RESPONSES.name, schema.RES_SCALE_SCORES.name,
                 schema.PARTICIPANTS.name):
        assert name not in vars(sql).values()  # the read layer does not name the base tables
    _same(overview.headline(cur, f), expected)
    _same(overview.completion_by_wave(cur, f), oracle.figure("completion_by_wave", cur, f))


def test_the_public_functions_read_the_rollups(cur) -> None:
    f = Filters(country=("KEN",))
    assert sql.use_rollups(cur, f)
    assert not sql.use_rollups(cur, Filters(start=date(2025, 3, 1)))
    _same(overview.headline(cur, f), oracle.figure("headline", cur, f))
    assert overview.headline(cur, Filters())["events"] == cur.execute(
        f"SELECT count(*) FROM {schema.EVENTS.name}").fetchone()[0]


def test_participants_in_two_exchanges_make_distinct_counts_read_the_day_facts(tmp_path
                                                                               ) -> None:
    path = build_fixture_warehouse(tmp_path / "w.duckdb")
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    # One participant also active in a second exchange: per-cell distinct counts would now count
    # them twice, so the queries must say the rollups are not exact and read the day facts.
    con.execute(f"""INSERT INTO {schema.EVENTS.name} (participant_id, exchange_id, occurred_at,
                    activity, minutes)
                    SELECT participant_id, CASE WHEN exchange_id = 'X1' THEN 'X2' ELSE 'X1' END,
                           occurred_at + INTERVAL 1 DAY, activity, minutes
                    FROM {schema.EVENTS.name} WHERE participant_id = 'p_I01_1'""")
    build(con)
    assert con.execute(f"SELECT value FROM {schema.META.name} WHERE key = ?",
                       [META_MULTI]).fetchone()[0] == "1"
    con.close()
    reader = Reader(path)
    c = reader.cursor()
    try:
        f = Filters()
        assert not sql.use_rollups(c, f)
        assert sql.use_rollups(c, f, distinct=False)  # retention is per participant×exchange
        _same(overview.headline(c, f), oracle.figure("headline", c, f))
        _same(participation.retention_by_cohort(c, f),
              oracle.figure("retention_by_cohort", c, f))
        _same(participation.breakdown(c, f, "exchange"), oracle.figure("breakdown", c, f,
                                                                       "exchange"))
        # The day facts count the two-exchange participant once, as the log does.
        for name, args in [("headline", ()), ("breakdown", ("cluster",)),
                           ("participation_by_group", ("gender",))]:
            _same(oracle.days(name, c, f, *args), oracle.figure(name, c, f, *args))
    finally:
        c.close()
        reader.close()


def _stale(path, how: str) -> None:
    con = duckdb.connect(str(path))
    if how == "table":
        con.execute(f"DROP TABLE {schema.RES_PERSON_DAYS.name}")
    elif how == "column":  # an older version's table without a column read now
        con.execute(f"ALTER TABLE {schema.RES_PERSON_GAINS.name} DROP COLUMN post")
    else:
        con.execute(f"UPDATE {schema.META.name} SET value = 'older' WHERE key = ?",
                    [META_VERSION])
    con.close()


@pytest.mark.parametrize("how", ["table", "column", "version"])
def test_a_warehouse_without_its_derived_tables_says_to_refresh(tmp_path, how) -> None:
    """Written by an older version (no derived tables for its data version): every read says to
    run `python -m analytics refresh`, as a WarehouseError the pages turn into a message."""
    from analytics.read import loads
    from etl.errors import WarehouseError

    path = build_fixture_warehouse(tmp_path / "w.duckdb")
    _stale(path, how)
    reader = Reader(path)
    c = reader.cursor()
    try:
        for call in (lambda: overview.headline(c, Filters()),
                     lambda: overview.headline(c, Filters(start=date(2025, 3, 1))),
                     lambda: participation.breakdown(c, Filters(), "cluster"),
                     lambda: loads.filter_options(c)):
            with pytest.raises(sql.DerivedTablesMissing, match="python -m analytics refresh"):
                call()
        assert issubclass(sql.DerivedTablesMissing, WarehouseError)
    finally:
        c.close()
        reader.close()


def test_two_files_built_in_the_same_second_do_not_share_cached_answers(tmp_path) -> None:
    """The query caches are keyed on the warehouse build. Two files with the same data version
    and the same built_at second (CI built them back to back) once shared a key, so the second
    file was told it had rollups it did not have."""
    with_rollups = build_fixture_warehouse(tmp_path / "a.duckdb")
    without = build_fixture_warehouse(tmp_path / "b.duckdb")
    _stale(without, "table")
    con = duckdb.connect(str(with_rollups))
    stamp = con.execute("SELECT value FROM meta WHERE key = 'built_at'").fetchone()[0]
    con.close()
    con = duckdb.connect(str(without))
    con.execute("UPDATE meta SET value = ? WHERE key = 'built_at'", [stamp])
    con.close()
    answers = []
    for path in (with_rollups, without):
        reader = Reader(path)
        c = reader.cursor()
        try:
            answers.append(sql.use_rollups(c, Filters(), distinct=False))
        except sql.DerivedTablesMissing:
            answers.append("missing")
        finally:
            c.close()
            reader.close()
    assert answers == [True, "missing"]


def _one_event_later(con, years: int) -> None:
    """Copy one event `years` years later (a mistyped year, or a program that long)."""
    con.execute(f"""INSERT INTO {schema.EVENTS.name} (participant_id, exchange_id, occurred_at,
                    activity, minutes)
                    SELECT participant_id, exchange_id, occurred_at + INTERVAL {years} YEAR,
                           activity, minutes
                    FROM {schema.EVENTS.name} LIMIT 1""")


def test_a_mistyped_year_costs_one_slot_not_millennia_of_them(tmp_path) -> None:
    """The hourly rollup looks up UTC offsets per (zone, 15-minute slot) with events. Built over
    every slot from the first to the last event, one event dated ~5025 meant ~105M slots per
    zone (minutes and gigabytes); now it is one more slot, and the heatmap still equals the direct
    query."""
    path = build_fixture_warehouse(tmp_path / "w.duckdb")
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    # Millennia of slots need gigabytes; one more slot fits easily. A bound, not a clock.
    con.execute("SET memory_limit = '300MB'")
    con.execute("SET max_temp_directory_size = '0KB'")
    _one_event_later(con, 3000)
    build(con)
    con.close()
    reader = Reader(path)
    c = reader.cursor()
    try:
        f = Filters()
        assert sql.use_rollups(c, f)
        _same(participation.activity_heatmap(c, f), oracle.figure("activity_heatmap", c, f))
    finally:
        c.close()
        reader.close()


def _oracle_masks(con, table: str, base: date) -> dict[tuple[int, str], int]:
    """Per pair, the bit mask of the UTC months of its days in `table`, bit 0 = `base`."""
    days = con.execute(f"SELECT DISTINCT pid, exchange_id, day FROM {table}").fetchall()
    out: dict[tuple[int, str], int] = {}
    for pid, x, day in days:
        bit = 1 << ((day.year - base.year) * 12 + day.month - base.month)
        out[(pid, x)] = out.get((pid, x), 0) | bit
    return out


def test_the_month_masks_hold_each_pairs_months(cur) -> None:
    """res_pair_months: bit i set exactly when the pair has events (answers) in the i-th month
    from meta rule_months_base, the data's first month; the cubes count the same pairs as the
    rollups they refine (every pair-week of res_week_months, every pair's retention week)."""
    base = sql.months_base(cur)
    first = cur.execute(f"""SELECT least((SELECT min(day) FROM {schema.RES_PERSON_DAYS.name}),
                                         (SELECT min(day) FROM {schema.RES_ANSWER_DAYS.name}))
                         """).fetchone()[0]
    assert base == first.replace(day=1)
    active = _oracle_masks(cur, schema.RES_PERSON_DAYS.name, base)
    answers = _oracle_masks(cur, schema.RES_ANSWER_DAYS.name, base)
    stored = {(pid, x): (int(a), int(r)) for pid, x, a, r in cur.execute(
        f"SELECT * FROM {schema.RES_PAIR_MONTHS.name}").fetchall()}
    assert stored == {k: (active.get(k, 0), answers.get(k, 0)) for k in {*active, *answers}}
    assert any(bin(a).count("1") > 1 for a, _ in stored.values())  # several months: real bits

    def total(sql_text: str) -> int:
        return int(cur.execute(sql_text).fetchone()[0])

    assert total(f"SELECT sum(pairs) FROM {schema.RES_WEEK_MONTHS.name}") == total(
        f"SELECT count(*) FROM (SELECT DISTINCT pid, exchange_id, {sql.WEEK_SQL} "
        f"FROM {schema.RES_PERSON_DAYS.name})")
    assert total(f"SELECT sum(pairs) FROM {schema.RES_RETENTION_MONTHS.name}") == total(
        f"SELECT sum(active) FROM {schema.RES_RETENTION.name}")
    assert total(f"SELECT sum(pairs) FROM {schema.RES_PAIR_MONTH_CUBE.name}") == sum(
        1 for a, _ in stored.values() if a)
    for cube, rows in ((schema.RES_SCORE_MONTHS, schema.RES_PERSON_SCORES),
                       (schema.RES_GAIN_MONTHS, schema.RES_PERSON_GAINS)):
        assert total(f"SELECT sum(n) FROM {cube.name}") == total(
            f"SELECT count(*) FROM {rows.name}") > 0, cube.name


def test_a_program_longer_than_the_masks_reads_the_day_facts(tmp_path) -> None:
    """A span of more months than a mask holds (here one event 11 years on) leaves the mask
    tables empty and meta rule_months_base '', and the differencing rule reads the day facts."""
    path = build_fixture_warehouse(tmp_path / "w.duckdb")
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    _one_event_later(con, 11)
    build(con)
    assert con.execute(f"SELECT value FROM {schema.META.name} WHERE key = ?",
                       [META_MONTHS_BASE]).fetchone()[0] == ""
    for t in (schema.RES_PAIR_MONTHS, schema.RES_WEEK_MONTHS, schema.RES_RETENTION_MONTHS,
              schema.RES_PAIR_MONTH_CUBE, schema.RES_SCORE_MONTHS, schema.RES_GAIN_MONTHS):
        assert con.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0] == 0
    con.close()
    reader = Reader(path)
    c = reader.cursor()
    try:
        assert sql.months_base(c) is None
        f = Filters(start=date(2025, 10, 1), end=date(2025, 10, 31), country=("FRA", "KEN"))
        for rule in (disclosure.isolating_weekly, disclosure.isolating_retention,
                     disclosure.isolating_stages):
            assert list(rule(c, f).columns) == ["cell", "dimension", "value", "change", "n"]
    finally:
        c.close()
        reader.close()
