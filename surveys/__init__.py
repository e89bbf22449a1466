"""Survey instruments as data: one YAML file per instrument in this folder.

`load_instruments()` reads and validates every `*.yaml` here (or in a folder you name) and
returns `Instrument` objects; a malformed file raises `InstrumentError` naming the file and the
field. Adding an instrument is adding a file: the loader, the scoring in
`analytics.stats.scales` and the dashboard all work from these objects.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Instrument", "Scale", "InstrumentError", "load_instruments", "item_index",
           "SURVEYS_DIR", "WORDING_LANGUAGES"]

# Every item of an instrument that gives wording has it in each of these languages (ISO 639-1),
# unless the instrument names its own list (`languages: [en, pt]`). The shipped wordings are the
# project's own translations, not validated adaptations of published instruments.
WORDING_LANGUAGES: tuple[str, ...] = ("en", "es", "fr")

# The shipped instruments live beside this file; EXCHANGE_IMPACT_SURVEYS names another folder
# (a deployment's own instruments, or a test's).
SURVEYS_DIR = Path(__file__).resolve().parent
SURVEYS_ENV = "EXCHANGE_IMPACT_SURVEYS"


class InstrumentError(ValueError):
    """An instrument file breaks the instrument schema."""


@dataclass(frozen=True)
class Scale:
    id: str
    label: str
    items: tuple[str, ...]
    reverse: tuple[str, ...]
    min: float
    max: float
    min_items: int  # answered items needed for a valid score
    wording: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)
    labels: dict[str, str] = field(default_factory=dict, compare=False)  # label by language

    def label_in(self, lang: str) -> str:
        """The scale's label in `lang` where the instrument gives it, else its English one."""
        return self.labels.get(lang) or self.label


@dataclass(frozen=True)
class Instrument:
    id: str
    version: int
    title: str
    scales: tuple[Scale, ...]
    path: str = ""
    description: str = ""
    languages: tuple[str, ...] = ()  # ISO 639-1 codes every item has wording in
    titles: dict[str, str] = field(default_factory=dict, compare=False)  # title by language

    def title_in(self, lang: str) -> str:
        """The instrument's title in `lang` where it gives it, else its English one."""
        return self.titles.get(lang) or self.title

    @property
    def items(self) -> list[str]:
        return [i for s in self.scales for i in s.items]

    def scale(self, scale_id: str) -> Scale:
        for s in self.scales:
            if s.id == scale_id:
                return s
        raise KeyError(f"instrument {self.id!r} has no scale {scale_id!r}")


def _need(d: dict, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in d:
        raise InstrumentError(f"{where}: missing field '{key}'")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, kind):  # YAML's yes/no are not numbers
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InstrumentError(f"{where}: field '{key}' must be {name}, got {v!r}")
    return v


def _texts(d: dict, key: str, where: str, default: str | None = None
           ) -> tuple[str, dict[str, str]]:
    """A title or label: a text (English), or a mapping of texts by language that has English
    ({en: Global agency, es: Agencia global}). Returns the English text and the mapping."""
    v = d.get(key, default)
    if v is None:
        raise InstrumentError(f"{where}: missing field '{key}'")
    if isinstance(v, str):
        return v, {"en": v}
    if (not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(t, str) and t
                                           for k, t in v.items()) or "en" not in v):
        raise InstrumentError(f"{where}: field '{key}' must be a text, or texts by language "
                              f"with English (en: ...), got {v!r}")
    return v["en"], dict(v)


def _parse_scale(d: dict, where: str) -> Scale:
    if not isinstance(d, dict):
        raise InstrumentError(f"{where}: a scale must be a mapping")
    sid = _need(d, "id", where, str)
    where = f"{where} scale '{sid}'"
    items = _need(d, "items", where, list)
    if not items or not all(isinstance(i, str) and i for i in items):
        raise InstrumentError(f"{where}: 'items' must be a non-empty list of item ids")
    if len(set(items)) != len(items):
        raise InstrumentError(f"{where}: 'items' lists an item twice")
    reverse = d.get("reverse") or []
    unknown = [r for r in reverse if r not in items]
    if unknown:
        raise InstrumentError(f"{where}: reverse-coded items {unknown} are not in 'items'")
    lo = _need(d, "min", where, (int, float))
    hi = _need(d, "max", where, (int, float))
    if not lo < hi:
        raise InstrumentError(f"{where}: 'min' ({lo}) must be below 'max' ({hi})")
    mi = d.get("min_items", len(items))
    if isinstance(mi, float) and 0 < mi <= 1:  # a share of the items
        mi = math.ceil(mi * len(items) - 1e-9)
    if not isinstance(mi, int) or isinstance(mi, bool) or not 1 <= mi <= len(items):
        raise InstrumentError(
            f"{where}: 'min_items' must be a count from 1 to {len(items)} or a share in (0, 1], "
            f"got {mi!r}"
        )
    wording = d.get("wording") or {}
    if not isinstance(wording, dict) or any(k not in items for k in wording):
        raise InstrumentError(
            f"{where}: 'wording' must map item ids of this scale to texts by language")
    label, labels = _texts(d, "label", where, default=sid)
    return Scale(sid, label, tuple(items), tuple(reverse), float(lo), float(hi), mi, wording,
                 labels)


