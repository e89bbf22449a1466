"""Survey tools' exports read as the contract's wide responses: LimeSurvey, Google Forms and
KoboToolbox.

Each fixture is written here in the tool's real shape (separator, quoting, byte order mark,
header spelling, metadata columns); `read()` is called directly and the rows and values of the
table it returns are checked, with the notes it leaves for the report. Property tests write
random answers in each format and read back the same rows; fuzzing checks that a truncated,
mangled or wrongly encoded file is refused in one line, never with another exception.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from etl.errors import RefusedFile
from etl.sources import gforms, kobo, limesurvey

CODES = {f"A{i}": i for i in range(1, 6)}
LS_META = ["id", "submitdate", "lastpage", "startlanguage", "seed", "token", "startdate",
           "datestamp", "ipaddr", "refurl"]


def _csv(path: Path, rows: list[list[str]], *, delimiter: str = ",",
         quoting: int = csv.QUOTE_MINIMAL, encoding: str = "utf-8",
         lineterminator: str = "\r\n") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        csv.writer(f, delimiter=delimiter, quoting=quoting,
                   lineterminator=lineterminator).writerows(rows)
    return path


def _limesurvey(path: Path, rows: list[list[str]]) -> Path:
    """As LimeSurvey writes it: `;`, every field quoted, UTF-8 with a byte order mark."""
    return _csv(path, rows, delimiter=";", quoting=csv.QUOTE_ALL, encoding="utf-8-sig",
                lineterminator="\n")


def _read(mod, path: Path, mapping: dict) -> tuple[list[dict], list[str]]:
    notes: list[str] = []
    table = mod.read(path, mapping, notes)
    assert table.column_names[0] == "participant_id" and "submitted_at" in table.column_names
    # The wave and exchange of a whole file are the registry's to fill (--wave, --exchange or
    # the mapping); a reader writes them only from a column of the file.
    assert "wave" not in table.column_names or mapping.get("wave") not in ("pre", "post")
    assert table.schema.field("_row").type == "int64"
    return table.to_pylist(), notes


def _note(notes: list[str], words: str) -> str:
    hits = [n for n in notes if words in n]
    assert hits, f"no note with {words!r} in {notes}"
    return hits[0]


# -- LimeSurvey ----------------------------------------------------------------------------------

def _ls_row(id_, submit, token, lang, answers):
    return [id_, submit, "3", lang, "42", token, "2024-03-05 09:00:00", submit or "2024-03-05",
            "10.1.2.3", "https://example.org/"] + answers


def test_limesurvey_code_headers_sub_questions_and_answer_codes(tmp_path):
    """`Q[SQ001]` sub-question columns become items, A1..A5 become 1..5, the token the
    participant (e-mails lower-cased), startlanguage the language; metadata and timings are
    dropped with a note."""
    header = LS_META + ["ICC[SQ001]", "ICC[SQ002]", "ICC[SQ003]", "Other", "interviewtime"]
    f = _limesurvey(tmp_path / "results-survey123.csv", [
        header,
        _ls_row("1", "2024-03-05 10:11:12", "tokA", "en", ["A1", "A5", "", "free text", "61"]),
        _ls_row("2", "2024-03-06 08:00:00", "Ana@Example.ORG", "es", ["A4", "A2", "A3", "", ""]),
    ])
    head = f.read_text(encoding="utf-8")
    assert limesurvey.sniff(f, head) and not gforms.sniff(f, head) and not kobo.sniff(f, head)
    rows, notes = _read(limesurvey, f, {
        "items": {"ICC[SQ001]": "icc_1", "ICC[SQ002]": "icc_2", "ICC_SQ003": "icc_3"},
        "answers": CODES, "wave": "pre", "exchange_id": "EX1"})
    assert rows == [
        {"participant_id": "tokA", "submitted_at": "2024-03-05T10:11:12", "language": "en",
         "icc_1": "1", "icc_2": "5", "icc_3": None, "_row": 2},
        {"participant_id": "ana@example.org", "submitted_at": "2024-03-06T08:00:00",
         "language": "es", "icc_1": "4", "icc_2": "2", "icc_3": "3", "_row": 3},
    ]
    assert "'ipaddr'" in _note(notes, "metadata columns dropped")
    assert "'Other'" in _note(notes, "not mapped to an item")
    assert "'interviewtime'" in _note(notes, "metadata columns dropped")


def test_limesurvey_sgqa_headers_and_full_metadata_labels(tmp_path):
    """Older exports name questions by SGQA (`12345X6X78SQ001`) and metadata by label."""
    header = ["Response ID", "Date submitted", "Last page", "Start language", "Access code",
              "12345X6X78SQ001", "12345X6X78SQ002", "12345X6X78time"]
    f = _limesurvey(tmp_path / "export.csv", [
        header, ["7", "2024-05-01 12:00:00", "2", "fr", "T7", "A2", "A3", "12.5"]])
    assert limesurvey.sniff(f, f.read_text(encoding="utf-8"))
    rows, notes = _read(limesurvey, f, {
        "items": {"12345X6X78SQ001": "icc_1", "12345x6x78sq002": "icc_2"}, "answers": CODES,
        "wave": "post", "exchange_id": "EX1", "timezone": "Europe/Paris"})
    assert rows == [{"participant_id": "T7", "submitted_at": "2024-05-01T10:00:00+00:00",
                     "language": "fr",
                     "icc_1": "2", "icc_2": "3", "_row": 2}]
    assert "timing" in " ".join(notes)


def test_limesurvey_question_code_and_text_headers(tmp_path):
    """"Question code & question text" headers: the code before `. ` is what the mapping names."""
    header = ["id", "submitdate", "lastpage", "startlanguage", "token",
              "ICC[SQ001]. How much do you agree? [I enjoy learning]"]
    f = _limesurvey(tmp_path / "export.csv", [header, ["1", "2024-01-02 03:04:05", "1", "en", "T",
                                                       "A3"]])
    rows, _ = _read(limesurvey, f, {"items": {"ICC[SQ001]": "icc_1"}, "answers": CODES,
                                    "wave": "pre", "exchange_id": "E"})
    assert [r["icc_1"] for r in rows] == ["3"]


def test_limesurvey_incomplete_responses_are_reported_not_loaded(tmp_path):
    header = LS_META + ["ICC[SQ001]"]
    f = _limesurvey(tmp_path / "r.csv", [
        header,
        _ls_row("1", "2024-03-05 10:11:12", "a", "en", ["A1"]),
        _ls_row("2", "", "b", "en", ["A2"]),
        _ls_row("3", "", "c", "en", [""]),
        _ls_row("4", "2024-03-05 11:00:00", "d", "en", ["A4"]),
    ])
    rows, notes = _read(limesurvey, f, {"items": {"ICC[SQ001]": "icc_1"}, "answers": CODES,
                                        "wave": "pre", "exchange_id": "E"})
    assert [(r["participant_id"], r["_row"]) for r in rows] == [("a", 2), ("d", 5)]
    assert _note(notes, "incomplete") == (
        "2 incomplete response(s) (no submitdate) not loaded: row(s) 3, 4")


def test_limesurvey_without_date_stamping_has_no_submission_time(tmp_path):
    """`1980-01-01 00:00:00` is no date: left empty with a note, or the mapping's date."""
    header = LS_META + ["ICC[SQ001]"]
    f = _limesurvey(tmp_path / "r.csv", [
        header, _ls_row("1", "1980-01-01 00:00:00", "a", "en", ["A1"])])
    mapping = {"items": {"ICC[SQ001]": "icc_1"}, "answers": CODES, "wave": "pre",
               "exchange_id": "E"}
    rows, notes = _read(limesurvey, f, mapping)
    assert rows[0]["submitted_at"] is None
    assert "no submission time" in _note(notes, "1980-01-01")
    rows, notes = _read(limesurvey, f, {**mapping, "submitted_at": "2024-06-30"})
    assert rows[0]["submitted_at"] == "2024-06-30"


