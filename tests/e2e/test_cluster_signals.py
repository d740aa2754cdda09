"""Signals across Herald nodes on the Redis engine (docs/cluster.md#signals):
a `signal` sent on one node reaches the channel's subscribers on every node
once, with the same `from` and data, never the sending connection, never
stored and taking no offset; the checks (subscribed, signals on, the rate
per connection) stay on the node that received it; Redis down answers 133;
a node without subscribers of the channel gets nothing; a malformed message
published into the channel's fan-out key by someone else is logged and
dropped, and the node keeps serving. Uses the predefined `chat` namespace,
which the redis engine now predefines too. Each test starts its own
redis-server."""
import asyncio
import socket
import time

import requests

from conftest import run, ws_connect, hs256_token, drain, reply
from test_cluster import Redis, engine_args, pytestmark, redis, wait_ready  # noqa: F401 (fixtures)

SECRET = b"0123456789abcdef0123456789abcdef-secret"
ARGS = ("--hmac-secret", SECRET.decode(), "--ns", "news.history_size=10")


def node(make_broker, redis_, *extra):
    b = make_broker(*engine_args(redis_), *ARGS, *extra)
    wait_ready(b)
    return b


async def user(b, name, enc="json"):
    c = await ws_connect(b, enc)
    m = await c.request({"op": "connect", "id": 1, "token": hs256_token(SECRET, name)})
    assert m["op"] == "connected" and m["user"] == name, m
    c.client_id = m["client"]
    return c


def signals(msgs):
    return [m for m in msgs if m["op"] == "signal"]


async def publish(c, channel, data):
    m = await reply(c, {"op": "publish", "channel": channel, "data": data})
    assert m["op"] == "published", m
    return m


