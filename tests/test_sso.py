"""Single sign-on with OpenID Connect (issue 14, pages/_sso.py) against a tiny provider run in
this test on 127.0.0.1: discovery, an authorize endpoint that redirects back with a code, a token
endpoint that checks the client and the PKCE verifier and issues an RS256 ID token signed with a
key made here, and the JWKS. The dashboard side goes through the Flask test client; the browser's
visit to the provider is a `requests` call. No sleeps: the provider's server is ready once bound.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from etl import accounts
from etl.errors import EtlError
from pages import _sso
from tests import access_helpers as ah
from tests.dashboard_fixture import build_fixture_warehouse

CLIENT_ID, CLIENT_SECRET = "exchange-impact", "s3cret-of-the-client"


class Provider:
    """The identity provider. `claims` overrides the next ID token's claims (a test that wants
    a wrong audience or nonce); `user` is who logs in at the provider."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
        self.codes: dict[str, dict] = {}
        self.user = "sso1"
        self.claims: dict = {}
        self.sign_key: RSAKey | None = None
        app = Flask("provider")
        app.add_url_rule("/.well-known/openid-configuration", "disco", self.discovery)
        app.add_url_rule("/authorize", "authorize", self.authorize)
        app.add_url_rule("/token", "token", self.token, methods=["POST"])
        app.add_url_rule("/jwks", "jwks", self.jwks)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def discovery(self):
        i = self.issuer
        return jsonify(issuer=i, authorization_endpoint=f"{i}/authorize",
                       token_endpoint=f"{i}/token", jwks_uri=f"{i}/jwks",
                       response_types_supported=["code"], subject_types_supported=["public"],
                       id_token_signing_alg_values_supported=["RS256"],
                       code_challenge_methods_supported=["S256"])

    def authorize(self):
        a = request.args
        assert a["client_id"] == CLIENT_ID and a["response_type"] == "code"
        assert a["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"nonce": a["nonce"], "challenge": a["code_challenge"],
                            "redirect_uri": a["redirect_uri"], "user": self.user}
        return redirect(f"{a['redirect_uri']}?code={code}&state={a['state']}")

    def token(self):
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != (CLIENT_ID, CLIENT_SECRET):
            return jsonify(error="invalid_client"), 401
        grant = self.codes.pop(request.form.get("code", ""), None)  # a code is good once
        verifier = request.form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if grant is None or challenge.rstrip(b"=").decode() != grant["challenge"] \
                or request.form.get("redirect_uri") != grant["redirect_uri"]:
            return jsonify(error="invalid_grant"), 400
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": f"id-{grant['user']}", "aud": CLIENT_ID,
                  "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                  "preferred_username": grant["user"], **self.claims}
        key = self.sign_key or self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, key)
        return jsonify(access_token=secrets.token_urlsafe(16), token_type="Bearer",
                       expires_in=300, id_token=id_token)

    def jwks(self):
        return jsonify(keys=[self.key.as_dict(private=False)])


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    yield p
    p.server.shutdown()
    p.thread.join()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    wh = build_fixture_warehouse(tmp_path_factory.mktemp("sso") / "warehouse.duckdb")
    accounts.add_user(wh, "sso1", "lead", "correct horse battery")
    accounts.add_user(wh, "admin1", "admin", "correct horse battery")
    return wh


@pytest.fixture
def app_(warehouse, provider, monkeypatch):
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(warehouse))
    monkeypatch.setenv(_sso.ISSUER_ENV, provider.issuer)
    monkeypatch.setenv(_sso.CLIENT_ID_ENV, CLIENT_ID)
    monkeypatch.setenv(_sso.CLIENT_SECRET_ENV, CLIENT_SECRET)
    monkeypatch.setenv(_sso.NAME_ENV, "Test University")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    provider.user, provider.claims = "sso1", {}
    import app as app_module

    app_module.server.config["TESTING"] = False
    return app_module


