"""State channels: atomic operations, snapshot then deltas with no gap and no
duplicate, recovery, conflation for a slow reader, paging and filters, restarts.
Each protocol test runs on both engines (engine_broker: LMDB, and Redis with
one node; test_cluster_state.py has the cross-node ones)."""
import asyncio
import threading
import time

import requests

from conftest import apply_delta, connect, run, slow_subscriber

STATE = ("--ns", "scores.state=on", "--ns", "tickets.state=on", "--ns", "tickets.history_size=1000")


def ops(b, channel, *op_list, expect=200):
    r = requests.post(b.url("/api/channels/%s/state" % channel), json={"ops": list(op_list)}, timeout=5)
    assert r.status_code == expect, (r.status_code, r.text)
    return r.json()


def test_operations_and_errors(engine_broker):
    b = engine_broker(*STATE)
    r = ops(b, "scores:g1", {"op": "set", "key": "home", "value": 0}, {"op": "set", "key": "away", "value": 0},
            {"op": "set", "key": "teams", "value": {"home": "Lakers", "away": "Celtics"}})
    assert r["offset"] == 1 and [c["version"] for c in r["changes"]] == [1, 1, 1]
    r = ops(b, "scores:g1", {"op": "incr", "key": "home", "by": 2}, {"op": "incr", "key": "home", "by": 3},
            {"op": "incr", "key": "fouls"})
    assert r["changes"] == [{"key": "home", "value": 2, "version": 2}, {"key": "home", "value": 5, "version": 3},
                            {"key": "fouls", "value": 1, "version": 1}]
    r = ops(b, "scores:g1", {"op": "cas", "key": "away", "value": 3, "version": 1})
    assert r["changes"][0] == {"key": "away", "value": 3, "version": 2}
    # cas conflict: nothing of the request is applied.
    r = ops(b, "scores:g1", {"op": "set", "key": "home", "value": 100}, {"op": "cas", "key": "away", "value": 9,
                                                                         "version": 1}, expect=409)
    assert r["error"]["code"] == 117 and r["error"]["version"] == 2
    # cas with version 0: the key must not exist.
    ops(b, "scores:g1", {"op": "cas", "key": "away", "value": 9, "version": 0}, expect=409)
    r = ops(b, "scores:g1", {"op": "cas", "key": "overtime", "value": False, "version": 0})
    assert r["changes"][0]["version"] == 1
    # incr on a non-integer rolls the whole request back too.
    r = ops(b, "scores:g1", {"op": "incr", "key": "home", "by": 1}, {"op": "incr", "key": "teams", "by": 1},
            expect=422)
    assert r["error"]["code"] == 118
    ops(b, "scores:g1", {"op": "incr", "key": "home", "by": 2 ** 62}, {"op": "incr", "key": "home", "by": 2 ** 62},
        expect=422)
    st = {i["key"]: i for i in requests.get(b.url("/api/channels/scores:g1/state"), timeout=5).json()["items"]}
    assert st["home"]["value"] == 5 and st["home"]["version"] == 3, "the failed requests changed nothing"
    # delete and reset
    r = ops(b, "scores:g1", {"op": "delete", "key": "fouls"}, {"op": "delete", "key": "never-there"})
    assert r["changes"] == [{"key": "fouls", "deleted": True}]
    # A request that changes nothing publishes nothing: same offset, no entry.
    r2 = ops(b, "scores:g1", {"op": "delete", "key": "never-there"})
    assert r2["changes"] == [] and r2["offset"] == r["offset"]
    hist = requests.get(b.url("/api/channels/scores:g1/history?limit=100"), timeout=5).json()["publications"]
    assert hist[-1]["offset"] == r["offset"]
    # Bad inputs.
    for bad in ([], [{"op": "shout", "key": "x"}], [{"op": "set", "key": "", "value": 1}],
                [{"op": "set", "key": "x"}], [{"op": "incr", "key": "x", "by": 1.5}],
                [{"op": "cas", "key": "x", "value": 1}], [{"op": "set", "key": "k" * 257, "value": 1}],
                "notalist", [{"op": "set", "key": "x", "value": 1}] * 101):
        r = requests.post(b.url("/api/channels/scores:g1/state"), json={"ops": bad}, timeout=5)
        assert r.status_code == 400 and r.json()["error"]["code"] == 103, (bad, r.text)
    r = requests.post(b.url("/api/channels/chat:x/state"), json={"ops": [{"op": "reset"}]}, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == 116
    r = ops(b, "scores:g1", {"op": "reset"}, {"op": "set", "key": "home", "value": 0})
    # After a reset a key starts above every version the channel's keys had (home was at 3):
    # versions never repeat within the epoch (test_seats_hardening.py).
    assert r["changes"] == [{"key": "home", "value": 0, "version": 4}]
    items = requests.get(b.url("/api/channels/scores:g1/state"), timeout=5).json()["items"]
    assert [i["key"] for i in items] == ["home"]


def test_snapshot_then_deltas_while_updates_stream(engine_broker):
    b = engine_broker(*STATE)
    ops(b, "scores:live", {"op": "set", "key": "n", "value": 0})
    stop = threading.Event()
    done = []

    def writer():
        s = requests.Session()
        while not stop.is_set() and len(done) < 400:
            r = s.post(b.url("/api/channels/scores:live/state"),
                       json={"ops": [{"op": "incr", "key": "n"}, {"op": "set", "key": "k%d" % (len(done) % 7),
                                                                  "value": len(done)}]}, timeout=5)
            assert r.status_code == 200
            done.append(r.json()["offset"])

    async def go():
        t = threading.Thread(target=writer)
        t.start()
        clients = []
        try:
            for _ in range(6):
                c = await connect(b, "msgpack" if len(clients) % 2 else "json")
                m = await c.request({"op": "subscribe", "channel": "scores:live"})
                assert m["op"] == "subscribed" and "state" in m
                clients.append((c, m))
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            t.join(10)
        last = max(done)
        final = requests.get(b.url("/api/channels/scores:live/state"), params={"limit": 1000}, timeout=5).json()
        want = {i["key"]: {"value": i["value"], "version": i["version"]} for i in final["items"]}
        for c, m in clients:
            state = dict(m["state"])
            expect = m["offset"] + 1
            while expect <= last:
                p = await c.expect(op="pub", channel="scores:live")
                assert p["offset"] == expect, "deltas must follow the snapshot with no gap or duplicate"
                apply_delta(state, p["data"])
                expect += 1
            assert state == want, "snapshot + deltas converge to the stored state"
            await c.close()
    run(go(), timeout=60)


def test_recovery_with_since(engine_broker):
    b = engine_broker(*STATE, "--ns", "scores.history_size=5")
    ops(b, "scores:r", {"op": "set", "key": "a", "value": 1})

    async def go():
        c = await connect(b)
        m = await c.request({"op": "subscribe", "channel": "scores:r"})
        epoch, off = m["epoch"], m["offset"]
        await c.close()
        ops(b, "scores:r", {"op": "incr", "key": "a"})
        ops(b, "scores:r", {"op": "set", "key": "b", "value": "x"})
        # The log still holds the gap: the missed deltas, no snapshot.
        c = await connect(b)
        m = await c.request({"op": "subscribe", "channel": "scores:r", "since": {"epoch": epoch, "offset": off}})
        assert m["recovered"] is True and "state" not in m
        assert [p["offset"] for p in m["publications"]] == [off + 1, off + 2]
        assert m["publications"][0]["data"]["changes"][0] == {"key": "a", "value": 2, "version": 2}
        await c.close()
        # A gap longer than the log keeps: a fresh snapshot, recovered false.
        for i in range(10):
            ops(b, "scores:r", {"op": "incr", "key": "a"})
        c = await connect(b)
        m = await c.request({"op": "subscribe", "channel": "scores:r", "since": {"epoch": epoch, "offset": off}})
        assert m["recovered"] is False and m["state"]["a"]["value"] == 12 and m["state"]["b"]["value"] == "x"
        await c.close()
    run(go())


# LMDB only: its Redis variant, with the writer on another node, is test_cluster_state.py's
# test_slow_reader_on_one_node_converges.
def test_slow_reader_converges_instead_of_being_cut(make_broker):
    b = make_broker(*STATE, "--send-queue-max", "64k", "--max-message-size", "16k")
    ops(b, "scores:slow", {"op": "set", "key": "score", "value": 0})

    async def go():
        slow, subscribed = slow_subscriber(b, "scores:slow")
        # It stops reading while many updates stream past: more than the kernel's
        # socket buffers (up to 4 MiB here) and the queue can hold.
        s = requests.Session()
        pad = "p" * 8000
        for i in range(1000):
            r = s.post(b.url("/api/channels/scores:slow/state"),
                       json={"ops": [{"op": "incr", "key": "score"}, {"op": "set", "key": "pad", "value": pad + str(i)}]},
                       timeout=5)
            assert r.status_code == 200
        assert "slow consumer" not in b.log
        final = {i["key"]: i["value"] for i in
                 requests.get(b.url("/api/channels/scores:slow/state"), timeout=5).json()["items"]}
        assert final["score"] == 1000
        # Now it reads: deltas, a fresh snapshot in place of what it missed,
        # then nothing is left out: its view converges to the final state.
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
            if state.get("score", {}).get("value") == 1000 and state.get("pad", {}).get("value") == final["pad"]:
                break
        slow.close()
        assert snapshots >= 1, "the lagging reader was resynchronised with a snapshot"
        assert state["score"]["value"] == 1000 and state["pad"]["value"] == final["pad"]
    run(go(), timeout=60)


def test_large_delta_to_an_idle_subscriber_is_delivered(engine_broker):
    """A delta over half of send_queue_max reaches a subscriber whose queue is
    empty, and the deltas after it keep coming (it used to be dropped for a
    resync that never came)."""
    b = engine_broker(*STATE, "--send-queue-max", "64k")

    async def go():
        c = await connect(b)
        await c.subscribe("scores:big")
        big = "x" * 40000
        ops(b, "scores:big", {"op": "set", "key": "pad", "value": big})
        m = await c.expect(op="pub", channel="scores:big")
        assert m["data"]["changes"][0]["value"] == big
        ops(b, "scores:big", {"op": "incr", "key": "n"})
        m = await c.expect(op="pub", channel="scores:big")
        assert m["data"]["changes"] == [{"key": "n", "value": 1, "version": 1}]
    run(go())


def test_state_survives_restart_and_pages(engine_broker, tmp_path):
    data = tmp_path / "d"
    b = engine_broker(*STATE, data_dir=data)
    seat_ops = [{"op": "set", "key": "A-%02d" % i, "value": {"status": "free" if i % 3 else "held", "row": "A"}}
                for i in range(30)]
    ops(b, "tickets:e1", *seat_ops)
    assert b.stop() == 0
    b = engine_broker(*STATE, data_dir=data, name="again")
    url = b.url("/api/channels/tickets:e1/state")
    keys, cursor = [], None
    while True:
        params = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        p = requests.get(url, params=params, timeout=5).json()
        keys += [i["key"] for i in p["items"]]
        cursor = p["next_cursor"]
        if not cursor:
            break
    assert keys == ["A-%02d" % i for i in range(30)], "every key once, in order, across pages"
    held = requests.get(url, params={"field": "status", "value": "held", "limit": 100}, timeout=5).json()["items"]
    assert [i["key"] for i in held] == ["A-%02d" % i for i in range(0, 30, 3)]
    found = requests.get(url, params={"q": "A-1", "limit": 100}, timeout=5).json()["items"]
    assert [i["key"] for i in found] == ["A-%02d" % i for i in range(10, 20)]
    assert [i["key"] for i in requests.get(url, params={"prefix": "A-2"}, timeout=5).json()["items"]] == \
        ["A-%02d" % i for i in range(20, 30)]
    assert requests.get(url, params={"field": "status"}, timeout=5).status_code == 400
    r = ops(b, "tickets:e1", {"op": "cas", "key": "A-01", "value": {"status": "held"}, "version": 1})
    assert r["offset"] == 2, "offsets continue after the restart"


def test_state_over_websocket_and_permissions(engine_broker):
    b = engine_broker(*STATE, "--ns", "scores.publish=server")

    async def go():
        c = await connect(b)
        m = await c.request({"op": "state", "id": 1, "channel": "tickets:e2",
                             "ops": [{"op": "set", "key": "s1", "value": "free"}]})
        assert m["op"] == "updated" and m["id"] == 1 and m["changes"][0]["version"] == 1
        m = await c.request({"op": "state", "id": 2, "channel": "scores:g", "ops": [{"op": "incr", "key": "x"}]})
        assert m["op"] == "error" and m["code"] == 114, "a server-only namespace refuses client writes"
        m = await c.request({"op": "state", "id": 3, "channel": "chat:x", "ops": [{"op": "incr", "key": "x"}]})
        assert m["op"] == "error" and m["code"] == 116
        m = await c.request({"op": "state", "id": 4, "channel": "tickets:e2", "ops": [{"op": "cas", "key": "s1",
                                                                                     "value": "held", "version": 7}]})
        assert m["op"] == "error" and m["code"] == 117 and m["version"] == 1
        await c.close()
    run(go())


def test_scoreboard_adapter(engine_broker):
    b = engine_broker(*STATE)
    base = b.url("/api/scoreboards/game-7")

    async def go():
        viewer = await connect(b, "msgpack")
        m = await viewer.request({"op": "subscribe", "channel": "scores:game-7"})
        state = dict(m["state"])
        r = requests.put(base + "/teams", json={"home": "Lakers", "away": "Celtics"}, timeout=5)
        assert r.status_code == 200 and r.json()["changes"][0]["value"] == {"home": "Lakers", "away": "Celtics"}
        for team, pts in (("home", 2), ("away", 3), ("home", 1), ("home", -1)):
            r = requests.post(base + "/score", json={"team": team, "points": pts}, timeout=5)
            assert r.status_code == 200, r.text
        for _ in range(5):
            apply_delta(state, (await viewer.expect(op="pub"))["data"])
        assert state["score:home"]["value"] == 2 and state["score:away"]["value"] == 3
        assert state["teams"]["value"]["home"] == "Lakers"
        r = requests.post(base + "/reset", timeout=5)
        assert r.status_code == 200 and r.json()["reset"] is True
        apply_delta(state, (await viewer.expect(op="pub"))["data"])
        assert state == {}
        # Bad input gets a clear error; nothing changes.
        for path, body, status in (("/score", {"team": "ho me", "points": 2}, 400), ("/score", {"team": "home"}, 400),
                                   ("/score", {"team": "home", "points": 1.5}, 400),
                                   ("/score", {"team": "home", "points": 5000}, 400), ("/teams", ["x"], 405),
                                   ("/overtime", {}, 404)):
            r = requests.post(base + path, json=body, timeout=5)
            assert r.status_code == status, (path, body, r.status_code, r.text)
        r = requests.put(base + "/teams", json={"home": 7}, timeout=5)
        assert r.status_code == 400
        await viewer.assert_silent(0.3)
        await viewer.close()
    run(go())
    # A plain publish to a state channel is refused: deltas come from operations only.
    r = requests.post(b.url("/api/publish"), json={"channel": "scores:game-7", "data": 1}, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == 116
