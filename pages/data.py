"""Data: the warehouse's data version, loads with accepted/rejected rows, the rejects and the rule
each broke, survey response rates, reliability warnings, and the researcher downloads."""

from __future__ import annotations

import uuid
from typing import Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, State, callback, clientside_callback, dcc, html

from analytics import suppression
from analytics.outputs import codebook, downloads, export
from analytics.read import loads, outcomes, overview
from analytics.stats.reliability import ALPHA_THRESHOLD
from etl.errors import EtlError
from pages import _access, _grid, _ui
from pages._i18n import N_, tr


def _title() -> str:
    """The browser tab's title, in the request's language (Dash calls it per page load)."""
    return tr("Exchange Impact — Data")


dash.register_page(__name__, path="/data", name="Data", order=5, title=_title)

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
DL_FILE = "data-download-file"  # {"url", "filename", "token"} of the file to download now
DL_FIRED = "data-download-fired"
DL_NOTE = "data-download-note"
DL_STATUS = "data-download-status"
DL_PENDING = "data-download-pending"  # {"table", "fmt", "polls", "k"} while a file is built
DL_POLL = "data-download-poll"
DL_UNSUPPRESSED = "data-download-unsuppressed"  # ["k0"]: without small-cell suppression
POLL_MS = 1000
POLL_MAX = 900  # stop asking after 900 polls (15 minutes); a click asks again
# The values of the group-reliability table's "by" column (analytics' grouping names).
GROUP_BY_LABELS: dict[str, str] = {"language": N_("language"), "country": N_("country")}



def download_form() -> html.Div:
    """Pick a table and a format: the file is the one `python -m analytics export` writes."""
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col([
                        dbc.Label(tr("Table"), html_for=DL_TABLE),
                        dcc.Dropdown(id=DL_TABLE, value="prepost", clearable=False,
                                     options=[{"label": f"{t}: {tr(codebook.EXPORT_TABLES[t].doc)}",
                                               "value": t}
                                              for t in export.TABLES]),
                    ], md=6),
                    dbc.Col([
                        dbc.Label(tr("Format"), html_for=DL_FORMAT),
                        dbc.RadioItems(id=DL_FORMAT, value="csv", inline=True,
                                       options=[{"label": f.upper(), "value": f}
                                                for f in export.FORMATS]),
                    ], md=3),
                    dbc.Col([
                        dbc.Button(tr("Download table"), id=DL_BUTTON, color="primary",
                                   className="me-2 mt-4"),
                        dbc.Button(tr("All tables + codebook (zip)"), id=DL_ALL,
                                   color="secondary", outline=True, className="mt-4"),
                    ], md=3),
                ],
                className="g-2 align-items-end",
            ),
            _unsuppressed_switch(),
            html.P(id=DL_NOTE, className="small text-muted mt-2", children=tr(
                "Same files as {command}: CSV is UTF-8 with BOM; every file "
                "carries its data version and generation time; groups under the suppression "
                "threshold are shown as suppressed with the reason. Each file is built once "
                "per data version: the first download of a large table takes a moment.").format(
                    command="python -m analytics export")),
            html.Div(id=DL_STATUS, role="status", className="small"),
            dcc.Store(id=DL_FILE),
            dcc.Store(id=DL_FIRED),
            dcc.Store(id=DL_PENDING),
            dcc.Interval(id=DL_POLL, interval=POLL_MS, disabled=True),
        ]
    )


def may_unsuppress() -> bool:
    """Issue 14: unsuppressed tables for the roles with "unsuppressed" (researchers, admins; a
    scoped one's files hold its programs only), or the localhost demo without accounts; never
    for leads or funders."""
    try:
        return _access.can("unsuppressed")
    except RuntimeError:  # no request (the app's validation layout): offer nothing
        return False


