#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py - writes the seed corpora in tests/fuzz/corpus/.

Seeds are real protocol messages (docs/protocol.md) in each encoding plus
edge cases around every limit. The files are checked in; rerun this after
changing it (it rewrites corpus/fuzz_*/seed-*, leaving other files alone).
Needs only the Python standard library: MessagePack is packed by hand below.

fuzz_jwt's seed-* are HS256 tokens (signed here with the secret in
fuzz_jwt.c) and broken ones. Its signed-* are RS256 and ES256 tokens that
verify against the public keys in fuzz_jwt.c; their private keys were thrown
away, so they are rewritten only when this is run with a new pair:
    make_corpus.py --rsa-key RSA.pem --ec-key EC.pem
(then put the public halves, `openssl pkey -in K.pem -pubout`, into
fuzz_jwt.c and discard the private keys). That needs the openssl command.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def pack(v, minimal=True):
    """Smallest-form MessagePack for None/bool/int/float/str/bytes/list/dict."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v <= 0x7F:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if v > 0:
            for fmt, code in ((">B", 0xCC), (">H", 0xCD), (">I", 0xCE), (">Q", 0xCF)):
                try:
                    return bytes([code]) + struct.pack(fmt, v)
                except struct.error:
                    pass
        for fmt, code in ((">b", 0xD0), (">h", 0xD1), (">i", 0xD2), (">q", 0xD3)):
            try:
                return bytes([code]) + struct.pack(fmt, v)
            except struct.error:
                pass
        raise ValueError(v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode("utf-8", "surrogatepass")
        return str_hdr(len(b)) + b
    if isinstance(v, bytes):   # raw, pre-packed
        return v
    if isinstance(v, list):
        n = len(v)
        hdr = bytes([0x90 | n]) if n < 16 else (b"\xdc" + struct.pack(">H", n) if n < 65536 else b"\xdd" + struct.pack(">I", n))
        return hdr + b"".join(pack(e) for e in v)
    if isinstance(v, dict):
        n = len(v)
        hdr = bytes([0x80 | n]) if n < 16 else (b"\xde" + struct.pack(">H", n) if n < 65536 else b"\xdf" + struct.pack(">I", n))
        return hdr + b"".join(pack(k) + pack(e) for k, e in v.items())
    raise TypeError(v)


def str_hdr(n):
    if n < 32:
        return bytes([0xA0 | n])
    if n < 256:
        return b"\xd9" + bytes([n])
    if n < 65536:
        return b"\xda" + struct.pack(">H", n)
    return b"\xdb" + struct.pack(">I", n)


def nest(depth, leaf, kind="array"):
    v = leaf
    for _ in range(depth):
        v = [v] if kind == "array" else {"a": v}
    return v


MESSAGES = [
    {"op": "connect", "id": 1},
    {"op": "subscribe", "id": 2, "channel": "chat:room1"},
    {"op": "unsubscribe", "id": 3, "channel": "chat:room1"},
    {"op": "publish", "id": 4, "channel": "chat:room1", "data": {"text": "hello"}},
    {"op": "ping", "id": 5},
    {"op": "ping", "id": "req-\u00e9-" + "x" * 100},
    {"op": "publish", "channel": "news", "data": None},
    {"op": "publish", "channel": "dm:alice,bob", "data": [1, -1, 2.5, "two", True, False, None, {}, []]},
    {"op": "publish", "channel": "orders:1234#alice", "data": {"qty": 9223372036854775807, "min": -9223372036854775808}},
    {"op": "publish", "channel": "seats:event-9/section-a", "data": {"x": 0.1, "y": 1e300, "z": -0.0, "w": 5e-324}},
    {"op": "publish", "channel": "k=v~@", "data": "line1\nline2\t\"q\"\\ \u0000 \u001f \u2028 \U0001F600"},
    {"op": "publish", "channel": "a", "data": {"nested": nest(60, 1)}},
    {"op": "publish", "channel": "a", "data": {"": "", "k": "v", "ke": "prefix"}},
    {"op": "pub", "channel": "news", "offset": 1, "ts": 1795048543773, "data": True},
    {"op": "connected", "id": 1, "client": "5d7e387828ee86f9", "version": "0.1.0", "ping_interval": 25},
    {"op": "error", "id": 4, "code": 104, "reason": "channel name has a character outside"},
    {"op": "subscribe", "channel": "x" * 255},
    {"op": "unknown"},
    {"op": 5},
    {},
    nest(63, 1, "map"),
    {"big": list(range(40)), "ints": [127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649]},
    {"s31": "s" * 31, "s32": "s" * 32, "s255": "s" * 255, "s256": "s" * 256},
]

JSON_EXTRA = [
    b'{"op":"ping","id":5}',
    b' {\n "op" : "ping" } ',
    b'{"op":"ping","id":5,"id":6}',
    b'{"a":1,}',
    b'[{"op":"ping"}]',
    b'"just a string"',
    b'{"n":-0,"e":1E+2,"f":1.5e-3,"g":0.30000000000000004}',
    b'{"big":9223372036854775808}',
    b'{"small":-9223372036854775809}',
    b'{"r":1e400}',
    b'{"u":"\\ud83d\\ude00\\u00e9\\u0000"}',
    b'{"bad":"\\ud800"}',
    b'{"\\u0000":1}',
    b'{"s":"\xc3\xa9\xe2\x82\xac"}',
    b'{"s":"\xff"}',
    b'{"a":' + b"[" * 64 + b"]" * 64 + b"}",
    b"[" * 65 + b"]" * 65,
    b'{"op":"ping"}\n{"op":"ping"}',
    b'{"op":"publish","channel":"x","data":NaN}',
    b'',
]

MSGPACK_EXTRA = [
    bytes.fromhex("82a26f70a470696e67a2696405"),                       # docs §8 ping
    bytes.fromhex("83a26f70a9737562736372696265a26964" "02a76368616e6e656caa636861743a726f6f6d31"),
    bytes.fromhex("85a26f70a3707562a76368616e6e656ca46e657773a66f6666736574" "01a27473cf000001a1f13b161da464617461c3"),
    b"\x81\xa1d\xc4\x01\x00",                                      # bin
    b"\x81\xa1d\xc7\x01\x05\x00",                                  # ext
    b"\x81\xa1d\xd4\x05\x00",                                      # fixext1
    b"\x81\xa1d\xc1",                                              # reserved
    b"\x81\xa1d\xcf\x80\x00\x00\x00\x00\x00\x00\x00",              # > INT64_MAX
    b"\x81\xa1d\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",              # NaN
    b"\x81\xa1d\xca\x7f\x80\x00\x00",                              # +inf float32
    b"\x81\xa1d\xca\x3d\xcc\xcc\xcd",                              # 0.1f
    b"\x81\x01\x01",                                               # int key
    b"\x82\xa1a\x01\xa1a\x02",                                     # duplicate key
    b"\x82\xa1a\x01\xd9\x01a\x02",                                 # duplicate key, other width
    b"\x81\xa1\xff\x01",                                           # invalid UTF-8 key
    b"\x81\xa1d\xa3\xed\xa0\x80",                                  # surrogate
    b"\x81\xa3a\x00b\x01",                                         # NUL in key
    b"\x81\xa1d\xdd\xff\xff\xff\xff",                              # huge array claim
    b"\x81\xa1d\xdf\xff\xff\xff\xff\xa1a\xc0",                     # huge map claim
    b"\x81\xa1d\xdb\xff\xff\xff\xff",                              # huge str claim
    b"\x80\xc0",                                                   # trailing byte
    b"\x82\xa2op",                                                 # truncated
    b"\xde\x00\x01\xa2op\xda\x00\x04ping",                         # map16 + str16
    b"\xdf\x00\x00\x00\x01\xa2op\xdb\x00\x00\x00\x04ping",         # map32 + str32
    b"\x81\xa1d\xdc\x00\x02\x01\x02",                              # array16
    b"\x81\xa1d\xdd\x00\x00\x00\x02\xd0\x80\xd1\x80\x00",          # array32, int8/16
    b"\x81\xa1d" + b"\x91" * 63 + b"\xc0",                         # depth 64
    b"\x81\xa1d" + b"\x91" * 64 + b"\xc0",                         # depth 65
    b"\x90",
    b"",
]

CHNAMES = [
    b"news", b"chat:room1", b"dm:alice,bob", b"orders:1234#alice", b"seats:event-9/section-a",
    b"scores:game-7", b"a", b"x:y:z", b"_-.:@,#=/~", b"ns_1-x:rest", b"",
    b"chat room", b":x", b"chat:", b"\xc3\xbcn\xc3\xaf", b"a" * 255, b"a" * 256,
    b"n" * 64 + b":x", b"n" * 65 + b":x", b"n" * 64 + b":" + b"r" * 190, b"ab\x00cd", b"ns.x:y",
    b"ns:a:", b"::", b"ns:~", b"a\x7f", b"tab\there",
]


# -- fuzz_jwt -------------------------------------------------------------------

JWT_SECRET = b"herald fuzz_jwt HS256 secret, 32 bytes or more"   # as in fuzz_jwt.c
JWT_NOW = 1700000000                                             # FUZZ_NOW in fuzz_jwt.c
JWT_CLAIMS = {"sub": "alice", "iat": JWT_NOW, "exp": JWT_NOW + 3600}


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def jwt_input(header, claims):
    """The signing input; @header and @claims are dicts, or bytes sent as they are."""
    enc = lambda v: v if isinstance(v, bytes) else json.dumps(v, separators=(",", ":")).encode()
    return b64u(enc(header)) + b"." + b64u(enc(claims))


def hs256(header, claims, secret=JWT_SECRET):
    si = jwt_input(header, claims)
    return si + b"." + b64u(hmac.new(secret, si, hashlib.sha256).digest())


def hs(claims=None, **header):
    return hs256({"alg": "HS256", "typ": "JWT", **header}, JWT_CLAIMS if claims is None else claims)


def with_claims(**more):
    return {**JWT_CLAIMS, **more}


JWT_HS = [
    hs(),                                                      # valid
    hs(kid="hs"),                                              # valid, kid of the HS256 key
    hs(kid="rs"),                                              # kid of the RSA key: wrong alg
    hs(kid="nobody"),                                          # unknown kid: keys without one serve it
    hs(kid=""),
    hs(kid=5),
    hs(kid="hs", jku="https://evil.example/keys", x5u="https://evil.example/c"),
    hs(typ=7),
    hs({"sub": "alice", "exp": JWT_NOW + 3600, "info": {"name": "Alice"}, "channels": ["chat:*", "user:alice"],
        "role": "admin"}),
    hs(with_claims(exp=JWT_NOW - 31)),                         # expired
    hs(with_claims(exp=JWT_NOW - 30)),                         # past, but within the leeway: ok
    hs(with_claims(nbf=JWT_NOW + 31)),                         # not yet valid
    hs(with_claims(nbf=JWT_NOW + 30.5, exp=JWT_NOW + 60.25)),  # reals
    hs(with_claims(exp=9223372036854775807)),                  # out of range
    hs(with_claims(exp=1e19)),
    hs(with_claims(iat=-1)),
    hs(with_claims(nbf=253402300800)),
    hs(with_claims(exp=253402300799)),                         # the last accepted second
    hs(b'{"sub":"alice","exp":9223372036854775808}'),          # integer beyond int64
    hs(with_claims(exp="soon")),
    hs(with_claims(sub=5)),
    hs({}),
    hs(b"[]"),
    hs(b'{"sub":"a","sub":"b"}'),                              # duplicate key
    hs(b'{"sub":"a\\u0000b"}'),
    hs256(b'{"alg":"HS256","alg":"none"}', JWT_CLAIMS),
    hs256({"alg": "none"}, JWT_CLAIMS).rsplit(b".", 1)[0] + b".",
    jwt_input({"alg": "none", "typ": "JWT"}, JWT_CLAIMS) + b".",
    hs256({"alg": "nOnE"}, JWT_CLAIMS),
    hs256({"alg": "HS512"}, JWT_CLAIMS),
    hs256({"alg": "hs256"}, JWT_CLAIMS),
    hs256({"typ": "JWT"}, JWT_CLAIMS),                         # no alg
    hs256({"alg": 256}, JWT_CLAIMS),
    hs256({"alg": "HS256", "crit": ["exp"]}, JWT_CLAIMS),
    hs256(b"[]", JWT_CLAIMS),
    hs256({"alg": "HS256"}, JWT_CLAIMS, secret=b"another secret, also at least 32 bytes"),
    hs()[:-10] + (b"B" if hs()[-10:-9] != b"B" else b"C") + hs()[-9:],   # signature changed
    hs()[:-3],                                                 # signature of 30 bytes
    hs() + b"=",                                               # padding
    hs() + b".x",                                              # four parts
    hs().rsplit(b".", 1)[0],                                   # two parts
    b"." + hs().split(b".", 1)[1],                             # empty header
    hs().replace(b".", b"..", 1),
    hs().replace(b"-", b"+").replace(b"_", b"/"),              # base64, not base64url
    b" " + hs(),
    b"..",
    b"eyJ.eyJ.",
    b"",
]


def sign_openssl(key, si):
    return subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=si, capture_output=True,
                          check=True).stdout


def der_to_raw(der):
    """An ECDSA DER signature to JWS's 64-byte R || S."""
    assert der[0] == 0x30
    i = 3 if der[1] & 0x80 else 2
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


