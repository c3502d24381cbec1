"""Revocation status of each link of a validated path (RFC 5280 6.3), from the CRL index.

Why we decide it ourselves instead of handing every CRL to pyhanko-certvalidator (issue 10):
pyhanko 0.33 loops over every CRL it is given for every certificate and re-parses them, its
"hard-fail" skips certificates without a distribution point, and since 0.28 it can accept a CRL
whose signature it never checked (PKITS 4.4.4, 4.4.21 came out valid). So for each certificate
of the path below the root:

1. The CRLs of its issuer come from the index (name key), and count only when the path's issuer
   certificate signed them and may sign CRLs (RFC 5280 6.3.3 (f), 4.2.1.3 cRLSign); each
   signature is verified once per process (SignatureMemo).
2. Listed in one of them (a set lookup) with a revocation date not after the moment: revoked.
   A listing wins also on a stale CRL (a revocation is not undone by the CRL growing old);
   removeFromCRL entries (delta CRLs, 5.3.1) are not revocations.
3. A current complete CRL whose scope covers the certificate (no issuingDistributionPoint, or
   only onlyContainsUserCerts / onlyContainsCACerts, 5.2.5): good.
4. Otherwise, when the issuer publishes CRLs we cannot decide alone (partitions by distribution
   point or reasons, delta CRLs, indirect CRLs named by the certificate's cRLIssuer, CRLs signed
   by another key of the issuer's name as in key rollover): only those CRLs, each of whose
   signatures verified with a CA certificate of its issuer's name, go to pyhanko's RFC 5280
   6.3 processing for this one certificate (verify_crl).
5. Still unknown: the CRL fetcher (download from the certificate's distribution points) and then
   the OCSP lookup (RFC 6960) are asked, when given.

The caller turns unknown links into a decision by revocation_mode (trust.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from asn1crypto import crl as acrl
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import (
    CRLValidationError,
    PathError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.revinfo.validate_crl import verify_crl

from smimegate.pki.crlindex import CrlIndex, IndexedCrl, SignatureMemo, name_key, parse_crl
from smimegate.pki.paths import CaIndex, Node
from smimegate.smime.cms import parsed_der
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS, X509_ERRORS

__all__ = [
    "CrlFetcher", "LinkStatus", "OcspAnswer", "OcspLookup", "link_status", "signed_by_named",
]

CrlFetcher = Callable[[x509.Certificate], Sequence[x509.CertificateRevocationList]]
"""Returns CRLs for a certificate (e.g. downloaded from its distribution points), or ()."""


class OcspAnswer(Protocol):
    """What an OCSP lookup returns (smimegate.pki.ocsp.OcspResult has this shape)."""

    @property
    def status(self) -> str: ...  # good | revoked | unknown | unavailable
    @property
    def reason(self) -> str: ...
    @property
    def named(self) -> bool: ...  # the certificate names a responder
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def revocation_reason(self) -> str | None: ...


OcspLookup = Callable[[x509.Certificate, x509.Certificate], OcspAnswer]
"""Asked with (certificate, its issuer) when no current CRL answers for a link."""


@dataclass(frozen=True)
class LinkStatus:
    """One certificate's revocation status. reason: for revoked the text of Trusted-Info
    ("revoked (keyCompromise) 2024-05-01"), for unknown why (no CRL, stale CRL ...).
    declared: the certificate names a CRL distribution point or an OCSP responder (hard-fail
    distrusts an unknown status only then)."""

    status: Literal["good", "revoked", "unknown"]
    reason: str | None = None
    declared: bool = False


def revoked_text(reason: str, when: datetime, end_entity: bool) -> str:
    what = "revoked" if end_entity else "CA certificate revoked"
    return f"{what} ({reason}) {when:%Y-%m-%d}"


def _declared(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        return True
    except x509.ExtensionNotFound:
        pass
    except X509_ERRORS:
        return True
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except EXTENSION_LOOKUP_ERRORS:
        return False
    return any(d.access_method == AuthorityInformationAccessOID.OCSP for d in aia)


def _crl_issuer_names(cert: x509.Certificate) -> list[str]:
    """Name keys of the cRLIssuer fields of cert's distribution points (indirect CRLs)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except EXTENSION_LOOKUP_ERRORS:
        return []
    keys: list[str] = []
    for point in points:
        for name in point.crl_issuer or ():
            if isinstance(name, x509.DirectoryName):
                keys.append(name_key(name.value))
    return keys


def _signed(crl: IndexedCrl, signer: Node, memo: SignatureMemo) -> bool:
    if not signer.crl_sign:
        return False
    if (crl.authority_key_id is not None and signer.ski is not None
            and crl.authority_key_id != signer.ski):
        return False
    return memo.crl_signed_by(crl, signer.cert, signer.fingerprint)


