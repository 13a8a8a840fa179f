// Access (admins only): tokens, users and the audit log.

import { $, api, Stale } from "../core.js";
import { when } from "../format.js";
import { html, put } from "../html.js";
import { table } from "../widgets.js";

const ROLES = ["viewer", "operator", "admin"];
const FEATURES = ["privileged", "bind=/srv/", "cap_add=NET_ADMIN", "security_opt=seccomp:unconfined",
  "sysctl=", "low_port=80"];

function draw(tokens, users, audit, policy) {
  const roles = ROLES.map((r) => html`<option>${r}</option>`);
  put($("#main"), html`<h1>Access</h1>
    <section class="card" aria-labelledby="h-tokens"><h2 id="h-tokens">Tokens</h2>
      ${table(["Name", "Role", "Created", "By", "Last used", ""], tokens.tokens.map((t) => [
        t.name, t.role, when(t.created), t.created_by, when(t.last_used),
        t.revoked ? html`<span class="muted">revoked ${when(t.revoked)}</span>` : html`<button type="button" data-revoke="${t.name}">Revoke</button>`]),
        "No tokens.")}
      <form id="token-form" class="row">
        <label>Name <input id="token-name" required></label>
        <label>Role <select id="token-role">${roles}</select></label>
        <button type="submit">Create token</button>
      </form>
      <p id="token-secret" role="status" aria-live="polite"></p></section>
    <section class="card" aria-labelledby="h-users"><h2 id="h-users">Users</h2>
      ${table(["Name", "Role", "Created", ""], users.users.map((u) => [u.name, u.role, when(u.created),
        html`<button type="button" data-remove-user="${u.name}">Remove</button>`]), "No users.")}
      <form id="user-form" class="row">
        <label>Name <input id="user-name" required autocomplete="off"></label>
        <label>Password <input id="user-password" type="password" required minlength="8" autocomplete="new-password"></label>
        <label>Role <select id="user-role">${roles}</select></label>
        <button type="submit">Add user</button>
      </form>
      <p id="access-error" class="error" role="alert"></p></section>
    <section class="card" aria-labelledby="h-policy"><h2 id="h-policy">Deploy policy</h2>
      <p class="muted">Host-level features an operator's deploy of an app may use. Admins deploy them
        all, but for binds of the host's root, the Docker socket or capstan's data, which need an
        allowance here too.</p>
      ${table(["App", "Feature", "Allowed by", "Since", ""], policy.allowances.map((a) => [
        a.app, html`<code>${a.feature}</code>`, a.allowed_by, when(a.time),
        html`<button type="button" data-disallow="${a.feature}" data-app="${a.app}">Remove</button>`]),
        "Nothing allowed: only admins deploy host-level features.")}
      <form id="policy-form" class="row">
        <label>App <input id="policy-app" required pattern="[a-z0-9][a-z0-9_-]*" autocomplete="off"></label>
        <label>Feature <input id="policy-feature" required list="policy-features" autocomplete="off"
          placeholder="privileged, bind=/srv/www, cap_add=NET_ADMIN"></label>
        <datalist id="policy-features">${FEATURES.map((f) => html`<option value="${f}"></option>`)}</datalist>
        <button type="submit">Allow</button>
      </form></section>
    <section class="card" aria-labelledby="h-audit"><h2 id="h-audit">Audit log</h2>
      <div id="audit">${table(["Time", "Who", "Role", "Request", "Status", "From"], audit.entries.map((a) => [
        when(a.time), a.who, a.role, html`<code>${a.method} ${a.path}</code>`,
        html`<span class="${a.status < 400 ? "ok" : "bad"}">${a.status}</span>`, a.remote]), "Nothing recorded yet.")}</div></section>`);
}

export async function accessPage() {
  const [tokens, users, audit, policy] = await Promise.all([
    api("GET", "/api/v1/tokens"),
    api("GET", "/api/v1/users"),
    api("GET", "/api/v1/audit?limit=100"),
    api("GET", "/api/v1/policy"),
  ]);
  draw(tokens, users, audit, policy);
  const fail = (e) => { if (!(e instanceof Stale) && $("#access-error")) $("#access-error").textContent = e.message; };
  $("#token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const made = await api("POST", "/api/v1/tokens", { name: $("#token-name").value.trim(), role: $("#token-role").value });
      await accessPage();
      put($("#token-secret"), html`Token ${made.info.name}: <code id="new-token">${made.token}</code> (shown once; copy it now)`);
    } catch (e) { fail(e); }
  });
  $("#user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/v1/users", { name: $("#user-name").value.trim(), password: $("#user-password").value, role: $("#user-role").value });
      await accessPage();
    } catch (e) { fail(e); }
  });
  $("#policy-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const app = $("#policy-app").value.trim();
      await api("POST", `/api/v1/policy/${encodeURIComponent(app)}`, { feature: $("#policy-feature").value.trim() });
      await accessPage();
    } catch (e) { fail(e); }
  });
  for (const b of document.querySelectorAll("button[data-disallow]")) {
    b.addEventListener("click", async () => {
      const { app, disallow } = b.dataset;
      if (!confirm(`No longer allow ${disallow} for ${app}? Its next deploy is checked without it.`)) return;
      try {
        await api("DELETE", `/api/v1/policy/${encodeURIComponent(app)}?${new URLSearchParams({ feature: disallow })}`);
        await accessPage();
      } catch (e) { fail(e); }
    });
  }
  for (const b of document.querySelectorAll("button[data-revoke]")) {
    b.addEventListener("click", async () => {
      if (!confirm(`Revoke token ${b.dataset.revoke}? Clients using it are refused at once.`)) return;
      try { await api("DELETE", `/api/v1/tokens/${encodeURIComponent(b.dataset.revoke)}`); await accessPage(); } catch (e) { fail(e); }
    });
  }
  for (const b of document.querySelectorAll("button[data-remove-user]")) {
    b.addEventListener("click", async () => {
      if (!confirm(`Remove user ${b.dataset.removeUser}? Their sessions end.`)) return;
      try { await api("DELETE", `/api/v1/users/${encodeURIComponent(b.dataset.removeUser)}`); await accessPage(); } catch (e) { fail(e); }
    });
  }
}
