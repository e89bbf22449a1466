"""The dashboard's read layer: the filter model and one query per figure, over a cursor passed
in, reading the derived tables (rollups, day facts) of the data version the request sees.

    filters        Filters, FilterOptions, the query string (filters and each page's view keys)
    cache          the per-process answer cache keyed by the warehouse build (@cached)
    rounding       funders' rounding of counts, applied by @cached on the way out (issue 14)
    sql            shared SQL: the filter scope, the one rule choosing rollups or day facts
                   (`use_rollups`), the derived-table check, the small-cell rule on a table
    loads          data version, filter options, loads, rejects, result table status
    overview       headline, completion per wave, participants per country, weekly activity
    participation  local-time heatmap, retention by cohort, breakdown tables
    outcomes       result tables, wave means, participants vs comparison group
    slices         the mixed model, raw/adjusted comparison, baseline balance of any filters
    equity         gains, participation and drop-out per group, the attrition funnel
    partnerships   network, persistence, summary
    disclosure     the differencing rule between neighbouring filter requests (issue 14)

Pages import the modules they draw from (`from analytics.read import filters, overview`).
Nothing here opens a connection or knows about Dash."""
