"""Check S/MIME signatures: CMS SignedData (RFC 5652 5.6) in multipart/signed or pkcs7-mime.

Every SignerInfo is checked and reported in its own SignerResult. A signature that does not
verify, a signer whose certificate is missing, or an algorithm outside our allow-lists never
raises: the SignerResult says valid=False and why. Only a structure we cannot read at all raises
``Malformed``. Trust (path, revocation, key usage) is decided elsewhere (smimegate.pki.trust).

Choices:
- digestAlgorithms must list the digest of every signer (RFC 5652 5.1: "the message digest
  algorithms employed by all of the signers"). A signer whose digest it does not list, as in
  OpenSSL's pkcs7-empty-digest-set.eml (an empty set), is a clean failure of that signer
  (valid=False with the reason), as OpenSSL refuses it too; it never raises.
- Detached content is first verified as given; when that fails and the bytes are not in
  canonical CRLF form (files carrying LF line ends), it is retried over the canonical form.
- An eContentType other than id-data (RFC 8551 3.5.3 wants id-data) still gets its signature
  checked; a valid signature then carries a note in SignerResult.reason.
- DSA signatures (RFC 3370 3.1, RFC 4134 era mail) are verified, read only.
- Countersignatures (RFC 5652 11.4, an unsigned attribute of a SignerInfo) are verified over
  the signature value they countersign and reported as signers of their own, right after the
  signer they countersign (SignerResult.countersigns): that is how a post-quantum signature
  travels beside a classic one for readers that refuse a SignedData with a signer they cannot
  verify (smimegate.smime.sign.sign_several). Their digest need not be in digestAlgorithms
  (that set is about the content), and their signed attributes must have messageDigest and no
  contentType (11.4).
- ML-DSA signers (RFC 9882) go through smimegate.smime.mldsa: signatureAlgorithm parameters
  must be absent, and with signed attributes the digest must suit the parameter set (3.3 Table 1;
  verifiers MAY reject, we do). Without signed attributes digestAlgorithm is ignored (3.3).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from asn1crypto import algos, core
from asn1crypto import cms as acms
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from smimegate.smime import algorithms as alg
from smimegate.smime import mime, mldsa, mlkem512, signer_der
from smimegate.smime.cms import (
    Lru,
    definite_der,
    dotted,
    guard,
    identifier_to_cert_id,
    load_content_info,
    matches,
    name_to_str,
    oid_dotted,
    parsed_der,
    remember,
    to_crypto,
)
from smimegate.smime.errors import Malformed, SmimeError, Unsupported
from smimegate.smime.results import CertId, Layer, SignerResult
from smimegate.x509errors import X509_ERRORS, check_readable

_DATA = "1.2.840.113549.1.7.1"
_SIGNED_DATA = "1.2.840.113549.1.7.2"
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_SIGNING_TIME = "1.2.840.113549.1.9.5"
_SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
_COUNTERSIGNATURE = "1.2.840.113549.1.9.6"


# What asn1crypto raises on bad input when a lazily parsed field is read (as cms.guard).
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)


class _Invalid(Exception):
    """Internal: this signer does not verify, for the reason given (never leaves the module)."""


@dataclass(frozen=True)
class _Parsed:
    """The parts of one SignerInfo that verification needs, read once.

    signed_attrs: the contents of the [0] IMPLICIT signedAttrs (None when absent). Read by
    asn1crypto: attrs_by_oid holds the attributes and ``known`` is None. Read by signer_der:
    ``known`` holds the contentType OID and messageDigest value (each None when absent; each
    was found at most once with one value, and signingTime too), attrs_by_oid is empty,
    signature_params is None (RSASSA-PSS and ML-DSA signers always go the asn1crypto way) and
    unsigned_absent is True.
    """

    signer_id: CertId
    digest_oid: str
    digest_label: str
    signature_oid: str
    signature_label: str
    signature_params: algos.SignedDigestAlgorithm | None
    signed_attrs: bytes | None
    attrs_by_oid: _ByOid
    signature: bytes
    signing_time: datetime | None
    capabilities: tuple[str, ...]
    known: tuple[str | None, bytes | None] | None = None
    unsigned_absent: bool = False


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


_ByOid = dict[str, list[acms.CMSAttribute]]


def _by_oid(attrs: acms.CMSAttributes) -> _ByOid:
    """The attributes by type OID, in order: read once per signer (each lookup used to walk
    them all again, bench/cost_bench.py)."""
    out: _ByOid = {}
    for attr in attrs:
        out.setdefault(oid_dotted(attr["type"]), []).append(attr)
    return out


def _attr_values(attrs: _ByOid, oid: str) -> list[acms.CMSAttribute]:
    return attrs.get(oid, [])


def _single_value(attrs: _ByOid, oid: str, label: str) -> object | None:
    """The one value of attribute ``oid``; _Invalid when repeated (RFC 5652 5.3, 11)."""
    found = _attr_values(attrs, oid)
    if not found:
        return None
    if len(found) > 1 or len(found[0]["values"]) != 1:
        raise _Invalid(f"signed attribute {label} must occur once with one value")
    value: object = found[0]["values"][0]
    return value


def _capabilities(attrs: _ByOid) -> tuple[str, ...]:
    names: list[str] = []
    for attr in _attr_values(attrs, _SMIME_CAPABILITIES):
        # By DER: a correspondent sends the same list with every message.
        found: tuple[str, ...] = remember(_CAPABILITIES, parsed_der(attr),
                                          functools.partial(_names_of, attr))
        names.extend(found)
    return tuple(names)


_CAPABILITIES: dict[bytes, tuple[str, ...]] = {}


def _names_of(attr: acms.CMSAttribute) -> tuple[str, ...]:
    """The names in one SMIMECapabilities attribute. Raises what asn1crypto raises."""
    names: list[str] = []
    for value in attr["values"]:
        for item in value:
            oid = item["capability_id"].dotted
            names.append(alg.CAPABILITY_NAMES.get(oid, oid))
    return tuple(names)


def _signature_label(oid: str) -> str:
    if oid == alg.RSA_ENCRYPTION or oid in alg.RSA_PKCS1_OIDS:
        return "rsa"
    if oid == alg.RSASSA_PSS:
        return "rsa-pss"
    if oid == alg.EC_PUBLIC_KEY or oid in alg.ECDSA_OIDS:
        return "ecdsa"
    if oid == alg.ED25519:
        return "ed25519"
    if oid == alg.DSA or oid in alg.DSA_OIDS:
        return "dsa"
    if oid in alg.ML_DSA_OIDS:
        return alg.ML_DSA_OIDS[oid]
    return _oid_label(algos.SignedDigestAlgorithmId(oid))


def _oid_label(value: algos.SignedDigestAlgorithmId | algos.DigestAlgorithmId) -> str:
    # asn1crypto's name where it has one ("md5", "ed448"), else the dotted OID.
    native = value.native
    return str(native) if native is not None else value.dotted


def _parse_signer(info: acms.SignerInfo) -> _Parsed:
    """The SignerInfo read by signer_der when it has the plain shape, else by asn1crypto
    (_parse_signer_asn1, which raises Malformed for what it cannot read)."""
    der = definite_der(info)
    fast = _parse_signer_der(der) if der is not None else None
    return fast if fast is not None else _parse_signer_asn1(info)


def _parse_signer_asn1(info: acms.SignerInfo) -> _Parsed:
    with guard("SignerInfo"):
        signer_id = identifier_to_cert_id(info["sid"])
        digest_id = info["digest_algorithm"]["algorithm"]
        sig_alg = info["signature_algorithm"]
        sig_oid = oid_dotted(sig_alg["algorithm"])
        attrs_field = info["signed_attrs"]
        attrs: acms.CMSAttributes | None = None
        by_oid: _ByOid = {}
        signing_time: datetime | None = None
        capabilities: tuple[str, ...] = ()
        if not isinstance(attrs_field, core.Void):
            attrs = attrs_field
            by_oid = _by_oid(attrs)
            # Informative attributes: a broken one is left out of the result rather than
            # failing the signer (the ones the signature depends on are checked in _check).
            # Other attributes (RFC 4134 4.10 carries many) are never parsed.
            try:
                when = _single_value(by_oid, _SIGNING_TIME, "signingTime")
                if isinstance(when, acms.Time):
                    signing_time = when.native
            except (_Invalid, *_PARSE_ERRORS):
                signing_time = None
            try:
                capabilities = _capabilities(by_oid)
            except _PARSE_ERRORS:
                capabilities = ()
        parsed = _Parsed(
            signer_id=signer_id,
            digest_oid=oid_dotted(digest_id),
            digest_label=alg.DIGEST_NAMES.get(oid_dotted(digest_id)) or _oid_label(digest_id),
            signature_oid=sig_oid,
            signature_label=_signature_label(sig_oid),
            signature_params=sig_alg,
            signed_attrs=None if attrs is None else bytes(attrs.contents),
            attrs_by_oid=by_oid,
            signature=bytes(info["signature"].native),
            signing_time=signing_time,
            capabilities=capabilities,
        )
    return parsed


def _parse_signer_der(der: bytes) -> _Parsed | None:
    """The SignerInfo read by signer_der, its values worked out by the same functions (and
    caches) as _parse_signer_asn1; None whenever signer_der declines, a part does not read, or
    the answer would depend on what only the asn1crypto path keeps (RSASSA-PSS and ML-DSA
    parameters, repeated or multi-valued contentType / messageDigest / signingTime, a
    signingTime or SMIMECapabilities that does not read: that path leaves those out)."""
    fields = signer_der.read(der)
    if fields is None:
        return None
    try:
        signer_id = remember(_SIDS, fields.sid, functools.partial(_sid_of, fields.sid))
        digest_oid, digest_label = _digest_algorithm(fields.digest_algorithm)
        sig_oid, sig_label = _signature_algorithm(fields.signature_algorithm)
        if sig_oid == alg.RSASSA_PSS or sig_oid in alg.ML_DSA_OIDS:
            return None
        known: tuple[str | None, bytes | None] | None = None
        signing_time: datetime | None = None
        capabilities: tuple[str, ...] = ()
        if fields.signed_attrs is not None:
            known, signing_time, capabilities = _known_attributes(fields.signed_attrs)
    except (_Declined, SmimeError, *_PARSE_ERRORS):
        return None
    return _Parsed(
        signer_id=signer_id,
        digest_oid=digest_oid,
        digest_label=digest_label,
        signature_oid=sig_oid,
        signature_label=sig_label,
        signature_params=None,
        signed_attrs=fields.signed_attrs_contents,
        attrs_by_oid={},
        signature=fields.signature,
        signing_time=signing_time,
        capabilities=capabilities,
        known=known if known is not None else (None, None),
        unsigned_absent=True,
    )


class _Declined(Exception):
    """Internal: a signed attribute that only the asn1crypto path can answer for."""


def _known_attributes(attrs: Sequence[signer_der.Attribute]) -> tuple[
        tuple[str | None, bytes | None], datetime | None, tuple[str, ...]]:
    """(contentType OID, messageDigest), signingTime and SMIMECapabilities names, as
    _parse_signer_asn1 and _check read them. Raises _Declined (when that path would give
    another answer or an error) and what asn1crypto raises."""
    single: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    capabilities: list[str] = []
    for attr in attrs:
        oid = dotted(attr.type)
        counts[oid] = counts.get(oid, 0) + 1
        if oid in (_CONTENT_TYPE, _MESSAGE_DIGEST, _SIGNING_TIME):
            if counts[oid] > 1 or len(attr.values) != 1:
                raise _Declined  # RFC 5652 5.3, 11: the asn1crypto path says which
            single[oid] = attr.values[0]
        elif oid == _SMIME_CAPABILITIES:
            names: tuple[str, ...] = remember(_CAPABILITIES, attr.der,
                                              functools.partial(_names_of_der, attr.der))
            capabilities.extend(names)
    content_type = digest = None
    if (value := single.get(_CONTENT_TYPE)) is not None:
        if value[0] != 0x06:
            raise _Declined
        content_type = dotted(_primitive_contents(value))
    if (value := single.get(_MESSAGE_DIGEST)) is not None:
        if value[0] != 0x04:
            raise _Declined
        digest = _primitive_contents(value)
    signing_time: datetime | None = None
    if (value := single.get(_SIGNING_TIME)) is not None:
        if value[0] not in (0x17, 0x18):  # UTCTime, GeneralizedTime (RFC 5652 11.3)
            raise _Declined
        signing_time = _signing_time(value)
    return (content_type, digest), signing_time, tuple(capabilities)


# DER UTCTime with seconds and "Z" (X.690 11.8), the form signers write for RFC 5652 11.3.
_UTC_TIME = re.compile(rb"\x17\x0d(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z")


def _signing_time(value: bytes) -> datetime:
    """A signingTime value (UTCTime or GeneralizedTime DER) as asn1crypto reads it. The usual
    DER UTCTime is read here: asn1crypto's general parser took 8 us per message, this 1.7 us
    (bench/cost_bench.py); every other form, and an impossible date, go to asn1crypto, which
    says what is wrong. Raises what asn1crypto raises."""
    if (match := _UTC_TIME.fullmatch(value)) is not None:
        year, month, day, hour, minute, second = (int(g) for g in match.groups())
        # RFC 5652 11.3: UTCTime holds the years 1950 to 2049, as asn1crypto reads it.
        year += 2000 if year < 50 else 1900
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            pass
    when: datetime = acms.Time.load(value).native
    return when


def _primitive_contents(der: bytes) -> bytes:
    """The contents of one primitive DER element whose length signer_der checked."""
    return der[2:] if der[1] < 0x80 else der[2 + (der[1] & 0x7F):]


def _names_of_der(der: bytes) -> tuple[str, ...]:
    return _names_of(acms.CMSAttribute.load(der))


_SIDS: dict[bytes, CertId] = {}


def _sid_of(der: bytes) -> CertId:
    return identifier_to_cert_id(acms.SignerIdentifier.load(der))


@functools.lru_cache(maxsize=256)
def _digest_algorithm(der: bytes) -> tuple[str, str]:
    """(OID, label) of a DigestAlgorithmIdentifier by its DER, as _parse_signer_asn1 works them
    out. What raises is not cached."""
    digest_id = algos.DigestAlgorithm.load(der)["algorithm"]
    oid = oid_dotted(digest_id)
    return oid, alg.DIGEST_NAMES.get(oid) or _oid_label(digest_id)


@functools.lru_cache(maxsize=256)
def _signature_algorithm(der: bytes) -> tuple[str, str]:
    """(OID, label) of a SignatureAlgorithmIdentifier by its DER, as _parse_signer_asn1."""
    oid = oid_dotted(algos.SignedDigestAlgorithm.load(der)["algorithm"])
    return oid, _signature_label(oid)


def _hash(name: str, data: bytes) -> bytes:
    hasher = hashes.Hash(alg.hash_for(name))
    hasher.update(data)
    return hasher.finalize()


def _pss_padding(params_alg: algos.SignedDigestAlgorithm) -> tuple[padding.PSS, str]:
    """PSS padding and hash name from RSASSA-PSS-params (RFC 4055 3.1, defaults SHA-1/20)."""
    params = params_alg["parameters"]
    if not isinstance(params, algos.RSASSAPSSParams):
        raise _Invalid("RSASSA-PSS parameters missing")
    hash_oid = params["hash_algorithm"]["algorithm"].dotted
    hash_name = alg.DIGEST_NAMES.get(hash_oid)
    if hash_name is None:
        raise _Invalid(f"unsupported PSS hash {params['hash_algorithm']['algorithm'].native}")
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].dotted != alg.MGF1:
        raise _Invalid(f"unsupported PSS mask generation {mgf['algorithm'].dotted}")
    mgf_oid = mgf["parameters"]["algorithm"].dotted
    mgf_name = alg.DIGEST_NAMES.get(mgf_oid)
    if mgf_name is None:
        raise _Invalid(f"unsupported MGF1 hash {mgf_oid}")
    if params["trailer_field"].native not in ("trailer_field_bc", 1):
        raise _Invalid("unsupported PSS trailer field")
    salt = int(params["salt_length"].native)
    pad = padding.PSS(mgf=padding.MGF1(alg.hash_for(mgf_name)), salt_length=salt)
    return pad, hash_name


def _check_signature(parsed: _Parsed, cert: x509.Certificate, data: bytes) -> None:
    """Raise _Invalid unless ``parsed.signature`` over ``data`` verifies with cert's key."""
    try:
        public = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _Invalid(f"signer public key unreadable: {exc}") from None
    oid, label = parsed.signature_oid, parsed.signature_label
    signature = parsed.signature
    try:
        if oid == alg.RSA_ENCRYPTION or oid in alg.RSA_PKCS1_OIDS:
            if not isinstance(public, rsa.RSAPublicKey):
                raise _Invalid(f"signature algorithm {label} does not match the signer's key")
            # RFC 5754 3.2: with shaXWithRSAEncryption the OID names the hash.
            name = alg.RSA_PKCS1_OIDS.get(oid) or parsed.digest_label
            public.verify(signature, data, padding.PKCS1v15(), alg.hash_for(name))
        elif oid == alg.RSASSA_PSS:
            if not isinstance(public, rsa.RSAPublicKey):
                raise _Invalid(f"signature algorithm {label} does not match the signer's key")
            pad, name = _pss_padding(_params(parsed))
            public.verify(signature, data, pad, alg.hash_for(name))
        elif oid == alg.EC_PUBLIC_KEY or oid in alg.ECDSA_OIDS:
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise _Invalid(f"signature algorithm {label} does not match the signer's key")
            name = alg.ECDSA_OIDS.get(oid) or parsed.digest_label
            public.verify(signature, data, ec.ECDSA(alg.hash_for(name)))
        elif oid == alg.ED25519:
            if not isinstance(public, ed25519.Ed25519PublicKey):
                raise _Invalid(f"signature algorithm {label} does not match the signer's key")
            public.verify(signature, data)
        elif oid == alg.DSA or oid in alg.DSA_OIDS:
            if not isinstance(public, dsa.DSAPublicKey):
                raise _Invalid(f"signature algorithm {label} does not match the signer's key")
            name = alg.DSA_OIDS.get(oid) or parsed.digest_label
            public.verify(signature, data, alg.hash_for(name))
        elif oid in alg.ML_DSA_OIDS:
            # RFC 9882 2 / 3.3: parameters MUST be absent.
            if not isinstance(_params(parsed)["parameters"], core.Void):
                raise _Invalid(f"{label} signatureAlgorithm must have no parameters")
            why = mldsa.check(oid, public, signature, data)
            if why is not None:
                raise _Invalid(why)
        else:
            raise _Invalid(f"unsupported signature algorithm {label}")
    except InvalidSignature:
        raise _Invalid("signature does not verify") from None
    except Unsupported as exc:
        raise _Invalid(str(exc)) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        # cryptography refuses e.g. a malformed DSA/ECDSA signature encoding with ValueError.
        raise _Invalid(f"signature does not verify ({exc})") from None


