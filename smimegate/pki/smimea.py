"""SMIMEA records (RFC 8162): where they live in the DNS and what their data is.

Pure functions, no I/O: the owner name for an address, the association data of a certificate
for a selector and matching type, zone file lines for publishing, and whether a record's data
names a given certificate. The DNS lookup itself is smimegate.pki.smimealookup.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smimegate.smime import mlkem512

__all__ = [
    "MATCHING_TYPES", "SELECTORS", "USAGES", "SmimeaError", "SmimeaRecord",
    "association_data", "owner_name", "record_matches", "zone_line",
]

# RFC 8162 2 takes the fields of TLSA (RFC 6698 2.1.1-2.1.3; names from RFC 7218).
USAGES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
SELECTORS = {0: "Cert", 1: "SPKI"}
MATCHING_TYPES = {0: "Full", 1: "SHA2-256", 2: "SHA2-512"}

# RFC 8162 3: the local part's SHA2-256 hash truncated to 28 octets.
OWNER_HASH_OCTETS = 28
OWNER_SUFFIX = "_smimecert"


class SmimeaError(ValueError):
    """An address or a record field that cannot be used; the message names it."""


@dataclass(frozen=True)
class SmimeaRecord:
    """The RDATA of one SMIMEA record (RFC 8162 2, same wire form as TLSA)."""

    usage: int
    selector: int
    matching: int
    data: bytes


def owner_name(address: str) -> str:
    """The absolute owner name of ``address``'s SMIMEA records (RFC 8162 3).

    The local part is hashed as it is written in the address, in UTF-8, with no case folding
    or other canonicalisation (RFC 8162 3 leaves that to the address's owner); surrounding
    quotes of a quoted local part are removed first, as the RFC asks. The domain is put into
    its IDNA A-label form and lower-cased, since DNS names are compared without case.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise SmimeaError(f"not a mail address: {address!r}")
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = local[1:-1]
    try:
        ascii_domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise SmimeaError(f"domain of {address!r} is not a valid DNS name") from None
    if not ascii_domain:
        raise SmimeaError(f"not a mail address: {address!r}")
    digest = hashlib.sha256(local.encode("utf-8")).digest()[:OWNER_HASH_OCTETS]
    return f"{digest.hex()}.{OWNER_SUFFIX}.{ascii_domain}."


def _check(usage: int, selector: int, matching: int) -> None:
    if usage not in USAGES:
        raise SmimeaError(f"usage must be one of 0-3, not {usage}")
    if selector not in SELECTORS:
        raise SmimeaError(f"selector must be 0 (certificate) or 1 (SubjectPublicKeyInfo), "
                          f"not {selector}")
    if matching not in MATCHING_TYPES:
        raise SmimeaError(f"matching type must be 0 (full), 1 (SHA-256) or 2 (SHA-512), "
                          f"not {matching}")


def association_data(cert: x509.Certificate, selector: int, matching: int) -> bytes:
    """The certificate association data of ``cert`` (RFC 6698 2.1.2-2.1.4)."""
    _check(0, selector, matching)
    if selector == 0:
        selected = cert.public_bytes(Encoding.DER)
    else:
        selected = mlkem512.certificate_public_key(cert).public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if matching == 1:
        return hashlib.sha256(selected).digest()
    if matching == 2:
        return hashlib.sha512(selected).digest()
    return selected


def zone_line(address: str, cert: x509.Certificate, usage: int = 3, selector: int = 0,
              matching: int = 0) -> str:
    """One master-file line (RFC 1035 5.1) publishing ``cert`` for ``address``.

    The data is written in hexadecimal as RFC 6698 2.2 asks, in one piece, so the line can be
    fed to nsupdate as it is.
    """
    _check(usage, selector, matching)
    data = association_data(cert, selector, matching).hex().upper()
    return f"{owner_name(address)} IN SMIMEA {usage} {selector} {matching} {data}"


def record_matches(record: SmimeaRecord, cert: x509.Certificate) -> bool:
    """Whether ``record``'s association data names ``cert`` (RFC 6698 2.1.2-2.1.4)."""
    if record.selector not in SELECTORS or record.matching not in MATCHING_TYPES:
        return False
    return association_data(cert, record.selector, record.matching) == record.data
