"""Distinguished names as text: one RFC 4514 form for listings, headers and the store.

CONTRACT.md: "RFC 4514 strings, most specific first, `, ` between attributes". RFC 4514 3
names a few attribute types (CN, L, ST, O, OU, C, STREET, DC, UID); every other type would be
a dotted OID there, which is how cryptography prints emailAddress. Attributes that OpenSSL
knows by a short name are shown by that name instead (what ``openssl x509 -nameopt RFC2253``
prints), so no listing ever shows 1.2.840.113549.1.9.1. Unknown types stay dotted OIDs, as
RFC 4514 2.3 asks.

The store, pki and smime layers all use this; asn1crypto is imported on first use, so a
store command that shows no names (`domain list`) does not load it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asn1crypto import x509 as ax509
    from cryptography import x509

# Dotted OID -> label. RFC 4514 3 keywords first, then OpenSSL's short names (obj_dat.h).
ATTRIBUTE_NAMES: dict[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
    "1.2.840.113549.1.9.1": "emailAddress",
    "2.5.4.5": "serialNumber",
    "2.5.4.4": "SN",
    "2.5.4.42": "GN",
    "2.5.4.12": "title",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.41": "name",
    "2.5.4.13": "description",
    "2.5.4.20": "telephoneNumber",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}


def escape(value: str) -> str:
    """An attribute value escaped as RFC 4514 2.4 asks."""
    out = []
    for ch in value:
        if ch in '"+,;<>\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            # NUL must be \00 (RFC 4514 2.4); other controls may be hex-escaped, and must be
            # here: a CR/LF from a forged SignerIdentifier would split a result header line.
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    text = "".join(out)
    if text.startswith(("#", " ")):
        text = "\\" + text
    if text.endswith(" ") and not text.endswith("\\ "):
        text = text[:-1] + "\\ "
    return text


def asn1_name(name: ax509.Name) -> str:
    """RFC 4514 string of an asn1crypto Name, most specific RDN first, ``, `` between RDNs.

    Raises whatever asn1crypto raises for a malformed name (ValueError, TypeError ...): callers
    that parse untrusted input wrap it (smimegate.smime.cms.name_to_str).
    """
    from asn1crypto import core

    parts: list[str] = []
    for rdn in reversed(list(name.chosen)):
        attrs = []
        for atv in rdn:
            oid = atv["type"].dotted
            label = ATTRIBUTE_NAMES.get(oid, oid)
            value = atv["value"]
            native = None if isinstance(value, core.Any) else value.native
            # RFC 4514 2.4: a value that is not a string is written as # and its BER in hex.
            text = escape(native) if isinstance(native, str) else "#" + value.dump().hex()
            attrs.append(f"{label}={text}")
        parts.append("+".join(attrs))
    return ", ".join(parts)


def name_string(name: x509.Name) -> str:
    """The same string for a cryptography Name (one formatter, so headers, listings and the
    store's lookups by issuer always agree)."""
    return _der_string(name.public_bytes())


@functools.lru_cache(maxsize=1024)
def _der_string(der: bytes) -> str:
    # By DER: the same few issuer names come back for every certificate stored or looked up.
    from asn1crypto import x509 as ax509

    return asn1_name(ax509.Name.load(der))
