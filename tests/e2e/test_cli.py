"""herald-cli against the real broker (docs/cli.md).

Each test drives the herald-cli binary ($HERALD_CLI, default: beside $HERALD_BIN's build)
as a user would, in separate processes, against a broker started by conftest's
make_broker, and checks its output and its documented exit codes:
0 ok, 1 the broker refused, 2 bad usage or input (or an invalid config), 3 unreachable.
"""
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The build that made the broker under test made its CLI too: take it from the
# same build directory (CI builds in build-ci and build-asan, not build).
BUILD = Path(os.environ.get("HERALD_BIN", REPO / "build" / "broker" / "herald")).resolve().parents[1]
CLI = os.environ.get("HERALD_CLI", str(BUILD / "clients" / "cli" / "herald-cli"))
SECRET = "0123456789abcdef0123456789abcdef-cli"
OTHER_SECRET = "fedcba9876543210fedcba9876543210-cli"
ADMIN_KEY = "admin-key-0123456789"
PUB_KEY = "publisher-key-0123456789"

COMMANDS = ["pub", "sub", "history", "presence", "state", "seats", "stats", "token", "check-config"]


def cli_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(extra or {})
    return env


def cli(*args, url=None, stdin=None, timeout=20, env=None):
    """Runs herald-cli to completion; returns the CompletedProcess (text)."""
    cmd = [CLI, *args]
    if url:
        cmd += ["--url", url]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=cli_env(env))


