"""analytics.read on the fixture warehouse: filters from the URL, suppression, the cache, and
empty result tables (pages then say what is coming instead of drawing zeros)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from analytics import suppression
from analytics.read import cache, equity, filters, loads, outcomes, overview, participation, sql
from analytics.stats.survival import kaplan_meier
from etl.warehouse import Reader
from tests import read_oracle as oracle
from tests.dashboard_fixture import QUIET_COUNTRY, SMALL_COUNTRY, build_fixture_warehouse


@pytest.fixture(scope="module")
def cur(tmp_path_factory):
    path = build_fixture_warehouse(tmp_path_factory.mktemp("q") / "w.duckdb")
    reader = Reader(path)
    yield reader.cursor()
    reader.close()


@pytest.fixture(scope="module")
def quiet_cur(tmp_path_factory):
    """The fixture plus QUIET_COUNTRY: 12 participants, 3 of them active, 3 drop-outs."""
    path = build_fixture_warehouse(tmp_path_factory.mktemp("qq") / "w.duckdb",
                                   quiet_country=True)
    reader = Reader(path)
    yield reader.cursor()
    reader.close()


@pytest.fixture(scope="module")
def empty_results_cur(tmp_path_factory):
    path = build_fixture_warehouse(tmp_path_factory.mktemp("q0") / "w.duckdb",
                                   with_results=False)
    reader = Reader(path)
    yield reader.cursor()
    reader.close()


def test_filters_round_trip_through_the_query_string() -> None:
    f = filters.Filters(country=("FRA", "KEN"), modality=("virtual",), start=date(2025, 1, 1))
    back, notes = filters.parse_filters(f.to_query())
    assert back == f and notes == []
    assert filters.Filters.from_dict(f.to_dict()) == f
    assert filters.Filters().to_query() == ""


def test_invalid_query_values_are_dropped_with_a_note(cur) -> None:
    opts = loads.filter_options(cur)
    f, notes = filters.parse_filters(
        "?country=FRA,XXX&to=2025-13-01&from=2025-02-01&colour=red", opts)
    assert f.country == ("FRA",) and f.start == date(2025, 2, 1) and f.end is None
    assert any("country=XXX" in n for n in notes)
    assert any("to=2025-13-01" in n for n in notes)
    assert any("'colour' is not a filter" in n for n in notes)
    f, notes = filters.parse_filters("?from=2025-06-01&to=2025-01-01", opts)
    assert f.start is None and f.end is None and notes


def test_headline_follows_the_filters(cur) -> None:
    everyone = overview.headline(cur, filters.Filters())
    france = overview.headline(cur, filters.Filters(country=("FRA",)))
    assert everyone["participants"] == 465  # 7 countries × 3 × 22 non-comparison + 3 in ISL
    assert france["participants"] == 66 and france["countries"] == 1
    virtual = overview.headline(cur, filters.Filters(modality=("virtual",)))
    assert 0 < virtual["participants"] < everyone["participants"]


@pytest.mark.parametrize("day_facts", [True, False], ids=["day facts", "event log"])
@pytest.mark.parametrize(("start", "end"), [(date(2025, 2, 1), date(2025, 2, 28)),
                                            (date(2025, 3, 1), None), (None, date(2025, 4, 30)),
                                            (date(2025, 5, 7), date(2025, 5, 7))])
def test_a_date_range_keeps_the_events_of_its_utc_days(cur, monkeypatch, day_facts, start,
                                                       end) -> None:
    """from/to are whole UTC days, both included: counted here straight from the event log with
    timestamp bounds, independently of how the queries read it."""
    # The date rule is under test, not the small-cell rule: one day holds fewer than k people.
    monkeypatch.setattr(suppression, "MIN_CELL", 0)
    lo = f"TIMESTAMPTZ '{start} 00:00:00+00'" if start else "'-infinity'::TIMESTAMPTZ"
    hi = (f"TIMESTAMPTZ '{end} 00:00:00+00' + INTERVAL 1 DAY" if end
          else "'infinity'::TIMESTAMPTZ")
    events, exchanges = cur.execute(f"""
        SELECT count(*), count(DISTINCT e.exchange_id)
        FROM events e JOIN participants p USING (participant_id)
        WHERE e.occurred_at >= {lo} AND e.occurred_at < {hi}
          AND NOT coalesce(p.comparison, FALSE)""").fetchone()
    f = filters.Filters(start=start, end=end)
    got = overview._headline_days(cur, f) if day_facts else oracle.figure("headline", cur, f)
    assert (got["events"], got["exchanges"]) == (events, exchanges)
    assert got["events"] > 0


def test_small_groups_are_suppressed_not_zero(cur) -> None:
    by_country = overview.participants_by_country(cur, filters.Filters()).set_index("country")
    assert bool(by_country.loc[SMALL_COUNTRY, "suppressed"])
    assert by_country.loc[SMALL_COUNTRY, "participants"] != 0  # blank (NaN), never 0
    # Secondary suppression (issue 14): beside the headline total, the lone small country
    # would be the total minus the others, so the smallest other country is blanked too.
    blank = by_country.participants.isna()
    assert blank.sum() == 2 and by_country.suppressed[blank].all()
    table = participation.breakdown(cur, filters.Filters(), "country").set_index("key")
    assert bool(table.loc[SMALL_COUNTRY, "suppressed"]) and table.participants.isna().sum() == 2


def test_results_are_cached_per_data_version(cur) -> None:
    cache.clear_cache()
    first = participation.breakdown(cur, filters.Filters(), "cluster")
    assert participation.breakdown(cur, filters.Filters(), "cluster") is first
    assert participation.breakdown(cur, filters.Filters(country=("FRA",)), "cluster") is not first


def test_empty_result_tables_mean_coming_not_zero(empty_results_cur) -> None:
    cur = empty_results_cur
    assert len(outcomes.prepost_results(cur, "overall")) == 0
    df, _ = outcomes.prepost_extremes(cur, filters.Filters())
    assert len(df) == 0
    assert len(outcomes.reliability(cur)) == 0 and len(outcomes.longitudinal(cur)) == 0
    assert len(outcomes.wave_means(cur, filters.Filters())) == 0
    status = loads.result_table_status(cur)
    assert (status.rows == 0).all()


def test_kaplan_meier_matches_a_hand_computed_example() -> None:
    # Durations 1, 2+, 3, 3, 4+ (+ = censored): S(1) = 4/5, S(3) = 4/5 × 1/3.
    import numpy as np

    km = kaplan_meier(np.array([1, 2, 3, 3, 4.0]), np.array([1, 0, 1, 1, 0], bool))
    s = dict(zip(km.days, km.survival, strict=True))
    assert s[1.0] == pytest.approx(0.8)
    assert s[3.0] == pytest.approx(0.8 / 3)


def test_local_hour_heatmap_uses_each_institutions_zone(cur) -> None:
    heat = participation.activity_heatmap(cur, filters.Filters())
    # The fixture logs events between 08:00 and 16:59 local time in every zone.
    assert heat.hour.min() >= 8 and heat.hour.max() <= 16


def test_funnel_and_wave_tables_follow_the_one_wave_order() -> None:
    """Numbered follow-ups sort by their number everywhere (the order of
    analytics.stats.longitudinal.wave_key), not alphabetically after the known waves."""
    df = pd.DataFrame({"stage": ["answered followup_12m", "answered post", "enrolled",
                                 "active in the log", "answered followup_6m", "answered pre"],
                       "n": [20, 60, 100, 90, 40, 80]})
    assert equity._funnel_finish(df).stage.tolist() == [
        "enrolled", "active in the log", "answered pre", "answered post",
        "answered followup_6m", "answered followup_12m"]


# ---------------------------------------------------------------------------------------------
# Small groups (issue 8, section 4): every number a page shows for fewer than k participants is
# blanked by the one small-cell function, analytics.suppression.suppress.
# ---------------------------------------------------------------------------------------------

# France in exchange X3: 8 participants and 1 comparison-group member in the fixture (see
# `small_selection_counts`), under the default k = 10.
SMALL = filters.Filters(country=("FRA",), exchange=("X3",))


def small_selection_counts(cur) -> dict[str, int]:
    """The small selection's counts straight from the base tables (a test oracle, not the read
    layer): people of French institutions with an event or an answer in X3."""
    row = cur.execute("""
        WITH inx AS (SELECT participant_id FROM events WHERE exchange_id = 'X3'
                     UNION SELECT participant_id FROM responses WHERE exchange_id = 'X3'),
             ppl AS (SELECT p.* FROM participants p JOIN institutions i USING (institution_id)
                     WHERE i.country = 'FRA' AND p.participant_id IN (SELECT * FROM inx))
        SELECT count(*) FILTER (WHERE NOT comparison), count(*) FILTER (WHERE comparison),
               (SELECT count(*) FROM events e JOIN ppl USING (participant_id)
                WHERE e.exchange_id = 'X3')
        FROM ppl""").fetchone()
    return {"participants": row[0], "comparison": row[1], "events": row[2]}


def _no_numbers(df: pd.DataFrame, keep: set[str] = frozenset()) -> list[str]:
    """Columns of `df` that still hold a number (anything numeric not all missing); the flags
    (`suppressed`, `week_suppressed`, `subset_suppressed`) say what was blanked, not a number."""
    return [c for c in df.columns
            if c not in keep and c != "suppressed" and not c.endswith("_suppressed")
            and (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
            and df[c].notna().any()]


@pytest.fixture
def both_paths(request, monkeypatch):
    """Run a test on the rollups and on the day facts (the two ways a query is answered)."""
    if request.param == "day facts":
        monkeypatch.setattr(sql, "use_rollups", lambda *a, **k: False)
    cache.clear_cache()
    yield request.param
    cache.clear_cache()


_PATHS = pytest.mark.parametrize("both_paths", ["rollups", "day facts"], indirect=True)


def test_the_small_selection_is_under_k(cur) -> None:
    counts = small_selection_counts(cur)
    assert 0 < counts["participants"] < suppression.MIN_CELL and counts["comparison"] >= 1
    assert overview.headline(cur, filters.Filters())["participants"] >= suppression.MIN_CELL


@_PATHS
def test_headline_cards_of_a_small_selection_are_suppressed(cur, both_paths) -> None:
    h = overview.headline(cur, SMALL)
    assert h["suppressed"] is True
    for key in ("participants", "active_month", "institutions", "countries", "clusters",
                "exchanges", "events", "partnerships_active"):
        assert pd.isna(h[key]), (key, h[key])
    assert h["active_month_label"] is None
    everyone = overview.headline(cur, filters.Filters())
    assert everyone["suppressed"] is False and everyone["participants"] == 465


@_PATHS
def test_response_rates_of_a_small_selection_are_suppressed(cur, both_paths) -> None:
    df = overview.completion_by_wave(cur, SMALL)
    assert len(df) and df.suppressed.all()
    assert _no_numbers(df) == []
    everyone = overview.completion_by_wave(cur, filters.Filters())
    assert not everyone.suppressed.any() and everyone.responded.notna().all()


@_PATHS
def test_heatmap_cells_under_k_are_blanked(cur, both_paths) -> None:
    df = participation.activity_heatmap(cur, SMALL)
    assert len(df) and df.suppressed.all()
    assert _no_numbers(df, keep={"weekday", "hour"}) == []
    everyone = participation.activity_heatmap(cur, filters.Filters())
    shown = everyone[~everyone.suppressed]
    assert len(shown) and (shown.n >= suppression.MIN_CELL).all()
    small = everyone[everyone.suppressed]
    assert small.events.isna().all() and small.n.isna().all()


@_PATHS
@pytest.mark.parametrize("by", sorted(filters.EQUITY_GROUPINGS))
def test_dropout_table_of_small_groups_shows_no_count(cur, both_paths, by) -> None:
    df = equity.dropout_by_group(cur, SMALL, by)
    assert len(df) and df.suppressed.all()
    assert _no_numbers(df) == []  # "female 4, male 3" was shown as n


@_PATHS
@pytest.mark.parametrize("by", sorted(filters.EQUITY_GROUPINGS))
def test_equity_points_and_hover_of_small_groups_have_no_n(cur, both_paths, by) -> None:
    part = equity.participation_by_group(cur, SMALL, by)
    assert len(part) and part.suppressed.all()
    assert _no_numbers(part) == []  # the hover read "n = 4"
    gains = equity.gains_by_group(cur, SMALL, by)
    assert len(gains) and gains.suppressed.all()
    assert _no_numbers(gains) == []


@_PATHS
def test_outcomes_comparison_table_of_a_small_selection_is_suppressed(cur, both_paths) -> None:
    df = outcomes.comparison_difference(cur, SMALL)
    assert len(df) and df.suppressed.all()
    assert _no_numbers(df) == []  # "n participants 6, n comparison 1" was shown


@_PATHS
def test_every_dashboard_view_of_a_small_selection_holds_no_number(cur, both_paths) -> None:
    """The read-layer functions the pages draw from, for a selection under k: every row is
    flagged and holds no count or statistic (only the coordinates that name the cell)."""
    views = [
        (overview.completion_by_wave, (), set()),
        (overview.participants_by_country, (), set()),
        (overview.activity_over_time, (None,), set()),
        (overview.activity_over_time, ("cluster",), set()),
        (participation.activity_heatmap, (), {"weekday", "hour"}),
        (participation.retention_by_cohort, (), {"week"}),
        (participation.breakdown, ("cluster",), set()),
        (participation.breakdown, ("country",), set()),
        (participation.breakdown, ("exchange",), set()),
        (outcomes.wave_means, (), {"comparison"}),
        (outcomes.comparison_difference, (), set()),
        (equity.attrition_funnel, (), set()),
        *[(fn, (by,), set()) for by in filters.EQUITY_GROUPINGS
          for fn in (equity.gains_by_group, equity.participation_by_group,
                     equity.dropout_by_group)],
    ]
    for fn, args, keep in views:
        df = fn(cur, SMALL, *args)
        assert len(df), (fn.__name__, args)
        assert df.suppressed.astype(bool).all(), (fn.__name__, args)
        assert _no_numbers(df, keep) == [], (fn.__name__, args)


# ---------------------------------------------------------------------------------------------
# Subsets under k inside a shown group: a week's active people, a retention week, the drop-outs,
# the active participants of a group. Same rule (analytics.suppression.suppress); 0 stays 0.
# ---------------------------------------------------------------------------------------------

def _unsuppressed(monkeypatch, fn, cur, *args) -> pd.DataFrame:
    """`fn` with k = 1 (nothing suppressed): the test's oracle of the raw counts."""
    with monkeypatch.context() as m:
        m.setattr(suppression, "MIN_CELL", 1)
        cache.clear_cache()
        raw = fn(cur, *args)
    cache.clear_cache()
    return raw


