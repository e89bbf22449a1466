"""Who may see what in the dashboard (issue 14): login, the request guard, program scope, roles'
capabilities, security headers and the audit trail of downloads.

The accounts, the role → capability table and the audit log live in `etl.accounts` (a SQLite
file beside the warehouse). This module puts them in front of every request (`init_app`):

- No account yet: the dashboard runs without login for requests from this computer only (the
  localhost demo), with a banner on every page; any other caller gets 403 with the reason.
  `python app.py` refuses to start on another address (app.py).
- Accounts exist: every page redirects to /login without a session; Dash's JSON endpoints
  (`_dash-layout`, `_dash-dependencies`, `_dash-update-component`) and downloads answer 401.
  Public without login: /login, Dash's JavaScript bundles (`/_dash-component-suites/`, library
  code) and `/assets/` (stylesheets and the world map's outline: no participant data).
- Each callback request is checked against `CALLBACK_RULES` (capability it needs) and the
  account's scope: `scope_filters` intersects the user's programs and clusters into the filters
  that every data callback reads (`_ui.filters_of`); callbacks in `WHOLE_PROGRAM` show
  statistics precomputed over all programs and answer a scoped user with a note instead.

Rate limit of the login form: Flask-Limiter with in-memory storage, i.e. per gunicorn worker
(N workers allow N × the limit); set `EXCHANGE_IMPACT_LIMITER_STORAGE` (e.g. redis://…) to share.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import dash
from dash import Input, Output, callback, html
from flask import Flask, Response, jsonify, redirect, request
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from markupsafe import escape
from werkzeug.exceptions import Forbidden

from analytics import suppression
from analytics.outputs import export
from analytics.read import rounding
from etl import accounts
from pages import _i18n, _sso, _ui
from pages._i18n import N_, tr

if TYPE_CHECKING:
    from analytics.read.filters import Filters

__all__ = [
    "init_app", "current_account", "current_user_role", "rounding_required", "can",
    "scope_filters", "scope_options", "download_audience", "audit", "WHOLE_PROGRAM",
    "SCOPE_AWARE", "UI_ONLY", "CALLBACK_RULES",
    "AUTH_BAR", "TRUSTED_HEADER_ENV", "SECURE_COOKIE_ENV", "SCOPE_NOTE",
]

AUTH_BAR = "auth-bar"
TRUSTED_HEADER_ENV = "EXCHANGE_IMPACT_TRUSTED_HEADER"
SECURE_COOKIE_ENV = "EXCHANGE_IMPACT_SECURE_COOKIES"  # 1: always, 0: never, unset: when https
LOGIN_LIMIT = os.environ.get("EXCHANGE_IMPACT_LOGIN_LIMIT", "5/minute")
_ADD_ADMIN = "python -m etl users add NAME --role admin --password-stdin"  # the first account

# Callbacks whose numbers are precomputed over all programs (stored result tables of fixed
# groupings): a user scoped to some programs gets a note instead. They come per program with
# issue 17. Named module.function; tests/test_access.py proves that every callback of the app
# is in this set, in UI_ONLY, or reads the filters through `_ui.filters_of`.
WHOLE_PROGRAM: frozenset[str] = frozenset({
    "pages.equity.gaps",
    "pages.outcomes.reliability", "pages.outcomes.measurement",
    "pages.outcomes.sensitivity", "pages.outcomes.dose", "pages.outcomes.moderation_view",
    "pages.overview.cost_view",
    "pages.participation.scheduling",
    "pages.partnerships.persistence_by_group", "pages.partnerships.persistence_models",
    "pages.partnerships.reciprocity",
    "pages.data.load_log",
})
# Callbacks that read the account's scope themselves (`download_audience`): the Data page's
# downloads are built per scope (and rounded for funders), its table list says so.
SCOPE_AWARE: frozenset[str] = frozenset({
    "pages.data.warnings_and_downloads", "pages.data.download",
})
# Callbacks that move no data of their own: URL sync, navigation, clicks copied into filters.
UI_ONLY: frozenset[str] = frozenset({
    "pages._ui.sync_filters", "pages._ui.nav_links",
    "pages.equity.view_url", "pages.outcomes.view_url", "pages.participation.view_url",
    "pages.overview.cost_url", "pages.partnerships.persist_url",
    "pages.overview.map_click", "pages.overview.list_pick", "pages.participation.cluster_click",
    "pages._access.auth_bar", "dash.dash.update",
    "pages._grid.export_view",  # writes back the rows the browser shows, reads nothing else
})
# Callback -> the capability it needs beyond "dashboard".
CALLBACK_RULES: dict[str, str] = {
    "pages.data.download": "export",
    "pages._grid.export_view": "export",
    "pages._ui.snapshot": "snapshot",
}
# Download files holding one row per participant (pseudonymised): need "rowlevel". Every
# all-tables zip holds them too.
ROW_LEVEL_TABLES: tuple[str, ...] = export.ROW_LEVEL_TABLES
ROW_LEVEL_PREFIXES = (*(f"{t}_" for t in ROW_LEVEL_TABLES), "exchange_impact_")

_PUBLIC_PREFIXES = ("/assets/", "/_dash-component-suites/", "/_favicon.ico")
_LOGIN, _LOGOUT = "/login", "/logout"
_JSON_PREFIXES = ("/_dash-", "/_downloads/", "/_reload-hash")


# ---- the current user -------------------------------------------------------------------------

class _User(UserMixin):
    def __init__(self, account: accounts.Account) -> None:
        self.account = account

    def get_id(self) -> str:
        # name|generation: the user loader refuses a session whose account's password was reset
        # (or that was removed) since it was made.
        return f"{self.account.name}|{self.account.session}"


def _warehouse() -> Any:
    return _ui.warehouse_path()


def current_account() -> accounts.Account | None:
    """The logged-in account, or None (no login: the localhost demo, or an anonymous caller)."""
    try:
        user = current_user._get_current_object()
    except Exception:  # outside a request
        return None
    return user.account if isinstance(user, _User) else None


def current_user_role() -> str | None:
    """The role of the logged-in account; None without accounts (the localhost demo)."""
    acct = current_account()
    return acct.role if acct else None


def can(capability: str) -> bool:
    """Whether the caller may `capability`: the account's role, or anything in the localhost
    demo (no accounts: the guard already refused other callers)."""
    acct = current_account()
    if acct is None:
        return not _accounts_exist()
    return accounts.can(acct.role, capability)


def rounding_required() -> bool:
    """Whether counts shown to this caller must be rounded (funders): `guard` then sets
    `analytics.read.rounding.ROUND_TO` for the request, and a PDF job gets `--round-to`."""
    return accounts.can(current_user_role(), "rounded")


def _accounts_exist() -> bool:
    return accounts.has_accounts(_warehouse())


# ---- scope ------------------------------------------------------------------------------------

def scope_filters(f: Filters) -> Filters:
    """`f` within the caller's scope: an account limited to programs (and/or clusters) sees only
    those (both limits apply together); no choice means its whole scope. A request for a program
    or cluster outside the scope alone is refused (403): no page offers it, so it is forged."""
    acct = current_account()
    if acct is None or not acct.scoped:
        return f
    kw: dict[str, tuple[str, ...]] = {}
    for field, allowed in (("program", acct.programs), ("cluster", acct.clusters)):
        if not allowed:
            continue
        chosen = getattr(f, field)
        kept = tuple(v for v in chosen if v in allowed) if chosen else tuple(allowed)
        if not kept:
            raise Forbidden(f"{field} {', '.join(chosen)[:200]} is outside your account's scope")
        kw[field] = kept
    return replace(f, **kw)


def scope_options(options: Any, cur: Any = None) -> Any:
    """The filter bar's options (`FilterOptions`) limited to the caller's programs/clusters and,
    given a cursor, to the clusters, exchanges and countries those reach
    (`analytics.read.loads.scope_values`): a program lead never reads another program's names."""
    acct = current_account()
    if acct is None or not acct.scoped:
        return options
    opts = dict(options.options)
    for field, allowed in (("program", acct.programs), ("cluster", acct.clusters)):
        if allowed:
            opts[field] = tuple((v, lbl) for v, lbl in opts.get(field, ()) if v in allowed)
    if cur is not None:
        from analytics.read import loads

        reach = loads.scope_values(cur, acct.programs, acct.clusters)
        for field, allowed in reach.items():
            opts[field] = tuple((v, lbl) for v, lbl in opts.get(field, ()) if v in allowed)
    return replace(options, options=opts)


