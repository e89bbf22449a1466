"""One on-request pre/post table (issue 17: p95 under 300 ms on the 10,000-participant demo).

Times `analytics.read.outcomes.prepost_slice` (read cache off: every call computes) on 50
seeded random filter combinations, and the stored res_prepost lookup (`prepost_results`) in
the same run as the baseline; prints p50/p95 of each and their ratio. Then, per combination,
the other on-request tables of `analytics.read.slices`: one mixed-model fit (one scale drawn
at random, as the Outcomes page asks for it), the raw/adjusted comparison and the baseline
balance (every scale), with the stored tables' lookup as their baseline.

    python benchmarks/slice.py --warehouse path/to/warehouse.duckdb [--n 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_combos(cur: object, n: int) -> list:
    """`n` seeded filter combinations of 1–3 dimensions, two values each, 30% with dates."""
    import numpy as np

    from analytics.read.filters import Filters

    vals = {
        "program": "SELECT DISTINCT program FROM exchanges",
        "cluster": "SELECT DISTINCT cluster_id FROM institutions",
        "country": "SELECT DISTINCT country FROM institutions",
        "modality": "SELECT DISTINCT modality FROM exchanges",
        "setting": "SELECT DISTINCT setting FROM exchanges",
        "role": "SELECT DISTINCT role FROM participants",
    }
    opts = {k: sorted(str(r[0]) for r in cur.execute(q).fetchall() if r[0] is not None)
            for k, q in vals.items()}
    lo, hi = cur.execute("SELECT min(start_date), max(end_date) FROM exchanges").fetchall()[0]
    rng = np.random.default_rng(17)
    out = []
    for _ in range(n):
        kw: dict = {}
        for d in rng.choice(list(opts), size=rng.integers(1, 4), replace=False):
            kw[d] = tuple(sorted(rng.choice(opts[d], size=min(len(opts[d]), 2), replace=False)))
        if rng.random() < 0.3:
            kw["start"] = lo + (hi - lo) * float(rng.uniform(0, 0.5))
            kw["end"] = lo + (hi - lo) * float(rng.uniform(0.5, 1))
        out.append(Filters(**kw))
    return out


def open_with_combos(doc: str) -> tuple[object, list]:
    """The command line of the request benchmarks (`--warehouse`, `--n`; `doc` is the script's
    docstring): a read cursor on the warehouse and `--n` seeded combinations (`make_combos`)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--warehouse", type=Path, required=True)
    p.add_argument("--n", type=int, default=50)
    args = p.parse_args()

    from etl.warehouse import Reader

    cur = Reader(args.warehouse).cursor()
    return cur, make_combos(cur, args.n)


def main() -> int:
    import numpy as np

    from analytics.read import outcomes

    cur, combos = open_with_combos(__doc__)

    cpu: dict[str, list[float]] = {}

    def timed(fn: Callable[..., object], *a: object, label: str = "") -> float:
        """Wall-clock ms of one call; its CPU ms (this process, all threads) go to `cpu`, a
        figure that other processes on a shared machine disturb less."""
        t0, c0 = time.perf_counter(), time.process_time()
        fn(*a)
        cpu.setdefault(label or getattr(fn, "__name__", "?"), []).append(
            (time.process_time() - c0) * 1000)
        return (time.perf_counter() - t0) * 1000

    raw_slice = outcomes.prepost_slice.__wrapped__
    raw_stored = outcomes.prepost_results.__wrapped__
    raw_slice(cur, combos[0])  # warm-up
    s = [timed(raw_slice, cur, f) for f in combos]
    b = [timed(raw_stored, cur, "overall") for _ in combos]
    q = lambda x, pc: float(np.percentile(x, pc))  # noqa: E731
    print(f"on request  p50 {q(s, 50):7.1f} ms  p95 {q(s, 95):7.1f} ms  ({len(s)} combinations)")
    print(f"stored      p50 {q(b, 50):7.1f} ms  p95 {q(b, 95):7.1f} ms")
    print(f"ratio p50 {q(s, 50) / q(b, 50):.1f}x  p95 {q(s, 95) / q(b, 95):.1f}x; "
          f"target p95 < 300 ms: {'met' if q(s, 95) < 300 else 'NOT met'}")

    from analytics.read import slices

    scales = [f"{a}/{c}" for a, c in cur.execute(
        "SELECT DISTINCT instrument, scale FROM res_person_scores ORDER BY ALL").fetchall()]
    rng = np.random.default_rng(18)
    picked = [str(rng.choice(scales)) for _ in combos]
    model = slices.longitudinal_slice.__wrapped__
    compare = slices._compare
    model(cur, combos[0], picked[0])  # warm-up
    m = [timed(model, cur, f, sc) for f, sc in zip(combos, picked, strict=True)]
    mb = [timed(outcomes.longitudinal.__wrapped__, cur) for _ in combos]
    c = [timed(compare, cur, f, False, True, label="comparison (on request)") for f in combos]
    bl = [timed(compare, cur, f, True, False, label="balance (on request)") for f in combos]
    cb = [timed(outcomes.comparison_results.__wrapped__, cur) for _ in combos]
    print(f"model, one scale, on request  p50 {q(m, 50):7.1f} ms  p95 {q(m, 95):7.1f} ms;  "
          f"stored p50 {q(mb, 50):5.1f} ms  p95 {q(mb, 95):5.1f} ms")
    print(f"raw/adjusted comparison, on request  p50 {q(c, 50):7.1f} ms  p95 {q(c, 95):7.1f} "
          f"ms;  stored p50 {q(cb, 50):5.1f} ms  p95 {q(cb, 95):5.1f} ms")
    print(f"baseline balance, on request  p50 {q(bl, 50):7.1f} ms  p95 {q(bl, 95):7.1f} ms")
    for name, xs in cpu.items():
        print(f"CPU ms of {name:<24} p50 {q(xs, 50):7.1f}  p95 {q(xs, 95):7.1f}  ({len(xs)} calls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
