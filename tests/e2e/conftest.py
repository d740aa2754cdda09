"""End-to-end fixtures for Herald: start the real binary, talk to it.

The broker is the binary named by HERALD_BIN (default <repo>/build/broker/herald),
started on 127.0.0.1 with --port 0 and a fresh --data-dir under tmp_path. It is
stopped by PID with SIGTERM at teardown; a non-zero exit status or a sanitizer
report in its log fails the test.

Tests are plain functions that drive asyncio through run(); every wait has a
timeout so that no test can hang.
"""
import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import msgpack
import pytest
import requests
import websockets
from websockets.typing import Subprotocol

REPO = Path(__file__).resolve().parents[2]
HERALD_BIN = os.environ.get("HERALD_BIN", str(REPO / "build" / "broker" / "herald"))

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
RECV_TIMEOUT = 5.0
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "WARNING: ThreadSanitizer")
LISTEN_RE = re.compile(r"listening on (\S+) port (\d+)")

# Sanitizer builds: make reports land in the log and fail the exit status.
_SAN_ENV = {
    "ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:exitcode=66",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=0",
    "TSAN_OPTIONS": "halt_on_error=0:exitcode=66:second_deadlock_stack=1",
}


def herald_env():
    env = dict(os.environ)
    for k, v in _SAN_ENV.items():
        env.setdefault(k, v)
    return env


