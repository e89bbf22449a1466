"""What every page shares: the warehouse reader, component ids of the app shell, the filter bar and
its URL sync, the palette and small figure/table helpers, and the two server hooks app.py
installs (`refuse_malformed_callbacks`, `send_download`).

Callback input: what a page did not send is refused or dropped here, in one place. A malformed
request or a value of the wrong type is a 400 (`bad_input`), never a 500; filter values the data
does not have are dropped by `filters_of` (through `analytics.read.filters.known_filters`) before
they reach a query or its cache.

The file starts with `_` so that Dash Pages does not register it as a page; `app.py` imports it,
which registers its callbacks.

URL ↔ filters: the filter bar lives in the app shell, outside `dash.page_container`, so changing a
filter does not rebuild the page. One callback (`sync_filters`) turns the URL's query string into
control values on load and on back/forward, and the control values into the `FILTERS` store on
every change; a clientside callback then writes the canonical query string into the address bar
with `history.replaceState` (which no dcc.Location listens to, so the page is not re-rendered) and
the navbar links carry it, so a copied link or a page switch keeps the view.
"""

from __future__ import annotations

import html as html_text
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dash_bootstrap_components as dbc
import pandas as pd
from dash import ALL, Input, Output, State, callback, clientside_callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate
from werkzeug.exceptions import BadRequest

from analytics import suppression
from analytics.read import filters, loads, outcomes, overview, sql
from analytics.read.cache import bound_version
from etl.errors import WarehouseError
from etl.warehouse import DEFAULT_WAREHOUSE, Reader
from pages import _i18n
from pages._i18n import N_, tr

T = TypeVar("T")

# ---- ids of the app shell ---------------------------------------------------------------------
URL = "url"
FILTERS = "filters-store"  # {"filters": Filters.to_dict(), "query": "?…"}
NOTES = "filter-notes"
DATA_STATUS = "data-status"
CLEAR = "filter-clear"
URL_WRITER = "url-writer"
VIEW = "view-store"  # {"path": page path, "query": "by=country"}: the page's own view keys
NAV = "nav-link"  # {"type": NAV, "index": page path}
LANG_LINK = "lang-link"  # {"type": LANG_LINK, "index": language code}: app.language_menu
FILTER_FIELDS: tuple[tuple[str, str], ...] = (
    ("program", N_("Program")),
    ("cluster", N_("Cluster")),
    ("country", N_("Country")),
    ("exchange", N_("Exchange")),
    ("term", N_("Cohort / term")),
    ("role", N_("Role")),
    ("modality", N_("Modality")),
    ("setting", N_("Setting")),
)
DATES = "filter-dates"
# The "PDF snapshot" button (reports.jobs): the job of this browser tab, polled while it runs.
SNAP_BUTTON = "snapshot-button"
SNAP_JOB = "snapshot-job"  # {"job": id, "polls": n} while a job runs, else None
SNAP_POLL = "snapshot-poll"
SNAP_STATUS = "snapshot-status"
SNAP_FILE = "snapshot-file"  # {"url", "filename", "token"} of the report to download now
SNAP_FIRED = "snapshot-fired"
SNAP_POLL_MS = 500
SNAP_POLL_MAX = 1200  # ten minutes of polls; a report takes seconds


def fid(name: str) -> str:
    """Component id of a filter dropdown."""
    return f"filter-{name}"


# ---- palette: Okabe & Ito (2008), distinguishable with the common colour-vision deficiencies --
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
             "#000000"]
_SYMBOLS = ("circle", "square", "diamond", "triangle-up")
_DASHES = ("solid", "dash", "dot", "dashdot")


