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
