"""History: replay on subscribe, recovery with since, paging, retention,
restarts, crashes (kill -9), backups, and a full store. The protocol tests run
on both engines (engine_broker: LMDB, and Redis with one node); those of the
LMDB store itself (its pruner, its file, crashes of the process that writes
it, backups) on LMDB only."""
import asyncio
import random
import signal
import subprocess
import threading
import time

import requests

from conftest import HERALD_BIN, connect, herald_env, run


def rest_history(b, channel, **params):
    r = requests.get(b.url("/api/channels/%s/history" % channel), params=params, timeout=5)
    return r


def test_subscribe_with_history_returns_last_n_then_live(engine_broker):
    b = engine_broker()
    for i in range(10):
        assert b.publish_rest("chat:h1", {"i": i})["offset"] == i + 1

    async def go():
        c = await connect(b)
        await c.send({"op": "subscribe", "id": 7, "channel": "chat:h1", "history": 3})
        m = await c.next()
        assert m["op"] == "subscribed" and m["id"] == 7 and m["offset"] == 10
        assert len(m["epoch"]) == 16
        assert [p["offset"] for p in m["publications"]] == [8, 9, 10]
        assert [p["data"] for p in m["publications"]] == [{"i": 7}, {"i": 8}, {"i": 9}]
        assert all(isinstance(p["ts"], int) for p in m["publications"])
        b.publish_rest("chat:h1", "live")
        await c.expect(op="pub", channel="chat:h1", offset=11, data="live")
        await c.close()
    run(go())


def test_history_larger_than_kept_is_capped(engine_broker):
    b = engine_broker("--ns", "chat.history_size=4")
    for i in range(10):
        b.publish_rest("chat:cap", i)

    async def go():
        c = await connect(b)
        m = await c.request({"op": "subscribe", "channel": "chat:cap", "history": 50})
        assert [p["data"] for p in m["publications"]] == [6, 7, 8, 9]
        await c.close()
    run(go())
    # Retention by count also shows in REST reads.
    r = rest_history(b, "chat:cap")
    assert [p["offset"] for p in r.json()["publications"]] == [7, 8, 9, 10]


def test_recovery_since_returns_exactly_the_missed(engine_broker):
    b = engine_broker()
    async def go():
        c = await connect(b)
        s = await c.request({"op": "subscribe", "channel": "chat:rec"})
        epoch = s["epoch"]
        for i in range(3):
            # Under redis the pub push may come before the published reply
            # (docs/cluster.md): both, in either order.
            await c.send({"op": "publish", "id": 50 + i, "channel": "chat:rec", "data": i})
            got = sorted([await c.next(), await c.next()], key=lambda m: m["op"])
            assert [m["op"] for m in got] == ["pub", "published"] and got[0]["data"] == i, got
        await c.close()
        # Missed while away:
        for i in range(3, 8):
            b.publish_rest("chat:rec", i)
        c2 = await connect(b)
        m = await c2.request({"op": "subscribe", "id": 1, "channel": "chat:rec",
                              "since": {"epoch": epoch, "offset": 3}})
        assert m["recovered"] is True and m["epoch"] == epoch and m["offset"] == 8
        assert [p["offset"] for p in m["publications"]] == [4, 5, 6, 7, 8]
        assert [p["data"] for p in m["publications"]] == [3, 4, 5, 6, 7]
        # Nothing missed: recovered, empty.
        c3 = await connect(b)
        m = await c3.request({"op": "subscribe", "channel": "chat:rec", "since": {"epoch": epoch, "offset": 8}})
        assert m["recovered"] is True and m["publications"] == []
        # Wrong epoch: not recovered, the kept tail instead.
        c4 = await connect(b)
        m = await c4.request({"op": "subscribe", "channel": "chat:rec",
                              "since": {"epoch": "0000000000000000", "offset": 3}})
        assert m["recovered"] is False and m["epoch"] == epoch
        assert [p["offset"] for p in m["publications"]] == list(range(1, 9))
        for x in (c2, c3, c4):
            await x.close()
    run(go())


