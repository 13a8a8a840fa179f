// Alerts: what fires or is pending (live), the rules with a test button, and the history.

import { $, api, debounce, stream } from "../core.js";
import { labelText, when } from "../format.js";
import { html, put } from "../html.js";
import { table } from "../widgets.js";

function drawNow(alerts) {
  put($("#alerts-now"), table(["State", "Rule", "Severity", "Labels", "Value", "Since", "Summary"],
    alerts.map((a) => [
      html`<span class="pill ${a.state === "firing" ? "bad" : "warn"}">${a.state}${a.held ? " (held: rollout)" : ""}</span>`,
      a.rule, a.labels.severity, labelText(a.labels), a.value ?? "-",
      when(a.active_since), a.annotations.summary || "",
    ]), "Nothing firing or pending."));
}

/** A rule's test: whether it would fire now, and why, said in `#rule-test`. */
async function testRule(name) {
  const out = $("#rule-test");
  out.textContent = `Testing ${name}…`;
  try {
    const t = await api("POST", `/api/v1/alerts/rules/${encodeURIComponent(name)}/test`);
    const verdict = t.would_fire ? "would fire" : t.holds ? "holds, but would not fire yet" : "would not fire";
    out.textContent = `${t.rule}: ${verdict}. ${t.reason}`;
  } catch (e) {
    out.textContent = `${name}: ${e.message}`;
  }
}

export async function alertsPage() {
  put($("#main"), html`<h1>Alerts</h1><div class="grid">
    <section class="card" aria-labelledby="h-now" style="grid-column: 1 / -1"><h2 id="h-now">Firing and pending</h2><div id="alerts-now">…</div></section>
    <section class="card" aria-labelledby="h-rules" style="grid-column: 1 / -1"><h2 id="h-rules">Rules</h2><div id="rules">…</div>
      <p id="rule-test" class="muted" role="status" aria-live="polite"></p></section>
    <section class="card" aria-labelledby="h-history" style="grid-column: 1 / -1"><h2 id="h-history">History</h2><div id="history">…</div></section>
  </div>`);
  const asked = new Date().toISOString();
  const [now, rules, history] = await Promise.all([
    api("GET", "/api/v1/alerts"),
    api("GET", "/api/v1/alerts/rules"),
    api("GET", "/api/v1/alerts/history?limit=100"),
  ]);
  drawNow(now.alerts);
  // alerts move live: every pending, firing or resolved step is a journaled event
  const redraw = debounce(async () => {
    const fresh = await api("GET", "/api/v1/alerts").catch(() => null);
    if (fresh && $("#alerts-now")) drawNow(fresh.alerts);
  });
  stream(`/api/v1/events/stream?${new URLSearchParams({ type: "capstan", since: asked })}`, "event", (e) => {
    if (e.action.startsWith("alert_")) redraw();
  });
  put($("#rules"), table(["Rule", "Kind", "Source", "For", "Firing", "Condition", ""],
    rules.rules.map((r) => [
      r.name, r.kind, r.source, r.for, r.firing, r.condition,
      html`<button type="button" data-test="${r.name}">Test</button>`,
    ]), "No rules."));
  for (const b of document.querySelectorAll("button[data-test]")) {
    b.addEventListener("click", () => testRule(b.dataset.test));
  }
  put($("#history"), table(["Time", "State", "Rule", "Labels", "Value", "Summary"],
    history.events.map((e) => {
      const a = e.attributes || {};
      const l = Object.fromEntries(Object.entries(a).filter(([k]) =>
        !k.startsWith("annotation.") && !["rule", "state", "fingerprint", "active_since", "value"].includes(k)));
      return [when(e.time), e.action.replace("alert_", ""), e.actor, labelText(l),
        a.value ?? "-", a["annotation.summary"] || ""];
    }), "No alert has moved yet."));
}
