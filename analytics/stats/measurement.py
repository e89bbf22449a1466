"""Measurement checks beside reliability: floor and ceiling shares, invariance across languages.

- `floor_ceiling`: share of scored respondents at a scale's minimum and maximum per scale and
  wave, flagged above 15 % (Terwee et al. 2007, J Clin Epidemiol 60:34-42: a floor or ceiling
  effect is present when more than 15 % of respondents score the lowest or highest possible
  score; change cannot be seen there).
- `dif_screen`: a differential-item-functioning screen across the languages a scale was
  answered in (Zumbo 1999's regression framework, with a linear model for the Likert item):
  per item and per language against the reference language (the one with most respondents),

      model 0: item ~ rest                       (rest = sum of the scale's other items)
      model 2: item ~ rest + language + rest:language

  nested F test of the two language terms (2 df; uniform and non-uniform DIF together) and its
  effect size ΔR² = R²(model 2) − R²(model 0). An item *differs* in a language when the
  Holm-adjusted p (over every item x language test of the scale) is below 0.05 **and**
  ΔR² ≥ 0.035 (Jodoin & Gierl 2001's boundary between negligible and moderate DIF): with
  thousands of respondents a negligible difference is significant, and the rest score, an
  imperfect match for the trait, leaves a small spurious difference when the languages'
  groups differ in their mean. The three nested least-squares fits come from one QR
  decomposition (`_nested_fits`), held equal to statsmodels OLS `compare_f_test` by the tests.

  Why not the multi-group CFA (configural / metric / scalar with ΔCFI ≤ .01, Chen 2007):
  semopy 2.3.11 fits one model per group (`semopy.multigroup`) but cannot hold loadings or
  intercepts equal across groups, so the metric and scalar steps cannot be fitted with it;
  hand-writing a multi-group ML CFA with equality constraints was not worth its risk here.
  The screen finds what the scalar step would reject in practice (an item whose intercept or
  loading differs in one language) and names the item, which the CFA steps do not.

Pure: DataFrames in, tidy DataFrames out; no DuckDB, no files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["FLOOR_CEILING_SHARE", "floor_ceiling", "FLOOR_CEILING_COLUMNS", "DIF_MIN_N",
           "DIF_DELTA_R2", "DIF_ALPHA", "dif_screen", "DIF_COLUMNS", "dif_verdict"]

FLOOR_CEILING_SHARE = 0.15  # Terwee et al. 2007
FLOOR_CEILING_COLUMNS = ["instrument", "scale", "wave", "n", "scale_min", "scale_max",
                         "n_floor", "n_ceiling", "floor_share", "ceiling_share", "floor_effect",
                         "ceiling_effect"]

DIF_MIN_N = 100  # respondents with every item answered, per language, for a language to be tested
DIF_DELTA_R2 = 0.035  # Jodoin & Gierl 2001: negligible below, moderate from here
DIF_ALPHA = 0.05  # Holm-adjusted, over the scale's item x language tests
DIF_COLUMNS = ["instrument", "scale", "wave", "item", "language", "reference", "n_language",
               "n_reference", "shift", "delta_r2", "f", "p", "p_holm", "differs", "verdict"]


def floor_ceiling(scores: pd.DataFrame, *, instrument: str, scale: str, scale_min: float,
                  scale_max: float, wave: str = "wave", score: str = "score",
                  threshold: float = FLOOR_CEILING_SHARE) -> pd.DataFrame:
    """Share of scored respondents at the scale's minimum and maximum, per wave.

    A score is at the floor when it equals `scale_min` (every answered item at its lowest after
    reverse coding; compared to within 1e-9), at the ceiling when it equals `scale_max`.
    ``floor_effect``/``ceiling_effect``: share > `threshold` (0.15, Terwee et al. 2007).
    Rows without a score are not counted.

    Examples
    --------
    >>> d = pd.DataFrame({"wave": ["pre"] * 4, "score": [1.0, 1.0, 3.5, 5.0]})
    >>> floor_ceiling(d, instrument="i", scale="s", scale_min=1, scale_max=5)[
    ...     ["n", "floor_share", "ceiling_share", "floor_effect"]].to_dict("records")
    [{'n': 4, 'floor_share': 0.5, 'ceiling_share': 0.25, 'floor_effect': True}]
    """
    d = scores.loc[scores[score].notna(), [wave, score]]
    rows = []
    for w, blk in d.groupby(wave, sort=True):
        x = blk[score].to_numpy(float)
        n = len(x)
        n_lo = int(np.sum(np.abs(x - scale_min) < 1e-9))
        n_hi = int(np.sum(np.abs(x - scale_max) < 1e-9))
        rows.append({"instrument": instrument, "scale": scale, "wave": str(w), "n": n,
                     "scale_min": float(scale_min), "scale_max": float(scale_max),
                     "n_floor": n_lo, "n_ceiling": n_hi, "floor_share": n_lo / n,
                     "ceiling_share": n_hi / n, "floor_effect": n_lo / n > threshold,
                     "ceiling_effect": n_hi / n > threshold})
    out = pd.DataFrame(rows, columns=FLOOR_CEILING_COLUMNS)
    for c in ("n", "n_floor", "n_ceiling"):
        out[c] = out[c].astype("int64")
    for c in ("floor_effect", "ceiling_effect"):
        out[c] = out[c].astype("boolean")
    return out


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p values (R p.adjust(p, "holm"))."""
    p = np.asarray(p, float)
    m = len(p)
    if not m:
        return p
    order = np.argsort(p)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def dif_verdict(tested: Sequence[str], too_few: Sequence[str],
                differs: Sequence[tuple[str, str]]) -> str:
    """The plain verdict of a scale: "invariant", "item X differs in Y", "too few per language".

    `tested`: languages compared (reference first); `too_few`: languages with fewer than
    `DIF_MIN_N` complete respondents; `differs`: (item, language) pairs found to differ.
    """
    if len(tested) < 2:
        have = f"only {tested[0]} has" if tested else "no language has"
        return (f"too few per language: {have} {DIF_MIN_N} or more respondents with every item "
                "answered")
    if differs:
        by_item: dict[str, list[str]] = {}
        for it, lang in differs:
            by_item.setdefault(it, []).append(lang)
        text = "; ".join(f"item {it} differs in {', '.join(sorted(ls))}"
                         for it, ls in by_item.items())
    else:
        text = f"invariant across {', '.join(tested)}"
    if too_few:
        text += f" (not checked, fewer than {DIF_MIN_N}: {', '.join(sorted(too_few))})"
    return text


