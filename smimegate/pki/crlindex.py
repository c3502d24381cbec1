"""CRLs parsed once, indexed by issuer, for revocation checks whose cost does not grow with the
store (issue 10 item 2).

A CRL is parsed when it is loaded, never per message: issuer (in RFC 5280 7.1 comparison form),
authority key identifier, times, numbers, its issuingDistributionPoint (RFC 5280 5.2.5), whether
it carries a critical extension we cannot process (5.2 / 5.3: such a CRL must not be used), and
the serial numbers it lists in a set. Listing a serial is then one set lookup, whatever the size
of the CRL: a 1,000,000-entry CRL loads in about a second (a walk over the DER of its
revokedCertificates, not cryptography's per-entry objects) and takes ~100 MB for the set.

``CrlIndex`` groups them by issuer name; ``SignatureMemo`` remembers which certificate's key
verified which CRL (and which certificate signed which), so that every signature is checked once
per process, across reloads too (fingerprints identify both sides for good).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import threading
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from asn1crypto import crl as acrl
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

__all__ = [
    "CrlIndex",
    "IndexedCrl",
    "Listing",
    "SerialSet",
    "SignatureMemo",
    "name_key",
    "parse_crl",
    "serial_key",
]

SIGNING_KEYS = (
    rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey,
    dsa.DSAPublicKey,
)

# RFC 5280 5.2 and 5.3: the CRL and CRL entry extensions we process. A critical one outside
# these makes the CRL unusable (5.2: "MUST NOT use that CRL to determine the status of
# certificates"); PKITS 4.4.8-4.4.10 test it.
_KNOWN_CRL_EXTENSIONS = frozenset({
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.ISSUER_ALTERNATIVE_NAME,
    ExtensionOID.CRL_NUMBER,
    ExtensionOID.DELTA_CRL_INDICATOR,
    ExtensionOID.ISSUING_DISTRIBUTION_POINT,
    ExtensionOID.FRESHEST_CRL,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
})
_KNOWN_ENTRY_EXTENSIONS = frozenset({
    CRLEntryExtensionOID.CRL_REASON,
    CRLEntryExtensionOID.INVALIDITY_DATE,
    CRLEntryExtensionOID.CERTIFICATE_ISSUER,
    x509.ObjectIdentifier("2.5.29.23"),  # holdInstructionCode
})
# DER of "critical BOOLEAN TRUE" inside an Extension: a CRL whose entries never contain these
# three bytes has no critical entry extension, checked without parsing its entries.
_CRITICAL_TRUE = b"\x01\x01\xff"


@lru_cache(maxsize=65536)
def _name_key_der(der: bytes) -> str:
    return str(ax509.Name.load(der).hashable)


def name_key(name: x509.Name) -> str:
    """The RFC 5280 7.1 comparison form of a name (case and white space folded for the string
    types it allows that for), so that PKITS 4.3's name chaining matches as RFC 5280 says."""
    return _name_key_der(name.public_bytes())


def serial_key(serial: int) -> bytes:
    """A serial number as the content octets of its DER INTEGER (the form the CRL walk keeps):
    minimal two's complement, so negative serials (PKITS 4.4.14/4.4.15) match too."""
    magnitude = serial if serial >= 0 else ~serial
    return serial.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


