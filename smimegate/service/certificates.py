"""Certificates and their keys: list with trust, show with the issuer chain, import, issue,
export, revoke; what ``smimegate cert``, the Certificates tab and /api/v1/certificates do.

Each change is one transaction with its audit-log row (audit.atomic); an export of a private
key (PKCS#12) is recorded before the bytes are handed out, so no key leaves unrecorded.
Delivery of an issued PKCS#12 (mail, password SMS) happens after the certificate is committed:
no transaction is held open over the network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.pki.pkcs12 import DEFAULT_PROFILE, PROFILES, make_pkcs12
from smimegate.service import audit
from smimegate.service.actor import Actor
from smimegate.service.errors import Forbidden, InvalidInput, Missing, OperationFailed
from smimegate.store import CertificateRecord, NotFound, Store
from smimegate.store.certinfo import cert_info

if TYPE_CHECKING:
    from smimegate.config import Config
    from smimegate.delivery.pfx import DeliveryReport
    from smimegate.pki.authority import Issued
    from smimegate.pki.certfile import Unreadable
    from smimegate.pki.trust import TrustAnchors
    from smimegate.service.publishing import Published
    from smimegate.store import CrlRecord

MAX_CHAIN = 8  # no real S/MIME chain is longer; stops a loop of cross-certificates
MIN_PREFIX = 8
FORMATS = ("pem", "der", "pfx")
_HEX = re.compile(r"[0-9a-f]+")


# -- naming and describing --------------------------------------------------------------------

def normal_fingerprint(text: str) -> str:
    """Lower-case hex without separators. Raises InvalidInput (field "fingerprint") when it
    is not hex or too short."""
    cleaned = re.sub(r"[:\s]", "", text.strip().lower()).removeprefix("sha256fingerprint=")
    if not _HEX.fullmatch(cleaned) or len(cleaned) > 64:
        raise InvalidInput(f"not a SHA-256 fingerprint: {text!r} (64 hex digits, colons "
                           "allowed)", "fingerprint")
    if len(cleaned) < MIN_PREFIX:
        raise InvalidInput(
            f"fingerprint {text!r} is too short: give at least {MIN_PREFIX} hex digits",
            "fingerprint")
    return cleaned


def pick(records: Sequence[CertificateRecord], text: str, what: str = "certificate") -> str:
    """The full fingerprint among records that text names (whole or unique prefix).

    Raises InvalidInput (malformed, ambiguous), Missing (no such certificate).
    """
    wanted = normal_fingerprint(text)
    found = [r.fingerprint for r in records if r.fingerprint.startswith(wanted)]
    if not found:
        raise Missing(f"no {what} with fingerprint {wanted}")
    if len(found) > 1:
        raise InvalidInput(f"fingerprint prefix {wanted} matches {len(found)} {what}s; give "
                           "more", "fingerprint")
    return found[0]


def describe(record: CertificateRecord, anchors: TrustAnchors) -> dict[str, Any]:
    """The JSON object CONTRACT.md fixes for ``cert list --json``, plus a few more fields."""
    from smimegate.pki import storetrust  # path validation: pyhanko-certvalidator

    verdict = storetrust.verdict(record, anchors)
    return {
        "fingerprint": record.fingerprint,
        "emails": list(record.emails),
        "subject": record.subject,
        "issuer": record.issuer,
        "serial": record.serial,
        "not_before": record.not_before.isoformat(),
        "not_after": record.not_after.isoformat(),
        "has_key": record.has_key,
        "trusted": verdict.trusted,
        "trust_info": verdict.reason,
        "trusted_root": record.trusted_root,
        "is_ca": record.is_ca,
        "ski": record.ski,
        "source": record.source,
        "blocked": record.blocked,
    }


def anchors_of(store: Store, revocation_mode: str | None = None) -> TrustAnchors:
    from smimegate.pki.anchors import load_anchors

    if revocation_mode is None:
        return load_anchors(store)
    return load_anchors(store, revocation_mode=revocation_mode)  # type: ignore[arg-type]


def listing(store: Store, email: str | None = None,
            revocation_mode: str | None = None) -> list[dict[str, Any]]:
    """As ``cert list [--email E] --json``: every certificate with its trust and the reason."""
    anchors = anchors_of(store, revocation_mode)
    wanted = email.strip().lower() if email else None
    return [describe(r, anchors) for r in store.list_certificates(wanted)]


# What a listing can be searched in and sorted by (smimegate.service.paging).
SEARCH_KEYS = ("emails", "subject", "issuer", "serial", "fingerprint", "trust_info", "source")
SORT_KEYS = ("emails", "subject", "issuer", "serial", "not_before", "not_after", "fingerprint",
             "trusted", "has_key", "source")


def record_of(store: Store, text: str) -> CertificateRecord:
    """The certificate a fingerprint (or unique prefix) names. Raises InvalidInput,
    OperationFailed."""
    return store.get_certificate(pick(store.list_certificates(), text))


def show(store: Store, text: str, revocation_mode: str | None = None) -> dict[str, Any]:
    """As ``cert show --json``."""
    return describe(record_of(store, text), anchors_of(store, revocation_mode))


def detail(store: Store, text: str, revocation_mode: str | None = None) -> dict[str, Any]:
    """As ``cert show --json``, plus ``path``: the stored issuer chain above it, nearest
    first, each as subject, fingerprint and whether it is a trusted root (the Certificates
    tab's detail page shows the same chain). Raises InvalidInput, Missing."""
    record = record_of(store, text)
    item = describe(record, anchors_of(store, revocation_mode))
    roots = {r.fingerprint for r in store.list_roots()}
    chain = [cert_info(c) for c in issuer_chain(store, record.certificate())]
    item["path"] = [{"subject": info.subject, "fingerprint": info.fingerprint,
                     "trusted_root": info.fingerprint in roots} for info in chain]
    return item


def issuer_chain(store: Store, cert: x509.Certificate) -> list[x509.Certificate]:
    """The stored CA certificates above cert, nearest first, up to a self-signed one.

    Each link is checked by signature, not just by name. Raises StoreError.
    """
    # Trusted roots first: a cross-certificate shares its subject and key with a root, and
    # the chain that ends at the root is the one a client can use.
    records = sorted((r for r in store.list_certificates() if r.is_ca),
                     key=lambda r: not r.trusted_root)
    candidates = [r.certificate() for r in records]
    chain: list[x509.Certificate] = []
    current = cert
    while len(chain) < MAX_CHAIN and current.issuer != current.subject:
        parent = next((c for c in candidates if c.subject == current.issuer
                       and c not in chain and _issued_by(current, c)), None)
        if parent is None:
            break
        chain.append(parent)
        current = parent
    return chain


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# -- import -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Imported:
    status: str  # "imported" | "already stored", with ", private key stored"
    record: CertificateRecord

    def line(self) -> str:
        emails = ",".join(self.record.emails) or "-"
        return f"{self.status}: {self.record.fingerprint}  {emails}  {self.record.subject}"


@dataclass
class ImportReport:
    """What an import did: one Imported per certificate stored, and each item of the file
    that could not be read (with its place, subject when readable, and why)."""

    name: str
    items: list[Imported] = field(default_factory=list)
    unreadable: Sequence[Unreadable] = ()

    @property
    def new(self) -> int:
        return sum(i.status.startswith("imported") for i in self.items)

    @property
    def keys(self) -> int:
        return sum(i.status.endswith("private key stored") for i in self.items)

    def problems(self) -> list[str]:
        return [u.describe(self.name) for u in self.unreadable]

    def summary(self) -> str:
        failed = len(self.unreadable)
        return (f"{self.name}: {self.new} new, {len(self.items) - self.new} already stored, "
                f"{self.keys} private key(s) stored"
                + (f", {failed} not readable" if failed else ""))


def read_upload(data: bytes, name: str, password: str | None) -> Any:
    """A certificate file's content parsed (smimegate.pki.certfile). Raises InvalidInput
    (field "password") when a PKCS#12 needs a password, OperationFailed when it cannot be
    read or the password is wrong."""
    from smimegate.pki import certfile

    try:
        return certfile.parse(data, name, password or None)
    except certfile.NeedsPassword as exc:
        raise InvalidInput(str(exc), "password") from None
    except certfile.CertFileError as exc:
        raise OperationFailed(str(exc)) from None


def import_parsed(store: Store, actor: Actor, found: Any, name: str) -> ImportReport:
    """Store every certificate of a parsed file with its key. Each certificate with its key
    and audit row is one transaction: a failure part way leaves those before it stored whole
    and nothing of the failing one, and importing again is idempotent (one transaction for
    the whole file would throw away every good certificate because of one bad one)."""
    actor.require_change()
    keys = {p.certificate.public_bytes(Encoding.DER): p.key for p in found.pairs}
    report = ImportReport(name, unreadable=found.unreadable)
    for cert in found.certificates:
        fingerprint = cert_info(cert).fingerprint
        with store.atomic():
            try:
                before: CertificateRecord | None = store.get_certificate(fingerprint)
            except NotFound:
                before = None
            key = keys.get(cert.public_bytes(Encoding.DER))
            record = store.add_certificate(cert, source="import", key=key)
            status = "imported" if before is None else "already stored"
            if key is not None and (before is None or not before.has_key):
                status += ", private key stored"
            if status != "already stored":
                audit.record(store, actor, "cert.import", record.fingerprint,
                             f"{name}: {status}")
        report.items.append(Imported(status, record))
    return report


def import_data(store: Store, actor: Actor, data: bytes, name: str,
                password: str | None = None) -> ImportReport:
    """Import an uploaded PEM, DER, PKCS#7 or PKCS#12 file (see import_parsed)."""
    actor.require_change()
    return import_parsed(store, actor, read_upload(data, name, password), name)


# -- export -----------------------------------------------------------------------------------

def check_export(fmt: str, password: str | None, profile: str = DEFAULT_PROFILE) -> None:
    """The CLI's rules for ``cert export`` options. Raises InvalidInput."""
    if fmt not in FORMATS:
        raise InvalidInput(f"bad format {fmt!r}: one of {', '.join(FORMATS)}", "format")
    if fmt != "pfx" and password is not None:
        raise InvalidInput("--password and --password-file apply to --format pfx only",
                           "password")
    if fmt == "pfx" and not password:
        raise InvalidInput("--format pfx needs a non-empty --password or --password-file",
                           "password")
    if profile not in PROFILES:
        raise InvalidInput(f"bad PKCS#12 profile {profile!r}: one of {', '.join(PROFILES)}",
                           "profile")


def export(store: Store, actor: Actor, text: str, fmt: str = "pem",
           password: str | None = None, profile: str = DEFAULT_PROFILE) -> tuple[str, bytes]:
    """(fingerprint, bytes) of a certificate as PEM or DER, or PKCS#12 with its key and chain.
    The PKCS#12 is refused to auditors (Forbidden) and recorded in the audit log before it is
    returned. Raises InvalidInput, OperationFailed, Forbidden."""
    check_export(fmt, password, profile)
    if fmt == "pfx" and not actor.may_change():
        raise Forbidden(f"{actor.name} is an auditor: it may not export private keys")
    record = record_of(store, text)
    cert = record.certificate()
    if fmt == "pem":
        return record.fingerprint, cert.public_bytes(Encoding.PEM)
    if fmt == "der":
        return record.fingerprint, record.der
    if not record.has_key:
        raise OperationFailed(f"no private key stored for certificate {record.fingerprint}")
    key = store.get_private_key(record.fingerprint)
    assert password is not None
    try:
        data = make_pkcs12(key, cert, issuer_chain(store, cert), password, profile_name=profile,
                           friendly_name=record.emails[0] if record.emails else None)
    except ValueError as exc:  # e.g. an ML-DSA key with the legacy profile
        raise OperationFailed(str(exc)) from None
    audit.record(store, actor, "cert.export-key", record.fingerprint, f"pfx {profile}")
    return record.fingerprint, data


# -- issue and revoke -------------------------------------------------------------------------

@dataclass(frozen=True)
class IssueOptions:
    """Every option of ``cert issue``; password None: no PKCS#12 is made."""

    email: str
    ca: str | None = None
    days: int | None = None
    key_type: str = "rsa2048"
    signature_algorithm: str | None = None
    cn: str | None = None
    org: str | None = None
    given_name: str | None = None
    surname: str | None = None
    crl_dp: Sequence[str] = ()
    password: str | None = None
    pfx_profile: str = DEFAULT_PROFILE
    send_pfx: bool = False
    sms_password: bool = False


@dataclass(frozen=True)
class IssueResult:
    issued: Issued
    request: Any  # pki.issue.IssueRequest
    pfx: bytes | None
    report: DeliveryReport | None
    published: Published | None = None  # None: publishing to the directory is off

    def lines(self) -> list[str]:
        info = cert_info(self.issued.cert)
        out = [f"issued {info.subject} by CA {self.issued.ca.name}",
               f"  serial:      {info.serial}",
               f"  sha256:      {info.fingerprint}",
               f"  valid until: {info.not_after.isoformat()}",
               f"  profile:     {self.request.subject.profile.name.lower()}-validated strict"]
        if self.issued.user_created:
            out.append(f"  user {self.request.subject.email} created")
        return out


def issue_request(opts: IssueOptions) -> Any:
    """The IssueRequest of opts, checked by the CLI's rules. Raises InvalidInput."""
    from smimegate.pki.ca import DEFAULT_DAYS
    from smimegate.pki.issue import IssueRequest, Subject
    from smimegate.pki.signing import (
        ISSUE_KEY_TYPES,
        ML_DSA_TYPES,
        ML_KEM_TYPES,
        SIGNATURE_ALGORITHMS,
    )

    if opts.key_type not in ISSUE_KEY_TYPES:
        raise InvalidInput(f"bad key type {opts.key_type!r}: one of "
                           f"{', '.join(ISSUE_KEY_TYPES)}", "key_type")
    if opts.signature_algorithm and opts.signature_algorithm not in SIGNATURE_ALGORITHMS:
        raise InvalidInput(f"bad signature algorithm {opts.signature_algorithm!r}: one of "
                           f"{', '.join(SIGNATURE_ALGORITHMS)}", "signature_algorithm")
    wants_pfx = opts.password is not None
    if wants_pfx and opts.key_type in (*ML_DSA_TYPES, *ML_KEM_TYPES) \
            and opts.pfx_profile != "modern":
        # Refused before a key is made: ML-DSA / ML-KEM keys go into a PKCS#12 with the modern
        # profile only (smimegate.pki.pfxwrite).
        raise InvalidInput(f"--key-type {opts.key_type}: a PKCS#12 of an ML-DSA or ML-KEM key "
                           "needs --pfx-profile modern", "pfx_profile")
    if wants_pfx and not opts.password:
        raise InvalidInput("the PKCS#12 password must not be empty", "password")
    if (opts.send_pfx or opts.sms_password) and not wants_pfx:
        raise InvalidInput("sending the PKCS#12 or its password needs a PKCS#12 password",
                           "password")
    if opts.pfx_profile not in PROFILES:
        raise InvalidInput(f"bad PKCS#12 profile {opts.pfx_profile!r}", "pfx_profile")
    days = DEFAULT_DAYS if opts.days is None else opts.days
    try:
        return IssueRequest(
            Subject(opts.email.strip(), cn=opts.cn or None, org=opts.org or None,
                    given_name=opts.given_name or None, surname=opts.surname or None),
            days=days, signature_algorithm=opts.signature_algorithm or None,
            crl_urls=tuple(opts.crl_dp))
    except ValueError as exc:
        text = str(exc)
        name = text.split(":", 1)[0].strip().replace(" ", "_").lower()
        if text.startswith("CRL distribution point"):
            name = "crl_dp"
        raise InvalidInput(text, name if name in _ISSUE_FIELDS else "email") from None


_ISSUE_FIELDS = ("email", "cn", "org", "given_name", "surname", "days", "crl_dp")


def issue(store: Store, config: Config, actor: Actor, opts: IssueOptions) -> IssueResult:
    """Issue a certificate from a built-in CA (key in escrow, user created when missing), make
    its PKCS#12 when a password is given, deliver it as asked, publish it to the directory
    when ``[ldap] publish_certificates`` says so (a failure there is in result.published: the
    certificate is issued by then). Raises InvalidInput, Forbidden, OperationFailed
    (PkiError, DeliveryError), StoreError."""
    from smimegate.delivery import DeliveryError
    from smimegate.delivery import pfx as delivery
    from smimegate.pki import authority
    from smimegate.pki.errors import PkiError
    from smimegate.service.publishing import publish_issued

    actor.require_change()
    request = issue_request(opts)
    if opts.sms_password:
        try:  # before issuing: a key whose password reaches nobody helps nobody
            delivery.phone_for(store, request.subject.email)
        except DeliveryError as exc:
            raise OperationFailed(str(exc)) from None
    try:
        with store.atomic():
            issued = authority.issue(store, request, ca_name=opts.ca or None,
                                     key_type=opts.key_type)
            audit.record(store, actor, "cert.issue", issued.record.fingerprint,
                         f"{request.subject.email} by CA {issued.ca.name}")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    except PkiError as exc:
        raise OperationFailed(str(exc)) from None
    pfx = None
    if opts.password is not None:
        pfx = make_pkcs12(issued.key, issued.cert, issued.ca.chain(), opts.password,
                          profile_name=opts.pfx_profile, friendly_name=request.subject.email)
    report = None
    if opts.send_pfx or opts.sms_password:
        try:
            report = delivery.deliver(
                store=store, config=config, email=request.subject.email, pfx=pfx,
                password=opts.password, send_pfx=opts.send_pfx, sms_password=opts.sms_password)
        except DeliveryError as exc:
            raise OperationFailed(str(exc)) from None
    published = publish_issued(config, request.subject.email, issued.cert, issued.ca.chain())
    return IssueResult(issued, request, pfx, report, published)


def parse_serial_text(text: str) -> int:
    """A SERIAL in hex as ``openssl x509 -serial`` prints it. Raises InvalidInput."""
    from smimegate.store import InvalidData
    from smimegate.store.certinfo import parse_serial

    try:
        serial = parse_serial(text)
    except InvalidData as exc:
        raise InvalidInput(str(exc), "serial") from None
    if serial <= 0:
        raise InvalidInput(f"serial {text!r}: must be positive", "serial")
    return serial


def parse_reason_text(text: str | None) -> str | None:
    """A revocation reason (key-compromise, keyCompromise ...); empty: none."""
    from smimegate.pki.crl import parse_reason

    if not text:
        return None
    try:
        return parse_reason(text)
    except ValueError as exc:
        raise InvalidInput(str(exc), "reason") from None


def check_days(days: int, what: str = "days") -> int:
    if days < 1:
        raise InvalidInput(f"must be at least 1, got {days}", what)
    return days


@audit.atomic
def revoke(store: Store, actor: Actor, serial: int, *, ca: str | None = None,
           reason: str | None = None, next_update_days: int | None = None) -> CrlRecord:
    """Record the revocation of a serial of a built-in CA and issue a new CRL that keeps the
    earlier entries. Raises InvalidInput, Forbidden, OperationFailed (PkiError)."""
    from smimegate.pki import authority
    from smimegate.pki.crl import DEFAULT_NEXT_UPDATE_DAYS
    from smimegate.pki.errors import PkiError

    actor.require_change()
    days = check_days(DEFAULT_NEXT_UPDATE_DAYS if next_update_days is None else next_update_days,
                      "next_update_days")
    try:
        record = authority.revoke(store, serial, ca_name=ca or None, reason=reason,
                                  next_update_days=days)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    except PkiError as exc:
        raise OperationFailed(str(exc)) from None
    audit.record(store, actor, "cert.revoke", f"{serial:X}",
                 f"CA {ca or 'default'}" + (f" reason {reason}" if reason else ""))
    return record


def issuing_ca(store: Store, record: CertificateRecord) -> str:
    """The name of the built-in CA whose intermediate signed the stored certificate. Raises
    OperationFailed when none did (a certificate from elsewhere is revoked by its own CA)."""
    from smimegate.pki import authority

    cert = record.certificate()
    for ca_record in store.list_cas():
        intermediate = authority.load_ca(store, ca_record.name).intermediate
        if cert.issuer == intermediate.subject and _issued_by(cert, intermediate):
            return ca_record.name
    raise OperationFailed(f"certificate {record.fingerprint} was not issued by a built-in CA: "
                          "only its own CA can revoke it")


@audit.atomic
def revoke_stored(store: Store, actor: Actor, text: str, *, reason: str | None = None,
                  next_update_days: int | None = None) -> tuple[CertificateRecord, str, CrlRecord]:
    """revoke() for a stored certificate named by its fingerprint, with the built-in CA that
    issued it: (the certificate, the CA's name, the new CRL), with its audit row in one
    transaction. Raises InvalidInput, Missing, Forbidden, OperationFailed."""
    from smimegate.store.certinfo import parse_serial

    actor.require_change()
    record = record_of(store, text)
    ca = issuing_ca(store, record)
    crl = revoke(store, actor, parse_serial(record.serial), ca=ca, reason=reason,
                 next_update_days=next_update_days)
    return record, ca, crl
