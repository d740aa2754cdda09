"""Presence across Herald nodes on the Redis engine (docs/cluster.md#presence):
members of every node listed from any node (op, REST, subscribe with
presence), join and leave once per user whichever nodes its connections use,
in the same order on every node; a node killed with -9 has its members leave
within the documented bound (3 x engine.presence_heartbeat), seen once; a
node stalled past its lease writes its members again; the grace and the
tier work across nodes; Redis
down answers 133 / 503 and, once back, each node writes its members again;
the bad inputs answer as on one node. Each test starts its own redis-server."""
import asyncio
import shutil
import signal
import time

import requests

from conftest import Broker, run, ws_connect, hs256_token, drain, reply
from test_cluster import REDIS, Redis, engine_args, pytestmark, redis, wait_ready  # noqa: F401 (fixtures)

SECRET = b"0123456789abcdef0123456789abcdef-secret"
HEARTBEAT_MS = 300
ROOM = ("--hmac-secret", SECRET.decode(), "--ns", "room.presence=on", "--ns", "room.join_leave=on",
        "--ns", "room.presence_grace=0", "--ns", "quiet.history_size=5",
        "--engine-presence-heartbeat", "%dms" % HEARTBEAT_MS)


def node(make_broker, redis_, *extra):
    b = make_broker(*engine_args(redis_), *ROOM, *extra)
    wait_ready(b)
    return b


async def user(b, name, **claims):
    c = await ws_connect(b, "json")
    m = await c.request({"op": "connect", "id": 1, "token": hs256_token(SECRET, name, **claims)})
    assert m["op"] == "connected" and m["user"] == name, m
    c.client_id = m["client"]
    return c


async def events(c, within=0.6):
    """Every message that arrives within @within seconds of the previous."""
    return await drain(c, within)


def kinds(msgs):
    return [(m["op"], m.get("user")) for m in msgs if m["op"] in ("join", "leave", "presence_update")]


def presence_rest(b, channel):
    return requests.get(b.url("/api/channels/%s/presence" % channel), timeout=5)


def test_members_of_every_node_and_join_leave_once(make_broker, redis):
    a, b, c = (node(make_broker, redis) for _ in range(3))

    async def go():
        wa, wc = await user(a, "wa"), await user(c, "wc")
        await wa.subscribe("room:1")
        await wc.subscribe("room:1")
        assert kinds(await events(wa)) == [("join", "wc")]
        alice1 = await user(a, "alice", info={"name": "Alice"})
        await alice1.subscribe("room:1")
        alice2 = await user(b, "alice", info={"name": "Alice"})
        await alice2.subscribe("room:1")
        bob = await user(b, "bob")
        r = await bob.request({"op": "subscribe", "id": 5, "channel": "room:1", "presence": True})
        assert r["op"] == "subscribed", r
        assert {m["user"] for m in r["presence"]["members"]} == {"wa", "wc", "alice", "bob"}
        # One join per user, though alice has connections on two nodes; same order on A and C.
        ev_c = await events(wc)
        ev_a = await events(wa)
        assert kinds(ev_c) == [("join", "alice"), ("join", "bob")], ev_c
        assert kinds(ev_a) == kinds(ev_c)
        assert [m["seq"] for m in ev_a] == [m["seq"] for m in ev_c]
        assert ev_c[0]["info"] == {"name": "Alice"}
        # Listed from any node: the op, presence_stats and REST.
        m = await wc.request({"op": "presence", "id": 6, "channel": "room:1"})
        members = {x["user"]: x for x in m["members"]}
        assert set(members) == {"wa", "wc", "alice", "bob"} and m["count"] == 4, m
        assert members["alice"]["connections"] == 2 and m["connections"] == 5
        assert m["seq"] == ev_c[-1]["seq"]
        m = await wc.request({"op": "presence_stats", "id": 7, "channel": "room:1"})
        assert m == {"op": "presence_stats", "id": 7, "channel": "room:1", "members": 4, "connections": 5}
        for n in (a, b, c):
            r = presence_rest(n, "room:1")
            assert r.status_code == 200 and r.json()["count"] == 4, r.text
            assert {x["user"] for x in r.json()["members"]} == {"wa", "wc", "alice", "bob"}
        # A node without subscribers of the channel answers too.
        r = presence_rest(c, "room:empty")
        assert r.status_code == 200 and r.json()["members"] == [] and r.json()["count"] == 0
        # An info update on B is seen on A and C.
        r = await bob.request({"op": "presence_update", "id": 8, "channel": "room:1", "info": {"status": "away"}})
        assert r["op"] == "presence_updated" and r["seq"] > ev_c[-1]["seq"], r
        up = await events(wc)
        assert kinds(up) == [("presence_update", "bob")] and up[0]["info"] == {"status": "away"}
        assert kinds(await events(wa)) == [("presence_update", "bob")]
        # alice leaves on A: still on B, no leave; then on B: one leave.
        assert (await reply(alice1, {"op": "unsubscribe", "id": 50, "channel": "room:1"}))["op"] == "unsubscribed"
        assert kinds(await events(wc)) == []
        m = await wc.request({"op": "presence", "id": 9, "channel": "room:1"})
        assert {x["user"]: x["connections"] for x in m["members"]}["alice"] == 1
        await alice2.ws.close()
        ev_c, ev_a = await events(wc), await events(wa)
        assert kinds(ev_c) == [("leave", "alice")] and kinds(ev_a) == kinds(ev_c)
        r = presence_rest(a, "room:1").json()
        assert {x["user"] for x in r["members"]} == {"wa", "wc", "bob"} and r["count"] == 3
    run(go())


