"""What the differencing rule for means costs per request (issue 14), on e.g. the
10,000-participant demo (`python -m etl demo --participants 10000 --warehouse W`).

For 50 seeded random filter combinations (the generator of benchmarks/slice.py), times each
rule cold (`disclosure.isolating_gains` overall, by modality and by gender; `isolating` by
gender; `isolating_scores`), and, in the same run as the baseline, the read function it guards
with its rule already cached (prepost_slice, comparison_difference, gains_by_group,
participation_by_group, wave_means); prints p50/p95 of each and the rule's share. The rule is
`@cached` per data version and request, so a second call costs a cache hit.

    python benchmarks/differencing.py --warehouse path/to/warehouse.duckdb [--n 50]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.slice import open_with_combos  # noqa: E402  (the same seeded combinations)


def main() -> int:
    import numpy as np

    from analytics.read import cache, disclosure, equity, outcomes

    cur, fs = open_with_combos(__doc__)

    def timed(fn: Callable[..., object], *a: object) -> float:
        t0 = time.perf_counter()
        fn(*a)
        return (time.perf_counter() - t0) * 1000

    gains = disclosure.isolating_gains
    cases = [  # (name, the rule, the guarded function, its arguments after f)
        ("prepost_slice", lambda f: gains(cur, f), outcomes.prepost_slice, ()),
        ("prepost_slice by modality", lambda f: gains(cur, f, "modality"),
         outcomes.prepost_slice, ("modality",)),
        ("comparison_difference", lambda f: gains(cur, f), outcomes.comparison_difference, ()),
        ("gains_by_group gender", lambda f: gains(cur, f, "gender"), equity.gains_by_group,
         ("gender",)),
        ("participation_by_group gender", lambda f: disclosure.isolating(cur, f, "gender"),
         equity.participation_by_group, ("gender",)),
        ("wave_means", lambda f: disclosure.isolating_scores(cur, f), outcomes.wave_means, ()),
    ]
    q = lambda x, pc: float(np.percentile(x, pc))  # noqa: E731
    outcomes.prepost_slice.__wrapped__(cur, fs[0])  # warm-up
    print(f"{len(fs)} combinations; ms per call (p50 / p95)")
    for name, rule, fn, extra in cases:
        r, g, hit = [], [], []
        for f in fs:
            cache.clear_cache()
            r.append(timed(rule, f))  # cold
            hit.append(timed(rule, f))  # cached
            g.append(timed(fn.__wrapped__, cur, f, *extra))  # the rule cached, as in production
        print(f"{name:31s} rule {q(r, 50):6.1f} / {q(r, 95):6.1f}   function {q(g, 50):6.1f} / "
              f"{q(g, 95):6.1f}   rule/function p50 {q(r, 50) / q(g, 50):4.2f}x   "
              f"cache hit {q(hit, 50):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
