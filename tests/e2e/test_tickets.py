"""The support-tickets adapter (docs/adapters.md "Support tickets", docs/rest-api.md
"Adapters: support tickets"): tickets as keyed state on the dashboard channel
helpdesk:tickets, the status machine, bulk updates all or none, comments, the
timeline channels ticket:{id}, the dashboard query (?status=&q=&limit=), agents'
consoles seeing every change live, bad input refused with nothing written, the
[adapter tickets] configuration, a kill -9 in the middle of adapter traffic, and the
ticket dashboard widget (/widgets/tickets.html) in headless Chromium
(tests/browser/tickets_check.mjs). The tests that take `engine_broker` run on both
engines, LMDB and Redis (one node; several nodes: test_cluster_tickets.py), and so
does the webhook test (ticket.changed)."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import HERALD_BIN, REPO, Broker, connect, herald_env, hs256_token, run, run_herald, ws_connect
from test_webhooks import SECRET as WH_SECRET, receiver, verify  # noqa: F401 (a fixture)

SECRET = b"0123456789abcdef0123456789abcdef-tickets"
ON = ("--tickets", "on", "--rest-per-minute", "0")
BOARD = "helpdesk:tickets"


def api(b, method, path, body=None, **kw):
    r = requests.request(method, b.url(path), json=body, timeout=10, **kw)
    return r.status_code, r.json()


def create(b, **fields):
    return api(b, "POST", "/api/tickets", fields)


def move(b, tid, status, **extra):
    return api(b, "POST", "/api/tickets/%s/status" % tid, {"status": status, **extra})


def board(b):
    """{id: ticket} and the dashboard's offset."""
    code, body = api(b, "GET", "/api/channels/%s/state?limit=1000" % BOARD)
    assert code == 200, body
    return {i["value"]["id"]: i["value"] for i in body["items"]}, body["offset"]


def history(b, channel):
    r = requests.get(b.url("/api/channels/%s/history?limit=1000" % channel), timeout=10)
    assert r.status_code == 200, r.text
    return [p["data"] for p in r.json()["publications"]]


def wait_history(b, channel, n, timeout=5.0):
    """The timeline entries follow the commit they tell of: wait for @n of them."""
    deadline = time.monotonic() + timeout
    while True:
        h = history(b, channel)
        if len(h) >= n or time.monotonic() > deadline:
            return h
        time.sleep(0.02)


