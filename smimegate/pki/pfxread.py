"""Reading PKCS#12 (PFX) files: every private key and every certificate they hold.

cryptography's ``load_pkcs12`` returns one key and refuses X25519 keys, while S/MIME PFX files
often hold two keys (a signing and an encryption one, as RFC 9216's Carlos and Dana: Ed25519
and X25519). So the container is walked here with asn1crypto (RFC 7292 section 4) and each
encrypted part is decrypted with cryptography primitives:

- the integrity MAC: HMAC keyed by the RFC 7292 appendix B.2 KDF (ID 3) over the authSafe;
- password-based encryption (RFC 7292 appendix C): pbeWithSHAAnd3-KeyTripleDES-CBC,
  pbeWithSHAAnd2-KeyTripleDES-CBC, pbeWithSHAAnd128BitRC2-CBC, with key and IV from the same
  KDF (IDs 1 and 2) over the BMPString password;
- PBES2 (RFC 8018 section 6.2) with PBKDF2 and AES-CBC or 3DES-CBC, keyed from the UTF-8
  password, as OpenSSL 3 and NSS write by default.

A wrong password shows as a MAC mismatch (or, without a MAC, as a bad padding): both raise
WrongPassword. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos
from asn1crypto import pkcs12 as apkcs12
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import RC2, TripleDES
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from smimegate.smime import mlkem512


class Pkcs12Error(ValueError):
    """The data is not a PKCS#12 file we can read (malformed, or an unsupported algorithm)."""


class WrongPassword(Pkcs12Error):
    """The password does not open the PKCS#12 file (or a password is needed and none given)."""


@dataclass(frozen=True)
class Pfx:
    """What a PKCS#12 file holds: private keys (cryptography objects) and certificates."""

    keys: tuple[Any, ...]
    certificates: tuple[x509.Certificate, ...]


def looks_like_pfx(data: bytes) -> bool:
    """True when data parses as a PFX structure (version 3, RFC 7292 section 4)."""
    try:
        pfx = apkcs12.Pfx.load(data)
        return bool(pfx["version"].native == "v3" and pfx["auth_safe"]["content_type"].native)
    except (ValueError, TypeError, KeyError):
        return False


def _bmp_password(password: bytes | None) -> bytes:
    # RFC 7292 appendix B.1: BMPString (UTF-16BE) with a two-byte NUL terminator; an absent
    # password is the empty string (OpenSSL also tries it as zero bytes, see _candidates).
    if password is None:
        return b""
    return password.decode("utf-8").encode("utf-16-be") + b"\x00\x00"


