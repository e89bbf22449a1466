"""The dashboard in a real headless Chromium (dash[testing]'s `dash_duo`).

Runs on the small fixture warehouse of `tests/dashboard_fixture.py` (deterministic, with one
country below the suppression threshold), and saves a screenshot of every page to
docs/screenshots/. Chromium is started with every host but the test server unresolvable (see
conftest.py), so the "nothing outside the origin" check cannot pass by luck.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest

from analytics.suppression import SMALL_SELECTION, SUPPRESSED_LABEL
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


def _demo_with_truth(demo_warehouse: tuple[Path, str]) -> tuple[Path, dict]:
    """The demo warehouse and its truth.json, for the views that need the demo's result tables.
    Without the demo such a test cannot say anything: it is skipped on a developer's machine
    and fails on CI (CI=true), where the demo must build."""
    import json

    path, source = demo_warehouse
    if not source.startswith("demo"):
        why = f"needs the demo's result tables ({source})"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path, json.loads((path.parent / "files" / "truth.json").read_text(encoding="utf-8"))


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
    # Wait on Dash's own state, not on time: no callback requested or in flight in the renderer's
    # store, and no component marked as loading.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = dash_duo.driver.execute_script(
            "const cbs = Object.assign({}, window.store.getState().callbacks);"
            "delete cbs.stored; delete cbs.completed;"
            "return [].concat(...Object.values(cbs)).length"
            " + document.querySelectorAll('[data-dash-is-loading=\"true\"]').length"
        )
        if not busy:
            return
        time.sleep(0.1)
    raise AssertionError(f"Dash was still busy {timeout:g} s after {selector} appeared")


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
    driver.set_window_size(1400, min(max(height + 160, 900), 6500))
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


def _wait_for_url(dash_duo, test, timeout: float = 10) -> str:
    """The address bar once `test(url)` holds (the writer runs after the callbacks answer)."""
    deadline = time.monotonic() + timeout
    url = dash_duo.driver.current_url
    while not test(url) and time.monotonic() < deadline:
        time.sleep(0.1)
        url = dash_duo.driver.current_url
    return url


def test_a_link_with_a_page_view_key_opens_that_view(dash_duo, dash_app) -> None:
    """/participation?by=country opens the country view, says nothing about 'by', keeps it in
    the URL, and a change of the control is written back (issue 9)."""
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/participation?by=country&country=FRA,KEN")
    _settle(dash_duo, READY["participation"])
    dash_duo.wait_for_contains_text("#participation-weekly .gtitle", "by country")
    checked = dash_duo.driver.execute_script(
        "return document.querySelector('#participation-by input:checked').value")
    assert checked == "country"
    assert "not a filter" not in dash_duo.find_element("#filter-notes").text
    url = _wait_for_url(dash_duo, lambda u: "by=country" in u and "country=FRA" in u)
    assert "by=country" in url and "country=FRA" in url
    # Back to the default grouping: the link drops the key; the country again: it returns.
    labels = {lb.text: lb for lb in dash_duo.find_elements("#participation-by label")}
    labels["Cluster"].click()
    dash_duo.wait_for_contains_text("#participation-weekly .gtitle", "by cluster")
    url = _wait_for_url(dash_duo, lambda u: "by=" not in u)
    assert "by=" not in url and "country=FRA" in url
    labels["Country"].click()
    url = _wait_for_url(dash_duo, lambda u: "by=country" in u)
    assert "by=country" in url
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
    dash_duo.wait_for_contains_text("#overview-map-note", f"{SUPPRESSED_LABEL}: ")
    # Issue 14: the small country and its complement (secondary suppression) are both named.
    note = dash_duo.find_element("#overview-map-note").text
    assert SMALL_COUNTRY in note.split(f"{SUPPRESSED_LABEL}: ")[1], note
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


def _has_gap(dash_duo, graph_id: str) -> bool:
    """Whether a trace of the figure, as drawn in the browser, has a missing y (a gap)."""
    return dash_duo.driver.execute_script(
        f"const g = document.getElementById('{graph_id}');"
        "const p = g.classList.contains('js-plotly-plot') ? g : g.querySelector('.js-plotly-plot');"
        "return p._fullData.some(t => Array.from(t.y || []).some(v => v === null"
        " || v === undefined || Number.isNaN(v)));")


def test_weeks_with_fewer_than_k_active_are_gaps_with_a_note(dash_duo, dash_app) -> None:
    """The fixture has weeks with fewer than k active people in groups of k or more: the lines
    have a gap there (no count, no minutes) and the note under the figure says why."""
    dash_duo.start_server(dash_app)
    _settle(dash_duo, READY["overview"])
    dash_duo.wait_for_contains_text("#overview-timeline-note", "Weeks with fewer than")
    assert _has_gap(dash_duo, "overview-timeline")
    dash_duo.driver.get(dash_duo.server_url + "/participation")
    _settle(dash_duo, READY["participation"])
    for graph in ("participation-weekly", "participation-retention"):
        dash_duo.wait_for_contains_text(f"#{graph}-note", f"{SUPPRESSED_LABEL}")
        assert "Weeks with fewer than" in dash_duo.find_element(f"#{graph}-note").text
        assert _has_gap(dash_duo, graph), graph
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
        ready = ("#outcomes-model table, #outcomes-model .alert" if name == "outcomes"
                 else READY[name])
        _settle(dash_duo, ready)
        assert dash_duo.get_logs() == [], f"{name}: browser console errors on the demo"
        _screenshot(dash_duo, name)


# A selection under k in the fixture: France in exchange X3 (8 participants, 1 comparison-group
# member; `_small_selection_counts` counts them from the warehouse).
SMALL_QUERY = "?country=FRA&exchange=X3"
# Per page: the elements whose text is drawn from the selection, each of which must say that
# it suppressed something, and the graphs drawn from it. The overview's outcome changes are
# left out: they are precomputed for country = FRA as a whole and say so.
SMALL_VIEWS: dict[str, tuple[list[str], list[str]]] = {
    "overview": (["#overview-cards", "#overview-map-note"],
                 ["overview-map", "overview-timeline"]),
    "participation": (["#participation-weekly-note", "#participation-heatmap-note",
                       "#participation-retention-note", "#participation-tables"],
                      ["participation-weekly", "participation-clusters", "participation-heatmap",
                       "participation-retention"]),
    "outcomes": (["#outcomes-waves-note", "#outcomes-comparison"], ["outcomes-waves"]),
    "partnerships": (["#partnerships-summary", "#partnerships-persistence-note"],
                     ["partnerships-persistence"]),
    "equity": (["#equity-gains-note", "#equity-participation-note", "#equity-dropout"],
               ["equity-gains", "equity-participation", "equity-funnel"]),
    "data": (["#data-rates"], []),
}

# The text of an element, one piece per text node (table cells would otherwise run together:
# "9" "9" "100%" read "99100%"), without its tables' first column (group names such as
# "Exchange 3"); hidden tabs included.
_TEXT_JS = """
const el = document.querySelector(arguments[0]);
if (!el) return null;
const out = [];
const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (!n.parentElement.closest('td:first-child')) out.push(n.textContent);
}
return out.join(' | ');
"""
# What a graph holds: whether it was drawn (has a title), every number its traces carry
# (traces named as the suppression label are grey placeholders whose value is never shown),
# and its strings (hover texts, annotations).
_GRAPH_JS = """
const g = document.getElementById(arguments[0]);
const p = g && (g.classList.contains('js-plotly-plot') ? g : g.querySelector('.js-plotly-plot'));
if (!p || !p.layout) return null;
const numbers = [], strings = [];
const walk = v => {
  if (Array.isArray(v) || ArrayBuffer.isView(v)) { for (const x of v) walk(x); }
  else if (typeof v === 'number' && Number.isFinite(v)) numbers.push(v);
  else if (typeof v === 'string') strings.push(v);
};
for (const t of p.data || []) {
  if (t.name === arguments[1]) continue;
  for (const k of ['x', 'y', 'z', 'customdata', 'text', 'hovertext']) {
    if (k === 'x' && t.type === 'bar' && t.orientation !== 'h') continue;  // category labels
    if (k === 'y' && t.type === 'bar' && t.orientation === 'h') continue;
    if (k === 'x' && t.type === 'scatter' && t.x && t.x.length && typeof t.x[0] === 'string')
      continue;  // dates
    walk(t[k]);
  }
  if (t.name) strings.push(t.name);
}
for (const a of p.layout.annotations || []) strings.push(a.text || '');
const title = p.layout.title && (p.layout.title.text || p.layout.title);
return {drawn: Boolean(title), numbers: numbers, strings: strings};
"""


def _small_selection_counts(warehouse: Path) -> set[int]:
    """Every count of the small selection, from the base tables (a test oracle independent of
    analytics.read): participants, comparison group, everyone asked, events, minutes, the
    answers per wave and the people per gender."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        people = """
            WITH inx AS (SELECT participant_id FROM events WHERE exchange_id = 'X3'
                         UNION SELECT participant_id FROM responses WHERE exchange_id = 'X3')
            SELECT p.* FROM participants p JOIN institutions i USING (institution_id)
            WHERE i.country = 'FRA' AND p.participant_id IN (SELECT * FROM inx)"""
        counts = set()
        counts.update(con.execute(f"""WITH ppl AS ({people})
            SELECT count(*) FILTER (WHERE NOT comparison), count(*) FILTER (WHERE comparison),
                   count(*) FROM ppl""").fetchone())
        counts.update(con.execute(f"""WITH ppl AS ({people})
            SELECT count(*), round(sum(minutes)) FROM events JOIN ppl USING (participant_id)
            WHERE exchange_id = 'X3'""").fetchone())
        counts.update(r[0] for r in con.execute(f"""WITH ppl AS ({people})
            SELECT count(DISTINCT participant_id) FROM responses JOIN ppl USING (participant_id)
            WHERE exchange_id = 'X3' GROUP BY wave""").fetchall())
        counts.update(r[0] for r in con.execute(f"""WITH ppl AS ({people})
            SELECT count(*) FROM ppl WHERE NOT comparison GROUP BY gender""").fetchall())
    finally:
        con.close()
    return {int(c) for c in counts}


def _shows(text: str, counts: set[int]) -> list[int]:
    """The counts that appear in `text` as a number of their own (8, 138 or 1,380; not the 8
    of 0.81 or of 2018)."""
    return [c for c in sorted(counts) for form in {f"{c}", f"{c:,}"}
            if re.search(rf"(?<![\w.,]){re.escape(form)}(?!\d|[.,]\d)", text)]


def _small_view_problems(dash_duo, texts: list[str], graphs: list[str], counts: set[int]
                         ) -> list[str]:
    problems = []
    for sel in texts:
        text = dash_duo.driver.execute_script(_TEXT_JS, sel)
        if text is None:
            problems.append(f"{sel}: not on the page")
            continue
        if SUPPRESSED_LABEL not in text and SMALL_SELECTION not in text.lower():
            problems.append(f"{sel}: no suppression message in {text[:200]!r}")
        if shown := _shows(text, counts):
            problems.append(f"{sel}: shows {shown} in {text[:300]!r}")
    for gid in graphs:
        g = dash_duo.driver.execute_script(_GRAPH_JS, gid, SUPPRESSED_LABEL)
        if not g or not g["drawn"]:
            problems.append(f"#{gid}: not drawn yet")
            continue
        if g["numbers"]:
            problems.append(f"#{gid}: holds numbers {g['numbers'][:10]}")
        if shown := _shows(" | ".join(g["strings"]), counts):
            problems.append(f"#{gid}: shows {shown} in its texts")
    return problems


def test_a_selection_under_k_shows_no_count_of_it_on_any_page(dash_duo, dash_app,
                                                             tmp_path) -> None:
    """Every page, filtered to fewer than k people: no count or statistic of them in the text
    or in a figure's data, and the suppression message where they would have been. Each view
    is read until it is drawn from the filtered selection (the unfiltered first draw holds
    numbers, so waiting for their absence cannot pass early); then it must hold none."""
    copy = tmp_path / "oracle.duckdb"
    shutil.copy(os.environ["EXCHANGE_IMPACT_WAREHOUSE"], copy)
    counts = _small_selection_counts(copy)
    assert 8 in counts and max(counts) >= 100  # 8 participants, their events
    dash_duo.start_server(dash_app)
    failures = {}
    for name, path in PAGES.items():
        dash_duo.driver.get(dash_duo.server_url + path + SMALL_QUERY)
        _settle(dash_duo, READY[name])
        texts, graphs = SMALL_VIEWS[name]
        deadline = time.monotonic() + 30
        while (problems := _small_view_problems(dash_duo, texts, graphs, counts)) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        if not problems:  # and still so once nothing is in flight
            _settle(dash_duo, READY[name])
            problems = _small_view_problems(dash_duo, texts, graphs, counts)
        if problems:
            failures[name] = problems
        if name in ("overview", "equity"):
            _screenshot(dash_duo, f"{name}-under-k")
    assert not failures, "\n".join(f"{name}: {p}" for name, ps in failures.items() for p in ps)
    assert dash_duo.get_logs() == []


def test_outcomes_comparison_balance_and_assumptions_are_shown(dash_duo, dash_app) -> None:
    """Issue 10 §2 where the user reads it: the raw and adjusted comparison with CR2 intervals
    and their assumptions, the balance table with |SMD| > 0.1 flagged, and the model note on
    the comparison arm's modality (screenshot outcomes-assumptions.png)."""
    from analytics import estimands

    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + PAGES["outcomes"])
    _settle(dash_duo, "#outcomes-balance-table")
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
    _screenshot(dash_duo, "outcomes-assumptions")


