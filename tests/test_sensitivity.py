"""Missing-data sensitivity (analytics.stats.sensitivity) against known truths.

Simulated programs with a known missingness mechanism: under MAR given engagement the IPW
estimate recovers all participants' mean change and the completers' mean does not; under a
planted pattern-mixture shift (MNAR) the delta adjustment at that shift recovers it and IPW does
not. The tipping delta is checked on a case whose answer follows by hand, the delta method's SE
against statsmodels (intercept-only case) and against a cluster bootstrap, and on the generated
demo each estimate against the truth it targets (truth.json: expected_observed_diff for the
completers, expected_observed_diff_all for all participants).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from analytics.stats.sensitivity import (
    DELTAS,
    OUTPUT_COLUMNS,
    delta_adjusted,
    ipw_mean,
    sensitivity,
    sensitivity_units,
    tipping_delta,
)


def _program(seed: int, *, n: int = 6000, clusters: int = 60, mnar_shift: float = 0.0
             ) -> dict[str, np.ndarray]:
    """Units in clusters; engagement raises the change and the chance to respond (MAR given
    engagement); `mnar_shift` is added to the non-responders' change (MNAR)."""
    rng = np.random.default_rng(seed)
    cl = rng.integers(0, clusters, n)
    u = rng.normal(0, 0.05, clusters)[cl]
    events = rng.poisson(np.exp(rng.normal(3.5, 0.9, n)))
    z = np.log1p(events)
    z = (z - z.mean()) / z.std()
    pre = 3 + rng.normal(0, 0.5, n)
    d = 0.20 + 0.15 * z - 0.1 * (pre - 3) + u + rng.normal(0, 0.3, n)
    resp = rng.random(n) < 1 / (1 + np.exp(-(0.2 + 1.5 * z)))
    d = np.where(resp, d, d + mnar_shift)
    x = np.column_stack([np.ones(n), pre, np.log1p(events)])
    return {"cl": cl, "events": events, "pre": pre, "d_all": d, "resp": resp,
            "d": np.where(resp, d, np.nan), "x": x}


def test_ipw_on_tied_design_rows_equals_the_fit_on_every_unit() -> None:
    """Scale scores and event counts repeat (a 5-item mean has 21 values): the propensity model
    is fitted on counts per distinct design row, and must give the units' own fit (statsmodels
    Logit on all 20,000 units) to 1e-9."""
    rng = np.random.default_rng(11)
    n = 20_000
    pre = rng.integers(5, 26, n) / 5.0
    events = rng.poisson(6, n)
    modality = rng.integers(0, 3, n)
    x = np.column_stack([np.ones(n), pre, np.log1p(events), modality == 1, modality == 2]
                        ).astype(float)
    r = rng.random(n) < 1 / (1 + np.exp(-(-0.5 + 0.3 * pre + 0.4 * np.log1p(events))))
    d = np.where(r, 0.3 + 0.1 * pre + rng.normal(0, 0.5, n), np.nan)
    cl = rng.integers(0, 40, n)
    assert len(np.unique(x, axis=0)) < n / 10  # ties are the point
    phat = sm.Logit(r.astype(float), x).fit(disp=0, tol=1e-12).predict(x)
    w = r.mean() / phat[r]
    w = np.clip(w, *np.quantile(w, [0.01, 0.99]))
    out = ipw_mean(d, r, x, cl)
    assert out["estimate"] == pytest.approx(float(np.sum(w * d[r]) / np.sum(w)), abs=1e-9)
    assert out["weight_max"] == pytest.approx(w.max(), rel=1e-8)


def test_ipw_recovers_the_all_units_mean_under_mar_and_completers_do_not() -> None:
    p = _program(1)
    truth = p["d_all"].mean()
    ipw = ipw_mean(p["d"], p["resp"], p["x"], p["cl"])
    completers = np.nanmean(p["d"])
    assert ipw["ci_low"] < truth < ipw["ci_high"]
    assert abs(ipw["estimate"] - truth) < 2 * ipw["se"]
    assert completers - truth > 5 * ipw["se"]  # the engaged stayed and gained more
    assert ipw["dof"] == 59  # t with G - 1 df


