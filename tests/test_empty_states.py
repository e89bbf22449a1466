"""Issue 15: every figure says why it is empty. Each figure callback of the app is asked, as
the page asks it, for a selection with no data, for one under k and on a warehouse whose
results are not computed yet: every figure it answers either draws values or carries a
message naming the reason (no data for this filter, suppressed, not computed yet)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from analytics.read.filters import Filters
from tests import access_helpers as ah
from tests.dashboard_fixture import build_fixture_warehouse
from tests.pages_browser import fixture_warehouse

NO_DATA = Filters(start=date(2099, 1, 1), end=date(2099, 12, 31))
UNDER_K = Filters(country=("FRA",), exchange=("X3",))
# What each situation's empty figures must say. Under k, a figure may also be empty for a
# reason of its own (no cluster has two terms); it must still say one.
REASONS = {
    "no data": re.compile(r"^No [a-z ]+ match the current filters\."),
    "suppressed": re.compile(r"suppressed \(n < \d+\)|^No |too few", re.I),
    "not computed": re.compile(r"^Not computed yet for this data version"),
}
_ARRAYS = ("x", "y", "z", "values", "locations", "lat", "lon", "r", "theta")


def _has_values(trace: dict[str, Any]) -> bool:
    for key in _ARRAYS:
        v = trace.get(key)
        if isinstance(v, dict) and v.get("bdata"):  # plotly's typed-array encoding
            return True
        if isinstance(v, list) and any(x is not None for x in v):
            return True
    return False


def _figures(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cid: props["figure"] for cid, props in answer.items()
            if isinstance(props, dict) and isinstance(props.get("figure"), dict)}


def _messages(fig: dict[str, Any]) -> str:
    notes = fig.get("layout", {}).get("annotations") or []
    return " ".join(str(a.get("text", "")) for a in notes)


_WHOLE: set[str] = set()


def _whole_program_figures() -> set[str]:
    """The figures of callbacks whose numbers cover all participants (`WHOLE_PROGRAM`)."""
    if not _WHOLE:
        import app as app_module
        from pages import _access

        for output, entry in ah.callbacks(app_module).items():
            if _access._callback_name(entry["callback"]) in _access.WHOLE_PROGRAM:
                _WHOLE.update(o.rsplit(".", 1)[0].lstrip(".") for o in output.split("...")
                              if o.strip(".").endswith("figure"))
    return _WHOLE


def _ask_every_figure(app_module, filters: Filters) -> dict[str, dict[str, Any]]:
    cbs = ah.callbacks(app_module)
    client = app_module.server.test_client()
    store = {"filters": filters.to_dict(), "query": filters.to_query()}
    out: dict[str, dict[str, Any]] = {}
    for output, entry in cbs.items():
        if ".figure" not in output or output.startswith("..{") or output.startswith("{"):
            continue
        r = ah.post(client, ah.body(output, entry, store))
        if r.status_code == 204:  # PreventUpdate: the figure keeps the layout's own message
            out[output] = {}
            continue
        assert r.status_code == 200, (output, r.status_code, r.get_data(as_text=True)[:300])
        out.update(_figures(json.loads(r.get_data(as_text=True))["response"]))
    return out


def _silent(figures: dict[str, dict[str, Any]], reason: str) -> list[str]:
    bad = []
    for cid, fig in figures.items():
        if not fig or any(_has_values(t) for t in fig.get("data", [])):
            continue
        text = _messages(fig)
        # A figure of all participants (the filters do not apply) gives its own reason.
        fits = (REASONS[reason].search(text) if cid not in _whole_program_figures()
                else any(r.search(text) for r in REASONS.values()))
        if not fits:
            bad.append(f"{cid}: {text!r}")
    return bad


@pytest.mark.parametrize("reason,filters", [("no data", NO_DATA), ("suppressed", UNDER_K)])
def test_a_figure_without_values_says_why(monkeypatch, reason: str, filters: Filters) -> None:
    app_module = ah.dashboard(monkeypatch, fixture_warehouse())
    figures = _ask_every_figure(app_module, filters)
    assert len(figures) >= 15, sorted(figures)
    assert {"outcomes-dose", "overview-cost"} <= _whole_program_figures()
    assert not _silent(figures, reason), "\n".join(_silent(figures, reason))


def test_a_figure_whose_results_are_not_computed_yet_says_so(monkeypatch, tmp_path: Path
                                                            ) -> None:
    wh = build_fixture_warehouse(tmp_path / "warehouse.duckdb", with_results=False)
    app_module = ah.dashboard(monkeypatch, wh)
    figures = _ask_every_figure(app_module, Filters())
    assert not _silent(figures, "not computed"), "\n".join(_silent(figures, "not computed"))
