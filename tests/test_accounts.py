"""Accounts beside the warehouse (`etl.accounts`) and `python -m etl users` (issue 14)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from etl import accounts, schema

ROOT = Path(__file__).resolve().parents[1]


def _users(wh: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl", "users", *args, "--warehouse", str(wh)],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture
def small_warehouse(tmp_path) -> Path:
    """A hand-made file with the two tables a scope is checked against."""
    wh = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(wh))
    con.execute(f'CREATE TABLE "{schema.CLUSTERS.name}" (cluster_id VARCHAR)')
    con.execute(f'CREATE TABLE "{schema.EXCHANGES.name}" (program VARCHAR)')
    con.execute(f"INSERT INTO \"{schema.CLUSTERS.name}\" VALUES ('C1'), ('C2')")
    con.execute(f"INSERT INTO \"{schema.EXCHANGES.name}\" VALUES ('P1'), ('P2')")
    con.close()
    return wh


def test_cli_add_list_reset_remove(small_warehouse) -> None:
    wh = small_warehouse
    r = _users(wh, "add", "ana", "--role", "lead", "--program", "P1", "--password-stdin",
               stdin="correct horse\n")
    assert r.returncode == 0, r.stderr
    store = accounts.accounts_file(wh)
    assert store.exists() and store.stat().st_mode & 0o077 == 0
    assert accounts.has_accounts(wh)
    listed = _users(wh, "list")
    assert "ana" in listed.stdout and "lead" in listed.stdout and "P1" in listed.stdout
    assert "argon2" not in listed.stdout  # never a hash
    assert accounts.verify(wh, "ana", "correct horse") is not None
    assert accounts.verify(wh, "ana", "wrong horse!") is None
    assert _users(wh, "reset", "ana", "--password-stdin", stdin="battery staple").returncode == 0
    assert accounts.verify(wh, "ana", "correct horse") is None
    assert accounts.verify(wh, "ana", "battery staple").role == "lead"
    assert _users(wh, "remove", "ana").returncode == 0
    assert not accounts.has_accounts(wh)


def test_hash_is_argon2_and_stored_outside_the_warehouse(tmp_path) -> None:
    wh = tmp_path / "warehouse.duckdb"
    accounts.add_user(wh, "ana", "admin", "correct horse")
    with sqlite3.connect(accounts.accounts_file(wh)) as con:
        (h,) = con.execute("SELECT hash FROM users").fetchone()
    assert h.startswith("$argon2id$") and "correct horse" not in h
    assert not wh.exists()  # nothing was written into (or as) the warehouse


@pytest.mark.parametrize("pw, says", [("", "empty"), ("\n", "empty"), ("short", "at least 8")])
def test_empty_or_short_password_refused_with_a_clear_line(tmp_path, pw, says) -> None:
    r = _users(tmp_path / "w.duckdb", "add", "ana", "--role", "admin", "--password-stdin",
               stdin=pw)
    assert r.returncode == 1
    assert says in r.stderr and "Traceback" not in r.stderr
    assert not accounts.has_accounts(tmp_path / "w.duckdb")


def test_no_password_option_means_no_account(tmp_path) -> None:
    r = _users(tmp_path / "w.duckdb", "add", "ana", "--role", "admin")
    assert r.returncode == 2 and "--password-stdin" in r.stderr


def test_unknown_role_and_duplicate_name_refused(tmp_path) -> None:
    wh = tmp_path / "w.duckdb"
    with pytest.raises(accounts.AccountError, match="role 'boss'"):
        accounts.add_user(wh, "ana", "boss", "correct horse")
    accounts.add_user(wh, "ana", "admin", "correct horse")
    with pytest.raises(accounts.AccountError, match="exists"):
        accounts.add_user(wh, "ana", "funder", "correct horse")
    with pytest.raises(accounts.AccountError, match="no account 'bob'"):
        accounts.remove_user(wh, "bob")


def test_unknown_cluster_or_program_named(small_warehouse) -> None:
    r = _users(small_warehouse, "add", "ana", "--role", "lead", "--cluster", "C1", "--cluster",
               "C9", "--program", "P1", "--password-stdin", stdin="correct horse")
    assert r.returncode == 1 and "'C9'" in r.stderr and "cluster" in r.stderr
    with pytest.raises(accounts.AccountError, match="no program 'P7'"):
        accounts.add_user(small_warehouse, "ana", "lead", "correct horse", programs=["P7"])
    a = accounts.add_user(small_warehouse, "ana", "lead", "correct horse", clusters=["C2"],
                          programs=["P1"])
    assert (a.clusters, a.programs) == (("C2",), ("P1",))


def test_capabilities_table() -> None:
    assert accounts.can("admin", "rowlevel") and accounts.can("researcher", "unsuppressed")
    assert not accounts.can("funder", "rowlevel") and accounts.can("funder", "export")
    assert accounts.can("funder", "rounded") and accounts.can("funder", "snapshot")
    assert not accounts.can("lead", "rowlevel") and accounts.can("lead", "export")
    assert not accounts.can(None, "dashboard") and not accounts.can("nobody", "dashboard")


def test_audit_log_is_append_only(tmp_path) -> None:
    wh = tmp_path / "w.duckdb"
    accounts.record(wh, "ana", "download", "table.csv", {"program": ["P1"]}, "v3")
    rows = accounts.audit_rows(wh)
    assert rows[0][1:] == ("ana", "download", "table.csv", '{"program": ["P1"]}', "v3")
    with sqlite3.connect(accounts.accounts_file(wh)) as con:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("UPDATE audit SET user = 'x'")
    r = _users(wh, "audit")
    assert re.search(r"ana\s+download\s+table\.csv", r.stdout), r.stdout


def test_secret_key_file_is_owner_only_and_stable(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(accounts.SECRET_ENV, raising=False)
    wh = tmp_path / "w.duckdb"
    k1 = accounts.secret_key(wh)
    assert len(k1) >= 32 and accounts.secret_key(wh) == k1
    path = accounts.secret_file(wh)
    assert path.stat().st_mode & 0o077 == 0
    os.chmod(path, 0o644)
    with pytest.raises(accounts.EtlError, match="readable by others"):
        accounts.secret_key(wh)
    monkeypatch.setenv(accounts.SECRET_ENV, "short")
    with pytest.raises(accounts.EtlError, match="at least 32"):
        accounts.secret_key(wh)


@pytest.mark.parametrize("name", ['<img src=x onerror="alert(1)">', "ana silva", "ana;rm",
                                  "ana|admin", "ana\x00", "é" * 3, "a" * 101, "", "'or'1'='1"])
def test_account_names_are_a_safe_charset(tmp_path, name) -> None:
    """Names reach the user bar, the audit log and log lines: no markup, quotes, separators or
    control characters."""
    with pytest.raises(accounts.AccountError, match=r"letters, digits or \. _ - @"):
        accounts.add_user(tmp_path / "w.duckdb", name, "admin", "correct horse")
    assert not accounts.has_accounts(tmp_path / "w.duckdb")


def test_cli_refuses_a_markup_name_with_one_line(tmp_path) -> None:
    r = _users(tmp_path / "w.duckdb", "add", "<b>ana</b>", "--role", "admin", "--password-stdin",
               stdin="correct horse")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "letters, digits" in r.stderr


@pytest.mark.parametrize("name", ["ana", "ana.silva", "ana_silva-2", "ana@example.org", "A1"])
def test_usual_names_are_accepted(tmp_path, name) -> None:
    assert accounts.add_user(tmp_path / "w.duckdb", name, "admin", "correct horse").name == name


def test_session_generation_changes_on_reset_and_re_add(tmp_path) -> None:
    wh = tmp_path / "w.duckdb"
    first = accounts.add_user(wh, "ana", "admin", "correct horse").session
    assert first and accounts.get_user(wh, "ana").session == first
    assert accounts.verify(wh, "ana", "correct horse").session == first
    accounts.reset_password(wh, "ana", "correct horse")  # even to the same password: new salt
    second = accounts.get_user(wh, "ana").session
    assert second != first
    accounts.remove_user(wh, "ana")
    assert accounts.add_user(wh, "ana", "admin", "correct horse").session not in (first, second)
    assert "argon2" not in second and "correct" not in second


def test_a_scope_needs_a_warehouse_to_check_it_against(tmp_path) -> None:
    r = _users(tmp_path / "w.duckdb", "add", "ana", "--role", "lead", "--program", "P1",
               "--password-stdin", stdin="correct horse")
    assert r.returncode == 1 and "no warehouse to check --program/--cluster" in r.stderr
    assert not accounts.has_accounts(tmp_path / "w.duckdb")
    assert accounts.add_user(tmp_path / "w.duckdb", "ana", "admin", "correct horse").name == "ana"


def test_a_file_another_worker_is_still_creating_reads_as_no_accounts(tmp_path) -> None:
    """The first audit line creates accounts.sqlite; another gunicorn worker may open it
    between the file's creation and its tables' (test_serving saw a 500 from that). Such a
    file is "no accounts", and the next write completes its tables."""
    wh = tmp_path / "warehouse.duckdb"
    path = accounts.accounts_file(wh)
    path.touch(mode=0o600)  # what the other worker has made so far
    assert not accounts.has_accounts(wh)
    accounts.record(wh, "(no login) 127.0.0.1", "download", "x.csv", None, "1")
    assert not accounts.has_accounts(wh)
    rows = accounts.audit_rows(wh)
    assert len(rows) == 1 and "download" in rows[0]


def test_commands_read_credentials_one_way(monkeypatch) -> None:
    """`--password-stdin` (all of standard input, its newline dropped) or, for the export
    commands, EXCHANGE_IMPACT_USER / EXCHANGE_IMPACT_PASSWORD: one reader for every command."""
    import io

    monkeypatch.delenv(accounts.USER_ENV, raising=False)
    monkeypatch.delenv(accounts.PASSWORD_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("pass word 1\n"))
    assert accounts.read_password(True) == "pass word 1"
    assert accounts.command_credentials(None, False) == (None, "")
    monkeypatch.setenv(accounts.USER_ENV, "ana")
    monkeypatch.setenv(accounts.PASSWORD_ENV, "from env")
    assert accounts.command_credentials(None, False) == ("ana", "from env")
    assert accounts.read_password(False) == ""  # `users add` never reads the environment
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\r\n"))
    assert accounts.command_credentials("bea", True) == ("bea", "from stdin")
