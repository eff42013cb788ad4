// What the console knows of the registry, kept current from the change feed.
//
// At start it subscribes to the event stream, then lists every definition, node and
// instance (instances in pages of 10,000, keeping of each only what counts and groups
// need), and from then on applies what the stream brings. Events are queued and applied once per animation
// frame, so a burst of thousands of changes costs one update of the counts and one
// redraw, not one per change.

import { call, follow, query } from "./api.js";

/** Instances per page while loading the catalog: the API's largest page. */
const LOAD_PAGE = 10000;
/** How many recent changes the overview keeps. */
const RECENT = 60;
/** How many changes before the page opened the overview shows. */
const HISTORY = 30;
/** The kinds of change the console follows. */
const KINDS = ["instance", "node", "definition"];
/** The statuses in the order the console shows them. */
export const STATUSES = ["Healthy", "Degraded", "Unreachable", "Error", "Unknown"];

/** What an instance change did, given the instance before it; null when not worth listing. */
function instanceChange(before, { op, object, by }) {
  const byRegistry = by?.slug === "registry" && by?.node;
  if (op === "delete") return { what: "removed", slug: before?.slug };
  const now = { slug: object.slug, status: object.status };
  if (!before) return { what: byRegistry ? "checked" : "registered", ...now };
  if (before.status !== now.status) return { what: `${before.status} → ${now.status}`, ...now };
  // The daemon writes health details now and then with no change of status.
  return byRegistry ? null : { what: "updated", ...now };
}

/** What a change was, judged by the instances before it in `shadow`, which it updates. */
function describe(shadow, change) {
  if (change.kind !== "instance") return change.kind === "definition" ? { what: change.op === "delete" ? "removed" : "saved" } : null;
  const before = shadow.get(change.id);
  if (change.op === "delete") shadow.delete(change.id);
  else shadow.set(change.id, { slug: change.object.slug, status: change.object.status });
  return instanceChange(before, change);
}

function emptyCounts() {
  return Object.fromEntries([["total", 0], ...STATUSES.map((s) => [s, 0])]);
}

export class Live extends EventTarget {
  constructor() {
    super();
    /** id -> {slug, status}: enough to count and group every instance. */
    this.instances = new Map();
    /** slug -> counts by status and total. */
    this.slugs = new Map();
    this.counts = emptyCounts();
    /** url -> node, as the API answers it. */
    this.nodes = new Map();
    /** id -> definition. */
    this.definitions = new Map();
    /** Recent changes, newest first: {at, revision, kind, op, id, by, what, status}. */
    this.recent = [];
    this.revision = 0;
    this.state = "loading"; // loading | live | reconnecting
    this.loaded = 0;
    this.sorted = null;
    this.pending = [];
    this.listed = { instance: 0, node: 0, definition: 0 };
    this.history = new Map();
    this.scheduled = false;
    this.abort = new AbortController();
  }

  /** Follows the feed until `stop`. */
  start() {
    return this.run();
  }

  stop() {
    this.abort.abort();
  }

