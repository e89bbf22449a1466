"""Languages as the contract stores them: ISO 639-1 codes (`en`, `es`, `fr`), one rule.

A response's `language` (the language the survey was taken in) and an exchange's working
language (free text such as "English") are read with the same lookup: an ISO 639-1 code, an
ISO 639-2/3 code (`spa`, bibliographic `fre`), the English name pycountry gives ("Spanish",
also without its parenthesis: "Swahili" for "Swahili (macrolanguage)", "Greek" for "Modern
Greek (1453-)"), or the language's own name for the languages of the program (`ENDONYMS`:
"español", "français", "Deutsch", …). Case and surrounding spaces do not matter, and a region
subtag is dropped (`es-MX`, `pt_BR`, `en-GB` → `es`, `pt`, `en`). Anything else is unknown:
a response's unknown language is rejected with the rule `language`; an exchange's language
that is not one of these (e.g. "English and Spanish") gives its answers no default language.
Only languages that have an ISO 639-1 code can be stored.
"""

from __future__ import annotations

import re
from functools import cache

import pandas as pd
import pycountry

__all__ = ["ENDONYMS", "language_code", "language_table", "key_sql", "name_of"]

# The languages' own names (lower case), for the languages the demo program and the shipped
# wordings use; pycountry knows only English names.
ENDONYMS: dict[str, str] = {
    "english": "en", "español": "es", "espanol": "es", "castellano": "es", "français": "fr",
    "francais": "fr", "deutsch": "de", "italiano": "it", "português": "pt", "portugues": "pt",
    "nederlands": "nl", "svenska": "sv", "suomi": "fi", "polski": "pl", "ελληνικά": "el",
    "greek": "el", "kiswahili": "sw", "swahili": "sw", "bahasa indonesia": "id",
    "tiếng việt": "vi", "tieng viet": "vi", "日本語": "ja", "한국어": "ko", "türkçe": "tr",
    "turkce": "tr", "العربية": "ar", "हिन्दी": "hi", "русский": "ru", "中文": "zh",
}
# A region or script subtag after the language (BCP 47 `es-MX`, POSIX `pt_BR`) is dropped.
_SUBTAG = r"^([a-z]{2,3})[-_][a-z0-9]+([-_][a-z0-9]+)*$"


@cache
def _keys() -> dict[str, str]:
    out: dict[str, str] = {}
    for lang in pycountry.languages:
        code = getattr(lang, "alpha_2", None)
        if not code:
            continue
        names = [lang.name, re.sub(r"\s*\(.*\)$", "", lang.name)]
        names += [getattr(lang, a, None) for a in ("alpha_2", "alpha_3", "bibliographic",
                                                   "common_name")]
        for v in names:
            if v:
                out.setdefault(v.strip().lower(), code)
    out.update(ENDONYMS)
    return out


def _key(text: str) -> str:
    k = " ".join(text.strip().lower().split())
    return re.sub(_SUBTAG, r"\1", k)


def language_code(text: str | None) -> str | None:
    """The ISO 639-1 code `text` names, or None when it names none (see the module docstring).

    >>> language_code("Spanish"), language_code("español"), language_code("fr-CA")
    ('es', 'es', 'fr')
    >>> language_code("Klingon") is None
    True
    """
    if text is None or not str(text).strip():
        return None
    return _keys().get(_key(str(text)))


def name_of(code: str) -> str:
    """English name of an ISO 639-1 code, for labels ("es" → "Spanish"); the code if unknown."""
    lang = pycountry.languages.get(alpha_2=code)
    return re.sub(r"\s*\(.*\)$", "", lang.name) if lang else code


def language_table() -> pd.DataFrame:
    """Lookup keys (as `key_sql` spells a value) and their ISO 639-1 code, for the loader's SQL."""
    keys = _keys()
    return pd.DataFrame({"key": list(keys), "code": list(keys.values())})


def key_sql(expr: str) -> str:
    """SQL spelling `expr` as a key of `language_table` (lower case, spaces, subtag dropped)."""
    return (f"regexp_replace(regexp_replace(lower(trim({expr})), '\\s+', ' ', 'g'), "
            f"'{_SUBTAG}', '\\1')")
