"""The codebook of the researcher exports: what every column means and how it was computed.

Column names and types come from `etl.schema.RESULT_TABLES` (the one place they are spelled);
this module adds the words: a description per column, the methods per table, and the two
provenance columns every export carries. `datapackage()` turns them into a Frictionless Data
Package descriptor (Table Schema field types), `markdown()` into the short readable CODEBOOK.md.
Written by hand because the frictionless library is not a dependency; the descriptor follows
https://specs.frictionlessdata.io/data-package/ and /table-schema/ (v1, tabular-data-package).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from analytics import estimands
from analytics.derive.materialise import GROUP_DIMENSIONS
from analytics.stats.measurement import (
    DIF_ALPHA,
    DIF_DELTA_R2,
    DIF_MIN_N,
    FLOOR_CEILING_SHARE,
)
from analytics.stats.reliability import ALPHA_THRESHOLD, SMALL_N_MIN, SMALL_N_PER_ITEM
from etl import schema

__all__ = [
    "EXPORT_TABLES",
    "PROVENANCE_COLUMNS",
    "DESCRIPTIONS",
    "METHODS",
    "GENERAL_METHODS",
    "frictionless_type",
    "export_columns",
    "datapackage",
    "markdown",
]

# Export name (the CLI's TABLE) -> warehouse result table.
EXPORT_TABLES: dict[str, schema.Table] = schema.RESULT_EXPORTS

# Every exported row carries these two columns (CSV has no other place for them; XLSX and
# Parquet repeat them in an "about" sheet and in the file's key-value metadata).
PROVENANCE_COLUMNS: tuple[schema.Column, ...] = (
    schema.Column("data_version", "INTEGER",
                  doc="warehouse data version the numbers were computed from (meta.data_version)"),
    schema.Column("generated_at", "VARCHAR",
                  doc="UTC time the numbers were computed, ISO 8601 (YYYY-MM-DDThh:mm:ssZ)"),
)

_SUPPRESSED = ("'n < k' (e.g. 'n < 10') when the group has fewer than k participants: its "
               "counts and statistics are then empty (NULL), never zero; empty when shown")

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "scale_scores": {
        "participant": "participant pseudonym: keyed hash (HMAC-SHA256) of the source id; the "
                       "same person has the same pseudonym in every wave and load",
        "exchange_id": "exchange the answers belong to",
        "wave": "survey wave: pre, post, followup, followup_6m …",
        "instrument": "instrument id (a YAML file in surveys/)",
        "scale": "scale id within the instrument",
        "score": "mean of the answered items after reverse coding (min + max − answer), on the "
                 "instrument's raw range; empty when fewer than the scale's min_items were "
                 "answered",
        "n_items_answered": "items of the scale answered in this wave",
    },
    "reliability": {
        "instrument": "instrument id",
        "scale": "scale id",
        "wave": "survey wave",
        "n": "respondents (participant × exchange) with at least one answer to the scale in "
             "the wave; empty when fewer than k (min_cell)",
        "n_items": "items of the scale answered in the wave",
        "alpha": "Cronbach's alpha from pairwise-complete covariances, reverse-coded items "
                 "recoded first (pingouin.cronbach_alpha; R psych::alpha raw_alpha)",
        "alpha_ci_low": "lower bound of the 95% CI of alpha (Feldt, Woodruff & Salih 1987 "
                        "F-distribution interval, as pingouin, unrounded)",
        "alpha_ci_high": "upper bound of the 95% CI of alpha",
        "below_threshold": f"true when alpha < {ALPHA_THRESHOLD:.2f}: interpret the scale's "
                           "results with care",
    },
    "prepost": {
        "instrument": "instrument id",
        "scale": "scale id",
        "group_by": "grouping dimension: overall, " + ", ".join(GROUP_DIMENSIONS[:-1])
                    + f" or {GROUP_DIMENSIONS[-1]}",
        "group": "the group within group_by (cluster id, ISO 3166-1 alpha-3 country, exchange "
                 "id, …; 'overall' for overall; 'participant' or 'comparison' for comparison)",
        "n": "complete pre/post pairs (participant × exchange with a score in both waves)",
        "mean_pre": "mean score at pre",
        "mean_post": "mean score at post",
        "diff": "mean of post − pre (positive = gain; negative changes are shown as they are)",
        "diff_ci_low": "lower bound of the 95% t interval of diff (R: t.test(paired = TRUE))",
        "diff_ci_high": "upper bound of the 95% t interval of diff",
        "t": "paired t statistic",
        "dof": "degrees of freedom of t (n − 1)",
        "p": "two-sided p value of the paired t test",
        "p_fdr": "Benjamini–Hochberg adjusted p across the scales of one group "
                 "(group_by × group), as R p.adjust(p, 'BH')",
        "wilcoxon_p": "two-sided p of the Wilcoxon signed-rank test on post − pre rounded to 10 "
                      "decimals, zeros dropped: exact below 50 differences without ties or "
                      "zeros, else normal approximation with tie and continuity corrections "
                      "(= R wilcox.test(round(post - pre, 10)))",
        "d_z": "Cohen's d_z: mean difference / SD of the differences",
        "d_av": "Cohen's d_av: mean difference / sqrt((sd_pre² + sd_post²) / 2) (Cumming "
                "2012; = pingouin.compute_effsize(post, pre, paired=True), uncorrected)",
        "hedges_g": "Hedges' g_av for paired data: J(ν) · d_av, J(ν) = Γ(ν/2) / (√(ν/2) · "
                    "Γ((ν − 1)/2)) (Hedges 1981), ν = 2(n − 1) / (1 + r²), r = correlation of "
                    "pre and post (Fitts 2020; Cousineau & Goulet-Pelletier 2020); empty below "
                    "3 pairs",
        "hedges_g_ci_low": "lower bound of the 95% CI of the population δ_av: noncentral-t "
                           "interval of the paired t's noncentrality (df n − 1; Steiger & "
                           "Fouladi 1997, as MBESS conf.limits.nct) times SD(post − pre) / "
                           "(√n · s_av) (cf. Algina, Keselman & Penfield 2005); not R "
                           "effsize::cohen.d",
        "hedges_g_ci_high": "upper bound of the 95% CI of the population δ_av (as "
                            "hedges_g_ci_low)",
        "suppressed": _SUPPRESSED,
        "p_fdr_table": "Benjamini–Hochberg adjusted p across every shown row of one group_by "
                       "table (all its groups × instruments × scales; rows under k left out), "
                       "as R p.adjust(p, 'BH'): use this when reading a whole table at once",
        "n_clusters": "exchanges the complete pairs of the row come from (the clusters of the "
                      "_cr2 columns)",
        "diff_se_cr2": "cluster-robust standard error of diff, clusters = exchange, CR2 "
                       "(Bell & McCaffrey 2002; Pustejovsky & Tipton 2018), as R clubSandwich "
                       "vcovCR(lm(change ~ 1), cluster = exchange, type = 'CR2'); empty (with "
                       "df, CI and p) where the CR2 variance is 0 in exact arithmetic (every "
                       "exchange's mean change the same): not estimable",
        "diff_df_cr2": "Satterthwaite degrees of freedom of diff_se_cr2 (clubSandwich "
                       "coef_test(..., test = 'Satterthwaite')); J − 1 for J equal exchanges",
        "diff_ci_low_cr2": "lower bound of the design-aware 95% CI of diff: diff ± "
                           "t(0.975, diff_df_cr2) · diff_se_cr2",
        "diff_ci_high_cr2": "upper bound of the design-aware 95% CI of diff",
        "p_cr2": "two-sided p of diff / diff_se_cr2 against t(diff_df_cr2)",
        "few_clusters": "true when n_clusters < 10: the design-aware interval rests on few "
                        "exchanges and is rough; read it with care",
        "hedges_g_ci_low_cr2": "lower bound of the design-aware 95% CI of the population "
                               "delta_av (what hedges_g estimates): diff_ci_low_cr2 / s_av, "
                               "s_av = sqrt((sd_pre² + sd_post²) / 2) taken as known (s_av "
                               "is the total SD, between and within exchanges: Hedges 2007's "
                               "delta_T for clustered designs, J Educ Behav Stat 32(4)); the "
                               "interval the dashboard shows",
        "hedges_g_ci_high_cr2": "upper bound of the design-aware 95% CI of delta_av: "
                                "diff_ci_high_cr2 / s_av",
    },
    "longitudinal": {
        "instrument": "instrument id",
        "scale": "scale id",
        "term": "model term: a fixed effect (Intercept, wave[T.post], "
                "wave[T.post]:modality[T.virtual], …), emm[wave=W] (estimated marginal mean), "
                "contrast[W-pre] (change from pre), did[W-pre] (participants' change minus the "
                "comparison group's; not randomised: assumes parallel trends), var_exchange, "
                "var_participant, var_residual, icc_exchange, icc_participant, n_exchanges, "
                "df_between_exchanges, var_network, icc_network, icc_exchange_pre, n_networks; "
                "'|modality=M' or '|arm=comparison' restricts a row to a group",
        "estimate": "estimate of the term",
        "se": "standard error (conditional on the variance components, as lme4's vcov); empty "
              "for variance components and ICCs",
        "ci_low": "lower bound of the 95% Wald t CI (estimate − t(0.975, df) se, df between-"
                  "within: see the model note; df near exchanges for means)",
        "ci_high": "upper bound of the 95% Wald t CI",
        "p": "two-sided Wald p value (t reference with the same df)",
        "n_participants": "participants in the model (participant × exchange units)",
        "n_obs": "scores (participant × wave) in the model",
        "converged": "whether the REML optimiser converged; shown, never hidden. A scale whose "
                     "model cannot be estimated has one row term = not_estimable",
        "suppressed": "why estimate, se, ci_low, ci_high and p are empty ('n < k'): a cell "
                      "(arm × wave × modality) the row rests on has fewer than k participants "
                      "with a score, or the model has; empty where the row is shown",
    },
    "attrition": {
        "group_by": "grouping dimension (overall, cluster, country, …, comparison)",
        "group": "the group within group_by",
        "wave": "survey wave (the funnel pre → post → follow-up)",
        "n_invited": "participants of the group expected to answer: every participant of the "
                     "group in the warehouse",
        "n_responded": "participants of the group with at least one answer in this wave",
        "rate": "n_responded / n_invited",
        "suppressed": _SUPPRESSED,
    },
    "attrition_baseline": {
        "instrument": "instrument id (empty for the engagement row)",
        "scale": "scale id (empty for the engagement row)",
        "measure": "baseline_score (the pre score of the scale) or engagement (events logged "
                   "in the participation log)",
        "n_completers": "participants with a baseline who answered the post survey",
        "n_dropouts": "participants with a baseline who did not answer the post survey",
        "mean_completers": "mean of the measure among completers",
        "mean_dropouts": "mean of the measure among non-completers",
        "diff": "mean_completers − mean_dropouts",
        "diff_ci_low": "lower bound of the 95% Welch t interval of diff",
        "diff_ci_high": "upper bound of the 95% Welch t interval of diff",
        "t": "Welch's t statistic (R: t.test(completers, dropouts), var.equal = FALSE)",
        "dof": "Welch–Satterthwaite degrees of freedom",
        "p": "two-sided p value",
        "suppressed": "'n < k' when completers or non-completers number fewer than k: the "
                      "row's numbers are then empty; empty when shown",
    },
    "sensitivity": {
        "instrument": "instrument id",
        "scale": "scale id",
        "wave": "the later wave whose change from pre is estimated (post, followup, …)",
        "method": "completers (responders only, as the pre/post table) | ipw (inverse-"
                  "probability weighted: all participants if missing at random given "
                  "engagement, pre score and modality) | delta (non-responders' change = "
                  "prediction from responders + delta SDs: missing not at random for delta ≠ 0) "
                  "| tipping_point (the delta at which the 95% CI's lower bound reaches 0)",
        "delta": "delta rows: the shift of the non-responders' change in SDs of the "
                 "responders' change (0 = regression imputation under MAR, < 0 = they changed "
                 "less); tipping_point row: the tipping delta (empty when no delta in ±10 SD "
                 "reaches 0); empty for completers and ipw",
        "estimate": "mean change from pre to the wave (scale points): completers' mean, the "
                    "IPW weighted mean, or the all-participants mean at delta",
        "se": "standard error: completers CR2 cluster-robust by exchange; ipw and delta CR1 "
              "cluster-robust by exchange (G/(G − 1) factor)",
        "dof": "degrees of freedom of the t reference: completers Satterthwaite (CR2); ipw and "
               "delta G − 1, G = exchanges",
        "ci_low": "lower bound of the 95% t interval (0 on the tipping_point row, by "
                  "definition)",
        "ci_high": "upper bound of the 95% t interval",
        "n": "participants the estimate is about: responders (completers) or every exchange "
             "participant with a pre score (ipw, delta, tipping_point)",
        "n_responded": "of those with a pre score, how many have a score at the wave",
        "n_clusters": "exchanges behind the row",
        "few_clusters": "true when n_clusters < 10: the cluster-robust interval is rough",
        "suppressed": "'n < k' when the responders, or (all-participant rows) the "
                      "non-responders, number fewer than k: the row's numbers are then empty; "
                      "empty when shown",
    },}

_COMPARISON_SUPPRESSED = ("'n < k' when either arm (or, for a covariate level, the count "
                          "in or outside the level in either arm) has fewer than k units: "
                          "the row's numbers are then empty, never zero; empty when shown")
DESCRIPTIONS.update({
    "balance": {
        "covariate": "what is compared at baseline: pre_score (one row per scale) or a "
                     "covariate of the contract: gender, role, age_band (age at the start of "
                     "the unit's exchange), income_group, connectivity, institution_kind "
                     "(of the home institution)",
        "instrument": "instrument id (pre_score rows; empty otherwise)",
        "scale": "scale id (pre_score rows; empty otherwise)",
        "level": "the covariate's level (one row per level; 'not reported' when empty); "
                 "empty for pre_score rows",
        "statistic": "mean (pre_score) or proportion (a covariate level)",
        "n_participant": "exchange participants (participant × exchange units) in the row: "
                         "with a pre score on the scale (pre_score) or on any scale",
        "n_comparison": "comparison-group units in the row, as n_participant",
        "value_participant": "participants' mean pre score, or their share in the level",
        "value_comparison": "comparison group's mean pre score, or its share in the level",
        "sd_participant": "participants' sample SD (mean rows) or sqrt(p(1 − p)) (proportions)",
        "sd_comparison": "comparison group's SD, as sd_participant",
        "smd": "standardised mean difference, participants − comparison: (mean_T − mean_C) / "
               "sqrt((sd_T² + sd_C²) / 2) for means, (p_T − p_C) / sqrt((p_T(1 − p_T) + "
               "p_C(1 − p_C)) / 2) for proportions (Austin 2009, Stat Med 28:3083)",
        "imbalanced": "true when |smd| > 0.1 (Austin 2009): the arms differ at baseline on it",
        "suppressed": _COMPARISON_SUPPRESSED,
    },
    "comparison": {
        "instrument": "instrument id",
        "scale": "scale id",
        "method": "raw_change_difference: OLS of post − pre on arm (participants' mean change "
                  "minus the comparison group's: completers' difference in differences); "
                  "ancova: the arm coefficient of OLS post ~ pre + arm + covariates",
        "n_participant": "exchange participants with both a pre and a post score",
        "n_comparison": "comparison-group units with both a pre and a post score",
        "estimate": "participants minus comparison group, scale points (positive = "
                    "participants gained more)",
        "se_cr2": "cluster-robust standard error, clusters = exchange (a comparison person's: "
                  "the exchange their class was matched to), CR2 (Bell & McCaffrey 2002; "
                  "Pustejovsky & Tipton 2018), as R clubSandwich vcovCR(type = 'CR2'); empty "
                  "(with df, CI and p) where the CR2 variance is 0 in exact arithmetic (the "
                  "exchanges behind the estimate fit it exactly): not estimable",
        "df_cr2": "Satterthwaite degrees of freedom of the estimate (clubSandwich coef_test(..., "
                  "test = 'Satterthwaite'), working model σ²I)",
        "ci_low_cr2": "lower bound of the 95% CI: estimate − t(0.975, df_cr2) · se_cr2",
        "ci_high_cr2": "upper bound of the 95% CI",
        "p_cr2": "two-sided p of estimate / se_cr2 against t(df_cr2)",
        "n_clusters": "exchanges the row's units come from",
        "few_clusters": "true when n_clusters < 10: the interval rests on few exchanges and "
                        "is rough; read it with care",
        "adjusted_for": "what the model adjusts for besides the arm: pre score and the "
                        "covariates that kept at least one treatment-coded column (constant "
                        "or aliased columns are dropped, as R lm does)",
        "suppressed": _COMPARISON_SUPPRESSED,
    },
})

GENERAL_METHODS = (
    "Small-cell protection: a group with fewer than k participants (the threshold is stated as "
    "min_cell) is shown with suppressed = 'n < k' and empty counts and statistics, never as "
    "zero. min_cell = 0 means unsuppressed output, for people with row-level access only. "
    "Where a table is shown beside its totals (dashboard, PDF), cells that would let a "
    "suppressed one be recovered by subtraction are blanked too (suppressed = "
    "'complementary'), and a cell or selection that one filter value (a cluster, country, "
    "program, exchange, term, role, modality, setting, or a month at either end of the date "
    "range) would change by 1 to k - 1 participants is blanked (suppressed = 'difference < k'): "
    "two views that differ by one value never show a group under k by their difference. Date "
    "ranges are whole months. Funders' outputs round counts to a base (EXCHANGE_IMPACT_ROUND_TO, "
    "default 5), each count on its own. "
    "Groupings other than 'comparison' and 'overall' hold exchange participants only; the "
    "comparison group (participants.comparison = true) appears under group_by = 'comparison'. "
    "Missing values are empty cells (CSV, XLSX) or nulls (Parquet)."
)

METHODS: dict[str, str] = {
    "scale_scores": (
        "Scale score = mean of the answered items of the scale after reverse coding "
        "(min + max − answer), kept when at least the instrument's min_items are answered "
        "(surveys/*.yaml). Row level (pseudonymised): one row per participant × exchange × "
        "wave × scale. Not subject to small-cell suppression, as it holds no aggregates."
    ),
    "reliability": (
        "Cronbach's alpha per instrument × scale × wave over all respondents (comparison group "
        "included), reverse-coded items recoded first, pairwise-complete covariances "
        "(pingouin.cronbach_alpha(nan_policy='pairwise') = R psych::alpha raw_alpha), with "
        f"Feldt's 95% CI (F distribution). Scales with alpha < {ALPHA_THRESHOLD:.2f} are "
        "flagged; a wave with "
        "fewer than k respondents has its numbers left empty."
    ),
    "prepost": (
        estimands.COMPLETERS + " "
        "Paired comparison of post and pre scale scores per scale, overall and by group: mean "
        "difference post − pre with the 95% t interval and paired t test (R: t.test(post, pre, "
        "paired = TRUE)), which treats participants as independent; beside it the "
        "design-aware columns (_cr2): the same mean change with a cluster-robust standard "
        "error by exchange, CR2 small-sample correction and Satterthwaite degrees of freedom "
        "(Bell & McCaffrey 2002; Pustejovsky & Tipton 2018; R clubSandwich), the number of "
        "exchanges (n_clusters) and a flag below 10 exchanges (few_clusters). Wilcoxon "
        "signed-rank p on post − pre rounded to 10 decimals with R wilcox.test's rule (exact "
        "below 50 non-zero differences without ties or zeros, else normal approximation with "
        "tie and continuity corrections). Effect sizes labelled by kind: d_z = mean difference "
        "/ SD of the differences, d_av = mean difference / sqrt((sd_pre² + sd_post²) / 2), "
        "Hedges' g_av = J(ν) · d_av with ν = 2(n − 1) / (1 + r²) (the paired-samples "
        "correction of Fitts 2020 and Cousineau & Goulet-Pelletier 2020) and a noncentral-t "
        "95% CI of δ_av (Steiger & Fouladi 1997; Algina, Keselman & Penfield 2005). p_fdr: "
        "Benjamini–Hochberg across the scales of each group_by × group; p_fdr_table: across "
        "all shown rows of one group_by (R p.adjust(p, 'BH')). Pairs are participant × "
        "exchange with both a pre and a post score."
    ),
    "longitudinal": (
        "Linear mixed model per instrument × scale across all waves, fitted by REML: "
        "score ~ wave * modality [* arm] + (1 | participant), treatment coding with pre as the "
        "reference wave; arm (exchange participant vs comparison, reference comparison) enters "
        "when comparison participants exist. Estimated marginal means per wave (modality "
        "levels weighted equally, as emmeans), contrasts against pre (post − pre: the gain; "
        "followup − pre: does it persist), difference in differences (participants' change "
        "minus the comparison group's) with 95% Wald CIs. Variance components and ICCs: "
        "from the model with participants (participant x exchange) nested in exchanges, "
        "score ~ ... + (1 | participant) + (1 | exchange): icc_exchange = s2_x / (s2_x + s2_p + "
        "s2_e), the share between exchanges; icc_participant = (s2_x + s2_p) / (s2_x + s2_p + "
        "s2_e), the correlation of two scores of one participant (Snijders & Bosker 2012, "
        "ch. 4). Networks: icc_network = s2_n / (s2_n + s2_x + s2_e) and icc_exchange_pre from "
        "a three-level random-intercept model of the pre score, score_pre ~ modality [+ arm] "
        "+ (1 | network) + (1 | network:exchange), REML (fit_nested_intercepts one level up; "
        "equals statsmodels MixedLM with groups = network and an exchange variance "
        "component); network = the exchange's cluster; with under ~10 networks (n_networks) "
        "its variance is poorly determined and often 0. CIs are Wald t "
        "with between-within df: exchanges minus exchange-level columns "
        "(df_between_exchanges) for rows resting on an exchange-level column (means, modality "
        "differences at one wave), the large within df otherwise (changes, DiD). The exchange "
        "intercept does not model exchanges that differ in their gain. Fitted by the "
        "closed-form profiled REML of analytics.stats.longitudinal.fit_nested_intercepts, "
        "equal to statsmodels MixedLM with groups = exchange and a participant variance "
        "component. Small cells are counted per estimate: a row is empty when any "
        "arm × wave × modality cell it rests on (an emm its own cells, a contrast both waves', "
        "a difference in differences its four, a coefficient every cell it enters or is "
        "defined by, Intercept the reference cell, a variance component or ICC the whole "
        "model) has fewer than k participants with a score; its suppressed column then says "
        "'n < k'. " + estimands.MODEL + " " + estimands.MODEL_MISSING + " "
        + estimands.DID_ASSUMPTION
    ),
    "attrition": (
        "Survey response funnel per wave (pre → post → follow-up), overall and by group: every "
        "enrolled participant of the group is invited to every wave; n_responded counts those "
        "with at least one answer in the wave (analytics.stats.attrition.attrition_funnel)."
    ),
    "attrition_baseline": (
        "Did those who dropped out differ at baseline? Among exchange participants with a pre "
        "score, completers (answered the post survey) vs non-completers: the pre score per "
        "scale and the number of events logged, compared with Welch's t test (R t.test, "
        "var.equal = FALSE)."
    ),
    "sensitivity": (
        estimands.SENSITIVITY + " "
        "Units: exchange participants (participant × exchange) with a pre score; for each later "
        "wave a unit responded when it has a score there, its change is score(wave) − "
        "score(pre). completers: the responders' mean change, CR2 cluster-robust by exchange "
        "with Satterthwaite df (Pustejovsky & Tipton 2018). ipw: inverse-probability weighting "
        "(Robins, Rotnitzky & Zhao 1995; Seaman & White 2013): a logistic regression "
        "(statsmodels GLM, binomial, logit) of responding on log1p(events logged), the pre "
        "score and modality; stabilised weights P(respond) / p̂, truncated at the 1st and 99th "
        "percentiles of the responders' weights (Cole & Hernán 2008); the weighted mean change "
        "is the intercept of statsmodels WLS with cov_type = 'cluster' by exchange (CR1), t "
        "with G − 1 df, weights treated as known. delta: delta-adjusted pattern-mixture "
        "analysis (Carpenter & Kenward 2013, ch. 10; Ratitch, O'Kelly & Tosiello 2013): OLS "
        "of the responders' change on the pre score, log1p(events) and modality predicts each "
        "non-responder's change, plus delta × SD(responders' change); the mean over every "
        "unit, with the cluster-robust (CR1) SE of its influence function (the regression's "
        "estimation included) and t with G − 1 df; delta = 0 is regression imputation under "
        "MAR. tipping_point: the delta at which the 95% CI's lower bound of the delta "
        "estimate is 0 (Brent's method). " + estimands.SENSITIVITY_MAR + " "
        + estimands.SENSITIVITY_MNAR + " Rows with fewer than k responders or (all-participant "
        "rows) fewer than k non-responders are suppressed."
    ),
}

# The comparison arm's modality (issue 10 §2): said wherever did[…|modality=M] is described.
DESCRIPTIONS["longitudinal"]["term"] += ". " + estimands.COMPARISON_MODALITY
METHODS["longitudinal"] += " " + estimands.COMPARISON_MODALITY

METHODS.update({
    "balance": (
        "Baseline balance of the comparison group, which was not randomised: standardised mean "
        "differences (SMD) between exchange participants and the comparison group (Austin "
        "2009, Stat Med 28:3083-3107): for each scale's pre score, (mean_T − mean_C) / "
        "sqrt((sd_T² + sd_C²) / 2) over the units with that pre score; for each level of "
        "gender, role, age band (age at the start of the unit's exchange), the home "
        "institution's income group, connectivity and kind, (p_T − p_C) / sqrt((p_T(1 − p_T) "
        "+ p_C(1 − p_C)) / 2) over the units with a pre score on any scale. |SMD| > 0.1 is "
        "flagged (imbalanced). Units are participant × exchange, as in every table "
        "(analytics.stats.comparison.balance_table)."
    ),
    "comparison": (
        estimands.COMPLETERS + " Participants minus the comparison group per scale, two "
        "estimators side by side: raw_change_difference, the difference in mean change post − "
        "pre (OLS of the change on arm), and ancova, the arm coefficient of OLS post ~ pre + "
        "arm + gender + role + age band + income group + connectivity + institution kind "
        "(treatment coding, aliased columns dropped). Both with cluster-robust standard errors "
        "by exchange, CR2 (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018, JBES 36(4)) and "
        "Satterthwaite degrees of freedom, as R clubSandwich::coef_test(vcov = 'CR2', test = "
        "'Satterthwaite'); checked against the definition written out, statsmodels' HC2 for "
        "singleton clusters, clubSandwich's documented equivalence with Welch's t for a "
        "two-period difference in differences (tests/testthat/test_lm.R) and the "
        "Bell–McCaffrey df of a two-group difference in Imbens & Kolesár (2016, REStat 98(4)). "
        "A comparison person's exchange is the one their class was matched to: the cluster, "
        "and the matching stratum of the model's modality terms. "
        + estimands.DID_ASSUMPTION + " " + estimands.ANCOVA_ASSUMPTION
    ),
})

# Measurement checks (issue 10 §4): reliability by language and country, floor and ceiling,
# invariance across languages. Appended, so the entries above keep their order.
DESCRIPTIONS.update({
    "reliability_groups": {
        "instrument": "instrument id",
        "scale": "scale id",
        "wave": "survey wave",
        "group_by": "all (every respondent of the wave), language (the language the survey "
                    "was taken in: responses.language, ISO 639-1) or country (the "
                    "participant's institution's country, ISO 3166-1 alpha-3)",
        "group": "the language code or country code; 'all' for group_by = all",
        "n": "respondents (participant × exchange) of the group with at least one answer to "
             "the scale in the wave",
        "n_items": "items of the scale answered in the group and wave",
        "alpha": "Cronbach's alpha, pairwise-complete covariances, reverse-coded items recoded "
                 "(as res_reliability)",
        "alpha_ci_low": "lower bound of Feldt's 95% CI of alpha",
        "alpha_ci_high": "upper bound of Feldt's 95% CI of alpha",
        "omega": "McDonald's omega (total) = (Σλ)² / ((Σλ)² + Σψ) from a one-factor "
                 "maximum-likelihood model of the pairwise-complete covariance matrix "
                 "(model-implied variance of the sum in the denominator, as MBESS "
                 "ci.reliability(type = 'omega') and semTools reliability()); empty with "
                 "fewer than 3 items or when small_n (too few to fit a factor model)",
        "below_threshold": f"true when alpha or omega < {ALPHA_THRESHOLD:.2f}",
        "small_n": f"true when n < max({SMALL_N_MIN}, {SMALL_N_PER_ITEM} × n_items): too few "
                   "respondents for a stable estimate (omega not estimated)",
        "suppressed": _SUPPRESSED,
    },
    "floor_ceiling": {
        "instrument": "instrument id",
        "scale": "scale id",
        "wave": "survey wave",
        "n": "respondents (participant × exchange) with a valid scale score in the wave",
        "scale_min": "lowest possible score (the items' minimum)",
        "scale_max": "highest possible score (the items' maximum)",
        "n_floor": "respondents scoring exactly scale_min (every answered item at its lowest "
                   "after reverse coding); empty when from 1 to k − 1 (a subset under k), "
                   "0 stays 0",
        "n_ceiling": "respondents scoring exactly scale_max; empty when from 1 to k − 1",
        "floor_share": "n_floor / n; empty where n_floor is",
        "ceiling_share": "n_ceiling / n; empty where n_ceiling is",
        "floor_effect": f"true when floor_share > {FLOOR_CEILING_SHARE:.0%} (Terwee et al. "
                        "2007): change at the bottom of the scale cannot be seen",
        "ceiling_effect": f"true when ceiling_share > {FLOOR_CEILING_SHARE:.0%} (Terwee et al. "
                          "2007): gains of those at the top cannot be seen",
        "suppressed": _SUPPRESSED,
    },
    "invariance": {
        "instrument": "instrument id",
        "scale": "scale id",
        "wave": "the wave the check uses: pre (before any exchange effect)",
        "item": "item tested (reverse-coded items recoded); empty when the scale had fewer "
                "than two languages to compare",
        "language": "the language (ISO 639-1) compared with the reference",
        "reference": "the reference language: the one with most respondents who answered "
                     "every item of the scale",
        "n_language": "respondents in the language who answered every item of the scale",
        "n_reference": "respondents in the reference language who answered every item",
        "shift": "uniform difference of the item in the language, in answer points, at the "
                 "same rest score: coefficient of the language in OLS item ~ rest + language "
                 "(rest = sum of the scale's other items)",
        "delta_r2": "R² of item ~ rest + language + rest:language minus R² of item ~ rest "
                    "(the DIF effect size, Zumbo 1999)",
        "f": "F statistic of the two language terms (2 df; uniform and non-uniform DIF), "
             "statsmodels compare_f_test",
        "p": "p value of f",
        "p_holm": "Holm-adjusted p over every item × language test of the scale (R "
                  "p.adjust(p, 'holm'))",
        "differs": f"true when p_holm < {DIF_ALPHA} and delta_r2 ≥ {DIF_DELTA_R2} (Jodoin & "
                   "Gierl 2001's boundary of moderate DIF): the item does not measure the same "
                   "way in this language",
        "verdict": "the scale's plain verdict, on each of its rows: 'invariant across …', "
                   "'item X differs in Y', or 'too few per language' (fewer than two "
                   f"languages with {DIF_MIN_N} or more complete respondents); languages with "
                   f"fewer than {DIF_MIN_N} are named as not checked",
    },
})
METHODS.update({
    "reliability_groups": (
        "Internal consistency per instrument × scale × wave, for all respondents, per language "
        "the survey was taken in and per country: Cronbach's alpha with Feldt's 95% CI (as "
        "res_reliability) and McDonald's omega (total) from a one-factor maximum-likelihood "
        "model (McDonald 1999), fitted by Fisher scoring on the pairwise-complete covariance "
        "matrix (analytics.stats.reliability.one_factor_ml, held equal to semopy's one-factor "
        "CFA and checked against the known omega of simulated congeneric data). Flagged when "
        f"alpha or omega < {ALPHA_THRESHOLD:.2f}, and small_n when n < max({SMALL_N_MIN}, "
        f"{SMALL_N_PER_ITEM} × items) (Feldt's interval and a factor model need more; omega is "
        "then not estimated). A group with fewer than k respondents is suppressed. A low "
        "value in one language or country, with enough respondents, says the scale holds "
        "together less well there: read that group's results with care."
    ),
    "floor_ceiling": (
        "Share of respondents with a valid scale score who score exactly the scale's minimum "
        "(floor) or maximum (ceiling), per instrument × scale × wave, flagged above "
        f"{FLOOR_CEILING_SHARE:.0%} (Terwee et al. 2007, J Clin Epidemiol 60:34-42). A scale "
        "with a ceiling effect cannot show the gains of those at the top, so its mean change "
        "understates the change. Counts from 1 to k − 1 are left empty with their share; a "
        "wave with fewer than k scored respondents is suppressed."
    ),
    "invariance": (
        "Does each scale measure the same way in every language it was answered in? A "
        "differential item functioning (DIF) screen at the pre wave, per item and per language "
        "against the reference language (most respondents), on respondents who answered every "
        "item: OLS item ~ rest vs item ~ rest + language + rest:language (rest = sum of the "
        "scale's other items; Zumbo 1999's regression framework with a linear model for the "
        "Likert item), F test of the two language terms, Holm-adjusted over the scale's tests, "
        f"effect size ΔR²; an item differs when p_holm < {DIF_ALPHA} and ΔR² ≥ {DIF_DELTA_R2} "
        "(Jodoin & Gierl 2001). Languages with fewer than "
        f"{DIF_MIN_N} complete respondents are not checked. Chosen instead of a multi-group "
        "CFA (configural / metric / scalar, ΔCFI ≤ .01, Chen 2007) because semopy 2.3.11 "
        "cannot hold parameters equal across groups (it fits each group separately); the "
        "screen names the item and language that differ. A scale with an item that differs "
        "should not be compared across languages (means, gains) without dropping or "
        "re-examining that item; the translations are the project's own, not validated."
    ),
})

# Issue 13, persistence (analytics.derive.persistence, analytics.stats.persistence).
_PERSIST_SUPPRESSED = ("'n < k' when the group has fewer than k units (partnerships, or "
                       "participant × exchange units): its numbers are then empty, never zero; "
                       "empty when shown")
_PERSIST_KEYS = {
    "subject": "partnership (durations in days from started_on to ended_on) | participant "
               "(weeks from first to last UTC day with an event in an exchange; comparison "
               "participants excluded)",
    "group_by": "overall | kind (domestic: both institutions in one country; cross-border) | "
                "modality | cluster (the exchange's) | link (classroom-to-classroom vs "
                "single-class, see res_partnership_links.definition) for partnerships; "
                "overall | modality | setting for participants",
    "group": "the group's level ('all' for overall)",
    "unit": "unit of time and median columns: days | weeks",
    "n": "units in the group (partnerships, or participant × exchange units)",
}
DESCRIPTIONS.update({
    "persistence_curves": {
        **_PERSIST_KEYS,
        "time": "time of the step (0 on the first row of each curve)",
        "survival": "Kaplan–Meier estimate S(time): share still going (statsmodels "
                    "SurvfuncRight; R survfit)",
        "ci_low": "lower bound of the pointwise 95% interval, Greenwood variance on the "
                  "log(−log) scale (R survfit(conf.type = 'log-log'))",
        "ci_high": "upper bound of that interval",
        "at_risk": "units still at risk just before time",
        "ended": "units that ended (partnership ended, participant stopped) at time",
        "suppressed": _PERSIST_SUPPRESSED,
    },
    "persistence": {
        **_PERSIST_KEYS,
        "ended": "units whose end was observed (the survival 'events')",
        "censored": "units still going at the data's end date (or, participants, active in "
                    "their exchange's final week or the exchange still running)",
        "median": "Kaplan–Meier median duration (empty: not reached, as R prints NA)",
        "median_ci_low": "lower bound of its 95% CI (Brookmeyer–Crowley, log transform: R "
                         "print(survfit) default)",
        "median_ci_high": "upper bound (empty when the band never reaches 0.5)",
        "at_time": "the time point of survival_at (365 days; 4 weeks)",
        "survival_at": "Kaplan–Meier S(at_time) (R summary(fit, times = at_time))",
        "survival_at_ci_low": "lower bound of its 95% log(−log) interval",
        "survival_at_ci_high": "upper bound of that interval",
        "logrank_chi2": "log-rank χ² of the grouping (statsmodels survdiff; R survdiff), the "
                        "same on every row of the grouping; empty for overall; link: the two "
                        "known kinds only",
        "logrank_df": "its degrees of freedom (groups − 1)",
        "logrank_p": "its p value",
        "data_end": "the data's end date: the latest event, answer, or partnership start/end "
                    "in the warehouse; still-active partnerships are censored there",
        "suppressed": _PERSIST_SUPPRESSED,
    },
    "persistence_cox": {
        "subject": _PERSIST_KEYS["subject"],
        "model": "partnership_cross_border | partnership_link | participant (see the methods)",
        "term": "the model term: kind, modality, link, setting",
        "level": "the level compared with the reference",
        "reference": "the term's reference level (hr = 1)",
        "n": "units in the model",
        "ended": "ends observed in the model",
        "n_level": "units at level",
        "n_reference": "units at the reference level",
        "log_hr": "Cox coefficient: log hazard ratio, level vs reference",
        "se": "its standard error (se_kind)",
        "hr": "hazard ratio exp(log_hr): > 1 ends sooner than the reference",
        "ci_low": "lower bound of the 95% Wald interval exp(log_hr − 1.96·se)",
        "ci_high": "upper bound exp(log_hr + 1.96·se)",
        "p": "two-sided Wald p",
        "se_kind": "robust (sandwich) clustered by exchange (R coxph(..., cluster = "
                   "exchange_id)) or model-based",
        "converged": "false when the model could not be fitted (then the numbers are empty)",
        "suppressed": "'n < k' when the level or its reference has fewer than k units: the "
                      "row's numbers are then empty; empty when shown",
    },
    "partnership_links": {
        "link": "several classes each side | one class on a side | no teacher recorded on a "
                "side (see definition)",
        "definition": "how the link kind is told from the data (classes are not in the input "
                      "contract: teachers stand for classes)",
        "n": "partnerships of this kind",
        "n_participants": "participants active (any event) in these partnerships' exchanges "
                          "at either partner institution, summed over partnerships",
        "teachers_median": "median over partnerships of the smaller side's teachers",
        "active_per_partnership": "mean active participants per partnership (both sides)",
        "active_per_partnership_ci_low": "lower bound of its 95% t interval over partnerships",
        "active_per_partnership_ci_high": "upper bound",
        "events_per_active": "mean over partnerships of events per active participant",
        "events_per_active_ci_low": "lower bound of its 95% t interval",
        "events_per_active_ci_high": "upper bound",
        "minutes_per_active": "mean over partnerships of logged minutes per active participant",
        "minutes_per_active_ci_low": "lower bound of its 95% t interval",
        "minutes_per_active_ci_high": "upper bound",
        "ended": "partnerships of this kind that ended by the data's end date",
        "median_days": "Kaplan–Meier median duration in days (empty: not reached)",
        "median_days_ci_low": "lower bound of its 95% CI (Brookmeyer–Crowley, log)",
        "median_days_ci_high": "upper bound",
        "suppressed": "'n < k' when the partnerships or their active participants number fewer "
                      "than k: the row's numbers are then empty; empty when shown",
    },
})
_PERSIST_METHOD = (
    "Durations with censoring. Partnerships: days from started_on to ended_on; one with no "
    "ended_on, or an ended_on after the data's end date (the latest event, answer or "
    "partnership date in the warehouse), is censored at that date. Participants (per "
    "exchange, comparison participants excluded): weeks from the first to the last UTC day "
    "with an event; the participant stopped when that day falls before the exchange's final "
    "week and the exchange ended by the data's end date, else censored. Kaplan–Meier "
    "estimates (statsmodels SurvfuncRight = R survfit) with Greenwood variance; log-rank "
    "tests (statsmodels survdiff = R survdiff); Cox models (statsmodels PHReg, Efron ties = R "
    "coxph default). Checked against R survival on the NCCTG lung data to 3 decimals "
    "(tests/test_persistence.py). Groups with fewer than k units are suppressed."
)
METHODS.update({
    "persistence_curves": _PERSIST_METHOD + " One row per step of each curve, with a pointwise "
                          "95% interval on the log(−log) scale.",
    "persistence": _PERSIST_METHOD + " Median with the Brookmeyer–Crowley 95% CI (log "
                   "transform, R's print(survfit) default); S at a fixed time with its log(−log) "
                   "interval; the log-rank test across the grouping's groups.",
    "persistence_cox": _PERSIST_METHOD + " Models: partnership_cross_border = Surv(days, ended) "
                       "~ kind + modality + strata(cluster), cluster = exchange_id; "
                       "partnership_link = ~ link + kind + modality + strata(cluster) on "
                       "partnerships with a teacher recorded on both sides; participant = "
                       "Surv(weeks, stopped) ~ modality + setting + strata(cluster). Strata: a "
                       "baseline hazard per cluster (the exchange's), so cluster is adjusted "
                       "for without assuming its hazards proportional. Errors: Huber–White "
                       "sandwich clustered by exchange, 95% Wald intervals for the hazard ratio.",
    "partnership_links": (
        "Classroom-to-classroom vs single-class links. Classes are not in the input contract, "
        "so a class is proxied by a teacher: a side's teachers are the partner institution's "
        "teachers who took part (events or answers) in the partnership's exchange; a teacher "
        "of an institution with several partnerships in one exchange counts for each of them "
        "(the data does not say which partnership a person was in). Activity: per partnership "
        "the participants of both sides active in the exchange and their events and minutes; "
        "means over partnerships with 95% t intervals (R t.test). Persistence: the Kaplan–Meier "
        "median (res_persistence group_by = link has the curves' summary and the log-rank "
        "test; res_persistence_cox model partnership_link the adjusted hazard ratio). "
        "Suppressed when the partnerships or their active participants number fewer than k."
    ),
})
# Issue 13: reciprocity of partnerships and equity gaps.
_SIDE = ("exchange participants of institution_{s} in the partnership's exchange with a pre "
         "and a post score (units: participant × exchange)")
DESCRIPTIONS.update({
    "reciprocity": {
        "partnership_id": "partnership",
        "exchange_id": "the partnership's exchange",
        "cluster": "the exchange's cluster",
        "modality": "the exchange's modality",
        "institution_a": "side a's institution",
        "institution_b": "side b's institution",
        "instrument": "instrument id; 'all' for the composite",
        "scale": "scale id; 'composite' = mean over the unit's scales of gain / SD of the "
                 "scale's pre score (exchange participants), i.e. gain in pre-score SDs",
        "n_a": "side a: " + _SIDE.format(s="a"),
        "mean_a": "side a's mean gain, post − pre (scale points; pre-score SDs for the "
                  "composite)",
        "ci_low_a": "lower bound of side a's 95% t interval of the mean paired change "
                    "(R t.test(post, pre, paired = TRUE))",
        "ci_high_a": "upper bound of side a's 95% t interval",
        "n_b": "side b: " + _SIDE.format(s="b"),
        "mean_b": "side b's mean gain",
        "ci_low_b": "lower bound of side b's 95% t interval",
        "ci_high_b": "upper bound of side b's 95% t interval",
        "gap": "mean_a − mean_b",
        "gap_ci_low": "lower bound of the gap's 95% Welch interval (R t.test(gain_a, gain_b, "
                      "var.equal = FALSE)): the sides are different people",
        "gap_ci_high": "upper bound of the gap's 95% Welch interval",
        "gap_dof": "Welch–Satterthwaite degrees of freedom of the gap",
        "reciprocity": "both (reciprocal: both sides' 95% intervals lie above 0) | a_only | "
                       "b_only (one-sided: only that side's interval lies above 0) | neither; "
                       "empty when suppressed",
        "reciprocity_index": "min(g_a⁺, g_b⁺) / max(g_a⁺, g_b⁺) with g⁺ = max(mean gain, 0): "
                             "1 = equal gains, towards 0 = one side gains much more; 0 by "
                             "definition when either side's mean gain is ≤ 0",
        "suppressed": "'n < k' when either side has fewer than k units (or none): the row's "
                      "numbers and category are then empty; empty when shown",
    },
    "reciprocity_shares": {
        "instrument": "instrument id; 'all' for the composite",
        "scale": "scale id; 'composite' for the composite gain",
        "group_by": "overall | cluster | modality (the partnership's exchange's)",
        "group": "the cluster or modality; 'all' for overall",
        "n_partnerships": "partnerships in the group (assessable or not)",
        "n_assessable": "partnerships not suppressed (both sides with at least k units)",
        "n_both": "reciprocal partnerships (both sides gain)",
        "n_a_only": "one-sided partnerships where only side a gains",
        "n_b_only": "one-sided partnerships where only side b gains",
        "n_neither": "partnerships where no side's interval lies above 0",
        "share_reciprocal": "n_both / n_assessable",
        "share_ci_low": "lower bound of the Wilson 95% interval of the share (R prop.test(x, "
                        "n, correct = FALSE))",
        "share_ci_high": "upper bound of the Wilson 95% interval",
        "n_participants": "units on the assessable partnerships' sides (a unit on two "
                          "partnerships counts twice)",
        "suppressed": "'n < k' when no partnership of the group is assessable; empty when "
                      "shown",
    },
    "equity_gaps": {
        "grouping": "gender | age_band (age at the start of the unit's exchange) | "
                    "connectivity | income_group (of the home institution)",
        "measure": "gain (paired post − pre score, units with both) | minutes (minutes "
                   "logged per unit, every exchange participant) | dropout (1 when a unit "
                   "that answered the pre survey did not answer the post survey)",
        "instrument": "instrument id for gain ('all' for the composite); empty otherwise",
        "scale": "scale id for gain ('composite': gain in pre-score SDs averaged over "
                 "scales); empty otherwise",
        "best_group": "the compared group with the highest mean (lowest for dropout)",
        "worst_group": "the compared group with the lowest mean (highest for dropout)",
        "n_best": "units in the best-served group",
        "n_worst": "units in the worst-served group",
        "value_best": "the best-served group's mean (gain in scale points, minutes, or "
                      "drop-out share)",
        "value_worst": "the worst-served group's mean",
        "gap": "value_best − value_worst (value_worst − value_best for dropout): ≥ 0",
        "se_cr2": "CR2 cluster-robust standard error of the gap, clustered by exchange",
        "df_cr2": "Satterthwaite degrees of freedom of the gap's CR2 t test",
        "ci_low": "lower bound of the gap's CR2 t interval at ci_level",
        "ci_high": "upper bound of the gap's CR2 t interval at ci_level",
        "ci_level": "1 − 0.05 / m, m = G(G − 1)/2 pairs of the G compared groups "
                    "(Bonferroni): the pair is chosen from the data",
        "n_groups_compared": "groups with at least k units (and k active units for minutes, "
                             "k drop-outs and k completers for dropout)",
        "groups_left_out": "groups not compared, each with its reason: '(n < k)' small "
                           "group or subset, '(not a group)' for not reported",
        "n_clusters": "exchanges behind the two compared groups",
        "few_clusters": "true when n_clusters < 10: the cluster-robust interval is rough",
        "suppressed": "'n < k' when no group has k units: nothing is compared; empty "
                      "otherwise (small groups are listed in groups_left_out)",
    },
})
METHODS.update({
    "reciprocity": (
        estimands.COMPLETERS + " Do both sides of a partnership gain? Side a of a partnership "
        "is the exchange participants of institution_a in the partnership's exchange with a "
        "paired gain (units participant × exchange; comparison people left out), side b "
        "likewise; an institution with several partnerships in one exchange brings the same "
        "people to each. Per partnership and scale, and for the composite (each unit's mean "
        "over its scales of gain / SD of the scale's pre score): each side's mean gain with "
        "the 95% t interval of the mean paired change (R t.test(post, pre, paired = TRUE)), "
        "the gap a − b with Welch's 95% interval (R t.test(var.equal = FALSE)). A side gains "
        "when its interval's lower bound is above 0; reciprocity is both, a_only, b_only or "
        "neither; reciprocity_index = min(g_a⁺, g_b⁺) / max(g_a⁺, g_b⁺), g⁺ = max(g, 0), 0 "
        "when either mean is ≤ 0 (analytics.stats.reciprocity). Participants within a side "
        "are treated as independent (one institution in one exchange). Partnerships with "
        "fewer than k units on a side are kept and suppressed."
    ),
    "reciprocity_shares": (
        "The categories of res_reciprocity counted per scale, overall, by cluster and by "
        "modality of the partnership's exchange; share_reciprocal = reciprocal among the "
        "assessable (unsuppressed) partnerships, Wilson score 95% interval without continuity "
        "correction (R prop.test(x, n, correct = FALSE)); partnerships treated as "
        "independent."
    ),
    "equity_gaps": (
        "Who is left behind? For each grouping (gender; age band at the start of the unit's "
        "exchange; the home institution's connectivity and World Bank income group — all four "
        "are in the warehouse) and measure (gain per scale and composite, "
        + estimands.COMPLETERS.split(":")[0].lower() + "; minutes per participant; drop-out "
        "before the post survey), the groups' means from per group × exchange cells; the "
        "best-served group has the highest mean (lowest drop-out), the worst the lowest; gap "
        "= best − worst in the good direction. Its interval: OLS of the measure on the two "
        "groups' indicators over their units, CR2 cluster-robust by exchange with "
        "Satterthwaite df (R clubSandwich::coef_test(vcov = 'CR2', test = 'Satterthwaite'); "
        "exact from the cells, analytics.stats.comparison.cr2_from_cells), at level 1 − 0.05 "
        "/ m with m = G(G − 1)/2 (Bonferroni over all pairs of the G compared groups), "
        "because the pair is chosen after seeing the data. Groups with fewer than k units, "
        "or fewer than k active units (minutes), drop-outs or completers (dropout), are not "
        "compared and are listed in groups_left_out, as is 'not reported'. Units: exchange "
        "participants (participant × exchange), comparison people left out "
        "(analytics.stats.equity.equity_gaps)."
    ),
})

_FRICTIONLESS_TYPES = {
    "VARCHAR": "string",
    "DOUBLE": "number",
    "INTEGER": "integer",
    "BIGINT": "integer",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMPTZ": "datetime",
}


def frictionless_type(sql_type: str) -> str:
    """Table Schema field type of a warehouse SQL type."""
    try:
        return _FRICTIONLESS_TYPES[sql_type.upper()]
    except KeyError:
        raise ValueError(f"no Table Schema type for SQL type {sql_type!r}") from None


def export_columns(table: str) -> list[schema.Column]:
    """Columns of an export, in file order: the result table's, then the provenance columns."""
    cols = list(EXPORT_TABLES[table].columns) + list(PROVENANCE_COLUMNS)
    return [c if c.doc else schema.Column(c.name, c.sql_type, c.required,
                                          DESCRIPTIONS[table][c.name]) for c in cols]