def download_audience(acct: accounts.Account | None = None
                      ) -> tuple[export.Scope | None, int | None]:
    """Whom the caller's Data page files are for: the account's scope (None: every program) and
    the rounding base of its counts (funders; None: exact). The files are built per audience
    (`analytics.outputs.downloads.audience_tag`); the guard serves each only to its audience."""
    return export.audience(current_account() if acct is None else acct)


# ---- audit ------------------------------------------------------------------------------------

def _who() -> str:
    acct = current_account()
    if acct is not None:
        return acct.name
    return f"(no login) {request.remote_addr}" if request else "(no login)"


def audit(action: str, target: str, filters: Any = None, data_version: Any = None) -> None:
    """Append to the audit log: who (account, or the demo's address) did `action` on `target`."""
    if hasattr(filters, "to_dict"):
        filters = filters.to_dict()
    accounts.record(_warehouse(), _who(), action, target, filters,
                    None if data_version is None else str(data_version))


def start_refusal(host: str) -> str | None:
    """Why `python app.py --host HOST` must not start, or None: without accounts the dashboard
    serves this computer only."""
    import ipaddress

    if _accounts_exist():
        return None
    h = host.strip("[]")
    try:
        local = ipaddress.ip_address(h).is_loopback
    except ValueError:
        local = h == "localhost"
    if local:
        return None
    return (f"no accounts in {accounts.accounts_file(_warehouse())}, so the dashboard serves "
            f"127.0.0.1 only, not {host}: create one first with 'python -m etl users add NAME "
            "--role admin --password-stdin'")


