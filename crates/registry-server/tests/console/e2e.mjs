// Drives the web console (/ui) in headless Chromium against a running daemon, as a person
// would: sign in, watch an instance appear and change status live, open a node's GPUs,
// read the definitions, and page through 10,000 instances.
//
//   REGISTRY_URL=http://127.0.0.1:PORT REGISTRY_TOKEN=<admin token> \
//   REGISTRY_CONSOLE_MODULES=<node_modules with playwright-core> REGISTRY_CHROMIUM=<path> \
//   [REGISTRY_CONSOLE_SCREENSHOTS=<dir>] node e2e.mjs
//
// Prints one line per step ("ok ...") and exits 1 at the first failure, leaving a
// screenshot of the page as it was (failure.png in the screenshots folder, or the
// system's temporary folder). Started by tests/console.rs against a fresh daemon whose
// node has two fake GPUs; it registers only 127.0.0.1 addresses, and runs its own toy
// HTTP targets on 127.0.0.1.

import { createServer } from "node:http";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { mkdirSync } from "node:fs";
import { pathToFileURL } from "node:url";

const base = process.env.REGISTRY_URL;
const token = process.env.REGISTRY_TOKEN;
const modules = process.env.REGISTRY_CONSOLE_MODULES;
const executablePath = process.env.REGISTRY_CHROMIUM;
const shots = process.env.REGISTRY_CONSOLE_SCREENSHOTS;
if (!base || !token || !modules || !executablePath) {
  console.error("needs REGISTRY_URL, REGISTRY_TOKEN, REGISTRY_CONSOLE_MODULES and REGISTRY_CHROMIUM");
  process.exit(2);
}
if (shots) mkdirSync(shots, { recursive: true });
const { chromium } = await import(pathToFileURL(join(modules, "playwright-core", "index.mjs")));

const BULK = 10000;
const WAIT = 20000;

// --- The API, straight from node --------------------------------------------------------

async function api(method, path, body) {
  const response = await fetch(`${base}/registry-svc${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "X-Registry-Extensions": "true" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const register = async (instance) => (await api("PUT", "/instance", instance)).id;

/** A toy HTTP target on 127.0.0.1 answering `status` after `delay` ms. */
function target(status = 200, delay = 0) {
  const server = createServer((request, response) => {
    setTimeout(() => {
      response.writeHead(status, { "content-type": "text/plain", connection: "close" });
      response.end("ok");
    }, delay);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    const url = `http://127.0.0.1:${server.address().port}`;
    resolve({
      url,
      stop: () => new Promise((done) => {
        server.close(done);
        server.closeAllConnections();
      }),
    });
  }));
}

const httpCheck = (extra = {}) => ({ type: "http", path: "/healthz", interval: "1s", timeout: "500ms", unhealthyThreshold: 1, ...extra });

// --- Steps --------------------------------------------------------------------------------

let page;
const errors = [];

