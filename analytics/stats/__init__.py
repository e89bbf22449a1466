"""Pure statistics: a long-format DataFrame (or arrays) and keyword column names in, a tidy
DataFrame out, one row per estimate. Nothing here imports DuckDB, Dash or the warehouse; the
derive step and the read layer call these functions on data they have read.

- `scales`       the instruments as one table of items (scoring itself is SQL in the derive step)
- `reliability`  Cronbach's α with Feldt CI per instrument × scale × wave; McDonald's ω from a
                 one-factor ML model; both per wave × language × country
- `prepost`      paired pre/post change, tests, d_z / d_av / Hedges g_av, BH
- `longitudinal` random-intercept LMM by closed-form profiled REML: means, contrasts, DiD, ICCs
- `attrition`    response funnel and completers-vs-dropouts baseline comparison
- `means`        the t-interval of a mean and Welch's difference of two means
- `survival`     Kaplan–Meier estimate and median
- `comparison`   participants vs comparison group: CR2 OLS (Satterthwaite df), balance SMDs, ANCOVA
- `measurement`  floor and ceiling shares; invariance across languages (regression DIF screen)
- `reciprocity`  do both sides of a partnership gain: per-side t intervals, Welch gap, category
- `equity`       gap between best- and worst-served groups, CR2 by exchange, Bonferroni level
- `dose`         dose–response: change on log1p(events/minutes), CR2 by exchange; binned curve
- `moderation`   gains by setting, modality and purpose; wave x attribute interaction test
"""
