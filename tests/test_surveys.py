"""Instruments as data: validation of the YAML, and a new instrument needing no code."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml

import surveys
from surveys import InstrumentError, load_instruments, parse_instrument
from tests import program as P

GOOD = {
    "id": "wellbeing", "version": 1, "title": "Well-being",
    "scales": [{"id": "mood", "label": "Mood", "items": ["wb_1", "wb_2", "wb_3"],
                "reverse": ["wb_2"], "min": 0, "max": 10, "min_items": 0.6}],
}


def test_shipped_instruments_cover_the_five_constructs():
    inst = load_instruments(surveys.SURVEYS_DIR)
    assert set(inst) == {"icc", "collab", "digital", "gcit", "flc"}
    for i in inst.values():
        for s in i.scales:
            assert set(s.reverse) <= set(s.items)
            assert 1 <= s.min_items <= len(s.items)
            assert all(s.wording[item]["en"] for item in s.items)


def test_min_items_as_a_share_rounds_up():
    assert parse_instrument(GOOD).scales[0].min_items == 2  # 0.6 of 3 items


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("scales"), "missing field 'scales'"),
        (lambda d: d["scales"][0].update(reverse=["wb_9"]), "reverse-coded items ['wb_9']"),
        (lambda d: d["scales"][0].update(min=5, max=1), "'min' (5) must be below 'max' (1)"),
        (lambda d: d["scales"][0].update(min_items=7), "'min_items' must be a count from 1 to 3"),
        (lambda d: d["scales"][0].update(items=["wb_1", "wb_1"], reverse=[]),
         "lists an item twice"),
        (lambda d: d.update(version="one"), "field 'version' must be int"),
        (lambda d: d["scales"][0].update(max=True), "field 'max' must be int or float"),
        (lambda d: d["scales"][0].update(label={"es": "Ánimo"}),
         "field 'label' must be a text, or texts by language with English"),
        (lambda d: d.update(title=3), "field 'title' must be a text"),
    ],
)
def test_a_malformed_instrument_is_refused_naming_file_and_field(tmp_path: Path, change, message):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    change(doc)
    f = tmp_path / "wellbeing.yaml"
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(InstrumentError) as e:
        load_instruments(tmp_path)
    assert str(f) in str(e.value) and message in str(e.value)


def test_titles_and_labels_may_be_given_per_language_with_english_kept_for_exports():
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["title"] = {"en": "Well-being", "es": "Bienestar"}
    doc["scales"][0]["label"] = {"en": "Mood", "fr": "Humeur"}
    inst = parse_instrument(doc)
    assert (inst.title, inst.title_in("es"), inst.title_in("fr")) == ("Well-being", "Bienestar",
                                                                       "Well-being")
    mood = inst.scales[0]
    assert (mood.label, mood.label_in("fr"), mood.label_in("es")) == ("Mood", "Humeur", "Mood")
    shipped = load_instruments(surveys.SURVEYS_DIR)
    assert all(i.title_in(lang) != i.title and s.label_in(lang) != s.label
               for i in shipped.values() for s in i.scales for lang in ("es", "fr"))


def test_an_item_in_two_instruments_is_refused(tmp_path: Path):
    for name in ("a", "b"):
        doc = {**GOOD, "id": name}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(InstrumentError, match="item 'wb_1' is also an item of instrument 'a'"):
        load_instruments(tmp_path)


def test_adding_a_yaml_file_adds_an_instrument_to_the_loader(tmp_path: Path):
    folder = tmp_path / "instruments"
    folder.mkdir()
    for f in surveys.SURVEYS_DIR.glob("*.yaml"):
        (folder / f.name).write_text(f.read_text())
    (folder / "wellbeing.yaml").write_text(yaml.safe_dump(GOOD))
    src = P.write_program(tmp_path / "in")
    P.write_csv(src / "responses.csv", [
        {"participant_id": "STU-0001", "exchange_id": "E1", "wave": "pre",
         "submitted_at": "2026-01-12T09:00:00Z", "wb_1": "7", "wb_2": "11", "wb_3": "0"},
    ])
    wh = tmp_path / "w.duckdb"
    res = P.run_etl("load", str(src), "--warehouse", str(wh),
                    env={"EXCHANGE_IMPACT_SURVEYS": str(folder)})
    assert res.returncode == 3, res.stdout + res.stderr
    con = duckdb.connect(str(wh), read_only=True)
    rows = con.execute("SELECT instrument, item, value FROM responses ORDER BY item").fetchall()
    rejects = con.execute("SELECT column_name, rule FROM rejects WHERE file LIKE '%responses.csv'"
                          ).fetchall()
    con.close()
    assert rows == [("wellbeing", "wb_1", 7.0), ("wellbeing", "wb_3", 0.0)]
    assert rejects == [("wb_2", "range")]  # 11 on a 0–10 item


def test_every_shipped_item_is_worded_in_english_spanish_and_french():
    inst = load_instruments(surveys.SURVEYS_DIR)
    for i in inst.values():
        assert set(surveys.WORDING_LANGUAGES) <= set(i.languages), i.id
        for s in i.scales:
            for item in s.items:
                texts = {c: s.wording[item][c].strip() for c in ("en", "es", "fr")}
                assert all(texts.values()), item
                # three texts, not one copied: a translation differs from the English
                assert len(set(texts.values())) == 3, item


def _worded(**texts: str) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["scales"][0]["wording"] = {i: dict(texts) for i in ("wb_1", "wb_2", "wb_3")}
    return doc


def test_an_item_without_one_of_the_three_languages_is_refused_naming_file_and_item(
        tmp_path: Path):
    doc = _worded(en="I feel fine.", es="Me siento bien.", fr="Je me sens bien.")
    del doc["scales"][0]["wording"]["wb_2"]["fr"]
    f = tmp_path / "wellbeing.yaml"
    f.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(InstrumentError) as e:
        load_instruments(tmp_path)
    assert str(f) in str(e.value) and "item 'wb_2' has no wording in fr" in str(e.value)


def test_wording_languages_are_iso_639_1_and_an_instrument_may_name_its_own():
    with pytest.raises(InstrumentError, match="language 'spanish', not an ISO 639-1 code"):
        parse_instrument(_worded(en="a", es="b", fr="c", spanish="d"))
    own = _worded(en="I feel fine.", pt="Sinto-me bem.")
    own["languages"] = ["en", "pt"]
    assert parse_instrument(own).languages == ("en", "pt")
    assert parse_instrument(GOOD).languages == ()  # no wording at all: a data-only instrument
