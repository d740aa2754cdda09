#!/usr/bin/env node
// tests/browser/widgets_check.mjs - the widgets (/widgets/) in a real browser.
//
// Usage: node widgets_check.mjs SCENARIO TIMEOUT_MS
//   SCENARIO  chat | dm | scoreboard | seats | status | order
// Env: HERALD_BIN (the broker, started here on a free port with a fresh data
//      directory, as tests/js/broker.js does), ARTIFACTS (a directory for the
//      screenshots, kept as test artifacts), CHROMIUM (default /usr/bin/chromium).
//
// Each scenario starts its own broker and one browser context per user
// (separate cookies and storage, like two people), checks what the issue asks of the widget, saves a
// screenshot of every page, and prints one line of JSON: ok, the checks passed,
// timings, console/page errors, and the broker's exit status. Exit 0 when ok.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pw from 'playwright-core';
import { Broker, SECRET, mintToken } from '../js/broker.js';

const { chromium } = pw;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS || os.tmpdir();
const [scenario, timeoutArg] = process.argv.slice(2);
const timeoutMs = Number(timeoutArg || 60000);
const started = Date.now();
const summary = { ok: false, scenario, checks: [], timings: {}, console_errors: [], page_errors: [],
  broker_exit: [], screenshots: [], error: null, elapsed_ms: 0 };
const browsers = [];
const brokers = [];
let finished = false;

function check(cond, msg) {
  if (!cond) throw new Error(msg);
  summary.checks.push(msg);
}

async function finish(err) {
  if (finished) return;
  finished = true;
  if (err) summary.error = String(err && err.message ? err.message : err).split('\n').slice(0, 3).join(' ');
  for (const { page, name } of browsers) {
    const file = path.join(ARTIFACTS, `widgets-${scenario}-${name}.png`);
    try {
      await Promise.race([page.screenshot({ path: file, fullPage: true }), new Promise((r) => setTimeout(r, 3000))]);
      if (fs.existsSync(file)) summary.screenshots.push(file);
    } catch (e) { /* the browser may be gone */ }
  }
  if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  for (const b of brokers) {
    const code = await b.stop();
    summary.broker_exit.push(code);
    if (code !== 0 || /AddressSanitizer|runtime error:|LeakSanitizer/.test(b.log)) {
      summary.error = summary.error || 'herald exited with ' + code + ': ' + b.log.slice(-1500);
    }
  }
  summary.ok = !summary.error && summary.console_errors.length === 0 && summary.page_errors.length === 0;
  if (!summary.error && !summary.ok) summary.error = 'errors in the page';
  summary.elapsed_ms = Date.now() - started;
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(summary.ok ? 0 : 1);
}

setTimeout(() => {
  finish(new Error('overall timeout of ' + timeoutMs + ' ms reached'));
  setTimeout(() => process.exit(1), 8000).unref();
}, timeoutMs).unref();

let browser = null;

// One browser context per user (its own cookies and storage, like another
// person); returns its page at @url.
async function open(name, url) {
  if (!browser) {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 20000,
    });
  }
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);   // generous: the suite shares a small machine
  page.on('console', (m) => {
    // A dropped WebSocket while the broker is down is what the status test wants.
    // The order page's stream breaks while its broker restarts, and the
    // stranger's page is refused (403): Chromium logs both as errors.
    const expected = (scenario === 'status' && /WebSocket|ERR_CONNECTION_REFUSED/.test(m.text())) ||
      (scenario === 'order' && name === 'alice' && /ERR_CONNECTION_REFUSED|ERR_INCOMPLETE_CHUNKED_ENCODING/.test(m.text())) ||
      (scenario === 'order' && name === 'bob' && /403|EventSource/.test(m.text()));
    if (m.type() === 'error' && !expected) {
      summary.console_errors.push(name + ': ' + m.text());
    }
  });
  page.on('pageerror', (e) => summary.page_errors.push(name + ': ' + String(e && e.message ? e.message : e)));
  browsers.push({ name, context, page });
  const resp = await page.goto(url, { waitUntil: 'load' });
  check(resp && resp.ok(), `${name}: GET ${new URL(url).pathname} answered ${resp ? resp.status() : 'nothing'}`);
  return page;
}

