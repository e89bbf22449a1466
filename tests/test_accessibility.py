"""Accessibility in a real headless Chromium (issue 15): every page audited by axe-core against
WCAG 2.1 A and AA (and axe's best practices), unfiltered, filtered with a suppressed group on
screen, and with the filter bar's pop-ups open; and keyboard-only use of the filter bar, the
tabs, the downloads and the map's country selection.

axe-core is the one `axe-selenium-python-nhsuk` bundles (4.9.1; the file is read from the
installed package, no request leaves the machine). A violation of a WCAG rule of any impact
fails, and so does a best-practice violation rated serious or critical.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from axe_selenium_python import Axe
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from analytics.suppression import SUPPRESSED_LABEL
from tests.pages_browser import (
    PAGES,
    READY,
    SMALL_QUERY,
    filters_shown,
    settle,
    visit,
    wait_for_url,
)

pytestmark = pytest.mark.browser

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": [*WCAG_TAGS, "best-practice"]},
               "resultTypes": ["violations"]}
# Filters set (one country, one exchange: fewer than k people, so suppression is on screen)
# and a date range.
FILTERED = SMALL_QUERY + "&from=2024-01-01&to=2026-12-31"


def violations(dash_duo) -> list[str]:
    """axe's violations on the page as it is now, one line each: impact, rule, where."""
    axe = Axe(dash_duo.driver)
    # Once per document: a page shown by client-side navigation (`pages_browser.visit`) keeps
    # the axe-core injected for the previous one (~0.5 MB of script to parse again otherwise).
    if not dash_duo.driver.execute_script("return typeof window.axe === 'object'"
                                          " && typeof window.axe.run === 'function'"):
        axe.inject()
    found = []
    for v in axe.run(options=AXE_OPTIONS)["violations"]:
        wcag = any(t in WCAG_TAGS for t in v["tags"])
        if wcag or v["impact"] in ("serious", "critical"):
            where = " | ".join(n["html"][:120] + _contrast(n) for n in v["nodes"][:3])
            found.append(f"{v['impact']} {v['id']} ({v['help']}): {where}")
    return found


def _contrast(node: dict) -> str:
    data = next((c.get("data") for c in node.get("any", []) if isinstance(c.get("data"), dict)
                 and "contrastRatio" in c["data"]), None)
    return (f" [{data['fgColor']} on {data['bgColor']}: {data['contrastRatio']}]"
            if data else "")


def test_every_page_passes_axe_and_describes_its_figures(dash_duo, dash_app) -> None:
    """Every page, unfiltered and filtered (under k, with dates): no axe violation, and every
    figure has its text alternative and its data as a table (`_figure_problems`).

    The pages are shown by client-side navigation within one load (`pages_browser.visit`, as
    the navbar's links do; the filters are read from the address on every navigation): what is
    audited is each page as drawn, and tests/test_pages.py checks that each loads clean on its
    own."""
    dash_duo.start_server(dash_app)
    failures, figures = [], 0
    for query in ("", FILTERED):
        for name, path in PAGES.items():
            visit(dash_duo, name, query)
            assert filters_shown(dash_duo) == ((FILTERED, ["FRA"]) if query else ("", [])), \
                path + query
            failures += [f"{path}{query}: {v}" for v in violations(dash_duo)]
            problems, checked = _figure_problems(dash_duo, path + query)
            failures += problems
            figures += checked
    assert not failures, "\n".join(failures)
    assert figures >= 20
    assert dash_duo.get_logs() == []


def test_open_pop_ups_pass_axe(dash_duo, dash_app) -> None:
    """The filter dropdown's list and the date picker's calendar, open."""
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/outcomes" + FILTERED)
    settle(dash_duo, READY["outcomes"])
    dash_duo.find_element("#filter-exchange").click()
    dash_duo.wait_for_element(".dash-dropdown-content")
    failures = [f"dropdown open: {v}" for v in violations(dash_duo)]
    dash_duo.find_element("#filter-exchange").send_keys(Keys.ESCAPE)
    dash_duo.find_element("#filter-dates").click()
    dash_duo.wait_for_element(".dash-datepicker-calendar-container, [role=dialog]")
    failures += [f"calendar open: {v}" for v in violations(dash_duo)]
    assert not failures, "\n".join(failures)


