"""Log rotation as docs/operations.md describes it: Herald logs to stderr only, so a
file it is appended to (`2>>file`) is rotated with logrotate's copytruncate; SIGUSR1
is not a reopen signal (it stops the broker, which the docs warn about)."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import requests

from conftest import HERALD_BIN, LISTEN_RE, herald_env


def start(tmp_path, log, mode):
    f = open(log, mode)
    p = subprocess.Popen([HERALD_BIN, "--bind", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / "data")],
                         stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=herald_env())
    f.close()                                  # the broker holds its own descriptor
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = LISTEN_RE.search(log.read_text(errors="replace"))
        if m:
            return p, int(m.group(2))
        assert p.poll() is None, log.read_text()
        time.sleep(0.02)
    p.kill()
    p.wait(5)
    raise AssertionError("herald did not start:\n" + log.read_text())


def wait_for(log, pattern, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_bytes().decode(errors="replace")):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("mode", ["ab", "wb"], ids=["2>>", "2>"])
def test_copytruncate_of_stderr(tmp_path, mode):
    """With 2>> the truncated file starts with the next line; with 2> it starts with a hole
    of zeros up to the old offset (why the docs say 2>>)."""
    log = tmp_path / "herald.log"
    p, port = start(tmp_path, log, mode)
    try:
        requests.get("http://127.0.0.1:%d/api/before-rotation" % port, timeout=5)
        assert wait_for(log, r"GET /api/before-rotation -> 404")
        # What logrotate's copytruncate does: copy, then truncate in place.
        shutil.copyfile(log, tmp_path / "herald.log.1")
        os.truncate(log, 0)
        requests.get("http://127.0.0.1:%d/api/after-rotation" % port, timeout=5)
        assert wait_for(log, r"GET /api/after-rotation -> 404")
        data = log.read_bytes()
        if mode == "ab":
            assert not data.startswith(b"\0"), "the line went to the old offset: stderr was not opened to append"
        else:
            assert data.startswith(b"\0"), "with 2> the line should land after a hole (the docs say so)"
        assert b"before-rotation" not in data
        assert b"before-rotation" in (tmp_path / "herald.log.1").read_bytes()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0


def test_sigusr1_is_not_a_reopen_signal(tmp_path):
    """Documented: SIGUSR1 is not handled, so it ends the process (no log file to reopen)."""
    log = tmp_path / "herald.log"
    p, _ = start(tmp_path, log, "wb")
    p.send_signal(signal.SIGUSR1)
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        raise AssertionError("herald survived SIGUSR1: update docs/operations.md (Logs) and this test")
    assert rc == -signal.SIGUSR1, rc