def _params(parsed: _Parsed) -> algos.SignedDigestAlgorithm:
    # Only _parse_signer_asn1 reads RSASSA-PSS and ML-DSA signers, and it keeps them.
    if parsed.signature_params is None:
        raise _Invalid(f"signature algorithm {parsed.signature_label}: parameters not read")
    return parsed.signature_params


def _check(parsed: _Parsed, cert: x509.Certificate, content: bytes,
           content_type: str | None) -> None:
    """Raise _Invalid unless this signer's signature over ``content`` checks out (RFC 5652 5.6).

    content_type None: a countersignature (RFC 5652 11.4), whose signed attributes must not
    have contentType."""
    attrs = parsed.signed_attrs
    ml_dsa = alg.ML_DSA_OIDS.get(parsed.signature_oid)
    if ml_dsa is not None and attrs is None:
        # RFC 9882 3.3: without signed attributes digestAlgorithm MUST be ignored.
        _check_signature(parsed, cert, content)
        return
    if parsed.digest_oid not in alg.DIGEST_NAMES:
        raise _Invalid(f"unsupported digest algorithm {parsed.digest_label}")
    if ml_dsa is not None:
        weak = mldsa.digest_too_weak(ml_dsa, parsed.digest_label)
        if weak is not None:
            raise _Invalid(weak)
    if attrs is None:
        # RFC 5652 5.4: without signed attributes the signature covers the content itself.
        _check_signature(parsed, cert, content)
        return
    if parsed.known is not None:
        wanted_oid, digest = parsed.known
        _match_attributes(None if wanted_oid is None else lambda: wanted_oid, digest is not None,
                          content_type)
        assert digest is not None  # _match_attributes raised otherwise
        expected = digest
    else:
        with guard("signed attributes"):
            by_oid = parsed.attrs_by_oid
            wanted = _single_value(by_oid, _CONTENT_TYPE, "contentType")
            digest_value = _single_value(by_oid, _MESSAGE_DIGEST, "messageDigest")
            _single_value(by_oid, _SIGNING_TIME, "signingTime")
            assert wanted is None or isinstance(wanted, acms.ContentType)
            _match_attributes(None if wanted is None else functools.partial(oid_dotted, wanted),
                              digest_value is not None, content_type)
            assert isinstance(digest_value, core.OctetString)
            expected = bytes(digest_value.native)
    if not hmac.compare_digest(expected, _hash(parsed.digest_label, content)):
        raise _Invalid("message digest mismatch")
    # RFC 5652 5.4: the signature is over the DER SET OF, i.e. the received contents under
    # a universal SET tag instead of the [0] IMPLICIT of SignerInfo.
    _check_signature(parsed, cert, b"\x31" + _der_length(len(attrs)) + attrs)


