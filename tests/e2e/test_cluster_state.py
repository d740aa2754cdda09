"""State channels across Herald nodes on the Redis engine
(docs/cluster.md#state-channels). The answers of one node on either engine are
test_state.py's (each of its protocol tests runs on LMDB and on Redis); here:
operations on node A seen by subscribers on B as a snapshot then deltas with
A's offsets and versions, concurrent incr and cas from two nodes losing no
update, a reconnect to another node that recovers or resyncs, a snapshot in
place of deltas Redis no longer holds, a slow reader on one node
resynchronised from Redis, and Redis down answering 133 / 503. Each test
starts its own redis-server."""
import socket
import threading
import time

import requests

from conftest import apply_delta, connect, run, slow_subscriber
from test_cluster import engine_args, pytestmark, redis, wait_ready  # noqa: F401 (fixtures)

STATE = ("--ns", "scores.state=on", "--ns", "scores.history_size=5")


def node(make_broker, redis_, *extra):
    b = make_broker(*engine_args(redis_), *STATE, *extra)
    wait_ready(b)
    return b


def ops(b, channel, *op_list, expect=200):
    r = requests.post(b.url("/api/channels/%s/state" % channel), json={"ops": list(op_list)}, timeout=5)
    assert r.status_code == expect, (r.status_code, r.text)
    return r.json()


