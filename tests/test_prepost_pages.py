"""The pages show the design-aware (CR2, clustered by exchange) interval of the pre/post mean
change, the number of exchanges and the few-clusters flag, with labels that say which CI
(issue 10 §1). Callbacks are called directly on the demo warehouse (no browser)."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from analytics.read.filters import Filters
from tests.analytics_fixture import demo_warehouse


@pytest.fixture(scope="module")
def pages():
    import os

    path = demo_warehouse()
    old = os.environ.get("EXCHANGE_IMPACT_WAREHOUSE")
    os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = str(path)
    import app  # noqa: F401  (registers the pages)
    from pages import outcomes, overview

    yield path, outcomes, overview
    if old is None:
        os.environ.pop("EXCHANGE_IMPACT_WAREHOUSE", None)
    else:
        os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = old


def _call(fn, *args):
    return getattr(fn, "__wrapped__", fn)(*args)


def test_outcomes_mean_change_whiskers_are_the_cr2_interval(pages) -> None:
    path, outcomes, _ = pages
    con = duckdb.connect(str(path), read_only=True)
    try:
        pp = con.execute("SELECT * FROM res_prepost WHERE group_by = 'modality' "
                         "AND suppressed = ''").df()
    finally:
        con.close()
    row = pp.iloc[0]
    fig, _, note = _call(outcomes.forest, "modality", "diff", f"{row.instrument}/{row.scale}")
    assert "clustered by exchange, CR2" in fig["layout"]["xaxis"]["title"]["text"]
    tr = next(t for t in fig["data"] if str(row.group) in [str(y) for y in t["y"]])
    i = [str(y) for y in tr["y"]].index(str(row.group))
    assert tr["x"][i] == pytest.approx(row["diff"])
    assert tr["error_x"]["array"][i] == pytest.approx(row.diff_ci_high_cr2 - row["diff"])
    assert tr["error_x"]["arrayminus"][i] == pytest.approx(row["diff"] - row.diff_ci_low_cr2)
    text = str(note)
    assert "CR2" in text and "Exchanges per group" in text
    few = pp[pp.few_clusters.astype(bool)]
    if len(few):  # the demo's 7 physical exchanges
        assert "Fewer than 10 exchanges" in text and str(few.group.iloc[0]) in text


def test_overview_hover_and_note_give_the_clustered_ci_and_exchange_count(pages) -> None:
    _, _, overview = pages
    store = {"filters": Filters().to_dict(), "query": Filters().to_query()}
    fig, _, note = _call(overview.outcome_changes, store)
    tr = fig["data"][0]
    assert "clustered by exchange, CR2" in tr["hovertemplate"]
    assert "exchanges" in tr["hovertemplate"]
    assert "clustered by exchange" in fig["layout"]["title"]["text"]
    assert "noncentral" not in fig["layout"]["title"]["text"]
    assert "clustered by exchange" in str(note) and "CR2" in str(note)
    # the whiskers are the design-aware interval of g, not the one that treats people as
    # independent (issue 10: pages show the design-aware columns)
    path, _, _ = pages
    con = duckdb.connect(str(path), read_only=True)
    try:
        pp = con.execute("SELECT * FROM res_prepost WHERE group_by = 'overall' "
                         "AND suppressed = ''").df()
    finally:
        con.close()
    g = np.asarray(tr["x"], dtype=float)
    hi = g + np.asarray(tr["error_x"]["array"], dtype=float)
    lo = g - np.asarray(tr["error_x"]["arrayminus"], dtype=float)
    for x, a, b in zip(g, lo, hi, strict=True):
        row = pp.iloc[int(np.argmin(np.abs(pp["hedges_g"].to_numpy() - x)))]
        s_av = row["diff"] / row["d_av"]
        assert a == pytest.approx(row.hedges_g_ci_low_cr2) and b == pytest.approx(
            row.hedges_g_ci_high_cr2)
        assert a == pytest.approx(row.diff_ci_low_cr2 / s_av)
        assert b == pytest.approx(row.diff_ci_high_cr2 / s_av)
        assert b - a > row.hedges_g_ci_high - row.hedges_g_ci_low  # wider: the design counts


def test_filtered_wave_means_and_group_gains_carry_the_cr2_interval_of_the_raw_rows(pages):
    """The filtered pages' means (Outcomes wave means, Equity gains by group) are computed from
    per-exchange cells; their CR2 interval equals `cr2_mean` on the participants' own rows."""
    from analytics.read import cache, equity, outcomes
    from analytics.stats.prepost import cr2_mean
    from etl.warehouse import Reader

    path, _, _ = pages
    cache.clear_cache()
    reader = Reader(path)
    try:
        cur = reader.cursor()
        raw = cur.execute("""
            SELECT s.participant, s.instrument, s.scale, s.wave, s.exchange_id, s.score,
                   p.gender, p.comparison, x.modality
            FROM res_scale_scores s JOIN participants p ON p.participant_id = s.participant
            JOIN exchanges x USING (exchange_id) WHERE s.score IS NOT NULL""").df()
        raw = raw[~raw.comparison.astype(bool)]
        for f in (Filters(), Filters(modality=("virtual", "blended"))):
            mine = raw[raw.modality.isin(f.modality)] if f.modality else raw
            wm = outcomes.wave_means(cur, f)
            row = wm[~wm.suppressed & ~wm.comparison.astype(bool)].iloc[0]
            r = mine[(mine.instrument == row.instrument) & (mine.scale == row.scale)
                     & (mine.wave == row.wave)]
            want = cr2_mean(r.score.to_numpy(float), r.exchange_id.to_numpy(object))
            assert row.n == len(r) and row.n_clusters == want["n_clusters"]
            assert row.ci_low_cr2 == pytest.approx(want["diff_ci_low_cr2"], rel=1e-9)
            assert row.ci_high_cr2 == pytest.approx(want["diff_ci_high_cr2"], rel=1e-9)
            assert row.ci_high_cr2 - row.ci_low_cr2 > row.ci_high - row.ci_low

            gg = equity.gains_by_group(cur, f, "gender")
            g = gg[~gg.suppressed].iloc[0]
            w = mine[(mine.instrument == g.instrument) & (mine.scale == g.scale)]
            wide = w.pivot_table(index=["participant", "exchange_id", "gender"],
                                 columns="wave", values="score").reset_index()
            wide = wide[(wide.gender == g.group)].dropna(subset=["pre", "post"])
            want = cr2_mean((wide.post - wide.pre).to_numpy(float),
                            wide.exchange_id.to_numpy(object))
            assert g.n == len(wide) and g.n_clusters == want["n_clusters"]
            assert g.ci_low_cr2 == pytest.approx(want["diff_ci_low_cr2"], rel=1e-9)
            assert g.ci_high_cr2 == pytest.approx(want["diff_ci_high_cr2"], rel=1e-9)
    finally:
        reader.close()
