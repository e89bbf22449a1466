"""The pages' data callbacks through the app's real endpoint (Flask test client, no browser):
every callback answers for controls that are cleared (None) or hold a value no option has, and
for filters that select nothing, instead of failing with a 500."""

from __future__ import annotations

import json
import os

import pytest

from analytics.read.filters import Filters
from benchmarks.dash_driver import callback_bodies
from tests.dashboard_fixture import build_fixture_warehouse
from tests.grids import grids

CONTROLS = ("equity-by", "equity-scale", "participation-by", "outcomes-forest-by",
            "outcomes-effect", "outcomes-scale")
# issue 13's controls on the Outcomes page (dose measure; attribute and wave of the gains)
CONTROLS += ("outcomes-dose-measure", "outcomes-moderator", "outcomes-moderator-wave")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    path = build_fixture_warehouse(tmp_path_factory.mktemp("cb") / "warehouse.duckdb")
    old = os.environ.get("EXCHANGE_IMPACT_WAREHOUSE")
    os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = str(path)
    import app as app_module

    yield app_module.app.server.test_client()
    if old is None:
        os.environ.pop("EXCHANGE_IMPACT_WAREHOUSE", None)
    else:
        os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = old


def _post_all(client, filters: Filters, values: dict) -> dict[str, int]:
    deps = client.get("/_dash-dependencies").get_json()
    store = {"filters": filters.to_dict(), "query": filters.to_query()}
    status = {}
    for body in callback_bodies("", store, values, deps):
        r = client.post("/_dash-update-component", data=json.dumps(body),
                        content_type="application/json")
        status[body["output"]] = r.status_code
    return status


@pytest.mark.parametrize("value", [None, "no-such-choice"])
def test_callbacks_answer_for_cleared_or_unknown_controls(client, value) -> None:
    status = _post_all(client, Filters(), {c: value for c in CONTROLS})
    assert status and all(s in (200, 204) for s in status.values()), status


def test_callbacks_answer_for_filters_that_select_nothing(client) -> None:
    status = _post_all(client, Filters(country=("XXX",)), {"equity-by": "gender"})
    assert all(s in (200, 204) for s in status.values()), status


# ---- forged payloads (issue 8, §5): malformed input is a 4xx, unknown values are dropped ----

FORGED = ([1, 2, 3], 5, {"filters": [1]}, {"filters": {"country": 5}},
          {"filters": {"country": [{"a": 1}]}}, "x", {"filters": {"start": [1]}})


def _every_body(deps: list[dict]) -> list[dict]:
    """One request body per callback of the app (plain ids), every input and state None."""
    from benchmarks.dash_driver import _outputs

    bodies = []
    for dep in deps:
        ids = [i["id"] for i in dep["inputs"] + dep["state"]]
        if (dep["output"].startswith("..{") or any(i.startswith("{") for i in ids)
                or dep.get("clientside_function")):
            continue
        bodies.append({
            "output": dep["output"], "outputs": _outputs(dep["output"]),
            "inputs": [{"id": i["id"], "property": i["property"], "value": None}
                       for i in dep["inputs"]],
            "state": [{"id": s["id"], "property": s["property"], "value": None}
                      for s in dep["state"]],
            "changedPropIds": [f"{dep['inputs'][0]['id']}.{dep['inputs'][0]['property']}"],
        })
    return bodies


class _NoReportProcess:
    """Stands in for the snapshot job's process (`reports.jobs.start` launches it): a forged
    click that reaches a job start runs all of `start` but the PDF rendering, which test_jobs
    runs for real and which would go on rendering in the background (≈ 10 s) for nothing this
    test asserts."""

    started: list[list[str]] = []

    def __init__(self, cmd: list[str], **_kw) -> None:
        self.started.append(cmd)
        self.returncode = 0

    def poll(self) -> int:
        return 0


