"""Small-cell protection for aggregate tables.

A group with fewer than k participants (default 10) is never shown with its numbers: every
numeric cell of its row becomes missing (NaN / <NA>, never zero, so that nothing downstream can
mistake it for a real count or mean) and the ``suppressed`` column says why (``"n < 10"``). The
row itself stays, so a reader sees that the group exists and was suppressed. Callers with
row-level access may ask for ``unsuppressed=True`` explicitly; then only rows that are below the
threshold are marked ``"not suppressed: n < 10"`` and keep their numbers.

This module is the rule's one home: `suppress` decides, `MIN_CELL` is the deployment's k (the
environment variable EXCHANGE_IMPACT_MIN_CELL, read once here, else `DEFAULT_K`), and the pages'
wording of it (`SUPPRESSED_LABEL`, `SMALL_SELECTION`) is spelled from it. Pages (through the read
layer), exports and the derive step's result tables all call `suppress`; an export may pass an
explicit k (``--min-cell``), everything else uses `MIN_CELL`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_K", "ENV_K", "MIN_CELL", "SUPPRESSED_LABEL", "SMALL_SELECTION", "suppress",
           "reason", "configured_k"]

DEFAULT_K = 10
ENV_K = "EXCHANGE_IMPACT_MIN_CELL"


def configured_k(environ: dict[str, str] | None = None) -> int:
    """The deployment's k: `ENV_K` from the environment when set, else `DEFAULT_K`. A value that
    is not a non-negative integer is refused with the variable's name, not silently replaced."""
    raw = (os.environ if environ is None else environ).get(ENV_K, "").strip()
    if not raw:
        return DEFAULT_K
    try:
        k = int(raw)
    except ValueError:
        k = -1
    if k < 0:
        raise ValueError(f"{ENV_K}={raw!r}: the small-cell threshold must be a whole number "
                         f"0 or more (default {DEFAULT_K})")
    return k


def reason(k: int) -> str:
    """The text of the ``suppressed`` column for threshold `k`."""
    return f"n < {k}"


MIN_CELL = configured_k()
SUPPRESSED_LABEL = f"suppressed ({reason(MIN_CELL)})"
SMALL_SELECTION = f"fewer than {MIN_CELL} participants in this selection"


def suppress(
    table: pd.DataFrame,
    *,
    n: str = "n",
    k: int | None = None,
    keep: Sequence[str] = (),
    column: str = "suppressed",
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """Blank every number of the rows whose participant count `n` is below `k`.

    Parameters
    ----------
    table : aggregate table, one row per group (and estimate)
    n : column with the number of participants behind the row
    k : threshold, `MIN_CELL` when None; rows with ``n < k`` are suppressed (k = 0 or 1
        suppresses nothing but empty groups are still marked when n is missing)
    keep : numeric columns that identify the row rather than describe the group (e.g. a year)
        and are kept
    column : name of the reason column (added or overwritten); empty string where not suppressed
    unsuppressed : explicit opt-out for callers entitled to row-level data

    Returns
    -------
    A copy of `table`: numeric and boolean columns become nullable or float where needed, so that
    a blanked cell is missing, never zero.

    Examples
    --------
    >>> t = pd.DataFrame({"group": ["a", "b"], "n": [25, 4], "mean": [3.1, 4.0]})
    >>> out = suppress(t)
    >>> out["suppressed"].tolist(), out["mean"].isna().tolist(), out["n"].isna().tolist()
    (['', 'n < 10'], [False, True], [False, True])
    """
    if k is None:
        k = MIN_CELL
    if n not in table.columns:
        raise ValueError(f"table has no column {n!r} (the participant count)")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    out = table.copy()
    counts = pd.to_numeric(out[n], errors="coerce")
    small = (counts < k) | counts.isna()
    why = reason(int(k))
    if unsuppressed:
        out[column] = pd.Series(np.where(small, f"not suppressed: {why}", ""), index=out.index,
                                dtype="str")
        return out
    if small.any():
        for c in out.columns:
            if c == column or c in keep:
                continue
            s = out[c]
            if pd.api.types.is_bool_dtype(s.dtype):
                out[c] = s.astype("boolean").mask(small)
            elif pd.api.types.is_integer_dtype(s.dtype):
                out[c] = s.astype("Int64").mask(small)
            elif pd.api.types.is_float_dtype(s.dtype):
                out[c] = s.mask(small)
    out[column] = pd.Series(np.where(small, why, ""), index=out.index, dtype="str")
    return out
