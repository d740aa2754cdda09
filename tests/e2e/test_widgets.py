"""The widgets under /widgets/ (chat, scoreboard, seat map, order tracking, index), built into the
broker, and what they do in a real browser.

The browser tests run tests/browser/widgets_check.mjs, one scenario per test: it
starts its own broker (this HERALD_BIN, a free port, a fresh data directory), opens
one Debian chromium per user through playwright-core, and prints a JSON summary.
Screenshots of every page are kept under <build>/test-artifacts/widgets/. They skip,
saying why, when chromium, node or tests/browser/node_modules is missing
(scripts/deps.sh installs them).
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import HERALD_BIN, REPO, herald_env

CHROMIUM = "/usr/bin/chromium"
NODE = shutil.which("node")
BROWSER_DIR = REPO / "tests" / "browser"
CHECK = BROWSER_DIR / "widgets_check.mjs"
WIDGETS = REPO / "broker" / "app" / "widgets"
ARTIFACTS = Path(HERALD_BIN).resolve().parent.parent / "test-artifacts" / "widgets"
CHECK_TIMEOUT_MS = 90000
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
       "img-src 'self' data:; frame-ancestors 'none'")


def _browser_missing():
    if not os.access(CHROMIUM, os.X_OK):
        return CHROMIUM + " is missing (apt-get install chromium)"
    if NODE is None:
        return "node is missing (apt-get install nodejs npm)"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "tests/browser/node_modules/playwright-core is missing (npm ci --prefix tests/browser)"
    return None


def test_widgets_are_served(broker):
    idx = requests.get(broker.url("/widgets/"), timeout=5)
    assert idx.status_code == 200
    assert idx.headers["Content-Type"] == "text/html; charset=utf-8"
    assert idx.headers["Content-Security-Policy"] == CSP
    assert re.fullmatch(r"public, max-age=\d+", idx.headers["Cache-Control"]) and idx.headers["ETag"]
    assert idx.content == (WIDGETS / "index.html").read_bytes()
    assert requests.get(broker.url("/widgets"), timeout=5).content == idx.content
    for link in ("/widgets/chat.html", "/widgets/scoreboard.html", "/widgets/seats.html", "/widgets/order.html"):
        assert link in idx.text, "the index links to " + link
    types = {".html": "text/html; charset=utf-8", ".js": "application/javascript; charset=utf-8",
             ".css": "text/css; charset=utf-8"}
    for f in sorted(WIDGETS.iterdir()):
        r = requests.get(broker.url("/widgets/" + f.name), timeout=5)
        assert r.status_code == 200, f.name
        assert r.headers["Content-Type"] == types[f.suffix], f.name
        assert r.content == f.read_bytes(), "the broker serves the %s it was built with" % f.name
        if f.suffix == ".html":
            assert r.headers["Content-Security-Policy"] == CSP
            # The CSP allows no inline script or style: everything is a file.
            assert "<script>" not in r.text and "<style" not in r.text and " style=" not in r.text, f.name
        if f.suffix == ".js":
            for imp in re.findall(r"from '([^']+)'", r.text):
                assert requests.get(broker.url(imp), timeout=5).status_code == 200, (f.name, imp)


def test_widgets_namespaces_work_out_of_the_box(broker):
    """The predefined namespaces the widgets need, on a broker with no config."""
    r = requests.post(broker.url("/api/scoreboards/g/score"), json={"team": "home", "points": 2}, timeout=5)
    assert r.status_code == 200, r.text
    r = requests.put(broker.url("/api/events/e/seats"), json={"seats": [{"id": "A1", "section": "A"}]}, timeout=5)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("scenario", ["chat", "dm", "scoreboard", "seats", "status", "order"])
def test_widget_in_browser(scenario):
    why = _browser_missing()
    if why:
        pytest.skip(why)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = dict(herald_env(), HERALD_BIN=HERALD_BIN, ARTIFACTS=str(ARTIFACTS))
    try:
        p = subprocess.run([NODE, str(CHECK), scenario, str(CHECK_TIMEOUT_MS)], cwd=str(BROWSER_DIR), env=env,
                           capture_output=True, text=True, timeout=CHECK_TIMEOUT_MS / 1000 + 15)
    except subprocess.TimeoutExpired:
        raise AssertionError("widgets_check.mjs %s outlived its own timeout" % scenario) from None
    lines = p.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise AssertionError("widgets_check.mjs printed no summary (exit %s):\n%s\n%s" % (
            p.returncode, p.stdout[-4000:], p.stderr[-4000:])) from None
    assert p.returncode == 0 and summary["ok"], "widget check %s failed: %s\n%s" % (
        scenario, json.dumps(summary, indent=1, ensure_ascii=False), p.stderr[-4000:])
    assert summary["screenshots"], "no screenshot was kept"