def test_lifecycle_answers_with_offsets_and_writes_the_timeline(engine_broker):
    b = engine_broker(*ON)
    code, res = create(b, id="T-1", title="Cannot log in", description="the login page says 500",
                       requester="alice", priority="high")
    assert code == 200, res
    t = res["ticket"]
    assert (t["id"], t["status"], t["priority"], t["requester"], t["assignee"], t["comments"]) == \
        ("T-1", "open", "high", "alice", None, 0)
    assert res["channel"] == BOARD and res["offset"] == 1
    assert res["timeline"] == [{"channel": "ticket:T-1", "offset": 1}]
    # Written in the change's transaction: in the timeline's history when the answer comes.
    assert [e["type"] for e in history(b, "ticket:T-1")] == ["created"]
    assert res["changes"] == [{"key": "ticket:T-1", "value": t, "version": 1}]

    # Without an id the broker numbers tickets, in the order they were made.
    code, res = create(b, title="Printer on fire", requester="bob")
    assert code == 200 and res["ticket"]["id"] == "T000001" and res["ticket"]["priority"] == "normal", res
    assert res["ticket"]["description"] == "" and res["offset"] == 2
    assert create(b, title="VPN", requester="carol")[1]["ticket"]["id"] == "T000002"

    code, res = move(b, "T-1", "in_progress", by="agent7")
    assert code == 200 and res["from"] == "open" and res["ticket"]["status"] == "in_progress", res
    assert res["ticket"]["updated_by"] == "agent7" and res["offset"] == 4
    code, res = api(b, "POST", "/api/tickets/T-1/assign", {"assignee": "agent7", "by": "lead1"})
    assert code == 200 and res["from"] is None and res["ticket"]["assignee"] == "agent7", res
    code, res = api(b, "POST", "/api/tickets/T-1/assign", {"assignee": None})
    assert code == 200 and res["from"] == "agent7" and res["ticket"]["assignee"] is None, res
    code, res = api(b, "POST", "/api/tickets/T-1/comments", {"author": "agent7", "text": "Looking into it"})
    assert code == 200 and res["comment"]["n"] == 1 and res["ticket"]["comments"] == 1, res
    assert api(b, "POST", "/api/tickets/T-1/comments", {"author": "alice", "text": "thanks"})[0] == 200
    code, res = move(b, "T-1", "closed")
    assert code == 200 and res["from"] == "in_progress" and res["offset"] == 9, res
    code, res = move(b, "T-1", "open")                      # reopen
    assert code == 200 and res["from"] == "closed", res

    code, res = api(b, "GET", "/api/tickets/T-1")
    assert code == 200 and res["ticket"]["status"] == "open" and res["ticket"]["comments"] == 2, res
    assert [(c["n"], c["author"], c["text"]) for c in res["comments"]] == \
        [(1, "agent7", "Looking into it"), (2, "alice", "thanks")]
    assert res["offset"] == 10 and res["changes"] == []       # a read writes nothing

    h = wait_history(b, "ticket:T-1", 8)
    assert [e["type"] for e in h] == ["created", "status", "assigned", "assigned", "comment", "comment", "status",
                                      "status"], h
    assert h[0]["ticket"]["title"] == "Cannot log in"
    assert (h[1]["from"], h[1]["to"], h[1]["by"]) == ("open", "in_progress", "agent7")
    assert (h[2]["to"], h[2]["by"]) == ("agent7", "lead1") and h[3]["to"] is None
    assert h[4]["comment"]["text"] == "Looking into it"
    assert (h[7]["from"], h[7]["to"]) == ("closed", "open") and all("at" in e for e in h)


def test_illegal_transitions_are_refused_with_the_allowed_ones(engine_broker):
    b = engine_broker(*ON)
    assert create(b, id="a", title="x", requester="u")[0] == 200
    before = board(b)
    for status, allowed in [("open", ["in_progress", "closed"])]:
        code, res = move(b, "a", status)
        assert code == 409 and res["error"]["code"] == 123, res
        assert res["error"]["status"] == "open" and res["error"]["allowed"] == allowed
    assert move(b, "a", "closed")[0] == 200
    code, res = move(b, "a", "in_progress")
    assert code == 409 and res["error"]["allowed"] == ["open"] and res["error"]["status"] == "closed", res
    code, res = move(b, "a", "closed")
    assert code == 409 and res["error"]["code"] == 123
    assert board(b)[1] == before[1] + 1                        # only the one legal change was written


def test_bulk_status_is_all_or_none(engine_broker):
    b = engine_broker(*ON)
    for i in range(5):
        assert create(b, id="b%d" % i, title="bulk %d" % i, requester="u")[0] == 200
    assert move(b, "b4", "closed")[0] == 200
    before = board(b)

    # One unknown id refuses the whole batch, naming it.
    code, res = api(b, "POST", "/api/tickets/bulk/status", {"ids": ["b0", "b1", "nope", "zz"], "status": "closed"})
    assert code == 404 and res["error"]["code"] == 128 and res["error"]["unknown"] == ["nope", "zz"], res
    # One illegal transition (b4 is closed already) refuses it too, naming it with what it allows.
    code, res = api(b, "POST", "/api/tickets/bulk/status", {"ids": ["b0", "b4", "b1"], "status": "closed"})
    assert code == 409 and res["error"]["code"] == 123, res
    assert res["error"]["refused"] == [{"id": "b4", "status": "closed", "allowed": ["open"]}]
    assert board(b) == before, "a refused batch wrote nothing"

    code, res = api(b, "POST", "/api/tickets/bulk/status", {"ids": ["b0", "b1", "b2", "b3"], "status": "in_progress",
                                                            "by": "agent7"})
    assert code == 200, res
    assert res["offset"] == before[1] + 1, "one commit, one offset for the whole batch"
    assert [t["id"] for t in res["tickets"]] == ["b0", "b1", "b2", "b3"]
    assert res["from"] == {"b0": "open", "b1": "open", "b2": "open", "b3": "open"}
    assert sorted(c["key"] for c in res["changes"]) == ["ticket:b0", "ticket:b1", "ticket:b2", "ticket:b3"]
    assert res["timeline"] == [{"channel": "ticket:b%d" % i, "offset": 2} for i in range(4)]
    now = board(b)[0]
    assert [now["b%d" % i]["status"] for i in range(5)] == ["in_progress"] * 4 + ["closed"]
    h = wait_history(b, "ticket:b2", 2)
    assert h[-1] == {"type": "status", "from": "open", "to": "in_progress", "bulk": True, "by": "agent7",
                     "at": now["b2"]["updated"]}


