"""Server CPU time per request, for the load benchmark (issue 17, part 3).

With ``EXCHANGE_IMPACT_CPU_HEADER=1`` (set by `benchmarks/dashboard_load.py`, off otherwise)
every answer carries ``X-Server-CPU-ms``: the worker process's CPU time (`time.process_time`,
all its threads, DuckDB's included) from the request's first hook to its answer. Meaningful
with gunicorn's sync workers, which serve one request at a time per process.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g

__all__ = ["CPU_ENV", "CPU_HEADER", "init_app"]

CPU_ENV = "EXCHANGE_IMPACT_CPU_HEADER"
CPU_HEADER = "X-Server-CPU-ms"


def init_app(server: Flask) -> None:
    """Register the hooks when the environment asks for them; call before any other hook, so
    that login and scope checks count too (Flask runs after_request hooks in reverse)."""
    if os.environ.get(CPU_ENV) != "1":
        return

    @server.before_request
    def _cpu_start() -> None:
        g._cpu_start = time.process_time()

    @server.after_request
    def _cpu_stop(response: Response) -> Response:
        start = g.get("_cpu_start")
        if start is not None:
            response.headers[CPU_HEADER] = f"{(time.process_time() - start) * 1000:.2f}"
        return response
