"""Chat hardening (issue 13): presence events that converge in arrival order (seq),
presence_update, canonical dm names, thread paging, author-checked edits and deletes,
and idempotent publishing."""
import asyncio
import time

import requests

from conftest import hs256_token, run, ws_connect, reply

SECRET = b"0123456789abcdef0123456789abcdef-secret"
AUTH = ("--hmac-secret", SECRET.decode())
CHAT = (*AUTH, "--ns", "chat.presence=on", "--ns", "chat.join_leave=on")


def token(sub, **claims):
    return hs256_token(SECRET, sub, **claims)


async def user(b, name, enc="json", **claims):
    c = await ws_connect(b, enc)
    m = await c.request({"op": "connect", "id": 1, "token": token(name, **claims)})
    assert m["op"] == "connected" and m["user"] == name, m
    c.client_id = m["client"]
    c.events = []
    return c


async def wait_for(c, timeout=5.0, **fields):
    """The next message with every given field, skipping (into c.events) the others."""
    deadline = time.monotonic() + timeout
    while True:
        m = await c.next(timeout=max(0.1, deadline - time.monotonic()))
        if all(k in m and m[k] == v for k, v in fields.items()):
            return m
        c.events.append(m)


async def drain(c, within=0.3):
    """Moves every message that arrives within @within seconds to c.events."""
    try:
        while True:
            c.events.append(await c.next(timeout=within))
    except AssertionError:
        return c.events


# -- 1. presence events converge in arrival order ----------------------------------

def apply_presence(members, ev):
    """A client applying presence events in arrival order: join/leave one by one, a
    batch's entries in seq order (joins before leaves without seq)."""
    op = ev["op"]
    if op == "join":
        members.add(ev["user"])
    elif op == "leave":
        members.discard(ev["user"])
    elif op == "presence_batch":
        entries = [("join", e) for e in ev["joins"]] + [("leave", e) for e in ev["leaves"]]
        entries.sort(key=lambda x: x[1].get("seq", 0))
        for kind, e in entries:
            (members.add if kind == "join" else members.discard)(e["user"])


def test_presence_events_converge_around_the_tier(make_broker):
    b = make_broker(*CHAT, "--ns", "chat.presence_tier=3", "--ns", "chat.presence_grace=1s")
    ch = "chat:tier"

    async def go():
        obs = await user(b, "observer")
        r = await reply(obs, {"op": "subscribe", "channel": ch, "presence": True})
        view = {m["user"] for m in r["presence"]["members"]}
        others = {}
        for n in ("e0", "e1", "e2", "e3"):
            others[n] = await user(b, n)
            await reply(others[n], {"op": "subscribe", "channel": ch})
        await drain(obs, 1.5)                       # the joins (the last ones batched)
        # e1, e2 and e3 go together; their leaves come after the grace, some
        # above the tier (batched), some at or below it.
        for n in ("e1", "e2", "e3"):
            await others[n].close()
        obs.events.append(await obs.next(timeout=5))

        async def back(n):
            others[n] = await user(b, n)
            await reply(others[n], {"op": "subscribe", "channel": ch})
        # They come straight back, as a phone would, as soon as the first
        # leave is out (while others may still wait in a batch).
        await asyncio.gather(*(back(n) for n in ("e3", "e2", "e1")))
        await drain(obs, 2.5)                       # past the next batch flush
        events = [e for e in obs.events if e["op"] in ("join", "leave", "presence_batch")]
        for ev in events:
            apply_presence(view, ev)
        p = await reply(obs, {"op": "presence", "channel": ch})
        assert view == {m["user"] for m in p["members"]}, (view, p, events)
        assert view == {"observer", "e0", "e1", "e2", "e3"}
        # Every event and the answer carry the channel's presence seq, increasing.
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), events
        assert p["seq"] >= seqs[-1]
        for ev in events:
            if ev["op"] == "presence_batch":
                entries = ev["joins"] + ev["leaves"]
                assert all(e["seq"] <= ev["seq"] for e in entries), ev
        for c in [obs, *others.values()]:
            await c.close()
    run(go(), timeout=60)


