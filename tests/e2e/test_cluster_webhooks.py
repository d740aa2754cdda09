"""Outbound webhooks across Herald nodes on the Redis engine (docs/cluster.md#webhooks):
publications made on two nodes delivered once each, in order per channel, by one
node at a time (the lease holder), with the events of a channel without history and
occupancy; event ids that a Redis which lost its data does not hand out again;
retries with backoff whose attempt counts and held channels live in Redis, so that
after a kill -9 of the deliverer another node takes over within the lease and
continues them to the dead letters; the dead-letter routes answered by a node that
does not deliver; a node stopped cleanly handing the lease over at once; Redis
killed and restarted with events queued (delivery pauses, then resumes, nothing
acknowledged lost); takeovers under load keeping each channel's order; seat.booked
and seat.expired queued by the seat script; state and seat map deltas as
publication events like LMDB's; presence joins and leaves once each, a dead node's
members included; channel.occupied and channel.vacated once for the whole cluster
(a dead node's channels vacated by its reaper, a frozen node's vacated and occupied
again, none repeated across a Redis restart, one again after Redis lost its data,
no occupancy keys for users without such webhooks). Each test starts its own
redis-server (the LMDB variant of the state test none). test_webhooks.py runs its ordering, dead-letter, held-channel and
kill -9 walks on both engines too; test_cluster.py refuses a short webhook_lease."""
import asyncio
import json
import re
import signal
import time

import pytest
import requests

from conftest import Broker, connect, run
from test_cluster import Redis, engine_args, pytestmark, redis, redis_cmd, wait_ready  # noqa: F401 (fixtures)
from test_webhooks import SECRET, pubs, receiver, status_until, verify, write_conf  # noqa: F401 (fixture)
from test_webhooks import start as start_with

LEASE = "1s"
TAKEOVER_S = 1.0 + 0.2        # the lease, and one idle look (IDLE_LOOK_REDIS_MS)
TAKES = "this node delivers now"


