"""Is a certificate good to verify a signature with, or to encrypt to? (issues 4 and 10)

This module adds what S/MIME needs on top of RFC 5280 path validation and turns every outcome
into a short reason for ``Signer-Trusted-Info``:

- paths are built from the CA index (smimegate.pki.paths: CA certificates by subject and key id,
  each signature checked once per process) and validated by pyhanko-certvalidator (RFC 5280
  6.1: validity, basic constraints, name constraints, policies, algorithms), one fixed path at a
  time, so the cost of a check does not grow with the store;
- key usage for the purpose (RFC 8550 4.4.2): digitalSignature or nonRepudiation to sign;
  keyEncipherment for RSA and keyAgreement for (EC)DH / X25519 / X448 keys to encrypt;
- extended key usage (RFC 8550 4.4.4): absent, emailProtection or anyExtendedKeyUsage;
- revocation of every certificate of the path below the root from the CRL index
  (smimegate.pki.revocation: CRLs parsed once per load, revoked serials in sets), then the CRL
  fetcher and the OCSP lookup when given. A CRL that lists a certificate always wins, also when
  stale. A link whose status stays unknown is decided by ``revocation_mode`` ([crl] in the
  configuration, CONTRACT.md): soft-fail trusts it (the result says revocation "unknown"),
  hard-fail distrusts it when the certificate names a CRL distribution point or an OCSP
  responder, require distrusts it always (PKITS's rule).

Nothing here does I/O: roots, intermediates and CRLs come in as values (TrustAnchors); CRL
download (``fetcher``) and OCSP (``TrustAnchors.ocsp``) are callables of the caller.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import hashlib
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, get_args

from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    mldsa,
    mlkem,
    rsa,
    x448,
    x25519,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, ObjectIdentifier
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.authority import CertTrustAnchor
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import NO_REVOCATION, CertRevTrustPolicy
from pyhanko_certvalidator.validate import async_validate_path

from smimegate.pki.addresses import address_match, certificate_addresses
from smimegate.pki.crlindex import CrlIndex, IndexedCrl, SignatureMemo, parse_crl
from smimegate.pki.paths import CaIndex, Node, candidate_paths, node_of
from smimegate.pki.revocation import (
    CrlFetcher,
    LinkStatus,
    OcspLookup,
    link_status,
    revoked_text,
)
from smimegate.smime import mlkem512
from smimegate.smime.cms import parsed_der
from smimegate.smime.results import Layer, SignerResult
from smimegate.x509errors import X509_ERRORS

__all__ = [
    "REVOCATION_MODES",
    "CrlFetcher",
    "OcspLookup",
    "Purpose",
    "Revocation",
    "RevocationMode",
    "TrustAnchors",
    "TrustResult",
    "address_match",
    "apply_trust",
    "Choice",
    "certificate_addresses",
    "check",
    "choose_encryption",
    "path_problem",
    "choose_encryption_certificate",
    "run_coroutine",
]

Purpose = Literal["sign", "encrypt"]
Revocation = Literal["good", "revoked", "unknown"]
RevocationMode = Literal["soft-fail", "hard-fail", "require"]
REVOCATION_MODES: tuple[str, ...] = get_args(RevocationMode)

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
    # RFC 9881 / RFC 9882: ML-DSA keys sign S/MIME messages.
    mldsa.MLDSA44PublicKey, mldsa.MLDSA65PublicKey, mldsa.MLDSA87PublicKey,
)
_PATH_PREFIX = "The path could not be validated because "


@dataclass(frozen=True)
class TrustAnchors:
    """What trust decisions are made against, as the store holds it.

    roots: trusted root certificates (trust anchors). intermediates: CA certificates that may
    complete a path but are not trusted by themselves. crls: the CRLs held, as cryptography
    objects or already parsed (smimegate.pki.crlindex.IndexedCrl, as the store loader passes
    them); kept parsed and indexed by issuer. revocation_mode: what an unknown revocation
    status means (module docstring). ocsp: asked for a link no current CRL answers for.
    memo: the process's memory of checked signatures (handed on from one load to the next).
    Built once per load (the indexes are made here); then read-only and shared by threads.
    Raises TypeError when a field holds something else than those types, ValueError for an
    unknown revocation_mode or a CRL that cannot be read.
    """

    roots: tuple[x509.Certificate, ...] = ()
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[IndexedCrl | x509.CertificateRevocationList, ...] = ()
    revocation_mode: RevocationMode = "soft-fail"
    ocsp: OcspLookup | None = field(default=None, compare=False)
    memo: SignatureMemo = field(default_factory=SignatureMemo, compare=False, repr=False)
    nodes: tuple[Node, ...] = field(default=(), compare=False, repr=False)
    """Already-made index entries of roots and intermediates (the loader's, to skip work)."""

    def __post_init__(self) -> None:
        fields: tuple[tuple[str, type | tuple[type, ...]], ...] = (
            ("roots", x509.Certificate),
            ("intermediates", x509.Certificate),
            ("crls", (x509.CertificateRevocationList, IndexedCrl)),
        )
        for name, kind in fields:
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise TypeError(f"TrustAnchors.{name} must be a tuple of {_kind_name(kind)}")
            items = tuple(value)
            for item in items:
                if not isinstance(item, kind):
                    raise TypeError(
                        f"TrustAnchors.{name} holds a {type(item).__name__}, "
                        f"not a {_kind_name(kind)}"
                    )
            # A list passed by a caller is frozen here so the value stays immutable.
            object.__setattr__(self, name, items)
        if self.revocation_mode not in REVOCATION_MODES:
            raise ValueError(f"revocation_mode must be one of {', '.join(REVOCATION_MODES)}, "
                             f"not {self.revocation_mode!r}")
        parsed = tuple(c if isinstance(c, IndexedCrl) else parse_crl(c) for c in self.crls)
        object.__setattr__(self, "crls", parsed)
        object.__setattr__(self, "_crl_index", CrlIndex(parsed))
        made = {n.fingerprint: n for n in self.nodes}
        nodes: list[Node] = []
        for cert, is_root in [*((c, True) for c in self.roots),
                              *((c, False) for c in self.intermediates)]:
            try:
                node = _reuse(made, cert, is_root)
            except ValueError:
                continue  # names no one can read: it completes no path
            nodes.append(node)
        object.__setattr__(self, "nodes", tuple(nodes))
        object.__setattr__(self, "_ca_index", CaIndex(nodes))
        updates = sorted(c.next_update.timestamp() for c in parsed if c.next_update is not None)
        object.__setattr__(self, "_next_updates", updates)

    @property
    def crl_index(self) -> CrlIndex:
        return self._crl_index  # type: ignore[attr-defined, no-any-return]

    @property
    def ca_index(self) -> CaIndex:
        return self._ca_index  # type: ignore[attr-defined, no-any-return]

    def next_crl_update(self, after: float) -> float | None:
        """The earliest nextUpdate (epoch seconds) of a held CRL later than ``after``: when a
        decision based on the CRLs may change by time alone (smimegate.pki.trustcache)."""
        updates: list[float] = self._next_updates  # type: ignore[attr-defined]
        at = bisect.bisect_right(updates, after)
        return updates[at] if at < len(updates) else None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _reuse(made: dict[str, Node], cert: x509.Certificate, is_root: bool) -> Node:
    if made:
        old = made.get(hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest())
        if old is not None and old.is_root == is_root:
            return old
    return node_of(cert, is_root=is_root)


def _signed_by(subject: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        subject.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True)
class TrustResult:
    """The outcome of check().

    trusted: the certificate may be used for the purpose at the time asked.
    reason: why not (short, for ``Signer-Trusted-Info``); None when trusted.
    path: when trusted, the certificates from the one checked up to and including the trusted
    root; empty otherwise.
    revocation: "revoked" when a CRL (or OCSP) says a certificate of the path is revoked;
    "good" when every certificate of the path below the root is known not to be; "unknown"
    otherwise (no current CRL for a link, or no path at all).
    """

    trusted: bool
    reason: str | None
    path: tuple[x509.Certificate, ...] = ()
    revocation: Revocation = "unknown"


def run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
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


def _extension_problem(cert: x509.Certificate) -> str | None:
    """Why cert's extensions cannot be used at all, or None (RFC 5280 4.2).

    Checked before path validation so that the reason stays short (see _UNDERSTOOD_CRITICAL).
    """
    try:
        extensions = list(cert.extensions)
    except X509_ERRORS:  # a duplicate one too (RFC 5280 4.2)
        return "unreadable certificate extensions"
    for ext in extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD_CRITICAL:
            return f"unsupported critical extension {ext.oid.dotted_string}"
    return None


def encryption_problem(cert: x509.Certificate) -> str | None:
    """Why cert cannot take a content-encryption key whatever trusts it (a critical extension
    we do not understand, its key type, key usage or EKU), or None. For certificates trusted
    without a path: a DANE-EE record (RFC 7671 5.1) vouches for the binding of key and
    address, not for a signing-only key being used to encrypt (RFC 8550 4.4.2)."""
    return _extension_problem(cert) or _usage_problem(cert, "encrypt")


def _usage_problem(cert: x509.Certificate, purpose: Purpose) -> str | None:
    """Why cert's key, key usage or EKU do not fit purpose, or None (RFC 8550 4.4)."""
    try:
        key = mlkem512.certificate_public_key(cert)
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
        elif isinstance(key, mlkem512.MLKEM512PublicKey | mlkem.MLKEM768PublicKey
                        | mlkem.MLKEM1024PublicKey):
            # RFC 9936 4: ML-KEM certificates assert keyEncipherment only (KEMRecipientInfo).
            allowed = key_usage is None or key_usage.key_encipherment
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
        return revoked_text(reason, exc.revocation_dt, exc.is_ee_cert)
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
        certs = [x509.load_der_x509_certificate(parsed_der(c))
                 for c in exc.current_path.iter_certs(include_root=True)]
        for issuer, subject in zip(certs, certs[1:], strict=False):
            if not _signed_by(subject, issuer):
                return "bad signature in chain"
    message = str(exc)
    if message.startswith(_PATH_PREFIX):
        message = message[len(_PATH_PREFIX):]
    return f"invalid certificate chain: {message.rstrip('.')[:120]}"


def _self_signed(node: Node, memo: SignatureMemo) -> bool:
    return node.self_issued and memo.cert_signed_by(node.cert, node.fingerprint, node.cert,
                                                    node.fingerprint)


def _pyhanko_path(chain: Sequence[Node]) -> ValidationPath:
    """Our chain (leaf first) as pyhanko's path (anchor, intermediates root side first, leaf).
    Fresh asn1crypto objects per check: they parse lazily and are not meant to be shared
    between the milter's threads."""
    certs = [ax509.Certificate.load(n.der) for n in reversed(chain)]
    return ValidationPath(CertTrustAnchor(certs[0]), certs[1:-1], certs[-1])


async def _validated_path(leaf: Node, anchors: TrustAnchors, extra: Sequence[Node],
                          moment: datetime) -> tuple[tuple[Node, ...], ValidationPath] | str:
    """The first candidate path that RFC 5280 6.1 accepts (revocation apart), or why none."""
    first_problem: str | None = None
    for chain in candidate_paths(leaf, anchors.ca_index, extra, moment, anchors.memo):
        if len(chain) == 1:
            return chain, ValidationPath(CertTrustAnchor(ax509.Certificate.load(leaf.der)),
                                         [], None)
        path = _pyhanko_path(chain)
        context = ValidationContext(
            trust_roots=[path.trust_anchor.authority.certificate],  # type: ignore[attr-defined]
            moment=moment,
            revinfo_policy=CertRevTrustPolicy(NO_REVOCATION),
        )
        try:
            await async_validate_path(context, path)
        except (PathError, ValidationError) as exc:
            first_problem = first_problem or _path_reason(exc)
            continue
        return chain, path
    if first_problem is not None:
        return first_problem
    if _self_signed(leaf, anchors.memo):
        return "self-signed, not a trusted root"
    return "no path to a trusted root"


def _unknown_text(status: LinkStatus, end_entity: bool) -> str:
    what = "revocation status unknown" if end_entity else "CA revocation status unknown"
    return f"{what}: {status.reason}" if status.reason else what


async def _validate(
    cert: x509.Certificate,
    anchors: TrustAnchors,
    purpose: Purpose,
    moment: datetime,
    extra_certs: Sequence[x509.Certificate],
    fetcher: CrlFetcher | None,
) -> TrustResult:
    problem = _extension_problem(cert)
    if problem is not None:
        return TrustResult(False, problem)
    leaf = node_of(cert)
    known = anchors.ca_index.fingerprints
    extra = []
    for other in extra_certs:
        try:
            node = node_of(other)
        except ValueError:
            continue
        if node.fingerprint not in known:
            extra.append(node)

    # 1. Path building and RFC 5280 6.1 validation, revocation apart (step 2).
    found = await _validated_path(leaf, anchors, extra, moment)
    if isinstance(found, str):
        return TrustResult(False, found)
    chain, path = found
    certs = tuple(n.cert for n in chain)

    # 2. Revocation of each certificate below the root (smimegate.pki.revocation).
    statuses: list[LinkStatus] = []
    for position in range(len(chain) - 1):
        status = await link_status(
            chain, position, path, index=anchors.crl_index, cas=anchors.ca_index, extra=extra,
            memo=anchors.memo, moment=moment, fetcher=fetcher, ocsp=anchors.ocsp)
        if status.status == "revoked":
            return TrustResult(False, status.reason, revocation="revoked")
        statuses.append(status)
    revocation: Revocation = "good" if all(s.status == "good" for s in statuses) else "unknown"

    # 3. An unknown status under hard-fail or require.
    for position, status in enumerate(statuses):
        if status.status != "unknown":
            continue
        if anchors.revocation_mode == "require" or (
                anchors.revocation_mode == "hard-fail" and status.declared):
            return TrustResult(False, _unknown_text(status, position == 0),
                               revocation="unknown")

    # 4. What the certificate may be used for.
    problem = _usage_problem(cert, purpose)
    if problem is not None:
        return TrustResult(False, problem, revocation=revocation)
    return TrustResult(True, None, certs, revocation)


def path_problem(cert: x509.Certificate, anchors: TrustAnchors,
                 at: datetime | None = None) -> str | None:
    """Why ``cert`` has no valid path to a root of ``anchors`` at ``at`` (RFC 5280 6.1,
    revocation and usage apart: what a CA certificate is asked in listings), or None.
    Never raises for a bad certificate; ValueError for a naive ``at``."""
    moment = _moment(at)
    if not anchors.roots:
        return "no path to a trusted root"
    try:
        found = run_coroutine(_validated_path(node_of(cert), anchors, (), moment))
    except ValueError:
        return "unreadable certificate in chain"
    return found if isinstance(found, str) else None


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
    validates at ``at`` (default: now), no certificate of it revoked, its revocation status
    known as far as ``anchors.revocation_mode`` asks, and key type, key usage, EKU and critical
    extensions fitting the purpose (see the module docstring). ``fetcher`` is asked for CRLs of
    each certificate of the path that no current CRL of ``anchors`` answers for; an OSError
    from it counts as no CRL.

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
        return run_coroutine(_validate(cert, anchors, purpose, moment, tuple(extra_certs),
                                       fetcher))
    except ValueError:
        # asn1crypto parses lazily: a certificate that cryptography loaded but asn1crypto cannot
        # read surfaces here, from deep inside path validation.
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
    choice = choose_encryption(certs, anchors, at, fetcher=fetcher)
    return choice.certificate, choice.skipped


@dataclass(frozen=True)
class Choice:
    """choose_encryption's answer: the chosen certificate and its TrustResult (None, None when
    none fits), and every other certificate with why it was skipped, newest first."""

    certificate: x509.Certificate | None
    result: TrustResult | None
    skipped: list[tuple[x509.Certificate, str]]


def choose_encryption(
    certs: Sequence[x509.Certificate],
    anchors: TrustAnchors,
    at: datetime | None = None,
    *,
    fetcher: CrlFetcher | None = None,
) -> Choice:
    """choose_encryption_certificate with the chosen certificate's TrustResult (its revocation
    status goes into the log line). Raises ValueError for a naive ``at``."""
    moment = _moment(at)
    unique = {c.public_bytes(Encoding.DER): c for c in certs}
    ordered = sorted(
        unique.values(),
        key=lambda c: (c.not_valid_before_utc, c.not_valid_after_utc),
        reverse=True,
    )
    chosen: x509.Certificate | None = None
    chosen_result: TrustResult | None = None
    skipped: list[tuple[x509.Certificate, str]] = []
    for cert in ordered:
        if chosen is not None:
            skipped.append((cert, "a newer certificate was chosen"))
            continue
        result = check(cert, anchors, purpose="encrypt", at=moment, fetcher=fetcher)
        if result.trusted:
            chosen, chosen_result = cert, result
        else:
            skipped.append((cert, result.reason or "not trusted"))
    return Choice(chosen, chosen_result, skipped)


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
    return dataclasses.replace(signer, trusted=result.trusted, trust_info=result.reason,
                               revocation=result.revocation)


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
