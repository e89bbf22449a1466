"""Scale-up vs scale-in (issue 13): per cluster and term, breadth against depth.

A **term** is a calendar half-year (``2025-H1`` = January–June, ``2025-H2`` = July–December) of
an exchange's ``start_date``: all of an exchange's activity counts in the term it starts in, so
a participant's dose is never split across a term boundary, and the exchange (the unit that
clusters plan by) belongs to one term.

Input: one row per participant × cluster × term (who took part, with the participant's home
institution and country, and the events, minutes and distinct active weeks they logged in the
cluster's exchanges of that term). Output: one row per cluster × term.

- Breadth: participants reached (at least one event), the institutions and countries they come
  from; new vs returning = seen (participant, institution) in an earlier term of the same
  cluster.
- Depth: the share reaching a **meaningful dose** (at least `dose_sessions` events or
  `dose_minutes` minutes in the term; setting `EXCHANGE_IMPACT_MEANINGFUL_DOSE`, default
  ``5,300``) with its Wilson 95% interval (R ``prop.test(correct = FALSE)``); sustained activity
  as the median number of distinct ISO weeks with an event per participant and the share
  active in at least `SUSTAINED_WEEKS` weeks (Wilson); institutions returning next term: share
  of this term's institutions with a participant reached in the cluster in the next calendar
  half-year (Wilson) — missing, not 0, when the next term lies after the data's last term.
- Quadrant (term on term, against the cluster's previous calendar half-year): breadth change =
  % change in participants reached; depth change = difference of the dosed shares in
  percentage points with Newcombe's hybrid score interval (Newcombe 1998, method 10). Both
  above 0: "scaling up and in"; breadth only: "scaling up only"; depth only: "scaling in
  only"; otherwise "neither". Missing when the previous term has no participants.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from analytics.stats.reciprocity import wilson_interval as _wilson

__all__ = ["ENV_DOSE", "DEFAULT_DOSE", "SUSTAINED_WEEKS", "QUADRANTS", "OUTPUT_COLUMNS",
           "configured_dose", "term_of", "next_term", "scale_terms"]

ENV_DOSE = "EXCHANGE_IMPACT_MEANINGFUL_DOSE"
DEFAULT_DOSE = (5, 300.0)
SUSTAINED_WEEKS = 4
QUADRANTS = ("scaling up and in", "scaling up only", "scaling in only", "neither")
OUTPUT_COLUMNS = [
    "cluster", "term", "term_start", "participants", "participants_new", "participants_returning",
    "institutions", "institutions_new", "institutions_returning", "countries", "dosed",
    "share_dosed", "share_dosed_ci_low", "share_dosed_ci_high", "weeks_median", "sustained",
    "share_sustained", "share_sustained_ci_low", "share_sustained_ci_high",
    "institutions_next", "share_institutions_next", "share_institutions_next_ci_low",
    "share_institutions_next_ci_high", "next_term_in_data", "previous_term",
    "participants_previous", "breadth_change_pct", "depth_change", "depth_change_ci_low",
    "depth_change_ci_high", "quadrant", "dose_sessions", "dose_minutes", "sustained_weeks",
]


def configured_dose(environ: dict[str, str] | None = None) -> tuple[int, float]:
    """The meaningful dose as (sessions, minutes): `ENV_DOSE` (``"5,300"``: 5 sessions or 300
    minutes) when set, else `DEFAULT_DOSE`. A value that is not two positive numbers is refused
    with the variable's name, not silently replaced."""
    raw = (os.environ if environ is None else environ).get(ENV_DOSE, "").strip()
    if not raw:
        return DEFAULT_DOSE
    parts = [p.strip() for p in raw.split(",")]
    try:
        sessions, minutes = int(parts[0]), float(parts[1])
        ok = len(parts) == 2 and sessions > 0 and minutes > 0 and np.isfinite(minutes)
    except (ValueError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"{ENV_DOSE}={raw!r}: the meaningful dose must be 'sessions,minutes', "
                         f"two positive numbers (default "
                         f"{DEFAULT_DOSE[0]},{DEFAULT_DOSE[1]:g})")
    return sessions, minutes


def term_of(dates: pd.Series) -> pd.Series:
    """Calendar half-year label (``2025-H1``) of each date."""
    d = pd.to_datetime(dates)
    return d.dt.year.astype(str) + np.where(d.dt.month <= 6, "-H1", "-H2")