@_PATHS
@pytest.mark.parametrize("by", [None, "cluster"])
def test_weeks_with_fewer_than_k_active_show_no_numbers(cur, both_paths, monkeypatch, by) -> None:
    raw = _unsuppressed(monkeypatch, overview.activity_over_time, cur, filters.Filters(), by)
    df = overview.activity_over_time(cur, filters.Filters(), by)
    key = ["week", "grp"]
    both = df.merge(raw[[*key, "active"]].rename(columns={"active": "raw"}), on=key)
    assert len(both) == len(df)
    shown = both[~both.suppressed]
    few = shown[(shown.raw > 0) & (shown.raw < suppression.MIN_CELL)]
    assert len(few), "the fixture has weeks with fewer than k active people"
    # No number of those few people: not their count, their minutes or their events.
    assert few[["active", "minutes", "events"]].isna().all().all()
    assert few.week_suppressed.all()
    # The group is not suppressed because of one week: its other weeks keep their numbers.
    for grp, d in shown.groupby("grp"):
        rest = d[~d.week_suppressed]
        assert len(rest) and rest.active.notna().all(), grp
        assert ((rest.active == 0) | (rest.active >= suppression.MIN_CELL)).all(), grp
    assert not shown.week_suppressed.equals(shown.suppressed)