def test_forged_values_in_any_callback_input_get_a_4xx_never_a_500(client, monkeypatch) -> None:
    import subprocess
    import types

    from reports import jobs

    monkeypatch.setattr(jobs, "subprocess", types.SimpleNamespace(
        Popen=_NoReportProcess, DEVNULL=subprocess.DEVNULL))
    deps = client.get("/_dash-dependencies").get_json()
    bodies = _every_body(deps)
    assert len(bodies) >= 20
    failures = []
    for body in bodies:
        for slot in ("inputs", "state"):
            for k in range(len(body[slot])):
                for forged in FORGED:
                    b = json.loads(json.dumps(body))
                    b[slot][k]["value"] = forged
                    b["changedPropIds"] = [f"{b[slot][k]['id']}.{b[slot][k]['property']}"]
                    r = client.post("/_dash-update-component", data=json.dumps(b),
                                    content_type="application/json")
                    if r.status_code >= 500:
                        failures.append((body["output"], b[slot][k]["id"], forged,
                                         r.status_code))
    assert failures == [], failures[:20]


def test_a_forged_filter_store_is_refused_with_400(client) -> None:
    deps = client.get("/_dash-dependencies").get_json()
    body = [b for b in callback_bodies("", {}, {}, deps) if "overview-timeline" in b["output"]
            or "timeline" in b["output"]][0]
    for forged in ([1, 2, 3], 5, {"filters": [1]}, {"filters": {"country": 5}}):
        body["inputs"][0]["value"] = forged
        r = client.post("/_dash-update-component", data=json.dumps(body),
                        content_type="application/json")
        assert r.status_code == 400, (forged, r.status_code, r.data[:300])
        assert b"filter" in r.data.lower()


def test_unknown_filter_values_in_a_forged_store_are_dropped_not_cached(client) -> None:
    """100,000 values no option has: answered, and the query cache keeps nothing of them."""
    from analytics.read.cache import cache_keys, clear_cache

    clear_cache()
    deps = client.get("/_dash-dependencies").get_json()
    junk = [f"ZZ{i:06d}" for i in range(100_000)]
    store = {"filters": {"country": junk}, "query": ""}
    for body in callback_bodies("", store, {}, deps):
        r = client.post("/_dash-update-component", data=json.dumps(body),
                        content_type="application/json")
        assert r.status_code in (200, 204), (body["output"], r.status_code)
    assert not any("ZZ000001" in repr(key) for key in cache_keys())


def test_unknown_control_values_are_dropped_with_a_short_note(client) -> None:
    """The filter bar's dropdowns, forged with 100,000 unknown values: the store keeps only
    known ones and the note says what was dropped, in a few lines (not one per value)."""
    deps = client.get("/_dash-dependencies").get_json()
    dep = [d for d in deps if "filters-store.data" in d["output"]][0]
    from benchmarks.dash_driver import _outputs

    junk = [f"ZZ{i:06d}" for i in range(100_000)]
    inputs = [{"id": i["id"], "property": i["property"],
               "value": junk + ["FRA"] if i["id"] == "filter-country" else None}
              for i in dep["inputs"]]
    state = [{"id": s["id"], "property": s["property"], "value": "/"} for s in dep["state"]]
    body = {"output": dep["output"], "outputs": _outputs(dep["output"]), "inputs": inputs,
            "state": state, "changedPropIds": ["filter-country.value"]}
    r = client.post("/_dash-update-component", data=json.dumps(body),
                    content_type="application/json")
    assert r.status_code == 200, r.data[:300]
    resp = json.loads(r.data)["response"]
    kept = resp["filters-store"]["data"]["filters"]["country"]
    assert not any(v.startswith("ZZ") for v in kept)
    note = json.dumps(resp["filter-notes"]["children"])
    assert "100,000" in note and "country" in note
    assert len(note) < 2_000


