"""The operator views across Herald nodes on the Redis engine
(docs/cluster.md#operator-views): GET /api/channels/{channel} on a node with no
local subscriber answers the offset, epoch and history length the publishing
node sees, read from Redis; subscribers and presence members are summed over
every node, with this node's own figures under "node"; a node killed with -9
stops counting within the documented bound (2 x engine.presence_heartbeat plus
the 1 s flush); history trimmed by history_size shows the trimmed length; the
list pages over every channel Redis knows, by prefix, each once; Redis down
answers 133 / 503; the bad inputs answer as on one node. Each test starts its
own redis-server."""
import asyncio
import signal
import time

import requests

from conftest import Broker, run, ws_connect, hs256_token
from test_cluster import Redis, engine_args, pytestmark, redis, redis_cmd, rest_publish, wait_ready  # noqa: F401 (fixtures)

SECRET = b"0123456789abcdef0123456789abcdef-secret"
HEARTBEAT_MS = 300
FLUSH_S = 1.0
ARGS = ("--hmac-secret", SECRET.decode(), "--ns", "room.presence=on", "--ns", "room.presence_grace=0",
        "--ns", "room.history_size=5", "--ns", "quiet.history=off",
        "--engine-presence-heartbeat", "%dms" % HEARTBEAT_MS)


def node(make_broker, redis_, *extra):
    b = make_broker(*engine_args(redis_), *ARGS, *extra)
    wait_ready(b)
    return b


def stats(b, channel):
    r = requests.get(b.url("/api/channels/" + channel), timeout=5)
    return r.status_code, r.json()


