"""Accounts, roles and the audit log: who may see what (issue 14).

Kept in a SQLite file beside the warehouse (`accounts.sqlite`), never inside it: a load builds
the next warehouse and swaps it in whole (`os.replace`), which would drop accounts kept there,
and the participant tables stay free of anything about the people who read them. SQLite (stdlib)
takes concurrent readers and serialised writers across gunicorn workers and CLI runs.

Passwords are stored as argon2id hashes (argon2-cffi's defaults, RFC 9106); there is no default
password, and one shorter than `MIN_PASSWORD` is refused. A role is one of `ROLES`; what each
may do is `CAPABILITIES`, the one table every check reads. An account's scope (clusters,
programs) limits which data it sees; an empty scope means all programs.

The audit log (`audit` table) is append-only: triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from etl.errors import EtlError

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = [
    "ROLES", "CAPABILITIES", "MIN_PASSWORD", "Account", "AccountError", "accounts_file",
    "has_accounts", "add_user", "remove_user", "reset_password", "list_users", "get_user",
    "verify", "can", "record", "session_generation", "audit_rows", "secret_key", "SECRET_ENV",
    "secret_file", "USER_ENV", "PASSWORD_ENV", "read_password", "command_credentials",
]

# Role -> what it may do. The one table of capabilities: pages, callbacks, downloads and the
# CLI ask `can(role, capability)`, never the role's name.
#   dashboard      the pages and their figures (within the account's scope)
#   export         the Data page's aggregate tables and `analytics export` (suppressed; a
#                  scoped account's computed from its programs, a funder's rounded)
#   snapshot       PDF snapshots of the filters shown
#   rowlevel       row-level pseudonymised downloads
#   unsuppressed   tables without small-cell suppression (min-cell 0)
#   rounded        counts are always rounded (helper S's rounding; `rounding_required()`)
#   manage_users   `python -m etl users …` through the app (not used yet: the CLI is local)
CAPABILITIES: dict[str, frozenset[str]] = {
    "admin": frozenset({"dashboard", "export", "snapshot", "rowlevel", "unsuppressed",
                        "manage_users"}),
    "lead": frozenset({"dashboard", "export", "snapshot"}),
    "researcher": frozenset({"dashboard", "export", "snapshot", "rowlevel", "unsuppressed"}),
    "funder": frozenset({"dashboard", "export", "snapshot", "rounded"}),
}
ROLES: tuple[str, ...] = tuple(CAPABILITIES)
# NIST SP 800-63B §5.1.1.2: at least 8 characters for a memorised secret chosen by the user.
MIN_PASSWORD = 8
SECRET_ENV = "EXCHANGE_IMPACT_SECRET_KEY"
MIN_SECRET_BYTES = 32


class AccountError(EtlError):
    """A user-management request that cannot be carried out (message says why)."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    clusters: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()
    created_at: str = ""
    # Changes whenever the password hash does (`users reset`; a removed and re-added account
    # gets a new salt): the dashboard's session cookie carries it, so that a reset or removal
    # ends the sessions made before it (pages/_access.py's user loader compares the two).
    session: str = field(default="", repr=False, compare=False)

    @property
    def scoped(self) -> bool:
        return bool(self.clusters or self.programs)


def can(role: str | None, capability: str) -> bool:
    """Whether `role` has `capability` (an unknown role or None has none)."""
    return capability in CAPABILITIES.get(role or "", frozenset())


def accounts_file(warehouse: Path | str) -> Path:
    return Path(warehouse).parent / "accounts.sqlite"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, clusters TEXT NOT NULL, programs TEXT NOT NULL,
    hash TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, filters TEXT NOT NULL, data_version TEXT);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@contextmanager
def _db(warehouse: Path | str, *, create: bool = True) -> Iterator[sqlite3.Connection]:
    path = accounts_file(warehouse)
    if not create and not path.exists():
        raise FileNotFoundError(path)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only: it holds password hashes and the audit log.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    # busy timeout: another worker or the CLI may be writing the audit log at the same moment.
    with closing(sqlite3.connect(path, timeout=10)) as con:
        if create:
            # Every time, not only when this process made the file: another worker may have
            # created it a moment ago and not yet its tables (IF NOT EXISTS: idempotent).
            con.executescript(_SCHEMA)
        with con:
            yield con


def has_accounts(warehouse: Path | str) -> bool:
    """Whether any account exists (then every page, callback and download needs a login)."""
    if not accounts_file(warehouse).exists():
        return False
    with _db(warehouse, create=False) as con:
        # A file without its tables is one another process is creating (its first audit
        # line): no account yet, rather than "no such table" and a 500 for this request.
        if not con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                           "AND name = 'users'").fetchone()[0]:
            return False
        return con.execute("SELECT count(*) FROM users").fetchone()[0] > 0


