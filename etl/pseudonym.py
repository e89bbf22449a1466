"""Keyed-hash pseudonyms: HMAC-SHA256 of the source identifier, computed inside DuckDB.

The key comes from the environment (`EXCHANGE_IMPACT_KEY`) or, failing that, from a key file
beside the warehouse (`pseudonym.key`, owner-only permissions) that `etl demo` creates. The same
key and source id always give the same pseudonym, so waves and later loads link up; without the
key nobody can go back from a pseudonym to the id. Keys under 32 bytes are refused from either
source. The warehouse keeps a fingerprint of its key (a truncated HMAC of a fixed message, never
the key) in `meta`, and a load under another key is refused before it writes anything: its
pseudonyms would not link to the earlier ones.

HMAC is written out in SQL (RFC 2104: H((K^opad) || H((K^ipad) || m))) so that ten million rows
are hashed by DuckDB's vectorised `sha256` on all cores instead of a Python loop.
`pseudonym()` is the same function in Python, used by tests to check the SQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from etl.errors import EtlError

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "KEY_ENV", "MIN_KEY_BYTES", "key_file", "resolve_key", "key_fingerprint", "check_key",
    "pseudonym", "hmac_sql", "PSEUDONYM_LENGTH",
]

KEY_ENV = "EXCHANGE_IMPACT_KEY"
# HMAC-SHA256's own block of entropy (RFC 2104 §3: keys shorter than the output weaken it); an
# empty or short key makes every pseudonym computable by anyone who guesses it.
MIN_KEY_BYTES = 32
FINGERPRINT_KEY = "key_fingerprint"  # the meta row that holds it
_FINGERPRINT_MESSAGE = b"exchange-impact key fingerprint"
# Truncated HMAC (RFC 2104 §5) in base64: 12 characters carry 72 bits, so ten million people
# collide with odds of about 1e-8; and DuckDB stores strings of up to 12 bytes inline, which makes
# joins and copies of a ten-million-row log several times cheaper than with 32 hex digits.
PSEUDONYM_LENGTH = 12
# Base64's '+' and '/' become '.' and '_' (not base64url's '-' and '_'): a pseudonym never starts
# with a character a spreadsheet reads as a formula (= + - @), so CSV and XLSX exports, which
# neutralise such cells, never have to alter one and the same participant reads the same in
# every format.
_ALPHABET = str.maketrans("+/", "._")


def key_file(warehouse: Path) -> Path:
    return Path(warehouse).parent / "pseudonym.key"


def resolve_key(warehouse: Path, *, create: bool = False) -> bytes:
    """The pseudonymisation key: environment first, then the key file; `create` makes one."""
    env = os.environ.get(KEY_ENV)
    if env:
        return _long_enough(env.encode(), KEY_ENV)
    path = key_file(warehouse)
    if path.exists():
        mode = path.stat().st_mode & 0o077
        if mode:
            raise EtlError(
                f"{path}: the pseudonymisation key is readable by others; run 'chmod 600 {path}'"
            )
        return _long_enough(path.read_bytes().strip(), f"{path}: the pseudonymisation key")
    if not create:
        raise EtlError(
            f"no pseudonymisation key: set {KEY_ENV} to a long random secret (keep it; the same "
            f"key links later loads), or put one in {path} with owner-only permissions"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()


def _long_enough(key: bytes, source: str) -> bytes:
    """`key`, if it has at least `MIN_KEY_BYTES` bytes; else the EtlError that says so."""
    if len(key) < MIN_KEY_BYTES:
        raise EtlError(
            f"{source} is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed, or anyone can "
            "compute the pseudonyms: use a long random secret (e.g. python -c \"import secrets; "
            "print(secrets.token_hex(32))\"), the same one for every load of this warehouse")
    return key


def key_fingerprint(key: bytes) -> str:
    """A one-way, keyed digest that tells keys apart without revealing them (truncated HMAC)."""
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]


def check_key(con: duckdb.DuckDBPyConnection, key: bytes, warehouse: Path | str) -> None:
    """Refuse a load into a warehouse built under another key; record the key's fingerprint.

    Pseudonyms made under another key do not match the earlier ones: a survey wave would be
    rejected row by row as "not in participants" and a corrected roster would add the same people
    a second time. Called on the next warehouse before anything of the load is written; the first
    load (or the first under a warehouse from before fingerprints) records the fingerprint.
    """
    mine = key_fingerprint(key)
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [FINGERPRINT_KEY]).fetchall()
    if not rows:
        con.execute("INSERT INTO meta VALUES (?, ?)", [FINGERPRINT_KEY, mine])
    elif rows[0][0] != mine:
        raise EtlError(
            f"{warehouse}: the warehouse was built with another pseudonymisation key; loads under "
            "this key would not link to earlier participants; use the original key or start a "
            "new warehouse")


def pseudonym(source_id: str, key: bytes) -> str:
    digest = hmac.new(key, source_id.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode().translate(_ALPHABET)[:PSEUDONYM_LENGTH]


def hmac_sql(expr: str, key: bytes) -> str:
    """A DuckDB expression giving `pseudonym(expr, key)` for a VARCHAR expression."""
    k = key if len(key) <= 64 else hashlib.sha256(key).digest()
    k = k.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in k).hex()
    opad = bytes(b ^ 0x5C for b in k).hex()
    inner = f"unhex(sha256(unhex('{ipad}') || encode({expr})))"
    outer = f"to_base64(unhex(sha256(unhex('{opad}') || {inner})))"
    return f"translate(left({outer}, {PSEUDONYM_LENGTH}), '+/', '._')"
