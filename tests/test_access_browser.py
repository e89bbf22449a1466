"""The login form in a real headless Chromium (issue 14): no session → redirected to /login; a
wrong password shows the error; the right one shows the page, with who is logged in."""

from __future__ import annotations

import os

import pytest
from selenium.webdriver.common.by import By

from etl import accounts
from tests.dashboard_fixture import build_fixture_warehouse

pytestmark = pytest.mark.browser
PW = "correct horse battery"


@pytest.fixture(scope="module")
def dash_app(tmp_path_factory):
    path = build_fixture_warehouse(tmp_path_factory.mktemp("wh") / "warehouse.duckdb")
    accounts.add_user(path, "ana", "lead", PW, programs=["Bridges"])
    old = os.environ.get("EXCHANGE_IMPACT_WAREHOUSE")
    os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = str(path)
    import app as app_module

    yield app_module.app
    if old is None:
        os.environ.pop("EXCHANGE_IMPACT_WAREHOUSE", None)
    else:
        os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = old


def _submit(dash_duo, name: str, password: str) -> None:
    d = dash_duo.driver
    d.find_element(By.ID, "name").clear()
    d.find_element(By.ID, "name").send_keys(name)
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.ID, "login-submit").click()


def test_login_through_the_form(dash_duo, dash_app) -> None:
    dash_duo.server(dash_app)  # not start_server: it waits for a Dash page, this is /login
    dash_duo.driver.get(dash_duo.server.url.rstrip("/") + "/participation")
    dash_duo.wait_for_element("#login-form", timeout=10)
    assert "/login?next=/participation" in dash_duo.driver.current_url
    _submit(dash_duo, "ana", "wrong password")
    assert "Wrong account name or password" in \
        dash_duo.wait_for_element("#login-error", timeout=10).text
    _submit(dash_duo, "ana", PW)
    bar = dash_duo.wait_for_element("#user-bar", timeout=20)
    assert "Logged in as ana (lead; Bridges)" in bar.text
    assert dash_duo.driver.current_url.endswith("/participation")
    assert dash_duo.find_elements("#demo-mode-banner") == []
    # the CSP lets Dash's own inline scripts run (by hash) and the page draw
    dash_duo.wait_for_element("#participation-weekly", timeout=20)
    csp = [e["message"] for e in dash_duo.get_logs() or []
           if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]
    assert csp == []