def _unsuppressed_switch() -> html.Div:
    """Shown only to those who may use it; the download callback checks again."""
    allowed = may_unsuppress()
    return html.Div(
        dbc.Checklist(id=DL_UNSUPPRESSED, value=[], switch=True, className="small mt-2",
                      options=[{"label": tr("Unsuppressed: groups under {k} included (your "
                                            "role's row-level access; the download is "
                                            "logged)").format(
                                                k=_ui.fmt_int(suppression.MIN_CELL)),
                                "value": "k0"}]),
        style=None if allowed else {"display": "none"}, id=f"{DL_UNSUPPRESSED}-row")


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            html.H1(tr("Data"), className="h3"),
            html.Div(id=VERSION),
            _ui.section(tr("Loads"), html.Div(id=LOADS)),
            _ui.section(tr("Rejected rows"), html.Div(id=REJECTS)),
            dbc.Row(
                [
                    dbc.Col(_ui.section(tr("Survey response rates (current filters)"),
                                        html.Div(id=RATES)), lg=6),
                    dbc.Col(_ui.section(tr("Reliability warnings"), html.Div(id=WARNINGS)),
                            lg=6),
                ]
            ),
            _ui.section(tr("Researcher downloads"),
                        html.Div([download_form(), html.Div(id=DOWNLOADS)])),
        ]
    )


@callback(Output(VERSION, "children"), Output(LOADS, "children"), Output(REJECTS, "children"),
          Input(_ui.FILTERS, "data"))
