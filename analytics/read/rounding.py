"""Funders' rounding of counts (issue 14), applied to every answer of the read layer.

A funder's counts (participants, respondents, the n columns, the headline's figures, the counts
behind figures' bars, hover texts and the PDF's tables) are rounded to the deployment's base
(`analytics.suppression.ROUND_TO`) by `analytics.suppression.round_counts`, the one function.

Where: in `analytics.read.cache.cached`, on the way *out* of the cache. Every number a page
callback or the PDF shows comes from a `@cached` read function (callbacks hold no SQL, STYLE.md
3), so this one place catches every count whatever page, figure or report draws it; rounding in
`pages._ui`'s table and figure builders instead would miss the sentences, hover texts and
headline cards each page formats itself. The cache is keyed on the query, not the role, so the
cached value stays exact and is rounded per call; while a cached function computes (a miss),
the rounding is switched off, so a read function that calls another one caches exact numbers.

Who: the caller's rounding base lives in a context variable, `ROUND_TO` (None: exact). The
request guard (`pages._access.guard`) sets it at the start of every request from the account's
role (`rounding_required()`), and the PDF job sets it from its explicit `--round-to` argument
(`rounded`); the read layer never looks at Flask.

What: counts of people, partnerships and events: `n`, `n_*` columns and the names in `COUNTS`.
Not rounded: means, shares, effect sizes, CIs (not counts) and the counts of the program's
structure that are no one's personal data and that a funder contracted (`STRUCTURE`: countries,
clusters, institutions, exchanges, items of a scale, exchanges behind a cluster-robust CI).
Suppressed (missing) counts stay missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pandas as pd

from analytics import suppression

__all__ = ["ROUND_TO", "COUNTS", "STRUCTURE", "rounded", "apply", "is_count", "count"]

ROUND_TO: ContextVar[int | None] = ContextVar("exchange_impact_round_to", default=None)

# Counts of people, partnerships or events, by column name (besides `n` and `n_*`).
COUNTS = frozenset({
    "participants", "active", "active_month", "events", "invited", "responded", "dropped",
    "ended", "censored", "at_risk", "partnerships_active",
    # scale-up vs scale-in (res_scale): people new, returning, in the previous term, dosed or
    # sustained; left exact, participants = new + returning gave the rounded total away
    "participants_new", "participants_returning", "participants_previous", "dosed", "sustained",
})
STRUCTURE = frozenset({
    "countries", "clusters", "institutions", "exchanges", "n_items", "n_groups_compared",
    "n_clusters", "n_exchanges", "n_exchanges_group", "n_exchanges_no_budget",
})


def is_count(name: Any) -> bool:
    """Whether a column (or headline key) named `name` holds a count that funders see rounded."""
    if not isinstance(name, str) or name in STRUCTURE:
        return False
    return name == "n" or name.startswith("n_") or name in COUNTS


@contextlib.contextmanager
def rounded(base: int | None) -> Iterator[None]:
    """Within the block, read answers come with their counts rounded to `base` (None: exact)."""
    if base is not None and (not isinstance(base, int) or isinstance(base, bool) or base < 1):
        raise ValueError(f"the rounding base must be a whole number 1 or more, got {base!r}")
    token = ROUND_TO.set(base)
    try:
        yield
    finally:
        ROUND_TO.reset(token)


def _frame(df: pd.DataFrame, base: int) -> pd.DataFrame:
    cols = [c for c in df.columns if is_count(c) and pd.api.types.is_numeric_dtype(df[c].dtype)
            and not pd.api.types.is_bool_dtype(df[c].dtype)]
    if not cols:
        return df
    out = df.copy()
    for c in cols:
        r = suppression.round_counts(out[c], base)
        # Keep the column's kind: float columns (NaN for suppressed) stay float for plotly.
        out[c] = r.astype("float64") if pd.api.types.is_float_dtype(df[c].dtype) else r
    return out


def _value(v: Any, base: int) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float) or pd.isna(v):
        return v
    r = suppression.round_counts(pd.Series([v]), base).iloc[0]
    return int(r) if isinstance(v, int) else float(r)


def apply(value: Any, base: int | None = None) -> Any:
    """`value` (a read function's answer: a DataFrame, a dict such as the headline, or a tuple
    of those) with its counts rounded to `base`, by default the caller's `ROUND_TO`; returned
    as is when there is nothing to round. Never changes `value` itself (it may be cached)."""
    base = ROUND_TO.get() if base is None else base
    if base is None:
        return value
    if isinstance(value, pd.DataFrame):
        return _frame(value, base)
    if isinstance(value, dict):
        return {k: _value(v, base) if is_count(k) else v for k, v in value.items()}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(apply(v, base) for v in value)
    return value


def count(value: Any, base: int | None = None) -> Any:
    """One count of people, partnerships or events that a page computes itself from a read
    answer (the rows of a category, `len(d)`), rounded like the read layer's counts: to `base`,
    by default the caller's `ROUND_TO` (None: as it is)."""
    base = ROUND_TO.get() if base is None else base
    return value if base is None else _value(value, base)
