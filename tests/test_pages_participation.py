"""The Participation page in a real headless Chromium: a view key in the link, the suppressed
small group, and the scheduling view on the demo program.
Helpers and fixtures: tests/pages_browser.py, tests/conftest.py."""

from __future__ import annotations

import pytest

from analytics.suppression import SUPPRESSED_LABEL
from tests.dashboard_fixture import SMALL_COUNTRY
from tests.pages_browser import (
    READY,
    demo_with_truth,
    grid_shown,
    settle,
    view_shot,
    wait_for_url,
)

pytestmark = pytest.mark.browser


def test_a_link_with_a_page_view_key_opens_that_view(dash_duo, dash_app) -> None:
    """/participation?by=country opens the country view, says nothing about 'by', keeps it in
    the URL, and a change of the control is written back (issue 9)."""
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/participation?by=country&country=FRA,KEN")
    settle(dash_duo, READY["participation"])
    dash_duo.wait_for_contains_text("#participation-weekly .gtitle", "by country")
    checked = dash_duo.driver.execute_script(
        "return document.querySelector('#participation-by input:checked').value")
    assert checked == "country"
    assert "not a filter" not in dash_duo.find_element("#filter-notes").text
    url = wait_for_url(dash_duo, lambda u: "by=country" in u and "country=FRA" in u)
    assert "by=country" in url and "country=FRA" in url
    # Back to the default grouping: the link drops the key; the country again: it returns.
    labels = {lb.text: lb for lb in dash_duo.find_elements("#participation-by label")}
    labels["Cluster"].click()
    dash_duo.wait_for_contains_text("#participation-weekly .gtitle", "by cluster")
    url = wait_for_url(dash_duo, lambda u: "by=" not in u)
    assert "by=" not in url and "country=FRA" in url
    labels["Country"].click()
    url = wait_for_url(dash_duo, lambda u: "by=country" in u)
    assert "by=country" in url
    assert dash_duo.get_logs() == []


def test_small_group_is_shown_as_suppressed(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    settle(dash_duo, READY["overview"])
    dash_duo.wait_for_contains_text("#overview-map-note", f"{SUPPRESSED_LABEL}: ")
    # Issue 14: the small country and its complement (secondary suppression) are both named.
    note = dash_duo.find_element("#overview-map-note").text
    assert SMALL_COUNTRY in note.split(f"{SUPPRESSED_LABEL}: ")[1], note
    dash_duo.driver.get(dash_duo.server_url + "/participation")
    settle(dash_duo, READY["participation"])
    # User text is rendered as text: the cluster named with <b> tags shows its tags.
    dash_duo.wait_for_contains_text("#participation-table-cluster", "<b>Atlantic</b> Network")
    dash_duo.driver.execute_script(
        "Array.from(document.querySelectorAll('.nav-tabs .nav-link'))"
        ".find(a => a.textContent.trim() === 'By country').click()")
    dash_duo.wait_for_element("#participation-table-country")
    dash_duo.wait_for_contains_text("#participation-table-country", SMALL_COUNTRY)
    _heads, rows = grid_shown(dash_duo, "#participation-table-country")
    row = next((r for r in rows if r[0] == SMALL_COUNTRY), None)
    assert row is not None and SUPPRESSED_LABEL in row, rows
    assert dash_duo.get_logs() == []


def test_scheduling_view_on_the_demo(dash_duo, dash_app, pages_demo, monkeypatch) -> None:
    """Issue 13 in the browser, on the demo program: the Participation page's scheduling view
    (scatter of joint share against overlap, the model's estimate with its method, the pair
    table with zero-overlap pairs flagged; screenshot participation-scheduling.png)."""
    path, truth = demo_with_truth(pages_demo)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/participation")
    settle(dash_duo, "#participation-scheduling-table-rows")
    assert dash_duo.get_logs() == []
    estimate = dash_duo.find_element("#scheduling-estimate").text
    assert "percentage points" in estimate and "95% CI" in estimate
    assert "CR2" in dash_duo.find_element("#scheduling-method").text
    zero = truth["scheduling"]["zero_overlap_partnerships"]
    assert dash_duo.find_element("#scheduling-zero").text.startswith(f"{zero} of ")
    assert "zero overlap" in dash_duo.find_element("#participation-scheduling-table-rows").text
    assert dash_duo.driver.execute_script(
        "return document.querySelector('#participation-scheduling .js-plotly-plot')"
        "._fullData.length") == 2
    view_shot(dash_duo, "#participation-scheduling-section", "participation-scheduling")
