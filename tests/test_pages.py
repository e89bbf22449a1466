"""The dashboard in a real headless Chromium (dash[testing]'s `dash_duo`).

Runs on the small fixture warehouse of `tests/dashboard_fixture.py` (deterministic, with one
country below the suppression threshold), and saves a screenshot of every page to
docs/screenshots/. Chromium is started with every host but the test server unresolvable (see
conftest.py), so the "nothing outside the origin" check cannot pass by luck.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

import pytest

from analytics.queries import SUPPRESSED_LABEL
from tests.dashboard_fixture import SMALL_COUNTRY, build_fixture_warehouse

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
PAGES = {
    "overview": "/",
    "participation": "/participation",
    "outcomes": "/outcomes",
    "partnerships": "/partnerships",
    "equity": "/equity",
    "data": "/data",
}
# One element per page that appears only once its callbacks have drawn.
READY = {
    "overview": "#overview-map .main-svg",
    "participation": "#participation-heatmap .main-svg",
    "outcomes": "#outcomes-forest .main-svg",
    "partnerships": "#partnerships-network .main-svg",
    "equity": "#equity-funnel .main-svg",
    "data": "#data-rejects-table",
}
PARTICIPANTS = "#overview-stat-participants"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The generated demo program (`python -m etl demo`), for the screenshots; the fixture
    warehouse if the demo cannot be built here (the reason is kept for the warning)."""
    folder = tmp_path_factory.mktemp("demo")
    wh = folder / "warehouse.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "etl", "demo", "--quiet", "--warehouse", str(wh),
         "--out", str(folder / "files")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    if wh.exists():  # loaded, even if a later step (result tables) failed
        return wh, "demo" if proc.returncode == 0 else f"demo (exit {proc.returncode})"
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return build_fixture_warehouse(folder / "fixture.duckdb"), f"fixture: demo failed: {last}"


@pytest.fixture(scope="module")
def dash_app(tmp_path_factory: pytest.TempPathFactory):
    """The real app on the fixture warehouse (the app reads the path from the environment)."""
    path = build_fixture_warehouse(tmp_path_factory.mktemp("wh") / "warehouse.duckdb")
    old = os.environ.get("EXCHANGE_IMPACT_WAREHOUSE")
    os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = str(path)
    import app as app_module

    yield app_module.app
    if old is None:
        os.environ.pop("EXCHANGE_IMPACT_WAREHOUSE", None)
    else:
        os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = old


def _settle(dash_duo, selector: str, timeout: float = 20) -> None:
    dash_duo.wait_for_element(selector, timeout=timeout)
    # Wait until Dash has no callback in flight (the renderer marks the document while busy).
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = dash_duo.driver.execute_script(
            "return document.querySelectorAll('[data-dash-is-loading=\"true\"]').length"
        )
        if not busy:
            break
        time.sleep(0.1)
    time.sleep(0.3)


def _foreign_requests(dash_duo) -> list[str]:
    names = dash_duo.driver.execute_script(
        "return window.performance.getEntries()"
        ".filter(e => e.entryType === 'resource' || e.entryType === 'navigation')"
        ".map(e => e.name)"
    )
    origin = urlparse(dash_duo.server_url)
    return [n for n in names if urlparse(n).netloc != origin.netloc]


def _figure_total(dash_duo, graph_id: str) -> float:
    """Sum of the first trace's y values as drawn in the browser."""
    return dash_duo.driver.execute_script(
        f"const g = document.getElementById('{graph_id}');"
        "const p = g.classList.contains('js-plotly-plot') ? g : g.querySelector('.js-plotly-plot');"
        "return Array.from(p._fullData[0].y).reduce((a, b) => a + (b || 0), 0);")


