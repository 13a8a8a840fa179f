// Logs: a query over a range, the matching lines over time, counts per field, the lines (newest
// first) and, asked for, a live tail that the histogram follows.

import { $, api, hashParams, state, stream, Stale } from "../core.js";
import { when } from "../format.js";
import { html, put } from "../html.js";
import { bars, logRow, table, term } from "../widgets.js";

const FACETS = ["host", "service", "container", "level", "stream", "image"];

/** Counts per value of the main fields over the lines shown; each adds its term to the query. */
function facets(lines) {
  const groups = FACETS.map((f) => {
    const counts = new Map();
    for (const l of lines) {
      const v = l[f];
      if (v) counts.set(v, (counts.get(v) || 0) + 1);
    }
    const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8);
    if (!top.length) return null;
    return html`<div class="facet"><h3>${f}</h3><ul>${top.map(([v, n]) =>
      html`<li><button type="button" class="link" data-facet="${term(f, v)}">${v}</button> <span class="muted">${n}</span></li>`)}</ul></div>`;
  }).filter(Boolean);
  return groups.length ? groups : html`<p class="muted">No fields to show.</p>`;
}

/** Counts `line` in the histogram's buckets; past the last bucket the window slides on. */
function countIn(buckets, width, line) {
  let at = Math.floor((new Date(line.time) - new Date(buckets[0].time)) / width);
  while (at >= buckets.length) {
    const last = new Date(buckets.at(-1).time).getTime();
    buckets.shift();
    buckets.push({ time: new Date(last + width).toISOString(), count: 0 });
    at -= 1;
  }
  if (at >= 0) buckets[at].count += 1;
}

export async function logsPage() {
  const params = hashParams();
  const q = params.get("q") || "";
  // a line's context link gives an absolute range
  const from = params.get("from");
  const to = params.get("to");
  const since = from || params.get("since") || "1h";
  put($("#main"), html`<h1>Logs</h1>
    <form id="log-query" class="card" style="display:flex;flex-wrap:wrap;gap:.75rem;align-items:end">
      <label style="flex:1 1 18rem">Query <input name="q" id="q" value="${q}"
        placeholder='level:error service:api "connection refused"'></label>
      <label>Since <select name="since" id="l-since">
        ${from && html`<option value="custom" selected>${when(from)} – ${when(to)}</option>`}
        ${["5m", "15m", "1h", "6h", "1d", "7d"].map((d) => html`<option ${since === d && "selected"}>${d}</option>`)}
      </select></label>
      <label style="flex-direction:row;display:flex;gap:.4rem;align-items:center">
        <input type="checkbox" id="tail" ${params.get("tail") === "1" && "checked"}> Live tail</label>
      <button type="submit">Search</button>
    </form>
    <p class="error" id="log-error" role="alert"></p>
    <section class="card" aria-labelledby="h-hist"><h2 id="h-hist">Matching lines over time</h2><div id="histogram">…</div></section>
    <div class="logs-body">
    <section class="card facets" aria-labelledby="h-facets"><h2 id="h-facets">Fields</h2><div id="facets">…</div></section>
    <section class="card" aria-labelledby="h-lines"><h2 id="h-lines">Lines, newest first <span id="log-total" class="muted"></span></h2><div id="lines">…</div></section>
    </div>`);
  $("#log-query").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams({ q: $("#q").value.trim() });
    if ($("#l-since").value === "custom") { next.set("from", from); next.set("to", to); }
    else next.set("since", $("#l-since").value);
    if ($("#tail").checked) next.set("tail", "1");
    location.hash = `#/logs?${next}`;
  });
  const range = from ? { since: from, until: to } : { since };
  const query = new URLSearchParams({ q, ...range, limit: "200" });
  let page, hist;
  try {
    [page, hist] = await Promise.all([
      api("GET", `/api/v1/logs?${query}`),
      api("GET", `/api/v1/logs/histogram?${new URLSearchParams({ q, ...range, buckets: "60" })}`),
    ]);
  } catch (e) {
    if (e instanceof Stale) throw e;
    $("#log-error").textContent = e.message;
    put($("#lines"), "");
    put($("#histogram"), "");
    return;
  }
  put($("#histogram"), bars(hist.buckets || []));
  state.lines = page.lines || [];
  const render = () => {
    $("#log-total").textContent = `(${page.total} in all)`;
    put($("#lines"), table(["Time", "Container", "Level", "Message"], state.lines.map(logRow),
      "No line matches."));
    put($("#facets"), facets(state.lines));
    for (const b of document.querySelectorAll("button[data-facet]")) {
      b.addEventListener("click", () => {
        $("#q").value = [q, b.dataset.facet].filter(Boolean).join(" ");
        $("#log-query").requestSubmit();
      });
    }
  };
  render();
  if (params.get("tail") === "1") {
    const buckets = hist.buckets || [];
    const width = buckets.length > 1 ? new Date(buckets[1].time) - new Date(buckets[0].time) : 0;
    stream(`/api/v1/logs/stream?${new URLSearchParams({ q, tail: "0" })}`, "line", (line) => {
      state.lines = [line, ...state.lines].slice(0, 500);
      page.total += 1;
      if (!$("#lines")) return;
      render();
      // the histogram counts it too
      if (width > 0) {
        countIn(buckets, width, line);
        put($("#histogram"), bars(buckets));
      }
    });
  }
}
