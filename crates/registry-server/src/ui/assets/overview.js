// The overview: counts by status, services that need attention, nodes at a glance, and
// the latest changes as the feed brings them.

import { h, fill, count, ago, bar, statusBadge, empty, time, throttled } from "./dom.js";
import { STATUSES } from "./live.js";

export function overview(container, { live }) {
  const tiles = h("section.tiles");
  const spread = h("div.spread");
  const services = h("div.panel-body");
  const nodesList = h("div.panel-body");
  const recent = h("ol.feed");
  fill(container,
    h("div.page-head", {}, h("h1", {}, "Overview")),
    tiles,
    spread,
    h("div.grid-2", {},
      h("section.panel", {}, h("header.panel-head", {}, h("h2", {}, "Needs attention"), h("a.more", { href: "#/instances" }, "All instances →")), services),
      h("section.panel", {}, h("header.panel-head", {}, h("h2", {}, "Nodes"), h("a.more", { href: "#/nodes" }, "All nodes →")), nodesList)),
    h("section.panel", {}, h("header.panel-head", {}, h("h2", {}, "Recent changes"), h("span.muted", {}, "from the change feed")), recent));

  function tile(label, value, cls, href, sub) {
    return h(`a.tile${cls ? "." + cls : ""}`, { href }, h("span.tile-label", {}, label), h("span.tile-value", { "data-testid": `count-${label.toLowerCase()}` }, value), sub ? h("span.tile-sub", {}, sub) : null);
  }

  function drawCounts() {
    const c = live.counts;
    const nodes = [...live.nodes.values()];
    const online = nodes.filter((n) => n.status === "Online").length;
    fill(tiles,
      tile("Instances", count(c.total), "", "#/instances", `${count(live.slugs.size)} services`),
      ...STATUSES.map((s) => tile(s, count(c[s]), `t-${s.toLowerCase()}`, `#/instances?status=${s}`)),
      tile("Nodes", `${online}/${nodes.length}`, "", "#/nodes", "online"),
      tile("Definitions", count(live.definitions.size), "", "#/definitions"));
    fill(spread, c.total ? stacked(c) : null);
  }

  function drawServices() {
    const troubled = [...live.slugs.entries()]
      .filter(([, c]) => c.total > c.Healthy)
      .sort((a, b) => (b[1].total - b[1].Healthy) - (a[1].total - a[1].Healthy) || (a[0] < b[0] ? -1 : 1))
      .slice(0, 8);
    fill(services, troubled.length
      ? h("ul.service-list", {}, troubled.map(([slug, c]) => h("li", {},
        h("a", { href: `#/instances?slug=${encodeURIComponent(slug)}` }, slug),
        stacked(c),
        h("span.muted", {}, `${count(c.total - c.Healthy)} of ${count(c.total)} not healthy`))))
      : empty(live.counts.total ? "Every instance is healthy." : "No instances registered yet."));
  }

  function drawNodes() {
    const now = Date.now();
    const nodes = [...live.nodes.values()].sort((a, b) => (a.url < b.url ? -1 : 1)).slice(0, 6);
    fill(nodesList, nodes.length ? h("ul.node-list", {}, nodes.map((n) => h("li", {},
      h("a", { href: `#/node/${encodeURIComponent(n.url)}` }, n.url),
      h("span", { class: `pill ${n.status === "Online" ? "ok" : "bad"}` }, n.status ?? ""),
      h("span.meter-row", {}, "CPU", bar(ratio(n.usage?.cpu)), "Mem", bar(ratio(n.usage?.memory))),
      h("span.muted.age", { "data-at": time(n.lastHeartbeat) }, ago(time(n.lastHeartbeat), now)))))
      : empty("No nodes."));
  }

  function drawRecent() {
    fill(recent, live.recent.length ? live.recent.slice(0, 20).map((r) => h("li", {},
      h("span.feed-rev", {}, `#${r.revision}`),
      h("span.feed-kind", {}, r.kind),
      r.kind === "instance" && r.op !== "delete"
        ? h("a.mono", { href: `#/instance/${encodeURIComponent(r.id)}` }, r.id)
        : r.kind === "node" ? h("a.mono", { href: `#/node/${encodeURIComponent(r.id)}` }, r.id) : h("span.mono", {}, r.id),
      r.slug ? h("span.muted", {}, r.slug) : null,
      r.status && r.what !== "updated" ? h("span.feed-what", {}, r.what, " ", statusBadge(r.status)) : h("span.feed-what", {}, r.what),
      h("span.muted.feed-by", {}, by(r.by)),
      r.at ? h("span.muted.age", { "data-at": r.at }, ago(r.at)) : h("span.muted.when", {}, "earlier")))
      : h("li.empty", {}, "Waiting for changes…"));
  }

  const draw = () => {
    drawCounts();
    drawServices();
    drawNodes();
    drawRecent();
  };
  draw();
  return {
    // A burst of changes redraws the overview a few times a second, not at every frame.
    update: throttled(250, draw),
    tick() {
      const now = Date.now();
      for (const el of container.querySelectorAll(".age")) el.textContent = ago(Number(el.dataset.at), now);
    },
  };
}

/** A usage's used/total as a fraction. */
export function ratio(usage) {
  return usage && usage.total ? usage.used / usage.total : 0;
}

/** Who made a change, as the feed's `by` says. */
export function by(actor) {
  if (!actor) return "";
  if (actor.node) return "by the registry";
  return `by ${actor.slug}${actor.tokenId ? ` (${actor.tokenId})` : ""}`;
}

/** One bar split by status. */
export function stacked(counts) {
  const el = h("span.stacked", { title: STATUSES.map((s) => `${s}: ${counts[s] || 0}`).join(", ") });
  for (const s of STATUSES) {
    if (!counts[s]) continue;
    const part = h(`span.seg.s-${s.toLowerCase()}`);
    part.style.flexGrow = String(counts[s]);
    el.append(part);
  }
  return el;
}
