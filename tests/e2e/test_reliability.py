"""Reliability at the edges (issue 20): keepalive pings and pongs, connections
that stop reading or never finish a close, liveness probes at the connection
cap, REST answers in one write, disk-full errors, SIGHUP's scope, and running
out of file descriptors."""
import asyncio
import base64
import functools
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest
import requests

from conftest import Closed, RawWS, close_all, connect, connect_many, http_raw, run, slow_subscriber, scrape_metrics


metrics = scrape_metrics          # the name these tests use


def ws_sessions(b):
    m = metrics(b)
    return sum(v for k, v in m.items() if k.startswith("herald_connections{"))


def wait_until(pred, timeout, step=0.1):
    """Polls @pred (an exception counts as false) until it holds or @timeout passes."""
    def holds():
        try:
            return pred()
        except (OSError, requests.RequestException):
            return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if holds():
            return True
        time.sleep(step)
    return holds()


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- a raw asyncio WebSocket client

class PingClient:
    """A WebSocket client on asyncio streams that sees every control frame: it
    answers the broker's pings with their payload and checks that each pong
    it gets carries the payload of its oldest unanswered ping (RFC 6455 5.5.3)."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.pending = []           # payloads of our pings not yet answered, oldest first
        self.pong_event = asyncio.Event()
        self.broker_pings = 0
        self.wrong = []             # (expected, got) of pongs that did not match
        self.closed = None          # close code, or "eof"

    @classmethod
    async def open(cls, host, port):
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        key = base64.b64encode(os.urandom(16)).decode()
        w.write(("GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: herald.json\r\n\r\n" % (host, port, key)).encode())
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
        assert b" 101 " in head.split(b"\r\n")[0], head
        c = cls(r, w)
        c.reader_task = asyncio.ensure_future(c._read())
        return c

    def frame(self, opcode, payload):
        mask = os.urandom(4)
        body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.w.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body)

    async def _read(self):
        try:
            while True:
                b0, b1 = await self.r.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self.r.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self.r.readexactly(8))[0]
                payload = await self.r.readexactly(n) if n else b""
                op = b0 & 0x0F
                if op == 0x9:
                    self.broker_pings += 1
                    self.frame(0xA, payload)
                elif op == 0xA:
                    want = self.pending.pop(0) if self.pending else None
                    if payload != want:
                        self.wrong.append((want, payload))
                    self.pong_event.set()
                elif op == 0x8:
                    self.closed = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed = self.closed or "eof"

    async def ping(self, payload, timeout):
        """Sends a ping and waits for a pong; False if none came in time."""
        self.pong_event.clear()
        self.pending.append(payload)
        self.frame(0x9, payload)
        try:
            await asyncio.wait_for(self.pong_event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def abort(self):
        self.reader_task.cancel()
        self.w.transport.abort()


# ---------------------------------------------------------------- 1. pongs carry their ping's payload

def test_client_pings_get_their_own_pongs_while_the_broker_pings(make_broker):
    """200 clients ping with unique payloads while the broker pings each of
    them every second: every pong must carry its ping's payload, in order, and
    nobody is dropped. With libwebsockets' own keepalive (before issue 20) a
    broker ping due while a client's pong was still unsent overwrote that
    pong's payload with an 8-byte timestamp."""
    b = make_broker("--ping-interval", "1s")
    n_clients, duration = 200, 8.0

    async def one(i, clients):
        c = await PingClient.open(b.host, b.port)
        clients.append(c)
        seq = 0
        lost = 0
        end = time.monotonic() + duration
        while time.monotonic() < end and c.closed is None:
            seq += 1
            payload = b"c%04d-%06d-" % (i, seq) + os.urandom(6)
            if not await c.ping(payload, 5.0):
                lost += 1
            await asyncio.sleep(0.002 * (i % 7))
        return seq, lost

    async def main():
        clients = []
        results = await asyncio.gather(*[one(i, clients) for i in range(n_clients)])
        sent = sum(s for s, _ in results)
        lost = sum(lo for _, lo in results)
        wrong = [w for c in clients for w in c.wrong]
        closed = [c.closed for c in clients if c.closed is not None]
        pinged = sorted(c.broker_pings for c in clients)
        open_now = ws_sessions(b)
        for c in clients:
            c.abort()
        return sent, lost, wrong, closed, pinged, open_now

    sent, lost, wrong, closed, pinged, open_now = run(main(), timeout=120)
    assert sent > 20 * n_clients, "the clients pinged (%d pings)" % sent
    assert not wrong, "%d of %d pongs carried another payload, e.g. %r" % (len(wrong), sent, wrong[:3])
    assert lost == 0, "%d pings got no pong" % lost
    assert not closed, "clients dropped: %r" % closed[:10]
    assert open_now == n_clients
    # The broker kept pinging meanwhile: the test is about the two together.
    assert pinged[0] >= 2, "every client got broker pings (fewest %d)" % pinged[0]


