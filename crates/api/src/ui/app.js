// capstan's dashboard: plain modules of the browser, no build step, served from the binary.
// The session cookie authenticates every request; changing ones carry the session's CSRF token.
"use strict";

// `route` counts the pages drawn: an answer that arrives after its page was left is stale and
// must not draw over the page shown now (under load, a slow answer of the page before did)
const state = { session: null, streams: [], route: 0 };

/** Thrown in place of an answer that came after the page that asked for it was left. */
class Stale extends Error {}

/** Throws `Stale` when the page drawn as `route` is no longer the one shown. */
function still(route) {
  if (route !== state.route) throw new Stale("the page was left");
}

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
  const route = state.route;
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
  still(route);
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
  // what a role cannot do is not offered (the API refuses it anyway)
  $("#nav-access").hidden = !can("admin");
}

function showSignIn(message) {
  signedIn(null);
  closeStreams();
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

/** The overview's alerts card. */
function drawOverviewAlerts(firing) {
  $("#alerts").innerHTML = table(["State", "Rule", "Labels", "Since"],
    firing.map((a) => [
      `<span class="pill ${a.state === "firing" ? "bad" : "warn"}">${esc(a.state)}${a.held ? " (held)" : ""}</span>`,
      esc(a.rule),
      esc(Object.entries(a.labels).filter(([k]) => !["alertname", "severity"].includes(k)).map(([k, v]) => `${k}=${v}`).join(" ")),
      esc(when(a.active_since)),
    ]), "Nothing firing or pending.");
}

async function overview() {
  const route = state.route;
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
  still(route);
  const engine = health.engine || {};
  $("#host").innerHTML = `
    <p>Status <span class="pill ${health.status === "ok" ? "ok" : "warn"}" id="host-status">${esc(health.status)}</span></p>
    <p>Engine ${esc(engine.host)}: <span id="engine-state" class="${engine.reachable ? "ok" : "bad"}">${engine.reachable ? "reachable" : "unreachable"}</span>
      ${engine.version ? `(docker ${esc(engine.version)}, api ${esc(engine.api_version)})` : ""}</p>
    <p>Journal: ${health.journal?.connected ? "following" : "not connected"}, ${esc(health.journal?.events)} events</p>`;
  drawOverviewAlerts(alerts.alerts || []);
  $("#apps").innerHTML = table(["App", "Release", "Result", "Running"],
    apps.map((a) => [
      `<a href="#/apps/${encodeURIComponent(a.name)}">${esc(a.name)}</a>`, esc(a.release),
      `<span class="${resultClass(a.result)}">${esc(a.result)}</span>`,
      `${esc(a.running)} / ${esc(a.containers)}`,
    ]), "No app deployed yet (capstan deploy -f compose.yaml).");
  const candidates = (updates?.updates || []).filter((u) => u.candidate);
  $("#updates").innerHTML = updates
    ? table(["Image", "Candidate"], candidates.map((u) => [esc(u.reference), esc(u.candidate.tag || u.candidate.digest)]),
      "Every watched image is up to date.")
    : `<p class="muted">Registry watching is off.</p>`;
  renderEvents(events.events || []);
  // alerts move live too
  const redraw = debounce(async () => {
    const now = await api("GET", "/api/v1/alerts").catch(() => null);
    if (now && $("#alerts")) drawOverviewAlerts(now.alerts);
  });
  follow("/api/v1/events/stream", 15, asked, (e) => { if (e.action.startsWith("alert_")) redraw(); });
}

function renderEvents(list, keep = 15) {
  state.recent = list.slice(0, keep);
  $("#events").innerHTML = table(["Time", "Type", "Action", "Actor", "Detail"],
    state.recent.map(eventRow), "No events yet.");
}

/** A Server-Sent Events stream for the page shown (the cookie authenticates); a route change
 * closes it. `onData` gets each `type` message's JSON. */
function stream(url, type, onData) {
  const source = new EventSource(url);
  source.addEventListener(type, (m) => {
    let data;
    try { data = JSON.parse(m.data); } catch (_) { return; /* a keep-alive */ }
    onData(data);
  });
  state.streams.push(source);
  return source;
}

function closeStreams() {
  for (const s of state.streams) s.close();
  state.streams = [];
}

/** `f` at most once per `ms`, after the last call (a burst of events redraws once). */
function debounce(f, ms = 300) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(f, ms); };
}

/**
 * New events as they happen. The stream starts at the newest event shown (or when the page
 * asked for them), so nothing that happened in between is missed; an event already shown is
 * not shown twice. `also` sees every new event too.
 */
function follow(path = "/api/v1/events/stream", keep = 15, from = null, also = null) {
  const newest = (state.recent || [])[0];
  const since = newest ? newest.time : from;
  const url = new URL(path, location.origin);
  if (since) url.searchParams.set("since", since);
  stream(url.pathname + url.search, "event", (e) => {
    const shown = state.recent || [];
    if (shown.some((x) => x.seq === e.seq)) return;
    if ($("#events")) renderEvents([e, ...shown], keep);
    if (also) also(e);
  });
}

