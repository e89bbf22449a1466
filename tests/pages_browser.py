"""What the browser tests of the pages (tests/test_pages*.py) share: the pages and the element
that says each is drawn, waiting on Dash rather than on time, reading figures as drawn, the
screenshots in docs/screenshots/, the small-selection oracle, and the two warehouses they run on
(`fixture_warehouse`, `pages_demo`; tests/conftest.py makes them the `dash_app` and
`pages_demo` fixtures).

The page tests are split over several modules, one per page or view family, so that pytest-xdist
(`--dist loadscope`: a module is one unit of work) spreads them over its workers; the warehouses
they read are built once per run for all of them (`tests.shared_builds`).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import duckdb
import pytest

from analytics.suppression import SMALL_SELECTION, SUPPRESSED_LABEL
from tests.dashboard_fixture import build_fixture_warehouse
from tests.shared_builds import built_once, worker_copy

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


def fixture_warehouse() -> Path:
    """The small fixture warehouse of `tests/dashboard_fixture.py` (with its result tables),
    built once per run for every page module and worker; this process's own copy of it, since
    the app may write beside its warehouse (download caches)."""
    source = (ROOT / "tests" / "dashboard_fixture.py").read_bytes()

    def build(folder: Path) -> None:
        build_fixture_warehouse(folder / "warehouse.duckdb")

    key = (hashlib.sha256(source).hexdigest()[:16],)
    return worker_copy(built_once("pages-fixture", key, build)) / "warehouse.duckdb"


def pages_demo(participants: int | None = None) -> tuple[Path, str]:
    """The generated demo program (`python -m etl demo --participants N`, the run's one shared
    build of `tests.analytics_fixture`: by default its size, which the analytics modules build
    anyway), for the screenshots and the views drawn from the demo's result tables; the fixture
    warehouse if the demo cannot be built here (the reason is kept for the warning, and
    `demo_with_truth` fails on it on CI)."""
    from tests.analytics_fixture import DEMO_PARTICIPANTS, demo_warehouse

    try:
        return demo_warehouse(participants or DEMO_PARTICIPANTS), "demo"
    except RuntimeError as e:
        last = (str(e).strip().splitlines() or ["no output"])[-1]
        return fixture_warehouse(), f"fixture: demo failed: {last}"


def serve_demo(dash_duo, dash_app, demo: tuple[Path, str], monkeypatch) -> None:
    """Start the app on the demo warehouse (`pages_demo`) for screenshots; on the fixture, with
    a warning, where the demo cannot be built here."""
    import warnings

    path, source = demo
    if not source.startswith("demo"):
        warnings.warn(f"screenshots drawn from the test fixture ({source})", stacklevel=2)
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
    dash_duo.start_server(dash_app)


def demo_with_truth(demo: tuple[Path, str]) -> tuple[Path, dict]:
    """The demo warehouse and its truth.json, for the views that need the demo's result tables.
    Without the demo such a test cannot say anything: it is skipped on a developer's machine
    and fails on CI (CI=true), where the demo must build."""
    import json

    path, source = demo
    if not source.startswith("demo"):
        why = f"needs the demo's result tables ({source})"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path, json.loads((path.parent / "demo" / "truth.json").read_text(encoding="utf-8"))


def settle(dash_duo, selector: str, timeout: float = 20) -> None:
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


def visit(dash_duo, name: str, query: str = "", timeout: float = 20) -> None:
    """Show page `name` (`PAGES`) with `query` in the app already loaded in the browser, as a
    dcc.Link does (history.pushState and Dash's `_dashprivate_pushstate` event: the page's layout
    and callbacks run again, the shell stays), for loops that audit or read many views: a full
    load costs Chromium ~40% more CPU than this, and tests/test_pages.py tests that every page
    loads clean on its own. The first call loads the address (`driver.get`), and so does one
    to the page already shown, or whose `?lang=` differs from the address's (the language is
    chosen at load). Returns once the new page's `READY` element is drawn,
    the previous page's is gone, the address is the one asked for, and Dash is idle
    (`settle`)."""
    driver = dash_duo.driver
    path = PAGES[name]
    target = path + query
    shown = driver.execute_script(
        "return window.store && window.location.origin === arguments[0]"
        " ? [window.location.pathname, window.location.search] : null",
        dash_duo.server_url.rstrip("/"))

    def lang(q: str) -> str | None:
        return dict(parse_qsl(q.lstrip("?"))).get("lang")

    # A new query on the same page: React may keep the page's elements, so that no element
    # would say when the new view is drawn; a load does.
    if shown is None or shown[0] == path or lang(query) != lang(shown[1]):
        driver.get(dash_duo.server_url + target)
        settle(dash_duo, READY[name], timeout)
        return
    before = next((n for n, p in PAGES.items() if p == shown[0]), None)
    driver.execute_script(
        "window.history.pushState({}, '', arguments[0]);"
        "window.dispatchEvent(new CustomEvent('_dashprivate_pushstate'));", target)
    old = READY[before] if before is not None else None
    deadline = time.monotonic() + timeout
    while driver.execute_script(
            "return !document.querySelector(arguments[0])"
            " || (arguments[1] !== null && !!document.querySelector(arguments[1]))",
            READY[name], old):
        if time.monotonic() > deadline:
            raise AssertionError(f"{target}: {READY[name]} not drawn or {old} still shown "
                                 f"{timeout:g} s after the navigation")
        time.sleep(0.1)
    settle(dash_duo, READY[name], timeout)
    at = driver.execute_script("return window.location.pathname")
    assert at == path, f"asked for {target}, the browser is at {at}"


# A component's props as Dash's renderer holds them (what it draws), by id.
PROPS_JS = """
const st = window.store.getState();
const at = st.paths.strs[arguments[0]];
if (!at) return null;
return at.reduce((o, k) => o[k], st.layout).props;
"""


def filters_shown(dash_duo) -> tuple[str, list[str]]:
    """The filters the page is drawn with: the query of the filter store the pages' callbacks
    read ("" unfiltered), and the countries its Country control shows."""
    store = dash_duo.driver.execute_script(PROPS_JS, "filters-store")
    country = dash_duo.driver.execute_script(PROPS_JS, "filter-country")
    return ((store or {}).get("data") or {}).get("query", ""), (country or {}).get("value")


def foreign_requests(dash_duo) -> list[str]:
    names = dash_duo.driver.execute_script(
        "return window.performance.getEntries()"
        ".filter(e => e.entryType === 'resource' || e.entryType === 'navigation')"
        ".map(e => e.name)"
    )
    origin = urlparse(dash_duo.server_url)
    return [n for n in names if urlparse(n).netloc != origin.netloc]


_GRID_JS = """
const box = document.querySelector(arguments[0]);
if (!box) return null;
const heads = Array.from(box.querySelectorAll('.ag-header-row-column .ag-header-cell'))
  .sort((a, b) => a.getAttribute('aria-colindex') - b.getAttribute('aria-colindex'))
  .map(h => h.innerText.trim());
