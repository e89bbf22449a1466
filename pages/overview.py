"""Overview: headline figures, the world map of participants, participation over time, and the
strongest and weakest outcome changes."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import ALL, Input, Output, State, callback, ctx, html
from dash.exceptions import PreventUpdate

from analytics import estimands, suppression
from analytics.read import filters, outcomes, overview
from pages import _grid, _ui
from pages._i18n import N_, tr


def _title() -> str:
    return tr("Exchange Impact — Overview")


def _description() -> str:
    return tr("Headline figures, map and outcomes for the current filters")


# The title and description are functions: Dash Pages calls them per request, in its language.
dash.register_page(__name__, path="/", name=N_("Overview"), order=0, title=_title,
                   description=_description)

CARDS = "overview-cards"
MAP = "overview-map"
MAP_NOTE = "overview-map-note"
MAP_LIST = "overview-map-countries"  # the map's countries as a list of buttons (keyboard)
MAP_PICK = "overview-country-pick"  # pattern id type of each country's button
TIMELINE = "overview-timeline"
TIMELINE_NOTE = "overview-timeline-note"
OUTCOMES = "overview-outcomes"
OUTCOMES_NOTE = "overview-outcomes-note"
STAT = "overview-stat"  # id prefix of each headline figure, e.g. overview-stat-participants
SCALE_QUADRANT = "overview-scale-quadrant"
SCALE_TERMS = "overview-scale-terms"
SCALE_NOTE = "overview-scale-note"
SCALE_TABLE = "overview-scale-table"
COST_BY = "overview-cost-by"
COST_FIG = "overview-cost"
COST_TABLE = "overview-cost-table"
COST_NOTE = "overview-cost-note"
_COST_DEFAULT = "program"


def layout(cost: str = _COST_DEFAULT, **_query: Any) -> html.Div:
    cost = _ui.choice(cost, filters.COST_GROUPINGS, _COST_DEFAULT)
    return html.Div(
        [
            html.H1(tr("Overview"), className="h3"),
            html.Div(id=CARDS, className="mb-2"),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            _ui.graph(MAP, tr("World map of participants by country; click a "
                                         "country to filter to it"),
                                      config={"topojsonURL": dash.get_asset_url("geo/")}),
                            html.Div(id=MAP_NOTE),
                            html.Div(id=MAP_LIST),
                        ],
                        lg=7,
                    ),
                    dbc.Col([_ui.graph(TIMELINE, tr("Weekly active participants over time")),
                             html.Div(id=TIMELINE_NOTE)], lg=5),
                ]
            ),
            _ui.section(
                tr("Strongest and weakest changes, pre → post"),
                html.Div(id=OUTCOMES_NOTE),
                _ui.graph(OUTCOMES, tr("Largest and smallest pre-to-post changes with 95% CIs")),
            ),
            _scale_section(),
            _cost_section(cost),
        ]
    )


def _card(key: str, value: str, sub: str | None = None, label: str | None = None) -> dbc.Col:
    """A headline figure; `key` (its English label, marked N_) names its id in every language
    and, translated, is its label unless `label` is given."""
    key_id = "".join(ch if ch.isalnum() else "-" for ch in key)
    body = [html.Div(value, className="stat-value", id=f"{STAT}-{key_id}"),
            html.Div(tr(key) if label is None else label, className="stat-label")]
    if sub:
        body.append(html.Div(sub, className="small text-body-secondary"))
    return dbc.Col(dbc.Card(dbc.CardBody(body, className="p-2"), className="stat-card h-100"),
                   xs=6, md=3, xl=True, className="mb-2")


@callback(Output(CARDS, "children"), Input(_ui.FILTERS, "data"))
def cards(store: dict[str, Any] | None) -> dbc.Row:
    f = _ui.filters_of(store)
    h = _ui.query(overview.headline, f)
    if h["suppressed"]:
        return _ui.small_selection_alert(_ui.localise(h.get("suppressed_why")))
    waves = _ui.query(overview.completion_by_wave, f)
    items = [
        _card(N_("participants"), _ui.fmt_int(h["participants"]),
              tr("comparison group excluded")),
        _card(N_("active this month"), _ui.fmt_int(h["active_month"]),
              tr("{month}: fewer than {k}, {suppressed}").format(
                  month=_ui.text(h["active_month_label"]), k=_ui.fmt_int(suppression.MIN_CELL),
                  suppressed=_ui.suppressed_label()) if h["active_month_suppressed"]
              else _ui.text(h["active_month_label"]) or tr("no activity in scope")),
        _card(N_("institutions"), _ui.fmt_int(h["institutions"])),
        _card(N_("countries"), _ui.fmt_int(h["countries"])),
        _card(N_("clusters"), _ui.fmt_int(h["clusters"])),
        _card(N_("exchanges"), _ui.fmt_int(h["exchanges"]), tr("with activity in scope")),
        _card(N_("events"), _ui.fmt_int(h["events"]), tr("in the activity log")),
        _card(N_("partnerships active"), _ui.fmt_int(h["partnerships_active"]), tr("today")),
    ]
    for w in waves.itertuples():
        items.append(_card(f"survey completion: {w.wave}", _ui.fmt_pct(w.rate),
                           _ui.suppressed_label() if w.suppressed
                           else tr("{n} of {total}").format(n=_ui.fmt_int(w.responded),
                                                            total=_ui.fmt_int(w.invited)),
                           label=tr("survey completion: {wave}").format(
                               wave=_ui.wave_name(w.wave))))
    if not len(waves):
        items.append(_card(N_("survey completion"), "—", tr("no survey answers in scope")))
    return dbc.Row(items, className="g-2")


def _country_list(df: pd.DataFrame, chosen: list[str]) -> html.Details | None:
    """The map's countries as buttons, for the keyboard and for screen readers (a map cannot be
    reached by Tab): each says its country and participants (or that they are too few to
    show) and filters to it as a click on the map does."""
    if not len(df):
        return None
    rows = df.assign(name=[_ui.country_name(c) for c in df.country]).sort_values("name")
    items = []
    for r in rows.itertuples():
        count = (_ui.suppressed_label() if r.suppressed
                 else tr("{n} participants").format(n=_ui.fmt_int(r.participants)))
        on = r.country in chosen
        items.append(html.Li(html.Button(
            tr("{country} ({code}): {count}").format(country=r.name, code=r.country, count=count),
            id={"type": MAP_PICK, "index": r.country},
            type="button", className="btn btn-link btn-sm p-0 text-start",
            **{"aria-pressed": "true" if on else "false"})))
    return html.Details(
        [html.Summary(tr("The map's {n} countries as a list (choose one to filter)").format(
            n=_ui.fmt_int(len(rows)))),
         html.Ul(items, className="list-unstyled small mb-0 country-list")],
        # Open while a country is chosen: the list is how a keyboard user undoes it.
        open=bool(chosen), className="small mb-2", id=f"{MAP_LIST}-details")


@callback(Output(MAP, "figure"), Output(MAP_NOTE, "children"), Output(MAP_LIST, "children"),
          Input(_ui.FILTERS, "data"))
def world_map(store: dict[str, Any] | None) -> tuple[_ui.Figure, Any, Any]:
    f = _ui.filters_of(store)
    df = _ui.query(overview.participants_by_country, f)
    title = tr("Participants by country (click a country to filter)")
    if not len(df):
        return (_ui.empty_figure(title, tr("No participants match the current filters.")),
                None, None)
    shown = df[~df.suppressed]
    small = df[df.suppressed]
    fig = _ui.figure()
    fig.add_trace(_ui.trace("choropleth",
        locations=shown.country, z=shown.participants, locationmode="ISO-3",
        colorscale=_ui.SEQUENTIAL, marker={"line": {"color": "white", "width": 0.5}},
        colorbar={"title": {"text": tr("participants")}},
        customdata=shown[["institutions"]],
        hovertemplate="%{location}<br>" + tr("participants") + ": %{z:,}<br>"
                      + tr("institutions") + ": %{customdata[0]}<extra></extra>",
        name=tr("participants"),
    ))
    if len(small):
        fig.add_trace(_ui.trace("choropleth",
            locations=small.country, z=[0] * len(small), locationmode="ISO-3",
            colorscale=[[0, _ui.SUPPRESSED_GREY], [1, _ui.SUPPRESSED_GREY]], showscale=False,
            hovertemplate="%{location}<br>" + _ui.suppressed_label() + "<extra></extra>",
            name=_ui.suppressed_label(),
        ))
    _ui.base_layout(fig, title, height=420)
    fig.update_geos(projection_type="natural earth", projection_rotation_lon=0,
                    lonaxis_range=[-180, 180], lataxis_range=[-60, 85], fitbounds=False,
                    showcountries=True,
                    countrycolor="#999", showframe=False, showcoastlines=False,
                    landcolor="#f2f2f2", showland=True)
    fig.update_layout(margin={"l": 0, "r": 0, "t": 50, "b": 0})
    return (fig, _ui.suppressed_note(small.country, tr("countries")),
            _country_list(df, list(f.country or [])))


@callback(
    Output(_ui.fid("country"), "value", allow_duplicate=True),
    Input(MAP, "clickData"),
    State(_ui.fid("country"), "value"),
    prevent_initial_call=True,
)
def map_click(click: dict[str, Any] | None, current: list[str] | None) -> list[str]:
    """Drill down: a click on a country makes it the country filter (a second click clears)."""
    iso = _ui.clicked(click, "location")
    return [] if current == [iso] else [iso]


@callback(
    Output(_ui.fid("country"), "value", allow_duplicate=True),
    Input({"type": MAP_PICK, "index": ALL}, "n_clicks"),
    State(_ui.fid("country"), "value"),
    prevent_initial_call=True,
)
def list_pick(clicks: list[int | None], current: list[str] | None) -> list[str]:
    """The country list's buttons do what a click on the map does. A list drawn anew (no
    button pressed) changes nothing."""
    picked = ctx.triggered_id
    if not isinstance(picked, dict) or not any(clicks or []) or not ctx.triggered[0]["value"]:
        raise PreventUpdate
    iso = picked.get("index")
    if not isinstance(iso, str) or not iso:
        raise PreventUpdate
    return [] if current == [iso] else [iso]


@callback(Output(TIMELINE, "figure"), Output(TIMELINE_NOTE, "children"),
          Input(_ui.FILTERS, "data"))
def timeline(store: dict[str, Any] | None) -> tuple[_ui.Figure, Any]:
    f = _ui.filters_of(store)
    df = _ui.query(overview.activity_over_time, f)
    title = tr("Weekly active participants")
    if not len(df):
        return (_ui.empty_figure(title, tr("No participation events match the current filters.")),
                None)
    if df.suppressed.all():
        return _ui.suppressed_figure(
            title, tr("Fewer than {k} active participants in this selection").format(
                k=_ui.fmt_int(suppression.MIN_CELL))), None
    fig = _ui.figure(_ui.trace("scatter",
        x=df.week, y=df.active, mode="lines+markers", line={"color": _ui.OKABE_ITO[0]},
        customdata=df[["minutes", "events"]],
        hovertemplate=tr("week of {date}").format(date="%{x|%Y-%m-%d}")
                      + "<br>" + tr("active participants (n)") + ": %{y:,}<br>"
                      + tr("minutes") + ": %{customdata[0]:,.0f}<br>"
                      + tr("events") + ": %{customdata[1]:,}<extra></extra>",
        name=tr("active participants"),
    ))
    return (_ui.base_layout(fig, title, x=tr("week (Monday, UTC)"),
                            y=tr("active participants (people)"), height=420),
            _ui.with_isolating_note(_ui.suppressed_weeks_note(df, tr("active participants")),
                                    df, tr("Some weeks")))


# What outcomes.prepost_extremes says its figures are computed on, for the catalogue.
_SCOPE_WORDS = (N_("the filtered participants"),)


@callback(Output(OUTCOMES, "figure"), Output(OUTCOMES, "style"), Output(OUTCOMES_NOTE, "children"),
          Input(_ui.FILTERS, "data"))
def outcome_changes(store: dict[str, Any] | None) -> tuple[_ui.Figure, dict[str, str], Any]:
    f = _ui.filters_of(store)
    df, scope = _ui.query(outcomes.prepost_extremes, f)
    if not len(df):
        return (_ui.empty_state(tr("Outcome changes"), f,
                                what=tr("No pre/post scale scores for the current filters.")),
                {}, None)
    df = df.iloc[::-1]
    label = [_ui.ptext(_ui.scale_label(a, b)) for a, b in zip(df.instrument, df.scale, strict=True)]
    fig = _ui.figure(_ui.trace("scatter",
        x=df.hedges_g, y=label, mode="markers",
        marker={"size": 10, "color": _ui.OKABE_ITO[0]},
        error_x={"type": "data", "symmetric": False,
                 "array": df.hedges_g_ci_high_cr2 - df.hedges_g,
                 "arrayminus": df.hedges_g - df.hedges_g_ci_low_cr2},
        customdata=pd.concat([df.n, df.mean_pre, df.mean_post, df.hedges_g_ci_low_cr2,
                              df.hedges_g_ci_high_cr2, df["diff"], df.diff_ci_low_cr2,
                              df.diff_ci_high_cr2, df.n_clusters,
                              df.few_clusters.map({True: " ⚠ " + tr("fewer than 10 exchanges")})
                              .fillna("")], axis=1),
        hovertemplate="%{y}<br>" + tr("Hedges' g {g} [{low}, {high}]").format(
                          g="%{x:.2f}", low="%{customdata[3]:.2f}", high="%{customdata[4]:.2f}")
                      + "<br>" + tr("mean change {diff} [{low}, {high}] (95% CI clustered by "
                                    "exchange, CR2)").format(diff="%{customdata[5]:.2f}",
                                                             low="%{customdata[6]:.2f}",
                                                             high="%{customdata[7]:.2f}")
                      + "<br>" + tr("mean pre {pre} → post {post}").format(
                          pre="%{customdata[1]:.2f}", post="%{customdata[2]:.2f}")
                      + "<br>" + tr("n = {n} in {clusters} exchanges").format(
                          n="%{customdata[0]}", clusters="%{customdata[8]}")
                      + "%{customdata[9]}<extra></extra>",
        name=tr("Hedges' g"),
    ))
    fig.add_vline(x=0, line_dash="dot", line_color="#666")
    _ui.base_layout(fig, tr("Pre → post change per scale (Hedges' g, 95% CI clustered by "
                            "exchange)"),
                    x=tr("Hedges' g (standardised mean change, pre → post)"), y=None,
                    height=200 + 45 * len(df))
    few = df[df.few_clusters.fillna(False).astype(bool)]
    clusters = ""
    if df.n_clusters.notna().any():
        lo, hi = int(df.n_clusters.min()), int(df.n_clusters.max())
        n = _ui.fmt_int(lo) if lo == hi else f"{_ui.fmt_int(lo)}–{_ui.fmt_int(hi)}"
        clusters = " " + tr("They rest on {n} exchanges (in the hover)").format(n=n)
    if len(few):
        clusters += "; " + tr("⚠ fewer than 10 exchanges behind {scales}").format(
            scales=", ".join(_ui.scale_label(a, b)
                             for a, b in zip(few.instrument, few.scale, strict=True)))
    whiskers = tr("Whiskers: 95% CI of Hedges' g clustered by exchange (the CR2 interval of the "
                  "mean change, Satterthwaite df, divided by the SD that standardises g): "
                  "participants of one exchange are not independent.")
    note = html.P(tr("Computed on: {scope}.").format(scope=tr(scope)) + " "
                  + tr(estimands.COMPLETERS) + " " + whiskers + clusters
                  + ("." if clusters else ""),
                  className="small text-body-secondary")
    return fig, {}, note


# Issue 13: scale-up vs scale-in (res_scale). The cluster and term filters of the filter bar
# select what is shown; one cluster selected gives that cluster's view over its terms.
def _scale_section() -> html.Section:
    return _ui.section(
        tr("Scale-up vs scale-in: reaching more, or deepening?"),
        html.Div(id=SCALE_NOTE),
        dbc.Row([
            dbc.Col(_ui.graph(SCALE_QUADRANT, tr("Quadrant: change in participants reached "
                                                 "against change in the share reaching a "
                                                 "meaningful dose, per cluster, latest term")),
                    lg=6),
            dbc.Col(_ui.graph(SCALE_TERMS, tr("Each cluster's terms: participants reached and "
                                              "share reaching a meaningful dose")), lg=6),
        ]),
        html.Div(id=SCALE_TABLE),
        id_="overview-scale",
    )


# The corners are named as analytics.stats.scale.QUADRANTS names a cluster's quadrant (the
# `quadrant` column): tr translates both.
_QUADRANT_CORNERS = ((N_("scaling up and in"), 0.98, 0.98, "right", "top"),
                     (N_("scaling up only"), 0.98, 0.02, "right", "bottom"),
                     (N_("scaling in only"), 0.02, 0.98, "left", "top"),
                     (N_("neither"), 0.02, 0.02, "left", "bottom"))


def _quadrant(v: Any) -> Any:
    """A cluster's quadrant (one of the corners' names) in the request's language."""
    return tr(v) if isinstance(v, str) and v else v