  /**
   * Subscribes to the feed, then lists everything, then applies what the feed brought
   * meanwhile and goes on applying what it brings. Subscribing first means no change can
   * fall between the lists and the feed; a change the lists already hold is recognised by
   * the lists' `X-Registry-Index` and not applied twice. After a dropped connection it
   * follows on from the last revision it saw; told to reset (that revision is no longer
   * in the feed's history), it lists everything again.
   */
  async run() {
    let since;
    let delay = 500;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      // Each connection ends with its round, so a failed round leaves no stream open.
      const round = new AbortController();
      const end = () => round.abort();
      signal.addEventListener("abort", end, { once: true });
      try {
        const read = await follow(since, KINDS, round.signal);
        let held = since === undefined ? [] : null;
        const reading = read((e) => {
          if (e.event === "reset") throw Object.assign(new Error("reset"), { reset: true });
          if (e.event !== "change") return;
          since = e.data.revision;
          if (held) held.push(e.data);
          else this.queue(e.data);
        }).then(() => null, (error) => error);
        if (held) {
          const listed = await this.load();
          for (const change of held) this.queue(change);
          held = null;
          this.recall(listed);
        }
        this.state = "live";
        this.emit({ kinds: new Set(["state"]) });
        delay = 500;
        const error = await reading;
        if (error) throw error;
      } catch (error) {
        if (signal.aborted || error.status === 401) return;
        if (error.reset) since = undefined;
      } finally {
        signal.removeEventListener("abort", end);
        round.abort();
      }
      this.state = "reconnecting";
      this.emit({ kinds: new Set(["state"]) });
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  /**
   * Reads the last few changes before the lists were read, for the overview: a short read
   * of the feed from a little before the lists' revision, ended once it reaches it.
   */
  async recall(listed) {
    const upTo = Math.max(...Object.values(listed));
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), 3000);
    const earlier = [];
    try {
      const read = await follow(Math.max(0, upTo - HISTORY), KINDS, stop.signal);
      await read((e) => {
        if (e.event !== "change" || e.data.revision > upTo) throw new Error("done");
        earlier.push(e.data);
        if (e.data.revision === upTo) throw new Error("done");
      });
    } catch {
      // Done, reset (history trimmed) or timed out: what was read is enough.
    } finally {
      clearTimeout(timer);
      stop.abort();
    }
    const shadow = new Map();
    const entries = [];
    for (const change of earlier) {
      const what = describe(shadow, change);
      if (what) entries.unshift({ at: 0, revision: change.revision, kind: change.kind, op: change.op, id: change.id, by: change.by, ...what });
    }
    const known = new Set(this.recent.map((r) => r.revision));
    this.recent = [...this.recent, ...entries.filter((e) => !known.has(e.revision))]
      .sort((x, y) => y.revision - x.revision)
      .slice(0, RECENT);
    this.emit({ kinds: new Set(["state"]) });
  }

  async load() {
    this.state = "loading";
    this.emit({ kinds: new Set(["state"]) });
    const signal = this.abort.signal;
    const [nodes, definitions] = await Promise.all([
      call("/nodes", { method: "POST", signal }),
      this.loadAll("/definitions", "definitions", 1000, (d) => d),
    ]);
    this.nodes = new Map(nodes.data.nodes.map((n) => [n.url, n]));
    this.definitions = new Map(definitions.items.map((d) => [d.id, d]));
    this.instances = new Map();
    this.loaded = 0;
    const instances = await this.loadAll("/instances", "instances", LOAD_PAGE, (i) => {
      this.instances.set(i.id, { slug: i.slug, status: i.status });
      this.loaded++;
      return null;
    });
    this.recount();
    // A change at or before these was in the lists just read: it is history to describe,
    // not news to apply.
    this.listed = { instance: instances.index, node: nodes.index, definition: definitions.index };
    this.history = new Map();
    this.revision = Math.max(nodes.index, definitions.index, instances.index);
    this.emit({ kinds: new Set(["instance", "node", "definition", "state"]) });
    return this.listed;
  }

  /** Every page of a list; `keep` maps each item (a null is not kept). */
  async loadAll(path, field, limit, keep) {
    const items = [];
    let after;
    let index = 0;
    do {
      const page = await call(path + query({ limit, after }), { signal: this.abort.signal });
      index = index || page.index;
      for (const item of page.data[field]) {
        const kept = keep(item);
        if (kept !== null) items.push(kept);
      }
      after = page.data.next;
      if (field === "instances") this.emit({ kinds: new Set(["state"]) });
    } while (after);
    return { items, index };
  }

  recount() {
    this.counts = emptyCounts();
    this.slugs = new Map();
    for (const instance of this.instances.values()) this.count(instance, 1);
    this.sorted = null;
  }

  count({ slug, status }, sign) {
    let slugCounts = this.slugs.get(slug);
    if (!slugCounts) this.slugs.set(slug, (slugCounts = emptyCounts()));
    for (const counts of [this.counts, slugCounts]) {
      counts.total += sign;
      counts[status] = (counts[status] || 0) + sign;
    }
    if (slugCounts.total === 0) this.slugs.delete(slug);
  }

  queue(change) {
    this.pending.push(change);
    if (this.scheduled) return;
    this.scheduled = true;
    // A hidden tab runs no animation frames; the timer keeps its counts current anyway.
    const flush = () => {
      if (!this.scheduled) return;
      this.scheduled = false;
      this.apply();
    };
    requestAnimationFrame(flush);
    setTimeout(flush, 500);
  }

  /** Applies every queued change at once and tells the views once. */
  apply() {
    const changes = this.pending;
    this.pending = [];
    const kinds = new Set();
    const ids = new Set();
    for (const change of changes) {
      const old = change.revision <= (this.listed[change.kind] ?? 0);
      if (!old) {
        kinds.add(change.kind);
        ids.add(change.id);
      }
      this.revision = Math.max(this.revision, change.revision);
      const what = old ? this.describe(change) : this[change.kind]?.(change);
      if (what) {
        // A change from before the page opened has no time the console knows.
        this.recent.unshift({ at: old ? 0 : Date.now(), revision: change.revision, kind: change.kind, op: change.op, id: change.id, by: change.by, ...what });
      }
    }
    if (this.recent.length > RECENT) this.recent.length = RECENT;
    this.emit({ kinds, ids, changes });
  }

  /** Applies an instance change; says what it was, or null for one not worth listing. */
  instance(change) {
    const before = this.instances.get(change.id);
    if (before) this.count(before, -1);
    if (change.op === "delete") {
      this.instances.delete(change.id);
    } else {
      const after = { slug: change.object.slug, status: change.object.status };
      this.instances.set(change.id, after);
      this.count(after, 1);
    }
    if (!before || change.op === "delete") this.sorted = null;
    return instanceChange(before, change);
  }

  /** What a change the lists already held was, judged by the changes before it. */
  describe(change) {
    return describe(this.history, change);
  }

  node({ op, id, object }) {
    const before = this.nodes.get(id);
    if (op === "delete") {
      this.nodes.delete(id);
      return before ? { what: "removed" } : null;
    }
    this.nodes.set(id, object);
    // Heartbeats are changes too; only a new node or a change of status is news.
    if (!before) return { what: "joined" };
    return before.status !== object.status ? { what: object.status } : null;
  }

  definition({ op, id, object }) {
    const before = this.definitions.has(id);
    if (op === "delete") {
      this.definitions.delete(id);
      return { what: "removed" };
    }
    this.definitions.set(id, object);
    return { what: before ? "updated" : "saved" };
  }

  /** Instance ids in the API's order (by id), filtered by slug and status when given. */
  ids({ slug, status } = {}) {
    if (!this.sorted) this.sorted = [...this.instances.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (!slug && !status) return this.sorted;
    return this.sorted.filter((id) => {
      const i = this.instances.get(id);
      return (!slug || i.slug === slug) && (!status || i.status.toLowerCase() === status.toLowerCase());
    });
  }

  /** How many instances match a filter of slug and status, or null when it cannot be known. */
  total({ slug, status, tag, nodeUrl } = {}) {
    if (tag || nodeUrl) return null;
    const counts = slug ? this.slugs.get(slug) ?? emptyCounts() : this.counts;
    return status ? counts[STATUSES.find((s) => s.toLowerCase() === status.toLowerCase())] ?? 0 : counts.total;
  }

  emit(detail) {
    this.dispatchEvent(new CustomEvent("change", { detail }));
  }
}
