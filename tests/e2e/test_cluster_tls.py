"""TLS to Redis ([engine] tls = on, docs/cluster.md#tls-to-redis): a CA, a
server certificate and a client certificate made with the openssl CLI, and
redis-server listening on its TLS port only (--port 0), so that nothing reaches
it in the clear. Two nodes share a channel over TLS; a wrong CA, a wrong
server name and a missing client certificate are refused (logged once, the
node answers 503 / 133 and keeps serving); a client certificate Redis asks
for is given; Redis restarted under a subscriber; a large publication through
the bridge's bounded buffers; tls_verify = off; the bridge's private socket
directory and its refusal of other processes; a connect that never answers
(no CPU spent waiting); an address given by name, checked by name; bad
options refused at start. Webhooks over TLS: the delivery threads' own
connections go through the bridge's third socket (signed posts from either
node, the lease given back through the bridge at a clean stop); Redis
restarted with events queued (delivery pauses, resumes, nothing
acknowledged lost); a wrong CA (no delivery, logged once, the events still
queued for a node that can reach Redis).
Each test starts its own redis-server and kills it by PID."""
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import connect, run, run_herald
from test_cluster import REDIS, free_port, pytestmark, rest_publish, wait_ready  # noqa: F401
from test_cluster_webhooks import in_order_once
from test_webhooks import pubs, receiver, status_until, verify, write_conf  # noqa: F401 (fixture)

OPENSSL = "openssl"


def openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=%s" % name, "-keyout", "%s.key" % name, "-out", "%s.crt" % name, cwd=d)