def _quadrant_figure(df: pd.DataFrame) -> _ui.Figure:
    title = tr("Scale-up vs scale-in, latest term on the one before")
    q = df[df.quadrant.notna() & (df.quadrant.astype("string") != "")]
    if not len(q):
        return _ui.empty_figure(title, tr("No cluster has two consecutive terms to compare "
                                          "(each with at least k participants)."), height=420)
    q = q.sort_values("term").groupby("cluster", as_index=False).tail(1)
    name = q.cluster_name.fillna(q.cluster).astype(str)
    fig = _ui.figure(_ui.trace("scatter",
        x=q.breadth_change_pct, y=100 * q.depth_change, mode="markers+text",
        text=q.cluster, textposition="top center",
        marker={"size": 11, "color": _ui.OKABE_ITO[0]},
        error_y={"type": "data", "symmetric": False,
                 "array": 100 * (q.depth_change_ci_high - q.depth_change),
                 "arrayminus": 100 * (q.depth_change - q.depth_change_ci_low)},
        customdata=pd.concat([name, q.previous_term, q.term, q.participants_previous,
                              q.participants, 100 * q.depth_change_ci_low,
                              100 * q.depth_change_ci_high, q.quadrant.map(_quadrant)], axis=1),
        hovertemplate="%{customdata[0]}: %{customdata[1]} → %{customdata[2]}<br>"
                      + tr("participants reached {before} → {after} ({change}%)").format(
                          before="%{customdata[3]:,}", after="%{customdata[4]:,}",
                          change="%{x:+.0f}")
                      + "<br>" + tr("share dosed {change} points [{low}, {high}] (95% Newcombe "
                                    "CI)").format(change="%{y:+.1f}", low="%{customdata[5]:.1f}",
                                                  high="%{customdata[6]:.1f}")
                      + "<br>%{customdata[7]}<extra></extra>",
        name=tr("cluster"),
    ))
    fig.add_vline(x=0, line_dash="dot", line_color="#666")
    fig["layout"].setdefault("shapes", []).append(  # the horizontal axis of the quadrant
        {"type": "line", "x0": 0, "x1": 1, "xref": "x domain", "y0": 0, "y1": 0, "yref": "y",
         "line": {"dash": "dot", "color": "#666"}})
    for label, x, y, xa, ya in _QUADRANT_CORNERS:
        fig.add_annotation(text=tr(label), x=x, y=y, xref="paper", yref="paper", xanchor=xa,
                           yanchor=ya, showarrow=False, font={"color": "#555", "size": 12})
    return _ui.base_layout(fig, title, x=tr("breadth: change in participants reached (%)"),
                           y=tr("depth: change in share dosed (points)"), height=420)


