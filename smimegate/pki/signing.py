"""Key types and signature algorithms of the built-in CA, by the names CONTRACT.md uses.

A key type names a fresh key (``rsa2048`` ... ``ec-p384``); a signature algorithm names how a CA
key signs certificates and CRLs (``sha256-rsa`` ... ``sha384-ecdsa``). Both are validated early,
and a signature algorithm must fit the signing key: RSA keys sign with PKCS#1 v1.5 or PSS
(RFC 4055), EC keys with ECDSA (RFC 5758 3.2), ML-DSA keys with their own parameter set
(RFC 9881 2: the key and signature algorithm share one OID; pure mode, no separate hash).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, mlkem, padding, rsa

from smimegate.smime.mlkem512 import MLKEM512PrivateKey, MLKEM512PublicKey

MlDsaPrivateKey: TypeAlias = (
    mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
)
MlDsaPublicKey: TypeAlias = mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | MlDsaPrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | MlDsaPublicKey
# ML-KEM (FIPS 203) keys only decapsulate: end-entity encryption certificates, never a CA key.
# cryptography 50 has ML-KEM-768 and -1024; ML-KEM-512 is smimegate.smime.mlkem512 (kyber-py).
MlKemPrivateKey: TypeAlias = (
    MLKEM512PrivateKey | mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey
)
MlKemPublicKey: TypeAlias = MLKEM512PublicKey | mlkem.MLKEM768PublicKey | mlkem.MLKEM1024PublicKey
EndEntityKey: TypeAlias = PrivateKey | MlKemPrivateKey
EndEntityPublicKey: TypeAlias = PublicKey | MlKemPublicKey
ML_KEM_TYPES: tuple[str, ...] = ("ml-kem-512", "ml-kem-768", "ml-kem-1024")

# ML-DSA parameter sets of FIPS 204 by the names RFC 9881 uses; each names a key type and the
# signature algorithm of such a key.
ML_DSA_TYPES: tuple[str, ...] = ("ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
_ML_DSA_KEYS: dict[str, type[MlDsaPrivateKey]] = {
    "ml-dsa-44": mldsa.MLDSA44PrivateKey,
    "ml-dsa-65": mldsa.MLDSA65PrivateKey,
    "ml-dsa-87": mldsa.MLDSA87PrivateKey,
}
_ML_KEM_CLASSES: dict[str, tuple[type[MlKemPrivateKey], type[MlKemPublicKey]]] = {
    "ml-kem-512": (MLKEM512PrivateKey, MLKEM512PublicKey),
    "ml-kem-768": (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey),
    "ml-kem-1024": (mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey),
}
_ML_DSA_CLASSES: dict[str, tuple[type, type]] = {
    "ml-dsa-44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    "ml-dsa-65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    "ml-dsa-87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}
KEY_TYPES: tuple[str, ...] = ("rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384", *ML_DSA_TYPES)
# What `cert issue --key-type` takes: every CA key type and the encryption-only ML-KEM ones.
ISSUE_KEY_TYPES: tuple[str, ...] = (*KEY_TYPES, *ML_KEM_TYPES)
SIGNATURE_ALGORITHMS: tuple[str, ...] = (
    "sha256-rsa", "sha384-rsa", "sha512-rsa", "sha256-rsa-pss", "sha256-ecdsa", "sha384-ecdsa",
    *ML_DSA_TYPES,
)  # fmt: skip

_CURVES: dict[str, type[ec.EllipticCurve]] = {"ec-p256": ec.SECP256R1, "ec-p384": ec.SECP384R1}
SignHash: TypeAlias = hashes.SHA256 | hashes.SHA384 | hashes.SHA512
_HASHES: dict[str, type[SignHash]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}  # fmt: skip


@dataclass(frozen=True)
class SignatureParams:
    """What ``CertificateBuilder.sign`` and ``CertificateRevocationListBuilder.sign`` take."""

    name: str
    hash: SignHash | None  # None for ML-DSA, which signs the message itself (RFC 9881 3)
    rsa_padding: padding.PSS | padding.PKCS1v15 | None


def check_key_type(name: str) -> str:
    """The key type name, validated. Raises ValueError naming the allowed values."""
    if name not in KEY_TYPES:
        raise ValueError(f"key type {name!r}: expected one of {', '.join(KEY_TYPES)}")
    return name


def new_key(key_type: str) -> PrivateKey:
    """A fresh private key of key_type. Raises ValueError for an unknown key type."""
    check_key_type(key_type)
    if key_type.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    if key_type in _ML_DSA_KEYS:
        return _ML_DSA_KEYS[key_type].generate()
    return ec.generate_private_key(_CURVES[key_type]())


def new_end_entity_key(key_type: str) -> EndEntityKey:
    """A fresh key of any ISSUE_KEY_TYPES type. Raises ValueError for an unknown one."""
    if key_type in _ML_KEM_CLASSES:
        return _ML_KEM_CLASSES[key_type][0].generate()
    if key_type not in ISSUE_KEY_TYPES:
        raise ValueError(f"key type {key_type!r}: expected one of {', '.join(ISSUE_KEY_TYPES)}")
    return new_key(key_type)


def ml_kem_type(key: object) -> str | None:
    """The ML-KEM key type name of a private or public ML-KEM key, else None."""
    for name, kinds in _ML_KEM_CLASSES.items():
        if isinstance(key, kinds):
            return name
    return None


def ml_dsa_type(key: object) -> str | None:
    """The ML-DSA key type name of a private or public ML-DSA key, else None."""
    for name, kinds in _ML_DSA_CLASSES.items():
        if isinstance(key, kinds):
            return name
    return None


def key_type_of(key: EndEntityKey | EndEntityPublicKey) -> str:
    """The key type name of an existing key. Raises ValueError for one we do not issue."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        name = f"rsa{key.key_size}"
    elif isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        name = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(key.curve.name, key.curve.name)
    elif (ml_dsa := ml_dsa_type(key)) is not None:
        name = ml_dsa
    elif (ml_kem := ml_kem_type(key)) is not None:
        return ml_kem
    else:
        raise ValueError(f"unsupported key {type(key).__name__}")
    return check_key_type(name)


