"""Operators and deployment (issue 13): reverse proxies, development mode,
handshake refusals, the admin page's own feed, config cross-checks, token
audience/issuer/expiry, and smaller operator papercuts."""
import asyncio
import base64
import json
import os
import re
import socket
import time

import pytest
import requests
import websockets

from conftest import (Closed, RawWS, connect, hs256_token, http_raw, run, run_herald, ws_connect)

SECRET = b"0123456789abcdef0123456789abcdef-ops-secret"
APIKEY = "backend-key-0123456789"
WS_KEY = base64.b64encode(b"0123456789abcdef").decode()


def get(b, path, headers=None, key=None):
    h = dict(headers or {})
    if key:
        h["Authorization"] = "Bearer " + key
    return requests.get(b.url(path), headers=h, timeout=5)


def upgrade(b, path="/ws", protocols=("herald.json",), headers=None):
    """A raw WebSocket upgrade; returns (status, headers, body) of the answer."""
    req = ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (path, WS_KEY))
    if protocols:
        req += "Sec-WebSocket-Protocol: %s\r\n" % ", ".join(protocols)
    for k, v in (headers or {}).items():
        req += "%s: %s\r\n" % (k, v)
    s = socket.create_connection((b.host, b.port), timeout=3)
    data = b""
    try:
        s.sendall((req + "\r\n").encode())
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0]:
            raise ConnectionError("closed without an HTTP answer")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        n = int(hdrs.get("content-length", 0))
        while len(rest) < n:
            chunk = s.recv(4096)
            if not chunk:
                break
            rest += chunk
        return lines[0], hdrs, rest[:n]
    finally:
        s.close()


# ------------------------------------------------------------ 1. trusted proxies

