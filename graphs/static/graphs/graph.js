// The attribution-graph viewer (graphs/templates/graphs/graph.html) and the generate form (list.html).
// Links are drawn on a canvas (thousands of lines), nodes in an SVG on top (hover, click). State lives in the
// URL as Neuronpedia names it: pinnedIds (comma-separated), supernodes (JSON [[label, id, ...]]), clickedId,
// clerps (JSON [[id, label]]), pruningThreshold.
(function () {
  "use strict";

  function csrf() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf(), Accept: "application/json"},
      body: JSON.stringify(body),
    }).then(r => r.json().then(data => (r.ok ? data : Promise.reject(new Error(data.message || r.status)))));
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // --- generate form (list page) ---
  const form = document.getElementById("graph-generate");
  if (form) {
    form.addEventListener("submit", ev => {
      ev.preventDefault();
      const f = new FormData(form);
      // wait: false — answered at once (202); the progress box follows the job live
      const body = {modelId: form.dataset.modelId, prompt: f.get("prompt"), slug: f.get("slug") || "", wait: false};
      ["nodeThreshold", "edgeThreshold", "maxFeatureNodes"].forEach(k => { if (f.get(k)) body[k] = Number(f.get(k)); });
      if (f.get("visibility")) body.visibility = f.get("visibility");
      const err = form.querySelector(".graph-error");
      err.hidden = true;
      post("/api/graph/generate", body).then(res => {
        const box = form.querySelector(".graph-progress");
        box.hidden = false;
        box.dataset.jobId = res.jobId;
        box.addEventListener("job:finished", e => {
          if (e.detail.status === "SUCCEEDED") window.location.href = res.url;
        });
        window.memicosJobs.watch(box);
      }).catch(e => { err.textContent = e.message; err.hidden = false; });
    });
  }

  const metaEl = document.getElementById("graph-meta");
  if (!metaEl) return;
  const meta = JSON.parse(metaEl.textContent);
  const initialSub = JSON.parse(document.getElementById("graph-subgraph-initial").textContent);
  const pending = document.getElementById("graph-pending");
  if (pending) pending.addEventListener("job:finished", () => window.location.reload());
  if (meta.status !== "READY") return;

  // --- state ---
  const params = new URLSearchParams(window.location.search);
  function jsonParam(name, fallback) {
    try { const v = params.get(name); return v ? JSON.parse(v) : fallback; } catch (e) { return fallback; }
  }
  const state = {
    pinned: (params.get("pinnedIds") || "").split(",").filter(Boolean),
    supernodes: jsonParam("supernodes", []),
    clicked: params.get("clickedId") || "",
    clerps: jsonParam("clerps", []),
    threshold: parseFloat(params.get("pruningThreshold") || "") || null,
  };
  if (initialSub) {
    state.pinned = initialSub.pinnedIds || [];
    state.supernodes = initialSub.supernodes || [];
    state.clerps = initialSub.clerps || [];
    if (initialSub.pruningThreshold) state.threshold = initialSub.pruningThreshold;
  }
  function writeUrl() {
    const p = new URLSearchParams(window.location.search);
    p.delete("subgraph");
    const set = (k, v) => (v ? p.set(k, v) : p.delete(k));
    set("pinnedIds", state.pinned.join(","));
    set("supernodes", state.supernodes.length ? JSON.stringify(state.supernodes) : "");
    set("clickedId", state.clicked);
    set("clerps", state.clerps.length ? JSON.stringify(state.clerps) : "");
    set("pruningThreshold", state.threshold ? String(state.threshold) : "");
    history.replaceState(null, "", window.location.pathname + "?" + p.toString());
    writeEmbed();
  }
  // The Embed button's snippet (templates/_embed_button.html): this URL's state with embed=true.
  function writeEmbed() {
    const box = document.querySelector(".embed-share");
    if (!box) return;
    const p = new URLSearchParams(window.location.search);
    p.set("embed", "true");
    box.setAttribute("data-embed-base", window.location.origin + window.location.pathname + "?" + p.toString());
    if (window.memicosEmbedSnippet) window.memicosEmbedSnippet(box);
  }

  const wrap = document.getElementById("graph-wrap");
  const canvas = document.getElementById("graph-links");
  const svg = document.getElementById("graph-svg");
  const tip = document.getElementById("graph-tip");
  const detail = document.getElementById("graph-detail");
  const slider = document.getElementById("graph-threshold");
  const sliderOut = document.getElementById("graph-threshold-out");
  const NS = "http://www.w3.org/2000/svg";
  let data = null, byId = {}, linksBySource = {}, linksByTarget = {}, pos = {}, visible = new Set();

  fetch(meta.url, {credentials: "same-origin"}).then(r => r.json()).then(d => {
    performance.mark("graph:data");  // fetched and parsed: what is left is layout and drawing (bench/graph.py)
    data = d;
    const md = d.metadata || {};
    if (!state.threshold) state.threshold = md.node_threshold || (md.pruning_settings || {}).node_threshold || 0.8;
    slider.value = state.threshold;
    d.nodes.forEach(n => { byId[n.node_id] = n; });
    const clerps = Object.fromEntries(state.clerps);
    d.nodes.forEach(n => { if (clerps[n.node_id] !== undefined) n.clerp = clerps[n.node_id]; });
    d.links.forEach(l => {
      (linksBySource[l.source] = linksBySource[l.source] || []).push(l);
      (linksByTarget[l.target] = linksByTarget[l.target] || []).push(l);
    });
    draw();
    renderSubgraph();
    if (state.clicked && byId[state.clicked]) showDetail(byId[state.clicked]);
    window.memicosGraph = {ready: true, data: d};
    performance.mark("graph:drawn");
    document.body.dataset.graphDrawn = "1";
    document.dispatchEvent(new CustomEvent("graph:drawn"));
  });

  function layerRow(n, nLayers) {
    if (n.feature_type === "embedding") return 0;
    if (n.feature_type === "logit") return nLayers + 1;
    return parseInt(n.layer, 10) + 1;
  }
  function isAlwaysShown(n) {
    return n.feature_type === "embedding" || n.feature_type === "logit" || state.pinned.includes(n.node_id) || n.node_id === state.clicked;
  }

  function draw() {
    const md = data.metadata;
    const nTok = md.prompt_tokens.length;
    let nLayers = 0;
    data.nodes.forEach(n => { if (/^\d+$/.test(String(n.layer)) && n.feature_type !== "logit") nLayers = Math.max(nLayers, parseInt(n.layer, 10) + 1); });
    visible = new Set(data.nodes.filter(n => isAlwaysShown(n) || n.influence == null || n.influence <= state.threshold).map(n => n.node_id));
    sliderOut.textContent = Number(state.threshold).toFixed(2);
    // rows shrink (to 16 px) so a deep model's layers fit the pane's height instead of scrolling out of view
    const rowH = Math.max(16, Math.min(46, ((wrap.clientHeight || 600) - 40) / (nLayers + 2)));
    // columns of at least 40 px: a 16-token prompt (its logits in the last column) still fits a 760-px pane
    const W = Math.max(wrap.clientWidth || 800, 40 * nTok + 60), H = (nLayers + 2) * rowH + 40;
    const colW = (W - 60) / nTok;
    // nodes of one cell (position × layer) side by side
    const cells = {};
    data.nodes.forEach(n => {
      if (!visible.has(n.node_id)) return;
      const key = n.ctx_idx + ":" + layerRow(n, nLayers);
      (cells[key] = cells[key] || []).push(n);
    });
    pos = {};
    Object.values(cells).forEach(list => {
      list.forEach((n, i) => {
        const row = layerRow(n, nLayers);
        const x = 50 + n.ctx_idx * colW + (colW * (i + 1)) / (list.length + 1);
        pos[n.node_id] = [x, H - 30 - row * rowH];
      });
    });
    canvas.width = W; canvas.height = H; canvas.style.width = W + "px"; canvas.style.height = H + "px";
    svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    drawLinks();
    svg.textContent = "";
    md.prompt_tokens.forEach((t, i) => {
      const label = document.createElementNS(NS, "text");
      label.setAttribute("x", 50 + (i + 0.5) * colW); label.setAttribute("y", H - 6);
      label.setAttribute("class", "graph-token"); label.textContent = t;
      svg.appendChild(label);
    });
    const supernodeOf = {};
    state.supernodes.forEach(s => s.slice(1).forEach(id => { supernodeOf[id] = s[0]; }));
    data.nodes.forEach(n => {
      if (!pos[n.node_id]) return;
      const [x, y] = pos[n.node_id];
      const shape = document.createElementNS(NS, n.feature_type === "cross layer transcoder" ? "circle" : "rect");
      if (shape.tagName === "circle") { shape.setAttribute("cx", x); shape.setAttribute("cy", y); shape.setAttribute("r", 5); }
      else { shape.setAttribute("x", x - 5); shape.setAttribute("y", y - 5); shape.setAttribute("width", 10); shape.setAttribute("height", 10); }
      const cls = ["graph-node", "t-" + n.feature_type.replace(/ /g, "-")];
      if (state.pinned.includes(n.node_id)) cls.push("pinned");
      if (n.node_id === state.clicked) cls.push("clicked");
      if (supernodeOf[n.node_id]) cls.push("grouped");
      shape.setAttribute("class", cls.join(" "));
      shape.dataset.nodeId = n.node_id;
      svg.appendChild(shape);
    });
    document.getElementById("graph-count").textContent = `${visible.size} of ${data.nodes.length} nodes shown`;
  }

  function drawLinks() {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    let max = 0;
    data.links.forEach(l => { if (pos[l.source] && pos[l.target]) max = Math.max(max, Math.abs(l.weight)); });
    const focus = state.clicked;
    data.links.forEach(l => {
      const a = pos[l.source], b = pos[l.target];
      if (!a || !b) return;
      const w = Math.abs(l.weight) / (max || 1);
      const hot = focus && (l.source === focus || l.target === focus);
      ctx.strokeStyle = l.weight >= 0 ? `rgba(37,99,235,${hot ? 0.9 : 0.08 + 0.4 * w})` : `rgba(220,38,38,${hot ? 0.9 : 0.08 + 0.4 * w})`;
      ctx.lineWidth = hot ? 1 + 3 * w : 0.5 + 2 * w;
      ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
    });
  }

  function nodeTitle(n) {
    return n.clerp || `${n.feature_type} ${n.node_id}`;
  }
  function featureSource(n) {
    // node_id of a transcoder feature is {layer}_{index}_{pos}; its dashboard is source {layer}-{set}
    const set = (data.metadata.feature_details || {}).neuronpedia_source_set || meta.sourceSetName;
    if (n.feature_type !== "cross layer transcoder" || !set) return null;
    const [layer, index] = n.node_id.split("_");
    return {source: `${layer}-${set}`, index: index};
  }

  svg.addEventListener("mousemove", ev => {
    const id = ev.target.dataset && ev.target.dataset.nodeId;
    if (!id) { tip.hidden = true; return; }
    const n = byId[id];
    tip.textContent = `${nodeTitle(n)} · layer ${n.layer}, position ${n.ctx_idx}` + (n.activation != null ? ` · act ${Number(n.activation).toFixed(3)}` : "");
    const r = wrap.getBoundingClientRect();
    tip.style.left = ev.clientX - r.left + wrap.scrollLeft + 12 + "px";
    tip.style.top = ev.clientY - r.top + wrap.scrollTop + 12 + "px";
    tip.hidden = false;
  });
  svg.addEventListener("mouseleave", () => { tip.hidden = true; });
  svg.addEventListener("click", ev => {
    const id = ev.target.dataset && ev.target.dataset.nodeId;
    if (!id) return;
    if (ev.shiftKey || ev.metaKey || ev.ctrlKey) togglePin(id);
    else { state.clicked = id; showDetail(byId[id]); }
    writeUrl(); draw();
  });
  slider.addEventListener("input", () => { state.threshold = parseFloat(slider.value); writeUrl(); draw(); });

  function togglePin(id) {
    const i = state.pinned.indexOf(id);
    if (i >= 0) {
      state.pinned.splice(i, 1);
      state.supernodes = state.supernodes.map(s => s.filter((x, j) => j === 0 || x !== id)).filter(s => s.length > 1);
    } else state.pinned.push(id);
    renderSubgraph();
  }

  function topLinks(list, key) {
    return (list || []).slice().sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)).slice(0, 8)
      .map(l => `<li><button type="button" class="linkbutton" data-goto="${l[key]}">${escapeHtml(nodeTitle(byId[l[key]] || {node_id: l[key], feature_type: ""}))}</button> <span class="${l.weight >= 0 ? "pos" : "neg"}">${l.weight.toFixed(3)}</span></li>`).join("");
  }
  function escapeHtml(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }

  function showDetail(n) {
    const fs = featureSource(n);
    const pinned = state.pinned.includes(n.node_id);
    detail.innerHTML = `
      <h2 class="graph-detail-title">${escapeHtml(nodeTitle(n))}</h2>
      <p class="muted">${escapeHtml(n.feature_type)} · layer ${escapeHtml(n.layer)} · position ${n.ctx_idx}
        (“${escapeHtml(data.metadata.prompt_tokens[n.ctx_idx] || "")}”)${n.activation != null ? " · activation " + Number(n.activation).toFixed(3) : ""}${n.influence != null ? " · influence " + Number(n.influence).toFixed(3) : ""}</p>
      <p><button type="button" class="btn btn-sm" id="graph-pin">${pinned ? "Unpin" : "Pin"}</button>
      ${fs ? `<a class="btn btn-sm" href="/${meta.modelId}/${fs.source}/${fs.index}/" target="_blank">Open dashboard</a>` : ""}</p>
      ${meta.isOwner ? `<p class="graph-label-edit"><input id="graph-label" value="${escapeHtml(n.clerp || "")}" maxlength="500"> <button type="button" class="btn btn-sm" id="graph-label-save">Save label</button></p>` : ""}
      ${fs ? `<iframe class="graph-dashboard" title="Feature dashboard" src="/${meta.modelId}/${fs.source}/${fs.index}/?embed=true"></iframe>` : ""}
      <h3>Strongest inputs</h3><ul class="graph-links-list">${topLinks(linksByTarget[n.node_id], "source")}</ul>
      <h3>Strongest outputs</h3><ul class="graph-links-list">${topLinks(linksBySource[n.node_id], "target")}</ul>`;
    detail.querySelector("#graph-pin").addEventListener("click", () => { togglePin(n.node_id); writeUrl(); draw(); showDetail(n); });
    const save = detail.querySelector("#graph-label-save");
    if (save) save.addEventListener("click", () => {
      const text = detail.querySelector("#graph-label").value;
      post("/api/graph/clerps", {modelId: meta.modelId, slug: meta.slug, clerps: [[n.node_id, text]]})
        .then(() => { n.clerp = text; showDetail(n); })
        .catch(e => { save.textContent = e.message; });
    });
    detail.querySelectorAll("[data-goto]").forEach(b => b.addEventListener("click", () => {
      const m = byId[b.dataset.goto];
      if (m) { state.clicked = m.node_id; writeUrl(); draw(); showDetail(m); }
    }));
  }

  function renderSubgraph() {
    const list = document.getElementById("graph-pins");
    list.textContent = "";
    document.getElementById("graph-pins-empty").hidden = state.pinned.length > 0;
    state.pinned.forEach(id => {
      const n = byId[id];
      const li = el("li", {"data-pin": id});
      const cb = el("input", {type: "checkbox", value: id, "aria-label": "select " + id});
      li.appendChild(cb);
      li.appendChild(el("span", {}, " " + (n ? nodeTitle(n) : id) + " "));
      const un = el("button", {type: "button", class: "linkbutton"}, "unpin");
      un.addEventListener("click", () => { togglePin(id); writeUrl(); draw(); });
      li.appendChild(un);
      list.appendChild(li);
    });
    const sl = document.getElementById("graph-supernodes");
    sl.textContent = "";
    state.supernodes.forEach((s, i) => {
      const li = el("li", {"data-supernode": s[0]});
      li.appendChild(el("strong", {}, s[0]));
      li.appendChild(el("span", {}, ": " + s.slice(1).map(id => (byId[id] ? nodeTitle(byId[id]) : id)).join(", ") + " "));
      const rm = el("button", {type: "button", class: "linkbutton"}, "ungroup");
      rm.addEventListener("click", () => { state.supernodes.splice(i, 1); writeUrl(); renderSubgraph(); draw(); });
      li.appendChild(rm);
      sl.appendChild(li);
    });
  }

  document.getElementById("graph-group").addEventListener("click", () => {
    const ids = Array.from(document.querySelectorAll("#graph-pins input:checked")).map(c => c.value);
    const name = document.getElementById("graph-supernode-name").value.trim() || "supernode " + (state.supernodes.length + 1);
    if (ids.length < 1) return;
    state.supernodes.push([name].concat(ids));
    document.getElementById("graph-supernode-name").value = "";
    writeUrl(); renderSubgraph(); draw();
  });
  const share = document.getElementById("graph-share");
  if (share) share.addEventListener("click", () => {
    navigator.clipboard.writeText(window.location.href).then(() => { share.textContent = "Copied"; });
  });
  const saveSub = document.getElementById("graph-subgraph-save");
  if (saveSub) saveSub.addEventListener("click", () => {
    post("/api/graph/subgraph/save", {
      modelId: meta.modelId, slug: meta.slug, displayName: document.getElementById("graph-subgraph-name").value,
      pinnedIds: state.pinned, supernodes: state.supernodes, clerps: state.clerps, pruningThreshold: state.threshold,
    }).then(res => {
      const url = `/${meta.modelId}/graph?subgraph=${res.subgraphId}`;
      const out = document.getElementById("graph-subgraph-saved");
      out.innerHTML = `saved: <a href="${url}">${url}</a>`;
    }).catch(e => { document.getElementById("graph-subgraph-saved").textContent = e.message; });
  });
  // --- interventions on the pinned transcoder features (POST /api/steer-logits) ---
  const steerRun = document.getElementById("graph-steer-run");
  const steerMode = document.getElementById("graph-steer-mode");
  if (steerMode) steerMode.addEventListener("change", () => {
    // "clamp to value" takes an activation, not a multiple of one: no ±5 range
    const amount = document.getElementById("graph-steer-mult");
    const clamp = steerMode.value === "value";
    document.getElementById("graph-steer-amount-label").textContent = clamp ? "Value" : "Multiplier";
    if (clamp) { amount.removeAttribute("min"); amount.removeAttribute("max"); }
    else { amount.min = "-5"; amount.max = "5"; }
  });
  if (steerRun) steerRun.addEventListener("click", () => {
    const mode = document.getElementById("graph-steer-mode").value;
    const mult = parseFloat(document.getElementById("graph-steer-mult").value) || 0;
    const err = document.getElementById("graph-steer-error");
    err.hidden = true;
    const features = state.pinned.map(id => byId[id]).filter(n => n && n.feature_type === "cross layer transcoder").map(n => {
      const [layer, index] = n.node_id.split("_").map(Number);
      const f = {layer: layer, index: index, token_active_position: n.ctx_idx, steer_position: n.ctx_idx};
      if (mode === "ablate") f.ablate = true;
      else if (mode === "value") f.value = mult;
      else f.delta = mult * (n.activation || 0);
      return f;
    });
    if (!features.length) { err.textContent = "Pin at least one transcoder feature first."; err.hidden = false; return; }
    const prompt = meta.prompt.replace(/^<\|[^|]*\|>/, "");  // the BOS is added again by the worker
    post("/api/steer-logits", {
      modelId: meta.modelId, sourceSetName: meta.sourceSetName || undefined, prompt: prompt, features: features,
      nTokens: parseInt(document.getElementById("graph-steer-tokens").value, 10) || 10, topK: 5,
    }).then(res => {
      document.getElementById("graph-steer-out").hidden = false;
      document.getElementById("graph-steer-default").textContent = res.DEFAULT_GENERATION;
      document.getElementById("graph-steer-steered").textContent = res.STEERED_GENERATION;
      const top = (list, elId) => {
        const ol = document.getElementById(elId);
        ol.textContent = "";
        ((list[0] || {}).top_logits || []).forEach(t => ol.appendChild(el("li", {}, `${JSON.stringify(t.token)} ${(100 * t.prob).toFixed(1)}%`)));
      };
      top(res.DEFAULT_LOGITS_BY_TOKEN, "graph-steer-default-top");
      top(res.STEERED_LOGITS_BY_TOKEN, "graph-steer-steered-top");
    }).catch(e => { err.textContent = e.message; err.hidden = false; });
  });

  window.addEventListener("resize", () => { if (data) draw(); });
})();
