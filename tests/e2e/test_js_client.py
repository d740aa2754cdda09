"""herald.js, the browser client: served by the broker, and its own tests.

- GET /herald.js (and /herald.d.ts) serves clients/js/ as built into the binary,
  with a JavaScript Content-Type, Cache-Control with a max-age and an ETag that a
  conditional GET answers with 304.
- The Node tests in tests/js/*.test.js (node --test; `ws` from npm, pinned by
  tests/js/package-lock.json and installed by scripts/deps.sh) run once per file
  against the real binary; each of their tests is one pytest test here, so
  scripts/test.sh counts them. They skip, saying why, when node or
  tests/js/node_modules is missing.
"""
import os
import re
import shutil
import subprocess

import pytest
import requests

from conftest import HERALD_BIN, REPO

NODE = shutil.which("node")
JS_DIR = REPO / "tests" / "js"
CLIENT = REPO / "clients" / "js"
NODE_TIMEOUT = 240
TEST_RE = re.compile(r"^test\('((?:[^'\\]|\\.)*)'", re.M)
TAP_RE = re.compile(r"^(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO).*)?$", re.M)


def test_herald_js_is_served(broker):
    r = requests.get(broker.url("/herald.js"), timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert r.content == (CLIENT / "herald.js").read_bytes(), "the broker serves the client it was built with"
    assert re.fullmatch(r"public, max-age=\d+", r.headers["Cache-Control"])
    etag = r.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{20}"', etag)
    m = re.search(r"export const VERSION = '([^']+)'", r.text)
    assert m, "herald.js names its version"
    assert r.headers["X-Content-Type-Options"] == "nosniff"

    # A conditional GET with the ETag: 304, no body; a stale one: 200.
    r2 = requests.get(broker.url("/herald.js"), headers={"If-None-Match": etag}, timeout=5)
    assert r2.status_code == 304 and r2.content == b""
    assert r2.headers["ETag"] == etag
    r3 = requests.get(broker.url("/herald.js"), headers={"If-None-Match": 'W/"0", "1"'}, timeout=5)
    assert r3.status_code == 200 and len(r3.content) == len(r.content)

    d = requests.get(broker.url("/herald.d.ts"), timeout=5)
    assert d.status_code == 200 and d.content == (CLIENT / "herald.d.ts").read_bytes()


def test_herald_js_needs_no_api_key(make_broker):
    """Static files are open, like /admin, even when the REST API needs a key."""
    b = make_broker("--apikey", "ops.secret=ops-key-0123456789abcdef", "--apikey", "ops.admin=on")
    assert requests.get(b.url("/api/channels"), timeout=5).status_code == 401
    r = requests.get(b.url("/herald.js"), timeout=5)
    assert r.status_code == 200 and r.content == (CLIENT / "herald.js").read_bytes()
    assert requests.post(b.url("/herald.js"), timeout=5).status_code == 405
    assert requests.get(b.url("/widgets/no-such-file.js"), timeout=5).status_code == 404


# -- the Node tests ------------------------------------------------------------

def _node_missing(needs_ws):
    if NODE is None:
        return "node is missing (apt-get install nodejs npm)"
    if needs_ws and not (JS_DIR / "node_modules" / "ws").is_dir():
        return "tests/js/node_modules/ws is missing (npm ci --prefix tests/js, as scripts/deps.sh does)"
    return None


def _node_cases():
    cases = []
    for f in sorted(JS_DIR.glob("*.test.js")):
        text = f.read_text()
        needs_ws = "from 'ws'" in text
        for m in TEST_RE.finditer(text):
            name = re.sub(r"\\(.)", r"\1", m.group(1))
            cases.append(pytest.param(f.name, name, needs_ws, id="%s::%s" % (f.stem, name)))
    return cases


_runs = {}


def _run_file(name):
    """Runs one tests/js file once (its tests share the run); returns
    ({test name: 'ok' | 'not ok' | 'skip'}, output)."""
    if name not in _runs:
        env = dict(os.environ, HERALD_BIN=HERALD_BIN)
        try:
            p = subprocess.run([NODE, "--test", "--test-reporter=tap", "--test-concurrency=1", name],
                               cwd=str(JS_DIR), env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT)
            out = p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            out = "node --test %s outlived %ds\n%s" % (name, NODE_TIMEOUT, (e.stdout or b"")[-4000:])
        results = {}
        for m in TAP_RE.finditer(out):
            results[m.group(2)] = "skip" if m.group(3) == "SKIP" else m.group(1)
        _runs[name] = (results, out)
    return _runs[name]


@pytest.mark.parametrize("file,name,needs_ws", _node_cases())
def test_node(file, name, needs_ws):
    why = _node_missing(needs_ws)
    if why:
        pytest.skip(why)
    results, out = _run_file(file)
    assert name in results, "node did not report %r:\n%s" % (name, out[-6000:])
    if results[name] == "skip":
        pytest.skip("skipped by the Node test itself")
    assert results[name] == "ok", "%s failed:\n%s" % (name, _excerpt(out, name))


def _excerpt(out, name):
    i = out.find("- " + name)
    return out[max(0, i - 200): i + 4000] if i >= 0 else out[-6000:]
