"""Where the code writes out what a library does: each stand-in against the library, same run.

Two stand-ins stay, and this script shows why; it also checks that each gives the library's
numbers (or a figure the library accepts):

- Cronbach's alpha (`analytics.stats.reliability.cronbach_alpha`) is pingouin's formula written
  out: pingouin's import (it loads matplotlib and seaborn) would be paid by every load that
  derives the result tables. Printed: pingouin's import in a fresh interpreter, one alpha each
  way on a 10,000 × 8 item table, and the largest difference.
- The pages' figures (`pages._ui.Figure`, `grid`) are plain dicts: plotly.py's Figure validates
  and copies its property tree on every construction and update. Printed: the time every figure
  callback of the dashboard takes with plain dicts (through the app's real endpoint, on the test
  fixture warehouse) and the time plotly.py's `go.Figure` takes just to accept the same figures
  (a lower bound of building them with plotly.py).

Welch's t on raw data (`attrition.welch_t`) and Kaplan–Meier are library calls now (scipy,
statsmodels); `means.welch_difference` stays arithmetic because it starts from summaries, for
which scipy gives neither the interval nor the degrees of freedom (tests hold it equal to scipy).

    python benchmarks/stand_ins.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _import_time(module: str) -> float:
    """Seconds to import `module` in a fresh interpreter, beyond a bare interpreter's start."""
    def run(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        return time.perf_counter() - t0
    base = min(run("pass") for _ in range(3))
    return min(run(f"import {module}") for _ in range(3)) - base


def _best(fn, repeat: int = 5) -> float:  # noqa: ANN001 - any callable
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def alpha() -> None:
    import numpy as np
    import pandas as pd

    from analytics.stats.reliability import cronbach_alpha

    rng = np.random.default_rng(1)
    trait = rng.normal(size=10_000)
    wide = pd.DataFrame({f"i{j}": np.clip(np.round(3 + trait + rng.normal(size=10_000)), 1, 5)
                         for j in range(8)})
    wide = wide.mask(rng.random(wide.shape) < 0.05)  # missing answers: pairwise covariances
    imp = _import_time("pingouin")
    import pingouin as pg

    ours = _best(lambda: cronbach_alpha(wide))
    lib = _best(lambda: pg.cronbach_alpha(wide, nan_policy="pairwise"))
    diff = abs(cronbach_alpha(wide)[0] - pg.cronbach_alpha(wide, nan_policy="pairwise")[0])
    print(f"alpha, 10,000 x 8 items: written out {ours * 1e3:.1f} ms, pingouin {lib * 1e3:.1f} ms"
          f" + import {imp:.2f} s in a fresh process; largest difference {diff:.1e}")
    print(f"  -> stays: pingouin's import is {imp / max(ours, 1e-9):,.0f}x one alpha; "
          "every derive step (each load) would pay it")


def figures() -> None:
    import plotly.graph_objects as go

    from analytics.read.filters import Filters
    from benchmarks.dash_driver import callback_bodies
    from tests.dashboard_fixture import build_fixture_warehouse

    wh = Path(tempfile.mkdtemp(prefix="stand_ins_")) / "warehouse.duckdb"
    build_fixture_warehouse(wh)
    os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = str(wh)
    import app as app_module

    client = app_module.app.server.test_client()
    deps = client.get("/_dash-dependencies").get_json()
    f = Filters()
    store = {"filters": f.to_dict(), "query": f.to_query()}
    bodies = list(callback_bodies("", store, {}, deps))

    def post_all(which: list[dict]) -> list[dict]:
        figs = []
        for body in which:
            r = client.post("/_dash-update-component", data=json.dumps(body),
                            content_type="application/json")
            if r.status_code == 200:
                figs += [p["figure"] for p in r.get_json()["response"].values()
                         if isinstance(p.get("figure"), dict) and "data" in p["figure"]]
        return figs

    def answered(which: list[dict]) -> list[dict]:
        return [b for b in which if client.post(
            "/_dash-update-component", data=json.dumps(b),
            content_type="application/json").status_code == 200]

    # The same callbacks building plotly.py figures: _ui.Figure's methods are plotly.py's names
    # (add_trace, update_layout with magic underscores, update_xaxes, add_annotation, …), so
    # the pages run unchanged on a go.Figure that takes traces as _ui.Figure does. A callback
    # that reads the layout as a dict fails under plotly.py and is left out of both timings.
    from pages import _ui

    class PlotlyFigure(go.Figure):
        def __init__(self, *traces: dict) -> None:
            super().__init__(data=list(traces))

    plain = _ui.Figure
    _ui.Figure = PlotlyFigure
    app_module.app.server.logger.disabled = True  # the left-out callbacks' tracebacks
    try:
        both = answered(answered(bodies))  # the second pass runs with the queries cached
        lib_figs = post_all(both)
        lib = _best(lambda: post_all(both))
    finally:
        _ui.Figure = plain
        app_module.app.server.logger.disabled = False
    figs = post_all(both)
    ours = _best(lambda: post_all(both))
    accept = _best(lambda: [go.Figure(fig) for fig in figs])
    same = len(lib_figs) == len(figs) and all(
        len(a["data"]) == len(b["data"]) for a, b in zip(lib_figs, figs, strict=True))
    print(f"figures: {len(both)} of the dashboard's {len(bodies)} callbacks ({len(figs)} "
          f"figures; same figures and traces both ways: {same}), queries cached: plain dicts "
          f"{ours * 1e3:.0f} ms, plotly.py figures {lib * 1e3:.0f} ms = {lib / ours:.1f}x; "
          f"go.Figure only accepting the finished dicts {accept * 1e3:.0f} ms")
    print("  -> stays while plotly.py costs > 1.5x: tests/test_callbacks.py holds every figure "
          "sent to one that plotly.py accepts")


def main() -> int:
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    alpha()
    figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
