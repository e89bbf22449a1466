"""Single sign-on with OpenID Connect (issue 14): "Sign in with <institution>" on /login.

Configured by environment (README, "Who sees what"); unset issuer means no single sign-on:

- `EXCHANGE_IMPACT_OIDC_ISSUER`: the provider's issuer URL; its endpoints and keys come from
  `<issuer>/.well-known/openid-configuration`.
- `EXCHANGE_IMPACT_OIDC_CLIENT_ID`, and `EXCHANGE_IMPACT_OIDC_CLIENT_SECRET` or
  `EXCHANGE_IMPACT_OIDC_CLIENT_SECRET_FILE` (a file readable by its owner only, like session.key).
- `EXCHANGE_IMPACT_OIDC_CLAIM`: the ID-token claim that names the account; unset, it is
  `preferred_username`, else `email`.
- `EXCHANGE_IMPACT_OIDC_NAME`: the institution shown on the button;
  `EXCHANGE_IMPACT_OIDC_REDIRECT_URI` the callback URL registered at the provider when the
  dashboard cannot tell its own (a proxy that hides the scheme or host);
  `EXCHANGE_IMPACT_PASSWORD_LOGIN=0` hides the password form.

Authlib runs the authorization code flow with PKCE (S256); it keeps state, nonce and the code
verifier in the signed session and checks the ID token: signature against the provider's JWKS,
issuer, audience (the client id), expiry and nonce. No account is created here: the claim must
name an account made with `python -m etl users add`, which gives the role and the scope;
otherwise the login is refused with a page saying so, and the audit log keeps a line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, redirect, request, session, url_for
from markupsafe import escape

from etl import accounts
from etl.errors import EtlError
from pages import _i18n
from pages._i18n import tr

__all__ = ["init_app", "PATHS", "configured", "password_login", "login_button", "ISSUER_ENV"]

ISSUER_ENV = "EXCHANGE_IMPACT_OIDC_ISSUER"
CLIENT_ID_ENV = "EXCHANGE_IMPACT_OIDC_CLIENT_ID"
CLIENT_SECRET_ENV = "EXCHANGE_IMPACT_OIDC_CLIENT_SECRET"
CLIENT_SECRET_FILE_ENV = "EXCHANGE_IMPACT_OIDC_CLIENT_SECRET_FILE"
CLAIM_ENV = "EXCHANGE_IMPACT_OIDC_CLAIM"
NAME_ENV = "EXCHANGE_IMPACT_OIDC_NAME"
REDIRECT_ENV = "EXCHANGE_IMPACT_OIDC_REDIRECT_URI"
PASSWORD_LOGIN_ENV = "EXCHANGE_IMPACT_PASSWORD_LOGIN"

_START, _CALLBACK = "/login/sso", "/login/sso/callback"
PATHS = (_START, _CALLBACK)  # public, like /login (pages/_access.guard)
_NEXT = "_sso_next"
_clients: dict[tuple[str, ...], Any] = {}


def configured() -> bool:
    return bool(os.environ.get(ISSUER_ENV, "").strip())


def password_login() -> bool:
    """Whether /login shows the password form: always without single sign-on."""
    return not configured() or os.environ.get(PASSWORD_LOGIN_ENV, "1").strip() != "0"


def _secret() -> str:
    secret = os.environ.get(CLIENT_SECRET_ENV, "")
    path = os.environ.get(CLIENT_SECRET_FILE_ENV, "")
    if secret or not path:
        return secret
    p = Path(path)
    if not p.is_file():
        raise EtlError(f"{CLIENT_SECRET_FILE_ENV}: {p} does not exist")
    if p.stat().st_mode & 0o077:
        raise EtlError(f"{p}: the client secret is readable by others; run 'chmod 600 {p}'")
    return p.read_text().strip()


def _issuer() -> str:
    return os.environ.get(ISSUER_ENV, "").strip().rstrip("/")


def _client() -> Any:
    """Authlib's Flask client for the configured provider (one per configuration: tests and
    reloads may change the environment)."""
    from authlib.integrations.flask_client import OAuth

    key = (_issuer(), os.environ.get(CLIENT_ID_ENV, ""), _secret())
    if key not in _clients:
        oauth = OAuth(current_app._get_current_object())
        _clients[key] = oauth.register(
            "sso", client_id=key[1], client_secret=key[2],
            server_metadata_url=f"{key[0]}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid profile email", "code_challenge_method": "S256"})
    return _clients[key]


def login_button(next_: str) -> str:
    """The button on /login (HTML), or "" without single sign-on."""
    if not configured():
        return ""
    name = os.environ.get(NAME_ENV, "").strip() or tr("your institution")
    label = escape(tr("Sign in with {institution}").format(institution=name))
    return (f'<a class="btn btn-outline-primary w-100 mb-3" id="sso-login" '
            f'href="{_START}?next={escape(next_)}">{label}</a>')


_REFUSED = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="/assets/vendor/bootstrap.min.css"></head>
<body class="bg-body-tertiary"><main class="container py-5" style="max-width: 32rem">
<h1 class="h4 mb-3">{heading}</h1>
<div class="alert alert-danger" id="sso-error" role="alert">{message}</div>
<a href="/login">{back}</a></main></body></html>"""


