"""ML-KEM-512 keys (FIPS 203), the one parameter set cryptography does not have.

cryptography 50 (OpenSSL inside) offers ML-KEM-768 and ML-KEM-1024 only; an ML-KEM-512 key in
a certificate or a PKCS#8 file is an "unknown key type" there. This module gives ML-KEM-512 the
same interface smimegate uses of cryptography's ML-KEM classes, so that smimegate.smime.kem
and the PKI code choose by OID and never by backend:

- MLKEM512PublicKey: ``encapsulate() -> (shared_secret, ciphertext)``, ``public_bytes`` (SPKI,
  RFC 9935 4), ``public_bytes_raw``, equality;
- MLKEM512PrivateKey: ``generate()``, ``decapsulate(ciphertext)``, ``public_key()``,
  ``private_bytes`` (PKCS#8 seed form, RFC 9935 6) and ``private_bytes_raw`` (the seed);
- ``certificate_public_key`` / ``load_der_public_key`` / ``load_der_private_key``: cryptography
  for every key type it knows, ML-KEM-512 here; PKCS#8 in any of RFC 9935's three forms (seed,
  expandedKey, both, the last checked for consistency as RFC 9935 6 asks).

The arithmetic is kyber-py (pure-Python FIPS 203, Giacomo Pope), imported on first use so that
start-up does not pay for it (bench/startup_bench.py). Pure Python is slow (milliseconds per
operation, bench/pqc_bench.py) and makes no constant-time claim; ML-KEM-768/1024 stay on
cryptography / OpenSSL.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    from kyber_py.ml_kem.ml_kem import ML_KEM

OID = "2.16.840.1.101.3.4.4.1"  # id-alg-ml-kem-512 (RFC 9935 3, NIST CSOR kems 1)
NAME = "ml-kem-512"
# FIPS 203 table 3 for k = 2: encapsulation key 384k + 32, decapsulation key 768k + 96,
# ciphertext 32 (du k + dv) with du = 10, dv = 4.
PUBLIC_BYTES = 800
EXPANDED_BYTES = 1632
CIPHERTEXT_BYTES = 768
SEED_BYTES = 64  # d || z (FIPS 203 7.1, RFC 9935 6)


def _kem() -> ML_KEM:
    from kyber_py.ml_kem import ML_KEM_512  # noqa: PLC0415 - lazily: start-up time

    return ML_KEM_512


class _AlgorithmIdentifier(core.Sequence):  # type: ignore[misc]
    # RFC 5280 4.1.1.2; asn1crypto's AnyAlgorithmIdentifier cannot be built with a new OID.
    _fields = [("algorithm", core.ObjectIdentifier),
               ("parameters", core.Any, {"optional": True})]


class _Spki(core.Sequence):  # type: ignore[misc]
    # RFC 5280 4.1 SubjectPublicKeyInfo; asn1crypto's own one refuses OIDs it does not know.
    _fields = [("algorithm", _AlgorithmIdentifier), ("public_key", core.OctetBitString)]


class _OneAsymmetricKey(core.Sequence):  # type: ignore[misc]
    # RFC 5958 2 (PKCS#8 v1 and v2): the public key [1] may follow the private one.
    _fields = [
        ("version", core.Integer),
        ("algorithm", _AlgorithmIdentifier),
        ("private_key", core.OctetString),
        ("attributes", core.Any, {"implicit": 0, "optional": True}),
        ("public_key", core.OctetBitString, {"implicit": 1, "optional": True}),
    ]


class _Both(core.Sequence):  # type: ignore[misc]
    # RFC 9935 6: both SEQUENCE { seed OCTET STRING (SIZE (64)), expandedKey OCTET STRING }
    _fields = [("seed", core.OctetString), ("expanded_key", core.OctetString)]


def _algorithm() -> _AlgorithmIdentifier:
    # RFC 9935 3: parameters absent.
    return _AlgorithmIdentifier({"algorithm": OID})


class MLKEM512PublicKey:
    """An ML-KEM-512 encapsulation key (800 bytes)."""

    __slots__ = ("_ek",)

    def __init__(self, ek: bytes) -> None:
        if len(ek) != PUBLIC_BYTES:
            raise ValueError(f"ML-KEM-512 public key: {len(ek)} bytes, expected {PUBLIC_BYTES}")
        self._ek = bytes(ek)

    @classmethod
    def from_public_bytes(cls, data: bytes) -> MLKEM512PublicKey:
        return cls(data)

    def public_bytes_raw(self) -> bytes:
        return self._ek

    def public_bytes(self, encoding: serialization.Encoding,
                     format: serialization.PublicFormat) -> bytes:  # noqa: A002 - cryptography's name
        """SubjectPublicKeyInfo (RFC 9935 4) in DER or PEM, or the raw key."""
        if format is serialization.PublicFormat.Raw and encoding is serialization.Encoding.Raw:
            return self._ek
        if format is not serialization.PublicFormat.SubjectPublicKeyInfo:
            raise ValueError(f"ML-KEM-512 public key: format {format} is not supported")
        der = bytes(_Spki({"algorithm": _algorithm(),
                           "public_key": self._ek}).dump())
        return _encode(der, encoding, "PUBLIC KEY")

    def encapsulate(self) -> tuple[bytes, bytes]:
        """FIPS 203 ML-KEM.Encaps: (shared secret, ciphertext), cryptography's order.
        Raises ValueError when the key fails the modulus check (FIPS 203 7.2)."""
        shared, ciphertext = _kem().encaps(self._ek)
        return shared, ciphertext

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MLKEM512PublicKey) and other._ek == self._ek

    def __hash__(self) -> int:
        return hash(self._ek)


class MLKEM512PrivateKey:
    """An ML-KEM-512 decapsulation key, with its seed when it came from one."""

    __slots__ = ("_seed", "_dk")

    def __init__(self, dk: bytes, seed: bytes | None = None) -> None:
        if len(dk) != EXPANDED_BYTES:
            raise ValueError(f"ML-KEM-512 private key: {len(dk)} bytes, expected "
                             f"{EXPANDED_BYTES}")
        if seed is not None and len(seed) != SEED_BYTES:
            raise ValueError(f"ML-KEM-512 seed: {len(seed)} bytes, expected {SEED_BYTES}")
        self._dk = bytes(dk)
        self._seed = seed

    @classmethod
    def generate(cls) -> MLKEM512PrivateKey:
        return cls.from_seed_bytes(os.urandom(SEED_BYTES))

    @classmethod
    def from_seed_bytes(cls, seed: bytes) -> MLKEM512PrivateKey:
        """FIPS 203 ML-KEM.KeyGen_internal(d, z) of seed = d || z (RFC 9935 6)."""
        if len(seed) != SEED_BYTES:
            raise ValueError(f"ML-KEM-512 seed: {len(seed)} bytes, expected {SEED_BYTES}")
        _, dk = _kem().key_derive(seed)
        return cls(dk, seed)

    def public_key(self) -> MLKEM512PublicKey:
        # FIPS 203 7.1: dk = dk_pke || ek || H(ek) || z, dk_pke being 384k bytes.
        return MLKEM512PublicKey(self._dk[768:768 + PUBLIC_BYTES])

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """FIPS 203 ML-KEM.Decaps. Raises ValueError for a ciphertext of the wrong length (as
        cryptography does); a wrong ciphertext of the right length gives the implicit-rejection
        secret, never an error."""
        if len(ciphertext) != CIPHERTEXT_BYTES:
            raise ValueError(f"ML-KEM-512 ciphertext: {len(ciphertext)} bytes, expected "
                             f"{CIPHERTEXT_BYTES}")
        shared: bytes = _kem().decaps(self._dk, ciphertext)
        return shared

    def private_bytes_raw(self) -> bytes:
        """The 64-byte seed, as cryptography's ML-KEM keys give it. Raises ValueError for a key
        that was read from the expanded form alone."""
        if self._seed is None:
            raise ValueError("ML-KEM-512 private key: read without its seed")
        return self._seed

    def private_bytes(self, encoding: serialization.Encoding,
                      format: serialization.PrivateFormat,  # noqa: A002 - cryptography's name
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        """PKCS#8 (RFC 9935 6) in DER or PEM, unencrypted: the seed form, which RFC 9935
        recommends, or the expandedKey form for a key that came without its seed."""
        if format is not serialization.PrivateFormat.PKCS8:
            raise ValueError(f"ML-KEM-512 private key: format {format} is not supported")
        if not isinstance(encryption_algorithm, serialization.NoEncryption):
            # Encrypted copies go into a PKCS#12 (smimegate.pki.pfxwrite), never here.
            raise ValueError("ML-KEM-512 private key: only unencrypted PKCS#8 is written")
        inner = (bytes(core.OctetString(self._seed, implicit=0).dump()) if self._seed
                 else bytes(core.OctetString(self._dk).dump()))
        der = bytes(_OneAsymmetricKey({
            "version": 0, "algorithm": _algorithm(),
            "private_key": inner}).dump())
        return _encode(der, encoding, "PRIVATE KEY")


def _encode(der: bytes, encoding: serialization.Encoding, label: str) -> bytes:
    if encoding is serialization.Encoding.DER:
        return der
    if encoding is serialization.Encoding.PEM:
        from asn1crypto import pem  # noqa: PLC0415 - rarely used

        return bytes(pem.armor(label, der))
    raise ValueError(f"ML-KEM-512 key: encoding {encoding} is not supported")


def _spki_oid(der: bytes) -> str | None:
    try:
        spki = _Spki.load(der)
        return str(spki["algorithm"]["algorithm"].dotted)
    except (ValueError, TypeError):
        return None


def load_der_public_key(der: bytes) -> Any:
    """A SubjectPublicKeyInfo as a key object: cryptography's for the types it knows,
    MLKEM512PublicKey for id-alg-ml-kem-512. Raises UnsupportedAlgorithm or ValueError."""
    try:
        return serialization.load_der_public_key(der)
    except UnsupportedAlgorithm:
        if _spki_oid(der) != OID:
            raise
    spki = _Spki.load(der)
    if not isinstance(spki["algorithm"]["parameters"], core.Void):
        raise ValueError("ML-KEM-512 public key: parameters must be absent (RFC 9935 3)")
    # OctetBitString refuses unused bits itself (a key is a whole number of bytes).
    return MLKEM512PublicKey(bytes(spki["public_key"].native))


def certificate_public_key(cert: x509.Certificate) -> Any:
    """cert.public_key(), ML-KEM-512 included. Raises UnsupportedAlgorithm or ValueError."""
    try:
        return cert.public_key()
    except UnsupportedAlgorithm:
        if cert.public_key_algorithm_oid.dotted_string != OID:
            raise
    return load_der_public_key(_cert_spki(cert))


def _cert_spki(cert: x509.Certificate) -> bytes:
    from asn1crypto import x509 as ax509  # noqa: PLC0415 - rarely used

    tbs = ax509.TbsCertificate.load(cert.tbs_certificate_bytes)
    return bytes(tbs["subject_public_key_info"].dump())


def _private_key(pkcs8: bytes) -> MLKEM512PrivateKey:
    info = _OneAsymmetricKey.load(pkcs8)
    if info["version"].native not in (0, 1):
        raise ValueError("ML-KEM-512 private key: unknown PKCS#8 version")
    if not isinstance(info["algorithm"]["parameters"], core.Void):
        raise ValueError("ML-KEM-512 private key: parameters must be absent (RFC 9935 3)")
    inner = bytes(info["private_key"].native)
    if not inner:
        raise ValueError("ML-KEM-512 private key: empty")
    if inner[0] == 0x80:  # seed [0] IMPLICIT OCTET STRING
        key = MLKEM512PrivateKey.from_seed_bytes(
            bytes(core.OctetString.load(inner, implicit=0).native))
    elif inner[0] == 0x04:  # expandedKey OCTET STRING
        dk = bytes(core.OctetString.load(inner).native)
        key = MLKEM512PrivateKey(dk)
        _check_expanded(dk)
    elif inner[0] == 0x30:  # both
        both = _Both.load(inner)
        key = MLKEM512PrivateKey.from_seed_bytes(bytes(both["seed"].native))
        # RFC 9935 6: the expandedKey must be the one the seed gives, else the key is refused.
        if bytes(both["expanded_key"].native) != key._dk:
            raise ValueError("ML-KEM-512 private key: seed and expandedKey do not match")
    else:
        raise ValueError("ML-KEM-512 private key: neither seed, expandedKey nor both")
    public = info["public_key"]
    if not isinstance(public, core.Void) and bytes(public.native) != \
            key.public_key().public_bytes_raw():
        raise ValueError("ML-KEM-512 private key: publicKey does not match the private key")
    return key


def _check_expanded(dk: bytes) -> None:
    # FIPS 203 7.3 hash check: the H(ek) inside dk must be the hash of the ek inside it.
    import hashlib  # noqa: PLC0415 - rarely used

    if hashlib.sha3_256(dk[768:768 + PUBLIC_BYTES]).digest() != dk[1568:1600]:
        raise ValueError("ML-KEM-512 private key: expandedKey fails the hash check")


def _pkcs8_oid(der: bytes) -> str | None:
    try:
        return str(_OneAsymmetricKey.load(der)["algorithm"]["algorithm"].dotted)
    except (ValueError, TypeError):
        return None


def load_der_private_key(der: bytes, password: bytes | None = None, **kwargs: Any) -> Any:
    """serialization.load_der_private_key with ML-KEM-512 (unencrypted PKCS#8, RFC 9935 6)
    too. Raises UnsupportedAlgorithm, ValueError or TypeError as cryptography does."""
    try:
        return serialization.load_der_private_key(der, password, **kwargs)
    except UnsupportedAlgorithm:
        if password is not None or _pkcs8_oid(der) != OID:
            raise
    try:
        return _private_key(der)
    except (KeyError, IndexError) as exc:  # asn1crypto on a broken structure
        raise ValueError(f"ML-KEM-512 private key: malformed ({exc})") from None


def load_pem_private_key(data: bytes, password: bytes | None = None, **kwargs: Any) -> Any:
    """serialization.load_pem_private_key with ML-KEM-512 too (its first PRIVATE KEY block).
    Raises UnsupportedAlgorithm, ValueError or TypeError as cryptography does."""
    try:
        return serialization.load_pem_private_key(data, password, **kwargs)
    except UnsupportedAlgorithm:
        if password is not None:
            raise
        from asn1crypto import pem  # noqa: PLC0415 - rarely used

        for label, _, der in pem.unarmor(data, multiple=True):
            if label == "PRIVATE KEY":
                return load_der_private_key(bytes(der))
        raise


def is_key(key: object) -> bool:
    """An ML-KEM-512 public or private key of this module."""
    return isinstance(key, MLKEM512PublicKey | MLKEM512PrivateKey)