# ---- the guard --------------------------------------------------------------------------------

def _loopback() -> bool:
    # A reverse proxy on the same host connects from 127.0.0.1: a forwarded request is not local.
    if any(h in request.headers for h in ("X-Forwarded-For", "Forwarded", "X-Real-IP")):
        return False
    addr = request.remote_addr or ""
    return addr == "::1" or addr.startswith("127.")


def _callback_name(fn: Any) -> str:
    fn = getattr(fn, "__wrapped__", fn)
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"


def callback_name(output: str) -> str | None:
    """module.function of the server callback with this output id, or None."""
    entry = dash.get_app().callback_map.get(output)
    if not isinstance(entry, dict) or "callback" not in entry:
        return None
    return _callback_name(entry["callback"])


def _deny(status: int, message: str) -> Response:
    return Response(message, status=status, mimetype="text/plain")


def guard() -> Response | None:
    """Flask `before_request`: the start rule, login, capability and scope checks, and the
    caller's rounding of counts (funders; `analytics.read.rounding`)."""
    rounding.ROUND_TO.set(None)  # a worker thread serves many callers: nothing carries over
    path = request.path
    if path.startswith(_PUBLIC_PREFIXES):
        return None
    if not _accounts_exist():
        if not _loopback():
            return _deny(403, tr("No accounts are configured, so this dashboard answers only "
                                 "on this computer: create one with '{command}'.").format(
                                     command=_ADD_ADMIN))
        return None
    if path in (_LOGIN, _LOGOUT, *_sso.PATHS):
        return None
    acct = current_account()
    if acct is None:
        if path.startswith(_JSON_PREFIXES) or request.method != "GET":
            return _deny(401, "Log in first (/login).")
        return redirect(f"{_LOGIN}?next={_safe_next(request.full_path)}{_lang_query()}")
    if not accounts.can(acct.role, "dashboard"):
        return _deny(403, tr("The role {role} has no access to the dashboard.").format(
            role=acct.role))
    if accounts.can(acct.role, "rounded"):
        rounding.ROUND_TO.set(suppression.ROUND_TO)
    if request.method == "POST" and path.endswith("/_dash-update-component"):
        return _check_callback(acct)
    if path.startswith("/_downloads/"):
        return _check_download(acct)
    return None


