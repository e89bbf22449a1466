"""The funder PDF snapshot (issue 12), checked from the outside with poppler and pypdf.

Five snapshots of the demo warehouse (the whole program, one cluster, one country, teachers
only — a selection that leaves many countries under k — and a date range) are written once for
the module with one browser, then read back: the headline numbers equal the analytics read
functions' answers, the filters are on the cover in words, suppressed groups are marked and
carry no number, every page has text and is not blank when rendered, the outline and the tags
exist and the metadata names the data version. The CLI is run as a user runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from analytics import suppression
from analytics.read import loads, overview
from analytics.read.filters import Filters
from etl.warehouse import Reader
from tests.analytics_fixture import demo_warehouse, run

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

if shutil.which("pdftotext") is None:  # pragma: no cover - .ci/run installs poppler-utils
    # A developer's machine may lack it; on CI the PDF's text must be checked, not skipped.
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError("CI=true and poppler-utils (pdftotext) is not installed: the PDF "
                           "snapshot tests cannot read the reports")
    pytest.skip("poppler-utils (pdftotext) is not installed", allow_module_level=True)

LABEL = suppression.SUPPRESSED_LABEL
RANGE = (date(2024, 9, 1), date(2025, 6, 30))


@pytest.fixture(scope="module")
def warehouse() -> Path:
    wh = demo_warehouse()
    old = os.environ.get("EXCHANGE_IMPACT_WAREHOUSE")
    os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = str(wh)
    yield wh
    if old is None:
        os.environ.pop("EXCHANGE_IMPACT_WAREHOUSE", None)
    else:
        os.environ["EXCHANGE_IMPACT_WAREHOUSE"] = old


@pytest.fixture(scope="module")
def cur(warehouse):
    r = Reader(warehouse)
    c = r.cursor()
    yield c
    c.close()
    r.close()


@pytest.fixture(scope="module")
def picks(cur) -> dict[str, Filters]:
    opts = loads.filter_options(cur)
    sizes = overview.participants_by_country(cur, Filters())
    return {
        "all": Filters(),
        "cluster": Filters(cluster=(opts.options["cluster"][0][0],)),
        "country": Filters(country=(str(sizes.country.iloc[0]),)),
        "teachers": Filters(role=("teacher",)),
        "dates": Filters(start=RANGE[0], end=RANGE[1]),
        "tiny": _tiny(cur),
    }


def _tiny(cur) -> Filters:
    """The teachers of the smallest exchange: a whole selection under k."""
    from analytics.read import participation

    sizes = participation.breakdown(cur, Filters(), "exchange").sort_values("participants")
    for x in sizes.key:
        f = Filters(exchange=(str(x),), role=("teacher",))
        if overview.headline(cur, f)["suppressed"]:
            return f
    raise AssertionError("the demo has no exchange with fewer than k teachers")


@pytest.fixture(scope="module")
def pdfs(warehouse, picks, tmp_path_factory) -> dict[str, Path]:
    from reports import engine
    from reports.snapshot import write_snapshot

    folder = tmp_path_factory.mktemp("snapshots")
    steps: list[float] = []
    out = {name: write_snapshot(f, folder / f"{name}.pdf",
                                progress=lambda x, _w: steps.append(x))
           for name, f in picks.items()}
    engine.shutdown()
    assert steps.count(0.0) == steps.count(1.0) == len(picks)
    return out


def pages_text(pdf: Path) -> list[str]:
    txt = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                         text=True, check=True).stdout
    return txt.split("\f")[:-1] if txt.endswith("\f") else txt.split("\f")


def section_text(pdf: Path, heading: str) -> str:
    """The text of the pages from the one starting with `heading` to the next section."""
    pages = pages_text(pdf)
    start = next(i for i, p in enumerate(pages) if p.lstrip().startswith(heading))
    return pages[start]


def row(text: str, label: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(label)]
    assert lines, f"no line starting with {label!r}"
    return lines[0]


def outline_titles(items: list) -> set[str]:
    """Every title of a pypdf outline (nested lists are the children of the item before)."""
    out: set[str] = set()
    for o in items:
        out |= outline_titles(o) if isinstance(o, list) else {o["/Title"]}
    return out


def figure_alts(reader) -> list[str]:
    """The /Alt texts of the /Figure elements of a tagged PDF's structure tree."""
    alts: list[str] = []

    def walk(node) -> None:
        node = node.get_object()
        if isinstance(node, list):
            for c in node:
                walk(c)
        elif isinstance(node, dict):
            if node.get("/S") == "/Figure" and "/Alt" in node:
                alts.append(str(node["/Alt"]))
            if "/K" in node:
                walk(node["/K"])

    walk(reader.trailer["/Root"]["/StructTreeRoot"])
    return alts


