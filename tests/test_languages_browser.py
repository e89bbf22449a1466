"""The dashboard in Spanish and French in a real headless Chromium (issue 15): a link keeps its
language, every page passes axe in a translation (Spanish; English is
tests/test_accessibility.py's), no text of the code shows untranslated, and one page per language
is captured for docs/screenshots/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pages import _i18n
from tests.pages_browser import (
    PAGES,
    READY,
    SMALL_QUERY,
    filters_shown,
    screenshot,
    serve_demo,
    settle,
    visit,
    wait_for_url,
)
from tests.test_accessibility import violations

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\{[a-z_]*\}|%\{[^}]*\}")
WORD = re.compile(r"[A-Za-z]{2,}")


def _code_texts(lang: str) -> set[str]:
    """The English texts of the interface's code, as fragments a page could show verbatim: every
    string literal of pages/*.py and app.py with at least two words (split at placeholders),
    except those the language's catalogue leaves as they are ("gain, participants" is French
    too) and the languages' own names."""
    cat = _i18n.catalogue(lang)
    same = {m.id for m in cat if m.id and m.string == m.id} | set(_i18n.LANGUAGES.values())
    texts = set()
    for path in [*sorted((ROOT / "pages").glob("*.py")), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value in same:
                    continue
                for part in PLACEHOLDER.split(node.value):
                    part = part.strip(" :;,.()—–-\n")
                    if part.startswith("python -m"):  # a command, written as typed
                        continue
                    if len(WORD.findall(part)) >= 2 and "\n" not in part and "_" not in part \
                            and not re.search(r"[{}<>=#\[\]]|\.py|--|https?:", part):
                        texts.add(part)
    return texts


# The visible text nodes of the page (hidden tabs and closed disclosures included: they are
# the page's text too), and the figures' SVG texts.
VISIBLE_TEXT_JS = """
const out = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const p = n.parentElement;
  // Not the page's language by design: commands (<code>), and text marked as being in another
  // language (the product's name, the language links).
  if (!p || p.closest('script, style, code')) continue;
  const own = p.closest('[lang]');
  if (own && own.getAttribute('lang') !== document.documentElement.lang) continue;
  const t = n.textContent.replace(/\\s+/g, ' ').trim();
  if (t) out.push(t);
}
// What a user reads or hears besides text: the figures' mode bar tooltips, the names and
// placeholders of controls (the grids' filter boxes, their menus).
for (const el of document.querySelectorAll('[data-title], [aria-label], [placeholder], [title]')) {
  const own = el.closest('[lang]');
  if (own && own.getAttribute('lang') !== document.documentElement.lang) continue;
  for (const a of ['data-title', 'aria-label', 'placeholder', 'title']) {
    const v = el.getAttribute(a);
    if (v && v.trim()) out.push(v.trim());
  }
}
return out;
"""


def _untranslated(dash_duo, code_texts: set[str]) -> list[str]:
    shown = dash_duo.driver.execute_script(VISIBLE_TEXT_JS)
    return sorted({f"{t!r} in {s[:120]!r}" for s in shown for t in code_texts if t in s})


# Spanish unfiltered and filtered; French filtered (under k) only: a text the code did not mark
# shows in English in every language alike, so one language per view finds it, and the
# marked texts' translations are checked for both languages by tests/test_i18n.py.
@pytest.mark.parametrize("lang,queries", [("es", ("", SMALL_QUERY)), ("fr", (SMALL_QUERY,))])
def test_every_page_in_the_language_passes_axe_and_shows_no_untranslated_text(
        dash_duo, dash_app, lang: str, queries: tuple[str, ...]) -> None:
    """Every view shows no untranslated text; axe audits every page once in a translation
    (Spanish, unfiltered), where a translated text could change its outcome (an empty or
    duplicated name, a label that no longer matches). The page's structure, roles and colours
    are the same in every language, and tests/test_accessibility.py audits every page
    unfiltered and filtered (under k, with dates) in English, so axe on the other views of
    this test (Spanish filtered, French) found nothing those two do not.

    The views are shown by client-side navigation within one load per language
    (`pages_browser.visit`): the language is chosen at load and kept by every callback, which
    is what is checked here; a fresh load of every page is tests/test_pages.py's."""
    code_texts = _code_texts(lang)
    assert len(code_texts) > 200
    dash_duo.start_server(dash_app)
    failures, audited = [], 0
    for query in [(q + "&" if q else "?") + f"lang={lang}" for q in queries]:
        audit = lang == "es" and not query.startswith(SMALL_QUERY)
        for name, path in PAGES.items():
            visit(dash_duo, name, query)
            assert dash_duo.driver.execute_script(
                "return document.documentElement.lang") == lang, path
            assert filters_shown(dash_duo) == ((SMALL_QUERY, ["FRA"]) if query.startswith(
                SMALL_QUERY) else ("", [])), path + query
            if audit:
                failures += [f"{path}{query}: axe {v}" for v in violations(dash_duo)]
                audited += 1
            failures += [f"{path}{query}: untranslated {u}"
                         for u in _untranslated(dash_duo, code_texts)]
    assert not failures, "\n".join(failures[:60]) + f"\n({len(failures)} failures)"
    assert audited == (len(PAGES) if lang == "es" else 0)
    assert dash_duo.get_logs() == []


def test_a_spanish_link_opened_fresh_stays_spanish(dash_duo, dash_app) -> None:
    """A shared link with ?lang=es in a new browser: the page is Spanish; a filter change keeps
    lang=es in the address bar; the navbar's links keep it; the address reloaded is Spanish."""
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/participation?lang=es")
    settle(dash_duo, READY["participation"])
    assert dash_duo.driver.execute_script("return document.documentElement.lang") == "es"
    assert dash_duo.find_element("#filter-country-label").text == "País"
    assert dash_duo.find_element("#filter-clear").text == "Borrar filtros"
    # A change of filter (the map's country list on Overview, as a user would).
    dash_duo.driver.get(dash_duo.server_url + "/?lang=es&country=FRA")
    settle(dash_duo, READY["overview"])
    url = wait_for_url(dash_duo, lambda u: "country=FRA" in u and "lang=es" in u)
    assert "lang=es" in url and "country=FRA" in url, url
    hrefs = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('.navbar-nav a.nav-link'))"
        ".map(a => a.getAttribute('href'))")
    assert hrefs and all("lang=es" in h and "country=FRA" in h for h in hrefs), hrefs
    dash_duo.driver.get(url)
    settle(dash_duo, READY["overview"])
    assert dash_duo.driver.execute_script("return document.documentElement.lang") == "es"
    assert dash_duo.find_element("#filter-clear").text == "Borrar filtros"
    # The language menu goes to the same view in French, filters kept.
    fr = dash_duo.driver.execute_script(
        "return document.querySelector('a[hreflang=fr]').getAttribute('href')")
    assert "lang=fr" in fr and "country=FRA" in fr, fr
    assert dash_duo.get_logs() == []


def test_screenshots_of_one_page_in_each_language(dash_duo, dash_app, pages_demo,
                                                  monkeypatch) -> None:
    """docs/screenshots/outcomes-<lang>.png, drawn from the demo program."""
    serve_demo(dash_duo, dash_app, pages_demo, monkeypatch)
    for lang in ("en", "es", "fr"):
        dash_duo.driver.get(dash_duo.server_url + f"/outcomes?lang={lang}")
        settle(dash_duo, "#outcomes-model .ag-row, #outcomes-model .alert")
        assert dash_duo.driver.execute_script("return document.documentElement.lang") == lang
        screenshot(dash_duo, f"outcomes-{lang}")
