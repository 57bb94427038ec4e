/* Live-inference pages: steer, search via inference, top-k by token, and the activation-test box. */
(function () {
  "use strict";
  if (window.memicosInference) return; // the activation box may be included more than once
  window.memicosInference = true;

  function csrf() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function post(url, body, signal) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(body),
      signal,
    });
  }
  async function postJson(url, body) {
    const r = await post(url, body);
    const data = await r.json().catch(() => ({ message: "HTTP " + r.status }));
    if (!r.ok) throw new Error(data.message || "HTTP " + r.status);
    return data;
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => (k === "class" ? (e.className = v) : e.setAttribute(k, v)));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function status(node, text, isError) {
    if (!node) return;
    node.textContent = text || "";
    node.classList.toggle("error", !!isError);
  }
  function models() {
    const node = document.getElementById("inference-models");
    return node ? JSON.parse(node.textContent) : [];
  }
  function fillSelect(select, values, labels) {
    select.innerHTML = "";
    values.forEach((v, i) => select.appendChild(el("option", { value: v }, labels ? labels[i] : v)));
  }
  function shade(value, max) {
    if (!max || value <= 0) return "transparent";
    return "rgba(255, 140, 0, " + Math.min(1, value / max).toFixed(3) + ")";
  }
  function renderTokens(container, tokens, values, opts) {
    container.innerHTML = "";
    const max = Math.max(0, ...(values || [0]));
    tokens.forEach((t, i) => {
      const span = el("span", { class: "inf-tok", "data-index": String(i) }, t);
      if (values) {
        span.style.background = shade(values[i], max);
        span.title = values[i].toFixed(3);
      }
      if (opts && opts.onClick) {
        span.classList.add("clickable");
        if (opts.selected && opts.selected.has(i)) span.classList.add("selected");
        span.addEventListener("click", () => opts.onClick(i));
      }
      container.appendChild(span);
    });
  }
  function featureUrl(modelId, layer, index) {
    return "/" + encodeURIComponent(modelId) + "/" + encodeURIComponent(layer) + "/" + index;
  }

  // ---- steer ----------------------------------------------------------------------------------
  function initSteer(root) {
    const form = root.querySelector("#steer-form");
    const modelSelect = root.querySelector("#steer-model");
    const list = models();
    fillSelect(modelSelect, list.map((m) => m.id), list.map((m) => m.name));
    const chosen = []; // {modelId, layer, index, strength, label}
    const featureList = root.querySelector("#feature-list");
    const hits = root.querySelector("#feature-hits");
    const stat = root.querySelector("#steer-status");
    const outDefault = root.querySelector("#out-default");
    const outSteered = root.querySelector("#out-steered");

    function drawFeatures() {
      featureList.innerHTML = "";
      chosen.forEach((f, i) => {
        const li = el("li");
        li.appendChild(el("span", {}, f.layer + "/" + f.index + (f.label ? " — " + f.label : "")));
        const slider = el("input", { type: "range", min: "-100", max: "100", step: "1", value: String(f.strength), "aria-label": "strength" });
        const num = el("output", {}, String(f.strength));
        slider.addEventListener("input", () => { f.strength = Number(slider.value); num.textContent = slider.value; });
        const rm = el("button", { type: "button", "aria-label": "remove" }, "×");
        rm.addEventListener("click", () => { chosen.splice(i, 1); drawFeatures(); });
        li.append(slider, num, rm);
        featureList.appendChild(li);
      });
    }
    function addFeature(f) {
      chosen.push({ modelId: f.modelId, layer: f.layer, index: Number(f.index), strength: f.strength ?? 10, label: f.description || "" });
      drawFeatures();
    }
    let timer = null;
    root.querySelector("#feature-search").addEventListener("input", (ev) => {
      clearTimeout(timer);
      const q = ev.target.value;
      timer = setTimeout(async () => {
        const r = await fetch("/steer-features?modelId=" + encodeURIComponent(modelSelect.value) + "&q=" + encodeURIComponent(q));
        const data = await r.json();
        hits.innerHTML = "";
        data.results.forEach((f) => {
          const li = el("li", { tabindex: "0" }, f.layer + "/" + f.index + (f.description ? " — " + f.description : ""));
          li.addEventListener("click", () => { addFeature(f); hits.innerHTML = ""; });
          hits.appendChild(li);
        });
      }, 200);
    });
    function mode() { return form.querySelector("input[name=mode]:checked").value; }
    function show(data, chat) {
      const text = (part) => (part == null ? "" : chat ? (part.chatTemplate ? part.chatTemplate[part.chatTemplate.length - 1].content : part.raw) : part);
      outDefault.textContent = text(data.DEFAULT);
      outSteered.textContent = text(data.STEERED);
      if (data.id) {
        const link = root.querySelector("#share-link");
        link.href = data.shareUrl; link.textContent = data.shareUrl;
        root.querySelector("#share").hidden = false;
        history.replaceState(null, "", "/steer/" + data.id);
      }
    }
    // One generation at a time: Stop, or Steer again, aborts the running request, and the server then stops its
    // worker at the next token (a hung-up stream is cancelled), so nobody waits behind output no one reads.
    const stop = root.querySelector("#steer-stop");
    let running = null;
    stop.addEventListener("click", () => running && running.abort());
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!chosen.length) return status(stat, "Add at least one feature.", true);
      if (running) running.abort();
      const ctrl = new AbortController();
      running = ctrl;
      stop.hidden = false;
      const fd = new FormData(form);
      const chat = mode() === "chat";
      const body = {
        modelId: modelSelect.value, stream: true,
        features: chosen.map((f) => ({ modelId: f.modelId, layer: f.layer, index: f.index, strength: f.strength })),
        n_tokens: Number(fd.get("n_tokens")), temperature: Number(fd.get("temperature")), seed: Number(fd.get("seed")),
        freq_penalty: Number(fd.get("freq_penalty")), strength_multiplier: Number(fd.get("strength_multiplier")),
        steer_method: fd.get("steer_method"),
      };
      const prompt = fd.get("prompt");
      if (chat) {
        const messages = [{ role: "user", content: prompt }];
        Object.assign(body, { defaultChatMessages: messages, steeredChatMessages: messages, steer_special_tokens: !!fd.get("steer_special_tokens") });
      } else body.prompt = prompt;
      status(stat, "Generating…");
      outDefault.textContent = ""; outSteered.textContent = "";
      try {
        const r = await post(chat ? "/api/steer-chat" : "/api/steer", body, ctrl.signal);
        if (!r.ok) {
          const data = await r.json().catch(() => ({}));
          throw new Error(data.message || "HTTP " + r.status);
        }
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const frame = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
            if (!frame.startsWith("data: ")) continue;
            const data = JSON.parse(frame.slice(6));
            if (data.message) throw new Error(data.message);
            show(data, chat);
          }
        }
        status(stat, "Done.");
      } catch (err) {
        if (running !== ctrl) return; // superseded by a newer Steer: that one owns the status now
        if (err.name === "AbortError") status(stat, "Stopped.");
        else status(stat, err.message, true);
      } finally {
        if (running === ctrl) { running = null; stop.hidden = true; }
      }
    });
    const initial = document.getElementById("steer-initial");
    const saved = initial ? JSON.parse(initial.textContent) : null;
    if (saved) {
      modelSelect.value = saved.modelId;
      (saved.features || []).forEach((f) => addFeature(f));
      const s = saved.settings || {};
      Object.entries(s).forEach(([k, v]) => {
        const input = form.elements[k];
        if (!input) return;
        if (input.type === "checkbox") input.checked = !!v; else input.value = v;
      });
      if (saved.chat) {
        form.querySelector("input[value=chat]").checked = true;
        const msgs = saved.inputText || [];
        form.elements.prompt.value = msgs.length ? msgs[msgs.length - 1].content : "";
      } else form.elements.prompt.value = saved.inputText || "";
      show(saved, saved.chat);
    }
  }

  // ---- search via inference ---------------------------------------------------------------------
  function initSearch(root) {
    const form = root.querySelector("#search-form");
    const modelSelect = root.querySelector("#search-model");
    const setSelect = root.querySelector("#search-set");
    const list = models();
    fillSelect(modelSelect, list.map((m) => m.id), list.map((m) => m.name));
    const syncSets = () => fillSelect(setSelect, (list.find((m) => m.id === modelSelect.value) || { sourceSets: [] }).sourceSets);
    modelSelect.addEventListener("change", syncSets);
    syncSets();
    const stat = root.querySelector("#search-status");
    const selected = new Set();
    async function run() {
      const fd = new FormData(form);
      status(stat, "Searching…");
      try {
        const data = await postJson("/api/search-all", {
          modelId: modelSelect.value, sourceSet: setSelect.value, text: fd.get("text"), selectedLayers: [],
          sortIndexes: [...selected].sort((a, b) => a - b), ignoreBos: !!fd.get("ignoreBos"),
          densityThreshold: Number(fd.get("densityThreshold")), numResults: 50,
        });
        renderTokens(root.querySelector("#search-tokens"), data.tokens, null, {
          selected, onClick: (i) => { selected.has(i) ? selected.delete(i) : selected.add(i); run(); },
        });
        const ol = root.querySelector("#search-results");
        ol.innerHTML = "";
        data.result.forEach((row) => {
          const li = el("li", { class: "inf-result" });
          const a = el("a", { href: featureUrl(row.modelId, row.layer, row.index) }, row.layer + "/" + row.index);
          // in an embed the feature page opens outside the frame (framed, it would be refused)
          if (document.body.classList.contains("embed")) { a.target = "_blank"; a.rel = "noopener"; }
          const expl = row.neuron && row.neuron.explanations && row.neuron.explanations[0];
          li.append(a, el("span", {}, " max " + row.maxValue.toFixed(2) + (selected.size ? " · sum " + row.sumValues.toFixed(2) : "") + (expl ? " — " + expl.description : "")));
          const toks = el("div", { class: "inf-tokens" });
          renderTokens(toks, data.tokens, row.values);
          li.appendChild(toks);
          ol.appendChild(li);
        });
        status(stat, data.result.length + " features");
      } catch (err) {
        status(stat, err.message, true);
      }
    }
    form.addEventListener("submit", (ev) => { ev.preventDefault(); selected.clear(); run(); });
  }

  // ---- top-k by token --------------------------------------------------------------------------
  function initTopk(root) {
    const form = root.querySelector("#topk-form");
    const modelSelect = root.querySelector("#topk-model");
    const sourceSelect = root.querySelector("#topk-source");
    const list = models();
    fillSelect(modelSelect, list.map((m) => m.id), list.map((m) => m.name));
    const sync = () => fillSelect(sourceSelect, (list.find((m) => m.id === modelSelect.value) || { sources: [] }).sources);
    modelSelect.addEventListener("change", sync);
    sync();
    const stat = root.querySelector("#topk-status");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      status(stat, "Running…");
      try {
        const data = await postJson("/api/search-topk-by-token", {
          modelId: modelSelect.value, source: sourceSelect.value, text: fd.get("text"),
          numResults: Number(fd.get("numResults")), densityThreshold: Number(fd.get("densityThreshold")), ignoreBos: true,
        });
        const body = root.querySelector("#topk-table tbody");
        body.innerHTML = "";
        data.results.forEach((r) => {
          const tr = el("tr");
          tr.append(el("td", {}, String(r.position)), el("td", {}, JSON.stringify(r.token)));
          const td = el("td");
          r.topFeatures.forEach((f) => {
            const a = el("a", { href: featureUrl(modelSelect.value, data.source, f.featureIndex), class: "inf-topk-feature" },
              f.featureIndex + " (" + f.activationValue.toFixed(2) + ")");
            td.append(a, document.createTextNode(" "));
          });
          tr.appendChild(td);
          body.appendChild(tr);
        });
        status(stat, "");
      } catch (err) {
        status(stat, err.message, true);
      }
    });
  }

  // ---- activation-test box on a feature dashboard ------------------------------------------------
  function initActivationBox(box) {
    const out = box.querySelector(".inf-actbox-out");
    const stat = box.querySelector(".inf-status");
    box.querySelector(".inf-actbox-go").addEventListener("click", async () => {
      const text = box.querySelector("textarea").value;
      if (!text.trim()) return;
      status(stat, "Running…");
      try {
        const data = await postJson("/api/activation/new", {
          feature: { modelId: box.dataset.modelId, source: box.dataset.source, index: Number(box.dataset.index) },
          customText: text,
        });
        renderTokens(out, data.tokens, data.values);
        status(stat, "max " + data.maxValue.toFixed(3) + " at “" + (data.tokens[data.maxValueTokenIndex] || "") + "”");
      } catch (err) {
        status(stat, err.message, true);
      }
    });
  }

  function init() {
    const page = document.querySelector("[data-page]");
    if (page && page.dataset.page === "steer") initSteer(page);
    if (page && page.dataset.page === "search") initSearch(page);
    if (page && page.dataset.page === "topk") initTopk(page);
    document.querySelectorAll(".inf-actbox").forEach(initActivationBox);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
