#!/usr/bin/env node
// tests/browser/sse_check.mjs - GET /api/sse read by a real EventSource (Chromium).
//
// Usage: node sse_check.mjs TIMEOUT_MS
// Env: HERALD_BIN, CHROMIUM (default /usr/bin/chromium).
//
// A page of the broker's own origin opens an EventSource on two channels and
// records every event. Three publications arrive live; then the broker is
// stopped (the stream ends), restarted on the same port and data directory,
// and three more publications are made before EventSource comes back (its
// retry: is 1.5 s). EventSource reconnects by itself with the Last-Event-ID
// header: the page must end with every publication exactly once, in order.
// Prints one line of JSON (ok, checks, error); exit 0 when ok.
import pw from 'playwright-core';
import { Broker, sleep, until } from '../js/broker.js';

const { chromium } = pw;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const timeoutMs = Number(process.argv[2] || 60000);
const summary = { ok: false, checks: [], page_errors: [], error: null };
let browser = null;
const broker = new Broker(['--sse-retry', '1500ms']);

function check(cond, msg) {
  if (!cond) throw new Error(msg + ' (failed)');
  summary.checks.push(msg);
}

async function publish(channel, data) {
  const r = await fetch(broker.http + '/api/publish', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ channel, data }),
  });
  if (r.status !== 200) throw new Error('publish: ' + r.status);
}

async function main() {
  await broker.start();
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: 20000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => summary.page_errors.push(String(e && e.message ? e.message : e)));
  await page.goto(broker.http + '/api/health');
  await page.evaluate(() => {
    window.got = [];
    window.opens = 0;
    window.unrecovered = 0;
    const es = new EventSource('/api/sse?channel=orders:1&channel=orders:2');
    es.onopen = () => { window.opens++; };
    es.addEventListener('pub', (e) => {
      const p = JSON.parse(e.data);
      window.got.push({ channel: p.channel, offset: p.offset, n: p.data.n, id: e.lastEventId });
    });
    es.addEventListener('unrecovered', () => { window.unrecovered++; });
    window.es = es;
  });
  await until(async () => (await page.evaluate(() => window.opens)) === 1, 5000, 'the stream opens');
  await sleep(200);
  for (let n = 0; n < 3; n++) await publish(n % 2 ? 'orders:2' : 'orders:1', { n });
  await until(async () => (await page.evaluate(() => window.got.length)) === 3, 5000, 'three live events');
  check(true, 'three publications arrive live');

  const port = broker.port;
  await broker.stop();
  await broker.start(port);
  for (let n = 3; n < 6; n++) await publish(n % 2 ? 'orders:2' : 'orders:1', { n });
  const away = await page.evaluate(() => window.got.length);
  check(away === 3, 'nothing arrives while EventSource waits to reconnect');
  await until(async () => (await page.evaluate(() => window.opens)) === 2, 10000, 'EventSource reconnects');
  await until(async () => (await page.evaluate(() => window.got.length)) >= 6, 5000, 'the missed events');
  await publish('orders:1', { n: 6 });
  await until(async () => (await page.evaluate(() => window.got.length)) >= 7, 5000, 'a live event after the resume');
  await sleep(300);
  const got = await page.evaluate(() => window.got);
  // Each channel's replay comes on its own, so order holds per channel, not across them.
  const ns = got.map((g) => g.n);
  check(JSON.stringify([...ns].sort((a, b) => a - b)) === JSON.stringify([0, 1, 2, 3, 4, 5, 6]),
    'every publication exactly once: ' + JSON.stringify(ns));
  for (const ch of ['orders:1', 'orders:2']) {
    const offs = got.filter((g) => g.channel === ch).map((g) => g.offset);
    check(offs.every((o, i) => o === i + 1), ch + ': offsets 1.. in order: ' + JSON.stringify(offs));
  }
  check(got[got.length - 1].id.split(',').length === 2, 'the id names both channels: ' + got[got.length - 1].id);
  check((await page.evaluate(() => window.unrecovered)) === 0, 'the resume was complete (no unrecovered)');
  await page.evaluate(() => window.es.close());
}

const timer = setTimeout(() => { summary.error = 'timed out'; done(); }, timeoutMs);

async function done() {
  clearTimeout(timer);
  if (browser) await browser.close().catch(() => {});
  const code = await broker.stop();
  if (code !== 0 && !summary.error) summary.error = 'herald exited with ' + code;
  summary.ok = !summary.error && summary.page_errors.length === 0;
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(summary.ok ? 0 : 1);
}

main().then(done, (e) => { summary.error = String(e && e.message ? e.message : e); done(); });