def run_herald(args, timeout=10.0, cwd=None):
    """Runs herald to completion (for --help, bad flags, bad configs)."""
    return subprocess.run([HERALD_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=herald_env(), cwd=cwd)


def flag_args(flags):
    """{'max_message_size': 1024} -> ['--max-message-size', '1024']."""
    out = []
    for k, v in flags.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


class Broker:
    """One running herald process."""

    def __init__(self, tmp_path, args=(), data_dir=None, name="herald"):
        self.tmp_path = Path(tmp_path)
        self.data_dir = Path(data_dir) if data_dir else self.tmp_path / (name + "-data")
        self.log_path = self.tmp_path / (name + ".log")
        self.args = list(args)
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self.returncode = None
        self.stopped = False

    # -- process ---------------------------------------------------------
    def start(self, timeout=START_TIMEOUT):
        # Started again after a stop(): a new process, whose exit teardown must check.
        self.stopped = False
        self.returncode = None
        cmd = [HERALD_BIN, "--bind", self.host, "--port", "0", "--data-dir", str(self.data_dir), *self.args]
        self._logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT,
                                     env=herald_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.log)
            if m:
                self.port = int(m.group(2))
                return self
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                self.stopped = True
                raise RuntimeError("herald exited with %s before listening:\n%s" % (self.returncode, self.log))
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait(5)
        self.stopped = True
        raise RuntimeError("herald did not log 'listening on' within %.0fs:\n%s" % (timeout, self.log))

    @property
    def pid(self):
        return self.proc.pid

    @property
    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=5.0):
        """Waits until the log matches the regex @pattern; returns the match or None."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log)
            if m or time.monotonic() >= deadline:
                return m
            time.sleep(0.02)

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait(self, timeout=STOP_TIMEOUT):
        """Waits for exit; returns the exit status or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.stopped = True
        self._logf.close()
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signals the broker and waits; kills it if it does not exit in time.
        Returns the exit status (None if it had to be killed)."""
        if self.stopped:
            return self.returncode
        if self.proc.poll() is None:
            self.send_signal(sig)
        rc = self.wait(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait(5)
            self.stopped = True
            self._logf.close()
            self.returncode = None
        return rc

    def sanitizer_reports(self):
        log = self.log
        return [m for m in SANITIZER_MARKS if m in log]

    def check_clean_exit(self):
        """Stops the broker if needed and fails unless it exited 0 without sanitizer reports."""
        rc = self.stop()
        problems = []
        if rc != 0:
            problems.append("herald exit status %r (expected 0)" % (rc,))
        reports = self.sanitizer_reports()
        if reports:
            problems.append("sanitizer reports in the log: %s" % ", ".join(reports))
        if problems:
            pytest.fail("; ".join(problems) + "\n--- herald log ---\n" + self.log[-20000:], pytrace=False)

    # -- addresses -------------------------------------------------------
    @property
    def ws_url(self):
        return "ws://%s:%d/ws" % (self.host, self.port)

    def url(self, path):
        return "http://%s:%d%s" % (self.host, self.port, path)

    @property
    def http_url(self):
        return self.url("")

    def health(self, timeout=5.0):
        return requests.get(self.url("/api/health"), timeout=timeout)

    def publish_rest(self, channel, data, timeout=5.0):
        r = requests.post(self.url("/api/publish"), json={"channel": channel, "data": data}, timeout=timeout)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()


@pytest.fixture
def make_broker(tmp_path):
    """Factory: make_broker('--max-message-size', '1024', ...) or make_broker(max_message_size=1024)."""
    brokers = []

    def make(*args, data_dir=None, name=None, **flags):
        b = Broker(tmp_path, [*args, *flag_args(flags)], data_dir=data_dir, name=name or "herald%d" % len(brokers))
        brokers.append(b)
        return b.start()

    yield make
    failures = []
    for b in brokers:
        try:
            b.check_clean_exit()
        except pytest.fail.Exception as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def broker(make_broker):
    return make_broker()


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory):
    """One broker for a whole module, for tests that only need default settings and
    use their own channel names."""
    b = Broker(tmp_path_factory.mktemp("shared"), name="shared").start()
    yield b
    b.check_clean_exit()


# -- engines --------------------------------------------------------------
# Protocol tests that take `engine_broker` run twice: on the embedded LMDB
# engine and on the Redis engine ([engine] type = redis, one node). The redis
# variant shares one redis-server per test module; each test gets a key
# prefix of its own (--engine-prefix), so tests never see each other's keys.

_engine_prefixes = itertools.count(1)


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory):
    """One redis-server for a whole module, killed by PID at its end."""
    from test_cluster import REDIS, Redis
    if REDIS is None:
        pytest.skip("redis-server is not installed (scripts/deps.sh)")
    r = Redis(tmp_path_factory.mktemp("redis")).start()
    yield r
    r.kill()


class Engine:
    """The engine a test runs on: name "lmdb" or "redis"; args, the broker flags it needs."""

    def __init__(self, name, redis=None, prefix=None):
        self.name = name
        self.redis = redis
        self.prefix = prefix

    @property
    def args(self):
        if not self.redis:
            return []
        from test_cluster import engine_args
        return [*engine_args(self.redis), "--engine-prefix", self.prefix]


@pytest.fixture(params=["lmdb", "redis"])
def engine(request):
    if request.param == "lmdb":
        return Engine("lmdb")
    return Engine("redis", request.getfixturevalue("module_redis"), "t%d:" % next(_engine_prefixes))


@pytest.fixture
def engine_broker(engine, make_broker):
    """make_broker() on the test's engine; under redis it returns once the node
    is connected to Redis (ready). Restarting with the same flags in the same
    test finds the same channels (same data dir, or same Redis and prefix)."""
    def make(*args, **kw):
        b = make_broker(*engine.args, *args, **kw)
        if engine.redis:
            from test_cluster import wait_ready
            assert b.wait_log("engine: redis at .* channels are shared with the other nodes", 5), b.log[-2000:]
            wait_ready(b)
        return b
    return make


# -- asyncio --------------------------------------------------------------

_live_clients = []


def run(coro, timeout=30.0):
    """Runs @coro to completion with an overall timeout. WebSocket clients left open
    (a failed assertion skips their close) are aborted, so a failure costs no close wait."""
    async def guarded():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            for c in _live_clients:
                if c.ws.transport is not None and not c.ws.closed:
                    c.ws.transport.abort()
            _live_clients.clear()
    return asyncio.run(guarded())


# -- WebSocket client -----------------------------------------------------

def encode(enc, msg):
    if enc == "msgpack":
        return msgpack.packb(msg, use_bin_type=True)
    return json.dumps(msg, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class Closed(Exception):
    def __init__(self, code, reason=""):
        super().__init__("connection closed with %s %r" % (code, reason))
        self.code = code
        self.reason = reason


class Client:
    """A Herald WebSocket client that undoes coalescing: next() returns one message."""

    def __init__(self, ws, enc):
        self.ws = ws
        self.enc = enc
        self.buf = []
        self.frames = []          # (type, raw) of every frame received
        self.client_id = None
        self._next_id = 1000
        _live_clients.append(self)

    def new_id(self):
        self._next_id += 1
        return self._next_id

    async def send(self, msg):
        await self.ws.send(encode(self.enc, msg))

    async def send_raw(self, data):
        """Sends str as a text frame and bytes as a binary frame, or an iterable as fragments."""
        await self.ws.send(data)

    def _split(self, frame):
        if isinstance(frame, str):
            self.frames.append(("text", frame))
            assert self.enc == "json", "text frame on a %s connection" % self.enc
            return [json.loads(line) for line in frame.split("\n")]
        self.frames.append(("binary", frame))
        assert self.enc == "msgpack", "binary frame on a %s connection" % self.enc
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
        unpacker.feed(frame)
        msgs = list(unpacker)
        assert msgs, "empty MessagePack frame"
        return msgs

    async def next(self, timeout=RECV_TIMEOUT):
        """The next message; raises Closed when the connection closed, TimeoutError if none."""
        if not self.buf:
            try:
                frame = await asyncio.wait_for(self.ws.recv(), timeout)
            except websockets.ConnectionClosed as e:
                raise Closed(e.code, e.reason) from None
            except asyncio.TimeoutError:
                raise AssertionError("no message within %.1fs" % timeout) from None
            self.buf.extend(self._split(frame))
        return self.buf.pop(0)

    async def expect(self, timeout=RECV_TIMEOUT, **fields):
        """The next message, which must have every given field with the given value."""
        m = await self.next(timeout)
        for k, v in fields.items():
            assert k in m and same(m[k], v), "expected %s=%r in %r" % (k, v, m)
        return m

    async def request(self, msg, timeout=RECV_TIMEOUT):
        """Sends @msg and returns the next message (its reply)."""
        await self.send(msg)
        return await self.next(timeout)

    async def collect(self, n, timeout=RECV_TIMEOUT):
        """The next @n messages (each within @timeout of the previous)."""
        return [await self.next(timeout) for _ in range(n)]

    async def assert_silent(self, within=0.3):
        """Asserts that no message arrives within @within seconds."""
        if self.buf:
            raise AssertionError("unexpected message %r" % self.buf[0])
        try:
            frame = await asyncio.wait_for(self.ws.recv(), within)
        except asyncio.TimeoutError:
            return
        raise AssertionError("unexpected frame %r" % (frame,))

    async def ping(self, timeout=RECV_TIMEOUT):
        """An application-level ping; asserts the pong."""
        i = self.new_id()
        await self.send({"op": "ping", "id": i})
        m = await self.next(timeout)
        assert m == {"op": "pong", "id": i}, m
        return m

    async def subscribe(self, channel, timeout=RECV_TIMEOUT):
        i = self.new_id()
        await self.send({"op": "subscribe", "id": i, "channel": channel})
        m = await self.next(timeout)
        assert m.get("op") == "subscribed" and m.get("id") == i and m.get("channel") == channel, m
        return m

    async def unsubscribe(self, channel, timeout=RECV_TIMEOUT):
        i = self.new_id()
        await self.send({"op": "unsubscribe", "id": i, "channel": channel})
        m = await self.next(timeout)
        assert m == {"op": "unsubscribed", "id": i, "channel": channel}, m
        return m

    async def publish(self, channel, data, timeout=RECV_TIMEOUT):
        i = self.new_id()
        await self.send({"op": "publish", "id": i, "channel": channel, "data": data})
        m = await self.next(timeout)
        assert m.get("op") == "published" and m.get("id") == i and m.get("channel") == channel, m
        return m

    async def read_until_closed(self, timeout=RECV_TIMEOUT):
        """Reads messages until the connection closes; returns (messages, close code)."""
        msgs = []
        while True:
            try:
                msgs.append(await self.next(timeout))
            except Closed as e:
                return msgs, e.code

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            pass


SUBPROTOCOL = {"json": "herald.json", "msgpack": "herald.msgpack", None: None}


async def ws_connect(broker_or_url, enc="json", subprotocols=None, path="/ws", **kw):
    """Opens a WebSocket; enc 'json', 'msgpack' or None (no subprotocol, speaks JSON)."""
    url = broker_or_url if isinstance(broker_or_url, str) else "ws://%s:%d%s" % (
        broker_or_url.host, broker_or_url.port, path)
    if subprotocols is None:
        subprotocols = [SUBPROTOCOL[enc]] if enc else None
    ws = await websockets.connect(url, subprotocols=[Subprotocol(s) for s in subprotocols] if subprotocols else None,
                                  open_timeout=5, close_timeout=3, max_size=None, ping_interval=None,
                                  **kw)
    return Client(ws, enc or "json")


async def connect(broker, enc="json", **kw):
    """A client that has sent connect and got connected."""
    c = await ws_connect(broker, enc, **kw)
    await c.send({"op": "connect", "id": 1})
    m = await c.next()
    assert m.get("op") == "connected" and m.get("id") == 1, m
    c.client_id = m["client"]
    return c


async def connect_many(broker, n, enc="json"):
    return list(await asyncio.gather(*[connect(broker, enc) for _ in range(n)]))


async def close_all(clients):
    await asyncio.gather(*[c.close() for c in clients], return_exceptions=True)


def same(a, b):
    """Equality that also tells bool from int and int from float."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# -- a raw WebSocket client, for frames the websockets library will not send ----

