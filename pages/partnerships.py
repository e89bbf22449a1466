"""Partnerships: the network of institutions (countries as colours, domestic vs cross-border
links), Kaplan–Meier persistence curves, and reciprocity (do both sides of a partnership
gain?)."""

from __future__ import annotations

import math
from typing import Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, callback, html

from analytics import suppression
from analytics.read import filters, partnerships
from pages import _grid, _ui
from pages._i18n import N_, current, tr


def _title(**_path: Any) -> str:
    """The browser tab's title in the request's language (Dash calls it per page load)."""
    return tr("Exchange Impact — Partnerships")


dash.register_page(__name__, path="/partnerships", name=N_("Partnerships"), order=3,
                   title=_title)

NETWORK = "partnerships-network"
PERSISTENCE = "partnerships-persistence"
PERSISTENCE_NOTE = "partnerships-persistence-note"
SUMMARY = "partnerships-summary"
PATH = "/partnerships"
PERSIST_BY = "partnerships-persist-by"
PERSIST_CURVES = "partnerships-persist-curves"
PERSIST_GROUPS = "partnerships-persist-groups"
PERSIST_COX = "partnerships-persist-cox"
LINKS = "partnerships-links"
_PERSIST_DEFAULT = "partnership:kind"
RECIPROCITY = "partnerships-reciprocity"
RECIPROCITY_NOTE = "partnerships-reciprocity-note"
ONE_SIDED = "partnerships-one-sided"
RECIPROCITY_SHARES = "partnerships-reciprocity-shares"

_KIND_STYLE = {  # (cross_border, active) -> (name, colour, dash, opacity)
    (False, True): (N_("domestic, active"), _ui.OKABE_ITO[2], "solid", 0.9),
    (False, False): (N_("domestic, ended"), _ui.OKABE_ITO[2], "dot", 0.5),
    (True, True): (N_("cross-border, active"), _ui.OKABE_ITO[5], "solid", 0.9),
    (True, False): (N_("cross-border, ended"), _ui.OKABE_ITO[5], "dot", 0.5),
}
# filters.PERSISTENCE_GROUPINGS' labels (analytics, English), marked here for the catalogue: the
# page shows them through tr.
_GROUPING_WORDS = (
    N_("Partnerships: domestic vs cross-border"), N_("Partnerships: modality"),
    N_("Partnerships: cluster"), N_("Partnerships: classroom-to-classroom vs single-class"),
    N_("Participants: modality"), N_("Participants: setting"))
# The analytics layer's own words that the page shows (partnership kinds, time units, the
# reciprocity shares' groupings); any other value (a cluster's or modality's name) is data.
_WORDS = {w: w for w in (N_("domestic"), N_("cross-border"), N_("days"), N_("weeks"),
                         N_("overall"), N_("cluster"), N_("modality"))}


def _word(v: Any) -> str:
    """One of `_WORDS` in the request's language; any other value as text, untranslated."""
    t = _ui.text(v)
    return tr(_WORDS[t]) if t in _WORDS else t


def _fmt_g(v: Any, spec: str = ".3g") -> str:
    """A number in Python's general format (p-values: f"{p:.3g}") with the language's
    decimal mark."""
    s = format(float(v), spec)
    if current() == "en":
        return s
    from babel.numbers import get_decimal_symbol

    return s.replace(".", get_decimal_symbol(current()))


def layout(persist: str = _PERSIST_DEFAULT, **_query: Any) -> html.Div:
    persist = _ui.choice(persist, filters.PERSISTENCE_GROUPINGS, _PERSIST_DEFAULT)
    return html.Div(
        [
            html.H1(tr("Partnerships"), className="h3"),
            dbc.Row(
                [
                    dbc.Col(_ui.graph(NETWORK, tr("Network of partner institutions arranged by "
                                                  "country")), lg=7),
                    dbc.Col(
                        [
                            _ui.graph(PERSISTENCE, tr("Kaplan–Meier persistence of "
                                                      "partnerships, domestic vs cross-border")),
                            html.Div(id=PERSISTENCE_NOTE),
                        ],
                        lg=5,
                    ),
                ]
            ),
            _ui.section(tr("Summary"), html.Div(id=SUMMARY)),
            _persistence_section(persist),
            _reciprocity_section(),
        ]
    )


