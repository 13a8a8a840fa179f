// Metrics: a query (or a preset) charted over a range.

import { $, hashParams } from "../core.js";
import { bytes, cores, perSecond } from "../format.js";
import { html, put } from "../html.js";
import { chartInto } from "../widgets.js";

const PRESETS = [
  ["CPU per container", "rate(container_cpu_usage_seconds_total[1m])"],
  ["CPU per service", "sum by (service) (rate(container_cpu_usage_seconds_total[1m]))"],
  ["Memory per container", "container_memory_working_set_bytes"],
  ["Network in per container", "rate(container_network_receive_bytes_total[1m])"],
  ["Host load", "node_load1"],
];

/** How a query's values read: bytes, bytes per second, a share of a core, or plain numbers. */
function formatOf(query) {
  if (/bytes/.test(query)) return /rate|increase/.test(query) ? perSecond : bytes;
  return /cpu/.test(query) && /rate/.test(query) ? cores : undefined;
}

export async function metricsPage() {
  const params = hashParams();
  const query = params.get("query") || PRESETS[0][1];
  const since = params.get("since") || "1h";
  put($("#main"), html`<h1>Metrics</h1>
    <form id="metrics-form" class="card row">
      <label style="flex:1 1 22rem">Query <input id="m-query" value="${query}" list="m-presets"></label>
      <datalist id="m-presets">${PRESETS.map(([n, q]) => html`<option value="${q}">${n}</option>`)}</datalist>
      <label>Range <select id="m-since">${["15m", "1h", "6h", "1d", "7d"].map((d) => html`<option ${since === d && "selected"}>${d}</option>`)}</select></label>
      <button type="submit">Show</button>
    </form>
    <p class="muted">Presets: ${PRESETS.map(([n, q], i) => html`${i ? " · " : ""}<a href="#/metrics?${new URLSearchParams({ query: q, since })}">${n}</a>`)}</p>
    <section class="card" aria-labelledby="h-chart"><h2 id="h-chart">${query}</h2><div id="chart">…</div></section>`);
  $("#metrics-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/metrics?${new URLSearchParams({ query: $("#m-query").value.trim(), since: $("#m-since").value })}`;
  });
  await chartInto($("#chart"), query, since, formatOf(query));
}