def dif_screen(wide: pd.DataFrame, *, items: Sequence[str], instrument: str, scale: str,
               wave: str = "pre", group: str = "language", min_n: int = DIF_MIN_N,
               delta_r2: float = DIF_DELTA_R2, alpha: float = DIF_ALPHA) -> pd.DataFrame:
    """Regression DIF screen of one scale's items across the levels of `group` (see the module).

    `wide`: one row per respondent, the scale's `items` as columns (reverse-coded) and `group`.
    Only respondents who answered every item are used. Returns one row per item x language
    tested, with ``shift`` (the language's uniform difference: its coefficient in model 1,
    item ~ rest + language, in answer points), ``delta_r2``, ``f``, ``p`` (F test of model 2
    against model 0, 2 df), ``p_holm``, ``differs`` and the scale's ``verdict`` on every row;
    a scale with fewer than two languages to compare gets one row with item and language
    empty. `wave` is only written into the output.
    """
    # the model module, not statsmodels.api (which also imports its plots and time series:
    # 0.5 s more in every load's process)
    from statsmodels.regression.linear_model import OLS

    cols = list(items)
    d = wide.loc[wide[group].notna(), [*cols, group]].dropna(subset=cols)
    counts = d[group].astype(str).value_counts()
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")
    ok = [str(g) for g, n in counts.items() if n >= min_n]
    too_few = [str(g) for g, n in counts.items() if n < min_n]
    base = {"instrument": instrument, "scale": scale, "wave": wave}
    if len(ok) < 2 or len(cols) < 3:
        if len(cols) < 3:
            ok = ok[:1]
        row = {**base, "item": None, "language": None, "reference": ok[0] if ok else None,
               "n_language": None, "n_reference": int(counts.iloc[0]) if ok else None,
               "verdict": dif_verdict(ok, too_few, [])}
        return _frame([row])
    ref = ok[0]
    x = d[cols].to_numpy(float)
    g = d[group].astype(str).to_numpy()
    total = x.sum(axis=1)
    rows = []
    for lang in ok[1:]:
        m = (g == ref) | (g == lang)
        is_l = (g[m] == lang).astype(float)
        for j, it in enumerate(cols):
            y = x[m, j]
            rest = total[m] - y
            one = np.ones_like(y)
            z = np.column_stack([one, rest, is_l, rest * is_l, y])
            stats = _nested_fits(z)
            if stats is None:  # a rank-deficient design: statsmodels' pseudo-inverse copes
                f0 = OLS(y, z[:, :2]).fit()
                f1 = OLS(y, z[:, :3]).fit()
                f2 = OLS(y, z[:, :4]).fit()
                fval, pval, _ = f2.compare_f_test(f0)
                stats = (float(f1.params[2]), float(f2.rsquared - f0.rsquared), float(fval),
                         float(pval))
            shift, dr2, fval, pval = stats
            rows.append({**base, "item": it, "language": lang, "reference": ref,
                         "n_language": int(is_l.sum()), "n_reference": int((1 - is_l).sum()),
                         "shift": shift, "delta_r2": dr2, "f": fval, "p": pval})
    out = _frame(rows)
    out["p_holm"] = _holm(out["p"].to_numpy(float))
    out["differs"] = (out["p_holm"] < alpha) & (out["delta_r2"] >= delta_r2)
    flagged = list(zip(out.loc[out["differs"], "item"], out.loc[out["differs"], "language"],
                       strict=True))
    out["verdict"] = dif_verdict(ok, too_few, flagged)
    out["differs"] = out["differs"].astype("boolean")
    return out