def test_the_query_cache_stays_under_its_byte_bound(client, monkeypatch) -> None:
    """Many distinct, large keys (what forged filter lists made before they were checked):
    the cache's own accounting stays under its bound and an oversized entry is not kept."""
    from analytics.read import cache as query_cache
    from analytics.read.overview import completion_by_wave
    from pages import _ui

    cache = query_cache.QueryCache(max_bytes=2 * 2**20, max_entry_bytes=2**20)
    monkeypatch.setattr(query_cache, "CACHE", cache)
    for i in range(60):  # ~60 × 150 kB of keys alone
        f = Filters(country=tuple(f"Z{i:03d}-{j:05d}" for j in range(2_000)))
        _ui.query(completion_by_wave, f)
        assert cache.bytes <= cache.max_bytes
    assert 0 < len(cache.keys()) < 60
    assert cache.bytes == sum(query_cache.sizeof(k) + query_cache.sizeof(v[0])
                              for k, v in cache._items.items())
    huge = Filters(country=tuple(f"H{j:06d}" for j in range(20_000)))  # > 1 MB of key
    _ui.query(completion_by_wave, huge)
    assert not any(k[2] == (huge,) for k in cache.keys())
    small = _ui.query(completion_by_wave, Filters())
    assert _ui.query(completion_by_wave, Filters()) is small  # still a cache


# ---- a page's own view keys in the URL (issue 9) ----------------------------------------------

def _sync_filters(client, search: str, pathname: str) -> dict:
    """The filter bar's callback as the page load sends it (URL → controls)."""
    from benchmarks.dash_driver import _outputs

    deps = client.get("/_dash-dependencies").get_json()
    dep = [d for d in deps if "filters-store.data" in d["output"]][0]
    inputs = [{"id": i["id"], "property": i["property"],
               "value": search if (i["id"], i["property"]) == ("url", "search") else None}
              for i in dep["inputs"]]
    state = [{"id": s["id"], "property": s["property"], "value": pathname} for s in dep["state"]]
    body = {"output": dep["output"], "outputs": _outputs(dep["output"]), "inputs": inputs,
            "state": state, "changedPropIds": ["url.search"]}
    r = client.post("/_dash-update-component", data=json.dumps(body),
                    content_type="application/json")
    assert r.status_code == 200, r.data[:300]
    return json.loads(r.data)["response"]


def test_a_link_with_a_page_view_key_opens_that_view_without_a_note(client) -> None:
    resp = _sync_filters(client, "?by=country&country=FRA", "/participation")
    assert resp["filter-notes"]["children"] is None  # no "'by' is not a filter"
    assert resp["filters-store"]["data"]["filters"]["country"] == ["FRA"]
    # The page's layout, as Dash Pages calls it with the link's query, selects that view.
    from pages import participation

    radio = _find(participation.layout(by="country"), participation.BY)
    assert radio.value == "country"
    # On another page the key is not a view: said so.
    resp = _sync_filters(client, "?by=country", "/")
    assert "'by' is not a filter" in json.dumps(resp["filter-notes"]["children"])


@pytest.mark.parametrize(("control", "value", "query"), [
    ("participation-by", "country", "by=country"), ("participation-by", "cluster", ""),
    ("equity-by", "age_band", "by=age_band")])
def test_changing_a_view_control_writes_it_into_the_url(client, control, value, query) -> None:
    deps = client.get("/_dash-dependencies").get_json()
    dep = [d for d in deps if d["output"].startswith("view-store.data")
           and d["inputs"][0]["id"] == control][0]
    from benchmarks.dash_driver import _outputs

    body = {"output": dep["output"], "outputs": _outputs(dep["output"]),
            "inputs": [{"id": i["id"], "property": i["property"],
                        "value": value if i["id"] == control else None} for i in dep["inputs"]],
            "state": [], "changedPropIds": [f"{control}.value"]}
    r = client.post("/_dash-update-component", data=json.dumps(body),
                    content_type="application/json")
    assert r.status_code == 200, r.data[:300]
    data = json.loads(r.data)["response"]["view-store"]["data"]
    assert data["query"] == query and data["path"].startswith("/")


def _find(component, id_: str):
    if getattr(component, "id", None) == id_:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            hit = _find(child, id_)
            if hit is not None:
                return hit
    return None


# ---- a warehouse without its derived tables (issue 9) -----------------------------------------

