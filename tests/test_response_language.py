"""The language a survey was taken in: an optional responses column, default the exchange's."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.languages import language_code
from tests import program as P

q = P.q


def _program(folder: Path, responses: list[dict], exchange_language: str = "Spanish") -> Path:
    """The test program with E2 loadable, in `exchange_language`, and these responses."""
    P.write_program(folder)
    exchanges = [dict(P.EXCHANGES[0]),
                 {**P.EXCHANGES[1], "start_date": "2026-01-10", "language": exchange_language}]
    P.write_csv(folder / "exchanges.csv", exchanges)
    P.write_csv(folder / "responses.csv", responses)
    return folder


def _row(pid: str, exchange: str, wave: str, **extra: str) -> dict:
    # answers differ between rows: the derive step needs some variance to run on
    a = {"pre": ("4", "5", "2", "4"), "post": ("5", "4", "1", "5")}[wave]
    if pid.endswith("2"):
        a = a[::-1]
    return {"participant_id": pid, "exchange_id": exchange, "wave": wave,
            "submitted_at": "2026-01-12T09:00:00+01:00", **extra,
            **{f"icc_{i}": v for i, v in enumerate(a, start=1)}}


def _languages(wh: Path) -> dict[tuple[str, str], set]:
    rows = q(wh, "SELECT exchange_id, wave, language FROM responses")
    out: dict[tuple[str, str], set] = {}
    for ex, wave, lang in rows:
        out.setdefault((ex, wave), set()).add(lang)
    return out


@pytest.mark.parametrize(("text", "code"), [
    ("en", "en"), ("ES", "es"), ("Spanish", "es"), ("español", "es"), ("Français", "fr"),
    ("fre", "fr"), ("spa", "es"), ("pt-BR", "pt"), ("es_MX", "es"), ("Greek", "el"),
    ("Swahili", "sw"), ("  German ", "de"),
    ("Klingon", None), ("English and Spanish", None), ("", None), ("xx", None),
])
def test_language_names_and_codes_map_to_iso_639_1(text: str, code: str | None) -> None:
    assert language_code(text) == code


def test_a_file_with_the_column_stores_each_rows_language(tmp_path: Path) -> None:
    src = _program(tmp_path / "in", [
        _row("STU-0001", "E1", "pre", language="fr"),
        _row("STU-0001", "E1", "post", language="Español"),
        _row("STU-0002", "E2", "pre", language=""),  # empty: the exchange's (Spanish)
    ])
    wh = tmp_path / "w.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode in (0, 3), res.stdout + res.stderr
    assert "language" not in res.stdout.split("columns ignored")[-1].split("\n")[0]
    assert _languages(wh) == {("E1", "pre"): {"fr"}, ("E1", "post"): {"es"},
                              ("E2", "pre"): {"es"}}
    assert not q(wh, "SELECT * FROM rejects WHERE file LIKE '%responses.csv'")


def test_without_the_column_the_exchanges_language_is_the_default(tmp_path: Path) -> None:
    src = _program(tmp_path / "in", [_row("STU-0001", "E1", "pre"), _row("STU-0001", "E1", "post"),
                                     _row("STU-0002", "E2", "pre")])
    wh = tmp_path / "w.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode in (0, 3), res.stdout + res.stderr
    # E1's language is written "en", E2's "Spanish": both stored as ISO 639-1 codes
    assert _languages(wh) == {("E1", "pre"): {"en"}, ("E1", "post"): {"en"},
                              ("E2", "pre"): {"es"}}


def test_an_exchange_language_that_names_none_leaves_the_answers_without_one(
        tmp_path: Path) -> None:
    src = _program(tmp_path / "in", [_row("STU-0002", "E2", "pre")],
                   exchange_language="English and Spanish")
    wh = tmp_path / "w.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode in (0, 3), res.stdout + res.stderr
    assert _languages(wh) == {("E2", "pre"): {None}}


def test_an_unknown_language_is_rejected_naming_file_row_and_rule(tmp_path: Path) -> None:
    src = _program(tmp_path / "in", [
        _row("STU-0001", "E1", "pre", language="en"),
        _row("STU-0001", "E1", "post", language="Klingon"),  # row 3
    ])
    wh = tmp_path / "w.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    rejects = q(wh, "SELECT file, row_number, column_name, rule, value FROM rejects "
                    "WHERE file LIKE '%responses.csv'")
    assert [(Path(f).name, r, c, rule, v) for f, r, c, rule, v in rejects] == [
        ("responses.csv", 3, "language", "language", "Klingon")]
    assert (f"{src / 'responses.csv'}: row 3, column language: language: 'Klingon' is not a "
            "language") in res.stdout
    assert _languages(wh) == {("E1", "pre"): {"en"}}  # the rest of the file loaded
