// Security: the host checks (CIS Docker Benchmark ids) run now, their findings worst first with
// how to fix each, every check and how it went, and finding events as they come (live).

import { $, api, debounce, state, still } from "../core.js";
import { when } from "../format.js";
import { html, put } from "../html.js";
import { follow, renderEvents, table } from "../widgets.js";

const RATE = { critical: "bad", high: "bad", medium: "warn", low: "muted", unknown: "muted" };

/** A fix's text with its `quoted` settings and commands as code. */
function fixText(text) {
  return text.split("`").map((part, i) => (i % 2 ? html`<code>${part}</code>` : part));
}

/** The object: a container links to its page, a service to its app's. */
function objectCell(o) {
  if (o.kind !== "container") return `${o.kind} ${o.name}`;
  const [app, service] = o.name.split("/");
  if (service) return html`service <a href="#/apps/${encodeURIComponent(app)}">${app}</a>/${service}`;
  return html`container <a href="#/containers/${encodeURIComponent(o.name)}">${o.name}</a>`;
}

function drawFindings(report) {
  const counts = {};
  for (const f of report.findings) counts[f.severity] = (counts[f.severity] || 0) + 1;
  const summary = ["critical", "high", "medium", "low"].filter((s) => counts[s])
    .map((s) => `${counts[s]} ${s}`).join(", ");
  const failing = report.checks.filter((c) => c.status === "fail").length;
  put($("#sec-summary"), html`<p>${report.checks.length} checks on <code>${report.engine}</code> at ${when(report.checked_at)}:
    ${failing} of them find something${summary ? ` (${summary})` : ""}.</p>`);
  put($("#sec-findings"), table(["Severity", "Check", "Object", "Finding", "Fix", "Since"],
    report.findings.map((f) => [
      html`<span class="pill ${RATE[f.severity] || ""}">${f.severity}</span>`,
      html`<span title="${f.title}">${f.check}</span>`,
      objectCell(f.object), f.detail, fixText(f.fix), when(f.since),
    ]), "Nothing found: every check passes."));
  put($("#sec-checks"), table(["Check", "Status", "Severity", "Findings", "Title"],
    report.checks.map((c) => [
      c.id,
      html`<span class="${c.status === "fail" ? "bad" : c.status === "pass" ? "ok" : "muted"}">${c.status.replace("_", " ")}</span>`,
      c.severity, String(c.findings), c.note ? `${c.title} (${c.note})` : c.title,
    ]), "No checks."));
}

export async function securityPage() {
  const route = state.route;
  put($("#main"), html`<h1>Security</h1><div class="grid">
    <section class="card" aria-labelledby="h-sec-findings" style="grid-column: 1 / -1"><h2 id="h-sec-findings">Findings</h2>
      <div id="sec-summary" role="status" aria-live="polite">…</div><div id="sec-findings">…</div></section>
    <section class="card" aria-labelledby="h-sec-events" style="grid-column: 1 / -1"><h2 id="h-sec-events">Found and resolved (live)</h2><div id="events">…</div></section>
    <section class="card" aria-labelledby="h-sec-checks" style="grid-column: 1 / -1"><h2 id="h-sec-checks">Checks</h2><div id="sec-checks">…</div></section>
  </div>`);
  const asked = new Date().toISOString();
  const which = [["type", "capstan"], ["action", "security_finding"], ["action", "security_resolved"]];
  const [report, events] = await Promise.all([
    api("GET", "/api/v1/security"),
    api("GET", `/api/v1/events?${new URLSearchParams([...which, ["limit", "30"]])}`).catch(() => ({ events: [] })),
  ]);
  still(route);
  drawFindings(report);
  renderEvents(events.events || [], 30);
  // the findings are read again when the checks find or resolve something
  const redraw = debounce(async () => {
    const report = await api("GET", "/api/v1/security").catch(() => null);
    if (report && $("#sec-findings")) drawFindings(report);
  }, 1000);
  follow(`/api/v1/events/stream?${new URLSearchParams(which)}`, 30, asked, () => redraw());
}