def _to_provider(client, next_: str = "/outcomes") -> str:
    """The dashboard's redirect to the provider, then the provider's redirect back: the
    callback URL (path and query) the browser would open next."""
    r = client.get(f"/login/sso?next={next_}")
    assert r.status_code == 302
    at = urlsplit(r.headers["Location"])
    q = parse_qs(at.query)
    assert q["code_challenge_method"] == ["S256"] and q["nonce"] and q["state"]
    back = requests.get(r.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302
    b = urlsplit(back.headers["Location"])
    assert b.path == "/login/sso/callback"
    return f"{b.path}?{b.query}"


def _data_callback(app_, client):
    cbs = ah.callbacks(app_)
    out = next(o for o, e in cbs.items()
               if e["callback"].__module__ == "pages.overview" and "filters-store" in
               {i["id"] for i in e["inputs"]})
    return ah.post(client, ah.body(out, cbs[out]))


def test_login_page_offers_the_institution(app_) -> None:
    page = app_.server.test_client().get("/login?next=/equity").get_data(as_text=True)
    assert "Sign in with Test University" in page
    assert 'href="/login/sso?next=/equity"' in page
    assert 'id="login-form"' in page and "<form hidden" not in page


def test_code_flow_logs_in_the_mapped_account(app_) -> None:
    c = app_.server.test_client()
    assert _data_callback(app_, c).status_code == 401
    r = c.get(_to_provider(c))
    assert r.status_code == 302 and r.headers["Location"] == "/outcomes"
    assert _data_callback(app_, c).status_code == 200
    assert "Logged in as sso1 (lead" in str(_post_auth_bar(app_, c))
    c.get("/logout")
    assert _data_callback(app_, c).status_code == 401


def test_sso_login_starts_a_new_session(app_) -> None:
    """Session fixation: a value planted in the session before the sign-in is gone after it,
    and the cookie from before does not authenticate."""
    c = app_.server.test_client()
    back = _to_provider(c)
    with c.session_transaction() as s:
        s["planted"] = "by someone else"
    before = c.get_cookie("session").value
    assert c.get(back).status_code == 302
    assert c.get_cookie("session").value != before
    with c.session_transaction() as s:
        assert "planted" not in s and s.get("_user_id", "").startswith("sso1|")
    old = app_.server.test_client()
    old.set_cookie("session", before)
    assert _data_callback(app_, old).status_code == 401
    assert _data_callback(app_, c).status_code == 200


@pytest.mark.parametrize("hostile", ["//evil.example/x", "https://evil.example/",
                                     "%5C%5Cevil.example"])
def test_next_cannot_leave_the_dashboard(app_, hostile) -> None:
    c = app_.server.test_client()
    r = c.get(_to_provider(c, hostile))
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_other_login_paths_stay_guarded(app_) -> None:
    r = app_.server.test_client().get("/login/elsewhere")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=")


def _post_auth_bar(app_, client) -> dict:
    body = {"output": "auth-bar.children", "outputs": {"id": "auth-bar", "property": "children"},
            "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
            "changedPropIds": []}
    r = ah.post(client, body)
    assert r.status_code == 200
    return r.get_json()


def test_unknown_user_is_refused_and_audited(app_, provider, warehouse) -> None:
    provider.user = "stranger"
    c = app_.server.test_client()
    r = c.get(_to_provider(c))
    assert r.status_code == 403
    assert "knows you as stranger" in r.get_data(as_text=True)
    assert _data_callback(app_, c).status_code == 401
    last = accounts.audit_rows(warehouse, 1)[0]
    assert last[1:4] == ("stranger", "login refused",
                         "sso: no account for preferred_username or email")


def test_email_claim_when_no_username(app_, provider) -> None:
    provider.claims = {"preferred_username": None, "email": "sso1"}
    c = app_.server.test_client()
    assert c.get(_to_provider(c)).status_code == 302
    assert _data_callback(app_, c).status_code == 200


@pytest.mark.parametrize("claims, why", [({"aud": "another-client"}, "aud"),
                                         ({"aud": "another-client", "azp": CLIENT_ID}, "aud"),
                                         ({"aud": ["another-client"]}, "aud"),
                                         ({"nonce": "not-the-nonce"}, "nonce"),
                                         ({"iss": "http://127.0.0.1:1"}, "iss"),
                                         ({"exp": 1_000_000}, "exp")])
def test_token_failing_a_check_is_refused(app_, provider, claims, why) -> None:
    provider.claims = claims
    c = app_.server.test_client()
    r = c.get(_to_provider(c))
    assert r.status_code == 401, why
    assert why in r.get_data(as_text=True)
    assert _data_callback(app_, c).status_code == 401


def test_token_signed_by_another_key_is_refused(app_, provider) -> None:
    """Same kid as the published key, another private key: the signature check fails."""
    provider.sign_key = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
    try:
        c = app_.server.test_client()
        r = c.get(_to_provider(c))
    finally:
        provider.sign_key = None
    assert r.status_code == 401
    assert _data_callback(app_, c).status_code == 401


def test_replayed_or_forged_state_is_refused(app_) -> None:
    c = app_.server.test_client()
    back = _to_provider(c)
    assert c.get(back).status_code == 302
    c.get("/logout")
    assert c.get(back).status_code == 401  # the state was used once
    assert _data_callback(app_, c).status_code == 401
    c2 = app_.server.test_client()
    real = _to_provider(c2)
    forged = real.replace("state=", "state=x")
    r = c2.get(forged)
    assert r.status_code == 401 and "state" in r.get_data(as_text=True).lower()
    assert _data_callback(app_, c2).status_code == 401
    # another browser's callback URL (state made in someone else's session) is refused too
    c3 = app_.server.test_client()
    assert c3.get(real).status_code == 401


def test_password_form_can_be_turned_off(app_, monkeypatch) -> None:
    monkeypatch.setenv(_sso.PASSWORD_LOGIN_ENV, "0")
    c = app_.server.test_client()
    assert "<form hidden" in c.get("/login").get_data(as_text=True)
    r = c.post("/login", data={"name": "admin1", "password": "correct horse battery"})
    assert r.status_code == 403
    assert _data_callback(app_, c).status_code == 401


def test_not_configured_means_no_sso(app_, monkeypatch) -> None:
    monkeypatch.delenv(_sso.ISSUER_ENV)
    c = app_.server.test_client()
    assert "Sign in with" not in c.get("/login").get_data(as_text=True)
    assert c.get("/login/sso").status_code == 404


def test_client_secret_file_must_be_private(app_, tmp_path, monkeypatch) -> None:
    f = tmp_path / "oidc.secret"
    f.write_text(CLIENT_SECRET + "\n")
    monkeypatch.delenv(_sso.CLIENT_SECRET_ENV)
    monkeypatch.setenv(_sso.CLIENT_SECRET_FILE_ENV, str(f))
    f.chmod(0o644)
    with pytest.raises(EtlError, match="readable by others"):
        _sso._secret()
    f.chmod(0o600)
    c = app_.server.test_client()
    assert c.get(_to_provider(c)).status_code == 302
    assert _data_callback(app_, c).status_code == 200


def test_unreachable_provider_is_a_page_not_a_traceback(app_, monkeypatch) -> None:
    monkeypatch.setenv(_sso.ISSUER_ENV, "http://127.0.0.1:9")  # discard port: nobody answers
    r = app_.server.test_client().get("/login/sso")
    assert r.status_code == 502
    assert "Single sign-on is unavailable" in r.get_data(as_text=True)
