"""GET /api/sse: publications of channels as a Server-Sent Events stream.

Driven with raw sockets (to control reading and the receive buffer) and with
curl -N (a real streaming HTTP client): publications arrive in order with
ids; a client that reconnects with Last-Event-ID (header, or the lastEventId
parameter) gets every publication it missed exactly once; `unrecovered`
says so when history was trimmed; refusals are HTTP statuses with the JSON
error body, before any stream; a stream that stops reading is closed and
counted; the metrics show the streams.
"""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest
import requests

from conftest import HERALD_BIN, REPO, connect, herald_env, hs256_token, run, scrape_metrics

SECRET = b"sse-test-secret-0123456789abcdef0123"


class SSE:
    """A blocking Server-Sent Events reader over a plain socket."""

    def __init__(self, b, channels, last_id=None, query=None, headers=None, rcvbuf=None, timeout=5.0):
        params = [("channel", c) for c in channels] + list((query or {}).items())
        path = "/api/sse?" + urllib.parse.urlencode(params)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((b.host, b.port))
        req = "GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n" % path
        if last_id is not None:
            req += "Last-Event-ID: %s\r\n" % last_id
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed before the headers")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        self.retry = None
        self.comments = []

    def body(self):
        """For a refusal: the rest of the answer, as JSON."""
        n = int(self.headers["content-length"])
        while len(self.buf) < n:
            self.buf += self.sock.recv(4096)
        return json.loads(self.buf[:n])

    def event(self):
        """The next event as a dict (event, id, data parsed as JSON); comments and retry: noted.
        Raises ConnectionError when the broker ends the stream."""
        while True:
            while b"\n\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("stream ended")
                self.buf += chunk
            block, self.buf = self.buf.split(b"\n\n", 1)
            ev = {}
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "retry":
                    self.retry = int(value)
                elif field == "data":
                    ev["data"] = json.loads(value)
                else:
                    ev[field] = value
            if "event" in ev:
                return ev

    def events(self, n, kinds=("pub",)):
        """The next @n events whose name is in @kinds (others skipped)."""
        got = []
        while len(got) < n:
            ev = self.event()
            if ev["event"] in kinds:
                got.append(ev)
        return got

    def close(self):
        self.sock.close()


def publish(b, channel, n, start=0):
    return [b.publish_rest(channel, {"n": start + i})["offset"] for i in range(n)]


metrics = scrape_metrics          # the name these tests use


def test_stream_delivers_publications_in_order(broker):
    s = SSE(broker, ["chat:a"])
    assert s.status == 200
    assert s.headers["content-type"] == "text/event-stream"
    assert "content-length" not in s.headers and s.headers["cache-control"] == "no-store"
    sub = s.event()
    assert sub["event"] == "subscribed" and sub["data"]["channel"] == "chat:a" and "id" not in sub
    assert s.retry == 3000
    epoch = sub["data"]["epoch"]
    offsets = publish(broker, "chat:a", 20)
    got = s.events(20)
    assert [e["data"]["offset"] for e in got] == offsets
    assert [e["id"] for e in got] == ["%d:%s" % (o, epoch) for o in offsets]
    assert [e["data"]["data"]["n"] for e in got] == list(range(20))
    assert all(e["data"]["op"] == "pub" and e["data"]["channel"] == "chat:a" for e in got)
    s.close()


def curl_events(b, channels, seconds, last_id=None):
    """Runs curl -N for @seconds and returns the events it printed (id, event, data)."""
    url = b.url("/api/sse?" + urllib.parse.urlencode([("channel", c) for c in channels]))
    cmd = ["curl", "-sN", "--max-time", str(seconds), url]
    if last_id:
        cmd[2:2] = ["-H", "Last-Event-ID: " + last_id]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def parse(text):
    evs = []
    for block in text.split("\n\n"):
        ev = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                f, _, v = line.partition(": ")
                ev[f] = json.loads(v) if f == "data" else v
        if "event" in ev:
            evs.append(ev)
    return evs


