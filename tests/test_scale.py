"""Scale-up vs scale-in (issue 13): analytics.stats.scale on hand-made frames, and res_scale of
the demo warehouse against the figures truth.json counts from the generator's arrays."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from analytics.stats import scale as sc


def _units(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cluster", "term", "participant", "institution",
                                       "country", "events", "minutes", "weeks"])


def test_empty_input_gives_empty_table_with_columns() -> None:
    out = sc.scale_terms(_units([]))
    assert out.empty and list(out.columns) == sc.OUTPUT_COLUMNS


def test_breadth_new_returning_and_institutions_next_term() -> None:
    u = _units([
        ("A", "2024-H1", "p1", "i1", "X", 5, 0, 1),
        ("A", "2024-H1", "p2", "i2", "Y", 1, 299, 1),
        ("A", "2024-H2", "p1", "i1", "X", 1, 300, 4),   # returning participant, dosed by minutes
        ("A", "2024-H2", "p3", "i3", "Z", 2, 10, 5),
        ("A", "2024-H2", "p4", "i3", "Z", 9, 10, 2),
        ("B", "2024-H2", "q1", "j1", "X", 1, 1, 1),     # a single group: no previous term
    ])
    out = sc.scale_terms(u).set_index(["cluster", "term"])
    a1, a2 = out.loc[("A", "2024-H1")], out.loc[("A", "2024-H2")]
    assert (a1.participants, a1.participants_new, a1.dosed) == (2, 2, 1)
    assert (a2.participants, a2.participants_new, a2.participants_returning) == (3, 2, 1)
    assert (a2.institutions, a2.institutions_new, a2.institutions_returning, a2.countries) == (
        2, 1, 1, 2)
    assert a2.dosed == 2 and a2.sustained == 2 and a2.weeks_median == 4
    # one of A's two 2024-H1 institutions (i1) is back in 2024-H2
    assert a1.institutions_next == 1 and a1.share_institutions_next == pytest.approx(0.5)
    # the last term has no next term: missing, not 0
    assert not a2.next_term_in_data and np.isnan(a2.share_institutions_next)
    assert a2.breadth_change_pct == pytest.approx(50.0)
    assert a2.depth_change == pytest.approx(2 / 3 - 1 / 2)
    assert a2.quadrant == "scaling up and in"
    assert out.loc[("B", "2024-H2")].quadrant is None or pd.isna(out.loc[("B", "2024-H2")].quadrant)


def test_quadrants_and_a_gap_year_has_no_change() -> None:
    rows = []
    for i in range(10):   # 2024-H1: 10 reached, all dosed
        rows.append(("A", "2024-H1", f"a{i}", "i", "X", 9, 0, 1))
    for i in range(20):   # 2024-H2: 20 reached, 10 dosed: up only
        rows.append(("A", "2024-H2", f"b{i}", "i", "X", 9 if i < 10 else 1, 0, 1))
    for i in range(5):    # 2025-H2 (2025-H1 empty): no term-on-term change
        rows.append(("A", "2025-H2", f"c{i}", "i", "X", 9, 0, 1))
    out = sc.scale_terms(_units(rows)).set_index("term")
    assert out.loc["2024-H2", "quadrant"] == "scaling up only"
    assert out.loc["2024-H2", "depth_change"] == pytest.approx(-0.5)
    lo, hi = out.loc["2024-H2", ["depth_change_ci_low", "depth_change_ci_high"]]
    assert lo < -0.5 < hi < 0   # Newcombe's interval around the change, excluding 0 here
    assert pd.isna(out.loc["2025-H2", "quadrant"]) and pd.isna(out.loc["2025-H2", "depth_change"])
    # Wilson 95% of 10/20, R prop.test(10, 20, correct = FALSE)$conf.int
    assert out.loc["2024-H2", ["share_dosed_ci_low", "share_dosed_ci_high"]].tolist() == (
        pytest.approx([0.2992980, 0.7007020], abs=1e-6))
    shrink = sc.scale_terms(_units([r for r in rows if r[1] == "2024-H1"] + [
        ("A", "2024-H2", "z", "i", "X", 1, 0, 1)])).set_index("term")
    assert shrink.loc["2024-H2", "quadrant"] == "neither"


def test_newcombe_matches_published_example() -> None:
    # Newcombe (1998) Table II, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339
    lo, hi = sc._newcombe(np.array([56.0]), np.array([70.0]), np.array([48.0]), np.array([80.0]))
    assert (round(float(lo[0]), 4), round(float(hi[0]), 4)) == (0.0524, 0.3339)


def test_configured_dose_default_and_bad_values() -> None:
    assert sc.configured_dose({}) == (5, 300.0)
    assert sc.configured_dose({sc.ENV_DOSE: " 3, 120 "}) == (3, 120.0)
    for bad in ("5", "x,300", "0,300", "5,-1", "5,300,1"):
        with pytest.raises(ValueError, match=sc.ENV_DOSE):
            sc.configured_dose({sc.ENV_DOSE: bad})


def test_dose_setting_changes_the_dosed_share() -> None:
    u = _units([("A", "2024-H1", "p", "i", "X", 3, 100, 1)])
    assert sc.scale_terms(u).share_dosed.iloc[0] == 0
    assert sc.scale_terms(u, dose=(3, 300)).share_dosed.iloc[0] == 1


# The demo: res_scale as stored by the load against truth.json "scale"
def _demo() -> tuple[pd.DataFrame, dict]:
    from tests.analytics_fixture import demo_warehouse

    wh = demo_warehouse()
    with duckdb.connect(str(wh), read_only=True) as con:
        df = con.execute("SELECT * FROM res_scale").df()
    return df, json.loads((wh.parent / "demo" / "truth.json").read_text(encoding="utf-8"))


def test_demo_res_scale_recovers_the_truth() -> None:
    df, truth = _demo()
    t = truth["scale"]["by_cluster_term"]
    stored = df.set_index(["cluster", "term"])
    assert set(stored.index) == {(c, term) for c, ts in t.items() for term in ts}
    k = 10
    for c, ts in t.items():
        for term, v in ts.items():
            row = stored.loc[(c, term)]
            if v["participants"] < k:
                assert row.suppressed == f"n < {k}" and pd.isna(row.participants)
                continue
            assert (row.participants, row.institutions, row.countries, row.dosed) == (
                v["participants"], v["institutions"], v["countries"], v["dosed"])
            assert row.share_dosed_ci_low <= v["share_dosed"] <= row.share_dosed_ci_high
    assert (df.dose_sessions == 5).all() and (df.dose_minutes == 300).all()
    planted = truth["scale"]["scaling_up_only"]
    assert planted, "the demo must hold a cluster that scales up without scaling in"
    for p in planted:
        row = stored.loc[(p["cluster"], p["term"])]
        assert row.quadrant == "scaling up only"
        assert row.breadth_change_pct == pytest.approx(p["breadth_change_pct"], abs=1e-4)
        assert row.depth_change == pytest.approx(p["depth_change"], abs=1e-4)
        assert row.depth_change_ci_low <= p["depth_change"] <= row.depth_change_ci_high
    last = df.term.max()
    assert df.loc[df.term == last, "share_institutions_next"].isna().all()


def test_demo_planted_scale_up_and_scale_in_clusters_land_in_their_quadrants() -> None:
    """truth.json "scale"."planted": the cluster planted to grow in participants while more of
    them stay light touch lands in "scaling up only" (breadth +50 % or more), the one planted
    to deepen without growing in "scaling in only"; res_scale shows the realised changes
    exactly and the Newcombe interval of the depth change covers its expected (design) value.
    Depth varies: not ~100 % dosed everywhere."""
    df, truth = _demo()
    planted = {p["kind"]: p for p in truth["scale"]["planted"]}
    assert set(planted) == {"up", "in"}
    assert all(p["planted"] and p["as_planted"] for p in planted.values())
    assert (planted["up"]["quadrant"], planted["in"]["quadrant"]) == (
        "scaling up only", "scaling in only")
    stored = df.set_index(["cluster", "term"])
    for kind, p in planted.items():
        row = stored.loc[(p["cluster"], p["term"])]
        assert row.previous_term == p["previous_term"]
        assert row.quadrant == p["quadrant"]
        assert row.breadth_change_pct == pytest.approx(p["breadth_change_pct"], abs=1e-4)
        assert row.depth_change == pytest.approx(p["depth_change"], abs=1e-4)
        assert row.depth_change_ci_low <= p["expected_depth_change"] <= row.depth_change_ci_high
        if kind == "up":
            assert p["breadth_change_pct"] >= 50 and p["expected_depth_change"] < -0.1
            assert row.depth_change_ci_high < 0  # depth clearly falls
        else:
            assert p["breadth_change_pct"] <= 0 and p["expected_depth_change"] > 0.1
            assert row.depth_change_ci_low > 0
    shares = df.loc[df.participants.notna(), "share_dosed"].astype(float)
    assert 0.6 < shares.median() < 0.9 and shares.min() < 0.5


def test_small_cells_are_kept_blank_and_blank_the_next_change(monkeypatch) -> None:
    """A cluster-term under k keeps its row with blank numbers; the term after it shows its own
    figures but no change (it would reveal the small term's count)."""
    from analytics.derive import scale as derive

    rows = [("A", "2024-H1", f"a{i}", "i", "X", 9, 0, 1) for i in range(3)]
    rows += [("A", "2024-H2", f"b{i}", "i", "X", 9, 0, 1) for i in range(12)]
    rows += [("A", "2025-H1", f"c{i}", "i", "X", 9, 0, 1) for i in range(15)]
    monkeypatch.setattr(derive, "units", lambda _con: (_units(rows), "2025-H1"))
    out = derive.compute(None, 10, dose=(5, 300))["scale"].set_index("term")
    assert out.loc["2024-H1", "suppressed"] == "n < 10"
    assert pd.isna(out.loc["2024-H1", "participants"]) and pd.isna(out.loc["2024-H1", "dosed"])
    assert out.loc["2024-H2", "participants"] == 12
    assert pd.isna(out.loc["2024-H2", "breadth_change_pct"])
    assert pd.isna(out.loc["2024-H2", "participants_previous"])
    assert pd.isna(out.loc["2024-H2", "quadrant"])
    assert out.loc["2025-H1", "quadrant"] == "scaling up only"   # 12 -> 15, depth 1 -> 1
