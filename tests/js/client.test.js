// tests/js/client.test.js - herald.js against the real broker: reconnect and
// recovery across a restart, token refresh, a refused token, presence and
// state views after churn, a seat hold race and a waitlist offer.
import test from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Herald, HeraldError, STATES } from '../../clients/js/herald.js';
import { Broker, SECRET, mintToken, sleep, until } from './broker.js';

const FAST = { minReconnectDelay: 50, maxReconnectDelay: 400, requestTimeout: 4000, WebSocket };

// A WebSocket class that counts the connections a client opens.
function countingWS() {
  const C = class extends WebSocket {
    constructor(...a) {
      super(...a);
      C.opened++;
    }
  };
  C.opened = 0;
  return C;
}

async function withBroker(args, fn) {
  const b = await new Broker(args).start();
  try {
    await fn(b);
  } finally {
    const code = await b.stop();
    assert.equal(code, 0, 'herald exited with ' + code + '\n' + b.log.slice(-2000));
  }
}

test('reconnect after a broker restart recovers what was published while away, once and in order', async () => {
  const b = await new Broker().start();
  let gate = null;
  const c = new Herald(b.url, { ...FAST, getToken: () => gate && gate.promise });
  const got = [];
  const events = [];
  try {
    await c.connect();
    const sub = c.subscribe('room:restart');
    sub.on('publication', (p) => got.push(p.data.n));
    sub.on('subscribed', (s) => events.push(s));
    sub.on('unrecovered', (u) => events.push({ unrecovered: u }));
    await sub.ready;
    for (let n = 1; n <= 3; n++) assert.equal((await b.rest('POST', '/api/publish', { channel: 'room:restart', data: { n } })).status, 200);
    await until(() => got.length === 3, 5000, 'live publications');

    // The client may not come back until the test says so: getToken()
    // waits for the gate, so the publications below happen while it is away.
    let open;
    gate = { promise: new Promise((r) => { open = r; }) };
    const port = b.port;
    assert.equal(await b.stop(), 0);
    await until(() => c.state !== STATES.CONNECTED, 5000, 'the client to see the broker go');
    await b.start(port);
    for (let n = 4; n <= 8; n++) assert.equal((await b.rest('POST', '/api/publish', { channel: 'room:restart', data: { n } })).status, 200);
    open(undefined);
    await until(() => got.length >= 8 && c.state === STATES.CONNECTED, 8000, 'recovery');
    await b.rest('POST', '/api/publish', { channel: 'room:restart', data: { n: 9 } });
    await until(() => got.length >= 9, 5000, 'live after recovery');
    await sleep(100);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const last = events[events.length - 1];
    assert.equal(last.recovered, true);
    assert.equal(last.resubscribed, true);
    assert.ok(!events.some((e) => e.unrecovered));
  } finally {
    c.disconnect();
    await b.stop();
  }
});

test('a subscription that cannot be recovered says so', async () => {
  await withBroker([], async (b) => {
    const c = new Herald(b.url, FAST);
    await c.connect();
    // A remembered position in a log that never existed (another epoch).
    const sub = c.subscribe('room:gone', { since: { epoch: '0000000000000000', offset: 5 } });
    const un = new Promise((r) => sub.once('unrecovered', r));
    const u = await un;
    assert.match(u.reason, /epoch/);
    assert.notEqual(sub.epoch, '0000000000000000');
    c.disconnect();
  });
});

test('token refresh on refresh_required keeps the connection', async () => {
  await withBroker(['--hmac-secret', SECRET, '--refresh-notice', '4s', '--auth-leeway', '0s'], async (b) => {
    let calls = 0;
    const minted = Date.now();
    const c = new Herald(b.url, { ...FAST, getToken: () => mintToken('ann', ++calls === 1 ? 5 : 3600) });
    const info = await c.connect();
    assert.equal(info.user, 'ann');
    const refreshed = new Promise((r) => c.once('refreshed', r));
    const drops = [];
    c.on('disconnected', (d) => drops.push(d));
    const r = await refreshed;
    assert.ok(r.expires > Date.now() / 1000 + 3000, 'the new expiry is the new token\'s');
    assert.equal(calls, 2);
    await sleep(Math.max(0, minted + 5000 + 1500 - Date.now()));    // past the first token's expiry
    assert.equal(c.state, STATES.CONNECTED);
    assert.equal(c.clientId, info.client, 'same connection');
    assert.deepEqual(drops, []);
    assert.equal((await c.ping()).op, 'pong');
    c.disconnect();
  });
});

