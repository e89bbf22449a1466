"""Outcomes: means per wave with CIs and reliability beside each scale, a forest plot of pre→post
effects by group, the mixed-model table and the comparison-group difference.

The models are fitted once per data version by `python -m analytics` (res_* tables) for the
whole program; the mixed model, the raw/adjusted comparison and the baseline balance of any other
filter selection are computed on request by the same functions (`analytics.read.slices`, issue
17); means, effects and the comparison difference follow the filters through
`analytics.read.outcomes`.
"""

from __future__ import annotations

import math
from typing import Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, State, callback, dcc, html

from analytics import estimands, suppression
from analytics.read import filters, outcomes, slices
from analytics.stats.comparison import METHOD_ANCOVA, METHOD_RAW, SMD_THRESHOLD
from analytics.stats.longitudinal import wave_key, wave_order
from analytics.stats.measurement import DIF_MIN_N, FLOOR_CEILING_SHARE
from analytics.stats.prepost import FEW_CLUSTERS
from analytics.stats.reliability import ALPHA_THRESHOLD, SMALL_N_MIN, SMALL_N_PER_ITEM
from pages import _grid, _ui
from pages._i18n import N_, tr, trn

PATH = "/outcomes"


def _title(**_path: Any) -> str:
    """The browser tab's title in the request's language (Dash calls it per page load)."""
    return tr("Exchange Impact — Outcomes")


dash.register_page(__name__, path=PATH, name=N_("Outcomes"), order=2, title=_title)

WAVES = "outcomes-waves"
WAVES_NOTE = "outcomes-waves-note"
FOREST_BY = "outcomes-forest-by"
EFFECT = "outcomes-effect"
FOREST = "outcomes-forest"
FOREST_NOTE = "outcomes-forest-note"
MODEL = "outcomes-model"
SCALE = "outcomes-scale"
COMPARISON = "outcomes-comparison"
ADJUSTED = "outcomes-adjusted"
BALANCE = "outcomes-balance"
RELIABILITY = "outcomes-reliability"
SENSITIVITY = "outcomes-sensitivity"
MEASUREMENT = "outcomes-measurement"

EFFECTS = {
    # the design-aware intervals: cluster-robust by exchange (CR2, Satterthwaite df), not the
    # paired t / noncentral t that treat participants as independent (those stay in the export)
    "hedges_g": (N_("Hedges' g, pre → post (standardised; 95% CI clustered by exchange, CR2)"),
                 "hedges_g_ci_low_cr2", "hedges_g_ci_high_cr2"),
    "diff": (N_("mean change, post − pre (scale points; 95% CI clustered by exchange, CR2)"),
             "diff_ci_low_cr2", "diff_ci_high_cr2"),
}
_COMING = N_("They appear when the statistics engineer's tables are computed for this data "
             "version (python -m analytics).")
# filters.GROUPINGS' labels (analytics, English), marked here for the catalogue: the page shows
# them through tr.
_GROUPING_WORDS = (N_("Cluster"), N_("Country"), N_("Modality"), N_("Setting"))
# The moderation view's waves, as its titles name them.
_WAVE_WORDS = {"post": _ui.WAVE_WORDS["post"], "followup": _ui.WAVE_WORDS["followup"]}


def _grouping(by: str) -> str:
    """A grouping's label (filters.GROUPINGS) in the request's language."""
    return tr(filters.GROUPINGS.get(by, by))


def _with_scale(title: str, scale: str) -> str:
    """A title followed by the scale it shows ("…: Instrument: scale")."""
    return tr("{title}: {scale}").format(title=title, scale=scale)


def layout(by: str = "modality", effect: str = "hedges_g", scale: str = "",
           **_query: Any) -> html.Div:
    by = by if by in filters.GROUPINGS else "modality"
    effect = effect if effect in EFFECTS else "hedges_g"
    options = _ui.scale_options()
    values = [o["value"] for o in options]
    scale = scale if scale in values else (values[0] if values else "")
    return html.Div(
        [
            html.H1(tr("Outcomes"), className="h3"),
            _ui.section(
                tr("Scale means per wave"),
                html.Div(id=WAVES_NOTE),
                _ui.graph(WAVES, tr("Mean scale score per survey wave with 95% confidence "
                                    "intervals")),
            ),
            _ui.section(
                tr("Effects by group"),
                dbc.Row(
                    [
                        dbc.Col([
                            html.Label(tr("Group by"), htmlFor=FOREST_BY,
                                       className="fw-semibold me-2"),
                            dbc.RadioItems(id=FOREST_BY, value=by, inline=True, options=[
                                {"label": tr(v), "value": k}
                                for k, v in filters.GROUPINGS.items()]),
                        ], md="auto", className="d-flex align-items-center flex-wrap"),
                        dbc.Col([
                            html.Label(tr("Effect size"), htmlFor=EFFECT,
                                       className="fw-semibold me-2"),
                            dbc.RadioItems(id=EFFECT, value=effect, inline=True, options=[
                                {"label": tr("Hedges' g"), "value": "hedges_g"},
                                {"label": tr("mean change"), "value": "diff"}]),
                        ], md="auto", className="d-flex align-items-center flex-wrap"),
                    ],
                    className="mb-2 g-3",
                ),
                html.Div([
                    html.Label(tr("Scale (effects and model table)"), htmlFor=SCALE,
                               className="fw-semibold me-2"),
                    dcc.Dropdown(id=SCALE, options=options, value=scale, clearable=False,
                                 style={"minWidth": "28rem"}),
                ], className="d-flex align-items-center flex-wrap mb-2"),
                html.Div(id=FOREST_NOTE),
                _ui.graph(FOREST, tr("Forest plot of pre-to-post effects by group")),
            ),
            # full width each: the comparison table has nine columns and wrapped into a
            # scrolling box beside reliability
            _ui.section(tr("Reliability (Cronbach's α)"), html.Div(id=RELIABILITY)),
            _ui.section(tr("Participants vs comparison group"), html.Div(id=COMPARISON)),
            # next to reliability: floor/ceiling and invariance qualify the same scales
            _ui.section(tr("Measurement across languages: reliability, floor and ceiling, "
                           "invariance"), html.Div(id=MEASUREMENT)),
            _ui.section(tr("Comparison group: raw and adjusted difference, baseline balance"),
                        html.Div(id=ADJUSTED), html.Div(id=BALANCE)),
            _ui.section(tr("Mixed model (random intercepts for exchange and participant)"),
                        html.Div(id=MODEL)),
            _sensitivity_section(),
            _dose_section(),
            _moderation_section(),
        ]
    )


