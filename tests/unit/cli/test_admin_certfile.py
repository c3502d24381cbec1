"""smimegate.pki.certfile and pfxread: the file formats ``cert import`` and ``root add`` read,
including PKCS#12 files made by OpenSSL and by our own pki.pkcs12."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from smimegate.pki import certfile, pfxread
from smimegate.pki.pkcs12 import make_pkcs12
from tests.helpers.testpki import TestCA
from tests.unit.cli.admin_support import R9216


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def _openssl_pfx(tmp: Path, ca: TestCA, *extra: str, password: str) -> Path:
    person = ca.issue("o@x.test", "ec-p256")
    person.write(tmp, "o")
    out = tmp / "o.p12"
    subprocess.run(["openssl", "pkcs12", "-export", "-inkey", str(tmp / "o.key"),
                    "-in", str(tmp / "o.crt"), "-out", str(out), "-passout",
                    f"pass:{password}", *extra], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("profile", ["modern", "legacy"])
def test_our_own_pkcs12_profiles_round_trip(ca: TestCA, profile: str) -> None:
    person = ca.issue("p@x.test", "rsa2048")
    data = make_pkcs12(person.key, person.cert, [ca.cert], "pw", profile_name=profile)
    pfx = pfxread.load_pfx(data, "pw")
    assert [k.public_key() for k in pfx.keys] == [person.key.public_key()]
    assert set(pfx.certificates) == {person.cert, ca.cert}
    with pytest.raises(pfxread.WrongPassword):
        pfxread.load_pfx(data, "other")


def test_openssl_pkcs12_default_and_empty_password(ca: TestCA, tmp_path: Path) -> None:
    found = certfile.read_file(_openssl_pfx(tmp_path, ca, password="Pässwörd"), "Pässwörd")
    assert found.kind == "pkcs12" and len(found.pairs) == 1
    empty = certfile.read_file(_openssl_pfx(tmp_path, ca, password=""), None)
    assert len(empty.pairs) == 1
    with pytest.raises(certfile.WrongPassword, match="wrong password"):
        certfile.read_file(_openssl_pfx(tmp_path, ca, password="x"), "y")
    with pytest.raises(certfile.NeedsPassword):
        certfile.read_file(_openssl_pfx(tmp_path, ca, password="x"), None)


def test_pkcs12_kdf_known_answer() -> None:
    # Key for "smeg" from the OpenSSL pkcs12 KDF test vectors (test/recipes/30-test_evp_data/
    # evpkdf_pkcs12.txt): SHA-1, salt 0A58CF64530D823F, ID 1, 1 iteration, 24 bytes.
    password = "smeg".encode("utf-16-be") + b"\0\0"
    key = pfxread.pkcs12_kdf("sha1", password, bytes.fromhex("0A58CF64530D823F"), 1, 1, 24)
    assert key.hex().upper() == "8AAAE6297B6CB04642AB5B077851284EB7128F1A2A7FBCA3"


def test_pem_chain_with_openssl_trusted_certificate(ca: TestCA, tmp_path: Path) -> None:
    person = ca.issue("t@x.test", "rsa2048")
    person.write(tmp_path, "t")
    trusted = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "t.crt"), "-trustout",
                              "-addtrust", "emailProtection"], capture_output=True,
                             check=True).stdout
    assert b"BEGIN TRUSTED CERTIFICATE" in trusted
    found = certfile.parse(trusted + (R9216 / "ca.rsa.crt").read_bytes(), "t.pem")
    assert found.kind == "pem"
    assert len(found.certificates) == 2
    assert found.certificates[0] == person.cert


def test_key_without_its_certificate_is_refused() -> None:
    data = (R9216 / "bob.sign.crt").read_bytes() + (R9216 / "alice.sign.key").read_bytes()
    with pytest.raises(certfile.CertFileError, match="no certificate in it"):
        certfile.parse(data, "mixed.pem")


def test_encrypted_pem_key_is_refused_with_advice(ca: TestCA) -> None:
    person = ca.issue("e@x.test", "rsa2048")
    key = person.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(b"pw"))
    cert = person.cert.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(certfile.CertFileError, match="encrypted PEM private keys"):
        certfile.parse(cert + key, "enc.pem")


def test_empty_and_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"\n")
    with pytest.raises(certfile.CertFileError, match="empty file"):
        certfile.read_file(tmp_path / "empty")
    with pytest.raises(certfile.CertFileError, match="is a directory"):
        certfile.read_file(tmp_path)