def _terms_figure(df: pd.DataFrame) -> _ui.Figure:
    title = tr("Per cluster and term")
    shown = df[~df.suppressed.astype(bool)]
    if not len(shown):
        return _ui.suppressed_figure(title, tr("Every cluster-term has fewer than {k} "
                                               "participants").format(
                                                   k=_ui.fmt_int(suppression.MIN_CELL)))
    fig = _ui.grid(2, 1, (tr("participants reached"), tr("share reaching a meaningful dose (95% "
                                                         "Wilson CI)")),
                   shared_x=True, vertical_spacing=0.12)
    for i, (cluster, g) in enumerate(shown.groupby("cluster", sort=True)):
        name = str(g.cluster_name.iloc[0]) if pd.notna(g.cluster_name.iloc[0]) else cluster
        common = {"mode": "lines+markers", "legendgroup": cluster, "name": cluster,
                  "marker": _ui.series_marker(i), "line": _ui.series_line(i)}
        fig.add_trace(_ui.trace("scatter", x=g.term, y=g.participants, **common,
                                hovertemplate=f"{name}<br>%{{x}}: "
                                + tr("{n} participants reached").format(n="%{y:,}")
                                + "<extra></extra>", **_ui.cell_axes(0)))
        fig.add_trace(_ui.trace("scatter", x=g.term, y=100 * g.share_dosed, **common,
                                showlegend=False,
                                error_y={"type": "data", "symmetric": False,
                                         "array": 100 * (g.share_dosed_ci_high - g.share_dosed),
                                         "arrayminus": 100 * (g.share_dosed
                                                              - g.share_dosed_ci_low)},
                                hovertemplate=f"{name}<br>%{{x}}: "
                                + tr("{share}% dosed").format(share="%{y:.0f}")
                                + "<extra></extra>", **_ui.cell_axes(1)))
    _ui.base_layout(fig, title, height=420)
    fig.update_xaxes(type="category", categoryorder="category ascending")
    return _ui.legend_below(fig, shown.cluster.nunique(), per_row=4)