def test_a_warehouse_without_derived_tables_says_to_refresh_on_the_page(client, tmp_path,
                                                                        monkeypatch) -> None:
    """Written by an older version: the filter bar says to run `python -m analytics refresh`,
    and the figures keep their placeholder (204), never a 500."""
    import duckdb

    from analytics.derive.rollups import META_VERSION

    stale = build_fixture_warehouse(tmp_path / "stale.duckdb")
    con = duckdb.connect(str(stale))
    con.execute("UPDATE meta SET value = 'older' WHERE key = ?", [META_VERSION])
    con.close()
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(stale))
    resp = _sync_filters(client, "", "/")
    assert "python -m analytics refresh" in json.dumps(resp["filter-notes"]["children"])
    assert resp["data-status"]["children"] == "No dashboard tables."
    status = _post_all(client, Filters(), {"participation-by": "cluster"})
    assert status and all(s in (200, 204) for s in status.values()), status
    assert status[[o for o in status if o.startswith("overview-cards")][0]] == 204


def test_every_figure_a_page_sends_is_one_plotly_accepts(client) -> None:
    """The pages build figures as plain dicts (`pages._ui.Figure`, for speed); plotly.py's own
    Figure validates every property name and value of each one they send."""
    import plotly.graph_objects as go

    deps = client.get("/_dash-dependencies").get_json()
    f = Filters()
    store = {"filters": f.to_dict(), "query": f.to_query()}
    seen = 0
    for body in callback_bodies("", store, {}, deps):
        r = client.post("/_dash-update-component", data=json.dumps(body),
                        content_type="application/json")
        if r.status_code != 200:
            continue
        for props in r.get_json()["response"].values():
            fig = props.get("figure")
            if isinstance(fig, dict) and "data" in fig:
                go.Figure(fig)  # raises ValueError naming a bad property
                seen += 1
    assert seen >= 10, seen


def test_plain_dict_figures_are_the_figures_plotly_py_builds(client, monkeypatch) -> None:
    """`pages._ui.Figure` stands in for plotly.py's Figure (for speed, see
    benchmarks/stand_ins.py): every callback that runs on both sends the same figure either way
    (numbers, layout and template, read back through plotly.py)."""
    from benchmarks.stand_ins import canonical_figure, plotly_figure_class
    from pages import _ui

    deps = client.get("/_dash-dependencies").get_json()
    f = Filters()
    store = {"filters": f.to_dict(), "query": f.to_query()}
    bodies = list(callback_bodies("", store, {}, deps))

    def figures() -> dict[str, dict]:
        out = {}
        for body in bodies:
            r = client.post("/_dash-update-component", data=json.dumps(body),
                            content_type="application/json")
            if r.status_code != 200:
                continue
            for key, props in r.get_json()["response"].items():
                fig = props.get("figure")
                if isinstance(fig, dict) and "data" in fig:
                    out[f"{body['output']}/{key}"] = fig
        return out

    plain = figures()
    monkeypatch.setattr(_ui, "Figure", plotly_figure_class())
    # A callback that reads the layout as a dict (`fig.layout.get`) fails under plotly.py: 500.
    monkeypatch.setattr(client.application.logger, "disabled", True)
    library = figures()
    both = plain.keys() & library.keys()
    assert len(both) >= 8, sorted(both)
    for key in sorted(both):
        assert canonical_figure(plain[key]) == canonical_figure(library[key]), key


def test_the_outcome_tables_say_which_estimand_and_what_they_assume(client) -> None:
    """The completers' paired gain and the all-participants model gain are labelled apart, and
    every difference-in-differences says the comparison group was not randomised (issue 10)."""
    from analytics import estimands

    deps = client.get("/_dash-dependencies").get_json()
    f = Filters()
    store = {"filters": f.to_dict(), "query": f.to_query()}
    said: dict[str, str] = {}
    for body in callback_bodies("", store, {"outcomes-scale": None}, deps):
        r = client.post("/_dash-update-component", data=json.dumps(body),
                        content_type="application/json")
        if r.status_code == 200:
            said[body["output"]] = json.dumps(r.get_json()["response"], ensure_ascii=False)
    comparison = next(v for k, v in said.items() if "outcomes-comparison" in k)
    model = next(v for k, v in said.items() if "outcomes-model" in k)
    assert "Completers' mean gain" in comparison and "difference-in-differences" in comparison
    assert estimands.DID_ASSUMPTION in comparison and estimands.COMPLETERS in comparison
    assert "All-participants mixed model" in model
    assert estimands.MODEL_MISSING in model and estimands.DID_ASSUMPTION in model
    overview = next(v for k, v in said.items() if "overview-outcomes" in k)
    assert estimands.COMPLETERS in overview


