// memicos — small page behaviours (no framework): the token value popover on feature dashboards,
// expanding a truncated activation snippet, and copy-to-clipboard buttons.
(function () {
  "use strict";
  var pop = null;

  function popover() {
    if (!pop) {
      pop = document.createElement("div");
      pop.id = "tok-pop";
      pop.setAttribute("role", "tooltip");
      pop.hidden = true;
      document.body.appendChild(pop);
    }
    return pop;
  }

  function showToken(el, ev) {
    var p = popover();
    var shown = el.getAttribute("data-tok") || el.textContent;
    p.innerHTML = "";
    var t = document.createElement("span");
    t.textContent = JSON.stringify(shown) + "  ";
    var v = document.createElement("span");
    v.className = "v";
    v.textContent = el.getAttribute("data-v");
    p.appendChild(t);
    p.appendChild(v);
    p.hidden = false;
    var r = el.getBoundingClientRect();
    var left = Math.min(window.innerWidth - p.offsetWidth - 8, Math.max(8, r.left + r.width / 2 - p.offsetWidth / 2));
    var top = r.top - p.offsetHeight - 6;
    if (top < 60) top = r.bottom + 6;
    p.style.left = left + "px";
    p.style.top = top + "px";
  }

  document.addEventListener("mouseover", function (ev) {
    var el = ev.target.closest && ev.target.closest(".tok");
    if (el) showToken(el, ev);
  });
  document.addEventListener("mouseout", function (ev) {
    var el = ev.target.closest && ev.target.closest(".tok");
    if (el && pop && !(ev.relatedTarget && el.contains(ev.relatedTarget))) pop.hidden = true;
  });
  document.addEventListener("scroll", function () { if (pop) pop.hidden = true; }, { passive: true });

  document.addEventListener("click", function (ev) {
    var more = ev.target.closest && ev.target.closest(".act-row .more");
    if (more) {
      var row = more.closest(".act-row");
      row.classList.toggle("expanded");
      more.setAttribute("aria-expanded", row.classList.contains("expanded") ? "true" : "false");
      return;
    }
    var copy = ev.target.closest && ev.target.closest("[data-copy]");
    if (copy && navigator.clipboard) {
      navigator.clipboard.writeText(copy.getAttribute("data-copy")).then(function () {
        var old = copy.textContent;
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = old; }, 1200);
      });
    }
  });
})();

// The Embed button (templates/_embed_button.html): the snippet follows its switches; Copy copies it.
(function () {
  "use strict";
  function snippet(box) {
    var url = box.getAttribute("data-embed-base");
    box.querySelectorAll("[data-embed-param]").forEach(function (cb) {
      if (!cb.checked) url += "&" + cb.getAttribute("data-embed-param") + "=false";
    });
    var esc = url.replace(/&/g, "&amp;").replace(/"/g, "&quot;");
    return '<iframe src="' + esc + '" title="memicos" width="' + box.getAttribute("data-embed-w") + '" height="' +
      box.getAttribute("data-embed-h") + '" style="border:1px solid #e1e4ee;border-radius:8px" loading="lazy"></iframe>';
  }
  // pages whose state changes without a reload (the graph viewer) call this after moving data-embed-base
  window.memicosEmbedSnippet = function (box) { box.querySelector(".embed-snippet").value = snippet(box); };
  document.addEventListener("change", function (ev) {
    var box = ev.target.closest && ev.target.closest(".embed-share");
    if (box && ev.target.hasAttribute("data-embed-param")) box.querySelector(".embed-snippet").value = snippet(box);
  });
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("[data-copy-from]");
    if (!btn) return;
    var area = btn.closest(".embed-share").querySelector(btn.getAttribute("data-copy-from"));
    area.select();
    if (navigator.clipboard) navigator.clipboard.writeText(area.value);
    btn.textContent = "Copied";
    setTimeout(function () { btn.textContent = "Copy"; }, 1200);
  });
})();