def test_silent_peer_dropped_after_twice_the_ping_interval(make_broker):
    """A peer that answers nothing (not even pings) is dropped, without a
    close frame, after 2 x ping_interval + 5 s; one that answers stays."""
    b = make_broker("--ping-interval", "1s")
    silent = RawWS(b.host, b.port)
    silent.send_json({"op": "connect", "id": 1})
    assert silent.recv_messages()[0]["op"] == "connected"

    async def main():
        alive = await connect(b)
        # Nothing more is read from the silent socket: its pings go unanswered.
        assert await asyncio.get_running_loop().run_in_executor(
            None, wait_until, lambda: ws_sessions(b) == 1, 15), "the silent peer was dropped"
        m = metrics(b)
        assert m['herald_disconnects_total{reason="ping_timeout"}'] == 1
        # The client library answers pings: it is still here.
        await alive.ping()
        await alive.close()
    t0 = time.monotonic()
    run(main(), timeout=30)
    assert time.monotonic() - t0 >= 5, "not dropped before 2 x 1 s + 5 s"
    silent.close()


# ---------------------------------------------------------------- 2. closes that cannot finish

def test_stalled_slow_consumer_is_dropped_without_pings(make_broker):
    """With pings off, a subscriber that stops reading is flagged as a slow
    consumer (4000) and then dropped within the 5 s close timeout although its
    close frame cannot be written: its session and descriptor go."""
    b = make_broker("--ping-interval", "0", "--send-queue-max", "64k")
    fds0 = open_fds(b.pid)
    slow, _ = slow_subscriber(b, "stall:x")
    s = requests.Session()
    blob = "y" * 30000
    for i in range(1000):                                    # at most 30 MB
        s.post(b.url("/api/publish"), json={"channel": "stall:x", "data": blob}, timeout=5)
        if "slow consumer" in b.log:
            break
    assert b.wait_log(r"slow consumer", 5), "the reader was flagged"
    t0 = time.monotonic()
    assert wait_until(lambda: ws_sessions(b) == 0, 12), "the stalled connection was never dropped"
    took = time.monotonic() - t0
    assert took < 9, took
    s.close()
    assert wait_until(lambda: metrics(b)["herald_tcp_connections"] <= 1, 5)   # only the /metrics request
    m = metrics(b)
    assert m['herald_disconnects_total{reason="slow_consumer"}'] == 1
    assert wait_until(lambda: open_fds(b.pid) <= fds0, 5), (open_fds(b.pid), fds0)
    # The socket is gone on the broker's side: draining it ends in EOF or a reset.
    slow.sock.settimeout(5)
    try:
        while slow.sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    slow.close()
    assert b.health().status_code == 200


def test_peer_that_never_answers_a_close_is_dropped(make_broker):
    """A client that reads the broker's close frame but never answers it is
    dropped 5 s later (libwebsockets' wait for the close answer)."""
    b = make_broker("--connect-timeout", "1s", "--ping-interval", "0")
    raw = RawWS(b.host, b.port)
    t0 = time.monotonic()
    op, payload = raw.recv_frame()
    assert op == 0x8 and struct.unpack("!H", payload[:2])[0] == 4002
    closed_at = time.monotonic()
    raw.sock.settimeout(10)
    try:
        end = raw.sock.recv(100)
    except ConnectionResetError:
        end = b""
    assert end == b""
    waited = time.monotonic() - closed_at
    assert 4 < waited < 8, "dropped %.1f s after the close frame" % waited
    assert time.monotonic() - t0 < 10
    raw.close()
    assert wait_until(lambda: ws_sessions(b) == 0, 3)


def take_frame(raw):
    """The next whole server frame in raw.rbuf as (opcode, payload), or None
    without reading from the socket."""
    buf = raw.rbuf
    if len(buf) < 2:
        return None
    n, off = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < off + n:
        return None
    raw.rbuf = buf[off + n:]
    return buf[0] & 0x0F, buf[off:off + n]


