"""`herald migrate` (docs/cluster.md "Migrating a single LMDB node"): a stopped
LMDB node's channels carried into an unused Redis prefix with their epochs and
offsets, then served by two redis-engine nodes: a client's saved position
recovers exactly the publications it missed, history answers as the LMDB node
did (trimmed to history_size as the publish script trims), the next
publication takes the next offset in the same epoch, a state channel keeps its
values, versions and version floor, an idempotency key still answers a retry.
Refusals write nothing: a prefix in use, data of a kind not carried (a webhook
queue) without --skip-unsupported, a data directory a broker holds; Redis
unreachable and a missing data directory are clear errors with a non-zero exit.
Each test starts its own redis-server and kills it by PID."""
import asyncio
import subprocess
import time

import requests

from conftest import SANITIZER_MARKS, Broker, connect, run
from conftest import run_herald as _run_herald
from test_cluster import engine_args, free_port, pytestmark, redis, wait_ready  # noqa: F401 (fixtures)

NS = ("--ns", "hist.history_size=5", "--ns", "room.history_size=50")
PREFIX = "mig:"


def run_herald(args, timeout=60):
    """herald migrate to completion; a sanitizer report fails the test whatever the exit status."""
    out = _run_herald(args, timeout=timeout)
    for mark in SANITIZER_MARKS:
        assert mark not in out.stderr + out.stdout, out.stderr
    return out