def test_limesurvey_refuses_unknown_items_and_a_file_without_participants(tmp_path):
    f = _limesurvey(tmp_path / "r.csv", [["id", "submitdate", "lastpage", "startlanguage",
                                          "ICC[SQ001]"], ["1", "2024-01-01 00:00:00", "1", "en",
                                                          "A1"]])
    with pytest.raises(RefusedFile, match="no participant column"):
        limesurvey.read(f, {"items": {"ICC[SQ001]": "icc_1"}}, [])
    rows, _ = _read(limesurvey, f, {"items": {"ICC[SQ001]": "icc_1"}, "participant": "id"})
    assert rows[0]["participant_id"] == "1"
    with pytest.raises(RefusedFile, match="'nope_9' that no instrument"):
        limesurvey.read(f, {"items": {"ICC[SQ001]": "nope_9"}, "participant": "id"}, [])
    with pytest.raises(RefusedFile, match="no column maps to an instrument item"):
        limesurvey.read(f, {"participant": "id"}, [])


# -- Google Forms --------------------------------------------------------------------------------

GF_HEADER = ["Timestamp", "Email Address",
             "How much do you agree? [I enjoy learning how others see things]",
             "How much do you agree? [I am curious about customs]",
             "Which activities did you join?", "Score"]


def test_gforms_download_with_gmt_offsets_grid_rows_and_checkboxes(tmp_path):
    """The form's own download: `2024/03/05 10:11:12 AM GMT+1`; grid rows map by their full
    header; answer labels map to values; a checkbox cell is mapped part by part."""
    f = _csv(tmp_path / "Form (Responses).csv", [
        GF_HEADER,
        ["2024/03/05 10:11:12 AM GMT+1", "Ann@X.org", "Strongly agree", "Agree",
         "Chat, Video call", "3 / 5"],
        ["2024/03/05 1:02:03 PM GMT-5:30", "bob@x.org", "Disagree", "", "Chat", ""],
        ["2024/12/31 12:00:00 AM GMT", "cy@x.org", "4", "Neutral", "Something, else", ""],
    ])
    head = f.read_text(encoding="utf-8")
    assert gforms.sniff(f, head) and not limesurvey.sniff(f, head) and not kobo.sniff(f, head)
    rows, notes = _read(gforms, f, {
        "items": {"how much do you agree?   [I enjoy learning how others see things]": "icc_1",
                  "How much do you agree? [I am curious about customs]": "icc_2",
                  "Which activities did you join?": "icc_3"},
        "answers": {"Strongly disagree": 1, "Disagree": 2, "Neutral": 3, "Agree": 4,
                    "Strongly agree": 5, "Chat": 1, "Video call": 2},
        "wave": "post", "exchange_id": "EX1"})
    assert [(r["participant_id"], r["submitted_at"], r["icc_1"], r["icc_2"], r["icc_3"], r["_row"])
            for r in rows] == [
        ("ann@x.org", "2024-03-05T10:11:12+01:00", "5", "4", "1, 2", 2),
        ("bob@x.org", "2024-03-05T13:02:03-05:30", "2", None, "1", 3),
        ("cy@x.org", "2024-12-31T00:00:00+00:00", "4", "3", "Something, else", 4),
    ]
    assert "'Score'" in _note(notes, "quiz columns dropped")


