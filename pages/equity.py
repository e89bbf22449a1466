"""Equity & access: gains and participation by gender, age band, connectivity and income group;
the attrition funnel and who drops out before the post survey."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, callback, dcc, html

from analytics import suppression
from analytics.read import equity, filters
from pages import _grid, _ui
from pages._i18n import N_, tr

PATH = "/equity"


def _title() -> str:
    return tr("Exchange Impact — Equity & access")


# The title is a function: Dash Pages calls it per request, in the request's language.
dash.register_page(__name__, path=PATH, name=N_("Equity & access"), order=4, title=_title)

BY = "equity-by"
SCALE = "equity-scale"
ALL_SCALES = "all"
GAINS = "equity-gains"
GAINS_NOTE = "equity-gains-note"
PARTICIPATION = "equity-participation"
PARTICIPATION_NOTE = "equity-participation-note"
FUNNEL = "equity-funnel"
DROPOUT = "equity-dropout"
GAPS = "equity-gaps-table-div"
# filters.EQUITY_GROUPINGS' labels, for the catalogue: `_grouping` translates them where shown.
_GROUPING_WORDS = (N_("Gender"), N_("Age band"), N_("Connectivity"), N_("Country income group"))
# The attrition funnel's stages (equity.attrition_funnel; "answered <wave>" besides).
_STAGES = (N_("enrolled"), N_("active in the log"))


def _grouping(by: str) -> str:
    """The name of grouping `by` (a key of filters.EQUITY_GROUPINGS) in the request's language."""
    return tr(filters.EQUITY_GROUPINGS[by])


def _stage(stage: object) -> str:
    """A funnel stage's name in the request's language (a deployment's own wave name is data:
    kept)."""
    s = str(stage)
    if s.startswith("answered "):
        return tr("answered {wave}").format(wave=_ui.wave_name(s.removeprefix("answered ")))
    return tr(s) if s in _STAGES else s


def _scale_options() -> list[dict[str, str]]:
    return [{"label": tr("all scales"), "value": ALL_SCALES}, *_ui.scale_options()]


def layout(by: str = "gender", scale: str = ALL_SCALES, **_query: Any) -> html.Div:
    by = by if by in filters.EQUITY_GROUPINGS else "gender"
    options = _scale_options()
    scale = scale if scale in [o["value"] for o in options] else ALL_SCALES
    return html.Div(
        [
            html.H1(tr("Equity & access"), className="h3"),
            html.Div(
                [
                    html.Label(tr("Compare by"), htmlFor=BY, className="me-2 fw-semibold"),
                    dbc.RadioItems(id=BY, value=by, inline=True, options=[
                        {"label": _grouping(k), "value": k} for k in filters.EQUITY_GROUPINGS]),
                    html.Label(tr("Scale (gains)"), htmlFor=SCALE,
                               className="ms-4 me-2 fw-semibold"),
                    dcc.Dropdown(id=SCALE, options=options, value=scale,
                                 clearable=False, style={"minWidth": "26rem"}),
                ],
                className="d-flex align-items-center flex-wrap mb-2",
            ),
            dbc.Row(
                [
                    dbc.Col([_ui.graph(GAINS, tr("Mean pre-to-post gain per group with 95% "
                                                 "CIs")),
                             html.Div(id=GAINS_NOTE)], lg=6),
                    dbc.Col([_ui.graph(PARTICIPATION, tr("Participation per group")),
                             html.Div(id=PARTICIPATION_NOTE)], lg=6),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(_ui.graph(FUNNEL, tr("Attrition funnel from enrolment to "
                                                 "follow-up")), lg=6),
                    dbc.Col(_ui.section(tr("Who drops out before the post survey"),
                                        html.Div(id=DROPOUT)), lg=6),
                ]
            ),
            _ui.section(tr("Gap between the best- and worst-served groups"), html.Div(id=GAPS),
                        id_="equity-gaps-section"),
        ]
    )


@callback(Output(_ui.VIEW, "data", allow_duplicate=True), Input(BY, "value"),
          Input(SCALE, "value"), prevent_initial_call="initial_duplicate")
