/* Exchange Impact: small fixes for upstream components that axe-core (WCAG 2.1 A/AA) flags,
 * applied to the DOM the components render, and re-applied when React re-renders them.
 * Each fix names the defect it works around; the README's "Accessibility" section lists them.
 *
 * 1. Dash 4.4 dcc.Dropdown puts a focusable proxy <input tabindex=0 aria-hidden=true> before
 *    its trigger <button tabindex=-1> (axe: aria-hidden-focus), labels the button by its value
 *    only (the <label for> is overridden by aria-labelledby), and puts an <a aria-label> clear
 *    link with no role inside the button (axe: aria-prohibited-attr). Fix: the button is the
 *    tab stop, the proxy is not; the label comes first in the button's name; the clear link is
 *    hidden from assistive technology (Delete or Backspace on the button clears, as the
 *    component already handles, and aria-keyshortcuts says so).
 * 2. Dash 4.4 dcc.DatePickerRange gives its wrapper <div> aria-haspopup/aria-expanded with no
 *    role and aria-labelledby="... undefined undefined" (axe: aria-allowed-attr), and an
 *    <a aria-label="Clear Dates"> with no role or tab stop (axe: aria-prohibited-attr). Fix: the
 *    wrapper is a labelled group (the dates are typed in its two text inputs, YYYY-MM-DD), and
 *    the clear link is a keyboard button.
 * 3. Their pop-ups (Radix popovers, role=dialog) have no name (axe: aria-dialog-name): each is
 *    named by its control's label. The dropdown's list is role=listbox of <label role=option
 *    aria-selected> elements that each hold a real checkbox, the one the arrow keys focus
 *    (axe: nested-interactive): the roles go, leaving a named group of native, labelled
 *    checkboxes, which is what it is, and the trigger says it opens a dialog. The calendar's
 *    year box is an unlabelled number input (axe: label): it is named "Year".
 */
