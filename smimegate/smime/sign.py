"""Make S/MIME signatures: CMS SignedData (RFC 5652 5) as RFC 8551 profiles it.

Recipe: ``sign`` turns a MIME entity into multipart/signed (detached, the default, RFC 8551
3.5.3) or application/pkcs7-mime; smime-type=signed-data (opaque, RFC 8551 3.5.2), signing its
canonical CRLF form (RFC 8551 3.1.1). ``sign_der`` is the same at the DER level.

What we write (RFC 8551 2.5): signed attributes contentType, messageDigest, signingTime and
SMIMECapabilities; SignerIdentifier issuerAndSerialNumber (SignerInfo version 1); the signer's
certificate and the given chain in ``certificates``. Key types: RSA PKCS#1 v1.5, RSA-PSS (RFC
4056), ECDSA P-256/P-384 (RFC 5753), Ed25519 (RFC 8419), ML-DSA-44/65/87 (RFC 9882, in
smimegate.smime.mldsa).

``build_signer_info`` and ``assemble`` are the building blocks, public so that tests (and later
callers) can put several SignerInfos in one SignedData.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import UnionType
from typing import Literal

from asn1crypto import algos, core
from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from smimegate.smime import algorithms as alg
from smimegate.smime import keytrans, mime, mldsa
from smimegate.smime.ber import der_header
from smimegate.smime.certmemo import per_certificate
from smimegate.smime.cms import issuer_and_serial_der, tlv
from smimegate.smime.errors import Unsupported

PrivateKey = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | mldsa.PrivateKey
)

# RFC 5652 11.3: signingTime between 1950 and 2049 MUST be UTCTime, otherwise GeneralizedTime.
_UTCTIME_END = datetime(2050, 1, 1, tzinfo=UTC)


def effective_digest(key: PrivateKey, digest: str) -> str:
    """The digest a signature with this key will use: ``digest`` normalised, but always sha512
    for Ed25519 (RFC 8419 3.1: digestAlgorithm MUST be id-sha512 with signed attributes) and
    for ML-DSA (RFC 9882 3.3: SHA-512 MUST be supported and suits all parameter sets).

    Raises Unsupported for a digest outside SIGNING_DIGESTS or a key type we do not sign with.
    """
    name = alg.signing_digest(digest)
    family = _check_key(key)
    if family == "ed25519":
        return alg.ED25519_DIGEST
    if family == "ml-dsa":
        return alg.ML_DSA_DIGEST
    return name


KeyFamily = Literal["rsa", "ec", "ed25519", "ml-dsa"]


def _check_key(key: object) -> KeyFamily:
    """The family of a key we sign with. Raises Unsupported for another key or curve."""
    family = _family_of(type(key))  # type: ignore[arg-type]  # a class is Hashable
    if family is None:
        raise Unsupported(f"key: {type(key).__name__} cannot make S/MIME signatures")
    if family == "ec":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        if key.curve.name not in alg.SIGNING_CURVES:
            raise Unsupported(f"key: curve {key.curve.name} is not P-256 or P-384")
    return family


@functools.lru_cache(maxsize=32)
def _family_of(kind: type) -> KeyFamily | None:
    # Answered once per key class: the isinstance checks against cryptography's abstract key
    # classes (abc.__instancecheck__, up to 1 us each) made effective_digest cost 3 us, and a
    # signature asks it twice (bench/cost_bench.py). Key classes live as long as the process.
    for abstract, family in _FAMILIES:
        if issubclass(kind, abstract):
            return family
    return None


_FAMILIES: tuple[tuple[type | UnionType, KeyFamily], ...] = (
    (rsa.RSAPrivateKey, "rsa"),
    (ec.EllipticCurvePrivateKey, "ec"),
    (ed25519.Ed25519PrivateKey, "ed25519"),
    (mldsa.PrivateKey, "ml-dsa"),
)


def _digest_algorithm(name: str) -> algos.DigestAlgorithm:
    # RFC 5754 2: SHA-2 AlgorithmIdentifiers are generated with absent parameters.
    return algos.DigestAlgorithm({"algorithm": alg.DIGEST_OIDS[name], "parameters": None})


def _capabilities_value(names: Sequence[str]) -> acms.SMIMECapabilites:
    items = []
    for name in names:
        oid = alg.CAPABILITY_OIDS.get(name.lower())
        if oid is None:
            raise Unsupported(f"capabilities: unknown capability {name!r}")
        if oid == alg.RSA_OAEP_OID:
            # RFC 8551 2.5.2: the parameters must say which OAEP; absent ones would announce
            # the RFC 4055 SHA-1 defaults. We announce the SHA-256 instance encrypt() uses,
            # encoded exactly as in our KeyTransRecipientInfo (RFC 3560 5, RFC 4055 4.1).
            items.append(acms.SMIMECapabilityIdentifier.load(
                keytrans.oaep_sha256_algorithm().dump()))
            continue
        # RFC 8551 2.5.2 / RFC 3565 4.1, RFC 5084 3.2: parameters absent for AES-CBC/GCM.
        items.append(acms.SMIMECapabilityIdentifier({"capability_id": oid}))
    return acms.SMIMECapabilites(items)


def signed_attributes(
    content_digest: bytes,
    *,
    content_type: str = "data",
    capabilities: Sequence[str] | None = None,
    signing_time: datetime | None = None,
) -> acms.CMSAttributes:
    """The signed attributes we send (RFC 5652 11, RFC 8551 2.5), as a DER SET OF.

    Raises ValueError for a naive signing_time, Unsupported for an unknown capability name.
    """
    return acms.CMSAttributes.load(_signed_attributes_der(
        content_digest, content_type=content_type, capabilities=capabilities,
        signing_time=signing_time))


def _signed_attributes_der(
    content_digest: bytes,
    *,
    content_type: str | None = "data",
    capabilities: Sequence[str] | None = None,
    signing_time: datetime | None = None,
) -> bytes:
    """signed_attributes as DER bytes (the SET OF, tag 0x31). Raises like signed_attributes.

    content_type None leaves the contentType attribute out, as a countersignature's signed
    attributes must (RFC 5652 11.4)."""
    when = signing_time if signing_time is not None else datetime.now(UTC)
    caps = alg.DEFAULT_CAPABILITIES if capabilities is None else tuple(capabilities)
    # signingTime and messageDigest change with every message; they are written here as DER
    # (an attribute is SEQUENCE { type OID, SET { value } }, RFC 5652 5.3), because asn1crypto
    # building them cost a tenth of a millisecond each (bench/cost_bench.py).
    # tests/unit/smime/test_sign_der.py pins the bytes to what asn1crypto builds.
    encoded = [
        _attribute(_SIGNING_TIME_OID, _signing_time_der(when)),
        _attribute(_MESSAGE_DIGEST_OID, tlv(0x04, content_digest)),
    ]
    if content_type is not None:
        encoded.append(_content_type_attribute(content_type))
    if caps:
        encoded.append(_capabilities_attribute(caps))
    # DER SET OF order (X.690 11.6), which RFC 5652 5.4 requires for the bytes that are signed:
    # the encodings sorted.
    body = b"".join(sorted(encoded))
    return der_header(0x31, len(body)) + body


def _attribute(type_der: bytes, value_der: bytes) -> bytes:
    values = tlv(0x31, value_der)
    return der_header(0x30, len(type_der) + len(values)) + type_der + values


def _signing_time_der(when: datetime) -> bytes:
    """RFC 5652 11.3 Time: UTCTime YYMMDDHHMMSSZ (X.690 11.8) in 1950-2049, else
    GeneralizedTime YYYYMMDDHHMMSSZ (X.690 11.7), whole seconds, UTC."""
    if when.tzinfo is None:
        raise ValueError("signing_time: must be timezone-aware")
    when = when.astimezone(UTC)
    if when < _UTCTIME_END and when.year >= 1950:
        return tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return tlv(0x18, f"{when.year:04d}{when.strftime('%m%d%H%M%S')}Z".encode("ascii"))


_SIGNING_TIME_OID = bytes(core.ObjectIdentifier("1.2.840.113549.1.9.5").dump())  # RFC 5652 11.3
_MESSAGE_DIGEST_OID = bytes(core.ObjectIdentifier("1.2.840.113549.1.9.4").dump())  # 11.2
_COUNTERSIGNATURE_OID = bytes(core.ObjectIdentifier("1.2.840.113549.1.9.6").dump())  # 11.4


@functools.lru_cache(maxsize=16)
def _content_type_attribute(content_type: str) -> bytes:
    return bytes(acms.CMSAttribute({"type": "content_type", "values": [content_type]}).dump())


@functools.lru_cache(maxsize=64)
def _capabilities_attribute(caps: tuple[str, ...]) -> bytes:
    """The SMIMECapabilities attribute DER (constant per list). Raises Unsupported."""
    value = _capabilities_value(caps)
    return bytes(acms.CMSAttribute({"type": "smime_capabilities", "values": [value]}).dump())


def _pss_algorithm(digest: str) -> algos.SignedDigestAlgorithm:
    # RFC 4056 2.2 / RFC 4055 3.1: explicit parameters, MGF1 with the same hash, salt length
    # the hash length, trailerField 1 (the default, so omitted).
    hash_alg = {"algorithm": alg.DIGEST_OIDS[digest], "parameters": None}
    params = algos.RSASSAPSSParams(
        {
            "hash_algorithm": hash_alg,
            "mask_gen_algorithm": {"algorithm": alg.MGF1, "parameters": hash_alg},
            "salt_length": alg.hash_for(digest).digest_size,
        }
    )
    return algos.SignedDigestAlgorithm({"algorithm": alg.RSASSA_PSS, "parameters": params})


def _signature(key: PrivateKey, data: bytes, digest: str, pss: bool) -> tuple[bytes, bytes]:
    """(signatureAlgorithm DER, signature) of ``data``."""
    if isinstance(key, rsa.RSAPrivateKey):
        hash_alg = alg.hash_for(digest)
        if pss:
            pad = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
            return _algorithm_der("pss", digest), key.sign(data, pad, hash_alg)
        return _algorithm_der("rsa", digest), key.sign(data, padding.PKCS1v15(), hash_alg)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _algorithm_der("ecdsa", digest), key.sign(data, ec.ECDSA(alg.hash_for(digest)))
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        # RFC 9882 3.2: pure ML-DSA over the same bytes.
        return mldsa.sign(key, data)
    # RFC 8419 3.1: PureEdDSA over the DER of the signed attributes.
    return _algorithm_der("ed25519", digest), key.sign(data)


@functools.lru_cache(maxsize=32)
def _algorithm_der(kind: str, digest: str) -> bytes:
    """signatureAlgorithm DER, constant per key kind and digest."""
    if kind == "pss":
        return bytes(_pss_algorithm(digest).dump())
    if kind == "rsa":
        # RFC 3370 3.2: rsaEncryption with NULL parameters, digest from digestAlgorithm.
        algorithm = algos.SignedDigestAlgorithm(
            {"algorithm": alg.RSA_ENCRYPTION, "parameters": core.Null()})
    elif kind == "ecdsa":
        algorithm = algos.SignedDigestAlgorithm(
            {"algorithm": alg.ECDSA_BY_DIGEST[digest], "parameters": None})
    else:
        algorithm = algos.SignedDigestAlgorithm({"algorithm": alg.ED25519, "parameters": None})
    return bytes(algorithm.dump())


def build_signer_info(
    content: bytes,
    key: PrivateKey,
    cert: x509.Certificate,
    *,
    digest: str = "sha256",
    pss: bool = False,
    capabilities: Sequence[str] | None = None,
    signing_time: datetime | None = None,
    with_signed_attributes: bool = True,
    use_ski: bool = False,
    content_type: str = "data",
) -> acms.SignerInfo:
    """One SignerInfo over ``content`` (the exact bytes; no canonicalisation here).

    use_ski: identify the signer by subjectKeyIdentifier (SignerInfo version 3, RFC 5652 5.3)
    instead of issuerAndSerialNumber. with_signed_attributes=False signs the content directly
    (RFC 5652 5.4), for tests and old peers. content_type: the eContentType named in the
    contentType attribute (S/MIME uses "data", RFC 8551 3.5.3; others are for tests).
    Raises Unsupported (digest, key type, curve, capability name, pss with a non-RSA key),
    ValueError (key does not match cert, naive signing_time, use_ski without an SKI).
    """
    return acms.SignerInfo.load(_signer_info(
        content, key, cert, digest=digest, pss=pss, capabilities=capabilities,
        signing_time=signing_time, with_signed_attributes=with_signed_attributes,
        use_ski=use_ski, content_type=content_type).der)


@dataclass(frozen=True)
class _SignerInfoDer:
    """A SignerInfo as DER, with what assemble needs of it without parsing it again."""

    der: bytes
    digest_algorithm: bytes
    v3: bool


def _signer_info(
    content: bytes,
    key: PrivateKey,
    cert: x509.Certificate,
    *,
    digest: str = "sha256",
    pss: bool = False,
    capabilities: Sequence[str] | None = None,
    signing_time: datetime | None = None,
    with_signed_attributes: bool = True,
    use_ski: bool = False,
    content_type: str | None = "data",
) -> _SignerInfoDer:
    """build_signer_info's DER. Raises like build_signer_info."""
    name = effective_digest(key, digest)
    if pss and not isinstance(key, rsa.RSAPrivateKey):
        raise Unsupported("pss: RSA-PSS needs an RSA key")
    if key.public_key() != cert.public_key():
        raise ValueError("key: does not match the certificate's public key")
    # The SignerInfo is written as DER here: asn1crypto building, dumping and parsing it back
    # cost more than half of the RSA signature itself on a 10 KB message
    # (bench/cost_bench.py). tests/unit/smime/test_sign_der.py pins the bytes to what
    # asn1crypto builds.
    if use_ski:
        from smimegate.smime.cms import subject_key_identifier

        ski = subject_key_identifier(cert)
        if ski is None:
            raise ValueError("use_ski: the certificate has no subjectKeyIdentifier")
        # RFC 5652 5.3: subjectKeyIdentifier [0] IMPLICIT OCTET STRING.
        sid = tlv(0x80, ski)
    else:
        sid = issuer_and_serial_der(cert)
    digest_der = _digest_algorithm_der(name)
    parts = [_CMS_VERSION["v3" if use_ski else "v1"], sid, digest_der]
    if with_signed_attributes:
        attrs = _signed_attributes_der(
            _digest(name, content),
            content_type=content_type,
            capabilities=capabilities,
            signing_time=signing_time,
        )
        # RFC 5652 5.4: the signature covers the DER of the SET OF (tag 0x31), not [0].
        to_sign = attrs
        parts.append(b"\xa0" + attrs[1:])  # signedAttrs [0] IMPLICIT
    else:
        to_sign = content
    algorithm, signature = _signature(key, to_sign, name, pss)
    parts += [algorithm, tlv(0x04, signature)]
    return _SignerInfoDer(tlv(0x30, b"".join(parts)), digest_der, use_ski)