def json_lines(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


class Sub:
    """A `herald-cli sub --json` process whose lines are read with a timeout."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen([CLI, "sub", "--json", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=cli_env(env))
        self.lines = queue.Queue()
        self.skipped = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode())
        self.lines.put(None)

    def line(self, timeout=10.0):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line from herald-cli sub within %.0fs" % timeout) from None
        assert line is not None, "herald-cli sub exited: %s" % self.proc.stderr.read().decode()
        return json.loads(line)

    def until(self, op, timeout=10.0):
        """The next line with @op; the lines skipped on the way are kept in self.skipped."""
        while True:
            m = self.line(timeout)
            if m.get("op") == op:
                return m
            self.skipped.append(m)

    def stop(self, sig=signal.SIGINT, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = None
        self.reader.join(5)
        self.err = self.proc.stderr.read().decode()
        return rc


@pytest.fixture
def sub_procs():
    subs = []
    yield subs
    for s in subs:
        s.stop(signal.SIGKILL)


def openssl(*args):
    subprocess.run(["openssl", *args], capture_output=True, check=True, timeout=60)


# ---------------------------------------------------------------- pub / sub

def test_sub_in_one_process_pub_in_another(broker, sub_procs):
    sub = Sub("chat:cli", "news", "--url", broker.ws_url)
    sub_procs.append(sub)
    subscribed = {sub.until("subscribed")["channel"], sub.until("subscribed")["channel"]}
    assert subscribed == {"chat:cli", "news"}

    r = cli("pub", "chat:cli", '{"text":"hello"}', url=broker.ws_url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "chat:cli #1"
    # Lines of stdin, each one publication, in order; text that is not JSON is a string.
    r = cli("--json", "pub", "chat:cli", url=broker.ws_url, stdin="two\n3\n\n[4]\n")
    assert r.returncode == 0, r.stderr
    acks = json_lines(r.stdout)
    assert [a["offset"] for a in acks] == [2, 3, 4] and all(a["op"] == "published" for a in acks)
    r = cli("pub", "news", "--string", "42", url=broker.ws_url)
    assert r.returncode == 0, r.stderr

    pubs = [sub.until("pub") for _ in range(5)]
    got = [(p["channel"], p["offset"], p["data"]) for p in pubs]
    assert got == [("chat:cli", 1, {"text": "hello"}), ("chat:cli", 2, "two"), ("chat:cli", 3, 3),
                   ("chat:cli", 4, [4]), ("news", 1, "42")]
    assert sub.stop(signal.SIGINT) == 0, sub.err
    assert "Traceback" not in sub.err


def test_sub_recovers_with_since_and_count_exits(broker):
    for i in range(1, 6):
        broker.publish_rest("feed", i)
    first = cli("--json", "history", "feed", "--limit", "1", url=broker.ws_url)
    epoch = json_lines(first.stdout)[0]["epoch"]
    r = cli("sub", "feed", "--since", "3", "--epoch", epoch, "--count", "2", url=broker.ws_url, env={}, timeout=20)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[3:] for line in lines] == [["#4", "4"], ["#5", "5"]]
    assert "recovered" in r.stderr


def test_pub_over_rest_with_api_key_and_stats(make_broker):
    b = make_broker("--apikey", "pub.secret=" + PUB_KEY, "--apikey", "pub.publish=*",
                    "--apikey", "ops.secret=" + ADMIN_KEY, "--apikey", "ops.admin=on",
                    "--ns", "orders.publish=server")
    # WebSocket publishing to a server-only namespace is refused ...
    r = cli("pub", "orders:1", '{"s":"paid"}', url=b.ws_url)
    assert r.returncode == 1 and "error 114" in r.stderr, (r.returncode, r.stderr)
    # ... the backend's key publishes over REST (from the environment).
    r = cli("pub", "orders:1", '{"s":"paid"}', url=b.ws_url, env={"HERALD_API_KEY": PUB_KEY})
    assert r.returncode == 0 and r.stdout.strip() == "orders:1 #1", (r.returncode, r.stdout, r.stderr)
    r = cli("pub", "orders:1", "x", "--api-key", "wrong-key-0123456789", url=b.ws_url)
    assert r.returncode == 1 and "401" in r.stderr, r.stderr
    # stats: an operator endpoint, so the admin key.
    r = cli("stats", "--api-key", PUB_KEY, url=b.http_url)
    assert r.returncode == 1 and "403" in r.stderr, r.stderr
    r = cli("--json", "stats", "--api-key", ADMIN_KEY, url=b.http_url)
    assert r.returncode == 0, r.stderr
    names = [c["channel"] for c in json_lines(r.stdout)[0]["channels"]]
    assert "orders:1" in names
    r = cli("stats", "orders:1", "--api-key", ADMIN_KEY, url=b.http_url)
    assert r.returncode == 0 and "last_offset: 1" in r.stdout, r.stdout


# ---------------------------------------------------------------- reads

def test_history_pages(broker):
    for i in range(1, 6):
        broker.publish_rest("hist:cli", {"n": i})
    r = cli("--json", "history", "hist:cli", "--limit", "2", "--since", "1", url=broker.ws_url)
    assert r.returncode == 0, r.stderr
    page = json_lines(r.stdout)[0]
    assert [p["offset"] for p in page["publications"]] == [2, 3]
    assert page["next"] == {"since": 3}
    r = cli("--json", "history", "hist:cli", "--reverse", "--limit", "2", url=broker.ws_url)
    assert [p["offset"] for p in json_lines(r.stdout)[0]["publications"]] == [5, 4]
    r = cli("history", "hist:cli", url=broker.ws_url)
    assert r.returncode == 0
    assert [line.split()[2] for line in r.stdout.splitlines()] == ["#1", "#2", "#3", "#4", "#5"]
    assert r.stdout.splitlines()[4].endswith('{"n":5}')
    r = cli("history", "hist:cli", "--limit", "0", url=broker.ws_url)
    assert r.returncode == 2 and "--limit" in r.stderr


def test_history_refused_without_history(make_broker):
    b = make_broker("--ns", "typing.history=off")
    r = cli("history", "typing:x", url=b.ws_url)
    assert r.returncode == 1 and "error 112" in r.stderr, r.stderr


def test_presence_state_and_seats(make_broker, sub_procs):
    b = make_broker("--ns", "chat.presence=on", "--ns", "scores.state=on", "--ns", "seats.state=on",
                    "--apikey", "be.secret=" + PUB_KEY, "--apikey", "be.publish=*")
    sub = Sub("chat:room", "--url", b.ws_url)
    sub_procs.append(sub)
    sub.until("subscribed")
    r = cli("--json", "presence", "chat:room", url=b.ws_url)
    assert r.returncode == 0, r.stderr
    assert json_lines(r.stdout)[0]["count"] == 1
    r = cli("presence", "news", url=b.ws_url)
    assert r.returncode == 1 and "error 116" in r.stderr

    assert cli("state", "set", "scores:g1", "home", "3", url=b.ws_url).returncode == 0
    r = cli("--json", "state", "incr", "scores:g1", "home", "2", url=b.ws_url)
    assert json_lines(r.stdout)[0]["changes"] == [{"key": "home", "value": 5, "version": 2}]
    assert cli("state", "set", "scores:g1", "clock", "Q4 02:31", url=b.ws_url).returncode == 0
    assert cli("state", "del", "scores:g1", "clock", url=b.ws_url).returncode == 0
    r = cli("state", "get", "scores:g1", url=b.ws_url)
    assert r.returncode == 0 and r.stdout == "home = 5 (v2)\n", r.stdout
    r = cli("state", "set", "scores:g1", "away", "7", url=b.ws_url, env={"HERALD_API_KEY": PUB_KEY})
    assert r.returncode == 0, r.stderr
    r = cli("--json", "state", "get", "scores:g1", url=b.ws_url)
    # Versions never repeat in a channel's epoch: the delete of "clock" raised the floor
    # new keys start above (docs/protocol.md, state channels).
    assert json_lines(r.stdout)[0]["state"]["away"] == {"value": 7, "version": 2}
    r = cli("state", "incr", "scores:g1", "nothing", "x", url=b.ws_url)
    assert r.returncode == 2
    r = cli("state", "set", "news", "k", "1", url=b.ws_url)
    assert r.returncode == 1 and "error 116" in r.stderr

    # Seat maps: defined by the backend; held for a user over REST with an API key.
    import requests
    rr = requests.put(b.url("/api/events/e1/seats"), json={"seats": [{"id": "A1", "section": "A"}]},
                      headers={"Authorization": "Bearer " + PUB_KEY}, timeout=5)
    assert rr.status_code == 200, rr.text
    r = cli("--json", "seats", "hold", "seats:e1", "A1", "--ttl", "60", "--user", "ann", "--api-key", PUB_KEY,
            url=b.ws_url)
    assert r.returncode == 0, r.stderr
    assert json_lines(r.stdout)[0]["seats"] == ["A1"]
    r = cli("seats", "hold", "seats:e1", "A1", "--user", "bob", "--api-key", PUB_KEY, url=b.ws_url)
    assert r.returncode == 1 and "error 119" in r.stderr, r.stderr
    r = cli("seats", "hold", "seats:e1", "A1", url=b.ws_url)      # anonymous over WebSocket
    assert r.returncode == 1 and "error 113" in r.stderr, r.stderr
    r = cli("seats", "hold", "seats:e1", "A1", "--api-key", PUB_KEY, url=b.ws_url)
    assert r.returncode == 2 and "--user" in r.stderr


# ---------------------------------------------------------------- tokens

def test_minted_tokens_accepted_by_a_broker_with_the_same_key(make_broker, tmp_path):
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(tmp_path / "rsa.pem"))
    openssl("pkey", "-in", str(tmp_path / "rsa.pem"), "-pubout", "-out", str(tmp_path / "rsa.pub"))
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(tmp_path / "ec.pem"))
    openssl("pkey", "-in", str(tmp_path / "ec.pem"), "-pubout", "-out", str(tmp_path / "ec.pub"))
    conf = tmp_path / "herald.conf"
    conf.write_text("[auth]\nanonymous = off\nhmac_secret = %s\npublic_keys = %s, %s\n\n"
                    "[namespace orders]\nsubscribe = granted\n" % (SECRET, tmp_path / "rsa.pub", tmp_path / "ec.pub"))
    b = make_broker("--config", str(conf))

    def mint(*args):
        r = cli("token", "--sub", "alice", *args)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    for args in (["--config", str(conf)], ["--secret", SECRET], ["--key", str(tmp_path / "rsa.pem")],
                 ["--key", str(tmp_path / "ec.pem")]):
        tok = mint(*args, "--ttl", "10m")
        r = cli("--json", "pub", "chat:t", "1", "--token", tok, url=b.ws_url)
        assert r.returncode == 0, (args, r.stderr)
        assert json_lines(r.stdout)[0]["op"] == "published"
    # The token from the environment, in JSON form with its claims.
    r = cli("--json", "token", "--sub", "bob", "--secret", SECRET, "--claims", '{"role":"service"}')
    minted = json.loads(r.stdout)
    assert minted["alg"] == "HS256" and minted["sub"] == "bob" and minted["exp"] > time.time()
    r = cli("pub", "chat:t", "2", url=b.ws_url, env={"HERALD_TOKEN": minted["token"]})
    assert r.returncode == 0, r.stderr

    # Another secret, an expired token, no token: refused, exit 1.
    r = cli("pub", "chat:t", "3", "--token", mint("--secret", OTHER_SECRET), url=b.ws_url)
    assert r.returncode == 1 and "113" in r.stderr, r.stderr
    r = cli("pub", "chat:t", "3", url=b.ws_url)
    assert r.returncode == 1 and "113" in r.stderr, r.stderr

    # A subscribe token grants a channel of a `granted` namespace (history reads it).
    tok = mint("--secret", SECRET)
    r = cli("history", "orders:9", "--token", tok, url=b.ws_url)
    assert r.returncode == 1 and "114" in r.stderr, r.stderr
    r = cli("history", "orders:9", "--token", mint("--secret", SECRET, "--claims", '{"channels":["orders:9"]}'),
            url=b.ws_url)
    assert r.returncode == 0, r.stderr
    # A subscribe token (token --channel) in sub's subscribe: accepted for its channel only.
    sub = Sub("orders:9", "--url", b.ws_url, "--token", tok, "--subscribe-token",
              mint("--key", str(tmp_path / "ec.pem"), "--channel", "orders:9"))
    try:
        assert sub.until("subscribed")["channel"] == "orders:9"
        b.publish_rest("orders:9", "shipped")
        assert sub.until("pub")["data"] == "shipped"
        assert sub.stop() == 0
    finally:
        sub.stop(signal.SIGKILL)
    r = cli("sub", "orders:9", "--token", tok, "--subscribe-token", mint("--secret", SECRET, "--channel", "orders:8"),
            url=b.ws_url)
    assert r.returncode == 1 and "error 114" in r.stderr, r.stderr


def test_token_bad_input(tmp_path):
    assert cli("token", "--secret", SECRET).returncode == 2                     # no --sub
    r = cli("token", "--sub", "a", "--secret", "short")
    assert r.returncode == 2 and "32" in r.stderr
    r = cli("token", "--sub", "a,b", "--secret", SECRET)
    assert r.returncode == 2
    r = cli("token", "--sub", "a", "--secret", SECRET, "--key", "x.pem")
    assert r.returncode == 2 and "exactly one" in r.stderr
    r = cli("token", "--sub", "a", "--secret", SECRET, "--claims", "[1]")
    assert r.returncode == 2 and "--claims" in r.stderr
    r = cli("token", "--sub", "a", "--secret", SECRET, "--ttl", "soon")
    assert r.returncode == 2 and "--ttl" in r.stderr
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", str(tmp_path / "weak.pem"))
    r = cli("token", "--sub", "a", "--key", str(tmp_path / "weak.pem"))
    assert r.returncode == 2 and "1024" in r.stderr, r.stderr
    conf = tmp_path / "pk.conf"
    conf.write_text("[auth]\n\npublic_keys = /nonexistent.pub\n")
    r = cli("token", "--sub", "a", "--config", str(conf))
    assert r.returncode == 2 and "%s:3" % conf in r.stderr and "--key" in r.stderr, r.stderr


# ---------------------------------------------------------------- check-config

def test_check_config_good_and_bad_files(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("[server]\nport = 9000\n\n[auth]\nhmac_secret = %s\n\n[namespace chat]\npresence = on\n" % SECRET)
    r = cli("check-config", str(good))
    assert r.returncode == 0 and r.stdout.startswith("%s: ok" % good), (r.stdout, r.stderr)
    r = cli("--json", "check-config", str(good))
    assert json.loads(r.stdout) == {"file": str(good), "ok": True}

    cases = [
        ("[server]\nport = 1\n\n[limits]\nmax_mesage_size = 4k\n", 5, "unknown key [limits] max_mesage_size"),
        ("[server]\nport = abc\n", 2, "expected a port number"),
        ("[limit]\nmax = 1\n", 2, "unknown section [limit]"),
        ("[server]\n\n\nthis is not ini\n", 4, "syntax error"),
        ("[auth]\n; short\nhmac_secret = short\n", 3, "at least 32 characters"),
        ("[auth]\nleeway = 10s\nanonymous = off\n", 3, "nobody could connect"),
        ("[auth]\npublic_keys = %s\n" % (tmp_path / "missing.pub"), 2, "No such file"),
        ("[server]\ntls_cert = %s\ntls_key = %s\n" % (good, good), 2, "server.tls_cert"),
    ]
    for i, (text, line, words) in enumerate(cases):
        bad = tmp_path / ("bad%d.conf" % i)
        bad.write_text(text)
        r = cli("check-config", str(bad))
        assert r.returncode == 2, (text, r.returncode, r.stderr)
        assert r.stderr.startswith("%s:%d: " % (bad, line)), (text, r.stderr)
        assert words in r.stderr, (words, r.stderr)
    r = cli("check-config", str(tmp_path / "nope.conf"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    # A cross-check that names no line (as the broker's own message).
    bad = tmp_path / "cross.conf"
    bad.write_text("[limits]\nmax_message_size = 64k\nsend_queue_max = 1k\n")
    r = cli("--json", "check-config", str(bad))
    assert r.returncode == 2 and json.loads(r.stdout)["ok"] is False
    assert "send_queue_max" in r.stderr


def test_check_config_tls_pair(tmp_path):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
            "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"))
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(tmp_path / "other.pem"))
    conf = tmp_path / "tls.conf"
    conf.write_text("[server]\ntls_cert = %s\ntls_key = %s\n" % (tmp_path / "cert.pem", tmp_path / "key.pem"))
    assert cli("check-config", str(conf)).returncode == 0
    conf.write_text("[server]\ntls_cert = %s\n\ntls_key = %s\n" % (tmp_path / "cert.pem", tmp_path / "other.pem"))
    r = cli("check-config", str(conf))
    assert r.returncode == 2 and r.stderr.startswith("%s:4: " % conf) and "does not match" in r.stderr, r.stderr


# ---------------------------------------------------------------- usage and exit codes

def test_help_for_every_command():
    r = cli("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert c in r.stdout
        h = cli(c, "--help")
        assert h.returncode == 0 and h.stdout.startswith("usage: herald-cli " + c.split()[0]), (c, h.stdout)
    assert cli("--version").stdout.startswith("herald-cli ")


def test_bad_usage_exit_codes(broker):
    assert cli().returncode == 2
    r = cli("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr
    for args in (["pub"], ["sub"], ["history"], ["presence"], ["state"], ["state", "get"], ["state", "nope", "c"],
                 ["seats", "hold", "seats:e"], ["sub", "a", "--since", "3"], ["sub", "a", "b", "--since", "1",
                 "--epoch", "e"], ["pub", "a", "b", "--bogus"], ["history", "a", "--limit"],
                 ["pub", "a", "{not json"], ["check-config"], ["--timeout", "never", "pub", "a", "b"]):
        r = cli(*args, url=broker.ws_url)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert r.stderr, args
    r = cli("pub", "a", "b", "--url", "ftp://x")
    assert r.returncode == 2 and "--url" in r.stderr
    # Nothing listens on the port: 3.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = cli("pub", "a", "b", url="ws://127.0.0.1:%d" % port)
    assert r.returncode == 3 and "cannot connect" in r.stderr
    r = cli("history", "a", url="http://127.0.0.1:%d" % port)
    assert r.returncode == 3
    r = cli("stats", url="http://127.0.0.1:%d" % port)
    assert r.returncode == 3
    # Bad input is refused by the broker (1) without disturbing others.
    r = cli("pub", "bad name", "1", url=broker.ws_url)
    assert r.returncode == 1 and "error 104" in r.stderr
    r = cli("pub", "ok", "1", env={"HERALD_URL": broker.ws_url})
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- reconnect and resume

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_sub_survives_a_broker_restart_exactly_once_in_order(make_broker, tmp_path, sub_procs):
    import requests
    port = free_port()
    data = tmp_path / "restart-data"
    b = make_broker("--port", str(port), data_dir=data, name="before")
    url = "ws://127.0.0.1:%d/ws" % port
    sub = Sub("chat:r", "--url", url)
    sub_procs.append(sub)
    assert sub.until("subscribed")["offset"] == 0

    total = 60
    published = []

    def publish(i):
        """Publishes i once: a request that failed may still have been committed, so the
        last publication is checked before sending again."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                r = requests.post("http://127.0.0.1:%d/api/publish" % port, json={"channel": "chat:r", "data": i},
                                  timeout=2)
                if r.status_code == 200:
                    published.append(i)
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
            try:
                h = requests.get("http://127.0.0.1:%d/api/channels/chat:r/history?reverse=true&limit=1" % port,
                                 timeout=2).json()
                if h["publications"] and h["publications"][0]["data"] == i:
                    published.append(i)
                    return
            except (requests.RequestException, ValueError):
                pass
        raise AssertionError("could not publish %d" % i)

    def publisher():
        for i in range(1, total + 1):
            publish(i)
            time.sleep(0.01)

    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    # Mid-stream: wait for some publications, restart with the same data dir and port.
    first = [sub.until("pub") for _ in range(10)]
    assert b.stop() == 0
    b2 = make_broker("--port", str(port), data_dir=data, name="after")
    t.join(60)
    assert not t.is_alive() and published == list(range(1, total + 1))
    rest = []
    while len(first) + len(rest) < total:
        rest.append(sub.until("pub", timeout=15))
    pubs = first + rest
    assert [p["offset"] for p in pubs] == list(range(1, total + 1))
    assert [p["data"] for p in pubs] == list(range(1, total + 1))
    assert sub.stop(signal.SIGINT) == 0, sub.err
    assert "connection lost (1001" in sub.err, sub.err
    assert "NOT recovered" not in sub.err
    resumed = [m for m in sub.skipped if m.get("op") == "subscribed"]
    assert resumed and all(m["recovered"] is True for m in resumed), resumed
    # Nothing after the last one, nothing twice.
    r = cli("--json", "history", "chat:r", "--reverse", "--limit", "1", url=b2.ws_url)
    assert json_lines(r.stdout)[0]["offset"] == total


