"""Operators: Prometheus metrics, channel statistics, health and readiness, storage
alerts, structured logs, the runtime log level, and the sys:stats channel."""
import json
import re
import signal
import time

import requests

from conftest import connect, run, ws_connect

ADMIN = {"Authorization": "Bearer ops-key-0123456789abcdef"}
PUB = {"Authorization": "Bearer pub-key-0123456789abcdef"}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$')


def parse_metrics(text):
    """A strict reader of the text exposition format: every line is a comment
    (# HELP / # TYPE) or a sample; every sample's family was declared with TYPE."""
    types, samples = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = typ
            continue
        m = SAMPLE.match(line)
        assert m, "not a valid sample line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, "sample %s has no # TYPE" % name
        samples[name + labels] = value
    return types, samples


def metrics(b, headers=None):
    r = requests.get(b.url("/metrics"), headers=headers or {}, timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return parse_metrics(r.text)


def test_metrics_move_with_traffic(broker):
    types, before = metrics(broker)
    assert types["herald_connections"] == "gauge" and types["herald_publications_total"] == "counter"
    assert types["herald_publish_fanout_seconds"] == "histogram"
    for k in ("process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total",
              "herald_storage_map_size_bytes", "herald_storage_entries", "herald_channels", "herald_subscriptions"):
        assert k in before, k

    async def go():
        subs = [await connect(broker, enc) for enc in ("json", "msgpack", "msgpack")]
        for s in subs:
            await s.subscribe("room:m")
        for i in range(10):
            broker.publish_rest("room:m", i)
        for s in subs:
            await s.collect(10)
        _, mid = metrics(broker)
        assert mid['herald_connections{transport="ws",encoding="json"}'] == 1
        assert mid['herald_connections{transport="ws",encoding="msgpack"}'] == 2
        assert mid["herald_subscriptions"] == 3
        for s in subs:
            await s.close()
        return mid
    mid = run(go())
    assert mid["herald_deliveries_total"] - before["herald_deliveries_total"] == 30
    assert (mid['herald_namespace_deliveries_total{namespace="*"}'] -
            before['herald_namespace_deliveries_total{namespace="*"}']) == 30
    assert mid['herald_publications_total{namespace="*"}'] - before['herald_publications_total{namespace="*"}'] == 10
    assert mid["herald_messages_sent_total"] >= 30 + 6          # deliveries + connect/subscribe replies
    assert mid["herald_bytes_sent_total"] > before["herald_bytes_sent_total"]
    assert mid["herald_connects_total"] == before["herald_connects_total"] + 3
    assert mid["herald_publish_fanout_seconds_count"] - before["herald_publish_fanout_seconds_count"] == 10
    assert mid["herald_storage_commit_batch_size_count"] >= 1
    assert mid["herald_storage_entries"] >= 10
    # Histogram buckets are cumulative and end with +Inf == count.
    buckets = [v for k, v in mid.items() if k.startswith("herald_publish_fanout_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == mid["herald_publish_fanout_seconds_count"]
    time.sleep(0.3)
    _, after = metrics(broker)
    assert after['herald_disconnects_total{reason="client"}'] == before['herald_disconnects_total{reason="client"}'] + 3
    assert after["herald_subscriptions"] == 0


def test_operator_endpoints_need_an_admin_key(make_broker):
    b = make_broker("--apikey", "ops.secret=ops-key-0123456789abcdef", "--apikey", "ops.admin=on",
                    "--apikey", "pub.secret=pub-key-0123456789abcdef", "--apikey", "pub.publish=*")
    for path in ("/metrics", "/api/channels", "/api/channels/chat:x"):
        assert requests.get(b.url(path), timeout=5).status_code == 401, path
        assert requests.get(b.url(path), headers=PUB, timeout=5).status_code == 403, path
    assert requests.get(b.url("/metrics"), headers=ADMIN, timeout=5).status_code == 200
    assert requests.post(b.url("/api/admin/log?level=debug"), headers=PUB, timeout=5).status_code == 403
    # Health and readiness stay open for load balancers.
    assert requests.get(b.url("/api/health"), timeout=5).status_code == 200
    assert requests.get(b.url("/api/health/ready"), timeout=5).status_code == 200

    async def go():
        # sys:stats: admins only once keys exist; nobody publishes there.
        c = await connect(b)
        m = await c.request({"op": "subscribe", "id": 1, "channel": "sys:stats"})
        assert m["op"] == "error" and m["code"] == 113
        await c.close()
        c = await ws_connect(b)
        m = await c.request({"op": "connect", "id": 1, "apikey": "pub-key-0123456789abcdef"})
        assert m["op"] == "connected" and m["user"] == "apikey:pub"
        m = await c.request({"op": "subscribe", "id": 2, "channel": "sys:stats"})
        assert m["op"] == "error" and m["code"] == 114
        await c.close()
        c = await ws_connect(b)
        m = await c.request({"op": "connect", "id": 1, "apikey": "ops-key-0123456789abcdef"})
        assert m["op"] == "connected"
        m = await c.request({"op": "subscribe", "id": 2, "channel": "sys:stats"})
        assert m["op"] == "subscribed"
        stats = await c.expect(op="pub", channel="sys:stats", timeout=4)
        assert stats["data"]["connections"]["total"] >= 1
        m = await c.request({"op": "publish", "id": 3, "channel": "sys:stats", "data": {}})
        assert m["op"] == "error" and m["code"] == 114
        await c.close()
        c = await ws_connect(b)
        m = await c.request({"op": "connect", "id": 1, "apikey": "wrong-key-0000000000000"})
        assert m["op"] == "error" and m["code"] == 113
    run(go())


def test_channel_statistics_match_traffic(broker):
    async def go():
        subs = [await connect(broker) for _ in range(3)]
        for s in subs:
            await s.subscribe("stats:a")
        await subs[0].subscribe("stats:b")
        for i in range(5):
            broker.publish_rest("stats:a", "x" * 10)
        broker.publish_rest("stats:b", 1)
        r = requests.get(broker.url("/api/channels/stats:a"), timeout=5).json()
        assert r["channel"] == "stats:a" and r["subscribers"] == 3 and r["last_offset"] == 5
        assert r["history"]["length"] == 5 and r["history"]["bytes"] > 50
        assert r["publications_per_second"] >= 0 and len(r["epoch"]) == 16
        page = requests.get(broker.url("/api/channels"), params={"prefix": "stats:"}, timeout=5).json()
        names = {c["channel"]: c for c in page["channels"]}
        assert set(names) == {"stats:a", "stats:b"} and names["stats:b"]["subscribers"] == 1
        # Paging with a cursor visits every channel once.
        for i in range(12):
            broker.publish_rest("pg:%d" % i, i)
        seen, cursor = [], 0
        while True:
            p = requests.get(broker.url("/api/channels"), params={"prefix": "pg:", "limit": 5, "cursor": cursor},
                             timeout=5).json()
            seen += [c["channel"] for c in p["channels"]]
            if p["next_cursor"] is None:
                break
            cursor = p["next_cursor"]
        assert sorted(seen) == sorted("pg:%d" % i for i in range(12))
        assert requests.get(broker.url("/api/channels/nope:x"), timeout=5).status_code == 404
        assert requests.get(broker.url("/api/channels"), params={"limit": 0}, timeout=5).status_code == 400
        for s in subs:
            await s.close()
    run(go())


def test_readiness_and_storage_alerts(make_broker):
    b = make_broker("--map-size", "1m", "--map-size-max", "1m", "--ns", "big.history_size=100000")
    assert requests.get(b.url("/api/health/ready"), timeout=5).json() == {"status": "ready"}
    assert b.health().json()["status"] == "ok"
    s = requests.Session()
    blob = "y" * 30000
    for i in range(60):
        r = s.post(b.url("/api/publish"), json={"channel": "big:c", "data": blob}, timeout=10)
        if r.status_code != 200:
            break
    assert r.status_code == 507
    # The watcher refreshes once a second.
    deadline = time.time() + 5
    while time.time() < deadline:
        h = b.health().json()
        if h["status"] == "degraded":
            break
        time.sleep(0.2)
    assert h["status"] == "degraded" and h["storage"] in ("critical", "full"), h
    assert any("history map" in reason for reason in h["reasons"])
    assert b.wait_log(r"history map usage crossed 75%") and b.wait_log(r"history map usage crossed 85%")
    assert len(re.findall(r"history map usage crossed 75%", b.log)) == 1, "logged once per crossing"
    r = requests.get(b.url("/api/health/ready"), timeout=5)
    assert r.status_code == 503 and r.json()["status"] == "not_ready"
    _, m = metrics(b)
    assert m["herald_storage_alert_level"] >= 2 and m["herald_storage_map_usage_ratio"] > 0.85
    assert b.health().status_code == 200, "liveness stays up"


def test_json_logs_parse(make_broker):
    b = make_broker("--log-format", "json", "--log-requests", "all")
    b.publish_rest("log:x", 1)
    requests.get(b.url("/nope"), timeout=5)
    b.wait_log(r"/nope")
    assert b.stop() == 0
    lines = [l for l in b.log.splitlines() if l.strip()]
    assert len(lines) >= 4
    for line in lines:
        o = json.loads(line)
        assert set(o) == {"ts", "level", "component", "msg"}, o
        assert o["level"] in ("error", "warn", "info", "debug")
    assert any(json.loads(l)["component"] == "rest" and "404" in json.loads(l)["msg"] for l in lines)


def test_log_level_at_runtime(make_broker, tmp_path):
    conf = tmp_path / "h.conf"
    conf.write_text("[log]\nlevel = info\n")
    b = make_broker("--config", str(conf))
    assert "debug" not in b.log
    r = requests.post(b.url("/api/admin/log?level=debug"), timeout=5)
    assert r.status_code == 200 and r.json() == {"level": "debug"}
    assert b.wait_log(r"log level set to debug")
    assert requests.post(b.url("/api/admin/log?level=loud"), timeout=5).status_code == 400
    # SIGHUP takes the file's [log] settings again.
    conf.write_text("[log]\nlevel = warn\n")
    b.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    n = len(b.log)
    b.publish_rest("quiet:x", 1)
    requests.get(b.url("/nope"), timeout=5)          # an info-level request log, now filtered
    time.sleep(0.3)
    assert "/nope" not in b.log[n:]
    conf.write_text("[log]\nlevel = shout\n")
    b.send_signal(signal.SIGHUP)
    assert b.wait_log(r"SIGHUP: .*level")             # the bad file is reported, and ignored
    assert b.health().status_code == 200


def test_seat_request_metrics_count_outcomes(make_broker):
    b = make_broker("--ns", "seats.state=on")
    ev = b.url("/api/events/m1")
    assert requests.put(ev + "/seats", json={"seats": [{"id": "A1", "section": "A"}]}, timeout=5).status_code == 200
    assert requests.post(ev + "/hold", json={"user": "ann", "seats": ["A1"], "ttl": 60}, timeout=5).status_code == 200
    r = requests.post(ev + "/hold", json={"user": "bob", "seats": ["A1"], "ttl": 60}, timeout=5)
    assert r.status_code == 409 and r.json()["error"]["code"] == 119
    r = requests.post(ev + "/confirm", json={"user": "bob", "seats": ["A1"]}, timeout=5)
    assert r.status_code == 409 and r.json()["error"]["code"] == 121
    types, m = metrics(b)
    assert types["herald_seat_requests_total"] == "counter"
    assert m['herald_seat_requests_total{action="define",result="ok"}'] == 1
    assert m['herald_seat_requests_total{action="hold",result="ok"}'] == 1
    assert m['herald_seat_requests_total{action="hold",result="refused"}'] == 1
    assert m['herald_seat_requests_total{action="confirm",result="refused"}'] == 1
    assert m['herald_seat_requests_total{action="confirm",result="ok"}'] == 0


def test_only_the_broker_publishes_in_sys(broker, make_broker):
    """REST publishing into sys: is refused (403, 114) whoever asks: in
    development mode (no keys), with a publish = * key, and with an admin key;
    nothing is stored, so the channel's offset does not move."""
    body = {"channel": "sys:stats", "data": {"connections": {"total": 1e9}}}
    r = requests.post(broker.url("/api/publish"), json=body, timeout=5)
    assert r.status_code == 403 and r.json()["error"]["code"] == 114, r.text
    assert "sys" in r.json()["error"]["reason"]
    r = requests.post(broker.url("/api/publish"), json={"channel": "sys:anything", "data": 1}, timeout=5)
    assert r.status_code == 403 and r.json()["error"]["code"] == 114, r.text
    r = requests.get(broker.url("/api/channels/sys:stats/history"), timeout=5)
    assert r.status_code in (200, 404) and r.json().get("publications", []) == [], r.text

    b = make_broker("--apikey", "ops.secret=ops-key-0123456789abcdef", "--apikey", "ops.admin=on",
                    "--apikey", "ops.publish=*",
                    "--apikey", "pub.secret=pub-key-0123456789abcdef", "--apikey", "pub.publish=*")
    for hdr in (PUB, ADMIN):
        r = requests.post(b.url("/api/publish"), json=body, headers=hdr, timeout=5)
        assert r.status_code == 403 and r.json()["error"]["code"] == 114, (hdr, r.text)
    # Other channels still take the same keys' publications.
    r = requests.post(b.url("/api/publish"), json={"channel": "chat:x", "data": 1}, headers=PUB, timeout=5)
    assert r.status_code == 200 and r.json()["offset"] == 1, r.text


def test_operator_channels_need_the_admin_scope_on_every_path(make_broker):
    """sys: channels (sys:stats names the busiest channels, private ones
    included) are operator data: a publish-only key cannot read them over REST
    (history, presence, state) any more than over WebSocket."""
    b = make_broker("--apikey", "ops.secret=ops-key-0123456789abcdef", "--apikey", "ops.admin=on",
                    "--apikey", "pub.secret=pub-key-0123456789abcdef", "--apikey", "pub.publish=*")

    async def watch():
        # Let sys:stats publish, naming the channels with subscribers.
        c = await ws_connect(b)
        await c.request({"op": "connect", "id": 1, "apikey": "ops-key-0123456789abcdef"})
        p = await connect(b)
        await p.subscribe("chat:busy")
        m = await c.request({"op": "subscribe", "id": 2, "channel": "sys:stats"})
        assert m["op"] == "subscribed"
        await c.expect(op="pub", channel="sys:stats", timeout=4)
        await c.close()
        await p.close()
    run(watch())
    for path in ("/api/channels/sys:stats/history", "/api/channels/sys:stats/presence",
                 "/api/channels/sys:stats/state", "/api/channels/sys:stats"):
        r = requests.get(b.url(path), headers=PUB, timeout=5)
        assert r.status_code == 403 and r.json()["error"]["code"] == 114, (path, r.text)
        assert requests.get(b.url(path), timeout=5).status_code == 401, path
    r = requests.get(b.url("/api/channels/sys:stats/history"), headers=ADMIN, timeout=5)
    assert r.status_code == 200 and r.json()["publications"], r.text
    # Other channels' history stays readable with a publish key.
    assert requests.get(b.url("/api/channels/chat:x/history"), headers=PUB, timeout=5).status_code == 200


def test_loop_metrics_count_working_time_not_waits(broker):
    """herald_loop_turn_seconds counts every loop iteration's working time: it grows
    with requests (each needs a turn), and an idle second adds turns (timers) but
    almost no time, because the wait for I/O is left out."""
    types, before = metrics(broker)
    assert types["herald_loop_turn_seconds"] == "histogram"
    assert types["herald_loop_busy_ratio"] == "gauge" and types["herald_write_coalesce_seconds"] == "gauge"
    assert types["herald_write_cost_seconds"] == "gauge"
    for i in range(100):
        broker.publish_rest("room:loop", i)
    _, mid = metrics(broker)
    assert mid["herald_loop_turn_seconds_count"] - before["herald_loop_turn_seconds_count"] >= 100
    buckets = [v for k, v in mid.items() if k.startswith("herald_loop_turn_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == mid["herald_loop_turn_seconds_count"]
    time.sleep(1.5)
    _, after = metrics(broker)
    assert after["herald_loop_turn_seconds_count"] > mid["herald_loop_turn_seconds_count"]   # timers still turn it
    assert after["herald_loop_turn_seconds_sum"] - mid["herald_loop_turn_seconds_sum"] < 0.5
    assert 0 <= after["herald_loop_busy_ratio"] < 0.5
    assert 0 <= after["herald_write_coalesce_seconds"] <= 0.05
