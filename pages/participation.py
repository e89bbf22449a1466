"""Participation: weekly activity by cluster or country, local-time heatmap, retention by cohort,
breakdown tables."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, State, callback, html

from analytics import suppression
from analytics.read import overview, participation
from analytics.read.filters import ACTIVITY_GROUPINGS
from pages import _ui

PATH = "/participation"
dash.register_page(__name__, path=PATH, name="Participation", order=1,
                   title="Exchange Impact — Participation")

BY = "participation-by"
WEEKLY = "participation-weekly"
WEEKLY_NOTE = "participation-weekly-note"
CLUSTERS = "participation-clusters"
HEATMAP = "participation-heatmap"
HEATMAP_NOTE = "participation-heatmap-note"
RETENTION = "participation-retention"
RETENTION_NOTE = "participation-retention-note"
TABLES = "participation-tables"
SCHEDULING = "participation-scheduling"
SCHEDULING_NOTE = "participation-scheduling-note"
SCHEDULING_TABLE = "participation-scheduling-table"

_BY_OPTIONS = ACTIVITY_GROUPINGS
_WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def layout(by: str = "cluster", **_query: Any) -> html.Div:
    by = by if by in _BY_OPTIONS else "cluster"
    return html.Div(
        [
            html.H1("Participation", className="h3"),
            html.Div(
                [
                    html.Label("Show weekly activity by", htmlFor=BY, className="me-2 fw-semibold"),
                    dbc.RadioItems(id=BY, options=[{"label": v, "value": k}
                                                   for k, v in _BY_OPTIONS.items()],
                                   value=by, inline=True),
                ],
                className="d-flex align-items-center flex-wrap mb-2",
            ),
            _ui.graph(WEEKLY, "Weekly active participants and minutes by group"),
            html.Div(id=WEEKLY_NOTE),
            dbc.Row(
                [
                    dbc.Col(_ui.graph(CLUSTERS, "Participants per cluster; click a bar to filter"),
                            lg=5),
                    dbc.Col([_ui.graph(HEATMAP, "Events by local weekday and hour"),
                             html.Div(id=HEATMAP_NOTE)], lg=7),
                ]
            ),
            _ui.graph(RETENTION, "Share of each cohort active in each week after starting"),
            html.Div(id=RETENTION_NOTE),
            _ui.section("Breakdown", html.Div(id=TABLES)),
            _scheduling_section(),
        ]
    )


@callback(Output(_ui.VIEW, "data", allow_duplicate=True), Input(BY, "value"),
          prevent_initial_call="initial_duplicate")
def view_url(by: Any) -> dict[str, str]:
    """The grouping belongs in the shareable link (/participation?by=country)."""
    return _ui.view_store(PATH, {"by": _ui.choice(by, _BY_OPTIONS, "cluster")})


@callback(Output(WEEKLY, "figure"), Output(WEEKLY_NOTE, "children"),
          Input(_ui.FILTERS, "data"), Input(BY, "value"))
def weekly(store: dict[str, Any] | None, by: str) -> tuple[_ui.Figure, Any]:
    f = _ui.filters_of(store)
    by = _ui.choice(by, _BY_OPTIONS, "cluster")
    df = _ui.query(overview.activity_over_time, f, by)
    title = f"Weekly active participants and minutes by {by}"
    if not len(df):
        return _ui.empty_figure(title, "No participation events match the current filters."), None
    shown, small = df[~df.suppressed], df[df.suppressed]
    note = _ui.suppressed_note(sorted(small.grp.astype(str).unique()), f"{by} groups")
    if not len(shown):
        return _ui.suppressed_figure(
            title, f"Every {by} group has fewer than {suppression.MIN_CELL} participants"), note
    # More than eight lines cannot be told apart: show the eight largest groups and say so.
    sizes = shown.groupby("grp")["n"].max().sort_values(ascending=False)
    top = set(sizes.index[:8])
    hidden = len(sizes) - len(top)
    shown = shown[shown.grp.isin(top)]
    fig = _ui.grid(2, 1, vertical_spacing=0.08, shared_x=True)
    for i, (grp, d) in enumerate(shown.groupby("grp", sort=True)):
        common = {"x": d.week, "name": _ui.ptext(grp), "legendgroup": _ui.ptext(grp),
                  "line": _ui.series_line(i), "mode": "lines",
                  "customdata": d[["n"]]}
        fig.add_trace(_ui.trace("scatter", y=d.active, **common, hovertemplate=(
            "%{fullData.name}<br>week of %{x|%Y-%m-%d}<br>active: %{y:,} people"
            "<br>group size n = %{customdata[0]:,}<extra></extra>"), **_ui.cell_axes(0)))
        fig.add_trace(_ui.trace("scatter", y=d.minutes, **common, showlegend=False, hovertemplate=(
            "%{fullData.name}<br>week of %{x|%Y-%m-%d}<br>%{y:,.0f} minutes"
            "<br>group size n = %{customdata[0]:,}<extra></extra>"), **_ui.cell_axes(1)))
    _ui.base_layout(fig, title, height=520)
    # Short titles: each sits beside its own half of the figure and long ones ran into each other.
    fig.update_layout(yaxis={"title": {"text": "active (people)"}},
                      yaxis2={"title": {"text": "minutes"}},
                      xaxis2={"title": {"text": "week (Monday, UTC)"}})
    _ui.legend_below(fig, len(top), per_row=4)
    notes = [note, _ui.suppressed_weeks_note(shown), _ui.isolating_note(df, "Some weeks")]
    if hidden:
        notes.append(html.P(f"Showing the 8 largest of {len(sizes)} {by} groups; choose "
                            f"{by} values in the filter bar to compare others.",
                            className="small text-body-secondary"))
    return fig, notes


@callback(Output(CLUSTERS, "figure"), Input(_ui.FILTERS, "data"))
def clusters(store: dict[str, Any] | None) -> _ui.Figure:
    f = _ui.filters_of(store)
    df = _ui.query(participation.breakdown, f, "cluster")
    # The hint lives in the hover text: a longer title ran under the graph's toolbar.
    title = "Participants per cluster"
    if not len(df):
        return _ui.empty_figure(title, "No participants match the current filters.")
    df = df.iloc[::-1]
    labels = [_ui.ptext(g) + (f" — {suppression.SUPPRESSED_LABEL}" if s else "")
              for g, s in zip(df.group, df.suppressed, strict=True)]
    # A suppressed cluster keeps its label and gets no bar (its count is blank, never 0).
    hover = [suppression.SUPPRESSED_LABEL if s else f"participants (n): {_ui.fmt_int(v)}"
             for v, s in zip(df.participants, df.suppressed, strict=True)]
    fig = _ui.figure(_ui.trace("bar",
        x=df.participants, y=labels, orientation="h", customdata=df[["key"]],
        hovertext=hover,
        marker={"color": [_ui.SUPPRESSED_GREY if s else _ui.OKABE_ITO[0] for s in df.suppressed]},
        hovertemplate="%{y}<br>%{hovertext}<br>click to filter<extra></extra>",
        name="participants",
    ))
    fig.update_yaxes(automargin=True)
    return _ui.base_layout(fig, title, x="participants (people)", height=360)


@callback(
    Output(_ui.fid("cluster"), "value", allow_duplicate=True),
    Input(CLUSTERS, "clickData"),
    State(_ui.fid("cluster"), "value"),
    prevent_initial_call=True,
)
def cluster_click(click: dict[str, Any] | None, current: list[str] | None) -> list[str]:
    """Drill down: a click on a cluster's bar makes it the cluster filter (again: clears)."""
    key = _ui.clicked(click, "customdata")
    return [] if current == [key] else [key]


