// The feature dashboard's work for signed-in users: explain (a job), score (a job), vote, and open a score's
// breakdown in a dialog. Jobs are followed with memicosJobs (static/js/jobs.js); once one succeeds the page reloads
// to show the new explanation or score as the server renders it.
(function () {
  "use strict";

  function csrf() {
    const input = document.querySelector("#explain-form input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf(), Accept: "application/json"},
      body: JSON.stringify(body || {}),
    }).then(r => r.json().catch(() => ({})).then(data => {
      if (!r.ok) throw new Error(data.message || (r.status + " " + r.statusText));
      return data;
    }));
  }

  // Show a job line, follow the job, and reload the page (keeping the scroll) once it succeeds.
  function follow(line, jobId, button) {
    line.hidden = false;
    line.dataset.jobId = jobId;
    delete line.dataset.jobWatched;
    line.addEventListener("job:finished", ev => {
      if (button) button.disabled = false;
      if (ev.detail.status === "SUCCEEDED") {
        sessionStorage.setItem("memicos-scroll", String(window.scrollY));
        window.location.reload();
      }
    }, {once: true});
    window.memicosJobs.watch(line);
  }

  function fail(line, message, button) {
    line.hidden = false;
    line.dataset.jobStatus = "FAILED";
    const status = line.querySelector("[data-job-status]");
    if (status) { status.textContent = "refused"; status.className = "badge badge-FAILED"; }
    line.querySelector("[data-job-message]").textContent = message;
    if (button) button.disabled = false;
  }

  function start() {
    const saved = sessionStorage.getItem("memicos-scroll");
    if (saved !== null) { sessionStorage.removeItem("memicos-scroll"); window.scrollTo(0, Number(saved)); }

    const form = document.getElementById("explain-form");
    if (form) {
      form.addEventListener("submit", ev => {
        ev.preventDefault();
        const line = document.getElementById("explain-job");
        const button = form.querySelector("button[type=submit]");
        button.disabled = true;
        post("/api/explanation/generate-job", {
          modelId: form.dataset.model, layer: form.dataset.layer, index: Number(form.dataset.index),
          explanationType: form.elements.explanationType.value,
          explanationModelName: form.elements.explanationModelName.value,
        }).then(d => follow(line, d.jobId, button)).catch(err => fail(line, err.message, button));
      });
    }

    document.querySelectorAll("#explanations .expl[data-explanation-id]").forEach(expl => {
      const id = expl.dataset.explanationId;
      const line = expl.querySelector("[data-job-line]");
      const scoreForm = expl.querySelector("[data-score-form]");
      if (scoreForm) scoreForm.addEventListener("submit", ev => {
        ev.preventDefault();
        const button = scoreForm.querySelector("button");
        button.disabled = true;
        post("/api/explanation/score-job", {explanationId: id, scorerType: scoreForm.elements.scorerType.value})
          .then(d => follow(line, d.jobId, button)).catch(err => fail(line, err.message, button));
      });
      const vote = expl.querySelector("[data-vote]");
      if (vote) vote.addEventListener("click", () => {
        const voted = vote.getAttribute("aria-pressed") === "true";
        vote.disabled = true;
        post("/api/explanation/" + encodeURIComponent(id) + (voted ? "/unvote" : "/vote")).then(e => {
          const n = Math.round(e.scoreV1);
          expl.querySelector(".votes").hidden = false;
          expl.querySelector("[data-votes]").textContent = n;
          expl.querySelector("[data-votes-s]").textContent = n === 1 ? "" : "s";
          vote.setAttribute("aria-pressed", voted ? "false" : "true");
          vote.textContent = voted ? "△ Vote" : "▲ Voted";
        }).catch(err => fail(line, err.message)).finally(() => { vote.disabled = false; });
      });
    });

    const dialog = document.getElementById("breakdown-dialog");
    if (dialog && dialog.showModal) {
      document.querySelectorAll("#explanations a[data-breakdown]").forEach(a => {
        a.addEventListener("click", ev => {
          ev.preventDefault();
          const body = dialog.querySelector("[data-breakdown-body]");
          body.textContent = "Loading…";
          dialog.showModal();
          fetch(a.href + "?fragment=1", {credentials: "same-origin"})
            .then(r => (r.ok ? r.text() : Promise.reject(new Error(r.status + " " + r.statusText))))
            .then(html => { body.innerHTML = html; })
            .catch(err => { body.textContent = "Could not load the breakdown: " + err.message; });
        });
      });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
