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
