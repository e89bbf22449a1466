"""Attrition: who answers each survey wave, and whether those who dropped out differed at baseline.

`attrition_funnel` counts, per wave, the invited participants who responded (pre -> post ->
follow-up), overall and by group, with small groups suppressed. `attrition_baseline` compares
completers with non-completers on their baseline (pre) score per scale and on engagement, with
Welch's t test (R ``t.test(x, y, var.equal = FALSE)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analytics.stats.longitudinal import wave_order
from analytics.suppression import DEFAULT_K, suppress

__all__ = ["FUNNEL_COLUMNS", "BASELINE_COLUMNS", "attrition_funnel", "attrition_baseline",
           "engagement_baseline", "welch_t"]

FUNNEL_COLUMNS = ["group_by", "group", "wave", "n_invited", "n_responded", "rate", "suppressed"]
BASELINE_COLUMNS = ["instrument", "scale", "measure", "n_completers", "n_dropouts",
                    "mean_completers", "mean_dropouts", "diff", "diff_ci_low", "diff_ci_high",
                    "t", "dof", "p", "suppressed"]
OVERALL = "overall"


def attrition_funnel(
    responses: pd.DataFrame,
    *,
    participant: str = "participant",
    wave: str = "wave",
    waves: Sequence[str] | None = None,
    roster: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
    k: int = DEFAULT_K,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """Response funnel per wave, overall and by group.

    Method: the invited are the participants on the `roster` (enrolled) when one is given, else
    those with a response at the first wave (pre); ``n_responded`` counts invited participants
    with any response at the wave, ``rate = n_responded / n_invited``. A participant counts
    once per wave whatever the number of answers or exchanges. Groups with fewer than k invited
    participants are suppressed.

    Parameters
    ----------
    responses : any table with one or more rows per participant x wave answered (long answers or
        scale scores)
    participant, wave : column names (in `responses` and `roster`)
    waves : wave order (default: `longitudinal.wave_order` of those present); the first is the
        baseline
    roster : optional table of enrolled participants (one row each) carrying the `by` columns
    by : grouping columns, taken from `roster` when given, else from `responses` (first value
        per participant)

    Returns
    -------
    DataFrame with columns group_by, group, wave, n_invited, n_responded, rate, suppressed.

    Examples
    --------
    >>> r = pd.DataFrame({"participant": [f"p{i}" for i in range(20)] + ["p0", "p1"] * 1,
    ...                   "wave": ["pre"] * 20 + ["post"] * 2})
    >>> attrition_funnel(r)[["wave", "n_invited", "n_responded", "rate"]].to_dict("records")
    [{'wave': 'pre', 'n_invited': 20, 'n_responded': 20, 'rate': 1.0},
     {'wave': 'post', 'n_invited': 20, 'n_responded': 2, 'rate': 0.1}]
    """
    by_cols = [by] if isinstance(by, str) else list(by or [])
    for c in (participant, wave):
        if c not in responses.columns:
            raise ValueError(f"responses have no column {c!r}")
    src = roster if roster is not None else responses
    missing = [c for c in [participant, *by_cols] if c not in src.columns]
    if missing:
        raise ValueError(f"{'roster' if roster is not None else 'responses'} has no column(s) "
                         f"{missing}")
    seen = responses[[participant, wave]].dropna().drop_duplicates()
    seen = seen.assign(**{wave: seen[wave].astype(str)})
    levels = list(waves) if waves is not None else wave_order(seen[wave].unique())
    if not levels:
        return pd.DataFrame(columns=FUNNEL_COLUMNS)
    if roster is not None:
        people = roster[[participant, *by_cols]].drop_duplicates(participant)
    else:
        base = seen.loc[seen[wave] == levels[0], participant]
        attrs = responses[[participant, *by_cols]].drop_duplicates(participant)
        people = attrs[_isin(attrs[participant], base.unique())]
    rows = []
    for label, col in [(OVERALL, None), *[(c, c) for c in by_cols]]:
        grp = (pd.Series(OVERALL, index=people.index) if col is None
               else people[col].astype("str").where(people[col].notna()))
        pg_ = pd.DataFrame({participant: people[participant].to_numpy(), "_g": grp.to_numpy()})
        pg_ = pg_[pg_["_g"].notna()]
        invited = pg_.groupby("_g").size()
        hits = seen.merge(pg_, on=participant, how="inner")
        responded = hits.groupby(["_g", wave]).size()
        for gv, n_inv in invited.items():
            for w in levels:
                n_resp = int(responded.get((gv, w), 0))
                rows.append({"group_by": label, "group": str(gv), "wave": w,
                             "n_invited": int(n_inv), "n_responded": n_resp,
                             "rate": n_resp / n_inv if n_inv else np.nan})
    out = pd.DataFrame(rows, columns=FUNNEL_COLUMNS[:-1])
    out = suppress(out, n="n_invited", k=k, unsuppressed=unsuppressed)
    return out[FUNNEL_COLUMNS]


def welch_t(x: np.ndarray, y: np.ndarray, *, ci: float = 0.95) -> dict[str, float]:
    """Welch's two-sample t test of mean(x) - mean(y), as R ``t.test(x, y)`` (var.equal=FALSE),
    by ``scipy.stats.ttest_ind(equal_var=False)`` with its confidence interval.

    >>> r = welch_t(np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 6, 8, 10]))
    >>> round(r["t"], 4), round(r["dof"], 3)
    (-2.2514, 5.521)
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    nan = float("nan")
    out = {"n_x": len(x), "n_y": len(y), "mean_x": float(x.mean()) if len(x) else nan,
           "mean_y": float(y.mean()) if len(y) else nan, "diff": nan, "diff_ci_low": nan,
           "diff_ci_high": nan, "t": nan, "dof": nan, "p": nan}
    if len(x) and len(y):
        out["diff"] = out["mean_x"] - out["mean_y"]
    if len(x) < 2 or len(y) < 2:
        return out
    if x.var(ddof=1) == 0 and y.var(ddof=1) == 0:
        return out  # no spread: no test (scipy would return NaN with a warning)
    r = stats.ttest_ind(x, y, equal_var=False)
    low, high = r.confidence_interval(confidence_level=ci)
    out.update(t=float(r.statistic), dof=float(r.df), p=float(r.pvalue),
               diff_ci_low=float(low), diff_ci_high=float(high))
    return out


