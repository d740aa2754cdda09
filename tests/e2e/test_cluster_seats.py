"""Seat maps across Herald nodes on the Redis engine (docs/cluster.md#seat-maps):
the same answers, deltas and errors as the LMDB engine (test_seats.py), a seat race
spread over nodes that never double-holds, all-or-none holds, confirm with its
ticket_issued notice heard on another node, release, hold expiry freed exactly
once with three nodes sweeping, and still freed after the node that made the hold
was killed with SIGKILL, a wave of expiries larger than one sweep, the
waitlist's offers across nodes, release on disconnect waiting for the user's
connections on every node (and not for a node that died), subscribers on every
node seeing the same deltas at the same offsets (JSON, MessagePack, a section
filter), recovery with `since` on another node, Redis down answering 133 / 503,
the organiser's feed ([adapter seats] feed: each ticket once on every node at
the feed's next offset, nothing from a refused confirm, `since` recovery, the
same records as LMDB), and test_seats.py's own walks run on the redis engine.
Each test starts its own redis-server."""
import asyncio
import signal
import threading
import time

import pytest
import requests

import test_seats

from conftest import Broker, connect, run
from test_cluster import Redis, engine_args, pytestmark, redis, redis_cmd, wait_ready  # noqa: F401 (fixtures)
from test_seats import (SEATS, anon, call, check_offer, counts, define, idle, now_ms, ns, offer_pub, personal,
                        read_state, refused, reply, seat_map, seats_op, until, user, versioned, watch)


def node(make_broker, redis_, *extra):
    b = make_broker(*engine_args(redis_), *SEATS, *extra)
    wait_ready(b)
    return b


def nodes(make_broker, redis_, n, *extra):
    return [node(make_broker, redis_, *extra) for _ in range(n)]


def seat_changes(view, sid, status):
    """The deltas of @view that set seat @sid to @status."""
    return [m for m in view.deltas if any(ch["key"] == "seat:" + sid and ch.get("value", {}).get("status") == status
                                          for ch in m["data"]["changes"])]


@pytest.mark.parametrize("engine", ["lmdb", "redis"])
def test_answers_like_lmdb(engine, make_broker, tmp_path):
    """The walk of test_seats.py's hold/confirm/release and bad-input checks, on
    one node with LMDB and spread over two nodes with Redis: same answers."""
    r = Redis(tmp_path).start() if engine == "redis" else None
    try:
        a = node(make_broker, r) if r else make_broker(*SEATS)
        b = node(make_broker, r) if r else a
        ev = "same"
        d = define(a, ev, [("A%d" % i, "A") for i in range(1, 5)] + [("B1", "B", "vip")])
        assert d["seats"] == 5 and d["sections"] == {"A": counts(4, 4), "B": counts(1, 1)}, d
        assert d["offset"] == 1 and d["action"] == "define", d
        items, offset = read_state(b, ev)
        assert offset == 1 and items["seat:A1"] == {"key": "seat:A1", "value": {"section": "A", "price_class": "std",
                                                                                "status": "free"}, "version": 1}
        assert items["section:B"]["value"] == counts(1, 1)

        t0 = now_ms()
        h = call(b, ev, "hold", {"user": "alice", "seats": ["A1", "A2"], "ttl": 60})
        assert h["seats"] == ["A1", "A2"] and t0 + 59000 <= h["expires"] <= now_ms() + 61000, h
        assert h["offset"] == 2 and h["action"] == "hold"
        assert {c["key"] for c in h["changes"]} == {"seat:A1", "seat:A2", "section:A"}, h
        assert {c["key"]: c["version"] for c in h["changes"]} == {"seat:A1": 2, "seat:A2": 2, "section:A": 2}
        seats, secs = seat_map(a, ev)
        assert seats["A1"] == {"section": "A", "price_class": "std", "status": "held", "holder": "alice",
                               "expires": h["expires"]}
        assert secs["A"] == counts(4, 2, 2)
        # All or none; the errors name exactly the seats concerned.
        before = read_state(a, ev)
        e = refused(a, ev, "hold", {"user": "bob", "seats": ["A3", "A2"], "ttl": 60}, 409, 119)
        assert e["seats"] == ["A2"] and e["reason"] == "seats held by another user or booked; none was held", e
        e = refused(b, ev, "hold", {"user": "bob", "seats": ["A3", "ZZ", "Q"], "ttl": 60}, 422, 120)
        assert e["seats"] == ["ZZ", "Q"] and e["reason"] == "seats not in the event's seat map", e
        e = refused(a, ev, "confirm", {"user": "bob", "seats": ["A1"]}, 409, 121)
        assert e["seats"] == ["A1"], e
        e = refused(b, ev, "confirm", {"user": "alice", "seats": ["A1", "A4"]}, 409, 121)
        assert e["seats"] == ["A4"], e
        e = refused(a, ev, "release", {"user": "bob", "seats": ["A1"]}, 409, 121)
        assert e["reason"] == "seats not held by this user; none was released", e
        refused(b, "no-map", "hold", {"user": "alice", "seats": ["A1"], "ttl": 5}, 422, 120)
        assert read_state(b, ev) == before, "a refused request changes nothing"
        # Re-hold extends; confirm books; a booked seat cannot be held.
        r2 = call(a, ev, "hold", {"user": "alice", "seats": ["A1"], "ttl": 120})
        assert r2["expires"] >= h["expires"] + 55000
        c = call(b, ev, "confirm", {"user": "alice", "seats": ["A1", "A2"]})
        assert c["seats"] == ["A1", "A2"] and c["action"] == "confirm", c
        seats, secs = seat_map(a, ev)
        assert seats["A1"] == {"section": "A", "price_class": "std", "status": "booked", "holder": "alice"}
        assert secs["A"] == counts(4, 2, 0, 2)
        e = refused(a, ev, "hold", {"user": "bob", "seats": ["A1"], "ttl": 60}, 409, 119)
        assert e["seats"] == ["A1"], e
        # Release over REST cancels a booking; a free seat is not held.
        rel = call(b, ev, "release", {"user": "alice", "seats": ["A2"]})
        assert rel["seats"] == ["A2"]
        refused(a, ev, "release", {"user": "alice", "seats": ["A2"]}, 409, 121)
        seats, secs = seat_map(b, ev)
        assert seats["A2"] == {"section": "A", "price_class": "std", "status": "free"} and secs["A"] == counts(4, 3, 0, 1)
        # Redefining around a booking: a held or booked seat cannot be left out.
        e = define(a, ev, [("A2", "A"), ("A3", "A")], expect=409)
        assert e["error"]["code"] == 119 and e["error"]["seats"] == ["A1"], e
        d = define(b, ev, [("A1", "A"), ("A2", "C"), ("A3", "A")])
        assert d["seats"] == 3 and d["sections"] == {"A": counts(2, 1, 0, 1), "C": counts(1, 1)}, d
        seats, secs = seat_map(a, ev)
        assert set(seats) == {"A1", "A2", "A3"} and "B" not in secs
        items, _ = read_state(a, ev)
        assert items["seat:A2"]["version"] > 4, "a seat created again takes a version above its old ones"
        r3 = requests.put(b.url("/api/events/empty/seats"), json={"seats": []}, timeout=5)
        assert r3.status_code == 200 and r3.json()["seats"] == 0 and r3.json()["sections"] == {}, r3.text

        async def ws():
            u = await user(a, "carol")
            m = await reply(u, seats_op(ev, "hold", seats=["A3"], ttl=30))
            assert m["op"] == "seats" and m["action"] == "hold" and m["seats"] == ["A3"], m
            m = await reply(u, seats_op(ev, "hold", seats=["A1"], ttl=30))
            assert m["op"] == "error" and m["code"] == 119 and m["seats"] == ["A1"], m
            m = await reply(u, seats_op(ev, "release", seats=["A3"]))
            assert m["op"] == "seats" and m["seats"] == ["A3"], m
            await u.close()
        run(ws())
    finally:
        if r:
            r.kill()