_SCALE_COLUMNS = {  # headers marked N_, translated where the table is drawn (`_scale_columns`)
    "cluster": (N_("cluster"), _ui.text),
    "term": (N_("term"), _ui.text),
    "participants": (N_("participants reached"), _ui.fmt_int),
    "participants_returning": (N_("returning"), _ui.fmt_int),
    "institutions": (N_("institutions"), _ui.fmt_int),
    "institutions_new": (N_("new institutions"), _ui.fmt_int),
    "countries": (N_("countries"), _ui.fmt_int),
    "share_dosed": (N_("share dosed"), _ui.fmt_pct),
    "weeks_median": (N_("median active weeks"), lambda v: _ui.fmt_num(v, 1)),
    "share_sustained": (N_("active 4+ weeks"), _ui.fmt_pct),
    "share_institutions_next": (N_("institutions back next term"), _ui.fmt_pct),
    "quadrant": (N_("quadrant"), _ui.text),
}


def _scale_columns() -> dict[str, tuple[str, Any]]:
    return {k: (tr(h), fmt) for k, (h, fmt) in _SCALE_COLUMNS.items()}


def _minutes(m: float) -> str:
    """A dose's minutes as the note always wrote them (`:g`: 300, 90.5), in the language."""
    shown = f"{m:g}"
    return shown if "e" in shown else _ui.fmt_num(m, len(shown.partition(".")[2]))


