"""State channels across Herald nodes on the Redis engine
(docs/cluster.md#state-channels): the same answers as the LMDB engine (the
behaviour test runs on both), operations on node A seen by subscribers on B
as a snapshot then deltas with A's offsets and versions, concurrent incr and
cas from two nodes losing no update, a reconnect to another node that
recovers or resyncs, a snapshot in place of deltas Redis no longer holds, a
slow reader on one node resynchronised from Redis,
and Redis down answering 133 / 503. Each test starts its own redis-server."""
import socket
import threading
import time

import pytest
import requests

from conftest import apply_delta, connect, run, slow_subscriber
from test_cluster import Redis, engine_args, pytestmark, redis, wait_ready  # noqa: F401 (fixtures)

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


@pytest.mark.parametrize("engine", ["lmdb", "redis"])
def test_operations_answer_like_lmdb(engine, make_broker, tmp_path):
    r = Redis(tmp_path).start() if engine == "redis" else None
    try:
        a = node(make_broker, r) if r else make_broker(*STATE)
        b = node(make_broker, r) if r else a
        ch = "scores:same"
        res = ops(a, ch, {"op": "set", "key": "home", "value": 0}, {"op": "set", "key": "t", "value": {"n": "x"}})
        assert res["offset"] == 1 and res["changes"] == [{"key": "home", "value": 0, "version": 1},
                                                         {"key": "t", "value": {"n": "x"}, "version": 1}]
        res = ops(b, ch, {"op": "incr", "key": "home", "by": 2}, {"op": "incr", "key": "home", "by": -3},
                  {"op": "incr", "key": "fouls"})
        assert res["offset"] == 2 and res["changes"] == [{"key": "home", "value": 2, "version": 2},
                                                         {"key": "home", "value": -1, "version": 3},
                                                         {"key": "fouls", "value": 1, "version": 1}]
        # cas conflict (117, with the key's version) and incr on a non-integer (118): nothing applied.
        err = ops(a, ch, {"op": "set", "key": "home", "value": 100}, {"op": "cas", "key": "t", "value": 1,
                                                                      "version": 7}, expect=409)
        assert err["error"]["code"] == 117 and err["error"]["version"] == 1
        assert ops(b, ch, {"op": "cas", "key": "t", "value": 1, "version": 0}, expect=409)["error"]["code"] == 117
        err = ops(b, ch, {"op": "incr", "key": "home"}, {"op": "incr", "key": "t"}, expect=422)
        assert err["error"]["code"] == 118
        ops(a, ch, *[{"op": "incr", "key": "home", "by": 2 ** 62}] * 3, expect=422)
        items = {i["key"]: (i["value"], i["version"]) for i in state_of(b, ch)["items"]}
        assert items == {"fouls": (1, 1), "home": (-1, 3), "t": ({"n": "x"}, 1)}
        res = ops(a, ch, {"op": "cas", "key": "t", "value": "y", "version": 1})
        assert res["offset"] == 3 and res["changes"] == [{"key": "t", "value": "y", "version": 2}]
        # delete; a key created again takes a version above every one it had (the floor).
        res = ops(b, ch, {"op": "delete", "key": "home"}, {"op": "delete", "key": "never"})
        assert res["offset"] == 4 and res["changes"] == [{"key": "home", "deleted": True}]
        same = ops(a, ch, {"op": "delete", "key": "never"})
        assert same["changes"] == [] and same["offset"] == 4
        res = ops(a, ch, {"op": "set", "key": "home", "value": 7})
        assert res["changes"] == [{"key": "home", "value": 7, "version": 4}]
        # reset: the earlier changes of the request are moot; versions stay above the floor.
        res = ops(b, ch, {"op": "set", "key": "x", "value": 1}, {"op": "reset"}, {"op": "set", "key": "y", "value": 2})
        assert res["offset"] == 6 and res["reset"] is True
        assert res["changes"] == [{"key": "y", "value": 2, "version": 5}]
        page = state_of(a, ch)
        assert page["offset"] == 6 and [(i["key"], i["version"]) for i in page["items"]] == [("y", 5)]
        # Paging and filters.
        ops(a, ch, *({"op": "set", "key": "p%d" % i, "value": {"team": "ab"[i % 2]}} for i in range(5)))
        p1 = state_of(b, ch, prefix="p", limit=2)
        assert [i["key"] for i in p1["items"]] == ["p0", "p1"] and p1["next_cursor"] == "p1"
        p2 = state_of(b, ch, prefix="p", limit=2, cursor="p1")
        assert [i["key"] for i in p2["items"]] == ["p2", "p3"]
        fl = state_of(b, ch, prefix="p", field="team", value="b")
        assert [i["key"] for i in fl["items"]] == ["p1", "p3"] and fl["next_cursor"] is None
        # Bad inputs: 103, nothing written.
        for bad in ([], [{"op": "shout", "key": "x"}], [{"op": "set", "key": "", "value": 1}],
                    [{"op": "cas", "key": "x", "value": 1}], "notalist"):
            resp = requests.post(b.url("/api/channels/%s/state" % ch), json={"ops": bad}, timeout=5)
            assert resp.status_code == 400 and resp.json()["error"]["code"] == 103, resp.text
        assert state_of(a, ch)["offset"] == 7

        async def ws():
            c = await connect(b)
            m = await c.request({"op": "state", "id": 1, "channel": ch, "ops": [{"op": "incr", "key": "y"}]})
            assert m["op"] == "updated" and m["offset"] == 8 and m["changes"] == [{"key": "y", "value": 3,
                                                                                   "version": 6}], m
            m = await c.request({"op": "state", "id": 2, "channel": ch,
                                 "ops": [{"op": "cas", "key": "y", "value": 0, "version": 1}]})
            assert m["op"] == "error" and m["code"] == 117 and m["version"] == 6, m
        run(ws())
    finally:
        if r:
            r.kill()


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
