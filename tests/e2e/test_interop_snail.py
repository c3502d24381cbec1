"""s-nail 14.9 (a mail user agent that builds whole S/MIME messages) <-> smimegate.

s-nail sends through INTEROP.md's ``test://OUT.mbox`` MTA and reads mbox files; its messages use
application/pkcs7-mime without smime-type= and micalg=SHA256, which smimegate must accept
(RFC 8551 3.2.2 says receivers should not rely on smime-type; 3.5.3.2 on micalg spelling).
"""

from __future__ import annotations

import pytest

from tests.e2e import gateway
from tests.e2e.clients import (
    OpenSSL,
    Pki,
    SNail,
    crlf,
    join_message,
    split_head,
    split_signed,
    tamper,
)
from tests.e2e.conftest import ENTITY, Engine

pytestmark = pytest.mark.e2e

# s-nail makes the MIME entity itself from the text it is given: a headerless text/plain part.
TEXT = split_head(ENTITY)[1]
SNAIL_ENTITY = b"\n" + TEXT


def outer_headers(pki: Pki) -> list[tuple[str, str]]:
    return [
        ("From", pki.alice.email),
        ("To", pki.bob.email),
        ("Subject", "interop"),
        ("Date", "Sat, 03 Jan 2026 10:00:00 +0000"),
        ("Message-ID", "<interop@a.test>"),
    ]


def test_snail_message_form(snail: SNail, pki: Pki) -> None:
    """What s-nail sends is what the module docstring says smimegate must cope with."""
    message = snail.send_signed_encrypted(TEXT, pki.alice, pki.bob)
    head, _body = split_head(message)
    assert b"Content-Type: application/pkcs7-mime;" in head
    assert b"smime-type" not in head


def test_snail_to_openssl(snail: SNail, openssl: OpenSSL, pki: Pki) -> None:
    """The wrapper against another client: s-nail signs + encrypts, OpenSSL reads it."""
    message = snail.send_signed_encrypted(TEXT, pki.alice, pki.bob)
    verified = openssl.verify(openssl.decrypt(message, pki.bob))
    assert verified.good, verified.detail
    assert crlf(verified.content) == crlf(SNAIL_ENTITY)


def test_openssl_to_snail(snail: SNail, openssl: OpenSSL, pki: Pki) -> None:
    """The wrapper against another client: OpenSSL signs + encrypts, s-nail reads it."""
    entity = openssl.encrypt(openssl.sign(ENTITY, pki.alice), pki.bob)
    decrypted = snail.decrypt(join_message(outer_headers(pki), entity), pki.bob)
    verified = snail.verify(decrypted)
    assert verified.good, verified.detail
    assert crlf(split_signed(decrypted)[0]) == crlf(ENTITY)


def test_snail_to_smimegate(snail: SNail, pki: Pki, smime: Engine) -> None:
    """(a) s-nail signs (SHA-256) then encrypts (AES-256); smimegate decrypts and verifies."""
    message = snail.send_signed_encrypted(TEXT, pki.alice, pki.bob)
    outer, entity = smime.split_message(crlf(message))
    assert ("subject", b"interop") in [(name.lower(), value.strip()) for name, value in outer]
    gateway.read(smime, entity, pki.alice, pki.bob, expected=SNAIL_ENTITY, cipher="AES256",
                 key_encryption_oid="1.2.840.113549.1.1.1")


def test_smimegate_to_snail(snail: SNail, pki: Pki, smime: Engine) -> None:
    """(b) smimegate signs then encrypts with its defaults; s-nail decrypts and verifies."""
    entity = gateway.write(smime, pki.ca, ENTITY, pki.alice, pki.bob)
    decrypted = snail.decrypt(join_message(outer_headers(pki), entity), pki.bob)
    verified = snail.verify(decrypted)
    assert verified.good, verified.detail
    assert crlf(split_signed(decrypted)[0]) == crlf(ENTITY)


def test_tampered_smimegate_signature_fails_in_snail(
    snail: SNail, pki: Pki, smime: Engine
) -> None:
    """smimegate signs, one word of the signed part changes: s-nail's verify fails."""
    signed = smime.sign(ENTITY, pki.alice.private_key, pki.alice.cert, [pki.ca.cert])
    message = join_message(outer_headers(pki), signed)
    assert snail.verify(message).good
    verified = snail.verify(tamper(message))
    assert not verified.good
    assert "status=1" in verified.detail


def test_tampered_snail_signature_is_invalid_in_smimegate(
    snail: SNail, pki: Pki, smime: Engine
) -> None:
    """s-nail signs and encrypts; after decryption one word changes: smimegate: valid False."""
    message = snail.send_signed_encrypted(TEXT, pki.alice, pki.bob)
    _outer, entity = smime.split_message(crlf(message))
    inner, _layer = smime.decrypt(entity, [(pki.bob.cert, pki.bob.private_key)])
    assert gateway.verify_only(smime, inner).valid is True
    result = gateway.verify_only(smime, tamper(inner))
    assert result.valid is False
    assert result.reason