def test_outcomes_comparison_tables_show_cr2_balance_and_their_assumptions(client) -> None:
    """Issue 10 §2 on the page: the filtered comparison shows the CR2 interval clustered by
    exchange (not Welch's), the raw and ANCOVA-adjusted differences say what each assumes, the
    balance table flags |SMD| > 0.1, and the model note says what the comparison arm's
    modality means."""
    from analytics import estimands

    deps = client.get("/_dash-dependencies").get_json()
    f = Filters()
    store = {"filters": f.to_dict(), "query": f.to_query()}
    said: dict[str, str] = {}
    for body in callback_bodies("", store, {"outcomes-scale": None}, deps):
        r = client.post("/_dash-update-component", data=json.dumps(body),
                        content_type="application/json")
        if r.status_code == 200:
            said[body["output"]] = json.dumps(r.get_json()["response"], ensure_ascii=False)

    def out(name: str) -> str:
        return next(v for k, v in said.items() if k.startswith(name + "."))

    comparison = out("outcomes-comparison")
    assert "95% CI, clustered by exchange (CR2)" in comparison and "Welch" not in comparison
    assert "exchanges" in comparison
    adjusted = out("outcomes-adjusted")
    assert "adjusted: ANCOVA" in adjusted and "raw: difference in mean change" in adjusted
    assert estimands.DID_ASSUMPTION in adjusted and estimands.ANCOVA_ASSUMPTION in adjusted
    balance = out("outcomes-balance")
    assert "Baseline balance" in balance and "SMD" in balance
    assert ("⚠ imbalanced" in balance) == ("baseline differences exceed" in balance)
    assert "was not randomised" in balance
    model = out("outcomes-model")
    assert estimands.COMPARISON_MODALITY in model


def test_the_outcomes_dropout_sensitivity_table_sets_the_estimands_side_by_side(client) -> None:
    """The Outcomes page's "How much does dropout change the follow-up gain?" table: per scale
    the completers', the weighted (IPW) and the MAR-imputed gain with their CIs and the
    tipping point, the MAR / MNAR sentences beneath, and a scale whose non-responders are
    fewer than k shows the suppression label, not numbers."""
    from analytics import estimands, suppression

    deps = client.get("/_dash-dependencies").get_json()
    f = Filters()
    store = {"filters": f.to_dict(), "query": f.to_query()}
    said = ""
    for body in callback_bodies("", store, {"outcomes-scale": None}, deps):
        if "outcomes-sensitivity" not in body["output"]:
            continue
        r = client.post("/_dash-update-component", data=json.dumps(body),
                        content_type="application/json")
        assert r.status_code == 200
        said = json.dumps(r.get_json()["response"], ensure_ascii=False)
        shown = [v for g in grids(r.get_json()["response"]) for row in g for v in row.values()]
    assert "outcomes-sensitivity-table" in said
    for text in ("completers' gain", "weighted (IPW)", "MAR, δ = 0", "tipping point δ",
                 "0.30 [0.26, 0.34]", "0.26 [0.20, 0.32]", "0.25 [0.19, 0.31]", "-2.40 SD",
                 "210 of 400", estimands.SENSITIVITY, estimands.SENSITIVITY_MAR,
                 estimands.SENSITIVITY_MNAR):
        assert text in said, text
    # adaptability: answered, 3 columns
    assert sum(suppression.SUPPRESSED_LABEL in v for v in shown) == 4, shown
    assert "0.11" not in said  # the tipping point's estimate is not what the table shows


