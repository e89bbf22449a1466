"""The generated demo program: deterministic, realistic in shape, and honest about its truth.

These tests read the written files back independently (pandas, pycountry, zoneinfo) rather than
trusting the generator's own bookkeeping: the planted bad rows are re-derived from the files,
and the simulated effects are re-estimated from the survey answers.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from pathlib import Path

import numpy as np
import pandas as pd
import pycountry
import pytest

import surveys
from etl.demo import generate_demo

N = 3_000
FILES = ("clusters.xlsx", "institutions.csv", "exchanges.csv", "partnerships.csv",
         "participants.csv", "events.csv", "responses.csv", "truth.json")
TS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    truth = generate_demo(out, participants=N, seed=11, progress=False)
    return out, truth


def _csv(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, dtype=str, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def tables(demo: tuple[Path, dict]) -> dict[str, pd.DataFrame]:
    out, _ = demo
    t = {n: _csv(out, f"{n}.csv") for n in (
        "institutions", "exchanges", "partnerships", "participants", "events", "responses")}
    t["clusters"] = pd.read_excel(out / "clusters.xlsx", dtype=str)
    return t


def _alpha3(country: str) -> str | None:
    try:
        return pycountry.countries.lookup(country).alpha_3
    except LookupError:
        return None


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_demo(a, participants=500, seed=5, progress=False)
    generate_demo(b, participants=500, seed=5, progress=False)
    generate_demo(c, participants=500, seed=6, progress=False)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "events.csv").read_bytes() != (c / "events.csv").read_bytes()


def test_small_run_writes_every_file(tmp_path: Path) -> None:
    truth = generate_demo(tmp_path, participants=500, seed=1, progress=False)
    for name in FILES:
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "truth.json").read_text(encoding="utf-8")) == truth


def test_too_small_a_program_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="participants"):
        generate_demo(tmp_path, participants=10, progress=False)


def test_counts_are_realistic(demo: tuple[Path, dict], tables: dict[str, pd.DataFrame]) -> None:
    _, truth = demo
    cl, inst = tables["clusters"], tables["institutions"]
    assert len(cl) >= 6 and set(cl["kind"]) == {"cluster", "network", "consortium"}
    countries = inst["country"].map(_alpha3)
    assert countries.notna().all()
    assert countries.nunique() == 30
    # Written as alpha-2, alpha-3 and English names alike.
    assert {len(c) for c in inst["country"]} >= {2, 3} and (inst["country"].str.len() > 3).any()
    assert len({z.split("/")[0] for z in inst["timezone"]}) >= 5  # several continents
    assert len(inst) >= 150 and set(inst["kind"]) == {"school", "university"}
    assert set(inst["income_group"]) <= {"low", "lower-middle", "upper-middle", "high"}
    assert set(inst["connectivity"]) == {"low", "medium", "high"}
    ex = tables["exchanges"]
    assert set(ex["modality"]) == {"virtual", "blended", "physical"}
    assert set(ex["setting"]) == {"curricular", "extracurricular"}
    assert ex["purpose"].nunique() >= 4 and ex["currency"].dropna().nunique() >= 2
    assert (pd.to_numeric(ex["budget"]).dropna() > 0).all()
    p = tables["participants"]
    good = p[p["institution_id"].isin(inst["institution_id"])]
    assert len(good) == N
    assert 0.05 < (good["role"] == "teacher").mean() < 0.11
    assert 0.07 < (good["comparison"] == "true").mean() < 0.13
    active = good[good["comparison"] == "false"]["participant_id"]
    per = tables["events"]["participant_id"].value_counts().reindex(active, fill_value=0)
    # a quarter of active participants are light touch (1-4 events, truth.json "scale")
    assert 30 < per[per > 0].mean() < 70 and 0.15 < (per[per > 0] <= 4).mean() < 0.4
    assert per.max() > 5 * per.median()  # heavy-tailed engagement
    for name, df in tables.items():
        if name != "clusters":
            assert truth["rows_written"][f"{name}.csv"] == len(df), name


def test_time_zones_are_real_and_belong_to_the_country(tables: dict[str, pd.DataFrame]) -> None:
    import pytz

    inst = tables["institutions"]
    assert set(inst["timezone"]) <= zoneinfo.available_timezones()
    for country, tz in zip(inst["country"], inst["timezone"], strict=True):
        a2 = pycountry.countries.lookup(country).alpha_2
        assert tz in pytz.country_timezones[a2], (country, tz)


def test_identifying_columns_are_present_and_varied(tables: dict[str, pd.DataFrame]) -> None:
    p = tables["participants"]
    assert p["participant_id"].str.fullmatch(r"P\d{6,}").all()
    assert p["email"].str.fullmatch(r"[a-z._0-9]+@[a-z0-9.-]+").all()
    scripts = p["name"].map(lambda s: any(ord(ch) > 0x36F for ch in s))
    assert scripts.sum() > 20  # Greek, Arabic, Devanagari, CJK, Hangul names among them


def test_response_items_belong_to_shipped_instruments(tables: dict[str, pd.DataFrame]) -> None:
    r = tables["responses"]
    index = surveys.item_index(surveys.load_instruments())
    items = list(r.columns[4:])
    assert list(r.columns[:4]) == ["participant_id", "exchange_id", "wave", "submitted_at"]
    assert set(items) == set(index)
    assert set(r["wave"]) == {"pre", "post", "followup"}
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
    assert r["submitted_at"].str.fullmatch(iso).mean() > .99
    missing = r[items].isna().to_numpy().mean()
    assert 0.02 < missing < 0.04


def test_events_follow_local_school_hours(tables: dict[str, pd.DataFrame]) -> None:
    ev = tables["events"]
    ev = ev[ev["occurred_at"].str.match(TS.pattern)]
    who = tables["participants"].set_index("participant_id")["institution_id"]
    ev = ev.assign(inst=ev["participant_id"].map(who),
                   at=pd.to_datetime(ev["occurred_at"], format="%Y-%m-%d %H:%M:%S",
                                     errors="coerce"))
    ev = ev.dropna(subset=["inst", "at"])  # the planted bad rows
    hour = ev["at"].dt.hour
    assert hour.between(7, 21).all()  # nothing at night, local time
    assert (ev["at"].dt.day_of_week < 5).mean() > 0.85
    share = (hour.between(7, 18)).groupby(ev["inst"]).agg(["mean", "size"])
    assert (share.loc[share["size"] >= 100, "mean"] > 0.6).all()
    # Local clocks, not UTC: the same local school day maps to very different UTC hours.
    tz = tables["institutions"].set_index("institution_id")["timezone"]
    zones = ev["inst"].map(tz)
    utc_hours = {}
    for z in ("Asia/Tokyo", "America/Lima"):
        at = ev.loc[zones == z, "at"].dt.tz_localize(z).dt.tz_convert("UTC")
        utc_hours[z] = at.dt.hour.median()
    assert abs(utc_hours["Asia/Tokyo"] - utc_hours["America/Lima"]) >= 8


def test_events_fall_inside_their_exchange(tables: dict[str, pd.DataFrame]) -> None:
    ev = tables["events"]
    ev = ev[ev["occurred_at"].str.match(TS.pattern)]
    ex = tables["exchanges"].set_index("exchange_id")
    ev = ev[ev["exchange_id"].isin(ex.index)]
    ev = ev[pd.to_datetime(ev["occurred_at"], errors="coerce", format="%Y-%m-%d %H:%M:%S").notna()]
    day = ev["occurred_at"].str[:10]
    assert (day >= ev["exchange_id"].map(ex["start_date"])).all()
    assert (day <= ev["exchange_id"].map(ex["end_date"])).all()


def test_cross_border_partnerships_end_sooner(demo: tuple[Path, dict],
                                              tables: dict[str, pd.DataFrame]) -> None:
    _, truth = demo
    ps = tables["partnerships"]
    country = tables["institutions"].set_index("institution_id")["country"].map(_alpha3)
    domestic = ps["institution_a"].map(country) == ps["institution_b"].map(country)
    assert 10 <= domestic.sum() < len(ps) - 10
    start = pd.to_datetime(ps["started_on"])
    end = pd.to_datetime(ps["ended_on"]).fillna(pd.Timestamp(truth["as_of"]))
    days = (end - start).dt.days
    assert (days >= 0).all()
    assert days[~domestic].mean() < days[domestic].mean()
    still_active = ps["ended_on"].isna()
    assert still_active[domestic].mean() > still_active[~domestic].mean()


def test_comparison_group_answers_surveys_but_has_no_events(
        tables: dict[str, pd.DataFrame]) -> None:
    p = tables["participants"]
    comp = set(p.loc[p["comparison"] == "true", "participant_id"])
    assert comp and not comp & set(tables["events"]["participant_id"])
    answered = set(tables["responses"]["participant_id"])
    assert len(comp & answered) > 0.9 * len(comp)


def test_attrition_depends_on_engagement(tables: dict[str, pd.DataFrame]) -> None:
    p = tables["participants"]
    active = p.loc[p["comparison"] == "false", "participant_id"]
    n_events = tables["events"]["participant_id"].value_counts().reindex(active, fill_value=0)
    r = tables["responses"]
    post = set(r.loc[r["wave"] == "post", "participant_id"])
    stayed = n_events.index.isin(list(post))
    assert n_events[stayed].median() > 1.5 * n_events[~stayed].median()
    waves = r["wave"].value_counts()
    assert waves["pre"] > waves["post"] > waves["followup"]


def _bad_rows_in_files(out: Path, tables: dict[str, pd.DataFrame]) -> set[tuple]:
    """Every row a loader must reject, derived from the files alone."""
    inst = set(tables["institutions"]["institution_id"])
    ex = set(tables["exchanges"]["exchange_id"])
    p = tables["participants"]
    found = {("participants.csv", i + 2, "institution_id", "reference")
             for i in np.flatnonzero(~p["institution_id"].isin(inst))}
    people = set(p.loc[p["institution_id"].isin(inst), "participant_id"])
    for name, time_col in (("events.csv", "occurred_at"), ("responses.csv", "submitted_at")):
        df = tables[name.removesuffix(".csv")]
        rows = np.arange(len(df)) + 2
        found |= {(name, r, "participant_id", "reference")
                  for r in rows[~df["participant_id"].isin(people).to_numpy()]}
        found |= {(name, r, "exchange_id", "reference")
                  for r in rows[~df["exchange_id"].isin(ex).to_numpy()]}
        parsed = pd.to_datetime(df[time_col].str.replace("T", " ").str[:19], errors="coerce",
                                format="%Y-%m-%d %H:%M:%S")
        found |= {(name, r, time_col, "timestamp") for r in rows[parsed.isna().to_numpy()]}
    r = tables["responses"]
    for item, (_, scale) in surveys.item_index(surveys.load_instruments()).items():
        v = pd.to_numeric(r[item])
        out_of_range = ((v < scale.min) | (v > scale.max)).to_numpy()
        found |= {("responses.csv", int(i) + 2, item, "range")
                  for i in np.flatnonzero(out_of_range)}
    return found


def test_planted_bad_rows_are_exactly_those_listed(demo: tuple[Path, dict],
                                                   tables: dict[str, pd.DataFrame]) -> None:
    out, truth = demo
    listed = {(b["file"], b["row"], b["column"], b["rule"]) for b in truth["bad_rows"]}
    assert 5 <= len(listed) <= 20
    assert {b[0] for b in listed} == {"participants.csv", "events.csv", "responses.csv"}
    assert {b[3] for b in listed} == {"reference", "timestamp", "range"}
    assert _bad_rows_in_files(out, tables) == listed
    for b in truth["bad_rows"]:  # the row number is the file's line (header = 1)
        line = (out / b["file"]).read_text(encoding="utf-8").splitlines()[b["row"] - 1]
        assert b["value"] in line


def test_truth_describes_every_scale(demo: tuple[Path, dict]) -> None:
    _, truth = demo
    for inst in surveys.load_instruments().values():
        for scale in inst.scales:
            s = truth["effects"][inst.id][scale.id]
            assert s["items"] == list(scale.items) and s["reverse"] == list(scale.reverse)
            assert 0 < s["retention"] < 1 and s["dose_slope_per_10_events"] > 0
            diff = s["expected_observed_diff"]
            assert abs(diff["post_minus_pre"]["comparison"]) < 0.1
            for m in ("virtual", "blended", "physical"):
                assert diff["post_minus_pre"][m] > diff["post_minus_pre"]["comparison"] + 0.1
                assert diff["followup_minus_pre"][m] < diff["post_minus_pre"][m]
                assert scale.min < s["expected_observed_mean"]["post"][m] < scale.max


def test_scores_recover_the_simulated_effects(demo: tuple[Path, dict],
                                              tables: dict[str, pd.DataFrame]) -> None:
    """Observed pre/post differences and Cronbach's alpha match the truth within sampling error."""
    _, truth = demo
    r = tables["responses"]
    p = tables["participants"].set_index("participant_id")
    modality = tables["exchanges"].set_index("exchange_id")["modality"]
    group = np.where(r["participant_id"].map(p["comparison"]) == "true", "comparison",
                     r["exchange_id"].map(modality))
    for inst in surveys.load_instruments().values():
        for scale in inst.scales:
            x = r[list(scale.items)].apply(pd.to_numeric)
            x = x.where((x >= scale.min) & (x <= scale.max))
            for item in scale.reverse:
                x[item] = scale.min + scale.max - x[item]
            pre = x[r["wave"] == "pre"].dropna()
            k = len(scale.items)
            alpha = k / (k - 1) * (1 - pre.var().sum() / pre.sum(axis=1).var())
            assert 0.68 < alpha < 0.88, (inst.id, scale.id, alpha)
            score = pd.DataFrame({"pid": r["participant_id"], "wave": r["wave"], "g": group,
                                  "s": x.mean(axis=1)})
            wide = score.pivot_table(index=["pid", "g"], columns="wave", values="s").reset_index()
            expected = truth["effects"][inst.id][scale.id]["expected_observed_diff"]
            for g, rows in wide.dropna(subset=["pre", "post"]).groupby("g"):
                d = rows["post"] - rows["pre"]
                se = d.std() / np.sqrt(len(d))
                assert abs(d.mean() - expected["post_minus_pre"][g]) < 4 * se + 0.01, (
                    inst.id, scale.id, g)


