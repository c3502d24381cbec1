"""``message inspect`` reports trust from the store's roots and CRLs (issue 4, item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.cli.main import main
from smimegate.smime.sign import sign
from smimegate.store import SqlStore
from tests.unit.pki import fetch_support as fs
from tests.unit.pki.ca_support import ca_pair

TEXT = b"Content-Type: text/plain\r\n\r\nhello\r\n"
P = "X-Smimegate-Info-"


def _signed(tmp_path: Path, leaf: fs.Leaf, name: str = "signed.eml") -> Path:
    # Only the signer's certificate travels: the intermediate must come from the store.
    path = tmp_path / name
    path.write_bytes(b"Subject: t\r\n" + sign(TEXT, leaf.key, leaf.cert))
    return path


def _config(tmp_path: Path, *, crl_for: int | None = None, prefix: str | None = None) -> Path:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SqlStore.open(url, None, create=True, check_schema=False)
    store.migrate()
    pair = ca_pair()
    store.add_root(pair.root)
    store.add_certificate(pair.intermediate)
    if crl_for is not None:
        store.add_crl(fs.crl(revoked=[crl_for]))
    store.close()
    path = tmp_path / "smimegate.toml"
    text = f'[store]\nurl = "{url}"\nmaster_key_file = "{tmp_path / "master.key"}"\n'
    if prefix:
        text += f'[milter]\nheader_prefix = "{prefix}"\n'
    path.write_text(text)
    return path


def _inspect(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, str], str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    headers = dict(line.split(": ", 1) for line in out.splitlines())
    return code, headers, err


def test_signer_from_a_store_ca_is_trusted(tmp_path, capsys):
    leaf = fs.leaf(ca_pair(), "alice@example.org")
    config = _config(tmp_path)
    code, headers, err = _inspect(capsys, "-c", str(config), "message", "inspect",
                                  str(_signed(tmp_path, leaf)))
    assert code == 0, err
    assert headers[f"{P}Signer-Verified-0-0"] == "True"
    assert headers[f"{P}Signer-Trusted-0-0"] == "True"
    assert f"{P}Signer-Trusted-Info-0-0" not in headers


def test_revoked_signer_is_not_trusted_and_says_revoked(tmp_path, capsys, monkeypatch):
    leaf = fs.leaf(ca_pair(), "mallory@example.org")
    config = _config(tmp_path, crl_for=leaf.cert.serial_number)
    monkeypatch.setenv("SMIMEGATE_CONFIG", str(config))  # found without -c too
    code, headers, err = _inspect(capsys, "message", "inspect", str(_signed(tmp_path, leaf)))
    assert code == 0, err
    assert headers[f"{P}Signer-Verified-0-0"] == "True"
    assert headers[f"{P}Signer-Trusted-0-0"] == "False"
    assert headers[f"{P}Signer-Trusted-Info-0-0"].startswith("revoked (keyCompromise) ")


def test_json_says_where_trust_came_from(tmp_path, capsys):
    leaf = fs.leaf(ca_pair(), "alice@example.org")
    config = _config(tmp_path, crl_for=12345, prefix="X-Site-Info-")
    capsys.readouterr()
    code = main(["-c", str(config), "message", "inspect", str(_signed(tmp_path, leaf)),
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["trust"]["evaluated"] is True
    assert report["trust"]["config"] == str(config)
    assert [r["subject"] for r in report["trust"]["roots"]] == [
        "CN=Test Root rsa2048, O=smimegate tests"]  # O, CN in the DER: read most specific first
    assert report["trust"]["intermediates"] == 1 and report["trust"]["crls"] == 1
    (signer,) = report["layers"][0]["signers"]
    assert signer["trusted"] is True and signer["trust_info"] is None
    # [milter] header_prefix of the configuration names the headers.
    assert report["headers"][0]["name"] == "X-Site-Info-Signer-ID-0-0"


def test_trust_option_without_a_store(tmp_path, capsys):
    pair = ca_pair()
    leaf = fs.leaf(pair, "bob@example.org")
    message = str(_signed(tmp_path, leaf))
    issuing = tmp_path / "issuing.pem"
    issuing.write_bytes(pair.intermediate.public_bytes(Encoding.PEM))
    root = tmp_path / "root.pem"
    root.write_bytes(pair.root.public_bytes(Encoding.PEM))
    # The default config path does not exist here (tests/unit/cli/conftest.py): no store.
    code, headers, err = _inspect(capsys, "message", "inspect", message, "--trust", str(issuing))
    assert code == 0, err
    assert headers[f"{P}Signer-Trusted-0-0"] == "True"

    # The root alone: the intermediate is neither in the message nor in a store.
    code, headers, _err = _inspect(capsys, "message", "inspect", message, "--trust", str(root))
    assert headers[f"{P}Signer-Trusted-0-0"] == "False"
    assert headers[f"{P}Signer-Trusted-Info-0-0"] == "no path to a trusted root"

    code, headers, _err = _inspect(capsys, "message", "inspect", message)
    assert code == 0
    assert headers[f"{P}Signer-Trusted-0-0"] == "False"
    assert headers[f"{P}Signer-Trusted-Info-0-0"] == "no trusted roots"


def test_trust_option_adds_to_the_store_roots(tmp_path, capsys):
    other = ca_pair("ec-p256")
    leaf = fs.leaf(other, "carol@example.org")
    config = _config(tmp_path)  # trusts the rsa2048 CA only
    message = str(_signed(tmp_path, leaf))
    code, headers, _err = _inspect(capsys, "-c", str(config), "message", "inspect", message)
    assert headers[f"{P}Signer-Trusted-Info-0-0"] == "no path to a trusted root"
    issuing = tmp_path / "other.pem"
    issuing.write_bytes(other.intermediate.public_bytes(Encoding.PEM))
    code, headers, _err = _inspect(capsys, "-c", str(config), "message", "inspect", message,
                                   "--trust", str(issuing))
    assert code == 0 and headers[f"{P}Signer-Trusted-0-0"] == "True"


def test_a_named_config_whose_store_is_missing_fails(tmp_path, capsys):
    config = tmp_path / "smimegate.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "absent.db"}"\n')
    leaf = fs.leaf(ca_pair(), "alice@example.org")
    code, _headers, err = _inspect(capsys, "-c", str(config), "message", "inspect",
                                   str(_signed(tmp_path, leaf)))
    assert code == 1
    assert "absent.db does not exist" in err and "--trust" in err
