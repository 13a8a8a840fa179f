// capstan's dashboard: plain modules of the browser, no build step, served from the binary.
// The session cookie authenticates every request; changing ones carry the session's CSRF token.
"use strict";

const state = { session: null, events: null };

const $ = (sel) => document.querySelector(sel);

/** Text made safe for HTML. */
function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

/** A time in the browser's time zone. */
function when(rfc3339) {
  if (!rfc3339) return "-";
  return new Date(rfc3339).toLocaleString();
}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && state.session?.csrf_token) {
    headers["x-csrf-token"] = state.session.csrf_token;
  }
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = new Error(data?.error?.message || `${resp.status} ${resp.statusText}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function signedIn(session) {
  state.session = session;
  $("#who").textContent = session ? `${session.who} (${session.role})` : "";
  $("#nav").hidden = !session;
  $("#signout").hidden = !session;
}

function showSignIn(message) {
  signedIn(null);
  if (state.events) { state.events.close(); state.events = null; }
  $("#main").innerHTML = `
    <form class="signin" id="signin" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in to capstan</h1>
      <label>User name <input name="username" id="username" autocomplete="username"></label>
      <label>Password <input name="password" id="password" type="password" autocomplete="current-password"></label>
      <p class="muted">or</p>
      <label>Token <input name="token" id="token" type="password" autocomplete="off"
        placeholder="the admin token, or one from capstan tokens create"></label>
      <button type="submit" id="signin-submit">Sign in</button>
      <p class="error" id="signin-error" role="alert">${esc(message || "")}</p>
    </form>`;
  $("#signin").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const token = f.token.value.trim();
    const body = token
      ? { token }
      : { username: f.username.value.trim(), password: f.password.value };
    try {
      const session = await api("POST", "/api/v1/session", body);
      signedIn(session);
      route();
    } catch (e) {
      $("#signin-error").textContent = e.message;
    }
  });
  $("#username").focus();
}

function table(headers, rows, empty) {
  if (!rows.length) return `<p class="muted">${esc(empty)}</p>`;
  return `<table><thead><tr>${headers.map((h) => `<th scope="col">${esc(h)}</th>`).join("")}</tr></thead>
    <tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

function resultClass(result) {
  return { succeeded: "ok", running: "warn", failed: "bad", rolled_back: "bad", down: "muted" }[result] || "";
}

function eventRow(e) {
  const detail = Object.entries(e.attributes || {})
    .filter(([k]) => ["name", "image", "app", "service", "rule", "reference"].includes(k))
    .map(([k, v]) => `${k}=${v}`).join(" ");
  return [esc(when(e.time)), esc(e.type), esc(e.action), esc(e.actor.slice(0, 40)), esc(detail)];
}

async function overview() {
  const main = $("#main");
  main.innerHTML = `<h1>Overview</h1><div class="grid" id="overview">
    <section class="card" aria-labelledby="h-host"><h2 id="h-host">Host</h2><div id="host">…</div></section>
    <section class="card" aria-labelledby="h-alerts"><h2 id="h-alerts">Alerts</h2><div id="alerts">…</div></section>
    <section class="card" aria-labelledby="h-apps"><h2 id="h-apps">Apps</h2><div id="apps">…</div></section>
    <section class="card" aria-labelledby="h-updates"><h2 id="h-updates">Image updates</h2><div id="updates">…</div></section>
    <section class="card" aria-labelledby="h-events" style="grid-column: 1 / -1"><h2 id="h-events">Recent events</h2><div id="events">…</div></section>
  </div>`;
  const asked = new Date().toISOString();
  const [health, apps, alerts, events, updates] = await Promise.all([
    api("GET", "/api/v1/health").catch((e) => ({ error: e.message })),
    api("GET", "/api/v1/apps").catch(() => []),
    api("GET", "/api/v1/alerts").catch(() => ({ alerts: [] })),
    api("GET", "/api/v1/events?limit=15").catch(() => ({ events: [] })),
    api("GET", "/api/v1/images/updates").catch(() => null),
  ]);
  const engine = health.engine || {};
  $("#host").innerHTML = `
    <p>Status <span class="pill ${health.status === "ok" ? "ok" : "warn"}" id="host-status">${esc(health.status)}</span></p>
    <p>Engine ${esc(engine.host)}: <span id="engine-state" class="${engine.reachable ? "ok" : "bad"}">${engine.reachable ? "reachable" : "unreachable"}</span>
      ${engine.version ? `(docker ${esc(engine.version)}, api ${esc(engine.api_version)})` : ""}</p>
    <p>Journal: ${health.journal?.connected ? "following" : "not connected"}, ${esc(health.journal?.events)} events</p>`;
  const firing = alerts.alerts || [];
  $("#alerts").innerHTML = table(["State", "Rule", "Labels", "Since"],
    firing.map((a) => [
      `<span class="pill ${a.state === "firing" ? "bad" : "warn"}">${esc(a.state)}${a.held ? " (held)" : ""}</span>`,
      esc(a.rule),
      esc(Object.entries(a.labels).filter(([k]) => !["alertname", "severity"].includes(k)).map(([k, v]) => `${k}=${v}`).join(" ")),
      esc(when(a.active_since)),
    ]), "Nothing firing or pending.");
  $("#apps").innerHTML = table(["App", "Release", "Result", "Running"],
    apps.map((a) => [
      esc(a.name), esc(a.release),
      `<span class="${resultClass(a.result)}">${esc(a.result)}</span>`,
      `${esc(a.running)} / ${esc(a.containers)}`,
    ]), "No app deployed yet (capstan deploy -f compose.yaml).");
  const candidates = (updates?.updates || []).filter((u) => u.candidate);
  $("#updates").innerHTML = updates
    ? table(["Image", "Candidate"], candidates.map((u) => [esc(u.reference), esc(u.candidate.tag || u.candidate.digest)]),
      "Every watched image is up to date.")
    : `<p class="muted">Registry watching is off.</p>`;
  renderEvents(events.events || []);
  follow("/api/v1/events/stream", 15, asked);
}

function renderEvents(list, keep = 15) {
  state.recent = list.slice(0, keep);
  $("#events").innerHTML = table(["Time", "Type", "Action", "Actor", "Detail"],
    state.recent.map(eventRow), "No events yet.");
}

/**
 * New events as they happen (Server-Sent Events; the cookie authenticates). The stream starts
 * at the newest event shown (or when the page asked for them), so nothing that happened in
 * between is missed; an event already shown is not shown twice.
 */
function follow(path = "/api/v1/events/stream", keep = 15, from = null) {
  if (state.events) state.events.close();
  const newest = (state.recent || [])[0];
  const since = newest ? newest.time : from;
  const url = new URL(path, location.origin);
  if (since) url.searchParams.set("since", since);
  const source = new EventSource(url.pathname + url.search);
  source.addEventListener("event", (m) => {
    try {
      const e = JSON.parse(m.data);
      const shown = state.recent || [];
      if (shown.some((x) => x.seq === e.seq)) return;
      if ($("#events")) renderEvents([e, ...shown], keep);
    } catch (_) { /* a keep-alive */ }
  });
  state.events = source;
}

async function alertsPage() {
  const main = $("#main");
  main.innerHTML = `<h1>Alerts</h1><div class="grid">
    <section class="card" aria-labelledby="h-now" style="grid-column: 1 / -1"><h2 id="h-now">Firing and pending</h2><div id="alerts-now">…</div></section>
    <section class="card" aria-labelledby="h-rules" style="grid-column: 1 / -1"><h2 id="h-rules">Rules</h2><div id="rules">…</div>
      <p id="rule-test" class="muted" role="status" aria-live="polite"></p></section>
    <section class="card" aria-labelledby="h-history" style="grid-column: 1 / -1"><h2 id="h-history">History</h2><div id="history">…</div></section>
  </div>`;
  const [now, rules, history] = await Promise.all([
    api("GET", "/api/v1/alerts"),
    api("GET", "/api/v1/alerts/rules"),
    api("GET", "/api/v1/alerts/history?limit=100"),
  ]);
  const labels = (l) => Object.entries(l || {}).filter(([k]) => !["alertname", "severity"].includes(k))
    .map(([k, v]) => `${k}=${v}`).join(" ");
  $("#alerts-now").innerHTML = table(["State", "Rule", "Severity", "Labels", "Value", "Since", "Summary"],
    now.alerts.map((a) => [
      `<span class="pill ${a.state === "firing" ? "bad" : "warn"}">${esc(a.state)}${a.held ? " (held: rollout)" : ""}</span>`,
      esc(a.rule), esc(a.labels.severity), esc(labels(a.labels)), esc(a.value ?? "-"),
      esc(when(a.active_since)), esc(a.annotations.summary || ""),
    ]), "Nothing firing or pending.");
  $("#rules").innerHTML = table(["Rule", "Kind", "Source", "For", "Firing", "Condition", ""],
    rules.rules.map((r) => [
      esc(r.name), esc(r.kind), esc(r.source), esc(r.for), esc(r.firing), esc(r.condition),
      `<button type="button" data-test="${esc(r.name)}">Test</button>`,
    ]), "No rules.");
  for (const b of document.querySelectorAll("button[data-test]")) {
    b.addEventListener("click", async () => {
      const name = b.dataset.test;
      const out = $("#rule-test");
      out.textContent = `Testing ${name}…`;
      try {
        const t = await api("POST", `/api/v1/alerts/rules/${encodeURIComponent(name)}/test`);
        const verdict = t.would_fire ? "would fire" : t.holds ? "holds, but would not fire yet" : "would not fire";
        out.textContent = `${t.rule}: ${verdict}. ${t.reason}`;
      } catch (e) {
        out.textContent = `${name}: ${e.message}`;
      }
    });
  }
  $("#history").innerHTML = table(["Time", "State", "Rule", "Labels", "Value", "Summary"],
    history.events.map((e) => {
      const a = e.attributes || {};
      const l = Object.fromEntries(Object.entries(a).filter(([k]) =>
        !k.startsWith("annotation.") && !["rule", "state", "fingerprint", "active_since", "value"].includes(k)));
      return [esc(when(e.time)), esc(e.action.replace("alert_", "")), esc(e.actor), esc(labels(l)),
        esc(a.value ?? "-"), esc(a["annotation.summary"] || "")];
    }), "No alert has moved yet.");
}

async function eventsPage() {
  const main = $("#main");
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  main.innerHTML = `<h1>Events</h1>
    <form id="event-filter" class="card" style="display:flex;flex-wrap:wrap;gap:.75rem;align-items:end">
      <label>Type <select name="type" id="f-type">
        ${["", "image", "container", "network", "volume", "capstan"].map((t) =>
          `<option value="${t}" ${params.get("type") === t ? "selected" : ""}>${t || "any"}</option>`).join("")}
      </select></label>
      <label>Action <input name="action" id="f-action" value="${esc(params.get("action") || "")}" placeholder="tag, die, alert_firing…"></label>
      <label>Image <input name="image" id="f-image" value="${esc(params.get("image") || "")}" placeholder="id, reference or digest"></label>
      <label>Since <select name="since" id="f-since">
        ${["15m", "1h", "6h", "1d", "7d"].map((d) =>
          `<option ${(params.get("since") || "1h") === d ? "selected" : ""}>${d}</option>`).join("")}
      </select></label>
      <button type="submit">Show</button>
    </form>
    <section class="card" aria-labelledby="h-list"><h2 id="h-list">Newest first</h2><div id="events">…</div></section>`;
  const query = new URLSearchParams({ limit: "200", since: params.get("since") || "1h" });
  for (const k of ["type", "action", "image"]) if (params.get(k)) query.set(k, params.get(k));
  $("#event-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const next = new URLSearchParams();
    for (const k of ["type", "action", "image", "since"]) if (f[k].value) next.set(k, f[k].value.trim());
    location.hash = `#/events?${next}`;
  });
  const asked = new Date().toISOString();
  const page = await api("GET", `/api/v1/events?${query}`);
  renderEvents(page.events || [], 200);
  const live = new URLSearchParams();
  for (const k of ["type", "action", "image"]) if (params.get(k)) live.set(k, params.get(k));
  follow(`/api/v1/events/stream?${live}`, 200, asked);
}