const status = (page, state, timeout = 20000) =>
  page.waitForFunction((s) => document.querySelector('#status').dataset.state === s, state, { timeout });

async function startBroker(args = []) {
  const b = await new Broker(args).start();
  brokers.push(b);
  return b;
}

// ---- scenarios ----

async function chat() {
  const b = await startBroker();
  const url = (n) => `${b.http}/widgets/chat.html?room=t1&name=${n}`;
  const ann = await open('ann', url('ann'));
  await status(ann, 'connected');
  const bob = await open('bob', url('bob'));
  await status(bob, 'connected');
  for (const [p, other] of [[ann, 'bob'], [bob, 'ann']]) {
    await p.waitForFunction((o) => [...document.querySelectorAll('#members li')].some((li) => li.dataset.name === o),
      other);
    await p.waitForFunction(() => document.querySelector('#count').textContent === '2');
  }
  check(true, 'both see each other in the members list, count 2');
  await ann.waitForFunction(() => /bob joined/.test(document.querySelector('#messages').textContent));
  check(true, 'ann sees "bob joined"');

  // Typing: appears on bob's page, then clears by itself (no message sent).
  await ann.type('#text', 'hel');
  await bob.waitForFunction(() => document.querySelector('#typing').textContent === 'ann is typing…', null,
    { timeout: 10000 });
  check(true, 'bob sees "ann is typing…"');
  const t0 = Date.now();
  await bob.waitForFunction(() => document.querySelector('#typing').textContent === '', null, { timeout: 15000 });
  summary.timings.typing_cleared_ms = Date.now() - t0;
  check(true, 'the typing indicator clears by itself');

  // Messages both ways, own ones highlighted.
  await ann.fill('#text', 'hello bob');
  await ann.press('#text', 'Enter');
  await bob.fill('#text', 'hi ann');
  await bob.press('#text', 'Enter');
  for (const p of [ann, bob]) {
    await p.waitForFunction(() => document.querySelectorAll('#messages li.msg').length === 2);
  }
  const rows = async (p) => p.$$eval('#messages li.msg', (lis) => lis.map((li) => ({
    who: li.querySelector('.who').textContent, text: li.querySelector('.text').textContent,
    mine: li.classList.contains('mine'), time: li.querySelector('.time').textContent })));
  const ra = await rows(ann);
  const rb = await rows(bob);
  check(ra.map((r) => r.text).join('|') === 'hello bob|hi ann' && rb.map((r) => r.text).join('|') === 'hello bob|hi ann',
    'both pages show both messages once, in order');
  check(ra[0].mine && !ra[1].mine && !rb[0].mine && rb[1].mine, 'own messages are highlighted, others not');
  check(/^\d\d:\d\d:\d\d$/.test(ra[0].time), 'messages have timestamps');

  // A reply and a reaction.
  await bob.hover('#messages li[data-offset="1"]');
  await bob.click('#messages li[data-offset="1"] button.reply');
  await bob.fill('#text', 'replying');
  await bob.press('#text', 'Enter');
  await ann.waitForFunction(() => {
    const last = [...document.querySelectorAll('#messages li.msg')].pop();
    return last && /hello bob/.test(last.querySelector('.quote')?.textContent || '');
  });
  check(true, 'a reply shows the message it answers');
  await ann.hover('#messages li[data-offset="1"]');
  await ann.click('#messages li[data-offset="1"] button.react');
  await bob.waitForFunction(() => document.querySelector('#messages li[data-offset="1"] .reactions').textContent === '👍');
  check(true, 'a reaction appears under its message');

  // History on open: a third page sees the conversation.
  const cat = await open('cat', url('cat'));
  await cat.waitForFunction(() => document.querySelectorAll('#messages li.msg').length === 3);
  check(true, 'a page opened later gets the history');
}