def _positions(net: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[float, float]]]:
    """Institutions on a circle, grouped by country so that each country is one arc."""
    nodes = pd.concat([
        net[["institution_a", "name_a", "country_a"]].set_axis(["id", "name", "country"], axis=1),
        net[["institution_b", "name_b", "country_b"]].set_axis(["id", "name", "country"], axis=1),
    ]).drop_duplicates("id").sort_values(["country", "id"]).reset_index(drop=True)
    degree = pd.concat([net.institution_a, net.institution_b]).value_counts()
    nodes["degree"] = nodes.id.map(degree).fillna(0).astype(int)
    k = len(nodes)
    nodes["angle"] = [2 * math.pi * i / max(k, 1) for i in range(k)]
    nodes["x"] = nodes.angle.map(math.cos)
    nodes["y"] = nodes.angle.map(math.sin)
    return nodes, {r.id: (r.x, r.y) for r in nodes.itertuples()}


@callback(Output(NETWORK, "figure"), Input(_ui.FILTERS, "data"))
def network(store: dict[str, Any] | None) -> _ui.Figure:
    f = _ui.filters_of(store)
    net = _ui.query(partnerships.partnership_network, f)
    title = tr("Partnership network: institutions by country, domestic vs cross-border links")
    if not len(net):
        return _ui.empty_figure(title,
                                tr("No partnerships touch the institutions in the filters."))
    nodes, pos = _positions(net)
    fig = _ui.figure()
    for (cross, active), (name, color, dash_, opacity) in _KIND_STYLE.items():
        d = net[(net.cross_border == cross) & (net.active == active)]
        if not len(d):
            continue
        xs: list[float | None] = []
        ys: list[float | None] = []
        for a, b in zip(d.institution_a, d.institution_b, strict=True):
            xs += [pos[a][0], pos[b][0], None]
            ys += [pos[a][1], pos[b][1], None]
        fig.add_trace(_ui.trace("scatter", x=xs, y=ys, mode="lines",
                                 name=f"{tr(name)} (n = {_ui.fmt_count(len(d))})",
                                 line={"color": color, "dash": dash_, "width": 1.5},
                                 opacity=opacity, hoverinfo="skip"))
    countries = sorted(nodes.country.unique())
    palette = {c: _ui.OKABE_ITO[i % len(_ui.OKABE_ITO)] for i, c in enumerate(countries)}
    fig.add_trace(_ui.trace("scatter",
        x=nodes.x, y=nodes.y, mode="markers", name=tr("institutions"),
        marker={"size": 8 + 2 * nodes.degree.clip(upper=8),
                "color": [palette[c] for c in nodes.country], "line": {"color": "white",
                                                                       "width": 1}},
        text=[_ui.ptext(n) for n in nodes.name], customdata=nodes[["country", "degree"]],
        hovertemplate="%{text}<br>" + tr("country: %{customdata[0]}") + "<br>"
                      + tr("partnerships (n): %{customdata[1]}") + "<extra></extra>",
    ))
    # One label per country at its arc's middle.
    centre = nodes.groupby("country")[["x", "y"]].mean()
    labels = []
    for c in countries:
        ang = math.atan2(centre.at[c, "y"], centre.at[c, "x"])
        labels.append({"x": 1.18 * math.cos(ang), "y": 1.18 * math.sin(ang),
                       "text": _ui.ptext(c), "showarrow": False,
                       "font": {"size": 11, "color": "#222"}})
    fig.update_layout(annotations=labels)
    _ui.base_layout(fig, title, height=560)
    _ui.legend_below(fig, 5, per_row=3)
    fig.update_xaxes(visible=False, range=[-1.35, 1.35])
    fig.update_yaxes(visible=False, range=[-1.35, 1.35], scaleanchor="x")
    return fig


