// history-collector UI: progressive enhancements only. Every page shows its content without
// this script; it adds client-side sorting of small tables (headers with data-sort) and a
// row filter (input.filter[data-table]). No inline handlers: the pages' CSP forbids them.
(function () {
  "use strict";

  function cellKey(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) return numeric ? -Infinity : "";
    if (numeric) {
      var v = cell.getAttribute("data-v");
      var n = v === null ? parseFloat(cell.textContent.replace(/,/g, "")) : parseFloat(v);
      return isNaN(n) ? -Infinity : n;
    }
    return cell.textContent.trim().toLowerCase();
  }

  function sortBy(table, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute("data-sort") === "num";
    var asc = !th.classList.contains("sorted-asc");
    var ths = th.parentNode.children;
    for (var i = 0; i < ths.length; i++) {
      ths[i].classList.remove("sorted-asc", "sorted-desc");
      if (ths[i].hasAttribute("data-sort")) ths[i].setAttribute("aria-sort", "none");
    }
    th.classList.add(asc ? "sorted-asc" : "sorted-desc");
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (r, i) { return [cellKey(r, index, numeric), i, r]; });
    keyed.sort(function (a, b) {
      var c = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1];
      return asc ? c : -c;
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (k) { frag.appendChild(k[2]); });
    body.appendChild(frag);
  }

  function setup() {
    var tables = document.querySelectorAll("table.sortable");
    Array.prototype.forEach.call(tables, function (table) {
      var ths = table.querySelectorAll("thead th[data-sort]");
      Array.prototype.forEach.call(ths, function (th) {
        th.tabIndex = 0;
        th.setAttribute("role", "button");
        th.addEventListener("click", function () { sortBy(table, th); });
        th.addEventListener("keydown", function (e) {
          if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); }
        });
      });
    });
    var filters = document.querySelectorAll("input.filter[data-table]");
    Array.prototype.forEach.call(filters, function (input) {
      var table = document.getElementById(input.getAttribute("data-table"));
      if (!table || !table.tBodies[0]) return;
      input.addEventListener("input", function () {
        var needle = input.value.trim().toLowerCase();
        Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
          r.hidden = needle !== "" && r.textContent.toLowerCase().indexOf(needle) < 0;
        });
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