def test_curl_disconnect_publish_reconnect_every_event_once(broker):
    """curl sees 1..5, goes away; 6..10 are published meanwhile; curl comes back with the
    last id it saw and gets 6..10 then live 11..12: each exactly once, in order."""
    p = curl_events(broker, ["chat:c"], 2)
    time.sleep(0.5)
    publish(broker, "chat:c", 5)
    out, _ = p.communicate(timeout=10)
    first = [e for e in parse(out) if e["event"] == "pub"]
    assert [e["data"]["offset"] for e in first] == [1, 2, 3, 4, 5]
    publish(broker, "chat:c", 5, start=5)
    p = curl_events(broker, ["chat:c"], 2, last_id=first[-1]["id"])
    time.sleep(0.5)
    publish(broker, "chat:c", 2, start=10)
    out, _ = p.communicate(timeout=10)
    evs = parse(out)
    assert [e["event"] for e in evs][0] == "subscribed" and evs[0]["data"]["recovered"] is True
    second = [e for e in evs if e["event"] == "pub"]
    assert [e["data"]["offset"] for e in second] == [6, 7, 8, 9, 10, 11, 12]
    assert [e["data"]["data"]["n"] for e in first + second] == list(range(12))


def test_several_channels_resume_from_one_id(broker):
    """With two channels the id carries both positions: resuming from an id taken mid-stream
    delivers the rest of both channels exactly once."""
    s = SSE(broker, ["chat:x", "chat:y"])
    subs = s.events(2, kinds=("subscribed",))
    ep = {e["data"]["channel"]: e["data"]["epoch"] for e in subs}
    for i in range(4):
        broker.publish_rest("chat:x", {"i": i})
        broker.publish_rest("chat:y", {"i": i})
    got = s.events(8)
    s.close()
    seen = [(e["data"]["channel"], e["data"]["offset"]) for e in got]
    assert seen == [(c, o) for o in range(1, 5) for c in ("chat:x", "chat:y")]
    mid = got[2]                                   # after x1, y1, x2
    assert mid["id"] == "2:%s,1:%s" % (ep["chat:x"], ep["chat:y"])
    for i in range(4, 6):
        broker.publish_rest("chat:x", {"i": i})
        broker.publish_rest("chat:y", {"i": i})
    s = SSE(broker, ["chat:x", "chat:y"], last_id=mid["id"])
    rest = s.events(9)                             # x3..x6 and y2..y6
    broker.publish_rest("chat:y", "live")
    live = s.events(1)[0]
    s.close()
    after = [(e["data"]["channel"], e["data"]["offset"]) for e in rest]
    assert sorted(after) == sorted(set((c, o) for c in ("chat:x", "chat:y") for o in range(1, 7)) - set(seen[:3]))
    # Per channel in order, and the last id names the end of both.
    for c in ("chat:x", "chat:y"):
        offs = [o for ch, o in after if ch == c]
        assert offs == sorted(offs)
    assert rest[-1]["id"] == "6:%s,6:%s" % (ep["chat:x"], ep["chat:y"])
    assert (live["data"]["offset"], live["id"]) == (7, "6:%s,7:%s" % (ep["chat:x"], ep["chat:y"]))


def test_last_event_id_parameter_and_the_header_wins(broker):
    publish(broker, "chat:q", 5)
    s = SSE(broker, ["chat:q"])
    epoch = s.event()["data"]["epoch"]
    s.close()
    s = SSE(broker, ["chat:q"], query={"lastEventId": "3:" + epoch})
    assert [e["data"]["offset"] for e in s.events(2)] == [4, 5]
    s.close()
    # EventSource reconnects to the same URL with a newer Last-Event-ID header: the header wins.
    s = SSE(broker, ["chat:q"], query={"lastEventId": "1:" + epoch}, last_id="4:" + epoch)
    assert [e["data"]["offset"] for e in s.events(1)] == [5]
    broker.publish_rest("chat:q", "live")
    assert s.events(1)[0]["data"]["offset"] == 6
    s.close()


def test_unrecovered_when_history_was_trimmed(make_broker):
    b = make_broker("--ns", "chat.history_size=3")
    s = SSE(b, ["chat:t"])
    epoch = s.event()["data"]["epoch"]
    s.close()
    publish(b, "chat:t", 10)
    s = SSE(b, ["chat:t"], last_id="2:" + epoch)
    sub = s.event()
    assert sub["event"] == "subscribed" and sub["data"]["recovered"] is False
    un = s.event()
    assert un["event"] == "unrecovered"
    assert un["data"] == {"channel": "chat:t", "epoch": epoch, "offset": 10,
                          "last_event": {"epoch": epoch, "offset": 2}}
    # The id moves to just before what history still holds, so a reconnect from it is clean.
    assert un["id"] == "7:" + epoch
    assert [e["data"]["offset"] for e in s.events(3)] == [8, 9, 10]
    s.close()
    s = SSE(b, ["chat:t"], last_id=un["id"])
    assert s.event()["data"]["recovered"] is True
    assert [e["data"]["offset"] for e in s.events(3)] == [8, 9, 10]
    s.close()
    # Another epoch (a position from a different store) is not recoverable either.
    s = SSE(b, ["chat:t"], last_id="2:0123456789abcdef")
    assert s.event()["data"]["recovered"] is False and s.event()["event"] == "unrecovered"
    s.close()


