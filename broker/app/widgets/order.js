// /widgets/order.js - an order's status and timeline, live over Server-Sent
// Events (GET /api/sse), for the customer who placed it.
//
// The order's channel ORDERS_NS:ORDER#OWNER (the commerce adapter's, see
// docs/adapters.md) carries one publication per change, so its history is the
// timeline. Only the owner (or an admin or service token) may read it: the
// broker refuses anyone else with 403 before the stream starts.
//
// How the whole timeline arrives: a fresh stream starts at the channel's
// present, so the first stream only learns the channel's epoch and last offset
// from its `subscribed` event; if the channel has publications, the page
// reopens the stream from position 0 of that epoch (lastEventId=0:EPOCH),
// which replays every publication, then continues live, with no gap and no
// duplicate. From then on EventSource reconnects by itself, sending the id of
// the last event it saw (Last-Event-ID): the broker resumes after it. The
// page also ignores an offset it already has, so nothing is ever shown twice.
//
// The indicator is honest: "live" only once the broker has confirmed the
// subscription (the `subscribed` event), "reconnecting" while EventSource
// retries, "not allowed" when the broker refuses the token (read from the
// refusal's status, which EventSource itself cannot see).
import { params, el, clock } from '/widgets/common.js';

const $ = (id) => document.getElementById(id);
const MAIN = ['PENDING', 'PAID', 'PROCESSING', 'PICKING', 'PACKED', 'SHIPPED', 'DELIVERED'];
const SIDE = { PAYMENT_FAILED: 'Payment failed', CANCELLED: 'Cancelled', RETURNED: 'Returned', REFUNDED: 'Refunded' };
const FINAL = new Set(['PAYMENT_FAILED', 'CANCELLED', 'REFUNDED']);
const LABEL = {
  PENDING: 'Order placed', PAID: 'Payment received', PROCESSING: 'Processing', PICKING: 'Picking',
  PACKED: 'Packed', SHIPPED: 'Shipped', DELIVERED: 'Delivered', ...SIDE,
};
const REOPEN_MS = 3000;         // after a refusal that may pass (429, 5xx) or a failed diagnosis

// A token from ?token=, or from the fragment (#token=...), which a host page
// can use so that the token never reaches a server log as part of this page's URL.
const hash = new URLSearchParams(location.hash.slice(1));
const token = params.get('token') || hash.get('token') || '';
const order = params.get('order') || '';
const ns = params.get('ns') || 'orders';
const owner = params.get('owner') || tokenSubject(token);
const channel = `${ns}:${order}#${owner}`;

let es = null;
let epoch = null;               // the channel's log, from `subscribed`
let lastOffset = 0;             // the last publication shown
let position = '';              // the id of the last event with one (pub, unrecovered)
let everLive = false;
let reopenTimer = null;
let lastStatus = null;
const seen = new Set();         // timeline entries shown, by type, status and time

function tokenSubject(t) {
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4))).sub || '';
  } catch (e) {
    return '';
  }
}

function setState(state, detail) {
  const s = $('status');
  const text = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', denied: 'not allowed',
    failed: 'stopped' }[state];
  s.dataset.state = state;
  s.textContent = text + (detail ? ' — ' + detail : '');
}

function showError(text) { $('error').textContent = text || ''; }

function streamUrl(id) {
  let u = '/api/sse?channel=' + encodeURIComponent(channel);
  if (token) u += '&token=' + encodeURIComponent(token);
  if (id) u += '&lastEventId=' + encodeURIComponent(id);
  return u;
}

// Where a new stream should start: after the last event seen, from the start
// of the known log, or (nothing known yet) at the present.
function resumeId() {
  if (position) return position;
  return epoch ? `${lastOffset}:${epoch}` : '';
}

function open(id) {
  if (es) es.close();
  clearTimeout(reopenTimer);
  es = new EventSource(streamUrl(id));
  es.addEventListener('subscribed', onSubscribed);
  es.addEventListener('pub', onPub);
  es.addEventListener('unrecovered', onUnrecovered);
  es.addEventListener('herald-error', (e) => {
    const d = JSON.parse(e.data);
    showError(d.reason || 'error ' + d.code);
  });
  es.onerror = onError;
}

function onSubscribed(e) {
  const d = JSON.parse(e.data);
  if (!epoch && !position && d.offset > 0) {
    // The first stream: replay the whole log of this epoch instead.
    epoch = d.epoch;
    open(`0:${d.epoch}`);
    return;
  }
  epoch = d.epoch;
  everLive = true;
  showError('');
  if (d.offset === 0 && !seen.size) {
    $('notice').textContent = 'No updates for this order yet.';
    $('notice').classList.remove('hidden');
  }
  setState('live');
}

function onPub(e) {
  const p = JSON.parse(e.data);
  position = e.lastEventId || position;
  if (p.offset <= lastOffset) return;         // already shown
  lastOffset = p.offset;
  apply(p.data || {}, p.ts);
}