test('a refused token stops reconnecting with a clear error', async () => {
  await withBroker(['--hmac-secret', SECRET, '--anonymous', 'off'], async (b) => {
    const WS = countingWS();
    const c = new Herald(b.url, { ...FAST, WebSocket: WS, token: mintToken('ann', 3600, 'another-secret-that-is-long-enough-xx') });
    const errors = [];
    c.on('error', (e) => errors.push(e));
    await assert.rejects(c.connect(), (e) => e instanceof HeraldError && e.code === 113);
    await sleep(1000);
    assert.equal(WS.opened, 1, 'no reconnect loop');
    assert.equal(c.state, STATES.DISCONNECTED);
    assert.ok(errors.some((e) => e.code === 113));
    await assert.rejects(c.publish('room:x', 1), (e) => e instanceof HeraldError);
  });
});

test('the presence view equals the server\'s after churn', async () => {
  await withBroker(['--hmac-secret', SECRET, '--ns', 'room.presence=on', '--ns', 'room.join_leave=on',
    '--ns', 'room.presence_grace=100ms'], async (b) => {
    const viewer = new Herald(b.url, { ...FAST, token: mintToken('viewer') });
    await viewer.connect();
    const sub = viewer.subscribe('room:p', { presence: true });
    await sub.ready;
    const others = [];
    for (let i = 0; i < 8; i++) {
      const c = new Herald(b.url, { ...FAST, token: mintToken('u' + (i % 5)) });
      await c.connect();
      await c.subscribe('room:p').ready;
      others.push(c);
    }
    const anon = new Herald(b.url, FAST);
    await anon.connect();
    await anon.subscribe('room:p').ready;
    for (const i of [0, 5, 2, 3]) others[i].disconnect();     // u0 keeps no connection; u2, u3 neither
    let last = null;
    const server = async () => {
      const r = await viewer.presence('room:p');
      return r.members.map((m) => m.user ?? m.client).sort();
    };
    await until(async () => {
      const s = await server();
      last = [s, [...sub.presence.members.keys()].sort()];
      return s.length === 5 && JSON.stringify(last[1]) === JSON.stringify(s);
    }, 5000, 'presence view = server').catch((e) => { throw new Error(e.message + ': ' + JSON.stringify(last)); });
    assert.equal(sub.presence.count, 5);
    assert.ok(sub.presence.members.has(anon.clientId));
    for (const c of [...others, anon]) c.disconnect();
    viewer.disconnect();
  });
});

test('the state view equals the server\'s after churn and a dropped connection', async () => {
  await withBroker(['--ns', 'scores.state=on'], async (b) => {
    const c = new Herald(b.url, FAST);
    await c.connect();
    const sub = c.subscribe('scores:g1');
    const perKey = new Map();
    sub.on('change', (ch) => perKey.set(ch.key, (perKey.get(ch.key) || 0) + 1));
    await sub.ready;
    await b.rest('PUT', '/api/scoreboards/g1/teams', { home: 'Lakers', away: 'Celtics' });
    for (let i = 0; i < 30; i++) {
      await b.rest('POST', '/api/scoreboards/g1/score', { team: i % 2 ? 'home' : 'away', points: (i % 3) + 1 });
      if (i === 10) c._ws.terminate();                   // the network drops; the client recovers
      if (i === 20) await b.rest('POST', '/api/scoreboards/g1/reset');
    }
    await b.rest('POST', '/api/scoreboards/g1/score', { team: 'home', points: 2 });
    const server = async () => {
      const r = await b.rest('GET', '/api/channels/scores:g1/state');
      const o = {};
      for (const it of r.json.items) o[it.key] = it.value;
      return o;
    };
    const mine = () => Object.fromEntries([...sub.state].sort().map(([k, v]) => [k, v.value]));
    await until(async () => JSON.stringify(mine()) === JSON.stringify(await server()), 5000, 'state view = server');
    assert.ok(perKey.get('score:home') >= 2, 'a change event per key');
    assert.equal(sub.get('teams'), undefined, 'the reset cleared the teams');
    c.disconnect();
  });
});