def _nested_fits(z: np.ndarray) -> tuple[float, float, float, float] | None:
    """The DIF screen's three nested OLS fits from one QR decomposition; None if rank-deficient.

    `z` holds the columns [1, rest, language, rest x language, item]. Models 0, 1 and 2 use the
    first 2, 3 and 4 columns; with R from the QR of all five, the residual sum of squares of the
    model on the first k columns is the sum of R[k:, -1]², so one factorisation gives all three
    fits (statsmodels fitted three pseudo-inverses per item and language: ~6x the time, the
    largest part of the derive's invariance step) and the F test's numerator has no cancellation.
    Returns (model 1's language coefficient, ΔR², F, p) as `compare_f_test` and `rsquared`
    define them (2 and n − 4 df; R² on the centred total sum of squares).
    """
    from scipy.stats import f as f_dist

    n = len(z)
    if n <= 4:
        return None
    r = np.linalg.qr(z, mode="r")
    diag = np.abs(np.diag(r)[:4])
    if not np.all(diag > 1e-10 * max(1.0, float(np.abs(r[:4, :4]).max()))):
        return None
    qy = r[:, 4]
    ssr2 = float(qy[4] ** 2)
    if ssr2 <= 0.0:
        return None
    extra = float(qy[2] ** 2 + qy[3] ** 2)  # ssr0 − ssr2
    tss = float(extra + qy[1] ** 2 + ssr2)  # the intercept-only model's residual sum of squares
    shift = float(np.linalg.solve(r[:3, :3], qy[:3])[2])
    fval = (extra / 2.0) / (ssr2 / (n - 4))
    return shift, extra / tss, float(fval), float(f_dist.sf(fval, 2, n - 4))


def _frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=DIF_COLUMNS)
    for c in ("n_language", "n_reference"):
        out[c] = out[c].astype("Int64")
    out["differs"] = out["differs"].astype("boolean")
    return out
