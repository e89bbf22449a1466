"""The interface's languages (issue 15): the catalogues are complete, a request gets the
language it asks for, numbers, dates and country names follow it."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from pages import _i18n

PLACEHOLDERS = re.compile(r"\{[a-z_]*\}|%\{[^}]*\}|%[sd]")


def _ids(msg) -> list[str]:
    return list(msg) if isinstance(msg, tuple) else [msg]


@pytest.mark.parametrize("lang", ["es", "fr"])
def test_every_text_the_code_marks_is_translated(lang: str) -> None:
    """Every tr/trn/N_ text of pages/ and app.py has a translation (not fuzzy) in the language's
    catalogue, with the same placeholders; and the catalogue holds no text the code dropped."""
    marked = _i18n.extracted()
    assert len(marked) > 300
    cat = _i18n.catalogue(lang)
    problems = []
    for msg, where in marked.items():
        key = msg[0] if isinstance(msg, tuple) else msg
        entry = cat.get(key)
        if entry is None or not _i18n.translated(entry):
            problems.append(f"{where[0][0]}:{where[0][1]}: no {lang} translation of {key!r}")
            continue
        if isinstance(msg, tuple) and len(entry.string) != cat.num_plurals:
            problems.append(f"{where[0][0]}:{where[0][1]}: {lang} has {len(entry.string)} of "
                            f"its {cat.num_plurals} plural forms for {key!r}")
        for src, out in zip(_ids(msg), _ids(entry.string), strict=False):
            if sorted(PLACEHOLDERS.findall(src)) != sorted(PLACEHOLDERS.findall(out)):
                problems.append(f"{where[0][0]}:{where[0][1]}: {lang} placeholders differ: "
                                f"{src!r} → {out!r}")
    keys = {m[0] if isinstance(m, tuple) else m for m in marked}
    problems += [f"{lang} catalogue has {m.id!r}, which no code marks" for m in cat
                 if m.id and (m.id[0] if isinstance(m.id, tuple) else m.id) not in keys]
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} problems)"


def _in(lang_query: str = "", headers: dict[str, str] | None = None):
    return Flask("t").test_request_context("/" + lang_query, headers=headers or {})


def test_the_language_comes_from_the_link_then_the_page_then_the_browser() -> None:
    with _in("?lang=fr", {"Accept-Language": "es", _i18n.HEADER: "es"}):
        assert _i18n.current() == "fr"
    with _in("", {"Accept-Language": "fr", _i18n.HEADER: "es"}):
        assert _i18n.current() == "es"
    with _in("", {"Accept-Language": "de-CH, fr-CA;q=0.8, en;q=0.5"}):
        assert _i18n.current() == "fr"
    with _in("?lang=xx", {"Accept-Language": "de"}):
        assert _i18n.current() == "en"
    with _in("?lang=ES-mx"):
        assert _i18n.current() == "es"


def test_texts_numbers_dates_and_countries_follow_the_language() -> None:
    with _in("?lang=es"):
        assert _i18n.tr("") == ""  # not the catalogue's header
        assert _i18n.tr("Clear filters") == "Borrar filtros"
        assert _i18n.fmt_num(1234.5678) == "1234,57" or _i18n.fmt_num(1234.5678) == "1.234,57"
        assert _i18n.fmt_int(1234567) == "1.234.567"
        assert _i18n.fmt_date("2025-03-04") == "4 mar 2025"
        assert _i18n.country_name("DEU") == "Alemania"
    with _in("?lang=fr"):
        assert _i18n.tr("Clear filters") == "Effacer les filtres"
        assert _i18n.fmt_num(0.165).replace("\u202f", " ") == "0,17"  # rounded as in English
        assert _i18n.fmt_int(1234567).replace("\u202f", " ") == "1 234 567"
        assert _i18n.fmt_pct(0.254).replace("\u202f", " ").replace("\xa0", " ") == "25 %"
        assert _i18n.country_name("DEU") == "Allemagne"
    with _in("?lang=en"):
        assert _i18n.tr("Clear filters") == "Clear filters"
        assert (_i18n.fmt_num(0.165), _i18n.fmt_int(1234567), _i18n.fmt_pct(0.254)) == (
            f"{0.165:,.2f}", "1,234,567", "25%")
        assert _i18n.country_name("DEU") == "Germany"
        assert _i18n.country_name("XKX") == "XKX"


def test_the_page_is_served_in_the_language_of_its_link(monkeypatch, tmp_path) -> None:
    import app

    client = app.server.test_client()
    es = client.get("/?lang=es").get_data(as_text=True)
    assert '<html lang="es">' in es
    fr = client.get("/outcomes", headers={"Accept-Language": "fr-FR,fr;q=0.9"}).get_data(
        as_text=True)
    assert '<html lang="fr">' in fr
    assert '<html lang="en">' in client.get("/").get_data(as_text=True)
    layout = client.get("/_dash-layout", headers={_i18n.HEADER: "es"}).get_data(as_text=True)
    assert "Borrar filtros" in layout and "Clear filters" not in layout