@pytest.mark.parametrize("stamps, dayfirst, expected", [
    (["05/03/2024 10:11:12", "25/03/2024 08:00:00"], None, ["2024-03-05", "2024-03-25"]),
    (["3/5/2024 10:11:12", "3/25/2024 8:00:00"], None, ["2024-03-05", "2024-03-25"]),
    (["05/03/2024 10:11:12", "04/03/2024 08:00:00"], True, ["2024-03-05", "2024-03-04"]),
    (["05/03/2024 10:11:12", "04/03/2024 08:00:00"], False, ["2024-05-03", "2024-04-03"]),
    (["05.03.2024 10:11:12", "25.03.2024 08:00:00"], None, ["2024-03-05", "2024-03-25"]),
])
def test_gforms_sheet_dates_day_or_month_first(tmp_path, stamps, dayfirst, expected):
    f = _csv(tmp_path / "sheet.csv", [["Timestamp", "Email Address", "icc_1"]]
             + [[s, f"p{i}@x.org", "3"] for i, s in enumerate(stamps)])
    mapping = {"wave": "pre", "exchange_id": "E"}
    if dayfirst is not None:
        mapping["dayfirst"] = dayfirst
    rows, notes = _read(gforms, f, mapping)
    assert [r["submitted_at"][:10] for r in rows] == expected
    assert rows[0]["submitted_at"][10:] in ("T10:11:12",)
    if dayfirst is None:
        assert _note(notes, "dates read")


def test_gforms_spanish_download_and_repeated_submissions(tmp_path):
    """`a. m.`/`p. m.` of a Spanish-language download; a participant who sent the form twice in
    one wave is noted (the loader keeps the first)."""
    f = _csv(tmp_path / "s.csv", [["Marca temporal", "Dirección de correo electrónico", "icc_1"],
                                  ["2024/03/05 1:02:03 p. m. GMT+1", "a@x.org", "2"],
                                  ["2024/03/05 11:00:00 a. m. GMT+1", "b@x.org", "3"],
                                  ["2024/03/06 9:00:00 a. m. GMT+1", "A@x.org", "4"]])
    rows, notes = _read(gforms, f, {"wave": "pre", "exchange_id": "E"})
    assert [r["submitted_at"] for r in rows] == [
        "2024-03-05T13:02:03+01:00", "2024-03-05T11:00:00+01:00", "2024-03-06T09:00:00+01:00"]
    assert _note(notes, "more than once").startswith("1 participant(s)")


def test_mapping_of_the_wrong_shape_is_refused(tmp_path):
    f = _csv(tmp_path / "s.csv", [["Timestamp", "Email Address", "icc_1"],
                                  ["2024/03/05 10:11:12 AM GMT+1", "a@x.org", "2"]])
    with pytest.raises(RefusedFile, match="answers must be a table"):
        gforms.read(f, {"answers": ["A1", "A2"]}, [])
    with pytest.raises(RefusedFile, match="items must be a table"):
        gforms.read(f, {"items": "icc_1"}, [])


def test_gforms_ambiguous_dates_are_refused_naming_the_flags(tmp_path):
    f = _csv(tmp_path / "sheet.csv", [["Timestamp", "Email Address", "icc_1"],
                                      ["05/03/2024 10:11:12", "a@x.org", "3"],
                                      ["04/03/2024 10:11:12", "b@x.org", "3"]])
    with pytest.raises(RefusedFile) as e:
        gforms.read(f, {}, [])
    assert "--dayfirst" in str(e.value) and "--monthfirst" in str(e.value)
    assert "\n" not in str(e.value)


def test_gforms_local_times_in_the_mapping_zone_and_localised_timestamp(tmp_path):
    f = _csv(tmp_path / "s.csv", [["Marca temporal", "Correo", "icc_1"],
                                  ["2024/07/01 10:00:00", "A@x.org", "2"]])
    assert gforms.sniff(f, f.read_text(encoding="utf-8"))
    rows, _ = _read(gforms, f, {"participant": "correo", "timezone": "Europe/Madrid",
                                "wave": "pre", "exchange_id": "E"})
    assert rows[0]["submitted_at"] == "2024-07-01T08:00:00+00:00"
    assert rows[0]["participant_id"] == "a@x.org"
    with pytest.raises(RefusedFile, match="not an IANA time zone"):
        gforms.read(f, {"participant": "correo", "timezone": "Mars/Base"}, [])


