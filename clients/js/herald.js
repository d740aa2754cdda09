// herald.js - the browser (and Node >= 18) client of the Herald broker.
//
// One dependency-free ES module: a connection that reconnects by itself,
// subscriptions that recover what they missed, request/reply calls as
// promises, and live views (presence, typing, keyed state, seat maps) kept
// from the broker's snapshot-plus-delta pushes. The protocol it speaks is
// docs/protocol.md (subprotocol herald.json, or herald.msgpack with its own
// small MessagePack codec); the API is docs/clients.md.
//
// DESIGN: the Herald object owns one WebSocket at a time and a table of
// Subscription objects that outlive it. Each subscription remembers the
// epoch and the last offset it delivered; every (re)connect resubscribes
// with `since`, and a publication whose offset is not past the remembered
// one is dropped, so a page sees each publication once and in order. Nothing
// the server sends may throw into the page: frames are parsed defensively and
// a bad one is reported as an 'error' event; listener exceptions are caught
// and reported the same way.

export const VERSION = '0.1.0';

export const STATES = Object.freeze({
  DISCONNECTED: 'disconnected',
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
});

// Client-side error codes; the broker's own codes (100 and up) are listed in
// docs/protocol.md section 6 and arrive unchanged.
export const ERR_TIMEOUT = 1;       // no reply within the request timeout
export const ERR_DISCONNECTED = 2;  // the connection went away before the reply
export const ERR_CLOSED = 3;        // disconnect() was called
export const ERR_MALFORMED = 4;     // the server sent something this client cannot read
export const ERR_TOKEN = 113;       // the broker refused the token (protocol code)

export class HeraldError extends Error {
  constructor(code, reason, details) {
    super(`herald error ${code}: ${reason}`);
    this.name = 'HeraldError';
    this.code = code;
    this.reason = reason;
    if (details && typeof details === 'object') {
      for (const k of ['seats', 'section', 'version']) if (k in details) this[k] = details[k];
    }
  }
}

// ---- pure helpers (exported for tests and for pages that want them) ----

// The delay before reconnect attempt @attempt (0-based): "full jitter", a
// uniform draw in [0, min(max, min * factor^attempt)), so a broker restart
// does not bring every client back in the same millisecond.
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const min = opts.minReconnectDelay ?? 500;
  const max = opts.maxReconnectDelay ?? 20000;
  const factor = opts.backoffFactor ?? 2;
  const cap = Math.min(max, min * Math.pow(factor, Math.max(0, attempt)));
  return Math.floor(random() * cap);
}

// Applies a state delta ({changes:[...], reset?}) to @map (key -> {value,
// version}). Returns the changes as {key, value, version, deleted}, with a
// reset turned into a deletion of every key that was there and is not set
// again by the same delta.
export function applyDelta(map, data) {
  const out = [];
  if (!data || typeof data !== 'object') throw new HeraldError(ERR_MALFORMED, 'state delta is not an object');
  const changes = Array.isArray(data.changes) ? data.changes : [];
  const setKeys = new Set(changes.filter((c) => c && !c.deleted).map((c) => c.key));
  if (data.reset) {
    for (const key of [...map.keys()]) {
      map.delete(key);
      if (!setKeys.has(key)) out.push({ key, value: undefined, version: 0, deleted: true });
    }
  }
  for (const c of changes) {
    if (!c || typeof c.key !== 'string') throw new HeraldError(ERR_MALFORMED, 'state change without a key');
    if (c.deleted) {
      if (map.delete(c.key)) out.push({ key: c.key, value: undefined, version: 0, deleted: true });
    } else {
      map.set(c.key, { value: c.value, version: c.version });
      out.push({ key: c.key, value: c.value, version: c.version, deleted: false });
    }
  }
  return out;
}

// Replaces @map by @snapshot ({key: {value, version}}), returning only what
// differs, so that a conflation snapshot that changes nothing fires nothing.
export function replaceState(map, snapshot) {
  const out = [];
  const snap = snapshot && typeof snapshot === 'object' ? snapshot : {};
  for (const key of [...map.keys()]) {
    if (!Object.prototype.hasOwnProperty.call(snap, key)) {
      map.delete(key);
      out.push({ key, value: undefined, version: 0, deleted: true });
    }
  }
  for (const [key, e] of Object.entries(snap)) {
    const old = map.get(key);
    const entry = { value: e && e.value, version: e && e.version };
    map.set(key, entry);
    if (!old || old.version !== entry.version || JSON.stringify(old.value) !== JSON.stringify(entry.value)) {
      out.push({ key, value: entry.value, version: entry.version, deleted: false });
    }
  }
  return out;
}

// Splits one text frame into messages. Returns {messages, errors}: a line
// that is not a JSON object with a string `op` becomes an error, never an
// exception.
export function parseFrame(text) {
  const messages = [];
  const errors = [];
  if (typeof text !== 'string') {
    errors.push(new HeraldError(ERR_MALFORMED, 'binary frame on a JSON connection'));
    return { messages, errors };
  }
  for (const line of text.split('\n')) {
    if (!line) continue;
    let m;
    try {
      m = JSON.parse(line);
    } catch (e) {
      errors.push(new HeraldError(ERR_MALFORMED, 'frame is not JSON: ' + line.slice(0, 80)));
      continue;
    }
    if (!m || typeof m !== 'object' || Array.isArray(m) || typeof m.op !== 'string') {
      errors.push(new HeraldError(ERR_MALFORMED, 'message without an op: ' + line.slice(0, 80)));
      continue;
    }
    messages.push(m);
  }
  return { messages, errors };
}

