"""Trust of stored certificates, for listings (``cert list``, ``cert show``, ``root list``).

The trust anchors come from smimegate.pki.anchors.load_anchors: the store's trusted roots, its
other CA certificates to complete a path, and its CRLs. A certificate counts as trusted
when it is itself a trusted root, or when it is an end-entity certificate that smimegate.pki.trust
accepts for signing or for encryption now, or when it is a CA certificate with a valid path to a
trusted root (RFC 5280 6.1; key usage for mail does not apply to a CA).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError
from pyhanko_certvalidator.policy_decl import NO_REVOCATION, CertRevTrustPolicy

from smimegate.pki import trust
from smimegate.store import CertificateRecord


@dataclass(frozen=True)
class Verdict:
    """trusted, and why not (None when trusted)."""

    trusted: bool
    reason: str | None


def _ca_path_ok(cert: x509.Certificate, anchors: trust.TrustAnchors, at: datetime) -> str | None:
    """None when cert has a valid path to a root, else a short reason."""
    if not anchors.roots:
        return "no path to a trusted root"
    context = ValidationContext(
        trust_roots=[ax509.Certificate.load(c.public_bytes(Encoding.DER)) for c in anchors.roots],
        other_certs=[ax509.Certificate.load(c.public_bytes(Encoding.DER))
                     for c in anchors.intermediates],
        moment=at,
        revinfo_policy=CertRevTrustPolicy(NO_REVOCATION),
    )
    validator = CertificateValidator(ax509.Certificate.load(cert.public_bytes(Encoding.DER)),
                                     validation_context=context)
    try:
        asyncio.run(validator.async_validate_path())
    except PathBuildingError:
        return "no path to a trusted root"
    except (PathValidationError, ValidationError) as exc:
        return f"invalid certificate chain: {str(exc).rstrip('.')[:120]}"
    except ValueError:
        return "unreadable certificate in chain"
    return None


def verdict(
    record: CertificateRecord, anchors: trust.TrustAnchors, at: datetime | None = None
) -> Verdict:
    """Is the stored certificate trusted at ``at`` (default now)? Never raises for a bad
    certificate: that is an untrusted verdict.
    """
    if record.trusted_root:
        return Verdict(True, None)
    if record.blocked:
        return Verdict(False, "blocked")
    moment = at or datetime.now(UTC)
    cert = record.certificate()
    if record.is_ca:
        reason = _ca_path_ok(cert, anchors, moment)
        return Verdict(reason is None, reason)
    signing = trust.check(cert, anchors, purpose="sign", at=moment)
    if signing.trusted:
        return Verdict(True, None)
    encryption = trust.check(cert, anchors, purpose="encrypt", at=moment)
    if encryption.trusted:
        return Verdict(True, None)
    return Verdict(False, signing.reason or encryption.reason)