async function dm() {
  const b = await startBroker(['--hmac-secret', SECRET]);
  const url = (n) => `${b.http}/widgets/chat.html?room=t2&token=${mintToken(n, 3600, SECRET)}`;
  const ann = await open('ann', url('ann'));
  const bob = await open('bob', url('bob'));
  const cat = await open('cat', url('cat'));
  for (const p of [ann, bob, cat]) {
    await status(p, 'connected');
    await p.waitForFunction(() => document.querySelector('#count').textContent === '3');
  }
  await ann.click('#members li[data-key="bob"]');
  await ann.waitForSelector('#dm:not(.hidden)');
  await ann.fill('#dm-text', 'psst, bob');
  await ann.press('#dm-text', 'Enter');
  await bob.waitForFunction(() => /psst, bob/.test(document.querySelector('#dm-messages').textContent));
  check(true, 'the private message reaches its peer');
  await bob.fill('#dm-text', 'got it');
  await bob.press('#dm-text', 'Enter');
  await ann.waitForFunction(() => /got it/.test(document.querySelector('#dm-messages').textContent));
  check(true, 'and the answer comes back');
  await cat.waitForTimeout(500);
  const leaked = await cat.evaluate(() => /psst|got it/.test(document.body.textContent));
  check(!leaked && await cat.isHidden('#dm'), 'the third member sees nothing of it');
  // The channel itself refuses the third user.
  const refused = await cat.evaluate(async () => {
    const { Herald } = await import('/herald.js');
    const token = new URLSearchParams(location.search).get('token');
    const c = new Herald('ws://' + location.host + '/ws', { token });
    await c.connect();
    const s = c.subscribe('dm:ann,bob');
    try { await s.ready; return 'subscribed'; } catch (e) { return e.code; } finally { c.disconnect(); }
  });
  check(refused === 114, 'subscribing to dm:ann,bob as cat is refused (114), got ' + refused);
}

async function scoreboard() {
  const b = await startBroker();
  const op = await open('operator', `${b.http}/widgets/scoreboard.html?game=g1&mode=operator&home=Lakers&away=Celtics`);
  await status(op, 'connected');
  await op.waitForFunction(() => document.querySelector('#name-home').textContent === 'Lakers');
  const viewers = [];
  for (let i = 0; i < 2; i++) {
    const v = await open('viewer' + i, `${b.http}/widgets/scoreboard.html?game=g1`);
    await status(v, 'connected');
    await v.waitForFunction(() => document.querySelector('#name-away').textContent === 'Celtics');
    viewers.push(v);
  }
  check(await viewers[0].isHidden('button[data-points="3"]'), 'viewers have no buttons');
  // Timed inside the pages (one browser, one clock): from the operator's click
  // to the viewer's score changing in its DOM, so that the time the test
  // harness takes to click and to look does not count.
  await op.evaluate(`window.clicks = []; document.addEventListener('click',
    () => window.clicks.push(performance.timeOrigin + performance.now()), true)`);
  for (const v of viewers) {
    await v.evaluate(`window.seen = [];
      for (const id of ['score-home', 'score-away']) {
        new MutationObserver(() => window.seen.push([id, document.getElementById(id).textContent,
          performance.timeOrigin + performance.now()])).observe(document.getElementById(id),
          { childList: true, characterData: true, subtree: true });
      }`);
  }
  const clicks = [['home', 3, 3, 0], ['away', 2, 3, 2], ['home', 1, 4, 2], ['away', 3, 4, 5], ['home', 2, 6, 5]];
  const lags = [];
  for (const [team, pts, home, away] of clicks) {
    await op.click(`button[data-team="${team}"][data-points="${pts}"]`);
    const clickedAt = await op.evaluate('window.clicks[window.clicks.length - 1]');
    const [id, want] = team === 'home' ? ['score-home', home] : ['score-away', away];
    for (const v of viewers) {
      await v.waitForFunction(([h, a]) => document.querySelector('#score-home').textContent === String(h) &&
        document.querySelector('#score-away').textContent === String(a), [home, away], { timeout: 5000 });
      const at = await v.evaluate(([i, w]) => (window.seen.find((s) => s[0] === i && s[1] === String(w)) || [])[2],
        [id, want]);
      lags.push(Math.round(at - clickedAt));
    }
  }
  const worst = Math.max(...lags);
  summary.timings.viewer_follow_ms = lags;
  check(worst < 1000, `viewers follow the operator within a second (click to the viewer's DOM; worst ${worst} ms)`);
  await op.click('#reset');
  for (const v of viewers) {
    await v.waitForFunction(() => document.querySelector('#score-home').textContent === '0' &&
      document.querySelector('#score-away').textContent === '0', null, { timeout: 1000 });
  }
  check(true, 'reset reaches every viewer');
}

