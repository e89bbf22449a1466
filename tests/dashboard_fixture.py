"""A small, deterministic warehouse for the dashboard's tests (and for hand checks of the pages).

Built through `etl.warehouse.build_next`, the one writer, so it has exactly the live schema. It is
test data: four clusters, eight countries (one of them, Iceland, with three participants so that
suppression shows), participation logs, three survey waves on the `icc` instrument, and a few rows
in the result tables so that the outcome pages have something to draw. The result rows are
invented for tests and never reach a real warehouse.

    python -m tests.dashboard_fixture /tmp/dash.duckdb
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.derive.rollups import build_cubes, build_facts
from etl import schema
from etl.warehouse import build_next

__all__ = ["build_fixture_warehouse", "SMALL_COUNTRY", "QUIET_COUNTRY"]

SMALL_COUNTRY = "ISL"  # three participants: below the suppression threshold
QUIET_COUNTRY = "NOR"  # with quiet_country=True: 12 participants, 3 active, 3 drop-outs

_COUNTRIES = [  # alpha-3, IANA zone, income group, connectivity
    ("FRA", "Europe/Paris", "high", "high"),
    ("KEN", "Africa/Nairobi", "lower-middle", "low"),
    ("BRA", "America/Sao_Paulo", "upper-middle", "medium"),
    ("JPN", "Asia/Tokyo", "high", "high"),
    ("IND", "Asia/Kolkata", "lower-middle", "medium"),
    ("USA", "America/Chicago", "high", "high"),
    ("DEU", "Europe/Berlin", "high", "high"),
]


def _insert(con, table: schema.Table, df: pd.DataFrame) -> None:
    cols = [c for c in table.column_names if c in df.columns]
    con.register("_df", df[cols])
    con.execute(f'INSERT INTO "{table.name}" ({", ".join(cols)}) SELECT * FROM _df')
    con.unregister("_df")


def build_fixture_warehouse(path: Path | str, *, with_results: bool = True, seed: int = 7,
                            quiet_country: bool = False) -> Path:
    """Write the fixture warehouse at `path` (replacing it) and return the path.

    `quiet_country` adds `QUIET_COUNTRY`: one institution (connectivity "none", income "low")
    with 12 students of exchange X1 who all answered the pre survey, of whom only 3 were ever
    active and 3 did not answer the post survey, so that its groups (the country, the
    connectivity and income groups) are of k or more people while their active and drop-out
    counts are under k."""
    rng = np.random.default_rng(seed)
    path = Path(path)

    clusters = pd.DataFrame(
        {
            "cluster_id": ["C1", "C2", "C3", "C4"],
            "name": ["North–South Schools", "Pacific Link", "<b>Atlantic</b> Network", "EuroCOIL"],
            "kind": ["cluster", "network", "network", "consortium"],
        }
    )
    inst_rows = []
    n = 0
    for ci, (iso, tz, inc, conn) in enumerate(_COUNTRIES):
        for k in range(3):
            n += 1
            inst_rows.append(
                (f"I{n:02d}", f"School {n} ({iso})", iso, clusters.cluster_id[(ci + k) % 4], tz,
                 "school" if k < 2 else "university", None, inc, conn)
            )
    inst_rows.append(("I99", "Reykjavik Academy", SMALL_COUNTRY, "C4", "Atlantic/Reykjavik",
                      "school", "Reykjavik", "high", "high"))
    institutions = pd.DataFrame(
        inst_rows,
        columns=["institution_id", "name", "country", "cluster_id", "timezone", "kind", "city",
                 "income_group", "connectivity"],
    )

    ex_rows = []
    mods = ["virtual", "blended", "physical"]
    for j in range(8):
        start = date(2025, 2 if j % 2 == 0 else 9, 1)
        ex_rows.append(
            (f"X{j + 1}", f"Exchange {j + 1}", "Bridges" if j < 5 else "Horizons",
             clusters.cluster_id[j % 4], mods[j % 3], "curricular" if j % 2 else "extracurricular",
             "language practice" if j % 2 else "joint science project", "en", start,
             start + timedelta(days=120), 10000.0 + 1000 * j, "EUR")
        )
    exchanges = pd.DataFrame(
        ex_rows,
        columns=["exchange_id", "name", "program", "cluster_id", "modality", "setting", "purpose",
                 "language", "start_date", "end_date", "budget", "currency"],
    )

    ids = institutions.institution_id.tolist()
    part_rows = []
    for k in range(30):
        a, b = rng.choice(len(ids) - 1, 2, replace=False)
        started = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 400)))
        ended = started + timedelta(days=int(rng.integers(60, 500))) if rng.random() < 0.6 else None
        part_rows.append((f"P{k + 1}", f"X{k % 8 + 1}", ids[a], ids[b], started, ended))
    part_rows.append(("P99", "X8", "I99", "I19", date(2025, 9, 1), None))
    partnerships = pd.DataFrame(
        part_rows,
        columns=["partnership_id", "exchange_id", "institution_a", "institution_b", "started_on",
                 "ended_on"],
    )

    people = []
    for inst in ids[:-1]:
        for k in range(25):
            people.append((f"p_{inst}_{k}", inst, "teacher" if k == 0 else "student",
                           ["female", "male", "non-binary"][k % 3] if k % 7 else None,
                           int(rng.integers(1998, 2011)), k >= 22))
    for k in range(3):
        people.append((f"p_I99_{k}", "I99", "student", "female", 2008, False))
    participants = pd.DataFrame(
        people,
        columns=["participant_id", "institution_id", "role", "gender", "birth_year", "comparison"],
    )

    tz_of = dict(zip(institutions.institution_id, institutions.timezone, strict=True))
    ev = []
    resp = []
    items = ["icc_1", "icc_2", "icc_3", "icc_4"]
    cols = ["participant_id", "institution_id", "comparison"]
    for pid, inst, comp in participants[cols].itertuples(index=False):
        x = (exchanges.iloc[int(rng.integers(0, len(exchanges)))] if inst != "I99"
             else exchanges.iloc[7])
        start = pd.Timestamp(x.start_date)
        if not comp:
            weeks = int(rng.integers(2, 17))
            for _ in range(int(rng.integers(5, 30))):
                local = (start + pd.Timedelta(days=int(rng.integers(0, weeks * 7)))
                         + pd.Timedelta(hours=int(rng.integers(8, 17))))
                utc = local.tz_localize(tz_of[inst]).tz_convert("UTC")
                ev.append((pid, x.exchange_id, utc.to_pydatetime(),
                           str(rng.choice(["message", "video call", "upload"])),
                           float(rng.integers(5, 60))))
        for w, (wave, shift) in enumerate([("pre", 0), ("post", 120), ("followup", 300)]):
            if rng.random() > [0.95, 0.75, 0.5][w]:
                continue
            at = datetime.combine(x.start_date, datetime.min.time(), UTC) + timedelta(
                days=shift)
            for it in items:
                v = float(np.clip(round(3 + rng.normal(0.3 * w * (not comp), 0.8)), 1, 5))
                resp.append((pid, x.exchange_id, wave, "icc", it, v, at))
    if quiet_country:
        institutions.loc[len(institutions)] = ["I98", "Quiet College", QUIET_COUNTRY, "C1",
                                               "Europe/Oslo", "school", "Oslo", "low", "none"]
        start = datetime(2025, 2, 3, 9, tzinfo=UTC)
        for k in range(12):
            pid = f"p_I98_{k}"
            participants.loc[len(participants)] = [pid, "I98", "student", "female", 2007, False]
            for d in range(5 if k < 3 else 0):
                ev.append((pid, "X1", start + timedelta(days=7 * d + k), "message", 20.0))
            for wave, shift in [("pre", 0), ("post", 120)][: 1 if k >= 9 else 2]:
                for it in items:
                    resp.append((pid, "X1", wave, "icc", it, 3.0,
                                 start + timedelta(days=shift)))
    events = pd.DataFrame(
        ev, columns=["participant_id", "exchange_id", "occurred_at", "activity", "minutes"])
    responses = pd.DataFrame(
        resp, columns=["participant_id", "exchange_id", "wave", "instrument", "item", "value",
                       "submitted_at"])

    if path.exists():
        path.unlink()
    with build_next(path) as con:
        for t, df in [(schema.CLUSTERS, clusters), (schema.INSTITUTIONS, institutions),
                      (schema.EXCHANGES, exchanges), (schema.PARTNERSHIPS, partnerships),
                      (schema.PARTICIPANTS, participants), (schema.EVENTS, events),
                      (schema.RESPONSES, responses)]:
            _insert(con, t, df)
        con.execute(
            f"INSERT INTO {schema.LOAD_BATCHES.name} (batch_id, file, source_name, kind, rows_in, "
            "rows_accepted, rows_rejected, rows_replaced, started_at, finished_at, status, message,"
            " data_version) VALUES (1, 'demo/events.csv', 'events.csv', 'events', 1002, 1000, 2, 0,"
            " TIMESTAMPTZ '2025-10-01 10:00:00+00', TIMESTAMPTZ '2025-10-01 10:00:05+00', 'loaded',"
            " '', 1)"
        )
        con.execute(
            f"INSERT INTO {schema.REJECTS.name} VALUES "
            "(1, 'demo/events.csv', 17, 'participant_id', 'reference', 'ab12', "
            "'participant ab12 is not in participants'),"
            "(1, 'demo/events.csv', 42, 'occurred_at', 'date', '2025-13-40', "
            "'2025-13-40 is not a date')"
        )
        # As every load: the day facts, the result tables (if any) that read them, then the
        # rest of the dashboard's derived tables.
        facts = build_facts(con)
        if with_results:
            _results(con)
        build_cubes(con, facts)
    return path


def _results(con) -> None:
    """Invented result rows (test data) in the shape the statistics engineer will write."""
    for t in schema.RESULT_TABLES.values():
        con.execute(schema.ddl(t))
    rows = []
    for scale, d in [("openness", 0.45), ("adaptability", 0.12)]:
        for gb, groups in [("overall", ["all"]), ("modality", ["virtual", "blended", "physical"]),
                           ("cluster", ["C1", "C2", "C3", "C4"]),
                           ("country", ["FRA", "KEN", "BRA", "JPN", SMALL_COUNTRY])]:
            for gi, g in enumerate(groups):
                sup = "suppressed (n < 5)" if g == SMALL_COUNTRY else None
                n = 3 if sup else 80 + 10 * gi
                e = d + 0.05 * gi
                rows.append(("icc", scale, gb, g, n, 3.1, 3.1 + e / 2, e / 2, e / 2 - 0.1,
                             e / 2 + 0.1, 4.0, n - 1, 0.001, 0.002, 0.001, e, e, e * 0.98,
                             e - 0.2, e + 0.2, sup,
                             # design-aware columns (issue 10): q over the table, exchanges,
                             # CR2 SE, Satterthwaite df, its CI and p, few-exchanges flag,
                             # the design-aware CI of g
                             0.003, 4 + gi, 0.06, 3.0 + gi, e / 2 - 0.19, e / 2 + 0.19, 0.01,
                             4 + gi < 10, e - 0.38, e + 0.38))
    con.executemany(
        f"INSERT INTO {schema.RES_PREPOST.name} VALUES "
        f"({', '.join(['?'] * len(schema.RES_PREPOST.columns))})", rows)
    rel = [("icc", s, w, 400, 4, a, a - 0.05, a + 0.04, a < 0.7)
           for s, a in [("openness", 0.81), ("adaptability", 0.64)] for w in ["pre", "post"]]
    con.executemany(f"INSERT INTO {schema.RES_RELIABILITY.name} VALUES (?,?,?,?,?,?,?,?,?)", rel)
    lon = []
    for s in ["openness", "adaptability"]:
        for term, est in [("mean[pre]", 3.1), ("mean[post]", 3.35), ("mean[followup]", 3.3),
                          ("post - pre", 0.25), ("followup - pre", 0.2),
                          ("comparison: post - pre", 0.03)]:
            lon.append(("icc", s, term, est, 0.05, est - 0.1, est + 0.1, 0.01, 450, 1100, True,
                        ""))  # suppressed: shown
    con.executemany(
        f"INSERT INTO {schema.RES_LONGITUDINAL.name} VALUES "
        f"({', '.join(['?'] * len(schema.RES_LONGITUDINAL.columns))})", lon)
    con.execute(
        f"INSERT INTO {schema.RES_SCALE_SCORES.name} SELECT participant_id, exchange_id, wave, "
        "instrument, CASE WHEN item IN ('icc_1', 'icc_2') THEN 'openness' ELSE 'adaptability' END,"
        f" avg(value), count(*)::INTEGER FROM {schema.RESPONSES.name} GROUP BY ALL"
    )
    att = []
    for gb, g in [("overall", "all"), ("gender", "female"), ("gender", "male")]:
        for w, r in [("pre", 0.95), ("post", 0.74), ("followup", 0.5)]:
            att.append((gb, g, w, 400, int(400 * r), r, None))
    con.executemany(f"INSERT INTO {schema.RES_ATTRITION.name} VALUES (?,?,?,?,?,?,?)", att)
    # issue 10 §2: raw and ANCOVA-adjusted comparison (one scale on few exchanges) and balance
    cmp_ = [("icc", s, m, 180, 40, e, 0.05, df, e - 0.11, e + 0.11, 0.001, ncl, ncl < 10, adj,
             "")
            for s, ncl in [("openness", 12), ("adaptability", 6)]
            for m, e, df, adj in [("raw_change_difference", 0.22, 10.5,
                                   "none (post − pre on arm)"),
                                  ("ancova", 0.19, 10.9, "pre score, gender, role")]]
    con.executemany(f"INSERT INTO {schema.RES_COMPARISON.name} VALUES "
                    f"({', '.join(['?'] * len(schema.RES_COMPARISON.columns))})", cmp_)
    bal = [("pre_score", "icc", "openness", "", "mean", 190, 45, 3.2, 3.1, 0.66, 0.68, 0.15,
            True, ""),
           ("pre_score", "icc", "adaptability", "", "mean", 190, 45, 3.0, 2.99, 0.7, 0.7, 0.014,
            False, ""),
           ("gender", "", "", "female", "proportion", 200, 48, 0.52, 0.5, 0.4996, 0.5, 0.04,
            False, ""),
           ("gender", "", "", "non-binary", "proportion", None, None, None, None, None, None,
            None, None, "n < 10")]
    con.executemany(f"INSERT INTO {schema.RES_BALANCE.name} VALUES "
                    f"({', '.join(['?'] * len(schema.RES_BALANCE.columns))})", bal)
    # Missing-data sensitivity (issue 10, section 3): openness in full; adaptability's
    # follow-up has 6 non-responders, so its all-participant rows are stored suppressed.
    sens = []
    for s, wave, n, n_r in [("openness", "post", 400, 300), ("openness", "followup", 400, 210),
                            ("adaptability", "followup", 400, 394)]:
        small = n - n_r < 10
        sens.append(("icc", s, wave, "completers", None, 0.30, 0.02, 11.0, 0.26, 0.34, n_r, n_r,
                     12, False, ""))
        for method, delta, est in [("ipw", None, 0.26), ("delta", -1.0, 0.21),
                                   ("delta", 0.0, 0.25), ("tipping_point", -2.4, 0.11)]:
            if small:
                sens.append(("icc", s, wave, method, None if method != "delta" else delta,
                             None, None, None, None, None, None, None, None, None, "n < 10"))
            else:
                sens.append(("icc", s, wave, method, delta, est, 0.03, 11.0,
                             0.0 if method == "tipping_point" else est - 0.06, est + 0.06, n,
                             n_r, 12, False, ""))
    con.executemany(
        f"INSERT INTO {schema.RES_SENSITIVITY.name} VALUES "
        f"({', '.join(['?'] * len(schema.RES_SENSITIVITY.columns))})", sens)
    # Measurement across languages (issue 10 §4): alpha/omega per language, one scale whose
    # item differs in Spanish, floor/ceiling with a ceiling effect.
    rg = []
    for s_, (a, o) in [("openness", (0.81, 0.82)), ("adaptability", (0.64, 0.66))]:
        rg.append(("icc", s_, "pre", "all", "all", 600, 4, a, a - 0.03, a + 0.03, o, a < 0.7,
                   False, ""))
        for lang, n in [("en", 350), ("es", 180), ("fr", 62), ("pt", 8)]:
            small = n < 10
            rg.append(("icc", s_, "pre", "language", lang, None if small else n, 4,
                       None if small else a - 0.01, None if small else a - 0.06,
                       None if small else a + 0.04, None if small or n < 40 else o,
                       None if small else a < 0.7, None if small else n < 40,
                       "n < 10" if small else ""))
    con.executemany(f"INSERT INTO {schema.RES_RELIABILITY_GROUPS.name} VALUES "
                    f"({', '.join(['?'] * len(schema.RES_RELIABILITY_GROUPS.columns))})", rg)
    # 6 at the floor: a count from 1 to k − 1, stored blank with its share
    fc = [("icc", s_, w, 600, 1.0, 5.0, None, nc, None, nc / 600, False, nc / 600 > 0.15, "")
          for s_, nc in [("openness", 40), ("adaptability", 110)] for w in ("pre", "post")]
    con.executemany(f"INSERT INTO {schema.RES_FLOOR_CEILING.name} VALUES "
                    f"({', '.join(['?'] * len(schema.RES_FLOOR_CEILING.columns))})", fc)
    inv = [("icc", "openness", "pre", "icc_1", "es", "en", 180, 350, 0.02, 0.001, 1.1, 0.33,
            1.0, False, "invariant across en, es (not checked, fewer than 100: fr, pt)"),
           ("icc", "adaptability", "pre", "icc_6", "es", "en", 180, 350, 0.9, 0.09, 60.2, 1e-9,
            1e-8, True, "item icc_6 differs in es (not checked, fewer than 100: fr, pt)")]
    con.executemany(f"INSERT INTO {schema.RES_INVARIANCE.name} VALUES "
                    f"({', '.join(['?'] * len(schema.RES_INVARIANCE.columns))})", inv)
    _results_reciprocity_equity(con)
    _results_scheduling(con)


def _results_scheduling(con) -> None:
    """Issue 13: res_scheduling and res_scheduling_model computed from the fixture's own
    partnerships and events (the real derive step, k = 10)."""
    from analytics.derive.scheduling import compute

    for name, df in compute(con, 10).items():
        t = schema.RESULT_EXPORTS[name]
        con.register("_sched_df", df)
        try:
            cols = ", ".join(f'"{c}"' for c in t.column_names)
            con.execute(f'INSERT INTO {t.name} ({cols}) SELECT {cols} FROM _sched_df')
        finally:
            con.unregister("_sched_df")


def _results_reciprocity_equity(con) -> None:
    """Issue 13: invented res_reciprocity (composite: two reciprocal, one one-sided, one with a
    small side stored suppressed), its shares, and res_equity_gaps (per grouping: composite
    gain, minutes, drop-out; one grouping with a group left out)."""
    def ins(t: schema.Table, rows: list[tuple]) -> None:
        con.executemany(f"INSERT INTO {t.name} VALUES ({', '.join(['?'] * len(t.columns))})",
                        rows)

    rec = []
    for pid, a, b, cat in [("PS1", 0.40, 0.35, "both"), ("PS2", 0.30, 0.25, "both"),
                           ("PS3", 0.45, 0.02, "a_only")]:
        rec.append((pid, "X1", "C1", "virtual", "I01", "I02", "all", "composite", 40, a,
                    a - 0.1, a + 0.1, 30, b, b - 0.12, b + 0.12, a - b, a - b - 0.15,
                    a - b + 0.15, 60.0, cat, min(a, b) / max(a, b), ""))
    rec.append(("PS4", "X2", "C2", "blended", "I03", "I04", "all", "composite", *[None] * 12,
                None, None, "n < 10"))
    ins(schema.RES_RECIPROCITY, rec)
    ins(schema.RES_RECIPROCITY_SHARES, [
        ("all", "composite", "overall", "all", 4, 3, 2, 1, 0, 0, 2 / 3, 0.21, 0.94, 210, ""),
        ("all", "composite", "modality", "virtual", 3, 3, 2, 1, 0, 0, 2 / 3, 0.21, 0.94, 210,
         ""),
        ("all", "composite", "modality", "blended", 1, 0, 0, 0, 0, 0, None, None, None, None,
         "n < 10")])
    gaps = []
    for g, best, worst, left in [("gender", "female", "male", "not reported (not a group)"),
                                 ("age_band", "13–15", "16–18", ""),
                                 ("connectivity", "high", "low", "none (n < 10)"),
                                 ("income_group", "high", "low", "")]:
        for m, inst, sc, vb, vw in [("gain", "all", "composite", 0.4, 0.3),
                                    ("minutes", None, None, 900.0, 600.0),
                                    ("dropout", None, None, 0.2, 0.3)]:
            gap = abs(vb - vw)
            gaps.append((g, m, inst, sc, best, worst, 200, 120, vb, vw, gap, gap / 4, 11.0,
                         gap / 3, gap * 1.7, 1 - 0.05 / 3, 3, left, 12, False, ""))
    ins(schema.RES_EQUITY_GAPS, gaps)


if __name__ == "__main__":
    out = build_fixture_warehouse(sys.argv[1] if len(sys.argv) > 1 else "/tmp/dash.duckdb")
    print(out)