def make_cert(d, name, ca, ext):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=%s" % name,
            "-keyout", "%s.key" % name, "-out", "%s.csr" % name, cwd=d)
    (d / ("%s.ext" % name)).write_text(ext)
    openssl("x509", "-req", "-in", "%s.csr" % name, "-CA", "%s.crt" % ca, "-CAkey", "%s.key" % ca, "-CAcreateserial",
            "-days", "2", "-extfile", "%s.ext" % name, "-out", "%s.crt" % name, cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """ca (signs server and client), other (a CA that signed nothing here)."""
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other")
    make_cert(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:redis.test,DNS:localhost\n"
                                  "extendedKeyUsage=serverAuth\n")
    make_cert(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    (d / "garbage.pem").write_text("not a certificate\n")
    return d


class TlsRedis:
    """redis-server on a TLS port only; @auth_clients: whether it asks for a client certificate."""

    def __init__(self, tmp_path, pki, auth_clients=False, port=None):
        self.dir = tmp_path / ("redis-tls-%d" % time.monotonic_ns())
        self.dir.mkdir()
        self.pki = pki
        self.auth_clients = auth_clients
        self.port = port or free_port()
        self.proc = None

    def start(self):
        self.log = open(self.dir / "redis.log", "ab")
        p = self.pki
        self.proc = subprocess.Popen([REDIS, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                                      "--tls-cert-file", str(p / "server.crt"), "--tls-key-file", str(p / "server.key"),
                                      "--tls-ca-cert-file", str(p / "ca.crt"),
                                      "--tls-auth-clients", "yes" if self.auth_clients else "no",
                                      "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                                      "--dir", str(self.dir)],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        ctx = ssl.create_default_context(cafile=str(p / "ca.crt"))
        ctx.load_cert_chain(str(p / "client.crt"), str(p / "client.key"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as raw:
                    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: %s" % (self.dir / "redis.log").read_text())
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING over TLS")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.log.close()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port


@pytest.fixture
def tls_redis(tmp_path, pki):
    started = []

    def make(**kw):
        r = TlsRedis(tmp_path, pki, **kw).start()
        started.append(r)
        return r
    yield make
    for r in started:
        r.kill()


def tls_args(r, pki, *extra, ca="ca.crt"):
    return ["--engine", "redis", "--engine-address", r.address, "--engine-connect-timeout", "500ms",
            "--engine-command-timeout", "2s", "--engine-tls", "on", "--engine-tls-ca", str(pki / ca), *extra]


def client_cert(pki):
    return ["--engine-tls-cert", str(pki / "client.crt"), "--engine-tls-key", str(pki / "client.key")]


def not_ready(b, needle):
    """The node runs, is not ready, and refuses publications with 133 (REST and WebSocket)."""
    ready = requests.get(b.url("/api/health/ready"), timeout=5)
    assert ready.status_code == 503 and "redis" in " ".join(ready.json()["reasons"]), ready.text
    r = rest_publish(b, "news", 1)
    assert r.status_code == 503 and r.json()["error"]["code"] == 133, r.text

    async def ws():
        cl = await connect(b)
        m = await cl.request({"op": "publish", "id": 1, "channel": "news", "data": 1})
        assert m["op"] == "error" and m["code"] == 133, m
        await cl.ping()
    run(ws())
    assert b.proc.poll() is None
    assert re.search(needle, b.log), b.log[-3000:]


def error_lines(b, needle):
    return [ln for ln in b.log.splitlines() if needle in ln and re.search(r"\berror\b|ERROR", ln)]


def test_publication_crosses_nodes_over_tls(make_broker, tls_redis, pki):
    r = tls_redis()
    a = make_broker(*tls_args(r, pki))
    b = make_broker(*tls_args(r, pki, "--engine-tls-server-name", "redis.test"))
    wait_ready(a)
    wait_ready(b)
    for n in (a, b):
        assert n.wait_log(r"redis command connection up \(127\.0\.0\.1:%d, TLS\)" % r.port), n.log[-2000:]
        assert n.wait_log(r"redis subscription connection up \(127\.0\.0\.1:%d, TLS\)" % r.port), n.log[-2000:]

    async def go():
        sb = await connect(b)
        await sb.subscribe("news")
        pa = await connect(a)
        acked = [(await pa.publish("news", {"i": i}))["offset"] for i in range(5)]
        assert acked == [1, 2, 3, 4, 5]
        got = [await sb.next(5) for _ in range(5)]
        assert [(m["op"], m["offset"], m["data"]) for m in got] == [("pub", i + 1, {"i": i}) for i in range(5)]
        # And back the other way, over REST.
        sa = await connect(a)
        await sa.subscribe("back")
        assert rest_publish(b, "back", "hi").json()["offset"] == 1
        m = await sa.next(5)
        assert m["op"] == "pub" and m["data"] == "hi", m
        await sb.assert_silent(0.3)
    run(go())


@pytest.mark.skipif(socket.getaddrinfo("localhost", 1, type=socket.SOCK_STREAM)[0][4][0] != "127.0.0.1",
                    reason="localhost does not resolve to 127.0.0.1 first here")
def test_address_by_name_is_the_name_verified(make_broker, tls_redis, pki):
    """address = localhost:P: resolved off the loop, connected by address, and
    the certificate checked for the name (DNS:localhost in its SAN)."""
    r = tls_redis()
    args = tls_args(r, pki)
    args[args.index(r.address)] = "localhost:%d" % r.port
    b = make_broker(*args)
    wait_ready(b)
    assert rest_publish(b, "x", 1).json()["offset"] == 1
    # The same address with a name the certificate does not carry is refused.
    args += ["--engine-tls-server-name", "redis.example"]
    bad = make_broker(*args)
    needle = r"the certificate of redis\.example is not trusted: hostname mismatch"
    assert bad.wait_log(needle, 5), bad.log[-2000:]
    not_ready(bad, needle)


def test_large_publication_and_history_through_the_bridge(make_broker, tls_redis, pki):
    """Records larger than the bridge's 64 KiB buffers, both ways, intact."""
    r = tls_redis()
    a = make_broker(*tls_args(r, pki), "--max-message-size", "1m", "--ns", "big.history_size=10")
    b = make_broker(*tls_args(r, pki), "--max-message-size", "1m", "--ns", "big.history_size=10")
    wait_ready(a)
    wait_ready(b)
    blobs = ["%d:" % i + ("x%05d" % i) * (30000 + 7919 * i) for i in range(4)]

    async def go():
        sb = await connect(b)
        await sb.subscribe("big:1")
        pa = await connect(a)
        for blob in blobs:
            await pa.publish("big:1", blob)
        got = [await sb.next(10) for _ in blobs]
        assert [m["data"] for m in got] == blobs
    run(go())
    h = requests.get(b.url("/api/channels/big:1/history"), timeout=10).json()
    assert [p["data"] for p in h["publications"]] == blobs


@pytest.mark.parametrize("extra,needle", [
    ([], r"the certificate of 127\.0\.0\.1 is not trusted: (unable to get local issuer certificate|"
         r"self-signed certificate in certificate chain)"),
    (["--engine-tls-server-name", "wrong.test"], r"the certificate of wrong\.test is not trusted: "
                                                   r"hostname mismatch"),
], ids=["wrong-ca", "wrong-name"])
def test_untrusted_server_is_refused(make_broker, tls_redis, pki, extra, needle):
    r = tls_redis()
    ca = "other.crt" if not extra else "ca.crt"
    b = make_broker(*tls_args(r, pki, *extra, ca=ca))
    assert b.wait_log(needle, 5), b.log[-3000:]
    # Retries go on (backoff) but the error is logged once, not per retry.
    time.sleep(1.5)
    assert b.wait_log(r"redis over TLS: .*(not trusted)", 1)
    assert len(error_lines(b, "not trusted")) == 1, b.log[-3000:]
    not_ready(b, needle)
    assert "connection up" not in b.log


def test_client_certificate_required_and_given(make_broker, tls_redis, pki):
    r = tls_redis(auth_clients=True)
    without = make_broker(*tls_args(r, pki))
    assert without.wait_log(r"redis over TLS: TLS (session|handshake) with 127\.0\.0\.1:%d failed: "
                            r".*certificate required" % r.port, 5), without.log[-3000:]
    time.sleep(1)
    assert len(error_lines(without, "certificate required")) == 1, without.log[-3000:]
    not_ready(without, "certificate required")

    a = make_broker(*tls_args(r, pki, *client_cert(pki)))
    b = make_broker(*tls_args(r, pki, *client_cert(pki)))
    wait_ready(a)
    wait_ready(b)

    async def go():
        sb = await connect(b)
        await sb.subscribe("mtls")
        assert rest_publish(a, "mtls", 1).json()["offset"] == 1
        m = await sb.next(5)
        assert m["op"] == "pub" and m["data"] == 1, m
    run(go())
    # The node without a certificate is still refused, still alive.
    not_ready(without, "certificate required")


def test_redis_restart_nodes_reconnect(make_broker, tls_redis, pki):
    r = tls_redis()
    a = make_broker(*tls_args(r, pki))
    b = make_broker(*tls_args(r, pki))
    wait_ready(a)
    wait_ready(b)

    async def go():
        s = await connect(a)
        await s.subscribe("live")
        acked = [rest_publish(b, "live", i).json()["offset"] for i in range(3)]
        assert [(await s.next(5))["offset"] for _ in acked] == acked == [1, 2, 3]
        r.kill()
        assert b.wait_log("redis command connection to 127.0.0.1 lost; reconnecting", 5), b.log[-2000:]
        rr = rest_publish(b, "live", "down")
        assert rr.status_code == 503 and rr.json()["error"]["code"] == 133
        assert b.wait_log(r"redis over TLS: cannot connect to redis at 127\.0\.0\.1:%d: Connection refused"
                          % r.port, 5), b.log[-2000:]
        time.sleep(1.5)                          # several retries, one error line
        assert len(error_lines(b, "Connection refused")) == 1, b.log[-3000:]
        r.start()
        wait_ready(a)
        wait_ready(b)
        h = requests.get(b.url("/api/channels/live/history"), timeout=5).json()
        assert [p["offset"] for p in h["publications"]] == acked
        assert rest_publish(b, "live", 3).json()["offset"] == 4
        m = await s.next(5)
        assert m["op"] == "pub" and m["offset"] == 4 and m["data"] == 3, m
        await s.assert_silent(0.3)
    run(go())
    # Down again: the same failure is news again after a working spell.
    r.kill()
    assert b.wait_log(r"(?s)connection up.*Connection refused.*connection up.*Connection refused", 5)
    assert len(error_lines(b, "Connection refused")) == 2, b.log[-3000:]


def test_verify_off_warns_and_connects(make_broker, tls_redis, pki):
    r = tls_redis()
    b = make_broker(*tls_args(r, pki, "--engine-tls-verify", "off", ca="other.crt"))
    wait_ready(b)
    assert re.search(r"tls_verify = off: the Redis server's certificate is not checked", b.log), b.log[-2000:]
    assert rest_publish(b, "x", 1).json()["offset"] == 1


def bridge_sockets(pid):
    """The paths of the unix sockets process @pid listens on in its bridge directory."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    out = []
    for ln in Path("/proc/net/unix").read_text().splitlines()[1:]:
        f = ln.split()
        if len(f) >= 8 and f[6] in inodes and "herald-redis-tls-" in f[7]:
            out.append(f[7])
    return sorted(set(out))


def test_bridge_directory_is_private_and_others_refused(make_broker, tls_redis, pki):
    r = tls_redis()
    b = make_broker(*tls_args(r, pki))
    wait_ready(b)
    socks = bridge_sockets(b.pid)
    assert len(socks) == 3, socks                # command, subscription, other threads' connections
    d = Path(socks[0]).parent
    assert all(Path(x).parent == d for x in socks)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    # Another process (this one, same user) is refused and the node goes on.
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(3)
        s.connect(socks[0])
        try:
            s.sendall(b"PING\r\n")
            assert s.recv(64) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass                               # closed before or while we wrote
    assert b.wait_log(r"redis over TLS: refused a connection to .* from process %d" % os.getpid()), b.log[-2000:]
    assert rest_publish(b, "x", 1).json()["offset"] == 1
    assert b.stop() == 0
    assert not d.exists()


@pytest.mark.parametrize("args,needle", [
    (["--engine-tls-ca", "/nonexistent/ca.pem"], "[engine] tls_ca /nonexistent/ca.pem cannot be read: No such file"),
    (["--engine-tls-ca", "{pki}/garbage.pem"], "[engine] tls_ca {pki}/garbage.pem: no CA certificate could be loaded"),
    (["--engine-tls-cert", "{pki}/client.crt"], "[engine] tls_cert and tls_key go together"),
    (["--engine-tls-key", "{pki}/client.key"], "[engine] tls_cert and tls_key go together"),
    (["--engine-tls-cert", "{pki}/client.crt", "--engine-tls-key", "{pki}/server.key"],
     "[engine] tls_key {pki}/server.key is not the private key of tls_cert {pki}/client.crt"),
    (["--engine-tls-cert", "{pki}/garbage.pem", "--engine-tls-key", "{pki}/client.key"],
     "[engine] tls_cert {pki}/garbage.pem: not a PEM certificate"),
    (["--engine-tls-cert", "{pki}/client.crt", "--engine-tls-key", "{pki}/garbage.pem"],
     "[engine] tls_key {pki}/garbage.pem: not a PEM private key"),
    (["--engine-tls-cert", "{pki}/client.crt", "--engine-tls-key", "/nonexistent/k.pem"],
     "[engine] tls_key /nonexistent/k.pem cannot be read"),
    (["--engine-address", "unix:/tmp/redis.sock"], "[engine] tls = on needs a HOST:PORT address"),
    (["--engine-tls-verify", "maybe"], "expected on or off"),
])
def test_refused_options(args, needle, pki, tmp_path):
    args = [a.replace("{pki}", str(pki)) for a in args]
    r = run_herald(["--data-dir", str(tmp_path / "d"), "--port", "0", "--engine", "redis", "--engine-tls", "on", *args])
    assert r.returncode != 0, r.stdout + r.stderr
    assert needle.replace("{pki}", str(pki)) in r.stdout + r.stderr, r.stdout + r.stderr


def test_tls_options_need_tls_on(pki, tmp_path):
    r = run_herald(["--data-dir", str(tmp_path / "d"), "--port", "0", "--engine", "redis",
                    "--engine-tls-ca", str(pki / "ca.crt")])
    assert r.returncode != 0 and "[engine] tls_ca is only used with tls = on" in r.stdout + r.stderr, r.stderr
    conf = tmp_path / "h.conf"
    conf.write_text("[engine]\ntype = redis\ntls = on\naddress = unix:/tmp/r.sock\n")
    r = run_herald(["--config", str(conf), "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0 and "%s:3: [engine] tls = on needs a HOST:PORT" % conf in r.stdout + r.stderr, r.stderr


def cpu_seconds(pid):
    f = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def test_connect_that_never_answers_costs_no_cpu(make_broker, pki):
    """A Redis port whose accept queue is full drops the SYN: the bridge's TCP
    connect stays in progress while hiredis has already written its handshake.
    The node waits without spinning, and engine.connect_timeout gives up."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):                      # fill the accept queue (never accepted)
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.2)
        b = make_broker("--engine", "redis", "--engine-address", "127.0.0.1:%d" % port, "--engine-tls", "on",
                        "--engine-tls-ca", str(pki / "ca.crt"), "--engine-connect-timeout", "2s")
        time.sleep(0.3)
        before, t0 = cpu_seconds(b.pid), time.monotonic()
        time.sleep(1.5)
        used = (cpu_seconds(b.pid) - before) / (time.monotonic() - t0)
        assert used < 0.2, "the node used %.0f%% of a core waiting for a connect" % (used * 100)
        assert b.wait_log(r"cannot connect to redis at 127\.0\.0\.1:%d \(command connection\): no answer within "
                          r"engine\.connect_timeout" % port, 5), b.log[-2000:]
        assert requests.get(b.url("/api/health/ready"), timeout=5).status_code == 503
    finally:
        for c in fillers:
            c.close()
        lst.close()


# ---- webhooks over TLS (docs/cluster.md#tls-to-redis) ----

def hook_node(make_broker, r, pki, conf, *extra, ca="ca.crt"):
    return make_broker("--config", str(conf), *tls_args(r, pki, "--engine-webhook-lease", "3s", *extra, ca=ca))


def test_webhooks_delivered_over_tls(make_broker, tls_redis, pki, receiver, tmp_path):
    """Publications on both nodes reach the receiver signed, once each, in
    order; the deliverer stopped cleanly gives its lease back through the
    bridge (the other node takes over well within the 3 s lease), and the
    stop does not wait on the loop it runs on."""
    r = tls_redis()
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url)
    a = hook_node(make_broker, r, pki, conf)
    b = hook_node(make_broker, r, pki, conf)
    wait_ready(a)
    wait_ready(b)
    for i in range(6):
        assert rest_publish((a, b)[i % 2], "orders:t", {"n": i}).status_code == 200
    evs = rcv.wait_events(lambda e: len(set(pubs(e, "orders:t"))) == 6, timeout=15)
    assert in_order_once(evs, "orders:t") == list(range(6)), evs
    for headers, body, _ in rcv.requests:
        verify(headers, body)
    holder = [x for x in (a, b) if "this node delivers now" in x.log]
    assert len(holder) == 1, [x.log[-1500:] for x in (a, b)]
    other = b if holder[0] is a else a
    assert status_until(other, lambda st: st["hook"]["queue_depth"] == 0)["hook"]["queue_depth"] == 0
    t0 = time.monotonic()
    assert holder[0].stop() == 0, holder[0].log[-3000:]
    assert time.monotonic() - t0 < 2.0, "stopping the deliverer took %.1fs" % (time.monotonic() - t0)
    assert other.wait_log("this node delivers now", 1.5), other.log[-2000:]
    assert rest_publish(other, "orders:t", {"n": 6}).status_code == 200
    evs = rcv.wait_events(lambda e: len(set(pubs(e, "orders:t"))) == 7, timeout=10)
    assert in_order_once(evs, "orders:t") == list(range(7))
    assert "redis unreachable" not in a.log + b.log
    assert not error_lines(a, "redis over TLS") and not error_lines(b, "redis over TLS")


def test_webhook_delivery_resumes_after_redis_restart_over_tls(make_broker, tls_redis, pki, receiver, tmp_path):
    state = {"ok": False}
    rcv = receiver(lambda n: 200 if state["ok"] else 503)
    r = tls_redis()
    conf = write_conf(tmp_path, rcv.url, "max_attempts = 1000\n")
    a = hook_node(make_broker, r, pki, conf)
    b = hook_node(make_broker, r, pki, conf)
    wait_ready(a)
    wait_ready(b)
    for i in range(10):
        assert rest_publish((a, b)[i % 2], "orders:r", {"n": i}).status_code == 200
    st = status_until(a, lambda s: s["hook"]["queue_depth"] == 10 and s["hook"]["failing_channels"] == 1)
    assert st["hook"]["queue_depth"] == 10, st
    r.kill()
    rr = rest_publish(a, "orders:r", {"n": -1})
    assert rr.status_code == 503 and rr.json()["error"]["code"] == 133, rr.text
    time.sleep(0.6)                                   # a post in flight at the kill ends (timeout 500ms)
    state["ok"] = True
    time.sleep(1.5)
    assert rcv.events() == [], "delivered without Redis"
    assert any(re.search(r"hook: redis unreachable \(.*\): delivery pauses", x.log) for x in (a, b))
    r.start()                                         # the same port and append-only file
    wait_ready(a)
    wait_ready(b)
    assert rest_publish(b, "orders:r", {"n": 10}).status_code == 200
    evs = rcv.wait_events(lambda e: len(set(pubs(e, "orders:r"))) == 11, timeout=20)
    assert in_order_once(evs, "orders:r") == list(range(11))
    assert all(x["data"]["n"] != -1 for x in evs)
    for headers, body, _ in rcv.requests:
        verify(headers, body)
    assert any(x.wait_log("hook: redis reachable again", 1) for x in (a, b))
    st = status_until(b, lambda s: s["hook"]["queue_depth"] == 0)["hook"]
    assert st["queue_depth"] == 0 and st["dead_letters"] == 0, st


def test_webhooks_with_a_wrong_ca_deliver_nothing_and_keep_the_queue(make_broker, tls_redis, pki, receiver,
                                                                      tmp_path):
    """Events queued by a node that reaches Redis (its receiver down) and
    stopped; a node with the wrong CA and a live receiver delivers nothing,
    logs the certificate once and redis unreachable for the webhook, answers
    and stops cleanly; the events are still queued for a node that can
    reach Redis."""
    r = tls_redis()
    (tmp_path / "dead").mkdir()
    dead = write_conf(tmp_path / "dead", "http://127.0.0.1:%d/hook" % free_port(), "max_attempts = 1000\n")
    a = hook_node(make_broker, r, pki, dead)
    wait_ready(a)
    for i in range(3):
        assert rest_publish(a, "orders:w", {"n": i}).status_code == 200
    assert status_until(a, lambda s: s["hook"]["queue_depth"] == 3)["hook"]["queue_depth"] == 3
    assert a.stop() == 0, a.log[-3000:]

    rcv = receiver()
    live = write_conf(tmp_path, rcv.url)
    b = hook_node(make_broker, r, pki, live, ca="other.crt")
    needle = r"the certificate of 127\.0\.0\.1 is not trusted"
    assert b.wait_log(needle, 5), b.log[-3000:]
    assert b.wait_log(r"hook: redis unreachable \(.*\): delivery pauses until it is back", 5), b.log[-3000:]
    time.sleep(2.0)                                   # delivery rounds and reconnects, several
    assert rcv.events() == [], "delivered with an untrusted Redis certificate"
    assert len(error_lines(b, "not trusted")) == 1, b.log[-3000:]
    not_ready(b, needle)
    st = requests.get(b.url("/api/webhooks"), timeout=5)
    assert st.status_code == 200 and st.json()["webhooks"][0]["name"] == "hook", st.text
    assert b.stop() == 0, b.log[-3000:]

    c = hook_node(make_broker, r, pki, dead)
    wait_ready(c)
    st = status_until(c, lambda s: s["hook"]["queue_depth"] == 3)["hook"]
    assert st["queue_depth"] == 3 and st["dead_letters"] == 0, st
