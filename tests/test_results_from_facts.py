"""Issues 16/17: the result tables read the participation log through its day facts
(`analytics.derive.rollups`: res_person_days, res_person_activities, res_person_keys), never
`events`, so a serving warehouse needs no event log.

On a demo warehouse with what could make facts and log disagree added (events at UTC midnight
to the microsecond and either side of an ISO week's start and of a DST switch, before 1970,
NULL and fractional minutes, comparison participants and a NULL comparison flag, a participant
without institution, events with no exchange, and the events of a participant no longer on the
roster on the data's last day), the four derive steps that read the log give exactly what the
event log gives (`_oracle_*`: the queries they ran on `events` before, kept here as the oracle),
and once the facts are built, emptying `events` changes no result table.

Fractional minutes are dyadic (0.25, 1.5): the facts add an event's minutes in another order
(per day, then over days), which equals the log's sum exactly only when the partial sums are
exact, as for whole minutes (every source's unit) and these. For other fractions the two may
differ in the last bit, as two runs of the log's own parallel sum may.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from analytics.derive import materialise, persistence, rollups, scale, scheduling
from analytics.derive.fetch import frame
from etl import schema
from tests.analytics_fixture import demo_copy

GONE_DAY = "2026-11-15"  # after every other date of the demo: the data's end date


def add_edge_cases(con: duckdb.DuckDBPyConnection) -> None:
    """People and events where facts and log could disagree, in the first partnership's exchange
    and at its institutions (so that scheduling and persistence count them); the events of a
    participant not in participants fall on `GONE_DAY`, after everything else."""
    x, a, b = con.execute("SELECT exchange_id, institution_a, institution_b FROM partnerships "
                          "ORDER BY partnership_id LIMIT 1").fetchone()
    y = con.execute("SELECT min(exchange_id) FROM exchanges WHERE exchange_id <> ?",
                    [x]).fetchone()[0]
    batch = con.execute("SELECT max(batch_id) FROM events").fetchone()[0]
    con.executemany(
        "INSERT INTO participants (participant_id, institution_id, role, gender, birth_year, "
        "comparison, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?)", [
            ["EDGE-MIDNIGHT", a, "student", "female", 2008, False, batch],
            ["EDGE-COMPARISON", a, "student", None, None, True, batch],
            ["EDGE-NULL-COMPARISON", b, "teacher", "male", 1980, None, batch],
            ["EDGE-NO-INSTITUTION", None, "student", "", 2007, False, batch],
            ["EDGE-TWO-EXCHANGES", b, "student", "non-binary", 2006, False, batch],
        ])
    rows = [
        # a Sunday's last microsecond and the next Monday's first: two ISO weeks, two UTC days
        ("EDGE-MIDNIGHT", x, "2025-03-02 23:59:59.999999+00", "message", 0.25),
        ("EDGE-MIDNIGHT", x, "2025-03-03 00:00:00+00", "video_call", None),
        ("EDGE-MIDNIGHT", x, "2025-03-03 00:00:00+00", "video_call", 1.5),  # a repeated line
        ("EDGE-MIDNIGHT", x, "2025-03-09 23:59:59.999999+00", "upload", 3.0),
        # either side of Europe's switch to summer time (01:00 UTC), and UTC midnight of it
        ("EDGE-MIDNIGHT", x, "2025-03-30 00:59:59+00", "message", 2.0),
        ("EDGE-MIDNIGHT", x, "2025-03-30 01:00:00+00", "message", 2.0),
        ("EDGE-MIDNIGHT", x, "2025-03-31 00:00:00+00", "live_session", 45.0),
        ("EDGE-COMPARISON", x, "2025-03-25 10:00:00+00", "video_call", 30.0),
        ("EDGE-COMPARISON", x, "2025-04-20 23:59:59.5+00", "message", None),
        ("EDGE-NULL-COMPARISON", x, "2025-03-24 00:00:00+00", "video_call", 20.0),
        ("EDGE-NULL-COMPARISON", x, "2025-04-26 23:00:00+00", "workshop", 60.0),
        ("EDGE-NO-INSTITUTION", x, "2025-03-26 12:00:00+00", "forum_post", 5.0),
        ("EDGE-NO-INSTITUTION", x, "2025-04-02 12:00:00+00", "forum_post", None),
        ("EDGE-TWO-EXCHANGES", x, "2025-03-27 08:00:00+00", "message", 1.0),
        ("EDGE-TWO-EXCHANGES", y, "2025-04-01 08:00:00+00", "message", 1.0),
        # before 1970 (a negative epoch): a Sunday's last half second and the Monday after
        ("EDGE-TWO-EXCHANGES", y, "1969-12-28 23:59:59.5+00", "quiz", 4.0),
        ("EDGE-TWO-EXCHANGES", y, "1969-12-29 00:00:00+00", "quiz", 4.0),
        ("EDGE-TWO-EXCHANGES", None, "2025-04-03 08:00:00+00", "message", 7.0),
        ("EDGE-TWO-EXCHANGES", None, "2025-04-04 08:00:00+00", "upload", None),
        ("GONE-1", x, f"{GONE_DAY} 12:00:00+00", "message", 9.0),
    ]
    con.executemany("INSERT INTO events (participant_id, exchange_id, occurred_at, activity, "
                    "minutes, batch_id) VALUES (?, ?, CAST(? AS TIMESTAMPTZ), ?, ?, ?)",
                    [[*r, batch] for r in rows])


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> str:
    """A demo copy with `add_edge_cases`, its day facts (and rollups) rebuilt."""
    path = demo_copy(tmp_path_factory.mktemp("facts"))
    con = duckdb.connect(str(path))
    try:
        add_edge_cases(con)
        rollups.build(con)
    finally:
        con.close()
    return str(path)


@pytest.fixture
def con(warehouse):
    c = duckdb.connect(warehouse, read_only=True)
    yield c
    c.close()


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    """The frame's rows in one order (a query without ORDER BY has none)."""
    return df.sort_values(list(df.columns), kind="stable", na_position="last",
                          ignore_index=True)


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_rows(got), _rows(want), check_exact=True)


