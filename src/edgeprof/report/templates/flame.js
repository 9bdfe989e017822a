// edgeprof flame graphs: click to zoom, search with the matched share, hover details.
// Works on every <svg class="edgeprof-flame"> of the document: a standalone .svg file,
// the .html page of `edgeprof flame`, and the HTML report (several graphs on one page).
// Frames are <g class="f" data-x data-w data-d data-n data-loc> in sample units; the
// boxes are laid out again from those on every zoom. No network, no inline handlers.
(function () {
  "use strict";
  function num(el, k) { return parseFloat(el.getAttribute("data-" + k)); }

  function setup(svg) {
    var total = num(svg, "total") || 1;
    var width = num(svg, "width");
    var pad = num(svg, "pad");
    var fs = num(svg, "fs");
    var inner = width - 2 * pad;
    var frames = Array.prototype.slice.call(svg.querySelectorAll("g.f")).map(function (g) {
      return {
        g: g, rect: g.querySelector("rect"), text: g.querySelector("text"),
        x: num(g, "x"), w: num(g, "w"), d: num(g, "d"),
        name: g.getAttribute("data-n"), loc: g.getAttribute("data-loc"),
        fill: g.querySelector("rect").getAttribute("fill")
      };
    });
    var details = svg.querySelector("text.details");
    var reset = svg.querySelector("text.reset");
    var searchBtn = svg.querySelector("text.search");
    var matchedSvg = svg.querySelector("text.matched");
    var id = svg.getAttribute("id");
    var box = null, matchedHtml = null;
    var inputs = document.querySelectorAll("input.flame-search");
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].getAttribute("data-for") === id) { box = inputs[i]; }
    }
    var spans = document.querySelectorAll("span.flame-matched");
    for (var j = 0; j < spans.length; j++) {
      if (spans[j].getAttribute("data-for") === id) { matchedHtml = spans[j]; }
    }
    if (box && searchBtn) { searchBtn.style.display = "none"; }
    var zoom = null; // the frame zoomed into, or null
    var term = "";

    function label(name, w) {
      var chars = Math.floor(w / (fs * 0.59));
      if (chars < 3) { return ""; }
      return name.length <= chars ? name : name.slice(0, chars - 2) + "..";
    }

    function pct(v) { return (100 * v / total).toFixed(2) + " %"; }

    function layout() {
      var zx = zoom ? zoom.x : 0, zw = zoom ? zoom.w : total;
      frames.forEach(function (f) {
        var a = Math.max(f.x, zx), b = Math.min(f.x + f.w, zx + zw);
        var shown = b > a && (!zoom || f.d >= zoom.d || (f.x <= zx && f.x + f.w >= zx + zw));
        if (!shown) { f.g.setAttribute("class", "f hide"); return; }
        f.g.setAttribute("class", "f");
        var px = pad + inner * (a - zx) / zw, pw = inner * (b - a) / zw;
        f.rect.setAttribute("x", px.toFixed(2));
        f.rect.setAttribute("width", pw.toFixed(2));
        f.rect.setAttribute("opacity", zoom && f.d < zoom.d ? "0.5" : "1");
        f.text.setAttribute("x", (px + 3).toFixed(2));
        f.text.textContent = label(f.name, pw);
      });
      if (reset) { reset.setAttribute("class", zoom ? "ctl reset" : "ctl reset hide"); }
    }

    function show(text) {
      if (details) { details.textContent = text; }
    }

    function search(t) {
      term = t || "";
      var re = null;
      if (term) {
        try { re = new RegExp(term); } catch (e) {
          re = new RegExp(term.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
        }
      }
      var hits = [];
      frames.forEach(function (f) {
        var hit = re !== null && f.d > 0 && re.test(f.name + " " + f.loc);
        f.rect.setAttribute("fill", hit ? "rgb(230,0,230)" : f.fill);
        if (hit) { hits.push(f); }
      });
      // matched share: the union of the matching boxes (a match inside a match counts once)
      hits.sort(function (a, b) { return a.x - b.x || a.d - b.d; });
      var covered = 0, end = -1;
      hits.forEach(function (f) {
        var a = Math.max(f.x, end), b = f.x + f.w;
        if (b > a) { covered += b - a; end = b; }
      });
      var msg = re === null ? "" : "Matched: " + pct(covered) + " (" + hits.length + " boxes)";
      if (matchedSvg) { matchedSvg.textContent = box ? "" : msg; }
      if (matchedHtml) { matchedHtml.textContent = msg; }
      if (searchBtn && !box) { searchBtn.textContent = re === null ? "Search" : "Clear search"; }
      return covered;
    }

    frames.forEach(function (f) {
      f.g.addEventListener("click", function () {
        zoom = f.d === 0 ? null : f;
        layout();
      });
      f.g.addEventListener("mouseover", function () {
        show("Function: " + f.name + (f.loc ? " (" + f.loc + ")" : "") + ", " +
             f.w.toLocaleString() + " samples, " + pct(f.w));
      });
      f.g.addEventListener("mouseout", function () { show(" "); });
    });
    if (reset) { reset.addEventListener("click", function () { zoom = null; layout(); }); }
    if (searchBtn) {
      searchBtn.addEventListener("click", function () {
        if (term) { search(""); return; }
        var t = window.prompt("Search for (regular expression):", "");
        if (t) { search(t); }
      });
    }
    if (box) { box.addEventListener("input", function () { search(box.value); }); }
    svg.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { zoom = null; layout(); }
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && zoom) { zoom = null; layout(); }
    });
    svg.edgeprofFlame = {
      search: search,
      zoom: function (n) {
        for (var k = 0; k < frames.length; k++) {
          if (frames[k].name === n) { zoom = frames[k].d === 0 ? null : frames[k]; break; }
        }
        layout();
      },
      reset: function () { zoom = null; layout(); }
    };
  }

  var all = document.querySelectorAll("svg.edgeprof-flame");
  for (var i = 0; i < all.length; i++) { setup(all[i]); }
})();