def _match_attributes(wanted: Callable[[], str] | None, has_digest: bool,
                      content_type: str | None) -> None:
    """Raise _Invalid unless contentType and messageDigest are as RFC 5652 5.3 / 11 want them.
    ``wanted``: the contentType attribute's OID, asked for only when it is compared."""
    if not has_digest:
        raise _Invalid("signed attributes lack messageDigest")
    if content_type is None:
        # RFC 5652 11.4: a countersignature's signed attributes MUST NOT hold contentType.
        if wanted is not None:
            raise _Invalid("countersignature has a contentType attribute (RFC 5652 11.4)")
        return
    # RFC 5652 5.3: both MUST be present when there are signed attributes.
    if wanted is None:
        raise _Invalid("signed attributes lack contentType")
    # RFC 5652 11.1: contentType MUST match eContentType.
    if wanted() != content_type:
        raise _Invalid("contentType attribute does not match eContentType")


def _find_cert(signer_id: CertId, certs: Sequence[x509.Certificate]) -> x509.Certificate | None:
    for cert in certs:
        try:
            if matches(signer_id, cert):
                return cert
        except SmimeError:
            continue
    return None


def _names_unreadable(signer_id: CertId, cert: ax509.Certificate) -> bool:
    """Whether an asn1crypto certificate that cryptography refused is the signer's."""
    try:
        if signer_id.serial is not None:
            return bool(
                cert.serial_number == signer_id.serial
                and name_to_str(cert.issuer) == signer_id.issuer
            )
        return signer_id.ski is not None and cert.key_identifier == signer_id.ski
    except (SmimeError, *_PARSE_ERRORS):
        return False


