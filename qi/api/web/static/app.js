// Shared by every dashboard page: the session token, API calls, the live stream, DOM helpers.
//
// Authentication (docs/decisions/0115): the reader pages send the user's bearer token in the
// Authorization header. The token is entered once per tab and kept in sessionStorage (gone when
// the tab closes; never in a cookie, a URL or localStorage). The pages are served with a strict
// Content-Security-Policy (scripts only from this origin) and build the DOM with textContent
// only, so data from the API is never parsed as HTML.

const TOKEN_KEY = "qi.token";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token.trim()); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// GET a JSON endpoint of the API (same origin), with the session's token when there is one.
export async function api(path, { auth = true, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (auth && session.token) headers.Authorization = `Bearer ${session.token}`;
  const resp = await fetch(path, { headers, signal });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    if (resp.status === 401 && auth) signIn.ask("Your token was not accepted: " + ((body && body.detail) || "401"));
    throw new ApiError(resp.status, body);
  }
  return body;
}

// h("a", {href: "/x", class: "y"}, "text", child) — text is always text, never HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function $(sel, root = document) { return root.querySelector(sel); }

export function fill(el, ...children) { el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined)); }

export function showError(el, err) {
  const msg = err instanceof ApiError ? `${err.status}: ${err.message}` : String(err.message || err);
  fill(el, h("div", { class: "error" }, msg));
}

const STATUS_CLASS = {
  valid: "ok", active: "ok", registered: "ok", live: "ok", raised: "bad", invalid: "bad",
  revoked: "warn", superseded: "warn", expired: "warn", decommissioned: "warn", cleared: "ok",
  pending: "info", issued: "info", anomaly: "bad", expiring: "warn",
};

export function badge(text) {
  const t = String(text ?? "unknown");
  return h("span", { class: `badge ${STATUS_CLASS[t.toLowerCase()] || ""}` }, t.toLowerCase());
}

export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "–";
  const d = typeof value === "number" ? new Date(value) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/:00Z$/, "Z");
}

export function fmtNumber(v, digits = 3) {
  if (typeof v !== "number" || !Number.isFinite(v)) return "–";
  const abs = Math.abs(v);
  if (abs >= 1000) return v.toFixed(1);
  if (abs >= 100) return v.toFixed(2);
  return v.toPrecision(Math.max(digits, 4)).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

export function enc(s) { return encodeURIComponent(s); }

// The page header: brand, navigation, and the sign-in state.
export function header(active) {
  const nav = [["overview", "/ui", "Plant overview"], ["verify", "/ui/verify", "Verify a certificate"]];
  const who = h("span", { id: "session-state" });
  const btn = h("button", { class: "secondary", id: "session-button", type: "button" });
  const refresh = () => {
    if (session.token) {
      fill(who, h("span", { class: "dot live" }), "signed in with a token");
      btn.textContent = "Sign out";
    } else {
      fill(who, h("span", { class: "dot" }), "not signed in");
      btn.textContent = "Sign in";
    }
  };
  btn.addEventListener("click", () => {
    if (session.token) { session.clear(); refresh(); location.reload(); } else signIn.ask();
  });
  signIn.onchange = refresh;
  refresh();
  const top = h("header", { class: "top" },
    h("a", { class: "brand", href: "/ui" }, "QI Stream", h("small", {}, "quality infrastructure")),
    h("nav", {}, nav.map(([k, href, label]) => h("a", { href, class: k === active ? "active" : "" }, label))),
    h("span", { class: "spacer" }),
    h("span", { class: "session" }, who, btn));
  document.body.prepend(top);
}

// The sign-in dialog: paste a token from `qi tokens issue --role reader`.
export const signIn = {
  onchange: () => {},
  ask(reason) {
    let dlg = document.getElementById("signin");
    if (!dlg) {
      const area = h("textarea", { id: "token-input", placeholder: "eyJhbGciOi…", spellcheck: "false" });
      const why = h("p", { class: "hint", id: "signin-reason" });
      dlg = h("dialog", { id: "signin" },
        h("form", { method: "dialog", id: "signin-form" },
          h("h2", {}, "Sign in"),
          h("p", { class: "hint" }, "Paste an API token (", h("code", {}, "qi tokens issue --role reader"),
            "). It is kept in this tab only and sent as a bearer token."),
          why, area,
          h("div", { class: "row" },
            h("button", { class: "secondary plain", value: "cancel", type: "submit" }, "Cancel"),
            h("button", { value: "ok", type: "submit", id: "signin-ok" }, "Sign in"))));
      dlg.addEventListener("close", () => {
        if (dlg.returnValue === "ok" && area.value.trim()) {
          session.set(area.value);
          signIn.onchange();
          location.reload();
        }
      });
      document.body.append(dlg);
    }
    document.getElementById("signin-reason").textContent = reason || "";
    if (!dlg.open) dlg.showModal();
  },
};

// A server-sent-event stream read with fetch, so the bearer token travels in a header
// (EventSource cannot send one). Reconnects with backoff; onstate("live" | "connecting" | "denied").
export function liveStream(path, { onevent, onstate }) {
  let stopped = false;
  let controller = null;
  let lastId = null;   // sent back as Last-Event-ID: the server replays what a reconnect missed
  const run = async () => {
    let backoff = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        const headers = { Accept: "text/event-stream" };
        if (session.token) headers.Authorization = `Bearer ${session.token}`;
        if (lastId) headers["Last-Event-ID"] = lastId;
        const opened = Date.now();
        const resp = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
        if (resp.status === 401 || resp.status === 403) { onstate("denied"); return; }
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        backoff = 500;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let event = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) continue;
              if (line.startsWith("event:")) event = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
              else if (line.startsWith("id:")) lastId = line.slice(3).trim();
            }
            if (data.length) {
              let parsed;
              try { parsed = JSON.parse(data.join("\n")); } catch (e) { continue; }
              if (event === "status") { if (parsed.state !== "reconnect") onstate(parsed.state, parsed); }
              else onevent(event, parsed);
            }
          }
        }
        // the server ends each stream after a minute: reconnect at once (with backoff if it was short)
        if (Date.now() - opened > 2000) continue;
      } catch (e) {
        if (stopped) return;
      }
      onstate("connecting");
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  };
  run();
  return { stop() { stopped = true; if (controller) controller.abort(); } };
}

export function feedIndicator(el) {
  return (state) => {
    const label = { live: "live", connecting: "connecting…", denied: "sign in for live data", closed: "stopped" }[state] || state;
    fill(el, h("span", { class: `dot ${state === "live" ? "live" : state === "denied" ? "down" : ""}` }), label);
    el.dataset.state = state;
  };
}