@callback(Output(PERSISTENCE, "figure"), Output(PERSISTENCE_NOTE, "children"),
          Output(SUMMARY, "children"), Input(_ui.FILTERS, "data"))
def persistence(store: dict[str, Any] | None) -> tuple[_ui.Figure, Any, Any]:
    f = _ui.filters_of(store)
    km = _ui.query(partnerships.partnership_persistence, f)
    title = tr("Partnership persistence (Kaplan–Meier, 95% CI)")
    if not len(km):
        return (_ui.empty_figure(title, tr("No partnerships match the current filters.")), None,
                None)
    fig = _ui.figure()
    colors = {"domestic": _ui.OKABE_ITO[2], "cross-border": _ui.OKABE_ITO[5]}
    shown, small = km[~km.suppressed], km[km.suppressed]
    for grp, d in shown.groupby("group", sort=True):
        color = colors.get(str(grp), _ui.OKABE_ITO[0])
        n = int(d.n.iloc[0])
        fig.add_trace(_ui.trace("scatter", x=list(d.days) + list(d.days[::-1]),
                                 y=list(d.ci_high) + list(d.ci_low[::-1]), fill="toself",
                                 line={"width": 0, "shape": "hv"}, fillcolor=color, opacity=0.15,
                                 hoverinfo="skip", showlegend=False, legendgroup=str(grp)))
        fig.add_trace(_ui.trace("scatter",
            x=d.days, y=d.survival, mode="lines", line={"shape": "hv", "color": color,
                                                        "dash": "dash" if grp == "cross-border"
                                                        else "solid"},
            name=f"{_word(grp)} (n = {_ui.fmt_int(n)})", legendgroup=str(grp),
            customdata=d[["at_risk", "ended"]],
            hovertemplate="%{fullData.name}<br>" + tr("day %{x}: %{y:.0%} still active") + "<br>"
                          + tr("at risk: %{customdata[0]}, ended here: %{customdata[1]}")
                          + "<extra></extra>",
        ))
    _ui.base_layout(fig, title, x=tr("days since the partnership started"),
                    y=tr("share still active (%)"), height=560)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    if not len(shown):
        fig = _ui.suppressed_figure(title, tr("Every group has fewer than {k} partnerships")
                                    .format(k=_ui.fmt_int(suppression.MIN_CELL)))
    note = _ui.suppressed_note(sorted(_word(g) for g in small.group.astype(str).unique()),
                               tr("groups"))
    summary = _ui.query(partnerships.partnership_summary, f)
    table = _grid.table(summary, {
        "kind": (tr("partnerships"), _word), "n": ("n", _ui.fmt_int),
        "active": (tr("still active"), _ui.fmt_int),
        "median_days": (tr("median days so far"), _ui.fmt_int),
        "median_km": (tr("KM median duration (days)"), lambda v: tr("not reached") if pd.isna(v)
                      else _ui.fmt_int(v)),
    }, tr("Partnerships in scope; still-active ones are censored today"))
    return fig, note, table


# ---------------------------------------------------------------------------------------------
# Issue 13: persistence of partnerships and participants, classroom-to-classroom links
# ---------------------------------------------------------------------------------------------

_METHOD = N_("Kaplan–Meier estimate with a 95% pointwise band (Greenwood, log(−log) scale); "
             "medians with Brookmeyer–Crowley 95% CIs; log-rank test across the groups; Cox "
             "proportional-hazards model (Efron ties, a baseline hazard per cluster, sandwich "
             "errors clustered by exchange). Whole program at this data version: the filter bar "
             "does not narrow this section. Partnerships still active are censored at the "
             "data's end date; a participant's duration runs from their first to their last "
             "active day in an exchange, censored when they were active in its final week.")