// ---- MessagePack (optional encoding: new Herald(url, {encoding: 'msgpack'})) ----
//
// A small codec of our own for what the protocol carries (protocol.md 2.2):
// nil, booleans, integers, 64-bit floats, UTF-8 strings, arrays and maps with
// string keys. bin and ext never come from Herald and are refused. Integers
// beyond 2^53 decode as BigInt, and BigInts encode as 64-bit integers.

const utf8enc = typeof TextEncoder !== 'undefined' ? new TextEncoder() : null;
const utf8dec = typeof TextDecoder !== 'undefined' ? new TextDecoder('utf-8', { fatal: true }) : null;

export function msgpackEncode(value) {
  let buf = new Uint8Array(256);
  let view = new DataView(buf.buffer);
  let n = 0;
  const room = (k) => {
    if (n + k <= buf.length) return;
    let cap = buf.length * 2;
    while (cap < n + k) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(buf.subarray(0, n));
    buf = nb;
    view = new DataView(buf.buffer);
  };
  const u8 = (b) => { room(1); buf[n++] = b; };
  const head = (b, len, fix, fixMax, c8, c16, c32) => {
    if (len <= fixMax && fix !== null) u8(fix | len);
    else if (c8 !== null && len < 0x100) { room(2); buf[n++] = c8; buf[n++] = len; }
    else if (len < 0x10000) { room(3); buf[n++] = c16; view.setUint16(n, len); n += 2; }
    else { room(5); buf[n++] = c32; view.setUint32(n, len); n += 4; }
  };
  const int = (v) => {
    if (v >= 0) {
      if (v < 0x80) return u8(v);
      if (v < 0x100) { room(2); buf[n++] = 0xcc; buf[n++] = v; return undefined; }
      if (v < 0x10000) { room(3); buf[n++] = 0xcd; view.setUint16(n, v); n += 2; return undefined; }
      if (v < 0x100000000) { room(5); buf[n++] = 0xce; view.setUint32(n, v); n += 4; return undefined; }
      room(9); buf[n++] = 0xcf; view.setBigUint64(n, BigInt(v)); n += 8; return undefined;
    }
    if (v >= -32) return u8(v & 0xff);
    if (v >= -0x80) { room(2); buf[n++] = 0xd0; view.setInt8(n, v); n += 1; return undefined; }
    if (v >= -0x8000) { room(3); buf[n++] = 0xd1; view.setInt16(n, v); n += 2; return undefined; }
    if (v >= -0x80000000) { room(5); buf[n++] = 0xd2; view.setInt32(n, v); n += 4; return undefined; }
    room(9); buf[n++] = 0xd3; view.setBigInt64(n, BigInt(v)); n += 8; return undefined;
  };
  const enc = (v, depth) => {
    if (depth > 64) throw new HeraldError(ERR_MALFORMED, 'nested deeper than 64 levels');
    if (v === null || v === undefined) return u8(0xc0);
    if (v === false) return u8(0xc2);
    if (v === true) return u8(0xc3);
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new HeraldError(ERR_MALFORMED, 'NaN or infinite number');
      if (Number.isInteger(v) && Number.isSafeInteger(v)) return int(v);
      room(9); buf[n++] = 0xcb; view.setFloat64(n, v); n += 8; return undefined;
    }
    if (typeof v === 'bigint') {
      if (v >= 0n) { room(9); buf[n++] = 0xcf; view.setBigUint64(n, v); n += 8; return undefined; }
      room(9); buf[n++] = 0xd3; view.setBigInt64(n, v); n += 8; return undefined;
    }
    if (typeof v === 'string') {
      const b = utf8enc.encode(v);
      head(0, b.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
      room(b.length); buf.set(b, n); n += b.length; return undefined;
    }
    if (Array.isArray(v)) {
      head(0, v.length, 0x90, 15, null, 0xdc, 0xdd);
      for (const x of v) enc(x, depth + 1);
      return undefined;
    }
    if (typeof v === 'object') {
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      head(0, keys.length, 0x80, 15, null, 0xde, 0xdf);
      for (const k of keys) { enc(k, depth + 1); enc(v[k], depth + 1); }
      return undefined;
    }
    throw new HeraldError(ERR_MALFORMED, 'cannot encode a ' + typeof v);
  };
  enc(value, 0);
  return buf.slice(0, n);
}