async function alertsPage() {
  const main = $("#main");
  main.innerHTML = `<h1>Alerts</h1><div class="grid">
    <section class="card" aria-labelledby="h-now" style="grid-column: 1 / -1"><h2 id="h-now">Firing and pending</h2><div id="alerts-now">…</div></section>
    <section class="card" aria-labelledby="h-rules" style="grid-column: 1 / -1"><h2 id="h-rules">Rules</h2><div id="rules">…</div>
      <p id="rule-test" class="muted" role="status" aria-live="polite"></p></section>
    <section class="card" aria-labelledby="h-history" style="grid-column: 1 / -1"><h2 id="h-history">History</h2><div id="history">…</div></section>
  </div>`;
  const asked = new Date().toISOString();
  const [now, rules, history] = await Promise.all([
    api("GET", "/api/v1/alerts"),
    api("GET", "/api/v1/alerts/rules"),
    api("GET", "/api/v1/alerts/history?limit=100"),
  ]);
  const labels = (l) => Object.entries(l || {}).filter(([k]) => !["alertname", "severity"].includes(k))
    .map(([k, v]) => `${k}=${v}`).join(" ");
  const drawNow = (alerts) => {
    $("#alerts-now").innerHTML = table(["State", "Rule", "Severity", "Labels", "Value", "Since", "Summary"],
      alerts.map((a) => [
        `<span class="pill ${a.state === "firing" ? "bad" : "warn"}">${esc(a.state)}${a.held ? " (held: rollout)" : ""}</span>`,
        esc(a.rule), esc(a.labels.severity), esc(labels(a.labels)), esc(a.value ?? "-"),
        esc(when(a.active_since)), esc(a.annotations.summary || ""),
      ]), "Nothing firing or pending.");
  };
  drawNow(now.alerts);
  // alerts move live: every pending, firing or resolved step is a journaled event
  const redraw = debounce(async () => {
    const fresh = await api("GET", "/api/v1/alerts").catch(() => null);
    if (fresh && $("#alerts-now")) drawNow(fresh.alerts);
  });
  stream(`/api/v1/events/stream?${new URLSearchParams({ type: "capstan", since: asked })}`, "event", (e) => {
    if (e.action.startsWith("alert_")) redraw();
  });
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

/** A query term for a field's value (quoted when it has spaces). */
function term(field, value) {
  return /[\s()"]/.test(value) ? `${field}:"${String(value).replace(/"/g, "")}"` : `${field}:${value}`;
}

function logRow(l) {
  const level = l.level ? `<span class="pill ${l.level === "error" ? "bad" : l.level.startsWith("warn") ? "warn" : "muted"}">${esc(l.level)}</span>` : "";
  const t = new Date(l.time).getTime();
  const around = new URLSearchParams({
    q: term("container_id", l.container_id),
    from: new Date(t - 30000).toISOString(),
    to: new Date(t + 30000).toISOString(),
  });
  return [esc(when(l.time)),
    `<a href="#/containers/${encodeURIComponent(l.container_id)}" class="to-container">${esc(l.container)}</a> <span class="muted">${esc(l.stream)}</span>`,
    level,
    `<code>${esc(l.message || l.raw)}</code> <a href="#/logs?${around}" class="context" title="the lines around it">context</a>`];
}

const FACETS = ["service", "container", "level", "stream", "image"];

/** Counts per value of the main fields over the lines shown; each adds its term to the query. */
function facets(lines, q) {
  const groups = FACETS.map((f) => {
    const counts = new Map();
    for (const l of lines) {
      const v = l[f];
      if (v) counts.set(v, (counts.get(v) || 0) + 1);
    }
    const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8);
    if (!top.length) return "";
    return `<div class="facet"><h3>${esc(f)}</h3><ul>${top.map(([v, n]) =>
      `<li><button type="button" class="link" data-facet="${esc(term(f, v))}">${esc(v)}</button> <span class="muted">${n}</span></li>`).join("")}</ul></div>`;
  }).join("");
  return groups || `<p class="muted">No fields to show.</p>`;
}

async function logsPage() {
  const main = $("#main");
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const q = params.get("q") || "";
  // a line's context link gives an absolute range
  const from = params.get("from");
  const to = params.get("to");
  const since = from || params.get("since") || "1h";
  main.innerHTML = `<h1>Logs</h1>
    <form id="log-query" class="card" style="display:flex;flex-wrap:wrap;gap:.75rem;align-items:end">
      <label style="flex:1 1 18rem">Query <input name="q" id="q" value="${esc(q)}"
        placeholder='level:error service:api "connection refused"'></label>
      <label>Since <select name="since" id="l-since">
        ${from ? `<option value="custom" selected>${esc(when(from))} – ${esc(when(to))}</option>` : ""}
        ${["5m", "15m", "1h", "6h", "1d", "7d"].map((d) => `<option ${since === d ? "selected" : ""}>${d}</option>`).join("")}
      </select></label>
      <label style="flex-direction:row;display:flex;gap:.4rem;align-items:center">
        <input type="checkbox" id="tail" ${params.get("tail") === "1" ? "checked" : ""}> Live tail</label>
      <button type="submit">Search</button>
    </form>
    <p class="error" id="log-error" role="alert"></p>
    <section class="card" aria-labelledby="h-hist"><h2 id="h-hist">Matching lines over time</h2><div id="histogram">…</div></section>
    <div class="logs-body">
    <section class="card facets" aria-labelledby="h-facets"><h2 id="h-facets">Fields</h2><div id="facets">…</div></section>
    <section class="card" aria-labelledby="h-lines"><h2 id="h-lines">Lines, newest first <span id="log-total" class="muted"></span></h2><div id="lines">…</div></section>
    </div>`;
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
    $("#facets").innerHTML = facets(state.lines, q);
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
      // the histogram counts it too; past its last bucket the window slides on
      if (width > 0) {
        let at = Math.floor((new Date(line.time) - new Date(buckets[0].time)) / width);
        while (at >= buckets.length) {
          const last = new Date(buckets.at(-1).time).getTime();
          buckets.shift();
          buckets.push({ time: new Date(last + width).toISOString(), count: 0 });
          at -= 1;
        }
        if (at >= 0) buckets[at].count += 1;
        $("#histogram").innerHTML = bars(buckets);
      }
    });
  }
}

/** Whether the signed-in role includes `role`. */
function can(role) {
  const rank = { viewer: 0, operator: 1, admin: 2 };
  return (rank[state.session?.role] ?? -1) >= rank[role];
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

function short(id) {
  return String(id || "").replace("sha256:", "").slice(0, 12);
}

/** The hash's parameters (`#/page?k=v`). */
function hashParams() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

const PALETTE = ["var(--accent)", "var(--ok)", "var(--warn)", "var(--bad)", "#8250df", "#bf3989"];

/**
 * Short names for a chart's series: the fewest of the usual labels (container name, service,
 * app, ...) that tell them apart, and a container's short id where replicas of different
 * releases share a name.
 */
function seriesNames(series, query) {
  const prefer = ["name", "service", "app", "image", "device", "interface", "mode", "cpu"];
  const present = (k) => series.some((s) => s.labels[k] !== undefined);
  const distinct = (keys) => new Set(series.map((s) => keys.map((k) => s.labels[k]).join("\u0000"))).size;
  const shown = [];
  for (const k of prefer) {
    if (!present(k) || (series.length > 1 && distinct([...shown, k]) <= (shown.length ? distinct(shown) : 1))) continue;
    shown.push(k);
    if (distinct(shown) === series.length) break;
  }
  if (!shown.length) shown.push(...prefer.filter(present).slice(0, 1));
  const names = series.map((s) => shown.map((k) => s.labels[k]).filter(Boolean).join(" "));
  return series.map((s, i) => {
    const shared = names.filter((n) => n === names[i]).length > 1;
    const id = (s.labels.id || "").split("/").pop().replace(/^docker-|\.scope$/g, "").slice(0, 12);
    return `${names[i]}${shared && id ? ` (${id})` : ""}` || query;
  });
}

/**
 * An SVG line chart of a metrics query's series over its range, with a legend and a text
 * alternative; `format` renders a value.
 */
function lineChart(result, format = (v) => v.toPrecision(3)) {
  const series = result.series || [];
  const points = series.flatMap((s) => s.points);
  if (!points.length) return `<p class="muted">No data in this range yet.</p>`;
  // from the first point when the data starts later than the range (a new container)
  const first = Math.min(...points.map((p) => new Date(p[0]).getTime()));
  const t0 = Math.max(new Date(result.start).getTime(), first);
  const t1 = Math.max(new Date(result.end).getTime(), t0 + 1);
  const max = Math.max(...points.map((p) => p[1]), 1e-9);
  const names = seriesNames(series, result.query);
  const label = (s) => names[series.indexOf(s)];
  const lines = series.map((s, i) => {
    const xy = s.points.map((p) => [((new Date(p[0]).getTime() - t0) / (t1 - t0)) * 100, 100 - (p[1] / max) * 95]);
    // one reading is a short dash at its time, so that it shows
    if (xy.length === 1) xy.unshift([Math.max(0, xy[0][0] - 2), xy[0][1]]);
    const d = xy.map(([x, y]) => `${x.toFixed(2)},${y.toFixed(2)}`).join(" ");
    return `<polyline points="${d}" style="fill: none; stroke: ${PALETTE[i % PALETTE.length]}"
      stroke-width="1.5" vector-effect="non-scaling-stroke"><title>${esc(label(s))}</title></polyline>`;
  }).join("");
  const last = series.map((s, i) => `<li><span class="swatch" style="background:${PALETTE[i % PALETTE.length]}"></span>
    ${esc(label(s))}: <strong>${esc(format(s.points.at(-1)?.[1] ?? 0))}</strong></li>`).join("");
  return `<svg class="chart line" viewBox="0 0 100 100" preserveAspectRatio="none" role="img"
      aria-label="${esc(result.query)}: ${series.length} series, highest ${esc(format(max))}">${lines}</svg>
    <div class="axis muted"><span>${esc(when(new Date(t0).toISOString()))}</span><span>max ${esc(format(max))}</span><span>${esc(when(result.end))}</span></div>
    <ul class="legend">${last}</ul>`;
}

async function chartInto(el, query, since, format) {
  try {
    const r = await api("GET", `/api/v1/metrics/query?${new URLSearchParams({ query, since })}`);
    el.innerHTML = lineChart(r, format);
  } catch (e) {
    el.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

const perSecond = (v) => `${bytes(v)}/s`;
const cores = (v) => `${(v * 100).toFixed(v < 0.1 ? 2 : 1)}% of a core`;

async function appsPage() {
  const apps = await api("GET", "/api/v1/apps");
  $("#main").innerHTML = `<h1>Apps</h1>
    <section class="card" aria-labelledby="h-apps"><h2 id="h-apps">Deployed</h2>
      ${table(["App", "Release", "Result", "Running", "Deployed"], apps.map((a) => [
        `<a href="#/apps/${encodeURIComponent(a.name)}">${esc(a.name)}</a>`, esc(a.release),
        `<span class="${resultClass(a.result)}">${esc(a.result)}</span>`,
        `${esc(a.running)} / ${esc(a.containers)}`, esc(when(a.time)),
      ]), "No app deployed yet.")}</section>
    ${can("operator") ? `<section class="card" aria-labelledby="h-new"><h2 id="h-new">Deploy a new app</h2>
      <form id="new-app" class="row">
        <label>Name <input id="new-name" required pattern="[a-z0-9][a-z0-9_-]*" placeholder="my-app"></label>
        <button type="submit">Continue</button>
      </form></section>` : ""}`;
  $("#new-app")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/apps/${encodeURIComponent($("#new-name").value.trim())}`;
  });
}

/** A line diff (longest common subsequence) of two texts as `[kind, line]`, kind ' ', '+' or '-'. */
function diffLines(a, b) {
  const x = a.split("\n");
  const y = b.split("\n");
  const n = x.length;
  const m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { out.push([" ", x[i]]); i += 1; j += 1; }
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) { out.push(["+", y[j]]); j += 1; }
    else { out.push(["-", x[i]]); i += 1; }
  }
  return out;
}

function releaseText(r) {
  return JSON.stringify({ model: r.model, images: r.images }, null, 2);
}

function renderDiff(from, to) {
  const lines = diffLines(releaseText(from), releaseText(to));
  const changed = lines.filter(([k]) => k !== " ").length;
  // unchanged runs are folded to three lines of context
  const keep = lines.map(([k], i) => k !== " " || lines.slice(Math.max(0, i - 3), i + 4).some(([c]) => c !== " "));
  let html = "";
  let folded = false;
  lines.forEach(([k, line], i) => {
    if (!keep[i]) {
      if (!folded) html += `<span class="fold">…</span>\n`;
      folded = true;
      return;
    }
    folded = false;
    const cls = k === "+" ? "add" : k === "-" ? "del" : "";
    html += `<span class="${cls}">${esc(k)} ${esc(line)}</span>\n`;
  });
  return `<p id="diff-summary">Release ${esc(from.number)} → ${esc(to.number)}: ${changed} changed line${changed === 1 ? "" : "s"}.</p>
    ${changed ? `<pre class="diff" tabindex="0" aria-label="differences">${html}</pre>` : ""}`;
}

/**
 * Posts a deploy or rollback asking for NDJSON progress, and shows each step as it comes.
 * Answers the release's outcome, `refused`, or `error` when the answer broke off.
 */
async function streamRelease(path, body, contentType) {
  try {
    return await postRelease(path, body, contentType);
  } catch (e) {
    const status = $("#release-status");
    if (status) {
      status.textContent = `The answer broke off: ${e.message}. The release goes on in capstan; its result shows below once the page is drawn again.`;
      status.className = "error";
    }
    return "error";
  }
}

async function postRelease(path, body, contentType) {
  const out = $("#progress");
  const status = $("#release-status");
  out.innerHTML = "";
  status.textContent = "Working…";
  status.className = "warn";
  const headers = { accept: "application/x-ndjson", "x-csrf-token": state.session.csrf_token };
  if (contentType) headers["content-type"] = contentType;
  const resp = await fetch(path, { method: "POST", headers, body, credentials: "same-origin" });
  if (!resp.ok) {
    const data = await resp.json().catch(() => null);
    status.textContent = data?.error?.message || `${resp.status} ${resp.statusText}`;
    status.className = "error";
    return "refused";
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  let report = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (!line.trim()) continue;
      const item = JSON.parse(line);
      if (item.report) report = item.report;
      else if (item.error) { status.textContent = item.error; status.className = "error"; }
      else {
        const li = document.createElement("li");
        li.textContent = `${item.service}: ${item.message}`;
        out.append(li);
      }
    }
  }
  if (report) {
    status.textContent = `Release ${report.release}: ${report.outcome}${report.error ? ` (${report.error})` : ""}`;
    status.className = report.outcome === "succeeded" ? "ok" : "error";
  }
  return report?.outcome;
}

/** An app's containers, by name, linked to their pages, with state and health. */
function replicasTable(containers) {
  return table(["Service", "Container", "State", "Status", "Image"], containers
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((c) => [esc(c.labels["io.capstan.service"] || "-"),
      `<a href="#/containers/${encodeURIComponent(c.id)}">${esc(c.name)}</a>`,
      `<span class="${c.state === "running" ? "ok" : "bad"}">${esc(c.state)}</span>`,
      `<span class="${/unhealthy/.test(c.status) ? "bad" : /healthy/.test(c.status) ? "ok" : ""}">${esc(c.status)}</span>`,
      esc(c.image)]), "No containers.");
}

async function appPage(name) {
  const route = state.route;
  // drawn again after a release: the streams of the drawing before go
  closeStreams();
  const asked = new Date().toISOString();
  const [releases, containers] = await Promise.all([
    api("GET", `/api/v1/apps/${encodeURIComponent(name)}/releases`).catch((e) => (e.status === 404 ? [] : Promise.reject(e))),
    api("GET", `/api/v1/containers?all=true&app=${encodeURIComponent(name)}`).catch(() => ({ containers: [] })),
  ]);
  still(route);
  const current = releases.find((r) => r.result === "succeeded" || r.result === "running") || releases[0];
  const operator = can("operator");
  const options = (sel) => releases.map((r) => `<option value="${r.number}" ${r.number === sel ? "selected" : ""}>${r.number} · ${esc(r.result)} · ${esc(when(r.time))}</option>`).join("");
  $("#main").innerHTML = `<h1>App ${esc(name)}</h1>
    <div class="grid">
    <section class="card" aria-labelledby="h-replicas" style="grid-column: 1 / -1"><h2 id="h-replicas">Services and replicas</h2>
      <div id="replicas">${replicasTable(containers.containers)}</div></section>
    <section class="card" aria-labelledby="h-app-cpu"><h2 id="h-app-cpu">CPU by service</h2><div id="app-cpu">…</div></section>
    <section class="card" aria-labelledby="h-app-mem"><h2 id="h-app-mem">Memory by service</h2><div id="app-mem">…</div></section>
    <section class="card" aria-labelledby="h-releases" style="grid-column: 1 / -1"><h2 id="h-releases">Releases</h2>
      ${table(["#", "Time", "By", "Result", "Images"], releases.map((r) => [esc(r.number), esc(when(r.time)), esc(r.actor),
        `<span class="${resultClass(r.result)}">${esc(r.result)}</span>`,
        esc(Object.entries(r.images || {}).map(([s, i]) => `${s}=${short(i)}`).join(" "))]), "Never deployed.")}
      ${releases.length > 1 ? `<form id="diff-form" class="row">
        <label>From <select id="diff-from">${options(releases[1].number)}</select></label>
        <label>To <select id="diff-to">${options(releases[0].number)}</select></label>
        <button type="submit" id="diff-show">Compare</button></form><div id="diff"></div>` : ""}
    </section>
    ${operator ? `<section class="card" aria-labelledby="h-deploy" style="grid-column: 1 / -1"><h2 id="h-deploy">Deploy</h2>
      <form id="deploy-form">
        <label for="compose">Compose file (YAML; JSON is YAML too)</label>
        <textarea id="compose" rows="14" spellcheck="false" required>${esc(current ? JSON.stringify(current.model, null, 2) : "services:\n  web:\n    image: \n")}</textarea>
        <div class="row">
          <label>or upload <input type="file" id="compose-file" accept=".yaml,.yml,.json"></label>
          <button type="submit" id="deploy">Deploy</button>
        </div>
      </form>
      ${releases.length > 1 ? `<form id="rollback-form" class="row">
        <label>Roll back to <select id="rollback-to">${options(releases.find((r) => r.number !== current?.number)?.number)}</select></label>
        <button type="submit" id="rollback">Roll back…</button></form>` : ""}
      <p id="release-status" role="status" aria-live="polite"></p>
      <ol id="progress" class="progress" aria-label="rollout progress"></ol>
    </section>` : ""}
    </div>
    <dialog id="confirm" aria-labelledby="confirm-title">
      <form method="dialog">
        <h2 id="confirm-title">Roll back?</h2>
        <p id="confirm-text"></p>
        <div class="row"><button value="cancel" type="submit" id="confirm-cancel" class="secondary">Cancel</button>
          <button value="ok" type="submit" id="confirm-ok">Roll back</button></div>
      </form>
    </dialog>`;
  // the services' use of the last hour, drawn when it comes (not holding the page)
  const app = `{app="${name.replace(/["\\]/g, "")}"}`;
  chartInto($("#app-cpu"), `sum by (service) (rate(container_cpu_usage_seconds_total${app}[1m]))`, "1h", cores);
  chartInto($("#app-mem"), `sum by (service) (container_memory_working_set_bytes${app})`, "1h", bytes);
  // replicas follow their containers' events: created, started, died, health changed
  const redraw = debounce(async () => {
    const now = await api("GET", `/api/v1/containers?all=true&app=${encodeURIComponent(name)}`).catch(() => null);
    if (now && $("#replicas")) $("#replicas").innerHTML = replicasTable(now.containers);
  });
  stream(`/api/v1/events/stream?${new URLSearchParams({ type: "container", since: asked })}`, "event", (e) => {
    if (e.attributes?.["io.capstan.app"] === name) redraw();
  });
  $("#diff-form")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const pick = (id) => releases.find((r) => String(r.number) === $(id).value);
    $("#diff").innerHTML = renderDiff(pick("#diff-from"), pick("#diff-to"));
  });
  $("#compose-file")?.addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (file) $("#compose").value = await file.text();
  });
  $("#deploy-form")?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const outcome = await streamRelease(`/api/v1/apps/${encodeURIComponent(name)}/deploy`, $("#compose").value, "application/yaml");
    await refreshReplicas(name, outcome);
  });
  $("#rollback-form")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const to = $("#rollback-to").value;
    const dialog = $("#confirm");
    $("#confirm-text").textContent = `${name} goes back to release ${to}: its services are replaced, health-gated, one replica at a time.`;
    dialog.returnValue = "";
    dialog.showModal();
    $("#confirm-cancel").focus();
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "ok") { $("#rollback").focus(); return; }
      const outcome = await streamRelease(`/api/v1/apps/${encodeURIComponent(name)}/rollback?to=${encodeURIComponent(to)}`, undefined);
      await refreshReplicas(name, outcome);
    }, { once: true });
  });
}

