// /widgets/common.js - what the widgets share: the broker's address, the page's
// query parameters, a connection status indicator, and development-mode REST.
import { Herald, HeraldError, STATES } from '/herald.js';

export const params = new URLSearchParams(location.search);

export function wsUrl() {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
}

// A client for this page: the token from ?token= when given (signed-in mode),
// anonymous otherwise (the broker's development mode, auth.anonymous = on).
export function makeClient(extra = {}) {
  const token = params.get('token') || undefined;
  return new Herald(wsUrl(), { token, ...extra });
}

// Keeps @el showing the connection state: its text, and data-state for
// styles and tests.
export function statusIndicator(el, client) {
  const show = (s, detail) => {
    el.dataset.state = s;
    el.textContent = { connected: 'connected', connecting: 'connecting…', disconnected: 'disconnected' }[s] +
      (detail ? ' — ' + detail : '');
  };
  show(client.state);
  client.on('state', (s) => show(s));
  client.on('disconnected', (d) => {
    if (!d.willReconnect) show(STATES.DISCONNECTED, d.reason || 'stopped');
    else show(STATES.DISCONNECTED, 'retrying in ' + Math.ceil(d.delay / 1000) + ' s');
  });
}

// Development mode only: acts like the backend through the broker's REST API,
// which is open while no API key is configured.
export async function rest(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = await r.json().catch(() => null);
  if (!r.ok) {
    const e = (j && j.error) || { code: r.status, reason: r.statusText };
    throw new HeraldError(e.code, e.reason, e);
  }
  return j;
}

export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

export function clock(ts) {
  const d = new Date(ts);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}
