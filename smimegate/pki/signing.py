"""Key types and signature algorithms of the built-in CA, by the names CONTRACT.md uses.

A key type names a fresh key (``rsa2048`` ... ``ec-p384``); a signature algorithm names how a CA
key signs certificates and CRLs (``sha256-rsa`` ... ``sha384-ecdsa``). Both are validated early,
and a signature algorithm must fit the signing key: RSA keys sign with PKCS#1 v1.5 or PSS
(RFC 4055), EC keys with ECDSA (RFC 5758 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

KEY_TYPES: tuple[str, ...] = ("rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384")
SIGNATURE_ALGORITHMS: tuple[str, ...] = (
    "sha256-rsa", "sha384-rsa", "sha512-rsa", "sha256-rsa-pss", "sha256-ecdsa", "sha384-ecdsa",
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
    hash: SignHash
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
    return ec.generate_private_key(_CURVES[key_type]())


def key_type_of(key: PrivateKey | PublicKey) -> str:
    """The key type name of an existing key. Raises ValueError for one we do not issue."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        name = f"rsa{key.key_size}"
    elif isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        name = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(key.curve.name, key.curve.name)
    else:
        raise ValueError(f"unsupported key {type(key).__name__}")
    return check_key_type(name)


def default_signature_algorithm(key: PrivateKey | PublicKey) -> str:
    """The usual algorithm for a CA key: SHA-256 with RSA, ECDSA with the curve's own hash."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "sha256-rsa"
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
    digest = _HASHES[name.split("-", 1)[0]]()
    if name.endswith("-ecdsa"):
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"signature algorithm {name}: needs an EC key, the CA key is RSA")
        return SignatureParams(name, digest, None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"signature algorithm {name}: needs an RSA key, the CA key is EC")
    if name.endswith("-pss"):
        # RFC 4055 3.1 / RFC 8017 9.1: MGF1 with the same hash, salt as long as the hash
        # (what OpenSSL, NSS and Windows expect from a CA).
        return SignatureParams(
            name, digest, padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        )
    return SignatureParams(name, digest, padding.PKCS1v15())


def check_pair(key_type: str, signature_algorithm: str | None) -> str:
    """The signature algorithm a new key of key_type signs with, validated against it.

    None gives the default for the key type. Raises ValueError for an unknown name or a
    mismatch, e.g. ``--key-type ec-p256 --signature-algorithm sha256-rsa``.
    """
    check_key_type(key_type)
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
