"""The PDF engine: one headless Chromium per process, driven over the DevTools protocol.

A report is an HTML file on disk; `Engine.print_pdf` opens it in a fresh tab, waits until the
page says every figure has finished drawing (`window.__report.done`, set by the page after
all its `Plotly.newPlot` promises resolve and the fonts are ready), then asks Chromium for a
tagged PDF with an outline from the headings (`Page.printToPDF`). The browser is started on
first use and kept for the process (`engine()`), so a second report costs no browser start.

choreographer (the pipe-based CDP client kaleido 1 uses) is asynchronous; the engine runs its
event loop in one daemon thread and the synchronous callers submit coroutines to it, so two
reports printed at once from two threads each get their own tab in the same browser.

Nothing here is imported by `import reports` until a PDF is printed: a machine without
Chromium keeps the rest of the app, and gets `ChromiumMissing` with the install line.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import os
import shutil
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ChromiumMissing", "ReportRenderError", "INSTALL_HINT", "ENV_CHROMIUM",
           "chromium_path", "Engine", "engine", "shutdown"]

T = TypeVar("T")
ENV_CHROMIUM = "EXCHANGE_IMPACT_CHROMIUM"
INSTALL_HINT = (f"PDF snapshots need Chromium: apt-get install chromium (or set {ENV_CHROMIUM} "
                "to the browser's path)")
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# How long one report may take to draw its figures before printing is given up.
RENDER_TIMEOUT_S = 120.0


# The discard port of loopback: nothing listens there, so a request through it is refused locally.
NO_ROUTE_PROXY = "http://127.0.0.1:9"


class ChromiumMissing(RuntimeError):
    """No Chromium to print with; the message says how to install it."""


class ReportRenderError(RuntimeError):
    """The report page failed to draw (a figure's JavaScript error) or did not finish in time."""


def chromium_path() -> str | None:
    """The browser to print with: `ENV_CHROMIUM` when it names an executable file, else the
    first of chromium/chromium-browser/google-chrome/chrome on PATH."""
    env = os.environ.get(ENV_CHROMIUM, "").strip()
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Engine:
    """One headless Chromium and the event loop that talks to it."""

    def __init__(self, path: str | None = None) -> None:
        path = path or chromium_path()
        if path is None:
            raise ChromiumMissing(INSTALL_HINT)
        try:
            import choreographer  # noqa: F401
        except ImportError as e:  # pragma: no cover - pinned in requirements.txt
            raise ChromiumMissing(f"PDF snapshots need the choreographer package ({e}); "
                                  "pip install -r requirements.txt") from None
        self.path = path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="report-chromium")
        self._thread.start()
        try:
            self._browser = self._run(self._open(), timeout=60)
        except Exception as e:
            self._stop_loop()
            raise ChromiumMissing(f"Chromium at {path} did not start ({e}). "
                                  f"{INSTALL_HINT}") from None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self) -> Any:
        from choreographer import Browser

        # Every request that is not loopback goes to a proxy nothing listens on, so it fails
        # at once on this machine: the report's own page asks for nothing outside it (a test
        # holds its HTML to file: and data: URLs), and choreographer has no hook for
        # --disable-background-networking, so Chromium's own background requests would
        # otherwise try to leave. Participant data is personal data.
        browser = Browser(self.path, headless=True, enable_gpu=False, enable_sandbox=False,
                          enable_extensions=False, proxy_server=NO_ROUTE_PROXY)
        await browser.open()
        return browser

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._browser.subprocess.poll() is None

    def print_pdf(self, html: Path, *, footer: str, timeout: float = RENDER_TIMEOUT_S) -> bytes:
        """The PDF of the HTML file `html` (A4, backgrounds, tagged, outline, `footer` as the
        page footer template). Raises ReportRenderError when the page reports a drawing
        error or is not ready within `timeout` seconds."""
        return self._run(self._print(html.resolve().as_uri(), footer, timeout),
                         timeout=timeout + 30)

    async def _print(self, url: str, footer: str, timeout: float) -> bytes:
        tab = await self._browser.create_tab("about:blank")
        try:
            _check(await tab.send_command("Page.enable"))
            _check(await tab.send_command("Page.navigate", params={"url": url}))
            deadline = time.monotonic() + timeout
            while True:
                state = await _evaluate(tab, "JSON.stringify(window.__report || null)")
                if state and state != "null":
                    import json

                    st = json.loads(state)
                    if st.get("error"):
                        raise ReportRenderError(f"the report page failed to draw: {st['error']}")
                    if st.get("done"):
                        break
                if time.monotonic() > deadline:
                    raise ReportRenderError(f"the report's figures did not finish drawing within "
                                            f"{timeout:.0f} s")
                await asyncio.sleep(0.05)
            res = _check(await tab.send_command("Page.printToPDF", params={
                "printBackground": True,
                "preferCSSPageSize": True,
                "displayHeaderFooter": True,
                "headerTemplate": "<span></span>",
                "footerTemplate": footer,
                "generateTaggedPDF": True,
                "generateDocumentOutline": True,
                "transferMode": "ReturnAsBase64",
            }))
            return base64.b64decode(res["result"]["data"])
        finally:
            try:
                await self._browser.close_tab(tab.target_id)
            except Exception:  # the browser may be gone; the report is done or failed anyway
                pass

    def close(self) -> None:
        try:
            self._run(self._browser.close(), timeout=20)
        except Exception:  # closing a dead browser: nothing left to release
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _check(response: dict[str, Any]) -> dict[str, Any]:
    if "error" in response:
        raise ReportRenderError(f"Chromium refused a command: {response['error']}")
    return response


async def _evaluate(tab: Any, expression: str) -> Any:
    res = _check(await tab.send_command("Runtime.evaluate", params={
        "expression": expression, "returnByValue": True}))
    return res.get("result", {}).get("result", {}).get("value")


_ENGINE: Engine | None = None
_LOCK = threading.Lock()


def engine() -> Engine:
    """The process's engine, started on first use and restarted if its browser died."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None or not _ENGINE.alive:
            if _ENGINE is not None:
                _ENGINE.close()
            _ENGINE = Engine()
            atexit.register(shutdown)
        return _ENGINE


def shutdown() -> None:
    """Close the process's browser (at exit, or by a test that wants a cold start)."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is not None:
            _ENGINE.close()
            _ENGINE = None