# test_seats.py's own walks, run on the redis engine (one node): the same checks as
# with LMDB. Left out: the walks that start a second broker and expect it to have a
# store of its own (with Redis both share one).
@pytest.mark.parametrize("walk", ["test_define_read_back_and_redefine", "test_hold_confirm_release_rest",
                                  "test_bad_inputs", "test_holds_expire", "test_expiry_survives_restart",
                                  "test_two_hundred_clients_race_for_seats", "test_waitlist_and_offers",
                                  "test_waitlist_max", "test_msgpack"])
def test_seat_walks_of_test_seats_on_redis(walk, make_broker, redis, tmp_path, monkeypatch):
    monkeypatch.setattr(test_seats, "SEATS", SEATS + tuple(engine_args(redis)))

    def ready_broker(*args, **kw):
        b = make_broker(*args, **kw)
        wait_ready(b)
        return b
    fn = getattr(test_seats, walk)
    if "tmp_path" in fn.__code__.co_varnames[:fn.__code__.co_argcount]:
        fn(ready_broker, tmp_path)
    else:
        fn(ready_broker)


def test_race_over_nodes_never_double_holds(make_broker, redis):
    ns_ = nodes(make_broker, redis, 3)
    ev = "race"
    ids = ["R%02d" % i for i in range(30)]
    define(ns_[0], ev, [(s, "A" if i < 15 else "B") for i, s in enumerate(ids)])
    wins, errors = {}, []
    lock = threading.Lock()

    def client(k):
        s = requests.Session()
        b = ns_[k % 3]
        for j in range(6):
            want = [ids[(k * 7 + j * 3 + x) % 30] for x in range(3)]
            r = s.post(b.url("/api/events/%s/hold" % ev), json={"user": "u%d" % k, "seats": want, "ttl": 60},
                       timeout=10)
            if r.status_code == 200:
                with lock:
                    for sid in want:
                        wins.setdefault(sid, []).append("u%d" % k)
            elif r.status_code != 409 or r.json()["error"]["code"] != 119:
                errors.append(r.text)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    seats, secs = seat_map(ns_[1], ev)
    for sid, who in wins.items():
        assert len(set(who)) == 1, "seat %s won by several users: %r" % (sid, who)
        assert seats[sid]["status"] == "held" and seats[sid]["holder"] == who[0], (sid, seats[sid], who)
    held = [s for s, v in seats.items() if v["status"] == "held"]
    assert sorted(held) == sorted(wins), "exactly the seats won are held"
    assert secs["A"]["held"] + secs["B"]["held"] == len(held) and len(held) > 0


