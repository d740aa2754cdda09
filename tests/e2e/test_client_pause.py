"""Flow control in the C client library (herald_client_pause() / herald_client_resume(),
docs/clients-c.md) against the real broker, through herald-pause-sub (tests/helpers/pause_sub.c,
built beside the broker under test).

A paused client reads nothing, so TCP pushes back on the broker and Herald does what
docs/protocol.md says to a connection that does not read: on a state channel it skips
intermediate values and sends a fresh snapshot, never losing the latest; on another channel it
closes the connection with 4000 once limits.send_queue_max bytes wait, and the other subscribers
go on. Pausing in the middle of the broker's batched frames loses and doubles nothing, over ws://
and wss:// (where the plaintext waits inside OpenSSL).
"""
import json
import os
import queue
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import HERALD_BIN, apply_delta, connect, close_all, run, scrape_metrics

BUILD = Path(HERALD_BIN).resolve().parents[1]
PAUSE_SUB = os.environ.get("HERALD_PAUSE_SUB", str(BUILD / "tests" / "helpers" / "herald-pause-sub"))


class PauseSub:
    """A herald-pause-sub process whose lines are read with a timeout."""

    def __init__(self, url, channel, *args):
        self.proc = subprocess.Popen([PAUSE_SUB, url, channel, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode().rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout=10.0):
        """The next line as (event, rest); rest is parsed JSON for subscribed/msg."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line from herald-pause-sub within %.0fs" % timeout) from None
        assert line is not None, "herald-pause-sub exited: %s" % self.proc.stderr.read().decode()
        ev, _, rest = line.partition(" ")
        return ev, json.loads(rest) if ev in ("subscribed", "msg", "error") else rest

    def until(self, event, timeout=10.0):
        """Skips to the next @event line; returns its rest and the msg lines skipped on the way."""
        skipped = []
        while True:
            ev, rest = self.line(timeout)
            if ev == event:
                return rest, skipped
            assert ev in ("msg", "paused", "resumed", "open"), (ev, rest)
            if ev == "msg":
                skipped.append(rest)

    def wait(self, timeout=15.0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = None
        self.reader.join(5)
        self.err = self.proc.stderr.read().decode()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(5)


@pytest.fixture
def subs():
    made = []
    yield made
    for s in made:
        s.kill()


def self_signed(tmp_path):
    key, cert = tmp_path / "pause.key", tmp_path / "pause.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=herald-test", "-days", "1",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def scheme_broker(make_broker, tmp_path, scheme, *args):
    """A broker serving @scheme ("ws" or "wss"). Returns it, its WebSocket URL, its REST base,
    the requests `verify` argument, herald-pause-sub's TLS arguments, and conftest.connect()'s
    keyword arguments."""
    if scheme == "ws":
        b = make_broker(*args)
        return b, b.ws_url, b.url(""), True, [], {}
    cert, key = self_signed(tmp_path)
    b = make_broker("--tls-cert", cert, "--tls-key", key, *args)
    kw = {"ssl": ssl.create_default_context(cafile=cert)}
    return b, "wss://127.0.0.1:%d/ws" % b.port, "https://127.0.0.1:%d" % b.port, cert, ["--cafile", cert], kw


@pytest.mark.parametrize("scheme,enc", [("ws", "json"), ("ws", "msgpack"), ("wss", "json")])
def test_pauses_in_the_middle_of_batches_lose_and_double_nothing(make_broker, tmp_path, subs, scheme, enc):
    """Published as fast as the broker takes them, pubs reach the client several to a frame and
    several frames to a read; it pauses every 250 pubs for 50 ms (from a timer), so pauses fall
    inside batches. It must get every offset once, in order."""
    b, url, _, _, tls, kw = scheme_broker(make_broker, tmp_path, scheme)
    n = 3000
    s = PauseSub(url, "chat:burst", "--pause-after", "250", "--pause-every", "250", "--resume-ms", "50",
                 "--idle-exit-ms", "1500", *tls, *(["--msgpack"] if enc == "msgpack" else []))
    subs.append(s)
    s.until("subscribed")

    async def publish():
        pub = await connect(url, **kw)
        for i in range(1, n + 1):
            await pub.send({"op": "publish", "channel": "chat:burst", "data": {"i": i, "pad": "x" * 100}})
        await pub.collect(n, timeout=30)
        await pub.close()
    run(publish(), timeout=60)

    offsets, pauses = [], 0
    while True:
        ev, rest = s.line(timeout=15)
        if ev == "paused":
            pauses += 1
        elif ev == "msg":
            assert rest["op"] == "pub", rest
            assert enc == "msgpack" or rest["data"]["i"] == rest["offset"], rest
            offsets.append(rest["offset"])
        elif ev == "close":
            break
    assert offsets == list(range(1, n + 1))
    assert pauses == n // 250
    assert rest.split()[:2] == ["1000", "0"], rest     # it closed itself, cleanly
    assert s.wait() == 0, s.err


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_paused_state_subscriber_gets_the_latest_state_conflated(make_broker, tmp_path, subs, scheme):
    """Paused while 1000 updates of ~8 KB stream past (more than the socket buffers and half of
    send_queue_max hold), then resumed: it gets fewer updates than were made, a fresh snapshot,
    deltas contiguous after each snapshot, and ends at the latest value; it is not cut off."""
    b, url, rest_base, verify, tls, _ = scheme_broker(
        make_broker, tmp_path, scheme, "--ns", "scores.state=on", "--send-queue-max", "64k", "--max-message-size", "16k")
    http = requests.Session()

    def ops(*op_list):
        # verify per request: requests lets REQUESTS_CA_BUNDLE override a Session's verify.
        r = http.post(rest_base + "/api/channels/scores:paused/state", json={"ops": list(op_list)}, timeout=5,
                      verify=verify)
        assert r.status_code == 200, (r.status_code, r.text)

    ops({"op": "set", "key": "score", "value": 0})
    flag = tmp_path / "resume"
    s = PauseSub(url, "scores:paused", "--rcvbuf", "262144", "--pause-after", "0", "--resume-file", str(flag),
                 "--idle-exit-ms", "2000", *tls)
    subs.append(s)
    subscribed, _ = s.until("subscribed")
    s.until("paused")
    updates = 1000
    pad = "p" * 8000
    for i in range(updates):
        ops({"op": "incr", "key": "score"}, {"op": "set", "key": "pad", "value": pad + str(i)})
    assert "slow consumer" not in b.log
    flag.touch()
    s.until("resumed")

    state = {k: {"value": v["value"]} for k, v in subscribed["state"].items()}
    expect = subscribed["offset"] + 1
    deltas = snapshots = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ev, m = s.line(timeout=15)
        if ev == "close":
            break
        assert ev == "msg", (ev, m)
        if m["op"] == "snapshot":
            snapshots += 1
            assert m["offset"] >= expect - 1, (m["offset"], expect)
            state = {k: {"value": v["value"]} for k, v in m["state"].items()}
            expect = m["offset"] + 1
        else:
            assert m["op"] == "pub" and m["offset"] == expect, (m["op"], m.get("offset"), expect)
            apply_delta(state, m["data"])
            deltas += 1
            expect += 1
    assert ev == "close" and m.split()[:2] == ["1000", "0"], (ev, m)
    assert snapshots >= 1, "the paused reader was resynchronised with a snapshot"
    assert deltas < updates, "conflated: fewer updates than were made"
    # The latest value, last: nothing after it changed the state.
    assert state["score"]["value"] == updates and state["pad"]["value"] == pad + str(updates - 1)
    assert s.wait() == 0, s.err
    assert "slow consumer" not in b.log


def test_paused_subscriber_on_a_plain_channel_is_closed_4000_others_unaffected(make_broker, tmp_path, subs):
    """Paused with a small receive buffer on a channel without state: the broker closes it as a
    slow consumer once send_queue_max is exceeded, while a reading subscriber gets every
    publication. Resumed, the paused client gets an in-order prefix, then the close 4000."""
    b = make_broker(max_message_size="16k", send_queue_max="128k")
    flag = tmp_path / "resume"
    s = PauseSub(b.ws_url, "firehose", "--rcvbuf", "262144", "--pause-after", "0", "--resume-file", str(flag))
    subs.append(s)
    s.until("subscribed")
    s.until("paused")

    async def main():
        good = await connect(b, "msgpack")
        await good.subscribe("firehose")
        pub = await connect(b, "json")
        payload = "z" * 8000
        sent = 0
        for _ in range(500):                       # at most 500 * 4 * 8 KB = 16 MB
            for _ in range(4):
                await pub.send({"op": "publish", "channel": "firehose", "data": payload})
            await pub.collect(4)
            sent += 4
            msgs = await good.collect(4)
            assert [m["offset"] for m in msgs] == list(range(sent - 3, sent + 1))
            if "slow consumer" in b.log:
                break
        assert "slow consumer" in b.log, "the paused client was never closed"
        for _ in range(5):
            await pub.publish("firehose", "tail")
        msgs = await good.collect(5)
        assert [m["offset"] for m in msgs] == list(range(sent + 1, sent + 6))
        await close_all([good, pub])
        return sent
    sent = run(main(), timeout=90)

    flag.touch()
    s.until("resumed")
    offsets = []
    while True:
        ev, rest = s.line(timeout=15)
        if ev == "close":
            break
        assert ev == "msg" and rest["op"] == "pub", (ev, rest)
        offsets.append(rest["offset"])
    assert rest.split()[0] == "4000", rest
    assert offsets == list(range(1, len(offsets) + 1))
    assert len(offsets) < sent
    assert s.wait() == 0, s.err
    assert b.health().json()["status"] == "ok"


def test_paused_session_cut_off_as_slow_consumer_reconnects_and_goes_on_in_order(make_broker, tmp_path, subs):
    """herald_session_pause(): the broker closes the paused session's connection with 4000; on
    resume the session delivers what its socket held, notices the close, reconnects and resumes
    with since. The gap (the queue the broker dropped, over send_queue_max) is more than a
    recovery reply carries (half of send_queue_max), so it reports on_lost, then goes on with
    the newest publications: offsets only increase, none twice, up to the last one."""
    b = make_broker("--ns", "feed.history_size=5000", max_message_size="16k", send_queue_max="128k")
    flag = tmp_path / "resume"
    s = PauseSub(b.ws_url, "feed:x", "--session", "--rcvbuf", "262144", "--pause-after", "0",
                 "--resume-file", str(flag), "--idle-exit-ms", "2000")
    subs.append(s)
    s.until("subscribed")
    s.until("paused")

    async def main():
        pub = await connect(b, "json")
        sent = 0
        for _ in range(500):                       # at most 500 * 4 * 8 KB = 16 MB
            for _ in range(4):
                await pub.send({"op": "publish", "channel": "feed:x", "data": "z" * 8000})
            await pub.collect(4)
            sent += 4
            if "slow consumer" in b.log:
                break
        assert "slow consumer" in b.log, "the paused session was never closed"
        await pub.close()
        return sent
    sent = run(main(), timeout=90)

    flag.touch()
    s.until("resumed")
    offsets, events = [], []
    while True:
        ev, rest = s.line(timeout=15)
        if ev == "close":
            break
        if ev == "msg":
            assert rest["op"] == "pub", rest
            offsets.append(rest["offset"])
        else:
            events.append((ev, rest, len(offsets)))
    assert rest.split()[:2] == ["1000", "0"], rest
    assert s.wait() == 0, s.err
    disconnects = [e for e in events if e[0] == "disconnect"]
    assert disconnects and disconnects[0][1].split()[0] == "4000", events
    assert [e[0] for e in events if e[0] != "open"] == ["disconnect", "subscribed", "lost"], events
    assert offsets == sorted(set(offsets)), "in order, none twice"
    assert offsets[0] == 1 and offsets[-1] == sent
    before = offsets[:disconnects[0][2]]
    assert before == list(range(1, len(before) + 1)), "before the cut: a prefix, no gap"


def test_paused_client_answers_no_pings_and_is_dropped_the_reading_one_stays(make_broker, tmp_path, subs):
    """The documented price of a pause: the broker's pings wait unread like everything else, so
    a paused client that sends nothing is dropped after 2 x ping_interval + 5 s (ping_timeout);
    it learns of it when it resumes (the end of the connection, no close frame). A client that
    reads answers the pings (the library does) and stays."""
    b = make_broker("--ping-interval", "1s")
    flag = tmp_path / "resume"
    paused = PauseSub(b.ws_url, "chat:quiet", "--pause-after", "0", "--resume-file", str(flag))
    reading = PauseSub(b.ws_url, "chat:quiet", "--pause-after", "-1")
    subs += [paused, reading]
    paused.until("subscribed")
    paused.until("paused")
    reading.until("subscribed")
    key = 'herald_disconnects_total{reason="ping_timeout"}'
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20 and scrape_metrics(b).get(key, 0) < 1:
        time.sleep(0.2)
    assert scrape_metrics(b).get(key, 0) == 1, "the paused client was not dropped"
    assert time.monotonic() - t0 >= 5, "not dropped before 2 x 1 s + 5 s"
    assert reading.proc.poll() is None
    b.publish_rest("chat:quiet", 7)
    m, _ = reading.until("msg")
    while m["op"] != "pub":                  # presence pushes (chat: has presence on)
        m, _ = reading.until("msg")
    assert m["data"] == 7, m
    flag.touch()
    paused.until("resumed")
    rest, skipped = paused.until("close")
    code, err = rest.split()[:2]
    assert code == "1006" and err != "0", rest
    assert not [m for m in skipped if m["op"] == "pub"], "a publication after it was dropped reached it"
    assert paused.wait() == 0, paused.err