def pdfinfo(pdf: Path) -> dict[str, str]:
    out = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True,
                         check=True).stdout
    return {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in out.splitlines()
                                              if ":" in ln)}


@pytest.mark.parametrize("name", ["all", "cluster", "country", "dates"])
def test_headline_numbers_equal_the_analytics_tables(pdfs, picks, cur, name) -> None:
    h = overview.headline(cur, picks[name])
    assert not h["suppressed"]
    text = section_text(pdfs[name], "Headline figures")
    for label, key in (("Participants (comparison group excluded)", "participants"),
                       ("Institutions", "institutions"), ("Countries", "countries"),
                       ("Clusters", "clusters"),
                       ("Exchanges with activity in scope", "exchanges"),
                       ("Events in the activity log", "events")):
        assert row(text, label).endswith(f"{int(h[key]):,}"), (label, h[key])
    waves = overview.completion_by_wave(cur, picks[name])
    assert len(waves)
    for w in waves.itertuples():
        line = row(text, str(w.wave))
        assert f"{100 * w.rate:.0f}%" in line and f"{int(w.responded):,} of" in line


def test_cost_per_participant_equals_the_budgets_over_the_event_log(pdfs, warehouse) -> None:
    """Oracle: budgets per currency over the distinct participants of each exchange in the raw
    event log (exchanges of k or more people), computed here in SQL."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        truth = con.execute("""SELECT x.currency, count(*), sum(x.budget), sum(e.n)
            FROM exchanges x JOIN (SELECT exchange_id, count(DISTINCT participant_id) AS n
                                   FROM events GROUP BY 1) e USING (exchange_id)
            WHERE x.budget IS NOT NULL AND x.currency IS NOT NULL AND e.n >= $k
            GROUP BY 1 ORDER BY 1""", {"k": suppression.MIN_CELL}).fetchall()
    finally:
        con.close()
    assert len(truth) >= 2
    text = section_text(pdfs["all"], "Headline figures")
    for currency, n_x, budget, n in truth:
        line = row(text, currency)
        assert line.split() == [currency, f"{n_x:,}", f"{int(budget):,}", f"{n:,}",
                                f"{round(budget / n):,}"], line


def test_the_filters_are_on_the_cover_in_words(pdfs, picks, cur) -> None:
    opts = dict(loads.filter_options(cur).options["cluster"])
    cover = pages_text(pdfs["cluster"])[0]
    cluster_id = picks["cluster"].cluster[0]
    assert f"Cluster: {opts[cluster_id]}" in " ".join(cover.split())
    country = picks["country"].country[0]
    cover = " ".join(pages_text(pdfs["country"])[0].split())
    assert re.search(rf"Country: [A-Z][^()]+ \({country}\)", cover), cover[:600]
    cover = " ".join(pages_text(pdfs["dates"])[0].split())
    assert f"Event dates: {RANGE[0]} to {RANGE[1]}" in cover
    assert f"{RANGE[0]} to {RANGE[1]} (event dates, UTC)" in cover
    cover = " ".join(pages_text(pdfs["all"])[0].split())
    assert "No filter" in cover
    version = loads.data_info(cur)["data_version"]
    assert f"Data version {version}" in cover and "Generated" in cover


def test_suppressed_groups_are_marked_and_carry_no_number(pdfs, picks, cur) -> None:
    import pycountry

    by_country = overview.participants_by_country(cur, picks["teachers"])
    small = by_country[by_country.suppressed.astype(bool)]
    assert len(small) >= 2, "the teachers-only selection should leave small countries"
    assert len(small) < len(by_country), "and some shown ones"
    text = "\n".join(pages_text(pdfs["teachers"]))
    for code in small.country:
        name = f"{pycountry.countries.get(alpha_3=code).name} ({code})"
        lines = [ln for ln in text.splitlines() if ln.strip().startswith(name)
                 and LABEL in ln]
        assert lines, f"{name} is not marked {LABEL}"
        for ln in lines:
            assert not re.search(r"\d", ln.replace(LABEL, "").replace(code, "")), ln
    methods = " ".join(section_text(pdfs["teachers"], "Methods and data").split())
    assert "What was suppressed and why" in methods


def test_a_selection_under_k_shows_no_number(pdfs, picks, cur) -> None:
    assert overview.headline(cur, picks["tiny"])["suppressed"]
    pages = pages_text(pdfs["tiny"])
    assert suppression.SMALL_SELECTION in " ".join(pages[1].split())
    # The headline and Where pages are about the selection's people (the precomputed effects
    # after them are all participants', as on the Overview page, and say so).
    end = next(i for i, p in enumerate(pages) if p.lstrip().startswith("Outcomes"))
    body = [ln for p in pages[1:end] for ln in p.splitlines()
            if ln.strip() and "data version" not in ln]  # the footer's version and page
    assert "Participants (comparison group excluded)" not in " ".join(pages[1].split())
    assert any(LABEL in ln for ln in body)
    for ln in body:
        rest = ln.replace(LABEL, "").replace(suppression.SMALL_SELECTION, "")
        assert not re.search(r"\d", rest), ln


def test_every_page_has_text_and_ink(pdfs) -> None:
    from PIL import Image

    for name, pdf in pdfs.items():
        pages = pages_text(pdf)
        assert len(pages) == int(pdfinfo(pdf)["Pages"]) >= 5, name
        assert all(p.strip() for p in pages), f"{name}: a page without text"
        out = pdf.parent / f"{name}-png"
        out.mkdir(exist_ok=True)
        subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(out / "p")], check=True)
        pngs = sorted(out.glob("p-*.png"))
        assert len(pngs) == len(pages)
        for png in pngs:
            grey = Image.open(png).convert("L")
            dark = sum(grey.histogram()[:200])
            assert dark > 200, f"{name}: {png.name} is blank"


def test_outline_tags_metadata(pdfs, cur) -> None:
    from pypdf import PdfReader

    version = loads.data_info(cur)["data_version"]
    for name, pdf in pdfs.items():
        info = pdfinfo(pdf)
        assert info["Tagged"] == "yes", name
        assert info["Title"] == "Exchange Impact: funder snapshot"
        assert f"Data version {version}" in info["Subject"]
        assert f"data version {version}" in info["Keywords"]
        assert info["Page size"].endswith("(A4)")
        titles = outline_titles(PdfReader(pdf).outline)
        assert {"Headline figures", "Methods and data"} <= titles, (name, titles)
    whole = PdfReader(pdfs["all"])
    titles = outline_titles(whole.outline)
    assert {"Where", "Outcomes", "Persistence of partnerships", "Attrition"} <= titles
    # Every figure is a tagged /Figure whose alternative text says what it shows.
    alts = figure_alts(whole)
    assert any(a.startswith("World map shading") for a in alts), alts
    assert sum(a.startswith("Forest plot for") for a in alts) >= 2
    assert whole.trailer["/Root"].get("/Lang") == "en"
    # The table of contents links to the sections.
    links = [a for a in whole.pages[0].get("/Annots", []) if a.get_object().get("/Subtype")
             == "/Link"]
    assert len(links) >= 6


def test_effect_sentences_follow_the_numbers(pdfs, cur) -> None:
    from analytics.read import outcomes

    df, _ = outcomes.prepost_extremes(cur, Filters(), 1000)
    text = " ".join("\n".join(pages_text(pdfs["all"])).split())
    assert "Hedges' g (average-SD standardiser" in text
    for r in df.itertuples():
        g = f"Hedges' g = {r.hedges_g:.2f} (95% CI {r.hedges_g_ci_low_cr2:.2f} to " \
            f"{r.hedges_g_ci_high_cr2:.2f}"
        assert g in text
        zero = r.hedges_g_ci_low_cr2 <= 0 <= r.hedges_g_ci_high_cr2
        verdict = "showed no detectable change" if zero else ("rose" if r.hedges_g > 0
                                                               else "fell")
        i = text.index(g)
        assert verdict in text[max(0, i - 400):i], (r.scale, verdict)


def test_a_filtered_reports_effects_are_its_participants(pdfs, picks, cur) -> None:
    """Issue 17: the teachers' report (role is no stored grouping) shows the pre/post effects
    computed for its teachers, in words and by cluster, not the whole program's."""
    from analytics.read import outcomes

    f = picks["teachers"]
    mine, scope = outcomes.prepost_extremes(cur, f, 1000)
    whole, _ = outcomes.prepost_extremes(cur, Filters(), 1000)
    assert "other filters do not apply" not in scope
    text = " ".join("\n".join(pages_text(pdfs["teachers"])).split())
    assert len(mine) and not mine.hedges_g.round(2).equals(whole.hedges_g.round(2))
    for r in mine.itertuples():
        assert f"Hedges' g = {r.hedges_g:.2f} (95% CI {r.hedges_g_ci_low_cr2:.2f} to " \
               f"{r.hedges_g_ci_high_cr2:.2f}" in text
    by_cluster = outcomes.prepost_slice(cur, f, "cluster")
    assert len(by_cluster) and "pre → post effect by cluster (the report's participants)" in text
    assert "effect by cluster (all participants" not in text


