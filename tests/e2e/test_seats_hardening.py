"""Seat maps and state channels, hardened (issue 13, "Seat maps and state"):

- a re-hold by the holder never shortens a hold;
- release on disconnect waits seat_release_grace for the user to come back and
  releases only holds made over that user's WebSocket sessions;
- a holder hears of the end of their hold (seat_expired on user:{id});
- the waitlist position can be read without joining again;
- the REST `user` field follows the token rules for `sub`;
- a state key's version never repeats within the channel's epoch (delete,
  reset and a seat map redefinition included);
- a subscription to one section of a seat map: a filtered snapshot, then only
  that section's deltas, in both encodings.

Each test failed against the broker before these changes."""
import asyncio
import time

import requests

from conftest import RawWS, apply_delta, run
from test_seats import (SEATS, anon, assert_converged, call, define, idle, ns, personal, read_state, refused, reply,
                        seat_map, seats_op, until, user, watch, ws_error)

STATE = ("--ns", "scores.state=on")


def now_ms():
    return int(time.time() * 1000)


def personal_msgs(c, event, kind):
    """The publications of type @kind about @event on @c's personal channel."""
    return [m["data"] for m in c.events if m.get("op") == "pub" and m.get("channel") == "user:" + c.user_name
            and isinstance(m.get("data"), dict) and m["data"].get("event") == event and m["data"].get("type") == kind]


# -- 1. a re-hold never shortens ---------------------------------------------------------------

def test_rehold_with_shorter_ttl_keeps_the_longer_hold(make_broker):
    b = make_broker(*SEATS)
    ev = "rh1"
    define(b, ev, [("A1", "A"), ("A2", "A"), ("A3", "A")])
    first = call(b, ev, "hold", {"user": "alice", "seats": ["A1"], "ttl": 60})
    again = call(b, ev, "hold", {"user": "alice", "seats": ["A1"], "ttl": 1})
    assert again["expires"] == first["expires"], "a re-hold with ttl 1 must not cut a 60 s hold short: %r" % again
    assert seat_map(b, ev)[0]["A1"]["expires"] == first["expires"]
    # A longer ttl still extends it.
    longer = call(b, ev, "hold", {"user": "alice", "seats": ["A1"], "ttl": 120})
    assert longer["expires"] >= first["expires"] + 55000, (first, longer)
    # A1 (long) re-held with A2 (new), ttl 1: A1 keeps its expiry, A2 gets 1 s; the answer is the earliest.
    t0 = now_ms()
    mixed = call(b, ev, "hold", {"user": "alice", "seats": ["A1", "A2"], "ttl": 1})
    seats, _ = seat_map(b, ev)
    assert seats["A1"]["expires"] == longer["expires"], seats["A1"]
    assert t0 + 500 <= seats["A2"]["expires"] <= now_ms() + 1500, seats["A2"]
    assert mixed["expires"] == seats["A2"]["expires"], mixed

    async def go():
        # Over WebSocket too, then the short one is checked to still hold after its 1 s.
        bob = await user(b, "bob")
        m = await reply(bob, seats_op(ev, "hold", seats=["A3"], ttl=60))
        assert m["op"] == "seats", m
        m2 = await reply(bob, seats_op(ev, "hold", seats=["A3"], ttl=1))
        assert m2["op"] == "seats" and m2["expires"] == m["expires"], (m, m2)
        await asyncio.sleep(2.5)
        seats, _ = seat_map(b, ev)
        assert seats["A3"]["status"] == "held" and seats["A3"]["holder"] == "bob", seats["A3"]
        assert seats["A1"]["status"] == "held" and seats["A1"]["holder"] == "alice", seats["A1"]
        await bob.close()
    run(go())


# -- 2. release on disconnect: a grace, and only WebSocket holds --------------------------------

