"""Measurement across languages and countries (issue 10 §4): McDonald's ω, reliability by
group, floor and ceiling shares, and the invariance (DIF) screen, on known truths, against
semopy and statsmodels, and on the demo program with its planted non-invariant item."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import surveys
from analytics.outputs import codebook
from analytics.stats.measurement import (
    DIF_MIN_N,
    FLOOR_CEILING_SHARE,
    dif_screen,
    floor_ceiling,
)
from analytics.stats.reliability import (
    cronbach_alpha,
    mcdonald_omega,
    one_factor_ml,
    reliability_groups,
)
from analytics.stats.scales import item_table
from etl.languages import language_code
from tests.analytics_fixture import demo_warehouse


def _congeneric(n: int, loadings: list[float], uniq: list[float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lam, psi = np.array(loadings), np.array(uniq)
    return rng.normal(size=n)[:, None] * lam + rng.normal(size=(n, len(lam))) * np.sqrt(psi)


def _true_omega(loadings: list[float], uniq: list[float]) -> float:
    return sum(loadings) ** 2 / (sum(loadings) ** 2 + sum(uniq))


# --- McDonald's omega -------------------------------------------------------------------------

@pytest.mark.parametrize(("loadings", "uniq"), [
    ([0.9, 0.7, 0.5, 0.4], [0.4, 0.6, 0.8, 1.0]),
    ([0.8, 0.8, 0.6, 0.5, 0.3], [0.3, 0.5, 0.6, 0.7, 0.9]),
])
def test_omega_recovers_the_known_omega_of_simulated_congeneric_items(loadings, uniq):
    x = _congeneric(200_000, loadings, uniq, seed=5)
    assert mcdonald_omega(x) == pytest.approx(_true_omega(loadings, uniq), abs=0.003)
    # congeneric (unequal loadings): alpha understates the reliability; omega does not
    assert cronbach_alpha(pd.DataFrame(x))[0] < mcdonald_omega(x) - 0.005


def test_omega_equals_alpha_for_tau_equivalent_items():
    x = _congeneric(200_000, [0.7] * 4, [0.5, 0.7, 0.9, 0.6], seed=6)
    assert mcdonald_omega(x) == pytest.approx(cronbach_alpha(pd.DataFrame(x))[0], abs=0.002)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_factor_fit_equals_semopys_cfa(seed):
    import semopy

    x = _congeneric(400, [0.9, 0.7, 0.5, 0.6], [0.4, 0.6, 0.8, 0.5], seed=seed)
    cols = [f"x{i}" for i in range(4)]
    model = semopy.Model("F =~ " + " + ".join(cols))
    model.fit(pd.DataFrame(x, columns=cols), solver="L-BFGS-B")
    est = model.inspect()
    lam = est[(est["op"] == "~") & (est["rval"] == "F")]["Estimate"].to_numpy(float)
    phi = float(est[(est["lval"] == "F") & (est["op"] == "~~")]["Estimate"].iloc[0])
    psi = est[(est["op"] == "~~") & (est["lval"] != "F")]["Estimate"].to_numpy(float)
    # semopy's ML uses the covariance with divisor n: loadings scale by sqrt((n-1)/n)
    mine_lam, mine_psi = one_factor_ml(np.cov(x.T, bias=True))
    assert mine_lam == pytest.approx(lam * np.sqrt(phi), abs=5e-4)
    assert mine_psi == pytest.approx(psi, abs=5e-4)
    sem_omega = lam.sum() ** 2 * phi / (lam.sum() ** 2 * phi + psi.sum())
    assert mcdonald_omega(x) == pytest.approx(sem_omega, abs=1e-4)


def test_three_items_give_the_just_identified_closed_form():
    s = np.cov(_congeneric(500, [0.9, 0.7, 0.5], [0.4, 0.6, 0.8], seed=9).T)
    lam, psi = one_factor_ml(s)
    # with three indicators the one-factor model is exactly identified: λ1² = s12 s13 / s23 …
    l2 = [s[0, 1] * s[0, 2] / s[1, 2], s[0, 1] * s[1, 2] / s[0, 2], s[0, 2] * s[1, 2] / s[0, 1]]
    assert lam**2 == pytest.approx(l2, rel=1e-8)
    assert psi == pytest.approx(np.diag(s) - l2, rel=1e-8)


def test_omega_needs_three_items():
    assert np.isnan(mcdonald_omega(_congeneric(100, [0.8, 0.7], [0.4, 0.5], seed=1)))


# --- reliability by group ---------------------------------------------------------------------

def _groups_frame() -> pd.DataFrame:
    """Two languages × two countries, one wave; Spanish answers are noise in item c."""
    rng = np.random.default_rng(11)
    rows = []
    for lang, country, n in (("en", "GBR", 400), ("es", "ESP", 300), ("es", "MEX", 20)):
        x = _congeneric(n, [0.8, 0.8, 0.8, 0.8], [0.36] * 4, seed=int(rng.integers(1e9)))
        if lang == "es":
            x[:, :3] = rng.normal(size=(n, 3))  # items unrelated: alpha near 0
        d = pd.DataFrame(x, columns=list("abcd"))
        rows.append(d.assign(language=lang, country=country, wave="pre"))
    return pd.concat(rows, ignore_index=True)


def test_reliability_groups_gives_each_language_and_country_its_own_alpha_and_omega():
    out = reliability_groups(_groups_frame(), items=list("abcd"), instrument="i", scale="s")
    got = {(r.group_by, r.group): r for r in out.itertuples()}
    assert set(got) == {("all", "all"), ("language", "en"), ("language", "es"),
                        ("country", "GBR"), ("country", "ESP"), ("country", "MEX")}
    en, es = got[("language", "en")], got[("language", "es")]
    assert en.n == 400 and es.n == 320
    true_omega = _true_omega([0.8] * 4, [0.36] * 4)
    assert en.omega == pytest.approx(true_omega, abs=0.03)
    assert not en.below_threshold and es.below_threshold  # alpha or omega < 0.70
    assert not en.small_n
    mex = got[("country", "MEX")]
    assert mex.small_n and np.isnan(mex.omega) and not np.isnan(mex.alpha)  # n = 20 < 40
    sub = _groups_frame().query("language == 'en'")[list("abcd")]
    assert en.alpha == pytest.approx(cronbach_alpha(sub)[0], abs=1e-12)


# --- floor and ceiling ------------------------------------------------------------------------

def test_floor_and_ceiling_shares_and_the_15_percent_flag():
    scores = pd.DataFrame({
        "wave": ["pre"] * 10 + ["post"] * 10,
        "score": [1, 1, 2, 3, 3, 3, 4, 4, 4.5, 5] + [5, 5, 4.75, 4, 4, 3, 3, 2, 1.25, np.nan],
    })
    out = floor_ceiling(scores, instrument="i", scale="s", scale_min=1, scale_max=5)
    pre, post = (out.set_index("wave").loc[w] for w in ("pre", "post"))
    assert (pre.n, pre.n_floor, pre.n_ceiling) == (10, 2, 1)
    assert (pre.floor_share, pre.ceiling_share) == (0.2, 0.1)
    assert pre.floor_effect and not pre.ceiling_effect  # 20% > 15% at the floor
    assert (post.n, post.n_floor, post.n_ceiling) == (9, 0, 2)  # missing score not counted
    assert post.ceiling_effect == (2 / 9 > FLOOR_CEILING_SHARE)


# --- invariance across languages (DIF screen) -------------------------------------------------

def _languages(seed: int, shift: float = 0.0, item: int = 2) -> pd.DataFrame:
    """Likert answers (1-5) of four items in three languages whose latent means differ; `shift`
    moves one item's answers in Spanish (an intercept shift)."""
    rng = np.random.default_rng(seed)
    parts = []
    for lang, n, mu in (("en", 1200, 0.0), ("es", 250, 0.3), ("fr", 160, -0.25), ("de", 40, 0)):
        theta = 3 + 0.6 * (mu + rng.normal(size=n))
        x = theta[:, None] + rng.normal(0, 0.6, (n, 4))
        if lang == "es":
            x[:, item] += shift
        x = np.clip(np.rint(x), 1, 5)
        parts.append(pd.DataFrame(x, columns=list("abcd")).assign(language=lang))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("seed", range(5))
