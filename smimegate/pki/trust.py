"""Is a certificate good to verify a signature with, or to encrypt to? (issue 4, items 1 and 2)

Path building and RFC 5280 6.1 path validation are pyhanko-certvalidator's; this module adds what
S/MIME needs on top and turns every outcome into a short reason for ``Signer-Trusted-Info``:

- key usage for the purpose (RFC 8550 4.4.2): digitalSignature or nonRepudiation to sign;
  keyEncipherment for RSA and keyAgreement for (EC)DH / X25519 / X448 keys to encrypt;
- extended key usage (RFC 8550 4.4.4): absent, emailProtection or anyExtendedKeyUsage;
- revocation from CRLs the caller holds. Without a CRL for a certificate its status is
  "unknown" and it stays trusted (soft-fail). A CRL from the right issuer that lists the
  certificate always wins, also when it is stale and also when the certificate names no
  distribution point: pyhanko's own soft-fail mode looks at neither. A stale CRL (past its
  nextUpdate) that does not list the certificate proves nothing about today: the status is
  "unknown" and the certificate stays trusted, exactly as with no CRL at all.

Nothing here does I/O: roots, intermediates and CRLs come in as values (TrustAnchors), and CRL
download is the caller's optional ``fetcher``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from asn1crypto import crl as acrl
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, ObjectIdentifier
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    NO_REVOCATION,
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
)
from pyhanko_certvalidator.validate import async_validate_path

from smimegate.pki.addresses import address_match, certificate_addresses
from smimegate.smime.results import Layer, SignerResult

__all__ = [
    "CrlFetcher",
    "Purpose",
    "Revocation",
    "TrustAnchors",
    "TrustResult",
    "address_match",
    "apply_trust",
    "certificate_addresses",
    "check",
    "choose_encryption_certificate",
]

Purpose = Literal["sign", "encrypt"]
Revocation = Literal["good", "revoked", "unknown"]
CrlFetcher = Callable[[x509.Certificate], Sequence[x509.CertificateRevocationList]]
"""Returns CRLs for a certificate (e.g. downloaded from its distribution points), or ()."""

_T = TypeVar("_T")

# Critical extensions a certificate may carry (RFC 5280 4.2: refuse one you do not understand).
# The same list as pyhanko's validate.SUPPORTED_EXTENSIONS, which refuses the others with a long
# message; the end-entity is checked against it first so that its reason stays short.
_UNDERSTOOD_CRITICAL = frozenset(
    {
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.FRESHEST_CRL,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.OCSP_NO_CHECK,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.INHIBIT_ANY_POLICY,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ObjectIdentifier("1.3.6.1.5.5.7.1.3"),  # qcStatements
    }
)
_EMAIL_EKUS = frozenset(
    {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)
_SIGNING_KEYS = (
    rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey,
    dsa.DSAPublicKey,
)
_PATH_PREFIX = "The path could not be validated because "


def _der_cert(cert: x509.Certificate) -> ax509.Certificate:
    return ax509.Certificate.load(cert.public_bytes(Encoding.DER))


@dataclass(frozen=True)
class TrustAnchors:
    """What trust decisions are made against, as the store holds it.

    roots: trusted root certificates (trust anchors). intermediates: CA certificates that may
    complete a path but are not trusted by themselves. crls: every CRL held; which one applies
    to which certificate is worked out per check (issuer name and signature).
    Raises TypeError when a field holds something else than those types.
    """

    roots: tuple[x509.Certificate, ...] = ()
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()

    def __post_init__(self) -> None:
        fields: tuple[tuple[str, type], ...] = (
            ("roots", x509.Certificate),
            ("intermediates", x509.Certificate),
            ("crls", x509.CertificateRevocationList),
        )
        for name, kind in fields:
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise TypeError(f"TrustAnchors.{name} must be a tuple of {kind.__name__}")
            items = tuple(value)
            for item in items:
                if not isinstance(item, kind):
                    raise TypeError(
                        f"TrustAnchors.{name} holds a {type(item).__name__}, "
                        f"not a {kind.__name__}"
                    )
            # A list passed by a caller is frozen here so the value stays immutable.
            object.__setattr__(self, name, items)


@dataclass(frozen=True)
class TrustResult:
    """The outcome of check().

    trusted: the certificate may be used for the purpose at the time asked.
    reason: why not (short, for ``Signer-Trusted-Info``); None when trusted.
    path: when trusted, the certificates from the one checked up to and including the trusted
    root; empty otherwise.
    revocation: "revoked" when a CRL lists a certificate of the path; "good" when a current CRL
    covers every certificate of the path below the root and lists none of them; "unknown"
    otherwise (no CRL, a stale one, or no path at all).
    """

    trusted: bool
    reason: str | None
    path: tuple[x509.Certificate, ...] = ()
    revocation: Revocation = "unknown"


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run one of pyhanko's coroutines to completion from synchronous code.

    pyhanko-certvalidator 0.33 only has async validators. With fetching off they never wait on
    I/O, so a private event loop is cheap. Inside a running loop (an async caller) asyncio.run
    would refuse, so that case gets a private thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _moment(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.utcoffset() is None:
        raise ValueError("at must be timezone-aware (e.g. datetime.now(UTC))")
    return at


def _signed_by(subject: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        subject.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        key = issuer.public_key()
        # Only keys that can sign can have signed a CRL (an X25519 or ML-KEM key cannot).
        if not isinstance(key, _SIGNING_KEYS):
            return False
        return crl.is_signature_valid(key)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


def _crls_from(
    cert: x509.Certificate, issuer: x509.Certificate, crls: Iterable[x509.CertificateRevocationList]
) -> list[x509.CertificateRevocationList]:
    """The CRLs that speak for cert: its issuer's name, signed by its key (RFC 5280 6.3.3)."""
    return [c for c in crls if c.issuer == cert.issuer and _crl_signed_by(c, issuer)]


