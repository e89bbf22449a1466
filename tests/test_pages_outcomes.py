"""The Outcomes page in a real headless Chromium: "coming" before the statistics exist, the
comparison with its balance and assumptions, and the dose and moderation views on the demo.
Helpers and fixtures: tests/pages_browser.py, tests/conftest.py."""

from __future__ import annotations

import pytest

from analytics.suppression import SUPPRESSED_LABEL
from tests.dashboard_fixture import build_fixture_warehouse
from tests.pages_browser import (
    PAGES,
    demo_with_truth,
    screenshot,
    section_screenshot,
    settle,
)

pytestmark = pytest.mark.browser


def test_empty_statistics_say_coming(dash_duo, dash_app, tmp_path, monkeypatch) -> None:
    """Before the statistics engineer's tables exist, outcome views say so: the figures draw
    nothing and say the results are not computed yet, the tables say they are coming."""
    empty = build_fixture_warehouse(tmp_path / "empty.duckdb", with_results=False)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(empty))
    dash_duo.start_server(dash_app)
    dash_duo.wait_for_contains_text("#overview-outcomes", "Not computed yet", timeout=20)
    dash_duo.driver.get(dash_duo.server_url + "/outcomes")
    dash_duo.wait_for_contains_text("#outcomes-forest", "Not computed yet", timeout=20)
    dash_duo.wait_for_contains_text("#outcomes-model", "coming")
    assert dash_duo.get_logs() == []


def test_outcomes_comparison_balance_and_assumptions_are_shown(dash_duo, dash_app) -> None:
    """Issue 10 §2 where the user reads it: the raw and adjusted comparison with CR2 intervals
    and their assumptions, the balance table with |SMD| > 0.1 flagged, and the model note on
    the comparison arm's modality (screenshot outcomes-assumptions.png)."""
    from analytics import estimands

    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + PAGES["outcomes"])
    settle(dash_duo, "#outcomes-balance-table")
    dash_duo.wait_for_element("#outcomes-adjusted-table")
    assert dash_duo.get_logs() == []
    balance = dash_duo.find_element("#outcomes-balance-table").text
    assert "⚠ imbalanced" in balance and SUPPRESSED_LABEL in balance
    assert "baseline differences exceed" in dash_duo.find_element("#balance-flags").text
    adjusted = dash_duo.find_element("#outcomes-adjusted-table").text
    assert "adjusted: ANCOVA" in adjusted and "6 ⚠ few" in adjusted
    said = dash_duo.find_element("#adjusted-assumptions").text
    assert "parallel trends" in said and "no unmeasured confounding" in said
    assert "95% CI, clustered by exchange (CR2)" in dash_duo.find_element(
        "#outcomes-comparison-table").text
    assert "matching stratum" in dash_duo.find_element("#model-assumptions").text
    assert estimands.COMPARISON_MODALITY.split(":")[0] in dash_duo.find_element(
        "#model-assumptions").text
    screenshot(dash_duo, "outcomes-assumptions")


def test_outcomes_dose_response_and_moderation_views_on_the_demo(dash_duo, dash_app,
                                                                 pages_demo,
                                                                 monkeypatch) -> None:
    """Issue 13 on the Outcomes page, drawn from the demo (whose gains rise with events and
    differ by modality): the binned dose curve and the slopes with the self-selection caveat;
    the gains by setting/modality/purpose with the interaction test; switching the attribute
    redraws them (screenshots outcomes-dose.png, outcomes-moderation.png)."""
    from analytics import estimands

    path, _ = demo_with_truth(pages_demo)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + PAGES["outcomes"])
    settle(dash_duo, "#outcomes-dose-slopes")
    dash_duo.wait_for_element("#outcomes-moderation-tests")
    assert dash_duo.get_logs() == []
    slopes = dash_duo.find_element("#outcomes-dose-slopes").text
    assert "change per log1p unit [95% CI]" in slopes and "modality and setting" in slopes
    assert estimands.DOSE_SELF_SELECTED.split(":")[0] in dash_duo.find_element(
        "#dose-assumptions").text
    points = dash_duo.driver.execute_script(
        "return document.querySelector('#outcomes-dose .js-plotly-plot')._fullData[0].y.length")
    assert points == 5
    tests = dash_duo.find_element("#outcomes-moderation-tests").text
    assert "wave × modality test" in tests and "F(2, ∞)" in tests and "virtual" in tests
    assert "(1 | participant)" in tests
    levels = dash_duo.driver.execute_script(
        "return Array.from(document.querySelector('#outcomes-moderation .js-plotly-plot')"
        "._fullData[0].y)")
    assert sorted(levels) == ["blended", "physical", "virtual"]
    section_screenshot(dash_duo, "outcomes-dose-section", "outcomes-dose")
    dash_duo.driver.execute_script(
        "Array.from(document.querySelectorAll('#outcomes-moderator input'))"
        ".find(i => i.value === 'setting').click()")
    dash_duo.wait_for_contains_text("#outcomes-moderation-tests", "wave × setting test",
                                    timeout=20)
    settle(dash_duo, "#outcomes-moderation-tests")
    assert "F(1, ∞)" in dash_duo.find_element("#outcomes-moderation-tests").text
    levels = dash_duo.driver.execute_script(
        "return Array.from(document.querySelector('#outcomes-moderation .js-plotly-plot')"
        "._fullData[0].y)")
    assert sorted(levels) == ["curricular", "extracurricular"]
    assert dash_duo.get_logs() == []
    section_screenshot(dash_duo, "outcomes-moderation-section", "outcomes-moderation")
