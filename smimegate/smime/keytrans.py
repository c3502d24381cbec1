"""RSA key transport (RFC 5652 6.2.1): PKCS#1 v1.5 (RFC 3370 4.2.1) and RSAES-OAEP (RFC 3560).

``unwrap`` never raises on a bad key: it returns None, so decrypt.py can continue with a random
key as RFC 3218 2.3 asks.
"""

from __future__ import annotations

import functools

from asn1crypto import cms as acms
from asn1crypto import core
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from smimegate.smime.algorithms import (
    MGF1_OID,
    OAEP_HASH_OIDS,
    OAEP_HASHES,
    P_SPECIFIED_OID,
    RSA_OAEP_OID,
    RSA_PKCS1_OID,
)
from smimegate.smime.ber import der_header
from smimegate.smime.cms import guard, parsed_der, remember
from smimegate.smime.envelope import AlgorithmIdentifier, OaepParams
from smimegate.smime.errors import Malformed, Unsupported

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def hash_named(name: str) -> hashes.HashAlgorithm:
    """cryptography hash object for one of the names in algorithms.OAEP_HASHES."""
    return _HASHES[name]()


def oaep_sha256_algorithm() -> acms.KeyEncryptionAlgorithm:
    """id-RSAES-OAEP with SHA-256 and MGF1-SHA-256, written out explicitly (RFC 4055 4.1, 4.3:
    sha256 parameters absent; the default pSourceFunc, empty label, is omitted)."""
    return acms.KeyEncryptionAlgorithm.load(_oaep_sha256_der())


@functools.lru_cache(maxsize=1)
def _oaep_sha256_der() -> bytes:
    sha256 = AlgorithmIdentifier({"algorithm": OAEP_HASH_OIDS["sha256"]})
    params = OaepParams(
        {
            "hash_func": sha256,
            "mask_gen_func": AlgorithmIdentifier({"algorithm": MGF1_OID, "parameters": sha256}),
        }
    )
    return bytes(AlgorithmIdentifier({"algorithm": RSA_OAEP_OID, "parameters": params}).dump())


@functools.lru_cache(maxsize=1)
def _pkcs1_der() -> bytes:
    return bytes(acms.KeyEncryptionAlgorithm({"algorithm": RSA_PKCS1_OID}).dump())


def _transport(transport: str) -> tuple[bytes, padding.AsymmetricPadding]:
    """keyEncryptionAlgorithm DER and padding. Raises ValueError for another transport."""
    if transport == "rsa-oaep":
        return _oaep_sha256_der(), padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    if transport == "rsa-pkcs1":
        return _pkcs1_der(), padding.PKCS1v15()
    raise ValueError(f"key_transport {transport!r} is not rsa-pkcs1 or rsa-oaep")


def build_der(issuer_serial_der: bytes, public_key: rsa.RSAPublicKey, cek: bytes,
              transport: str) -> bytes:
    """``build`` for a recipient named by issuerAndSerialNumber (its DER), as DER: the
    RecipientInfo CHOICE of a ktri is the bare KeyTransRecipientInfo (RFC 5652 6.2). Written
    directly because asn1crypto building it cost more than the RSA encryption
    (bench/cost_bench.py); tests/unit/smime/test_encrypt.py pins the bytes to ``build``'s."""
    algorithm, pad = _transport(transport)
    encrypted = public_key.encrypt(cek, pad)
    # RFC 5652 6.2.1: version 0 with issuerAndSerialNumber.
    body = b"".join((b"\x02\x01\x00", issuer_serial_der, algorithm,
                     der_header(0x04, len(encrypted)), encrypted))
    return der_header(0x30, len(body)) + body


