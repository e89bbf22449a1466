"""The dashboard's languages: English, Spanish and French (issue 15).

Which language a request is answered in, in this order:
1. a page load's `lang` URL parameter (`?lang=es`), so that a shared link opens in the
   language it was shared in (the address bar keeps it: `_ui`'s URL writer and nav links);
2. a callback's `X-EI-Lang` header, which assets/i18n.js adds to every request the page makes
   (`document.documentElement.lang`, the language the page was served in), so that a page's
   callbacks answer in the page's language;
3. the browser's languages (`Accept-Language`), best match;
4. English.

The interface's words are gettext catalogues: `pages/locales/<lang>/LC_MESSAGES/messages.po`,
extracted from the code with Babel (`pybabel extract -F pages/locales/babel.cfg`; see the
README) and read with Babel at start-up (no compiled .mo file is kept beside its source).
Numbers and dates are formatted by Babel for the language (CLDR), country names come from
pycountry's ISO 3166 translations.
"""

from __future__ import annotations

import datetime as dt
import gettext as gettext_module
import io
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES: dict[str, str] = {"en": "English", "es": "Español", "fr": "Français"}
DEFAULT = "en"
HEADER = "X-EI-Lang"
PARAM = "lang"
LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "messages"

__all__ = ["LANGUAGES", "N_", "current", "known", "browser_language", "tr", "trn", "country_name",
           "fmt_int", "fmt_num", "fmt_pct", "fmt_date", "plotly_config", "plotly_separators"]


def known(code: Any) -> str | None:
    """The supported language a code names ("ES-mx" → "es"), or None."""
    if not isinstance(code, str):
        return None
    code = code.strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else None


def browser_language() -> str:
    """The best of LANGUAGES for the request's Accept-Language (English without a request)."""
    from flask import has_request_context, request

    if not has_request_context():
        return DEFAULT
    # In the browser's order of preference (quality), a region's language counts as the
    # language ("fr-CA" is French): "de-CH, fr-CA;q=0.8, en;q=0.5" is French.
    for lang, _q in request.accept_languages:
        if code := known(lang):
            return code
    return DEFAULT


def current() -> str:
    """The language of the request being answered (see the module's docstring)."""
    from flask import g, has_request_context, request

    if not has_request_context():
        return DEFAULT
    lang = getattr(g, "ei_lang", None)
    if lang is None:
        lang = (known(request.args.get(PARAM)) or known(request.headers.get(HEADER))
                or browser_language())
        g.ei_lang = lang
    return lang


@cache
def _translations(lang: str) -> gettext_module.NullTranslations:
    """The catalogue of `lang`, read from its .po file and compiled in memory."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    po = LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if lang == DEFAULT or not po.exists():
        return gettext_module.NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def tr(message: str) -> str:
    """`message` in the request's language (gettext; the English text when the catalogue has
    no translation). Named `tr`, not `_`: `_` is the code's throwaway name. An empty text stays
    empty (gettext would answer it with the catalogue's header)."""
    return _translations(current()).gettext(message) if message else message


def trn(singular: str, plural: str, n: int) -> str:
    """ngettext: the singular or plural form of the request's language for `n`."""
    return _translations(current()).ngettext(singular, plural, n)


def N_(message: str) -> str:  # noqa: N802 (gettext's conventional name)
    """Marks a text for the catalogue where it is defined (a module constant); `tr` translates
    it where it is shown."""
    return message


@cache
def _countries(lang: str) -> gettext_module.NullTranslations:
    import pycountry

    try:
        return gettext_module.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang])
    except OSError:
        return gettext_module.NullTranslations()


def country_name(iso3: str) -> str:
    """A country's name in the request's language, from its ISO 3166 alpha-3 code (pycountry
    and its translations); the code itself when pycountry does not know it."""
    import pycountry

    c = pycountry.countries.get(alpha_3=str(iso3).upper())
    if c is None:
        return str(iso3)
    lang = current()
    if lang == DEFAULT:
        return getattr(c, "common_name", None) or c.name
    return _countries(lang).gettext(c.name)


