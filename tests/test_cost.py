"""Cost per outcome (issue 13): analytics.stats.cost on hand-made frames, the rates input kind's
rejects through the real command line, and res_cost on the demo against its truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from analytics.stats.cost import clustered_mean, convert_budgets, cost_per_outcome
from tests import program as P


def _units(spec: dict[str, list[float | None]], active: dict[str, int] | None = None
           ) -> pd.DataFrame:
    """Units per exchange: gains (None = no pre/post pair); the first `active[x]` are active."""
    rows = []
    for x, gains in spec.items():
        for i, g in enumerate(gains):
            rows.append({"exchange_id": x, "gain": np.nan if g is None else g,
                         "active": i < (active or {}).get(x, len(gains))})
    return pd.DataFrame(rows)


EX = pd.DataFrame({
    "exchange_id": ["X1", "X2", "X3", "X4"],
    "program": ["P", "P", "Q", "Q"],
    "cluster": ["C1", "C1", "C1", "C2"],
    "budget": [1000.0, 2160.0, None, 4300.0],
    "currency": ["EUR", "USD", None, "PLN"],
    "year": [2025, 2025, 2025, 2024],
})


def test_missing_budgets_are_counted_not_zero():
    units = _units({"X1": [0.5] * 4, "X2": [0.5] * 4, "X3": [0.5] * 4, "X4": [0.5] * 4})
    r = cost_per_outcome(EX, units, k=0, groupings=("overall", "program"))
    overall = r[r["group_by"] == "overall"]
    assert set(overall["n_exchanges_no_budget"]) == {1}
    assert set(overall["n_exchanges_group"]) == {4}
    assert all("1 of 4 exchanges have no budget" in n for n in overall["note"])
    # X3's participants are in no cost: each currency row counts only its own exchanges' units.
    assert overall["n_participants"].sum() == 12
    q = r[(r["group_by"] == "program") & (r["group"] == "Q")]
    assert q["currency"].tolist() == ["PLN"]  # X3 (no budget) left out, X4 counted
    assert int(q["n_exchanges_no_budget"].iloc[0]) == 1
    # A group whose exchanges have no budget at all: one row, no figures, the count.
    only = cost_per_outcome(EX[EX["exchange_id"] == "X3"], units, k=0, groupings=("overall",))
    assert len(only) == 1 and pd.isna(only["currency"].iloc[0])
    assert pd.isna(only["budget"].iloc[0]) and only["n_exchanges_no_budget"].iloc[0] == 1
    assert "no cost figures" in only["note"].iloc[0]


def test_mixed_currencies_without_rates_stay_apart():
    units = _units({"X1": [0.5] * 4, "X2": [0.5] * 2, "X4": [0.5] * 5}, active={"X1": 2})
    r = cost_per_outcome(EX, units, k=0, groupings=("overall",))
    assert r["currency"].tolist() == ["EUR", "PLN", "USD"]
    assert not r["converted"].any()
    by = r.set_index("currency")
    assert by.loc["EUR", "budget"] == 1000.0 and by.loc["EUR", "cost_per_participant"] == 250.0
    assert by.loc["EUR", "cost_per_active"] == 500.0  # 2 of X1's 4 are active
    assert by.loc["USD", "cost_per_participant"] == 1080.0
    assert by.loc["PLN", "cost_per_participant"] == 860.0


def test_with_rates_budgets_convert_by_hand():
    rates = pd.DataFrame({"currency": ["USD", "PLN", "EUR"], "year": [2025, 2024, 2025],
                          "rate": [1.08, 4.3, 1.0], "base": "EUR"})
    units = _units({"X1": [0.4, 0.6], "X2": [0.5, 0.5], "X4": [0.2, 0.4, 0.6, None]})
    r = cost_per_outcome(EX, units, rates, k=0, groupings=("overall",))
    assert len(r) == 1
    row = r.iloc[0]
    assert row["currency"] == "EUR" and bool(row["converted"])
    assert row["converted_from"] == "EUR, PLN, USD"
    # 1000 EUR + 2160 USD / 1.08 + 4300 PLN / 4.3 = 1000 + 2000 + 1000 = 4000 EUR, 8 people
    assert row["budget"] == pytest.approx(4000.0)
    assert row["cost_per_participant"] == pytest.approx(500.0)
    # gains: 7 units, mean 3.2 / 7; cost per unit = 500 / (3.2 / 7) = 1093.75
    assert row["mean_gain"] == pytest.approx(3.2 / 7)
    assert row["cost_per_gain"] == pytest.approx(500 / (3.2 / 7))
    lo, hi = row["mean_gain_ci_low"], row["mean_gain_ci_high"]
    assert 0 < lo < hi
    assert row["cost_per_gain_ci_low"] == pytest.approx(500 / hi)
    assert row["cost_per_gain_ci_high"] == pytest.approx(500 / lo)
    assert not bool(row["unbounded"])


def test_a_currency_year_without_a_rate_stays_in_its_own_currency():
    rates = pd.DataFrame({"currency": ["USD", "PLN"], "year": [2025, 2025],  # PLN 2024 absent
                          "rate": [1.08, 4.3], "base": "EUR"})
    x = convert_budgets(EX, rates)
    assert x.set_index("exchange_id").loc["X4", "missing_rate"] == "PLN 2024"
    units = _units({"X1": [0.5] * 2, "X2": [0.5] * 2, "X4": [0.5] * 2})
    r = cost_per_outcome(EX, units, rates, k=0, groupings=("overall",)).set_index("currency")
    assert list(r.index) == ["EUR", "PLN"]
    assert r.loc["EUR", "budget"] == pytest.approx(3000.0)
    assert r.loc["EUR", "converted_from"] == "EUR, USD"
    assert r.loc["PLN", "budget"] == 4300.0 and not bool(r.loc["PLN", "converted"])
    assert all("no rate for PLN 2024" in n for n in r["note"])


def test_a_gain_interval_crossing_zero_is_unbounded_not_a_huge_number():
    units = _units({"X1": [0.3, 0.1, 0.2], "X2": [-0.25, -0.1, -0.15], "X4": [0.5, 0.4]})
    # One currency for all three, so the row pools their gains.
    ex = EX.assign(currency=["EUR", "EUR", None, "EUR"], budget=[1000.0, 1000.0, None, 1000.0])
    r = cost_per_outcome(ex, units, k=0, groupings=("overall",)).iloc[0]
    assert r["mean_gain"] > 0 and r["mean_gain_ci_low"] < 0
    assert bool(r["unbounded"]) and pd.isna(r["cost_per_gain_ci_high"])
    assert r["cost_per_gain_ci_low"] == pytest.approx(r["cost_per_participant"]
                                                      / r["mean_gain_ci_high"])
    assert "unbounded" in r["note"]
    # A mean gain at or below 0: no cost per unit of gain at all.
    neg = cost_per_outcome(ex, _units({"X1": [-0.2, -0.1], "X2": [0.05, -0.1]}), k=0,
                           groupings=("overall",)).iloc[0]
    assert pd.isna(neg["cost_per_gain"]) and pd.isna(neg["cost_per_gain_ci_low"])
    assert "no cost per unit of gain" in neg["note"]


def test_clustered_interval_equals_statsmodels_cluster_robust_ols():
    rng = np.random.default_rng(3)
    cl = np.repeat(np.arange(7), rng.integers(2, 9, 7))
    y = rng.normal(0.3, 1, len(cl)) + rng.normal(0, 0.5, 7)[cl]
    m, lo, hi, g = clustered_mean(y, cl)
    fit = sm.OLS(y, np.ones((len(y), 1))).fit(cov_type="cluster", cov_kwds={"groups": cl},
                                             use_t=True)
    ci = fit.conf_int()[0]
    assert g == 7
    assert m == pytest.approx(fit.params[0], abs=1e-12)
    assert (lo, hi) == pytest.approx((ci[0], ci[1]), abs=1e-10)


def test_small_cells_blank_the_numbers_and_keep_the_row():
    units = _units({"X1": [0.5] * 12, "X2": [0.5] * 3, "X4": [0.5] * 4 + [None] * 8})
    r = cost_per_outcome(EX, units, k=10, groupings=("overall",)).set_index("currency")
    assert r.loc["USD", "suppressed"] == "n < 10"
    assert pd.isna(r.loc["USD", "budget"]) and pd.isna(r.loc["USD", "cost_per_participant"])
    assert r.loc["EUR", "suppressed"] == "" and r.loc["EUR", "cost_per_participant"] > 0
    # PLN: 12 participants, 4 with a gain: the cost per head stays, the gain figures go.
    assert r.loc["PLN", "suppressed"] == "gain n < 10"
    assert r.loc["PLN", "cost_per_participant"] == pytest.approx(4300 / 12)
    assert pd.isna(r.loc["PLN", "mean_gain"]) and pd.isna(r.loc["PLN", "cost_per_gain"])


def test_rates_loader_rejects_name_file_row_and_rule(tmp_path: Path):
    f = tmp_path / "exchange_rates_2025.csv"  # named "exchange…": still read as rates
    f.write_text("currency,year,rate,base\n"
                 "usd,2025,1.08,EUR\n"     # row 2: loads, code upper-cased
                 "EUR,2025,1,eur\n"        # row 3: the base against itself
                 "XYZ1,2025,2,EUR\n"       # row 4: not an ISO 4217 code
                 "KES,2025,0,EUR\n"        # row 5: non-positive
                 "USD,2025,1.1,EUR\n"      # row 6: same currency-year as row 2
                 "EUR,2026,2,EUR\n"        # row 7: base against itself must be 1
                 "SEK,2025,11.3,\n",       # row 8: no base
                 encoding="utf-8")
    wh = tmp_path / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(f), "--warehouse", str(wh))
    assert res.returncode == 3, res.stderr  # loaded, with rejected rows
    assert P.q(wh, "SELECT kind FROM load_batches") == [("rates",)]
    assert P.q(wh, "SELECT currency, year, rate, base FROM rates ORDER BY 1") == [
        ("EUR", 2025, 1.0, "EUR"), ("USD", 2025, 1.08, "EUR")]
    got = {(Path(fl).name, r, c, rule) for fl, r, c, rule in P.q(
        wh, "SELECT file, row_number, column_name, rule FROM rejects")}
    assert got == {(f.name, 4, "currency", "currency"), (f.name, 5, "rate", "positive"),
                   (f.name, 6, "currency", "duplicate"), (f.name, 7, "rate", "base_rate"),
                   (f.name, 8, "base", "required")}
    assert f"{f}: row 5, column rate: positive: rate '0' is not positive" in res.stdout
    again = P.run_etl("load", str(f), "--warehouse", str(wh))
    assert "unchanged" in again.stdout
    assert P.q(wh, "SELECT count(*) FROM rates") == [(2,)]


@pytest.fixture(scope="module")
def demo() -> Path:
    from tests.analytics_fixture import demo_warehouse

    return demo_warehouse()


def test_demo_cost_recovers_the_budgets_converted_into_eur(demo: Path):
    truth = json.loads((demo.parent / "demo" / "truth.json").read_text())["cost"]
    rows = P.q(demo, "SELECT currency, converted, budget, n_exchanges, n_exchanges_group, "
                     "n_exchanges_no_budget, cost_per_gain, cost_per_gain_ci_low, "
                     "cost_per_gain_ci_high, unbounded FROM res_cost WHERE group_by = 'overall'")
    assert len(rows) == 1  # every currency-year has a rate: one EUR row
    cur, conv, budget, n_ex, n_group, n_none, cpg, lo, hi, unb = rows[0]
    assert cur == truth["base"] and conv
    assert budget == pytest.approx(truth["budget_eur_total"], abs=0.01)
    assert (n_group, n_none) == (truth["exchanges"], truth["exchanges_without_budget"])
    assert n_ex == truth["exchanges"] - truth["exchanges_without_budget"]
    assert cpg > 0 and lo < cpg and (unb or cpg < hi)
