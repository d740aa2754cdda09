"""The herald process: command line, config file, data directory, start-up failures,
clean shutdown, connection cap."""
import asyncio
import resource
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import (slow_subscriber, HERALD_BIN, Closed, close_all, connect, connect_many, herald_env, http_raw,
                      run, run_herald, tcp_closed_without_handshake, ws_connect)

FLAGS = ["--bind", "--port", "--data-dir", "--shutdown-timeout", "--max-message-size", "--send-queue-max",
         "--max-connections", "--max-subscriptions", "--max-channels", "--connect-timeout", "--ping-interval",
         "--write-batch-max", "--log-level", "--log-format", "--config", "--help", "--version"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---------------------------------------------------------------- command line

def test_version():
    for flag in ("--version", "-V"):
        r = run_herald([flag])
        assert r.returncode == 0, r
        assert r.stdout == "herald 0.1.0 (data format 1, history format 1)\n", r.stdout
        assert r.stderr == ""


def test_help_mentions_every_flag():
    for flag in ("--help", "-h"):
        r = run_herald([flag])
        assert r.returncode == 0, r
        for f in FLAGS:
            assert f in r.stdout, "%s missing from --help" % f
        assert r.stderr == ""


def test_help_wins_over_bad_flags(tmp_path):
    r = run_herald(["--port", "0", "--data-dir", str(tmp_path / "d"), "--help"])
    assert r.returncode == 0 and "--max-message-size" in r.stdout
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("args,needle", [
    (["--bogus"], "--bogus"),
    (["--max-mesage-size", "1k"], "--max-mesage-size"),
    (["extra"], "extra"),
    (["-x"], "-x"),
    (["--port"], "--port"),
    (["--port", "abc"], "abc"),
    (["--port", "70000"], "70000"),
    (["--port", "-1"], "-1"),
    (["--max-message-size", "12q"], "12q"),
    (["--max-message-size=100"], "max_message_size"),
    (["--send-queue-max", "1k"], "send_queue_max"),
    (["--connect-timeout", "soon"], "soon"),
    (["--log-level", "loud"], "loud"),
    (["--max-subscriptions", "0"], "max_subscriptions"),
    (["--config"], "--config"),
])
def test_bad_command_line_exits_2(tmp_path, args, needle):
    r = run_herald(["--data-dir", str(tmp_path / "d"), *args])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr, r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "d").exists(), "a refused command line must not touch the data dir"


def test_flag_equals_form(make_broker):
    b = make_broker("--max-subscriptions=1")

    async def main():
        c = await connect(b)
        await c.subscribe("a")
        m = await c.request({"op": "subscribe", "id": 2, "channel": "b"})
        assert m["code"] == 110
        await c.close()
    run(main())


# ---------------------------------------------------------------- config file

def write(path, text):
    path.write_text(text)
    return str(path)