def view_url(by: Any, scale: Any) -> dict[str, str]:
    """The grouping and the scale belong in the shareable link (/equity?by=age_band)."""
    return _ui.view_store(PATH, {"by": _ui.choice(by, filters.EQUITY_GROUPINGS, "gender"),
                                 "scale": scale if isinstance(scale, str) else ALL_SCALES})


@callback(Output(GAINS, "figure"), Output(GAINS_NOTE, "children"),
          Input(_ui.FILTERS, "data"), Input(BY, "value"), Input(SCALE, "value"))
def gains(store: dict[str, Any] | None, by: str, scale: str | None) -> tuple[_ui.Figure, Any]:
    f = _ui.filters_of(store)
    by = _ui.choice(by, filters.EQUITY_GROUPINGS, "gender")
    label = _grouping(by)
    df = _ui.query(equity.gains_by_group, f, by)
    df = _ui.only_scale(df, scale)
    # Completers (both pre and post answered): not the all-participants model gain.
    title = tr("Completers' mean gain post − pre by {grouping} (95% CI clustered by "
               "exchange)").format(grouping=label.lower())
    if not len(df):
        return _ui.empty_state(title, f, what=tr("No pre/post scale scores for the current "
                                                 "filters.")), None
    shown, small = df[~df.suppressed], df[df.suppressed]
    note = _ui.suppressed_note(sorted(small.group.astype(str).unique()), _groups_word(label))
    note = _ui.with_isolating_note(note, df, tr("Some groups"))
    if not len(shown):
        return _ui.suppressed_figure(title, _every_group_small(label)), note
    fig, n_scales = _ui.forest_by_scale(shown, "mean", "ci_low_cr2", "ci_high_cr2")
    _ui.base_layout(fig, title, x=tr("mean gain (scale points, post − pre)"), y=label,
                    height=420)
    _ui.legend_below(fig, n_scales)
    return fig, html.Div([_clusters_note(shown), note])


def _groups_word(label: str) -> str:
    """What `_ui.suppressed_note` names the groups of grouping `label`: "gender groups"."""
    return tr("{grouping} groups").format(grouping=label.lower())


def _every_group_small(label: str) -> str:
    return tr("Every {grouping} group has fewer than {k} participants").format(
        grouping=label.lower(), k=_ui.fmt_int(suppression.MIN_CELL))


def _clusters_note(shown: Any) -> html.P:
    """What the whiskers are and which groups rest on fewer than 10 exchanges."""
    per_group = shown.groupby(shown["group"].astype(str), sort=False)["n_clusters"].max()
    few = [f"{g} ({_ui.fmt_int(int(n))})" for g, n in per_group.items() if n == n and n < 10]
    text = tr("Whiskers: 95% CI clustered by exchange (CR2 with Satterthwaite degrees of "
              "freedom): participants of one exchange are not independent.")
    if few:
        text += " " + tr("⚠ Fewer than 10 exchanges, read with care: {groups}.").format(
            groups=", ".join(few))
    return html.P(text, className="small text-body-secondary cluster-note")


@callback(Output(PARTICIPATION, "figure"), Output(PARTICIPATION_NOTE, "children"),
          Input(_ui.FILTERS, "data"), Input(BY, "value"))
