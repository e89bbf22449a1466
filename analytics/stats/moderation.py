"""Setting, modality and purpose: does the gain differ between kinds of exchange?

For an exchange attribute (curricular vs extra-curricular setting; virtual, blended or physical
modality; the exchange's purpose) the longitudinal model of `analytics.stats.longitudinal` is
fitted with the attribute crossed with wave, and three kinds of row are read off it per later
wave W (post, follow-ups):

- ``gain``: each level's change from the first wave, contrast[W - pre | level];
- ``difference``: each level's gain minus the reference level's (the largest level), with its
  CI: the wave x attribute interaction contrast;
- ``interaction``: the joint Wald test that the gain is the same at every level (all
  wave[T.W]:attribute[T.level] coefficients zero), F = b'L'(L V L')^-1 L b / q on q and the
  model's denominator df.

Model, in R's notation, REML::

    score ~ wave * attribute + (1 | exchange) + (1 | exchange:participant)

fitted by `fit_nested_intercepts` (one exchange only, or ``exchange_level=False``:
``score ~ wave * attribute + (1 | participant)`` by `fit_random_intercept`). Every row is a
within-participant contrast (a change from pre, or a difference of changes), from which an
exchange random intercept cancels; the one-level model gives nearly the same rows at a
fraction of the cost, and the derive step uses it (the CR2 check below carries the exchange
clustering). CIs and p values are Wald t with the model's between-within df
(`NestedInterceptFit.df`; the one-level model: z, and the F test's denominator df is
infinite, i.e. chi2 / q). Neither model lets exchanges differ in their gain, so with few
exchanges per level the intervals of a difference are narrower than a
design-based (cluster-robust) interval would be; read them with the number of exchanges.

Each ``difference`` row also carries a design-based check (``*_cr2`` columns): over the units
with a score at both waves, OLS of their change on the attribute, CR2 errors clustered by
exchange with Satterthwaite df (`analytics.stats.comparison.cr2_fit`). It lets exchanges differ
in their gain; when its interval is much wider than the model's, trust it more.

Exchange participants only (the comparison group took no exchange). A level with fewer than k
units (participant x exchange) with a score at any wave of the model is not fitted and its rows
are suppressed, shown with the reason, never dropped; a missing attribute value is the level
"not reported".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

# The design and cell-vector helpers of the longitudinal model are reused, not re-stated, so
# that this table and res_longitudinal fit the same model.
from analytics.stats.longitudinal import (
    NestedInterceptFit,
    _cell_vec,
    _codes,
    _design_cells,
    _Factor,
    fit_nested_intercepts,
    fit_random_intercept,
    wave_order,
)
from analytics.suppression import DEFAULT_K, reason

__all__ = ["MODERATION_COLUMNS", "MODERATORS", "model_formula", "moderation"]

MODERATORS: tuple[str, ...] = ("setting", "modality", "purpose")
MODERATION_COLUMNS = [
    "instrument", "scale", "moderator", "wave", "row", "level", "reference", "n",
    "n_exchanges", "estimate", "se", "df", "ci_low", "ci_high", "statistic", "df_num", "p",
    "estimate_cr2", "ci_low_cr2", "ci_high_cr2", "df_cr2", "p_cr2", "model", "suppressed",
]
_CR2_KEYS = ("estimate_cr2", "ci_low_cr2", "ci_high_cr2", "df_cr2", "p_cr2")
NOT_REPORTED = "not reported"


def model_formula(moderator: str, nested: bool = True) -> str:
    """The model of the rows for `moderator`, as the table's ``model`` column names it."""
    if nested:
        return (f"score ~ wave * {moderator} + (1 | exchange) + (1 | exchange:participant), "
                "REML; Wald t and F, between-within df")
    return f"score ~ wave * {moderator} + (1 | participant), REML; Wald z and F = chi2 / q"


