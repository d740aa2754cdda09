"""Batched sends (websocket.batch_sends, broker/net/sendring.c): the writes of
one loop turn to many connections go to the kernel in one io_uring system
call. What a subscriber receives must not depend on it: every message whole,
in order, in either encoding, at every WebSocket header size; a send the
kernel takes only in part is finished before anything else is written on
that connection; and the setting can be turned off."""
import time

import pytest
import requests

from conftest import close_all, connect, connect_many, run, slow_subscriber, scrape_metrics


metrics = scrape_metrics          # the name these tests use


# Payload sizes around the WebSocket header's size steps (125/126 bytes,
# 65535/65536) and over write_batch_max (64 KiB), which is written the usual way.
SIZES = [1, 100, 125, 126, 127, 1000, 20000, 65000, 70000]


@pytest.mark.parametrize("enc", ["json", "msgpack"])
@pytest.mark.parametrize("batch,threads", [("on", "1"), ("on", "3"), ("off", "1")])
def test_many_quiet_subscribers_get_everything_whole(make_broker, enc, batch, threads):
    """With server.threads above 1 the 40 writes of a round are shared with
    helper threads: still whole and in order on every connection."""
    b = make_broker(batch_sends=batch, threads=threads, max_message_size="256k")
    n = 40

    async def body():
        subs = await connect_many(b, n, enc)
        for i, c in enumerate(subs):
            await c.subscribe("bs:room%d" % i)
        pub = await connect(b, enc)
        # Each round is one publication per channel, sent together, so one
        # loop turn has many connections to write to.
        for r, size in enumerate(SIZES):
            for i in range(n):
                await pub.send({"op": "publish", "id": 10000 * r + i + 1, "channel": "bs:room%d" % i,
                                "data": {"r": r, "i": i, "pad": "x" * size}})
            acks = [await pub.next() for _ in range(n)]
            assert all(a["op"] == "published" for a in acks), acks
        for i, c in enumerate(subs):
            for r, size in enumerate(SIZES):
                m = await c.next()
                assert m["op"] == "pub" and m["channel"] == "bs:room%d" % i
                assert m["data"] == {"r": r, "i": i, "pad": "x" * size}
                assert m["offset"] == r + 1
        await close_all(subs + [pub])

    run(body(), timeout=60)
    m = metrics(b)
    batched = m["herald_socket_writes_batched_total"]
    if batch == "on" and "io_uring unavailable" in b.log:
        # A kernel or sandbox without io_uring: the broker said so and fell
        # back to one send() per write, which the deliveries above checked.
        assert batched == 0
    elif batch == "on":
        assert batched > 0, "nothing went through the send ring"
        assert m["herald_send_batches_total"] < batched, "no system call carried more than one write"
        assert m["herald_send_threads"] == int(threads)
        # The loop takes back what a helper has not started, so how much the
        # helpers wrote depends on how fast they woke (tests/unit/test_sendring.c
        # checks they do); with one thread, nothing.
        assert m["herald_socket_writes_offloaded_total"] < batched
        if threads == "1":
            assert m["herald_socket_writes_offloaded_total"] == 0
    else:
        assert batched == 0 and m["herald_send_batches_total"] == 0


@pytest.mark.parametrize("threads", ["1", "2"])
def test_part_sent_is_finished_before_the_next_frame(make_broker, threads):
    """A subscriber with a 4 KiB receive buffer that does not read: the first
    big messages fill its socket, so a batched send goes in part and the rest
    is left to libwebsockets. When it reads at last, every message arrives
    whole and in order, nothing interleaved. With helper threads, 16 quiet
    subscribers of the same channel make each pass big enough to be shared,
    and they get everything too."""
    b = make_broker(batch_sends="on", send_queue_max="64m", threads=threads)
    # Subscribers with the kernel's usual buffers, read only at the end:
    # with the slow one, 16 writes a pass.
    quiet = [slow_subscriber(b, "bs:slow", rcvbuf=0)[0] for _ in range(15)]
    slow, _ = slow_subscriber(b, "bs:slow")
    # 7.5 MB in all: more than the kernel's largest send buffer (4 MB by
    # default), so the socket fills while the sends still go one per turn.
    sizes = [40000 + 131 * k for k in range(150)]
    for k, size in enumerate(sizes):
        r = requests.post(b.url("/api/publish"), json={"channel": "bs:slow", "data": {"k": k, "pad": "y" * size}},
                          timeout=5)
        assert r.status_code == 200, r.text
        time.sleep(0.01)                                  # one loop turn each: each is its own send
    got = []
    slow.sock.settimeout(20)
    while len(got) < len(sizes):
        got += slow.recv_messages()
    assert [(m["op"], m["data"]["k"], len(m["data"]["pad"])) for m in got] == \
        [("pub", k, size) for k, size in enumerate(sizes)]
    slow.close()
    for c in quiet:
        got = []
        c.sock.settimeout(20)
        while len(got) < len(sizes):
            got += c.recv_messages()
        assert [m["data"]["k"] for m in got] == list(range(len(sizes)))
        c.close()
    if "io_uring unavailable" not in b.log:
        m = metrics(b)
        assert m["herald_socket_writes_batched_total"] > 0
        if threads == "1":
            assert m["herald_socket_writes_offloaded_total"] == 0


