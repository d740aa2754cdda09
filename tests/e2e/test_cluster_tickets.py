"""The support-tickets adapter across Herald nodes on the Redis engine
(docs/cluster.md#support-tickets): the same answers, errors, board and timelines as
one LMDB node for the same walk (spread over two nodes), a ticket created on one node
seen live on the others (its delta and its timeline entry, with the same offsets on
every node), concurrent comments, creates and status moves over three nodes that
serialize (comments numbered once each, generated ids unique, one winner per
transition), a bulk update all or none across nodes, Redis killed (503, code 133,
nothing half-written) then back (the tickets kept, the numbering going on, the agents'
consoles fed again), a change cut off in flight whole or absent, a killed node, and
the ticket.changed webhook events: the same as one LMDB node's for the same walk, each
timeline's in order, none for a refused or failed change, one exactly when a change
cut off in flight was applied, kept in Redis across its restart.
test_tickets.py runs its own walks on both engines too. Each test starts its own
redis-server."""
import signal
import threading
import time

import pytest
import requests

from conftest import connect, run, scrape_metrics
from test_cluster import Redis, engine_args, pytestmark, redis, wait_ready  # noqa: F401 (fixtures)
from test_tickets import BOARD, ON, api, board, history
from test_webhooks import SECRET as WH_SECRET, receiver, verify  # noqa: F401 (a fixture)

TIMES = ("created", "updated", "at", "ts")


def node(make_broker, redis_, *extra):
    b = make_broker(*engine_args(redis_), *ON, *extra)
    wait_ready(b)
    return b


def nodes(make_broker, redis_, n, *extra):
    return [node(make_broker, redis_, *extra) for _ in range(n)]


def untimed(v):
    """@v with its times (Redis' clock or the node's) and epochs left out, to compare engines."""
    if isinstance(v, dict):
        return {k: untimed(x) for k, x in v.items() if k not in TIMES and k != "epoch"}
    if isinstance(v, list):
        return [untimed(x) for x in v]
    return v


# (method, path, body): a walk through every route, its refusals included.
WALK = [
    ("POST", "/api/tickets", {"id": "T-1", "title": "Cannot log in", "description": "500 on /login",
                              "requester": "alice", "priority": "high"}),
    ("POST", "/api/tickets", {"title": "Printer on fire", "requester": "bob"}),
    ("POST", "/api/tickets", {"title": "VPN", "requester": "carol", "priority": "low"}),
    ("POST", "/api/tickets", {"id": "T-1", "title": "again", "requester": "dave"}),            # 409 129
    ("POST", "/api/tickets", {"id": "T000003", "title": "chosen by a backend", "requester": "erin"}),
    ("POST", "/api/tickets", {"title": "numbered past it", "requester": "frank"}),              # T000004
    ("POST", "/api/tickets/T-1/status", {"status": "in_progress", "by": "agent7"}),
    ("POST", "/api/tickets/T-1/status", {"status": "in_progress"}),                             # 409 123
    ("POST", "/api/tickets/nope/status", {"status": "closed"}),                                 # 404 128
    ("POST", "/api/tickets/T-1/assign", {"assignee": "agent7", "by": "lead1"}),
    ("POST", "/api/tickets/T-1/assign", {"assignee": None}),
    ("POST", "/api/tickets/nope/assign", {"assignee": "x"}),                                   # 404 128
    ("POST", "/api/tickets/T-1/comments", {"author": "agent7", "text": "Looking into it"}),
    ("POST", "/api/tickets/T-1/comments", {"author": "alice", "text": "thanks \u00e9\u4e2d"}),
    ("POST", "/api/tickets/nope/comments", {"author": "u", "text": "hi"}),                     # 404 128
    ("POST", "/api/tickets/T000002/status", {"status": "closed"}),
    ("POST", "/api/tickets/bulk/status", {"ids": ["T000001", "nope", "T000002"], "status": "closed"}),  # 404 both
    ("POST", "/api/tickets/bulk/status", {"ids": ["T000001", "T000002"], "status": "closed"}),  # 409 refused
    ("POST", "/api/tickets/bulk/status", {"ids": ["T-1", "T000001", "T000004"], "status": "closed", "by": "lead1"}),
    ("POST", "/api/tickets/T-1/status", {"status": "open"}),                                    # a reopen
    ("GET", "/api/tickets/T-1", None),
    ("GET", "/api/tickets/nope", None),                                                         # 404 128
    ("GET", "/api/tickets?status=closed", None),
    ("GET", "/api/tickets?q=log&limit=1", None),
    ("GET", "/api/tickets?priority=high", None),
]


