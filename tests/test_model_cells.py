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
            "var_participant", "var_residual", "icc_participant", "icc_cluster"]
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
    ("icc_cluster", None),
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