def test_recovery_fails_when_the_gap_was_pruned(engine_broker):
    b = engine_broker("--ns", "chat.history_size=3")

    async def go():
        c = await connect(b)
        s = await c.request({"op": "subscribe", "channel": "chat:gap"})
        await c.close()
        for i in range(6):
            b.publish_rest("chat:gap", i)
        c2 = await connect(b)
        m = await c2.request({"op": "subscribe", "channel": "chat:gap", "since": {"epoch": s["epoch"], "offset": 0}})
        assert m["recovered"] is False
        assert [p["offset"] for p in m["publications"]] == [4, 5, 6]
        await c2.close()
    run(go())


def test_replay_then_live_has_no_gap_and_no_duplicate(engine_broker):
    """Publications that arrive while the replay is read come after it, once.
    (Namespace room: chat has presence by default, and its join events would
    come in between.)"""
    broker = engine_broker("--ns", "room.history_size=1000")
    for i in range(50):
        broker.publish_rest("room:race", i)
    stop = threading.Event()
    published = []

    def publisher():
        s = requests.Session()
        i = 50
        while not stop.is_set() and i < 400:
            r = s.post(broker.url("/api/publish"), json={"channel": "room:race", "data": i}, timeout=5)
            assert r.status_code == 200
            published.append(r.json()["offset"])
            i += 1

    async def go():
        t = threading.Thread(target=publisher)
        t.start()
        try:
            clients = []
            for k in range(5):
                c = await connect(broker)
                m = await c.request({"op": "subscribe", "channel": "room:race", "history": 1000})
                offs = [p["offset"] for p in m["publications"]]
                assert offs == list(range(1, m["offset"] + 1)), "replay must be complete and in order"
                clients.append((c, m["offset"]))
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            t.join(10)
        last = max(published)
        for c, start in clients:
            got = []
            while not got or got[-1] < last:
                m = await c.expect(op="pub")
                got.append(m["offset"])
            assert got == list(range(start + 1, last + 1)), "live must continue right after the replay"
            await c.close()
    run(go(), timeout=60)


