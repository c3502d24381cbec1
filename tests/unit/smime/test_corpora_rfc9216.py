"""RFC 9216 example keys (Alice/Bob RSA-2048, Carlos/Dana Ed25519 + X25519) through our own
sign/encrypt and unwrap.

RFC 9216 publishes keys and certificates only, no example messages (checked: its sections 3-8
hold certificates, keys and PKCS#12 objects), so every test is a round trip. OpenSSL 3.0's CLI
cannot use the Ed25519/X25519 pair for S/MIME, so for Carlos and Dana our code meets itself.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate.smime.encrypt import Recipient, encrypt
from smimegate.smime.results import result_headers
from smimegate.smime.sign import sign
from smimegate.smime.unwrap import unwrap
from tests.conftest import VECTORS

R9216 = VECTORS / "rfc9216"
TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello from the LAMPS WG.\r\n"
OUTER = b"From: a@smime.example\r\nTo: b@smime.example\r\nSubject: RFC 9216\r\n"

RSA_PKCS1 = "1.2.840.113549.1.1.1"
RSA_OAEP = "1.2.840.113549.1.1.7"


def person(name: str, use: str):
    cert = x509.load_pem_x509_certificate((R9216 / f"{name}.{use}.crt").read_bytes())
    key = serialization.load_pem_private_key((R9216 / f"{name}.{use}.key").read_bytes(), None)
    return cert, key


def whole(entity: bytes) -> bytes:
    return OUTER + entity


@pytest.mark.parametrize(
    ("sender", "receiver"), [("alice", "bob"), ("bob", "alice"), ("carlos", "dana"),
                             ("dana", "carlos")]
)
@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes128-gcm"])
def test_sign_then_encrypt_round_trip(sender, receiver, cipher):
    sign_cert, sign_key = person(sender, "sign")
    enc_cert, enc_key = person(receiver, "encrypt")
    message = whole(encrypt(sign(TEXT, sign_key, sign_cert), [enc_cert], cipher=cipher))
    result = unwrap(message, [(enc_cert, enc_key)])
    assert result.error is None
    outer, inner = result.layers
    assert outer.kind == ("auth-enveloped" if "gcm" in cipher else "enveloped")
    assert outer.decrypted is True
    (recipient,) = outer.recipients
    assert recipient.recipient_id.serial == enc_cert.serial_number
    (signer,) = inner.signers
    assert signer.valid is True
    assert signer.certificate == sign_cert
    # RFC 8419 3.1: Ed25519 with signed attributes digests with SHA-512.
    assert signer.digest_algorithm == ("sha512" if sender in ("carlos", "dana") else "sha256")
    assert result.content == TEXT


def test_rsa_recipient_uses_pkcs1_and_x25519_key_agreement():
    bob_enc = person("bob", "encrypt")
    dana_enc = person("dana", "encrypt")
    entity = encrypt(TEXT, [bob_enc[0], dana_enc[0]])
    for cert, key in (bob_enc, dana_enc):
        result = unwrap(whole(entity), [(cert, key)])
        (layer,) = result.layers
        assert layer.decrypted is True
        oids = [r.key_encryption_oid for r in layer.recipients]
        assert oids[0] == RSA_PKCS1
        # RFC 8418 2: X25519 recipients use a dhSinglePass-stdDH-hkdf scheme (RFC 8418 2.2).
        assert oids[1].startswith("1.2.840.113549.1.9.16.3.")
        assert result.content == TEXT


def test_oaep_recipient():
    alice_enc = person("alice", "encrypt")
    entity = encrypt(TEXT, [Recipient(alice_enc[0], key_transport="rsa-oaep")])
    result = unwrap(whole(entity), [alice_enc])
    (layer,) = result.layers
    assert layer.recipients[0].key_encryption_oid == RSA_OAEP
    assert result.content == TEXT


def test_encrypt_then_sign_both_ways_headers():
    carlos_sign = person("carlos", "sign")
    bob_enc = person("bob", "encrypt")
    message = whole(sign(encrypt(TEXT, [bob_enc[0]]), carlos_sign[1], carlos_sign[0]))
    result = unwrap(message, [bob_enc])
    headers = dict(result_headers(result.layers))
    assert headers["X-Smimegate-Info-Signer-Verified-0-0"] == "True"
    assert headers["X-Smimegate-Info-Signer-ID-0-0"].startswith(
        "CN=Sample LAMPS Ed25519 Certification Authority, OU=LAMPS WG, O=IETF/"
    )
    assert headers["X-Smimegate-Info-Encryption-Algorithm-1"] == "AES256, Key size: 256"


def test_wrong_persons_key_does_not_decrypt():
    alice_enc = person("alice", "encrypt")
    bob_enc = person("bob", "encrypt")
    result = unwrap(whole(encrypt(TEXT, [alice_enc[0]])), [bob_enc])
    assert result.layers[0].decrypted is False
    assert result.error
