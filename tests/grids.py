"""Reading the research grids (pages/_grid.py) in a Dash answer, as a user reads them: per
grid, its rows as {header: text shown}."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _grids(node: Any) -> Iterator[tuple[list[dict], list[dict]]]:
    if isinstance(node, dict):
        if node.get("type") == "AgGrid" and isinstance(node.get("props"), dict):
            p = node["props"]
            yield p.get("columnDefs") or [], p.get("rowData") or []
            return
        for v in node.values():
            yield from _grids(v)
    elif isinstance(node, list | tuple):
        for v in node:
            yield from _grids(v)
    elif hasattr(node, "to_plotly_json"):
        if type(node).__name__ == "AgGrid":
            yield node.columnDefs or [], node.rowData or []
            return
        for name in getattr(node, "_prop_names", ()):
            v = getattr(node, name, None)
            if v is not None and name not in ("rowData", "columnDefs", "figure"):
                yield from _grids(v)


def grids(node: Any) -> list[list[dict[str, str]]]:
    """Every grid under `node` (a component, or an answer's JSON), as rows of header → text."""
    out = []
    for defs, rows in _grids(node):
        out.append([{d["headerName"]: r.get(f"{d['field']}_t", "") for d in defs} for r in rows])
    return out


def grid_rows(node: Any) -> list[dict[str, str]]:
    """The rows of the one grid under `node`."""
    found = grids(node)
    assert len(found) == 1, f"{len(found)} grids where one was expected"
    return found[0]