def test_dif_screen_finds_nothing_when_every_item_is_invariant(seed):
    out = dif_screen(_languages(seed), items=list("abcd"), instrument="i", scale="s")
    assert not out["differs"].any()
    assert out["verdict"].iloc[0] == (f"invariant across en, es, fr (not checked, fewer than "
                                      f"{DIF_MIN_N}: de)")


@pytest.mark.parametrize("seed", range(3))
def test_dif_screen_finds_exactly_the_shifted_item(seed):
    out = dif_screen(_languages(seed, shift=1.0), items=list("abcd"), instrument="i",
                     scale="s")
    assert out.loc[out["differs"], ["item", "language"]].values.tolist() == [["c", "es"]]
    assert out["verdict"].iloc[0].startswith("item c differs in es")
    assert out.loc[out["differs"], "shift"].iloc[0] == pytest.approx(1.0, abs=0.25)


def test_dif_screen_statistics_equal_statsmodels():
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm
    from statsmodels.stats.multitest import multipletests

    d = _languages(0, shift=0.5)
    out = dif_screen(d, items=list("abcd"), instrument="i", scale="s")
    row = out[(out["item"] == "b") & (out["language"] == "fr")].iloc[0]
    sub = d[d["language"].isin(["en", "fr"])].assign(
        rest=lambda x: x["a"] + x["c"] + x["d"], fr=lambda x: (x["language"] == "fr") * 1.0)
    m0 = smf.ols("b ~ rest", sub).fit()
    m2 = smf.ols("b ~ rest * fr", sub).fit()
    table = anova_lm(m0, m2)
    assert row["f"] == pytest.approx(table["F"].iloc[1], rel=1e-9)
    assert row["p"] == pytest.approx(table["Pr(>F)"].iloc[1], rel=1e-9)
    assert row["delta_r2"] == pytest.approx(m2.rsquared - m0.rsquared, rel=1e-9)
    assert row["shift"] == pytest.approx(smf.ols("b ~ rest + fr", sub).fit().params["fr"])
    holm = multipletests(out["p"], method="holm")[1]
    assert out["p_holm"].to_numpy() == pytest.approx(holm, rel=1e-12)