@callback(Output(SCALE_QUADRANT, "figure"), Output(SCALE_TERMS, "figure"),
          Output(SCALE_NOTE, "children"), Output(SCALE_TABLE, "children"),
          Input(_ui.FILTERS, "data"))
def scale_views(store: dict[str, Any] | None) -> tuple[_ui.Figure, _ui.Figure, Any, Any]:
    f = _ui.filters_of(store)
    df = _ui.query(overview.scale_terms, f)
    if not len(df):
        empty = _ui.empty_state(tr("Scale-up vs scale-in"), f, what=tr(
            "The selected clusters and terms have no activity."))
        return empty, empty, None, None
    sessions = int(df.dose_sessions.dropna().iloc[0]) if df.dose_sessions.notna().any() else 5
    minutes = float(df.dose_minutes.dropna().iloc[0]) if df.dose_minutes.notna().any() else 300
    table = df.assign(cluster=df.cluster_name.fillna(df.cluster),
                      quadrant=df.quadrant.map(_quadrant))
    note = html.P(
        tr("A term is the calendar half-year an exchange starts in (as in the term filter). "
           "Breadth: participants reached (at least one event), their institutions and "
           "countries; returning = seen in an earlier term of the cluster. Depth: the share "
           "reaching a meaningful dose ({sessions} sessions or {minutes} minutes in the term; "
           "setting EXCHANGE_IMPACT_MEANINGFUL_DOSE) with its 95% Wilson interval, the median "
           "number of active weeks, the share active in 4 or more weeks and the share of "
           "institutions back the next term (blank for the data's last term: no next term yet). "
           "The quadrant compares each cluster's latest term with the half-year before: % change "
           "in participants reached against the change in the dosed share (95% Newcombe "
           "interval). Only the cluster and term filters apply; pick one cluster to see its "
           "terms. Cluster-terms with fewer than {k} participants are {suppressed}.").format(
            sessions=_ui.fmt_int(sessions), minutes=_minutes(minutes),
            k=_ui.fmt_int(suppression.MIN_CELL), suppressed=_ui.suppressed_label()),
        className="small text-body-secondary")
    return (_quadrant_figure(df), _terms_figure(df), note,
            _grid.table(table, _scale_columns(), tr("Scale-up vs scale-in per cluster and term"),
                      id_="overview-scale-rows"))


