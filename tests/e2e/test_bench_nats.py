"""herald-bench --target nats: the same scenarios measured against nats-server (issue 14).

Starts Debian's nats-server (scripts/deps.sh installs it) with a temporary
config on free loopback ports, its WebSocket listener without TLS, and runs
herald-bench fanout, channels and cliff against it briefly. Every delivery must
arrive exactly once (received == expected, no gaps or duplicates read from the
payloads' sequence numbers) and the JSON report must name the target. Also:
bad --target values and combinations are refused (exit 2), --target nats
against Herald and Herald's protocol against NATS fail fast with a clear
reason, and a nats-server killed during a run fails the run instead of
hanging it.

Run: /usr/bin/python3 -m pytest tests/e2e/test_bench_nats.py
Binaries: $HERALD_BENCH, $HERALD_BIN (as tests/e2e/test_bench.py), and
nats-server from $PATH or /usr/sbin.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from test_bench import BENCH, _start_broker, bench
from test_bench import broker  # noqa: F401 (fixture: a Herald broker)

NATS = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")
pytestmark = pytest.mark.skipif(NATS is None, reason="nats-server is not installed (scripts/deps.sh installs it)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nats:
    """One nats-server with a WebSocket listener on loopback, stopped by its PID."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="herald-bench-nats-")
        self.ws_port = free_port()
        self.port = free_port()
        conf = os.path.join(self.tmp.name, "nats.conf")
        with open(conf, "w") as f:
            f.write('listen: "127.0.0.1:%d"\nwebsocket { listen: "127.0.0.1:%d", no_tls: true }\n'
                    % (self.port, self.ws_port))
        self.log_path = os.path.join(self.tmp.name, "nats.log")
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen([NATS, "-c", conf], stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.ws_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("nats-server did not start:\n" + self.log())

    @property
    def url(self):
        return "ws://127.0.0.1:%d" % self.ws_port

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()
        self.tmp.cleanup()


@pytest.fixture(scope="module")
def nats(request):
    if not os.access(BENCH, os.X_OK):
        pytest.skip("herald-bench not built: %s" % BENCH)
    n = Nats()
    request.addfinalizer(n.stop)
    return n


def assert_exact(out, subs_per_pub):
    """Every publication acknowledged (by its PONG) and delivered exactly once to every subscriber."""
    assert out["target"] == "nats" and out["ack"] == "pong", out
    assert out["ok"] is True, out
    assert out["disconnects"]["total"] == 0
    assert out["errors"]["publish"] == 0 and out["errors"]["bad_payload"] == 0
    for st in out["steps"]:
        assert st["published"] == round(st["rate"] * out["duration_s"]) > 0, st
        assert st["acked"] == st["published"], st
        assert st["expected"] == st["acked"] * subs_per_pub, st
        assert st["received"] == st["expected"], st
        assert st["gaps"] == 0 and st["duplicates"] == 0 and st["late"] == 0, st
        assert st["latency_ms"]["p99"] is not None and st["latency_ms"]["p99"] >= 0, st


def test_fanout(nats):
    rc, out, err = bench("fanout", "--target", "nats", "--url", nats.url, "--subscribers", "20",
                         "--rate", "200,500", "--duration", "1", "--pid", str(nats.proc.pid))
    assert rc == 0, err
    assert out["scenario"] == "fanout" and out["url"] == nats.url
    assert len(out["steps"]) == 2
    assert out["connections"]["opened"] == 21
    assert_exact(out, 20)
    # --pid names nats-server: its CPU is measured as Herald's would be.
    assert all(st["broker_cpu_pct"] >= 0 for st in out["steps"]), out["steps"]


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_channels(nats, encoding):
    # The payload is the same encoded string value Herald gets: opaque bytes to NATS.
    rc, out, err = bench("channels", "--target", "nats", "--url", nats.url, "--channels", "50",
                         "--subscribers", "2", "--rate", "500", "--duration", "1", "--encoding", encoding)
    assert rc == 0, err
    assert out["channels"] == 50 and out["subscribers"] == 100 and out["encoding"] == encoding
    assert_exact(out, 2)


def test_light_readers(nats):
    """--readers with NATS: the subscribers live in reader processes that speak NATS too."""
    rc, out, err = bench("fanout", "--target", "nats", "--url", nats.url, "--subscribers", "40",
                         "--readers", "2", "--rate", "300", "--duration", "1")
    assert rc == 0, err
    assert out["readers"] == 2
    assert_exact(out, 40)
    assert out["steps"][0]["readers_cpu_pct"] >= 0


def test_cliff(nats):
    rc, out, err = bench("cliff", "--target", "nats", "--url", nats.url, "--channels", "100",
                         "--rate", "200,400", "--duration", "0.5", "--p99-max", "1000")
    assert rc == 0, err
    assert out["verdict"] == "gradual", out
    assert_exact(out, 2)


def test_human_report_names_the_target(nats):
    p = subprocess.run([BENCH, "channels", "--target", "nats", "--url", nats.url, "--channels", "10",
                        "--rate", "100", "--duration", "0.5"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "target nats" in p.stdout.splitlines()[0], p.stdout


def test_bad_target_values_are_refused():
    if not os.access(BENCH, os.X_OK):
        pytest.skip("herald-bench not built: %s" % BENCH)
    cases = [
        (["fanout", "--target", "kafka"], "--target kafka: want herald or nats"),
        (["fanout", "--target", ""], "want herald or nats"),
        (["fanout", "--target", "nats", "--publish", "rest"], "WebSocket only"),
        (["channels", "--target", "nats", "--publishers", "2"], "one publisher"),
        (["publish", "--target", "nats"], "--target does not apply to publish"),
        (["idle", "--target", "nats"], "--target does not apply to idle"),
    ]
    for args, why in cases:
        p = subprocess.run([BENCH, *args], capture_output=True, text=True, timeout=5)
        assert p.returncode == 2 and why in p.stderr, (args, p.returncode, p.stderr)
    p = subprocess.run([BENCH, "fanout", "--help"], capture_output=True, text=True, timeout=5)
    assert p.returncode == 0 and "--target T" in p.stdout


def test_nats_protocol_against_herald_fails_fast(broker):  # noqa: F811
    """Herald answers the WebSocket upgrade but never sends INFO: a clear error, not a hang."""
    t0 = time.monotonic()
    p = subprocess.run([BENCH, "fanout", "--target", "nats", "--url", broker.url, "--subscribers", "3",
                        "--rate", "10", "--duration", "1", "--json"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "not a NATS server" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 8


def test_herald_protocol_against_nats_fails_fast(nats):
    t0 = time.monotonic()
    p = subprocess.run([BENCH, "fanout", "--url", nats.url, "--subscribers", "3", "--rate", "10",
                        "--duration", "1", "--json"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "cannot set up connections" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 8


def test_nats_killed_during_the_run_fails_it(request):
    """A nats-server gone mid-run: every connection is closed, the run fails (exit 1) and ends."""
    if not os.access(BENCH, os.X_OK):
        pytest.skip("herald-bench not built: %s" % BENCH)
    n = Nats()
    request.addfinalizer(n.stop)
    t0 = time.monotonic()
    p = subprocess.Popen([BENCH, "fanout", "--target", "nats", "--url", n.url, "--subscribers", "10",
                          "--rate", "200", "--duration", "4", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    os.kill(n.proc.pid, signal.SIGKILL)
    n.proc.wait()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1, (out, err)
    assert "closed during the run" in err, err
    assert time.monotonic() - t0 < 20
