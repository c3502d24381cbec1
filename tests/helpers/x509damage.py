"""Certificates and CRLs damaged the ways cryptography only notices when a part is read
(smimegate.x509errors): a version out of range, an extension given twice. Each keeps every
outer length valid, so the damage reaches the parser it is meant for."""

from __future__ import annotations

from collections.abc import Callable

from asn1crypto import x509 as ax509

# [0] EXPLICIT INTEGER 2: a certificate's version field, v3 (RFC 5280 4.1).
_CERT_V3 = b"\xa0\x03\x02\x01\x02"
# INTEGER 1: a TBSCertList's version field, v2 (RFC 5280 5.1), its first INTEGER.
_CRL_V2 = b"\x02\x01\x01"


def cert_with_version(der: bytes, version: int) -> bytes:
    """A v3 certificate's DER with its version field set to ``version`` (0-255)."""
    assert _CERT_V3 in der, "not a v3 certificate"
    return der.replace(_CERT_V3, _CERT_V3[:-1] + bytes([version]), 1)


def crl_with_version(der: bytes, version: int) -> bytes:
    """A v2 CRL's DER with its version field set to ``version`` (0-255)."""
    at = der.index(_CRL_V2) + 2
    return der[:at] + bytes([version]) + der[at + 1:]


def with_an_extension_twice(der: bytes,
                            sign: Callable[[bytes], bytes] | None = None) -> bytes:
    """A certificate's DER with its first extension given again (RFC 5280 4.2 forbids it).
    ``sign`` (TBSCertificate DER -> signature) signs it again, as a CA that issued such a
    certificate would; without it the old signature stays and no longer holds."""
    cert = ax509.Certificate.load(der)
    tbs = cert["tbs_certificate"]
    extensions = list(tbs["extensions"])
    tbs["extensions"] = ax509.Extensions([*extensions, extensions[0]])
    if sign is not None:
        cert["signature_value"] = sign(tbs.dump(force=True))
    return bytes(cert.dump(force=True))
