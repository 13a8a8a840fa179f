// A terminal into a replica, on its container's page: xterm.js (vendored, loaded on first
// use) over the exec WebSocket. The session's CSRF token goes as a subprotocol the browser
// offers (a page cannot set a WebSocket's headers); a viewer is never shown it, and the
// server refuses it anyway.

import { $, can, state } from "../core.js";
import { html, put } from "../html.js";

let loading = null;

/** xterm.js and its stylesheet, fetched once. */
function xterm() {
  if (window.Terminal) return Promise.resolve(window.Terminal);
  loading ??= new Promise((resolve, reject) => {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = "/ui/vendor/xterm.css";
    document.head.append(css);
    const script = document.createElement("script");
    script.src = "/ui/vendor/xterm.js";
    script.onload = () => resolve(window.Terminal);
    script.onerror = () => { loading = null; reject(new Error("cannot load the terminal component")); };
    document.head.append(script);
  });
  return loading;
}

/** The terminal card for replica `replica` of `service` of `app` into `el`. */
export function terminalCard(el, app, service, replica) {
  if (!can("operator")) return;
  put(el, html`<section class="card" aria-labelledby="h-term" style="min-width: 0">
    <h2 id="h-term">Terminal</h2>
    <form id="term-form" class="row">
      <label for="term-cmd">Command</label>
      <input id="term-cmd" value="sh" autocomplete="off" spellcheck="false">
      <button type="submit">Open</button>
      <button type="button" id="term-close" disabled>Close</button>
    </form>
    <p id="term-status" role="status"></p>
    <div id="term" class="term"></div>
  </section>`);
  let socket = null;
  let term = null;
  const status = (text) => { $("#term-status").textContent = text; };
  const close = () => {
    socket?.close();
    socket = null;
    $("#term-close").disabled = true;
  };
  $("#term-close").addEventListener("click", close);
  $("#term-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    close();
    const words = $("#term-cmd").value.trim().split(/\s+/).filter(Boolean);
    if (!words.length) { status("Say what to run, e.g. sh."); return; }
    let Terminal;
    try { Terminal = await xterm(); } catch (e) { status(e.message); return; }
    term?.dispose();
    term = new Terminal({ cols: 100, rows: 24, convertEol: false, cursorBlink: true });
    put($("#term"), html``);
    term.open($("#term"));
    const params = new URLSearchParams({ service, replica: String(replica), tty: "true",
      cols: String(term.cols), rows: String(term.rows) });
    for (const w of words) params.append("cmd", w);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const offered = ["capstan.exec"];
    if (state.session?.csrf_token) offered.push(`capstan.csrf.${state.session.csrf_token}`);
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/apps/${encodeURIComponent(app)}/exec?${params}`, offered);
    ws.binaryType = "arraybuffer";
    socket = ws;
    state.streams.push(ws);
    const encoder = new TextEncoder();
    let said = false;
    ws.onopen = () => {
      status(`Connected: ${words.join(" ")}`);
      $("#term-close").disabled = false;
      term.focus();
    };
    ws.onmessage = (m) => {
      if (typeof m.data === "string") {
        const end = JSON.parse(m.data);
        said = true;
        status(`Exited with code ${end.exit ?? "unknown"}.`);
        term.write(`\r\n[exited with code ${end.exit ?? "unknown"}]\r\n`);
        return;
      }
      term.write(new Uint8Array(m.data));
    };
    ws.onclose = () => {
      if (!said) status("Closed (the command could not start, or the connection dropped; see the audit log).");
      $("#term-close").disabled = true;
    };
    term.onData((d) => { if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(d)); });
    term.onResize(({ cols, rows }) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: [cols, rows] }));
    });
  });
}
