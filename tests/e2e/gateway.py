"""smimegate's side of the interoperability tests: write with the engine, read with the engine.

Both go through the public API of engine_api.md only (sign, verify, encrypt, decrypt), with the
defaults a gateway uses unless a test asks otherwise, and assert everything a reader of the
result headers would rely on: the layer kinds, the cipher, the recipient, the signer, validity.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from tests.e2e.clients import Party, crlf
from tests.e2e.conftest import Engine
from tests.helpers.testpki import TestCA


def write(
    smime: Engine,
    ca: TestCA,
    entity: bytes,
    signer: Party,
    recipient: Party,
    *,
    detached: bool = True,
    cipher: str | None = None,
    key_transport: str | None = None,
) -> bytes:
    """sign() then encrypt() as the gateway does outbound; defaults unless given."""
    signed = smime.sign(entity, signer.private_key, signer.cert, [ca.cert], detached=detached)
    recipients: list[Any] = (
        [smime.Recipient(certificate=recipient.cert, key_transport=key_transport)]
        if key_transport
        else [recipient.cert]
    )
    if cipher is None:
        return bytes(smime.encrypt(signed, recipients))
    return bytes(smime.encrypt(signed, recipients, cipher=cipher))


def read(
    smime: Engine,
    entity: bytes,
    signer: Party,
    recipient: Party,
    *,
    expected: bytes,
    kind: str = "enveloped",
    cipher: str | None = "AES256",
    detached: bool = True,
    key_encryption_oid: str | None = None,
) -> tuple[Any, Any]:
    """decrypt() then verify() as the gateway does inbound; assert a good, matching result.

    Returns the two layers (enveloped, signed) for further checks.
    """
    inner, envelope = smime.decrypt(entity, [(recipient.cert, recipient.private_key)])
    assert envelope.kind == kind
    assert envelope.decrypted is True
    if cipher is not None:
        assert envelope.cipher == cipher
    assert len(envelope.recipients) == 1
    assert identifies(envelope.recipients[0].recipient_id, recipient.cert)
    if key_encryption_oid is not None:
        assert envelope.recipients[0].key_encryption_oid == key_encryption_oid

    content, signed = smime.verify(inner)
    assert signed.kind == "signed"
    assert signed.detached is detached
    assert len(signed.signers) == 1
    signer_result = signed.signers[0]
    assert signer_result.valid is True, signer_result.reason
    assert signer_result.certificate == signer.cert
    assert identifies(signer_result.signer_id, signer.cert)
    assert crlf(content) == crlf(expected)

    # What the milter will write (CONTRACT.md): layer 0 the envelope, layer 1 the signature.
    headers = dict(smime.result_headers([envelope, signed]))
    assert headers["X-Smimegate-Info-Encryption-Algorithm-0"] == (
        f"{envelope.cipher}, Key size: {envelope.key_size}"
    )
    assert headers["X-Smimegate-Info-Signer-Verified-0-1"] == "True"
    return envelope, signed


def identifies(cid: Any, cert: x509.Certificate) -> bool:
    """A CMS identifier (issuerAndSerialNumber or subjectKeyIdentifier) names cert."""
    if cid.serial is not None:
        return bool(cid.serial == cert.serial_number)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return bool(cid.ski == ski)


def verify_only(smime: Engine, signed_entity: bytes) -> Any:
    """verify() of a signed entity; returns its one SignerResult (valid may be False)."""
    _content, layer = smime.verify(signed_entity)
    assert layer.kind == "signed"
    assert len(layer.signers) == 1
    return layer.signers[0]