def history(b, channel):
    r = requests.get(b.url("/api/channels/%s/history" % channel), timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def redis_cmd(redis_, *args):
    """One command over a raw RESP socket; returns the first reply line."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", redis_.port), 2) as s:
        s.sendall(out)
        buf = b""
        deadline = time.monotonic() + 2
        while b"\r\n" not in buf and time.monotonic() < deadline:
            buf += s.recv(4096)
    return buf.split(b"\r\n")[0]


def numsub(redis_, channel):
    """How many Redis subscriptions (one per node with subscribers) the channel's fan-out key has."""
    with socket.create_connection(("127.0.0.1", redis_.port), 2) as s:
        key = b"herald:f:" + channel.encode()
        s.sendall(b"*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$%d\r\n%s\r\n" % (len(key), key))
        buf = b""
        deadline = time.monotonic() + 2
        while buf.count(b"\r\n") < 4 and time.monotonic() < deadline:
            buf += s.recv(4096)
    return int(buf.split(b"\r\n")[3][1:])


def test_cross_node_once_not_to_sender_not_stored(make_broker, redis):
    a, b, c = (node(make_broker, redis) for _ in range(3))

    async def go():
        alice = await user(a, "alice")
        alice2 = await user(a, "alice")            # the sender's user on another connection: gets it
        bob = await user(b, "bob", "msgpack")
        carol = await user(c, "carol")
        for x in (alice, alice2, bob, carol):
            await x.subscribe("chat:room")
        pub = await publish(alice, "chat:room", {"text": "hi"})
        before = history(c, "chat:room")
        assert before["offset"] == pub["offset"] and len(before["publications"]) == 1, before
        for x in (alice, alice2, bob, carol):
            await drain(x, 0.3)                    # joins and the publication
        # A `from` the client makes up is replaced by the broker's.
        await alice.send({"op": "signal", "channel": "chat:room", "data": {"typing": True, "n": [1, 2.5, None]},
                          "from": {"user": "mallory"}})
        want = {"op": "signal", "channel": "chat:room", "from": {"user": "alice", "client": alice.client_id},
                "data": {"typing": True, "n": [1, 2.5, None]}}
        for x in (alice2, bob, carol):
            got = signals(await drain(x, 0.5))
            assert got == [want], got             # once, on every node, the same from and data
        assert signals(await drain(alice, 0.3)) == []   # never back to the sending connection
        # Not stored, no offset: history unchanged, and the next publication takes the next offset.
        assert history(b, "chat:room") == before
        assert "offset" not in want
        nxt = await publish(carol, "chat:room", {"text": "after"})
        assert nxt["offset"] == pub["offset"] + 1
        # A signal from another node, in the other direction.
        await carol.send({"op": "signal", "channel": "chat:room", "data": "c"})
        for x in (alice, alice2, bob):
            got = signals(await drain(x, 0.5))
            assert [(m["from"], m["data"]) for m in got] == [({"user": "carol", "client": carol.client_id}, "c")], got
        assert signals(await drain(carol, 0.3)) == []
        # A node without subscribers of the channel is not subscribed to it in Redis, so gets nothing.
        assert numsub(redis, "chat:room") == 3
        await carol.unsubscribe("chat:room")
        deadline = time.monotonic() + 5
        while numsub(redis, "chat:room") != 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await bob.send({"op": "signal", "channel": "chat:room", "data": "b"})
        assert [m["data"] for m in signals(await drain(alice, 0.5))] == ["b"]
        assert signals(await drain(carol, 0.3)) == []
        assert history(a, "chat:room")["offset"] == nxt["offset"]
    run(go())


def test_refusals_stay_with_the_receiving_node(make_broker, redis):
    a = node(make_broker, redis, "--ns", "chat.signal_rate=3")
    b = node(make_broker, redis)

    async def go():
        alice, bob = await user(a, "alice"), await user(b, "bob")
        for x in (alice, bob):
            await x.subscribe("chat:rate")
        await drain(alice, 0.3)
        await drain(bob, 0.3)
        # 3 a second for each connection, counted on the node that received them.
        for i in range(6):
            await alice.send({"op": "signal", "id": i, "channel": "chat:rate", "data": i})
        errors = [m for m in await drain(alice, 0.5) if m["op"] == "error"]
        assert errors and all(e["code"] == 115 for e in errors), errors
        seen = [m["data"] for m in signals(await drain(bob, 0.5))]
        assert len(seen) == 6 - len(errors) and 3 <= len(seen) <= 4 and seen == sorted(seen), seen
        # Not subscribed; a namespace with signals off; no data.
        m = await reply(bob, {"op": "signal", "channel": "chat:other", "data": 1})
        assert m["op"] == "error" and m["code"] == 108, m
        await bob.subscribe("news:x")
        m = await reply(bob, {"op": "signal", "channel": "news:x", "data": 1})
        assert m["op"] == "error" and m["code"] == 116, m
        m = await reply(bob, {"op": "signal", "channel": "chat:rate"})
        assert m["op"] == "error" and m["code"] == 103, m
        assert signals(await drain(alice, 0.3)) == []
    run(go())


def test_redis_down_refuses_with_133(make_broker, redis):
    a, b = node(make_broker, redis), node(make_broker, redis)

    async def go():
        alice, bob = await user(a, "alice"), await user(b, "bob")
        for x in (alice, bob):
            await x.subscribe("chat:down")
        await drain(alice, 0.3)
        redis.kill()
        deadline = time.monotonic() + 10
        while requests.get(a.url("/api/health/ready"), timeout=2).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        m = await reply(alice, {"op": "signal", "id": 7, "channel": "chat:down", "data": 1})
        assert m["op"] == "error" and m["code"] == 133 and "signal was not sent" in m["reason"], m
        assert signals(await drain(bob, 0.5)) == []
        await alice.ping()                         # the node keeps serving
        # Back: signals flow again (the subscriptions were made again).
        redis.start()
        wait_ready(a)
        wait_ready(b)
        deadline = time.monotonic() + 10
        while True:
            await alice.send({"op": "signal", "channel": "chat:down", "data": "again"})
            if [m["data"] for m in signals(await drain(bob, 0.3))] == ["again"]:
                break
            assert time.monotonic() < deadline
    run(go())


def test_malformed_fanout_messages_are_logged_and_dropped(make_broker, redis):
    a = node(make_broker, redis)

    async def go():
        alice, bob = await user(a, "alice"), await user(a, "bob")
        for x in (alice, bob):
            await x.subscribe("chat:g")
        await drain(alice, 0.3)
        await drain(bob, 0.3)
        garbage = [b"garbage", b"", b"S:", b"S:not json", b"S:[1,2]", b"S:{}", b'S:{"from":{"client":1},"data":1}',
                   b'S:{"from":{"client":"x","admin":true},"data":1}', b'S:{"from":{"client":"x"}}',
                   b"P", b"Pj:x", b"Px:1:1:c\n{}", b"-5:0123456789abcdef:x", b"7", b"7:short:x",
                   b"0:0123456789abcdef:x", b"\xff\xfe"]
        for g in garbage:
            assert redis_cmd(redis, "PUBLISH", "herald:f:chat:g", g) == b":1"
        assert a.wait_log(r"dropped a malformed message on redis channel herald:f:chat:g", 5)
        assert a.wait_log(r"dropped a malformed signal for chat:g from the engine", 5)
        # Nothing reached the subscribers, and the node serves as before.
        assert await drain(bob, 0.5) == []
        await alice.send({"op": "signal", "channel": "chat:g", "data": "real"})
        assert [m["data"] for m in signals(await drain(bob, 0.5))] == ["real"]
        p = await publish(alice, "chat:g", "still")
        assert p["offset"] == 1
        assert (await bob.next())["data"] == "still"
        # At most one line per 10 s for each kind: garbage cannot flood the log.
        assert len(a.log.split("dropped a malformed message")) - 1 == 1
        assert len(a.log.split("dropped a malformed signal")) - 1 == 1
        assert requests.get(a.url("/api/health/ready"), timeout=2).status_code == 200
    run(go())
