"""What each estimate answers and what it assumes, in the words shown next to it.

One place for the sentences that pages, the codebook and the exports put beside the numbers, so
that no view shows a completers' gain and a model gain as two "overall gains", and every
difference-in-differences says that the comparison group was not randomised.
"""

from __future__ import annotations

__all__ = ["ANCOVA_ASSUMPTION", "COMPARISON_MODALITY", "COMPLETERS", "DID_ASSUMPTION", "MODEL",
           "MODEL_MISSING", "SENSITIVITY", "SENSITIVITY_MAR", "SENSITIVITY_MNAR"]

# Paired pre/post tables (res_prepost, the comparison table, Overview, Equity): completers only.
COMPLETERS = ("Completers' gain: participants who answered both the pre and the post survey "
              "(paired). It answers how much those who stayed changed; it is not the "
              "all-participants model gain and is not comparable with it.")

# The mixed model (res_longitudinal): every available wave of every participant.
MODEL = ("All-participants model gain: the mixed model uses every available wave of every "
         "participant, including those who missed a survey.")
MODEL_MISSING = ("It assumes that missing surveys are missing at random given the model's terms "
                 "(wave, modality, arm): if those who dropped out would have changed "
                 "differently, it is biased.")

# Every difference-in-differences (the comparison table, did[…] rows, the codebook, reports).
DID_ASSUMPTION = ("The comparison group was not randomised: the difference between participants' "
                  "and the comparison group's change (difference-in-differences) is an estimate "
                  "of the exchange's effect only if both groups would have changed alike without "
                  "the exchange (parallel trends).")

# The adjusted comparison (res_comparison method = ancova, the Outcomes page, the codebook).
ANCOVA_ASSUMPTION = ("The adjusted difference (ANCOVA: post score on pre score, arm and gender, "
                     "role, age band, income group, connectivity and institution kind) removes "
                     "baseline differences in those only: it is the exchange's effect if no "
                     "unmeasured difference between the groups affects the post score "
                     "(no unmeasured confounding given the covariates).")

# What the model's modality terms mean for the comparison arm (issue 10 §2, decided here): a
# comparison person carries the exchange their class was matched to, so "modality" is that
# exchange's modality, a matching stratum, not an exchange the person took.
COMPARISON_MODALITY = ("For the comparison group, modality is the modality of the exchange its "
                       "class was matched to (a matching stratum): did[…|modality=M] compares "
                       "participants of M exchanges with the comparison classes matched to M "
                       "exchanges; the comparison group took no exchange.")

# The missing-data sensitivity analysis (res_sensitivity, the Outcomes page, the codebook).
SENSITIVITY = ("How much does dropout change the gain? Three answers side by side for exchange "
               "participants with a pre survey: the completers' gain (those who answered the "
               "later survey), and two estimates of every participant's gain, including those "
               "who did not answer.")
SENSITIVITY_MAR = ("The weighted estimate (inverse-probability weighting) counts each respondent "
                   "for the similar people who did not answer, judged by engagement (events "
                   "logged), pre score and modality; it is right if, among people alike in "
                   "those, whether someone answered does not depend on how much they changed "
                   "(missing at random).")
SENSITIVITY_MNAR = ("If those who did not answer changed less than comparable respondents "
                    "(missing not at random), both are too high: the tipping point says how "
                    "much less, in standard deviations of the change, they would have to have "
                    "changed for the gain's 95% interval to reach zero. A tipping point far "
                    "below zero means the conclusion survives plausible dropout.")

# Dose–response (issue 13: res_dose_response, res_dose_bins, the Outcomes page, the codebook).
__all__ += ["DOSE_SELF_SELECTED", "MODERATION"]
DOSE_SELF_SELECTED = ("Dose is self-selected: participants choose how much they take part, and "
                      "those who take part more may differ in ways that also change their gain "
                      "(motivation, time, a teacher who pushes). The slope describes how gain "
                      "goes with participation; it is not the effect of adding a session.")

# Setting, modality and purpose (res_moderation, the Outcomes page, the codebook).
MODERATION = ("Exchanges were not assigned a setting, modality or purpose at random: a "
              "difference between them may come from who takes part in each, not from the "
              "format itself.")

# Cost per outcome (issue 13: res_cost, the Overview page, the funder report, the codebook).
COST = ("Cost per unit of gain = budget / (participants × mean standardised gain): what one "
        "participant's gain of one pre-score standard deviation cost, assuming those without a "
        "post survey gained like those with one. Budgets are spent on the whole exchange; the "
        "gain is not shown to be caused by it. Currencies are converted only with a loaded rate "
        "table, never silently.")
__all__ += ["COST"]