def moderation(
    scores: pd.DataFrame,
    *,
    moderators: Sequence[str] = MODERATORS,
    outcome: str = "score",
    participant: str = "participant",
    wave: str = "wave",
    exchange: str = "exchange_id",
    instrument: str = "instrument",
    scale: str = "scale",
    waves: Sequence[str] | None = None,
    ci: float = 0.95,
    k: int = DEFAULT_K,
    se_method: str = "conditional",
    exchange_level: bool = True,
) -> pd.DataFrame:
    """Gains by level of each moderator, their differences and the interaction test.

    `scores`: long scale scores, one row per unit x wave (x instrument x scale), of exchange
    participants, with the moderator columns (exchange attributes). One model per instrument x
    scale x moderator (module docstring). Reference level: the level with the most units (ties:
    alphabetical). Columns: instrument, scale, moderator, wave (the later wave W), row (gain |
    difference | interaction), level, reference, n (units of the level with a score at both
    the first wave and W; the interaction row: all fitted units), n_exchanges, estimate, se,
    df, ci_low, ci_high, statistic (F, interaction rows), df_num (its q), p, estimate_cr2,
    ci_low_cr2, ci_high_cr2, df_cr2, p_cr2 (difference rows: the design-based check), model,
    suppressed.

    With fewer than two levels of k units or more there is nothing to contrast: the kept level's
    gain comes from ``score ~ wave`` and the interaction row has no test (model says why).

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> n = 400
    >>> ex = rng.integers(0, 40, n)
    >>> lvl = np.where(ex % 2 == 0, "curricular", "extracurricular")
    >>> gain = np.where(lvl == "curricular", 0.3, 0.1)
    >>> pre = rng.normal(3, 0.5, n)
    >>> d = pd.DataFrame({"participant": np.tile(np.arange(n), 2), "exchange_id": np.tile(ex, 2),
    ...                   "wave": ["pre"] * n + ["post"] * n, "setting": np.tile(lvl, 2),
    ...                   "score": np.concatenate([pre, pre + gain + rng.normal(0, .2, n)])})
    >>> r = moderation(d, moderators=["setting"], instrument=None, scale=None)
    >>> diff = r[r["row"] == "difference"].iloc[0]
    >>> diff["level"], diff["reference"], bool(diff["ci_low"] < -0.2 < diff["ci_high"])
    ('extracurricular', 'curricular', True)
    """
    need = [outcome, participant, wave, exchange, *moderators]
    need += [c for c in (instrument, scale) if c is not None]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ValueError(f"scores has no column(s) {missing}")
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")
    data = scores[scores[outcome].notna()]
    keys = [c for c in (instrument, scale) if c is not None]
    parts = [((), data)] if not keys else data.groupby(keys, sort=True, observed=True)
    rows: list[dict] = []
    for key, d in parts:
        key = key if isinstance(key, tuple) else (key,)
        kv = dict(zip(keys, key, strict=True))
        base = {"instrument": kv.get(instrument), "scale": kv.get(scale)}
        prep = _prepare(d, outcome=outcome, participant=participant, wave=wave,
                        exchange=exchange, waves=waves)
        if prep is None:
            continue
        kinds = {"gain": 0, "difference": 1, "interaction": 2}
        for mod in moderators:
            one = _one(d[mod], mod, prep, ci=ci, k=k, se_method=se_method,
                       exchange_level=exchange_level)
            # the same order at every k: wave, gains, differences, the test; levels by name
            one.sort(key=lambda r: (prep["w_levels"].index(r["wave"]), kinds[r["row"]],
                                    r["level"]))
            rows.extend({**base, **r} for r in one)
    out = pd.DataFrame(rows, columns=MODERATION_COLUMNS)
    for c in ("n", "n_exchanges", "df_num"):
        out[c] = pd.array(out[c], dtype="Int64")
    return out


