"""Several Herald nodes sharing channels through Redis ([engine] type = redis,
docs/cluster.md): cross-node fan-out in one order with the same offsets,
recovery with `since` on another node, history from Redis (and the same
history test against the LMDB engine), Redis down at start and restarted
under a subscriber, a node killed, and the configurations the redis engine
refuses. Each test starts its own redis-server on a free loopback port with
a temporary directory and kills it by PID."""
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import Broker, connect, run, run_herald

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (scripts/deps.sh)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """One redis-server: appendfsync always, so what it acknowledged survives kill -9."""

    def __init__(self, tmp_path, port=None):
        self.dir = tmp_path / ("redis-%d" % time.monotonic_ns())
        self.dir.mkdir()
        self.port = port or free_port()
        self.proc = None

    def start(self):
        self.log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.log.close()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path).start()
    yield r
    r.kill()


def engine_args(redis_or_address):
    addr = redis_or_address if isinstance(redis_or_address, str) else redis_or_address.address
    return ["--engine", "redis", "--engine-address", addr, "--engine-connect-timeout", "500ms",
            "--engine-command-timeout", "2s"]


def wait_ready(b, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(b.url("/api/health/ready"), timeout=2).status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("node not ready within %.0fs:\n%s" % (timeout, b.log[-3000:]))


@pytest.fixture
def nodes(make_broker, redis):
    def make(n=3, *extra):
        out = [make_broker(*engine_args(redis), *extra) for _ in range(n)]
        for b in out:
            wait_ready(b)
        return out
    return make


def rest_publish(b, channel, data):
    return requests.post(b.url("/api/publish"), json={"channel": channel, "data": data}, timeout=5)


def history(b, channel, **params):
    r = requests.get(b.url("/api/channels/%s/history" % channel), params=params, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


async def pubs(client, n, timeout=5.0):
    out = []
    while len(out) < n:
        m = await client.next(timeout)
        assert m["op"] == "pub", m
        out.append(m)
    return out


def test_cross_node_same_offsets_same_order(nodes):
    a, b, c = nodes(3)

    async def go():
        sa, sb = await connect(a), await connect(b)
        await sa.subscribe("news")
        await sb.subscribe("news")
        pub = await connect(b)
        acked = []
        for i in range(10):
            if i % 2:
                r = rest_publish(c, "news", {"i": i})
                assert r.status_code == 200, r.text
                acked.append(r.json()["offset"])
            else:
                acked.append((await pub.publish("news", {"i": i}))["offset"])
        assert acked == list(range(1, 11))
        got_a, got_b = await pubs(sa, 10), await pubs(sb, 10)
        assert [(m["offset"], m["data"]) for m in got_a] == [(o, {"i": o - 1}) for o in range(1, 11)]
        assert [(m["offset"], m["data"]) for m in got_b] == [(m["offset"], m["data"]) for m in got_a]
        await sa.assert_silent(0.3)
        # The same epoch on every node, in the subscribed reply and in history.
        late = [await connect(n) for n in (a, b, c)]
        epochs = {(await cl.subscribe("news"))["epoch"] for cl in late}
        assert len(epochs) == 1 and {history(n, "news")["epoch"] for n in (a, b, c)} == epochs
        assert {(await cl.subscribe("news2"))["offset"] for cl in late} == {0}
    run(go())


def test_reconnect_to_another_node_recovers_exactly_once(nodes):
    a, b, c = nodes(3)

    async def go():
        s = await connect(a)
        sub = await s.subscribe("room:1")
        for i in range(3):
            assert rest_publish(b, "room:1", i).status_code == 200
        seen = await pubs(s, 3)
        last = seen[-1]["offset"]
        await s.close()
        epoch = history(c, "room:1")["epoch"]
        # The epoch the first subscription drew is the one publications on other nodes keep.
        assert sub["epoch"] == epoch and sub["offset"] == 0
        for i in range(3, 6):
            assert rest_publish(b, "room:1", i).status_code == 200
        s2 = await connect(c)
        r = await s2.request({"op": "subscribe", "id": 1, "channel": "room:1", "since": {"epoch": epoch, "offset": last}})
        assert r["op"] == "subscribed" and r["recovered"] is True and r["offset"] == 6, r
        assert [p["offset"] for p in r["publications"]] == [4, 5, 6]
        # From where the first subscribe left it (it had seen nothing): everything, recovered.
        s4 = await connect(b)
        r = await s4.request({"op": "subscribe", "id": 1, "channel": "room:1",
                              "since": {"epoch": sub["epoch"], "offset": sub["offset"]}})
        assert r["recovered"] is True and [p["offset"] for p in r["publications"]] == [1, 2, 3, 4, 5, 6], r
        await s4.close()
        assert rest_publish(a, "room:1", 6).status_code == 200
        live = await pubs(s2, 1)
        assert live[0]["offset"] == 7
        await s2.assert_silent(0.3)
        # Another epoch: not recovered, the kept tail instead.
        s3 = await connect(b)
        r = await s3.request({"op": "subscribe", "id": 1, "channel": "room:1",
                              "since": {"epoch": "0000000000000000", "offset": 2}})
        assert r["recovered"] is False and r["epoch"] == epoch
    run(go())


@pytest.mark.parametrize("engine", ["lmdb", "redis"])
def test_history_answers_like_lmdb(engine, make_broker, tmp_path):
    r = Redis(tmp_path).start() if engine == "redis" else None
    try:
        extra = engine_args(r) if r else []
        a = make_broker(*extra, "--ns", "hist.history_size=5")
        b = make_broker(*extra, "--ns", "hist.history_size=5") if r else a
        if r:
            wait_ready(a)
            wait_ready(b)
        for i in range(7):
            assert rest_publish(b, "hist:x", {"n": i}).json()["offset"] == i + 1
        h = history(a, "hist:x")
        assert h["offset"] == 7 and len(h["epoch"]) == 16
        assert [(p["offset"], p["data"]) for p in h["publications"]] == [(o, {"n": o - 1}) for o in range(3, 8)]
        page = history(a, "hist:x", limit=2, reverse="true")
        assert [p["offset"] for p in page["publications"]] == [7, 6] and page["next"] == {"before": 6, "reverse": True}
        page = history(a, "hist:x", since=4, limit=2)
        assert [p["offset"] for p in page["publications"]] == [5, 6] and page["next"] == {"since": 6}
        assert history(a, "hist:x", before=4)["publications"][0]["offset"] == 3
        empty = history(a, "hist:never")
        assert empty["publications"] == [] and empty["offset"] == 0
        for body in ({"data": "root"}, {"data": "re1", "reply_to": 1}, {"data": "other"},
                     {"data": "re2", "reply_to": 1}):
            r_ = requests.post(b.url("/api/publish"), json={"channel": "hist:t", **body}, timeout=5)
            assert r_.status_code == 200, r_.text
        bad_reply = requests.post(b.url("/api/publish"), json={"channel": "hist:t", "data": 0, "reply_to": 9},
                                  timeout=5)
        assert bad_reply.status_code == 400 and bad_reply.json()["error"]["code"] == 103, bad_reply.text
        th = history(a, "hist:t", thread=1)
        assert [(p["offset"], p["data"], p["reply_to"]) for p in th["publications"]] == [(2, "re1", 1), (4, "re2", 1)]
        assert th["next"] is None and th["offset"] == 4
        bad = requests.get(a.url("/api/channels/hist:x/history"), params={"limit": 0}, timeout=5)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == 103

        async def ws_history():
            cl = await connect(a)
            m = await cl.request({"op": "history", "id": 1, "channel": "hist:x", "limit": 3})
            assert m["op"] == "history" and [p["offset"] for p in m["publications"]] == [3, 4, 5]
            m = await cl.request({"op": "subscribe", "id": 2, "channel": "hist:x", "history": 2})
            assert m["offset"] == 7 and [p["offset"] for p in m["publications"]] == [6, 7]
            epoch = m["epoch"]
            # Recovery from a position the channel never had: not recovered, the kept tail.
            c2 = await connect(b)
            m = await c2.request({"op": "subscribe", "id": 3, "channel": "hist:x",
                                  "since": {"epoch": epoch, "offset": 1000}})
            assert m["recovered"] is False and m["offset"] == 7, m
            assert [p["offset"] for p in m["publications"]] == [3, 4, 5, 6, 7]
            m = await c2.request({"op": "subscribe", "id": 4, "channel": "hist:y",
                                  "since": {"epoch": epoch, "offset": 4}})
            assert m["recovered"] is False and m["offset"] == 0 and m["publications"] == [], m
            m = await c2.request({"op": "subscribe", "id": 5, "channel": "hist:z", "since": {"epoch": "x", "offset": 4}})
            assert m["op"] == "error" and m["code"] == 103, m
        run(ws_history())
    finally:
        if r:
            r.kill()


def test_redis_unreachable_at_start(make_broker, tmp_path):
    port = free_port()
    b = make_broker(*engine_args("127.0.0.1:%d" % port))
    assert b.wait_log(r"cannot connect to redis at 127\.0\.0\.1")
    assert b.health().status_code == 200
    ready = requests.get(b.url("/api/health/ready"), timeout=5)
    assert ready.status_code == 503 and "redis" in " ".join(ready.json()["reasons"])
    metrics = requests.get(b.url("/metrics"), timeout=5).text
    assert 'herald_engine_up{connection="command"} 0' in metrics
    r = rest_publish(b, "news", 1)
    assert r.status_code == 503 and r.json()["error"]["code"] == 133
    h = requests.get(b.url("/api/channels/news/history"), timeout=5)
    assert h.status_code == 503 and h.json()["error"]["code"] == 133

    async def ws_refused():
        cl = await connect(b)
        m = await cl.request({"op": "publish", "id": 1, "channel": "news", "data": 1})
        assert m["op"] == "error" and m["code"] == 133, m
        m = await cl.request({"op": "subscribe", "id": 2, "channel": "news"})
        assert m["op"] == "error" and m["code"] == 133, m
        await cl.ping()
    run(ws_refused())
    red = Redis(tmp_path, port).start()
    try:
        wait_ready(b)
        r = rest_publish(b, "news", 1)
        assert r.status_code == 200 and r.json()["offset"] == 1
        metrics = requests.get(b.url("/metrics"), timeout=5).text
        assert 'herald_engine_up{connection="subscription"} 1' in metrics
    finally:
        red.kill()


def test_redis_restart_keeps_acked_and_resumes(nodes, redis):
    a, b = nodes(2)

    async def go():
        s = await connect(a)
        await s.subscribe("live")
        acked = [rest_publish(b, "live", i).json()["offset"] for i in range(5)]
        assert [p["offset"] for p in await pubs(s, 5)] == acked == [1, 2, 3, 4, 5]
        redis.kill()
        r = rest_publish(b, "live", "down")
        assert r.status_code == 503 and r.json()["error"]["code"] == 133
        redis.start()
        wait_ready(a)
        wait_ready(b)
        h = history(b, "live")
        assert [p["offset"] for p in h["publications"]] == acked
        assert rest_publish(b, "live", 5).json()["offset"] == 6
        m = await s.next(5)
        assert m["op"] == "pub" and m["offset"] == 6 and m["data"] == 5, m
        await s.assert_silent(0.3)
    run(go())


def test_redis_kill_under_load_loses_no_acked_publication(nodes, redis):
    """A publisher keeps publishing over REST while Redis is killed (kill -9, with
    appendfsync always) and started again: every acknowledged publication is in
    history afterwards, and the subscriber on the other node gets each of them
    once, in order (what was published but not acknowledged may be there too)."""
    import threading
    a, b = nodes(2)
    acked, refused, stop = [], [], threading.Event()

    def publisher():
        i = 0
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    r = http.post(b.url("/api/publish"), json={"channel": "load", "data": i}, timeout=5)
                except requests.RequestException:
                    continue
                if r.status_code == 200:
                    acked.append((r.json()["offset"], i))
                else:
                    assert r.status_code == 503 and r.json()["error"]["code"] == 133, r.text
                    refused.append(i)
                    time.sleep(0.01)
                i += 1

    async def go():
        s = await connect(a)
        await s.subscribe("load")
        t = threading.Thread(target=publisher)
        t.start()
        try:
            while len(acked) < 20:
                await asyncio.sleep(0.01)
            redis.kill()
            while len(refused) < 5:
                await asyncio.sleep(0.01)
            redis.start()
            wait_ready(a)
            wait_ready(b)
            n = len(acked)
            while len(acked) < n + 20:
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            t.join(10)
        assert len(acked) < 100, "history_size 100 must hold the whole run"
        last = acked[-1][0]
        h = {p["offset"]: p["data"] for p in history(a, "load", limit=1000)["publications"]}
        assert all(h.get(off) == data for off, data in acked), (acked, h)
        got = []
        while not got or got[-1]["offset"] < last:
            m = await s.next(10)
            assert m["op"] == "pub", m
            got.append(m)
        offs = [m["offset"] for m in got]
        assert offs == list(range(1, last + 1)), offs
        assert all(h[m["offset"]] == m["data"] for m in got)
    run(go(), timeout=60)


def test_gap_after_history_trim_is_reported(nodes, redis):
    a, b = nodes(2, "--ns", "tiny.history_size=2")

    async def go():
        s = await connect(a)
        await s.subscribe("tiny:t")
        assert rest_publish(b, "tiny:t", 0).json()["offset"] == 1
        assert (await pubs(s, 1))[0]["offset"] == 1
        # Hide publications from node A: its subscription connection drops
        # (CLIENT KILL TYPE pubsub), and three publications are made meanwhile.
        with socket.create_connection(("127.0.0.1", redis.port)) as r:
            r.sendall(b"CLIENT PAUSE 2000 WRITE\r\n")
            r.recv(64)
            r.sendall(b"CLIENT KILL TYPE pubsub\r\n")
            r.recv(64)
            r.sendall(b"CLIENT UNPAUSE\r\n")
            r.recv(64)
        for i in range(1, 5):
            rest_publish(b, "tiny:t", i)
        msgs = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not any(m["op"] == "pub" and m["offset"] == 5 for m in msgs):
            msgs.append(await s.next(8))
        ops = [(m["op"], m.get("offset")) for m in msgs]
        # Either a clean resume (nothing was missed) or "unrecovered" before the kept tail.
        got = [o for op, o in ops if op == "pub"]
        if any(op == "unrecovered" for op, _ in ops):
            # Told first, with where it was and where it is now; what follows continues that.
            k = next(i for i, m in enumerate(msgs) if m["op"] == "unrecovered")
            u = msgs[k]
            assert u["last"]["offset"] == 1 and u["offset"] >= 2, msgs
            after = [m["offset"] for m in msgs[k + 1:]]
            assert after == list(range(u["offset"] + 1, 6)), msgs
        else:
            assert got == [2, 3, 4, 5], msgs
    run(go())


def test_killed_node_client_recovers_elsewhere(make_broker, redis, tmp_path):
    b = make_broker(*engine_args(redis))
    victim = Broker(tmp_path, engine_args(redis), name="victim").start()
    try:
        wait_ready(victim)
        wait_ready(b)

        async def go():
            s = await connect(victim)
            await s.subscribe("orders:feed")
            for i in range(3):
                assert rest_publish(b, "orders:feed", i).status_code == 200
            last = (await pubs(s, 3))[-1]["offset"]
            epoch = history(b, "orders:feed")["epoch"]
            victim.send_signal(signal.SIGKILL)
            victim.wait(5)
            for i in range(3, 5):
                assert rest_publish(b, "orders:feed", i).status_code == 200
            s2 = await connect(b)
            r = await s2.request({"op": "subscribe", "id": 1, "channel": "orders:feed",
                                  "since": {"epoch": epoch, "offset": last}})
            assert r["recovered"] is True and [p["data"] for p in r["publications"]] == [3, 4]
        run(go())
    finally:
        victim.stop()


WEBHOOK_ARGS = ["--webhook", "w.url=http://127.0.0.1:9/x", "--webhook", "w.secret=webhook-secret-0123456789",
                "--webhook", "w.events=publication"]


@pytest.mark.parametrize("args,needle", [
    (["--engine-presence-heartbeat", "50ms"], "[engine] presence_heartbeat must be at least 100ms"),
    (["--engine-tls", "on", "--engine-address", "unix:/run/redis.sock"], "[engine] tls = on needs a HOST:PORT"),
    (["--engine-webhook-lease", "500ms"], "[engine] webhook_lease must be at least 1s"),
    # Webhooks under tls = on start (test_tls_with_webhooks_starts), bad TLS options are still refused.
    (["--engine-tls", "on", "--engine-tls-ca", "/nonexistent/ca.pem", *WEBHOOK_ARGS],
     "[engine] tls_ca /nonexistent/ca.pem cannot be read"),
    (["--engine-tls", "on", "--engine-address", "unix:/run/redis.sock", *WEBHOOK_ARGS],
     "[engine] tls = on needs a HOST:PORT"),
    (["--engine-address", "localhost"], "expected HOST:PORT"),
    (["--engine-address", "127.0.0.1:0"], "the port must be a number from 1 to 65535"),
    (["--engine-address", "unix:relative.sock"], "unix:PATH needs an absolute path"),
])
def test_refused_configs(args, needle, tmp_path):
    r = run_herald(["--data-dir", str(tmp_path / "d"), "--port", "0", "--engine", "redis", *args])
    assert r.returncode != 0, r.stdout + r.stderr
    assert needle in r.stdout + r.stderr, r.stdout + r.stderr


def test_tls_with_webhooks_starts(tmp_path):
    """[engine] tls = on with a [webhook] starts (its delivery threads reach
    Redis through the TLS bridge, test_cluster_tls.py delivers over it); with
    no Redis at the address it runs unready and stops cleanly and at once,
    its delivery thread not waiting for the loop that the stop runs on."""
    b = Broker(tmp_path, ["--engine", "redis", "--engine-address", "127.0.0.1:%d" % free_port(),
                          "--engine-connect-timeout", "500ms", "--engine-command-timeout", "2s",
                          "--engine-tls", "on", "--engine-tls-verify", "off", *WEBHOOK_ARGS], name="tlshook").start()
    try:
        assert b.wait_log(r"w: delivering to http://127\.0\.0\.1:9/x \(queued in redis", 5), b.log[-2000:]
        assert b.wait_log(r"w: redis unreachable", 5), b.log[-2000:]
        assert requests.get(b.url("/api/health/ready"), timeout=5).status_code == 503
    finally:
        t0 = time.monotonic()
        assert b.stop() == 0, b.log[-3000:]
        assert time.monotonic() - t0 < 2.0, "stopping took %.1fs" % (time.monotonic() - t0)


def test_bad_engine_type_and_config_file(tmp_path):
    r = run_herald(["--data-dir", str(tmp_path / "d"), "--engine", "memcached"])
    assert r.returncode != 0 and "expected lmdb or redis" in r.stdout + r.stderr
    conf = tmp_path / "h.conf"
    conf.write_text("[engine]\ntype = redis\naddress = 10.0.0.1\n")
    r = run_herald(["--config", str(conf), "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0 and "h.conf" in r.stderr + r.stdout and "[engine] address" in r.stdout + r.stderr
    # The embedded namespace with seat maps is not predefined under redis; the broker starts.
    conf.write_text("[engine]\ntype = redis\naddress = 127.0.0.1:%d\n[namespace room]\nhistory_size = 3\n" % free_port())
    b = Broker(tmp_path, ["--config", str(conf)], name="embedded").start()
    try:
        assert b.health().status_code == 200
    finally:
        assert b.stop() == 0


def test_lmdb_default_has_no_engine(make_broker):
    b = make_broker()
    assert "cluster:" not in b.log
    assert "herald_engine_up" not in requests.get(b.url("/metrics"), timeout=5).text
    assert requests.get(b.url("/api/health/ready"), timeout=5).status_code == 200


def test_resubscribe_while_unsubscribe_in_flight(nodes):
    """The last subscriber leaves and another comes back at once: the node's
    UNSUBSCRIBE and SUBSCRIBE in Redis cross, and publications still arrive."""
    a, b = nodes(2)

    async def go():
        s, t = await connect(a), await connect(a)
        for round_ in range(20):
            await s.send({"op": "subscribe", "id": 1, "channel": "flip"})
            await s.send({"op": "unsubscribe", "id": 2, "channel": "flip"})
            await t.send({"op": "subscribe", "id": 3, "channel": "flip"})
            # A subscribe unsubscribed before the node knew the channel's position
            # gets no reply, as a replay unsubscribed before its read (docs/cluster.md).
            first = await s.next()
            if first["op"] == "subscribed":
                first = await s.next()
            assert first["op"] == "unsubscribed", first
            assert (await t.next())["op"] == "subscribed"
            r = rest_publish(b, "flip", round_)
            assert r.status_code == 200, r.text
            m = await t.next(5)
            assert m["op"] == "pub" and m["data"] == round_, m
            await t.request({"op": "unsubscribe", "id": 4, "channel": "flip"})
        await s.assert_silent(0.2)
    run(go())


def test_sse_stream_across_nodes_and_resume(nodes):
    """A Server-Sent Events stream on node A gets what node B publishes, with ids
    naming the shared epoch, and resumes from its last id on node C."""
    from test_sse import SSE
    a, b, c = nodes(3)
    for i in range(2):
        assert rest_publish(b, "feed", {"n": i}).status_code == 200
    s = SSE(a, ["feed", "other"])
    sub = [s.event(), s.event()]
    assert {e["event"] for e in sub} == {"subscribed"}
    epoch = next(e["data"]["epoch"] for e in sub if e["data"]["channel"] == "feed")
    # A channel never published has an epoch too (drawn by its first subscription), as with LMDB.
    other = next(e["data"]["epoch"] for e in sub if e["data"]["channel"] == "other")
    assert len(other) == 16 and other != epoch
    for i in range(2, 5):
        assert rest_publish(b, "feed", {"n": i}).status_code == 200
    got = s.events(3)
    assert [e["data"]["offset"] for e in got] == [3, 4, 5]
    assert got[-1]["id"] == "5:%s,0:%s" % (epoch, other)
    s.close()
    assert rest_publish(b, "feed", {"n": 5}).status_code == 200
    s2 = SSE(c, ["feed", "other"], last_id=got[0]["id"])
    ev = s2.events(3)
    assert [e["data"]["offset"] for e in ev] == [4, 5, 6]
    s2.close()


def test_history_ttl_trims_the_stream(nodes, redis):
    """Entries older than the namespace's history_ttl leave the stream with the next
    publication, and the stream itself expires with them; offsets go on."""
    a, = nodes(1, "--ns", "brief.history_ttl=1s")
    for i in range(2):
        assert rest_publish(a, "brief:x", i).status_code == 200
    time.sleep(1.2)
    assert rest_publish(a, "brief:x", 2).json()["offset"] == 3
    h = history(a, "brief:x")
    assert [p["offset"] for p in h["publications"]] == [3] and h["offset"] == 3
    with socket.create_connection(("127.0.0.1", redis.port)) as r:
        r.sendall(b"PTTL herald:s:brief:x\r\n")
        ttl = int(r.recv(64)[1:].strip())
    assert 0 < ttl <= 1000


def redis_cmd(port, *args):
    """One command in RESP over a fresh connection; returns the raw reply."""
    req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args))
    with socket.create_connection(("127.0.0.1", port), 2) as s:
        s.sendall(req)
        time.sleep(0.05)
        return s.recv(65536)


def test_script_flush_password_database_prefix(make_broker, tmp_path):
    """NOSCRIPT after SCRIPT FLUSH is answered by loading the script again; AUTH,
    SELECT and the key prefix are used; a wrong password keeps the node not ready."""
    r = Redis(tmp_path).start()
    try:
        redis_cmd(r.port, "CONFIG", "SET", "requirepass", "s3cret-pw")
        bad = make_broker(*engine_args(r), "--engine-password", "wrong")
        assert bad.wait_log(r"redis command connection: AUTH/SELECT/PING refused")
        assert requests.get(bad.url("/api/health/ready"), timeout=5).status_code == 503
        assert rest_publish(bad, "news", 1).json()["error"]["code"] == 133
        a = make_broker(*engine_args(r), "--engine-password", "s3cret-pw", "--engine-database", "3",
                        "--engine-prefix", "app1:")
        wait_ready(a)
        assert rest_publish(a, "news", 1).json()["offset"] == 1
        assert b"+OK" in redis_cmd(r.port, "AUTH", "s3cret-pw")
        with socket.create_connection(("127.0.0.1", r.port), 2) as s:
            s.sendall(b"AUTH s3cret-pw\r\nSELECT 3\r\nHGET app1:m:news offset\r\nSCRIPT FLUSH\r\n")
            time.sleep(0.1)
            assert s.recv(4096) == b"+OK\r\n+OK\r\n$1\r\n1\r\n+OK\r\n"
        assert rest_publish(a, "news", 2).json()["offset"] == 2
        assert [p["data"] for p in history(a, "news")["publications"]] == [1, 2]
    finally:
        r.kill()


def test_unix_socket_address(make_broker, tmp_path):
    sock = "/tmp/herald-redis-%d.sock" % os.getpid()
    d = tmp_path / "redis-unix"
    d.mkdir()
    log = open(d / "log", "wb")
    p = subprocess.Popen([REDIS, "--port", "0", "--unixsocket", sock, "--save", "", "--dir", str(d)],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        a = make_broker(*engine_args("unix:" + sock))
        wait_ready(a)
        assert rest_publish(a, "news", "via unix").json()["offset"] == 1
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(5)
        log.close()
        if os.path.exists(sock):
            os.unlink(sock)


def test_idempotency_key_across_nodes(nodes):
    """A retry of a publication with its idempotency key is answered by any node
    with the first offset and published once; the key with another request is 409
    (132); keys need a namespace that keeps history, as with LMDB."""
    a, b, c = nodes(3, "--ns", "live.history=off")

    async def go():
        s = await connect(c)
        await s.subscribe("pay:1")
        body = {"channel": "pay:1", "data": {"paid": True}}
        hdr = {"Idempotency-Key": "order-1-paid"}
        r1 = requests.post(a.url("/api/publish"), json=body, headers=hdr, timeout=5)
        assert r1.status_code == 200 and "duplicate" not in r1.json(), r1.text
        r2 = requests.post(b.url("/api/publish"), json=body, headers=hdr, timeout=5)
        assert r2.status_code == 200 and r2.json() == {**r1.json(), "duplicate": True}, r2.text
        r3 = requests.post(b.url("/api/publish"), json={**body, "data": {"paid": False}}, headers=hdr, timeout=5)
        assert r3.status_code == 409 and r3.json()["error"]["code"] == 132, r3.text
        assert r3.json()["error"]["offset"] == r1.json()["offset"]
        ws = await connect(b)
        m = await ws.request({"op": "publish", "id": 1, "channel": "pay:1", "data": {"paid": True},
                              "idempotency_key": "order-1-paid"})
        assert m["op"] == "published" and m["duplicate"] is True and m["offset"] == r1.json()["offset"], m
        assert (await s.next())["offset"] == r1.json()["offset"]
        await s.assert_silent(0.3)
        r4 = requests.post(a.url("/api/publish"), json={"channel": "live:x", "data": 1}, headers=hdr, timeout=5)
        assert r4.status_code == 400 and r4.json()["error"]["code"] == 103, r4.text
        assert len(history(c, "pay:1")["publications"]) == 1
    run(go())


def test_redis_losing_its_data_is_reported(nodes, redis):
    """Redis loses everything (FLUSHALL, or a restart without persistence): the next
    publication starts a new epoch at offset 1; subscribers are told where they were
    and that the new log starts, then get it."""
    a, b = nodes(2)

    async def go():
        s = await connect(a)
        await s.subscribe("wiped")
        for i in range(3):
            assert rest_publish(b, "wiped", i).status_code == 200
        old = await pubs(s, 3)
        old_epoch = history(b, "wiped")["epoch"]
        assert b"+OK" in redis_cmd(redis.port, "FLUSHALL")
        assert rest_publish(b, "wiped", "new").json()["offset"] == 1
        u = await s.next(5)
        assert u["op"] == "unrecovered" and u["offset"] == 0, u
        assert u["last"] == {"epoch": old_epoch, "offset": old[-1]["offset"]} and u["epoch"] != old_epoch
        m = await s.next(5)
        assert m["op"] == "pub" and m["offset"] == 1 and m["data"] == "new", m
        assert rest_publish(b, "wiped", "next").json()["offset"] == 2
        assert (await s.next(5))["offset"] == 2
        await s.assert_silent(0.3)
    run(go())


@pytest.mark.parametrize("engine", ["lmdb", "redis"])
def test_edits_check_the_author_like_lmdb(engine, make_broker, tmp_path):
    """An edit or delete by a non-moderator must be of the sender's own publication,
    checked where the publication is kept: the same answers on both engines."""
    r = Redis(tmp_path).start() if engine == "redis" else None
    try:
        extra = [*engine_args(r)] if r else []
        a = make_broker(*extra, "--ns", "ed.history_size=3")
        b = make_broker(*extra, "--ns", "ed.history_size=3") if r else a
        if r:
            wait_ready(a)
            wait_ready(b)

        async def go():
            alice, bob = await connect(a), await connect(b)
            first = await alice.request({"op": "publish", "id": 1, "channel": "ed:x", "data": "hi"})
            assert first["op"] == "published", first
            m = await alice.request({"op": "publish", "id": 2, "channel": "ed:x", "data": "hi!", "kind": "edit",
                                     "reply_to": first["offset"]})
            assert m["op"] == "published", m
            m = await bob.request({"op": "publish", "id": 3, "channel": "ed:x", "data": None, "kind": "delete",
                                   "reply_to": first["offset"]})
            assert m["op"] == "error" and m["code"] == 114 and "another user's" in m["reason"], m
            for i in range(3):
                assert (await alice.request({"op": "publish", "id": 10 + i, "channel": "ed:x", "data": i}))["op"] == \
                    "published"
            m = await alice.request({"op": "publish", "id": 20, "channel": "ed:x", "data": "late", "kind": "edit",
                                     "reply_to": first["offset"]})
            assert m["op"] == "error" and m["code"] == 114 and "no longer stored" in m["reason"], m
            m = await alice.request({"op": "publish", "id": 21, "channel": "ed:x", "data": 1, "kind": "edit",
                                     "reply_to": 99})
            assert m["op"] == "error" and m["code"] == 103, m
            assert [p["offset"] for p in history(b, "ed:x")["publications"]] == [3, 4, 5]
        run(go())
    finally:
        if r:
            r.kill()
