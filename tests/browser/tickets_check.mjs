#!/usr/bin/env node
// tests/browser/tickets_check.mjs - the support-tickets widget
// (/widgets/tickets.html) in a real browser.
//
// Usage: node tickets_check.mjs TIMEOUT_MS
// Env: HERALD_BIN (the broker, started here with [adapter tickets] on, on a
//      free port with a fresh data directory), ARTIFACTS (a directory for the
//      screenshots), CHROMIUM (default /usr/bin/chromium).
//
// Two agents open the dashboard (one browser context each); one creates a
// ticket with the form, both see it; filter and search narrow the list; a
// status button moves a ticket; a bulk update closes several; a refused bulk
// update names the ticket it refused; a change made over REST by another
// client (the backend) appears on both pages without a reload. Prints one
// line of JSON (ok, checks, timings, page errors, the broker's exit status);
// exit 0 when ok.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pw from 'playwright-core';
import { Broker } from '../js/broker.js';

const { chromium } = pw;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS || os.tmpdir();
const timeoutMs = Number(process.argv[2] || 60000);
const started = Date.now();
const summary = { ok: false, scenario: 'tickets', checks: [], timings: {}, console_errors: [], page_errors: [],
  broker_exit: null, screenshots: [], error: null, elapsed_ms: 0 };
const pages = [];
let browser = null;
let broker = null;
let finished = false;

function check(cond, msg) {
  if (!cond) throw new Error(msg);
  summary.checks.push(msg);
}