def walk(bs):
    """WALK on the nodes @bs in turn: [(HTTP status, answer without times)]."""
    return [(lambda code, res: (code, untimed(res)))(*api(bs[i % len(bs)], m, p, body))
            for i, (m, p, body) in enumerate(WALK)]


def test_answers_like_lmdb(make_broker, redis):
    lmdb = make_broker(*ON)
    a, b = nodes(make_broker, redis, 2)
    want, got = walk([lmdb]), walk([a, b])
    assert [w[0] for w in want] == [200, 200, 200, 409, 200, 200, 200, 409, 404, 200, 200, 404, 200, 200, 404, 200,
                                    404, 409, 200, 200, 200, 404, 200, 200, 200], want
    for step, (w, g) in enumerate(zip(want, got)):
        assert g == w, "step %d %s: redis %r, lmdb %r" % (step, WALK[step][:2], g, w)
    # The same board (values and versions) and the same timelines, read on either node.
    assert untimed(board(a)[0]) == untimed(board(lmdb)[0]) == untimed(board(b)[0])
    assert board(a)[1] == board(lmdb)[1] == board(b)[1]
    for tid in ("T-1", "T000001", "T000002", "T000003", "T000004"):
        assert untimed(history(b, "ticket:" + tid)) == untimed(history(lmdb, "ticket:" + tid)), tid
        # Fields in the same order too: a ticket's value and its entries are written as one node writes them.
        assert list(board(a)[0][tid]) == list(board(lmdb)[0][tid]), tid
        assert [list(e) for e in history(a, "ticket:" + tid)] == [list(e) for e in history(lmdb, "ticket:" + tid)]
    # A ticket's times are Redis': the same on every node, and they move on.
    t = board(a)[0]["T-1"]
    assert t == board(b)[0]["T-1"] and t["updated"] >= t["created"] > 0
    assert history(a, "ticket:T-1")[-1]["at"] == t["updated"]