function onUnrecovered(e) {
  const d = JSON.parse(e.data);
  position = e.lastEventId || position;
  if (d.epoch !== epoch) lastOffset = 0;       // a new log: its offsets start again
  epoch = d.epoch;
  $('notice').textContent = 'Some updates could not be recovered; the timeline shows what the broker still keeps.';
  $('notice').classList.remove('hidden');
}

function onError() {
  if (es.readyState === EventSource.CONNECTING) {
    // EventSource retries by itself, with Last-Event-ID.
    setState(everLive ? 'reconnecting' : 'connecting', everLive ? 'connection lost' : 'retrying');
    return;
  }
  // CLOSED: the broker answered with something other than a stream (a
  // refusal). EventSource does not say which: ask once with fetch.
  diagnose();
}

async function diagnose() {
  const ctl = new AbortController();
  let r;
  try {
    r = await fetch(streamUrl(resumeId()), { signal: ctl.signal, headers: { Accept: 'text/event-stream' } });
  } catch (err) {
    reopenLater('broker unreachable');
    return;
  }
  if (r.ok) {                                  // it would stream now: try again
    ctl.abort();
    reopenLater('');
    return;
  }
  const j = await r.json().catch(() => null);
  const err = (j && j.error) || { code: r.status, reason: r.statusText };
  if (r.status === 401 || r.status === 403) {
    setState('denied');
    const box = $('denied');
    box.textContent = r.status === 403
      ? `Not allowed: this order's updates are only for the account that placed it (error ${err.code}).`
      : `Not allowed: sign in to follow this order (error ${err.code}: ${err.reason}).`;
    box.dataset.code = String(err.code);
    box.classList.remove('hidden');
    $('order').classList.add('hidden');
  } else if (r.status === 429 || r.status >= 500) {
    reopenLater(err.reason);
  } else {
    setState('failed');
    showError(`${err.reason} (error ${err.code})`);
  }
}

function reopenLater(why) {
  setState(everLive ? 'reconnecting' : 'connecting', why || 'retrying');
  clearTimeout(reopenTimer);
  reopenTimer = setTimeout(() => open(resumeId()), REOPEN_MS);
}

// ---- the order ----

function detailOf(d) {
  const parts = [];
  const t = d.tracking;
  if (t) {
    if (t.carrier || t.tracking_number) parts.push([t.carrier, t.tracking_number].filter(Boolean).join(' '));
    if (t.eta) parts.push('expected ' + t.eta);
    if (t.note) parts.push(t.note);
  }
  if (d.restored) parts.push('stock released');
  if (d.payment_event) parts.push('payment provider');
  return parts.join(' · ');
}

function apply(d, ts) {
  let status;
  if (d.type === 'order_created') {
    status = 'PENDING';
    $('lines').textContent = (d.lines || []).map((l) => `${l.qty} × ${l.sku}`).join(', ');
  } else if (d.type === 'order_status') {
    status = d.status;
  } else {
    return;
  }
  const at = d.at || ts;
  const key = `${d.type}/${status}/${at}`;
  if (!status || seen.has(key)) return;
  seen.add(key);
  $('notice').classList.toggle('hidden', !/recovered/.test($('notice').textContent));
  const detail = detailOf(d);
  $('timeline').append(el('li', { dataset: { status } },
    el('span', { class: 'time' }, clock(at)),
    el('span', { class: 'what' }, LABEL[status] || status),
    detail ? el('span', { class: 'detail' }, detail) : null));
  if (d.tracking) showTracking(d.tracking);
  lastStatus = status;
  render();
}

function showTracking(t) {
  $('tracking').classList.remove('hidden');
  $('carrier').textContent = t.carrier || '—';
  $('tracking-number').textContent = t.tracking_number || '—';
  $('eta').textContent = t.eta || '—';
  $('note').textContent = t.note || '';
  for (const n of document.querySelectorAll('.note-row')) n.classList.toggle('hidden', !t.note);
}

function render() {
  const reached = Math.max(-1, ...[...$('timeline').children].map((li) => MAIN.indexOf(li.dataset.status)));
  const cur = MAIN.indexOf(lastStatus);
  const side = SIDE[lastStatus];
  $('current').textContent = LABEL[lastStatus] || lastStatus;
  $('current').dataset.status = lastStatus;
  $('side').classList.toggle('hidden', !side);
  $('side').textContent = side || '';
  $('side').dataset.status = side ? lastStatus : '';
  $('stepper').classList.toggle('ended', FINAL.has(lastStatus));
  for (const [i, li] of [...$('stepper').children].entries()) {
    const isCur = cur >= 0 ? i === cur : (FINAL.has(lastStatus) && i === reached + 1);
    li.classList.toggle('done', i <= reached && !(cur >= 0 && i === cur && i < MAIN.length - 1));
    li.classList.toggle('current', isCur);
  }
}

// ---- start ----

document.title = 'Order ' + order;
$('title').textContent = 'Order ' + order;
if (!order || !owner) {
  setState('failed');
  showError(!order ? 'Open this page with ?order=ID&token=... (a token of the account that placed the order).'
    : 'Who placed the order? Pass a token (?token=...) or ?owner=.');
} else {
  setState('connecting');
  open('');
}
