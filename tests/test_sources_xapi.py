"""etl.sources.xapi: xAPI statements in their real shapes read into the events contract.

Fixtures are written here in the shapes LRSs and LMS plugins export (a Moodle/Learning Locker
statement, arrays, JSON lines, StatementResult pages); the shared sample is read when present.
Durations are checked against isodate, the maintained ISO 8601 parser.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import isodate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.errors import RefusedFile
from etl.sources import caliper, xapi
from tests.sources_fuzz import SAMPLES  # beside the checkout, or beside its worktree's

COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
ATTEMPTED = "http://adlnet.gov/expapi/verbs/attempted"
VOIDED = "http://adlnet.gov/expapi/verbs/voided"
COURSE = "http://lms.example.org/course/view.php?id=2"


def statement(i: int, actor: dict | None = None, verb: str = COMPLETED, **extra: object) -> dict:
    """A statement as Learning Locker stores one from Moodle (names, extensions, authority)."""
    s = {
        "id": f"554bdda9-a9eb-4f74-9ae8-{i:012d}",
        "version": "1.0.0",
        "actor": actor or {"objectType": "Agent", "name": f"Student {i}",
                           "mbox": f"mailto:student{i}@example.org"},
        "verb": {"id": verb, "display": {"en": verb.rsplit("/", 1)[-1]}},
        "object": {"objectType": "Activity", "id": f"http://lms.example.org/mod/assign/{i}",
                   "definition": {"name": {"en": "Assignment"}}},
        "context": {
            "contextActivities": {"grouping": [{"objectType": "Activity", "id": COURSE}]},
            "platform": "Moodle",
            "extensions": {"http://id.tincanapi.com/extension/ip-address": {
                "ip-address": "192.168.10.20"}},
        },
        "timestamp": "2016-04-07T09:03:40-07:00",
        "authority": {"objectType": "Agent", "name": "New Client",
                      "mbox": "mailto:hello@learninglocker.net"},
        "stored": "2016-04-07T16:03:41.255200+00:00",
    }
    s.update(extra)
    return s


def write(tmp: Path, name: str, value: object, lines: bool = False) -> Path:
    path = tmp / name
    if lines:
        path.write_text("".join(json.dumps(v) + "\n" for v in value), encoding="utf-8")
    else:
        path.write_text(json.dumps(value, indent=4), encoding="utf-8")
    return path


def rows(path: Path, mapping: dict | None = None, notes: list[str] | None = None) -> list[dict]:
    return xapi.read(path, mapping or {}, notes if notes is not None else []).to_pylist()


def test_a_moodle_statement_becomes_one_event(tmp_path: Path) -> None:
    s = statement(1, actor={"objectType": "Agent", "name": "stutest", "account": {
        "name": "stutest", "homePage": "http://localhost:8080/moodle/moodle"}})
    notes: list[str] = []
    got = rows(write(tmp_path, "one.json", s), notes=notes)
    assert got == [{"participant_id": "stutest", "exchange_id": COURSE,
                    "occurred_at": "2016-04-07T16:03:40+00:00", "activity": "completed",
                    "minutes": None, "_row": 1}]
    assert any("IP addresses" in n for n in notes)
    table = xapi.read(tmp_path / "one.json", {}, [])
    assert table.column_names == ["participant_id", "exchange_id", "occurred_at", "activity",
                                  "minutes", "_row"]
    assert str(table.schema.field("_row").type) == "int64"


def test_array_lines_page_and_pretty_lines_give_the_same_rows(tmp_path: Path) -> None:
    ss = [statement(i) for i in range(1, 4)]
    array = rows(write(tmp_path, "a.json", ss))
    assert [r["participant_id"] for r in array] == [f"student{i}@example.org" for i in (1, 2, 3)]
    assert [r["_row"] for r in array] == [1, 2, 3]
    assert rows(write(tmp_path, "l.json", ss, lines=True)) == array
    pretty = tmp_path / "p.json"
    pretty.write_text("\n".join(json.dumps(s, indent=2) for s in ss), encoding="utf-8")
    assert rows(pretty) == array
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(ss).encode())
    assert rows(bom) == array


def test_statement_result_pages_are_unwrapped_and_more_is_noted(tmp_path: Path) -> None:
    pages = [{"statements": [statement(1), statement(2)],
              "more": "/xAPI/statements?cursor=abc"},
             {"statements": [statement(3)], "more": ""}]
    notes: list[str] = []
    got = rows(write(tmp_path, "pages.json", pages, lines=True), notes=notes)
    assert [(r["participant_id"], r["_row"]) for r in got] == [
        ("student1@example.org", 1), ("student2@example.org", 2), ("student3@example.org", 3)]
    assert any("/xAPI/statements?cursor=abc" in n and "not in this file" in n for n in notes)
    one_page = rows(write(tmp_path, "page.json", pages[0]))
    assert [r["_row"] for r in one_page] == [1, 2]


def test_voiding_removes_the_voided_and_is_no_event(tmp_path: Path) -> None:
    ss = [statement(1), statement(2), statement(3)]
    voider = {"id": "ffffffff-0000-0000-0000-000000000001",
              "actor": {"mbox": "mailto:admin@example.org"},
              "verb": {"id": VOIDED, "display": {"en-US": "voided"}},
              "object": {"objectType": "StatementRef", "id": ss[1]["id"].upper()},
              "timestamp": "2016-04-08T00:00:00Z"}
    gone = dict(voider, id="ffffffff-0000-0000-0000-000000000002",
                object={"objectType": "StatementRef", "id": "not-in-this-file"})
    notes: list[str] = []
    got = rows(write(tmp_path, "v.json", ss + [voider, gone]), notes=notes)
    assert [r["participant_id"] for r in got] == ["student1@example.org", "student3@example.org"]
    assert [r["_row"] for r in got] == [1, 3]
    assert any("2 voiding statement(s) removed 1" in n and "1 voided id(s) are not in this file"
               in n for n in notes)


@pytest.mark.parametrize(("actor", "expected"), [
    ({"mbox": "mailto:Ana.Lopez@Example.ORG", "name": "Ana"}, "ana.lopez@example.org"),
    ({"mbox_sha1sum": "EBD31E95054C018B10727CCFFD2EF2EC3A016EE9"},
     "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"),
    ({"account": {"homePage": "https://lms.example.org", "name": "u-1042"}}, "u-1042"),
    ({"openid": "https://openid.example.org/ana"}, "https://openid.example.org/ana"),
])
def test_actor_kinds(tmp_path: Path, actor: dict, expected: str) -> None:
    assert rows(write(tmp_path, "s.json", statement(1, actor=actor)))[0]["participant_id"] \
        == expected


def test_actor_default_order_and_mapping(tmp_path: Path) -> None:
    both = {"mbox": "mailto:ana@example.org", "account": {"homePage": "h", "name": "u-1"}}
    path = write(tmp_path, "s.json", [statement(1, actor=both),
                                      statement(2, actor={"openid": "https://id/x"})])
    assert [r["participant_id"] for r in rows(path)] == ["ana@example.org", "https://id/x"]
    notes: list[str] = []
    got = rows(path, {"actor": "account"}, notes)
    assert [r["participant_id"] for r in got] == ["u-1", None]
    assert any("1 statement(s) have no actor account" in n for n in notes)
    with pytest.raises(RefusedFile, match="actor 'email' is none of"):
        rows(path, {"actor": "email"})


def test_accounts_of_several_systems_keep_their_home_page(tmp_path: Path) -> None:
    a = statement(1, actor={"account": {"homePage": "https://a.example", "name": "7"}})
    b = statement(2, actor={"account": {"homePage": "https://b.example", "name": "7"}})
    notes: list[str] = []
    got = rows(write(tmp_path, "s.json", [a, b]), notes=notes)
    assert [r["participant_id"] for r in got] == ["https://a.example|7", "https://b.example|7"]
    assert any("2 systems" in n for n in notes)


def test_group_actors_are_dropped(tmp_path: Path) -> None:
    g = statement(2, actor={"objectType": "Group", "mbox": "mailto:team@example.org"})
    notes: list[str] = []
    got = rows(write(tmp_path, "s.json", [statement(1), g]), notes=notes)
    assert [r["_row"] for r in got] == [1]
    assert any("Group" in n for n in notes)


def test_verbs_case_insensitive_mapped_and_noted(tmp_path: Path) -> None:
    odd = "http://ADLnet.gov/expapi/verbs/Attempted"
    path = write(tmp_path, "s.json", [statement(1), statement(2, verb=odd),
                                      statement(3, verb="http://example.org/verbs/joined/")])
    notes: list[str] = []
    assert [r["activity"] for r in rows(path, notes=notes)] == ["completed", "attempted",
                                                               "joined"]
    assert any(odd in n and "case-insensitively" in n for n in notes)
    notes = []
    got = rows(path, {"verbs": {ATTEMPTED: "quiz", COMPLETED.upper(): "assignment"}}, notes)
    assert [r["activity"] for r in got] == ["assignment", "quiz", "joined"]
    assert any("not in the mapping" in n and "joined" in n for n in notes)


def test_plain_string_display_is_accepted_with_a_note(tmp_path: Path) -> None:
    s = statement(1)
    s["verb"]["display"] = "completed"
    s["object"]["definition"]["name"] = "Assignment 2"
    notes: list[str] = []
    assert rows(write(tmp_path, "s.json", [s, statement(2)]), notes=notes)[0]["activity"] \
        == "completed"
    assert any("1 statement(s) give a display or name as a plain string" in n for n in notes)


def test_exchange_from_context_or_mapping(tmp_path: Path) -> None:
    s1 = statement(1)
    s2 = statement(2, context={"contextActivities": {
        "grouping": {"id": "http://lms.example.org/course/view.php?id=3"},
        "parent": [{"id": "http://lms.example.org/mod/forum/9"}]}})
    path = write(tmp_path, "s.json", [s1, s2])
    assert [r["exchange_id"] for r in rows(path)] == [
        COURSE, "http://lms.example.org/course/view.php?id=3"]
    assert [r["exchange_id"] for r in rows(path, {"exchange_id": "EX-7"})] == ["EX-7", "EX-7"]
    table = {COURSE.upper(): "EX-1", "http://lms.example.org/mod/forum/9": "EX-2"}
    assert [r["exchange_id"] for r in rows(path, {"exchange_from": table})] == ["EX-1", "EX-2"]
    assert [r["exchange_id"] for r in rows(path, {"exchange_from": "parent"})] == [
        None, "http://lms.example.org/mod/forum/9"]


def test_timestamps_at_utc_naive_kept_stored_as_fallback(tmp_path: Path) -> None:
    ss = [statement(1, timestamp="2024-03-31T01:30:00.5+02:00"),
          statement(2, timestamp="2024-03-31T01:30:00Z"),
          statement(3, timestamp="2024-03-31T01:30:00"),
          statement(4, timestamp="yesterday"),
          statement(5)]
    del ss[4]["timestamp"]
    notes: list[str] = []
    got = [r["occurred_at"] for r in rows(write(tmp_path, "s.json", ss), notes=notes)]
    assert got == ["2024-03-30T23:30:00.5+00:00", "2024-03-31T01:30:00+00:00",
                   "2024-03-31T01:30:00", "yesterday", "2016-04-07T16:03:41.2552+00:00"]
    assert any("dated by 'stored'" in n for n in notes)


def test_durations_as_minutes(tmp_path: Path) -> None:
    durations = ["PT1H2M3.5S", "PT90M", "P1DT1H", "P1W", "PT0,5M", "P1M", "1 hour", None]
    ss = [statement(i, result={"duration": d} if d else {"success": True})
          for i, d in enumerate(durations, 1)]
    notes: list[str] = []
    got = [r["minutes"] for r in rows(write(tmp_path, "s.json", ss), notes=notes)]
    assert [m if m in (None, "1 hour") else float(m) for m in got] == [
        pytest.approx(62.058333), 90.0, 1500.0, 10080.0, 0.5, None, "1 hour", None]
    assert any("1 duration(s) in years or months" in n for n in notes)
    assert any("1 result.duration value(s) are not ISO 8601" in n for n in notes)


def _isodate_minutes(d: str) -> float | None:
    try:
        v = isodate.parse_duration(d)
    except (isodate.ISO8601Error, ValueError):
        return None
    if isinstance(v, isodate.Duration):  # years or months: no length in minutes
        return None if (v.years or v.months) else v.tdelta.total_seconds() / 60
    # isodate reads `-PT1M` as negative; no time is spent in negative minutes, so the reader
    # passes it on for validation to reject.
    return v.total_seconds() / 60 if v.total_seconds() >= 0 else None


_num = st.one_of(st.integers(0, 500).map(str),
                 st.tuples(st.integers(0, 99), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"))


@st.composite
def durations(draw: st.DrawFn) -> str:
    date = "".join(f"{draw(st.integers(0, 40))}{u}" for u in "YMD" if draw(st.booleans()))
    parts = [u for u in "HMS" if draw(st.booleans())]
    time = "".join(f"{draw(st.integers(0, 200))}{u}" for u in parts[:-1])
    if parts:
        time += f"{draw(_num)}{parts[-1]}"
    if not date and not time:
        return draw(st.sampled_from(["PT0S", "P", "PT", "P1DT", "PT1.5", "-PT1M", "1H"]))
    return "P" + date + ("T" + time if time else "")


@settings(max_examples=300, deadline=None)
@given(st.lists(durations(), min_size=1, max_size=20))
def test_duration_sql_equals_isodate(values: list[str]) -> None:
    got = xapi.duration_minutes(values)
    for v, g in zip(values, got, strict=True):
        want = _isodate_minutes(v)
        if want is None:
            assert g is None, v
        else:
            assert g == pytest.approx(want, abs=1e-9), v


# Random statements, written in each shape, read back to the rows they were made from.
_actors = st.sampled_from(["mbox", "mbox_sha1sum", "account", "openid"])
_ident = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
_verb = st.sampled_from(["completed", "attempted", "experienced", "joined", "left"])


@st.composite
def events(draw: st.DrawFn) -> dict:
    kind, who = draw(_actors), draw(_ident)
    moment = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**8)))
    offset = draw(st.integers(-12, 14))
    seconds = draw(st.integers(0, 86_399))
    return {"kind": kind, "who": who, "at": moment, "offset": offset, "verb": draw(_verb),
            "exchange": draw(_ident), "seconds": seconds,
            "with_duration": draw(st.booleans())}


def _statement(i: int, e: dict) -> dict:
    actor = {"mbox": {"mbox": f"mailto:{e['who']}@example.org"},
             "mbox_sha1sum": {"mbox_sha1sum": hashlib.sha1(e["who"].encode()).hexdigest()},
             "account": {"account": {"homePage": "https://lms.example.org", "name": e["who"]}},
             "openid": {"openid": f"https://id.example.org/{e['who']}"}}[e["kind"]]
    tz = timedelta(hours=e["offset"])
    local = (e["at"] + tz).replace(tzinfo=None).isoformat()
    sign = "+" if e["offset"] >= 0 else "-"
    s = statement(i, actor=actor, verb=f"http://adlnet.gov/expapi/verbs/{e['verb']}",
                  timestamp=f"{local}{sign}{abs(e['offset']):02d}:00",
                  context={"contextActivities": {"grouping": [{"id": e["exchange"]}]}})
    if e["with_duration"]:
        h, rest = divmod(e["seconds"], 3600)
        s["result"] = {"duration": f"PT{h}H{rest // 60}M{rest % 60}S"}
    return s


def _expected(i: int, e: dict) -> dict:
    pid = {"mbox": f"{e['who']}@example.org".lower(),
           "mbox_sha1sum": hashlib.sha1(e["who"].encode()).hexdigest(),
           "account": e["who"], "openid": f"https://id.example.org/{e['who']}"}[e["kind"]]
    minutes = str(round(e["seconds"] / 60, 6)) if e["with_duration"] else None
    return {"participant_id": pid, "exchange_id": e["exchange"],
            "occurred_at": e["at"].strftime("%Y-%m-%dT%H:%M:%S+00:00"), "activity": e["verb"],
            "minutes": minutes, "_row": i}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(events(), min_size=1, max_size=25),
       st.sampled_from(["lines", "array", "page", "pretty"]))
def test_random_statements_read_back(tmp_path: Path, evs: list[dict], shape: str) -> None:
    ss = [_statement(i, e) for i, e in enumerate(evs, 1)]
    path = tmp_path / f"{shape}.json"
    if shape == "lines":
        write(tmp_path, path.name, ss, lines=True)
    elif shape == "array":
        write(tmp_path, path.name, ss)
    elif shape == "page":
        write(tmp_path, path.name, {"statements": ss, "more": ""})
    else:
        path.write_text("\n".join(json.dumps(s, indent=2) for s in ss), encoding="utf-8")
    got = rows(path)
    want = [_expected(i, e) for i, e in enumerate(evs, 1)]
    for g in got:  # DuckDB writes 90.0 where Python's round writes 90.0 too; compare numbers
        g["minutes"] = None if g["minutes"] is None else float(g["minutes"])
    for w in want:
        w["minutes"] = None if w["minutes"] is None else float(w["minutes"])
    assert got == want


def test_refusals_are_one_line(tmp_path: Path) -> None:
    cases = {
        "empty.json": b"",
        "blank.json": b"  \n\n",
        "truncated.json": json.dumps([statement(1), statement(2)]).encode()[:-40],
        "utf16.json": json.dumps([statement(1)]).encode("utf-16"),
        "utf16le.json": json.dumps([statement(1)]).encode("utf-16-le"),
        "cp1252.json": json.dumps([statement(1, actor={"mbox": "mailto:josé@example.org"})],
                                  ensure_ascii=False).encode("cp1252"),
        "numbers.json": b"[1, 2, 3]",
        "notxapi.json": b'[{"name": "a table, not statements"}]',
        "csv.json": b"participant_id,exchange_id\nP1,E1\n",
        "pagejunk.json": b'{"statements": [1, 2]}',
    }
    messages = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RefusedFile) as e:
            xapi.read(tmp_path / name, {}, [])
        messages[name] = str(e.value)
        assert "\n" not in str(e.value) and str(tmp_path / name) in str(e.value)
    assert "UTF-16" in messages["utf16.json"] and "UTF-16" in messages["utf16le.json"]
    assert "not UTF-8" in messages["cp1252.json"]
    assert "is empty" in messages["blank.json"]
    assert "no xAPI statements" in messages["notxapi.json"]
    assert "not a JSON object" in messages["numbers.json"]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mangled_and_truncated_files_refuse_or_read(tmp_path: Path, data: st.DataObject) \
        -> None:
    good = json.dumps([statement(1), statement(2, result={"duration": "PT5M"})]).encode()
    if data.draw(st.booleans()):
        raw = good[:data.draw(st.integers(0, len(good)))]
    else:
        raw = bytearray(good)
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        raw = bytes(raw)
    path = tmp_path / "fuzz.json"
    path.write_bytes(raw)
    try:
        table = xapi.read(path, {}, [])
    except RefusedFile as e:
        assert "\n" not in str(e)
    else:
        assert table.column_names[-1] == "_row" and table.num_rows <= 2


def test_sniff() -> None:
    assert xapi.sniff(Path("x.json"), "\ufeff[\n {\"actor\": {}, \"verb\": {\"id\": \"v\"}}")
    assert xapi.sniff(Path("x.json"), '{"statements": [{"actor": {}, "verb": {}}], "more": ""}')
    assert not xapi.sniff(Path("x.json"), '{"actor": {}, "action": "Submitted"}')
    assert not xapi.sniff(Path("x.csv"), "participant_id,verb,actor\n")


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared sample exports are not here")
def test_shared_sample_statement() -> None:
    path = SAMPLES / "xapi_moodle_assignment_submitted.json"
    head = path.read_text(encoding="utf-8")[:65536]
    assert xapi.sniff(path, head) and not caliper.sniff(path, head)
    got = rows(path)
    assert got == [{"participant_id": "stutest",
                    "exchange_id": "http://localhost:8080/moodle/moodle/course/view.php?id=2",
                    "occurred_at": "2016-04-07T16:03:40+00:00", "activity": "completed",
                    "minutes": None, "_row": 1}]


def test_large_file_keeps_order(tmp_path: Path) -> None:
    """Parallel parsing must not reorder: `_row` follows the file, rows follow `_row`."""
    rng = random.Random(7)
    n = 30_000
    path = tmp_path / "big.json"
    with path.open("w", encoding="utf-8") as f:
        for i in range(1, n + 1):
            f.write(json.dumps(statement(i, actor={"openid": f"o{i}"},
                                         result={"duration": f"PT{rng.randint(0, 99)}M"})))
            f.write("\n")
    got = xapi.read(path, {}, []).to_pydict()
    assert got["_row"] == list(range(1, n + 1))
    assert got["participant_id"] == [f"o{i}" for i in range(1, n + 1)]


def test_repeated_statement_ids_keep_the_first_and_say_so(tmp_path: Path) -> None:
    """Two overlapping LRS pulls joined: each id once, the first copy in the file kept."""
    first_pull = [statement(1), statement(2), statement(3)]
    changed = statement(1, verb=ATTEMPTED)  # same id, other content
    changed["id"] = changed["id"].upper()  # ids are compared case-insensitively
    second_pull = [statement(2), statement(3), changed, statement(4)]
    notes: list[str] = []
    got = rows(write(tmp_path, "joined.json", first_pull + second_pull, lines=True),
               notes=notes)
    assert [(r["participant_id"], r["activity"], r["_row"]) for r in got] == [
        ("student1@example.org", "completed", 1), ("student2@example.org", "completed", 2),
        ("student3@example.org", "completed", 3), ("student4@example.org", "completed", 7)]
    (note,) = [n for n in notes if "repeat the id" in n]
    assert note.startswith("xAPI: 3 statement(s) repeat the id of an earlier one")
    assert "1 of the 3 repeated id(s) have copies that differ" in note


def test_identical_repeats_are_noted_without_a_difference(tmp_path: Path) -> None:
    ss = [statement(1), statement(2)]
    no_id = statement(3)
    del no_id["id"]
    notes: list[str] = []
    got = rows(write(tmp_path, "twice.json", ss + ss + [no_id, no_id]), notes=notes)
    assert [r["_row"] for r in got] == [1, 2, 5, 6]  # statements without an id are all kept
    (note,) = [n for n in notes if "repeat the id" in n]
    assert note.startswith("xAPI: 2 statement(s) repeat") and "differ" not in note
    notes = []
    rows(write(tmp_path, "once.json", ss), notes=notes)
    assert not [n for n in notes if "repeat the id" in n]


def test_a_repeated_voided_statement_is_voided_once(tmp_path: Path) -> None:
    ss = [statement(1), statement(2)]
    voider = statement(9, verb=VOIDED, object={"objectType": "StatementRef", "id": ss[1]["id"]})
    notes: list[str] = []
    got = rows(write(tmp_path, "v.json", ss + [ss[1], voider, voider], lines=True), notes=notes)
    assert [r["_row"] for r in got] == [1]
    assert any("1 voiding statement(s) removed 1 voided" in n for n in notes)
    assert any(n.startswith("xAPI: 2 statement(s) repeat") for n in notes)


@pytest.mark.parametrize("shape", ["lines", "array"])
def test_the_typed_read_is_taken_and_agrees_with_the_generic_one(
        tmp_path: Path, shape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual file goes through read_json with a schema; its rows and notes are those of
    the generic path (read_json_objects + json_extract_string), its oracle here."""
    ss = [statement(i, result={"duration": f"PT{i}M{i}.5S"}) for i in range(1, 6)]
    ss[1]["actor"] = {"account": {"homePage": "https://a.example", "name": "7"}}
    ss[2]["actor"] = {"account": {"homePage": "https://b.example", "name": "7"}}
    ss[3]["verb"]["id"] = "http://ADLnet.gov/expapi/verbs/Attempted"
    ss[4]["result"] = {"duration": "P1M"}
    ss.append(statement(6, actor={"objectType": "Group", "mbox": "mailto:g@example.org"}))
    ss.append(dict(statement(2), timestamp="2016-04-07T09:03:40"))
    path = write(tmp_path, "s.json", ss, lines=shape == "lines")
    taken: list[bool] = []
    typed = xapi._read_typed

    def spy(*args: object) -> object:
        out = typed(*args)  # type: ignore[arg-type]
        taken.append(out is not None)
        return out

    monkeypatch.setattr(xapi, "_read_typed", spy)
    fast_notes: list[str] = []
    fast = rows(path, notes=fast_notes)
    assert taken == [True]
    monkeypatch.setattr(xapi, "_read_typed", lambda *args: None)
    slow_notes: list[str] = []
    assert fast == rows(path, notes=slow_notes) and fast_notes == slow_notes
    assert len(fast) == 5 and any("repeat the id" in n for n in fast_notes)