def signed_by_named(crl: IndexedCrl, named: Sequence[Node],
                    memo: SignatureMemo) -> bool | None:
    """Whether one of ``named`` (CA certificates whose subject is crl's issuer) signed crl
    (cRLSign, key identifier, signature); None when there are none."""
    if not named:
        return None
    return any(_signed(crl, node, memo) for node in named)


def _has_signer(crl: IndexedCrl, cas: CaIndex, extra: Sequence[Node],
                memo: SignatureMemo) -> bool:
    """Whether some CA certificate of crl's issuer name signed it (the pyhanko 0.33 work-around:
    a CRL we could not verify never reaches its CRL processing)."""
    candidates = (*cas.named(crl.issuer_key),
                  *(n for n in extra if n.subject_key == crl.issuer_key))
    return bool(signed_by_named(crl, candidates, memo))


def _released(node: Node, signed: Sequence[IndexedCrl],
              moment: datetime) -> list[tuple[int, int]]:
    """(base CRL number, own CRL number) of each current delta CRL that lists node with
    removeFromCRL: RFC 5280 5.2.4 and 6.3.3 (i), the hold recorded by a complete CRL numbered
    from the base up to before the delta is released (PKITS 4.15.5)."""
    out: list[tuple[int, int]] = []
    serial = node.cert.serial_number
    for crl in signed:
        if (crl.delta_base is None or crl.number is None or not crl.is_current(moment)
                or not crl.covers(node.is_ca) or not crl.lists(serial, node.issuer_key)):
            continue
        if crl.listing(serial).reason == "removeFromCRL":
            out.append((crl.delta_base, crl.number))
    return out


def _direct(node: Node, issuer: Node, crls: Sequence[IndexedCrl], memo: SignatureMemo,
            moment: datetime, end_entity: bool) -> tuple[LinkStatus | None, str]:
    """Steps 1-3 of the module docstring: a decided status, or None and why not."""
    serial = node.cert.serial_number
    signed = [c for c in crls if c.unusable is None and _signed(c, issuer, memo)]
    released = _released(node, signed, moment)
    for crl in signed:
        if not crl.covers(node.is_ca) or not crl.lists(serial, node.issuer_key):
            continue
        listing = crl.listing(serial)
        if listing.revoked_at > moment or listing.reason == "removeFromCRL":
            continue
        if (listing.reason == "certificateHold" and crl.delta_base is None
                and crl.number is not None
                and any(base <= crl.number < number for base, number in released)):
            continue
        return LinkStatus("revoked", revoked_text(listing.reason, listing.revoked_at,
                                                  end_entity)), ""
    for crl in signed:
        if crl.simple and crl.covers(node.is_ca) and crl.is_current(moment):
            return LinkStatus("good"), ""
    if any(c.simple and c.covers(node.is_ca) for c in signed):
        return None, "CRL past its next update"
    unusable = [c.unusable for c in crls if c.unusable is not None]
    if unusable:
        return None, f"CRL not usable: {unusable[0]}"
    if crls:
        return None, "no usable CRL"
    return None, "no CRL"


def _pyhanko_crls(node: Node, issuer: Node, index: CrlIndex, cas: CaIndex,
                  extra: Sequence[Node], memo: SignatureMemo) -> list[IndexedCrl]:
    """The CRLs worth pyhanko's full processing for node (step 4), or [] when there are none
    that the simple rules left undecided. Includes the CRLs of every name above the CRL
    signers up to the root, whose own status pyhanko checks too under its REQUIRE policy (a
    CRL signer two levels below the root: PKITS 4.6.17 and 4.12.9, where the CRL comes from
    the key the CA had before its self-issued rollover certificate)."""
    names = [node.issuer_key, *_crl_issuer_names(node.cert)]
    own = [c for key in names for c in index.for_issuer(key)]
    hard = [c for c in own if c.unusable is None and (
        not c.simple or c.issuer_key != node.issuer_key or not _signed(c, issuer, memo))]
    hard = [c for c in hard if _has_signer(c, cas, extra, memo)]
    if not hard:
        return []
    chosen: dict[str, IndexedCrl] = {c.fingerprint: c for c in own
                                     if c.unusable is None and _has_signer(c, cas, extra, memo)}
    seen: set[str] = set()
    pending = [crl.issuer_key for crl in hard]
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        for signer in (*cas.named(key), *(n for n in extra if n.subject_key == key)):
            pending.append(signer.issuer_key)
            for upper in index.for_issuer(signer.issuer_key):
                if upper.unusable is None and _has_signer(upper, cas, extra, memo):
                    chosen.setdefault(upper.fingerprint, upper)
    return list(chosen.values())


