"""The filter model: what the filter bar selects (`Filters`), the values the data allows
(`FilterOptions`), the URL's query string in both directions, and each page's own view keys.

A shareable link holds two kinds of keys, listed once here: the filters every page applies
(`FILTER_KEYS`: program, cluster, country, exchange, term, role, modality, setting, from, to)
and a page's view keys (`PAGE_VIEWS`: `/participation?by=country`, `/outcomes?effect=diff`),
the controls that change what one page shows. `parse_filters` reads the filters and flags
any other key that is neither; `parse_view` reads one page's view keys; `page_query` writes
the canonical query string of both. Nothing here touches the warehouse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlencode

__all__ = [
    "Filters",
    "FilterOptions",
    "GROUPINGS",
    "EQUITY_GROUPINGS",
    "ACTIVITY_GROUPINGS",
    "EFFECTS",
    "FILTER_KEYS",
    "PAGE_VIEWS",
    "ViewKey",
    "view_keys",
    "parse_filters",
    "parse_view",
    "known_filters",
    "canonical_filters",
    "month_start",
    "month_end",
    "view_query",
    "page_query",
]

# The page-level groupings a user can choose, value -> label.
GROUPINGS: dict[str, str] = {
    "cluster": "Cluster",
    "country": "Country",
    "modality": "Modality",
    "setting": "Setting",
}
EQUITY_GROUPINGS: dict[str, str] = {
    "gender": "Gender",
    "age_band": "Age band",
    "connectivity": "Connectivity",
    "income_group": "Country income group",
}
# The Participation page's weekly activity: by cluster or by country.
ACTIVITY_GROUPINGS: dict[str, str] = {"cluster": "Cluster", "country": "Country"}
# The Outcomes page's effect sizes (its labels live with the page).
EFFECTS: tuple[str, ...] = ("hedges_g", "diff")

_LIST_FIELDS = ("program", "cluster", "country", "exchange", "term", "role", "modality", "setting")
_DATE_FIELDS = {"start": "from", "end": "to"}  # field -> query-string key
# Every query-string key of a filter, in the order the canonical query string writes them.
FILTER_KEYS: tuple[str, ...] = (*_LIST_FIELDS, *_DATE_FIELDS.values())



@dataclass(frozen=True)
class ViewKey:
    """One view key of a page: the values the page offers (None: the data decides, e.g. a
    scale's name, and the page checks it against its options) and the value it shows when the
    link has none (None: the page's first option); a default is left out of the link."""

    allowed: tuple[str, ...] | None
    default: str | None = None


# Per page path: its view keys.
# Keys of a link that are neither a filter nor a page's view: the interface's language
# (`?lang=es`, pages/_i18n.py), kept in the address bar beside the filters.
LINK_KEYS = frozenset({"lang"})

PAGE_VIEWS: dict[str, dict[str, ViewKey]] = {
    "/participation": {"by": ViewKey(tuple(ACTIVITY_GROUPINGS), "cluster")},
    "/outcomes": {"by": ViewKey(tuple(GROUPINGS), "modality"),
                  "effect": ViewKey(EFFECTS, "hedges_g"), "scale": ViewKey(None)},
    "/equity": {"by": ViewKey(tuple(EQUITY_GROUPINGS), "gender"), "scale": ViewKey(None, "all")},
}
# Issue 13: the Partnerships page's persistence view (subject:grouping of res_persistence).
PERSISTENCE_GROUPINGS: dict[str, str] = {
    "partnership:kind": "Partnerships: domestic vs cross-border",
    "partnership:modality": "Partnerships: modality",
    "partnership:cluster": "Partnerships: cluster",
    "partnership:link": "Partnerships: classroom-to-classroom vs single-class",
    "participant:modality": "Participants: modality",
    "participant:setting": "Participants: setting",
}
PAGE_VIEWS["/partnerships"] = {"persist": ViewKey(tuple(PERSISTENCE_GROUPINGS),
                                                  "partnership:kind")}
# Issue 13: the Overview page's cost view (group_by of res_cost).
COST_GROUPINGS: dict[str, str] = {"program": "program", "cluster": "cluster"}
PAGE_VIEWS.setdefault("/", {})["cost"] = ViewKey(tuple(COST_GROUPINGS), "program")


def view_keys(page: str | None = None) -> frozenset[str]:
    """The view keys of `page` (a path such as '/participation'), or of any page when None."""
    if page is not None:
        return frozenset(PAGE_VIEWS.get(page, {}))
    return frozenset(k for keys in PAGE_VIEWS.values() for k in keys)


@dataclass(frozen=True)
class Filters:
    """What the filter bar selects. Empty tuple = no restriction. Hashable (cache key)."""

    program: tuple[str, ...] = ()
    cluster: tuple[str, ...] = ()
    country: tuple[str, ...] = ()
    exchange: tuple[str, ...] = ()
    term: tuple[str, ...] = ()
    role: tuple[str, ...] = ()
    modality: tuple[str, ...] = ()
    setting: tuple[str, ...] = ()
    start: date | None = None
    end: date | None = None

    def pairs(self) -> list[tuple[str, str]]:
        """(query-string key, value) of each filter set, in `FILTER_KEYS` order."""
        pairs: list[tuple[str, str]] = []
        for name in _LIST_FIELDS:
            vals = getattr(self, name)
            if vals:
                pairs.append((name, ",".join(vals)))
        for name, key in _DATE_FIELDS.items():
            d = getattr(self, name)
            if d is not None:
                pairs.append((key, d.isoformat()))
        return pairs

    def to_query(self) -> str:
        """The canonical query string ('' when nothing is selected), e.g. '?country=FRA,KEN'."""
        return _encode(self.pairs())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for a dcc.Store."""
        out: dict[str, Any] = {n: list(getattr(self, n)) for n in _LIST_FIELDS}
        for name in _DATE_FIELDS:
            d = getattr(self, name)
            out[name] = d.isoformat() if d else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Filters:
        """Inverse of `to_dict`; tolerant of missing keys (an empty store means no filter).

        Raises ValueError, naming the field, for a shape no filter bar sends (a list or number
        instead of the dict, a list of numbers instead of texts): a forged request, refused
        rather than guessed at. Values are not checked against the data here; see
        `known_filters`."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"filters must be an object of field: [values], not "
                             f"{type(data).__name__}")
        kw: dict[str, Any] = {}
        for n in _LIST_FIELDS:
            v = data.get(n) or ()
            items = [v] if isinstance(v, str) else v
            if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
                raise ValueError(f"filter {n!r} must be a list of texts")
            kw[n] = tuple(sorted(set(items)))
        for n in _DATE_FIELDS:
            v = data.get(n)
            if v is not None and not isinstance(v, str | date):
                raise ValueError(f"filter {n!r} must be a date YYYY-MM-DD or empty")
            kw[n] = _parse_date(v)
        return cls(**kw)

    @property
    def is_empty(self) -> bool:
        return self == Filters()

    @property
    def restricts_exchanges(self) -> bool:
        return bool(self.program or self.exchange or self.term or self.modality or self.setting)

    @property
    def restricts_dates(self) -> bool:
        return self.start is not None or self.end is not None


@dataclass(frozen=True)
class FilterOptions:
    """The values each filter can take in the current warehouse: field -> ((value, label), …)."""

    options: Mapping[str, tuple[tuple[str, str], ...]]
    first_date: date | None = None
    last_date: date | None = None

    def values(self, name: str) -> set[str]:
        return {v for v, _ in self.options.get(name, ())}


def _encode(pairs: Sequence[tuple[str, str]]) -> str:
    return "?" + urlencode(list(pairs), safe=",") if pairs else ""


def _parse_date(v: Any) -> date | None:
    if v in (None, ""):
        return None
    if isinstance(v, date):
        return v
    try:
        return date.fromisoformat(str(v)[:10])
    except ValueError:
        return None


# A forged link or request may name thousands of unknown values: the note names a few and
# counts the rest, so it stays a line on the page.
_NOTE_EXAMPLES = 3


def _unknown_note(name: str, bad: Sequence[str]) -> str:
    if len(bad) == 1:
        return f"{name}={bad[0]} is not in the data (ignored)"
    shown = ", ".join(bad[:_NOTE_EXAMPLES]) + (", …" if len(bad) > _NOTE_EXAMPLES else "")
    return f"{name}: {len(bad):,} values are not in the data (ignored: {shown})"


def known_filters(f: Filters, options: FilterOptions) -> tuple[Filters, list[str]]:
    """`f` with only the values the data has (`options`), and one note per filter that lost
    any ("country: 3 values are not in the data (ignored: …)").

    The one place callback and link input is checked against the data: an unknown value
    selects nothing anyway, and keeping it would make every forged request a new, ever larger
    query-cache key."""
    notes: list[str] = []
    kw: dict[str, Any] = {}
    for name in _LIST_FIELDS:
        vals = getattr(f, name)
        if not vals:
            continue
        allowed = options.values(name)
        bad = [v for v in vals if v not in allowed]
        if bad:
            notes.append(_unknown_note(name, bad))
            kw[name] = tuple(v for v in vals if v in allowed)
    return (replace(f, **kw) if kw else f), notes


def month_start(d: date) -> date:
    return d.replace(day=1)


def month_end(d: date) -> date:
    nxt = date(d.year + d.month // 12, d.month % 12 + 1, 1)
    return date.fromordinal(nxt.toordinal() - 1)


def canonical_filters(f: Filters, options: FilterOptions) -> Filters:
    """The one request `f` stands for, so that two requests that select the same people are
    the same (disclosure control, `analytics.read.disclosure`): dates snap to whole months (the
    start to the 1st, the end to the month's last day; a one-day difference is not a request),
    a start in or before the data's first month and an end in or after its last month are no
    date limit, and a list that names every value the data has is no filter on it."""
    kw: dict[str, Any] = {}
    for name in _LIST_FIELDS:
        vals = getattr(f, name)
        allowed = options.values(name)
        if vals and allowed and allowed <= set(vals):
            kw[name] = ()
    start = month_start(f.start) if f.start else None
    end = month_end(f.end) if f.end else None
    if start and options.first_date and start <= month_start(options.first_date):
        start = None
    if end and options.last_date and end >= month_end(options.last_date):
        end = None
    if start != f.start:
        kw["start"] = start
    if end != f.end:
        kw["end"] = end
    return replace(f, **kw) if kw else f


def _raw(search: str | Mapping[str, Any] | None) -> dict[str, list[str]]:
    """A query string (or a dict of it) as key -> [values]."""
    if search is None:
        return {}
    if isinstance(search, str):
        return parse_qs(search.lstrip("?"), keep_blank_values=False)
    return {k: (v if isinstance(v, list) else [v]) for k, v in search.items()}


def parse_filters(search: str | Mapping[str, Any] | None,
                  options: FilterOptions | None = None,
                  page: str | None = None) -> tuple[Filters, list[str]]:
    """Parse a URL query string (or a dict of it) into `Filters`, dropping what is invalid.

    Returns the filters and the notes on what was ignored ("country=XYZ is not in the data"),
    so the page can say what it ignored instead of failing. Lists are comma-separated or
    repeated keys. With `options`, values are checked against the data (`known_filters`).
    A page's view keys (`PAGE_VIEWS`; of `page`, or of any page when None) are no filter but
    no mistake either: `parse_view` reads them.
    """
    raw = _raw(search)
    notes: list[str] = []
    kw: dict[str, Any] = {}
    known = set(FILTER_KEYS) | view_keys(page) | LINK_KEYS
    for key in raw:
        if key not in known:
            notes.append(f"'{key}' is not a filter (ignored)")
    for name in _LIST_FIELDS:
        kw[name] = tuple(sorted({p.strip() for v in raw.get(name, [])
                                 for p in str(v).split(",") if p.strip()}))
    for name, key in _DATE_FIELDS.items():
        v = raw.get(key, [None])[-1]
        d = _parse_date(v)
        if v not in (None, "") and d is None:
            notes.append(f"{key}={v} is not a date YYYY-MM-DD (ignored)")
        kw[name] = d
    f = Filters(**kw)
    if options is not None:
        f, dropped = known_filters(f, options)
        notes += dropped
    if f.start and f.end and f.start > f.end:
        notes.append(f"from={f.start} is after to={f.end}; date range ignored")
        f = replace(f, start=None, end=None)
    return f, notes


def parse_view(search: str | Mapping[str, Any] | None, page: str
               ) -> tuple[dict[str, str], list[str]]:
    """`page`'s view keys in a query string: key -> value for each one given with a value the
    page offers (`PAGE_VIEWS`; any text where the data decides), and a note per value dropped.
    Keys that are not `page`'s are left to `parse_filters`."""
    raw = _raw(search)
    view: dict[str, str] = {}
    notes: list[str] = []
    for key, spec in PAGE_VIEWS.get(page, {}).items():
        vals = [str(v).strip() for v in raw.get(key, []) if str(v).strip()]
        if not vals:
            continue
        if spec.allowed is None or vals[-1] in spec.allowed:
            view[key] = vals[-1]
        else:
            notes.append(f"{key}={vals[-1]} is not a view of this page (ignored; one of "
                         f"{', '.join(spec.allowed)})")
    return view, notes


def view_query(page: str, view: Mapping[str, Any] | None,
               defaults: Mapping[str, str] | None = None) -> str:
    """The view part of `page`'s query string ('by=country&effect=diff', '' for none): each of
    its view keys set in `view` to a value the page offers and not its default (`PAGE_VIEWS`,
    or `defaults` where the data decides), in `PAGE_VIEWS` order."""
    pairs: list[tuple[str, str]] = []
    for key, spec in PAGE_VIEWS.get(page, {}).items():
        value = (view or {}).get(key)
        default = (defaults or {}).get(key, spec.default)
        if (isinstance(value, str) and value and value != default
                and (spec.allowed is None or value in spec.allowed)):
            pairs.append((key, value))
    return urlencode(pairs, safe=",")


def page_query(f: Filters, page: str | None = None, view: Mapping[str, Any] | None = None,
               defaults: Mapping[str, str] | None = None) -> str:
    """The canonical query string of a page's shareable URL: the filters, then the page's view
    keys ('?country=FRA&by=country'); '' when neither is set. The address bar's writer
    (pages/_ui.py) joins `Filters.to_query()` and `view_query` the same way."""
    own = view_query(page, view, defaults) if page else ""
    filters = f.to_query()
    if filters and own:
        return f"{filters}&{own}"
    return filters or (f"?{own}" if own else "")