# ---- the command line -------------------------------------------------------------------------

def test_cli_writes_the_snapshot_of_a_dashboard_link(warehouse, cur, tmp_path) -> None:
    opts = dict(loads.filter_options(cur).options["cluster"])
    cl = next(iter(opts))
    out = tmp_path / "link.pdf"
    r = run("reports", "snapshot", "--out", str(out), "--quiet", "--url",
            f"http://127.0.0.1:8050/outcomes?cluster={cl}&by=country&nonsense=1",
            env={"EXCHANGE_IMPACT_WAREHOUSE": str(warehouse)})
    assert r.returncode == 0, r.stderr
    assert "'nonsense' is not a filter" in r.stderr
    cover = " ".join(pages_text(out)[0].split())
    assert f"Cluster: {opts[cl]}" in cover and "'nonsense' is not a filter" in cover


def test_cli_errors_are_one_line(warehouse, tmp_path) -> None:
    r = run("reports", "snapshot", "--out", str(tmp_path / "x.pdf"),
            env={"EXCHANGE_IMPACT_WAREHOUSE": str(tmp_path / "none.duckdb")})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: no data to report")
    r = run("reports", "snapshot", "--out", str(tmp_path / "no-dir" / "x.pdf"),
            env={"EXCHANGE_IMPACT_WAREHOUSE": str(warehouse)})
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.pdf").exists()