def _digest(name: str, content: bytes) -> bytes:
    hasher = hashes.Hash(alg.hash_for(name))
    hasher.update(content)
    return hasher.finalize()


@per_certificate(maxsize=64)
def _certificate_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


_CMS_VERSION = {"v1": b"\x02\x01\x01", "v3": b"\x02\x01\x03"}  # CMSVersion INTEGER


@functools.lru_cache(maxsize=16)
def _digest_algorithm_der(name: str) -> bytes:
    return bytes(_digest_algorithm(name).dump())


@functools.lru_cache(maxsize=16)
def _content_type_der(content_type: str) -> bytes:
    return bytes(acms.ContentType(content_type).dump())


def assemble(
    content: bytes,
    signer_infos: Sequence[acms.SignerInfo],
    certificates: Sequence[x509.Certificate],
    *,
    detached: bool = True,
    content_type: str = "data",
) -> bytes:
    """ContentInfo(SignedData) DER from ready SignerInfos (RFC 5652 5.1).

    Certificates are deduplicated. Both certificates and signerInfos are DER SET OF, so they
    appear sorted by encoding, not in the order given. Raises ValueError without signer_infos.
    """
    infos = [_SignerInfoDer(bytes(info.dump()), bytes(info["digest_algorithm"].dump()),
                            info["version"].native == "v3") for info in signer_infos]
    return _assemble(content, infos, certificates, detached=detached, content_type=content_type)