def test_no_event_overtakes_a_batched_one(make_broker):
    """Without grace, so the order is the test's: e3's leave is batched (5 -> 4 members,
    above the tier), e2's and e1's are not (at or below it), and e3's return (3 members)
    would be sent at once, ahead of the batch that says it left."""
    b = make_broker(*CHAT, "--ns", "chat.presence_tier=3", "--ns", "chat.presence_grace=0")
    ch = "chat:overtake"

    async def go():
        obs = await user(b, "observer")
        r = await reply(obs, {"op": "subscribe", "channel": ch, "presence": True})
        view = {m["user"] for m in r["presence"]["members"]}
        others = {}
        for n in ("e0", "e1", "e2", "e3"):
            others[n] = await user(b, n)
            await reply(others[n], {"op": "subscribe", "channel": ch})
        await drain(obs, 1.5)
        # Several rounds: a batch flushed in the middle of one (once a second)
        # hides the overtaking in that round.
        for _ in range(3):
            for n in ("e3", "e2", "e1"):
                await reply(others[n], {"op": "unsubscribe", "channel": ch})
            for n in ("e3", "e2", "e1"):
                await reply(others[n], {"op": "subscribe", "channel": ch})
            await drain(obs, 1.5)
            for ev in obs.events:
                apply_presence(view, ev)
            obs.events.clear()
            p = await reply(obs, {"op": "presence", "channel": ch})
            assert view == {m["user"] for m in p["members"]}, (view, p)
        for c in [obs, *others.values()]:
            await c.close()
    run(go(), timeout=40)


def test_batch_orders_a_user_that_leaves_and_comes_back(make_broker):
    """A user that leaves and rejoins within one batch is in both lists; the seq says which came last."""
    b = make_broker(*CHAT, "--ns", "chat.presence_tier=1", "--ns", "chat.presence_grace=0")
    ch = "chat:flap"

    async def go():
        obs = await user(b, "observer")
        await reply(obs, {"op": "subscribe", "channel": ch})
        other = await user(b, "x")
        await reply(other, {"op": "subscribe", "channel": ch})
        bob = await user(b, "bob")
        await reply(bob, {"op": "subscribe", "channel": ch})
        await drain(obs, 1.5)
        await reply(bob, {"op": "unsubscribe", "channel": ch})
        await reply(bob, {"op": "subscribe", "channel": ch})
        await drain(obs, 1.5)
        batches = [e for e in obs.events if e["op"] == "presence_batch" and
                   any(x["user"] == "bob" for x in e["leaves"])]
        assert batches, obs.events
        bt = batches[-1]
        join = [x for x in bt["joins"] if x["user"] == "bob"]
        leave = [x for x in bt["leaves"] if x["user"] == "bob"]
        assert join and leave and leave[0]["seq"] < join[0]["seq"], bt
        view = set()
        for ev in obs.events:
            apply_presence(view, ev)
        assert "bob" in view
        for c in (obs, other, bob):
            await c.close()
    run(go(), timeout=30)


# -- 5. presence_update ----------------------------------------------------------

