"""Issue 14 on the command line: `python -m analytics export` (and `downloads`) below the
deployment's k, or of row-level tables, needs an account whose role may, once accounts exist;
without accounts (a single-user machine) it runs as before. Every run and every refusal is in
the audit log with who, what, the options and the data version."""

from __future__ import annotations

import getpass
import io
import json
from pathlib import Path

import pytest

from analytics.outputs import cli
from etl import accounts
from tests import access_helpers as ah
from tests.access_helpers import PW
from tests.analytics_fixture import run
from tests.dashboard_fixture import build_fixture_warehouse


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Path:
    """A warehouse without accounts (a single-user machine)."""
    return build_fixture_warehouse(tmp_path_factory.mktemp("bare") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Path:
    return ah.with_accounts(tmp_path_factory.mktemp("guarded") / "warehouse.duckdb", {
        "admin1": ("admin", {}), "res1": ("researcher", {}),
        "res_bridges": ("researcher", {"programs": ["Bridges"]}), "lead1": ("lead", {}),
        "funder1": ("funder", {})})


def _main(monkeypatch, argv: list[str], password: str | None = None) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password or ""))
    return cli.main(argv)


def _last(wh: Path) -> tuple:
    return accounts.audit_rows(wh, 1)[0]


def test_without_accounts_unsuppressed_runs_and_is_audited(bare: Path, tmp_path: Path) -> None:
    out = tmp_path / "pp.csv"
    r = run("analytics", "export", "prepost", "--min-cell", "0", "--warehouse", str(bare),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.exists()
    at, who, action, target, filters, version = _last(bare)
    assert who == f"(no accounts) {getpass.getuser()}" and action == "cli-export"
    assert target == f"prepost -> {out}" and version == "1"
    assert json.loads(filters) == {"by": None, "format": "csv", "min_cell": 0}


def test_unsuppressed_without_an_account_is_refused(guarded: Path, tmp_path: Path) -> None:
    out = tmp_path / "pp.csv"
    r = run("analytics", "export", "prepost", "--min-cell", "0", "--warehouse", str(guarded),
            "--out", str(out))
    assert r.returncode == 1 and not out.exists()
    lines = r.stderr.strip().splitlines()
    assert lines == [lines[0]] and "needs an account" in lines[0] and "--user" in lines[0], \
        r.stderr
    who, action, target = _last(guarded)[1:4]
    assert who == f"os:{getpass.getuser()}" and action == "cli-export-refused"
    assert target == "prepost"


def test_a_researcher_with_password_on_stdin_may(guarded: Path, tmp_path: Path) -> None:
    out = tmp_path / "pp.csv"
    r = run("analytics", "export", "prepost", "--min-cell", "3", "--warehouse", str(guarded),
            "--out", str(out), "--user", "res1", "--password-stdin", stdin=PW + "\n")
    assert r.returncode == 0, r.stderr
    assert out.exists()
    _at, who, action, target, filters, version = _last(guarded)
    assert (who, action, target, version) == ("res1", "cli-export", f"prepost -> {out}", "1")
    assert json.loads(filters)["min_cell"] == 3


@pytest.mark.parametrize(("user", "password", "message"), [
    ("lead1", PW, "the role lead of lead1 may not export unsuppressed"),
    ("funder1", PW, "the role funder of funder1 may not"),
    ("res1", "not the password", "wrong account name or password"),
    ("nobody", PW, "wrong account name or password"),
])
def test_others_are_refused_with_one_line(guarded: Path, tmp_path: Path, monkeypatch, capsys,
                                          user: str, password: str, message: str) -> None:
    out = tmp_path / "pp.csv"
    code = _main(monkeypatch, ["export", "prepost", "--min-cell", "0", "--warehouse",
                               str(guarded), "--out", str(out), "--user", user,
                               "--password-stdin"], password)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.exists()
    assert len(err) == 1 and message in err[0], err
    assert _last(guarded)[2] == "cli-export-refused"


def test_row_level_tables_need_the_rowlevel_capability(guarded: Path, tmp_path: Path,
                                                       monkeypatch, capsys) -> None:
    out = tmp_path / "scores.csv"
    base = ["export", "scale_scores", "--warehouse", str(guarded), "--out", str(out)]
    assert _main(monkeypatch, base) == 1
    assert "rowlevel output needs an account" in capsys.readouterr().err
    assert _main(monkeypatch, [*base, "--user", "lead1", "--password-stdin"], PW) == 1
    assert "may not export rowlevel" in capsys.readouterr().err
    assert not out.exists()
    assert _main(monkeypatch, [*base, "--user", "admin1", "--password-stdin"], PW) == 0
    assert out.exists() and _last(guarded)[1:3] == ("admin1", "cli-export")
    # the zip of every table holds them too
    assert _main(monkeypatch, ["export", "--all", "--out", str(tmp_path / "all"),
                               "--warehouse", str(guarded)]) == 1


def test_aggregates_at_k_stay_open_and_env_credentials_work(guarded: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    out = tmp_path / "pp.csv"
    assert _main(monkeypatch, ["export", "prepost", "--warehouse", str(guarded),
                               "--out", str(out)]) == 0
    assert _last(guarded)[1] == f"os:{getpass.getuser()}"
    monkeypatch.setenv(accounts.USER_ENV, "res1")
    monkeypatch.setenv(accounts.PASSWORD_ENV, PW)
    assert _main(monkeypatch, ["export", "prepost", "--min-cell", "0", "--warehouse",
                               str(guarded), "--out", str(out)]) == 0
    assert _last(guarded)[1:3] == ("res1", "cli-export")


def test_downloads_below_k_from_the_command_line_are_gated(guarded: Path, monkeypatch,
                                                           capsys) -> None:
    code = _main(monkeypatch, ["downloads", "prepost", "--min-cell", "0", "--warehouse",
                               str(guarded)])
    assert code == 1 and "needs an account" in capsys.readouterr().err
    assert _last(guarded)[2] == "cli-downloads-refused"


def test_a_lower_k_in_the_environment_does_not_step_around_the_check(guarded: Path,
                                                                     tmp_path: Path) -> None:
    """EXCHANGE_IMPACT_MIN_CELL=0 for one command makes its default --min-cell 0: still below
    the k the warehouse's results were stored at, so still an unsuppressed export."""
    out = tmp_path / "pp.csv"
    r = run("analytics", "export", "prepost", "--warehouse", str(guarded), "--out", str(out),
            env={"EXCHANGE_IMPACT_MIN_CELL": "0"})
    assert r.returncode == 1 and not out.exists(), r.stderr
    assert "unsuppressed output needs an account" in r.stderr
    assert cli.deployment_k(guarded) == 10


def test_refresh_below_k_is_checked_too(guarded: Path, monkeypatch, capsys) -> None:
    """Stored results below k would be what every role's pages read."""
    code = _main(monkeypatch, ["refresh", "--min-cell", "0", "--warehouse", str(guarded),
                               "--user", "lead_nobody", "--password-stdin"], PW)
    assert code == 1 and "wrong account name or password" in capsys.readouterr().err
    assert _last(guarded)[2] == "cli-refresh-refused"
    code = _main(monkeypatch, ["refresh", "--min-cell", "0", "--warehouse", str(guarded)])
    assert code == 1 and "needs an account" in capsys.readouterr().err


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def test_a_scoped_account_exports_its_scope_and_a_funder_rounded(guarded: Path, tmp_path: Path,
                                                                 monkeypatch, capsys) -> None:
    """As the Data page: a researcher limited to Bridges gets Bridges' participants (row-level,
    unsuppressed: its role may), a funder its counts rounded; both in the audit log."""
    import duckdb

    from analytics import suppression

    out = tmp_path / "scores.csv"
    assert _main(monkeypatch, ["export", "scale_scores", "--min-cell", "0", "--warehouse",
                               str(guarded), "--out", str(out), "--user", "res_bridges",
                               "--password-stdin"], PW) == 0
    assert "limited to programs Bridges" in capsys.readouterr().err
    con = duckdb.connect(str(guarded), read_only=True)
    try:
        bridges = {r[0] for r in con.execute(
            "SELECT exchange_id FROM exchanges WHERE program = 'Bridges'").fetchall()}
        everyone = {r[0] for r in con.execute(
            "SELECT exchange_id FROM res_scale_scores").fetchall()}
    finally:
        con.close()
    got = {r["exchange_id"] for r in _csv(out)}
    assert got and got <= bridges and not everyone <= bridges
    _at, who, action, _target, filters, _v = _last(guarded)
    assert (who, action) == ("res_bridges", "cli-export")
    assert json.loads(filters)["scope"] == "programs Bridges"

    out = tmp_path / "attrition.csv"
    assert _main(monkeypatch, ["export", "attrition", "--warehouse", str(guarded), "--out",
                               str(out), "--user", "funder1", "--password-stdin"], PW) == 0
    counts = [int(float(r[c])) for r in _csv(out) for c in ("n_invited", "n_responded")
              if r[c]]
    assert counts and all(n % suppression.ROUND_TO == 0 for n in counts)
    assert json.loads(_last(guarded)[4])["round_to"] == suppression.ROUND_TO
    plain = tmp_path / "attrition_exact.csv"
    assert _main(monkeypatch, ["export", "attrition", "--warehouse", str(guarded), "--out",
                               str(plain)]) == 0
    assert any(int(float(r["n_responded"])) % suppression.ROUND_TO
               for r in _csv(plain) if r["n_responded"])
