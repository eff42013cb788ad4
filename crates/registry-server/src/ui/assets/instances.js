// Instances: services (slugs) on the left with their status spread, one page of instances
// on the right, read from the API a page at a time (`limit` and `after`), so 100,000
// instances cost the browser one page of rows. The page is read again when the feed says
// instances changed, at most a few times a second, and rows are kept and updated in place.

import { call, query } from "./api.js";
import { h, fill, count, ago, statusBadge, chip, facts, table, empty, time, throttled } from "./dom.js";
import { STATUSES } from "./live.js";
import { by, stacked } from "./overview.js";

const SIZES = [50, 100, 500, 1000];
/** Longest a shown page goes unread: health details change without a feed event. */
const REREAD_MS = 5000;
/** Least time between two reads of the page caused by the feed. */
const THROTTLE_MS = 250;
/** Most services listed on the left; the filter box finds the others. */
const SERVICES_SHOWN = 300;
/** Service names in the order people read them: `svc-2` before `svc-10`. */
const byName = new Intl.Collator("en", { numeric: true }).compare;

/** The latency a check's details mention ("HTTP 200 in 3ms", "took 1.2s (...)"). */
export function latency(details) {
  const m = /(?:\bin|\btook) (\d+(?:\.\d+)?)(ms|s)\b/.exec(details || "");
  return m ? `${m[1]} ${m[2]}` : "";
}