def _assemble(
    content: bytes,
    signer_infos: Sequence[_SignerInfoDer],
    certificates: Sequence[x509.Certificate],
    *,
    detached: bool = True,
    content_type: str = "data",
) -> bytes:
    """assemble over SignerInfos as DER. Raises ValueError without signer_infos."""
    if not signer_infos:
        raise ValueError("signer_infos: at least one is needed")
    # Written as DER directly (see build_signer_info): asn1crypto copied every certificate to
    # retag it [0] and re-encoded the structure, ~0.35 ms per message. A DER SET OF holds its
    # elements sorted by their encodings (X.690 11.6); duplicates are left out.
    digests = sorted({info.digest_algorithm for info in signer_infos})
    certs = sorted({_certificate_der(cert) for cert in certificates})
    signers = sorted(info.der for info in signer_infos)
    # RFC 5652 5.1: version 1 when every SignerInfo is version 1 and eContentType is id-data.
    v3 = content_type != "data" or any(info.v3 for info in signer_infos)
    encap_type = _content_type_der(content_type)
    if detached:
        encap = [tlv(0x30, encap_type)]
    else:
        # eContent [0] EXPLICIT OCTET STRING; the content itself is joined only once below.
        octets = der_header(0x04, len(content))
        explicit = der_header(0xA0, len(octets) + len(content))
        encap = [der_header(0x30, len(encap_type) + len(explicit) + len(octets) + len(content)),
                 encap_type, explicit, octets, content]
    head = _CMS_VERSION["v3" if v3 else "v1"] + tlv(0x31, b"".join(digests))
    # certificates [0] is written also when empty, as asn1crypto did before.
    tail = tlv(0xA0, b"".join(certs)) + tlv(0x31, b"".join(signers))
    signed_len = len(head) + sum(len(p) for p in encap) + len(tail)
    signed_header = der_header(0x30, signed_len)
    explicit_len = len(signed_header) + signed_len
    outer_type = _content_type_der("signed_data")
    explicit_header = der_header(0xA0, explicit_len)
    info_header = der_header(0x30, len(outer_type) + len(explicit_header) + explicit_len)
    return b"".join([info_header, outer_type, explicit_header, signed_header, head, *encap,
                     tail])