def _is_current(crl: x509.CertificateRevocationList, moment: datetime) -> bool:
    next_update = crl.next_update_utc
    return crl.last_update_utc <= moment and (next_update is None or moment <= next_update)


def _revocation_reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except (x509.ExtensionNotFound, ValueError):
        # RFC 5280 5.3.1: an absent reasonCode means unspecified.
        return x509.ReasonFlags.unspecified


def _revoked_text(reason: str, when: datetime, end_entity: bool) -> str:
    what = "revoked" if end_entity else "CA certificate revoked"
    return f"{what} ({reason}) {when:%Y-%m-%d}"


def _listed_revoked(
    chain: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    moment: datetime,
) -> str | None:
    """Why a certificate of chain (leaf first, root last) is revoked by one of crls, or None.

    A listing counts whether the CRL is current or stale: a revocation is not undone by the CRL
    growing old (certificateHold included; RFC 5280 5.3.1 removeFromCRL only appears in delta
    CRLs and is ignored). A revocation dated after ``moment`` does not count, so a signature
    checked for an earlier time stays good. The root is a trust anchor and is not checked
    (RFC 5280 6.1: the anchor is an input of the algorithm, not part of the path).
    """
    for index, cert in enumerate(chain[:-1]):
        for crl in _crls_from(cert, chain[index + 1], crls):
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is None or entry.revocation_date_utc > moment:
                continue
            reason = _revocation_reason(entry)
            if reason is x509.ReasonFlags.remove_from_crl:
                continue
            return _revoked_text(reason.value, entry.revocation_date_utc, index == 0)
    return None


def _extension_problem(cert: x509.Certificate) -> str | None:
    """Why cert's extensions cannot be used at all, or None (RFC 5280 4.2).

    Checked before path validation so that the reason stays short (see _UNDERSTOOD_CRITICAL).
    """
    try:
        extensions = list(cert.extensions)
    except ValueError:
        return "unreadable certificate extensions"
    for ext in extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD_CRITICAL:
            return f"unsupported critical extension {ext.oid.dotted_string}"
    return None


