"""The pages' data callbacks through the app's real endpoint (Flask test client, no browser):
every callback answers for controls that are cleared (None) or hold a value no option has, and
for filters that select nothing, instead of failing with a 500."""

from __future__ import annotations

import json
import os

import pytest

from analytics.queries import Filters
from benchmarks.dash_driver import callback_bodies
from tests.dashboard_fixture import build_fixture_warehouse

CONTROLS = ("equity-by", "equity-scale", "participation-by", "outcomes-forest-by",
            "outcomes-effect", "outcomes-scale")


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
