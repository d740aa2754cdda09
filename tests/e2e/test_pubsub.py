"""Publish/subscribe over WebSocket and REST: replies, fan-out, ordering, values."""
import asyncio
import json
import re

import msgpack
import requests

from conftest import close_all, connect, connect_many, run, same, ws_connect

# Values both encodings must carry unchanged (docs/protocol.md §2.2).
VALUES = [
    None, True, False, 0, 1, -1, -128, -129, 255, 256, 65536, -2**31 - 1, 2**32,
    2**63 - 1, -2**63, 2**63 - 2, -2**63 + 1,
    0.1, 2.0, -0.5, 1e300, -2.5e-300, 3.141592653589793, 1.5e-7, 123456789.125,
    "", "hello", "ünïcødé ✓ 日本語 🎉", "line\nbreak \"quoted\" \\ \t tab \u0001", "x" * 300,
    [], {}, [[]], {"a": {}}, [1, "two", 3.0, None, True, {"k": [False]}],
    {"nested": {"deep": {"deeper": [1, 2, {"x": "y"}]}}, "ü": "ñ", "": 0, "n": None},
]


def test_connect_reply(broker):
    async def main():
        for enc in ("json", "msgpack", None):
            c = await ws_connect(broker, enc)
            await c.send({"op": "connect", "id": "abc"})
            m = await c.next()
            assert m["op"] == "connected" and m["id"] == "abc"
            assert re.fullmatch(r"[0-9a-f]{16}", m["client"]), m
            assert m["version"] == "0.1.0" and m["ping_interval"] == 25
            assert set(m) == {"op", "id", "client", "version", "ping_interval"}
            await c.close()
        # Client ids are per connection.
        cs = await connect_many(broker, 5)
        assert len({c.client_id for c in cs}) == 5
        await close_all(cs)
        # Without id the reply has no id.
        c = await ws_connect(broker, "json")
        await c.send({"op": "connect"})
        m = await c.next()
        assert m["op"] == "connected" and "id" not in m
        await c.close()
    run(main())


def test_connected_ping_interval_follows_config(make_broker):
    b = make_broker(ping_interval="0")

    async def main():
        c = await connect(b)
        c2 = await ws_connect(b)
        await c2.send({"op": "connect", "id": 7})
        m = await c2.next()
        assert m["ping_interval"] == 0
        await close_all([c, c2])
    run(main())


def test_subscribe_unsubscribe_replies(broker):
    async def main():
        for enc in ("json", "msgpack"):
            c = await connect(broker, enc)
            ch = "chat:room-" + enc
            m = await c.request({"op": "subscribe", "id": 2, "channel": ch})
            epoch = m.pop("epoch")
            assert re.fullmatch(r"[0-9a-f]{16}", epoch), epoch
            assert m == {"op": "subscribed", "id": 2, "channel": ch, "offset": 0}
            m = await c.request({"op": "unsubscribe", "id": 3, "channel": ch})
            assert m == {"op": "unsubscribed", "id": 3, "channel": ch}
            # Without id.
            m = await c.request({"op": "subscribe", "channel": ch})
            assert re.fullmatch(r"[0-9a-f]{16}", m.pop("epoch"))
            assert m == {"op": "subscribed", "channel": ch, "offset": 0}
            m = await c.request({"op": "unsubscribe", "channel": ch})
            assert m == {"op": "unsubscribed", "channel": ch}
            await c.close()
    run(main())


def test_subscribe_offset_is_last_offset(broker):
    async def main():
        p = await connect(broker)
        for i in range(1, 4):
            m = await p.publish("news", i)
            assert m["offset"] == i
        c = await connect(broker, "msgpack")
        m = await c.request({"op": "subscribe", "id": 9, "channel": "news"})
        assert re.fullmatch(r"[0-9a-f]{16}", m.pop("epoch"))
        assert m == {"op": "subscribed", "id": 9, "channel": "news", "offset": 3}
        await p.publish("news", "four")
        m = await c.next()
        assert m["op"] == "pub" and m["offset"] == 4 and m["data"] == "four"
        await close_all([p, c])
    run(main())