async function finish(err) {
  if (finished) return;
  finished = true;
  if (err) summary.error = String(err && err.message ? err.message : err).split('\n').slice(0, 3).join(' ');
  for (const { page, name } of pages) {
    const file = path.join(ARTIFACTS, `widgets-tickets-${name}.png`);
    try {
      await Promise.race([page.screenshot({ path: file, fullPage: true }), new Promise((r) => setTimeout(r, 3000))]);
      if (fs.existsSync(file)) summary.screenshots.push(file);
    } catch (e) { /* the browser may be gone */ }
  }
  if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  if (broker) {
    summary.broker_exit = await broker.stop();
    if (summary.broker_exit !== 0 || /AddressSanitizer|runtime error:|LeakSanitizer/.test(broker.log)) {
      summary.error = summary.error || 'herald exited with ' + summary.broker_exit + ': ' + broker.log.slice(-1500);
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
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);   // generous: the suite shares a small machine
  page.on('console', (m) => {
    // The refused bulk update below is a 409 the page shows; the browser logs the failed fetch.
    if (m.type() === 'error' && !/status of 409/.test(m.text())) summary.console_errors.push(name + ': ' + m.text());
  });
  page.on('pageerror', (e) => summary.page_errors.push(name + ': ' + String(e && e.message ? e.message : e)));
  pages.push({ name, page });
  const resp = await page.goto(url, { waitUntil: 'load' });
  check(resp && resp.ok(), `${name}: GET ${new URL(url).pathname} answered ${resp ? resp.status() : 'nothing'}`);
  return page;
}

const ids = (page) => page.$$eval('#list tr', (trs) => trs.map((tr) => tr.dataset.id));
const statusOf = (page, id) => page.$eval('#ticket-' + id, (tr) => tr.dataset.status);
const waitStatus = (page, id, status, timeout = 20000) => page.waitForFunction(([i, s]) => {
  const tr = document.getElementById('ticket-' + i);
  return tr && tr.dataset.status === s;
}, [id, status], { timeout });

async function main() {
  broker = await new Broker(['--tickets', 'on', '--rest-per-minute', '0']).start();
  const b = broker;
  for (const [id, title, requester] of [['A-1', 'Cannot login', 'alice'], ['A-2', 'Printer jam', 'bob'],
    ['A-3', 'Login is slow', 'carol']]) {
    const r = await b.rest('POST', '/api/tickets', { id, title, requester });
    check(r.status === 200, `the backend creates ${id} over REST`);
  }
  const url = (n) => `${b.http}/widgets/tickets.html?name=${n}`;
  const ann = await open('ann', url('ann'));
  const bob = await open('bob', url('bob'));
  for (const p of [ann, bob]) {
    await p.waitForFunction(() => document.querySelector('#status').dataset.state === 'connected');
    await p.waitForFunction(() => document.querySelectorAll('#list tr').length === 3);
  }
  check(true, 'both agents see the three tickets');

  // Create with the form: both pages list it.
  await ann.fill('#new-title', 'VPN drops every hour');
  await ann.fill('#new-requester', 'dave');
  await ann.selectOption('#new-priority', 'urgent');
  await ann.fill('#new-description', 'since the login change');
  const t0 = Date.now();
  await ann.click('#create-button');
  await bob.waitForFunction(() => [...document.querySelectorAll('#list .ttitle')]
    .some((td) => td.textContent === 'VPN drops every hour'));
  summary.timings.create_seen_by_other_ms = Date.now() - t0;
  const created = await bob.$eval('#list tr', (tr) => tr.dataset.id);
  check(created === 'T000001', 'the new ticket (T000001, newest first) appears on the other agent\'s page: ' + created);
  check(await bob.$eval('#ticket-T000001', (tr) => tr.dataset.priority) === 'urgent', 'with its priority');
  await ann.waitForFunction(() => document.getElementById('ticket-T000001'));
  check(await ann.$eval('#new-title', (e) => e.value) === '', 'the form is cleared after the create');

  // Filter by status and search.
  await ann.selectOption('#filter', 'open');
  check((await ids(ann)).length === 4, 'status filter "open" shows the four open tickets');
  await ann.fill('#search', 'login');
  const found = (await ids(ann)).sort();
  check(found.join(',') === 'A-1,A-3,T000001', 'search "login" (title or description) finds A-1, A-3, T000001: ' + found);
  await ann.fill('#search', 'bob');
  check((await ids(ann)).join(',') === 'A-2', 'search by requester finds A-2');
  await ann.fill('#search', '');
  await ann.selectOption('#filter', '');

  // A status button: both pages follow.
  await ann.click('#ticket-A-1 button.move[data-to="in_progress"]');
  await waitStatus(bob, 'A-1', 'in_progress');
  check(true, 'the "Start" button moves A-1 to in progress, seen by the other agent');
  check(await ann.$$eval('#ticket-A-1 button.move', (bs) => bs.map((x) => x.dataset.to).join(',')) === 'open,closed',
    'in progress offers back-to-open and close only');
  await ann.click('#ticket-A-1 button.take');
  await bob.waitForFunction(() => document.querySelector('#ticket-A-1 .assignee').textContent === 'ann');
  check(true, '"Take" assigns A-1 to ann, seen by bob');
  await ann.selectOption('#filter', 'in_progress');
  check((await ids(ann)).join(',') === 'A-1', 'filter "in progress" shows A-1 alone');
  await ann.selectOption('#filter', '');

  // Bulk: close at once.
  await bob.check('#ticket-A-2 input.pick');
  await bob.check('#ticket-A-3 input.pick');
  check(await bob.$eval('#selected-count', (e) => e.textContent) === '2', 'two selected');
  await bob.selectOption('#bulk-status', 'closed');
  await bob.click('#bulk-apply');
  await waitStatus(ann, 'A-2', 'closed');
  await waitStatus(ann, 'A-3', 'closed');
  check(true, 'the bulk update closes A-2 and A-3, seen by the other agent');
  check(await bob.$eval('#selected-count', (e) => e.textContent) === '0', 'and clears the selection');

  // A refused bulk update names the offender and changes nothing.
  await bob.check('#ticket-A-2 input.pick');
  await bob.check('#ticket-T000001 input.pick');
  await bob.selectOption('#bulk-status', 'in_progress');
  await bob.click('#bulk-apply');
  await bob.waitForFunction(() => /A-2/.test(document.querySelector('#error').textContent));
  check(/refused/.test(await bob.$eval('#error', (e) => e.textContent)), 'a refused bulk update names A-2 (closed)');
  check(await statusOf(bob, 'T000001') === 'open', 'and T000001 was left as it was (all or none)');
  const r = await b.rest('GET', '/api/tickets/T000001');
  check(r.json.ticket.status === 'open', 'the broker agrees');

  // The backend changes a ticket over REST: both pages show it live.
  const t1 = Date.now();
  const moved = await b.rest('POST', '/api/tickets/A-3/status', { status: 'open', by: 'backend' });
  check(moved.status === 200, 'the backend reopens A-3 over REST');
  await waitStatus(ann, 'A-3', 'open', 5000);
  await waitStatus(bob, 'A-3', 'open', 5000);
  summary.timings.rest_change_seen_ms = Date.now() - t1;
  check(true, 'both pages show the REST change without a reload');
  await b.rest('POST', '/api/tickets/A-3/comments', { author: 'carol', text: 'still slow' });
  await ann.waitForFunction(() => document.querySelector('#ticket-A-3 .ncomments').textContent === '1');
  check(true, 'a comment made over REST updates the count live');
  check(/1 open|2 open|3 open/.test(await ann.$eval('#counts', (e) => e.textContent)), 'the counts follow');
}

main().then(() => finish(null), (err) => finish(err));
