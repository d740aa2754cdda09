"""The commerce adapter (docs/adapters.md, docs/rest-api.md "Adapters: commerce"):
orders and their lifecycle, stock reserved all or none and restored once, the
notifications on the order's channel (its owner and admins only), the owner's
personal channel and the admin feed, bad input refused with nothing written, a
race for the last units that never oversells, persistence across a restart and
the [adapter commerce] configuration. The tests that take `engine_broker` run on
both engines: one LMDB node, and one node on the Redis engine
(test_cluster_commerce.py spreads them over several nodes)."""
import json
import random
import threading
import time

import requests

from conftest import connect, hs256_token, run, run_herald, ws_connect

SECRET = b"0123456789abcdef0123456789abcdef-commerce"
ON = ("--hmac-secret", SECRET.decode(), "--commerce", "on", "--rest-per-minute", "0")
LIFECYCLE = ["PAID", "PROCESSING", "PICKING", "PACKED", "SHIPPED", "DELIVERED", "RETURNED", "REFUNDED"]


def api(b, method, path, body=None):
    r = requests.request(method, b.url(path), json=body, timeout=10)
    return r.status_code, r.json()


def stock_state(b):
    code, body = api(b, "GET", "/api/channels/stock:all/state")
    assert code == 200, body
    return {i["key"]: i["value"] for i in body["items"]}, body["offset"]


def history(b, channel):
    r = requests.get(b.url("/api/channels/%s/history" % channel.replace("#", "%23")), timeout=10)
    assert r.status_code == 200, r.text
    return [p["data"] for p in r.json()["publications"]]


async def user(b, sub, **claims):
    c = await ws_connect(b)
    m = await c.request({"op": "connect", "id": 1, "token": hs256_token(SECRET, sub, **claims)})
    assert m["op"] == "connected", m
    return c


async def sub(c, channel):
    m = await c.request({"op": "subscribe", "id": c.new_id(), "channel": channel})
    return m


def create(b, oid, owner, lines):
    return api(b, "POST", "/api/commerce/orders", {"id": oid, "owner": owner, "lines": lines})


def move(b, oid, status, tracking=None):
    body = {"status": status}
    if tracking is not None:
        body["tracking"] = tracking
    return api(b, "POST", "/api/commerce/orders/%s/status" % oid, body)


def test_lifecycle_notifies_owner_order_channel_and_admins(engine_broker):
    b = engine_broker(*ON)

    async def main():
        alice, bob = await user(b, "alice"), await user(b, "bob")
        admin = await user(b, "ops", role="admin")
        assert (await sub(alice, "orders:1042#alice"))["op"] == "subscribed"
        assert (await sub(alice, "user:alice"))["op"] == "subscribed"
        m = await sub(bob, "orders:1042#alice")
        assert m["op"] == "error" and m["code"] == 114, m     # per-user filtering, by the broker
        assert (await sub(admin, "sys:orders"))["op"] == "subscribed"
        assert (await sub(admin, "orders:1042#alice"))["op"] == "subscribed"   # admins read every order

        assert api(b, "PUT", "/api/commerce/stock", {"stock": {"MUG": 10, "TEE": 3}})[0] == 200
        code, res = create(b, "1042", "alice", [{"sku": "MUG", "qty": 2}, {"sku": "TEE", "qty": 1}])
        assert code == 200, res
        assert res["order"]["status"] == "PENDING" and res["order"]["owner"] == "alice"
        assert res["stock"] == {"MUG": 8, "TEE": 2} and res["offset"] >= 2
        assert [n["channel"] for n in res["notified"]] == ["orders:1042#alice", "user:alice", "sys:orders"]
        assert res["notified"][0]["offset"] == 1 and res["notified"][1]["offset"] == 1, res

        tracking = {"carrier": "DHL", "tracking_number": "JD0001", "eta": "2026-12-05", "note": "fragile"}
        for st in LIFECYCLE:
            code, res = move(b, "1042", st, tracking if st == "SHIPPED" else None)
            assert code == 200, (st, res)
            assert res["order"]["status"] == st
        assert [h["status"] for h in res["order"]["history"]] == ["PENDING"] + LIFECYCLE
        assert res["order"]["tracking"] == tracking
        assert "restored" not in res                       # a refund or return gives no stock back
        assert stock_state(b)[0] == {"MUG": 8, "TEE": 2}

        want = ["PENDING"] + LIFECYCLE
        for c, chans in ((alice, ("orders:1042#alice", "user:alice")), (admin, ("sys:orders", "orders:1042#alice"))):
            got = {ch: [] for ch in chans}
            while any(len(v) < len(want) for v in got.values()):
                m = await c.next()
                if m.get("op") == "pub" and m["channel"] in got:
                    got[m["channel"]].append(m["data"])
            for ch, data in got.items():
                assert [d["status"] for d in data] == want, (ch, data)
                assert data[0]["type"] == "order_created" and data[0]["lines"][0] == {"sku": "MUG", "qty": 2}
                assert all(d["type"] == "order_status" and d["order"] == "1042" for d in data[1:])
                assert data[5]["tracking"] == tracking and data[5]["from"] == "PACKED"
        await bob.assert_silent(0.2)
        # The owner reads the timeline but may not write into it.
        m = await alice.request({"op": "publish", "id": 77, "channel": "orders:1042#alice",
                                 "data": {"type": "order_status", "status": "DELIVERED"}})
        assert m["op"] == "error" and m["code"] == 114, m
        # The order channel's history is its timeline.
        assert [d["status"] for d in history(b, "orders:1042#alice")] == want

    run(main())


