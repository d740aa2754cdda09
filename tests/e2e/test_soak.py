"""A soak (issue 20): stable subscribers over many channels with presence,
REST and WebSocket publishing, connection churn with clean closes, abrupt
closes and half-open sockets, clients that ping, SIGHUP reloads.

It asserts flat RSS and descriptor counts, no stable client disconnected,
and every stable subscriber's offsets contiguous to the end. The suite runs
it for HERALD_SOAK_SECONDS (default 35); scripts/soak.sh DURATION runs it for
longer and prints the figures, which HERALD_SOAK_REPORT (a path) also gets
as JSON."""
import asyncio
import base64
import json
import os
import random
import signal
import socket
import threading
import time

import requests

from conftest import connect, run

DURATION = float(os.environ.get("HERALD_SOAK_SECONDS", "35"))
N_CHANNELS = 60
N_STABLE = 48
SUBS_PER_STABLE = 5
REST_RATE = 80              # publications per second, over all REST publishers
WS_RATE = 80                # publications per second, over all WebSocket publishers
CHURN_CONCURRENCY = 6       # churn tasks, each connecting and leaving in a loop
HALF_OPEN_MAX = 24          # half-open sockets held at once (some long enough to be pinged out)


def rss_kb(pid, field="RssAnon:"):
    """The broker's anonymous resident memory: VmRSS also counts the pages
    of the history store's memory map that were touched, which grow with the
    history kept, not with a leak."""
    for line in open("/proc/%d/status" % pid):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def slope_per_min(samples):
    """Least-squares slope of [(t, v)] in v per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 60.0 * sum((t - mt) * (v - mv) for t, v in samples) / den if den else 0.0


def half_open(host, port, channel):
    """A raw WebSocket that connects and subscribes, then never reads or
    closes again (its owner drops it without a FIN later)."""
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: herald.json\r\n\r\n"
               % key).encode())
    for msg in ({"op": "connect", "id": 1}, {"op": "subscribe", "id": 2, "channel": channel}):
        payload = json.dumps(msg).encode()
        mask = os.urandom(4)
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload)))
    return s


async def subscribe(c, channel):
    """Subscribes; join and leave events that arrive first are skipped."""
    i = c.new_id()
    await c.send({"op": "subscribe", "id": i, "channel": channel})
    while True:
        m = await c.next(10)
        if m.get("op") in ("join", "leave", "presence_batch"):
            continue
        assert m.get("op") == "subscribed" and m.get("id") == i, m
        return m


class Stable:
    def __init__(self, idx, channels):
        self.idx = idx
        self.channels = channels
        self.offsets = {ch: [] for ch in channels}
        self.latencies = []
        self.pings = 0
        self.error = None


def test_soak(make_broker, tmp_path):
    conf = tmp_path / "soak.conf"
    conf.write_text("[log]\nlevel = info\n")
    b = make_broker("--config", str(conf), "--ping-interval", "2s", "--connects-per-second", "0",
                    "--ns", "soak.presence=on", "--ns", "soak.join_leave=on", "--ns", "soak.history_size=100000")
    host, port = b.host, b.port
    rng = random.Random(2020)
    channels = ["soak:c%d" % i for i in range(N_CHANNELS)]
    stop = threading.Event()
    figures = {"duration_s": DURATION}
    rest_acked = []                      # (channel, offset) acknowledged over REST
    lock = threading.Lock()

    def rest_publisher(k, rate):
        s = requests.Session()
        r2 = random.Random(k)
        next_at = time.monotonic()
        while not stop.is_set():
            ch = r2.choice(channels)
            try:
                r = s.post("http://%s:%d/api/publish" % (host, port),
                           json={"channel": ch, "data": {"t": time.time(), "src": "rest"}}, timeout=5)
                assert r.status_code == 200, r.text
            except Exception as e:       # noqa: BLE001 - reported below
                figures.setdefault("rest_errors", []).append(repr(e)[:200])
                return
            with lock:
                rest_acked.append((ch, r.json()["offset"]))
            next_at += 1.0 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))

    def sighupper():
        n = 0
        while not stop.wait(5.0):
            b.send_signal(signal.SIGHUP)
            n += 1
        figures["sighups"] = n

    samples = []
    vmrss = []

    def sampler(t0):
        while not stop.wait(0.5):
            samples.append((time.monotonic() - t0, rss_kb(b.pid), nfds(b.pid)))
            vmrss.append(rss_kb(b.pid, "VmRSS:"))

    async def stable_client(st, until_evt):
        try:
            c = await connect(b, "msgpack" if st.idx % 2 else "json")
            for ch in st.channels:
                await subscribe(c, ch)
            ready.append(st)

            async def pinger():
                r3 = random.Random(st.idx)
                while not until_evt.is_set():
                    await asyncio.sleep(r3.uniform(0.5, 2.0))
                    waiter = await c.ws.ping(os.urandom(8))
                    await asyncio.wait_for(waiter, 10)
                    st.pings += 1
            ptask = asyncio.ensure_future(pinger())
            while True:
                if ptask.done() and ptask.exception():
                    raise ptask.exception()
                m = await c.next(timeout=30)
                if m.get("op") == "pub":
                    st.offsets[m["channel"]].append(m["offset"])
                    if isinstance(m.get("data"), dict) and "t" in m["data"]:
                        st.latencies.append(time.time() - m["data"]["t"])
                    elif m.get("data") == "end":
                        st.ended = getattr(st, "ended", set()) | {m["channel"]}
                        if st.ended == set(st.channels):
                            break
            until_evt.set()
            ptask.cancel()
            await c.close()
        except BaseException as e:       # noqa: BLE001 - a stable client must not fail
            st.error = repr(e)[:300]

    async def ws_publisher(k, rate, until):
        c = await connect(b, "json" if k % 2 else "msgpack")
        r4 = random.Random(100 + k)
        next_at = time.monotonic()
        n = 0
        while time.monotonic() < until:
            ch = r4.choice(channels)
            await c.publish(ch, {"t": time.time(), "src": "ws"}, timeout=10)
            n += 1
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await c.close()
        return n

    churn = {"clean": 0, "abrupt": 0, "half_open": 0, "failed": 0}
    held = []

    async def churner(k, until):
        r5 = random.Random(1000 + k)
        loop = asyncio.get_running_loop()
        while time.monotonic() < until:
            kind = r5.choice(["clean", "abrupt", "abrupt", "half_open", "clean"])
            ch = r5.choice(channels)
            try:
                if kind == "half_open":
                    if len(held) >= HALF_OPEN_MAX:
                        old = held.pop(0)
                        old.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                        old.close()                      # a reset, as a vanished peer's next packet would get
                    held.append(await loop.run_in_executor(None, half_open, host, port, ch))
                else:
                    c = await connect(b)
                    await subscribe(c, ch)
                    await asyncio.sleep(r5.uniform(0.05, 0.6))
                    if kind == "clean":
                        await c.close()
                    else:
                        c.ws.transport.abort()
                churn[kind] += 1
            except Exception:                            # noqa: BLE001 - counted
                churn["failed"] += 1
            await asyncio.sleep(r5.uniform(0.05, 0.3))

    ready = []

    async def main():
        stables = [Stable(i, rng.sample(channels, SUBS_PER_STABLE)) for i in range(N_STABLE)]
        done_evts = [asyncio.Event() for _ in stables]
        tasks = [asyncio.ensure_future(stable_client(st, ev)) for st, ev in zip(stables, done_evts)]
        for _ in range(200):
            if len(ready) == N_STABLE or any(st.error for st in stables):
                break
            await asyncio.sleep(0.05)
        assert len(ready) == N_STABLE, [st.error for st in stables if st.error][:3]
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        base_fds = nfds(b.pid)
        threads = [threading.Thread(target=rest_publisher, args=(k, REST_RATE / 2)) for k in range(2)]
        threads += [threading.Thread(target=sighupper), threading.Thread(target=sampler, args=(t0,))]
        for t in threads:
            t.start()
        until = t0 + DURATION
        pubs = [ws_publisher(k, WS_RATE / 4, until) for k in range(4)]
        churns = [churner(k, until) for k in range(CHURN_CONCURRENCY)]
        got = await asyncio.gather(*pubs, *churns)
        figures["ws_published"] = sum(got[:4])
        stop.set()
        for t in threads:
            t.join(15)
        for s in held:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            s.close()
        # Churned connections are gone: descriptors come back to where they were.
        fds_end = None
        for _ in range(100):
            fds_end = nfds(b.pid)
            if fds_end <= base_fds + 2:
                break
            await asyncio.sleep(0.2)
        # The end marker on every channel: each stable subscriber reads to it.
        last = {}
        for ch in channels:
            r = requests.post(b.url("/api/publish"), json={"channel": ch, "data": "end"}, timeout=10)
            last[ch] = r.json()["offset"]
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return stables, last, base_fds, fds_end

    stables, last, base_fds, fds_end = run(main(), timeout=DURATION + 180)

    errors = [(st.idx, st.error) for st in stables if st.error]
    assert not errors, "stable clients failed: %r" % errors[:5]
    for st in stables:
        for ch in st.channels:
            offs = st.offsets[ch]
            assert offs, (st.idx, ch)
            assert offs == list(range(offs[0], last[ch] + 1)), "client %d: offsets of %s not contiguous" % (st.idx, ch)
    lat = sorted(x for st in stables for x in st.latencies)
    steady = [s for s in samples if s[0] >= DURATION * 0.3]
    rss_slope = slope_per_min([(t, r) for t, r, _ in steady])
    m = {}
    for line in requests.get(b.url("/metrics"), timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            m[k] = float(v)
    figures.update({
        "stable_clients": N_STABLE, "channels": N_CHANNELS,
        "deliveries_checked": len(lat), "p50_ms": round(1000 * lat[len(lat) // 2], 2),
        "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 2), "max_ms": round(1000 * lat[-1], 2),
        "stable_pings": sum(st.pings for st in stables), "churn": dict(churn),
        "rss_kb_start": steady[0][1] if steady else None, "rss_kb_end": steady[-1][1] if steady else None,
        "rss_kb_max": max(r for _, r, _ in samples), "vmrss_kb_start": vmrss[0], "vmrss_kb_end": vmrss[-1], "rss_slope_kb_per_min": round(rss_slope, 1),
        "fds_base": base_fds, "fds_max": max(f for _, _, f in samples), "fds_end": fds_end,
        "rest_publications": len(rest_acked),
        "disconnects": {k.split('"')[1]: v for k, v in m.items() if k.startswith("herald_disconnects_total")},
    })
    print("\nSOAK " + json.dumps(figures, sort_keys=True))
    if os.environ.get("HERALD_SOAK_REPORT"):
        with open(os.environ["HERALD_SOAK_REPORT"], "w") as f:
            json.dump(figures, f, indent=1, sort_keys=True)
    assert not figures.get("rest_errors"), figures["rest_errors"][:3]
    assert churn["clean"] + churn["abrupt"] + churn["half_open"] > 0 and churn["failed"] <= 2, churn
    assert figures["sighups"] >= 1
    assert figures["stable_pings"] >= N_STABLE, "the stable clients pinged"
    assert fds_end <= base_fds + 2, "descriptors: %d after the churn, %d before" % (fds_end, base_fds)
    # Flat memory: what the steady phase adds stays small, whatever the
    # duration. Not under AddressSanitizer, whose quarantine holds freed
    # memory back on purpose.
    if "libasan" not in open("/proc/%d/maps" % b.pid).read():
        assert steady and steady[-1][1] - steady[0][1] < 16 * 1024, figures
        assert rss_slope < 8 * 1024, figures
    assert b.health().status_code == 200
