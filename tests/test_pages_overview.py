"""The Overview page in a real headless Chromium: filters, the link, the map, the weekly gaps
under k (with the Participation page's), and, on the demo program, the scale-up and cost views.
Helpers and fixtures: tests/pages_browser.py, tests/conftest.py."""

from __future__ import annotations

import time

import pytest

from analytics.suppression import SUPPRESSED_LABEL
from tests.pages_browser import (
    PARTICIPANTS,
    READY,
    demo_with_truth,
    figure_total,
    has_gap,
    section_screenshot,
    settle,
)

pytestmark = pytest.mark.browser


def test_filter_changes_figures_and_url(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    settle(dash_duo, READY["overview"])
    dash_duo.wait_for_text_to_equal(PARTICIPANTS, "465")
    before = figure_total(dash_duo, "overview-timeline")
    dash_duo.select_dcc_dropdown("#filter-country", value="FRA")
    dash_duo.wait_for_text_to_equal(PARTICIPANTS, "66")
    assert "country=FRA" in dash_duo.driver.current_url
    # The weekly figure was redrawn for France alone: fewer active participant-weeks.
    deadline = time.monotonic() + 10
    while figure_total(dash_duo, "overview-timeline") == before and time.monotonic() < deadline:
        time.sleep(0.2)
    after = figure_total(dash_duo, "overview-timeline")
    assert 0 < after < before
    # Navigating keeps the filter in the link and the view.
    dash_duo.find_element("a[href^='/participation']").click()
    settle(dash_duo, READY["participation"])
    assert "country=FRA" in dash_duo.driver.current_url
    dash_duo.wait_for_contains_text("#participation-table-cluster", "Participation by cluster")
    assert dash_duo.get_logs() == []


def test_url_with_filters_restores_the_view(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url
                        + "/?country=FRA&modality=virtual,teleport&from=2025-01-01&bogus=1")
    settle(dash_duo, READY["overview"])
    # The valid values are back in the controls …
    dash_duo.wait_for_contains_text("#filter-country", "FRA")
    dash_duo.wait_for_contains_text("#filter-modality", "virtual")
    # … the invalid ones are named in a visible note, not a traceback.
    dash_duo.wait_for_contains_text("#filter-notes", "modality=teleport is not in the data")
    dash_duo.wait_for_contains_text("#filter-notes", "'bogus' is not a filter")
    value = int(dash_duo.find_element(PARTICIPANTS).text.replace(",", ""))
    assert 0 < value < 66
    # The canonical query string replaces the typed one.
    url = dash_duo.driver.current_url
    assert "modality=virtual" in url and "teleport" not in url and "bogus" not in url
    assert dash_duo.get_logs() == []


def test_clicking_a_country_on_the_map_filters(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    settle(dash_duo, READY["overview"])
    dash_duo.wait_for_text_to_equal(PARTICIPANTS, "465")
    path = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#overview-map path.choroplethlocation'))"
        ".find(p => p.__data__ && p.__data__.loc === 'BRA')")
    assert path is not None, "Brazil is not drawn on the map"
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(dash_duo.driver).move_to_element(path).click().perform()
    dash_duo.wait_for_contains_text("#filter-country", "BRA")
    dash_duo.wait_for_text_to_equal(PARTICIPANTS, "66")
    assert "country=BRA" in dash_duo.driver.current_url
    assert dash_duo.get_logs() == []


def test_weeks_with_fewer_than_k_active_are_gaps_with_a_note(dash_duo, dash_app) -> None:
    """The fixture has weeks with fewer than k active people in groups of k or more: the lines
    have a gap there (no count, no minutes) and the note under the figure says why."""
    dash_duo.start_server(dash_app)
    settle(dash_duo, READY["overview"])
    dash_duo.wait_for_contains_text("#overview-timeline-note", "Weeks with fewer than")
    assert has_gap(dash_duo, "overview-timeline")
    dash_duo.driver.get(dash_duo.server_url + "/participation")
    settle(dash_duo, READY["participation"])
    for graph in ("participation-weekly", "participation-retention"):
        dash_duo.wait_for_contains_text(f"#{graph}-note", f"{SUPPRESSED_LABEL}")
        assert "Weeks with fewer than" in dash_duo.find_element(f"#{graph}-note").text
        assert has_gap(dash_duo, graph), graph
    assert dash_duo.get_logs() == []


def test_scale_up_vs_scale_in_views_on_the_demo(dash_duo, dash_app, pages_demo,
                                                monkeypatch) -> None:
    """Issue 13 on the Overview page, drawn from the demo: the quadrant holds each cluster
    whose latest term grew in breadth but not in depth (truth.json "scale") as "scaling up
    only"; the cluster filter narrows the per-term view to that cluster (screenshot
    overview-scale.png)."""
    path, truth = demo_with_truth(pages_demo)
    planted = truth["scale"]["scaling_up_only"]
    assert planted
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/")
    settle(dash_duo, "#overview-scale-rows")
    assert dash_duo.get_logs() == []
    assert "Newcombe" in dash_duo.find_element("#overview-scale-note").text
    quad = dash_duo.driver.execute_script(
        "const d = document.querySelector('#overview-scale-quadrant .js-plotly-plot')._fullData;"
        "return [Array.from(d[0].text), Array.from(d[0].customdata.map(c => c[7]))]")
    shown = dict(zip(*quad, strict=True))
    for p in planted:
        assert shown[p["cluster"]] == "scaling up only"
    section_screenshot(dash_duo, "overview-scale", "overview-scale")
    one = planted[0]["cluster"]
    dash_duo.driver.get(dash_duo.server_url + f"/?cluster={one}")
    settle(dash_duo, "#overview-scale-rows")
    names = dash_duo.driver.execute_script(
        "return Array.from(document.querySelector('#overview-scale-terms .js-plotly-plot')"
        "._fullData.map(t => t.name))")
    assert set(names) == {one}
    rows = dash_duo.find_element("#overview-scale-rows").text
    assert planted[0]["term"] in rows and "scaling up only" in rows


def test_overview_cost_view_on_the_demo(dash_duo, dash_app, pages_demo, monkeypatch) -> None:
    """Issue 13 on the Overview page, drawn from the demo (budgets in several currencies, a
    rates.csv converting them into EUR): the cost table per cluster from the link, the
    no-budget count, the interval per unit of gain; switching to programs redraws it
    (screenshot overview-cost.png)."""
    path, truth = demo_with_truth(pages_demo)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/?cost=cluster")
    settle(dash_duo, "#overview-cost-grid")
    assert dash_duo.get_logs() == []
    grid = dash_duo.find_element("#overview-cost-grid").text
    cost = truth["cost"]
    assert "cluster (currency)" in grid and "overall (EUR)" in grid
    assert (f"{cost['exchanges_without_budget']} of {cost['exchanges']} exchanges have no "
            "budget") in grid
    assert "per unit of gain [95% CI]" in grid
    points = dash_duo.driver.execute_script(
        "return document.querySelector('#overview-cost .js-plotly-plot')._fullData[0].y.length")
    assert points >= 2
    dash_duo.driver.execute_script(
        "Array.from(document.querySelectorAll('#overview-cost-by input'))"
        ".find(i => i.value === 'program').click()")
    dash_duo.wait_for_contains_text("#overview-cost-grid", "program (currency)", timeout=20)
    settle(dash_duo, "#overview-cost-grid")
    assert dash_duo.get_logs() == []
    section_screenshot(dash_duo, "overview-cost-section", "overview-cost")