// Decodes every message of one frame (maps back to back). Returns
// {messages, errors} like parseFrame(): a frame that does not decode is an
// error, never an exception.
export function msgpackDecodeFrame(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let i = 0;
  const need = (k) => { if (i + k > b.length) throw new Error('truncated'); };
  const str = (len) => { need(len); const s = utf8dec.decode(b.subarray(i, i + len)); i += len; return s; };
  const big = (v) => (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v);
  const arr = (len, depth) => { const a = []; for (let k = 0; k < len; k++) a.push(dec(depth + 1)); return a; };
  const map = (len, depth) => {
    const o = {};
    for (let k = 0; k < len; k++) {
      const key = dec(depth + 1);
      if (typeof key !== 'string') throw new Error('map key is not a string');
      o[key] = dec(depth + 1);
    }
    return o;
  };
  const dec = (depth) => {
    if (depth > 65) throw new Error('nested too deep');
    need(1);
    const t = b[i++];
    let v;
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return map(t & 0x0f, depth);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f, depth);
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xca: need(4); v = view.getFloat32(i); i += 4; return v;
      case 0xcb: need(8); v = view.getFloat64(i); i += 8; return v;
      case 0xcc: need(1); return b[i++];
      case 0xcd: need(2); v = view.getUint16(i); i += 2; return v;
      case 0xce: need(4); v = view.getUint32(i); i += 4; return v;
      case 0xcf: need(8); v = big(view.getBigUint64(i)); i += 8; return v;
      case 0xd0: need(1); v = view.getInt8(i); i += 1; return v;
      case 0xd1: need(2); v = view.getInt16(i); i += 2; return v;
      case 0xd2: need(4); v = view.getInt32(i); i += 4; return v;
      case 0xd3: need(8); v = big(view.getBigInt64(i)); i += 8; return v;
      case 0xd9: need(1); return str(b[i++]);
      case 0xda: need(2); v = view.getUint16(i); i += 2; return str(v);
      case 0xdb: need(4); v = view.getUint32(i); i += 4; return str(v);
      case 0xdc: need(2); v = view.getUint16(i); i += 2; return arr(v, depth);
      case 0xdd: need(4); v = view.getUint32(i); i += 4; return arr(v, depth);
      case 0xde: need(2); v = view.getUint16(i); i += 2; return map(v, depth);
      case 0xdf: need(4); v = view.getUint32(i); i += 4; return map(v, depth);
      default: throw new Error('type 0x' + t.toString(16) + ' is not used by Herald');
    }
  };
  const messages = [];
  const errors = [];
  while (i < b.length) {
    let m;
    try {
      m = dec(0);
    } catch (err) {
      errors.push(new HeraldError(ERR_MALFORMED, 'MessagePack frame: ' + err.message));
      break;                      // the rest of the frame cannot be framed
    }
    if (!m || typeof m !== 'object' || Array.isArray(m) || typeof m.op !== 'string') {
      errors.push(new HeraldError(ERR_MALFORMED, 'message without an op'));
      continue;
    }
    messages.push(m);
  }
  return { messages, errors };
}

// The key a presence member is known by: its user, or for an anonymous
// connection its client id.
function memberKey(m) {
  return m && (m.user ?? m.client);
}

// A small event emitter: on() returns an unsubscribe function, listeners
// that throw are reported as an 'error' event instead of breaking the
// emitter's caller (and an 'error' listener that throws goes to console).
class Emitter {
  constructor() {
    this._listeners = new Map();
  }
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }
  once(event, fn) {
    const off = this.on(event, (...a) => {
      off();
      fn(...a);
    });
    return off;
  }
  off(event, fn) {
    const s = this._listeners.get(event);
    if (s) s.delete(fn);
  }
  emit(event, ...args) {
    const s = this._listeners.get(event);
    if (!s) return;
    for (const fn of [...s]) {
      try {
        fn(...args);
      } catch (err) {
        const handlers = this._listeners.get('error');
        if (event !== 'error' && handlers && handlers.size) this.emit('error', err);
        else this._unhandled(err);
      }
    }
  }
  // Where a listener's exception goes when nobody listens for 'error'.
  _unhandled(err) {
    if (typeof console !== 'undefined') console.error(err);
  }
}

// ---- presence view and typing helper ----

// Members of one channel: the snapshot from the subscribe reply (or a
// presence request), then join/leave/presence_batch. One entry per member
// key; `count` is the broker's count (above presence_tier `members` is a
// sample and count is larger). Events: 'change' ({joined, left}).
export class PresenceView extends Emitter {
  constructor() {
    super();
    this.members = new Map();
    this.count = 0;
    this.tiered = false;
  }
  reset(snapshot) {
    this.members.clear();
    const list = snapshot && Array.isArray(snapshot.members) ? snapshot.members : [];
    for (const m of list) if (memberKey(m) != null) this.members.set(memberKey(m), m);
    this.count = snapshot && typeof snapshot.count === 'number' ? snapshot.count : this.members.size;
    this.tiered = !!(snapshot && snapshot.tiered);
    this.emit('change', { joined: [], left: [], snapshot: true });
  }
  join(m) {
    const k = memberKey(m);
    if (k == null) return;
    if (!this.members.has(k)) this.count++;
    this.members.set(k, { user: m.user, client: m.client, info: m.info });
    this.emit('change', { joined: [k], left: [] });
  }
  leave(m) {
    const k = memberKey(m);
    if (k == null) return;
    if (this.members.delete(k) || this.tiered) this.count = Math.max(0, this.count - 1);
    this.emit('change', { joined: [], left: [k] });
  }
  batch(b) {
    const joined = [];
    const left = [];
    for (const m of Array.isArray(b.joins) ? b.joins : []) {
      const k = memberKey(m);
      if (k == null) continue;
      this.members.set(k, { user: m.user, client: m.client, info: m.info });
      joined.push(k);
    }
    for (const m of Array.isArray(b.leaves) ? b.leaves : []) {
      const k = memberKey(m);
      if (k == null) continue;
      this.members.delete(k);
      left.push(k);
    }
    if (typeof b.count === 'number') this.count = b.count;
    this.tiered = true;
    this.emit('change', { joined, left });
  }
  list() {
    return [...this.members.values()];
  }
}

