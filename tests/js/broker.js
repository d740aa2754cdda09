// tests/js/broker.js - start and stop the real herald binary for the Node tests.
//
// HERALD_BIN names the binary (default <repo>/build/broker/herald). Each broker
// listens on 127.0.0.1 with --port 0 and reports its port in the log line
// "listening on ADDR port N"; it is stopped by its PID (SIGTERM, then SIGKILL).
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const HERALD_BIN = process.env.HERALD_BIN || path.join(REPO, 'build', 'broker', 'herald');
export const SECRET = 'node-test-secret-0123456789abcdef0123';

export function tmpDir(prefix = 'herald-js-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export class Broker {
  constructor(args = [], dataDir = null) {
    this.args = args;
    this.dataDir = dataDir || path.join(tmpDir(), 'data');
    this.port = null;
    this.proc = null;
    this.log = '';
  }

  // Starts the broker; with @port (a restart) it listens on that port again.
  start(port = 0, timeoutMs = 10000) {
    const args = ['--bind', '127.0.0.1', '--port', String(port), '--data-dir', this.dataDir, ...this.args];
    this.log = '';
    this.proc = spawn(HERALD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (b) => { this.log += b.toString(); };
    this.proc.stdout.on('data', onData);
    this.proc.stderr.on('data', onData);
    return new Promise((resolve, reject) => {
      const t0 = Date.now();
      const poll = setInterval(() => {
        const m = /listening on \S+ port (\d+)/.exec(this.log);
        if (m) {
          clearInterval(poll);
          this.port = Number(m[1]);
          resolve(this);
        } else if (this.proc.exitCode !== null || Date.now() - t0 > timeoutMs) {
          clearInterval(poll);
          this.proc.kill('SIGKILL');
          reject(new Error('herald did not start:\n' + this.log));
        }
      }, 20);
    });
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(timeoutMs = 10000) {
    const p = this.proc;
    if (!p || p.exitCode !== null) return p ? p.exitCode : null;
    const done = new Promise((resolve) => p.once('exit', (code) => resolve(code)));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    const code = await done;
    clearTimeout(t);
    return code;
  }

  async rest(method, urlPath, body) {
    const r = await fetch(this.http + urlPath, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
    return { status: r.status, json, text, headers: r.headers };
  }
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

// An HS256 token for @sub, expiring in @ttl seconds.
export function mintToken(sub, ttl = 3600, secret = SECRET, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, iat: now, exp: now + ttl, ...extra }));
  const sig = b64url(crypto.createHmac('sha256', secret).update(head + '.' + body).digest());
  return `${head}.${body}.${sig}`;
}

// Resolves when @cond() is true, polling every 10 ms; rejects after @ms.
export async function until(cond, ms = 5000, what = 'condition') {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
