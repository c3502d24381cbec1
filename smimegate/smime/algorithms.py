"""Allow-lists of the algorithms the engine uses, each citing the RFC that defines it.

Two sections, owned by different parts of the engine: "Digests and signatures" (sign.py,
verify.py) and "Content ciphers and key transport" (encrypt.py, decrypt.py). Anything not listed
here is refused with ``Unsupported`` (or, for a signature, reported as not valid).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from cryptography.hazmat.primitives import hashes

from smimegate.smime.errors import Unsupported

# Digests and signatures

# Message digests by name (RFC 5754 2 for SHA-2, RFC 3370 2.1 for SHA-1). RFC 8551 2.1: SHA-256
# MUST, SHA-512 SHOULD be supported; SHA-1 and SHA-224 are read so old mail still verifies.
DIGEST_OIDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "sha1": "1.3.14.3.2.26",
        "sha224": "2.16.840.1.101.3.4.2.4",
        "sha256": "2.16.840.1.101.3.4.2.1",
        "sha384": "2.16.840.1.101.3.4.2.2",
        "sha512": "2.16.840.1.101.3.4.2.3",
    }
)
DIGEST_NAMES: Final[Mapping[str, str]] = MappingProxyType({v: k for k, v in DIGEST_OIDS.items()})
# What we sign with (RFC 8551 2.1 and 6: SHA-1 MUST NOT be used for new signatures).
SIGNING_DIGESTS: Final = frozenset({"sha256", "sha384", "sha512"})
_HASHES: Final[Mapping[str, type[hashes.HashAlgorithm]]] = MappingProxyType(
    {
        "sha1": hashes.SHA1,
        "sha224": hashes.SHA224,
        "sha256": hashes.SHA256,
        "sha384": hashes.SHA384,
        "sha512": hashes.SHA512,
    }
)

# Signature algorithm identifiers.
# rsaEncryption as SignerInfo.signatureAlgorithm, parameters NULL (RFC 3370 3.2); the digest
# comes from SignerInfo.digestAlgorithm. This is what we write for RSA PKCS#1 v1.5.
RSA_ENCRYPTION: Final = "1.2.840.113549.1.1.1"
# shaXWithRSAEncryption (RFC 3370 3.2, RFC 5754 3.2): read, the digest is in the OID.
RSA_PKCS1_OIDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "1.2.840.113549.1.1.5": "sha1",
        "1.2.840.113549.1.1.14": "sha224",
        "1.2.840.113549.1.1.11": "sha256",
        "1.2.840.113549.1.1.12": "sha384",
        "1.2.840.113549.1.1.13": "sha512",
    }
)
# RSASSA-PSS (RFC 4056 2, parameters RFC 4055 3.1) and MGF1 (RFC 4055 2.2).
RSASSA_PSS: Final = "1.2.840.113549.1.1.10"
MGF1: Final = "1.2.840.113549.1.1.8"
# ecdsa-with-SHAx (RFC 5753 7.1.3, RFC 5758 3.2; parameters absent).
ECDSA_OIDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "1.2.840.10045.4.1": "sha1",
        "1.2.840.10045.4.3.1": "sha224",
        "1.2.840.10045.4.3.2": "sha256",
        "1.2.840.10045.4.3.3": "sha384",
        "1.2.840.10045.4.3.4": "sha512",
    }
)
ECDSA_BY_DIGEST: Final[Mapping[str, str]] = MappingProxyType(
    {v: k for k, v in ECDSA_OIDS.items()}
)
# id-ecPublicKey: some producers put the key OID where the signature OID belongs; the digest then
# comes from digestAlgorithm (read only).
EC_PUBLIC_KEY: Final = "1.2.840.10045.2.1"
# Curves we sign with (RFC 8551 2.2 names P-256; RFC 5753 allows P-384).
SIGNING_CURVES: Final = frozenset({"secp256r1", "secp384r1"})
# id-Ed25519, parameters absent (RFC 8410 3); in CMS with signed attributes the digestAlgorithm
# MUST be id-sha512 (RFC 8419 3.1).
ED25519: Final = "1.3.101.112"
ED25519_DIGEST: Final = "sha512"
# ML-DSA (FIPS 204) in SignedData, RFC 9882: id-ml-dsa-44/65/87 (NIST CSOR sigAlgs 17-19, RFC 9882
# 2), parameters MUST be absent; pure mode with the empty context string (3.1, 3.2). The same OIDs
# name the public keys in certificates (RFC 9881 2).
ML_DSA_OIDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "2.16.840.1.101.3.4.3.17": "ml-dsa-44",
        "2.16.840.1.101.3.4.3.18": "ml-dsa-65",
        "2.16.840.1.101.3.4.3.19": "ml-dsa-87",
    }
)
ML_DSA_OID_FOR: Final[Mapping[str, str]] = MappingProxyType(
    {v: k for k, v in ML_DSA_OIDS.items()}
)
# RFC 9882 3.3: SHA-512 MUST be supported and suits every parameter set, so it is the
# digestAlgorithm we write (also without signed attributes, where it MUST be SHA-512).
ML_DSA_DIGEST: Final = "sha512"
# RFC 9882 3.3 Table 1, the SHA-2 rows: digests whose strength meets the parameter set's lambda
# (verifiers MAY reject others; we do, so a strong key is not undercut by a weak digest).
ML_DSA_DIGESTS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "ml-dsa-44": frozenset({"sha256", "sha384", "sha512"}),
        "ml-dsa-65": frozenset({"sha384", "sha512"}),
        "ml-dsa-87": frozenset({"sha512"}),
    }
)
# DSA (RFC 3370 3.1, RFC 5754 3.1): read only, so RFC 4134 era mail still verifies.
DSA: Final = "1.2.840.10040.4.1"
DSA_OIDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "1.2.840.10040.4.3": "sha1",
        "2.16.840.1.101.3.4.3.1": "sha224",
        "2.16.840.1.101.3.4.3.2": "sha256",
    }
)

# SMIMECapabilities entries (RFC 8551 2.5.2) by the names encrypt() uses for ciphers.
# AES-CBC: RFC 3565 4.1; AES-GCM: RFC 5084 3.2; rsaesOAEP: RFC 4055 4.1; 3DES: RFC 3370 5.1.
CAPABILITY_OIDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "aes256-gcm": "2.16.840.1.101.3.4.1.46",
        "aes192-gcm": "2.16.840.1.101.3.4.1.26",
        "aes128-gcm": "2.16.840.1.101.3.4.1.6",
        "aes256-cbc": "2.16.840.1.101.3.4.1.42",
        "aes192-cbc": "2.16.840.1.101.3.4.1.22",
        "aes128-cbc": "2.16.840.1.101.3.4.1.2",
        "des-ede3-cbc": "1.2.840.113549.3.7",
        "rc2-cbc": "1.2.840.113549.3.2",
        "rsaes-oaep": "1.2.840.113549.1.1.7",
        "prefer-binary-inside": "1.2.840.113549.1.9.16.11.1",
    }
)
CAPABILITY_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {v: k for k, v in CAPABILITY_OIDS.items()}
)
# What we announce by default: what decrypt() can read, strongest first, the ciphers and then
# the key encipherment algorithms (RFC 8551 2.5.2 keeps the categories apart). rsaesOAEP is
# announced with SHA-256 / MGF1-SHA-256 parameters (RFC 3560 5, RFC 4055 4.1; 2.5.2: parameters
# tell instances apart): the OAEP encrypt() makes, so a peer that honours it picks the same.
# RSA PKCS#1 v1.5 is implied (RFC 8551 2.7.1.1) and not listed.
DEFAULT_CAPABILITIES: Final = (
    "aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc", "rsaes-oaep",
)


def hash_for(digest: str) -> hashes.HashAlgorithm:
    """A fresh cryptography hash object for a digest name of DIGEST_OIDS.

    Raises Unsupported for a name outside the allow-list.
    """
    try:
        return _HASHES[digest]()
    except KeyError:
        raise Unsupported(f"unsupported digest algorithm {digest}") from None


def signing_digest(digest: str) -> str:
    """Normalise a digest name for signing ("SHA256", "sha-256" -> "sha256").

    Raises Unsupported when it is not one of SIGNING_DIGESTS.
    """
    name = digest.lower().replace("-", "")
    if name not in SIGNING_DIGESTS:
        allowed = ", ".join(sorted(SIGNING_DIGESTS))
        raise Unsupported(f"digest {digest!r} is not one of {allowed} for signing")
    return name
# (end of section "Digests and signatures")

# Content ciphers and key transport


@dataclass(frozen=True)
class ContentCipher:
    """A content-encryption algorithm (RFC 5652 6.3).

    name: our option name ("aes256-cbc"); label: as the result header prints it ("AES256");
    mode "cbc" goes into EnvelopedData, "gcm" into AuthEnvelopedData (RFC 5083);
    writable: False for algorithms we only read (3DES, RFC 8551 2.7: MUST NOT send... SHOULD- read).
    """

    name: str
    oid: str
    key_bytes: int
    mode: Literal["cbc", "gcm"]
    label: str
    writable: bool = True


CONTENT_CIPHERS: Final[tuple[ContentCipher, ...]] = (
    # RFC 3565 2: AES-CBC, parameters = the 16-byte IV.
    ContentCipher("aes128-cbc", "2.16.840.1.101.3.4.1.2", 16, "cbc", "AES128"),
    ContentCipher("aes192-cbc", "2.16.840.1.101.3.4.1.22", 24, "cbc", "AES192"),
    ContentCipher("aes256-cbc", "2.16.840.1.101.3.4.1.42", 32, "cbc", "AES256"),
    # RFC 5084 3.2: AES-GCM, parameters = GCMParameters (nonce, ICV length).
    ContentCipher("aes128-gcm", "2.16.840.1.101.3.4.1.6", 16, "gcm", "AES128-GCM"),
    ContentCipher("aes192-gcm", "2.16.840.1.101.3.4.1.26", 24, "gcm", "AES192-GCM"),
    ContentCipher("aes256-gcm", "2.16.840.1.101.3.4.1.46", 32, "gcm", "AES256-GCM"),
    # RFC 3370 5.1 / RFC 8551 2.7: des-ede3-cbc, read only.
    ContentCipher("des-ede3-cbc", "1.2.840.113549.3.7", 24, "cbc", "3DES", writable=False),
)
CONTENT_CIPHER_BY_NAME: Final = {c.name: c for c in CONTENT_CIPHERS}
CONTENT_CIPHER_BY_OID: Final = {c.oid: c for c in CONTENT_CIPHERS}
WRITABLE_CONTENT_CIPHERS: Final = tuple(c.name for c in CONTENT_CIPHERS if c.writable)

# Recognised but refused (RFC 8551 2.7 drops them; RFC 3218 / weak keys): named in Unsupported.
REFUSED_CONTENT_CIPHERS: Final = {
    "1.2.840.113549.3.2": "rc2-cbc",
    "1.3.14.3.2.7": "des-cbc",
    "1.2.840.113549.3.4": "rc4",
    "1.2.840.113549.3.9": "rc5-cbc",
    "2.16.840.1.101.3.4.1.7": "aes128-ccm",
    "2.16.840.1.101.3.4.1.27": "aes192-ccm",
    "2.16.840.1.101.3.4.1.47": "aes256-ccm",
    "1.2.840.113549.1.9.16.3.18": "chacha20-poly1305",
}

# Key transport (RFC 5652 6.2.1): RSA PKCS#1 v1.5 (RFC 3370 4.2.1) and RSAES-OAEP (RFC 3560,
# RFC 4055 4.1). Our option names -> OID.
RSA_PKCS1_OID: Final = "1.2.840.113549.1.1.1"
RSA_OAEP_OID: Final = "1.2.840.113549.1.1.7"
KEY_TRANSPORTS: Final = {"rsa-pkcs1": RSA_PKCS1_OID, "rsa-oaep": RSA_OAEP_OID}
# RFC 8017 A.2.1 / RFC 4055 2.1: hash and MGF1 hash of RSAES-OAEP-params; SHA-1 is the default.
MGF1_OID: Final = "1.2.840.113549.1.1.8"
P_SPECIFIED_OID: Final = "1.2.840.113549.1.1.9"
OAEP_HASHES: Final = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
OAEP_HASH_OIDS: Final = {name: oid for oid, name in OAEP_HASHES.items()}

# RFC 3394 AES key wrap as used by RFC 3565 2.3.2 (parameters absent): OID -> KEK bytes.
KEY_WRAPS: Final = {
    "2.16.840.1.101.3.4.1.5": 16,  # id-aes128-wrap
    "2.16.840.1.101.3.4.1.25": 24,  # id-aes192-wrap
    "2.16.840.1.101.3.4.1.45": 32,  # id-aes256-wrap
}
KEY_WRAP_FOR_BYTES: Final = {size: oid for oid, size in KEY_WRAPS.items()}


@dataclass(frozen=True)
class KeyAgreeScheme:
    """A key agreement scheme of KeyAgreeRecipientInfo: KDF kind and hash."""

    oid: str
    kdf: Literal["x963", "hkdf"]
    hash: str
    name: str


KEY_AGREE_SCHEMES: Final[tuple[KeyAgreeScheme, ...]] = (
    # RFC 5753 7.1.4 (and RFC 3278 for SHA-1): ECDH with the ANSI X9.63 KDF. Cofactor DH equals
    # standard DH on the NIST prime curves (cofactor 1), so those OIDs are read the same way.
    KeyAgreeScheme("1.3.133.16.840.63.0.2", "x963", "sha1", "dhSinglePass-stdDH-sha1kdf"),
    KeyAgreeScheme("1.3.132.1.11.0", "x963", "sha224", "dhSinglePass-stdDH-sha224kdf"),
    KeyAgreeScheme("1.3.132.1.11.1", "x963", "sha256", "dhSinglePass-stdDH-sha256kdf"),
    KeyAgreeScheme("1.3.132.1.11.2", "x963", "sha384", "dhSinglePass-stdDH-sha384kdf"),
    KeyAgreeScheme("1.3.132.1.11.3", "x963", "sha512", "dhSinglePass-stdDH-sha512kdf"),
    KeyAgreeScheme("1.3.133.16.840.63.0.3", "x963", "sha1", "dhSinglePass-cofactorDH-sha1kdf"),
    KeyAgreeScheme("1.3.132.1.14.0", "x963", "sha224", "dhSinglePass-cofactorDH-sha224kdf"),
    KeyAgreeScheme("1.3.132.1.14.1", "x963", "sha256", "dhSinglePass-cofactorDH-sha256kdf"),
    KeyAgreeScheme("1.3.132.1.14.2", "x963", "sha384", "dhSinglePass-cofactorDH-sha384kdf"),
    KeyAgreeScheme("1.3.132.1.14.3", "x963", "sha512", "dhSinglePass-cofactorDH-sha512kdf"),
    # RFC 8418 2: X25519 / X448 with HKDF.
    KeyAgreeScheme("1.2.840.113549.1.9.16.3.19", "hkdf", "sha256", "dhSinglePass-stdDH-hkdf-sha256"),
    KeyAgreeScheme("1.2.840.113549.1.9.16.3.20", "hkdf", "sha384", "dhSinglePass-stdDH-hkdf-sha384"),
    KeyAgreeScheme("1.2.840.113549.1.9.16.3.21", "hkdf", "sha512", "dhSinglePass-stdDH-hkdf-sha512"),
)
KEY_AGREE_BY_OID: Final = {s.oid: s for s in KEY_AGREE_SCHEMES}
# What we write (RFC 5753 8 / RFC 5008 3: the KDF hash follows the curve size).
ECDH_SCHEME_FOR_CURVE: Final = {
    "secp256r1": "1.3.132.1.11.1",
    "secp384r1": "1.3.132.1.11.2",
    "secp521r1": "1.3.132.1.11.3",
}
X25519_SCHEME_OID: Final = "1.2.840.113549.1.9.16.3.19"
EC_PUBLIC_KEY_OID: Final = "1.2.840.10045.2.1"  # RFC 5480 2.1.1 id-ecPublicKey
X25519_OID: Final = "1.3.101.110"  # RFC 8410 3
# (end of section "Content ciphers and key transport")
