"""Small-cell protection for aggregate tables.

A group with fewer than k participants (default 10) is never shown with its numbers: every
numeric cell of its row becomes missing (NaN / <NA>, never zero, so that nothing downstream can
mistake it for a real count or mean) and the ``suppressed`` column says why (``"n < 10"``). The
row itself stays, so a reader sees that the group exists and was suppressed. Callers with
row-level access may ask for ``unsuppressed=True`` explicitly; then only rows that are below the
threshold are marked ``"not suppressed: n < 10"`` and keep their numbers.

Beyond that primary rule, `protect` is the one disclosure-control function for a table shown
with its totals (an "all" row, a headline count, shares summing to 100%): it applies `suppress`,
then *secondary suppression* so that no suppressed count is recoverable by subtracting the shown
cells from the totals, then, when asked, *rounding* of the counts to a base (funders).

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
           "reason", "configured_k", "protect", "derivable", "round_counts", "DEFAULT_ROUND_TO",
           "ENV_ROUND_TO", "ROUND_TO", "configured_round_to", "SECONDARY", "DIFFERENCE",
           "ISOLATING_SELECTION", "protect_blanked"]

DEFAULT_K = 10
ENV_K = "EXCHANGE_IMPACT_MIN_CELL"
DEFAULT_ROUND_TO = 5
ENV_ROUND_TO = "EXCHANGE_IMPACT_ROUND_TO"
# The `suppressed` text of a cell blanked only so that another one cannot be recovered.
SECONDARY = "complementary"


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


def configured_round_to(environ: dict[str, str] | None = None) -> int:
    """The deployment's rounding base for funders' counts: `ENV_ROUND_TO` when set, else
    `DEFAULT_ROUND_TO`; a value that is not a whole number 1 or more is refused by name."""
    raw = (os.environ if environ is None else environ).get(ENV_ROUND_TO, "").strip()
    if not raw:
        return DEFAULT_ROUND_TO
    try:
        base = int(raw)
    except ValueError:
        base = 0
    if base < 1:
        raise ValueError(f"{ENV_ROUND_TO}={raw!r}: the rounding base must be a whole number 1 or "
                         f"more (default {DEFAULT_ROUND_TO})")
    return base


def reason(k: int) -> str:
    """The text of the ``suppressed`` column for threshold `k`."""
    return f"n < {k}"


MIN_CELL = configured_k()
ROUND_TO = configured_round_to()
SUPPRESSED_LABEL = f"suppressed ({reason(MIN_CELL)})"
SMALL_SELECTION = f"fewer than {MIN_CELL} participants in this selection"
# A selection (or cell) that one filter value would change by fewer than k participants: the
# two views' difference would show that small group (`analytics.read.disclosure`).
DIFFERENCE = f"difference < {MIN_CELL}"
ISOLATING_SELECTION = (f"one filter value changes this selection by fewer than {MIN_CELL} "
                       "participants")


def _blank(out: pd.DataFrame, rows: pd.Series, skip: set[str]) -> None:
    """Blank, in place, every number of `rows` (a bool Series on `out`'s index) outside `skip`:
    bool, integer and float columns become nullable and missing there, never 0."""
    for c in out.columns:
        if c in skip:
            continue
        s = out[c]
        if pd.api.types.is_bool_dtype(s.dtype):
            out[c] = s.astype("boolean").mask(rows)
        elif pd.api.types.is_integer_dtype(s.dtype):
            out[c] = s.astype("Int64").mask(rows)
        elif pd.api.types.is_float_dtype(s.dtype):
            out[c] = s.mask(rows)


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
        _blank(out, small, skip={column, *keep})
    out[column] = pd.Series(np.where(small, why, ""), index=out.index, dtype="str")
    return out


# ---------------------------------------------------------------------------------------------
# Secondary suppression and rounding: `protect`
# ---------------------------------------------------------------------------------------------

def _lines(table: pd.DataFrame, dims: Sequence[str]) -> list[np.ndarray]:
    """The index positions of each *line* of the table: for each dimension d of `dims`, the
    cells that share the values of the other dimensions (their sum along d is a shown total)."""
    lines: list[np.ndarray] = []
    pos = np.arange(len(table))
    for d in dims:
        others = [c for c in dims if c != d]
        if not others:
            lines.append(pos)
            continue
        keys = table[others].astype("string").fillna("\x00").agg("\x1f".join, axis=1)
        for _, idx in pd.Series(pos, index=keys.to_numpy()).groupby(level=0, sort=False):
            lines.append(idx.to_numpy())
    return lines


def derivable(counts: Sequence[float], hidden: Sequence[bool], lines: Sequence[Sequence[int]]
              ) -> np.ndarray:
    """Which hidden positive cells are fixed by the shown ones and the line totals.

    Every line's total is taken as shown. A hidden cell i is recoverable exactly when the unit
    vector e_i lies in the row space of the line-membership matrix restricted to the hidden
    cells, i.e. when every vector of that matrix's null space is 0 at i. Hidden cells that are 0
    are treated as known (an empty group identifies no one, and knowing it can only help an
    attacker, so the check stays conservative). When every hidden cell is positive, a null-space
    direction that moves cell i moves it both ways within the bounds x >= 0, so an undetermined
    cell's feasible interval has positive width (>= 1 for counts of one or two dimensions, whose
    matrices are totally unimodular)."""
    c = np.asarray(counts, dtype=float)
    h = np.asarray(hidden, dtype=bool) & (np.nan_to_num(c) > 0)
    out = np.zeros(len(c), dtype=bool)
    cols = np.flatnonzero(h)
    if not len(cols) or not len(lines):
        return out
    a = np.zeros((len(lines), len(cols)))
    where = {int(j): i for i, j in enumerate(cols)}
    for r, line in enumerate(lines):
        for j in line:
            if int(j) in where:
                a[r, where[int(j)]] = 1.0
    # Null space by SVD (scipy.linalg.null_space does the same); tables are small.
    _, sv, vt = np.linalg.svd(a, full_matrices=True)
    rank = int((sv > 1e-9 * max(1.0, sv.max(initial=0.0))).sum())
    null = vt[rank:].T
    fixed = np.abs(null).max(axis=1, initial=0.0) < 1e-9 if null.size else np.ones(len(cols), bool)
    out[cols[fixed]] = True
    return out


def round_counts(values: pd.Series, base: int) -> pd.Series:
    """Counts rounded to the nearest multiple of `base`, halves up (12 -> 10, 13 -> 15 for base
    5); missing stays missing. Each count is rounded on its own (not controlled rounding), so a
    rounded table need not add up to its rounded total."""
    if base < 1:
        raise ValueError(f"the rounding base must be 1 or more, got {base!r}")
    v = pd.to_numeric(values, errors="coerce").astype("float64")
    return (np.floor(v / base + 0.5) * base).astype("Int64")


def protect(
    table: pd.DataFrame,
    *,
    n: str = "n",
    k: int | None = None,
    dims: Sequence[str] = (),
    keep: Sequence[str] = (),
    counts: Sequence[str] = (),
    column: str = "suppressed",
    unsuppressed: bool = False,
    rounding: bool = False,
    round_to: int | None = None,
    hide: Sequence[bool] | None = None,
) -> pd.DataFrame:
    """The one disclosure-control function: primary and secondary suppression, and rounding.

    1. Primary: `suppress` (rows with ``n < k`` blanked, reason ``"n < k"``).
    2. Secondary (complementary) suppression when the table is shown with its totals: `dims`
       names the table's dimensions (one row per combination); the sum of `n` along each
       dimension (each *line*: a row total, a column total, the "all" row or headline beside a
       1-D table, the 100% of shares) is taken as shown. Until no suppressed positive cell is
       recoverable from the shown cells and those totals (`derivable`), the smallest positive
       shown cell of a line holding a recoverable cell is blanked too, reason ``SECONDARY``.
       Blanked cells' other numbers (means, shares) go with them, so a mean cannot be recovered
       through its sum either (the same linear system). If a line has no shown positive cell
       left, its total itself gives the cell away: that total is under k whenever the cell is,
       and the caller's primary rule on the total (the headline's, the "all" row's) hides it.
       No `dims` (the default): the rows are taken as one line with a shown total.
    3. Rounding (`rounding=True`, funders): `n` and the `counts` columns are rounded to
       `round_to` (default `ROUND_TO`, env EXCHANGE_IMPACT_ROUND_TO) after suppression.

    `hide` marks further rows to blank as primary cells whatever their n (reason
    ``DIFFERENCE``: a neighbouring filter would show their difference; see
    `analytics.read.disclosure`).

    `unsuppressed=True` (callers entitled to row-level data; the role check is the caller's)
    marks the small rows as `suppress` does and blanks nothing; rounding still applies when
    asked. Rows are returned in their order, with the columns of `suppress`.

    Examples
    --------
    >>> t = pd.DataFrame({"country": ["FRA", "KEN", "PER"], "n": [40, 4, 25]})
    >>> protect(t, dims=["country"])["suppressed"].tolist()
    ['', 'n < 10', 'complementary']
    >>> protect(t, dims=["country"], rounding=True, round_to=5)["n"].tolist()
    [40, <NA>, <NA>]
    """
    if k is None:
        k = MIN_CELL
    for d in dims:
        if d not in table.columns:
            raise ValueError(f"table has no column {d!r} (a dimension of the table)")
    out = suppress(table, n=n, k=k, keep=keep, column=column, unsuppressed=unsuppressed)
    if hide is not None and not unsuppressed:
        mask = np.asarray(hide, dtype=bool) & (out[column] == "").to_numpy(bool)
        if mask.any():
            marked = suppress(table.assign(**{n: pd.Series(np.where(mask, np.nan, 1.0),
                                                           index=table.index)}),
                              n=n, k=1, keep=keep, column=column)
            keep_cols = [c for c in out.columns if c != column]
            m = pd.Series(mask, index=out.index)
            for c in keep_cols:
                if marked[c].dtype != out[c].dtype:
                    out[c] = out[c].astype(marked[c].dtype)
                out[c] = out[c].mask(m, marked[c])
            out[column] = out[column].mask(m, DIFFERENCE)
    if not unsuppressed and len(out):
        raw = pd.to_numeric(table[n], errors="coerce").to_numpy(float)
        hidden = np.array(out[column] != "", dtype=bool)
        lines = _lines(table, list(dims)) if dims else [np.arange(len(table))]
        # Ties go to the cell's label, not its row position, so that two tables of the same
        # groups (the map and the table by country) blank the same complement.
        label = (table[list(dims)].astype("string").fillna("").agg("\x1f".join, axis=1)
                 .to_numpy(str) if dims else np.array([f"{i:09d}" for i in range(len(table))]))
        extra = np.zeros(len(table), dtype=bool)
        while True:
            fixed = derivable(raw, hidden, lines)
            if not fixed.any():
                break
            added = False
            for line in lines:
                if not fixed[line].any():
                    continue
                cand = [int(j) for j in line if not hidden[j] and raw[j] > 0]
                if cand:
                    j = min(cand, key=lambda i: (raw[i], label[i], i))
                    hidden[j] = extra[j] = True
                    added = True
                    break  # recompute: one complement often protects several lines
            if not added:
                break
        if extra.any():
            blank = pd.Series(extra, index=out.index)
            _blank(out, blank, skip={column, *keep})
            out[column] = out[column].mask(blank, SECONDARY)
    if rounding:
        base = ROUND_TO if round_to is None else round_to
        for c in dict.fromkeys([n, *counts]):
            if c in out.columns:
                out[c] = round_counts(out[c], base)
    return out


def protect_blanked(
    table: pd.DataFrame,
    *,
    n: str = "n",
    k: int | None = None,
    lines: Sequence[str] = (),
    column: str = "suppressed",
) -> pd.DataFrame:
    """`protect`'s secondary suppression for a table whose small cells are already blanked (a
    stored result table, a read-layer answer): the counts it hid are gone, but `protect` needs
    only to know that they are positive and hidden, so each is taken as an unknown positive
    count. The rows sharing the values of `lines` form one line whose total is shown (the
    "overall" row of a result table, the stage count of a funnel); `lines=()`: all rows are one
    line. In a line with a hidden row, the complement `protect` picks is blanked in the columns
    that the primary rule blanked in that line's hidden rows, and its `column` says so: the
    text `SECONDARY`, or True where `column` is a bool flag (the read layer's).

    Examples
    --------
    >>> t = pd.DataFrame({"g": ["a", "b", "c"], "n": [40.0, None, 25.0],
    ...                   "suppressed": ["", "n < 10", ""]})
    >>> protect_blanked(t)["suppressed"].tolist()
    ['', 'n < 10', 'complementary']
    """
    if k is None:
        k = MIN_CELL
    if n not in table.columns or column not in table.columns:
        raise ValueError(f"table needs the columns {n!r} and {column!r}")
    out = table.copy()
    flag = out[column]
    is_bool = pd.api.types.is_bool_dtype(flag.dtype)
    why = flag.astype("string").fillna("")
    # "not suppressed: n < k" marks a small row shown to a caller with row-level access
    hidden = (flag.fillna(False).astype(bool) if is_bool
              else (why != "") & ~why.str.startswith("not suppressed"))
    if k <= 1 or not hidden.any() or not len(out):
        return out
    groups = (out.groupby(list(lines), dropna=False, sort=False).groups if lines
              else {None: out.index})
    for idx in groups.values():
        h = hidden.loc[idx]
        if not h.any() or h.all():
            continue
        part = out.loc[idx]
        # 1 < k: protect's primary rule hides the row again, and 1 > 0 makes it a cell that
        # the line's total could give away.
        counts = pd.to_numeric(part[n], errors="coerce").astype("float64").mask(h, 1.0)
        marked = protect(part.assign(**{n: counts}), n=n, k=k)[column] == SECONDARY
        new = marked[marked].index
        if not len(new):
            continue
        blanked = [c for c in part.columns if c != column and c not in lines
                   and part.loc[h[h].index, c].isna().all()
                   and pd.api.types.is_numeric_dtype(part[c].dtype)]
        for c in blanked:
            if pd.api.types.is_bool_dtype(out[c].dtype):
                out[c] = out[c].astype("boolean")
            elif pd.api.types.is_integer_dtype(out[c].dtype):
                out[c] = out[c].astype("Int64")
            out.loc[new, c] = pd.NA if not pd.api.types.is_float_dtype(out[c].dtype) else np.nan
        out.loc[new, column] = True if is_bool else SECONDARY
    return out