def test_ipw_equals_a_weighted_mean_with_stabilised_truncated_weights() -> None:
    """The estimate is sum(w d) / sum(w) with w = P(respond) / p_hat cut at the 1st/99th
    percentile; p_hat from statsmodels Logit (a second library path to the same model)."""
    p = _program(2, n=3000, clusters=30)
    r = p["resp"]
    phat = sm.Logit(r.astype(float), p["x"]).fit(disp=0).predict(p["x"])
    w = r.mean() / phat[r]
    w = np.clip(w, *np.quantile(w, [0.01, 0.99]))
    expected = float(np.sum(w * p["d"][r]) / np.sum(w))
    out = ipw_mean(p["d"], r, p["x"], p["cl"])
    assert out["estimate"] == pytest.approx(expected, abs=1e-9)
    assert out["weight_max"] == pytest.approx(w.max(), rel=1e-6)
    untruncated = ipw_mean(p["d"], r, p["x"], p["cl"], truncate=(0.0, 1.0))
    assert untruncated["weight_max"] > out["weight_max"]


def test_delta_adjustment_recovers_a_planted_mnar_shift_and_ipw_does_not() -> None:
    """Non-responders changed 0.15 less than comparable responders: MAR methods overstate the
    gain; the delta analysis at delta = -0.15 / SD(responders' change) recovers it."""
    p = _program(3, mnar_shift=-0.15)
    truth = p["d_all"].mean()
    s = np.nanstd(p["d"], ddof=1)
    at = delta_adjusted(p["d"], p["resp"], p["x"], p["cl"], [0.0, -0.15 / s]).iloc[1]
    assert at["ci_low"] < truth < at["ci_high"]
    assert abs(at["estimate"] - truth) < 2 * at["se"]
    ipw = ipw_mean(p["d"], p["resp"], p["x"], p["cl"])
    mar = delta_adjusted(p["d"], p["resp"], p["x"], p["cl"], [0.0]).iloc[0]
    assert ipw["estimate"] - truth > 4 * ipw["se"]
    assert mar["estimate"] - truth > 4 * mar["se"]


def test_regression_imputation_recovers_the_mean_under_mar() -> None:
    """delta = 0 is regression imputation: unbiased when the outcome model is right (here d is
    linear in pre and engagement's z, which log1p(events) spans)."""
    p = _program(4)
    row = delta_adjusted(p["d"], p["resp"], p["x"], p["cl"], [0.0]).iloc[0]
    assert abs(row["estimate"] - p["d_all"].mean()) < 2 * row["se"]


def test_intervals_cover_the_truth_in_repeated_programs() -> None:
    """200 simulated programs (2,000 units in 40 exchanges, MAR given engagement, true mean
    change 0.20): the untruncated IPW and the delta = 0 (regression imputation) 95% intervals
    cover 0.20 in 90-98 % of them (measured: 0.94 and 0.95 at 300). Truncating the weights at
    the 1st/99th percentile, the default, buys a smaller SD with some bias toward the engaged
    (about 0.6 SE with this strong a selection); that bias stays under a quarter of the
    completers'."""
    reps = 200
    cover = np.zeros(2)
    bias = np.zeros(3)
    for rep in range(reps):
        p = _program(1000 + rep, n=2000, clusters=40)
        raw = ipw_mean(p["d"], p["resp"], p["x"], p["cl"], truncate=(0.0, 1.0))
        cut = ipw_mean(p["d"], p["resp"], p["x"], p["cl"])
        mar = delta_adjusted(p["d"], p["resp"], p["x"], p["cl"], [0.0]).iloc[0]
        cover += [raw["ci_low"] < 0.2 < raw["ci_high"], mar["ci_low"] < 0.2 < mar["ci_high"]]
        bias += [cut["estimate"] - 0.2, np.nanmean(p["d"]) - 0.2, raw["estimate"] - 0.2]
    cover /= reps
    bias /= reps
    assert ((cover >= 0.90) & (cover <= 0.98)).all(), cover
    assert abs(bias[2]) < 0.005 and 0 < bias[0] < bias[1] / 4, bias