def parse_instrument(doc: object, path: str = "<memory>") -> Instrument:
    """Validate one instrument document (the parsed YAML) and build the `Instrument`."""
    if not isinstance(doc, dict):
        raise InstrumentError(f"{path}: an instrument file must be a mapping")
    iid = _need(doc, "id", path, str)
    version = _need(doc, "version", path, int)
    title, titles = _texts(doc, "title", path)
    scales_raw = _need(doc, "scales", path, list)
    if not scales_raw:
        raise InstrumentError(f"{path}: 'scales' is empty")
    scales = tuple(_parse_scale(s, f"{path}") for s in scales_raw)
    seen: set[str] = set()
    for s in scales:
        dup = seen.intersection(s.items)
        if dup:
            raise InstrumentError(f"{path}: items {sorted(dup)} belong to more than one scale")
        seen.update(s.items)
    if len({s.id for s in scales}) != len(scales):
        raise InstrumentError(f"{path}: two scales share an id")
    languages = _check_wording(doc, scales, path)
    return Instrument(iid, version, title, scales, path, str(doc.get("description", "")),
                      languages, titles)


def _check_wording(doc: dict, scales: tuple[Scale, ...], path: str) -> tuple[str, ...]:
    """The languages every item is worded in; refuse an item that lacks one of them.

    An instrument that gives no wording at all (a data-only instrument, e.g. for a re-analysis)
    has none. Otherwise each item needs a non-empty text in each language of `languages`
    (default `WORDING_LANGUAGES`: en, es, fr), and every language key is an ISO 639-1 code.
    """
    import pycountry

    if not any(s.wording for s in scales) and "languages" not in doc:
        return ()
    langs = doc.get("languages", list(WORDING_LANGUAGES))
    if (not isinstance(langs, list) or not langs
            or not all(isinstance(x, str) and x for x in langs)):
        raise InstrumentError(f"{path}: 'languages' must be a non-empty list of ISO 639-1 codes")
    for s in scales:
        for item in s.items:
            texts = s.wording.get(item) or {}
            if not isinstance(texts, dict):
                raise InstrumentError(f"{path} scale '{s.id}': wording of '{item}' must map "
                                      "language codes to texts")
            for code in texts:
                if not isinstance(code, str) or pycountry.languages.get(alpha_2=code) is None:
                    raise InstrumentError(f"{path} scale '{s.id}': wording of '{item}' has "
                                          f"language {code!r}, not an ISO 639-1 code")
            lacking = [c for c in langs
                       if not isinstance(texts.get(c), str) or not texts[c].strip()]
            if lacking:
                raise InstrumentError(
                    f"{path} scale '{s.id}': item '{item}' has no wording in "
                    f"{', '.join(lacking)} (every item is worded in {', '.join(langs)})")
    return tuple(langs)


@cache
def _load(folder: str) -> tuple[Instrument, ...]:
    out: list[Instrument] = []
    for p in sorted(Path(folder).glob("*.yaml")):
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise InstrumentError(f"{p}: not valid YAML ({e})") from e
        out.append(parse_instrument(doc, str(p)))
    ids = [i.id for i in out]
    for i in set(ids):
        if ids.count(i) > 1:
            raise InstrumentError(f"{folder}: instrument id '{i}' is defined in more than one file")
    owner: dict[str, str] = {}
    for inst in out:
        for item in inst.items:
            if item in owner:
                raise InstrumentError(
                    f"{inst.path}: item '{item}' is also an item of instrument '{owner[item]}'"
                )
            owner[item] = inst.id
    return tuple(out)


def load_instruments(folder: str | Path | None = None) -> dict[str, Instrument]:
    """All instruments in `folder` (default: $EXCHANGE_IMPACT_SURVEYS, else this package's
    folder)."""
    folder = folder or os.environ.get(SURVEYS_ENV) or SURVEYS_DIR
    return {i.id: i for i in _load(str(Path(folder).resolve()))}


def item_index(instruments: dict[str, Instrument]) -> dict[str, tuple[Instrument, Scale]]:
    """Map every item id to its instrument and scale."""
    return {item: (inst, s)
            for inst in instruments.values() for s in inst.scales for item in s.items}
