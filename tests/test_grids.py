"""Issue 15's research grids on the server (pages/_grid.py): what a grid is sent (each cell's
value to sort and filter by, and its text as shown in the request's language, the
suppression label as text), and how an export turns the view the browser sends back into a
file with `analytics export`'s writers. The browser side is tests/test_grids_browser.py."""

from __future__ import annotations

import base64
import io

import pandas as pd
import pyarrow.parquet as pq
from flask import Flask

from analytics.suppression import SUPPRESSED_LABEL
from pages import _grid, _ui
from tests.grids import grid_rows

FRAME = pd.DataFrame({
    "group": ["north", "south", "=cmd()"],
    "n": [1234, 7, 40],
    "gain": [0.123456, None, -0.5],
    "when": pd.to_datetime(["2026-01-05", "2026-03-01", "2025-12-31"]),
    "suppressed": [False, True, False],
})
COLUMNS = {"group": ("group", _ui.text), "n": ("n", _ui.fmt_int),
           "gain": ("gain", lambda v: _ui.fmt_num(v, 2)), "when": ("when", _ui.text)}


def _grid_of(div):
    return next(c for c in _walk(div) if type(c).__name__ == "AgGrid")


def _walk(c):
    yield c
    kids = getattr(c, "children", None)
    for k in kids if isinstance(kids, list) else [kids] if kids is not None else []:
        if hasattr(k, "to_plotly_json"):
            yield from _walk(k)


def test_a_grid_sends_values_to_sort_by_and_text_as_shown() -> None:
    with Flask("t").test_request_context("/?lang=en"):
        div = _grid.table(FRAME, COLUMNS, "Gains", id_="gains")
    grid = _grid_of(div)
    kinds = {d["headerName"]: (d["cellDataType"], d["filter"]) for d in grid.columnDefs}
    assert kinds == {"group": ("text", "agTextColumnFilter"),
                     "n": ("number", "agNumberColumnFilter"),
                     "gain": ("number", "agNumberColumnFilter"),
                     "when": ("text", "agTextColumnFilter")}
    north, south, cmd = grid.rowData
    assert (north["c1"], north["c1_t"], north["c2"], north["c2_t"]) == (1234, "1,234", 0.123456,
                                                                        "0.12")
    # the suppressed row's blank cell: no value (it sorts as empty, never as 0), the label shown
    assert (south["c2"], south["c2_t"], south["_s"]) == (None, SUPPRESSED_LABEL, True)
    assert south["c1_t"] == "7"  # a value the row holds is shown
    assert north["c3"] == "2026-01-05T00:00:00"  # a date sorts by its ISO text
    assert cmd["c0_t"] == "=cmd()"  # text is text (the export neutralises it)
    assert grid_rows(div)[1] == {"group": "south", "n": "7", "gain": SUPPRESSED_LABEL,
                                 "when": "2026-03-01 00:00:00"}


def test_a_grid_in_spanish_shows_spanish_numbers_and_grid_words() -> None:
    with Flask("t").test_request_context("/?lang=es"):
        grid = _grid_of(_grid.table(FRAME, COLUMNS, "Gains"))
    north, south, _ = grid.rowData
    assert (north["c1"], north["c1_t"], north["c2_t"]) == (1234, "1.234", "0,12")
    assert south["c2_t"] == "suprimido (n < 10)"
    text = grid.dashGridOptions["localeText"]
    assert (text["contains"], text["decimalSeparator"]) == ("Contiene", ",")


def test_an_empty_frame_says_so_instead_of_an_empty_grid() -> None:
    with Flask("t").test_request_context("/"):
        p = _grid.table(FRAME.iloc[:0], COLUMNS, "Gains", id_="gains")
    assert p.children == "Gains: nothing for the current filters." and p.id == "gains"


def _view(lang: str = "en"):
    with Flask("t").test_request_context(f"/?lang={lang}"):
        grid = _grid_of(_grid.table(FRAME, COLUMNS, "Gains"))
    return grid.rowData, grid.columnDefs