def test_created_on_one_node_seen_live_on_the_others(make_broker, redis):
    a, b, c = nodes(make_broker, redis, 3)
    assert api(a, "POST", "/api/tickets", {"id": "X0", "title": "before", "requester": "u"})[0] == 200

    async def go():
        agents, lines = [], []
        for n, enc in ((b, "json"), (c, "msgpack")):
            agent = await connect(n, enc)
            m = await agent.request({"op": "subscribe", "id": 2, "channel": BOARD})
            assert m["op"] == "subscribed" and list(m["state"]) == ["ticket:X0"], m
            agents.append(agent)
            line = await connect(n)
            await line.subscribe("ticket:X1")
            lines.append(line)
        code, res = api(a, "POST", "/api/tickets", {"id": "X1", "title": "new one", "requester": "v"})
        assert code == 200 and res["timeline"] == [{"channel": "ticket:X1", "offset": 1}], res
        for agent, line in zip(agents, lines):
            m = await agent.next()
            assert m["op"] == "pub" and m["channel"] == BOARD and m["offset"] == res["offset"], m
            assert m["data"]["changes"] == res["changes"], m
            e = await line.next()
            assert e["op"] == "pub" and e["offset"] == 1 and e["data"]["type"] == "created", e
            assert e["data"]["ticket"] == res["ticket"]
        # Changes made on the other nodes: every console sees the same deltas at the same offsets.
        steps = [(c, "/api/tickets/X1/status", {"status": "in_progress", "by": "agent2"}),
                 (b, "/api/tickets/X1/comments", {"author": "agent2", "text": "on it"}),
                 (a, "/api/tickets/X1/assign", {"assignee": "agent2"})]
        answers = []
        for n, path, body in steps:
            code, res = api(n, "POST", path, body)
            assert code == 200, res
            answers.append(res)
        seen = [[await agent.next() for _ in steps] for agent in agents]
        told = [[await line.next() for _ in steps] for line in lines]
        assert seen[0] == seen[1] and told[0] == told[1]
        assert [m["offset"] for m in seen[0]] == [r["offset"] for r in answers]
        assert [m["offset"] for m in told[0]] == [r["timeline"][0]["offset"] for r in answers] == [2, 3, 4]
        assert [e["data"]["type"] for e in told[0]] == ["status", "comment", "assigned"]
        # A refused bulk update sends nothing anywhere; an accepted one is one delta.
        code, res = api(b, "POST", "/api/tickets/bulk/status", {"ids": ["X0", "X1", "X9"], "status": "closed"})
        assert code == 404 and res["error"]["unknown"] == ["X9"], res
        for agent in agents:
            await agent.assert_silent(0.3)
        code, res = api(c, "POST", "/api/tickets/bulk/status", {"ids": ["X0", "X1"], "status": "closed"})
        assert code == 200 and [t["status"] for t in res["tickets"]] == ["closed"] * 2
        for agent in agents:
            m = await agent.next()
            assert m["offset"] == res["offset"] and sorted(ch["key"] for ch in m["data"]["changes"]) == \
                ["ticket:X0", "ticket:X1"], m
        for line in lines:
            e = await line.next()
            assert e["offset"] == 5 and e["data"]["bulk"] is True and e["data"]["to"] == "closed", e
    run(go())


def _each(fn, n, *args):
    """Runs fn(k, *args) in @n threads at once; their results, in order."""
    out, go = [None] * n, threading.Barrier(n)

    def one(k):
        go.wait(5)
        out[k] = fn(k, *args)
    ts = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


def test_concurrent_changes_over_nodes_serialize(make_broker, redis):
    ns = nodes(make_broker, redis, 3)
    assert api(ns[0], "POST", "/api/tickets", {"id": "C1", "title": "busy", "requester": "u"})[0] == 200
    per = 10

    def comment(k):
        s, got = requests.Session(), []
        for i in range(per):
            r = s.post(ns[(k + i) % 3].url("/api/tickets/C1/comments"), json={"author": "a%d" % k, "text": "%d-%d" % (
                k, i)}, timeout=10)
            assert r.status_code == 200, r.text
            got.append((r.json()["comment"]["n"], r.json()["offset"], r.json()["comment"]["text"]))
        return got

    def create(k):
        s = requests.Session()
        return [s.post(ns[(k + i) % 3].url("/api/tickets"), json={"title": "t", "requester": "u%d" % k},
                       timeout=10).json()["ticket"]["id"] for i in range(per)]

    done = [x for each in _each(comment, 6) for x in each]
    assert sorted(n for n, _, _ in done) == list(range(1, 6 * per + 1)), "each comment numbered once"
    assert len({off for _, off, _ in done}) == len(done), "each change its own offset"
    # Numbered in the order they were applied: the higher number, the later offset.
    assert [n for n, _, _ in sorted(done, key=lambda d: d[1])] == list(range(1, 6 * per + 1))
    code, res = api(ns[1], "GET", "/api/tickets/C1")
    assert code == 200 and res["ticket"]["comments"] == 6 * per and len(res["comments"]) == 6 * per, res
    by_n = {n: text for n, _, text in done}
    assert [(c["n"], c["text"]) for c in res["comments"]] == sorted(by_n.items())
    h = history(ns[2], "ticket:C1")
    assert [e["type"] for e in h] == ["created"] + ["comment"] * 6 * per
    assert [e["comment"]["n"] for e in h[1:]] == list(range(1, 6 * per + 1))

    ids = [i for each in _each(create, 6) for i in each]
    assert sorted(ids) == ["T%06d" % i for i in range(1, 6 * per + 1)], "generated ids unique across nodes"

    # A race for one transition: exactly one winner, the others told why.
    for rnd in range(3):
        tid = "R%d" % rnd
        assert api(ns[rnd], "POST", "/api/tickets", {"id": tid, "title": "race", "requester": "u"})[0] == 200
        out = _each(lambda k: api(ns[k % 3], "POST", "/api/tickets/%s/status" % tid,
                                  {"status": "in_progress", "by": "agent%d" % k}), 6)
        assert sorted(code for code, _ in out) == [200] + [409] * 5, out
        winner = next(res for code, res in out if code == 200)
        for code, res in out:
            if code == 409:
                assert res["error"]["code"] == 123 and res["error"]["status"] == "in_progress", res
        assert [e["type"] for e in history(ns[0], "ticket:" + tid)] == ["created", "status"]
        assert board(ns[1])[0][tid]["updated_by"] == winner["ticket"]["updated_by"]


