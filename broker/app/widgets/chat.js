// /widgets/chat.js - a chat room on channel chat:ROOM: history on open, live
// messages, members, typing, replies, reactions and (signed in) private messages.
//
// Anonymous members (development mode) are known to the broker by their
// connection id only, so the page tells the room its name with a signal
// ({hello: NAME}) when it arrives and when someone new joins.
import { params, makeClient, statusIndicator, el, clock } from '/widgets/common.js';

const $ = (id) => document.getElementById(id);
const room = params.get('room') || 'lobby';
const channel = 'chat:' + room;
const client = makeClient();
const names = new Map();           // member key (user, or client id) -> name
let myName = params.get('name') || '';
let sub = null;
let typing = null;
let replyTo = null;
let dm = null;                     // {peer, sub}
let lastHello = 0;

$('title').textContent = 'Chat — ' + room;
statusIndicator($('status'), client);

const keyOf = (from) => (from ? from.user ?? from.client : null);
const myKey = () => client.user ?? client.clientId;
const signedIn = () => client.user != null;

function nameOf(key, fallback) {
  if (key == null) return fallback || 'server';
  if (key === myKey()) return myName;
  return names.get(key) || fallback || (signedIn() || /^[0-9a-f]{16}$/.test(key) ? 'guest-' + key.slice(0, 4) : key);
}

function showError(err) {
  $('error').textContent = err ? (err.reason || err.message || String(err)) : '';
}

function isMine(p) {
  if (!p.from) return false;
  if (signedIn()) return p.from.user === client.user;
  return p.from.client === client.clientId || (p.data && p.data.name === myName);
}

function learn(p) {
  const k = keyOf(p.from);
  if (k != null && p.data && typeof p.data.name === 'string' && !(p.from && p.from.user && p.from.info)) {
    names.set(k, p.data.name);
  }
}

// ---- messages ----

function renderMessage(list, p, index) {
  const d = p.data && typeof p.data === 'object' ? p.data : { text: String(p.data) };
  if (p.kind === 'reaction') {
    const target = index.get(p.reply_to);
    if (target) {
      const r = target.querySelector('.reactions');
      r.append(el('span', { title: d.name || '' }, d.emoji || '👍'));
    }
    return;
  }
  if (index.has(p.offset)) return;             // never twice
  learn(p);
  const quote = p.reply_to != null && index.get(p.reply_to);
  const li = el('li', { class: 'msg' + (isMine(p) ? ' mine' : ''), dataset: { offset: String(p.offset) } },
    el('span', { class: 'actions' },
      el('button', { type: 'button', title: 'reply', class: 'reply', onclick: () => startReply(p, d) }, '↩'),
      el('button', { type: 'button', title: 'react', class: 'react', onclick: () => react(p) }, '👍')),
    quote ? el('span', { class: 'quote' }, quote.dataset.who + ': ' + quote.dataset.text.slice(0, 80)) : null,
    el('span', { class: 'time' }, clock(p.ts)),
    el('span', { class: 'who' }, d.name || nameOf(keyOf(p.from))),
    el('span', { class: 'text' }, d.text == null ? '' : String(d.text)),
    el('div', { class: 'reactions' }));
  li.dataset.who = d.name || nameOf(keyOf(p.from));
  li.dataset.text = d.text == null ? '' : String(d.text);
  index.set(p.offset, li);
  list.append(li);
}

// Publications are rendered once per frame, however many arrived: reading the
// scroll position after each append would lay the page out once per message,
// and a busy room would fall ever further behind. The oldest messages leave
// the page past MAX_SHOWN.
const MAX_SHOWN = 200;
const queue = [];
let scheduled = false;

function enqueue(list, p, index) {
  queue.push([list, p, index]);
  if (scheduled) return;
  scheduled = true;
  if (document.visibilityState === 'visible') requestAnimationFrame(flush);
  else setTimeout(flush, 100);
}

function flush() {
  scheduled = false;
  const lists = new Map();
  for (const [list, p, index] of queue.splice(0)) {
    if (!lists.has(list)) lists.set(list, { index, stick: list.scrollTop + list.clientHeight >= list.scrollHeight - 20 });
    renderMessage(list, p, index);
  }
  for (const [list, { index, stick }] of lists) {
    const shown = list.querySelectorAll('li.msg');
    for (let i = 0; i < shown.length - MAX_SHOWN; i++) {
      index.delete(Number(shown[i].dataset.offset));
      shown[i].remove();
    }
    if (stick) list.scrollTop = list.scrollHeight;
  }
}

// "NAME joined": the name is a span that follows the member's hello, which
// arrives just after the join.
function notice(key, fallback, text) {
  const list = $('messages');
  list.append(el('li', { class: 'notice' },
    el('span', { class: 'name', dataset: { key: key == null ? '' : key } }, nameOf(key, fallback)), text));
  list.scrollTop = list.scrollHeight;
}

function renameNotices(key) {
  for (const s of document.querySelectorAll('#messages .notice .name')) {
    if (s.dataset.key === key) s.textContent = nameOf(key);
  }
}

function startReply(p, d) {
  replyTo = p.offset;
  $('replying-to').textContent = (d.name || nameOf(keyOf(p.from))) + ': ' + String(d.text || '').slice(0, 40);
  $('replying').classList.remove('hidden');
  $('text').focus();
}