def test_the_view_follows_the_grids_order_columns_and_hidden_ones() -> None:
    rows, defs = _view()
    # as the browser sends it back: sorted by n descending, "when" hidden, gain moved first
    view = sorted(rows, key=lambda r: -r["c1"])
    state = [{"colId": "c2"}, {"colId": "c0"}, {"colId": "c1"}, {"colId": "c3", "hide": True}]
    with Flask("t").test_request_context("/"):
        frame = _grid.view_frame(view, defs, state)
    assert list(frame.columns) == ["gain", "group", "n", "suppressed"]
    assert frame["group"].tolist() == ["north", "=cmd()", "south"]
    assert str(frame["n"].dtype) == "Int64" and frame["n"].tolist() == [1234, 40, 7]
    assert frame["gain"].tolist()[:2] == [0.123456, -0.5] and pd.isna(frame["gain"][2])
    assert frame["suppressed"].tolist()[2] == SUPPRESSED_LABEL
    assert pd.isna(frame["suppressed"][0])


def test_a_word_a_number_column_shows_is_kept_in_the_view() -> None:
    """A Kaplan–Meier median "not reached" (no number, a word): the export keeps the word."""
    df = pd.DataFrame({"kind": ["a", "b", "c"], "median": [120.0, None, None],
                       "suppressed": [False, False, True]})
    cols = {"kind": ("kind", _ui.text),
            "median": ("median", lambda v: "not reached" if pd.isna(v) else _ui.fmt_int(v))}
    with Flask("t").test_request_context("/"):
        grid = _grid_of(_grid.table(df, cols, "KM"))
        frame = _grid.view_frame(grid.rowData, grid.columnDefs, None)
    assert frame["median"].tolist()[:2] == ["120", "not reached"]
    assert pd.isna(frame["median"][2]) and frame["suppressed"][2] == SUPPRESSED_LABEL


def test_a_forged_view_is_refused_and_a_forged_name_cleaned(monkeypatch) -> None:
    import pytest
    from werkzeug.exceptions import BadRequest

    rows, defs = _view()
    monkeypatch.setattr(_grid._access, "audit", lambda *a, **k: None)
    monkeypatch.setattr(_grid, "ctx", type("C", (), {"triggered_id": {
        "type": _grid.EXPORT, "grid": "../../etc/passwd", "fmt": "csv"}})())
    with Flask("t").test_request_context("/"):
        for bad in ((rows, [1, 2], None), ("rows", defs, None), ([1], defs, None),
                    (rows, [{"headerName": "x"}], None), (rows, defs, "state")):
            with pytest.raises(BadRequest):
                _grid.export_view([1], *bad)
        assert _grid.export_view([1], rows, defs, None)["filename"] == "etcpasswd.csv"


def test_each_export_format_writes_the_view_with_the_exports_writers(monkeypatch) -> None:
    rows, defs = _view()
    monkeypatch.setattr(_grid._access, "audit", lambda *a, **k: None)
    got = {}
    for fmt in ("csv", "xlsx", "parquet"):
        with Flask("t").test_request_context("/"):
            monkeypatch.setattr(_grid, "ctx", type("C", (), {"triggered_id": {
                "type": _grid.EXPORT, "grid": "gains", "fmt": fmt}})())
            sent = _grid.export_view([1], rows, defs, None)
        assert sent["filename"] == f"gains.{fmt}"
        got[fmt] = base64.b64decode(sent["content"])
    csv = got["csv"].decode("utf-8-sig").splitlines()
    assert csv[0] == "group,n,gain,when,suppressed"
    assert csv[3].startswith("'=cmd(),40,-0.5,")  # the formula guard of analytics export
    assert csv[2] == f"south,7,,2026-03-01 00:00:00,{SUPPRESSED_LABEL}"
    xlsx = pd.read_excel(io.BytesIO(got["xlsx"]), sheet_name=None)
    assert xlsx["view"]["n"].tolist() == [1234, 7, 40]
    assert "about" in xlsx
    table = pq.read_table(io.BytesIO(got["parquet"]))
    assert str(table.schema.field("n").type) == "int64"
    assert table.column("gain").to_pylist() == [0.123456, None, -0.5]
    assert table.schema.metadata[b"exchange_impact.table"] == b"gains"
