// The overview: the host, what fires, the apps, image updates and the newest events, live.

import { $, api, debounce, state, still } from "../core.js";
import { labelText, resultClass, when } from "../format.js";
import { html, put } from "../html.js";
import { follow, renderEvents, table } from "../widgets.js";

/** The overview's alerts card. */
function drawAlerts(firing) {
  put($("#alerts"), table(["State", "Rule", "Labels", "Since"],
    firing.map((a) => [
      html`<span class="pill ${a.state === "firing" ? "bad" : "warn"}">${a.state}${a.held ? " (held)" : ""}</span>`,
      a.rule, labelText(a.labels), when(a.active_since),
    ]), "Nothing firing or pending."));
}

export async function overview() {
  const route = state.route;
  put($("#main"), html`<h1>Overview</h1><div class="grid" id="overview">
    <section class="card" aria-labelledby="h-host"><h2 id="h-host">Host</h2><div id="host">…</div></section>
    <section class="card" aria-labelledby="h-alerts"><h2 id="h-alerts">Alerts</h2><div id="alerts">…</div></section>
    <section class="card" aria-labelledby="h-apps"><h2 id="h-apps">Apps</h2><div id="apps">…</div></section>
    <section class="card" aria-labelledby="h-updates"><h2 id="h-updates">Image updates</h2><div id="updates">…</div></section>
    <section class="card" aria-labelledby="h-events" style="grid-column: 1 / -1"><h2 id="h-events">Recent events</h2><div id="events">…</div></section>
  </div>`);
  const asked = new Date().toISOString();
  const [health, apps, alerts, events, updates] = await Promise.all([
    api("GET", "/api/v1/health").catch((e) => ({ error: e.message })),
    api("GET", "/api/v1/apps").catch(() => []),
    api("GET", "/api/v1/alerts").catch(() => ({ alerts: [] })),
    api("GET", "/api/v1/events?limit=15").catch(() => ({ events: [] })),
    api("GET", "/api/v1/images/updates").catch(() => null),
  ]);
  still(route);
  const engine = health.engine || {};
  put($("#host"), html`
    <p>Status <span class="pill ${health.status === "ok" ? "ok" : "warn"}" id="host-status">${health.status}</span></p>
    <p>Engine ${engine.host}: <span id="engine-state" class="${engine.reachable ? "ok" : "bad"}">${engine.reachable ? "reachable" : "unreachable"}</span>
      ${engine.version && `(docker ${engine.version}, api ${engine.api_version})`}</p>
    <p>Journal: ${health.journal?.connected ? "following" : "not connected"}, ${health.journal?.events} events</p>`);
  drawAlerts(alerts.alerts || []);
  put($("#apps"), table(["App", "Target", "Release", "Result", "Running"],
    apps.map((a) => [
      html`<a href="#/apps/${encodeURIComponent(a.name)}">${a.name}</a>`, a.target || "local", a.release,
      html`<span class="${resultClass(a.result)}">${a.result}</span>`,
      `${a.running} / ${a.containers}`,
    ]), "No app deployed yet (capstan deploy -f compose.yaml)."));
  const candidates = (updates?.updates || []).filter((u) => u.candidate);
  put($("#updates"), updates
    ? table(["Image", "Candidate"], candidates.map((u) => [u.reference, u.candidate.tag || u.candidate.digest]),
      "Every watched image is up to date.")
    : html`<p class="muted">Registry watching is off.</p>`);
  renderEvents(events.events || []);
  // alerts move live too
  const redraw = debounce(async () => {
    const now = await api("GET", "/api/v1/alerts").catch(() => null);
    if (now && $("#alerts")) drawAlerts(now.alerts);
  });
  follow("/api/v1/events/stream", 15, asked, (e) => { if (e.action.startsWith("alert_")) redraw(); });
}
