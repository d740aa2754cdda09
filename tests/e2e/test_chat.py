"""Chat: presence (multi-connection users, join/leave once per user, grace),
typing signals, private and personal channels, replies, reactions and threads."""
import asyncio
import time

import requests

from conftest import connect, hs256_token, run, ws_connect, drain, reply

SECRET = b"0123456789abcdef0123456789abcdef-secret"
CHAT = ("--hmac-secret", SECRET.decode(), "--ns", "chat.presence=on", "--ns", "chat.join_leave=on",
        "--ns", "chat.signals=on", "--ns", "dm.user_list=on")


def token(sub, **claims):
    return hs256_token(SECRET, sub, **claims)


async def user(b, name, enc="json", **claims):
    c = await ws_connect(b, enc)
    m = await c.request({"op": "connect", "id": 1, "token": token(name, **claims)})
    assert m["op"] == "connected" and m["user"] == name, m
    c.client_id = m["client"]
    return c


def test_presence_list_and_multi_connection_users(make_broker):
    b = make_broker(*CHAT, "--ns", "chat.presence_grace=0")

    async def go():
        watcher = await user(b, "watcher", info={"name": "W"})
        await watcher.subscribe("chat:room")
        alice1 = await user(b, "alice", info={"name": "Alice"})
        r = await alice1.request({"op": "subscribe", "id": 2, "channel": "chat:room", "presence": True})
        members = {m["user"]: m for m in r["presence"]["members"]}
        assert set(members) == {"watcher", "alice"} and members["watcher"]["info"] == {"name": "W"}
        assert r["presence"]["count"] == 2 and r["presence"]["connections"] == 2
        j = await watcher.expect(op="join", channel="chat:room", user="alice")
        assert j["info"] == {"name": "Alice"}
        # A second connection of alice: one member, two connections, no second join.
        alice2 = await user(b, "alice", "msgpack", info={"name": "Alice"})
        await alice2.subscribe("chat:room")
        await watcher.assert_silent(0.3)
        m = await watcher.request({"op": "presence", "id": 3, "channel": "chat:room"})
        members = {x["user"]: x for x in m["members"]}
        assert m["count"] == 2 and members["alice"]["connections"] == 2 and m["connections"] == 3
        m = await watcher.request({"op": "presence_stats", "id": 4, "channel": "chat:room"})
        assert m == {"op": "presence_stats", "id": 4, "channel": "chat:room", "members": 2, "connections": 3}
        r = requests.get(b.url("/api/channels/chat:room/presence"), timeout=5).json()
        assert r["count"] == 2 and {x["user"] for x in r["members"]} == {"watcher", "alice"}
        # One connection leaving: still present, no leave.
        await alice1.unsubscribe("chat:room")
        await watcher.assert_silent(0.3)
        # The last one leaving: one leave.
        await alice2.close()
        await watcher.expect(op="leave", channel="chat:room", user="alice")
        await watcher.assert_silent(0.3)
        m = await watcher.request({"op": "presence_stats", "id": 5, "channel": "chat:room"})
        assert m["members"] == 1
        st = requests.get(b.url("/api/channels/chat:room"), timeout=5).json()
        assert st["presence"] == 1
        for c in (watcher, alice1):
            await c.close()
    run(go())


def test_grace_period(make_broker):
    b = make_broker(*CHAT, "--ns", "chat.presence_grace=1s")

    async def go():
        watcher = await user(b, "watcher")
        await watcher.subscribe("chat:g")
        bob = await user(b, "bob")
        await bob.subscribe("chat:g")
        await watcher.expect(op="join", user="bob")
        # Drop and come back within the grace: no leave, no join.
        await bob.close()
        await asyncio.sleep(0.3)
        bob = await user(b, "bob")
        await bob.subscribe("chat:g")
        assert [m for m in await drain(watcher, 1.5) if m["op"] in ("join", "leave")] == []
        # Gone for longer than the grace: one leave, after the grace.
        t0 = time.monotonic()
        await bob.close()
        await watcher.expect(op="leave", user="bob", timeout=3)
        assert time.monotonic() - t0 >= 0.9
        await watcher.close()
    run(go())