def _persistence_section(persist: str) -> html.Section:
    return _ui.section(
        tr("Persistence"),
        html.Div(
            [
                html.Label(tr("Curves by"), htmlFor=PERSIST_BY, className="me-2 fw-semibold"),
                dbc.RadioItems(id=PERSIST_BY, value=persist, inline=True, options=[
                    {"label": tr(v), "value": k}
                    for k, v in filters.PERSISTENCE_GROUPINGS.items()]),
            ],
            className="d-flex align-items-center flex-wrap mb-2",
        ),
        dbc.Row(
            [
                dbc.Col(_ui.graph(PERSIST_CURVES, tr("Kaplan–Meier persistence by the chosen "
                                                     "grouping, whole program")), lg=7),
                dbc.Col(html.Div(id=PERSIST_GROUPS), lg=5),
            ]
        ),
        html.Div(id=PERSIST_COX),
        html.Div(id=LINKS),
        html.P(tr(_METHOD), className="small text-body-secondary"),
    )


@callback(Output(_ui.VIEW, "data", allow_duplicate=True), Input(PERSIST_BY, "value"),
          prevent_initial_call="initial_duplicate")
def persist_url(persist: Any) -> dict[str, str]:
    """The persistence grouping belongs in the shareable link (/partnerships?persist=…)."""
    return _ui.view_store(PATH, {"persist": _ui.choice(persist, filters.PERSISTENCE_GROUPINGS,
                                                       _PERSIST_DEFAULT)})


def _median(v: Any) -> str:
    return tr("not reached") if pd.isna(v) else _ui.fmt_num(v, 0)


@callback(Output(PERSIST_CURVES, "figure"), Output(PERSIST_GROUPS, "children"),
          Input(PERSIST_BY, "value"), Input(_ui.FILTERS, "data"))
def persistence_by_group(persist: Any, _store: Any) -> tuple[_ui.Figure, Any]:
    grouping = _ui.choice(persist, filters.PERSISTENCE_GROUPINGS, _PERSIST_DEFAULT)
    label = filters.PERSISTENCE_GROUPINGS[grouping]
    curves = _ui.query(partnerships.persistence_curves, grouping)
    groups = _ui.query(partnerships.persistence_groups, grouping)
    title = tr("{label} (Kaplan–Meier, 95% CI)").format(label=tr(label))
    if not len(curves):
        return _ui.empty_state(title, what=tr("Too few partnerships in each group to draw "
                                              "their persistence.")), None
    unit = _word(str(groups.unit.dropna().iloc[0]) if groups.unit.notna().any() else "days")
    hover = ("%{fullData.name}<br>"
             + tr("{time} {unit}: {share} still going").format(time="%{x:.1f}", unit=unit,
                                                              share="%{y:.0%}")
             + "<br>" + tr("at risk: %{customdata[0]}, ended here: %{customdata[1]}")
             + "<extra></extra>")
    fig = _ui.figure()
    shown = curves[~curves.suppressed]
    for i, (grp, d) in enumerate(shown.groupby("group", sort=True)):
        color = _ui.OKABE_ITO[i % len(_ui.OKABE_ITO)]
        fig.add_trace(_ui.trace("scatter", x=list(d.time) + list(d.time[::-1]),
                                 y=list(d.ci_high) + list(d.ci_low[::-1]), fill="toself",
                                 line={"width": 0, "shape": "hv"}, fillcolor=color,
                                 opacity=0.12, hoverinfo="skip", showlegend=False,
                                 legendgroup=str(grp)))
        fig.add_trace(_ui.trace("scatter", x=d.time, y=d.survival, mode="lines",
                                 line={"shape": "hv", "color": color, **_ui.series_line(i)},
                                 name=f"{_ui.ptext(_word(grp))} "
                                      f"(n = {_ui.fmt_int(int(d.n.iloc[0]))})",
                                 legendgroup=str(grp), customdata=d[["at_risk", "ended"]],
                                 hovertemplate=hover))
    _ui.base_layout(fig, title, x=tr("{unit} since the start").format(unit=unit),
                    y=tr("share still going (%)"), height=480)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    _ui.legend_below(fig, shown.group.nunique())
    small = sorted(_word(g) for g in curves[curves.suppressed].group.astype(str).unique())
    lr = groups.dropna(subset=["logrank_p"])
    if len(lr):
        said = (tr("Log-rank test: χ² = {chi2} on {df} df, p = {p} (the two known link kinds)")
                if grouping.endswith(":link") else
                tr("Log-rank test: χ² = {chi2} on {df} df, p = {p}"))
        test = html.P(said.format(chi2=_ui.fmt_num(lr.logrank_chi2.iloc[0]),
                                  df=_ui.fmt_int(int(lr.logrank_df.iloc[0])),
                                  p=_fmt_g(lr.logrank_p.iloc[0])),
                      id=PERSIST_GROUPS + "-logrank")
    else:
        test = html.P(tr("Log-rank test: not available (fewer than two groups shown or no ends "
                         "observed)."), id=PERSIST_GROUPS + "-logrank")
    at_times = groups["at_time"].dropna()
    at = float(at_times.iloc[0]) if len(at_times) else None
    table = _grid.table(groups, {
        "group": (tr("group"), _word), "n": ("n", _ui.fmt_int),
        "ended": (tr("ended"), _ui.fmt_int),
        "median": (tr("median ({unit})").format(unit=unit), _median),
        "median_ci_low": (tr("95% CI low"), _median),
        "median_ci_high": (tr("95% CI high"), _median),
        "survival_at": (tr("S(at time)"), _ui.fmt_pct),
    }, tr("Kaplan–Meier median duration per group; S at {at} {unit}").format(
        at=_fmt_g(at, "g"), unit=unit) if at is not None
        else tr("Kaplan–Meier median per group"))
    return fig, html.Div([table, test, _ui.suppressed_note(small, tr("groups"))])