def _verify_signer(
    parsed: _Parsed,
    certs: _Certs,
    contents: Iterable[bytes],
    content_type: str | None,
) -> SignerResult:
    cert = _find_cert(parsed.signer_id, certs.loaded)
    reason: str | None = None
    if cert is None:
        reason = "signer certificate not in message"
        for unreadable, why in certs.unreadable:
            if _names_unreadable(parsed.signer_id, unreadable):
                reason = f"signer certificate unreadable: {why}"
                break
    else:
        for content in contents:
            try:
                _check(parsed, cert, content, content_type)
            except _Invalid as exc:
                # Keep the first reason: it is about the bytes as received.
                reason = reason or str(exc)
                continue
            reason = None
            break
    valid = reason is None
    if valid and content_type is not None and content_type != _DATA:
        reason = f"note: eContentType {content_type} is not id-data (RFC 8551 3.5.3)"
    return SignerResult(
        signer_id=parsed.signer_id,
        certificate=cert,
        valid=valid,
        reason=reason,
        digest_algorithm=parsed.digest_label,
        signature_algorithm=parsed.signature_label,
        signing_time=parsed.signing_time,
        capabilities=parsed.capabilities,
    )


class _SignerInfoSet(core.SetOf):  # type: ignore[misc]
    """The values of a countersignature attribute: each one a SignerInfo (RFC 5652 11.4;
    asn1crypto's own spec reads each value as a SET OF SignerInfo)."""

    _child_spec = acms.SignerInfo