def test_killed_node_members_leave_within_the_bound(make_broker, redis, tmp_path):
    a, b = node(make_broker, redis), node(make_broker, redis)
    victim = Broker(tmp_path, [*engine_args(redis), *ROOM], name="victim").start()
    try:
        wait_ready(victim)

        async def go():
            wa, wb = await user(a, "wa"), await user(b, "wb")
            await wa.subscribe("room:k")
            await wb.subscribe("room:k")
            carol, dave = await user(victim, "carol"), await user(victim, "dave")
            await carol.subscribe("room:k")
            await dave.subscribe("room:k")
            # dave also has a connection on A: he stays.
            dave_a = await user(a, "dave")
            await dave_a.subscribe("room:k")
            await events(wa)
            await events(wb)
            victim.send_signal(signal.SIGKILL)
            victim.wait(5)
            t0 = time.monotonic()
            m = await wa.next(timeout=3 * HEARTBEAT_MS / 1000 + 2)
            took = time.monotonic() - t0
            assert (m["op"], m["user"]) == ("leave", "carol"), m
            # The bound: 3 heartbeats after the victim's last one (plus test slack).
            assert took <= 3 * HEARTBEAT_MS / 1000 + 0.5, took
            mb = await wb.next(timeout=2)
            assert (mb["op"], mb["user"], mb["seq"]) == ("leave", "carol", m["seq"])
            # Once: no second leave from the other surviving node, none for dave.
            assert kinds(await events(wa, 3 * HEARTBEAT_MS / 1000)) == []
            assert kinds(await events(wb, 0.3)) == []
            r = presence_rest(b, "room:k").json()
            assert {x["user"]: x["connections"] for x in r["members"]} == {"wa": 1, "wb": 1, "dave": 1}
        run(go())
    finally:
        victim.stop()


