"""Research tables as grids (dash-ag-grid, AG Grid Community): a researcher sorts, filters and
resizes the columns, copies the view, and exports it in the formats of `analytics export`.

One builder, `table`, serves every table of the pages. Its cells keep two values: the value
(a number, sorted and filtered as a number; a date as its ISO text; any other column as the
text shown) and the text shown, formatted for the request's language (`<field>_t`, written by
`valueFormatter` in assets/grid.js). A cell a suppressed row leaves blank shows the
suppression label as text: it sorts as an empty value, never as a zero.

Copy (assets/grid.js) puts the grid's current view, its rows after filters and sort in the
columns' current order, on the clipboard as tab-separated text, as shown. Export
(`export_view`) writes the same view with the writers of `analytics.outputs.export`: numbers
as numbers, unrounded; a suppressed cell empty, with the row's suppression label in a
`suppressed` column (the convention of the result tables' exports).

AG Grid's own words (its filter menus and screen-reader texts) come from the catalogue
(`LOCALE_TEXT`). Its styles come from its JS theming (no stylesheet from a CDN).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dash_ag_grid as dag
import numpy as np
import pandas as pd
from dash import ALL, MATCH, Input, Output, State, callback, ctx, dcc, html, no_update

from analytics import suppression
from analytics.outputs import export
from etl import schema
from pages import _access, _i18n, _ui
from pages._i18n import N_, tr

__all__ = ["GRID", "MAX_ROWS", "LOCALE_TEXT", "table", "view_frame", "export_view"]

GRID = "ei-grid"  # every grid's id is {"type": GRID, "grid": name}
EXPORT, DOWNLOAD = "ei-grid-export", "ei-grid-download"
FORMAT_NAMES = {"csv": "CSV", "xlsx": "XLSX", "parquet": "Parquet"}
MAX_ROWS = 2000  # beyond, the grid says so and points to the Data page's full tables
AUTO_HEIGHT_ROWS = 25  # up to this many rows the grid is as tall as its rows, else it scrolls
TEXT_WIDTH = 460  # px: the widest a text column grows before its text wraps
SUPPRESSED = "_s"  # row field: the row is suppressed (its blank cells show the label)

# AG Grid's texts a user of these grids meets (filters, sorting, screen-reader instructions).
LOCALE_TEXT: dict[str, str] = {
    "applyFilter": N_("Apply"), "clearFilter": N_("Clear"), "resetFilter": N_("Reset"),
    "cancelFilter": N_("Cancel"), "textFilter": N_("Text filter"),
    "numberFilter": N_("Number filter"), "filterOoo": N_("Filter..."),
    "empty": N_("Choose one"), "equals": N_("Equals"), "notEqual": N_("Does not equal"),
    "lessThan": N_("Less than"), "greaterThan": N_("Greater than"), "inRange": N_("Between"),
    "inRangeStart": N_("From"), "inRangeEnd": N_("To"),
    "lessThanOrEqual": N_("Less than or equal to"),
    "greaterThanOrEqual": N_("Greater than or equal to"), "contains": N_("Contains"),
    "notContains": N_("Does not contain"), "startsWith": N_("Begins with"),
    "endsWith": N_("Ends with"), "blank": N_("Blank"), "notBlank": N_("Not blank"),
    "andCondition": N_("AND"), "orCondition": N_("OR"),
    "noRowsToShow": N_("No rows to show"), "noMatchingRows": N_("No matching rows"),
    "loadingOoo": N_("Loading..."),
    "ariaColumnFiltered": N_("Column filtered"),
    "ariaFilterColumn": N_("Press CTRL ENTER to open filter"),
    "ariaFilterFromValue": N_("Filter from value"), "ariaFilterInput": N_("Filter input"),
    "ariaFilterMenuOpen": N_("Open filter menu"), "ariaFilterToValue": N_("Filter to value"),
    "ariaFilterValue": N_("Filter value"), "ariaFilteringOperator": N_("Filtering operator"),
    "ariaLabelColumnFilter": N_("Column filter"), "ariaLabelColumnMenu": N_("Column menu"),
    "ariaMenuColumn": N_("Press ALT DOWN to open column menu"),
    "ariaSortableColumn": N_("Press ENTER to sort"),
    "ariaChecked": N_("checked"), "ariaUnchecked": N_("unchecked"),
    "invalidNumber": N_("Invalid number"),
}
WORDS: dict[str, str] = {
    "copied": N_("Copied {n} rows."), "copy_failed": N_("Copy failed: select the cells and "
                                                         "press Ctrl+C."),
}


def _locale_text() -> dict[str, str] | None:
    if _i18n.current() == _i18n.DEFAULT:
        return None
    text = {k: tr(v) for k, v in LOCALE_TEXT.items()}
    marks = _i18n.fmt_num(1234.5, 1)  # "1,234.5", "1.234,5", "1 234,5"
    text["thousandSeparator"], text["decimalSeparator"] = marks[1], marks[-2]
    return text


def _name(id_: str | None, caption: str) -> str:
    return id_ or "grid-" + hashlib.sha1(caption.encode()).hexdigest()[:10]


def _kind(s: pd.Series | None) -> str:
    """How a column sorts and filters: "number", "date" (ISO text) or "text" (as shown)."""
    if s is None or pd.api.types.is_bool_dtype(s.dtype):
        return "text"
    if pd.api.types.is_numeric_dtype(s.dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return "date"
    return "text"


def _col_def(field: str, label: str, kind: str, first: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "field": field, "headerName": label,
        "valueFormatter": {"function": "eiGridText(params)"},
        "cellDataType": "number" if kind == "number" else "text",
        "filter": "agNumberColumnFilter" if kind == "number" else "agTextColumnFilter",
        "headerTooltip": label,
    }
    if kind == "date":  # sorted by its ISO text, filtered by the text shown
        d["filterValueGetter"] = {"function": "eiGridFilterText(params)"}
    if kind == "number":
        d["type"] = "rightAligned"
    else:  # a long text (a verdict, a note) wraps within a readable width
        d.update(wrapText=True, autoHeight=True, maxWidth=TEXT_WIDTH)
    if not first:
        d["cellClassRules"] = {"ei-suppressed-cell": {"function": "eiGridSuppressed(params)"}}
    return d


def table(df: pd.DataFrame | None, columns: dict[str, tuple[str, Callable[[Any], str]]],
          caption: str, *, id_: str | None = None, max_rows: int = MAX_ROWS,
          suppressed_col: str | None = "suppressed") -> html.Div:
    """A research grid of `df`'s `columns` ({column: (header, formatter)}), captioned. Every
    cell shows text (user names are never HTML); suppressed rows show the suppression label in
    their blank cells, and so do the cells a row blanked for a subset under k (its
    `subset_suppressed` flag, e.g. 3 drop-outs). `id_` names the box (its caption, grid and
    tools) and the grid within it."""
    if df is None or not len(df):
        return html.P(tr("{caption}: nothing for the current filters.").format(caption=caption),
                      className="text-body-secondary", **({"id": id_} if id_ else {}))
    name = _name(id_, caption)
    shown = df.head(max_rows).reset_index(drop=True)
    sup = pd.Series(False, index=shown.index)
    for flag in ([suppressed_col, "subset_suppressed"] if suppressed_col else []):
        if flag in shown.columns:
            sup |= shown[flag].map(bool).fillna(False).astype(bool)
    sup_rows = sup.to_numpy(bool)
    label = _ui.suppressed_label()
    loc = _ui.localise if _i18n.current() != _i18n.DEFAULT else None
    data: dict[str, Any] = {}
    defs = []
    for i, (col, (header, fmt)) in enumerate(columns.items()):
        field = f"c{i}"
        src = shown[col] if col in shown.columns else None
        kind = _kind(src)
        vals = src.tolist() if src is not None else [None] * len(shown)
        missing = (src.isna().to_numpy(bool) if src is not None
                   else np.ones(len(shown), bool))
        blank = sup_rows & missing if i > 0 else np.zeros(len(shown), bool)
        # Only text columns can hold a label the analytics layer wrote (numbers are formatted
        # for the language already), and in English every such label is its own text.
        loc_col = loc if fmt is _ui.text else None
        texts = [label if b else (loc_col(fmt(v)) if loc_col else fmt(v))
                 for v, b in zip(vals, blank, strict=True)]
        if kind == "number":
            raw = pd.to_numeric(src, errors="coerce").astype("float64").to_numpy()
            values = [None if not np.isfinite(v) else (int(v) if float(v).is_integer()
                                                       and abs(v) < 2**53 else float(v))
                      for v in raw.tolist()]
        elif kind == "date":
            values = [None if pd.isna(v) else pd.Timestamp(v).isoformat() for v in vals]
        else:
            values = [None if b else t for t, b in zip(texts, blank, strict=True)]
        data[field], data[f"{field}_t"] = values, texts
        defs.append(_col_def(field, header, kind, i == 0))
    data[SUPPRESSED] = sup_rows.tolist()
    rows = [dict(zip(data, r, strict=True)) for r in zip(*data.values(), strict=True)]
    auto = len(rows) <= AUTO_HEIGHT_ROWS
    caption_id = f"{name}-caption"
    grid = dag.AgGrid(
        id={"type": GRID, "grid": name},
        rowData=rows, columnDefs=defs,
        defaultColDef={"sortable": True, "resizable": True, "filter": True,
                       "floatingFilter": True, "minWidth": 112, "wrapHeaderText": True,
                       "autoHeaderHeight": True, "suppressHeaderMenuButton": False},
        columnSize="autoSize",
        columnSizeOptions={"skipHeader": False},
        dashGridOptions={
            "domLayout": "autoHeight" if auto else "normal",
            "enableCellTextSelection": True, "ensureDomOrder": True,
            "suppressColumnVirtualisation": True,
            "tooltipShowDelay": 500,
            # Tab leaves the grid instead of walking every cell (AG Grid's default): inside,
            # the arrow keys move between headers, filters and cells.
            "tabToNextCell": {"function": "eiGridTabOut(params)"},
            "tabToNextHeader": {"function": "eiGridTabOut(params)"},
            **({"localeText": lt} if (lt := _locale_text()) else {}),
        },
        className="ei-grid",
        style={"height": None if auto else "480px", "width": "100%"},
    )
    tools = html.Div(
        [
            html.Button(tr("Copy"), type="button", className="btn btn-outline-secondary btn-sm "
                        "ei-grid-copy", **{"data-grid": name,
                                           "aria-describedby": f"{name}-status"}),
            *_export_tools(name, caption),
            html.Span(id=f"{name}-status", role="status", className="small ms-2 ei-grid-status",
                      **{"data-words": _words()}),
        ],
        className="d-flex flex-wrap align-items-center gap-2 mt-1 mb-2 ei-grid-tools",
    )
    extra = (html.P(tr("Showing the first {shown} of {total} rows.").format(
                 shown=_ui.fmt_int(max_rows), total=_ui.fmt_int(len(df))), className="small")
             if len(df) > max_rows else None)
    return html.Div(
        [html.Div(caption, id=caption_id, className="small fw-semibold ei-grid-caption"),
         html.Div(grid, role="region", **{"aria-labelledby": caption_id}), tools, extra],
        className="ei-grid-box", **({"id": id_} if id_ else {}),
    )


def _words() -> str:
    import json

    return json.dumps({k: tr(v) for k, v in WORDS.items()})


def _may_export() -> bool:
    """`_access.can("export")`, asked once per request (it reads the accounts file)."""
    from flask import g, has_request_context

    if not has_request_context():
        return _access.can("export")
    if "ei_may_export" not in g:
        g.ei_may_export = _access.can("export")
    return bool(g.ei_may_export)


def _export_tools(name: str, caption: str) -> list[Any]:
    """The export's format and button, for a role that may export (the callback checks
    again: `_access.CALLBACK_RULES`)."""
    if not _may_export():
        return []
    label_id = f"{name}-export-label"
    return [
        html.Div(
            [html.Span(tr("Export this view:"), id=label_id, className="small"),
             *[html.Button(FORMAT_NAMES[f], id={"type": EXPORT, "grid": name, "fmt": f},
                           type="button", className="btn btn-outline-primary btn-sm")
               for f in export.FORMATS]],
            role="group", className="d-flex align-items-center gap-1",
            **{"aria-labelledby": label_id}),
        dcc.Download(id={"type": DOWNLOAD, "grid": name}),
    ]


_NO_VALUE = {None, "", "—", "–"}  # how the formatters show a missing value


def view_frame(rows: list[dict[str, Any]] | None, column_defs: list[dict[str, Any]],
               column_state: list[dict[str, Any]] | None) -> pd.DataFrame:
    """The grid's current view as a table: its rows as filtered and sorted (AG Grid's
    `virtualRowData`), its visible columns in their current order (`columnState`), headed as
    shown. Numbers stay numbers (unrounded), unless the column shows a word where it has no
    number ("not reached"): then it is the text shown, so that no word is lost; other cells are
    their text as shown; a suppressed row's blank cells are empty and its label is in a last
    `suppressed` column."""
    defs = {d["field"]: d for d in column_defs}
    order = ([s["colId"] for s in column_state if s.get("colId") in defs and not s.get("hide")]
             if column_state else list(defs))
    rows = rows or []
    out: dict[str, pd.Series] = {}
    for field in order:
        d = defs[field]
        header = str(d.get("headerName") or field)
        words = {r.get(f"{field}_t") for r in rows
                 if r.get(field) is None and not r.get(SUPPRESSED)} - _NO_VALUE
        if d.get("cellDataType") == "number" and not words:
            s = pd.Series([r.get(field) for r in rows], dtype="float64")
            if s.dropna().map(float.is_integer).all():
                s = s.round().astype("Int64")
        elif d.get("cellDataType") == "number":
            # a number column that shows a word where it has no number ("not reached"): the
            # export keeps the word, so the column is the text shown
            s = pd.Series([None if r.get(field) is None and (r.get(SUPPRESSED) or r.get(
                f"{field}_t") in _NO_VALUE) else r.get(f"{field}_t") for r in rows],
                dtype="string")
        else:
            s = pd.Series([None if r.get(field) is None and r.get(SUPPRESSED)
                           else r.get(f"{field}_t") for r in rows], dtype="string")
        while header in out:  # two columns headed alike stay two columns
            header += " "
        out[header] = s
    frame = pd.DataFrame(out, index=range(len(rows)))
    frame["suppressed"] = pd.Series([_ui.suppressed_label() if r.get(SUPPRESSED) else None
                                     for r in rows], dtype="string")
    return frame


def _columns(frame: pd.DataFrame) -> list[schema.Column]:
    types = {"Int64": "BIGINT", "float64": "DOUBLE"}
    return [schema.Column(str(c), types.get(str(frame[c].dtype), "VARCHAR"))
            for c in frame.columns]


def _check_view(rows: Any, column_defs: Any, column_state: Any) -> None:
    """A view of the shape the grid sends, else 400 (a forged request, never a 500)."""
    def dicts(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, dict) for x in v)

    if not dicts(column_defs) or not all(isinstance(d.get("field"), str) for d in column_defs):
        raise _ui.bad_input("a grid's columns must be a list of column definitions")
    if rows is not None and not dicts(rows):
        raise _ui.bad_input("a grid's rows must be a list of rows")
    if column_state is not None and not dicts(column_state):
        raise _ui.bad_input("a grid's column state must be a list")


@callback(
    Output({"type": DOWNLOAD, "grid": MATCH}, "data"),
    Input({"type": EXPORT, "grid": MATCH, "fmt": ALL}, "n_clicks"),
    State({"type": GRID, "grid": MATCH}, "virtualRowData"),
    State({"type": GRID, "grid": MATCH}, "columnDefs"),
    State({"type": GRID, "grid": MATCH}, "columnState"),
    prevent_initial_call=True,
)
def export_view(clicks: list[int | None], rows: list[dict[str, Any]] | None,
                column_defs: list[dict[str, Any]] | None,
                column_state: list[dict[str, Any]] | None) -> Any:
    """The grid's current view as a file in the format whose button was pressed. It writes
    back what the browser shows (the rows it was sent, as filtered and sorted there): it reads
    nothing else."""
    which = ctx.triggered_id
    if not any(clicks or []) or not column_defs or not isinstance(which, dict):
        return no_update
    fmt = which.get("fmt") if which.get("fmt") in export.FORMATS else export.FORMATS[0]
    _check_view(rows, column_defs, column_state)
    frame = view_frame(rows, column_defs, column_state)
    # the file's name comes from the page's id: letters, digits, - and _ only
    name = re.sub(r"[^A-Za-z0-9_-]", "", str(which.get("grid", ""))) or "table"
    about = {"table": name, "view": "the dashboard grid's rows after its filters and sort",
             "rows": len(frame), "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
             "min_cell": suppression.MIN_CELL, "language": _i18n.current()}
    if fmt == "csv":
        content = export.to_csv_bytes(frame)
    elif fmt == "xlsx":
        content = export.to_xlsx_bytes(frame, sheet="view", about=about)
    else:
        content = export.to_parquet_bytes(frame, _columns(frame), about=about)
    _access.audit("export view", f"{name}.{fmt}")
    return dcc.send_bytes(content, f"{name}.{fmt}")
