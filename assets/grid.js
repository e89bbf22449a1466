/* Exchange Impact: the research grids' browser side (pages/_grid.py builds them).
 *
 * - The functions the grids' column definitions name (dash-ag-grid evaluates
 *   {"function": "..."} by parsing it, never with eval, so the CSP stays strict):
 *   a cell shows its text as formatted for the page's language (`<field>_t`); a suppressed
 *   row's blank cell is marked.
 * - "Copy": the grid's current view (rows after its filters and sort, columns in their current
 *   order) as tab-separated text with a header row, as shown, on the clipboard; a spreadsheet
 *   pastes it as cells. The status next to the button says how many rows were copied.
 */
(function () {
  "use strict";

  const fns = (window.dashAgGridFunctions = window.dashAgGridFunctions || {});

  function shown(params) {
    const data = params.data;
    if (!data) return "";
    const text = data[params.colDef.field + "_t"];
    return text === undefined || text === null ? "" : String(text);
  }
  fns.eiGridText = shown;
  fns.eiGridFilterText = shown;
  // false: the browser handles Tab, so focus leaves the grid (AG Grid's tabToNextCell)
  fns.eiGridTabOut = function () {
    return false;
  };
  fns.eiGridSuppressed = function (params) {
    return Boolean(params.data && params.data._s &&
                   (params.value === null || params.value === undefined));
  };

  function cell(text) {
    // a tab or a line break inside a cell would split it: they become spaces
    return String(text).replace(/[\t\r\n]+/g, " ");
  }

  // The view as a spreadsheet pastes it: header row, then each row after filters and sort.
  function viewText(api) {
    const cols = api.getAllDisplayedColumns();
    const lines = [cols.map((c) => cell(c.getColDef().headerName || c.getColId())).join("\t")];
    let n = 0;
    api.forEachNodeAfterFilterAndSort(function (node) {
      if (!node.data) return;
      n += 1;
      lines.push(cols.map((c) => cell(node.data[c.getColDef().field + "_t"] ?? "")).join("\t"));
    });
    return { text: lines.join("\r\n") + "\r\n", rows: n };
  }

  function fallbackCopy(text) {
    // navigator.clipboard needs a secure context (https or localhost)
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest && event.target.closest(".ei-grid-copy");
    if (!button || !window.dash_ag_grid) return;
    const name = button.getAttribute("data-grid");
    const status = document.getElementById(name + "-status");
    const words = JSON.parse((status && status.getAttribute("data-words")) || "{}");
    let api;
    try {
      api = window.dash_ag_grid.getApi({ type: "ei-grid", grid: name });
    } catch (e) {
      api = null;
    }
    if (!api) return;
    const view = viewText(api);
    const write = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(view.text).catch(() => fallbackCopy(view.text))
      : fallbackCopy(view.text);
    write.then(
      function () {
        if (status) {
          status.textContent = (words.copied || "Copied {n} rows.").replace("{n}", view.rows);
          status.setAttribute("data-copied-rows", String(view.rows));
        }
      },
      function () {
        if (status) status.textContent = words.copy_failed || "Copy failed.";
      }
    );
  });
})();
