"""ML-KEM recipients of EnvelopedData / AuthEnvelopedData: KEMRecipientInfo (RFC 9629) in
``ori``, with the choices of RFC 9936 (ML-KEM in the CMS).

Writing (RFC 9629 3, RFC 9936 3): ML-KEM.Encaps with the recipient's public key gives a shared
secret and kemct; the key-encryption key is HKDF-SHA256 (id-alg-hkdf-with-sha256, RFC 8619;
RFC 9936: MUST be supported for every parameter set) of the shared secret, no salt, with
info = DER(CMSORIforKEMOtherInfo {wrap, kekLength, ukm absent}) (RFC 9629 5); the CEK is wrapped
with AES key wrap (RFC 3394 / RFC 3565) of the size RFC 9936 3 names for the parameter set:
id-aes128-wrap for ML-KEM-512, id-aes256-wrap for ML-KEM-768 and ML-KEM-1024. The recipient is
identified by issuerAndSerialNumber, as our other RecipientInfos.

ML-KEM-768/1024 keys are cryptography's (OpenSSL); ML-KEM-512, which cryptography 50 does not
have, is smimegate.smime.mlkem512 with the same encapsulate / decapsulate interface. This
module picks by the KEM OID and the key's class, never by backend.

Reading takes any of our HKDF-SHA256 / AES key wrap combinations with a matching kekLength; a
failure to unwrap returns None, and the caller goes on with a random key (RFC 3218).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from asn1crypto import algos, cms, core
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from smimegate.smime import algorithms as alg
from smimegate.smime.ber import der_header
from smimegate.smime.errors import Unsupported
from smimegate.smime.mlkem512 import MLKEM512PrivateKey, MLKEM512PublicKey

PublicKey: TypeAlias = MLKEM512PublicKey | mlkem.MLKEM768PublicKey | mlkem.MLKEM1024PublicKey
PrivateKey: TypeAlias = MLKEM512PrivateKey | mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey

ORI_KEM = "1.2.840.113549.1.9.16.13.3"  # id-ori-kem, RFC 9629 3
HKDF_SHA256 = "1.2.840.113549.1.9.16.3.28"  # id-alg-hkdf-with-sha256, RFC 8619 2


@dataclass(frozen=True)
class _ParameterSet:
    name: str
    public: type[PublicKey]
    private: type[PrivateKey]
    kek_length: int  # RFC 9936 3: AES-Wrap-128 for ML-KEM-512, AES-Wrap-256 for the others


# RFC 9936 / FIPS 203 via NIST CSOR: id-alg-ml-kem-512, -768 and -1024 (kems 1, 2, 3).
_SETS = {
    "2.16.840.1.101.3.4.4.1": _ParameterSet("ml-kem-512", MLKEM512PublicKey, MLKEM512PrivateKey,
                                            16),
    "2.16.840.1.101.3.4.4.2": _ParameterSet("ml-kem-768", mlkem.MLKEM768PublicKey,
                                            mlkem.MLKEM768PrivateKey, 32),
    "2.16.840.1.101.3.4.4.3": _ParameterSet("ml-kem-1024", mlkem.MLKEM1024PublicKey,
                                            mlkem.MLKEM1024PrivateKey, 32),
}
ML_KEM_OIDS = {oid: ps.name for oid, ps in _SETS.items()}


class KEMRecipientInfo(core.Sequence):  # type: ignore[misc]
    """RFC 9629 3."""

    _fields = [
        ("version", cms.CMSVersion),
        ("rid", cms.RecipientIdentifier),
        ("kem", algos.AnyAlgorithmIdentifier),
        ("kemct", core.OctetString),
        ("kdf", algos.AnyAlgorithmIdentifier),
        ("kek_length", core.Integer),
        ("ukm", core.OctetString, {"explicit": 0, "optional": True}),
        ("wrap", algos.AnyAlgorithmIdentifier),
        ("encrypted_key", core.OctetString),
    ]


def _oid_only(oid: str) -> bytes:
    """An AlgorithmIdentifier with absent parameters (RFC 8619 2, RFC 3565 2.3.2, RFC 9936)."""
    body = bytes(core.ObjectIdentifier(oid).dump())
    return der_header(0x30, len(body)) + body


def _other_info(wrap_der: bytes, kek_length: int, ukm_der: bytes) -> bytes:
    """DER of CMSORIforKEMOtherInfo (RFC 9629 5): wrap, kekLength, ukm [0] when present."""
    body = wrap_der + bytes(core.Integer(kek_length).dump()) + ukm_der
    return der_header(0x30, len(body)) + body


def _kek(shared_secret: bytes, wrap_der: bytes, kek_length: int, ukm_der: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=kek_length, salt=None,
                info=_other_info(wrap_der, kek_length, ukm_der)).derive(shared_secret)


def kem_oid(public_key: PublicKey) -> str:
    """The id-alg-ml-kem-* OID of a public key we can encapsulate to."""
    return next(oid for oid, ps in _SETS.items() if isinstance(public_key, ps.public))


def build_der(issuer_and_serial_der: bytes, public_key: PublicKey, cek: bytes) -> bytes:
    """The DER of one RecipientInfo: ori [4] { id-ori-kem, KEMRecipientInfo } for cek."""
    oid = kem_oid(public_key)
    kek_length = _SETS[oid].kek_length
    shared_secret, kemct = public_key.encapsulate()
    wrap_der = _oid_only(alg.KEY_WRAP_FOR_BYTES[kek_length])
    kek = _kek(shared_secret, wrap_der, kek_length, b"")
    parts = [
        b"\x02\x01\x00",  # version 0 (RFC 9629 3)
        issuer_and_serial_der,  # rid: issuerAndSerialNumber
        _oid_only(oid),
        der_header(0x04, len(kemct)) + kemct,
        _oid_only(HKDF_SHA256),
        bytes(core.Integer(kek_length).dump()),
        wrap_der,
    ]
    wrapped = keywrap.aes_key_wrap(kek, cek)
    parts.append(der_header(0x04, len(wrapped)) + wrapped)
    kemri = b"".join(parts)
    value = der_header(0x30, len(kemri)) + kemri
    body = bytes(core.ObjectIdentifier(ORI_KEM).dump()) + value
    return der_header(0xA4, len(body)) + body  # ori [4] IMPLICIT OtherRecipientInfo


def parse(info: cms.RecipientInfo) -> KEMRecipientInfo | None:
    """The KEMRecipientInfo of an ori RecipientInfo of type id-ori-kem, else None.
    Raises what asn1crypto raises on broken DER (the caller guards)."""
    if info.name != "ori" or info.chosen["ori_type"].dotted != ORI_KEM:
        return None
    kemri: KEMRecipientInfo = KEMRecipientInfo.load(info.chosen["ori_value"].dump())
    _ = kemri.native  # parse it all here, inside the caller's guard
    return kemri


def unwrap(kemri: KEMRecipientInfo, private_key: object) -> bytes | None:
    """The content key, or None when it cannot be recovered with private_key.

    Raises Unsupported for a KEM, KDF or key wrap outside what we read.
    """
    kem = kemri["kem"]["algorithm"].dotted
    if kem not in _SETS:
        raise Unsupported(f"KEMRecipientInfo: unsupported KEM {kem}")
    if kemri["kdf"]["algorithm"].dotted != HKDF_SHA256:
        raise Unsupported(f"KEMRecipientInfo: unsupported KDF {kemri['kdf']['algorithm'].dotted}")
    wrap = kemri["wrap"]["algorithm"].dotted
    kek_length = int(kemri["kek_length"].native)
    if alg.KEY_WRAPS.get(wrap) != kek_length:
        raise Unsupported(f"KEMRecipientInfo: unsupported key wrap {wrap} / kekLength {kek_length}")
    if not isinstance(private_key, PrivateKey) or not isinstance(private_key,
                                                                   _SETS[kem].private):
        return None
    try:
        shared_secret = private_key.decapsulate(bytes(kemri["kemct"].native))
    except ValueError:  # a kemct of the wrong length
        return None
    ukm = kemri["ukm"]
    ukm_der = b"" if isinstance(ukm, core.Void) else bytes(ukm.dump())
    kek = _kek(shared_secret, bytes(kemri["wrap"].dump()), kek_length, ukm_der)
    try:
        return keywrap.aes_key_unwrap(kek, bytes(kemri["encrypted_key"].native))
    except keywrap.InvalidUnwrap:
        return None