def _usage_problem(cert: x509.Certificate, purpose: Purpose) -> str | None:
    """Why cert's key, key usage or EKU do not fit purpose, or None (RFC 8550 4.4)."""
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return "unsupported public key algorithm"
    by_oid = {ext.oid: ext.value for ext in cert.extensions}
    key_usage = by_oid.get(ExtensionOID.KEY_USAGE)
    if purpose == "encrypt":
        # RFC 8550 4.4.2 and RFC 5480 3 / RFC 8410 5: RSA keys transport the CEK
        # (keyEncipherment), Diffie-Hellman style keys agree on it (keyAgreement); NSS checks
        # the same pair per key type (KU_KEY_AGREEMENT_OR_ENCIPHERMENT).
        if isinstance(key, rsa.RSAPublicKey):
            allowed = key_usage is None or key_usage.key_encipherment
        elif isinstance(key, ec.EllipticCurvePublicKey | x25519.X25519PublicKey
                        | x448.X448PublicKey):
            allowed = key_usage is None or key_usage.key_agreement
        else:
            return "key type cannot encrypt"
    else:
        if not isinstance(key, _SIGNING_KEYS):
            return "key type cannot sign"
        # RFC 8550 4.4.2: either bit allows S/MIME signatures.
        allowed = key_usage is None or key_usage.digital_signature or key_usage.content_commitment
    if not allowed:
        return "wrong key usage"
    eku = by_oid.get(ExtensionOID.EXTENDED_KEY_USAGE)
    # RFC 8550 4.4.4: with an EKU present, emailProtection (or anyExtendedKeyUsage) must be in it.
    if eku is not None and not _EMAIL_EKUS.intersection(eku):
        return "no emailProtection EKU"
    return None


def _chain_of(
    path: ValidationPath, known: dict[bytes, x509.Certificate]
) -> tuple[x509.Certificate, ...]:
    """pyhanko's path (root first) as our certificates, leaf first."""
    out: list[x509.Certificate] = []
    for der_cert in path.iter_certs(include_root=True):
        der = der_cert.dump()
        out.append(known.get(der) or x509.load_der_x509_certificate(der))
    out.reverse()
    return tuple(out)


def _path_reason(exc: Exception) -> str:
    """A short reason for a path that could not be built or did not validate."""
    if isinstance(exc, ExpiredError):
        return "expired" if exc.is_ee_cert else "CA certificate expired"
    if isinstance(exc, NotYetValidError):
        return "not yet valid" if exc.is_ee_cert else "CA certificate not yet valid"
    if isinstance(exc, RevokedError):
        reason = exc.reason.native or "unspecified"
        try:
            reason = x509.ReasonFlags[reason].value
        except KeyError:
            pass  # not one of RFC 5280's names: show pyhanko's
        return _revoked_text(reason, exc.revocation_dt, exc.is_ee_cert)
    if isinstance(exc, DisallowedAlgorithmError):
        return "weak signature algorithm in chain"
    if isinstance(exc, PathBuildingError):
        return "no path to a trusted root"
    if isinstance(exc, InvalidCertificateError):
        # find_valid_path's answer for a self-signed certificate that is not a root.
        return "self-signed, not a trusted root"
    if isinstance(exc, PathValidationError):
        # pyhanko words a bad signature in free text; verifying the links ourselves tells it
        # apart from the other RFC 5280 6.1 failures reliably.
        certs = [x509.load_der_x509_certificate(c.dump())
                 for c in exc.current_path.iter_certs(include_root=True)]
        for issuer, subject in zip(certs, certs[1:], strict=False):
            if not _signed_by(subject, issuer):
                return "bad signature in chain"
    message = str(exc)
    if message.startswith(_PATH_PREFIX):
        message = message[len(_PATH_PREFIX):]
    return f"invalid certificate chain: {message.rstrip('.')[:120]}"


