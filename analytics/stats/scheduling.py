"""Scheduling friction: do time zones throttle joint (synchronous) work of a partnership?

Overlap (`overlap_hours`): institution a's school hours are the windows [d + start, d + end)
in a's IANA zone on every school day d (local calendar) of the exchange's dates
(start_date..end_date); b's likewise. The overlap is the time both are in school hours, A ∩ B,
with each window turned into UTC by zoneinfo for its own date, so a daylight-saving change on
one side only (Europe/Berlin and America/New_York in March and in late October) changes the
overlap in those weeks. Partner windows of neighbouring dates count (Tokyo's Tuesday morning
is Honolulu's Monday afternoon).

- ``overlap_hours_per_day``: total overlap hours / number of school days in the exchange's
  dates (the two sides share one weekday setting, so the count is the same for both);
- ``zero_overlap_days``: school days d on which neither a's window of d nor b's window of d
  meets any school hours of the partner;
- ``school_days``: the denominator.

Joint share (`scheduling`): per partnership (exchange + institution pair), the events of both
institutions' participants in that exchange; ``joint_share`` = synchronous events / all events
(counts of events, not minutes; ``joint_minutes_share`` gives the minutes version). Which
activities are synchronous is a setting (`configured_sync_activities`, default live video and
live sessions: ``video_call``, ``live_session``; in-person ``workshop``/``site_visit`` are left
out because time zones do not constrain them).

Model (`scheduling_model`): OLS of the joint share on overlap hours per school day, one row per
partnership (unweighted), adjusted for the exchange's modality (treatment-coded) where given,
with CR2 cluster-robust standard errors by exchange and Satterthwaite degrees of freedom (R:
``clubSandwich::coef_test(lm(share ~ overlap + modality), vcov = "CR2", cluster = exchange)``;
`analytics.stats.comparison.cr2_fit`). The slope is the change in the joint share per extra
hour of overlap: an association (programs choose partners and formats), not a causal effect.

Settings (environment variables, read once per call of the ``configured_*`` functions, a bad
value refused with the variable's name): ``EXCHANGE_IMPACT_SCHOOL_HOURS`` (default
``08:00-16:00``), ``EXCHANGE_IMPACT_SCHOOL_DAYS`` (default ``Mon-Fri``; a range, which may
wrap as ``Sun-Thu``, or a comma list of Mon..Sun), ``EXCHANGE_IMPACT_SYNC_ACTIVITIES``
(default ``video_call,live_session``).

Small cells: a partnership with fewer than k active participants (both sides together) is kept,
marked suppressed, its activity numbers blank; its overlap stays (a property of two time
zones and a calendar, not of people).

Example
-------
>>> p = pd.DataFrame({"tz_a": ["Europe/Berlin"], "tz_b": ["America/New_York"],
...                   "start_date": [pd.Timestamp("2025-03-03")],
...                   "end_date": [pd.Timestamp("2025-03-14")]})
>>> overlap_hours(p)[["school_days", "overlap_hours_per_day", "zero_overlap_days"]].iloc[0].tolist()
[10.0, 2.5, 0.0]
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from analytics.suppression import DEFAULT_K, suppress

__all__ = ["ENV_HOURS", "ENV_DAYS", "ENV_SYNC", "DEFAULT_HOURS", "DEFAULT_DAYS", "DEFAULT_SYNC",
           "SchoolHours", "configured_school_hours", "configured_sync_activities",
           "overlap_hours", "scheduling", "scheduling_model", "SCHEDULING_COLUMNS",
           "MODEL_COLUMNS", "METHOD"]

ENV_HOURS = "EXCHANGE_IMPACT_SCHOOL_HOURS"
ENV_DAYS = "EXCHANGE_IMPACT_SCHOOL_DAYS"
ENV_SYNC = "EXCHANGE_IMPACT_SYNC_ACTIVITIES"
DEFAULT_HOURS = "08:00-16:00"
DEFAULT_DAYS = "Mon-Fri"
DEFAULT_SYNC = ("video_call", "live_session")
METHOD = "ols_cr2_exchange"
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

SCHEDULING_COLUMNS = [
    "partnership_id", "exchange_id", "modality", "institution_a", "institution_b", "tz_a",
    "tz_b", "start_date", "end_date", "school_days", "overlap_hours_per_day",
    "zero_overlap_days", "zero_overlap", "n_participants", "n_events", "n_joint",
    "joint_share", "joint_minutes_share", "school_hours", "school_days_setting",
    "sync_activities", "suppressed",
]
MODEL_COLUMNS = [
    "method", "term", "estimate", "se_cr2", "df_cr2", "ci_low_cr2", "ci_high_cr2", "p_cr2",
    "n_partnerships", "n_clusters", "few_clusters", "adjusted_for", "share_of", "school_hours",
    "school_days_setting", "sync_activities", "suppressed",
]


@dataclass(frozen=True)
class SchoolHours:
    """School hours as minutes after local midnight [start, end) and the school weekdays
    (0 = Monday); `label`/`days_label` spell the setting for tables and pages."""

    start_min: int = 8 * 60
    end_min: int = 16 * 60
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)

    @property
    def label(self) -> str:
        return (f"{self.start_min // 60:02d}:{self.start_min % 60:02d}-"
                f"{self.end_min // 60:02d}:{self.end_min % 60:02d}")

    @property
    def days_label(self) -> str:
        return ",".join(_WEEKDAYS[d].capitalize() for d in self.weekdays)


def _minutes(text: str) -> int:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m or int(m.group(2)) > 59 or int(m.group(1)) > 24:
        raise ValueError(text)
    return int(m.group(1)) * 60 + int(m.group(2))


def _weekdays(text: str) -> tuple[int, ...]:
    out: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(e[:3] not in _WEEKDAYS or len(e) < 3 for e in ends):
            raise ValueError(part)
        a, b = _WEEKDAYS.index(ends[0][:3]), _WEEKDAYS.index(ends[-1][:3])
        # a range may wrap over the weekend: Sun-Thu is Sunday to Thursday
        out.update(d % 7 for d in range(a, (b if b >= a else b + 7) + 1))
    return tuple(sorted(out))


def configured_school_hours(environ: dict[str, str] | None = None) -> SchoolHours:
    """School hours and days from `ENV_HOURS` (``HH:MM-HH:MM``, local, start before end, end at
    most 24:00) and `ENV_DAYS` (``Mon-Fri`` or ``Mon,Wed,Fri``), else the defaults."""
    env = os.environ if environ is None else environ
    raw_h = env.get(ENV_HOURS, "").strip() or DEFAULT_HOURS
    raw_d = env.get(ENV_DAYS, "").strip() or DEFAULT_DAYS
    try:
        a, b = raw_h.split("-")
        start, end = _minutes(a), _minutes(b)
        if not 0 <= start < end <= 24 * 60:
            raise ValueError(raw_h)
    except ValueError:
        raise ValueError(f"{ENV_HOURS}={raw_h!r}: school hours must read HH:MM-HH:MM, local "
                         f"time, start before end, end at most 24:00 (default "
                         f"{DEFAULT_HOURS})") from None
    try:
        days = _weekdays(raw_d)
    except ValueError:
        raise ValueError(f"{ENV_DAYS}={raw_d!r}: school days must be weekday names Mon..Sun, "
                         f"a range or a comma list (default {DEFAULT_DAYS})") from None
    return SchoolHours(start, end, days)


def configured_sync_activities(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The activities counted as joint (synchronous) work: `ENV_SYNC` as a comma list of
    `events.activity` values, else `DEFAULT_SYNC`. An empty list is refused."""
    raw = (os.environ if environ is None else environ).get(ENV_SYNC, "").strip()
    if not raw:
        return DEFAULT_SYNC
    acts = tuple(dict.fromkeys(a.strip() for a in raw.split(",") if a.strip()))
    if not acts:
        raise ValueError(f"{ENV_SYNC}={raw!r}: name at least one activity, comma-separated "
                         f"(default {','.join(DEFAULT_SYNC)})")
    return acts