class _CounterAttribute(core.Sequence):  # type: ignore[misc]
    _fields = [("type", core.ObjectIdentifier), ("values", _SignerInfoSet)]


def _countersigners(info: acms.SignerInfo, parsed: _Parsed, certs: _Certs) -> list[SignerResult]:
    """Each countersignature of ``info`` verified over its signature value (RFC 5652 11.4).
    Raises Malformed for a countersignature attribute that cannot be read."""
    if parsed.unsigned_absent:
        return []
    with guard("SignerInfo unsignedAttrs"):
        unsigned = info["unsigned_attrs"]
        if isinstance(unsigned, core.Void):
            return []
        found = [attr for attr in unsigned if oid_dotted(attr["type"]) == _COUNTERSIGNATURE]
        if not found:
            return []
        signature = bytes(info["signature"].native)
    out: list[SignerResult] = []
    for attr in found:
        with guard("countersignature"):
            values = list(_CounterAttribute.load(attr.dump())["values"])
        for counter in values:
            out.append(_verify_signer(_parse_signer(counter), certs, [signature], None))
    return out


def _unlisted_digest(result: SignerResult, oid: str, listed: frozenset[str]) -> SignerResult:
    # RFC 5652 5.1: digestAlgorithms lists the digests of all signers; a one-pass reader relies
    # on it, so a signer outside it is refused (cleanly) rather than trusted on a broken frame.
    if oid in listed:
        return result
    why = (f"digest algorithm {result.digest_algorithm} is not listed in the SignedData "
           "digestAlgorithms (RFC 5652 5.1)")
    return replace(result, valid=False, reason=why)