def test_confirm_ticket_on_another_node_and_same_deltas_everywhere(make_broker, redis):
    a, b, c = nodes(make_broker, redis, 3)
    ev = "tix"
    define(a, ev, [("T1", "A"), ("T2", "A"), ("T3", "B")])

    async def go():
        holder = await user(c, "dora")                    # dora's own connection, on node C
        m = await reply(holder, {"op": "subscribe", "channel": "user:dora"})
        assert m["op"] == "subscribed", m
        viewers = [await anon(n) for n in (a, b, c)]
        views = [await watch(v, ev) for v in viewers]
        assert len({v.offset for v in views}) == 1
        h = call(a, ev, "hold", {"user": "dora", "seats": ["T1", "T3"], "ttl": 60})
        cf = call(b, ev, "confirm", {"user": "dora", "seats": ["T1", "T3"]})
        rl = call(c, ev, "release", {"user": "dora", "seats": ["T3"]})
        for v, view in zip(viewers, views):
            await until(v, lambda: view.offset >= rl["offset"], 5, "the deltas")
        offs = [[d["offset"] for d in view.deltas] for view in views]
        assert offs[0] == offs[1] == offs[2] == [h["offset"], cf["offset"], rl["offset"]], offs
        datas = [[d["data"]["changes"] for d in view.deltas] for view in views]
        assert datas[0] == datas[1] == datas[2]
        assert [sorted(ch["key"] for ch in d) for d in datas[0]] == [["seat:T1", "seat:T3", "section:A", "section:B"],
                                                                    ["seat:T1", "seat:T3", "section:A", "section:B"],
                                                                    ["seat:T3", "section:B"]]
        assert datas[0][1] == cf["changes"]
        for view in views:
            assert view.state == versioned(read_state(a, ev)[0])
        t = await holder.expect(op="pub", channel="user:dora")
        assert t["data"]["type"] == "ticket_issued", t
        assert {k: t["data"][k] for k in ("event", "channel", "seats", "holder")} == {
            "event": ev, "channel": "seats:" + ev, "seats": ["T1", "T3"], "holder": "dora"}
        assert abs(t["data"]["booked_at"] - now_ms()) < 5000
        for v in viewers + [holder]:
            await v.close()
    run(go())


def test_expired_hold_freed_once_across_three_nodes(make_broker, redis):
    ns_ = nodes(make_broker, redis, 3)
    ev = "exp"
    define(ns_[0], ev, [("X1", "A"), ("X2", "A"), ("X3", "A")])

    async def go():
        viewers = [await anon(n) for n in ns_]
        views = [await watch(v, ev) for v in viewers]
        notes = await user(ns_[2], "erin")
        assert (await reply(notes, {"op": "subscribe", "channel": "user:erin"}))["op"] == "subscribed"
        h = call(ns_[1], ev, "hold", {"user": "erin", "seats": ["X1", "X2"], "ttl": 1})
        for v, view in zip(viewers, views):
            await until(v, lambda: view.offset > h["offset"] and all((view.seat(s) or {}).get("status") == "free"
                                                                     for s in ("X1", "X2")), 5, "the expiry")
        freed_at = now_ms()
        assert h["expires"] - 50 <= freed_at <= h["expires"] + 2500, (freed_at, h["expires"])
        # Three nodes sweep every quarter second: a second more shows any second freeing.
        for v in viewers:
            await idle(v, 0.4)
        for view in views:
            for s in ("X1", "X2"):
                assert len(seat_changes(view, s, "free")) == 1, "freed exactly once: %r" % view.deltas
        assert [d["offset"] for d in views[0].deltas] == [d["offset"] for d in views[1].deltas] == \
               [d["offset"] for d in views[2].deltas]
        seats, secs = seat_map(ns_[0], ev)
        assert secs["A"] == counts(3, 3)
        await until(notes, lambda: len([m for m in notes.events if m.get("channel") == "user:erin"]) >= 2, 3,
                    "the seat_expired notices")
        got = sorted(m["data"]["seat"] for m in notes.events if m.get("channel") == "user:erin")
        assert got == ["X1", "X2"]
        assert all(m["data"]["type"] == "seat_expired" and m["data"]["expires"] == h["expires"]
                   for m in notes.events if m.get("channel") == "user:erin")
        for v in viewers + [notes]:
            await v.close()
    run(go())


