// Signing in (a user's password, or a token) and what the header shows of the session.

import { $, api, can, closeStreams, state } from "../core.js";
import { html, put } from "../html.js";

export function signedIn(session) {
  state.session = session;
  $("#who").textContent = session ? `${session.who} (${session.role})` : "";
  $("#nav").hidden = !session;
  $("#signout").hidden = !session;
  // what a role cannot do is not offered (the API refuses it anyway)
  $("#nav-access").hidden = !can("admin");
  $("#nav-hosts").hidden = true;
  state.fleetHosts = null;
  if (session) {
    // a fleet's hub has hosts to show (asked aside: whichever page is drawn meanwhile stays)
    fetch("/api/v1/hosts", { credentials: "same-origin", headers: { accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((hosts) => {
        if (!hosts || state.session !== session) return;
        state.fleetHosts = new Set(hosts.map((h) => h.name));
        $("#nav-hosts").hidden = false;
      })
      .catch(() => null);
  }
}

/** The sign-in form, with `message` above; `then` draws the page once signed in. */
export function showSignIn(message, then) {
  signedIn(null);
  closeStreams();
  put($("#main"), html`
    <form class="signin" id="signin" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in to capstan</h1>
      <label>User name <input name="username" id="username" autocomplete="username"></label>
      <label>Password <input name="password" id="password" type="password" autocomplete="current-password"></label>
      <p class="muted">or</p>
      <label>Token <input name="token" id="token" type="password" autocomplete="off"
        placeholder="the admin token, or one from capstan tokens create"></label>
      <button type="submit" id="signin-submit">Sign in</button>
      <p class="error" id="signin-error" role="alert">${message || ""}</p>
    </form>`);
  $("#signin").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const token = f.token.value.trim();
    const body = token
      ? { token }
      : { username: f.username.value.trim(), password: f.password.value };
    try {
      const session = await api("POST", "/api/v1/session", body);
      signedIn(session);
      then();
    } catch (e) {
      $("#signin-error").textContent = e.message;
    }
  });
  $("#username").focus();
}