@dataclass(frozen=True)
class _Certs:
    """Certificates of a SignedData: the ones cryptography loads, and the others with why."""

    loaded: tuple[x509.Certificate, ...]
    unreadable: tuple[tuple[ax509.Certificate, str], ...]


def _certificates(signed: acms.SignedData) -> _Certs:
    """Every X.509 certificate carried; ones cryptography cannot load are set aside.

    By the SHA-256 of the set's DER: a correspondent sends the same certificates with every
    message, and walking them through asn1crypto again cost tens of microseconds
    (bench/cost_bench.py). A set with a certificate that does not load is read each time."""
    with guard("SignedData certificates"):
        choices = signed["certificates"]
        if isinstance(choices, core.Void):
            return _Certs((), ())
        der = definite_der(choices)
    key = hashlib.sha256(der).digest() if der is not None else None
    if key is not None and (known := _CERTIFICATE_SETS.get(key)) is not None:
        return known
    certs = _read_certificates(choices)
    if key is not None and not certs.unreadable:
        _CERTIFICATE_SETS.put(key, certs)
    return certs


_CERTIFICATE_SETS: Lru[_Certs] = Lru(256)


def _read_certificates(choices: acms.CertificateSet) -> _Certs:
    loaded: list[x509.Certificate] = []
    unreadable: list[tuple[ax509.Certificate, str]] = []
    with guard("SignedData certificates"):
        for choice in choices:
            if choice.name != "certificate":
                continue  # attribute certificates and others: nothing to harvest
            try:
                cert = _load_certificate(parsed_der(choice.chosen))
            except (Malformed, ValueError, UnsupportedAlgorithm) as exc:
                unreadable.append((choice.chosen, str(exc).splitlines()[0][:120]))
                continue
            loaded.append(cert)
    return _Certs(tuple(loaded), tuple(unreadable))