# ---- What an outcome costs (issue 13: res_cost) -------------------------------------------

_COST_METHOD = N_(
    "Budgets as the exchanges file gives them (exchanges.budget, currency). Cost per "
    "participant: budget / exchange participants (comparison group excluded); per active "
    "participant: budget / those with an event logged; per unit of gain: budget / "
    "(participants × mean standardised gain), the gain per scale in pre-score SDs averaged over "
    "scales. Whiskers: 95% CI from the gain's interval clustered by exchange (budget and "
    "participants taken as known); an arrow means the gain's interval reaches 0, so the cost "
    "per unit of gain has no upper bound. Currencies are kept apart unless a rate table is "
    "loaded (python -m etl load rates.csv); a budget without a rate for its currency and year "
    "stays in its own currency. Whole program at this data version: the filter bar does not "
    "narrow this section.")
# filters.COST_GROUPINGS' labels (the "By" choices), for the catalogue: tr translates them.
_COST_GROUPING_WORDS = (N_("program"), N_("cluster"))


def _cost_section(by: str) -> html.Section:
    return _ui.section(
        tr("What an outcome costs"),
        html.Div(
            [
                html.Label(tr("By"), htmlFor=COST_BY, className="me-2 fw-semibold"),
                dbc.RadioItems(id=COST_BY, value=by, inline=True, options=[
                    {"label": tr(v), "value": k} for k, v in filters.COST_GROUPINGS.items()]),
            ],
            className="d-flex align-items-center flex-wrap mb-2",
        ),
        html.Div(id=COST_NOTE),
        _ui.graph(COST_FIG, tr("Cost per unit of standardised gain with 95% CIs, by program or "
                               "cluster and currency")),
        html.Div(id=COST_TABLE),
        html.P(tr(_COST_METHOD) + " " + tr(estimands.COST), className="small text-body-secondary"),
        id_="overview-cost-section",
    )


