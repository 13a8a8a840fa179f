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
  follow();
}

function renderEvents(list) {
  state.recent = list.slice(0, 15);
  $("#events").innerHTML = table(["Time", "Type", "Action", "Actor", "Detail"],
    state.recent.map(eventRow), "No events yet.");
}

/** New events as they happen (Server-Sent Events; the cookie authenticates). */
function follow() {
  if (state.events) state.events.close();
  const source = new EventSource("/api/v1/events/stream");
  source.addEventListener("event", (m) => {
    try {
      const e = JSON.parse(m.data);
      if ($("#events")) renderEvents([e, ...(state.recent || [])]);
    } catch (_) { /* a keep-alive */ }
  });
  state.events = source;
}

async function route() {
  if (!state.session) return;
  try {
    await overview();
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
