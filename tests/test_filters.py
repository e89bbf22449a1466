"""analytics.read.filters: the filter model and each page's own view keys in the shareable URL
(issue 9: /participation?by=country warned "'by' is not a filter" and opened the default)."""

from __future__ import annotations

from datetime import date

import pytest

from analytics.read.filters import (
    ACTIVITY_GROUPINGS,
    EFFECTS,
    FILTER_KEYS,
    PAGE_VIEWS,
    Filters,
    page_query,
    parse_filters,
    parse_view,
    view_query,
)


def test_a_page_view_key_is_no_filter_and_no_mistake() -> None:
    f, notes = parse_filters("?by=country", page="/participation")
    assert f == Filters() and notes == []
    assert parse_view("?by=country", "/participation") == ({"by": "country"}, [])
    # Without a page, any page's view keys are accepted (the filter bar always knows the page).
    assert parse_filters("?by=country&effect=diff")[1] == []


def test_a_view_key_of_another_page_or_a_value_the_page_lacks_gets_a_note() -> None:
    assert parse_filters("?by=country", page="/")[1] == ["'by' is not a filter (ignored)"]
    view, notes = parse_view("?by=teleport", "/participation")
    assert view == {} and len(notes) == 1 and "by=teleport" in notes[0]
    assert parse_view("?scale=icc/openness", "/outcomes") == ({"scale": "icc/openness"}, [])


def test_the_written_url_keeps_the_view_keys() -> None:
    f = Filters(country=("FRA",), start=date(2025, 1, 1))
    assert page_query(f, "/participation", {"by": "country"}) == (
        "?country=FRA&from=2025-01-01&by=country")
    assert page_query(Filters(), "/participation", {"by": "country"}) == "?by=country"
    assert page_query(f, "/participation", {"by": "cluster"}) == f.to_query()  # the default
    # Keys of another page and values the page does not offer are not written.
    assert view_query("/participation", {"by": "gender", "effect": "diff"}) == ""
    assert view_query("/outcomes", {"by": "country", "effect": "diff", "scale": "a/b"},
                      {"scale": "a/b"}) == "by=country&effect=diff"
    # Round trip: what is written is read back, with no note.
    query = page_query(f, "/outcomes", {"by": "country", "effect": "diff"})
    assert parse_filters(query, page="/outcomes") == (f, [])
    assert parse_view(query, "/outcomes") == ({"by": "country", "effect": "diff"}, [])


def test_view_keys_and_filter_keys_are_apart() -> None:
    for page, keys in PAGE_VIEWS.items():
        assert not set(keys) & set(FILTER_KEYS), page
        for spec in keys.values():
            assert spec.default is None or spec.allowed is None or spec.default in spec.allowed


@pytest.mark.parametrize(("page", "module"), [("/participation", "participation"),
                                              ("/outcomes", "outcomes"), ("/equity", "equity")])
def test_every_page_with_view_keys_is_in_the_model(page: str, module: str) -> None:
    """The pages' layouts take the model's keys as arguments (their controls' defaults)."""
    import importlib
    import inspect

    importlib.import_module("app")  # pages register only once the app exists
    mod = importlib.import_module(f"pages.{module}")
    assert mod.PATH == page
    params = inspect.signature(mod.layout).parameters
    for key, spec in PAGE_VIEWS[page].items():
        assert key in params, (page, key)
        if spec.default is not None:
            assert params[key].default == spec.default, (page, key)


def test_the_pages_offer_the_models_values() -> None:
    import app  # noqa: F401  (pages register only once the app exists)
    from pages import outcomes, participation

    assert tuple(outcomes.EFFECTS) == EFFECTS
    assert participation._BY_OPTIONS is ACTIVITY_GROUPINGS
