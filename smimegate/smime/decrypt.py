"""Decrypt an S/MIME enveloped entity: CMS EnvelopedData (RFC 5652 6) or AuthEnvelopedData
(RFC 5083), with any of our (certificate, private key) pairs.

Against the million-message attack (RFC 3218 2.3): when the matching recipient's key unwrap
fails, or gives a key of the wrong length, we carry on with a random key of the right length,
so the failure shows up in content decryption with the same error as a wrong key would give.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from asn1crypto import cms as acms
from cryptography import x509

from smimegate.smime import bulk, envelope, kem, keyagree, keytrans, mime
from smimegate.smime.cms import (
    guard,
    identifier_to_cert_id,
    matches,
    oid_dotted,
    parsed_der,
    remember,
)
from smimegate.smime.errors import Malformed, NoDecryptionKey
from smimegate.smime.results import CertId, Layer, RecipientResult

PrivateKey = object  # any cryptography private key; the type is checked where it is used

NO_MATCHING_KEY = "no key for any recipient of this message"
# One fixed message for a failed unwrap and for a wrong key (RFC 3218 2.3).
CANNOT_DECRYPT = "cannot decrypt: wrong key or damaged message"


@dataclass(frozen=True)
class _Candidate:
    """One way in: a ktri (as asn1crypto or envelope.plain_ktris read it), one
    RecipientEncryptedKey of a kari, or a KEMRecipientInfo."""

    info: acms.RecipientInfo | envelope.Ktri
    encrypted_key: bytes
    cert_id: CertId
    kemri: kem.KEMRecipientInfo | None = None


def decrypt(
    entity: bytes, keys: Sequence[tuple[x509.Certificate, PrivateKey]]
) -> tuple[bytes, Layer]:
    """Decrypt an application/pkcs7-mime enveloped-data / authEnveloped-data entity.

    Returns (the inner MIME entity, Layer). Raises Malformed (broken MIME, base64 or CMS),
    Unsupported (algorithm outside the allow-list, e.g. RC2 or DES), NoDecryptionKey (no key
    matches, or decryption failed; ``.layer`` lists the recipients).
    """
    return decrypt_entity(mime.parse_entity(entity), keys)


def decrypt_entity(
    entity: mime.Entity, keys: Sequence[tuple[x509.Certificate, PrivateKey]]
) -> tuple[bytes, Layer]:
    """``decrypt`` of an entity already parsed (smimegate.smime.unwrap has parsed it to
    classify it). Raises as ``decrypt`` does."""
    return decrypt_der(mime.decode_smime_body(entity), keys)


def decrypt_der(
    der: bytes, keys: Sequence[tuple[x509.Certificate, PrivateKey]]
) -> tuple[bytes, Layer]:
    """Decrypt a ContentInfo DER (BER accepted) of EnvelopedData or AuthEnvelopedData.

    Returns (the decrypted content, Layer with decrypted=True). Raises as ``decrypt`` does.
    """
    env = envelope.read(der)
    cipher = bulk.cipher_of(env.algorithm)
    if (cipher.mode == "gcm") != (env.kind == "auth-enveloped"):
        # RFC 5083 1 / RFC 5652 6: AEAD ciphers belong in AuthEnvelopedData and only there.
        structure = "AuthEnvelopedData" if env.kind == "auth-enveloped" else "EnvelopedData"
        raise Malformed(f"{structure} with content cipher {cipher.name}")
    candidates = _candidates(env.recipient_infos)
    layer = Layer(
        kind=env.kind,
        cipher=cipher.label,
        key_size=cipher.key_bytes * 8,
        recipients=tuple(RecipientResult(c.cert_id, _kea_oid(c)) for c in candidates),
        decrypted=False,
    )
    chosen = _choose(candidates, keys)
    if chosen is None:
        raise NoDecryptionKey(NO_MATCHING_KEY, layer=layer)
    candidate, private_key = chosen
    random_key = os.urandom(cipher.key_bytes)
    cek = _unwrap(candidate, private_key)
    if cek is None or len(cek) != cipher.key_bytes:
        cek = random_key
    try:
        content = bulk.decrypt(
            cipher, env.algorithm, cek, env.ciphertext, mac=env.mac, aad=env.auth_attrs_der
        )
    except bulk.ContentDecryptionFailed:
        raise NoDecryptionKey(CANNOT_DECRYPT, layer=layer) from None
    return content, replace(layer, decrypted=True)


def _candidates(infos: acms.RecipientInfos | Sequence[envelope.Ktri]) -> list[_Candidate]:
    out: list[_Candidate] = []
    with guard("RecipientInfo"):
        for info in infos:
            if isinstance(info, envelope.Ktri):
                cert_id = remember(_RIDS, info.rid, functools.partial(_rid_cert_id, info.rid))
                out.append(_Candidate(info, info.encrypted_key, cert_id))
            elif info.name == "ktri":
                ktri = info.chosen
                out.append(
                    _Candidate(
                        info,
                        bytes(ktri["encrypted_key"].native),
                        identifier_to_cert_id(ktri["rid"]),
                    )
                )
            elif info.name == "kari":
                for rek in info.chosen["recipient_encrypted_keys"]:
                    out.append(
                        _Candidate(
                            info,
                            bytes(rek["encrypted_key"].native),
                            identifier_to_cert_id(rek["rid"]),
                        )
                    )
            elif (kemri := kem.parse(info)) is not None:
                # RFC 9629: KEMRecipientInfo in ori (ML-KEM, RFC 9936).
                out.append(_Candidate(info, bytes(kemri["encrypted_key"].native),
                                      identifier_to_cert_id(kemri["rid"]), kemri))
            # kekri / pwri / other ori: shared-secret recipients; we hold no such keys.
    return out


# CertIds of the rids of envelope.plain_ktris, by DER (as cms.identifier_to_cert_id keeps them).
_RIDS: dict[bytes, CertId] = {}


def _rid_cert_id(der: bytes) -> CertId:
    return identifier_to_cert_id(acms.RecipientIdentifier.load(der))


def _kea_oid(candidate: _Candidate) -> str:
    if candidate.kemri is not None:  # the KEM names the recipient's algorithm (RFC 9629 3)
        return str(candidate.kemri["kem"]["algorithm"].dotted)
    if isinstance(candidate.info, envelope.Ktri):
        der = candidate.info.key_encryption_algorithm
        return remember(_KEA_OIDS, der, lambda: _algorithm_oid(
            acms.KeyEncryptionAlgorithm.load(der)))
    with guard("RecipientInfo keyEncryptionAlgorithm"):
        algorithm = candidate.info.chosen["key_encryption_algorithm"]
        der = parsed_der(algorithm)
    # By DER, as keytrans.padding_for: the same few algorithms come with every message.
    return remember(_KEA_OIDS, der, lambda: _algorithm_oid(algorithm))


_KEA_OIDS: dict[bytes, str] = {}


def _algorithm_oid(algorithm: acms.KeyEncryptionAlgorithm) -> str:
    with guard("RecipientInfo keyEncryptionAlgorithm"):
        return oid_dotted(algorithm["algorithm"])


def _choose(
    candidates: Sequence[_Candidate], keys: Sequence[tuple[x509.Certificate, PrivateKey]]
) -> tuple[_Candidate, PrivateKey] | None:
    for candidate in candidates:
        for cert, key in keys:
            if matches(candidate.cert_id, cert):
                return candidate, key
    return None


def _unwrap(candidate: _Candidate, private_key: PrivateKey) -> bytes | None:
    """The content key, or None. Raises Unsupported for an algorithm outside the allow-list."""
    if candidate.kemri is not None:
        return kem.unwrap(candidate.kemri, private_key)
    if isinstance(candidate.info, envelope.Ktri):
        pad = keytrans.padding_for_der(candidate.info.key_encryption_algorithm)
        return keytrans.unwrap(private_key, candidate.encrypted_key, pad)
    if candidate.info.name == "ktri":
        pad = keytrans.padding_for(candidate.info.chosen["key_encryption_algorithm"])
        return keytrans.unwrap(private_key, candidate.encrypted_key, pad)
    return keyagree.unwrap(candidate.info.chosen, candidate.encrypted_key, private_key)