def test_presence_off_and_tiered(make_broker):
    b = make_broker(*CHAT, "--ns", "chat.presence_tier=3", "--ns", "chat.presence_grace=0")

    async def go():
        plain = await connect(b)
        m = await plain.request({"op": "presence", "id": 1, "channel": "news"})
        assert m["op"] == "error" and m["code"] == 116
        m = await plain.request({"op": "subscribe", "id": 2, "channel": "news", "presence": True})
        assert m["op"] == "subscribed" and m["presence"] is None
        watcher = await user(b, "w")
        await watcher.subscribe("chat:big")
        users = [await user(b, "u%d" % i) for i in range(5)]
        for u in users:
            await u.subscribe("chat:big")
        # Above the tier (3): the list is a sample with a count, events come batched.
        m = await reply(watcher, {"op": "presence", "channel": "chat:big"})
        assert m["count"] == 6 and m.get("tiered") is True
        got = watcher.events + watcher.buf + await drain(watcher, 1.6)
        watcher.buf.clear()
        joins = [x for x in got if x["op"] == "join"]
        batches = [x for x in got if x["op"] == "presence_batch"]
        assert len(joins) == 2, "individual joins while at or under the tier"
        assert batches and sum(x["joins_total"] for x in batches) == 3 and batches[-1]["count"] == 6
        for c in [plain, watcher] + users:
            await c.close()
    run(go())


def test_typing_signals(make_broker):
    b = make_broker(*CHAT, "--ns", "chat.signal_rate=3")

    async def go():
        alice = await user(b, "alice")
        bob = await user(b, "bob")
        for c in (alice, bob):
            await c.subscribe("chat:typing")
        await drain(alice)
        await alice.send({"op": "signal", "channel": "chat:typing", "data": {"typing": True}, "from": {"user": "x"}})
        m = await bob.expect(op="signal", channel="chat:typing")
        assert m["data"] == {"typing": True} and m["from"] == {"user": "alice", "client": alice.client_id}
        assert "offset" not in m
        await alice.assert_silent(0.3)          # not echoed to the sender
        # Not stored: history does not have it.
        h = await bob.request({"op": "history", "channel": "chat:typing"})
        assert h["publications"] == [] and h["offset"] == 0
        # Rate limit: 3 per second.
        for i in range(6):
            await alice.send({"op": "signal", "id": i, "channel": "chat:typing", "data": i})
        errors = [m for m in await drain(alice, 0.5) if m["op"] == "error"]
        assert errors and all(e["code"] == 115 for e in errors)
        seen = [m for m in await drain(bob, 0.5) if m["op"] == "signal"]
        assert 1 <= len(seen) <= 4
        # Not subscribed, or a namespace without signals: refused.
        m = await bob.request({"op": "signal", "id": 9, "channel": "chat:other", "data": 1})
        assert m["op"] == "error" and m["code"] == 108
        await bob.subscribe("news")
        m = await bob.request({"op": "signal", "id": 10, "channel": "news", "data": 1})
        assert m["op"] == "error" and m["code"] == 116
        for c in (alice, bob):
            await c.close()
    run(go())