def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()


# A command run by a script names its account and password in the environment (or the password
# on standard input): `python -m analytics export --user NAME --password-stdin`.
USER_ENV, PASSWORD_ENV = "EXCHANGE_IMPACT_USER", "EXCHANGE_IMPACT_PASSWORD"


def read_password(from_stdin: bool, *, env: bool = False) -> str:
    """The password a command was given: all of standard input with `--password-stdin` (its
    trailing newline dropped: `echo` adds one), else, when `env`, the environment variable
    EXCHANGE_IMPACT_PASSWORD; '' when there is none. The one reader of every command's
    `--password-stdin` (`python -m etl users add|reset`, `python -m analytics …`)."""
    import sys

    if from_stdin:
        return sys.stdin.read().rstrip("\r\n")
    return os.environ.get(PASSWORD_ENV, "") if env else ""


def command_credentials(user: str | None, password_stdin: bool) -> tuple[str | None, str]:
    """(account name, password) of a command: `--user` else EXCHANGE_IMPACT_USER, and the
    password as `read_password` finds it (standard input, else EXCHANGE_IMPACT_PASSWORD)."""
    return user or os.environ.get(USER_ENV) or None, read_password(password_stdin, env=True)


def _check_password(password: str) -> str:
    password = password.rstrip("\r\n")
    if not password.strip():
        raise AccountError("the password is empty; give one on standard input "
                           "(e.g. printf '%s' \"$PW\" | python -m etl users add …)")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password has {len(password)} characters; at least "
                           f"{MIN_PASSWORD} are needed")
    return password


def _known_ids(warehouse: Path) -> dict[str, set[str]] | None:
    """Cluster and program ids of the warehouse, or None when there is none to check against."""
    if not Path(warehouse).exists():
        return None
    from etl import schema
    from etl.warehouse import connect_read_only

    con = connect_read_only(warehouse)
    try:
        clusters = {r[0] for r in con.execute(
            f'SELECT cluster_id FROM "{schema.CLUSTERS.name}"').fetchall()}
        programs = {r[0] for r in con.execute(
            f'SELECT DISTINCT program FROM "{schema.EXCHANGES.name}"').fetchall()}
    finally:
        con.close()
    return {"cluster": clusters, "program": programs}


def _check_scope(warehouse: Path, clusters: Iterable[str], programs: Iterable[str]) -> None:
    clusters, programs = tuple(clusters), tuple(programs)
    known = _known_ids(warehouse)
    if known is None:
        if clusters or programs:
            # An id that no warehouse has checked may be a typo that a later load never fills.
            raise AccountError(f"{warehouse}: no warehouse to check --program/--cluster "
                               "against; load data first ('python -m etl load PATH'), or add "
                               "the account without a scope")
        return
    for kind, ids in (("cluster", clusters), ("program", programs)):
        bad = sorted(set(ids) - known[kind])
        if bad:
            raise AccountError(f"{warehouse}: no {kind} {', '.join(map(repr, bad))} in the "
                               f"warehouse (known: {', '.join(sorted(known[kind])[:20])})")


# Account names reach the audit log, the user bar and log lines: letters, digits and . _ - @
# only (an e-mail address fits), so that no name carries markup, quotes or control characters.
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,100}")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AccountError(f"account name {str(name)[:100]!r}: use 1–100 letters, digits or "
                           ". _ - @ (e.g. ana.silva or ana@example.org)")
    return name


def add_user(warehouse: Path | str, name: str, role: str, password: str, *,
             clusters: Iterable[str] = (), programs: Iterable[str] = ()) -> Account:
    """Create an account; refuses an existing name, an unknown role, a short password and
    cluster/program ids the warehouse does not have."""
    name = _check_name(name)
    if role not in ROLES:
        raise AccountError(f"role {role!r}: use one of {', '.join(ROLES)}")
    password = _check_password(password)
    clusters, programs = tuple(dict.fromkeys(clusters)), tuple(dict.fromkeys(programs))
    _check_scope(Path(warehouse), clusters, programs)
    pw_hash = _hasher().hash(password)
    acct = Account(name, role, clusters, programs,
                   datetime.now(UTC).isoformat(timespec="seconds"),
                   session=session_generation(pw_hash))
    with _db(warehouse) as con:
        try:
            con.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                        (name, role, json.dumps(clusters), json.dumps(programs),
                         pw_hash, acct.created_at))
        except sqlite3.IntegrityError:
            raise AccountError(f"account {name!r} exists; use 'users reset {name}' for a new "
                               "password, or 'users remove' first") from None
    return acct


def remove_user(warehouse: Path | str, name: str) -> None:
    with _db(warehouse) as con:
        if con.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
            raise AccountError(f"no account {name!r}")