def test_hold_of_a_killed_node_still_expires(make_broker, redis, tmp_path):
    # The victim starts first and sweeps first, so it takes the sweep lease.
    victim = Broker(tmp_path, [*engine_args(redis), *SEATS], name="victim").start()
    try:
        wait_ready(victim)
        b = node(make_broker, redis)
        ev = "kill"
        define(b, ev, [("K1", "A"), ("K2", "A")])
        h = call(victim, ev, "hold", {"user": "finn", "seats": ["K1"], "ttl": 1})
        assert redis_cmd(redis.port, "GET", "herald:sxlease").startswith(b"$"), "someone holds the sweep lease"
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            seats, _ = seat_map(b, ev)
            if seats["K1"]["status"] == "free":
                break
            time.sleep(0.05)
        assert seats["K1"]["status"] == "free", seats
        assert now_ms() <= h["expires"] + 2500, "freed within the lease (1 s) and a sweep of the expiry"
        items, _ = read_state(b, ev)
        assert items["seat:K1"]["version"] == 3, "held once, freed once"
        _, secs = seat_map(b, ev)
        assert secs["A"] == counts(2, 2)
    finally:
        victim.stop()


def test_recover_with_since_on_another_node(make_broker, redis):
    a, b = nodes(make_broker, redis, 2)
    ev = "rec"
    define(a, ev, [("P1", "A"), ("P2", "A")])

    async def go():
        v = await anon(a)
        view = await watch(v, ev)
        epoch_offset = view.offset
        sub = await reply(v, {"op": "unsubscribe", "channel": "seats:" + ev})
        assert sub["op"] == "unsubscribed"
        await v.close()
        r1 = call(b, ev, "hold", {"user": "gus", "seats": ["P1"], "ttl": 60})
        r2 = call(a, ev, "confirm", {"user": "gus", "seats": ["P1"]})
        w = await anon(b)
        first = await connect(a)
        ep = (await reply(first, {"op": "subscribe", "channel": "seats:" + ev}))["epoch"]
        await first.close()
        m = await reply(w, {"op": "subscribe", "channel": "seats:" + ev, "since": {"offset": epoch_offset,
                                                                                  "epoch": ep}})
        assert m["op"] == "subscribed" and m.get("recovered") is True, m
        assert [p["offset"] for p in m["publications"]] == [r1["offset"], r2["offset"]], m
        assert m["publications"][1]["data"]["changes"] == r2["changes"]
        await w.close()
    run(go())


def test_redis_down_answers_133(make_broker, redis):
    b = node(make_broker, redis)
    define(b, "down", [("D1", "A")])
    redis.kill()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and requests.get(b.url("/api/health/ready"), timeout=2).status_code == 200:
        time.sleep(0.05)
    for action, body in (("hold", {"user": "h", "seats": ["D1"], "ttl": 5}), ("confirm", {"user": "h", "seats": ["D1"]}),
                         ("release", {"user": "h", "seats": ["D1"]}), ("waitlist", {"user": "h", "section": "A"})):
        e = refused(b, "down", action, body, 503, 133)
        assert "redis engine is unavailable" in e["reason"], e
    r = requests.put(b.url("/api/events/down/seats"), json={"seats": [{"id": "D1", "section": "A"}]}, timeout=5)
    assert r.status_code == 503 and r.json()["error"]["code"] == 133, r.text

    async def go():
        u = await user(b, "hank")
        m = await reply(u, seats_op("down", "hold", seats=["D1"], ttl=5))
        assert m["op"] == "error" and m["code"] == 133, m
        await u.close()
    run(go())
    assert b.health().status_code in (200, 503)


def test_waitlist_offers_across_nodes(make_broker, redis):
    a, b, c = nodes(make_broker, redis, 3, *ns("seat_offer_ttl=1s", "waitlist_max=2"))
    ev = "wl"
    define(a, ev, [("A1", "A"), ("A2", "A"), ("B1", "B")])
    call(b, ev, "hold", {"user": "alice", "seats": ["A1", "A2"], "ttl": 300})

    async def go():
        bob = await personal(b, "bob")                    # bob and carol hear their offers on other nodes
        carol = await personal(c, "carol")
        viewer = await anon(a)
        view = await watch(viewer, ev)
        assert call(a, ev, "waitlist", {"user": "bob", "section": "A"})["position"] == 1
        second = call(b, ev, "waitlist", {"user": "carol", "section": "A"})
        assert second["position"] == 2
        again = call(c, ev, "waitlist", {"user": "bob", "section": "A"})
        assert again["position"] == 1 and again["changes"] == [] and again["offset"] == second["offset"], again
        refused(a, ev, "waitlist", {"user": "dave", "section": "A"}, 503, 110)       # waitlist_max = 2
        refused(b, ev, "waitlist", {"user": "dave", "section": "nowhere"}, 422, 120)
        pos = requests.get(c.url("/api/events/%s/waitlist/position" % ev), params={"user": "carol", "section": "A"},
                           timeout=5).json()
        assert pos["position"] == 2 and pos["waiting"] == 2, pos
        assert seat_map(c, ev)[1]["A"] == counts(2, 0, 2, 0, 2)

        # A released seat goes to the head of the queue as an offer, told on bob's node.
        t0 = now_ms()
        call(c, ev, "release", {"user": "alice", "seats": ["A1"]})
        seats, secs = seat_map(a, ev)
        assert seats["A1"]["holder"] == "bob" and seats["A1"]["offer"] is True, seats["A1"]
        assert t0 + 500 <= seats["A1"]["expires"] <= now_ms() + 1500
        assert secs["A"] == counts(2, 0, 2, 0, 1)
        await until(bob, lambda: offer_pub(bob, ev), 3, "bob's seat_offer")
        check_offer(offer_pub(bob, ev)[0], ev, "A1", "A", seats["A1"]["expires"])
        # Bob lets it expire (any node's sweep): it goes to carol, told on her node.
        await until(viewer, lambda: (view.seat("A1") or {}).get("holder") == "carol", 4, "the offer to pass on")
        await until(carol, lambda: offer_pub(carol, ev), 3, "carol's seat_offer")
        await until(bob, lambda: any(m.get("data", {}).get("type") == "seat_expired" for m in bob.events), 3,
                    "bob's seat_expired")
        gone = [m["data"] for m in bob.events if m.get("data", {}).get("type") == "seat_expired"]
        assert len(gone) == 1 and gone[0]["seat"] == "A1" and gone[0]["offer"] is True, gone
        call(a, ev, "confirm", {"user": "carol", "seats": ["A1"]})
        # Leaving; a free seat is offered at once.
        call(b, ev, "waitlist/leave", {"user": "dave", "section": "A"})              # not queued: no error
        r = call(c, ev, "waitlist", {"user": "dave", "section": "B"})
        assert r.get("offered") == "B1" and "position" not in r, r
        seats, secs = seat_map(b, ev)
        assert seats["A1"]["status"] == "booked" and seats["B1"]["holder"] == "dave"
        assert secs["A"] == counts(2, 0, 1, 1, 0) and secs["B"] == counts(1, 0, 1, 0, 0)
        _, offset = read_state(a, ev)
        await until(viewer, lambda: view.offset >= offset)
        assert view.state == versioned(read_state(c, ev)[0])
        for x in (bob, carol, viewer):
            await x.close()
    run(go())