@callback(Output(PERSIST_COX, "children"), Output(LINKS, "children"),
          Input(_ui.FILTERS, "data"))
def persistence_models(_store: Any) -> tuple[Any, Any]:
    cox = pd.concat([_ui.query(partnerships.persistence_cox, "partnership"),
                     _ui.query(partnerships.persistence_cox, "participant")],
                    ignore_index=True)
    cox_table = _grid.table(cox, {
        "model": (tr("model"), _ui.text), "term": (tr("term"), _ui.text),
        "level": (tr("level"), _word), "reference": (tr("vs"), _word),
        "n_level": (tr("n (level)"), _ui.fmt_int), "hr": (tr("hazard ratio"), _ui.fmt_num),
        "ci_low": (tr("95% CI low"), _ui.fmt_num), "ci_high": (tr("95% CI high"), _ui.fmt_num),
        "p": ("p", lambda v: "" if pd.isna(v) else _fmt_g(v)),
    }, tr("Cox proportional-hazards models: hazard ratio > 1 ends sooner than the reference "
          "(Efron ties, baseline hazard per cluster, sandwich errors clustered by exchange)"),
        id_=PERSIST_COX + "-table")
    links = _ui.query(partnerships.partnership_links)
    definition = (str(links.definition.dropna().iloc[0])
                  if len(links) and links.definition.notna().any() else "")
    links_table = _grid.table(links, {
        "link": (tr("link"), _ui.text), "n": (tr("partnerships"), _ui.fmt_int),
        "active_per_partnership": (tr("active people / partnership"), _ui.fmt_num),
        "events_per_active": (tr("events / active person"), _ui.fmt_num),
        "events_per_active_ci_low": (tr("95% CI low"), _ui.fmt_num),
        "events_per_active_ci_high": (tr("95% CI high"), _ui.fmt_num),
        "median_days": (tr("median days"), _median),
    }, tr("Classroom-to-classroom vs single-class links: activity (means over partnerships, "
          "95% t intervals) and Kaplan–Meier median duration"), id_=LINKS + "-table")
    return cox_table, html.Div([links_table, html.P(tr(definition), className="small")])
# Reciprocity (issue 13): res_reciprocity and res_reciprocity_shares, composite gain
# ---------------------------------------------------------------------------------------------

