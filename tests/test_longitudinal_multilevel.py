"""Two-level longitudinal model (issue 10, §1): participants nested in exchanges, each with a
random intercept. Equality with statsmodels MixedLM (groups=exchange, participant variance
component), recovery of known variance components and ICCs, the participant-in-two-exchanges
rule, the between-within df, and the coverage of its intervals in simulated programs with few
exchanges (against the one-level model, which under-covers between-exchange quantities)."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analytics.stats.longitudinal import (
    OUTPUT_COLUMNS,
    fit_nested_intercepts,
    fit_random_intercept,
    longitudinal_model,
    longitudinal_model_types,
    network_levels,
    network_levels_types,
)

ROOT = Path(__file__).resolve().parent.parent


def _coverage_module():  # benchmarks/coverage.py holds the simulated program
    spec = importlib.util.spec_from_file_location("coverage_bench",
                                                  ROOT / "benchmarks" / "coverage.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def program(n_exchanges: int, seed: int, *, s2x: float = 0.10, s2p: float = 0.50,
            s2e: float = 0.40, per: tuple[int, int] = (40, 90)) -> pd.DataFrame:
    """Exchanges (modality per exchange) x participants x 3 waves, missing follow-ups."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(per[0], per[1], n_exchanges)
    ex = np.repeat(np.arange(n_exchanges), sizes)
    n = len(ex)
    virtual = rng.random(n_exchanges)[ex] < 0.5
    u = rng.normal(0, math.sqrt(s2x), n_exchanges)[ex] + rng.normal(0, math.sqrt(s2p), n)
    w = np.tile(np.arange(3), n)
    gain = np.repeat(np.where(virtual, 0.3, 0.45), 3)
    y = (3.0 + 0.2 * np.repeat(virtual, 3) + np.select([w == 1, w == 2], [gain, 0.6 * gain], 0)
         + np.repeat(u, 3) + rng.normal(0, math.sqrt(s2e), 3 * n))
    d = pd.DataFrame({"participant": np.repeat(np.arange(n), 3),
                      "exchange": np.repeat(ex, 3).astype(str),
                      "modality": np.where(np.repeat(virtual, 3), "virtual", "blended"),
                      "wave": np.array(["pre", "post", "followup"])[w], "score": y})
    drop = (w > 0) & (rng.random(3 * n) < np.where(w == 1, 0.2, 0.35))
    return d[~drop].reset_index(drop=True)


def _types_of(d: pd.DataFrame) -> pd.DataFrame:
    """The sums per unit type of `longitudinal_model_types`, built in pandas the plain way: a
    type is the units (participant x exchange) of one exchange, modality, arm and set of waves."""
    d = d.assign(t=d.groupby(["participant", "exchange"]).score.transform("sum"))
    pattern = d.groupby(["participant", "exchange"]).wave.transform(
        lambda w: ",".join(sorted(w)))
    d = d.assign(pattern=pattern)
    keys = ["exchange", "network", "modality", "comparison", "pattern"]
    units = d.drop_duplicates(["participant", "exchange"])
    per_type = units.groupby(keys).agg(units=("t", "size"), t_sum=("t", "sum"),
                                       t_sq=("t", lambda t: float((t * t).sum())))
    cells = d.groupby([*keys, "wave"]).agg(rows=("score", "size"), sum=("score", "sum"),
                                           sum_sq=("score", lambda y: float((y * y).sum())))
    out = cells.reset_index().merge(per_type.reset_index(), on=keys)
    out["type"] = out.groupby(keys, sort=False).ngroup()
    return out.astype({"units": float, "rows": float})


