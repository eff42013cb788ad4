// Drives a running registry daemon through a published JavaScript client (`@openorch/client`
// or `@1backend/client`), unchanged, calling every method of the package's `RegistrySvcApi`,
// and checks every answer against the package's own generated models: the status code the
// original answers with, every required field present, no field the model lacks, nested
// models, enums and plain types alike.
//
//   REGISTRY_NPM_CLIENTS=<node_modules> node run.mjs <package> <base-url> <admin-token>
//
// Prints one line per call ("ok ..." or "FAIL ...: why") and exits 1 when any call failed.
// Started by tests/published_clients.rs against a fresh daemon; it registers only 127.x.y.z
// addresses, none of which need to answer.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const [packageName, baseUrl, token] = process.argv.slice(2);
const modules = process.env.REGISTRY_NPM_CLIENTS;
if (!packageName || !baseUrl || !token || !modules) {
  console.error(
    "usage: REGISTRY_NPM_CLIENTS=<node_modules> node run.mjs <package> <base-url> <token>",
  );
  process.exit(2);
}

const packageDir = join(modules, packageName);
const manifest = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
const client = await import(pathToFileURL(join(packageDir, manifest.exports["."].import)));
// The type declarations say which field holds which model; the generated functions say
// which fields are required and which exist.
const modelsDir = join(packageDir, dirname(manifest.types), "models");

const api = new client.RegistrySvcApi(
  new client.Configuration({ basePath: baseUrl, apiKey: `Bearer ${token}` }),
);

const results = [];
const called = new Set();

function record(label, found) {
  // One line for a problem that every item of a list shares.
  const counts = new Map();
  const general = (problem) => problem.replace(/^\$\S*/, (path) => path.replace(/\[\d+\]/g, "[*]"));
  for (const problem of found.map(general)) {
    counts.set(problem, (counts.get(problem) ?? 0) + 1);
  }
  const problems = [...counts].map(([p, n]) => (n > 1 ? `${p} (${n} times)` : p));
  results.push({ label, problems });
  const line = problems.length ? `FAIL ${label}: ${problems.join("; ")}` : `ok ${label}`;
  console.log(line);
}

// --- The models, as the package declares them ---------------------------------------------

const shapes = new Map();

/** `{enum: true}` or `{fields: Map(name -> {type, required})}` for the model `name`. */
function shape(name) {
  if (!shapes.has(name)) {
    const text = readFileSync(join(modelsDir, `${name}.d.ts`), "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/\s+/g, " ");
    if (text.includes(`export declare const ${name}:`)) {
      shapes.set(name, { enum: true });
    } else {
      const body = text.match(new RegExp(`export interface ${name} \\{(.*?)\\} export declare`));
      if (!body) throw new Error(`no interface ${name} in its declaration file`);
      const fields = new Map();
      const field = /(\w+|'[^']+')(\??): (\{ \[key: string\]: [^;]+; \}|[^;]+);/g;
      for (const [, key, optional, type] of body[1].matchAll(field)) {
        fields.set(key.replace(/'/g, ""), { type: type.trim(), required: optional !== "?" });
      }
      shapes.set(name, { fields });
    }
  }
  return shapes.get(name);
}

function describe(value) {
  return Array.isArray(value) ? "an array" : value === null ? "null" : `a ${typeof value}`;
}

/** The problems of `value` read as the declared `type`, each naming its JSON path. */
function conform(value, type, path, problems = []) {
  const array = type.match(/^Array<(.+)>$/);
  const map = type.match(/^\{ \[key: string\]: (.+); \}$/);
  if (array) {
    if (!Array.isArray(value)) problems.push(`${path}: ${describe(value)}, not an array`);
    else value.forEach((item, i) => conform(item, array[1], `${path}[${i}]`, problems));
  } else if (map) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      problems.push(`${path}: ${describe(value)}, not an object`);
    } else {
      for (const [k, v] of Object.entries(value)) conform(v, map[1], `${path}.${k}`, problems);
    }
  } else if (["string", "number", "boolean"].includes(type)) {
    if (typeof value !== type) problems.push(`${path}: ${describe(value)}, not a ${type}`);
  } else if (type === "object") {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      problems.push(`${path}: ${describe(value)}, not an object`);
    }
  } else if (type !== "any") {
    conformModel(value, type, path, problems);
  }
  return problems;
}