def test_sub_reports_not_recovered(make_broker):
    b = make_broker("--ns", "chat.history_size=3")
    for i in range(1, 11):
        b.publish_rest("chat:lost", i)
    r = cli("--json", "history", "chat:lost", url=b.ws_url)
    epoch = json_lines(r.stdout)[0]["epoch"]
    r = cli("--json", "sub", "chat:lost", "--since", "2", "--epoch", epoch, "--count", "3", url=b.ws_url)
    assert r.returncode == 0, r.stderr
    lines = json_lines(r.stdout)
    assert lines[0]["op"] == "subscribed" and lines[0]["recovered"] is False
    assert [m["offset"] for m in lines[1:]] == [8, 9, 10]
    assert "NOT recovered: publications after #2 were missed" in r.stderr


def test_sub_gives_up_when_the_broker_is_unreachable_at_start_and_on_a_bad_token(make_broker):
    r = cli("sub", "x", url="ws://127.0.0.1:%d" % free_port(), timeout=20)
    assert r.returncode == 3 and "cannot connect" in r.stderr, r.stderr
    b = make_broker("--anonymous", "off", "--hmac-secret", SECRET)
    r = cli("sub", "x", url=b.ws_url, timeout=20)
    assert r.returncode == 1 and "113" in r.stderr, r.stderr


