"""Disclosure control (`analytics.suppression.protect`): no suppressed count is derivable from
what is shown, checked against an independent oracle (linear programming over the shown cells
and every line total), and funders' counts are rounded to the deployment's base."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from analytics import suppression
from analytics.suppression import SECONDARY, protect, round_counts

K = 10


def _interval(values: np.ndarray, hidden: np.ndarray, lines: list[np.ndarray], i: int
              ) -> tuple[float, float]:
    """The smallest and largest value cell i can take given the shown cells, every line's total
    and x >= 0 (the test oracle: an LP, not the function's own rank argument)."""
    unknown = np.flatnonzero(hidden)
    col = {int(j): c for c, j in enumerate(unknown)}
    a_eq, b_eq = [], []
    for line in lines:
        row = np.zeros(len(unknown))
        rhs = float(values[line].sum())
        for j in line:
            if int(j) in col:
                row[col[int(j)]] = 1.0
            else:
                rhs -= float(values[j])
        if row.any():
            a_eq.append(row)
            b_eq.append(rhs)
    c = np.zeros(len(unknown))
    c[col[i]] = 1.0
    lo = linprog(c, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    hi = linprog(-c, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    assert lo.status == 0 and hi.status == 0, (lo.message, hi.message)
    return float(lo.fun), float(-hi.fun)


def _grid(rows: int, cols: int, values: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"a": [f"r{i}" for i in range(rows) for _ in range(cols)],
                         "b": [f"c{j}" for _ in range(rows) for j in range(cols)],
                         "n": values[: rows * cols], "mean": np.linspace(1, 5, rows * cols)})


def _without_empty_lines(t: pd.DataFrame, dims: list[str]) -> pd.DataFrame:
    empty = np.zeros(len(t), bool)
    for d in dims:
        empty |= (t.groupby(d)["n"].transform("sum") == 0).to_numpy()
    return t[~empty].reset_index(drop=True)


def _oracle_lines(t: pd.DataFrame, dims: list[str]) -> list[np.ndarray]:
    pos = np.arange(len(t))
    out = []
    for d in dims:
        others = [c for c in dims if c != d]
        if not others:
            out.append(pos)
        else:
            for _, g in t.assign(_p=pos).groupby(others):
                out.append(g._p.to_numpy())
    return out


def _check_nothing_derivable(t: pd.DataFrame, out: pd.DataFrame, dims: list[str]) -> None:
    values = t.n.to_numpy(float)
    hidden = (out.suppressed != "").to_numpy(bool)
    lines = _oracle_lines(t, dims)
    # Lines whose total is itself under k are not shown by any caller (their "all" row is
    # primary-suppressed there), and `protect` documents that it leaves them to that rule.
    small_total = [line for line in lines if 0 < values[line].sum() < K]
    for i in np.flatnonzero(hidden & (values > 0)):
        if any(i in line for line in small_total):
            continue
        lo, hi = _interval(values, hidden, lines, int(i))
        assert hi - lo >= 1 - 1e-6, (t.to_dict("list"), int(i), lo, hi)
        assert lo - 1e-6 <= values[i] <= hi + 1e-6
    # What is shown is true, and blanked cells carry no number.
    shown = ~hidden
    assert (out.n[shown].astype(float).to_numpy() == values[shown]).all()
    assert out.n[hidden].isna().all() and out["mean"][hidden].isna().all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 60), min_size=1, max_size=12))
def test_one_dimension_with_its_total_no_suppressed_count_is_derivable(values: list[int]) -> None:
    t = pd.DataFrame({"g": [f"g{i}" for i in range(len(values))], "n": values,
                      "mean": np.linspace(1, 5, len(values))})
    out = protect(t, dims=["g"], k=K)
    _check_nothing_derivable(t, out, ["g"])
    # Primary cells are those under k; every other blank is marked as a complement.
    small = t.n < K
    assert (out.suppressed[small] == f"n < {K}").all()
    assert set(out.suppressed[~small]) <= {"", SECONDARY}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 5), st.integers(2, 5), st.lists(st.integers(0, 40), min_size=25,
                                                      max_size=25))