@_PATHS
def test_retention_weeks_with_fewer_than_k_active_show_no_numbers(cur, both_paths,
                                                                  monkeypatch) -> None:
    raw = _unsuppressed(monkeypatch, participation.retention_by_cohort, cur, filters.Filters())
    df = participation.retention_by_cohort(cur, filters.Filters())
    key = ["cohort", "week"]
    both = df.merge(raw[[*key, "active"]].rename(columns={"active": "raw"}), on=key)
    shown = both[~both.suppressed]
    few = shown[(shown.raw > 0) & (shown.raw < suppression.MIN_CELL)]
    assert len(few), "the fixture has retention weeks with fewer than k active pairs"
    assert few[["active", "share"]].isna().all().all() and few.week_suppressed.all()
    assert few.n.notna().all() and few.week.notna().all()  # the cohort and week stay
    rest = shown[~shown.week_suppressed]
    assert len(rest) and (rest.active >= suppression.MIN_CELL).all() and rest.share.notna().all()


@_PATHS
@pytest.mark.parametrize(("by", "group"), [("connectivity", "none"), ("income_group", "low")])
def test_dropouts_fewer_than_k_in_a_shown_group_are_blank(quiet_cur, both_paths, by,
                                                          group) -> None:
    df = equity.dropout_by_group(quiet_cur, filters.Filters(), by).set_index("group")
    row = df.loc[group]
    assert not row.suppressed and row.n == 12  # the group itself is shown
    assert pd.isna(row.dropped) and pd.isna(row.dropout_rate)  # 3 drop-outs: not shown
    assert row.subset_suppressed
    others = df.drop(index=group)
    assert others.dropped.notna().all() and not others.subset_suppressed.any()


