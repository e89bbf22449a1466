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
from pages import _grid, _ui
from pages._i18n import N_, tr

PATH = "/participation"


def _title(**_path: Any) -> str:
    """The browser tab's title in the request's language (Dash calls it per page load)."""
    return tr("Exchange Impact — Participation")


dash.register_page(__name__, path=PATH, name=N_("Participation"), order=1, title=_title)

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
# ACTIVITY_GROUPINGS' labels (analytics, English), marked here for the catalogue: the page shows
# them through tr.
_GROUPING_WORDS = (N_("Cluster"), N_("Country"))
# A grouping as the noun the page's sentences and table headers use ("… by cluster").
_GROUP_NOUNS = {"cluster": N_("cluster"), "country": N_("country"), "exchange": N_("exchange")}
_WEEKDAYS = [N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun")]


def _noun(by: str) -> str:
    """A grouping's noun ("cluster") in the request's language."""
    return tr(_GROUP_NOUNS.get(by, by))


def layout(by: str = "cluster", **_query: Any) -> html.Div:
    by = by if by in _BY_OPTIONS else "cluster"
    return html.Div(
        [
            html.H1(tr("Participation"), className="h3"),
            html.Div(
                [
                    html.Label(tr("Show weekly activity by"), htmlFor=BY,
                               className="me-2 fw-semibold"),
                    dbc.RadioItems(id=BY, options=[{"label": tr(v), "value": k}
                                                   for k, v in _BY_OPTIONS.items()],
                                   value=by, inline=True),
                ],
                className="d-flex align-items-center flex-wrap mb-2",
            ),
            _ui.graph(WEEKLY, tr("Weekly active participants and minutes by group")),
            html.Div(id=WEEKLY_NOTE),
            dbc.Row(
                [
                    dbc.Col(_ui.graph(CLUSTERS, tr("Participants per cluster; click a bar to "
                                                   "filter")), lg=5),
                    dbc.Col([_ui.graph(HEATMAP, tr("Events by local weekday and hour")),
                             html.Div(id=HEATMAP_NOTE)], lg=7),
                ]
            ),
            _ui.graph(RETENTION, tr("Share of each cohort active in each week after "
                                    "starting")),
            html.Div(id=RETENTION_NOTE),
            _ui.section(tr("Breakdown"), html.Div(id=TABLES)),
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
    noun = _noun(by)
    title = tr("Weekly active participants and minutes by {by}").format(by=noun)
    if not len(df):
        return _ui.empty_figure(
            title, tr("No participation events match the current filters.")), None
    shown, small = df[~df.suppressed], df[df.suppressed]
    note = _ui.suppressed_note(sorted(small.grp.astype(str).unique()),
                               tr("{by} groups").format(by=noun))
    if not len(shown):
        return _ui.suppressed_figure(
            title, tr("Every {by} group has fewer than {k} participants").format(
                by=noun, k=_ui.fmt_int(suppression.MIN_CELL))), note
    # More than eight lines cannot be told apart: show the eight largest groups and say so.
    sizes = shown.groupby("grp")["n"].max().sort_values(ascending=False)
    top = set(sizes.index[:8])
    hidden = len(sizes) - len(top)
    shown = shown[shown.grp.isin(top)]
    fig = _ui.grid(2, 1, vertical_spacing=0.08, shared_x=True)
    week = tr("week of %{x|%Y-%m-%d}")
    size = tr("group size n = %{customdata[0]:,}")
    for i, (grp, d) in enumerate(shown.groupby("grp", sort=True)):
        common = {"x": d.week, "name": _ui.ptext(grp), "legendgroup": _ui.ptext(grp),
                  "line": _ui.series_line(i), "mode": "lines",
                  "customdata": d[["n"]]}
        fig.add_trace(_ui.trace("scatter", y=d.active, **common, hovertemplate=(
            "%{fullData.name}<br>" + week + "<br>" + tr("active: %{y:,} people")
            + "<br>" + size + "<extra></extra>"), **_ui.cell_axes(0)))
        fig.add_trace(_ui.trace("scatter", y=d.minutes, **common, showlegend=False, hovertemplate=(
            "%{fullData.name}<br>" + week + "<br>" + tr("%{y:,.0f} minutes")
            + "<br>" + size + "<extra></extra>"), **_ui.cell_axes(1)))
    _ui.base_layout(fig, title, height=520)
    # Short titles: each sits beside its own half of the figure and long ones ran into each other.
    fig.update_layout(yaxis={"title": {"text": tr("active (people)")}},
                      yaxis2={"title": {"text": tr("minutes")}},
                      xaxis2={"title": {"text": tr("week (Monday, UTC)")}})
    _ui.legend_below(fig, len(top), per_row=4)
    notes = [note, _ui.suppressed_weeks_note(shown), _ui.isolating_note(df, tr("Some weeks"))]
    if hidden:
        notes.append(html.P(tr("Showing the 8 largest of {n} {by} groups; choose {by} values in "
                               "the filter bar to compare others.").format(
                                   n=_ui.fmt_int(len(sizes)), by=noun),
                            className="small text-body-secondary"))
    return fig, notes


@callback(Output(CLUSTERS, "figure"), Input(_ui.FILTERS, "data"))
def clusters(store: dict[str, Any] | None) -> _ui.Figure:
    f = _ui.filters_of(store)
    df = _ui.query(participation.breakdown, f, "cluster")
    # The hint lives in the hover text: a longer title ran under the graph's toolbar.
    title = tr("Participants per cluster")
    if not len(df):
        return _ui.empty_figure(title, tr("No participants match the current filters."))
    df = df.iloc[::-1]
    suppressed = _ui.suppressed_label()
    labels = [_ui.ptext(g) + (f" — {suppressed}" if s else "")
              for g, s in zip(df.group, df.suppressed, strict=True)]
    # A suppressed cluster keeps its label and gets no bar (its count is blank, never 0).
    hover = [suppressed if s else tr("participants (n): {n}").format(n=_ui.fmt_int(v))
             for v, s in zip(df.participants, df.suppressed, strict=True)]
    fig = _ui.figure(_ui.trace("bar",
        x=df.participants, y=labels, orientation="h", customdata=df[["key"]],
        hovertext=hover,
        marker={"color": [_ui.SUPPRESSED_GREY if s else _ui.OKABE_ITO[0] for s in df.suppressed]},
        hovertemplate="%{y}<br>%{hovertext}<br>" + tr("click to filter") + "<extra></extra>",
        name=tr("participants"),
    ))
    fig.update_yaxes(automargin=True)
    return _ui.base_layout(fig, title, x=tr("participants (people)"), height=360)


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
    title = tr("Events by local hour and weekday (each institution's time zone)")
    if not len(df):
        return _ui.empty_figure(
            title, tr("No participation events match the current filters.")), None
    small = int(df.suppressed.sum())
    note = (html.P(tr("{small} of {total} weekday × hour cells with activity {suppressed} (left "
                      "blank).").format(small=_ui.fmt_int(small), total=_ui.fmt_int(len(df)),
                                         suppressed=_ui.suppressed_label()),
                   className="small text-body-secondary suppressed-note") if small else None)
    if small == len(df):
        return _ui.suppressed_figure(title, tr("Every weekday × hour cell has fewer than {k} "
                                               "participants").format(
                                                   k=_ui.fmt_int(suppression.MIN_CELL))), note
    # Hours without events are real zeros; a suppressed cell stays blank (NaN), never 0.
    cells = pd.MultiIndex.from_product([range(1, 8), range(24)], names=["weekday", "hour"])
    by_cell = df.set_index(["weekday", "hour"]).reindex(cells)
    quiet = by_cell.suppressed.isna()
    grid = by_cell.events.mask(quiet, 0).unstack("hour")
    n = by_cell.n.mask(quiet, 0).unstack("hour")
    fig = _ui.figure(_ui.trace("heatmap",
        z=grid.to_numpy(float), x=list(range(24)), y=[tr(d) for d in _WEEKDAYS],
        colorscale=_ui.SEQUENTIAL, customdata=n.to_numpy(float),
        colorbar={"title": {"text": tr("events")}}, hoverongaps=False,
        hovertemplate=tr("%{y} %{x}:00–%{x}:59 local") + "<br>" + tr("events: %{z:,}")
                      + "<br>" + tr("participants (n): %{customdata:,}") + "<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    return _ui.base_layout(fig, title, x=tr("local hour of day (0–23)"), y=tr("local weekday"),
                           height=360), note


@callback(Output(RETENTION, "figure"), Output(RETENTION_NOTE, "children"),
          Input(_ui.FILTERS, "data"))
def retention(store: dict[str, Any] | None) -> tuple[_ui.Figure, Any]:
    f = _ui.filters_of(store)
    df = _ui.query(participation.retention_by_cohort, f)
    title = tr("Retention by cohort: share active k weeks after first activity")
    if not len(df):
        return _ui.empty_figure(
            title, tr("No participation events match the current filters.")), None
    shown, small = df[~df.suppressed], df[df.suppressed]
    note = _ui.suppressed_note(sorted(small.cohort.astype(str).unique()), tr("cohorts"))
    if not len(shown):
        return _ui.suppressed_figure(title, tr("Every cohort has fewer than {k} participants")
                                     .format(k=_ui.fmt_int(suppression.MIN_CELL))), note
    fig = _ui.figure()
    hover = (tr("cohort %{fullData.name}") + "<br>" + tr("week %{x}: %{y:.0%} active") + "<br>"
             + tr("%{customdata[0]:,} of n = %{customdata[1]:,}") + "<extra></extra>")
    for i, (cohort, d) in enumerate(shown.groupby("cohort", sort=True)):
        fig.add_trace(_ui.trace("scatter",
            x=d.week, y=d.share, mode="lines+markers",
            name=f"{_ui.ptext(cohort)} (n = {_ui.fmt_int(d.n.iloc[0])})",
            line=_ui.series_line(i), customdata=d[["active", "n"]],
            hovertemplate=hover,
        ))
    _ui.base_layout(fig, title, x=tr("weeks since the first active day (days since ÷ 7)"),
                    y=tr("share of cohort active (%)"), height=360)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return fig, [note, _ui.suppressed_weeks_note(shown),
                 _ui.isolating_note(df, tr("Some cohorts or weeks"))]


_TABLE_COLUMNS = {  # headers marked for the catalogue, translated in `tables`
    "group": (N_("group"), _ui.text),
    "participants": (N_("participants"), _ui.fmt_int),
    "active": (N_("active (any event)"), _ui.fmt_int),
    "events": (N_("events"), _ui.fmt_int),
    "minutes": (N_("minutes"), _ui.fmt_int),
    "minutes_per_active": (N_("minutes per active participant"), lambda v: _ui.fmt_num(v, 0)),
}


@callback(Output(TABLES, "children"), Input(_ui.FILTERS, "data"))
def tables(store: dict[str, Any] | None) -> html.Div:
    f = _ui.filters_of(store)
    tabs = []
    for by, label, caption in [
            ("cluster", tr("By cluster"), tr("Participation by cluster")),
            ("country", tr("By country"), tr("Participation by country")),
            ("exchange", tr("By exchange"), tr("Participation by exchange"))]:
        df = _ui.query(participation.breakdown, f, by)
        cols = {k: (tr(header), fmt) for k, (header, fmt) in _TABLE_COLUMNS.items()}
        cols["group"] = (_noun(by), _ui.text)
        if by == "exchange":
            cols.pop("active")
        tabs.append((by, label, _ui.with_isolating_note(
            _grid.table(df, cols, caption, id_=f"participation-table-{by}"),
            df, tr("Some rows"))))
    return _ui.tabs(tabs, "participation-breakdown")


# Scheduling friction (issue 13): res_scheduling and res_scheduling_model
# ---------------------------------------------------------------------------------------------

def _scheduling_section() -> html.Section:
    return _ui.section(
        tr("Scheduling friction: do time zones throttle joint work?"),
        _ui.graph(SCHEDULING, tr("Joint (synchronous) share of each partnership's events "
                                 "against the hours per school day both institutions are in "
                                 "school")),
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
    return tr("Overlap: hours per school day when both institutions are in school hours "
              "({hours} local, {days}), from each institution's IANA time zone over the "
              "exchange's dates, daylight-saving changes included. Joint share: synchronous "
              "events ({sync}) / all events of both institutions' participants in the "
              "exchange. Model: OLS of the joint share on overlap hours, adjusted for "
              "modality, one point per partnership, CR2 cluster-robust 95% CI by exchange "
              "(Satterthwaite df). An association: programs choose partners and formats. All "
              "partnerships of the program: the filters do not apply.").format(
                  hours=hours, days=days.replace(",", ", "), sync=sync.replace(",", ", "))


def _model_text(m: pd.Series | None) -> str:
    if m is None or pd.isna(m.get("estimate")):
        return tr("Model: no estimate (too few partnerships shown, or overlap does not vary).")
    pp = 100 * float(m["estimate"])
    lo, hi = 100 * float(m["ci_low_cr2"]), 100 * float(m["ci_high_cr2"])
    return tr("Each extra hour of overlap per school day goes with {pp} percentage points of "
              "joint share (95% CI {lo} to {hi}; OLS, CR2 by exchange; {n_partnerships} "
              "partnerships in {n_clusters} exchanges).").format(
                  pp=_signed(pp), lo=_signed(lo), hi=_signed(hi),
                  n_partnerships=_ui.fmt_int(m["n_partnerships"]),
                  n_clusters=_ui.fmt_int(m["n_clusters"]))


def _signed(v: float) -> str:
    """A number with one decimal and its sign, "+" too (f"{v:+.1f}" in the language)."""
    s = _ui.fmt_num(v, 1)
    return s if s.startswith(("-", "−")) else "+" + s


@callback(Output(SCHEDULING, "figure"), Output(SCHEDULING_NOTE, "children"),
          Output(SCHEDULING_TABLE, "children"), Input(_ui.FILTERS, "data"))
def scheduling(_store: dict[str, Any] | None) -> tuple[_ui.Figure, Any, Any]:
    df = _ui.query(participation.scheduling)
    models = _ui.query(participation.scheduling_model)
    m = models.iloc[0] if len(models) else None
    title = tr("Joint share of events against school-hours overlap per partnership")
    if not len(df):
        return (_ui.empty_state(title, what=tr("No partnership has events and both "
                                               "institutions' time zones.")), None, None)
    zero = df.zero_overlap.fillna(False).astype(bool)
    shown = df[~df.suppressed]
    note = html.Div([
        html.P(_model_text(m), className="fw-semibold", id="scheduling-estimate"),
        html.P(scheduling_method(m), className="small text-body-secondary",
               id="scheduling-method"),
        html.P(tr("{zero} of {total} partnerships never share a school hour (zero overlap).")
               .format(zero=_ui.fmt_count(int(zero.sum())), total=_ui.fmt_count(len(df))),
               className="small", id="scheduling-zero"),
        _ui.suppressed_note(sorted(df.loc[df.suppressed, "partnership_id"].astype(str)),
                            tr("partnerships with fewer active participants"))])
    zero_word = tr("zero overlap")
    if not len(shown):
        fig = _ui.suppressed_figure(title, tr("Every partnership has fewer than {k} active "
                                              "participants").format(
                                                  k=_ui.fmt_int(suppression.MIN_CELL)))
    else:
        fig = _ui.figure()
        for flag, name in [(False, tr("some overlap")), (True, zero_word)]:
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
                hovertemplate="%{text}<br>%{customdata[0]} – %{customdata[1]}<br>"
                              + tr("overlap %{x:.1f} h per school day") + "<br>"
                              + tr("joint share %{y:.0%} of %{customdata[2]:,} events") + "<br>"
                              + tr("active participants (n): %{customdata[3]:,}")
                              + "<extra></extra>",
            ))
        _ui.base_layout(fig, title, x=tr("overlap: hours per school day both are in school"),
                        y=tr("joint (synchronous) share of events"), height=420)
        fig.update_yaxes(tickformat=".0%")
        _ui.legend_below(fig, 2, per_row=2)
    table = _grid.table(df.assign(
        pair=lambda d: [f"{a} – {b}" for a, b in zip(d.tz_a, d.tz_b, strict=True)],
        zero_flag=lambda d: [zero_word if z else "" for z in d.zero_overlap.fillna(False)]),
        {"partnership_id": (tr("partnership"), _ui.text),
         "exchange_id": (tr("exchange"), _ui.text),
         "pair": (tr("time zones"), _ui.text),
         "overlap_hours_per_day": (tr("overlap h / school day"), lambda v: _ui.fmt_num(v, 1)),
         "zero_overlap_days": (tr("days without overlap"), _ui.fmt_int),
         "zero_flag": (tr("flag"), _ui.text),
         "n_participants": (tr("active participants"), _ui.fmt_int),
         "n_events": (tr("events"), _ui.fmt_int),
         "joint_share": (tr("joint share"), _ui.fmt_pct)},
        tr("Partnerships by school-hours overlap, least first (every one in the export "
           "res_scheduling)"), id_=SCHEDULING_TABLE + "-rows", max_rows=25)
    return fig, note, table
