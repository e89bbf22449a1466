"""analytics.stats.reciprocity: each side's t interval and the gap's Welch interval against R's
t.test on Student's sleep data, the category and index in every case, suppression, shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.stats.reciprocity import (
    RECIPROCITY_COLUMNS,
    SHARE_COLUMNS,
    composite_gains,
    reciprocity,
    reciprocity_from_sides,
    reciprocity_shares,
    wilson_interval,
)
from tests.analytics_fixture import sleep_data


def _gains(a: list[float], b: list[float], exchange: str = "X1") -> pd.DataFrame:
    return pd.DataFrame({"exchange_id": exchange,
                         "institution_id": ["A"] * len(a) + ["B"] * len(b),
                         "unit": range(len(a) + len(b)), "gain": [*a, *b]})


P1 = pd.DataFrame({"partnership_id": ["P1"], "exchange_id": ["X1"], "institution_a": ["A"],
                   "institution_b": ["B"], "cluster": ["C1"], "modality": ["virtual"]})


def test_sides_and_gap_match_r_t_test_on_sleep() -> None:
    """R: t.test(sleep$extra[1:10]) mean 0.75, 95% CI -0.5297804 2.0297804;
    t.test(sleep$extra[11:20]) mean 2.33, CI 0.8976775 3.7623225;
    t.test(extra ~ group, data = sleep) (Welch) df 17.776, CI -3.3654832 0.2054832."""
    g1, g2 = sleep_data()
    r = reciprocity(_gains(g1, g2), P1, keys=(), k=10).iloc[0]
    assert list(reciprocity(_gains(g1, g2), P1, keys=(), k=10).columns) == RECIPROCITY_COLUMNS
    assert r.n_a == 10 and r.n_b == 10
    assert r.mean_a == pytest.approx(0.75) and r.mean_b == pytest.approx(2.33)
    assert (r.ci_low_a, r.ci_high_a) == pytest.approx((-0.5297804, 2.0297804), abs=1e-6)
    assert (r.ci_low_b, r.ci_high_b) == pytest.approx((0.8976775, 3.7623225), abs=1e-6)
    assert r.gap == pytest.approx(-1.58)
    assert r.gap_dof == pytest.approx(17.776, abs=1e-3)
    assert (r.gap_ci_low, r.gap_ci_high) == pytest.approx((-3.3654832, 0.2054832), abs=1e-6)
    # side a's interval holds 0, side b's lies above it: only b gains
    assert r.reciprocity == "b_only"
    # both point estimates are positive: the index is their balance, whatever the category
    assert r.reciprocity_index == pytest.approx(0.75 / 2.33)
    assert r.suppressed == ""


@pytest.mark.parametrize(("a", "b", "cat", "index"), [
    ([1.0, 1.1, 0.9, 1.0], [0.5, 0.6, 0.4, 0.5], "both", 0.5),
    ([1.0, 1.1, 0.9, 1.0], [-0.5, 0.6, -0.4, 0.1], "a_only", 0.0),  # b's mean is -0.05
    ([-1.0, 1.1, -0.9, 1.0], [0.5, 0.6, 0.4, 0.5], "b_only", 0.1),  # a's mean 0.05, b's 0.5
    ([-1.0, 1.1, -0.9, 1.0], [-0.5, 0.6, -0.4, -0.1], "neither", 0.0),
    ([-1.0, -1.1, -0.9, -1.0], [-0.5, -0.6, -0.4, -0.5], "neither", 0.0),  # both lose
])
def test_every_case_has_a_category_and_an_index(a, b, cat, index) -> None:
    r = reciprocity(_gains(a, b), P1, keys=(), k=0).iloc[0]
    assert r.reciprocity == cat
    assert r.reciprocity_index == pytest.approx(index)


def test_small_or_missing_side_is_suppressed_not_dropped() -> None:
    p = pd.concat([P1, P1.assign(partnership_id="P2", institution_b="Z")], ignore_index=True)
    out = reciprocity(_gains([1.0] * 12, [0.5, 0.6] * 2), p, keys=(), k=10)
    assert out.partnership_id.tolist() == ["P1", "P2"]
    assert (out.suppressed == "n < 10").all()
    assert out[["n_a", "n_b", "mean_a", "mean_b", "gap"]].isna().all().all()
    assert out.reciprocity.isna().all()


def test_no_gains_at_all_keeps_every_partnership_suppressed() -> None:
    g = _gains([], []).assign(instrument=pd.Series(dtype="str"), scale=pd.Series(dtype="str"))
    out = reciprocity(g, P1, k=10)
    assert len(out) == 1
    r = out.iloc[0]
    assert (r.partnership_id, r.instrument, r.scale, r.suppressed) == (
        "P1", "all", "composite", "n < 10")
    assert pd.isna(r.n_a) and pd.isna(r.n_b) and pd.isna(r.reciprocity)
    assert reciprocity_shares(out, k=10).suppressed.tolist() == ["n < 10"] * 3


def test_keys_give_a_row_per_scale_and_partnership() -> None:
    g = pd.concat([_gains([1.0, 1.2, 0.9], [0.0, 0.1, -0.1]).assign(instrument="i", scale=s)
                   for s in ("s1", "s2")], ignore_index=True)
    out = reciprocity(g, P1, k=0)
    assert out[["scale", "reciprocity"]].values.tolist() == [["s1", "a_only"],
                                                             ["s2", "a_only"]]


def test_composite_is_the_mean_standardised_gain() -> None:
    g = pd.DataFrame({"unit": [1, 1, 2], "instrument": "i", "scale": ["s1", "s2", "s1"],
                      "gain": [1.0, 4.0, 2.0], "exchange_id": "X1", "institution_id": "A"})
    sd = pd.Series([2.0, 4.0], index=pd.MultiIndex.from_tuples([("i", "s1"), ("i", "s2")]))
    out = composite_gains(g, sd)
    assert out.gain.tolist() == pytest.approx([0.75, 1.0])
    assert set(out.scale) == {"composite"} and set(out.institution_id) == {"A"}


def test_from_sides_equals_from_units() -> None:
    """The derive step passes each side's n, mean and variance (summed in SQL), not its
    units: the same rows follow, including a side of one unit (no variance) and none."""
    rng = np.random.default_rng(5)
    g = pd.DataFrame({"exchange_id": "X1", "institution_id": rng.choice(["A", "B", "C"], 60),
                      "unit": range(60), "instrument": "i", "scale": rng.choice(["s1", "s2"], 60),
                      "gain": rng.normal(0.3, 1.0, 60)})
    g = pd.concat([g, pd.DataFrame({"exchange_id": ["X2"], "institution_id": ["A"],
                                    "unit": [99], "instrument": ["i"], "scale": ["s1"],
                                    "gain": [0.5]})], ignore_index=True)
    parts = pd.DataFrame({"partnership_id": ["P1", "P2", "P3"], "exchange_id": ["X1", "X1", "X2"],
                          "institution_a": ["A", "A", "A"], "institution_b": ["B", "C", "D"]})
    sides = g.groupby(["exchange_id", "institution_id", "instrument", "scale"]).gain.agg(
        n="count", mean="mean", v="var").reset_index()
    for k in (0, 10):
        pd.testing.assert_frame_equal(reciprocity_from_sides(sides, parts, k=k),
                                      reciprocity(g, parts, k=k))
    with pytest.raises(ValueError, match="sides lack column 'v'"):
        reciprocity_from_sides(sides.drop(columns="v"), parts)


def test_derive_composite_in_sql_equals_composite_gains() -> None:
    """The derive step's composite gains (SQL, shared by reciprocity, equity gaps and cost)
    are `composite_gains` of its per-scale gains on the demo."""
    import duckdb

    from analytics.derive import materialise

    wh, _ = _demo()
    con = duckdb.connect(str(wh), read_only=True)
    try:
        materialise.compute_results(con, min_cell=0, tables=["reciprocity"])
        both = con.execute(f"SELECT * FROM {materialise._gains_and_composite_sql()} g "
                           "ORDER BY unit, instrument, scale").df()
        sd = con.execute(f"""
            SELECT g.instrument, g.scale, stddev_samp(s.score) AS sd
            FROM (SELECT DISTINCT instrument, scale FROM res_scale_scores) g
            JOIN res_scale_scores s USING (instrument, scale)
            JOIN {materialise._ATTRS} a ON a.participant = s.participant
                                       AND a.exchange_id = s.exchange_id
            WHERE s.wave = 'pre' AND NOT a.is_comparison AND s.score IS NOT NULL GROUP BY ALL
        """).df().set_index(["instrument", "scale"])["sd"]
    finally:
        con.close()
    gains = both[both.scale != "composite"].reset_index(drop=True)
    sql = both[both.scale == "composite"].reset_index(drop=True)
    assert gains.groupby(["unit", "scale"]).size().max() == 1  # one gain per unit and scale
    want = composite_gains(gains, sd)
    assert len(want) == len(sql) > 1000
    assert sql.unit.tolist() == want.unit.tolist()
    assert sql.institution_id.tolist() == want.institution_id.tolist()
    # sums in another order (DuckDB aggregates in parallel): equal up to rounding
    np.testing.assert_allclose(sql.gain, want.gain, rtol=1e-10, atol=1e-12)


def test_shares_count_categories_with_wilson_interval() -> None:
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(3)
    parts, plist = [], []
    for i in range(30):
        one_sided = i % 3 == 0
        a = rng.normal(1.0, 0.3, 15)
        b = rng.normal(0.0 if one_sided else 1.0, 0.3, 15)
        parts.append(pd.DataFrame({"exchange_id": f"X{i}", "institution_id": ["A"] * 15
                                   + ["B"] * 15, "gain": np.r_[a, b]}))
        plist.append([f"P{i:02d}", f"X{i}", "A", "B", f"C{i % 2}", "virtual"])
    p = pd.DataFrame(plist, columns=["partnership_id", "exchange_id", "institution_a",
                                     "institution_b", "cluster", "modality"])
    rec = reciprocity(pd.concat(parts, ignore_index=True), p, keys=(), k=10)
    assert set(rec.loc[rec.reciprocity == "a_only", "partnership_id"]) == {
        f"P{i:02d}" for i in range(0, 30, 3)}
    sh = reciprocity_shares(rec.assign(instrument="all", scale="composite"), k=10)
    assert list(sh.columns) == SHARE_COLUMNS
    overall = sh[sh.group_by == "overall"].iloc[0]
    assert (overall.n_assessable, overall.n_both, overall.n_a_only) == (30, 20, 10)
    lo, hi = proportion_confint(20, 30, method="wilson")
    assert (overall.share_ci_low, overall.share_ci_high) == pytest.approx((lo, hi))
    assert sh[sh.group_by == "cluster"].n_partnerships.tolist() == [15, 15]


def test_wilson_matches_statsmodels_and_handles_zero() -> None:
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = wilson_interval(np.array([0, 7, 20]), np.array([10, 10, 20]))
    for x, n, a, b in zip([0, 7, 20], [10, 10, 20], lo, hi, strict=True):
        assert (a, b) == pytest.approx(proportion_confint(x, n, method="wilson"))
    assert np.isnan(wilson_interval(np.array([0]), np.array([0]))[0]).all()


# ---------------------------------------------------------------------------------------------
# The demo's planted one-sided partnerships (truth.json "reciprocity")
# ---------------------------------------------------------------------------------------------

# The 10,000-participant demo (built once per run, shared with the Partnerships browser test):
# on the 2,000-participant one a planted partnership's gaining side has 7 respondents, and
# whether its interval clears 0 is a coin toss of the demo's draws.
RECIPROCITY_DEMO = 10_000


def _demo():
    import json

    from tests.analytics_fixture import demo_warehouse

    wh = demo_warehouse(RECIPROCITY_DEMO)
    return wh, json.loads((wh.parent / "demo" / "truth.json").read_text(encoding="utf-8"))


def test_demo_one_sided_partnerships_are_recovered() -> None:
    """The list of one-sided partnerships (composite gain) holds every planted one, as
    'a_only' (side b gains nothing by the plant), at k = 5 so that small sides are assessed
    too; the stored table (k = 10) is checked below."""
    import duckdb

    from analytics.derive import materialise

    wh, truth = _demo()
    planted = {p["partnership_id"] for p in truth["reciprocity"]["one_sided"]}
    assert len(planted) == 3
    con = duckdb.connect(str(wh), read_only=True)
    try:
        res = materialise.compute_results(con, min_cell=5, tables=["reciprocity",
                                                                   "reciprocity_shares"])
    finally:
        con.close()
    rec = res.tables["reciprocity"]
    comp = rec[rec.scale == "composite"]
    one_sided = set(comp.loc[comp.reciprocity.isin(["a_only", "b_only"]), "partnership_id"])
    assert planted <= one_sided
    mine = comp[comp.partnership_id.isin(planted)]
    assert (mine.reciprocity == "a_only").all()
    # The flat side's point estimate is noise around 0, so the balance of the two is near 0
    # (exactly 0 when that noise is negative), far below the reciprocal partnerships'.
    both = comp[comp.reciprocity == "both"].reciprocity_index
    assert (mine.reciprocity_index < 0.25).all() and both.median() > 0.5
    # the flat side's interval covers its true gain of 0; the gaining side's lies above 0
    assert ((mine.ci_low_b < 0) & (mine.ci_high_b > 0)).all() and (mine.ci_low_a > 0).all()
    # most unplanted assessable partnerships are reciprocal (the demo's gains are real)
    other = comp[~comp.partnership_id.isin(planted) & comp.reciprocity.notna()]
    assert (other.reciprocity == "both").mean() > 0.6
    sh = res.tables["reciprocity_shares"]
    overall = sh[(sh.scale == "composite") & (sh.group_by == "overall")].iloc[0]
    assert overall.n_partnerships == truth["counts"]["partnerships"]
    assert overall.n_a_only + overall.n_b_only == len(one_sided)


def test_demo_stored_reciprocity_keeps_every_partnership_and_suppresses_small_sides() -> None:
    import duckdb

    wh, truth = _demo()
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rec = con.execute("SELECT * FROM res_reciprocity WHERE scale = 'composite'").df()
        sh = con.execute("SELECT * FROM res_reciprocity_shares").df()
    finally:
        con.close()
    assert rec.partnership_id.nunique() == len(rec) == truth["counts"]["partnerships"]
    small = rec[rec.suppressed == "n < 10"]
    assert len(small) and small[["n_a", "n_b", "mean_a", "mean_b", "gap"]].isna().all().all()
    assert small.reciprocity.isna().all()
    shown = rec[rec.suppressed == ""]
    assert (shown[["n_a", "n_b"]].min(axis=1) >= 10).all()
    assert set(sh.group_by) == {"overall", "cluster", "modality"}