def _end_rounding(_exc: BaseException | None = None) -> None:
    rounding.ROUND_TO.set(None)


def _check_callback(acct: accounts.Account) -> Response | None:
    body = request.get_json(silent=True)
    output = body.get("output") if isinstance(body, dict) else None
    name = callback_name(output) if isinstance(output, str) else None
    if name is None:  # refuse_malformed_callbacks answers 400
        return None
    need = CALLBACK_RULES.get(name)
    if need and not accounts.can(acct.role, need):
        return _deny(403, f"The role {acct.role} may not do this ({need}).")
    if acct.scoped and name in WHOLE_PROGRAM:
        return _whole_program_note(body)
    return None


# English, as the PDF snapshot (reports.content) gives it; the pages show tr(SCOPE_NOTE).
SCOPE_NOTE = N_("Hidden for your account: these statistics are precomputed over all programs; "
                "per-program versions come with issue 17.")
_SCOPE_NOTE = SCOPE_NOTE  # the pages' note; the PDF snapshot gives the same (reports.content)


def _whole_program_note(body: dict) -> Response:
    """A callback answer that puts the note where the callback would draw, changing nothing
    else (outputs left out of a Dash answer keep their value)."""
    outputs = body.get("outputs")
    outputs = [outputs] if isinstance(outputs, dict) else outputs or []
    response: dict[str, dict[str, Any]] = {}
    for out in outputs:
        if not isinstance(out, dict) or not isinstance(out.get("id"), str):
            continue
        prop = out.get("property")
        if prop == "children":
            value: Any = {"type": "P", "namespace": "dash_html_components",
                          "props": {"children": tr(_SCOPE_NOTE),
                                    "className": "text-body-secondary scope-note"}}
        elif prop == "figure":
            value = dict(_ui.empty_figure("", tr(_SCOPE_NOTE)))
        else:
            continue
        response.setdefault(out["id"], {})[prop] = value
    if not response:
        return Response(status=204)
    return jsonify({"multi": True, "response": response})


def _check_download(acct: accounts.Account) -> Response | None:
    parts = request.path.split("/")
    name = parts[-1] if len(parts) == 4 else ""
    if name.endswith(".pdf"):
        need = "snapshot"
    else:
        # A scoped account's (and a funder's) files are built into their own folder, whose name
        # ends with its audience tag: another account's folder, or every program's, is refused.
        from analytics.outputs import downloads

        tag = downloads.audience_tag(*download_audience(acct))
        stem = parts[2].rpartition("-k")[0] if len(parts) == 4 else ""
        if tag and not stem.endswith(tag):
            return _deny(403, "This file was built for another account's programs or role; ask "
                              "the Data page for yours.")
        need = "rowlevel" if name.startswith(ROW_LEVEL_PREFIXES) else "export"
        # A folder built below the deployment's k (`downloads.folder`: ID-kK) holds unsuppressed
        # tables: only roles with "unsuppressed" (the Data page offers them to no one else).
        k = parts[2].rpartition("-k")[2] if len(parts) == 4 else ""
        if not (k.isdigit() and int(k) >= suppression.MIN_CELL):
            if not accounts.can(acct.role, "unsuppressed"):
                return _deny(403, f"The role {acct.role} may not download unsuppressed tables.")
    if not accounts.can(acct.role, need):
        return _deny(403, f"The role {acct.role} may not download this ({need}).")
    return None


def _safe_next(target: str | None) -> str:
    """A local path to return to after login: never another site (open redirect)."""
    from urllib.parse import quote

    t = (target or "/").rstrip("?")
    if not t.startswith("/") or t.startswith("//") or "\\" in t:
        t = "/"
    return quote(t, safe="/?=&,-_.")


def headers(response: Response) -> Response:
    """Flask `after_request`: security headers on every answer."""
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Content-Security-Policy", _csp())
    return response


_CSP: str | None = None


