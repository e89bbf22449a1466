"""What a snapshot holds: the numbers, sentences, tables and figures of each section, gathered
from the same read functions and page figure builders the dashboard uses.

`gather(cur, f)` returns a `Report` (plain data, rendered by `reports.render`). Numbers come
from `analytics.read.*`, whose answers already went through the one small-cell rule
(`analytics.suppression.suppress`; a funder's counts rounded on the way out,
`analytics.read.rounding`), and a table shown beside its total also gets secondary suppression
(`beside_total`); figures are the page callbacks' own Figure dicts (same
builders, same colours), called with the filter store a page would get. A section is added
only when its data exist: no empty placeholder ever reaches the PDF.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from analytics import estimands, suppression
from analytics.read import (
    equity,
    filters,
    loads,
    outcomes,
    overview,
    participation,
    partnerships,
    rounding,
)
from analytics.read.filters import FilterOptions, Filters

__all__ = ["Table", "Fig", "Section", "Report", "gather", "filters_in_words", "effect_sentence",
           "EFFECT_KIND"]

# The effect size every sentence names (res_prepost's hedges_g: g_av with the CR2 interval).
EFFECT_KIND = ("Hedges' g (average-SD standardiser: the mean change over the mean of the pre "
               "and post SDs, small-sample corrected), 95% CI clustered by exchange (CR2)")
# Figure width in CSS px: the A4 text block (210 mm − 2 × 16 mm margins) at 96 px per inch.
FIG_WIDTH = 670
# The tallest figure that fits one page's text block (297 mm − 34 mm margins, less a caption).
MAX_HEIGHT = 850

Cell = tuple[str, bool]  # (text, is a suppression mark)


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[Cell]]
    id: str = ""
    numeric_from: int = 1  # columns from here on are right-aligned


@dataclass
class Fig:
    id: str
    figure: dict[str, Any]
    alt: str
    caption: str


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)  # str (paragraph) | Table | Fig | Sub

    def add(self, *blocks: Any) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self


@dataclass
class Sub:
    """A level-3 heading inside a section."""

    title: str
    id: str = ""


@dataclass
class Report:
    title: str
    lang: str
    filters_text: list[str]
    notes: list[str]
    period: str
    data_version: str
    built_at: str
    generated: str
    sections: list[Section]
    suppressed: list[str]
    headline: dict[str, Any]
    keywords: list[str]
    round_to: int | None = None  # funders: counts rounded to this base (said on the cover)


# ---- formatting -------------------------------------------------------------------------------

def _missing(v: Any) -> bool:
    return v is None or (not isinstance(v, str) and bool(pd.isna(v)))


def fint(v: Any) -> str:
    return "—" if _missing(v) else f"{int(v):,}"


def fnum(v: Any, digits: int = 2) -> str:
    return "—" if _missing(v) else f"{float(v):,.{digits}f}"


def fpct(v: Any) -> str:
    return "—" if _missing(v) else f"{100 * float(v):.0f}%"


def ftext(v: Any) -> str:
    return "" if _missing(v) else str(v)


def fci(lo: Any, hi: Any) -> str:
    return "—" if _missing(lo) or _missing(hi) else f"[{float(lo):.2f}, {float(hi):.2f}]"


ROUNDED_NOTE = ("Rounded counts: every count of people, partnerships and events in this report "
                "is rounded to the nearest multiple of {base}; means, shares and effect sizes "
                "are computed from the exact data.")
# Rows blanked by secondary suppression (`beside_total`) carry this column, and say so.
COMPLEMENT = "_complementary"
COMPLEMENT_LABEL = f"suppressed ({suppression.SECONDARY})"
COMPLEMENT_WHY = ("complementary, hidden too so that a suppressed group cannot be recovered "
                  "as the total shown minus the other groups")


def beside_total(df: pd.DataFrame, n: str, lines: Iterable[str] = ()) -> pd.DataFrame:
    """`df` (a read-layer answer, small cells already blanked) shown beside its total: secondary
    suppression by the one rule (`suppression.protect_blanked`); the rows it adds are marked in
    `COMPLEMENT` for `table` and the methods section."""
    if not len(df):
        return df.assign(**{COMPLEMENT: pd.Series(dtype=bool)})
    before = df.suppressed.astype(bool).to_numpy()
    out = suppression.protect_blanked(df, n=n, lines=list(lines))
    return out.assign(**{COMPLEMENT: out.suppressed.astype(bool).to_numpy() & ~before})


def table(df: pd.DataFrame, columns: dict[str, tuple[str, Callable[[Any], str]]], caption: str,
          *, id_: str = "", suppressed_col: str | None = "suppressed", labels: int = 1,
          whole_row: bool = False) -> Table | None:
    """The report's form of `pages._grid.table`: every row (no "first 200"), and a suppressed row
    shows `SUPPRESSED_LABEL` in each figure cell the small-cell rule blanked, never a number.
    The first `labels` columns name the row; with `whole_row` every other cell of a suppressed
    row is the label, also the counts a stored table keeps (partnerships, the CI level)."""
    if df is None or not len(df):
        return None
    rows: list[list[Cell]] = []
    for _, row in df.iterrows():
        sup = bool(suppressed_col and suppressed_col in row and row[suppressed_col]) or bool(
            suppressed_col and "subset_suppressed" in row and row["subset_suppressed"] is True)
        cells: list[Cell] = []
        mark = (COMPLEMENT_LABEL if COMPLEMENT in row and row[COMPLEMENT] is True
                else suppression.SUPPRESSED_LABEL)
        for i, (col, (_, fmt)) in enumerate(columns.items()):
            val = row[col] if col in row else None
            if sup and i >= labels and (whole_row or _missing(val)):
                cells.append((mark, True))
            else:
                cells.append((fmt(val), False))
        rows.append(cells)
    return Table(caption, [lbl for lbl, _ in columns.values()], rows, id_, numeric_from=labels)


# ---- filters in words -------------------------------------------------------------------------

def _country_name(code: str) -> str:
    import pycountry

    c = pycountry.countries.get(alpha_3=code)
    return f"{c.name} ({code})" if c is not None else code


def filters_in_words(f: Filters, options: FilterOptions) -> list[str]:
    """One line per filter set, with names instead of ids ("Cluster: Andes Schools Network"),
    or one line saying there is no filter."""
    labels = {name: dict(options.options.get(name, ())) for name in options.options}
    lines = []
    for name, title in (("program", "Program"), ("cluster", "Cluster"), ("country", "Country"),
                        ("exchange", "Exchange"), ("term", "Cohort / term"), ("role", "Role"),
                        ("modality", "Modality"), ("setting", "Setting")):
        vals = getattr(f, name)
        if not vals:
            continue
        if name == "country":
            names = [_country_name(v) for v in vals]
        else:
            names = [labels.get(name, {}).get(v, v) for v in vals]
        lines.append(f"{title}: {', '.join(names)}")
    if f.start or f.end:
        lines.append(f"Event dates: {f.start or 'the first'} to {f.end or 'the last'}")
    return lines or ["No filter: every program, cluster, country and exchange"]


def _period(f: Filters, options: FilterOptions) -> str:
    start = f.start or options.first_date
    end = f.end or options.last_date
    if start is None and end is None:
        return "no dated activity in the warehouse"
    return f"{start or '…'} to {end or '…'} (event dates, UTC)"


# ---- the sentences ----------------------------------------------------------------------------

def effect_sentence(label: str, r: Any) -> str:
    """One plain-language sentence for a pre/post row of res_prepost: direction from the CR2
    interval of Hedges' g ("no detectable change" when it includes zero), the means, the mean
    change with its CI, the effect size named, n and the number of exchanges."""
    g, lo, hi = r.hedges_g, r.hedges_g_ci_low_cr2, r.hedges_g_ci_high_cr2
    if _missing(g):
        return f"{label}: no effect size could be estimated for this group."
    if _missing(lo) or _missing(hi):
        verdict = "changed, but its uncertainty could not be estimated"
    elif lo <= 0 <= hi:
        verdict = "showed no detectable change"
    elif g > 0:
        verdict = "rose"
    else:
        verdict = "fell"
    means = ""
    if not _missing(r.mean_pre) and not _missing(r.mean_post):
        means = f" from a mean of {r.mean_pre:.2f} before to {r.mean_post:.2f} after the exchange"
    change = ""
    if not _missing(r.diff):
        change = (f" (mean change {r.diff:+.2f} scale points, 95% CI "
                  f"{fnum(r.diff_ci_low_cr2)} to {fnum(r.diff_ci_high_cr2)})")
    n = f"n = {fint(r.n)} completers"
    if "n_clusters" in r._fields and not _missing(r.n_clusters):
        n += f" in {fint(r.n_clusters)} exchanges"
        if r.n_clusters < 10:
            n += " (fewer than 10 exchanges: read with care)"
    ci = (f"95% CI {lo:.2f} to {hi:.2f}" if not (_missing(lo) or _missing(hi))
          else "no CI")
    zero = " The interval includes zero." if verdict.startswith("showed no") else ""
    return (f"{label} {verdict}{means}{change}: Hedges' g = {g:.2f} ({ci}, average-SD "
            f"standardiser, clustered by exchange, CR2); {n}.{zero}")


# ---- the figures --------------------------------------------------------------------------------

def _print_figure(fig: dict[str, Any], title: str | None = None) -> dict[str, Any]:
    """A page's Figure for paper: the text block's width, the report's font, static (no
    toolbar), and optionally a title without the dashboard's click hint. Data and colours
    are the page's."""
    fig = dict(fig)
    layout = dict(fig.get("layout") or {})
    layout["width"] = FIG_WIDTH
    # One page at most: a taller figure would be cut between pages.
    layout["height"] = min(int(layout.get("height") or 450), MAX_HEIGHT)
    layout["font"] = {**(layout.get("font") or {}), "family": "DejaVu Sans, sans-serif",
                      "size": 11}
    if title is not None:
        layout["title"] = {**(layout.get("title") or {}), "text": title}
    fig["layout"] = layout
    return fig