def _refused_page(message: str, status: int) -> Response:
    """The page that says why single sign-on did not log the user in, in their language."""
    return Response(_REFUSED.format(
        lang=_i18n.current(), title=escape(tr("Sign-in refused · Exchange Impact")),
        heading=escape(tr("Sign-in refused")), message=escape(message),
        back=escape(tr("Back to the login page"))), status=status, mimetype="text/html")


def _refuse(status: int, message: str, who: str, why: str) -> Response:
    accounts.record(_warehouse(), who, "login refused", f"sso: {why}", None, None)
    return _refused_page(message, status)


def _warehouse() -> Any:
    from pages import _ui

    return _ui.warehouse_path()


def start() -> Response:
    if not configured():
        return Response("Single sign-on is not configured.", status=404, mimetype="text/plain")
    from pages._access import _safe_next

    session[_NEXT] = _safe_next(request.args.get("next"))
    uri = os.environ.get(REDIRECT_ENV, "").strip() or url_for("sso_callback", _external=True)
    try:
        return _client().authorize_redirect(uri)
    except (EtlError, OSError, ValueError) as e:  # requests' errors are OSErrors
        return _unavailable(e)


def _unavailable(e: Exception) -> Response:
    return _refused_page(tr(
        "Single sign-on is unavailable: the identity provider {issuer} did not answer as "
        "expected or the configuration is incomplete ({error}). Use the password form, or ask "
        "the dashboard's administrator.").format(issuer=_issuer(), error=e), 502)


def _account_name(claims: dict) -> str | None:
    claim = os.environ.get(CLAIM_ENV, "").strip()
    names = (claims.get(claim),) if claim else (claims.get("preferred_username"),
                                                claims.get("email"))
    return next((n for n in names if isinstance(n, str) and n), None)


def callback() -> Response:
    from authlib.common.errors import AuthlibBaseError
    from joserfc.errors import JoseError

    from pages._access import _safe_next, _User, start_session

    if not configured():
        return Response("Single sign-on is not configured.", status=404, mimetype="text/plain")
    issuer = _issuer()
    try:
        token = _client().authorize_access_token(
            # Authlib checks aud only through azp: ask for the client id in aud explicitly.
            claims_options={"iss": {"essential": True, "values": [issuer, issuer + "/"]},
                            "aud": {"essential": True,
                                    "values": [os.environ.get(CLIENT_ID_ENV, "")]}})
    except (EtlError, OSError) as e:  # the provider is down, the secret file is gone
        return _unavailable(e)
    except (AuthlibBaseError, JoseError, ValueError) as e:
        # Forged or replayed state, a refused code, a token that fails its checks.
        return _refuse(401, tr("The identity provider's answer was not accepted ({error}). "
                               "Start again from the login page.").format(error=e),
                       f"(sso) {request.remote_addr}", str(e)[:200])
    claims = token.get("userinfo")
    if not claims:
        return _refuse(401, tr("The identity provider sent no ID token."),
                       f"(sso) {request.remote_addr}", "no id token")
    name = _account_name(claims)
    acct = accounts.get_user(_warehouse(), name) if name else None
    if acct is None:
        env_claim = os.environ.get(CLAIM_ENV, "").strip()
        claim = env_claim or "preferred_username or email"
        shown = name or f"(no {claim} claim)"  # the audit log's words, in English
        seen = name or tr("(no {claim} claim)").format(
            claim=env_claim or tr("preferred_username or email"))
        return _refuse(403, tr("The identity provider knows you as {name}, but this dashboard "
                               "has no account of that name. Ask its administrator to create "
                               "one ('{command}').").format(name=seen,
                                                            command="python -m etl users add"),
                       shown, f"no account for {claim}")
    next_ = session.pop(_NEXT, None)
    start_session(_User(acct))  # a new session, nothing from before the login
    return redirect(_safe_next(next_))


def init_app(server: Flask) -> None:
    """The two routes of the flow; they answer 404 while single sign-on is not configured."""
    server.add_url_rule(_START, "sso_login", start, methods=["GET"])
    server.add_url_rule(_CALLBACK, "sso_callback", callback, methods=["GET"])