// Who is typing in one channel. notify() sends {typing:true} at most once per
// `throttle` ms; a typer disappears `expire` ms after their last signal, on
// {typing:false}, or when they leave. Events: 'change' (the Set of keys).
export class Typing extends Emitter {
  constructor(sub, opts = {}) {
    super();
    this.sub = sub;
    this.throttle = opts.throttle ?? 2000;
    this.expire = opts.expire ?? 5000;
    this.extra = opts.data || {};
    this.typers = new Map();        // key -> {from, data, timer}
    this._last = 0;
    this._offs = [
      sub.on('signal', (s) => this._onSignal(s)),
      sub.on('leave', (m) => this._drop(memberKey(m))),
      sub.on('publication', (p) => p.from && this._drop(memberKey(p.from))),
    ];
  }
  notify() {
    const now = Date.now();
    if (now - this._last < this.throttle) return Promise.resolve(false);
    this._last = now;
    return this.sub.signal({ ...this.extra, typing: true }).then(() => true, () => false);
  }
  stop() {
    if (!this._last) return Promise.resolve(false);
    this._last = 0;
    return this.sub.signal({ ...this.extra, typing: false }).then(() => true, () => false);
  }
  who() {
    return [...this.typers.values()].map((t) => ({ key: memberKey(t.from), from: t.from, data: t.data }));
  }
  close() {
    for (const off of this._offs) off();
    for (const t of this.typers.values()) clearTimeout(t.timer);
    this.typers.clear();
  }
  _onSignal(s) {
    const d = s.data;
    if (!d || typeof d !== 'object' || !('typing' in d)) return;
    const k = memberKey(s.from);
    if (k == null) return;
    if (!d.typing) return this._drop(k);
    const old = this.typers.get(k);
    if (old) clearTimeout(old.timer);
    const timer = setTimeout(() => this._drop(k), this.expire);
    this.typers.set(k, { from: s.from, data: d, timer });
    if (!old) this.emit('change', this.who());
  }
  _drop(k) {
    const t = this.typers.get(k);
    if (!t) return;
    clearTimeout(t.timer);
    this.typers.delete(k);
    this.emit('change', this.who());
  }
}

// ---- subscriptions ----

// One channel the page wants, across reconnects. Events:
//   'subscribed' ({recovered, resubscribed, offset, epoch})
//   'publication' ({channel, offset, ts, data, from?, reply_to?, kind?, history?})
//   'unrecovered' ({reason, epoch, offset}): something was missed for good; reload
//   'join', 'leave', 'presence_batch', 'signal': the broker's pushes for this channel
//   'state' (change list) and 'change' ({key, value, version, deleted}) on state channels
//   'error' (HeraldError)
export class Subscription extends Emitter {
  constructor(client, channel, opts) {
    super();
    this.client = client;
    this.channel = channel;
    this.opts = opts;
    this.epoch = opts.since ? opts.since.epoch : null;
    this.offset = opts.since ? opts.since.offset : 0;
    this.status = 'pending';      // pending | subscribing | subscribed | failed | unsubscribed
    this.isState = false;
    this.state = new Map();       // state channels: key -> {value, version}
    this.presence = opts.presence ? new PresenceView() : null;
    this._first = !opts.since;
    this._ready = null;
    this.ready = new Promise((resolve, reject) => {
      this._ready = { resolve, reject };
    });
    this.ready.catch(() => {});
  }

  _unhandled(err) {
    this.client._report(err);
  }

  get(key) {
    const e = this.state.get(key);
    return e ? e.value : undefined;
  }

  publish(data, opts) {
    return this.client.publish(this.channel, data, opts);
  }
  history(opts) {
    return this.client.history(this.channel, opts);
  }
  signal(data) {
    return this.client.signal(this.channel, data);
  }
  update(ops) {
    return this.client.update(this.channel, ops);
  }
  typing(opts) {
    return new Typing(this, opts);
  }
  unsubscribe() {
    return this.client._unsubscribe(this);
  }

  // The subscribe message for the current connection.
  async _message() {
    const m = { op: 'subscribe', channel: this.channel };
    if (this.presence) m.presence = true;
    if (this.epoch) m.since = { epoch: this.epoch, offset: this.offset };
    else if (this._first && this.opts.history) m.history = this.opts.history;
    const tok = this.opts.getToken ? await this.opts.getToken(this.channel) : this.opts.token;
    if (tok) m.token = tok;
    return m;
  }

  _onSubscribed(r) {
    const resubscribed = !this._first;
    const hadEpoch = !!this.epoch;
    const recovered = r.recovered === true;
    if ('state' in r) this.isState = true;
    // A state channel that was not recovered gets a fresh snapshot, which
    // replaces the map below: nothing is lost, so nothing to report.
    if (hadEpoch && !recovered && !('state' in r)) {
      this.emit('unrecovered', {
        reason: r.epoch !== this.epoch ? 'epoch changed: the channel\'s log was replaced' :
          'the log no longer holds every publication since the last one seen',
        epoch: r.epoch, offset: r.offset, previousOffset: this.offset,
      });
    }
    if (hadEpoch && r.epoch !== this.epoch) this.offset = 0;
    this.epoch = typeof r.epoch === 'string' ? r.epoch : this.epoch;
    if (r.presence && this.presence) this.presence.reset(r.presence);
    if ('state' in r) {
      this._applyChanges(replaceState(this.state, r.state), true);
      this.offset = r.offset;
    }
    this.status = 'subscribed';
    const pubs = Array.isArray(r.publications) ? r.publications : [];
    // Publications end at the reply's offset; anything up to it that we
    // already delivered is skipped.
    for (const p of pubs) this._deliver({ channel: this.channel, ...p }, !recovered || !hadEpoch);
    if (typeof r.offset === 'number' && r.offset > this.offset) {
      // A plain subscribe starts at the channel's offset: later pushes follow it.
      this.offset = r.offset;
    }
    this._first = false;
    this.emit('subscribed', { recovered, resubscribed, offset: this.offset, epoch: this.epoch });
    this._ready.resolve(this);
  }