function conformModel(value, name, path, problems) {
  const model = shape(name);
  if (model.enum) {
    if (!client[`instanceOf${name}`](value)) {
      const allowed = Object.values(client[name]).join(", ");
      problems.push(`${path}: ${JSON.stringify(value)} is not one of ${name} (${allowed})`);
    }
    return;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push(`${path}: ${describe(value)}, not a ${name}`);
    return;
  }
  if (!client[`instanceOf${name}`](value)) {
    for (const [key, field] of model.fields) {
      if (field.required && value[key] === undefined) {
        problems.push(`${path}: required field \`${key}\` of ${name} missing`);
      }
    }
  }
  const known = Object.keys(client[`${name}ToJSON`](client[`${name}FromJSON`](value)));
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) problems.push(`${path}.${key}: unknown field (not in ${name})`);
  }
  for (const [key, field] of model.fields) {
    if (value[key] === null && field.required) {
      problems.push(`${path}.${key}: null for a required field`);
    } else if (value[key] !== undefined && value[key] !== null) {
      conform(value[key], field.type, `${path}.${key}`, problems);
    }
  }
}

// --- Calls ----------------------------------------------------------------------------

/**
 * Calls `api[method + "Raw"](...args)`, expects `status`, checks the JSON answer against
 * `type` (a model name, "object", or null for no body), then with `verify(body, problems)`
 * where given, and returns it (undefined when the call was refused or not made), so that
 * one unknown field does not stop the calls after it.
 */
async function call(label, method, args, status, type, verify) {
  called.add(method);
  const problems = [];
  let answered = false;
  let body;
  try {
    const response = await api[`${method}Raw`](...args);
    if (response.raw.status !== status) {
      problems.push(`HTTP ${response.raw.status}, the original answers ${status}`);
    }
    if (type) {
      body = await response.raw.clone().json();
      conform(body, type, "$", problems);
      await response.value();
    }
    answered = true;
    if (verify) verify(body, problems);
  } catch (error) {
    problems.push(await explain(error));
  }
  record(label, problems);
  return answered ? body : undefined;
}

async function explain(error) {
  if (error instanceof client.ResponseError) {
    const text = await error.response.text();
    return `HTTP ${error.response.status} ${text.slice(0, 300)}`;
  }
  return `${error.name}: ${error.message}${error.cause ? ` (${error.cause.message})` : ""}`;
}

/** Expects the call to be refused with `status` and an answer in the error model. */
async function refused(label, method, args, status) {
  called.add(method);
  const problems = [];
  try {
    const response = await api[`${method}Raw`](...args);
    problems.push(`HTTP ${response.raw.status}, expected ${status}`);
  } catch (error) {
    if (!(error instanceof client.ResponseError)) {
      problems.push(await explain(error));
    } else {
      if (error.response.status !== status) {
        problems.push(`HTTP ${error.response.status}, expected ${status}`);
      }
      const text = await error.response.text();
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        problems.push(`the answer is not JSON: ${text.slice(0, 200)}`);
      }
      if (body !== undefined) {
        conform(body, "RegistrySvcErrorResponse", "$", problems);
        if (typeof body.error !== "string" || body.error === "") {
          problems.push("no `error` message for a person");
        }
      }
    }
  }
  record(label, problems);
}

/** Whether `actual` holds `expected`: the same values, objects with at least its keys. */
function holds(actual, expected) {
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length && expected.every((e, i) => holds(actual[i], e));
  }
  if (typeof expected === "object" && expected !== null) {
    return typeof actual === "object" && actual !== null && Object.keys(expected).every((k) => holds(actual[k], expected[k]));
  }
  return actual === expected;
}