def _focus_by_tab(dash_duo, selector: str, limit: int = 60) -> None:
    """Press Tab from the top of the page (the skip link, its first stop) until `selector` has
    the focus (a keyboard user's path; fails if it is not reachable)."""
    driver = dash_duo.driver
    driver.execute_script("window.scrollTo(0, 0); document.querySelector('a[href=\"#main\"]')"
                          ".focus();")
    for _ in range(limit + 1):
        if driver.execute_script("return document.activeElement.matches(arguments[0])",
                                 selector):
            return
        ActionChains(driver).send_keys(Keys.TAB).perform()
    raise AssertionError(f"{selector} is not reachable with Tab ({limit} presses)")


def _wait_focus(dash_duo, selector: str, timeout: float = 10) -> None:
    """Poll (with a deadline) until the focused element matches `selector`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dash_duo.driver.execute_script(
                "return document.activeElement.matches(arguments[0])", selector):
            return
        time.sleep(0.05)
    focused = dash_duo.driver.execute_script("return document.activeElement.outerHTML")
    raise AssertionError(f"focus never reached {selector}; it is on {focused[:200]}")


def _keys(dash_duo, *keys: str) -> None:
    ActionChains(dash_duo.driver).send_keys(*keys).perform()


def test_filter_bar_by_keyboard_only(dash_duo, dash_app) -> None:
    """Tab to the Country filter, open it with Enter, pick a country with the arrows and Space,
    close it with Escape: the filter is in the address bar and the page redraws with it."""
    dash_duo.start_server(dash_app)
    settle(dash_duo, READY["overview"])
    _focus_by_tab(dash_duo, "#filter-country")
    _keys(dash_duo, Keys.ENTER)
    _wait_focus(dash_duo, ".dash-dropdown-content input[type=search]")
    dash_duo.wait_for_element(".dash-dropdown-content .dash-options-list-option")
    _keys(dash_duo, Keys.ARROW_DOWN)
    _wait_focus(dash_duo, ".dash-dropdown-content input[type=checkbox]")
    _keys(dash_duo, Keys.SPACE)
    dash_duo.wait_for_element(".dash-dropdown-content .dash-options-list-option.selected")
    _keys(dash_duo, Keys.ESCAPE)
    url = wait_for_url(dash_duo, lambda u: "country=" in u)
    assert "country=" in url, url
    assert dash_duo.driver.execute_script(
        "return document.activeElement.id") == "filter-country"
    # Delete on the focused filter clears it (the clear link is hidden from assistive
    # technology, since it sits inside the button).
    _keys(dash_duo, Keys.DELETE)
    url = wait_for_url(dash_duo, lambda u: "country=" not in u)
    assert "country=" not in url, url
    assert dash_duo.get_logs() == []


def test_a_country_is_chosen_from_the_maps_list_by_keyboard(dash_duo, dash_app) -> None:
    """The map cannot be reached by Tab: its countries are a list of buttons below it. Tab to
    the list, open it, Tab to a country, Enter: the country filter is set, as a click on the map
    sets it; the button then says it is pressed."""
    dash_duo.start_server(dash_app)
    settle(dash_duo, READY["overview"])
    dash_duo.wait_for_element("#overview-map-countries-details summary")
    _focus_by_tab(dash_duo, "#overview-map-countries-details summary")
    _keys(dash_duo, Keys.ENTER)
    _keys(dash_duo, Keys.TAB)
    _wait_focus(dash_duo, "#overview-map-countries-details li:first-child button")
    labels = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#overview-map-countries-details button'))"
        ".map(b => b.innerText)")
    assert any(SUPPRESSED_LABEL in t for t in labels), labels  # the small country, no count
    # Tab on to the first country shown with its count.
    for label in labels:
        if "participants" in label:
            break
        _keys(dash_duo, Keys.TAB)
    assert dash_duo.driver.execute_script("return document.activeElement.innerText") == label
    _keys(dash_duo, Keys.ENTER)
    iso = label.split("(")[1].split(")")[0]
    url = wait_for_url(dash_duo, lambda u: f"country={iso}" in u)
    assert f"country={iso}" in url, url
    settle(dash_duo, READY["overview"])
    pressed = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#overview-map-countries-details button'))"
        ".filter(b => b.getAttribute('aria-pressed') === 'true').map(b => b.textContent)")
    assert len(pressed) == 1 and f"({iso})" in pressed[0], pressed
    assert dash_duo.get_logs() == []


def test_tabs_by_keyboard(dash_duo, dash_app) -> None:
    """Participation's breakdown tabs: Tab reaches the selected tab only, the arrow keys move to
    and show the next table, and the panels say which tab labels them."""
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/participation")
    settle(dash_duo, READY["participation"])
    dash_duo.wait_for_element("#participation-table-cluster")
    _focus_by_tab(dash_duo, "[role=tab]", limit=120)
    assert dash_duo.driver.execute_script(
        "return document.activeElement.getAttribute('aria-selected')") == "true"
    _keys(dash_duo, Keys.ARROW_RIGHT)
    _wait_focus(dash_duo, "#participation-breakdown-tab-country")
    visible = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#participation-breakdown [role=tabpanel]'))"
        ".filter(p => !p.hidden).map(p => [p.id, p.getAttribute('aria-labelledby')])")
    assert visible == [["participation-breakdown-panel-country",
                        "participation-breakdown-tab-country"]], visible
    assert dash_duo.find_element("#participation-table-country").is_displayed()
    assert not dash_duo.find_element("#participation-table-cluster").is_displayed()
    _keys(dash_duo, Keys.END)
    _wait_focus(dash_duo, "#participation-breakdown-tab-exchange")
    _keys(dash_duo, Keys.ARROW_RIGHT)  # wraps to the first
    _wait_focus(dash_duo, "#participation-breakdown-tab-cluster")
    assert dash_duo.find_element("#participation-table-cluster").is_displayed()


# What a figure draws, read from plotly.js in the browser: per series its name and values.
DRAWN_JS = """
const box = document.getElementById(arguments[0]).closest('.ei-figure');
const gd = box.querySelector('.js-plotly-plot');
return {title: (gd.layout.title && (gd.layout.title.text || gd.layout.title)) || '',
        summary: box.querySelector('.ei-figure-summary').textContent,
        described: box.getAttribute('aria-describedby'),
        rows: Array.from(box.querySelectorAll('.ei-figure-table tbody tr'))
          .map(r => Array.from(r.cells).map(c => c.textContent)),
        traces: gd.data.map(t => ({name: t.name || '', type: t.type || 'scatter',
          values: Array.from((t.type === 'choropleth' ? t.z
            : (t.orientation === 'h' || (t.type !== 'bar' && t.y && t.y.length
               && typeof t.y[0] === 'string' && t.x && typeof t.x[0] === 'number')) ? t.x : t.y)
            || [])}))};
