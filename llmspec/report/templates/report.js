// report.html's behaviour: sortable and filterable tables, charts, and opening a linked cell's details.
// Without JavaScript every table still shows all rows in report order.
(function () {
  "use strict";

  // Every table's rows live in a model as HTML strings: those in the page plus, for a large table,
  // the rest, packed by the report (html.py `_body`: deflate, base64, JSON) in a script element
  // inside its tbody. Sorting and filtering work on all rows; a large table shows PAGE at a time.
  var PAGE = 100;
  var PACKED = 'script[type="application/x-llmspec-rows"]';
  var ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": "\"", "&#x27;": "'", "&#39;": "'"};

  function decode(text) {
    return text.replace(/&(amp|lt|gt|quot|#x27|#39);/g, function (e) { return ENTITIES[e]; });
  }
  function plain(html) { return decode(html.replace(/<[^>]*>/g, "")).replace(/\s+/g, " ").trim(); }

  function cellValues(html) {
    var values = [], re = /<td([^>]*)>([\s\S]*?)<\/td>/g, m;
    while ((m = re.exec(html))) {
      var sort = /data-sort="([^"]*)"/.exec(m[1]);
      values.push(sort ? decode(sort[1]) : plain(m[2]));
    }
    return values;
  }

  function unpack(text) {
    var bytes = Uint8Array.from(atob(text.trim()), function (c) { return c.charCodeAt(0); });
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).text().then(JSON.parse);
  }

  function Model(table) {
    this.table = table;
    this.body = table.tBodies[0];
    this.rows = [];
    var more = false, self = this;
    Array.prototype.forEach.call(this.body.rows, function (tr) {
      if (tr.classList.contains("more")) more = true; else self.rows.push(tr.outerHTML);
    });
    this.order = this.rows.map(function (_, i) { return i; });
    this.shown = this.order;
    this.page = 0;
    this.values = [];  // per row, its cells' sort values, computed when first sorted
    this.hay = [];  // per row, its text in lower case, computed when first filtered
    var packed = this.body.querySelector(PACKED);
    this.loaded = !packed;
    this.ready = !packed ? Promise.resolve() : unpack(packed.textContent).then(function (rest) {
      self.loaded = true;
      self.rows = self.rows.concat(rest);
      self.order = self.rows.map(function (_, i) { return i; });
      self.shown = self.order;
      self.pager();
      self.render();
    }).catch(function (error) {
      console.error("the rest of this table could not be unpacked: " + error);
    });
    if (packed || more) this.pager();
  }

  Model.prototype.pager = function () {
    if (this.nav) return this.update();
    var nav = this.nav = document.createElement("div"), self = this;
    nav.className = "pager";
    nav.innerHTML = '<button type="button" data-step="-1">‹ Previous</button> <span class="muted"></span> ' +
                    '<button type="button" data-step="1">Next ›</button>';
    nav.addEventListener("click", function (e) {
      var step = Number(e.target.getAttribute("data-step"));
      if (!step) return;
      self.page = Math.max(0, Math.min(self.pages() - 1, self.page + step));
      self.render();
    });
    this.table.parentNode.insertBefore(nav, this.table.nextSibling);
    this.update();
  };
  Model.prototype.pages = function () { return Math.max(1, Math.ceil(this.shown.length / PAGE)); };
  Model.prototype.update = function () {
    if (!this.nav) return;
    var from = this.shown.length ? this.page * PAGE + 1 : 0, to = Math.min(this.shown.length, (this.page + 1) * PAGE);
    this.nav.querySelector("span").textContent = "rows " + from.toLocaleString() + "–" + to.toLocaleString() +
      " of " + this.shown.length.toLocaleString() +
      (this.shown.length < this.rows.length ? " (filtered from " + this.rows.length.toLocaleString() + ")" : "");
    this.nav.querySelector('[data-step="-1"]').disabled = this.page === 0;
    this.nav.querySelector('[data-step="1"]').disabled = this.page >= this.pages() - 1;
  };
  Model.prototype.render = function () {
    var rows = this.rows, start = this.page * PAGE;
    var ids = this.nav ? this.shown.slice(start, start + PAGE) : this.shown;
    this.body.innerHTML = ids.map(function (i) { return rows[i]; }).join("");
    this.update();
  };
  Model.prototype.value = function (i, index) {
    if (!this.values[i]) this.values[i] = cellValues(this.rows[i]);
    var v = this.values[i][index];
    return v === undefined ? "" : v;
  };
  Model.prototype.matches = function (i, words, wanted) {
    if (this.hay[i] === undefined) this.hay[i] = plain(this.rows[i]).toLowerCase();
    var rating = /^<tr[^>]*data-rating="([^"]*)"/.exec(this.rows[i]);
    return words.every(function (w) { return this.hay[i].indexOf(w) >= 0; }, this) &&
           (!wanted || (rating ? decode(rating[1]) : "").split(" ").indexOf(wanted) >= 0);
  };

  function compare(a, b) {
    if (a === "" || b === "") return a === b ? 0 : a === "" ? 1 : -1;  // blanks last either way
    var x = Number(a), y = Number(b);
    if (!isNaN(x) && !isNaN(y)) return x - y;
    return a.localeCompare(b, undefined, {numeric: true});
  }

  var models = [];
  var filtered = [];
  function whenLoaded(some, then) {  // at once when nothing is left to unpack: a click sorts before it returns
    if (some.every(function (m) { return m.loaded; })) then();
    else Promise.all(some.map(function (m) { return m.ready; })).then(then);
  }
  function sortBy(model, th) {
    var index = th.cellIndex;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    model.table.querySelectorAll("thead th[aria-sort]").forEach(function (o) { o.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    whenLoaded([model], function () {
      model.order = model.order.slice().sort(function (r1, r2) {
        var order = compare(model.value(r1, index), model.value(r2, index));
        return ascending ? order : -order;
      });
      if (filtered.indexOf(model) >= 0) applyFilter(); else { model.shown = model.order; model.page = 0; model.render(); }
    });
  }

  document.querySelectorAll("table").forEach(function (table) {
    var sortable = table.classList.contains("sortable"), filterable = table.classList.contains("filterable");
    if (!table.tBodies[0] || !(sortable || filterable || table.tBodies[0].querySelector(PACKED))) return;
    var model = new Model(table);
    models.push(model);
    if (filterable) filtered.push(model);
    if (!sortable) return;
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(head.cells, function (th) {
      if (th.colSpan !== 1) return;
      th.tabIndex = 0;
      th.title = th.title || "Click to sort";
      th.addEventListener("click", function () { sortBy(model, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(model, th); });
    });
  });

  var text = document.getElementById("filter-text");
  var rating = document.getElementById("filter-rating");
  var controls = document.getElementById("filter-controls");
  function applyFilter() {
    var words = text.value.toLowerCase().split(/\s+/).filter(Boolean);
    var wanted = rating.value;
    var shown = 0, total = 0;
    filtered.forEach(function (model) {
      model.shown = model.order.filter(function (i) { return model.matches(i, words, wanted); });
      model.page = 0;
      model.render();
      total += model.rows.length;
      shown += model.shown.length;
    });
    document.getElementById("filter-count").textContent = shown + " of " + total + " rows shown";
  }
  if (controls) {
    controls.hidden = false;
    text.addEventListener("input", function () { whenLoaded(filtered, applyFilter); });
    rating.addEventListener("change", function () { whenLoaded(filtered, applyFilter); });
  }
  window.llmspecTables = models;  // for tests and the curious: each table's model

  // At fleet scale each host's card and overall pick are packed (html.py `_host_details`) and
  // unpacked the first time a host is chosen. window.llmspecShowHost(id) settles once it shows.
  var pick = document.getElementById("host-pick"), hostDetails = null;
  function showHost(id) {
    var el = document.getElementById("host-detail");
    if (!id) { el.innerHTML = ""; return Promise.resolve(); }
    hostDetails = hostDetails || unpack(document.getElementById("host-details").textContent);
    return hostDetails.then(function (byHost) {
      el.innerHTML = byHost[id] || "";
    }).catch(function (error) {
      el.textContent = "This host's detail could not be unpacked: " + error;
      console.error(error);
    });
  }
  if (pick) {
    pick.addEventListener("change", function () { showHost(pick.value); });
    window.llmspecShowHost = function (id) { pick.value = id; return showHost(id); };
  }

  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") target.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();

  // Charts draw one at a time once the page has loaded, so the summary, the heat map and the tables
  // are there and usable first: a 10,000-result report's charts take seconds to draw. A large
  // chart's spec comes packed like a large table's rows. window.llmspecCharts settles when all are drawn.
  function chartSpec(script) {
    if (script.type === "application/x-llmspec-packed") return unpack(script.textContent);
    return Promise.resolve(JSON.parse(script.textContent));
  }
  function drawCharts(done) {
    var pending = Array.prototype.slice.call(document.querySelectorAll(".chart-body[data-spec]"));
    (function next() {
      var el = pending.shift();
      if (!el) return done();
      chartSpec(document.getElementById(el.getAttribute("data-spec"))).then(function (spec) {
        el.textContent = "";
        return window.vegaEmbed(el, spec, {renderer: "svg", actions: false});
      }).catch(function (error) {
        el.textContent = "This chart could not be drawn: " + error;
        console.error(error);
      }).then(function () { setTimeout(next, 0); });
    })();
  }
  window.llmspecCharts = new Promise(function (done) {
    if (typeof window.vegaEmbed !== "function") return done();
    if (document.readyState === "complete") drawCharts(done);
    else window.addEventListener("load", function () { drawCharts(done); });
  });
})();