def state_of(b, channel, **params):
    r = requests.get(b.url("/api/channels/%s/state" % channel), params=params, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def test_snapshot_on_b_then_deltas_from_a(make_broker, redis):
    a, b = node(make_broker, redis), node(make_broker, redis)
    ops(a, "scores:g", {"op": "set", "key": "home", "value": 0}, {"op": "set", "key": "away", "value": 0})

    async def go():
        sb, sa = await connect(b, "msgpack"), await connect(a)
        mb = await sb.request({"op": "subscribe", "channel": "scores:g"})
        ma = await sa.request({"op": "subscribe", "channel": "scores:g"})
        for m in (ma, mb):
            assert m["op"] == "subscribed" and m["offset"] == 1, m
            assert m["state"] == {"home": {"value": 0, "version": 1}, "away": {"value": 0, "version": 1}}
        assert ma["epoch"] == mb["epoch"]
        answers = [ops(a, "scores:g", {"op": "incr", "key": "home", "by": i}) for i in (1, 2, 3)]
        answers.append(ops(b, "scores:g", {"op": "delete", "key": "away"}))
        for c in (sa, sb):
            got = [await c.expect(op="pub", channel="scores:g") for _ in answers]
            assert [p["offset"] for p in got] == [r["offset"] for r in answers] == [2, 3, 4, 5]
            assert [p["data"]["changes"] for p in got] == [r["changes"] for r in answers]
    run(go())


def test_concurrent_incr_and_cas_from_two_nodes(make_broker, redis):
    a, b = node(make_broker, redis), node(make_broker, redis)
    ops(a, "scores:c", {"op": "set", "key": "n", "value": 0})
    errors = []

    def writer(n, k):
        s = requests.Session()
        for _ in range(k):
            r = s.post(n.url("/api/channels/scores:c/state"), json={"ops": [{"op": "incr", "key": "n"}]}, timeout=5)
            if r.status_code != 200:
                errors.append(r.text)

    ts = [threading.Thread(target=writer, args=(n, 40)) for n in (a, b, a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors
    st = {i["key"]: i for i in state_of(b, "scores:c")["items"]}
    assert st["n"]["value"] == 160 and st["n"]["version"] == 161
    # Two nodes cas from the same version: exactly one wins.
    v = st["n"]["version"]
    results = []

    def cas(n, val):
        results.append(requests.post(n.url("/api/channels/scores:c/state"),
                                     json={"ops": [{"op": "cas", "key": "n", "value": val, "version": v}]},
                                     timeout=5).status_code)

    ts = [threading.Thread(target=cas, args=(n, i)) for i, n in enumerate((a, b, a, b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert sorted(results) == [200, 409, 409, 409]


def test_reconnect_to_another_node_recovers_or_resyncs(make_broker, redis):
    a, b = node(make_broker, redis), node(make_broker, redis)
    ops(a, "scores:r", {"op": "set", "key": "a", "value": 1})

    async def go():
        c = await connect(a)
        m = await c.request({"op": "subscribe", "channel": "scores:r"})
        epoch, off = m["epoch"], m["offset"]
        await c.close()
        ops(b, "scores:r", {"op": "incr", "key": "a"})
        ops(a, "scores:r", {"op": "set", "key": "b", "value": "x"})
        c = await connect(b)
        m = await c.request({"op": "subscribe", "channel": "scores:r", "since": {"epoch": epoch, "offset": off}})
        assert m["recovered"] is True and "state" not in m, m
        assert [p["offset"] for p in m["publications"]] == [off + 1, off + 2]
        assert m["publications"][0]["data"]["changes"][0] == {"key": "a", "value": 2, "version": 2}
        await c.close()
        # A gap longer than the stream keeps: a fresh snapshot from Redis, recovered false.
        for _ in range(10):
            ops(a, "scores:r", {"op": "incr", "key": "a"})
        c = await connect(b)
        m = await c.request({"op": "subscribe", "channel": "scores:r", "since": {"epoch": epoch, "offset": off}})
        assert m["recovered"] is False and m["offset"] == off + 12, m
        assert m["state"] == {"a": {"value": 12, "version": 12}, "b": {"value": "x", "version": 1}}
        # Live deltas follow it; a client-side copy converges with the stored state.
        state = dict(m["state"])
        ops(a, "scores:r", {"op": "delete", "key": "b"})
        p = await c.expect(op="pub", channel="scores:r")
        assert p["offset"] == off + 13
        apply_delta(state, p["data"])
        assert state == {i["key"]: {"value": i["value"], "version": i["version"]}
                         for i in state_of(a, "scores:r")["items"]}
    run(go())


def test_lost_deltas_resync_with_a_snapshot(make_broker, redis):
    a, b = (node(make_broker, redis, "--ns", "scores.history_size=2") for _ in range(2))
    ops(b, "scores:gap", {"op": "set", "key": "n", "value": 0})

    async def go():
        s = await connect(a)
        m = await s.request({"op": "subscribe", "channel": "scores:gap"})
        state = dict(m["state"])
        # Hide deltas from node A (its subscription connection drops) while
        # four are made: more than the stream keeps.
        with socket.create_connection(("127.0.0.1", redis.port)) as r:
            for cmd in (b"CLIENT PAUSE 2000 WRITE\r\n", b"CLIENT KILL TYPE pubsub\r\n", b"CLIENT UNPAUSE\r\n"):
                r.sendall(cmd)
                r.recv(64)
        for i in range(4):
            ops(b, "scores:gap", {"op": "incr", "key": "n"}, {"op": "set", "key": "k%d" % i, "value": i})
        want = {i["key"]: {"value": i["value"], "version": i["version"]} for i in state_of(b, "scores:gap")["items"]}
        msgs = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and state != want:
            m = await s.next(8)
            msgs.append(m["op"])
            assert m["op"] in ("pub", "snapshot"), m
            if m["op"] == "snapshot":
                state = dict(m["state"])
                assert m["offset"] == 5, m
            else:
                apply_delta(state, m["data"])
        # Either a clean resume (every delta) or a snapshot in place of those lost; never "unrecovered".
        assert state == want, msgs
        await s.assert_silent(0.3)
    run(go())


def test_slow_reader_on_one_node_converges(make_broker, redis):
    a = node(make_broker, redis, "--send-queue-max", "64k", "--max-message-size", "16k")
    b = node(make_broker, redis)
    ops(b, "scores:slow", {"op": "set", "key": "score", "value": 0})
    slow, subscribed = slow_subscriber(a, "scores:slow")
    s = requests.Session()
    pad = "p" * 8000
    for i in range(700):
        r = s.post(b.url("/api/channels/scores:slow/state"),
                   json={"ops": [{"op": "incr", "key": "score"}, {"op": "set", "key": "pad", "value": pad + str(i)}]},
                   timeout=5)
        assert r.status_code == 200
    assert "slow consumer" not in a.log
    state = {k: {"value": v["value"]} for k, v in subscribed["state"].items()}
    snapshots = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for m in slow.recv_messages():
            if m["op"] == "snapshot":
                snapshots += 1
                state = {k: {"value": v["value"]} for k, v in m["state"].items()}
            elif m["op"] == "pub":
                apply_delta(state, m["data"])
        if state.get("score", {}).get("value") == 700 and state.get("pad", {}).get("value") == pad + "699":
            break
    slow.close()
    assert snapshots >= 1, "the lagging reader was resynchronised with a snapshot read from Redis"
    assert state["score"]["value"] == 700 and state["pad"]["value"] == pad + "699"


def test_redis_down_answers_133_and_the_node_keeps_running(make_broker, redis):
    a = node(make_broker, redis)
    ops(a, "scores:d", {"op": "set", "key": "k", "value": 1})
    redis.kill()

    async def go():
        err = ops(a, "scores:d", {"op": "incr", "key": "k"}, expect=503)
        assert err["error"]["code"] == 133
        r = requests.get(a.url("/api/channels/scores:d/state"), timeout=5)
        assert r.status_code == 503 and r.json()["error"]["code"] == 133, r.text
        c = await connect(a)
        m = await c.request({"op": "state", "id": 1, "channel": "scores:d", "ops": [{"op": "incr", "key": "k"}]})
        assert m["op"] == "error" and m["code"] == 133, m
        m = await c.request({"op": "subscribe", "id": 2, "channel": "scores:d"})
        assert m["op"] == "error" and m["code"] == 133, m
        assert a.health().status_code == 200
    run(go())
