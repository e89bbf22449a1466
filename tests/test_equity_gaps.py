"""analytics.stats.equity.equity_gaps: best and worst groups, the gap's CR2 interval from cells
equal to CR2 OLS on the rows, the Bonferroni level, lower-is-better measures, small groups left
out and listed, a single group, no group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.stats.comparison import cr2_fit
from analytics.stats.equity import GAP_COLUMNS, equity_gaps


def _rows(seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    means = {"low": 0.1, "medium": 0.25, "high": 0.4}
    for e in range(14):
        shift = rng.normal(0, 0.1)
        for g, mu in means.items():
            m = int(rng.integers(3, 12))
            rows += [[f"X{e:02d}", g, v] for v in rng.normal(mu + shift, 0.3, m)]
    return pd.DataFrame(rows, columns=["exchange_id", "group", "y"])


def _cells(rows: pd.DataFrame) -> pd.DataFrame:
    c = rows.groupby(["exchange_id", "group"], as_index=False).agg(n=("y", "size"),
                                                                  sum=("y", "sum"))
    return c.assign(grouping="connectivity", measure="gain", instrument="i", scale="s")


def test_gap_is_cr2_of_the_two_groups_with_bonferroni_level() -> None:
    rows = _rows()
    out = equity_gaps(_cells(rows), k=10)
    assert list(out.columns) == GAP_COLUMNS and len(out) == 1
    r = out.iloc[0]
    means = rows.groupby("group").y.mean()
    assert (r.best_group, r.worst_group) == (means.idxmax(), means.idxmin())
    assert r.gap == pytest.approx(means.max() - means.min())
    assert r.n_groups_compared == 3 and r.ci_level == pytest.approx(1 - 0.05 / 3)
    two = rows[rows.group.isin([r.best_group, r.worst_group])]
    X = np.c_[(two.group == r.best_group).to_numpy(float), (two.group == r.worst_group)]
    t = cr2_fit(X, two.y.to_numpy(), two.exchange_id).test([1.0, -1.0], ci=1 - 0.05 / 3)
    assert r.se_cr2 == pytest.approx(t["se_cr2"])
    assert r.df_cr2 == pytest.approx(t["df_cr2"])
    assert (r.ci_low, r.ci_high) == pytest.approx((t["ci_low_cr2"], t["ci_high_cr2"]))
    assert r.n_clusters == 14 and not r.few_clusters
    # the true gap of the planted extremes (0.3) lies inside
    assert r.ci_low < 0.3 < r.ci_high


def test_lower_is_better_picks_the_lowest_as_best_and_keeps_the_gap_positive() -> None:
    rows = _rows()
    out = equity_gaps(_cells(rows).assign(measure="dropout"),
                      lower_is_better={"dropout": True}, k=10).iloc[0]
    means = rows.groupby("group").y.mean()
    assert (out.best_group, out.worst_group) == (means.idxmin(), means.idxmax())
    assert out.gap == pytest.approx(means.max() - means.min()) and out.gap > 0
    assert out.ci_low < out.gap < out.ci_high


def test_small_groups_and_not_reported_are_listed_not_compared() -> None:
    cells = _cells(_rows())
    extra = pd.DataFrame({"exchange_id": ["X00", "X01"], "group": ["tiny", "not reported"],
                          "n": [4, 50], "sum": [40.0, 500.0]})
    cells = pd.concat([cells, extra.assign(grouping="connectivity", measure="gain",
                                           instrument="i", scale="s")], ignore_index=True)
    r = equity_gaps(cells, k=10).iloc[0]
    assert r.best_group != "tiny" and r.best_group != "not reported"
    assert r.groups_left_out == "not reported (not a group); tiny (n < 10)"
    assert r.n_groups_compared == 3


def test_a_subset_under_k_leaves_the_group_out() -> None:
    cells = _cells(_rows()).assign(active=20.0)
    cells.loc[cells.group == "high", "active"] = 0.5  # 14 exchanges x 0.5 = 7 < 10
    r = equity_gaps(cells, subsets=["active"], k=10).iloc[0]
    assert "high (n < 10)" in r.groups_left_out and r.n_groups_compared == 2


def test_one_group_and_no_group() -> None:
    cells = _cells(_rows())
    one = equity_gaps(cells[cells.group == "low"], k=10).iloc[0]
    assert one.best_group == "low" and pd.isna(one.gap) and one.n_groups_compared == 1
    assert one.suppressed == ""
    none = equity_gaps(cells.assign(n=1)[cells.exchange_id < "X05"], k=10).iloc[0]
    assert none.n_groups_compared == 0 and none.suppressed == "n < 10"
    assert pd.isna(none.best_group) and pd.isna(none.gap)
    empty = equity_gaps(cells.iloc[:0], k=10)
    assert list(empty.columns) == GAP_COLUMNS and not len(empty)


# ---------------------------------------------------------------------------------------------
# The demo's equity gaps (truth.json "equity")
# ---------------------------------------------------------------------------------------------

def _demo():
    import json

    from tests.analytics_fixture import demo_warehouse

    wh = demo_warehouse()
    return wh, json.loads((wh.parent / "demo" / "truth.json").read_text(encoding="utf-8"))


def _true_gap(truth: dict, row) -> float | None:
    levels = truth["equity"][row.grouping]
    if row.measure == "dropout":
        return (levels[row.worst_group]["expected_dropout"]
                - levels[row.best_group]["expected_dropout"])
    key = f"{row.instrument}.{row.scale}"
    return (levels[row.best_group]["expected_observed_gain"][key]
            - levels[row.worst_group]["expected_observed_gain"][key])


def test_demo_gap_intervals_cover_the_true_gap_of_the_chosen_pair() -> None:
    """For every grouping, the drop-out and every scale's gain: the Bonferroni-adjusted CR2
    interval of the gap between the groups the data chose covers the truth's gap between those
    two groups (their expected observed gains / expected drop-out). k = 5 on the small demo so
    that more groups are compared."""
    import duckdb

    from analytics.derive import materialise

    wh, truth = _demo()
    con = duckdb.connect(str(wh), read_only=True)
    try:
        gaps = materialise.compute_results(con, min_cell=5, tables=["equity_gaps"]).tables[
            "equity_gaps"]
    finally:
        con.close()
    assert set(gaps.grouping) == {"gender", "age_band", "connectivity", "income_group"}
    rows = gaps[(gaps.measure != "minutes") & (gaps.scale != "composite") & gaps.gap.notna()]
    assert len(rows) == 4 * (1 + sum(len(s) for s in truth["effects"].values()))
    covered = [r.ci_low <= _true_gap(truth, r) <= r.ci_high for r in rows.itertuples()]
    assert np.mean(covered) >= 0.95, rows.assign(covered=covered)
    # gaps are best − worst (worst − best for drop-out): never negative
    assert (rows.gap >= 0).all()


def test_demo_connectivity_minutes_gap_follows_the_planted_event_rate() -> None:
    """Connectivity scales the demo's event rate (low 0.7 … high 1.0): the stored table names
    high as best- and low as worst-served in minutes, the gap about the planted 30% of the low
    group's minutes or more (at 2,000 participants its cluster-robust interval still holds 0;
    at 10,000 it lies above 0); gender has 'not reported' people, listed and not compared."""
    import duckdb

    wh, _ = _demo()
    con = duckdb.connect(str(wh), read_only=True)
    try:
        gaps = con.execute("SELECT * FROM res_equity_gaps").df()
    finally:
        con.close()
    conn = gaps[(gaps.grouping == "connectivity") & (gaps.measure == "minutes")].iloc[0]
    assert (conn.best_group, conn.worst_group) == ("high", "low")
    assert conn.gap > 0.2 * conn.value_worst and conn.ci_low < conn.gap < conn.ci_high
    gender = gaps[(gaps.grouping == "gender") & (gaps.measure == "dropout")].iloc[0]
    assert "not reported (not a group)" in gender.groups_left_out


def test_units_without_an_exchange_are_each_a_cluster_of_their_own() -> None:
    """The product's rule for a row without a cluster label, as `cr2_fit` on the rows. The
    cells held them as one cluster "(none)"; a cell of one unlabelled unit is its own cluster,
    and a cell of several cannot be split from its count and sum, so it is refused."""
    rows = _rows()
    rng = np.random.default_rng(1)
    rows.loc[rng.random(len(rows)) < 0.1, "exchange_id"] = None
    unit = rows.reset_index().rename(columns={"index": "unit"})
    cells = unit.assign(exchange_id=unit.exchange_id.astype(object)).groupby(
        ["exchange_id", "unit", "group"], dropna=False, as_index=False).agg(
        n=("y", "size"), sum=("y", "sum")).drop(columns="unit")
    cells = cells.assign(grouping="connectivity", measure="gain", instrument="i", scale="s")
    r = equity_gaps(cells, k=10).iloc[0]
    two = rows[rows.group.isin([r.best_group, r.worst_group])]
    X = np.column_stack([two.group == r.best_group, two.group == r.worst_group]).astype(float)
    fit = cr2_fit(X, two.y.to_numpy(), two.exchange_id.to_numpy(object))
    assert r.n_clusters == fit.n_clusters == two.exchange_id.nunique() + int(
        two.exchange_id.isna().sum())
    t = fit.test(np.array([1.0, -1.0]), ci=r.ci_level)
    assert r.se_cr2 == pytest.approx(t["se_cr2"], rel=1e-10)
    assert r.df_cr2 == pytest.approx(t["df_cr2"], rel=1e-10)
    lumped = _cells(rows.fillna({"exchange_id": "?"})).assign(
        exchange_id=lambda c: c.exchange_id.replace("?", None))
    with pytest.raises(ValueError, match="without an exchange"):
        equity_gaps(lumped, k=10)
