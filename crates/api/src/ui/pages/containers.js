// A container's page: its state (live), charts, its log lines (live) and its events (live).

import { $, api, debounce, state, still, stream } from "../core.js";
import { bytes, cores, perSecond, short, when } from "../format.js";
import { html, put } from "../html.js";
import { chartInto, follow, logRow, renderEvents, table } from "../widgets.js";
import { terminalCard } from "./terminal.js";

function missing(id) {
  put($("#main"), html`<h1>Container</h1><p class="error" role="alert">No container ${id} (it may have been removed; its logs stay searchable).</p>
      <p><a href="#/logs?${new URLSearchParams({ q: `container_id:${id}`, since: "7d" })}">Search its logs</a></p>`);
}

export async function containerPage(id) {
  const route = state.route;
  const list = await api("GET", "/api/v1/containers?all=true");
  const c = list.containers.find((x) => x.id === id || x.id.startsWith(id) || x.name === id);
  if (!c) {
    missing(id);
    return;
  }
  // by id: a name is reused by the replicas of later releases
  const sel = `{id=~".*${c.id}.*"}`;
  const app = c.labels["io.capstan.app"];
  put($("#main"), html`<h1>Container ${c.name}</h1>
    <div class="grid">
    <section class="card" aria-labelledby="h-summary"><h2 id="h-summary">Summary</h2>
      <dl class="facts">
        <dt>State</dt><dd id="c-state" class="${c.state === "running" ? "ok" : "bad"}">${c.state} · ${c.status}</dd>
        <dt>Id</dt><dd><code>${short(c.id)}</code></dd>
        <dt>Image</dt><dd><a href="#/images/${encodeURIComponent(c.image_id)}">${c.image}</a></dd>
        <dt>Created</dt><dd>${when(c.created)}</dd>
        ${app && html`<dt>App</dt><dd><a href="#/apps/${encodeURIComponent(app)}">${app}</a> / ${c.labels["io.capstan.service"] || ""}</dd>`}
      </dl></section>
    <section class="card" aria-labelledby="h-cpu"><h2 id="h-cpu">CPU</h2><div id="chart-cpu">…</div></section>
    <section class="card" aria-labelledby="h-mem"><h2 id="h-mem">Memory (working set)</h2><div id="chart-mem">…</div></section>
    <section class="card" aria-labelledby="h-net"><h2 id="h-net">Network received</h2><div id="chart-net">…</div></section>
    <section class="card" aria-labelledby="h-clogs" style="grid-column: 1 / -1"><h2 id="h-clogs">Logs (live)</h2><div id="lines">…</div></section>
    <section class="card" aria-labelledby="h-cevents" style="grid-column: 1 / -1"><h2 id="h-cevents">Events</h2><div id="events">…</div></section>
    <div id="terminal" style="grid-column: 1 / -1; min-width: 0"></div>
    </div>`);
  // a replica of an app that runs: operators get a terminal into it
  const replica = Number(c.labels["io.capstan.replica"]);
  if (app && c.state === "running" && replica > 0) {
    terminalCard($("#terminal"), app, c.labels["io.capstan.service"], replica);
  }
  const q = `container_id:${c.id}`;
  const asked = new Date().toISOString();
  const [page, events] = await Promise.all([
    api("GET", `/api/v1/logs?${new URLSearchParams({ q, since: "7d", limit: "100" })}`).catch(() => ({ lines: [] })),
    api("GET", `/api/v1/events?${new URLSearchParams({ actor: c.id, limit: "50", since: "7d" })}`).catch(() => ({ events: [] })),
    chartInto($("#chart-cpu"), `rate(container_cpu_usage_seconds_total${sel}[1m])`, "1h", cores),
    chartInto($("#chart-mem"), `container_memory_working_set_bytes${sel}`, "1h", bytes),
    chartInto($("#chart-net"), `rate(container_network_receive_bytes_total${sel}[1m])`, "1h", perSecond),
  ]);
  still(route);
  state.lines = page.lines || [];
  // the page is the container's: a line's container column says its stream instead
  const render = () => {
    put($("#lines"), table(["Time", "Stream", "Level", "Message"],
      state.lines.map((l) => { const r = logRow(l); r[1] = l.stream; return r; }), "No lines yet."));
  };
  render();
  renderEvents(events.events || [], 50);
  stream(`/api/v1/logs/stream?${new URLSearchParams({ q, tail: "0" })}`, "line", (line) => {
    state.lines = [line, ...state.lines].slice(0, 300);
    if ($("#lines")) render();
  });
  // its state follows its events: started, died, health changed
  const redraw = debounce(async () => {
    const now = await api("GET", "/api/v1/containers?all=true").catch(() => null);
    const fresh = now?.containers.find((x) => x.id === c.id);
    const el = $("#c-state");
    if (!el) return;
    el.textContent = fresh ? `${fresh.state} · ${fresh.status}` : "removed";
    el.className = fresh?.state === "running" ? "ok" : "bad";
  });
  follow(`/api/v1/events/stream?${new URLSearchParams({ actor: c.id })}`, 50, asked, (e) => {
    if (e.type === "container") redraw();
  });
}