def _header(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of content, length) of the DER element at i. Raises ValueError."""
    tag = data[i]
    length = data[i + 1]
    i += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[i:i + count], "big")
        i += count
    return tag, i, length


def _entries_region(der: bytes) -> tuple[int, int]:
    """Start and end of the content of revokedCertificates in a CRL's DER ((0, 0): none).

    TBSCertList (RFC 5280 5.1): version?, signature, issuer, thisUpdate, nextUpdate?,
    revokedCertificates?, [0] crlExtensions?. Raises ValueError (IndexError) for bad DER.
    """
    _, i, _ = _header(der, 0)  # CertificateList
    _, i, length = _header(der, i)  # tbsCertList
    end = i + length
    tag, j, length = _header(der, i)
    if tag == 0x02:  # version
        i = j + length
        tag, j, length = _header(der, i)
    i = j + length  # signature AlgorithmIdentifier
    _, j, length = _header(der, i)
    i = j + length  # issuer
    _, j, length = _header(der, i)
    i = j + length  # thisUpdate
    if i >= end:
        return 0, 0
    tag, j, length = _header(der, i)
    if tag in (0x17, 0x18):  # nextUpdate
        i = j + length
        if i >= end:
            return 0, 0
        tag, j, length = _header(der, i)
    if tag != 0x30:
        return 0, 0
    return j, j + length


class SerialSet:
    """Revoked serial numbers in 8 bytes each: the sorted process-local hashes (Python's hash
    of the serial's DER INTEGER content) in an array, searched by bisection. A 1,000,000-entry
    CRL takes 8 MB here instead of ~90 MB as a set of bytes. A hash match is only a candidate:
    IndexedCrl.lists confirms it in the CRL's DER, so a collision never revokes anything."""

    __slots__ = ("_hashes",)

    def __init__(self, hashes: Iterable[int]) -> None:
        ordered = hashes if isinstance(hashes, list) else list(hashes)
        ordered.sort()  # in place: a 1,000,000-entry CRL is not copied once more
        self._hashes = array("q", ordered)

    def may_contain(self, key: bytes) -> bool:
        wanted = hash(key)
        at = bisect.bisect_left(self._hashes, wanted)
        return at < len(self._hashes) and self._hashes[at] == wanted

    def __len__(self) -> int:
        return len(self._hashes)


def _walk_serials(der: bytes, start: int, end: int) -> tuple[SerialSet, int]:
    """The serial numbers of the entries between start and end, and how many entries.

    The one loop over every entry of a CRL, kept tight: each entry is SEQUENCE { serial
    INTEGER, revocationDate Time, crlEntryExtensions? } (RFC 5280 5.1).
    """
    found: list[int] = []
    add = found.append
    i = start
    while i < end:
        length = der[i + 1]
        if length < 0x80:
            k = i + 2
        else:
            count = length & 0x7F
            k = i + 2 + count
            length = int.from_bytes(der[i + 2:k], "big")
        size = der[k + 1]
        if der[k] != 0x02 or size >= 0x80:
            raise ValueError("malformed CRL entry")
        add(hash(der[k + 2:k + 2 + size]))
        i = k + length
    if i != end:
        raise ValueError("malformed revokedCertificates")
    return SerialSet(found), len(found)


@dataclass(frozen=True)
class Idp:
    """The parts of an issuingDistributionPoint (RFC 5280 5.2.5) that decide a CRL's scope."""

    only_user: bool
    only_ca: bool
    only_attribute: bool
    some_reasons: bool
    indirect: bool
    named_point: bool


@dataclass(frozen=True)
class Listing:
    """A certificate's entry on a CRL: when it was revoked and why (RFC 5280 5.3.1 name)."""

    revoked_at: dt.datetime
    reason: str


@dataclass(frozen=True, eq=False)
class IndexedCrl:
    """One CRL as loaded (see the module docstring). ``serials`` holds the entries that speak
    for certificates of the CRL's own issuer; ``other_issuers`` those of an indirect CRL for
    other issuers (certificateIssuer, RFC 5280 5.3.3), by name key."""

    fingerprint: str
    der: bytes
    issuer: x509.Name
    issuer_key: str
    authority_key_id: bytes | None
    this_update: dt.datetime
    next_update: dt.datetime | None
    number: int | None
    delta_base: int | None
    idp: Idp | None
    unusable: str | None
    serials: SerialSet
    other_issuers: Mapping[str, frozenset[bytes]]
    entries: int
    source: str | None = None
    verified: bool | None = None
    _region: tuple[int, int] = (0, 0)

    @property
    def simple(self) -> bool:
        """A complete, direct CRL whose scope we decide ourselves: no delta, no partition by
        distribution point or reasons, not indirect, nothing critical we cannot process."""
        return (self.delta_base is None and self.unusable is None
                and (self.idp is None or not (self.idp.some_reasons or self.idp.indirect
                                              or self.idp.named_point
                                              or self.idp.only_attribute)))

    def is_current(self, moment: dt.datetime) -> bool:
        """thisUpdate <= moment <= nextUpdate (RFC 5280 6.3.3 (a)(2)); no nextUpdate: current."""
        return self.this_update <= moment and (self.next_update is None
                                               or moment <= self.next_update)

    def covers(self, is_ca: bool) -> bool:
        """Whether the CRL's scope includes a certificate of its issuer (RFC 5280 5.2.5)."""
        if self.idp is None:
            return True
        if self.idp.only_user and is_ca:
            return False
        return not (self.idp.only_ca and not is_ca)

    def lists(self, serial: int, issuer_key: str) -> bool:
        """Whether the CRL lists serial of a certificate issued by ``issuer_key``."""
        key = serial_key(serial)
        if issuer_key == self.issuer_key and self.serials.may_contain(key):
            return self._find(key) >= 0
        other = self.other_issuers.get(issuer_key)
        return other is not None and key in other

    def listing(self, serial: int) -> Listing:
        """Date and reason of serial's entry (call after lists() said True).

        Found by searching the DER for the serial's INTEGER followed by a Time, not by
        parsing every entry. Raises KeyError when the CRL does not list it.
        """
        at = self._find(serial_key(serial))
        if at < 0:
            raise KeyError(serial)
        return self._listing_at(at)

    def _find(self, key: bytes) -> int:
        """Where the revocationDate of the entry of serial content ``key`` starts, or -1.
        (A match of the serial's INTEGER followed by a Time: the entries' own layout.)"""
        needle = b"\x02" + bytes([len(key)]) + key
        start, end = self._region
        pos = self.der.find(needle, start, end)
        while pos >= 0:
            after = pos + len(needle)
            if after < end and self.der[after] in (0x17, 0x18):
                return after
            pos = self.der.find(needle, pos + 1, end)
        return -1

    def _listing_at(self, i: int) -> Listing:
        tag, j, length = _header(self.der, i)
        when = ax509.Time.load(self.der[i:j + length]).native
        reason = "unspecified"
        k = j + length
        start, end = self._region
        if k < end and self.der[k] == 0x30:
            _, m, size = _header(self.der, k)
            # An Extensions SEQUENCE holds Extension SEQUENCEs; the next entry would start
            # with its serial INTEGER instead.
            if m < end and self.der[m] == 0x30:
                exts = acrl.CRLEntryExtensions.load(self.der[k:m + size])
                for ext in exts:
                    if ext["extn_id"].native == "crl_reason":
                        reason = _REASON_NAMES.get(ext["extn_value"].parsed.native, "unspecified")
        return Listing(when.astimezone(dt.UTC), reason)

    def crypto(self) -> x509.CertificateRevocationList:
        """The CRL as cryptography reads it (parsed again: kept CRLs hold only their DER)."""
        return x509.load_der_x509_crl(self.der)


# asn1crypto's names of CRLReason -> RFC 5280's.
_REASON_NAMES = {
    "unspecified": "unspecified", "key_compromise": "keyCompromise",
    "ca_compromise": "cACompromise", "affiliation_changed": "affiliationChanged",
    "superseded": "superseded", "cessation_of_operation": "cessationOfOperation",
    "certificate_hold": "certificateHold", "remove_from_crl": "removeFromCRL",
    "privilege_withdrawn": "privilegeWithdrawn", "aa_compromise": "aACompromise",
}


def _idp(crl: x509.CertificateRevocationList) -> Idp | None:
    try:
        value = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return None
    return Idp(
        only_user=value.only_contains_user_certs,
        only_ca=value.only_contains_ca_certs,
        only_attribute=value.only_contains_attribute_certs,
        some_reasons=value.only_some_reasons is not None,
        indirect=value.indirect_crl,
        named_point=value.full_name is not None or value.relative_name is not None,
    )


def _may_have_critical_entry_extension(der: bytes, start: int, end: int) -> bool:
    """Whether some entry between start and end may carry a critical extension: an OID
    followed by "critical TRUE" and the OCTET STRING of extnValue (RFC 5280 4.1). A match
    inside other bytes only costs the slow check, never a wrong answer."""
    pos = der.find(_CRITICAL_TRUE, start, end)
    while pos >= 0:
        if pos + 3 < end and der[pos + 3] == 0x04:
            for size in range(3, 24):
                if pos - size - 2 >= start and der[pos - size - 2] == 0x06 \
                        and der[pos - size - 1] == size:
                    return True
        pos = der.find(_CRITICAL_TRUE, pos + 1, end)
    return False


def _unknown_critical(crl: x509.CertificateRevocationList, der: bytes,
                      region: tuple[int, int]) -> str | None:
    for ext in crl.extensions:
        if ext.critical and ext.oid not in _KNOWN_CRL_EXTENSIONS:
            return f"unsupported critical CRL extension {ext.oid.dotted_string}"
    if not _may_have_critical_entry_extension(der, *region):
        return None
    for entry in crl:
        for ext in entry.extensions:
            if ext.critical and ext.oid not in _KNOWN_ENTRY_EXTENSIONS:
                return f"unsupported critical CRL entry extension {ext.oid.dotted_string}"
    return None


def _indirect_entries(crl: x509.CertificateRevocationList, own: str
                      ) -> tuple[SerialSet, dict[str, frozenset[bytes]]]:
    """Entries of an indirect CRL by certificate issuer: RFC 5280 5.3.3, a certificateIssuer
    entry extension names the issuer of that entry and of the following ones."""
    current = own
    found: dict[str, set[bytes]] = {}
    for entry in crl:
        try:
            names = entry.extensions.get_extension_for_class(x509.CertificateIssuer).value
        except x509.ExtensionNotFound:
            pass
        else:
            directory = [n.value for n in names if isinstance(n, x509.DirectoryName)]
            if directory:
                current = name_key(directory[0])
        found.setdefault(current, set()).add(serial_key(entry.serial_number))
    mine = SerialSet(hash(k) for k in found.pop(own, set()))
    return mine, {k: frozenset(v) for k, v in found.items()}


def parse_crl(data: bytes | x509.CertificateRevocationList, *, source: str | None = None,
              verified: bool | None = None) -> IndexedCrl:
    """Parse a CRL (DER bytes or cryptography's object) once into an IndexedCrl.

    cryptography's object is only used for the CRL's header and extensions and dropped before
    the entries are walked, so a big CRL is never held twice while its index is built.
    Raises ValueError for a CRL that cannot be read.
    """
    crl = x509.load_der_x509_crl(data) if isinstance(data, bytes | bytearray) else data
    der = crl.public_bytes(Encoding.DER) if not isinstance(data, bytes | bytearray) else bytes(data)
    try:
        region = _entries_region(der)
    except IndexError:
        raise ValueError("truncated CRL") from None
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        authority_key_id = aki.key_identifier
    except x509.ExtensionNotFound:
        authority_key_id = None
    try:
        number: int | None = crl.extensions.get_extension_for_class(
            x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    try:
        base: int | None = crl.extensions.get_extension_for_class(
            x509.DeltaCRLIndicator).value.crl_number
    except x509.ExtensionNotFound:
        base = None
    idp = _idp(crl)
    issuer = crl.issuer
    own = name_key(issuer)
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    unusable = _unknown_critical(crl, der, region)
    other: dict[str, frozenset[bytes]] = {}
    if idp is not None and idp.indirect:
        serials, other = _indirect_entries(crl, own)
        entries = len(crl)
        del crl
    else:
        del crl
        try:
            serials, entries = _walk_serials(der, *region)
        except IndexError:
            raise ValueError("truncated CRL entries") from None
    return IndexedCrl(
        fingerprint=hashlib.sha256(der).hexdigest(),
        der=der,
        issuer=issuer,
        issuer_key=own,
        authority_key_id=authority_key_id,
        this_update=this_update,
        next_update=next_update,
        number=number,
        delta_base=base,
        idp=idp,
        unusable=unusable,
        serials=serials,
        other_issuers=other,
        entries=entries,
        source=source,
        verified=verified,
        _region=region,
    )


@dataclass
class SignatureMemo:
    """Which signature verified with which key, by (signed object, signer) fingerprints.

    Shared by every TrustAnchors of a process (CachedAnchors hands it on at each reload), so a
    CRL's signature is verified once, not per message. Thread-safe enough for its use: a lost
    race computes the same answer twice.
    """

    limit: int = 200_000
    _items: dict[tuple[str, str], bool] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str]) -> bool | None:
        return self._items.get(key)

    def put(self, key: tuple[str, str], value: bool) -> None:
        with self._lock:
            if len(self._items) >= self.limit:
                self._items.clear()
            self._items[key] = value

    def crl_signed_by(self, crl: IndexedCrl, signer: x509.Certificate, signer_fp: str) -> bool:
        """Whether signer's key verifies crl's signature (memoized)."""
        key = (crl.fingerprint, signer_fp)
        known = self.get(key)
        if known is not None:
            return known
        try:
            public = signer.public_key()
            ok = isinstance(public, SIGNING_KEYS) and crl.crypto().is_signature_valid(public)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            ok = False
        self.put(key, ok)
        return ok

    def cert_signed_by(self, subject: x509.Certificate, subject_fp: str,
                       issuer: x509.Certificate, issuer_fp: str) -> bool:
        """Whether issuer's key verifies subject's signature (memoized)."""
        key = (subject_fp, issuer_fp)
        known = self.get(key)
        if known is not None:
            return known
        try:
            subject.verify_directly_issued_by(issuer)
            ok = True
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            ok = False
        self.put(key, ok)
        return ok


class CrlIndex:
    """IndexedCrls grouped by issuer name key (immutable once built)."""

    def __init__(self, crls: Iterable[IndexedCrl]) -> None:
        self.all: tuple[IndexedCrl, ...] = tuple(crls)
        groups: dict[str, list[IndexedCrl]] = {}
        for crl in self.all:
            groups.setdefault(crl.issuer_key, []).append(crl)
        # Newest first: a later thisUpdate, then a higher number, is tried first.
        self._by_issuer = {
            key: tuple(sorted(group, key=lambda c: (c.this_update, c.number or 0),
                              reverse=True))
            for key, group in groups.items()
        }

    def for_issuer(self, key: str) -> tuple[IndexedCrl, ...]:
        return self._by_issuer.get(key, ())

    def __len__(self) -> int:
        return len(self.all)
