// tests/js/unit.test.js - herald.js pieces that need no broker: backoff bounds,
// the state delta applier, presence batches, malformed server frames.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  Herald, HeraldError, PresenceView, applyDelta, backoffDelay, parseFrame, replaceState,
  ERR_MALFORMED, VERSION, msgpackDecodeFrame, msgpackEncode,
} from '../../clients/js/herald.js';

test('backoff: full jitter stays within [0, min(max, min*factor^n))', () => {
  const opts = { minReconnectDelay: 100, maxReconnectDelay: 5000, backoffFactor: 2 };
  for (let n = 0; n < 20; n++) {
    const cap = Math.min(5000, 100 * 2 ** n);
    assert.equal(backoffDelay(n, opts, () => 0), 0);
    assert.equal(backoffDelay(n, opts, () => 0.999999), Math.floor(0.999999 * cap));
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(n, opts);
      assert.ok(d >= 0 && d < cap, `attempt ${n}: ${d} not in [0, ${cap})`);
    }
  }
  assert.equal(backoffDelay(1000, opts, () => 0.5), 2500, 'huge attempt numbers stay bounded');
  assert.ok(backoffDelay(3, {}, () => 0.5) <= 20000, 'defaults are bounded');
});

test('backoff: the attempt counter resets after a stable connection', async () => {
  const c = new Herald('ws://x', { stableAfter: 30, WebSocket: class {} });
  c.attempts = 7;
  c._timers.stable = setTimeout(() => { c.attempts = 0; }, c.opts.stableAfter);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(c.attempts, 0);
});

test('delta applier: set, delete, reset and versions', () => {
  const m = new Map();
  let ch = applyDelta(m, { changes: [{ key: 'home', value: 2, version: 1 }, { key: 'away', value: 0, version: 1 }] });
  assert.deepEqual(ch.map((c) => c.key), ['home', 'away']);
  assert.deepEqual(m.get('home'), { value: 2, version: 1 });
  ch = applyDelta(m, { changes: [{ key: 'home', value: 5, version: 2 }, { key: 'away', deleted: true }] });
  assert.deepEqual(m.get('home'), { value: 5, version: 2 });
  assert.equal(m.has('away'), false);
  assert.deepEqual(ch[1], { key: 'away', value: undefined, version: 0, deleted: true });
  ch = applyDelta(m, { changes: [{ key: 'absent', deleted: true }] });
  assert.equal(ch.length, 0, 'deleting an absent key is no change');
  m.set('x', { value: 1, version: 1 });
  ch = applyDelta(m, { reset: true, changes: [{ key: 'home', value: 0, version: 1 }] });
  assert.deepEqual([...m.keys()], ['home']);
  assert.deepEqual(ch.filter((c) => c.deleted).map((c) => c.key), ['x']);
  assert.throws(() => applyDelta(m, null), HeraldError);
  assert.throws(() => applyDelta(m, { changes: [{ value: 1 }] }), HeraldError);
});

test('snapshot replaces the map and reports only the differences', () => {
  const m = new Map([['a', { value: 1, version: 1 }], ['b', { value: 2, version: 1 }]]);
  const ch = replaceState(m, { a: { value: 1, version: 1 }, c: { value: 3, version: 4 } });
  assert.deepEqual(ch.map((c) => [c.key, c.deleted]).sort(), [['b', true], ['c', false]]);
  assert.deepEqual([...m.keys()].sort(), ['a', 'c']);
});

