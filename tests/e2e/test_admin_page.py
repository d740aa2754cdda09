"""The admin page (GET /admin) and the sys:stats channel it shows.

The browser tests open the page in Debian's chromium, driven by playwright-core
(tests/browser/admin_check.js), against the real broker, and skip when chromium,
node or tests/browser/node_modules is missing (scripts/deps.sh installs them).
The protocol tests need only Python.
"""
import asyncio
import http.server
import json
import os
import shutil
import socket
import threading
import time

import pytest
import requests

from conftest import REPO, Closed, connect, run, ws_connect

CHROMIUM = "/usr/bin/chromium"
NODE = shutil.which("node")
BROWSER_DIR = REPO / "tests" / "browser"
CHECK = BROWSER_DIR / "admin_check.js"
PAGE = REPO / "broker" / "app" / "admin_page.html"

ADMIN_KEY = "ops-key-0123456789abcdef"
USER_KEY = "pub-key-0123456789abcdef"
KEYS = ("--apikey", "ops.secret=" + ADMIN_KEY, "--apikey", "ops.admin=on",
        "--apikey", "pub.secret=" + USER_KEY, "--apikey", "pub.publish=chat")
CSP = ("default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "connect-src 'self' ws: wss:; img-src 'self' data:")
CHECK_TIMEOUT_MS = 20000


def _browser_missing():
    if not os.access(CHROMIUM, os.X_OK):
        return CHROMIUM + " is missing (apt-get install chromium)"
    if NODE is None:
        return "node is missing (apt-get install nodejs npm)"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "tests/browser/node_modules/playwright-core is missing (npm ci --prefix tests/browser)"
    return None


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


async def admin_check(url, min_conn, channel, screenshot, webhooks=None):
    """Runs admin_check.js without blocking the loop (the test's own clients stay
    served); returns its JSON summary, failing the test with it when a check failed.
    @webhooks: {name: {"state": ..., "error": ...}} the webhook table must show."""
    env = dict(os.environ, SCREENSHOT=str(screenshot))
    extra = [json.dumps(webhooks)] if webhooks else []
    proc = await asyncio.create_subprocess_exec(
        NODE, str(CHECK), url, str(CHECK_TIMEOUT_MS), str(min_conn), channel, *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(BROWSER_DIR))
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT_MS / 1000 + 8)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("admin_check.js outlived its own timeout") from None
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        summary = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise AssertionError("admin_check.js printed no summary (exit %s):\n%s\n%s" % (
            proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")[-4000:])) from None
    assert proc.returncode == 0 and summary["ok"], "admin page check failed: %s\n%s" % (
        json.dumps(summary), err.decode(errors="replace")[-4000:])
    return summary


async def lobby_clients(broker, n):
    clients = []
    for _ in range(n):
        c = await connect(broker)
        await c.subscribe("chat:lobby")
        clients.append(c)
    return clients


async def connect_with(broker, apikey=None):
    """Sends connect (with @apikey when given); returns (client, reply)."""
    c = await ws_connect(broker)
    msg = {"op": "connect", "id": 1}
    if apikey is not None:
        msg["apikey"] = apikey
    return c, await c.request(msg)


async def refused_stats(broker, apikey=None):
    """Asserts that this identity cannot read sys:stats: error 113 or 114, at connect
    or at subscribe, and no publication of sys:stats after it."""
    c, m = await connect_with(broker, apikey)
    if m["op"] == "connected":
        m = await c.request({"op": "subscribe", "id": 2, "channel": "sys:stats", "history": 5})
    assert m["op"] == "error" and m["code"] in (113, 114), m
    try:
        await c.assert_silent(1.3)     # longer than the stats period
    except Closed:
        pass                           # a refused connect may be closed (4001)
    await c.close()


async def reply(c, msg, timeout=3.0):
    """Sends @msg and returns its reply, skipping the sys:stats publications that
    may arrive before it."""
    await c.send(msg)
    while True:
        m = await c.next(timeout)
        if m.get("op") != "pub":
            assert m.get("id") == msg["id"], m
            return m


def check_stats(d):
    """The documented shape of one sys:stats publication."""
    for k in ("ts", "uptime_s", "subscriptions", "channels"):
        assert isinstance(d[k], int), (k, d)
    assert isinstance(d["version"], str)
    assert set(d["connections"]) >= {"total", "json", "msgpack"}
    assert set(d["rates"]) >= {"messages_in", "deliveries", "publications", "bytes_out"}
    assert all(isinstance(v, (int, float)) for v in d["rates"].values())
    assert len(d["top_by_subscribers"]) <= 10 and len(d["top_by_rate"]) <= 10
    assert set(d["storage"]) >= {"map_size", "used", "map_max", "map_pct", "fs_pct", "status"}
    assert d["storage"]["status"] in ("ok", "warning", "critical", "full")
    assert isinstance(d["warnings"], list) and len(d["warnings"]) <= 20


@needs_browser
def test_admin_page_dev_mode(make_broker, tmp_path):
    b = make_broker()

    async def go():
        clients = await lobby_clients(b, 3)
        summary = await admin_check(b.url("/admin"), 3, "chat:lobby", tmp_path / "admin-dev.png")
        assert summary["conn_total"] >= 3 and "chat:lobby" in summary["top_subscribers"]
        for c in clients:
            await c.close()
    run(go(), timeout=40)


@needs_browser
def test_admin_page_with_admin_key(make_broker, tmp_path):
    b = make_broker(*KEYS)
    r = requests.get(b.url("/admin"), timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.content == PAGE.read_bytes(), "the broker serves the page it was built with"

    async def go():
        clients = await lobby_clients(b, 3)
        await admin_check(b.url("/admin#key=" + ADMIN_KEY), 3, "chat:lobby", tmp_path / "admin-key.png")
        for c in clients:
            await c.close()
    run(go(), timeout=40)


def test_sys_stats_needs_admin_key(make_broker):
    b = make_broker(*KEYS)

    async def go():
        await refused_stats(b)                      # anonymous
        await refused_stats(b, USER_KEY)            # a valid key, but not an admin one
        # The admin key reads it: history in the reply, then one publication a second.
        c, m = await connect_with(b, ADMIN_KEY)
        assert m["op"] == "connected", m
        m = await c.request({"op": "subscribe", "id": 2, "channel": "sys:stats", "history": 60})
        assert m["op"] == "subscribed" and m["id"] == 2, m
        assert len(m.get("publications", [])) <= 60
        p1 = await c.expect(op="pub", channel="sys:stats", timeout=3)
        p2 = await c.expect(op="pub", channel="sys:stats", timeout=3)
        check_stats(p1["data"])
        assert 500 <= p2["data"]["ts"] - p1["data"]["ts"] <= 2500, (p1["data"]["ts"], p2["data"]["ts"])
        assert p2["data"]["connections"]["total"] >= 1
        # Nobody publishes to sys:*, not even an admin.
        m = await reply(c, {"op": "publish", "id": 3, "channel": "sys:stats", "data": {}})
        assert m["op"] == "error" and m["code"] in (113, 114), m
        await c.close()
    run(go())


def test_sys_stats_dev_mode(make_broker):
    b = make_broker()

    async def go():
        c = await connect(b)
        await c.subscribe("sys:stats")
        p = await c.expect(op="pub", channel="sys:stats", timeout=3)
        check_stats(p["data"])
        m = await reply(c, {"op": "publish", "id": 3, "channel": "sys:other", "data": 1})
        assert m["op"] == "error" and m["code"] in (113, 114), m
        await c.close()
    run(go())


def webhook_conf(tmp_path):
    """Two webhooks: "good" posts to a receiver answering 200, "down" to a closed
    port. Returns (config path, the receiver's server)."""
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    conf = tmp_path / "hooks.conf"
    common = "secret = whsec-0123456789abcdef\nevents = publication\nretry_base = 50ms\nretry_max = 100ms\n"
    conf.write_text("[namespace orders]\nhistory = on\n\n"
                    "[webhook good]\nurl = http://127.0.0.1:%d/hook\n%s\n"
                    "[webhook down]\nurl = http://127.0.0.1:%d/hook\nmax_attempts = 2\n%s"
                    % (srv.server_address[1], common, closed, common))
    return conf, srv


def test_sys_stats_webhook_health(make_broker, tmp_path):
    """sys:stats carries each webhook's health: state, queue depth, lag, dead
    letters, held channels, last success and last error."""
    conf, srv = webhook_conf(tmp_path)
    b = make_broker("--config", str(conf))
    try:
        for i in range(3):
            b.publish_rest("orders:1", {"n": i})

        async def go():
            c = await connect(b)
            await c.subscribe("sys:stats")
            deadline = time.monotonic() + 10
            while True:
                p = await c.expect(op="pub", channel="sys:stats", timeout=3)
                hooks = {w["name"]: w for w in p["data"]["webhooks"]}
                if hooks["down"]["dead_letters"] == 3 and hooks["good"]["last_success"]:
                    break
                assert time.monotonic() < deadline, hooks
            check_stats(p["data"])
            for w in hooks.values():
                assert set(w) >= {"state", "queue_depth", "lag_ms", "dead_letters", "failing_channels",
                                  "last_success", "last_error"}, w
            assert hooks["good"]["state"] == "ok" and hooks["good"]["last_error"] is None
            assert hooks["good"]["queue_depth"] == 0 and hooks["good"]["lag_ms"] == 0
            assert hooks["down"]["state"] == "failing"
            assert "cannot connect" in hooks["down"]["last_error"]["reason"]
            await c.close()
        run(go())
    finally:
        srv.shutdown()
        srv.server_close()


@needs_browser
def test_admin_page_webhook_table(make_broker, tmp_path):
    conf, srv = webhook_conf(tmp_path)
    b = make_broker("--config", str(conf))
    try:
        for i in range(3):
            b.publish_rest("orders:1", {"n": i})

        async def go():
            summary = await admin_check(b.url("/admin"), 1, "", tmp_path / "admin-hooks.png",
                                        {"good": {"state": "ok"},
                                         "down": {"state": "failing", "error": "cannot connect"}})
            rows = {r["name"]: r for r in summary["webhooks"]}
            assert rows["good"]["queued"] == "0"
        run(go(), timeout=40)
    finally:
        srv.shutdown()
        srv.server_close()
