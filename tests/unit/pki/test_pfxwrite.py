"""PKCS#12 of ML-DSA and ML-KEM keys (smimegate.pki.pfxwrite, issue 14 point 2).

cryptography 50 writes these keys as PKCS#8 but not into PKCS#12, so we build the container.
Checked three ways: our reader gives the same key back; cryptography's own PKCS#12 reader
takes the same container around an RSA key (so the structure is the standard one); the system
openssl (3.0) checks the MAC and decrypts both the certificate and the key bag, and stops only
at the key type it does not know (ML-DSA and ML-KEM arrived in OpenSSL 3.5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from smimegate.pki.pfxread import WrongPassword, load_pfx
from smimegate.pki.pfxwrite import write_pkcs12
from smimegate.pki.pkcs12 import make_pkcs12
from tests.helpers.testpki import TestCA

ROUNDS = 2048  # OpenSSL's default; the reader's RFC 7292 KDF is pure Python


def pkcs8(key: object) -> bytes:
    return key.private_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                             serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.mark.parametrize("kind", ["ml-dsa-44", "ml-dsa-65", "ml-dsa-87", "ml-kem-512",
                                  "ml-kem-768", "ml-kem-1024"])
def test_round_trip_through_our_reader(ca: TestCA, kind: str) -> None:
    person = ca.issue("pq@example.test", kind)
    der = write_pkcs12(pkcs8(person.key), person.cert, [ca.cert], "pässword",
                       friendly_name=b"pq@example.test", rounds=ROUNDS)
    pfx = load_pfx(der, "pässword")
    [key] = pfx.keys
    assert key.public_key() == person.key.public_key()
    assert pfx.certificates == (person.cert, ca.cert)
    with pytest.raises(WrongPassword):
        load_pfx(der, "password")


def test_make_pkcs12_takes_ml_keys_with_the_modern_profile_only(ca: TestCA) -> None:
    person = ca.issue("pq@example.test", "ml-kem-768")
    der = make_pkcs12(person.key, person.cert, [ca.cert], "pw", friendly_name="pq@example.test")
    assert load_pfx(der, "pw").keys[0].public_key() == person.key.public_key()
    with pytest.raises(ValueError, match="modern profile only"):
        make_pkcs12(person.key, person.cert, [], "pw", profile_name="legacy")
    other = ca.issue("other@example.test", "ml-kem-768")
    with pytest.raises(ValueError, match="does not belong"):
        make_pkcs12(other.key, person.cert, [], "pw")
    with pytest.raises(ValueError, match="must not be empty"):
        write_pkcs12(pkcs8(person.key), person.cert, [], "", friendly_name=None, rounds=1)


def test_the_container_is_what_cryptography_reads(ca: TestCA) -> None:
    person = ca.issue("rsa@example.test", "rsa2048")
    der = write_pkcs12(pkcs8(person.key), person.cert, [ca.cert], "pw",
                       friendly_name=b"rsa@example.test", rounds=ROUNDS)
    loaded = pkcs12.load_pkcs12(der, b"pw")
    assert loaded.key is not None and loaded.key.public_key() == person.key.public_key()
    assert loaded.cert is not None and loaded.cert.certificate == person.cert
    assert loaded.cert.friendly_name == b"rsa@example.test"
    assert [c.certificate for c in loaded.additional_certs] == [ca.cert]


def test_system_openssl_opens_the_container(ca: TestCA, tmp_path: Path) -> None:
    person = ca.issue("pq@example.test", "ml-dsa-65")
    path = tmp_path / "pq.p12"
    path.write_bytes(write_pkcs12(pkcs8(person.key), person.cert, [ca.cert], "pw",
                                  friendly_name=b"pq@example.test", rounds=ROUNDS))
    certs = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-passin", "pass:pw",
                            "-nokeys"], capture_output=True, text=True, check=False)
    assert certs.returncode == 0, certs.stderr
    assert "friendlyName: pq@example.test" in certs.stdout
    assert certs.stdout.count("BEGIN CERTIFICATE") == 2
    key = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-passin", "pass:pw",
                          "-nocerts", "-noenc"], capture_output=True, text=True, check=False)
    if key.returncode == 0:  # an OpenSSL that knows ML-DSA (3.5 or later)
        assert "BEGIN PRIVATE KEY" in key.stdout
    else:
        # MAC and PBES2 fine, the PKCS#8 decrypted: only the algorithm is unknown to it.
        assert "TYPE=2.16.840.1.101.3.4.3.18" in key.stderr  # id-ml-dsa-65
        assert "unsupported private key algorithm" in key.stderr
        assert "mac verify" not in key.stderr.lower()
    wrong = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-passin", "pass:nope",
                            "-nokeys"], capture_output=True, text=True, check=False)
    assert wrong.returncode != 0 and "mac verify error" in wrong.stderr.lower()