def test_redis_down_then_back_resyncs(make_broker, redis, tmp_path):
    a, b = node(make_broker, redis), node(make_broker, redis)

    async def go():
        alice, bob = await user(a, "alice"), await user(b, "bob")
        await alice.subscribe("room:r")
        await bob.subscribe("room:r")
        assert presence_rest(a, "room:r").json()["count"] == 2
        redis.kill()
        deadline = time.monotonic() + 10
        while requests.get(a.url("/api/health/ready"), timeout=2).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = presence_rest(a, "room:r")
        assert r.status_code == 503 and r.json()["error"]["code"] == 133, r.text
        m = await reply(alice, {"op": "presence", "id": 3, "channel": "room:r"})
        assert m["op"] == "error" and m["code"] == 133, m
        m = await reply(alice, {"op": "presence_stats", "id": 4, "channel": "room:r"})
        assert m["op"] == "error" and m["code"] == 133, m
        # bob goes while Redis is away, carol comes.
        await bob.ws.close()
        carol = await user(b, "carol")
        await carol.send({"op": "subscribe", "id": 5, "channel": "room:r"})
        assert (await carol.next())["code"] == 133
        # Redis comes back with its data (the AOF, which still lists bob): each
        # node writes its members again under a new id and drops its old one.
        redis.start()
        wait_ready(a)
        wait_ready(b)
        deadline = time.monotonic() + 5
        while True:
            r = presence_rest(a, "room:r").json()
            if {x["user"] for x in r["members"]} == {"alice"}:
                break
            assert time.monotonic() < deadline, r
            await asyncio.sleep(0.1)
        assert (await reply(carol, {"op": "subscribe", "id": 51, "channel": "room:r"}))["op"] == "subscribed"
        r = presence_rest(b, "room:r").json()
        assert {x["user"]: x["connections"] for x in r["members"]} == {"alice": 1, "carol": 1}, r
        # Redis losing everything (a restart without its data): written again too.
        redis.kill()
        for f in redis.dir.iterdir():
            if f.name != "redis.log":
                shutil.rmtree(f) if f.is_dir() else f.unlink()
        redis.start()
        deadline = time.monotonic() + 10
        while True:
            r = presence_rest(a, "room:r")
            if r.status_code == 200 and r.json()["count"] == 2:
                break
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.1)
        assert {x["user"] for x in r.json()["members"]} == {"alice", "carol"}
    run(go())


def test_bad_inputs_as_on_one_node(make_broker, redis):
    a, b = node(make_broker, redis), node(make_broker, redis)

    async def go():
        alice = await user(a, "alice")
        await alice.subscribe("room:b")
        # A namespace without presence.
        m = await reply(alice, {"op": "presence", "id": 2, "channel": "quiet:x"})
        assert m["op"] == "error" and m["code"] == 116, m
        r = presence_rest(b, "quiet:x")
        assert r.status_code == 404 and r.json()["error"]["code"] == 116, r.text
        # presence_update: info of the wrong type, too big, not subscribed.
        m = await reply(alice, {"op": "presence_update", "id": 3, "channel": "room:b", "info": "away"})
        assert m["op"] == "error" and m["code"] == 103, m
        m = await reply(alice, {"op": "presence_update", "id": 4, "channel": "room:b", "info": {"x": "y" * 2000}})
        assert m["op"] == "error" and m["code"] == 103, m
        m = await reply(alice, {"op": "presence_update", "id": 5, "channel": "room:other", "info": {}})
        assert m["op"] == "error" and m["code"] == 108, m
        m = await reply(alice, {"op": "presence", "id": 6, "channel": "bad channel"})
        assert m["op"] == "error", m
        # Nothing was written, and the broker goes on.
        r = presence_rest(b, "room:b").json()
        assert [(x["user"], x.get("info")) for x in r["members"]] == [("alice", None)], r
        m = await reply(alice, {"op": "presence_update", "id": 7, "channel": "room:b", "info": None})
        assert m["op"] == "presence_updated", m
    run(go())