@_PATHS
@pytest.mark.parametrize(("by", "group"), [("connectivity", "none"), ("income_group", "low")])
def test_active_fewer_than_k_in_a_shown_group_are_blank(quiet_cur, both_paths, by,
                                                        group) -> None:
    df = equity.participation_by_group(quiet_cur, filters.Filters(), by).set_index("group")
    row = df.loc[group]
    assert not row.suppressed and row.n == 12
    # 3 of 12 active: their count, share and minutes (12 × minutes per participant) are theirs.
    assert pd.isna(row.active) and pd.isna(row.active_share)
    assert pd.isna(row.minutes_per_participant) and row.subset_suppressed
    # Without the small country: beside it, the quiet one (the next smallest) would be blanked
    # whole as its complement (secondary suppression), which is not what this test is about.
    countries = tuple(c for c in overview.participants_by_country(quiet_cur, filters.Filters())
                      .country if c != SMALL_COUNTRY)
    table = participation.breakdown(quiet_cur, filters.Filters(country=countries),
                                    "country").set_index("key")
    quiet = table.loc[QUIET_COUNTRY]
    assert not quiet.suppressed and quiet.participants == 12 and quiet.subset_suppressed
    assert quiet[["active", "events", "minutes", "minutes_per_active"]].isna().all()
    shown = table[~table.suppressed].drop(index=QUIET_COUNTRY)
    assert shown.active.notna().all() and not shown.subset_suppressed.any()


