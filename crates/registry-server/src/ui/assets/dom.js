// Small DOM helpers: elements are built with `h`, never from HTML strings, so no text
// from the registry is ever read as markup.

/**
 * An element: `h("a.link", {href: "#/"}, "text", child)`. Attributes starting with `on`
 * are listeners; `class` may also be given in the tag after dots; `null` children and
 * attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.classList.add(...String(value).split(" ").filter(Boolean));
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A horizontal bar showing `fraction` (0..1), coloured by how full it is. */
export function bar(fraction, label) {
  const f = Number.isFinite(fraction) ? Math.min(Math.max(fraction, 0), 1) : 0;
  const fillEl = h("span.bar-fill");
  // A CSSOM property, which the page's Content-Security-Policy allows (style attributes
  // in markup it does not).
  fillEl.style.width = `${(f * 100).toFixed(1)}%`;
  const level = f >= 0.9 ? "high" : f >= 0.7 ? "mid" : "low";
  return h(`span.bar.${level}`, { role: "meter", "aria-valuenow": Math.round(f * 100), "aria-valuemin": 0, "aria-valuemax": 100, title: label ?? `${Math.round(f * 100)}%` }, fillEl);
}

/** A status as a coloured badge. */
export function statusBadge(status) {
  return h(`span.status.s-${String(status || "Unknown").toLowerCase()}`, {}, h("span.dot"), status || "Unknown");
}

/** "3 s ago", "5 min ago", "2 h ago" for a time in the past (milliseconds since epoch). */
export function ago(ms, now = Date.now()) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Bytes as KiB, MiB, GiB, TiB. */
export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** A whole number with thousands separators. */
export function count(n) {
  return Number(n || 0).toLocaleString("en-US");
}

/** A time (RFC 3339) as milliseconds since epoch, 0 when absent. */
export function time(text) {
  const ms = text ? Date.parse(text) : NaN;
  return Number.isFinite(ms) ? ms : 0;
}

/** A definition list of `[term, value]` pairs, skipping empty values. */
export function facts(pairs) {
  const dl = h("dl.facts");
  for (const [term, value] of pairs) {
    if (value == null || value === "" || (Array.isArray(value) && value.length === 0)) continue;
    dl.append(h("dt", {}, term), h("dd", {}, value));
  }
  return dl;
}

/** A table from column headings and rows of cells. */
export function table(headings, rows, cls = "") {
  return h(`table.table${cls ? "." + cls : ""}`, {},
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

/** A tag as a chip. */
export function chip(text, cls = "") {
  return h(`span.chip${cls ? "." + cls : ""}`, {}, text);
}

/** An empty state: a short line saying there is nothing. */
export function empty(text) {
  return h("p.empty", {}, text);
}

/**
 * `fn` run at most once every `ms` milliseconds however often the result is called; a call
 * in between is not lost but runs at the end of the wait.
 */
export function throttled(ms, fn) {
  let last = 0;
  let timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      last = Date.now();
      fn();
    } else {
      timer ??= setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, wait);
    }
  };
}