def test_publish_ws_reply_and_pub(broker):
    async def main():
        for enc in ("json", "msgpack"):
            ch = "pubws-" + enc
            sub = await connect(broker, enc)
            await sub.subscribe(ch)
            pub = await connect(broker, enc)
            m = await pub.request({"op": "publish", "id": 4, "channel": ch, "data": {"text": "hello"}})
            assert m == {"op": "published", "id": 4, "channel": ch, "offset": 1}
            m = await sub.next()
            assert set(m) == {"op", "channel", "offset", "ts", "data", "from"}, m
            assert m["op"] == "pub" and m["channel"] == ch and m["offset"] == 1
            assert m["data"] == {"text": "hello"}
            # The sender, as the broker knows it: an anonymous connection has only its client id.
            assert m["from"] == {"client": pub.client_id}, m
            assert isinstance(m["ts"], int) and abs(m["ts"] / 1000 - __import__("time").time()) < 60
            # The publisher is not subscribed: it gets nothing more.
            await pub.assert_silent(0.2)
            # publish with data null is valid.
            m = await pub.request({"op": "publish", "id": 5, "channel": ch, "data": None})
            assert m == {"op": "published", "id": 5, "channel": ch, "offset": 2}
            m = await sub.expect(op="pub", offset=2)
            assert "data" in m and m["data"] is None
            await close_all([sub, pub])
    run(main())


def test_publish_rest_json_and_msgpack(broker):
    async def main():
        js = await connect(broker, "json")
        mp = await connect(broker, "msgpack")
        await js.subscribe("rest:a")
        await mp.subscribe("rest:a")
        data = {"x": [1, 2.5, "ü"], "y": None}
        r = requests.post(broker.url("/api/publish"), json={"channel": "rest:a", "data": data}, timeout=5)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json() == {"channel": "rest:a", "offset": 1}
        r = requests.post(broker.url("/api/publish"), data=msgpack.packb({"channel": "rest:a", "data": data}),
                          headers={"Content-Type": "application/msgpack"}, timeout=5)
        assert r.status_code == 200 and r.json() == {"channel": "rest:a", "offset": 2}
        r = requests.post(broker.url("/api/publish"), data=json.dumps({"channel": "rest:a", "data": 3}),
                          headers={"Content-Type": "application/json; charset=utf-8"}, timeout=5)
        assert r.status_code == 200 and r.json() == {"channel": "rest:a", "offset": 3}
        for c in (js, mp):
            for off, want in ((1, data), (2, data), (3, 3)):
                m = await c.expect(op="pub", channel="rest:a", offset=off)
                assert same(m["data"], want), m
        await close_all([js, mp])
    run(main())


def test_fanout_both_encodings_identical_values(broker):
    async def main():
        subs = await connect_many(broker, 25, "json") + await connect_many(broker, 25, "msgpack")
        await asyncio.gather(*[s.subscribe("fan:out") for s in subs])
        pub = await connect(broker, "msgpack")
        for v in VALUES:
            await pub.send({"op": "publish", "channel": "fan:out", "data": v})
        replies = await pub.collect(len(VALUES))
        assert [r["offset"] for r in replies] == list(range(1, len(VALUES) + 1))

        async def check(s):
            got = await s.collect(len(VALUES))
            for i, (m, v) in enumerate(zip(got, VALUES)):
                assert m["op"] == "pub" and m["channel"] == "fan:out" and m["offset"] == i + 1, m
                assert same(m["data"], v), (s.enc, m["data"], v)
            await s.assert_silent(0.05)
            return [m["ts"] for m in got]
        ts = await asyncio.gather(*[check(s) for s in subs])
        # One publication has one ts, whoever receives it.
        assert all(t == ts[0] for t in ts)
        await close_all(subs + [pub])
    run(main())


def test_json_values_published_over_json(broker):
    """The same values published from a JSON client reach a msgpack client identically."""
    async def main():
        mp = await connect(broker, "msgpack")
        js = await connect(broker, "json")
        await mp.subscribe("v")
        await js.subscribe("v")
        pub = await connect(broker, "json")
        for v in VALUES:
            await pub.publish("v", v)
        for c in (mp, js):
            for v in VALUES:
                m = await c.expect(op="pub")
                assert same(m["data"], v), (c.enc, m["data"], v)
        await close_all([mp, js, pub])
    run(main())


