"""Adapter side effects in the adapter's own LMDB transaction (docs/adapters.md
"Notifications commit with the change", docs/storage.md): an order's
notifications are answered with the offsets subscribers see them at (stored
channels and the unstored admin feed alike), every acknowledged order change
has its timeline entry exactly once after a kill -9, a confirmed booking
issues its ticket on the buyer's channel and the organiser's feed (all or
none for a group), and webhooks get order.created / order.status /
seat.booked / seat.expired (that test on both engines: under redis the
commerce and seat scripts queue them)."""
import signal
import threading
import time

import requests

from conftest import Broker, hs256_token, run, run_herald, ws_connect
from test_webhooks import SECRET as WH_SECRET, receiver, verify  # noqa: F401 (a fixture)

SECRET = b"0123456789abcdef0123456789abcdef-sidefx"
ON = ("--hmac-secret", SECRET.decode(), "--commerce", "on", "--rest-per-minute", "0")
SEATS = ("--hmac-secret", SECRET.decode(), "--ns", "seats.state=on", "--rest-per-minute", "0")


def api(b, method, path, body=None):
    r = requests.request(method, b.url(path), json=body, timeout=10)
    return r.status_code, r.json()


def history(b, channel):
    r = requests.get(b.url("/api/channels/%s/history" % channel.replace("#", "%23")), params={"limit": 1000},
                     timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["publications"]


async def user(b, sub, **claims):
    c = await ws_connect(b)
    m = await c.request({"op": "connect", "id": 1, "token": hs256_token(SECRET, sub, **claims)})
    assert m["op"] == "connected", m
    return c


async def subscribe(c, channel):
    m = await c.request({"op": "subscribe", "id": c.new_id(), "channel": channel})
    assert m["op"] == "subscribed", m
    return m


async def pushes(c, channels, n):
    """The next @n pushes on each of @channels: {channel: [(offset, data)]}."""
    got = {ch: [] for ch in channels}
    while any(len(v) < n for v in got.values()):
        m = await c.next()
        if m.get("op") == "pub" and m["channel"] in got:
            got[m["channel"]].append((m["offset"], m["data"]))
    return got


def test_order_notifications_answer_the_offsets_subscribers_see(make_broker):
    b = make_broker(*ON)

    async def main():
        alice = await user(b, "alice")
        admin = await user(b, "ops", role="admin")
        await subscribe(alice, "orders:o1#alice")
        await subscribe(alice, "user:alice")
        await subscribe(admin, "sys:orders")              # no history: numbered in memory
        # user:alice has a publication of its own already: the order's continue after it.
        assert b.publish_rest("user:alice", {"hello": 1})["offset"] == 1
        assert (await alice.next())["offset"] == 1

        assert api(b, "PUT", "/api/commerce/stock", {"stock": {"MUG": 5}})[0] == 200
        answers = []
        code, res = api(b, "POST", "/api/commerce/orders", {"id": "o1", "owner": "alice",
                                                             "lines": [{"sku": "MUG", "qty": 2}]})
        assert code == 200, res
        answers.append(res)
        for st in ("PAID", "PROCESSING"):
            code, res = api(b, "POST", "/api/commerce/orders/o1/status", {"status": st})
            assert code == 200, res
            answers.append(res)
        # A refused change notifies nobody and names no channel.
        code, res = api(b, "POST", "/api/commerce/orders/o1/status", {"status": "RETURNED"})
        assert code == 409 and res["error"]["code"] == 123, res
        assert "notified" not in res["error"]

        want = {}
        for res in answers:
            assert [n["channel"] for n in res["notified"]] == ["orders:o1#alice", "user:alice", "sys:orders"], res
            for n in res["notified"]:
                want.setdefault(n["channel"], []).append(n["offset"])
        assert want["orders:o1#alice"] == [1, 2, 3]
        assert want["user:alice"] == [2, 3, 4]
        got = await pushes(alice, ("orders:o1#alice", "user:alice"), 3)
        got.update(await pushes(admin, ("sys:orders",), 3))
        for ch, seen in got.items():
            assert [o for o, _ in seen] == want[ch], (ch, seen, want[ch])
            assert [d["status"] for _, d in seen] == ["PENDING", "PAID", "PROCESSING"], seen
        await alice.assert_silent(0.2)
        # The stored timelines hold the same entries at the same offsets.
        for ch in ("orders:o1#alice", "user:alice"):
            stored = {p["offset"]: p["data"] for p in history(b, ch)}
            assert [stored[o]["status"] for o in want[ch]] == ["PENDING", "PAID", "PROCESSING"], stored
        await alice.close()
        await admin.close()
    run(main())


def test_notification_continues_a_channel_pruning_forgot_while_subscribed(make_broker):
    b = make_broker(*ON, "--ns", "user.history_ttl=1s")

    async def main():
        alice = await user(b, "alice")
        m = await subscribe(alice, "user:alice")
        epoch = m["epoch"]
        assert b.publish_rest("user:alice", {"hello": 1})["offset"] == 1
        assert (await alice.next())["offset"] == 1
        # Past the ttl the pruner empties the log and forgets the channel; alice stays subscribed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = requests.get(b.url("/api/channels/user:alice/history"), timeout=5).json()
            if not r["publications"]:
                break
            time.sleep(0.2)
        time.sleep(1.5)                              # the pruner's pass that forgets it
        assert api(b, "PUT", "/api/commerce/stock", {"stock": {"MUG": 5}})[0] == 200
        code, res = api(b, "POST", "/api/commerce/orders", {"id": "p1", "owner": "alice",
                                                             "lines": [{"sku": "MUG", "qty": 1}]})
        assert code == 200, res
        n = [x for x in res["notified"] if x["channel"] == "user:alice"][0]
        assert n["offset"] == 2, res                 # no offset seen again, no gap
        m = await alice.next()
        assert m["channel"] == "user:alice" and m["offset"] == 2, m
        r = requests.get(b.url("/api/channels/user:alice/history"), timeout=5).json()
        assert r["epoch"] == epoch and [p["offset"] for p in r["publications"]] == [2], r
        await alice.close()
    run(main())


def _orders(url, prefix, acked, stop):
    """Creates orders and moves each through a few statuses until @stop;
    records each acknowledged change as (order, status, offset on the order's channel)."""
    n = 0
    s = requests.Session()
    while not stop.is_set():
        oid = "%s%d" % (prefix, n)
        n += 1
        steps = [("POST", "/api/commerce/orders", {"id": oid, "owner": "kim", "lines": [{"sku": "X", "qty": 1}]},
                  "PENDING")]
        steps += [("POST", "/api/commerce/orders/%s/status" % oid, {"status": st}, st)
                  for st in ("PAID", "PROCESSING", "CANCELLED")]
        for method, path, body, st in steps:
            try:
                r = s.request(method, url + path, json=body, timeout=5)
            except requests.RequestException:
                return
            if r.status_code != 200:
                return
            off = [x["offset"] for x in r.json()["notified"] if x["channel"] == "orders:%s#kim" % oid]
            acked.append((oid, st, off[0]))


def test_kill9_after_acknowledged_changes_keeps_each_timeline_entry_once(make_broker, tmp_path):
    data = tmp_path / "crash"
    b = make_broker(*ON, data_dir=data, name="k0")
    assert api(b, "PUT", "/api/commerce/stock", {"stock": {"X": 1000000}})[0] == 200
    acked, stop = [], threading.Event()
    threads = [threading.Thread(target=_orders, args=(b.http_url, "t%d-" % k, acked, stop)) for k in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    b.send_signal(signal.SIGKILL)
    b.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    b.stopped, b.returncode = True, 0              # killed on purpose
    assert len(acked) >= 10, "commerce calls were acknowledged before the kill: %d" % len(acked)

    b = make_broker(*ON, data_dir=data, name="after")
    by_order = {}
    for oid, st, off in acked:
        by_order.setdefault(oid, []).append((off, st))
    for oid, want in by_order.items():
        timeline = history(b, "orders:%s#kim" % oid)
        statuses = [p["data"]["status"] for p in timeline]
        # Exactly once, in order, at the acknowledged offsets.
        assert len(statuses) == len(set(statuses)), (oid, statuses)
        stored = {p["offset"]: p["data"]["status"] for p in timeline}
        for off, st in want:
            assert stored.get(off) == st, (oid, off, st, stored)
        # And the timeline is exactly what the stored order went through (no
        # change committed without its entry, no entry without its change).
        code, res = api(b, "GET", "/api/commerce/orders/%s" % oid)
        assert code == 200, res
        assert [h["status"] for h in res["order"]["history"]] == statuses, (oid, res["order"], statuses)
    print("\nKILL-9 commerce: %d changes acknowledged over %d orders, each found once" % (len(acked), len(by_order)))


def seat_call(b, ev, action, body, expect=200):
    r = requests.post(b.url("/api/events/%s/%s" % (ev, action)), json=body, timeout=5)
    assert r.status_code == expect, (action, body, r.status_code, r.text)
    return r.json()


def test_confirm_issues_ticket_to_buyer_and_feed_all_or_none(make_broker):
    b = make_broker(*SEATS, "--seats-feed", "organiser:{event}")
    ev = "gala"
    body = {"seats": [{"id": "A%d" % i, "section": "A"} for i in range(1, 5)]}
    r = requests.put(b.url("/api/events/%s/seats" % ev), json=body, timeout=5)
    assert r.status_code == 200, r.text

    async def main():
        bob = await user(b, "bob")
        await subscribe(bob, "user:bob")
        seat_call(b, ev, "hold", {"user": "bob", "seats": ["A1", "A2"], "ttl": 60})
        seat_call(b, ev, "hold", {"user": "carol", "seats": ["A3"], "ttl": 60})
        # A group with one seat bob does not hold: nothing booked, no ticket.
        e = seat_call(b, ev, "confirm", {"user": "bob", "seats": ["A1", "A2", "A3"]}, expect=409)
        assert e["error"]["code"] == 121 and e["error"]["seats"] == ["A3"], e
        await bob.assert_silent(0.3)
        assert history(b, "organiser:gala") == []
        t0 = int(time.time() * 1000)
        r = seat_call(b, ev, "confirm", {"user": "bob", "seats": ["A1", "A2"]})
        assert sorted(r["seats"]) == ["A1", "A2"], r
        m = await bob.next()
        assert m["op"] == "pub" and m["channel"] == "user:bob" and m["offset"] == 1, m
        t = m["data"]
        assert t["type"] == "ticket_issued" and t["event"] == ev and t["channel"] == "seats:gala", t
        assert sorted(t["seats"]) == ["A1", "A2"] and t["holder"] == "bob", t
        assert t0 - 1000 <= t["booked_at"] <= int(time.time() * 1000) + 1000, t
        feed = history(b, "organiser:gala")
        assert [p["data"] for p in feed] == [t] and feed[0]["offset"] == 1, feed
        # Stored with the booking: the buyer's timeline has it too.
        assert [p["data"] for p in history(b, "user:bob")] == [t]
        # A bad confirm (no seats) is refused before the store; the broker goes on.
        seat_call(b, ev, "confirm", {"user": "bob", "seats": []}, expect=400)
        await bob.close()
    run(main())


def test_seats_feed_config_errors(tmp_path):
    bad = tmp_path / "bad.ini"
    for text, line, why in (("[adapter seats]\nfeed = bad name:{event}\n", 2, "feed"),
                            ("[server]\nport = 0\n\n[adapter seats]\nfeed = seats:{event}\n", 5, "state = on"),
                            ("[adapter seats]\nfeeds = x\n", 2, "unknown key")):
        bad.write_text(text)
        r = run_herald(["--config", str(bad), "--data-dir", str(tmp_path / "d")])
        assert r.returncode != 0 and "%s:%d" % (bad, line) in r.stderr and why in r.stderr, (text, r.stderr)
    r = run_herald(["--seats-feed", "a b", "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0 and "--seats-feed" in r.stderr, r.stderr
    bad.write_text("[webhook w]\nurl = http://127.0.0.1:1/\nsecret = 0123456789abcdef\nevents = order.shipped\n")
    r = run_herald(["--config", str(bad), "--data-dir", str(tmp_path / "d")])
    assert r.returncode != 0 and "order.status" in r.stderr and "seat.expired" in r.stderr, r.stderr


def test_webhooks_get_order_and_seat_events(tmp_path, receiver, engine):  # noqa: F811
    """On both engines: under redis the commerce and seat scripts queue them."""
    rcv = receiver()
    conf = tmp_path / "herald.conf"
    conf.write_text(
        "[adapter commerce]\nenabled = on\n\n[namespace seats]\nstate = on\n\n"
        "[webhook biz]\nurl = %s\nsecret = %s\nevents = order.created, order.status, seat.booked, seat.expired\n"
        "timeout = 500ms\nretry_base = 50ms\nretry_max = 200ms\n\n"
        "[webhook pubs]\nurl = %s\nsecret = %s\nevents = publication\nnamespaces = none\n"
        % (rcv.url, WH_SECRET, rcv.url, WH_SECRET))
    redis = [*engine.args, "--engine-webhook-lease", "1s"] if engine.redis else []
    b = Broker(tmp_path, ["--config", str(conf), "--rest-per-minute", "0", *redis]).start()
    if redis:
        from test_cluster import wait_ready
        wait_ready(b)
    try:
        assert api(b, "PUT", "/api/commerce/stock", {"stock": {"MUG": 3}})[0] == 200
        code, res = api(b, "POST", "/api/commerce/orders", {"id": "w1", "owner": "dana",
                                                             "lines": [{"sku": "MUG", "qty": 1}]})
        assert code == 200, res
        code, res = api(b, "POST", "/api/commerce/orders/w1/status", {"status": "PAID"})
        assert code == 200, res
        assert api(b, "POST", "/api/commerce/orders/w1/status", {"status": "SHIPPED"})[0] == 409   # no event
        r = requests.put(b.url("/api/events/fest/seats"), json={"seats": [{"id": "S1", "section": "A"},
                                                                          {"id": "S2", "section": "A"}]}, timeout=5)
        assert r.status_code == 200, r.text
        seat_call(b, "fest", "hold", {"user": "dana", "seats": ["S1"], "ttl": 60})
        seat_call(b, "fest", "confirm", {"user": "dana", "seats": ["S1"]})
        seat_call(b, "fest", "hold", {"user": "eve", "seats": ["S2"], "ttl": 1})
        evs = rcv.wait_events(lambda e: any(x["type"] == "seat.expired" for x in e), timeout=20)
        biz = [e for e in evs if e["type"] != "publication"]
        assert [e["type"] for e in biz] == ["order.created", "order.status", "seat.booked", "seat.expired"], biz
        created, status, booked, expired = biz
        assert created["order"] == "w1" and created["owner"] == "dana" and created["status"] == "PENDING"
        assert created["lines"] == [{"sku": "MUG", "qty": 1}], created
        assert status["order"] == "w1" and status["status"] == "PAID" and status["from"] == "PENDING", status
        assert booked["event"] == "fest" and booked["seats"] == ["S1"] and booked["holder"] == "dana", booked
        assert expired["event"] == "fest" and expired["seat"] == "S2" and expired["holder"] == "eve", expired
        assert expired["section"] == "A" and expired["offer"] is False, expired
        ids = [int(e["id"]) for e in biz]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        for headers, body, _ in rcv.requests:
            verify(headers, body)
        # Only the webhook that asked for them: "pubs" wants publications of a namespace with none.
        assert {h["Herald-Webhook"] for h, _, _ in rcv.requests} == {"biz"}
    finally:
        b.check_clean_exit()
