"""The test oracle of scale scoring: the scoring rules re-stated in pandas/numpy.

Production scores in SQL (`analytics.derive.materialise._sql_scale_scores`); this independent
statement of the same rules is what `tests/test_scales.py` and the materialise tests hold it to,
and what the recovery tests score generated data with. Vectorised: one integer key per
participant x exchange x wave x scale and two np.bincount passes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analytics.stats.scales import item_table


def score_scales(
    responses_long: pd.DataFrame,
    instruments: Mapping[str, object],
    *,
    participant: str = "participant_id",
    exchange: str = "exchange_id",
    wave: str = "wave",
    item: str = "item",
    value: str = "value",
) -> pd.DataFrame:
    """Score every scale of every instrument per participant x exchange x wave.

    Method: answers to items no instrument knows are ignored; reverse-coded items are recoded as
    ``min + max - x``; the score is the mean of the answered (non-missing) items of the scale; if
    fewer than the scale's ``min_items`` are answered the score is NaN and the row is kept with
    its ``n_items_answered``. A scale gets a row when at least one of its items appears for that
    participant x exchange x wave (answered or left empty). Equivalent to R's
    ``psych::scoreItems(keys, items, totals = FALSE, impute = "none")`` scores, with the
    minimum-items rule applied afterwards.

    Parameters
    ----------
    responses_long : one row per participant x exchange x wave x item (the warehouse's
        ``responses`` table)
    instruments : ``surveys.load_instruments()``: id -> Instrument
    participant, exchange, wave, item, value : column names in `responses_long`

    Returns
    -------
    DataFrame with columns participant, exchange_id, wave, instrument, scale, score,
    n_items_answered (one row per participant x exchange x wave x scale).

    Raises
    ------
    ValueError
        a column is missing, or an answered value lies outside its scale's min..max.

    Examples
    --------
    >>> from surveys import load_instruments
    >>> inst = load_instruments()
    >>> df = pd.DataFrame({"participant_id": "p1", "exchange_id": "e1", "wave": "pre",
    ...                    "item": ["icc_1", "icc_2", "icc_3", "icc_4"], "value": [4, 5, 2, 4]})
    >>> score_scales(df, inst)[["scale", "score", "n_items_answered"]].to_dict("records")
    [{'scale': 'openness', 'score': 4.25, 'n_items_answered': 4}]
    """
    cols = [participant, exchange, wave, item, value]
    missing = [c for c in cols if c not in responses_long.columns]
    if missing:
        raise ValueError(f"responses have no column(s) {missing}")
    items = item_table(instruments)
    scale_keys = items[["instrument", "scale"]].drop_duplicates().reset_index(drop=True)
    scale_of = {(r.instrument, r.scale): i for i, r in enumerate(scale_keys.itertuples())}
    items["scale_code"] = [scale_of[(a, b)] for a, b in zip(items["instrument"], items["scale"],
                                                             strict=True)]
    per_scale = items.drop_duplicates("scale_code").set_index("scale_code").sort_index()

    # Item ids -> item rows, through the (small) set of distinct item ids in the data.
    icodes, iuniq = pd.factorize(responses_long[item], sort=False)
    pos = pd.Index(items["item"]).get_indexer(pd.Index(iuniq.astype(str)))
    row_of = np.append(pos, -1)[icodes]  # missing item id -> -1
    known = row_of >= 0
    if not known.all():
        row_of = row_of[known]
        data = responses_long.loc[known, [participant, exchange, wave, value]]
    else:
        data = responses_long[[participant, exchange, wave, value]]

    x = pd.to_numeric(data[value], errors="raise").to_numpy(dtype=float, na_value=np.nan)
    lo = items["min"].to_numpy(float)[row_of]
    hi = items["max"].to_numpy(float)[row_of]
    answered = ~np.isnan(x)
    bad = answered & ((x < lo) | (x > hi))
    if bad.any():
        first = np.flatnonzero(bad)[0]
        raise ValueError(
            f"{int(bad.sum())} answer(s) lie outside their scale's range, e.g. item "
            f"{items['item'].iloc[row_of[first]]!r} = {x[first]:g} (range {lo[first]:g}.."
            f"{hi[first]:g})"
        )
    rev = items["reverse"].to_numpy(bool)[row_of]
    x = np.where(rev, lo + hi - x, x)

    pc, pu = pd.factorize(data[participant], sort=False)
    ec, eu = pd.factorize(data[exchange], sort=False)
    wc, wu = pd.factorize(data[wave], sort=False)
    sc = items["scale_code"].to_numpy(np.int64)[row_of]
    if (pc < 0).any() or (ec < 0).any() or (wc < 0).any():
        raise ValueError(f"{participant}, {exchange} and {wave} must not be missing")
    dims = (len(pu), len(eu), len(wu), len(scale_keys))
    key = np.ravel_multi_index((pc, ec, wc, sc), dims)
    kcodes, kuniq = pd.factorize(key, sort=True)
    n_ans = np.bincount(kcodes, weights=answered, minlength=len(kuniq)).astype(np.int64)
    total = np.bincount(kcodes, weights=np.where(answered, x, 0.0), minlength=len(kuniq))
    p_i, e_i, w_i, s_i = np.unravel_index(kuniq, dims)
    min_items = per_scale["min_items"].to_numpy(np.int64)[s_i]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(n_ans >= min_items, total / n_ans, np.nan)
    def labels(uniq: pd.Index, codes: np.ndarray) -> pd.Series:
        # take() on the factorize uniques keeps pandas' Arrow strings: no Python objects
        return pd.Series(pd.Index(uniq).astype("string").take(codes), copy=False)

    out = pd.DataFrame({
        "participant": labels(pu, p_i),
        "exchange_id": labels(eu, e_i),
        "wave": labels(wu, w_i),
        "instrument": labels(pd.Index(scale_keys["instrument"]), s_i),
        "scale": labels(pd.Index(scale_keys["scale"]), s_i),
        "score": score,
        "n_items_answered": n_ans,
    })
    return out
