// /sae-bench's scatter plot: L0 (x, log by default) against a fidelity metric (y), one colour per architecture,
// drawn as plain SVG from the page's JSON (#sae-bench-data). A point links to its source page.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var COLOURS = ["#4f5bd5", "#d5534f", "#2f9e6e", "#c98a1b", "#8a4fd5", "#1b9ec9", "#7a7f8c"];
  var W = 720, H = 380, M = { l: 64, r: 16, t: 14, b: 48 };

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function extent(values) {
    var lo = Infinity, hi = -Infinity;
    values.forEach(function (v) { if (v < lo) lo = v; if (v > hi) hi = v; });  // no Math.min(...) on big arrays
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    var pad = (hi - lo) * 0.06;
    return [lo - pad, hi + pad];
  }

  function ticks(lo, hi, n) {
    var raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
    var step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(6));
    return out;
  }

  function draw(svg, data) {
    var pts = data.points.filter(function (p) { return isFinite(p.x) && isFinite(p.y) && (!data.x.log || p.x > 0); });
    var fx = data.x.log ? Math.log10 : function (v) { return v; };
    var xs = extent(pts.map(function (p) { return fx(p.x); }));
    var ys = extent(pts.map(function (p) { return p.y; }));
    var sx = function (v) { return M.l + (fx(v) - xs[0]) / (xs[1] - xs[0]) * (W - M.l - M.r); };
    var sy = function (v) { return H - M.b - (v - ys[0]) / (ys[1] - ys[0]) * (H - M.t - M.b); };
    el("rect", { x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "#fbfcfe", stroke: "#e3e6ef" }, svg);
    var xt = ticks(xs[0], xs[1], 6);
    xt.forEach(function (t) {
      var x = M.l + (t - xs[0]) / (xs[1] - xs[0]) * (W - M.l - M.r);
      el("line", { x1: x, x2: x, y1: M.t, y2: H - M.b, stroke: "#eceef5" }, svg);
      el("text", { x: x, y: H - M.b + 16, "text-anchor": "middle", "font-size": 11, fill: "#6b7280" }, svg).textContent = data.x.log ? String(+Math.pow(10, t).toPrecision(2)) : String(t);
    });
    ticks(ys[0], ys[1], 6).forEach(function (t) {
      el("line", { x1: M.l, x2: W - M.r, y1: sy(t), y2: sy(t), stroke: "#eceef5" }, svg);
      el("text", { x: M.l - 6, y: sy(t) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7280" }, svg).textContent = String(t);
    });
    el("text", { x: (M.l + W - M.r) / 2, y: H - 10, "text-anchor": "middle", "font-size": 12 }, svg).textContent = data.x.title + (data.x.log ? " (log)" : "");
    el("text", { x: 14, y: (M.t + H - M.b) / 2, "text-anchor": "middle", "font-size": 12, transform: "rotate(-90 14 " + (M.t + H - M.b) / 2 + ")" }, svg).textContent = data.y.title;
    var groups = [];
    pts.forEach(function (p) { if (groups.indexOf(p.group) < 0) groups.push(p.group); });
    pts.forEach(function (p) {
      var a = el("a", { href: p.url }, svg);
      var c = el("circle", { cx: sx(p.x), cy: sy(p.y), r: 6, fill: COLOURS[groups.indexOf(p.group) % COLOURS.length], "fill-opacity": 0.85, stroke: "#fff", "class": "point", "data-label": p.label }, a);
      el("title", {}, c).textContent = p.label + "\n" + data.x.title + ": " + p.x + "\n" + data.y.title + ": " + p.y;
    });
    var legend = document.getElementById("sae-bench-legend");
    if (legend) groups.forEach(function (g, i) {
      var chip = document.createElement("span");
      chip.className = "chip";
      chip.style.borderColor = COLOURS[i % COLOURS.length];
      chip.textContent = "● " + g;
      chip.style.color = COLOURS[i % COLOURS.length];
      legend.appendChild(chip);
    });
    svg.setAttribute("data-drawn", String(pts.length));
  }

  var svg = document.getElementById("sae-bench-plot");
  var source = document.getElementById("sae-bench-data");
  if (svg && source) draw(svg, JSON.parse(source.textContent));
})();
