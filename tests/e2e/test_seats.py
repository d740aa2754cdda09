"""Seat maps (docs/rest-api.md "Adapters: seat maps", docs/protocol.md "seats"):
defining maps, all-or-none holds, confirm and release, bad inputs, expiry (also
across a restart), a 200-client race for overlapping seats, the waitlist and its
offers, release on disconnect, the WebSocket `seats` op, both encodings.

Every check of a seat map also recomputes each section's counts from its seats
(check_counts), and every subscriber's view (snapshot, then deltas applied in
offset order with no gap and no duplicate) is compared with the state read over
REST, values and versions."""
import asyncio
import random
import time

import requests

from conftest import apply_delta, connect, hs256_token, run, same, ws_connect

SECRET = b"0123456789abcdef0123456789abcdef-secret"
SEATS = ("--hmac-secret", SECRET.decode(), "--ns", "seats.state=on", "--ns", "seats.publish=authenticated")
COUNT_KEYS = ("total", "free", "held", "booked")


def ns(*opts):
    """ns('seat_hold_max=10s') -> ('--ns', 'seats.seat_hold_max=10s')."""
    out = ()
    for o in opts:
        out += ("--ns", "seats." + o)
    return out


def now_ms():
    return int(time.time() * 1000)


# -- tokens and WebSocket helpers -------------------------------------------


def token(sub):
    return hs256_token(SECRET, sub)


class View:
    """A subscriber's copy of a seat map: the snapshot, then every delta in order."""

    def __init__(self, subscribed):
        assert "state" in subscribed, "a state channel's subscribe reply carries a snapshot: %r" % (subscribed,)
        self.channel = subscribed["channel"]
        self.offset = subscribed["offset"]
        self.state = {k: {"value": v["value"], "version": v["version"]} for k, v in subscribed["state"].items()}
        self.deltas = []

    def feed(self, m):
        if m["op"] == "snapshot":      # a lagging subscriber is resynchronised (protocol.md)
            assert m["offset"] >= self.offset, "a snapshot never goes back: %d after %d" % (m["offset"], self.offset)
            self.offset = m["offset"]
            self.state = {k: {"value": v["value"], "version": v["version"]} for k, v in m["state"].items()}
            return
        assert m["offset"] == self.offset + 1, \
            "deltas follow the snapshot with no gap and no duplicate: offset %d after %d" % (m["offset"], self.offset)
        apply_delta(self.state, m["data"])
        self.offset = m["offset"]
        self.deltas.append(m)

    def seat(self, sid):
        v = self.state.get("seat:" + sid)
        return v and v["value"]

    def section(self, name):
        v = self.state.get("section:" + name)
        return v and v["value"]


def init(c):
    c.views = {}
    c.events = []
    return c


async def user(b, name, enc="json"):
    """A WebSocket connection authenticated as @name."""
    c = await ws_connect(b, enc)
    m = await c.request({"op": "connect", "id": 1, "token": token(name)})
    assert m["op"] == "connected" and m["user"] == name, m
    c.client_id = m["client"]
    return init(c)


async def anon(b, enc="json"):
    return init(await connect(b, enc))


def pump(c, m):
    """Routes a message that is not the reply being waited for."""
    view = c.views.get(m.get("channel")) if m.get("op") in ("pub", "snapshot") else None
    if view is not None:
        view.feed(m)
    else:
        c.events.append(m)


