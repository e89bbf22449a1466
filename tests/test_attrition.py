"""Attrition: funnel counts and rates by group, suppression, completers vs dropouts (Welch)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analytics.stats.attrition import (
    BASELINE_COLUMNS,
    FUNNEL_COLUMNS,
    attrition_baseline,
    attrition_funnel,
    engagement_baseline,
    welch_t,
)


def program(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Scores with engagement-driven dropout: the less engaged and lower-baseline skip post."""
    rng = np.random.default_rng(seed)
    people = pd.DataFrame({"participant": [f"p{i}" for i in range(n)],
                           "modality": rng.choice(["virtual", "physical"], n, p=[0.8, 0.2]),
                           "n_events": rng.poisson(40, n).astype(float)})
    people.loc[:4, "modality"] = "tiny"
    base = rng.normal(3, 0.6, n) + (people.n_events.to_numpy() - 40) / 40
    p_post = 1 / (1 + np.exp(-(people.n_events.to_numpy() - 35) / 8))
    post = rng.random(n) < p_post
    follow = post & (rng.random(n) < 0.7)
    rows = []
    for i in range(n):
        if i % 10 != 9:  # 10 % never answer the pre survey
            rows.append((people.participant[i], "pre", base[i]))
        if post[i]:
            rows.append((people.participant[i], "post", base[i] + 0.3))
        if follow[i]:
            rows.append((people.participant[i], "followup", base[i] + 0.2))
    scores = pd.DataFrame(rows, columns=["participant", "wave", "score"]).assign(
        instrument="icc", scale="openness")
    scores = scores.merge(people[["participant", "modality"]], on="participant")
    return scores, people, pd.DataFrame({"post": post, "follow": follow})


def test_funnel_counts_rates_and_order_without_roster():
    scores, people, truth = program()
    out = attrition_funnel(scores)
    assert list(out.columns) == FUNNEL_COLUMNS
    overall = out[out.group_by == "overall"].set_index("wave")
    assert overall.index.tolist() == ["pre", "post", "followup"]
    has_pre = np.arange(len(people)) % 10 != 9
    assert (overall.n_invited == has_pre.sum()).all()
    assert overall.loc["pre", "rate"] == 1.0
    assert overall.loc["post", "n_responded"] == int((truth.post & has_pre).sum())
    assert overall.loc["followup", "rate"] == pytest.approx(
        (truth.follow & has_pre).sum() / has_pre.sum())


def test_funnel_with_roster_by_group_and_suppression():
    scores, people, truth = program()
    out = attrition_funnel(scores, roster=people, by="modality")
    overall = out[out.group_by == "overall"].set_index("wave")
    assert (overall.n_invited == len(people)).all()  # enrolled, whether or not they answered
    assert overall.loc["post", "n_responded"] == int(truth.post.sum())
    vir = out[(out.group_by == "modality") & (out.group == "virtual")].set_index("wave")
    is_v = (people.modality == "virtual").to_numpy()
    assert vir.loc["post", "n_responded"] == int((truth.post.to_numpy() & is_v).sum())
    tiny = out[out.group == "tiny"]
    assert (tiny.suppressed == "n < 10").all() and tiny.n_invited.isna().all()
    assert tiny.rate.isna().all()


def test_baseline_comparison_detects_engagement_driven_dropout():
    scores, people, _ = program(n=800, seed=2)
    out = attrition_baseline(scores, engagement=people)
    assert list(out.columns) == BASELINE_COLUMNS
    b = out[out.measure == "baseline_score"].iloc[0]
    e = out[out.measure == "engagement"].iloc[0]
    # completers were more engaged and started higher (the simulation made them so)
    assert e["diff"] > 0 and e.p < 0.001
    assert b["diff"] > 0 and b.p < 0.01
    assert b.diff_ci_low < b["diff"] < b.diff_ci_high
    assert b.n_completers + b.n_dropouts == (scores.wave == "pre").sum()


def test_the_engagement_row_from_one_value_per_person_is_the_baselines_row():
    """`engagement_baseline` (the derive step sums engagement per person in SQL) gives
    `attrition_baseline`'s engagement row: engagement summed over a person's rows, only people
    with a baseline score, completers those with a post score."""
    scores, people, _ = program(n=600, seed=5)
    people = pd.concat([people, people.sample(frac=0.3, random_state=1)])  # a second exchange
    want = attrition_baseline(scores, engagement=people)
    want = want[want.measure == "engagement"].reset_index(drop=True)
    base = scores.loc[(scores.wave == "pre") & scores.score.notna(), "participant"].unique()
    done = set(scores.loc[scores.wave == "post", "participant"])
    per = people[people.participant.isin(base)].groupby("participant")["n_events"].sum()
    got = engagement_baseline(per.to_numpy(float), per.index.isin(list(done)))
    assert got[["instrument", "scale"]].isna().all().all()
    pd.testing.assert_frame_equal(got.drop(columns=["instrument", "scale"]),
                                  want.drop(columns=["instrument", "scale"]), rtol=1e-12)
    assert got["n_completers"].iloc[0] + got["n_dropouts"].iloc[0] == len(base)


def test_welch_matches_scipy_and_r_definition():
    rng = np.random.default_rng(1)
    x, y = rng.normal(0, 1, 30), rng.normal(0.5, 2, 12)
    r = welch_t(x, y)
    ref = stats.ttest_ind(x, y, equal_var=False)
    assert r["t"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue)
    assert r["dof"] == pytest.approx(ref.df)
    ci = ref.confidence_interval()
    assert (r["diff_ci_low"], r["diff_ci_high"]) == pytest.approx((ci.low, ci.high))


def test_input_checks():
    with pytest.raises(ValueError):
        attrition_funnel(pd.DataFrame({"participant": ["a"]}))
    with pytest.raises(ValueError):
        attrition_funnel(pd.DataFrame({"participant": ["a"], "wave": ["pre"]}), by="nope")
