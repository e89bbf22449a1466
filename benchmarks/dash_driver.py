"""Drive a running Dash app's real callback endpoints, as a browser would.

Reads `/_dash-dependencies` and builds, for every callback that the filter store drives (and
every one that only page controls with a given value drive), the JSON body the Dash renderer
posts to `/_dash-update-component`. Used by the load benchmark and
by the test that the dashboard keeps answering during a load.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

FILTER_STORE = "filters-store"


def _get(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _outputs(spec: str) -> list[dict] | dict:
    if spec.startswith(".."):
        parts = [p for p in spec.strip(".").split("...")]
        return [{"id": p.rsplit(".", 1)[0], "property": p.rsplit(".", 1)[1]} for p in parts]
    ident, prop = spec.split("@")[0].rsplit(".", 1)
    return {"id": ident, "property": prop}


def dependencies(base: str) -> list[dict]:
    """The app's callback graph, as the renderer fetches it once per page load."""
    return _get(base + "/_dash-dependencies")


def callback_bodies(base: str, filters: dict | None = None,
                    values: dict[str, Any] | None = None, deps: list[dict] | None = None
                    ) -> list[dict]:
    """One request body per data callback: each that reads the filter store, and each whose
    inputs are all page controls given in `values` (e.g. the Outcomes forest and model table)."""
    values = values or {}
    bodies = []
    for dep in deps if deps is not None else dependencies(base):
        ids = [i["id"] for i in dep["inputs"]]
        driven = FILTER_STORE in ids or all(i in values for i in ids)
        if not driven or any(i.startswith("{") for i in ids) or dep["state"]:
            continue
        out = dep["output"]
        if out.startswith("..{") or "nav-link" in out or "url-writer" in out:
            continue
        inputs = [
            {"id": i["id"], "property": i["property"],
             "value": (filters or {}) if i["id"] == FILTER_STORE else values.get(i["id"])}
            for i in dep["inputs"]
        ]
        bodies.append({
            "output": dep["output"], "outputs": _outputs(dep["output"]), "inputs": inputs,
            "changedPropIds": [f"{FILTER_STORE}.data" if FILTER_STORE in ids
                               else f"{ids[0]}.{dep['inputs'][0]['property']}"], "state": [],
        })
    return bodies


def post(base: str, body: dict, timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(
        base + "/_dash-update-component", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