def _said(client, output: str, values: dict) -> str:
    deps = client.get("/_dash-dependencies").get_json()
    f = Filters()
    store = {"filters": f.to_dict(), "query": f.to_query()}
    said = ""
    for body in callback_bodies("", store, values, deps):
        if output not in body["output"]:
            continue
        r = client.post("/_dash-update-component", data=json.dumps(body),
                        content_type="application/json")
        assert r.status_code == 200, body["output"]
        said += json.dumps(r.get_json()["response"], ensure_ascii=False)
    return said


def test_partnerships_reciprocity_names_its_method_and_lists_small_partnerships(client) -> None:
    """Issue 13: the Partnerships page's reciprocity view replaces "coming": the scatter, the
    method sentence (t interval, Welch gap, index), and partnerships with a small side listed
    as suppressed, never dropped."""
    from analytics import suppression
    from pages.partnerships import RECIPROCITY_METHOD

    said = _said(client, "partnerships-reciprocity", {})
    assert "Reciprocity: mean composite gain of each side (95% t intervals)" in said
    assert RECIPROCITY_METHOD in said
    assert "Reciprocity (do both sides gain?)" not in said
    assert suppression.SUPPRESSED_LABEL in said  # the fixture's small sides


@pytest.mark.parametrize("by", ["gender", "age_band", "connectivity", "income_group"])
def test_equity_gap_table_names_the_ci_and_lists_left_out_groups(client, by) -> None:
    """Issue 13: the Equity page's gap table for each grouping: three measures, the CR2 interval
    with its Bonferroni level, and the method sentence."""
    from pages.equity import GAPS_METHOD

    said = _said(client, "equity-gaps-table-div", {"equity-by": by, "equity-scale": "all"})
    assert "equity-gaps-table" in said and GAPS_METHOD in said
    for m in ("gain post − pre (completers)", "minutes per participant",
              "drop-out before the post survey"):
        assert m in said


def test_participation_scheduling_names_its_model_and_flags_zero_overlap(client) -> None:
    """Issue 13: the Participation page's scheduling view: the scatter, the model's estimate
    with its method (OLS, CR2 by exchange) and settings, the pair table, zero overlap counted."""
    said = _said(client, "participation-scheduling", {})
    assert "Joint share of events against school-hours overlap per partnership" in said
    assert "CR2 cluster-robust 95% CI by exchange" in said and "08:00-16:00 local" in said
    assert "video_call, live_session" in said
    assert "partnerships never share a school hour (zero overlap)" in said
    assert "participation-scheduling-table-rows" in said


def test_the_balance_note_does_not_vouch_for_rows_it_cannot_show(client, monkeypatch) -> None:
    """When every balance row is suppressed (a small selection), the note says balance cannot
    be judged, not that no difference exceeds 0.1; when rows are shown, it counts them."""
    import pandas as pd

    from analytics.read import slices
    from analytics.stats.comparison import balance_table
    from pages import _ui
    from pages import outcomes as page

    units = pd.DataFrame({"is_comparison": [False] * 12 + [True] * 3,
                          "gender": ["f", "m"] * 6 + ["f", "m", "f"]})
    small = balance_table(units, categorical=["gender"], k=10)
    assert small.smd.isna().all()
    even = pd.DataFrame({"is_comparison": [False] * 10 + [True] * 10, "gender": ["f", "m"] * 10})
    shown = balance_table(even, categorical=["gender"], k=0)
    assert shown.smd.notna().sum() == 2
    store = {"filters": Filters().to_dict(), "query": ""}
    real = _ui.query
    for df, want, not_want in ((small, "cannot be judged", "None of the"),
                               (shown, "None of the 2 baseline differences shown", "cannot")):
        monkeypatch.setattr(_ui, "query", lambda fn, *a, _df=df: (
            _df if fn is slices.balance_slice else real(fn, *a)))
        text = json.dumps(page.balance(store).to_plotly_json(), default=str,
                          ensure_ascii=False)
        assert want in text and not_want not in text, text[:300]


