// strongroom dashboard: follows running jobs by server-sent events (the page works without).
"use strict";

const FINAL = ["succeeded", "partial", "failed", "cancelled"];

function percentOf(job) {
  if (job.state === "succeeded" || job.state === "partial") { return 100; }
  if (typeof job.percent !== "number") { return null; }
  return Math.min(Math.max(job.percent, 0), 100);
}

function when(t) {
  if (typeof t !== "number") { return "-"; }
  return new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function setBar(scope, job) {
  const bar = scope.querySelector("progress");
  const text = scope.querySelector(".pct");
  const pct = percentOf(job);
  if (bar && pct !== null) { bar.value = pct; }
  if (bar && pct === null && FINAL.includes(job.state)) { bar.remove(); }
  if (text) { text.textContent = pct === null ? "-" : Math.round(pct) + " %"; }
}

function setBadge(scope, state) {
  const badge = scope.querySelector(".badge");
  if (badge) {
    badge.textContent = state;
    badge.className = "badge s-" + state;
  }
}

function updateJob(root, job) {
  const fact = (name) => root.querySelector('[data-fact="' + name + '"]');
  setBar(fact("progress"), job);
  setBadge(fact("state"), job.state);
  for (const name of ["agent", "files", "bytes_read", "bytes_added", "point", "reason"]) {
    const cell = fact(name);
    if (cell) { cell.textContent = job[name] === null ? "-" : String(job[name]); }
  }
  for (const name of ["started", "finished"]) {
    const cell = fact(name);
    if (cell) { cell.textContent = when(job[name]); }
  }
  const log = document.querySelector("ol.log");
  if (log && job.log && job.log.length) {
    if (root.dataset.lines === "0") { log.textContent = ""; }
    for (const entry of job.log) {
      const li = document.createElement("li");
      const time = document.createElement("time");
      time.textContent = when(entry.time);
      li.append(time, " " + entry.line);
      log.append(li);
    }
    root.dataset.lines = String(Number(root.dataset.lines || "0") + job.log.length);
  }
  if (FINAL.includes(job.state)) {
    const cancel = document.querySelector("form.cancel");
    if (cancel) { cancel.remove(); }
  }
}

function updateRows(root, jobs) {
  for (const job of jobs) {
    const row = root.querySelector('tr[data-job="' + job.id + '"]');
    if (row) {
      setBar(row, job);
      setBadge(row.querySelector(".state"), job.state);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.querySelector("[data-sse]");
  if (!root || !window.EventSource) { return; }
  let url = root.dataset.sse;
  if (root.dataset.lines) { url += "?lines=" + encodeURIComponent(root.dataset.lines); }
  const source = new EventSource(url);
  source.onmessage = (event) => {
    const doc = JSON.parse(event.data);
    if (Array.isArray(doc.jobs)) { updateRows(root, doc.jobs); } else { updateJob(root, doc); }
    root.dataset.updates = String(Number(root.dataset.updates || "0") + 1);
  };
  // the job is over (or the session is): stop, or EventSource would reconnect
  source.addEventListener("end", () => {
    source.close();
    root.dataset.ended = "1";
  });
  window.addEventListener("pagehide", () => source.close());
});
