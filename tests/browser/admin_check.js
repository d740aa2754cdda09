#!/usr/bin/env node
// tests/browser/admin_check.js - check Herald's admin page in a real browser.
//
// Usage: node admin_check.js URL TIMEOUT_MS [MIN_CONNECTIONS] [CHANNEL] [WEBHOOKS]
//   URL              the page, e.g. http://127.0.0.1:8080/admin, with #key=... when the
//                    broker needs an admin API key
//   TIMEOUT_MS       hard limit for the whole run, browser start included
//   MIN_CONNECTIONS  #conn-total must reach at least this (default 1: the page itself)
//   CHANNEL          a channel #top-subscribers must list (default: not checked; "" to skip)
//   WEBHOOKS         JSON {"NAME": {"state": "ok"|"failing", "error": "substring of its last error"}}:
//                    the #webhooks table must show each NAME in that state, with numbers in its
//                    Queued and Dead letters cells, a lag, and (when "error" is given) that
//                    error; the error is "–" for a webhook expected ok without one (default: not checked)
// Env: SCREENSHOT=path.png saves a screenshot of the page at the end (pass or fail).
//
// Drives Debian's chromium (/usr/bin/chromium) with playwright-core: no browser download.
// Prints one line of JSON and exits 0 when every check passed, 1 otherwise.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHANGE_WAIT_MS = 2500;

const [url, timeoutArg, minArg, channel, hooksArg] = process.argv.slice(2);
const timeoutMs = Number(timeoutArg);
const minConn = minArg === undefined ? 1 : Number(minArg);
let hooks = null;
try {
  hooks = hooksArg ? JSON.parse(hooksArg) : null;
} catch (e) {
  hooks = undefined;
}
if (!url || !(timeoutMs > 0) || !(minConn >= 0) || hooks === undefined) {
  process.stderr.write('usage: admin_check.js URL TIMEOUT_MS [MIN_CONNECTIONS] [CHANNEL] [WEBHOOKS]\n');
  process.exit(2);
}