async def _validate(
    cert: x509.Certificate,
    anchors: TrustAnchors,
    purpose: Purpose,
    moment: datetime,
    extra_certs: Sequence[x509.Certificate],
    fetcher: CrlFetcher | None,
) -> TrustResult:
    # Fresh asn1crypto objects per check: they parse lazily and are not meant to be shared
    # between the milter's threads.
    roots = [_der_cert(c) for c in anchors.roots]
    others = [_der_cert(c) for c in (*anchors.intermediates, *extra_certs)]
    known = {c.public_bytes(Encoding.DER): c
             for c in (*anchors.roots, *anchors.intermediates, *extra_certs, cert)}

    problem = _extension_problem(cert)
    if problem is not None:
        return TrustResult(False, problem)

    # 1. Path building and RFC 5280 6.1 validation, revocation left out: pyhanko's soft-fail
    # mode would skip CRLs of certificates without a distribution point (step 2 does it).
    context = ValidationContext(
        trust_roots=roots,
        other_certs=others,
        moment=moment,
        revinfo_policy=CertRevTrustPolicy(NO_REVOCATION),
    )
    try:
        path = await CertificateValidator(
            _der_cert(cert), validation_context=context
        ).async_validate_path()
    except (PathError, ValidationError) as exc:
        return TrustResult(False, _path_reason(exc))
    chain = _chain_of(path, known)

    # 2. Revocation: a listing in any CRL of the right issuer wins (see _listed_revoked).
    crls = list(anchors.crls)
    if fetcher is not None:
        for index, link in enumerate(chain[:-1]):
            held = _crls_from(link, chain[index + 1], crls)
            if not any(_is_current(c, moment) for c in held):
                try:
                    crls.extend(fetcher(link))
                except OSError:
                    pass  # soft-fail: a CRL that cannot be fetched leaves the status unknown
    revoked = _listed_revoked(chain, crls, moment)
    if revoked is not None:
        return TrustResult(False, revoked, revocation="revoked")

    # 3. Is the status known for every link? pyhanko's "require" policy answers that with its
    # full CRL processing (scope, freshness, indirect CRLs); only a missing or stale CRL makes
    # it fail with InsufficientRevinfoError, which under soft-fail means "unknown", not "bad".
    revocation: Revocation = "unknown"
    if crls:
        strict = ValidationContext(
            trust_roots=roots,
            other_certs=others,
            moment=moment,
            crls=[acrl.CertificateList.load(c.public_bytes(Encoding.DER)) for c in crls],
            revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
        )
        try:
            await async_validate_path(strict, path)
            revocation = "good"
        except RevokedError as exc:
            return TrustResult(False, _path_reason(exc), revocation="revoked")
        except (InsufficientRevinfoError, PathError, ValidationError):
            revocation = "unknown"

    # 4. What the certificate may be used for.
    problem = _usage_problem(cert, purpose)
    if problem is not None:
        return TrustResult(False, problem, revocation=revocation)
    return TrustResult(True, None, chain, revocation)


def check(
    cert: x509.Certificate,
    anchors: TrustAnchors,
    *,
    purpose: Purpose,
    at: datetime | None = None,
    extra_certs: Sequence[x509.Certificate] = (),
    fetcher: CrlFetcher | None = None,
) -> TrustResult:
    """Decide whether ``cert`` may be used to ``purpose`` ("sign" or "encrypt") at time ``at``.

    Trusted means: a path from cert to one of ``anchors.roots`` (intermediates from
    ``anchors.intermediates`` and ``extra_certs``, e.g. the certificates of a message) that
    validates at ``at`` (default: now), no certificate of it listed in a CRL, and key type, key
    usage, EKU and critical extensions fitting the purpose (see the module docstring).
    ``fetcher`` is asked for CRLs of each certificate of the path that has no current CRL among
    ``anchors.crls``; an OSError from it counts as no CRL.

    Returns a TrustResult; untrusted certificates, broken chains and unreadable certificates
    are results, not exceptions. Raises ValueError for a naive ``at`` or an unknown purpose.
    """
    if purpose not in ("sign", "encrypt"):
        raise ValueError(f"purpose must be 'sign' or 'encrypt', not {purpose!r}")
    moment = _moment(at)
    if not anchors.roots:
        # Never let pyhanko fall back to a system trust list.
        return TrustResult(False, "no path to a trusted root")
    try:
        return _run(_validate(cert, anchors, purpose, moment, tuple(extra_certs), fetcher))
    except ValueError:
        # asn1crypto parses lazily: a certificate that cryptography loaded but asn1crypto cannot
        # read surfaces here, from deep inside path building.
        return TrustResult(False, "unreadable certificate in chain")


