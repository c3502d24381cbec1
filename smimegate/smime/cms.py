"""Shared CMS (RFC 5652) plumbing over asn1crypto: parse guard, names, certificate identifiers.

asn1crypto parses lazily: a broken inner structure surfaces as ValueError, TypeError, KeyError,
IndexError or OverflowError at the moment a field is read. ``guard`` turns all of those into
``Malformed`` with context, so callers never leak a raw parser exception.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from asn1crypto import cms as acms
from asn1crypto import core
from asn1crypto import x509 as ax509
from cryptography import x509

from smimegate import dn
from smimegate.smime.ber import der_header
from smimegate.smime.certmemo import per_certificate
from smimegate.smime.errors import Malformed, SmimeError
from smimegate.smime.results import CertId
from smimegate.x509errors import X509_ERRORS

# Upper bound for one CMS object we accept; the milter's size limit is lower (RFC-less sanity).
MAX_DER_BYTES = 256 * 1024 * 1024

_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)

@contextmanager
def guard(what: str) -> Iterator[None]:
    """Run a parse step; any parser exception becomes ``Malformed("<what>: <detail>")``."""
    try:
        yield
    except SmimeError:
        raise
    except _PARSE_ERRORS as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise Malformed(f"{what}: {detail}") from exc


def load_content_info(der: bytes) -> acms.ContentInfo:
    """Parse a DER ContentInfo strictly (no trailing data) and check its outer shape."""
    if not der:
        raise Malformed("CMS: empty input")
    if len(der) > MAX_DER_BYTES:
        raise Malformed(f"CMS: {len(der)} bytes is over the limit of {MAX_DER_BYTES}")
    with guard("CMS ContentInfo"):
        info = acms.ContentInfo.load(der, strict=True)
        _ = info["content_type"].dotted
        content = info["content"]
        # asn1crypto hands known content types (SignedData, ...) over already typed; only an
        # unknown one stays an Any that must be parsed explicitly.
        if isinstance(content, core.Any):
            _ = content.parsed
        else:
            _ = content.contents
    return info


def name_to_str(name: ax509.Name) -> str:
    """RFC 4514 string, most specific RDN first, ``, `` between attributes (CONTRACT.md).
    Raises Malformed."""
    with guard("distinguished name"):
        key = parsed_der(name)
    # By DER: the same few issuer names come back in every message, and formatting one costs
    # more than a tenth of a millisecond (bench/cost_bench.py). Failures are not remembered.
    return remember(_NAMES, key, lambda: _name_to_str(name))


_NAMES: dict[bytes, str] = {}


def _name_to_str(name: ax509.Name) -> str:
    with guard("distinguished name"):
        return dn.asn1_name(name)


def to_asn1(cert: x509.Certificate) -> ax509.Certificate:
    """cryptography certificate -> asn1crypto certificate (same DER)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return ax509.Certificate.load(cert.public_bytes(Encoding.DER))


@per_certificate(maxsize=128)
def issuer_and_serial_der(cert: x509.Certificate) -> bytes:
    """IssuerAndSerialNumber DER (RFC 5652 10.2.4) of a certificate. Cached: the same few
    certificates sign and receive message after message."""
    tbs = to_asn1(cert)["tbs_certificate"]
    body = bytes(tbs["issuer"].dump()) + bytes(tbs["serial_number"].dump())
    return der_header(0x30, len(body)) + body


_T = TypeVar("_T")
_REMEMBER_LOCK = threading.Lock()


def remember(cache: dict[bytes, _T], key: bytes, compute: Callable[[], _T]) -> _T:
    """``cache[key]``, computed (outside the lock) when missing; at most 1024 entries. For
    values worked out from asn1crypto objects, keyed by the bytes they came from (parsed_der):
    what raises is not remembered."""
    with _REMEMBER_LOCK:
        if key in cache:
            return cache[key]
    value = compute()
    with _REMEMBER_LOCK:
        if len(cache) >= 1024:
            cache.clear()
        cache[key] = value
    return value


