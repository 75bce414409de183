// report.html's behaviour: sortable and filterable tables, charts, and opening a linked cell's details.
// Without JavaScript every table still shows all rows in report order.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }

  function compare(a, b) {
    if (a === "" || b === "") return a === b ? 0 : a === "" ? 1 : -1;  // blanks last either way
    var x = Number(a), y = Number(b);
    if (!isNaN(x) && !isNaN(y)) return x - y;
    return a.localeCompare(b, undefined, {numeric: true});
  }

  function sortBy(table, th) {
    var body = table.tBodies[0];
    var index = th.cellIndex;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th[aria-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var order = compare(cellValue(r1, index), cellValue(r2, index));
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(head.cells, function (th) {
      if (th.colSpan !== 1) return;
      th.tabIndex = 0;
      th.title = th.title || "Click to sort";
      th.addEventListener("click", function () { sortBy(table, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, th); });
    });
  });

  var text = document.getElementById("filter-text");
  var rating = document.getElementById("filter-rating");
  var controls = document.getElementById("filter-controls");
  function applyFilter() {
    var words = text.value.toLowerCase().split(/\s+/).filter(Boolean);
    var wanted = rating.value;
    var shown = 0, total = 0;
    document.querySelectorAll("table.filterable tbody tr").forEach(function (row) {
      var hay = row.textContent.toLowerCase();
      var ok = words.every(function (w) { return hay.indexOf(w) >= 0; }) &&
               (!wanted || (row.getAttribute("data-rating") || "").split(" ").indexOf(wanted) >= 0);
      row.hidden = !ok;
      total += 1;
      shown += ok ? 1 : 0;
    });
    document.getElementById("filter-count").textContent = shown + " of " + total + " rows shown";
  }
  if (controls) {
    controls.hidden = false;
    text.addEventListener("input", applyFilter);
    rating.addEventListener("change", applyFilter);
  }

  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") target.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();

  if (typeof window.vegaEmbed === "function") {
    document.querySelectorAll(".chart-body[data-spec]").forEach(function (el) {
      var spec = JSON.parse(document.getElementById(el.getAttribute("data-spec")).textContent);
      el.textContent = "";
      window.vegaEmbed(el, spec, {renderer: "svg", actions: false}).catch(function (error) {
        el.textContent = "This chart could not be drawn: " + error;
        console.error(error);
      });
    });
  }
})();
