"""Scheduling friction (issue 13): school-hours overlap across time zones with DST, the joint
share per partnership, the model, the settings; and the demo's planted effect recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.stats import scheduling as sch


def _pairs(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["tz_a", "tz_b", "start_date", "end_date"])


def test_overlap_counts_dst_weeks_where_only_one_side_switched() -> None:
    # US clocks move on 9 March 2025, the EU's on 30 March: 6 h apart the first week, 5 h the
    # second (08-16 Berlin = 02-10 then 03-11 New York), so 2 h then 3 h a day.
    # Autumn: the EU moves back on 26 October, the US on 2 November: 6, 5, 6 h apart.
    r = sch.overlap_hours(_pairs([
        ("Europe/Berlin", "America/New_York", "2025-03-03", "2025-03-07"),
        ("Europe/Berlin", "America/New_York", "2025-03-10", "2025-03-14"),
        ("America/New_York", "Europe/Berlin", "2025-03-03", "2025-03-14"),
        ("Europe/Berlin", "America/New_York", "2025-10-20", "2025-11-07"),
    ]))
    assert r["overlap_hours_per_day"].tolist() == pytest.approx([2.0, 3.0, 2.5, 7 / 3])
    assert r["school_days"].tolist() == [5, 5, 10, 15]
    assert r["zero_overlap_days"].tolist() == [0, 0, 0, 0]


def test_overlap_across_the_date_line_and_zero_overlap() -> None:
    # Tokyo (UTC+9) and Los Angeles: 17 h apart before 9 March (Tokyo's Tuesday 08:00 is LA's
    # Monday 15:00: 1 h on Tue-Fri, Monday's window meets LA's Sunday), 16 h after: none.
    # Honolulu (UTC-10, no DST): 19 h, 3 h a day on four days of the week.
    r = sch.overlap_hours(_pairs([
        ("Asia/Tokyo", "America/Los_Angeles", "2025-03-03", "2025-03-14"),
        ("Asia/Tokyo", "America/Los_Angeles", "2025-03-10", "2025-03-14"),
        ("Asia/Tokyo", "Pacific/Honolulu", "2025-03-03", "2025-03-14"),
        ("Europe/Berlin", "Europe/Berlin", "2025-03-01", "2025-03-02"),  # a weekend only
    ]))
    assert r["overlap_hours_per_day"].iloc[:3].tolist() == pytest.approx([0.4, 0.0, 2.4])
    assert r["zero_overlap_days"].tolist() == [5, 5, 0, 0]
    assert r["school_days"].iloc[3] == 0 and np.isnan(r["overlap_hours_per_day"].iloc[3])


def test_overlap_settings_hours_and_days() -> None:
    h = sch.configured_school_hours({sch.ENV_HOURS: "09:00-12:30", sch.ENV_DAYS: "Sun-Thu"})
    assert (h.start_min, h.end_min, h.weekdays) == (540, 750, (0, 1, 2, 3, 6))
    assert h.label == "09:00-12:30"
    r = sch.overlap_hours(_pairs([("Asia/Dubai", "Asia/Dubai", "2025-03-02", "2025-03-08")]), h)
    assert r["school_days"].iloc[0] == 5 and r["overlap_hours_per_day"].iloc[0] == 3.5
    assert sch.configured_school_hours({}).label == sch.DEFAULT_HOURS
    for env in ({sch.ENV_HOURS: "16:00-08:00"}, {sch.ENV_HOURS: "8h to 4pm"},
                {sch.ENV_DAYS: "Mon-Funday"}, {sch.ENV_DAYS: "Monday,Funday"}):
        with pytest.raises(ValueError, match="EXCHANGE_IMPACT_SCHOOL_"):
            sch.configured_school_hours(env)
    assert sch.configured_sync_activities({}) == sch.DEFAULT_SYNC
    assert sch.configured_sync_activities({sch.ENV_SYNC: "zoom, zoom ,teams"}) == ("zoom",
                                                                                 "teams")
    with pytest.raises(ValueError, match=sch.ENV_SYNC):
        sch.configured_sync_activities({sch.ENV_SYNC: " , "})
    with pytest.raises(ValueError, match="Mars/Olympus"):
        sch.overlap_hours(_pairs([("Mars/Olympus", "UTC", "2025-03-03", "2025-03-07")]))


def _toy() -> tuple[pd.DataFrame, pd.DataFrame]:
    part = pd.DataFrame({
        "partnership_id": ["P1", "P2", "P3"], "exchange_id": ["X1", "X1", "X2"],
        "institution_a": ["A", "A", "C"], "institution_b": ["B", "D", "E"],
        "tz_a": ["Europe/Berlin", "Europe/Berlin", "Asia/Tokyo"],
        "tz_b": ["Europe/Paris", "America/New_York", "America/Los_Angeles"],
        "start_date": "2025-03-10", "end_date": "2025-03-14", "modality": "virtual"})
    act = pd.DataFrame([
        # exchange, institution, activity (NA: the side's active participants), people, ...
        ("X1", "A", None, 6, 0, 0.0), ("X1", "A", "video_call", 3, 4, 160.0),
        ("X1", "A", "message", 6, 12, 24.0),
        ("X1", "B", None, 6, 0, 0.0), ("X1", "B", "live_session", 2, 2, 120.0),
        ("X1", "B", "message", 5, 2, 4.0),
        ("X1", "D", None, 1, 0, 0.0), ("X1", "D", "message", 1, 3, 3.0),
        ("X2", "C", None, 20, 0, 0.0), ("X2", "C", "upload", 20, 40, 400.0),
    ], columns=["exchange_id", "institution_id", "activity", "participants", "events",
                "minutes"])
    return part, act


def test_joint_share_small_cells_and_zero_overlap_flag() -> None:
    part, act = _toy()
    r = sch.scheduling(part, act, k=10).set_index("partnership_id")
    assert r.loc["P1", "n_participants"] == 12 and r.loc["P1", "n_events"] == 20
    assert r.loc["P1", "joint_share"] == pytest.approx(6 / 20)
    assert r.loc["P1", "joint_minutes_share"] == pytest.approx(280 / 308)
    assert r.loc["P1", "overlap_hours_per_day"] == 8.0 and not r.loc["P1", "zero_overlap"]
    # 7 participants < k: kept, marked, activity blank, overlap still shown
    assert r.loc["P2", "suppressed"] == "n < 10" and pd.isna(r.loc["P2", "joint_share"])
    assert r.loc["P2", "overlap_hours_per_day"] == pytest.approx(3.0)
    # B's side lives only in X1; side E has no events: counted as none, not dropped
    assert r.loc["P3", "zero_overlap"] and r.loc["P3", "zero_overlap_days"] == 5
    assert r.loc["P3", "joint_share"] == 0.0 and r.loc["P3", "n_events"] == 40
    assert set(r["sync_activities"]) == {"video_call,live_session"}
    assert set(r["school_hours"]) == {"08:00-16:00"}


def test_empty_and_single_partnership_model_is_blank_not_an_error() -> None:
    part, act = _toy()
    empty = sch.scheduling(part.iloc[:0], act, k=10)
    assert empty.empty
    m = sch.scheduling_model(empty, k=10)
    assert len(m) == 1 and m["suppressed"].iloc[0] == "n < 10" and m["n_partnerships"].iloc[0] == 0
    assert pd.isna(m["estimate"].iloc[0])
    one = sch.scheduling_model(sch.scheduling(part.iloc[:1], act, k=0), k=0)
    assert one["n_partnerships"].iloc[0] == 1 and pd.isna(one["estimate"].iloc[0])


def test_model_recovers_a_known_slope_with_cr2_by_exchange() -> None:
    rng = np.random.default_rng(3)
    n = 400
    d = pd.DataFrame({"exchange_id": rng.integers(0, 60, n).astype(str),
                      "overlap_hours_per_day": rng.uniform(0, 8, n),
                      "modality": rng.choice(["virtual", "blended"], n)})
    d["joint_share"] = (0.1 + 0.02 * d["overlap_hours_per_day"]
                        + 0.05 * (d["modality"] == "virtual") + rng.normal(0, 0.03, n))
    d = d.assign(suppressed="", school_hours="08:00-16:00", school_days_setting="Mon-Fri",
                 sync_activities="video_call")
    m = sch.scheduling_model(d, k=10).iloc[0]
    assert m["ci_low_cr2"] < 0.02 < m["ci_high_cr2"] and m["ci_high_cr2"] - m["ci_low_cr2"] < 0.01
    assert m["adjusted_for"] == "modality" and m["method"] == sch.METHOD
    assert m["n_partnerships"] == n and m["n_clusters"] == 60
    flat = sch.scheduling_model(d.assign(overlap_hours_per_day=3.0), k=10).iloc[0]
    assert pd.isna(flat["estimate"])


# ---------------------------------------------------------------------------------------------
# The demo's planted effect (truth.json "scheduling"), from the stored tables
# ---------------------------------------------------------------------------------------------

def test_demo_model_ci_covers_the_planted_slope_and_every_partnership_is_kept() -> None:
    import json

    import duckdb

    from tests.analytics_fixture import demo_warehouse

    wh = demo_warehouse()
    truth = json.loads((wh.parent / "demo" / "truth.json").read_text(encoding="utf-8"))
    planted = truth["scheduling"]
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rows = con.execute("SELECT * FROM res_scheduling").df()
        m = con.execute("SELECT * FROM res_scheduling_model").df().iloc[0]
    finally:
        con.close()
    assert len(rows) == rows.partnership_id.nunique() == truth["counts"]["partnerships"]
    assert int(rows.zero_overlap.sum()) == planted["zero_overlap_partnerships"] > 0
    assert rows.overlap_hours_per_day.notna().all() and rows.zero_overlap.notna().all()
    small = rows[rows.suppressed == "n < 10"]
    assert len(small) and small[["n_events", "joint_share"]].isna().all().all()
    assert m["n_partnerships"] == planted["n_partnerships"] == (rows.suppressed == "").sum()
    slope = planted["slope_joint_share_per_overlap_hour"]
    assert slope > 0 and m["ci_low_cr2"] < slope < m["ci_high_cr2"]
    assert m["ci_low_cr2"] > 0  # the plant is large enough to be seen
    assert m["method"] == sch.METHOD and m["adjusted_for"] == "modality"
    assert m["school_hours"] == "08:00-16:00"
