"""etl.sources.caliper: IMS Caliper events and envelopes read into the events contract.

Fixtures follow the Caliper 1.2 specification's examples (AssessmentEvent with its Attempt,
NavigationEvent, SessionEvent, envelopes with `data` arrays) and Caliper 1.0's action IRIs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.errors import RefusedFile
from etl.sources import caliper

CTX = "http://purl.imsglobal.org/ctx/caliper/v1p2"
SECTION = "https://example.edu/terms/201801/courses/7/sections/1"


def assessment(i: int, **extra: object) -> dict:
    e = {
        "@context": CTX, "id": f"urn:uuid:a50ca17f-5971-47bb-8fca-{i:012d}",
        "type": "AssessmentEvent",
        "actor": {"id": f"https://example.edu/users/{554430 + i}", "type": "Person",
                  "name": "Ana Lopez"},
        "action": "Submitted",
        "object": {"id": "https://example.edu/terms/201801/courses/7/sections/1/assess/1",
                   "type": "Assessment", "name": "Quiz One"},
        "generated": {"id": f"https://example.edu/attempts/{i}", "type": "Attempt",
                      "startedAtTime": "2018-11-15T10:15:00.000Z",
                      "endedAtTime": "2018-11-15T10:55:12.000Z", "duration": "PT40M12S"},
        "eventTime": "2018-11-15T10:55:30.000Z",
        "edApp": {"id": "https://example.edu", "type": "SoftwareApplication"},
        "group": {"id": SECTION, "type": "CourseSection", "courseNumber": "CPS 435-01"},
        "membership": {"id": "https://example.edu/membership/1", "type": "Membership",
                       "roles": ["Learner"]},
        "session": {"id": "https://example.edu/sessions/1f6442a4", "type": "Session"},
    }
    e.update(extra)
    return e


def envelope(data: list[dict]) -> dict:
    return {"sensor": "https://example.edu/sensors/1", "sendTime": "2018-11-15T11:05:01.000Z",
            "dataVersion": CTX, "data": data}


def write(tmp: Path, name: str, value: object, lines: bool = False) -> Path:
    path = tmp / name
    text = ("".join(json.dumps(v) + "\n" for v in value) if lines
            else json.dumps(value, indent=2))
    path.write_text(text, encoding="utf-8")
    return path


def rows(path: Path, mapping: dict | None = None, notes: list[str] | None = None) -> list[dict]:
    return caliper.read(path, mapping or {}, notes if notes is not None else []).to_pylist()


def test_an_assessment_event(tmp_path: Path) -> None:
    notes: list[str] = []
    got = rows(write(tmp_path, "e.json", assessment(1)), notes=notes)
    assert got == [{"participant_id": "https://example.edu/users/554431",
                    "exchange_id": SECTION, "occurred_at": "2018-11-15T10:55:30+00:00",
                    "activity": "Submitted", "minutes": "40.2", "_row": 1}]
    assert any("not read" in n for n in notes)


def test_envelopes_events_entities_and_shapes(tmp_path: Path) -> None:
    nav = {"@context": CTX, "id": "urn:uuid:ff9ec22a", "type": "NavigationEvent",
           "actor": "https://example.edu/users/9", "action": "NavigatedTo",
           "object": "https://example.edu/pages/2", "eventTime": "2018-11-15T12:00:00-05:00",
           "group": "https://example.edu/sections/2"}
    logout = {"id": "urn:uuid:1", "type": "SessionEvent", "action": "LoggedOut",
              "actor": {"id": "https://example.edu/users/9", "type": "Person"},
              "object": {"id": "https://example.edu/sessions/9", "type": "Session",
                         "duration": "PT1H5M"},
              "eventTime": "2018-11-15T13:00:00Z", "group": {"id": SECTION}}
    person = {"id": "https://example.edu/users/9", "type": "Person", "name": "Jo"}
    notes: list[str] = []
    env = [envelope([assessment(1), person, nav]), envelope([logout])]
    got = rows(write(tmp_path, "env.json", env, lines=True), notes=notes)
    assert [(r["participant_id"], r["activity"], r["occurred_at"], r["minutes"], r["_row"])
            for r in got] == [
        ("https://example.edu/users/554431", "Submitted", "2018-11-15T10:55:30+00:00", "40.2", 1),
        ("https://example.edu/users/9", "NavigatedTo", "2018-11-15T17:00:00+00:00", None, 3),
        ("https://example.edu/users/9", "LoggedOut", "2018-11-15T13:00:00+00:00", "65.0", 4)]
    assert got[1]["exchange_id"] == "https://example.edu/sections/2"
    assert any("from envelopes" in n for n in notes)
    assert any("1 record(s) without an action" in n for n in notes)
    single = rows(write(tmp_path, "one_env.json", envelope([assessment(1), assessment(2)])))
    assert [r["_row"] for r in single] == [1, 2]
    array = rows(write(tmp_path, "array.json", [assessment(1), assessment(2)]))
    lines = rows(write(tmp_path, "lines.json", [assessment(1), assessment(2)], lines=True))
    assert array == lines == single


def test_caliper_1_0_action_iris_and_mapping(tmp_path: Path) -> None:
    iri = "http://purl.imsglobal.org/vocab/caliper/v1/action#NavigatedTo"
    path = write(tmp_path, "e.json", [assessment(1), assessment(2, action=iri)])
    assert [r["activity"] for r in rows(path)] == ["Submitted", "NavigatedTo"]
    notes: list[str] = []
    got = rows(path, {"verbs": {"submitted": "quiz"}, "exchange_id": "EX-1"}, notes)
    assert [(r["activity"], r["exchange_id"]) for r in got] == [("quiz", "EX-1"),
                                                               ("NavigatedTo", "EX-1")]
    assert any("not in the mapping" in n for n in notes)
    got = rows(path, {"exchange_from": {SECTION.upper(): "EX-2"}})
    assert [r["exchange_id"] for r in got] == ["EX-2", "EX-2"]
    with pytest.raises(RefusedFile, match="exchange_from"):
        rows(path, {"exchange_from": "parent"})


def test_bad_durations_and_times_pass_on_for_validation(tmp_path: Path) -> None:
    bad = assessment(1, eventTime="15/11/2018 10:55")
    bad["generated"]["duration"] = "40 minutes"
    notes: list[str] = []
    got = rows(write(tmp_path, "e.json", [bad]), notes=notes)
    assert (got[0]["occurred_at"], got[0]["minutes"]) == ("15/11/2018 10:55", "40 minutes")
    assert any("not ISO 8601 durations" in n for n in notes)


@st.composite
def events(draw: st.DrawFn) -> tuple[dict, dict]:
    user = draw(st.integers(1, 10**6))
    action = draw(st.sampled_from(["Submitted", "Started", "NavigatedTo", "Viewed", "Graded"]))
    moment = datetime(2018, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**8)))
    offset = draw(st.integers(-11, 13))
    local = (moment + timedelta(hours=offset)).replace(tzinfo=None).isoformat()
    seconds = draw(st.none() | st.integers(0, 86_399))
    e = assessment(user, action=action,
                   eventTime=f"{local}{'+' if offset >= 0 else '-'}{abs(offset):02d}:00",
                   group={"id": f"https://example.edu/sections/{user % 7}"})
    if seconds is None:
        del e["generated"]
    else:
        e["generated"]["duration"] = f"PT{seconds // 60}M{seconds % 60}S"
    want = {"participant_id": f"https://example.edu/users/{554430 + user}",
            "exchange_id": f"https://example.edu/sections/{user % 7}",
            "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "activity": action,
            "minutes": None if seconds is None else round(seconds / 60, 6)}
    return e, want


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(events(), min_size=1, max_size=20), st.sampled_from(["lines", "array", "env"]))
def test_random_events_read_back(tmp_path: Path, evs: list[tuple[dict, dict]],
                                 shape: str) -> None:
    data = [e for e, _ in evs]
    path = (write(tmp_path, "l.json", data, lines=True) if shape == "lines"
            else write(tmp_path, "a.json", data) if shape == "array"
            else write(tmp_path, "e.json", envelope(data)))
    got = rows(path)
    for g in got:
        g["minutes"] = None if g["minutes"] is None else float(g["minutes"])
    assert got == [dict(w, _row=i) for i, (_, w) in enumerate(evs, 1)]


def test_refusals_are_one_line(tmp_path: Path) -> None:
    cases = {
        "empty.json": b"",
        "truncated.json": json.dumps(envelope([assessment(1)])).encode()[:-30],
        "utf16.json": json.dumps([assessment(1)]).encode("utf-16"),
        "cp1252.json": json.dumps([assessment(1, action="Submitté")],
                                  ensure_ascii=False).encode("cp1252"),
        "entities.json": json.dumps(envelope([{"id": "https://example.edu/u/1",
                                               "type": "Person"}])).encode(),
        "strings.json": b'["a", "b"]',
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RefusedFile) as e:
            caliper.read(tmp_path / name, {}, [])
        assert "\n" not in str(e.value) and name in str(e.value)
    with pytest.raises(RefusedFile, match="no Caliper events"):
        caliper.read(tmp_path / "entities.json", {}, [])


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mangled_and_truncated_files_refuse_or_read(tmp_path: Path, data: st.DataObject) \
        -> None:
    good = json.dumps(envelope([assessment(1), assessment(2)])).encode()
    if data.draw(st.booleans()):
        raw = good[:data.draw(st.integers(0, len(good)))]
    else:
        mangled = bytearray(good)
        for _ in range(data.draw(st.integers(1, 8))):
            mangled[data.draw(st.integers(0, len(mangled) - 1))] = data.draw(st.integers(0, 255))
        raw = bytes(mangled)
    path = tmp_path / "fuzz.json"
    path.write_bytes(raw)
    try:
        table = caliper.read(path, {}, [])
    except RefusedFile as e:
        assert "\n" not in str(e)
    else:
        assert table.column_names[-1] == "_row" and table.num_rows <= 2


def test_sniff() -> None:
    assert caliper.sniff(Path("e.json"), json.dumps(assessment(1)))
    assert caliper.sniff(Path("e.json"), json.dumps(envelope([])))
    assert not caliper.sniff(Path("s.json"), '{"actor": {}, "verb": {"id": "v"}}')
    assert not caliper.sniff(Path("s.csv"), "action,eventTime\n")
