"""Issue 15's research grids in a real Chromium (pages/_grid.py, assets/grid.js): a column sorts
as numbers with the suppression label kept as text, a filter narrows the rows, a column
resizes, Copy puts the view on the clipboard as a spreadsheet pastes it, and an export writes
the view (filtered and sorted) in each of `analytics export`'s formats."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pandas as pd
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from analytics.suppression import SUPPRESSED_LABEL
from tests.pages_browser import READY, grid_shown, settle

BOX = "#participation-table-country"
NAME = "participation-table-country"


def _number(text: str) -> float | None:
    return None if text in ("", SUPPRESSED_LABEL) else float(text.replace(",", ""))


def _column(heads: list[str], rows: list[list[str]], header: str) -> list[str]:
    j = heads.index(header)
    return [r[j] for r in rows]


def _click(dash_duo, element) -> None:
    """A user's click, after scrolling the element clear of the sticky filter bar."""
    dash_duo.driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", element)
    element.click()


def _header(dash_duo, header: str, box: str = BOX):
    return next(h for h in dash_duo.driver.find_elements(
        By.CSS_SELECTOR, f"{box} .ag-header-row-column .ag-header-cell")
        if h.text.strip() == header)


def _sort(dash_duo, header: str, box: str = BOX) -> None:
    _click(dash_duo, _header(dash_duo, header, box).find_element(By.CSS_SELECTOR,
                                                                 ".ag-header-cell-label"))


def _wait_rows(dash_duo, test, timeout: float = 10, box: str = BOX
               ) -> tuple[list[str], list[list[str]]]:
    deadline = time.monotonic() + timeout
    while True:
        heads, rows = grid_shown(dash_duo, box)
        if test(heads, rows) or time.monotonic() > deadline:
            return heads, rows
        time.sleep(0.05)  # polling the DOM, not waiting for an outcome


def _download(dash_duo, name: str, timeout: float = 30) -> Path:
    path = Path(dash_duo.download_path) / name
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # Chromium renames its .crdownload file when complete
    assert path.exists(), sorted(p.name for p in Path(dash_duo.download_path).iterdir())
    return path


def test_a_grid_sorts_filters_resizes_copies_and_exports_its_view(dash_duo, dash_app) -> None:
    dash_duo.start_server(dash_app)
    dash_duo.driver.get(dash_duo.server_url + "/participation")
    settle(dash_duo, READY["participation"])
    # Sort as numbers: on the exchanges' grid, a column whose text order differs from its
    # number order ("1,056" < "930" as text); a second click sorts descending.
    by_exchange = "#participation-table-exchange"
    _click(dash_duo, dash_duo.find_element("#participation-breakdown-tab-exchange"))
    dash_duo.wait_for_element(f"{by_exchange} .ag-row")
    heads, before = grid_shown(dash_duo, by_exchange)

    def differs(header: str) -> bool:
        texts = [t for t in _column(heads, before, header) if _number(t) is not None]
        return sorted(texts) != sorted(texts, key=_number)

    col = next(h for h in heads[1:] if differs(h))
    _sort(dash_duo, col, by_exchange)
    heads, rows = _wait_rows(dash_duo, lambda h, r: r != before, box=by_exchange)
    vals = [_number(v) for v in _column(heads, rows, col)]
    assert vals == sorted(vals), (col, vals)
    _sort(dash_duo, col, by_exchange)
    heads, rows = _wait_rows(dash_duo, lambda h, r: _number(_column(h, r, col)[0]) == max(vals),
                             box=by_exchange)
    assert [_number(v) for v in _column(heads, rows, col)] == sorted(vals, reverse=True)

    # On the countries' grid the suppression label is a cell's text; sorted ascending, the
    # suppressed (blank) cells come first, never sorted as 0 nor as the label's text.
    _click(dash_duo, dash_duo.find_element("#participation-breakdown-tab-country"))
    dash_duo.wait_for_contains_text(BOX, SUPPRESSED_LABEL)
    heads, before = grid_shown(dash_duo, BOX)
    assert heads[:2] == ["country", "participants"], heads
    col = next(h for h in heads[1:] if SUPPRESSED_LABEL in _column(heads, before, h))
    _sort(dash_duo, col)
    heads, rows = _wait_rows(dash_duo, lambda h, r: r != before)
    vals = [_number(v) for v in _column(heads, rows, col)]
    blanks = [v for v in vals if v is None]
    assert blanks and vals[:len(blanks)] == blanks, vals
    assert vals[len(blanks):] == sorted(vals[len(blanks):]), vals

    # Filter: the country column's filter box keeps the rows that contain the text typed (a
    # letter in some countries' names, not all), in the sorted order.
    countries = [r[0] for r in rows]
    target = next(ch for ch in "aeiournlst"
                  if 3 <= sum(ch in c.lower() for c in countries) < len(countries))
    box = dash_duo.driver.find_elements(
        By.CSS_SELECTOR, f"{BOX} .ag-floating-filter input[type='text']")[0]
    box.send_keys(target)
    heads, rows = _wait_rows(dash_duo, lambda h, r: all(target in x[0].lower() for x in r))
    assert [r[0] for r in rows] == [c for c in countries if target in c.lower()], rows

    # Resize: dragging the first column's edge widens it.
    first = _header(dash_duo, "country")
    width = first.size["width"]
    grip = first.find_element(By.CSS_SELECTOR, ".ag-header-cell-resize")
    ActionChains(dash_duo.driver).click_and_hold(grip).move_by_offset(80, 0).release().perform()
    assert _header(dash_duo, "country").size["width"] >= width + 60

    # Copy: the view as tab-separated text, header first, as shown.
    dash_duo.driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": dash_duo.server_url,
        "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    _click(dash_duo, dash_duo.find_element(f"{BOX} .ei-grid-copy"))
    dash_duo.wait_for_text_to_equal(f"#{NAME}-status", f"Copied {len(rows)} rows.")
    pasted = dash_duo.driver.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('ERR ' + e))")
    assert [line.split("\t") for line in pasted.splitlines()] == [heads, *rows], pasted

    # Export: the same view, filtered and sorted, in every format; numbers as numbers.
    want = pd.DataFrame(rows, columns=heads)
    for fmt, label in (("csv", "CSV"), ("xlsx", "XLSX"), ("parquet", "Parquet")):
        _click(dash_duo, dash_duo.driver.find_element(
            By.XPATH, f"//*[@id='{NAME}']//div[@role='group']//button[text()='{label}']"))
        path = _download(dash_duo, f"{NAME}.{fmt}")
        if fmt == "csv":
            got = pd.read_csv(io.StringIO(path.read_bytes().decode("utf-8-sig")), dtype=str,
                              keep_default_na=False)
            assert list(csv.reader(io.StringIO(path.read_text("utf-8-sig"))))[0] == \
                [*heads, "suppressed"]
        elif fmt == "xlsx":
            got = pd.read_excel(path, sheet_name="view")
        else:
            got = pd.read_parquet(path)
            assert pd.api.types.is_integer_dtype(got[col].dtype), got.dtypes
        assert list(got.columns) == [*heads, "suppressed"], got.columns
        assert got["country"].astype(str).tolist() == want["country"].tolist(), fmt
        assert [None if pd.isna(v) or v == "" else float(v) for v in got[col]] == \
            [_number(v) for v in want[col]], fmt
    assert dash_duo.get_logs() == []
