"""The outer frame of EnvelopedData (RFC 5652 6.1) and AuthEnvelopedData (RFC 5083 2.1).

Written as DER around the ciphertext in one join, and read with ``ber`` offsets, so that the bulk
ciphertext is never copied by the ASN.1 layer (see ber.py for why). The small parts in between
(RecipientInfos, AlgorithmIdentifier) go through asn1crypto.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from asn1crypto import algos as aalgos
from asn1crypto import cms as acms
from asn1crypto import core

from smimegate.smime import ber, signer_der
from smimegate.smime.cms import MAX_DER_BYTES, guard, parsed_der
from smimegate.smime.errors import Malformed

ENVELOPED_DATA_OID = "1.2.840.113549.1.7.3"  # RFC 5652 6.1
AUTH_ENVELOPED_DATA_OID = "1.2.840.113549.1.9.16.1.23"  # RFC 5083 1.1
DATA_OID = "1.2.840.113549.1.7.1"  # RFC 5652 4

EnvelopeKind = Literal["enveloped", "auth-enveloped"]


class AlgorithmIdentifier(core.Sequence):  # type: ignore[misc]
    """RFC 5280 4.1.1.2 without asn1crypto's forced NULL parameters (RFC 4055 2.1: absent)."""

    _fields = [
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class GCMParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 3.2: aes-nonce (12 octets recommended), aes-ICVlen DEFAULT 12."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class EccCmsSharedInfo(core.Sequence):  # type: ignore[misc]
    """RFC 5753 7.2 ECC-CMS-SharedInfo (also the HKDF info of RFC 8418 2)."""

    _fields = [
        ("key_info", AlgorithmIdentifier),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


class OaepParams(core.Sequence):  # type: ignore[misc]
    """RFC 4055 4.1 RSAES-OAEP-params, with our AlgorithmIdentifier so SHA-2 has no NULL."""

    _fields = [
        ("hash_func", AlgorithmIdentifier, {"explicit": 0, "optional": True}),
        ("mask_gen_func", AlgorithmIdentifier, {"explicit": 1, "optional": True}),
        ("p_source_func", AlgorithmIdentifier, {"explicit": 2, "optional": True}),
    ]


MAC_HEADER = b"\x04\x10"  # the mac OCTET STRING of AuthEnvelopedData: 16-byte GCM tag


def head(
    kind: EnvelopeKind,
    recipient_infos: Sequence[acms.RecipientInfo],
    algorithm_der: bytes,
    ciphertext_length: int,
) -> bytes:
    """DER of a ContentInfo up to the first ciphertext byte.

    The complete DER is ``head + ciphertext`` (EnvelopedData) or ``head + ciphertext +
    MAC_HEADER + tag`` (AuthEnvelopedData, 16-byte tag), so the caller can write the bulk
    straight into the output. The version follows RFC 5652 6.1 (0 when every RecipientInfo is
    version 0, else 2) and RFC 5083 2.1 (always 0). RecipientInfos is a SET OF, so DER
    (X.690 11.6) sorts the encodings; strict readers (pyca/cryptography) reject any other order.
    """
    all_v0 = all(info.name == "ktri" and info.chosen["version"].native == "v0"
                 for info in recipient_infos)
    return head_der(kind, [bytes(info.dump()) for info in recipient_infos], all_v0,
                    algorithm_der, ciphertext_length)


def head_der(
    kind: EnvelopeKind,
    recipient_infos: Sequence[bytes],
    all_v0: bool,
    algorithm_der: bytes,
    ciphertext_length: int,
    *,
    has_ori: bool = False,
) -> bytes:
    """``head`` over RecipientInfos as DER; ``all_v0``: every one is a version 0 ktri;
    ``has_ori``: one is an ori (KEMRecipientInfo), which makes EnvelopedData version 3."""
    infos = b"".join(sorted(recipient_infos))
    infos_der = ber.der_header(0x31, len(infos)) + infos
    if kind == "enveloped":
        version = 3 if has_ori else 0 if all_v0 else 2
        outer_oid_der = _ENVELOPED_DATA_DER
        mac_len = 0
    else:
        version = 0
        outer_oid_der = _AUTH_ENVELOPED_DATA_DER
        mac_len = len(MAC_HEADER) + 16
    ct_header = ber.der_header(0x80, ciphertext_length)  # [0] IMPLICIT OCTET STRING
    data_oid = _DATA_DER
    eci_len = len(data_oid) + len(algorithm_der) + len(ct_header) + ciphertext_length
    eci_header = ber.der_header(0x30, eci_len)
    version_der = bytes((0x02, 0x01, version))  # CMSVersion INTEGER
    body_len = len(version_der) + len(infos_der) + len(eci_header) + eci_len + mac_len
    body_header = ber.der_header(0x30, body_len)
    explicit_len = len(body_header) + body_len
    explicit_header = ber.der_header(0xA0, explicit_len)
    info_len = len(outer_oid_der) + len(explicit_header) + explicit_len
    return b"".join(
        (
            ber.der_header(0x30, info_len),
            outer_oid_der,
            explicit_header,
            body_header,
            version_der,
            infos_der,
            eci_header,
            data_oid,
            algorithm_der,
            ct_header,
        )
    )


_ENVELOPED_DATA_DER = bytes(core.ObjectIdentifier(ENVELOPED_DATA_OID).dump())
_AUTH_ENVELOPED_DATA_DER = bytes(core.ObjectIdentifier(AUTH_ENVELOPED_DATA_OID).dump())
_DATA_DER = bytes(core.ObjectIdentifier(DATA_OID).dump())


@dataclass(frozen=True)
class Ktri:
    """A KeyTransRecipientInfo (RFC 5652 6.2.1) read by plain_ktris: the DER of its rid and
    keyEncryptionAlgorithm, and the encryptedKey octets."""

    rid: bytes
    key_encryption_algorithm: bytes
    encrypted_key: bytes


@dataclass(frozen=True)
class Envelope:
    """What ``read`` found. ``ciphertext`` are views into the caller's buffer (not copies).

    recipient_infos: as plain_ktris read them when every one is a plain DER ktri (the common
    case), else as asn1crypto read them (recipient_infos_asn1).
    auth_attrs_der: RFC 5083 2.1 authAttrs re-tagged as SET OF (the GCM AAD), or None.
    """

    kind: EnvelopeKind
    recipient_infos: acms.RecipientInfos | tuple[Ktri, ...]
    content_type: str
    algorithm: aalgos.EncryptionAlgorithm
    ciphertext: tuple[memoryview, ...]
    mac: bytes | None
    auth_attrs_der: bytes | None


def read(der: bytes | memoryview) -> Envelope:
    """Locate the parts of an EnvelopedData or AuthEnvelopedData ContentInfo.

    Raises Malformed for anything that is not one of the two, or not well-formed BER.
    """
    buf = memoryview(der)
    if len(buf) == 0:
        raise Malformed("CMS: empty input")
    if len(buf) > MAX_DER_BYTES:
        raise Malformed(f"CMS: {len(buf)} bytes is over the limit of {MAX_DER_BYTES}")
    what = "CMS ContentInfo"
    # Each indefinite-length element (NSS writes them) is walked once, not once per level.
    memo: ber.Memo = {}
    top = ber.read(buf, 0, len(buf), what, memo=memo)
    if top.after != len(buf):
        raise Malformed(f"{what}: {len(buf) - top.after} bytes of trailing data")
    if not top.is_(ber.UNIVERSAL, 16, True):
        raise Malformed(f"{what}: not a SEQUENCE")
    parts = ber.children(buf, top, what, memo)
    if len(parts) != 2 or not parts[0].is_(ber.UNIVERSAL, 6, False):
        raise Malformed(f"{what}: expected contentType and content")
    if not parts[1].is_(ber.CONTEXT, 0, True):
        raise Malformed(f"{what}: content is not [0] EXPLICIT")
    outer_oid = _oid(buf, parts[0], what)
    if outer_oid == ENVELOPED_DATA_OID:
        kind: EnvelopeKind = "enveloped"
    elif outer_oid == AUTH_ENVELOPED_DATA_OID:
        kind = "auth-enveloped"
    else:
        raise Malformed(f"{what}: content type {outer_oid} is not (Auth)EnvelopedData")
    what = "EnvelopedData" if kind == "enveloped" else "AuthEnvelopedData"
    inner = ber.children(buf, parts[1], what, memo)
    if len(inner) != 1 or not inner[0].is_(ber.UNIVERSAL, 16, True):
        raise Malformed(f"{what}: not a SEQUENCE")
    fields = ber.children(buf, inner[0], what, memo)
    return _fields(buf, fields, kind, what, memo)


def _fields(buf: memoryview, fields: list[ber.Tlv], kind: EnvelopeKind, what: str,
            memo: ber.Memo) -> Envelope:
    index = 0

    def take() -> ber.Tlv:
        nonlocal index
        if index >= len(fields):
            raise Malformed(f"{what}: missing fields")
        index += 1
        return fields[index - 1]

    if not take().is_(ber.UNIVERSAL, 2, False):
        raise Malformed(f"{what}: no version")
    field = take()
    if field.is_(ber.CONTEXT, 0, True):  # originatorInfo: certificates we do not need
        field = take()
    if not field.is_(ber.UNIVERSAL, 17, True):
        raise Malformed(f"{what}: no RecipientInfos SET")
    infos_der = bytes(buf[field.start : field.after])
    infos: acms.RecipientInfos | tuple[Ktri, ...] | None = plain_ktris(infos_der)
    if infos is None:
        infos = recipient_infos_asn1(infos_der, what)
    eci = take()
    if not eci.is_(ber.UNIVERSAL, 16, True):
        raise Malformed(f"{what}: no EncryptedContentInfo")
    content_type, algorithm, ciphertext = _content_info(buf, eci, what, memo)
    mac = auth_attrs = None
    if kind == "auth-enveloped":
        field = take()
        if field.is_(ber.CONTEXT, 1, True):
            # RFC 5083 2.1: the AAD is the DER of authAttrs with the EXPLICIT SET OF tag.
            with guard(f"{what} authAttrs"):
                body = bytes(buf[field.body : field.end])
                attrs = acms.CMSAttributes.load(ber.der_header(0x31, len(body)) + body)
                auth_attrs = attrs.dump(force=True)
            field = take()
        if not field.is_(ber.UNIVERSAL, 4, False):
            raise Malformed(f"{what}: no mac OCTET STRING")
        mac = bytes(buf[field.body : field.end])
    for rest in fields[index:]:
        # unprotectedAttrs [1] / unauthAttrs [2]: allowed, not used.
        allowed = 2 if kind == "auth-enveloped" else 1
        if not rest.is_(ber.CONTEXT, allowed, True):
            raise Malformed(f"{what}: unexpected trailing field")
    return Envelope(kind, infos, content_type, algorithm, tuple(ciphertext), mac, auth_attrs)


def recipient_infos_asn1(der: bytes, what: str) -> acms.RecipientInfos:
    """The RecipientInfos SET ``der`` read in full by asn1crypto. Raises Malformed."""
    with guard(f"{what} RecipientInfos"):
        infos = acms.RecipientInfos.load(der)
        for info in infos:
            _force_parse(info)  # the lazy parse now, inside the guard
    if len(infos) == 0:
        raise Malformed(f"{what}: no recipients")
    return infos


def plain_ktris(der: bytes) -> tuple[Ktri, ...] | None:
    """The RecipientInfos SET ``der`` when it holds one or more KeyTransRecipientInfos and
    nothing else, each in plain DER (signer_der's walker: definite shortest lengths, one-octet
    tags): version 0 or 2, a rid that is an IssuerAndSerialNumber SEQUENCE or a primitive [0]
    subjectKeyIdentifier, a keyEncryptionAlgorithm SEQUENCE, a primitive encryptedKey. Its rid
    and keyEncryptionAlgorithm are read in full by asn1crypto once per DER, as
    recipient_infos_asn1 reads them. None otherwise (then recipient_infos_asn1 reads the SET
    and accepts or refuses it as it always has): reading a RecipientInfos through asn1crypto
    cost 25 us a message (bench/cost_bench.py). Never raises."""
    try:
        identifier, body, end = signer_der.element(der, 0, len(der))
        if identifier != 0x31 or end != len(der):
            return None
        found = []
        for info in signer_der.sequences(der, (identifier, 0, body, end)):
            parts = signer_der.children(info, 2 if info[1] < 0x80 else 2 + (info[1] & 0x7F),
                                        len(info))
            if (len(parts) != 4 or parts[0][0] != 0x02 or parts[1][0] not in (0x30, 0x80)
                    or parts[2][0] != 0x30 or parts[3][0] != 0x04
                    or info[parts[0][2] : parts[0][3]] not in (b"\x00", b"\x02")):
                return None
            rid, algorithm = (info[p[1] : p[3]] for p in parts[1:3])
            if not (_read_in_full(rid, acms.RecipientIdentifier)
                    and _read_in_full(algorithm, acms.KeyEncryptionAlgorithm)):
                return None
            found.append(Ktri(rid, algorithm, info[parts[3][2] : parts[3][3]]))
    except signer_der.Decline:
        return None
    return tuple(found) if found else None


def _read_in_full(der: bytes, spec: type[core.Asn1Value]) -> bool:
    """Whether asn1crypto reads ``der`` as ``spec`` in full (_force_parse's test), once per
    DER."""
    with _READ_BEFORE_LOCK:
        if der in _READ_BEFORE:
            return True
    try:
        _ = spec.load(der).native
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        return False
    with _READ_BEFORE_LOCK:
        if len(_READ_BEFORE) > 4096:
            _READ_BEFORE.clear()
        _READ_BEFORE.add(der)
    return True


# DER of recipient identifiers and key encryption algorithms already read in full: the same
# few come back with every message (bench/cost_bench.py: reading them in full took a third of
# a millisecond per message, most of it the issuer names).
_READ_BEFORE: set[bytes] = set()
_READ_BEFORE_LOCK = threading.Lock()


def _force_parse(info: acms.RecipientInfo) -> None:
    """Read a RecipientInfo in full, as ``.native`` does, so that asn1crypto raises here on
    broken input; a ktri's rid and keyEncryptionAlgorithm are read in full once per DER."""
    if info.name == "ori":
        # oriValue is ANY: read by its type's own parser (smimegate.smime.kem for id-ori-kem),
        # asn1crypto cannot read it generically (a SET OF inside an ANY).
        _ = info.chosen["ori_type"].native
        return
    if info.name != "ktri":
        _ = info.chosen.native
        return
    ktri = info.chosen
    for key in ("version", "rid", "key_encryption_algorithm", "encrypted_key"):
        child = ktri[key]
        if key in ("rid", "key_encryption_algorithm"):
            der = parsed_der(child)
            with _READ_BEFORE_LOCK:
                if der in _READ_BEFORE:
                    continue
            _ = child.native
            with _READ_BEFORE_LOCK:
                if len(_READ_BEFORE) > 4096:
                    _READ_BEFORE.clear()
                _READ_BEFORE.add(der)
        else:
            _ = child.native


def _content_info(
    buf: memoryview, eci: ber.Tlv, what: str, memo: ber.Memo
) -> tuple[str, aalgos.EncryptionAlgorithm, list[memoryview]]:
    what = f"{what} EncryptedContentInfo"
    parts = ber.children(buf, eci, what, memo)
    if len(parts) not in (2, 3) or not parts[0].is_(ber.UNIVERSAL, 6, False):
        raise Malformed(f"{what}: expected contentType, algorithm, encryptedContent")
    if not parts[1].is_(ber.UNIVERSAL, 16, True):
        raise Malformed(f"{what}: bad contentEncryptionAlgorithm")
    content_type = _oid(buf, parts[0], what)
    with guard(f"{what} algorithm"):
        algorithm = aalgos.EncryptionAlgorithm.load(bytes(buf[parts[1].start : parts[1].after]))
        _ = algorithm["algorithm"].dotted
    if len(parts) == 2:
        # RFC 5652 6.1: encryptedContent is optional (detached); we have nothing to decrypt.
        raise Malformed(f"{what}: no encryptedContent (detached content is not supported)")
    if not parts[2].is_(ber.CONTEXT, 0):
        raise Malformed(f"{what}: encryptedContent is not [0]")
    return content_type, algorithm, ber.octet_chunks(buf, parts[2], what, memo=memo)


def _oid(buf: memoryview, tlv: ber.Tlv, what: str) -> str:
    with guard(f"{what} OID"):
        return _dotted_oid(bytes(buf[tlv.start : tlv.after]))


@functools.lru_cache(maxsize=256)
def _dotted_oid(der: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's DER: by its bytes, because the same two or
    three come with every message and asn1crypto works each out anew (20 us per message,
    bench/cost_bench.py). What raises is not cached."""
    dotted: str = core.ObjectIdentifier.load(der).dotted
    return dotted