def test_illegal_transitions_are_refused_with_the_allowed_ones(engine_broker):
    b = engine_broker(*ON)
    api(b, "PUT", "/api/commerce/stock", {"stock": {"A": 5}})
    assert create(b, "o1", "alice", [{"sku": "A", "qty": 1}])[0] == 200
    before = api(b, "GET", "/api/commerce/orders/o1")[1]["order"]
    cases = [("SHIPPED", "PENDING", ["PAID", "PAYMENT_FAILED", "CANCELLED"]),
             ("REFUNDED", "PENDING", ["PAID", "PAYMENT_FAILED", "CANCELLED"]),
             ("RETURNED", "PENDING", ["PAID", "PAYMENT_FAILED", "CANCELLED"])]
    for to, cur, allowed in cases:
        code, res = move(b, "o1", to)
        assert code == 409 and res["error"]["code"] == 123, res
        assert res["error"]["status"] == cur and res["error"]["allowed"] == allowed
    assert api(b, "GET", "/api/commerce/orders/o1")[1]["order"] == before
    assert len(history(b, "orders:o1#alice")) == 1
    for st in ("PAID", "PROCESSING", "PICKING"):
        assert move(b, "o1", st)[0] == 200
    code, res = move(b, "o1", "CANCELLED")                  # too late once picking
    assert code == 409 and res["error"]["allowed"] == ["PACKED", "REFUNDED"]
    assert move(b, "o1", "PACKED")[0] == 200
    for st in ("SHIPPED", "DELIVERED", "REFUNDED"):
        assert move(b, "o1", st)[0] == 200
    code, res = move(b, "o1", "RETURNED")                   # REFUNDED is final
    assert code == 409 and res["error"]["status"] == "REFUNDED" and res["error"]["allowed"] == []
    code, res = move(b, "nope", "PAID")
    assert code == 404 and res["error"]["code"] == 122
    code, res = api(b, "GET", "/api/commerce/orders/nope")
    assert code == 404 and res["error"]["code"] == 122