@_PATHS
def test_active_this_month_under_k_is_blank_on_the_headline(quiet_cur, both_paths) -> None:
    h = overview.headline(quiet_cur, filters.Filters(country=(QUIET_COUNTRY,)))
    assert h["suppressed"] is False and h["participants"] == 12
    assert pd.isna(h["active_month"])  # the 3 active in March 2025


def test_a_subset_count_of_zero_stays_zero() -> None:
    t = pd.DataFrame({"n": [40, 40, 40, 4], "active": [0, 3, 12, 2],
                      "share": [0.0, 3 / 40, 12 / 40, 0.5]})
    out = sql.suppress_subset(sql.suppress(t, "n"), "active", ["share"])
    assert out.active.tolist()[0] == 0 and out.share.tolist()[0] == 0  # 0 people: no one
    assert pd.isna(out.active[1]) and pd.isna(out.share[1])
    assert out.active[2] == 12
    assert out.subset_suppressed.tolist() == [False, True, False, False]
    assert out.suppressed.tolist() == [False, False, False, True]


@_PATHS
def test_a_table_shows_the_label_where_a_subset_under_k_was_blanked(quiet_cur, both_paths) -> None:
    """The drop-out table as the Equity page draws it: the quiet group's row shows its n and
    "suppressed (n < k)" for its 3 drop-outs and their rate, not "3" and "25%"."""
    from pages import _grid, _ui
    from tests.grids import grid_rows

    df = equity.dropout_by_group(quiet_cur, filters.Filters(), "connectivity")
    div = _grid.table(df, {"group": ("group", _ui.text), "n": ("answered pre (n)", _ui.fmt_int),
                           "dropped": ("no post answer", _ui.fmt_int),
                           "dropout_rate": ("drop-out rate", _ui.fmt_pct)}, "Drop-out")
    cells = {r["group"]: [r["answered pre (n)"], r["no post answer"], r["drop-out rate"]]
             for r in grid_rows(div)}
    assert cells["none"] == ["12", suppression.SUPPRESSED_LABEL, suppression.SUPPRESSED_LABEL]
    assert suppression.SUPPRESSED_LABEL not in cells["high"]