def test_the_model_from_sums_per_unit_type_equals_the_model_on_the_rows():
    """Issue 17: the on-request model is fitted from sums per unit type (SQL), not rows. The
    two-level fit, its contrasts and df, and the network level are the same numbers either
    way, on a design with both arms, three modality levels and missing waves."""
    d = program(24, 5)
    rng = np.random.default_rng(3)
    d["comparison"] = (d.participant % 4 == 0)
    d["modality"] = np.where(d.exchange.astype(int) % 3 == 0, "physical", d.modality)
    d["network"] = "net" + (d.exchange.astype(int) % 5).astype(str)
    d["score"] += np.where(d.comparison, -0.2, 0.0) + rng.normal(0, 0.01, len(d))
    types = _types_of(d)
    assert len(types) * 5 < len(d)  # the point: far fewer entries than rows
    for se_method in ("conditional", "observed"):
        kw = dict(group="modality", comparison="comparison", exchange="exchange",
                  instrument=None, scale=None, se_method=se_method)
        want = longitudinal_model(d, **kw)
        got = longitudinal_model_types(types, **kw)
        assert list(got.term) == list(want.term) and "did[post-pre]" in set(got.term)
        assert got.converged.all()
        for c in ("estimate", "se", "ci_low", "ci_high", "p", "n_participants", "n_obs"):
            np.testing.assert_allclose(got[c].to_numpy(float), want[c].to_numpy(float),
                                       rtol=1e-9, atol=1e-9, err_msg=f"{se_method} {c}")
    design = ["modality", "comparison"]
    want_net = network_levels(d, participant="participant", exchange="exchange",
                              network="network", design=design)
    got_net = network_levels_types(types, exchange="exchange", network="network",
                                   design=design)
    assert list(got_net.term) == list(want_net.term) == [
        "var_network", "icc_network", "icc_exchange_pre", "n_networks"]
    np.testing.assert_allclose(got_net.estimate, want_net.estimate, rtol=1e-9, atol=1e-12)
    # a wrong sum is seen: t_sq off by one unit's worth changes the variance split
    bad = types.assign(t_sq=types.t_sq * 1.01)
    off = longitudinal_model_types(bad, **kw).set_index("term").estimate
    assert abs(off["var_participant"] - want.set_index("term").estimate["var_participant"]) > 1e-3


