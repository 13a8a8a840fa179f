// Events: the journal filtered by type, action, image, fleet host and age, newest first, live.

import { $, api, hashParams } from "../core.js";
import { html, put } from "../html.js";
import { follow, renderEvents } from "../widgets.js";

export async function eventsPage() {
  const params = hashParams();
  put($("#main"), html`<h1>Events</h1>
    <form id="event-filter" class="card" style="display:flex;flex-wrap:wrap;gap:.75rem;align-items:end">
      <label>Type <select name="type" id="f-type">
        ${["", "image", "container", "network", "volume", "capstan"].map((t) =>
          html`<option value="${t}" ${params.get("type") === t && "selected"}>${t || "any"}</option>`)}
      </select></label>
      <label>Action <input name="action" id="f-action" value="${params.get("action") || ""}" placeholder="tag, die, alert_firing…"></label>
      <label>Image <input name="image" id="f-image" value="${params.get("image") || ""}" placeholder="id, reference or digest"></label>
      <label>Host <input name="host" id="f-host" value="${params.get("host") || ""}" placeholder="a fleet host"></label>
      <label>Since <select name="since" id="f-since">
        ${["15m", "1h", "6h", "1d", "7d"].map((d) =>
          html`<option ${(params.get("since") || "1h") === d && "selected"}>${d}</option>`)}
      </select></label>
      <button type="submit">Show</button>
    </form>
    <section class="card" aria-labelledby="h-list"><h2 id="h-list">Newest first</h2><div id="events">…</div></section>`);
  const query = new URLSearchParams({ limit: "200", since: params.get("since") || "1h" });
  for (const k of ["type", "action", "image", "host"]) if (params.get(k)) query.set(k, params.get(k));
  $("#event-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const next = new URLSearchParams();
    for (const k of ["type", "action", "image", "host", "since"]) if (f[k].value) next.set(k, f[k].value.trim());
    location.hash = `#/events?${next}`;
  });
  const asked = new Date().toISOString();
  const page = await api("GET", `/api/v1/events?${query}`);
  renderEvents(page.events || [], 200);
  const live = new URLSearchParams();
  for (const k of ["type", "action", "image", "host"]) if (params.get(k)) live.set(k, params.get(k));
  follow(`/api/v1/events/stream?${live}`, 200, asked);
}
