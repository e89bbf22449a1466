"""Issue 10 §2: participants vs the comparison group (analytics.stats.comparison).

CR2 with Satterthwaite df is checked against: a brute-force matrix route (Bell & McCaffrey's
definition written out, N x N), statsmodels' HC2 for singleton clusters, the closed-form
`cr2_mean` of the pre/post table for X = 1, clubSandwich's documented equivalence of CR2 with
Welch's t for a two-period difference-in-differences (clubSandwich tests/testthat/test_lm.R,
"CR2 is equivalent to Welch t-test for DiD design"), and Imbens & Kolesár's (2016, REStat 98(4),
sec. 3) closed form of the Bell-McCaffrey df of a two-group difference: the Welch-Satterthwaite
df with equal variances. The balance table and ANCOVA are checked on hand-computable data and
on generated data with a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from analytics.stats.comparison import (
    BALANCE_COLUMNS,
    COMPARISON_COLUMNS,
    METHOD_ANCOVA,
    METHOD_RAW,
    ancova,
    balance_table,
    cr2_fit,
    cr2_from_cells,
    cr2_ols,
    smd_mean,
    smd_proportion,
)
from analytics.stats.prepost import cr2_mean


def _brute_force(X: np.ndarray, y: np.ndarray, cl: np.ndarray, c: np.ndarray
                 ) -> tuple[np.ndarray, float]:
    """CR2 covariance and Satterthwaite df by the definitions, with N x N matrices."""
    n = len(y)
    M = np.linalg.inv(X.T @ X)
    e = y - X @ (M @ X.T @ y)
    H = X @ M @ X.T
    meat = np.zeros((X.shape[1], X.shape[1]))
    ps = []
    for j in np.unique(cl):
        ix = cl == j
        w, v = np.linalg.eigh(np.eye(int(ix.sum())) - H[np.ix_(ix, ix)])
        A = (v * np.where(w > 1e-12, np.abs(w) ** -0.5, 0.0)) @ v.T
        a = X[ix].T @ A @ e[ix]
        meat += np.outer(a, a)
        ps.append((np.eye(n) - H)[ix, :].T @ A @ X[ix] @ M @ c)
    P = np.array(ps)
    G = P @ P.T
    return M @ meat @ M, float(np.trace(G) ** 2 / (G * G).sum())


def _data(seed: int, n: int = 80, J: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cl = rng.integers(0, J, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.random(n) < 0.4])
    y = X @ [1.0, 0.5, 0.3] + rng.normal(size=n) + rng.normal(size=J)[cl]
    return X, y, cl


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cr2_equals_the_definition_written_out(seed: int) -> None:
    X, y, cl = _data(seed)
    fit = cr2_fit(X, y, cl)
    for c in (np.array([0, 0, 1.0]), np.array([0, 1.0, 0]), np.array([1.0, 0, 1])):
        V, df = _brute_force(X, y, cl, c)
        assert np.abs(fit.vcov - V).max() < 1e-12
        assert fit.test(c)["df_cr2"] == pytest.approx(df, rel=1e-10)


def test_singleton_clusters_give_statsmodels_hc2_exactly() -> None:
    X, y, _ = _data(4)
    fit = cr2_fit(X, y, np.arange(len(y)))
    hc2 = sm.OLS(y, X).fit(cov_type="HC2")
    assert np.abs(fit.vcov - hc2.cov_params()).max() < 1e-14
    assert fit.beta == pytest.approx(hc2.params, rel=1e-12)


def test_intercept_only_equals_cr2_mean_of_the_prepost_table() -> None:
    rng = np.random.default_rng(5)
    cl = np.repeat(np.arange(9), rng.integers(2, 40, 9))
    y = rng.normal(size=len(cl)) + rng.normal(size=9)[cl]
    ref = cr2_mean(y, cl)
    row = cr2_ols(np.ones((len(y), 1)), y, cl, ["Intercept"]).iloc[0]
    for ours, theirs in [("se_cr2", "diff_se_cr2"), ("df_cr2", "diff_df_cr2"),
                         ("ci_low_cr2", "diff_ci_low_cr2"), ("ci_high_cr2", "diff_ci_high_cr2"),
                         ("p_cr2", "p_cr2")]:
        assert row[ours] == pytest.approx(ref[theirs], rel=1e-10), ours
    assert row["n_clusters"] == ref["n_clusters"] == 9 and row["few_clusters"]


def test_did_with_cluster_fixed_effects_equals_welch_t_as_clubsandwich_documents() -> None:
    # clubSandwich tests/testthat/test_lm.R: lm(y ~ cluster + factor(time) + trt), coef_test
    # (CR2, Satterthwaite) gives beta and t of Welch's t.test on the per-cluster changes; the df
    # differ (Welch estimates the variances, CR2's Satterthwaite assumes equal ones)
    rng = np.random.default_rng(11)
    m0, m1 = 4, 9
    m = m0 + m1
    cluster = np.repeat(np.arange(m), 2)
    time = np.tile([1, 2], m)
    treated = np.r_[np.zeros(m0), np.ones(m1)]
    trt = (time - 1) * treated[cluster]
    y = 0.4 * trt + rng.normal(size=m)[cluster] + rng.normal(size=2 * m)
    X = np.column_stack([np.eye(m)[cluster], (time == 2).astype(float), trt])
    c = np.zeros(X.shape[1])
    c[-1] = 1.0
    r = cr2_fit(X, y, cluster).test(c)
    change = y[1::2] - y[0::2]
    welch = stats.ttest_ind(change[treated == 1], change[treated == 0], equal_var=False)
    assert r["estimate"] == pytest.approx(change[treated == 1].mean()
                                          - change[treated == 0].mean(), rel=1e-12)
    assert r["estimate"] / r["se_cr2"] == pytest.approx(welch.statistic, rel=1e-10)
    assert r["df_cr2"] != pytest.approx(welch.df, rel=1e-3)
    # Imbens & Kolesar (2016): the Bell-McCaffrey df of a two-group difference is the
    # Welch-Satterthwaite df with equal variances: (1/m1 + 1/m0)^2 /
    # (1/(m1^2 (m1 - 1)) + 1/(m0^2 (m0 - 1))) = 5.8276 for 9 and 4 clusters
    ws = (1 / m1 + 1 / m0) ** 2 / (1 / (m1 ** 2 * (m1 - 1)) + 1 / (m0 ** 2 * (m0 - 1)))
    assert ws == pytest.approx(5.827586, abs=1e-6)
    assert r["df_cr2"] == pytest.approx(ws, rel=1e-10)


def test_two_groups_of_singletons_give_welchs_variance_imbens_kolesar() -> None:
    # HC2 of a difference in means is s1^2/n1 + s0^2/n0 (Imbens & Kolesar 2016, eq. 3.3)
    rng = np.random.default_rng(2)
    g = np.r_[np.zeros(7), np.ones(15)]
    y = rng.normal(size=22) * np.where(g == 1, 2.0, 0.5) + g
    fit = cr2_fit(np.column_stack([np.ones(22), g]), y, np.arange(22))
    welch_var = y[g == 1].var(ddof=1) / 15 + y[g == 0].var(ddof=1) / 7
    assert fit.vcov[1, 1] == pytest.approx(welch_var, rel=1e-12)
    ws = (1 / 15 + 1 / 7) ** 2 / (1 / (15 ** 2 * 14) + 1 / (7 ** 2 * 6))
    assert fit.test([0, 1])["df_cr2"] == pytest.approx(ws, rel=1e-10)


def test_cells_give_the_same_numbers_as_rows() -> None:
    # a two-arm comparison from per cluster x arm counts and sums only
    rng = np.random.default_rng(8)
    cl = rng.integers(0, 12, 300)
    arm = (rng.random(300) < 0.3).astype(float)
    y = 0.2 * arm + rng.normal(size=300) + rng.normal(size=12)[cl]
    X = np.column_stack([np.ones(300), arm])
    rows = cr2_fit(X, y, cl)
    gram = np.zeros((12, 2, 2))
    xy = np.zeros((12, 2))
    for j in range(12):
        for a in (0.0, 1.0):
            ix = (cl == j) & (arm == a)
            x = np.array([1.0, a])
            gram[j] += ix.sum() * np.outer(x, x)
            xy[j] += y[ix].sum() * x
    cells = cr2_from_cells(gram, xy)
    assert np.abs(cells.vcov - rows.vcov).max() < 1e-14
    assert cells.test([0, 1])["df_cr2"] == pytest.approx(rows.test([0, 1])["df_cr2"], rel=1e-10)


def test_cr2_needs_two_clusters_and_a_full_rank_design() -> None:
    r = cr2_ols(np.ones((4, 1)), np.array([1.0, 2, 3, 5]), ["a"] * 4)
    assert r["n_clusters"].iloc[0] == 1 and np.isnan(r["se_cr2"].iloc[0])
    with pytest.raises(ValueError, match="rank deficient"):
        cr2_ols(np.ones((4, 2)), np.array([1.0, 2, 3, 5]), list("aabb"))


# --- balance ----------------------------------------------------------------------------------

def test_smd_by_hand() -> None:
    # means 3 and 2, variances 2 and 2 -> 1 / sqrt(2)
    assert smd_mean(np.array([2.0, 4.0]), np.array([1.0, 3.0])) == pytest.approx(2 ** -0.5)
    # 0.5 vs 0.3: 0.2 / sqrt((0.25 + 0.21) / 2)
    assert smd_proportion(0.5, 0.3) == pytest.approx(0.2 / np.sqrt(0.23))


def test_balance_table_by_hand_and_flagged() -> None:
    units = pd.DataFrame({"is_comparison": [False] * 20 + [True] * 20,
                          "gender": ["female"] * 10 + ["male"] * 10
                          + ["female"] * 14 + [None] * 6})
    pre = pd.DataFrame({"is_comparison": [False] * 12 + [True] * 12, "instrument": "icc",
                        "scale": "openness",
                        "score": [3.0, 4.0] * 6 + [3.0, 3.5] * 6})
    b = balance_table(units, categorical=["gender"], pre_scores=pre, k=0)
    assert list(b.columns) == BALANCE_COLUMNS
    ps = b[b.covariate == "pre_score"].iloc[0]
    sd_t, sd_c = np.std([3.0, 4.0] * 6, ddof=1), np.std([3.0, 3.5] * 6, ddof=1)
    assert ps["smd"] == pytest.approx((3.5 - 3.25) / np.sqrt((sd_t ** 2 + sd_c ** 2) / 2))
    assert ps["n_participant"] == 12 and ps["imbalanced"]
    g = b[b.covariate == "gender"].set_index("level")
    assert list(g.index) == ["female", "male", "not reported"]  # missing is its own level
    assert g.loc["female", "value_participant"] == 0.5
    assert g.loc["female", "value_comparison"] == pytest.approx(0.7)
    assert g.loc["female", "smd"] == pytest.approx(smd_proportion(0.5, 0.7))
    assert g.loc["male", "smd"] == pytest.approx(smd_proportion(0.5, 0.0))
    assert bool(g["imbalanced"].all())


def test_balance_recovers_the_true_smd_of_generated_data() -> None:
    rng = np.random.default_rng(21)
    n = 40_000
    comp = rng.random(n) < 0.3
    # pre score: means 3.2 vs 3.0, SD 0.5 in both arms -> true SMD 0.4
    score = rng.normal(np.where(comp, 3.0, 3.2), 0.5)
    # income group: P(high) 0.6 in participants, 0.4 in comparison -> SMD 0.2 / sqrt(0.24)
    high = rng.random(n) < np.where(comp, 0.4, 0.6)
    units = pd.DataFrame({"is_comparison": comp,
                          "income_group": np.where(high, "high", "low")})
    pre = pd.DataFrame({"is_comparison": comp, "instrument": "i", "scale": "s",
                        "score": score})
    b = balance_table(units, categorical=["income_group"], pre_scores=pre)
    assert b.loc[b.covariate == "pre_score", "smd"].iloc[0] == pytest.approx(0.4, abs=0.03)
    hi = b[(b.covariate == "income_group") & (b.level == "high")].iloc[0]
    assert hi["smd"] == pytest.approx(0.2 / np.sqrt(0.24), abs=0.03)


def test_balance_suppresses_small_arms_and_small_levels() -> None:
    units = pd.DataFrame({"is_comparison": [False] * 30 + [True] * 30,
                          "role": ["student"] * 27 + ["teacher"] * 3 + ["student"] * 30,
                          "gender": ["female"] * 15 + ["male"] * 15
                          + ["female"] * 15 + ["male"] * 15})
    b = balance_table(units, categorical=["role", "gender"], k=10)
    role = b[b.covariate == "role"]
    # 3 teachers among the participants: both role rows would reveal them
    assert (role["suppressed"] == "n < 10").all() and role["smd"].isna().all()
    assert role["value_participant"].isna().all()
    gender = b[b.covariate == "gender"]
    assert (gender["suppressed"] == "").all() and gender["smd"].notna().all()
    small = balance_table(units.iloc[:36], categorical=["gender"], k=10)  # 6 comparison people
    assert (small["suppressed"] == "n < 10").all() and small["n_comparison"].isna().all()


# --- raw and adjusted difference ----------------------------------------------------------------

TRUE_EFFECT = 0.3


def _program(seed: int, J: int = 16) -> pd.DataFrame:
    """Exchanges with both arms; comparison people come more often from low-connectivity
    institutions, where people gain less: the raw difference in change is biased upwards by
    0.4 * (P(high | participant) - P(high | comparison)) = 0.4 * (2/3 - 1/4) = 0.167."""
    rng = np.random.default_rng(seed)
    n = 50 * J
    ex = rng.integers(0, J, n)
    high = rng.random(n) < 0.5
    comp = rng.random(n) < np.where(high, 0.2, 0.6)
    u_pre, u_gain = rng.normal(0, 0.3, J), rng.normal(0, 0.15, J)  # exchange effects
    pre = 3.0 + u_pre[ex] + rng.normal(0, 0.6, n)
    post = (1.2 + 0.6 * pre + TRUE_EFFECT * ~comp + 0.4 * high + u_gain[ex]
            + rng.normal(0, 0.4, n))
    return pd.DataFrame({"instrument": "icc", "scale": "openness", "exchange_id": ex,
                         "is_comparison": comp,
                         "connectivity": np.where(high, "high", "low"),
                         "pre": pre, "post": post})


def test_ancova_recovers_the_truth_where_the_raw_difference_is_biased() -> None:
    reps = 200
    est = {METHOD_RAW: [], METHOD_ANCOVA: []}
    cover = {METHOD_RAW: 0, METHOD_ANCOVA: 0}
    for seed in range(reps):
        r = ancova(_program(seed), covariates=["connectivity"]).set_index("method")
        for m in est:
            est[m].append(r.loc[m, "estimate"])
            cover[m] += r.loc[m, "ci_low_cr2"] <= TRUE_EFFECT <= r.loc[m, "ci_high_cr2"]
    bias_raw = np.mean(est[METHOD_RAW]) - TRUE_EFFECT
    assert bias_raw > 0.1  # selection on connectivity: the raw difference is biased
    assert abs(np.mean(est[METHOD_ANCOVA]) - TRUE_EFFECT) < 0.02
    assert 0.90 <= cover[METHOD_ANCOVA] / reps <= 0.99, cover
    assert cover[METHOD_RAW] / reps < 0.7, cover


def test_ancova_rows_columns_and_what_they_adjust_for() -> None:
    d = _program(3)
    r = ancova(d, covariates=["connectivity"])
    assert list(r.columns) == COMPARISON_COLUMNS
    assert r["method"].tolist() == [METHOD_RAW, METHOD_ANCOVA]
    raw, adj = r.iloc[0], r.iloc[1]
    ch = d["post"] - d["pre"]
    assert raw["estimate"] == pytest.approx(ch[~d.is_comparison].mean()
                                            - ch[d.is_comparison].mean(), rel=1e-10)
    assert raw["n_clusters"] == 16 and not raw["few_clusters"]
    assert adj["adjusted_for"] == "pre score, connectivity"
    assert raw["adjusted_for"].startswith("none")
    # the adjusted coefficient is the one OLS gives (statsmodels), CR2 only changes its SE
    X = np.column_stack([np.ones(len(d)), d["pre"], ~d["is_comparison"],
                         d["connectivity"] == "low"]).astype(float)
    ols = sm.OLS(d["post"].to_numpy(float), X).fit()
    assert adj["estimate"] == pytest.approx(ols.params[2], rel=1e-10)


def test_ancova_suppresses_a_small_arm_and_flags_few_clusters() -> None:
    d = _program(4, J=6)
    few = ancova(d, covariates=["connectivity"])
    assert few["few_clusters"].all() and (few["n_clusters"] == 6).all()
    comp = d[d.is_comparison].index[:5]
    small = ancova(pd.concat([d[~d.is_comparison], d.loc[comp]]), k=10)
    assert (small["suppressed"] == "n < 10").all()
    assert small["estimate"].isna().all() and small["n_comparison"].isna().all()


@pytest.mark.parametrize("seed", range(6))
def test_ancova_from_cell_sums_equals_the_row_design(seed: int) -> None:
    """`ancova` runs on per-cell sums (`pair_cells` -> `ancova_cells`); the same model written
    on the rows (`_design`'s QR column choice, `cr2_fit`) gives the same numbers: a covariate
    level present in one arm only, a level aliased with another covariate, a constant
    covariate and a missing level all decided alike."""
    from analytics.stats.comparison import _design, ancova_cells, pair_cells

    rng = np.random.default_rng(seed)
    d = _program(seed, J=int(rng.integers(3, 12)))
    n = len(d)
    d["age_band"] = rng.choice(["13–15", "16–18", "19–24"], n)
    d.loc[d.is_comparison & (d.age_band == "19–24"), "age_band"] = "16–18"  # one arm only
    d["kind"] = np.where(d.connectivity == "high", "school", "university")  # aliased
    d["income"] = "H"  # constant
    d.loc[rng.random(n) < 0.1, "income"] = None  # "not reported"
    d.loc[rng.random(n) < 0.05, "post"] = np.nan
    covs = ["connectivity", "age_band", "kind", "income"]
    got = ancova(d, covariates=covs).set_index("method")
    both = d[d.post.notna()]
    for method, y, numeric, cats in [
            (METHOD_RAW, both.post - both.pre, ["_participant"], []),
            (METHOD_ANCOVA, both.post, ["pre", "_participant"], covs)]:
        X, names = _design(both.assign(_participant=(~both.is_comparison).astype(float)),
                           numeric, cats)
        want = cr2_ols(X, y.to_numpy(float), both.exchange_id.to_numpy(), names)
        want = want.set_index("term").loc["_participant"]
        for c in ["estimate", "se_cr2", "df_cr2", "ci_low_cr2", "ci_high_cr2", "p_cr2"]:
            assert got.loc[method, c] == pytest.approx(want[c], rel=1e-9, abs=1e-12), (method, c)
        assert got.loc[method, "n_clusters"] == want["n_clusters"]
    assert got.loc[METHOD_ANCOVA, "adjusted_for"] == "pre score, connectivity, age_band, income"
    # the cells are the units' sums: splitting a cell in two changes nothing
    keys = ["instrument", "scale", "exchange_id", "is_comparison", *covs]
    cells = pair_cells(d, keys=keys)
    assert cells.n.sum() == len(both) and (cells.n > 1).any()
    moments = ["s_pre", "s_post", "s_pre2", "s_prepost", "s_post2"]
    share = (cells.n // 2) / cells.n
    half = cells.assign(n=cells.n // 2, **{c: cells[c] * share for c in moments})
    rest = cells.assign(n=cells.n - half.n, **{c: cells[c] - half[c] for c in moments})
    split = ancova_cells(pd.concat([half[half.n > 0], rest]), covariates=covs).set_index("method")
    np.testing.assert_allclose(split[["estimate", "se_cr2", "df_cr2"]].to_numpy(float),
                               got[["estimate", "se_cr2", "df_cr2"]].to_numpy(float), rtol=1e-9)


# An ANCOVA-like design of 8 rows in 5 clusters (one row unlabelled): the dummy of level 1 is
# 1 only in two rows of cluster "b", so its coefficient is informed by nothing but directions
# in which cluster "b" has leverage 1: its CR2 variance is 0 in exact arithmetic, whatever y.
_LEVERAGE_ONE_X = np.array([
    [1, 0, 1.75, 0, 1], [1, 1, 1.25, 0, 0], [1, 0, 2.25, 0, 0], [1, 0, 4.5, 0, 1],
    [1, 1, 2.5, 1, 0], [1, 1, 3.25, 1, 0], [1, 0, 5.0, 0, 0], [1, 1, 4.5, 0, 0]])
_LEVERAGE_ONE_Y = np.array([2.89, 1.49, 2.67, 4.02, 3.74, 3.85, 5.28, 3.35])
_LEVERAGE_ONE_CL = np.array([None, "b", "a", "c", "b", "b", "d", "b"], dtype=object)


def _not_estimable(t: dict) -> bool:
    return all(np.isnan(t[k]) for k in ("se_cr2", "df_cr2", "ci_low_cr2", "ci_high_cr2",
                                         "p_cr2"))


def test_a_cr2_variance_zero_in_exact_arithmetic_is_not_estimable_not_rounding_noise() -> None:
    """Before: se 4e-16, df 1.0 and p 2e-16 for the level-1 coefficient (rounding presented as
    a certain effect). Now se, df, CI and p are NaN and the estimate is kept; the other
    coefficients still equal the definition written out."""
    X, y, cl = _LEVERAGE_ONE_X, _LEVERAGE_ONE_Y, _LEVERAGE_ONE_CL
    fit = cr2_fit(X, y, cl)
    eye = np.eye(X.shape[1])
    codes = np.array([0, 1, 2, 3, 1, 1, 4, 1])  # the unlabelled row a cluster of its own
    for i in range(X.shape[1]):
        t = fit.test(eye[i])
        assert t["estimate"] == pytest.approx(fit.beta[i], rel=1e-12)
        V, df = _brute_force(X, y, codes, eye[i])
        if i == 3:
            assert V[3, 3] < 1e-28  # 0 by the definition too
            assert _not_estimable(t), t
        else:
            assert t["se_cr2"] == pytest.approx(np.sqrt(V[i, i]), rel=1e-10)
            assert t["df_cr2"] == pytest.approx(df, rel=1e-10)
            assert np.isfinite([t["ci_low_cr2"], t["p_cr2"]]).all()
    row = cr2_ols(X, y, cl).iloc[3]
    assert np.isfinite(row["estimate"]) and np.isnan(row[["se_cr2", "df_cr2", "p_cr2"]]
                                                     .to_numpy(float)).all()
    # the same from cells, and whatever y is (the decision is the design's)
    for yy in (y, y * 1e6 + 3.0, np.random.default_rng(0).normal(size=len(y))):
        assert _not_estimable(cr2_fit(X, yy, cl).test(eye[3]))


def test_a_mean_from_one_cluster_is_not_estimable_and_a_perfect_fit_neither() -> None:
    rng = np.random.default_rng(3)
    cl = np.r_[np.zeros(3), np.repeat(np.arange(1, 9), 3)]
    X = np.column_stack([np.ones(len(cl)), cl == 0]).astype(float)
    y = rng.normal(size=len(cl))
    fit = cr2_fit(X, y, cl)
    # the arm's mean rests on one cluster: CR2 cannot see its variance (se was reported 0)
    t = fit.test(np.array([1.0, 1.0]))
    assert t["estimate"] == pytest.approx(y[:3].mean()) and _not_estimable(t)
    assert not _not_estimable(fit.test(np.array([0.0, 1.0])))  # the difference still is
    # scores the design reproduces exactly (every cluster's residuals 0): se was ~1e-15 with
    # p ~1e-45 from rounding
    X2 = np.column_stack([np.ones(30), rng.random(30) < 0.5, rng.integers(4, 21, 30) / 4])
    exact = X2 @ np.array([0.1, 0.7, 0.3])
    fit2 = cr2_fit(X2, exact, rng.integers(0, 6, 30))
    for i in range(3):
        t = fit2.test(np.eye(3)[i])
        assert t["estimate"] == pytest.approx([0.1, 0.7, 0.3][i]) and _not_estimable(t), t
    # a small but real variance is still a number: the tolerance is relative
    tiny = exact + 1e-9 * rng.normal(size=30)
    t = cr2_fit(X2, tiny, rng.integers(0, 6, 30)).test(np.eye(3)[1])
    assert 0 < t["se_cr2"] < 1e-8 and np.isfinite(t["p_cr2"])