(function () {
  "use strict";

  function labelIdFor(id) {
    const label = id && document.querySelector('label[for="' + CSS.escape(id) + '"]');
    if (!label) return null;
    if (!label.id) label.id = id + "-label";
    return label.id;
  }

  function setAttr(el, name, value) {
    if (el.getAttribute(name) !== value) el.setAttribute(name, value);
  }

  function fixDropdown(wrapper) {
    const proxy = wrapper.querySelector(":scope > input.dash-dropdown-focus-target");
    const button = wrapper.querySelector(":scope > button.dash-dropdown");
    if (proxy) {
      setAttr(proxy, "tabindex", "-1");
    }
    if (!button) return;
    if (!button.disabled) setAttr(button, "tabindex", "0");
    const labelId = labelIdFor(button.id);
    const names = (button.getAttribute("aria-labelledby") || "").split(/\s+/).filter(
      (t) => t && t !== "undefined" && document.getElementById(t));
    if (labelId && names[0] !== labelId) names.unshift(labelId);
    if (names.length) setAttr(button, "aria-labelledby", names.join(" "));
    setAttr(button, "aria-keyshortcuts", "Delete");
    setAttr(button, "aria-haspopup", "dialog");
    for (const clear of button.querySelectorAll("a.dash-dropdown-clear")) {
      setAttr(clear, "aria-hidden", "true");
      if (clear.hasAttribute("aria-label")) clear.removeAttribute("aria-label");
    }
  }

  function fixDatePicker(wrapper) {
    for (const attr of ["aria-haspopup", "aria-expanded", "aria-disabled", "type"]) {
      if (wrapper.hasAttribute(attr)) wrapper.removeAttribute(attr);
    }
    setAttr(wrapper, "role", "group");
    const start = wrapper.querySelector("input.dash-datepicker-start-date, input");
    const labelId = start && labelIdFor(start.id);
    if (labelId) setAttr(wrapper, "aria-labelledby", labelId);
    else if (wrapper.hasAttribute("aria-labelledby")) wrapper.removeAttribute("aria-labelledby");
    for (const clear of wrapper.querySelectorAll("a.dash-datepicker-clear")) {
      setAttr(clear, "role", "button");
      setAttr(clear, "tabindex", "0");
      if (!clear.dataset.keys) {
        clear.dataset.keys = "1";
        clear.addEventListener("keydown", (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            clear.click();
          }
        });
      }
    }
  }

  function controlLabel(popup) {
    // The element whose aria-controls names the pop-up: the dropdown's button, or the date
    // picker's wrapper (its first input is the labelled one).
    const trigger = popup.id && document.querySelector(
      '[aria-controls="' + CSS.escape(popup.id) + '"]');
    if (!trigger) return null;
    const input = trigger.matches(".dash-datepicker-input-wrapper")
      ? trigger.querySelector("input") : trigger;
    return labelIdFor(input && input.id);
  }

  function fixPopup(popup) {
    const labelId = controlLabel(popup);
    if (labelId) setAttr(popup, "aria-labelledby", labelId);
    else if (!popup.hasAttribute("aria-label")) setAttr(popup, "aria-label", "Choose");
    for (const list of popup.querySelectorAll('.dash-options-list[role="listbox"]')) {
      list.removeAttribute("role");
    }
    for (const list of popup.querySelectorAll(".dash-options-list")) {
      setAttr(list, "role", "group");
      if (labelId) setAttr(list, "aria-labelledby", labelId);
    }
    for (const opt of popup.querySelectorAll(".dash-options-list-option")) {
      if (opt.hasAttribute("role")) opt.removeAttribute("role");
      if (opt.hasAttribute("aria-selected")) opt.removeAttribute("aria-selected");
    }
    for (const year of popup.querySelectorAll(".dash-datepicker-controls input[type=number]")) {
      setAttr(year, "aria-label", "Year");
    }
  }

  function fixAll(root) {
    const scope = root.querySelectorAll ? root : document;
    scope.querySelectorAll(".dash-dropdown-wrapper").forEach(fixDropdown);
    scope.querySelectorAll(".dash-datepicker-input-wrapper").forEach(fixDatePicker);
    scope.querySelectorAll(".dash-dropdown-content, .dash-datepicker-content").forEach(fixPopup);
  }

  let queued = false;
  function schedule() {
    if (queued) return;
    queued = true;
    // After React's commit, before the next paint: the fixed DOM is what is drawn and read.
    queueMicrotask(() => {
      queued = false;
      fixAll(document);
    });
  }

  // The dropdown's own blur handler sets the proxy's tabindex back to 0; undo it after.
  document.addEventListener("focusout", (e) => {
    if (e.target && e.target.matches && e.target.matches("button.dash-dropdown")) schedule();
  });

  const observer = new MutationObserver(schedule);
  function start() {
    fixAll(document);
    observer.observe(document.body, {
      subtree: true, childList: true, attributes: true,
      attributeFilter: ["aria-labelledby", "aria-expanded", "aria-haspopup", "tabindex",
                        "aria-label", "role", "aria-selected", "aria-controls"],
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

/* Tabs (pages/_ui.py `tabs`), the WAI-ARIA Authoring Practices' tabs pattern: dbc 2.0.4's
 * Tabs renders every tab as id="...-tab-null" with aria-controls="...-tabpane-null" (axe:
 * aria-valid-attr-value) and tabindex=-1 on all of them, so no tab could be reached by
 * keyboard. Click or Enter/Space selects a tab; Left/Right/Home/End move between tabs and
 * select (automatic activation); only the selected tab is a tab stop. */
(function () {
  "use strict";

  function select(tab, focus) {
    const list = tab.closest('[role="tablist"]');
    if (!list) return;
    for (const t of list.querySelectorAll('[role="tab"]')) {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.setAttribute("tabindex", on ? "0" : "-1");
      t.classList.toggle("active", on);
      const panel = document.getElementById(t.getAttribute("aria-controls"));
      if (panel) panel.hidden = !on;
    }
    if (focus) tab.focus();
  }

  document.addEventListener("click", (e) => {
    const tab = e.target.closest && e.target.closest('.ei-tabs [role="tab"]');
    if (tab) {
      e.preventDefault();
      select(tab, false);
    }
  });

  document.addEventListener("keydown", (e) => {
    const tab = e.target.closest && e.target.closest('.ei-tabs [role="tab"]');
    if (!tab) return;
    const tabs = Array.from(tab.closest('[role="tablist"]').querySelectorAll('[role="tab"]'));
    const i = tabs.indexOf(tab);
    const to = {ArrowRight: (i + 1) % tabs.length, ArrowLeft: (i - 1 + tabs.length) % tabs.length,
                Home: 0, End: tabs.length - 1}[e.key];
    if (to !== undefined) {
      e.preventDefault();
      select(tabs[to], true);
    }
  });
})();

/* Figures (pages/_ui.py `graph`): a text alternative and the data behind each figure, written
 * from the figure as plotly.js drew it (after every draw), so they always say what is on
 * screen. The text alternative (the figure region's aria-describedby) is the title, the axis
 * titles and, per series, how many values and the lowest and highest; the table lists every
 * value (with the 95% CI where the figure draws error bars). A series named as suppressed
 * (the region's data-suppressed) shows that label, never its placeholder values. Numbers are
 * formatted for the page's language. */
(function () {
  "use strict";
  const MAX_ROWS = 500;

  function arr(v) {
    if (v === undefined || v === null) return [];
    if (Array.isArray(v)) return v;
    if (ArrayBuffer.isView(v)) return Array.from(v);
    return [v];
  }

  const decoder = document.createElement("textarea");
  function text(v) {
    // Plotly markup (<br>, <b>) out, then entities decoded: a name the server escaped
    // ("&lt;b&gt;") reads as the user wrote it.
    if (typeof v !== "string") return "";
    decoder.innerHTML = v.replace(/<[^>]*>/g, " ");
    return decoder.value.replace(/\s+/g, " ").trim();
  }

  function titleOf(obj) {
    if (!obj) return "";
    return text(typeof obj.title === "string" ? obj.title : obj.title && obj.title.text);
  }

  const ISO_DAY = /^(\d{4}-\d{2}-\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?)?$/;
  function formatter() {
    const lang = document.documentElement.lang || "en";
    const nf = new Intl.NumberFormat(lang, {maximumFractionDigits: 2});
    const df = new Intl.DateTimeFormat(lang, {dateStyle: "medium", timeZone: "UTC"});
    return (v) => {
      if (typeof v === "number") return Number.isFinite(v) ? nf.format(v) : "";
      if (v === null || v === undefined) return "";
      const day = typeof v === "string" && ISO_DAY.exec(v);
      if (day) return df.format(new Date(day[1] + "T00:00:00Z"));
      return text(String(v)) || String(v);
    };
  }

  function numeric(values) {
    return values.some((v) => typeof v === "number");
  }

  // One row per drawn value: [series, label, value, low, high]
  function rowsOf(trace, words, layout) {
    const rows = [];
    const type = trace.type || "scatter";
    if (type === "choropleth") {
      const loc = arr(trace.locations), z = arr(trace.z);
      loc.forEach((l, i) => rows.push([l, z[i]]));
      return {cols: [words.row, words.value], rows, values: z};
    }
    if (type === "heatmap") {
      const z = arr(trace.z), x = arr(trace.x), y = arr(trace.y), values = [];
      z.forEach((r, i) => arr(r).forEach((v, j) => {
        if (v !== null && v !== undefined) {
          rows.push([y[i] !== undefined ? y[i] : i, x[j] !== undefined ? x[j] : j, v]);
          values.push(v);
        }
      }));
      return {cols: [words.row, words.column, words.value], rows, values};
    }
    // Values on the x axis: a horizontal bar, or points with numbers on x and labels on y.
    const horizontal = trace.orientation === "h" || (trace.type !== "bar" &&
      numeric(arr(trace.x)) && !numeric(arr(trace.y)) && arr(trace.y).length > 0);
    const labels = arr(horizontal ? trace.y : trace.x);
    const values = arr(horizontal ? trace.x : trace.y);
    const err = horizontal ? trace.error_x : trace.error_y;
    const plus = err && err.visible !== false ? arr(err.array) : [];
    const minus = err && err.visible !== false ? arr(err.arrayminus || err.array) : [];
    const withCi = plus.length > 0;
    values.forEach((v, i) => {
      const row = [labels[i] !== undefined ? labels[i] : i + 1, v];
      if (withCi) {
        row.push(typeof v === "number" && typeof minus[i] === "number" ? v - minus[i] : null);
        row.push(typeof v === "number" && typeof plus[i] === "number" ? v + plus[i] : null);
      }
      rows.push(row);
    });
    // The columns are named by the axes where the figure names them.
    const labelAxis = (horizontal ? layout.yaxis : layout.xaxis) || {};
    const valueAxis = (horizontal ? layout.xaxis : layout.yaxis) || {};
    const cols = [titleOf(labelAxis) || words.row, titleOf(valueAxis) || words.value]
      .concat(withCi ? [words.low, words.high] : []);
    return {cols, rows, values};
  }

  function extremes(labels, values) {
    let lo = -1, hi = -1;
    values.forEach((v, i) => {
      if (typeof v !== "number" || !Number.isFinite(v)) return;
      if (lo < 0 || v < values[lo]) lo = i;
      if (hi < 0 || v > values[hi]) hi = i;
    });
    return lo < 0 ? null : {lo, hi};
  }

  function describe(gd) {
    const box = gd.closest(".ei-figure");
    if (!box) return;
    const summaryEl = box.querySelector(".ei-figure-summary");
    const tableEl = box.querySelector(".ei-figure-table");
    if (!summaryEl || !tableEl) return;
    const words = JSON.parse(box.dataset.words || "{}");
    const suppressed = box.dataset.suppressed || "";
    const fmt = formatter();
    const layout = gd.layout || {};
    const parts = [titleOf(layout) || box.getAttribute("aria-label") || ""];
    const axes = [titleOf(layout.xaxis), titleOf(layout.yaxis)].filter(Boolean);
    if (axes.length) parts.push(axes.join(" / "));
    for (const a of layout.annotations || []) if (text(a.text)) parts.push(text(a.text));

    const table = document.createElement("table");
    table.className = "table table-sm";
    const thead = table.createTHead(), tbody = table.createTBody();
    let header = null, shown = 0, total = 0;
    (gd.data || []).forEach((trace, t) => {
      const name = text(trace.name) || `${words.series} ${t + 1}`;
      const {cols, rows, values} = rowsOf(trace, words, layout);
      const hidden = suppressed && trace.name === suppressed;
      if (!header) {
        header = thead.insertRow();
        [words.series].concat(cols).forEach((c) => {
          const th = document.createElement("th");
          th.scope = "col";
          th.textContent = c;
          header.appendChild(th);
        });
      }
      if (hidden) {
        parts.push(`${name}: ${rows.map((r) => fmt(r[0])).join(", ")}`);
      } else if (values.length) {
        const ext = extremes(rows.map((r) => r[0]), values);
        let s = `${name}: ${values.length} ${words.values}`;
        if (ext) {
          const where = (i) => (trace.type === "heatmap" ? rows[i].slice(0, 2) : [rows[i][0]])
            .map(fmt).join(", ");
          s += `, ${words.lowest} ${fmt(values[ext.lo])} (${where(ext.lo)}), ` +
               `${words.highest} ${fmt(values[ext.hi])} (${where(ext.hi)})`;
        }
        parts.push(s);
      }
      for (const r of rows) {
        total += 1;
        if (shown >= MAX_ROWS) continue;
        shown += 1;
        const tr = tbody.insertRow();
        tr.insertCell().textContent = name;
        r.forEach((v, i) => {
          tr.insertCell().textContent = hidden && i > 0 ? suppressed : fmt(v);
        });
      }
    });
    summaryEl.textContent = parts.map((p) => p.replace(/[.\s]+$/, "")).filter(Boolean)
      .join(". ") + ".";
    tableEl.replaceChildren();
    if (!total) {
      const p = document.createElement("p");
      p.textContent = words.nothing || "";
      tableEl.appendChild(p);
      return;
    }
    const wrap = document.createElement("div");
    wrap.className = "table-responsive";
    wrap.tabIndex = 0;
    wrap.setAttribute("role", "region");
    wrap.setAttribute("aria-label", titleOf(layout) || box.getAttribute("aria-label") || "");
    wrap.appendChild(table);
    tableEl.appendChild(wrap);
    if (total > shown) {
      const p = document.createElement("p");
      p.textContent = `${fmt(total - shown)} ${words.more}`;
      tableEl.appendChild(p);
    }
  }

  function watch() {
    for (const gd of document.querySelectorAll(".ei-figure .js-plotly-plot")) {
      if (gd.dataset.eiWatched || typeof gd.on !== "function") continue;
      gd.dataset.eiWatched = "1";
      gd.on("plotly_afterplot", () => describe(gd));
      describe(gd);
    }
  }

  const observer = new MutationObserver(() => watch());
  function start() {
    watch();
    observer.observe(document.body, {subtree: true, childList: true});
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