class RawWS:
    """A minimal blocking WebSocket client over a plain socket."""

    def __init__(self, host, port, path="/ws", protocols=("herald.json",), rcvbuf=None, timeout=5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.rbuf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (path, host, port, key))
        if protocols:
            req += "Sec-WebSocket-Protocol: %s\r\n" % ", ".join(protocols)
        self.sock.sendall((req + "\r\n").encode())
        while b"\r\n\r\n" not in self.rbuf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.rbuf += chunk
        head, self.rbuf = self.rbuf.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n")[0].decode()
        if " 101 " not in self.status_line + " ":
            raise ConnectionError("handshake refused: " + self.status_line)

    def send_frame(self, opcode, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        hdr = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(hdr + mask + masked)

    def send_text(self, payload):
        self.send_frame(0x1, payload if isinstance(payload, bytes) else payload.encode())

    def send_json(self, msg):
        self.send_text(json.dumps(msg))

    def _need(self, n):
        while len(self.rbuf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the broker without a close frame")
            self.rbuf += chunk

    def recv_frame(self):
        """Returns (opcode, payload) of the next frame."""
        self._need(2)
        b0, b1 = self.rbuf[0], self.rbuf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n = struct.unpack("!H", self.rbuf[2:4])[0]
            off = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack("!Q", self.rbuf[2:10])[0]
            off = 10
        assert not b1 & 0x80, "server frames must not be masked"
        self._need(off + n)
        payload = self.rbuf[off:off + n]
        self.rbuf = self.rbuf[off + n:]
        return b0 & 0x0F, payload

    def recv_messages(self):
        """The JSON messages of the next data frame; raises Closed on a close frame."""
        while True:
            op, payload = self.recv_frame()
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(code, payload[2:].decode(errors="replace"))
            if op == 0x1:
                return [json.loads(line) for line in payload.decode().split("\n")]
            if op == 0x2:
                unpacker = msgpack.Unpacker(raw=False)
                unpacker.feed(payload)
                return list(unpacker)
            # ping/pong/continuation: ignore (the broker does not fragment)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def slow_subscriber(broker, channel, **kw):
    """A RawWS with a 4 KiB receive buffer, connected and subscribed to @channel,
    that reads nothing more until the test says so: the slow consumer that
    queue-limit, shutdown and state-convergence tests need. Returns it and
    the subscribed reply."""
    slow = RawWS(broker.host, broker.port, **{"rcvbuf": 4096, **kw})   # rcvbuf=0: the usual buffer
    slow.send_json({"op": "connect", "id": 1})
    slow.send_json({"op": "subscribe", "id": 2, "channel": channel})
    got = []
    while len(got) < 2:
        got += slow.recv_messages()
    assert [m["op"] for m in got] == ["connected", "subscribed"], got
    return slow, got[1]

def http_raw(host, port, request, timeout=3.0):
    """Sends @request (bytes, in one send) and reads until the broker closes or the
    timeout. Returns (status, headers, body, extra): the first response, parsed by
    its Content-Length, and whatever bytes followed it."""
    s = socket.create_connection((host, port), timeout=timeout)
    data = b""
    try:
        s.sendall(request)
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if b"\r\n\r\n" not in data:
        raise ConnectionError("no complete HTTP response: %r" % data[:200])
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", len(rest)))
    return status, headers, rest[:n], rest[n:]


def tcp_closed_without_handshake(host, port, timeout=3.0):
    """Opens a TCP connection and sends a WebSocket upgrade; True if the broker
    closed it without answering."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Protocol: herald.json\r\n\r\n")
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            return True
        return data == b""
    except (BrokenPipeError, ConnectionResetError):
        return True
    finally:
        s.close()


# -- tokens and state deltas, shared by the tests that need them --------------

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs256_token(secret, sub, **claims):
    """A connection token for user @sub signed with @secret, valid for an hour."""
    c = {"sub": sub, "exp": int(time.time()) + 3600, **claims}
    si = b64u(b'{"alg":"HS256","typ":"JWT"}') + "." + b64u(json.dumps(c).encode())
    return si + "." + b64u(hmac.new(secret, si.encode(), hashlib.sha256).digest())


def apply_delta(state, data):
    """Applies a state channel's delta ({"changes":[...],"reset":b}) to a client-side dict."""
    if data.get("reset"):
        state.clear()
    for ch in data["changes"]:
        if ch.get("deleted"):
            state.pop(ch["key"], None)
        else:
            state[ch["key"]] = {"value": ch["value"], "version": ch["version"]}


def scrape_metrics(b):
    """GET /metrics of broker @b as {sample name with its labels: value}
    (test_operators.py has the strict reader that checks the format)."""
    out = {}
    for line in requests.get(b.url("/metrics"), timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


async def reply(c, msg, timeout=5.0):
    """Sends @msg with an id (one is given if it has none) and returns the message
    carrying that id. Events that arrive meanwhile (join, leave, pub, signal) are
    kept, in order, in c.events."""
    msg = dict(msg)
    msg.setdefault("id", c.new_id())
    await c.send(msg)
    deadline = time.monotonic() + timeout
    if not hasattr(c, "events"):
        c.events = []
    while True:
        m = await c.next(timeout=max(0.1, deadline - time.monotonic()))
        if m.get("id") == msg["id"]:
            return m
        c.events.append(m)


async def drain(c, within=0.3):
    """Every message that arrives within @within seconds of the previous one."""
    out = []
    try:
        while True:
            out.append(await c.next(timeout=within))
    except AssertionError:
        return out
