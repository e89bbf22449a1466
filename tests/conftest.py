"""Shared test configuration: headless Chromium for dash[testing]'s `dash_duo`.

dash's pytest plugin builds the browser from `--webdriver` (Chrome by default), `--headless`, and
the first value returned by the `pytest_setup_options` hook, to which it then adds
`--no-sandbox --disable-gpu`. We always run headless, point it at Debian's chromium, and make
every host other than the test server unresolvable, so a request leaving the origin fails loudly
(it shows as a SEVERE console error) instead of silently reaching the network.

Without Chromium/chromedriver the browser tests are skipped with the reason; with CI=true they
fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest

CHROME_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chrome_binary() -> str | None:
    env = os.environ.get("DASH_TEST_CHROMEPATH")
    if env and os.path.exists(env):
        return env
    for name in CHROME_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_missing_reason() -> str | None:
    if chrome_binary() is None:
        return "Chromium is not installed (apt-get install chromium)"
    if shutil.which("chromedriver") is None:
        return "chromedriver is not on PATH (apt-get install chromium-driver)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: needs headless Chromium and chromedriver")
    config.addinivalue_line("markers", "spark: needs pyspark and a Java runtime (issue 16)")
    # Under pytest-xdist each worker serves its dash_duo apps from ports of its own (dash's
    # runner counts up from 8050 in every process, so two workers would collide).
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        from dash.testing.application_runners import BaseDashRunner

        BaseDashRunner._next_port = 8050 + 200 * (int(worker[2:]) + 1)
    # Headless always: there is no display on CI or on the dev machine.
    if hasattr(config.option, "headless"):
        config.option.headless = True


# The longest units of work of a run (`--dist loadscope`: a module), longest first. xdist hands
# units out in collection order (`--no-loadscope-reorder` in pyproject.toml), so the long browser
# modules start at once on both workers and the many short modules fill in after them, and both
# workers finish together instead of one running the browser modules alone at the end. Measured
# with `--durations` (setup included, -n 0); a module not listed follows in xdist's own order
# (most tests first).
LONGEST_FIRST = (
    "test_jobs.py",  # builds the shared 2,000-participant demo if no one has yet
    "test_pages_partnerships_equity.py",  # builds the 10,000-participant demo
    "test_data_downloads.py",  # builds its 800-participant demo
    "test_pages.py",
    "test_snapshot.py",
    "test_callbacks.py",
    "test_pages_overview.py",
    "test_pages_outcomes.py",
    "test_pages_participation.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the modules as `LONGEST_FIRST`, then by number of tests (a stable sort: a module's
    tests stay together and in their order, so its module fixtures are built once)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    tests = Counter(item.path for item in items)
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), -tests[item.path],
                                 str(item.path)))


def pytest_setup_options():  # dash.testing hook: options for the webdriver
    from selenium.webdriver.chrome.options import Options

    options = Options()
    binary = chrome_binary()
    if binary:
        options.binary_location = binary
    options.add_argument("--window-size=1400,1000")
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, "
                         "EXCLUDE 127.0.0.1")
    options.add_argument("--disable-extensions")
    options.add_argument("--no-first-run")
    return options


@pytest.fixture(scope="module")
def no_derive():
    """For a module whose loads are about the rows read and loaded, never the derived tables
    (`pytestmark = pytest.mark.usefixtures("no_derive")`): its loads skip the derive step
    (`tests.program.NO_DERIVE`, the test hook in `etl.phases`)."""
    from tests import program

    with pytest.MonkeyPatch.context() as mp:
        for name, value in program.NO_DERIVE.items():
            mp.setenv(name, value)
        yield


@pytest.fixture(autouse=True)
def _require_browser(request: pytest.FixtureRequest) -> None:
    """Runs before `dash_duo` (autouse fixtures come first in their scope): skip, or on CI fail,
    when the browser is missing, instead of letting selenium retry and time out."""
    if "dash_duo" not in request.fixturenames and not request.node.get_closest_marker("browser"):
        return
    reason = browser_missing_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"browser test skipped: {reason}")


@pytest.fixture(scope="session", autouse=True)
def _shared_builds_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`tests.shared_builds` builds a demo warehouse once per run for all xdist workers: in the
    run's base temporary directory, the parent of each worker's own (pytest's, so it is removed
    with old runs)."""
    from tests.shared_builds import set_shared_root

    base = tmp_path_factory.getbasetemp()
    set_shared_root(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


@pytest.fixture(scope="module")
def dash_app():
    """The real app on the fixture warehouse of the page tests (`tests/test_pages*.py`; the app
    reads the path from the environment), built once per run (`tests.pages_browser`)."""
    from tests.pages_browser import fixture_warehouse

    path = fixture_warehouse()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXCHANGE_IMPACT_WAREHOUSE", str(path))
        import app as app_module

        yield app_module.app


@pytest.fixture(scope="module")
def pages_demo() -> tuple:
    """(warehouse, source) of the demo program for the page tests: the run's one demo build, or
    the fixture warehouse if the demo cannot be built (`tests.pages_browser.pages_demo`)."""
    from tests.pages_browser import pages_demo as demo

    return demo()
