"""Result tables per data version, through the real commands.

- Student's sleep data through the whole path — contract files → `python -m etl load` (which
  stores the result tables) → `python -m analytics export` — equals R's
  `t.test(extra ~ group, data = sleep, paired = TRUE)`: t = 4.0621, df = 9, p = 0.002833,
  95% CI 0.7001 to 2.4599 (group 2 − group 1).
- The demo program's true pre→post gains (truth.json) fall inside the stored 95% CIs by modality
  and for the comparison group in the large majority of scales; the physical − virtual
  difference has the right sign and size.
- Stored results are stamped with the data version readers see, suppressed at k, replaced (not
  appended) by `python -m analytics refresh`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import duckdb
import pytest

from analytics.derive import fetch, materialise
from etl import schema
from tests.analytics_fixture import demo_warehouse, run, sleep_warehouse

SCALES_MIN_SHARE = 0.8  # "the large majority"


def _csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def test_sleep_data_through_load_and_export_matches_r_t_test(tmp_path: Path) -> None:
    wh, env = sleep_warehouse()  # contract files -> python -m etl load (stores the results)
    out = tmp_path / "prepost.csv"
    r = run("analytics", "export", "prepost", "--warehouse", str(wh), "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert "note:" not in r.stderr  # read from the stored tables, not recomputed
    rows = [x for x in _csv_rows(out) if x["group_by"] == "overall"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["instrument"], row["scale"], row["n"]) == ("sleep", "extra", "10")
    assert float(row["t"]) == pytest.approx(4.0621, abs=1e-4)
    assert float(row["dof"]) == 9
    assert float(row["p"]) == pytest.approx(0.002833, abs=1e-6)
    assert float(row["diff"]) == pytest.approx(1.58, abs=1e-12)
    assert float(row["diff_ci_low"]) == pytest.approx(0.7001, abs=1e-4)
    assert float(row["diff_ci_high"]) == pytest.approx(2.4599, abs=1e-4)
    assert float(row["mean_pre"]) == pytest.approx(0.75, abs=1e-12)
    assert float(row["mean_post"]) == pytest.approx(2.33, abs=1e-12)
    assert row["suppressed"] == "" and row["data_version"] == "1"
    # The longitudinal model of two waves is the paired design: lme4's
    # lmer(extra ~ group + (1 | ID), sleep) gives group2 = 1.58, SE 0.3890.
    lon = tmp_path / "longitudinal.csv"
    r = run("analytics", "export", "longitudinal", "--warehouse", str(wh), "--out", str(lon),
            env=env)
    assert r.returncode == 0, r.stderr
    terms = {x["term"]: x for x in _csv_rows(lon)}
    assert float(terms["contrast[post-pre]"]["estimate"]) == pytest.approx(1.58, abs=1e-9)
    assert float(terms["contrast[post-pre]"]["se"]) == pytest.approx(0.3890, abs=1e-4)
    assert terms["contrast[post-pre]"]["converged"] == "True"


@pytest.fixture(scope="module")
def demo() -> Path:
    return demo_warehouse()


def _truth(wh: Path) -> dict:
    return json.loads((wh.parent / "demo" / "truth.json").read_text())


def test_demo_true_gains_inside_the_stored_cis(demo: Path) -> None:
    truth = _truth(demo)["effects"]
    con = duckdb.connect(str(demo), read_only=True)
    try:
        pp = con.execute(
            "SELECT * FROM res_prepost WHERE group_by IN ('modality', 'comparison')").df()
        lon = con.execute("SELECT * FROM res_longitudinal").df()
    finally:
        con.close()
    inside = total = 0
    right_sign = sized = n_scales = 0
    lon_inside = lon_total = 0
    misses = []
    for inst, scales in truth.items():
        for sc, eff in scales.items():
            gains = eff["expected_observed_diff"]["post_minus_pre"]
            got = {}
            for group, true_gain in gains.items():
                gb = "comparison" if group == "comparison" else "modality"
                row = pp[(pp.instrument == inst) & (pp.scale == sc) & (pp.group_by == gb)
                         & (pp.group == group)]
                assert len(row) == 1, (inst, sc, group)
                row = row.iloc[0]
                got[group] = row
                total += 1
                if row.diff_ci_low <= true_gain <= row.diff_ci_high:
                    inside += 1
                else:
                    misses.append((inst, sc, group, true_gain, row.diff_ci_low, row.diff_ci_high))
                if group != "comparison":
                    term = lon[(lon.instrument == inst) & (lon.scale == sc)
                               & (lon.term == f"contrast[post-pre|modality={group}]")].iloc[0]
                    lon_total += 1
                    lon_inside += term.ci_low <= true_gain <= term.ci_high
            # physical − virtual: sign and size (CI of a difference of independent groups)
            true_d = gains["physical"] - gains["virtual"]
            est_d = got["physical"]["diff"] - got["virtual"]["diff"]
            se = math.hypot(*[(got[g].diff_ci_high - got[g].diff_ci_low) / (2 * 1.96)
                              for g in ("physical", "virtual")])
            n_scales += 1
            right_sign += (est_d > 0) == (true_d > 0)
            sized += abs(est_d - true_d) <= 1.96 * se
            if abs(true_d) > 3 * se:
                assert (est_d > 0) == (true_d > 0), (inst, sc, true_d, est_d)
    assert total == 4 * n_scales
    assert inside / total >= SCALES_MIN_SHARE, misses
    assert lon_inside / lon_total >= SCALES_MIN_SHARE
    assert right_sign / n_scales >= SCALES_MIN_SHARE
    assert sized / n_scales >= SCALES_MIN_SHARE


def test_stored_results_carry_version_threshold_and_suppression(demo: Path) -> None:
    con = duckdb.connect(str(demo), read_only=True)
    try:
        from etl.warehouse import data_version

        state = materialise.stored_state(con)
        assert state is not None
        assert state.data_version == data_version(con)
        assert state.min_cell == 10
        assert set(state.timings) >= set(materialise.RESULT_NAMES)
        for t in schema.RESULT_TABLES.values():
            cols = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [t.name]).fetchall()]
            assert cols == t.column_names, t.name
        pp = con.execute("SELECT * FROM res_prepost").df()
        at = con.execute("SELECT * FROM res_attrition").df()
    finally:
        con.close()
    numeric = [c for c in pp.columns if c not in ("instrument", "scale", "group_by", "group",
                                                  "suppressed")]
    small = pp[pp.suppressed == "n < 10"]
    assert len(small), "the demo has exchanges with fewer than 10 complete pairs"
    assert small[numeric].isna().all().all()
    shown = pp[pp.suppressed != "n < 10"]
    assert (shown["n"] >= 10).all() and shown["diff"].notna().all()
    assert set(pp.group_by) == {"overall", *materialise.GROUP_DIMENSIONS}
    assert set(at.group_by) == {"overall", *materialise.GROUP_DIMENSIONS}
    at_small = at[at.suppressed == "n < 10"]
    assert at_small[["n_invited", "n_responded", "rate"]].isna().all().all()


def test_refresh_replaces_the_tables_under_a_new_version(tmp_path: Path) -> None:
    src, env = sleep_warehouse()
    wh = tmp_path / "warehouse.duckdb"
    shutil.copyfile(src, wh)
    con = duckdb.connect(str(wh), read_only=True)
    before = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
              for t in schema.RESULT_TABLES}
    con.close()
    r = run("analytics", "refresh", "--warehouse", str(wh), "--min-cell", "11", env=env)
    assert r.returncode == 0, r.stderr
    assert "stored the result tables for data version 2" in r.stdout
    con = duckdb.connect(str(wh), read_only=True)
    try:
        after = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                 for t in schema.RESULT_TABLES}
        state = materialise.stored_state(con)
        pp = con.execute("SELECT * FROM res_prepost").df()
    finally:
        con.close()
    assert after == before and after["res_prepost"] > 0  # replaced, not appended
    assert state is not None and (state.data_version, state.min_cell) == (2, 11)
    # the 10 sleep patients are now a small group: reason shown, numbers gone
    assert (pp["suppressed"] == "n < 11").all() and pp[["n", "t", "diff"]].isna().all().all()


def test_sensitivity_is_stored_per_scale_and_wave_and_matches_the_pre_post_table(
        demo: Path) -> None:
    """res_sensitivity: for every scale, post and follow-up, the completers, IPW, delta grid
    and tipping-point rows; its completers' post row is res_prepost's overall row (the same
    pairs, the same CR2 interval); at a k above every cell everything is suppressed."""
    from analytics.stats.sensitivity import DELTAS, METHODS

    con = duckdb.connect(str(demo), read_only=True)
    try:
        se = con.execute("SELECT * FROM res_sensitivity").df()
        pp = con.execute("SELECT * FROM res_prepost WHERE group_by = 'overall'").df()
        strict = materialise.compute_results(con, min_cell=10_000, tables=["sensitivity"])
    finally:
        con.close()
    assert list(se.columns) == schema.RES_SENSITIVITY.column_names
    scales = pp[["instrument", "scale"]].drop_duplicates()
    assert len(se) == len(scales) * 2 * (3 + len(DELTAS))
    assert set(se["method"]) == set(METHODS) and set(se["wave"]) == {"post", "followup"}
    assert (se["suppressed"] == "").all() and se["estimate"].notna().all()
    for r in pp.itertuples(index=False):
        c = se[(se.instrument == r.instrument) & (se.scale == r.scale) & (se.wave == "post")
               & (se.method == "completers")].iloc[0]
        assert c["n"] == r.n and c["n_clusters"] == r.n_clusters
        assert c["estimate"] == pytest.approx(r.diff, abs=1e-12)
        assert c["ci_low"] == pytest.approx(r.diff_ci_low_cr2, abs=1e-12)
    tip = se[se.method == "tipping_point"]
    assert (tip["ci_low"] == 0).all() and (tip["delta"] < 0).all()
    # the demo's dropout follows engagement, and engagement raises the gain: weighting the
    # responders toward the less engaged lowers the follow-up gain on most scales
    fu = se[se.wave == "followup"].pivot_table(index=["instrument", "scale"], columns="method",
                                               values="estimate")
    assert (fu["ipw"] < fu["completers"]).mean() >= 0.7
    # each stored estimate against the truth it targets (exchange participants: the modality
    # groups' truths weighted by their counts)
    truth = _truth(demo)["effects"]
    groups = ("virtual", "blended", "physical")

    def overall(eff: dict, key: str, n_key: str) -> float:
        return (sum(eff[key]["followup_minus_pre"][g] * eff["n"][n_key][g] for g in groups)
                / sum(eff["n"][n_key][g] for g in groups))

    hits = {"completers": 0, "ipw": 0}
    for (inst, sc), g in se[se.wave == "followup"].groupby(["instrument", "scale"]):
        eff = truth[inst][sc]
        targets = {"completers": overall(eff, "expected_observed_diff", "pre_followup"),
                   "ipw": overall(eff, "expected_observed_diff_all", "all")}
        for method, target in targets.items():
            row = g[g.method == method].iloc[0]
            hits[method] += row.ci_low <= target <= row.ci_high
    assert min(hits.values()) >= SCALES_MIN_SHARE * len(scales), hits
    hidden = strict.tables["sensitivity"]
    assert (hidden["suppressed"] == "n < 10000").all() and hidden["estimate"].isna().all()


def test_a_database_error_in_the_derive_step_names_its_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An out-of-memory (or any DuckDB) error says nothing of where it happened: the derive step
    names the table it was computing, and keeps the error chained."""
    def out_of_memory(*_a: object, **_k: object) -> None:
        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate 64.0 MiB")

    monkeypatch.setattr(materialise, "_attrition", out_of_memory)
    wh, env = sleep_warehouse()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        with pytest.raises(materialise.ResultsError,
                           match=r"^res_attrition: cannot be computed: OutOfMemoryException: "
                                 r"Out of Memory Error: failed to allocate") as got:
            materialise.compute_results(con, tables=["attrition"])
        assert isinstance(got.value.__cause__, duckdb.OutOfMemoryException)
    finally:
        con.close()


