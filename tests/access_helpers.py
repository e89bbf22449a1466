"""What the tests of login, roles, scope and downloads share (issue 14): a warehouse with
accounts, the app pointed at it with CSRF on, logging in through the real form, posting a
callback as the browser does, and the Data page's download round trip (click, poll while the
builder runs, fetch the file from its URL).

Used by tests/test_access.py, test_data_downloads.py, test_export_access.py,
test_funder_outputs.py, test_scoped_downloads.py and test_sso.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from etl import accounts
from tests.dashboard_fixture import build_fixture_warehouse

__all__ = ["PW", "with_accounts", "dashboard", "login", "logged_in", "callbacks", "body", "post",
           "download_body", "download"]

PW = "correct horse battery"

# name -> (role, {"programs": [...], "clusters": [...]})
Users = Mapping[str, tuple[str, Mapping[str, Sequence[str]]]]


def with_accounts(path: Path, users: Users, **fixture: Any) -> Path:
    """The dashboard fixture warehouse at `path` (`build_fixture_warehouse(**fixture)`) with
    these accounts, all with the password `PW`."""
    wh = build_fixture_warehouse(path, **fixture)
    for name, (role, scope) in users.items():
        accounts.add_user(wh, name, role, PW, **scope)
    return wh


def dashboard(monkeypatch: Any, warehouse: Path) -> ModuleType:
    """The app module serving `warehouse`, with CSRF protection on (as in production)."""
    monkeypatch.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(warehouse))
    import app as app_module

    app_module.server.config["TESTING"] = False  # keep CSRF on
    return app_module


def login(client: Any, name: str, password: str = PW, csrf: bool = True) -> Any:
    """Post the login form as a browser does (with the form's CSRF token unless `csrf=False`)."""
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    data = {"name": name, "password": password}
    if csrf:
        data["csrf_token"] = token.group(1)
    return client.post("/login", data=data)


def logged_in(app_module: ModuleType, name: str) -> Any:
    """A test client logged in as `name` (the login must succeed)."""
    c = app_module.server.test_client()
    r = login(c, name)
    assert r.status_code == 302, (name, r.status_code)
    return c


def callbacks(app_module: ModuleType) -> dict[str, dict]:
    app_module.server.test_client().get("/_dash-dependencies")  # Dash fills the map on a request
    return {k: v for k, v in app_module.app.callback_map.items() if "callback" in v}


def body(output: str, entry: dict, store: dict | None = None) -> dict:
    """A callback request for `output` with every input and state None but the filter store."""
    def items(specs):
        return [{"id": s["id"], "property": s["property"],
                 "value": store if s["id"] == "filters-store" else None}
                for s in specs if not s["id"].startswith("{")]

    def spec(o: str) -> dict:
        cid, prop = o.rsplit("@", 1)[0].rsplit(".", 1)
        return {"id": cid, "property": prop}
    outs = ([spec(o) for o in output.strip(".").split("...")] if output.startswith("..")
            else spec(output))
    return {"output": output, "outputs": outs, "inputs": items(entry["inputs"]),
            "state": items(entry.get("state", [])), "changedPropIds": []}


def post(client: Any, request: dict) -> Any:
    return client.post("/_dash-update-component", data=json.dumps(request),
                       content_type="application/json")


_BUTTONS = ("data-download-button", "data-download-all", "data-download-poll")


def download_body(button: str, table: object, fmt: object = "csv", pending: object = None,
                  unsuppressed: object = ()) -> dict:
    """The Data page's download request as the page posts it: a click on `button`
    ("data-download-button" one table, "data-download-all" the zip) or a poll
    ("data-download-poll", with the `pending` the last answer stored)."""
    poll = button == "data-download-poll"
    return {
        "output": "..data-download-file.data...data-download-status.children..."
                  "data-download-pending.data...data-download-poll.disabled..",
        "outputs": [{"id": "data-download-file", "property": "data"},
                    {"id": "data-download-status", "property": "children"},
                    {"id": "data-download-pending", "property": "data"},
                    {"id": "data-download-poll", "property": "disabled"}],
        "inputs": [{"id": b, "property": "n_intervals" if b.endswith("poll") else "n_clicks",
                    "value": 1 if b == button else None} for b in _BUTTONS],
        "state": [{"id": "data-download-table", "property": "value", "value": table},
                  {"id": "data-download-format", "property": "value", "value": fmt},
                  {"id": "data-download-pending", "property": "data", "value": pending},
                  {"id": "data-download-unsuppressed", "property": "value",
                   "value": list(unsuppressed) if isinstance(unsuppressed, tuple)
                   else unsuppressed}],
        "changedPropIds": [f"{button}.{'n_intervals' if poll else 'n_clicks'}"],
    }


def download(client: Any, table: str | None, fmt: str = "csv", unsuppressed: object = (),
             button: str = "data-download-button") -> tuple[dict, bytes | None, Any]:
    """Click, poll as the page does until the builder (its own process) is done, fetch the file
    from its URL as the browser does: the last answer, the file's bytes (None when the page
    said no) and the file's HTTP response. Waits on the build's state; the test's outcome
    never depends on how long."""
    r = post(client, download_body(button, table, fmt, unsuppressed=unsuppressed))
    assert r.status_code == 200, r.data[:500]
    got = r.get_json()["response"]
    while "data-download-file" not in got and (got.get("data-download-pending") or {}).get("data"):
        assert got["data-download-poll"]["disabled"] is False
        time.sleep(0.2)
        r = post(client, download_body("data-download-poll", None, None,
                                       got["data-download-pending"]["data"]))
        assert r.status_code == 200, r.data[:500]
        got = r.get_json()["response"]
    if "data-download-file" not in got:
        return got, None, None
    file_ = client.get(got["data-download-file"]["data"]["url"])
    assert file_.status_code == 200, file_.data[:300]
    return got, file_.data, file_