def _isin(values: pd.Index | pd.Series, members: np.ndarray) -> np.ndarray:
    """`values.isin(members)`, vectorised: pandas 3's Arrow-string isin walks `members` one
    Python object at a time (2 s for a million ids); codes from one factorize compare as ints."""
    codes, _ = pd.factorize(pd.concat([pd.Series(np.asarray(values, dtype=object)),
                                       pd.Series(np.asarray(members, dtype=object))],
                                      ignore_index=True))
    return np.isin(codes[:len(values)], codes[len(values):])


def attrition_baseline(
    scores: pd.DataFrame,
    *,
    participant: str = "participant",
    wave: str = "wave",
    score: str = "score",
    pre: str = "pre",
    completion_wave: str = "post",
    instrument: str = "instrument",
    scale: str = "scale",
    engagement: pd.DataFrame | None = None,
    engagement_column: str = "n_events",
    ci: float = 0.95,
    k: int = DEFAULT_K,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """Did those who dropped out differ at baseline? Completers vs non-completers, Welch t.

    Method: among participants with a baseline (`pre`) score, completers are those with any
    score at `completion_wave` (any scale: they answered that survey). Per instrument x scale,
    the baseline scores of completers and non-completers are compared with Welch's t test
    (R ``t.test(completers, dropouts)``; diff = completers - dropouts); with `engagement` (one
    row per participant, e.g. events logged), the same comparison on `engagement_column` gives
    a row with measure = engagement (instrument and scale empty). Rows where either group has
    fewer than k participants are suppressed.

    Returns
    -------
    DataFrame with columns instrument, scale, measure ("baseline_score" | "engagement"),
    n_completers, n_dropouts, mean_completers, mean_dropouts, diff, diff_ci_low, diff_ci_high,
    t, dof, p, suppressed.
    """
    need = [participant, wave, score, instrument, scale]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ValueError(f"scores have no column(s) {missing}")
    waves_seen = scores[[participant, wave]].drop_duplicates()
    # arrays, not Python sets: isin on them is vectorised (a set of 1.5M Arrow strings was
    # built one string at a time)
    completers = waves_seen.loc[waves_seen[wave] == completion_wave, participant].unique()
    base = scores[(scores[wave] == pre) & scores[score].notna()]
    base_people = base[participant].unique()
    rows = []
    for (inst, sc), g in base.groupby([instrument, scale], sort=True, observed=True):
        per = g.groupby(participant, sort=False)[score].mean()  # one value per person
        done = _isin(per.index, completers)
        r = welch_t(per[done].to_numpy(), per[~done].to_numpy(), ci=ci)
        rows.append(_baseline_row(inst, sc, "baseline_score", r))
    if engagement is not None:
        for c in (participant, engagement_column):
            if c not in engagement.columns:
                raise ValueError(f"engagement has no column {c!r}")
        e = engagement[_isin(engagement[participant], base_people)]
        e = e.groupby(participant, sort=False)[engagement_column].sum()
        done = _isin(e.index, completers)
        rows.append(_engagement_row(e.to_numpy(float), done, ci))
    return _baseline_table(rows, k, unsuppressed)


def engagement_baseline(engagement: np.ndarray, completed: np.ndarray, *, ci: float = 0.95,
                        k: int = DEFAULT_K, unsuppressed: bool = False) -> pd.DataFrame:
    """`attrition_baseline`'s engagement row alone, from one value per participant with a
    baseline score (`engagement`, e.g. events logged in every exchange) and whether that
    participant completed (`completed`): what the derive step computes in SQL."""
    row = _engagement_row(np.asarray(engagement, float), np.asarray(completed, bool), ci)
    return _baseline_table([row], k, unsuppressed)


def _engagement_row(values: np.ndarray, done: np.ndarray, ci: float) -> dict:
    r = welch_t(values[done], values[~done], ci=ci)
    return _baseline_row(None, None, "engagement", r)


def _baseline_table(rows: list[dict], k: int, unsuppressed: bool) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=BASELINE_COLUMNS[:-1])
    out = out.astype({"n_completers": "int64", "n_dropouts": "int64"})
    out["_n"] = out[["n_completers", "n_dropouts"]].min(axis=1)
    out = suppress(out, n="_n", k=k, unsuppressed=unsuppressed)
    return out[BASELINE_COLUMNS]


def _baseline_row(inst: object, sc: object, measure: str, r: dict[str, float]) -> dict:
    return {"instrument": inst, "scale": sc, "measure": measure, "n_completers": r["n_x"],
            "n_dropouts": r["n_y"], "mean_completers": r["mean_x"], "mean_dropouts": r["mean_y"],
            "diff": r["diff"], "diff_ci_low": r["diff_ci_low"], "diff_ci_high": r["diff_ci_high"],
            "t": r["t"], "dof": r["dof"], "p": r["p"]}
