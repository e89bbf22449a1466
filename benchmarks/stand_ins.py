"""Where the code writes out what a library does: each stand-in against the library, same run.

Every line times the written-out path and the library path at the app's sizes, asserts that the
two give the same numbers (to 1e-10; the same figure JSON for the pages) and says what stays:

- Welch's difference of two means (`analytics.stats.means.welch_difference`), 50 groups, from
  each group's n, mean and variance: stays, because the read layer has only these summaries
  and scipy's `ttest_ind_from_stats` gives t and p but neither the interval nor the degrees of
  freedom. Against it: `scipy.stats.ttest_ind(equal_var=False)` on the raw scores.
- The t-interval of a mean (`means.t_interval`), 50 groups: mean ± scipy's t quantile ·
  sd/√n, against `scipy.stats.t.interval` (which gives NaN for a group whose SD is 0).
- Kaplan–Meier (`analytics.stats.survival.kaplan_meier`) is statsmodels' `SurvfuncRight` now;
  timed against the written-out product-limit loop it replaced, on 180 durations (the 10k
  demo's 179 partnerships) and on 3,000.
- Cronbach's alpha (`analytics.stats.reliability.cronbach_alpha`) is pingouin's formula written
  out: pingouin's import (it loads matplotlib and seaborn) would be paid by every load that
  derives the result tables. Printed: pingouin's import in a fresh interpreter, one alpha each
  way on a 10,000 × 8 item table, and the largest difference.
- The pages' figures (`pages._ui.Figure`, `grid`) are plain dicts: plotly.py's Figure validates
  and copies its property tree on every construction and update. Printed: the time every figure
  callback of the dashboard takes with plain dicts and with plotly.py figures (through the
  app's real endpoint, on the test fixture warehouse), whether both send the same figure, the
  time `go.Figure` takes just to accept the finished dicts, and plotly.graph_objects' import.

    python benchmarks/stand_ins.py
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
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


def _agree(what: str, worst: float) -> None:
    """Stop with a clear line when a stand-in and its library disagree (an assert would vanish
    under python -O)."""
    if not worst < 1e-10:
        raise SystemExit(f"{what}: largest difference {worst:.1e} exceeds 1e-10")


def _best(fn, repeat: int = 5) -> float:  # noqa: ANN001 - any callable
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def means() -> None:
    """Welch's difference and the t-interval for 50 groups: a page's rows at most."""
    import math

    import numpy as np
    import pandas as pd
    from scipy import stats

    from analytics.stats.means import t_interval, welch_difference

    rng = np.random.default_rng(2)
    groups = [(rng.normal(0.3, 1, int(rng.integers(200, 900))),
               rng.normal(0.1, 1, int(rng.integers(50, 300)))) for _ in range(50)]
    # What the read layer has: n, mean and variance per arm (one SQL aggregate per group).
    moments = [(len(a), a.mean(), a.var(ddof=1), len(b), b.mean(), b.var(ddof=1))
               for a, b in groups]
    ours = _best(lambda: [welch_difference(*m) for m in moments], repeat=20)
    raw = _best(lambda: [stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
                         for a, b in groups], repeat=20)

    def from_stats(m: tuple) -> object:
        return stats.ttest_ind_from_stats(m[1], math.sqrt(m[2]), m[0], m[4], math.sqrt(m[5]),
                                          m[3], equal_var=False)

    t_only = _best(lambda: [from_stats(m) for m in moments], repeat=20)
    worst = 0.0
    for (a, b), m in zip(groups, moments, strict=True):
        diff, lo, hi = welch_difference(*m)
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        t = diff / math.sqrt(m[2] / m[0] + m[5] / m[3])
        worst = max(worst, abs(lo - ci.low), abs(hi - ci.high),
                    abs(t - float(from_stats(m).statistic)))
    _agree("Welch difference vs scipy", worst)
    print(f"Welch difference, 50 groups: from summaries {ours * 1e3:.2f} ms, scipy ttest_ind on "
          f"the raw scores {raw * 1e3:.2f} ms = {raw / ours:.1f}x (ttest_ind_from_stats, t and p "
          f"only: {t_only * 1e3:.2f} ms); largest difference {worst:.1e}")
    print("  -> stays: the read layer has each group's n, mean and SD, not the scores, and "
          "scipy's ttest_ind_from_stats gives neither the interval nor the degrees of freedom")

    first = [g[0] for g in groups]
    df = pd.DataFrame({"mean": [g.mean() for g in first], "sd": [g.std(ddof=1) for g in first],
                       "n": [len(g) for g in first]})

    def interval() -> tuple:
        return stats.t.interval(0.95, df.n - 1, loc=df["mean"], scale=df.sd / np.sqrt(df.n))

    ours = _best(lambda: t_interval(df), repeat=20)
    lib = _best(interval, repeat=20)
    out, (lo, hi) = t_interval(df), interval()
    worst = float(max(np.abs(out.ci_low - lo).max(), np.abs(out.ci_high - hi).max()))
    _agree("t-interval vs scipy", worst)
    print(f"t-interval, 50 groups: t_interval {ours * 1e3:.2f} ms, scipy.stats.t.interval "
          f"{lib * 1e3:.2f} ms = {lib / ours:.1f}x; largest difference {worst:.1e}")
    print("  -> library already: t_interval is mean ± scipy's t quantile (stats.t.ppf) · sd/√n; "
          "t.interval itself gives NaN for a group with SD 0, where mean ± 0 is right")


def _km_written_out(durations: object, ended: object) -> object:
    """The product-limit loop analytics/stats/survival.py had before statsmodels (f4f7c0b)."""
    import math

    import numpy as np
    import pandas as pd

    order = np.argsort(durations, kind="stable")
    t_all, e_all = durations[order], ended[order]
    rows = [(0.0, 1.0, len(t_all), 0, 1.0, 1.0)]
    s, gw = 1.0, 0.0
    for t in np.unique(t_all[e_all]):
        n_risk = int((t_all >= t).sum())
        d = int(((t_all == t) & e_all).sum())
        s *= 1 - d / n_risk
        if n_risk > d:
            gw += d / (n_risk * (n_risk - d))
        if 0 < s < 1:
            se = math.sqrt(gw) / abs(math.log(s))
            lo, hi = s ** math.exp(1.96 * se), s ** math.exp(-1.96 * se)
        else:
            lo = hi = s
        rows.append((float(t), s, n_risk, d, lo, hi))
    return pd.DataFrame(rows, columns=["days", "survival", "at_risk", "ended", "ci_low", "ci_high"])


def survival() -> None:
    """Kaplan–Meier as the partnerships page runs it: the 10k demo has 179 partnerships; a
    program of a few thousand is the scale to plan for."""
    import numpy as np

    from analytics.stats.survival import kaplan_meier

    rng = np.random.default_rng(3)
    ratios = []
    for n in (180, 3_000):
        days = rng.integers(30, 2_000, n).astype(float)
        ended = rng.random(n) < 0.75
        lib = _best(lambda d=days, e=ended: kaplan_meier(d, e))
        old = _best(lambda d=days, e=ended: _km_written_out(d, e))
        a, b = kaplan_meier(days, ended), _km_written_out(days, ended)
        if a.shape != b.shape:
            raise SystemExit(f"Kaplan-Meier: statsmodels {a.shape} vs the loop {b.shape} rows")
        worst = float(np.nanmax(np.abs(a.to_numpy(float) - b.to_numpy(float))))
        _agree("Kaplan-Meier vs the loop", worst)
        print(f"Kaplan–Meier, {n:,} durations: statsmodels SurvfuncRight {lib * 1e3:.1f} ms, the "
              f"written-out loop it replaced {old * 1e3:.1f} ms = {lib / old:.2f}x; largest "
              f"difference {worst:.1e}")
        ratios.append(lib / old)
    print(f"  -> library (statsmodels), {min(ratios):.2f}-{max(ratios):.2f}x the loop's time; "
          "only R's log(-log) interval is added, from statsmodels' Greenwood standard error")


def plotly_figure_class() -> type:
    """A plotly.py `go.Figure` that takes traces as `pages._ui.Figure` does. _ui.Figure's
    methods are plotly.py's names (add_trace, update_layout with magic underscores,
    update_xaxes, add_annotation, …), so with `_ui.Figure` set to this class the pages build
    plotly.py figures unchanged."""
    import plotly.graph_objects as go

    class PlotlyFigure(go.Figure):
        def __init__(self, *traces: dict) -> None:
            # An empty template, as _ui's figures start: plotly.py's default one would add
            # 7 kB to every response and make the two figures differ.
            super().__init__(data=list(traces), layout={"template": {}})

    return PlotlyFigure


def canonical_figure(fig: dict) -> dict:
    """A figure as plotly.py reads it: typed arrays ({"dtype", "bdata"}, plotly.py's encoding of
    numpy arrays) as lists, named colour scales spelled out, and the template without the no-op
    entries ({"scatter": [{"type": "scatter"}]}) plotly.py puts in an empty one."""
    import base64

    import numpy as np
    import plotly.graph_objects as go
    import plotly.io as pio

    def decode(v: object) -> object:
        if isinstance(v, dict):
            if {"dtype", "bdata"} <= set(v):
                a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
                if "shape" in v:
                    a = a.reshape([int(x) for x in str(v["shape"]).split(",")])
                return a.tolist()
            return {k: decode(x) for k, x in v.items()}
        if isinstance(v, list):
            return [decode(x) for x in v]
        return v

    out = decode(json.loads(pio.to_json(go.Figure(decode(fig)))))
    template = out["layout"].get("template", {})
    data = {k: v for k, v in template.get("data", {}).items() if v != [{"type": k}]}
    template.pop("data", None)
    if data:
        template["data"] = data
    return out


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
    _agree("alpha vs pingouin", diff)
    print(f"alpha, 10,000 x 8 items: written out {ours * 1e3:.1f} ms, pingouin {lib * 1e3:.1f} ms"
          f" + import {imp:.2f} s in a fresh process; largest difference {diff:.1e}")
    print(f"  -> stays: pingouin's import is {imp / max(ours, 1e-9):,.0f}x one alpha; "
          "every derive step (each load) would pay it")


def figures() -> None:
    import plotly.graph_objects as go

    from analytics.read.filters import Filters
    from benchmarks.dash_driver import callback_bodies
    from tests.dashboard_fixture import build_fixture_warehouse

    folder = tempfile.mkdtemp(prefix="stand_ins_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    wh = Path(folder) / "warehouse.duckdb"
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

    # The same callbacks building plotly.py figures (`PlotlyFigure`). A callback that reads the
    # layout as a dict fails under plotly.py and is left out of both timings.
    from pages import _ui

    plain = _ui.Figure
    _ui.Figure = plotly_figure_class()
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
        canonical_figure(a) == canonical_figure(b) for a, b in zip(lib_figs, figs, strict=True))
    if not same:
        raise SystemExit("plotly.py and the plain dicts sent different figures")
    go_import = _import_time("plotly.graph_objects")
    by_dash = subprocess.run(
        [sys.executable, "-c", "import sys, dash; print('plotly.graph_objects' in sys.modules)"],
        check=True, cwd=ROOT, capture_output=True, text=True).stdout.strip() == "True"
    print(f"figures: {len(both)} of the dashboard's {len(bodies)} callbacks ({len(figs)} "
          f"figures, the same JSON both ways: {same}), queries cached: plain dicts "
          f"{ours * 1e3:.0f} ms, plotly.py figures {lib * 1e3:.0f} ms = {lib / ours:.1f}x; "
          f"go.Figure only accepting the finished dicts {accept * 1e3:.0f} ms; import "
          f"plotly.graph_objects {go_import:.2f} s in a fresh process "
          f"({'paid anyway: dash imports it' if by_dash else 'dash does not import it'})")
    print(f"  -> stays: plotly.py adds {(lib - ours) * 1e3 / len(both):.0f} ms per callback "
          f"({lib / ours:.1f}x > 1.5x); tests/test_callbacks.py holds every figure sent equal "
          "to plotly.py's and accepted by it")


def main() -> int:
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    means()
    survival()
    alpha()
    figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
