"""Outbound webhooks (docs/webhooks.md): config errors, signed and ordered
delivery, retries through failures and timeouts, durability across kill -9,
dead letters and their REST API, and a dead receiver not slowing publishing."""
import hashlib
import hmac
import http.server
import json
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import Broker, connect, run, run_herald

SECRET = "whsec-0123456789abcdef"


class Receiver:
    """A webhook receiver on 127.0.0.1. behave(n) says what the n-th request
    (from 0) gets: an int status, ("sleep", s[, status]) to answer (200) after s seconds,
    ("redirect",) a 302, ("huge",) 200 with a 4 MB body."""

    def __init__(self, behave=None):
        self.requests = []          # (headers dict, raw body bytes, time)
        self.lock = threading.Lock()
        self.behave = behave or (lambda n: 200)
        self.count = 0
        rcv = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with rcv.lock:
                    n = rcv.count
                    rcv.count += 1
                what = rcv.behave(n)
                if isinstance(what, tuple) and what[0] == "sleep":
                    time.sleep(what[1])
                    what = what[2] if len(what) > 2 else 200
                if isinstance(what, tuple) and what[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(what, tuple) and what[0] == "huge":
                    blob = b"x" * (4 << 20)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(blob)))
                    self.end_headers()
                    try:
                        self.wfile.write(blob)
                    except OSError:
                        pass
                    what = 200
                else:
                    self.send_response(what)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                if 200 <= what < 300:
                    with rcv.lock:
                        rcv.requests.append((dict(self.headers.items()), body, time.time()))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def events(self):
        out = []
        with self.lock:
            for headers, body, _ in self.requests:
                out += json.loads(body)["events"]
        return out

    def wait_events(self, pred, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.events()
            if pred(evs):
                return evs
            time.sleep(0.05)
        return self.events()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    rs = []

    def make(behave=None):
        r = Receiver(behave)
        rs.append(r)
        return r

    yield make
    for r in rs:
        r.close()


def write_conf(tmp_path, url, extra="", name="hook"):
    conf = tmp_path / "herald.conf"
    conf.write_text(
        "[namespace orders]\nhistory = on\n\n[namespace live]\nhistory = off\n\n"
        "[webhook %s]\nurl = %s\nsecret = %s\nevents = *\nnamespaces = orders, live\n"
        "timeout = 500ms\nretry_base = 50ms\nretry_max = 200ms\n%s\n" % (name, url, SECRET, extra))
    return conf


def start(tmp_path, conf, data_dir=None, name="herald"):
    return Broker(tmp_path, ["--config", str(conf)], data_dir=data_dir, name=name).start()


def verify(headers, body):
    sig = headers["Herald-Signature"]
    parts = dict(p.split("=", 1) for p in sig.split(","))
    mac = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, parts["v1"]), sig
    assert abs(int(parts["t"]) - time.time()) < 60
    ids = [e["id"] for e in json.loads(body)["events"]]
    assert headers["Herald-Event-Id"] == ",".join(ids)


def pubs(evs, channel):
    return [e["data"]["n"] for e in evs if e["type"] == "publication" and e["channel"] == channel]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---- configuration --------------------------------------------------------

@pytest.mark.parametrize("url,why", [
    ("https://example.com/hook", "https:// webhook urls are not supported yet"),
    ("ftp://example.com/hook", "must start with http://"),
    ("http:///nohost", "needs a host"),
    ("http://h:99999/", "bad port"),
])
def test_bad_url_is_a_config_error_with_file_and_line(tmp_path, url, why):
    conf = tmp_path / "bad.conf"
    conf.write_text("[server]\nport = 0\n\n[webhook w]\nsecret = %s\nurl = %s\n" % (SECRET, url))
    r = run_herald(["--config", str(conf), "--data-dir", str(tmp_path / "d")])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "%s:6:" % conf in r.stderr and why in r.stderr, r.stderr


