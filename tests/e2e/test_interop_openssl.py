"""OpenSSL 3.0 ``openssl cms`` <-> smimegate: both directions, every algorithm OpenSSL offers us.

INTEROP.md: OpenSSL is the one client here that reads AES-GCM (AuthEnvelopedData, RFC 5083/5084)
and RSA-OAEP (RFC 3560/8017), so those and ECDH P-256 (RFC 5753) and opaque signing
(RFC 8551 3.5.2) are checked with it, in addition to the default RSA v1.5 + AES-256-CBC.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.e2e import gateway
from tests.e2e.clients import OpenSSL, Party, Pki, crlf, split_signed, tamper
from tests.e2e.conftest import ENTITY, Engine

pytestmark = pytest.mark.e2e

OID_RSA_PKCS1 = "1.2.840.113549.1.1.1"
OID_RSA_OAEP = "1.2.840.113549.1.1.7"
OID_ECDH_SHA1KDF = "1.3.133.16.840.63.0.2"  # dhSinglePass-stdDH-sha1kdf-scheme, RFC 5753 7.1.4
OID_ECDH_SHA256KDF = "1.3.132.1.11.1"  # dhSinglePass-stdDH-sha256kdf-scheme, RFC 5753 7.1.4


@dataclass(frozen=True)
class Case:
    """One algorithm combination, as OpenSSL options and as the engine names it."""

    name: str
    ec: bool = False  # alice-ec / bob-ec (ECDSA P-256 + ECDH P-256) instead of RSA 2048
    opaque: bool = False
    openssl_cipher: str = "aes-256-cbc"
    oaep: bool = False
    ecdh_kdf_md: str | None = None
    engine_cipher: str | None = None  # None: the engine's default
    key_transport: str | None = None
    kind: str = "enveloped"
    layer_cipher: str = "AES256"
    key_encryption_oid: str | None = OID_RSA_PKCS1
    print_marks: tuple[str, ...] = ("rsaEncryption", "aes-256-cbc")


CASES = [
    Case("default"),
    Case("aes128-cbc", openssl_cipher="aes-128-cbc", engine_cipher="aes128-cbc",
         layer_cipher="AES128", print_marks=("aes-128-cbc",)),
    Case("aes256-gcm", openssl_cipher="aes-256-gcm", engine_cipher="aes256-gcm",
         kind="auth-enveloped", layer_cipher="AES256-GCM", print_marks=("aes-256-gcm",)),
    Case("aes128-gcm", openssl_cipher="aes-128-gcm", engine_cipher="aes128-gcm",
         kind="auth-enveloped", layer_cipher="AES128-GCM", print_marks=("aes-128-gcm",)),
    Case("rsa-oaep-sha256", oaep=True, key_transport="rsa-oaep",
         key_encryption_oid=OID_RSA_OAEP, print_marks=("rsaesOaep", "sha256")),
    Case("ecdh-p256", ec=True, key_encryption_oid=OID_ECDH_SHA1KDF,
         print_marks=("id-ecPublicKey",)),
    Case("ecdh-p256-sha256kdf", ec=True, ecdh_kdf_md="sha256",
         key_encryption_oid=OID_ECDH_SHA256KDF),
    Case("opaque", opaque=True),
]
IDS = [case.name for case in CASES]


def parties(pki: Pki, case: Case) -> tuple[Party, Party]:
    return (pki.alice_ec, pki.bob_ec) if case.ec else (pki.alice, pki.bob)


def test_openssl_wrapper_round_trip(openssl: OpenSSL, pki: Pki) -> None:
    """The wrapper itself: OpenSSL signs + encrypts, OpenSSL decrypts + verifies."""
    message = openssl.encrypt(openssl.sign(ENTITY, pki.alice), pki.bob)
    verified = openssl.verify(openssl.decrypt(message, pki.bob))
    assert verified.good, verified.detail
    assert crlf(verified.content) == crlf(ENTITY)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_openssl_to_smimegate(
    openssl: OpenSSL, pki: Pki, smime: Engine, case: Case
) -> None:
    """(a) OpenSSL signs then encrypts; smimegate decrypts and verifies."""
    signer, recipient = parties(pki, case)
    signed = openssl.sign(ENTITY, signer, opaque=case.opaque)
    message = openssl.encrypt(
        signed, recipient, cipher=case.openssl_cipher, oaep=case.oaep,
        ecdh_kdf_md=case.ecdh_kdf_md,
    )
    gateway.read(
        smime, message, signer, recipient, expected=ENTITY, kind=case.kind,
        cipher=case.layer_cipher, detached=not case.opaque,
        key_encryption_oid=case.key_encryption_oid,
    )


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.ecdh_kdf_md is None and c.openssl_cipher != "aes-128-cbc"],
    ids=[c.name for c in CASES if c.ecdh_kdf_md is None and c.openssl_cipher != "aes-128-cbc"],
)
def test_smimegate_to_openssl(
    openssl: OpenSSL, pki: Pki, smime: Engine, case: Case
) -> None:
    """(b) smimegate signs then encrypts; OpenSSL decrypts and verifies."""
    signer, recipient = parties(pki, case)
    message = gateway.write(
        smime, pki.ca, ENTITY, signer, recipient, detached=not case.opaque,
        cipher=case.engine_cipher, key_transport=case.key_transport,
    )
    printed = openssl.cms_print(message)
    for mark in case.print_marks:
        assert mark in printed, f"{mark} not in the CMS structure"
    if case.kind == "auth-enveloped":
        assert "authEnvelopedData" in printed or "id-smime-ct-authEnvelopedData" in printed
    inner = openssl.decrypt(message, recipient)
    verified = openssl.verify(inner)
    assert verified.good, verified.detail
    assert crlf(verified.content) == crlf(ENTITY)


def test_tampered_openssl_signature_is_invalid_in_smimegate(
    openssl: OpenSSL, pki: Pki, smime: Engine
) -> None:
    """OpenSSL signs, one word of the signed part changes: smimegate reports valid False."""
    signed = openssl.sign(ENTITY, pki.alice)
    assert gateway.verify_only(smime, signed).valid is True
    result = gateway.verify_only(smime, tamper(signed))
    assert result.valid is False
    assert result.reason


def test_tampered_smimegate_signature_fails_in_openssl(
    openssl: OpenSSL, pki: Pki, smime: Engine
) -> None:
    """smimegate signs, one word of the signed part changes: OpenSSL refuses it."""
    signed = smime.sign(ENTITY, pki.alice.private_key, pki.alice.cert, [pki.ca.cert])
    part, _sig = split_signed(signed)
    assert crlf(part) == crlf(ENTITY)
    assert openssl.verify(signed).good
    verified = openssl.verify(tamper(signed))
    assert not verified.good
    assert "digest failure" in verified.detail or "content verify error" in verified.detail
