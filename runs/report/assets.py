"""The report's style sheet and script, inlined into every report (it must work offline: no
CDN, no fonts or libraries fetched at view time). The script only adds interaction — the charts
and tables are plain HTML/SVG and read fine without it: clicking anything that carries
``data-id`` (a chart point, a table row, a lineage box) shows that individual's metrics, its edit
and its genome diff against its parent, read from the JSON block ``#evo-data``."""

CSS = """
:root { --fg: #1f2933; --muted: #616e7c; --line: #d9e2ec; --accent: #d9480f;
        --blue: #2f6fb3; --bg: #f7f9fb; --bad: #c92a2a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial,
       sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 18px 28px 8px; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 2px; font-size: 21px; }
header .sub { color: var(--muted); margin: 0; }
nav { padding: 6px 28px; background: #fff; border-bottom: 1px solid var(--line);
      position: sticky; top: 0; z-index: 2; }
nav a { margin-right: 16px; color: var(--blue); text-decoration: none; font-size: 13px; }
.layout { display: grid; grid-template-columns: minmax(0, 1fr) 380px; gap: 18px;
          padding: 16px 28px; align-items: start; }
@media (max-width: 1100px) { .layout { grid-template-columns: 1fr; } }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
          padding: 14px 18px; margin-bottom: 18px; }
section h2 { font-size: 16px; margin: 0 0 8px; }
.note { color: var(--muted); font-size: 12.5px; margin: 4px 0 8px; }
.banner { background: #fff4e6; border: 1px solid #ffc078; border-radius: 6px;
          padding: 8px 12px; margin-bottom: 10px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.card .k { color: var(--muted); font-size: 12px; }
.card .v { font-size: 17px; font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr[data-id] { cursor: pointer; }
tr[data-id]:hover { background: #f0f4f8; }
tr.sel { background: #fff0e6 !important; }
.pos { color: #2b8a3e; } .neg { color: var(--bad); }
.changes { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.bar { display: inline-block; height: 8px; background: var(--blue); border-radius: 2px;
       vertical-align: middle; margin-right: 6px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .grid { stroke: #eef2f6; }
svg.chart .axis { stroke: #9aa5b1; }
svg.chart .tick { fill: var(--muted); font-size: 11px; }
svg.chart .label { fill: var(--fg); font-size: 12px; }
svg.chart .pt { fill: var(--blue); fill-opacity: .55; cursor: pointer; }
svg.chart .pt.on-line, svg.chart .pt.front-pt { fill: var(--accent); fill-opacity: .95; }
svg.chart .pt.bad { stroke: var(--bad); stroke-width: 1.6; fill: none; }
svg.chart .pt.sel { stroke: #000; stroke-width: 2.5; fill-opacity: 1; }
svg.chart .best-line { fill: none; stroke: #2b8a3e; stroke-width: 2; }
svg.chart .descent, svg.chart .front { fill: none; stroke: var(--accent); stroke-width: 1.5;
                                       stroke-dasharray: 4 3; }
.legend span { margin-right: 14px; font-size: 12px; color: var(--muted); }
.legend i { display: inline-block; width: 18px; height: 3px; vertical-align: middle;
            margin-right: 4px; }
.lgraph { overflow: auto; max-height: calc(100vh - 90px); border: 1px solid var(--line);
          border-radius: 6px; background: #fff; }
.lgraph svg { display: block; margin: 0 auto; max-width: none; }
.lgraph g.node { cursor: pointer; }
.lgraph g.node.sel path, .lgraph g.node.sel polygon { stroke: #000; stroke-width: 3; }
.arch { overflow: auto; max-height: 720px; text-align: center; }
aside#details { position: sticky; top: 44px; max-height: calc(100vh - 60px); overflow: auto;
                background: #fff; border: 1px solid var(--line); border-radius: 8px;
                padding: 14px 16px; }
aside h3 { margin: 0 0 6px; font-size: 16px; }
aside h4 { margin: 12px 0 4px; font-size: 13px; color: var(--muted); }
ul.diff { list-style: none; padding: 0; margin: 0; font-family: ui-monospace, Menlo, Consolas,
          monospace; font-size: 12px; }
ul.diff li { padding: 2px 6px; border-radius: 3px; margin-bottom: 2px; }
ul.diff li.add { background: #e6f6e6; } ul.diff li.del { background: #fdecec; }
ul.diff li.chg { background: #fff6d5; }
.ind-link { display: inline-block; color: var(--blue); cursor: pointer; margin-right: 6px; }
pre.err { white-space: pre-wrap; background: #fdecec; padding: 6px; font-size: 12px; }
#tip { position: fixed; pointer-events: none; background: #1f2933; color: #fff;
       font-size: 12px; padding: 3px 7px; border-radius: 4px; display: none; z-index: 5; }
"""