def pkcs12_kdf(
    hash_name: str, password: bytes, salt: bytes, iterations: int, purpose: int, size: int
) -> bytes:
    """RFC 7292 appendix B.2: derive size bytes (purpose 1 key, 2 IV, 3 MAC key).

    password is already in BMPString form. Raises ValueError for an unknown hash.
    """
    digest = hashlib.new(hash_name)
    u, v = digest.digest_size, digest.block_size
    d = bytes([purpose]) * v

    def fill(data: bytes) -> bytes:
        if not data:
            return b""
        length = v * -(-len(data) // v)
        return (data * (length // len(data) + 1))[:length]

    block = bytearray(fill(salt) + fill(password))
    out = b""
    while len(out) < size:
        a = hashlib.new(hash_name, d + bytes(block)).digest()
        for _ in range(iterations - 1):
            a = hashlib.new(hash_name, a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big")
        for j in range(0, len(block), v):
            chunk = (int.from_bytes(block[j : j + v], "big") + b + 1) % (1 << (8 * v))
            block[j : j + v] = chunk.to_bytes(v, "big")
    return out[:size]


_BLOCK_CIPHERS: dict[str, type[TripleDES] | type[RC2] | type[AES]] = {
    "tripledes": TripleDES, "rc2": RC2, "aes": AES,
}


def _decrypt(algorithm: algos.EncryptionAlgorithm, password: bytes | None, data: bytes) -> bytes:
    """Decrypt one PBE-protected blob. Raises WrongPassword on bad padding, Pkcs12Error."""
    try:
        kdf = algorithm.kdf
        cipher_name = algorithm.encryption_cipher
        key_length = algorithm.key_length
        if kdf == "pkcs12_kdf":
            bmp = _bmp_password(password)
            hash_name = algorithm.kdf_hmac
            salt, rounds = algorithm.kdf_salt, algorithm.kdf_iterations
            key = pkcs12_kdf(hash_name, bmp, salt, rounds, 1, key_length)
            iv = pkcs12_kdf(hash_name, bmp, salt, rounds, 2, algorithm.encryption_block_size)
        elif kdf == "pbkdf2":
            key = hashlib.pbkdf2_hmac(
                algorithm.kdf_hmac, password or b"", algorithm.kdf_salt,
                algorithm.kdf_iterations, key_length,
            )
            iv = algorithm.encryption_iv
            if algorithm.encryption_mode != "cbc":
                raise Pkcs12Error(f"unsupported PBES2 mode {algorithm.encryption_mode}")
        else:
            raise Pkcs12Error(f"unsupported password-based encryption {algorithm['algorithm']}")
    except (ValueError, NotImplementedError) as exc:
        if isinstance(exc, Pkcs12Error):
            raise
        raise Pkcs12Error(f"unsupported password-based encryption: {exc}") from None
    cls = _BLOCK_CIPHERS.get(cipher_name)
    if cls is None or (cls is RC2 and key_length != 16):
        # RC2 with 40-bit keys (old Windows exports) is not in cryptography.
        raise Pkcs12Error(
            f"unsupported PKCS#12 encryption {algorithm['algorithm'].native}; re-export the "
            "file with AES (e.g. openssl pkcs12 -export)"
        )
    algo = cls(key)
    decryptor = Cipher(algo, modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(algo.block_size).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise WrongPassword("wrong password") from None


def _mac_ok(pfx: apkcs12.Pfx, password: bytes | None, auth_safe: bytes) -> bool:
    mac_data = pfx["mac_data"]
    digest_info = mac_data["mac"]
    hash_name = digest_info["digest_algorithm"]["algorithm"].native
    if hash_name not in ("sha1", "sha224", "sha256", "sha384", "sha512"):
        raise Pkcs12Error(f"unsupported PKCS#12 MAC algorithm {hash_name}")
    size = hashlib.new(hash_name).digest_size
    key = pkcs12_kdf(
        hash_name, _bmp_password(password), mac_data["mac_salt"].native,
        mac_data["iterations"].native, 3, size,
    )
    expected = digest_info["digest"].native
    return hmac.compare_digest(hmac.new(key, auth_safe, hash_name).digest(), expected)


def _safe_bags(contents: apkcs12.SafeContents) -> Iterator[apkcs12.SafeBag]:
    for bag in contents:
        if bag["bag_id"].native == "safe_contents":
            yield from _safe_bags(bag["bag_value"])
        else:
            yield bag


def load_pfx(data: bytes, password: str | None) -> Pfx:
    """Every private key and certificate of a PKCS#12 file.

    password None means "none given": the empty password is tried. Raises WrongPassword when
    the password does not fit (also when one is needed and none was given), Pkcs12Error for
    malformed data or an unsupported algorithm.
    """
    try:
        pfx = apkcs12.Pfx.load(data)
        auth_safe = pfx["auth_safe"]
        if auth_safe["content_type"].native != "data":
            raise Pkcs12Error("public-key integrity mode (signed authSafe) is not supported")
        content = auth_safe["content"].native
        if not isinstance(content, bytes):
            raise Pkcs12Error("authSafe holds no data")
        raw = password.encode("utf-8") if password is not None else None
        # An absent password may be written as an empty BMPString or as no bytes at all
        # (RFC 7292 B.1 leaves it open; OpenSSL tries both).
        candidates: list[bytes | None] = [raw] if raw is not None else [b"", None]
        if pfx["mac_data"].native is not None:
            for candidate in candidates:
                if _mac_ok(pfx, candidate, content):
                    raw = candidate
                    break
            else:
                raise WrongPassword("wrong password" if password is not None
                                    else "password-protected: a password is needed")
        else:
            raw = candidates[0]
        keys: list[Any] = []
        certs: list[x509.Certificate] = []
        for info in apkcs12.AuthenticatedSafe.load(content):
            kind = info["content_type"].native
            if kind == "data":
                safe = info["content"].native
            elif kind == "encrypted_data":
                enc = info["content"]["encrypted_content_info"]
                safe = _decrypt(enc["content_encryption_algorithm"], raw,
                                enc["encrypted_content"].native)
            else:
                raise Pkcs12Error(f"unsupported authSafe content {kind}")
            for bag in _safe_bags(apkcs12.SafeContents.load(safe)):
                _read_bag(bag, raw, keys, certs)
    except (KeyError, TypeError) as exc:
        raise Pkcs12Error(f"malformed PKCS#12: {exc}") from None
    except ValueError as exc:
        if isinstance(exc, Pkcs12Error):
            raise
        raise Pkcs12Error(f"malformed PKCS#12: {exc}") from None
    return Pfx(tuple(keys), tuple(certs))


def _read_bag(
    bag: apkcs12.SafeBag, password: bytes | None, keys: list[Any], certs: list[x509.Certificate]
) -> None:
    kind = bag["bag_id"].native
    value = bag["bag_value"]
    if kind == "pkcs8_shrouded_key_bag":
        pkcs8 = _decrypt(value["encryption_algorithm"], password,
                         value["encrypted_data"].native)
        keys.append(mlkem512.load_der_private_key(pkcs8, None))
    elif kind == "key_bag":
        keys.append(mlkem512.load_der_private_key(value.dump(), None))
    elif kind == "cert_bag":
        if value["cert_id"].native == "x509":
            certs.append(x509.load_der_x509_certificate(value["cert_value"].parsed.dump()))
    # CRL, secret and unknown bags carry nothing we keep.


__all__ = ["Pfx", "Pkcs12Error", "WrongPassword", "load_pfx", "looks_like_pfx", "pkcs12_kdf"]
