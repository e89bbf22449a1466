"""Issue 10 §1 and §5 for the pre/post table: paired Hedges' g (correction and noncentral-t CI),
CR2 cluster-robust columns with Satterthwaite df, table-wide FDR, the stated Wilcoxon rule.

Each method is checked against a published example or a library route, and against the known
truth of seeded simulations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, stats

from analytics.stats.prepost import (
    DESIGN_COLUMNS,
    OUTPUT_COLUMNS,
    _wilcoxon_p,
    bh_adjust,
    cr2_mean,
    paired_change,
    prepost,
)

# Lakens (2013, Front. Psychol. 4:863, Table 1): ratings of two movies by the same 10 people.
MOVIE_1 = np.array([9, 7, 8, 9, 8, 9, 9, 10, 9, 9], dtype=float)
MOVIE_2 = np.array([9, 6, 7, 8, 7, 9, 8, 8, 8, 7], dtype=float)


def test_lakens_2013_worked_example() -> None:
    # Lakens 2013 reports t(9) = 4.74, d_z = 1.50, d_av = 1.13 (and g_av = 1.08 with the
    # independent-samples correction 1 - 3/(4(n1+n2) - 9), which this table no longer uses)
    r = paired_change(MOVIE_2, MOVIE_1)  # "post" = movie 1, the higher-rated one
    assert round(r["t"], 2) == 4.74 and r["dof"] == 9
    assert round(r["d_z"], 2) == 1.50
    assert round(r["d_av"], 2) == 1.13
    assert round(r["d_av"] * (1 - 3 / (4 * 20 - 9)), 2) == 1.08  # Lakens' g_av, for the record
    # ours: J(nu), nu = 2 * 9 / (1 + r^2), r = 0.7255 here -> nu = 11.79, J = 0.9348
    rr = np.corrcoef(MOVIE_1, MOVIE_2)[0, 1]
    assert rr == pytest.approx(0.7255, abs=1e-4)
    assert r["hedges_g"] == pytest.approx(1.0525, abs=1e-4)
    assert r["hedges_g_ci_low"] < r["hedges_g"] < r["hedges_g_ci_high"]


def test_noncentral_t_interval_is_the_root_of_scipy_nct_and_dual_to_the_t_test() -> None:
    r = paired_change(MOVIE_2, MOVIE_1)
    t, n = r["t"], 10
    lam_lo = optimize.brentq(lambda lam: stats.nct.cdf(t, 9, lam) - 0.975, -20, 20, xtol=1e-12)
    lam_hi = optimize.brentq(lambda lam: stats.nct.cdf(t, 9, lam) - 0.025, -20, 20, xtol=1e-12)
    d = MOVIE_1 - MOVIE_2
    s_av = np.sqrt((MOVIE_1.var(ddof=1) + MOVIE_2.var(ddof=1)) / 2)
    scale = d.std(ddof=1) / (np.sqrt(n) * s_av)
    assert r["hedges_g_ci_low"] == pytest.approx(lam_lo * scale, rel=1e-6)
    assert r["hedges_g_ci_high"] == pytest.approx(lam_hi * scale, rel=1e-6)
    # at delta = 0 the noncentral t is the central t: the CI excludes 0 exactly when p < 0.05
    rng = np.random.default_rng(5)
    for _ in range(50):
        x = rng.normal(size=(8, 2)) + [0, rng.normal(0, 0.8)]
        q = paired_change(x[:, 0], x[:, 1])
        assert (q["p"] < 0.05) == (q["hedges_g_ci_low"] > 0 or q["hedges_g_ci_high"] < 0)


@pytest.mark.parametrize("rho,delta", [(0.5, 0.5), (0.9, 1.0), (0.0, 1.0)])
def test_hedges_g_is_unbiased_and_its_ci_covers_the_truth_at_n_10(rho: float,
                                                                  delta: float) -> None:
    # pre, post ~ bivariate normal with unit SDs: the true delta_av is `delta`
    rng = np.random.default_rng(int(rho * 10 + delta * 100))
    reps, n = 1500, 10
    x = rng.multivariate_normal([0, delta], [[1, rho], [rho, 1]], (reps, n))
    res = [paired_change(x[i, :, 0], x[i, :, 1]) for i in range(reps)]
    g = np.array([q["hedges_g"] for q in res])
    d_av = np.array([q["d_av"] for q in res])
    lo = np.array([q["hedges_g_ci_low"] for q in res])
    hi = np.array([q["hedges_g_ci_high"] for q in res])
    cover = np.mean((lo <= delta) & (delta <= hi))
    assert 0.93 <= cover <= 0.98, cover
    se = g.std() / np.sqrt(reps)
    assert abs(g.mean() - delta) < max(3 * se, 0.015), (g.mean(), delta)
    # the correction is needed: with correlated pre and post, d_av itself overestimates
    if rho >= 0.9:
        assert d_av.mean() - delta > 3 * se


# --- CR2 with Satterthwaite df ---------------------------------------------------------------

def _cr2_matrix_route(y: np.ndarray, cl: np.ndarray) -> tuple[float, float]:
    """Pustejovsky & Tipton (2018) written out with matrices for a general X (here X = 1):
    V = M sum_j X_j' A_j e_j e_j' A_j X_j M, A_j = (I - H_jj)^(-1/2) (symmetric root), and the
    Satterthwaite df 2 E[V]^2 / Var[V] under the working model sigma^2 I."""
    n = len(y)
    X = np.ones((n, 1))
    M = np.linalg.inv(X.T @ X)
    H = X @ M @ X.T
    e = y - H @ y
    IH = np.eye(n) - H
    V = 0.0
    gs = []
    for lab in np.unique(cl):
        ix = np.flatnonzero(cl == lab)
        w, U = np.linalg.eigh(IH[np.ix_(ix, ix)])
        A = U @ np.diag(1 / np.sqrt(w)) @ U.T
        u = (M @ X[ix].T @ A)[0]
        V += float(u @ e[ix]) ** 2
        gs.append(IH[ix].T @ u)  # N-vector: contribution of cluster j as a linear form in y
    G = np.array(gs)
    GG = G @ G.T
    return float(np.sqrt(V)), float(np.trace(GG) ** 2 / (GG**2).sum())


def test_cr2_equals_statsmodels_cr1_for_equal_clusters_and_df_is_j_minus_1() -> None:
    # For X = 1 and J equal clusters, CR2's 1/(1 - n_j/N) = J/(J - 1) is CR1's factor
    # (statsmodels: G/(G-1) * (N-1)/(N-K), K = 1): the SEs are equal; Satterthwaite df = J - 1.
    rng = np.random.default_rng(3)
    J, m = 6, 7
    cl = np.repeat(np.arange(J), m)
    y = rng.normal(0, 1, J)[cl] * 0.5 + rng.normal(0.3, 1, J * m)
    fit = sm.OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": cl})
    r = cr2_mean(y, cl)
    assert r["diff_se_cr2"] == pytest.approx(float(fit.bse[0]), rel=1e-12)
    assert r["diff_df_cr2"] == pytest.approx(J - 1, rel=1e-12)
    assert r["n_clusters"] == J and r["few_clusters"]


def test_cr2_unbalanced_equals_the_matrix_route_and_differs_from_cr1() -> None:
    rng = np.random.default_rng(4)
    sizes = [2, 3, 5, 8, 13, 21, 1, 40]
    cl = np.repeat(np.arange(len(sizes)), sizes)
    y = rng.normal(0, 0.4, len(sizes))[cl] + rng.normal(0.2, 1, len(cl))
    se, df = _cr2_matrix_route(y, cl)
    r = cr2_mean(y, cl.astype(str))
    assert r["diff_se_cr2"] == pytest.approx(se, rel=1e-10)
    assert r["diff_df_cr2"] == pytest.approx(df, rel=1e-10)
    assert df < len(sizes) - 1  # unequal clusters: fewer effective df than J - 1
    tcrit = stats.t.ppf(0.975, df)
    assert r["diff_ci_low_cr2"] == pytest.approx(y.mean() - tcrit * se, rel=1e-10)
    assert r["p_cr2"] == pytest.approx(2 * stats.t.sf(abs(y.mean() / se), df), rel=1e-10)
    fit = sm.OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": cl})
    assert r["diff_se_cr2"] != pytest.approx(float(fit.bse[0]), rel=1e-3)


def test_cr2_needs_two_clusters() -> None:
    r = cr2_mean(np.array([1.0, 2.0, 4.0]), np.array(["a", "a", "a"]))
    assert r["n_clusters"] == 1 and r["few_clusters"] and np.isnan(r["diff_se_cr2"])


def test_cr2_interval_covers_the_true_gain_with_an_exchange_effect_and_few_clusters() -> None:
    # change = 0.3 + u_exchange + e, ICC = 0.08, 8 exchanges of unequal size (4 to 40 pairs):
    # the plain paired-t interval treats 100+ people as independent and undercovers; CR2 with
    # Satterthwaite df holds its level.
    rng = np.random.default_rng(2026)
    sizes = np.array([4, 6, 8, 10, 14, 20, 30, 40])
    cl = np.repeat(np.arange(len(sizes)), sizes)
    reps, truth, icc = 600, 0.3, 0.08
    hit_cr2 = hit_t = 0
    for _ in range(reps):
        pre = rng.normal(3, 0.6, len(cl))
        post = pre + truth + rng.normal(0, np.sqrt(icc), len(sizes))[cl] \
            + rng.normal(0, np.sqrt(1 - icc), len(cl))
        r = paired_change(pre, post, cluster=cl)
        hit_cr2 += r["diff_ci_low_cr2"] <= truth <= r["diff_ci_high_cr2"]
        hit_t += r["diff_ci_low"] <= truth <= r["diff_ci_high"]
    assert 0.92 <= hit_cr2 / reps <= 0.985, hit_cr2 / reps
    assert hit_t / reps < 0.90, hit_t / reps
    assert r["n_clusters"] == 8 and r["few_clusters"]


# --- the table: columns, design-aware rows, table-wide FDR ------------------------------------

def _program(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for ex in range(12):
        mod = ["virtual", "blended", "physical"][ex % 3]
        u = rng.normal(0, 0.25)
        for i in range(6 + 3 * ex):
            for sc, gain in (("up", 0.3), ("flat", 0.0), ("down", -0.1)):
                base = rng.normal(3, 0.6)
                rows.append((f"p{ex}_{i}", f"e{ex}", mod, "pre", sc, base))
                rows.append((f"p{ex}_{i}", f"e{ex}", mod, "post", sc,
                             base + gain + u + rng.normal(0, 0.4)))
    return pd.DataFrame(rows, columns=["participant", "exchange_id", "modality", "wave", "scale",
                                       "score"]).assign(instrument="sim")


def test_table_has_design_columns_beside_the_plain_ones() -> None:
    d = _program(1)
    plain = prepost(d, by="modality")
    out = prepost(d, by="modality", cluster="exchange_id")
    assert list(out.columns) == OUTPUT_COLUMNS and OUTPUT_COLUMNS[-len(DESIGN_COLUMNS):] == \
        DESIGN_COLUMNS
    # the plain columns do not move
    pd.testing.assert_frame_equal(plain[OUTPUT_COLUMNS[:21]], out[OUTPUT_COLUMNS[:21]])
    assert plain.n_clusters.isna().all() and plain.diff_se_cr2.isna().all()
    ov = out[out.group_by == "overall"].set_index("scale")
    assert (ov.n_clusters == 12).all() and not ov.few_clusters.any()
    virt = out[out.group == "virtual"]
    assert (virt.n_clusters == 4).all() and virt.few_clusters.all()
    # each row equals cr2_mean on that row's pairs
    w = d.pivot_table(index=["participant", "exchange_id", "scale"], columns="wave",
                      values="score").reset_index()
    g = w[w.scale == "up"]
    ref = cr2_mean((g.post - g.pre).to_numpy(), g.exchange_id.to_numpy())
    assert ov.loc["up", "diff_se_cr2"] == pytest.approx(ref["diff_se_cr2"], rel=1e-12)
    assert ov.loc["up", "diff_df_cr2"] == pytest.approx(ref["diff_df_cr2"], rel=1e-12)
    # clustering widens the interval here (exchange effect SD 0.25)
    assert ov.loc["up", "diff_se_cr2"] > (ov.loc["up", "diff"] - ov.loc["up", "diff_ci_low"]) \
        / stats.t.ppf(0.975, ov.loc["up", "dof"])


def test_p_fdr_table_is_bh_over_every_shown_row_of_one_group_by() -> None:
    d = _program(2)
    out = prepost(d, by=["modality", "exchange_id"], cluster="exchange_id")
    for _, t in out.groupby("group_by"):
        shown = t[t.suppressed == ""]
        assert shown.p_fdr_table.to_numpy() == pytest.approx(bh_adjust(shown.p.to_numpy()))
    ex = out[out.group_by == "exchange_id"]
    small = ex[ex.suppressed != ""]
    # e0 (6 pairs) and e1 (9 pairs) are below k = 10: not shown, not in the family
    assert set(small.group) == {"e0", "e1"} and small.p_fdr_table.isna().all()
    # the family is the whole table, not the scales of one group
    mod = out[out.group_by == "modality"]
    assert not np.allclose(mod.p_fdr_table, mod.p_fdr)


def test_wilcoxon_rounds_differences_to_1e_10_then_applies_r_rule() -> None:
    # 0.3 - 0.1 and 0.2 - 0.0 are the same change; as doubles they differ in the last bit.
    pre = np.array([0.1, 0.0, 0.5, 1.0, 0.25, 0.0, 0.0, 0.0])
    post = np.array([0.3, 0.2, 1.2, 2.5, 1.0, 0.6, 0.9, 1.3])
    d = post - pre
    assert len(np.unique(np.abs(d))) == len(d)  # unrounded: no ties -> R would go exact
    rounded = np.round(d, 10)
    assert len(np.unique(np.abs(rounded))) < len(d)  # rounded: a tie -> normal approximation
    got = _wilcoxon_p(d)
    approx = stats.wilcoxon(rounded, correction=True, method="approx").pvalue
    exact = stats.wilcoxon(d, method="exact").pvalue
    assert got == pytest.approx(approx, rel=1e-12) and got != pytest.approx(exact, rel=1e-3)


def test_stored_table_carries_the_design_columns_by_exchange() -> None:
    # the load path (analytics.derive.materialise._prepost / _prepost_combine) passes the
    # exchange as the cluster and computes p_fdr_table over each group_by's shown rows
    import duckdb

    from tests.analytics_fixture import demo_warehouse

    con = duckdb.connect(str(demo_warehouse()), read_only=True)
    try:
        pp = con.execute("SELECT * FROM res_prepost").df()
        n_ex = con.execute("SELECT count(DISTINCT exchange_id) FROM res_scale_scores").fetchone()[0]
    finally:
        con.close()
    shown = pp[pp.suppressed == ""]
    assert shown.n_clusters.notna().all()
    # one exchange is one cluster: no cluster-robust SE for a single exchange's rows
    assert shown[shown.group_by != "exchange"].diff_se_cr2.notna().all()
    assert (shown.n_clusters <= n_ex).all()
    per_exchange = shown[shown.group_by == "exchange"]
    assert len(per_exchange) and (per_exchange.n_clusters == 1).all()
    assert per_exchange.few_clusters.all() and per_exchange.diff_se_cr2.isna().all()
    ov = shown[shown.group_by == "overall"]
    assert (ov.n_clusters > 10).all() and not ov.few_clusters.any()
    assert (ov.few_clusters == (ov.n_clusters < 10)).all()
    for _, t in shown.groupby("group_by"):
        assert t.p_fdr_table.to_numpy() == pytest.approx(bh_adjust(t.p.to_numpy()))
    assert pp[pp.suppressed != ""][DESIGN_COLUMNS].isna().all().all()


def test_an_absurd_t_from_near_equal_changes_gives_no_g_interval_and_returns() -> None:
    """Two pairs whose changes differ by 1e-9 give t ≈ 1e9; scipy's noncentral-t inverse never
    returned on it (a 100-participant demo load hung). The interval is left undefined."""
    from analytics.stats.prepost import paired_change

    r = paired_change(np.array([1.0, 2.0]), np.array([2.0, 3.0 + 1e-9]))
    assert r["t"] > 1e8
    assert np.isnan(r["hedges_g_ci_low"]) and np.isnan(r["hedges_g_ci_high"])


@pytest.mark.parametrize("sizes", [[4, 6, 8, 10, 14, 20, 30, 40], [20] * 12, [30] * 30])
def test_design_aware_g_interval_covers_delta_av_where_the_plain_one_does_not(sizes) -> None:
    """hedges_g_ci_*_cr2 (what the pages show): 95% coverage of delta_av with an exchange ICC
    of 0.10; the plain noncentral-t interval treats participants as independent."""
    rng = np.random.default_rng(11)
    sizes = np.array(sizes)
    cl = np.repeat(np.arange(len(sizes)), sizes)
    reps, gain, icc = 400, 0.3, 0.10
    delta = gain / np.sqrt((0.36 + 0.36 + 1) / 2)  # sd(pre) 0.6, sd(post) sqrt(0.36 + 1)
    hit = hit_plain = 0
    for _ in range(reps):
        pre = rng.normal(3, 0.6, len(cl))
        post = pre + gain + rng.normal(0, np.sqrt(icc), len(sizes))[cl] \
            + rng.normal(0, np.sqrt(1 - icc), len(cl))
        r = paired_change(pre, post, cluster=cl)
        hit += r["hedges_g_ci_low_cr2"] <= delta <= r["hedges_g_ci_high_cr2"]
        hit_plain += r["hedges_g_ci_low"] <= delta <= r["hedges_g_ci_high"]
    assert 0.925 <= hit / reps <= 0.98, hit / reps
    assert hit_plain / reps < 0.88, hit_plain / reps


def test_cr2_of_changes_all_equal_is_not_estimable_not_rounding_noise() -> None:
    """Every pair changed by 0.1: the CR2 variance is 0 in exact arithmetic, but the clusters'
    sums of 0.1 round differently (before: se 7e-18, p 2e-78). se, df, CI and p are NaN; a
    tiny real spread is still a number."""
    from analytics.stats.means import cr2_means

    rng = np.random.default_rng(2)
    cl = rng.integers(0, 6, 40)
    for v in (0.1, 1 / 3, 0.7):
        r = cr2_mean(np.full(40, v), cl)
        assert r["n_clusters"] == 6
        assert all(np.isnan(r[k]) for k in ("diff_se_cr2", "diff_df_cr2", "diff_ci_low_cr2",
                                             "diff_ci_high_cr2", "p_cr2")), (v, r)
        cells = pd.DataFrame({"g": 1, "exchange_id": cl, "n": 1, "sum": v, "sumsq": v * v})
        m = cr2_means(cells, ["g"]).iloc[0]
        assert m["mean"] == pytest.approx(v) and np.isnan(
            m[["ci_low_cr2", "ci_high_cr2", "df_cr2"]].to_numpy(float)).all()
    r = cr2_mean(0.1 + 1e-9 * rng.normal(size=40), cl)
    assert 0 < r["diff_se_cr2"] < 1e-9 and np.isfinite(r["p_cr2"])