def jwt_signed(rsa_key, ec_key):
    def rs(claims_=JWT_CLAIMS, **header):
        si = jwt_input({"alg": "RS256", "typ": "JWT", **header}, claims_)
        return si + b"." + b64u(sign_openssl(rsa_key, si))

    def es(claims_=JWT_CLAIMS, der=False, **header):
        si = jwt_input({"alg": "ES256", "typ": "JWT", **header}, claims_)
        sig = sign_openssl(ec_key, si)
        return si + b"." + b64u(sig if der else der_to_raw(sig))

    rsa_ok = rs()
    h, p, sig = rsa_ok.split(b".")
    return [
        rsa_ok,
        rs(kid="rs"),
        rs(kid="es"),                                          # kid of the EC key: wrong alg
        rs(kid="nobody"),
        rs(with_claims(exp=1e19)),
        rs({"sub": "svc", "role": "service", "exp": JWT_NOW + 60, "nbf": JWT_NOW - 60}),
        es(),
        es(kid="es"),
        es(kid="hs"),
        es(with_claims(nbf=-1e19)),
        es(der=True),                                          # DER, not R || S
        # An RS256 signature under an HS256 header: algorithm confusion.
        b64u(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode()) + b"." + p + b"." + sig,
        h + b"." + b64u(json.dumps(with_claims(sub="mallory"), separators=(",", ":")).encode()) + b"." + sig,
    ]