/** An SVG bar chart of counts per bucket, with its own text alternative. */
function bars(buckets) {
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const w = 100 / Math.max(1, buckets.length);
  const total = buckets.reduce((n, b) => n + b.count, 0);
  const rects = buckets.map((b, i) => {
    const h = (b.count / max) * 100;
    return `<rect x="${i * w}" y="${100 - h}" width="${Math.max(w - 0.3, 0.2)}" height="${h}"><title>${esc(when(b.time))}: ${b.count}</title></rect>`;
  }).join("");
  return `<svg class="chart" viewBox="0 0 100 100" preserveAspectRatio="none" role="img"
    aria-label="${total} matching lines over the range">${rects}</svg>`;
}

function logRow(l) {
  const level = l.level ? `<span class="pill ${l.level === "error" ? "bad" : l.level.startsWith("warn") ? "warn" : "muted"}">${esc(l.level)}</span>` : "";
  return [esc(when(l.time)), `${esc(l.container)} <span class="muted">${esc(l.stream)}</span>`, level,
    `<code>${esc(l.message || l.raw)}</code>`];
}

async function logsPage() {
  const main = $("#main");
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const q = params.get("q") || "";
  const since = params.get("since") || "1h";
  main.innerHTML = `<h1>Logs</h1>
    <form id="log-query" class="card" style="display:flex;flex-wrap:wrap;gap:.75rem;align-items:end">
      <label style="flex:1 1 18rem">Query <input name="q" id="q" value="${esc(q)}"
        placeholder='level:error service:api "connection refused"'></label>
      <label>Since <select name="since" id="l-since">
        ${["5m", "15m", "1h", "6h", "1d", "7d"].map((d) => `<option ${since === d ? "selected" : ""}>${d}</option>`).join("")}
      </select></label>
      <label style="flex-direction:row;display:flex;gap:.4rem;align-items:center">
        <input type="checkbox" id="tail" ${params.get("tail") === "1" ? "checked" : ""}> Live tail</label>
      <button type="submit">Search</button>
    </form>
    <p class="error" id="log-error" role="alert"></p>
    <section class="card" aria-labelledby="h-hist"><h2 id="h-hist">Matching lines over time</h2><div id="histogram">…</div></section>
    <section class="card" aria-labelledby="h-lines"><h2 id="h-lines">Lines, newest first <span id="log-total" class="muted"></span></h2><div id="lines">…</div></section>`;
  $("#log-query").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams({ q: $("#q").value.trim(), since: $("#l-since").value });
    if ($("#tail").checked) next.set("tail", "1");
    location.hash = `#/logs?${next}`;
  });
  const query = new URLSearchParams({ q, since, limit: "200" });
  let page, hist;
  try {
    [page, hist] = await Promise.all([
      api("GET", `/api/v1/logs?${query}`),
      api("GET", `/api/v1/logs/histogram?${new URLSearchParams({ q, since, buckets: "60" })}`),
    ]);
  } catch (e) {
    $("#log-error").textContent = e.message;
    $("#lines").innerHTML = "";
    $("#histogram").innerHTML = "";
    return;
  }
  $("#histogram").innerHTML = bars(hist.buckets || []);
  state.lines = page.lines || [];
  const render = () => {
    $("#log-total").textContent = `(${page.total} in all)`;
    $("#lines").innerHTML = table(["Time", "Container", "Level", "Message"], state.lines.map(logRow),
      "No line matches.");
  };
  render();
  if (params.get("tail") === "1") {
    if (state.events) state.events.close();
    const source = new EventSource(`/api/v1/logs/stream?${new URLSearchParams({ q, tail: "0" })}`);
    source.addEventListener("line", (m) => {
      try {
        state.lines = [JSON.parse(m.data), ...state.lines].slice(0, 500);
        page.total += 1;
        if ($("#lines")) render();
      } catch (_) { /* a keep-alive */ }
    });
    state.events = source;
  }
}

async function route() {
  if (!state.session) return;
  if (state.events) { state.events.close(); state.events = null; }
  const page = location.hash.split("?")[0];
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === (page || "#/")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (page === "#/alerts") await alertsPage();
    else if (page === "#/events") await eventsPage();
    else if (page === "#/logs") await logsPage();
    else await overview();
    $("#main").focus({ preventScroll: true });
  } catch (e) {
    if (e.status === 401) showSignIn("Your session has ended; sign in again.");
    else $("#main").innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
  }
}

async function start() {
  $("#signout").addEventListener("click", async () => {
    await api("DELETE", "/api/v1/session").catch(() => null);
    showSignIn("Signed out.");
  });
  window.addEventListener("hashchange", route);
  try {
    signedIn(await api("GET", "/api/v1/session"));
    route();
  } catch (_) {
    showSignIn();
  }
}

start();
