"""ML-DSA (FIPS 204) signatures in CMS SignedData, as RFC 9882 profiles them.

Pure mode only (RFC 9882 3.1: HashML-DSA is not used in CMS), with the empty context string
(3.2). The message handed to ML-DSA is what RFC 5652 5.4 says is signed: the DER SET OF the
signed attributes, or the eContent octets when there are none, exactly as for Ed25519 (RFC 8419).
sign.py and verify.py call these functions for keys and OIDs of this family; the classic
algorithms never come here.
"""

from __future__ import annotations

import functools
from typing import TypeAlias

from asn1crypto import algos
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa

from smimegate.smime import algorithms as alg

PrivateKey: TypeAlias = (
    mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
)
PublicKey: TypeAlias = mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey

_PRIVATE: dict[type, str] = {
    mldsa.MLDSA44PrivateKey: "ml-dsa-44",
    mldsa.MLDSA65PrivateKey: "ml-dsa-65",
    mldsa.MLDSA87PrivateKey: "ml-dsa-87",
}
_PUBLIC: dict[type, str] = {
    mldsa.MLDSA44PublicKey: "ml-dsa-44",
    mldsa.MLDSA65PublicKey: "ml-dsa-65",
    mldsa.MLDSA87PublicKey: "ml-dsa-87",
}


def parameter_set(key: object) -> str | None:
    """"ml-dsa-44" | "ml-dsa-65" | "ml-dsa-87" for an ML-DSA private or public key, else None."""
    return _parameter_set_of(type(key))  # type: ignore[arg-type]  # a class is Hashable


@functools.lru_cache(maxsize=32)
def _parameter_set_of(kind: type) -> str | None:
    # Answered once per key class: six isinstance checks against cryptography's abstract
    # classes (abc.__instancecheck__) took 1.7 us for an RSA key, asked for every signature
    # (bench/cost_bench.py). Key classes live as long as the process.
    for abstract, name in (*_PRIVATE.items(), *_PUBLIC.items()):
        if issubclass(kind, abstract):
            return name
    return None


@functools.lru_cache(maxsize=4)
def algorithm_der(name: str) -> bytes:
    """signatureAlgorithm DER for a parameter set: the OID alone, parameters absent (RFC 9882 2,
    3.3)."""
    oid = alg.ML_DSA_OID_FOR[name]
    return bytes(algos.SignedDigestAlgorithm({"algorithm": oid, "parameters": None}).dump())


def sign(key: PrivateKey, data: bytes) -> tuple[bytes, bytes]:
    """(signatureAlgorithm DER, signature) of data: pure ML-DSA, empty context (RFC 9882 3.2),
    hedged (cryptography's default; RFC 9882 4 advises against the deterministic variant)."""
    name = parameter_set(key)
    assert name is not None
    return algorithm_der(name), key.sign(data)


def check(oid: str, public: object, signature: bytes, data: bytes) -> str | None:
    """Why signature over data does not verify with public under the ML-DSA OID, or None when
    it verifies. The OID must name the parameter set of the key (RFC 9882 3.3, Table 2)."""
    wanted = alg.ML_DSA_OIDS[oid]
    if not isinstance(public, PublicKey):
        return f"signature algorithm {wanted} does not match the signer's key"
    have = parameter_set(public)
    if have != wanted:
        return f"signature algorithm {wanted} does not match the signer's {have} key"
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return "signature does not verify"
    return None


def digest_too_weak(name: str, digest: str) -> str | None:
    """Why digest is not strong enough for the parameter set (RFC 9882 3.3, Table 1), or None."""
    if digest in alg.ML_DSA_DIGESTS[name]:
        return None
    allowed = ", ".join(sorted(alg.ML_DSA_DIGESTS[name]))
    return f"digest {digest} is too weak for {name} (RFC 9882 3.3: one of {allowed})"