def test_redis_down_answers_133_then_recovers(make_broker, redis):
    a, b = nodes(make_broker, redis, 2)
    assert api(a, "POST", "/api/tickets", {"title": "before", "requester": "u"})[0] == 200
    assert api(b, "POST", "/api/tickets/T000001/comments", {"author": "u", "text": "one"})[0] == 200
    before = board(a)

    async def go():
        agent = await connect(b)
        m = await agent.request({"op": "subscribe", "id": 2, "channel": BOARD})
        assert m["op"] == "subscribed" and m["offset"] == before[1], m
        redis.kill()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and requests.get(a.url("/api/health/ready"), timeout=2).status_code == 200:
            time.sleep(0.05)
        for n in (a, b):
            for method, path, body in [("POST", "/api/tickets", {"title": "lost", "requester": "u"}),
                                       ("POST", "/api/tickets/T000001/status", {"status": "closed"}),
                                       ("POST", "/api/tickets/T000001/assign", {"assignee": "x"}),
                                       ("POST", "/api/tickets/T000001/comments", {"author": "u", "text": "two"}),
                                       ("POST", "/api/tickets/bulk/status", {"ids": ["T000001"], "status": "closed"}),
                                       ("GET", "/api/tickets/T000001", None), ("GET", "/api/tickets", None)]:
                code, res = api(n, method, path, body)
                assert code == 503 and res["error"]["code"] == 133, (path, res)
            # Bad input is still refused first, as without Redis.
            code, res = api(n, "POST", "/api/tickets", {"title": "", "requester": "u"})
            assert code == 400 and res["error"]["code"] == 103, res
        redis.start()
        wait_ready(a)
        wait_ready(b)
        # Everything acknowledged is there (appendfsync always); nothing refused was written.
        assert board(b) == before
        code, res = api(a, "GET", "/api/tickets/T000001")
        assert code == 200 and [c["text"] for c in res["comments"]] == ["one"], res
        code, res = api(a, "POST", "/api/tickets", {"title": "after", "requester": "u"})
        assert code == 200 and res["ticket"]["id"] == "T000002" and res["offset"] == before[1] + 1, res
        # The console on the other node is fed again, from where it was.
        m = await agent.next(5)
        assert m["op"] == "pub" and m["offset"] == res["offset"], m
        assert m["data"]["changes"][0]["key"] == "ticket:T000002"
        code, res = api(b, "POST", "/api/tickets/T000001/comments", {"author": "u", "text": "two"})
        assert code == 200 and res["comment"]["n"] == 2, res
    run(go(), timeout=60)


