"""Bad [auth] settings stop the broker at start like every other bad setting
(docs/configuration.md): exit status 2 and "FILE:LINE: reason", the line being
where the offending option was set, or "--flag: reason" when a flag set it.
Nothing is started: the data directory is not even created."""
import subprocess

import pytest

from conftest import run_herald

SECRET = "0123456789abcdef0123456789abcdef-secret"


def write(path, text):
    path.write_text(text)
    return str(path)


def openssl(*args):
    subprocess.run(["openssl", *args], capture_output=True, check=True, timeout=60)


def rsa_public_key(tmp_path, bits):
    """A PEM public key of an RSA key of @bits bits, made now with the openssl CLI."""
    priv, pub = tmp_path / ("rsa%d.pem" % bits), tmp_path / ("rsa%d.pub" % bits)
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % bits, "-out", str(priv))
    openssl("pkey", "-in", str(priv), "-pubout", "-out", str(pub))
    return str(pub)


def start(tmp_path, *args):
    return run_herald(["--port", "0", "--data-dir", str(tmp_path / "d"), *args])


def assert_refused(tmp_path, r, where, *words):
    """@r exited 2 with "herald: WHERE: ..." whose reason holds every one of @words."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "herald: %s: " % where in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert not (tmp_path / "d").exists(), "the broker went on to open its data directory"


# ---------------------------------------------------------------- in the config file

def test_short_hmac_secret_names_its_line(tmp_path):
    conf = write(tmp_path / "a.conf", "[server]\nport = 0\n\n[auth]\n; HS256 tokens\nhmac_secret = too-short\n")
    r = start(tmp_path, "--config", conf)
    assert_refused(tmp_path, r, "%s:6" % conf, "auth.hmac_secret", "32 characters")
    assert "too-short" not in r.stderr, "the secret was echoed back"


def test_anonymous_off_without_keys_names_the_anonymous_line(tmp_path):
    conf = write(tmp_path / "b.conf", "[auth]\nleeway = 10s\n# production\nanonymous = off\nrefresh_notice = 1m\n")
    r = start(tmp_path, "--config", conf)
    assert_refused(tmp_path, r, "%s:4" % conf, "auth.anonymous", "no token key")


def test_rsa_1024_public_key_names_the_public_keys_line(tmp_path):
    weak = rsa_public_key(tmp_path, 1024)
    conf = write(tmp_path / "c.conf", "[auth]\nanonymous = off\n\npublic_keys = %s\n" % weak)
    r = start(tmp_path, "--config", conf)
    assert_refused(tmp_path, r, "%s:4" % conf, "auth.public_keys", weak, "1024 bits", "too small")


def test_missing_key_file_names_the_public_keys_line(tmp_path):
    good = rsa_public_key(tmp_path, 2048)
    missing = str(tmp_path / "nope.pub")
    conf = write(tmp_path / "d.conf", "[server]\nport = 0\n[auth]\npublic_keys = %s, %s\n" % (good, missing))
    r = start(tmp_path, "--config", conf)
    assert_refused(tmp_path, r, "%s:4" % conf, "auth.public_keys", missing, "No such file")


def test_the_last_setting_in_the_file_is_named(tmp_path):
    conf = write(tmp_path / "e.conf", "[auth]\nhmac_secret = %s\n\nhmac_secret = short\n" % SECRET)
    r = start(tmp_path, "--config", conf)
    assert_refused(tmp_path, r, "%s:4" % conf, "auth.hmac_secret")


# ---------------------------------------------------------------- by a flag

FLAG_CASES = [
    # (id, flags, the flag named, words)
    ("hmac_secret", ["--hmac-secret", "too-short"], "--hmac-secret", ["auth.hmac_secret", "32 characters"]),
    ("anonymous", ["--anonymous=off"], "--anonymous", ["auth.anonymous", "no token key"]),
    ("missing_key", ["--public-keys", "/nonexistent/herald-key.pub"], "--public-keys",
     ["auth.public_keys", "/nonexistent/herald-key.pub", "No such file"]),
]


@pytest.mark.parametrize("flags,flag,words", [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES])
def test_flags_alone_name_the_flag(tmp_path, flags, flag, words):
    r = start(tmp_path, *flags)
    assert_refused(tmp_path, r, flag, *words)


def test_weak_key_by_flag_names_the_flag(tmp_path):
    weak = rsa_public_key(tmp_path, 1024)
    r = start(tmp_path, "--public-keys=" + weak)
    assert_refused(tmp_path, r, "--public-keys", "auth.public_keys", weak, "too small")


def test_flag_overriding_the_file_is_named_not_the_file(tmp_path):
    conf = write(tmp_path / "f.conf", "[auth]\nhmac_secret = %s\nanonymous = off\n" % SECRET)
    r = start(tmp_path, "--config", conf, "--hmac-secret", "short")
    assert_refused(tmp_path, r, "--hmac-secret", "auth.hmac_secret")
    assert conf + ":" not in r.stderr, r.stderr


def test_flag_repairs_a_bad_file_value(tmp_path, make_broker):
    weak = rsa_public_key(tmp_path, 1024)
    good = rsa_public_key(tmp_path, 2048)
    conf = write(tmp_path / "g.conf", "[auth]\nanonymous = off\nhmac_secret = short\npublic_keys = %s\n" % weak)
    make_broker("--config", conf, "--hmac-secret", SECRET, "--public-keys", good)
