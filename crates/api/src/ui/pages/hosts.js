// Hosts: the fleet's hosts as the hub sees them (state, how far behind each stream is, load,
// containers, alerts), each a door to its logs, events and metrics; admins make join tokens
// and remove hosts.

import { $, api, can } from "../core.js";
import { labelText, when } from "../format.js";
import { html, put } from "../html.js";
import { table, term } from "../widgets.js";

function lagText(lag) {
  const streams = Object.entries(lag || {});
  if (!streams.length) return "-";
  return streams.map(([s, secs]) => `${s} ${secs.toFixed(1)} s`).join(", ");
}

function hostRow(h) {
  const q = encodeURIComponent;
  const links = html`<a href="#/logs?${new URLSearchParams({ q: term("host", h.name) })}">logs</a> ·
    <a href="#/events?${new URLSearchParams({ host: h.name, since: "1d" })}">events</a> ·
    <a href="#/metrics?${new URLSearchParams({ query: `node_load1{host="${h.name}"}` })}">metrics</a>`;
  return [
    html`<strong>${h.name}</strong>`,
    html`<span class="pill ${h.state === "connected" ? "ok" : "bad"}" data-state="${h.state}">${h.state}</span>`,
    labelText(h.labels), h.engine || "-", h.last_contact ? when(h.last_contact) : "-",
    lagText(h.lag), h.load1 === undefined ? "-" : h.load1.toFixed(2), h.containers ?? "-",
    h.alerts.length ? html`<span class="pill bad">${h.alerts.join(", ")}</span>` : "-",
    links,
    can("admin") ? html`<button type="button" class="secondary" data-remove="${q(h.name)}" aria-label="Remove host ${h.name}">Remove</button>` : "",
  ];
}

async function drawHosts() {
  const hosts = await api("GET", "/api/v1/hosts");
  put($("#hosts"), table(["Host", "State", "Labels", "Engine", "Last contact", "Lag", "Load", "Containers", "Alerts", "Look at", ""],
    hosts.map(hostRow), "No hosts yet: make a join token, then run capstan agent --join … on the host."));
}

export async function hostsPage() {
  put($("#main"), html`<h1>Hosts</h1><div class="grid">
    <section class="card" aria-labelledby="h-hosts" style="grid-column: 1 / -1"><h2 id="h-hosts">The fleet</h2><div id="hosts">…</div>
      <p id="hosts-said" role="status" aria-live="polite"></p></section>
    ${can("admin") && html`<section class="card" aria-labelledby="h-join" style="grid-column: 1 / -1"><h2 id="h-join">Join a host</h2>
      <form id="join-form" class="row">
        <label>Labels <input id="join-labels" placeholder="env=prod,zone=a"></label>
        <label>Valid for <select id="join-ttl">${["10m", "1h", "1d", "7d"].map((d) => html`<option ${d === "1h" && "selected"}>${d}</option>`)}</select></label>
        <button type="submit">Make a join token</button>
      </form>
      <p class="muted">The token is shown once; it works once, and pins this hub's key.</p>
      <pre id="join-token" class="log" hidden tabindex="0" aria-label="the join token"></pre></section>`}
  </div>`);
  $("#hosts").addEventListener("click", async (ev) => {
    const name = ev.target.dataset?.remove;
    if (!name) return;
    const host = decodeURIComponent(name);
    if (!confirm(`Remove host ${host}? Its agent is cut off at once and must join again with a new token.`)) return;
    try {
      await api("DELETE", `/api/v1/hosts/${name}`);
      $("#hosts-said").textContent = `Removed ${host}.`;
      await drawHosts();
    } catch (e) {
      $("#hosts-said").textContent = e.message;
    }
  });
  $("#join-form")?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const labels = {};
    for (const pair of $("#join-labels").value.split(",").map((p) => p.trim()).filter(Boolean)) {
      const [k, ...v] = pair.split("=");
      labels[k.trim()] = v.join("=").trim();
    }
    const out = $("#join-token");
    out.hidden = false;
    try {
      const t = await api("POST", "/api/v1/hosts/join-tokens", { labels, ttl: $("#join-ttl").value });
      out.textContent = `${t.token}\n\nOn the host: capstan agent --join https://ADDRESS:PORT --token TOKEN (the address of this hub's [fleet] listen). Good once, until ${when(t.expires)}.`;
    } catch (e) {
      out.textContent = e.message;
    }
  });
  await drawHosts();
  // how they are doing moves: drawn again while the page is shown
  const again = async () => {
    if (!$("#hosts")) return;
    await drawHosts().catch(() => null);
    setTimeout(again, 5000);
  };
  setTimeout(again, 5000);
}