export function instances(container, { live, params }) {
  const filter = {
    slug: params.slug || "",
    status: params.status || "",
    tag: params.tag || "",
    // From a node's page; the form has no field for it: Apply keeps it, Clear drops it.
    nodeUrl: params.nodeUrl || "",
  };
  const size = SIZES.includes(Number(params.size)) ? Number(params.size) : 100;
  let page = 0;
  let cursors = [undefined]; // `after` of each page reached by walking, when ids are unknown
  let next = null;
  let shown = [];
  let reading = false;
  let again = false;
  let lastRead = 0;
  let timer = null;
  const rows = new Map(); // id -> {tr, key}

  const serviceFilter = h("input.search", { type: "search", placeholder: "Filter services", "aria-label": "Filter services", oninput: () => drawServices() });
  const serviceList = h("ul.services");
  const tbody = h("tbody");
  const status = h("span.page-status", { "data-testid": "page-status" });
  const buttons = {
    first: h("button.button", { type: "button", onclick: () => go(0), title: "First page" }, "« First"),
    prev: h("button.button", { type: "button", onclick: () => go(page - 1), title: "Previous page" }, "‹ Prev"),
    next: h("button.button", { type: "button", onclick: () => go(page + 1), title: "Next page", "data-testid": "next-page" }, "Next ›"),
    last: h("button.button", { type: "button", onclick: () => go(pages() - 1), title: "Last page", "data-testid": "last-page" }, "Last »"),
  };
  const error = h("p.form-error", { role: "alert" });

  const navigate = (changes) => {
    const merged = { ...filter, size: size === 100 ? "" : size, ...changes };
    location.hash = `#/instances${query(merged)}`;
  };

  const form = h("form.filters", { onsubmit: (e) => { e.preventDefault(); navigate(Object.fromEntries(new FormData(form))); } },
    h("label", {}, "Service", h("input", { name: "slug", value: filter.slug, list: "slugs", placeholder: "any", "data-testid": "filter-slug" })),
    h("datalist", { id: "slugs" }),
    h("label", {}, "Status", h("select", { name: "status", onchange: () => form.requestSubmit(), "data-testid": "filter-status" },
      h("option", { value: "" }, "any"),
      STATUSES.map((s) => h("option", { value: s, selected: s.toLowerCase() === filter.status.toLowerCase() }, s)))),
    h("label", {}, "Tag", h("input", { name: "tag", value: filter.tag, placeholder: "any" })),
    h("label", {}, "Per page", h("select", { name: "size", onchange: () => form.requestSubmit(), "data-testid": "page-size" },
      SIZES.map((n) => h("option", { value: n, selected: n === size }, n)))),
    h("button.button.primary", { type: "submit" }, "Apply"),
    filter.slug || filter.status || filter.tag || filter.nodeUrl ? h("a.button.ghost", { href: "#/instances" }, "Clear") : null);

  fill(container,
    h("div.page-head", {}, h("h1", {}, "Instances"), h("span.muted", { "data-testid": "instance-total" }, "")),
    h("div.split", {},
      h("aside.panel.sidebar", {}, h("h2", {}, "Services"), serviceFilter, serviceList),
      h("section.panel.list", {}, form, error,
        h("div.table-wrap", {}, h("table.table.instances", {},
          h("thead", {}, h("tr", {}, ["Status", "Instance", "Service", "Last seen", "Latency", "Details", "Tags"].map((t) => h("th", {}, t)))),
          tbody)),
        h("div.pager", {}, buttons.first, buttons.prev, status, buttons.next, buttons.last))));

  /** Whether pages can be computed from the ids the console holds (slug and status only). */
  const known = () => live.state !== "loading" && !filter.tag && !filter.nodeUrl;
  const total = () => (known() ? live.total(filter) : null);
  const pages = () => {
    const t = total();
    return t === null ? null : Math.max(1, Math.ceil(t / size));
  };

  function go(target) {
    if (target < 0) return;
    const last = pages();
    if (last !== null && target > last - 1) return;
    if (known()) {
      const ids = live.ids(filter);
      cursors[target] = target === 0 ? undefined : ids[target * size - 1];
    } else if (target > page) {
      if (!next) return;
      cursors[page + 1] = next;
      target = page + 1;
    }
    page = target;
    read(true);
  }

  async function read(force) {
    if (reading) {
      // A page turn waits for the read in flight, not for the throttle.
      again = again === "now" || force ? "now" : "later";
      return;
    }
    if (!force && Date.now() - lastRead < THROTTLE_MS) {
      timer ??= setTimeout(() => {
        timer = null;
        read(false);
      }, THROTTLE_MS);
      return;
    }
    reading = true;
    lastRead = Date.now();
    const asked = page;
    try {
      const { data } = await call(`/instances${query({ ...filter, limit: size, after: cursors[page] })}`);
      // The page was turned meanwhile: the read that follows shows the new one.
      if (asked !== page) return;
      shown = data.instances;
      next = data.next ?? null;
      error.textContent = "";
      if (!shown.length && page > 0) {
        // Removals left this page empty: show the last one that has instances.
        go(known() ? pages() - 1 : 0);
        return;
      }
      drawRows();
    } catch (e) {
      if (e.status !== 401) error.textContent = e.message;
    } finally {
      reading = false;
      if (again) {
        const now = again === "now";
        again = false;
        read(now);
      }
    }
  }

  function drawRows() {
    const now = Date.now();
    const order = shown.map((i) => {
      const key = JSON.stringify([i.status, i.details, i.lastHeartbeat, i.url, i.slug, i.tags]);
      let row = rows.get(i.id);
      if (!row || row.key !== key) {
        row = { tr: instanceRow(i, now), key };
        rows.set(i.id, row);
      }
      return row.tr;
    });
    const ids = new Set(shown.map((i) => i.id));
    for (const id of rows.keys()) if (!ids.has(id)) rows.delete(id);
    tbody.replaceChildren(...order);
    if (!order.length) tbody.append(h("tr", {}, h("td.empty", { colspan: 7 }, "No instances match.")));
    drawPager();
  }

  function drawPager() {
    const t = total();
    const last = pages();
    const from = shown.length ? page * size + 1 : 0;
    const to = page * size + shown.length;
    status.textContent = t === null
      ? `${count(from)}–${count(to)}`
      : `${count(from)}–${count(to)} of ${count(t)} · page ${count(page + 1)} of ${count(last)}`;
    buttons.first.disabled = buttons.prev.disabled = page === 0;
    buttons.next.disabled = !next;
    buttons.last.disabled = last === null || page >= last - 1;
    container.querySelector("[data-testid=instance-total]").textContent =
      live.state === "loading" ? "" : `${count(live.counts.total)} instances in ${count(live.slugs.size)} services`;
  }

  function drawServices() {
    const wanted = serviceFilter.value.trim().toLowerCase();
    const slugs = [...live.slugs.keys()].filter((s) => !wanted || s.toLowerCase().includes(wanted)).sort(byName);
    const item = (slug, counts, label) => h("li", { class: slug === filter.slug ? "active" : "" },
      h("a", { href: `#/instances${query({ slug, status: filter.status, size: size === 100 ? "" : size })}` },
        h("span.service-name", {}, label ?? slug), h("span.service-count", {}, count(counts.total))),
      stacked(counts));
    fill(serviceList,
      item("", live.counts, "All services"),
      slugs.slice(0, SERVICES_SHOWN).map((s) => item(s, live.slugs.get(s))),
      slugs.length > SERVICES_SHOWN ? h("li.muted", {}, `${count(slugs.length - SERVICES_SHOWN)} more: filter to find them`) : null);
    fill(container.querySelector("#slugs"), slugs.slice(0, 500).map((s) => h("option", { value: s })));
  }

  // The list of services is redrawn at most twice a second however fast changes come.
  const redrawServices = throttled(500, drawServices);

  drawServices();
  read(true);
  return {
    update(detail) {
      if (detail.kinds.has("instance")) read(false);
      if (detail.kinds.has("instance") || detail.kinds.has("state")) {
        redrawServices();
        drawPager();
      }
    },
    tick() {
      const now = Date.now();
      if (now - lastRead > REREAD_MS) read(false);
      for (const el of tbody.querySelectorAll(".age")) el.textContent = ago(Number(el.dataset.at), now);
    },
  };
}