def test_release_on_disconnect_waits_for_a_reconnect(make_broker):
    b = make_broker(*SEATS, *ns("seat_release_on_disconnect=on", "seat_release_grace=4s"))
    ev = "rg1"
    define(b, ev, [("G1", "A"), ("G2", "A"), ("G3", "A")])

    async def go():
        a = await user(b, "alice")
        m = await reply(a, seats_op(ev, "hold", seats=["G1"], ttl=300))
        assert m["op"] == "seats", m
        # The backend holds G2 for alice over REST: a disconnect never releases it.
        call(b, ev, "hold", {"user": "alice", "seats": ["G2"], "ttl": 300})
        await a.close()
        # A page reload: back within the grace, the hold stays, also after the grace would have ended.
        await asyncio.sleep(0.5)
        a = await user(b, "alice")
        await asyncio.sleep(4.5)
        seats, _ = seat_map(b, ev)
        assert seats["G1"]["status"] == "held" and seats["G1"]["holder"] == "alice", \
            "a reconnect within seat_release_grace keeps the hold: %r" % seats["G1"]
        # Gone for good: released after the grace, not before.
        t_close = time.monotonic()
        await a.close()
        await asyncio.sleep(1.0)
        assert seat_map(b, ev)[0]["G1"]["status"] == "held", "released before the grace was over"
        deadline = time.monotonic() + 10
        while seat_map(b, ev)[0]["G1"]["status"] != "free":
            assert time.monotonic() < deadline, "G1 not released within the grace and a few seconds"
            await asyncio.sleep(0.1)
        assert time.monotonic() - t_close >= 3.5, "released before seat_release_grace (4s)"
        seats, _ = seat_map(b, ev)
        assert seats["G2"]["status"] == "held" and seats["G2"]["holder"] == "alice", \
            "a hold the backend made over REST outlives the user's connections: %r" % seats["G2"]
        # Another user is unaffected throughout.
        bob = await user(b, "bob")
        m = await reply(bob, seats_op(ev, "hold", seats=["G3"], ttl=300))
        assert m["op"] == "seats", m
        await bob.close()
    run(go(), timeout=60)


def test_release_grace_zero_and_backend_rehold(make_broker):
    """seat_release_grace = 0 releases at once; a seat the backend re-held over REST (taking a
    WebSocket hold into payment) is the backend's and stays."""
    b = make_broker(*SEATS, *ns("seat_release_on_disconnect=on", "seat_release_grace=0"))
    ev = "rg0"
    define(b, ev, [("Z1", "A"), ("Z2", "A")])

    async def go():
        a = await user(b, "alice")
        m = await reply(a, seats_op(ev, "hold", seats=["Z1", "Z2"], ttl=300))
        assert m["op"] == "seats", m
        call(b, ev, "hold", {"user": "alice", "seats": ["Z2"], "ttl": 300})
        await a.close()
        deadline = time.monotonic() + 6
        while seat_map(b, ev)[0]["Z1"]["status"] != "free":
            assert time.monotonic() < deadline, "with grace 0 the hold goes at once"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        z2 = seat_map(b, ev)[0]["Z2"]
        assert z2["status"] == "held" and z2["holder"] == "alice", z2
    run(go())


# -- 3. seat_expired on the holder's personal channel --------------------------------------------

def test_holder_is_told_when_a_hold_or_offer_expires(make_broker):
    b = make_broker(*SEATS, *ns("seat_offer_ttl=1s"))
    ev = "ex1"
    define(b, ev, [("X1", "A"), ("X2", "A")])

    async def go():
        alice = await personal(b, "alice")
        bob = await personal(b, "bob")
        viewer = await anon(b)
        view = await watch(viewer, ev)
        h = call(b, ev, "hold", {"user": "alice", "seats": ["X1"], "ttl": 1})
        call(b, ev, "hold", {"user": "carol", "seats": ["X2"], "ttl": 300})
        assert call(b, ev, "waitlist", {"user": "bob", "section": "A"})["position"] == 1
        await until(alice, lambda: personal_msgs(alice, ev, "seat_expired"), 10, "alice's seat_expired")
        got = personal_msgs(alice, ev, "seat_expired")
        assert got == [{"type": "seat_expired", "event": ev, "channel": "seats:" + ev, "seat": "X1",
                        "section": "A", "expires": h["expires"], "offer": False}], got
        # X1 went to bob as an offer (1 s); he lets it expire and hears of it too.
        await until(bob, lambda: personal_msgs(bob, ev, "seat_offer"), 10, "bob's seat_offer")
        offer = personal_msgs(bob, ev, "seat_offer")[0]
        await until(bob, lambda: personal_msgs(bob, ev, "seat_expired"), 10, "bob's seat_expired")
        got = personal_msgs(bob, ev, "seat_expired")
        assert got == [{"type": "seat_expired", "event": ev, "channel": "seats:" + ev, "seat": "X1",
                        "section": "A", "expires": offer["expires"], "offer": True}], got
        await until(viewer, lambda: (view.seat("X1") or {}).get("status") == "free", 10, "X1 to be free")
        # A confirmed or released hold is no expiry: nothing more arrives.
        call(b, ev, "release", {"user": "carol", "seats": ["X2"]})
        await idle(alice, 0.5)
        await idle(bob, 0.5)
        assert len(personal_msgs(alice, ev, "seat_expired")) == 1
        assert len(personal_msgs(bob, ev, "seat_expired")) == 1
        for c in (alice, bob, viewer):
            await c.close()
    run(go(), timeout=60)