def test_presence_update(make_broker):
    b = make_broker(*CHAT, "--ns", "chat.presence_grace=0", "--ns", "chat.signal_rate=2")
    ch = "chat:status"

    async def go():
        alice = await user(b, "alice", info={"name": "Alice"})
        bob = await user(b, "bob")
        await reply(alice, {"op": "subscribe", "channel": ch})
        await reply(bob, {"op": "subscribe", "channel": ch})
        await drain(alice)
        r = await reply(alice, {"op": "presence_update", "channel": ch, "info": {"name": "Alice", "status": "away"}})
        assert r["op"] == "presence_updated" and r["channel"] == ch and isinstance(r["seq"], int), r
        m = await bob.expect(op="presence_update", channel=ch, user="alice")
        assert m["info"] == {"name": "Alice", "status": "away"} and m["seq"] == r["seq"], m
        await alice.assert_silent(0.3)              # not echoed to the sender
        p = await reply(bob, {"op": "presence", "channel": ch})
        info = {x["user"]: x.get("info") for x in p["members"]}
        assert info["alice"] == {"name": "Alice", "status": "away"} and p["seq"] == r["seq"], p
        rest = requests.get(b.url("/api/channels/%s/presence" % ch), timeout=5).json()
        assert {x["user"]: x.get("info") for x in rest["members"]}["alice"]["status"] == "away"
        # null clears it.
        await asyncio.sleep(1.1)                    # a fresh rate bucket
        r = await reply(alice, {"op": "presence_update", "channel": ch, "info": None})
        assert r["op"] == "presence_updated", r
        m = await bob.expect(op="presence_update", user="alice")
        assert m["info"] is None
        # Refusals: a bad or too large info, not subscribed, no presence, rate.
        await asyncio.sleep(1.1)
        for bad in ("away", 3, [1], {"s": "x" * 1100}):
            e = await reply(alice, {"op": "presence_update", "channel": ch, "info": bad})
            assert e["op"] == "error" and e["code"] == 103, (bad, e)
        e = await reply(alice, {"op": "presence_update", "channel": ch})
        assert e["op"] == "error" and e["code"] == 103
        e = await reply(alice, {"op": "presence_update", "channel": "chat:other", "info": {}})
        assert e["op"] == "error" and e["code"] == 108, e
        await reply(alice, {"op": "subscribe", "channel": "nopres:x"})
        e = await reply(alice, {"op": "presence_update", "channel": "nopres:x", "info": {}})
        assert e["op"] == "error" and e["code"] == 116, e
        codes = []
        for i in range(4):
            r = await reply(alice, {"op": "presence_update", "channel": ch, "info": {"n": i}})
            codes.append(r.get("code", 0))
        assert 115 in codes and codes[0] == 0, codes
        # A member that leaves and comes back has its token's info again.
        await alice.close()
        await wait_for(bob, op="leave", user="alice")
        alice = await user(b, "alice", info={"name": "Alice"})
        await reply(alice, {"op": "subscribe", "channel": ch})
        m = await wait_for(bob, op="join", user="alice")
        assert m["info"] == {"name": "Alice"}
        for c in (alice, bob):
            await c.close()
    run(go(), timeout=40)


# -- 3. one channel per set of dm users --------------------------------------------

