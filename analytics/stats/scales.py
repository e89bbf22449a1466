"""The instruments of `surveys/` as one table of items, and the columns of a scale score.

Scoring itself runs once, in SQL, in the derive step (`analytics.derive.materialise`): reverse-
coded items become min + max - x, a scale's score is the mean of its answered items, and a score
with fewer answered items than the scale's `min_items` is missing but its row is kept. Its oracle,
a pandas re-statement of the same rules, is `tests/scoring_oracle.py`; `tests/test_scales.py`
runs every scoring rule on both.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

__all__ = ["OUTPUT_COLUMNS", "item_table"]

OUTPUT_COLUMNS = ["participant", "exchange_id", "wave", "instrument", "scale", "score",
                  "n_items_answered"]


def item_table(instruments: Mapping[str, object]) -> pd.DataFrame:
    """One row per item: item, instrument, scale, reverse, min, max, min_items, n_items."""
    rows = [
        {"item": it, "instrument": inst.id, "scale": sc.id, "reverse": it in sc.reverse,
         "min": sc.min, "max": sc.max, "min_items": sc.min_items, "n_items": len(sc.items)}
        for inst in instruments.values() for sc in inst.scales for it in sc.items
    ]
    cols = ["item", "instrument", "scale", "reverse", "min", "max", "min_items", "n_items"]
    return pd.DataFrame(rows, columns=cols)
