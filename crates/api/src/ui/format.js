// How values read on the page: times, sizes, ids, rates.

/** A time in the browser's time zone. */
export function when(rfc3339) {
  if (!rfc3339) return "-";
  return new Date(rfc3339).toLocaleString();
}

export function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function short(id) {
  return String(id || "").replace("sha256:", "").slice(0, 12);
}

export const perSecond = (v) => `${bytes(v)}/s`;
export const cores = (v) => `${(v * 100).toFixed(v < 0.1 ? 2 : 1)}% of a core`;

/** The class a release's result is shown with. */
export function resultClass(result) {
  return { succeeded: "ok", running: "warn", failed: "bad", rolled_back: "bad", down: "muted" }[result] || "";
}

/** Labels as `k=v` pairs, without the alert's own name and severity. */
export function labelText(labels) {
  return Object.entries(labels || {}).filter(([k]) => !["alertname", "severity"].includes(k))
    .map(([k, v]) => `${k}=${v}`).join(" ");
}