def test_sub_refreshes_its_token(make_broker):
    """A token that expires in 3 s, refresh_required 2 s before: the token command mints a
    new one each time, so the connection outlives its first token."""
    b = make_broker("--anonymous", "off", "--hmac-secret", SECRET, "--refresh-notice", "2s",
                    "--auth-leeway", "0")
    cmd = "%s token --sub carol --secret %s --ttl 3" % (CLI, SECRET)
    sub = Sub("chat:tok", "--url", b.ws_url, "--token-command", cmd)
    try:
        sub.until("subscribed")
        time.sleep(4.5)
        r = cli("pub", "chat:tok", '"late"', url=b.ws_url, env={"HERALD_TOKEN": subprocess.run(
            cmd.split(), capture_output=True, text=True).stdout.strip()})
        assert r.returncode == 0, r.stderr
        m = sub.until("pub")
        assert m["data"] == "late" and m["offset"] == 1
        assert sub.stop(signal.SIGINT) == 0
        assert "connection lost" not in sub.err, sub.err
    finally:
        sub.stop(signal.SIGKILL)


# ---------------------------------------------------------------- TLS

def self_signed(tmp_path, name, san):
    key, cert = tmp_path / (name + ".key"), tmp_path / (name + ".crt")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name, "-days", "1",
            "-addext", "subjectAltName=" + san, "-keyout", str(key), "-out", str(cert))
    return str(cert), str(key)


