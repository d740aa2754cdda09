"""Upgrades and roll-backs (docs/operations.md, Upgrades): the data directory's format
version in FORMAT and the history store's own version; a broker opens a directory of the
version it reads, and refuses a newer one with exit status 1 and a message naming both
versions, without touching it; `herald backup` copies its source's version marker."""
import re
import subprocess

import requests

from conftest import run_herald

DATA_FORMAT = 1
HISTORY_FORMAT = 1


def test_version_names_the_formats_it_reads():
    r = run_herald(["--version"])
    assert r.returncode == 0
    m = re.fullmatch(r"herald \S+ \(data format (\d+), history format (\d+)\)\n", r.stdout)
    assert m and (int(m.group(1)), int(m.group(2))) == (DATA_FORMAT, HISTORY_FORMAT), r.stdout


def written_dir(make_broker, tmp_path, name="d"):
    """A data directory written by this broker, holding two publications; the broker stopped."""
    d = tmp_path / name
    b = make_broker(data_dir=d, name=name)
    b.publish_rest("chat:kept", "one")
    b.publish_rest("chat:kept", "two")
    b.check_clean_exit()
    return d


def test_the_current_format_opens_with_its_data(make_broker, tmp_path):
    d = written_dir(make_broker, tmp_path)
    assert (d / "FORMAT").read_text() == "herald-data %d\n" % DATA_FORMAT
    b = make_broker(data_dir=d, name="again")
    r = requests.get(b.url("/api/channels/chat:kept/history"), timeout=5).json()
    assert [p["data"] for p in r["publications"]] == ["one", "two"]
    assert (d / "FORMAT").read_text() == "herald-data %d\n" % DATA_FORMAT


def refused(d):
    files = {p.name: p.read_bytes() for p in d.rglob("*") if p.is_file() and p.name not in ("LOCK", "lock.mdb")}
    r = run_herald(["--port", "0", "--data-dir", str(d)])
    assert r.returncode == 1, (r.returncode, r.stderr)
    after = {p.name: p.read_bytes() for p in d.rglob("*") if p.is_file() and p.name not in ("LOCK", "lock.mdb")}
    assert after == files, "a refused directory must be left as it was"
    return r.stderr


def test_a_newer_data_format_is_refused_naming_both_versions(make_broker, tmp_path):
    d = written_dir(make_broker, tmp_path)
    (d / "FORMAT").write_text("herald-data %d\n" % (DATA_FORMAT + 1))
    err = refused(d)
    assert "data format version %d was written by a newer herald" % (DATA_FORMAT + 1) in err, err
    assert "reads version %d" % DATA_FORMAT in err, err
    assert "restore the backup" in err, err


def test_an_older_data_format_is_refused_naming_both_versions(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "FORMAT").write_text("herald-data 0\n")
    err = refused(d)
    assert "data format version 0 is older than any this herald" in err and "(version %d)" % DATA_FORMAT in err, err


def test_a_newer_history_format_is_refused_naming_both_versions(make_broker, tmp_path):
    """The history store keeps its own version (meta/version, 4 bytes big-endian): a store
    of a newer history format under a current FORMAT is refused too."""
    d = written_dir(make_broker, tmp_path)
    mdb = d / "history" / "data.mdb"
    raw = mdb.read_bytes()
    # An LMDB leaf node holds its key and its value side by side.
    old = b"version" + HISTORY_FORMAT.to_bytes(4, "big")
    assert raw.count(old) >= 1
    mdb.write_bytes(raw.replace(old, b"version" + (HISTORY_FORMAT + 1).to_bytes(4, "big")))
    err = refused(d)
    assert "history format version %d was written by a newer herald" % (HISTORY_FORMAT + 1) in err, err
    assert "reads history format version %d" % HISTORY_FORMAT in err, err


def test_a_directory_that_lost_its_format_is_refused(make_broker, tmp_path):
    """Every Herald data directory has had FORMAT since the first release: files without one are
    not taken for Herald's (docs/operations.md says how to put the marker back)."""
    d = written_dir(make_broker, tmp_path)
    (d / "FORMAT").unlink()
    err = refused(d)
    assert "not a Herald data directory (it has files but no FORMAT)" in err, err
    assert not (d / "FORMAT").exists()


def test_backup_keeps_its_sources_format(make_broker, tmp_path):
    """A backup says what it holds: the source's version, even one this herald does not read,
    so restoring it under the wrong binary is refused as the source would be."""
    d = written_dir(make_broker, tmp_path)
    (d / "FORMAT").write_text("herald-data %d\n" % (DATA_FORMAT + 1))
    r = run_herald(["backup", str(tmp_path / "bk"), "--data-dir", str(d)])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "bk" / "FORMAT").read_text() == "herald-data %d\n" % (DATA_FORMAT + 1)
    r = run_herald(["backup", str(tmp_path / "bk2"), "--data-dir", str(tmp_path / "nothing")])
    assert r.returncode != 0 and "not a Herald data directory" in r.stderr, r.stderr


def test_roll_back_by_restoring_the_backup(make_broker, tmp_path):
    """The documented roll-back: back up before the upgrade; if the new release's directory
    cannot be read by the old binary, restore the backup (cp -a) and start the old binary on it."""
    d = written_dir(make_broker, tmp_path)
    r = run_herald(["backup", str(tmp_path / "before-upgrade"), "--data-dir", str(d)])
    assert r.returncode == 0, r.stderr
    (d / "FORMAT").write_text("herald-data %d\n" % (DATA_FORMAT + 1))       # what a newer release left
    refused(d)
    restored = tmp_path / "restored"
    subprocess.run(["cp", "-a", str(tmp_path / "before-upgrade"), str(restored)], check=True, timeout=30)
    b = make_broker(data_dir=restored, name="restored")
    r = requests.get(b.url("/api/channels/chat:kept/history"), timeout=5).json()
    assert [p["data"] for p in r["publications"]] == ["one", "two"]