def test_release_on_disconnect_waits_for_every_node(make_broker, redis, tmp_path):
    """docs/cluster.md#seat-maps: a user's WebSocket holds go once their last connection
    on any node has closed (and the grace passed); a connection on a node that died
    stops counting; holds made over REST stay."""
    opts = ns("seat_release_on_disconnect=on", "seat_release_grace=0")
    a, b = nodes(make_broker, redis, 2, *opts)
    victim = Broker(tmp_path, [*engine_args(redis), *SEATS, *opts], name="victim").start()
    try:
        wait_ready(victim)
        ev = "rod"
        define(a, ev, [("D1", "A"), ("D2", "A"), ("D3", "A"), ("E1", "A")])
        call(b, ev, "hold", {"user": "alice", "seats": ["D3"], "ttl": 300})         # the backend's: stays

        async def counted(name, n_nodes):
            """A connection counts once its node's count reached Redis (<prefix>uc:<user>)."""
            deadline = time.monotonic() + 5
            while redis_cmd(redis.port, "HLEN", "herald:uc:" + name) != b":%d\r\n" % n_nodes:
                assert time.monotonic() < deadline, "%s's connections were not counted on %d nodes" % (name, n_nodes)
                await asyncio.sleep(0.02)

        async def go():
            viewer = await anon(b)
            view = await watch(viewer, ev)
            a1 = await user(a, "alice")
            a2 = await user(a, "alice")
            on_b = await user(b, "alice")                  # alice is on node B too
            await counted("alice", 2)
            m = await reply(a1, seats_op(ev, "hold", seats=["D1", "D2"], ttl=300))
            assert m["op"] == "seats", m
            await until(viewer, lambda: view.offset >= m["offset"])
            n = len(view.deltas)
            await a1.close()
            await idle(viewer, 0.6)
            assert len(view.deltas) == n, "alice still has a connection to node A: her holds stay"
            await a2.close()
            await idle(viewer, 1.2)
            assert len(view.deltas) == n, "alice is still connected to node B: her holds stay"
            await on_b.close()
            await until(viewer, lambda: all(view.seat(s)["status"] == "free" for s in ("D1", "D2")), 3,
                        "alice's holds to go with her last connection on any node")
            seats, secs = seat_map(b, ev)
            assert seats["D3"]["status"] == "held" and seats["D3"]["holder"] == "alice"
            assert secs["A"] == counts(4, 3, 1)

            # A connection on a node that dies stops counting once its liveness lapses (3 s).
            e1 = await user(a, "erin")
            on_victim = await user(victim, "erin")
            m = await reply(e1, seats_op(ev, "hold", seats=["E1"], ttl=300))
            assert m["op"] == "seats", m
            await until(viewer, lambda: view.offset >= m["offset"])
            await counted("erin", 2)
            await e1.close()
            await idle(viewer, 0.6)
            assert view.offset == m["offset"] and view.seat("E1").get("holder") == "erin", \
                "erin is still on the victim node: %r" % view.deltas[-1:]
            victim.send_signal(signal.SIGKILL)
            victim.wait(5)
            t0 = time.monotonic()
            await until(viewer, lambda: view.seat("E1")["status"] == "free", 6, "erin's hold to go")
            assert time.monotonic() - t0 <= 5.0
            del on_victim
            await viewer.close()
        run(go())
    finally:
        victim.stop()


