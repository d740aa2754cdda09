"""The commerce adapter across Herald nodes on the Redis engine
(docs/cluster.md#commerce): an order created on node A read and moved on nodes B
and C; the stock deltas and the notifications (the order's channel, user:{owner},
the admin channel sys:orders) reaching subscribers on every node once, at the
offsets the answer names; a race for the last units spread over three nodes that
never oversells; the lifecycle's refusals with LMDB's codes, fields and reasons;
a cancel sent twice at once on two nodes giving stock back once; order ids and
payment event ids deduplicated across nodes; Redis killed answering 133 / 503 on
every route, then the orders and stock all there once it is back; the script
loaded again after SCRIPT FLUSH; the order.created / order.status webhook events
of orders made on two nodes equal to an LMDB node's, and kept in Redis across its
restart, none for what was refused or failed. Each test
starts its own redis-server. test_commerce.py runs the one-node suite on both
engines."""
import hashlib
import hmac
import json
import random
import threading
import time

import requests

from conftest import run
from test_cluster import Redis, engine_args, pytestmark, redis, redis_cmd, wait_ready  # noqa: F401 (fixtures)
from test_commerce import HOOKS, ON, WHSEC, api, create, ev, move, stock_state, sub, user
from test_webhooks import SECRET as WH_SECRET, receiver, verify  # noqa: F401 (a fixture)


def nodes(make_broker, redis_, n, *extra):
    out = [make_broker(*engine_args(redis_), *ON, *extra) for _ in range(n)]
    for b in out:
        wait_ready(b)
    return out