def test_the_arrow_fetch_gives_the_frame_duckdb_gives(demo: Path) -> None:
    """`fetch.frame` reads through Arrow for speed; the frame must be `.df()`'s: the
    types the derive meets (text with NULLs, integers with and without NULLs, booleans,
    doubles, a DECIMAL) and the demo's group attributes, value for value (sorted, as the
    query's row order is not fixed)."""
    import pandas as pd

    con = duckdb.connect(str(demo), read_only=True)
    try:
        q = ("SELECT 1::BIGINT AS a, NULL::INTEGER AS b, 'x' AS c, TRUE AS d, 2.5 AS e, "
             "0.5::DOUBLE AS f UNION ALL SELECT 2, 3, NULL, FALSE, NULL, NULL")
        pd.testing.assert_frame_equal(fetch.frame(con, q), con.execute(q).df())
        q = ("SELECT * FROM res_scale_scores WHERE instrument = ? ORDER BY participant, "
             "exchange_id, wave, scale")
        inst = con.execute("SELECT min(instrument) FROM res_scale_scores").fetchone()[0]
        got = fetch.frame(con, q, [inst])
        assert len(got) > 1000
        pd.testing.assert_frame_equal(got, con.execute(q, [inst]).df())
        attrs = materialise.group_attributes(con)  # through _df
        assert attrs["participant"].is_monotonic_increasing and len(attrs) > 1000
        assert attrs.dtypes["n_events"] == "int64" and attrs.dtypes["is_comparison"] == "bool"
    finally:
        con.close()