def participation(store: dict[str, Any] | None, by: str) -> tuple[_ui.Figure, Any]:
    f = _ui.filters_of(store)
    by = _ui.choice(by, filters.EQUITY_GROUPINGS, "gender")
    label = _grouping(by)
    df = _ui.query(equity.participation_by_group, f, by)
    title = tr("Minutes of activity per participant by {grouping}").format(
        grouping=label.lower())
    if not len(df):
        return _ui.empty_figure(title, tr("No participants match the current filters.")), None
    k = _ui.fmt_int(suppression.MIN_CELL)
    suppressed = _ui.suppressed_label()
    note = [_ui.suppressed_note(sorted(df[df.suppressed].group.astype(str)),
                                _groups_word(label)),
            _ui.suppressed_subset_note(
                sorted(df[df.subset_suppressed].group.astype(str)),
                tr("fewer than {k} active participants; their minutes and share active "
                   "are").format(k=k)),
            _ui.isolating_note(df, tr("Some groups"))]
    if df.suppressed.all():
        return _ui.suppressed_figure(title, _every_group_small(label)), note
    labels = [_ui.ptext(g) + (f" — {suppressed}" if s else "")
              for g, s in zip(df.group, df.suppressed, strict=True)]
    # A suppressed group keeps its label and gets no bar and no n (blank, never 0).
    few_active = tr("fewer than {k} active: minutes and share active {suppressed}").format(
        k=k, suppressed=suppressed)
    hover = [suppressed if s else
             f"n = {_ui.fmt_int(n)}<br>{few_active}" if sub else
             tr("{minutes} minutes per participant").format(minutes=_ui.fmt_int(m))
             + f"<br>n = {_ui.fmt_int(n)}<br>"
             + tr("ever active: {share}").format(share=_ui.fmt_pct(a))
             for m, n, a, s, sub in zip(df.minutes_per_participant, df.n, df.active_share,
                                        df.suppressed, df.subset_suppressed, strict=True)]
    fig = _ui.figure(_ui.trace("bar",
        x=labels, y=df.minutes_per_participant, hovertext=hover,
        marker={"color": [_ui.SUPPRESSED_GREY if s else _ui.OKABE_ITO[4] for s in df.suppressed]},
        hovertemplate="%{x}<br>%{hovertext}<extra></extra>",
        name=tr("minutes per participant"),
    ))
    _ui.base_layout(fig, title, x=label, y=tr("minutes per participant"), height=420)
    return fig, note


@callback(Output(FUNNEL, "figure"), Input(_ui.FILTERS, "data"))
def funnel(store: dict[str, Any] | None) -> _ui.Figure:
    f = _ui.filters_of(store)
    df = _ui.query(equity.attrition_funnel, f)
    title = tr("Attrition funnel: participants reaching each stage")
    if not len(df) or (not df.suppressed.any() and df.n.iloc[0] == 0):
        return _ui.empty_figure(title, tr("No participants match the current filters."))
    k = _ui.fmt_int(suppression.MIN_CELL)
    if df.suppressed.all() and _ui.selects_nobody(f):
        return _ui.empty_figure(title, tr(_ui.NO_DATA))
    if df.suppressed.all():
        return _ui.suppressed_figure(title, tr("Every stage has fewer than {k} "
                                               "participants").format(k=k))
    if df.suppressed.any():
        why = df.attrs.get("isolating")
        return _ui.empty_figure(title, tr("Stages {suppressed}:").format(
                                           suppressed=_ui.suppressed_label()) + "<br>"
                                       + ", ".join(_ui.ptext(_stage(s))
                                                   for s in df[df.suppressed].stage)
                                       + ("<br>" + tr("(one filter value changes them by fewer "
                                                      "than {k}: {why})").format(
                                                          k=k, why=_ui.ptext(why))
                                          if why else ""))
    fig = _ui.figure(_ui.trace("funnel",
        y=[_ui.ptext(_stage(s)) for s in df.stage], x=df.n,
        texttemplate="%{value:,}<br>%{percentInitial:.0%}",
        marker={"color": _ui.OKABE_ITO[0]},
        hovertemplate="%{y}<br>n = %{x:,}<br>"
                      + tr("{share} of enrolled").format(share="%{percentInitial:.0%}")
                      + "<extra></extra>",
    ))
    return _ui.base_layout(fig, title, x=tr("participants (people)"), height=420)


@callback(Output(DROPOUT, "children"), Input(_ui.FILTERS, "data"), Input(BY, "value"))
def dropout(store: dict[str, Any] | None, by: str) -> Any:
    f = _ui.filters_of(store)
    by = _ui.choice(by, filters.EQUITY_GROUPINGS, "gender")
    label = _grouping(by)
    df = _ui.query(equity.dropout_by_group, f, by)
    return _ui.with_isolating_note(_grid.table(df, {
        "group": (label, _ui.text), "n": (tr("answered pre (n)"), _ui.fmt_int),
        "dropped": (tr("no post answer"), _ui.fmt_int),
        "dropout_rate": (tr("drop-out rate"), _ui.fmt_pct),
    }, tr("Drop-out between pre and post survey by {grouping}").format(grouping=label.lower()),
        id_="equity-dropout-table"),
        df, tr("Some groups"))