def test_tls_wss_and_https(make_broker, tmp_path, sub_procs):
    cert, key = self_signed(tmp_path, "herald-test", "DNS:localhost,IP:127.0.0.1")
    b = make_broker("--tls-cert", cert, "--tls-key", key)
    wss = "wss://127.0.0.1:%d" % b.port
    sub = Sub("chat:tls", "--url", wss, "--cafile", cert)
    sub_procs.append(sub)
    sub.until("subscribed")
    big = "x" * 50000                      # several TLS records, frames cut across reads
    lines = "".join('{"n":%d}\n' % i for i in range(1, 201)) + json.dumps(big) + "\n"
    r = cli("pub", "chat:tls", "--cafile", cert, url=wss, stdin=lines)
    assert r.returncode == 0, r.stderr
    pubs = [sub.until("pub") for _ in range(201)]
    assert [p["offset"] for p in pubs] == list(range(1, 202))
    assert pubs[0]["data"] == {"n": 1} and pubs[200]["data"] == big
    assert sub.stop() == 0, sub.err

    r = cli("--json", "history", "chat:tls", "--reverse", "--limit", "1", "--cafile", cert, url=wss)
    assert r.returncode == 0 and json_lines(r.stdout)[0]["publications"][0]["data"] == big
    r = cli("stats", "chat:tls", "--cafile", cert, url="https://127.0.0.1:%d" % b.port)
    assert r.returncode == 0 and "last_offset: 201" in r.stdout, (r.stdout, r.stderr)

    # Not verified without the CA; --insecure skips verification; plain ws:// is refused.
    r = cli("pub", "chat:tls", "1", url=wss)
    assert r.returncode == 3 and "certificate verify failed" in r.stderr, r.stderr
    r = cli("stats", url="https://127.0.0.1:%d" % b.port)
    assert r.returncode == 3 and "certificate verify failed" in r.stderr, r.stderr
    assert cli("pub", "chat:tls", "1", "--insecure", url=wss).returncode == 0
    assert cli("pub", "chat:tls", "1", url=b.ws_url).returncode == 3


