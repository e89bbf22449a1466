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

from etl import process
from pages import _access, _i18n, _timing, _ui

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

_index = app.interpolate_index


def _interpolate_index(**kwargs: str) -> str:
    """The page in the request's language: <html lang> (WCAG 3.1.1, axe html-has-lang), which
    assets/i18n.js then sends with every callback (pages/_i18n.py)."""
    html_text = _index(**kwargs)
    return html_text.replace("<html>", f'<html lang="{_i18n.current()}">', 1)


app.interpolate_index = _interpolate_index


def language_menu() -> html.Nav:
    """Links to this page in each language (a full load: the page is built in it). The links'
    query is the address bar's, written in by `pages._ui` as the filters change."""
    cur = _i18n.current()
    links = [
        html.A(name, href=f"?{_i18n.PARAM}={code}", lang=code, hrefLang=code,
               id={"type": _ui.LANG_LINK, "index": code},
               className="link-light small px-1" + (" fw-bold" if code == cur else ""),
               **({"aria-current": "true"} if code == cur else {}))
        for code, name in _i18n.LANGUAGES.items()
    ]
    return html.Nav(links, className="ms-auto d-flex gap-1",
                    **{"aria-label": _i18n.tr("Language")})


def navbar() -> dbc.Navbar:
    links = [
        dbc.NavItem(dbc.NavLink(_i18n.tr(page["name"]), href=page["relative_path"],
                                id={"type": _ui.NAV, "index": page["relative_path"]}))
        for page in dash.page_registry.values()
    ]
    return dbc.Navbar(
        dbc.Container(
            [
                # The product's name, the same in every language: marked as English, so a
                # screen reader says it as such on a Spanish or French page.
                dbc.NavbarBrand(html.Span("Exchange Impact", lang="en"), href="/",
                                className="fw-semibold"),
                dbc.Nav(links, navbar=True, className="flex-wrap"),
                language_menu(),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="mb-0",
    )


def shell() -> html.Div:
    """The app shell, built for each page load in the request's language."""
    return html.Div(
        [
            dcc.Location(id=_ui.URL, refresh=False),
            dcc.Store(id=_ui.FILTERS),
            dcc.Store(id=_ui.URL_WRITER),
            html.A(_i18n.tr("Skip to content"), href="#main",
                   className="visually-hidden-focusable"),
            # The banner landmark: every piece of the page is in a landmark (axe: region).
            html.Header([_access.auth_bar_component(), navbar()]),
            _ui.filter_bar(),
            html.Main(dbc.Container(dash.page_container, fluid=True, className="py-3"),
                      id="main"),
        ]
    )


app.layout = shell

server = app.server
# The workers' statistics (on-request models and comparisons) without OpenBLAS threads spinning
# between calls or 2 MB huge pages zeroed per large array (etl/process.py); gunicorn's forked
# workers inherit both.
process.for_heavy_work()
# Server CPU time per answer, only when the load benchmark asks (EXCHANGE_IMPACT_CPU_HEADER=1).
_timing.init_app(server)
# Issue 14: login, roles and program scope, security headers (before anything else answers).
_access.init_app(server)
# A forged or broken callback request is a 400 before Dash's dispatcher can make it a 500.
server.before_request(_ui.refuse_malformed_callbacks)
# The Data page's download files and the PDF snapshots, streamed from their folders beside the
# warehouse.
server.add_url_rule(_ui.DOWNLOAD_ROUTE, view_func=_ui.send_download)


def main(argv: list[str] | None = None) -> int:
    """`python app.py [--host H] [--port P]`: serve on 127.0.0.1 unless told otherwise; on any
    other address only once accounts exist (`python -m etl users add`)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python app.py", description="Serve the dashboard.")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1, env HOST)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8050")))
    args = p.parse_args(argv)
    refusal = _access.start_refusal(args.host)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 1
    # First start: build the demo warehouse when none exists (owned by `etl`; not at import, so
    # gunicorn and the tests never build data).
    from etl import ensure_warehouse

    ensure_warehouse()
    app.run(host=args.host, port=args.port, debug=os.environ.get("DASH_DEBUG", "") == "1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