class Nodes:
    """The nodes of a test: started with the webhook config on one Redis; at
    the end, every node not killed must exit cleanly (those killed with
    kill() are not checked)."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.all = []
        self.killed = []

    def __call__(self, redis_, conf, *extra):
        b = Broker(self.tmp_path, ["--config", str(conf), *engine_args(redis_), "--engine-webhook-lease", LEASE,
                                   *extra], name="node%d" % len(self.all)).start()
        self.all.append(b)
        wait_ready(b)
        return b

    def kill(self, b):
        self.killed.append(b)
        b.send_signal(signal.SIGKILL)
        b.wait(5)


@pytest.fixture
def node(tmp_path):
    ns = Nodes(tmp_path)
    yield ns
    failures = []
    for b in ns.all:
        if b in ns.killed:
            continue
        try:
            b.check_clean_exit()
        except pytest.fail.Exception as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


def start_on(engine, tmp_path, conf):
    return start_with(tmp_path, conf, engine=engine)


def delivering(b):
    """Whether @b's log says it holds the lease now (it took it last, and did
    not lose it since)."""
    log = b.log
    return log.rfind(TAKES) > max(log.rfind("another node delivers now"), log.rfind("not delivering until"))


def deliverers(bs, timeout=5.0):
    """The nodes that hold the lease by their logs (waits for at least one)."""
    deadline = time.monotonic() + timeout
    while True:
        out = [b for b in bs if delivering(b)]
        if out or time.monotonic() >= deadline:
            return out
        time.sleep(0.05)


def hgetall(redis_, key):
    """HGETALL of @key as {field: value} (small hashes only)."""
    raw = redis_cmd(redis_.port, "HGETALL", key)
    parts = [p for p in raw.split(b"\r\n") if p and not p.startswith((b"*", b"$"))]
    return {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2)}


def dead_letters(b, timeout=10.0, n=1):
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(b.url("/api/webhooks/hook/dead"), timeout=5)
        assert r.status_code == 200, r.text
        dead = r.json()["dead_letters"]
        if len(dead) >= n or time.monotonic() >= deadline:
            return dead
        time.sleep(0.05)


def in_order_once(evs, channel):
    """The data.n of @channel's publications, each event id once, checking that
    repeats (at least once) only repeat ids already seen, in order."""
    seen, out = set(), []
    for e in evs:
        if e.get("channel") == channel and e["type"] == "publication" and e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    offs = [e["offset"] for e in out]
    assert offs == sorted(offs), (channel, offs)
    return [e["data"]["n"] for e in out]


def test_publications_on_two_nodes_delivered_once_in_order(node, redis, receiver, tmp_path):
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url, "batch_size = 7\n")
    a = node(redis, conf)
    b = node(redis, conf)
    try:
        for i in range(20):
            (a if i % 2 else b).publish_rest("orders:a", {"n": i})
            (b if i % 2 else a).publish_rest("orders:b", {"n": i})
        a.publish_rest("live:x", {"n": 0})           # no history: queued all the same
        b.publish_rest("other:y", {"n": 0})          # not one of the webhook's namespaces

        async def ws():
            c = await connect(b)
            assert (await c.request({"op": "subscribe", "channel": "chat:room"}))["op"] == "subscribed"
            await c.request({"op": "unsubscribe", "channel": "chat:room"})
            await c.close()
        run(ws())
        evs = rcv.wait_events(lambda e: len(pubs(e, "orders:a")) >= 20 and len(pubs(e, "orders:b")) >= 20 and
                              any(x["type"] == "channel.vacated" for x in e) and
                              any(x["type"] == "presence.member_removed" for x in e), timeout=20)
        # Once each (no failure, so no repeat), in publication order, offsets 1..20.
        assert pubs(evs, "orders:a") == list(range(20)), pubs(evs, "orders:a")
        assert pubs(evs, "orders:b") == list(range(20)), pubs(evs, "orders:b")
        assert [e["offset"] for e in evs if e.get("channel") == "orders:a"] == list(range(1, 21))
        assert pubs(evs, "live:x") == [0] and not pubs(evs, "other:y")
        types = [e["type"] for e in evs if e.get("channel") == "chat:room"]
        assert types.index("channel.occupied") < types.index("channel.vacated"), types
        assert types.count("presence.member_added") == 1 and types.count("presence.member_removed") == 1, types
        joined = [e for e in evs if e["type"] == "presence.member_added"][0]
        assert joined["channel"] == "chat:room" and joined["user"] and joined["ts"] > 0, joined
        ids = [int(e["id"]) for e in evs]
        assert len(set(ids)) == len(ids), "an event delivered twice without a failure"
        for ch in {e.get("channel") for e in evs}:
            cids = [int(e["id"]) for e in evs if e.get("channel") == ch]
            assert cids == sorted(cids), (ch, cids)
        for headers, body, _ in rcv.requests:
            verify(headers, body)
            assert len(json.loads(body)["events"]) <= 7
        # One node delivered all of it; both report the shared queue.
        ds = deliverers([a, b])
        assert len(ds) == 1, [b_.log[-1500:] for b_ in (a, b)]
        sts = [status_until(x, lambda s: s["hook"]["queue_depth"] == 0)["hook"] for x in (a, b)]
        assert sum(s["deliveries"] for s in sts) == len(evs), sts
        assert sorted(s["deliveries"] for s in sts)[0] == 0, sts
        assert all(s["queue_depth"] == 0 and s["dead_letters"] == 0 for s in sts), sts
        assert hgetall(redis, "herald:we:hook") == {}, "delivered events stay in Redis"
        # Ids start from Redis' clock (microseconds), exact; a Redis that lost its
        # data does not hand out again an id the receiver has seen.
        assert 10 ** 15 < min(ids) and max(ids) < 2 ** 53, ids
        assert redis_cmd(redis.port, "FLUSHALL").startswith(b"+OK")
        a.publish_rest("orders:c", {"n": 0})
        evs = rcv.wait_events(lambda e: pubs(e, "orders:c") == [0], timeout=10)
        assert int([e for e in evs if e.get("channel") == "orders:c"][0]["id"]) > max(ids)
    finally:
        a.check_clean_exit()
        b.check_clean_exit()


def test_retries_continue_on_another_node_after_kill9(node, redis, receiver, tmp_path):
    """The deliverer fails, is killed with SIGKILL mid-backoff; the survivor takes the
    lease within its TTL and continues the same attempt counts to the dead letters;
    the dead-letter routes work on any node; a retry then delivers in order."""
    state = {"ok": False}
    rcv = receiver(lambda n: 200 if state["ok"] else 500)
    conf = write_conf(tmp_path, rcv.url, "max_attempts = 8\nretry_base = 300ms\nretry_max = 600ms\n")
    a = node(redis, conf)
    b = node(redis, conf)
    survivor = None
    try:
        for i in range(5):
            b.publish_rest("orders:k", {"n": i})
        first = deliverers([a, b])
        assert len(first) == 1
        victim = first[0]
        survivor = b if victim is a else a
        # Wait for two failed attempts, stored in Redis with the channel's backoff.
        deadline = time.monotonic() + 10
        att, held = {}, {}
        while time.monotonic() < deadline:
            att = hgetall(redis, "herald:wa:hook")
            held = hgetall(redis, "herald:wh:hook")
            if len(att) == 5 and min(int(v.split(":")[0]) for v in att.values()) >= 2 and held:
                break
            time.sleep(0.02)
        before = min(int(v.split(":")[0]) for v in att.values())
        assert 2 <= before < 8, att
        assert list(held) == ["orders:k"] and int(held["orders:k"].split(":")[1]) >= 2, held
        node.kill(victim)
        t_kill = time.monotonic()
        assert survivor.wait_log(TAKES, timeout=TAKEOVER_S + 3), survivor.log[-2000:]
        took = time.monotonic() - t_kill
        assert took < TAKEOVER_S + 1.5, took
        dead = dead_letters(survivor, timeout=15, n=5)
        assert [d["event"]["data"]["n"] for d in dead] == list(range(5)), dead
        for d in dead:
            assert d["attempts"] == 8 and "gave up after 8 attempts: HTTP 500" in d["error"], d
        # The survivor made only the attempts left: the counts went on from Redis.
        st = status_until(survivor, lambda s: s["hook"]["dead_letters"] == 5 and s["hook"]["failing_channels"] == 0)
        st = st["hook"]
        assert 1 <= st["failures"] <= 8 - before, (st, before)
        assert st["queue_depth"] == 0 and st["failing_channels"] == 0, st
        assert rcv.events() == []
        # A third node, which does not deliver, lists, retries and deletes them.
        c = node(redis, conf)
        assert [d["id"] for d in dead_letters(c)] == [d["id"] for d in dead]
        assert requests.post(c.url("/api/webhooks/hook/dead/retry?id=999999"), timeout=5).status_code == 404
        assert requests.get(c.url("/api/webhooks/hook/dead?limit=0"), timeout=5).status_code == 400
        r = requests.delete(c.url("/api/webhooks/hook/dead?id=%d" % dead[4]["id"]), timeout=5)
        assert r.status_code == 200 and r.json()["deleted"] == 1, r.text
        state["ok"] = True
        r = requests.post(c.url("/api/webhooks/hook/dead/retry"), timeout=5)
        assert r.status_code == 200 and r.json()["retried"] == 4, r.text
        survivor.publish_rest("orders:k", {"n": 5})
        evs = rcv.wait_events(lambda e: len(pubs(e, "orders:k")) >= 5, timeout=10)
        assert in_order_once(evs, "orders:k") == [0, 1, 2, 3, 5]
        assert [e["id"] for e in evs[:4]] == [str(d["id"]) for d in dead[:4]], "revived under their own ids"
        assert dead_letters(c, timeout=0) == []
        c.check_clean_exit()
    finally:
        if survivor:
            survivor.check_clean_exit()


def test_clean_stop_hands_the_lease_over_at_once(node, redis, receiver, tmp_path):
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url)
    # A long lease: only giving it back makes the takeover quick.
    a = node(redis, conf, "--engine-webhook-lease", "30s")
    b = node(redis, conf, "--engine-webhook-lease", "30s")
    first = deliverers([a, b])
    assert len(first) == 1
    other = b if first[0] is a else a
    first[0].stop()
    t0 = time.monotonic()
    try:
        assert other.wait_log(TAKES, timeout=3), other.log[-2000:]
        assert time.monotonic() - t0 < 3
        for i in range(3):
            other.publish_rest("orders:s", {"n": i})
        evs = rcv.wait_events(lambda e: len(pubs(e, "orders:s")) == 3, timeout=5)
        assert pubs(evs, "orders:s") == [0, 1, 2]
    finally:
        other.check_clean_exit()


def test_redis_restart_pauses_then_resumes_delivery(node, redis, receiver, tmp_path):
    state = {"ok": False}
    rcv = receiver(lambda n: 200 if state["ok"] else 503)
    conf = write_conf(tmp_path, rcv.url, "max_attempts = 1000\n")
    a = node(redis, conf)
    b = node(redis, conf)
    try:
        for i in range(10):
            (a, b)[i % 2].publish_rest("orders:r", {"n": i})
        status_until(a, lambda s: s["hook"]["queue_depth"] == 10 and s["hook"]["failing_channels"] == 1)
        redis.kill()
        r = requests.post(a.url("/api/publish"), json={"channel": "orders:r", "data": {"n": -1}}, timeout=5)
        assert r.status_code == 503 and r.json()["error"]["code"] == 133, r.text
        time.sleep(0.6)                               # a post in flight at the kill ends (timeout 500ms)
        state["ok"] = True
        time.sleep(1.5)                               # longer than the lease: it is gone with Redis
        assert rcv.events() == [], "delivered without Redis"
        assert any(re.search("redis unreachable", x.log) for x in (a, b))
        redis.start()
        wait_ready(a)
        wait_ready(b)
        b.publish_rest("orders:r", {"n": 10})
        evs = rcv.wait_events(lambda e: len(set(pubs(e, "orders:r"))) == 11, timeout=15)
        assert in_order_once(evs, "orders:r") == list(range(11))
        assert all(x["data"]["n"] != -1 for x in evs)
        st = status_until(b, lambda s: s["hook"]["queue_depth"] == 0)["hook"]
        assert st["queue_depth"] == 0 and st["dead_letters"] == 0, st
    finally:
        a.check_clean_exit()
        b.check_clean_exit()


def test_takeover_under_load_keeps_channel_order(node, redis, receiver, tmp_path):
    """Publications go on from two nodes while the deliverer is killed twice: every
    acknowledged publication arrives, per channel in order (repeats only of ids
    already delivered, as at least once allows)."""
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url, "batch_size = 3\n")
    ns = [node(redis, conf) for _ in range(3)]
    acked = {"orders:p": [], "orders:q": []}
    alive = list(ns)
    try:
        n = 0
        for round_ in range(2):
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and n < 400:
                for ch in acked:
                    r = requests.post(alive[n % len(alive)].url("/api/publish"),
                                      json={"channel": ch, "data": {"n": n}}, timeout=5)
                    assert r.status_code == 200, r.text
                    acked[ch].append(n)
                n += 1
            d = [x for x in deliverers(alive) if x in alive]
            victim = d[-1] if d else alive[0]
            node.kill(victim)
            alive.remove(victim)
        for ch in acked:
            r = requests.post(alive[0].url("/api/publish"), json={"channel": ch, "data": {"n": n}}, timeout=5)
            assert r.status_code == 200
            acked[ch].append(n)
        evs = rcv.wait_events(lambda e: all(set(pubs(e, ch)) >= set(acked[ch]) for ch in acked), timeout=30)
        for ch in acked:
            assert in_order_once(evs, ch) == acked[ch], ch
    finally:
        for x in alive:
            x.check_clean_exit()


def test_seat_events_queued_by_the_seat_script(node, redis, receiver, tmp_path):
    """seat.booked (a confirm on one node) and seat.expired (a hold made on another
    node, freed by whichever node sweeps) are queued by the seat script itself:
    each once, with the fields the LMDB engine gives them (test_sidefx.py)."""
    rcv = receiver()
    conf = tmp_path / "seats.conf"
    conf.write_text(
        "[namespace seats]\nstate = on\n\n"
        "[webhook hook]\nurl = %s\nsecret = %s\nevents = seat.booked, seat.expired\n"
        "timeout = 500ms\nretry_base = 50ms\nretry_max = 200ms\n\n"
        "[webhook pubs]\nurl = %s\nsecret = %s\nevents = publication\nnamespaces = none\n"
        % (rcv.url, SECRET, rcv.url, SECRET))
    a = node(redis, conf)
    b = node(redis, conf)
    r = requests.put(a.url("/api/events/fest/seats"), json={"seats": [{"id": "S1", "section": "A"},
                                                                      {"id": "S2", "section": "A"}]}, timeout=5)
    assert r.status_code == 200, r.text
    for n_, (who, action, body) in enumerate([
            (a, "hold", {"user": "dana", "seats": ["S1"], "ttl": 60}),
            (b, "confirm", {"user": "dana", "seats": ["S1"]}),
            (b, "confirm", {"user": "dana", "seats": ["S1", "S2"]}),     # refused: no event
            (b, "hold", {"user": "eve", "seats": ["S2"], "ttl": 1})]):
        r = requests.post(who.url("/api/events/fest/%s" % action), json=body, timeout=5)
        assert r.status_code == (409 if n_ == 2 else 200), r.text
    evs = rcv.wait_events(lambda e: any(x["type"] == "seat.expired" for x in e), timeout=20)
    time.sleep(0.5)                                   # nothing more comes
    evs = rcv.events()
    assert [e["type"] for e in evs] == ["seat.booked", "seat.expired"], evs
    booked, expired = evs
    assert booked["event"] == "fest" and booked["channel"] == "seats:fest" and booked["seats"] == ["S1"], booked
    assert booked["holder"] == "dana" and booked["booked_at"] > 0, booked
    assert expired["event"] == "fest" and expired["seat"] == "S2" and expired["holder"] == "eve", expired
    assert expired["section"] == "A" and expired["offer"] is False and expired["expires"] > 0, expired
    assert int(booked["id"]) < int(expired["id"])
    for headers, body, _ in rcv.requests:
        verify(headers, body)
    assert {h["Herald-Webhook"] for h, _, _ in rcv.requests} == {"hook"}


def test_state_and_seat_deltas_go_out_like_lmdb(engine, receiver, tmp_path):
    """A state channel's deltas and a seat map's are publications to the webhooks, on
    both engines the same: queued by the delta's own script under redis; a refused
    request queues nothing."""
    rcv = receiver()
    conf = tmp_path / "state.conf"
    conf.write_text(
        "[namespace scores]\nstate = on\n\n[namespace seats]\nstate = on\n\n"
        "[webhook hook]\nurl = %s\nsecret = %s\nevents = publication\nnamespaces = scores, seats\n"
        "timeout = 500ms\nretry_base = 50ms\nretry_max = 200ms\n" % (rcv.url, SECRET))
    b = start_on(engine, tmp_path, conf)
    try:
        def ops(*op_list, expect=200):
            r = requests.post(b.url("/api/channels/scores:g/state"), json={"ops": list(op_list)}, timeout=5)
            assert r.status_code == expect, r.text
        ops({"op": "set", "key": "home", "value": 0}, {"op": "set", "key": "away", "value": 0})
        ops({"op": "incr", "key": "home", "by": 2})
        ops({"op": "cas", "key": "away", "value": 9, "version": 7}, expect=409)       # refused: no event
        r = requests.put(b.url("/api/events/fest/seats"), json={"seats": [{"id": "S1", "section": "A"}]}, timeout=5)
        assert r.status_code == 200, r.text
        r = requests.post(b.url("/api/events/fest/hold"), json={"user": "dana", "seats": ["S1"], "ttl": 60},
                          timeout=5)
        assert r.status_code == 200, r.text
        evs = rcv.wait_events(lambda e: len(e) >= 4, timeout=10)
        time.sleep(0.3)
        evs = rcv.events()
        assert [(e["type"], e["channel"], e["offset"]) for e in evs] == [
            ("publication", "scores:g", 1), ("publication", "scores:g", 2),
            ("publication", "seats:fest", 1), ("publication", "seats:fest", 2)], evs
        assert evs[1]["data"]["changes"] == [{"key": "home", "value": 2, "version": 2}], evs[1]
        held = {c["key"]: c["value"] for c in evs[3]["data"]["changes"]}
        assert held["seat:S1"]["status"] == "held" and held["seat:S1"]["holder"] == "dana", held
        assert all(e["ts"] > 0 for e in evs)
    finally:
        b.check_clean_exit()


def test_presence_events_once_across_nodes_and_for_a_dead_node(node, redis, receiver, tmp_path):
    """Members on two nodes, with both nodes subscribed to the channel: each join
    and each leave is one event (queued by the presence script, not by every node
    that hears of it); the member of a node killed with SIGKILL leaves once,
    queued by the node that reaps the dead node."""
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url)
    a = node(redis, conf, "--engine-presence-heartbeat", "200ms")
    b = node(redis, conf, "--engine-presence-heartbeat", "200ms")

    async def go():
        ca = await connect(a)
        cb = await connect(b)
        for c in (ca, cb):
            assert (await c.request({"op": "subscribe", "channel": "chat:lobby"}))["op"] == "subscribed"
        return ca, cb
    ca, cb = run(go())
    evs = rcv.wait_events(lambda e: len([x for x in e if x["type"] == "presence.member_added"]) >= 2, timeout=10)
    added = [e for e in evs if e["type"] == "presence.member_added"]
    assert len(added) == 2 and {e["channel"] for e in added} == {"chat:lobby"}, added
    # The member on b leaves: one removal. The member on a goes with a, killed.
    run(cb.close())
    node.kill(a)
    evs = rcv.wait_events(lambda e: len([x for x in e if x["type"] == "presence.member_removed"]) >= 2, timeout=15)
    removed = [e for e in evs if e["type"] == "presence.member_removed"]
    assert sorted(e["user"] for e in removed) == sorted(e["user"] for e in added), (added, removed)
    time.sleep(1.0)
    assert len([x for x in rcv.events() if x["type"].startswith("presence.")]) == 4, rcv.events()



def occ(evs, channel=None):
    """The channel.occupied and channel.vacated events (of @channel), in order."""
    return [e for e in evs if e["type"] in ("channel.occupied", "channel.vacated") and
            (channel is None or e["channel"] == channel)]


def occ_keys(redis_):
    """The occupancy keys in Redis (P on:C, P oc:N, P ow:C)."""
    raw = redis_cmd(redis_.port, "KEYS", "herald:o[ncw]:*")
    return sorted(p.decode() for p in raw.split(b"\r\n")[1:] if p and not p.startswith(b"$"))


def scard(redis_, key):
    return int(redis_cmd(redis_.port, "SCARD", key).strip()[1:])


async def sub(b, channel):
    c = await connect(b)
    assert (await c.request({"op": "subscribe", "channel": channel}))["op"] == "subscribed"
    return c


def blocking(fn, *args):
    """@fn(*args) off the event loop, so that the clients of run()'s coroutine stay
    served (run() aborts every client when its coroutine ends: a test's clients
    live in one coroutine)."""
    return asyncio.to_thread(fn, *args)


def test_occupancy_once_for_the_whole_cluster(node, redis, receiver, tmp_path):
    """A channel with subscribers on two nodes is occupied once (when the first
    arrives anywhere) and vacated once (when the last anywhere leaves), with the
    documented fields; Redis keeps no occupancy key once it is vacated."""
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url)
    a = node(redis, conf)
    b = node(redis, conf)

    async def go():
        ca = await sub(a, "chat:occ")
        evs = await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 1, 10)
        assert [e["type"] for e in occ(evs)] == ["channel.occupied"], occ(evs)
        first = occ(evs)[0]
        assert first["channel"] == "chat:occ" and int(first["id"]) > 0 and first["ts"] > 0, first
        assert abs(first["ts"] / 1000 - time.time()) < 60, first
        assert set(first) == {"id", "type", "channel", "ts"}, first
        keys = occ_keys(redis)
        assert [k for k in keys if not k.startswith("herald:oc:")] == ["herald:on:chat:occ", "herald:ow:chat:occ"]
        assert len(keys) == 3, keys
        # A second node's subscribers: no event; they leave: none either.
        cb1 = await sub(b, "chat:occ")
        cb2 = await sub(b, "chat:occ")
        assert scard(redis, "herald:on:chat:occ") == 2
        await cb1.close()
        await cb2.close()
        await asyncio.sleep(1.0)                     # several idle looks of the deliverer
        assert [e["type"] for e in occ(rcv.events())] == ["channel.occupied"], occ(rcv.events())
        assert scard(redis, "herald:on:chat:occ") == 1
        # The last subscriber anywhere leaves: one vacated.
        await ca.close()
        await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 2, 10)
        await asyncio.sleep(0.5)
        evs = rcv.events()
        assert [e["type"] for e in occ(evs)] == ["channel.occupied", "channel.vacated"], occ(evs)
        last = occ(evs)[1]
        assert last["channel"] == "chat:occ" and int(last["id"]) > int(first["id"]), last
        assert last["ts"] >= first["ts"], last
        assert occ_keys(redis) == [], occ_keys(redis)
        # Occupied again later, from the other node: a new pair.
        c = await sub(b, "chat:occ")
        await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 3, 10)
        await c.close()
        evs = await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 4, 10)
        assert [e["type"] for e in occ(evs)] == ["channel.occupied", "channel.vacated"] * 2, occ(evs)
    run(go())


def test_occupancy_writes_nothing_without_occupancy_webhooks(node, redis, receiver, tmp_path):
    """Users without a webhook that wants channel.occupied or channel.vacated pay
    nothing: no occupancy key is written."""
    rcv = receiver()
    conf = tmp_path / "pub.conf"
    conf.write_text("[namespace orders]\nhistory = on\n\n[webhook hook]\nurl = %s\nsecret = %s\n"
                    "events = publication, presence.member_added\n" % (rcv.url, SECRET))
    a = node(redis, conf)

    async def go():
        c = await sub(a, "chat:free")
        await asyncio.sleep(0.3)
        assert occ_keys(redis) == [], occ_keys(redis)
        await c.close()
    run(go())
    a.publish_rest("orders:x", {"n": 1})
    evs = rcv.wait_events(lambda e: pubs(e, "orders:x") == [1], timeout=10)
    assert pubs(evs, "orders:x") == [1] and occ(evs) == [], evs


def test_occupancy_of_a_dead_node_vacated_once_by_the_reaper(node, redis, receiver, tmp_path):
    """A node killed with SIGKILL: the channel only it held is vacated once, by the
    node that reaps it after its lease; a channel another node still holds is not;
    that one is vacated when its last subscriber leaves."""
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url)
    a = node(redis, conf, "--engine-presence-heartbeat", "200ms")
    b = node(redis, conf, "--engine-presence-heartbeat", "200ms")

    async def go():
        await sub(a, "chat:only-a")
        await sub(a, "chat:both")
        cb = await sub(b, "chat:both")
        evs = await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 2, 10)
        assert sorted((e["type"], e["channel"]) for e in occ(evs)) == [
            ("channel.occupied", "chat:both"), ("channel.occupied", "chat:only-a")], occ(evs)
        t0 = time.monotonic()
        await blocking(node.kill, a)
        evs = await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 3, 15)
        took = time.monotonic() - t0
        assert [(e["type"], e["channel"]) for e in occ(evs)][2:] == [("channel.vacated", "chat:only-a")], occ(evs)
        # The lease is two heartbeats (400 ms); the delivery lease's takeover (1 s) may add to it.
        assert took < 8, took
        await asyncio.sleep(1.0)
        assert len(occ(rcv.events())) == 3, occ(rcv.events())
        assert scard(redis, "herald:on:chat:both") == 1
        await cb.close()
        await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 4, 10)
        await asyncio.sleep(0.5)
        evs = rcv.events()
        assert [(e["type"], e["channel"]) for e in occ(evs)][3:] == [("channel.vacated", "chat:both")], occ(evs)
        assert occ_keys(redis) == [], occ_keys(redis)
    run(go())


def test_occupancy_across_a_redis_restart(node, redis, receiver, tmp_path):
    """Redis killed and restarted (its data kept, AOF) within the nodes' leases: no
    crash; a channel that stayed occupied gets no second channel.occupied (each node
    writes it again under its new id before its old id goes); a channel whose last
    subscriber left while Redis was down is vacated once the node is back."""
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url)
    # The default heartbeat (2 s): a lease of 4 s outlasts the restart.
    a = node(redis, conf)
    b = node(redis, conf)

    async def go():
        sa = await sub(a, "chat:stay")
        sb = await sub(b, "chat:stay")
        gone = await sub(a, "chat:gone")
        evs = await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 2, 10)
        assert sorted((e["type"], e["channel"]) for e in occ(evs)) == [
            ("channel.occupied", "chat:gone"), ("channel.occupied", "chat:stay")], occ(evs)
        await blocking(redis.kill)
        await gone.close()                           # not written: Redis is down
        await asyncio.sleep(0.3)
        await blocking(redis.start)
        await blocking(wait_ready, a)
        await blocking(wait_ready, b)
        await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 3, 15)
        await asyncio.sleep(1.5)
        evs = rcv.events()
        assert [(e["type"], e["channel"]) for e in occ(evs)][2:] == [("channel.vacated", "chat:gone")], occ(evs)
        assert a.proc.poll() is None and b.proc.poll() is None
        keys = occ_keys(redis)
        assert "herald:on:chat:stay" in keys and "herald:on:chat:gone" not in keys, keys
        assert scard(redis, "herald:on:chat:stay") == 2
        # Still once: the last subscriber anywhere leaves after the restart.
        await sa.close()
        await sb.close()
        evs = await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 4, 10)
        assert [(e["type"], e["channel"]) for e in occ(evs)][3:] == [("channel.vacated", "chat:stay")], occ(evs)
    run(go(), timeout=60)


def test_occupancy_of_a_stalled_node_taken_for_dead(node, redis, receiver, tmp_path):
    """A node frozen (SIGSTOP) past its lease while it holds a channel's only
    subscriber: the reaper vacates the channel; thawed, the node finds it was taken
    for dead and writes its channels again under a new id: occupied once more.
    Its subscriber leaving then vacates it once."""
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url)
    a = node(redis, conf, "--engine-presence-heartbeat", "200ms")
    b = node(redis, conf, "--engine-presence-heartbeat", "200ms")

    def seen(evs):
        """Each event id once (a post the frozen deliverer made may come again)."""
        ids, out = set(), []
        for e in occ(evs, "chat:frozen"):
            if e["id"] not in ids:
                ids.add(e["id"])
                out.append(e["type"])
        return out

    async def go():
        c = await sub(a, "chat:frozen")
        await blocking(rcv.wait_events, lambda e: len(seen(e)) >= 1, 10)
        a.send_signal(signal.SIGSTOP)
        try:
            evs = await blocking(rcv.wait_events, lambda e: len(seen(e)) >= 2, 15)
        finally:
            a.send_signal(signal.SIGCONT)
        assert seen(evs) == ["channel.occupied", "channel.vacated"], occ(evs)
        evs = await blocking(rcv.wait_events, lambda e: len(seen(e)) >= 3, 15)
        assert seen(evs) == ["channel.occupied", "channel.vacated", "channel.occupied"], occ(evs)
        assert scard(redis, "herald:on:chat:frozen") == 1
        await c.close()
        evs = await blocking(rcv.wait_events, lambda e: len(seen(e)) >= 4, 10)
        await asyncio.sleep(0.5)
        assert seen(rcv.events()) == ["channel.occupied", "channel.vacated"] * 2, occ(rcv.events())
        assert occ_keys(redis) == [], occ_keys(redis)
    run(go(), timeout=60)


def test_occupancy_written_again_once_after_redis_lost_it(node, redis, receiver, tmp_path):
    """Redis loses its data (FLUSHALL) under a channel occupied on two nodes: each
    node finds its lease gone at its next heartbeat and writes the channel again;
    the first to write it makes one channel.occupied (Redis forgot the first), the
    other none, and no channel.vacated is made up (docs/cluster.md#webhooks)."""
    rcv = receiver()
    conf = write_conf(tmp_path, rcv.url)
    a = node(redis, conf, "--engine-presence-heartbeat", "200ms")
    b = node(redis, conf, "--engine-presence-heartbeat", "200ms")

    async def go():
        await sub(a, "chat:f")
        await sub(b, "chat:f")
        await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 1, 10)
        assert redis_cmd(redis.port, "FLUSHALL").startswith(b"+OK")
        evs = await blocking(rcv.wait_events, lambda e: len(occ(e)) >= 2, 10)
        await asyncio.sleep(1.0)
        evs = rcv.events()
        assert [e["type"] for e in occ(evs)] == ["channel.occupied"] * 2, occ(evs)
        assert scard(redis, "herald:on:chat:f") == 2
        assert all(x.wait_log("presence lease in redis had ended", timeout=3) for x in (a, b))
    run(go())