def build(
    rid: acms.RecipientIdentifier, public_key: rsa.RSAPublicKey, cek: bytes, transport: str
) -> acms.RecipientInfo:
    """A KeyTransRecipientInfo for this recipient. transport: "rsa-pkcs1" | "rsa-oaep"."""
    algorithm_der, pad = _transport(transport)
    algorithm = acms.KeyEncryptionAlgorithm.load(algorithm_der)
    # RFC 5652 6.2.1: version 0 with issuerAndSerialNumber, 2 with subjectKeyIdentifier.
    version = "v0" if rid.name == "issuer_and_serial_number" else "v2"
    ktri = acms.KeyTransRecipientInfo(
        {
            "version": version,
            "rid": rid,
            "key_encryption_algorithm": algorithm,
            "encrypted_key": public_key.encrypt(cek, pad),
        }
    )
    return acms.RecipientInfo(name="ktri", value=ktri)


def padding_for(algorithm: acms.KeyEncryptionAlgorithm) -> padding.AsymmetricPadding:
    """The padding a ktri's keyEncryptionAlgorithm names. Raises Unsupported / Malformed."""
    with guard("keyEncryptionAlgorithm"):
        der = parsed_der(algorithm)
    # By DER: every message to a recipient names the same algorithm, and reading it with
    # asn1crypto cost 10 us each time (bench/cost_bench.py). Refusals are not remembered.
    return remember(_PADDINGS, der, lambda: _padding_for(algorithm))


_PADDINGS: dict[bytes, padding.AsymmetricPadding] = {}


def padding_for_der(der: bytes) -> padding.AsymmetricPadding:
    """padding_for of a keyEncryptionAlgorithm given as its DER (envelope.plain_ktris), from
    the same cache. Raises Unsupported / Malformed."""
    return remember(_PADDINGS, der, lambda: _padding_for(acms.KeyEncryptionAlgorithm.load(der)))


def _padding_for(algorithm: acms.KeyEncryptionAlgorithm) -> padding.AsymmetricPadding:
    with guard("keyEncryptionAlgorithm"):
        oid = algorithm["algorithm"].dotted
        raw = algorithm["parameters"]
        params_der = raw.dump() if raw.contents is not None else b""
    if oid == RSA_PKCS1_OID:
        return padding.PKCS1v15()
    if oid != RSA_OAEP_OID:
        raise Unsupported(f"key transport algorithm {oid} is not supported")
    hash_name, mgf_name, label = "sha1", "sha1", None  # RFC 8017 A.2.1 defaults
    if params_der and params_der != b"\x05\x00":
        with guard("RSAES-OAEP-params"):
            params = OaepParams.load(params_der)
            if params["hash_func"].native is not None:
                hash_name = _oaep_hash(params["hash_func"]["algorithm"].dotted)
            if params["mask_gen_func"].native is not None:
                mgf = params["mask_gen_func"]
                if mgf["algorithm"].dotted != MGF1_OID:
                    raise Unsupported(f"OAEP mask generation {mgf['algorithm'].dotted}")
                inner = AlgorithmIdentifier.load(mgf["parameters"].dump())
                mgf_name = _oaep_hash(inner["algorithm"].dotted)
            if params["p_source_func"].native is not None:
                source = params["p_source_func"]
                if source["algorithm"].dotted != P_SPECIFIED_OID:
                    raise Malformed("RSAES-OAEP-params: pSourceFunc is not id-pSpecified")
                label = bytes(core.OctetString.load(source["parameters"].dump()).native) or None
    return padding.OAEP(
        mgf=padding.MGF1(hash_named(mgf_name)), algorithm=hash_named(hash_name), label=label
    )


def _oaep_hash(oid: str) -> str:
    name = OAEP_HASHES.get(oid)
    if name is None:
        raise Unsupported(f"OAEP hash {oid} is not supported")
    return name


def unwrap(
    private_key: object, encrypted_key: bytes, pad: padding.AsymmetricPadding
) -> bytes | None:
    """The content-encryption key, or None when this key cannot unwrap it (RFC 3218 2.3: the
    caller must not tell that apart from a wrong key later on)."""
    if not isinstance(private_key, rsa.RSAPrivateKey):
        return None
    try:
        return private_key.decrypt(encrypted_key, pad)
    except ValueError:
        return None