def _screenshot(dash_duo, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver = dash_duo.driver
    height = -1
    for _ in range(10):  # late figures grow the page: wait until its height is stable
        new = driver.execute_script("return document.documentElement.scrollHeight")
        if new == height:
            break
        height = new
        time.sleep(0.5)
    driver.set_window_size(1400, min(max(height + 160, 900), 4500))
    time.sleep(0.8)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def test_every_page_loads_clean_offline_and_is_captured(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    for name, path in PAGES.items():
        dash_duo.driver.get(dash_duo.server_url + path)
        _settle(dash_duo, READY[name])
        assert dash_duo.get_logs() == [], f"{name}: browser console errors"
        assert _foreign_requests(dash_duo) == [], f"{name}: requests outside the origin"
        # Each page has exactly one h1, and every filter has a label.
        assert len(dash_duo.find_elements("h1")) == 1
        for label in dash_duo.find_elements(".filter-bar label"):
            assert label.get_attribute("for"), label.text
    assert dash_duo.get_logs() == []


def test_filter_changes_figures_and_url(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    _settle(dash_duo, READY["overview"])
    dash_duo.wait_for_text_to_equal(PARTICIPANTS, "465")
    before = _figure_total(dash_duo, "overview-timeline")
    dash_duo.select_dcc_dropdown("#filter-country", value="FRA")
    dash_duo.wait_for_text_to_equal(PARTICIPANTS, "66")
    assert "country=FRA" in dash_duo.driver.current_url
    # The weekly figure was redrawn for France alone: fewer active participant-weeks.
    deadline = time.monotonic() + 10
    while _figure_total(dash_duo, "overview-timeline") == before and time.monotonic() < deadline:
        time.sleep(0.2)
    after = _figure_total(dash_duo, "overview-timeline")
    assert 0 < after < before
    # Navigating keeps the filter in the link and the view.
    dash_duo.find_element("a[href^='/participation']").click()
    _settle(dash_duo, READY["participation"])
    assert "country=FRA" in dash_duo.driver.current_url
    dash_duo.wait_for_contains_text("#participation-table-cluster", "Participation by cluster")
    assert dash_duo.get_logs() == []


def test_url_with_filters_restores_the_view(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url
                        + "/?country=FRA&modality=virtual,teleport&from=2025-01-01&bogus=1")
    _settle(dash_duo, READY["overview"])
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
    _settle(dash_duo, READY["overview"])
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


def test_small_group_is_shown_as_suppressed(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    _settle(dash_duo, READY["overview"])
    dash_duo.wait_for_contains_text("#overview-map-note", f"{SUPPRESSED_LABEL}: {SMALL_COUNTRY}")
    dash_duo.driver.get(dash_duo.server_url + "/participation")
    _settle(dash_duo, READY["participation"])
    # User text is rendered as text: the cluster named with <b> tags shows its tags.
    dash_duo.wait_for_contains_text("#participation-table-cluster", "<b>Atlantic</b> Network")
    dash_duo.driver.execute_script(
        "Array.from(document.querySelectorAll('.nav-tabs .nav-link'))"
        ".find(a => a.textContent.trim() === 'By country').click()")
    dash_duo.wait_for_element("#participation-table-country")
    row = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#participation-table-country tr'))"
        f".map(r => r.innerText).find(t => t.startsWith('{SMALL_COUNTRY}'))")
    assert row is not None and SUPPRESSED_LABEL in row, row
    assert dash_duo.get_logs() == []


def test_empty_statistics_say_coming(dash_duo, dash_app, tmp_path, monkeypatch) -> None:
    """Before the statistics engineer's tables exist, outcome views say so; they draw nothing."""
    empty = build_fixture_warehouse(tmp_path / "empty.duckdb", with_results=False)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(empty))
    dash_duo.start_server(dash_app)
    dash_duo.wait_for_contains_text("#overview-outcomes-note", "coming", timeout=20)
    dash_duo.driver.get(dash_duo.server_url + "/outcomes")
    dash_duo.wait_for_contains_text("#outcomes-forest-note", "coming", timeout=20)
    dash_duo.wait_for_contains_text("#outcomes-model", "coming")
    assert dash_duo.get_logs() == []


def test_screenshots_of_every_page_on_the_demo(dash_duo, dash_app, demo_warehouse,
                                              monkeypatch) -> None:
    """docs/screenshots/<page>.png, drawn from the demo program, for people to look at."""
    path, source = demo_warehouse
    if not source.startswith("demo"):
        warnings.warn(f"screenshots drawn from the test fixture ({source})", stacklevel=1)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    for name, page in PAGES.items():
        dash_duo.driver.get(dash_duo.server_url + page)
        ready = "#outcomes-model table, #outcomes-model .alert" if name == "outcomes" else READY[name]
        _settle(dash_duo, ready)
        assert dash_duo.get_logs() == [], f"{name}: browser console errors on the demo"
        _screenshot(dash_duo, name)