def test_tipping_delta_on_a_hand_checkable_case() -> None:
    """Intercept only, 4 exchanges of 5, one non-responder each: the prediction is the
    responders' mean m, the all-units mean at delta is m + delta * s * 1/5, and because every
    exchange has the same non-response share the SE does not depend on delta and equals the
    cluster-robust (CR1) SE of the responders' mean (statsmodels OLS, cov_type='cluster'). So
    the lower bound m + delta s / 5 - t(0.975, 3) SE is 0 at
    delta* = -(m - t SE) / (s / 5)."""
    d = np.array([0.9, 1.1, 0.7, 1.3, np.nan,
                  0.2, 0.6, 0.4, 0.8, np.nan,
                  1.0, 1.4, 1.2, 0.6, np.nan,
                  0.5, 0.3, 0.9, 0.7, np.nan])
    cl = np.repeat([0, 1, 2, 3], 5)
    r = ~np.isnan(d)
    x = np.ones((20, 1))
    ols = sm.OLS(d[r], np.ones((16, 1))).fit(cov_type="cluster", cov_kwds={"groups": cl[r]})
    m, se = float(ols.params[0]), float(ols.bse[0])
    s = float(np.std(d[r], ddof=1))
    tcrit = stats.t.ppf(0.975, 3)
    expected = -(m - tcrit * se) / (s / 5)
    grid = delta_adjusted(d, r, x, cl, [-3.0, 0.0, 1.0])
    assert np.allclose(grid["se"], se, rtol=1e-12)
    assert np.allclose(grid["estimate"], m + grid["delta"] * s / 5, rtol=1e-12)
    assert tipping_delta(d, r, x, cl) == pytest.approx(expected, abs=1e-9)
    assert expected < 0  # the gain is clear of 0 at MAR: non-responders must do worse
    # at the tipping delta the lower bound is 0
    at = delta_adjusted(d, r, x, cl, [expected]).iloc[0]
    assert at["ci_low"] == pytest.approx(0.0, abs=1e-9)


def test_delta_method_se_matches_a_cluster_bootstrap() -> None:
    """The influence-function SE (with the regression's estimation) against resampling whole
    exchanges: within 15 % at 400 replicates."""
    p = _program(5, n=3000, clusters=40)
    deltas = [0.0, -1.0]
    est = delta_adjusted(p["d"], p["resp"], p["x"], p["cl"], deltas)
    rng = np.random.default_rng(9)
    ids = np.unique(p["cl"])
    members = [np.flatnonzero(p["cl"] == c) for c in ids]
    boot = []
    for _ in range(400):
        pick = rng.choice(len(ids), len(ids))
        ix = np.concatenate([members[j] for j in pick])
        lab = np.concatenate([np.full(len(members[j]), k) for k, j in enumerate(pick)])
        boot.append(delta_adjusted(p["d"][ix], p["resp"][ix], p["x"][ix], lab, deltas)
                    ["estimate"].to_numpy())
    sd = np.std(np.array(boot), axis=0, ddof=1)
    assert np.allclose(est["se"].to_numpy(), sd, rtol=0.15)


def _long(p: dict[str, np.ndarray], *, modality: bool = True) -> pd.DataFrame:
    n = len(p["pre"])
    ids = np.arange(n)
    post = p["pre"] + p["d"]
    rows = pd.DataFrame({"participant": np.tile(ids, 2), "exchange_id": np.tile(p["cl"], 2),
                         "wave": np.repeat(["pre", "followup"], n),
                         "score": np.concatenate([p["pre"], post]),
                         "n_events": np.tile(p["events"], 2), "instrument": "icc",
                         "scale": "openness"})
    if modality:
        rows["modality"] = np.tile(np.where(p["cl"] % 2 == 0, "virtual", "physical"), 2)
    return rows


def test_sensitivity_table_has_every_method_and_states_its_counts() -> None:
    p = _program(6)
    out = sensitivity(_long(p), k=10)
    assert list(out.columns) == OUTPUT_COLUMNS
    assert out["method"].tolist() == (["completers", "ipw"] + ["delta"] * len(DELTAS)
                                      + ["tipping_point"])
    assert (out["wave"] == "followup").all()
    comp = out.iloc[0]
    assert comp["n"] == comp["n_responded"] == int(p["resp"].sum())
    assert comp["estimate"] == pytest.approx(np.nanmean(p["d"]))
    assert (out["n"].iloc[1:] == len(p["pre"])).all()
    assert (out["n_clusters"] == 60).all() and not out["few_clusters"].any()
    tip = out.iloc[-1]
    assert tip["delta"] < 0 and tip["ci_low"] == 0.0
    grid = out[out["method"] == "delta"]
    assert grid["delta"].tolist() == list(DELTAS)
    # the table's rows are the functions' results for the same units
    x = np.column_stack([np.ones(len(p["pre"])), p["pre"], np.log1p(p["events"]),
                         (p["cl"] % 2 == 0).astype(float)])
    assert tip["delta"] == pytest.approx(tipping_delta(p["d"], p["resp"], x, p["cl"]), abs=1e-9)