def sign_der(
    content: bytes,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    digest: str = "sha256",
    detached: bool = True,
    pss: bool = False,
    capabilities: Sequence[str] | None = None,
    signing_time: datetime | None = None,
) -> bytes:
    """ContentInfo(SignedData) DER signing ``content`` exactly as given.

    detached: leave eContent absent (multipart/signed); False puts the content in eContent.
    capabilities: SMIMECapabilities names (algorithms.CAPABILITY_OIDS); None announces
    DEFAULT_CAPABILITIES, () leaves the attribute out.
    Raises Unsupported (digest, key type, curve, capability, pss without RSA) and ValueError
    (key does not match cert, naive signing_time).
    """
    info = _signer_info(
        content,
        key,
        cert,
        digest=digest,
        pss=pss,
        capabilities=capabilities,
        signing_time=signing_time,
    )
    return _assemble(content, [info], [cert, *chain], detached=detached)


def sign(
    entity: bytes,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    digest: str = "sha256",
    detached: bool = True,
    pss: bool = False,
    capabilities: Sequence[str] | None = None,
    signing_time: datetime | None = None,
    canonical: bool = False,
) -> bytes:
    """Sign a MIME entity; return the multipart/signed or pkcs7-mime signed-data entity.

    The canonical CRLF form of the entity is signed (RFC 8551 3.1.1) and, for multipart/signed,
    is also what the first body part carries, so that the bytes sent are the bytes signed.
    ``canonical``: the entity is CRLF throughout already (hprotect.protect's payload), so it
    is not scanned again (15 us for 10 KB, bench/cost_bench.py). micalg names the digest
    actually used (sha-512 for Ed25519, RFC 8419 3.1). What this returns is CRLF throughout.
    Raises what sign_der raises.
    """
    content = entity if canonical else mime.canonicalize(entity)
    der = sign_der(
        content,
        key,
        cert,
        chain,
        digest=digest,
        detached=detached,
        pss=pss,
        capabilities=capabilities,
        signing_time=signing_time,
    )
    if detached:
        micalg = mime.micalg_for_digest(effective_digest(key, digest))
        return mime.build_multipart_signed(content, der, micalg, canonical=True)
    return mime.build_pkcs7_mime(der, "signed-data")