# -- 4. reading one's waitlist position --------------------------------------------------------

def test_waitlist_position_read(make_broker):
    b = make_broker(*SEATS)
    ev = "wp1"
    define(b, ev, [("W1", "A"), ("W2", "B")])
    call(b, ev, "hold", {"user": "zed", "seats": ["W1"], "ttl": 300})
    for u in ("ann", "ben", "cat"):
        call(b, ev, "waitlist", {"user": u, "section": "A"})
    _, offset = read_state(b, ev)

    r = call(b, ev, "waitlist/position", {"user": "ben", "section": "A"})
    assert r["position"] == 2 and r["waiting"] == 3 and r["section"] == "A", r
    assert r["offset"] == offset and r["changes"] == [], "a read changes nothing and publishes nothing: %r" % r
    r = call(b, ev, "waitlist/position", {"user": "dan", "section": "A"})
    assert r["position"] == 0 and r["waiting"] == 3, r
    g = requests.get(b.url("/api/events/%s/waitlist/position" % ev), params={"user": "cat", "section": "A"},
                     timeout=5)
    assert g.status_code == 200 and g.json()["position"] == 3 and g.json()["waiting"] == 3, g.text
    refused(b, ev, "waitlist/position", {"user": "ben", "section": "Q"}, 422, 120)
    refused(b, ev, "waitlist/position", {"user": "ben"}, 400, 103)
    g = requests.get(b.url("/api/events/%s/waitlist/position" % ev), params={"section": "A"}, timeout=5)
    assert g.status_code == 400 and g.json()["error"]["code"] == 103, g.text
    assert read_state(b, ev)[1] == offset, "reads never move the offset"

    async def go():
        ben = await user(b, "ben")
        m = await reply(ben, seats_op(ev, "waitlist_position", section="A"))
        assert m["op"] == "seats" and m["action"] == "waitlist_position" and m["position"] == 2 \
            and m["waiting"] == 3, m
        m = await reply(ben, seats_op(ev, "waitlist_position", section="B"))
        assert m["position"] == 0 and m["waiting"] == 0, m
        e = await ws_error(ben, seats_op(ev, "waitlist_position", section="nope"), 120)
        assert e["section"] == "nope", e
        await ws_error(ben, seats_op(ev, "waitlist_position"), 103)
        await ws_error(await anon(b), seats_op(ev, "waitlist_position", section="A"), 113)
        call(b, ev, "waitlist/leave", {"user": "ann", "section": "A"})
        m = await reply(ben, seats_op(ev, "waitlist_position", section="A"))
        assert m["position"] == 1 and m["waiting"] == 2, m
        await ben.close()
    run(go())


# -- 5. the REST user field follows the token rules --------------------------------------------

def test_rest_user_is_validated_like_a_token_sub(make_broker):
    b = make_broker(*SEATS)
    ev = "uv1"
    define(b, ev, [("U1", "A"), ("U2", "A")])
    for bad_user in ("alice,bob", "orders#alice", "x" * 129, "", 7, None):
        for action, body in (("hold", {"seats": ["U1"], "ttl": 60}), ("waitlist", {"section": "A"}),
                             ("confirm", {"seats": ["U1"]}), ("release", {"seats": ["U1"]})):
            body = dict(body)
            if bad_user is not None:
                body["user"] = bad_user
            e = refused(b, ev, action, body, 400, 103)
            assert "\"user\"" in e["reason"] and "1-128 bytes without ',' or '#'" in e["reason"], e
    assert seat_map(b, ev)[0]["U1"]["status"] == "free", "nothing was held for a bad user"
    ok = call(b, ev, "hold", {"user": "u" * 128, "seats": ["U1"], "ttl": 60})
    assert ok["seats"] == ["U1"]
    ok = call(b, ev, "hold", {"user": "élodie", "seats": ["U2"], "ttl": 60})
    assert seat_map(b, ev)[0]["U2"]["holder"] == "élodie"