def default_signature_algorithm(key: PrivateKey | PublicKey) -> str:
    """The usual algorithm for a CA key: SHA-256 with RSA, ECDSA with the curve's own hash."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "sha256-rsa"
    ml_dsa = ml_dsa_type(key)
    if ml_dsa is not None:
        return ml_dsa
    assert isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
    # RFC 5480 4: P-384 pairs with SHA-384.
    return "sha384-ecdsa" if key.curve.key_size >= 384 else "sha256-ecdsa"


def signature_params(name: str, key: PrivateKey) -> SignatureParams:
    """How key signs with the algorithm called name.

    Raises ValueError when name is unknown or does not fit the key (an RSA algorithm for an EC
    key or the other way round).
    """
    if name not in SIGNATURE_ALGORITHMS:
        raise ValueError(
            f"signature algorithm {name!r}: expected one of {', '.join(SIGNATURE_ALGORITHMS)}"
        )
    if name in ML_DSA_TYPES:
        have = ml_dsa_type(key)
        if have != name:
            raise ValueError(f"signature algorithm {name}: needs an {name} key, the CA key is "
                             f"{have or _kind(key)}")
        return SignatureParams(name, None, None)
    digest = _HASHES[name.split("-", 1)[0]]()
    if name.endswith("-ecdsa"):
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"signature algorithm {name}: needs an EC key, the CA key is "
                             f"{_kind(key)}")
        return SignatureParams(name, digest, None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"signature algorithm {name}: needs an RSA key, the CA key is "
                         f"{_kind(key)}")
    if name.endswith("-pss"):
        # RFC 4055 3.1 / RFC 8017 9.1: MGF1 with the same hash, salt as long as the hash
        # (what OpenSSL, NSS and Windows expect from a CA).
        return SignatureParams(
            name, digest, padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        )
    return SignatureParams(name, digest, padding.PKCS1v15())


def _kind(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "EC"
    return ml_dsa_type(key) or type(key).__name__


def check_pair(key_type: str, signature_algorithm: str | None) -> str:
    """The signature algorithm a new key of key_type signs with, validated against it.

    None gives the default for the key type. Raises ValueError for an unknown name or a
    mismatch, e.g. ``--key-type ec-p256 --signature-algorithm sha256-rsa``.
    """
    check_key_type(key_type)
    if key_type in ML_DSA_TYPES or signature_algorithm in ML_DSA_TYPES:
        # RFC 9881 2: an ML-DSA key signs only as its own parameter set.
        if signature_algorithm not in (None, key_type):
            raise ValueError(
                f"signature algorithm {signature_algorithm} does not fit key type {key_type}")
        return key_type
    rsa_key = key_type.startswith("rsa")
    if signature_algorithm is None:
        if rsa_key:
            return "sha256-rsa"
        return "sha384-ecdsa" if key_type == "ec-p384" else "sha256-ecdsa"
    if signature_algorithm not in SIGNATURE_ALGORITHMS:
        raise ValueError(
            f"signature algorithm {signature_algorithm!r}: expected one of "
            f"{', '.join(SIGNATURE_ALGORITHMS)}"
        )
    if rsa_key == signature_algorithm.endswith("-ecdsa"):
        raise ValueError(
            f"signature algorithm {signature_algorithm} does not fit key type {key_type}"
        )
    return signature_algorithm


def sign_bytes(key: PrivateKey, data: bytes, sig: SignatureParams) -> bytes:
    """key's signature over data (a TBSCertificate or TBSCertList we assembled ourselves) as
    sig says: what cryptography's builders do inside ``sign``."""
    if isinstance(key, rsa.RSAPrivateKey):
        # signature_params gives RSA keys a padding and a hash
        assert sig.rsa_padding is not None and sig.hash is not None
        return key.sign(data, sig.rsa_padding, sig.hash)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert sig.hash is not None
        return key.sign(data, ec.ECDSA(sig.hash))
    if sig.hash is None:  # ML-DSA: pure mode over the TBS (RFC 9881 3)
        return key.sign(data)
    raise ValueError(f"unsupported CA key {type(key).__name__}")