@callback(Output(_ui.VIEW, "data", allow_duplicate=True), Input(COST_BY, "value"),
          prevent_initial_call="initial_duplicate")
def cost_url(by: Any) -> dict[str, str]:
    """The cost grouping belongs in the shareable link (/?cost=cluster)."""
    return _ui.view_store("/", {"cost": _ui.choice(by, filters.COST_GROUPINGS, _COST_DEFAULT)})


def _money(v: Any) -> str:
    return _ui.fmt_num(v, 0)


def _per_gain(cost: Any, lo: Any, hi: Any, unbounded: Any) -> str:
    """'1,074 [1,013, 1,143]'; '∞' as the upper bound when the gain's CI reaches 0."""
    if cost is None or pd.isna(cost):
        return "—"
    top = "∞" if (unbounded is not None and not pd.isna(unbounded) and bool(unbounded)) \
        else _money(hi)
    return f"{_money(cost)} [{_money(lo)}, {top}]"


def _cost_label(group: Any, currency: Any) -> str:
    return f"{_ui.text(group)} ({_ui.text(currency) or tr('no budget')})"


@callback(Output(COST_FIG, "figure"), Output(COST_FIG, "style"), Output(COST_TABLE, "children"),
          Output(COST_NOTE, "children"), Input(COST_BY, "value"))