async def _pyhanko_status(node: Node, path: ValidationPath, crls: Sequence[IndexedCrl],
                          cas: CaIndex, extra: Sequence[Node], chain: Sequence[Node],
                          moment: datetime, end_entity: bool) -> LinkStatus | None:
    signers = {n.fingerprint: n for c in crls for n in cas.named(c.issuer_key)}
    for n in (*chain, *extra):
        signers.setdefault(n.fingerprint, n)
    context = ValidationContext(
        trust_roots=[ax509.Certificate.load(chain[-1].der)],
        other_certs=[ax509.Certificate.load(n.der) for n in signers.values()],
        crls=[acrl.CertificateList.load(c.der) for c in crls],
        moment=moment,
        revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
    )
    # parsed_der, not dump(): asn1crypto re-encodes certificates of some lengths (cms.parsed_der).
    target = next((c for c in path.iter_certs(include_root=False)
                   if parsed_der(c) == node.der), None)
    if target is None:
        return None  # not a certificate of this path: nothing pyhanko could decide
    try:
        await verify_crl(target, path, context)
    except RevokedError as exc:
        reason = exc.reason.native or "unspecified"
        name = _PYHANKO_REASONS.get(reason, reason)
        return LinkStatus("revoked", revoked_text(name, exc.revocation_dt, end_entity))
    except (CRLValidationError, PathError, ValidationError):
        return None
    return LinkStatus("good")


_PYHANKO_REASONS = {
    "key_compromise": "keyCompromise", "ca_compromise": "cACompromise",
    "affiliation_changed": "affiliationChanged", "superseded": "superseded",
    "cessation_of_operation": "cessationOfOperation", "certificate_hold": "certificateHold",
    "remove_from_crl": "removeFromCRL", "privilege_withdrawn": "privilegeWithdrawn",
    "aa_compromise": "aACompromise", "unspecified": "unspecified",
}


def _fetched(node: Node, fetcher: CrlFetcher) -> list[IndexedCrl]:
    try:
        got = fetcher(node.cert)
    except OSError:
        return []  # a CRL that cannot be fetched leaves the status unknown
    out: list[IndexedCrl] = []
    for crl in got:
        try:
            out.append(parse_crl(crl, source="fetch"))
        except X509_ERRORS:
            continue
    return out


def _ocsp_status(node: Node, issuer: Node, lookup: OcspLookup,
                 end_entity: bool) -> tuple[LinkStatus | None, str]:
    answer = lookup(node.cert, issuer.cert)
    if answer.status == "good":
        return LinkStatus("good"), ""
    if answer.status == "revoked":
        return LinkStatus("revoked", revoked_text(
            answer.revocation_reason or "unspecified",
            answer.revoked_at or moment_unknown(), end_entity)), ""
    return None, f"OCSP: {answer.reason}"


def moment_unknown() -> datetime:
    """A revocation the responder gave no time for counts from the start of time."""
    return datetime.min.replace(tzinfo=UTC)


async def link_status(
    chain: Sequence[Node], position: int, path: ValidationPath, *, index: CrlIndex,
    cas: CaIndex, extra: Sequence[Node], memo: SignatureMemo, moment: datetime,
    fetcher: CrlFetcher | None = None, ocsp: OcspLookup | None = None,
) -> LinkStatus:
    """The revocation status of chain[position] (chain leaf first, root last; position below
    the root) as the module docstring says. Never raises for bad CRLs or answers."""
    node, issuer = chain[position], chain[position + 1]
    end_entity = position == 0
    declared = _declared(node.cert)
    crls = index.for_issuer(node.issuer_key)
    status, why = _direct(node, issuer, crls, memo, moment, end_entity)
    if status is not None:
        return status
    hard = _pyhanko_crls(node, issuer, index, cas, extra, memo)
    if hard:
        try:
            status = await _pyhanko_status(node, path, hard, cas, extra, chain, moment,
                                           end_entity)
        except ValueError:
            status = None  # asn1crypto could not read one of them: no decision from there
        if status is not None:
            return status
        why = "no CRL in scope"
    if fetcher is not None:
        fresh = _fetched(node, fetcher)
        if fresh:
            status, _ = _direct(node, issuer, fresh, memo, moment, end_entity)
            if status is not None:
                return status
    if ocsp is not None:
        status, said = _ocsp_status(node, issuer, ocsp, end_entity)
        if status is not None:
            return status
        why += f"; {said}"
    return LinkStatus("unknown", why, declared)
