// The page's one classic script, run before its modules: a module that could not be fetched
// (a connection dropped while the page loaded; or the browser saw the host's network change,
// as it does whenever Docker adds or removes a container's interface, and failed what was in
// flight: net::ERR_NETWORK_CHANGED) fails the whole page silently, leaving "Loading…". Then
// the page is loaded again, up to RELOADS times, each after a longer pause (such changes come
// in bursts), and if that fails too, it says why: what each of its modules answers now.
"use strict";

const RETRIED = "capstan-dashboard-reloaded";
const RELOADS = 3;

/** Every module of the page (a test holds this list to the files served). */
const MODULES = [
  "app.js", "core.js", "format.js", "html.js", "release.js", "widgets.js",
  "pages/access.js", "pages/alerts.js", "pages/apps.js", "pages/builds.js", "pages/containers.js",
  "pages/events.js", "pages/hosts.js", "pages/images.js", "pages/logs.js", "pages/metrics.js",
  "pages/overview.js", "pages/security.js", "pages/signin.js", "pages/terminal.js",
];

/** What fetching each module answers, for the message. */
async function answers() {
  const each = await Promise.all(MODULES.map((m) => fetch(`/ui/${m}`, { cache: "no-store" })
    .then((r) => `${m} ${r.status}`, (e) => `${m} ${e.message}`)));
  return each.filter((a) => !a.endsWith(" 200")).join(", ") || "every module answers 200 now";
}

let failed = false;
// a page that loaded whole starts its count of reloads afresh
window.addEventListener("load", () => {
  if (!failed) sessionStorage.removeItem(RETRIED);
});
// script elements' errors do not bubble: caught on their way down
document.addEventListener("error", async (ev) => {
  const el = ev.target;
  if (!(el instanceof HTMLScriptElement) || el.type !== "module") return;
  failed = true;
  const tries = Number(sessionStorage.getItem(RETRIED) || "0");
  if (tries < RELOADS) {
    sessionStorage.setItem(RETRIED, String(tries + 1));
    setTimeout(() => location.reload(), 250 * 2 ** tries);
    return;
  }
  sessionStorage.removeItem(RETRIED);
  const p = document.createElement("p");
  p.className = "error";
  p.setAttribute("role", "alert");
  p.textContent = `The dashboard could not load its scripts; reload the page. (${await answers()})`;
  document.getElementById("main")?.replaceChildren(p);
}, true);