def _has_data(fig: dict[str, Any]) -> bool:
    return bool(fig.get("data"))


def _store(f: Filters) -> dict[str, Any]:
    return {"filters": f.to_dict(), "query": f.to_query()}


def _wide_gains(g: pd.DataFrame, glabel: str, scale_label: Callable[[Any, Any], str],
                id_: str) -> Table:
    """Gains by an equity grouping as one row per scale and one column per group, each cell
    "mean [95% CI] n"; a suppressed group's cell is the suppression label."""
    groups = sorted(g["group"].astype(str).unique())
    rows: list[list[Cell]] = []
    for (a, b), d in g.groupby(["instrument", "scale"], sort=True):
        cells: list[Cell] = [(scale_label(a, b), False)]
        by_group = {str(r.group): r for r in d.itertuples(index=False)}
        for grp in groups:
            r = by_group.get(grp)
            if r is None:
                cells.append(("", False))
            elif bool(r.suppressed):
                cells.append((suppression.SUPPRESSED_LABEL, True))
            else:
                cells.append((f"{fnum(r.mean)} {fci(r.ci_low_cr2, r.ci_high_cr2)} "
                              f"n = {fint(r.n)}", False))
        rows.append(cells)
    return Table(f"Mean gain post − pre by {glabel.lower()} with the 95% CI clustered by "
                 "exchange (CR2) and n (completers, exchange participants)",
                 ["scale", *groups], rows, id_)


# ---- gather -------------------------------------------------------------------------------------