function instanceRow(i, now) {
  const seen = time(i.lastHeartbeat);
  return h("tr", { "data-id": i.id, "data-status": i.status },
    h("td", {}, statusBadge(i.status)),
    h("td", {}, h("a.mono", { href: `#/instance/${encodeURIComponent(i.id)}` }, i.id), h("div.sub.mono", {}, i.url)),
    h("td", {}, h("a", { href: `#/instances?slug=${encodeURIComponent(i.slug)}` }, i.slug)),
    h("td.age.nowrap", { "data-at": seen, title: i.lastHeartbeat || "" }, ago(seen, now)),
    h("td.nowrap.mono", {}, latency(i.details)),
    h("td.details", { title: i.details || "" }, i.details || ""),
    h("td", {}, (i.tags || []).map((t) => chip(t))));
}

/** One instance, everything the API says of it, read again at each of its changes. */
export function instance(container, { live, arg: id }) {
  const body = h("div.view");
  fill(container, h("p.crumbs", {}, h("a", { href: "#/instances" }, "Instances"), " / ", h("span.mono", {}, id)), body);
  let current = null;

  async function read() {
    try {
      const { data } = await call(`/instances${query({ id })}`);
      current = data.instances[0] ?? null;
      draw();
    } catch (e) {
      if (e.status !== 401) fill(body, h("p.form-error", {}, e.message));
    }
  }

  function draw() {
    if (!current) {
      fill(body, empty("This instance is not registered (any more)."));
      return;
    }
    const i = current;
    const check = i.healthCheck ?? {};
    const seen = time(i.lastHeartbeat);
    const history = live.recent.filter((r) => r.kind === "instance" && r.id === id);
    fill(body,
      h("div.page-head", {}, h("h1.mono", {}, i.id), statusBadge(i.status)),
      h("p.lead.mono", {}, i.url),
      h("div.grid-2", {},
        h("section.panel", {}, h("h2", {}, "Health"), facts([
          ["Status", statusBadge(i.status)],
          ["Details", i.details || "—"],
          ["Latency", latency(i.details) || "—"],
          ["Last seen", h("span.age", { "data-at": seen, title: i.lastHeartbeat || "" }, ago(seen))],
          ["Check", i.ttl ? `heartbeats within ${i.ttl}` : `${check.type ?? "tcp"}${check.type === "http" ? ` ${check.path ?? "/healthz"}` : ""}`],
          ["Interval", check.interval ?? (i.ttl ? "" : "10s")],
          ["Timeout", check.timeout],
          ["Thresholds", check.healthyThreshold || check.unhealthyThreshold ? `healthy after ${check.healthyThreshold ?? 1}, unhealthy after ${check.unhealthyThreshold ?? 2}` : ""],
          ["Degraded above", check.degradedLatency],
          ["Removed after", i.deregisterAfter ? `${i.deregisterAfter} unreachable` : ""],
        ])),
        h("section.panel", {}, h("h2", {}, "Address"), facts([
          ["Service", h("a", { href: `#/instances?slug=${encodeURIComponent(i.slug)}` }, i.slug)],
          ["Scheme", i.scheme], ["Host", i.host], ["IP", i.ip], ["Port", i.port], ["Path", i.path],
          ["Node", i.nodeUrl ? h("a", { href: `#/node/${encodeURIComponent(i.nodeUrl)}` }, i.nodeUrl) : ""],
          ["Deployment", i.deploymentId],
          ["Tags", (i.tags || []).map((t) => chip(t))],
        ]))),
      h("section.panel", {}, h("h2", {}, "Metadata"),
        Object.keys(i.metadata || {}).length
          ? table(["Key", "Value"], Object.entries(i.metadata).map(([k, v]) => [h("span.mono", {}, k), v]))
          : empty("No metadata.")),
      h("section.panel", {}, h("h2", {}, "Changes seen"),
        history.length
          ? h("ol.feed", {}, history.map((r) => h("li", {}, h("span.feed-rev", {}, `#${r.revision}`), h("span.feed-what", {}, r.what), h("span.muted", {}, by(r.by)), r.at ? h("span.muted.age", { "data-at": r.at }, ago(r.at)) : h("span.muted.when", {}, "earlier"))))
          : empty("None since this page opened.")));
  }

  read();
  let lastRead = Date.now();
  return {
    update(detail) {
      if (detail.ids?.has(id)) {
        lastRead = Date.now();
        read();
      }
    },
    tick() {
      const now = Date.now();
      if (now - lastRead > REREAD_MS) {
        lastRead = now;
        read();
      }
      for (const el of container.querySelectorAll(".age")) el.textContent = ago(Number(el.dataset.at), now);
    },
  };
}