def _term_index(term: pd.Series) -> np.ndarray:
    t = term.astype(str)
    return t.str[:4].astype(int).to_numpy() * 2 + (t.str[-1] == "2").to_numpy().astype(int)


def _label(ix: np.ndarray) -> np.ndarray:
    return np.array([f"{i // 2}-H{i % 2 + 1}" for i in ix], dtype=object)


def next_term(term: str) -> str:
    """The calendar half-year after `term`."""
    return str(_label(_term_index(pd.Series([term])) + 1)[0])


def wilson_interval(x: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilson 95% score interval (R ``prop.test(correct = FALSE)``), exact at 0 and 1 so that
    rounding never puts a share of 0 or 1 outside its own interval."""
    x, n = np.asarray(x, float), np.asarray(n, float)
    lo, hi = _wilson(x, n)
    # the bound is exactly 0 (1) when no (every) unit counts; floating point misses it by 1e-16
    return np.where(x == 0, 0.0, np.clip(lo, 0.0, 1.0)), np.where(
        (x == n) & (n > 0), 1.0, np.clip(hi, 0.0, 1.0))


def _newcombe(x1: np.ndarray, n1: np.ndarray, x0: np.ndarray, n0: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval for p1 − p0 from the two Wilson intervals."""
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1)
    l0, u0 = wilson_interval(x0, n0)
    d = p1 - p0
    return (d - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2),
            d + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2))