def test_without_chromium_one_message_says_how_to_install_it(warehouse, tmp_path) -> None:
    r = run("reports", "snapshot", "--out", str(tmp_path / "x.pdf"), "--quiet",
            env={"EXCHANGE_IMPACT_WAREHOUSE": str(warehouse),
                 "EXCHANGE_IMPACT_CHROMIUM": str(tmp_path / "no-chromium")})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "apt-get install chromium" in r.stderr
    assert not (tmp_path / "x.pdf").exists()
    # The package itself imports without a browser (the dashboard may import it).
    r = subprocess.run([sys.executable, "-c", "import reports, reports.snapshot, reports.cli"],
                       env={**os.environ, "PATH": "/nonexistent"}, capture_output=True,
                       text=True, cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr


def test_the_report_asks_for_nothing_outside_the_machine(cur, pdfs) -> None:
    """The report's page names only inline (data:) or local resources, never http(s) or a
    protocol-relative address, and the kept browser has no route out (its proxy is the closed
    discard port), so neither the page nor Chromium's own background requests leave."""
    from reports import content, engine, render

    page = render.to_html(content.gather(cur, Filters(), title=None, lang="en", notes=(),
                                         progress=None))
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']|url\(\s*["']?([^"')]*)""", page)
    addresses = [a or b for a, b in refs]
    assert addresses, "no src/href at all: the pattern is wrong"
    outside = [a for a in addresses if re.match(r"(?i)\s*(https?:)?//", a)]
    assert outside == []
    assert not re.search(r"""(?i)(fetch|XMLHttpRequest|import)\s*\(\s*["']https?:""", page)
    args = engine.engine()._browser.subprocess.args  # the running browser's command line
    assert f"--proxy-server={engine.NO_ROUTE_PROXY}" in args


# ---- issue 13's tables (whole program, precomputed per data version) ----------------------------

ISSUE13_HEADINGS = {"Cross-border vs domestic (whole program)", "Reciprocity of partnerships",
                    "Gaps between the best- and worst-served groups",
                    "Does more participation go with more gain?"}


def row_blocks(text: str) -> list[str]:
    """pdftotext -layout's table rows: runs of non-blank lines (a wrapped cell's second line
    stays with its row; rows are separated by a blank line)."""
    return [b for b in re.split(r"\n\s*\n", text) if b.strip()]


def no_number_but_the_label(block: str, name: str) -> None:
    """A suppressed row: marked, and once the name and the label's pieces (it may wrap as
    'suppressed (n' / '< 10)') are removed, not one digit is left."""
    assert "suppressed" in block, block
    rest = " ".join(block.split())
    for piece in (LABEL, "suppressed (n", f"< {suppression.MIN_CELL})", *name.split()):
        rest = rest.replace(piece, " ")
    assert not re.search(r"\d", rest), block


def test_issue13_sections_are_in_the_outline_and_say_the_filters_do_not_apply(pdfs) -> None:
    from pypdf import PdfReader

    for name in ("all", "cluster"):
        titles = outline_titles(PdfReader(pdfs[name]).outline)
        assert ISSUE13_HEADINGS <= titles, (name, ISSUE13_HEADINGS - titles)
        text = " ".join("\n".join(pages_text(pdfs[name])).split())
        assert text.count("the filters of this report do not apply") >= 2
        assert "Dose is self-selected" in text


def test_the_cox_hazard_ratio_and_medians_equal_the_read_functions(pdfs, cur) -> None:
    from analytics.read import partnerships

    cox = partnerships.persistence_cox(cur, "partnership")
    r = cox[(cox.term == "kind") & (cox.level == "cross-border") & ~cox.suppressed].iloc[0]
    text = " ".join("\n".join(pages_text(pdfs["all"])).split())
    assert r.hr > 1 and not r.ci_low <= 1 <= r.ci_high, "the demo's truth: cross-border ends sooner"
    sentence = (f"Cross-border partnerships end {r.hr:.2f}× as fast as domestic ones (95% CI "
                f"{r.ci_low:.2f}–{r.ci_high:.2f}): Cox proportional")
    assert sentence in text
    assert "baseline hazard per cluster, errors clustered by exchange" in text
    groups = partnerships.persistence_groups(cur, "partnership:kind").set_index("group")
    for kind in ("cross-border", "domestic"):
        assert f"{kind} {int(groups.loc[kind, 'median']):,} days (95% CI " \
               f"{int(groups.loc[kind, 'median_ci_low']):,}–" in text, kind


def test_reciprocity_equity_gaps_and_dose_equal_the_read_functions(pdfs, cur) -> None:
    from analytics.read import equity, outcomes, partnerships

    pages = pages_text(pdfs["all"])
    text = " ".join("\n".join(pages).split())
    shares = partnerships.reciprocity_shares(cur)
    o = shares[shares.group_by == "overall"].iloc[0]
    assert not o.suppressed
    assert (f"Reciprocal (both sides gain): {int(o.n_both)}, a share of "
            f"{100 * o.share_reciprocal:.0f}% (Wilson 95% CI {100 * o.share_ci_low:.0f}% to "
            f"{100 * o.share_ci_high:.0f}%)") in text
    per_p = partnerships.reciprocity(cur)
    one = per_p[per_p.reciprocity.isin(["a_only", "b_only"])]
    assert f"one-sided (only one side gains): {len(one)};" in text
    for pid in one.partnership_id:
        assert pid in text.split("One-sided partnerships (partnership ids):", 1)[1][:400]
    lines = "\n".join(pages).splitlines()
    for by in ("gender", "connectivity"):
        g = equity.equity_gap_table(cur, by)
        for r in g[g.measure.isin(["gain", "dropout"]) & ~g.suppressed].itertuples():
            want = (f"{r.gap:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]" if r.measure == "gain"
                    else f"{100 * r.gap:.0f}% [{100 * r.ci_low:.0f}%, {100 * r.ci_high:.0f}%]")
            assert any(want in ln for ln in lines), (by, r.measure, want)
            for left in str(r.groups_left_out or "").split("; "):
                assert left.split(" (")[0] in text
    slopes = outcomes.dose_response(cur, "events")
    assert len(slopes) and not slopes.suppressed.any()
    for r in slopes.itertuples():
        want = f"{r.estimate:.2f} [{r.ci_low_cr2:.2f}, {r.ci_high_cr2:.2f}]"
        assert any(want in ln for ln in lines), (r.scale, want)


def test_suppressed_issue13_rows_are_marked_without_numbers(pdfs, cur) -> None:
    from analytics.read import partnerships

    opts = dict(loads.filter_options(cur).options["cluster"])
    pages = pages_text(pdfs["all"])
    start = next(i for i, p in enumerate(pages) if p.lstrip().startswith("Reciprocity of"))
    blocks = row_blocks("\n".join(pages[start:start + 3]))
    shares = partnerships.reciprocity_shares(cur)
    small = shares[(shares.group_by == "cluster") & shares.suppressed]
    assert len(small) >= 2 and (~shares.suppressed).sum() >= 2, "the demo has both kinds"
    for cl in small["group"]:
        name = opts[str(cl)]
        assert not re.search(r"\d", name)
        first = " ".join(name.split()[:2])
        mine = [b for b in blocks if b.strip().startswith(first)]
        assert mine, name
        no_number_but_the_label(mine[0], name)
    cox = partnerships.persistence_cox(cur, "partnership")
    small = cox[cox.suppressed]
    assert len(small), "the demo's link model leaves a level under k"
    text = "\n".join(pages)
    blocks = row_blocks(text[text.index("Cox proportional-hazards models of partnership"):])
    for r in small.itertuples():
        mine = [b for b in blocks if b.split()[:2] == [r.model, r.term]]
        assert mine, (r.model, r.term)
        no_number_but_the_label(mine[0], f"{r.model} {r.term} {r.level} {r.reference}")


def test_issue13_sections_appear_only_when_their_tables_have_rows(warehouse, tmp_path) -> None:
    """The same warehouse without issue 13's result tables: none of the new headings, and the
    rest of the report is still there."""
    import duckdb

    from analytics.read.cache import clear_cache
    from etl import schema
    from reports import content

    copy = tmp_path / "no-issue13.duckdb"
    shutil.copy(warehouse, copy)
    con = duckdb.connect(str(copy))
    try:
        for t in (schema.RES_PERSISTENCE, schema.RES_PERSISTENCE_COX,
                  schema.RES_RECIPROCITY, schema.RES_RECIPROCITY_SHARES,
                  schema.RES_EQUITY_GAPS, schema.RES_DOSE_RESPONSE):
            con.execute(f"DROP TABLE IF EXISTS {t.name}").fetchall()
    finally:
        con.close()
    clear_cache()  # the copy shares the original's build id, so its cache key
    r = Reader(copy)
    c = r.cursor()
    try:
        rep = content.gather(c, Filters())
    finally:
        c.close()
        r.close()
        clear_cache()
    titles = {s.title for s in rep.sections} | {
        b.title for s in rep.sections for b in s.blocks if isinstance(b, content.Sub)}
    assert not ISSUE13_HEADINGS & titles, ISSUE13_HEADINGS & titles
    assert {"Headline figures", "Outcomes", "Persistence of partnerships",
            "Equity: gains by group", "Methods and data"} <= titles


def test_the_cost_section_equals_the_read_function(pdfs, cur) -> None:
    """Issue 13: the funder report's cost per outcome (res_cost by program) in the outline, with
    the overall row's cost per unit of gain and its interval as the Overview page shows them."""
    from pypdf import PdfReader

    from analytics.read import overview
    from pages.overview import _per_gain

    assert "What an outcome costs" in outline_titles(PdfReader(pdfs["all"]).outline)
    df = overview.cost_results(cur, "program")
    o = df[df.group_by == "overall"].iloc[0]
    assert not o.suppressed and o.cost_per_gain > 0
    text = "\n".join(pages_text(pdfs["all"]))
    want = _per_gain(o.cost_per_gain, o.cost_per_gain_ci_low, o.cost_per_gain_ci_high,
                     o.unbounded)
    blocks = row_blocks(text[text.index("What an outcome costs"):])
    mine = [b for b in blocks if b.strip().startswith("overall (EUR)")]
    assert mine and want in " ".join(mine[0].split()), (want, mine[:1])
    text = " ".join(text.split())
    assert "never silently" in text