def load_log(_store: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    info = _ui.query(loads.data_info)
    version = dbc.Alert(
        [html.Strong(tr("Data version {version}").format(version=info.get("data_version", "?"))),
         tr(", built {built}. Every figure on every page comes from this version; a new load "
            "becomes visible as a new version.").format(
                built=info.get("built_at", tr("unknown")))],
        color="light", className="border small",
    )
    batches = _ui.query(loads.load_batches)
    loads_table = _grid.table(batches, {
        "batch_id": (tr("batch"), _ui.fmt_int), "source": (tr("file (its source)"), _ui.text),
        "kind": (tr("kind"), _ui.text), "status": (tr("status"), _ui.text),
        "rows_in": (tr("rows read"), _ui.fmt_int), "rows_accepted": (tr("accepted"), _ui.fmt_int),
        "rows_rejected": (tr("rejected"), _ui.fmt_int), "rows_added": (tr("added"), _ui.fmt_int),
        "rows_changed": (tr("changed"), _ui.fmt_int),
        "rows_removed": (tr("removed"), _ui.fmt_int),
        "finished_at": (tr("finished (UTC)"), lambda v: _ui.text(v)[:19]),
        "data_version": (tr("data version"), _ui.fmt_int), "message": (tr("notes"), _ui.text),
    }, tr("Files loaded, newest first"), id_="data-loads-table", suppressed_col=None)
    rej = _ui.query(loads.rejects)
    rej_table = _grid.table(rej, {
        "batch_id": (tr("batch"), _ui.fmt_int), "file": (tr("file"), _ui.text),
        "row_number": (tr("row"), _ui.fmt_int), "column_name": (tr("column"), _ui.text),
        "rule": (tr("rule"), _ui.text), "value": (tr("value"), _ui.text),
        "message": (tr("message"), _ui.text),
    }, tr("Rows refused by validation, with the rule each broke (first 500)"),
        id_="data-rejects-table", suppressed_col=None)
    return version, loads_table, rej_table


@callback(Output(RATES, "children"), Input(_ui.FILTERS, "data"))
def rates(store: dict[str, Any] | None) -> Any:
    df = _ui.query(overview.completion_by_wave, _ui.filters_of(store))
    return _grid.table(df, {
        "wave": (tr("wave"), _ui.text), "responded": (tr("answered"), _ui.fmt_int),
        "invited": (tr("participants in scope"), _ui.fmt_int),
        "rate": (tr("response rate"), _ui.fmt_pct),
    }, tr("Participants (incl. comparison group) with any answer in each wave; a wave answered "
          "by fewer than {k} is {suppressed}").format(k=_ui.fmt_int(suppression.MIN_CELL),
                                                     suppressed=_ui.suppressed_label()))


@callback(Output(WARNINGS, "children"), Output(DOWNLOADS, "children"),
          Input(_ui.FILTERS, "data"))
def warnings_and_downloads(_store: dict[str, Any] | None) -> tuple[Any, Any]:
    scope, _round_to = _access.download_audience()
    if scope is not None:
        return _scoped_warnings_and_downloads(scope)
    rel = _ui.query(outcomes.reliability)
    if not len(rel):
        warn: Any = _ui.coming(tr("Reliability"), tr(
            "Cronbach's α per scale and wave appears when {command} has run on this "
            "version.").format(command="python -m analytics"))
    else:
        low = rel[rel.below_threshold.fillna(False).astype(bool)]
        if not len(low):
            warn = html.P(tr("Every scale reaches α ≥ {threshold} in every wave.").format(
                threshold=_ui.fmt_num(ALPHA_THRESHOLD, 2)))
        else:
            low = low.assign(scale_label=[_ui.scale_label(a, b) for a, b in
                                          zip(low.instrument, low.scale, strict=True)])
            warn = _grid.table(low, {
                "scale_label": (tr("scale"), _ui.text), "wave": (tr("wave"), _ui.text),
                "alpha": ("α", _ui.fmt_num), "n": ("n", _ui.fmt_int),
            }, tr("Scales below α = {threshold}: interpret their results with care").format(
                threshold=_ui.fmt_num(ALPHA_THRESHOLD, 2)),
                suppressed_col=None)
    warn = html.Div([warn, _group_warnings()])
    status = _ui.query(loads.result_table_status)
    status = status.assign(state=[tr("computed") if n else tr("coming") for n in status.rows],
                           description=[tr(d) for d in status.description])
    downloads = _grid.table(pd.DataFrame(status), {
        "table": (tr("table"), _ui.text), "state": (tr("state"), _ui.text),
        "rows": (tr("rows"), _ui.fmt_int), "description": (tr("what it holds"), _ui.text),
    }, tr("Researcher tables for this data version"), id_="data-downloads-table",
        suppressed_col=None)
    return warn, downloads


def _scoped_warnings_and_downloads(scope: export.Scope) -> tuple[Any, Any]:
    """A scoped account: the reliability warnings are of every program (the scope note); its
    downloads are computed from its programs when asked for, so no row counts are known yet."""
    warn = html.P(tr(_access.SCOPE_NOTE), className="text-body-secondary scope-note")
    status = _ui.query(loads.result_table_status)
    status = status.assign(description=[tr(d) for d in status.description])
    tables = _grid.table(pd.DataFrame(status), {
        "table": (tr("table"), _ui.text), "description": (tr("what it holds"), _ui.text),
    }, tr("Tables for {scope}: each is computed from these participants only when you first "
          "download it (this takes a moment), then kept for this data version").format(
              scope=_describe(scope)),
        id_="data-downloads-table", suppressed_col=None)
    return warn, tables


def _describe(scope: export.Scope) -> str:
    """`scope.describe()` in the request's language: its programs and clusters (data values,
    as they are), or every program."""
    parts = [label.format(names=", ".join(vals)) for label, vals in
             ((tr("programs {names}"), scope.programs), (tr("clusters {names}"), scope.clusters))
             if vals]
    return "; ".join(parts) or tr("every program")


def _group_by_label(v: Any) -> str:
    text = _ui.text(v)
    return tr(GROUP_BY_LABELS[text]) if text in GROUP_BY_LABELS else text


def _group_warnings() -> Any:
    """Languages and countries whose α or ω is below the threshold in some wave, where they
    have enough respondents to say so (not small_n, not suppressed)."""
    parts = [_ui.query(outcomes.reliability_groups, by, None) for by in ("language", "country")]
    rel = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(
        len(p) for p in parts) else pd.DataFrame()
    if not len(rel):
        return None
    # A grouping with a suppressed row comes with its flags as float (NaN where blanked, the
    # read layer's convention) and one without as bool: concatenated, they are objects.
    below = rel.below_threshold.astype("float64").fillna(0).to_numpy(bool)
    small = rel.small_n.astype("float64").fillna(1).to_numpy(bool)
    low = rel[below & ~small & ~rel.suppressed.astype(bool).to_numpy(bool)]
    if not len(low):
        return html.P(tr("Every language and country with enough respondents reaches α and ω ≥ "
                         "{threshold} in every wave.").format(
                             threshold=_ui.fmt_num(ALPHA_THRESHOLD, 2)),
                      id="data-group-reliability")
    low = low.assign(scale_label=[_ui.scale_label(a, b) for a, b in
                                  zip(low.instrument, low.scale, strict=True)])
    return _grid.table(low, {
        "scale_label": (tr("scale"), _ui.text), "group_by": (tr("by"), _group_by_label),
        "group": (tr("language / country"), _ui.text), "wave": (tr("wave"), _ui.text),
        "alpha": ("α", _ui.fmt_num), "omega": ("ω", _ui.fmt_num), "n": ("n", _ui.fmt_int),
    }, tr("Languages and countries where α or McDonald's ω is below {threshold} (with enough "
          "respondents): that group's results on the scale are less reliable").format(
              threshold=_ui.fmt_num(ALPHA_THRESHOLD, 2)),
        id_="data-group-reliability", suppressed_col=None)


@callback(Output(DL_FILE, "data"), Output(DL_STATUS, "children"), Output(DL_PENDING, "data"),
          Output(DL_POLL, "disabled"),
          Input(DL_BUTTON, "n_clicks"), Input(DL_ALL, "n_clicks"), Input(DL_POLL, "n_intervals"),
          State(DL_TABLE, "value"), State(DL_FORMAT, "value"), State(DL_PENDING, "data"),
          State(DL_UNSUPPRESSED, "value"), prevent_initial_call=True)
def download(_one: int | None, _all: int | None, _tick: int | None, table: Any, fmt: Any,
             pending: Any, unsuppressed: Any = None) -> tuple[Any, Any, Any, bool]:
    """A click asks for the file; while it is being built (`analytics.outputs.downloads`, in its own
    process) the page asks again every second. When it is there the browser fetches it from
    its own URL (`_ui.send_download`, streamed). No request builds anything, so none holds a
    server worker for more than a moment."""
    trigger = dash.ctx.triggered_id
    polls = 0
    if trigger == DL_POLL:
        if not isinstance(pending, dict):
            return dash.no_update, dash.no_update, None, True
        table, fmt, polls = pending.get("table"), pending.get("fmt"), pending.get("polls")
        k = pending.get("k", suppression.MIN_CELL)
        if (table is not None and table not in export.TABLES or not isinstance(polls, int)
                or k not in (0, suppression.MIN_CELL) or isinstance(k, bool)):
            raise _ui.bad_input(f"{DL_PENDING} is not what this page stores")
        if polls >= POLL_MAX:
            return dash.no_update, _no_file(tr("still being built after 15 minutes; the server "
                                               "log may say why. Click again to ask anew.")), \
                None, True
    elif trigger == DL_ALL:
        table = None
    else:
        table = _ui.choice(table, export.TABLES, "prepost")
    if trigger != DL_POLL:
        if unsuppressed not in (None, [], ["k0"]):
            raise _ui.bad_input(f"{DL_UNSUPPRESSED} is not what this page sends")
        k = 0 if unsuppressed == ["k0"] else suppression.MIN_CELL
    if k == 0 and not may_unsuppress():
        return dash.no_update, _no_file(tr("unsuppressed tables are for researchers and "
                                           "admins")), None, True
    fmt = _ui.choice(fmt, export.FORMATS, "csv")
    if (table is None or table in _access.ROW_LEVEL_TABLES) and not _access.can("rowlevel"):
        return dash.no_update, _no_file(tr("row-level tables (and the zip, which holds them) "
                                           "are for researchers and admins")), None, True
    artefact = downloads.Artefact(table, fmt)
    # the caller's programs only, and a funder's counts rounded: a file (and folder) of its own
    scope, round_to = _access.download_audience()
    try:
        status = _ui.query(downloads.request, _ui.reader().warehouse, artefact, min_cell=k,
                           retry=trigger != DL_POLL, scope=scope, round_to=round_to)
    except (export.ExportError, EtlError, OSError) as e:  # EtlError: results missing
        return dash.no_update, _no_file(str(e)), None, True
    if status.path is not None:
        # a new token each time: the same file asked for twice is downloaded twice
        ready = {"url": _ui.download_url(status.path), "filename": status.filename,
                 "token": uuid.uuid4().hex}
        return ready, None, None, True
    if status.error is not None:
        # e.g. a table too long for one XLSX sheet: say so where the button is, not a 500
        return dash.no_update, _no_file(status.error), None, True
    note = dbc.Alert(tr("Preparing {filename}: built once per data version, it downloads by "
                        "itself when ready.").format(filename=status.filename),
                     color="info", className="mt-2 py-1 px-2",
                     id="data-download-preparing")
    return dash.no_update, note, {"table": table, "fmt": fmt, "polls": polls + 1, "k": k}, False


def _no_file(reason: str) -> dbc.Alert:
    return dbc.Alert(tr("No file: {reason}").format(reason=reason), color="warning",
                     className="mt-2")


# The browser downloads the file from its URL (an <a download> click): the server streams it
# and the browser's download manager shows the progress; nothing passes through Dash's JSON.
clientside_callback(
    _ui.CLICK_DOWNLOAD_JS,
    Output(DL_FIRED, "data"),
    Input(DL_FILE, "data"),
    prevent_initial_call=True,
)