/** Unknown fields are reported by `conform`; this checks the values asked for. */
function expectEqual(problems, what, actual, expected) {
  if (!holds(actual, expected)) {
    problems.push(`${what} is ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  }
}

// --- Definitions (where the package has them) --------------------------------------------

const imageDefinition = {
  id: "npm-image",
  image: { name: "hashicorp/http-echo", internalPorts: [8080] },
  ports: [{ internal: 8080, host: 8887 }],
  envars: [{ key: "MODE", value: "test" }],
  apiSpecs: [
    { url: "http://127.0.0.1:1/openapi.json", protocolType: "OpenAPI", version: "3.0.0", metadata: { team: "core" } },
  ],
  clients: [{ language: "JavaScript", url: "http://127.0.0.1:1/client.js" }],
};
const repositoryDefinition = {
  id: "npm-repository",
  repository: {
    url: "http://127.0.0.1:1/example/service.git",
    version: "v1.2.3",
    buildContext: ".",
    containerFile: "Dockerfile",
    ports: [9090],
  },
};

async function definitions() {
  for (const definition of [imageDefinition, repositoryDefinition]) {
    const form = definition.image ? "image" : "repository";
    await call(`saveDefinition (${form} form)`, "saveDefinition", [{ body: { definition } }], 201, "object");
  }
  const readBack = (listed, problems) => {
    for (const saved of [imageDefinition, repositoryDefinition]) {
      const found = (listed.definitions ?? []).find((d) => d.id === saved.id);
      if (!found) problems.push(`${saved.id} not listed`);
      else expectEqual(problems, `${saved.id} read back`, found, saved);
    }
  };
  await call("listDefinitions", "listDefinitions", [], 200, "RegistrySvcListDefinitionsResponse", readBack);
  await refused("saveDefinition with a bad definition is a 400", "saveDefinition", [{ body: { definition: { id: "bad id with spaces" } } }], 400);
  for (const { id } of [imageDefinition, repositoryDefinition]) {
    await call(`deleteDefinition ${id}`, "deleteDefinition", [{ id }], 204, null);
  }
  await refused("deleteDefinition of an absent id is a 404", "deleteDefinition", [{ id: imageDefinition.id }], 404);
}

// --- Instances ----------------------------------------------------------------------------

// Each registration and the instance it must make (checked field by field).
const registrations = [
  {
    label: "url form, no id",
    body: { url: "http://127.0.0.1:1/url-form", deploymentId: "depl_npm" },
    expect: { url: "http://127.0.0.1:1/url-form", scheme: "http", host: "127.0.0.1", port: 1, path: "/url-form", deploymentId: "depl_npm" },
  },
  {
    label: "url form, with id",
    body: { id: "npm-url-id", url: "http://127.0.0.2:2" },
    expect: { id: "npm-url-id", url: "http://127.0.0.2:2", host: "127.0.0.2", port: 2 },
  },
  {
    label: "parts form, no id",
    body: { scheme: "http", host: "127.0.0.3", port: 8080, path: "/parts" },
    expect: { url: "http://127.0.0.3:8080/parts", scheme: "http", host: "127.0.0.3", port: 8080, path: "/parts" },
  },
  {
    label: "parts form, with id",
    body: { id: "npm-parts-id", scheme: "http", ip: "127.0.0.4", host: "127.0.0.4", port: 9090 },
    expect: { id: "npm-parts-id", url: "http://127.0.0.4:9090", ip: "127.0.0.4", host: "127.0.0.4", port: 9090 },
  },
  {
    // The original keeps the parts a caller gives beside `url` as given.
    label: "url with an explicit path",
    body: { url: "http://127.0.0.5:7070", path: "/explicit" },
    expect: { url: "http://127.0.0.5:7070", host: "127.0.0.5", port: 7070, path: "/explicit" },
  },
];

// The query parameters of `listInstances` and the instance field each filters on.
const instanceFilters = { scheme: "scheme", ip: "ip", deploymentId: "deploymentId", host: "host", ip2: "ip", id: "id", slug: "slug" };

async function instances() {
  for (const { label, body } of registrations) {
    await call(`registerInstance (${label})`, "registerInstance", [{ body }], 201, "object");
  }
  const all = await call("listInstances (no filter)", "listInstances", [{}], 200, "RegistrySvcListInstancesResponse");
  const listed = all?.instances ?? [];
  const made = [];
  const readBack = [];
  for (const { label, expect } of registrations) {
    const instance = listed.find((i) => (expect.id ? i.id === expect.id : i.url === expect.url));
    if (!instance) {
      readBack.push(`${label}: not listed`);
      continue;
    }
    made.push(instance);
    for (const [key, value] of Object.entries(expect)) {
      expectEqual(readBack, `${label}: ${key}`, instance[key], value);
    }
  }
  record("registered instances read back as registered", readBack);

  for (const [param, field] of Object.entries(instanceFilters)) {
    const target = made.find((i) => i[field]);
    if (!target) {
      record(`listInstances by ${param}`, [`no registered instance has a ${field} to filter on`]);
      continue;
    }
    const selects = (answer, problems) => {
      const got = answer.instances ?? [];
      if (got.some((i) => i[field] !== target[field]) || !got.some((i) => i.id === target.id)) {
        problems.push(`${param}=${target[field]} answered ${JSON.stringify(got.map((i) => i.id))}`);
      }
    };
    await call(`listInstances by ${param}`, "listInstances", [{ [param]: target[field] }], 200, "RegistrySvcListInstancesResponse", selects);
    // The original reads an empty value as no filter.
    const everything = (answer, problems) => {
      expectEqual(problems, "ids listed", (answer.instances ?? []).map((i) => i.id), listed.map((i) => i.id));
    };
    await call(`listInstances with an empty ${param}`, "listInstances", [{ [param]: "" }], 200, "RegistrySvcListInstancesResponse", everything);
  }

  await refused("registerInstance with a malformed url is a 400", "registerInstance", [{ body: { url: "not a url" } }], 400);
  for (const instance of made) {
    await call(`removeInstance ${instance.id}`, "removeInstance", [{ id: instance.id }], 204, null);
  }
  await refused("removeInstance of an absent id is a 404", "removeInstance", [{ id: made[0]?.id ?? "npm-absent" }], 404);
}

// --- Nodes --------------------------------------------------------------------------------

async function nodes() {
  const self = await call("selfNode", "selfNode", [{}], 200, "RegistrySvcNodeSelfResponse");
  const selfId = self?.node?.id;
  const listsSelf = (answer, problems) => {
    if (selfId && !(answer.nodes ?? []).some((n) => n.id === selfId)) {
      problems.push(`this node (${selfId}) is not listed`);
    }
  };
  await call("listNodes (no body)", "listNodes", [{}], 200, "RegistrySvcListNodesResponse", listsSelf);
  await call("listNodes (empty ids)", "listNodes", [{ body: { ids: [] } }], 200, "RegistrySvcListNodesResponse", listsSelf);
  if (selfId) {
    const onlySelf = (answer, problems) => {
      expectEqual(problems, "ids listed", (answer.nodes ?? []).map((n) => n.id), [selfId]);
    };
    await call("listNodes (with ids)", "listNodes", [{ body: { ids: [selfId] } }], 200, "RegistrySvcListNodesResponse", onlySelf);
  }
  await refused("deleteNode of an absent node is a 404", "deleteNode", [{ url: "http://127.0.0.1:1" }], 404);
  // The daemon's own node: removed now, back at its next heartbeat.
  if (self?.node?.url) {
    await call("deleteNode (this node)", "deleteNode", [{ url: self.node.url }], 204, null);
  }
}

// --- Echo (1Backend) ------------------------------------------------------------------------

async function echo() {
  const withQuery = api.withPreMiddleware(async ({ url, init }) => ({ url: `${url}?probe=1`, init }));
  called.add("echoGet");
  const problems = [];
  try {
    const response = await withQuery.echoGetRaw();
    expectEqual(problems, "status", response.raw.status, 200);
    expectEqual(problems, "echoGet?probe=1", await response.value(), { probe: "1" });
  } catch (error) {
    problems.push(await explain(error));
  }
  record("echoGet", problems);
  for (const method of ["echoPost", "echoPut"]) {
    const sent = { name: "npm", tags: ["a"], nested: { n: 1 } };
    const echoes = (body, problems) => expectEqual(problems, "the answer", body, sent);
    await call(method, method, [async () => ({ body: JSON.stringify(sent) })], 200, "object", echoes);
  }
}

// --- Run ------------------------------------------------------------------------------------

const has = (method) => typeof api[`${method}Raw`] === "function";
if (has("saveDefinition")) await definitions();
await instances();
await nodes();
if (has("echoGet")) await echo();

// Every endpoint the package has must have been called.
const methods = Object.getOwnPropertyNames(client.RegistrySvcApi.prototype)
  .filter((name) => name.endsWith("Raw"))
  .map((name) => name.slice(0, -3));
const skipped = methods.filter((m) => !called.has(m));
if (skipped.length) record("every endpoint called", [`not called: ${skipped.join(", ")}`]);

const failed = results.filter((r) => r.problems.length);
console.log(
  `${packageName} ${manifest.version}: ${results.length - failed.length} of ${results.length} checks passed; endpoints: ${methods.join(", ")}`,
);
process.exit(failed.length ? 1 : 0);