def _missing(v: Any) -> bool:
    import pandas as pd

    return v is None or (not isinstance(v, str) and bool(pd.isna(v)))


@cache
def _marks(lang: str) -> tuple[dict[int, str], str]:
    """The language's number marks (CLDR, through Babel), once per language: a translation of
    Python's "," and "." into its group and decimal marks, and its percent pattern ("{}%",
    "{} %"). Babel formats a number in about 10 µs; a page table has a thousand of them."""
    from babel.numbers import format_percent, get_decimal_symbol, get_group_symbol

    table = str.maketrans({",": get_group_symbol(lang), ".": get_decimal_symbol(lang)})
    return table, format_percent(0.25, locale=lang).replace("25", "{}", 1)


def _local(text: str) -> str:
    lang = current()
    return text if lang == DEFAULT else text.translate(_marks(lang)[0])


def fmt_int(v: Any) -> str:
    """A whole number with the language's grouping ("1,234", "1.234", "1 234"); "—" if none."""
    return "—" if _missing(v) else _local(f"{int(v):,}")


def fmt_num(v: Any, digits: int = 2) -> str:
    """A number with `digits` decimals in the language's notation ("0.25", "0,25"), rounded by
    Python exactly as the English text."""
    return "—" if _missing(v) else _local(f"{float(v):,.{digits}f}")


def fmt_pct(v: Any) -> str:
    """A share as a whole percentage in the language's form ("25%", "25 %")."""
    if _missing(v):
        return "—"
    whole = f"{100 * float(v):.0f}"  # rounded as the English text is
    lang = current()
    return f"{whole}%" if lang == DEFAULT else _marks(lang)[1].format(whole)


def fmt_date(v: Any) -> str:
    """A date in the language's medium form ("Mar 4, 2025", "4 mar 2025", "4 mars 2025")."""
    from babel.dates import format_date

    if _missing(v):
        return "—"
    if isinstance(v, str):
        v = dt.date.fromisoformat(v[:10])
    if isinstance(v, dt.datetime):
        v = v.date()
    return format_date(v, format="medium", locale=current())


def plotly_separators() -> str:
    """plotly.js `layout.separators` for the language: its decimal then its group mark."""
    from babel.numbers import get_decimal_symbol, get_group_symbol

    lang = current()
    group = get_group_symbol(lang)
    return get_decimal_symbol(lang) + (" " if group.isspace() else group)


# plotly.js's own words the figures show (its mode bar's buttons and messages), English as
# plotly.js writes them: `plotly_config` gives their translation in the figure's `locales`.
PLOTLY_WORDS = (
    N_("Download plot as a PNG"), N_("Download plot"), N_("Zoom"), N_("Pan"),
    N_("Box Select"), N_("Lasso Select"), N_("Zoom in"), N_("Zoom out"), N_("Autoscale"),
    N_("Reset axes"), N_("Reset view"), N_("Reset"), N_("Toggle Spike Lines"),
    N_("Show closest data on hover"), N_("Compare data on hover"),
    N_("Toggle show closest data on hover"), N_("Double-click to zoom back out"),
    N_("Taking snapshot - this may take a few seconds"), N_("Snapshot succeeded"),
    N_("Sorry, there was a problem downloading your snapshot!"),
)


def plotly_config() -> dict[str, Any]:
    """dcc.Graph `config` entries for the language: plotly.js's month and day names on date
    axes (from CLDR, through Babel) and its mode bar's words (`PLOTLY_WORDS`, from the
    catalogue); English is plotly's own."""
    from babel.dates import get_day_names, get_month_names

    lang = current()
    if lang == DEFAULT:
        return {}

    def names(get: Any, width: str) -> list[str]:
        d = get(width, locale=lang)
        return [str(d[k]) for k in sorted(d)]

    days = names(get_day_names, "wide")  # Babel: Monday first; plotly.js: Sunday first
    short = names(get_day_names, "abbreviated")
    fmt = {"months": names(get_month_names, "wide"),
           "shortMonths": names(get_month_names, "abbreviated"),
           "days": days[6:] + days[:6], "shortDays": short[6:] + short[:6], "date": "%d/%m/%Y"}
    words = {w: tr(w) for w in PLOTLY_WORDS}
    return {"locale": lang, "locales": {lang: {"format": fmt, "dictionary": words}}}