Arrangement = Literal["parallel", "countersignature"]
ARRANGEMENTS: tuple[Arrangement, ...] = ("parallel", "countersignature")


@dataclass(frozen=True)
class Signer:
    """One signing key with its certificate and the intermediates to carry."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


def _countersigned(parent: _SignerInfoDer, signer: Signer,
                   signing_time: datetime | None) -> _SignerInfoDer:
    """``parent`` with a countersignature attribute (RFC 5652 11.4) by ``signer`` among its
    unsignedAttrs: a SignerInfo over the parent's signature value, whose signed attributes
    carry messageDigest and signingTime and no contentType (11.4 forbids it)."""
    info = acms.SignerInfo.load(parent.der)
    if not isinstance(info["unsigned_attrs"], core.Void):
        raise ValueError("parent: already has unsigned attributes")
    counter = _signer_info(bytes(info["signature"].native), signer.key, signer.cert,
                           capabilities=(), signing_time=signing_time, content_type=None)
    # unsignedAttrs [1] IMPLICIT SET OF Attribute, after the signature (RFC 5652 5.3).
    unsigned = tlv(0xA1, _attribute(_COUNTERSIGNATURE_OID, counter.der))
    return _SignerInfoDer(tlv(0x30, bytes(info.contents) + unsigned), parent.digest_algorithm,
                          parent.v3)


def sign_several_der(
    content: bytes,
    signers: Sequence[Signer],
    *,
    arrangement: Arrangement = "parallel",
    detached: bool = True,
    signing_time: datetime | None = None,
) -> bytes:
    """ContentInfo(SignedData) DER with several signers of ``content`` (exact bytes).

    parallel: one SignerInfo per signer in the same SignedData (RFC 5652 5.1; RFC 4853: a
    reader should accept the message when any signature of the signer verifies); the
    post-quantum transition's "dual signature". countersignature: the first signer's
    SignerInfo is the only one, and every other signer countersigns it (RFC 5652 11.4, an
    unsigned attribute over its signature value): readers that do not know the other
    algorithm verify the first signer alone, since unsigned attributes are not part of what
    they check (OpenSSL 3.0 refuses a whole SignedData with a signer it cannot verify).
    Raises ValueError (no signer, unknown arrangement, key not matching its certificate) and
    Unsupported as sign_der does.
    """
    if not signers:
        raise ValueError("signers: at least one is needed")
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"arrangement: {arrangement!r} is not one of {list(ARRANGEMENTS)}")
    certs: list[x509.Certificate] = []
    for signer in signers:
        certs += [signer.cert, *signer.chain]
    if arrangement == "parallel":
        infos = [_signer_info(content, s.key, s.cert, signing_time=signing_time)
                 for s in signers]
    else:
        first = _signer_info(content, signers[0].key, signers[0].cert, signing_time=signing_time)
        for other in signers[1:]:
            first = _countersigned(first, other, signing_time)
        infos = [first]
    return _assemble(content, infos, certs, detached=detached)


def sign_several(
    entity: bytes,
    signers: Sequence[Signer],
    *,
    arrangement: Arrangement = "parallel",
    detached: bool = True,
    signing_time: datetime | None = None,
    canonical: bool = False,
) -> bytes:
    """sign() with several signers (sign_several_der). micalg lists the digest of every
    signer of the content (RFC 8551 3.5.3.2: comma-separated); a countersignature digests a
    signature value, not the content, so it adds none. ``canonical`` as for sign(). Raises
    what sign_several_der raises."""
    content = entity if canonical else mime.canonicalize(entity)
    der = sign_several_der(content, signers, arrangement=arrangement, detached=detached,
                           signing_time=signing_time)
    if not detached:
        return mime.build_pkcs7_mime(der, "signed-data")
    content_signers = signers if arrangement == "parallel" else signers[:1]
    digests = dict.fromkeys(effective_digest(s.key, "sha256") for s in content_signers)
    micalg = ",".join(mime.micalg_for_digest(d) for d in digests)
    return mime.build_multipart_signed(content, der, micalg, canonical=True)
