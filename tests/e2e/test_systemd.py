"""The systemd unit (conf/herald.service.in): `meson install` puts it, its sysusers.d
entry and the configuration it reads in place; `systemd-analyze verify` accepts it
(skipped where systemd-analyze is missing: scripts/deps.sh installs systemd); the
broker starts with exactly the unit's command line and reloads on its ExecReload signal;
and it sends READY=1 to $NOTIFY_SOCKET once it listens (Type=notify)."""
import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import HERALD_BIN, Broker

BUILD_DIR = Path(HERALD_BIN).resolve().parents[1]
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
             "StateDirectory": "herald", "User": "herald", "Group": "herald", "Type": "notify", "NotifyAccess": "main",
             "RestartPreventExitStatus": "2"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """meson install --destdir into a temporary directory; returns (destdir, prefix)."""
    if not (BUILD_DIR / "meson-info").is_dir():
        pytest.skip("HERALD_BIN is not in a meson build directory: %s" % HERALD_BIN)
    dest = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["meson", "install", "-C", str(BUILD_DIR), "--destdir", str(dest), "--no-rebuild", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["meson", "introspect", "--buildoptions", str(BUILD_DIR)], capture_output=True, text=True,
                       timeout=60)
    options = {o["name"]: o["value"] for o in json.loads(r.stdout)}
    return dest, options


def unit_path(installed):
    dest, o = installed
    unit_dir = o["systemd_unit_dir"] or str(Path(o["prefix"]) / "lib" / "systemd" / "system")
    return dest / unit_dir.lstrip("/") / "herald.service"


def parse_unit(text):
    """{key: [values]} of the [Service] and [Unit] sections."""
    keys = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        k, _, v = line.partition("=")
        keys.setdefault(k, []).append(v)
    return keys


def test_meson_install_puts_the_unit_in_place(installed):
    dest, o = installed
    unit = unit_path(installed)
    assert unit.is_file(), "no herald.service under %s" % dest
    keys = parse_unit(unit.read_text())
    for k, v in HARDENING.items():
        assert keys.get(k) == [v], (k, keys.get(k))
    assert keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert int(keys["LimitNOFILE"][0]) >= 65536
    argv = shlex.split(keys["ExecStart"][0])
    prefix = Path(o["prefix"])
    assert argv[0] == str(prefix / o["bindir"] / "herald")
    assert (dest / argv[0].lstrip("/")).is_file(), "ExecStart names a binary meson install did not install"
    assert argv[argv.index("--data-dir") + 1] == "/var/lib/herald"
    conf = argv[argv.index("--config") + 1]
    assert (dest / conf.lstrip("/")).is_file(), "ExecStart names a config file meson install did not install"
    sysusers = dest / str(prefix / "lib" / "sysusers.d" / "herald.conf").lstrip("/")
    assert sysusers.read_text().splitlines()[-1].split()[:2] == ["u", "herald"]
    assert not re.search(r"@[A-Z]+@", unit.read_text()), "an unsubstituted @VARIABLE@ in the unit"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is missing (apt-get install systemd; scripts/deps.sh does)")
def test_systemd_analyze_verify_accepts_the_unit(installed, tmp_path):
    """verify checks that ExecStart's binary exists: point it at the installed copy."""
    dest, _ = installed
    text = unit_path(installed).read_text()
    argv0 = shlex.split(parse_unit(text)["ExecStart"][0])[0]
    unit = tmp_path / "herald.service"
    unit.write_text(text.replace(argv0, str(dest / argv0.lstrip("/"))))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


def test_the_units_command_line_starts_and_reloads(installed, tmp_path):
    """ExecStart's arguments (the installed config, the data directory replaced by a temporary
    one) start the broker; ExecReload's SIGHUP re-reads the config; SIGTERM stops it with 0."""
    dest, _ = installed
    argv = shlex.split(parse_unit(unit_path(installed).read_text())["ExecStart"][0])
    args = [str(dest / a.lstrip("/")) if a.endswith(".conf") else a for a in argv[1:]]
    data = tmp_path / "state"
    args[args.index("--data-dir") + 1] = str(data)
    b = Broker(tmp_path, args, data_dir=data, name="unit").start()
    try:
        assert (data / "FORMAT").is_file()
        b.send_signal(signal.SIGHUP)
        assert b.wait_log(r"SIGHUP: log level info", 5), b.log
    finally:
        b.check_clean_exit()


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_is_notified_once_listening(tmp_path, monkeypatch, kind):
    """The sd_notify protocol as systemd speaks it: one datagram on the AF_UNIX socket named by
    $NOTIFY_SOCKET (a path, or an abstract name written with '@')."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        name = "@herald-test-notify-%d" % id(tmp_path)
        sock.bind("\0" + name[1:])
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    b = Broker(tmp_path, name="notify")
    try:
        b.start()
        data = sock.recv(4096)
        assert data == b"READY=1"
        assert "listening on" in b.log                  # not before it listens
        assert b.health().status_code == 200
    finally:
        sock.close()
        b.check_clean_exit()


def test_an_unreachable_notify_socket_is_reported_and_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    b = Broker(tmp_path, name="nonotify").start()
    try:
        assert b.wait_log(r"cannot notify \$NOTIFY_SOCKET: No such file or directory", 5), b.log
        assert b.health().status_code == 200
    finally:
        b.check_clean_exit()