def test_tls_server_name(make_broker, tmp_path):
    """A certificate for a host name only: reached by address, it verifies with --tls-name
    (the name is checked and sent as SNI), and not for another name or the bare address."""
    cert, key = self_signed(tmp_path, "broker.test", "DNS:broker.test")
    b = make_broker("--tls-cert", cert, "--tls-key", key)
    wss = "wss://127.0.0.1:%d" % b.port
    r = cli("pub", "chat:n", "1", "--cafile", cert, url=wss)
    assert r.returncode == 3 and "certificate verify failed" in r.stderr, r.stderr
    r = cli("pub", "chat:n", "1", "--cafile", cert, "--tls-name", "broker.test", url=wss)
    assert r.returncode == 0, r.stderr
    r = cli("pub", "chat:n", "1", "--cafile", cert, "--tls-name", "other.test", url=wss)
    assert r.returncode == 3 and "hostname mismatch" in r.stderr, r.stderr
    r = cli("pub", "chat:n", "1", "--cafile", str(tmp_path / "missing.pem"), url=wss)
    assert r.returncode == 2 and "CA" in r.stderr, r.stderr


# ---------------------------------------------------------------- the installed library

def test_installed_library_builds_the_documented_example(broker, tmp_path):
    """meson install into a staging directory, then the example of docs/clients-c.md is
    compiled and linked with `pkg-config --cflags --libs herald-client` against it, and run."""
    import glob
    import re
    build = Path(os.environ.get("HERALD_BUILD_DIR", BUILD))
    stage = tmp_path / "stage"
    r = subprocess.run(["meson", "install", "-C", str(build), "--destdir", str(stage), "--no-rebuild", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    pcs = glob.glob(str(stage / "**" / "pkgconfig" / "herald-client.pc"), recursive=True)
    assert pcs, "no herald-client.pc installed"
    assert glob.glob(str(stage / "**" / "include" / "herald_session.h"), recursive=True)
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]), PKG_CONFIG_SYSROOT_DIR=str(stage))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "herald-client"], capture_output=True, text=True,
                           env=env, timeout=30)
    assert flags.returncode == 0, flags.stderr
    assert str(stage) in flags.stdout and "-lherald_client" in flags.stdout, flags.stdout

    doc = (REPO / "docs" / "clients-c.md").read_text()
    example = re.search(r"```c\n(.*?)```", doc, re.S).group(1)
    src = tmp_path / "example.c"
    src.write_text(example)
    exe = tmp_path / "example"
    # A sanitizer build installs an instrumented library: the program links the same runtime.
    san = []
    opts = subprocess.run(["meson", "introspect", "--buildoptions", str(build)], capture_output=True, text=True,
                          timeout=60)
    if opts.returncode == 0:
        for o in json.loads(opts.stdout):
            if o["name"] == "b_sanitize" and o["value"] not in ("none", ""):
                san = ["-fsanitize=" + o["value"]]
    cc = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", *san, "-o", str(exe), str(src),
                         *flags.stdout.split()], capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe), broker.ws_url, "chat:example"], capture_output=True, text=True, timeout=20,
                         env=cli_env())
    assert run.returncode == 0, run.stderr
    assert run.stdout == 'chat:example #1 "hello from C"\n', run.stdout
    run = subprocess.run([str(exe), "ws://127.0.0.1:%d" % free_port(), "x"], capture_output=True, text=True,
                         timeout=60, env=cli_env())
    assert run.returncode == 1 and "connection refused" in run.stderr, run.stderr


