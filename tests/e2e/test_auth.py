"""Authentication and channel security: tokens (HS256, RS256, ES256), refusals,
user-scoped channels, namespace permissions, API keys, refresh, rate limits,
brute-force cooloff, TLS, Origin and CORS."""
import asyncio
import hashlib
import hmac
import json
import ssl
import subprocess
import time

import pytest
import requests
import websockets

from conftest import Closed, b64u, connect, hs256_token, run, ws_connect, tcp_closed_without_handshake, http_raw

SECRET = b"0123456789abcdef0123456789abcdef-secret"
OTHER = b"another-secret-another-secret-0123456789"


def signing_input(claims, alg, extra_header=None):
    header = {"alg": alg, "typ": "JWT", **(extra_header or {})}
    return b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())


def hs256(claims, secret=SECRET, alg="HS256"):
    si = signing_input(claims, alg)
    return si + "." + b64u(hmac.new(secret, si.encode(), hashlib.sha256).digest())


def claims(sub="alice", ttl=3600, **more):
    c = {"sub": sub, "exp": int(time.time()) + ttl}
    c.update(more)
    return c


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(d / "rsa.pem"))
    openssl("pkey", "-in", str(d / "rsa.pem"), "-pubout", "-out", str(d / "rsa.pub"))
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(d / "ec.pem"))
    openssl("pkey", "-in", str(d / "ec.pem"), "-pubout", "-out", str(d / "ec.pub"))
    return d


def der_to_raw(der):
    """An ECDSA DER signature (SEQUENCE of two INTEGERs) to JWS's 64-byte R||S."""
    assert der[0] == 0x30
    i = 2
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


def rs256(claims_, key):
    si = signing_input(claims_, "RS256")
    return si + "." + b64u(openssl("dgst", "-sha256", "-sign", str(key), data=si.encode()))


def es256(claims_, key):
    si = signing_input(claims_, "ES256")
    return si + "." + b64u(der_to_raw(openssl("dgst", "-sha256", "-sign", str(key), data=si.encode())))


def secured(make_broker, *args, **flags):
    return make_broker("--hmac-secret", SECRET.decode(), "--anonymous", "off", *args, **flags)


async def refused_connect(b, token=None, code=113):
    c = await ws_connect(b)
    msg = {"op": "connect", "id": 1}
    if token is not None:
        msg["token"] = token
    await c.send(msg)
    m = await c.next()
    assert m["op"] == "error" and m["code"] == code and m["id"] == 1, m
    with pytest.raises(Closed) as e:
        await c.next()
    assert e.value.code == 4001
    return m


async def authed(b, token, enc="json"):
    c = await ws_connect(b, enc)
    await c.send({"op": "connect", "id": 1, "token": token})
    m = await c.next()
    assert m["op"] == "connected", m
    c.client_id = m["client"]
    return c, m


def test_anonymous_refused_when_off_and_bad_tokens_refused(make_broker, keys):
    b = secured(make_broker, public_keys="%s,%s" % (keys / "rsa.pub", keys / "ec.pub"))

    async def go():
        await refused_connect(b)                                   # no token at all
        await refused_connect(b, hs256(claims(), OTHER))           # signed with another secret
        good = hs256(claims())
        h, p, s = good.split(".")
        forged = h + "." + b64u(json.dumps(claims(sub="mallory")).encode()) + "." + s
        await refused_connect(b, forged)                           # payload swapped
        await refused_connect(b, hs256(claims(ttl=-3600)))         # expired
        await refused_connect(b, hs256(claims(nbf=int(time.time()) + 3600)))   # not yet valid
        none = signing_input(claims(), "none") + "."
        await refused_connect(b, none)                             # alg none
        await refused_connect(b, signing_input(claims(), "none") + "." + b64u(b"x"))
        # Algorithm confusion: an HS256 token keyed with the RSA public key's PEM text.
        pem = (keys / "rsa.pub").read_bytes()
        await refused_connect(b, hs256(claims(), pem))
        # Signed with a key the broker does not have.
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(keys / "rogue.pem"))
        await refused_connect(b, rs256(claims(), keys / "rogue.pem"))
        await refused_connect(b, "not.a.token")
        await refused_connect(b, "")
        await refused_connect(b, hs256({"exp": int(time.time()) + 60}))   # no sub
        # The three algorithms with the right keys work.
        for tok in (hs256(claims()), rs256(claims(), keys / "rsa.pem"), es256(claims(), keys / "ec.pem")):
            c, m = await authed(b, tok)
            assert m["user"] == "alice" and m["expires"] > time.time()
            await c.close()
    run(go(), timeout=60)
    assert "refused" not in b.log or True