def series_marker(i: int, size: int = 9) -> dict[str, Any]:
    """Marker of the i-th series: the eight Okabe–Ito colours, then the same with a new shape,
    so a ninth series never looks like the first."""
    return {"size": size, "color": OKABE_ITO[i % len(OKABE_ITO)],
            "symbol": _SYMBOLS[i // len(OKABE_ITO) % len(_SYMBOLS)]}


def series_line(i: int) -> dict[str, Any]:
    """Line of the i-th series: the Okabe–Ito colours, then the same with a new dash pattern."""
    return {"color": OKABE_ITO[i % len(OKABE_ITO)],
            "dash": _DASHES[i // len(OKABE_ITO) % len(_DASHES)]}


SEQUENTIAL = "Cividis"  # perceptually uniform and colour-blind safe
SUPPRESSED_GREY = "#BBBBBB"

# ---- the warehouse ----------------------------------------------------------------------------
_reader: Reader | None = None


def reader() -> Reader:
    """The per-process reader; created on first use (after a gunicorn fork), never at import."""
    global _reader
    path = warehouse_path()
    if _reader is None or _reader.warehouse != path:
        if _reader is not None:
            _reader.close()
        _reader = Reader(path, threads=reader_threads())
    return _reader


def warehouse_path() -> Path:
    """The warehouse the dashboard reads: EXCHANGE_IMPACT_WAREHOUSE, else data/warehouse.duckdb."""
    return Path(os.environ.get("EXCHANGE_IMPACT_WAREHOUSE", str(DEFAULT_WAREHOUSE)))


def reader_threads() -> int | None:
    """DuckDB threads per server process: EXCHANGE_IMPACT_READER_THREADS (0 = DuckDB's default,
    one per core). Default 1: gunicorn runs several sync workers, each answering one request
    at a time from small rollups, so a thread pool per worker only oversubscribes the cores."""
    raw = os.environ.get("EXCHANGE_IMPACT_READER_THREADS", "1").strip()
    try:
        n = int(raw)
    except ValueError:
        return 1
    return n if n > 0 else None


def query(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one `analytics.read` query function on a fresh cursor (one per request).

    Without a warehouse, or with one whose data version lacks its derived tables
    (`analytics.read.sql.DerivedTablesMissing`, a WarehouseError), there is nothing to draw:
    figures keep their placeholder (PreventUpdate) and the filter bar says what to do (see
    `sync_filters`)."""
    try:
        cur, facts = reader().cursor_and_facts()
    except WarehouseError:
        raise PreventUpdate from None
    try:
        with bound_version(cur, facts):
            return fn(cur, *args, **kwargs)
    except WarehouseError:
        raise PreventUpdate from None
    finally:
        cur.close()


def choice(value: Any, allowed: Any, default: str) -> str:
    """A radio or dropdown value if it is one of `allowed`, else `default`: a cleared control
    sends None and a hand-made request anything, and neither may turn into a 500."""
    return value if isinstance(value, str) and value in allowed else default


def bad_input(message: str) -> BadRequest:
    """The error for a callback input no page sends (a forged or broken request): raised from a
    callback, Flask answers 400 with the message, never a 500 with a traceback."""
    return BadRequest(f"malformed callback input: {message}")


# Properties that hold a URL or a part of it: a browser always sends them as text.
_URL_PROPS = frozenset({"pathname", "search", "hash", "href"})


def refuse_malformed_callbacks() -> None:
    """Flask `before_request` hook (app.py): a POST to Dash's callback endpoint that no page
    could send — not a JSON object, an output no server callback has, inputs that are not
    {id, property, value} items, a URL part that is not a text — is answered 400 here, before
    Dash's dispatcher turns it into a KeyError or TypeError and a 500. The values themselves
    are checked by the callbacks (`filters_of`, `choice`, `clicked`)."""
    import dash
    from flask import request

    if request.method != "POST" or not request.path.endswith("/_dash-update-component"):
        return
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("output"), str):
        raise bad_input("the body must be a JSON object with an 'output'")
    known = dash.get_app().callback_map.get(body["output"])
    if not isinstance(known, dict) or "callback" not in known:
        raise bad_input(f"no callback has the output {body['output'][:200]!r}")
    for slot in ("inputs", "state", "outputs"):
        items = body.get(slot, [])
        items = [items] if isinstance(items, dict) else items
        if not isinstance(items, list):
            raise bad_input(f"'{slot}' must be a list")
        for item in _flat(items):
            if not isinstance(item, dict) or "id" not in item or "property" not in item:
                raise bad_input(f"every item of '{slot}' must be an object with id and property")
            value = item.get("value")
            if item["property"] in _URL_PROPS and not isinstance(value, str | None):
                raise bad_input(f"{item['id']}.{item['property']} must be a text")
            if item["property"] == "pathname" and value is not None and value[:1] != "/":
                raise bad_input(f"{item['id']}.pathname must start with '/'")


DOWNLOAD_ROUTE = "/_downloads/<key>/<name>"


def download_url(path: Path) -> str:
    """The URL `send_download` answers for a file built by `analytics.outputs.downloads` or a
    PDF snapshot of `reports.jobs` (its folder is the job's id)."""
    return f"/_downloads/{path.parent.name}/{path.name}"


def send_download(key: str, name: str) -> Any:
    """Flask view (app.py) for the Data page's download files and the PDF snapshots: streamed
    from their folder beside the warehouse (gunicorn hands the file to sendfile), so even a
    large file costs a worker no memory and no encoding, unlike a base64 copy inside a
    callback's JSON answer."""
    from flask import abort, send_file

    from analytics.outputs import downloads
    from reports import jobs

    warehouse = warehouse_path()
    path = downloads.cached_file(warehouse, key, name) or jobs.result_file(warehouse, key, name)
    if path is None:
        abort(404, description="No such download (a newer data version may have replaced it, "
                               "or a snapshot older than a day was removed); ask for it again.")
    from pages._access import audit

    audit("download", f"{key}/{name}", data_version=key)
    return send_file(path, as_attachment=True, download_name=name, max_age=0)


def _flat(items: list[Any]) -> Iterable[Any]:
    """Items of an inputs/state list; pattern-matching (ALL) inputs come as nested lists."""
    for item in items:
        if isinstance(item, list):
            yield from _flat(item)
        else:
            yield item


def clicked(click: Any, field: str) -> str:
    """The text `field` of the first point of a graph's clickData (`customdata` may be a list:
    its first item), for a drill-down. No usable point (a cleared click, or a forged one of
    another shape) updates nothing (PreventUpdate)."""
    points = click.get("points") if isinstance(click, dict) else None
    point = points[0] if isinstance(points, list) and points else None
    value = point.get(field) if isinstance(point, dict) else None
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str) or not value:
        raise PreventUpdate
    return value


def filters_of(store: Any) -> filters.Filters:
    """The filters of the shared store, checked: a store of the wrong shape is a 400
    (`bad_input`), and values the data does not have are dropped (`filters.known_filters`; the
    filter bar has already said which when they came from a link or a control)."""
    if store is not None and not isinstance(store, dict):
        raise bad_input(f"{FILTERS} must be an object, not {type(store).__name__}")
    from pages._access import scope_filters

    try:
        f = filters.Filters.from_dict((store or {}).get("filters"))
    except ValueError as e:
        raise bad_input(f"{FILTERS}: {e}") from None
    if not f.is_empty:
        options = query(loads.filter_options)
        # Issue 14: the canonical request (whole months, no all-values list), so that two
        # requests a user can tell apart differ by at least one filter value (disclosure
        # control).
        f = filters.canonical_filters(filters.known_filters(f, options)[0], options)
    # Issue 14: an account limited to some programs/clusters sees those only, whatever it sent.
    return scope_filters(f)


# ---- the filter bar ---------------------------------------------------------------------------

def _access_scope_options(opts: filters.FilterOptions, cur: Any = None) -> filters.FilterOptions:
    from pages._access import scope_options

    return scope_options(opts, cur)


def filter_bar() -> html.Div:
    controls: list[Any] = []
    for name, label in FILTER_FIELDS:
        controls.append(
            dbc.Col(
                [
                    html.Label(tr(label), htmlFor=fid(name), className="form-label small mb-0",
                               id=f"{fid(name)}-label"),
                    dcc.Dropdown(id=fid(name), multi=True, placeholder=tr("all"), options=[],
                                 value=[], className="filter-dropdown"),
                ],
                xs=12, sm=6, md=3, xl=True, className="mb-2",
            )
        )
    controls.append(
        dbc.Col(
            [
                html.Label(tr("Date range (event dates)"), htmlFor=DATES,
                           className="form-label small mb-0"),
                dcc.DatePickerRange(id=DATES, clearable=True, display_format="YYYY-MM-DD",
                                    start_date_placeholder_text=tr("from"),
                                    end_date_placeholder_text=tr("to"),
                                    month_format="MMMM YYYY"),
            ],
            xs=12, md=6, xl="auto", className="mb-2",
        )
    )
    return html.Div(
        [
            html.H2(tr("Filters"), className="visually-hidden"),
            dbc.Row(controls, className="g-2 align-items-end"),
            html.Div(
                [
                    dbc.Button(tr("Clear filters"), id=CLEAR, color="secondary", outline=True,
                               size="sm", className="me-3"),
                    html.Span(id=DATA_STATUS, className="small text-body-secondary me-3"),
                    dbc.Button(tr("PDF snapshot"), id=SNAP_BUTTON, color="primary", outline=True,
                               size="sm", className="ms-auto text-nowrap",
                               title=tr("The funder report (PDF) of the filters shown")),
                ],
                className="d-flex align-items-center flex-wrap gap-1",
            ),
            html.Div(id=SNAP_STATUS, role="status", className="small",
                     **{"aria-live": "polite"}),
            # Kept for the tab's session: a reload while a report runs goes on polling it.
            dcc.Store(id=SNAP_JOB, storage_type="session"),
            dcc.Store(id=SNAP_FILE),
            dcc.Store(id=SNAP_FIRED),
            dcc.Interval(id=SNAP_POLL, interval=SNAP_POLL_MS, disabled=True),
            html.Div(id=NOTES, role="status", **{"aria-live": "polite"}),
            # The shown page's view keys (`view_store`), written into the URL beside the filters.
            dcc.Store(id=VIEW),
        ],
        className="filter-bar border-bottom bg-body-tertiary px-3 pt-2 pb-2",
        role="search",
        **{"aria-label": tr("Filters for every page")},
    )


_VALUE_OUTPUTS = [Output(fid(n), "value") for n, _ in FILTER_FIELDS]
_OPTION_OUTPUTS = [Output(fid(n), "options") for n, _ in FILTER_FIELDS]
_VALUE_INPUTS = [Input(fid(n), "value") for n, _ in FILTER_FIELDS]


@callback(
    Output(FILTERS, "data"),
    *_VALUE_OUTPUTS,
    *_OPTION_OUTPUTS,
    Output(DATES, "start_date"),
    Output(DATES, "end_date"),
    Output(DATES, "min_date_allowed"),
    Output(DATES, "max_date_allowed"),
    Output(NOTES, "children"),
    Output(DATA_STATUS, "children"),
    Input(URL, "search"),
    Input(CLEAR, "n_clicks"),
    *_VALUE_INPUTS,
    Input(DATES, "start_date"),
    Input(DATES, "end_date"),
    State(URL, "pathname"),
)
def sync_filters(search: str | None, _clear: int | None, *controls: Any) -> tuple:
    """URL → controls on load/back/forward; controls → store on every change. The page's own
    view keys in the URL (`filters.PAGE_VIEWS`, e.g. /participation?by=country) are no filter:
    the page's layout reads them, and only a value the page does not offer gets a note."""
    *values, pathname = controls
    if search is not None and not isinstance(search, str):
        raise bad_input(f"{URL}.search must be a text")
    page = pathname if isinstance(pathname, str) else None
    try:
        cur = reader().cursor()
        try:
            # Issue 14: only the programs/clusters of the account's scope are offered.
            opts = _access_scope_options(loads.filter_options(cur), cur)
            info = loads.data_info(cur)
        finally:
            cur.close()
    except WarehouseError as e:  # no warehouse, or one without its derived tables
        alert = dbc.Alert(tr("No data to show: {error}").format(error=e), color="danger",
                          className="py-1 px-2 mt-2 small")
        status = (tr("No dashboard tables.") if isinstance(e, sql.DerivedTablesMissing)
                  else tr("No warehouse."))
        return (no_update,) * (1 + 2 * len(FILTER_FIELDS) + 4) + (alert, status)
    status = tr("Data version {version}, built {built}. Small groups are shown as “{label}”."
                ).format(version=info.get("data_version", "?"),
                         built=info.get("built_at", tr("unknown")), label=suppressed_label())
    trigger = ctx.triggered_id
    notes: list[str] = []
    if trigger == CLEAR:
        f = filters.Filters()
    elif trigger is None or trigger == URL:
        f, notes = filters.parse_filters(search or "", opts, page=page or "/")
        notes += filters.parse_view(search or "", page or "/")[1]
    else:
        *lists, start, end = values
        data = {n: v for (n, _), v in zip(FILTER_FIELDS, lists, strict=True)}
        data.update(start=start, end=end)
        try:
            chosen = filters.Filters.from_dict(data)
        except ValueError as e:
            raise bad_input(str(e)) from None
        f, notes = filters.parse_filters(chosen.to_query(), opts)
    options = [
        [{"label": lbl, "value": v} for v, lbl in opts.options.get(n, ())]
        for n, _ in FILTER_FIELDS
    ]
    vals = [list(getattr(f, n)) for n, _ in FILTER_FIELDS]
    note = (
        dbc.Alert(
            [html.Strong(tr("Some link values were ignored: ")), "; ".join(notes)],
            color="warning", className="py-1 px-2 mt-2 mb-0 small", id="filter-note-alert",
        )
        if notes else None
    )
    first = opts.first_date.isoformat() if opts.first_date else None
    last = opts.last_date.isoformat() if opts.last_date else None
    return (
        {"filters": f.to_dict(), "query": f.to_query()},
        *vals,
        *options,
        f.start.isoformat() if f.start else None,
        f.end.isoformat() if f.end else None,
        first,
        last,
        note,
        status,
    )


def view_store(page: str, view: dict[str, Any], defaults: dict[str, str] | None = None
               ) -> dict[str, str]:
    """The `VIEW` store of `page` showing `view` (its view keys' current values): a page's
    control callback returns it, so the address bar keeps them (`filters.view_query`; values
    equal to the default are left out of the link)."""
    return {"path": page, "query": filters.view_query(page, view, defaults)}


# Write the canonical query string into the address bar without a navigation (no Location
# listens to replaceState, so the page is not rebuilt): the filters (on every page, and kept on
# the navbar links), then the shown page's own view keys, joined as `filters.page_query` does.
clientside_callback(
    """
    function(store, view) {
        const path = window.location.pathname;
        const shared = (store && store.query) || "";
        const own = (view && view.path === path && view.query) || "";
        let query = shared && own ? shared + "&" + own : (shared || (own ? "?" + own : ""));
        // The interface's language stays in the link (pages/_i18n.py).
        const lang = new URLSearchParams(window.location.search).get("lang");
        if (lang) query += (query ? "&" : "?") + "lang=" + encodeURIComponent(lang);
        if (window.location.search !== query) {
            window.history.replaceState(window.history.state, "", path + query);
        }
        return query;
    }
    """,
    Output(URL_WRITER, "data"),
    Input(FILTERS, "data"),
    Input(VIEW, "data"),
)


# The language links keep the page, its filters and its view: this address with another lang.
clientside_callback(
    """
    function(query, ids) {
        return ids.map(function(id) {
            const params = new URLSearchParams(query || window.location.search);
            params.set("lang", id.index);
            return window.location.pathname + "?" + params.toString();
        });
    }
    """,
    Output({"type": LANG_LINK, "index": ALL}, "href"),
    Input(URL_WRITER, "data"),
    State({"type": LANG_LINK, "index": ALL}, "id"),
)


@callback(
    Output({"type": NAV, "index": ALL}, "href"),
    Output({"type": NAV, "index": ALL}, "active"),
    Input(FILTERS, "data"),
    Input(URL, "pathname"),
    State({"type": NAV, "index": ALL}, "id"),
)
def nav_links(store: dict[str, Any] | None, pathname: str | None,
              ids: list[dict[str, str]]) -> tuple[list[str], list[bool]]:
    qs = (store or {}).get("query", "")
    if _i18n.current() != _i18n.browser_language():  # a chosen language stays chosen
        qs += ("&" if qs else "?") + f"{_i18n.PARAM}={_i18n.current()}"
    paths = [i["index"] for i in ids]
    return [p + qs for p in paths], [p == (pathname or "/") for p in paths]


# ---- the "PDF snapshot" button ------------------------------------------------------------------

@callback(
    Output(SNAP_JOB, "data"),
    Output(SNAP_POLL, "disabled"),
    Output(SNAP_STATUS, "children"),
    Output(SNAP_FILE, "data"),
    Output(SNAP_BUTTON, "disabled"),
    Input(SNAP_BUTTON, "n_clicks"),
    Input(SNAP_POLL, "n_intervals"),
    State(FILTERS, "data"),
    State(SNAP_JOB, "data"),
    prevent_initial_call=True,
)
def snapshot(click: Any, _tick: int | None, store: Any, job: Any) -> tuple:
    """A click starts the report of the filters on screen (the `FILTERS` store, i.e. the URL's
    filters) as a job in its own process (`reports.jobs.start`) and returns at once; the tab
    then polls the job's state file every half second, showing its stage, until the browser
    fetches the PDF from the download route (`send_download`) or the job's one-line error is
    shown. No request waits for a report, so no worker is held."""
    from reports import jobs

    if ctx.triggered_id == SNAP_POLL:
        if job is None:  # a tick already in flight when the job ended
            return None, True, no_update, no_update, False
        if (not isinstance(job, dict) or not isinstance(job.get("job"), str)
                or not isinstance(job.get("polls"), int)):
            raise bad_input(f"{SNAP_JOB} is not what the filter bar stores")
        st = jobs.status(warehouse_path(), job["job"])
        if st.running:
            if job["polls"] >= SNAP_POLL_MAX:
                return None, True, _snapshot_failed(tr(
                    "still running after ten minutes; the server log may say why")
                ), no_update, False
            return ({"job": job["job"], "polls": job["polls"] + 1}, False,
                    _snapshot_progress(st.fraction, st.stage), no_update, True)
        if st.path is None:
            return (None, True, _snapshot_failed(st.error or tr("unknown error")), no_update,
                    False)
        url = download_url(st.path)
        done = html.Span([tr("PDF snapshot ready: "),
                          html.A(st.path.name, href=url, download=st.path.name,
                                 id="snapshot-link")], id="snapshot-done")
        # a new token each time: the same report asked for twice is downloaded twice
        return (None, True, done,
                {"url": url, "filename": st.path.name, "token": uuid.uuid4().hex}, False)
    if ctx.triggered_id != SNAP_BUTTON:
        raise PreventUpdate
    if click is None:
        raise PreventUpdate
    if not isinstance(click, int) or isinstance(click, bool):
        raise bad_input(f"{SNAP_BUTTON}.n_clicks must be a number")
    try:
        f = filters_of(store)
    except PreventUpdate:  # no warehouse: the filter bar already says so
        return (None, True, _snapshot_failed(tr("there is no data to report")), no_update,
                False)
    from analytics import suppression
    from pages._access import audit, current_account, rounding_required

    acct = current_account()
    try:
        # The job process has no Flask request: what the account may see goes with it.
        job_id = jobs.start(warehouse_path(), f,
                            whole_program=not (acct is not None and acct.scoped),
                            round_to=suppression.ROUND_TO if rounding_required() else None)
        audit("snapshot", f"job {job_id}", f)
    except OSError as e:
        where = e.filename or tr("the jobs folder")
        return None, True, _snapshot_failed(f"{where}: {e.strerror or e}"), no_update, False
    return ({"job": job_id, "polls": 0}, False, _snapshot_progress(0.0, N_("starting")), None,
            True)


# The stages a report job writes (reports/snapshot.py), for the catalogue.
SNAPSHOT_STAGES = (N_("starting"), N_("reading the warehouse"), N_("printing the PDF"),
                   N_("done"))


def _snapshot_progress(fraction: float, stage: str) -> html.Div:
    pct = max(0, min(100, round(100 * fraction)))
    return html.Div(
        [dbc.Progress(value=pct, label=f"{pct}%", striped=True, animated=True,
                      style={"width": "12rem", "height": "1rem"}, className="me-2",
                      id="snapshot-progress"),
         html.Span(tr("PDF snapshot: {stage}…").format(stage=tr(stage)), id="snapshot-stage")],
        className="d-flex align-items-center mt-1", id="snapshot-running")


def _snapshot_failed(reason: str) -> dbc.Alert:
    return dbc.Alert(tr("No PDF snapshot: {reason}").format(reason=reason), color="warning",
                     className="py-1 px-2 mt-2 mb-0 small", id="snapshot-error")


# The browser fetches a ready file from its URL with an <a download> click: the server streams
# it (send_download) and nothing passes through Dash's JSON. Shared by the Data page.
CLICK_DOWNLOAD_JS = """
    function(file) {
        if (!file || !file.url) { return window.dash_clientside.no_update; }
        const a = document.createElement("a");
        a.href = file.url;
        a.download = file.filename || "";
        document.body.appendChild(a);
        a.click();
        a.remove();
        return file.url;
    }
    """

clientside_callback(CLICK_DOWNLOAD_JS, Output(SNAP_FIRED, "data"), Input(SNAP_FILE, "data"),
                    prevent_initial_call=True)

# After a reload the interval starts disabled while the tab's session still holds a running job:
# poll it again (in the browser: no request per tick besides the poll itself).
clientside_callback(
    """
    function(job) {
        const running = !!(job && typeof job.job === "string");
        return running ? false : window.dash_clientside.no_update;
    }
    """,
    Output(SNAP_POLL, "disabled", allow_duplicate=True),
    Input(SNAP_JOB, "data"),
    prevent_initial_call="initial_duplicate",
)


# ---- figure and table helpers -----------------------------------------------------------------

def ptext(v: Any) -> str:
    """User text for plotly, which renders a subset of HTML in labels: escape it so a name like
    '<b>x</b>' is shown as typed, never as markup."""
    return html_text.escape(text(v), quote=False)


# An empty template plus explicit styling: naming a template ("plotly_white") makes plotly.py
# load and validate it on every figure (~40 ms each, most of a warm callback), and the default
# one adds 7 kB to every response.
_AXIS_STYLE: dict[str, Any] = {"showgrid": True, "gridcolor": "#E5E5E5", "zeroline": False,
                               "linecolor": "#888888", "automargin": True,
                               "title": {"font": {"color": "#333333"}}}
# The axis style lives in the figure's own small template, which plotly.js applies to every
# x/y axis (xaxis2 … of a grid too): update_xaxes walked each axis through plotly.py's update
# machinery, 150 ms for a 3 × 3 grid.
_TEMPLATE: dict[str, Any] = {"layout": {"xaxis": _AXIS_STYLE, "yaxis": _AXIS_STYLE}}


_NO_SPLIT = frozenset({"error_x", "error_y", "paper_bgcolor", "plot_bgcolor"})


def _nested(props: dict[str, Any]) -> dict[str, Any]:
    """plotly.py's "magic underscores" (title_text → title.text), for layout properties."""
    out: dict[str, Any] = {}
    for key, val in props.items():
        path = [key] if key in _NO_SPLIT else key.split("_")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        _merge(node, {path[-1]: val})
    return out


def _merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for key, val in new.items():
        if isinstance(val, dict) and isinstance(into.get(key), dict):
            _merge(into[key], val)
        else:
            into[key] = _plain(val)
    return into


class Figure(dict):
    """A figure as the plain {"data": […], "layout": {…}} dict that dcc.Graph takes, with the
    few plotly.py methods the pages use. plotly.py's Figure copies and walks its property tree
    on every add_trace / update_* call even without validation — most of a warm callback's
    time (300 ms for the outcomes grid); the browser's plotly.js still checks what it draws."""

    def __init__(self, *traces: dict[str, Any]) -> None:
        super().__init__(data=[dict(t) for t in traces], layout={})

    @property
    def layout(self) -> dict[str, Any]:
        return self["layout"]

    @property
    def data(self) -> list[dict[str, Any]]:
        return self["data"]

    def add_trace(self, trace_: dict[str, Any]) -> Figure:
        self["data"].append(trace_)
        return self

    def update_layout(self, props: dict[str, Any] | None = None, **kw: Any) -> Figure:
        _merge(self["layout"], _nested({**(props or {}), **kw}))
        return self

    def _axes(self, letter: str) -> list[dict[str, Any]]:
        names = [k for k in self["layout"]
                 if k.startswith(f"{letter}axis") and k[5:].isdigit() or k == f"{letter}axis"]
        return [self["layout"].setdefault(n, {}) for n in (names or [f"{letter}axis"])]

    def update_xaxes(self, **kw: Any) -> Figure:
        for ax in self._axes("x"):
            _merge(ax, _nested(kw))
        return self

    def update_yaxes(self, **kw: Any) -> Figure:
        for ax in self._axes("y"):
            _merge(ax, _nested(kw))
        return self

    def update_geos(self, **kw: Any) -> Figure:
        _merge(self["layout"].setdefault("geo", {}), _nested(kw))
        return self

    def add_annotation(self, **kw: Any) -> Figure:
        self["layout"].setdefault("annotations", []).append(_nested(kw))
        return self

    def update_annotations(self, **kw: Any) -> Figure:
        for a in self["layout"].get("annotations", []):
            _merge(a, _nested(kw))
        return self

    def add_vline(self, x: float, **kw: Any) -> Figure:
        """A vertical line across the plot at x (plotly.py's add_vline shape)."""
        shape = {"type": "line", "x0": x, "x1": x, "xref": "x", "y0": 0, "y1": 1,
                 "yref": "y domain"}
        self["layout"].setdefault("shapes", []).append(_merge(shape, _nested(kw)))
        return self


def figure(*traces: dict[str, Any]) -> Figure:
    """A new plain figure; traces are plain dicts, `trace(kind, …)`."""
    return Figure(*traces)


def grid(rows: int, cols: int, titles: Sequence[str] = (), *, vertical_spacing: float | None = None,
         horizontal_spacing: float | None = None, shared_x: bool = False) -> Figure:
    """A rows × cols grid of plots, laid out as plotly's `make_subplots` does (same domains,
    axis names x, x2, … row by row from the top left, titles as paper annotations) but as plain
    dicts: make_subplots validates every axis and trace and cost 300 ms for a 3 × 3 grid. Put a
    trace in cell k (0-based) with `cell_axes(k)`; `shared_x` links every x-axis to the bottom
    row's and hides the upper rows' tick labels."""
    hs = 0.2 / cols if horizontal_spacing is None else horizontal_spacing
    vs = 0.3 / rows if vertical_spacing is None else vertical_spacing
    w = (1 - hs * (cols - 1)) / cols
    h = (1 - vs * (rows - 1)) / rows
    layout: dict[str, Any] = {}
    notes = []
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        x0, top = c * (w + hs), 1 - r * (h + vs)
        sx = "" if k == 0 else str(k + 1)
        xaxis: dict[str, Any] = {"domain": [x0, x0 + w], "anchor": f"y{sx}"}
        if shared_x and r < rows - 1:
            xaxis.update(matches=f"x{(rows - 1) * cols + c + 1}", showticklabels=False)
        layout[f"xaxis{sx}"] = xaxis
        layout[f"yaxis{sx}"] = {"domain": [max(top - h, 0.0), top], "anchor": f"x{sx}"}
        if k < len(titles):
            notes.append({"text": titles[k], "x": x0 + w / 2, "y": top, "xref": "paper",
                          "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                          "showarrow": False, "font": {"size": 16}})
    if notes:
        layout["annotations"] = notes
    fig = Figure()
    fig.update_layout(layout)
    return fig


def cell_axes(k: int) -> dict[str, str]:
    """The xaxis/yaxis trace properties that put a trace in cell k (0-based) of `grid`."""
    sx = "" if k == 0 else str(k + 1)
    return {"xaxis": f"x{sx}", "yaxis": f"y{sx}"}


def trace(kind: str, **props: Any) -> dict[str, Any]:
    """A trace as a plain dict (no magic underscores: write marker={"color": …})."""
    return {"type": kind, **{k: _plain(v) for k, v in props.items()}}


def _plain(v: Any) -> Any:
    """pandas → numpy (without validation nothing else converts them before JSON)."""
    if isinstance(v, pd.DataFrame | pd.Series | pd.Index):
        return v.to_numpy()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def base_layout(fig: Figure, title: str, *, x: str | None = None, y: str | None = None,
                height: int = 380) -> Figure:
    fig.update_layout(
        paper_bgcolor="white",
        plot_bgcolor="white",
        hoverlabel={"bgcolor": "white", "font": {"color": "#222222"}},
        # The title starts below the graph's toolbar (about 30 px tall, top right), so a long
        # title in a half-width figure never runs under it.
        title={"text": title, "x": 0.01, "xanchor": "left", "y": 1, "yanchor": "top",
               "yref": "container", "pad": {"t": 34}, "font": {"size": 16}},
        template=_TEMPLATE,
        colorway=OKABE_ITO,
        height=height,
        margin={"l": 60, "r": 20, "t": 90, "b": 60},
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13},
        separators=_i18n.plotly_separators(),  # the language's decimal and group marks
    )
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    return fig


def legend_below(fig: Figure, n_items: int, per_row: int = 2) -> Figure:
    """Put a long legend under the x-axis title (container coordinates) and make room for it;
    at the top it would cover the title."""
    rows = max(1, -(-n_items // per_row))
    extra = 22 * rows
    fig.update_layout(
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yanchor": "bottom",
                "yref": "container"},
        margin={"b": 80 + extra},
        height=(fig.layout.get("height") or 400) + extra,
    )
    return fig


def empty_figure(title: str, message: str, height: int = 300) -> Figure:
    """A blank figure that says what is empty and why (never a silent empty plot)."""
    fig = Figure()
    base_layout(fig, title, height=height)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#444"})
    return fig


NOT_COMPUTED = N_("Not computed yet for this data version: the next load computes it, or "
                  "python -m analytics refresh.")
NO_DATA = N_("No participants match the current filters.")


def selects_nobody(f: filters.Filters) -> bool:
    """Whether the filters select no participant (`analytics.read.overview.selects_nobody`)."""
    return bool(query(overview.selects_nobody, f))


def empty_state(title: str, f: filters.Filters | None = None, *, what: str | None = None,
                height: int = 300) -> Figure:
    """The figure that says why it has nothing to draw, the first that holds of: the results
    are not computed yet for this data version; `f` (the figure's filters, None for a figure
    of all participants) selects nobody; it selects fewer than k participants, or one filter
    value changes it by fewer than k (suppressed); else `what`, the figure's own reason
    ("No cluster has two consecutive terms"), else nothing to draw for the current filters.
    A figure whose every group is under k says so itself (`suppressed_figure`)."""
    if not query(loads.results_computed):
        message = tr(NOT_COMPUTED)
    elif f is not None and selects_nobody(f):
        message = tr(NO_DATA)
    elif f is not None and (head := query(overview.headline, f))["suppressed"]:
        why = (small_selection() if head["suppressed_why"] == suppression.SMALL_SELECTION
               else isolating_selection())
        message = f"{ptext(why)}: {suppressed_label()}."
    else:
        message = what or tr("Nothing to draw for the current filters.")
    return empty_figure(title, message, height)


GRAPH_CONFIG: dict[str, Any] = {"displaylogo": False}


# The words of a figure's text alternative and data table (assets/a11y.js writes them from
# the figure as drawn).
FIGURE_WORDS: dict[str, str] = {
    "series": N_("series"), "values": N_("values"), "highest": N_("highest"),
    "lowest": N_("lowest"), "value": N_("value"), "low": N_("95% CI low"),
    "high": N_("95% CI high"), "row": N_("row"), "column": N_("column"),
    "more": N_("more rows not shown"), "nothing": N_("No data drawn."),
}


def _part_id(id_: str | dict[str, Any], part: str) -> str | dict[str, Any]:
    return ({**id_, "type": f"{id_.get('type')}-{part}"} if isinstance(id_, dict)
            else f"{id_}-{part}")


def graph(id_: str | dict[str, Any], label: str, **kwargs: Any) -> html.Div:
    """A dcc.Graph inside a labelled figure region (dcc.Graph takes no aria-* props), with its
    text alternative (the figure's title and key numbers: the region's description) and the
    data behind it as a table under a disclosure. Both are written in the browser by
    assets/a11y.js from the figure as drawn, so they cannot disagree with it; a series named
    as suppressed shows the suppression label, never its placeholder values."""
    config = {**GRAPH_CONFIG, **_i18n.plotly_config(), **kwargs.pop("config", {})}
    summary = _part_id(id_, "summary")
    summary_dom = summary if isinstance(summary, str) else None
    # While the figure recomputes (after 200 ms), the old one stays, faded, under a status
    # that says so (announced by screen readers: role=status).
    busy = html.Div([html.Span(className="spinner-border spinner-border-sm me-2",
                               **{"aria-hidden": "true"}),
                     html.Span(tr("Updating the figure…"))],
                    role="status", className="ei-loading small bg-white px-2 py-1 rounded border")
    return html.Div(
        [
            dcc.Loading(dcc.Graph(id=id_, config=config, **kwargs), custom_spinner=busy,
                        delay_show=200, overlay_style={"visibility": "visible", "opacity": 0.4},
                        **({"target_components": {id_: "figure"}} if isinstance(id_, str)
                           else {})),
            html.P(id=summary, className="visually-hidden ei-figure-summary"),
            html.Details([html.Summary(tr("Data behind this figure")),
                          html.Div(id=_part_id(id_, "data"), className="ei-figure-table")],
                         className="ei-figure-data small"),
        ],
        role="figure", className="mb-3 ei-figure",
        **{"aria-label": label, "data-suppressed": suppressed_label(),
           "data-words": json.dumps({k: tr(v) for k, v in FIGURE_WORDS.items()})},
        **({"aria-describedby": summary_dom} if summary_dom else {}),
    )


country_name = _i18n.country_name


def suppressed_label() -> str:
    """`suppression.SUPPRESSED_LABEL` in the request's language."""
    return tr("suppressed (n < {k})").format(k=suppression.MIN_CELL)


def small_selection() -> str:
    """`suppression.SMALL_SELECTION` in the request's language."""
    return tr("fewer than {k} participants in this selection").format(k=suppression.MIN_CELL)


def isolating_selection() -> str:
    """`suppression.ISOLATING_SELECTION` in the request's language."""
    return tr("one filter value changes this selection by fewer than {k} participants").format(
        k=suppression.MIN_CELL)


def difference_label() -> str:
    """`suppression.DIFFERENCE` in the request's language."""
    return tr("difference < {k}").format(k=suppression.MIN_CELL)


def localise(text: Any) -> Any:
    """A text the analytics layer wrote (its fixed labels: the suppression label, the small
    selection's reason, a covariate, a kind of link, …) in the request's language, when the
    catalogue has it; any other value (a name from the data) as it is."""
    if not isinstance(text, str):
        return text
    known = {suppression.SUPPRESSED_LABEL: suppressed_label,
             suppression.SMALL_SELECTION: small_selection,
             suppression.ISOLATING_SELECTION: isolating_selection,
             suppression.DIFFERENCE: difference_label}
    return known[text]() if text in known else tr(text)


# Words the analytics layer writes into its tables, for the catalogue (shown through
# `localise`): the comparison's covariates (analytics.stats.comparison), the kinds of
# partnership link (analytics.stats.persistence).
ANALYTICS_WORDS = (
    N_("pre score"), N_("gender"), N_("role"), N_("age_band"), N_("income_group"),
    N_("connectivity"), N_("institution_kind"), N_("none (post − pre on arm)"),
    N_("several classes each side"), N_("one class on a side"),
    N_("no teacher recorded on a side"),
)


# The survey waves the product names (etl.schema: pre, post, followup); a deployment's own
# waves ("followup_6m") are data and stay as they are.
WAVE_WORDS = {"pre": N_("pre"), "post": N_("post"), "followup": N_("followup")}


def wave_name(wave: Any) -> str:
    """A wave's name in the request's language ("followup" → "seguimiento")."""
    w = text(wave)
    return tr(WAVE_WORDS[w]) if w in WAVE_WORDS else w


def localise_list(text: Any) -> Any:
    """A comma-separated list the analytics layer wrote ("pre score, gender, role"), each item
    in the request's language."""
    if not isinstance(text, str) or not text:
        return text
    return ", ".join(str(localise(t)) for t in text.split(", "))


def language_name(code: str) -> str:
    """A language's name in the request's language ("es" → "Spanish", "español", "espagnol")."""
    from babel import Locale

    try:
        return Locale.parse(_i18n.current()).languages.get(code, code)
    except (ValueError, TypeError):
        return code


def item_wording(instrument: str, scale: str, item: str) -> str:
    """An item's wording in the request's language, where its instrument has it (the shipped
    instruments word their items in English, Spanish and French); else its English wording;
    else its id."""
    from surveys import load_instruments

    try:
        words = load_instruments()[str(instrument)].scale(str(scale)).wording.get(item, {})
    except Exception:  # no such item, or a broken instrument file: the page still shows
        return item
    return words.get(_i18n.current()) or words.get("en") or item


_VERDICT_TOO_FEW = re.compile(r"^too few per language: (?:only (?P<lang>\S+) has|no language "
                              r"has) (?P<n>\d+) or more respondents with every item answered$")
_VERDICT = re.compile(r"^(?P<body>.+?)"
                      r"(?: \(not checked, fewer than (?P<n>\d+): (?P<few>[^)]+)\))?$")
_VERDICT_ITEM = re.compile(r"^item (?P<item>\S+) differs in (?P<langs>.+)$")


def localise_verdict(text: Any, instrument: Any, scale: Any) -> Any:
    """The invariance screen's verdict (analytics.stats.measurement.dif_verdict: "invariant
    across en, es", "item X differs in es; …", "… (not checked, fewer than 100: fr)", "too few
    per language: …") in the request's language, with each item's wording and each language's
    name in it; a text of any other shape as it is."""
    if not isinstance(text, str):
        return text

    def langs(codes: str) -> str:
        return ", ".join(language_name(c) for c in codes.split(", "))

    if m := _VERDICT_TOO_FEW.match(text):
        if m["lang"]:
            return tr("too few per language: only {language} has {n} or more respondents with "
                      "every item answered").format(language=language_name(m["lang"]), n=m["n"])
        return tr("too few per language: no language has {n} or more respondents with every "
                  "item answered").format(n=m["n"])
    m = _VERDICT.match(text)
    if not m:
        return text
    body = m["body"]
    if body.startswith("invariant across "):
        out = tr("invariant across {languages}").format(
            languages=langs(body.removeprefix("invariant across ")))
    else:
        parts = []
        for piece in body.split("; "):
            if not (im := _VERDICT_ITEM.match(piece)):
                return text
            parts.append(tr("item “{wording}” ({item}) differs in {languages}").format(
                wording=item_wording(instrument, scale, im["item"]), item=im["item"],
                languages=langs(im["langs"])))
        out = "; ".join(parts)
    if m["few"]:
        out += " " + tr("(not checked, fewer than {n}: {languages})").format(
            n=m["n"], languages=langs(m["few"]))
    return out


def fmt_int(v: Any) -> str:
    return _i18n.fmt_int(v)


def fmt_count(v: Any) -> str:
    """A count of people, partnerships or events that a page computes itself (`len(d)` of a
    read answer), rounded for funders as the read layer's counts are
    (`analytics.read.rounding.count`): counts a page formats never bypass the rounding."""
    from analytics.read import rounding

    return fmt_int(rounding.count(v))


def fmt_num(v: Any, digits: int = 2) -> str:
    return _i18n.fmt_num(v, digits)


def fmt_pct(v: Any) -> str:
    return _i18n.fmt_pct(v)


def fmt_ci(low: Any, high: Any, digits: int = 2) -> str:
    """An interval "[0.15, 0.34]"; "[0,15; 0,34]" where the decimal mark is a comma."""
    sep = "," if _i18n.fmt_num(0.5, 1) == "0.5" else ";"
    return f"[{fmt_num(low, digits)}{sep} {fmt_num(high, digits)}]"


def tabs(items: Sequence[tuple[str, str, Any]], id_: str) -> html.Div:
    """Tabs (`(tab_id, label, content)`, the first selected) as the WAI-ARIA tabs pattern:
    buttons with role=tab in a tablist, each controlling its tabpanel; assets/a11y.js switches
    them by click and by the arrow keys, in the browser. Every panel stays in the page (hidden),
    so its text is there for tests and for the browser's find. dbc.Tabs is not used: version
    2.0.4 renders every tab's id as "…-tab-null", which no panel names."""
    buttons, panels = [], []
    for i, (tab_id, label, content) in enumerate(items):
        tid, pid = f"{id_}-tab-{tab_id}", f"{id_}-panel-{tab_id}"
        buttons.append(html.Button(
            label, id=tid, type="button", role="tab", tabIndex=0 if i == 0 else -1,
            className="nav-link" + (" active" if i == 0 else ""),
            **{"aria-selected": "true" if i == 0 else "false", "aria-controls": pid}))
        panels.append(html.Div(content, id=pid, role="tabpanel", tabIndex=0, hidden=i != 0,
                               className="pt-2", **{"aria-labelledby": tid}))
    return html.Div([html.Div(buttons, role="tablist", className="nav nav-tabs"), *panels],
                    className="ei-tabs", id=id_)


def text(v: Any) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def coming(what: str, how: str) -> dbc.Alert:
    """Say what is coming instead of faking a number."""
    return dbc.Alert([html.Strong(tr("{what}: coming. ").format(what=tr(what))), tr(how)],
                     color="info", className="small")


def suppressed_figure(title: str, subject: str) -> Figure:
    """A figure whose every group is under k: it says so instead of drawing empty axes or zeros,
    e.g. subject "Every cluster group has fewer than 10 participants"."""
    return empty_figure(title, f"{tr(subject)}: {suppressed_label()}.")


def small_selection_alert(why: str | None = None) -> dbc.Alert:
    """What the headline says instead of its figures for a selection under k, or (`why`, the
    headline's `suppressed_why`) for one that a single filter value changes by fewer than k."""
    what = localise(why) if why else small_selection()
    return dbc.Alert([html.Strong(what[0].upper() + what[1:] + ": "),
                      tr("its figures are {label}. Widen the filters to see them.").format(
                          label=suppressed_label())],
                     color="secondary", className="small suppressed-note mb-2",
                     id="small-selection-alert")


def suppressed_note(groups: Iterable[str], what: str = N_("groups")) -> html.P | None:
    groups = [str(g) for g in groups]
    if not groups:
        return None
    what = tr(what)
    return html.P(f"{what[:1].upper() + what[1:]} {suppressed_label()}: {', '.join(groups)}.",
                  className="small text-body-secondary suppressed-note")


def isolating_note(df: pd.DataFrame, what: str = N_("Some")) -> html.P | None:
    """Why rows are hidden beside the small ones: one filter value changes them by fewer than k
    (`analytics.read.disclosure`; a read answer's `attrs['isolating']`, `describe`'s words:
    which filter values, never how many people)."""
    why = df.attrs.get("isolating") if isinstance(df, pd.DataFrame) else None
    if not why:
        return None
    return html.P(tr("{what} are hidden because one filter value changes them by fewer than "
                     "{k} participants ({why}): two such views would show that small group by "
                     "subtraction.").format(what=tr(what), k=suppression.MIN_CELL, why=why),
                  className="small text-body-secondary suppressed-note isolating-note")


def with_isolating_note(note: Any, df: pd.DataFrame, what: str = N_("Some")) -> Any:
    """`note` followed by `isolating_note(df)` when there is one; `note` as it is otherwise."""
    extra = isolating_note(df, what)
    return note if extra is None else html.Div([note, extra])


def suppressed_weeks_note(df: pd.DataFrame, what: str = N_("active participants")
                          ) -> html.P | None:
    """The note under a weekly line when some weeks of shown groups (flag `week_suppressed`)
    had fewer than k active people: those weeks are gaps in the lines, never zeros."""
    if "week_suppressed" not in df or not df.week_suppressed.astype(bool).any():
        return None
    return html.P(tr("Weeks with fewer than {k} {what} are not shown (gaps in the lines): "
                     "{label}.").format(k=suppression.MIN_CELL, what=tr(what),
                                        label=suppressed_label()),
                  className="small text-body-secondary suppressed-note subset-note")


def suppressed_subset_note(groups: Iterable[str], what: str) -> html.P | None:
    """The note under a figure or table whose shown groups had a subset under k blanked, e.g.
    what = "fewer than 10 active participants; their minutes and share active are"."""
    groups = [str(g) for g in groups]
    if not groups:
        return None
    return html.P(f"{', '.join(groups)}: {tr(what)} {suppressed_label()}.",
                  className="small text-body-secondary suppressed-note subset-note")


def section(title: str, *children: Any, id_: str | None = None) -> html.Section:
    kw = {"id": id_} if id_ else {}
    return html.Section([html.H2(tr(title), className="h5 mt-3"), *children], **kw)



def scale_labels() -> dict[tuple[str, str], str]:
    """(instrument id, scale id) -> 'Instrument title: scale label' in the request's language
    where the instrument gives it (surveys/*.yaml), else in English."""
    from surveys import load_instruments

    try:
        instruments = load_instruments()
    except Exception:  # a broken instrument file must not take the dashboard down
        return {}
    lang = _i18n.current()
    return {(i.id, s.id): f"{i.title_in(lang)}: {s.label_in(lang)}"
            for i in instruments.values() for s in i.scales}


def scale_label(instrument: Any, scale: Any) -> str:
    return scale_labels().get((str(instrument), str(scale)), f"{instrument} · {scale}")


def scale_options() -> list[dict[str, str]]:
    """Dropdown options 'instrument/scale' for the scales with pre/post results."""
    try:
        df = query(outcomes.prepost_results, "overall")
    except PreventUpdate:  # no warehouse yet: the page still renders and says so below
        return []
    pairs = sorted({(a, b) for a, b in zip(df.instrument, df.scale, strict=True)},
                   key=lambda p: scale_label(*p))
    return [{"label": scale_label(a, b), "value": f"{a}/{b}"} for a, b in pairs]


def only_scale(df: pd.DataFrame, value: str | None) -> pd.DataFrame:
    """The rows of the scale a `scale_options` value names ('instrument/scale'); every row for
    an empty or 'all' value."""
    if not isinstance(value, str) or "/" not in value or not len(df):
        return df
    inst, sc = value.split("/", 1)
    return df[(df.instrument == inst) & (df.scale == sc)]


def forest_by_scale(shown: pd.DataFrame, x: str, lo: str, hi: str) -> tuple[Figure, int]:
    """Horizontal points with CI whiskers per group, one series per scale (its label, a colour
    and past eight scales a shape), n in the hover; a dotted line at zero. Columns: instrument,
    scale, group, n, and `x`, `lo`, `hi`. Returns the figure and the number of scales."""
    fig = figure()
    scales = list(shown[["instrument", "scale"]].drop_duplicates().itertuples(index=False))
    # One grouping pass (a boolean filter per scale cost ~5 ms each).
    per_scale = dict(tuple(shown.groupby(["instrument", "scale"], sort=False)))
    for i, s in enumerate(scales):
        d = per_scale[(s.instrument, s.scale)]
        fig.add_trace(trace("scatter",
            x=d[x], y=[ptext(g) for g in d["group"]], mode="markers",
            name=ptext(scale_label(s.instrument, s.scale)), orientation="h",
            marker=series_marker(i),
            error_x={"type": "data", "symmetric": False, "array": d[hi] - d[x],
                     "arrayminus": d[x] - d[lo]},
            customdata=d[["n", lo, hi]],
            hovertemplate="%{fullData.name}<br>%{y}: %{x:.2f} [%{customdata[1]:.2f}, "
                          "%{customdata[2]:.2f}]<br>n = %{customdata[0]:,}<extra></extra>",
        ))
    fig.add_vline(x=0, line_dash="dot", line_color="#666")
    fig.update_layout(scattermode="group")
    return fig, len(scales)