def _prepare(d: pd.DataFrame, *, outcome: str, participant: str, wave: str, exchange: str,
             waves: Sequence[str] | None) -> dict | None:
    """What every moderator of one scale shares, as integer codes: unit (participant x
    exchange), wave (-1 outside `waves`), exchange, the score, and per unit a bit per wave
    with a score. None with fewer than two waves."""
    w_levels = list(waves) if waves is not None else wave_order(d[wave].astype(str).unique())
    if len(w_levels) < 2:
        return None
    pc_ = pd.factorize(d[participant])[0].astype(np.int64)
    xc_ = pd.factorize(d[exchange])[0].astype(np.int64)
    unit = pd.factorize(pc_ * (int(xc_.max(initial=0)) + 2) + xc_ + 1)[0]
    wc, _ = _codes(d[wave], w_levels, wave_order)
    n_u = int(unit.max(initial=-1)) + 1
    bits = np.zeros(n_u, dtype=np.int64)
    ok = wc >= 0
    np.bitwise_or.at(bits, unit[ok], np.left_shift(1, wc[ok]))
    return {"w_levels": w_levels, "unit": unit, "wc": wc, "xc": xc_, "bits": bits,
            "y": d[outcome].to_numpy(float)}


def _one(values: pd.Series, mod: str, prep: dict, *, ci: float, k: int, se_method: str,
         exchange_level: bool) -> list[dict]:
    """Rows of one scale x moderator (`values`: the moderator's column)."""
    nan = math.nan
    w_levels, unit, wc, xc_, bits = (prep[key] for key in ("w_levels", "unit", "wc", "xc",
                                                           "bits"))
    lc, uniq = pd.factorize(values, use_na_sentinel=True)
    lv_list = [str(x) for x in uniq]
    if (lc < 0).any():  # a missing attribute is a level of its own
        if NOT_REPORTED not in lv_list:
            lv_list.append(NOT_REPORTED)
        lc = np.where(lc < 0, lv_list.index(NOT_REPORTED), lc)
    if len(set(lv_list)) < len(lv_list):  # two values with the same text: merge them
        names_ = pd.Index(lv_list)
        lc = pd.factorize(names_[lc])[0]
        lv_list = list(dict.fromkeys(lv_list))
    n_u = len(bits)
    unit_level = np.zeros(n_u, dtype=np.int64)
    unit_level[unit] = lc  # an exchange attribute: one level per unit

    def count(lv: str, need: int) -> int:
        """Units of level `lv` with a score at every wave whose bit is set in `need`."""
        return int(np.count_nonzero((unit_level == lv_list.index(lv)) & (bits & need == need)))

    n_units = {lv: count(lv, 0) for lv in lv_list}
    min_at_wave = {lv: min(count(lv, 1 << i) for i in range(len(w_levels))) for lv in lv_list}
    # The reference is the largest level whatever k is, so that the table has the same rows
    # at every k (gain per level, difference per other level, one test per wave); if it is
    # itself under k, every level is suppressed.
    ref = max(lv_list, key=lambda lv: (n_units[lv], [-ord(ch) for ch in lv]))
    kept = sorted(lv for lv in lv_list if min_at_wave[lv] >= max(k, 1))
    if ref not in kept:
        kept = []
    small = sorted(set(lv_list) - set(kept))
    others = [lv for lv in kept if lv != ref]
    glevels = [ref, *others] if kept else []

    def n_pair(lv: str, w: str) -> int:
        return count(lv, 1 | (1 << w_levels.index(w)))

    later = w_levels[1:]
    out: list[dict] = []
    for lv in small:  # shown, numbers blank
        for w in later:
            out.append({"moderator": mod, "wave": w, "row": "gain", "level": lv,
                        "reference": ref, "n": None, "n_exchanges": None, "estimate": nan,
                        "se": nan, "df": nan, "ci_low": nan, "ci_high": nan, "statistic": nan,
                        "df_num": None, "p": nan,
                        "model": model_formula(mod, exchange_level),
                        "suppressed": reason(int(k))})
            if lv != ref:
                out.append({**out[-1], "row": "difference"})
    if not kept:
        for w in later:
            out.append({"moderator": mod, "wave": w, "row": "interaction", "level": "",
                        "reference": ref, "n": None, "n_exchanges": None, "estimate": nan,
                        "se": nan, "df": nan, "ci_low": nan, "ci_high": nan, "statistic": nan,
                        "df_num": None, "p": nan,
                        "model": f"{model_formula(mod, exchange_level)} — no test: fewer than "
                                 f"two levels of at least {k} units",
                        "suppressed": reason(int(k))})
        return out

    to_g = np.full(len(lv_list), -1, dtype=np.int64)
    for gi, lv in enumerate(glevels):
        to_g[lv_list.index(lv)] = gi
    gall = to_g[lc]
    keep = (gall >= 0) & (wc >= 0)
    y = prep["y"][keep]
    pcodes = _dense(unit[keep])
    xcodes = _dense(xc_[keep])
    n_x = int(xcodes.max()) + 1
    gk = gall[keep]
    factors = [_Factor("wave", wc[keep], w_levels)]
    if len(glevels) >= 2:
        factors.append(_Factor(mod, gk, glevels))
    nested = exchange_level and int(xcodes.max()) >= 1
    n_ex_of = {lv: int(np.count_nonzero(np.bincount(xcodes[gk == gi], minlength=n_x)))
               for gi, lv in enumerate(glevels)}
    formula = (model_formula(mod, nested) if len(glevels) >= 2
               else model_formula(mod, nested).replace(f" * {mod}", ""))
    try:
        X, names = _design_cells(factors)
        if nested:  # the `exchange_level` model
            fit = fit_nested_intercepts(y, X.dense(), pcodes, xcodes, names=names,
                                        se_method=se_method)
        else:  # from per-cell sums: the design has one row per wave x level
            fit = fit_random_intercept(y, X, pcodes, names=names, se_method=se_method)
    except (ValueError, np.linalg.LinAlgError) as e:
        for lv in kept:
            for w in later:
                out.append({"moderator": mod, "wave": w, "row": "gain", "level": lv,
                            "reference": ref, "n": n_pair(lv, w), "n_exchanges": n_ex_of[lv],
                            "estimate": nan, "se": nan, "df": nan, "ci_low": nan,
                            "ci_high": nan, "statistic": nan, "df_num": None, "p": nan,
                            "model": f"{formula} — not estimable: {e}", "suppressed": ""})
        return out

    def df_of(L: np.ndarray) -> float:
        return fit.df(L) if isinstance(fit, NestedInterceptFit) else math.inf

    def est_row(L: np.ndarray) -> dict:
        e = float(L @ fit.beta)
        se = math.sqrt(max(float(L @ fit.cov_beta @ L), 0.0))
        dof = df_of(L)
        # scipy.stats.t(dof) / norm's ppf and sf, called directly: the frozen distributions
        # cost more than the fit at hundreds of rows per derive
        if math.isfinite(dof):
            q = float(special.stdtrit(dof, 0.5 + ci / 2))
            p = float(2 * special.stdtr(dof, -abs(e / se))) if se > 0 else nan
        else:
            q = float(special.ndtri(0.5 + ci / 2))
            p = float(2 * special.ndtr(-abs(e / se))) if se > 0 else nan
        return {"estimate": e, "se": se, "df": dof, "ci_low": e - q * se, "ci_high": e + q * se,
                "statistic": nan, "df_num": None, "p": p}

    def cell(wi: int, gi: int | None) -> np.ndarray:
        return _cell_vec(factors, [wi] if len(factors) == 1 else [wi, gi])

    n_fit = int(pcodes.max()) + 1
    for wi, w in enumerate(w_levels[1:], start=1):
        gains = {}
        for gi, lv in enumerate(glevels):
            L = cell(wi, gi) - cell(0, gi)
            gains[lv] = L
            out.append({"moderator": mod, "wave": w, "row": "gain", "level": lv,
                        "reference": ref, "n": n_pair(lv, w), "n_exchanges": n_ex_of[lv],
                        **est_row(L), "model": formula, "suppressed": ""})
        cr2 = _cr2_differences(y, gk, wc[keep], wi, len(glevels), others, pcodes, xcodes, ci)
        for lv in others:
            out.append({"moderator": mod, "wave": w, "row": "difference", "level": lv,
                        "reference": ref, "n": n_pair(lv, w), "n_exchanges": n_ex_of[lv],
                        **est_row(gains[lv] - gains[ref]), **cr2.get(lv, {}),
                        "model": formula, "suppressed": ""})
        test = {"statistic": nan, "df_num": None, "p": nan, "estimate": nan, "se": nan,
                "df": nan, "ci_low": nan, "ci_high": nan}
        model_txt = formula
        if others:
            Lm = np.vstack([gains[lv] - gains[ref] for lv in others])
            b = Lm @ fit.beta
            V = Lm @ fit.cov_beta @ Lm.T
            qn = len(others)
            try:
                f_stat = float(b @ np.linalg.solve(V, b)) / qn
            except np.linalg.LinAlgError:
                f_stat = nan
            df2 = min(df_of(row) for row in Lm)
            p = (float(stats.f.sf(f_stat, qn, df2)) if math.isfinite(df2)
                 else float(stats.chi2.sf(f_stat * qn, qn))) if f_stat == f_stat else nan
            test.update(statistic=f_stat, df_num=qn, df=df2, p=p)
        else:
            model_txt = f"{formula} — no test: fewer than two levels of at least {k} units"
        out.append({"moderator": mod, "wave": w, "row": "interaction", "level": "",
                    "reference": ref, "n": n_fit, "n_exchanges": int(xcodes.max()) + 1,
                    **test, "model": model_txt, "suppressed": ""})
    return out