def choose_encryption_certificate(
    certs: Sequence[x509.Certificate],
    anchors: TrustAnchors,
    at: datetime | None = None,
    *,
    fetcher: CrlFetcher | None = None,
) -> tuple[x509.Certificate | None, list[tuple[x509.Certificate, str]]]:
    """Pick the certificate to encrypt to among one recipient's ``certs`` (issue 4, item 2).

    The newest (latest notBefore; then latest notAfter) certificate that check() trusts for
    "encrypt" at ``at`` is chosen. Returns (chosen or None, skipped): skipped lists every other
    certificate with why, newest first; those older than the chosen one are not checked and
    say so. Duplicates (same DER) count once. Raises ValueError for a naive ``at``.
    """
    moment = _moment(at)
    unique = {c.public_bytes(Encoding.DER): c for c in certs}
    ordered = sorted(
        unique.values(),
        key=lambda c: (c.not_valid_before_utc, c.not_valid_after_utc),
        reverse=True,
    )
    chosen: x509.Certificate | None = None
    skipped: list[tuple[x509.Certificate, str]] = []
    for cert in ordered:
        if chosen is not None:
            skipped.append((cert, "a newer certificate was chosen"))
            continue
        result = check(cert, anchors, purpose="encrypt", at=moment, fetcher=fetcher)
        if result.trusted:
            chosen = cert
        else:
            skipped.append((cert, result.reason or "not trusted"))
    return chosen, skipped


def _signer_trust(
    signer: SignerResult,
    anchors: TrustAnchors,
    moment: datetime,
    extra_certs: Sequence[x509.Certificate],
    fetcher: CrlFetcher | None,
) -> SignerResult:
    if not signer.valid:
        # Trusting the certificate of a signature that does not verify would say nothing about
        # the message; result_headers adds the signature failure itself after this text.
        return dataclasses.replace(signer, trusted=False, trust_info="signature not valid")
    if signer.certificate is None:
        return dataclasses.replace(signer, trusted=False, trust_info="signer certificate missing")
    result = check(signer.certificate, anchors, purpose="sign", at=moment,
                   extra_certs=extra_certs, fetcher=fetcher)
    return dataclasses.replace(signer, trusted=result.trusted, trust_info=result.reason)


def apply_trust(
    layer: Layer,
    anchors: TrustAnchors,
    at: datetime | None = None,
    *,
    fetcher: CrlFetcher | None = None,
) -> Layer:
    """Fill ``trusted`` / ``trust_info`` of every signer of a signed ``layer``.

    Each signer's certificate is checked for "sign" at ``at`` (default now: the time of
    receipt, not the signingTime the sender claims), with the layer's own certificates as
    intermediates. Signers whose signature is not valid stay untrusted with trust_info
    "signature not valid". Other layers come back unchanged. Raises ValueError for a naive ``at``.
    """
    if layer.kind != "signed":
        return layer
    moment = _moment(at)
    signers = tuple(
        _signer_trust(s, anchors, moment, layer.certificates, fetcher) for s in layer.signers
    )
    return dataclasses.replace(layer, signers=signers)