JS = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("evo-data").textContent);
  var panel = document.getElementById("details");
  var tip = document.getElementById("tip");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function num(v) {
    if (v === null || v === undefined) { return "\u2014"; }
    if (typeof v !== "number") { return String(v); }
    if (Number.isInteger(v)) { return v.toLocaleString("en"); }
    return Math.abs(v) >= 1000 ? v.toFixed(1) : v.toPrecision(4);
  }
  function show(v) { return Array.isArray(v) ? v.join("x") : String(v); }
  function link(id) { var a = el("span", "ind-link", "#" + id); a.dataset.id = id; return a; }

  function diffList(d) {
    var ul = el("ul", "diff");
    function li(cls, text) { ul.appendChild(el("li", cls, text)); }
    d.added.forEach(function (n) { li("add", "+ node " + n.id + ": " + n.caption); });
    d.removed.forEach(function (n) { li("del", "\u2212 node " + n.id + ": " + n.caption); });
    d.changed.forEach(function (n) {
      var parts = Object.keys(n.params).map(function (k) {
        return k + " " + show(n.params[k][0]) + " \u2192 " + show(n.params[k][1]);
      });
      li("chg", "~ node " + n.id + " (" + n.op + "): " + parts.join(", "));
    });
    d.edges_added.forEach(function (e) { li("add", "+ edge " + e[0] + " \u2192 " + e[1]); });
    d.edges_removed.forEach(function (e) { li("del", "\u2212 edge " + e[0] + " \u2192 " + e[1]); });
    Object.keys(d.genes).forEach(function (k) {
      li("chg", "~ gene " + k + ": " + show(d.genes[k][0]) + " \u2192 " + show(d.genes[k][1]));
    });
    if (!ul.children.length) { li("", "no change: the genome equals its parent's"); }
    return ul;
  }

  function table(rows) {
    var t = el("table");
    rows.forEach(function (r) {
      if (r[1] === null || r[1] === undefined) { return; }
      var tr = el("tr");
      tr.appendChild(el("th", "", r[0]));
      tr.appendChild(el("td", "num", num(r[1])));
      t.appendChild(tr);
    });
    return t;
  }

  function links(title, ids, more) {
    var div = el("div");
    div.appendChild(el("h4", "", title));
    ids.forEach(function (i) { div.appendChild(link(i)); });
    if (more) { div.appendChild(el("span", "note", "\u2026 and " + more + " more")); }
    return div;
  }

  function changes(id, d) {
    var box = el("div", "changes-box");
    var parent = d.p.length ? d.p[0] : null;
    box.appendChild(el("h4", "", parent === null ? "What changed" :
                       "What changed from #" + parent));
    if (parent === null) {
      box.appendChild(el("p", "note", "An initial individual: it has no parent."));
    } else if (d.d) {
      box.appendChild(diffList(d.d));
    } else {
      box.appendChild(el("p", "note", "Diff not embedded for this individual; run: evograph diff " +
                         DATA.run_dir + " " + parent + " " + id));
    }
    return box;
  }

  function select(id) {
    id = String(id);
    var d = DATA.ind[id];
    if (!d) { return; }
    panel.textContent = "";
    panel.dataset.shown = id;
    panel.appendChild(el("h3", "", "#" + id + " \u00b7 " + d.s + (String(DATA.best) === id ?
                                                                   " \u00b7 best" : "")));
    if (d.m) { panel.appendChild(el("p", "edit", "made by " + d.m + (d.a ? "(" + d.a + ")" : ""))); }
    panel.appendChild(table([["fitness", d.f], ["params", d.n], ["FLOPs", d.fl],
                             ["batch", d.b]].concat(d.x || [])));
    panel.appendChild(changes(id, d));
    if (d.w) { panel.appendChild(el("p", "note", "weights: " + d.w)); }
    if (d.e) { panel.appendChild(el("pre", "err", d.e)); }
    if (d.p.length) { panel.appendChild(links("parents", d.p, 0)); }
    if (d.c && d.c.length) { panel.appendChild(links("children", d.c, d.cm || 0)); }
    document.querySelectorAll(".sel").forEach(function (e) { e.classList.remove("sel"); });
    document.querySelectorAll('[data-id="' + id + '"]').forEach(function (e) {
      if (!panel.contains(e)) { e.classList.add("sel"); }
    });
    var node = document.getElementById("ind_" + id);
    if (node) { node.classList.add("sel"); }
    try { history.replaceState(null, "", "#ind-" + id); } catch (err) { /* file: URLs */ }
  }

  function idOf(target) {
    var t = target.closest("[data-id], g.node[id^='ind_']");
    if (!t) { return null; }
    return t.dataset.id !== undefined ? t.dataset.id : t.id.slice(4);
  }

  document.addEventListener("click", function (ev) {
    var id = idOf(ev.target);
    if (id !== null) { select(id); }
  });
  document.addEventListener("mouseover", function (ev) {
    var t = ev.target.closest(".pt");
    if (!t) { tip.style.display = "none"; return; }
    var d = DATA.ind[t.dataset.id];
    tip.textContent = "#" + t.dataset.id + " " + (d.f !== null ? num(d.f) : d.s) +
      (d.m ? " \u00b7 " + d.m : "");
    tip.style.left = (ev.clientX + 12) + "px";
    tip.style.top = (ev.clientY + 12) + "px";
    tip.style.display = "block";
  });
  var m = /^#ind-(\d+)$/.exec(location.hash);
  if (m) { select(m[1]); } else if (DATA.best !== null) { select(DATA.best); }
  document.body.dataset.ready = "1";
})();
"""