def _view_shot(dash_duo, selector: str, name: str) -> None:
    """docs/screenshots/<name>.png of one view (an element), not the whole page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver = dash_duo.driver
    el = dash_duo.find_element(selector)
    height = driver.execute_script("return arguments[0].getBoundingClientRect().height", el)
    driver.set_window_size(1400, min(int(height) + 400, 6500))  # the whole view in sight
    driver.execute_script("arguments[0].scrollIntoView(true);", el)
    time.sleep(0.8)
    el.screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def test_reciprocity_and_equity_gap_views_on_the_demo(dash_duo, dash_app, demo_warehouse,
                                                      monkeypatch) -> None:
    """Issue 13 in the browser, on the demo program: the Partnerships page's reciprocity view
    (scatter of both sides' gains, the one-sided list holding the planted partnerships, the
    shares, the method) and the Equity page's gap table per grouping with its CR2 interval
    (screenshots partnerships-reciprocity.png, equity-gaps.png)."""
    path, truth = _demo_with_truth(demo_warehouse)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/partnerships")
    _settle(dash_duo, "#partnerships-one-sided-table")
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
    _view_shot(dash_duo, "#partnerships-reciprocity-section", "partnerships-reciprocity")
    dash_duo.driver.get(dash_duo.server_url + "/equity?by=connectivity")
    _settle(dash_duo, "#equity-gaps-table")
    assert dash_duo.get_logs() == []
    table = dash_duo.find_element("#equity-gaps-table").text
    assert "minutes per participant" in table and "high:" in table and "low:" in table
    assert "Bonferroni" in dash_duo.find_element("#equity-gaps-method").text
    _view_shot(dash_duo, "#equity-gaps-section", "equity-gaps")


def test_outcomes_dose_response_and_moderation_views_on_the_demo(dash_duo, dash_app,
                                                                 demo_warehouse,
                                                                 monkeypatch) -> None:
    """Issue 13 on the Outcomes page, drawn from the demo (whose gains rise with events and
    differ by modality): the binned dose curve and the slopes with the self-selection caveat;
    the gains by setting/modality/purpose with the interaction test; switching the attribute
    redraws them (screenshots outcomes-dose.png, outcomes-moderation.png)."""
    from analytics import estimands

    path, _ = _demo_with_truth(demo_warehouse)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + PAGES["outcomes"])
    _settle(dash_duo, "#outcomes-dose-slopes")
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
    _section_screenshot(dash_duo, "outcomes-dose-section", "outcomes-dose")
    dash_duo.driver.execute_script(
        "Array.from(document.querySelectorAll('#outcomes-moderator input'))"
        ".find(i => i.value === 'setting').click()")
    dash_duo.wait_for_contains_text("#outcomes-moderation-tests", "wave × setting test",
                                    timeout=20)
    _settle(dash_duo, "#outcomes-moderation-tests")
    assert "F(1, ∞)" in dash_duo.find_element("#outcomes-moderation-tests").text
    levels = dash_duo.driver.execute_script(
        "return Array.from(document.querySelector('#outcomes-moderation .js-plotly-plot')"
        "._fullData[0].y)")
    assert sorted(levels) == ["curricular", "extracurricular"]
    assert dash_duo.get_logs() == []
    _section_screenshot(dash_duo, "outcomes-moderation-section", "outcomes-moderation")


def _section_screenshot(dash_duo, element_id: str, name: str) -> None:
    """docs/screenshots/<name>.png: the window scrolled to one section (an element screenshot
    of a section far down a long page times out in a busy renderer)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver = dash_duo.driver
    driver.set_window_size(1400, 1300)
    height = -1
    for _ in range(20):  # late figures above grow the page: wait until its height is stable
        new = driver.execute_script("return document.documentElement.scrollHeight")
        if new == height:
            break
        height = new
        time.sleep(0.5)  # the picture only: no assertion waits on it
    # instant: Bootstrap's smooth scrolling would still be on its way when the picture is taken
    driver.execute_script(f"document.getElementById('{element_id}')"
                          ".scrollIntoView({behavior: 'instant', block: 'start'})")
    time.sleep(0.5)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def test_scheduling_view_on_the_demo(dash_duo, dash_app, demo_warehouse, monkeypatch) -> None:
    """Issue 13 in the browser, on the demo program: the Participation page's scheduling view
    (scatter of joint share against overlap, the model's estimate with its method, the pair
    table with zero-overlap pairs flagged; screenshot participation-scheduling.png)."""
    path, truth = _demo_with_truth(demo_warehouse)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/participation")
    _settle(dash_duo, "#participation-scheduling-table-rows")
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
    _view_shot(dash_duo, "#participation-scheduling-section", "participation-scheduling")


