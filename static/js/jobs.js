// Live progress of background jobs, one helper for every page.
//   <div data-job-id="42"> … <div class="progress"><span></span></div> <span data-job-status></span>
//     <span data-job-message></span> <span data-job-count></span> </div>
// is kept up to date from GET /api/job/<id> (once a second while the job is PENDING or RUNNING). Pages with a
// richer progress route of their own use memicosJobs.poll(url, render) with the same rhythm.
(function () {
  "use strict";
  const ACTIVE = ["PENDING", "RUNNING"];

  function poll(url, render, intervalMs) {
    let stopped = false;
    function tick() {
      fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(r => (r.ok ? r.json() : Promise.reject(new Error(url + ": " + r.status))))
        .then(data => {
          render(data);
          if (!stopped && ACTIVE.includes(data.status)) setTimeout(tick, intervalMs || 1000);
        })
        .catch(() => { if (!stopped) setTimeout(tick, 5 * (intervalMs || 1000)); });
    }
    tick();
    return () => { stopped = true; };
  }

  function renderJob(el, job) {
    const bar = el.querySelector(".progress");
    const pct = Math.round(100 * (job.status === "SUCCEEDED" ? 1 : job.fraction));
    if (bar && bar.tagName === "PROGRESS") bar.value = pct;
    else if (bar) {
      bar.classList.toggle("done", job.status === "SUCCEEDED");
      bar.classList.toggle("failed", job.status === "FAILED");
      bar.setAttribute("aria-valuemax", job.total);
      bar.setAttribute("aria-valuenow", job.done);
      const fill = bar.querySelector("span");
      if (fill) fill.style.width = pct + "%";
    }
    const set = (sel, text) => el.querySelectorAll(sel).forEach(x => { x.textContent = text; });
    set("[data-job-status]", job.status.toLowerCase());
    el.querySelectorAll("[data-job-status]").forEach(x => { x.className = "badge badge-" + job.status; });
    set("[data-job-message]", job.error || job.message);
    el.querySelectorAll("[data-job-message]").forEach(x => { x.style.color = job.error ? "var(--err)" : ""; });
    set("[data-job-count]", job.total ? job.done.toLocaleString() + " / " + job.total.toLocaleString()
                                      : job.done.toLocaleString());
    el.dataset.jobStatus = job.status;
    if (!ACTIVE.includes(job.status)) el.dispatchEvent(new CustomEvent("job:finished", {detail: job, bubbles: true}));
  }

  function watch(el) {
    if (el.dataset.jobWatched) return;
    el.dataset.jobWatched = "1";
    poll("/api/job/" + encodeURIComponent(el.dataset.jobId), job => renderJob(el, job));
  }

  window.memicosJobs = {poll: poll, watch: watch};
  function start() { document.querySelectorAll("[data-job-id]").forEach(watch); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
