"""SignedData (RFC 5652 5.1) and SignerInfo (5.3) read by offsets, for the plain DER shape
that mail carries.

Why: reading a SignerInfo field by field through asn1crypto cost about a tenth of a
millisecond per message, more than verifying its RSA signature (bench/cost_bench.py). This
reader walks the one shape every mail client we know writes and hands back the bytes of each
part; smimegate.smime.verify turns them into its values through the same functions (and the
same caches) as the asn1crypto path.

It never rejects anything: whatever is not exactly that shape makes ``read`` return None, and
the caller reads the SignerInfo with asn1crypto as before, which accepts or rejects it as it
always has. So it only ever has to be stricter than asn1crypto, never as lenient; the shape:

- definite lengths everywhere, in their shortest form (X.690 10.1), one-octet tags;
- version an INTEGER of one octet, 1 or 3 (RFC 5652 5.3);
- sid an IssuerAndSerialNumber SEQUENCE or a primitive [0] subjectKeyIdentifier;
- digestAlgorithm and signatureAlgorithm SEQUENCEs (read by verify, by their DER);
- signedAttrs, when present, a constructed [0] whose elements are each a SEQUENCE of exactly
  an OBJECT IDENTIFIER and a SET; the values inside are kept as their DER;
- signature a primitive OCTET STRING;
- no unsignedAttrs (countersignatures go the asn1crypto way), nothing after the signature.

``read_signed_data`` walks the frame around them in the same spirit: a ContentInfo of exactly
id-signedData and a constructed [0]; a SignedData of version 1 or 3, a SET of digest
AlgorithmIdentifier SEQUENCEs, an EncapsulatedContentInfo of an OID and, when that is id-data,
optionally a constructed [0] holding one primitive OCTET STRING; optionally certificates as a constructed [0]
of plain certificate SEQUENCEs; no crls; signerInfos a SET of SEQUENCEs; nothing after the
ContentInfo.

``definite_signed_data`` lets NSS's SignedData take that way too. Thunderbird writes the frame
in BER: indefinite lengths (X.690 8.1.3.6) and eContent as a constructed OCTET STRING
(X.690 8.7.3). It writes the same frame with definite lengths and eContent as one primitive
OCTET STRING, and copies every element inside the frame (AlgorithmIdentifiers, certificates,
CRLs, SignerInfos) byte for byte, so that asn1crypto reads the result exactly as it reads the
original: the same values, the same bytes signed. NSS writes those inner elements in DER
(they are signed, or hashed to name a certificate), so the result then has the plain shape.

tests/unit/smime/test_signer_der.py feeds the corpora and mutants of them to both readers and
requires the same results wherever this one does not decline, SignerInfo by SignerInfo and
for whole SignedData.
"""

from __future__ import annotations

from dataclasses import dataclass

from smimegate.smime import ber
from smimegate.smime.errors import Malformed

_SEQUENCE, _SET, _INTEGER, _OCTET_STRING, _OID = 0x30, 0x31, 0x02, 0x04, 0x06
_CONTEXT_0_PRIMITIVE, _CONTEXT_0_CONSTRUCTED = 0x80, 0xA0


@dataclass(frozen=True)
class Attribute:
    """One Attribute (RFC 5652 5.3): the contents of its type OID, its own DER, and the DER of
    each of its values."""

    type: bytes
    der: bytes
    values: tuple[bytes, ...]


@dataclass(frozen=True)
class SignerFields:
    """The parts of a SignerInfo as bytes. ``signed_attrs_contents`` is what lies inside the
    [0] IMPLICIT tag (RFC 5652 5.4 signs it under a SET OF tag); None when absent."""

    sid: bytes
    digest_algorithm: bytes
    signed_attrs: tuple[Attribute, ...] | None
    signed_attrs_contents: bytes | None
    signature_algorithm: bytes
    signature: bytes


# The DER of id-signedData (RFC 5652 5.1) as an OBJECT IDENTIFIER element, and the contents of
# id-data's (RFC 5652 4).
_SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")
_DATA_OID_CONTENTS = bytes.fromhex("2a864886f70d010701")
_DATA_OID = bytes.fromhex("0609") + _DATA_OID_CONTENTS


