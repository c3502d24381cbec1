"""Encrypt a MIME entity for recipients: CMS EnvelopedData (RFC 5652 6) with AES-CBC, or
AuthEnvelopedData (RFC 5083) with AES-GCM, as RFC 8551 3.3 wraps it.

Each recipient gets a RecipientInfo identified by issuerAndSerialNumber (the most compatible
form): RSA keys by key transport (PKCS#1 v1.5 by default, or RSA-OAEP SHA-256), EC and X25519
keys by ephemeral-static key agreement (RFC 5753, RFC 8418), ML-KEM-512/768/1024 keys by
KEMRecipientInfo in ``ori`` (RFC 9629, RFC 9936; smimegate.smime.kem).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

from smimegate import dn
from smimegate.smime import bulk, envelope, kem, keyagree, keytrans, mime, mlkem512
from smimegate.smime.algorithms import (
    CONTENT_CIPHER_BY_NAME,
    KEY_TRANSPORTS,
    WRITABLE_CONTENT_CIPHERS,
)
from smimegate.smime.cms import issuer_and_serial_der
from smimegate.smime.errors import Unsupported

DEFAULT_CIPHER = "aes256-cbc"  # DESIGN.md: every client we test reads AES-256-CBC + RSA v1.5


@dataclass(frozen=True)
class Recipient:
    """A recipient certificate and, for RSA keys, the key transport to use.

    key_transport: "rsa-pkcs1" (default, RFC 3370 4.2.1) or "rsa-oaep" (RFC 3560, SHA-256 and
    MGF1-SHA-256). Ignored for EC and X25519 keys, which always use key agreement.
    Raises ValueError for another key_transport.
    """

    certificate: x509.Certificate
    key_transport: str = "rsa-pkcs1"

    def __post_init__(self) -> None:
        if self.key_transport not in KEY_TRANSPORTS:
            raise ValueError(
                f"key_transport: {self.key_transport!r} is not one of {sorted(KEY_TRANSPORTS)}"
            )


def encrypt(
    entity: bytes,
    recipients: Sequence[x509.Certificate | Recipient],
    *,
    cipher: str = DEFAULT_CIPHER,
    canonical: bool = False,
) -> bytes:
    """Encrypt a MIME entity; returns an application/pkcs7-mime entity with smime-type
    enveloped-data (CBC) or authEnveloped-data (GCM).

    The entity is put into canonical form (CRLF, RFC 8551 3.1.1) first. ``canonical``: the
    caller passes what smime.sign returned, CRLF throughout by construction, so it is not
    scanned again (20 us for 14 KB, bench/cost_bench.py). Raises ValueError for a bad argument
    (no recipients, unknown cipher) and Unsupported for a recipient key we cannot encrypt to
    (DSA, Ed25519, an unsupported curve).
    """
    content = entity if canonical else mime.canonicalize(entity)
    der = encrypt_der(content, recipients, cipher=cipher)
    smime_type = "authEnveloped-data" if cipher.endswith("-gcm") else "enveloped-data"
    return mime.build_pkcs7_mime(der, smime_type)


def encrypt_der(
    content: bytes,
    recipients: Sequence[x509.Certificate | Recipient],
    *,
    cipher: str = DEFAULT_CIPHER,
) -> bytes:
    """ContentInfo DER of an EnvelopedData (CBC) or AuthEnvelopedData (GCM) holding content.

    RecipientInfos come out in DER SET OF order, not in the order of ``recipients``. Raises
    ValueError / Unsupported as ``encrypt`` does.
    """
    if cipher not in WRITABLE_CONTENT_CIPHERS:
        raise ValueError(f"cipher: {cipher!r} is not one of {list(WRITABLE_CONTENT_CIPHERS)}")
    if not recipients:
        raise ValueError("recipients: at least one is needed")
    spec = CONTENT_CIPHER_BY_NAME[cipher]
    cek = os.urandom(spec.key_bytes)
    infos = [_recipient_info(_as_recipient(r), cek) for r in recipients]
    params = bulk.new_parameters(spec)
    kind: envelope.EnvelopeKind = "auth-enveloped" if spec.mode == "gcm" else "enveloped"
    ct_length = bulk.ciphertext_length(spec, len(content))
    # RFC 5652 6.1: EnvelopedData version 3 when a RecipientInfo is ori ([4], tag 0xA4).
    head = envelope.head_der(kind, [der for der, _ in infos], all(v0 for _, v0 in infos),
                             params.algorithm_der, ct_length,
                             has_ori=any(der[0] == 0xA4 for der, _ in infos))
    mac_length = len(envelope.MAC_HEADER) + bulk.GCM_TAG_BYTES if spec.mode == "gcm" else 0
    size = len(head) + ct_length + mac_length

    def fill(view: memoryview) -> int:
        view[: len(head)] = head
        bulk.encrypt_into(spec, cek, params, content, view[len(head) :])
        return size

    # The DER is written once, in place: no joined copy of a large ciphertext.
    return bulk.build_bytes(size + bulk.SLACK, fill)


def _as_recipient(value: x509.Certificate | Recipient) -> Recipient:
    if isinstance(value, Recipient):
        return value
    if isinstance(value, x509.Certificate):
        return Recipient(value)
    raise ValueError(f"recipients: {type(value).__name__} is neither a Certificate nor a Recipient")


def _recipient_info(recipient: Recipient, cek: bytes) -> tuple[bytes, bool]:
    """One RecipientInfo DER, and whether it is a version 0 ktri (RFC 5652 6.1's version)."""
    cert = recipient.certificate
    public_key = mlkem512.certificate_public_key(cert)  # ML-KEM-512 too, which cryptography lacks
    if isinstance(public_key, rsa.RSAPublicKey):
        return keytrans.build_der(issuer_and_serial_der(cert), public_key, cek,
                                  recipient.key_transport), True
    if isinstance(public_key, ec.EllipticCurvePublicKey | x25519.X25519PublicKey):
        issuer_serial = acms.IssuerAndSerialNumber.load(issuer_and_serial_der(cert))
        kid = acms.KeyAgreementRecipientIdentifier(
            name="issuer_and_serial_number", value=issuer_serial
        )
        return bytes(keyagree.build(kid, public_key, cek).dump()), False
    if isinstance(public_key, kem.PublicKey):
        return kem.build_der(issuer_and_serial_der(cert), public_key, cek), False
    raise Unsupported(
        f"cannot encrypt to a {type(public_key).__name__} key ({dn.name_string(cert.subject)})"
    )
