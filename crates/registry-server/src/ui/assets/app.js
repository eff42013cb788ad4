// The console's shell: sign-in, theme, the live indicator, and routing by the URL's hash
// (#/instances, #/node/<url>, ...), so the daemon serves one page and every view is a
// link that can be bookmarked.

import { call, session } from "./api.js";
import { h, fill, count } from "./dom.js";
import { Live } from "./live.js";
import { overview } from "./overview.js";
import { instances, instance } from "./instances.js";
import { nodes, node, definitions } from "./resources.js";

const THEME_KEY = "registry-svc.console.theme";
const main = document.getElementById("main");
const liveText = document.getElementById("live-text");
const liveBadge = document.getElementById("live");

const routes = [
  [/^\/?$/, "overview", () => overview],
  [/^\/instances$/, "instances", () => instances],
  [/^\/instance\/(.+)$/, "instances", () => instance],
  [/^\/nodes$/, "nodes", () => nodes],
  [/^\/node\/(.+)$/, "nodes", () => node],
  [/^\/definitions$/, "definitions", () => definitions],
];

let live = null;
let view = null;

// --- Theme: the system's choice, unless the user picked one with the toggle. ---------------

const systemDark = window.matchMedia("(prefers-color-scheme: dark)");
function applyTheme() {
  const chosen = localStorage.getItem(THEME_KEY);
  const dark = chosen ? chosen === "dark" : systemDark.matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
}
systemDark.addEventListener("change", applyTheme);
document.getElementById("theme").addEventListener("click", () => {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem(THEME_KEY, next);
  applyTheme();
});
applyTheme();

// --- Signing in and out. ----------------------------------------------------------------

function signInPage(message) {
  const input = h("input", { id: "token", type: "password", name: "token", autocomplete: "off", required: true, placeholder: "rsv_…", "aria-label": "Token" });
  const error = h("p.form-error", { role: "alert" }, message ?? "");
  const button = h("button.button.primary", { type: "submit" }, "Sign in");
  const form = h("form.signin", {
    onsubmit: async (event) => {
      event.preventDefault();
      const token = input.value.trim();
      button.disabled = true;
      error.textContent = "";
      try {
        await call("/node/self", { token });
        session.token = token;
        signedIn();
      } catch (e) {
        error.textContent = e.status === 401 ? "That token is not valid here." : e.message;
      } finally {
        button.disabled = false;
      }
    },
  },
  h("h1", {}, "Sign in"),
  h("p.muted", {}, "A Registry Svc token, admin or user. It stays in this browser tab and is gone when the tab closes."),
  h("label", { for: "token" }, "Token"),
  input,
  error,
  button,
  h("p.hint", {}, "On the daemon's machine the admin token is in ", h("code", {}, "registry-data/admin.token"), "; an admin creates others with ", h("code", {}, "registry-svc tokens create"), "."));
  chrome(false);
  fill(main, h("div.signin-wrap", {}, form));
  input.focus();
}

function chrome(signedInNow) {
  document.getElementById("nav").hidden = !signedInNow;
  document.getElementById("sign-out").hidden = !signedInNow;
  liveBadge.hidden = !signedInNow;
}

function signedIn() {
  chrome(true);
  live = new Live();
  live.addEventListener("change", (event) => {
    showLive();
    view?.update?.(event.detail);
  });
  live.start().catch((e) => {
    if (e.status !== 401) fill(main, h("p.form-error", {}, `Could not load the registry: ${e.message}`));
  });
  route();
}

function signOut(message) {
  live?.stop();
  live = null;
  view?.unmount?.();
  view = null;
  session.token = null;
  signInPage(message);
}

document.getElementById("sign-out").addEventListener("click", () => signOut());
window.addEventListener("registry:unauthorized", (e) => signOut(`Signed out: ${e.detail}`));

function showLive() {
  liveBadge.dataset.state = live.state;
  liveText.textContent =
    live.state === "loading" ? `loading ${count(live.loaded)} instances…`
      : live.state === "live" ? `live · revision ${count(live.revision)}`
        : "reconnecting…";
}

// --- Routing. ---------------------------------------------------------------------------

function route() {
  if (!live) return;
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  const params = Object.fromEntries(new URLSearchParams(search));
  for (const [pattern, name, load] of routes) {
    const match = path.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.route === name);
    view?.unmount?.();
    window.scrollTo(0, 0);
    const container = h("div.view");
    fill(main, container);
    const arg = match[1] ? decodeURIComponent(match[1]) : undefined;
    view = load()(container, { live, params, arg });
    return;
  }
  fill(main, h("p.empty", {}, "No such page. ", h("a", { href: "#/" }, "Back to the overview")));
}

window.addEventListener("hashchange", route);
// Heartbeat ages and "last check" times move with the clock.
setInterval(() => view?.tick?.(), 1000);

if (session.token) signedIn();
else signInPage();
