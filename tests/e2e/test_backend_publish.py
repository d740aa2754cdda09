"""Publishing for backends (docs/rest-api.md "Publish", "Publish a batch", docs/adapters.md "Carts"):
the Idempotency-Key header (a retry answered with the first offset, a reuse with another body refused
with 409/132, both surviving a restart), POST /api/publish/batch (per-item results in order, consecutive
offsets, a bad item stopping no other, one commit), the per-API-key rate limit, and cart events on the
user's personal channel."""
import re
import time

import msgpack
import requests

from conftest import hs256_token, run, ws_connect

SECRET = b"0123456789abcdef0123456789abcdef-backend"
BACKEND = "backend-key-0123456789"
OTHER = "other-key-0123456789ab"
ADMIN = "admin-key-0123456789ab"
NARROW = "narrow-key-0123456789a"
KEYS = ("--hmac-secret", SECRET.decode(),
        "--apikey", "backend.secret=" + BACKEND, "--apikey", "backend.publish=*",
        "--apikey", "other.secret=" + OTHER, "--apikey", "other.publish=*",
        "--apikey", "admin.secret=" + ADMIN, "--apikey", "admin.admin=on",
        "--apikey", "narrow.secret=" + NARROW, "--apikey", "narrow.publish=orders",
        "--ns", "live.history=off")


def post(b, path, body, key=BACKEND, headers=None, raw=None, ctype="application/json"):
    h = {"Authorization": "Bearer " + key, "Content-Type": ctype}
    h.update(headers or {})
    data = raw if raw is not None else (msgpack.packb(body) if ctype == "application/msgpack" else
                                        requests.models.complexjson.dumps(body))
    return requests.post(b.url(path), data=data, headers=h, timeout=10)


def history(b, channel):
    r = requests.get(b.url("/api/channels/%s/history" % channel), headers={"Authorization": "Bearer " + BACKEND},
                     timeout=10)
    assert r.status_code == 200, r.text
    return [(p["offset"], p["data"]) for p in r.json()["publications"]]


def err(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]


# -- Idempotency-Key -------------------------------------------------------------------------

def test_idempotency_key_header_retry_reuse_and_restart(make_broker):
    b = make_broker(*KEYS)
    ch = "orders:idem"
    pub = lambda data, key="pay-1", **kw: post(b, "/api/publish", {"channel": ch, "data": data},
                                                headers={"Idempotency-Key": key}, **kw)
    r1 = pub({"amount": 5, "currency": "EUR"})
    assert r1.status_code == 200 and "duplicate" not in r1.json(), r1.text
    off = r1.json()["offset"]
    # The retry: the first answer, nothing published. The same data with its keys in
    # another order, or sent as MessagePack, is the same request.
    for again in (pub({"amount": 5, "currency": "EUR"}), pub({"currency": "EUR", "amount": 5}),
                  pub({"amount": 5, "currency": "EUR"}, ctype="application/msgpack")):
        assert again.status_code == 200 and again.json() == {"channel": ch, "offset": off, "duplicate": True}, \
            again.text
    # The same key with another body: 409, code 132, naming the first offset; nothing published.
    e = err(pub({"amount": 6, "currency": "EUR"}), 409, 132)
    assert e["offset"] == off and "pay-1" in e["reason"], e
    # Header and body field: the same is fine, different is 400.
    same = post(b, "/api/publish", {"channel": ch, "data": {"amount": 5, "currency": "EUR"},
                                    "idempotency_key": "pay-1"}, headers={"Idempotency-Key": "pay-1"})
    assert same.status_code == 200 and same.json()["duplicate"] is True, same.text
    e = err(post(b, "/api/publish", {"channel": ch, "data": 1, "idempotency_key": "pay-2"},
                 headers={"Idempotency-Key": "pay-3"}), 400, 103)
    assert "differ" in e["reason"], e
    err(pub(1, key="k" * 65), 400, 103)
    assert history(b, ch) == [(off, {"amount": 5, "currency": "EUR"})]
    # A namespace without history has no keys to remember.
    e = err(post(b, "/api/publish", {"channel": "live:x", "data": 1}, headers={"Idempotency-Key": "k"}), 400, 103)
    assert "history" in e["reason"], e
    # The keys and their digests survive a restart.
    assert b.stop() == 0
    b2 = make_broker(*KEYS, data_dir=b.data_dir)
    r = post(b2, "/api/publish", {"channel": ch, "data": {"amount": 5, "currency": "EUR"}},
             headers={"Idempotency-Key": "pay-1"})
    assert r.status_code == 200 and r.json() == {"channel": ch, "offset": off, "duplicate": True}, r.text
    e = err(post(b2, "/api/publish", {"channel": ch, "data": "other"}, headers={"Idempotency-Key": "pay-1"}), 409, 132)
    assert e["offset"] == off
    assert history(b2, ch) == [(off, {"amount": 5, "currency": "EUR"})]
    assert b2.health().status_code == 200


