"""gpgsm 2.2 (GnuPG's S/MIME tool, used by KMail, Mutt and Kleopatra) <-> smimegate.

gpgsm works on raw CMS, so the test plays its mail user agent: it wraps gpgsm's detached
signature into multipart/signed and its EnvelopedData into application/pkcs7-mime (RFC 8551
3.2, 3.5.3), and splits smimegate's MIME the same way before gpgsm reads it.
"""

from __future__ import annotations

import pytest

from tests.e2e import gateway
from tests.e2e.clients import (
    Gpgsm,
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


def gpgsm_sign_encrypt(gpgsm: Gpgsm, pki: Pki) -> bytes:
    """What a gpgsm-based MUA sends: multipart/signed, then enveloped, as pkcs7-mime."""
    part = crlf(ENTITY)
    signed = wrap_signed(part, gpgsm.sign_detached(part, pki.alice), "sha-256")
    return wrap_pkcs7_mime(gpgsm.encrypt(signed, pki.bob), "enveloped-data")


def gpgsm_decrypt_verify(gpgsm: Gpgsm, pki: Pki, message: bytes) -> tuple[bytes, bool, str]:
    """What a gpgsm-based MUA shows: (signed part, good signature, gpgsm status)."""
    inner = gpgsm.decrypt(pkcs7_der(message))
    part, signature = split_signed(inner)
    verified = gpgsm.verify_detached(signature, part)
    return part, verified.good, verified.detail


def test_openssl_to_gpgsm(gpgsm: Gpgsm, openssl: OpenSSL, pki: Pki) -> None:
    """The wrapper against another client: OpenSSL signs + encrypts, gpgsm reads it."""
    message = openssl.encrypt(openssl.sign(ENTITY, pki.alice), pki.bob)
    part, good, detail = gpgsm_decrypt_verify(gpgsm, pki, message)
    assert good, detail
    assert crlf(part) == crlf(ENTITY)


def test_gpgsm_to_openssl(gpgsm: Gpgsm, openssl: OpenSSL, pki: Pki) -> None:
    """The wrapper against another client: gpgsm signs + encrypts, OpenSSL reads it."""
    message = gpgsm_sign_encrypt(gpgsm, pki)
    verified = openssl.verify(openssl.decrypt(message, pki.bob))
    assert verified.good, verified.detail
    assert crlf(verified.content) == crlf(ENTITY)


def test_gpgsm_to_smimegate(gpgsm: Gpgsm, pki: Pki, smime: Engine) -> None:
    """(a) gpgsm signs then encrypts (AES-256-CBC, RSA v1.5); smimegate decrypts and verifies."""
    message = gpgsm_sign_encrypt(gpgsm, pki)
    gateway.read(smime, message, pki.alice, pki.bob, expected=ENTITY, cipher="AES256",
                 key_encryption_oid="1.2.840.113549.1.1.1")


def test_smimegate_to_gpgsm(gpgsm: Gpgsm, pki: Pki, smime: Engine) -> None:
    """(b) smimegate signs then encrypts with its defaults; gpgsm decrypts and verifies."""
    message = gateway.write(smime, pki.ca, ENTITY, pki.alice, pki.bob)
    part, good, detail = gpgsm_decrypt_verify(gpgsm, pki, message)
    assert good, detail
    assert "[GNUPG:] GOODSIG" in detail
    assert crlf(part) == crlf(ENTITY)


def test_tampered_smimegate_signature_is_bad_in_gpgsm(
    gpgsm: Gpgsm, pki: Pki, smime: Engine
) -> None:
    """smimegate signs, one word of the signed part changes: gpgsm says BADSIG."""
    signed = smime.sign(ENTITY, pki.alice.private_key, pki.alice.cert, [pki.ca.cert])
    part, signature = split_signed(signed)
    assert gpgsm.verify_detached(signature, part).good
    verified = gpgsm.verify_detached(signature, tamper(part))
    assert not verified.good
    assert "[GNUPG:] BADSIG" in verified.detail


def test_tampered_gpgsm_signature_is_invalid_in_smimegate(
    gpgsm: Gpgsm, pki: Pki, smime: Engine
) -> None:
    """gpgsm signs, one word of the signed part changes: smimegate reports valid False."""
    part = crlf(ENTITY)
    signature = gpgsm.sign_detached(part, pki.alice)
    assert gateway.verify_only(smime, wrap_signed(part, signature)).valid is True
    result = gateway.verify_only(smime, wrap_signed(tamper(part), signature))
    assert result.valid is False
    assert result.reason
