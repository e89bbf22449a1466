"""analytics.derive.rollups: every dashboard figure read from the rollups equals the direct query on the
base tables (events, responses, res_scale_scores), for several filter combinations; and the
queries fall back to the base tables where the rollups cannot be exact."""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd
import pytest

from analytics.derive.rollups import META_MULTI, build
from analytics.read import queries as q
from etl import schema
from etl.warehouse import Reader
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
    q.Filters(),
    q.Filters(country=("FRA",)),
    q.Filters(country=("FRA", "KEN"), role=("student",)),
    q.Filters(cluster=("C2",), modality=("virtual",)),
    q.Filters(exchange=("X1", "X4")),
    q.Filters(program=("Horizons",), setting=("curricular",)),
    q.Filters(term=("2025-H2",), role=("teacher",)),
    q.Filters(country=("XXX",)),  # nothing in scope
]


@pytest.fixture(scope="module")
def cur(tmp_path_factory):
    path = build_fixture_warehouse(tmp_path_factory.mktemp("r") / "w.duckdb")
    reader = Reader(path)
    yield reader.cursor()
    reader.close()


def _same(a, b) -> None:
    if isinstance(a, dict):
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
def test_rollup_equals_the_direct_query(cur, name, args, f) -> None:
    base = getattr(q, f"_{name}_base")(cur, f, *args)
    rolled = getattr(q, f"_{name}_rollup")(cur, f, *args)
    _same(base, rolled)


DATED = [
    q.Filters(start=date(2025, 3, 1)),
    q.Filters(end=date(2025, 6, 30)),
    q.Filters(start=date(2025, 2, 1), end=date(2025, 2, 28)),  # an event at 23:00 on 31 January
    q.Filters(start=date(2025, 3, 1), end=date(2025, 6, 30), country=("FRA", "KEN")),
    q.Filters(start=date(2025, 4, 15), end=date(2025, 4, 15)),
    q.Filters(start=date(2025, 9, 1), exchange=("X1", "X4"), role=("student",)),
    q.Filters(start=date(2026, 3, 1)),  # answers but no events
]


@pytest.mark.parametrize("f", FILTERS + DATED, ids=lambda f: f.to_query() or "all")
@pytest.mark.parametrize(("name", "args"), CALLS, ids=[f"{n}{a}" for n, a in CALLS])
def test_day_facts_equal_the_event_log(cur, monkeypatch, name, args, f) -> None:
    """A date range (and every fallback) reads res_person_days / res_answer_days instead of the
    event log and the answers; each figure must be what the log gives."""
    assert q._day_facts(cur)
    by_days = getattr(q, f"_{name}_base")(cur, f, *args)
    monkeypatch.setattr(q, "_day_facts", lambda cur: False)
    _same(by_days, getattr(q, f"_{name}_base")(cur, f, *args))


def test_a_dated_view_does_not_read_the_event_log(cur, monkeypatch) -> None:
    f = q.Filters(start=date(2025, 3, 1), end=date(2025, 6, 30))
    expected = q._headline_base(cur, f)
    assert expected["events"] > 0
    monkeypatch.setattr(q, "T_EVENTS", "no_such_table")
    monkeypatch.setattr(q, "T_RESP", "no_such_table")
    assert q._headline_base(cur, f) == expected
    _same(q._completion_by_wave_base(cur, f), q.completion_by_wave(cur, f))


def test_the_public_functions_read_the_rollups(cur) -> None:
    f = q.Filters(country=("KEN",))
    assert q._use_rollups(cur, f)
    assert not q._use_rollups(cur, q.Filters(start=date(2025, 3, 1)))
    _same(q.headline(cur, f), q._headline_base(cur, f))
    assert q.headline(cur, q.Filters())["events"] == cur.execute(
        f"SELECT count(*) FROM {schema.EVENTS.name}").fetchone()[0]


def test_participants_in_two_exchanges_make_distinct_counts_fall_back(tmp_path, monkeypatch
                                                                      ) -> None:
    path = build_fixture_warehouse(tmp_path / "w.duckdb")
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    # One participant also active in a second exchange: per-cell distinct counts would now count
    # them twice, so the queries must say the rollups are not exact and read the base tables.
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
        f = q.Filters()
        assert not q._use_rollups(c, f)
        assert q._use_rollups(c, f, distinct=False)  # retention is per participant×exchange
        _same(q.headline(c, f), q._headline_base(c, f))
        _same(q.retention_by_cohort(c, f), q._retention_by_cohort_base(c, f))
        _same(q.breakdown(c, f, "exchange"), q._breakdown_base(c, f, "exchange"))
        # The fallback reads the per-person facts; they count the two-exchange participant once.
        by_facts = [q._headline_base(c, f), q._breakdown_base(c, f, "cluster"),
                    q._participation_by_group_base(c, f, "gender")]
        monkeypatch.setattr(q, "_day_facts", lambda cur: False)
        for a, b in zip(by_facts, [q._headline_base(c, f), q._breakdown_base(c, f, "cluster"),
                                   q._participation_by_group_base(c, f, "gender")], strict=True):
            _same(a, b)
    finally:
        c.close()
        reader.close()


def test_without_rollups_the_base_tables_answer(tmp_path) -> None:
    path = build_fixture_warehouse(tmp_path / "w.duckdb", with_results=False)
    reader = Reader(path)
    c = reader.cursor()
    try:
        assert not q._use_rollups(c, q.Filters(), distinct=False)
        assert q.headline(c, q.Filters())["participants"] == 465
    finally:
        c.close()
        reader.close()


def test_two_files_built_in_the_same_second_do_not_share_cached_answers(tmp_path) -> None:
    """The query caches are keyed on the warehouse build. Two files with the same data version
    and the same built_at second (CI built them back to back) once shared a key, so the second
    file was told it had rollups it did not have."""
    with_rollups = build_fixture_warehouse(tmp_path / "a.duckdb")
    without = build_fixture_warehouse(tmp_path / "b.duckdb", with_results=False)
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
            answers.append(q._use_rollups(c, q.Filters(), distinct=False))
        finally:
            c.close()
            reader.close()
    assert answers == [True, False]


@pytest.mark.timeout(30)
def test_a_mistyped_year_costs_one_slot_not_millennia_of_them(tmp_path) -> None:
    """The hourly rollup looks up UTC offsets per (zone, 15-minute slot) with events. Built over
    every slot from the first to the last event, one event dated ~5025 meant ~105M slots per
    zone (minutes and gigabytes); now it is one more slot, and the heatmap still equals the direct
    query."""
    path = build_fixture_warehouse(tmp_path / "w.duckdb")
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""INSERT INTO {schema.EVENTS.name} (participant_id, exchange_id, occurred_at,
                    activity, minutes)
                    SELECT participant_id, exchange_id, occurred_at + INTERVAL 3000 YEAR,
                           activity, minutes
                    FROM {schema.EVENTS.name} LIMIT 1""")
    build(con)
    con.close()
    reader = Reader(path)
    c = reader.cursor()
    try:
        f = q.Filters()
        assert q._use_rollups(c, f)
        _same(q.activity_heatmap(c, f), q._activity_heatmap_base(c, f))
    finally:
        c.close()
        reader.close()