const started = Date.now();
const summary = {
  ok: false,
  url: url.replace(/([#&]key=)[^&]*/, '$1<redacted>'),  // never print the API key
  status: null,
  conn_total: null,
  last_update: [],
  top_subscribers: [],
  channel: channel || null,
  webhooks: [],
  navigations: null,
  console_errors: [],
  page_errors: [],
  failed_requests: [],
  screenshot: process.env.SCREENSHOT || null,
  elapsed_ms: 0,
  error: null,
};

let context = null;
let userDataDir = null;
let finished = false;

function remaining() {
  return Math.max(1, timeoutMs - (Date.now() - started) - 1500);  // keep time to clean up
}

async function cleanup() {
  if (context) {
    const c = context;
    context = null;
    await Promise.race([c.close().catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
  }
  if (userDataDir) {
    try { fs.rmSync(userDataDir, { recursive: true, force: true }); } catch (e) { /* best effort */ }
  }
}

async function finish(err) {
  if (finished) return;
  finished = true;
  if (err) summary.error = String(err && err.message ? err.message : err).split('\n')[0];
  summary.ok = !summary.error;
  summary.elapsed_ms = Date.now() - started;
  await cleanup();
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(summary.ok ? 0 : 1);
}

// The hard limit: whatever hangs (browser start, page, CDP), the run ends in time.
setTimeout(() => {
  finish(new Error('overall timeout of ' + timeoutMs + ' ms reached'));
  setTimeout(() => process.exit(1), 4000).unref();
}, timeoutMs).unref();

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function main() {
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-admin-check-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    timeout: remaining(),
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(remaining());

  page.on('console', (m) => {
    if (m.type() === 'error') summary.console_errors.push(m.text());
  });
  page.on('pageerror', (e) => summary.page_errors.push(String(e && e.message ? e.message : e)));
  page.on('requestfailed', (r) => {
    summary.failed_requests.push(r.url().replace(/([#&]key=)[^&]*/, '$1<redacted>') + ' ' +
                                 (r.failure() ? r.failure().errorText : ''));
  });
  // Full loads of the document: a reload or a navigation away would add one.
  let loads = 0;
  page.on('load', () => { loads++; });

  const resp = await page.goto(url, { waitUntil: 'load', timeout: remaining() });
  check(resp && resp.ok(), 'GET ' + summary.url + ' answered ' + (resp ? resp.status() : 'nothing'));
  const ctype = resp.headers()['content-type'] || '';
  check(/^text\/html/.test(ctype), 'Content-Type is ' + JSON.stringify(ctype));

  await page.waitForFunction(() => {
    const s = document.querySelector('#status');
    return s && s.textContent.trim() === 'live';
  }, null, { timeout: remaining() });
  summary.status = 'live';

  // A marker in the page's JS world: it survives only if the document is never reloaded.
  await page.evaluate(() => { window.__heraldCheckMarker = 'kept'; });
  const loadsBefore = loads;

  // The stats that made the page live may predate the last connections by a second.
  const minDeadline = Date.now() + Math.min(5000, remaining());
  for (;;) {
    const text = (await page.textContent('#conn-total')).trim();
    summary.conn_total = /^[0-9][0-9,]*$/.test(text) ? Number(text.replace(/,/g, '')) : text;
    if (typeof summary.conn_total === 'number' && summary.conn_total >= minConn) break;
    check(Date.now() < minDeadline, '#conn-total shows ' + JSON.stringify(text) + ', expected a number >= ' + minConn);
    await page.waitForTimeout(250);
  }

  const before = (await page.textContent('#last-update')).trim();
  summary.last_update.push(before);
  await page.waitForTimeout(CHANGE_WAIT_MS);
  const after = (await page.textContent('#last-update')).trim();
  summary.last_update.push(after);
  check(after !== before, '#last-update did not change in ' + CHANGE_WAIT_MS + ' ms (' + JSON.stringify(after) + ')');
  const marker = await page.evaluate(() => window.__heraldCheckMarker);
  summary.navigations = loads - loadsBefore;
  check(marker === 'kept' && loads === loadsBefore, 'the page was reloaded or navigated away');
  const status = (await page.textContent('#status')).trim();
  check(status === 'live', '#status is ' + JSON.stringify(status) + ' after the wait');

  if (channel) {
    const chDeadline = Date.now() + Math.min(5000, remaining());
    for (;;) {
      summary.top_subscribers = await page.$$eval('#top-subscribers tbody tr td:first-child',
                                                   (tds) => tds.map((td) => td.textContent.trim()));
      if (summary.top_subscribers.includes(channel)) break;
      check(Date.now() < chDeadline, '#top-subscribers does not list ' + JSON.stringify(channel));
      await page.waitForTimeout(250);
    }
  }

  if (hooks) {
    // The rows come with the next sample (once a second); a failing webhook
    // may need a few posts before it shows failing.
    const whDeadline = Date.now() + Math.min(10000, remaining());
    for (;;) {
      summary.webhooks = await page.$$eval('#webhooks tbody tr', (trs) => trs.map((tr) => {
        const td = Array.from(tr.querySelectorAll('td')).map((c) => c.textContent.trim());
        const st = tr.querySelector('td.wh-state');
        return { name: tr.dataset.webhook || null, state: st ? st.dataset.state : null, state_text: td[1],
                 queued: td[2], lag: td[3], dead: td[4], error: td[5] };
      }));
      const problems = [];
      for (const [name, want] of Object.entries(hooks)) {
        const row = summary.webhooks.find((r) => r.name === name);
        if (!row) { problems.push('no row for ' + name); continue; }
        if (row.state !== want.state) problems.push(name + ' is ' + row.state + ', expected ' + want.state);
        if (!/^[0-9][0-9,]*$/.test(row.queued)) problems.push(name + ' queued ' + JSON.stringify(row.queued));
        if (!/^[0-9][0-9,]*$/.test(row.dead)) problems.push(name + ' dead letters ' + JSON.stringify(row.dead));
        if (!/^[0-9].*(ms|s)$|^[0-9]+[dhm] /.test(row.lag)) problems.push(name + ' lag ' + JSON.stringify(row.lag));
        if (want.error && !row.error.includes(want.error)) {
          problems.push(name + ' last error ' + JSON.stringify(row.error) + ' lacks ' + JSON.stringify(want.error));
        }
        if (!want.error && want.state === 'ok' && row.error !== '–') {
          problems.push(name + ' shows an error: ' + JSON.stringify(row.error));
        }
      }
      if (!problems.length) break;
      check(Date.now() < whDeadline, '#webhooks: ' + problems.join('; '));
      await page.waitForTimeout(250);
    }
  }

  const login = await page.isVisible('#login');
  check(!login, '#login is visible although the page is live');

  if (summary.screenshot) await page.screenshot({ path: summary.screenshot, fullPage: true });
  check(summary.console_errors.length === 0, 'console errors: ' + summary.console_errors.join(' | '));
  check(summary.page_errors.length === 0, 'page errors: ' + summary.page_errors.join(' | '));
}

main().then(() => finish(null), async (err) => {
  // A screenshot of the failure helps more than one of success.
  if (summary.screenshot && context && !finished) {
    try {
      const page = context.pages()[0];
      if (page) await Promise.race([page.screenshot({ path: summary.screenshot, fullPage: true }),
                                    new Promise((r) => setTimeout(r, 3000))]);
    } catch (e) { /* the browser may be gone */ }
  }
  return finish(err);
});