def test_dif_screen_says_too_few_per_language():
    d = _languages(1)
    out = dif_screen(d[d["language"].isin(["en", "de"])], items=list("abcd"), instrument="i",
                     scale="s")
    assert len(out) == 1 and pd.isna(out["item"].iloc[0])
    assert out["verdict"].iloc[0].startswith("too few per language: only en has")


# --- on the demo program ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo() -> Path:
    return demo_warehouse()


def _q(wh: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_the_demo_invariance_check_finds_exactly_the_planted_item(demo: Path) -> None:
    planted = json.loads((demo.parent / "demo" / "truth.json").read_text())[
        "measurement_invariance"]["planted"]
    inv = _q(demo, "SELECT * FROM res_invariance")
    found = inv.loc[inv["differs"].fillna(False).astype(bool), ["item", "language"]]
    assert found.values.tolist() == [[planted["item"], planted["language"]]]
    scale = item_table(surveys.load_instruments()).set_index("item").loc[planted["item"],
                                                                          "scale"]
    verdicts = inv.drop_duplicates("scale").set_index("scale")["verdict"]
    assert verdicts[scale].startswith(f"item {planted['item']} differs in {planted['language']}")
    assert all(v.startswith(("invariant", "too few")) for s, v in verdicts.items() if s != scale)


def _demo_pre_wide(out: Path) -> pd.DataFrame:
    """The demo's pre answers read from its files: language from the exchange, reverse coded,
    the answers planted out of range dropped."""
    resp = pd.read_csv(out / "responses.csv")
    ex = pd.read_csv(out / "exchanges.csv", usecols=["exchange_id", "language"])
    ex["language"] = ex["language"].map(language_code)
    pre = resp[resp["wave"] == "pre"].merge(ex, on="exchange_id")
    items = item_table(surveys.load_instruments())
    for it in items.itertuples():
        v = pre[it.item].where(pre[it.item].between(it.min, it.max))
        pre[it.item] = it.min + it.max - v if it.reverse else v
    return pre


# seeds whose 2,000-person demo has 100+ Spanish respondents with every item answered (at
# other seeds Spanish is "not checked", and a test of it would be empty)
@pytest.mark.parametrize("seed", [3, 7, 8])
def test_a_demo_without_the_planted_item_shows_no_difference(tmp_path: Path, monkeypatch,
                                                             seed: int) -> None:
    from etl import demo as demo_mod

    monkeypatch.setattr(demo_mod, "DIF_PLANT", None)
    truth = demo_mod.generate_demo(tmp_path, participants=2000, seed=seed, progress=False)
    assert truth["measurement_invariance"]["planted"] is None
    pre = _demo_pre_wide(tmp_path)
    items = item_table(surveys.load_instruments())
    for (inst, sc), its in items.groupby(["instrument", "scale"]):
        out = dif_screen(pre, items=list(its["item"]), instrument=inst, scale=sc)
        assert (out["language"] == "es").any()  # Spanish was compared with English
        assert not out["differs"].any(), out[out["differs"]]


def test_the_planted_item_is_found_in_the_demo_files_too(tmp_path: Path) -> None:
    from etl.demo import generate_demo

    truth = generate_demo(tmp_path, participants=2000, seed=8, progress=False)
    planted = truth["measurement_invariance"]["planted"]
    pre = _demo_pre_wide(tmp_path)
    found = []
    for (inst, sc), its in item_table(surveys.load_instruments()).groupby(["instrument",
                                                                           "scale"]):
        out = dif_screen(pre, items=list(its["item"]), instrument=inst, scale=sc)
        found += out.loc[out["differs"].astype(bool), ["item", "language"]].values.tolist()
    assert found == [[planted["item"], planted["language"]]]


def test_demo_reliability_by_language_and_floor_ceiling_are_stored(demo: Path) -> None:
    rel = _q(demo, "SELECT * FROM res_reliability_groups")
    assert set(rel["group_by"]) == {"all", "language", "country"}
    big = rel[(rel["group_by"] == "language") & (rel["n"] >= 100)]
    assert {"en", "es"} <= set(big["group"])
    # the generator's design alpha is 0.78 for every scale and language (truth.json)
    assert big["alpha"].between(0.6, 0.9).all() and big["omega"].between(0.6, 0.9).all()
    # every group of the 2,000-person demo has 10 or more respondents; at k = 20 some do not
    from analytics.derive.materialise import compute_results

    con = duckdb.connect(str(demo), read_only=True)
    try:
        at20 = compute_results(con, min_cell=20, tables=["reliability_groups"]).tables[
            "reliability_groups"]
    finally:
        con.close()
    small = at20[at20["suppressed"].fillna("") != ""]
    assert len(small) and (small["suppressed"] == "n < 20").all()
    assert small[["n", "alpha", "alpha_ci_low", "alpha_ci_high", "omega"]].isna().all().all()
    shown = at20[at20["suppressed"].fillna("") == ""]
    assert (shown["n"] >= 20).all() and shown["alpha"].notna().all()
    # floor and ceiling: recomputed from the stored scale scores by pandas
    fc = _q(demo, "SELECT * FROM res_floor_ceiling").set_index(["instrument", "scale", "wave"])
    sc = _q(demo, "SELECT instrument, scale, wave, score FROM res_scale_scores "
                  "WHERE score IS NOT NULL")
    bounds = item_table(surveys.load_instruments()).drop_duplicates(["instrument", "scale"])
    sc = sc.merge(bounds[["instrument", "scale", "min", "max"]], on=["instrument", "scale"])
    for key, g in sc.groupby(["instrument", "scale", "wave"]):
        row = fc.loc[key]
        assert row["n"] == len(g)
        n_top = int((g["score"] == g["max"]).sum())
        if n_top == 0 or n_top >= 10:
            assert row["n_ceiling"] == n_top
            assert row["ceiling_share"] == pytest.approx(n_top / len(g))
        else:  # a subset under k: blanked
            assert pd.isna(row["n_ceiling"]) and pd.isna(row["ceiling_share"])


def test_codebook_describes_every_column_of_the_new_tables() -> None:
    for table in ("reliability_groups", "floor_ceiling", "invariance"):
        cols = codebook.export_columns(table)
        assert all(c.doc for c in cols), table
        assert codebook.METHODS[table]


def test_the_outcomes_page_shows_verdicts_reliability_by_language_and_floor_ceiling(
        demo: Path) -> None:
    import os
    import subprocess
    import sys

    code = (
        "import json, app, plotly; from pages import outcomes; "
        "print(json.dumps(outcomes.measurement(None), ensure_ascii=False, "
        "cls=plotly.utils.PlotlyJSONEncoder))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1], timeout=300,
                       env={**os.environ, "EXCHANGE_IMPACT_WAREHOUSE": str(demo)})
    assert r.returncode == 0, r.stderr[-3000:]
    page = r.stdout
    # The verdict in the page's words: the item's wording (here English) and the language's
    # name (issue 15), from analytics' "item gcit_3 differs in es".
    from surveys import load_instruments

    wording = next(s.wording["gcit_3"]["en"] for s in load_instruments()["gcit"].scales
                   if "gcit_3" in s.items)
    assert f"item “{wording}” (gcit_3) differs in Spanish" in page
    assert "outcomes-reliability-languages" in page and "α 0." in page and "ω 0." in page
    assert "outcomes-floor-ceiling" in page and "pre: floor · ceiling" in page
    assert "not a validated instrument" in page  # the assumptions, where the numbers are


def test_the_data_page_warns_of_languages_and_countries_below_the_threshold(demo: Path) -> None:
    import os
    import subprocess
    import sys

    code = ("import json, app, plotly; from pages import data; "
            "print(json.dumps(data._group_warnings(), ensure_ascii=False, "
            "cls=plotly.utils.PlotlyJSONEncoder))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1], timeout=300,
                       env={**os.environ, "EXCHANGE_IMPACT_WAREHOUSE": str(demo)})
    assert r.returncode == 0, r.stderr[-3000:]
    rel = _q(demo, "SELECT * FROM res_reliability_groups WHERE group_by <> 'all' "
                   "AND below_threshold AND NOT small_n")
    assert len(rel)  # the 2,000-person demo has some (e.g. a language of 70 at alpha 0.67)
    assert "data-group-reliability" in r.stdout
    for g in set(rel["group"]):
        assert f'"{g}"' in r.stdout