def _crls(signed: acms.SignedData) -> tuple[bytes, ...]:
    """The DER of the CRLs carried (RFC 5652 RevocationInfoChoice crl); other revocation
    formats and unreadable ones are left out: they are harvested, never needed to verify."""
    found: list[bytes] = []
    try:
        choices = signed["crls"]
        if isinstance(choices, core.Void):
            return ()
        for choice in choices:
            if choice.name == "crl":
                found.append(choice.chosen.dump())
    except (ValueError, TypeError):
        return tuple(found)
    return tuple(found)


@functools.lru_cache(maxsize=256)
def _load_certificate(der: bytes) -> x509.Certificate:
    """A certificate carried in a SignedData, by its DER: the same few come with every message
    of a correspondent. Raises Malformed, ValueError, UnsupportedAlgorithm (not cached)."""
    cert = to_crypto(ax509.Certificate.load(der))  # parsed_der of it is der itself
    try:
        check_readable(cert)
    except X509_ERRORS as exc:
        raise Malformed(f"certificate: {exc}") from None
    # cryptography loads lazily; a key it cannot use (e.g. DSA parameters inherited from the
    # issuer, RFC 3279 2.3.2) only fails here.
    mlkem512.certificate_public_key(cert)  # an ML-KEM-512 encryption certificate is harvested too
    return cert


def verify_der(der: bytes, detached_content: bytes | None = None) -> tuple[bytes, Layer]:
    """Verify a ContentInfo(SignedData); return (content, Layer(kind="signed")).

    detached_content: the signed bytes of a detached signature (multipart/signed); when given,
    they are what is verified and returned, and an eContent that differs from them makes every
    signer invalid. Without it the content is eContent.
    Raises Malformed when the DER is not a readable SignedData, has no SignerInfo, or has
    neither eContent nor detached content. Bad signatures do not raise.
    """
    frame = _frame_der(der)
    if frame is None and der[1:2] == b"\x80":
        # NSS (Thunderbird) writes the frame in BER: the same SignedData with definite lengths
        # reads the same, and the fast way once its certificates are known (signer_der).
        definite = signer_der.definite_signed_data(der)
        if definite is not None:
            der = definite
            frame = _frame_der(der)
    return _verify_frame(frame if frame is not None else _frame_asn1(der), detached_content)


@dataclass(frozen=True)
class _Frame:
    """What verification needs of a SignedData. ``signers``: each SignerInfo as asn1crypto
    read it (parsed, and its countersignatures looked for, in turn) or already parsed by
    signer_der (none has unsignedAttrs). ``certificates`` and ``crls`` are read when asked, in
    the order verification always read them."""

    content_type: str
    embedded: bytes | None
    signers: tuple[acms.SignerInfo | _Parsed, ...]
    listed: frozenset[str]
    certificates: Callable[[], _Certs]
    crls: Callable[[], tuple[bytes, ...]]


def _frame_asn1(der: bytes) -> _Frame:
    """The SignedData read by asn1crypto. Raises Malformed."""
    info = load_content_info(der)
    with guard("SignedData"):
        if oid_dotted(info["content_type"]) != _SIGNED_DATA:
            raise Malformed(f"CMS: content type {info['content_type'].dotted} is not SignedData")
        signed = info["content"]
        _ = signed["version"].native
        encap = signed["encap_content_info"]
        content_type = oid_dotted(encap["content_type"])
        econtent = encap["content"]
        embedded: bytes | None = None
        if not isinstance(econtent, core.Void):
            embedded = _econtent_octets(econtent, content_type)
        signer_infos = tuple(signed["signer_infos"])
        listed = frozenset(oid_dotted(d["algorithm"]) for d in signed["digest_algorithms"])
    return _Frame(content_type, embedded, signer_infos, listed,
                  functools.partial(_certificates, signed), functools.partial(_crls, signed))


def _econtent_octets(econtent: core.Asn1Value, content_type: str) -> bytes:
    """The octets of an eContent, also when BER splits them in chunks (NSS writes constructed
    OCTET STRINGs). RFC 5652 5.2 makes eContent an OCTET STRING whatever its type; asn1crypto
    reads a version 1 SignedData's by its type (PKCS #7, RFC 2315 9.1): an unknown type as Any,
    which then holds the OCTET STRING, a known one other than id-data as that type, which is
    not content a mail carries. bytes() of anything but an OCTET STRING is asn1crypto's repr,
    never the content. Raises Malformed."""
    if isinstance(econtent, core.OctetString | core.ParsableOctetString):
        return bytes(econtent)
    if isinstance(econtent, core.Any):
        try:
            return bytes(econtent.parse(core.OctetString))
        except (ValueError, TypeError):
            pass
    raise Malformed(f"SignedData: the eContent of type {content_type} is not an OCTET STRING")