def test_a_change_cut_off_in_flight_is_whole_or_absent(make_broker, redis):
    """Redis stalls (SIGSTOP) under a comment: the node answers 133 after command_timeout,
    saying it may or may not have been applied; once Redis is back, the comment is there
    with its count and its timeline entry, or none of them is."""
    a, b = nodes(make_broker, redis, 2)
    assert api(a, "POST", "/api/tickets", {"id": "F1", "title": "flaky", "requester": "u"})[0] == 200
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        code, res = api(a, "POST", "/api/tickets/F1/comments", {"author": "u", "text": "in flight"})
        assert code == 503 and res["error"]["code"] == 133, res
        assert "may or may not have been applied" in res["error"]["reason"], res
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    wait_ready(a)
    wait_ready(b)
    code, res = api(b, "GET", "/api/tickets/F1")
    assert code == 200, res
    n = res["ticket"]["comments"]
    assert n in (0, 1) and [c["text"] for c in res["comments"]] == ["in flight"] * n, res
    assert [e["type"] for e in history(a, "ticket:F1")] == ["created"] + ["comment"] * n
    # Numbering goes on from what is there.
    code, res = api(a, "POST", "/api/tickets/F1/comments", {"author": "u", "text": "again"})
    assert code == 200 and res["comment"]["n"] == n + 1, res


def test_a_killed_node_loses_nothing_its_peers_acknowledged(make_broker, redis, tmp_path):
    """kill -9 of one node: the tickets it acknowledged are on the others, and its
    agents reconnect elsewhere and recover the board's deltas with `since`."""
    a = node(make_broker, redis)
    victim = node(make_broker, redis)
    for i in range(5):
        assert api(victim, "POST", "/api/tickets", {"id": "K%d" % i, "title": "k", "requester": "u"})[0] == 200
    off = board(a)[1]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    victim.stopped, victim.returncode = True, 0          # killed on purpose
    assert sorted(board(a)[0]) == ["K%d" % i for i in range(5)]
    assert api(a, "POST", "/api/tickets/K3/status", {"status": "closed"})[0] == 200

    async def go():
        agent = await connect(a)
        m = await agent.request({"op": "subscribe", "id": 2, "channel": BOARD, "since": {"offset": off - 2,
                                                                                          "epoch": board_epoch(a)}})
        assert m["op"] == "subscribed" and m.get("recovered") is True and m["offset"] == off + 1, m
        got = m["publications"]
        assert [g["offset"] for g in got] == [off - 1, off, off + 1], got
        assert got[-1]["data"]["changes"][0]["value"]["status"] == "closed"
        # And what follows, live, from the node that is left.
        code, res = api(a, "POST", "/api/tickets/K4/comments", {"author": "u", "text": "still here"})
        assert code == 200
        m = await agent.next()
        assert m["op"] == "pub" and m["offset"] == off + 2 == res["offset"], m
    run(go())


def board_epoch(b):
    code, body = api(b, "GET", "/api/channels/%s/state?limit=1" % BOARD)
    assert code == 200, body
    return body["epoch"]


def test_config_is_accepted_with_the_redis_engine(make_broker, redis, tmp_path):
    """[adapter tickets] with type = redis starts (beside the commerce adapter:
    test_cluster_commerce.py); a timeline namespace of its own is used on every node."""
    conf = tmp_path / "t.ini"
    conf.write_text("[adapter tickets]\nenabled = on\ndashboard_channel = desk:board\ntimeline_namespace = tl\n\n"
                    "[namespace desk]\nstate = on\nhistory = on\n\n[namespace tl]\nhistory = on\nhistory_size = 2\n")
    a = node(make_broker, redis, "--config", str(conf))
    b = node(make_broker, redis, "--config", str(conf))
    code, res = api(a, "POST", "/api/tickets", {"id": "c1", "title": "x", "requester": "u"})
    assert code == 200 and res["channel"] == "desk:board" and res["timeline"] == [{"channel": "tl:c1", "offset": 1}]
    for i in range(3):
        assert api(b, "POST", "/api/tickets/c1/comments", {"author": "u", "text": str(i)})[0] == 200
    # The timeline's namespace keeps 2 entries: its history_size holds in Redis too.
    assert [e["comment"]["text"] for e in history(a, "tl:c1")] == ["1", "2"]
    code, res = api(b, "GET", "/api/tickets?status=open")
    assert code == 200 and res["channel"] == "desk:board" and [i["key"] for i in res["items"]] == ["ticket:c1"]
    # Each node counts the changes it made, with their timeline entries in the timelines' namespace.
    for n, made in ((a, 1), (b, 3)):
        m = scrape_metrics(n)
        assert m['herald_publications_total{namespace="desk"}'] == made, m
        assert m['herald_publications_total{namespace="tl"}'] == made, m