def _windows(tz: str, days: pd.DatetimeIndex, hours: SchoolHours) -> tuple[np.ndarray, ...]:
    """UTC seconds [start, end) of the school window on each local date of `days`; empty
    (start = end) on days that are not school days."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"{tz!r} is not an IANA time zone") from None

    def utc(minutes: int) -> np.ndarray:
        local = days + pd.Timedelta(minutes=minutes)
        # a window edge in a skipped hour moves forward; in a repeated hour, the later one
        t = local.tz_localize(tz, nonexistent="shift_forward",
                              ambiguous=np.zeros(len(local), dtype=bool))
        return t.tz_convert("UTC").as_unit("s").asi8
    s, e = utc(hours.start_min), utc(hours.end_min)
    school = np.isin(days.day_of_week, hours.weekdays)
    return np.where(school, s, 0), np.where(school, e, 0)


def _pair_overlap(tz_a: str, tz_b: str, start: pd.Timestamp, end: pd.Timestamp,
                  hours: SchoolHours) -> tuple[int, float, int]:
    # local dates of the exchange, padded by 2 days so partner windows of neighbouring dates
    # (zones up to 26 h apart) are there to meet
    pad = 2
    days = pd.date_range(start - pd.Timedelta(days=pad), end + pd.Timedelta(days=pad), freq="D")
    inside = (days >= start) & (days <= end)
    sa, ea = _windows(tz_a, days, hours)
    sb, eb = _windows(tz_b, days, hours)
    sa, ea = np.where(inside, sa, 0), np.where(inside, ea, 0)
    sb, eb = np.where(inside, sb, 0), np.where(inside, eb, 0)
    n = len(days)
    got_a = np.zeros(n)  # overlap of a's window of day i with all of b's windows
    got_b = np.zeros(n)
    for k in range(-pad, pad + 1):
        lo, hi = max(0, -k), min(n, n - k)
        i = np.arange(lo, hi)
        j = i + k
        o = np.clip(np.minimum(ea[i], eb[j]) - np.maximum(sa[i], sb[j]), 0, None)
        got_a[i] += o
        got_b[j] += o
    school = inside & np.isin(days.day_of_week, hours.weekdays)
    n_days = int(school.sum())
    total_h = float(got_a.sum()) / 3600.0
    zero = int((school & (got_a == 0) & (got_b == 0)).sum())
    return n_days, (total_h / n_days if n_days else math.nan), zero


def overlap_hours(pairs: pd.DataFrame, hours: SchoolHours | None = None, *, tz_a: str = "tz_a",
                  tz_b: str = "tz_b", start: str = "start_date", end: str = "end_date"
                  ) -> pd.DataFrame:
    """`pairs` with school_days, overlap_hours_per_day and zero_overlap_days added (see the
    module doc). Computed once per distinct (tz_a, tz_b, start, end); the order of the two
    zones does not matter. A missing date or an end before the start gives 0 school days and
    NaN overlap; an unknown zone raises ValueError naming it."""
    hours = hours or SchoolHours()
    for c in (tz_a, tz_b, start, end):
        if c not in pairs.columns:
            raise ValueError(f"pairs lack column {c!r}")
    out = pairs.copy()
    s = pd.to_datetime(out[start]).dt.normalize()
    e = pd.to_datetime(out[end]).dt.normalize()
    za = out[tz_a].astype(object).to_numpy()
    zb = out[tz_b].astype(object).to_numpy()
    swap = out[tz_a].astype(str).to_numpy() > out[tz_b].astype(str).to_numpy()
    key = pd.DataFrame({"a": np.where(swap, zb, za), "b": np.where(swap, za, zb),
                        "s": s.to_numpy(), "e": e.to_numpy()})
    res: dict[tuple, tuple[int, float, int]] = {}
    for a, b, s0, e0 in key.drop_duplicates().itertuples(index=False):
        if pd.isna(s0) or pd.isna(e0) or e0 < s0 or pd.isna(a) or pd.isna(b):
            res[(a, b, s0, e0)] = (0, math.nan, 0)
        else:
            res[(a, b, s0, e0)] = _pair_overlap(str(a), str(b), s0, e0, hours)
    vals = [res[t] for t in key.itertuples(index=False, name=None)]
    out["school_days"] = np.array([v[0] for v in vals], dtype=np.int64)
    out["overlap_hours_per_day"] = np.array([v[1] for v in vals], dtype=float)
    out["zero_overlap_days"] = np.array([v[2] for v in vals], dtype=np.int64)
    return out


def scheduling(partnerships: pd.DataFrame, activity: pd.DataFrame, *,
               hours: SchoolHours | None = None, sync: Sequence[str] = DEFAULT_SYNC,
               k: int = DEFAULT_K) -> pd.DataFrame:
    """One row per partnership: overlap (`overlap_hours`) and the joint share of its activity.

    `partnerships`: partnership_id, exchange_id, institution_a, institution_b, tz_a, tz_b,
    start_date, end_date (the exchange's), optionally modality.
    `activity`: per exchange_id, institution_id and activity: participants (distinct active
    participants; summed over activities is not used), events, minutes; plus one row per
    exchange_id and institution_id with activity NA holding the distinct active participants
    of the side (``participants``). Sides without rows have no events.
    ``zero_overlap`` is True when the pair has no school-hours overlap on any school day."""
    hours = hours or SchoolHours()
    sync = tuple(sync)
    for c in ("partnership_id", "exchange_id", "institution_a", "institution_b"):
        if c not in partnerships.columns:
            raise ValueError(f"partnerships lack column {c!r}")
    for c in ("exchange_id", "institution_id", "activity", "participants", "events", "minutes"):
        if c not in activity.columns:
            raise ValueError(f"activity lacks column {c!r}")
    p = overlap_hours(partnerships, hours)
    if "modality" not in p.columns:
        p["modality"] = pd.NA
    act = activity.copy()
    is_side = act["activity"].isna()
    is_sync = act["activity"].astype(object).isin(sync) & ~is_side
    keys = ["exchange_id", "institution_id"]
    per = act[~is_side].assign(
        _js=np.where(is_sync[~is_side], act.loc[~is_side, "events"], 0),
        _jm=np.where(is_sync[~is_side], act.loc[~is_side, "minutes"].fillna(0), 0),
        _m=act.loc[~is_side, "minutes"].fillna(0),
    ).groupby(keys, observed=True)[["events", "_js", "_m", "_jm"]].sum()
    people = act[is_side].groupby(keys, observed=True)["participants"].sum()
    side = per.join(people, how="outer").fillna(0)
    tot = {}
    for s in ("a", "b"):
        idx = pd.MultiIndex.from_arrays([p["exchange_id"], p[f"institution_{s}"]])
        tot[s] = side.reindex(idx).fillna(0).to_numpy(float)
    both = tot["a"] + tot["b"]
    cols = {c: i for i, c in enumerate(side.columns)}
    p["n_participants"] = both[:, cols["participants"]].astype(np.int64)
    p["n_events"] = both[:, cols["events"]].astype(np.int64)
    p["n_joint"] = both[:, cols["_js"]].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p["joint_share"] = both[:, cols["_js"]] / np.where(p["n_events"] > 0,
                                                           both[:, cols["events"]], np.nan)
        p["joint_minutes_share"] = both[:, cols["_jm"]] / np.where(
            both[:, cols["_m"]] > 0, both[:, cols["_m"]], np.nan)
    p["zero_overlap"] = (p["school_days"] > 0) & (p["overlap_hours_per_day"] == 0)
    p["school_hours"] = hours.label
    p["school_days_setting"] = hours.days_label
    p["sync_activities"] = ",".join(sync)
    p = suppress(p, n="n_participants", k=k,
                 keep=["school_days", "overlap_hours_per_day", "zero_overlap_days",
                       "zero_overlap"])
    return p[SCHEDULING_COLUMNS].sort_values("partnership_id", kind="stable").reset_index(
        drop=True)


def scheduling_model(sched: pd.DataFrame, *, adjust: Sequence[str] = ("modality",),
                     ci: float = 0.95, k: int = DEFAULT_K) -> pd.DataFrame:
    """The slope of the joint share on overlap hours per school day (see the module doc), one
    row (term ``overlap_hours_per_day``). Partnerships used: not suppressed, with events and a
    defined overlap. Fewer than 3 of them, or overlap that does not vary, give an empty
    estimate; fewer than k partnerships mark the row suppressed."""
    from analytics.stats.comparison import _design, cluster_codes, cr2_fit
    from analytics.stats.prepost import FEW_CLUSTERS

    d = sched[(sched["suppressed"].fillna("").astype(str) == "")
              & np.isfinite(sched["joint_share"].to_numpy(float))
              & np.isfinite(sched["overlap_hours_per_day"].to_numpy(float))]
    adjust = [a for a in adjust if a in d.columns]
    n = len(d)
    # the fit's clusters: a partnership without an exchange is one of its own (`cluster_codes`)
    n_cl = len(np.unique(cluster_codes(d["exchange_id"].to_numpy())))
    first = sched.iloc[0] if len(sched) else None
    row = {"method": METHOD, "term": "overlap_hours_per_day", "estimate": math.nan,
           "se_cr2": math.nan, "df_cr2": math.nan, "ci_low_cr2": math.nan,
           "ci_high_cr2": math.nan, "p_cr2": math.nan, "n_partnerships": n, "n_clusters": n_cl,
           "few_clusters": n_cl < FEW_CLUSTERS, "adjusted_for": "", "share_of": "events",
           "school_hours": None if first is None else first["school_hours"],
           "school_days_setting": None if first is None else first["school_days_setting"],
           "sync_activities": None if first is None else first["sync_activities"]}
    x = d["overlap_hours_per_day"].to_numpy(float)
    if n >= 3 and np.ptp(x) > 0:
        X, names = _design(d, ["overlap_hours_per_day"], adjust)
        if "overlap_hours_per_day" in names and len(names) < n:
            fit = cr2_fit(X, d["joint_share"].to_numpy(float), d["exchange_id"].to_numpy(),
                          names)
            c = np.zeros(len(names))
            c[names.index("overlap_hours_per_day")] = 1.0
            t = fit.test(c, ci=ci)
            row.update({key: t[key] for key in ("estimate", "se_cr2", "df_cr2", "ci_low_cr2",
                                                 "ci_high_cr2", "p_cr2")})
            row["adjusted_for"] = ", ".join(
                a for a in adjust if any(nm.startswith(f"{a}[T.") for nm in names))
    out = pd.DataFrame([row], columns=MODEL_COLUMNS[:-1])
    out = suppress(out, n="n_partnerships", k=k, keep=["n_partnerships", "n_clusters"])
    return out[MODEL_COLUMNS]