# -- 6. state versions never repeat ----------------------------------------------------------------

def state_ops(b, channel, *op_list, expect=200):
    r = requests.post(b.url("/api/channels/%s/state" % channel), json={"ops": list(op_list)}, timeout=5)
    assert r.status_code == expect, (r.status_code, r.text)
    return r.json()


def test_state_versions_never_repeat_after_delete_or_reset(make_broker, tmp_path):
    data = tmp_path / "data"
    b = make_broker(*STATE, data_dir=str(data))
    ch = "scores:aba"
    r = state_ops(b, ch, {"op": "set", "key": "k", "value": "a"})
    assert r["changes"][0]["version"] == 1, "a key set first starts at 1"
    state_ops(b, ch, {"op": "set", "key": "k", "value": "b"}, {"op": "set", "key": "other", "value": 0})
    state_ops(b, ch, {"op": "delete", "key": "k"})
    r = state_ops(b, ch, {"op": "set", "key": "k", "value": "a"})
    v3 = r["changes"][0]["version"]
    assert v3 > 2, "a re-created key continues above its old versions, not at 1: %r" % r
    # A cas that saw the old "k" at version 1 (or 2) must fail: that state is gone.
    for stale in (1, 2):
        e = state_ops(b, ch, {"op": "cas", "key": "k", "value": "z", "version": stale}, expect=409)["error"]
        assert e["code"] == 117 and e["version"] == v3, e
    # cas with version 0 still means "must not exist".
    state_ops(b, ch, {"op": "cas", "key": "k", "value": "z", "version": 0}, expect=409)
    r = state_ops(b, ch, {"op": "cas", "key": "fresh", "value": 1, "version": 0})
    assert r["changes"][0]["version"] >= 1
    # A reset, then the same keys again: above everything seen before, also after a restart.
    seen = {"k": v3, "other": 1}
    state_ops(b, ch, {"op": "reset"})
    b.stop()
    b.start()
    r = state_ops(b, ch, {"op": "set", "key": "k", "value": "a"}, {"op": "set", "key": "other", "value": 0})
    for c in r["changes"]:
        assert c["version"] > seen[c["key"]], "version %d of %s repeats an old one (%r)" % (c["version"], c["key"],
                                                                                            seen)
    # Versions still grow by one per change of a live key.
    v = r["changes"][0]["version"]
    r = state_ops(b, ch, {"op": "set", "key": "k", "value": "b"})
    assert r["changes"][0]["version"] == v + 1, r


def test_seat_key_versions_never_repeat_after_redefinition(make_broker):
    b = make_broker(*SEATS)
    ev = "ver1"
    define(b, ev, [("V1", "A"), ("V2", "A")])
    call(b, ev, "hold", {"user": "alice", "seats": ["V2"], "ttl": 60})
    call(b, ev, "release", {"user": "alice", "seats": ["V2"]})
    items, _ = read_state(b, ev)
    old = items["seat:V2"]["version"]
    define(b, ev, [("V1", "A")])                    # V2 removed
    define(b, ev, [("V1", "A"), ("V2", "A")])       # and back
    items, _ = read_state(b, ev)
    assert items["seat:V2"]["version"] > old, (old, items["seat:V2"])


# -- 7. subscribing to one section of a seat map -------------------------------------------------

class SectionView:
    """A filtered subscriber's copy: the filtered snapshot, then its deltas, whose offsets
    grow with gaps (deltas with nothing for the section are not sent)."""

    def __init__(self, subscribed):
        assert "state" in subscribed, subscribed
        self.offset = subscribed["offset"]
        self.state = {k: {"value": v["value"], "version": v["version"]} for k, v in subscribed["state"].items()}
        self.deltas = []

    def feed(self, m):
        if m["op"] == "snapshot":
            self.offset = m["offset"]
            self.state = {k: {"value": v["value"], "version": v["version"]} for k, v in m["state"].items()}
            return
        assert m["offset"] > self.offset, "offsets only grow: %d after %d" % (m["offset"], self.offset)
        apply_delta(self.state, m["data"])
        self.offset = m["offset"]
        self.deltas.append(m)


async def watch_section(c, event, section):
    m = await reply(c, {"op": "subscribe", "channel": "seats:" + event, "filter": {"section": section}})
    assert m["op"] == "subscribed", m
    view = SectionView(m)
    c.views["seats:" + event] = view
    return view