def test_reservation_is_all_or_none_and_restored_once(engine_broker):
    b = engine_broker(*ON)

    async def main():
        page = await connect(b)                             # a product page: anonymous, live availability
        m = await sub(page, "stock:all")
        assert m["op"] == "subscribed", m
        view = {k: {"value": v["value"], "version": v["version"]} for k, v in m.get("state", {}).items()}

        assert api(b, "PUT", "/api/commerce/stock", {"stock": {"A": 3, "B": 1}})[0] == 200
        code, res = create(b, "x1", "alice", [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 2}, {"sku": "C", "qty": 1}])
        assert code == 409 and res["error"]["code"] == 124, res
        assert res["error"]["short"] == [{"sku": "B", "wanted": 2, "available": 1},
                                         {"sku": "C", "wanted": 1, "available": 0}]
        assert stock_state(b)[0] == {"A": 3, "B": 1}       # nothing reserved
        assert api(b, "GET", "/api/commerce/orders/x1")[0] == 404

        assert create(b, "x2", "alice", [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}])[0] == 200
        assert stock_state(b)[0] == {"A": 1, "B": 0}
        code, res = move(b, "x2", "PAYMENT_FAILED")
        assert code == 200 and res["restored"] == {"A": 2, "B": 1}, res
        assert stock_state(b)[0] == {"A": 3, "B": 1}
        assert move(b, "x2", "CANCELLED")[0] == 409        # final: nothing restored twice
        assert stock_state(b)[0] == {"A": 3, "B": 1}

        assert create(b, "x3", "bob", [{"sku": "A", "qty": 3}])[0] == 200
        assert move(b, "x3", "PAID")[0] == 200
        assert move(b, "x3", "PROCESSING")[0] == 200
        code, res = move(b, "x3", "CANCELLED", {"note": "customer asked"})
        assert code == 200 and res["restored"] == {"A": 3}
        assert create(b, "x4", "bob", [{"sku": "A", "qty": 1}])[0] == 200
        assert move(b, "x4", "PAID")[0] == 200
        code, res = move(b, "x4", "REFUNDED")
        assert code == 200 and "restored" not in res
        final, offset = stock_state(b)
        assert final == {"A": 2, "B": 1}

        code, res = api(b, "POST", "/api/commerce/stock", {"adjust": {"A": -3}})
        assert code == 409 and res["error"]["code"] == 124 and res["error"]["short"][0]["sku"] == "A"
        code, res = api(b, "POST", "/api/commerce/stock", {"adjust": {"A": 5, "B": -1}})
        assert code == 200 and res["stock"] == {"A": 7, "B": 0}

        # The page's view, snapshot plus deltas, ends where the store is.
        while True:
            m = await page.next()
            assert m["op"] == "pub" and m["channel"] == "stock:all", m
            for ch in m["data"]["changes"]:
                view[ch["key"]] = {"value": ch["value"], "version": ch["version"]}
            if m["offset"] >= offset + 1:
                break
        assert {k: v["value"] for k, v in view.items()} == {"A": 7, "B": 0}

    run(main())


BAD = [
    ("PUT", "/api/commerce/stock", "not json", 400, 101),
    ("PUT", "/api/commerce/stock", [], 400, 101),
    ("PUT", "/api/commerce/stock", {}, 400, 103),
    ("PUT", "/api/commerce/stock", {"stock": {"A": -1}}, 400, 103),
    ("PUT", "/api/commerce/stock", {"stock": {"A": "5"}}, 400, 103),
    ("PUT", "/api/commerce/stock", {"stock": {"A": 1.5}}, 400, 103),
    ("PUT", "/api/commerce/stock", {"stock": {"bad sku": 1}}, 400, 103),
    ("POST", "/api/commerce/stock", {"adjust": []}, 400, 103),
    ("POST", "/api/commerce/orders", {"owner": "alice", "lines": [{"sku": "A", "qty": 1}]}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": "n1", "lines": [{"sku": "A", "qty": 1}]}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": "n1", "owner": "a#b", "lines": [{"sku": "A", "qty": 1}]}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": "n 1", "owner": "alice", "lines": [{"sku": "A", "qty": 1}]}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": "n1", "owner": "alice"}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": "n1", "owner": "alice", "lines": []}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": "n1", "owner": "alice", "lines": [{"sku": "A", "qty": -2}]}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": "n1", "owner": "alice", "lines": [{"sku": "A", "qty": 0}]}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": "n1", "owner": "alice", "lines": [{"sku": "A", "qty": "1"}]}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": "n1", "owner": "alice",
                                      "lines": [{"sku": "A", "qty": 1}, {"sku": "A", "qty": 1}]}, 400, 103),
    ("POST", "/api/commerce/orders", {"id": 7, "owner": "alice", "lines": [{"sku": "A", "qty": 1}]}, 400, 103),
    ("POST", "/api/commerce/orders/o1/status", {}, 400, 103),
    ("POST", "/api/commerce/orders/o1/status", {"status": "LOST"}, 400, 103),
    ("POST", "/api/commerce/orders/o1/status", {"status": "PAID", "tracking": "DHL"}, 400, 103),
    ("POST", "/api/commerce/orders/o1/status", {"status": "PAID", "tracking": {"colour": "red"}}, 400, 103),
    ("POST", "/api/commerce/orders/o1/status", {"status": "PAID", "tracking": {"carrier": 5}}, 400, 103),
    ("POST", "/api/commerce/orders/o%201/status", {"status": "PAID"}, 400, 103),
    ("GET", "/api/commerce/nothing", None, 404, None),
    ("DELETE", "/api/commerce/stock", None, 405, None),
]


