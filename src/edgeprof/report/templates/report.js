/* edgeprof report: draws the charts from the JSON data element with uPlot.
 * Every string from the data is set with textContent (never parsed as HTML). */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("edgeprof-data").textContent);
  var KIND_COLORS = { start: "#2e7d32", exit: "#455a64", bad: "#c62828", warn: "#ef6c00", app: "#6a1b9a", note: "#8a96a3" };
  var BIN = ["B", "KiB", "MiB", "GiB", "TiB"];

  function trim(s) {
    return s.indexOf(".") >= 0 && s.indexOf("e") < 0 ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
  }
  function num(v, digits) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e15 || a < 1e-6) return v.toExponential(digits - 1);
    if (a >= Math.pow(10, digits)) return Math.round(v).toLocaleString("en-US");
    return trim(v.toPrecision(digits));
  }
  function bytes(v, digits) {
    var i = 0, a = Math.abs(v);
    while (a >= 1024 && i < BIN.length - 1) { a /= 1024; v /= 1024; i++; }
    return (i === 0 ? num(v, digits) : trim(v.toFixed(digits > 4 ? 3 : 1))) + " " + BIN[i];
  }
  /* short: axis ticks; long: the hover legend (exact sample values, unit included) */
  function fmt(v, unit, long) {
    if (v == null || isNaN(v)) return "--";
    var d = long ? 7 : 3;
    switch (unit) {
      case "B": return long ? bytes(v, 6) + " (" + Math.round(v).toLocaleString("en-US") + " B)" : bytes(v, 3);
      case "B/s": return bytes(v, long ? 6 : 3) + "/s";
      case "%": return num(v, long ? 6 : 3) + " %";
      case "s/s": return num(v * 100, long ? 6 : 3) + " %";
      case "ms": return num(v, d) + " ms";
      case "s": return num(v, d) + " s";
      case "1/s": return num(v, d) + " /s";
      case "Hz": return num(v, d) + " Hz";
      case "W": return num(v, d) + " W";
      case "degC": return num(v, d) + " °C";
      case null: case undefined: case "": case "1": return num(v, d);
      default: return num(v, d) + " " + unit;
    }
  }
  var BYTE_INCRS = [];
  for (var k = 0; k < 6; k++) {
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].forEach(function (m) { BYTE_INCRS.push(m * Math.pow(1024, k)); });
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  /* vertical event markers, with a tooltip listing those under the cursor */
  function markersPlugin(evs) {
    var tip;
    return {
      hooks: {
        ready: [function (u) {
          tip = el("div", "ep-tip");
          tip.style.display = "none";
          u.over.appendChild(tip);
        }],
        draw: [function (u) {
          if (!evs.length) return;
          var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height, l = u.bbox.left, r = l + u.bbox.width;
          ctx.save();
          ctx.lineWidth = Math.max(1, devicePixelRatio);
          ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
          for (var i = 0; i < evs.length; i++) {
            var x = Math.round(u.valToPos(evs[i][0], "x", true)) + 0.5;
            if (x < l || x > r) continue;
            ctx.strokeStyle = KIND_COLORS[evs[i][1]] || "#888";
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + h);
            ctx.stroke();
          }
          ctx.restore();
        }],
        setCursor: [function (u) {
          if (!tip) return;
          var left = u.cursor.left;
          if (left == null || left < 0 || !evs.length) { tip.style.display = "none"; return; }
          var hits = [];
          for (var i = 0; i < evs.length && hits.length < 8; i++) {
            if (Math.abs(u.valToPos(evs[i][0], "x") - left) <= 4) hits.push(evs[i]);
          }
          if (!hits.length) { tip.style.display = "none"; return; }
          tip.textContent = "";
          hits.forEach(function (ev) {
            var row = el("div");
            row.appendChild(el("b", null, ev[4] + " · " + ev[2] + " at " + ev[0].toFixed(3) + " s"));
            row.appendChild(el("div", null, ev[3]));
            tip.appendChild(row);
          });
          tip.style.display = "block";
          var w = u.over.clientWidth;
          tip.style.left = Math.min(left + 10, Math.max(0, w - 300)) + "px";
          tip.style.top = "4px";
        }]
      }
    };
  }

  /* hover: each series shows its own sample nearest to the cursor (targets sampled at
   * other times have gaps in the joined table), unless that is farther than its spacing */
  function makeDataIdx(steps) {
    return function (u, si, hi) {
      var ys = u.data[si];
      if (si === 0 || ys[hi] != null) return hi;
      var xs = u.data[0], x = xs[hi], maxd = steps[si] || 0;
      for (var lo = hi - 1, up = hi + 1; lo >= 0 || up < xs.length; lo--, up++) {
        var okLo = lo >= 0 && x - xs[lo] <= maxd, okUp = up < xs.length && xs[up] - x <= maxd;
        if (!okLo && !okUp) break;
        if (okLo && ys[lo] != null) return lo;
        if (okUp && ys[up] != null) return up;
      }
      return hi;
    };
  }

  var charts = [];
  var pending = 0;
  var t0 = performance.now();

  function drawn() {
    pending--;
    if (pending === 0) {
      var now = performance.now();
      window.__edgeprofRender = { ms: now, initMs: now - t0, charts: charts.length };
      if (performance.mark) performance.mark("edgeprof-rendered");
      document.documentElement.setAttribute("data-rendered", "true");
    }
  }

  function build(ch, box) {
    var wrap = el("div", "chart");
    box.appendChild(wrap);
    var steps = [0];
    ch.tables.forEach(function (t) {
      var n = t.x.length, step = n > 1 ? 3 * (t.x[n - 1] - t.x[0]) / (n - 1) : 0;
      t.y.forEach(function () { steps.push(step); });
    });
    var evs = [];
    ch.targets.forEach(function (key) {
      (data.events[key] || []).forEach(function (ev) { evs.push([ev[0], ev[1], ev[2], ev[3], data.targets[key] || key]); });
    });
    /* the time axis spans the target's start (0 s) and every event, not only the samples */
    var tables = ch.tables.map(function (t) { return [t.x].concat(t.y); });
    tables.push([[0].concat(evs.map(function (ev) { return ev[0]; }))]);
    var aligned = uPlot.join(tables);
    var unit = ch.unit;
    var first = true;
    var opts = {
      title: ch.title,
      width: Math.max(320, box.clientWidth || 900),
      height: 260,
      scales: {
        x: { time: false },
        y: { range: function (u, min, max) {
          if (min == null || max == null) return [0, 1];
          var lo = Math.min(0, min), hi = max > lo ? max + (max - lo) * 0.05 : lo + 1;
          return [lo, hi];
        } }
      },
      series: [{ label: "time", value: function (u, v) { return v == null ? "--" : v.toFixed(3) + " s"; } }].concat(
        ch.series.map(function (s) {
          return {
            label: s.label,
            stroke: s.color,
            width: s.width,
            dash: s.dash || undefined,
            value: function (u, v) { return fmt(v, unit, true); }
          };
        })),
      axes: [
        { values: function (u, vals) { return vals.map(function (v) { return num(v, 4) + " s"; }); } },
        { size: 78, values: function (u, vals) { return vals.map(function (v) { return fmt(v, unit, false); }); } }
      ],
      cursor: { sync: { key: "g-" + ch.g }, dataIdx: makeDataIdx(steps) },
      legend: { live: true },
      plugins: [markersPlugin(evs)],
      hooks: { draw: [function () { if (first) { first = false; drawn(); } }] }
    };
    if (unit === "B" || unit === "B/s") opts.axes[1].incrs = BYTE_INCRS;
    pending++;
    var u = new uPlot(opts, aligned, wrap);
    charts.push({ u: u, box: box });
    var cap = ch.raw > ch.shown
      ? "showing " + ch.shown.toLocaleString("en-US") + " of " + ch.raw.toLocaleString("en-US") +
        " samples (MinMaxLTTB keeps the peaks; every sample is in the database)"
      : ch.raw.toLocaleString("en-US") + " samples, all shown";
    wrap.appendChild(el("div", "caption", cap + " · drag to zoom, double-click to reset" +
      (evs.length ? " · dashed vertical lines: events (hover for details)" : "")));
  }

  var boxes = {};
  Array.prototype.forEach.call(document.querySelectorAll(".charts[data-group]"), function (b) {
    boxes[b.getAttribute("data-group")] = b;
  });
  pending++;  /* held until every chart is created */
  data.charts.forEach(function (ch) {
    var box = boxes[ch.g];
    if (box) build(ch, box);
  });
  drawn();

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      charts.forEach(function (c) { c.u.setSize({ width: Math.max(320, c.box.clientWidth), height: 260 }); });
    }, 100);
  });
})();