def test_json_float_text_form(broker):
    """JSON shows floats in their shortest exact form, always with a '.' or exponent."""
    async def main():
        c = await connect(broker, "json")
        await c.subscribe("f")
        p = await connect(broker, "msgpack")
        for v in (2.0, 0.1, -0.0, 1e300, 100.0, 5e-324):
            await p.publish("f", v)
        frames = []
        while len(frames) < 6:
            raw = await asyncio.wait_for(c.ws.recv(), 5)
            frames += raw.split("\n")
        texts = [re.search(r'"data":(.*?),"from":', f).group(1) for f in frames]
        assert texts[0] == "2.0" and texts[1] == "0.1" and texts[2] == "-0.0"
        assert float(texts[3]) == 1e300 and re.search(r"[.eE]", texts[3])
        assert texts[4] == "100.0"
        assert float(texts[5]) == 5e-324
        await close_all([c, p])
    run(main())


def test_offsets_contiguous_per_channel(broker):
    async def main():
        c = await connect(broker)
        for ch in ("a", "b", "ns:a"):
            await c.subscribe(ch)
        pub = await connect(broker, "msgpack")
        order = ["a", "b", "a", "ns:a", "a", "b", "ns:a", "a"]
        for ch in order:
            await pub.send({"op": "publish", "channel": ch, "data": ch})
        replies = await pub.collect(len(order))
        seen = {}
        for ch, r in zip(order, replies):
            seen[ch] = seen.get(ch, 0) + 1
            assert r == {"op": "published", "channel": ch, "offset": seen[ch]}
        # REST continues the same sequence.
        assert broker.publish_rest("a", 0) == {"channel": "a", "offset": 5}
        got = await c.collect(len(order) + 1)
        per = {}
        for m in got:
            per.setdefault(m["channel"], []).append(m["offset"])
        assert per == {"a": [1, 2, 3, 4, 5], "b": [1, 2], "ns:a": [1, 2]}
        await close_all([c, pub])
    run(main())


def test_ordering_of_rapid_publications(broker):
    N = 600

    async def main():
        subs = [await connect(broker, "json"), await connect(broker, "msgpack")]
        for s in subs:
            await s.subscribe("rapid")
        pub = await connect(broker, "json")
        for i in range(N):
            await pub.send({"op": "publish", "channel": "rapid", "data": {"i": i}})
        replies = await pub.collect(N)
        assert [r["offset"] for r in replies] == list(range(1, N + 1))
        for s in subs:
            got = await s.collect(N)
            assert [m["offset"] for m in got] == list(range(1, N + 1))
            assert [m["data"]["i"] for m in got] == list(range(N))
        await close_all(subs + [pub])
    run(main())


def test_unsubscribe_stops_delivery(broker):
    async def main():
        c = await connect(broker)
        other = await connect(broker, "msgpack")
        await c.subscribe("u:one")
        await c.subscribe("u:two")
        await other.subscribe("u:one")
        pub = await connect(broker)
        await pub.publish("u:one", 1)
        await c.expect(op="pub", channel="u:one", data=1)
        await c.unsubscribe("u:one")
        for i in range(5):
            await pub.publish("u:one", 10 + i)
        await pub.publish("u:two", "still")
        m = await c.next()
        assert m["op"] == "pub" and m["channel"] == "u:two" and m["data"] == "still", m
        await c.assert_silent(0.2)
        # The other subscriber of u:one still gets everything.
        got = await other.collect(6)
        assert [m["data"] for m in got] == [1, 10, 11, 12, 13, 14]
        # Resubscribing works and reports the current offset.
        m = await c.subscribe("u:one")
        assert m["offset"] == 6
        await close_all([c, other, pub])
    run(main())


def test_unsubscribe_reply_is_last_for_channel(broker):
    """No pub for a channel follows the unsubscribed reply, even with publications in flight."""
    async def main():
        c = await connect(broker)
        await c.subscribe("race")
        pub = await connect(broker, "msgpack")
        for i in range(200):
            await pub.send({"op": "publish", "channel": "race", "data": i})
        await c.send({"op": "unsubscribe", "id": 77, "channel": "race"})
        await pub.collect(200)
        await pub.publish("race", "after")
        seen_reply = False
        offsets = []
        for _ in range(202):
            try:
                m = await c.next(1.0)
            except AssertionError:
                break
            if m["op"] == "unsubscribed":
                assert m == {"op": "unsubscribed", "id": 77, "channel": "race"}
                seen_reply = True
            else:
                assert not seen_reply, "pub after unsubscribed: %r" % m
                offsets.append(m["offset"])
        assert seen_reply
        assert offsets == list(range(1, len(offsets) + 1))
        await close_all([c, pub])
    run(main())


