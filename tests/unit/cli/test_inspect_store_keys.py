"""``message inspect`` decrypts with the store's keys when no --key is given (CONTRACT.md: "with
the store's keys and roots, or with the given ones"), and finds the configuration at the default
path only when one is there (tests/unit/cli/conftest.py moves that path into the test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from smimegate.cli.main import main
from smimegate.smime.encrypt import encrypt
from smimegate.smime.sign import sign
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from tests.conftest import ROOT
from tests.helpers.testpki import Identity, TestCA

TEXT = b"Content-Type: text/plain\r\n\r\nsecret words\r\n"
P = "X-Smimegate-Info-"


@dataclass(frozen=True)
class Site:
    config: Path
    ca: TestCA
    alice: Identity  # key in the store
    bob: Identity  # key in the store, EC: key agreement
    carol: Identity  # certificate only, no key


def make_site(folder: Path) -> Site:
    ca = TestCA()
    alice, bob = ca.issue("alice@x.test"), ca.issue("bob@x.test", "ec-p256")
    carol = ca.issue("carol@x.test")
    key_file = folder / "master.key"
    ensure_master_key(key_file)
    url = f"sqlite:///{folder / 'store.db'}"
    store = SqlStore.open(url, key_file, create=True, check_schema=False)
    try:
        store.migrate()
        store.add_root(ca.cert)
        store.add_certificate(alice.cert, key=alice.key)
        store.add_certificate(bob.cert, key=bob.key)
        store.add_certificate(carol.cert)
    finally:
        store.close()
    config = folder / "smimegate.toml"
    config.write_text(f'[store]\nurl = "{url}"\nmaster_key_file = "{key_file}"\n')
    return Site(config, ca, alice, bob, carol)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


def inspect(capsys: pytest.CaptureFixture[str], config: Path | None, message: Path,
            *extra: str) -> tuple[int, dict[str, str], str]:
    capsys.readouterr()
    argv = ["-c", str(config)] if config is not None else []
    code = main([*argv, "message", "inspect", str(message), *extra])
    out, err = capsys.readouterr()
    return code, dict(line.split(": ", 1) for line in out.splitlines()), err


def write(folder: Path, name: str, entity: bytes) -> Path:
    path = folder / name
    path.write_bytes(b"Subject: inspect me\r\n" + entity)
    return path


def test_store_key_named_by_issuer_and_serial_opens_the_message(site, tmp_path, capsys):
    signed = sign(TEXT, site.carol.key, site.carol.cert)
    message = write(tmp_path, "m.eml", encrypt(signed, [site.alice.cert]))
    code, headers, err = inspect(capsys, site.config, message)
    assert code == 0 and err == ""
    assert headers[f"{P}Encryption-Algorithm-0"].startswith("AES")
    # Decrypted: the signed layer inside shows, trusted through the store's root.
    assert headers[f"{P}Signer-Verified-0-1"] == "True"
    assert headers[f"{P}Signer-Trusted-0-1"] == "True"


def test_store_key_named_by_ski_opens_the_message(site, tmp_path, capsys):
    # openssl cms -keyid: the RecipientInfo names the certificate by subjectKeyIdentifier.
    _key, crt = site.alice.write(tmp_path, "alice")
    done = subprocess.run(
        ["openssl", "cms", "-encrypt", "-aes256", "-keyid", "-recip", str(crt)],
        input=TEXT, capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    message = write(tmp_path, "ski.eml", done.stdout)
    capsys.readouterr()
    assert main(["-c", str(site.config), "message", "inspect", str(message), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    (layer,) = report["layers"]
    (recipient,) = layer["recipients"]
    assert recipient["serial"] is None and recipient["ski"]  # named by SKI only
    assert layer["decrypted"] is True and report["error"] is None and err == ""
    assert report["content_type"] == "text/plain"


def test_nested_layers_each_opened_with_its_recipients_key(site, tmp_path, capsys):
    # Encrypted for bob (EC, key agreement) around a layer encrypted for alice: alice's
    # RecipientInfo is only seen once bob's layer is open.
    inner = encrypt(sign(TEXT, site.carol.key, site.carol.cert), [site.alice.cert])
    message = write(tmp_path, "nested.eml", encrypt(inner, [site.bob.cert]))
    code, headers, err = inspect(capsys, site.config, message)
    assert code == 0 and err == ""
    assert f"{P}Encryption-Algorithm-0" in headers and f"{P}Encryption-Algorithm-1" in headers
    assert headers[f"{P}Signer-Verified-0-2"] == "True"


def test_no_key_in_the_store_is_a_note(site, tmp_path, capsys):
    message = write(tmp_path, "carol.eml", encrypt(TEXT, [site.carol.cert]))
    code, headers, err = inspect(capsys, site.config, message)
    assert code == 0
    assert f"{P}Encryption-Recipient-0-0" in headers
    assert err.startswith("smimegate: note: ") and "not decrypted" in err


def test_given_keys_replace_the_store_keys(site, tmp_path, capsys):
    message = write(tmp_path, "m.eml", encrypt(TEXT, [site.alice.cert]))
    key, crt = site.carol.write(tmp_path, "carol")
    code, headers, err = inspect(capsys, site.config, message, "--key", str(key),
                                 "--cert", str(crt))
    assert code == 0
    assert "not decrypted" in err  # carol's key was given: alice's in the store is not used
    key, crt = site.alice.write(tmp_path, "alice")
    code, _headers, err = inspect(capsys, site.config, message, "--key", str(key),
                                  "--cert", str(crt))
    assert code == 0 and err == ""


def test_unreadable_master_key_still_inspects_and_says_why(site, tmp_path, capsys):
    message = write(tmp_path, "m.eml", encrypt(TEXT, [site.alice.cert]))
    master = tmp_path / "master.key"
    os.chmod(master, 0o644)  # refused: a key anyone may read protects nothing
    code, headers, err = inspect(capsys, site.config, message)
    assert code == 0
    assert f"{P}Encryption-Recipient-0-0" in headers
    assert "not decrypted" in err
    assert "the store's keys were not tried: master key file" in err


def test_default_config_path_is_used_when_it_exists(site, tmp_path, capsys, no_ambient_config):
    message = write(tmp_path, "m.eml", encrypt(TEXT, [site.alice.cert]))
    code, _headers, err = inspect(capsys, None, message)
    assert code == 0 and "not decrypted" in err  # no configuration at the default path
    no_ambient_config.parent.mkdir()
    no_ambient_config.write_text(site.config.read_text())
    code, headers, err = inspect(capsys, None, message)
    assert code == 0 and err == ""
    assert headers[f"{P}Encryption-Algorithm-0"].startswith("AES")


def test_console_script_with_the_store_keys(site, tmp_path):
    # The real entry point, with the configuration in $SMIMEGATE_CONFIG.
    message = encrypt(TEXT, [site.alice.cert])
    env = {**os.environ, "SMIMEGATE_CONFIG": str(site.config)}
    done = subprocess.run([sys.executable, "-m", "smimegate", "message", "inspect", "-"],
                          input=message, capture_output=True, cwd=ROOT, env=env, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert b"X-Smimegate-Info-Encryption-Algorithm-0: AES256" in done.stdout