def test_direct_messages_and_personal_channels(make_broker):
    b = make_broker(*CHAT)

    async def go():
        alice = await user(b, "alice")
        bob = await user(b, "bob")
        carol = await user(b, "carol")
        for c in (alice, bob):
            await c.subscribe("dm:alice,bob")
        await alice.publish("dm:alice,bob", "hi bob")
        await bob.expect(op="pub", data="hi bob")
        await alice.expect(op="pub", data="hi bob")
        # History and recovery work as on any channel, for its users only.
        h = await bob.request({"op": "history", "channel": "dm:alice,bob"})
        assert [p["data"] for p in h["publications"]] == ["hi bob"]
        for op in ({"op": "subscribe", "channel": "dm:alice,bob"}, {"op": "history", "channel": "dm:alice,bob"},
                   {"op": "publish", "channel": "dm:alice,bob", "data": "x"}):
            m = await carol.request({"id": 7, **op})
            assert m["op"] == "error" and m["code"] == 114, m
        # Personal channel: every connection of alice gets what the server sends.
        alice2 = await user(b, "alice", "msgpack")
        for c in (alice, alice2):
            await c.subscribe("user:alice")
        m = await bob.request({"op": "subscribe", "id": 8, "channel": "user:alice"})
        assert m["op"] == "error" and m["code"] == 114
        m = await alice.request({"op": "publish", "id": 9, "channel": "user:alice", "data": "me"})
        assert m["op"] == "error" and m["code"] == 114, "personal channels are the server's to publish"
        b.publish_rest("user:alice", {"notice": "order shipped"})
        for c in (alice, alice2):
            m = await c.expect(op="pub", channel="user:alice")
            assert m["data"] == {"notice": "order shipped"} and "from" not in m
        for c in (alice, alice2, bob, carol):
            await c.close()
    run(go())


def test_replies_reactions_and_threads(make_broker):
    b = make_broker(*CHAT)

    async def go():
        alice = await user(b, "alice")
        bob = await user(b, "bob")
        for c in (alice, bob):
            await c.subscribe("thread:t")
        root = await alice.publish("thread:t", "question?")
        await drain(alice)
        await drain(bob)
        r = await bob.request({"op": "publish", "id": 2, "channel": "thread:t", "data": "answer",
                               "reply_to": root["offset"]})
        assert r["op"] == "published"
        await bob.expect(op="pub", data="answer")
        m = await alice.expect(op="pub", data="answer")
        assert m["reply_to"] == root["offset"] and m["from"]["user"] == "bob" and isinstance(m["ts"], int)
        assert "kind" not in m
        await alice.send({"op": "publish", "id": 3, "channel": "thread:t", "data": "+1", "reply_to": root["offset"],
                          "kind": "reaction"})
        m = await bob.expect(op="pub", data="+1")
        assert m["kind"] == "reaction" and m["reply_to"] == root["offset"]
        await alice.expect(op="published", id=3)
        await alice.expect(op="pub", data="+1")
        await alice.publish("thread:t", "unrelated")
        await alice.send({"op": "publish", "id": 4, "channel": "thread:t", "data": "answer (edited)",
                          "reply_to": root["offset"], "kind": "edit"})
        await drain(alice)
        await drain(bob)
        # Bad references and kinds.
        for bad, why in (({"reply_to": 999}, "future offset"), ({"reply_to": 0}, "zero"),
                         ({"reply_to": "1"}, "string"), ({"kind": "reaction"}, "reaction without reply_to"),
                         ({"kind": "shout", "reply_to": 1}, "unknown kind")):
            e = await bob.request({"op": "publish", "id": 5, "channel": "thread:t", "data": "x", **bad})
            assert e["op"] == "error" and e["code"] == 103 and e["id"] == 5, (why, e)
        # The thread: the publications replying to the root, oldest first.
        t = await bob.request({"op": "history", "id": 6, "channel": "thread:t", "thread": root["offset"]})
        assert [p["data"] for p in t["publications"]] == ["answer", "+1", "answer (edited)"]
        assert [p.get("kind") for p in t["publications"]] == [None, "reaction", "edit"]
        r = requests.get(b.url("/api/channels/thread:t/history"), params={"thread": root["offset"]}, timeout=5).json()
        assert len(r["publications"]) == 3
        # History replays replies with their fields.
        h = await bob.request({"op": "history", "channel": "thread:t"})
        assert h["publications"][1]["reply_to"] == root["offset"]
        # REST publications can reply too.
        r = requests.post(b.url("/api/publish"), json={"channel": "thread:t", "data": "bot",
                                                       "reply_to": root["offset"], "kind": "message"}, timeout=5)
        assert r.status_code == 200
        r = requests.post(b.url("/api/publish"), json={"channel": "thread:t", "data": "x", "reply_to": 10 ** 6},
                          timeout=5)
        assert r.status_code == 400 and r.json()["error"]["code"] == 103
        for c in (alice, bob):
            await c.close()
    run(go())