# ---- the catalogues: extraction and update (`python -m pages._i18n`) -----------------------

KEYWORDS = {"tr": None, "trn": (1, 2), "N_": None}
SOURCES = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "app.py")


def extracted() -> dict[str | tuple[str, str], list[tuple[str, int]]]:
    """Every text the code marks for the catalogue (tr, trn, N_), with where it is: from
    pages/ and app.py, by Babel's Python extractor."""
    from babel.messages.extract import extract_from_dir, extract_from_file

    root = SOURCES[1].parent
    found: dict[str | tuple[str, str], list[tuple[str, int]]] = {}
    for fn, line, msg, _comments, _ctx in extract_from_dir(
            str(SOURCES[0]), method_map=[("**.py", "python")], keywords=KEYWORDS):
        found.setdefault(msg, []).append((f"pages/{fn}", line))
    for line, msg, _comments, _ctx in extract_from_file("python", str(SOURCES[1]),
                                                        keywords=KEYWORDS):
        found.setdefault(msg, []).append((str(SOURCES[1].relative_to(root)), line))
    for name, msg in shown_constants().items():
        found.setdefault(msg, []).append((name, 0))
    return found


def shown_constants() -> dict[str, str]:
    """Texts defined outside pages/ that the pages show through `tr`: the estimands' sentences
    (analytics/estimands.py, shared with the codebook and the exports, which stay English), the
    scope note of a scoped account and the researcher tables' descriptions. Named
    module:CONSTANT."""
    from analytics import estimands
    from pages import _access

    out = {f"analytics/estimands.py:{n}": getattr(estimands, n) for n in dir(estimands)
           if n.isupper() and isinstance(getattr(estimands, n), str)}
    out["pages/_access.py:SCOPE_NOTE"] = _access.SCOPE_NOTE
    from analytics.stats import persistence

    out["analytics/stats/persistence.py:LINK_DEFINITION"] = persistence.LINK_DEFINITION
    from etl import schema

    # What each researcher table holds (the Data page's table list and download choice; the
    # codebook and the exports keep the English).
    out.update({f"etl/schema.py:{t.name}": t.doc for t in schema.RESULT_TABLES.values()})
    return out


def catalogue(lang: str) -> Any:
    """The Babel catalogue of `lang` as its .po file has it."""
    from babel.messages.pofile import read_po

    with (LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as f:
        return read_po(f, locale=lang, domain=DOMAIN)


def translated(message: Any) -> bool:
    """Whether a catalogue entry has its translation (every plural form) and is not fuzzy."""
    forms = message.string if isinstance(message.string, tuple | list) else (message.string,)
    return bool(forms) and all(forms) and not message.fuzzy


def update() -> dict[str, list[str]]:
    """Write the template (messages.pot) from the code and merge it into each language's .po
    (new texts untranslated, texts gone from the code removed, translations kept). Returns per
    language the texts that have no translation yet."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    template = Catalog(domain=DOMAIN, project="Exchange Impact")
    for msg, where in sorted(extracted().items(), key=lambda kv: str(kv[0])):
        template.add(msg, locations=where)
    with (LOCALES / f"{DOMAIN}.pot").open("wb") as f:
        write_po(f, template, width=100, omit_header=False, sort_output=True)
    missing: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        if lang == DEFAULT:
            continue
        po = LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        po.parent.mkdir(parents=True, exist_ok=True)
        cat = catalogue(lang) if po.exists() else Catalog(locale=lang, domain=DOMAIN)
        cat.update(template, no_fuzzy_matching=True)
        cat.obsolete.clear()
        with po.open("wb") as f:
            write_po(f, cat, width=100, sort_output=True, ignore_obsolete=True)
        missing[lang] = [str(m.id) for m in cat if m.id and not translated(m)]
    return missing


def main() -> int:
    missing = update()
    for lang, texts in missing.items():
        print(f"{lang}: {len(texts)} texts without a translation")
        for t in texts[:20]:
            print(f"  {t!r}")
    return 1 if any(missing.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