async def wait_reply(c, mid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        m = await c.next(timeout=max(0.05, deadline - time.monotonic()))
        if m.get("id") == mid:
            return m
        pump(c, m)


async def reply(c, msg, timeout=5.0):
    """Sends @msg with a fresh id; returns its reply, feeding what arrives meanwhile to the views."""
    msg = dict(msg, id=c.new_id())
    await c.send(msg)
    return await wait_reply(c, msg["id"], timeout)


async def until(c, pred, timeout=5.0, what="the condition"):
    """Reads (and routes) messages until pred() holds; fails after @timeout."""
    deadline = time.monotonic() + timeout
    while not pred():
        left = deadline - time.monotonic()
        assert left > 0, "timed out waiting for %s" % what
        try:
            m = await c.next(timeout=min(left, 0.5))
        except AssertionError:
            continue
        pump(c, m)


async def idle(c, secs):
    """Routes whatever arrives within @secs."""
    deadline = time.monotonic() + secs
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            m = await c.next(timeout=left)
        except AssertionError:
            return
        pump(c, m)


async def watch(c, event):
    m = await reply(c, {"op": "subscribe", "channel": "seats:" + event})
    assert m["op"] == "subscribed" and m["channel"] == "seats:" + event, m
    view = View(m)
    c.views[view.channel] = view
    return view


def seats_op(event, action, **fields):
    return dict(op="seats", channel="seats:" + event, action=action, **fields)


async def ws_error(c, msg, code):
    m = await reply(c, msg)
    assert m["op"] == "error" and m["code"] == code, "expected error %d for %r, got %r" % (code, msg, m)
    return m


# -- REST helpers -------------------------------------------------------------

def call(b, event, action, body, expect=200, method="POST"):
    r = requests.request(method, b.url("/api/events/%s/%s" % (event, action)), json=body, timeout=5)
    assert r.status_code == expect, (method, action, body, r.status_code, r.text)
    j = r.json()
    if expect == 200:
        assert j["channel"] == "seats:" + event and isinstance(j["offset"], int) and j["offset"] >= 1, j
    return j


def refused(b, event, action, body, status, code, method="POST"):
    j = call(b, event, action, body, expect=status, method=method)
    assert "error" in j and j["error"]["code"] == code, (action, body, j)
    return j["error"]


def define(b, event, seats, method="PUT", expect=200):
    """@seats: (id, section) tuples (price_class "std") or (id, section, price_class);
    a price_class of None leaves it out."""
    body = {"seats": []}
    for s in seats:
        cls = s[2] if len(s) > 2 else "std"
        body["seats"].append(dict(id=s[0], section=s[1], **({"price_class": cls} if cls is not None else {})))
    return call(b, event, "seats", body, expect=expect, method=method)


def S(section, status="free", holder=None, expires=None, cls="std"):
    """The documented value of a seat: key."""
    v = {"section": section, "price_class": cls, "status": status}
    if holder is not None:
        v["holder"] = holder
    if expires is not None:
        v["expires"] = expires
    return v


def read_state(b, event, **params):
    """Every item of seats:{event}'s state (paged), as {key: item}, and the channel's offset."""
    items, cursor, offset = {}, None, None
    for _ in range(100):
        p = dict(params, limit=1000)
        if cursor:
            p["cursor"] = cursor
        r = requests.get(b.url("/api/channels/seats:%s/state" % event), params=p, timeout=5)
        assert r.status_code == 200, r.text
        j = r.json()
        offset = j["offset"] if offset is None else offset
        for it in j["items"]:
            assert it["key"] not in items, "a key on two pages: %r" % it["key"]
            items[it["key"]] = it
        cursor = j["next_cursor"]
        if not cursor:
            return items, offset
    raise AssertionError("more than 100 pages")


def values(b, event, **params):
    items, _ = read_state(b, event, **params)
    return {k: it["value"] for k, it in items.items()}


def versioned(items):
    return {k: {"value": it["value"], "version": it["version"]} for k, it in items.items()}


def check_counts(st):
    """@st: {key: value} of a whole seat map. Checks every seat's shape and that each
    section's total/free/held/booked equal what its seats say; returns the sections."""
    seats = {k[5:]: v for k, v in st.items() if k.startswith("seat:")}
    secs = {k[8:]: v for k, v in st.items() if k.startswith("section:")}
    others = [k for k in st if not k.startswith(("seat:", "section:"))]
    assert not others, "a seat map has only seat: and section: keys, not %r" % others
    want = {}
    for sid, v in seats.items():
        assert v["status"] in ("free", "held", "booked"), (sid, v)
        assert isinstance(v["section"], str), (sid, v)
        if v["status"] == "free":
            assert "holder" not in v and "expires" not in v and not v.get("offer"), (sid, v)
        elif v["status"] == "held":
            assert isinstance(v["holder"], str) and isinstance(v["expires"], int), (sid, v)
        else:
            assert isinstance(v["holder"], str) and "expires" not in v and not v.get("offer"), (sid, v)
        c = want.setdefault(v["section"], dict.fromkeys(COUNT_KEYS, 0))
        c["total"] += 1
        c[v["status"]] += 1
    for name, c in want.items():
        assert name in secs, "section:%s missing for seats %r" % (name, sorted(s for s in seats
                                                                          if seats[s]["section"] == name))
        got = secs[name]
        assert set(got) == set(COUNT_KEYS) | {"waiting"}, ("section:" + name, got)
        assert {k: got[k] for k in COUNT_KEYS} == c, \
            "section:%s says %r but its seats say %r" % (name, got, c)
        assert isinstance(got["waiting"], int) and got["waiting"] >= 0, got
    for name in secs.keys() - want.keys():     # a section left without seats, if its key stays
        assert all(secs[name].get(k, 0) == 0 for k in COUNT_KEYS), ("section:" + name, secs[name])
    return secs


def seat_map(b, event):
    """The seat map read over REST, counts checked: ({seat id: value}, {section: counts})."""
    st = values(b, event)
    secs = check_counts(st)
    return {k[5:]: v for k, v in st.items() if k.startswith("seat:")}, secs


def as_sections(x):
    """The "sections" of a PUT/POST answer as {name: counts} (a map, or a list of
    objects naming their section)."""
    if isinstance(x, dict):
        return x
    assert isinstance(x, list), x
    out = {}
    for s in x:
        s = dict(s)
        name = s.pop("section", None) or s.pop("name")
        out[name] = s
    return out


def counts(total, free, held=0, booked=0, waiting=0):
    return {"total": total, "free": free, "held": held, "booked": booked, "waiting": waiting}


def assert_converged(view, b, event):
    items, offset = read_state(b, event)
    assert view.offset == offset, (view.offset, offset)
    assert view.state == versioned(items), "the subscriber's snapshot + deltas equal the stored map"
    check_counts({k: v["value"] for k, v in view.state.items()})


def health_ok(b):
    r = b.health()
    assert r.status_code == 200 and r.json()["status"] in ("ok", "degraded"), r.text


# -- 1. defining maps -----------------------------------------------------------

def test_define_read_back_and_redefine(make_broker):
    b = make_broker(*SEATS)
    ev = "gala-2026.main"
    r = define(b, ev, [("A1", "A", "std"), ("A2", "A", "std"), ("A3", "A", "std"), ("A4", "A", "std"),
                       ("B1", "B", "vip"), ("B2", "B", "vip")])
    assert r["seats"] == 6, r
    assert as_sections(r["sections"]) == {"A": counts(4, 4), "B": counts(2, 2)}, r
    items, offset = read_state(b, ev)
    assert offset == r["offset"], "the answer's offset is the delta's"
    seat_items = requests.get(b.url("/api/channels/seats:%s/state" % ev), params={"prefix": "seat:"},
                              timeout=5).json()["items"]
    assert [i["key"] for i in seat_items] == ["seat:A1", "seat:A2", "seat:A3", "seat:A4", "seat:B1", "seat:B2"]
    for i in seat_items:
        sec, cls = ("A", "std") if i["key"].startswith("seat:A") else ("B", "vip")
        assert i["value"] == {"section": sec, "price_class": cls, "status": "free"}, i
    sec_items = requests.get(b.url("/api/channels/seats:%s/state" % ev), params={"prefix": "section:"},
                             timeout=5).json()["items"]
    assert {i["key"]: i["value"] for i in sec_items} == {"section:A": counts(4, 4), "section:B": counts(2, 2)}
    seats, _ = seat_map(b, ev)

    # A hold and a booking, then the map is redefined around them.
    h = call(b, ev, "hold", {"user": "alice", "seats": ["A1"], "ttl": 300})
    call(b, ev, "hold", {"user": "alice", "seats": ["A2"], "ttl": 300})
    call(b, ev, "confirm", {"user": "alice", "seats": ["A2"]})
    seats, secs = seat_map(b, ev)
    assert secs["A"] == counts(4, 2, 1, 1)
    # A4 removed (free), A3 moves to B as vip, A1 (held) moves to C, C1 is new without a class.
    r = define(b, ev, [("A1", "C", "std"), ("A2", "A", "std"), ("A3", "B", "vip"), ("B1", "B", "vip"),
                       ("B2", "B", "vip"), ("C1", "C", None)])
    assert r["seats"] == 6, r
    seats, secs = seat_map(b, ev)
    assert as_sections(r["sections"]) == secs
    assert set(seats) == {"A1", "A2", "A3", "B1", "B2", "C1"}, "A4 was removed"
    assert seats["A1"] == {"section": "C", "price_class": "std", "status": "held", "holder": "alice",
                           "expires": h["expires"]}, "a seat that stays keeps its hold, in its new section"
    assert seats["A2"]["status"] == "booked" and seats["A2"]["holder"] == "alice" and seats["A2"]["section"] == "A"
    assert seats["A3"] == {"section": "B", "price_class": "vip", "status": "free"}
    assert seats["C1"]["section"] == "C" and seats["C1"]["status"] == "free" and seats["C1"].get("price_class") is None
    assert {k: secs[k] for k in ("A", "B", "C")} == {"A": counts(1, 0, 0, 1), "B": counts(3, 3),
                                                     "C": counts(2, 1, 1, 0)}
    # The free seats, as a dashboard reads them.
    free = requests.get(b.url("/api/channels/seats:%s/state" % ev),
                        params={"prefix": "seat:", "field": "status", "value": "free"}, timeout=5).json()["items"]
    assert [i["key"] for i in free] == ["seat:A3", "seat:B1", "seat:B2", "seat:C1"]

    # Dropping a held or booked seat is refused, and nothing changes.
    before = read_state(b, ev)
    e = define(b, ev, [("A2", "A"), ("A3", "B"), ("B1", "B"), ("B2", "B"), ("C1", "C")], expect=409)
    assert e["error"]["code"] == 119 and e["error"]["seats"] == ["A1"], e
    e = define(b, ev, [("A1", "C"), ("A3", "B"), ("B1", "B"), ("B2", "B"), ("C1", "C")], expect=409)
    assert e["error"]["code"] == 119 and e["error"]["seats"] == ["A2"], e
    e = define(b, ev, [("B1", "B"), ("C9", "C")], expect=409)
    assert e["error"]["code"] == 119 and sorted(e["error"]["seats"]) == ["A1", "A2"], e
    assert read_state(b, ev) == before, "a refused PUT changes nothing"

    # POST adds and updates the listed seats and keeps the others.
    r = define(b, ev, [("D1", "D", "std"), ("B1", "B", "std"), ("A1", "C", "vip")], method="POST")
    seats, secs = seat_map(b, ev)
    if "sections" in r:     # "answers like PUT": the counts it gives are the map's
        assert as_sections(r["sections"]) == {k: secs[k] for k in as_sections(r["sections"])}, r
    assert set(seats) == {"A1", "A2", "A3", "B1", "B2", "C1", "D1"}
    assert seats["D1"] == {"section": "D", "price_class": "std", "status": "free"}
    assert seats["B1"] == {"section": "B", "price_class": "std", "status": "free"}
    assert seats["A1"]["status"] == "held" and seats["A1"]["holder"] == "alice" and seats["A1"]["price_class"] == "vip"
    assert seats["A2"]["status"] == "booked"
    assert secs["D"] == counts(1, 1) and secs["B"] == counts(3, 3) and secs["C"] == counts(2, 1, 1, 0)

    # An empty map (0 seats is allowed) is a map with no seats.
    r = requests.put(b.url("/api/events/empty/seats"), json={"seats": []}, timeout=5)
    assert r.status_code == 200 and r.json()["seats"] == 0, r.text
    e = refused(b, "empty", "hold", {"user": "alice", "seats": ["A1"], "ttl": 10}, 422, 120)
    assert e["seats"] == ["A1"], e


# -- 2. hold, confirm, release over REST --------------------------------------------

def test_hold_confirm_release_rest(make_broker):
    b = make_broker(*SEATS)
    ev = "e2"
    define(b, ev, [("A%d" % i, "A") for i in range(1, 7)] + [("B%d" % i, "B") for i in range(1, 4)])

    async def go():
        viewer = await anon(b)
        view = await watch(viewer, ev)

        t0 = now_ms()
        r = call(b, ev, "hold", {"user": "alice", "seats": ["A1", "A2"], "ttl": 60})
        assert sorted(r["seats"]) == ["A1", "A2"], r
        assert t0 + 59000 <= r["expires"] <= now_ms() + 61000, (t0, r)
        exp1 = r["expires"]
        seats, secs = seat_map(b, ev)
        for s in ("A1", "A2"):
            assert seats[s] == S("A", "held", "alice", exp1), seats[s]
        assert secs["A"] == counts(6, 4, 2)

        # All or none: one seat taken, nothing held; the error names exactly the taken seats.
        before = read_state(b, ev)
        e = refused(b, ev, "hold", {"user": "bob", "seats": ["A3", "A2", "A4"], "ttl": 60}, 409, 119)
        assert e["seats"] == ["A2"], e
        e = refused(b, ev, "hold", {"user": "bob", "seats": ["A1", "A5", "A2"], "ttl": 60}, 409, 119)
        assert sorted(e["seats"]) == ["A1", "A2"], e
        assert read_state(b, ev) == before, "a refused hold changes nothing (no delta either)"
        seats, _ = seat_map(b, ev)
        assert all(seats[s]["status"] == "free" for s in ("A3", "A4", "A5"))

        # The same user holding again extends; holding held + free seats works.
        r = call(b, ev, "hold", {"user": "alice", "seats": ["A1"], "ttl": 120})
        assert r["expires"] >= exp1 + 55000, (exp1, r)
        exp2 = r["expires"]
        r = call(b, ev, "hold", {"user": "alice", "seats": ["A2", "A3"], "ttl": 60})
        seats, secs = seat_map(b, ev)
        assert seats["A1"]["expires"] == exp2 and seats["A1"]["holder"] == "alice"
        assert seats["A3"]["holder"] == "alice" and seats["A3"]["expires"] == r["expires"]
        assert secs["A"] == counts(6, 3, 3)

        # Confirm: only the holder, only held seats, all or none.
        e = refused(b, ev, "confirm", {"user": "bob", "seats": ["A1"]}, 409, 121)
        assert e["seats"] == ["A1"], e
        e = refused(b, ev, "confirm", {"user": "alice", "seats": ["A1", "A4"]}, 409, 121)
        assert e["seats"] == ["A4"], e
        seats, _ = seat_map(b, ev)
        assert seats["A1"]["status"] == "held", "a refused confirm books nothing"
        call(b, ev, "confirm", {"user": "alice", "seats": ["A1", "A2"]})
        seats, secs = seat_map(b, ev)
        for s in ("A1", "A2"):
            assert seats[s] == S("A", "booked", "alice"), seats[s]
        assert secs["A"] == counts(6, 3, 1, 2)
        e = refused(b, ev, "hold", {"user": "bob", "seats": ["A1"], "ttl": 60}, 409, 119)
        assert e["seats"] == ["A1"], "a booked seat cannot be held"
        e = refused(b, ev, "confirm", {"user": "alice", "seats": ["A1"]}, 409, 121)
        assert e["seats"] == ["A1"], "a booked seat is not held any more"

        # Release: only one's own seats; over REST booked seats too (a cancellation).
        e = refused(b, ev, "release", {"user": "bob", "seats": ["A3"]}, 409, 121)
        assert e["seats"] == ["A3"], e
        e = refused(b, ev, "release", {"user": "alice", "seats": ["A3", "A4"]}, 409, 121)
        assert e["seats"] == ["A4"], e
        call(b, ev, "release", {"user": "alice", "seats": ["A3"]})
        e = refused(b, ev, "release", {"user": "bob", "seats": ["A2"]}, 409, 121)
        assert e["seats"] == ["A2"], "someone else's booking"
        call(b, ev, "release", {"user": "alice", "seats": ["A2"]})
        seats, secs = seat_map(b, ev)
        assert seats["A3"] == S("A", "free") and seats["A2"] == S("A", "free")
        assert secs["A"] == counts(6, 5, 0, 1) and secs["B"] == counts(3, 3)
        e = refused(b, ev, "release", {"user": "alice", "seats": ["A3"]}, 409, 121)
        assert e["seats"] == ["A3"], "a free seat is not held"
        call(b, ev, "hold", {"user": "bob", "seats": ["A2", "B1"], "ttl": 30})
        seats, secs = seat_map(b, ev)
        assert secs["A"] == counts(6, 4, 1, 1) and secs["B"] == counts(3, 2, 1)

        _, offset = read_state(b, ev)
        await until(viewer, lambda: view.offset >= offset, what="the viewer's deltas")
        assert_converged(view, b, ev)
        await viewer.close()
    run(go())


# -- 3. bad inputs ------------------------------------------------------------------

def test_bad_inputs(make_broker):
    b = make_broker(*SEATS, *ns("seat_hold_max=10s"))
    ev = "e3"
    ids = ["S%03d" % i for i in range(120)] + ["x_y-z.1", "L" * 64]
    define(b, ev, [(s, "S") for s in ids])
    before = read_state(b, ev)
    hold = b.url("/api/events/%s/hold" % ev)

    def bad(body, url=hold, what=""):
        r = requests.post(url, json=body, timeout=5)
        assert r.status_code == 400 and r.json()["error"]["code"] == 103, (what, body, r.status_code, r.text)

    for ttl in (-1, 0, 1.5, "10", None, 11, 10 ** 6, True):
        bad({"user": "alice", "seats": ["S001"], "ttl": ttl}, what="ttl")
    for seats in ([], ids[:101], ["S001", "S002", "S001"], [""], ["S 1"], ["S/1"], ["a" * 65], [5], "S001",
                  None, ["S001", None]):
        bad({"user": "alice", "seats": seats, "ttl": 5}, what="seats")
    bad({"user": "alice", "ttl": 5}, what="no seats")
    bad({"seats": ["S001"], "ttl": 5}, what="no user")
    bad({"user": 7, "seats": ["S001"], "ttl": 5}, what="user not a string")
    r = requests.post(hold, json=["S001"], timeout=5)      # not an object: 101 (§6) or 103 (a bad body)
    assert r.status_code == 400 and r.json()["error"]["code"] in (101, 103), r.text
    for action in ("confirm", "release"):
        url = b.url("/api/events/%s/%s" % (ev, action))
        for seats in ([], ids[:101], ["S001", "S001"], ["S 1"], "S001"):
            bad({"user": "alice", "seats": seats}, url, action)
        bad({"seats": ["S001"]}, url, action + " without user")
    r = requests.post(hold, data="{not json", headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["code"] in (101, 103), r.text
    # Map definitions.
    put = b.url("/api/events/%s/seats" % ev)
    for body in ({}, {"seats": "A1"}, {"seats": [{"id": "A 1", "section": "A"}]}, {"seats": [{"id": "A1"}]},
                 {"seats": [{"section": "A"}]}, {"seats": [{"id": "A1", "section": "A b"}]},
                 {"seats": [{"id": "A1", "section": "A", "price_class": "p" * 65}]},
                 {"seats": [{"id": "A1", "section": "A", "price_class": 3}]}, {"seats": ["A1"]}):
        for method in ("PUT", "POST"):
            r = requests.request(method, put, json=body, timeout=5)
            assert r.status_code == 400 and r.json()["error"]["code"] == 103, (method, body, r.status_code, r.text)
    r = requests.put(put, data="[1,", headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400, r.text
    # ttl at the namespace's maximum is fine (then released again).
    call(b, ev, "hold", {"user": "alice", "seats": ["x_y-z.1", "L" * 64], "ttl": 10})
    call(b, ev, "release", {"user": "alice", "seats": ["x_y-z.1", "L" * 64]})
    after_ok, _ = read_state(b, ev)
    assert {k: v["value"] for k, v in after_ok.items()} == {k: v["value"] for k, v in before[0].items()}

    # Unknown seats, and an event without a map.
    e = refused(b, ev, "hold", {"user": "alice", "seats": ["S001", "ZZ9"], "ttl": 5}, 422, 120)
    assert e["seats"] == ["ZZ9"], e
    e = refused(b, ev, "hold", {"user": "alice", "seats": ["Q1", "S002", "Q2"], "ttl": 5}, 422, 120)
    assert sorted(e["seats"]) == ["Q1", "Q2"], e
    refused(b, "no-map", "hold", {"user": "alice", "seats": ["A1"], "ttl": 5}, 422, 120)
    refused(b, "no-map", "confirm", {"user": "alice", "seats": ["A1"]}, 422, 120)
    e = refused(b, ev, "waitlist", {"user": "bob", "section": "nowhere"}, 422, 120)
    assert e["section"] == "nowhere", e
    refused(b, ev, "waitlist", {"user": "bob", "section": "no where"}, 400, 103)
    refused(b, ev, "waitlist", {"user": "bob"}, 400, 103)
    refused(b, ev, "fly", {"user": "bob"}, 404, 103)
    r = requests.get(hold, timeout=5)
    assert r.status_code == 405 and r.json()["error"]["code"] == 103, "a known path, the wrong method: %s" % r.text
    # Event ids are 1-64 letters, digits, '_', '-' or '.': 64 is fine, others name no event.
    assert define(b, "E" * 64, [("A1", "A")])["channel"] == "seats:" + "E" * 64
    for bad_ev in ("E" * 65, "a:b", "a,b", "a%20b", "a~b"):
        r = requests.post(b.url("/api/events/%s/hold" % bad_ev), json={"user": "bob", "seats": ["A1"], "ttl": 5},
                          timeout=5)
        assert r.status_code in (400, 404) and r.json()["error"]["code"] == 103, (bad_ev, r.status_code, r.text)

    # Seat maps change only through the adapter.
    r = requests.post(b.url("/api/channels/seats:%s/state" % ev),
                      json={"ops": [{"op": "set", "key": "seat:S001", "value": {"section": "S", "status": "booked"}}]},
                      timeout=5)
    assert r.status_code == 403 and r.json()["error"]["code"] == 114, r.text
    r = requests.post(b.url("/api/channels/seats:%s/state" % ev), json={"ops": [{"op": "reset"}]}, timeout=5)
    assert r.status_code == 403 and r.json()["error"]["code"] == 114, r.text
    r = requests.post(b.url("/api/publish"), json={"channel": "seats:" + ev, "data": 1}, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == 116, "a state channel takes no plain publish"

    async def go():
        c = await user(b, "alice")
        await ws_error(c, {"op": "state", "channel": "seats:" + ev,
                           "ops": [{"op": "set", "key": "seat:S001", "value": {"status": "free"}}]}, 114)
        for bad_msg in (seats_op(ev, "grab", seats=["S001"], ttl=5), seats_op(ev, "hold", seats=["S001"], ttl=0),
                        seats_op(ev, "hold", seats=["S001"], ttl=11), seats_op(ev, "hold", seats=[], ttl=5),
                        seats_op(ev, "hold", seats=["S001", "S001"], ttl=5), seats_op(ev, "hold", seats=["S 1"], ttl=5),
                        seats_op(ev, "hold", seats=ids[:101], ttl=5), seats_op(ev, "waitlist")):
            await ws_error(c, bad_msg, 103)
        m = await ws_error(c, seats_op(ev, "hold", seats=["S001", "ZZ9"], ttl=5), 120)
        assert m["seats"] == ["ZZ9"], m
        await c.close()
    run(go())
    health_ok(b)
    items, _ = read_state(b, ev)
    assert {k: v["value"] for k, v in items.items()} == {k: v["value"] for k, v in before[0].items()}
    seat_map(b, ev)


# -- 4. expiry -----------------------------------------------------------------------

def test_holds_expire(make_broker):
    b = make_broker(*SEATS)
    ev = "e4"
    define(b, ev, [("X1", "A"), ("X2", "A"), ("X3", "A")])

    async def go():
        viewer = await anon(b)
        view = await watch(viewer, ev)
        r = call(b, ev, "hold", {"user": "alice", "seats": ["X1"], "ttl": 1})
        exp = r["expires"]
        seats, secs = seat_map(b, ev)
        assert seats["X1"]["status"] == "held" and secs["A"] == counts(3, 2, 1)
        await until(viewer, lambda: view.offset >= r["offset"], 3, "the hold's delta")
        assert view.seat("X1")["status"] == "held"
        await until(viewer, lambda: (view.seat("X1") or {}).get("status") == "free", timeout=4.0,
                    what="the expiry delta")
        freed_at = now_ms()
        assert freed_at >= exp - 50, "not freed before it expires (%d < %d)" % (freed_at, exp)
        assert freed_at <= exp + 2500, "freed within about a second of the expiry (%d ms late)" % (freed_at - exp)
        d = [m for m in view.deltas if any(ch["key"] == "seat:X1" and ch.get("value", {}).get("status") == "free"
                                           for ch in m["data"]["changes"])]
        assert len(d) == 1, view.deltas
        assert any(ch["key"] == "section:A" for ch in d[0]["data"]["changes"]), "the counts change in the same delta"
        seats, secs = seat_map(b, ev)
        assert seats["X1"] == S("A", "free") and secs["A"] == counts(3, 3)
        assert_converged(view, b, ev)

        # Confirm right after the expiry is refused, freed yet or not.
        r = call(b, ev, "hold", {"user": "alice", "seats": ["X2", "X3"], "ttl": 1})
        hold_off = r["offset"]
        await asyncio.sleep(max(0, r["expires"] - now_ms()) / 1000 + 0.2)
        e = refused(b, ev, "confirm", {"user": "alice", "seats": ["X2", "X3"]}, 409, 121)
        assert sorted(e["seats"]) == ["X2", "X3"], e
        seats, _ = seat_map(b, ev)
        assert seats["X2"]["status"] in ("held", "free") and seats["X3"]["status"] in ("held", "free"), seats
        await until(viewer, lambda: view.offset > hold_off and
                    all((view.seat(s) or {}).get("status") == "free" for s in ("X2", "X3")),
                    timeout=4.0, what="X2 and X3 to expire")
        seats, secs = seat_map(b, ev)
        assert secs["A"] == counts(3, 3)
        # Someone else can hold them now.
        call(b, ev, "hold", {"user": "bob", "seats": ["X1", "X2", "X3"], "ttl": 60})
        _, offset = read_state(b, ev)
        await until(viewer, lambda: view.offset >= offset)
        assert_converged(view, b, ev)
        await viewer.close()
    run(go())


# -- 5. expiry across a restart --------------------------------------------------------

def test_expiry_survives_restart(make_broker, tmp_path):
    data = tmp_path / "d"
    b = make_broker(*SEATS, data_dir=data)
    ev = "e5"
    define(b, ev, [("R1", "A"), ("R2", "A"), ("R3", "A"), ("R4", "B")])
    call(b, ev, "hold", {"user": "carol", "seats": ["R3"], "ttl": 300})
    call(b, ev, "hold", {"user": "dave", "seats": ["R4"], "ttl": 300})
    call(b, ev, "confirm", {"user": "dave", "seats": ["R4"]})
    r = call(b, ev, "hold", {"user": "alice", "seats": ["R1", "R2"], "ttl": 3})
    exp, off = r["expires"], r["offset"]
    assert b.stop() == 0
    b = make_broker(*SEATS, data_dir=data, name="again")
    seats, secs = seat_map(b, ev)
    assert now_ms() < exp - 200, "the restart took too long to check the hold before it expires"
    for s in ("R1", "R2"):
        assert seats[s] == S("A", "held", "alice", exp), seats[s]
    assert secs["A"] == counts(3, 0, 3) and secs["B"] == counts(1, 0, 0, 1)

    async def go():
        viewer = await anon(b)
        view = await watch(viewer, ev)
        assert view.offset == off
        await until(viewer, lambda: all((view.seat(s) or {}).get("status") == "free" for s in ("R1", "R2")),
                    timeout=max(0.5, (exp - now_ms()) / 1000) + 3.0, what="the hold to expire after the restart")
        assert now_ms() >= exp - 50
        assert view.offset > off, "offsets continue after the restart"
        seats, secs = seat_map(b, ev)
        assert seats["R1"] == seats["R2"] == S("A", "free")
        assert seats["R3"]["status"] == "held" and seats["R3"]["holder"] == "carol", "a longer hold stays"
        assert seats["R4"] == S("B", "booked", "dave")
        assert secs["A"] == counts(3, 2, 1) and secs["B"] == counts(1, 0, 0, 1)
        assert_converged(view, b, ev)
        await viewer.close()
    run(go())


# -- 6. the race ---------------------------------------------------------------------------

def test_two_hundred_clients_race_for_seats(make_broker):
    b = make_broker(*SEATS, *ns("seat_client_confirm=on"))
    ev = "race"
    ch = "seats:" + ev
    seat_ids = ["R%02d" % i for i in range(1, 61)]
    define(b, ev, [(s, ("front", "mid", "back")[i // 20]) for i, s in enumerate(seat_ids)])
    hot = seat_ids[4:36]          # 32 seats across front and mid; back stays out of the race
    rnd = random.Random(20260)
    n = 200
    names = ["u%03d" % i for i in range(n)]
    t_start = time.monotonic()

    async def go():
        clients = {}
        for i in range(0, n, 50):
            batch = await asyncio.gather(*[user(b, u) for u in names[i:i + 50]])
            clients.update(zip(names[i:i + 50], batch))
        views = dict(zip(names, await asyncio.gather(*[watch(clients[u], ev) for u in names])))
        won, owner, picks = {}, {}, {}

        async def race(racers):
            """Every racer asks at once for 2-4 seats of the hot region; checks the answers."""
            for u in racers:
                picks[u] = sorted(rnd.sample(hot, rnd.randint(2, 4)))
            held_before = dict(owner)
            msgs = {u: seats_op(ev, "hold", id=clients[u].new_id(), seats=picks[u], ttl=120) for u in racers}
            await asyncio.gather(*[clients[u].send(msgs[u]) for u in racers])
            replies = await asyncio.gather(*[wait_reply(clients[u], msgs[u]["id"], 15) for u in racers])
            lost = {}
            for u, m in zip(racers, replies):
                if m["op"] == "seats":
                    assert m["action"] == "hold" and m["channel"] == ch and sorted(m["seats"]) == picks[u], m
                    assert isinstance(m["offset"], int) and isinstance(m["expires"], int), m
                    won[u] = m
                    for s in picks[u]:
                        assert s not in owner, "seat %s held by both %s and %s" % (s, owner[s], u)
                        owner[s] = u
                else:
                    assert m["op"] == "error" and m["code"] == 119, (u, m)
                    lost[u] = m
            assert len({m["offset"] for m in won.values()}) == len(won), "each hold is its own delta"
            for u, m in lost.items():
                taken = m["seats"]
                assert taken and len(set(taken)) == len(taken) and set(taken) <= set(picks[u]), (u, picks[u], m)
                for s in taken:
                    assert s in owner and owner[s] != u, \
                        "%s was refused %s, which no successful hold took (%r)" % (u, s, m)
                missing = {s for s in picks[u] if s in held_before} - set(taken)
                assert not missing, "%s's refusal leaves out %s, held before the race began (%r)" % (u, missing, m)
            return lost

        # Everyone asks at once; then everyone who lost tries again, at once.
        lost = await race(names)
        assert won and lost, "with 200 clients on 32 seats some win and some lose"
        lost = await race(sorted(lost))
        assert lost, "the second round has losers too"

        # The stored map is exactly the union of the successful holds.
        items, final = read_state(b, ev)
        seats = {k[5:]: it["value"] for k, it in items.items() if k.startswith("seat:")}
        check_counts({k: it["value"] for k, it in items.items()})
        assert {s for s, v in seats.items() if v["status"] != "free"} == set(owner)
        for s, u in owner.items():
            assert seats[s]["status"] == "held" and seats[s]["holder"] == u and \
                seats[s]["expires"] == won[u]["expires"], (s, seats[s])
        assert max(m["offset"] for m in won.values()) == final

        # Every client's view converges to it, deltas in order, none missing or repeated.
        await asyncio.gather(*[until(clients[u], lambda v=views[u]: v.offset >= final, 15, "deltas")
                               for u in names])
        want = versioned(items)
        for u in names:
            assert views[u].offset == final and views[u].state == want, "the view of %s differs" % u

        # Half of the winners confirm while a loser tries to confirm the same seats.
        winners = sorted(won)
        payers = winners[:max(1, len(winners) // 2)]
        thieves = dict(zip(payers, sorted(lost)))
        jobs = []
        for u in payers:
            jobs.append((u, clients[u], seats_op(ev, "confirm", id=clients[u].new_id(), seats=picks[u])))
            t = thieves.get(u)
            if t:
                jobs.append((t, clients[t], seats_op(ev, "confirm", id=clients[t].new_id(), seats=picks[u])))
        await asyncio.gather(*[c.send(m) for _, c, m in jobs])
        res = await asyncio.gather(*[wait_reply(c, m["id"], 15) for _, c, m in jobs])
        booked_by = {}
        for (u, _, m), r in zip(jobs, res):
            if u in payers:
                assert r["op"] == "seats" and r["action"] == "confirm" and sorted(r["seats"]) == sorted(m["seats"]), r
                for s in m["seats"]:
                    assert s not in booked_by, "seat %s booked twice" % s
                    booked_by[s] = u
            else:
                assert r["op"] == "error" and r["code"] == 121 and sorted(r["seats"]) == sorted(m["seats"]), (u, r)
        items, final = read_state(b, ev)
        seats = {k[5:]: it["value"] for k, it in items.items() if k.startswith("seat:")}
        check_counts({k: it["value"] for k, it in items.items()})
        for s, v in seats.items():
            if s in booked_by:
                assert v == S(v["section"], "booked", booked_by[s]), (s, v)
            elif s in owner:
                assert v["status"] == "held" and v["holder"] == owner[s], (s, v)
            else:
                assert v["status"] == "free", (s, v)
        await asyncio.gather(*[until(clients[u], lambda v=views[u]: v.offset >= final, 15, "deltas")
                               for u in names])
        want = versioned(items)
        for u in names:
            assert views[u].offset == final and views[u].state == want, "the view of %s differs" % u
        await asyncio.gather(*[c.close() for c in clients.values()], return_exceptions=True)
    run(go(), timeout=60)
    health_ok(b)
    assert time.monotonic() - t_start < 45, "the race took %.1fs" % (time.monotonic() - t_start)


# -- 7. waitlist ------------------------------------------------------------------------------

def offer_pub(c, event):
    """The seat offers on @c's personal channel about @event (seat_expired goes there too)."""
    return [m for m in c.events if m.get("op") == "pub" and m.get("channel") == "user:" + c.user_name
            and isinstance(m.get("data"), dict) and m["data"].get("event") == event
            and m["data"].get("type") == "seat_offer"]


async def personal(b, name):
    c = await user(b, name)
    c.user_name = name
    m = await reply(c, {"op": "subscribe", "channel": "user:" + name})
    assert m["op"] == "subscribed", m
    return c


def check_offer(pub, event, seat, section, expires):
    d = pub["data"]
    want = {"type": "seat_offer", "event": event, "channel": "seats:" + event, "seat": seat, "section": section,
            "expires": expires}
    assert {k: d.get(k) for k in want} == want, d


def test_waitlist_and_offers(make_broker):
    b = make_broker(*SEATS, *ns("seat_offer_ttl=1s"))
    ev = "e7"
    define(b, ev, [("A1", "A"), ("A2", "A"), ("B1", "B"), ("C1", "C")])
    call(b, ev, "hold", {"user": "alice", "seats": ["A1", "A2", "C1"], "ttl": 300})

    async def go():
        bob = await personal(b, "bob")
        carol = await personal(b, "carol")
        viewer = await anon(b)
        view = await watch(viewer, ev)

        assert call(b, ev, "waitlist", {"user": "bob", "section": "A"})["position"] == 1
        second = call(b, ev, "waitlist", {"user": "carol", "section": "A"})
        assert second["position"] == 2
        again = call(b, ev, "waitlist", {"user": "bob", "section": "A"})
        assert again["position"] == 1, "queueing twice keeps it"
        # It changed nothing, so nothing was published: the offset stays.
        assert again["changes"] == [] and again["offset"] == second["offset"]
        seats, secs = seat_map(b, ev)
        assert secs["A"] == counts(2, 0, 2, 0, 2)

        # A released seat goes to the head of the queue, as an offer.
        t0 = now_ms()
        call(b, ev, "release", {"user": "alice", "seats": ["A1"]})
        seats, secs = seat_map(b, ev)
        a1 = seats["A1"]
        assert a1["status"] == "held" and a1["holder"] == "bob" and a1["offer"] is True, a1
        assert t0 + 500 <= a1["expires"] <= now_ms() + 1500, "held for seat_offer_ttl (1s): %r" % a1
        assert secs["A"] == counts(2, 0, 2, 0, 1)
        await until(bob, lambda: offer_pub(bob, ev), 3, "bob's seat_offer")
        check_offer(offer_pub(bob, ev)[0], ev, "A1", "A", a1["expires"])

        # Bob lets it expire: it goes to carol.
        await until(viewer, lambda: (view.seat("A1") or {}).get("holder") == "carol", 4, "the offer to pass on")
        c1 = view.seat("A1")
        assert c1["status"] == "held" and c1["offer"] is True, c1
        assert view.section("A")["waiting"] == 0
        await until(carol, lambda: offer_pub(carol, ev), 3, "carol's seat_offer")
        check_offer(offer_pub(carol, ev)[0], ev, "A1", "A", c1["expires"])
        call(b, ev, "confirm", {"user": "carol", "seats": ["A1"]})
        seats, secs = seat_map(b, ev)
        assert seats["A1"] == S("A", "booked", "carol")
        assert secs["A"] == counts(2, 0, 1, 1, 0)
        await idle(bob, 0.3)
        assert len(offer_pub(bob, ev)) == 1, "one notification per offer"

        # A free seat is offered at once.
        t0 = now_ms()
        r = call(b, ev, "waitlist", {"user": "dave", "section": "B"})
        assert r.get("offered") == "B1" and "position" not in r, r
        assert t0 + 500 <= r["expires"] <= now_ms() + 1500, r
        seats, secs = seat_map(b, ev)
        assert seats["B1"]["holder"] == "dave" and seats["B1"]["status"] == "held" and seats["B1"]["offer"] is True
        assert seats["B1"]["expires"] == r["expires"]
        assert secs["B"] == counts(1, 0, 1, 0, 0)

        # Leaving the queue.
        assert call(b, ev, "waitlist", {"user": "erin", "section": "C"})["position"] == 1
        assert call(b, ev, "waitlist", {"user": "frank", "section": "C"})["position"] == 2
        assert seat_map(b, ev)[1]["C"]["waiting"] == 2
        call(b, ev, "waitlist/leave", {"user": "erin", "section": "C"})
        call(b, ev, "waitlist/leave", {"user": "erin", "section": "C"})     # not queued: no error
        assert seat_map(b, ev)[1]["C"]["waiting"] == 1
        assert call(b, ev, "waitlist", {"user": "frank", "section": "C"})["position"] == 1
        call(b, ev, "release", {"user": "alice", "seats": ["C1"]})
        seats, secs = seat_map(b, ev)
        assert seats["C1"]["holder"] == "frank" and seats["C1"]["offer"] is True, seats["C1"]
        assert secs["C"] == counts(1, 0, 1, 0, 0)
        # Nobody left in the queue: an expired offer frees the seat.
        await until(viewer, lambda: (view.seat("C1") or {}).get("status") == "free", 4, "frank's offer to expire")
        _, offset = read_state(b, ev)
        await until(viewer, lambda: view.offset >= offset)
        assert_converged(view, b, ev)
        for c in (bob, carol, viewer):
            await c.close()
    run(go())


def test_waitlist_max(make_broker):
    b = make_broker(*SEATS, *ns("waitlist_max=1"))
    ev = "e7m"
    define(b, ev, [("A1", "A")])
    call(b, ev, "hold", {"user": "alice", "seats": ["A1"], "ttl": 300})
    assert call(b, ev, "waitlist", {"user": "bob", "section": "A"})["position"] == 1
    refused(b, ev, "waitlist", {"user": "carol", "section": "A"}, 503, 110)
    assert call(b, ev, "waitlist", {"user": "bob", "section": "A"})["position"] == 1, "bob already has his place"
    assert seat_map(b, ev)[1]["A"] == counts(1, 0, 1, 0, 1)
    call(b, ev, "waitlist/leave", {"user": "bob", "section": "A"})
    assert call(b, ev, "waitlist", {"user": "carol", "section": "A"})["position"] == 1


# -- 8. release on disconnect -------------------------------------------------------------------

def test_release_on_disconnect(make_broker):
    # No grace: the release follows the last close (test_seats_hardening.py covers the grace).
    b = make_broker(*SEATS, *ns("seat_release_on_disconnect=on", "seat_release_grace=0"))
    ev = "e8"
    define(b, ev, [("D1", "A"), ("D2", "A"), ("D3", "A"), ("D4", "A")])
    call(b, ev, "hold", {"user": "alice", "seats": ["D3"], "ttl": 300})
    call(b, ev, "confirm", {"user": "alice", "seats": ["D3"]})

    async def go():
        viewer = await anon(b)
        view = await watch(viewer, ev)
        a1 = await user(b, "alice")
        a2 = await user(b, "alice")
        bob = await user(b, "bob")
        m = await reply(a1, seats_op(ev, "hold", seats=["D1", "D2"], ttl=300))
        assert m["op"] == "seats", m
        m = await reply(bob, seats_op(ev, "hold", seats=["D4"], ttl=300))
        assert m["op"] == "seats", m
        await until(viewer, lambda: view.offset >= m["offset"])
        n = len(view.deltas)
        await a1.close()
        await idle(viewer, 1.0)
        assert len(view.deltas) == n, "alice still has a connection: her holds stay (%r)" % view.deltas[n:]
        seats, _ = seat_map(b, ev)
        assert seats["D1"]["holder"] == "alice" and seats["D2"]["holder"] == "alice"
        await a2.close()
        await until(viewer, lambda: all(view.seat(s)["status"] == "free" for s in ("D1", "D2")), 3,
                    "alice's holds to go with her last connection")
        seats, secs = seat_map(b, ev)
        assert seats["D1"] == seats["D2"] == S("A", "free")
        assert seats["D3"] == S("A", "booked", "alice"), "bookings stay"
        assert seats["D4"]["status"] == "held" and seats["D4"]["holder"] == "bob"
        assert secs["A"] == counts(4, 2, 1, 1)
        assert_converged(view, b, ev)
        await bob.close()
        await viewer.close()
    run(go())

    off = make_broker(*SEATS, name="off")
    define(off, ev, [("D1", "A")])

    async def go_off():
        a = await user(off, "alice")
        m = await reply(a, seats_op(ev, "hold", seats=["D1"], ttl=300))
        assert m["op"] == "seats", m
        await a.close()
        await asyncio.sleep(1.5)
        seats, _ = seat_map(off, ev)
        assert seats["D1"]["status"] == "held" and seats["D1"]["holder"] == "alice", \
            "without seat_release_on_disconnect a hold outlives the connection"
    run(go_off())


# -- 9. the WebSocket seats op --------------------------------------------------------------------

def test_websocket_seats_actions(make_broker):
    b = make_broker(*SEATS)
    ev = "e9"
    define(b, ev, [("K%d" % i, "K") for i in range(1, 6)])

    async def go():
        alice = await user(b, "alice")
        view = await watch(alice, ev)
        bob = await user(b, "bob")
        t0 = now_ms()
        m = await reply(alice, seats_op(ev, "hold", seats=["K1", "K2"], ttl=60))
        assert m["op"] == "seats" and m["channel"] == "seats:" + ev and m["action"] == "hold", m
        assert sorted(m["seats"]) == ["K1", "K2"] and isinstance(m["offset"], int), m
        assert t0 + 59000 <= m["expires"] <= now_ms() + 61000, m
        await until(alice, lambda: view.offset >= m["offset"], 3, "the requester's own delta")
        d = [p for p in view.deltas if p["offset"] == m["offset"]]
        assert d and {c["key"] for c in d[0]["data"]["changes"]} >= {"seat:K1", "seat:K2", "section:K"}, d
        assert view.seat("K1") == S("K", "held", "alice", m["expires"])
        seats, secs = seat_map(b, ev)
        assert seats["K2"]["holder"] == "alice" and secs["K"] == counts(5, 3, 2)

        e = await ws_error(bob, seats_op(ev, "hold", seats=["K3", "K2"], ttl=60), 119)
        assert e["seats"] == ["K2"], e
        e = await ws_error(alice, seats_op(ev, "confirm", seats=["K1"]), 114)
        assert seat_map(b, ev)[0]["K1"]["status"] == "held", "confirm over WebSocket is the backend's"
        e = await ws_error(bob, seats_op(ev, "release", seats=["K1"]), 121)
        assert e["seats"] == ["K1"], e
        m = await reply(alice, seats_op(ev, "release", seats=["K2"]))
        assert m["op"] == "seats" and m["action"] == "release" and isinstance(m["offset"], int), m
        assert seat_map(b, ev)[0]["K2"] == S("K", "free")
        call(b, ev, "confirm", {"user": "alice", "seats": ["K1"]})
        e = await ws_error(alice, seats_op(ev, "release", seats=["K1"]), 121)
        assert e["seats"] == ["K1"], e
        assert seat_map(b, ev)[0]["K1"] == S("K", "booked", "alice"), \
            "over WebSocket release frees held seats only"

        # The waitlist over WebSocket.
        call(b, ev, "hold", {"user": "carol", "seats": ["K2", "K3", "K4", "K5"], "ttl": 60})
        m = await reply(bob, seats_op(ev, "waitlist", section="K"))
        assert m["op"] == "seats" and m["action"] == "waitlist" and m["position"] == 1, m
        assert seat_map(b, ev)[1]["K"]["waiting"] == 1
        m = await reply(bob, seats_op(ev, "waitlist_leave", section="K"))
        assert m["op"] == "seats" and m["action"] == "waitlist_leave", m
        assert seat_map(b, ev)[1]["K"]["waiting"] == 0
        call(b, ev, "release", {"user": "carol", "seats": ["K5"]})
        m = await reply(bob, seats_op(ev, "waitlist", section="K"))
        assert m["op"] == "seats" and m["offered"] == "K5" and isinstance(m["expires"], int), m
        e = await ws_error(bob, seats_op(ev, "waitlist", section="Z"), 120)
        assert e["section"] == "Z", e

        # Anonymous connections act on nothing.
        a = await anon(b)
        await ws_error(a, seats_op(ev, "hold", seats=["K5"], ttl=60), 113)
        await ws_error(a, seats_op(ev, "waitlist", section="K"), 113)
        _, offset = read_state(b, ev)
        await until(alice, lambda: view.offset >= offset)
        assert_converged(view, b, ev)
        for c in (alice, bob, a):
            await c.close()
    run(go())

    # publish = server: users watch, the backend acts.
    srv = make_broker(*SEATS, *ns("publish=server"), name="srv")
    define(srv, ev, [("K1", "K")])
    # publish = anyone, seat_client_confirm = on: anonymous still cannot; users may confirm.
    cc = make_broker("--hmac-secret", SECRET.decode(), *ns("state=on", "seat_client_confirm=on"), name="cc")
    define(cc, ev, [("K1", "K"), ("K2", "K")])

    async def go2():
        alice = await user(srv, "alice")
        await ws_error(alice, seats_op(ev, "hold", seats=["K1"], ttl=60), 114)
        assert seat_map(srv, ev)[0]["K1"]["status"] == "free"
        call(srv, ev, "hold", {"user": "alice", "seats": ["K1"], "ttl": 60})
        await ws_error(alice, seats_op(ev, "release", seats=["K1"]), 114)

        a = await anon(cc)
        await ws_error(a, seats_op(ev, "hold", seats=["K1"], ttl=60), 113)
        alice2 = await user(cc, "alice")
        m = await reply(alice2, seats_op(ev, "hold", seats=["K1", "K2"], ttl=60))
        assert m["op"] == "seats", m
        m = await reply(alice2, seats_op(ev, "confirm", seats=["K1"]))
        assert m["op"] == "seats" and m["action"] == "confirm" and m["seats"] == ["K1"], m
        e = await ws_error(await user(cc, "bob"), seats_op(ev, "confirm", seats=["K2"]), 121)
        assert e["seats"] == ["K2"], e
        seats, secs = seat_map(cc, ev)
        assert seats["K1"] == S("K", "booked", "alice")
        assert seats["K2"]["status"] == "held" and secs["K"] == counts(2, 0, 1, 1)
        for c in (alice, a, alice2):
            await c.close()
    run(go2())


# -- 10. MessagePack ---------------------------------------------------------------------------------

def test_msgpack(make_broker):
    b = make_broker(*SEATS)
    ev = "e10"
    define(b, ev, [("M1", "A", "std"), ("M2", "A", "std"), ("M3", "B")])
    call(b, ev, "hold", {"user": "carol", "seats": ["M3"], "ttl": 60})

    async def go():
        mp = await user(b, "alice", "msgpack")
        js = await user(b, "bob", "json")
        vm = await watch(mp, ev)
        vj = await watch(js, ev)
        items, offset = read_state(b, ev)
        assert vm.offset == offset and vm.state == versioned(items), "the MessagePack snapshot is the map"
        assert same(vm.state, vj.state), "both encodings carry the same snapshot"
        assert isinstance(vm.seat("M3")["expires"], int)
        t0 = now_ms()
        m = await reply(mp, seats_op(ev, "hold", seats=["M1", "M2"], ttl=30))
        assert m["op"] == "seats" and m["action"] == "hold" and sorted(m["seats"]) == ["M1", "M2"], m
        assert isinstance(m["expires"], int) and t0 + 29000 <= m["expires"] <= now_ms() + 31000, m
        assert mp.frames and all(kind == "binary" for kind, _ in mp.frames)
        e = await ws_error(mp, seats_op(ev, "hold", seats=["M3"], ttl=30), 119)
        assert e["seats"] == ["M3"], e
        e = await ws_error(js, seats_op(ev, "hold", seats=["M2"], ttl=30), 119)
        assert e["seats"] == ["M2"], e
        await until(mp, lambda: vm.offset >= m["offset"], 3, "the MessagePack delta")
        await until(js, lambda: vj.offset >= m["offset"], 3, "the JSON delta")
        dm = [p for p in vm.deltas if p["offset"] == m["offset"]][0]
        dj = [p for p in vj.deltas if p["offset"] == m["offset"]][0]
        assert same(dm["data"], dj["data"]), (dm, dj)
        assert_converged(vm, b, ev)
        assert_converged(vj, b, ev)
        await mp.close()
        await js.close()
    run(go())