async function seats() {
  const b = await startBroker();
  const seatsDef = [];
  for (const s of ['A', 'B']) for (let n = 1; n <= 4; n++) seatsDef.push({ id: s + n, section: s });
  const r = await b.rest('PUT', '/api/events/e1/seats', { seats: seatsDef });
  check(r.status === 200, 'the seat map is defined over REST');
  const url = (n) => `${b.http}/widgets/seats.html?event=e1&name=${n}&ttl=3`;
  const ann = await open('ann', url('ann'));
  const bob = await open('bob', url('bob'));
  for (const p of [ann, bob]) {
    await status(p, 'connected');
    await p.waitForFunction(() => document.querySelectorAll('.seat[data-seat]').length === 8);
  }
  await ann.click('#seat-A1');
  await ann.click('#seat-A2');
  const t0 = Date.now();
  await ann.click('#hold');
  await bob.waitForFunction(() => document.querySelector('#seat-A1').dataset.status === 'held' &&
    document.querySelector('#seat-A2').dataset.status === 'held', null, { timeout: 2000 });
  summary.timings.hold_seen_ms = Date.now() - t0;
  check(true, 'seats held in one browser show unavailable in the other');
  await ann.waitForFunction(() => document.querySelector('#seat-A1').dataset.status === 'mine');
  await ann.waitForFunction(() => /left$/.test(document.querySelector('#countdown').textContent));
  check(true, 'the holder sees them as theirs, with a countdown');

  // A held seat cannot be selected; bob holds a free one meanwhile. (The
  // race for one seat is tests/js/client.test.js's.)
  await bob.click('#seat-A2');
  check(!(await bob.evaluate(() => document.querySelector('#seat-A2').classList.contains('selected'))),
    'a held seat cannot be selected');
  await bob.click('#seat-A3');
  await bob.click('#hold');
  await bob.waitForFunction(() => document.querySelector('#seat-A3').dataset.status === 'mine');
  check(true, 'another seat can be held by the other user');

  // The holds expire by themselves (ttl 3 s): A1 frees in both browsers.
  await bob.waitForFunction(() => document.querySelector('#seat-A1').dataset.status === 'free', null, { timeout: 8000 });
  await ann.waitForFunction(() => document.querySelector('#seat-A1').dataset.status === 'free', null, { timeout: 2000 });
  summary.timings.hold_expired_after_ms = Date.now() - t0;
  check(true, 'the seat frees in both browsers after the hold expires');
}

async function statusScenario() {
  const b = await startBroker();
  const port = b.port;
  const v = await open('viewer', `${b.http}/widgets/scoreboard.html?game=g2`);
  await status(v, 'connected');
  check(true, 'the indicator shows connected');
  const chat = await open('chat', `${b.http}/widgets/chat.html?room=t3&name=ann`);
  await status(chat, 'connected');
  for (const text of ['one', 'two']) await b.rest('POST', '/api/publish', { channel: 'chat:t3', data: { name: 'bob', text } });
  await chat.waitForFunction(() => document.querySelectorAll('#messages li.msg').length === 2);
  const t0 = Date.now();
  const code = await b.stop();
  check(code === 0, 'the broker stopped cleanly');
  await status(v, 'disconnected', 5000);
  summary.timings.disconnected_shown_ms = Date.now() - t0;
  check(true, 'the indicator shows disconnected while the broker is down');
  await v.waitForTimeout(1500);
  check(await v.evaluate(() => document.querySelector('#status').dataset.state) !== 'connected', 'and stays so');
  await b.start(port);
  const t1 = Date.now();
  await status(v, 'connected', 25000);
  summary.timings.reconnected_ms = Date.now() - t1;
  check(true, 'it shows connected again after the broker is back');
  await b.rest('POST', '/api/publish', { channel: 'chat:t3', data: { name: 'bob', text: 'three' } });
  await status(chat, 'connected', 25000);
  await chat.waitForFunction(() => document.querySelectorAll('#messages li.msg').length >= 3);
  await chat.waitForTimeout(300);
  const texts = await chat.$$eval('#messages li.msg .text', (els) => els.map((e) => e.textContent));
  check(texts.join(',') === 'one,two,three', 'the chat reconnected by itself and shows nothing twice: ' + texts.join(','));
  const r = await b.rest('POST', '/api/scoreboards/g2/score', { team: 'home', points: 2 });
  check(r.status === 200, 'the backend scores over REST');
  await v.waitForFunction(() => document.querySelector('#score-home').textContent === '2', null, { timeout: 2000 });
  check(true, 'and the page follows the live state again');
}

