"""Issue 10 §2 through a load: res_balance and res_comparison on the demo program, their
suppression, their codebook, and the documented meaning of the comparison arm's modality.

The derive step is checked against an independent route (the mean changes and SMDs recomputed
here from res_scale_scores and the contract tables) and against the demo's known truth."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from analytics import estimands
from analytics.derive import materialise
from analytics.outputs import codebook
from analytics.stats.comparison import METHOD_ANCOVA, METHOD_RAW, smd_mean
from etl import schema
from tests.analytics_fixture import demo_warehouse
from tests.program import ROOT


@pytest.fixture(scope="module")
def demo() -> Path:
    return demo_warehouse()


def _read(wh: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def _changes(wh: Path) -> pd.DataFrame:
    """Per participant x exchange x scale: post − pre and the arm, straight from the stored
    scale scores and the participants table (not through the derive step's code)."""
    return _read(wh, """
        SELECT s.instrument, s.scale, s.participant, s.exchange_id,
               coalesce(p.comparison, FALSE) AS comparison,
               max(score) FILTER (wave = 'pre') AS pre, max(score) FILTER (wave = 'post') AS post
        FROM res_scale_scores s JOIN participants p ON p.participant_id = s.participant
        WHERE s.score IS NOT NULL GROUP BY ALL
    """)


def test_tables_are_stored_with_their_schema(demo: Path) -> None:
    for t in (schema.RES_BALANCE, schema.RES_COMPARISON):
        cols = _read(demo, f"SELECT * FROM {t.name} LIMIT 0").columns.tolist()
        assert cols == t.column_names
    cmp_ = _read(demo, "SELECT * FROM res_comparison")
    per_scale = cmp_.groupby(["instrument", "scale"])["method"].apply(list)
    assert (per_scale.apply(lambda m: m == [METHOD_RAW, METHOD_ANCOVA])).all()
    assert len(per_scale) == 9


def test_raw_difference_is_the_difference_in_mean_change_and_covers_the_truth(demo: Path
                                                                               ) -> None:
    ch = _changes(demo).dropna(subset=["pre", "post"])
    ch["change"] = ch["post"] - ch["pre"]
    cmp_ = _read(demo, "SELECT * FROM res_comparison").set_index(["instrument", "scale",
                                                                  "method"])
    truth = json.loads((demo.parent / "demo" / "truth.json").read_text())["effects"]
    covered = adj_covered = total = 0
    for (inst, sc), g in ch.groupby(["instrument", "scale"]):
        raw = cmp_.loc[(inst, sc, METHOD_RAW)]
        want = g.loc[~g.comparison, "change"].mean() - g.loc[g.comparison, "change"].mean()
        assert raw["estimate"] == pytest.approx(want, rel=1e-9)
        assert raw["n_participant"] == int((~g.comparison).sum())
        assert raw["n_comparison"] == int(g.comparison.sum())
        assert raw["n_clusters"] == g["exchange_id"].nunique()
        assert raw["few_clusters"] == (raw["n_clusters"] < 10)
        # the truth: expected observed change per group, weighted by the pairs per modality
        eff = truth[inst][sc]
        n = eff["n"]["pre_post"]
        exp = eff["expected_observed_diff"]["post_minus_pre"]
        part = sum(n[m] * exp[m] for m in ("virtual", "blended", "physical")) / sum(
            n[m] for m in ("virtual", "blended", "physical"))
        true_did = part - exp["comparison"]
        total += 1
        covered += raw["ci_low_cr2"] <= true_did <= raw["ci_high_cr2"]
        adj = cmp_.loc[(inst, sc, METHOD_ANCOVA)]
        adj_covered += adj["ci_low_cr2"] <= true_did <= adj["ci_high_cr2"]
        assert adj["adjusted_for"].startswith("pre score")
    # the demo's comparison group is a random 10% of people: both estimate the same effect
    assert covered >= total - 1 and adj_covered >= total - 1, (covered, adj_covered, total)


def test_balance_rows_recomputed_from_the_scores_and_the_contract(demo: Path) -> None:
    ch = _changes(demo).dropna(subset=["pre"])
    bal = _read(demo, "SELECT * FROM res_balance")
    for (inst, sc), g in ch.groupby(["instrument", "scale"]):
        row = bal[(bal.covariate == "pre_score") & (bal.instrument == inst)
                  & (bal.scale == sc)].iloc[0]
        assert row["smd"] == pytest.approx(smd_mean(g.loc[~g.comparison, "pre"],
                                                    g.loc[g.comparison, "pre"]), rel=1e-9)
        assert bool(row["imbalanced"]) == (abs(row["smd"]) > 0.1)
    assert set(bal.covariate) == {"pre_score", *materialise.COMPARISON_COVARIATES}
    # role among the units with any pre score, from the participants table
    units = ch[["participant", "exchange_id", "comparison"]].drop_duplicates(
        ["participant", "exchange_id"])
    roles = _read(demo, "SELECT participant_id AS participant, role FROM participants")
    units = units.merge(roles, on="participant")
    teacher = bal[(bal.covariate == "role") & (bal.level == "teacher")].iloc[0]
    assert teacher["n_participant"] == int((~units.comparison).sum())
    assert teacher["value_participant"] == pytest.approx(
        (units.loc[~units.comparison, "role"] == "teacher").mean(), rel=1e-12)
    assert teacher["value_comparison"] == pytest.approx(
        (units.loc[units.comparison, "role"] == "teacher").mean(), rel=1e-12)


def test_small_cells_are_blanked_and_say_why(demo: Path) -> None:
    bal = _read(demo, "SELECT * FROM res_balance")
    small = bal[bal.suppressed != ""]
    assert len(small), "the demo has covariate levels with fewer than 10 people in an arm"
    numbers = ["n_participant", "n_comparison", "value_participant", "value_comparison",
               "sd_participant", "sd_comparison", "smd", "imbalanced"]
    assert (small.suppressed == "n < 10").all() and small[numbers].isna().all().all()
    con = duckdb.connect(str(demo), read_only=True)
    try:  # unsuppressed (k = 0), the same rows have numbers and cells under 10
        open_ = materialise.compute_results(con, min_cell=0, tables=["balance"]).tables[
            "balance"]
    finally:
        con.close()
    key = ["covariate", "instrument", "scale", "level"]
    both = small[key].merge(open_, on=key)
    assert len(both) == len(small) and both["value_comparison"].notna().all()
    counts = np.minimum.reduce([
        both.value_participant * both.n_participant, both.value_comparison * both.n_comparison,
        (1 - both.value_participant) * both.n_participant,
        (1 - both.value_comparison) * both.n_comparison])
    smallest = np.where(counts.round() > 0, counts.round(), np.inf)
    assert (np.minimum(smallest, both[["n_participant", "n_comparison"]].min(axis=1)) < 10).all()


def test_codebook_and_exports_carry_both_tables_and_their_assumptions() -> None:
    for table in ("balance", "comparison"):
        assert table in codebook.EXPORT_TABLES
        for col in codebook.export_columns(table):
            assert col.doc, (table, col.name)
    assert "Austin 2009" in codebook.METHODS["balance"]
    m = codebook.METHODS["comparison"]
    assert estimands.DID_ASSUMPTION in m and estimands.ANCOVA_ASSUMPTION in m
    assert "CR2" in m and "Satterthwaite" in m and "Imbens" in m


# --- what the comparison arm's modality means (issue 10 §2, last point) -------------------------

def test_comparison_modality_is_the_matched_exchanges_and_the_docs_say_so(demo: Path) -> None:
    """Decision: the model keeps modality terms for the comparison arm, and they mean the
    modality of the exchange the comparison class was matched to (a matching stratum). Undoing
    it (dropping the terms, or giving comparison people no modality) fails here, and so does a
    codebook, README or model note that stops saying it."""
    con = duckdb.connect(str(demo), read_only=True)
    try:
        attrs = materialise.group_attributes(con)
        ex = con.execute("SELECT exchange_id, modality FROM exchanges").df()
        lon = con.execute("SELECT term FROM res_longitudinal").df()
    finally:
        con.close()
    comp = attrs[attrs.is_comparison & attrs.exchange_id.notna()].merge(
        ex, on="exchange_id", suffixes=("", "_of_exchange"))
    assert len(comp) and (comp["modality"] == comp["modality_of_exchange"]).all()
    # the fitted model has the comparison arm's modality strata: did per modality
    terms = set(lon.term)
    assert {f"did[post-pre|modality={m}]" for m in ("virtual", "blended")} <= terms
    assert "matching stratum" in estimands.COMPARISON_MODALITY
    assert estimands.COMPARISON_MODALITY in codebook.METHODS["longitudinal"]
    assert estimands.COMPARISON_MODALITY in codebook.DESCRIPTIONS["longitudinal"]["term"]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "the modality of the exchange its class was matched to (a matching stratum)" in readme


def test_the_pages_filtered_comparison_is_cr2_from_the_rollups_and_the_day_facts(demo: Path
                                                                                ) -> None:
    """The Outcomes table's CR2 interval, computed from per exchange x arm sums (rollups, or
    the day facts under a date filter), equals `cr2_ols` on the participants' own gains."""
    from analytics.read import outcomes
    from analytics.read.filters import Filters
    from analytics.stats.comparison import cr2_ols

    ch = _changes(demo).dropna(subset=["pre", "post"])
    con = duckdb.connect(str(demo), read_only=True)
    try:
        cur = con.cursor()
        via_rollup = outcomes._comparison_difference_rollup(cur, Filters())
        via_days = outcomes._comparison_difference_days(cur, Filters())
    finally:
        con.close()
    assert len(via_rollup) == 9
    for df in (via_rollup, via_days):
        for r in df.itertuples(index=False):
            g = ch[(ch.instrument == r.instrument) & (ch.scale == r.scale)]
            X = np.column_stack([np.ones(len(g)), ~g.comparison.to_numpy(bool)]).astype(float)
            ref = cr2_ols(X, (g.post - g.pre).to_numpy(float), g.exchange_id.to_numpy()).iloc[1]
            assert r.diff == pytest.approx(ref["estimate"], rel=1e-9)
            for c in ("se_cr2", "df_cr2", "ci_low_cr2", "ci_high_cr2", "p_cr2"):
                assert getattr(r, c) == pytest.approx(ref[c], rel=1e-8), c
            assert r.n_clusters == ref["n_clusters"]
            # the Welch interval (participants independent) is another interval
            assert r.ci_low != pytest.approx(r.ci_low_cr2, rel=1e-3)
