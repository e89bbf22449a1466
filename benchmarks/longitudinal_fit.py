"""Longitudinal benchmark: the closed-form REML random-intercept fit against statsmodels MixedLM.

Second part (issue 10): the two-level model, participants nested in exchanges of ~40,

    score ~ C(wave) + (1 | exchange) + (1 | exchange:participant)      REML

at 16,000, 100,000 and 1,000,000 participants, against statsmodels MixedLM (groups=exchange,
re_formula="1", vc_formula={"participant": "0 + C(participant)"}, gtol=1e-10) at 16,000 only
(MixedLM takes minutes there); prints times and the largest differences. Target: 1,000,000
participants < 10 s on 2 cores, estimates within 1e-4.

Generates participants x 3 waves (pre, post, followup; ~20 % of post and ~35 % of follow-up
answers missing, as attrition leaves them) with a known gain, and fits

    score ~ C(wave) + (1 | participant)      REML

with `analytics.stats.longitudinal.longitudinal_model` (the public DataFrame path, marginal means
and contrasts included) for 100,000 and 1,000,000 participants, and, in the same run, both
estimators on 16,000 participants. Prints the times, the speed ratio at 16,000 and the largest
absolute differences in fixed effects, standard errors and variance components.

MixedLM is run twice at 16,000: as a user would (default settings; timed), and with a tight
gradient tolerance (gtol=1e-10) so that the comparison measures the estimators, not MixedLM's
stopping rule. SEs are compared with ``se_method="observed"``, MixedLM's own definition; the
default lme4-style SEs are compared too. Targets (issue 3): 1,000,000 participants < 5 s,
>= 100x MixedLM at 16,000, estimates within 1e-6.

    python benchmarks/longitudinal_fit.py           # the full run (~1 minute)
    python benchmarks/longitudinal_fit.py --quick   # smoke test: small sizes
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.stats.longitudinal import longitudinal_model  # noqa: E402

WAVES = np.array(["pre", "post", "followup"])
TRUE_GAIN = {"post": 0.40, "followup": 0.25}


PER_EXCHANGE = 40  # participants per exchange, on average
SD_EXCHANGE = 0.25  # exchange intercept SD: ICC between exchanges 0.0625 / 0.6725 = 0.09


def make_data(n_participants: int, seed: int = 0) -> pd.DataFrame:
    """Long table participant x wave with missing waves; string pseudonyms as in the warehouse.
    Participants sit in exchanges of ~40 (column ``exchange``) with an exchange intercept."""
    rng = np.random.default_rng(seed)
    n = n_participants
    n_ex = max(2, n // PER_EXCHANGE)
    ex_of = rng.integers(0, n_ex, n)
    pid = np.repeat(np.arange(n), 3)
    w = np.tile(np.arange(3), n)
    u = np.repeat(rng.normal(0.0, 0.6, n) + rng.normal(0.0, SD_EXCHANGE, n_ex)[ex_of], 3)
    mean = np.array([3.0, 3.0 + TRUE_GAIN["post"], 3.0 + TRUE_GAIN["followup"]])
    y = mean[w] + u + rng.normal(0.0, 0.5, 3 * n)
    keep = rng.random(3 * n) >= np.array([0.0, 0.20, 0.35])[w]
    return pd.DataFrame({
        "participant": pd.Series(pid[keep]).map("p{:07d}".format),
        "wave": WAVES[w[keep]],
        "score": y[keep],
        "exchange": pd.Series(np.repeat(ex_of, 3)[keep]).map("x{:05d}".format),
    })


def fast_fit_2level(df: pd.DataFrame, se_method: str = "observed"
                    ) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    out = longitudinal_model(df, instrument=None, scale=None, waves=list(WAVES),
                             exchange="exchange", se_method=se_method)
    return out.set_index("term"), time.perf_counter() - t0


def mixedlm_fit_2level(df: pd.DataFrame, **kw: object) -> tuple[dict, float]:
    import statsmodels.formula.api as smf

    d = df.assign(wave=pd.Categorical(df["wave"], categories=list(WAVES)))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' kwargs notice and convergence chatter
        res = smf.mixedlm("score ~ C(wave)", d, groups=d["exchange"], re_formula="1",
                          vc_formula={"participant": "0 + C(participant)"}
                          ).fit(reml=True, **kw)
    secs = time.perf_counter() - t0
    ren = {k: k.replace("C(wave)", "wave") for k in res.fe_params.index}
    return {
        "fe": res.fe_params.rename(ren), "se": res.bse_fe.rename(ren),
        "var_exchange": float(res.cov_re.iloc[0, 0]), "var_participant": float(res.vcomp[0]),
        "var_residual": float(res.scale), "converged": bool(res.converged),
    }, secs


def multilevel_section(sizes: tuple[int, ...], n_ref: int) -> None:
    """The two-level fit (participants nested in exchanges) at each size, and MixedLM (groups =
    exchange, participant variance component) at n_ref only."""
    for n in sizes:
        df = make_data(n, seed=n + 1)
        out, secs = fast_fit_2level(df, se_method="conditional")
        post = out.loc["contrast[post-pre]"]
        print(f"2-level     {n:>9,} participants {len(df):>10,} rows "
              f"{int(out.loc['n_exchanges', 'estimate']):>6,} exchanges   {secs:7.2f} s   "
              f"converged={bool(post['converged'])}   icc_exchange "
              f"{out.loc['icc_exchange', 'estimate']:.4f} (truth "
              f"{SD_EXCHANGE**2 / (SD_EXCHANGE**2 + 0.36 + 0.25):.4f})")
    df = make_data(n_ref, seed=n_ref + 1)
    fast, t_fast = fast_fit_2level(df)
    ref, t_mlm = mixedlm_fit_2level(df, gtol=1e-10)
    names = ref["fe"].index
    d_fe = float((fast.loc[names, "estimate"] - ref["fe"]).abs().max())
    d_se = float((fast.loc[names, "se"] - ref["se"]).abs().max())
    d_vc = max(abs(fast.loc[k, "estimate"] - ref[k])
               for k in ("var_exchange", "var_participant", "var_residual"))
    print(f"2-level MixedLM {n_ref:>5,} participants {len(df):>10,} rows   {t_mlm:7.2f} s "
          f"(gtol=1e-10, converged={ref['converged']})   fast 2-level {t_fast:.3f} s "
          f"(observed-Hessian SEs)")
    print(f"2-level max |fast - MixedLM| at {n_ref:,}: fixed effects {d_fe:.2e}, SEs "
          f"{d_se:.2e}, variance components {d_vc:.2e}")


def fast_fit(df: pd.DataFrame, se_method: str = "conditional") -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    out = longitudinal_model(df, instrument=None, scale=None, waves=list(WAVES),
                             se_method=se_method)
    return out.set_index("term"), time.perf_counter() - t0


def mixedlm_fit(df: pd.DataFrame, **kw: object) -> tuple[dict, float]:
    import statsmodels.formula.api as smf

    d = df.assign(wave=pd.Categorical(df["wave"], categories=list(WAVES)))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # statsmodels' own kwargs notice
        res = smf.mixedlm("score ~ C(wave)", d, groups=d["participant"]).fit(reml=True, **kw)
    secs = time.perf_counter() - t0
    ren = {k: k.replace("C(wave)", "wave") for k in res.fe_params.index}
    return {
        "fe": res.fe_params.rename(ren), "se": res.bse_fe.rename(ren),
        "var_participant": float(res.cov_re.iloc[0, 0]), "var_residual": float(res.scale),
        "converged": bool(res.converged),
    }, secs


def max_diffs(fast: pd.DataFrame, ref: dict) -> tuple[float, float, float]:
    names = ref["fe"].index
    d_fe = float((fast.loc[names, "estimate"] - ref["fe"]).abs().max())
    d_se = float((fast.loc[names, "se"] - ref["se"]).abs().max())
    d_vc = max(abs(fast.loc["var_participant", "estimate"] - ref["var_participant"]),
               abs(fast.loc["var_residual", "estimate"] - ref["var_residual"]))
    return d_fe, d_se, float(d_vc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = ap.parse_args(argv)
    sizes = (2_000, 20_000) if args.quick else (100_000, 1_000_000)
    n_ref = 500 if args.quick else 16_000

    for n in sizes:
        df = make_data(n, seed=n)
        out, secs = fast_fit(df)
        post = out.loc["contrast[post-pre]"]
        covered = post["ci_low"] <= TRUE_GAIN["post"] <= post["ci_high"]
        print(f"fast REML   {n:>9,} participants {len(df):>10,} rows   {secs:7.2f} s   "
              f"converged={bool(post['converged'])}   post-pre {post['estimate']:.4f} "
              f"[{post['ci_low']:.4f}, {post['ci_high']:.4f}] covers {TRUE_GAIN['post']}: "
              f"{covered}")

    df = make_data(n_ref, seed=7)
    fast_obs, t_fast = fast_fit(df, se_method="observed")
    fast_cond, _ = fast_fit(df)
    ref_default, t_mlm = mixedlm_fit(df)
    ref_tight, t_tight = mixedlm_fit(df, gtol=1e-10)
    print(f"MixedLM     {n_ref:>9,} participants {len(df):>10,} rows   {t_mlm:7.2f} s   "
          f"(default settings; {t_tight:.2f} s with gtol=1e-10)   "
          f"converged={ref_default['converged']}")
    print(f"fast REML   {n_ref:>9,} participants {len(df):>10,} rows   {t_fast:7.3f} s")
    print(f"speed ratio at {n_ref:,}: {t_mlm / t_fast:,.0f}x (MixedLM default / fast)")
    for label, ref in (("MixedLM gtol=1e-10", ref_tight), ("MixedLM default   ", ref_default)):
        d_fe, d_se, d_vc = max_diffs(fast_obs, ref)
        print(f"max |fast - {label}|: fixed effects {d_fe:.2e}, SEs {d_se:.2e}, "
              f"variance components {d_vc:.2e}")
    _, d_se_c, _ = max_diffs(fast_cond, ref_tight)
    print(f"max |lme4-style SE - MixedLM SE| (se_method='conditional'): {d_se_c:.2e}")
    print("-- two-level: score ~ C(wave) + (1 | exchange) + (1 | exchange:participant), REML")
    multilevel_section((n_ref, *sizes) if args.quick else (16_000, 100_000, 1_000_000),
                       n_ref)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