def test_idempotency_window_ends(make_broker):
    b = make_broker(*KEYS, "--idempotency-window", "1s")
    ch = "orders:window"
    h = {"Idempotency-Key": "w-1"}
    off = post(b, "/api/publish", {"channel": ch, "data": 1}, headers=h).json()["offset"]
    err(post(b, "/api/publish", {"channel": ch, "data": 2}, headers=h), 409, 132)
    time.sleep(1.3)
    r = post(b, "/api/publish", {"channel": ch, "data": 2}, headers=h)
    assert r.status_code == 200 and r.json()["offset"] == off + 1 and "duplicate" not in r.json(), r.text


def test_websocket_publish_reusing_a_key_gets_132(make_broker):
    b = make_broker(*KEYS)

    async def go():
        c = await ws_connect(b)
        m = await c.request({"op": "connect", "id": 1, "token": hs256_token(SECRET, "alice")})
        assert m["op"] == "connected", m
        r1 = await c.request({"op": "publish", "id": 2, "channel": "chat:ws", "data": "a", "idempotency_key": "x"})
        assert r1["op"] == "published", r1
        r2 = await c.request({"op": "publish", "id": 3, "channel": "chat:ws", "data": "a", "idempotency_key": "x"})
        assert r2["op"] == "published" and r2["duplicate"] is True and r2["offset"] == r1["offset"], r2
        e = await c.request({"op": "publish", "id": 4, "channel": "chat:ws", "data": "b", "idempotency_key": "x"})
        assert e["op"] == "error" and e["code"] == 132 and e["offset"] == r1["offset"] and e["id"] == 4, e
        await c.ping()
        await c.close()
    run(go())


# -- batch -------------------------------------------------------------------------------------