def dotted(contents: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER from its contents octets, remembered as
    oid_dotted remembers it. Raises what asn1crypto raises for a broken one."""
    return _dotted(contents)


class Lru(Generic[_T]):
    """A bounded least-recently-used map from bytes, shared by libmilter's threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, _T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> _T | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: bytes, value: _T) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def oid_dotted(value: core.ObjectIdentifier) -> str:
    """``value.dotted``, remembered by encoding: asn1crypto works it out again for every
    object, about fifteen times per message for the same few OIDs (bench/cost_bench.py).
    Raises what ``.dotted`` raises for a broken one."""
    return _dotted(bytes(value.contents))


@functools.lru_cache(maxsize=1024)
def _dotted(contents: bytes) -> str:
    oid: str = core.ObjectIdentifier.load(der_header(0x06, len(contents)) + contents).dotted
    return oid


def tlv(identifier: int, content: bytes) -> bytes:
    """One DER element: identifier octet, definite length, content (X.690 8.1)."""
    return der_header(identifier, len(content)) + content


def parsed_der(value: core.Asn1Value) -> bytes:
    """The bytes a parsed asn1crypto value came from (re-encoded only when they were BER with
    an indefinite length).

    asn1crypto 1.5.1's dump() takes any header whose last byte is 0x80 for an indefinite
    length, also a definite one such as 30 82 03 80 (896 bytes), and then re-encodes the whole
    value. A field that does not survive re-encoding changes the bytes under the signature:
    PKITS 4.3.6's UID CA certificate (a subjectUniqueID BIT STRING with unused bits) came out
    with a signature that no longer verified.
    """
    der = definite_der(value)
    return der if der is not None else bytes(value.dump())


def definite_der(value: core.Asn1Value) -> bytes | None:
    """The bytes a parsed value came from when its header has a definite length (parsed_der
    without the re-encoding, which parses all of it), else None."""
    header = getattr(value, "_header", None)
    contents = value.contents
    if isinstance(header, bytes) and contents is not None and header[1:] != b"\x80":
        return header + bytes(contents)
    return None


def to_crypto(cert: ax509.Certificate) -> x509.Certificate:
    """asn1crypto certificate -> cryptography certificate, from the bytes it was parsed from
    (parsed_der); Malformed if cryptography refuses it."""
    try:
        return x509.load_der_x509_certificate(parsed_der(cert))
    except X509_ERRORS as exc:
        raise Malformed(f"certificate: {exc}") from exc


def subject_key_identifier(cert: x509.Certificate) -> bytes | None:
    """The SKI extension value, or None when the certificate has none."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        return None
    return ext.value.digest


def cert_id(cert: x509.Certificate) -> CertId:
    """CertId of a certificate: issuer DN, serial and SKI (for headers and matching)."""
    return CertId(issuer=_issuer(cert), serial=cert.serial_number,
                  ski=subject_key_identifier(cert))


@per_certificate(maxsize=256)
def _issuer(cert: x509.Certificate) -> str:
    # Per certificate: matching a signer or recipient asks again with every message.
    return name_to_str(to_asn1(cert).issuer)


def identifier_to_cert_id(sid: acms.SignerIdentifier | acms.RecipientIdentifier | acms.KeyAgreementRecipientIdentifier) -> CertId:
    """CertId from a SignerIdentifier / RecipientIdentifier (issuerAndSerialNumber or SKI).
    Raises Malformed."""
    with guard("certificate identifier"):
        key = type(sid).__name__.encode() + b":" + parsed_der(sid)
    # By DER: a correspondent's identifier comes back in every message (bench/cost_bench.py).
    return remember(_IDENTIFIERS, key, lambda: _identifier_cert_id(sid))


_IDENTIFIERS: dict[bytes, CertId] = {}


def _identifier_cert_id(sid: acms.SignerIdentifier | acms.RecipientIdentifier
                        | acms.KeyAgreementRecipientIdentifier) -> CertId:
    with guard("certificate identifier"):
        chosen = sid.chosen
        if isinstance(chosen, acms.IssuerAndSerialNumber):
            return CertId(
                issuer=name_to_str(chosen["issuer"]),
                serial=int(chosen["serial_number"].native),
                ski=None,
            )
        # By choice name: asn1crypto defines two classes named RecipientKeyIdentifier, and the
        # module attribute is not the one KeyAgreementRecipientIdentifier uses.
        if sid.name == "r_key_id":
            return CertId(issuer="", serial=None, ski=bytes(chosen["subject_key_identifier"].native))
        return CertId(issuer="", serial=None, ski=bytes(chosen.native))


def matches(cid: CertId, cert: x509.Certificate) -> bool:
    """Whether a CMS identifier names this certificate."""
    if cid.serial is not None:
        return cid.serial == cert.serial_number and cid.issuer == _issuer(cert)
    return cid.ski is not None and cid.ski == subject_key_identifier(cert)