def test_two_channels_one_client(broker):
    async def main():
        for enc in ("json", "msgpack"):
            c = await connect(broker, enc)
            await c.subscribe("two:a")
            await c.subscribe("two:b")
            broker.publish_rest("two:a", "A")
            broker.publish_rest("two:b", "B")
            m1, m2 = await c.collect(2)
            assert (m1["channel"], m1["data"]) == ("two:a", "A")
            assert (m2["channel"], m2["data"]) == ("two:b", "B")
            await c.unsubscribe("two:a")
            await c.unsubscribe("two:b")
            await c.close()
    run(main())


def test_publisher_receives_own_pub(broker):
    async def main():
        for enc in ("json", "msgpack"):
            c = await connect(broker, enc)
            ch = "self-" + enc
            await c.subscribe(ch)
            await c.send({"op": "publish", "id": 5, "channel": ch, "data": [1]})
            # The published reply comes first, then the own pub (§3 publish).
            m1, m2 = await c.collect(2)
            assert m1 == {"op": "published", "id": 5, "channel": ch, "offset": 1}
            assert m2["op"] == "pub" and m2["offset"] == 1 and m2["data"] == [1]
            await c.assert_silent(0.1)
            await c.close()
    run(main())


def test_subscribe_reply_before_pub(broker):
    """While a channel gets publications continuously, a new subscriber sees its reply first."""
    async def main():
        pub = await connect(broker, "msgpack")
        stop = asyncio.Event()

        async def publish_loop():
            i = 0
            while not stop.is_set() and i < 200000:
                await pub.send({"op": "publish", "channel": "busy", "data": i})
                i += 1
                if i % 20 == 0:
                    await asyncio.sleep(0.002)
            return i
        task = asyncio.ensure_future(publish_loop())

        async def drain():
            while True:
                try:
                    await pub.next(0.5)
                except AssertionError:
                    return
        drainer = asyncio.ensure_future(drain())
        for enc in ("json", "msgpack") * 5:
            c = await ws_connect(broker, enc)
            await c.send({"op": "connect", "id": 1})
            await c.send({"op": "subscribe", "id": 2, "channel": "busy"})
            m = await c.next()
            assert m["op"] == "connected"
            m = await c.next()
            assert m["op"] == "subscribed" and m["id"] == 2, m
            first = m["offset"]
            m = await c.next()
            assert m["op"] == "pub" and m["offset"] == first + 1, (first, m)
            await c.close()
        stop.set()
        await task
        await drainer
        await pub.close()
    run(main())


def test_request_id_echo(broker):
    async def main():
        for enc in ("json", "msgpack"):
            c = await ws_connect(broker, enc)
            ids = ["s", "", "x" * 128, "ü-id", 0, -1, 2**63 - 1, -2**63, 42]
            for i in ids:
                m = await c.request({"op": "ping", "id": i})
                assert same(m, {"op": "pong", "id": i}), (i, m)
            m = await c.request({"op": "connect", "id": "conn"})
            assert m["op"] == "connected" and m["id"] == "conn"
            for i in ids:
                m = await c.request({"op": "subscribe", "id": i, "channel": "ids"})
                assert m["op"] == "subscribed" and same(m["id"], i), m
                await c.send({"op": "publish", "id": i, "channel": "ids", "data": 1})
                got = await c.collect(2)
                m = [x for x in got if x["op"] == "published"][0]
                assert same(m["id"], i), m
                assert [x["op"] for x in got if x is not m] == ["pub"]
                m = await c.request({"op": "unsubscribe", "id": i, "channel": "ids"})
                assert same(m, {"op": "unsubscribed", "id": i, "channel": "ids"}), m
                # Errors carry the id too.
                m = await c.request({"op": "unsubscribe", "id": i, "channel": "ids"})
                assert m["op"] == "error" and m["code"] == 108 and same(m["id"], i), m
            await c.close()
    run(main())


