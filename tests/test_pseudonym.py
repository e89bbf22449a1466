"""Pseudonyms: the SQL and the Python HMAC agree, and no pseudonym is altered by an export."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.outputs.export import DANGEROUS_PREFIXES, neutralise
from etl.pseudonym import PSEUDONYM_LENGTH, hmac_sql, pseudonym

KEY = b"a-test-key-of-some-length-at-least-32-bytes"


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_sql_and_python_agree_and_no_pseudonym_looks_like_a_formula(source_id: str) -> None:
    p = pseudonym(source_id, KEY)
    assert len(p) == PSEUDONYM_LENGTH
    assert not p.startswith(DANGEROUS_PREFIXES)
    assert neutralise(p) == p  # CSV/XLSX exports keep it as it is stored
    with duckdb.connect() as con:
        got = con.execute(f"SELECT {hmac_sql('$id', KEY)}", {"id": source_id}).fetchone()[0]
    assert got == p


def test_ids_whose_base64_starts_with_a_minus_sign_stay_unaltered() -> None:
    # Under base64url about 1 in 64 pseudonyms began with '-' and exports prefixed them with "'".
    ids = [f"S{i}" for i in range(2000)]
    pseudonyms = [pseudonym(i, KEY) for i in ids]
    assert all(neutralise(p) == p for p in pseudonyms)
    assert len(set(pseudonyms)) == len(ids)
