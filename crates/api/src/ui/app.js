// capstan's dashboard: ES modules of the browser, no build step, served from the binary under a
// strict Content-Security-Policy. This one signs in and routes `#/…` to the page modules; every
// page draws through `html.js`, which escapes whatever it is given unless it is markup.

import { $, api, can, closeStreams, Stale, state } from "./core.js";
import { html, put } from "./html.js";
import { accessPage } from "./pages/access.js";
import { alertsPage } from "./pages/alerts.js";
import { appPage, appsPage } from "./pages/apps.js";
import { buildPage, buildsPage } from "./pages/builds.js";
import { containerPage } from "./pages/containers.js";
import { eventsPage } from "./pages/events.js";
import { hostsPage } from "./pages/hosts.js";
import { imagePage, imagesPage } from "./pages/images.js";
import { logsPage } from "./pages/logs.js";
import { metricsPage } from "./pages/metrics.js";
import { overview } from "./pages/overview.js";
import { securityPage } from "./pages/security.js";
import { showSignIn, signedIn } from "./pages/signin.js";

/** Marks the navigation link of the page shown. */
function markNav(page) {
  for (const a of document.querySelectorAll("#nav a")) {
    const href = a.getAttribute("href");
    if (href === (page || "#/") || (href !== "#/" && page.startsWith(`${href}/`))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

/** The page the hash names (an image's key may hold slashes). */
function pageOf(page) {
  const [, section, key] = page.split("/").map(decodeURIComponent);
  if (page === "#/alerts") return alertsPage;
  if (page === "#/events") return eventsPage;
  if (page === "#/logs") return logsPage;
  if (page === "#/apps") return appsPage;
  if (section === "apps" && key) return () => appPage(key);
  if (page === "#/builds") return buildsPage;
  if (section === "builds" && key) return () => buildPage(key);
  if (section === "containers" && key) return () => containerPage(key);
  if (page === "#/images") return imagesPage;
  if (section === "images" && key) {
    return () => imagePage(page.slice("#/images/".length).split("/").map(decodeURIComponent).join("/"));
  }
  if (page === "#/metrics") return metricsPage;
  if (page === "#/hosts") return hostsPage;
  if (page === "#/security") return securityPage;
  if (page === "#/access" && can("admin")) return accessPage;
  return overview;
}

async function route() {
  if (!state.session) return;
  const mine = ++state.route;
  closeStreams();
  const page = location.hash.split("?")[0];
  markNav(page);
  try {
    await pageOf(page)();
    $("#main").focus({ preventScroll: true });
  } catch (e) {
    // a page left while it was drawn: the page shown now is not touched
    if (e instanceof Stale || mine !== state.route) return;
    if (e.status === 401) showSignIn("Your session has ended; sign in again.", route);
    else put($("#main"), html`<p class="error" role="alert">${e.message}</p>`);
  }
}

async function start() {
  // the modules loaded: a reload boot.js made is done with
  sessionStorage.removeItem("capstan-dashboard-reloaded");
  $("#signout").addEventListener("click", async () => {
    await api("DELETE", "/api/v1/session").catch(() => null);
    showSignIn("Signed out.", route);
  });
  window.addEventListener("hashchange", route);
  try {
    signedIn(await api("GET", "/api/v1/session"));
    route();
  } catch (_) {
    showSignIn("", route);
  }
}

start();