def scale_terms(units: pd.DataFrame, *, cluster: str = "cluster", term: str = "term",
                participant: str = "participant", institution: str = "institution",
                country: str = "country", events: str = "events", minutes: str = "minutes",
                weeks: str = "weeks", last_term: str | None = None,
                dose: tuple[int, float] = DEFAULT_DOSE,
                sustained_weeks: int = SUSTAINED_WEEKS) -> pd.DataFrame:
    """Breadth and depth per cluster × term, and the term-on-term quadrant (module docstring).

    `units`: one row per participant × cluster × term with at least one event. `last_term`: the
    data's last term (default: the latest in `units`); terms after it are unknown, so the share
    of institutions returning is missing for it. Rows unsuppressed (the caller applies k).

    >>> u = pd.DataFrame({"cluster": ["A"] * 3, "term": ["2024-H1", "2024-H2", "2024-H2"],
    ...                   "participant": ["p", "p", "q"], "institution": ["i", "i", "j"],
    ...                   "country": ["X", "X", "Y"], "events": [6, 1, 2],
    ...                   "minutes": [10.0, 400.0, 20.0], "weeks": [3, 1, 1]})
    >>> out = scale_terms(u)
    >>> out[["term", "participants", "share_dosed", "quadrant"]].values.tolist()
    [['2024-H1', 1, 1.0, nan], ['2024-H2', 2, 0.5, 'scaling up only']]
    """
    sessions, mins = dose
    if sessions <= 0 or mins <= 0:
        raise ValueError(f"the meaningful dose must be positive, got {dose}")
    if units.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in OUTPUT_COLUMNS})
    d = pd.DataFrame({
        "cluster": units[cluster].astype(str).to_numpy(),
        "t": _term_index(units[term]),
        "participant": units[participant].astype(str).to_numpy(),
        "institution": units[institution].astype(str).to_numpy(),
        "country": units[country].astype("string").to_numpy(),
        "events": pd.to_numeric(units[events]).fillna(0).to_numpy(float),
        "minutes": pd.to_numeric(units[minutes]).fillna(0).to_numpy(float),
        "weeks": pd.to_numeric(units[weeks]).fillna(0).to_numpy(float),
    })
    d["dosed"] = (d["events"] >= sessions) | (d["minutes"] >= mins)
    d["sustained"] = d["weeks"] >= sustained_weeks
    # first term each participant / institution was seen in the cluster
    d["p_first"] = d.groupby(["cluster", "participant"])["t"].transform("min")
    d["i_first"] = d.groupby(["cluster", "institution"])["t"].transform("min")
    d["p_new"] = d["t"] == d["p_first"]
    g = d.groupby(["cluster", "t"], sort=True)
    out = g.agg(participants=("participant", "nunique"), participants_new=("p_new", "sum"),
                institutions=("institution", "nunique"), countries=("country", "nunique"),
                dosed=("dosed", "sum"), weeks_median=("weeks", "median"),
                sustained=("sustained", "sum")).reset_index()
    inst = d[["cluster", "t", "institution", "i_first"]].drop_duplicates(
        ["cluster", "t", "institution"])
    inst_new = (inst["t"] == inst["i_first"]).groupby([inst["cluster"], inst["t"]]).sum()
    out["institutions_new"] = inst_new.reindex(
        pd.MultiIndex.from_frame(out[["cluster", "t"]])).to_numpy()
    # institutions of this term seen in the cluster in the next term
    keys = set(zip(inst["cluster"], inst["t"], inst["institution"], strict=True))
    back = np.array([(c, t + 1, i) in keys for c, t, i in zip(
        inst["cluster"], inst["t"], inst["institution"], strict=True)])
    nxt = pd.Series(back).groupby([inst["cluster"].to_numpy(), inst["t"].to_numpy()]).sum()
    out["institutions_next"] = nxt.reindex(
        pd.MultiIndex.from_frame(out[["cluster", "t"]])).to_numpy()
    last = int(d["t"].max()) if last_term is None else int(_term_index(pd.Series([last_term]))[0])
    out["next_term_in_data"] = out["t"] < last
    out.loc[~out["next_term_in_data"], "institutions_next"] = np.nan

    n = out["participants"].to_numpy(float)
    out["participants_returning"] = out["participants"] - out["participants_new"]
    out["institutions_returning"] = out["institutions"] - out["institutions_new"]
    for x, name in (("dosed", "share_dosed"), ("sustained", "share_sustained")):
        xs = out[x].to_numpy(float)
        out[name] = xs / n
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = wilson_interval(xs, n)
    xi, ni = out["institutions_next"].to_numpy(float), out["institutions"].to_numpy(float)
    known = out["next_term_in_data"].to_numpy(bool)
    share = np.full(len(out), np.nan)
    lo, hi = share.copy(), share.copy()
    if known.any():
        share[known] = xi[known] / ni[known]
        lo[known], hi[known] = wilson_interval(xi[known], ni[known])
    out["share_institutions_next"] = share
    out["share_institutions_next_ci_low"], out["share_institutions_next_ci_high"] = lo, hi

    # term on term: against the cluster's immediately preceding calendar half-year
    prev = out[["cluster", "t", "participants", "dosed"]].assign(t=out["t"] + 1).rename(
        columns={"participants": "participants_previous", "dosed": "_dosed_prev"})
    out = out.merge(prev, on=["cluster", "t"], how="left")
    n0 = out["participants_previous"].to_numpy(float)
    x0 = out["_dosed_prev"].to_numpy(float)
    has = np.isfinite(n0) & (n0 > 0)
    out["previous_term"] = np.where(has, _label(out["t"].to_numpy() - 1), None)
    out["breadth_change_pct"] = np.where(has, 100 * (n - n0) / np.where(has, n0, 1), np.nan)
    dc = np.full(len(out), np.nan)
    dlo, dhi = dc.copy(), dc.copy()
    if has.any():
        x1 = out["dosed"].to_numpy(float)
        dc[has] = x1[has] / n[has] - x0[has] / n0[has]
        dlo[has], dhi[has] = _newcombe(x1[has], n[has], x0[has], n0[has])
    out["depth_change"], out["depth_change_ci_low"], out["depth_change_ci_high"] = dc, dlo, dhi
    up, deeper = out["breadth_change_pct"] > 0, out["depth_change"] > 0
    quad = np.select([up & deeper, up, deeper], list(QUADRANTS[:3]), QUADRANTS[3]).astype(object)
    quad[~has] = None
    out["quadrant"] = quad
    out["term"] = _label(out["t"].to_numpy())
    out["term_start"] = pd.to_datetime(
        [f"{t // 2}-{1 if t % 2 == 0 else 7:02d}-01" for t in out["t"]]).date
    out["dose_sessions"], out["dose_minutes"] = sessions, float(mins)
    out["sustained_weeks"] = sustained_weeks
    return out[OUTPUT_COLUMNS].sort_values(["cluster", "term"]).reset_index(drop=True)