# What a server sends, for fuzz_client (the C client library's reader,
# clients/hc_codec.c): the first byte picks the reader (0 JSON message,
# 1 MessagePack message, 2 / 3 a publications array in JSON / MessagePack).
PUBS = [{"offset": 7, "ts": 1796203734675, "data": {"text": "hi", "n": [1, 2]}},
        {"offset": 8, "ts": 1796203734676, "data": "a\"b\\"},
        {"offset": 9, "ts": 1796203734677, "data": None, "reply_to": 7}]
SERVER = [
    {"op": "pub", "channel": "chat:lobby", "offset": 7, "ts": 1796203734675, "data": {"text": "hi"}},
    {"op": "pub", "channel": "chat:lobby", "offset": 8, "ts": 1, "data": "x\"y", "from": {"user": "ann"}},
    {"op": "connected", "id": 0, "client": "8f4c62dc3adcab82", "version": "0.1.0", "ping_interval": 25},
    {"op": "subscribed", "id": 1, "channel": "chat:lobby", "offset": 9, "epoch": "00aa11bb22cc33dd",
     "recovered": True, "publications": PUBS},
    {"op": "subscribed", "id": 2, "channel": "scores:g", "offset": 3, "epoch": "00aa11bb22cc33dd",
     "state": {"home": {"value": 2, "version": 3}}},
    {"op": "updated", "channel": "scores:g", "offset": 4, "changes": [{"key": "home", "value": 3, "version": 4}]},
    {"op": "error", "id": 3, "code": 115, "reason": "rate limited: \"publish\" \\ \u00e9"},
    {"op": "join", "channel": "chat:lobby", "user": "ann", "client": "c1"},
    {"op": "presence_batch", "channel": "chat:lobby", "count": 5, "joins_total": 3, "leaves_total": 1},
    {"op": "history", "id": 4, "channel": "chat:lobby", "epoch": "00aa11bb22cc33dd", "offset": 9, "next": None,
     "publications": PUBS},
]