def reset_password(warehouse: Path | str, name: str, password: str) -> None:
    password = _check_password(password)
    with _db(warehouse) as con:
        n = con.execute("UPDATE users SET hash = ? WHERE name = ?",
                        (_hasher().hash(password), name)).rowcount
        if n == 0:
            raise AccountError(f"no account {name!r}")


def session_generation(password_hash: str) -> str:
    """A short fingerprint of the password hash (which holds a random salt): it reveals nothing
    of the password, and changes on every reset and on remove + add of the same name."""
    return hashlib.sha256(b"exchange-impact session\0" + password_hash.encode()).hexdigest()[:32]


_COLUMNS = "name, role, clusters, programs, created_at, hash"


def _account(row: tuple) -> Account:
    name, role, clusters, programs, created, pw_hash = row
    return Account(name, role, tuple(json.loads(clusters)), tuple(json.loads(programs)), created,
                   session=session_generation(pw_hash))


def list_users(warehouse: Path | str) -> list[Account]:
    if not accounts_file(warehouse).exists():
        return []
    with _db(warehouse) as con:
        return [_account(r) for r in con.execute(
            f"SELECT {_COLUMNS} FROM users ORDER BY name")]


def get_user(warehouse: Path | str, name: str) -> Account | None:
    if not accounts_file(warehouse).exists():
        return None
    with _db(warehouse) as con:
        row = con.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
    return _account(row) if row else None


# A hash to verify against when the name is unknown, so that a wrong name costs the same time
# as a wrong password and does not tell which names exist.
_DUMMY_HASH: str | None = None


def verify(warehouse: Path | str, name: str, password: str) -> Account | None:
    """The account when `password` is right, else None (same cost for an unknown name)."""
    from argon2.exceptions import VerificationError, VerifyMismatchError

    global _DUMMY_HASH
    row = None
    if accounts_file(warehouse).exists():
        with _db(warehouse) as con:
            row = con.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?",
                              (name,)).fetchone()
    ph = _hasher()
    if row is None:
        _DUMMY_HASH = _DUMMY_HASH or ph.hash(secrets.token_hex(16))
        try:
            ph.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return None
    try:
        ph.verify(row[5], password)
    except (VerifyMismatchError, VerificationError):
        return None
    return _account(row)


# ---- the audit log ----------------------------------------------------------------------------

def record(warehouse: Path | str, user: str, action: str, target: str,
           filters: dict | str | None = None, data_version: str | None = None) -> None:
    """Append who exported, downloaded or snapshot what (the audit log; append-only)."""
    text = filters if isinstance(filters, str) else json.dumps(filters or {}, sort_keys=True)
    with _db(warehouse) as con:
        con.execute("INSERT INTO audit (at, user, action, target, filters, data_version) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (datetime.now(UTC).isoformat(timespec="seconds"), user, action, target,
                     text, data_version))


def audit_rows(warehouse: Path | str, limit: int = 100) -> list[tuple]:
    """The last `limit` audit entries, newest first: (at, user, action, target, filters,
    data_version)."""
    if not accounts_file(warehouse).exists():
        return []
    with _db(warehouse) as con:
        return con.execute("SELECT at, user, action, target, filters, data_version FROM audit "
                           "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()


# ---- the session secret -----------------------------------------------------------------------

def secret_file(warehouse: Path | str) -> Path:
    return Path(warehouse).parent / "session.key"


def secret_key(warehouse: Path | str, *, create: bool = True) -> bytes:
    """The key that signs session cookies and CSRF tokens: env `EXCHANGE_IMPACT_SECRET_KEY`, else
    `session.key` beside the warehouse (owner-only, created on first use), as for the
    pseudonymisation key (`etl.pseudonym.resolve_key`). Every gunicorn worker must share it, or
    a session made by one is refused by the next: the file (or env) gives them the same one."""
    env = os.environ.get(SECRET_ENV)
    if env:
        if len(env.encode()) < MIN_SECRET_BYTES:
            raise EtlError(f"{SECRET_ENV} is {len(env.encode())} bytes; at least "
                           f"{MIN_SECRET_BYTES} are needed (a long random secret)")
        return env.encode()
    path = secret_file(warehouse)
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise EtlError(f"{path}: the session key is readable by others; run "
                           f"'chmod 600 {path}'")
        key = path.read_bytes().strip()
        if len(key) < MIN_SECRET_BYTES:
            raise EtlError(f"{path}: the session key is too short; remove the file to get "
                           "a new one")
        return key
    if not create:
        raise EtlError(f"no session key: set {SECRET_ENV} or create {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first: use theirs
        return secret_key(warehouse, create=False)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path.read_bytes().strip()
