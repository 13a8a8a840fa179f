// Markup built from tagged templates, escaped by default: `html` escapes every value put into
// it unless that value is itself markup made by `html`. This module is the only one that sets
// `innerHTML`; every page draws through `put`, so an app's, a log line's or an image's name
// can never become markup.

const MARKUP = Symbol("markup");

/** Text made safe for HTML, inside an element or a quoted attribute. */
function escape(text) {
  return text.replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

/** A value as markup: markup as it is, a list joined, nothing for null, undefined and false,
 * anything else escaped as text. */
function render(value) {
  if (value?.[MARKUP] !== undefined) return value[MARKUP];
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === null || value === undefined || value === false) return "";
  return escape(String(value));
}

/** The tag: html`<p>${text}</p>` escapes `text`; a nested html`…` stays markup. */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => { out += render(value) + strings[i + 1]; });
  return { [MARKUP]: out, toString: () => out };
}

/** Draws `content` (markup, or text escaped) as the content of `el`. */
export function put(el, content) {
  el.innerHTML = render(content);
}