def cli(r, *args):
    out = subprocess.run(["redis-cli", "-p", str(r.port), *args], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def migrate(data_dir, redis_or_address, *extra, timeout=60):
    return run_herald(["migrate", "--data-dir", str(data_dir), *engine_args(redis_or_address),
                       "--engine-prefix", PREFIX, *NS, *extra], timeout=timeout)


def history(b, channel, **params):
    params.setdefault("limit", 100)
    r = requests.get(b.url("/api/channels/%s/history" % channel), params=params, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def state_of(b, channel):
    r = requests.get(b.url("/api/channels/%s/state" % channel), timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def ops(b, channel, *op_list):
    r = requests.post(b.url("/api/channels/%s/state" % channel), json={"ops": list(op_list)}, timeout=5)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def publish_idem(b, channel, data, key):
    r = requests.post(b.url("/api/publish"), json={"channel": channel, "data": data},
                      headers={"Idempotency-Key": key}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def fill_lmdb_node(a):
    """Publications from a JSON and a MessagePack client and over REST, a
    channel past its history_size, a state channel with a deleted key."""
    async def go():
        j, m = await connect(a), await connect(a, "msgpack")
        for i in range(8):
            c = j if i % 2 == 0 else m
            await c.publish("room:1", {"n": i, "who": c.enc, "nested": [1, 2.5, None, {"k": "v" * i}]})
        for i in range(12):
            await j.publish("hist:x", "h%d" % i)
        await j.close()
        await m.close()
    run(go())
    for i in range(3):
        a.publish_rest("news", {"headline": i})
    first = publish_idem(a, "news", {"pay": 1}, "order-7")
    ops(a, "scores:g", {"op": "set", "key": "a", "value": 1}, {"op": "set", "key": "b", "value": "x"})
    ops(a, "scores:g", {"op": "incr", "key": "a", "by": 4})
    ops(a, "scores:g", {"op": "delete", "key": "a"})
    ops(a, "scores:g", {"op": "set", "key": "c", "value": {"deep": [1, 2]}})
    return first


def test_migrate_keeps_epochs_offsets_state_and_positions(make_broker, redis, tmp_path):
    a = make_broker(*NS, name="lmdb")
    idem = fill_lmdb_node(a)
    chans = ("room:1", "hist:x", "news", "scores:g")
    before = {c: history(a, c) for c in chans}
    state_before = state_of(a, "scores:g")
    assert [p["offset"] for p in before["hist:x"]["publications"]] == [8, 9, 10, 11, 12]
    assert a.stop() == 0

    out = migrate(a.data_dir, redis)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "4 channels" in out.stdout and "not carried:" not in out.stdout, out.stdout
    # 8 + 5 (of 12: the LMDB node had trimmed to 5 already) + 4 + 4 state deltas.
    assert " 21 publications" in out.stdout, out.stdout
    assert "4 state keys" not in out.stdout and "2 state keys in 1 channels" in out.stdout, out.stdout
    assert cli(redis, "HGET", PREFIX + "m:room:1", "epoch") == before["room:1"]["epoch"]

    b = make_broker(*engine_args(redis), "--engine-prefix", PREFIX, *NS, name="node-b")
    c = make_broker(*engine_args(redis), "--engine-prefix", PREFIX, *NS, name="node-c")
    wait_ready(b)
    wait_ready(c)
    # History as the LMDB node answered it: offsets, ts, data, who sent it, epoch.
    for ch in chans:
        for n in (b, c):
            got = history(n, ch)
            assert got["epoch"] == before[ch]["epoch"], (ch, got, before[ch])
            assert got["publications"] == before[ch]["publications"], (ch, got, before[ch])
    assert state_of(c, "scores:g") == state_before
    # The idempotency key still answers the retry with the first offset.
    again = publish_idem(b, "news", {"pay": 1}, "order-7")
    assert again == {"channel": "news", "offset": idem["offset"], "duplicate": True}, again

    epoch = before["room:1"]["epoch"]

    async def go():
        # A client that had seen up to offset 3 on the LMDB node recovers 4..8 on node C.
        s = await connect(c, "msgpack")
        r = await s.request({"op": "subscribe", "id": 5, "channel": "room:1", "since": {"epoch": epoch, "offset": 3}})
        assert r["op"] == "subscribed" and r["recovered"] is True and r["epoch"] == epoch, r
        want = [p for p in before["room:1"]["publications"] if p["offset"] > 3]
        assert [(p["offset"], p["data"]) for p in r["publications"]] == [(p["offset"], p["data"]) for p in want], r
        # A new publication on node B: the next offset, the same epoch, delivered on C.
        p = await connect(b)
        m = await p.publish("room:1", "after")
        assert m["offset"] == 9, m
        got = await s.expect(op="pub", channel="room:1")
        assert got["offset"] == 9 and got["data"] == "after", got
        # Another channel's epoch is not this one's: not recovered.
        r = await s.request({"op": "subscribe", "id": 6, "channel": "hist:x", "since": {"epoch": epoch, "offset": 2}})
        assert r["recovered"] is False and r["epoch"] == before["hist:x"]["epoch"] != epoch, r
        await p.close()
        await s.close()
    run(go())
    # The state channel goes on from its offset, above its version floor:
    # "a" was deleted at version 2, so it comes back at 3 (as "c", created
    # after the delete on the LMDB node, did).
    r = ops(b, "scores:g", {"op": "set", "key": "a", "value": 9})
    assert r["offset"] == state_before["offset"] + 1, (r, state_before)
    items = {i["key"]: (i["value"], i["version"]) for i in state_of(c, "scores:g")["items"]}
    assert items == {"a": (9, 3), "b": ("x", 1), "c": ({"deep": [1, 2]}, 3)}, items
    assert history(c, "hist:x")["epoch"] == before["hist:x"]["epoch"]
    r = b.publish_rest("hist:x", "h12")
    assert r["offset"] == 13
    assert [p["offset"] for p in history(c, "hist:x")["publications"]] == [9, 10, 11, 12, 13]


def test_migrate_trims_to_the_target_settings(make_broker, redis):
    """history_size smaller on the cluster than on the node: the stream keeps
    what the publish script would keep; the offsets do not move."""
    a = make_broker(*NS, name="lmdb")
    for i in range(30):
        a.publish_rest("room:t", i)
    epoch = history(a, "room:t")["epoch"]
    assert a.stop() == 0
    out = run_herald(["migrate", "--data-dir", str(a.data_dir), *engine_args(redis), "--engine-prefix", PREFIX,
                      "--ns", "room.history_size=10"], timeout=60)
    assert out.returncode == 0, out.stderr
    assert "10 publications (20 stored ones trimmed" in out.stdout, out.stdout
    assert cli(redis, "XLEN", PREFIX + "s:room:t") == "10"
    assert cli(redis, "HGET", PREFIX + "m:room:t", "offset") == "30"
    # The stream expires history_ttl (24h) after its newest entry, as after a publication.
    ttl = int(cli(redis, "PTTL", PREFIX + "s:room:t"))
    assert 23 * 3600 * 1000 < ttl <= 24 * 3600 * 1000, ttl
    b = make_broker(*engine_args(redis), "--engine-prefix", PREFIX, "--ns", "room.history_size=10", name="node")
    wait_ready(b)
    h = history(b, "room:t")
    assert h["epoch"] == epoch and [p["data"] for p in h["publications"]] == list(range(20, 30)), h


def test_prefix_in_use_is_refused_and_nothing_written(make_broker, redis):
    a = make_broker(*NS, name="lmdb")
    a.publish_rest("room:1", "x")
    assert a.stop() == 0
    # A node that ever ran on the prefix leaves keys (here: a channel's meta).
    cli(redis, "HSET", PREFIX + "m:other", "offset", "4", "epoch", "abcdabcdabcdabcd")
    keys_before = sorted(cli(redis, "KEYS", "*").split())
    out = migrate(a.data_dir, redis)
    assert out.returncode == 3, (out.returncode, out.stderr)
    assert "in use" in out.stderr and PREFIX + "m:other" in out.stderr, out.stderr
    assert sorted(cli(redis, "KEYS", "*").split()) == keys_before
    # A node lease alone (P nodes) is enough.
    cli(redis, "DEL", PREFIX + "m:other")
    cli(redis, "ZADD", PREFIX + "nodes", str(int(time.time() * 1000) + 5000), "n1")
    out = migrate(a.data_dir, redis)
    assert out.returncode == 3 and PREFIX + "nodes" in out.stderr, out.stderr
    assert cli(redis, "EXISTS", PREFIX + "m:room:1") == "0"
    # Another prefix of the same Redis is fine.
    out = run_herald(["migrate", "--data-dir", str(a.data_dir), *engine_args(redis), "--engine-prefix", "fresh:"])
    assert out.returncode == 0 and "1 channels" in out.stdout, out.stderr + out.stdout


def lmdb_put(data_dir, db, key, value):
    """Writes one row into the stopped store's database @db with liblmdb
    itself (ctypes): rows the API cannot make, as an older or a future
    herald might have left them."""
    import ctypes

    class Val(ctypes.Structure):
        _fields_ = [("mv_size", ctypes.c_size_t), ("mv_data", ctypes.c_void_p)]
    lib = ctypes.CDLL("liblmdb.so.0")
    env, txn, dbi = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint()
    kb, vb = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
    k, v = Val(len(key), ctypes.cast(kb, ctypes.c_void_p)), Val(len(value), ctypes.cast(vb, ctypes.c_void_p))
    assert lib.mdb_env_create(ctypes.byref(env)) == 0
    try:
        assert lib.mdb_env_set_maxdbs(env, 16) == 0
        assert lib.mdb_env_open(env, str(data_dir / "history").encode(), 0, 0o600) == 0
        assert lib.mdb_txn_begin(env, None, 0, ctypes.byref(txn)) == 0
        assert lib.mdb_dbi_open(txn, db.encode(), 0, ctypes.byref(dbi)) == 0
        assert lib.mdb_put(txn, dbi, ctypes.byref(k), ctypes.byref(v), 0) == 0
        assert lib.mdb_txn_commit(txn) == 0
    finally:
        lib.mdb_env_close(env)


def test_unsupported_data_listed_refused_then_skipped(make_broker, redis):
    """Rows migrate does not know (a row beside a state no adapter owns) and
    idempotency keys from before request digests: listed with their counts,
    nothing written, exit 3; --skip-unsupported migrates the rest and says
    what it left."""
    a = make_broker(*NS, name="lmdb")
    for i in range(3):
        a.publish_rest("room:1", i)
    assert a.stop() == 0
    be64 = lambda n: n.to_bytes(8, "big")
    lmdb_put(a.data_dir, "aux", be64(1) + b"mystery:1", b"\x01")
    lmdb_put(a.data_dir, "aux", be64(1) + b"mystery:2", b"\x02")
    lmdb_put(a.data_dir, "idem", be64(1) + b"old-key", be64(int(time.time() * 1000)) + be64(2))
    out = migrate(a.data_dir, redis)
    assert out.returncode == 3, (out.returncode, out.stdout, out.stderr)
    assert "not carried: 2 rows beside a state that no adapter owns" in out.stderr, out.stderr
    assert "not carried: 1 idempotency keys without a request digest" in out.stderr, out.stderr
    assert "nothing was written" in out.stderr, out.stderr
    assert cli(redis, "DBSIZE") == "0"
    out = migrate(a.data_dir, redis, "--skip-unsupported")
    assert out.returncode == 0, out.stderr
    assert "not carried: 2 rows beside a state" in out.stdout and "3 publications" in out.stdout, out.stdout
    assert cli(redis, "XLEN", PREFIX + "s:room:1") == "3"


def test_webhook_queues_and_dead_letters_carry_over(tmp_path, redis):
    """Events queued for a failing receiver and dead letters: carried under
    their ids with their attempts; on the cluster the queue is delivered, in
    order, and the dead letters read as on the node; new events take ids above."""
    from test_webhooks import Receiver
    failing, good = Receiver(behave=lambda n: 500), Receiver()
    def conf(name, url_w, retry_w):
        c = tmp_path / name
        c.write_text("[namespace orders]\nhistory = on\n\n"
                     "[webhook w]\nurl = %s\nsecret = s3cret-s3cret-s3cret\nevents = publication\n"
                     "namespaces = orders\ntimeout = 500ms\nretry_base = %s\nretry_max = %s\n\n"
                     "[webhook d]\nurl = %s\nsecret = s3cret-s3cret-s3cret\nevents = publication\n"
                     "namespaces = orders\ntimeout = 500ms\nmax_attempts = 1\nretry_base = 50ms\n"
                     % (url_w, retry_w, retry_w, failing.url))
        return c
    # The node's receiver fails and its retries are an hour apart; the
    # cluster's works and retries soon (a carried event's backoff counts from
    # its last attempt on the node, with the cluster's settings).
    node_conf = conf("node.conf", failing.url, "1h")
    cluster_conf = conf("cluster.conf", good.url, "100ms")
    a = Broker(tmp_path, ["--config", str(node_conf)], name="lmdb").start()
    b = None
    try:
        for i in range(3):
            a.publish_rest("orders:1", {"i": i})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            hooks = {h["name"]: h for h in requests.get(a.url("/api/webhooks"), timeout=5).json()["webhooks"]}
            if hooks["d"]["dead_letters"] == 3 and hooks["w"]["queue_depth"] == 3 and hooks["w"]["attempts"] >= 1:
                break
            time.sleep(0.1)
        assert hooks["d"]["dead_letters"] == 3 and hooks["w"]["queue_depth"] == 3, hooks
        dead_before = requests.get(a.url("/api/webhooks/d/dead"), timeout=5).json()["dead_letters"]
        assert a.stop() == 0
        out = run_herald(["migrate", "--config", str(node_conf), "--data-dir", str(a.data_dir),
                          *engine_args(redis), "--engine-prefix", PREFIX])
        assert out.returncode == 0, out.stderr
        assert "3 webhook events queued, 3 dead letters" in out.stdout, out.stdout
        b = Broker(tmp_path, ["--config", str(cluster_conf), *engine_args(redis), "--engine-prefix", PREFIX],
                   name="node").start()
        wait_ready(b)
        assert requests.get(b.url("/api/webhooks/d/dead"), timeout=5).json()["dead_letters"] == dead_before
        evs = good.wait_events(lambda e: len(e) >= 3)
        assert [(e["type"], e["channel"], e["offset"]) for e in evs] == [("publication", "orders:1", o)
                                                                           for o in (1, 2, 3)], evs
        ids = [int(e["id"]) for e in evs]                   # ids are strings on the wire
        assert ids == sorted(ids) and all(i < 100 for i in ids), ids
        b.publish_rest("orders:1", {"i": 3})
        evs = good.wait_events(lambda e: len(e) >= 4)
        assert len(evs) == 4 and evs[3]["offset"] == 4 and int(evs[3]["id"]) > ids[-1], evs
    finally:
        for x in (a, b):
            if x:
                x.stop()
        failing.close()
        good.close()


def test_bad_paths_fail_clearly(make_broker, redis, tmp_path):
    # No such data directory: said, and not created.
    missing = tmp_path / "nope"
    out = migrate(missing, redis)
    assert out.returncode == 1 and "nope" in out.stderr and "No such file" in out.stderr, out.stderr
    assert not missing.exists()
    # Redis unreachable: said, non-zero.
    a = make_broker(*NS, name="lmdb")
    a.publish_rest("room:1", "x")
    # A broker running on the directory: refused (its lock), nothing written.
    out = migrate(a.data_dir, redis)
    assert out.returncode == 3 and "in use" in out.stderr and "stop that broker" in out.stderr, out.stderr
    assert cli(redis, "DBSIZE") == "0"
    assert a.stop() == 0
    out = migrate(a.data_dir, "127.0.0.1:%d" % free_port())
    assert out.returncode == 1 and "cannot reach Redis" in out.stderr, out.stderr
    # TLS is refused with a clear message (the bridge lives in the broker).
    out = migrate(a.data_dir, redis, "--engine-tls", "on", "--engine-tls-verify", "off")
    assert out.returncode == 2 and "tls" in out.stderr, out.stderr
    # Redis killed: the same clear failure, and the lock is released for a rerun.
    redis.kill()
    out = migrate(a.data_dir, redis)
    assert out.returncode == 1 and "cannot reach Redis" in out.stderr, out.stderr
    # Not a data directory at all.
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "file").write_text("x")
    out = migrate(tmp_path / "plain", "127.0.0.1:1")
    assert out.returncode == 1 and "not a Herald data directory" in out.stderr, out.stderr


def test_redis_refusing_writes_mid_migration(make_broker, redis):
    """Redis out of memory part way (maxmemory, noeviction): a non-zero exit
    that says the prefix is partly written, and a rerun refuses that prefix."""
    a = make_broker(*NS, name="lmdb")
    blob = "x" * 20000
    for i in range(60):
        a.publish_rest("room:%d" % (i % 3), {"i": i, "blob": blob})
    assert a.stop() == 0
    used = int(dict(l.split(":", 1) for l in cli(redis, "INFO", "memory").splitlines() if ":" in l)["used_memory"])
    cli(redis, "CONFIG", "SET", "maxmemory-policy", "noeviction")
    cli(redis, "CONFIG", "SET", "maxmemory", str(used + 300000))
    out = migrate(a.data_dir, redis)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "OOM" in out.stderr and "partly written" in out.stderr, out.stderr
    cli(redis, "CONFIG", "SET", "maxmemory", "0")
    out = migrate(a.data_dir, redis)
    assert out.returncode == 3 and "in use" in out.stderr, out.stderr


# -- the adapters' rows: seat holds and waitlists, commerce, tickets ------------

def test_seat_holds_and_waitlist_carry_over(make_broker, redis):
    """A hold made on the LMDB node expires on the cluster (a node's sweep finds
    it), and the waitlist it left is served: the seat goes to bob as an offer."""
    from test_seats import SEATS, call, counts, define, now_ms, seat_map
    a = make_broker(*SEATS, name="lmdb")
    ev = "mig"
    define(a, ev, [("A1", "A"), ("A2", "A"), ("B1", "B")])
    hold = call(a, ev, "hold", {"user": "alice", "seats": ["A1", "A2"], "ttl": 6})
    call(a, ev, "hold", {"user": "dave", "seats": ["B1"], "ttl": 60})
    call(a, ev, "confirm", {"user": "dave", "seats": ["B1"]})
    assert call(a, ev, "waitlist", {"user": "bob", "section": "A"})["position"] == 1
    seats_before = seat_map(a, ev)
    assert seats_before[1]["A"] == counts(2, 0, 2, 0, 1), seats_before
    assert a.stop() == 0
    out = run_herald(["migrate", "--data-dir", str(a.data_dir), *engine_args(redis), "--engine-prefix", PREFIX,
                      *SEATS])
    assert out.returncode == 0, out.stderr
    assert "2 seat holds, 1 waitlists" in out.stdout, out.stdout
    b = make_broker(*engine_args(redis), "--engine-prefix", PREFIX, *SEATS, name="node-b")
    c = make_broker(*engine_args(redis), "--engine-prefix", PREFIX, *SEATS, name="node-c")
    wait_ready(b)
    wait_ready(c)
    assert now_ms() < hold["expires"] - 500, "too slow to check the hold before it expires"
    assert seat_map(c, ev) == seats_before
    pos = requests.get(b.url("/api/events/%s/waitlist/position" % ev), params={"user": "bob", "section": "A"},
                       timeout=5).json()
    assert pos["position"] == 1 and pos["waiting"] == 1, pos
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        seats, secs = seat_map(b, ev)
        if seats["A1"].get("holder") != "alice" and seats["A2"].get("holder") != "alice":
            break
        time.sleep(0.1)
    assert now_ms() >= hold["expires"] - 50
    held = {s: v for s, v in seats.items() if v["status"] == "held"}
    assert list(held.values()) and all(v["holder"] == "bob" and v.get("offer") is True for v in held.values()), seats
    assert len(held) == 1 and secs["A"] == counts(2, 1, 1, 0, 0), (seats, secs)
    assert seats["B1"]["status"] == "booked" and seats["B1"]["holder"] == "dave"


def test_commerce_orders_and_payment_events_carry_over(make_broker, redis):
    from test_commerce import HOOKS, api, create, ev, move, stock_state
    from test_cluster_commerce import hook
    a = make_broker(*HOOKS, name="lmdb")
    assert api(a, "PUT", "/api/commerce/stock", {"stock": {"MUG": 10}})[0] == 200
    assert create(a, "1042", "alice", [{"sku": "MUG", "qty": 2}])[0] == 200
    assert create(a, "1043", "bob", [{"sku": "MUG", "qty": 1}])[0] == 200
    code, paid = hook(a, ev("evt_1", "payment.succeeded", "1042"))
    assert code == 200 and paid["order"]["status"] == "PAID", paid
    order_before = api(a, "GET", "/api/commerce/orders/1042")[1]["order"]
    stock_before = stock_state(a)
    assert a.stop() == 0
    out = run_herald(["migrate", "--data-dir", str(a.data_dir), *engine_args(redis), "--engine-prefix", PREFIX,
                      *HOOKS])
    assert out.returncode == 0, out.stderr
    assert "2 orders, 1 payment events" in out.stdout, out.stdout
    b = make_broker(*engine_args(redis), "--engine-prefix", PREFIX, *HOOKS, name="node-b")
    wait_ready(b)
    assert stock_state(b) == stock_before
    code, got = api(b, "GET", "/api/commerce/orders/1042")
    assert code == 200 and got["order"] == order_before, (got, order_before)
    # The provider's retry of an event the LMDB node applied: still a duplicate.
    code, again = hook(b, ev("evt_1", "payment.succeeded", "1042"))
    assert code == 200 and again["duplicate"] is True, again
    # The orders go on: cancel gives the stock back once.
    assert move(b, "1043", "CANCELLED")[0] == 200
    assert stock_state(b)[0] == {"MUG": 8}
    assert move(b, "1043", "CANCELLED")[0] == 409


def test_tickets_sequence_and_comments_carry_over(make_broker, redis):
    from test_tickets import ON, api, board
    a = make_broker(*ON, name="lmdb")
    assert api(a, "POST", "/api/tickets", {"title": "first", "requester": "u"})[0] == 200
    assert api(a, "POST", "/api/tickets", {"title": "second", "requester": "u"})[0] == 200
    for text in ("one", "two \u00e9\u4e2d"):
        assert api(a, "POST", "/api/tickets/T000001/comments", {"author": "agent", "text": text})[0] == 200
    before = api(a, "GET", "/api/tickets/T000001")[1]
    board_before = board(a)
    assert a.stop() == 0
    out = run_herald(["migrate", "--data-dir", str(a.data_dir), *engine_args(redis), "--engine-prefix", PREFIX,
                      *ON])
    assert out.returncode == 0, out.stderr
    assert "3 ticket rows" in out.stdout, out.stdout
    b = make_broker(*engine_args(redis), "--engine-prefix", PREFIX, *ON, name="node-b")
    wait_ready(b)
    assert board(b) == board_before
    got = api(b, "GET", "/api/tickets/T000001")[1]
    assert got["ticket"] == before["ticket"] and got["comments"] == before["comments"], (got, before)
    # The sequence goes on from the LMDB node's.
    code, made = api(b, "POST", "/api/tickets", {"title": "third", "requester": "u"})
    assert code == 200 and made["ticket"]["id"] == "T000003", made


def test_redis_gone_mid_migration(make_broker, tmp_path):
    """The connection lost after the first writes (a stand-in Redis on loopback
    that answers the checks, then hangs up): exit 1, the prefix said to be
    partly written, the data directory's lock released."""
    import socket
    import threading
    a = make_broker(*NS, name="lmdb")
    for i in range(5):
        a.publish_rest("room:%d" % i, i)
    assert a.stop() == 0
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(20)
    seen = []

    def serve():
        conn, _ = srv.accept()
        conn.settimeout(10)
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                if b"SELECT" in buf and b"SCAN" not in buf:
                    conn.sendall(b"+OK\r\n")
                elif b"SCAN" in buf and not seen:
                    seen.append("scan")
                    conn.sendall(b"*2\r\n$1\r\n0\r\n*0\r\n")
                    buf = b""
                elif seen and buf:
                    seen.append(buf)
                    return          # hang up on the first writes
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    out = migrate(a.data_dir, "127.0.0.1:%d" % srv.getsockname()[1])
    t.join(10)
    srv.close()
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "partly written" in out.stderr and "Redis" in out.stderr, out.stderr
    assert len(seen) == 2 and b"XADD" in seen[1], seen
    # The lock went with the process: a broker starts on the directory again.
    b = make_broker(*NS, data_dir=a.data_dir, name="again")
    assert history(b, "room:4")["publications"][0]["data"] == 4