  _deliver(p, fromHistory) {
    if (typeof p.offset !== 'number') {
      this.client._report(new HeraldError(ERR_MALFORMED, 'publication without an offset on ' + this.channel));
      return;
    }
    if (p.offset <= this.offset) return;          // seen already: exactly once
    this.offset = p.offset;
    if (this.isState) {
      let changes;
      try {
        changes = applyDelta(this.state, p.data);
      } catch (err) {
        this.client._report(err);
        return;
      }
      this._applyChanges(changes, false);
    }
    this.emit('publication', fromHistory ? { ...p, history: true } : p);
  }

  _applyChanges(changes, snapshot) {
    if (!changes.length && !snapshot) return;
    for (const c of changes) this.emit('change', c);
    this.emit('state', changes, { snapshot });
  }

  _onSnapshot(m) {
    // A conflation snapshot: the broker skipped deltas for this slow
    // connection; the snapshot replaces the map and the offset moves on.
    this.isState = true;
    if (typeof m.epoch === 'string') this.epoch = m.epoch;
    if (typeof m.offset === 'number') this.offset = m.offset;
    this._applyChanges(replaceState(this.state, m.state), true);
  }

  _onUnrecovered(m) {
    // A broker on the Redis engine lost publications between the last one
    // delivered and m.offset (docs/protocol.md): what follows continues
    // from m.offset in m.epoch.
    this.emit('unrecovered', {
      reason: 'the broker could not deliver every publication since the last one seen',
      epoch: m.epoch, offset: m.offset, previousOffset: this.offset,
    });
    if (typeof m.epoch === 'string') this.epoch = m.epoch;
    if (typeof m.offset === 'number') this.offset = m.offset;
  }

  _push(m) {
    switch (m.op) {
      case 'pub': return this._deliver(m, false);
      case 'unrecovered': return this._onUnrecovered(m);
      case 'snapshot': return this._onSnapshot(m);
      case 'join':
        if (this.presence) this.presence.join(m);
        return this.emit('join', m);
      case 'leave':
        if (this.presence) this.presence.leave(m);
        return this.emit('leave', m);
      case 'presence_batch':
        if (this.presence) this.presence.batch(m);
        return this.emit('presence_batch', m);
      case 'signal': return this.emit('signal', m);
      default: return undefined;
    }
  }
}

// ---- seat maps ----

// The live seat map of event @event (channel seats:{event}) with the calls
// that act on it. `seats` and `sections` are Maps of the broker's values.
// Events: 'change' ({key, value, deleted}), 'seat' (id, value), 'section'
// (name, value), 'offer' ({seat, section, expires}) for a waitlist offer to
// this user (from the personal channel user:{id}, or seen in the map).
// opts.act(action, fields) may replace the WebSocket `seats` op (a page in
// development mode can act through the backend's REST adapter instead).
export class SeatMap extends Emitter {
  constructor(client, event, opts = {}) {
    super();
    this.client = client;
    this.event = event;
    this.channel = 'seats:' + event;
    this.user = opts.user ?? null;
    this.act = opts.act || ((action, fields) => client.seatsOp(this.channel, action, fields));
    this.seats = new Map();
    this.sections = new Map();
    this._offers = new Set();
    this.sub = client.subscribe(this.channel);
    this.ready = this.sub.ready.then(() => this);
    this.ready.catch(() => {});   // refusals also come as the subscription's 'error'
    this.sub.on('change', (c) => this._onChange(c));
    this._personal = null;
    const watchUser = (u) => {
      if (!u || this._personal || opts.personal === false) return;
      this.user = this.user ?? u;
      this._personal = client.subscribe('user:' + u);
      this._personal.on('publication', (p) => {
        const d = p.data;
        if (d && d.type === 'seat_offer' && d.event === this.event) this._offer(d.seat, d.section, d.expires);
      });
      this._personal.on('error', () => {});
    };
    if (client.user) watchUser(client.user);
    else this._offConn = client.on('connected', (info) => watchUser(info.user));
  }
  _onChange(c) {
    const [kind, ...rest] = c.key.split(':');
    const id = rest.join(':');
    if (kind === 'seat') {
      if (c.deleted) this.seats.delete(id);
      else this.seats.set(id, c.value);
      this.emit('seat', id, c.deleted ? undefined : c.value);
      const v = c.value;
      if (v && v.offer && v.status === 'held' && this.user != null && v.holder === this.user) {
        this._offer(id, v.section, v.expires);
      }
    } else if (kind === 'section') {
      if (c.deleted) this.sections.delete(id);
      else this.sections.set(id, c.value);
      this.emit('section', id, c.deleted ? undefined : c.value);
    }
    this.emit('change', c);
  }
  _offer(seat, section, expires) {
    const k = seat + '@' + expires;
    if (this._offers.has(k)) return;
    this._offers.add(k);
    this.emit('offer', { seat, section, expires, event: this.event });
  }
  status(id) {
    const v = this.seats.get(id);
    if (!v) return 'unknown';
    if (v.status === 'held' && this.user != null && v.holder === this.user) return 'mine';
    return v.status;
  }
  hold(seats, ttl) {
    return this.act('hold', ttl ? { seats, ttl } : { seats });
  }
  confirm(seats) {
    return this.act('confirm', { seats });
  }
  release(seats) {
    return this.act('release', { seats });
  }
  waitlist(section) {
    return this.act('waitlist', { section });
  }
  waitlistLeave(section) {
    return this.act('waitlist_leave', { section });
  }
  // Milliseconds left of a hold that expires at @expires (broker wall clock).
  static remaining(expires, now = Date.now()) {
    return Math.max(0, expires - now);
  }
  close() {
    if (this._offConn) this._offConn();
    this.sub.unsubscribe();
    if (this._personal) this._personal.unsubscribe();
  }
}