# -- KoboToolbox ---------------------------------------------------------------------------------

KOBO_HEADER = ["start", "end", "today", "deviceid", "participant_id", "group_a/q1",
               "group_a/likes", "group_a/likes/red", "group_a/likes/blue", "group_b/q3",
               "group_b/multi/x", "group_b/multi/y", "meta/instanceID", "_id", "_uuid",
               "_submission_time", "_validation_status", "_notes", "_status", "_submitted_by",
               "__version__", "_tags", "_index"]


def _kobo_row(pid, end, sub, q1, likes, q3, multi, i):
    red, blue = ("1" if "red" in likes.split() else "0"), ("1" if "blue" in likes.split() else "0")
    return ["2024-03-05T10:00:00.000+01:00", end, "2024-03-05", "ee:1", pid, q1, likes, red, blue,
            q3, multi[0], multi[1], f"uuid:{i}", str(100 + i), f"u-{i}", sub, "", "",
            "submitted_via_web", "enum1", "vXyZ", "", str(i)]


def test_kobo_csv_with_groups_select_multiple_and_metadata(tmp_path):
    """`;`-separated; group paths map by path or last part; `end` (device time with offset) is
    the submission time, else `_submission_time` (UTC); a select-multiple with only 0/1 columns is
    rebuilt as space-joined options; Kobo's metadata is dropped."""
    f = _csv(tmp_path / "kobo.csv", [
        KOBO_HEADER,
        _kobo_row("P1", "2024-03-05T10:11:12.000+01:00", "2024-03-05T09:20:00", "4", "red blue",
                  "3", ("1", "0"), 1),
        _kobo_row("P2", "", "2024-03-06T09:20:00.123", "2", "", "5", ("1", "1"), 2),
    ], delimiter=";")
    head = f.read_text(encoding="utf-8")
    assert kobo.sniff(f, head) and not limesurvey.sniff(f, head) and not gforms.sniff(f, head)
    rows, notes = _read(kobo, f, {
        "items": {"q1": "icc_1", "group_b/q3": "icc_2", "multi": "icc_3",
                  "group_a/likes": "icc_4"}, "wave": "pre", "exchange_id": "EX1"})
    assert [(r["participant_id"], r["submitted_at"], r["icc_1"], r["icc_2"], r["icc_3"],
             r["icc_4"], r["_row"]) for r in rows] == [
        ("P1", "2024-03-05T10:11:12+01:00", "4", "3", "x", "red blue", 2),
        ("P2", "2024-03-06T09:20:00+00:00", "2", "5", "x y", None, 3),
    ]
    meta = _note(notes, "metadata columns dropped")
    assert "'_uuid'" in meta and "'meta/instanceID'" in meta and "'deviceid'" in meta
    assert "'end'" not in meta and "from end (the device's clock" in _note(notes, "submitted_at")
    assert "'group_a/likes'" in _note(notes, "select-multiple 0/1 columns dropped")


def test_kobo_xlsx_reads_the_main_sheet_and_notes_repeat_groups(tmp_path):
    wb = Workbook()
    main = wb.active
    main.title = "Exchange survey"
    main.append(["end", "participant", "grp/icc_1", "_id", "_uuid", "_submission_time",
                 "_index"])
    main.append(["2024-03-05T10:11:12+02:00", "P1", "5", "1", "u1", "2024-03-05T08:20:00", "1"])
    main.append([None, "P2", "3", "2", "u2", "2024-03-06T08:20:00", "2"])
    main.append([None, "P3", "4", "3", "u3", 45356.5, "3"])  # an Excel date serial
    rep = wb.create_sheet("visits")
    rep.append(["place", "_index", "_parent_index", "_parent_table_name"])
    rep.append(["Lyon", "1", "1", "Exchange survey"])
    f = tmp_path / "kobo.xlsx"
    wb.save(f)
    assert kobo.sniff(f, f.read_bytes()[:4096].decode("latin-1"))
    rows, notes = _read(kobo, f, {"participant": "participant", "wave": "post",
                                  "exchange_id": "E"})
    assert [(r["participant_id"], r["submitted_at"], r["icc_1"], r["_row"]) for r in rows] == [
        ("P1", "2024-03-05T10:11:12+02:00", "5", 2),
        ("P2", "2024-03-06T08:20:00+00:00", "3", 3),
        ("P3", "2024-03-05T12:00:00+00:00", "4", 4),
    ]
    assert "'visits'" in _note(notes, "repeat groups not read")