def test_dashboard_query_filters_searches_and_pages(engine_broker):
    b = engine_broker(*ON)
    titles = ["login fails", "printer jam", "login slow", "vpn down", "cannot login on mobile", "email bounce"]
    for i, title in enumerate(titles):
        assert create(b, id="q%d" % i, title=title, requester="user%d" % i)[0] == 200
    assert move(b, "q2", "closed")[0] == 200
    assert api(b, "POST", "/api/tickets/q3/assign", {"assignee": "agent9"})[0] == 200

    code, res = api(b, "GET", "/api/tickets?status=open&q=login&limit=10")
    assert code == 200, res
    assert [i["value"]["id"] for i in res["items"]] == ["q0", "q4"] and res["next_cursor"] is None
    assert res["channel"] == BOARD and res["offset"] == 8
    # The generic state query says the same about the same channel.
    code, res2 = api(b, "GET", "/api/channels/%s/state?field=status&value=open&q=login&limit=10" % BOARD)
    assert code == 200 and res2["items"] == res["items"]
    code, res = api(b, "GET", "/api/tickets?status=closed")
    assert [i["value"]["id"] for i in res["items"]] == ["q2"]
    code, res = api(b, "GET", "/api/tickets?assignee=agent9")
    assert [i["value"]["id"] for i in res["items"]] == ["q3"]
    # Pages: two at a time, with the cursor.
    seen, cursor = [], None
    while True:
        code, res = api(b, "GET", "/api/tickets?status=open&limit=2" + ("&cursor=" + cursor if cursor else ""))
        assert code == 200 and len(res["items"]) <= 2
        seen += [i["value"]["id"] for i in res["items"]]
        cursor = res["next_cursor"]
        if not cursor:
            break
    assert seen == ["q0", "q1", "q3", "q4", "q5"]
    for q, why in [("status=pending", "status must be one of"), ("status=open&assignee=x", "one of status="),
                   ("limit=0", "limit must be"), ("limit=abc", "limit must be")]:
        code, res = api(b, "GET", "/api/tickets?" + q)
        assert code == 400 and res["error"]["code"] == 103 and why in res["error"]["reason"], (q, res)


def test_agents_see_new_and_changed_tickets_live(engine_broker):
    b = engine_broker(*ON)
    assert create(b, id="L1", title="before", requester="u")[0] == 200

    async def main():
        agent = await connect(b)
        m = await agent.request({"op": "subscribe", "id": 2, "channel": BOARD})
        assert m["op"] == "subscribed" and list(m["state"]) == ["ticket:L1"], m
        assert m["state"]["ticket:L1"]["value"]["title"] == "before"
        timeline = await connect(b)
        await timeline.subscribe("ticket:L2")
        t0 = time.monotonic()
        code, res = await_rest(create, b, id="L2", title="new one", requester="v")
        assert code == 200
        m = await agent.next()
        assert m["op"] == "pub" and m["channel"] == BOARD and m["offset"] == res["offset"], m
        assert m["data"]["changes"][0]["key"] == "ticket:L2" and m["data"]["changes"][0]["value"]["status"] == "open"
        e = await timeline.next()
        assert e["op"] == "pub" and e["data"]["type"] == "created", e
        code, res = await_rest(move, b, "L2", "in_progress")
        m = await agent.next()
        assert m["data"]["changes"][0]["value"]["status"] == "in_progress"
        e = await timeline.next()
        assert (e["data"]["from"], e["data"]["to"]) == ("open", "in_progress")
        return time.monotonic() - t0
    elapsed = run(main())
    assert elapsed < 5