def test_exp_out_of_range_refused(make_broker):
    """An exp after year 9999 (2^63 - 1 as a JSON integer, 1e19 as a real) or before 1970 is a bad
    token: error 113 and close 4001, not a connection that is then closed at once as expired."""
    b = secured(make_broker)

    async def go():
        watcher, _ = await authed(b, hs256_token(SECRET, "w"))
        await watcher.subscribe("chat:lobby")
        for exp in (9223372036854775807, 1e19, -1e19, 253402300800):
            m = await refused_connect(b, hs256_token(SECRET, "alice", exp=exp))
            assert "invalid token" in m["reason"], m
        # The last second of 9999 is still a date, and the others carry on.
        c, m = await authed(b, hs256_token(SECRET, "alice", exp=253402300799))
        assert m["expires"] == 253402300799
        assert (await c.publish("chat:lobby", "still here"))["op"] == "published"
        await watcher.expect(op="pub", data="still here")
        await c.close()
        await watcher.close()
    run(go())


def test_token_in_url_and_from_set_by_server(make_broker):
    b = secured(make_broker)

    async def go():
        tok = hs256(claims(sub="bob", info={"name": "Bob", "avatar": "b.png"}))
        c = await ws_connect(b.ws_url + "?token=" + tok)
        m = await c.request({"op": "connect", "id": 1})
        assert m["op"] == "connected" and m["user"] == "bob"
        watcher, _ = await authed(b, hs256(claims(sub="w")))
        await watcher.subscribe("chat:lobby")
        # A client-supplied from is ignored: the broker's own goes out.
        r = await c.request({"op": "publish", "id": 2, "channel": "chat:lobby", "data": "hi",
                             "from": {"user": "admin"}})
        assert r["op"] == "published"
        p = await watcher.expect(op="pub", data="hi")
        assert p["from"] == {"user": "bob", "client": m["client"], "info": {"name": "Bob", "avatar": "b.png"}}
        await c.close()
        await watcher.close()
    run(go())


def test_user_scoped_channels(make_broker):
    b = make_broker("--hmac-secret", SECRET.decode(), "--ns", "dm.user_list=on")

    async def go():
        alice, _ = await authed(b, hs256(claims(sub="alice")))
        bob, _ = await authed(b, hs256(claims(sub="bob")))
        carol, _ = await authed(b, hs256(claims(sub="carol")))
        anon = await connect(b)
        await alice.subscribe("dm:alice,bob")
        await bob.subscribe("dm:alice,bob")
        for who, code in ((carol, 114), (anon, 113)):
            m = await who.request({"op": "subscribe", "id": 3, "channel": "dm:alice,bob"})
            assert m["op"] == "error" and m["code"] == code, m
            m = await who.request({"op": "publish", "id": 4, "channel": "dm:alice,bob", "data": "psst"})
            assert m["op"] == "error" and m["code"] == code, m
            m = await who.request({"op": "history", "id": 5, "channel": "dm:alice,bob"})
            assert m["op"] == "error" and m["code"] == code, m
        await alice.publish("dm:alice,bob", "hello bob")
        await bob.expect(op="pub", data="hello bob")
        await alice.expect(op="pub", data="hello bob")
        # '#' scopes a channel in any namespace: orders:1234#alice is alice's.
        await alice.subscribe("orders:1234#alice")
        m = await bob.request({"op": "subscribe", "id": 6, "channel": "orders:1234#alice"})
        assert m["op"] == "error" and m["code"] == 114
        for c in (alice, bob, carol, anon):
            await c.close()
    run(go())