def cost_view(by: Any) -> tuple[_ui.Figure, dict[str, str], Any, Any]:
    by = _ui.choice(by, filters.COST_GROUPINGS, _COST_DEFAULT)
    df = _ui.query(overview.cost_results, by)
    if not len(df):
        return (_ui.empty_state(tr("Cost per outcome"),
                                what=tr("No program has a budget and a pre/post gain.")),
                {}, None, None)
    shown = df[~df.suppressed & ~df.gain_suppressed & df.cost_per_gain.notna()].iloc[::-1]
    label = [_cost_label(g, c) for g, c in zip(shown.group, shown.currency, strict=True)]
    unb = shown.unbounded.fillna(False).astype(bool).to_numpy()
    hi = shown.cost_per_gain_ci_high.where(~unb)
    fig = _ui.figure(_ui.trace("scatter",
        x=shown.cost_per_gain, y=label, mode="markers",
        marker={"size": 10, "color": _ui.OKABE_ITO[0]},
        error_x={"type": "data", "symmetric": False,
                 "array": (hi - shown.cost_per_gain).fillna(0),
                 "arrayminus": shown.cost_per_gain - shown.cost_per_gain_ci_low},
        customdata=pd.concat([shown.currency, shown.cost_per_gain_ci_low,
                              shown.cost_per_gain_ci_high, shown.mean_gain, shown.n_gain,
                              shown.n_clusters], axis=1),
        hovertemplate="%{y}<br>"
                      + tr("cost per unit of gain {cost} {currency} [{low}, {high}]").format(
                          cost="%{x:,.0f}", currency="%{customdata[0]}",
                          low="%{customdata[1]:,.0f}", high="%{customdata[2]:,.0f}")
                      + "<br>" + tr("mean standardised gain {gain} (n = {n} in {clusters} "
                                    "exchanges)").format(gain="%{customdata[3]:.2f}",
                                                         n="%{customdata[4]}",
                                                         clusters="%{customdata[5]}")
                      + "<extra></extra>",
        name=tr("cost per unit of gain"),
    ))
    if unb.any():
        fig.add_trace(_ui.trace("scatter",
            x=shown.cost_per_gain[unb] * 1.5, y=[lb for lb, u in zip(label, unb, strict=True)
                                                 if u],
            mode="markers+text", text=[tr("→ unbounded")] * int(unb.sum()),
            textposition="middle right", marker={"symbol": "triangle-right", "size": 10,
                                                 "color": _ui.OKABE_ITO[5]},
            hoverinfo="skip", name=tr("upper bound: unbounded (gain CI reaches 0)")))
    currencies = sorted({_ui.text(c) for c in shown.currency})
    _ui.base_layout(fig, tr("Cost per unit of standardised gain (one participant, one "
                            "pre-score SD; 95% CI)"),
                    x=(tr("cost per unit of gain ({currency})").format(currency=currencies[0])
                       if len(currencies) == 1
                       else tr("cost per unit of gain (each row in its own currency)")),
                    y=None, height=200 + 40 * max(len(shown), 1))
    style = {} if len(shown) else {"display": "none"}
    tab = _grid.table(df.assign(
        label=[_cost_label(g, c) for g, c in zip(df.group, df.currency, strict=True)],
        no_budget=[tr("{n} of {total}").format(n=_ui.fmt_int(a), total=_ui.fmt_int(b))
                   for a, b in
                   zip(df.n_exchanges_no_budget, df.n_exchanges_group, strict=True)],
        per_gain=[_per_gain(c, lo, h, u) for c, lo, h, u in zip(
            df.cost_per_gain, df.cost_per_gain_ci_low, df.cost_per_gain_ci_high, df.unbounded,
            strict=True)]),
        {"label": (tr("{grouping} (currency)").format(grouping=tr(filters.COST_GROUPINGS[by])),
                   _ui.text),
         "no_budget": (tr("exchanges without budget"), _ui.text),
         "budget": (tr("budget"), _money),
         "n_participants": (tr("participants"), _ui.fmt_int),
         "cost_per_participant": (tr("per participant"), _money),
         "cost_per_active": (tr("per active participant"), _money),
         "per_gain": (tr("per unit of gain [95% CI]"), _ui.text),
         "note": (tr("note"), _ui.text)},
        tr("Cost per participant, per active participant and per unit of standardised gain "
           "(overall first)"), id_="overview-cost-grid")
    notes = []
    small = df[df.suppressed]
    if len(small):
        notes.append(_ui.suppressed_note([_cost_label(g, c) for g, c in
                                          zip(small.group, small.currency, strict=True)],
                                         tr("groups")))
    gs = df[df.gain_suppressed]
    if len(gs):
        notes.append(html.P(tr("{groups}: fewer than {k} participants with a gain, cost per "
                               "unit of gain {suppressed}.").format(
                                   groups=", ".join(_cost_label(g, c) for g, c in
                                                    zip(gs.group, gs.currency, strict=True)),
                                   k=_ui.fmt_int(suppression.MIN_CELL),
                                   suppressed=_ui.suppressed_label()),
                            className="small text-body-secondary"))
    return fig, style, tab, html.Div([n for n in notes if n is not None]) or None