def test_demo_plants_cells_under_the_small_cell_threshold(
        demo: tuple[Path, dict], tables: dict[str, pd.DataFrame]) -> None:
    """One exchange with fewer than k = 10 participants (all answering pre and post) and fewer
    than k comparison people of physical exchanges answering the follow-up, re-counted from the
    written files; truth.json names them, and the rest of the program stays large."""
    from analytics.suppression import DEFAULT_K

    _, truth = demo
    small = truth["small_cells"]
    assert small["k"] == DEFAULT_K
    r = tables["responses"]
    comp = r["participant_id"].map(tables["participants"].set_index("participant_id")["comparison"])
    modality = r["exchange_id"].map(tables["exchanges"].set_index("exchange_id")["modality"])
    ex = small["exchange"]
    people = r.loc[r["exchange_id"] == ex["exchange_id"], ["participant_id", "wave"]]
    assert people["participant_id"].nunique() == ex["participants"] == 7
    waves = people.groupby("participant_id")["wave"].agg(set)
    assert waves.map(lambda w: {"pre", "post"} <= w).sum() == ex["pre_post"] == 7
    per_exchange = r.groupby("exchange_id")["participant_id"].nunique()
    assert (per_exchange >= DEFAULT_K).sum() >= 0.8 * len(per_exchange)
    cell = small["comparison_followup"]
    assert (cell["arm"], cell["modality"], cell["wave"]) == ("comparison", "physical", "followup")
    at = r[(comp == "true") & (modality == "physical")].groupby("wave")["participant_id"].nunique()
    assert at["followup"] == cell["participants"] == 6
    assert at["pre"] >= DEFAULT_K and at["post"] >= DEFAULT_K  # only the follow-up cell is small
    other = r[(comp == "true") & (modality != "physical") & (r["wave"] == "followup")]
    assert other.groupby(modality)["participant_id"].nunique().min() >= DEFAULT_K