"""


def _figure_problems(dash_duo, where: str) -> tuple[list[str], int]:
    """Each figure region of the page is described by its title and key numbers, and its data
    table holds every value drawn (formatted as the page's language writes numbers); a
    suppressed series shows the label, not its placeholder values. Returns the problems and
    how many figures were checked."""
    problems, checked = [], 0
    ids = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('.ei-figure .js-plotly-plot'))"
        ".map(g => g.closest('.dash-graph') ? g.closest('.dash-graph').id : g.id)")
    for gid in ids:
        drawn = dash_duo.driver.execute_script(DRAWN_JS, gid)
        at = f"{where} #{gid}"
        if drawn["described"] != f"{gid}-summary":
            problems.append(f"{at}: not described by its summary")
        title = " ".join(str(drawn["title"]).replace("<br>", " ").split())
        if title.split("<")[0][:20] not in drawn["summary"]:
            problems.append(f"{at}: summary {drawn['summary'][:120]!r} lacks the title")
        numbers = [v for t in drawn["traces"] if t["name"] != SUPPRESSED_LABEL
                   for v in t["values"] if isinstance(v, int | float)]
        cells = {c for r in drawn["rows"] for c in r}
        problems += [f"{at}: drawn value {v} is not in its table" for v in numbers[:50]
                     if _en(v) not in cells]
        for t in drawn["traces"]:
            if t["name"] == SUPPRESSED_LABEL:
                rows = [r for r in drawn["rows"] if r[0] == SUPPRESSED_LABEL]
                if not rows or any(c != SUPPRESSED_LABEL for r in rows for c in r[2:]):
                    problems.append(f"{at}: a suppressed series shows values: {rows[:3]}")
        checked += 1
    return problems, checked


def _en(v: float) -> str:
    """A number as Intl.NumberFormat('en', {maximumFractionDigits: 2}) writes it."""
    s = f"{round(v, 2):,.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def test_a_table_is_downloaded_by_keyboard_only(dash_duo, dash_app) -> None:
    """Data page: Tab to the format choice, the arrow key picks the next format (xlsx), Tab to
    "Download table", Enter: the file arrives in the download folder."""
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/data")
    settle(dash_duo, READY["data"])
    _focus_by_tab(dash_duo, "#data-download-format input[value='csv']", limit=120)
    _keys(dash_duo, Keys.ARROW_RIGHT)
    _wait_focus(dash_duo, "#data-download-format input[value='xlsx']")
    _focus_by_tab(dash_duo, "#data-download-button", limit=120)
    _keys(dash_duo, Keys.ENTER)
    folder = Path(dash_duo.download_path)
    deadline = time.monotonic() + 120
    while not list(folder.glob("*.xlsx")) and time.monotonic() < deadline:
        time.sleep(0.2)  # Chromium renames its .crdownload file when complete
    got = list(folder.glob("*.xlsx"))
    assert got, sorted(p.name for p in folder.iterdir())
    assert got[0].read_bytes()[:2] == b"PK"  # an xlsx is a zip
    assert dash_duo.get_logs() == []


def test_a_figure_says_it_is_updating_while_it_recomputes(dash_duo, dash_app, monkeypatch
                                                         ) -> None:
    """The map's callback is held (an event, not a delay) after a filter change: the map shows
    a status "Updating the figure…" until its answer arrives, then the status goes."""
    import threading

    from pages import _ui, overview

    release = threading.Event()
    holding = threading.Event()
    real = _ui.query

    def held(fn, *args, **kwargs):
        if fn is overview.overview.participants_by_country and holding.is_set():
            release.wait(60)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(_ui, "query", held)
    dash_duo.start_server(dash_app)
    settle(dash_duo, READY["overview"])
    box = "document.getElementById('overview-map').closest('.ei-figure')"
    assert not dash_duo.driver.execute_script(f"return {box}.querySelector('.ei-loading')")
    holding.set()
    dash_duo.driver.execute_script(
        "document.querySelector('#overview-map-countries-details li button').click()")
    dash_duo.wait_for_element("#overview-map-countries-details")
    deadline = time.monotonic() + 20
    status = None
    while status is None and time.monotonic() < deadline:
        status = dash_duo.driver.execute_script(
            f"const s = {box}.querySelector('.ei-loading[role=status]');"
            "return s && s.offsetParent !== null ? s.textContent : null")
        time.sleep(0.05)
    release.set()
    assert status == "Updating the figure…", status
    settle(dash_duo, READY["overview"])
    assert not dash_duo.driver.execute_script(f"return {box}.querySelector('.ei-loading')")