def test_bad_requests_are_refused_before_the_stream(broker):
    def refused(channels, status, code, **kw):
        s = SSE(broker, channels, **kw)
        assert s.status == status, s.status
        assert s.headers["content-type"] == "application/json"
        err = s.body()["error"]
        assert err["code"] == code, err
        s.close()
        return err["reason"]

    refused([], 400, 103)
    refused(["bad name"], 400, 104)
    refused(["chat:a", "chat:a"], 400, 103)
    assert "at most 16" in refused(["chat:%d" % i for i in range(17)], 400, 103)
    refused(["chat:a"], 400, 103, last_id="nonsense")
    refused(["chat:a"], 400, 103, last_id="1:abc,2:abc")        # two positions, one channel
    refused(["chat:a"], 400, 103, last_id="-1:abc")
    refused(["scores:g"], 404, 116)                              # a state channel
    refused(["chat:a"], 401, 113, query={"token": "not.a.token"})
    # The broker goes on serving: a good stream still works.
    s = SSE(broker, ["chat:ok"])
    s.event()
    broker.publish_rest("chat:ok", 1)
    assert s.events(1)[0]["data"]["data"] == 1
    s.close()


def test_tokens_and_permissions(make_broker):
    b = make_broker("--anonymous", "off", "--hmac-secret", SECRET.decode())
    tok = hs256_token(SECRET, "al")
    s = SSE(b, ["chat:p"])
    assert s.status == 401 and s.body()["error"]["code"] == 113
    assert s.headers.get("www-authenticate", "").startswith("Bearer")
    s.close()
    s = SSE(b, ["user:bo"], query={"token": tok})
    assert s.status == 403 and s.body()["error"]["code"] == 114
    s.close()
    s = SSE(b, ["chat:p", "user:al"], headers={"Authorization": "Bearer " + tok})
    assert s.status == 200
    s.events(2, kinds=("subscribed",))
    s2 = SSE(b, ["user:al"], query={"token": tok})
    assert s2.status == 200
    s2.event()
    b.publish_rest("user:al", "for al")
    assert s.events(1)[0]["data"]["data"] == "for al"
    assert s2.events(1)[0]["data"]["data"] == "for al"
    s.close()
    s2.close()


def test_slow_stream_is_closed_and_others_go_on(make_broker):
    b = make_broker("--send-queue-max", "65536")
    slow = SSE(b, ["chat:s"], rcvbuf=4096)
    slow.event()
    fast = SSE(b, ["chat:s"])
    fast.event()
    big = "x" * 30000
    before = metrics(b).get("herald_sse_streams", 0)
    assert before == 2
    # Far more than the kernel's socket buffers hold: the slow stream's queue must pass 64 KiB.
    for i in range(200):
        b.publish_rest("chat:s", {"i": i, "pad": big})
        if i % 10 == 9:
            fast.events(10)
        if i >= 20 and metrics(b)["herald_sse_streams"] == 1:
            break
    # The broker ended the slow stream: its socket reaches EOF after what was sent.
    slow.sock.settimeout(10)
    with pytest.raises(ConnectionError):
        while True:
            slow.event()
    m = metrics(b)
    assert m["herald_sse_streams"] == 1
    b.publish_rest("chat:s", "after")
    assert fast.events(1)[0]["data"]["data"] == "after"
    fast.close()


def test_heartbeat_comments_and_retry(make_broker):
    b = make_broker("--sse-heartbeat", "1s", "--sse-retry", "1500")
    s = SSE(b, ["chat:h"])
    s.event()
    assert s.retry == 1500
    s.sock.settimeout(4)
    # Nothing is published: within ~2 s heartbeat comments arrive (event() notes them).
    deadline = time.time() + 3.5
    while not s.comments and time.time() < deadline:
        s.buf += s.sock.recv(4096)
        if b"\n\n" in s.buf and s.buf.startswith(b":"):
            block, s.buf = s.buf.split(b"\n\n", 1)
            s.comments.append(block.decode())
    assert s.comments and s.comments[0] == ": heartbeat"
    b.publish_rest("chat:h", 1)
    assert s.events(1)[0]["data"]["data"] == 1
    s.close()