def test_history_op_and_rest_paging(engine_broker):
    b = engine_broker()
    for i in range(25):
        b.publish_rest("chat:page", i)

    async def go():
        c = await connect(b, "msgpack")
        m = await c.request({"op": "history", "id": "h", "channel": "chat:page", "limit": 10})
        assert m["op"] == "history" and m["id"] == "h" and m["offset"] == 25
        assert [p["offset"] for p in m["publications"]] == list(range(1, 11))
        assert m["next"] == {"since": 10}
        m = await c.request({"op": "history", "channel": "chat:page", "limit": 10, **m["next"]})
        assert [p["offset"] for p in m["publications"]] == list(range(11, 21))
        m = await c.request({"op": "history", "channel": "chat:page", "limit": 10, "since": 20})
        assert [p["offset"] for p in m["publications"]] == [21, 22, 23, 24, 25]
        assert m["next"] is None
        m = await c.request({"op": "history", "channel": "chat:page", "limit": 4, "reverse": True})
        assert [p["offset"] for p in m["publications"]] == [25, 24, 23, 22]
        assert m["next"] == {"before": 22, "reverse": True}
        m = await c.request({"op": "history", "channel": "chat:page", "limit": 4, **m["next"]})
        assert [p["offset"] for p in m["publications"]] == [21, 20, 19, 18]
        # Bad paging fields.
        for bad in ({"limit": 0}, {"limit": 1001}, {"since": -1}, {"reverse": 1}, {"limit": "5"}):
            e = await c.request({"op": "history", "id": 9, "channel": "chat:page", **bad})
            assert e["op"] == "error" and e["code"] == 103 and e["id"] == 9, (bad, e)
        await c.close()
    run(go())

    r = rest_history(b, "chat:page", limit=5, since=3)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert [p["offset"] for p in j["publications"]] == [4, 5, 6, 7, 8] and j["next"] == {"since": 8}
    assert j["channel"] == "chat:page" and j["offset"] == 25 and len(j["epoch"]) == 16
    r = rest_history(b, "chat:page", limit=3, reverse="true", before=10)
    assert [p["offset"] for p in r.json()["publications"]] == [9, 8, 7]
    for bad in ({"limit": "x"}, {"limit": 0}, {"since": "-3"}, {"reverse": "maybe"}):
        r = rest_history(b, "chat:page", **bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == 103, (bad, r.text)
    r = requests.get(b.url("/api/channels/bad%20name/history"), timeout=5)
    assert r.status_code == 400 and r.json()["error"]["code"] == 104
    r = requests.get(b.url("/api/channels/never:used/history"), timeout=5)
    assert r.status_code == 200 and r.json()["publications"] == [] and r.json()["offset"] == 0


def test_namespace_without_history(engine_broker):
    b = engine_broker("--ns", "live.history=off")
    for i in range(3):
        assert b.publish_rest("live:x", i)["offset"] == i + 1

    async def go():
        c = await connect(b)
        m = await c.request({"op": "history", "id": 3, "channel": "live:x"})
        assert m["op"] == "error" and m["code"] == 112 and m["id"] == 3
        m = await c.request({"op": "subscribe", "channel": "live:x", "history": 5})
        assert m["op"] == "subscribed" and m["publications"] == [] and m["offset"] == 3
        await c.close()
    run(go())
    r = rest_history(b, "live:x")
    assert r.status_code == 404 and r.json()["error"]["code"] == 112


def test_offsets_and_epochs_survive_restart(engine_broker, tmp_path):
    data = tmp_path / "d"
    b = engine_broker(data_dir=data)
    for i in range(5):
        b.publish_rest("orders:1", i)
    epoch = rest_history(b, "orders:1").json()["epoch"]
    assert b.stop() == 0
    b2 = engine_broker(data_dir=data, name="again")
    assert b2.publish_rest("orders:1", "after")["offset"] == 6
    j = rest_history(b2, "orders:1").json()
    assert j["epoch"] == epoch
    assert [p["data"] for p in j["publications"]] == [0, 1, 2, 3, 4, "after"]


# LMDB only: Redis keeps a channel's offset and epoch when its stream expires (docs/cluster.md);
# the Redis variant of the trim is test_cluster.py's test_history_ttl_trims_the_stream.
def test_ttl_prunes_old_entries_then_forgets_the_channel(make_broker):
    b = make_broker("--ns", "tmp.history_ttl=2s")
    b.publish_rest("tmp:a", 1)
    epoch = rest_history(b, "tmp:a").json()["epoch"]
    time.sleep(1.5)
    b.publish_rest("tmp:a", 2)
    # The first entry expires first (the pruner runs every second).
    deadline = time.monotonic() + 5
    while True:
        data = [p["data"] for p in rest_history(b, "tmp:a").json()["publications"]]
        if data == [2] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert data == [2]
    # Then the second; with nothing kept and nothing recent the log is
    # forgotten, and the channel starts over under a new epoch.
    deadline = time.monotonic() + 6
    while rest_history(b, "tmp:a").json()["publications"] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.2)
    assert b.publish_rest("tmp:a", 3)["offset"] == 1
    assert rest_history(b, "tmp:a").json()["epoch"] != epoch


# LMDB only: the store's map size and a full disk.
def test_store_full_fails_publish_but_keeps_serving(make_broker):
    b = make_broker("--map-size", "1m", "--map-size-max", "1m", "--ns", "big.history_size=100000",
                    "--ns", "live.history=off", "--max-message-size", "64k")
    blob = "x" * 60000
    codes = []
    s = requests.Session()
    for i in range(60):
        r = s.post(b.url("/api/publish"), json={"channel": "big:c", "data": blob}, timeout=10)
        codes.append(r.status_code)
        if r.status_code != 200:
            assert r.status_code == 507 and r.json()["error"]["code"] == 111, r.text
            break
    assert 507 in codes, "a 1 MiB map must fill up"

    async def go():
        c = await connect(b)
        await c.subscribe("live:ok")
        assert (await c.publish("live:ok", "still here"))["offset"] == 1
        await c.expect(op="pub", data="still here")
        e = await c.request({"op": "publish", "id": 5, "channel": "big:c", "data": blob})
        if e["op"] != "error":
            e = await c.next()
        assert e["op"] == "error" and e["code"] == 111 and e["id"] == 5
        await c.close()
    run(go())
    # Reads still work.
    assert rest_history(b, "big:c", limit=2).status_code == 200
    assert b.health().status_code == 200


