// /widgets/seats.js - the live seat map of event EVENT (channel seats:EVENT):
// seats coloured by availability, select and hold with a countdown, confirm,
// release, waitlist and offers.
import { params, makeClient, statusIndicator, el, rest } from '/widgets/common.js';
import { SeatMap } from '/herald.js';

const $ = (id) => document.getElementById(id);
const event = params.get('event') || 'concert-1';
const ttl = Number(params.get('ttl') || 120);
const token = params.get('token');
const selected = new Set();
let name = params.get('name') || '';
let client = null;
let map = null;
let expires = 0;

$('title').textContent = 'Seat map — ' + event;

function showError(e) {
  if (!e) { $('error').textContent = ''; return; }
  $('error').textContent = (e.reason || e.message) + (e.seats ? ': ' + e.seats.join(', ') : '');
}

// Development mode: the REST adapter, acting as the backend for user @name.
function restAct(action, fields) {
  const path = '/api/events/' + encodeURIComponent(event) + '/' + (action === 'waitlist_leave' ? 'waitlist/leave' : action);
  return rest('POST', path, { user: name, ...fields });
}

function mine() {
  return [...map.seats.keys()].filter((id) => map.status(id) === 'mine');
}

function seatButton(id) {
  return el('button', {
    type: 'button', class: 'seat', id: 'seat-' + id, dataset: { seat: id },
    onclick: () => {
      if (map.status(id) !== 'free') return;
      if (selected.has(id)) selected.delete(id); else selected.add(id);
      paintSeat(id);
    },
  }, id);
}

function paintSeat(id) {
  let b = document.getElementById('seat-' + id);
  const v = map.seats.get(id);
  if (!v) {
    if (b) b.remove();
    return;
  }
  let box = document.getElementById('section-' + v.section);
  if (!box) {
    box = el('div', { class: 'section', id: 'section-' + v.section },
      el('h3', {}, 'Section ' + v.section + ' ', el('span', { class: 'counts' })), el('div', { class: 'seats' }));
    $('sections').append(box);
    $('section').append(el('option', { value: v.section }, v.section));
  }
  if (!b) {
    b = seatButton(id);
    box.querySelector('.seats').append(b);
  } else if (b.parentElement !== box.querySelector('.seats')) box.querySelector('.seats').append(b);
  const st = map.status(id);
  if (st !== 'free') selected.delete(id);
  b.dataset.status = st;
  b.classList.toggle('selected', selected.has(id));
  b.title = st + (v.holder && st !== 'mine' ? ' by ' + v.holder : '');
  $('empty').classList.add('hidden');
}

function paintSection(nameOfSection, v) {
  const box = document.getElementById('section-' + nameOfSection);
  if (box && v) {
    box.querySelector('.counts').textContent =
      `${v.free} free · ${v.held} held · ${v.booked} booked` + (v.waiting ? ` · ${v.waiting} waiting` : '');
  }
}

function paintMine() {
  const ids = mine();
  $('held-list').textContent = ids.length ? ids.join(', ') : '—';
  expires = ids.reduce((m, id) => Math.max(m, map.seats.get(id).expires || 0), 0);
}

function tick() {
  const ms = SeatMap.remaining(expires);
  $('countdown').textContent = expires ? Math.floor(ms / 60000) + ':' + String(Math.floor(ms / 1000) % 60).padStart(2, '0') + ' left' : '';
}

async function demo() {
  const seats = [];
  for (const s of ['A', 'B', 'C']) for (let n = 1; n <= 10; n++) seats.push({ id: s + n, section: s, price_class: s === 'A' ? 'vip' : 'std' });
  try {
    await rest('PUT', '/api/events/' + encodeURIComponent(event) + '/seats', { seats });
  } catch (e) {
    showError(e);
  }
}

function start() {
  $('pick').classList.add('hidden');
  $('app').classList.remove('hidden');
  client = makeClient();
  statusIndicator($('status'), client);
  if (!token) {
    $('devnote').classList.remove('hidden');
    $('dev-user').textContent = name;
  }
  client.on('connected', (info) => { $('me').textContent = info.user || name; });
  client.connect().catch(showError);
  map = client.seatMap(event, token ? {} : { user: name, act: restAct });
  map.on('seat', (id) => { paintSeat(id); paintMine(); });
  map.on('section', paintSection);
  map.on('offer', (o) => {
    $('offer').textContent = `Seat ${o.seat} (section ${o.section}) is offered to you: confirm it before it expires.`;
    $('offer').classList.remove('hidden');
  });
  map.ready.then(() => { if (map.seats.size === 0) $('empty').classList.remove('hidden'); }, showError);
  $('demo').addEventListener('click', demo);
  $('hold').addEventListener('click', async () => {
    if (!selected.size) return;
    try {
      const r = await map.hold([...selected], ttl);
      expires = r.expires;
      selected.clear();
      showError(null);
    } catch (e) {
      showError(e);
      for (const id of e.seats || []) { selected.delete(id); paintSeat(id); }
    }
  });
  $('confirm').addEventListener('click', () => {
    const ids = mine();
    if (ids.length) map.confirm(ids).then(() => { showError(null); $('offer').classList.add('hidden'); }, showError);
  });
  $('release').addEventListener('click', () => {
    const ids = mine();
    if (ids.length) map.release(ids).then(() => showError(null), showError);
  });
  $('waitlist').addEventListener('click', async () => {
    try {
      const r = await map.waitlist($('section').value);
      $('waitlist-status').textContent = r.offered ? `offered ${r.offered}` : `position ${r.position}`;
      showError(null);
    } catch (e) {
      showError(e);
    }
  });
  setInterval(tick, 250);
}

if (name || token) start();
else {
  $('pick').classList.remove('hidden');
  $('pick').addEventListener('submit', (ev) => {
    ev.preventDefault();
    name = $('pick-name').value.trim();
    if (name) start();
  });
}