def section_of(b, event, section):
    """The stored map restricted to one section: its seats and its counts, with versions."""
    items, offset = read_state(b, event)
    want = {k: {"value": it["value"], "version": it["version"]} for k, it in items.items()
            if k == "section:" + section or (k.startswith("seat:") and it["value"]["section"] == section)}
    return want, offset


def test_subscribe_to_one_section(make_broker):
    b = make_broker(*SEATS)
    ev = "big1"
    secs = ["S%d" % i for i in range(8)]
    define(b, ev, [("%s-%d" % (s, n), s) for s in secs for n in range(60)])   # 480 seats

    async def go():
        full_c = await user(b, "fullview")
        full = await watch(full_c, ev)
        a_js = await user(b, "a_js")
        a_mp = await user(b, "a_mp", "msgpack")
        b_js = await user(b, "b_js")
        va = await watch_section(a_js, ev, "S0")
        vm = await watch_section(a_mp, ev, "S0")
        vb = await watch_section(b_js, ev, "S1")
        want_a, offset = section_of(b, ev, "S0")
        assert va.offset == offset and va.state == want_a, "the snapshot is the section: %d keys, want %d" % (
            len(va.state), len(want_a))
        assert len(va.state) == 61 and vm.state == va.state
        assert vb.state == section_of(b, ev, "S1")[0]
        assert len(full.state) == 488

        # A hold in S0 reaches S0's views (seat and counts) and the full one, not S1's.
        h = call(b, ev, "hold", {"user": "alice", "seats": ["S0-1", "S0-2"], "ttl": 300})
        await until(a_js, lambda: va.offset >= h["offset"], 5, "the S0 delta (JSON)")
        await until(a_mp, lambda: vm.offset >= h["offset"], 5, "the S0 delta (MessagePack)")
        await until(full_c, lambda: full.offset >= h["offset"], 5, "the full delta")
        assert {c["key"] for c in va.deltas[-1]["data"]["changes"]} == {"seat:S0-1", "seat:S0-2", "section:S0"}
        assert vm.deltas[-1]["data"] == va.deltas[-1]["data"], "both encodings carry the same filtered delta"
        # Holds in S1 and S5: S1's view hears of S1 only, S0's of nothing.
        n_a = len(va.deltas)
        h1 = call(b, ev, "hold", {"user": "bob", "seats": ["S1-0"], "ttl": 300})
        h5 = call(b, ev, "hold", {"user": "bob", "seats": ["S5-0"], "ttl": 300})
        await until(b_js, lambda: vb.offset >= h1["offset"], 5, "the S1 delta")
        await until(full_c, lambda: full.offset >= h5["offset"], 5, "the full deltas")
        await idle(a_js, 0.5)
        await idle(b_js, 0.3)
        assert len(va.deltas) == n_a, "S0's view got deltas of other sections: %r" % va.deltas[n_a:]
        assert vb.offset == h1["offset"], "S1's view got the S5 delta"

        # Moving S0-3 to S1 (a redefinition): it leaves S0's view and enters S1's.
        spec = [("%s-%d" % (s, n), s) for s in secs for n in range(60)]
        spec[3] = ("S0-3", "S1")
        d = define(b, ev, spec)
        await until(a_js, lambda: va.offset >= d["offset"], 5, "S0's view of the move")
        await until(a_mp, lambda: vm.offset >= d["offset"], 5, "S0's MessagePack view of the move")
        await until(b_js, lambda: vb.offset >= d["offset"], 5, "S1's view of the move")
        await until(full_c, lambda: full.offset >= d["offset"], 5, "the full view of the move")
        assert "seat:S0-3" not in va.state and va.state["section:S0"]["value"]["total"] == 59
        assert vb.state["seat:S0-3"]["value"]["section"] == "S1" and vb.state["section:S1"]["value"]["total"] == 61
        for view, sec in ((va, "S0"), (vm, "S0"), (vb, "S1")):
            want, offset = section_of(b, ev, sec)
            assert view.state == want, "the %s view converges to the stored section" % sec
        assert_converged(full, b, ev)

        # A reconnect with since gets a fresh filtered snapshot, not the unfiltered log.
        c2 = await user(b, "again")
        m = await reply(c2, {"op": "subscribe", "channel": "seats:" + ev, "filter": {"section": "S0"},
                             "since": {"epoch": epoch_of(b, ev), "offset": h["offset"]}})
        assert m["op"] == "subscribed" and m.get("recovered") is False and "state" in m, m
        assert SectionView(m).state == section_of(b, ev, "S0")[0]

        # Bad filters: a clear 103; the others go on.
        for bad in ({"section": "no such!"}, {"section": ""}, {"section": "S0", "more": 1}, {"prefix": "seat:"},
                    "S0", None):
            e = await ws_error(c2, {"op": "subscribe", "channel": "seats:other", "filter": bad}, 103)
            assert "filter" in e["reason"], e
        e = await ws_error(c2, {"op": "subscribe", "channel": "news", "filter": {"section": "S0"}}, 103)
        assert "seat maps" in e["reason"], e
        h = call(b, ev, "hold", {"user": "carol", "seats": ["S0-9"], "ttl": 300})
        await until(a_js, lambda: va.offset >= h["offset"], 5, "S0's view still live")
        for c in (full_c, a_js, a_mp, b_js, c2):
            await c.close()
    run(go(), timeout=60)