function cancelReply() {
  replyTo = null;
  $('replying').classList.add('hidden');
}

function react(p) {
  sub.publish({ name: myName, emoji: '👍' }, { kind: 'reaction', replyTo: p.offset }).catch(showError);
}

// ---- members ----

function renderMembers() {
  const ul = $('members');
  ul.replaceChildren();
  const keys = [...sub.presence.members.keys()].sort((a, b) => nameOf(a).localeCompare(nameOf(b)));
  for (const k of keys) {
    const m = sub.presence.members.get(k);
    const me = k === myKey();
    const label = (m.info && m.info.name) || nameOf(k);
    ul.append(el('li', {
      class: me ? 'me' : '',
      dataset: { key: k, name: label },
      title: me ? 'you' : signedIn() && m.user ? 'private message' : '',
      onclick: () => !me && signedIn() && m.user && openDm(m.user, true),
    }, label + (me ? ' (you)' : '')));
  }
  $('count').textContent = String(sub.presence.count);
}

let helloTimer = null;

function hello(force) {
  const now = Date.now();
  if (!force && now - lastHello < 1000) {
    // Throttled, but not dropped: someone who joins just after our own hello
    // must still hear our name, so say it again once the second is up.
    if (!helloTimer) helloTimer = setTimeout(() => { helloTimer = null; hello(true); }, 1000 - (now - lastHello));
    return;
  }
  lastHello = now;
  sub.signal({ hello: myName }).catch(() => {});
}

// ---- private messages (signed-in users; namespace dm has user_list = on) ----

function openDm(peer, tell) {
  if (dm && dm.peer === peer) return;
  if (dm) dm.sub.unsubscribe().catch(() => {});
  const ch = 'dm:' + [client.user, peer].sort().join(',');
  const index = new Map();
  $('dm-messages').replaceChildren();
  const s = client.subscribe(ch, { history: 50 });
  s.on('publication', (p) => enqueue($('dm-messages'), p, index));
  s.on('error', showError);
  dm = { peer, sub: s };
  $('dm-peer').textContent = nameOf(peer);
  $('dm').classList.remove('hidden');
  // The peer's page opens the conversation when told; the message itself
  // goes only to the dm channel, which only the two of them may read.
  if (tell) sub.signal({ dm: ch, to: peer }).catch(() => {});
}

// ---- start ----

function start() {
  $('pick').classList.add('hidden');
  $('chat').classList.remove('hidden');
  if (!params.get('token')) $('devnote').classList.remove('hidden');
  client.on('connected', (info) => {
    if (!myName) myName = info.user || 'guest';
    $('me').textContent = myName;
  });
  client.connect().catch(showError);
  sub = client.subscribe(channel, { presence: true, history: 50 });
  const index = new Map();
  sub.on('publication', (p) => enqueue($('messages'), p, index));
  sub.on('subscribed', (s) => {
    renderMembers();
    hello(true);
    if (s.resubscribed && !s.recovered) notice(null, 'you', ' reconnected; some messages may be missing');
  });
  sub.on('unrecovered', () => notice(null, 'you', ' missed some messages while disconnected'));
  sub.on('join', (m) => {
    notice(keyOf(m), m.info && m.info.name, ' joined');
    hello(false);
  });
  sub.on('leave', (m) => notice(keyOf(m), null, ' left'));
  sub.on('signal', (s) => {
    const d = s.data || {};
    const k = keyOf(s.from);
    if (typeof d.hello === 'string' && k != null) {
      names.set(k, d.hello.slice(0, 32));
      renderMembers();
      renameNotices(k);
    }
    if (typeof d.name === 'string' && k != null && !names.has(k)) names.set(k, d.name.slice(0, 32));
    if (d.dm && d.to === client.user && s.from && s.from.user) openDm(s.from.user, false);
  });
  sub.on('error', showError);
  sub.presence.on('change', renderMembers);
  typing = sub.typing({ throttle: 1500, expire: 3000, data: { name: myName } });
  typing.on('change', (list) => {
    const who = list.map((t) => (t.data && t.data.name) || nameOf(t.key));
    $('typing').textContent = who.length === 0 ? '' :
      who.join(', ') + (who.length === 1 ? ' is typing…' : ' are typing…');
  });
  $('text').addEventListener('input', () => {
    typing.extra = { name: myName };
    if ($('text').value) typing.notify();
  });
  $('send').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('text').value.trim();
    if (!text) return;
    const opts = replyTo != null ? { replyTo } : {};
    sub.publish({ name: myName, text }, opts).then(() => {
      $('text').value = '';
      cancelReply();
      showError(null);
      typing.stop();
    }, showError);
  });
  $('reply-cancel').addEventListener('click', cancelReply);
  $('dm-send').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('dm-text').value.trim();
    if (!text || !dm) return;
    dm.sub.publish({ name: myName, text }).then(() => { $('dm-text').value = ''; }, showError);
  });
}

if (myName || params.get('token')) start();
else {
  $('pick').classList.remove('hidden');
  $('pick').addEventListener('submit', (ev) => {
    ev.preventDefault();
    myName = $('pick-name').value.trim().slice(0, 32);
    if (myName) start();
  });
}
