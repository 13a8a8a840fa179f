// Images: the inventory, updates the registries offer, the findings of running containers, and
// an image's page with its lifecycle.

import { $, api } from "../core.js";
import { bytes, short, when } from "../format.js";
import { html, put } from "../html.js";
import { table } from "../widgets.js";

/** Draws `content` into `sel` when the page still has it. */
function fill(sel, content) {
  if ($(sel)) put($(sel), content);
}

export async function imagesPage() {
  put($("#main"), html`<h1>Images</h1>
    <section class="card" aria-labelledby="h-inv"><h2 id="h-inv">Inventory</h2><div id="inventory">…</div></section>
    <section class="card" aria-labelledby="h-upd"><h2 id="h-upd">Updates</h2><div id="image-updates">…</div></section>
    <section class="card" aria-labelledby="h-vuln"><h2 id="h-vuln">Vulnerabilities of running containers</h2><div id="findings">…</div></section>`);
  // each part as soon as it is known: a first scan of a new image takes a while
  await Promise.all([
    api("GET", "/api/v1/images").then((list) => fill("#inventory", table(
      ["Image", "Id", "Size", "Containers", "Created", "Last seen"], list.images.map((i) => [
        html`<a href="#/images/${encodeURIComponent(i.id)}">${i.repo_tags[0] || "<none>"}</a>${i.repo_tags.length > 1 && html` <span class="muted">+${i.repo_tags.length - 1}</span>`}`,
        html`<code>${short(i.id)}</code>`, bytes(i.size), i.containers, when(i.created), when(i.last_seen)]),
      "No images."))),
    api("GET", "/api/v1/images/updates").then((updates) => fill("#image-updates", table(
      ["Reference", "Policy", "Candidate", "Checked", "Why"], (updates.updates || []).map((u) => [
        u.reference, u.policy,
        u.candidate ? html`<span class="warn">${u.candidate.tag || short(u.candidate.digest)}</span>` : html`<span class="ok">up to date</span>`,
        when(u.checked_at), u.error || u.reason]), "Nothing watched yet.")))
      .catch(() => fill("#image-updates", html`<p class="muted">Registry watching is off.</p>`)),
    api("GET", "/api/v1/images/findings").then((findings) => fill("#findings", table(
      ["Container", "Image", "Critical", "High", "Medium", "Low", ""], findings.map((f) => [
        f.container, f.image, ...["critical", "high", "medium", "low"].map((sev) => f.counts?.[sev] ?? 0),
        f.error || ""]), "No running containers.")))
      .catch((e) => fill("#findings", html`<p class="muted">${e.message} (capstan vulndb import loads advisories)</p>`)),
  ]);
}

export async function imagePage(key) {
  const d = await api("GET", `/api/v1/images/${encodeURIComponent(key)}`);
  const i = d.image;
  put($("#main"), html`<h1>Image ${i.repo_tags[0] || short(i.id)}</h1>
    <section class="card" aria-labelledby="h-img"><h2 id="h-img">Summary</h2>
      <dl class="facts"><dt>Id</dt><dd><code>${i.id}</code></dd>
        <dt>References</dt><dd>${i.repo_tags.join(", ") || "-"}</dd>
        <dt>Digests</dt><dd>${i.repo_digests.join(", ") || "-"}</dd>
        <dt>Size</dt><dd>${bytes(i.size)}, ${i.layers} layers</dd>
        <dt>State</dt><dd>${i.deleted ? html`<span class="bad">deleted ${when(i.deleted)}</span>` : "present"}</dd></dl></section>
    <section class="card" aria-labelledby="h-life"><h2 id="h-life">Lifecycle</h2>
      <ol class="timeline" id="timeline">${d.history.map((h) => html`<li><time>${when(h.time)}</time>
        <strong>${h.action}</strong> ${h.reference || ""}${h.inferred && html` <span class="muted">(inferred)</span>`}</li>`)}</ol></section>
    <section class="card" aria-labelledby="h-ic"><h2 id="h-ic">Containers</h2>
      ${d.container_ids.length
        ? html`<ul>${d.container_ids.map((c) => html`<li><a href="#/containers/${encodeURIComponent(c)}">${short(c)}</a></li>`)}</ul>`
        : html`<p class="muted">None.</p>`}</section>`);
}