def await_rest(fn, *a, **kw):
    """A blocking REST call from inside a coroutine (the broker answers quickly)."""
    return fn(*a, **kw)


BAD = [
    # (method, path, body, HTTP status, error code)
    ("POST", "/api/tickets", "not json", 400, 101),
    ("POST", "/api/tickets", [], 400, 101),                                          # not an object
    ("POST", "/api/tickets", {}, 400, 103),
    ("POST", "/api/tickets", {"title": "x"}, 400, 103),                              # no requester
    ("POST", "/api/tickets", {"requester": "u"}, 400, 103),                          # no title
    ("POST", "/api/tickets", {"title": "", "requester": "u"}, 400, 103),
    ("POST", "/api/tickets", {"title": "t" * 201, "requester": "u"}, 400, 103),
    ("POST", "/api/tickets", {"title": 5, "requester": "u"}, 400, 103),
    ("POST", "/api/tickets", {"title": "x", "requester": "a,b"}, 400, 103),
    ("POST", "/api/tickets", {"title": "x", "requester": "u", "priority": "meh"}, 400, 103),
    ("POST", "/api/tickets", {"title": "x", "requester": "u", "priority": 1}, 400, 103),
    ("POST", "/api/tickets", {"title": "x", "requester": "u", "description": ["no"]}, 400, 103),
    ("POST", "/api/tickets", {"title": "x", "requester": "u", "description": "d" * 4001}, 400, 103),
    ("POST", "/api/tickets", {"title": "x", "requester": "u", "id": "has space"}, 400, 103),
    ("POST", "/api/tickets", {"title": "x", "requester": "u", "id": 7}, 400, 103),
    ("POST", "/api/tickets", {"title": "x", "requester": "u", "id": "bulk"}, 400, 103),
    ("POST", "/api/tickets", {"title": "x", "requester": "u", "status": "closed"}, 400, 103),   # unknown field
    ("POST", "/api/tickets", {"title": "x", "requester": "u", "big": "y" * 9000}, 413, 109),   # over the limit
    ("POST", "/api/tickets/k1/status", {"status": "done"}, 400, 103),
    ("POST", "/api/tickets/k1/status", {"status": None}, 400, 103),
    ("POST", "/api/tickets/k1/status", {}, 400, 103),
    ("POST", "/api/tickets/k1/status", {"status": "closed", "by": ""}, 400, 103),
    ("POST", "/api/tickets/k1/status", "not json", 400, 101),
    ("POST", "/api/tickets/nope/status", {"status": "closed"}, 404, 128),
    ("POST", "/api/tickets/k1/status", {"status": "open"}, 409, 123),
    ("POST", "/api/tickets/k1/assign", {}, 400, 103),
    ("POST", "/api/tickets/k1/assign", {"assignee": 3}, 400, 103),
    ("POST", "/api/tickets/k1/assign", {"assignee": "a#b"}, 400, 103),
    ("POST", "/api/tickets/nope/assign", {"assignee": "x"}, 404, 128),
    ("POST", "/api/tickets/k1/comments", {"author": "u"}, 400, 103),
    ("POST", "/api/tickets/k1/comments", {"author": "u", "text": ""}, 400, 103),
    ("POST", "/api/tickets/k1/comments", {"text": "hi"}, 400, 103),
    ("POST", "/api/tickets/k1/comments", {"author": "u", "text": "hi", "internal": True}, 400, 103),
    ("POST", "/api/tickets/nope/comments", {"author": "u", "text": "hi"}, 404, 128),
    ("POST", "/api/tickets/bulk/status", {"ids": [], "status": "closed"}, 400, 103),
    ("POST", "/api/tickets/bulk/status", {"ids": "k1", "status": "closed"}, 400, 103),
    ("POST", "/api/tickets/bulk/status", {"ids": ["k1", "k1"], "status": "closed"}, 400, 103),
    ("POST", "/api/tickets/bulk/status", {"ids": ["k1", 2], "status": "closed"}, 400, 103),
    ("POST", "/api/tickets/bulk/status", {"ids": ["t%d" % i for i in range(101)], "status": "closed"}, 400, 103),
    ("POST", "/api/tickets/bulk/status", {"ids": ["k1"]}, 400, 103),
    ("POST", "/api/tickets/bulk/status", {"ids": ["k1", "nope"], "status": "closed"}, 404, 128),
    ("POST", "/api/tickets/bulk/status", {"ids": ["k1"], "status": "open"}, 409, 123),
    ("GET", "/api/tickets/nope", None, 404, 128),
    ("GET", "/api/tickets/bad%20id", None, 400, 103),
    ("POST", "/api/tickets/k1/close", {}, 404, 103),
    ("DELETE", "/api/tickets/k1", None, 405, 103),
]


