"""Coverage of the longitudinal model's 95% intervals when exchanges differ (issue 10, §1).

Simulates programs with few exchanges and a known exchange-level effect, fits the one-level model
(``(1 | participant)``, Wald z, the model before issue 10) and the two-level model
(``(1 | participant) + (1 | exchange)``, Wald t with between-within df) and counts how often the
95% intervals cover the truth.

Program per replication (seeded): 16 exchanges, half virtual, half physical (modality decided per
exchange), 10-40 participants each, waves pre/post/followup with ~20 % / ~35 % of the follow-up
answers missing; variance components s2_x = 0.08 (exchange), s2_p = 0.50 (participant),
s2_e = 0.42 (residual): ICC between exchanges 0.08. Truth: pre mean 3.0 (physical), 3.2
(virtual); gain post-pre 0.40 (physical), 0.30 (virtual), follow-up keeps 60 % of it.

Estimands reported:

- ``emm[wave=post]``: the mean score at post (modalities weighted equally), truth 3.45 — a
  between-exchange quantity: every score of an exchange shares its exchange's intercept;
- ``modality[T.virtual]``: the difference between modalities at pre, truth 0.20 — between
  exchanges, 16 exchanges, 2 exchange-level columns: t with 14 df;
- ``contrast[post-pre]``: the gain, truth 0.35 — within participants: an exchange intercept
  cancels, so both models should cover it.

The two-level fit is also scored with Wald z intervals ("two-level z") to show what the t
reference with between-within df buys when exchanges are few.

    python benchmarks/coverage.py              # 1000 replications (~1 minute)
    python benchmarks/coverage.py --reps 500
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.stats.longitudinal import longitudinal_model  # noqa: E402

N_EXCHANGES = 16
VAR_EXCHANGE, VAR_PARTICIPANT, VAR_RESIDUAL = 0.08, 0.50, 0.42
TRUTH = {"emm[wave=post]": 3.0 + 0.1 + 0.35, "modality[T.virtual]": 0.20,
         "contrast[post-pre]": 0.35}


def simulate(seed: int) -> pd.DataFrame:
    """One program: long table participant x wave with exchange, modality, score."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 41, N_EXCHANGES)
    ex = np.repeat(np.arange(N_EXCHANGES), sizes)
    n = len(ex)
    virtual = (np.arange(N_EXCHANGES) % 2 == 1)[ex]
    u_x = rng.normal(0.0, math.sqrt(VAR_EXCHANGE), N_EXCHANGES)[ex]
    u_p = rng.normal(0.0, math.sqrt(VAR_PARTICIPANT), n)
    gain = np.where(virtual, 0.30, 0.40)
    pid = np.repeat(np.arange(n), 3)
    w = np.tile(np.arange(3), n)
    mean = (3.0 + 0.2 * virtual[:, None]
            + np.column_stack([0 * gain, gain, 0.6 * gain])).ravel()
    y = mean + np.repeat(u_x + u_p, 3) + rng.normal(0.0, math.sqrt(VAR_RESIDUAL), 3 * n)
    keep = rng.random(3 * n) >= np.array([0.0, 0.20, 0.35])[w]
    return pd.DataFrame({
        "participant": pid[keep], "wave": np.array(["pre", "post", "followup"])[w[keep]],
        "score": y[keep], "exchange": np.repeat(ex, 3)[keep],
        "modality": np.where(np.repeat(virtual, 3), "virtual", "physical")[keep],
    })


def replicate(seed: int) -> dict[str, dict[str, bool]]:
    """Whether each model's 95% interval covers each estimand's truth, for one program."""
    d = simulate(seed)
    hits: dict[str, dict[str, bool]] = {}
    for label, ex in (("one-level", None), ("two-level", "exchange")):
        out = longitudinal_model(d, group="modality", exchange=ex, instrument=None,
                                 scale=None, waves=["pre", "post", "followup"])
        out = out.set_index("term")
        hits[label] = {t: bool(out.loc[t, "ci_low"] <= v <= out.loc[t, "ci_high"])
                       for t, v in TRUTH.items()}
        if ex is not None:  # the same fit with Wald z instead of t: why t
            hits["two-level z"] = {
                t: bool(abs(out.loc[t, "estimate"] - v) <= 1.959964 * out.loc[t, "se"])
                for t, v in TRUTH.items()}
    return hits


def coverage(reps: int, seed0: int = 0) -> pd.DataFrame:
    """Coverage per model x estimand with its Monte-Carlo SE sqrt(c (1 - c) / reps)."""
    rows = [(m, t, h) for s in range(reps) for m, d in replicate(seed0 + s).items()
            for t, h in d.items()]
    df = pd.DataFrame(rows, columns=["model", "estimand", "hit"])
    out = df.groupby(["model", "estimand"], sort=False)["hit"].mean().rename("coverage")
    out = out.reset_index()
    out["mc_se"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / reps)
    out["reps"] = reps
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=1000)
    args = ap.parse_args(argv)
    out = coverage(args.reps)
    print(f"{args.reps} replications, {N_EXCHANGES} exchanges, ICC between exchanges "
          f"{VAR_EXCHANGE / (VAR_EXCHANGE + VAR_PARTICIPANT + VAR_RESIDUAL):.2f}; nominal 0.95")
    print("one-level: (1 | participant), Wald z; two-level: (1 | participant) + (1 | exchange), "
          "Wald t with between-within df; two-level z: the same fit with Wald z")
    for r in out.itertuples():
        print(f"{r.model:<12} {r.estimand:<22} coverage {r.coverage:.3f} "
              f"(Monte-Carlo SE {r.mc_se:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
