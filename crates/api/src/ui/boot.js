// The page's one classic script, run before its modules: a module that could not be fetched
// (a connection dropped while the page loaded) fails the whole page silently, leaving
// "Loading…". Then the page is loaded once more, and if that fails too, it says why.
"use strict";

const RETRIED = "capstan-dashboard-reloaded";

// script elements' errors do not bubble: caught on their way down
document.addEventListener("error", (ev) => {
  const el = ev.target;
  if (!(el instanceof HTMLScriptElement) || el.type !== "module") return;
  if (!sessionStorage.getItem(RETRIED)) {
    sessionStorage.setItem(RETRIED, "1");
    location.reload();
    return;
  }
  sessionStorage.removeItem(RETRIED);
  const p = document.createElement("p");
  p.className = "error";
  p.setAttribute("role", "alert");
  p.textContent = `The dashboard could not load its scripts (${el.src}); reload the page.`;
  document.getElementById("main")?.replaceChildren(p);
}, true);
