"""The Partnerships and Equity pages in a real headless Chromium, on the demo program: the
reciprocity view and the equity gaps. Helpers and fixtures: tests/pages_browser.py,
tests/conftest.py."""

from __future__ import annotations

import pytest

from tests import pages_browser
from tests.pages_browser import (
    demo_with_truth,
    settle,
    view_shot,
)

pytestmark = pytest.mark.browser
# `python -m etl demo`'s default size: the planted one-sided partnerships are told apart (one
# side's interval above 0, the other's not) only with the full demo's numbers per partnership;
# on the smaller demo of the other page modules they are not.
FULL_DEMO = 10_000


@pytest.fixture(scope="module")
def pages_demo() -> tuple:
    """The full-size demo (built once per run, `tests.shared_builds`), instead of conftest's."""
    return pages_browser.pages_demo(FULL_DEMO)


def test_reciprocity_and_equity_gap_views_on_the_demo(dash_duo, dash_app, pages_demo,
                                                      monkeypatch) -> None:
    """Issue 13 in the browser, on the demo program: the Partnerships page's reciprocity view
    (scatter of both sides' gains, the one-sided list holding the planted partnerships, the
    shares, the method) and the Equity page's gap table per grouping with its CR2 interval
    (screenshots partnerships-reciprocity.png, equity-gaps.png)."""
    path, truth = demo_with_truth(pages_demo)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/partnerships")
    settle(dash_duo, "#partnerships-one-sided-table")
    assert dash_duo.get_logs() == []
    listed = dash_duo.find_element("#partnerships-one-sided-table").text
    for p in truth["reciprocity"]["one_sided"]:
        assert p["partnership_id"] in listed
    assert "Wilson 95% CI" in dash_duo.find_element(
        "#partnerships-reciprocity-shares-table").text
    assert "Welch" in dash_duo.find_element("#reciprocity-method").text
    assert dash_duo.driver.execute_script(
        "return document.querySelector('#partnerships-reciprocity .js-plotly-plot')"
        "._fullData.length") >= 2
    view_shot(dash_duo, "#partnerships-reciprocity-section", "partnerships-reciprocity")
    dash_duo.driver.get(dash_duo.server_url + "/equity?by=connectivity")
    settle(dash_duo, "#equity-gaps-table")
    assert dash_duo.get_logs() == []
    table = dash_duo.find_element("#equity-gaps-table").text
    assert "minutes per participant" in table and "high:" in table and "low:" in table
    assert "Bonferroni" in dash_duo.find_element("#equity-gaps-method").text
    view_shot(dash_duo, "#equity-gaps-section", "equity-gaps")