def test_config_file_applied_and_flags_override(tmp_path, make_broker):
    port = free_port()
    conf = write(tmp_path / "herald.conf", (
        "; Herald test config\n"
        "# comment\n"
        "[server]\n"
        "port = %d\n"
        "\n"
        "[limits]\n"
        "max_message_size = 1k\n"
        "send_queue_max = 64k\n"
        "max_subscriptions = 1\n"
        "[websocket]\n"
        "ping_interval = 7s\n" % port))
    # The config's port is used when no flag is given.
    proc = subprocess.Popen([HERALD_BIN, "--config", conf, "--data-dir", str(tmp_path / "d1")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=herald_env())
    try:
        deadline = time.monotonic() + 10
        line = b""
        while time.monotonic() < deadline and b"listening on" not in line:
            line = proc.stdout.readline()
            if not line:
                break
        assert ("port %d " % port).encode() in line, line
        r = requests.get("http://127.0.0.1:%d/api/health" % port, timeout=5)
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0

    # Flags win over the file; the rest of the file still applies.
    b = make_broker("--config", conf, "--max-subscriptions", "2")

    async def main():
        c = await connect(b)
        m = await c.request({"op": "connect", "id": 9})
        assert m["code"] == 106
        c2 = await ws_connect(b)
        await c2.send({"op": "connect", "id": 1})
        assert (await c2.next())["ping_interval"] == 7
        await c.subscribe("one")
        await c.subscribe("two")
        m = await c.request({"op": "subscribe", "id": 3, "channel": "three"})
        assert m["code"] == 110
        # max_message_size = 1k from the file: a 2000-byte message closes with 1009.
        await c.send({"op": "publish", "channel": "one", "data": "x" * 2000})
        msgs, code = await c.read_until_closed()
        assert code == 1009, (code, msgs)
        await c2.close()
    run(main())


def test_config_flag_forms(tmp_path, make_broker):
    conf = write(tmp_path / "c.ini", "[limits]\nmax_subscriptions = 1\n")
    for args in (["-c", conf], ["--config=" + conf]):
        b = make_broker(*args)

        async def main():
            c = await connect(b)
            await c.subscribe("a")
            assert (await c.request({"op": "subscribe", "id": 2, "channel": "b"}))["code"] == 110
            await c.close()
        run(main())
        b.check_clean_exit()


BAD_CONFIGS = [
    # (name, text, line, words the message must contain)
    ("unknown_key", "[server]\nport = 0\n\n[limits]\nmax_mesage_size = 1k\n", 5, ["unknown key", "max_mesage_size"]),
    ("unknown_section", "; c\n[server]\nport = 0\n[limit]\nmax_message_size = 1k\n", 5, ["unknown section", "limit"]),
    ("bad_port", "[server]\n\nport = abc\n", 3, ["port", "abc"]),
    ("port_range", "[server]\nport = 65536\n", 2, ["port", "65536"]),
    ("bad_size", "[limits]\n# size\nmax_message_size = 12q\n", 3, ["max_message_size", "12q"]),
    ("bad_duration", "[websocket]\nconnect_timeout = 10 s\n", 2, ["connect_timeout"]),
    ("bad_level", "[log]\nlevel = chatty\n", 2, ["level", "chatty"]),
    ("key_outside_section", "port = 0\n", 1, ["section"]),
    ("syntax", "[server]\nport = 0\nthis is not ini\n", 3, ["syntax"]),
]


@pytest.mark.parametrize("name,text,line,words", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_file(tmp_path, name, text, line, words):
    conf = write(tmp_path / "bad.conf", text)
    r = run_herald(["--config", conf, "--port", "0", "--data-dir", str(tmp_path / "d")])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "%s:%d:" % (conf, line) in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert not (tmp_path / "d").exists()


def test_config_cross_check(tmp_path):
    conf = write(tmp_path / "x.conf", "[limits]\nmax_message_size = 1m\nsend_queue_max = 64k\n")
    r = run_herald(["--config", conf, "--port", "0", "--data-dir", str(tmp_path / "d")])
    assert r.returncode == 2 and conf in r.stderr and "send_queue_max" in r.stderr, r.stderr


def test_missing_config_file(tmp_path):
    path = str(tmp_path / "nope.conf")
    r = run_herald(["--config", path, "--port", "0", "--data-dir", str(tmp_path / "d")])
    assert r.returncode == 2, r
    assert path in r.stderr and "No such file" in r.stderr, r.stderr


def test_config_file_is_a_directory(tmp_path):
    d = tmp_path / "confdir"
    d.mkdir()
    p = subprocess.Popen([HERALD_BIN, "--config", str(d), "--port", "0", "--data-dir", str(tmp_path / "d")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=herald_env())
    try:
        out, err = p.communicate(timeout=1.5)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=10)
        pytest.fail("herald started with a directory as its config file")
    assert p.returncode == 2 and str(d) in err, err


def test_unreadable_config_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    conf = write(tmp_path / "secret.conf", "[server]\nport = 0\n")
    os.chmod(conf, 0)
    r = run_herald(["--config", conf, "--port", "0", "--data-dir", str(tmp_path / "d")])
    assert r.returncode == 2 and conf in r.stderr, r.stderr


# ---------------------------------------------------------------- data directory

def start_fails(tmp_path, data_dir, *extra):
    r = run_herald(["--port", "0", "--data-dir", str(data_dir), *extra])
    assert r.returncode != 0, "herald started: %s" % r.stderr
    return r


def test_data_dir_created_with_format(tmp_path, make_broker):
    d = tmp_path / "a" / "b" / "data"
    b = make_broker(data_dir=d)
    assert (d / "FORMAT").read_text() == "herald-data 1\n"
    assert (os.stat(d).st_mode & 0o777) == 0o700
    b.check_clean_exit()
    # The same directory is accepted again.
    b2 = make_broker(data_dir=d)
    assert b2.health().status_code == 200


def test_data_dir_foreign_files_refused(tmp_path):
    d = tmp_path / "foreign"
    d.mkdir()
    (d / "notes.txt").write_text("mine\n")
    r = start_fails(tmp_path, d)
    assert r.returncode == 1
    assert "not a Herald data directory" in r.stderr, r.stderr
    assert sorted(os.listdir(d)) in (["notes.txt"], ["LOCK", "notes.txt"])
    assert (d / "notes.txt").read_text() == "mine\n"


def test_data_dir_foreign_subdir_refused(tmp_path):
    d = tmp_path / "foreign2"
    (d / "sub").mkdir(parents=True)
    r = start_fails(tmp_path, d)
    assert "not a Herald data directory" in r.stderr, r.stderr


@pytest.mark.parametrize("content", ["herald-data 2\n", "herald-data 0\n", "something else\n", ""])
def test_data_dir_other_format_refused(tmp_path, content):
    d = tmp_path / "fmt"
    d.mkdir()
    (d / "FORMAT").write_text(content)
    r = start_fails(tmp_path, d)
    assert r.returncode == 1
    assert "FORMAT" in r.stderr, r.stderr
    assert (d / "FORMAT").read_text() == content


def test_data_dir_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = start_fails(tmp_path, f)
    assert str(f) in r.stderr


def test_data_dir_in_use(tmp_path, make_broker):
    d = tmp_path / "shared"
    b = make_broker(data_dir=d)
    t0 = time.monotonic()
    r = start_fails(tmp_path, d)
    assert time.monotonic() - t0 < 5
    assert r.returncode == 1
    assert "in use" in r.stderr, r.stderr
    # The first one is unaffected.
    assert b.health().json()["status"] == "ok"


def test_port_in_use(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        t0 = time.monotonic()
        r = run_herald(["--port", str(port), "--data-dir", str(tmp_path / "d")], timeout=10)
        assert time.monotonic() - t0 < 5
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert str(port) in r.stderr
    finally:
        s.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("addr", ["203.0.113.7", "192.0.2.1", "::2", "nonsense", "example.invalid"])
@pytest.mark.parametrize("fixed_port", [False, True])
def test_bad_bind_address(tmp_path, addr, fixed_port):
    """An address that is not this machine's, or a name that does not resolve,
    fails at start (exit 1, saying why), with port 0 and with a fixed port: lws
    itself logs the bind error but then creates a vhost that listens nowhere."""
    port = str(free_port()) if fixed_port else "0"
    # --allow-open-dev: development mode on a non-loopback address is refused
    # before the address is even tried (test_ops_hardening.py).
    p = subprocess.Popen([HERALD_BIN, "--bind", addr, "--port", port, "--data-dir", str(tmp_path / "d"),
                          "--allow-open-dev", "on"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=herald_env())
    try:
        out, err = p.communicate(timeout=1.5)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
        pytest.fail("herald kept running with an unusable --bind %s:\n%s" % (addr, err))
    assert p.returncode == 1 and addr in err, err
    assert "cannot listen on " + addr in err and "listening on" not in err, err


# ---------------------------------------------------------------- shutdown

async def shutdown_scenario(b, sig, n_clients=20, n_msgs=100, size=8000):
    subs = await connect_many(b, n_clients // 2, "json") + await connect_many(b, n_clients - n_clients // 2,
                                                                              "msgpack")
    await asyncio.gather(*[s.subscribe("bye") for s in subs])
    pub = await connect(b, "json")
    payload = "p" * size
    for i in range(n_msgs):
        await pub.send({"op": "publish", "channel": "bye", "data": {"i": i, "p": payload}})
    replies = await pub.collect(n_msgs)
    assert [r["offset"] for r in replies] == list(range(1, n_msgs + 1))
    # Every publication is accepted; most of it is still queued when the signal comes.
    t0 = time.monotonic()
    b.send_signal(sig)

    async def drain(c):
        msgs, code = await c.read_until_closed(timeout=15)
        return msgs, code
    results = await asyncio.gather(*[drain(s) for s in subs])
    for msgs, code in results:
        assert code == 1001, code
        assert [m["offset"] for m in msgs] == list(range(1, n_msgs + 1))
        assert [m["data"]["i"] for m in msgs] == list(range(n_msgs))
    msgs, code = await pub.read_until_closed(timeout=5)
    assert code == 1001 and msgs == []
    rc = await asyncio.get_running_loop().run_in_executor(None, b.wait, 15)
    assert rc == 0, rc
    assert time.monotonic() - t0 < 15
    assert "stopped" in b.log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_clean_shutdown_flushes_then_1001(make_broker, sig):
    b = make_broker(send_queue_max="16m", shutdown_timeout="20s")
    run(shutdown_scenario(b, sig), timeout=60)


def test_shutdown_refuses_new_connections(make_broker):
    """While a slow client holds the shutdown open, new connections are refused and health
    says stopping (or the connection is refused)."""
    b = make_broker(send_queue_max="16m", shutdown_timeout="20s")

    async def main():
        slow, _ = slow_subscriber(b, "s")
        pub = await connect(b)
        n = 200
        for i in range(n):
            await pub.send({"op": "publish", "channel": "s", "data": "d" * 8000})
        await pub.collect(n)
        b.send_signal(signal.SIGTERM)
        assert b.wait_log("SIGTERM received", 5)
        # The slow client has not read: the broker is still flushing to it.
        assert b.proc.poll() is None
        assert tcp_closed_without_handshake(b.host, b.port)
        with pytest.raises(Exception):
            c = await ws_connect(b, "json")
            await c.close()
        try:
            r = requests.get(b.url("/api/health"), timeout=2)
            assert r.status_code == 503 and r.json()["status"] == "stopping"
        except requests.ConnectionError:
            pass                                       # refused at accept: also fine
        # Now it reads: everything, then 1001.
        slow.sock.settimeout(10)
        msgs = []
        code = None
        try:
            while True:
                msgs += slow.recv_messages()
        except Closed as e:
            code = e.code
        slow.close()
        assert code == 1001
        assert [m["offset"] for m in msgs] == list(range(1, n + 1))
        await pub.close()
        rc = await asyncio.get_running_loop().run_in_executor(None, b.wait, 15)
        assert rc == 0
    run(main(), timeout=60)


def test_shutdown_timeout_bounds_stop(make_broker):
    """A client that never reads cannot hold the broker past shutdown_timeout."""
    b = make_broker(send_queue_max="16m", shutdown_timeout="1s")

    async def main():
        slow, _ = slow_subscriber(b, "s")
        pub = await connect(b)
        for i in range(300):
            await pub.send({"op": "publish", "channel": "s", "data": "d" * 8000})
        await pub.collect(300)
        t0 = time.monotonic()
        b.send_signal(signal.SIGTERM)
        rc = await asyncio.get_running_loop().run_in_executor(None, b.wait, 10)
        elapsed = time.monotonic() - t0
        slow.close()
        assert rc == 0, rc
        assert elapsed < 5, elapsed
        await pub.close()
    run(main(), timeout=30)


def test_shutdown_idle_and_with_keepalive_http(make_broker):
    b = make_broker()
    s = requests.Session()
    assert s.get(b.url("/api/health"), timeout=5).status_code == 200
    t0 = time.monotonic()
    assert b.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - t0 < 3
    s.close()


def test_shutdown_with_unconnected_clients(make_broker):
    b = make_broker()

    async def main():
        raw = await ws_connect(b, "json")             # never sends connect
        b.send_signal(signal.SIGTERM)
        msgs, code = await raw.read_until_closed()
        assert code == 1001 and msgs == []
        rc = await asyncio.get_running_loop().run_in_executor(None, b.wait, 10)
        assert rc == 0
    run(main())


# ---------------------------------------------------------------- connection cap

def soft_nofile(pid):
    for line in open("/proc/%d/limits" % pid):
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open files line")


def test_max_connections_sizes_the_file_limit(make_broker):
    """limits.max_connections below the open file limit lowers the limit to
    the cap plus the broker's own 64 descriptors, so that libwebsockets' table
    of connections is sized by the limit and indexed by descriptor (told a
    smaller size, lws searches that table on every socket event); without
    the key, the limit is raised to the hard limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    capped = make_broker(max_connections=100)
    assert soft_nofile(capped.pid) == 164
    if hard != resource.RLIM_INFINITY:
        free = make_broker()
        assert soft_nofile(free.pid) == hard


def test_max_connections(make_broker):
    b = make_broker(max_connections=5)

    async def main():
        cs = await connect_many(b, 5)
        for c in cs:
            await c.subscribe("cap")
        # Beyond the cap a few connections are kept for health probes; a
        # WebSocket upgrade on one of them is answered 503 (test_reliability.py).
        st, _, body, _ = http_raw(b.host, b.port, b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert st == 503 and json.loads(body)["error"]["code"] == 110, body
        with pytest.raises(Exception):
            c6 = await ws_connect(b, "json")
            await c6.close()
        # The first five still work.
        for c in cs:
            await c.ping()
        await cs[0].send({"op": "publish", "id": 5, "channel": "cap", "data": 1})
        got = await cs[0].collect(2)
        assert sorted(m["op"] for m in got) == ["pub", "published"]
        for c in cs[1:]:
            await c.expect(op="pub", data=1)
        # Closing one frees a slot.
        await cs[0].close()
        c6 = None
        for _ in range(50):
            try:
                c6 = await connect(b)
                break
            except Exception:
                await asyncio.sleep(0.05)
        assert c6 is not None, "no slot freed after a close"
        await c6.ping()
        await close_all(cs[1:] + [c6])
    run(main())