def client_seeds():
    out = []
    for m in SERVER:
        out.append(b"\x00" + json.dumps(m, separators=(",", ":")).encode())
        out.append(b"\x01" + pack(m))
    out.append(b"\x02" + json.dumps(PUBS, separators=(",", ":")).encode())
    out.append(b"\x03" + pack(PUBS))
    out.append(b"\x02[]")
    out.append(b"\x03" + pack([]))
    return out


def write(target, items, prefix="seed-"):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith(prefix):
            os.remove(os.path.join(d, f))
    for i, data in enumerate(items):
        with open(os.path.join(d, "%s%02d" % (prefix, i)), "wb") as f:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rsa-key", help="RSA private key (PEM) to sign fuzz_jwt's signed-* seeds with")
    ap.add_argument("--ec-key", help="EC P-256 private key (PEM) to sign fuzz_jwt's signed-* seeds with")
    args = ap.parse_args()
    if bool(args.rsa_key) != bool(args.ec_key):
        ap.error("--rsa-key and --ec-key go together")
    write("fuzz_json", [json.dumps(m, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
                        for m in MESSAGES] + JSON_EXTRA)
    write("fuzz_msgpack", [pack(m) for m in MESSAGES] + MSGPACK_EXTRA)
    write("fuzz_chname", CHNAMES)
    write("fuzz_jwt", JWT_HS)
    write("fuzz_client", client_seeds())
    if args.rsa_key:
        write("fuzz_jwt", jwt_signed(args.rsa_key, args.ec_key), prefix="signed-")


if __name__ == "__main__":
    main()
