#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py - writes the seed corpora in tests/fuzz/corpus/.

Seeds are real protocol messages (docs/protocol.md) in each encoding plus
edge cases around every limit. The files are checked in; rerun this after
changing it (it rewrites corpus/fuzz_*/seed-*, leaving other files alone).
Needs only the Python standard library: MessagePack is packed by hand below.
"""
import json
import os
import struct

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


def write(target, items):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    for i, data in enumerate(items):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(data)


def main():
    write("fuzz_json", [json.dumps(m, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
                        for m in MESSAGES] + JSON_EXTRA)
    write("fuzz_msgpack", [pack(m) for m in MESSAGES] + MSGPACK_EXTRA)
    write("fuzz_chname", CHNAMES)


if __name__ == "__main__":
    main()