def test_msgpack_subscriber_and_section_filter_on_another_node(make_broker, redis):
    a, b = nodes(make_broker, redis, 2)
    ev = "mp"
    define(a, ev, [("M1", "A"), ("M2", "B")])

    async def go():
        mp = await anon(b, "msgpack")
        view = await watch(mp, ev)
        f = await anon(b)
        m = await reply(f, {"op": "subscribe", "channel": "seats:" + ev, "filter": {"section": "B"}})
        assert m["op"] == "subscribed" and set(m["state"]) == {"seat:M2", "section:B"}, m
        h = call(a, ev, "hold", {"user": "ivy", "seats": ["M1"], "ttl": 60})
        h2 = call(a, ev, "hold", {"user": "ivy", "seats": ["M2"], "ttl": 60})
        await until(mp, lambda: view.offset >= h2["offset"])
        assert view.deltas[0]["data"]["changes"] == h["changes"]
        assert view.state == versioned(read_state(b, ev)[0])
        p = await f.expect(op="pub", channel="seats:" + ev)
        assert p["offset"] == h2["offset"] and {ch["key"] for ch in p["data"]["changes"]} == {"seat:M2", "section:B"}
        for x in (mp, f):
            await x.close()
    run(go())


def test_a_wave_of_expiries(make_broker, redis):
    """More holds due at once than one sweep frees (200): every one freed, once, counts right."""
    a, b = nodes(make_broker, redis, 2)
    ev = "wave"
    ids = ["W%03d" % i for i in range(300)]
    define(a, ev, [(s, "W") for s in ids])

    async def go():
        viewer = await anon(b)
        view = await watch(viewer, ev)
        last = None
        for k in range(3):
            last = call(a if k % 2 else b, ev, "hold", {"user": "w%d" % k, "seats": ids[k * 100:(k + 1) * 100],
                                                         "ttl": 1})
        await until(viewer, lambda: view.offset >= last["offset"], 5, "the holds")
        await until(viewer, lambda: all(view.seat(s)["status"] == "free" for s in ids), 6, "every hold to go")
        assert now_ms() <= last["expires"] + 3000, "all 300 freed within 3 s of their expiry"
        await idle(viewer, 0.5)
        assert all(len(seat_changes(view, s, "free")) == 1 for s in ids), "each freed once"
        seats, secs = seat_map(a, ev)
        assert secs["W"] == counts(300, 300)
        assert view.state == versioned(read_state(b, ev)[0])
        await viewer.close()
    run(go())


def test_redis_restart_keeps_maps_and_holds_and_their_expiry(make_broker, redis):
    """With appendfsync always, a Redis restart loses no acknowledged seat request: holds stay,
    the one due meanwhile is freed after, and the scripts are loaded again (NOSCRIPT)."""
    a, b = nodes(make_broker, redis, 2)
    ev = "restart"
    define(a, ev, [("R1", "A"), ("R2", "A"), ("R3", "A")])
    long = call(a, ev, "hold", {"user": "kim", "seats": ["R1"], "ttl": 60})
    short = call(b, ev, "hold", {"user": "lee", "seats": ["R2"], "ttl": 1})
    redis.kill()
    refused(a, ev, "hold", {"user": "max", "seats": ["R3"], "ttl": 5}, 503, 133)
    time.sleep(max(0, short["expires"] - now_ms()) / 1000)
    redis.start()
    wait_ready(a)
    wait_ready(b)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seats, secs = seat_map(b, ev)
        if seats["R2"]["status"] == "free":
            break
        time.sleep(0.05)
    assert seats["R2"] == {"section": "A", "price_class": "std", "status": "free"}, seats
    assert seats["R1"]["holder"] == "kim" and seats["R1"]["expires"] == long["expires"]
    assert secs["A"] == counts(3, 2, 1)
    h = call(a, ev, "hold", {"user": "max", "seats": ["R3"], "ttl": 5})
    assert h["offset"] > short["offset"] + 1, "after the expiry's delta"
    e = refused(b, ev, "hold", {"user": "max", "seats": ["R1"], "ttl": 5}, 409, 119)
    assert e["seats"] == ["R1"]


# -- the organiser's feed ([adapter seats] feed) across nodes -----------------

FEED = ("--seats-feed", "organiser:{event}")


def feed_pubs(c, channel):
    """The publications @c received on @channel, in arrival order."""
    return [m for m in c.events if m.get("op") == "pub" and m.get("channel") == channel]