@dataclass(frozen=True)
class SignedDataFields:
    """The parts of a SignedData as bytes. ``certificates``: the DER of the whole [0] element
    (None when absent) and of each certificate in it; ``content``: the eContent octets, None
    when absent (a detached signature)."""

    digest_algorithms: tuple[bytes, ...]
    content_type: bytes
    content: bytes | None
    certificates: bytes | None
    certificate_list: tuple[bytes, ...]
    signer_infos: tuple[bytes, ...]


class Decline(Exception):
    """Not the plain shape (element, children and sequences raise it; envelope.py reads
    RecipientInfos with them too)."""


def read(der: bytes) -> SignerFields | None:
    """The parts of the SignerInfo ``der`` (exactly one element), or None when it is not in the
    plain DER shape (module docstring). Never raises."""
    try:
        return _read(der)
    except Decline:
        return None


Element = tuple[int, int, int, int]


def element(der: bytes, pos: int, limit: int) -> tuple[int, int, int]:
    """(identifier octet, contents start, end) of the element at ``pos``, which must end by
    ``limit``; Decline unless its tag is one octet and its length definite and shortest."""
    if pos + 2 > limit:
        raise Decline
    identifier = der[pos]
    if identifier & 0x1F == 0x1F:
        raise Decline  # high tag number form (X.690 8.1.2.4)
    first = der[pos + 1]
    if first < 0x80:
        body, length = pos + 2, first
    else:
        count = first & 0x7F
        body = pos + 2 + count
        if count == 0 or count > 4 or body > limit:
            raise Decline  # indefinite (X.690 8.1.3.6), or beyond any mail
        length = int.from_bytes(der[pos + 2 : body], "big")
        # X.690 10.1: the long form only when needed, in as few octets as possible.
        if length < 0x80 or der[pos + 2] == 0:
            raise Decline
    end = body + length
    if end > limit:
        raise Decline
    return identifier, body, end


def children(der: bytes, body: int, end: int) -> list[Element]:
    """(identifier, start, contents start, end) of each element in ``der[body:end]``."""
    out = []
    pos = body
    while pos < end:
        identifier, child_body, child_end = element(der, pos, end)
        out.append((identifier, pos, child_body, child_end))
        pos = child_end
    return out


def _sequence(der: bytes) -> list[Element]:
    """The elements inside ``der``, which must be one SEQUENCE and nothing after it."""
    identifier, body, end = element(der, 0, len(der))
    if identifier != _SEQUENCE or end != len(der):
        raise Decline
    return children(der, body, end)


def _version(der: bytes, item: Element) -> None:
    """Decline unless ``item`` is an INTEGER 1 or 3 in one octet (RFC 5652 5.1, 5.3)."""
    if item[0] != _INTEGER or der[item[2] : item[3]] not in (b"\x01", b"\x03"):
        raise Decline


def sequences(der: bytes, item: Element) -> tuple[bytes, ...]:
    """The DER of each element inside ``item``; Decline unless every one is a SEQUENCE."""
    out = []
    for child in children(der, item[2], item[3]):
        if child[0] != _SEQUENCE:
            raise Decline
        out.append(der[child[1] : child[3]])
    return tuple(out)


def _read(der: bytes) -> SignerFields:
    parts = _sequence(der)
    if len(parts) not in (5, 6):
        raise Decline
    version, sid, digest = parts[0], parts[1], parts[2]
    _version(der, version)
    if sid[0] not in (_SEQUENCE, _CONTEXT_0_PRIMITIVE) or digest[0] != _SEQUENCE:
        raise Decline
    attrs: tuple[Attribute, ...] | None = None
    attrs_contents: bytes | None = None
    rest = parts[3:]
    if len(rest) == 3:
        block = rest[0]
        if block[0] != _CONTEXT_0_CONSTRUCTED:
            raise Decline
        attrs = tuple(_attribute(der, child) for child in children(der, block[2], block[3]))
        attrs_contents = der[block[2] : block[3]]
        rest = rest[1:]
    signature_algorithm, signature = rest
    if signature_algorithm[0] != _SEQUENCE or signature[0] != _OCTET_STRING:
        raise Decline
    return SignerFields(
        sid=der[sid[1] : sid[3]],
        digest_algorithm=der[digest[1] : digest[3]],
        signed_attrs=attrs,
        signed_attrs_contents=attrs_contents,
        signature_algorithm=der[signature_algorithm[1] : signature_algorithm[3]],
        signature=der[signature[2] : signature[3]],
    )