def test_kobo_mapping_wave_and_exchange_columns(tmp_path):
    """A mapping's wave or exchange that names a column reads it (a column called wave or
    exchange_id is read anyway); a value for the whole file is left to the registry."""
    f = _csv(tmp_path / "k.csv", [["participant_id", "round", "icc_1", "_uuid",
                                   "_submission_time", "exchange_id"],
                                  ["P1", "pre", "1", "u", "2024-01-01T00:00:00", "E1"],
                                  ["P2", "post", "2", "v", "2024-02-01T00:00:00", "E2"]])
    rows, notes = _read(kobo, f, {"wave": "round", "exchange": "x"})
    assert [(r["wave"], r["exchange_id"], r["icc_1"]) for r in rows] == [
        ("pre", "E1", "1"), ("post", "E2", "2")]
    assert not [n for n in notes if "not mapped" in n]  # round and exchange_id are not questions
    rows, _ = _read(kobo, f, {"wave": "pre"})
    assert "wave" not in rows[0] and rows[0]["exchange_id"] == "E1"


def test_kobo_submissions_not_approved_are_noted(tmp_path):
    f = _csv(tmp_path / "k.csv", [["participant_id", "icc_1", "_uuid", "_submission_time",
                                   "_validation_status"],
                                  ["P1", "1", "u", "2024-01-01T00:00:00",
                                   "validation_status_not_approved"],
                                  ["P2", "2", "v", "2024-02-01T00:00:00",
                                   "validation_status_approved"]], delimiter=";")
    rows, notes = _read(kobo, f, {"wave": "pre", "exchange_id": "x"})
    assert len(rows) == 2
    assert _note(notes, "not approved").startswith("1 submission(s)")


# -- property tests ------------------------------------------------------------------------------

ANSWER = st.one_of(st.none(), st.integers(1, 5))
IDS = st.text(st.sampled_from(list("abcXYZ019_-.éñ")), min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s not in ("N/A", "NA", "-", "NULL"))
INSTANTS = st.datetimes(min_value=dt.datetime(2001, 1, 1),
                        max_value=dt.datetime(2049, 12, 31)).map(
    lambda d: d.replace(microsecond=0))
ROWS = st.lists(st.tuples(IDS, INSTANTS, st.lists(ANSWER, min_size=3, max_size=3)),
                min_size=1, max_size=12, unique_by=lambda r: r[0])
PROP = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ITEMS = ["icc_1", "icc_2", "icc_3"]


def _expected(rows, fmt_time):
    return [(pid, fmt_time(t), *[None if a is None else str(a) for a in ans])
            for pid, t, ans in rows]


def _got(table_rows):
    return [(r["participant_id"], r["submitted_at"], *[r[i] for i in ITEMS]) for r in table_rows]


@PROP
@given(rows=ROWS)
def test_limesurvey_random_answers_read_back(rows):
    with tempfile.TemporaryDirectory() as tmp:
        out = [LS_META + ["ICC[SQ001]", "ICC[SQ002]", "ICC[SQ003]"]]
        for n, (pid, t, ans) in enumerate(rows, start=1):
            out.append(_ls_row(str(n), t.strftime("%Y-%m-%d %H:%M:%S"), pid, "en",
                               ["" if a is None else f"A{a}" for a in ans]))
        f = _limesurvey(Path(tmp) / "r.csv", out)
        got, _ = _read(limesurvey, f, {"items": {f"ICC[SQ00{i}]": f"icc_{i}" for i in (1, 2, 3)},
                                       "answers": CODES, "wave": "pre", "exchange_id": "E"})
    assert _got(got) == _expected(rows, lambda t: t.strftime("%Y-%m-%dT%H:%M:%S"))


@PROP
@given(rows=ROWS, style=st.sampled_from(["download", "dayfirst", "monthfirst"]),
       offset=st.integers(-12, 14))
def test_gforms_random_answers_read_back(rows, style, offset):
    labels = {1: "Strongly disagree", 2: "Disagree", 3: "Neutral", 4: "Agree", 5: "Strongly agree"}

    def written(t):
        if style == "download":
            return (t.strftime("%Y/%m/%d ") + t.strftime("%I:%M:%S %p").lstrip("0")
                    + (f" GMT{offset:+d}" if offset else " GMT"))
        return t.strftime("%d/%m/%Y %H:%M:%S" if style == "dayfirst" else "%m/%d/%Y %H:%M:%S")

    with tempfile.TemporaryDirectory() as tmp:
        out = [["Timestamp", "Email Address"] + [f"Rate [Row {i}]" for i in (1, 2, 3)]]
        out += [[written(t), pid] + ["" if a is None else labels[a] for a in ans]
                for pid, t, ans in rows]
        f = _csv(Path(tmp) / "g.csv", out)
        mapping = {"items": {f"Rate [Row {i}]": f"icc_{i}" for i in (1, 2, 3)},
                   "answers": {v: k for k, v in labels.items()}, "wave": "pre",
                   "exchange_id": "E"}
        if style != "download":
            mapping["dayfirst"] = style == "dayfirst"
        got, _ = _read(gforms, f, mapping)
    suffix = "" if style != "download" else (
        f"{'+' if offset >= 0 else '-'}{abs(offset):02d}:00")
    assert _got(got) == _expected(rows, lambda t: t.strftime("%Y-%m-%dT%H:%M:%S") + suffix)


