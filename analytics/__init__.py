"""Pure statistics for Exchange Impact: DataFrames in, tidy DataFrames out.

Modules (import the one you need; nothing heavy is imported here):

- `analytics.scales`       scale scores per participant x exchange x wave (reverse coding,
                            minimum-items rule)
- `analytics.reliability`  Cronbach's alpha with Feldt CI per instrument x scale x wave
- `analytics.prepost`      paired pre/post change, tests, d_z / d_av / Hedges g_av, BH
- `analytics.longitudinal` random-intercept LMM by closed-form profiled REML (MixedLM route for
                            other models): marginal means, contrasts, DiD, ICCs
- `analytics.attrition`    response funnel and completers-vs-dropouts baseline comparison
- `analytics.suppression`  small-cell protection (n < k blanked, reason given)
"""