def _attribute(der: bytes, item: Element) -> Attribute:
    identifier, start, body, end = item
    if identifier != _SEQUENCE:
        raise Decline
    parts = children(der, body, end)
    if len(parts) != 2 or parts[0][0] != _OID or parts[1][0] != _SET:
        raise Decline
    values = tuple(der[value[1] : value[3]] for value in children(der, parts[1][2], parts[1][3]))
    return Attribute(type=der[parts[0][2] : parts[0][3]], der=der[start:end], values=values)


def read_signed_data(der: bytes) -> SignedDataFields | None:
    """The parts of the ContentInfo(SignedData) ``der``, or None when it is not in the plain
    DER shape (module docstring). Never raises."""
    try:
        return _read_signed_data(der)
    except Decline:
        return None


def _read_signed_data(der: bytes) -> SignedDataFields:
    outer = _sequence(der)
    if (len(outer) != 2 or der[outer[0][1] : outer[0][3]] != _SIGNED_DATA_OID
            or outer[1][0] != _CONTEXT_0_CONSTRUCTED):
        raise Decline
    inner = children(der, outer[1][2], outer[1][3])
    if len(inner) != 1 or inner[0][0] != _SEQUENCE:
        raise Decline
    parts = children(der, inner[0][2], inner[0][3])
    if len(parts) not in (4, 5):
        raise Decline
    version, digests, encap, infos = parts[0], parts[1], parts[2], parts[-1]
    _version(der, version)
    if digests[0] != _SET or encap[0] != _SEQUENCE or infos[0] != _SET:
        raise Decline
    content_type, content = _encapsulated(der, encap)
    certificates: bytes | None = None
    certificate_list: tuple[bytes, ...] = ()
    if len(parts) == 5:
        block = parts[3]
        if block[0] != _CONTEXT_0_CONSTRUCTED:
            raise Decline  # crls [1], or anything else
        # Only certificate SEQUENCEs: other CertificateChoices (attribute certificates ...)
        # are [0]..[3].
        certificate_list = sequences(der, block)
        certificates = der[block[1] : block[3]]
    return SignedDataFields(sequences(der, digests), content_type, content, certificates,
                            certificate_list, sequences(der, infos))


def definite_signed_data(der: bytes) -> bytes | None:
    """The ContentInfo(SignedData) ``der`` with its frame in definite lengths and its eContent
    one primitive OCTET STRING, the elements inside the frame copied as they are (module
    docstring); None when ``der`` is not such a ContentInfo, also in BER, with nothing after
    it, or when an element to copy has an indefinite length itself. Never raises."""
    try:
        return _definite_signed_data(memoryview(der))
    except (Decline, Malformed):
        return None


def _definite_signed_data(buf: memoryview) -> bytes:
    memo: ber.Memo = {}  # each indefinite-length element is walked once, not once per level
    outer = ber.read(buf, 0, len(buf), "ContentInfo", memo=memo)
    if outer.after != len(buf) or not outer.is_(ber.UNIVERSAL, 16, True):
        raise Decline
    parts = ber.children(buf, outer, "ContentInfo", memo)
    if (len(parts) != 2 or _verbatim(buf, parts[0]) != _SIGNED_DATA_OID
            or not parts[1].is_(ber.CONTEXT, 0, True)):
        raise Decline
    inner = ber.children(buf, parts[1], "ContentInfo content", memo)
    if len(inner) != 1 or not inner[0].is_(ber.UNIVERSAL, 16, True):
        raise Decline
    fields = ber.children(buf, inner[0], "SignedData", memo)
    if len(fields) < 4:
        raise Decline
    # version, digestAlgorithms, encapContentInfo, [certificates], [crls], signerInfos
    body = [_verbatim(buf, fields[0]), _rewrapped(buf, fields[1], memo),
            _encapsulated_definite(buf, fields[2], memo)]
    body += [_rewrapped(buf, f, memo) for f in fields[3:]]
    signed = ber.der_header(_SEQUENCE, sum(map(len, body))) + b"".join(body)
    content = ber.der_header(_CONTEXT_0_CONSTRUCTED, len(signed)) + signed
    oid = _SIGNED_DATA_OID
    return ber.der_header(_SEQUENCE, len(oid) + len(content)) + oid + content