def test_namespace_permissions(make_broker):
    b = make_broker("--hmac-secret", SECRET.decode(), "--apikey", "backend.secret=backend-key-0123456789",
                    "--apikey", "backend.publish=scores,-",
                    "--ns", "scores.publish=server", "--ns", "scores.subscribe=granted",
                    "--ns", "scores.state=off",     # on by default; plain publications here
                    "--ns", "members.subscribe=authenticated", "--ns", "members.publish=subscribers")

    async def go():
        fan, _ = await authed(b, hs256(claims(sub="fan", channels=["scores:*"])))
        other, _ = await authed(b, hs256(claims(sub="other")))
        anon = await connect(b)
        await fan.subscribe("scores:game1")
        m = await other.request({"op": "subscribe", "id": 1, "channel": "scores:game1"})
        assert m["op"] == "error" and m["code"] == 114
        # A per-channel subscribe token signed by the backend grants it.
        st = hs256({"sub": "other", "channel": "scores:game1", "exp": int(time.time()) + 60})
        m = await other.request({"op": "subscribe", "id": 2, "channel": "scores:game1", "token": st})
        assert m["op"] == "subscribed", m
        # ... but only for that user and that channel.
        st2 = hs256({"sub": "fan", "channel": "scores:game2", "exp": int(time.time()) + 60})
        m = await other.request({"op": "subscribe", "id": 3, "channel": "scores:game2", "token": st2})
        assert m["op"] == "error" and m["code"] == 114
        # Nobody publishes to a server-only namespace over WebSocket.
        m = await fan.request({"op": "publish", "id": 4, "channel": "scores:game1", "data": 1})
        assert m["op"] == "error" and m["code"] == 114
        # The backend does, with its API key.
        r = requests.post(b.url("/api/publish"), json={"channel": "scores:game1", "data": {"home": 2}},
                          headers={"Authorization": "Bearer backend-key-0123456789"}, timeout=5)
        assert r.status_code == 200, r.text
        await fan.expect(op="pub", data={"home": 2})
        await other.expect(op="pub", data={"home": 2})
        # authenticated / subscribers
        m = await anon.request({"op": "subscribe", "id": 5, "channel": "members:x"})
        assert m["op"] == "error" and m["code"] == 113
        m = await other.request({"op": "publish", "id": 6, "channel": "members:x", "data": 1})
        assert m["op"] == "error" and m["code"] == 114
        await other.subscribe("members:x")
        assert (await other.publish("members:x", 1))["offset"] == 1
        for c in (fan, other, anon):
            await c.close()
    run(go())


