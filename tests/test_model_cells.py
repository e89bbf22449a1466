"""Small cells in the longitudinal model table (issue 10, section 6).

The model table (res_longitudinal, built by `analytics.derive.materialise._longitudinal`) must
not show an estimate that rests on an arm x wave x modality cell with fewer than k participants,
and no single published number, nor the sum or difference of two, may equal a small cell's mean.

The programs are built here as scored frames (one row per participant x wave with a score), so
that the small cell is known by construction. Where the data are balanced (every participant of
a cell scored in both waves), the REML fixed effects of the saturated model reproduce the
observed cell means exactly, so a leak would be an exact equality; where a cell is small in one
wave only, the data are built so that the GLS estimate of that cell still equals its observed
mean (the few who answered both waves have the same mean in the other wave as their whole
cell), which makes the leak exact too. Each scenario first checks that with k = 0 (nothing
suppressed) the leak is there, so that the test cannot pass by building harmless data.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from analytics.derive import materialise as m

K = 10
BIG = 30
SMALL = 3
STATS = ["estimate", "se", "ci_low", "ci_high", "p"]


def _program(cells: dict[tuple[str, bool], tuple[int, int]], *, seed: int = 7) -> pd.DataFrame:
    """Scored frame: cells maps (modality, is_comparison) to (n scored at pre, n at post).

    The participants scored in both waves are the first min(n_pre, n_post) of the cell; the
    scores of the wave with more people are shifted so that its mean equals the mean of those
    in both waves (then the REML cell means equal the observed ones)."""
    rng = np.random.default_rng(seed)
    rows = []
    pid = 0
    for ci, ((mod, comp), (n_pre, n_post)) in enumerate(sorted(cells.items())):
        n = max(n_pre, n_post)
        both = min(n_pre, n_post)
        base = rng.normal(3.0 + 0.3 * ci, 0.6, n)
        gain = 0.0 if comp else 0.5 + 0.1 * ci
        pre = base + rng.normal(0, 0.4, n)
        post = base + gain + rng.normal(0, 0.4, n)
        if n_pre > both:
            pre[both:] += pre[:both].mean() - pre[both:].mean()
        if n_post > both:
            post[both:] += post[:both].mean() - post[both:].mean()
        for i in range(n):
            part = f"p{pid}"
            pid += 1
            for wave, scores, n_w in (("pre", pre, n_pre), ("post", post, n_post)):
                if i < n_w:
                    rows.append({"participant": part, "exchange_id": f"x{ci}-{i % 3}",
                                 "instrument": "inst", "scale": "sc", "wave": wave,
                                 "score": float(scores[i]), "is_comparison": comp,
                                 "modality": mod, "cluster": f"c{i % 4}"})
    return pd.DataFrame(rows)


def _cell_means(scored: pd.DataFrame) -> pd.DataFrame:
    g = scored.groupby(["wave", "modality", "is_comparison"])
    return pd.DataFrame({"n": g["participant"].nunique(), "mean": g["score"].mean()})


def _leaks(table: pd.DataFrame, small_means: np.ndarray) -> list[str]:
    """Every published estimate, and every sum and difference of two, that equals a small
    cell's observed mean to 1e-6."""
    pub = table[table["estimate"].notna()]
    names = pub["term"].tolist()
    est = pub["estimate"].to_numpy(float)
    found = []
    for i, name in enumerate(names):
        if np.isclose(est[i], small_means, rtol=0, atol=1e-6).any():
            found.append(name)
    for i, j in itertools.combinations(range(len(names)), 2):
        for sign, op in ((1, "+"), (-1, "-")):
            for a, b in ((i, j), (j, i)) if sign < 0 else ((i, j),):
                if np.isclose(est[a] + sign * est[b], small_means, rtol=0, atol=1e-6).any():
                    found.append(f"{names[a]} {op} {names[b]}")
    return found