def metric(b, name):
    text = requests.get(b.url("/metrics"), headers={"Authorization": "Bearer " + ADMIN}, timeout=10).text
    m = re.search(r"^%s (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else 0


def test_batch_in_order_with_consecutive_offsets_and_per_item_errors(make_broker):
    b = make_broker(*KEYS)
    items = [{"channel": "orders:b", "data": i} for i in range(5)]
    items[2:2] = [{"channel": "sys:x", "data": 1},                  # the broker's own namespace
                  {"channel": "bad channel", "data": 1},            # not a channel name
                  {"channel": "orders:b"},                          # no data
                  "not an object",
                  {"channel": "stock:all", "data": 1},              # a state channel
                  {"channel": "orders:b", "data": 1, "reply_to": 0}]
    r = post(b, "/api/publish/batch", {"items": items})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == len(items)
    good = [res[i] for i in (0, 1, 8, 9, 10)]
    offs = [g["offset"] for g in good]
    assert all(g["channel"] == "orders:b" for g in good), good
    assert offs == list(range(offs[0], offs[0] + 5)), offs
    assert [res[i]["error"]["code"] for i in range(2, 8)] == [114, 104, 103, 103, 116, 103], res
    assert history(b, "orders:b") == list(zip(offs, range(5)))
    # Several channels in one batch; a channel without history is answered too.
    r = post(b, "/api/publish/batch", {"items": [{"channel": "orders:c", "data": "x"},
                                                 {"channel": "live:c", "data": "y"},
                                                 {"channel": "orders:b", "data": 5}]})
    assert [x.get("offset") for x in r.json()["results"]] == [1, 1, offs[-1] + 1], r.text
    # The key's namespaces are checked per item.
    r = post(b, "/api/publish/batch", {"items": [{"channel": "orders:n", "data": 1},
                                                 {"channel": "chat:n", "data": 2}]}, key=NARROW)
    res = r.json()["results"]
    assert res[0]["offset"] == 1 and res[1]["error"]["code"] == 114, res
    assert history(b, "chat:n") == []


def test_batch_commits_once(make_broker):
    b = make_broker(*KEYS)
    n = 150
    big_before = metric(b, "herald_storage_commit_batch_size_count") - \
        metric(b, 'herald_storage_commit_batch_size_bucket{le="100"}')
    r = post(b, "/api/publish/batch", {"items": [{"channel": "orders:one%d" % (i % 7), "data": i}
                                                 for i in range(n)]})
    assert r.status_code == 200 and all("offset" in x for x in r.json()["results"]), r.text[:500]
    big_after = metric(b, "herald_storage_commit_batch_size_count") - \
        metric(b, 'herald_storage_commit_batch_size_bucket{le="100"}')
    # One commit of more than 100 publications: the whole batch went in one transaction.
    assert big_after - big_before == 1, (big_before, big_after)


def test_batch_envelope_errors(make_broker):
    b = make_broker(*KEYS, max_message_size=4096)
    for body in ({}, {"items": []}, {"items": {}}, {"items": [{"channel": "orders:e", "data": 1}] * 1001}, []):
        raw = requests.models.complexjson.dumps(body)
        if len(raw) > 4096:
            err(post(b, "/api/publish/batch", None, raw=raw), 413, 109)
        else:
            err(post(b, "/api/publish/batch", None, raw=raw), 400, 103 if body != [] else 101)
    err(post(b, "/api/publish/batch", None, raw="{not json"), 400, 101)
    err(post(b, "/api/publish/batch", None, raw="{}", ctype="text/plain"), 415, 101)
    err(post(b, "/api/publish/batch", {"items": [{"channel": "orders:e", "data": 1}]}, key="wrong-key-0123456789"),
        401, 113)
    err(post(b, "/api/publish/batch", {"items": [{"channel": "orders:e", "data": 1}]},
             headers={"Idempotency-Key": "k" * 61}), 400, 103)
    assert history(b, "orders:e") == []
    assert b.health().status_code == 200


def test_batch_limits_items_to_1000(make_broker):
    b = make_broker(*KEYS, max_message_size="1m")
    err(post(b, "/api/publish/batch", {"items": [{"channel": "orders:m", "data": 1}] * 1001}), 400, 103)
    r = post(b, "/api/publish/batch", {"items": [{"channel": "orders:m", "data": i} for i in range(1000)]})
    assert r.status_code == 200 and r.json()["results"][-1]["offset"] == 1000, r.text[-300:]


def test_batch_idempotency_key(make_broker):
    b = make_broker(*KEYS)
    items = [{"channel": "orders:bi", "data": i} for i in range(3)]
    h = {"Idempotency-Key": "import-7"}
    first = post(b, "/api/publish/batch", {"items": items}, headers=h).json()["results"]
    again = post(b, "/api/publish/batch", {"items": items}, headers=h).json()["results"]
    assert [x["offset"] for x in again] == [x["offset"] for x in first], (first, again)
    assert all(x["duplicate"] is True for x in again) and not any("duplicate" in x for x in first)
    changed = post(b, "/api/publish/batch", {"items": items[:2] + [{"channel": "orders:bi", "data": 9}]},
                   headers=h).json()["results"]
    assert changed[0]["duplicate"] is True and changed[2]["error"]["code"] == 132, changed
    both = post(b, "/api/publish/batch", {"items": [{"channel": "orders:bi", "data": 1, "idempotency_key": "x"}]},
                headers=h).json()["results"]
    assert both[0]["error"]["code"] == 103, both
    assert [d for _, d in history(b, "orders:bi")] == [0, 1, 2]


# -- per-key rate limit -----------------------------------------------------------------------

def test_rate_limit_per_api_key(make_broker):
    b = make_broker(*KEYS, "--apikey", "backend.requests_per_minute=5", "--apikey", "batcher.secret=" + "b" * 20,
                    "--apikey", "batcher.publish=orders", "--apikey", "batcher.requests_per_minute=10",
                    trusted_proxies="127.0.0.1", rest_per_minute=3)
    at = lambda addr: {"X-Forwarded-For": addr}
    # A key gets its own allowance (5 > the address's 3), counted per key ...
    codes = [post(b, "/api/publish", {"channel": "orders:rl", "data": i}, headers=at("203.0.113.7")).status_code
             for i in range(6)]
    assert codes == [200] * 5 + [429], codes
    r = post(b, "/api/publish", {"channel": "orders:rl", "data": 9}, headers=at("198.51.100.2"))
    assert r.status_code == 429 and r.json()["error"]["code"] == 115 and int(r.headers["Retry-After"]) >= 1, r.text
    assert "requests_per_minute" in r.json()["error"]["reason"]
    # ... while another key, from the same address, is not affected,
    for _ in range(4):
        assert post(b, "/api/publish", {"channel": "orders:rl", "data": 0}, key=OTHER,
                    headers=at("203.0.113.7")).status_code == 200
    # and requests without a (valid) key count against their address as before.
    codes = [post(b, "/api/publish", {"channel": "orders:rl", "data": 0}, key="nope-" + "x" * 16,
                  headers=at("192.0.2.1")).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429], codes
    # A batch counts as its items: 8 of 10, then a batch of 3 is refused whole.
    r = post(b, "/api/publish/batch", {"items": [{"channel": "orders:rb", "data": i} for i in range(8)]},
             key="b" * 20, headers=at("203.0.113.9"))
    assert r.status_code == 200, r.text
    r = post(b, "/api/publish/batch", {"items": [{"channel": "orders:rb", "data": i} for i in range(3)]},
             key="b" * 20, headers=at("203.0.113.9"))
    assert r.status_code == 429 and r.json()["error"]["code"] == 115 and r.headers.get("Retry-After"), r.text
    assert [d for _, d in history(b, "orders:rb")] == list(range(8))
    # Loopback (limits.rate_limit_exempt) skips the key's limit too, as it does the others.
    assert post(b, "/api/publish", {"channel": "orders:rl", "data": 1}).status_code == 200
    assert b.health().status_code == 200


# -- cart events --------------------------------------------------------------------------------

async def user(b, sub):
    c = await ws_connect(b)
    m = await c.request({"op": "connect", "id": 1, "token": hs256_token(SECRET, sub)})
    assert m["op"] == "connected", m
    return c


def test_cart_events_reach_every_tab_of_the_user(make_broker):
    b = make_broker(*KEYS, "--commerce", "on")
    cart = lambda u, body, **kw: post(b, "/api/commerce/carts/%s/events" % u, body, **kw)

    async def go():
        tab1, tab2, bob = await user(b, "alice"), await user(b, "alice"), await user(b, "bob")
        await tab1.subscribe("user:alice")
        await tab2.subscribe("user:alice")
        m = await bob.request({"op": "subscribe", "id": 5, "channel": "user:alice"})
        assert m["op"] == "error" and m["code"] == 114, m        # only alice reads her cart
        events = [{"type": "item_added", "sku": "MUG", "quantity": 2, "price": 1299},
                  {"type": "item_updated", "sku": "MUG", "quantity": 3},
                  {"type": "item_removed", "sku": "MUG"},
                  {"type": "cleared"},
                  {"type": "checked_out", "order": "1042"}]
        offs = []
        for ev in events:
            r = cart("alice", ev)
            assert r.status_code == 200 and r.json()["channel"] == "user:alice", r.text
            offs.append(r.json()["offset"])
        for tab in (tab1, tab2):
            for ev, off in zip(events, offs):
                m = await tab.expect(op="pub", channel="user:alice", offset=off)
                d = m["data"]
                assert d["type"] == "cart_" + ev["type"] and d["user"] == "alice" and d["at"] > 0, d
                assert {k: v for k, v in d.items() if k not in ("type", "user", "at")} == \
                    {k: v for k, v in ev.items() if k != "type"}, d
        # Bad inputs: a documented 400 each, nothing published.
        bad = [{"type": "item_shipped"}, {}, {"type": "item_added", "sku": "MUG"},
               {"type": "item_added", "sku": "MUG", "quantity": 0},
               {"type": "item_added", "sku": "MUG", "quantity": "2"},
               {"type": "item_added", "sku": "MUG", "quantity": 100001},
               {"type": "item_updated", "sku": "MUG", "quantity": 1, "price": -1},
               {"type": "item_updated", "sku": "MUG", "quantity": 1, "price": 1.5},
               {"type": "item_removed", "sku": "no spaces"}, {"type": "item_removed"},
               {"type": "cleared", "sku": "MUG"}, {"type": "checked_out", "order": ""},
               {"type": "item_added", "sku": "MUG", "quantity": 1, "colour": "red"}]
        for body in bad:
            err(cart("alice", body), 400, 103)
        err(post(b, "/api/commerce/carts/alice/events", None, raw="{nope"), 400, 101)
        err(cart("alice", ["item_added"]), 400, 101)
        err(cart("a,b", {"type": "cleared"}), 400, 103)
        err(cart("alice", {"type": "cleared"}, key=NARROW), 403, 114)
        err(requests.get(b.url("/api/commerce/carts/alice/events"), headers={"Authorization": "Bearer " + BACKEND},
                         timeout=5), 405, 103)
        await tab1.assert_silent(0.3)
        await tab1.ping()
        for c in (tab1, tab2, bob):
            await c.close()
    run(go())


def test_cart_events_need_the_commerce_adapter(make_broker):
    b = make_broker(*KEYS)
    err(post(b, "/api/commerce/carts/alice/events", {"type": "cleared"}), 404, 116)
