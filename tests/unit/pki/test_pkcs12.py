"""smimegate.pki.pkcs12 and .passwords: both PFX profiles, read back by cryptography and by
``openssl pkcs12``; generated passwords. (NSS and gpgsm imports: tests/e2e/test_pki_clients.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from smimegate.pki.issue import IssueRequest, Subject, issue_certificate
from smimegate.pki.passwords import ALPHABET, LOOK_ALIKES, MIN_LENGTH, generate_password
from smimegate.pki.pkcs12 import make_pkcs12
from smimegate.pki.signing import new_key
from tests.unit.pki.ca_support import ca_pair, openssl, write

EMAIL = "bob@example.net"
PASSWORD = "Tr1cky pässword"


def pfx(profile: str, key_type: str = "ec-p256") -> tuple[bytes, object, object]:
    pair = ca_pair()
    key = new_key(key_type)
    cert = issue_certificate(IssueRequest(Subject(EMAIL)), key.public_key(), pair.intermediate,
                             pair.intermediate_key)
    data = make_pkcs12(key, cert, [pair.intermediate, pair.root], PASSWORD,
                       profile_name=profile, friendly_name=EMAIL)
    return data, key, cert


@pytest.mark.parametrize("profile", ["modern", "legacy"])
def test_holds_key_certificate_chain_and_friendly_name(profile: str) -> None:
    data, key, cert = pfx(profile)
    loaded = pkcs12.load_pkcs12(data, PASSWORD.encode())
    assert loaded.key is not None and loaded.cert is not None
    assert loaded.key.public_key() == key.public_key()  # type: ignore[attr-defined]
    assert loaded.cert.certificate == cert
    assert loaded.cert.friendly_name == EMAIL.encode()
    pair = ca_pair()
    assert [c.certificate for c in loaded.additional_certs] == [pair.intermediate, pair.root]
    assert [c.friendly_name for c in loaded.additional_certs] == [
        b"Test Issuing CA rsa2048", b"Test Root rsa2048"]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(data, b"wrong")


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("modern", [r"MAC: sha256", r"Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, "
                    r"Iteration 100000, PRF hmacWithSHA256",
                    r"PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC"]),
        ("legacy", [r"MAC: sha1", r"Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC",
                    r"PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC"]),
    ],
)
def test_openssl_reads_each_profile_and_sees_its_algorithms(
    tmp_path: Path, profile: str, expected: list[str]
) -> None:
    data, _, cert = pfx(profile, "rsa2048")
    path = write(tmp_path, f"{profile}.p12", data)
    # OpenSSL 3 reads 3DES/SHA-1 PKCS#12 with its default provider: -legacy is only needed for
    # RC2-40, which we never write.
    info = openssl("pkcs12", "-in", path, "-passin", f"pass:{PASSWORD}", "-info", "-nodes")
    text = info.stdout + info.stderr
    for pattern in expected:
        assert re.search(pattern, text), (pattern, text)
    assert text.count("BEGIN CERTIFICATE") == 3
    assert "BEGIN PRIVATE KEY" in text
    assert f"friendlyName: {EMAIL}" in text
    bad = openssl("pkcs12", "-in", path, "-passin", "pass:nope", "-nodes", check=False)
    assert bad.returncode != 0 and "mac verify error" in bad.stderr.lower()


def test_refuses_bad_arguments() -> None:
    pair = ca_pair()
    key = new_key("ec-p256")
    cert = issue_certificate(IssueRequest(Subject(EMAIL)), key.public_key(), pair.intermediate,
                             pair.intermediate_key)
    with pytest.raises(ValueError, match="password"):
        make_pkcs12(key, cert, [], "")
    with pytest.raises(ValueError, match="profile 'ancient'"):
        make_pkcs12(key, cert, [], PASSWORD, profile_name="ancient")
    with pytest.raises(ValueError, match="does not belong"):
        make_pkcs12(new_key("ec-p256"), cert, [], PASSWORD)


def test_generated_passwords_are_long_random_and_unambiguous() -> None:
    passwords = [generate_password() for _ in range(500)]
    assert len(set(passwords)) == 500
    assert all(len(p) >= MIN_LENGTH for p in passwords)
    used = set("".join(passwords))
    assert used <= set(ALPHABET)
    assert not used & LOOK_ALIKES
    assert not set(ALPHABET) & set("0O1lI5S2Z8B")
    assert len(used) == len(ALPHABET)  # every character of the alphabet does occur
    assert len(generate_password(32)) == 32
    with pytest.raises(ValueError, match="at least 16"):
        generate_password(12)