# ---------------------------------------------------------------------------------------------
# The oracle: what each step read from the event log before the port
# ---------------------------------------------------------------------------------------------

def _utc_day(ts: str) -> str:
    return f"(DATE '1970-01-01' + CAST(floor(epoch({ts}) / 86400) AS INTEGER))"


_DATA_END = f"""(SELECT greatest(
    (SELECT max({_utc_day('occurred_at')}) FROM events),
    (SELECT max({_utc_day('submitted_at')}) FROM responses),
    (SELECT max(started_on) FROM partnerships), (SELECT max(ended_on) FROM partnerships)))"""


def _oracle_engagement(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """`group_attributes`' pairs and engagement, from the log."""
    return frame(con, """
        WITH seen AS (SELECT DISTINCT participant_id, exchange_id FROM responses
                      UNION SELECT DISTINCT participant_id, exchange_id FROM events),
        pe AS (SELECT p.participant_id, s.exchange_id
               FROM participants p LEFT JOIN seen s USING (participant_id)),
        eng AS (SELECT participant_id, exchange_id, count(*) AS n_events,
                       coalesce(sum(minutes), 0) AS minutes FROM events GROUP BY ALL)
        SELECT pe.participant_id AS participant, pe.exchange_id,
               coalesce(eng.n_events, 0)::BIGINT AS n_events,
               coalesce(eng.minutes, 0)::DOUBLE AS minutes
        FROM pe LEFT JOIN eng ON eng.participant_id = pe.participant_id
                             AND eng.exchange_id = pe.exchange_id
        ORDER BY participant, exchange_id""")


def _oracle_scale_units(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    term = ("(CAST(year(x.start_date) AS VARCHAR) || CASE WHEN month(x.start_date) <= 6 "
            "THEN '-H1' ELSE '-H2' END)")
    return frame(con, f"""
        SELECT x.cluster_id AS cluster, {term} AS term, e.participant_id AS participant,
               any_value(p.institution_id) AS institution, any_value(i.country) AS country,
               count(*) AS events, coalesce(sum(e.minutes), 0)::DOUBLE AS minutes,
               count(DISTINCT date_trunc('week', timezone('UTC', e.occurred_at))) AS weeks
        FROM events e JOIN exchanges x USING (exchange_id)
        JOIN participants p USING (participant_id)
        LEFT JOIN institutions i ON i.institution_id = p.institution_id
        WHERE NOT coalesce(p.comparison, FALSE)
        GROUP BY 1, 2, 3""")


def _oracle_partnership_activity(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """`partnership_units`' columns that read the log: teachers seen, active people, their
    events and minutes per side, and the data's end."""
    return con.execute(f"""
        WITH data_end AS (SELECT {_DATA_END} AS d),
        seen AS (SELECT DISTINCT participant_id, exchange_id FROM events
                 UNION SELECT DISTINCT participant_id, exchange_id FROM responses),
        side AS (SELECT p.institution_id, s.exchange_id,
                        count(DISTINCT s.participant_id) FILTER (WHERE p.role = 'teacher')
                            AS teachers
                 FROM seen s JOIN participants p USING (participant_id)
                 WHERE NOT coalesce(p.comparison, FALSE) GROUP BY ALL),
        act AS (SELECT p.institution_id, e.exchange_id, count(DISTINCT e.participant_id)
                       AS active, count(*) AS events, coalesce(sum(e.minutes), 0) AS minutes
                FROM events e JOIN participants p USING (participant_id)
                WHERE NOT coalesce(p.comparison, FALSE) GROUP BY ALL)
        SELECT pt.partnership_id,
               coalesce(sa.teachers, 0)::BIGINT AS teachers_a,
               coalesce(sb.teachers, 0)::BIGINT AS teachers_b,
               (coalesce(aa.active, 0) + coalesce(ab.active, 0))::BIGINT AS active,
               (coalesce(aa.events, 0) + coalesce(ab.events, 0))::BIGINT AS events,
               (coalesce(aa.minutes, 0) + coalesce(ab.minutes, 0))::DOUBLE AS minutes,
               de.d AS data_end
        FROM partnerships pt CROSS JOIN data_end de
        LEFT JOIN side sa ON sa.institution_id = pt.institution_a
                         AND sa.exchange_id = pt.exchange_id
        LEFT JOIN side sb ON sb.institution_id = pt.institution_b
                         AND sb.exchange_id = pt.exchange_id
        LEFT JOIN act aa ON aa.institution_id = pt.institution_a
                        AND aa.exchange_id = pt.exchange_id
        LEFT JOIN act ab ON ab.institution_id = pt.institution_b
                        AND ab.exchange_id = pt.exchange_id
        WHERE pt.started_on <= de.d
        ORDER BY pt.partnership_id""").df()


def _oracle_participant_units(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return frame(con, f"""
        WITH data_end AS (SELECT {_DATA_END} AS d),
        span AS (SELECT participant_id, exchange_id,
                        min({_utc_day('occurred_at')}) AS first_day,
                        max({_utc_day('occurred_at')}) AS last_day
                 FROM events GROUP BY ALL)
        SELECT s.exchange_id, x.modality, x.setting, x.cluster_id AS cluster,
               date_diff('day', s.first_day, s.last_day) / 7.0 AS weeks,
               (x.end_date <= de.d AND s.last_day < x.end_date - 6) AS stopped
        FROM span s CROSS JOIN data_end de
        JOIN participants p USING (participant_id)
        JOIN exchanges x ON x.exchange_id = s.exchange_id
        WHERE NOT coalesce(p.comparison, FALSE)""")


def _oracle_scheduling_activity(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("""
        WITH sides AS (SELECT exchange_id, institution_a AS institution_id FROM partnerships
                       UNION SELECT exchange_id, institution_b FROM partnerships),
        ev AS (SELECT e.exchange_id, p.institution_id, e.activity, e.participant_id,
                      e.minutes
               FROM events e JOIN participants p USING (participant_id)
               SEMI JOIN sides s ON s.exchange_id = e.exchange_id
                                AND s.institution_id = p.institution_id
               WHERE NOT coalesce(p.comparison, FALSE))
        SELECT exchange_id, institution_id, activity,
               count(DISTINCT participant_id)::BIGINT AS participants,
               count(*)::BIGINT AS events, coalesce(sum(minutes), 0)::DOUBLE AS minutes
        FROM ev GROUP BY GROUPING SETS ((exchange_id, institution_id, activity),
                                        (exchange_id, institution_id))""").df()


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------

def test_the_edge_cases_are_in_the_log_and_in_the_facts(con) -> None:
    """The comparisons below are not vacuous: the edge cases are there, and the data's end is
    the day of the participant no longer on the roster."""
    assert str(con.execute(f"SELECT {persistence.DATA_END_SQL}").fetchone()[0]) == GONE_DAY
    assert con.execute("SELECT count(*) FROM events e ANTI JOIN participants USING "
                       "(participant_id)").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM res_person_activities WHERE pid IS NULL"
                       ).fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM res_person_days WHERE exchange_id IS NULL"
                       ).fetchone()[0] == 2


def test_group_attributes_engagement_equals_the_event_log(con) -> None:
    attrs = materialise.group_attributes(con)
    want = _oracle_engagement(con)
    _same(attrs[list(want.columns)], want)
    edge = attrs[attrs["participant"] == "EDGE-MIDNIGHT"]
    assert edge["n_events"].tolist() == [7] and edge["minutes"].tolist() == [53.75]
    assert (attrs["participant"] == "EDGE-TWO-EXCHANGES").sum() == 3  # NULL exchange: a pair


def test_scale_units_equal_the_event_log(con) -> None:
    units, _ = scale.units(con)
    _same(units, _oracle_scale_units(con))
    edge = units[units["participant"] == "EDGE-MIDNIGHT"]
    # Sunday's last microsecond and Monday's midnight are two weeks; the DST day a third, the
    # Monday after it a fourth
    assert edge["weeks"].tolist() == [4] and edge["events"].tolist() == [7]
    assert units["institution"].isna().any()  # the participant without an institution


def test_persistence_units_equal_the_event_log(con) -> None:
    pu = persistence.partnership_units(con)
    want = _oracle_partnership_activity(con)
    _same(pu[list(want.columns)], want)
    assert pd.Timestamp(pu["data_end"].iloc[0]) == pd.Timestamp(GONE_DAY)
    _same(persistence.participant_units(con), _oracle_participant_units(con))


def test_scheduling_activity_equals_the_event_log(con) -> None:
    _, act = scheduling.inputs(con)
    want = _oracle_scheduling_activity(con)
    _same(act, want)
    assert len(want) > 100


@pytest.mark.parametrize("limit", ["programs", "clusters"])
def test_an_exports_scope_reads_the_facts_of_its_scope(con, limit) -> None:
    """A scoped export computes from the scope's raw tables (`export.scoped`), so the facts it
    reads are the scope's too: each step equals the oracle on the scope's events, not the
    stored facts of every program."""
    from analytics.outputs import export

    program = con.execute("SELECT min(program) FROM exchanges").fetchone()[0]
    cluster = con.execute("SELECT min(cluster_id) FROM institutions").fetchone()[0]
    scope = (export.Scope(programs=(program,)) if limit == "programs"
             else export.Scope(clusters=(cluster,)))
    everyone = len(materialise.group_attributes(con))
    with export.scoped(con, scope):
        attrs = materialise.group_attributes(con)
        want = _oracle_engagement(con)
        assert 0 < (attrs["n_events"] > 0).sum() and len(attrs) < everyone
        _same(attrs[list(want.columns)], want)
        _same(scale.units(con)[0], _oracle_scale_units(con))
        pu = persistence.partnership_units(con)
        want = _oracle_partnership_activity(con)
        _same(pu[list(want.columns)], want)
        _same(persistence.participant_units(con), _oracle_participant_units(con))
        _same(scheduling.inputs(con)[1], _oracle_scheduling_activity(con))
    assert len(materialise.group_attributes(con)) == everyone


def test_with_the_facts_built_the_results_need_no_event_log(warehouse, tmp_path) -> None:
    """Every result table that reads the participation log (the four steps' among them: scale,
    persistence, scheduling, and group_attributes' engagement under the rest), computed, then
    computed again with `events` emptied: the same frames."""
    import shutil

    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(warehouse, path)
    reading_log = [t for t in materialise.RESULT_NAMES if t not in materialise.EVENTS_FREE]
    assert {"scale", "persistence", "scheduling", "attrition", "dose_response"} <= set(
        reading_log)

    def outputs(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
        res = materialise.compute_results(con, tables=reading_log)
        return {"group_attributes": materialise.group_attributes(con)} | res.tables

    con = duckdb.connect(str(path))
    try:
        assert rollups.facts_current(con)
        before = outputs(con)
        con.execute("DELETE FROM events")
        after = outputs(con)
    finally:
        con.close()
    assert set(before) == set(after)
    for name, want in before.items():
        assert len(want), name
        pd.testing.assert_frame_equal(after[name], want, obj=name)


def test_facts_of_another_version_are_built_for_the_reader_and_dropped(warehouse,
                                                                       tmp_path) -> None:
    """A warehouse whose facts are not of its data version (a load that skipped the derive):
    the results are computed from temporary facts built from the log, on a read-only
    connection, nested calls share them, and nothing stays behind."""
    import shutil

    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(warehouse, path)
    con = duckdb.connect(str(path))
    try:
        want = materialise.group_attributes(con)
        con.execute("DELETE FROM res_person_days")  # what a stale copy would wrongly give
        con.execute("UPDATE meta SET value = 'older' WHERE key = ?",
                    [rollups.META_FACTS_VERSION])
    finally:
        con.close()
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert not rollups.facts_current(con)
        with rollups.current_facts(con):
            got = materialise.group_attributes(con)  # inside: uses the same temporary facts
            assert con.execute("SELECT count(*) FROM res_person_days").fetchone()[0] > 0
        pd.testing.assert_frame_equal(got, want)
        pd.testing.assert_frame_equal(materialise.group_attributes(con), want)
        assert con.execute("SELECT count(*) FROM res_person_days").fetchone()[0] == 0
        assert not con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary"
                               ).fetchall()
    finally:
        con.close()


def test_an_append_to_a_warehouse_from_before_the_activities_fact_rebuilds_the_facts(
        tmp_path, monkeypatch) -> None:
    """The first events append after this change meets a warehouse whose rollups are of the
    previous version but have no res_person_activities (and no facts version in meta): it
    rebuilds the facts instead of updating a table that is not there, and the load lands."""
    from etl.load import load_paths
    from tests.program import TEST_KEY

    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", TEST_KEY)
    wh = demo_copy(tmp_path / "d")
    con = duckdb.connect(str(wh))
    try:
        con.execute(f"DROP TABLE {schema.RES_PERSON_ACTIVITIES.name}")
        con.execute("DELETE FROM meta WHERE key = ?", [rollups.META_FACTS_VERSION])
    finally:
        con.close()
    events = pd.read_csv(wh.parent / "demo" / "events.csv", dtype=str)
    known = pd.read_csv(wh.parent / "demo" / "exchanges.csv", dtype=str).exchange_id
    day = events[events.exchange_id.isin(known)].sample(50, random_state=1).assign(
        occurred_at="2026-02-02 10:00:00")
    path = tmp_path / "day" / "events.csv"
    path.parent.mkdir()
    day.to_csv(path, index=False)
    (rep,) = load_paths([path], wh)
    assert rep.status == "loaded" and rep.rows_added == 50, rep.summary()
    con = duckdb.connect(str(wh), read_only=True)
    try:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        assert meta["rollups_incremental"] == ""  # rebuilt, not updated
        assert meta[rollups.META_FACTS_VERSION] == meta["data_version"]
        assert rollups.facts_current(con)
        assert con.execute(f"SELECT sum(events) FROM {schema.RES_PERSON_ACTIVITIES.name}"
                           ).fetchone()[0] == con.execute("SELECT count(*) FROM events"
                                                          ).fetchone()[0]
    finally:
        con.close()
