"""The columns the store keeps for a certificate or CRL, read with cryptography.

Also the normal forms the store compares by: lower-case addresses and domains, upper-case hex
serial numbers without leading zeros, lower-case hex key identifiers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from smimegate import dn
from smimegate.store.base import InvalidData
from smimegate.x509errors import X509_ERRORS


@dataclass(frozen=True)
class CertInfo:
    fingerprint: str
    der: bytes
    subject: str
    issuer: str
    serial: str
    ski: str | None
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool
    emails: tuple[str, ...]


@dataclass(frozen=True)
class CrlInfo:
    fingerprint: str
    der: bytes
    issuer: str
    authority_key_id: str | None
    this_update: dt.datetime
    next_update: dt.datetime | None
    crl_number: int | None
    scope: str = ""
    delta_base: int | None = None
    entries: int = 0


def normalize_email(address: str) -> str:
    """Lower-case address; raises InvalidData when it has no local part or domain."""
    addr = address.strip().strip("<>").lower()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in addr):
        raise InvalidData(f"not an email address: {address!r}")
    return addr


def normalize_domain(name: str) -> str:
    """Lower-case domain without trailing dot; a leading '*.' (wildcard rule) is kept."""
    dom = name.strip().lower().rstrip(".")
    bare = dom[2:] if dom.startswith("*.") else dom
    if not bare or "@" in bare or "*" in bare or any(c.isspace() for c in bare):
        raise InvalidData(f"not a domain name: {name!r}")
    return dom


def domain_candidates(domain: str) -> list[str]:
    """Domain rules that may apply to domain: itself, its parents and their wildcards.

    mx.example.com -> mx.example.com, example.com, com, *.example.com, *.com
    """
    labels = domain.split(".")
    parents = [".".join(labels[i:]) for i in range(len(labels))]
    return parents + ["*." + p for p in parents[1:]]


def serial_hex(serial: int) -> str:
    """Upper-case hex without leading zeros (as the store keeps serials)."""
    return format(serial, "X")


def parse_serial(text: str) -> int:
    """A serial as `openssl x509 -serial` prints it (colons, leading zeros, any case).

    Raises InvalidData.
    """
    cleaned = text.strip().removeprefix("serial=").replace(":", "")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise InvalidData(f"not a hexadecimal serial number: {text!r}") from None


def name_string(name: x509.Name | str) -> str:
    """The RFC 4514 string the store keeps and compares names by (smimegate.dn: known
    attributes by name, e.g. emailAddress, never as an OID; the same text as the headers)."""
    return name if isinstance(name, str) else dn.name_string(name)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def cert_info(cert: x509.Certificate | bytes) -> CertInfo:
    """Extract the stored columns. Raises InvalidData for a malformed certificate."""
    try:
        if isinstance(cert, bytes | bytearray):
            cert = x509.load_der_x509_certificate(bytes(cert))
        der = cert.public_bytes(Encoding.DER)
        emails: list[str] = []
        # RFC 8551 section 3.1: the address may be in the SAN rfc822Name or, for older
        # certificates, in the subject emailAddress attribute; both count.
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            emails += [str(v) for v in san.value.get_values_for_type(x509.RFC822Name)]
        except x509.ExtensionNotFound:
            pass
        for attr in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
            emails.append(str(attr.value))
        try:
            ski: str | None = cert.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier
            ).value.digest.hex()
        except x509.ExtensionNotFound:
            ski = None
        try:
            is_ca = bool(
                cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            )
        except x509.ExtensionNotFound:
            is_ca = False
        return CertInfo(
            fingerprint=hashlib.sha256(der).hexdigest(),
            der=der,
            subject=name_string(cert.subject),
            issuer=name_string(cert.issuer),
            serial=serial_hex(cert.serial_number),
            ski=ski,
            not_before=_utc(cert.not_valid_before_utc),
            not_after=_utc(cert.not_valid_after_utc),
            is_ca=is_ca,
            emails=tuple(dict.fromkeys(e.strip().lower() for e in emails if "@" in e)),
        )
    except X509_ERRORS as exc:
        raise InvalidData(f"malformed certificate: {exc}") from None


def crl_scope(crl: x509.CertificateRevocationList) -> tuple[str, int | None]:
    """What sets a CRL apart from other CRLs of the same issuer and key, and the BaseCRLNumber
    of a delta CRL (None for a complete one). Raises ValueError for unreadable extensions.

    RFC 5280 5.2.5: CRLs with different issuingDistributionPoint extensions cover different
    certificates (partitions, reasons, indirect CRLs) and stand side by side; 5.2.4: a delta
    CRL complements its base CRL instead of replacing it. Scope "" is a complete CRL that
    covers every certificate of its issuer.
    """
    try:
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
        scope = "idp:" + hashlib.sha256(idp.public_bytes()).hexdigest()[:32]
    except x509.ExtensionNotFound:
        scope = ""
    try:
        base: int | None = crl.extensions.get_extension_for_class(
            x509.DeltaCRLIndicator).value.crl_number
    except x509.ExtensionNotFound:
        base = None
    if base is not None:
        scope = "delta" + (":" + scope if scope else "")
    return scope, base


def crl_info(crl: x509.CertificateRevocationList | bytes) -> CrlInfo:
    """Extract the stored columns of a CRL. Raises InvalidData for a malformed CRL."""
    try:
        if isinstance(crl, bytes | bytearray):
            crl = x509.load_der_x509_crl(bytes(crl))
        der = crl.public_bytes(Encoding.DER)
        try:
            aki = crl.extensions.get_extension_for_class(
                x509.AuthorityKeyIdentifier
            ).value.key_identifier
        except x509.ExtensionNotFound:
            aki = None
        try:
            number: int | None = crl.extensions.get_extension_for_class(
                x509.CRLNumber
            ).value.crl_number
        except x509.ExtensionNotFound:
            number = None
        scope, base = crl_scope(crl)
        return CrlInfo(
            fingerprint=hashlib.sha256(der).hexdigest(),
            der=der,
            issuer=name_string(crl.issuer),
            authority_key_id=aki.hex() if aki else None,
            this_update=_utc(crl.last_update_utc),
            next_update=_utc(crl.next_update_utc) if crl.next_update_utc else None,
            crl_number=number,
            scope=scope,
            delta_base=base,
            entries=len(crl),
        )
    except X509_ERRORS as exc:
        raise InvalidData(f"malformed CRL: {exc}") from None