def test_units_given_wide_give_the_long_table() -> None:
    """`sensitivity_units` (the derive step's path: one row per unit, pivoted in DuckDB,
    clusters as integer codes, modality as categories) gives `sensitivity`'s rows on the long
    scores: units without a pre score left out, a missing modality and a wave nobody answered
    included."""
    p = _program(9, n=3000, clusters=40)
    long = _long(p)
    long = long[~((long["wave"] == "pre") & (long["participant"] % 17 == 0))]  # no pre score
    long.loc[long["participant"] % 23 == 0, "modality"] = None
    post = long[long["wave"] == "pre"].assign(wave="post", score=np.nan)  # nobody answered
    long = pd.concat([long, post], ignore_index=True)
    want = sensitivity(long, k=10, waves=["post", "followup"])
    wide = long.pivot_table(index="participant", columns="wave", values="score",
                            aggfunc="first", dropna=False)
    attrs = long.drop_duplicates("participant").set_index("participant")
    units = pd.DataFrame({
        "pre": wide["pre"], "post": np.nan, "followup": wide["followup"],
        "cluster": pd.factorize(attrs["exchange_id"].astype(str))[0][
            attrs.index.get_indexer(wide.index)],
        "n_events": attrs.loc[wide.index, "n_events"],
        "modality": pd.Categorical(attrs.loc[wide.index, "modality"]),
    }).sample(frac=1, random_state=1)  # row order is not the long table's
    got = sensitivity_units(units, instrument="icc", scale="openness",
                            waves=["post", "followup"], cluster="cluster", k=10)
    assert got["method"].tolist() == want["method"].tolist()
    assert got["wave"].tolist() == want["wave"].tolist()
    pd.testing.assert_frame_equal(got, want, rtol=1e-9, atol=1e-12)
    assert (got.loc[got["wave"] == "post", "n_responded"] == 0).all()
    assert got.loc[got["wave"] == "followup", "estimate"].notna().all()


def test_small_cells_are_suppressed() -> None:
    """Fewer than k non-responders: the all-participant rows rest on them and are blanked,
    the completers' row (responders only) is shown."""
    p = _program(7, n=400, clusters=20)
    p["resp"][:] = True
    p["resp"][:5] = False
    p["d"] = np.where(p["resp"], p["d_all"], np.nan)
    out = sensitivity(_long(p), k=10)
    shown = out[out["suppressed"] == ""]
    assert shown["method"].tolist() == ["completers"]
    hidden = out[out["suppressed"] != ""]
    assert hidden["estimate"].isna().all() and hidden["n"].isna().all()
    assert hidden.loc[hidden["method"] == "tipping_point", "delta"].isna().all()
    assert hidden.loc[hidden["method"] == "delta", "delta"].tolist() == list(DELTAS)
    assert sensitivity(_long(p), k=10, unsuppressed=True)["estimate"].notna().sum() >= 8


def test_missing_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="n_events"):
        sensitivity(_long(_program(8, n=200)).drop(columns="n_events"))


# ---------------------------------------------------------------------------------------------
# The demo: each estimate against the truth it targets
# ---------------------------------------------------------------------------------------------