_CATEGORY_STYLE = {  # category -> (legend name, colour, marker)
    "both": (N_("both sides gain (reciprocal)"), _ui.OKABE_ITO[2], "circle"),
    "a_only": (N_("only side a gains"), _ui.OKABE_ITO[5], "triangle-up"),
    "b_only": (N_("only side b gains"), _ui.OKABE_ITO[1], "triangle-down"),
    "neither": (N_("neither side's gain is clear"), _ui.OKABE_ITO[0], "square"),
}
RECIPROCITY_METHOD = N_(
    "Side = the exchange participants of one institution in the partnership's exchange who "
    "answered pre and post (completers). Gain: each participant's composite, the mean over "
    "scales of post − pre in SDs of the scale's pre score. Whiskers: 95% t interval of the "
    "side's mean paired change (R t.test, paired). A side gains when its interval lies above "
    "0; gap a − b with Welch's 95% interval. Reciprocity index = smaller / larger of the two "
    "positive mean gains (1 = equal), 0 when either side's mean gain is ≤ 0. All partnerships "
    "of the program: the filters do not apply."
)


def _reciprocity_section() -> html.Section:
    return _ui.section(
        tr("Reciprocity: do both sides gain?"),
        _ui.graph(RECIPROCITY, tr("Mean composite gain of side a against side b per "
                                  "partnership, coloured by whether both, one or neither side "
                                  "gains")),
        html.Div(id=RECIPROCITY_NOTE),
        dbc.Row([dbc.Col(html.Div(id=ONE_SIDED), lg=7),
                 dbc.Col(html.Div(id=RECIPROCITY_SHARES), lg=5)]),
        id_="partnerships-reciprocity-section",
    )


def _ci(v: Any, lo: Any, hi: Any) -> str:
    if pd.isna(v):
        return ""
    return tr("{value} [{low}, {high}]").format(value=_ui.fmt_num(v), low=_ui.fmt_num(lo),
                                                high=_ui.fmt_num(hi))


@callback(Output(RECIPROCITY, "figure"), Output(RECIPROCITY_NOTE, "children"),
          Output(ONE_SIDED, "children"), Output(RECIPROCITY_SHARES, "children"),
          Input(_ui.FILTERS, "data"))
