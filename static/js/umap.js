// The UMAP scatter (autointerp/templates/autointerp/umap.html): draws every point of a source on a 2D canvas
// from column arrays (index, x, y, cluster, label) fetched as JSON. Sized for large SAEs (131,072 latents and up):
// bounds by a loop, never Math.min(...xs) (a spread of that many arguments overflows the stack); typed arrays; one
// path per colour; hover through a uniform grid of buckets instead of scanning every point.
(function () {
  "use strict";
  var wrap = document.getElementById("umap-wrap");
  if (!wrap) return;
  var canvas = document.getElementById("umap");
  var tip = document.getElementById("umap-tip");
  var status = document.getElementById("umap-status");
  var featureBase = wrap.getAttribute("data-feature-base"); // ".../<model>/<source>/" ending in a slash
  var embedded = document.body.classList.contains("embed");
  var started = performance.now();

  function colour(c) { return c === null || c === undefined ? "#8a90a0" : "hsl(" + ((c * 137.508) % 360).toFixed(1) + ",65%,46%)"; }

  function setup(data) {
    var n = data.index.length;
    if (!n) { status.textContent = "No points."; return; }
    var xs = Float64Array.from(data.x), ys = Float64Array.from(data.y);
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (var i = 0; i < n; i++) {
      if (xs[i] < x0) x0 = xs[i]; if (xs[i] > x1) x1 = xs[i];
      if (ys[i] < y0) y0 = ys[i]; if (ys[i] > y1) y1 = ys[i];
    }
    var ratio = window.devicePixelRatio || 1;
    var W = canvas.clientWidth, H = canvas.clientHeight;
    canvas.width = Math.round(W * ratio); canvas.height = Math.round(H * ratio);
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    var pad = 12, r = n > 50000 ? 1.1 : n > 5000 ? 1.8 : 3;
    var px = new Float32Array(n), py = new Float32Array(n);
    var kx = (W - 2 * pad) / ((x1 - x0) || 1), ky = (H - 2 * pad) / ((y1 - y0) || 1);
    for (i = 0; i < n; i++) { px[i] = pad + (xs[i] - x0) * kx; py[i] = H - pad - (ys[i] - y0) * ky; }
    var groups = new Map();
    for (i = 0; i < n; i++) {
      var c = data.cluster[i];
      var g = groups.get(c);
      if (!g) { g = []; groups.set(c, g); }
      g.push(i);
    }
    var base = null;
    function drawAll() {
      ctx.clearRect(0, 0, W, H);
      groups.forEach(function (members, c) {
        ctx.fillStyle = colour(c);
        ctx.beginPath();
        for (var j = 0; j < members.length; j++) { var k = members[j]; ctx.rect(px[k] - r, py[k] - r, 2 * r, 2 * r); }
        ctx.fill();
      });
      base = ctx.getImageData(0, 0, canvas.width, canvas.height);
    }
    drawAll();
    // hover: buckets of CELL px; a point is found among the 9 buckets around the pointer
    var CELL = 8, cols = Math.ceil(W / CELL) + 1, rows = Math.ceil(H / CELL) + 1;
    var heads = new Int32Array(cols * rows).fill(-1), next = new Int32Array(n);
    for (i = 0; i < n; i++) {
      var b = Math.floor(py[i] / CELL) * cols + Math.floor(px[i] / CELL);
      next[i] = heads[b]; heads[b] = i;
    }
    function nearest(ev) {
      var rect = canvas.getBoundingClientRect();
      var x = (ev.clientX - rect.left) * W / rect.width, y = (ev.clientY - rect.top) * H / rect.height;
      var cx = Math.floor(x / CELL), cy = Math.floor(y / CELL), best = -1, bd = CELL * CELL;
      for (var dy = -1; dy <= 1; dy++) for (var dx = -1; dx <= 1; dx++) {
        var gx = cx + dx, gy = cy + dy;
        if (gx < 0 || gy < 0 || gx >= cols || gy >= rows) continue;
        for (var k = heads[gy * cols + gx]; k !== -1; k = next[k]) {
          var d = (px[k] - x) * (px[k] - x) + (py[k] - y) * (py[k] - y);
          if (d < bd) { bd = d; best = k; }
        }
      }
      return best;
    }
    canvas.addEventListener("mousemove", function (ev) {
      var k = nearest(ev);
      ctx.putImageData(base, 0, 0);
      if (k < 0) { tip.hidden = true; canvas.style.cursor = "default"; return; }
      ctx.beginPath(); ctx.arc(px[k], py[k], Math.max(4, r * 3), 0, 2 * Math.PI);
      ctx.strokeStyle = "#1d2333"; ctx.lineWidth = 2; ctx.stroke();
      canvas.style.cursor = "pointer";
      tip.textContent = "#" + data.index[k] + (data.cluster[k] === null ? "" : " (cluster " + data.cluster[k] + ")") + ": " + (data.label[k] || "no explanation yet");
      tip.style.left = Math.min(ev.offsetX + 12, W - 200) + "px"; tip.style.top = (ev.offsetY + 12) + "px"; tip.hidden = false;
    });
    canvas.addEventListener("mouseleave", function () { tip.hidden = true; ctx.putImageData(base, 0, 0); });
    canvas.addEventListener("click", function (ev) {
      var k = nearest(ev);
      if (k < 0) return;
      var url = featureBase + data.index[k] + "/";
      if (embedded) window.open(url, "_blank", "noopener"); else window.location.href = url;
    });
    var ms = Math.round(performance.now() - started);
    status.textContent = n.toLocaleString() + " points drawn in " + ms + " ms.";
    // read by tests and the console: how many, how long, and where a feature's point is (CSS px in the canvas)
    window.umapDrawn = {
      points: n, ms: ms,
      at: function (index) { var k = data.index.indexOf(index); return k < 0 ? null : { x: px[k], y: py[k] }; },
    };
    canvas.setAttribute("data-drawn", String(n));
  }

  fetch(wrap.getAttribute("data-points-url"), { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(setup)
    .catch(function (err) { status.textContent = "Could not draw the map: " + err.message; status.classList.add("error"); });
})();