@pytest.mark.parametrize("body,why", [
    ("url = http://127.0.0.1:1/\nsecret = %s\nevents = nope\n" % SECRET, "unknown event"),
    ("url = http://127.0.0.1:1/\nsecret = short\n", "at least 16 characters"),
    ("url = http://127.0.0.1:1/\nevents = *\n", "has no secret"),
    ("url = http://127.0.0.1:1/\nsecret = %s\nmax_attempts = 0\n" % SECRET, "expected 1 to 1000"),
    ("url = http://127.0.0.1:1/\nsecret = %s\ncolour = red\n" % SECRET, "unknown key"),
])
def test_bad_webhook_options(tmp_path, body, why):
    conf = tmp_path / "bad.conf"
    conf.write_text("[webhook w]\n" + body)
    r = run_herald(["--config", str(conf), "--data-dir", str(tmp_path / "d"), "--port", "0"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert str(conf) + ":" in r.stderr and why in r.stderr, r.stderr


# ---- delivery ---------------------------------------------------------------

def test_events_signed_in_order_with_occupancy_and_presence(tmp_path, receiver):
    rcv = receiver()
    b = start(tmp_path, write_conf(tmp_path, rcv.url, "batch_size = 5\n"))
    try:
        for i in range(12):
            b.publish_rest("orders:a", {"n": i})
            b.publish_rest("orders:b", {"n": i})
        b.publish_rest("live:x", {"n": 0})          # no history: queued by a write of its own
        b.publish_rest("other:y", {"n": 0})         # not one of the webhook's namespaces

        async def ws():
            c = await connect(b)
            m = await c.request({"op": "subscribe", "channel": "chat:room"})
            assert m["op"] == "subscribed", m
            m = await c.request({"op": "unsubscribe", "channel": "chat:room"})
            await c.close()
        run(ws())
        evs = rcv.wait_events(lambda e: len(pubs(e, "orders:a")) == 12 and len(pubs(e, "orders:b")) == 12 and
                              any(x["type"] == "channel.vacated" for x in e) and
                              any(x["type"] == "presence.member_removed" for x in e))
        assert pubs(evs, "orders:a") == list(range(12))
        assert pubs(evs, "orders:b") == list(range(12))
        assert pubs(evs, "live:x") == [0]
        assert not pubs(evs, "other:y")
        offs = [e["offset"] for e in evs if e.get("channel") == "orders:a"]
        assert offs == list(range(1, 13))
        types = [e["type"] for e in evs if e.get("channel") == "chat:room"]
        assert types.index("channel.occupied") < types.index("channel.vacated"), types
        assert "presence.member_added" in types and "presence.member_removed" in types, types
        ids = [int(e["id"]) for e in evs]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        for headers, body, _ in rcv.requests:
            verify(headers, body)
            assert headers["Herald-Webhook"] == "hook"
            assert len(json.loads(body)["events"]) <= 5
        st = requests.get(b.url("/api/webhooks"), timeout=5).json()["webhooks"][0]
        assert st["name"] == "hook" and st["last_success"] and st["deliveries"] >= 27
        m = requests.get(b.url("/metrics"), timeout=5).text
        assert 'herald_webhook_deliveries_total{webhook="hook"}' in m
        assert 'herald_webhook_delivery_seconds_count{webhook="hook"}' in m
    finally:
        b.check_clean_exit()


def test_failures_timeouts_then_recovery_across_kill9(tmp_path, receiver):
    """500s, then timeouts, with a kill -9 in the middle: every event arrives, in order."""
    state = {"ok": False}

    def behave(n):
        if state["ok"]:
            return 200
        return 500 if n % 2 == 0 else ("sleep", 1.0, 503)     # timeout is 500ms
    rcv = receiver(behave)
    conf = write_conf(tmp_path, rcv.url, "max_attempts = 1000\n")
    data = tmp_path / "data"
    b = start(tmp_path, conf, data_dir=data, name="first")
    for i in range(30):
        b.publish_rest("orders:k", {"n": i})
    assert rcv.wait_events(lambda e: False, timeout=1.5) == []     # nothing got through
    st = requests.get(b.url("/api/webhooks"), timeout=5).json()["webhooks"][0]
    assert st["queue_depth"] == 30 and st["failures"] >= 1 and st["last_error"]["reason"], st
    b.send_signal(signal.SIGKILL)
    b.wait()
    state["ok"] = True
    b2 = start(tmp_path, conf, data_dir=data, name="second")
    try:
        for i in range(30, 40):
            b2.publish_rest("orders:k", {"n": i})
        evs = rcv.wait_events(lambda e: len(set(pubs(e, "orders:k"))) == 40, timeout=20)
        got = pubs(evs, "orders:k")
        assert sorted(set(got)) == list(range(40))
        # At least once, in order: duplicates only as a repeat of an earlier batch.
        dedup = []
        for e in evs:
            if e.get("channel") == "orders:k" and e["id"] not in {d["id"] for d in dedup}:
                dedup.append(e)
        assert [d["data"]["n"] for d in dedup] == list(range(40))
        for headers, body, _ in rcv.requests:
            verify(headers, body)
    finally:
        b2.check_clean_exit()


def test_dead_letters_list_retry_delete(tmp_path, receiver):
    state = {"status": 500}
    rcv = receiver(lambda n: state["status"])
    b = start(tmp_path, write_conf(tmp_path, rcv.url, "max_attempts = 2\nbatch_size = 1\n"))
    try:
        b.publish_rest("orders:d", {"n": 1})
        b.publish_rest("orders:d", {"n": 2})
        deadline = time.monotonic() + 10
        dead = []
        while time.monotonic() < deadline:
            r = requests.get(b.url("/api/webhooks/hook/dead"), timeout=5)
            assert r.status_code == 200, r.text
            dead = r.json()["dead_letters"]
            if len(dead) == 2:
                break
            time.sleep(0.05)
        assert [d["event"]["data"]["n"] for d in dead] == [1, 2]
        assert "gave up after 2 attempts: HTTP 500" in dead[0]["error"]
        assert dead[0]["event"]["id"] == str(dead[0]["id"])
        page = requests.get(b.url("/api/webhooks/hook/dead?limit=1"), timeout=5).json()
        assert len(page["dead_letters"]) == 1 and page["next_after"] == dead[0]["id"]
        page = requests.get(b.url("/api/webhooks/hook/dead?after=%d" % dead[0]["id"]), timeout=5).json()
        assert [d["id"] for d in page["dead_letters"]] == [dead[1]["id"]]
        # Bad input.
        assert requests.get(b.url("/api/webhooks/nope/dead"), timeout=5).status_code == 404
        assert requests.get(b.url("/api/webhooks/hook/dead?limit=0"), timeout=5).status_code == 400
        assert requests.post(b.url("/api/webhooks/hook/dead/retry?id=x"), timeout=5).status_code == 400
        assert requests.post(b.url("/api/webhooks/hook/dead/retry?id=999999"), timeout=5).status_code == 404
        assert requests.get(b.url("/api/webhooks/hook/other"), timeout=5).status_code == 404
        # Retry one: delivered with its id.
        state["status"] = 200
        r = requests.post(b.url("/api/webhooks/hook/dead/retry?id=%d" % dead[0]["id"]), timeout=5)
        assert r.status_code == 200 and r.json()["retried"] == 1, r.text
        evs = rcv.wait_events(lambda e: len(e) >= 1)
        assert [(e["id"], e["data"]["n"]) for e in evs] == [(str(dead[0]["id"]), 1)]
        # Delete the other.
        r = requests.delete(b.url("/api/webhooks/hook/dead?id=%d" % dead[1]["id"]), timeout=5)
        assert r.status_code == 200 and r.json()["deleted"] == 1, r.text
        assert requests.get(b.url("/api/webhooks/hook/dead"), timeout=5).json()["dead_letters"] == []
        # Retry all with none left.
        r = requests.post(b.url("/api/webhooks/hook/dead/retry"), timeout=5)
        assert r.status_code == 200 and r.json()["retried"] == 0
    finally:
        b.check_clean_exit()


def test_unreachable_host_redirect_and_huge_answer(tmp_path, receiver):
    """A closed port and a 302 are failures that end in the dead letters; a
    huge 200 answer is a success read no further than its status line."""
    redirect = receiver(lambda n: ("redirect",))
    huge = receiver(lambda n: ("huge",))
    conf = tmp_path / "herald.conf"
    conf.write_text(
        "[namespace orders]\nhistory = on\n\n"
        "[webhook gone]\nurl = http://127.0.0.1:%d/x\nsecret = %s\nevents = publication\nmax_attempts = 2\n"
        "retry_base = 20ms\nretry_max = 50ms\ntimeout = 500ms\n\n"
        "[webhook moved]\nurl = %s\nsecret = %s\nevents = publication\nmax_attempts = 2\n"
        "retry_base = 20ms\nretry_max = 50ms\n\n"
        "[webhook big]\nurl = %s\nsecret = %s\nevents = publication\n"
        % (free_port(), SECRET, redirect.url, SECRET, huge.url, SECRET))
    b = start(tmp_path, conf)
    try:
        b.publish_rest("orders:z", {"n": 7})

        def dead_of(name):
            return requests.get(b.url("/api/webhooks/%s/dead" % name), timeout=5).json()["dead_letters"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (dead_of("gone") and dead_of("moved")):
            time.sleep(0.05)
        assert "cannot connect" in dead_of("gone")[0]["error"], dead_of("gone")
        assert "redirects are not followed" in dead_of("moved")[0]["error"], dead_of("moved")
        assert redirect.count == 2
        evs = huge.wait_events(lambda e: len(e) == 1)
        assert pubs(evs, "orders:z") == [7]
        st = {w["name"]: w for w in requests.get(b.url("/api/webhooks"), timeout=5).json()["webhooks"]}
        assert st["big"]["last_error"] is None and st["big"]["last_success"]
        assert st["gone"]["dead_letters"] >= 0
    finally:
        b.check_clean_exit()


def test_dead_receiver_does_not_slow_publishing(tmp_path, receiver):
    """A receiver that never answers in time: publish acks stay fast."""
    rcv = receiver(lambda n: ("sleep", 3.0))
    b = start(tmp_path, write_conf(tmp_path, rcv.url, "timeout = 2s\nmax_attempts = 1000\n"))
    try:
        s = requests.Session()
        times = []
        for i in range(200):
            t0 = time.monotonic()
            r = s.post(b.url("/api/publish"), json={"channel": "orders:fast", "data": {"n": i}}, timeout=5)
            times.append(time.monotonic() - t0)
            assert r.status_code == 200
        times.sort()
        assert times[len(times) // 2] < 0.05 and times[-1] < 1.0, (times[len(times) // 2], times[-1])
        st = requests.get(b.url("/api/webhooks"), timeout=5).json()["webhooks"][0]
        assert st["deliveries"] == 0
    finally:
        b.check_clean_exit()


def test_webhook_endpoints_need_an_admin_key(tmp_path, receiver):
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url, "\n[apikey app]\nsecret = app-secret-0123456789\n\n"
                      "[apikey ops]\nsecret = ops-secret-0123456789\nadmin = on\n")
    b = start(tmp_path, conf)
    try:
        app = {"Authorization": "Bearer app-secret-0123456789"}
        ops = {"Authorization": "Bearer ops-secret-0123456789"}
        assert requests.get(b.url("/api/webhooks"), headers=app, timeout=5).status_code == 403
        assert requests.get(b.url("/api/webhooks/hook/dead"), headers=app, timeout=5).status_code == 403
        assert requests.get(b.url("/api/webhooks"), headers=ops, timeout=5).status_code == 200
        assert requests.get(b.url("/api/webhooks/hook/dead"), headers=ops, timeout=5).status_code == 200
    finally:
        b.check_clean_exit()