def _verbatim(buf: memoryview, tlv: ber.Tlv) -> bytes:
    """An element's bytes as they are; Decline when its own length is indefinite."""
    if tlv.end != tlv.after:
        raise Decline
    return bytes(buf[tlv.start : tlv.after])


def _identifier(buf: memoryview, tlv: ber.Tlv) -> int:
    if buf[tlv.start] & 0x1F == 0x1F:
        raise Decline  # high tag number form (X.690 8.1.2.4): not in a SignedData frame
    return int(buf[tlv.start])


def _rewrapped(buf: memoryview, tlv: ber.Tlv, memo: ber.Memo) -> bytes:
    """A constructed element of the frame in a definite length, its elements verbatim."""
    if not tlv.constructed:
        raise Decline
    inside = b"".join(_verbatim(buf, child)
                      for child in ber.children(buf, tlv, "SignedData", memo))
    return ber.der_header(_identifier(buf, tlv), len(inside)) + inside


def _encapsulated_definite(buf: memoryview, tlv: ber.Tlv, memo: ber.Memo) -> bytes:
    """EncapsulatedContentInfo in definite lengths, eContent one primitive OCTET STRING."""
    if not tlv.is_(ber.UNIVERSAL, 16, True):
        raise Decline
    parts = ber.children(buf, tlv, "EncapsulatedContentInfo", memo)
    if not parts or len(parts) > 2:
        raise Decline
    inside = _verbatim(buf, parts[0])
    if len(parts) == 2:
        wrapper = parts[1]
        if not wrapper.is_(ber.CONTEXT, 0, True):
            raise Decline
        if inside != _DATA_OID:
            # Another content type: asn1crypto may read its eContent by that type (a version 1
            # SignedData, RFC 2315 9.1), so it stays as it is.
            kept = inside + _verbatim(buf, wrapper)
            return ber.der_header(_SEQUENCE, len(kept)) + kept
        octets = ber.children(buf, wrapper, "eContent", memo)
        if len(octets) != 1 or not octets[0].is_(ber.UNIVERSAL, 4):
            raise Decline
        data = b"".join(ber.octet_chunks(buf, octets[0], "eContent", memo=memo))
        string = ber.der_header(_OCTET_STRING, len(data)) + data
        inside += ber.der_header(_CONTEXT_0_CONSTRUCTED, len(string)) + string
    return ber.der_header(_SEQUENCE, len(inside)) + inside


def _encapsulated(der: bytes, encap: Element) -> tuple[bytes, bytes | None]:
    """(eContentType OID contents, eContent octets or None) of an EncapsulatedContentInfo."""
    parts = children(der, encap[2], encap[3])
    if not parts or len(parts) > 2 or parts[0][0] != _OID:
        raise Decline
    content_type = der[parts[0][2] : parts[0][3]]
    if len(parts) == 1:
        return content_type, None
    if content_type != _DATA_OID_CONTENTS or parts[1][0] != _CONTEXT_0_CONSTRUCTED:
        # asn1crypto reads a version 1 SignedData's eContent by its type (PKCS #7 style,
        # RFC 2315 9.1): only id-data is the OCTET STRING that the other path gives.
        raise Decline
    octets = children(der, parts[1][2], parts[1][3])
    if len(octets) != 1 or octets[0][0] != _OCTET_STRING:
        raise Decline  # none, several, or a constructed (BER, X.690 8.7.3) OCTET STRING
    return content_type, der[octets[0][2] : octets[0][3]]