def reciprocity(_store: dict[str, Any] | None) -> tuple[_ui.Figure, Any, Any, Any]:
    df = _ui.query(partnerships.reciprocity)
    title = tr("Reciprocity: mean composite gain of each side (95% t intervals)")
    if not len(df):
        return (_ui.empty_state(title, what=tr("No partnership has pre/post gains on both "
                                               "sides.")),
                None, None, None)
    shown, small = df[~df.suppressed], df[df.suppressed]
    note = html.Div([
        html.P(tr(RECIPROCITY_METHOD), className="small text-body-secondary",
               id="reciprocity-method"),
        _ui.suppressed_note(sorted(small.partnership_id.astype(str)),
                            tr("partnerships with a side of fewer participants"))])
    if not len(shown):
        return (_ui.suppressed_figure(title, tr("Every partnership has a side with fewer than "
                                                "{k} participants").format(
                                                    k=_ui.fmt_int(suppression.MIN_CELL))), note,
                None, None)
    fig = _ui.figure()
    for cat, (name, color, symbol) in _CATEGORY_STYLE.items():
        d = shown[shown.reciprocity == cat]
        if not len(d):
            continue
        fig.add_trace(_ui.trace("scatter",
            x=d.mean_a, y=d.mean_b, mode="markers",
            name=f"{tr(name)} (n = {_ui.fmt_count(len(d))})",
            marker={"color": color, "symbol": symbol, "size": 9,
                    "line": {"color": "white", "width": 1}},
            error_x={"type": "data", "symmetric": False, "array": d.ci_high_a - d.mean_a,
                     "arrayminus": d.mean_a - d.ci_low_a, "thickness": 1, "color": color},
            error_y={"type": "data", "symmetric": False, "array": d.ci_high_b - d.mean_b,
                     "arrayminus": d.mean_b - d.ci_low_b, "thickness": 1, "color": color},
            text=[_ui.ptext(t) for t in d.partnership_id],
            customdata=d[["institution_a", "institution_b", "n_a", "n_b",
                          "reciprocity_index"]],
            hovertemplate="%{text}<br>"
                          + tr("side a %{customdata[0]}: %{x:.2f} (n = %{customdata[2]})")
                          + "<br>"
                          + tr("side b %{customdata[1]}: %{y:.2f} (n = %{customdata[3]})")
                          + "<br>" + tr("reciprocity index %{customdata[4]:.2f}")
                          + "<extra></extra>",
        ))
    lim = [min(0.0, float(shown[["ci_low_a", "ci_low_b"]].min().min())) - 0.05,
           float(shown[["ci_high_a", "ci_high_b"]].max().max()) + 0.05]
    fig.add_trace(_ui.trace("scatter", x=lim, y=lim, mode="lines", name=tr("equal gains"),
                             line={"color": "#888", "dash": "dot", "width": 1},
                             hoverinfo="skip"))
    _ui.base_layout(fig, title, x=tr("side a: mean gain (pre-score SDs)"),
                    y=tr("side b: mean gain (pre-score SDs)"), height=520)
    fig.update_layout(shapes=[  # zero lines: a side left of / below them did not gain
        {"type": "line", "xref": "x", "yref": "paper", "x0": 0, "x1": 0, "y0": 0, "y1": 1,
         "line": {"color": "#444", "width": 1}},
        {"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": 0, "y1": 0,
         "line": {"color": "#444", "width": 1}}])
    _ui.legend_below(fig, 5, per_row=3)
    one = shown[shown.reciprocity.isin(["a_only", "b_only"])].assign(
        gaining=lambda d: d.institution_a.where(d.reciprocity == "a_only", d.institution_b),
        side_a=lambda d: [_ci(*v) for v in zip(d.mean_a, d.ci_low_a, d.ci_high_a, strict=True)],
        side_b=lambda d: [_ci(*v) for v in zip(d.mean_b, d.ci_low_b, d.ci_high_b, strict=True)],
        gap_ci=lambda d: [_ci(*v) for v in zip(d.gap, d.gap_ci_low, d.gap_ci_high,
                                               strict=True)])
    one_table = _grid.table(one, {
        "partnership_id": (tr("partnership"), _ui.text),
        "exchange_id": (tr("exchange"), _ui.text),
        "cluster": (tr("cluster"), _ui.text), "modality": (tr("modality"), _ui.text),
        "gaining": (tr("the side that gains"), _ui.text),
        "side_a": (tr("side a gain [95% CI]"), _ui.text),
        "side_b": (tr("side b gain [95% CI]"), _ui.text),
        "gap_ci": (tr("gap a − b [Welch 95% CI]"), _ui.text),
        "reciprocity_index": (tr("index"), _ui.fmt_num),
    }, tr("One-sided partnerships: only one side's 95% interval lies above 0 ({n})").format(
        n=_ui.fmt_count(len(one))),
        id_="partnerships-one-sided-table")
    shares = _ui.query(partnerships.reciprocity_shares).assign(
        share_ci=lambda d: [_ci(*v) if not pd.isna(v[0]) else ""
                            for v in zip(d.share_reciprocal, d.share_ci_low, d.share_ci_high,
                                         strict=True)],
        one_sided=lambda d: d.n_a_only + d.n_b_only,
        # the overall row's group is the analytics' "all"
        group=lambda d: d.group.where(d.group_by != "overall", tr("all")))
    shares_table = _grid.table(shares, {
        "group_by": (tr("by"), _word), "group": (tr("group"), _ui.text),
        "n_assessable": (tr("assessable"), _ui.fmt_int),
        "n_both": (tr("reciprocal"), _ui.fmt_int),
        "one_sided": (tr("one-sided"), _ui.fmt_int), "n_neither": (tr("neither"), _ui.fmt_int),
        "share_ci": (tr("share reciprocal [Wilson 95% CI]"), _ui.text),
    }, tr("Share of reciprocal partnerships by cluster and modality"),
        id_="partnerships-reciprocity-shares-table")
    return fig, note, one_table, shares_table
