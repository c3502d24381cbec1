"""NSS ``cmsutil`` (the S/MIME library of Thunderbird) <-> smimegate.

cmsutil works on raw CMS, so the test plays Thunderbird's MIME part: it wraps the detached
signature into multipart/signed and the EnvelopedData into application/pkcs7-mime (RFC 8551
3.2, 3.5.3), and splits smimegate's MIME before cmsutil reads it. cmsutil -h exits 0 even on a
bad signature, so the wrapper reads signer0.status (INTEROP.md).
"""

from __future__ import annotations

import pytest

from tests.e2e import gateway
from tests.e2e.clients import (
    Nss,
    OpenSSL,
    Pki,
    crlf,
    pkcs7_der,
    split_signed,
    tamper,
    wrap_pkcs7_mime,
    wrap_signed,
)
from tests.e2e.conftest import ENTITY, Engine

pytestmark = pytest.mark.e2e


def nss_sign_encrypt(nss: Nss, pki: Pki) -> bytes:
    """multipart/signed by NSS (SHA-256), then enveloped by NSS, as pkcs7-mime."""
    part = crlf(ENTITY)
    signed = wrap_signed(part, nss.sign_detached(part, pki.alice), "sha-256")
    return wrap_pkcs7_mime(nss.encrypt(signed, pki.bob), "enveloped-data")


def nss_decrypt_verify(nss: Nss, message: bytes) -> tuple[bytes, bool, str]:
    """(signed part, good signature, cmsutil status) of an enveloped multipart/signed."""
    inner = nss.decrypt(pkcs7_der(message))
    part, signature = split_signed(inner)
    verified = nss.verify_detached(signature, part)
    return part, verified.good, verified.detail


def test_openssl_to_nss(nss: Nss, openssl: OpenSSL, pki: Pki) -> None:
    """The wrapper against another client: OpenSSL signs + encrypts, NSS reads it."""
    message = openssl.encrypt(openssl.sign(ENTITY, pki.alice), pki.bob)
    part, good, detail = nss_decrypt_verify(nss, message)
    assert good, detail
    assert crlf(part) == crlf(ENTITY)


def test_nss_to_openssl(nss: Nss, openssl: OpenSSL, pki: Pki) -> None:
    """The wrapper against another client: NSS signs + encrypts, OpenSSL reads it."""
    message = nss_sign_encrypt(nss, pki)
    verified = openssl.verify(openssl.decrypt(message, pki.bob))
    assert verified.good, verified.detail
    assert crlf(verified.content) == crlf(ENTITY)


def test_nss_to_smimegate(nss: Nss, pki: Pki, smime: Engine) -> None:
    """(a) NSS signs then encrypts (it picks AES-CBC, RSA v1.5); smimegate decrypts, verifies."""
    message = nss_sign_encrypt(nss, pki)
    envelope, _signed = gateway.read(
        smime, message, pki.alice, pki.bob, expected=ENTITY, cipher=None,
        key_encryption_oid="1.2.840.113549.1.1.1",
    )
    assert (envelope.cipher, envelope.key_size) in {("AES128", 128), ("AES256", 256)}


def test_smimegate_to_nss(nss: Nss, pki: Pki, smime: Engine) -> None:
    """(b) smimegate signs then encrypts with its defaults; NSS decrypts and verifies."""
    message = gateway.write(smime, pki.ca, ENTITY, pki.alice, pki.bob)
    part, good, detail = nss_decrypt_verify(nss, message)
    assert good, detail
    assert crlf(part) == crlf(ENTITY)


def test_tampered_smimegate_signature_is_bad_in_nss(
    nss: Nss, pki: Pki, smime: Engine
) -> None:
    """smimegate signs, one word of the signed part changes: NSS says DigestMismatch."""
    signed = smime.sign(ENTITY, pki.alice.private_key, pki.alice.cert, [pki.ca.cert])
    part, signature = split_signed(signed)
    assert nss.verify_detached(signature, part).good
    verified = nss.verify_detached(signature, tamper(part))
    assert not verified.good
    assert "signer0.status=DigestMismatch" in verified.detail


def test_tampered_nss_signature_is_invalid_in_smimegate(
    nss: Nss, pki: Pki, smime: Engine
) -> None:
    """NSS signs, one word of the signed part changes: smimegate reports valid False."""
    part = crlf(ENTITY)
    signature = nss.sign_detached(part, pki.alice)
    assert gateway.verify_only(smime, wrap_signed(part, signature)).valid is True
    result = gateway.verify_only(smime, wrap_signed(tamper(part), signature))
    assert result.valid is False
    assert result.reason
