// The registry's API as the console calls it: the token from this browser tab's session
// storage in `Authorization`, and always `X-Registry-Extensions: true`, so answers carry
// the whole model (health settings, metadata, node status, paging cursors).

const TOKEN_KEY = "registry-svc.console.token";
const API = "/registry-svc";

/** The token of this tab's session: gone when the tab closes. */
export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** An answer that was not 2xx: its status and the API's `error` text. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(token = session.token) {
  return {
    Authorization: `Bearer ${token}`,
    "X-Registry-Extensions": "true",
    Accept: "application/json",
  };
}

/** The error of an answer that was not 2xx; a 401 to the session's token signs out. */
async function failure(response, sessionToken = true) {
  let message = `HTTP ${response.status}`;
  try {
    message = (await response.json()).error || message;
  } catch {
    // Not JSON: the status says enough.
  }
  if (response.status === 401 && sessionToken) window.dispatchEvent(new CustomEvent("registry:unauthorized", { detail: message }));
  return new ApiError(response.status, message);
}

/**
 * Calls `method path` (under /registry-svc) and reads the JSON answer:
 * `{data, index}`, `index` being `X-Registry-Index` when the answer has one.
 */
export async function call(path, { method = "GET", body, signal, token } = {}) {
  const response = await fetch(API + path, {
    method,
    headers: headers(token),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
  });
  if (!response.ok) throw await failure(response, token === undefined);
  const index = Number(response.headers.get("X-Registry-Index") || 0);
  const data = response.status === 204 ? null : await response.json();
  return { data, index };
}

/** A query string from an object, skipping empty values; arrays repeat the key. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of [value].flat()) if (v !== undefined && v !== null && v !== "") q.append(key, v);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/**
 * Subscribes to the change feed from revision `since` (from now when undefined) and
 * resolves, once subscribed, to a function that reads it: `read(onEvent)` calls
 * `onEvent({event, id, data})` for each Server-Sent Event until the stream ends, `signal`
 * aborts or `onEvent` throws. An EventSource cannot send `Authorization`, so this reads the
 * stream from `fetch`, with the token in the header like every other call.
 */
export async function follow(since, kinds, signal) {
  const response = await fetch(API + "/events" + query({ since, kind: kinds }), {
    headers: { ...headers(), Accept: "text/event-stream" },
    signal,
    cache: "no-store",
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  return (onEvent) => read(reader, onEvent).finally(() => reader.cancel().catch(() => {}));
}

/** Reads Server-Sent Events from `reader` until it ends. */
async function read(reader, onEvent) {
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    // The daemon ends lines with a bare line feed.
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { event: "message", id: null, data: "" };
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        if (colon === 0) continue; // a keep-alive comment
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.event = text;
        else if (field === "id") event.id = text;
        else if (field === "data") event.data += (event.data ? "\n" : "") + text;
      }
      if (event.data) onEvent({ ...event, data: JSON.parse(event.data) });
    }
  }
}