def hook(b, event):
    body = json.dumps(event).encode()
    t = int(time.time())
    sig = hmac.new(WHSEC.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    r = requests.post(b.url("/api/commerce/payments"), data=body, timeout=10,
                      headers={"Content-Type": "application/json", "Herald-Signature": "t=%d,v1=%s" % (t, sig)})
    return r.status_code, r.json()


async def pubs_until(c, channels, n, timeout=5.0):
    """The next @n publications @c receives on any of @channels (other messages skipped)."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, ("only", got)
        m = await c.next(max(0.1, deadline - time.monotonic()))
        if m.get("op") == "pub" and m.get("channel") in channels:
            got.append(m)
    return got


def both(fn, args_a, args_b):
    """Runs fn(*args_a) and fn(*args_b) at once in two threads; their results."""
    out = [None, None]
    go = threading.Barrier(2)

    def run_one(i, args):
        go.wait(5)
        out[i] = fn(*args)

    ts = [threading.Thread(target=run_one, args=(i, a)) for i, a in enumerate((args_a, args_b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return out


def test_order_made_on_one_node_is_read_and_moved_on_others(make_broker, redis):
    """Created on A, read and moved on B and C; every node's subscribers get the
    same stock deltas at the same offsets, and the notifications at the offsets
    the answers name, whichever node their connection is on."""
    a, b, c = nodes(make_broker, redis, 3)

    async def main():
        pages = []
        for n in (a, b, c):
            p = await user(n, "viewer")
            assert (await sub(p, "stock:all"))["op"] == "subscribed"
            pages.append(p)
        alice = await user(b, "alice")                      # the owner, on node B
        assert (await sub(alice, "orders:1042#alice"))["op"] == "subscribed"
        assert (await sub(alice, "user:alice"))["op"] == "subscribed"
        admin = await user(c, "ops", role="admin")          # the admins' feed, on node C
        assert (await sub(admin, "sys:orders"))["op"] == "subscribed"

        code, st = api(a, "PUT", "/api/commerce/stock", {"stock": {"MUG": 10, "TEE": 3}})
        assert code == 200 and st["stock"] == {"MUG": 10, "TEE": 3}, st
        code, made = create(a, "1042", "alice", [{"sku": "MUG", "qty": 2}, {"sku": "TEE", "qty": 1}])
        assert code == 200 and made["stock"] == {"MUG": 8, "TEE": 2} and made["offset"] == st["offset"] + 1, made
        assert [n["channel"] for n in made["notified"]] == ["orders:1042#alice", "user:alice", "sys:orders"], made
        assert redis_cmd(redis.port, "HEXISTS", "herald:so:stock:all", "1042") == b":1\r\n", "the order is in Redis"

        code, got = api(b, "GET", "/api/commerce/orders/1042")
        assert code == 200 and got["order"]["status"] == "PENDING" and got["order"]["owner"] == "alice", got
        assert got["order"]["lines"] == [{"sku": "MUG", "qty": 2}, {"sku": "TEE", "qty": 1}]
        assert got["order"]["reserved"] is True and got["changes"] == [] and got["offset"] == made["offset"], got
        code, paid = move(b, "1042", "PAID")
        assert code == 200 and paid["from"] == "PENDING" and paid["stock"] == {} and paid["changes"] == [], paid
        tracking = {"carrier": "DHL", "tracking_number": "JD0001"}
        for n, s in ((c, "PROCESSING"), (a, "PICKING"), (b, "PACKED")):
            assert move(n, "1042", s)[0] == 200
        code, shipped = move(c, "1042", "SHIPPED", tracking)
        assert code == 200 and shipped["order"]["tracking"] == tracking, shipped
        assert [h["status"] for h in shipped["order"]["history"]] == ["PENDING", "PAID", "PROCESSING", "PICKING",
                                                                      "PACKED", "SHIPPED"]
        assert shipped["order"]["history"][-1]["tracking"] == tracking
        code, res = move(a, "1042", "CANCELLED")             # too late once shipped: as one node answers
        assert code == 409 and res["error"]["code"] == 123 and res["error"]["allowed"] == ["DELIVERED", "REFUNDED"]
        code, adj = api(c, "POST", "/api/commerce/stock", {"adjust": {"TEE": 4, "MUG": -1}})
        assert code == 200 and adj["stock"] == {"TEE": 6, "MUG": 7}, adj

        # The same deltas at the same offsets on every node.
        views = []
        for p in pages:
            ds = await pubs_until(p, {"stock:all"}, 3)
            views.append([(m["offset"], m["data"]["changes"]) for m in ds])
        assert views[0] == views[1] == views[2], views
        assert [o for o, _ in views[0]] == [st["offset"], made["offset"], adj["offset"]]
        assert {ch["key"]: ch["value"] for ch in views[0][2][1]} == {"TEE": 6, "MUG": 7}
        assert stock_state(b)[0] == {"MUG": 7, "TEE": 6}
        assert stock_state(a)[1] == adj["offset"]

        # The owner (node B) and the admins (node C) hear each step once, at the offsets named.
        mine = await pubs_until(alice, {"orders:1042#alice", "user:alice"}, 12)
        for ch in ("orders:1042#alice", "user:alice"):
            seq = [m for m in mine if m["channel"] == ch]
            assert [m["data"]["status"] for m in seq] == ["PENDING", "PAID", "PROCESSING", "PICKING", "PACKED",
                                                          "SHIPPED"], seq
            assert [m["offset"] for m in seq] == list(range(1, 7))
        first = [m for m in mine if m["channel"] == "orders:1042#alice"][0]["data"]
        assert first == {"type": "order_created", "order": "1042", "owner": "alice", "status": "PENDING",
                         "lines": [{"sku": "MUG", "qty": 2}, {"sku": "TEE", "qty": 1}],
                         "at": got["order"]["created"]}, first
        ship = [m for m in mine if m["channel"] == "user:alice"][5]["data"]
        assert ship["tracking"] == tracking and ship["from"] == "PACKED", ship
        ops = await pubs_until(admin, {"sys:orders"}, 6)
        assert [m["data"]["status"] for m in ops] == ["PENDING", "PAID", "PROCESSING", "PICKING", "PACKED", "SHIPPED"]
        assert ops[0]["offset"] == made["notified"][2]["offset"]
        assert ops[1]["offset"] == paid["notified"][2]["offset"] == ops[0]["offset"] + 1
        await alice.assert_silent(0.2)
        # The timeline is the order channel's history, in Redis: any node reads it.
        r = requests.get(a.url("/api/channels/orders:1042%23alice/history"), timeout=5)
        assert [p["data"]["status"] for p in r.json()["publications"]][-1] == "SHIPPED", r.text
        for x in pages + [alice, admin]:
            await x.close()

    run(main())


def test_race_over_nodes_never_oversells(make_broker, redis):
    """Shoppers on three nodes race for the last units: every order is all or
    none, the stock never goes below zero and ends at initial - sold, and every
    node's subscriber ends with that stock."""
    ns = nodes(make_broker, redis, 3)
    initial = {"A": 20, "B": 12, "C": 5}
    assert api(ns[0], "PUT", "/api/commerce/stock", {"stock": initial})[0] == 200
    results, lock = [], threading.Lock()

    def shopper(n):
        rnd = random.Random(n)
        s = requests.Session()
        for k in range(6):
            lines = [{"sku": sku, "qty": rnd.randint(1, 3)} for sku in rnd.sample(sorted(initial), rnd.randint(1, 3))]
            r = s.post(ns[(n + k) % 3].url("/api/commerce/orders"),
                       json={"id": "r%d-%d" % (n, k), "owner": "u%d" % n, "lines": lines}, timeout=20)
            assert r.status_code in (200, 409), r.text
            if r.status_code == 409:
                assert r.json()["error"]["code"] == 124 and r.json()["error"]["short"], r.text
            with lock:
                results.append((r.status_code, lines))

    threads = [threading.Thread(target=shopper, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 12 * 6
    sold = {k: 0 for k in initial}
    for status, lines in results:
        if status == 200:
            for line in lines:
                sold[line["sku"]] += line["qty"]
    want = {k: initial[k] - sold[k] for k in initial}
    assert all(v >= 0 for v in want.values()), (initial, sold)
    for n in ns:
        assert stock_state(n)[0] == want
    assert any(s == 409 for s, _ in results), "the race should run some SKU out"
    made = sum(1 for s, _ in results if s == 200)
    assert redis_cmd(redis.port, "HLEN", "herald:so:stock:all") == b":%d\r\n" % made, "one row per order made"


WALK = [
    ("create", "w1", "alice", [{"sku": "A", "qty": 2}]),
    ("create", "w1", "bob", [{"sku": "A", "qty": 1}]),        # the id is taken: 125
    ("create", "w2", "bob", [{"sku": "A", "qty": 9}, {"sku": "Z", "qty": 1}]),   # 124, both short
    ("move", "w1", "SHIPPED"), ("move", "w1", "REFUNDED"), ("move", "nope", "PAID"),
    ("get", "nope"), ("move", "w1", "PAID"), ("move", "w1", "PAID"), ("move", "w1", "PROCESSING"),
    ("move", "w1", "PICKING"), ("move", "w1", "CANCELLED"), ("move", "w1", "PACKED"), ("move", "w1", "REFUNDED"),
    ("move", "w1", "RETURNED"), ("adjust", {"A": -4}), ("adjust", {"A": 2, "Q": -1}), ("adjust", {"A": -3}),
    ("create", "w3", "carol", [{"sku": "A", "qty": 1}]), ("move", "w3", "CANCELLED"), ("move", "w3", "CANCELLED"),
    ("move", "w3", "PAYMENT_FAILED"),
]


def walk(targets):
    """Runs WALK, step i on targets[i % len]; the answers without times and offsets."""
    api(targets[0], "PUT", "/api/commerce/stock", {"stock": {"A": 3}})
    out = []
    for i, step in enumerate(WALK):
        b = targets[i % len(targets)]
        if step[0] == "create":
            code, res = create(b, step[1], step[2], step[3])
        elif step[0] == "move":
            code, res = move(b, step[1], step[2])
        elif step[0] == "get":
            code, res = api(b, "GET", "/api/commerce/orders/" + step[1])
        else:
            code, res = api(b, "POST", "/api/commerce/stock", {"adjust": step[1]})
        if code == 200:
            o = res.get("order", {})
            res = {"status": o.get("status"), "from": res.get("from"), "restored": res.get("restored"),
                   "stock": res.get("stock"), "notified": [n["channel"] for n in res.get("notified", [])],
                   "history": [h["status"] for h in o.get("history", [])], "reserved": o.get("reserved")}
        out.append((step, code, res))
    return out


def test_lifecycle_refusals_match_lmdb(make_broker, redis):
    """The same walk of creates, moves and adjustments, refusals included, on one
    LMDB node and spread over two Redis nodes: the same codes, fields and reasons."""
    lmdb = make_broker(*ON)
    r = nodes(make_broker, redis, 2)
    want, got = walk([lmdb]), walk(r)
    for w, g in zip(want, got):
        assert w == g, (w, g)
    codes = [c for _, c, _ in got]
    assert codes.count(409) >= 8 and 404 in codes and codes.count(200) >= 8, got


def test_cancel_twice_on_two_nodes_restores_once(make_broker, redis):
    """A cancel sent at the same moment to two nodes: one moves the order and
    gives its stock back, the other is refused (123, the order is CANCELLED);
    the stock comes back exactly once. Ten orders, so the race is run often."""
    a, b = nodes(make_broker, redis, 2)
    assert api(a, "PUT", "/api/commerce/stock", {"stock": {"A": 30}})[0] == 200
    for i in range(10):
        assert create(a if i % 2 else b, "c%d" % i, "alice", [{"sku": "A", "qty": 3}])[0] == 200
    assert stock_state(a)[0] == {"A": 0}
    for i in range(10):
        (ca, ra), (cb, rb) = both(move, (a, "c%d" % i, "CANCELLED"), (b, "c%d" % i, "CANCELLED"))
        assert sorted([ca, cb]) == [200, 409], (ra, rb)
        ok, no = (ra, rb) if ca == 200 else (rb, ra)
        assert ok["restored"] == {"A": 3} and no["error"]["code"] == 123 and no["error"]["status"] == "CANCELLED"
        assert no["error"]["allowed"] == [], no
    assert stock_state(b)[0] == {"A": 30}
    assert api(b, "GET", "/api/commerce/orders/c3")[1]["order"]["reserved"] is False


def test_ids_are_deduplicated_across_nodes(make_broker, redis):
    """An order id sent to two nodes at once makes one order (the other: 125); a
    payment provider's event delivered to two nodes, at once or retried on
    another, applies once and is answered "duplicate" elsewhere, with the
    stock of a failed payment given back once."""
    a, b = nodes(make_broker, redis, 2, *HOOKS[len(ON):])
    assert api(a, "PUT", "/api/commerce/stock", {"stock": {"A": 10}})[0] == 200
    for i in range(5):
        (ca, ra), (cb, rb) = both(create, (a, "d%d" % i, "alice", [{"sku": "A", "qty": 2}]),
                                  (b, "d%d" % i, "bob", [{"sku": "A", "qty": 2}]))
        assert sorted([ca, cb]) == [200, 409], (ra, rb)
        no = rb if ca == 200 else ra
        assert no["error"]["code"] == 125 and no["error"]["status"] == "PENDING", no
    assert stock_state(a)[0] == {"A": 0}
    for i in range(5):
        e = ev("evt_%d" % i, "payment.failed" if i % 2 else "payment.succeeded", "d%d" % i)
        (ca, ra), (cb, rb) = both(hook, (a, e), (b, e))
        assert ca == cb == 200, (ra, rb)
        assert sorted([bool(ra.get("duplicate")), bool(rb.get("duplicate"))]) == [False, True], (ra, rb)
        first = rb if ra.get("duplicate") else ra
        assert first["order"]["status"] == ("PAYMENT_FAILED" if i % 2 else "PAID"), first
        # A retry later, on either node: duplicate, nothing changes.
        code, again = hook(a if i % 2 else b, e)
        assert code == 200 and again["duplicate"] is True and again["changes"] == [], again
        assert again["event"]["outcome"] == first["event"]["outcome"]
    assert stock_state(b)[0] == {"A": 4}                    # d1 and d3 failed: 2 + 2 back, once each
    code, res = hook(b, ev("evt_ghost", "payment.succeeded", "ghost"))
    assert code == 200 and res["unmatched"] is True and [n["channel"] for n in res["notified"]] == ["sys:orders"]
    code, res = hook(a, ev("evt_ghost", "payment.succeeded", "ghost"))
    assert code == 200 and res["duplicate"] is True, res


def test_redis_down_answers_133_then_recovers(make_broker, redis):
    """Redis killed: every commerce route answers 503 with engine_unavailable and
    changes nothing; restarted (appendfsync always): the orders and stock are
    all there, and orders go on from where they were."""
    a, b = nodes(make_broker, redis, 2, *HOOKS[len(ON):])
    api(a, "PUT", "/api/commerce/stock", {"stock": {"A": 5}})
    assert create(b, "k1", "alice", [{"sku": "A", "qty": 2}])[0] == 200
    redis.kill()
    for n in (a, b):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and requests.get(n.url("/api/health/ready"), timeout=2).status_code == 200:
            time.sleep(0.05)
    calls = [("PUT", "/api/commerce/stock", {"stock": {"A": 1}}), ("POST", "/api/commerce/stock", {"adjust": {"A": 1}}),
             ("POST", "/api/commerce/orders", {"id": "k2", "owner": "bob", "lines": [{"sku": "A", "qty": 1}]}),
             ("POST", "/api/commerce/orders/k1/status", {"status": "PAID"}), ("GET", "/api/commerce/orders/k1", None)]
    for method, path, body in calls:
        for n in (a, b):
            code, res = api(n, method, path, body)
            assert code == 503 and res["error"]["code"] == 133, (path, res)
            assert "redis engine is unavailable" in res["error"]["reason"], res
    code, res = hook(a, ev("evt_down", "payment.succeeded", "k1"))
    assert code == 503 and res["error"]["code"] == 133, res
    # Bad input is still refused first, as 400, without Redis.
    code, res = api(a, "POST", "/api/commerce/orders", {"id": "k 3", "owner": "bob", "lines": []})
    assert code == 400 and res["error"]["code"] == 103, res

    redis.start()
    wait_ready(a)
    wait_ready(b)
    code, res = api(a, "GET", "/api/commerce/orders/k1")
    assert code == 200 and res["order"]["status"] == "PENDING" and res["order"]["reserved"] is True, res
    assert stock_state(b)[0] == {"A": 3}
    assert api(b, "GET", "/api/commerce/orders/k2")[0] == 404, "nothing was written while Redis was down"
    code, res = hook(b, ev("evt_down", "payment.succeeded", "k1"))   # the provider's retry, once Redis is back
    assert code == 200 and res["order"]["status"] == "PAID" and not res.get("duplicate"), res
    code, res = create(a, "k2", "bob", [{"sku": "A", "qty": 3}])
    assert code == 200 and res["stock"] == {"A": 0}, res
    code, res = create(b, "k4", "bob", [{"sku": "A", "qty": 1}])
    assert code == 409 and res["error"]["code"] == 124, res


def test_script_flush_loads_the_commerce_script_again(make_broker, redis):
    """SCRIPT FLUSH empties Redis' script cache: the next commerce request's
    EVALSHA gets NOSCRIPT and is sent again as EVAL, answered as usual."""
    a, b = nodes(make_broker, redis, 2)
    assert api(a, "PUT", "/api/commerce/stock", {"stock": {"A": 2}})[0] == 200
    assert redis_cmd(redis.port, "SCRIPT", "FLUSH") == b"+OK\r\n"
    code, res = create(b, "f1", "alice", [{"sku": "A", "qty": 2}])
    assert code == 200 and res["stock"] == {"A": 0}, res
    assert redis_cmd(redis.port, "SCRIPT", "FLUSH") == b"+OK\r\n"
    code, res = move(a, "f1", "CANCELLED")
    assert code == 200 and res["restored"] == {"A": 2}, res


# -- order.* webhook events (docs/cluster.md#commerce) -----------------------------------

def order_hook_conf(tmp_path, url, name="orders.conf", feed=None):
    """[webhook biz] that wants the order events, and a [webhook pubs] that wants
    none of them (publications of no namespace): it must get nothing. Many
    attempts: the fault test keeps the receiver failing for seconds. With @feed,
    a [webhook feed] posting there the publications of the stock channel, the
    orders' channels and user:{owner} (and of sys:orders, which is never sent)."""
    conf = tmp_path / name
    conf.write_text(
        "[webhook biz]\nurl = %s\nsecret = %s\nevents = order.created, order.status\n"
        "timeout = 2s\nretry_base = 50ms\nretry_max = 200ms\nmax_attempts = 1000\n\n"
        "[webhook pubs]\nurl = %s\nsecret = %s\nevents = publication\nnamespaces = none\n"
        % (url, WH_SECRET, url, WH_SECRET))
    if feed:
        with conf.open("a") as f:
            f.write("\n[webhook feed]\nurl = %s\nsecret = %s\nevents = publication\n"
                    "namespaces = stock, orders, user, sys\ntimeout = 2s\n" % (feed, WH_SECRET))
    return conf


def publications(evs):
    """{channel: [(offset, data without times)]}, each channel's in the order
    received, after checking its event ids and offsets rise."""
    out = {}
    for e in evs:
        assert e["type"] == "publication", e
        out.setdefault(e["channel"], []).append(e)
    for chan, es in out.items():
        assert [int(e["id"]) for e in es] == sorted(int(e["id"]) for e in es), chan
        assert [e["offset"] for e in es] == sorted(e["offset"] for e in es), chan
    return {chan: [(e["offset"], {k: v for k, v in e["data"].items() if k != "at"}) for e in es]
            for chan, es in out.items()}


def order_walk(x, y):
    """Orders created and moved on nodes @x and @y (the same node for LMDB), with
    refusals between that must queue nothing. Returns how many events the
    acknowledged changes make."""
    assert api(x, "PUT", "/api/commerce/stock", {"stock": {"MUG": 10, "TEE": 3}})[0] == 200
    assert create(x, "o1", "alice", [{"sku": "MUG", "qty": 2}, {"sku": "TEE", "qty": 1}])[0] == 200
    assert create(y, "o2", "bob", [{"sku": "TEE", "qty": 2}])[0] == 200
    assert create(y, "o1", "bob", [{"sku": "MUG", "qty": 1}])[0] == 409            # id taken: no event
    assert create(x, "o3", "carol", [{"sku": "TEE", "qty": 9}])[0] == 409          # short: no event
    code, res = hook(y, ev("evt_1", "payment.succeeded", "o1"))
    assert code == 200 and res["order"]["status"] == "PAID", res
    assert hook(x, ev("evt_1", "payment.succeeded", "o1"))[1].get("duplicate") is True    # no event
    assert hook(x, ev("evt_2", "payment.succeeded", "nope"))[1].get("unmatched") is True  # no order: no event
    assert move(x, "o1", "PROCESSING")[0] == 200
    assert move(y, "o1", "DELIVERED")[0] == 409                                     # refused: no event
    assert move(y, "o1", "PICKING")[0] == 200
    assert move(x, "o1", "PACKED")[0] == 200
    assert move(y, "o1", "SHIPPED", {"carrier": "DHL", "tracking_number": "JD0001"})[0] == 200
    assert move(x, "o2", "CANCELLED")[0] == 200                                     # gives TEE back
    assert move(y, "o2", "CANCELLED")[0] == 409                                     # once only: no event
    assert move(x, "o1", "DELIVERED", {})[0] == 200                                 # an empty tracking object
    assert api(y, "GET", "/api/commerce/orders/o1")[0] == 200                       # a read: no event
    return 9


def untimed_order_events(evs):
    """The order events without what differs by nature between two runs: the
    event ids, "ts" and "at" (clocks)."""
    out = []
    for e in evs:
        assert e["type"] in ("order.created", "order.status"), e
        out.append({k: v for k, v in e.items() if k not in ("id", "ts", "at")})
    return out


def test_order_events_from_two_nodes_are_lmdbs(make_broker, redis, receiver, tmp_path):
    """[webhook] events = order.created, order.status under the redis engine:
    orders created and moved on two nodes give one event per acknowledged create
    or change of status, in the order Redis applied them (one order per webhook,
    as on LMDB), signed, with LMDB's fields and values (times aside); refusals,
    duplicates, unmatched payments and reads give none; a webhook that wants
    other events gets none of these."""
    rl, rr, fl, fr = receiver(), receiver(), receiver(), receiver()
    lm = make_broker("--config", str(order_hook_conf(tmp_path, rl.url, "lmdb.conf", fl.url)), *HOOKS, name="lmdb")
    n = order_walk(lm, lm)
    a, b = nodes(make_broker, redis, 2, "--config", str(order_hook_conf(tmp_path, rr.url, feed=fr.url)),
                 *HOOKS[len(ON):], "--engine-webhook-lease", "1s")
    t0 = int(time.time() * 1000)
    assert n == order_walk(a, b)
    want = rl.wait_events(lambda e: len(e) >= n, timeout=20)
    got = rr.wait_events(lambda e: len(e) >= n, timeout=20)
    time.sleep(0.5)                                              # anything more would come now
    want, got = rl.events(), rr.events()
    assert len(want) == n, want
    assert len(got) == n and len({e["id"] for e in got}) == n, got
    assert untimed_order_events(got) == untimed_order_events(want), (got, want)
    assert [(e["type"], e["order"], e["status"]) for e in got] == [
        ("order.created", "o1", "PENDING"), ("order.created", "o2", "PENDING"), ("order.status", "o1", "PAID"),
        ("order.status", "o1", "PROCESSING"), ("order.status", "o1", "PICKING"), ("order.status", "o1", "PACKED"),
        ("order.status", "o1", "SHIPPED"), ("order.status", "o2", "CANCELLED"), ("order.status", "o1", "DELIVERED")
    ]
    ids = [int(e["id"]) for e in got]
    assert ids == sorted(ids), "queued in the order Redis ran the scripts"
    assert got[2]["payment_event"] == "evt_1" and got[6]["tracking"]["carrier"] == "DHL", got
    assert got[-2]["restored"] == {"TEE": 2} and got[-1]["tracking"] == {}, got
    # Times are Redis' (this machine's clock: the same one here), "at" the order's "updated".
    code, o1 = api(b, "GET", "/api/commerce/orders/o1")
    assert got[-1]["at"] == o1["order"]["updated"] and all(e["at"] >= t0 - 1000 for e in got), (got, o1)
    for headers, body, _ in rr.requests + rl.requests:
        verify(headers, body)
    # The publications go to the webhooks that want them, from the same script,
    # as on LMDB: the stock deltas (the set, two creates, the cancel's restore)
    # and each change's notification on its order's channel and user:{owner}.
    npub = 4 + 2 * 9
    fl.wait_events(lambda e: len(e) >= npub, timeout=20)
    fr.wait_events(lambda e: len(e) >= npub, timeout=20)
    time.sleep(0.3)
    want_p, got_p = publications(fl.events()), publications(fr.events())
    assert got_p == want_p, (got_p, want_p)
    assert sorted(got_p) == ["orders:o1#alice", "orders:o2#bob", "stock:all", "user:alice", "user:bob"], got_p
    assert sum(len(v) for v in got_p.values()) == npub, got_p


def test_order_events_survive_redis_restart_and_none_for_what_failed(make_broker, redis, receiver, tmp_path):
    """Events queued while the receiver fails are in Redis with their orders: Redis
    killed (every commerce route 503, nothing queued) and restarted, they arrive,
    each once, followed by those of the changes made after; a cancel sent to two
    nodes at once gives one order.status event."""
    up = [False]
    rcv = receiver(behave=lambda n: 200 if up[0] else 503)
    a, b = nodes(make_broker, redis, 2, "--config", str(order_hook_conf(tmp_path, rcv.url)), *HOOKS[len(ON):],
                 "--engine-webhook-lease", "1s")
    assert api(a, "PUT", "/api/commerce/stock", {"stock": {"A": 5}})[0] == 200
    assert create(b, "k1", "alice", [{"sku": "A", "qty": 2}])[0] == 200
    assert move(a, "k1", "PAID")[0] == 200
    redis.kill()
    for n in (a, b):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and requests.get(n.url("/api/health/ready"), timeout=2).status_code == 200:
            time.sleep(0.05)
    assert create(a, "k2", "bob", [{"sku": "A", "qty": 1}])[0] == 503
    assert move(b, "k1", "PROCESSING")[0] == 503
    assert hook(a, ev("evt_down", "payment.succeeded", "k1"))[0] == 503
    redis.start()
    wait_ready(a)
    wait_ready(b)
    assert create(a, "k3", "carol", [{"sku": "A", "qty": 1}])[0] == 200
    results = both(move, (a, "k3", "CANCELLED"), (b, "k3", "CANCELLED"))
    assert sorted(r[0] for r in results) == [200, 409], results
    up[0] = True
    rcv.wait_events(lambda e: len({x["id"] for x in e}) >= 4, timeout=20)
    time.sleep(0.5)
    first = {}
    for e in rcv.events():
        first.setdefault(e["id"], e)                             # at least once: repeats keep their id
    assert [(e["type"], e["order"], e["status"]) for e in first.values()] == [
        ("order.created", "k1", "PENDING"), ("order.status", "k1", "PAID"), ("order.created", "k3", "PENDING"),
        ("order.status", "k3", "CANCELLED")], list(first.values())
    assert list(first.values())[-1]["restored"] == {"A": 1}
