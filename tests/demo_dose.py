"""The small generated demo's scores with each participant's dose and exchange attributes, for
the dose–response and setting/modality/purpose recovery tests.

Built on `tests.demo_scores.demo_scores` (the same program: 3,000 participants, seed 3) and the
same program's events.csv and exchanges.csv, generated again into a folder of its own (the same
seed and size give byte-identical files). Events with a timestamp the loader would reject are
not counted; events of unknown participants fall away in the join.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import pandas as pd

from tests.demo_scores import N_PARTICIPANTS, demo_scores


@cache
def demo_dose() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(scores of exchange participants with setting, purpose, modality; units with pre, post,
    change, events, minutes, modality, setting; truth)."""
    from etl.demo import generate_demo

    scores, truth = demo_scores()
    out = Path(tempfile.mkdtemp(prefix="demo_dose_"))
    generate_demo(out, participants=N_PARTICIPANTS, seed=3, progress=False)
    ev = pd.read_csv(out / "events.csv", dtype=str)
    ev = ev[pd.to_datetime(ev["occurred_at"], format="%Y-%m-%d %H:%M:%S",
                           errors="coerce").notna()]
    ev["minutes"] = pd.to_numeric(ev["minutes"])
    eng = (ev.groupby(["participant_id", "exchange_id"])
           .agg(events=("activity", "size"), minutes=("minutes", "sum")).reset_index()
           .rename(columns={"participant_id": "participant"}))
    ex = pd.read_csv(out / "exchanges.csv", dtype=str)[["exchange_id", "setting", "purpose"]]
    s = scores[~scores["comparison"]].merge(ex, on="exchange_id")
    keys = ["participant", "exchange_id", "instrument", "scale", "modality", "setting"]
    w = s.pivot_table(index=keys, columns="wave", values="score").reset_index()
    w = w[w["pre"].notna() & w["post"].notna()]
    w = w.assign(change=w["post"] - w["pre"])
    units = w.merge(eng, on=["participant", "exchange_id"], how="left").fillna(
        {"events": 0, "minutes": 0.0})
    return s, units, truth