const rows = Array.from(box.querySelectorAll('.ag-center-cols-container .ag-row'))
  .sort((a, b) => a.getAttribute('row-index') - b.getAttribute('row-index'))
  .map(r => Array.from(r.querySelectorAll('.ag-cell'))
    .sort((a, b) => a.getAttribute('aria-colindex') - b.getAttribute('aria-colindex'))
    .map(c => c.innerText.trim()));
return {heads: heads, rows: rows};
"""


def grid_shown(dash_duo, selector: str) -> tuple[list[str], list[list[str]]]:
    """A research grid (pages/_grid.py) under `selector` as Chromium shows it: its headers and
    its rendered rows in their displayed order, each cell's text."""
    got = dash_duo.driver.execute_script(_GRID_JS, selector)
    assert got is not None, f"no grid under {selector}"
    return got["heads"], got["rows"]


def figure_total(dash_duo, graph_id: str) -> float:
    """Sum of the first trace's y values as drawn in the browser."""
    return dash_duo.driver.execute_script(
        f"const g = document.getElementById('{graph_id}');"
        "const p = g.classList.contains('js-plotly-plot') ? g : g.querySelector('.js-plotly-plot');"
        "return Array.from(p._fullData[0].y).reduce((a, b) => a + (b || 0), 0);")


