// What every page shares: the session, the API client, the page counter that makes a late
// answer stale, and the live streams of the page shown. The session cookie authenticates every
// request; changing ones carry the session's CSRF token.

// `route` counts the pages drawn: an answer that arrives after its page was left is stale and
// must not draw over the page shown now (under load, a slow answer of the page before did)
export const state = { session: null, streams: [], route: 0 };

/** Thrown in place of an answer that came after the page that asked for it was left. */
export class Stale extends Error {}

/** Throws `Stale` when the page drawn as `route` is no longer the one shown. */
export function still(route) {
  if (route !== state.route) throw new Stale("the page was left");
}

export const $ = (sel) => document.querySelector(sel);

export async function api(method, path, body) {
  const route = state.route;
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && state.session?.csrf_token) {
    headers["x-csrf-token"] = state.session.csrf_token;
  }
  const send = () => fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  // a read the network dropped on its way (the browser saw an interface change: a laptop
  // changing networks, a VPN coming up) is asked again, twice at most; a change is not
  let resp;
  for (let attempt = 0; ; attempt++) {
    try {
      resp = await send();
      break;
    } catch (e) {
      if (method !== "GET" || attempt >= 2) throw e;
      await new Promise((r) => setTimeout(r, 250 * (attempt + 1)));
    }
  }
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

/** Whether the signed-in role includes `role`. */
export function can(role) {
  const rank = { viewer: 0, operator: 1, admin: 2 };
  return (rank[state.session?.role] ?? -1) >= rank[role];
}

/** The hash's parameters (`#/page?k=v`). */
export function hashParams() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

/** A Server-Sent Events stream for the page shown (the cookie authenticates); a route change
 * closes it. `onData` gets each `type` message's JSON. */
export function stream(url, type, onData) {
  const source = new EventSource(url);
  source.addEventListener(type, (m) => {
    let data;
    try { data = JSON.parse(m.data); } catch (_) { return; /* a keep-alive */ }
    onData(data);
  });
  state.streams.push(source);
  return source;
}

export function closeStreams() {
  for (const s of state.streams) s.close();
  state.streams = [];
}

/** `f` at most once per `ms`, after the last call (a burst of events redraws once). */
export function debounce(f, ms = 300) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(f, ms); };
}