def test_scale_up_vs_scale_in_views_on_the_demo(dash_duo, dash_app, demo_warehouse,
                                                monkeypatch) -> None:
    """Issue 13 on the Overview page, drawn from the demo: the quadrant holds each cluster
    whose latest term grew in breadth but not in depth (truth.json "scale") as "scaling up
    only"; the cluster filter narrows the per-term view to that cluster (screenshot
    overview-scale.png)."""
    path, truth = _demo_with_truth(demo_warehouse)
    planted = truth["scale"]["scaling_up_only"]
    assert planted
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/")
    _settle(dash_duo, "#overview-scale-rows")
    assert dash_duo.get_logs() == []
    assert "Newcombe" in dash_duo.find_element("#overview-scale-note").text
    quad = dash_duo.driver.execute_script(
        "const d = document.querySelector('#overview-scale-quadrant .js-plotly-plot')._fullData;"
        "return [Array.from(d[0].text), Array.from(d[0].customdata.map(c => c[7]))]")
    shown = dict(zip(*quad, strict=True))
    for p in planted:
        assert shown[p["cluster"]] == "scaling up only"
    _section_screenshot(dash_duo, "overview-scale", "overview-scale")
    one = planted[0]["cluster"]
    dash_duo.driver.get(dash_duo.server_url + f"/?cluster={one}")
    _settle(dash_duo, "#overview-scale-rows")
    names = dash_duo.driver.execute_script(
        "return Array.from(document.querySelector('#overview-scale-terms .js-plotly-plot')"
        "._fullData.map(t => t.name))")
    assert set(names) == {one}
    rows = dash_duo.find_element("#overview-scale-rows").text
    assert planted[0]["term"] in rows and "scaling up only" in rows


def test_overview_cost_view_on_the_demo(dash_duo, dash_app, demo_warehouse, monkeypatch) -> None:
    """Issue 13 on the Overview page, drawn from the demo (budgets in several currencies, a
    rates.csv converting them into EUR): the cost table per cluster from the link, the
    no-budget count, the interval per unit of gain; switching to programs redraws it
    (screenshot overview-cost.png)."""
    path, truth = _demo_with_truth(demo_warehouse)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/?cost=cluster")
    _settle(dash_duo, "#overview-cost-grid")
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
    _settle(dash_duo, "#overview-cost-grid")
    assert dash_duo.get_logs() == []
    _section_screenshot(dash_duo, "overview-cost-section", "overview-cost")
