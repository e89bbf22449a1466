"""Exchange Impact's dashboard: the app shell (navbar, shared filter bar, stores, page container).

    python app.py            # http://127.0.0.1:8050, debug off
    gunicorn app:server      # production; the warehouse is opened lazily in each worker

Pages live in `pages/`, one module each; the shared filter bar and its URL sync in `pages/_ui.py`.
Nothing here opens the warehouse: DuckDB state does not survive a fork, so each gunicorn worker
opens its own read-only connection on its first request.
"""

from __future__ import annotations

import os

import dash
import dash_bootstrap_components as dbc
from dash import Dash, dcc, html

from pages import _ui

app = Dash(
    __name__,
    use_pages=True,
    # Bootstrap is served from assets/ (vendor/bootstrap.min.css, MIT): no CDN, no request
    # leaves the origin. It is listed here rather than auto-loaded so that it comes before
    # assets/app.css, which overrides it.
    external_stylesheets=["/assets/vendor/bootstrap.min.css"],
    assets_ignore=r"bootstrap\.min\.css",
    serve_locally=True,
    title="Exchange Impact",
    update_title=None,
    suppress_callback_exceptions=False,
)


def navbar() -> dbc.Navbar:
    links = [
        dbc.NavItem(dbc.NavLink(page["name"], href=page["relative_path"],
                                id={"type": _ui.NAV, "index": page["relative_path"]}))
        for page in dash.page_registry.values()
    ]
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand("Exchange Impact", href="/", className="fw-semibold"),
                dbc.Nav(links, navbar=True, className="flex-wrap"),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="mb-0",
    )


app.layout = html.Div(
    [
        dcc.Location(id=_ui.URL, refresh=False),
        dcc.Store(id=_ui.FILTERS),
        dcc.Store(id=_ui.URL_WRITER),
        html.A("Skip to content", href="#main", className="visually-hidden-focusable"),
        navbar(),
        _ui.filter_bar(),
        html.Main(dbc.Container(dash.page_container, fluid=True, className="py-3"), id="main"),
    ]
)

server = app.server
# A forged or broken callback request is a 400 before Dash's dispatcher can make it a 500.
server.before_request(_ui.refuse_malformed_callbacks)
# The Data page's download files and the PDF snapshots, streamed from their folders beside the
# warehouse.
server.add_url_rule(_ui.DOWNLOAD_ROUTE, view_func=_ui.send_download)


if __name__ == "__main__":
    # First start: build the demo warehouse when none exists (owned by `etl`; not at import, so
    # gunicorn and the tests never build data).
    from etl import ensure_warehouse

    ensure_warehouse()
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8050")),
            debug=os.environ.get("DASH_DEBUG", "") == "1")
