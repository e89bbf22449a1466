"""The ETL layer: the only writer of the warehouse (see `etl.warehouse` for the file's life cycle).

`python -m etl load|demo|status`; the library beneath it is `etl.load.load_paths`.
"""

from __future__ import annotations

from pathlib import Path


def ensure_warehouse(warehouse: Path | str | None = None) -> None:
    """Build the demo warehouse on the dashboard's first start; reuse it afterwards."""
    from etl.cli import ensure_demo_warehouse
    from etl.warehouse import DEFAULT_WAREHOUSE

    ensure_demo_warehouse(Path(warehouse or DEFAULT_WAREHOUSE))