@callback(Output(HEATMAP, "figure"), Output(HEATMAP_NOTE, "children"),
          Input(_ui.FILTERS, "data"))
def heatmap(store: dict[str, Any] | None) -> tuple[_ui.Figure, Any]:
    f = _ui.filters_of(store)
    df = _ui.query(participation.activity_heatmap, f)
    title = "Events by local hour and weekday (each institution's time zone)"
    if not len(df):
        return _ui.empty_figure(title, "No participation events match the current filters."), None
    small = int(df.suppressed.sum())
    note = (html.P(f"{small} of {len(df)} weekday × hour cells with activity "
                   f"{suppression.SUPPRESSED_LABEL} (left blank).",
                   className="small text-body-secondary suppressed-note") if small else None)
    if small == len(df):
        return _ui.suppressed_figure(title, f"Every weekday × hour cell has fewer than "
                                            f"{suppression.MIN_CELL} participants"), note
    # Hours without events are real zeros; a suppressed cell stays blank (NaN), never 0.
    cells = pd.MultiIndex.from_product([range(1, 8), range(24)], names=["weekday", "hour"])
    by_cell = df.set_index(["weekday", "hour"]).reindex(cells)
    quiet = by_cell.suppressed.isna()
    grid = by_cell.events.mask(quiet, 0).unstack("hour")
    n = by_cell.n.mask(quiet, 0).unstack("hour")
    fig = _ui.figure(_ui.trace("heatmap",
        z=grid.to_numpy(float), x=list(range(24)), y=_WEEKDAYS, colorscale=_ui.SEQUENTIAL,
        customdata=n.to_numpy(float), colorbar={"title": {"text": "events"}}, hoverongaps=False,
        hovertemplate="%{y} %{x}:00–%{x}:59 local<br>events: %{z:,}"
                      "<br>participants (n): %{customdata:,}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    return _ui.base_layout(fig, title, x="local hour of day (0–23)", y="local weekday",
                           height=360), note


@callback(Output(RETENTION, "figure"), Output(RETENTION_NOTE, "children"),
          Input(_ui.FILTERS, "data"))
def retention(store: dict[str, Any] | None) -> tuple[_ui.Figure, Any]:
    f = _ui.filters_of(store)
    df = _ui.query(participation.retention_by_cohort, f)
    title = "Retention by cohort: share active k weeks after first activity"
    if not len(df):
        return _ui.empty_figure(title, "No participation events match the current filters."), None
    shown, small = df[~df.suppressed], df[df.suppressed]
    note = _ui.suppressed_note(sorted(small.cohort.astype(str).unique()), "cohorts")
    if not len(shown):
        return _ui.suppressed_figure(title, f"Every cohort has fewer than {suppression.MIN_CELL} "
                                            "participants"), note
    fig = _ui.figure()
    for i, (cohort, d) in enumerate(shown.groupby("cohort", sort=True)):
        fig.add_trace(_ui.trace("scatter",
            x=d.week, y=d.share, mode="lines+markers",
            name=f"{_ui.ptext(cohort)} (n = {d.n.iloc[0]:,})",
            line=_ui.series_line(i), customdata=d[["active", "n"]],
            hovertemplate="cohort %{fullData.name}<br>week %{x}: %{y:.0%} active"
                          "<br>%{customdata[0]:,} of n = %{customdata[1]:,}<extra></extra>",
        ))
    _ui.base_layout(fig, title, x="weeks since the first active day (days since ÷ 7)",
                    y="share of cohort active (%)", height=360)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return fig, [note, _ui.suppressed_weeks_note(shown),
                 _ui.isolating_note(df, "Some cohorts or weeks")]


_TABLE_COLUMNS = {
    "group": ("group", _ui.text),
    "participants": ("participants", _ui.fmt_int),
    "active": ("active (any event)", _ui.fmt_int),
    "events": ("events", _ui.fmt_int),
    "minutes": ("minutes", _ui.fmt_int),
    "minutes_per_active": ("minutes per active participant", lambda v: _ui.fmt_num(v, 0)),
}


@callback(Output(TABLES, "children"), Input(_ui.FILTERS, "data"))
def tables(store: dict[str, Any] | None) -> html.Div:
    f = _ui.filters_of(store)
    tabs = []
    for by, label in [("cluster", "By cluster"), ("country", "By country"),
                      ("exchange", "By exchange")]:
        df = _ui.query(participation.breakdown, f, by)
        cols = dict(_TABLE_COLUMNS)
        cols["group"] = (by, _ui.text)
        if by == "exchange":
            cols.pop("active")
        tabs.append((by, label, _ui.with_isolating_note(
            _ui.table(df, cols, f"Participation {label.lower()}", id_=f"participation-table-{by}"),
            df, "Some rows")))
    return _ui.tabs(tabs, "participation-breakdown")


# Scheduling friction (issue 13): res_scheduling and res_scheduling_model
# ---------------------------------------------------------------------------------------------

def _scheduling_section() -> html.Section:
    return _ui.section(
        "Scheduling friction: do time zones throttle joint work?",
        _ui.graph(SCHEDULING, "Joint (synchronous) share of each partnership's events against "
                  "the hours per school day both institutions are in school"),
        html.Div(id=SCHEDULING_NOTE),
        html.Div(id=SCHEDULING_TABLE),
        id_="participation-scheduling-section",
    )


def scheduling_method(model: pd.Series | None) -> str:
    """The method note beside the estimate: settings and model, spelled from the stored row."""
    hours = days = sync = "?"
    if model is not None:
        hours, days, sync = (_ui.text(model.get(c)) or "?" for c in (
            "school_hours", "school_days_setting", "sync_activities"))
    return (f"Overlap: hours per school day when both institutions are in school hours "
            f"({hours} local, {days.replace(',', ', ')}), from each institution's IANA time "
            f"zone over the "
            f"exchange's dates, daylight-saving changes included. Joint share: synchronous "
            f"events ({sync.replace(',', ', ')}) / all events of both institutions' "
            f"participants in the exchange. Model: OLS of the joint share on overlap hours, "
            f"adjusted for modality, one point per partnership, CR2 cluster-robust 95% CI by "
            f"exchange (Satterthwaite df). An association: programs choose partners and "
            f"formats. All partnerships of the program: the filters do not apply.")


def _model_text(m: pd.Series | None) -> str:
    if m is None or pd.isna(m.get("estimate")):
        return "Model: no estimate (too few partnerships shown, or overlap does not vary)."
    pp = 100 * float(m["estimate"])
    lo, hi = 100 * float(m["ci_low_cr2"]), 100 * float(m["ci_high_cr2"])
    return (f"Each extra hour of overlap per school day goes with {pp:+.1f} percentage points "
            f"of joint share (95% CI {lo:+.1f} to {hi:+.1f}; OLS, CR2 by exchange; "
            f"{_ui.fmt_int(m['n_partnerships'])} partnerships in "
            f"{_ui.fmt_int(m['n_clusters'])} exchanges).")


@callback(Output(SCHEDULING, "figure"), Output(SCHEDULING_NOTE, "children"),
          Output(SCHEDULING_TABLE, "children"), Input(_ui.FILTERS, "data"))
def scheduling(_store: dict[str, Any] | None) -> tuple[_ui.Figure, Any, Any]:
    df = _ui.query(participation.scheduling)
    models = _ui.query(participation.scheduling_model)
    m = models.iloc[0] if len(models) else None
    title = "Joint share of events against school-hours overlap per partnership"
    if not len(df):
        return (_ui.empty_figure(title, "No scheduling results yet (python -m analytics)."),
                None, None)
    zero = df.zero_overlap.fillna(False).astype(bool)
    shown = df[~df.suppressed]
    note = html.Div([
        html.P(_model_text(m), className="fw-semibold", id="scheduling-estimate"),
        html.P(scheduling_method(m), className="small text-body-secondary",
               id="scheduling-method"),
        html.P(f"{_ui.fmt_count(int(zero.sum()))} of {_ui.fmt_count(len(df))} partnerships "
               "never share a school hour "
               f"(zero overlap).", className="small", id="scheduling-zero"),
        _ui.suppressed_note(sorted(df.loc[df.suppressed, "partnership_id"].astype(str)),
                            "partnerships with fewer active participants")])
    if not len(shown):
        fig = _ui.suppressed_figure(title, "Every partnership has fewer than "
                                           f"{suppression.MIN_CELL} active participants")
    else:
        fig = _ui.figure()
        for flag, name in [(False, "some overlap"), (True, "zero overlap")]:
            d = shown[shown.zero_overlap.fillna(False).astype(bool) == flag]
            if not len(d):
                continue
            fig.add_trace(_ui.trace("scatter",
                x=d.overlap_hours_per_day, y=d.joint_share, mode="markers",
                name=f"{name} (n = {_ui.fmt_count(len(d))})",
                marker={"color": _ui.OKABE_ITO[5 if flag else 0], "size": 8,
                        "symbol": "x" if flag else "circle"},
                text=[_ui.ptext(p) for p in d.partnership_id],
                customdata=d[["tz_a", "tz_b", "n_events", "n_participants"]],
                hovertemplate="%{text}<br>%{customdata[0]} – %{customdata[1]}"
                              "<br>overlap %{x:.1f} h per school day<br>joint share %{y:.0%}"
                              " of %{customdata[2]:,} events<br>active participants (n): "
                              "%{customdata[3]:,}<extra></extra>",
            ))
        _ui.base_layout(fig, title, x="overlap: hours per school day both are in school",
                        y="joint (synchronous) share of events", height=420)
        fig.update_yaxes(tickformat=".0%")
        _ui.legend_below(fig, 2, per_row=2)
    table = _ui.table(df.assign(
        pair=lambda d: [f"{a} – {b}" for a, b in zip(d.tz_a, d.tz_b, strict=True)],
        zero_flag=lambda d: ["zero overlap" if z else "" for z in d.zero_overlap.fillna(False)]),
        {"partnership_id": ("partnership", _ui.text), "exchange_id": ("exchange", _ui.text),
         "pair": ("time zones", _ui.text),
         "overlap_hours_per_day": ("overlap h / school day", lambda v: _ui.fmt_num(v, 1)),
         "zero_overlap_days": ("days without overlap", _ui.fmt_int),
         "zero_flag": ("flag", _ui.text),
         "n_participants": ("active participants", _ui.fmt_int),
         "n_events": ("events", _ui.fmt_int),
         "joint_share": ("joint share", _ui.fmt_pct)},
        "Partnerships by school-hours overlap, least first (every one in the export "
        "res_scheduling)", id_=SCHEDULING_TABLE + "-rows", max_rows=25)
    return fig, note, table
