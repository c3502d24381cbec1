"""Values that describe what the engine found; they become the result headers of CONTRACT.md.

LEVEL is the CMS layer, 0 the outermost one met; INDEX numbers signers or recipients of one layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from cryptography import x509

LayerKind = Literal["signed", "enveloped", "auth-enveloped"]


def serial_hex(serial: int) -> str:
    """Serial as ``openssl x509 -serial`` prints it: upper-case hex, whole bytes."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


@dataclass(frozen=True)
class CertId:
    """Identifies a certificate as CMS does (RFC 5652 5.3, 6.2.1).

    issuer: RFC 4514 string, most specific first, ", " between attributes (empty if by SKI only).
    """

    issuer: str
    serial: int | None
    ski: bytes | None

    def header_value(self) -> str:
        """``<issuer DN>/<SERIAL HEX>/<SKI HEX or empty>`` as CONTRACT.md fixes it."""
        serial = serial_hex(self.serial) if self.serial is not None else ""
        ski = self.ski.hex().upper() if self.ski is not None else ""
        return f"{self.issuer}/{serial}/{ski}"


@dataclass(frozen=True)
class SignerResult:
    """One SignerInfo of a SignedData and what verification found.

    valid: the signature (and messageDigest) checks out with the signer's certificate.
    reason: why not, when valid is False.
    trusted / trust_info: filled by smimegate.pki.trust; the engine itself leaves trusted False
    with trust_info "trust not evaluated". revocation: the signer certificate's revocation
    status as smimegate.pki.trust found it (good | revoked | unknown), for the log line.
    countersigns: for a countersignature (RFC 5652 11.4), the index (in its layer) of the
    signer whose signature it signs; None for a signer of the content.
    """

    signer_id: CertId
    certificate: x509.Certificate | None
    valid: bool
    reason: str | None
    digest_algorithm: str
    signature_algorithm: str
    signing_time: datetime | None = None
    capabilities: tuple[str, ...] = ()
    trusted: bool = False
    trust_info: str | None = "trust not evaluated"
    revocation: str = "unknown"
    countersigns: int | None = None


@dataclass(frozen=True)
class RecipientResult:
    """One RecipientInfo of an Enveloped/AuthEnvelopedData (RFC 5652 6.2)."""

    recipient_id: CertId
    key_encryption_oid: str

    def header_value(self) -> str:
        return f"{self.recipient_id.header_value()}/{self.key_encryption_oid}"


@dataclass(frozen=True)
class Layer:
    """One CMS layer met while unwrapping.

    signed: signers and certificates are set, detached tells multipart/signed from opaque;
    crls: the DER of the CRLs the SignedData carries (RFC 5652 5.1 crls, RFC 8551 2.4.5).
    enveloped / auth-enveloped: cipher (e.g. "AES256", "AES256-GCM", "3DES"), key_size in bits,
    recipients.
    """

    kind: LayerKind
    signers: tuple[SignerResult, ...] = ()
    certificates: tuple[x509.Certificate, ...] = ()
    crls: tuple[bytes, ...] = ()
    detached: bool = False
    cipher: str | None = None
    key_size: int | None = None
    recipients: tuple[RecipientResult, ...] = ()
    decrypted: bool = False


@dataclass(frozen=True)
class Unwrapped:
    """What unwrapping a message gave: the innermost entity and the layers, outermost first.

    opened: the entity right after the innermost layer that was decrypted (None when none
    was): what a gateway delivers, so that signatures inside stay verifiable by the reader.
    """

    content: bytes
    layers: tuple[Layer, ...] = field(default_factory=tuple)
    error: str | None = None
    opened: bytes | None = None


def result_headers(layers: Sequence[Layer], prefix: str = "X-Smimegate-Info-") -> list[tuple[str, str]]:
    """Map layers one-to-one onto the CONTRACT.md headers, in order."""
    out: list[tuple[str, str]] = []
    for level, layer in enumerate(layers):
        if layer.kind == "signed":
            for index, signer in enumerate(layer.signers):
                suffix = f"{index}-{level}"
                out.append((f"{prefix}Signer-ID-{suffix}", signer.signer_id.header_value()))
                out.append((f"{prefix}Signer-Verified-{suffix}", str(signer.valid)))
                out.append((f"{prefix}Signer-Trusted-{suffix}", str(signer.trusted)))
                if signer.countersigns is not None:
                    out.append((f"{prefix}Signer-Countersigns-{suffix}",
                                str(signer.countersigns)))
                if not signer.trusted:
                    info = signer.trust_info or "not trusted"
                    if not signer.valid and signer.reason:
                        info = f"{info}; signature: {signer.reason}"
                    out.append((f"{prefix}Signer-Trusted-Info-{suffix}", info))
        else:
            out.append(
                (
                    f"{prefix}Encryption-Algorithm-{level}",
                    f"{layer.cipher}, Key size: {layer.key_size}",
                )
            )
            for index, recipient in enumerate(layer.recipients):
                out.append(
                    (f"{prefix}Encryption-Recipient-{index}-{level}", recipient.header_value())
                )
    return out
