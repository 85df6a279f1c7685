// The HTTP side of the client: one session held in memory only (never in localStorage,
// never in a URL), refreshed before the access token expires, one refresh at a time
// (refresh tokens rotate: two concurrent refreshes would spend the same token twice and
// revoke the whole login).

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = (problem && problem.code) || "";
    this.problem = problem || {};
  }
}

/** Refresh this long before expiry: a minute, or a quarter of a short lifetime (at least 5 s). */
function margin(lifetimeS) {
  return Math.max(5, Math.min(60, lifetimeS / 4));
}

let session = null; // {access, refresh, role, userId, expiresAt}
let refreshing = null;
let refreshTimer = 0;
const listeners = new Set();

export function onSessionChange(fn) {
  listeners.add(fn);
}

function notify() {
  for (const fn of listeners) fn(session);
}

export function current() {
  return session;
}

function claims(token) {
  const part = token.split(".")[1] || "";
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
  return JSON.parse(json);
}

function adopt(pair) {
  const c = claims(pair.access_token);
  session = {
    access: pair.access_token,
    refresh: pair.refresh_token,
    role: c.role,
    userId: c.sub,
    expiresAt: Date.now() + pair.expires_in * 1000,
    marginMs: margin(pair.expires_in) * 1000,
  };
  clearTimeout(refreshTimer);
  const wait = Math.max(1000, pair.expires_in * 1000 - session.marginMs);
  schedule(wait);
  notify();
}

/** Refresh after `wait` ms; a refused refresh (401) ends the session, a network failure or a
 * 5xx tries again a few seconds later while the access token may still be valid. */
function schedule(wait) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    refresh().catch((err) => {
      if (err instanceof ApiError && err.status < 500) end();
      else if (session) schedule(3000);
    });
  }, wait);
}

function end() {
  clearTimeout(refreshTimer);
  session = null;
  notify();
}

async function send(method, path, { body, form, headers = {}, token } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (form) {
    init.body = form;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(path, init);
}

async function parse(resp) {
  if (resp.status === 204) return null;
  const type = resp.headers.get("content-type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) throw new ApiError(resp.status, typeof data === "object" ? data : null);
  return data;
}

/** Rotate the refresh token; concurrent callers share the one request. */
export function refresh() {
  if (!session) return Promise.reject(new ApiError(401, { detail: "sessão encerrada" }));
  if (!refreshing) {
    const spent = session.refresh;
    refreshing = send("POST", "/v1/auth/refresh", { body: { refresh_token: spent } })
      .then(parse)
      .then((pair) => {
        adopt(pair);
        return session.access;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

/** A fresh access token (refreshed first when it is about to expire). */
export async function accessToken() {
  if (!session) throw new ApiError(401, { detail: "sessão encerrada" });
  if (session.expiresAt - Date.now() < session.marginMs) return refresh();
  return session.access;
}

/** An authenticated call; a 401 triggers one refresh and one retry. */
export async function call(method, path, options = {}) {
  let resp = await send(method, path, { ...options, token: await accessToken() });
  if (resp.status === 401 && session) {
    try {
      await refresh();
    } catch (err) {
      end();
      throw err;
    }
    resp = await send(method, path, { ...options, token: session.access });
  }
  return parse(resp);
}

/** The raw response of an authenticated GET (for downloads). */
export async function download(path) {
  const resp = await send("GET", path, { token: await accessToken() });
  if (!resp.ok) await parse(resp);
  return resp;
}

export async function publicCall(method, path, body) {
  return parse(await send(method, path, { body }));
}

/** Log in; resolves to {mfa: token} when the account asks for a second factor. */
export async function login(role, body) {
  const data = await publicCall("POST", `/v1/auth/${role}s/login`, body);
  if (data.mfa_required) return { mfa: data.mfa_token };
  adopt(data);
  return { mfa: null };
}

export async function loginMfa(mfaToken, code) {
  adopt(await publicCall("POST", "/v1/auth/mfa", { mfa_token: mfaToken, code }));
}

export async function logout() {
  if (!session) return;
  const { refresh: token } = session;
  try {
    await call("POST", "/v1/auth/logout", { body: { refresh_token: token } });
  } finally {
    end();
  }
}

/** Every item of a paged list (`{items, next_cursor}`), fetched 100 at a time. */
export async function allPages(path, params = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await call("GET", `${path}${qs({ ...params, limit: 100, cursor })}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
