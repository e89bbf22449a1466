"""Data: the warehouse's data version, loads with accepted/rejected rows, the rejects and the rule
each broke, survey response rates, reliability warnings, and the researcher downloads."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, callback, html

from analytics import queries as q
from pages import _ui

dash.register_page(__name__, path="/data", name="Data", order=5, title="Exchange Impact — Data")

VERSION = "data-version"
LOADS = "data-loads"
REJECTS = "data-rejects"
RATES = "data-rates"
WARNINGS = "data-warnings"
DOWNLOADS = "data-downloads"


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            html.H1("Data", className="h3"),
            html.Div(id=VERSION),
            _ui.section("Loads", html.Div(id=LOADS)),
            _ui.section("Rejected rows", html.Div(id=REJECTS)),
            dbc.Row(
                [
                    dbc.Col(_ui.section("Survey response rates (current filters)",
                                        html.Div(id=RATES)), lg=6),
                    dbc.Col(_ui.section("Reliability warnings", html.Div(id=WARNINGS)), lg=6),
                ]
            ),
            _ui.section("Researcher downloads", html.Div(id=DOWNLOADS)),
        ]
    )


@callback(Output(VERSION, "children"), Output(LOADS, "children"), Output(REJECTS, "children"),
          Input(_ui.FILTERS, "data"))
def loads(_store: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    info = _ui.query(q.data_info)
    version = dbc.Alert(
        [html.Strong(f"Data version {info.get('data_version', '?')}"),
         f", built {info.get('built_at', 'unknown')}. Every figure on every page comes from this "
         "version; a new load becomes visible as a new version."],
        color="light", className="border small",
    )
    batches = _ui.query(q.load_batches)
    loads_table = _ui.table(batches, {
        "batch_id": ("batch", _ui.fmt_int), "source_name": ("file", _ui.text),
        "kind": ("kind", _ui.text), "status": ("status", _ui.text),
        "rows_in": ("rows read", _ui.fmt_int), "rows_accepted": ("accepted", _ui.fmt_int),
        "rows_rejected": ("rejected", _ui.fmt_int), "rows_replaced": ("replaced", _ui.fmt_int),
        "finished_at": ("finished (UTC)", lambda v: _ui.text(v)[:19]),
        "data_version": ("data version", _ui.fmt_int), "message": ("notes", _ui.text),
    }, "Files loaded, newest first", id_="data-loads-table", suppressed_col=None)
    rej = _ui.query(q.rejects)
    rej_table = _ui.table(rej, {
        "batch_id": ("batch", _ui.fmt_int), "file": ("file", _ui.text),
        "row_number": ("row", _ui.fmt_int), "column_name": ("column", _ui.text),
        "rule": ("rule", _ui.text), "value": ("value", _ui.text),
        "message": ("message", _ui.text),
    }, "Rows refused by validation, with the rule each broke (first 500)",
        id_="data-rejects-table", suppressed_col=None)
    return version, loads_table, rej_table


@callback(Output(RATES, "children"), Input(_ui.FILTERS, "data"))
def rates(store: dict[str, Any] | None) -> Any:
    df = _ui.query(q.completion_by_wave, _ui.filters_of(store))
    return _ui.table(df, {
        "wave": ("wave", _ui.text), "responded": ("answered", _ui.fmt_int),
        "invited": ("participants in scope", _ui.fmt_int), "rate": ("response rate", _ui.fmt_pct),
    }, "Participants (incl. comparison group) with any answer in each wave", suppressed_col=None)


@callback(Output(WARNINGS, "children"), Output(DOWNLOADS, "children"),
          Input(_ui.FILTERS, "data"))
def warnings_and_downloads(_store: dict[str, Any] | None) -> tuple[Any, Any]:
    rel = _ui.query(q.reliability)
    if not len(rel):
        warn: Any = _ui.coming("Reliability", "Cronbach's α per scale and wave appears when "
                                              "python -m analytics has run on this version.")
    else:
        low = rel[rel.below_threshold.fillna(False).astype(bool)]
        if not len(low):
            warn = html.P("Every scale reaches α ≥ 0.70 in every wave.")
        else:
            low = low.assign(scale_label=[_ui.scale_label(a, b) for a, b in
                                          zip(low.instrument, low.scale, strict=True)])
            warn = _ui.table(low, {
                "scale_label": ("scale", _ui.text), "wave": ("wave", _ui.text),
                "alpha": ("α", _ui.fmt_num), "n": ("n", _ui.fmt_int),
            }, "Scales below α = 0.70: interpret their results with care", suppressed_col=None)
    status = _ui.query(q.result_table_status)
    status = status.assign(state=["computed" if n else "coming" for n in status.rows])
    downloads = html.Div(
        [
            _ui.coming(
                "Downloads",
                "The researcher files (CSV, XLSX and Parquet with a codebook and the data "
                "version) are written by python -m analytics export; this area will offer the "
                "same files. Tables and their state for this data version:",
            ),
            _ui.table(pd.DataFrame(status), {
                "table": ("table", _ui.text), "state": ("state", _ui.text),
                "rows": ("rows", _ui.fmt_int), "description": ("what it holds", _ui.text),
            }, "Researcher tables", id_="data-downloads-table", suppressed_col=None),
        ]
    )
    return warn, downloads
