"""pages._timing: the server's CPU time per answer, only when the load benchmark asks."""

from __future__ import annotations

from flask import Flask

from pages import _timing


def _app() -> Flask:
    app = Flask(__name__)

    @app.route("/work")
    def work() -> str:
        return str(sum(i * i for i in range(200_000)))  # some CPU to count

    _timing.init_app(app)
    return app


def test_the_header_is_there_only_when_asked(monkeypatch) -> None:
    monkeypatch.delenv(_timing.CPU_ENV, raising=False)
    assert _timing.CPU_HEADER not in _app().test_client().get("/work").headers
    monkeypatch.setenv(_timing.CPU_ENV, "1")
    r = _app().test_client().get("/work")
    assert r.status_code == 200
    ms = float(r.headers[_timing.CPU_HEADER])
    assert ms > 0  # 200,000 multiplications take CPU time; the header counts it
