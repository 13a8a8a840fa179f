// Builds: what git pushes queued, each build's steps and its log, live while it runs,
// cancelling one and running an ended one again (operators).

import { $, api, can, stream } from "../core.js";
import { when } from "../format.js";
import { html, put } from "../html.js";
import { table } from "../widgets.js";

const ended = (status) => !["queued", "running"].includes(status);

function statusPill(status) {
  const kind = status === "succeeded" ? "ok" : ["failed", "cancelled"].includes(status) ? "bad" : "warn";
  return html`<span class="pill ${kind}" data-status="${status}">${status}</span>`;
}

export async function buildsPage() {
  put($("#main"), html`<h1>Builds</h1><section class="card" aria-labelledby="h-builds"><h2 id="h-builds">The last 100</h2><div id="builds">…</div></section>`);
  const builds = await api("GET", "/api/v1/builds");
  put($("#builds"), table(["#", "App", "Commit", "Branch", "By", "Status", "Queued", "Release", "Why"],
    builds.map((b) => [
      html`<a href="#/builds/${b.id}">${b.id}</a>`, html`<a href="#/apps/${encodeURIComponent(b.app)}">${b.app}</a>`,
      html`<code title="${b.message}">${b.commit.slice(0, 12)}</code>`, b.branch, b.author,
      statusPill(b.status), when(b.queued), b.release ?? "", b.error,
    ]), "No builds yet: a push to an app's source queues one (capstan hooks APP)."));
}

export async function buildPage(id) {
  const b = await api("GET", `/api/v1/builds/${encodeURIComponent(id)}`);
  put($("#main"), html`<h1>Build ${b.id} of <a href="#/apps/${encodeURIComponent(b.app)}">${b.app}</a></h1>
    <div class="grid">
    <section class="card" aria-labelledby="h-build" style="grid-column: 1 / -1"><h2 id="h-build">Commit ${b.commit.slice(0, 12)} on ${b.branch}</h2>
      <p>${b.message} <span class="muted">by ${b.author}</span></p>
      <p>Status <strong id="build-status">${statusPill(b.status)}</strong>${b.builder ? html` <span class="muted">(${b.builder})</span>` : ""}
        ${b.release ? html` · release ${b.release}` : ""} ${b.image ? html` · <code>${b.image}</code>` : ""}</p>
      <p id="build-error" class="error">${b.error}</p>
      <div id="build-steps">${table(["Step", "Outcome", "Note", "Time"], (b.detail.steps || []).map((s) => [s.step, s.outcome, s.note, when(s.time)]), "Not started yet.")}</div>
      ${b.detail.retry_of ? html`<p>Runs <a href="#/builds/${b.detail.retry_of}">build ${b.detail.retry_of}</a> again, asked by ${b.detail.by}.</p>` : ""}
      ${can("operator") && html`<button type="button" id="build-cancel" class="secondary">Cancel the build</button>
        <button type="button" id="build-retry" class="secondary">Build, push and deploy this commit again</button>`}
      <p id="build-said" role="status" aria-live="polite"></p>
    </section>
    <section class="card" aria-labelledby="h-build-log" style="grid-column: 1 / -1"><h2 id="h-build-log">Log</h2>
      <pre id="build-log" class="log" tabindex="0" aria-label="the build's log"></pre></section>
    </div>`);
  const buttons = (status) => {
    if ($("#build-cancel")) $("#build-cancel").hidden = ended(status);
    if ($("#build-retry")) $("#build-retry").hidden = !ended(status);
  };
  buttons(b.status);
  $("#build-retry")?.addEventListener("click", async () => {
    try {
      const next = await api("POST", `/api/v1/builds/${b.id}/retry`);
      location.hash = `#/builds/${next.id}`;
    } catch (e) {
      $("#build-said").textContent = e.message;
    }
  });
  $("#build-cancel")?.addEventListener("click", async () => {
    try {
      await api("POST", `/api/v1/builds/${b.id}/cancel`);
      $("#build-said").textContent = "Cancelled.";
    } catch (e) {
      $("#build-said").textContent = e.message;
    }
  });
  // the log as stored, then live: the store's tail of this build's lines
  const log = $("#build-log");
  stream(`/api/v1/logs/stream?${new URLSearchParams({ q: `build:${b.id}`, tail: "10000" })}`, "line", (l) => {
    log.append(`${l.raw}\n`);
  });
  // the record moves while it runs
  const again = async () => {
    if (!$("#build-status")) return;
    const now = await api("GET", `/api/v1/builds/${b.id}`).catch(() => null);
    if (!now || !$("#build-status")) return;
    put($("#build-status"), statusPill(now.status));
    $("#build-error").textContent = now.error;
    put($("#build-steps"), table(["Step", "Outcome", "Note", "Time"], (now.detail.steps || []).map((s) => [s.step, s.outcome, s.note, when(s.time)]), "Not started yet."));
    buttons(now.status);
    if (!ended(now.status)) setTimeout(again, 1000);
  };
  if (!ended(b.status)) setTimeout(again, 1000);
}