def test_bad_input_is_refused_and_writes_nothing(engine_broker):
    b = engine_broker(*ON)
    api(b, "PUT", "/api/commerce/stock", {"stock": {"A": 5}})
    assert create(b, "o1", "alice", [{"sku": "A", "qty": 1}])[0] == 200
    before = stock_state(b)
    order = api(b, "GET", "/api/commerce/orders/o1")[1]["order"]
    for method, path, body, status, code in BAD:
        if body == "not json":
            r = requests.request(method, b.url(path), data=b"{nope", timeout=10,
                                 headers={"Content-Type": "application/json"})
        else:
            r = requests.request(method, b.url(path), json=body, timeout=10)
        assert r.status_code == status, (method, path, body, r.status_code, r.text)
        if code is not None:
            assert r.json()["error"]["code"] == code, (path, body, r.text)
    assert stock_state(b) == before
    assert api(b, "GET", "/api/commerce/orders/o1")[1]["order"] == order
    assert api(b, "GET", "/api/commerce/orders/n1")[0] == 404
    code, res = create(b, "o1", "bob", [{"sku": "A", "qty": 1}])          # ids are unique
    assert code == 409 and res["error"]["code"] == 125 and res["error"]["status"] == "PENDING"
    assert stock_state(b) == before
    # The stock channel changes through the adapter only.
    code, res = api(b, "POST", "/api/channels/stock:all/state", {"ops": [{"op": "set", "key": "A", "value": 99}]})
    assert code == 403 and res["error"]["code"] == 114

    async def ws_state_op():
        c = await connect(b)
        m = await c.request({"op": "state", "id": 5, "channel": "stock:all",
                             "ops": [{"op": "set", "key": "A", "value": 99}]})
        assert m["op"] == "error" and m["code"] == 114, m
    run(ws_state_op())
    assert stock_state(b) == before


def test_off_by_default(engine_broker):
    b = engine_broker()
    code, res = api(b, "PUT", "/api/commerce/stock", {"stock": {"A": 1}})
    assert code == 404 and res["error"]["code"] == 116
    code, res = api(b, "GET", "/api/commerce/orders/o1")
    assert code == 404 and res["error"]["code"] == 116


