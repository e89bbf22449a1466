"""The dashboard in a real headless Chromium (dash[testing]'s `dash_duo`): every page at once.

Every page loads clean and offline, its screenshot from the demo program goes to
docs/screenshots/, and a selection under k shows no count of it anywhere. Runs on the small
fixture warehouse of `tests/dashboard_fixture.py` (deterministic, with one country below the
suppression threshold). Chromium is started with every host but the test server unresolvable
(see conftest.py), so the "nothing outside the origin" check cannot pass by luck. The views of
one page are tested in tests/test_pages_<page>.py; the helpers are in tests/pages_browser.py.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.pages_browser import (
    PAGES,
    READY,
    SMALL_QUERY,
    SMALL_VIEWS,
    foreign_requests,
    screenshot,
    serve_demo,
    settle,
    small_selection_counts,
    small_view_problems,
)

pytestmark = pytest.mark.browser


def test_every_page_loads_clean_offline_and_is_captured(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    for name, path in PAGES.items():
        dash_duo.driver.get(dash_duo.server_url + path)
        settle(dash_duo, READY[name])
        assert dash_duo.get_logs() == [], f"{name}: browser console errors"
        assert foreign_requests(dash_duo) == [], f"{name}: requests outside the origin"
        # Each page has exactly one h1, and every filter has a label.
        assert len(dash_duo.find_elements("h1")) == 1
        for label in dash_duo.find_elements(".filter-bar label"):
            assert label.get_attribute("for"), label.text
    assert dash_duo.get_logs() == []


def test_screenshots_of_every_page_on_the_demo(dash_duo, dash_app, pages_demo,
                                              monkeypatch) -> None:
    """docs/screenshots/<page>.png, drawn from the demo program, for people to look at."""
    serve_demo(dash_duo, dash_app, pages_demo, monkeypatch)
    for name, page in PAGES.items():
        dash_duo.driver.get(dash_duo.server_url + page)
        ready = ("#outcomes-model .ag-row, #outcomes-model .alert" if name == "outcomes"
                 else READY[name])
        settle(dash_duo, ready)
        assert dash_duo.get_logs() == [], f"{name}: browser console errors on the demo"
        screenshot(dash_duo, name)


def test_a_selection_under_k_shows_no_count_of_it_on_any_page(dash_duo, dash_app,
                                                             tmp_path) -> None:
    """Every page, filtered to fewer than k people: no count or statistic of them in the text
    or in a figure's data, and the suppression message where they would have been. Each view
    is read until it is drawn from the filtered selection (the unfiltered first draw holds
    numbers, so waiting for their absence cannot pass early); then it must hold none."""
    copy = tmp_path / "oracle.duckdb"
    shutil.copy(os.environ["EXCHANGE_IMPACT_WAREHOUSE"], copy)
    counts = small_selection_counts(copy)
    assert 8 in counts and max(counts) >= 100  # 8 participants, their events
    dash_duo.start_server(dash_app)
    failures = {}
    for name, path in PAGES.items():
        dash_duo.driver.get(dash_duo.server_url + path + SMALL_QUERY)
        settle(dash_duo, READY[name])
        texts, graphs = SMALL_VIEWS[name]
        deadline = time.monotonic() + 30
        while (problems := small_view_problems(dash_duo, texts, graphs, counts)) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        if not problems:  # and still so once nothing is in flight
            settle(dash_duo, READY[name])
            problems = small_view_problems(dash_duo, texts, graphs, counts)
        if problems:
            failures[name] = problems
        if name in ("overview", "equity"):
            screenshot(dash_duo, f"{name}-under-k")
    assert not failures, "\n".join(f"{name}: {p}" for name, ps in failures.items() for p in ps)
    assert dash_duo.get_logs() == []