def test_slow_but_steady_reader_gets_everything_at_shutdown(make_broker):
    """The close timeout counts from a flushing session's last write: a
    client that reads slowly but keeps reading gets its whole queue and 1001
    at shutdown, even when that takes longer than 5 s."""
    b = make_broker("--shutdown-timeout", "30s", "--ping-interval", "0", "--send-queue-max", "16m")
    slow, _ = slow_subscriber(b, "steady:x")
    s = requests.Session()
    # More than the kernel's socket buffers hold (up to 4 MiB each way):
    # the broker still has some of it queued 5 s after the SIGTERM.
    n = 800
    for i in range(n):
        s.post(b.url("/api/publish"), json={"channel": "steady:x", "data": [i, "s" * 8000]}, timeout=5)
    b.send_signal(signal.SIGTERM)
    assert b.wait_log("SIGTERM received", 5)
    slow.sock.settimeout(10)
    got, code, t0 = [], None, time.monotonic()
    try:
        while True:
            # About 160 KB/s for 7 s, then as fast as it comes.
            slow_phase = time.monotonic() - t0 < 7
            if slow_phase:
                time.sleep(0.025)
            chunk = slow.sock.recv(4096 if slow_phase else 65536)
            assert chunk, "closed without a close frame after %d messages" % len(got)
            slow.rbuf += chunk
            while True:
                frame = take_frame(slow)
                if frame is None:
                    break
                op, payload = frame
                if op == 0x8:
                    raise Closed(struct.unpack("!H", payload[:2])[0])
                if op == 0x1:
                    got += [json.loads(l)["data"][0] for l in payload.decode().split("\n")]
    except Closed as e:
        code = e.code
    took = time.monotonic() - t0
    slow.close()
    assert code == 1001, (code, len(got), took)
    assert got == list(range(n)), len(got)
    assert took > 7, took
    assert b.wait(15) == 0


# ---------------------------------------------------------------- 3. liveness at the cap