def _field(col: schema.Column) -> dict[str, Any]:
    f: dict[str, Any] = {"name": col.name, "type": frictionless_type(col.sql_type),
                         "description": col.doc}
    if col.name == "generated_at":
        f["type"] = "datetime"
    return f


def datapackage(
    resources: Sequence[Mapping[str, Any]],
    *,
    data_version: int,
    generated_at: str,
    exported_at: str,
    min_cell: int,
    models: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Frictionless Data Package descriptor for exported files.

    `resources`: one mapping per file with keys table, path, format and rows (`--all` exports
    have no `--by` columns). Methods, the
    suppression threshold, the data version and the generation time are stated at the top
    (`exchange_impact` property: custom properties are allowed by the spec) and per resource;
    `models` maps instrument.scale to the longitudinal model formula actually fitted.
    """
    mediatypes = {
        "csv": "text/csv",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "parquet": "application/vnd.apache.parquet",
    }
    out_resources = []
    for r in resources:
        table = r["table"]
        cols = export_columns(table)
        fields = [_field(c) for c in cols]
        res: dict[str, Any] = {
            "name": table,
            "profile": "tabular-data-resource",
            "path": r["path"],
            "format": r["format"],
            "mediatype": mediatypes[r["format"]],
            "title": EXPORT_TABLES[table].doc,
            "description": METHODS[table],
            "schema": {"fields": fields, "missingValues": [""]},
            "rows": int(r["rows"]),
        }
        if r["format"] == "csv":
            res["encoding"] = "utf-8"  # with a byte-order mark, which readers of utf-8 skip
            res["dialect"] = {"delimiter": ",", "lineTerminator": "\r\n", "quoteChar": '"',
                              "doubleQuote": True, "header": True}
        out_resources.append(res)
    return {
        "profile": "tabular-data-package",
        "name": f"exchange-impact-results-v{data_version}",
        "title": f"Exchange Impact result tables, data version {data_version}",
        "description": (
            "Outcome statistics computed from the Exchange Impact warehouse. "
            + GENERAL_METHODS
            + " CSV files are UTF-8 with a byte-order mark; a text cell that begins with =, +, "
            "-, @, a tab or a carriage return is prefixed with a single quote (OWASP CSV "
            "injection); numeric cells are never altered."
        ),
        "created": exported_at,
        "version": str(data_version),
        "licenses": [{"name": "other-closed", "title": "Pseudonymised research data; share "
                      "under your data-protection agreement"}],
        "exchange_impact": {
            "data_version": int(data_version),
            "generated_at": generated_at,
            "exported_at": exported_at,
            "min_cell": int(min_cell),
            "suppression": (f"groups with fewer than {min_cell} participants suppressed"
                            if min_cell > 0 else "none: unsuppressed output (row-level access)"),
            "methods": dict(METHODS),
            "longitudinal_models": dict(sorted((models or {}).items())),
        },
        "resources": out_resources,
    }


def markdown(package: Mapping[str, Any]) -> str:
    """The short readable codebook (CODEBOOK.md) of a data package descriptor."""
    meta = package["exchange_impact"]
    lines = [
        f"# {package['title']}",
        "",
        f"- data version: **{meta['data_version']}**",
        f"- results generated: {meta['generated_at']}; exported: {meta['exported_at']}",
        f"- small-cell suppression: {meta['suppression']}",
        "",
        GENERAL_METHODS,
        "",
    ]
    if meta.get("longitudinal_models"):
        lines += ["Longitudinal model fitted per scale (REML, random intercept per participant):",
                  ""]
        lines += [f"- `{k}`: `{v}`" for k, v in meta["longitudinal_models"].items()]
        lines.append("")
    lines += [
        "CSV: UTF-8 with a byte-order mark, comma separated, CRLF line ends. A text cell that "
        "begins with `=`, `+`, `-`, `@`, a tab or a carriage return starts with an added `'` "
        "(spreadsheet formula injection guard, OWASP); numbers are never changed. Every file "
        "carries `data_version` and `generated_at` columns; XLSX files repeat them in an "
        "`about` sheet, Parquet files in the schema metadata (`exchange_impact.*` keys). XLSX "
        "numbers carry 16 significant digits (Excel shows 15); CSV and Parquet keep every bit.",
        "",
    ]
    for r in package["resources"]:
        lines += [f"## {r['name']} — `{r['path']}`", "", r["title"], "",
                  f"Method: {r['description']}", "", f"{r['rows']:,} rows.", "",
                  "| column | type | description |", "| --- | --- | --- |"]
        for f in r["schema"]["fields"]:
            desc = f["description"].replace("|", "\\|")
            lines.append(f"| `{f['name']}` | {f['type']} | {desc} |")
        lines.append("")
    return "\n".join(lines)

# Issue 13: dose–response and setting/modality/purpose. Appended, so the entries above keep
# their order.
_DOSE_MEASURE = ("dose measure: events (activities the participant logged in the exchange: "
                 "messages, calls, uploads, sessions …) or minutes (their logged minutes; an "
                 "event without minutes adds 0)")
DESCRIPTIONS.update({
    "dose_response": {
        "instrument": "instrument id",
        "scale": "scale id",
        "measure": _DOSE_MEASURE,
        "method": "ols_log1p_cr2: OLS of change (post − pre score) on log1p(dose) + modality + "
                  "setting, CR2 cluster-robust errors by exchange",
        "n": "exchange participants (participant × exchange units) with a pre and a post score "
             "on the scale",
        "estimate": "slope: change in scale points per unit of log1p(dose), i.e. the "
                    "difference in change between two participants whose dose + 1 differs by "
                    "a factor e ≈ 2.7, same modality and setting. An association: dose is "
                    "self-selected",
        "se_cr2": "cluster-robust standard error, clusters = exchange, CR2 (Bell & McCaffrey "
                  "2002; Pustejovsky & Tipton 2018), as R clubSandwich vcovCR(type = 'CR2'); "
                  "empty (with df, CI and p) where the CR2 variance is 0 in exact arithmetic: "
                  "not estimable",
        "df_cr2": "Satterthwaite degrees of freedom of the slope (clubSandwich coef_test(..., "
                  "test = 'Satterthwaite'))",
        "ci_low_cr2": "lower bound of the 95% CI: estimate − t(0.975, df_cr2) · se_cr2",
        "ci_high_cr2": "upper bound of the 95% CI",
        "p_cr2": "two-sided p of estimate / se_cr2 against t(df_cr2)",
        "n_clusters": "exchanges the units come from",
        "few_clusters": "true when n_clusters < 10: the interval is rough",
        "adjusted_for": "the exchange attributes the model adjusts for that kept a term "
                        "(modality, setting; a constant one is dropped, as R lm does)",
        "suppressed": _SUPPRESSED,
    },
    "dose_bins": {
        "instrument": "instrument id",
        "scale": "scale id",
        "measure": _DOSE_MEASURE,
        "bin": "quantile bin of the dose, 1 = lowest",
        "n_bins": "bins of the curve: 5 quantile bins, fewer when doses tie (ties stay in one "
                  "bin) and never more than n // k",
        "dose_low": "smallest dose in the bin",
        "dose_high": "largest dose in the bin",
        "dose_median": "median dose in the bin",
        "n": "units (participant × exchange) in the bin, with a pre and a post score",
        "mean_change": "mean change post − pre (scale points) in the bin",
        "ci_low": "lower bound of the 95% t interval (units as independent; R t.test)",
        "ci_high": "upper bound of the 95% t interval",
        "ci_low_cr2": "lower bound of the 95% CR2 interval clustered by exchange, Satterthwaite "
                      "df (the intercept of lm(change ~ 1) in the bin, clubSandwich)",
        "ci_high_cr2": "upper bound of the 95% CR2 interval",
        "df_cr2": "Satterthwaite degrees of freedom of the CR2 interval",
        "n_clusters": "exchanges in the bin",
        "few_clusters": "true when n_clusters < 10",
        "suppressed": "'n < k' on every bin of the curve when any of its bins has fewer than k "
                      "units (one blank bin would be recoverable from the others and the "
                      "slope's n): the numbers are then empty; empty when shown",
    },
    "moderation": {
        "instrument": "instrument id",
        "scale": "scale id",
        "moderator": "the exchange attribute compared: setting (curricular | extracurricular), "
                     "modality (virtual | blended | physical) or purpose (as the exchanges "
                     "file gives it); a missing value is the level 'not reported'",
        "wave": "the later wave whose change from pre is compared (post, followup, …)",
        "row": "gain: the level's change from pre; difference: the level's gain minus the "
               "reference level's (the wave × attribute interaction); interaction: the joint "
               "Wald test that every level gains the same",
        "level": "the attribute's level (empty on interaction rows)",
        "reference": "the reference level: the one with the most units",
        "n": "gain and difference rows: units of the level with a score at both pre and the "
             "wave; interaction rows: every unit in the model",
        "n_exchanges": "exchanges of the level (interaction rows: in the model)",
        "estimate": "gain or difference in scale points, from the model's fixed effects "
                    "(marginal means per wave, contrast against pre)",
        "se": "model-based standard error (REML, lme4's vcov)",
        "df": "degrees of freedom of the t reference (between-within rule); on interaction "
              "rows the F test's denominator df; infinite (z, chi-square / q) for a one-level "
              "model",
        "ci_low": "lower bound of the 95% Wald t interval",
        "ci_high": "upper bound of the 95% Wald t interval",
        "statistic": "interaction rows: Wald F = b'L'(L V L')⁻¹ L b / q",
        "df_num": "interaction rows: q, the number of levels compared with the reference",
        "p": "two-sided p of the estimate (t), or of F on (df_num, df) on interaction rows",
        "estimate_cr2": "difference rows: the same difference from completers' change (OLS of "
                        "change on the level), a design-based check",
        "ci_low_cr2": "difference rows: lower bound of its 95% CR2 interval clustered by "
                      "exchange, Satterthwaite df; it lets exchanges differ in their gain, "
                      "which the model does not",
        "ci_high_cr2": "difference rows: upper bound of the CR2 interval",
        "df_cr2": "difference rows: Satterthwaite df of the CR2 interval",
        "p_cr2": "difference rows: two-sided p of the CR2 check",
        "model": "the model the row comes from (R notation) and the test; says why when no "
                 "test could be made",
        "suppressed": "'n < k' when the level has fewer than k units with a score at some wave "
                      "of the model: the level is left out of the model and its rows are "
                      "shown with empty numbers; empty when shown",
    },
})
METHODS.update({
    "dose_response": (
        "Does more participation go with more gain? " + estimands.COMPLETERS + " For each "
        "exchange participant (participant × exchange) with a pre and a post score, the change "
        "post − pre is regressed by OLS on log1p(dose) — dose = events logged in the exchange, "
        "or their minutes — adjusted for the exchange's modality and setting (treatment "
        "coding), with CR2 cluster-robust standard errors by exchange and Satterthwaite "
        "degrees of freedom (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018), as R "
        "clubSandwich::coef_test(lm(change ~ log1p(dose) + modality + setting), vcov = 'CR2', "
        "cluster = exchange, test = 'Satterthwaite') (analytics.stats.dose.dose_slopes; "
        "checked against Petersen's published clustered standard error). log1p: the first "
        "sessions are expected to matter more than the hundredth, and participation is "
        "heavy-tailed. " + estimands.DOSE_SELF_SELECTED + " A scale with fewer than k units "
        "is suppressed."
    ),
    "dose_bins": (
        "The dose–response curve without a model: the same units as dose_response, cut into 5 "
        "quantile bins of the dose (pandas qcut; tied doses stay in one bin; never more than "
        "n // k bins), with the mean change per bin, its t interval and its CR2 interval by "
        "exchange (Satterthwaite df) (analytics.stats.dose.dose_bins). If any bin of a curve "
        "has fewer than k units, every bin of that curve is suppressed. "
        + estimands.DOSE_SELF_SELECTED
    ),
    "moderation": (
        "Setting, modality and purpose: does the gain differ between kinds of exchange? "
        + estimands.MODEL + " For each scale and attribute, the longitudinal model with the "
        "attribute crossed with wave, score ~ wave * attribute + (1 | participant), REML, "
        "exchange participants only (analytics.stats.longitudinal.fit_random_intercept, equal "
        "to lme4::lmer). Every row is a within-participant contrast, from which the exchange "
        "random intercept of res_longitudinal's model cancels, so it is left out here (it "
        "would triple the time for nearly the same rows; analytics.stats.moderation fits it "
        "with exchange_level = True). "
        "gain rows: each level's marginal change from pre; difference rows: a level's gain "
        "minus the reference level's (the level with most units), Wald z (as statsmodels "
        "MixedLM); interaction rows: the joint Wald test of all wave × attribute terms of that "
        "wave, reported as F = chi-square / q on (q, ∞) df (q = levels − 1), checked against "
        "statsmodels MixedLM's wald_test. The model has no "
        "random gain per exchange, so its intervals for a difference can be too narrow when "
        "exchanges differ in how much they move people; every difference also carries a "
        "design-based check: OLS of completers' change on the level with CR2 errors by "
        "exchange (…_cr2 columns). Levels with fewer than k units at some wave are left out "
        "of the model and shown suppressed. " + estimands.MODERATION + " The model assumes "
        "that missing surveys are missing at random given wave and the attribute."
    ),
})

# Issue 13: scheduling friction. Appended, so the entries above keep their order.
_SCHED_SETTINGS = {
    "school_hours": "the local school hours used (setting EXCHANGE_IMPACT_SCHOOL_HOURS, "
                    "default 08:00-16:00)",
    "school_days_setting": "the school weekdays used (setting EXCHANGE_IMPACT_SCHOOL_DAYS, "
                           "default Mon-Fri)",
    "sync_activities": "the events.activity values counted as joint (synchronous) work "
                       "(setting EXCHANGE_IMPACT_SYNC_ACTIVITIES, default video_call, "
                       "live_session)",
}
DESCRIPTIONS.update({
    "scheduling": {
        "partnership_id": "partnership identifier",
        "exchange_id": "the partnership's exchange",
        "modality": "the exchange's modality",
        "institution_a": "one partner",
        "institution_b": "the other partner",
        "tz_a": "institution_a's IANA time zone",
        "tz_b": "institution_b's IANA time zone",
        "start_date": "the exchange's first day (the overlap is counted from it)",
        "end_date": "the exchange's last day",
        "school_days": "school days in the exchange's dates (the denominator of the overlap)",
        "overlap_hours_per_day": "hours per school day when both institutions are in school "
                                 "hours: total overlap over the exchange's dates / school_days, "
                                 "each side's hours turned into UTC for its own date (DST "
                                 "changes on either side counted); shown even when suppressed",
        "zero_overlap_days": "school days on which neither side's school hours meet any of "
                             "the partner's",
        "zero_overlap": "true when the pair never shares a school hour in the exchange",
        "n_participants": "active participants (with at least one event in the exchange) of "
                          "both institutions together",
        "n_events": "events of those participants in the exchange",
        "n_joint": "of which synchronous (sync_activities)",
        "joint_share": "n_joint / n_events: the share of synchronous events",
        "joint_minutes_share": "the same share counted in logged minutes (an event without "
                               "minutes adds 0)",
        **_SCHED_SETTINGS,
        "suppressed": _SUPPRESSED + " Here: active participants of both sides; the overlap "
                      "columns stay (they describe two time zones, not people).",
    },
    "scheduling_model": {
        "method": "ols_cr2_exchange: OLS of joint_share on overlap_hours_per_day + modality, "
                  "one row per shown partnership, CR2 cluster-robust errors by exchange",
        "term": "the coefficient reported: overlap_hours_per_day",
        "estimate": "change in the joint share per extra hour of overlap per school day "
                    "(e.g. 0.01 = one percentage point); an association, not a causal effect",
        "se_cr2": "cluster-robust standard error, clusters = exchange, CR2 (R clubSandwich "
                  "vcovCR(type = 'CR2'))",
        "df_cr2": "Satterthwaite degrees of freedom",
        "ci_low_cr2": "lower bound of the 95% CI: estimate − t(0.975, df_cr2) · se_cr2",
        "ci_high_cr2": "upper bound of the 95% CI",
        "p_cr2": "two-sided p of estimate / se_cr2 against t(df_cr2)",
        "n_partnerships": "partnerships in the model (not suppressed, with events)",
        "n_clusters": "exchanges they belong to",
        "few_clusters": "true when n_clusters < 10: the interval is rough",
        "adjusted_for": "exchange attributes the model adjusts for that kept a term (modality)",
        "share_of": "what the share counts: events",
        **_SCHED_SETTINGS,
        "suppressed": "'n < k' when fewer than k partnerships enter the model; empty when shown",
    },
})
METHODS.update({
    "scheduling": (
        "Do time zones throttle joint work? For each partnership (an exchange and two "
        "institutions), each institution's school hours (default 08:00-16:00 local, Monday to "
        "Friday; settings EXCHANGE_IMPACT_SCHOOL_HOURS and EXCHANGE_IMPACT_SCHOOL_DAYS) on "
        "every school day of the exchange's dates are turned into UTC with the IANA zone "
        "database for that date (Python zoneinfo through pandas), so the weeks in which only "
        "one side has changed to or from daylight-saving time count with their own overlap; "
        "partner hours of neighbouring dates count too (across the date line). Overlap hours "
        "per school day = total overlap / school days; a pair with none is flagged "
        "zero_overlap. Joint share = synchronous events (activities listed in "
        "sync_activities: live video calls and sessions by default, setting "
        "EXCHANGE_IMPACT_SYNC_ACTIVITIES; in-person workshops and visits are left out because "
        "time zones do not constrain them) / all events of both institutions' participants in "
        "the exchange (analytics.stats.scheduling). A partnership with fewer than k active "
        "participants is suppressed; its overlap stays."
    ),
    "scheduling_model": (
        "Does low overlap go with less joint activity? OLS of the partnership's joint share "
        "on its overlap hours per school day, adjusted for the exchange's modality (treatment "
        "coding), one row per shown partnership (unweighted), with CR2 cluster-robust standard "
        "errors by exchange and Satterthwaite degrees of freedom, as R clubSandwich::coef_test("
        "lm(joint_share ~ overlap + modality), vcov = 'CR2', cluster = exchange, test = "
        "'Satterthwaite') (analytics.stats.scheduling.scheduling_model). Programs choose "
        "partners and formats, so the slope is an association, not a causal effect."
    ),
})

# Issue 13: scale-up vs scale-in (analytics.derive.scale, analytics.stats.scale).
DESCRIPTIONS.update({
    "scale": {
        "cluster": "the cluster that runs the exchanges (exchanges.cluster_id)",
        "term": "calendar half-year of the exchanges' start_date: YYYY-H1 (January–June) or "
                "YYYY-H2 (July–December)",
        "term_start": "first day of the term",
        "participants": "participants reached: exchange participants (comparison group left "
                        "out) with at least one event in the cluster's exchanges of the term",
        "participants_new": "reached participants not seen in an earlier term of the cluster",
        "participants_returning": "reached participants seen in an earlier term of the cluster",
        "institutions": "home institutions of the reached participants",
        "institutions_new": "institutions not seen in an earlier term of the cluster",
        "institutions_returning": "institutions seen in an earlier term of the cluster",
        "countries": "countries of those institutions",
        "dosed": "participants reaching the meaningful dose in the term (at least "
                 "dose_sessions events or dose_minutes minutes)",
        "share_dosed": "dosed / participants",
        "share_dosed_ci_low": "lower bound of its Wilson 95% interval (R prop.test(correct = "
                              "FALSE))",
        "share_dosed_ci_high": "upper bound of its Wilson 95% interval",
        "weeks_median": "median over participants of the distinct ISO weeks (UTC) with an event",
        "sustained": "participants with events in at least sustained_weeks distinct weeks",
        "share_sustained": "sustained / participants",
        "share_sustained_ci_low": "lower bound of its Wilson 95% interval",
        "share_sustained_ci_high": "upper bound of its Wilson 95% interval",
        "institutions_next": "this term's institutions with a participant reached in the "
                             "cluster in the next calendar half-year; empty when that term "
                             "lies after the data's last term",
        "share_institutions_next": "institutions_next / institutions (empty, not 0, for the "
                                   "data's last term: there is no next term yet)",
        "share_institutions_next_ci_low": "lower bound of its Wilson 95% interval",
        "share_institutions_next_ci_high": "upper bound of its Wilson 95% interval",
        "next_term_in_data": "true when the next term is within the data (the exchanges' "
                             "latest start term)",
        "previous_term": "the calendar half-year before, when the cluster reached anyone then",
        "participants_previous": "participants reached in previous_term",
        "breadth_change_pct": "% change in participants reached from previous_term",
        "depth_change": "share_dosed minus previous_term's share_dosed (proportion)",
        "depth_change_ci_low": "lower bound of Newcombe's hybrid score 95% interval of the "
                               "difference (Newcombe 1998, method 10)",
        "depth_change_ci_high": "upper bound of Newcombe's 95% interval",
        "quadrant": "scaling up and in (breadth and depth grew) | scaling up only | scaling "
                    "in only | neither; empty without a previous term or when either term "
                    "is suppressed",
        "dose_sessions": "events making a meaningful dose (EXCHANGE_IMPACT_MEANINGFUL_DOSE)",
        "dose_minutes": "minutes making a meaningful dose (EXCHANGE_IMPACT_MEANINGFUL_DOSE)",
        "sustained_weeks": "distinct active weeks counted as sustained activity",
        "suppressed": "'n < k' when fewer than k participants were reached: the row stays with "
                      "its numbers empty; empty when shown",
    },
})
METHODS.update({
    "scale": (
        "Scale-up vs scale-in: is a cluster reaching more (breadth) or deepening (depth)? One "
        "row per cluster × term (calendar half-year of the exchange's start_date, so an "
        "exchange and each participant's dose stay in one term). Breadth: participants, "
        "institutions and countries reached, new vs returning within the cluster. Depth: the "
        "share reaching the meaningful dose (default 5 events or 300 minutes, setting "
        "EXCHANGE_IMPACT_MEANINGFUL_DOSE='sessions,minutes') with a Wilson interval; the "
        "median of distinct active weeks and the share active in 4 or more weeks; the share of "
        "institutions back in the cluster the next term (empty for the data's last term). "
        "Term on term against the previous calendar half-year: % change in participants "
        "reached (breadth) and the change in the dosed share with Newcombe's hybrid score "
        "interval (depth), and the quadrant they fall in (point estimates). Counts are not "
        "sampled, so breadth has no interval; the shares' intervals treat the term's "
        "participants as a sample of the cluster's potential participants "
        "(analytics.stats.scale.scale_terms). A previous term under k blanks the change."
    ),
})

# Issue 13: cost per outcome. Appended, so the entries above keep their order.
DESCRIPTIONS.update({
    "cost": {
        "group_by": "grouping of the exchanges: overall, program or cluster (the exchange's "
                    "cluster: budgets belong to exchanges)",
        "group": "the program or cluster id; 'overall' for overall",
        "currency": "ISO 4217 currency of the row's budget and costs: the rates' base when the "
                    "row's budgets were converted, else the budgets' own currency (one row per "
                    "currency, never added up without a rate); empty when no exchange of the "
                    "group has a budget",
        "converted": "true when the row's budgets are in the rates' base (converted with the "
                     "rates input kind, or already in the base)",
        "converted_from": "the currencies whose budgets were converted into the row's currency",
        "n_exchanges_group": "exchanges in the group, with or without a budget",
        "n_exchanges_no_budget": "exchanges of the group without a budget or without a "
                                 "currency: left out of every cost, never counted as 0",
        "n_exchanges": "exchanges whose budget is in the row (its currency)",
        "budget": "sum of those exchanges' budgets, in `currency`; a converted budget is "
                  "budget / rate of (its currency, its start_date's year) against the base",
        "n_participants": "exchange participants (participant × exchange, seen in the "
                          "participation log or the surveys; comparison group excluded) of the "
                          "row's exchanges",
        "n_active": "of those, the ones with at least one logged event",
        "cost_per_participant": "budget / n_participants",
        "cost_per_active": "budget / n_active",
        "n_gain": "participants of the row's exchanges with a pre and a post score (completers)",
        "mean_gain": "mean standardised gain of the completers: per scale (post − pre) / SD of "
                     "the pre score over all exchange participants, averaged over the scales "
                     "the participant has (the composite of reciprocity and equity_gaps)",
        "mean_gain_ci_low": "lower bound of the 95% CI of mean_gain, clustered by exchange "
                            "(CR1, t with n_clusters − 1 df)",
        "mean_gain_ci_high": "upper bound of the 95% CI of mean_gain",
        "n_clusters": "exchanges the gains come from",
        "few_clusters": "true when n_clusters < 10: the interval is rough",
        "cost_per_gain": "budget / (n_participants × mean_gain): the cost of one pre-score SD "
                         "of gain for one participant; empty when mean_gain ≤ 0",
        "cost_per_gain_ci_low": "lower bound of its 95% CI: (budget / n_participants) / "
                                "mean_gain_ci_high (budget and participants taken as known)",
        "cost_per_gain_ci_high": "upper bound: (budget / n_participants) / mean_gain_ci_low; "
                                 "empty when that bound is ≤ 0 (see unbounded)",
        "unbounded": "true when the CI of mean_gain reaches 0: the data are compatible with no "
                     "gain, so the cost per unit of gain has no upper bound",
        "note": "what the row leaves out or cannot say, in words: exchanges without a budget, "
                "currency-years without a rate (kept in their own currency), an unbounded or "
                "undefined cost per unit of gain",
        "gain_measure": "the gain the cost per unit is of (definition)",
        "ci_method": "how the intervals were computed",
        "suppressed": "'n < k' when the row has fewer than k participants (its numbers empty; "
                      "the exchange counts stay); 'gain n < k' when fewer than k have a gain "
                      "(the gain columns empty, the costs per head shown); empty when shown",
    },
})
METHODS.update({
    "cost": (
        "What does an outcome cost? From the exchanges' budgets (exchanges.budget, "
        "exchanges.currency) per group (overall, program, cluster of the exchange) and "
        "currency: cost per participant, per active participant (an event logged) and per "
        "unit of standardised gain (analytics.stats.cost.cost_per_outcome). Currencies are kept "
        "apart, one row each, unless a rate table is loaded (`python -m etl load rates.csv`: "
        "currency, year, rate = units of currency per one base, base); then budgets are "
        "converted into the base of most rate rows at the rate of their start year, and a "
        "budget whose currency-year has no rate stays in its own currency on its own row, "
        "named in `note`. Exchanges without a budget are counted, not treated as 0. The mean "
        "standardised gain's 95% CI is clustered by exchange (CR1 sandwich of an intercept-only "
        "model, t with G − 1 df; = statsmodels OLS cov_type='cluster'); the cost per unit's "
        "interval inverts it with budget and participants taken as known (Fieller's interval "
        "with a fixed numerator); when the gain's interval reaches 0 the cost is unbounded "
        "above and no upper bound is given. " + estimands.COST + " Rows with fewer than k "
        "participants are suppressed; rows with fewer than k gains lose their gain figures."
    ),
})
