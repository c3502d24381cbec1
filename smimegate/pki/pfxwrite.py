"""Writing PKCS#12 (PFX) files for keys cryptography cannot put into one: ML-DSA and ML-KEM.

cryptography 50 serialises ML-DSA and ML-KEM private keys as PKCS#8 (RFC 9881 6, RFC 9935 6:
the seed form) but its PKCS#12 writer takes RSA, DSA, EC and EdDSA keys only. So the container
is built here with asn1crypto, in the ``modern`` profile of smimegate.pki.pkcs12 and the shape
OpenSSL 3 writes (RFC 7292 4):

- AuthenticatedSafe of two ContentInfos: an EncryptedData with the certificate bags (the
  end-entity certificate first, named friendly_name and carrying localKeyId, then the chain,
  each named by its CN), and a Data with one pkcs8ShroudedKeyBag (friendlyName, localKeyId);
- both encrypted with PBES2 (RFC 8018 6.2): PBKDF2 with HMAC-SHA256, a 16-byte salt, and
  AES-256-CBC keyed from the UTF-8 password (RFC 9579 appendix A's recommendation);
- the integrity MAC: HMAC-SHA256 keyed by the RFC 7292 appendix B.2 KDF (ID 3) over the
  BMPString password, as OpenSSL 3 writes and every reader we know takes. RFC 9579's PBMAC1
  is not used: OpenSSL reads it only from 3.4 on.

localKeyId is the SHA-1 of the certificate's DER, as OpenSSL sets it. smimegate.pki.pfxread
reads the result back (tests/unit/pki/test_pfxwrite.py), so does cryptography's load_pkcs12.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from asn1crypto import algos, cms, core, keys
from asn1crypto import pkcs12 as apkcs12
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.x509.oid import NameOID

from smimegate.pki.pfxread import pkcs12_kdf

SALT_BYTES = 16
MAC_SALT_BYTES = 16


def _bmp(password: bytes) -> bytes:
    """RFC 7292 B.1: the password as a NUL-terminated BMPString (UTF-16BE)."""
    return password.decode("utf-8").encode("utf-16-be") + b"\x00\x00"


def _pbes2(password: bytes, rounds: int) -> tuple[algos.EncryptionAlgorithm, bytes]:
    """A fresh PBES2 AlgorithmIdentifier (PBKDF2-HMAC-SHA256, AES-256-CBC) and its key."""
    salt, iv = os.urandom(SALT_BYTES), os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", password, salt, rounds, 32)
    algorithm = algos.EncryptionAlgorithm({
        "algorithm": "pbes2",
        "parameters": {
            "key_derivation_func": {
                "algorithm": "pbkdf2",
                "parameters": {"salt": algos.Pbkdf2Salt(name="specified", value=salt),
                               "iteration_count": rounds,
                               "prf": {"algorithm": "sha256", "parameters": core.Null()}},
            },
            "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
        },
    })
    return algorithm, key


def _encrypt(password: bytes, rounds: int, data: bytes) -> tuple[algos.EncryptionAlgorithm, bytes]:
    algorithm, key = _pbes2(password, rounds)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(AES(key), modes.CBC(algorithm["parameters"]["encryption_scheme"]
                                           ["parameters"].native)).encryptor()
    return algorithm, encryptor.update(padded) + encryptor.finalize()


def _attributes(name: bytes | None, local_key_id: bytes | None) -> apkcs12.Attributes:
    items: list[dict[str, object]] = []
    if name is not None:
        items.append({"type": "friendly_name", "values": [name.decode("utf-8")]})
    if local_key_id is not None:
        items.append({"type": "local_key_id", "values": [local_key_id]})
    return apkcs12.Attributes(items)


def _cert_bag(cert: x509.Certificate, name: bytes | None,
              local_key_id: bytes | None) -> apkcs12.SafeBag:
    der = cert.public_bytes(serialization.Encoding.DER)
    return apkcs12.SafeBag({
        "bag_id": "cert_bag",
        "bag_value": apkcs12.CertBag({"cert_id": "x509",
                                      "cert_value": ax509.Certificate.load(der)}),
        "bag_attributes": _attributes(name, local_key_id),
    })


def _cn(cert: x509.Certificate) -> bytes | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value.encode("utf-8") if isinstance(value, str) else None


def write_pkcs12(
    pkcs8_der: bytes,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: str,
    *,
    friendly_name: bytes | None,
    rounds: int,
) -> bytes:
    """The DER of a PFX holding the PKCS#8 private key ``pkcs8_der`` (unencrypted
    PrivateKeyInfo), cert and chain. Raises ValueError for an empty password or rounds < 1."""
    if not password:
        raise ValueError("PKCS#12 password: must not be empty")
    if rounds < 1:
        raise ValueError("PKCS#12 rounds: must be at least 1")
    secret = password.encode("utf-8")
    local_key_id = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest()

    bags = [_cert_bag(cert, friendly_name, local_key_id)]
    bags += [_cert_bag(c, _cn(c), None) for c in chain]
    cert_algorithm, cert_blob = _encrypt(secret, rounds, apkcs12.SafeContents(bags).dump())
    certs_info = cms.ContentInfo({
        "content_type": "encrypted_data",
        "content": cms.EncryptedData({
            "version": "v0",
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": cert_algorithm,
                "encrypted_content": cert_blob,
            },
        }),
    })

    key_algorithm, key_blob = _encrypt(secret, rounds, pkcs8_der)
    shrouded = keys.EncryptedPrivateKeyInfo({"encryption_algorithm": key_algorithm,
                                             "encrypted_data": key_blob})
    key_bag = apkcs12.SafeBag({"bag_id": "pkcs8_shrouded_key_bag", "bag_value": shrouded,
                               "bag_attributes": _attributes(friendly_name, local_key_id)})
    key_info = cms.ContentInfo({"content_type": "data",
                                "content": apkcs12.SafeContents([key_bag]).dump()})

    auth_safe = apkcs12.AuthenticatedSafe([certs_info, key_info]).dump()
    mac_salt = os.urandom(MAC_SALT_BYTES)
    mac_key = pkcs12_kdf("sha256", _bmp(secret), mac_salt, rounds, 3, 32)
    pfx = apkcs12.Pfx({
        "version": "v3",
        "auth_safe": {"content_type": "data", "content": auth_safe},
        "mac_data": {
            "mac": {"digest_algorithm": {"algorithm": "sha256", "parameters": core.Null()},
                    "digest": hmac.new(mac_key, auth_safe, "sha256").digest()},
            "mac_salt": mac_salt,
            "iterations": rounds,
        },
    })
    return bytes(pfx.dump())