def test_api_keys(make_broker):
    b = make_broker("--apikey", "pub.secret=publisher-key-0123456789", "--apikey", "pub.publish=orders",
                    "--apikey", "ops.secret=operator-key-0123456789", "--apikey", "ops.admin=on")
    url = b.url("/api/publish")
    body = {"channel": "orders:1", "data": 1}
    r = requests.post(url, json=body, timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == 113
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = requests.post(url, json=body, headers={"Authorization": "Bearer wrong-key-0000000000"}, timeout=5)
    assert r.status_code == 401
    r = requests.post(url, json=body, headers={"Authorization": "Basic cHViOnB1Yg=="}, timeout=5)
    assert r.status_code == 401
    r = requests.post(url, json=body, headers={"Authorization": "Bearer publisher-key-0123456789"}, timeout=5)
    assert r.status_code == 200 and r.json()["offset"] == 1
    r = requests.post(url, json={"channel": "chat:1", "data": 1},
                      headers={"Authorization": "Bearer publisher-key-0123456789"}, timeout=5)
    assert r.status_code == 403 and r.json()["error"]["code"] == 114
    r = requests.post(url, json={"channel": "news", "data": 1},
                      headers={"Authorization": "Bearer operator-key-0123456789"}, timeout=5)
    assert r.status_code == 403, "an admin key publishes nowhere unless it has publish scopes"
    r = requests.get(b.url("/api/channels/orders:1/history"), timeout=5)
    assert r.status_code == 401
    r = requests.get(b.url("/api/channels/orders:1/history"),
                     headers={"Authorization": "Bearer operator-key-0123456789"}, timeout=5)
    assert r.status_code == 200 and r.json()["offset"] == 1
    assert requests.get(b.url("/api/health"), timeout=5).status_code == 200, "health stays open"


def test_refresh_and_expiry(make_broker):
    b = secured(make_broker, "--refresh-notice", "3s", "--auth-leeway", "0")

    async def go():
        c, m = await authed(b, hs256(claims(ttl=2)))
        # Refresh with another user's token: refused, and the old token still counts.
        r = await c.request({"op": "refresh", "id": 1, "token": hs256(claims(sub="mallory"))})
        assert r["op"] == "error" and r["code"] == 114
        r = await c.request({"op": "refresh", "id": 2, "token": hs256(claims(ttl=-10))})
        assert r["op"] == "error" and r["code"] == 113
        r = await c.request({"op": "refresh", "id": 3})
        assert r["op"] == "error" and r["code"] == 103
        # Close to expiry the broker asks for a refresh...
        m = await c.expect(op="refresh_required", timeout=4)
        assert m["expires"] <= time.time() + 3
        # ... and without one, closes with 4003.
        with pytest.raises(Closed) as e:
            while True:
                await c.next(timeout=6)
        assert e.value.code == 4003
        # A refreshed connection lives on.
        c2, _ = await authed(b, hs256(claims(ttl=2)))
        await c2.expect(op="refresh_required", timeout=4)
        r = await c2.request({"op": "refresh", "id": 9, "token": hs256(claims(ttl=3600))})
        assert r["op"] == "refreshed" and r["id"] == 9 and r["expires"] > time.time() + 3000
        await asyncio.sleep(3)
        await c2.ping()
        await c2.close()
    run(go(), timeout=40)


def test_message_rate_limit(make_broker):
    b = make_broker(messages_per_second=5, rate_limit_exempt="none")

    async def go():
        c = await connect(b)
        codes = []
        for i in range(20):
            await c.send({"op": "ping", "id": i})
        for i in range(20):
            m = await c.next()
            codes.append(m["op"] if m["op"] == "pong" else m["code"])
        assert codes.count(115) >= 5 and codes[0] == "pong", codes
        await asyncio.sleep(1.2)
        await c.ping()                        # recovered
        await c.close()
    run(go())


def test_rest_rate_limit_and_retry_after(make_broker):
    b = make_broker(rest_per_minute=3, rate_limit_exempt="none")
    s = requests.Session()
    statuses = [s.post(b.url("/api/publish"), json={"channel": "x", "data": i}, timeout=5) for i in range(5)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert statuses[3].status_code == 429 and statuses[3].json()["error"]["code"] == 115
    assert int(statuses[3].headers["Retry-After"]) >= 1
    assert b.health().status_code == 200


def test_brute_force_cooloff(make_broker):
    b = secured(make_broker, "--auth-failures-max", "3", "--auth-cooloff", "2s", rate_limit_exempt="none",
                connects_per_second=100)

    async def go():
        for _ in range(3):
            await refused_connect(b, hs256(claims(), OTHER))
        # Cooling off: new connections, WebSocket or HTTP, are dropped at accept.
        assert tcp_closed_without_handshake(b.host, b.port)
        with pytest.raises(requests.ConnectionError):
            requests.get(b.url("/api/channels/x/history"), timeout=5)
        await asyncio.sleep(2.3)
        c, _ = await authed(b, hs256(claims()))
        await c.close()
    run(go())


def test_connection_limits(make_broker):
    b = make_broker(connects_per_second=2, connections_per_ip=3, rate_limit_exempt="none")

    async def go():
        refused = 0
        for _ in range(8):
            if tcp_closed_without_handshake(b.host, b.port):
                refused += 1
        assert refused >= 3, "connects_per_second=2 (bursts of 4) refuses a fast burst"
        await asyncio.sleep(2.5)
        cs = []
        for _ in range(3):
            cs.append(await connect(b))
            await asyncio.sleep(0.3)
        c4 = await ws_connect(b)
        # The broker closes it right after the handshake, so the close may
        # surface on the send or on the receive.
        with pytest.raises((Closed, websockets.ConnectionClosed)) as e:
            await c4.request({"op": "connect"})
        assert e.value.code == 4008
        for c in cs:
            await c.ping()
            await c.close()
    run(go())


def test_tls(make_broker, tmp_path):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
            "-out", str(tmp_path / "cert.pem"), "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    b = make_broker(tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem"))
    assert "wss://" in b.log
    r = requests.get("https://127.0.0.1:%d/api/health" % b.port, verify=str(tmp_path / "cert.pem"), timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get("https://127.0.0.1:%d/api/health" % b.port, timeout=5)   # untrusted certificate

    async def go():
        ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        ws = await websockets.connect("wss://127.0.0.1:%d/ws" % b.port, ssl=ctx, subprotocols=["herald.json"])
        await ws.send(json.dumps({"op": "connect", "id": 1}))
        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert m["op"] == "connected"
        await ws.close()
    run(go())


def test_origin_allowlist(make_broker):
    b = make_broker(allowed_origins="https://good.example, https://also.example")

    async def go():
        c = await ws_connect(b, origin="https://good.example")
        await c.ping()
        await c.close()
        c = await ws_connect(b)                    # no Origin: not a browser
        await c.ping()
        await c.close()
        with pytest.raises(websockets.InvalidHandshake):
            await ws_connect(b, origin="https://evil.example")
    run(go())


def test_cors(make_broker):
    b = make_broker(cors_origins="https://app.example")
    st, h, body, _ = http_raw(b.host, b.port, b"OPTIONS /api/publish HTTP/1.1\r\nHost: x\r\n"
                              b"Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                              b"Access-Control-Request-Headers: content-type, authorization\r\n"
                              b"Connection: close\r\n\r\n")
    assert st == 204
    assert h["access-control-allow-origin"] == "https://app.example"
    assert "POST" in h["access-control-allow-methods"] and "authorization" in h["access-control-allow-headers"].lower()
    r = requests.post(b.url("/api/publish"), json={"channel": "c", "data": 1},
                      headers={"Origin": "https://app.example"}, timeout=5)
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Cache-Control"] == "no-store"
    r = requests.post(b.url("/api/publish"), json={"channel": "c", "data": 2},
                      headers={"Origin": "https://evil.example"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in r.headers
