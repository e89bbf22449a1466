"""Scale scores of a small generated demo program, with its truth, for recovery tests.

Reads the demo's CSV files directly (the statistics are under test here, not the loader), drops
the answers the generator planted out of range on purpose (the loader rejects those), scores the
scales and attaches each participant's group as the truth defines it: the modality of their
exchange, or "comparison".
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.stats.scales import item_table, score_scales
from surveys import load_instruments

N_PARTICIPANTS = 3000


@cache
def demo_scores(participants: int = N_PARTICIPANTS, seed: int = 3) -> tuple[pd.DataFrame, dict]:
    from etl.demo import generate_demo

    out = Path(tempfile.mkdtemp(prefix="demo_scores_"))
    generate_demo(out, participants=participants, seed=seed, progress=False)
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    inst = load_instruments()
    items = item_table(inst).set_index("item")
    resp = pd.read_csv(out / "responses.csv", dtype=str)
    cols = [c for c in resp.columns if c in items.index]
    long = resp.melt(id_vars=["participant_id", "exchange_id", "wave"], value_vars=cols,
                     var_name="item", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    lo, hi = long["item"].map(items["min"]), long["item"].map(items["max"])
    long = long[~((long["value"] < lo) | (long["value"] > hi))]
    scores = score_scales(long, inst)
    people = pd.read_csv(out / "participants.csv", dtype=str)
    exchanges = pd.read_csv(out / "exchanges.csv", dtype=str)
    scores = scores.merge(exchanges[["exchange_id", "modality"]], on="exchange_id", how="left")
    comp = people[["participant_id", "comparison"]].rename(
        columns={"participant_id": "participant"})
    scores = scores.merge(comp, on="participant", how="left")
    scores["comparison"] = scores["comparison"].astype(str).str.lower().eq("true")
    scores["group"] = np.where(scores["comparison"], "comparison", scores["modality"])
    return scores, truth