/**
 * After a release: the page drawn again (replicas, releases), keeping the release's steps and
 * status; the outcome is marked last, once the page is stable.
 */
async function refreshReplicas(name, outcome) {
  if (!location.hash.startsWith(`#/apps/${encodeURIComponent(name)}`)) return;
  const status = $("#release-status");
  const keep = status ? [status.textContent, status.className] : null;
  const items = $("#progress")?.innerHTML;
  const focused = document.activeElement?.id;
  try {
    await appPage(name);
  } catch (e) {
    // the page stays as it was; the outcome is still marked
    if (keep) keep[0] += ` (the page could not be drawn again: ${e.message})`;
  }
  if (keep && $("#release-status")) {
    $("#release-status").textContent = keep[0];
    $("#release-status").className = keep[1];
    $("#progress").innerHTML = items;
    if (outcome) $("#release-status").dataset.outcome = outcome;
  }
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
}

async function containerPage(id) {
  const route = state.route;
  const list = await api("GET", "/api/v1/containers?all=true");
  const c = list.containers.find((x) => x.id === id || x.id.startsWith(id) || x.name === id);
  if (!c) {
    $("#main").innerHTML = `<h1>Container</h1><p class="error" role="alert">No container ${esc(id)} (it may have been removed; its logs stay searchable).</p>
      <p><a href="#/logs?${new URLSearchParams({ q: `container_id:${id}`, since: "7d" })}">Search its logs</a></p>`;
    return;
  }
  // by id: a name is reused by the replicas of later releases
  const sel = `{id=~".*${c.id}.*"}`;
  const app = c.labels["io.capstan.app"];
  $("#main").innerHTML = `<h1>Container ${esc(c.name)}</h1>
    <div class="grid">
    <section class="card" aria-labelledby="h-summary"><h2 id="h-summary">Summary</h2>
      <dl class="facts">
        <dt>State</dt><dd id="c-state" class="${c.state === "running" ? "ok" : "bad"}">${esc(c.state)} · ${esc(c.status)}</dd>
        <dt>Id</dt><dd><code>${esc(short(c.id))}</code></dd>
        <dt>Image</dt><dd><a href="#/images/${encodeURIComponent(c.image_id)}">${esc(c.image)}</a></dd>
        <dt>Created</dt><dd>${esc(when(c.created))}</dd>
        ${app ? `<dt>App</dt><dd><a href="#/apps/${encodeURIComponent(app)}">${esc(app)}</a> / ${esc(c.labels["io.capstan.service"] || "")}</dd>` : ""}
      </dl></section>
    <section class="card" aria-labelledby="h-cpu"><h2 id="h-cpu">CPU</h2><div id="chart-cpu">…</div></section>
    <section class="card" aria-labelledby="h-mem"><h2 id="h-mem">Memory (working set)</h2><div id="chart-mem">…</div></section>
    <section class="card" aria-labelledby="h-net"><h2 id="h-net">Network received</h2><div id="chart-net">…</div></section>
    <section class="card" aria-labelledby="h-clogs" style="grid-column: 1 / -1"><h2 id="h-clogs">Logs (live)</h2><div id="lines">…</div></section>
    <section class="card" aria-labelledby="h-cevents" style="grid-column: 1 / -1"><h2 id="h-cevents">Events</h2><div id="events">…</div></section>
    </div>`;
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
  const render = () => {
    $("#lines").innerHTML = table(["Time", "Stream", "Level", "Message"],
      state.lines.map((l) => { const r = logRow(l); r[1] = esc(l.stream); return r; }), "No lines yet.");
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

async function imagesPage() {
  $("#main").innerHTML = `<h1>Images</h1>
    <section class="card" aria-labelledby="h-inv"><h2 id="h-inv">Inventory</h2><div id="inventory">…</div></section>
    <section class="card" aria-labelledby="h-upd"><h2 id="h-upd">Updates</h2><div id="image-updates">…</div></section>
    <section class="card" aria-labelledby="h-vuln"><h2 id="h-vuln">Vulnerabilities of running containers</h2><div id="findings">…</div></section>`;
  // each part as soon as it is known: a first scan of a new image takes a while
  const fill = (id, html) => { if ($(id)) $(id).innerHTML = html; };
  await Promise.all([
    api("GET", "/api/v1/images").then((list) => fill("#inventory", table(
      ["Image", "Id", "Size", "Containers", "Created", "Last seen"], list.images.map((i) => [
        `<a href="#/images/${encodeURIComponent(i.id)}">${esc(i.repo_tags[0] || "<none>")}</a>${i.repo_tags.length > 1 ? ` <span class="muted">+${i.repo_tags.length - 1}</span>` : ""}`,
        `<code>${esc(short(i.id))}</code>`, esc(bytes(i.size)), esc(i.containers), esc(when(i.created)), esc(when(i.last_seen))]),
      "No images."))),
    api("GET", "/api/v1/images/updates").then((updates) => fill("#image-updates", table(
      ["Reference", "Policy", "Candidate", "Checked", "Why"], (updates.updates || []).map((u) => [
        esc(u.reference), esc(u.policy),
        u.candidate ? `<span class="warn">${esc(u.candidate.tag || short(u.candidate.digest))}</span>` : `<span class="ok">up to date</span>`,
        esc(when(u.checked_at)), esc(u.error || u.reason)]), "Nothing watched yet.")))
      .catch(() => fill("#image-updates", `<p class="muted">Registry watching is off.</p>`)),
    api("GET", "/api/v1/images/findings").then((findings) => fill("#findings", table(
      ["Container", "Image", "Critical", "High", "Medium", "Low", ""], findings.map((f) => [
        esc(f.container), esc(f.image), ...["critical", "high", "medium", "low"].map((sev) => esc(f.counts?.[sev] ?? 0)),
        esc(f.error || "")]), "No running containers.")))
      .catch((e) => fill("#findings", `<p class="muted">${esc(e.message)} (capstan vulndb import loads advisories)</p>`)),
  ]);
}

async function imagePage(key) {
  const d = await api("GET", `/api/v1/images/${encodeURIComponent(key)}`);
  const i = d.image;
  $("#main").innerHTML = `<h1>Image ${esc(i.repo_tags[0] || short(i.id))}</h1>
    <section class="card" aria-labelledby="h-img"><h2 id="h-img">Summary</h2>
      <dl class="facts"><dt>Id</dt><dd><code>${esc(i.id)}</code></dd>
        <dt>References</dt><dd>${esc(i.repo_tags.join(", ") || "-")}</dd>
        <dt>Digests</dt><dd>${esc(i.repo_digests.join(", ") || "-")}</dd>
        <dt>Size</dt><dd>${esc(bytes(i.size))}, ${esc(i.layers)} layers</dd>
        <dt>State</dt><dd>${i.deleted ? `<span class="bad">deleted ${esc(when(i.deleted))}</span>` : "present"}</dd></dl></section>
    <section class="card" aria-labelledby="h-life"><h2 id="h-life">Lifecycle</h2>
      <ol class="timeline" id="timeline">${d.history.map((h) => `<li><time>${esc(when(h.time))}</time>
        <strong>${esc(h.action)}</strong> ${esc(h.reference || "")}${h.inferred ? ` <span class="muted">(inferred)</span>` : ""}</li>`).join("")}</ol></section>
    <section class="card" aria-labelledby="h-ic"><h2 id="h-ic">Containers</h2>
      ${d.container_ids.length ? `<ul>${d.container_ids.map((c) => `<li><a href="#/containers/${encodeURIComponent(c)}">${esc(short(c))}</a></li>`).join("")}</ul>` : `<p class="muted">None.</p>`}</section>`;
}

const METRIC_PRESETS = [
  ["CPU per container", "rate(container_cpu_usage_seconds_total[1m])"],
  ["CPU per service", "sum by (service) (rate(container_cpu_usage_seconds_total[1m]))"],
  ["Memory per container", "container_memory_working_set_bytes"],
  ["Network in per container", "rate(container_network_receive_bytes_total[1m])"],
  ["Host load", "node_load1"],
];

async function metricsPage() {
  const params = hashParams();
  const query = params.get("query") || METRIC_PRESETS[0][1];
  const since = params.get("since") || "1h";
  $("#main").innerHTML = `<h1>Metrics</h1>
    <form id="metrics-form" class="card row">
      <label style="flex:1 1 22rem">Query <input id="m-query" value="${esc(query)}" list="m-presets"></label>
      <datalist id="m-presets">${METRIC_PRESETS.map(([n, q]) => `<option value="${esc(q)}">${esc(n)}</option>`).join("")}</datalist>
      <label>Range <select id="m-since">${["15m", "1h", "6h", "1d", "7d"].map((d) => `<option ${since === d ? "selected" : ""}>${d}</option>`).join("")}</select></label>
      <button type="submit">Show</button>
    </form>
    <p class="muted">Presets: ${METRIC_PRESETS.map(([n, q]) => `<a href="#/metrics?${new URLSearchParams({ query: q, since })}">${esc(n)}</a>`).join(" · ")}</p>
    <section class="card" aria-labelledby="h-chart"><h2 id="h-chart">${esc(query)}</h2><div id="chart">…</div></section>`;
  $("#metrics-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/metrics?${new URLSearchParams({ query: $("#m-query").value.trim(), since: $("#m-since").value })}`;
  });
  const format = /bytes/.test(query) ? (/rate|increase/.test(query) ? perSecond : bytes) : (/cpu/.test(query) && /rate/.test(query) ? cores : undefined);
  await chartInto($("#chart"), query, since, format);
}

async function accessPage() {
  const [tokens, users, audit] = await Promise.all([
    api("GET", "/api/v1/tokens"),
    api("GET", "/api/v1/users"),
    api("GET", "/api/v1/audit?limit=100"),
  ]);
  const roles = ["viewer", "operator", "admin"].map((r) => `<option>${r}</option>`).join("");
  $("#main").innerHTML = `<h1>Access</h1>
    <section class="card" aria-labelledby="h-tokens"><h2 id="h-tokens">Tokens</h2>
      ${table(["Name", "Role", "Created", "By", "Last used", ""], tokens.tokens.map((t) => [
        esc(t.name), esc(t.role), esc(when(t.created)), esc(t.created_by), esc(when(t.last_used)),
        t.revoked ? `<span class="muted">revoked ${esc(when(t.revoked))}</span>` : `<button type="button" data-revoke="${esc(t.name)}">Revoke</button>`]),
        "No tokens.")}
      <form id="token-form" class="row">
        <label>Name <input id="token-name" required></label>
        <label>Role <select id="token-role">${roles}</select></label>
        <button type="submit">Create token</button>
      </form>
      <p id="token-secret" role="status" aria-live="polite"></p></section>
    <section class="card" aria-labelledby="h-users"><h2 id="h-users">Users</h2>
      ${table(["Name", "Role", "Created", ""], users.users.map((u) => [esc(u.name), esc(u.role), esc(when(u.created)),
        `<button type="button" data-remove-user="${esc(u.name)}">Remove</button>`]), "No users.")}
      <form id="user-form" class="row">
        <label>Name <input id="user-name" required autocomplete="off"></label>
        <label>Password <input id="user-password" type="password" required minlength="8" autocomplete="new-password"></label>
        <label>Role <select id="user-role">${roles}</select></label>
        <button type="submit">Add user</button>
      </form>
      <p id="access-error" class="error" role="alert"></p></section>
    <section class="card" aria-labelledby="h-audit"><h2 id="h-audit">Audit log</h2>
      <div id="audit">${table(["Time", "Who", "Role", "Request", "Status", "From"], audit.entries.map((a) => [
        esc(when(a.time)), esc(a.who), esc(a.role), `<code>${esc(a.method)} ${esc(a.path)}</code>`,
        `<span class="${a.status < 400 ? "ok" : "bad"}">${esc(a.status)}</span>`, esc(a.remote)]), "Nothing recorded yet.")}</div></section>`;
  const fail = (e) => { if (!(e instanceof Stale) && $("#access-error")) $("#access-error").textContent = e.message; };
  $("#token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const made = await api("POST", "/api/v1/tokens", { name: $("#token-name").value.trim(), role: $("#token-role").value });
      await accessPage();
      $("#token-secret").innerHTML = `Token ${esc(made.info.name)}: <code id="new-token">${esc(made.token)}</code> (shown once; copy it now)`;
    } catch (e) { fail(e); }
  });
  $("#user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/v1/users", { name: $("#user-name").value.trim(), password: $("#user-password").value, role: $("#user-role").value });
      await accessPage();
    } catch (e) { fail(e); }
  });
  for (const b of document.querySelectorAll("button[data-revoke]")) {
    b.addEventListener("click", async () => {
      if (!confirm(`Revoke token ${b.dataset.revoke}? Clients using it are refused at once.`)) return;
      try { await api("DELETE", `/api/v1/tokens/${encodeURIComponent(b.dataset.revoke)}`); await accessPage(); } catch (e) { fail(e); }
    });
  }
  for (const b of document.querySelectorAll("button[data-remove-user]")) {
    b.addEventListener("click", async () => {
      if (!confirm(`Remove user ${b.dataset.removeUser}? Their sessions end.`)) return;
      try { await api("DELETE", `/api/v1/users/${encodeURIComponent(b.dataset.removeUser)}`); await accessPage(); } catch (e) { fail(e); }
    });
  }
}

async function route() {
  if (!state.session) return;
  const mine = ++state.route;
  closeStreams();
  const page = location.hash.split("?")[0];
  for (const a of document.querySelectorAll("#nav a")) {
    const href = a.getAttribute("href");
    if (href === (page || "#/") || (href !== "#/" && page.startsWith(`${href}/`))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    const [, section, key] = page.split("/").map(decodeURIComponent);
    if (page === "#/alerts") await alertsPage();
    else if (page === "#/events") await eventsPage();
    else if (page === "#/logs") await logsPage();
    else if (page === "#/apps") await appsPage();
    else if (section === "apps" && key) await appPage(key);
    else if (section === "containers" && key) await containerPage(key);
    else if (page === "#/images") await imagesPage();
    else if (section === "images" && key) await imagePage(page.slice("#/images/".length).split("/").map(decodeURIComponent).join("/"));
    else if (page === "#/metrics") await metricsPage();
    else if (page === "#/access" && can("admin")) await accessPage();
    else await overview();
    $("#main").focus({ preventScroll: true });
  } catch (e) {
    // a page left while it was drawn: the page shown now is not touched
    if (e instanceof Stale || mine !== state.route) return;
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
