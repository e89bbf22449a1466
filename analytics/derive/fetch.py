"""Query results as pandas frames, fast: the derive step's reads of a million rows."""

from __future__ import annotations

import warnings

import duckdb
import pandas as pd

__all__ = ["frame"]


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    """`con.execute(sql, params).df()`, through Arrow. DuckDB's pandas conversion makes a
    Python string of every text value and pandas then builds its Arrow strings from them (4.9 s
    for one scale's 2.1M scores at 1M participants); Arrow hands pandas the strings as they are
    (0.6 s). The frame is the same (tests/test_materialise.py compares them): text as pandas'
    str dtype, an integer column with NULLs as pandas' nullable integer (Arrow alone would give
    floats), a DECIMAL as float64."""
    import pyarrow as pa

    with warnings.catch_warnings():
        # "use con.sql(): one copy fewer"; but con.sql refuses to run while an earlier
        # execute() result is unfinished, and the copy is a small part of the time
        warnings.simplefilter("ignore", UserWarning)
        tbl = con.execute(sql, params or []).to_arrow_table()
    df = tbl.to_pandas()
    for name, col in zip(tbl.column_names, tbl.columns, strict=True):
        if pa.types.is_integer(col.type) and col.null_count:
            df[name] = df[name].astype(f"Int{col.type.bit_width}")
        elif pa.types.is_decimal(col.type):  # .df() gives a DECIMAL as float64
            df[name] = df[name].astype("float64")
    return df