def test_trusted_proxy_rest_limits_and_logs_per_client(make_broker):
    """Behind a proxy on loopback (exempt by default), each forwarded client
    has its own REST allowance, and the request log names it."""
    b = make_broker(trusted_proxies="127.0.0.1", rest_per_minute=3, log_requests="all")
    a = {"X-Forwarded-For": "203.0.113.7"}
    codes = [get(b, "/api/channels/x/history", a).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429], codes
    assert get(b, "/api/channels/x/history", {"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    assert b.wait_log(r"rest: 203\.0\.113\.7 GET /api/channels/x/history -> 429")
    assert b.wait_log(r"rest: 198\.51\.100\.2 GET /api/channels/x/history -> 200")


def test_forwarded_chain_takes_the_rightmost_untrusted_hop(make_broker):
    b = make_broker(trusted_proxies="127.0.0.1, 10.0.0.0/8", log_requests="all")
    cases = [
        # The client wrote 1.1.1.1 itself; the proxy appended the real one.
        ({"X-Forwarded-For": "1.1.1.1, 203.0.113.9"}, "203.0.113.9", "/api/t1"),
        # Two trusted hops: the first untrusted from the right is the client.
        ({"X-Forwarded-For": "192.0.2.5,10.1.2.3"}, "192.0.2.5", "/api/t2"),
        ({"Forwarded": 'for=192.0.2.60;proto=http, for="[2001:DB8:cafe::17]:4711"'}, "2001:db8:cafe::17", "/api/t3"),
        ({"Forwarded": "for=192.0.2.43:8080"}, "192.0.2.43", "/api/t4"),
        # A proxy that cannot name its client: the proxy itself, never a hop further left.
        ({"X-Forwarded-For": "198.51.100.1, unknown"}, "127.0.0.1", "/api/t5"),
        # With both headers, X-Forwarded-For is the one read.
        ({"X-Forwarded-For": "203.0.113.10", "Forwarded": "for=198.51.100.99"}, "203.0.113.10", "/api/t6"),
    ]
    for hdrs, want, path in cases:
        get(b, path, hdrs)
        assert b.wait_log(r"rest: %s GET %s -> 404" % (re.escape(want), path)), (hdrs, b.log[-2000:])


def test_forwarding_headers_are_ignored_without_trusted_proxies(make_broker):
    b = make_broker(rest_per_minute=2, rate_limit_exempt="none", log_requests="all")
    codes = [get(b, "/api/u", {"X-Forwarded-For": "203.0.113.%d" % i}).status_code for i in range(3)]
    assert codes == [404, 404, 429], codes
    assert "rest: 203.0.113." not in b.log


def test_trusted_proxy_connections_per_ip_per_client(make_broker):
    b = make_broker(trusted_proxies="127.0.0.1", connections_per_ip=1)

    async def go():
        a1 = await connect(b, extra_headers={"X-Forwarded-For": "203.0.113.7"})
        a2 = await ws_connect(b, extra_headers={"X-Forwarded-For": "203.0.113.7"})
        with pytest.raises((Closed, websockets.ConnectionClosed)) as e:
            await a2.request({"op": "connect"})
        assert e.value.code == 4008
        other = await connect(b, extra_headers={"X-Forwarded-For": "203.0.113.8"})
        await a1.ping()
        await other.ping()
        await a1.close()
        await other.close()
    run(go())


def test_trusted_proxy_cooloff_per_client(make_broker):
    b = make_broker("--apikey", "backend.secret=" + APIKEY, "--apikey", "backend.admin=on",
                    trusted_proxies="127.0.0.1", auth_failures_max=2, auth_cooloff="3s", log_requests="all")
    bad = {"X-Forwarded-For": "203.0.113.66"}
    assert get(b, "/api/channels/x/history", bad, key="wrong-key-0123456789").status_code == 401
    assert get(b, "/api/channels/x/history", bad, key="wrong-key-0123456789").status_code == 401
    # Cooling off: even the right key is refused for that client...
    r = get(b, "/api/channels/x/history", bad, key=APIKEY)
    assert r.status_code == 429 and r.json()["error"]["code"] == 115
    # ... and its WebSocket handshakes get an HTTP answer saying so.
    status, _, body = upgrade(b, headers=bad)
    assert " 429 " in status + " " and json.loads(body)["error"]["code"] == 115
    # Another client behind the same proxy is not affected.
    assert get(b, "/api/channels/x/history", {"X-Forwarded-For": "203.0.113.67"}, key=APIKEY).status_code == 200
    assert b.wait_log(r"auth: 203\.0\.113\.66: 2 failed authentications")


def test_bad_trusted_proxies_value_names_its_line(tmp_path):
    conf = tmp_path / "h.conf"
    conf.write_text("[server]\nport = 0\ntrusted_proxies = 10.0.0.0/8, 300.1.2.3\n")
    r = run_herald(["--config", str(conf), "--data-dir", str(tmp_path / "d")])
    assert r.returncode == 2, r.stderr
    assert "%s:3: server.trusted_proxies: \"300.1.2.3\" is not an address or CIDR block" % conf in r.stderr, r.stderr


# ------------------------------------------------------------ 3. handshake refusals

@pytest.mark.parametrize("path,protocols,headers,status,code", [
    ("/elsewhere", ("herald.json",), {}, 404, 103),
    ("/ws", ("mqtt",), {}, 400, 103),
    ("/ws", ("http",), {}, 400, 103),
    ("/ws", ("herald.json",), {"Origin": "https://evil.example"}, 403, 114),
])
def test_refused_handshakes_get_an_http_status(make_broker, path, protocols, headers, status, code):
    b = make_broker(allowed_origins="https://app.example")

    async def go():
        other = await connect(b)
        line, hdrs, body = upgrade(b, path, protocols, headers)
        assert line.split()[1] == str(status), line
        assert hdrs["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == code
        # A client offering several subprotocols still gets the one it can use.
        ok = RawWS(b.host, b.port, protocols=("mqtt", "herald.json"))
        ok.close()
        await other.ping()
        await other.close()
    run(go())


def test_426_has_a_reason_phrase(make_broker):
    b = make_broker()
    s = socket.create_connection((b.host, b.port), timeout=3)
    try:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        line = s.recv(4096).split(b"\r\n")[0].decode()
    finally:
        s.close()
    assert line == "HTTP/1.1 426 Upgrade Required", line


# ------------------------------------------------------------ 2. development mode

def test_dev_mode_on_a_public_address_is_refused(tmp_path):
    r = run_herald(["--bind", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d")], timeout=5)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("herald: --bind: server.bind = 0.0.0.0 in development mode"), r.stderr
    assert "server.allow_open_dev = on" in r.stderr and "[apikey]" in r.stderr, r.stderr
    assert not (tmp_path / "d").exists()


def test_dev_mode_refusal_names_the_bind_line(tmp_path):
    conf = tmp_path / "h.conf"
    conf.write_text("[server]\nport = 0\nbind = ::\n")
    r = run_herald(["--config", str(conf), "--data-dir", str(tmp_path / "d")], timeout=5)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "%s:3: server.bind = :: in development mode" % conf in r.stderr, r.stderr


@pytest.mark.parametrize("extra", [["--allow-open-dev", "on"], ["--apikey", "backend.secret=" + APIKEY],
                                   ["--hmac-secret", SECRET.decode(), "--anonymous", "off"]])
def test_dev_mode_check_passes_with_opt_in_or_credentials(tmp_path, extra):
    """203.0.113.7 is not this machine's: getting as far as trying to listen
    there (exit 1) shows the development-mode check let it through."""
    r = run_herald(["--bind", "203.0.113.7", "--port", "0", "--data-dir", str(tmp_path / "d"), *extra], timeout=5)
    assert r.returncode == 1 and "cannot listen on 203.0.113.7" in r.stderr, (r.returncode, r.stderr)


def test_dev_mode_start_logs_a_warning(make_broker):
    b = make_broker()
    assert re.search(r"warn  auth: development mode: .*REST API", b.log), b.log
    s = make_broker("--apikey", "backend.secret=" + APIKEY)
    assert "development mode" not in s.log


# ------------------------------------------------------------ 5. config cross-check

def test_join_leave_without_presence_names_its_line(tmp_path):
    conf = tmp_path / "h.conf"
    conf.write_text("[server]\nport = 0\n\n[namespace room]\nsignals = on\njoin_leave = on\n")
    r = run_herald(["--config", str(conf), "--data-dir", str(tmp_path / "d")], timeout=5)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "%s:6: [namespace room] join_leave = on needs presence = on" % conf in r.stderr, r.stderr


def test_join_leave_without_presence_by_flag(tmp_path):
    r = run_herald(["--ns", "room.join_leave=on", "--data-dir", str(tmp_path / "d")], timeout=5)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--ns room.join_leave: [namespace room] join_leave = on needs presence = on" in r.stderr, r.stderr


# ------------------------------------------------------------ 6. token audience, issuer, exp, iat

def token(claims, secret=SECRET):
    from conftest import b64u
    import hashlib
    import hmac
    si = b64u(b'{"alg":"HS256","typ":"JWT"}') + "." + b64u(json.dumps(claims).encode())
    return si + "." + b64u(hmac.new(secret, si.encode(), hashlib.sha256).digest())


async def try_connect(b, tok):
    """The reply to connect with @tok, and the close code when refused."""
    c = await ws_connect(b)
    m = await c.request({"op": "connect", "id": 1, "token": tok})
    if m.get("op") == "connected":
        await c.close()
        return m, None
    with pytest.raises(Closed) as e:
        await c.next()
    return m, e.value.code


def test_audience_issuer_and_required_exp(make_broker):
    b = make_broker("--hmac-secret", SECRET.decode(), "--auth-audience", "herald, chat-api",
                    "--auth-issuer", "https://idp.example", "--require-exp", "on", auth_failures_max=0)
    now = int(time.time())
    good = {"sub": "ann", "exp": now + 600, "iss": "https://idp.example"}
    cases = [
        (dict(good, aud="herald"), None),
        (dict(good, aud=["billing", "chat-api"]), None),
        (dict(good, aud="billing"), "aud"),
        (dict(good, aud=["billing"]), "aud"),
        (good, "aud"),
        (dict(good, aud="herald", iss="https://evil.example"), "iss"),
        ({"sub": "ann", "exp": now + 600, "aud": "herald"}, "iss"),
        ({"sub": "ann", "iss": "https://idp.example", "aud": "herald"}, "exp"),
    ]

    async def go():
        for claims, why in cases:
            m, code = await try_connect(b, token(claims))
            if why is None:
                assert m["op"] == "connected" and m["user"] == "ann", (claims, m)
            else:
                assert m["op"] == "error" and m["code"] == 113 and why in m["reason"], (claims, m)
                assert code == 4001
    run(go())


def test_iat_in_the_future_is_refused(make_broker):
    b = make_broker("--hmac-secret", SECRET.decode(), auth_failures_max=0)
    now = int(time.time())

    async def go():
        m, code = await try_connect(b, token({"sub": "ann", "iat": now + 3600}))
        assert m["code"] == 113 and "iat" in m["reason"] and code == 4001, m
        m, _ = await try_connect(b, token({"sub": "ann", "iat": now + 3600.5}))
        assert m["code"] == 113 and "iat" in m["reason"], m
        # Within auth.leeway (30 s) of clock skew: accepted.
        m, _ = await try_connect(b, token({"sub": "ann", "iat": now + 10}))
        assert m["op"] == "connected", m
        # No aud/iss/exp policy by default.
        m, _ = await try_connect(b, token({"sub": "ann", "aud": "anything"}))
        assert m["op"] == "connected", m
    run(go())


# ------------------------------------------------------------ 7. smaller papercuts

def test_ipv6_listening_line_is_a_url(tmp_path):
    from conftest import Broker
    b = Broker(tmp_path, name="v6")
    b.host = "::1"
    try:
        b.start()
    except RuntimeError as e:
        if "cannot listen" in str(e):
            pytest.skip("no IPv6 loopback here")
        raise
    try:
        assert "(ws://[::1]:%d/ws)" % b.port in b.log, b.log
    finally:
        b.check_clean_exit()


def test_data_dir_that_is_a_file_says_so(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_herald(["--port", "0", "--data-dir", str(f)], timeout=5)
    assert r.returncode == 1
    assert "data directory %s: not a directory" % f in r.stderr, r.stderr
    assert "Permission denied" not in r.stderr


def lws_lines_after(b, marker):
    log = b.log
    return [l for l in log[log.index(marker):].splitlines() if " lws: " in l]


def test_debug_at_run_time_turns_on_lws_lines(make_broker):
    b = make_broker()
    r = requests.post(b.url("/api/admin/log?level=debug"), timeout=5)
    assert r.status_code == 200
    assert b.wait_log("log level set to debug")
    get(b, "/api/health")
    deadline = time.monotonic() + 5
    while not lws_lines_after(b, "log level set to debug") and time.monotonic() < deadline:
        get(b, "/api/health")
        time.sleep(0.1)
    assert lws_lines_after(b, "log level set to debug"), b.log[-3000:]
    # And back: libwebsockets goes quiet again.
    requests.post(b.url("/api/admin/log?level=info"), timeout=5)
    assert b.wait_log("log level set to info")
    get(b, "/api/health")
    time.sleep(0.3)
    assert not lws_lines_after(b, "log level set to info"), b.log[-3000:]


def test_sighup_debug_turns_on_lws_lines(make_broker, tmp_path):
    import signal
    conf = tmp_path / "log.conf"
    conf.write_text("[log]\nlevel = info\n")
    b = make_broker("--config", str(conf))
    conf.write_text("[log]\nlevel = debug\n")
    b.send_signal(signal.SIGHUP)
    assert b.wait_log("SIGHUP: log level debug")
    deadline = time.monotonic() + 5
    while not lws_lines_after(b, "SIGHUP: log level debug") and time.monotonic() < deadline:
        get(b, "/api/health")
        time.sleep(0.1)
    assert lws_lines_after(b, "SIGHUP: log level debug"), b.log[-3000:]


def test_help_has_no_empty_default():
    r = run_herald(["--help"])
    assert r.returncode == 0
    assert "(default )" not in r.stdout
    assert "--trusted-proxies" in r.stdout and "--allow-open-dev" in r.stdout


def test_metrics_has_process_max_fds(make_broker):
    import resource
    b = make_broker()
    text = get(b, "/metrics").text
    m = re.search(r"^process_max_fds (\S+)$", text, re.M)
    assert m, text[-2000:]
    assert float(m.group(1)) >= resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert re.search(r"^# TYPE process_max_fds gauge$", text, re.M)


# ------------------------------------------------------------ 4. the admin page's own feed

def metrics_map(b):
    out = {}
    for line in get(b, "/metrics").text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def test_sys_feed_stays_out_of_user_counters_and_off_disk(make_broker):
    b = make_broker()

    async def go():
        c = await connect(b)
        await c.subscribe("sys:stats")
        samples = [(await c.expect(op="pub", channel="sys:stats", timeout=3))["data"] for _ in range(3)]
        m = metrics_map(b)
        assert m['herald_publications_total{namespace="*"}'] == 0, m
        assert m['herald_publications_total{namespace="sys"}'] >= 3, m
        assert m["herald_deliveries_total"] == 0
        assert m["herald_channels"] == 0
        # Not stored, so never committed or synced.
        assert m["herald_storage_commit_seconds_count"] == 0
        assert m["herald_storage_entries"] == 0
        assert get(b, "/api/health").json()["channels"] == 0
        last = samples[-1]
        assert last["channels"] == 0 and last["rates"]["publications"] == 0 and last["rates"]["deliveries"] == 0
        # User traffic still counts.
        b.publish_rest("news", {"n": 1})
        m = metrics_map(b)
        assert m['herald_publications_total{namespace="*"}'] == 1 and m["herald_channels"] == 1
        await c.close()
    run(go())


def test_admin_feed_history_comes_from_memory(make_broker):
    """Nobody watched for a few seconds; a subscriber asking for history still
    gets those samples, ending at the reply's offset, then live ones after it."""
    b = make_broker()
    time.sleep(3.5)

    async def go():
        c = await connect(b)
        m = await c.request({"op": "subscribe", "id": 2, "channel": "sys:stats", "history": 600})
        assert m["op"] == "subscribed", m
        pubs = m["publications"]
        assert len(pubs) >= 2, m
        offsets = [p["offset"] for p in pubs]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))) and offsets[-1] == m["offset"]
        assert all("rates" in p["data"] and isinstance(p["ts"], int) for p in pubs)
        live = await c.expect(op="pub", channel="sys:stats", timeout=3)
        assert live["offset"] == m["offset"] + 1
        # Unwatched samples carry no top lists; watched ones do.
        assert "top_by_subscribers" in live["data"]
        # The history op and REST page through the same memory.
        await c.send({"op": "history", "id": 3, "channel": "sys:stats", "limit": 2, "reverse": True})
        m2 = await c.next()
        while m2.get("op") == "pub":               # the live feed goes on meanwhile
            m2 = await c.next()
        assert m2["op"] == "history", m2
        newest = [p["offset"] for p in m2["publications"]]
        assert len(newest) == 2 and newest[0] > newest[1] and m2["next"] == {"before": newest[1], "reverse": True}
        r = get(b, "/api/channels/sys:stats/history?since=%d&limit=1" % offsets[0]).json()
        assert [p["offset"] for p in r["publications"]] == [offsets[0] + 1] and r["next"] == {"since": offsets[0] + 1}
        small = await connect(b)
        m3 = await small.request({"op": "subscribe", "id": 2, "channel": "sys:stats", "history": 2})
        assert [p["offset"] for p in m3["publications"]] == [m3["offset"] - 1, m3["offset"]], m3
        await c.close()
        await small.close()
    run(go())
