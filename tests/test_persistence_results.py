"""The persistence tables of the demo warehouse (analytics.derive.persistence): the Cox model
recovers the planted cross-border hazard ratio, durations and censoring match the partnership
file read independently, and small groups are suppressed, not dropped."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pycountry
import pytest

from analytics.derive import persistence as dp
from analytics.stats import persistence as ps
from tests.analytics_fixture import demo_warehouse


@pytest.fixture(scope="module")
def warehouse():
    wh = demo_warehouse()
    truth = json.loads((wh.parent / "demo" / "truth.json").read_text(encoding="utf-8"))
    con = duckdb.connect(str(wh), read_only=True)
    yield con, truth, wh.parent / "demo"
    con.close()


def test_cox_interval_covers_the_planted_cross_border_hazard_ratio(warehouse) -> None:
    con, truth, _ = warehouse
    cox = con.execute("SELECT * FROM res_persistence_cox WHERE model = "
                      "'partnership_cross_border' AND term = 'kind'").df()
    assert len(cox) == 1
    r = cox.iloc[0]
    planted = truth["partnerships"]["hazard_ratio_cross_border"]
    assert planted == 2.0
    assert (r.level, r.reference) == ("cross-border", "domestic")
    assert r.ci_low < planted < r.ci_high
    assert r.hr > 1 and r.ci_low > 1  # the demo's cross-border links do fade faster
    assert r.se_kind.startswith("robust") and bool(r.converged)


def test_durations_and_censoring_match_the_partnership_file(warehouse) -> None:
    con, truth, demo = warehouse
    units = dp.partnership_units(con)
    src = pd.read_csv(demo / "partnerships.csv", dtype=str, keep_default_na=False,
                      na_values=[""])
    inst = pd.read_csv(demo / "institutions.csv", dtype=str)
    country = inst.set_index("institution_id")["country"].map(
        lambda c: pycountry.countries.lookup(c).alpha_3)
    data_end = pd.Timestamp(units["data_end"].iloc[0])
    assert data_end <= pd.Timestamp(truth["as_of"])
    end = pd.to_datetime(src["ended_on"]).fillna(data_end).clip(upper=data_end)
    expect = pd.DataFrame({
        "partnership_id": src["partnership_id"],
        "days": (end - pd.to_datetime(src["started_on"])).dt.days.astype(float),
        "ended": pd.to_datetime(src["ended_on"]).le(data_end),
        "kind": (src["institution_a"].map(country) == src["institution_b"].map(country)).map(
            {True: "domestic", False: "cross-border"}),
    }).sort_values("partnership_id").reset_index(drop=True)
    got = units[["partnership_id", "days", "ended", "kind"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.astype({"partnership_id": str, "kind": str}),
                                  expect.astype({"partnership_id": str, "kind": str}),
                                  check_dtype=False)
    stored = con.execute("SELECT * FROM res_persistence WHERE subject = 'partnership' "
                         "AND group_by = 'kind' ORDER BY \"group\"").df()
    assert stored["n"].tolist() == [int((expect.kind == g).sum())
                                    for g in ("cross-border", "domestic")]
    assert stored["ended"].sum() == expect["ended"].sum()
    assert stored["logrank_p"].nunique() == 1 and stored["logrank_p"].iloc[0] < 0.05


def test_tables_cover_every_grouping_and_participants(warehouse) -> None:
    con, _, _ = warehouse
    seen = set(con.execute("SELECT DISTINCT subject || ':' || group_by "
                           "FROM res_persistence_curves").df().iloc[:, 0])
    assert seen == {"partnership:overall", "partnership:kind", "partnership:modality",
                    "partnership:cluster", "partnership:link", "participant:overall",
                    "participant:modality", "participant:setting"}
    part = con.execute("SELECT * FROM res_persistence WHERE subject = 'participant'").df()
    assert (part["unit"] == "weeks").all() and part.loc[part.group_by == "overall", "n"].iloc[0] > 0
    pc = con.execute("SELECT * FROM res_persistence_cox WHERE model = 'participant'").df()
    assert set(pc.term) == {"modality", "setting"} and pc.converged.all()
    links = con.execute("SELECT * FROM res_partnership_links").df()
    assert set(links.link) <= {ps.LINK_SEVERAL, ps.LINK_ONE, ps.LINK_UNKNOWN}
    assert (links.definition == ps.LINK_DEFINITION).all()
    assert links.loc[links.suppressed == "", "n"].sum() > 0


def test_small_groups_are_blanked_and_kept(warehouse) -> None:
    con, _, _ = warehouse
    out = dp.compute(con, 30)
    s = out["persistence"]
    small = s[(s.subject == "partnership") & (s.group_by == "cluster") & (s.suppressed != "")]
    assert len(small) > 0  # the demo's clusters hold 14-29 partnerships: some are under 30
    assert small["n"].isna().all() and small["median"].isna().all()
    curves = out["persistence_curves"]
    hidden = curves[curves.group.isin(small.group) & (curves.group_by == "cluster")]
    assert len(hidden) and hidden["survival"].isna().all() and hidden["n"].isna().all()
    assert hidden["time"].notna().all()
    everything = dp.compute(con, 0)["persistence"]
    assert (everything.suppressed == "").all()
    assert len(everything) == len(s)


def test_link_classification_uses_teachers_of_both_sides() -> None:
    kinds = ps.link_kind(pd.Series([2, 2, 1, 0, 5]), pd.Series([3, 1, 1, 4, 0]))
    assert kinds.tolist() == [ps.LINK_SEVERAL, ps.LINK_ONE, ps.LINK_ONE, ps.LINK_UNKNOWN,
                              ps.LINK_UNKNOWN]


def test_empty_warehouse_tables_give_empty_results(tmp_path) -> None:
    from etl import schema

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    for t in schema.TABLES.values():
        con.execute(schema.ddl(t))
    out = dp.compute(con, 10)
    assert set(out) == {"persistence_curves", "persistence", "persistence_cox",
                        "partnership_links"}
    assert out["partnership_links"].empty
    assert out["persistence"].empty and out["persistence_curves"].empty
    assert out["persistence_cox"].empty


def test_partnerships_page_draws_the_chosen_grouping(warehouse, monkeypatch) -> None:
    import dash

    from analytics.read import filters

    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(demo_warehouse()))
    if not dash.page_registry:
        dash.Dash(__name__, use_pages=True, pages_folder="")
    import pages.partnerships as page

    fig, groups = page.persistence_by_group("partnership:kind", None)
    names = [t["name"] for t in fig.data if t.get("name")]
    assert any(n.startswith("cross-border") for n in names)
    assert any(n.startswith("domestic") for n in names)
    assert "Log-rank test: χ²" in str(groups)
    fig2, _ = page.persistence_by_group("participant:setting", None)
    assert {n.split(" (")[0] for n in (t.get("name") for t in fig2.data) if n} == {
        "curricular", "extracurricular"}
    cox, links = page.persistence_models(None)
    assert "cross-border" in str(cox) and "hazard ratio" in str(cox)
    assert "teacher" in str(links)
    assert "partnership:link" in filters.PERSISTENCE_GROUPINGS
    assert filters.view_query("/partnerships", {"persist": "participant:setting"}) == (
        "persist=participant%3Asetting")


def test_the_dashboard_curve_and_the_stored_results_censor_on_the_same_day(warehouse) -> None:
    """The Partnerships page's filtered curve (read layer) and res_persistence censor still-
    active partnerships at the same data end date, so on the whole program their Kaplan–Meier
    medians by kind agree (they differed when the page censored 'today')."""
    from analytics.read import partnerships
    from analytics.read.filters import Filters

    con, _, _ = warehouse
    cur = con.cursor()
    summary = partnerships.partnership_summary(cur, Filters())
    stored = con.execute("SELECT \"group\", median, n FROM res_persistence WHERE subject = "
                         "'partnership' AND group_by = 'kind'").fetchall()
    assert {g for g, _, _ in stored} == set(summary.kind) == {"domestic", "cross-border"}
    for kind, median, n in stored:
        row = summary[summary.kind == kind].iloc[0]
        assert row.n == n
        if median is None or pd.isna(median):
            assert pd.isna(row.median_km)
        else:
            assert row.median_km == pytest.approx(median)