test('presence view: snapshot, join, leave and batches keep one entry per user', () => {
  const p = new PresenceView();
  let changes = 0;
  p.on('change', () => changes++);
  p.reset({ count: 2, members: [{ user: 'ann', connections: 2 }, { user: 'bob', connections: 1 }] });
  p.join({ user: 'ann' });
  p.join({ client: '0123456789abcdef' });
  assert.equal(p.members.size, 3);
  assert.equal(p.count, 3);
  p.leave({ user: 'bob' });
  assert.deepEqual([...p.members.keys()].sort(), ['0123456789abcdef', 'ann']);
  assert.equal(p.count, 2);
  p.batch({ joins: [{ user: 'u1' }, { user: 'u2' }, { user: 'u1' }], leaves: [{ user: 'ann' }],
    joins_total: 2, leaves_total: 1, count: 5001 });
  assert.equal(p.count, 5001, 'the batch count is the broker\'s');
  assert.ok(p.tiered);
  assert.deepEqual([...p.members.keys()].sort(), ['0123456789abcdef', 'u1', 'u2']);
  p.batch({ joins: 'junk', leaves: null, count: 4999 });
  assert.equal(p.count, 4999);
  assert.equal(changes, 6);
});

test('malformed frames are reported, never thrown', () => {
  const { messages, errors } = parseFrame('{"op":"pong"}\nnot json\n[1,2]\n{"no":"op"}\n\n{"op":"pub","channel":"c","offset":1}');
  assert.equal(messages.length, 2);
  assert.equal(errors.length, 3);
  for (const e of errors) assert.equal(e.code, ERR_MALFORMED);
  assert.equal(parseFrame(new Uint8Array(3)).errors.length, 1);
});

test('a client fed bad frames reports them and keeps working', () => {
  const c = new Herald('ws://x', { WebSocket: class {} });
  const ws = {};
  c._ws = ws;
  const reported = [];
  c.on('error', (e) => reported.push(e));
  const sub = c.subscribe('chat:x');
  sub.status = 'subscribed';
  const got = [];
  sub.on('publication', (p) => got.push(p.offset));
  sub.on('publication', () => { throw new Error('a page listener that throws'); });
  assert.doesNotThrow(() => {
    c._onFrame(ws, '{"op":"pub","channel":"chat:x"}');                 // no offset
    c._onFrame(ws, '{{{');
    c._onFrame(ws, '{"op":"pub","channel":"chat:x","offset":1,"data":1}\n{"op":"pub","channel":"chat:x","offset":1,"data":1}');
    c._onFrame(ws, '{"op":"error","code":101,"reason":"x"}');
    c._onFrame(ws, '{"op":"snapshot","channel":"chat:x","offset":"bad","state":7}');
    c._onFrame(ws, '{"op":"pub","channel":"chat:x","offset":2,"data":2}');
    c._onFrame(ws, new Uint8Array([1, 2, 3]));
    c._onFrame(ws, '{"op":"whatever-comes-next","channel":"chat:x"}');
  });
  assert.deepEqual(got, [1], 'duplicates dropped; a bad snapshot turned the view into state, whose bad delta was reported');
  assert.ok(reported.length >= 5, 'each bad frame and the throwing listener were reported: ' + reported.length);
  assert.ok(reported.some((e) => e.message === 'a page listener that throws'));
  assert.equal(typeof VERSION, 'string');
});

test('the unrecovered push moves the position on and reports the loss', () => {
  const c = new Herald('ws://x', { WebSocket: class {} });
  const ws = {};
  c._ws = ws;
  const sub = c.subscribe('news');
  sub.status = 'subscribed';
  sub.epoch = 'aaaaaaaaaaaaaaaa';
  const got = [];
  const lost = [];
  sub.on('publication', (p) => got.push(p.offset));
  sub.on('unrecovered', (u) => lost.push(u));
  c._onFrame(ws, '{"op":"pub","channel":"news","offset":1,"data":1}');
  c._onFrame(ws, '{"op":"unrecovered","channel":"news","epoch":"aaaaaaaaaaaaaaaa","offset":4,'
    + '"last":{"epoch":"aaaaaaaaaaaaaaaa","offset":1}}');
  c._onFrame(ws, '{"op":"pub","channel":"news","offset":4,"data":4}');
  c._onFrame(ws, '{"op":"pub","channel":"news","offset":5,"data":5}');
  assert.deepEqual(got, [1, 5], 'what the position covers is not delivered again');
  assert.equal(lost.length, 1);
  assert.equal(lost[0].previousOffset, 1);
  assert.equal(lost[0].offset, 4);
  assert.equal(sub.offset, 5);
});