# Issue 13: res_equity_gaps (whole program, precomputed per data version).
# English (the funder report shows them as they are); the page translates them where shown.
GAP_MEASURES = {"gain": N_("gain post − pre (completers)"),
                "minutes": N_("minutes per participant"),
                "dropout": N_("drop-out before the post survey")}
_GAPS_METHOD = N_(
    "Best- and worst-served: the compared groups with the highest and lowest mean (lowest and "
    "highest drop-out); gap = best − worst, never negative. Interval: CR2 cluster-robust by "
    "exchange with Satterthwaite df, Bonferroni-adjusted over all pairs of the compared groups "
    "(level shown) because the pair is picked from the data. Groups with fewer than "
    "{k} participants (or active participants, drop-outs, completers) "
    "and 'not reported' are not compared and are listed. Gain of the chosen scale (composite "
    "for all scales: mean gain in pre-score SDs); age band at the start of the exchange. All "
    "participants of the program: the filters do not apply."
)
GAPS_METHOD = _GAPS_METHOD.format(k=suppression.MIN_CELL)  # English: the funder report's


def fmt_gap(measure: str, v: Any) -> str:
    """A gap or a group's value in its measure's unit (drop-out as a percentage); shared with the
    funder report."""
    if measure == "dropout":
        return _ui.fmt_pct(v)
    return _ui.fmt_int(v) if measure == "minutes" else _ui.fmt_num(v)


@callback(Output(GAPS, "children"), Input(_ui.FILTERS, "data"), Input(BY, "value"),
          Input(SCALE, "value"))
def gaps(_store: dict[str, Any] | None, by: str, scale: str | None) -> Any:
    by = _ui.choice(by, filters.EQUITY_GROUPINGS, "gender")
    label = _grouping(by)
    inst, sc = (scale.split("/", 1) if isinstance(scale, str) and "/" in scale
                else ("all", "composite"))
    df = _ui.query(equity.equity_gap_table, by, inst, sc)
    if not len(df):
        return html.P(tr("No equity gaps yet (python -m analytics)."),
                      className="text-body-secondary")

    def group_value(g: Any, m: Any, v: Any) -> str:
        return (tr("{group}: {value}").format(group=_ui.text(g), value=fmt_gap(m, v))
                if isinstance(g, str) else "")

    rows = df.assign(
        what=[tr(GAP_MEASURES[str(m)]) if str(m) in GAP_MEASURES else str(m)
              for m in df.measure],
        best=[group_value(g, m, v)
              for g, m, v in zip(df.best_group, df.measure, df.value_best, strict=True)],
        worst=[group_value(g, m, v)
               for g, m, v in zip(df.worst_group, df.measure, df.value_worst, strict=True)],
        # a gap whose CR2 interval is not estimable (NaN) keeps its value beside a dash
        gap_ci=[("" if pd.isna(g) else f"{fmt_gap(m, g)} —" if pd.isna(lo) or pd.isna(hi)
                 else tr("{gap} [{low}, {high}] at {level}%").format(
                    gap=fmt_gap(m, g), low=fmt_gap(m, lo), high=fmt_gap(m, hi),
                    level=_ui.fmt_num(100 * lv, 1)))
                for m, g, lo, hi, lv in zip(df.measure, df.gap, df.ci_low, df.ci_high,
                                            df.ci_level, strict=True)])
    return html.Div([
        _grid.table(rows, {
            "what": (tr("measure"), _ui.text), "best": (tr("best-served"), _ui.text),
            "worst": (tr("worst-served"), _ui.text),
            "gap_ci": (tr("gap [CR2 CI, level]"), _ui.text),
            "n_groups_compared": (tr("groups compared"), _ui.fmt_int),
            "groups_left_out": (tr("groups left out"), _ui.text),
        }, tr("Gap between the best- and worst-served {grouping} groups").format(
            grouping=label.lower()),
            id_="equity-gaps-table"),
        html.P(tr(_GAPS_METHOD).format(k=_ui.fmt_int(suppression.MIN_CELL)),
               className="small text-body-secondary", id="equity-gaps-method"),
    ])