def until(pred, timeout, step=0.05):
    """Polls @pred (returns a value or None) until it gives something, within @timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v is not None:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %.1fs" % timeout)
        time.sleep(step)


async def user(b, name):
    c = await ws_connect(b, "json")
    m = await c.request({"op": "connect", "id": 1, "token": hs256_token(SECRET, name)})
    assert m["op"] == "connected", m
    return c


async def subscribed(b, name, channel):
    c = await user(b, name)
    m = await c.request({"op": "subscribe", "id": 2, "channel": channel})
    assert m["op"] == "subscribed", m
    return c


def counted(b, channel, subs, members=None):
    """The answer once its cluster-wide subscribers (and members) are these, else None."""
    code, s = stats(b, channel)
    if code == 200 and s["subscribers"] == subs and (members is None or s["presence"] == members):
        return s
    return None


def test_position_and_history_from_any_node(make_broker, redis):
    """Published on A; B, which has no local subscriber and never saw the channel,
    answers the same offset, epoch and (trimmed) history length as A."""
    a, b = node(make_broker, redis), node(make_broker, redis)
    for i in range(8):
        assert rest_publish(a, "room:lobby", {"n": i}).json()["offset"] == i + 1
    ca, sa = stats(a, "room:lobby")
    cb, sb = stats(b, "room:lobby")
    assert ca == cb == 200, (sa, sb)
    assert sb["last_offset"] == 8 and len(sb["epoch"]) == 16 and sb["epoch"] == sa["epoch"], sb
    # history_size = 5: the stream was trimmed to 5 entries on every node's view.
    assert sb["history"]["length"] == 5 and sb["history"]["bytes"] > 0, sb
    assert sa["history"] == {"length": 5, "bytes": sa["history"]["bytes"]} and sa["last_offset"] == 8
    assert sb["channel"] == "room:lobby" and sb["subscribers"] == 0 and sb["presence"] == 0
    # This node's own figures, labelled; B has nothing of the channel.
    assert sb["node"]["subscribers"] == 0 and sb["node"]["presence"] == 0 and len(sb["node"]["id"]) == 16
    assert sb["node"]["publications_per_second"] == 0 and sb["publications_per_second"] == 0
    assert sa["node"]["id"] != sb["node"]["id"]
    # The history endpoint agrees with the figures.
    h = requests.get(b.url("/api/channels/room:lobby/history"), timeout=5).json()
    assert [p["offset"] for p in h["publications"]] == [4, 5, 6, 7, 8] and h["epoch"] == sb["epoch"]
    # A namespace without history: null, as on one node, but the position is there.
    assert rest_publish(a, "quiet:x", {"n": 1}).json()["offset"] == 1
    code, q = stats(b, "quiet:x")
    assert code == 200 and q["history"] is None and q["last_offset"] == 1 and q["presence"] is None, q
    # Unknown everywhere: 404; a bad name: 400 (as on one node).
    code, e = stats(b, "room:never")
    assert code == 404 and e["error"]["code"] == 104, e
    assert requests.get(b.url("/api/channels/bad%20name"), timeout=5).status_code == 400


def test_subscribers_and_members_summed_over_nodes(make_broker, redis):
    """Subscribers on A and B are summed; each node's own count is under "node";
    unsubscribing and disconnecting are counted down within the flush."""
    a, b, c = (node(make_broker, redis) for _ in range(3))

    async def main():
        xs = [await subscribed(a, "u%d" % i, "room:sum") for i in range(3)]
        ys = [await subscribed(b, "v%d" % i, "room:sum") for i in range(2)]
        s = until(lambda: counted(c, "room:sum", 5, 5), 3 * FLUSH_S)
        assert s["node"]["subscribers"] == 0 and s["node"]["presence"] == 0, s
        sa = until(lambda: counted(a, "room:sum", 5, 5), 1)
        assert sa["node"]["subscribers"] == 3 and sa["node"]["presence"] == 3, sa
        sb = until(lambda: counted(b, "room:sum", 5, 5), 1)
        assert sb["node"]["subscribers"] == 2, sb
        # One leaves on A, every one leaves on B (the channel is freed there).
        m = await xs[0].request({"op": "unsubscribe", "id": 9, "channel": "room:sum"})
        assert m["op"] == "unsubscribed", m
        for y in ys:
            await y.close()
        s = until(lambda: counted(c, "room:sum", 2), 3 * FLUSH_S)
        assert s["subscribers"] == 2, s
        for x in xs:
            await x.close()
        until(lambda: counted(c, "room:sum", 0, 0), 3 * FLUSH_S)
    run(main())


def test_killed_node_stops_counting(make_broker, redis, tmp_path):
    """A node killed with -9 leaves its subscriber count in Redis; it stops
    counting once its lease ends: within 2 heartbeats of its last beat (plus
    slack). It is not counted again."""
    b = node(make_broker, redis)
    a = Broker(tmp_path, [*engine_args(redis), *ARGS], name="victim").start()
    try:
        wait_ready(a)

        async def main():
            xs = [await subscribed(a, "k%d" % i, "room:kill") for i in range(2)]
            y = await subscribed(b, "w", "room:kill")
            until(lambda: counted(b, "room:kill", 3), 3 * FLUSH_S)
            a.send_signal(signal.SIGKILL)
            a.wait(5)
            t0 = time.monotonic()
            until(lambda: counted(b, "room:kill", 1), 2 * HEARTBEAT_MS / 1000 + 2, step=0.02)
            took = time.monotonic() - t0
            assert took <= 2 * HEARTBEAT_MS / 1000 + 1, took
            for _ in range(5):
                assert counted(b, "room:kill", 1) is not None
                time.sleep(0.1)
            s = requests.get(b.url("/api/channels/room:kill"), timeout=5).json()
            assert s["node"]["subscribers"] == 1, s
            await y.close()
            del xs
        run(main())
    finally:
        a.stop(signal.SIGKILL)


def test_stalled_node_counts_again_after_its_lease(make_broker, redis):
    """A node stalled (SIGSTOP) past its lease stops counting; once it runs again it
    finds its lease gone at its next beat, takes a new id and writes its counts again."""
    a, b = node(make_broker, redis), node(make_broker, redis)

    async def main():
        xs = [await subscribed(a, "s%d" % i, "room:stall") for i in range(2)]
        y = await subscribed(b, "t", "room:stall")
        old = until(lambda: counted(a, "room:stall", 3), 3 * FLUSH_S)["node"]["id"]
        a.send_signal(signal.SIGSTOP)
        try:
            # B reaps A's lease at a beat after it ended: then A's field is dropped.
            until(lambda: counted(b, "room:stall", 1), 2 * HEARTBEAT_MS / 1000 + 2)
            time.sleep(3 * HEARTBEAT_MS / 1000)
        finally:
            a.send_signal(signal.SIGCONT)
        s = until(lambda: counted(b, "room:stall", 3), HEARTBEAT_MS / 1000 + FLUSH_S + 2)
        assert s["node"]["subscribers"] == 1
        sa = until(lambda: counted(a, "room:stall", 3), 1)
        assert sa["node"]["id"] != old and sa["node"]["subscribers"] == 2, sa
        for c in xs + [y]:
            await c.close()
        until(lambda: counted(b, "room:stall", 0), 3 * FLUSH_S)
    run(main())


def test_restarted_redis_counts_again(make_broker, tmp_path):
    """Redis restarted without its data: each node writes its counts again under a
    new id, so the sum is right again; while Redis is down: 133 / 503."""
    r = Redis(tmp_path).start()
    try:
        a, b = node(make_broker, r), node(make_broker, r)

        async def main():
            xs = [await subscribed(a, "r%d" % i, "room:re") for i in range(2)]
            until(lambda: counted(b, "room:re", 2), 3 * FLUSH_S)
            port = r.port
            r.kill()
            for path in ("/api/channels/room:re", "/api/channels?prefix=room:"):
                resp = until(lambda: (lambda x: x if x.status_code == 503 else None)(
                    requests.get(b.url(path), timeout=5)), 5)
                assert resp.json()["error"]["code"] == 133, resp.text
            r2 = Redis(tmp_path, port=port).start()
            try:
                wait_ready(a)
                wait_ready(b)
                s = until(lambda: counted(b, "room:re", 2), 3 * FLUSH_S + 2)
                assert s["node"]["subscribers"] == 0
            finally:
                for x in xs:
                    await x.close()
                r2.kill()
        run(main())
    finally:
        r.kill()


def test_list_pages_every_channel_once(make_broker, redis):
    """The list names every channel Redis knows with the prefix, on a node that
    has none of them, with the cluster's figures; pages follow next_cursor to
    null and list each once; a prefix with glob characters matches literally."""
    a, b = node(make_broker, redis), node(make_broker, redis)
    names = ["room:pg%02d" % i for i in range(23)]
    for n in names:
        assert rest_publish(a, n, {"x": 1}).status_code == 200
    assert rest_publish(a, "room:pg05", {"x": 2}).json()["offset"] == 2
    assert rest_publish(a, "quiet:other", {"x": 1}).status_code == 200
    seen, cursor, pages = [], None, 0
    while True:
        params = {"prefix": "room:pg", "limit": 5}
        if cursor is not None:
            params["cursor"] = cursor
        p = requests.get(b.url("/api/channels"), params=params, timeout=5).json()
        assert len(p["channels"]) <= 5, p
        seen += p["channels"]
        pages += 1
        cursor = p["next_cursor"]
        if cursor is None:
            break
        assert pages < 50
    assert sorted(s["channel"] for s in seen) == names
    by = {s["channel"]: s for s in seen}
    assert by["room:pg05"]["last_offset"] == 2 and by["room:pg00"]["last_offset"] == 1
    assert by["room:pg05"]["history"]["length"] == 2 and "node" in by["room:pg05"]
    # No prefix: the other namespace too; sys:stats (the node's own) is not listed.
    p = requests.get(b.url("/api/channels"), params={"limit": 1000}, timeout=5).json()
    got = {s["channel"] for s in p["channels"]}
    assert set(names) | {"quiet:other"} <= got and not any(n.startswith("sys:") for n in got), got
    # Glob characters in the prefix are literal.
    p = requests.get(b.url("/api/channels"), params={"prefix": "room:pg*"}, timeout=5).json()
    assert p == {"channels": [], "next_cursor": None}, p
    p = requests.get(b.url("/api/channels"), params={"prefix": "room:pg0?"}, timeout=5).json()
    assert p["channels"] == [] and p["next_cursor"] is None, p
    # Bad input answers as on one node.
    assert requests.get(b.url("/api/channels"), params={"limit": 0}, timeout=5).status_code == 400
    assert requests.get(b.url("/api/channels"), params={"cursor": "x"}, timeout=5).status_code == 400
    # A cursor from nowhere is a SCAN position: it answers, it does not crash.
    p = requests.get(b.url("/api/channels"), params={"cursor": 12345678901}, timeout=5)
    assert p.status_code == 200 and isinstance(p.json()["channels"], list)


def test_list_over_a_big_keyspace(make_broker, redis):
    """Among 100,000 other keys a page looks at a bounded number (about 10,000) and may
    come back short, even empty, with a next_cursor; following it to null lists every
    matching channel once."""
    b = node(make_broker, redis)
    fill = ("for i = 1, 100000 do redis.call('SET', 'filler:' .. i, 'x') end "
            "for i = 1, 3 do redis.call('HSET', 'herald:m:room:big' .. i, 'offset', i, 'epoch', '0123456789abcdef') end "
            "return 1")
    assert redis_cmd(redis.port, "EVAL", fill, "0").startswith(b":1")
    # A key that looks like a channel's meta but is not a hash is not a channel.
    assert redis_cmd(redis.port, "SET", "herald:m:room:bigfake", "x").startswith(b"+OK")
    seen, cursor, pages, short = [], None, 0, 0
    while True:
        params = {"prefix": "room:big", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        t0 = time.monotonic()
        r = requests.get(b.url("/api/channels"), params=params, timeout=5)
        assert r.status_code == 200 and time.monotonic() - t0 < 2, r.text
        p = r.json()
        assert len(p["channels"]) <= 2
        seen += [(c["channel"], c["last_offset"]) for c in p["channels"]]
        cursor = p["next_cursor"]
        pages += 1
        if cursor is None:
            break
        short += len(p["channels"]) < 2
        assert pages < 100
    assert sorted(seen) == [("room:big%d" % i, i) for i in range(1, 4)], seen
    # 100,000 keys at about 10,000 a page: at least 10 pages, at most 2 of them full.
    assert pages >= 10 and short >= 8, (pages, short)


def test_sys_channels_stay_this_nodes(make_broker, redis):
    """sys:stats is each node's own: answered from the node, as on one node."""
    a = node(make_broker, redis)
    time.sleep(1.2)
    code, s = stats(a, "sys:stats")
    assert code == 200 and "node" not in s and s["channel"] == "sys:stats", s
    code, e = stats(a, "sys:nothing")
    assert code == 404, e


def test_admin_page_feed_names_the_node(make_broker, redis):
    """sys:stats carries the node's id and says its figures are this node's."""
    a = node(make_broker, redis)

    async def main():
        c = await user(a, "ops")
        m = await c.request({"op": "subscribe", "id": 2, "channel": "sys:stats"})
        assert m["op"] == "subscribed", m
        while True:
            p = await c.next(timeout=3)
            if p.get("op") == "pub":
                break
        assert p["data"]["node"]["scope"] == "node" and len(p["data"]["node"]["id"]) == 16, p["data"]
        # The page shows it: the node's id and that its figures are this node's.
        page = requests.get(a.url("/admin"), timeout=5).text
        assert 'id="node-box"' in page and "figures: this node's" in page and "d.node.id" in page
        await c.close()
    run(main())