const hex = (u8) => Buffer.from(u8).toString('hex');
const unhex = (h) => new Uint8Array(Buffer.from(h.replace(/\s+/g, ''), 'hex'));

test('MessagePack: the examples of protocol.md section 8', () => {
  assert.equal(hex(msgpackEncode({ op: 'ping', id: 5 })), '82a26f70a470696e67a2696405');
  assert.equal(hex(msgpackEncode({ op: 'subscribe', id: 2, channel: 'chat:room1' })),
    '83a26f70a9737562736372696265a2696402a76368616e6e656caa636861743a726f6f6d31');
  const pub = '85a26f70a3707562a76368616e6e656ca46e657773a66f666673657401a27473cf000001a1f13b161da464617461c3';
  const { messages, errors } = msgpackDecodeFrame(unhex(pub + pub.replace('01a274', '02a274')));
  assert.deepEqual(errors, []);
  assert.deepEqual(messages, [
    { op: 'pub', channel: 'news', offset: 1, ts: 1795048543773, data: true },
    { op: 'pub', channel: 'news', offset: 2, ts: 1795048543773, data: true },
  ], 'a coalesced frame is read message by message');
});

test('MessagePack: every type round-trips at its boundaries', () => {
  const values = [null, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1,
    -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53) + 1,
    0.1, -2.5, 1e300, 2n ** 63n - 1n, -(2n ** 63n),
    '', 'a', 'x'.repeat(31), 'x'.repeat(32), 'x'.repeat(255), 'x'.repeat(256), 'x'.repeat(70000), 'ünï ✓ 😀',
    [], [1, [2, [3]]], new Array(16).fill(7), new Array(70000).fill(1),
    {}, { a: { b: { c: 'd' } } }, Object.fromEntries(Array.from({ length: 16 }, (_, i) => ['k' + i, i]))];
  for (const v of values) {
    const { messages, errors } = msgpackDecodeFrame(msgpackEncode({ op: 'x', v }));
    assert.deepEqual(errors, [], String(v).slice(0, 40));
    assert.deepEqual(messages[0].v, v, String(v).slice(0, 40));
  }
  assert.throws(() => msgpackEncode({ op: 'x', v: NaN }), HeraldError);
});

test('MessagePack: malformed frames are reported, never thrown', () => {
  const bad = ['81a26f70', 'c4 01 00', '81 01 02', '92 01', 'd9 05 61', 'a2 c3 28', '93 01 02 03', 'c1'];
  for (const h of bad) {
    let r;
    assert.doesNotThrow(() => { r = msgpackDecodeFrame(unhex(h)); }, h);
    assert.equal(r.messages.length, 0, h);
    assert.ok(r.errors.length >= 1 && r.errors.every((e) => e.code === ERR_MALFORMED), h);
  }
  const ok = msgpackEncode({ op: 'pong' });
  const r = msgpackDecodeFrame(new Uint8Array([...ok, 0xc4]));
  assert.equal(r.messages.length, 1, 'what came before a bad tail is kept');
  assert.equal(r.errors.length, 1);
});

test('disconnect() and connect() while getToken() is pending open one socket', async () => {
  let opened = 0;
  const WS = class { constructor() { opened++; } send() {} close() {} };
  let release;
  const c = new Herald('ws://x', { WebSocket: WS, getToken: () => new Promise((r) => { release = r; }) });
  c.connect().catch(() => {});
  const first = release;
  c.disconnect();
  c.connect().catch(() => {});
  first('t1');
  release('t2');
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(opened, 1);
  assert.equal(c.state, 'connecting');
  for (const t of Object.values(c._timers)) if (t) clearTimeout(t);
  c._want = false;
});
