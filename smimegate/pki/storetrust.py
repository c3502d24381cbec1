"""Trust of stored certificates, for listings (``cert list``, ``cert show``, ``root list``).

The trust anchors come from smimegate.pki.anchors.load_anchors: the store's trusted roots, its
other CA certificates to complete a path, and its CRLs. A certificate counts as trusted
when it is itself a trusted root, or when it is an end-entity certificate that smimegate.pki.trust
accepts for signing or for encryption now, or when it is a CA certificate with a valid path to a
trusted root (RFC 5280 6.1; key usage for mail does not apply to a CA).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from smimegate.pki import trust
from smimegate.store import CertificateRecord


@dataclass(frozen=True)
class Verdict:
    """trusted, and why not (None when trusted)."""

    trusted: bool
    reason: str | None


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
        reason = trust.path_problem(cert, anchors, moment)
        return Verdict(reason is None, reason)
    signing = trust.check(cert, anchors, purpose="sign", at=moment)
    if signing.trusted:
        return Verdict(True, None)
    encryption = trust.check(cert, anchors, purpose="encrypt", at=moment)
    if encryption.trusted:
        return Verdict(True, None)
    return Verdict(False, signing.reason or encryption.reason)