@PROP
@given(rows=ROWS, delimiter=st.sampled_from([";", ","]))
def test_kobo_random_answers_read_back(rows, delimiter):
    with tempfile.TemporaryDirectory() as tmp:
        out = [["start", "end", "participant_id", "grp/icc_1", "grp/icc_2", "grp/sub/icc_3",
                "_id", "_uuid", "_submission_time", "_index"]]
        out += [["", "", pid] + ["" if a is None else str(a) for a in ans]
                + [str(n), f"u{n}", t.strftime("%Y-%m-%dT%H:%M:%S"), str(n)]
                for n, (pid, t, ans) in enumerate(rows, start=1)]
        f = _csv(Path(tmp) / "k.csv", out, delimiter=delimiter)
        got, _ = _read(kobo, f, {"wave": "pre", "exchange_id": "E"})
    assert _got(got) == _expected(rows, lambda t: t.strftime("%Y-%m-%dT%H:%M:%S+00:00"))


# -- fuzzing -------------------------------------------------------------------------------------

def _good_files(folder: Path) -> dict:
    ls = _limesurvey(folder / "ls.csv", [LS_META + ["ICC[SQ001]", "ICC[SQ002]"]] + [
        _ls_row(str(i), f"2024-03-0{i} 10:11:12", f"t{i}", "en", [f"A{i}", "A2"])
        for i in range(1, 6)])
    gf = _csv(folder / "gf.csv", [["Timestamp", "Email Address", "icc_1", "icc_2"]] + [
        [f"2024/03/0{i} 10:11:12 AM GMT+1", f"p{i}@x.org", str(i), "Chat, Video"]
        for i in range(1, 6)])
    kb = _csv(folder / "kb.csv", [["end", "participant_id", "g/icc_1", "g/icc_2", "_uuid",
                                   "_submission_time"]] + [
        ["", f"P{i}", str(i), "2", f"u{i}", f"2024-03-0{i}T10:11:12"] for i in range(1, 6)],
        delimiter=";")
    return {
        limesurvey: (ls, {"items": {"ICC[SQ001]": "icc_1", "ICC[SQ002]": "icc_2"},
                          "answers": CODES, "wave": "pre", "exchange_id": "E"}),
        gforms: (gf, {"wave": "pre", "exchange_id": "E"}),
        kobo: (kb, {"wave": "pre", "exchange_id": "E"}),
    }


def _read_or_refuse(mod, path: Path, mapping: dict) -> None:
    """A file is read into a table or refused in one line; any other exception fails."""
    try:
        mod.read(path, mapping, [])
    except RefusedFile as e:
        assert "\n" not in str(e), str(e)
        assert str(e).startswith(str(path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from([0, 1, 2]), how=st.sampled_from(["truncate", "mangle", "insert"]),
       seed=st.integers(0, 2**32 - 1))
def test_fuzzed_exports_are_read_or_refused_in_one_line(which, how, seed):
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        mod, (path, mapping) = list(_good_files(Path(tmp)).items())[which]
        data = bytearray(path.read_bytes())
        if how == "truncate":
            data = data[: rnd.randrange(0, len(data))]
        elif how == "mangle":
            for _ in range(rnd.randint(1, 20)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        else:
            at = rnd.randrange(len(data))
            data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 40)))
        path.write_bytes(bytes(data))
        _read_or_refuse(mod, path, mapping)


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("damage", ["empty", "binary", "utf16-no-header", "gzip", "shift-jis",
                                    "xlsx-garbage"])
def test_wrong_encodings_and_files_are_refused_in_one_line(tmp_path, which, damage):
    mod, (path, mapping) = list(_good_files(tmp_path).items())[which]
    text = path.read_text(encoding="utf-8-sig")
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif damage == "utf16-no-header":
        path.write_bytes("\n".join(text.splitlines()[1:]).encode("utf-16-le"))
    elif damage == "gzip":
        import gzip
        path.write_bytes(gzip.compress(text.encode()))
    elif damage == "shift-jis":
        path.write_bytes(text.replace("en", "日本語").encode("shift_jis") + b"\x81\xff")
    else:
        path = path.with_suffix(".xlsx")
        path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(RefusedFile) as e:
        mod.read(path, mapping, [])
    assert "\n" not in str(e.value)


@settings(max_examples=200, deadline=None)
@given(head=st.lists(st.sampled_from(list("ab_;,\t\n\r\"' []/") + [
    "Timestamp", "_uuid", "_submission_time", "submitdate", "lastpage", "\ufeff", "\0"]),
    max_size=40).map("".join))
def test_sniffing_any_text_says_yes_or_no(head):
    for mod in (limesurvey, gforms, kobo):
        assert mod.sniff(Path("x.csv"), head) in (True, False)
        assert mod.sniff(Path("/nonexistent/x.xlsx"), head) in (True, False)


def test_windows_1252_is_read_with_a_note(tmp_path):
    f = tmp_path / "g.csv"
    f.write_bytes("Timestamp,Email Address,icc_1,Comentario\r\n"
                  "2024/03/05 10:11:12 AM GMT+1,josé@x.org,3,café\r\n".encode("cp1252"))
    rows, notes = _read(gforms, f, {"wave": "pre", "exchange_id": "E"})
    assert rows[0]["participant_id"] == "josé@x.org"
    assert _note(notes, "Windows-1252")