def screenshot(dash_duo, name: str) -> None:
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


def wait_for_url(dash_duo, test, timeout: float = 10) -> str:
    """The address bar once `test(url)` holds (the writer runs after the callbacks answer)."""
    deadline = time.monotonic() + timeout
    url = dash_duo.driver.current_url
    while not test(url) and time.monotonic() < deadline:
        time.sleep(0.1)
        url = dash_duo.driver.current_url
    return url


def has_gap(dash_duo, graph_id: str) -> bool:
    """Whether a trace of the figure, as drawn in the browser, has a missing y (a gap)."""
    return dash_duo.driver.execute_script(
        f"const g = document.getElementById('{graph_id}');"
        "const p = g.classList.contains('js-plotly-plot') ? g : g.querySelector('.js-plotly-plot');"
        "return p._fullData.some(t => Array.from(t.y || []).some(v => v === null"
        " || v === undefined || Number.isNaN(v)));")


# A selection under k in the fixture: France in exchange X3 (8 participants, 1 comparison-group
# member; `small_selection_counts` counts them from the warehouse).
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
TEXT_JS = """
const el = document.querySelector(arguments[0]);
if (!el) return null;
const out = [];
const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const at = n.parentElement;
  if (at.closest('td:first-child, .ag-cell[aria-colindex="1"]')) continue;  // the group names
  // in a grid: its cells and headers (not AG Grid's own widgets: its row count, sort order)
  if (at.closest('.ag-root-wrapper') && !at.closest('.ag-cell, .ag-header-cell-text')) continue;
  out.push(n.textContent);
}
return out.join(' | ');
"""


# What a graph holds: whether it was drawn (has a title), every number its traces carry
# (traces named as the suppression label are grey placeholders whose value is never shown),
# and its strings (hover texts, annotations).
GRAPH_JS = """
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


def small_selection_counts(warehouse: Path) -> set[int]:
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


def shows(text: str, counts: set[int]) -> list[int]:
    """The counts that appear in `text` as a number of their own (8, 138 or 1,380; not the 8
    of 0.81 or of 2018)."""
    return [c for c in sorted(counts) for form in {f"{c}", f"{c:,}"}
            if re.search(rf"(?<![\w.,]){re.escape(form)}(?!\d|[.,]\d)", text)]


def small_view_problems(dash_duo, texts: list[str], graphs: list[str], counts: set[int]
                         ) -> list[str]:
    problems = []
    for sel in texts:
        text = dash_duo.driver.execute_script(TEXT_JS, sel)
        if text is None:
            problems.append(f"{sel}: not on the page")
            continue
        if SUPPRESSED_LABEL not in text and SMALL_SELECTION not in text.lower():
            problems.append(f"{sel}: no suppression message in {text[:200]!r}")
        if shown := shows(text, counts):
            problems.append(f"{sel}: shows {shown} in {text[:300]!r}")
    for gid in graphs:
        g = dash_duo.driver.execute_script(GRAPH_JS, gid, SUPPRESSED_LABEL)
        if not g or not g["drawn"]:
            problems.append(f"#{gid}: not drawn yet")
            continue
        if g["numbers"]:
            problems.append(f"#{gid}: holds numbers {g['numbers'][:10]}")
        if shown := shows(" | ".join(g["strings"]), counts):
            problems.append(f"#{gid}: shows {shown} in its texts")
    return problems


def view_shot(dash_duo, selector: str, name: str) -> None:
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


def section_screenshot(dash_duo, element_id: str, name: str) -> None:
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