def epoch_of(b, event):
    r = requests.get(b.url("/api/channels/seats:%s/state" % event), params={"limit": 1}, timeout=5)
    return r.json()["epoch"]


def test_lagging_section_subscriber_gets_a_filtered_snapshot(make_broker):
    """A filtered subscriber that falls behind is resynchronised with a snapshot of its
    section only, and converges."""
    b = make_broker(*SEATS)
    ev = "lag1"
    s0 = ["S0-%d" % i for i in range(100)]
    s1 = ["S1-%d" % i for i in range(100)]
    define(b, ev, [(s, "S0") for s in s0] + [(s, "S1") for s in s1])
    slow = RawWS(b.host, b.port, rcvbuf=4096)
    try:
        slow.send_json({"op": "connect", "id": 1})
        slow.send_json({"op": "subscribe", "id": 2, "channel": "seats:" + ev, "filter": {"section": "S0"}})
        got = []
        while len(got) < 2:
            got += slow.recv_messages()
        assert [m["op"] for m in got] == ["connected", "subscribed"], got
        state = {k: v["value"] for k, v in got[1]["state"].items()}
        assert set(state) == {"seat:" + s for s in s0} | {"section:S0"}
        # Big deltas (100 seats each) while it reads nothing: far more than the socket
        # buffers and half of the send queue hold.
        sess = requests.Session()
        t0 = time.monotonic()
        for i in range(400):
            assert time.monotonic() - t0 < 60, "the load loop is bounded in time"
            for action, body in (("hold", {"user": "u%d" % i, "seats": s0, "ttl": 300}),
                                 ("release", {"user": "u%d" % i, "seats": s0}),
                                 ("hold", {"user": "v%d" % i, "seats": s1[:10], "ttl": 300}),
                                 ("release", {"user": "v%d" % i, "seats": s1[:10]})):
                r = sess.post(b.url("/api/events/%s/%s" % (ev, action)), json=body, timeout=5)
                assert r.status_code == 200, r.text
        last = call(b, ev, "hold", {"user": "last", "seats": s0[:3], "ttl": 300})
        assert "slow consumer" not in b.log
        want = {k: v["value"] for k, v in section_of(b, ev, "S0")[0].items()}
        snapshots = 0
        deadline = time.monotonic() + 20
        offset = 0
        while time.monotonic() < deadline and not (offset >= last["offset"] and state == want):
            for m in slow.recv_messages():
                if m["op"] == "snapshot":
                    snapshots += 1
                    assert set(m["state"]) <= {"seat:" + s for s in s0} | {"section:S0"}, \
                        "the resync snapshot is filtered too"
                    state = {k: v["value"] for k, v in m["state"].items()}
                    offset = m["offset"]
                elif m["op"] == "pub":
                    keys = {c["key"] for c in m["data"]["changes"]}
                    assert not any(k.startswith("seat:S1") or k == "section:S1" for k in keys), keys
                    apply_delta_values(state, m["data"])
                    offset = m["offset"]
        assert snapshots >= 1, "the lagging reader was resynchronised with a snapshot"
        assert state == want and offset >= last["offset"], "the section view converged"
    finally:
        slow.close()


def apply_delta_values(state, data):
    for ch in data["changes"]:
        if ch.get("deleted"):
            state.pop(ch["key"], None)
        else:
            state[ch["key"]] = ch["value"]
