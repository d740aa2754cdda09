#!/usr/bin/env node
// tests/browser/widgets_bench.mjs - the numbers of docs/benchmarks.md for
// herald.js in a browser (not part of the test suite):
//   memory  JS heap per subscription: one page subscribes to N channels
//   render  how many publications per second a widget page renders without
//           falling behind: a publisher page sends at a rate, the widget page
//           records the delay from send to DOM, per step
//   raw     the same with a page that only subscribes (herald.js, no DOM)
// Usage: node widgets_bench.mjs memory|render|raw [N or RATES]
// Env: HERALD_BIN, CHROMIUM. Starts its own broker (tests/js/broker.js).
import pw from 'playwright-core';
import { Broker } from '../js/broker.js';

const { chromium } = pw;
const [what, arg] = process.argv.slice(2);
const b = await new Broker().start();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--js-flags=--expose-gc', '--enable-precise-memory-info'],
});

async function page(url) {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  p.setDefaultTimeout(120000);
  await p.goto(url);
  return p;
}

async function memory(n) {
  const p = await page(b.http + '/widgets/index.html');
  const r = await p.evaluate(async (n) => {
    const { Herald } = await import('/herald.js');
    const heap = async () => {
      for (let i = 0; i < 3; i++) { window.gc(); await new Promise((r) => setTimeout(r, 50)); }
      return performance.memory.usedJSHeapSize;
    };
    const c = new Herald('ws://' + location.host + '/ws');
    await c.connect();
    window.keep = c;
    const h0 = await heap();
    const subs = [];
    for (let i = 0; i < n; i++) subs.push(c.subscribe('mem:c' + i));
    await Promise.all(subs.map((s) => s.ready));
    const h1 = await heap();
    return { n, before: h0, after: h1, per_sub: Math.round((h1 - h0) / n) };
  }, n);
  console.log(JSON.stringify({ memory: r }));
}

// @raw: a page with herald.js only (no DOM), to tell the client's and the
// broker's share of the delay from the widget's rendering.
async function render(rates, raw) {
  for (const rate of rates) {
    const room = (raw ? 'raw' : 'bench') + rate;
    const view = await page(raw ? `${b.http}/widgets/index.html` : `${b.http}/widgets/chat.html?room=${room}&name=viewer`);
    if (raw) {
      await view.evaluate(async (room) => {
        window.lags = [];
        const { Herald } = await import('/herald.js');
        const c = new Herald('ws://' + location.host + '/ws');
        await c.connect();
        const sub = c.subscribe('chat:' + room);
        sub.on('publication', (p) => window.lags.push(performance.timeOrigin + performance.now() - Number(p.data.text)));
        await sub.ready;
      }, room);
    } else {
      await view.waitForFunction(() => document.querySelector('#status').dataset.state === 'connected');
      await view.evaluate(() => {
        window.lags = [];
        new MutationObserver((ms) => {
          const now = performance.timeOrigin + performance.now();
          for (const m of ms) for (const n of m.addedNodes) {
            const t = n.querySelector && n.querySelector('.text');
            if (t) window.lags.push(now - Number(t.textContent));
          }
        }).observe(document.querySelector('#messages'), { childList: true });
      });
    }
    const pub = await page(b.http + '/widgets/index.html');
    const seconds = 3;
    const sent = await pub.evaluate(async ({ room, rate, seconds }) => {
      const { Herald } = await import('/herald.js');
      const c = new Herald('ws://' + location.host + '/ws', { requestTimeout: 60000 });
      await c.connect();
      const total = rate * seconds;
      const t0 = performance.now();
      let sent = 0;
      const pending = [];
      while (sent < total) {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
        while (sent < due) {
          pending.push(c.publish('chat:' + room, { name: 'pub', text: String(performance.timeOrigin + performance.now()) }));
          sent++;
        }
        await new Promise((r) => setTimeout(r, 4));
      }
      await Promise.all(pending);
      return sent;
    }, { room, rate, seconds });
    await view.waitForFunction((n) => window.lags.length >= n, sent, { timeout: 60000 }).catch(() => {});
    const s = await view.evaluate(() => window.lags.slice().sort((a, c) => a - c));
    const q = (f) => Math.round(s[Math.min(s.length - 1, Math.floor(f * s.length))]);
    // Falling behind: the last tenth arrives much later than the first tenth.
    const firstTenth = await view.evaluate(() => { const a = window.lags.slice(0, Math.ceil(window.lags.length / 10)); return a.reduce((x, y) => x + y, 0) / a.length; });
    const lastTenth = await view.evaluate(() => { const a = window.lags.slice(-Math.ceil(window.lags.length / 10)); return a.reduce((x, y) => x + y, 0) / a.length; });
    console.log(JSON.stringify({ [raw ? 'raw' : 'render']: { rate, sent, rendered: s.length, p50_ms: q(0.5), p99_ms: q(0.99),
      first_tenth_ms: Math.round(firstTenth), last_tenth_ms: Math.round(lastTenth) } }));
    await view.context().close();
    await pub.context().close();
  }
}

try {
  if (what === 'memory') await memory(Number(arg || 1000));
  else await render((arg || '100,500,1000,2000').split(',').map(Number), what === 'raw');
} finally {
  await browser.close();
  await b.stop();
}