# -- ticket.changed webhook events (docs/cluster.md#support-tickets) ----------------------

def desk_conf(tmp_path, url, name="desk.conf", feed=None):
    """[webhook desk] that wants ticket.changed, and a [webhook pubs] that wants
    none of them (publications of no namespace): it must get nothing. Many
    attempts: the fault test keeps the receiver failing for seconds. With @feed,
    a [webhook feed] posting there the publications of the dashboard and the
    timelines."""
    conf = tmp_path / name
    conf.write_text(
        "[webhook desk]\nurl = %s\nsecret = %s\nevents = ticket.changed\n"
        "timeout = 2s\nretry_base = 50ms\nretry_max = 200ms\nmax_attempts = 1000\n\n"
        "[webhook pubs]\nurl = %s\nsecret = %s\nevents = publication\nnamespaces = none\n"
        % (url, WH_SECRET, url, WH_SECRET))
    if feed:
        with conf.open("a") as f:
            f.write("\n[webhook feed]\nurl = %s\nsecret = %s\nevents = publication\n"
                    "namespaces = helpdesk, ticket\ntimeout = 2s\n" % (feed, WH_SECRET))
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
    return {chan: [(e["offset"], untimed(e["data"])) for e in es] for chan, es in out.items()}


def by_channel(evs):
    """{timeline channel: [events without ids and times]}, each channel's in the
    order received, after checking that its ids rise (per-channel order)."""
    out = {}
    for e in evs:
        assert e["type"] == "ticket.changed", e
        out.setdefault(e["channel"], []).append(e)
    for chan, es in out.items():
        ids = [int(e["id"]) for e in es]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), (chan, ids)
    return {chan: [untimed({k: v for k, v in e.items() if k != "id"}) for e in es] for chan, es in out.items()}


# The acknowledged changes of WALK: one event per timeline entry (the bulk update
# makes three).
WALK_EVENTS = 15


