// Nodes (usage bars, GPUs, heartbeat age) and definitions (rendered for people: what runs,
// which ports, which variables, which APIs and clients). Both come from what the console
// keeps current from the feed, so they change in place as heartbeats and saves arrive.

import { h, fill, count, ago, bar, bytes, facts, table, chip, empty, time, throttled } from "./dom.js";
import { ratio } from "./overview.js";
import { query } from "./api.js";

const sortedNodes = (live) => [...live.nodes.values()].sort((a, b) => (a.url < b.url ? -1 : 1));

function usageRows(n) {
  const u = n.usage ?? {};
  const cores = (u.cpu?.total ?? 0) / 1000;
  return [
    ["CPU", bar(ratio(u.cpu)), `${((u.cpu?.used ?? 0) / 1000).toFixed(1)} of ${cores} cores`],
    ["Memory", bar(ratio(u.memory)), `${bytes(u.memory?.used)} of ${bytes(u.memory?.total)}`],
    ["Disk", bar(ratio(u.disk)), `${bytes(u.disk?.used)} of ${bytes(u.disk?.total)}`],
  ];
}

function usage(n) {
  return h("div.usage", {}, usageRows(n).map(([label, meter, text]) => h("div.usage-row", {}, h("span.usage-label", {}, label), meter, h("span.usage-text", {}, text))));
}

function gpuSummary(gpu) {
  const mem = gpu.memoryTotal ? gpu.memoryUsage / gpu.memoryTotal : 0;
  return h("div.gpu", { "data-testid": "gpu" },
    h("div.gpu-head", {}, h("span.gpu-index", {}, `GPU ${gpu.intraNodeId}`), h("span.gpu-name", {}, gpu.name)),
    h("div.usage-row", {}, h("span.usage-label", {}, "Util"), bar(gpu.gpuUtilization / 100), h("span.usage-text", {}, `${Math.round(gpu.gpuUtilization)}%`)),
    h("div.usage-row", {}, h("span.usage-label", {}, "Memory"), bar(mem), h("span.usage-text", {}, `${bytes(gpu.memoryUsage * 1048576)} of ${bytes(gpu.memoryTotal * 1048576)}`)));
}

function nodeStatus(n) {
  return h("span", { class: `pill ${n.status === "Online" ? "ok" : "bad"}` }, n.status ?? "");
}

function heartbeat(n) {
  const at = time(n.lastHeartbeat);
  return h("span.age", { "data-at": at, title: n.lastHeartbeat ?? "" }, ago(at));
}

function ticking(container) {
  return () => {
    const now = Date.now();
    for (const el of container.querySelectorAll(".age")) el.textContent = ago(Number(el.dataset.at), now);
  };
}

export function nodes(container, { live }) {
  const grid = h("div.cards");
  fill(container, h("div.page-head", {}, h("h1", {}, "Nodes"), h("span.muted", {}, "every registry daemon, with its last heartbeat")), grid);
  const draw = () => {
    const all = sortedNodes(live);
    fill(grid, all.length ? all.map((n) => h("a.card.node-card", { href: `#/node/${encodeURIComponent(n.url)}`, "data-url": n.url },
      h("div.card-head", {}, h("span.card-title.mono", {}, n.url), nodeStatus(n)),
      h("div.card-meta.muted", {}, [n.region, n.availabilityZone].filter(Boolean).join(" · ") || "no region", " · heartbeat ", heartbeat(n)),
      usage(n),
      n.gpus?.length ? h("div.gpus", {}, n.gpus.map(gpuSummary)) : h("p.muted.small", {}, "No GPUs")))
      : empty("No nodes."));
  };
  draw();
  const redraw = throttled(250, draw);
  return { update: (d) => d.kinds.has("node") && redraw(), tick: ticking(container) };
}