def _dense(codes: np.ndarray) -> np.ndarray:
    """Non-negative integer codes renumbered 0..K-1 in ascending order, by counting (a hash
    factorisation of millions of rows cost seconds per fit at 1M participants)."""
    seen = np.bincount(codes) > 0
    return (np.cumsum(seen) - 1)[codes]


def _cr2_differences(y: np.ndarray, gk: np.ndarray, wk: np.ndarray, wi: int, p: int,
                     others: list[str], pcodes: np.ndarray, xcodes: np.ndarray, ci: float
                     ) -> dict[str, dict]:
    """Design-based check of each difference: units with a score at both the first wave and
    wave `wi`, OLS of their change on the level (codes `gk`, 0 = the reference), CR2 errors
    clustered by exchange with Satterthwaite df. Unlike the model it lets exchanges differ in
    their gain, and it uses completers only. The design is one row per level, so OLS, CR2 and
    the df follow exactly from per exchange x level counts and sums
    (`analytics.stats.comparison.cr2_from_cells`)."""
    from analytics.stats.comparison import cr2_from_cells

    n_u = int(pcodes.max(initial=-1)) + 1
    at_first = np.full(n_u, np.nan)
    at_w = np.full(n_u, np.nan)
    m0, m1 = wk == 0, wk == wi
    at_first[pcodes[m0]] = y[m0]
    at_w[pcodes[m1]] = y[m1]
    both = ~np.isnan(at_first) & ~np.isnan(at_w)
    if int(both.sum()) < 3 or not others:
        return {}
    unit_lv = np.zeros(n_u, dtype=np.int64)
    unit_lv[pcodes] = gk
    unit_x = np.zeros(n_u, dtype=np.int64)
    unit_x[pcodes] = xcodes
    change = (at_w - at_first)[both]
    lv = unit_lv[both]
    xc = _dense(unit_x[both])
    n_cl = int(xc.max()) + 1
    cell = xc * p + lv
    cnt = np.bincount(cell, minlength=n_cl * p).reshape(n_cl, p)
    tot = np.bincount(cell, weights=change, minlength=n_cl * p).reshape(n_cl, p)
    # row of X for level l: [1, e_l (l > 0)]
    basis = np.eye(p)
    basis[:, 0] = 1.0
    gram = np.einsum("jl,la,lb->jab", cnt, basis, basis)
    xy = tot @ basis
    if np.linalg.matrix_rank(gram.sum(axis=0)) < p:
        return {}
    fit = cr2_from_cells(gram, xy, n_obs=int(both.sum()))
    out = {}
    for j, name in enumerate(others, start=1):
        c = np.zeros(p)
        c[j] = 1.0
        t = fit.test(c, ci=ci)
        out[name] = {"estimate_cr2": t["estimate"], "ci_low_cr2": t["ci_low_cr2"],
                     "ci_high_cr2": t["ci_high_cr2"], "df_cr2": t["df_cr2"],
                     "p_cr2": t["p_cr2"]}
    return out