def test_dm_names_are_canonical(make_broker):
    b = make_broker(*AUTH, "--ns", "dm.user_list=on")

    async def go():
        alice = await user(b, "alice")
        for name, canon in (("dm:bob,alice", "dm:alice,bob"), ("dm:alice,alice,bob", "dm:alice,bob"),
                            ("dm:alice,,bob", "dm:alice,bob"), ("dm:carol,bob,alice", "dm:alice,bob,carol")):
            for op in ("subscribe", "publish", "history"):
                e = await reply(alice, {"op": op, "channel": name, "data": 1})
                assert e["op"] == "error" and e["code"] == 104, (name, op, e)
                assert canon in e["reason"], e
        e = await reply(alice, {"op": "subscribe", "channel": "dm:,"})
        assert e["op"] == "error" and e["code"] == 104, e
        r = await reply(alice, {"op": "subscribe", "channel": "dm:alice,bob"})
        assert r["op"] == "subscribed", r
        r = await reply(alice, {"op": "publish", "channel": "dm:alice,bob", "data": "hi"})
        assert r["op"] == "published", r
        # Other namespaces have no such rule.
        r = await reply(alice, {"op": "subscribe", "channel": "chat:b,a"})
        assert r["op"] == "subscribed", r
        await alice.close()
    run(go())
    r = requests.post(b.url("/api/publish"), json={"channel": "dm:bob,alice", "data": 1}, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["code"] == 104 and "dm:alice,bob" in r.json()["error"]["reason"]
    r = requests.get(b.url("/api/channels/dm:bob,alice/history"), timeout=5)
    assert r.status_code == 400 and r.json()["error"]["code"] == 104
    r = requests.post(b.url("/api/publish"), json={"channel": "dm:alice,bob", "data": 2}, timeout=5)
    assert r.status_code == 200


# -- 4. thread pages ---------------------------------------------------------------

def test_thread_pages(make_broker):
    b = make_broker(*AUTH)
    ch = "chat:threads"

    async def go():
        alice = await user(b, "alice")
        root = (await reply(alice, {"op": "publish", "channel": ch, "data": "root"}))["offset"]
        replies = []
        for i in range(7):
            await reply(alice, {"op": "publish", "channel": ch, "data": "other %d" % i})
            r = await reply(alice, {"op": "publish", "channel": ch, "data": "r%d" % i, "reply_to": root})
            replies.append(r["offset"])

        async def pages(**q):
            got, req = [], {"op": "history", "channel": ch, "thread": root, "limit": 3, **q}
            for _ in range(10):
                h = await reply(alice, req)
                assert h["op"] == "history", h
                got.append([p["offset"] for p in h["publications"]])
                if h["next"] is None:
                    return got
                req = {"op": "history", "channel": ch, "thread": root, "limit": 3, **h["next"]}
            raise AssertionError("more than 10 pages")

        fwd = await pages()
        assert fwd == [replies[0:3], replies[3:6], replies[6:7]], (fwd, replies)
        back = await pages(reverse=True)
        assert back == [replies[6:3:-1], replies[3:0:-1], replies[0:1]], (back, replies)
        # since / before bound a thread page like any page.
        h = await reply(alice, {"op": "history", "channel": ch, "thread": root, "since": replies[1],
                                "before": replies[5]})
        assert [p["offset"] for p in h["publications"]] == replies[2:5] and h["next"] is None, h
        # A page that is exactly the rest of the thread has no next.
        h = await reply(alice, {"op": "history", "channel": ch, "thread": root, "limit": 7})
        assert len(h["publications"]) == 7 and h["next"] is None, h
        await alice.close()
        return replies, root

    replies, root = run(go())
    url = b.url("/api/channels/%s/history" % ch)
    r = requests.get(url, params={"thread": root, "limit": 3}, timeout=5).json()
    assert [p["offset"] for p in r["publications"]] == replies[0:3] and r["next"] == {"since": replies[2]}, r
    r = requests.get(url, params={"thread": root, "limit": 3, "since": replies[2]}, timeout=5).json()
    assert [p["offset"] for p in r["publications"]] == replies[3:6], r
    r = requests.get(url, params={"thread": root, "limit": 3, "reverse": "true", "before": replies[4]},
                     timeout=5).json()
    assert [p["offset"] for p in r["publications"]] == replies[3:0:-1], r
    assert r["next"] == {"before": replies[1], "reverse": True}, r


# -- 2. edits and deletes are the author's (or a moderator's) -----------------------

def test_edits_and_deletes_need_the_author(make_broker):
    b = make_broker(*AUTH, "--ns", "mod.moderators=on", "--ns", "live.history=off",
                    "--ns", "short.history_size=2")

    async def go():
        alice = await user(b, "alice")
        bob = await user(b, "bob")
        await reply(bob, {"op": "subscribe", "channel": "chat:e"})
        m1 = (await reply(alice, {"op": "publish", "channel": "chat:e", "data": "hello"}))["offset"]
        await drain(bob)
        bob.events.clear()
        for kind in ("edit", "delete"):
            e = await reply(bob, {"op": "publish", "channel": "chat:e", "data": "pwned", "reply_to": m1, "kind": kind})
            assert e["op"] == "error" and e["code"] == 114 and "your own" in e["reason"], e
        await drain(bob)
        assert bob.events == [], "a refused edit is not delivered"
        # Reactions and replies to others are fine; edits and deletes of one's own too.
        r = await reply(bob, {"op": "publish", "channel": "chat:e", "data": "+1", "reply_to": m1, "kind": "reaction"})
        assert r["op"] == "published", r
        for kind in ("edit", "delete"):
            r = await reply(alice, {"op": "publish", "channel": "chat:e", "data": "hi", "reply_to": m1, "kind": kind})
            assert r["op"] == "published", r
        h = await reply(alice, {"op": "history", "channel": "chat:e"})
        assert [p.get("kind") for p in h["publications"]] == [None, "reaction", "edit", "delete"], h
        # An edit of an edit is checked against the edit's author.
        e = await reply(bob, {"op": "publish", "channel": "chat:e", "data": "x", "reply_to": m1 + 2, "kind": "edit"})
        assert e["op"] == "error" and e["code"] == 114, e

        # Moderators: role "moderator" where the namespace has moderators = on; admin/service everywhere.
        mod = await user(b, "mo", role="moderator")
        adm = await user(b, "root", role="admin")
        for ch in ("chat:e", "mod:e"):
            t = (await reply(alice, {"op": "publish", "channel": ch, "data": "t"}))["offset"]
            r = await reply(mod, {"op": "publish", "channel": ch, "data": None, "reply_to": t, "kind": "delete"})
            assert (r["op"] == "published") == (ch == "mod:e"), (ch, r)
            r = await reply(adm, {"op": "publish", "channel": ch, "data": None, "reply_to": t, "kind": "delete"})
            assert r["op"] == "published", r

        # Anonymous connections: their own client id's publications only.
        anon1 = await ws_connect(b)
        await anon1.request({"op": "connect", "id": 1})
        anon1.events = []
        anon2 = await ws_connect(b)
        await anon2.request({"op": "connect", "id": 1})
        anon2.events = []
        a = (await reply(anon1, {"op": "publish", "channel": "chat:anon", "data": "a"}))["offset"]
        e = await reply(anon2, {"op": "publish", "channel": "chat:anon", "data": "b", "reply_to": a, "kind": "edit"})
        assert e["op"] == "error" and e["code"] == 114, e
        r = await reply(anon1, {"op": "publish", "channel": "chat:anon", "data": "a2", "reply_to": a, "kind": "edit"})
        assert r["op"] == "published", r
        al = (await reply(alice, {"op": "publish", "channel": "chat:anon", "data": "mine"}))["offset"]
        e = await reply(anon1, {"op": "publish", "channel": "chat:anon", "data": "b", "reply_to": al, "kind": "edit"})
        assert e["op"] == "error" and e["code"] == 114, e

        # Publications of the backend (REST, no "from") are nobody's: users cannot edit them.
        rest = b.publish_rest("chat:e", "from the backend")["offset"]
        e = await reply(alice, {"op": "publish", "channel": "chat:e", "data": "x", "reply_to": rest, "kind": "edit"})
        assert e["op"] == "error" and e["code"] == 114, e

        # Without history the author is unknown: only moderators edit.
        lv = (await reply(alice, {"op": "publish", "channel": "live:x", "data": "l"}))["offset"]
        e = await reply(alice, {"op": "publish", "channel": "live:x", "data": "l2", "reply_to": lv, "kind": "edit"})
        assert e["op"] == "error" and e["code"] == 114 and "history" in e["reason"], e
        r = await reply(adm, {"op": "publish", "channel": "live:x", "data": "l2", "reply_to": lv, "kind": "edit"})
        assert r["op"] == "published", r
        # An original no longer kept cannot be checked either.
        old = (await reply(alice, {"op": "publish", "channel": "short:x", "data": 0}))["offset"]
        for i in range(3):
            await reply(alice, {"op": "publish", "channel": "short:x", "data": i + 1})
        e = await reply(alice, {"op": "publish", "channel": "short:x", "data": "x", "reply_to": old, "kind": "delete"})
        assert e["op"] == "error" and e["code"] == 114 and "no longer stored" in e["reason"], e
        for c in (alice, bob, mod, adm, anon1, anon2):
            await c.close()
    run(go())
    # The backend may edit anyone's publication.
    r = requests.post(b.url("/api/publish"), json={"channel": "chat:e", "data": "moderated", "reply_to": 1,
                                                   "kind": "edit"}, timeout=5)
    assert r.status_code == 200, r.text


# -- 6. idempotent publish ---------------------------------------------------------

def test_idempotent_publish(make_broker, tmp_path):
    b = make_broker(*AUTH, "--ns", "live.history=off")
    ch = "chat:idem"

    async def go():
        alice = await user(b, "alice")
        bob = await user(b, "bob")
        await reply(bob, {"op": "subscribe", "channel": ch})
        r1 = await reply(alice, {"op": "publish", "channel": ch, "data": "pay", "idempotency_key": "k-1"})
        assert r1["op"] == "published" and "duplicate" not in r1, r1
        await wait_for(bob, op="pub", offset=r1["offset"])
        # The retry (another connection of the same client, after a drop) is answered, not published.
        alice2 = await user(b, "alice")
        r2 = await reply(alice2, {"op": "publish", "channel": ch, "data": "pay", "idempotency_key": "k-1"})
        assert r2["op"] == "published" and r2["offset"] == r1["offset"] and r2["duplicate"] is True, r2
        await drain(bob, 0.5)
        assert [e for e in bob.events if e["op"] == "pub"] == [], bob.events
        # Other keys, and the same key on another channel, publish.
        r3 = await reply(alice, {"op": "publish", "channel": ch, "data": "pay", "idempotency_key": "k-2"})
        assert r3["offset"] == r1["offset"] + 1 and "duplicate" not in r3, r3
        r4 = await reply(alice, {"op": "publish", "channel": "chat:idem2", "data": "pay", "idempotency_key": "k-1"})
        assert r4["op"] == "published" and "duplicate" not in r4, r4
        # Two at once with one key: one publication.
        await alice.send({"op": "publish", "id": 77, "channel": ch, "data": 1, "idempotency_key": "twice"})
        await alice.send({"op": "publish", "id": 78, "channel": ch, "data": 1, "idempotency_key": "twice"})
        a = await wait_for(alice, id=77)
        c = await wait_for(alice, id=78)
        assert a["offset"] == c["offset"] and c.get("duplicate") is True and "duplicate" not in a, (a, c)
        h = await reply(alice, {"op": "history", "channel": ch})
        assert [p["data"] for p in h["publications"]] == ["pay", "pay", 1], h
        # Bad keys, and namespaces without history.
        for bad in ("", "x" * 65, 5, None):
            e = await reply(alice, {"op": "publish", "channel": ch, "data": 1, "idempotency_key": bad})
            assert e["op"] == "error" and e["code"] == 103, (bad, e)
        r = await reply(alice, {"op": "publish", "channel": ch, "data": 1, "idempotency_key": "x" * 64})
        assert r["op"] == "published", r
        e = await reply(alice, {"op": "publish", "channel": "live:x", "data": 1, "idempotency_key": "k"})
        assert e["op"] == "error" and e["code"] == 103 and "history" in e["reason"], e
        for cl in (alice, alice2, bob):
            await cl.close()
        return r1["offset"]

    off = run(go())
    # REST takes the same field.
    url = b.url("/api/publish")
    r = requests.post(url, json={"channel": ch, "data": "rest", "idempotency_key": "order-9"}, timeout=5).json()
    assert "duplicate" not in r, r
    r2 = requests.post(url, json={"channel": ch, "data": "rest", "idempotency_key": "order-9"}, timeout=5).json()
    assert r2 == {"channel": ch, "offset": r["offset"], "duplicate": True}, r2
    e = requests.post(url, json={"channel": ch, "data": 1, "idempotency_key": ""}, timeout=5)
    assert e.status_code == 400 and e.json()["error"]["code"] == 103
    # The keys survive a restart.
    b.stop()
    b2 = make_broker(*AUTH, data_dir=b.data_dir)
    r3 = requests.post(b2.url("/api/publish"), json={"channel": ch, "data": "rest", "idempotency_key": "order-9"},
                       timeout=5).json()
    assert r3 == r2, r3

    async def after():
        alice = await user(b2, "alice")
        r = await reply(alice, {"op": "publish", "channel": ch, "data": "pay", "idempotency_key": "k-1"})
        assert r["offset"] == off and r["duplicate"] is True, r
        await alice.close()
    run(after())


def test_idempotency_window(make_broker, tmp_path):
    conf = tmp_path / "idem.ini"
    conf.write_text("[history]\nidempotency_window = 1s\n")
    b = make_broker("--config", str(conf))
    url = b.url("/api/publish")
    body = {"channel": "chat:w", "data": 1, "idempotency_key": "k"}
    r1 = requests.post(url, json=body, timeout=5).json()
    r2 = requests.post(url, json=body, timeout=5).json()
    assert r2["offset"] == r1["offset"] and r2["duplicate"] is True
    time.sleep(2.5)                                 # past the window, and a prune round
    r3 = requests.post(url, json=body, timeout=5).json()
    assert r3["offset"] == r1["offset"] + 1 and "duplicate" not in r3, r3