// ---- the client ----

const DEFAULTS = {
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  backoffFactor: 2,
  stableAfter: 10000,       // connected this long: the next drop starts the backoff afresh
  pingInterval: 20000,      // idle this long: send a ping
  pongTimeout: 10000,       // no answer to it within this: the connection is dead
  requestTimeout: 10000,
  connectTimeout: 10000,    // WebSocket open + connect reply
};

// new Herald(url, opts): opts.token | opts.getToken, opts.WebSocket (Node),
// opts.encoding ('json', the default, or 'msgpack'),
// and the DEFAULTS above. Events: 'state' (state, previous), 'connected'
// ({client, user, expires, version}), 'disconnected' ({code, reason, willReconnect,
// delay}), 'error' (HeraldError or Error), 'refresh_required' ({expires}),
// 'refreshed' ({expires}).
export class Herald extends Emitter {
  constructor(url, opts = {}) {
    super();
    this.url = url;
    this.opts = { ...DEFAULTS, ...opts };
    this.state = STATES.DISCONNECTED;
    this.user = null;
    this.clientId = null;
    this.expires = null;
    this.attempts = 0;
    this._ws = null;
    this._subs = new Map();
    this._pending = new Map();
    this._outbox = [];
    this._nextId = 1;
    this._want = false;
    this._fatal = null;
    this._timers = {};
    this._openGen = 0;
    this._lastRx = 0;
    this._pingSent = 0;
    this._WS = this.opts.WebSocket || (typeof WebSocket !== 'undefined' ? WebSocket : null);
    this._msgpack = this.opts.encoding === 'msgpack';
  }

  // Starts connecting (and reconnecting). Resolves on the first 'connected';
  // rejects with a HeraldError when the token is refused.
  connect() {
    this._want = true;
    this._fatal = null;
    const p = new Promise((resolve, reject) => {
      if (this.state === STATES.CONNECTED) return resolve(this._info);
      const offs = [
        this.once('connected', (info) => { offs.forEach((f) => f()); resolve(info); }),
        this.on('fatal', (err) => { offs.forEach((f) => f()); reject(err); }),
      ];
    });
    if (this.state === STATES.DISCONNECTED && !this._timers.reconnect) this._open();
    return p;
  }

  // Closes the connection and stops reconnecting; pending requests fail
  // with ERR_CLOSED. Subscriptions are kept: connect() again resumes them.
  disconnect() {
    this._want = false;
    this._openGen++;
    this._clearTimer('reconnect');
    this._clearTimer('stable');
    const ws = this._ws;
    if (ws) {
      this._detach(ws);
      try { ws.close(1000, 'bye'); } catch (e) { /* already closing */ }
    }
    this._failPending(new HeraldError(ERR_CLOSED, 'disconnect() was called'));
    this._setState(STATES.DISCONNECTED);
    this.emit('disconnected', { code: 1000, reason: 'disconnect()', willReconnect: false });
  }

  subscribe(channel, opts = {}) {
    if (this._subs.has(channel)) return this._subs.get(channel);
    const sub = new Subscription(this, channel, opts);
    this._subs.set(channel, sub);
    if (this.state === STATES.CONNECTED) this._sendSubscribe(sub);
    return sub;
  }

  subscription(channel) {
    return this._subs.get(channel) || null;
  }

  seatMap(event, opts) {
    return new SeatMap(this, event, opts);
  }

  publish(channel, data, opts = {}) {
    const m = { op: 'publish', channel, data };
    if (opts.replyTo != null) m.reply_to = opts.replyTo;
    if (opts.kind) m.kind = opts.kind;
    return this.request(m);
  }

  history(channel, opts = {}) {
    const m = { op: 'history', channel };
    for (const k of ['since', 'before', 'limit', 'reverse', 'thread']) if (opts[k] != null) m[k] = opts[k];
    return this.request(m);
  }

  presence(channel) {
    return this.request({ op: 'presence', channel });
  }

  presenceStats(channel) {
    return this.request({ op: 'presence_stats', channel });
  }

  // The `state` op (named update: `state` is the connection's state).
  update(channel, ops) {
    return this.request({ op: 'state', channel, ops });
  }

  seatsOp(channel, action, fields) {
    return this.request({ op: 'seats', channel, action, ...fields });
  }

  // A signal has no reply on success. A ping sent right behind it comes back
  // after any error the signal caused (replies keep their order), so the
  // promise settles on whichever comes first.
  signal(channel, data) {
    const sig = this.request({ op: 'signal', channel, data }, { noReply: true });
    const ping = this.request({ op: 'ping' });
    return Promise.race([sig, ping.then(() => undefined)]);
  }