def _frame_der(der: bytes) -> _Frame | None:
    """The SignedData read by signer_der.read_signed_data and every SignerInfo by
    _parse_signer_der, or None when any of them declines, a part does not read, or the
    certificate set is not one _certificates has read before (a correspondent's first
    message takes the asn1crypto way, and the ones after it find its certificates)."""
    fields = signer_der.read_signed_data(der)
    if fields is None:
        return None
    try:
        content_type = dotted(fields.content_type)
        listed = frozenset(_digest_oid(d) for d in fields.digest_algorithms)
    except (SmimeError, *_PARSE_ERRORS):
        return None
    certs = _Certs((), ())
    if fields.certificates is not None:
        known = _CERTIFICATE_SETS.get(hashlib.sha256(fields.certificates).digest())
        if known is None:
            return None
        certs = known
    signers: list[acms.SignerInfo | _Parsed] = []
    for info in fields.signer_infos:
        parsed = _parse_signer_der(info)
        if parsed is None:
            return None
        signers.append(parsed)
    return _Frame(content_type, fields.content, tuple(signers), listed, lambda: certs,
                  lambda: ())


@functools.lru_cache(maxsize=256)
def _digest_oid(der: bytes) -> str:
    """The OID of a digestAlgorithms element by its DER, as _frame_asn1 reads it. What
    raises is not cached."""
    return oid_dotted(algos.DigestAlgorithm.load(der)["algorithm"])


def _verify_frame(frame: _Frame, detached_content: bytes | None) -> tuple[bytes, Layer]:
    """verify_der after reading. Raises Malformed as verify_der says."""
    if not frame.signers:
        raise Malformed("SignedData: no SignerInfo (certs-only is not a signature)")
    content_type, embedded = frame.content_type, frame.embedded
    detached = detached_content is not None
    if detached_content is not None:
        # multipart/signed: what the reader sees is the body part, so that is what must verify,
        # never an eContent smuggled into the signature (Thunderbird's mismatch-econtent).
        content = detached_content
        candidates: _Candidates | list[bytes] = _Candidates(detached_content)
    elif embedded is not None:
        content = embedded
        candidates = [embedded]
    else:
        raise Malformed("SignedData: no eContent and no detached content given")
    certs = frame.certificates()
    found: list[SignerResult] = []
    for si in frame.signers:
        parsed = si if isinstance(si, _Parsed) else _parse_signer(si)
        result = _unlisted_digest(_verify_signer(parsed, certs, candidates, content_type),
                                  parsed.digest_oid, frame.listed)
        parent = len(found)
        found.append(result)
        if not isinstance(si, _Parsed):
            found += [replace(c, countersigns=parent) for c in _countersigners(si, parsed, certs)]
    signers = tuple(found)
    if detached and embedded is not None and embedded not in candidates:
        # RFC 8551 3.5.3: eContent is absent in multipart/signed. One that differs from the
        # body part means the signature is not about what is displayed.
        why = "eContent in a detached signature differs from the signed body part"
        signers = tuple(replace(s, valid=False, reason=why) for s in signers)
    layer = Layer(kind="signed", signers=signers, certificates=certs.loaded,
                  crls=frame.crls(), detached=detached)
    return content, layer


class _Candidates:
    """The detached content as received, then its canonical CRLF form when that differs
    (tried when the received bytes do not verify, module docstring). The canonical form is
    worked out only when asked for: scanning 10 KB for bare line ends cost 15 us a message,
    and a signature over the bytes as received never needs it (bench/cost_bench.py)."""

    def __init__(self, received: bytes) -> None:
        self._received = received
        self._canonical: bytes | None = None
        self._known = False

    def _second(self) -> bytes | None:
        if not self._known:
            canonical = mime.canonicalize(self._received)
            self._canonical = canonical if canonical != self._received else None
            self._known = True
        return self._canonical

    def __iter__(self) -> Iterator[bytes]:
        yield self._received
        second = self._second()
        if second is not None:
            yield second

    def __contains__(self, value: object) -> bool:
        return value == self._received or value == self._second()


def verify(entity: bytes) -> tuple[bytes, Layer]:
    """Verify a multipart/signed or application/pkcs7-mime signed-data entity.

    Returns (the inner entity bytes, Layer(kind="signed", ...)): for multipart/signed the first
    body part exactly as received, for opaque signatures the eContent.
    Raises Malformed for broken MIME/CMS or an entity that is not signed.
    """
    return verify_entity(mime.parse_entity(entity))


def verify_entity(parsed: mime.Entity) -> tuple[bytes, Layer]:
    """``verify`` of an entity already parsed (smimegate.smime.unwrap has parsed it to
    classify it). Raises as ``verify`` does."""
    kind = mime.classify(parsed)
    if kind == "signed":
        content, signature, _micalg = mime.split_multipart_signed(parsed)
        # micalg is advisory (RFC 8551 3.5.3.2); each SignerInfo names its own digest.
        return verify_der(signature, content)
    if kind == "opaque-signed":
        return verify_der(mime.decode_smime_body(parsed))
    raise Malformed(f"not a signed entity: {kind}")