def _short_label(instrument: str, scale: str) -> str:
    """The scale's own label (the instrument title is in the hover and the tables)."""
    full = _ui.scale_label(instrument, scale)
    return full.split(": ", 1)[-1]


def _alpha_texts(rel: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Per (instrument, scale): Cronbach's α of its first wave (pre, else post, else any), one
    pass over the table instead of a filter per scale."""
    if not len(rel):
        return {}
    rel = rel.assign(_o=rel.wave.map(wave_key)).sort_values(
        ["instrument", "scale", "_o"], kind="stable").drop_duplicates(["instrument", "scale"])
    return {(r.instrument, r.scale): f"α ({_ui.wave_name(r.wave)}) = {_ui.fmt_num(r.alpha)}"
            + (" ⚠" if bool(r.below_threshold) else "") for r in rel.itertuples(index=False)}


@callback(Output(_ui.VIEW, "data", allow_duplicate=True), Input(FOREST_BY, "value"),
          Input(EFFECT, "value"), Input(SCALE, "value"), State(SCALE, "options"),
          prevent_initial_call="initial_duplicate")
def view_url(by: Any, effect: Any, scale: Any, options: Any) -> dict[str, str]:
    """The grouping, effect size and scale belong in the shareable link
    (/outcomes?by=country&effect=diff); the first scale is the default, left out."""
    first = (options[0].get("value") if isinstance(options, list) and options
             and isinstance(options[0], dict) else None)
    view = {"by": _ui.choice(by, filters.GROUPINGS, "modality"),
            "effect": _ui.choice(effect, EFFECTS, "hedges_g"),
            "scale": scale if isinstance(scale, str) else None}
    return _ui.view_store(PATH, view, {"scale": first} if isinstance(first, str) else None)


@callback(Output(WAVES, "figure"), Output(WAVES, "style"), Output(WAVES_NOTE, "children"),
          Input(_ui.FILTERS, "data"))
def waves(store: dict[str, Any] | None) -> tuple[_ui.Figure, dict[str, str], Any]:
    f = _ui.filters_of(store)
    df = _ui.query(outcomes.wave_means, f)
    if not len(df):
        return _ui.empty_state(tr("Mean scale score per wave (95% CI), filtered participants"),
                               f, what=tr("No scale scores for the current filters.")), {}, None
    small = df[df.suppressed.to_numpy(bool)]
    note = _ui.suppressed_note(
        sorted({tr("{scale} ({wave}, comparison)").format(scale=_ui.scale_label(a, b), wave=w)
                if c else f"{_ui.scale_label(a, b)} ({w})"
                for a, b, w, c in small[["instrument", "scale", "wave", "comparison"]]
                .itertuples(index=False)}), tr("cells"))
    note = _ui.with_isolating_note(note, df, tr("Some cells"))
    if len(small) == len(df):
        return _ui.suppressed_figure(
            tr("Mean scale score per wave (95% CI), filtered participants"),
            tr("Every wave has fewer than {k} participants with a score").format(
                k=_ui.fmt_int(suppression.MIN_CELL))), {}, note
    rel = _ui.query(outcomes.reliability)
    scales = df[["instrument", "scale"]].drop_duplicates().itertuples(index=False)
    scales = list(scales)
    cols = min(3, len(scales))
    rows = math.ceil(len(scales) / cols)
    alphas = _alpha_texts(rel)
    titles = [f"{_ui.ptext(_short_label(s.instrument, s.scale))}<br>"
              f"{alphas.get((s.instrument, s.scale)) or tr('α: coming')}"
              for s in scales]
    fig = _ui.grid(rows, cols, titles, vertical_spacing=0.22 if rows > 1 else 0.1)
    groups = [(False, tr("exchange participants"), _ui.OKABE_ITO[0]),
              (True, tr("comparison group"), _ui.OKABE_ITO[1])]
    hover = ("%{fullData.name}<br>"
             + tr("%{x}: mean %{y:.2f} [%{customdata[1]:.2f}, %{customdata[2]:.2f}] (95% CI "
                  "clustered by exchange, CR2)") + "<br>" + _n_in_exchanges()
             + "<extra></extra>")
    axes: dict[str, Any] = {}
    # One pass over the rows (a boolean filter per scale and arm cost ~5 ms each).
    shown = df[~df.suppressed.to_numpy(bool)]
    cells = {key: d for key, d in shown.groupby(["instrument", "scale", "comparison"], sort=False)}
    for k, s in enumerate(scales):
        c = k % cols + 1
        for comp, name, color in groups:
            d = cells.get((s.instrument, s.scale, comp))
            if d is None or not len(d):
                continue
            mean, lo, hi = (d[c_].to_numpy(float)
                            for c_ in ("mean", "ci_low_cr2", "ci_high_cr2"))
            fig.add_trace(_ui.trace("scatter",
                x=[_ui.wave_name(w) for w in d.wave], y=mean, mode="lines+markers", name=name,
                legendgroup=name,
                showlegend=k == 0, line={"color": color, "dash": "dash" if comp else "solid"},
                error_y={"type": "data", "symmetric": False, "array": hi - mean,
                         "arrayminus": mean - lo},
                customdata=d[["n", "ci_low_cr2", "ci_high_cr2", "n_clusters"]],
                hovertemplate=hover,
                **_ui.cell_axes(k),
            ))
        sx = "" if k == 0 else str(k + 1)
        axes[f"xaxis{sx}"] = {"title": {"text": tr("survey wave")}}
        if c == 1:
            axes[f"yaxis{sx}"] = {"title": {"text": tr("mean score (scale points)")}}
    fig.update_layout(axes)
    _ui.base_layout(fig, tr("Mean scale score per wave (95% CI clustered by exchange), "
                            "filtered participants"),
                    height=150 + 300 * rows)
    fig.update_annotations(font_size=12)
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1,
                              "yanchor": "top"}, margin={"r": 190})
    return fig, {}, note


def _n_in_exchanges() -> str:
    """A hover line: the participants behind a point and their exchanges (customdata 0, 3)."""
    return tr("n = %{customdata[0]:,} in %{customdata[3]} exchanges")


@callback(Output(FOREST, "figure"), Output(FOREST, "style"), Output(FOREST_NOTE, "children"),
          Input(FOREST_BY, "value"), Input(EFFECT, "value"), Input(SCALE, "value"),
          Input(_ui.FILTERS, "data"))
def forest(by: str, effect: str, scale: str | None, store: dict[str, Any] | None = None
           ) -> tuple[_ui.Figure, dict[str, str], Any]:
    by = _ui.choice(by, filters.GROUPINGS, "modality")
    effect = _ui.choice(effect, EFFECTS, "hedges_g")
    f = _ui.filters_of(store)
    df = _ui.only_scale(_ui.query(outcomes.prepost_slice, f, by), scale)
    if not len(df):
        title = tr("Pre → post effect by {grouping}").format(grouping=_grouping(by).lower())
        return _ui.empty_state(title, f, what=tr("No pre/post scale scores for the current "
                                                 "filters.")), {}, None
    fig, shown, small = forest_figure(df, by, effect)
    if not len(shown):
        title = tr("Pre → post effect by {grouping}").format(grouping=_grouping(by).lower())
        fig = _ui.suppressed_figure(title, tr(
            "Every {grouping} group has fewer than {k} participants with a pre/post gain").format(
                grouping=_grouping(by).lower(), k=_ui.fmt_int(suppression.MIN_CELL)))
    note = _ui.suppressed_note(sorted(small["group"].astype(str).unique()),
                               tr("{grouping} groups").format(grouping=_grouping(by).lower()))
    return fig, {}, html.Div([_cluster_note(shown, effect), note,
                              _ui.isolating_note(df, tr("Some groups"))])


def forest_figure(df: pd.DataFrame, by: str, effect: str
                  ) -> tuple[_ui.Figure, pd.DataFrame, pd.DataFrame]:
    """The forest plot of res_prepost rows `df` (one grouping `by`, any scales) for `effect`,
    and the rows it shows and the suppressed ones; shared by the page and the PDF snapshot
    (reports/), which draws one per instrument."""
    axis, lo, hi = EFFECTS.get(effect, EFFECTS["hedges_g"])
    axis = tr(axis)
    shown, small = df[~df.suppressed], df[df.suppressed]
    shown = shown.dropna(subset=[effect])
    fig, n_scales = _ui.forest_by_scale(shown, effect, lo, hi)
    n_groups = shown["group"].nunique()
    title = tr("Pre → post effect by {grouping}").format(grouping=_grouping(by).lower())
    if n_scales == 1:
        first = shown.iloc[0]
        title = _with_scale(title, _ui.ptext(_ui.scale_label(first.instrument, first.scale)))
    # The method in brackets on a line of its own: on paper the one line ran past the plot.
    _ui.base_layout(fig, title, x=axis.replace(" (", "<br>(", 1), y=_grouping(by),
                    height=180 + 22 * n_groups * max(1, n_scales))
    fig.update_layout(showlegend=n_scales > 1)
    fig.update_yaxes(autorange="reversed")
    return fig, shown, small


def _cluster_note(shown: pd.DataFrame, effect: str) -> html.P:
    """What the whiskers are, the number of exchanges behind each group and which groups rest
    on fewer than 10 exchanges (`few_clusters`)."""
    if effect == "diff":
        what = tr("Whiskers: 95% CI of the mean change, cluster-robust by exchange (CR2 with "
                  "Satterthwaite degrees of freedom): participants of one exchange are not "
                  "independent.")
    else:
        what = tr("Whiskers: 95% CI of Hedges' g clustered by exchange: the CR2 interval of the "
                  "mean change (Satterthwaite degrees of freedom) divided by the SD that "
                  "standardises g; participants of one exchange are not independent.")
    if not len(shown) or "n_clusters" not in shown:
        return html.P(what, className="small text-body-secondary cluster-note")
    per_group = shown.groupby(shown["group"].astype(str), sort=False)["n_clusters"].max()
    few = [f"{g} ({int(n)})" for g, n in per_group.items() if pd.notna(n) and n < 10]
    counts = ", ".join(f"{g}: {int(n)}" for g, n in per_group.items() if pd.notna(n))
    text = what + " " + tr("Exchanges per group: {counts}.").format(counts=counts)
    if few:
        text += " " + tr("⚠ Fewer than 10 exchanges, read with care: {groups}.").format(
            groups=", ".join(few))
    return html.P(text, className="small text-body-secondary cluster-note")


@callback(Output(RELIABILITY, "children"), Input(_ui.FILTERS, "data"))
def reliability(_store: dict[str, Any] | None) -> Any:
    df = _ui.query(outcomes.reliability)
    if not len(df):
        return _ui.coming(tr("Reliability"), tr(_COMING))
    df = df.assign(
        scale_label=[_ui.scale_label(a, b) for a, b in zip(df.instrument, df.scale, strict=True)],
        cell=[f"{_ui.fmt_num(a)}{' ⚠' if low else ''}" if pd.notna(a) else "—"
              for a, low in zip(df.alpha, df.below_threshold.fillna(False), strict=True)],
    )
    wide = df.pivot_table(index="scale_label", columns="wave", values="cell", aggfunc="first")
    waves = wave_order(wide.columns)
    wide = wide[waves].reset_index()
    cols: dict[str, tuple[str, Any]] = {"scale_label": (tr("scale"), _ui.text)}
    cols.update({w: (f"α {_ui.wave_name(w)}", _ui.text) for w in waves})
    return _grid.table(wide, cols, tr("Cronbach's α per scale and wave (all participants; "
                                    "⚠ = below {threshold}, interpret with care)").format(
                                        threshold=_ui.fmt_num(ALPHA_THRESHOLD)),
                     suppressed_col=None)


def _rel_cell(alpha: Any, omega: Any, low: Any, small: Any, suppressed: Any) -> str:
    if bool(suppressed):
        return _ui.suppressed_label()
    if alpha is None or pd.isna(alpha):
        return "—"
    text = f"α {_ui.fmt_num(alpha)}" + (f" · ω {_ui.fmt_num(omega)}" if pd.notna(omega) else "")
    if bool(small) if pd.notna(small) else False:
        text += " " + tr("(few)")
    return text + (" ⚠" if (bool(low) if pd.notna(low) else False) else "")


@callback(Output(MEASUREMENT, "children"), Input(_ui.FILTERS, "data"))
def measurement(_store: dict[str, Any] | None) -> Any:
    """Whether each scale measures the same way in every language (the invariance screen's
    verdict), its α and ω per language at the pre wave, and its floor and ceiling shares: all
    program-wide (unfiltered), computed once per data version."""
    inv = _ui.query(outcomes.invariance)
    rel = _ui.query(outcomes.reliability_groups, "language", "pre")
    fc = _ui.query(outcomes.floor_ceiling)
    if not len(inv) and not len(rel) and not len(fc):
        return _ui.coming(tr("Measurement across languages"), tr(_COMING))
    parts: list[Any] = []
    if len(inv):
        v = inv.drop_duplicates(["instrument", "scale"])
        v = v.assign(scale_label=[_ui.scale_label(a, b) for a, b in zip(v.instrument, v.scale,
                                                                        strict=True)],
                     verdict=[_ui.localise_verdict(t, a, b) for t, a, b in
                              zip(v.verdict, v.instrument, v.scale, strict=True)])
        parts.append(_grid.table(v, {"scale_label": (tr("scale"), _ui.text),
                                   "verdict": (tr("same meaning in every language?"), _ui.text)},
                               tr("Measurement invariance across the languages the surveys "
                                  "were taken in (pre wave; differential item functioning "
                                  "screen)"),
                               id_="outcomes-invariance-table", suppressed_col=None))
    if len(rel):
        rel = rel.assign(
            scale_label=[_ui.scale_label(a, b) for a, b in zip(rel.instrument, rel.scale,
                                                               strict=True)],
            cell=[_rel_cell(*t) for t in zip(rel.alpha, rel.omega, rel.below_threshold,
                                             rel.small_n, rel.suppressed, strict=True)])
        order = rel.groupby("group")["n"].max().sort_values(ascending=False).index
        wide = rel.pivot_table(index="scale_label", columns="group", values="cell",
                               aggfunc="first").reindex(columns=order).reset_index()
        cols: dict[str, tuple[str, Any]] = {"scale_label": (tr("scale"), _ui.text)}
        cols.update({g: (str(g), _ui.text) for g in order})
        parts.append(_grid.table(
            wide, cols, tr("Reliability per language at the pre wave: Cronbach's α and "
                           "McDonald's ω (one-factor model); ⚠ = α or ω below {threshold}; "
                           "{few} = fewer than max({min_n}, {per_item} × items) respondents, "
                           "ω not estimated").format(
                threshold=_ui.fmt_num(ALPHA_THRESHOLD), few=tr("(few)"),
                min_n=_ui.fmt_int(SMALL_N_MIN), per_item=_ui.fmt_int(SMALL_N_PER_ITEM)),
            id_="outcomes-reliability-languages", suppressed_col=None))
    if len(fc):
        fc = fc.assign(
            scale_label=[_ui.scale_label(a, b) for a, b in zip(fc.instrument, fc.scale,
                                                               strict=True)],
            cell=[_ui.suppressed_label() if bool(sup) else
                  f"{_ui.fmt_pct(lo)} · {_ui.fmt_pct(hi)}"
                  + (" ⚠" if (bool(fe) if pd.notna(fe) else False)
                     or (bool(ce) if pd.notna(ce) else False) else "")
                  for lo, hi, fe, ce, sup in zip(fc.floor_share, fc.ceiling_share,
                                                 fc.floor_effect, fc.ceiling_effect,
                                                 fc.suppressed, strict=True)])
        wide = fc.pivot_table(index="scale_label", columns="wave", values="cell",
                              aggfunc="first")
        waves = wave_order(wide.columns)
        wide = wide[waves].reset_index()
        cols = {"scale_label": (tr("scale"), _ui.text)}
        cols.update({w: (tr("{wave}: floor · ceiling").format(wave=_ui.wave_name(w)), _ui.text)
                     for w in waves})
        parts.append(_grid.table(
            wide, cols, tr("Share of respondents at the lowest · highest possible score per "
                           "wave; ⚠ = above {share} (Terwee et al. 2007): change cannot be seen "
                           "there; — = a count under k, not shown").format(
                share=_ui.fmt_pct(FLOOR_CEILING_SHARE)), id_="outcomes-floor-ceiling",
            suppressed_col=None))
    parts.append(html.P(
        tr("How to read this: the item wording in Spanish and French is the project's own "
           "translation, not a validated instrument. Each item is checked at the pre wave "
           "against the language with most respondents (regression on the rest of the scale, "
           "Zumbo 1999; an item differs when the difference is significant after Holm's "
           "correction and at least moderate, ΔR² ≥ {delta}); languages with fewer than "
           "{min_n} complete respondents are not checked. Where an item differs, do not compare "
           "that scale's means or gains across languages without it. Per-country reliability "
           "is in the researcher table reliability_groups (Data page).").format(
            delta=_ui.fmt_num(0.035, 3), min_n=_ui.fmt_int(DIF_MIN_N)),
        id="measurement-assumptions", className="small text-body-secondary mt-1"))
    return html.Div(parts)


@callback(Output(COMPARISON, "children"), Input(_ui.FILTERS, "data"))
def comparison(store: dict[str, Any] | None) -> Any:
    f = _ui.filters_of(store)
    df = _ui.query(outcomes.comparison_difference, f)
    if not len(df):
        return html.P(tr("No comparison group answered both pre and post surveys in the "
                         "current selection (or the scale scores are not computed yet)."),
                      className="text-body-secondary")
    df = df.assign(scale_label=[_ui.scale_label(a, b) for a, b in zip(df.instrument, df.scale,
                                                                      strict=True)])
    df["ci"] = _ci_texts(df.ci_low_cr2, df.ci_high_cr2)
    return html.Div([_grid.table(df, {
        "scale_label": (tr("scale"), _ui.text),
        "n_exchange": (tr("n participants"), _ui.fmt_int),
        "n_comparison": (tr("n comparison"), _ui.fmt_int),
        "gain_exchange": (tr("gain, participants"), _ui.fmt_num),
        "gain_comparison": (tr("gain, comparison"), _ui.fmt_num),
        "diff": (tr("difference (points)"), _ui.fmt_num),
        "ci": (tr("95% CI, clustered by exchange (CR2)"), _ui.text),
        "n_clusters": (tr("exchanges"), _clusters_text),
    }, tr("Completers' mean gain post − pre: participants minus comparison group "
          "(difference-in-differences; filtered)"), id_="outcomes-comparison-table"),
        _cr2_note(df),
        _ui.isolating_note(df, tr("Some scales")),
        _assumptions(tr(estimands.COMPLETERS), tr(estimands.DID_ASSUMPTION),
                     id_="comparison-assumptions"),
    ])


def _ci_texts(lo: pd.Series, hi: pd.Series) -> list[str]:
    return [_ui.fmt_ci(a, b) if pd.notna(a) and pd.notna(b) else "—"
            for a, b in zip(lo, hi, strict=True)]


def _clusters_text(v: Any) -> str:
    """The number of exchanges behind an estimate, flagged below 10 (few clusters)."""
    if v is None or pd.isna(v):
        return ""
    return tr("{n} ⚠ few").format(n=int(v)) if int(v) < FEW_CLUSTERS else f"{int(v)}"


def _cr2_note(df: pd.DataFrame) -> html.P:
    few = int((df["n_clusters"].astype("Float64") < FEW_CLUSTERS).fillna(False).sum()) \
        if "n_clusters" in df else 0
    text = tr("95% CIs are cluster-robust by exchange (CR2 with Satterthwaite degrees of "
              "freedom, as R clubSandwich): people of one exchange are not independent. A "
              "comparison person's exchange is the one their class was matched to.")
    if few:
        text += " " + trn("⚠ {n} row(s) rest on fewer than {k} exchanges: their intervals are "
                          "rough, read them with care.",
                          "⚠ {n} row(s) rest on fewer than {k} exchanges: their intervals are "
                          "rough, read them with care.", few).format(
            n=_ui.fmt_int(few), k=_ui.fmt_int(FEW_CLUSTERS))
    return html.P(text, className="small text-body-secondary cr2-note")


_METHOD_LABELS = {
    METHOD_RAW: N_("raw: difference in mean change"),
    METHOD_ANCOVA: N_("adjusted: ANCOVA"),
}


def _scope(f: filters.Filters) -> str:
    """`slices.slice_scope(f)` (who a slice's statistics are computed on) in the request's
    language."""
    return (tr("all participants and the comparison group") if f.is_empty
            else tr("the filtered participants and comparison group"))


@callback(Output(ADJUSTED, "children"), Input(_ui.FILTERS, "data"))
def adjusted(store: dict[str, Any] | None) -> Any:
    """Raw vs ANCOVA-adjusted participants − comparison per scale of the filtered people
    (res_comparison's rows, `slices.comparison_slice`), CR2 CIs."""
    f = _ui.filters_of(store)
    df = _ui.query(slices.comparison_slice, f)
    if not len(df) and not f.is_empty:
        return html.P(tr("No comparison group with pre and post scores in the current "
                         "selection."), className="text-body-secondary")
    if not len(df):
        return _ui.coming(tr("Raw and adjusted comparison"),
                          tr("They need a comparison group with pre and post scores.") + " "
                          + tr(_COMING))
    df = df.assign(
        scale_label=[_ui.scale_label(a, b) for a, b in zip(df.instrument, df.scale, strict=True)],
        method_label=[tr(_METHOD_LABELS[m]) if m in _METHOD_LABELS else m for m in df.method],
        ci=_ci_texts(df.ci_low_cr2, df.ci_high_cr2))
    return html.Div([_grid.table(df, {
        "scale_label": (tr("scale"), _ui.text),
        "method_label": (tr("estimate"), _ui.text),
        "n_participant": (tr("n participants"), _ui.fmt_int),
        "n_comparison": (tr("n comparison"), _ui.fmt_int),
        "estimate": (tr("participants − comparison (points)"), _ui.fmt_num),
        "ci": (tr("95% CI, clustered by exchange (CR2)"), _ui.text),
        "df_cr2": (tr("df (Satterthwaite)"), lambda v: _ui.fmt_num(v, 1)),
        "p_cr2": ("p", lambda v: _ui.fmt_num(v, 3)),
        "n_clusters": (tr("exchanges"), _clusters_text),
        "adjusted_for": (tr("adjusted for"), lambda v: _ui.localise_list(_ui.text(v))),
    }, tr("Participants minus comparison group per scale, raw and adjusted (completers; "
          "{scope})").format(scope=_scope(f)),
        id_="outcomes-adjusted-table"),
        _cr2_note(df),
        _assumptions(tr("Raw: {assumption}").format(assumption=tr(estimands.DID_ASSUMPTION)),
                     tr("Adjusted: {assumption}").format(
                         assumption=tr(estimands.ANCOVA_ASSUMPTION)), id_="adjusted-assumptions"),
    ])


@callback(Output(BALANCE, "children"), Input(_ui.FILTERS, "data"))
def balance(store: dict[str, Any] | None) -> Any:
    """Baseline balance of the filtered people (res_balance's rows, `slices.balance_slice`):
    SMD participants − comparison, |SMD| > 0.1 flagged."""
    f = _ui.filters_of(store)
    df = _ui.query(slices.balance_slice, f)
    if not len(df) and not f.is_empty:
        return html.P(tr("No comparison group with pre scores in the current selection."),
                      className="text-body-secondary")
    if not len(df):
        return _ui.coming(tr("Baseline balance"),
                          tr("It needs a comparison group with pre scores.") + " "
                          + tr(_COMING))
    what = [tr("{scale} (pre score)").format(scale=_ui.scale_label(i, s)) if c == "pre_score"
            else c.replace("_", " ") for c, i, s in zip(df.covariate, df.instrument, df.scale,
                                                       strict=True)]
    # the flag as stored, blank (NaN) on suppressed rows
    imbalanced = (pd.to_numeric(df.imbalanced, errors="coerce").astype(float) == 1).to_numpy()
    df = df.assign(what=what, smd_text=[
        "" if pd.isna(v) else tr("{smd} ⚠ imbalanced").format(smd=_ui.fmt_num(v)) if flag
        else _ui.fmt_num(v)
        for v, flag in zip(df.smd, imbalanced, strict=True)])
    df["smd_text"] = df["smd_text"].mask(df.smd.isna())
    value = lambda v: _ui.fmt_num(v, 2)  # noqa: E731
    flagged = df[imbalanced]
    shown = int(df.smd.notna().sum())
    threshold = _ui.fmt_num(SMD_THRESHOLD, 1)
    note = (tr("⚠ {flagged} of {shown} baseline differences exceed |SMD| = {threshold}: "
               "{covariates}.").format(
                flagged=_ui.fmt_int(len(flagged)), shown=_ui.fmt_int(shown), threshold=threshold,
                covariates=", ".join(f"{w}{'' if not lv else ' = ' + str(lv)}" for w, lv in
                                     zip(flagged.what, flagged.level, strict=True)))
            if len(flagged) else
            tr("None of the {shown} baseline differences shown exceeds |SMD| = {threshold}."
               ).format(shown=_ui.fmt_int(shown), threshold=threshold)
            if shown else tr("No baseline difference can be shown: every row rests on a group "
                             "too small to show, so balance cannot be judged for this "
                             "selection."))
    return html.Div([
        html.P(note, id="balance-flags", className="small fw-semibold"
               + (" text-warning-emphasis" if len(flagged) else "")),
        _grid.table(df, {
            "what": (tr("covariate"), _ui.text),
            "level": (tr("level"), _ui.text),
            "n_participant": (tr("n participants"), _ui.fmt_int),
            "n_comparison": (tr("n comparison"), _ui.fmt_int),
            "value_participant": (tr("participants (mean or share)"), value),
            "value_comparison": (tr("comparison (mean or share)"), value),
            "smd_text": ("SMD", _ui.text),
        }, tr("Baseline balance: standardised mean differences, participants − comparison "
              "(Austin 2009; pooled SD; shares for categories; {scope}, those with a pre "
              "score)").format(scope=_scope(f)),
            id_="outcomes-balance-table", max_rows=400),
        html.P(tr("The comparison group was not randomised: it can differ from the "
                  "participants before the exchange. |SMD| > {threshold} marks a difference "
                  "worth adjusting for; the adjusted estimate above removes differences in "
                  "these covariates only.").format(threshold=threshold),
               className="small text-body-secondary", id="balance-note"),
    ])


def _assumptions(*sentences: str, id_: str) -> html.P:
    """What the estimates beside it answer and assume, in plain words."""
    return html.P(" ".join(sentences), id=id_, className="small text-body-secondary mt-1")


@callback(Output(MODEL, "children"), Input(SCALE, "value"), Input(_ui.FILTERS, "data"))
def model(scale: str | None, store: dict[str, Any] | None = None) -> Any:
    """The mixed model of the filtered people (`slices.longitudinal_slice`: stored for the
    unfiltered view, fitted on request for any other), the chosen scale's rows."""
    f = _ui.filters_of(store)
    one = scale if isinstance(scale, str) and "/" in scale else None
    df = _ui.query(slices.longitudinal_slice, f, one)
    if not len(df) and not f.is_empty:
        return html.P(tr("No scored participants of this scale in the current selection."),
                      className="text-body-secondary")
    if not len(df):
        return _ui.coming(tr("Mixed-model estimates"), tr(_COMING))
    df = _ui.only_scale(df, scale)
    df = df.assign(ci=[_ui.fmt_ci(a, b) if pd.notna(a) else "—"
                       for a, b in zip(df.ci_low, df.ci_high, strict=True)])
    title = (tr("All-participants mixed model: fixed effects and contrasts (every available "
                "wave; fitted per data version)") if f.is_empty else
             tr("Filtered participants' mixed model: fixed effects and contrasts (every "
                "available wave; the filtered participants and comparison group, fitted on "
                "request)"))
    cols: dict[str, tuple[str, Any]] = {}
    if len(df) and df[["instrument", "scale"]].drop_duplicates().shape[0] == 1:
        title = tr("{scale}: {title}").format(
            scale=_ui.scale_label(df.instrument.iloc[0], df.scale.iloc[0]), title=title)
    else:  # several scales in one table: say which row is which
        df = df.assign(scale_label=[_ui.scale_label(a, b)
                                    for a, b in zip(df.instrument, df.scale, strict=True)])
        cols["scale_label"] = (tr("scale"), _ui.text)
    yes, no = tr("yes"), tr("no")
    return html.Div([_grid.table(df, cols | {
        "term": (tr("term"), _ui.text),
        "estimate": (tr("estimate"), _ui.fmt_num), "se": (tr("SE"), _ui.fmt_num),
        "ci": (tr("95% CI"), _ui.text), "p": ("p", lambda v: _ui.fmt_num(v, 3)),
        "n_participants": (tr("participants"), _ui.fmt_int),
        "n_obs": (tr("observations"), _ui.fmt_int),
        "converged": (tr("converged"), lambda v: yes if v else no),
    }, title, id_="outcomes-model-table", suppressed_col="suppressed"),
        _assumptions(tr(estimands.MODEL), tr(estimands.MODEL_MISSING),
                     tr("did[…] rows: {assumption}").format(
                         assumption=tr(estimands.DID_ASSUMPTION)),
                     tr(estimands.COMPARISON_MODALITY), id_="model-assumptions"),
    ])


# ---- How much does dropout change the follow-up gain? (issue 10, section 3) ----

def _sensitivity_section() -> html.Section:
    return _ui.section(tr("How much does dropout change the follow-up gain?"),
                       html.Div(id=SENSITIVITY), id_="outcomes-sensitivity-section")


def _gain_cell(row: pd.Series | None) -> str:
    """'0.21 [0.17, 0.25]', the suppression label, or a dash."""
    if row is None:
        return "—"
    if bool(row["suppressed"]):
        return _ui.suppressed_label()
    if pd.isna(row["estimate"]):
        return "—"
    return (f"{_ui.fmt_num(row['estimate'])} [{_ui.fmt_num(row['ci_low'])}, "
            f"{_ui.fmt_num(row['ci_high'])}]")


def _tipping_cell(row: pd.Series | None) -> str:
    if row is None:
        return "—"
    if bool(row["suppressed"]):
        return _ui.suppressed_label()
    if pd.isna(row["delta"]):
        return tr("not within ±10 SD")
    delta = float(row["delta"])
    sign = "-" if math.copysign(1.0, delta) < 0 else "+"
    return tr("{delta} SD").format(delta=sign + _ui.fmt_num(abs(delta)))


def sensitivity_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per scale: the completers', IPW and MAR (delta = 0) follow-up gains with their
    95% CIs, and the tipping point, as display text."""
    rows = []
    for (inst, sc), g in df.groupby(["instrument", "scale"], sort=True):
        by = {r["method"]: r for _, r in g[g["method"] != "delta"].iterrows()}
        delta0 = g[(g["method"] == "delta") & (g["delta"] == 0)]
        ipw = by.get("ipw")
        shown = ipw is not None and not bool(ipw["suppressed"]) and pd.notna(ipw["n"])
        rows.append({
            "scale_label": _ui.scale_label(inst, sc),
            "answered": (tr("{answered} of {total}").format(
                answered=_ui.fmt_int(ipw["n_responded"]), total=_ui.fmt_int(ipw["n"])) if shown
                         else _ui.suppressed_label()),
            "completers": _gain_cell(by.get("completers")),
            "ipw": _gain_cell(by.get("ipw")),
            "mar": _gain_cell(delta0.iloc[0] if len(delta0) else None),
            "tipping": _tipping_cell(by.get("tipping_point")),
        })
    return pd.DataFrame(rows, columns=["scale_label", "answered", "completers", "ipw", "mar",
                                       "tipping"])


@callback(Output(SENSITIVITY, "children"), Input(_ui.FILTERS, "data"))
def sensitivity(_store: dict[str, Any] | None) -> Any:
    """Completers vs weighted vs MAR-imputed follow-up gain and the tipping point, per scale
    (all exchange participants; precomputed, not filtered)."""
    df = _ui.query(outcomes.sensitivity, "followup")
    if not len(df):
        return _ui.coming(tr("Missing-data sensitivity"), tr(_COMING))
    wide = sensitivity_table(df)
    return html.Div([_grid.table(wide, {
        "scale_label": (tr("scale"), _ui.text),
        "answered": (tr("answered follow-up, of those with a pre score"), _ui.text),
        "completers": (tr("completers' gain [95% CI]"), _ui.text),
        "ipw": (tr("all participants, weighted (IPW) [95% CI]"), _ui.text),
        "mar": (tr("all participants, imputed (MAR, δ = 0) [95% CI]"), _ui.text),
        "tipping": (tr("tipping point δ"), _ui.text),
    }, tr("Mean change pre → follow-up, exchange participants with a pre score (all programs; "
          "not filtered). CIs cluster-robust by exchange: CR2 for completers, CR1 with "
          "exchanges − 1 df for the others."), id_="outcomes-sensitivity-table",
        suppressed_col=None),
        _assumptions(tr(estimands.SENSITIVITY), tr(estimands.SENSITIVITY_MAR),
                     tr(estimands.SENSITIVITY_MNAR), id_="sensitivity-assumptions"),
    ])


# ---- Dose–response; setting, modality and purpose (issue 13) ----

DOSE_MEASURE = "outcomes-dose-measure"
DOSE = "outcomes-dose"
DOSE_TABLE = "outcomes-dose-table"
MODERATOR = "outcomes-moderator"
MOD_WAVE = "outcomes-moderator-wave"
MOD_FIG = "outcomes-moderation"
MOD_TABLE = "outcomes-moderation-table"
_DOSE_LABELS = {"events": N_("events logged"), "minutes": N_("minutes logged")}
_MODERATOR_LABELS = {"setting": N_("setting"), "modality": N_("modality"),
                     "purpose": N_("purpose")}


def _dose_section() -> html.Section:
    return _ui.section(
        tr("Does more participation go with more gain?"),
        html.Div([
            html.Label(tr("Participation measured as"), htmlFor=DOSE_MEASURE,
                       className="fw-semibold me-2"),
            dbc.RadioItems(id=DOSE_MEASURE, value="events", inline=True, options=[
                {"label": tr(v), "value": k} for k, v in _DOSE_LABELS.items()]),
        ], className="d-flex align-items-center flex-wrap mb-2"),
        _ui.graph(DOSE, tr("Mean pre-to-post change per fifth of participation, with 95% "
                           "confidence intervals, for the scale chosen above")),
        html.Div(id=DOSE_TABLE),
        id_="outcomes-dose-section")


def _moderation_section() -> html.Section:
    return _ui.section(
        tr("Setting, modality and purpose"),
        dbc.Row([
            dbc.Col([
                html.Label(tr("Compare by"), htmlFor=MODERATOR, className="fw-semibold me-2"),
                dbc.RadioItems(id=MODERATOR, value="modality", inline=True, options=[
                    {"label": tr(v), "value": k} for k, v in _MODERATOR_LABELS.items()]),
            ], md="auto", className="d-flex align-items-center flex-wrap"),
            dbc.Col([
                html.Label(tr("Change from pre to"), htmlFor=MOD_WAVE,
                           className="fw-semibold me-2"),
                dbc.RadioItems(id=MOD_WAVE, value="post", inline=True, options=[
                    {"label": tr("post"), "value": "post"},
                    {"label": tr("follow-up"), "value": "followup"}]),
            ], md="auto", className="d-flex align-items-center flex-wrap"),
        ], className="mb-2 g-3"),
        _ui.graph(MOD_FIG, tr("Gain from pre per level of the exchange attribute, with 95% "
                              "confidence intervals, for the scale chosen above")),
        html.Div(id=MOD_TABLE),
        id_="outcomes-moderation-section")


def _interval(est: Any, lo: Any, hi: Any) -> str:
    """'0.21 [0.17, 0.25]'; '0.21 —' when the interval is not estimable (NaN, e.g. a CR2
    variance that is 0 in exact arithmetic), as `_ci_texts` and the funder report show it; '—'
    without an estimate."""
    if est is None or pd.isna(est):
        return "—"
    missing = lo is None or hi is None or pd.isna(lo) or pd.isna(hi)
    return f"{_ui.fmt_num(est)} {'—' if missing else _ui.fmt_ci(lo, hi)}"


def _p_text(p: Any) -> str:
    if p is None or pd.isna(p):
        return "—"
    return "< " + _ui.fmt_num(0.001, 3) if p < 0.001 else _ui.fmt_num(p, 3)


@callback(Output(DOSE, "figure"), Output(DOSE, "style"), Output(DOSE_TABLE, "children"),
          Input(DOSE_MEASURE, "value"), Input(SCALE, "value"))
def dose(measure: Any, scale: str | None) -> tuple[_ui.Figure, dict[str, str], Any]:
    """The binned curve of the chosen scale and the slope of every scale (res_dose_bins,
    res_dose_response; all exchange participants, precomputed: the filters do not apply)."""
    measure = _ui.choice(measure, _DOSE_LABELS, "events")
    slopes = _ui.query(outcomes.dose_response, measure)
    bins = _ui.only_scale(_ui.query(outcomes.dose_bins, measure), scale)
    if not len(slopes):
        return _ui.empty_state(tr("Dose–response"), what=tr(
            "Too few exchange participants with both a dose and a pre/post gain to estimate "
            "a dose–response.")), {}, None
    label = tr(_DOSE_LABELS[measure])
    fig_title = tr("Mean change pre → post by fifth of {measure}").format(measure=label)
    if len(bins):
        first = bins.iloc[0]
        fig_title = _with_scale(fig_title,
                                _ui.ptext(_ui.scale_label(first.instrument, first.scale)))
    shown = bins[~bins["suppressed"].to_numpy(bool)] if len(bins) else bins
    if not len(shown):
        fig = _ui.suppressed_figure(fig_title, tr("This scale's curve has a group under {k} "
                                                  "participants").format(
                                                      k=_ui.fmt_int(suppression.MIN_CELL)))
    else:
        xs = [f"{_ui.fmt_int(a)}–{_ui.fmt_int(b)}"
              for a, b in zip(shown.dose_low, shown.dose_high, strict=True)]
        mean, lo, hi = (shown[c].to_numpy(float)
                        for c in ("mean_change", "ci_low_cr2", "ci_high_cr2"))
        fig = _ui.figure(_ui.trace(
            "scatter", x=xs, y=mean, mode="lines+markers", name=tr("mean change"),
            line={"color": _ui.OKABE_ITO[0]},
            error_y={"type": "data", "symmetric": False, "array": hi - mean,
                     "arrayminus": mean - lo},
            customdata=shown[["n", "ci_low_cr2", "ci_high_cr2", "n_clusters", "dose_median"]],
            hovertemplate=tr("{measure} %{{x}} (median %{{customdata[4]:,.0f}})").format(
                measure=label) + "<br>"
            + tr("mean change %{y:.2f} [%{customdata[1]:.2f}, %{customdata[2]:.2f}] (95% CI "
                 "clustered by exchange, CR2)") + "<br>" + _n_in_exchanges() + "<extra></extra>"))
        _ui.base_layout(fig, fig_title,
                        x=tr("{measure} (range of the fifth)").format(measure=label),
                        y=tr("mean change post − pre (points)"), height=360)
    slopes = slopes.assign(
        scale_label=[_ui.scale_label(a, b) for a, b in zip(slopes.instrument, slopes.scale,
                                                           strict=True)],
        slope=[_interval(e, a, b) for e, a, b in zip(slopes.estimate, slopes.ci_low_cr2,
                                                     slopes.ci_high_cr2, strict=True)])
    table = _grid.table(slopes, {
        "scale_label": (tr("scale"), _ui.text),
        "n": (tr("participants"), _ui.fmt_int),
        "slope": (tr("change per log1p unit [95% CI]"), _ui.text),
        "p_cr2": ("p", _p_text),
        "n_clusters": (tr("exchanges"), _clusters_text),
    }, tr("Slope of the pre → post change on log1p({measure}), adjusted for modality and "
          "setting (OLS; 95% CI clustered by exchange, CR2 with Satterthwaite df; completers of "
          "all programs, precomputed: the filters do not apply)").format(measure=label),
        id_="outcomes-dose-slopes")
    return fig, {}, html.Div([
        table,
        _assumptions(tr(estimands.DOSE_SELF_SELECTED),
                     tr("A slope of {slope} means: a participant with e ≈ {e} times the "
                        "participation (plus one) of another, in the same modality and "
                        "setting, changed {slope} points more on average.").format(
                         slope=_ui.fmt_num(0.10), e=_ui.fmt_num(2.7, 1)),
                     id_="dose-assumptions"),
    ])


@callback(Output(MOD_FIG, "figure"), Output(MOD_FIG, "style"), Output(MOD_TABLE, "children"),
          Input(MODERATOR, "value"), Input(MOD_WAVE, "value"), Input(SCALE, "value"))
def moderation_view(moderator: Any, wave: Any, scale: str | None
                    ) -> tuple[_ui.Figure, dict[str, str], Any]:
    """Gains per setting/modality/purpose level of the chosen scale, and per scale the largest
    difference from the reference level and the interaction test (res_moderation)."""
    moderator = _ui.choice(moderator, _MODERATOR_LABELS, "modality")
    wave = _ui.choice(wave, {"post": 1, "followup": 1}, "post")
    df = _ui.query(outcomes.moderation, moderator, wave)
    if not len(df):
        return _ui.empty_state(tr("Setting, modality and purpose"), what=tr(
            "Too few participants with a pre/post gain in each setting, modality or purpose "
            "to compare them.")), {}, None
    one = _ui.only_scale(df, scale)
    g = one[one["row"] == "gain"]
    shown = g[~g["suppressed"].to_numpy(bool)]
    what = tr(_MODERATOR_LABELS[moderator])
    wave_word = tr(_WAVE_WORDS[wave])
    title = tr("Gain pre → {wave} by {what}").format(wave=wave_word, what=what)
    if len(one):
        title = _with_scale(title, _ui.ptext(_ui.scale_label(one.iloc[0].instrument,
                                                             one.iloc[0].scale)))
    if not len(shown):
        fig = _ui.suppressed_figure(title, tr("Every {what} has fewer than {k} participants")
                                    .format(what=what, k=_ui.fmt_int(suppression.MIN_CELL)))
    else:
        est, lo, hi = (shown[c].to_numpy(float) for c in ("estimate", "ci_low", "ci_high"))
        fig = _ui.figure(_ui.trace(
            "scatter", x=est, y=shown["level"].astype(str), mode="markers",
            marker={"color": _ui.OKABE_ITO[0], "size": 10}, name=tr("gain"),
            error_x={"type": "data", "symmetric": False, "array": hi - est,
                     "arrayminus": est - lo},
            customdata=shown[["n", "ci_low", "ci_high", "n_exchanges"]],
            hovertemplate=tr("%{y}: gain %{x:.2f} [%{customdata[1]:.2f}, %{customdata[2]:.2f}] "
                             "(95% Wald CI, mixed model)") + "<br>" + _n_in_exchanges()
            + "<extra></extra>"))
        _ui.base_layout(fig, title, x=tr("model gain from pre (scale points)"), y=what,
                        height=160 + 34 * len(shown))
        fig.update_yaxes(autorange="reversed")
    small = sorted(g.loc[g["suppressed"].to_numpy(bool), "level"].astype(str).unique())
    rows = []
    for (inst, sc), d in df.groupby(["instrument", "scale"], sort=True):
        test = d[d["row"] == "interaction"]
        diffs = d[(d["row"] == "difference") & ~d["suppressed"].to_numpy(bool)]
        big = (diffs.loc[diffs["estimate"].abs().idxmax()] if len(diffs)
               and diffs["estimate"].notna().any() else None)
        t = test.iloc[0] if len(test) else None
        rows.append({
            "scale_label": _ui.scale_label(inst, sc),
            "reference": str(d["reference"].iloc[0]),
            "largest": "—" if big is None else
            f"{big.level}: {_interval(big.estimate, big.ci_low, big.ci_high)}",
            "check": "—" if big is None else _interval(big.estimate_cr2, big.ci_low_cr2,
                                                        big.ci_high_cr2),
            "test": "—" if t is None or pd.isna(t.statistic) else
            f"F({int(t.df_num)}, {'∞' if not math.isfinite(t.df) else f'{t.df:.0f}'}) = "
            f"{_ui.fmt_num(t.statistic)}",
            "p": None if t is None else t.p,
        })
    wide = pd.DataFrame(rows)
    model_name = str(df["model"].iloc[0]).split(";")[0]
    table = _grid.table(wide, {
        "scale_label": (tr("scale"), _ui.text),
        "reference": (tr("reference"), _ui.text),
        "largest": (tr("largest difference from it [95% CI]"), _ui.text),
        "check": (tr("same, CR2 by exchange [95% CI]"), _ui.text),
        "test": (tr("wave × {what} test").format(what=what), _ui.text),
        "p": ("p", _p_text),
    }, tr("Does the gain pre → {wave} differ by {what}? Model {model}; Wald tests (all "
          "programs, precomputed: the filters do not apply)").format(
        wave=wave_word, what=what, model=model_name), id_="outcomes-moderation-tests",
        suppressed_col=None)
    return fig, {}, html.Div([
        table,
        _ui.suppressed_note(small, tr("{what} levels").format(what=what)),
        _assumptions(tr(estimands.MODEL), tr(estimands.MODERATION),
                     tr("The check column re-estimates the difference from completers' change "
                        "with errors clustered by exchange: the model does not let exchanges "
                        "differ in their gain, so where the check's interval is much wider, "
                        "trust it more."), id_="moderation-assumptions"),
    ])
