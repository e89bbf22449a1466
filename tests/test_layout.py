"""The package layout is the architecture: these tests fail when a module crosses its role."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


STATS = sorted((ROOT / "analytics" / "stats").glob("*.py"))


@pytest.mark.parametrize("path", STATS, ids=lambda p: p.name)
def test_the_statistics_import_no_database_no_dash_and_no_other_layer(path: Path) -> None:
    bad = {m for m in _imports(path)
           if m.split(".")[0] in {"duckdb", "dash", "dash_bootstrap_components", "plotly", "etl",
                                  "pages", "flask"}
           or m.startswith(("analytics.derive", "analytics.read", "analytics.outputs"))}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_statistics_package_is_not_empty() -> None:
    assert {p.stem for p in STATS} >= {"scales", "reliability", "prepost", "longitudinal",
                                       "attrition", "means", "survival"}


@pytest.mark.parametrize("path", sorted((ROOT / "pages").glob("*.py")), ids=lambda p: p.name)
def test_pages_reach_the_warehouse_only_through_the_read_layer(path: Path) -> None:
    """Pages import no DuckDB and no derive step: a figure's numbers come from `analytics.read`."""
    bad = {m for m in _imports(path)
           if m.split(".")[0] == "duckdb" or m.startswith("analytics.derive")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


READ = sorted((ROOT / "analytics" / "read").glob("*.py"))
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("path", READ, ids=lambda p: p.name)
def test_every_read_layer_function_fits_on_a_screen(path: Path) -> None:
    """One query per figure, each readable at a glance: no function (decorators and docstring
    included) longer than MAX_FUNCTION_LINES lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    long = [(node.name, node.end_lineno - min([node.lineno, *(d.lineno for d in
                                                              node.decorator_list)]) + 1)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    over = [(name, n) for name, n in long if n > MAX_FUNCTION_LINES]
    assert not over, f"{path.relative_to(ROOT)}: {over}"


def test_the_read_layer_has_no_catch_all_module() -> None:
    """The page and topic modules, the filter model, the cache (with the funders' rounding it
    applies on the way out) and the shared SQL; no facade that re-exports everything
    (queries.py was 1,650 lines)."""
    assert {p.stem for p in READ} == {"__init__", "filters", "cache", "rounding", "sql", "loads",
                                      "overview", "participation", "outcomes", "equity",
                                      "partnerships", "disclosure", "slices"}


@pytest.mark.parametrize("path", READ, ids=lambda p: p.name)
def test_the_read_layer_reads_no_base_event_table(path: Path) -> None:
    """The read layer reads the derived tables (rollups, day facts); the event log, the answers
    and the scores are read once per data version by the derive step, and by the test oracle
    (tests/read_oracle.py)."""
    text = path.read_text(encoding="utf-8")
    for name in ("schema.EVENTS", "schema.RESPONSES", "schema.RES_SCALE_SCORES",
                 "schema.PARTICIPANTS"):
        assert name not in text, f"{path.relative_to(ROOT)} names {name}"