def _exchange_icc(out: Path) -> float:
    """ICC(1) of the pre scale scores by exchange (one-way ANOVA estimator, Shrout & Fleiss
    1979), averaged over the scales: an estimator of its own, not the generator's bookkeeping."""
    r = _csv(out, "responses.csv")
    pre = r[r["wave"] == "pre"]
    iccs = []
    for inst in surveys.load_instruments().values():
        for scale in inst.scales:
            x = pre[list(scale.items)].apply(pd.to_numeric)
            x = x.where((x >= scale.min) & (x <= scale.max))
            for item in scale.reverse:
                x[item] = scale.min + scale.max - x[item]
            d = pd.DataFrame({"g": pre["exchange_id"], "s": x.mean(axis=1)}).dropna()
            g = d.groupby("g")["s"]
            n_i, k, n = g.size(), g.ngroups, len(d)
            msb = (n_i * (g.mean() - d["s"].mean()) ** 2).sum() / (k - 1)
            msw = ((d["s"] - g.transform("mean")) ** 2).sum() / (n - k)
            n0 = (n - (n_i ** 2).sum() / n) / (k - 1)
            iccs.append((msb - msw) / (msb + (n0 - 1) * msw))
    return float(np.mean(iccs))


def test_scores_cluster_by_exchange_as_real_programs_do(
        demo: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generator gives exchanges and institutions random effects (issue 10), so design-aware
    errors matter on the demo as on real data; with those effects off the ICC is near zero."""
    out, truth = demo
    eff = truth["effects"]["icc"]["openness"]
    assert eff["exchange_sd"] > 0 and eff["institution_sd"] > 0 and eff["exchange_gain_sd"] > 0
    clustered = _exchange_icc(out)
    assert 0.03 < clustered < 0.2, clustered
    monkeypatch.setattr("etl.demo.EXCHANGE_SD", 0.0)
    monkeypatch.setattr("etl.demo.INSTITUTION_SD", 0.0)
    monkeypatch.setattr("etl.demo.EXCHANGE_GAIN_SD", 0.0)
    generate_demo(tmp_path, participants=N, seed=11, progress=False)
    flat = _exchange_icc(tmp_path)
    assert flat < 0.02 and clustered > flat + 0.03, (clustered, flat)
