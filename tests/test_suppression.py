"""Small-cell protection: blanked, never zero; reason given; explicit opt-out."""

from __future__ import annotations

import pandas as pd
import pytest

from analytics.suppression import suppress


def table() -> pd.DataFrame:
    return pd.DataFrame({"group": ["big", "small", "edge"], "n": [25, 9, 10],
                         "mean": [3.2, 0.0, 4.1], "count": [100, 3, 40],
                         "flag": [True, False, True]})


def test_small_groups_blanked_not_zero_with_reason():
    out = suppress(table())
    small = out[out.group == "small"].iloc[0]
    assert small.suppressed == "n < 10"
    assert pd.isna(small.n) and pd.isna(small["mean"]) and pd.isna(small["count"])
    assert pd.isna(small.flag)
    assert small.group == "small"  # labels stay, so the reader sees the group exists
    big = out[out.group == "big"].iloc[0]
    assert big.suppressed == "" and big["mean"] == 3.2 and big["count"] == 100
    assert out[out.group == "edge"].iloc[0].suppressed == ""  # n == k is shown


def test_threshold_is_configurable_and_reason_names_it():
    out = suppress(table(), k=30)
    assert (out.suppressed == "n < 30").all()
    assert out["mean"].isna().all()


def test_unsuppressed_opt_out_keeps_numbers_and_says_so():
    out = suppress(table(), unsuppressed=True)
    small = out[out.group == "small"].iloc[0]
    assert small["mean"] == 0.0 and small.n == 9
    assert small.suppressed == "not suppressed: n < 10"


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        suppress(table(), n="nope")
    with pytest.raises(ValueError):
        suppress(table(), k=-1)


# ---------------------------------------------------------------------------------------------
# The dashboard's read layer applies this rule, not a copy of it (issue 8, section 4).
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_cursor(tmp_path_factory):
    from etl.warehouse import Reader
    from tests.dashboard_fixture import build_fixture_warehouse

    reader = Reader(build_fixture_warehouse(tmp_path_factory.mktemp("s") / "w.duckdb"))
    yield reader.cursor()
    reader.close()


def test_the_dashboard_read_layer_calls_this_function_with_its_k(fixture_cursor, monkeypatch):
    from analytics import suppression
    from analytics.read import equity, outcomes, overview, participation
    from analytics.read.cache import clear_cache
    from analytics.read.filters import Filters

    calls: list[dict] = []
    real = suppression.suppress

    def spy(t: pd.DataFrame, **kw) -> pd.DataFrame:
        calls.append(kw)
        return real(t, **kw)

    monkeypatch.setattr(suppression, "suppress", spy)
    clear_cache()
    f = Filters(country=("FRA",))
    views = [overview.headline(fixture_cursor, f), overview.completion_by_wave(fixture_cursor, f),
             participation.activity_heatmap(fixture_cursor, f),
             outcomes.comparison_difference(fixture_cursor, f),
             equity.dropout_by_group(fixture_cursor, f, "gender"),
             equity.participation_by_group(fixture_cursor, f, "gender")]
    clear_cache()
    assert len(calls) >= len(views)
    assert all(c.get("k") is None for c in calls)  # None: the one setting, suppression.MIN_CELL


def test_the_dashboard_threshold_is_the_setting(fixture_cursor, monkeypatch):
    """k comes from EXCHANGE_IMPACT_MIN_CELL (read once as suppression.MIN_CELL): at k = 500
    the whole fixture (465 participants) is one small selection."""
    from analytics import suppression
    from analytics.read import overview
    from analytics.read.cache import clear_cache
    from analytics.read.filters import Filters

    monkeypatch.setattr(suppression, "MIN_CELL", 500)
    clear_cache()
    try:
        h = overview.headline(fixture_cursor, Filters())
        assert h["suppressed"] and pd.isna(h["participants"])
        assert overview.completion_by_wave(fixture_cursor, Filters()).responded.isna().all()
    finally:
        clear_cache()


@pytest.mark.parametrize("raw, k", [("", 10), ("  ", 10), ("0", 0), ("25", 25), (" 7 ", 7)])
def test_the_setting_of_k_is_read_from_one_variable(raw: str, k: int) -> None:
    from analytics.suppression import ENV_K, configured_k

    assert configured_k({ENV_K: raw}) == k
    assert configured_k({}) == 10


@pytest.mark.parametrize("raw", ["-1", "ten", "2.5", "1e3"])
def test_a_malformed_k_is_refused_with_the_variable_named(raw: str) -> None:
    from analytics.suppression import ENV_K, configured_k

    with pytest.raises(ValueError, match=ENV_K):
        configured_k({ENV_K: raw})


def test_every_module_takes_k_from_the_one_setting() -> None:
    """No module but `analytics.suppression` reads the variable (two places did before)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readers = [p.relative_to(root).as_posix() for d in ("analytics", "pages", "etl", "reports")
               for p in sorted((root / d).rglob("*.py"))
               if "EXCHANGE_IMPACT_MIN_CELL" in p.read_text(encoding="utf-8")]
    assert readers == ["analytics/suppression.py"]
