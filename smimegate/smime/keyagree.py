"""Key agreement recipients (RFC 5652 6.2.2): ECDH P-256/P-384/P-521 (RFC 5753) and X25519
(RFC 8418), one-pass with an ephemeral originator key, KEK from the X9.63 KDF or HKDF over the
ECC-CMS-SharedInfo, content key wrapped with AES key wrap (RFC 3394, RFC 3565 2.3.2).

``unwrap`` returns None instead of raising on a wrong key (see decrypt.py, RFC 3218 2.3).
"""

from __future__ import annotations

from asn1crypto import cms as acms
from asn1crypto import keys as akeys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from smimegate.smime.algorithms import (
    ECDH_SCHEME_FOR_CURVE,
    KEY_AGREE_BY_OID,
    KEY_WRAP_FOR_BYTES,
    KEY_WRAPS,
    X25519_SCHEME_OID,
    KeyAgreeScheme,
)
from smimegate.smime.cms import guard
from smimegate.smime.envelope import AlgorithmIdentifier, EccCmsSharedInfo
from smimegate.smime.errors import Unsupported
from smimegate.smime.keytrans import hash_named

AgreementPublicKey = ec.EllipticCurvePublicKey | x25519.X25519PublicKey


def shared_info(wrap_algorithm: AlgorithmIdentifier, kek_bytes: int, ukm: bytes | None) -> bytes:
    """DER ECC-CMS-SharedInfo (RFC 5753 7.2): keyInfo, entityUInfo = ukm, suppPubInfo = KEK
    length in bits as a 32-bit big-endian integer."""
    value: dict[str, object] = {
        "key_info": wrap_algorithm,
        "supp_pub_info": (kek_bytes * 8).to_bytes(4, "big"),
    }
    if ukm is not None:
        value["entity_u_info"] = ukm
    return bytes(EccCmsSharedInfo(value).dump())


def derive_kek(scheme: KeyAgreeScheme, z: bytes, kek_bytes: int, info: bytes) -> bytes:
    """KEK from the shared secret: X9.63 KDF (RFC 5753 7.2) or HKDF without salt (RFC 8418 2.3)."""
    algorithm = hash_named(scheme.hash)
    if scheme.kdf == "x963":
        return X963KDF(algorithm=algorithm, length=kek_bytes, sharedinfo=info).derive(z)
    return HKDF(algorithm=algorithm, length=kek_bytes, salt=None, info=info).derive(z)


def build(
    rid: acms.KeyAgreementRecipientIdentifier, public_key: AgreementPublicKey, cek: bytes
) -> acms.RecipientInfo:
    """A KeyAgreeRecipientInfo (version 3) for one recipient with a fresh ephemeral key.

    The KEK is as long as the content key (aes128-wrap for AES-128 ...), so the wrap is never the
    weaker link; the KDF hash follows the curve (RFC 5753 8). Raises Unsupported for other curves.
    """
    ephemeral: ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        scheme_oid = ECDH_SCHEME_FOR_CURVE.get(public_key.curve.name)
        if scheme_oid is None:
            raise Unsupported(f"EC curve {public_key.curve.name} is not supported")
        ephemeral = ec.generate_private_key(public_key.curve)
        z = ephemeral.exchange(ec.ECDH(), public_key)
    else:
        scheme_oid = X25519_SCHEME_OID
        ephemeral = x25519.X25519PrivateKey.generate()
        z = ephemeral.exchange(public_key)
    scheme = KEY_AGREE_BY_OID[scheme_oid]
    kek_bytes = len(cek)
    wrap_algorithm = AlgorithmIdentifier({"algorithm": KEY_WRAP_FOR_BYTES[kek_bytes]})
    kek = derive_kek(scheme, z, kek_bytes, shared_info(wrap_algorithm, kek_bytes, None))
    spki = akeys.PublicKeyInfo.load(
        ephemeral.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    algorithm_der = AlgorithmIdentifier(
        {"algorithm": scheme_oid, "parameters": wrap_algorithm}
    ).dump()
    kari = acms.KeyAgreeRecipientInfo(
        {
            "version": "v3",
            "originator": acms.OriginatorIdentifierOrKey(name="originator_key", value=spki),
            "key_encryption_algorithm": acms.KeyEncryptionAlgorithm.load(algorithm_der),
            "recipient_encrypted_keys": [
                {"rid": rid, "encrypted_key": aes_key_wrap(kek, cek)},
            ],
        }
    )
    return acms.RecipientInfo(name="kari", value=kari)


def scheme_of(kari: acms.KeyAgreeRecipientInfo) -> tuple[KeyAgreeScheme, AlgorithmIdentifier, int]:
    """Scheme, key wrap AlgorithmIdentifier and KEK length. Raises Unsupported / Malformed."""
    with guard("KeyAgreeRecipientInfo keyEncryptionAlgorithm"):
        algorithm = kari["key_encryption_algorithm"]
        oid = algorithm["algorithm"].dotted
        scheme = KEY_AGREE_BY_OID.get(oid)
        if scheme is None:
            raise Unsupported(f"key agreement algorithm {oid} is not supported")
        wrap = AlgorithmIdentifier.load(algorithm["parameters"].dump())
        wrap_oid = wrap["algorithm"].dotted
    kek_bytes = KEY_WRAPS.get(wrap_oid)
    if kek_bytes is None:
        raise Unsupported(f"key wrap algorithm {wrap_oid} is not supported")
    return scheme, wrap, kek_bytes


def unwrap(
    kari: acms.KeyAgreeRecipientInfo, encrypted_key: bytes, private_key: object
) -> bytes | None:
    """The content key for the recipient holding private_key, or None if it does not work.

    Raises Unsupported for algorithms outside the allow-list and for an originator given by
    certificate (static-static ECDH, RFC 5753 3.2, which nobody sends), Malformed for broken
    structure.
    """
    scheme, wrap, kek_bytes = scheme_of(kari)
    with guard("KeyAgreeRecipientInfo originator"):
        originator = kari["originator"]
        if originator.name != "originator_key":
            raise Unsupported("key agreement with a static originator key is not supported")
        point = bytes(originator.chosen["public_key"].contents[1:])
        ukm_value = kari["ukm"].native
        ukm = bytes(ukm_value) if ukm_value is not None else None
    try:
        if scheme.kdf == "x963" and isinstance(private_key, ec.EllipticCurvePrivateKey):
            peer = ec.EllipticCurvePublicKey.from_encoded_point(private_key.curve, point)
            z = private_key.exchange(ec.ECDH(), peer)
        elif scheme.kdf == "hkdf" and isinstance(private_key, x25519.X25519PrivateKey):
            z = private_key.exchange(x25519.X25519PublicKey.from_public_bytes(point))
        else:
            return None
        kek = derive_kek(scheme, z, kek_bytes, shared_info(wrap, kek_bytes, ukm))
        return aes_key_unwrap(kek, encrypted_key)
    except (ValueError, InvalidUnwrap):
        return None