def test_threads_setting(make_broker):
    """server.threads: 0 gives one thread per CPU the broker may use; helper
    threads need batched sends, and say so when those are off."""
    import os
    b = make_broker(threads="0")
    if "io_uring unavailable" not in b.log:
        want = min(len(os.sched_getaffinity(0)), 16)
        assert metrics(b)["herald_send_threads"] == want
        assert "socket writes on %d thread" % want in b.log
    off = make_broker(threads="2", batch_sends="off")
    assert metrics(off)["herald_send_threads"] == 0
    assert "server.threads = 2 unused" in off.log


def test_threads_are_named_and_measured(make_broker):
    """scripts/threadcpu.sh (how docs/benchmarks.md measures the loop and its
    helpers) finds the broker's threads by name and reports each one's CPU."""
    import os
    import subprocess
    b = make_broker(threads="2")
    if "io_uring unavailable" in b.log:
        pytest.skip("io_uring unavailable: no send helpers")
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "threadcpu.sh")
    out = subprocess.run([script, str(b.pid), "0.5"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    cpu = {name: float(v) for name, v in (line.split() for line in out.stdout.splitlines())}
    assert {"herald", "herald-store", "herald-send1"} <= set(cpu), cpu
    assert all(v >= 0 for v in cpu.values()), cpu
    bad = subprocess.run([script, "999999999"], capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0 and "no process" in bad.stderr



def _bench_path():
    import os
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    return os.environ.get("HERALD_BENCH") or os.path.join(root, "build", "bench", "herald-bench")


def _fanout_watching_the_gap(b, subscribers, rate, duration):
    """Runs herald-bench fanout against @b while sampling /metrics every
    0.2 s; returns (the bench's JSON report, the largest write gap seen in
    seconds, the last write cost seen in seconds)."""
    import json
    import os
    import subprocess
    import threading
    bench = _bench_path()
    if not os.access(bench, os.X_OK):
        pytest.skip("herald-bench not built: %s" % bench)
    gaps, costs, done = [], [], threading.Event()

    def sample():
        while not done.is_set():
            m = metrics(b)
            gaps.append(m["herald_write_coalesce_seconds"])
            costs.append(m["herald_write_cost_seconds"])
            done.wait(0.2)

    t = threading.Thread(target=sample)
    t.start()
    try:
        p = subprocess.run([bench, "fanout", "--url", b.ws_url, "--subscribers", str(subscribers),
                            "--rate", str(rate), "--duration", str(duration), "--drain-timeout", "60",
                            "--p99-max", "100000", "--connect-timeout", "20", "--json"],
                           capture_output=True, text=True, timeout=180)
    finally:
        done.set()
        t.join()
    assert p.stdout.strip(), p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), max(gaps), costs[-1]


def _all_delivered(report):
    steps = report.get("steps") or report.get("results") or []
    assert steps, report
    for s in steps:
        assert s["received"] == s["expected"], {k: s.get(k) for k in ("rate", "published", "acked", "expected",
                                                                       "received", "lost", "gaps", "drain_seconds")}
    assert report["disconnects"]["total"] == 0, report["disconnects"]


def test_write_gap_follows_write_cost(make_broker):
    """A fan-out big enough to fill the loop with writes: the gap between one
    connection's writes goes past coalesce_max to what the measured cost per
    write needs (websocket.latency_goal bounds it), and nothing is lost."""
    b = make_broker(coalesce_max="5ms", latency_goal="400ms", batch_sends="off")
    # 1.8 M deliveries: enough to fill the loop with writes in any build, few
    # enough for a ThreadSanitizer build to deliver within the drain timeout.
    report, gap, cost = _fanout_watching_the_gap(b, 1500, 600, 2)
    _all_delivered(report)
    assert cost > 0, "no write cost measured"
    assert 0.005 < gap <= 0.4, gap


def test_write_gap_stays_under_coalesce_max_without_a_goal(make_broker):
    """latency_goal = 0 keeps the old bound: the same load never stretches
    the gap past coalesce_max."""
    b = make_broker(coalesce_max="5ms", latency_goal="0", batch_sends="off")
    report, gap, _ = _fanout_watching_the_gap(b, 1500, 600, 2)
    _all_delivered(report)
    assert gap <= 0.005, gap