test('seat hold race: one of two clients gets the seat, the other learns which were taken; offers arrive', async () => {
  await withBroker(['--hmac-secret', SECRET, '--ns', 'seats.state=on', '--ns', 'seats.publish=authenticated',
    '--ns', 'seats.seat_client_confirm=on'], async (b) => {
    const seats = ['A1', 'A2', 'A3', 'B1'].map((id) => ({ id, section: id[0] }));
    // Section A has three seats: the race takes two, the loser the third.
    assert.equal((await b.rest('PUT', '/api/events/e1/seats', { seats })).status, 200);
    const ann = new Herald(b.url, { ...FAST, token: mintToken('ann') });
    const bob = new Herald(b.url, { ...FAST, token: mintToken('bob') });
    await Promise.all([ann.connect(), bob.connect()]);
    const ma = ann.seatMap('e1');
    const mb = bob.seatMap('e1');
    await Promise.all([ma.ready, mb.ready]);
    assert.equal(ma.seats.size, 4);
    assert.equal(ma.status('A2'), 'free');
    const [ra, rb] = await Promise.allSettled([ma.hold(['A1', 'A2'], 60), mb.hold(['A2', 'A3'], 60)]);
    const won = [ra, rb].filter((r) => r.status === 'fulfilled');
    const lost = [ra, rb].filter((r) => r.status === 'rejected');
    assert.equal(won.length, 1);
    assert.equal(lost.length, 1);
    assert.ok(lost[0].reason instanceof HeraldError);
    assert.equal(lost[0].reason.code, 119);
    assert.deepEqual(lost[0].reason.seats, ['A2']);
    assert.ok(won[0].value.expires > Date.now(), 'the hold\'s expiry, for a countdown');
    const winner = ra.status === 'fulfilled' ? ma : mb;
    const loser = winner === ma ? mb : ma;
    await until(() => loser.status('A2') === 'held' && winner.status('A2') === 'mine', 3000, 'both maps to show the hold');
    assert.equal(loser.status(winner === ma ? 'A3' : 'A1'), 'free', 'all or none: nothing of the losing hold');

    // The loser takes the last seat of section A and queues for another; the
    // winner releases one of theirs: it is offered to the loser.
    await loser.hold([winner === ma ? 'A3' : 'A1'], 60);
    const offer = new Promise((r) => loser.once('offer', r));
    const w = await loser.waitlist('A');
    assert.equal(w.position, 1);
    const wseat = winner === ma ? 'A1' : 'A3';   // a seat of the winner's that is not A2
    await winner.release([wseat]);
    const o = await offer;
    assert.equal(o.seat, wseat);
    assert.ok(o.expires > Date.now());
    const booked = await loser.confirm([wseat]);
    assert.deepEqual(booked.seats, [wseat]);
    await until(() => winner.status(wseat) === 'booked', 3000, 'booked everywhere');
    ann.disconnect();
    bob.disconnect();
  });
});

test('requests: errors carry the protocol code, and time out', async () => {
  await withBroker([], async (b) => {
    const c = new Herald(b.url, { ...FAST, requestTimeout: 300 });
    await c.connect();
    await assert.rejects(c.publish('bad channel', 1), (e) => e instanceof HeraldError && e.code === 104);
    await assert.rejects(c.signal('room:s', { typing: true }), (e) => e.code === 108 || e.code === 116);
    const r = await c.publish('room:s', { hi: 1 });
    assert.equal(r.offset, 1);
    const h = await c.history('room:s', { limit: 10 });
    assert.deepEqual(h.publications.map((p) => p.data), [{ hi: 1 }]);
    await assert.rejects(c.request({ op: 'ping-with-no-answer-ever' }, { timeout: 200 }), (e) => e.code === 102 || e.code === 1);
    c.disconnect();
    await assert.rejects(c.ping(), (e) => e instanceof HeraldError);
  });
});

test('MessagePack and JSON clients see the same publications, and MessagePack recovers too', async () => {
  await withBroker([], async (b) => {
    const mp = new Herald(b.url, { ...FAST, encoding: 'msgpack' });
    const js = new Herald(b.url, FAST);
    await Promise.all([mp.connect(), js.connect()]);
    const got = { mp: [], js: [] };
    const smp = mp.subscribe('room:mp');
    const sjs = js.subscribe('room:mp');
    smp.on('publication', (p) => got.mp.push(p.data));
    sjs.on('publication', (p) => got.js.push(p.data));
    await Promise.all([smp.ready, sjs.ready]);
    const data = [{ text: 'ünï ✓', n: -129, big: 2 ** 40, f: 0.5, list: [null, true, 'x'.repeat(300)] }, 'plain', 7];
    for (const d of data.slice(0, 2)) await mp.publish('room:mp', d);
    mp._ws.terminate();                                // a drop: the third is published while away
    await js.publish('room:mp', data[2]);
    await until(() => got.mp.length === 3 && got.js.length === 3, 5000, 'deliveries');
    assert.deepEqual(got.mp, data);
    assert.deepEqual(got.js, data);
    const h = await mp.history('room:mp', { limit: 10 });
    assert.deepEqual(h.publications.map((p) => p.data), data);
    await assert.rejects(mp.publish('bad channel', 1), (e) => e instanceof HeraldError && e.code === 104);
    mp.disconnect();
    js.disconnect();
  });
});