def test_an_estimate_whose_cr2_interval_is_not_estimable_shows_the_estimate_and_a_dash(
        client, monkeypatch) -> None:
    """A filtered view of one exchange and its matched comparison class: each arm's mean
    rests on one cluster, so the raw difference's CR2 variance is 0 in exact arithmetic and
    se, df, CI and p are NaN (`Cr2Fit.test`). The tables show the estimate and "—" for what is
    not estimable, never "nan" or an interval of dashes."""
    import numpy as np
    import pandas as pd

    from analytics.read import outcomes, slices
    from analytics.stats.comparison import METHOD_RAW, ancova
    from analytics.stats.dose import dose_slopes
    from pages import _ui
    from pages import outcomes as page

    rng = np.random.default_rng(4)
    comp = np.r_[np.zeros(15, bool), np.ones(15, bool)]
    d = pd.DataFrame({"instrument": "gcs", "scale": "empathy", "is_comparison": comp,
                      "exchange_id": np.where(comp, "X1-matched", "X1"),
                      "pre": rng.integers(4, 21, 30) / 4})
    d["post"] = d["pre"] + 0.4 * ~comp + rng.normal(0, 0.5, 30)
    cmp_ = ancova(d, k=5)
    raw = cmp_[cmp_["method"] == METHOD_RAW].iloc[0]
    assert np.isfinite(raw["estimate"]) and raw[["se_cr2", "df_cr2", "ci_low_cr2", "p_cr2"]
                                                ].isna().all()
    u = pd.DataFrame({"instrument": "gcs", "scale": "empathy", "exchange_id": rng.integers(
        0, 12, 200), "events": rng.poisson(20, 200)})
    u["change"] = 0.2 * np.log1p(u["events"]) + rng.normal(0, 0.3, 200)
    slopes = dose_slopes(u, doses=["events"])
    # the row as a slope that is not estimable would be stored
    slopes[["se_cr2", "df_cr2", "ci_low_cr2", "ci_high_cr2", "p_cr2"]] = np.nan
    real = _ui.query
    answers = {slices.comparison_slice: cmp_, outcomes.dose_response: slopes,
               outcomes.dose_bins: pd.DataFrame(columns=["instrument", "scale", "suppressed"])}
    monkeypatch.setattr(_ui, "query", lambda fn, *a: answers[fn] if fn in answers
                        else real(fn, *a))
    store = {"filters": Filters(exchange=("X1",)).to_dict(), "query": ""}
    texts = [json.dumps(page.adjusted(store).to_plotly_json(), default=str,
                        ensure_ascii=False),
             json.dumps(page.dose("events", None)[2].to_plotly_json(), default=str,
                        ensure_ascii=False)]
    est = _ui.fmt_num(float(slopes["estimate"].iloc[0]))
    assert f"{est} —" in texts[1]
    assert _ui.fmt_num(float(raw["estimate"])) in texts[0]
    for text in texts:
        assert "nan" not in text.lower() and "[—, —]" not in text, text[:400]
    assert page._interval(0.25, np.nan, np.nan) == "0.25 —"
    assert page._interval(0.25, 0.1, 0.4) == "0.25 [0.10, 0.40]"
    # an equity gap between two groups each found in one exchange only
    from analytics.read import equity
    from analytics.stats.equity import equity_gaps
    from pages import equity as equity_page

    cells = pd.DataFrame({"grouping": "gender", "measure": "gain", "instrument": "all",
                          "scale": "composite", "group": ["female", "male"],
                          "exchange_id": ["X1", "X2"], "n": [12, 15], "sum": [3.6, 2.1]})
    gap = equity_gaps(cells, k=10)
    assert gap["gap"].iloc[0] == pytest.approx(0.16) and gap[["se_cr2", "ci_low"]].isna().all(
        axis=None)
    answers[equity.equity_gap_table] = gap
    text = json.dumps(equity_page.gaps(store, "gender", None).to_plotly_json(), default=str,
                      ensure_ascii=False)
    assert f"{_ui.fmt_num(0.16)} —" in text and "[—, —]" not in text, text[:400]