class _Suppressed:
    """What was suppressed and where, for the methods section."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, groups: Iterable[Any]) -> None:
        groups = sorted({str(g) for g in groups})
        if groups:
            shown = ", ".join(groups[:12]) + (f" and {len(groups) - 12} more"
                                              if len(groups) > 12 else "")
            self.lines.append(f"{where}: {shown}")


def _add_suppressed(sup: _Suppressed, where: str, df: pd.DataFrame, label: str) -> None:
    """`df`'s suppressed rows for the methods section: the small ones, then the complementary
    ones (`beside_total`) under their own line that says why."""
    extra = (df[COMPLEMENT].astype(bool) if COMPLEMENT in df.columns
             else pd.Series(False, index=df.index))
    small = df.suppressed.astype(bool) & ~extra
    sup.add(where, df[small][label])
    sup.add(f"{where} ({COMPLEMENT_WHY})", df[extra][label])


# ---- issue 13's tables: precomputed per data version for the whole program --------------------

PRECOMPUTED = ("Computed once per data version for every participant and partnership of the "
               "program: the filters of this report do not apply.")


def _days(v: Any) -> str:
    return "not reached" if _missing(v) else fint(v)


def _range(lo: Any, hi: Any, fmt: Callable[[Any], str]) -> str:
    return f"{fmt(lo)}–{fmt(hi)}"


def hazard_sentence(r: Any, adjusted_for: Iterable[str] = ()) -> str:
    """One plain sentence for a res_persistence_cox row (a level against its reference): how
    much faster or slower the level's partnerships end, with the 95% CI, and the model named.
    "No detectable difference" when the interval includes 1."""
    level, ref = ftext(r.level), ftext(r.reference)
    if _missing(r.hr):
        return f"{level.capitalize()} vs {ref} partnerships: no hazard ratio could be estimated."
    ci = ("no CI" if _missing(r.ci_low) or _missing(r.ci_high)
          else f"95% CI {_range(r.ci_low, r.ci_high, fnum)}")
    if not (_missing(r.ci_low) or _missing(r.ci_high)) and r.ci_low <= 1 <= r.ci_high:
        verdict = (f"end at a rate not detectably different from {ref} ones (hazard ratio "
                   f"{r.hr:.2f}, {ci}; the interval includes 1)")
    elif r.hr >= 1:
        verdict = f"end {r.hr:.2f}× as fast as {ref} ones ({ci})"
    else:
        verdict = f"end more slowly than {ref} ones, at {r.hr:.2f}× their rate ({ci})"
    adj = sorted(set(adjusted_for))
    model = ("Cox proportional-hazards model (Efron ties)"
             + (f" adjusted for {', '.join(adj)}" if adj else "")
             + ", baseline hazard per cluster, errors clustered by exchange (sandwich)")
    p = "" if _missing(r.p) else f", p = {r.p:.3g}"
    return (f"{level.capitalize()} partnerships {verdict}: {model}; {fint(r.n_level)} {level} "
            f"and {fint(r.n_reference)} {ref} partnerships, {fint(r.ended)} of {fint(r.n)} "
            f"ended{p}.")


def median_sentence(groups: pd.DataFrame) -> str:
    """The Kaplan–Meier median duration per group of res_persistence, with its 95% CI."""
    unit = ftext(groups.unit.dropna().iloc[0]) if groups.unit.notna().any() else "days"
    parts = []
    for g in groups.itertuples(index=False):
        if bool(g.suppressed):
            parts.append(f"{ftext(g.group)} {suppression.SUPPRESSED_LABEL}")
        else:
            parts.append(f"{ftext(g.group)} {_days(g.median)} {unit} (95% CI "
                         f"{_range(g.median_ci_low, g.median_ci_high, _days)})")
    end = groups.data_end.dropna()
    censored = (f"; partnerships still active on {pd.Timestamp(end.iloc[0]):%Y-%m-%d} are "
                "censored there"
                if len(end) else "")
    return f"Kaplan–Meier median duration: {'; '.join(parts)}{censored}."


def _persistence_blocks(cur: duckdb.DuckDBPyConnection, sup: _Suppressed) -> list[Any]:
    """Cross-border vs domestic from res_persistence_cox and res_persistence (issue 13)."""
    cox = partnerships.persistence_cox(cur, "partnership")
    groups = partnerships.persistence_groups(cur, "partnership:kind")
    if not len(cox) and not len(groups):
        return []
    blocks: list[Any] = [Sub("Cross-border vs domestic (whole program)", "persistence-cox"),
                         PRECOMPUTED]
    kind = cox[(cox.term.astype(str) == "kind") & (cox.level.astype(str) == "cross-border")]
    for r in kind.itertuples(index=False):
        if bool(r.suppressed):
            blocks.append(f"Cross-border vs domestic partnerships ({ftext(r.model)}): "
                          f"{suppression.SUPPRESSED_LABEL}.")
        else:
            terms = cox[(cox.model == r.model) & (cox.term.astype(str) != "kind")].term
            blocks.append(hazard_sentence(r, terms.astype(str)))
        break  # the first model is the one the page leads with (partnership_cross_border)
    if len(groups):
        blocks.append(median_sentence(groups))
        at = groups["at_time"].dropna()
        at_text = f"share still active at {fint(at.iloc[0])} days" if len(at) else "S(t)"
        blocks.append(table(groups, {
            "group": ("partnerships", ftext), "n": ("n", fint), "ended": ("ended", fint),
            "median": ("KM median (days)", _days),
            "median_ci_low": ("95% CI low", _days), "median_ci_high": ("95% CI high", _days),
            "survival_at": (at_text, fpct)},
            "Kaplan–Meier median duration of partnerships by kind (whole program)",
            id_="persistence-kind-table", whole_row=True))
        sup.add("Persistence by kind", groups[groups.suppressed.astype(bool)].group)
    if len(cox):
        blocks.append(table(cox, {
            "model": ("model", ftext), "term": ("term", ftext), "level": ("level", ftext),
            "reference": ("vs", ftext), "n_level": ("n (level)", fint),
            "hr": ("hazard ratio", fnum), "ci_low": ("95% CI low", fnum),
            "ci_high": ("95% CI high", fnum),
            "p": ("p", lambda v: "—" if _missing(v) else f"{v:.3g}")},
            "Cox proportional-hazards models of partnership persistence: a hazard ratio above 1 "
            "ends sooner than the reference (Efron ties, baseline hazard per cluster, sandwich "
            "errors clustered by exchange; whole program)", id_="persistence-cox-table",
            labels=4, whole_row=True))
        sup.add("Cox models of persistence", [
            f"{m}: {t} {lv}" for m, t, lv in
            cox[cox.suppressed.astype(bool)][["model", "term", "level"]].itertuples(index=False)])
    return blocks


def _reciprocity_section(cur: duckdb.DuckDBPyConnection, sup: _Suppressed,
                         cluster_names: dict[str, str], store: dict[str, Any]
                         ) -> Section | None:
    """Share of reciprocal partnerships (Wilson CI) overall and by cluster, the one-sided ones
    by id (res_reciprocity_shares, res_reciprocity; composite gain; issue 13)."""
    from pages import partnerships as partnerships_page

    shares = partnerships.reciprocity_shares(cur)
    if not len(shares):
        return None
    label = suppression.SUPPRESSED_LABEL
    sec = Section("reciprocity", "Reciprocity of partnerships")
    overall = shares[shares.group_by.astype(str) == "overall"]
    per_p = partnerships.reciprocity(cur)
    shown_p = per_p[~per_p.suppressed.astype(bool)] if len(per_p) else per_p
    one = (shown_p[shown_p.reciprocity.isin(["a_only", "b_only"])] if len(shown_p)
           else shown_p)
    for o in overall.itertuples(index=False):
        if bool(o.suppressed):
            sec.add(f"Share of reciprocal partnerships in the whole program: {label}.")
            continue
        sec.add(f"Do both sides gain? {fint(o.n_assessable)} of the "
                f"{fint(o.n_partnerships)} partnerships of the program had enough completers "
                f"on both sides to be assessed. Reciprocal (both sides gain): {fint(o.n_both)}, "
                f"a share of {fpct(o.share_reciprocal)} (Wilson 95% CI "
                f"{fpct(o.share_ci_low)} to {fpct(o.share_ci_high)}); one-sided (only one side "
                f"gains): {fint(o.n_a_only + o.n_b_only)}; no clear gain on either side: "
                f"{fint(o.n_neither)}.")
    if len(shown_p):
        fig = partnerships_page.reciprocity(store)[0]
        if _has_data(fig):
            sec.add(Fig("fig-reciprocity", _print_figure(fig),
                        f"Scatter plot of {fint(rounding.count(len(shown_p)))} partnerships: "
                        "mean composite gain of "
                        "side a against side b with 95% intervals, coloured by whether both, "
                        "one or neither side gains; a dotted line marks equal gains.",
                        "Reciprocity: mean composite gain of each side per partnership "
                        "(whole program)"))
    if len(one):
        sec.add("One-sided partnerships (partnership ids): "
                + ", ".join(sorted(one.partnership_id.astype(str))) + ".")
    by = shares[shares.group_by.astype(str) == "cluster"]
    if len(overall) and not overall.suppressed.astype(bool).any():
        by = beside_total(by, "n_participants", ["instrument", "scale"])  # the whole program's
    by = by.assign(
        name=[cluster_names.get(str(g), str(g)) for g in by["group"]],
        one_sided=by.n_a_only + by.n_b_only,
        share_ci=[None if _missing(v) else f"{fpct(v)} [{fpct(lo)}, {fpct(hi)}]"
                  for v, lo, hi in zip(by.share_reciprocal, by.share_ci_low, by.share_ci_high,
                                       strict=True)])
    sec.add(table(pd.concat([overall.assign(
        name="whole program", one_sided=overall.n_a_only + overall.n_b_only,
        share_ci=[None if _missing(v) else f"{fpct(v)} [{fpct(lo)}, {fpct(hi)}]"
                  for v, lo, hi in zip(overall.share_reciprocal, overall.share_ci_low,
                                       overall.share_ci_high, strict=True)]), by],
        ignore_index=True), {
        "name": ("cluster", ftext), "n_assessable": ("assessable", fint),
        "n_both": ("reciprocal", fint), "one_sided": ("one-sided", fint),
        "n_neither": ("neither", fint), "share_ci": ("share reciprocal [Wilson 95% CI]", ftext)},
        "Share of reciprocal partnerships (composite gain), whole program and by cluster",
        id_="reciprocity-table", whole_row=True))
    sec.add(partnerships_page.RECIPROCITY_METHOD)
    _add_suppressed(sup, "Reciprocity by cluster", by, "name")
    if len(per_p):
        sup.add("Reciprocity (partnerships with a side under k)",
                per_p[per_p.suppressed.astype(bool)].partnership_id)
    return sec


def _equity_gap_blocks(cur: duckdb.DuckDBPyConnection, sup: _Suppressed) -> list[Any]:
    """Best- vs worst-served group per grouping for the composite gain and drop-out, with the
    CR2 Bonferroni interval and the groups left out (res_equity_gaps; issue 13)."""
    from pages import equity as equity_page

    parts = []
    for by, glabel in filters.EQUITY_GROUPINGS.items():
        g = equity.equity_gap_table(cur, by)
        if len(g):
            parts.append(g[g.measure.astype(str).isin(["gain", "dropout"])].assign(
                grouping_label=glabel))
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if not len(df):
        return []
    fmt = equity_page.fmt_gap
    sup_rows = df.suppressed.astype(bool).to_numpy()
    df = df.assign(
        what=[equity_page.GAP_MEASURES.get(str(m), str(m)) for m in df.measure],
        best=[None if s or _missing(g) else f"{g}: {fmt(m, v)}" for s, g, m, v in
              zip(sup_rows, df.best_group, df.measure, df.value_best, strict=True)],
        worst=[None if s or _missing(g) else f"{g}: {fmt(m, v)}" for s, g, m, v in
               zip(sup_rows, df.worst_group, df.measure, df.value_worst, strict=True)],
        gap_ci=[None if s or _missing(g) else f"{fmt(m, g)} —" if _missing(lo) or _missing(hi)
                else f"{fmt(m, g)} [{fmt(m, lo)}, {fmt(m, hi)}] at {lv:.1%}"
                for s, m, g, lo, hi, lv in zip(sup_rows, df.measure, df.gap, df.ci_low,
                                               df.ci_high, df.ci_level, strict=True)],
        left_out=[ftext(v) or "none" for v in df.groups_left_out])
    sup.add("Equity gaps", [f"{a}: {b}" for a, b in
                            df[sup_rows][["grouping_label", "what"]].itertuples(index=False)])
    return [Sub("Gaps between the best- and worst-served groups", "equity-gaps"),
            table(df, {"grouping_label": ("grouping", ftext), "what": ("measure", ftext),
                       "best": ("best-served", ftext), "worst": ("worst-served", ftext),
                       "gap_ci": ("gap [CR2 CI, Bonferroni level]", ftext),
                       "n_groups_compared": ("groups compared", fint),
                       "left_out": ("groups left out", ftext)},
                  "Gap between the best- and worst-served groups in the composite gain "
                  "(pre-score SDs) and in drop-out before the post survey (whole program)",
                  id_="equity-gaps-table", labels=2, whole_row=True),
            equity_page.GAPS_METHOD]


DOSE_MEASURES = {"events": "events logged", "minutes": "minutes logged"}


def _dose_blocks(cur: duckdb.DuckDBPyConnection, sup: _Suppressed,
                 scale_label: Callable[[Any, Any], str]) -> list[Any]:
    """The dose–response slope per scale and dose measure with its CR2 CI (res_dose_response;
    issue 13), and the sentence that dose is self-selected."""
    parts = [outcomes.dose_response(cur, m).assign(measure_label=lbl)
             for m, lbl in DOSE_MEASURES.items()]
    df = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(
        len(p) for p in parts) else pd.DataFrame()
    if not len(df):
        return []
    sup_rows = df.suppressed.astype(bool).to_numpy()
    df = df.assign(
        scale_label=[scale_label(a, b) for a, b in zip(df.instrument, df.scale, strict=True)],
        slope=[None if s or _missing(e) else f"{e:.2f} {fci(lo, hi)}" for s, e, lo, hi in
               zip(sup_rows, df.estimate, df.ci_low_cr2, df.ci_high_cr2, strict=True)])
    sup.add("Dose–response", [f"{a} ({b})" for a, b in
                              df[sup_rows][["scale_label", "measure_label"]]
                              .itertuples(index=False)])
    return [Sub("Does more participation go with more gain?", "dose-response"),
            table(df, {"scale_label": ("scale", ftext), "measure_label": ("dose", ftext),
                       "n": ("participants", fint),
                       "slope": ("change per log1p unit [95% CI, CR2]", ftext),
                       "p_cr2": ("p", lambda v: "—" if _missing(v) else
                                 ("< 0.001" if v < 0.001 else f"{v:.3f}")),
                       "n_clusters": ("exchanges", fint)},
                  "Slope of the pre → post change on log1p(dose), adjusted for modality and "
                  "setting (OLS; 95% CI clustered by exchange, CR2 with Satterthwaite df; "
                  "completers of the whole program)", id_="dose-table", labels=2,
                  whole_row=True),
            estimands.DOSE_SELF_SELECTED + " " + PRECOMPUTED]


def _cost_blocks(cur: duckdb.DuckDBPyConnection, sup: _Suppressed) -> list[Any]:
    """Cost per participant, per active participant and per unit of standardised gain per
    program (res_cost; issue 13): the Overview page's table, in short."""
    from pages.overview import _cost_label, _money, _per_gain

    df = overview.cost_results(cur, "program")
    if not len(df):
        return []
    df = df.assign(label=[_cost_label(g, c) for g, c in zip(df.group, df.currency, strict=True)],
                   per_gain=[_per_gain(c, lo, h, u) for c, lo, h, u in zip(
                       df.cost_per_gain, df.cost_per_gain_ci_low, df.cost_per_gain_ci_high,
                       df.unbounded, strict=True)])
    sup.add("Cost per outcome", df[df.suppressed].label)
    sup.add("Cost per unit of gain", df[df.gain_suppressed].label)
    return [table(df, {"label": ("program (currency)", ftext),
                       "n_exchanges_no_budget": ("exchanges without budget", fint),
                       "n_participants": ("participants", fint),
                       "cost_per_participant": ("per participant", _money),
                       "cost_per_active": ("per active participant", _money),
                       "per_gain": ("per unit of gain [95% CI]", ftext)},
                  "Budget per participant, per active participant and per unit of "
                  "standardised gain (one participant, one pre-score SD); ∞: the gain's "
                  "interval reaches 0, no upper bound (95% CI clustered by exchange)",
                  id_="cost-outcome-table"),
            estimands.COST + " " + PRECOMPUTED]


