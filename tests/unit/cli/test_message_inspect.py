"""``smimegate message inspect``: result headers as the milter adds them, JSON, key loading and
exit codes (0 inspected, 1 bad message, 2 usage)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate.cli.main import main
from smimegate.smime.encrypt import encrypt
from smimegate.smime.sign import sign
from smimegate.store import SqlStore
from tests.conftest import ROOT, VECTORS
from tests.helpers.testpki import TestCA

TB = VECTORS / "thunderbird-smime"
R9216 = VECTORS / "rfc9216"
SIGNED_ENC = TB / "alice.dsig.SHA256.multipart.env.eml"
NSS_CA = "CN=NSS Test CA (RSA), O=BOGUS NSS, L=Mountain View, ST=California, C=US"
TEXT = b"Content-Type: text/plain\r\n\r\nhello\r\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["message", "inspect", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_headers_exactly_as_the_milter_adds_them(capsys):
    code, out, err = run(capsys, str(SIGNED_ENC), "--key", str(TB / "Bob.p12"),
                         "--password", "nss")
    assert code == 0
    assert err == ""
    assert out.splitlines() == [
        "X-Smimegate-Info-Encryption-Algorithm-0: AES128, Key size: 128",
        f"X-Smimegate-Info-Encryption-Recipient-0-0: {NSS_CA}/28//1.2.840.113549.1.1.1",
        f"X-Smimegate-Info-Signer-ID-0-1: {NSS_CA}/1E/",
        "X-Smimegate-Info-Signer-Verified-0-1: True",
        "X-Smimegate-Info-Signer-Trusted-0-1: False",
        # No store configured and no --trust (issue 4, item 10).
        "X-Smimegate-Info-Signer-Trusted-Info-0-1: no trusted roots",
    ]


def test_json_lists_layers_and_records_trust_roots(capsys):
    code, out, _err = run(capsys, str(SIGNED_ENC), "--key", str(TB / "Bob.p12"),
                          "--password", "nss", "--trust", str(TB / "TestCA.pem"), "--json")
    assert code == 0
    report = json.loads(out)
    assert [layer["kind"] for layer in report["layers"]] == ["enveloped", "signed"]
    assert report["layers"][0]["decrypted"] is True
    assert report["layers"][0]["recipients"][0]["serial"] == "28"
    (signer,) = report["layers"][1]["signers"]
    assert signer["valid"] is True and signer["reason"] is None
    assert signer["digest_algorithm"] == "sha256"
    assert signer["certificate"]["emails"] == ["Alice@example.com"]
    # --trust of the issuing CA makes Alice trusted (issue 4, item 10).
    assert signer["trusted"] is True and signer["trust_info"] is None
    assert report["trust"]["evaluated"] is True
    assert report["trust"]["roots"][0]["subject"] == NSS_CA
    assert report["error"] is None
    assert report["content_type"] == "text/plain"
    assert report["headers"][3] == {"name": "X-Smimegate-Info-Signer-Verified-0-1",
                                    "value": "True"}


def test_no_key_still_inspects_and_notes_why(capsys):
    code, out, err = run(capsys, str(TB / "alice.env.eml"))
    assert code == 0
    assert out.splitlines()[0] == "X-Smimegate-Info-Encryption-Algorithm-0: AES128, Key size: 128"
    assert len(out.splitlines()) == 2
    assert err.startswith("smimegate: note: ") and "not decrypted" in err


def test_plain_message_prints_nothing(tmp_path, capsys):
    path = tmp_path / "plain.eml"
    path.write_bytes(b"From: a@b.test\r\nSubject: hi\r\n\r\nhello\r\n")
    assert run(capsys, str(path)) == (0, "", "")


@pytest.fixture(scope="module")
def bob_encrypted(tmp_path_factory):
    """A message for RFC 9216 Bob, signed by a throwaway Alice."""
    folder = tmp_path_factory.mktemp("inspect")
    bob_cert = x509.load_pem_x509_certificate((R9216 / "bob.encrypt.crt").read_bytes())
    alice = TestCA().issue("alice@a.test")
    path = folder / "msg.eml"
    path.write_bytes(b"Subject: x\r\n" + encrypt(sign(TEXT, alice.key, alice.cert), [bob_cert]))
    return path


def bob_key():
    return serialization.load_pem_private_key((R9216 / "bob.encrypt.key").read_bytes(), None)


def _verified(out: str) -> bool:
    return "X-Smimegate-Info-Signer-Verified-0-1: True" in out.splitlines()


def test_pem_key_with_separate_cert(bob_encrypted, capsys):
    code, out, _err = run(capsys, str(bob_encrypted), "--key", str(R9216 / "bob.encrypt.key"),
                          "--cert", str(R9216 / "bob.encrypt.crt"))
    assert code == 0 and _verified(out)


@pytest.mark.parametrize("form", ["pkcs8-der", "traditional-pem", "combined-pem",
                                  "encrypted-pem"])
def test_key_formats(bob_encrypted, tmp_path, capsys, form):
    key = bob_key()
    cert_pem = (R9216 / "bob.encrypt.crt").read_bytes()
    extra: list[str] = ["--cert", str(R9216 / "bob.encrypt.crt")]
    if form == "pkcs8-der":
        data = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    elif form == "traditional-pem":
        data = key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
        assert data.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    elif form == "combined-pem":
        data = cert_pem + (R9216 / "bob.encrypt.key").read_bytes()
        extra = []
    else:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.BestAvailableEncryption(b"s3cret"))
        secret = tmp_path / "pw"
        secret.write_text("s3cret\n")
        extra += ["--password-file", str(secret)]
    path = tmp_path / "key"
    path.write_bytes(data)
    code, out, err = run(capsys, str(bob_encrypted), "--key", str(path), *extra)
    assert (code, err) == (0, "")
    assert _verified(out)


def test_rfc9216_pkcs12(bob_encrypted, capsys):
    # RFC 9216 5.5: Bob's PKCS#12 (password "bob") holds his encryption key and certificate.
    code, out, _err = run(capsys, str(bob_encrypted), "--key", str(R9216 / "bob.p12"),
                          "--password", "bob")
    assert code == 0 and _verified(out)


def test_encrypted_key_without_password_is_usage_error(bob_encrypted, tmp_path, capsys):
    path = tmp_path / "enc.key"
    path.write_bytes(bob_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")))
    code, _out, err = run(capsys, str(bob_encrypted), "--key", str(path),
                          "--cert", str(R9216 / "bob.encrypt.crt"))
    assert code == 2
    assert "--password" in err and str(path) in err


def test_key_without_certificate_is_usage_error(bob_encrypted, capsys):
    code, _out, err = run(capsys, str(bob_encrypted), "--key", str(R9216 / "bob.encrypt.key"))
    assert code == 2
    assert "has no certificate" in err


def test_key_not_matching_certificate_is_usage_error(bob_encrypted, capsys):
    code, _out, err = run(capsys, str(bob_encrypted), "--key", str(R9216 / "bob.encrypt.key"),
                          "--cert", str(R9216 / "alice.encrypt.crt"))
    assert code == 2
    assert "does not belong to certificate CN=Alice Lovelace" in err


def test_wrong_pkcs12_password_fails_like_cert_import(capsys):
    # CONTRACT.md: exit 1, the operation failed (as `cert import` with a wrong password);
    # a missing password stays a usage error (exit 2), as there.
    code, _out, err = run(capsys, str(SIGNED_ENC), "--key", str(TB / "Bob.p12"),
                          "--password", "wrong")
    assert code == 1
    assert str(TB / "Bob.p12") in err and "wrong password" in err
    assert len(err.strip().splitlines()) == 1
    code, _out, err = run(capsys, str(SIGNED_ENC), "--key", str(TB / "Bob.p12"))
    assert code == 2
    assert str(TB / "Bob.p12") in err and "--password" in err


def test_spare_cert_is_usage_error(capsys):
    code, _out, err = run(capsys, str(SIGNED_ENC), "--cert", str(R9216 / "bob.encrypt.crt"))
    assert code == 2 and "--cert without a --key" in err


def test_malformed_message_fails_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.eml"
    path.write_bytes(b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
                     b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n")
    code, out, err = run(capsys, str(path))
    assert code == 1
    assert out == ""
    assert err.startswith(f"smimegate: error: {path}: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_missing_file_fails(tmp_path, capsys):
    code, _out, err = run(capsys, str(tmp_path / "nope.eml"))
    assert code == 1 and "nope.eml" in err


def test_depth_limit_option(tmp_path, capsys):
    alice = TestCA().issue("alice@a.test")
    entity = TEXT
    for _ in range(3):
        entity = sign(entity, alice.key, alice.cert, detached=False)
    path = tmp_path / "deep.eml"
    path.write_bytes(entity)
    code, _out, err = run(capsys, str(path), "--max-depth", "2")
    assert code == 1 and "nesting deeper than 2 layers" in err
    assert run(capsys, str(path), "--max-depth", "0")[0] == 2


def test_message_without_subcommand_is_usage(capsys):
    assert main(["message"]) == 2


def test_console_script_reads_stdin(tmp_path):
    # The real entry point, as an admin runs it: python -m smimegate ... - < FILE. With -c,
    # so that a configuration on this machine (/etc/smimegate) plays no part.
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SqlStore.open(url, None, create=True, check_schema=False)
    store.migrate()
    store.close()
    config = tmp_path / "smimegate.toml"
    config.write_text(f'[store]\nurl = "{url}"\nmaster_key_file = "{tmp_path / "none.key"}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "smimegate", "-c", str(config), "message", "inspect", "-"],
        input=(TB / "alice.sig.SHA256.opaque.eml").read_bytes(),
        capture_output=True, cwd=ROOT, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert "X-Smimegate-Info-Signer-Verified-0-0: True" in lines
    assert done.stderr == b""


def test_der_certificate_and_unreadable_trust_file(bob_encrypted, tmp_path, capsys):
    cert = x509.load_pem_x509_certificate((R9216 / "bob.encrypt.crt").read_bytes())
    der = tmp_path / "bob.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    code, out, _err = run(capsys, str(bob_encrypted), "--key", str(R9216 / "bob.encrypt.key"),
                          "--cert", str(der), "--trust", str(R9216 / "ca.rsa.crt"))
    assert code == 0 and _verified(out)
    code, _out, err = run(capsys, str(bob_encrypted), "--trust", str(tmp_path / "missing.pem"))
    assert code == 2 and "missing.pem" in err


def test_protected_headers_as_the_milter_adds_them(capsys):
    # RFC 9788 (precursor "v1") sample: the protected fields of the signed part inside the
    # encryption, LEVEL 1, exactly as tests/milter/test_gateway_hprotect.py sees the milter add.
    ph = VECTORS / "protected-headers"
    code, out, _err = run(capsys, str(ph / "smime-sign+enc+legacy-disp.eml"), "--key",
                          str(ph / "bob.der.p12"), "--password", "bob", "--trust",
                          str(ph / "sample-ca.pem"))
    assert code == 0
    assert out.splitlines()[-1] == (
        "X-Smimegate-Info-Protected-Headers-1: from, to, date, subject, message-id")


@pytest.mark.parametrize("kind", ["ml-kem-512", "ml-kem-768", "ml-kem-1024"])
@pytest.mark.parametrize("form", ["pem", "der"])
def test_ml_kem_key_files(tmp_path, capsys, kind, form):
    # Post-quantum recipients (issue 14): their PKCS#8 keys open a message like classic ones,
    # ML-KEM-512 included although cryptography cannot load it (smimegate.smime.mlkem512).
    ca = TestCA()
    bob, alice = ca.issue("bob@b.test", kind), ca.issue("alice@a.test")
    message = tmp_path / "msg.eml"
    message.write_bytes(b"Subject: x\r\n" + encrypt(sign(TEXT, alice.key, alice.cert),
                                                    [bob.cert]))
    encoding = serialization.Encoding.PEM if form == "pem" else serialization.Encoding.DER
    key = tmp_path / "bob.key"
    key.write_bytes(bob.key.private_bytes(encoding, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    cert = tmp_path / "bob.crt"
    cert.write_bytes(bob.cert.public_bytes(serialization.Encoding.PEM))
    code, out, err = run(capsys, str(message), "--key", str(key), "--cert", str(cert))
    assert (code, err) == (0, "")
    assert _verified(out)
    # A key of another kind is still refused by name.
    other = tmp_path / "other.crt"
    other.write_bytes(alice.cert.public_bytes(serialization.Encoding.PEM))
    code, _out, err = run(capsys, str(message), "--key", str(key), "--cert", str(other))
    assert code == 2 and "does not belong to certificate" in err


def test_pkcs12_with_ml_dsa_and_ml_kem_keys(tmp_path, capsys):
    # What `cert issue --key-type ml-dsa-65` / `ml-kem-768` hand out (modern PKCS#12): a file
    # holding a post-quantum signing key is read, not refused for its key type.
    from smimegate.pki.pkcs12 import make_pkcs12

    ca = TestCA()
    signing, bob = ca.issue("bob@b.test", "ml-dsa-65"), ca.issue("bob@b.test", "ml-kem-768")
    alice = ca.issue("alice@a.test")
    message = tmp_path / "msg.eml"
    message.write_bytes(b"Subject: x\r\n" + encrypt(sign(TEXT, alice.key, alice.cert),
                                                    [bob.cert]))
    files = []
    for name, ident in (("sign", signing), ("enc", bob)):
        path = tmp_path / f"{name}.p12"
        path.write_bytes(make_pkcs12(ident.key, ident.cert, [ca.cert], "pw"))
        files += ["--key", str(path)]
    code, out, err = run(capsys, str(message), *files, "--password", "pw")
    assert (code, err) == (0, "")
    assert _verified(out)


def test_unknown_key_algorithm_is_one_line(tmp_path, capsys, bob_encrypted):
    # An Ed448 key is well formed, but no S/MIME operation of ours takes it: one line, exit 2.
    from cryptography.hazmat.primitives.asymmetric import ed448

    path = tmp_path / "ed448.key"
    path.write_bytes(ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    code, _out, err = run(capsys, str(bob_encrypted), "--key", str(path),
                          "--cert", str(R9216 / "bob.encrypt.crt"))
    assert code == 2 and err.count("\n") == 1 and str(path) in err
