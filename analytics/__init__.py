"""Exchange Impact's analysis side, split by role (each sub-package says what it holds):

- `analytics.stats`       pure statistics: DataFrames/arrays in, tidy DataFrames out; imports no
                          DuckDB, no Dash and no files (tests/test_layout.py enforces it)
- `analytics.derive`      the derive step: what a load computes from the base tables for each
                          data version (result tables, day facts, rollups)
- `analytics.read`        the dashboard's read layer: the filter model and one query per figure,
                          over the derived tables of the data version a request sees
- `analytics.outputs`     what leaves the warehouse: exports, codebook, download files, the CLI
- `analytics.suppression` the one small-cell rule and the one setting of k

`python -m analytics …` is `analytics.outputs.cli`.
"""