# -- the contract's loader takes what the readers give -------------------------------------------

def _contract_csv(table, path: Path) -> Path:
    """A reader's table written as the contract's responses.csv (without `_row`)."""
    # As the registry (etl.sources.stage) fills them from --wave/--exchange or the mapping.
    rows = [{**r, "wave": "pre", "exchange_id": "E1"}
            for r in table.drop_columns(["_row"]).to_pylist()]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _exports(folder: Path) -> dict:
    """One export per tool of the program's participants STU-0001 (Berlin) and STU-0002 (Lima)
    in exchange E1, naive times written in each participant's own zone or with an offset."""
    ls = _limesurvey(folder / "ls.csv", [
        LS_META + ["ICC[SQ001]", "ICC[SQ002]"],
        _ls_row("1", "2026-01-12 09:00:00", "STU-0001", "de", ["A4", "A5"]),
        _ls_row("2", "2026-01-12 09:00:00", "STU-0002", "es", ["A3", ""]),
        _ls_row("3", "", "STU-0003", "en", ["A1", ""]),  # incomplete
    ])
    gf = _csv(folder / "gf.csv", [
        ["Timestamp", "Student ID", "Rate [a]", "Rate [b]"],
        ["2026/01/12 9:00:00 AM GMT+1", "STU-0001", "Agree", "Strongly agree"],
        ["2026/01/12 9:00:00 AM GMT-5", "STU-0002", "Neutral", ""]])
    kb = _csv(folder / "kb.csv", [
        ["end", "participant_id", "g/icc_1", "g/icc_2", "_uuid", "_submission_time"],
        ["2026-01-12T09:00:00.000+01:00", "STU-0001", "4", "5", "u1", "2026-01-13T00:00:00"],
        ["", "STU-0002", "3", "", "u2", "2026-01-12T14:00:00"]], delimiter=";")
    base = {"wave": "pre", "exchange_id": "E1"}
    return {
        "limesurvey": (limesurvey, ls, {**base, "items": {"ICC[SQ001]": "icc_1",
                                                          "ICC[SQ002]": "icc_2"},
                                        "answers": CODES}),
        "gforms": (gforms, gf, {**base, "participant": "Student ID",
                                "items": {"Rate [a]": "icc_1", "Rate [b]": "icc_2"},
                                "answers": {"Neutral": 3, "Agree": 4, "Strongly agree": 5}}),
        "kobo": (kobo, kb, base),
    }


@pytest.mark.parametrize("fmt", ["limesurvey", "gforms", "kobo"])
def test_readers_tables_load_through_the_contract_loader(tmp_path, fmt):
    """Written as the contract's responses, a reader's table loads with no reject: answers on
    the scale, times as UTC instants (naive ones in the participant's zone), ids pseudonymised."""
    from etl.load import load_paths
    from tests import program as P

    wh = tmp_path / "wh" / "warehouse.duckdb"
    wh.parent.mkdir()
    key = wh.parent / "pseudonym.key"
    key.write_text(P.TEST_KEY)
    key.chmod(0o600)
    prog = P.write_program(tmp_path / "program")
    (prog / "responses.csv").unlink()
    mod, path, mapping = _exports(tmp_path)[fmt]
    notes: list[str] = []
    src = _contract_csv(mod.read(path, mapping, notes), tmp_path / "responses.csv")
    reports = load_paths([prog, src], wh)
    rep = next(r for r in reports if Path(r.file).name == "responses.csv")
    assert rep.status == "loaded" and rep.rows_rejected == 0, rep.summary()
    got = P.q(wh, "SELECT p.institution_id, r.item, r.value, strftime(r.submitted_at, "
                  "'%Y-%m-%d %H:%M') FROM responses r JOIN participants p USING (participant_id) "
                  "ORDER BY 1, 2")
    assert got == [("I1", "icc_1", 4.0, "2026-01-12 08:00"),
                   ("I1", "icc_2", 5.0, "2026-01-12 08:00"),
                   ("I2", "icc_1", 3.0, "2026-01-12 14:00")]
    stored = P.q(wh, "SELECT DISTINCT participant_id FROM responses")
    assert all(not pid.startswith("STU-") for (pid,) in stored)


_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = next((p for p in (_ROOT.parent / "shared" / "samples",
                            _ROOT.parent.parent / "shared" / "samples") if p.is_dir()), None)


@pytest.mark.skipif(SAMPLES is None, reason="../shared/samples is not beside the checkout")
def test_no_survey_reader_claims_the_other_tools_samples():
    """Qualtrics, Moodle, xAPI and Zoom samples are not taken for LimeSurvey, Forms or Kobo."""
    for f in sorted(SAMPLES.iterdir()):
        head = f.read_bytes()[: 64 << 10].decode("utf-8", errors="replace")
        assert [m.FORMAT for m in (limesurvey, gforms, kobo) if m.sniff(f, head)] == [], f.name


# -- inspect and mapping new (the registry's optional describe / mapping_template) ---------------

