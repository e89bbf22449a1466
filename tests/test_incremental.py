"""Loads that cost what they add (issue 17 part 2, first step): a load that changes only the
participation log keeps the result tables that read no event (`materialise.EVENTS_FREE`) as
they are in the copied file, and recomputes the rest and the dashboard tables. The warehouse
after a sequence of such loads equals, table by table, a full `refresh` of the same data."""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from analytics.derive import materialise
from analytics.derive.materialise import EVENTS_FREE, RESULT_NAMES, kept_on, refresh
from etl import schema
from etl.load import load_paths
from etl.warehouse import build_next
from tests.analytics_fixture import demo_copy
from tests.program import TEST_KEY

DERIVED = sorted({t.name for t in RESULT_NAMES.values()} | set(schema.ROLLUP_TABLES))


def _meta(wh, key: str) -> str | None:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
    finally:
        con.close()
    return rows[0][0] if rows else None


def _tables(wh) -> dict[str, pd.DataFrame]:
    """Every derived table, rows in a canonical order (the order rows are stored in is not part
    of a table), floats kept as floats."""
    con = duckdb.connect(str(wh), read_only=True)
    try:
        out = {}
        for name in DERIVED:
            df = con.execute(f'SELECT * FROM "{name}"').df()
            out[name] = df.sort_values(list(df.columns), kind="stable",
                                       na_position="last").reset_index(drop=True)
        return out
    finally:
        con.close()


def _same(a: pd.DataFrame, b: pd.DataFrame, name: str) -> None:
    assert list(a.columns) == list(b.columns), name
    assert len(a) == len(b), (name, len(a), len(b))
    for c in a.columns:
        x, y = a[c], b[c]
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            xv, yv = x.to_numpy(float, na_value=np.nan), y.to_numpy(float, na_value=np.nan)
            assert np.array_equal(np.isnan(xv), np.isnan(yv)), (name, c)
            ok = ~np.isnan(xv)
            np.testing.assert_allclose(xv[ok], yv[ok], rtol=1e-9, atol=1e-9, err_msg=f"{name}.{c}")
        else:
            assert x.astype("string").fillna("<NA>").tolist() == \
                y.astype("string").fillna("<NA>").tolist(), (name, c)


def _day_of_events(demo_events: pd.DataFrame, day: pd.Timestamp, seed: int) -> pd.DataFrame:
    """A day of events of people and exchanges already in the demo, after its last event."""
    rows = demo_events.sample(400, random_state=seed)
    hours = np.random.default_rng(seed).integers(7, 20, len(rows))
    return rows.assign(occurred_at=[f"{day:%Y-%m-%d} {h:02d}:{m:02d}:00" for h, m in
                                    zip(hours, np.arange(len(rows)) % 60, strict=True)])


def test_an_events_append_keeps_what_reads_no_event_and_equals_a_full_refresh(
        tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", TEST_KEY)
    wh = demo_copy(tmp_path / "d")
    events = pd.read_csv(wh.parent / "demo" / "events.csv", dtype=str)
    last = pd.to_datetime(events.occurred_at, format="ISO8601", errors="coerce").max().normalize()
    before = _tables(wh)
    for i in (1, 2):
        path = tmp_path / f"day{i}" / "events.csv"
        path.parent.mkdir()
        _day_of_events(events, last + pd.Timedelta(days=i), i).to_csv(path, index=False)
        (rep,) = load_paths([path], wh)
        assert rep.status == "loaded" and rep.rows_added == 400, rep.summary()
        assert json.loads(_meta(wh, "results_kept")) == sorted(EVENTS_FREE)
    after = _tables(wh)
    # The kept tables are the very rows they were; the appended events moved the others.
    for name in (RESULT_NAMES[t].name for t in EVENTS_FREE):
        _same(before[name], after[name], name)
    moved = [n for n in DERIVED if not before[n].equals(after[n])]
    assert {"res_people", "res_person_days", "res_sensitivity", "res_dose_response"} <= set(moved)

    full = tmp_path / "full" / "warehouse.duckdb"
    full.parent.mkdir()
    shutil.copyfile(wh, full)
    with build_next(full) as con:
        refresh(con)  # no `changed`: everything recomputed
    assert json.loads(_meta(full, "results_kept")) == []
    rebuilt = _tables(full)
    for name in DERIVED:
        _same(after[name], rebuilt[name], name)


@pytest.mark.parametrize("changed", [{"responses"}, {"participants"}, {"events", "exchanges"},
                                     None])
def test_any_other_change_recomputes_everything(changed) -> None:
    state = materialise.StoredState(data_version=4, generated_at="", min_cell=10, seconds=1.0,
                                    timings={}, models={})
    assert kept_on({"events"}, state, 5, 10) == EVENTS_FREE
    assert kept_on(changed, state, 5, 10) == frozenset()
    # Stored results of an older version (a load without its derive) or another k: none kept.
    assert kept_on({"events"}, state, 6, 10) == frozenset()
    assert kept_on({"events"}, state, 5, 5) == frozenset()
    assert kept_on({"events"}, None, 5, 10) == frozenset()
    # Nothing changed (every file refused): every result table is kept.
    assert kept_on(set(), state, 5, 10) == frozenset(RESULT_NAMES)