export function node(container, { live, arg: url }) {
  const body = h("div.view");
  fill(container, h("p.crumbs", {}, h("a", { href: "#/nodes" }, "Nodes"), " / ", h("span.mono", {}, url)), body);
  const draw = () => {
    const n = live.nodes.get(url);
    if (!n) {
      fill(body, empty(live.state === "loading" ? "Loading…" : "No such node."));
      return;
    }
    fill(body,
      h("div.page-head", {}, h("h1.mono", {}, n.url), nodeStatus(n)),
      h("div.grid-2", {},
        h("section.panel", {}, h("h2", {}, "Node"), facts([
          ["Id", h("span.mono", {}, n.id)],
          ["Region", n.region], ["Zone", n.availabilityZone],
          ["Last heartbeat", heartbeat(n)],
          ["GPUs", String(n.gpus?.length ?? 0)],
          ["Instances", h("a", { href: `#/instances${query({ nodeUrl: n.url })}` }, "those on this node")],
        ])),
        h("section.panel", {}, h("h2", {}, "Usage"), usage(n))),
      h("section.panel", {}, h("h2", {}, `GPUs (${n.gpus?.length ?? 0})`),
        n.gpus?.length ? h("div.gpu-cards", {}, n.gpus.map((g) => h("div.gpu-card", { "data-testid": "gpu" },
          gpuSummary(g),
          facts([
            ["Bus", h("span.mono", {}, g.busId)],
            ["Temperature", `${g.temperature} °C`],
            ["Power", `${g.powerUsage} W of ${g.powerCap} W`],
            ["P-state", g.performanceState],
            ["Compute mode", g.computeMode],
            ["CUDA", g.cudaVersion],
          ]),
          g.processDetails?.length ? table(["PID", "Process", "Memory"], g.processDetails.map((p) => [p.pid, p.processName, bytes(p.memoryUsage * 1048576)])) : null)))
          : empty("This node reports no GPUs.")));
  };
  draw();
  return { update: (d) => (d.kinds.has("node") || d.kinds.has("state")) && draw(), tick: ticking(container) };
}

function definitionCard(d) {
  const runs = d.image
    ? [chip("image"), h("span.mono", {}, d.image.name)]
    : d.repository
      ? [chip("repository"), h("span.mono", {}, d.repository.url), d.repository.version ? h("span.muted", {}, ` @ ${d.repository.version}`) : null]
      : [h("span.muted", {}, "nothing to run (no image or repository)")];
  const source = d.image ?? d.repository ?? {};
  const internal = source.internalPorts ?? source.ports ?? [];
  return h("article.card.definition", { id: `def-${d.id}`, "data-id": d.id },
    h("div.card-head", {}, h("span.card-title.mono", {}, d.id), h("span.runs", {}, runs)),
    facts([
      ["Build context", d.repository?.buildContext],
      ["Container file", d.repository?.containerFile],
      ["Internal ports", internal.map((p) => chip(String(p), "mono"))],
      ["Port mappings", (d.ports ?? []).map((p) => chip(`${p.host} → ${p.internal}`, "mono"))],
    ]),
    d.envars?.length ? h("div.sub-section", {}, h("h3", {}, "Environment"), table(["Variable", "Value"], d.envars.map((e) => [h("span.mono", {}, e.key), h("span.mono", {}, e.value)]), "compact")) : null,
    d.apiSpecs?.length ? h("div.sub-section", {}, h("h3", {}, "API specs"), table(["URL", "Protocol", "Version", "Metadata"], d.apiSpecs.map((s) => [h("span.mono", {}, s.url), s.protocolType, s.version, Object.entries(s.metadata ?? {}).map(([k, v]) => chip(`${k}: ${v}`))]), "compact")) : null,
    d.clients?.length ? h("div.sub-section", {}, h("h3", {}, "Clients"), table(["Language", "URL"], d.clients.map((c) => [c.language, h("span.mono", {}, c.url)]), "compact")) : null);
}

export function definitions(container, { live }) {
  const search = h("input.search", { type: "search", placeholder: "Filter by id", "aria-label": "Filter definitions", oninput: () => draw() });
  const list = h("div.cards.wide");
  fill(container, h("div.page-head", {}, h("h1", {}, "Definitions"), h("span.muted", {}, "deployable service templates"), h("div.spacer"), search), list);
  const draw = () => {
    const wanted = search.value.trim().toLowerCase();
    const all = [...live.definitions.values()].filter((d) => !wanted || d.id.toLowerCase().includes(wanted)).sort((a, b) => (a.id < b.id ? -1 : 1));
    fill(list, all.length ? [all.slice(0, 200).map(definitionCard), all.length > 200 ? h("p.muted", {}, `${count(all.length - 200)} more: filter to find them`) : null]
      : empty(live.definitions.size ? "No definition matches." : "No definitions saved."));
  };
  draw();
  return { update: (d) => (d.kinds.has("definition") || d.kinds.has("state")) && draw() };
}
