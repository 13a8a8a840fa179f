// Apps: the list, and an app's page (replicas live, its services' use, releases and their
// differences, deploying and rolling back with the rollout's steps shown as they come).

import { $, api, can, closeStreams, debounce, hashParams, state, still, stream } from "../core.js";
import { bytes, cores, resultClass, short, when } from "../format.js";
import { html, put } from "../html.js";
import { renderDiff, streamRelease } from "../release.js";
import { chartInto, table } from "../widgets.js";

export async function appsPage() {
  const all = await api("GET", "/api/v1/apps");
  // where they run: a target of [[targets]] or a fleet host (`#/apps?target=NAME`)
  const targets = [...new Set(all.map((a) => a.target || "local"))].sort();
  const only = hashParams().get("target");
  const apps = all.filter((a) => !only || (a.target || "local") === only);
  put($("#main"), html`<h1>Apps</h1>
    <section class="card" aria-labelledby="h-apps"><h2 id="h-apps">Deployed</h2>
      ${targets.length > 1 && html`<p>Where: <select id="apps-target" aria-label="target or host">
        <option value="">everywhere</option>
        ${targets.map((t) => html`<option ${only === t && "selected"}>${t}</option>`)}</select></p>`}
      ${table(["App", "Target", "Release", "Result", "Running", "Deployed"], apps.map((a) => [
        html`<a href="#/apps/${encodeURIComponent(a.name)}">${a.name}</a>`, a.target || "local", a.release,
        html`<span class="${resultClass(a.result)}">${a.result}</span>`,
        `${a.running} / ${a.containers}`, when(a.time),
      ]), "No app deployed yet.")}</section>
    ${can("operator") && html`<section class="card" aria-labelledby="h-new"><h2 id="h-new">Deploy a new app</h2>
      <form id="new-app" class="row">
        <label>Name <input id="new-name" required pattern="[a-z0-9][a-z0-9_-]*" placeholder="my-app"></label>
        <button type="submit">Continue</button>
      </form></section>`}`);
  $("#apps-target")?.addEventListener("change", (ev) => {
    location.hash = ev.target.value ? `#/apps?${new URLSearchParams({ target: ev.target.value })}` : "#/apps";
  });
  $("#new-app")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/apps/${encodeURIComponent($("#new-name").value.trim())}`;
  });
}

/** An app's containers, by name, linked to their pages, with state and health. A replica a
 * rollout set aside (`<slot>-retiring-<id>`) is out of rotation and stopping: said so. */
function replicasTable(containers) {
  const leaving = (c) => /-retiring-[0-9a-f]{12}$/.test(c.name);
  return table(["Service", "Container", "State", "Status", "Image"], containers
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((c) => [c.labels["io.capstan.service"] || "-",
      html`<a href="#/containers/${encodeURIComponent(c.id)}">${c.name}</a>`,
      leaving(c) && c.state === "running"
        ? html`<span class="muted" title="out of rotation, stopping in the background">leaving</span>`
        : html`<span class="${c.state === "running" ? "ok" : "bad"}">${c.state}</span>`,
      html`<span class="${/unhealthy/.test(c.status) ? "bad" : /healthy/.test(c.status) ? "ok" : ""}">${c.status}</span>`,
      c.image]), "No containers.");
}

/** An app's replicas on a cluster: each task with its node, state, health and the port its
 * node publishes. */
function clusterTable(replicas) {
  return table(["Service", "Replica", "Node", "State", "Health", "Image", "Endpoints"], replicas.map((r) => [
    r.service, r.replica, r.node || "-",
    html`<span class="${r.state === "running" ? "ok" : "bad"}">${r.state}</span>`,
    html`<span class="${r.health === "healthy" ? "ok" : r.health === "unhealthy" ? "bad" : ""}">${r.health || ""}</span>`,
    short(r.image), r.endpoints.join(", ")]), "No replicas.");
}

/** The deploy and rollback forms, for those who may change what runs. */
function releaseForms(releases, current, options) {
  return html`<section class="card" aria-labelledby="h-deploy" style="grid-column: 1 / -1"><h2 id="h-deploy">Deploy</h2>
      <form id="deploy-form">
        <label for="compose">Compose file (YAML; JSON is YAML too)</label>
        <textarea id="compose" rows="14" spellcheck="false" required>${current ? JSON.stringify(current.model, null, 2) : "services:\n  web:\n    image: \n"}</textarea>
        <div class="row">
          <label>or upload <input type="file" id="compose-file" accept=".yaml,.yml,.json"></label>
          <button type="submit" id="deploy">Deploy</button>
        </div>
      </form>
      ${releases.length > 1 && html`<form id="rollback-form" class="row">
        <label>Roll back to <select id="rollback-to">${options(releases.find((r) => r.number !== current?.number)?.number)}</select></label>
        <button type="submit" id="rollback">Roll back…</button></form>`}
      <p id="release-status" role="status" aria-live="polite"></p>
      <ol id="progress" class="progress" aria-label="rollout progress"></ol>
    </section>`;
}

export async function appPage(name) {
  const route = state.route;
  // drawn again after a release: the streams of the drawing before go
  closeStreams();
  const asked = new Date().toISOString();
  const [releases, containers, apps, hook] = await Promise.all([
    api("GET", `/api/v1/apps/${encodeURIComponent(name)}/releases`).catch((e) => (e.status === 404 ? [] : Promise.reject(e))),
    api("GET", `/api/v1/containers?all=true&app=${encodeURIComponent(name)}`).catch(() => ({ containers: [] })),
    api("GET", "/api/v1/apps").catch(() => []),
    api("GET", `/api/v1/apps/${encodeURIComponent(name)}/hooks`).catch(() => null),
  ]);
  still(route);
  // on a cluster, the replicas are its tasks, each on its node
  const target = apps.find((a) => a.name === name)?.target || "local";
  const clustered = target !== "local";
  const tasks = () => api("GET", `/api/v1/apps/${encodeURIComponent(name)}/replicas`).catch(() => []);
  const first = clustered ? clusterTable(await tasks()) : replicasTable(containers.containers);
  still(route);
  const current = releases.find((r) => r.result === "succeeded" || r.result === "running") || releases[0];
  const options = (sel) => releases.map((r) => html`<option value="${r.number}" ${r.number === sel && "selected"}>${r.number} · ${r.result} · ${when(r.time)}</option>`);
  put($("#main"), html`<h1>App ${name}</h1>
    <div class="grid">
    <section class="card" aria-labelledby="h-replicas" style="grid-column: 1 / -1"><h2 id="h-replicas">Services and replicas</h2>
      <p>Target <strong id="app-target">${target}</strong></p>
      <div id="replicas">${first}</div></section>
    <section class="card" aria-labelledby="h-app-cpu"><h2 id="h-app-cpu">CPU by service</h2><div id="app-cpu">…</div></section>
    <section class="card" aria-labelledby="h-app-mem"><h2 id="h-app-mem">Memory by service</h2><div id="app-mem">…</div></section>
    <section class="card" aria-labelledby="h-releases" style="grid-column: 1 / -1"><h2 id="h-releases">Releases</h2>
      ${table(["#", "Time", "By", "Result", "Images", "Source"], releases.map((r) => [r.number, when(r.time), r.actor,
        html`<span class="${resultClass(r.result)}">${r.result}</span>`,
        Object.entries(r.images || {}).map(([s, i]) => `${s}=${short(i)}`).join(" "),
        r.source?.build ? html`<a href="#/builds/${r.source.build.id}" class="release-commit">build ${r.source.build.id} @${String(r.source.build.commit).slice(0, 12)}</a>` : ""]), "Never deployed.")}
      ${releases.length > 1 && html`<form id="diff-form" class="row">
        <label>From <select id="diff-from">${options(releases[1].number)}</select></label>
        <label>To <select id="diff-to">${options(releases[0].number)}</select></label>
        <button type="submit" id="diff-show">Compare</button></form><div id="diff"></div>`}
    </section>
    ${hook && (hook.source || hook.deliveries.length > 0) && html`<section class="card" aria-labelledby="h-hook" style="grid-column: 1 / -1"><h2 id="h-hook">Git webhook</h2>
      <p>${hook.source ? html`Source <code>${hook.source.repository}</code>, branch <strong>${hook.source.branch}</strong> · ` : ""}<code>${hook.path}</code> ·
        <a href="#/builds">builds</a></p>
      <div id="deliveries">${table(["Received", "Provider", "Event", "Outcome", "Commit", "Build", "Why"], hook.deliveries.map((d) => [
        when(d.received), d.provider, d.event,
        html`<span class="pill ${d.outcome === "accepted" ? "ok" : d.outcome === "skipped" ? "muted" : "bad"}">${d.outcome}</span>`,
        html`<code>${d.commit.slice(0, 12)}</code>`, d.build ? html`<a href="#/builds/${d.build}">${d.build}</a>` : "", d.reason]), "No deliveries yet.")}</div>
    </section>`}
    ${can("operator") && releaseForms(releases, current, options)}
    </div>
    <dialog id="confirm" aria-labelledby="confirm-title">
      <form method="dialog">
        <h2 id="confirm-title">Roll back?</h2>
        <p id="confirm-text"></p>
        <div class="row"><button value="cancel" type="submit" id="confirm-cancel" class="secondary">Cancel</button>
          <button value="ok" type="submit" id="confirm-ok">Roll back</button></div>
      </form>
    </dialog>`);
  // the services' use of the last hour, drawn when it comes (not holding the page)
  const app = `{app="${name.replace(/["\\]/g, "")}"}`;
  if (clustered) {
    // a manager has no statistics of its tasks: each node's engine does
    for (const id of ["#app-cpu", "#app-mem"]) {
      put($(id), html`<p class="muted">Not collected for an app on a cluster: a Swarm manager gives no task statistics (see docs/swarm.md).</p>`);
    }
  } else {
    chartInto($("#app-cpu"), `sum by (service) (rate(container_cpu_usage_seconds_total${app}[1m]))`, "1h", cores);
    chartInto($("#app-mem"), `sum by (service) (container_memory_working_set_bytes${app})`, "1h", bytes);
  }
  // replicas follow their containers' events: created, started, died, health changed
  const redraw = debounce(async () => {
    const now = await api("GET", `/api/v1/containers?all=true&app=${encodeURIComponent(name)}`).catch(() => null);
    if (now && $("#replicas")) put($("#replicas"), replicasTable(now.containers));
  });
  if (clustered) {
    // a cluster's tasks are asked for again while the page shows
    const again = async () => {
      if (state.route !== route || !$("#replicas")) return;
      put($("#replicas"), clusterTable(await tasks()));
      setTimeout(again, 5000);
    };
    setTimeout(again, 5000);
  } else {
    stream(`/api/v1/events/stream?${new URLSearchParams({ type: "container", since: asked })}`, "event", (e) => {
      if (e.attributes?.["io.capstan.app"] === name) redraw();
    });
  }
  $("#diff-form")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const pick = (id) => releases.find((r) => String(r.number) === $(id).value);
    put($("#diff"), renderDiff(pick("#diff-from"), pick("#diff-to")));
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
  const dialog = $("#confirm");
  $("#rollback-form")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const to = $("#rollback-to").value;
    $("#confirm-text").textContent = `${name} goes back to release ${to}: its services are replaced, health-gated, one replica at a time.`;
    dialog.dataset.to = to;
    dialog.returnValue = "";
    dialog.showModal();
    $("#confirm-cancel").focus();
  });
  // one handler for every closing: the close event of a Cancel is dispatched a moment later,
  // and may arrive after Roll back opened the dialog again. A listener added per opening took
  // that stale event and was gone, and the confirmed rollback never ran; a close that arrives
  // while the dialog is open is not this opening's
  dialog?.addEventListener("close", async () => {
    if (dialog.open) return;
    if (dialog.returnValue !== "ok") { $("#rollback").focus(); return; }
    const to = dialog.dataset.to;
    const outcome = await streamRelease(`/api/v1/apps/${encodeURIComponent(name)}/rollback?to=${encodeURIComponent(to)}`, undefined);
    await refreshReplicas(name, outcome);
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
  const steps = [...($("#progress")?.childNodes || [])];
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
    $("#progress").replaceChildren(...steps);
    if (outcome) $("#release-status").dataset.outcome = outcome;
  }
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
}