def history(b, channel, **params):
    r = requests.get(b.url("/api/channels/%s/history" % channel), params=params, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def test_feed_ticket_once_on_every_node_with_offsets(make_broker, redis):
    """A booking on node B reaches the feed's subscribers on nodes A and C once each,
    as the feed channel's next offset (after a plain publication there), with the
    same ticket as the holder's user:{holder} notice; holds, releases and refused
    confirms publish nothing on the feed."""
    a, b, c = nodes(make_broker, redis, 3, *FEED)
    ev = "gig"
    feed = "organiser:" + ev
    define(a, ev, [("G1", "A"), ("G2", "A"), ("G3", "B")])
    r = requests.post(c.url("/api/publish"), json={"channel": feed, "data": {"note": "doors at 8"}}, timeout=5)
    assert r.status_code == 200 and r.json()["offset"] == 1, r.text

    async def go():
        holder = await personal(c, "dora")
        subs = [await anon(n) for n in (a, c)]
        for s in subs:
            m = await reply(s, {"op": "subscribe", "channel": feed})
            assert m["op"] == "subscribed" and m["offset"] == 1, m
        epoch = m["epoch"]
        call(b, ev, "hold", {"user": "dora", "seats": ["G1", "G3"], "ttl": 60})
        call(a, ev, "hold", {"user": "eve", "seats": ["G2"], "ttl": 60})
        refused(c, ev, "confirm", {"user": "dora", "seats": ["G1", "G2"]}, 409, 121)   # G2 is eve's
        refused(a, ev, "confirm", {"user": "dora", "seats": ["G1", "NOPE"]}, 422, 120)
        cf = call(b, ev, "confirm", {"user": "dora", "seats": ["G1", "G3"]})
        assert cf["seats"] == ["G1", "G3"], cf
        for s in subs:
            await until(s, lambda: feed_pubs(s, feed), 5, "the ticket on the feed")
        await until(holder, lambda: feed_pubs(holder, "user:dora"), 5, "the holder's ticket")
        call(a, ev, "release", {"user": "eve", "seats": ["G2"]})
        for s in subs + [holder]:
            await idle(s, 0.5)                         # time for a duplicate or a stray publication to show
        t = feed_pubs(holder, "user:dora")[0]["data"]
        assert t["type"] == "ticket_issued" and t["holder"] == "dora" and t["seats"] == ["G1", "G3"], t
        assert t["event"] == ev and t["channel"] == "seats:" + ev and abs(t["booked_at"] - now_ms()) < 5000, t
        for s in subs:
            got = feed_pubs(s, feed)
            assert len(got) == 1, "the ticket once on each node, nothing else: %r" % got
            assert got[0]["offset"] == 2 and got[0]["data"] == t, got
        h = history(b, feed)
        assert [p["offset"] for p in h["publications"]] == [1, 2] and h["epoch"] == epoch, h
        assert h["publications"][1]["data"] == t
        # The next booking is the offset after it.
        call(c, ev, "hold", {"user": "eve", "seats": ["G2"], "ttl": 60})
        cf2 = call(a, ev, "confirm", {"user": "eve", "seats": ["G2"]})
        assert cf2["seats"] == ["G2"]
        for s in subs:
            await until(s, lambda: len(feed_pubs(s, feed)) >= 2, 5, "the second ticket")
            second = feed_pubs(s, feed)[1]
            assert second["offset"] == 3 and second["data"]["holder"] == "eve" and second["data"]["seats"] == ["G2"]
        for s in subs + [holder]:
            await s.close()
    run(go())


def test_refused_confirm_publishes_nothing_on_the_feed(make_broker, redis):
    a, b = nodes(make_broker, redis, 2, *FEED)
    ev = "nofeed"
    feed = "organiser:" + ev
    define(a, ev, [("N1", "A"), ("N2", "A")])
    call(a, ev, "hold", {"user": "ann", "seats": ["N1"], "ttl": 60})
    call(b, ev, "hold", {"user": "ben", "seats": ["N2"], "ttl": 1})

    async def go():
        s = await anon(b)
        m = await reply(s, {"op": "subscribe", "channel": feed})
        assert m["op"] == "subscribed" and m["offset"] == 0, m
        refused(a, ev, "confirm", {"user": "ben", "seats": ["N1"]}, 409, 121)            # ann's hold
        refused(b, ev, "confirm", {"user": "ann", "seats": ["N1", "N2"]}, 409, 121)      # all or none
        refused(a, ev, "confirm", {"user": "ann", "seats": ["Z9"]}, 422, 120)
        refused(b, "no-such-map", "confirm", {"user": "ann", "seats": ["N1"]}, 422, 120)
        r = requests.post(a.url("/api/events/%s/confirm" % ev), json={"user": "ann", "seats": []}, timeout=5)
        assert r.status_code == 400, r.text
        # ben's hold runs out (1 s): then his confirm is refused too.
        await until(s, lambda: seat_map(a, ev)[0]["N2"]["status"] == "free", 5, "ben's hold to expire")
        refused(b, ev, "confirm", {"user": "ben", "seats": ["N2"]}, 409, 121)
        await idle(s, 0.4)
        assert feed_pubs(s, feed) == [], s.events
        assert history(a, feed)["publications"] == [] and history(b, feed)["offset"] == 0
        # The broker goes on: the good confirm is the feed's first publication.
        call(b, ev, "confirm", {"user": "ann", "seats": ["N1"]})
        await until(s, lambda: feed_pubs(s, feed), 5, "the ticket")
        assert [p["offset"] for p in feed_pubs(s, feed)] == [1]
        await s.close()
    run(go())


def test_feed_recovered_with_since_on_another_node(make_broker, redis):
    a, b = nodes(make_broker, redis, 2, *FEED)
    ev = "since"
    feed = "organiser:" + ev
    define(a, ev, [("S%d" % i, "A") for i in range(1, 5)])

    async def go():
        s = await anon(a)
        m = await reply(s, {"op": "subscribe", "channel": feed})
        assert m["op"] == "subscribed", m
        epoch, last = m["epoch"], m["offset"]
        call(a, ev, "hold", {"user": "kai", "seats": ["S1"], "ttl": 60})
        call(b, ev, "confirm", {"user": "kai", "seats": ["S1"]})
        await until(s, lambda: feed_pubs(s, feed), 5, "the first ticket")
        first = feed_pubs(s, feed)[0]
        await s.close()
        # Missed while away: two bookings, made on both nodes.
        for who, seat, n in (("lou", "S2", a), ("max", "S3", b)):
            call(n, ev, "hold", {"user": who, "seats": [seat], "ttl": 60})
            call(n, ev, "confirm", {"user": who, "seats": [seat]})
        w = await anon(b)
        m = await reply(w, {"op": "subscribe", "channel": feed,
                            "since": {"offset": first["offset"], "epoch": epoch}})
        assert m["op"] == "subscribed" and m.get("recovered") is True, m
        pubs = m["publications"]
        assert [p["offset"] for p in pubs] == [first["offset"] + 1, first["offset"] + 2], m
        assert [(p["data"]["holder"], p["data"]["seats"]) for p in pubs] == [("lou", ["S2"]), ("max", ["S3"])]
        assert all(p["data"]["type"] == "ticket_issued" and p["data"]["channel"] == "seats:" + ev for p in pubs)
        assert first["offset"] == last + 1
        # A wrong epoch is not recovered.
        x = await anon(a)
        other = ("0" if epoch[0] != "0" else "1") + epoch[1:]
        m = await reply(x, {"op": "subscribe", "channel": feed, "since": {"offset": 0, "epoch": other}})
        assert m["op"] == "subscribed" and m.get("recovered") is not True and m["epoch"] == epoch, m
        for c in (w, x):
            await c.close()
    run(go())


@pytest.mark.parametrize("feed_ns", ["organiser", "org"])
def test_feed_records_match_lmdb(feed_ns, make_broker, tmp_path):
    """The same walk on one LMDB node and on two redis nodes gives the same feed:
    the same publications (fields, offsets, ticket data but its booked_at), the
    same ticket as the holder's notice, and the feed namespace's own history
    (org: history_size = 1 keeps only the last ticket)."""
    extra = ("--seats-feed", feed_ns + ":{event}") + (("--ns", "org.history_size=1") if feed_ns == "org" else ())
    feed = feed_ns + ":cmp"
    got = {}
    for engine in ("lmdb", "redis"):
        r = Redis(tmp_path).start() if engine == "redis" else None
        try:
            a = node(make_broker, r, *extra) if r else make_broker(*SEATS, *extra)
            b = node(make_broker, r, *extra) if r else a
            define(a, "cmp", [("C1", "A"), ("C2", "A"), ("C3", "B")])
            call(a, "cmp", "hold", {"user": "pat", "seats": ["C2", "C1"], "ttl": 60})
            refused(b, "cmp", "confirm", {"user": "pat", "seats": ["C1", "C3"]}, 409, 121)
            call(b, "cmp", "confirm", {"user": "pat", "seats": ["C2", "C1"]})
            call(b, "cmp", "hold", {"user": "quin", "seats": ["C3"], "ttl": 60})
            call(a, "cmp", "confirm", {"user": "quin", "seats": ["C3"]})
            got[engine] = (history(a, feed), history(b, feed), history(b, "user:pat"))
        finally:
            if r:
                r.kill()

    def shape(h):
        pubs = [dict(p, data={k: v for k, v in p["data"].items() if k != "booked_at"}) for p in h["publications"]]
        for p in pubs:
            p.pop("ts", None)
        return {k: v for k, v in h.items() if k not in ("epoch", "publications")}, pubs

    lm, rd = got["lmdb"], got["redis"]
    assert shape(lm[0]) == shape(rd[0]) == shape(rd[1]), (lm[0], rd[0])
    assert {k: type(v) for k, v in lm[0].items()} == {k: type(v) for k, v in rd[0].items()}
    want = [(1, "pat", ["C2", "C1"]), (2, "quin", ["C3"])]
    pubs = shape(rd[0])[1]
    assert [(p["offset"], p["data"]["holder"], p["data"]["seats"]) for p in pubs] == \
        (want[1:] if feed_ns == "org" else want), pubs
    for eng in (lm, rd):
        assert sorted(eng[0]["publications"][-1]) == sorted(lm[0]["publications"][-1])   # the same fields
        assert all(p["ts"] == p["data"]["booked_at"] for p in eng[0]["publications"]), eng[0]
        ticket = eng[2]["publications"][0]["data"]
        assert ticket["type"] == "ticket_issued" and ticket["holder"] == "pat"
        feed_first = [p for p in eng[0]["publications"] if p["data"]["holder"] == "pat"]
        assert feed_ns == "org" or feed_first[0]["data"] == ticket, (feed_first, ticket)
