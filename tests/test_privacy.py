"""Personal data never reaches the warehouse, its reports or its files' readers in clear.

Rejects and reports mask e-mails, phone numbers and IP addresses and withhold a person's coded
attributes; free text is masked where it is stored; `gender` takes a vocabulary; the key must be
long, and a warehouse refuses loads under a key other than its own; warehouse files are
owner-only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.read import loads
from etl import privacy
from etl.errors import EtlError
from etl.pseudonym import KEY_ENV, MIN_KEY_BYTES, key_fingerprint, pseudonym, resolve_key
from etl.warehouse import build_next, connect_read_only
from tests import program as P

OTHER_KEY = "another-key-entirely-0123456789-abcdef"
EMAIL = "ZED.STUDENT@pupil.example"
PHONE = "+33 6 12 34 56 78"
IP = "192.168.10.23"


q = P.q


@pytest.fixture(scope="module")
def _program(tmp_path_factory: pytest.TempPathFactory):
    """The program loaded once through the command line (a load and its derive: 5-6 s)."""
    folder = tmp_path_factory.mktemp("program")
    src = P.write_program(folder / "in")
    wh = folder / "wh" / "warehouse.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    return src, wh


@pytest.fixture
def loaded(_program, tmp_path: Path):
    """(the program's folder, shared: each test writes its files in a subfolder of its parent
    named for it; a private copy of the warehouse)."""
    src, wh = _program
    return src, P.warehouse_copy(wh, tmp_path)


def assert_nowhere(wh: Path, out: str, *values: str) -> None:
    blob = wh.read_bytes()
    for v in values:
        assert v.encode() not in blob, v
        assert v.lower().encode() not in blob, v
        assert v not in out, v


# -- the mask ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "masked"), [
    (f"mail to {EMAIL} please", "mail to [e-mail] please"),
    ("zed_s+exchange@mail.pupil.example.org", "[e-mail]"),
    (f"call {PHONE} today", "call [phone] today"),
    ("0033 6 12 34 56 78", "[phone]"),
    ("06 12 34 56 78", "[phone]"),
    ("0612345678", "[phone]"),
    ("(555) 123-4567", "[phone]"),
    ("555-123-4567", "[phone]"),
    (f"from {IP}", "from [IP address]"),
    ("host 2001:db8:85a3:0:0:8a2e:370:7334 up", "host [IP address] up"),
    ("fe80::1ff:fe23:4567:890a", "[IP address]"),
])
def test_the_mask_hides_emails_phones_and_ip_addresses_and_keeps_the_rest(text, masked):
    assert privacy.mask(text) == masked
    with duckdb.connect() as con:
        got = con.execute(f"SELECT {privacy.mask_sql('$t')}", {"t": text}).fetchall()[0][0]
        assert got == masked


@pytest.mark.parametrize("text", [
    "video call", "2026-03-04 10:00:00", "2026-03-04T10:00:00+01:00", "2026-13-45 09:00", "45",
    "12000", "1979", "icc_4", "STU-0001", "Tokyo Kōgyō", "東京", "10:30", "1.5", "2026-01-10",
    "v2.1.0", "E1", "",
])
def test_the_mask_leaves_ordinary_values_alone(text):
    assert privacy.mask(text) == text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from([EMAIL, PHONE, IP, "06 12 34 56 78", "::1", "a@b.co", "2026-03-04", " ", "-",
                     ".", "@", "+", ":", "(", ")"]),
    st.text(alphabet="0123456789 .-+:@()abcfxyzé東", max_size=8)), max_size=8))
def test_sql_and_python_masks_agree(parts: list[str]) -> None:
    text = "".join(parts)
    with duckdb.connect() as con:
        got = con.execute(f"SELECT {privacy.mask_sql('$t')}", {"t": text}).fetchall()[0][0]
    assert got == privacy.mask(text)


# -- rejects and reports ----------------------------------------------------------------------

def test_rejects_and_reports_mask_personal_values_in_any_column(loaded):
    src, wh = loaded
    # Swapped headers: the participant's e-mail sits under exchange_id.
    bad = src.parent / "swapped" / "events_swapped.csv"
    bad.parent.mkdir()
    bad.write_text(
        "exchange_id,participant_id,occurred_at,activity,minutes\n"
        f"{EMAIL},E1,2026-03-04 10:00,message,3\n"
        f"E1,STU-0001,{IP},message,3\n"
        f"E1,STU-0001,2026-03-05 10:00,message,{PHONE}\n")
    res = P.run_etl("load", str(bad), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    got = q(wh, "SELECT row_number, column_name, rule, value, message FROM rejects "
                "WHERE file = ? AND column_name <> 'participant_id' ORDER BY 1", [str(bad)])
    assert got == [
        (2, "exchange_id", "reference", "[e-mail]", "'[e-mail]' is not a known exchange_id "
                                                    "(table exchanges)"),
        (3, "occurred_at", "timestamp", "[IP address]",
         "'[IP address]' is not an ISO 8601 date-time (YYYY-MM-DD HH:MM[:SS][±HH:MM])"),
        (4, "minutes", "number", "[phone]", "'[phone]' is not a number"),
    ]
    assert "column exchange_id: reference: '[e-mail]' is not a known exchange_id" in res.stdout
    assert_nowhere(wh, res.stdout + res.stderr, EMAIL, PHONE, IP)
    con = connect_read_only(wh)  # what the Data page lists
    try:
        shown = loads.rejects(con.cursor()).to_csv()
    finally:
        con.close()
    assert "[e-mail]" in shown and EMAIL not in shown


def test_a_participant_id_in_another_column_is_shown_as_its_pseudonym(loaded):
    src, wh = loaded
    bad = src.parent / "swapped_ids" / "events_more.csv"
    bad.parent.mkdir()
    bad.write_text("exchange_id,participant_id,occurred_at,activity,minutes\n"
                   "STU-0002,E1,2026-03-04 10:00,message,3\n")
    res = P.run_etl("load", str(bad), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    p = pseudonym("STU-0002", P.TEST_KEY.encode())
    assert q(wh, "SELECT value, message FROM rejects WHERE file = ? AND column_name = "
                 "'exchange_id'", [str(bad)]) == [
        (p, f"a participant's id (pseudonym {p}) is not a known exchange_id (table exchanges)")]
    assert_nowhere(wh, res.stdout + res.stderr, "STU-0002")


def test_personal_data_stored_in_clear_by_an_earlier_version_is_masked_at_the_next_load(loaded):
    src, wh = loaded
    key = P.TEST_KEY.encode()
    with build_next(wh) as con:  # as an earlier version wrote them
        con.execute("INSERT INTO rejects VALUES (99, 'old/events.csv', 2, 'exchange_id', "
                    "'reference', ?, ?)", [EMAIL, f"'{EMAIL}' is not a known exchange_id"])
        con.execute("UPDATE load_batches SET message = ? WHERE batch_id = 1",
                    [f"columns ignored (not in the contract): {EMAIL}"])
        con.execute("UPDATE participants SET gender = ? WHERE participant_id = ?",
                    [f"Zed Student {EMAIL}", pseudonym("STU-0002", key)])
        con.execute("UPDATE participants SET gender = 'F' WHERE participant_id = ?",
                    [pseudonym("STU-0001", key)])
        con.execute("UPDATE events SET activity = ? WHERE activity = 'upload'",
                    [f"upload from {IP}"])
        con.execute("UPDATE institutions SET city = ? WHERE institution_id = 'I1'",
                    [f"Bremen {PHONE}"])
        con.execute("DELETE FROM meta WHERE key = 'masked_personal_data'")
    f = P.write_csv(src.parent / "next" / "clusters_more.csv",
                    [{"cluster_id": "C3", "name": "New", "kind": "cluster"}])
    res = P.run_etl("load", str(f), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert q(wh, "SELECT value, message FROM rejects WHERE batch_id = 99") == [
        ("[e-mail]", "'[e-mail]' is not a known exchange_id")]
    assert q(wh, "SELECT message FROM load_batches WHERE batch_id = 1") == [
        ("columns ignored (not in the contract): [e-mail]",)]
    genders = dict(q(wh, "SELECT participant_id, gender FROM participants"))
    assert genders[pseudonym("STU-0001", key)] == "female"
    assert genders[pseudonym("STU-0002", key)] is None  # free text: now "not reported"
    assert q(wh, "SELECT count(*) FROM events WHERE activity = 'upload from [IP address]'") == [
        (1,)]
    assert q(wh, "SELECT city FROM institutions WHERE institution_id = 'I1'") == [
        ("Bremen [phone]",)]
    # (The file's freed pages may still hold the old bytes until it is rebuilt from its sources.)


def test_survey_answers_and_column_names_are_masked_in_rejects_and_notes(loaded):
    src, wh = loaded
    f = src.parent / "wave" / "responses_followup.csv"
    f.parent.mkdir()
    f.write_text(f"participant_id,exchange_id,wave,submitted_at,icc_1,icc_2,{EMAIL}\n"
                 f"STU-0001,E1,followup,2026-09-01 10:00,{PHONE},3,x\n")
    res = P.run_etl("load", str(f), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr  # an answer was refused
    assert q(wh, "SELECT value, message FROM rejects WHERE file = ?", [str(f)]) == [
        ("[phone]", "'[phone]' is not a number (answer to icc_1)")]
    notes = q(wh, "SELECT message FROM load_batches WHERE file = ?", [str(f)])[0][0]
    assert "columns ignored (not in the contract): [e-mail]" in notes
    assert_nowhere(wh, res.stdout + res.stderr, EMAIL, PHONE)


def test_a_refused_file_does_not_quote_personal_data(loaded):
    src, wh = loaded
    f = src.parent / "refused" / "participants.csv"
    f.parent.mkdir()
    f.write_text(f"participant_id,{EMAIL}\nX,Y\n")
    res = P.run_etl("load", str(f), "--warehouse", str(wh))
    assert res.returncode == 1
    assert "missing required column" in res.stdout + res.stderr
    assert_nowhere(wh, res.stdout + res.stderr, EMAIL)


# -- coded and free-text columns -------------------------------------------------------------

GENDERS = {  # as written → as stored (None: empty, counted as not reported)
    "F": "female", "Woman": "female", "male": "male", "M": "male", "non binary": "non-binary",
    "Non-Binary": "non-binary", "nonbinary": "non-binary", "other": "another",
    "Prefer not to say": "not reported", "unknown": "not reported", "": None,
}


def test_gender_takes_the_vocabulary_and_free_text_is_rejected_unseen(loaded):
    src, wh = loaded
    free = f"Zed Student {EMAIL} {PHONE}"
    rows = [{"participant_id": f"G{i}", "institution_id": "I1", "role": "student", "gender": g}
            for i, g in enumerate([*GENDERS, free])]
    f = P.write_csv(src.parent / "g" / "participants_more.csv", rows)
    res = P.run_etl("load", str(f), "--warehouse", str(wh))
    assert res.returncode == 3, res.stdout + res.stderr
    key = P.TEST_KEY.encode()
    stored = dict(q(wh, "SELECT participant_id, gender FROM participants"))
    for i, expected in enumerate(GENDERS.values()):
        assert stored[pseudonym(f"G{i}", key)] == expected, list(GENDERS)[i]
    assert pseudonym(f"G{len(GENDERS)}", key) not in stored
    rej = q(wh, "SELECT row_number, column_name, rule, value, message FROM rejects "
                "WHERE file = ?", [str(f)])
    assert rej == [(len(GENDERS) + 2, "gender", "allowed_values", "[withheld]",
                    "gender is not one of: female, male, non-binary, another, not reported "
                    "(the value is withheld: personal data; see the row in the file)")]
    assert_nowhere(wh, res.stdout + res.stderr, "Zed Student", EMAIL, PHONE)


def test_free_text_is_stored_with_emails_phones_and_ips_masked(loaded):
    src, wh = loaded
    f = src.parent / "free" / "events_more.csv"
    f.parent.mkdir()
    f.write_text("participant_id,exchange_id,occurred_at,activity,minutes\n"
                 f"STU-0001,E1,2026-03-09 10:00,mail to {EMAIL} from {IP},3\n"
                 f"STU-0002,E1,2026-03-09 10:00,call {PHONE},3\n")
    rows = [dict(P.INSTITUTIONS[0], city=f"Bremen ({EMAIL})")]
    inst = P.write_csv(src.parent / "free" / "institutions_more.csv", rows)
    res = P.run_etl("load", str(f), str(inst), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert q(wh, "SELECT activity FROM events WHERE occurred_at >= '2026-03-09' ORDER BY 1") == [
        ("call [phone]",), ("mail to [e-mail] from [IP address]",)]
    assert q(wh, "SELECT city FROM institutions WHERE institution_id = 'I1'") == [
        ("Bremen ([e-mail])",)]
    assert_nowhere(wh, res.stdout + res.stderr, EMAIL, PHONE, IP)


# -- the key ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["", "short", "x" * (MIN_KEY_BYTES - 1)])
def test_keys_under_32_bytes_are_refused_from_the_environment_and_the_file(
        tmp_path: Path, monkeypatch, key: str):
    wh = tmp_path / "w.duckdb"
    kf = tmp_path / "pseudonym.key"
    kf.write_text(key + "\n")
    kf.chmod(0o600)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(EtlError, match=f"{kf}: the pseudonymisation key is {len(key)} bytes"):
        resolve_key(wh)
    if key:  # an empty variable means "not set": the file is read
        monkeypatch.setenv(KEY_ENV, key)
        with pytest.raises(EtlError, match=f"{KEY_ENV} is {len(key)} bytes; at least 32"):
            resolve_key(wh)


def test_a_key_of_32_bytes_and_the_demo_key_are_accepted(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    created = resolve_key(tmp_path / "a" / "w.duckdb", create=True)
    assert len(created) >= MIN_KEY_BYTES
    assert resolve_key(tmp_path / "a" / "w.duckdb") == created
    monkeypatch.setenv(KEY_ENV, "k" * MIN_KEY_BYTES)
    assert resolve_key(tmp_path / "w.duckdb") == b"k" * MIN_KEY_BYTES
    assert len(P.TEST_KEY) >= MIN_KEY_BYTES


def test_an_empty_key_file_is_refused_on_the_command_line(tmp_path: Path):
    src = P.write_program(tmp_path / "in")
    wh = tmp_path / "wh" / "w.duckdb"
    wh.parent.mkdir()
    (wh.parent / "pseudonym.key").write_text("")
    (wh.parent / "pseudonym.key").chmod(0o600)
    res = P.run_etl("load", str(src), "--warehouse", str(wh), env={KEY_ENV: ""})
    assert res.returncode == 1
    assert "the pseudonymisation key is 0 bytes; at least 32" in res.stderr
    assert "Traceback" not in res.stderr and not wh.exists()


def test_a_load_under_another_key_is_refused_before_anything_is_written(loaded, tmp_path: Path):
    src, wh = loaded
    before = {t: q(wh, f"SELECT count(*) FROM {t}")[0][0]
              for t in ("participants", "responses", "load_batches", "rejects")}
    version = q(wh, "SELECT value FROM meta WHERE key = 'data_version'")
    # The next survey wave under a new key: before, every row was rejected as "not in
    # participants"; a corrected participants file then crashed with a ResultsError.
    wave = P.write_csv(tmp_path / "w2" / "responses_followup.csv",
                       [dict(r, wave="followup") for r in (P.RESPONSES[0], P.RESPONSES[2])])
    fixed = [dict(r) for r in P.PARTICIPANTS[:3]]
    fixed[0]["role"] = "teacher"
    fixed = P.write_csv(tmp_path / "w3" / "participants.csv", fixed)
    for f in (wave, fixed):
        res = P.run_etl("load", str(f), "--warehouse", str(wh), env={KEY_ENV: OTHER_KEY})
        assert res.returncode == 1, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert "built with another pseudonymisation key" in lines[0]
        assert "would not link to earlier participants" in lines[0]
        assert "use the original key or start a new warehouse" in lines[0]
        assert {t: q(wh, f"SELECT count(*) FROM {t}")[0][0] for t in before} == before
        assert q(wh, "SELECT value FROM meta WHERE key = 'data_version'") == version
    # The original key still loads; the warehouse keeps a fingerprint, never the key.
    res = P.run_etl("load", str(wave), "--warehouse", str(wh))
    assert res.returncode == 0, res.stdout + res.stderr
    assert q(wh, "SELECT value FROM meta WHERE key = 'key_fingerprint'") == [
        (key_fingerprint(P.TEST_KEY.encode()),)]
    assert P.TEST_KEY.encode() not in wh.read_bytes()


# -- file permissions ------------------------------------------------------------------------

def _private(p: Path) -> bool:
    return stat.S_IMODE(p.stat().st_mode) & 0o077 == 0


def test_the_warehouse_and_its_half_built_copy_are_owner_only(tmp_path: Path):
    old = os.umask(0o022)
    try:
        wh = tmp_path / "w.duckdb"
        for _ in range(2):  # first a new file, then a copy of the live one
            with build_next(wh) as con:
                con.execute("CREATE TABLE IF NOT EXISTS t AS SELECT range AS i FROM range(1000)")
                con.execute("INSERT INTO t SELECT range FROM range(100000)")
                half_built = [p for p in tmp_path.rglob("*") if ".next-" in str(p)]
                assert half_built
                for p in half_built:
                    assert _private(p), (p, oct(p.stat().st_mode))
            assert stat.S_IMODE(wh.stat().st_mode) == 0o600
        # A warehouse made world-readable by an older version becomes owner-only at its next load.
        wh.chmod(0o644)
        with build_next(wh):
            pass
        assert stat.S_IMODE(wh.stat().st_mode) == 0o600
    finally:
        os.umask(old)