def test_two_dimensions_with_row_and_column_totals_no_suppressed_count_is_derivable(
        rows: int, cols: int, values: list[int]) -> None:
    # A row or column whose total is 0 has no participants, so no table lists it (the read
    # layer's groups come from the rows there are); shown, its 0 would pin its cells at 0 and
    # make a complementary cell exact (hypothesis found 2x2 [0, 0, 1, 10]).
    t = _without_empty_lines(_grid(rows, cols, values), ["a", "b"])
    out = protect(t, dims=["a", "b"], k=K)
    _check_nothing_derivable(t, out, ["a", "b"])


def test_a_single_small_group_beside_a_shown_total_takes_the_next_smallest_with_it() -> None:
    t = pd.DataFrame({"country": ["FRA", "KEN", "PER", "USA"], "n": [40, 4, 25, 12]})
    out = protect(t, dims=["country"], k=K)
    assert out.suppressed.tolist() == ["", "n < 10", "", SECONDARY]
    assert out.n.isna().tolist() == [False, True, False, True]
    # Without totals shown (primary rule alone) KEN = total - 40 - 25 - 12 would be exact.
    assert suppression.derivable(t.n, [False, True, False, False], [np.arange(4)]).tolist() == [
        False, True, False, False]


def test_the_classic_two_way_trap_is_closed() -> None:
    """Two primary cells in different rows and columns: the line rule alone would leave a
    'bridge' that the totals pin down; the null-space check finds it and adds a cell."""
    t = _grid(3, 3, [3, 20, 30, 20, 4, 30, 40, 40, 40])
    out = protect(t, dims=["a", "b"], k=K)
    _check_nothing_derivable(t, out, ["a", "b"])
    assert (out.suppressed == SECONDARY).sum() >= 2


def test_unsuppressed_blanks_nothing_and_rounding_still_applies() -> None:
    t = pd.DataFrame({"g": ["a", "b", "c"], "n": [4, 23, 38], "other": [1, 2, 3]})
    out = protect(t, dims=["g"], k=K, unsuppressed=True, rounding=True, round_to=5,
                  counts=["other"])
    assert out.n.tolist() == [5, 25, 40]
    assert out.other.tolist() == [0, 0, 5]
    assert out.suppressed.tolist() == [f"not suppressed: n < {K}", "", ""]


def test_rounding_is_to_the_base_halves_up_and_keeps_blanks() -> None:
    s = pd.Series([0, 2, 3, 7, 12, 13, None], dtype="Float64")
    assert round_counts(s, 5).tolist() == [0, 0, 5, 5, 10, 15, pd.NA]
    assert round_counts(s, 1).tolist()[:6] == [0, 2, 3, 7, 12, 13]
    t = pd.DataFrame({"g": ["a", "b", "c"], "n": [12, 23, 38]})
    assert protect(t, k=K, rounding=True, round_to=10).n.tolist() == [10, 20, 40]
    with pytest.raises(ValueError, match="rounding base"):
        round_counts(s, 0)


@pytest.mark.parametrize(("raw", "base"), [("", 5), ("10", 10), (" 3 ", 3)])
def test_the_rounding_base_is_read_from_one_variable(raw: str, base: int) -> None:
    assert suppression.configured_round_to({suppression.ENV_ROUND_TO: raw}) == base


@pytest.mark.parametrize("raw", ["0", "-5", "five", "2.5"])
def test_a_malformed_rounding_base_is_refused_with_the_variable_named(raw: str) -> None:
    with pytest.raises(ValueError, match=suppression.ENV_ROUND_TO):
        suppression.configured_round_to({suppression.ENV_ROUND_TO: raw})


def test_an_unknown_dimension_is_refused() -> None:
    with pytest.raises(ValueError, match="dimension"):
        protect(pd.DataFrame({"n": [1]}), dims=["country"])


def test_the_complement_does_not_depend_on_row_order() -> None:
    """The map and the table by country list the same countries in different orders; they must
    blank the same complement, or the two together give the small one away."""
    t = pd.DataFrame({"country": ["USA", "KEN", "ISL", "BRA"], "n": [66, 66, 3, 66]})
    one = protect(t, dims=["country"], k=K).set_index("country").suppressed
    other = protect(t.iloc[::-1].reset_index(drop=True), dims=["country"], k=K
                    ).set_index("country").suppressed
    assert one.to_dict() == other.to_dict()
    assert one["BRA"] == SECONDARY and one["ISL"] == f"n < {K}"