def test_bash_completion():
    script = REPO / "clients" / "cli" / "herald-cli.bash"

    def complete(*words):
        line = " ".join(["herald-cli", *words])
        cmd = ('source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _herald_cli; printf "%%s\\n" "${COMPREPLY[@]}"'
               % (script, " ".join("'%s'" % w for w in ["herald-cli", *words]), len(words)))
        r = subprocess.run(["bash", "--norc", "-c", cmd], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, (line, r.stderr)
        return set(r.stdout.split())

    assert {"pub", "sub", "check-config", "--url"} <= complete("")
    assert complete("--json", "st") == {"state", "stats"}
    assert complete("state", "") == {"get", "set", "incr", "del", "reset"}
    assert complete("--url", "ws://x", "seats", "") >= {"hold", "waitlist-leave"}
    assert complete("history", "ch", "--l") == {"--limit"}
    assert "--subscribe-token" in complete("sub", "a", "--")


def test_timeout_when_the_broker_does_not_answer():
    """A port that accepts connections but never answers: every command gives up after
    --timeout with exit 3 instead of hanging."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    url = "ws://127.0.0.1:%d" % s.getsockname()[1]
    try:
        for args in (["pub", "a", "1"], ["history", "a"], ["sub", "a"], ["stats"]):
            t0 = time.monotonic()
            r = cli("--timeout", "500ms", *args, url=url, timeout=20)
            assert r.returncode == 3, (args, r.returncode, r.stderr)
            assert time.monotonic() - t0 < 5, args
            assert "timed out" in r.stderr or "no answer" in r.stderr, (args, r.stderr)
    finally:
        s.close()


def test_tls_sends_sni(tmp_path):
    """openssl s_server with one certificate by default and another for the SNI name b.test:
    only a client that sends SNI gets the second and verifies it. (s_server then fails the
    WebSocket upgrade, which is past TLS: the error is about the upgrade, not the certificate.)"""
    a_cert, a_key = self_signed(tmp_path, "a.test", "DNS:a.test")
    b_cert, b_key = self_signed(tmp_path, "b.test", "DNS:b.test")
    port = free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-cert", a_cert, "-key", a_key,
                            "-servername", "b.test", "-cert2", b_cert, "-key2", b_key, "-www", "-quiet"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "openssl s_server did not listen"
                time.sleep(0.05)
        wss = "wss://127.0.0.1:%d" % port
        r = cli("pub", "c", "1", "--cafile", b_cert, "--tls-name", "b.test", url=wss)
        assert r.returncode == 3 and "certificate" not in r.stderr and "upgrade" in r.stderr, r.stderr
        r = cli("pub", "c", "1", "--cafile", b_cert, "--tls-name", "a.test", url=wss)
        assert r.returncode == 3 and "certificate verify failed" in r.stderr, r.stderr
    finally:
        srv.kill()
        srv.wait(5)


class _Refuser:
    """A REST endpoint on loopback that answers each request from a script:
    a list of (status, error code or None, Retry-After or None); the last
    entry repeats. Records when each request came."""

    def __init__(self, script):
        import http.server
        import threading
        self.script, self.times = list(script), []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.times.append(time.monotonic())
                status, code, retry = outer.script[min(len(outer.times), len(outer.script)) - 1]
                body = (json.dumps({"channel": "a", "offset": 1}) if status == 200 else
                        json.dumps({"error": {"code": code, "reason": "scripted"}})).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if retry is not None:
                    self.send_header("Retry-After", str(retry))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_rest_retries_what_the_broker_shed_and_nothing_else():
    """Over REST, a 503 with error 135 (overloaded: refused before anything was
    done) and a 429 are sent again after Retry-After, within --timeout; the
    publication then succeeds. Any other error is reported at once, and a
    Retry-After longer than what is left of --timeout is not waited for."""
    cases = [
        # (script, exit code, requests made, least seconds taken)
        ([(503, 135, 1), (503, 135, 1), (200, None, None)], 0, 3, 1.9),
        ([(429, 108, 1), (200, None, None)], 0, 2, 0.9),
        ([(503, 135, None), (200, None, None)], 0, 2, 0.2),     # no Retry-After: a short backoff
        ([(503, 133, 1)], 1, 1, 0),                             # engine unavailable: may have been done
        ([(400, 104, None)], 1, 1, 0),
        ([(429, 108, 30)], 1, 1, 0),                            # longer than --timeout 5s: not waited for
        ([(503, 135, 1)], 1, 6, 4.9),                           # still shed when the 5 s are spent
    ]
    for script, code, n, least in cases:
        srv = _Refuser(script)
        try:
            t0 = time.monotonic()
            r = cli("--timeout", "5s", "--api-key", "k", "pub", "a", "1", url=srv.url, timeout=30)
            took = time.monotonic() - t0
            assert r.returncode == code, (script, r.returncode, r.stderr)
            assert len(srv.times) == n, (script, len(srv.times), r.stderr)
            assert took >= least, (script, took)
            assert took < least + 3, (script, took)
            if n > 1:
                assert "trying again" in r.stderr, r.stderr
            if code:
                assert "error %d" % script[-1][1] in r.stderr, r.stderr
        finally:
            srv.close()