def _publisher(url, channel, start, acked, stop):
    s = requests.Session()
    i = start
    while not stop.is_set():
        try:
            r = s.post(url, json={"channel": channel, "data": i}, timeout=5)
        except requests.RequestException:
            return
        if r.status_code != 200:
            return
        acked.append((i, r.json()["offset"]))
        i += 1


# LMDB only: the node's own commit; under Redis, test_cluster.py's test_redis_kill_under_load_loses_no_acked_publication.
def test_kill_9_never_loses_an_acknowledged_publication(make_broker, tmp_path):
    data = tmp_path / "crash"
    acked = []
    rng = random.Random(4)
    for cycle in range(4):
        b = make_broker("--ns", "c.history_size=1000000", data_dir=data, name="crash%d" % cycle)
        stop = threading.Event()
        threads = [threading.Thread(target=_publisher,
                                    args=(b.url("/api/publish"), "c:stream", 1_000_000 * (cycle * 4 + k) + 1,
                                          acked, stop)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.2))
        b.send_signal(signal.SIGKILL)
        b.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
        b.stopped = True
        b.returncode = 0                 # killed on purpose: not a failure

    b = make_broker("--ns", "c.history_size=1000000", data_dir=data, name="final")
    stored = {}
    since = 0
    while True:
        j = rest_history(b, "c:stream", since=since, limit=1000).json()
        for p in j["publications"]:
            assert p["offset"] not in stored
            stored[p["offset"]] = p["data"]
        if not j["next"]:
            break
        since = j["next"]["since"]
    assert acked, "the publishers got acknowledgements"
    offsets = sorted(stored)
    assert offsets == list(range(1, len(offsets) + 1)), "offsets are contiguous from 1"
    for value, off in acked:
        assert stored.get(off) == value, "acknowledged %r at offset %d, found %r" % (value, off, stored.get(off))
    assert len(set(stored.values())) == len(stored), "nothing stored twice"


# LMDB only: backups of the node's data directory.
def test_backup_under_load_restores(make_broker, tmp_path):
    data = tmp_path / "live"
    b = make_broker("--ns", "bk.history_size=1000000", data_dir=data)
    for i in range(200):
        b.publish_rest("bk:x", i)
    acked = []
    stop = threading.Event()
    t = threading.Thread(target=_publisher, args=(b.url("/api/publish"), "bk:x", 200, acked, stop))
    t.start()
    time.sleep(0.3)
    before = list(acked)
    dest = tmp_path / "copy"
    r = subprocess.run([HERALD_BIN, "backup", str(dest), "--data-dir", str(data)], capture_output=True,
                       text=True, timeout=60, env=herald_env())
    stop.set()
    t.join(10)
    assert r.returncode == 0, r.stderr
    # A second backup into the same place is refused.
    r2 = subprocess.run([HERALD_BIN, "backup", str(dest), "--data-dir", str(data)], capture_output=True,
                        text=True, timeout=60, env=herald_env())
    assert r2.returncode != 0 and "already exists" in r2.stderr
    b2 = make_broker(data_dir=dest, name="restored")
    stored = {}
    since = 0
    while True:
        j = rest_history(b2, "bk:x", since=since, limit=1000).json()
        stored.update({p["offset"]: p["data"] for p in j["publications"]})
        if not j["next"]:
            break
        since = j["next"]["since"]
    for i in range(200):
        assert stored[i + 1] == i
    for value, off in before:
        assert stored.get(off) == value


# LMDB only: the data directory's format.
def test_foreign_or_newer_history_store_is_refused(tmp_path):
    d = tmp_path / "d"
    (d / "history").mkdir(parents=True)
    (d / "FORMAT").write_text("herald-data 1\n")
    # An LMDB environment that is not Herald's: a data.mdb with other databases.
    (d / "history" / "data.mdb").write_bytes(b"\0" * 8192)
    r = subprocess.run([HERALD_BIN, "--port", "0", "--data-dir", str(d)], capture_output=True, text=True,
                       timeout=10, env=herald_env())
    assert r.returncode != 0 and "history" in r.stderr