  ping() {
    return this.request({ op: 'ping' });
  }

  // Sends @msg with a fresh id; resolves with the reply, rejects with a
  // HeraldError. Requests made while not connected wait for the connection
  // (within the same timeout).
  request(msg, opts = {}) {
    const id = this._nextId++;
    const timeout = opts.timeout ?? this.opts.requestTimeout;
    return new Promise((resolve, reject) => {
      const entry = { id, msg: { ...msg, id }, resolve, reject, timer: null, noReply: !!opts.noReply };
      entry.timer = setTimeout(() => {
        this._pending.delete(id);
        this._outbox = this._outbox.filter((e) => e !== entry);
        if (entry.noReply) resolve(undefined);
        else reject(new HeraldError(ERR_TIMEOUT, `no reply to ${msg.op} within ${timeout} ms`));
      }, timeout);
      this._pending.set(id, entry);
      if (this.state === STATES.CONNECTED) this._send(entry.msg);
      else if (!this._want) {
        this._settle(id, null, new HeraldError(ERR_DISCONNECTED, 'not connected: call connect() first'));
      } else this._outbox.push(entry);
    });
  }

  // ---- internals ----

  _setState(s) {
    if (s === this.state) return;
    const prev = this.state;
    this.state = s;
    this.emit('state', s, prev);
  }

  _report(err) {
    this.emit('error', err);
  }

  _clearTimer(name) {
    if (this._timers[name]) {
      clearTimeout(this._timers[name]);
      clearInterval(this._timers[name]);
      this._timers[name] = null;
    }
  }