HIDDEN = "hidden for your account"


def hidden_title(title: str) -> str:
    """The heading of a part a scoped PDF replaces with the scope note, in the contents and the
    body alike: what it would have shown, and that it is hidden (no "(whole program)": nothing
    of the whole program is shown)."""
    return f"{title.replace(' (whole program)', '')} ({HIDDEN})"


def _scale_labels() -> dict[tuple[str, str], str]:
    from pages import _ui

    return _ui.scale_labels()


def gather(cur: duckdb.DuckDBPyConnection, f: Filters, *, title: str | None = None,
           lang: str = "en", notes: Iterable[str] = (),
           progress: Callable[[float, str], None] | None = None,
           whole_program: bool = True) -> Report:
    """Everything the snapshot of filters `f` shows, read through cursor `cur` (of the reader
    the pages use, `pages._ui.reader()`, so the page callbacks see the same warehouse).

    `whole_program=False` (an account scoped to some programs or clusters): the sections
    precomputed over all programs (dose, cost, persistence models, reciprocity, equity gaps)
    are left out, each replaced by the note the dashboard's
    pages give such an account (`pages._access.SCOPE_NOTE`)."""
    import app  # noqa: F401  (registers the pages, whose callbacks build the figures)
    from pages import equity as equity_page
    from pages import outcomes as outcomes_page
    from pages import overview as overview_page
    from pages import participation as participation_page
    from pages import partnerships as partnerships_page
    from pages._access import SCOPE_NOTE

    def step(x: float, what: str) -> None:
        if progress is not None:
            progress(x, what)

    options = loads.filter_options(cur)
    f, dropped = filters.known_filters(f, options)
    info = loads.data_info(cur)
    labels = _scale_labels()

    def scale_label(a: Any, b: Any) -> str:
        return labels.get((str(a), str(b)), f"{a} · {b}")

    store = _store(f)
    sup = _Suppressed()
    base = rounding.ROUND_TO.get()  # the caller's rounding of counts (funders), if any

    def whole(blocks: list[Any], title: str, id_: str) -> list[Any]:
        """Blocks of statistics over all programs, or, for a scoped account, the note under a
        heading that says so (the contents list the same heading)."""
        if whole_program or not blocks:
            return blocks
        return [Sub(hidden_title(title), id_), SCOPE_NOTE]

    # What a scoped account's left-out blocks would have listed as suppressed is not said.
    sup_all = sup if whole_program else _Suppressed()
    sections: list[Section] = []
    k = suppression.MIN_CELL
    label = suppression.SUPPRESSED_LABEL

    # -- headline --------------------------------------------------------------------------
    step(0.1, "headline figures")
    h = overview.headline(cur, f)
    waves = overview.completion_by_wave(cur, f)
    head = Section("headline", "Headline figures")
    if h["suppressed"]:
        why = h.get("suppressed_why") or suppression.SMALL_SELECTION
        head.add(f"This selection: {why}. Its figures are {label}. "
                 "Change the filters to see them.")
        sup.add("Headline figures (the whole selection)", ["every figure"])
    else:
        rows = [
            ("Participants (comparison group excluded)", fint(h["participants"])),
            ("Institutions", fint(h["institutions"])),
            ("Countries", fint(h["countries"])),
            ("Clusters", fint(h["clusters"])),
            ("Exchanges with activity in scope", fint(h["exchanges"])),
            ("Events in the activity log", fint(h["events"])),
            ("Partnerships active today", fint(h["partnerships_active"])),
        ]
        if h["active_month_suppressed"]:
            rows.append((f"Active in {ftext(h['active_month_label'])}", label))
        elif not _missing(h["active_month_label"]):
            rows.append((f"Active in {h['active_month_label']}", fint(h["active_month"])))
        head.add(Table("Headline figures for the selection", ["figure", "value"],
                       [[(a, False), (b, b == label)] for a, b in rows], "headline-table"))
    wave_t = table(waves.assign(ratio=[f"{fint(r)} of {fint(i)}" if not s else label
                                       for r, i, s in zip(waves.responded, waves.invited,
                                                          waves.suppressed, strict=True)]),
                   {"wave": ("survey wave", ftext), "rate": ("completion", fpct),
                    "ratio": ("answered of invited", ftext)},
                   "Survey completion per wave: participants (incl. the comparison group) "
                   "with any answer in the wave, over participants in scope",
                   id_="completion-table")
    head.add(wave_t)
    cost = overview.cost_per_participant(cur, f)
    head.add(table(cost, {"currency": ("currency", ftext), "exchanges": ("exchanges", fint),
                          "budget": ("total budget", fint),
                          "participants": ("participants", fint),
                          "per_participant": ("budget per participant",
                                              lambda v: fint(v if _missing(v) else round(v)))},
                   "Cost per participant where budgets exist, per currency (no exchange rates "
                   "assumed): the budgets of the exchanges in scope over all their "
                   "participants", id_="cost-table"))
    sup.add("Cost per participant", cost[cost.suppressed.astype(bool)].currency)
    sup.add("Survey completion", waves[waves.suppressed.astype(bool)].wave)
    sections.append(head)

    # -- where -----------------------------------------------------------------------------
    step(0.2, "where")
    where = Section("where", "Where")
    by_country = overview.participants_by_country(cur, f)
    if len(by_country):
        fig, *_ = overview_page.world_map(store)
        shown = by_country[~by_country.suppressed.astype(bool)]
        small = by_country[by_country.suppressed.astype(bool)]
        top = ", ".join(f"{_country_name(c)} {fint(n)}" for c, n in
                        zip(shown.country.head(5), shown.participants.head(5), strict=True))
        alt = (f"World map shading {len(shown)} countries by their number of participants"
               + (f"; largest: {top}" if top else "")
               + (f"; {len(small)} countries in grey, {label}" if len(small) else "") + ".")
        where.add(Fig("fig-map", _print_figure(fig, "Participants by country"), alt,
                      "Participants by country (countries in grey: " + label + ")"))
        where.add(table(by_country.assign(name=[_country_name(c) for c in by_country.country]),
                        {"name": ("country", ftext), "participants": ("participants", fint),
                         "institutions": ("institutions", fint)},
                        "Participants and institutions per country", id_="country-table"))
        sup.add("Countries", [_country_name(c) for c in small.country])
    clusters = participation.breakdown(cur, f, "cluster")
    if len(clusters):
        where.add(Sub("Clusters", "clusters"))
        fig = participation_page.clusters(store)
        sh = clusters[~clusters.suppressed.astype(bool)]
        alt = ("Horizontal bars of participants per cluster: " + "; ".join(
            f"{g} {fint(n)}" for g, n in zip(sh.group, sh.participants, strict=True)) + "."
               if len(sh) else "Every cluster is " + label + ".")
        where.add(Fig("fig-clusters", _print_figure(fig), alt, "Participants per cluster"))
        where.add(table(clusters, {"group": ("cluster", ftext),
                                   "participants": ("participants", fint),
                                   "active": ("active in the log", fint),
                                   "exchanges": ("exchanges", fint),
                                   "events": ("events", fint)},
                        "Participation per cluster", id_="cluster-table"))
        sup.add("Clusters", clusters[clusters.suppressed.astype(bool)].group)
    if where.blocks:
        sections.append(where)

    # -- outcomes --------------------------------------------------------------------------
    step(0.35, "outcomes")
    out = Section("outcomes", "Outcomes")
    means = outcomes.wave_means(cur, f)
    if len(means):
        fig, _, _ = outcomes_page.waves(store)
        out.add(Sub("Scale means per wave", "wave-means"))
        shown_m = means[~means.suppressed.astype(bool)]
        scales = shown_m[["instrument", "scale"]].drop_duplicates()
        if _has_data(fig):
            fig = _print_figure(fig, "Mean scale score per wave (95% CI clustered by exchange)")
            # On paper the page's side legend takes a third of the width: legend below, and
            # the subplot titles small enough not to run into each other.
            fig["layout"].update(legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 0,
                                         "yanchor": "bottom", "yref": "container"},
                                 margin={**fig["layout"].get("margin", {}), "r": 20, "b": 100})
            for a in fig["layout"].get("annotations", []):
                a["font"] = {**a.get("font", {}), "size": 9}
            out.add(Fig("fig-waves", fig,
                        f"Small multiples, one per scale ({len(scales)}): mean score per survey "
                        "wave with 95% confidence intervals, exchange participants as a solid "
                        "line and the comparison group dashed.",
                        "Mean scale score per wave, filtered participants"))
        out.add(table(means.assign(
            scale_label=[scale_label(a, b) for a, b in zip(means.instrument, means.scale,
                                                           strict=True)],
            arm=["comparison" if c else "participants" for c in means.comparison.astype(bool)],
            ci=[fci(lo, hi) for lo, hi in zip(means.ci_low_cr2, means.ci_high_cr2,
                                              strict=True)]),
            {"scale_label": ("scale", ftext), "wave": ("wave", ftext), "arm": ("group", ftext),
             "n": ("n", fint), "mean": ("mean", fnum), "ci": ("95% CI (CR2)", ftext)},
            "Mean score per scale, wave and group with the 95% CI clustered by exchange",
            id_="wave-means-table"))
        small_m = means[means.suppressed.astype(bool)]
        sup.add("Scale means", [f"{scale_label(a, b)} ({w}{', comparison' if c else ''})"
                                for a, b, w, c in small_m[["instrument", "scale", "wave",
                                                           "comparison"]]
                                .itertuples(index=False)])
    effects, scope = outcomes.prepost_extremes(cur, f, 1000)
    if len(effects):
        out.add(Sub("Change from pre to post, in words", "effects"))
        out.add(f"Computed on: {scope}. Effect size: {EFFECT_KIND}.")
        for r in effects.sort_values(["instrument", "scale"]).itertuples(index=False):
            out.add(effect_sentence(scale_label(r.instrument, r.scale), r))
    for by, name in (("cluster", "cluster"), ("country", "country")):
        # The report's filters (a scoped account's are already its programs) apply: the
        # stored table answers the unfiltered report, any other is computed (issue 17).
        res = outcomes.prepost_slice(cur, f, by)
        if not len(res):
            continue
        figs = []
        if by == "cluster":  # names, not ids, as on the cover
            names = dict(options.options.get("cluster", ()))
            res = res.assign(group=[names.get(str(g), str(g)) for g in res["group"]])
        for inst, d in res.groupby("instrument", sort=True):
            fig, shown_r, _ = outcomes_page.forest_figure(d, by, "hedges_g")
            if not _has_data(fig):
                continue
            what = scale_label(inst, d.scale.iloc[0]).split(": ", 1)[0]
            fig = _print_figure(fig, f"{what}: pre → post effect by {name}")
            figs.append(Fig(f"fig-forest-{by}-{len(figs)}", fig,
                            f"Forest plot for {what}: Hedges' g from pre to post with 95% CIs "
                            f"for each {name} ({shown_r['group'].nunique()} shown), one colour "
                            "per scale; a dotted line marks no change.",
                            f"{what}: pre → post effect by {name} (the report's "
                            "participants)"))
        if figs:
            out.add(Sub(f"Effects by {name}", f"forest-{by}"), *figs)
        sup.add(f"Effects by {name}", res[res.suppressed.astype(bool)]["group"])
    comp = outcomes.comparison_difference(cur, f)
    if len(comp):
        out.add(Sub("Participants vs comparison group", "comparison"))
        out.add(table(comp.assign(
            scale_label=[scale_label(a, b) for a, b in zip(comp.instrument, comp.scale,
                                                           strict=True)],
            ci=[fci(lo, hi) for lo, hi in zip(comp.ci_low_cr2, comp.ci_high_cr2, strict=True)]),
            {"scale_label": ("scale", ftext), "n_exchange": ("n participants", fint),
             "n_comparison": ("n comparison", fint),
             "gain_exchange": ("gain, participants", fnum),
             "gain_comparison": ("gain, comparison", fnum),
             "diff": ("difference", fnum), "ci": ("95% CI (CR2)", ftext)},
            "Completers' mean gain post − pre: participants minus comparison group "
            "(difference-in-differences; filtered)", id_="comparison-table"))
        sup.add("Participants vs comparison", [
            scale_label(a, b) for a, b in comp[comp.suppressed.astype(bool)][
                ["instrument", "scale"]].itertuples(index=False)])
    out.add(*whole(_dose_blocks(cur, sup_all, scale_label),
                   "Does more participation go with more gain?", "dose-response"))
    if out.blocks:
        out.add(Sub("What these estimates assume", "assumptions"))
        out.add(estimands.COMPLETERS, estimands.DID_ASSUMPTION,
                estimands.MODEL + " " + estimands.MODEL_MISSING,
                "Clustering: participants of one exchange are not independent, so every "
                "interval is cluster-robust by exchange (CR2 with Satterthwaite degrees of "
                "freedom, as R clubSandwich); estimates resting on fewer than 10 exchanges "
                "are flagged.")
        sections.append(out)
    # Issue 13: cost per outcome, whole program (after the outcomes it divides by).
    cost_blocks = whole(_cost_blocks(cur, sup_all), "Cost per outcome", "cost-outcome")
    if cost_blocks:
        cost_title = "What an outcome costs"
        sections.append(Section("cost", cost_title if whole_program else hidden_title(cost_title))
                        .add(*cost_blocks))

    # -- partnerships ----------------------------------------------------------------------
    step(0.55, "partnerships")
    summary = partnerships.partnership_summary(cur, f)
    part = Section("partnerships", "Persistence of partnerships")
    if len(summary):
        fig, _, _ = partnerships_page.persistence(store)
        if _has_data(fig):
            part.add(Fig("fig-persistence", _print_figure(fig),
                         "Kaplan–Meier curves of the share of partnerships still active by "
                         "days since they started, domestic and cross-border, with 95% bands.",
                         "Partnership persistence (Kaplan–Meier, 95% CI)"))
        part.add(table(summary, {
            "kind": ("partnerships", ftext), "n": ("n", fint), "active": ("still active", fint),
            "median_days": ("median days so far", fint),
            "median_km": ("KM median duration (days)",
                          lambda v: "not reached" if _missing(v) else fint(v))},
            "Partnerships in scope; still-active ones are censored today",
            id_="partnership-table"))
        sup.add("Partnerships", summary[summary.suppressed.astype(bool)].kind)
    part.add(*whole(_persistence_blocks(cur, sup_all),
                    "Cross-border vs domestic (whole program)", "persistence-cox"))
    if part.blocks:
        sections.append(part)
    recip = _reciprocity_section(cur, sup_all, dict(options.options.get("cluster", ())), store)
    if recip is not None:
        sections.append(recip if whole_program else Section(
            recip.id, hidden_title(recip.title)).add(SCOPE_NOTE))

    # -- equity ----------------------------------------------------------------------------
    step(0.65, "equity")
    eq = Section("equity", "Equity: gains by group")
    for by, glabel in filters.EQUITY_GROUPINGS.items():
        g = equity.gains_by_group(cur, f, by)
        if not len(g):
            continue
        eq.add(_wide_gains(g, glabel, scale_label, f"equity-{by}-table"))
        sup.add(f"Gains by {glabel.lower()}", [
            f"{scale_label(a, b)}: {grp}" for a, b, grp in
            g[g.suppressed.astype(bool)][["instrument", "scale", "group"]]
            .itertuples(index=False)])
    eq.add(*whole(_equity_gap_blocks(cur, sup_all),
                  "Gaps between the best- and worst-served groups", "equity-gaps"))
    if eq.blocks:
        eq.blocks.insert(0, estimands.COMPLETERS)
        sections.append(eq)

    # -- attrition -------------------------------------------------------------------------
    step(0.75, "attrition")
    funnel = equity.attrition_funnel(cur, f)
    if len(funnel) and not (not funnel.suppressed.any() and funnel.n.iloc[0] == 0):
        att = Section("attrition", "Attrition")
        fig = equity_page.funnel(store)
        if _has_data(fig):
            att.add(Fig("fig-funnel", _print_figure(fig),
                        "Funnel of participants reaching each stage: " + "; ".join(
                            f"{s} {fint(n)}" for s, n in zip(funnel.stage, funnel.n,
                                                               strict=True)) + ".",
                        "Attrition funnel: participants reaching each stage"))
        att.add(table(funnel, {"stage": ("stage", ftext), "n": ("participants", fint),
                               "share": ("of enrolled", fpct)},
                      "Participants reaching each stage", id_="funnel-table"))
        sup.add("Attrition stages", funnel[funnel.suppressed.astype(bool)].stage)
        d = equity.dropout_by_group(cur, f, "gender")
        if len(d):
            # The genders add up to the funnel's first stage, shown above: a total.
            d = beside_total(d, "n")
        att.add(table(d, {"group": ("gender", ftext), "n": ("answered pre (n)", fint),
                          "dropped": ("no post answer", fint),
                          "dropout_rate": ("drop-out rate", fpct)},
                      "Drop-out between pre and post survey by gender", id_="dropout-table"))
        if len(d):
            _add_suppressed(sup, "Drop-out by gender", d, "group")
        sections.append(att)

    # -- methods ---------------------------------------------------------------------------
    step(0.85, "methods and data")
    meth = Section("methods", "Methods and data")
    meth.add(f"Effect sizes. {EFFECT_KIND}. Mean changes are in scale points with the same "
             "cluster-robust interval. Wave means carry the CR2 interval of the mean, "
             "clustered by exchange.")
    meth.add("Models. " + estimands.MODEL + " " + estimands.MODEL_MISSING
             + " The comparison-group difference is a difference-in-differences of "
               "completers' gains; the pre/post effects by cluster and by country are "
               "computed once per data version for all participants.")
    meth.add(f"Small cells. Any group with fewer than {k} participants is shown as “{label}”: "
             "its numbers are left out of every table and figure (the same rule as the "
             "dashboard's, analytics/suppression.py).")
    if base is not None:
        meth.add(ROUNDED_NOTE.format(base=base))
    if len(waves):
        meth.add("Response rates. " + "; ".join(
            f"{w}: {label if s else fpct(r)}" for w, r, s in
            zip(waves.wave, waves.rate, waves.suppressed.astype(bool), strict=True)) + ".")
    meth.add(f"Data. Data version {info.get('data_version', '?')}, built "
             f"{info.get('built_at', 'unknown')}. Participants are pseudonymised on the way "
             "into the warehouse; this report holds aggregates only.")
    if sup.lines:
        meth.add(Sub("What was suppressed and why", "suppressed"))
        meth.add(f"Each of these had fewer than {k} participants behind its numbers, or, where "
                 f"marked {suppression.SECONDARY}, was hidden too so that one that had cannot "
                 "be recovered from a total shown; none of them is shown:")
        meth.add(Table("Suppressed groups", ["where", "groups"],
                       [[(a, False), (b, False)] for a, b in
                        (line.split(": ", 1) for line in sup.lines)], "suppressed-table"))
    else:
        meth.add(f"Nothing in this selection was suppressed (every group has at least {k} "
                 "participants).")
    sections.append(meth)

    now = datetime.now().astimezone()
    version = str(info.get("data_version", "?"))
    words = filters_in_words(f, options)
    return Report(
        title=title or "Exchange Impact: funder snapshot",
        lang=lang,
        filters_text=words,
        notes=[*notes, *dropped],
        round_to=base or None,
        period=_period(f, options),
        data_version=version,
        built_at=str(info.get("built_at", "unknown")),
        generated=f"{now:%Y-%m-%d %H:%M} {now.tzname()} (UTC{now:%z})",
        sections=sections,
        suppressed=sup.lines,
        headline=h,
        keywords=["Exchange Impact", "funder snapshot", f"data version {version}", *words],
    )