def test_websocket_and_sse_subscribers_get_the_same_publication(broker):
    async def main():
        c = await connect(broker)
        await c.subscribe("chat:w")
        s = SSE(broker, ["chat:w"])
        s.event()
        broker.publish_rest("chat:w", {"k": [1, 2]})
        ws = await c.next()
        while ws["op"] != "pub":                   # the stream's presence join comes first
            ws = await c.next()
        ev = s.events(1)[0]["data"]
        assert ev == ws
        s.close()
        await c.close()
    run(main())


def test_metrics_count_streams_and_events(broker):
    m0 = metrics(broker)
    s = SSE(broker, ["chat:m"])
    s.event()
    publish(broker, "chat:m", 3)
    s.events(3)
    m = metrics(broker)
    assert m["herald_sse_streams"] == m0.get("herald_sse_streams", 0) + 1
    assert m["herald_sse_connects_total"] == m0.get("herald_sse_connects_total", 0) + 1
    assert m["herald_sse_events_total"] >= m0.get("herald_sse_events_total", 0) + 4
    s.close()
    deadline = time.time() + 5
    while metrics(broker)["herald_sse_streams"] != m0.get("herald_sse_streams", 0) and time.time() < deadline:
        time.sleep(0.1)
    assert metrics(broker)["herald_sse_streams"] == m0.get("herald_sse_streams", 0)


def test_streams_end_when_the_broker_stops(make_broker):
    b = make_broker()
    s = SSE(b, ["chat:z"])
    s.event()
    b.stop()
    with pytest.raises((ConnectionError, OSError)):
        while True:
            s.event()


def test_stream_outlives_the_connect_timeout_and_ends_with_its_token(make_broker):
    """A stream needs no connect message (websocket.connect_timeout does not end it); a stream
    whose token expires gets refresh_required, then is ended, like a WebSocket connection."""
    b = make_broker("--connect-timeout", "1s", "--hmac-secret", SECRET.decode(), "--auth-leeway", "0s")
    forever = SSE(b, ["chat:e"])
    forever.event()
    tok = hs256_token(SECRET, "al", exp=int(time.time()) + 3)
    short = SSE(b, ["chat:e"], query={"token": tok})
    assert short.status == 200
    short.event()
    assert short.event()["event"] == "refresh_required"
    time.sleep(2.5)
    b.publish_rest("chat:e", "still here")
    assert forever.events(1)[0]["data"]["data"] == "still here"
    short.sock.settimeout(10)
    with pytest.raises(ConnectionError):
        while True:
            short.event()
    forever.close()


def test_chromium_eventsource_resumes_every_event_once():
    """A real EventSource (headless Chromium, tests/browser/sse_check.mjs): live events, the broker
    restarted, publications made while EventSource waits to reconnect; it reconnects by itself with
    Last-Event-ID and ends with every publication exactly once. Skips when chromium, node or
    tests/browser/node_modules is missing (scripts/deps.sh installs them)."""
    browser_dir = REPO / "tests" / "browser"
    node = shutil.which("node")
    if not os.access("/usr/bin/chromium", os.X_OK) or not node or \
            not (browser_dir / "node_modules" / "playwright-core").is_dir():
        pytest.skip("chromium, node or tests/browser/node_modules/playwright-core is missing")
    env = {**herald_env(), "HERALD_BIN": str(HERALD_BIN)}
    p = subprocess.run([node, "sse_check.mjs", "60000"], cwd=str(browser_dir), env=env, capture_output=True,
                       text=True, timeout=90)
    lines = p.stdout.strip().splitlines()
    assert lines, "sse_check.mjs printed nothing (exit %s): %s" % (p.returncode, p.stderr[-3000:])
    summary = json.loads(lines[-1])
    assert summary["ok"], summary
    assert p.returncode == 0


def test_cross_origin_pages_get_cors_headers(make_broker):
    b = make_broker("--cors-origins", "https://shop.example")
    s = SSE(b, ["chat:o"], headers={"Origin": "https://shop.example"})
    assert s.status == 200 and s.headers["access-control-allow-origin"] == "https://shop.example"
    s.close()
    s = SSE(b, ["chat:o"], headers={"Origin": "https://evil.example"})
    assert s.status == 200 and "access-control-allow-origin" not in s.headers   # the browser withholds it
    s.close()