def test_bad_input_is_refused_and_writes_nothing(engine_broker):
    b = engine_broker(*ON, "--max-message-size", "8192")
    assert create(b, id="k1", title="keep", requester="u")[0] == 200
    before = board(b)

    async def main():
        # Another client, unaffected: it keeps getting its messages throughout.
        other = await connect(b)
        await other.subscribe("news:x")
        for i, (method, path, body, status, code) in enumerate(BAD):
            if body == "not json":
                r = requests.request(method, b.url(path), data=b"{nope", timeout=10,
                                     headers={"Content-Type": "application/json"})
            else:
                r = requests.request(method, b.url(path), json=body, timeout=10)
            assert r.status_code == status, (method, path, body, r.status_code, r.text)
            assert r.json()["error"]["code"] == code, (path, body, r.text)
            b.publish_rest("news:x", {"n": i})
            m = await other.next()
            assert m["op"] == "pub" and m["data"] == {"n": i}, m
    run(main(), timeout=60)
    assert board(b) == before, "no bad request wrote anything"
    assert history(b, "ticket:k1")[-1]["type"] == "created"
    code, res = create(b, id="k1", title="again", requester="v")                   # ids are unique
    assert code == 409 and res["error"]["code"] == 129 and res["error"]["ticket"]["title"] == "keep", res
    # The dashboard changes through the adapter only.
    code, res = api(b, "POST", "/api/channels/%s/state" % BOARD, {"ops": [{"op": "set", "key": "ticket:k1",
                                                                           "value": {}}]})
    assert code == 403 and res["error"]["code"] == 114, res

    async def ws_state_op():
        c = await connect(b)
        m = await c.request({"op": "state", "id": 5, "channel": BOARD,
                             "ops": [{"op": "set", "key": "ticket:k1", "value": {}}]})
        assert m["op"] == "error" and m["code"] == 114, m
        m = await c.request({"op": "publish", "id": 6, "channel": "ticket:k1", "data": {"type": "forged"}})
        assert m["op"] == "error" and m["code"] == 114, m          # timelines are the broker's account
    run(ws_state_op())
    assert board(b) == before
    assert b.health().status_code == 200


def test_off_by_default(engine_broker):
    b = engine_broker()
    for method, path in [("POST", "/api/tickets"), ("GET", "/api/tickets"), ("GET", "/api/tickets/x"),
                         ("POST", "/api/tickets/x/status"), ("POST", "/api/tickets/bulk/status")]:
        code, res = api(b, method, path, {} if method == "POST" else None)
        assert code == 404 and res["error"]["code"] == 116, (path, res)