// The order-tracking page (SSE): the timeline from history, live steps, a
// broker restart while a status is published, and a stranger's token.
async function orderScenario() {
  const b = await startBroker(['--hmac-secret', SECRET, '--commerce', 'on', '--rest-per-minute', '0',
    '--sse-retry', '1500ms']);
  const port = b.port;
  const move = async (status, tracking) => {
    const r = await b.rest('POST', '/api/commerce/orders/o-7/status', tracking ? { status, tracking } : { status });
    if (r.status !== 200) throw new Error(`moving o-7 to ${status}: ${r.status} ${r.text}`);
  };
  const statuses = (p) => p.$$eval('#timeline li', (lis) => lis.map((li) => li.dataset.status));
  const timelineIs = (p, want, timeout = 20000) => p.waitForFunction((w) =>
    [...document.querySelectorAll('#timeline li')].map((li) => li.dataset.status).join(',') === w,
    want.join(','), { timeout });
  let r = await b.rest('PUT', '/api/commerce/stock', { stock: { MUG: 5 } });
  check(r.status === 200, 'stock is set over REST');
  r = await b.rest('POST', '/api/commerce/orders', { id: 'o-7', owner: 'alice', lines: [{ sku: 'MUG', qty: 2 }] });
  check(r.status === 200, 'alice\'s order is created over REST');
  await move('PAID');

  const alice = await open('alice', `${b.http}/widgets/order.html?order=o-7&token=${mintToken('alice', 3600, SECRET)}`);
  await status(alice, 'live');
  await timelineIs(alice, ['PENDING', 'PAID']);
  check(true, 'the page opens live with the timeline so far (PENDING, PAID) from history');
  check(await alice.textContent('#lines') === '2 × MUG', 'it shows the order\'s lines');

  const steps = ['PENDING', 'PAID'];
  for (const s of ['PROCESSING', 'PICKING']) {
    const t0 = Date.now();
    await move(s);
    steps.push(s);
    await timelineIs(alice, steps, 5000);
    summary.timings['step_' + s + '_ms'] = Date.now() - t0;
  }
  check(await alice.$eval('#current', (e) => e.dataset.status) === 'PICKING', 'the current status follows live');
  const stepper = () => alice.$$eval('#stepper li', (lis) => lis.map((li) =>
    `${li.dataset.step}:${li.classList.contains('done') ? 'd' : ''}${li.classList.contains('current') ? 'c' : ''}`));
  check((await stepper()).join(' ') ===
    'PENDING:d PAID:d PROCESSING:d PICKING:c PACKED: SHIPPED: DELIVERED:', 'the stepper marks done and current steps');

  // The broker stops; a status is published while the page is away.
  const code = await b.stop();
  check(code === 0, 'the broker stopped cleanly');
  await status(alice, 'reconnecting', 8000);
  check(true, 'the indicator shows reconnecting while the broker is down');
  await b.start(port);
  await move('PACKED');
  await move('SHIPPED', { carrier: 'DHL', tracking_number: 'JD0001', eta: '2026-12-05' });
  steps.push('PACKED', 'SHIPPED');
  const t1 = Date.now();
  await status(alice, 'live', 25000);
  await timelineIs(alice, steps, 10000);
  summary.timings.resumed_ms = Date.now() - t1;
  check(true, 'after the restart it is live again and the steps published meanwhile arrive once each');
  check(await alice.textContent('#carrier') === 'DHL' && await alice.textContent('#tracking-number') === 'JD0001' &&
    await alice.textContent('#eta') === '2026-12-05', 'the shipment shows carrier, tracking number and ETA');
  await move('DELIVERED');
  steps.push('DELIVERED');
  await timelineIs(alice, steps, 5000);
  await alice.waitForTimeout(500);
  const got = await statuses(alice);
  check(got.join(',') === steps.join(',') && new Set(got).size === got.length,
    'the timeline has every step exactly once, in order: ' + got.join(','));
  check((await stepper()).every((s) => s.includes(':d')), 'every step of the stepper is done');

  // A side state: a refund after delivery shows as a badge.
  await move('REFUNDED');
  await alice.waitForFunction(() => document.querySelector('#side').textContent === 'Refunded', null, { timeout: 5000 });
  check(true, 'a side state (REFUNDED) shows as a badge');

  // Another user's token: a clear "not allowed", no timeline.
  const bob = await open('bob', `${b.http}/widgets/order.html?order=o-7&owner=alice&token=${mintToken('bob', 3600, SECRET)}`);
  await status(bob, 'denied');
  const box = await bob.textContent('#denied');
  check(/Not allowed/.test(box) && await bob.$eval('#denied', (e) => e.dataset.code) === '114' &&
    await bob.$eval('#order', (e) => e.classList.contains('hidden')),
  'bob\'s token on alice\'s order shows "not allowed" (114) and no timeline');
  check((await statuses(bob)).length === 0, 'bob\'s page shows none of the order');

  // A timeline the history no longer covers (history_size 2): a notice, and
  // what is kept, once each; still live.
  const b2 = await startBroker(['--hmac-secret', SECRET, '--commerce', 'on', '--rest-per-minute', '0',
    '--ns', 'orders.history_size=2']);
  await b2.rest('PUT', '/api/commerce/stock', { stock: { MUG: 5 } });
  r = await b2.rest('POST', '/api/commerce/orders', { id: 'o-8', owner: 'cat', lines: [{ sku: 'MUG', qty: 1 }] });
  check(r.status === 200, 'a second broker keeps 2 publications per order channel');
  for (const st of ['PAID', 'PROCESSING', 'PICKING']) {
    r = await b2.rest('POST', '/api/commerce/orders/o-8/status', { status: st });
    if (r.status !== 200) throw new Error(`moving o-8 to ${st}: ${r.status} ${r.text}`);
  }
  const cat = await open('cat', `${b2.http}/widgets/order.html?order=o-8&token=${mintToken('cat', 3600, SECRET)}`);
  await status(cat, 'live');
  await cat.waitForFunction(() => !document.querySelector('#notice').classList.contains('hidden') &&
    /could not be recovered/.test(document.querySelector('#notice').textContent));
  await timelineIs(cat, ['PROCESSING', 'PICKING'], 5000);
  check(await cat.$eval('#current', (e) => e.dataset.status) === 'PICKING',
    'an order whose early steps history no longer keeps: a notice, the kept steps once each, the right status');
  r = await b2.rest('POST', '/api/commerce/orders/o-8/status', { status: 'REFUNDED' });
  check(r.status === 200, 'o-8 is refunded over REST');
  await timelineIs(cat, ['PROCESSING', 'PICKING', 'REFUNDED'], 5000);
  check(await cat.$eval('#stepper', (e) => e.classList.contains('ended')) &&
    await cat.textContent('#side') === 'Refunded', 'and it goes on live: REFUNDED ends the stepper with a badge');
}

const scenarios = { chat, dm, scoreboard, seats, status: statusScenario, order: orderScenario };
if (!scenarios[scenario]) {
  process.stderr.write('usage: widgets_check.mjs chat|dm|scoreboard|seats|status|order TIMEOUT_MS\n');
  process.exit(2);
}
scenarios[scenario]().then(() => finish(null), (err) => finish(err));