async function step(name, run) {
  const started = Date.now();
  try {
    await run();
  } catch (error) {
    console.log(`FAIL ${name}: ${error.stack ?? error}`);
    if (page) await page.screenshot({ path: join(shots ?? tmpdir(), "failure.png"), fullPage: true }).catch(() => {});
    throw error;
  }
  console.log(`ok ${name} (${Date.now() - started} ms)`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function shot(name) {
  if (!shots) return;
  // Let the last frame of live updates and bar transitions settle.
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const targets = [];
let exit = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 860 }, colorScheme: "light" });
  page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // The browser asks for /favicon.ico by itself; that 404 is no fault of the console.
    if (m.type() === "error" && !m.location().url.endsWith("/favicon.ico")) errors.push(`console: ${m.text()}`);
  });

  // A registry worth looking at: services in every status, definitions of both kinds.
  const [web, slow, failing] = [await target(), await target(200, 150), await target(503)];
  targets.push(web, slow, failing);
  await step("the registry has services in every status and two definitions", async () => {
    await api("PUT", "/definition", { definition: {
      id: "checkout", image: { name: "ghcr.io/example/checkout:2.4.1", internalPorts: [8080, 9090] },
      ports: [{ internal: 8080, host: 58080 }],
      envars: [{ key: "LOG_LEVEL", value: "info" }, { key: "PAYMENTS_URL", value: "http://127.0.0.1:58081" }],
      apiSpecs: [{ url: "http://127.0.0.1:58080/openapi.json", protocolType: "OpenAPI", version: "3.1", metadata: { audience: "public" } }],
      clients: [{ language: "TypeScript", url: "https://npm.example/checkout-client" }, { language: "Go", url: "https://go.example/checkout" }],
    } });
    await api("PUT", "/definition", { definition: {
      id: "model-svc", repository: { url: "https://git.example/ml/model-svc.git", version: "v0.9.0", buildContext: "server", containerFile: "Containerfile", internalPorts: [7000] },
      envars: [{ key: "MODEL", value: "llama-3-8b" }],
    } });
    for (let n = 0; n < 3; n++) {
      await register({ url: `${web.url}/replica-${n}`, slug: "checkout", tags: ["blue", "v2"], healthCheck: httpCheck({ path: "/" }), metadata: { zone: "a" } });
    }
    await register({ url: `${slow.url}/api`, slug: "search", tags: ["green"], healthCheck: httpCheck({ degradedLatency: "50ms" }) });
    await register({ url: `${failing.url}/api`, slug: "payments", tags: ["blue"], healthCheck: httpCheck() });
    await register({ url: "http://127.0.0.1:1/api", slug: "payments", tags: ["canary"], healthCheck: { type: "tcp", interval: "1s", timeout: "200ms", unhealthyThreshold: 1 } });
    await register({ url: "http://127.0.0.1:58099/model", slug: "model-svc", tags: ["gpu"], healthCheck: { type: "none" } });
  });

  await step("the console needs a token, and refuses a wrong one", async () => {
    const response = await page.goto(`${base}/ui`);
    check(response.status() === 200, `/ui answered ${response.status()}`);
    check((response.headers()["content-security-policy"] ?? "").includes("script-src 'self'"), "no strict CSP on /ui");
    await page.locator("form.signin").waitFor();
    await shot("sign-in");
    await page.fill("#token", "rsv_wrong");
    await page.click("form.signin button[type=submit]");
    await page.locator(".form-error", { hasText: "not valid" }).waitFor({ timeout: WAIT });
    check(await page.evaluate(() => sessionStorage.length === 0), "a refused token was kept");
    // The browser logs the refused call; that one was asked for.
    errors.length = 0;
  });

  await step("signing in shows the overview, live from the feed", async () => {
    await page.fill("#token", token);
    await page.click("form.signin button[type=submit]");
    await page.locator("#live[data-state=live]").waitFor({ timeout: WAIT });
    await page.locator("[data-testid=count-instances]", { hasText: "7" }).waitFor({ timeout: WAIT });
    const stored = await page.evaluate(() => [sessionStorage.length, localStorage.getItem("registry-svc.console.token")]);
    check(stored[0] === 1 && stored[1] === null, `the token is not (only) in session storage: ${stored}`);
    // Every status settles: the checks run every second.
    for (const [status, n] of [["healthy", "3"], ["degraded", "1"], ["unreachable", "1"], ["error", "1"]]) {
      await page.locator(`[data-testid=count-${status}]`, { hasText: n }).waitFor({ timeout: WAIT });
    }
    check(await page.evaluate(() => document.documentElement.dataset.theme) === "light", "not light under a light system");
  });

  await step("dark follows the system, and the toggle overrides it", async () => {
    await page.emulateMedia({ colorScheme: "dark" });
    await page.waitForFunction(() => document.documentElement.dataset.theme === "dark");
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    check(background !== "rgb(246, 247, 249)", `the dark theme kept the light background ${background}`);
    await page.click("#theme");
    await page.waitForFunction(() => document.documentElement.dataset.theme === "light");
    await page.click("#theme");
    await page.waitForFunction(() => document.documentElement.dataset.theme === "dark");
  });

  let liveId;
  const appearing = await target();
  targets.push(appearing);
  await step("an instance registered while the page is open appears without a reload", async () => {
    await page.click("#nav a[data-route=instances]");
    await page.locator("table.instances tbody tr[data-id]").first().waitFor({ timeout: WAIT });
    await page.evaluate(() => { window.stillTheSamePage = true; });
    liveId = await register({ url: `${appearing.url}/live`, slug: "live-demo", tags: ["new"], healthCheck: httpCheck() });
    await page.locator(`tr[data-id="${liveId}"][data-status=Healthy]`).waitFor({ timeout: WAIT });
    check(await page.evaluate(() => window.stillTheSamePage === true), "the page reloaded");
  });

  await step("its status changes when its target goes away", async () => {
    await appearing.stop();
    const row = page.locator(`tr[data-id="${liveId}"]`);
    await page.locator(`tr[data-id="${liveId}"][data-status=Unreachable]`).waitFor({ timeout: WAIT });
    const text = await row.locator(".status").textContent();
    check(text.includes("Unreachable"), `status text ${text}`);
    const colour = await row.locator(".status").evaluate((el) => getComputedStyle(el).color);
    check(colour === "rgb(220, 38, 38)" || colour === "rgb(248, 113, 113)", `Unreachable is not red: ${colour}`);
    check(await page.evaluate(() => window.stillTheSamePage === true), "the page reloaded");
    // Light for the remaining pictures, as a person without a dark system sees them.
    await page.click("#theme");
    await page.waitForFunction(() => document.documentElement.dataset.theme === "light");
    await shot("instances");
  });

  await step("one instance's page shows its health and address", async () => {
    await page.click(`tr[data-id="${liveId}"] a.mono`);
    await page.locator("h1", { hasText: liveId }).waitFor({ timeout: WAIT });
    await page.locator(".facts dd", { hasText: "http /healthz" }).waitFor();
    await page.locator(".feed li", { hasText: "→ Unreachable" }).waitFor({ timeout: WAIT });
    await shot("instance");
  });

  await step("the overview lists those changes as they came", async () => {
    await page.click("#nav a[data-route=overview]");
    await page.locator(".feed li", { hasText: "Healthy → Unreachable" }).waitFor({ timeout: WAIT });
    await page.locator(".feed li", { hasText: "registered" }).first().waitFor();
    await shot("overview-light");
    await page.click("#theme");
    await page.waitForFunction(() => document.documentElement.dataset.theme === "dark");
    await shot("overview-dark");
    await page.click("#theme");
    await page.waitForFunction(() => document.documentElement.dataset.theme === "light");
  });

  await step("a node with GPUs shows them with their bars", async () => {
    await page.click("#nav a[data-route=nodes]");
    await page.locator(".node-card").first().waitFor({ timeout: WAIT });
    check(await page.locator(".node-card [data-testid=gpu]").count() === 2, "the node card does not show 2 GPUs");
    await shot("nodes");
    await page.click(".node-card");
    await page.locator(".gpu-card").first().waitFor({ timeout: WAIT });
    const names = await page.locator(".gpu-card .gpu-name").allTextContents();
    check(names.length === 2 && names[0] === "NVIDIA GeForce RTX 4090", `GPUs: ${names}`);
    check(await page.locator(".gpu-card .bar").count() === 4, "each GPU has a utilisation and a memory bar");
    await shot("node");
  });

  await step("definitions read as what runs, ports, variables, APIs and clients", async () => {
    await page.click("#nav a[data-route=definitions]");
    const checkout = page.locator("article.definition[data-id=checkout]");
    await checkout.waitFor({ timeout: WAIT });
    for (const text of ["ghcr.io/example/checkout:2.4.1", "58080 → 8080", "PAYMENTS_URL", "OpenAPI", "TypeScript"]) {
      check((await checkout.textContent()).includes(text), `the checkout definition lacks ${text}`);
    }
    check((await page.locator("article.definition[data-id=model-svc]").textContent()).includes("v0.9.0"), "no repository version");
    await shot("definitions");
  });

  let ids = [];
  await step(`${BULK} instances registered through the API arrive while the tab stays responsive`, async () => {
    await page.click("#nav a[data-route=instances]");
    await page.locator("table.instances tbody tr[data-id]").first().waitFor({ timeout: WAIT });
    // The longest gap between two animation frames while the changes pour in.
    await page.evaluate(() => {
      window.longestFrame = 0;
      let last = performance.now();
      const frame = (now) => {
        window.longestFrame = Math.max(window.longestFrame, now - last);
        last = now;
        if (!window.stopFrames) requestAnimationFrame(frame);
      };
      requestAnimationFrame(frame);
    });
    const started = Date.now();
    let next = 0;
    const worker = async () => {
      while (next < BULK) {
        const n = next++;
        ids.push(await register({ url: `http://127.0.0.${1 + (n % 250)}:${20000 + n}/bulk`, slug: `bulk-${n % 40}`, tags: [`shard-${n % 8}`], healthCheck: { type: "none" } }));
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    const registered = Date.now() - started;
    await page.locator("[data-testid=instance-total]", { hasText: "10,008 instances" }).waitFor({ timeout: 60000 });
    const longest = await page.evaluate(() => { window.stopFrames = true; return window.longestFrame; });
    console.log(`  registered ${BULK} in ${registered} ms; longest frame while they arrived: ${Math.round(longest)} ms`);
    check(longest < 2000, `the tab froze for ${Math.round(longest)} ms`);
  });

  await step("paging reaches the last of them", async () => {
    ids.sort();
    const lastId = ids[ids.length - 1];
    await page.selectOption("[data-testid=page-size]", "1000");
    await page.locator("[data-testid=page-status]", { hasText: "page 1 of 11" }).waitFor({ timeout: WAIT });
    let slowest = 0;
    for (let n = 2; n <= 11; n++) {
      const started = Date.now();
      await page.click("[data-testid=next-page]");
      await page.locator("[data-testid=page-status]", { hasText: `page ${n} of 11` }).waitFor({ timeout: WAIT });
      slowest = Math.max(slowest, Date.now() - started);
    }
    await page.locator(`tr[data-id="${lastId}"]`).waitFor({ timeout: WAIT });
    check(await page.locator("[data-testid=next-page]").isDisabled(), "Next is still enabled on the last page");
    check(await page.locator("table.instances tbody tr[data-id]").count() === 8, "the last page does not hold the last 8");
    console.log(`  slowest page turn at 1,000 a page: ${slowest} ms`);
    // At 100 a page, "Last" jumps there at once.
    await page.selectOption("[data-testid=page-size]", "100");
    await page.locator("[data-testid=page-status]", { hasText: "page 1 of 101" }).waitFor({ timeout: WAIT });
    await page.click("[data-testid=last-page]");
    await page.locator("[data-testid=page-status]", { hasText: "page 101 of 101" }).waitFor({ timeout: WAIT });
    await page.locator(`tr[data-id="${lastId}"]`).waitFor({ timeout: WAIT });
  });

  await step("signing out forgets the token", async () => {
    await page.click("#sign-out");
    await page.locator("form.signin").waitFor();
    check(await page.evaluate(() => sessionStorage.length === 0), "the token is still stored");
  });

  await step("nothing went wrong in the page", async () => {
    check(errors.length === 0, errors.join("\n"));
  });
} catch {
  exit = 1;
} finally {
  await browser.close();
  await Promise.all(targets.map((t) => t.stop().catch(() => {})));
}
process.exit(exit);
