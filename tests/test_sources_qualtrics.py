"""Qualtrics exports through the real `python -m etl load`: rows in the warehouse, unfinished
responses counted, identifiers never stored in clear, the legacy layout, refusals in one line."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest

from etl.errors import RefusedFile
from etl.pseudonym import pseudonym
from etl.sources import detect, qualtrics
from tests import program as P

q = P.q

META = ["StartDate", "EndDate", "Status", "IPAddress", "Progress", "Duration (in seconds)",
        "Finished", "RecordedDate", "ResponseId", "RecipientLastName", "RecipientFirstName",
        "RecipientEmail", "ExternalReference", "LocationLatitude", "LocationLongitude",
        "DistributionChannel", "UserLanguage"]
META_TEXT = ["Start Date", "End Date", "Response Type", "IP Address", "Progress",
             "Duration (in seconds)", "Finished", "Recorded Date", "Response ID",
             "Recipient Last Name", "Recipient First Name", "Recipient Email",
             "External Data Reference", "Location Latitude", "Location Longitude",
             "Distribution Channel", "User Language"]
META_IDS = ["startDate", "endDate", "status", "ipAddress", "progress", "duration", "finished",
            "recordedDate", "_recordId", "recipientLastName", "recipientFirstName",
            "recipientEmail", "externalDataReference", "locationLatitude", "locationLongitude",
            "distributionChannel", "userLanguage"]
# Export tags Q1_1..Q1_4 (a matrix question, QID7), whose texts are Spanish; Q2 is free text.
TAGS = ["Q1_1", "Q1_2", "Q1_3", "Q1_4", "Q2"]
QIDS = ["QID7_1", "QID7_2", "QID7_3", "QID7_4", "QID9_TEXT"]
TEXTS = ["¿Cuánto está de acuerdo? - Me interesan otras culturas",
         "¿Cuánto está de acuerdo? - Hablo con\npersonas de otros países",  # a line break
         "¿Cuánto está de acuerdo? - Evito malentendidos", "¿Cuánto está de acuerdo? - Otro",
         "Comentarios"]
MAPPING = {"items": {"QID7_1": "icc_1", "QID7_2": "icc_2", "Q1_3": "icc_3", "QID7_4": "icc_4"}}

# (ExternalReference, e-mail, name, IP, Finished, Progress, Status, RecordedDate, answers)
RESPONSES = [
    ("STU-0001", "Anna.Schmidt@example.org", ("Schmidt", "Anna"), "203.0.113.7", "1", "100",
     "0", "2026-06-20 08:00:00", ["4", "5", "2", "4"], "sehr gut"),
    ("STU-0002", "jose.perez@example.org", ("Pérez", "José"), "198.51.100.23", "1", "100",
     "0", "2026-06-21 09:30:00", ["3", "9", "3", "3"], ""),  # row 5: icc_2 out of range
    ("STU-0003", "sato.hanako@example.jp", ("佐藤", "花子"), "192.0.2.55", "0", "40", "0",
     "2026-06-22 10:00:00", ["2", "", "", ""], ""),  # unfinished
    ("", "", ("", ""), "", "1", "100", "1", "2026-06-19 10:00:00",
     ["1", "1", "1", "1"], ""),  # a preview
]
IDENTIFIERS = ["Anna.Schmidt@example.org", "jose.perez@example.org", "203.0.113.7",
               "198.51.100.23", "Schmidt", "Pérez", "STU-0001", "STU-0002", "47.3769",
               "8.5417"]


# Loads here are about the rows read and loaded, never the derived tables (conftest.py).
pytestmark = pytest.mark.usefixtures("no_derive")


def write_qualtrics(path: Path, rows: list[tuple] = RESPONSES, *, legacy: bool = False,
                    zone: str | None = "America/Denver") -> Path:
    """An export in Qualtrics' real shape: 3 header rows (or the legacy 2 with BOM and trailing
    commas), metadata first, then the questions."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    if legacy:
        head = ["ResponseID", "ResponseSet", "Name", "ExternalDataReference", "EmailAddress",
                "IPAddress", "Status", "StartDate", "EndDate", "Finished", *TAGS,
                "LocationLatitude", "LocationLongitude", "LocationAccuracy"]
        w.writerow([*head, ""])
        w.writerow([*head[:10], *TEXTS, *head[-3:], ""])
        for i, (ext, mail, (last, first), ip, fin, _prog, st, rec, ans, txt) in enumerate(rows):
            # Legacy exports write month-first dates.
            y, m, d = rec[:10].split("-")
            w.writerow([f"R_legacy{i}", "Default Response Set", f"{last}, {first}", ext, mail,
                        ip, st, f"{m}/{d}/{y} {rec[11:16]}", f"{m}/{d}/{y} {rec[11:16]}", fin,
                        *ans, txt, "47.3769", "8.5417", "-1", ""])
        path.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode())
        return path
    w.writerow([*META, *TAGS])
    w.writerow([*META_TEXT, *TEXTS])
    ids = []
    for i in [*META_IDS, *QIDS]:
        meta = {"ImportId": i}
        if zone and i in ("startDate", "endDate", "recordedDate"):
            meta["timeZone"] = zone
        ids.append(json.dumps(meta, separators=(",", ":")))
    w.writerow(ids)
    for i, (ext, mail, (last, first), ip, fin, prog, st, rec, ans, txt) in enumerate(rows):
        w.writerow([rec, rec, st, ip, prog, "120", fin, rec, f"R_{i:04d}abcdEFGH", last, first,
                    mail, ext, "47.3769", "8.5417", "anonymous", "ES", *ans, txt])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def write_mapping(path: Path, mapping: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The hand-written program loaded once: participants STU-0001..3 and exchange E1 exist."""
    return P.loaded_program(tmp_path_factory.mktemp("base"))


@pytest.fixture
def wh(base: Path, tmp_path: Path) -> Path:
    return P.warehouse_copy(base, tmp_path)


def answers(wh: Path, wave: str) -> dict[tuple[str, str], float]:
    return {(p, i): v for p, i, v in q(
        wh, "SELECT participant_id, item, value FROM responses WHERE wave = ?", [wave])}


def test_three_row_export_loads_its_finished_answers(wh: Path, tmp_path: Path):
    f = write_qualtrics(tmp_path / "qualtrics_post.csv")
    m = write_mapping(tmp_path / "m.yaml", {**MAPPING, "exchange": "E1"})
    res = P.run_etl("load", str(f), "--mapping", str(m), "--wave", "followup",
                    "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr  # row 5's icc_2 is out of range
    s1, s2 = pseudonym("STU-0001", P.TEST_KEY.encode()), pseudonym("STU-0002",
                                                                   P.TEST_KEY.encode())
    assert answers(wh, "followup") == {
        (s1, "icc_1"): 4.0, (s1, "icc_2"): 5.0, (s1, "icc_3"): 2.0, (s1, "icc_4"): 4.0,
        (s2, "icc_1"): 3.0, (s2, "icc_3"): 3.0, (s2, "icc_4"): 3.0}
    # RecordedDate in the JSON row's zone (Denver, MDT = UTC-6); the language from UserLanguage.
    assert q(wh, "SELECT DISTINCT strftime(submitted_at, '%Y-%m-%d %H:%M'), language FROM "
                 "responses WHERE wave = 'followup' AND participant_id = ?", [s1]) == [
        ("2026-06-20 14:00", "es")]
    # The reject names the file, the row as a spreadsheet counts it (3 header rows; the line
    # break inside a question text does not shift it), the item and the rule.
    assert q(wh, "SELECT row_number, column_name, rule FROM rejects WHERE file = ?",
             [str(f)]) == [(5, "icc_2", "range")]
    assert f"{f}: row 5, column icc_2: range" in res.stdout
    # Unfinished and preview responses are counted, not silently dropped.
    assert "1 unfinished response (Finished = 0 or Progress < 100) not loaded" in res.stdout
    assert "1 preview, test or spam response (Status) not loaded" in res.stdout
    msg = q(wh, "SELECT message FROM load_batches WHERE file = ?", [str(f)])[0][0]
    assert "1 unfinished response" in msg and "read as a qualtrics export" in msg
    assert "questions not mapped to an item (not loaded): Q2" in res.stdout


def test_identifiers_ip_addresses_and_locations_never_reach_the_warehouse(wh: Path,
                                                                          tmp_path: Path):
    f = write_qualtrics(tmp_path / "export.csv")
    m = write_mapping(tmp_path / "m.yaml", MAPPING)
    res = P.run_etl("load", str(f), "--mapping", str(m), "--wave", "followup", "--exchange",
                    "E1", "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    assert q(wh, "SELECT count(*) FROM responses WHERE wave = 'followup'") == [(7,)]
    blob = wh.read_bytes()
    for v in [*IDENTIFIERS, "佐藤", "sehr gut"]:
        assert v.encode() not in blob, v
        assert v.lower().encode() not in blob, v
        assert v not in res.stdout + res.stderr, v


def test_email_as_participant_is_lower_cased_and_other_metadata_is_not_read(tmp_path: Path):
    f = write_qualtrics(tmp_path / "export.csv")
    notes: list[str] = []
    t = qualtrics.read(f, {**MAPPING, "participant": "RecipientEmail"}, notes)
    assert t.column_names == ["_row", "participant_id", "submitted_at", "language",
                              "icc_1", "icc_2", "icc_3", "icc_4"]
    assert t.column("participant_id").to_pylist() == ["anna.schmidt@example.org",
                                                      "jose.perez@example.org"]
    assert t.column("_row").to_pylist() == [4, 5]
    assert any("IPAddress" in n and "LocationLatitude" in n for n in notes)


def test_legacy_two_row_export_with_bom_and_trailing_commas(wh: Path, tmp_path: Path):
    f = write_qualtrics(tmp_path / "legacy.csv", legacy=True)
    assert f.read_bytes().startswith(b"\xef\xbb\xbf")
    assert f.read_text(encoding="utf-8-sig").splitlines()[0].endswith(",")
    assert detect(f) is qualtrics
    # Legacy exports have no ImportId row: the mapping names export tags.
    tags = {"items": {"Q1_1": "icc_1", "Q1_2": "icc_2", "Q1_3": "icc_3", "Q1_4": "icc_4"}}
    m = write_mapping(tmp_path / "m.yaml", {**tags, "wave": "followup", "exchange": "E1",
                                            "timezone": "Europe/Berlin"})
    res = P.run_etl("load", str(f), "--mapping", str(m), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    s1 = pseudonym("STU-0001", P.TEST_KEY.encode())
    assert answers(wh, "followup")[(s1, "icc_2")] == 5.0
    assert len(answers(wh, "followup")) == 7
    # Legacy has no RecordedDate: EndDate, month-first, in the mapping's zone (CEST = UTC+2).
    assert q(wh, "SELECT DISTINCT strftime(submitted_at, '%Y-%m-%d %H:%M') FROM responses "
                 "WHERE wave = 'followup' AND participant_id = ?", [s1]) == [("2026-06-20 06:00",)]
    # Two header rows: the first response is row 3.
    assert q(wh, "SELECT row_number FROM rejects WHERE file = ?", [str(f)]) == [(4,)]
    assert "1 unfinished response" in res.stdout


def test_same_export_again_is_unchanged_and_another_wave_is_new_content(wh: Path,
                                                                         tmp_path: Path):
    f = write_qualtrics(tmp_path / "export.csv")
    m = write_mapping(tmp_path / "m.yaml", {**MAPPING, "exchange": "E1"})
    args = ["load", str(f), "--mapping", str(m), "--warehouse", str(wh)]
    assert P.run_etl(*args, "--wave", "followup").returncode == 3
    again = P.run_etl(*args, "--wave", "followup")
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout
    assert q(wh, "SELECT count(*) FROM responses WHERE wave = 'followup'") == [(7,)]
    other = P.run_etl(*args, "--wave", "followup_6m")
    assert other.returncode == 3, other.stdout
    assert q(wh, "SELECT count(*) FROM responses WHERE wave = 'followup_6m'") == [(7,)]


def test_missing_wave_or_unmapped_items_are_refused_in_one_line(wh: Path, tmp_path: Path):
    f = write_qualtrics(tmp_path / "export.csv")
    m = write_mapping(tmp_path / "m.yaml", {**MAPPING, "exchange": "E1"})
    before = q(wh, "SELECT value FROM meta WHERE key = 'data_version'")
    res = P.run_etl("load", str(f), "--mapping", str(m), "--warehouse", str(wh))
    assert res.returncode == 1
    assert "missing required column wave for responses" in res.stdout
    assert "give --wave" in res.stdout and "Traceback" not in res.stderr
    res = P.run_etl("load", str(f), "--wave", "post", "--exchange", "E1",
                    "--warehouse", str(wh))
    assert res.returncode == 1
    assert "no question is mapped to an instrument item" in res.stdout
    assert "python -m etl mapping new" in res.stdout
    assert q(wh, "SELECT count(*) FROM responses WHERE wave = 'followup'") == [(0,)]
    assert q(wh, "SELECT count(*) FROM load_batches WHERE status = 'loaded' AND file = ?",
             [str(f)]) == [(0,)]
    assert before  # the refusals are recorded, the program's rows are all still there
    assert q(wh, "SELECT count(*) FROM participants") == [(3,)]


def test_format_named_on_a_contract_file_is_refused_and_contract_files_still_load(
        wh: Path, tmp_path: Path):
    ev = P.write_csv(tmp_path / "events_extra.csv", [
        {"participant_id": "STU-0001", "exchange_id": "E1", "occurred_at": "2026-04-01 10:00",
         "activity": "message", "minutes": "2"}])
    assert detect(ev) is None
    res = P.run_etl("load", str(ev), "--format", "qualtrics", "--warehouse", str(wh))
    assert res.returncode == 1 and "is not a Qualtrics export" in res.stdout, res.stdout
    res = P.run_etl("load", str(ev), "--warehouse", str(wh))  # auto: the contract reader
    assert res.returncode == 0, res.stdout + res.stderr
    assert q(wh, "SELECT count(*) FROM events") == [(4,)]


def test_a_damaged_mapping_is_one_line(wh: Path, tmp_path: Path):
    f = write_qualtrics(tmp_path / "export.csv")
    m = tmp_path / "m.yaml"
    m.write_text("items: [QID7_1\n", encoding="utf-8")
    res = P.run_etl("load", str(f), "--mapping", str(m), "--warehouse", str(wh))
    assert res.returncode == 1
    assert res.stderr.strip().startswith(f"error: {m}: refused: mapping is not valid YAML")
    assert len(res.stderr.strip().splitlines()) == 1


# -- the registry and a round trip ------------------------------------------------------------

def test_registry_tolerates_a_missing_reader_and_leaves_contract_files_alone(tmp_path: Path,
                                                                              monkeypatch):
    from etl import sources

    monkeypatch.setattr(sources, "MODULES", ("qualtrics", "no_such_reader"))
    assert list(sources.available()) == ["qualtrics"]
    assert detect(write_qualtrics(tmp_path / "x.csv")) is qualtrics
    assert detect(P.write_csv(tmp_path / "responses.csv", P.RESPONSES)) is None
    with pytest.raises(Exception, match="--format no_such_reader: no reader"):
        sources.by_name("no_such_reader", tmp_path / "x.csv")


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
_row = st.tuples(
    st.from_regex(r"[A-Za-z0-9_.@-]{1,12}", fullmatch=True),  # ExternalReference
    st.lists(st.sampled_from(["1", "2", "3", "4", "5", ""]), min_size=4, max_size=4),
    _text,  # free text, may hold commas, quotes and line breaks
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=8), legacy=st.booleans())
def test_random_rows_written_as_an_export_read_back_the_same(tmp_path: Path, rows, legacy):
    f = tmp_path / f"r{len(rows)}{legacy}.csv"
    full = [(ext, "", ("", ""), "", "1", "100", "0", when.strftime("%Y-%m-%d %H:%M:00"),
             ans, txt) for ext, ans, txt, when in rows]
    write_qualtrics(f, full, legacy=legacy, zone=None)
    items = {f"Q1_{i}": f"icc_{i}" for i in range(1, 5)}
    t = qualtrics.read(f, {"items": items}, [])
    first = 3 if legacy else 4
    assert t.column("_row").to_pylist() == list(range(first, first + len(rows)))
    assert t.column("participant_id").to_pylist() == [r[0] for r in rows]
    for i in range(1, 5):
        assert t.column(f"icc_{i}").to_pylist() == [r[1][i - 1] or None for r in rows]
    assert t.column("submitted_at").to_pylist() == [
        r[3].strftime("%Y-%m-%dT%H:%M:00") for r in rows]


def test_utf16_tab_separated_export_reads_as_the_csv_does(tmp_path: Path):
    """Qualtrics' "TSV" download is UTF-16 LE with a byte order mark and tabs."""
    f = write_qualtrics(tmp_path / "export.csv")
    rows = list(csv.reader(io.StringIO(f.read_text(encoding="utf-8"))))
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t", lineterminator="\r\n").writerows(rows)
    tsv = tmp_path / "export.tsv"
    tsv.write_bytes(b"\xff\xfe" + buf.getvalue().encode("utf-16-le"))
    assert detect(tsv) is qualtrics
    notes: list[str] = []
    assert qualtrics.read(tsv, MAPPING, notes) == qualtrics.read(f, MAPPING, [])
    assert "read as UTF-16 (byte order mark)" in notes
    assert qualtrics.describe(tsv)["separator"] == "\t"


def test_a_mapping_naming_an_unknown_item_is_refused_before_anything_loads(wh: Path,
                                                                           tmp_path: Path):
    f = write_qualtrics(tmp_path / "export.csv")
    m = write_mapping(tmp_path / "m.yaml", {"items": {"QID7_1": "icc_1", "QID7_2": "icc_99"},
                                            "wave": "followup", "exchange": "E1"})
    res = P.run_etl("load", str(f), "--mapping", str(m), "--warehouse", str(wh))
    assert res.returncode == 1
    assert f"{f}: refused: the mapping names item icc_99, in no instrument" in res.stdout
    assert q(wh, "SELECT count(*) FROM responses WHERE wave = 'followup'") == [(0,)]


def test_what_a_reader_trips_over_is_one_refusal_not_a_traceback(tmp_path: Path, monkeypatch):
    import duckdb

    from etl import sources

    def broken(path, mapping, notes):
        raise duckdb.ConversionException("Conversion Error: could not convert\nmore detail")

    monkeypatch.setattr(qualtrics, "read", broken)
    with duckdb.connect() as con, pytest.raises(sources.RefusedFile) as e:
        sources.stage(con, qualtrics, tmp_path / "x.csv", {}, {}, [])
    assert e.value.problem == ("cannot be read as a qualtrics export (Conversion Error: could "
                               "not convert)")


@pytest.mark.parametrize(("recorded", "mapping", "zone", "expected"), [
    ("2026-06-20T08:00:00Z", {}, "America/Denver", "2026-06-20T08:00:00Z"),  # offset kept
    ("2026-06-20 08:00:00", {"timezone": "Asia/Tokyo"}, None, "2026-06-19T23:00:00+00:00"),
    ("2026-06-20 08:00:00", {}, None, "2026-06-20T08:00:00"),  # naive: the institution's zone
    ("06/20/2026 08:00", {"timezone": "UTC"}, None, "2026-06-20T08:00:00+00:00"),
    ("20/06/2026 08:00", {"timezone": "UTC", "dayfirst": True}, None,
     "2026-06-20T08:00:00+00:00"),
    ("not a date", {}, None, "not a date"),  # passed on: the loader rejects it with its row
])
def test_recorded_dates_with_offsets_zones_and_day_first(tmp_path: Path, recorded, mapping,
                                                         zone, expected):
    row = list(RESPONSES[0])
    row[7] = recorded
    f = write_qualtrics(tmp_path / "export.csv", [tuple(row)], zone=zone)
    t = qualtrics.read(f, {**MAPPING, **mapping}, [])
    assert t.column("submitted_at").to_pylist() == [expected]


# -- choice text ("Export choice text" instead of numeric values) ---------------------------------

# Qualtrics' own labels for a five-point agreement scale, as the export writes them.
SCALE = {"Strongly disagree": 1, "Disagree": 2, "Neither agree nor disagree": 3, "Agree": 4,
         "Strongly agree": 5}
# Row 4 (STU-0001) writes one label in another case with a trailing space; row 5 (STU-0002)
# holds "Somewhat agree", a label the mapping's table does not name; row 6 is unfinished.
CHOICE_TEXT = [
    (*RESPONSES[0][:8], ["Strongly agree", "Agree", "Disagree", "strongly AGREE "], "sehr gut"),
    (*RESPONSES[1][:8], ["Neither agree nor disagree", "Somewhat agree", "Agree",
                         "Strongly disagree"], "nada"),
    (*RESPONSES[2][:8], ["Agree", "", "", ""], ""),
]


def test_choice_text_without_an_answers_table_is_rejected_and_the_note_says_what_to_do(
        tmp_path: Path):
    f = write_qualtrics(tmp_path / "choice.csv", CHOICE_TEXT)
    notes: list[str] = []
    t = qualtrics.read(f, MAPPING, notes)
    # Passed on as written: the loader rejects each one as not a number, naming it.
    assert t.column("icc_1").to_pylist() == ["Strongly agree", "Neither agree nor disagree"]
    note = next(n for n in notes if "are text" in n)
    assert note.startswith("8 answer(s) are text not numbers (rejected): 'Strongly agree' "
                           "(icc_1, icc_4: 2, first in row 4)")
    assert "'Somewhat agree' (icc_2: 1, first in row 5)" in note and "answers:" in note


def test_the_answers_table_gives_choice_text_its_values_and_names_a_label_it_lacks(
        wh: Path, tmp_path: Path):
    f = write_qualtrics(tmp_path / "qualtrics_choice.csv", CHOICE_TEXT)
    m = write_mapping(tmp_path / "m.yaml", {**MAPPING, "exchange": "E1", "answers": SCALE})
    notes: list[str] = []
    t = qualtrics.read(f, {**MAPPING, "answers": SCALE}, notes)
    assert [t.column(f"icc_{i}").to_pylist() for i in range(1, 5)] == [
        ["5", "3"], ["4", "Somewhat agree"], ["2", "4"], ["5", "1"]]
    assert any(n.startswith("1 answer(s) are text that the mapping's answers do not name "
                            "(rejected): 'Somewhat agree' (icc_2: 1, first in row 5)")
               for n in notes)
    res = P.run_etl("load", str(f), "--mapping", str(m), "--wave", "followup",
                    "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr  # the one unnamed label is rejected
    s1, s2 = (pseudonym(p, P.TEST_KEY.encode()) for p in ("STU-0001", "STU-0002"))
    assert answers(wh, "followup") == {
        (s1, "icc_1"): 5.0, (s1, "icc_2"): 4.0, (s1, "icc_3"): 2.0, (s1, "icc_4"): 5.0,
        (s2, "icc_1"): 3.0, (s2, "icc_3"): 4.0, (s2, "icc_4"): 1.0}
    # Rejected where it stands: the file, the row as a spreadsheet counts it, the item, the label.
    assert q(wh, "SELECT row_number, column_name, rule, value FROM rejects WHERE file = ?",
             [str(f)]) == [(5, "icc_2", "number", "Somewhat agree")]
    assert f"{f}: row 5, column icc_2: number" in res.stdout
    assert "'Somewhat agree'" in res.stdout


def test_mapping_new_lists_the_choice_labels_and_loads_once_they_are_filled(
        wh: Path, tmp_path: Path):
    import yaml

    f = write_qualtrics(tmp_path / "qualtrics_choice.csv", CHOICE_TEXT)
    res = P.run_etl("mapping", "new", str(f))
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "qualtrics_choice.mapping.yaml"
    text = out.read_text(encoding="utf-8")
    m = yaml.safe_load(text)
    # Every label once (case aside), in order of first use; never the free text of Q2.
    assert list(m["answers"]) == ["Strongly agree", "Agree", "Disagree",
                                  "Neither agree nor disagree", "Somewhat agree",
                                  "Strongly disagree"]
    assert set(m["answers"].values()) == {""}
    assert "sehr gut" not in text and "nada" not in text
    # Left as written, an empty value names no label: those answers are rejected, not lost.
    m["items"] = MAPPING["items"]
    m["exchange"] = "E1"
    m["answers"] = {**{k: SCALE.get(k, "") for k in m["answers"]}, "Somewhat agree": 4}
    write_mapping(out, m)
    res = P.run_etl("load", str(f), "--mapping", str(out), "--wave", "followup",
                    "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    s2 = pseudonym("STU-0002", P.TEST_KEY.encode())
    assert answers(wh, "followup")[(s2, "icc_2")] == 4.0
    assert len(answers(wh, "followup")) == 8


def test_a_label_left_empty_in_the_answers_table_is_rejected_not_dropped(tmp_path: Path):
    f = write_qualtrics(tmp_path / "choice.csv", CHOICE_TEXT)
    t = qualtrics.read(f, {**MAPPING, "answers": {**SCALE, "Agree": ""}}, [])
    assert t.column("icc_2").to_pylist() == ["Agree", "Somewhat agree"]


def test_an_answers_entry_that_is_no_table_is_refused_in_one_line(tmp_path: Path):
    f = write_qualtrics(tmp_path / "choice.csv", CHOICE_TEXT)
    with pytest.raises(RefusedFile, match="answers must be a table"):
        qualtrics.read(f, {**MAPPING, "answers": ["Agree"]}, [])