def test_moving_node_within_the_grace_does_not_flap(make_broker, redis):
    grace = ("--ns", "lobby.presence=on", "--ns", "lobby.join_leave=on", "--ns", "lobby.presence_grace=800ms")
    a, b = node(make_broker, redis, *grace), node(make_broker, redis, *grace)

    async def go():
        w = await user(b, "w")
        await w.subscribe("lobby:1")
        alice = await user(a, "alice")
        await alice.subscribe("lobby:1")
        assert kinds(await events(w)) == [("join", "alice")]
        # alice's connection drops on A and comes back on B within the grace: no leave, no join.
        await alice.ws.close()
        alice = await user(b, "alice")
        assert (await reply(alice, {"op": "subscribe", "id": 60, "channel": "lobby:1"}))["op"] == "subscribed"
        assert kinds(await events(w, 1.5)) == []
        r = presence_rest(a, "lobby:1").json()
        assert {x["user"]: x["connections"] for x in r["members"]} == {"w": 1, "alice": 1}, r
        # Gone for good: one leave, after the grace.
        await alice.ws.close()
        t0 = time.monotonic()
        m = await w.next(timeout=3)
        assert (m["op"], m["user"]) == ("leave", "alice") and time.monotonic() - t0 >= 0.6, m
    run(go())


def test_above_the_tier_across_nodes(make_broker, redis):
    tier = ("--ns", "big.presence=on", "--ns", "big.join_leave=on", "--ns", "big.presence_grace=0",
            "--ns", "big.presence_tier=2")
    a, b = node(make_broker, redis, *tier), node(make_broker, redis, *tier)

    async def go():
        w = await user(a, "w")
        await w.subscribe("big:1")
        others = []
        for i, n in enumerate((b, b, a)):
            c = await user(n, "u%d" % i)
            await c.subscribe("big:1")
            others.append(c)
        # Batches go out once a second: the two merged joins may straddle a flush,
        # so wait long enough for two.
        got = await events(w, 2.5)
        joins = [m for m in got if m["op"] == "join"]
        batches = [m for m in got if m["op"] == "presence_batch"]
        # Up to the tier one by one, then merged; every join is there once, in seq order.
        assert [m["user"] for m in joins] == ["u0"], got
        # u1 (node B) and u2 (node A) join through different Redis connections: a subscribe
        # is answered before its join's script has run, so either may come first; the
        # batches list them in the order Redis applied them.
        assert 1 <= len(batches) <= 2, got
        merged = [x for b in batches for x in b["joins"]]
        assert sorted(x["user"] for x in merged) == ["u1", "u2"], got
        seqs = [x["seq"] for x in merged if "seq" in x]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), got
        assert batches[-1]["count"] == 4 and sum(b["joins_total"] for b in batches) == 2, got
        m = await reply(w, {"op": "presence", "id": 70, "channel": "big:1"})
        assert m["count"] == 4 and m["tiered"] is True and len(m["members"]) == 4, m
    run(go())


def test_stalled_node_taken_for_dead_writes_its_members_again(make_broker, redis):
    a, b = node(make_broker, redis), node(make_broker, redis)

    async def go():
        w = await user(b, "w")
        await w.subscribe("room:s")
        alice = await user(a, "alice")
        await alice.subscribe("room:s")
        assert kinds(await events(w)) == [("join", "alice")]
        # A frozen for longer than its lease: B drops its members.
        a.send_signal(signal.SIGSTOP)
        try:
            m = await w.next(timeout=3 * HEARTBEAT_MS / 1000 + 2)
            assert (m["op"], m["user"]) == ("leave", "alice"), m
        finally:
            a.send_signal(signal.SIGCONT)
        # A notices at its next heartbeat and writes alice again: she joins once.
        m = await w.next(timeout=3)
        assert (m["op"], m["user"]) == ("join", "alice"), m
        assert kinds(await events(w, 3 * HEARTBEAT_MS / 1000)) == []
        r = presence_rest(b, "room:s").json()
        assert {x["user"]: x["connections"] for x in r["members"]} == {"w": 1, "alice": 1}, r
    run(go())