def test_equals_mixedlm_with_exchange_groups_and_participant_variance_component():
    d = program(40, 21)  # ~2,600 participants in 40 exchanges
    assert 2000 < d.participant.nunique() < 3500
    out = longitudinal_model(d, group="modality", exchange="exchange", instrument=None,
                             scale=None, se_method="observed").set_index("term")
    dd = d.assign(wave=pd.Categorical(d.wave, ["pre", "post", "followup"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = smf.mixedlm("score ~ C(wave) * C(modality)", dd, groups=dd["exchange"],
                        re_formula="1", vc_formula={"participant": "0 + C(participant)"}
                        ).fit(reml=True, gtol=1e-10)
    names = [s.replace("C(wave)", "wave").replace("C(modality)", "modality")
             for s in m.fe_params.index]
    assert out.loc[names, "estimate"].to_numpy() == pytest.approx(m.fe_params.to_numpy(),
                                                                  abs=1e-4)
    assert out.loc[names, "se"].to_numpy() == pytest.approx(m.bse_fe.to_numpy(), abs=1e-4)
    assert out.loc["var_exchange", "estimate"] == pytest.approx(float(m.cov_re.iloc[0, 0]),
                                                                abs=1e-4)
    assert out.loc["var_participant", "estimate"] == pytest.approx(float(m.vcomp[0]), abs=1e-4)
    assert out.loc["var_residual", "estimate"] == pytest.approx(float(m.scale), abs=1e-4)
    assert out.converged.all()
    # lme4-style (conditional) SEs: the same estimates, SEs within a fraction of a percent
    cond = longitudinal_model(d, group="modality", exchange="exchange", instrument=None,
                              scale=None).set_index("term")
    assert cond.loc[names, "estimate"].to_numpy() == pytest.approx(
        out.loc[names, "estimate"].to_numpy(), abs=1e-8)
    assert cond.loc[names, "se"].to_numpy() == pytest.approx(m.bse_fe.to_numpy(), rel=2e-2)


def test_variance_components_and_iccs_recover_the_truth():
    s2x, s2p, s2e = 0.10, 0.50, 0.40
    d = program(120, 5, s2x=s2x, s2p=s2p, s2e=s2e)
    out = longitudinal_model(d, group="modality", exchange="exchange", instrument=None,
                             scale=None)
    assert list(out.columns) == OUTPUT_COLUMNS
    out = out.set_index("term")
    assert out.loc["var_exchange", "estimate"] == pytest.approx(s2x, abs=0.04)
    assert out.loc["var_participant", "estimate"] == pytest.approx(s2p, abs=0.05)
    assert out.loc["var_residual", "estimate"] == pytest.approx(s2e, abs=0.03)
    assert out.loc["icc_exchange", "estimate"] == pytest.approx(s2x, abs=0.04)  # total = 1
    assert out.loc["icc_participant", "estimate"] == pytest.approx(s2x + s2p, abs=0.05)
    assert out.loc["n_exchanges", "estimate"] == 120
    assert out.loc["df_between_exchanges", "estimate"] == 120 - 2  # Intercept, modality
    assert "icc_cluster" not in out.index
    # the one-level model (no exchange) has no exchange rows
    one = longitudinal_model(d, group="modality", instrument=None, scale=None)
    assert not one.term.isin(["var_exchange", "icc_exchange"]).any()


def test_zero_exchange_variance_is_estimated_as_about_zero():
    d = program(30, 8, s2x=0.0)
    f = longitudinal_model(d, exchange="exchange", instrument=None, scale=None)
    f = f.set_index("term")
    assert f.loc["var_exchange", "estimate"] < 0.02 and f.converged.all()


def test_a_participant_in_two_exchanges_is_one_unit_per_exchange():
    # participant ids reused across exchanges: each (participant, exchange) pair is a unit
    rng = np.random.default_rng(3)
    ex = np.repeat(np.arange(20), 30)
    un = np.tile(np.arange(15), 40)  # ids 0..14 repeat in every exchange
    y = rng.normal(0, 0.3, 20)[ex] + rng.normal(0, 1, 600) + np.tile([0.0, 0.4], 300)
    X = np.column_stack([np.ones(600), np.tile([0.0, 1.0], 300)])
    f = fit_nested_intercepts(y, X, un, ex)
    assert f.n_units == 20 * 15 and f.n_exchanges == 20
    g = fit_nested_intercepts(y, X, ex * 100 + un, ex)  # explicitly unique unit codes
    assert f.beta == pytest.approx(g.beta, abs=1e-12)
    assert f.var_participant == pytest.approx(g.var_participant, abs=1e-12)


def test_one_exchange_falls_back_to_the_one_level_model():
    d = program(1, 2)
    out = longitudinal_model(d, exchange="exchange", instrument=None, scale=None)
    assert "var_exchange" not in set(out.term) and out.converged.all()


def test_between_within_df_and_t_intervals():
    d = program(12, 4)
    out = longitudinal_model(d, group="modality", exchange="exchange", instrument=None,
                             scale=None).set_index("term")
    assert out.loc["df_between_exchanges", "estimate"] == 12 - 2
    from scipy import stats
    r = out.loc["emm[wave=post]"]  # loads on the intercept: t with 10 df
    q = stats.t.ppf(0.975, 10)
    assert r.ci_high - r.estimate == pytest.approx(q * r.se, rel=1e-9)
    r = out.loc["contrast[post-pre]"]  # within participants: large df, practically z
    assert (r.ci_high - r.estimate) / r.se == pytest.approx(1.96, abs=0.01)


def test_nested_fit_checks_inputs():
    X = np.ones((4, 1))
    with pytest.raises(ValueError, match="integer codes"):
        fit_nested_intercepts(np.ones(4), X, np.array([0.5, 1, 2, 3]), np.zeros(4, int))
    with pytest.raises(ValueError, match="matching lengths"):
        fit_nested_intercepts(np.ones(4), X, np.arange(3), np.zeros(4, int))


def test_coverage_with_few_exchanges_and_a_known_exchange_effect():
    # 16 exchanges, ICC between exchanges 0.08; 200 seeded replications (the full 1000 run:
    # benchmarks/coverage.py). Two-level: 95% intervals cover in [0.90, 0.985] (nominal 0.95,
    # Monte-Carlo SE ~0.015) for the between-exchange mean at post, the modality difference and
    # the within-participant gain. The one-level model under-covers the between-exchange ones.
    cov = _coverage_module().coverage(200).set_index(["model", "estimand"])["coverage"]
    for est in ("emm[wave=post]", "modality[T.virtual]", "contrast[post-pre]"):
        assert 0.90 <= cov["two-level", est] <= 0.985, (est, cov["two-level", est])
    assert cov["one-level", "emm[wave=post]"] < 0.85
    assert cov["one-level", "modality[T.virtual]"] < 0.85


def test_one_level_fit_unchanged_when_no_exchange_is_given():
    d = program(10, 9)
    out = longitudinal_model(d, instrument=None, scale=None).set_index("term")
    X = np.column_stack([np.ones(len(d)), (d.wave == "post"), (d.wave == "followup")])
    f = fit_random_intercept(d.score.to_numpy(), X.astype(float),
                             pd.factorize(d.participant)[0])
    assert out.loc["wave[T.post]", "estimate"] == pytest.approx(f.beta[1], abs=1e-12)


def test_derive_step_stores_the_two_level_model():
    from analytics.derive.materialise import _longitudinal

    d = program(20, 6)
    scored = d.assign(exchange_id=d.exchange, participant=d.participant.astype(str),
                      is_comparison=False, instrument="sim", scale="s")
    out, models = _longitudinal(scored, 0)
    assert list(out.columns) == [*OUTPUT_COLUMNS, "suppressed"]
    assert {"var_exchange", "icc_exchange", "n_exchanges"} <= set(out.term)
    assert models["sim.s"].endswith("+ (1 | participant) + (1 | exchange)")
    assert out.set_index("term").loc["n_exchanges", "estimate"] == 20


def _networked(n_networks: int, seed: int, s2n: float) -> pd.DataFrame:
    """Networks > exchanges (6 each) > participants, pre and post scores; network variance
    s2n, exchange 0.08, participant 0.5, residual 0.4."""
    rng = np.random.default_rng(seed)
    n_ex = 6 * n_networks
    net = np.repeat(np.arange(n_networks), 6)
    sizes = rng.integers(15, 40, n_ex)
    ex = np.repeat(np.arange(n_ex), sizes)
    n = len(ex)
    level = (rng.normal(0, math.sqrt(s2n), n_networks)[net][ex]
             + rng.normal(0, math.sqrt(0.08), n_ex)[ex] + rng.normal(0, math.sqrt(0.5), n))
    y = np.repeat(3.0 + level, 2) + np.tile([0.0, 0.3], n) + rng.normal(0, math.sqrt(0.4), 2 * n)
    return pd.DataFrame({"participant": np.repeat(np.arange(n), 2),
                         "exchange": np.repeat(ex, 2).astype(str),
                         "network": np.repeat(net[ex], 2).astype(str),
                         "wave": np.tile(["pre", "post"], n), "score": y})


def test_network_level_equals_mixedlm_with_network_groups_and_exchange_component():
    """The network ICC comes from a model that has the level (issue 10 §1): the baseline
    three-level fit equals statsmodels MixedLM(groups=network, vc exchange) by REML."""
    from analytics.stats.longitudinal import network_levels

    d = _networked(12, 3, 0.06)
    out = network_levels(d, exchange="exchange", network="network").set_index("term")
    pre = d[d.wave == "pre"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = smf.mixedlm("score ~ 1", pre, groups="network", re_formula="1",
                        vc_formula={"exchange": "0 + C(exchange)"}).fit(reml=True)
    s2n, s2x, s2e = float(m.cov_re.iloc[0, 0]), float(m.vcomp[0]), float(m.scale)
    assert out.loc["var_network", "estimate"] == pytest.approx(s2n, abs=1e-4)
    assert out.loc["icc_network", "estimate"] == pytest.approx(s2n / (s2n + s2x + s2e), abs=1e-4)
    assert out.loc["icc_exchange_pre", "estimate"] == pytest.approx(s2x / (s2n + s2x + s2e),
                                                                    abs=1e-4)
    assert out.loc["n_networks", "estimate"] == 12


def test_network_icc_recovers_a_planted_network_effect_and_reads_near_zero_without():
    from analytics.stats.longitudinal import network_levels

    truth = 0.10 / (0.10 + 0.08 + 0.5 + 0.4)
    with_effect = [network_levels(_networked(40, s, 0.10), exchange="exchange",
                                  network="network").set_index("term").loc["icc_network",
                                                                           "estimate"]
                   for s in range(5)]
    without = [network_levels(_networked(40, s, 0.0), exchange="exchange",
                              network="network").set_index("term").loc["icc_network",
                                                                       "estimate"]
               for s in range(5)]
    assert abs(np.mean(with_effect) - truth) < 0.03, (with_effect, truth)
    assert np.mean(without) < 0.02, without


def test_the_derive_step_stores_network_rows_beside_the_exchange_level(tmp_path):
    from analytics.derive import materialise

    d = _networked(8, 5, 0.05).rename(columns={"exchange": "exchange_id"})
    d = d.assign(unit=d["participant"], instrument="i", scale="s", is_comparison=False,
                 modality="virtual")
    out, _ = materialise._longitudinal(d, 0)
    t = out.set_index("term")
    assert {"var_network", "icc_network", "icc_exchange_pre", "n_networks"} <= set(t.index)
    assert t.loc["n_networks", "estimate"] == 8


@pytest.mark.parametrize("exchange", [None, "exchange"])
@pytest.mark.parametrize("design", [{}, {"group": "modality"},
                                    {"group": "modality", "comparison": "comp"}])
def test_scores_the_design_reproduces_exactly_are_not_estimable_not_a_crash(exchange, design):
    """Every answer the same (a tiny or test program) left a zero residual sum of squares that
    the REML gradient divided by, failing the whole load; now the scale is 'not_estimable'."""
    n = 30
    d = pd.DataFrame({"participant": np.repeat(np.arange(n), 3),
                      "wave": np.tile(["pre", "post", "followup"], n), "score": 2.5,
                      "exchange": np.repeat(np.arange(n) % 3, 3),
                      "modality": np.repeat(np.where(np.arange(n) % 2, "virtual", "physical"), 3),
                      "comp": np.repeat(np.arange(n) % 5 == 0, 3)})
    out = longitudinal_model(d, instrument=None, scale=None, exchange=exchange, **design)
    assert list(out["term"]) == ["not_estimable"] and not out["converged"].any()
    # the same when the scores differ only by wave: the fixed effects reproduce them
    d["score"] = d["wave"].map({"pre": 3.0, "post": 3.5, "followup": 3.25})
    out = longitudinal_model(d, instrument=None, scale=None, exchange=exchange, **design)
    assert list(out["term"]) == ["not_estimable"]


def test_network_rows_are_left_out_when_every_baseline_score_is_the_same():
    from analytics.stats.longitudinal import network_levels

    d = _networked(6, 1, 0.05).assign(score=3.0)
    assert network_levels(d, exchange="exchange", network="network").empty