def test_api_key_needs_the_dashboard_channel(engine_broker):
    b = engine_broker(*ON, "--apikey", "desk.secret=desk-key-0123456789", "--apikey", "desk.publish=helpdesk",
                    "--apikey", "blog.secret=blog-key-0123456789", "--apikey", "blog.publish=news")
    url = b.url("/api/tickets")
    body = {"title": "x", "requester": "u"}
    r = requests.post(url, json=body, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == 113, r.text
    r = requests.post(url, json=body, headers={"Authorization": "Bearer blog-key-0123456789"}, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == 114, r.text
    r = requests.post(url, json=body, headers={"Authorization": "Bearer desk-key-0123456789"}, timeout=10)
    assert r.status_code == 200 and r.json()["ticket"]["id"] == "T000001", r.text


def test_agents_only_with_the_recommended_permissions(engine_broker, tmp_path):
    """docs/adapters.md's recommended config: the board and timelines are readable
    with a grant (the token's channels claim), which agents' tokens carry."""
    conf = tmp_path / "desk.ini"
    conf.write_text("[auth]\nanonymous = off\nhmac_secret = %s\n\n[adapter tickets]\nenabled = on\n\n"
                    "[namespace helpdesk]\nsubscribe = granted\n\n[namespace ticket]\nsubscribe = granted\n"
                    % SECRET.decode())
    b = engine_broker("--config", str(conf), "--rest-per-minute", "0")
    assert create(b, id="P1", title="private", requester="alice")[0] == 200

    async def main():
        async def user(sub, **claims):
            c = await ws_connect(b)
            m = await c.request({"op": "connect", "id": 1, "token": hs256_token(SECRET, sub, **claims)})
            assert m["op"] == "connected", m
            return c
        alice = await user("alice")
        m = await alice.request({"op": "subscribe", "id": 2, "channel": BOARD})
        assert m["op"] == "error" and m["code"] == 114, m
        m = await alice.request({"op": "subscribe", "id": 3, "channel": "ticket:P1"})
        assert m["op"] == "error" and m["code"] == 114, m
        agent = await user("agent7", channels=["helpdesk:*", "ticket:*"])
        m = await agent.request({"op": "subscribe", "id": 2, "channel": BOARD})
        assert m["op"] == "subscribed" and "ticket:P1" in m["state"], m
        m = await agent.request({"op": "subscribe", "id": 3, "channel": "ticket:P1"})
        assert m["op"] == "subscribed", m
    run(main())


def test_config_section_names_the_channels(engine_broker, tmp_path):
    conf = tmp_path / "t.ini"
    conf.write_text("[adapter tickets]\nenabled = on\ndashboard_channel = desk:board\ntimeline_namespace = tl\n\n"
                    "[namespace desk]\nstate = on\nhistory = on\n\n[namespace tl]\nhistory = on\n")
    b = engine_broker("--config", str(conf), "--rest-per-minute", "0")
    code, res = create(b, id="c1", title="x", requester="u")
    assert code == 200 and res["channel"] == "desk:board" and res["timeline"] == [{"channel": "tl:c1", "offset": 1}], res
    assert [e["type"] for e in wait_history(b, "tl:c1", 1)] == ["created"]
    code, res = api(b, "GET", "/api/tickets?status=open")
    assert code == 200 and res["channel"] == "desk:board" and len(res["items"]) == 1


def test_config_section_errors(tmp_path):
    bad = tmp_path / "bad.ini"
    d = str(tmp_path / "d")
    bad.write_text("[server]\nport = 0\n\n[adapter tickets]\nenabled = on\ndashboard_channel = chat:board\n")
    r = run_herald(["--config", str(bad), "--data-dir", d])
    assert r.returncode != 0
    assert "%s:6" % bad in r.stderr and "dashboard_channel" in r.stderr and "state = on" in r.stderr, r.stderr
    bad.write_text("[adapter tickets]\nenabled = on\ntimeline_namespace = a:b\n")
    r = run_herald(["--config", str(bad), "--data-dir", d])
    assert r.returncode != 0 and "%s:3" % bad in r.stderr and "timeline_namespace" in r.stderr, r.stderr
    bad.write_text("[adapter tickets]\nenabled = on\ntimeline_namespace = nohist\n\n[namespace nohist]\n"
                   "history = off\n")
    r = run_herald(["--config", str(bad), "--data-dir", d])
    assert r.returncode != 0 and "history = on" in r.stderr, r.stderr
    bad.write_text("[adapter tickets]\nenabled = perhaps\n")
    r = run_herald(["--config", str(bad), "--data-dir", d])
    assert r.returncode != 0 and ":2" in r.stderr and "enabled" in r.stderr, r.stderr
    bad.write_text("[adapter tickets]\ncolour = red\n")
    r = run_herald(["--config", str(bad), "--data-dir", d])
    assert r.returncode != 0 and "unknown key" in r.stderr, r.stderr


def test_tickets_survive_a_restart(engine_broker, tmp_path):
    d = tmp_path / "keep"
    b = engine_broker(*ON, data_dir=str(d))
    assert create(b, title="one", requester="u")[0] == 200
    assert api(b, "POST", "/api/tickets/T000001/comments", {"author": "u", "text": "c1"})[0] == 200
    b.stop()
    b2 = engine_broker(*ON, data_dir=str(d))
    code, res = api(b2, "GET", "/api/tickets/T000001")
    assert code == 200 and res["ticket"]["comments"] == 1 and res["comments"][0]["text"] == "c1"
    # The numbering goes on where it was.
    assert create(b2, title="two", requester="u")[1]["ticket"]["id"] == "T000002"


def _traffic(url, k, acked, stop):
    """One backend thread: creates tickets, moves them and comments on them;
    records what was acknowledged (a 200 answer) before the kill."""
    s = requests.Session()
    n = 0
    while not stop.is_set():
        tid = "k%s-%d" % (k, n)
        try:
            r = s.post(url + "/api/tickets", json={"id": tid, "title": "t " + tid, "requester": "u%s" % k},
                       timeout=5)
            if r.status_code != 200:
                break
            acked.append(("create", tid, None))
            r = s.post(url + "/api/tickets/%s/comments" % tid, json={"author": "u", "text": "c-" + tid}, timeout=5)
            if r.status_code != 200:
                break
            acked.append(("comment", tid, "c-" + tid))
            r = s.post(url + "/api/tickets/%s/status" % tid, json={"status": "in_progress"}, timeout=5)
            if r.status_code != 200:
                break
            acked.append(("status", tid, "in_progress"))
        except requests.RequestException:
            break
        n += 1


def test_kill_9_during_traffic_loses_no_acknowledged_change(engine_broker, tmp_path):
    data = tmp_path / "crash"
    acked = []
    for cycle in range(2):
        b = engine_broker(*ON, data_dir=data, name="k%d" % cycle)
        stop = threading.Event()
        threads = [threading.Thread(target=_traffic, args=(b.http_url, "%d%d" % (cycle, k), acked, stop))
                   for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0 + 0.5 * cycle)
        b.send_signal(signal.SIGKILL)
        b.wait(10)
        stop.set()
        for t in threads:
            t.join(30)
        b.stopped, b.returncode = True, 0          # killed on purpose
    b = engine_broker(*ON, data_dir=data, name="after")
    assert len(acked) > 30, "traffic was acknowledged before the kills: %d" % len(acked)
    tickets = board(b)[0]
    for kind, tid, val in acked:
        assert tid in tickets, "acknowledged ticket %s is gone" % tid
        if kind == "status":
            assert tickets[tid]["status"] == "in_progress", tickets[tid]
    # Each acknowledged comment is there exactly once.
    commented = {tid for kind, tid, _ in acked if kind == "comment"}
    for tid in commented:
        code, res = api(b, "GET", "/api/tickets/" + tid)
        assert code == 200 and [c["text"] for c in res["comments"]] == ["c-" + tid], res
        assert res["ticket"]["comments"] == 1
    # A ticket whose answer was lost in the kill is either whole or absent, and
    # a retried create of any of them is refused, not applied twice.
    for tid, t in tickets.items():
        assert t["comments"] in (0, 1) and t["status"] in ("open", "in_progress")
    # Each stored ticket's timeline tells exactly what it went through, once
    # each: the entries commit with the changes (none lost, none doubled).
    for tid, t in tickets.items():
        want = ["created"] + ["comment"] * t["comments"] + (["status"] if t["status"] == "in_progress" else [])
        assert [e["type"] for e in history(b, "ticket:" + tid)] == want, tid
    some = next(iter(commented))
    code, res = create(b, id=some, title="again", requester="x")
    assert code == 409 and res["error"]["code"] == 129
    print("\nKILL-9 tickets: %d changes acknowledged over 2 kills, %d tickets stored" % (len(acked), len(tickets)))


# -- the widget -----------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
NODE = shutil.which("node")
BROWSER_DIR = REPO / "tests" / "browser"
ARTIFACTS = Path(HERALD_BIN).resolve().parent.parent / "test-artifacts" / "widgets"


def test_widget_is_served_and_listed(broker):
    idx = requests.get(broker.url("/widgets/"), timeout=5)
    assert idx.status_code == 200 and "/widgets/tickets.html" in idx.text
    for name in ("tickets.html", "tickets.js"):
        r = requests.get(broker.url("/widgets/" + name), timeout=5)
        assert r.status_code == 200, name
        assert r.content == (REPO / "broker" / "app" / "widgets" / name).read_bytes()


def test_widget_in_browser():
    """Two agents on the dashboard: create with the form, filter, search, status
    buttons, take, bulk close, a refused bulk update, and REST changes seen live."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(CHROMIUM + " is missing (apt-get install chromium)")
    if NODE is None:
        pytest.skip("node is missing (apt-get install nodejs npm)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("tests/browser/node_modules/playwright-core is missing (npm ci --prefix tests/browser)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = dict(herald_env(), HERALD_BIN=HERALD_BIN, ARTIFACTS=str(ARTIFACTS))
    timeout_ms = 90000
    try:
        p = subprocess.run([NODE, str(BROWSER_DIR / "tickets_check.mjs"), str(timeout_ms)], cwd=str(BROWSER_DIR),
                           env=env, capture_output=True, text=True, timeout=timeout_ms / 1000 + 15)
    except subprocess.TimeoutExpired:
        raise AssertionError("tickets_check.mjs outlived its own timeout") from None
    lines = p.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise AssertionError("tickets_check.mjs printed no summary (exit %s):\n%s\n%s" % (
            p.returncode, p.stdout[-4000:], p.stderr[-4000:])) from None
    assert p.returncode == 0 and summary["ok"], "tickets widget check failed: %s\n%s" % (
        json.dumps(summary, indent=1, ensure_ascii=False), p.stderr[-4000:])
    assert summary["screenshots"], "no screenshot was kept"
    print("\nTICKETS WIDGET: %d checks; create seen by the other agent in %d ms, a REST change in %d ms" % (
        len(summary["checks"]), summary["timings"]["create_seen_by_other_ms"],
        summary["timings"]["rest_change_seen_ms"]))


def test_webhook_gets_ticket_changed_with_each_timeline_entry(tmp_path, receiver, engine):  # noqa: F811
    """[webhook] events = ticket.changed: one event per timeline entry, queued in the
    change's transaction (under redis, its script), signed; a refused change sends none."""
    rcv = receiver()
    conf = tmp_path / "herald.conf"
    conf.write_text("[adapter tickets]\nenabled = on\n\n[webhook desk]\nurl = %s\nsecret = %s\n"
                    "events = ticket.changed\ntimeout = 5s\nretry_base = 50ms\nretry_max = 200ms\n"
                    % (rcv.url, WH_SECRET))
    redis = [*engine.args, "--engine-webhook-lease", "1s"] if engine.redis else []
    b = Broker(tmp_path, ["--config", str(conf), "--rest-per-minute", "0", *redis]).start()
    if redis:
        from test_cluster import wait_ready
        wait_ready(b)
    try:
        assert create(b, id="w1", title="VPN down", requester="alice")[0] == 200
        assert api(b, "POST", "/api/tickets/w1/assign", {"assignee": "agent7", "by": "lead"})[0] == 200
        assert api(b, "POST", "/api/tickets/w1/status", {"status": "closed"})[0] == 200
        assert api(b, "POST", "/api/tickets/w1/status", {"status": "closed"})[0] == 409      # refused: no event
        assert api(b, "POST", "/api/tickets/w1/comments", {"author": "alice", "text": "thanks"})[0] == 200
        evs = rcv.wait_events(lambda e: len(e) >= 4, timeout=20)
        assert [(e["type"], e["change"], e["ticket"], e["channel"]) for e in evs] == [
            ("ticket.changed", c, "w1", "ticket:w1") for c in ("created", "assigned", "status", "comment")], evs
        assert evs[1]["to"] == "agent7" and evs[1]["by"] == "lead" and evs[2]["to"] == "closed", evs
        assert evs[3]["comment"]["text"] == "thanks"
        for headers, body, _ in rcv.requests:
            verify(headers, body)
        time.sleep(0.3)
        assert len(rcv.events()) == 4, "the refused change sent nothing"
    finally:
        b.check_clean_exit()