# (modality, is_comparison) -> (n at pre, n at post); the small cell(s) of each scenario
SCENARIOS = {
    # the example: 3 physical comparison participants
    "physical comparison": {("online", False): (BIG, BIG), ("physical", False): (BIG, BIG),
                            ("online", True): (BIG, BIG), ("physical", True): (SMALL, SMALL)},
    "physical participants": {("online", False): (BIG, BIG), ("physical", False): (SMALL, SMALL),
                              ("online", True): (BIG, BIG), ("physical", True): (BIG, BIG)},
    "reference cell": {("online", False): (BIG, BIG), ("physical", False): (BIG, BIG),
                       ("online", True): (SMALL, SMALL), ("physical", True): (BIG, BIG)},
    # a follow-up style cell: many comparison people at pre, few at post
    "post comparison": {("online", False): (BIG, BIG), ("physical", False): (BIG, BIG),
                        ("online", True): (BIG, SMALL), ("physical", True): (BIG, BIG)},
    # one modality only; the comparison arm's pre cell is the small one (the reference cell):
    # emm[wave=post|arm=comparison] - wave[T.post] would be its mean
    "late comparison, one modality": {("online", False): (BIG, BIG),
                                      ("online", True): (SMALL, BIG)},
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_published_number_or_pair_reveals_a_small_cell(name: str) -> None:
    scored = _program(SCENARIOS[name])
    cells = _cell_means(scored)
    small = cells.loc[cells["n"] < K, "mean"].to_numpy()
    assert len(small) >= 1
    open_table, _ = m._longitudinal(scored, 0)
    assert _leaks(open_table, small), "the data must leak when nothing is suppressed"
    table, models = m._longitudinal(scored, K)
    assert models["inst.sc"].startswith("score ~ wave")
    assert _leaks(table, small) == []
    # something is still published: suppression is per estimate, not the whole model
    assert table["estimate"].notna().any()


def test_each_row_is_counted_on_its_own_cells() -> None:
    """3 comparison participants with a post score out of 30 with a pre score: the model
    counts 30 comparison people (any wave), yet every row on the post comparison cell is
    blanked and the rows on other cells are kept."""
    table, _ = m._longitudinal(_program(SCENARIOS["post comparison"]), K)
    t = table.set_index("term")
    assert int(t["n_participants"].iloc[0]) == 4 * BIG  # counts anyone with any wave
    blanked = ["emm[wave=post|arm=comparison]", "contrast[post-pre|arm=comparison]",
               "did[post-pre]", "did[post-pre|modality=online]", "wave[T.post]",
               "wave[T.post]:arm[T.participant]", "wave[T.post]:modality[T.physical]",
               "wave[T.post]:modality[T.physical]:arm[T.participant]"]
    kept = ["Intercept", "arm[T.participant]", "modality[T.physical]", "emm[wave=pre]",
            "emm[wave=post]", "contrast[post-pre]", "emm[wave=post|modality=online]",
            "emm[wave=pre|arm=comparison]", "did[post-pre|modality=physical]",
            "var_participant", "var_residual", "icc_participant", "icc_exchange"]
    assert t.loc[blanked, STATS].isna().all().all()
    assert (t.loc[blanked, "suppressed"] == f"n < {K}").all()  # the reason is stated
    assert t.loc[kept, "estimate"].notna().all()
    assert (t.loc[kept, "suppressed"] == "").all()
    assert t.loc[[x for x in kept if not x.startswith(("var_", "icc_"))], STATS].notna().all().all()
    # k = 0 blanks nothing; n_participants, n_obs and converged are never blanked
    open_table, _ = m._longitudinal(_program(SCENARIOS["post comparison"]), 0)
    assert open_table.drop(columns=["se", "ci_low", "ci_high", "p"]).notna().all().all()
    assert (open_table["suppressed"] == "").all()
    assert table[["n_participants", "n_obs", "converged"]].notna().all().all()


LEVELS = {"wave": ["pre", "post", "followup"], "modality": ["online", "physical"],
          "arm": ["comparison", "participant"]}


def _cells(*spec: tuple[list[str], list[str], list[str]]) -> set[tuple[str, ...]]:
    return {c for s in spec for c in itertools.product(*s)}


W, MOD, ARM = LEVELS["wave"], LEVELS["modality"], LEVELS["arm"]


@pytest.mark.parametrize(("term", "cells"), [
    ("Intercept", _cells((["pre"], ["online"], ["comparison"]))),
    # enters every physical cell; defined by pre x {online, physical} x comparison
    ("modality[T.physical]", _cells((W, ["physical"], ARM),
                                    (["pre"], ["online", "physical"], ["comparison"]))),
    ("wave[T.followup]:arm[T.participant]",
     _cells((["followup"], MOD, ["participant"]),
            (["pre", "followup"], ["online"], ["comparison", "participant"]))),
    ("emm[wave=followup]", _cells((["followup"], MOD, ["participant"]))),
    ("emm[wave=post|modality=physical]", _cells((["post"], ["physical"], ["participant"]))),
    ("emm[wave=pre|arm=comparison]", _cells((["pre"], MOD, ["comparison"]))),
    ("contrast[followup-pre]", _cells((["followup", "pre"], MOD, ["participant"]))),
    ("contrast[post-pre|modality=online]", _cells((["post", "pre"], ["online"], ["participant"]))),
    ("contrast[post-pre|arm=comparison]", _cells((["post", "pre"], MOD, ["comparison"]))),
    ("did[followup-pre]", _cells((["followup", "pre"], MOD, ARM))),
    ("did[post-pre|modality=physical]", _cells((["post", "pre"], ["physical"], ARM))),
    ("var_participant", None), ("var_residual", None), ("icc_participant", None),
    ("icc_cluster", None), ("var_exchange", None), ("icc_exchange", None),
    ("some_new_row", _cells((W, MOD, ARM))),
])
def test_the_cells_each_kind_of_row_rests_on(term: str, cells: set | None) -> None:
    assert m._term_cells(term, LEVELS) == cells


def test_the_cells_of_a_simpler_design() -> None:
    """wave * arm (no modality): cells are wave x arm."""
    levels = {"wave": ["pre", "post"], "arm": ["comparison", "participant"]}
    assert m._term_cells("emm[wave=post|arm=comparison]", levels) == {("post", "comparison")}
    assert m._term_cells("wave[T.post]", levels) == {
        ("post", "comparison"), ("post", "participant"), ("pre", "comparison")}
    assert m._term_cells("did[post-pre]", levels) == set(itertools.product(
        ["post", "pre"], ["comparison", "participant"]))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_published_rows_do_not_move_with_the_small_cell(name: str) -> None:
    """Shifting every score of the small cell by a constant changes its mean and nothing else
    of the data that a row on other cells can see (in these programs the REML fit of the other
    cells and the variance components stay the same), so every published row must stay put:
    they carry no information about the small cell, in any combination."""
    scored = _program(SCENARIOS[name])
    cells = _cell_means(scored)
    small = cells.index[cells["n"] < K]
    key = pd.MultiIndex.from_frame(scored[["wave", "modality", "is_comparison"]])
    shifted = scored.assign(score=scored["score"] + np.where(key.isin(small), 1.0, 0.0))
    before, _ = m._longitudinal(scored, K)
    after, _ = m._longitudinal(shifted, K)
    pub = before["estimate"].notna().to_numpy()
    assert (after["estimate"].notna().to_numpy() == pub).all()
    for c in STATS:
        np.testing.assert_allclose(after.loc[pub, c], before.loc[pub, c], rtol=0, atol=1e-7,
                                   err_msg=c)
    open_before, _ = m._longitudinal(scored, 0)
    open_after, _ = m._longitudinal(shifted, 0)
    assert not np.allclose(open_before["estimate"], open_after["estimate"], rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# The demo's planted small cells (truth.json "small_cells"), everywhere a user could read them:
# the stored model and pre/post tables after `python -m etl demo`, `python -m analytics
# export`, and the read-layer functions the pages call. Hidden means missing, never zero.
# ---------------------------------------------------------------------------------------------

# Rows of every scale's model that rest on the follow-up x physical x comparison cell (the rule
# of `_blank_small_cells`), and rows that rest only on large cells and stay shown.
ON_SMALL_CELL = ["emm[wave=followup|arm=comparison]", "contrast[followup-pre|arm=comparison]",
                 "did[followup-pre]", "did[followup-pre|modality=physical]", "wave[T.followup]",
                 "wave[T.followup]:modality[T.physical]",
                 "wave[T.followup]:modality[T.physical]:arm[T.participant]"]
OFF_SMALL_CELL = ["emm[wave=post|arm=comparison]", "contrast[post-pre|arm=comparison]",
                  "did[post-pre]", "did[post-pre|modality=physical]",
                  "contrast[followup-pre|modality=physical]", "emm[wave=followup]",
                  "did[followup-pre|modality=virtual]"]


@pytest.fixture(scope="module")
def demo_wh() -> tuple[Path, dict]:
    from tests.analytics_fixture import demo_warehouse

    wh = demo_warehouse()
    truth = json.loads((wh.parent / "demo" / "truth.json").read_text(encoding="utf-8"))
    return wh, truth["small_cells"]


def _stored(wh: Path, sql: str, params: list | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def _scored_cells(wh: Path) -> pd.DataFrame:
    """Participants with a score and their mean per scale x wave x modality x arm, from the
    stored scale scores (not from the model code)."""
    return _stored(wh, """
        SELECT s.instrument, s.scale, s.wave, x.modality, p.comparison,
               count(DISTINCT (s.participant, s.exchange_id)) AS n, avg(s.score) AS mean
        FROM res_scale_scores s JOIN participants p ON p.participant_id = s.participant
        JOIN exchanges x USING (exchange_id)
        WHERE s.score IS NOT NULL GROUP BY ALL""")


def test_demo_model_table_hides_the_small_comparison_cell(demo_wh: tuple[Path, dict]) -> None:
    wh, small = demo_wh
    cell = small["comparison_followup"]
    cells = _scored_cells(wh)
    is_small = ((cells.wave == cell["wave"]) & (cells.modality == cell["modality"])
                & cells.comparison)
    # answered the follow-up: 6; scored (enough items answered) in each scale: up to 6
    assert cell["participants"] < K
    assert cells.loc[is_small, "n"].between(1, cell["participants"]).all()
    assert (cells.loc[~is_small, "n"] >= K).all()  # the only small cell of the model
    lon = _stored(wh, "SELECT * FROM res_longitudinal")
    assert len(lon)
    for (inst, sc), t in lon.groupby(["instrument", "scale"]):
        t = t.set_index("term")
        assert t.loc[ON_SMALL_CELL, STATS].isna().all().all(), (inst, sc)
        assert (t.loc[ON_SMALL_CELL, "suppressed"] == f"n < {K}").all()
        assert t.loc[OFF_SMALL_CELL, STATS].notna().all().all(), (inst, sc)
        assert (t.loc[OFF_SMALL_CELL, "suppressed"] == "").all()
        means = cells.loc[is_small & (cells.instrument == inst) & (cells.scale == sc), "mean"]
        assert _leaks(t.reset_index(), means.to_numpy(float)) == [], (inst, sc)


def test_demo_prepost_and_attrition_tables_hide_the_small_exchange(
        demo_wh: tuple[Path, dict]) -> None:
    wh, small = demo_wh
    ex = small["exchange"]["exchange_id"]
    pp = _stored(wh, "SELECT * FROM res_prepost WHERE group_by = 'exchange' AND \"group\" = ?",
                 [ex])
    assert len(pp) and (pp["suppressed"] == f"n < {K}").all()
    numbers = pp.drop(columns=["instrument", "scale", "group_by", "group", "suppressed"])
    assert numbers.isna().all().all()
    at = _stored(wh, "SELECT * FROM res_attrition WHERE group_by = 'exchange' AND \"group\" = ?",
                 [ex])
    assert len(at) and (at["suppressed"] == f"n < {K}").all()
    assert at[["n_invited", "n_responded", "rate"]].isna().all().all()


def test_demo_exports_hide_both_small_cells(demo_wh: tuple[Path, dict], tmp_path: Path) -> None:
    from tests.analytics_fixture import run

    wh, small = demo_wh
    ex = small["exchange"]["exchange_id"]
    got = {}
    for table, extra in (("longitudinal", []), ("prepost", ["--by", "exchange"]),
                         ("attrition", ["--by", "exchange"])):
        out = tmp_path / f"{table}.csv"
        r = run("analytics", "export", table, *extra, "--warehouse", str(wh), "--out", str(out))
        assert r.returncode == 0, r.stderr
        got[table] = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    lon = got["longitudinal"]
    hidden = lon[lon["term"].isin(ON_SMALL_CELL)]
    n_scales = lon[["instrument", "scale"]].drop_duplicates().shape[0]
    assert len(hidden) == len(ON_SMALL_CELL) * n_scales
    assert (hidden[STATS] == "").all().all() and (hidden["suppressed"] == f"n < {K}").all()
    shown = lon[lon["term"].isin(OFF_SMALL_CELL)]
    assert (shown[STATS] != "").all().all()
    for table in ("prepost", "attrition"):
        rows = got[table][got[table]["group"] == ex]
        assert len(rows) and (rows["suppressed"] == f"n < {K}").all()
        numbers = rows.drop(columns=["instrument", "scale", "group_by", "group", "wave",
                                     "suppressed", "data_version", "generated_at"],
                            errors="ignore")
        assert (numbers == "").all().all(), table  # empty, never "0"


def _all_hidden(df: pd.DataFrame, numbers: list[str]) -> bool:
    return bool(len(df)) and bool(df["suppressed"].astype(bool).all()) and bool(
        df[numbers].isna().all().all())


def test_demo_read_layer_hides_both_small_cells(demo_wh: tuple[Path, dict]) -> None:
    """The functions the pages call, for a selection of the small exchange (filter bar) and in
    the tables that list exchanges or the physical comparison group's follow-up."""
    from analytics.read import cache, equity, outcomes, overview, participation
    from analytics.read.filters import Filters
    from etl.warehouse import Reader

    wh, small = demo_wh
    ex = small["exchange"]["exchange_id"]
    cache.clear_cache()
    reader = Reader(wh)
    try:
        cur = reader.cursor()
        f = Filters(exchange=(ex,))
        head = overview.headline(cur, f)
        assert head["suppressed"]
        assert all(v is None or (isinstance(v, float) and np.isnan(v)) for k, v in head.items()
                   if k in ("participants", "institutions", "countries", "exchanges", "events"))
        checks = {
            "completion_by_wave": (overview.completion_by_wave(cur, f),
                                   ["responded", "invited", "rate"]),
            "participants_by_country": (overview.participants_by_country(cur, f),
                                        ["participants", "institutions", "n"]),
            "activity_over_time": (overview.activity_over_time(cur, f),
                                   ["active", "minutes", "events", "n"]),
            "wave_means": (outcomes.wave_means(cur, f), ["n", "mean", "sd", "ci_low", "ci_high"]),
            "gains_by_group": (equity.gains_by_group(cur, f, "gender"), ["n", "mean", "ci_low"]),
            "participation_by_group": (equity.participation_by_group(cur, f, "gender"),
                                       ["n", "active", "active_share"]),
            "attrition_funnel": (equity.attrition_funnel(cur, f), ["n", "share"]),
            "dropout_by_group": (equity.dropout_by_group(cur, f, "gender"),
                                 ["n", "dropped", "dropout_rate"]),
            "activity_heatmap": (participation.activity_heatmap(cur, f), ["events", "n"]),
            "retention_by_cohort": (participation.retention_by_cohort(cur, f),
                                    ["active", "n", "share"]),
        }
        for name, (df, numbers) in checks.items():
            assert _all_hidden(df, numbers), name
        cmp = outcomes.comparison_difference(cur, f)  # no comparison people in the exchange
        assert not len(cmp) or _all_hidden(cmp, ["diff", "ci_low", "ci_high"])
        # lists of exchanges: the small one is there, without numbers
        b = participation.breakdown(cur, Filters(), "exchange")
        assert _all_hidden(b[b["key"] == ex], ["participants", "active", "events", "minutes"])
        assert b.loc[b["key"] != ex, "participants"].notna().any()
        name = cur.execute("SELECT name FROM exchanges WHERE exchange_id = ?", [ex]).fetchone()[0]
        a = overview.activity_over_time(cur, Filters(), "exchange")
        assert _all_hidden(a[a["grp"] == name], ["active", "minutes", "events", "n"])
        pp = outcomes.prepost_results(cur, "exchange")
        assert _all_hidden(pp[pp["group"] == ex], ["n", "mean_pre", "mean_post", "diff"])
        # the physical comparison group's follow-up (Outcomes page, filtered to physical)
        wm = outcomes.wave_means(cur, Filters(modality=("physical",)))
        comp = wm[wm["comparison"].astype(bool)]
        assert _all_hidden(comp[comp["wave"] == "followup"], ["n", "mean", "sd", "ci_low"])
        assert comp.loc[comp["wave"] != "followup", "mean"].notna().all()
        # the model table as the Outcomes page reads it
        lon = outcomes.longitudinal(cur)
        assert lon.loc[lon["term"].isin(ON_SMALL_CELL), STATS].isna().all().all()
        assert lon.loc[lon["term"].isin(OFF_SMALL_CELL), STATS].notna().all().all()
    finally:
        reader.close()
        cache.clear_cache()
