// The websocket side: auth as the first message (the token never goes in the URL),
// subscriptions kept across reconnects, reconnect with exponential backoff and jitter, and
// the catch-up contract of GET /v1/ws: events carry no sequence number, so after every
// (re)connection the views re-read their list endpoints ("resync") and apply events from then on.

import { accessToken, refresh } from "./api.js";

const PING_MS = 25_000; // the server closes a connection silent for 60 s
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export class Live {
  constructor() {
    this.ws = null;
    this.topics = new Map(); // topic -> resync callback (or null)
    this.handlers = new Set();
    this.stateHandlers = new Set();
    this.readyHandlers = new Set(); // resyncs of the private topic joined on auth
    this.attempt = 0;
    this.timer = 0;
    this.pinger = 0;
    this.stopped = true;
    this.state = "off";
  }

  onEvent(fn) {
    this.handlers.add(fn);
    return () => this.handlers.delete(fn);
  }

  onState(fn) {
    this.stateHandlers.add(fn);
    fn(this.state);
  }

  setState(state) {
    this.state = state;
    for (const fn of this.stateHandlers) fn(state);
  }

  /** `fn` runs after every (re)connection's `ready`: re-read what the private topic covers. */
  onReady(fn) {
    this.readyHandlers.add(fn);
    return () => this.readyHandlers.delete(fn);
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    this.topics.clear();
    this.handlers.clear();
    this.readyHandlers.clear();
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.setState("off");
  }

  /** Subscribe to a topic; `resync` runs after each `subscribed` (first time and reconnects). */
  subscribe(topic, resync) {
    this.topics.set(topic, resync || null);
    this.sendJson({ type: "subscribe", topic });
  }

  unsubscribe(topic) {
    if (!this.topics.delete(topic)) return;
    this.sendJson({ type: "unsubscribe", topic });
  }

  sendJson(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === "on") {
      this.ws.send(JSON.stringify(msg));
    }
  }

  async open() {
    if (this.stopped) return;
    this.setState(this.attempt ? "retrying" : "connecting");
    let token;
    try {
      token = await accessToken();
    } catch {
      this.retry();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/ws`);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
    ws.onmessage = (msg) => this.receive(msg);
    ws.onclose = (ev) => this.closed(ws, ev);
  }

  receive(msg) {
    let data;
    try {
      data = JSON.parse(msg.data);
    } catch {
      return;
    }
    switch (data.type) {
      case "ready":
        this.attempt = 0;
        this.setState("on");
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.sendJson({ type: "ping" }), PING_MS);
        for (const topic of this.topics.keys()) this.sendJson({ type: "subscribe", topic });
        for (const fn of this.readyHandlers) fn();
        break;
      case "subscribed": {
        const resync = this.topics.get(data.topic);
        if (resync) resync();
        break;
      }
      case "event":
        for (const fn of this.handlers) fn(data);
        break;
      default:
        break; // pong, unsubscribed, error (a view's own subscription mistakes)
    }
  }

  closed(ws, ev) {
    if (ws !== this.ws) return;
    clearInterval(this.pinger);
    this.ws = null;
    if (this.stopped) return;
    if (ev.code === 4401) {
      // Expired or revoked token: refresh first; a failed refresh ends the session upstream.
      refresh().then(
        () => this.retry(true),
        () => this.retry(),
      );
      return;
    }
    this.retry();
  }

  retry(now = false) {
    if (this.stopped) return;
    this.setState("retrying");
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = now ? 0 : ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }
}

export const live = new Live();