def test_health_answered_at_the_connection_cap(make_broker):
    b = make_broker(max_connections=5)

    async def main():
        cs = await connect_many(b, 5)
        # Full: probes are still answered, on fresh connections, again and again.
        for _ in range(3):
            r = requests.get(b.url("/api/health"), timeout=5, headers={"Connection": "close"})
            assert r.status_code == 200, r.text
        st, _, body, _ = http_raw(b.host, b.port, b"GET /api/health/ready HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
        assert st == 200, body
        # Anything else in the reserve gets 503 with a documented error.
        r = requests.post(b.url("/api/publish"), json={"channel": "cap:x", "data": 1}, timeout=5)
        assert r.status_code == 503 and r.json()["error"]["code"] == 110, r.text
        with pytest.raises(ConnectionError) as e:
            RawWS(b.host, b.port)
        assert " 503 " in str(e.value)
        # The five are unaffected.
        for c in cs:
            await c.ping()
        m = metrics(b)
        assert m['herald_refused_connections_total{reason="over_capacity"}'] >= 2
        # Below the cap again, new clients come in.
        await cs[0].close()
        assert await asyncio.get_running_loop().run_in_executor(
            None, wait_until, lambda: ws_sessions(b) == 4, 5)
        c6 = await connect(b)
        await c6.ping()
        await close_all(cs[1:] + [c6])
    run(main())


def test_connections_beyond_the_reserve_are_refused_at_accept(make_broker):
    b = make_broker(max_connections=3)
    held = [socket.create_connection((b.host, b.port), timeout=5) for _ in range(3 + 8)]
    time.sleep(0.3)
    extra = socket.create_connection((b.host, b.port), timeout=5)
    extra.settimeout(3)
    try:
        assert extra.recv(10) == b""
    except ConnectionResetError:
        pass
    extra.close()
    for s in held:
        s.close()
    assert wait_until(lambda: b.health().status_code == 200, 5)


# ---------------------------------------------------------------- 4. small things

def test_rest_answer_is_one_write(make_broker):
    """Status line, headers and body of a REST answer leave in one send(): a
    broker killed between two writes left a client holding 200 OK and no body."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    b = make_broker()
    out = b.tmp_path / "strace.out"
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=sendto,write,writev,sendmsg", "-s", "200",
                           "-o", str(out), "-p", str(b.pid)], stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        if st.poll() is not None:
            pytest.skip("strace cannot attach: %s" % st.stderr.read().decode(errors="replace")[:200])
        s = requests.Session()
        for i in range(5):
            assert s.post(b.url("/api/publish"), json={"channel": "one:w", "data": i}, timeout=5).status_code == 200
            assert s.get(b.url("/api/health"), timeout=5).status_code == 200
        time.sleep(0.5)
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(10)
    trace = out.read_text(errors="replace")
    answers = [l for l in trace.splitlines() if "HTTP/1.1 200" in l]
    assert len(answers) >= 10, trace[-3000:]
    for l in answers:
        assert "\\r\\n\\r\\n{" in l, "headers without their body: " + l
    # And no write that is only a body.
    assert not [l for l in trace.splitlines() if re.search(r'send(to)?\(\d+, "\{"(channel|status)', l)]


def test_sighup_says_what_it_reloads(make_broker, tmp_path):
    conf = tmp_path / "h.conf"
    conf.write_text("[log]\nlevel = info\n[limits]\nmax_connections = 50\n")
    b = make_broker("--config", str(conf))
    b.send_signal(signal.SIGHUP)
    assert b.wait_log(r"SIGHUP: log level \w+, .*\(re-read \[log\] only: other settings take effect at the next start\)")


# ---------------------------------------------------------------- 5. out of descriptors

def test_descriptor_exhaustion_is_survived(make_broker, monkeypatch):
    """A broker whose RLIMIT_NOFILE is 256 sizes its connection cap below it;
    more clients than descriptors come: the extra ones are refused, the loop
    does not spin (CPU stays low while clients keep knocking), the clients in
    keep working, and new ones get in once others leave."""
    limit = 256

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    monkeypatch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, preexec_fn=low_limit))
    b = make_broker("--connects-per-second", "0")
    monkeypatch.undo()
    cap = limit - 64

    async def knock(n):
        """Tries @n raw connections; returns how many were refused."""
        refused = 0
        for _ in range(n):
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(b.host, b.port), 3)
                w.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                head = await asyncio.wait_for(r.read(200), 3)
                if b" 101 " not in head:
                    refused += 1
                w.transport.abort()
            except (OSError, asyncio.TimeoutError):
                refused += 1
        return refused

    async def main():
        clients = []
        for i in range(0, 300, 50):
            got = await asyncio.gather(*[connect(b) for _ in range(50)], return_exceptions=True)
            clients += [c for c in got if not isinstance(c, BaseException)]
        # Concurrent handshakes near the cap can be refused while others are
        # still counted, and a refused one is counted until the broker has
        # closed it: top up one at a time, waiting a moment after a refusal,
        # until the broker is full.
        for _ in range(40):
            if len(clients) == cap:
                break
            try:
                clients.append(await connect(b))
            except Exception:
                await asyncio.sleep(0.2)
        assert len(clients) == cap, (len(clients), cap)
        fds = open_fds(b.pid)
        assert fds < limit, fds
        # At the limit, clients keep knocking: the broker refuses them without spinning.
        cpu0, t0 = cpu_seconds(b.pid), time.monotonic()
        refused = await knock(60)
        await asyncio.sleep(2.0)
        cpu = cpu_seconds(b.pid) - cpu0
        wall = time.monotonic() - t0
        assert refused == 60
        assert cpu < 0.25 * wall, "broker CPU %.2f s in %.1f s at the descriptor limit" % (cpu, wall)
        for c in clients[:3]:
            await c.ping()
        assert b.health().status_code == 200           # a probe fits in the reserve
        # Half leave; newcomers get in.
        await close_all(clients[:100])
        assert await asyncio.get_running_loop().run_in_executor(
            None, wait_until, lambda: ws_sessions(b) <= len(clients) - 100, 10)
        fresh = await connect_many(b, 50)
        for c in fresh[:5]:
            await c.ping()
        await close_all(clients[100:] + fresh)
        return cpu, wall

    cpu, wall = run(main(), timeout=120)
    print("\nFD-LIMIT cpu %.3f s in %.1f s at the limit (%.1f%%)" % (cpu, wall, 100 * cpu / wall))
    assert "accept" not in b.log.lower() or b.log.lower().count("accept") < 20, "accept errors flood the log"