def _csp() -> str:
    """No inline script but Dash's own (the renderer's start and clientside callbacks), allowed
    by their hashes (`Dash.csp_hashes`). Styles: Dash components and Plotly set inline style
    attributes, so style-src needs 'unsafe-inline'. Plotly draws map and image data from data:
    and blob: URLs."""
    global _CSP
    if _CSP is None:
        scripts = " ".join(["'self'", *dash.get_app().csp_hashes()])
        _CSP = ("default-src 'self'; "
                f"script-src {scripts}; "
                "style-src 'self' 'unsafe-inline'; "
                "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
                "worker-src 'self' blob:; "
                "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
    return _CSP


# ---- login ------------------------------------------------------------------------------------

_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/assets/vendor/bootstrap.min.css"></head>
<body class="bg-body-tertiary"><main class="container py-5" style="max-width: 26rem">
<h1 class="h4 mb-3">{heading}</h1>{error}{sso}
<form{hidden} method="post" action="/login?next={next}{lang_query}" id="login-form">{csrf}
<div class="mb-2"><label class="form-label" for="name">{account}</label>
<input class="form-control" id="name" name="name" autocomplete="username" required
 value="{name}"></div>
<div class="mb-3"><label class="form-label" for="password">{password}</label>
<input class="form-control" id="password" name="password" type="password"
 autocomplete="current-password" required></div>
<button class="btn btn-primary" id="login-submit" type="submit">{submit}</button>
</form></main></body></html>"""


def _login_form() -> Any:
    from flask_wtf import FlaskForm
    from wtforms import PasswordField, StringField
    from wtforms.validators import DataRequired, Length

    class LoginForm(FlaskForm):
        name = StringField("Account", validators=[DataRequired(), Length(max=100)])
        password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])

    return LoginForm()


def _login_page(form: Any, error: str = "", status: int = 200) -> Response:
    err = f'<div class="alert alert-danger py-2" id="login-error" role="alert">{escape(error)}' \
          "</div>" if error else ""
    next_ = _safe_next(request.args.get("next"))
    html_ = _PAGE.format(error=err, csrf=form.csrf_token(), name=escape(form.name.data or ""),
                         next=escape(next_), sso=_sso.login_button(next_),
                         hidden="" if _sso.password_login() else " hidden",
                         lang=_i18n.current(), lang_query=escape(_lang_query()),
                         title=escape(tr("Log in · Exchange Impact")),
                         heading=escape(tr("Exchange Impact: log in")),
                         account=escape(tr("Account")), password=escape(tr("Password")),
                         submit=escape(tr("Log in")))
    return Response(html_, status=status, mimetype="text/html")


def _lang_query() -> str:
    """"&lang=xx" when the request chose its language by the link (`?lang=`), so that the
    login page and its form's answers stay in it; else nothing (the browser's language)."""
    from urllib.parse import quote

    chosen = _i18n.known(request.args.get(_i18n.PARAM))
    return f"&{_i18n.PARAM}={quote(chosen)}" if chosen else ""


def login() -> Response:
    if not _accounts_exist():
        return redirect("/")
    form = _login_form()
    if request.method == "POST":
        if not _sso.password_login():
            return _login_page(form, tr("Password login is turned off; sign in with your "
                                        "institution."), 403)
        if not form.validate_on_submit():
            if "csrf_token" in form.errors:
                return _login_page(form, tr("The form expired or did not come from this "
                                            "page; please try again."), 400)
            return _login_page(form, tr("Give an account name and a password."), 400)
        acct = accounts.verify(_warehouse(), form.name.data, form.password.data)
        if acct is None:
            return _login_page(form, tr("Wrong account name or password."), 401)
        start_session(_User(acct))
        return redirect(_safe_next(request.args.get("next")))
    return _login_page(form)


def start_session(user: _User) -> None:
    """Log `user` in on a new session: whatever the session held before login (a value an
    attacker planted in the browser, the form's CSRF token) is dropped first, so no cookie
    from before the login carries over into the logged-in session (session fixation)."""
    from flask import session

    session.clear()
    login_user(user)


def logout() -> Response:
    logout_user()
    return redirect(_LOGIN)


def _limit_key() -> str:
    from flask_limiter.util import get_remote_address

    return f"{get_remote_address()}|{(request.form.get('name') or '')[:100]}"


def _ensure_secret(server: Flask) -> None:
    """The session key is read on the first request, not at import: the warehouse (and so the
    key file beside it) is chosen by the environment of the serving process."""
    if not server.secret_key and _accounts_exist():
        server.secret_key = accounts.secret_key(_warehouse())


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the key read when the first session is opened
    (before any `before_request` hook runs)."""

    def get_signing_serializer(self, app: Flask) -> Any:
        _ensure_secret(app)
        return super().get_signing_serializer(app)


def init_app(server: Flask) -> None:
    """Put login, the guard and the headers in front of every request (app.py)."""
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    secure = os.environ.get(SECURE_COOKIE_ENV, "")
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_SSL_STRICT=False,  # Referer checks break behind proxies; the token suffices
    )
    if secure in ("0", "1"):
        server.config.update(SESSION_COOKIE_SECURE=secure == "1",
                             REMEMBER_COOKIE_SECURE=secure == "1")
    manager = LoginManager()
    manager.init_app(server)
    manager.session_protection = "strong"

    @manager.user_loader
    def _load(user_id: str) -> _User | None:
        import hmac

        name, _, generation = user_id.rpartition("|")
        acct = accounts.get_user(_warehouse(), name) if name else None
        # removed accounts, and sessions made before a password reset, are logged out
        if acct is None or not hmac.compare_digest(acct.session, generation):
            return None
        return _User(acct)

    @manager.request_loader
    def _from_header(req: Any) -> _User | None:
        header = os.environ.get(TRUSTED_HEADER_ENV, "").strip()
        name = req.headers.get(header) if header else None
        acct = accounts.get_user(_warehouse(), name) if name else None
        return _User(acct) if acct else None

    limiter = Limiter(get_remote_address, app=server,
                      storage_uri=os.environ.get("EXCHANGE_IMPACT_LIMITER_STORAGE", "memory://"),
                      default_limits=[])

    server.session_interface = _Sessions()

    @server.before_request
    def _secure_cookies() -> None:
        if secure not in ("0", "1"):
            # Secure cookies when the request came over https (behind a proxy: run gunicorn with
            # --forwarded-allow-ips so that X-Forwarded-Proto sets the scheme).
            server.config["SESSION_COOKIE_SECURE"] = request.is_secure
            server.config["REMEMBER_COOKIE_SECURE"] = request.is_secure

    server.before_request(guard)
    server.teardown_request(_end_rounding)
    view = limiter.limit(LOGIN_LIMIT, key_func=_limit_key, methods=["POST"],
                         # only failed attempts count: a user who logs in often is no attack
                         deduct_when=lambda r: r.status_code != 302)(login)
    server.add_url_rule(_LOGIN, "login", view, methods=["GET", "POST"])
    server.add_url_rule(_LOGOUT, "logout", logout, methods=["GET", "POST"])
    server.after_request(headers)
    _sso.init_app(server)

    @server.errorhandler(429)
    def _too_many(e: Any) -> Response:
        return _deny(429, tr("Too many login attempts ({limit}); wait a minute and try "
                             "again.").format(limit=LOGIN_LIMIT))


# ---- the banner -------------------------------------------------------------------------------

def auth_bar_component() -> html.Div:
    return html.Div(id=AUTH_BAR)


@callback(Output(AUTH_BAR, "children"), Input(_ui.URL, "pathname"))
def auth_bar(_path: Any) -> Any:
    """Every page: who is logged in (and a log-out link), or the banner of the demo mode."""
    acct = current_account()
    if acct is None:
        if _accounts_exist():
            return None
        return html.Div(
            [tr("No accounts: this dashboard runs without login and answers on this computer "
                "only. Before sharing it, create accounts: "),
             html.Code(_ADD_ADMIN)],
            className="alert alert-warning rounded-0 mb-0 py-1 px-3 small", role="note",
            id="demo-mode-banner")
    scope = ", ".join([*acct.programs, *acct.clusters]) or tr("all programs")
    return html.Div(
        [tr("Logged in as {name} ({role}; {scope}) · ").format(name=acct.name, role=acct.role,
                                                                scope=scope),
         html.A(tr("Log out"), href=_LOGOUT, id="logout-link")],
        className="small text-end px-3 py-1 bg-body-secondary", id="user-bar")

