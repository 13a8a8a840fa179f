// The parts pages are drawn from: tables, the live event list, log lines, charts.

import { $, api, state, stream } from "./core.js";
import { when } from "./format.js";
import { html, put } from "./html.js";

/** A table; each cell is text (escaped) or markup. */
export function table(headers, rows, empty) {
  if (!rows.length) return html`<p class="muted">${empty}</p>`;
  return html`<table><thead><tr>${headers.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
    <tbody>${rows.map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody></table>`;
}

function eventRow(e) {
  const detail = Object.entries(e.attributes || {})
    .filter(([k]) => ["host", "name", "image", "app", "service", "rule", "reference", "check", "severity"].includes(k))
    .map(([k, v]) => `${k}=${v}`).join(" ");
  return [when(e.time), e.type, e.action, e.actor.slice(0, 40), detail];
}

/** The events list (`#events`), newest first, `keep` of them. */
export function renderEvents(list, keep = 15) {
  state.recent = list.slice(0, keep);
  put($("#events"), table(["Time", "Type", "Action", "Actor", "Detail"],
    state.recent.map(eventRow), "No events yet."));
}

/**
 * New events as they happen. The stream starts at the newest event shown (or when the page
 * asked for them), so nothing that happened in between is missed; an event already shown is
 * not shown twice. `also` sees every new event too.
 */
export function follow(path = "/api/v1/events/stream", keep = 15, from = null, also = null) {
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

/** A query term for a field's value (quoted when it has spaces). */
export function term(field, value) {
  return /[\s()"]/.test(value) ? `${field}:"${String(value).replace(/"/g, "")}"` : `${field}:${value}`;
}

/** A log line as table cells: time, container, level, message with a link to its context. */
export function logRow(l) {
  const level = l.level
    ? html`<span class="pill ${l.level === "error" ? "bad" : l.level.startsWith("warn") ? "warn" : "muted"}">${l.level}</span>`
    : "";
  const t = new Date(l.time).getTime();
  const around = new URLSearchParams({
    q: term("container_id", l.container_id),
    from: new Date(t - 30000).toISOString(),
    to: new Date(t + 30000).toISOString(),
  });
  return [when(l.time),
    // a fleet host's container is that host's: its page is there
    state.fleetHosts?.has(l.host)
      ? html`<span class="host">${l.host}</span>/${l.container} <span class="muted">${l.stream}</span>`
      : html`<a href="#/containers/${encodeURIComponent(l.container_id)}" class="to-container">${l.container}</a> <span class="muted">${l.stream}</span>`,
    level,
    html`<code>${l.message || l.raw}</code> <a href="#/logs?${around}" class="context" title="the lines around it">context</a>`];
}

/** An SVG bar chart of counts per bucket, with its own text alternative. */
export function bars(buckets) {
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const w = 100 / Math.max(1, buckets.length);
  const total = buckets.reduce((n, b) => n + b.count, 0);
  const rects = buckets.map((b, i) => {
    const h = (b.count / max) * 100;
    return html`<rect x="${i * w}" y="${100 - h}" width="${Math.max(w - 0.3, 0.2)}" height="${h}"><title>${when(b.time)}: ${b.count}</title></rect>`;
  });
  return html`<svg class="chart" viewBox="0 0 100 100" preserveAspectRatio="none" role="img"
    aria-label="${total} matching lines over the range">${rects}</svg>`;
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
  if (!points.length) return html`<p class="muted">No data in this range yet.</p>`;
  // from the first point when the data starts later than the range (a new container)
  const first = Math.min(...points.map((p) => new Date(p[0]).getTime()));
  const t0 = Math.max(new Date(result.start).getTime(), first);
  const t1 = Math.max(new Date(result.end).getTime(), t0 + 1);
  const max = Math.max(...points.map((p) => p[1]), 1e-9);
  const names = seriesNames(series, result.query);
  const lines = series.map((s, i) => {
    const xy = s.points.map((p) => [((new Date(p[0]).getTime() - t0) / (t1 - t0)) * 100, 100 - (p[1] / max) * 95]);
    // one reading is a short dash at its time, so that it shows
    if (xy.length === 1) xy.unshift([Math.max(0, xy[0][0] - 2), xy[0][1]]);
    const d = xy.map(([x, y]) => `${x.toFixed(2)},${y.toFixed(2)}`).join(" ");
    return html`<polyline points="${d}" style="fill: none; stroke: ${PALETTE[i % PALETTE.length]}"
      stroke-width="1.5" vector-effect="non-scaling-stroke"><title>${names[i]}</title></polyline>`;
  });
  const last = series.map((s, i) => html`<li><span class="swatch" style="background:${PALETTE[i % PALETTE.length]}"></span>
    ${names[i]}: <strong>${format(s.points.at(-1)?.[1] ?? 0)}</strong></li>`);
  return html`<svg class="chart line" viewBox="0 0 100 100" preserveAspectRatio="none" role="img"
      aria-label="${result.query}: ${series.length} series, highest ${format(max)}">${lines}</svg>
    <div class="axis muted"><span>${when(new Date(t0).toISOString())}</span><span>max ${format(max)}</span><span>${when(result.end)}</span></div>
    <ul class="legend">${last}</ul>`;
}

/** Draws the chart of `query` over the last `since` into `el` (or why it cannot be drawn). */
export async function chartInto(el, query, since, format) {
  try {
    const r = await api("GET", `/api/v1/metrics/query?${new URLSearchParams({ query, since })}`);
    put(el, lineChart(r, format));
  } catch (e) {
    put(el, html`<p class="error">${e.message}</p>`);
  }
}