def test_starting_mappings_list_the_questions_and_read_once_filled_in(tmp_path):
    """`mapping new` writes each reader's template: the participant column found, every question
    (no metadata) with '' to skip or the item its header names; filled in, it reads the file and
    a question left '' is skipped without a note."""
    import yaml

    ex = _exports(tmp_path)
    ls = yaml.safe_load(limesurvey.mapping_template(ex["limesurvey"][1]))
    assert ls["participant"] == "token" and ls["answers"] == CODES
    assert ls["items"] == {"ICC[SQ001]": "", "ICC[SQ002]": ""}
    gf = yaml.safe_load(gforms.mapping_template(ex["gforms"][1]))
    assert gf["participant"] == "" and list(gf["items"]) == ["Student ID", "Rate [a]", "Rate [b]"]
    kb = yaml.safe_load(kobo.mapping_template(ex["kobo"][1]))
    assert kb["participant"] == "participant_id"
    assert kb["items"] == {"g/icc_1": "icc_1", "g/icc_2": "icc_2"}
    ls["items"]["ICC[SQ001]"] = "icc_1"
    rows, notes = _read(limesurvey, ex["limesurvey"][1], ls)
    assert [r["icc_1"] for r in rows] == ["4", "3"] and "icc_2" not in rows[0]
    assert not [n for n in notes if "not mapped" in n or "not in the file" in n], notes
    kb["items"]["g/icc_2"] = ""  # its header names an item, but the mapping skips it
    rows, _ = _read(kobo, ex["kobo"][1], kb)
    assert "icc_2" not in rows[0] and rows[0]["icc_1"] == "4"
    assert kobo.describe(ex["kobo"][1])["separator"] == ";"
    assert limesurvey.describe(ex["limesurvey"][1])["bom"] is True


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("encoding, delimiter", [("utf-16", "\t"), ("utf-8", "\t"),
                                                 ("cp1252", ";"), ("utf-8-sig", "|")])
def test_every_encoding_and_separator_reads_the_same_rows(tmp_path, which, encoding, delimiter):
    """Excel's "Unicode text" (UTF-16, tabs), Windows-1252 and other separators: same rows."""
    mod, (path, mapping) = list(_good_files(tmp_path).items())[which]
    want = mod.read(path, mapping, []).to_pylist()
    rows = list(csv.reader(open(path, encoding="utf-8-sig", newline=""),
                           delimiter=";" if mod is not gforms else ","))
    other = _csv(tmp_path / "other.csv", rows, delimiter=delimiter, encoding=encoding)
    notes: list[str] = []
    assert mod.read(other, mapping, notes).to_pylist() == want
    if encoding == "utf-16":  # the fixtures are ASCII, so Windows-1252 is UTF-8 here
        assert any("UTF-16" in n for n in notes), notes


# -- through the command line, once the registry (i11-core) is merged -----------------------------

def _registry():
    import etl.sources as registry

    return registry if hasattr(registry, "stage") else None


@pytest.mark.skipif(_registry() is None, reason="the reader registry (etl.sources.stage) is "
                                                "not on this branch yet")
@pytest.mark.parametrize("fmt", ["limesurvey", "gforms", "kobo"])
def test_python_m_etl_load_takes_each_export_as_it_comes(tmp_path, fmt):
    """`python -m etl load EXPORT --mapping M --wave pre --exchange E1` after the roster: the
    format is detected, the answers land in the warehouse, the ids only as pseudonyms."""
    import yaml

    from tests import program as P

    assert fmt in _registry().MODULES, f"etl.sources.MODULES does not list {fmt}"
    wh = tmp_path / "wh" / "warehouse.duckdb"
    prog = P.write_program(tmp_path / "program")
    (prog / "responses.csv").unlink()
    P.run_etl("load", "--quiet", "--warehouse", str(wh), str(prog))  # its bad rows: non-zero
    _, path, mapping = _exports(tmp_path)[fmt]
    m = tmp_path / f"{fmt}.yaml"
    m.write_text(yaml.safe_dump({k: v for k, v in mapping.items()
                                 if k not in ("wave", "exchange_id")}, allow_unicode=True))
    run = P.run_etl("load", "--warehouse", str(wh), str(path), "--mapping", str(m),
                    "--wave", "pre", "--exchange", "E1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"read as a {fmt} export" in run.stdout
    got = P.q(wh, "SELECT p.institution_id, r.wave, r.exchange_id, r.item, r.value, "
                  "strftime(r.submitted_at, '%Y-%m-%d %H:%M') FROM responses r "
                  "JOIN participants p USING (participant_id) ORDER BY 1, 4")
    assert got == [("I1", "pre", "E1", "icc_1", 4.0, "2026-01-12 08:00"),
                   ("I1", "pre", "E1", "icc_2", 5.0, "2026-01-12 08:00"),
                   ("I2", "pre", "E1", "icc_1", 3.0, "2026-01-12 14:00")]
    text = " ".join(str(v) for row in P.q(wh, "SELECT * FROM responses") for v in row)
    assert "STU-0001" not in text and "STU-0002" not in text