DEMO_N = 30_000  # 72 exchanges: the completers' and all participants' truths differ by ~2 SE


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict]:
    """Exchange participants' scale scores of a generated demo, scored from its CSV files by
    the test oracle (as tests/demo_scores.py), with events logged per participant x exchange."""
    from analytics.stats.scales import item_table
    from etl.demo import generate_demo
    from surveys import load_instruments
    from tests.scoring_oracle import score_scales

    out = tmp_path_factory.mktemp("sens_demo")
    truth = generate_demo(out, participants=DEMO_N, seed=11, progress=False)
    inst = load_instruments()
    items = item_table(inst).set_index("item")
    resp = pd.read_csv(out / "responses.csv", dtype=str)
    cols = [c for c in resp.columns if c in items.index]
    long = resp.melt(id_vars=["participant_id", "exchange_id", "wave"], value_vars=cols,
                     var_name="item", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    lo, hi = long["item"].map(items["min"]), long["item"].map(items["max"])
    scores = score_scales(long[~((long["value"] < lo) | (long["value"] > hi))], inst)
    people = pd.read_csv(out / "participants.csv", dtype=str)
    comparison = set(people.loc[people["comparison"].str.lower() == "true", "participant_id"])
    scores = scores[~scores["participant"].isin(comparison)]
    ex = pd.read_csv(out / "exchanges.csv", dtype=str)[["exchange_id", "modality"]]
    ev = pd.read_csv(out / "events.csv", usecols=["participant_id", "exchange_id"], dtype=str)
    n_events = (ev.groupby(["participant_id", "exchange_id"]).size().rename("n_events")
                .reset_index().rename(columns={"participant_id": "participant"}))
    scores = (scores.merge(ex, on="exchange_id", how="left")
              .merge(n_events, on=["participant", "exchange_id"], how="left"))
    scores["n_events"] = scores["n_events"].fillna(0)
    return scores, truth


def _overall(effect: dict, key: str, wave: str, n_key: str) -> float:
    """The exchange participants' truth: the modality groups' truths weighted by their counts."""
    groups = ("virtual", "blended", "physical")
    num = sum(effect[key][wave][g] * effect["n"][n_key][g] for g in groups)
    return num / sum(effect["n"][n_key][g] for g in groups)


def test_completers_pre_post_change_targets_the_completers_truth(
        demo: tuple[pd.DataFrame, dict]) -> None:
    """res_prepost's overall diff (the completers' paired change, `prepost` as the derive step
    calls it) is within its CR2 sampling error of expected_observed_diff (completers) on every
    scale, and on average over the scales it sits ~1.7 CR2 SEs above the all-participants
    truth expected_observed_diff_all, which it does not estimate (dropout depends on
    engagement, engagement raises the gain). The z scores' mean over 9 scales has an SD of at
    most 1/3 (item noise is independent across scales)."""
    from analytics.stats.prepost import prepost

    scores, truth = demo
    pp = prepost(scores, cluster="exchange_id")
    pp = pp[pp["group_by"] == "overall"]
    z_c, z_a = [], []
    for r in pp.itertuples(index=False):
        eff = truth["effects"][r.instrument][r.scale]
        c = _overall(eff, "expected_observed_diff", "post_minus_pre", "pre_post")
        a = _overall(eff, "expected_observed_diff_all", "post_minus_pre", "all")
        assert r.diff_ci_low_cr2 < c < r.diff_ci_high_cr2, (r.instrument, r.scale)
        z_c.append((r.diff - c) / r.diff_se_cr2)
        z_a.append((r.diff - a) / r.diff_se_cr2)
    assert len(z_c) >= 9
    assert abs(np.mean(z_c)) < 0.8, z_c
    assert np.mean(z_a) > 1.2, z_a


def test_ipw_follow_up_gain_targets_the_all_participants_truth(
        demo: tuple[pd.DataFrame, dict]) -> None:
    """At follow-up (about half the participants answer; answering depends on engagement, as
    the IPW model has it) the IPW estimate is within sampling error of
    expected_observed_diff_all on every scale and on average over the scales; the completers'
    row targets expected_observed_diff (pre + follow-up completers) and lies above the
    all-participants truth; IPW lies below the completers' truth."""
    scores, truth = demo
    out = sensitivity(scores, participant="participant", k=10)
    fu = out[out["wave"] == "followup"]
    z_ipw_a, z_ipw_c, z_comp_c, z_comp_a = [], [], [], []
    for (inst, sc), g in fu.groupby(["instrument", "scale"]):
        eff = truth["effects"][inst][sc]
        c = _overall(eff, "expected_observed_diff", "followup_minus_pre", "pre_followup")
        a = _overall(eff, "expected_observed_diff_all", "followup_minus_pre", "all")
        ipw = g[g["method"] == "ipw"].iloc[0]
        comp = g[g["method"] == "completers"].iloc[0]
        assert ipw["ci_low"] < a < ipw["ci_high"], (inst, sc)
        assert comp["ci_low"] < c < comp["ci_high"], (inst, sc)
        z_ipw_a.append((ipw["estimate"] - a) / ipw["se"])
        z_ipw_c.append((ipw["estimate"] - c) / ipw["se"])
        z_comp_c.append((comp["estimate"] - c) / comp["se"])
        z_comp_a.append((comp["estimate"] - a) / comp["se"])
        tip = g[g["method"] == "tipping_point"].iloc[0]
        assert tip["delta"] < 0  # every follow-up gain is clear of 0 under MAR
    assert len(z_ipw_a) >= 9
    assert abs(np.mean(z_ipw_a)) < 0.8, z_ipw_a
    assert np.mean(z_ipw_c) < -1.2, z_ipw_c
    assert abs(np.mean(z_comp_c)) < 0.8, z_comp_c
    assert np.mean(z_comp_a) > 1.2, z_comp_a


def test_truth_states_both_estimands_and_which_estimate_targets_which(
        demo: tuple[pd.DataFrame, dict]) -> None:
    _, truth = demo
    defs = truth["definitions"]
    assert "expected_observed_diff_all" in defs and "estimates_and_targets" in defs
    assert "res_sensitivity" in defs["estimates_and_targets"]
    for inst in truth["effects"].values():
        for eff in inst.values():
            for wave in ("post_minus_pre", "followup_minus_pre"):
                for g in ("virtual", "blended", "physical"):
                    # engaged people stay and gain more: completers' truth is the larger
                    assert (eff["expected_observed_diff"][wave][g]
                            > eff["expected_observed_diff_all"][wave][g] - 0.02)