def test_api_key_needs_the_stock_channel(engine_broker):
    b = engine_broker(*ON, "--apikey", "shop.secret=shop-key-0123456789", "--apikey", "shop.publish=stock",
                    "--apikey", "blog.secret=blog-key-0123456789", "--apikey", "blog.publish=news")
    url = b.url("/api/commerce/stock")
    r = requests.put(url, json={"stock": {"A": 1}}, timeout=10)
    assert r.status_code == 401, r.text
    r = requests.put(url, json={"stock": {"A": 1}}, headers={"Authorization": "Bearer blog-key-0123456789"},
                     timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == 114, r.text
    r = requests.put(url, json={"stock": {"A": 1}}, headers={"Authorization": "Bearer shop-key-0123456789"},
                     timeout=10)
    assert r.status_code == 200 and r.json()["stock"] == {"A": 1}, r.text


def test_race_for_the_last_units_never_oversells(engine_broker):
    b = engine_broker(*ON)
    initial = {"A": 25, "B": 15, "C": 5}
    assert api(b, "PUT", "/api/commerce/stock", {"stock": initial})[0] == 200
    results, lock = [], threading.Lock()

    def shopper(n):
        rnd = random.Random(n)
        s = requests.Session()
        for k in range(6):
            skus = rnd.sample(sorted(initial), rnd.randint(1, 3))
            lines = [{"sku": sku, "qty": rnd.randint(1, 3)} for sku in skus]
            r = s.post(b.url("/api/commerce/orders"), json={"id": "r%d-%d" % (n, k), "owner": "u%d" % n,
                                                            "lines": lines}, timeout=20)
            assert r.status_code in (200, 409), r.text
            if r.status_code == 409:
                assert r.json()["error"]["code"] == 124
            with lock:
                results.append((r.status_code, lines))

    threads = [threading.Thread(target=shopper, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 16 * 6
    sold = {k: 0 for k in initial}
    for status, lines in results:
        if status == 200:
            for line in lines:
                sold[line["sku"]] += line["qty"]
    final = stock_state(b)[0]
    assert all(v >= 0 for v in final.values()), final
    assert final == {k: initial[k] - sold[k] for k in initial}, (final, sold)
    assert any(s == 409 for s, _ in results), "the race should run some SKU out"


def test_orders_survive_a_restart(engine_broker, tmp_path):
    d = tmp_path / "keep"
    b = engine_broker(*ON, data_dir=str(d))
    api(b, "PUT", "/api/commerce/stock", {"stock": {"A": 4}})
    assert create(b, "p1", "alice", [{"sku": "A", "qty": 3}])[0] == 200
    assert move(b, "p1", "PAID")[0] == 200
    b.stop()
    b2 = engine_broker(*ON, data_dir=str(d))
    code, res = api(b2, "GET", "/api/commerce/orders/p1")
    assert code == 200 and res["order"]["status"] == "PAID" and res["order"]["reserved"] is True
    assert stock_state(b2)[0] == {"A": 1}
    assert move(b2, "p1", "CANCELLED")[1]["restored"] == {"A": 3}
    assert stock_state(b2)[0] == {"A": 4}


def test_config_section_names_the_channels(engine_broker, tmp_path):
    conf = tmp_path / "shop.ini"
    conf.write_text("[adapter commerce]\nenabled = on\nstock_channel = stock:shop\norders_namespace = purchases\n"
                    "admin_channel = backoffice:orders\n\n[namespace purchases]\nhistory = on\n")
    b = engine_broker("--config", str(conf))
    assert api(b, "PUT", "/api/commerce/stock", {"stock": {"A": 2}})[0] == 200
    code, res = create(b, "q1", "carol", [{"sku": "A", "qty": 1}])
    assert code == 200 and [n["channel"] for n in res["notified"]] == \
        ["purchases:q1#carol", "user:carol", "backoffice:orders"], res
    assert res["channel"] == "stock:shop"
    # The notifications committed with the change they tell of: stored by the time it is answered.
    assert [d["status"] for d in history(b, "purchases:q1#carol")] == ["PENDING"]


def test_config_section_and_its_errors(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[server]\nport = 0\n\n[adapter commerce]\nenabled = on\nstock_channel = chat:stock\n")
    r = run_herald(["--config", str(bad), "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0
    assert "%s:6" % bad in r.stderr and "stock_channel" in r.stderr and "state = on" in r.stderr, r.stderr
    bad.write_text("[adapter commerce]\nenabled = on\norders_namespace = a:b\n")
    r = run_herald(["--config", str(bad), "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0 and "%s:3" % bad in r.stderr and "orders_namespace" in r.stderr, r.stderr
    bad.write_text("[adapter commerce]\nenabled = maybe\n")
    r = run_herald(["--config", str(bad), "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0 and ":2" in r.stderr and "enabled" in r.stderr, r.stderr
    bad.write_text("[adapter commerce]\nenabled = on\nwebhook_secret = short\n")
    r = run_herald(["--config", str(bad), "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0 and "%s:3" % bad in r.stderr and "at least 16" in r.stderr, r.stderr
    bad.write_text("[adapter commerce]\nenabled = on\nadmin_channel = stock:feed\n")
    r = run_herald(["--config", str(bad), "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0 and "%s:3" % bad in r.stderr and "admin_channel" in r.stderr, r.stderr
    bad.write_text("[adapter commerce]\ncolour = red\n")
    r = run_herald(["--config", str(bad), "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0 and "unknown key" in r.stderr, r.stderr


# -- payment webhooks ----------------------------------------------------------------

WHSEC = "whsec_0123456789abcdef"
HOOKS = ON + ("--commerce-webhook-secret", WHSEC, "--commerce-webhook-tolerance", "60s")


def hook(b, event, t=None, secret=WHSEC, raw=None, header=None):
    import hashlib
    import hmac
    body = raw if raw is not None else json.dumps(event).encode()
    t = int(time.time()) if t is None else t
    sig = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    h = {"Content-Type": "application/json",
         "Herald-Signature": header if header is not None else "t=%d,v1=%s" % (t, sig)}
    r = requests.post(b.url("/api/commerce/payments"), data=body, headers=h, timeout=10)
    return r.status_code, r.json()


def ev(eid, kind, order):
    return {"id": eid, "type": kind, "data": {"order": order}}


def test_payment_webhooks_move_orders_once(engine_broker):
    b = engine_broker(*HOOKS)

    async def main():
        admin = await user(b, "ops", role="admin")
        assert (await sub(admin, "sys:orders"))["op"] == "subscribed"
        api(b, "PUT", "/api/commerce/stock", {"stock": {"A": 5}})
        assert create(b, "w1", "alice", [{"sku": "A", "qty": 2}])[0] == 200
        assert create(b, "w2", "bob", [{"sku": "A", "qty": 3}])[0] == 200
        assert stock_state(b)[0] == {"A": 0}

        code, res = hook(b, ev("evt_1", "payment.succeeded", "w1"))
        assert code == 200 and res["order"]["status"] == "PAID" and res["event"]["outcome"] == "PAID", res
        code, res = hook(b, ev("evt_2", "payment.failed", "w2"))
        assert code == 200 and res["order"]["status"] == "PAYMENT_FAILED" and res["restored"] == {"A": 3}, res
        assert stock_state(b)[0] == {"A": 3}
        # The provider retries: answered 200, nothing changes (stock restored once).
        for e in (ev("evt_1", "payment.succeeded", "w1"), ev("evt_2", "payment.failed", "w2")):
            code, res = hook(b, e)
            assert code == 200 and res["duplicate"] is True and res["changes"] == [], res
        assert stock_state(b)[0] == {"A": 3}
        # A new event the order's status does not lead to: acknowledged, ignored.
        code, res = hook(b, ev("evt_3", "payment.failed", "w1"))
        assert code == 200 and res["ignored"] is True and res["status"] == "PAID", res
        assert api(b, "GET", "/api/commerce/orders/w1")[1]["order"]["status"] == "PAID"
        # An unknown order: kept, reported to the admins, acknowledged.
        code, res = hook(b, ev("evt_4", "payment.succeeded", "ghost"))
        assert code == 200 and res["unmatched"] is True and res["event"]["outcome"] == "unknown_order", res
        assert [n["channel"] for n in res["notified"]] == ["sys:orders"], res
        assert b.wait_log("payment event evt_4 .* unknown order ghost", 5)
        code, res = hook(b, ev("evt_4", "payment.succeeded", "ghost"))
        assert code == 200 and res["duplicate"] is True and res["event"]["order"] == "ghost", res
        # Other event types are acknowledged and left alone.
        code, res = hook(b, {"id": "evt_5", "type": "charge.refunded", "data": {}})
        assert code == 200 and res["ignored"] is True
        seen = []
        while not any(d.get("type") == "payment_unmatched" for d in seen):
            m = await admin.next()
            if m.get("op") == "pub":
                seen.append(m["data"])
        assert [d["status"] for d in seen if d["type"] == "order_status"] == ["PAID", "PAYMENT_FAILED"]
        assert seen[-1] == {"type": "payment_unmatched", "event": "evt_4", "event_type": "payment.succeeded",
                            "order": "ghost"}

    run(main())


def test_payment_webhook_signatures(engine_broker):
    b = engine_broker(*HOOKS)
    api(b, "PUT", "/api/commerce/stock", {"stock": {"A": 5}})
    assert create(b, "s1", "alice", [{"sku": "A", "qty": 1}])[0] == 200
    e = ev("evt_s", "payment.succeeded", "s1")
    body = json.dumps(e).encode()
    now = int(time.time())
    bad = [
        dict(secret="another-secret-0123456789"),                   # wrong key
        dict(t=now - 120),                                          # outside the tolerance: a replay
        dict(t=now + 120),
        dict(header=""),                                            # no signature
        dict(header="t=%d" % now),
        dict(header="v1=" + "0" * 64),
        dict(header="t=%d,v1=%s" % (now, "zz" * 32)),
        dict(header="t=abc,v1=" + "0" * 64),
    ]
    for kw in bad:
        code, res = hook(b, e, **kw)
        assert code == 401 and res["error"]["code"] == 113, (kw, res)
    # Body changed after signing.
    import hashlib
    import hmac
    sig = hmac.new(WHSEC.encode(), b"%d." % now + body, hashlib.sha256).hexdigest()
    r = requests.post(b.url("/api/commerce/payments"), data=body.replace(b"s1", b"s2"),
                      headers={"Herald-Signature": "t=%d,v1=%s" % (now, sig)}, timeout=10)
    assert r.status_code == 401
    assert api(b, "GET", "/api/commerce/orders/s1")[1]["order"]["status"] == "PENDING"
    # A second v1 (the provider rotating secrets) is fine when one matches.
    code, res = hook(b, e, header="t=%d,v1=%s,v1=%s" % (now, "ab" * 32, sig))
    assert code == 200 and res["order"]["status"] == "PAID", res
    # Well signed but malformed: documented 400s, nothing stored.
    for raw, c in ((b"{nope", 101), (b'{"id":"","type":"payment.failed","data":{"order":"s1"}}', 103),
                   (b'{"id":"e9","type":"payment.failed","data":{}}', 103),
                   (b'{"id":"e9","type":7,"data":{"order":"s1"}}', 103),
                   (b'{"id":"e 9","type":"payment.failed","data":{"order":"s1"}}', 103)):
        code, res = hook(b, None, raw=raw)
        assert code == 400 and res["error"]["code"] == c, (raw, res)
    assert api(b, "GET", "/api/commerce/orders/s1")[1]["order"]["status"] == "PAID"


def test_payment_webhooks_off_without_a_secret(engine_broker):
    b = engine_broker(*ON)
    code, res = hook(b, ev("e1", "payment.succeeded", "o1"))
    assert code == 404 and res["error"]["code"] == 116


def test_payment_event_ids_survive_a_restart(engine_broker, tmp_path):
    d = tmp_path / "hooks"
    b = engine_broker(*HOOKS, data_dir=str(d))
    api(b, "PUT", "/api/commerce/stock", {"stock": {"A": 2}})
    assert create(b, "k1", "alice", [{"sku": "A", "qty": 2}])[0] == 200
    assert hook(b, ev("evt_k", "payment.failed", "k1"))[1]["restored"] == {"A": 2}
    b.stop()
    b2 = engine_broker(*HOOKS, data_dir=str(d))
    code, res = hook(b2, ev("evt_k", "payment.failed", "k1"))
    assert code == 200 and res["duplicate"] is True
    assert stock_state(b2)[0] == {"A": 2}