def test_ping_pong_before_and_after_connect(broker):
    async def main():
        for enc in ("json", "msgpack", None):
            c = await ws_connect(broker, enc)
            m = await c.request({"op": "ping", "id": 5})
            assert m == {"op": "pong", "id": 5}
            m = await c.request({"op": "ping"})
            assert m == {"op": "pong"}
            m = await c.request({"op": "connect", "id": 1})
            assert m["op"] == "connected"
            m = await c.request({"op": "ping", "id": "p"})
            assert m == {"op": "pong", "id": "p"}
            await c.close()
    run(main())


def test_no_subprotocol_speaks_json(broker):
    async def main():
        c = await ws_connect(broker, None)
        assert c.ws.subprotocol is None
        await c.send({"op": "connect", "id": 1})
        raw = await asyncio.wait_for(c.ws.recv(), 5)
        assert isinstance(raw, str)
        assert json.loads(raw)["op"] == "connected"
        await c.subscribe("np")
        broker.publish_rest("np", {"a": 1})
        raw = await asyncio.wait_for(c.ws.recv(), 5)
        assert isinstance(raw, str) and json.loads(raw)["data"] == {"a": 1}
        # A JSON connection accepts JSON in a binary frame too.
        await c.ws.send(b'{"op":"ping","id":3}')
        assert json.loads(await asyncio.wait_for(c.ws.recv(), 5)) == {"op": "pong", "id": 3}
        await c.close()
    run(main())


def test_subprotocol_negotiation(broker):
    async def main():
        c = await ws_connect(broker, "json", subprotocols=["herald.msgpack", "herald.json"])
        assert c.ws.subprotocol == "herald.msgpack"
        c.enc = "msgpack"
        await c.ping()
        await c.close()
        c = await ws_connect(broker, "json", subprotocols=["other.thing", "herald.json"])
        assert c.ws.subprotocol == "herald.json"
        await c.ping()
        await c.close()
        c = await ws_connect(broker, "msgpack")
        assert c.ws.subprotocol == "herald.msgpack"
        await c.send({"op": "connect", "id": 1})
        raw = await asyncio.wait_for(c.ws.recv(), 5)
        assert isinstance(raw, bytes) and msgpack.unpackb(raw)["op"] == "connected"
        await c.close()
    run(main())


def test_fragmented_messages_reassembled(broker):
    async def main():
        for enc in ("json", "msgpack"):
            c = await connect(broker, enc)
            await c.subscribe("frag")
            data = {"text": "ü" * 3000, "n": list(range(500))}
            msg = {"op": "publish", "id": 9, "channel": "frag", "data": data}
            if enc == "json":
                text = json.dumps(msg, ensure_ascii=False)
                # Split inside a multi-byte character's neighbourhood: fragments are str, so
                # split by characters.
                parts = [text[i:i + 700] for i in range(0, len(text), 700)]
            else:
                blob = msgpack.packb(msg)
                parts = [blob[i:i + 700] for i in range(0, len(blob), 700)]
            assert len(parts) > 5
            await c.send_raw(parts)
            m1, m2 = sorted(await c.collect(2), key=lambda m: m["op"] != "published")
            assert m1["op"] == "published" and m1["id"] == 9
            assert m2["op"] == "pub" and m2["data"] == data
            # Tiny fragments too.
            small = encode_parts(enc, {"op": "ping", "id": "tiny"}, 1)
            await c.send_raw(small)
            assert await c.next() == {"op": "pong", "id": "tiny"}
            await c.close()
    run(main())


def encode_parts(enc, msg, size):
    if enc == "json":
        t = json.dumps(msg)
        return [t[i:i + size] for i in range(0, len(t), size)]
    b = msgpack.packb(msg)
    return [b[i:i + size] for i in range(0, len(b), size)]


def test_large_message_under_limit(broker):
    """A message close to the 64 KiB default is accepted and relayed."""
    async def main():
        c = await connect(broker, "json")
        await c.subscribe("big")
        data = "y" * 60000
        await c.send({"op": "publish", "id": 1, "channel": "big", "data": data})
        m1, m2 = sorted(await c.collect(2), key=lambda m: m["op"] != "published")
        assert m1 == {"op": "published", "id": 1, "channel": "big", "offset": 1}
        assert m2["op"] == "pub" and m2["data"] == data
        await c.close()
    run(main())


def test_health(broker):
    r = broker.health()
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ok" and body["version"] == "0.1.0"