def test_ticket_events_from_two_nodes_are_lmdbs(make_broker, redis, receiver, tmp_path):
    """[webhook] events = ticket.changed under the redis engine: WALK spread over two
    nodes gives one event per timeline entry, each timeline's in order, signed,
    with LMDB's fields and values (times aside); refusals and reads give none; a
    webhook that wants other events gets none of these."""
    rl, rr, fl, fr = receiver(), receiver(), receiver(), receiver()
    lmdb = make_broker("--config", str(desk_conf(tmp_path, rl.url, "lmdb.conf", fl.url)), *ON, name="lmdb")
    a, b = nodes(make_broker, redis, 2, "--config", str(desk_conf(tmp_path, rr.url, feed=fr.url)),
                 "--engine-webhook-lease", "1s")
    want, got = walk([lmdb]), walk([a, b])
    assert [g[0] for g in got] == [w[0] for w in want]
    rl.wait_events(lambda e: len(e) >= WALK_EVENTS, timeout=20)
    rr.wait_events(lambda e: len(e) >= WALK_EVENTS, timeout=20)
    time.sleep(0.5)                                              # anything more would come now
    want, got = rl.events(), rr.events()
    assert len(want) == WALK_EVENTS, want
    assert len(got) == WALK_EVENTS and len({e["id"] for e in got}) == WALK_EVENTS, got
    assert by_channel(got) == by_channel(want)
    t1 = [e for e in got if e["channel"] == "ticket:T-1"]
    assert [(e["change"], e["ticket"]) for e in t1] == [
        (c, "T-1") for c in ("created", "status", "assigned", "assigned", "comment", "comment", "status", "status")]
    assert t1[2]["to"] == "agent7" and t1[2]["by"] == "lead1" and t1[3]["from"] == "agent7" and t1[3]["to"] is None
    assert t1[5]["comment"]["text"] == "thanks \u00e9\u4e2d" and t1[6]["bulk"] is True, t1
    # Times are Redis': an entry's "at" is the ticket's "updated" then.
    assert t1[-1]["at"] == board(a)[0]["T-1"]["updated"], t1[-1]
    for headers, body, _ in rr.requests + rl.requests:
        verify(headers, body)
    # The publications go to the webhooks that want them, from the same script,
    # as on LMDB: the dashboard's deltas (one per acknowledged change) and each
    # timeline entry.
    npub = 13 + WALK_EVENTS
    fl.wait_events(lambda e: len(e) >= npub, timeout=20)
    fr.wait_events(lambda e: len(e) >= npub, timeout=20)
    time.sleep(0.3)
    want_p, got_p = publications(fl.events()), publications(fr.events())
    assert got_p == want_p, (got_p, want_p)
    assert len(got_p[BOARD]) == 13 and sum(len(v) for v in got_p.values()) == npub, got_p


def test_ticket_events_whole_or_absent_across_redis_faults(make_broker, redis, receiver, tmp_path):
    """Events live in Redis with the change: a change answered 503 while Redis is
    down queues none; one cut off in flight (SIGSTOP) has its event exactly when it
    has its comment; events queued while the receiver fails survive a Redis restart
    and arrive once it is back, each once."""
    up = [False]
    rcv = receiver(behave=lambda n: 200 if up[0] else 503)
    a, b = nodes(make_broker, redis, 2, "--config", str(desk_conf(tmp_path, rcv.url)), "--engine-webhook-lease", "1s")
    assert api(a, "POST", "/api/tickets", {"id": "F1", "title": "flaky", "requester": "u"})[0] == 200
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        code, res = api(b, "POST", "/api/tickets/F1/comments", {"author": "u", "text": "in flight"})
        assert code == 503 and res["error"]["code"] == 133, res
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    wait_ready(a)
    wait_ready(b)
    n = api(a, "GET", "/api/tickets/F1")[1]["ticket"]["comments"]
    assert n in (0, 1)
    redis.kill()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and requests.get(b.url("/api/health/ready"), timeout=2).status_code == 200:
        time.sleep(0.05)
    assert api(b, "POST", "/api/tickets/F1/status", {"status": "closed"})[0] == 503           # no event
    redis.start()
    wait_ready(a)
    wait_ready(b)
    assert api(b, "POST", "/api/tickets/F1/assign", {"assignee": "agent7"})[0] == 200
    assert api(a, "POST", "/api/tickets/F1/status", {"status": "in_progress"})[0] == 200
    assert api(a, "POST", "/api/tickets/F1/status", {"status": "in_progress"})[0] == 409        # no event
    up[0] = True
    evs = rcv.wait_events(lambda e: len({x["id"] for x in e}) >= 3 + n, timeout=20)
    time.sleep(0.5)
    first = {}
    for e in rcv.events():
        first.setdefault(e["id"], e)                             # at least once: repeats keep their id
    assert [e["change"] for e in first.values()] == ["created"] + ["comment"] * n + ["assigned", "status"], evs
    assert [e["comment"]["text"] for e in first.values() if e["change"] == "comment"] == ["in flight"] * n
    assert [e["type"] for e in history(a, "ticket:F1")] == ["created"] + ["comment"] * n + ["assigned", "status"]
