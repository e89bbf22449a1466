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
from analytics.derive.materialise import (
    EVENTS_FREE,
    PAIRS_ONLY,
    RESULT_NAMES,
    kept_on,
    refresh,
)
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
        # events of pairs that had events: the funnel's roster and the active units stand too
        assert json.loads(_meta(wh, "results_kept")) == sorted(EVENTS_FREE | PAIRS_ONLY)
        # and the attrition baselines' per-scale rows (pre scores only) are read back
        assert json.loads(_meta(wh, "results_kept_rows")) == ["attrition_baseline"]
        # the dashboard tables followed from the touched day and people, not from a rebuild
        # (a local day of events spans two or three UTC days)
        assert " day(s) of events, " in _meta(wh, "rollups_incremental"), i
    after = _tables(wh)
    # The kept tables are the very rows they were; the appended events moved the others.
    for name in (RESULT_NAMES[t].name for t in EVENTS_FREE | PAIRS_ONLY):
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


_NAIVE = "%Y-%m-%d %H:%M:%S"


def _rebuilt_equals(wh, tmp_path) -> None:
    """Every derived table of `wh` equals that of a full refresh of a copy of it."""
    full = tmp_path / "full" / "warehouse.duckdb"
    full.parent.mkdir()
    shutil.copyfile(wh, full)
    with build_next(full) as con:
        refresh(con)
    assert _meta(full, "rollups_incremental") == ""
    got, rebuilt = _tables(wh), _tables(full)
    for name in DERIVED:
        _same(got[name], rebuilt[name], name)
    for key in ("rollups_multi_exchange", "rule_months_base"):
        assert _meta(wh, key) == _meta(full, key), key


def test_appends_into_days_that_have_events_equal_a_rebuild(tmp_path, monkeypatch) -> None:
    """The harder appends: events on days that already hold other events, a corrected event
    (same key, other minutes), people taking part in a second exchange (the multi-exchange
    count and the people cube's first exchange move), a day in a month of its own; then events
    from before the data's first month, which the month masks cannot take: a full rebuild."""
    monkeypatch.setenv("EXCHANGE_IMPACT_KEY", TEST_KEY)
    wh = demo_copy(tmp_path / "d")
    events = pd.read_csv(wh.parent / "demo" / "events.csv", dtype=str)
    when = pd.to_datetime(events.occurred_at, format="ISO8601", errors="coerce")
    known = pd.read_csv(wh.parent / "demo" / "exchanges.csv", dtype=str).exchange_id
    # the demo's planted mistakes (a mistyped year, unknown exchanges) are not what this tests
    events = events[(when.dt.year < 2100) & events.exchange_id.isin(known)].reset_index(drop=True)
    when = pd.to_datetime(events.occurred_at, format="ISO8601")
    rng = np.random.default_rng(3)
    # 1. Busy days in the middle of the data: 300 new events on the days of existing ones, and
    #    one existing event again with other minutes (times are the institution's local ones,
    #    as the demo writes them).
    mid = events.iloc[rng.choice(len(events), 300, replace=False)].copy()
    mid["occurred_at"] = (when.iloc[mid.index] + pd.Timedelta(minutes=7)).dt.strftime(
        _NAIVE)
    fixed = events.iloc[[5]].copy()
    fixed["minutes"] = "99"
    # 2. People in a second exchange: their events moved to another exchange of the demo.
    other = events.iloc[rng.choice(len(events), 40, replace=False)].copy()
    exchanges = sorted(known)
    other["exchange_id"] = [exchanges[(exchanges.index(x) + 1) % len(exchanges)]
                            for x in other.exchange_id]
    other["occurred_at"] = (when.iloc[other.index] + pd.Timedelta(hours=1)).dt.strftime(
        _NAIVE)
    #    And a first event for enrolled people with neither events nor answers: the funnel's
    #    roster and cost's active units move, so neither may be kept.
    people = pd.read_csv(wh.parent / "demo" / "participants.csv", dtype=str).participant_id
    answered = pd.read_csv(wh.parent / "demo" / "responses.csv", dtype=str,
                           usecols=["participant_id"]).participant_id
    idle = sorted(set(people) - set(events.participant_id) - set(answered))[:3]
    assert idle, "the demo has enrolled people without events or answers"
    other = pd.concat([other, other.iloc[:len(idle)].assign(participant_id=idle)])
    # 3. A day two months after the last.
    late = events.sample(50, random_state=4).assign(
        occurred_at=(when.max().normalize() + pd.Timedelta(days=62, hours=10)).strftime(_NAIVE))
    late["activity"] = [f"{a} {i}" for i, a in enumerate(late.activity)]
    multi_before = int(_meta(wh, "rollups_multi_exchange"))
    for i, part in enumerate([pd.concat([mid, fixed]), other, late]):
        path = tmp_path / f"load{i}" / "events.csv"
        path.parent.mkdir()
        part.to_csv(path, index=False)
        (rep,) = load_paths([path], wh)
        assert rep.status == "loaded" and rep.rows_rejected == 0, rep.summary()
        assert _meta(wh, "rollups_incremental"), (i, rep.summary())
        kept = set(json.loads(_meta(wh, "results_kept")))
        assert kept == (EVENTS_FREE if i == 1 else EVENTS_FREE | PAIRS_ONLY), i
        if i == 0:
            assert rep.rows_replaced >= 1, rep.summary()
    assert int(_meta(wh, "rollups_multi_exchange")) > multi_before
    _rebuilt_equals(wh, tmp_path)

    early = events.sample(30, random_state=5).assign(
        occurred_at=(when.min().normalize() - pd.Timedelta(days=40)).strftime(
            "%Y-%m-%d 08:00:00"))
    path = tmp_path / "early" / "events.csv"
    path.parent.mkdir()
    early.to_csv(path, index=False)
    (rep,) = load_paths([path], wh)
    assert rep.status == "loaded", rep.summary()
    assert _meta(wh, "rollups_incremental") == ""  # rebuilt: the masks' first month moved
    shutil.rmtree(tmp_path / "full")
    _rebuilt_equals(wh, tmp_path)


@pytest.mark.parametrize("changed", [{"responses"}, {"participants"}, {"events", "exchanges"},
                                     None])
def test_any_other_change_recomputes_everything(changed) -> None:
    state = materialise.StoredState(data_version=4, generated_at="", min_cell=10, seconds=1.0,
                                    timings={}, models={})
    assert kept_on({"events"}, state, 5, 10) == EVENTS_FREE
    assert kept_on({"events"}, state, 5, 10, same_pairs=True) == EVENTS_FREE | PAIRS_ONLY
    assert kept_on({"events", "responses"}, state, 5, 10, same_pairs=True) == frozenset()
    assert kept_on(changed, state, 5, 10) == frozenset()
    # Stored results of an older version (a load without its derive) or another k: none kept.
    assert kept_on({"events"}, state, 6, 10) == frozenset()
    assert kept_on({"events"}, state, 5, 5) == frozenset()
    assert kept_on({"events"}, None, 5, 10) == frozenset()
    # Nothing changed (every file refused): every result table is kept.
    assert kept_on(set(), state, 5, 10) == frozenset(RESULT_NAMES)
