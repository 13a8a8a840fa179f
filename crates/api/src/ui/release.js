// A release as the app page shows it: its progress streamed while it runs, and the difference
// between two releases.

import { $, state } from "./core.js";
import { html } from "./html.js";

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

/** What changed from release `from` to release `to`, unchanged runs folded to three lines of
 * context. */
export function renderDiff(from, to) {
  const lines = diffLines(releaseText(from), releaseText(to));
  const changed = lines.filter(([k]) => k !== " ").length;
  const keep = lines.map(([k], i) => k !== " " || lines.slice(Math.max(0, i - 3), i + 4).some(([c]) => c !== " "));
  const shown = [];
  let folded = false;
  lines.forEach(([k, line], i) => {
    if (!keep[i]) {
      if (!folded) shown.push(html`<span class="fold">…</span>\n`);
      folded = true;
      return;
    }
    folded = false;
    const cls = k === "+" ? "add" : k === "-" ? "del" : "";
    shown.push(html`<span class="${cls}">${k} ${line}</span>\n`);
  });
  return html`<p id="diff-summary">Release ${from.number} → ${to.number}: ${changed} changed line${changed === 1 ? "" : "s"}.</p>
    ${changed > 0 && html`<pre class="diff" tabindex="0" aria-label="differences">${shown}</pre>`}`;
}

/**
 * Posts a deploy or rollback asking for NDJSON progress, and shows each step as it comes.
 * Answers the release's outcome, `refused`, or `error` when the answer broke off.
 */
export async function streamRelease(path, body, contentType) {
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
  out.replaceChildren();
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