  async _open() {
    this._clearTimer('reconnect');
    if (!this._want) return;
    if (!this._WS) {
      this._stop(new HeraldError(ERR_DISCONNECTED, 'no WebSocket implementation: pass opts.WebSocket'));
      return;
    }
    this._setState(STATES.CONNECTING);
    // A later _open() or disconnect() while getToken() runs makes this one moot.
    const gen = ++this._openGen;
    let token = this.opts.token;
    if (this.opts.getToken) {
      try {
        token = await this.opts.getToken();
      } catch (err) {
        if (gen !== this._openGen) return;
        this._report(err);
        this._scheduleReconnect({ code: 0, reason: 'getToken() failed' });
        return;
      }
      if (gen !== this._openGen) return;
      if (!this._want) {
        this._setState(STATES.DISCONNECTED);      // disconnect() came meanwhile
        return;
      }
    }
    let ws;
    try {
      ws = new this._WS(this.url, [this._msgpack ? 'herald.msgpack' : 'herald.json']);
      if (this._msgpack) ws.binaryType = 'arraybuffer';
    } catch (err) {
      this._report(err);
      this._scheduleReconnect({ code: 0, reason: String(err && err.message) });
      return;
    }
    this._ws = ws;
    this._token = token;
    this._timers.open = setTimeout(() => this._dead(ws, 'connect timed out'), this.opts.connectTimeout);
    ws.onopen = () => {
      const m = { op: 'connect', id: this._nextId++ };
      if (token) m.token = token;
      this._connectId = m.id;
      this._sendOn(ws, m);
    };
    ws.onmessage = (ev) => this._onFrame(ws, ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {};        // a close follows; it carries what we can know
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (this._ws === ws) this._ws = null;
    this._clearTimer('open');
    this._clearTimer('ping');
  }

  // A connection that stopped answering: drop it now, do not wait for a
  // close handshake that will not come.
  _dead(ws, why) {
    if (ws !== this._ws) return;
    this._detach(ws);
    try { ws.close(4000, why); } catch (e) { /* ignore */ }
    this._onClose(ws, 1006, why, true);
  }

  _onClose(ws, code, reason, detached) {
    if (!detached) {
      if (ws !== this._ws) return;
      this._detach(ws);
    }
    const wasConnected = this.state === STATES.CONNECTED;
    this._clearTimer('stable');
    this._failPending(new HeraldError(ERR_DISCONNECTED, `connection closed (${code}${reason ? ' ' + reason : ''})`));
    if (code === 4001 || this._refused) {
      const err = this._refused || new HeraldError(ERR_TOKEN, 'the broker refused the token (close 4001)');
      this._refused = null;
      this._stop(err);
      return;
    }
    if (!this._want) {
      this._setState(STATES.DISCONNECTED);
      return;
    }
    if (wasConnected) this._setState(STATES.DISCONNECTED);
    this._scheduleReconnect({ code, reason });
  }

  _stop(err) {
    this._want = false;
    this._fatal = err;
    this._failPending(err);
    this._setState(STATES.DISCONNECTED);
    this.emit('disconnected', { code: err.code, reason: err.reason, willReconnect: false });
    this.emit('error', err);
    this.emit('fatal', err);
  }

  _scheduleReconnect(info) {
    const delay = backoffDelay(this.attempts, this.opts);
    this.attempts++;
    this._setState(STATES.DISCONNECTED);
    this.emit('disconnected', { ...info, willReconnect: true, delay });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      this._open();
    }, delay);
  }

  _failPending(err) {
    for (const e of [...this._pending.values()]) {
      if (this._outbox.includes(e) && err.code === ERR_DISCONNECTED) continue;  // still waiting to be sent
      this._settle(e.id, null, err);
    }
    if (err.code !== ERR_DISCONNECTED) this._outbox = [];
  }

  _settle(id, reply, err) {
    const e = this._pending.get(id);
    if (!e) return false;
    this._pending.delete(id);
    clearTimeout(e.timer);
    if (err) {
      if (e.noReply && err.code === ERR_DISCONNECTED) e.resolve(undefined);
      else e.reject(err);
    } else e.resolve(reply);
    return true;
  }

  _send(msg) {
    this._sendOn(this._ws, msg);
  }

  _sendOn(ws, msg) {
    try {
      ws.send(this._msgpack ? msgpackEncode(msg) : JSON.stringify(msg));
    } catch (err) {
      this._report(err);
    }
  }

  _onFrame(ws, data) {
    if (ws !== this._ws) return;
    this._lastRx = Date.now();
    this._pingSent = 0;
    const { messages, errors } = this._msgpack && typeof data !== 'string' ? msgpackDecodeFrame(data) : parseFrame(data);
    for (const err of errors) this._report(err);
    for (const m of messages) {
      try {
        this._onMessage(ws, m);
      } catch (err) {
        this._report(err);
      }
    }
  }

  _onMessage(ws, m) {
    if (m.id != null && m.id === this._connectId) return this._onConnectReply(ws, m);
    if (m.id != null && this._pending.has(m.id)) {
      if (m.op === 'error') return this._settle(m.id, null, new HeraldError(m.code, m.reason, m));
      return this._settle(m.id, m, null);
    }
    if (m.op === 'subscribed' || (m.op === 'error' && m.id != null && this._subReq && this._subReq.has(m.id))) {
      return this._onSubscribeReply(m);
    }
    if (m.op === 'refresh_required') return this._refresh(m);
    if (m.op === 'error') return this._report(new HeraldError(m.code, m.reason, m));
    if (typeof m.channel === 'string') {
      const sub = this._subs.get(m.channel);
      if (sub) sub._push(m);
      return undefined;
    }
    return undefined;     // an op this version does not know: ignore it
  }

  _onConnectReply(ws, m) {
    this._clearTimer('open');
    if (m.op === 'error') {
      // 113: a bad token. The broker closes with 4001 next; remember why.
      this._refused = new HeraldError(m.code, m.reason || 'the broker refused the token', m);
      if (m.code !== ERR_TOKEN) this._refused = null;
      return;
    }
    if (m.op !== 'connected') return;
    this.clientId = m.client;
    this.user = m.user ?? null;
    this.expires = m.expires ?? null;
    this._info = { client: m.client, user: this.user, expires: this.expires, version: m.version };
    this._setState(STATES.CONNECTED);
    this._lastRx = Date.now();
    this._timers.stable = setTimeout(() => { this.attempts = 0; }, this.opts.stableAfter);
    this._startPing(ws, m.ping_interval);
    this.emit('connected', this._info);
    this._subReq = new Map();
    for (const sub of this._subs.values()) {
      if (sub.status !== 'failed') this._sendSubscribe(sub);
    }
    const out = this._outbox;
    this._outbox = [];
    for (const e of out) if (this._pending.has(e.id)) this._send(e.msg);
  }

  _startPing(ws, serverInterval) {
    const idle = this.opts.pingInterval;
    if (!idle) return;
    const tick = Math.max(250, Math.min(idle, this.opts.pongTimeout) / 4);
    this._timers.ping = setInterval(() => {
      if (ws !== this._ws) return;
      const now = Date.now();
      if (this._pingSent && now - this._pingSent > this.opts.pongTimeout) {
        this._dead(ws, 'no answer to ping');
      } else if (!this._pingSent && now - this._lastRx > idle) {
        this._pingSent = now;
        this._sendOn(ws, { op: 'ping' });
      }
    }, tick);
    void serverInterval;
  }

  async _sendSubscribe(sub) {
    const ws = this._ws;
    sub.status = 'subscribing';
    let m;
    try {
      m = await sub._message();
    } catch (err) {
      sub.emit('error', err);
      return;
    }
    if (ws !== this._ws || this.state !== STATES.CONNECTED || this._subs.get(sub.channel) !== sub) return;
    m.id = this._nextId++;
    this._subReq.set(m.id, sub);
    this._send(m);
  }

  _onSubscribeReply(m) {
    const sub = this._subReq.get(m.id);
    if (!sub) return;
    this._subReq.delete(m.id);
    if (this._subs.get(sub.channel) !== sub) return;
    if (m.op === 'error') {
      const err = new HeraldError(m.code, m.reason, m);
      // Some refusals pass (limits, storage); the next connection retries.
      if (![100, 110, 111].includes(m.code)) sub.status = 'failed';
      sub.emit('error', err);
      sub._ready.reject(err);
      return;
    }
    sub._onSubscribed(m);
  }

  async _unsubscribe(sub) {
    if (this._subs.get(sub.channel) !== sub) return;
    this._subs.delete(sub.channel);
    sub.status = 'unsubscribed';
    if (this.state === STATES.CONNECTED) {
      try {
        await this.request({ op: 'unsubscribe', channel: sub.channel });
      } catch (err) {
        if (err.code !== 108) throw err;
      }
    }
  }

  async _refresh(m) {
    this.emit('refresh_required', { expires: m.expires });
    if (!this.opts.getToken) return;
    try {
      const token = await this.opts.getToken();
      const r = await this.request({ op: 'refresh', token });
      this.expires = r.expires ?? null;
      this.emit('refreshed', { expires: this.expires });
    } catch (err) {
      this._report(err);
    }
  }
}

export default Herald;
