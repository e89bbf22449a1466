"""Data: the warehouse's data version, loads with accepted/rejected rows, the rejects and the rule
each broke, survey response rates, reliability warnings, and the researcher downloads."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, State, callback, dcc, html

from analytics import codebook, export, materialise
from analytics import queries as q
from analytics.reliability import ALPHA_THRESHOLD
from pages import _ui

dash.register_page(__name__, path="/data", name="Data", order=5, title="Exchange Impact — Data")

VERSION = "data-version"
LOADS = "data-loads"
REJECTS = "data-rejects"
RATES = "data-rates"
WARNINGS = "data-warnings"
DOWNLOADS = "data-downloads"
DL_TABLE = "data-download-table"
DL_FORMAT = "data-download-format"
DL_BUTTON = "data-download-button"
DL_ALL = "data-download-all"
DL_FILE = "data-download-file"
DL_NOTE = "data-download-note"
DL_STATUS = "data-download-status"



def download_form() -> html.Div:
    """Pick a table and a format: the file is the one `python -m analytics export` writes."""
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col([
                        dbc.Label("Table", html_for=DL_TABLE),
                        dcc.Dropdown(id=DL_TABLE, value="prepost", clearable=False,
                                     options=[{"label": f"{t}: {codebook.EXPORT_TABLES[t].doc}", "value": t}
                                              for t in export.TABLES]),
                    ], md=6),
                    dbc.Col([
                        dbc.Label("Format", html_for=DL_FORMAT),
                        dbc.RadioItems(id=DL_FORMAT, value="csv", inline=True,
                                       options=[{"label": f.upper(), "value": f}
                                                for f in export.FORMATS]),
                    ], md=3),
                    dbc.Col([
                        dbc.Button("Download table", id=DL_BUTTON, color="primary",
                                   className="me-2 mt-4"),
                        dbc.Button("All tables + codebook (zip)", id=DL_ALL,
                                   color="secondary", outline=True, className="mt-4"),
                    ], md=3),
                ],
                className="g-2 align-items-end",
            ),
            html.P(id=DL_NOTE, className="small text-muted mt-2", children=(
                "Same files as python -m analytics export: CSV is UTF-8 with BOM; every file "
                "carries its data version and generation time; groups under the suppression "
                "threshold are shown as suppressed with the reason.")),
            html.Div(id=DL_STATUS, role="status", className="small"),
            dcc.Download(id=DL_FILE),
        ]
    )


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
            _ui.section("Researcher downloads", html.Div([download_form(), html.Div(id=DOWNLOADS)])),
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
        "rows_rejected": ("rejected", _ui.fmt_int), "rows_added": ("added", _ui.fmt_int),
        "rows_changed": ("changed", _ui.fmt_int), "rows_removed": ("removed", _ui.fmt_int),
        "source": ("source", _ui.text),
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
    }, "Participants (incl. comparison group) with any answer in each wave; a wave answered by "
       f"fewer than {q.MIN_CELL} is {q.SUPPRESSED_LABEL}")


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
            warn = html.P(f"Every scale reaches α ≥ {ALPHA_THRESHOLD:.2f} in every wave.")
        else:
            low = low.assign(scale_label=[_ui.scale_label(a, b) for a, b in
                                          zip(low.instrument, low.scale, strict=True)])
            warn = _ui.table(low, {
                "scale_label": ("scale", _ui.text), "wave": ("wave", _ui.text),
                "alpha": ("α", _ui.fmt_num), "n": ("n", _ui.fmt_int),
            }, f"Scales below α = {ALPHA_THRESHOLD:.2f}: interpret their results with care",
                suppressed_col=None)
    status = _ui.query(q.result_table_status)
    status = status.assign(state=["computed" if n else "coming" for n in status.rows])
    downloads = _ui.table(pd.DataFrame(status), {
        "table": ("table", _ui.text), "state": ("state", _ui.text),
        "rows": ("rows", _ui.fmt_int), "description": ("what it holds", _ui.text),
    }, "Researcher tables for this data version", id_="data-downloads-table",
        suppressed_col=None)
    return warn, downloads


@callback(Output(DL_FILE, "data"), Output(DL_STATUS, "children"),
          Input(DL_BUTTON, "n_clicks"), Input(DL_ALL, "n_clicks"),
          State(DL_TABLE, "value"), State(DL_FORMAT, "value"), prevent_initial_call=True)
def download(_one: int | None, _all: int | None, table: str | None, fmt: str | None
             ) -> tuple[Any, Any]:
    fmt = fmt if fmt in export.FORMATS else "csv"
    try:
        if dash.ctx.triggered_id == DL_ALL:
            name, data = _ui.query(export.export_bundle, fmt)
        else:
            name, data = _ui.query(export.export_table, table if table in export.TABLES else
                                   "prepost", fmt)
    except (export.ExportError, materialise.ResultsError) as e:
        # e.g. a table too long for one XLSX sheet: say so where the button is, not a 500
        return dash.no_update, dbc.Alert(f"No file: {e}", color="warning", className="mt-2")
    return dcc.send_bytes(data, name), None
