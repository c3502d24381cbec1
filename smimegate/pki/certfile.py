"""Reading the files an admin hands us: certificates, PKCS#7 bundles, PKCS#12 key files.

``read_file(path, password)`` recognises, by content and not by file name:

- PEM with any number of ``CERTIFICATE`` / ``X509 CERTIFICATE`` / ``TRUSTED CERTIFICATE``
  blocks, ``PKCS7`` / ``CMS`` certs-only bundles (RFC 8551 3.8; RFC 7468 sections 5 and 8),
  and unencrypted ``PRIVATE KEY`` blocks that belong to one of the certificates;
- DER: one certificate, a PKCS#7 SignedData (certs-only bundle ``.p7b`` / ``.p7c``, or the
  certificates of a ``.p7s``), or a PKCS#12 file (RFC 7292; every key and certificate, see
  smimegate.pki.pfxread).

Every error is a CertFileError whose message names the file and fits on one line.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from smimegate.pki import pfxread


class CertFileError(Exception):
    """A file cannot be read as certificates, a PKCS#7 bundle or a PKCS#12 file."""


class NeedsPassword(CertFileError):
    """A PKCS#12 file is password-protected and no password was given."""


class WrongPassword(CertFileError):
    """The given password does not open a PKCS#12 file."""


@dataclass(frozen=True)
class KeyPair:
    """A private key and the certificate it belongs to."""

    key: Any
    certificate: x509.Certificate


@dataclass(frozen=True)
class CertFile:
    """What one file held.

    certificates: every certificate, each once, in file order (those of pairs included).
    pairs: the private keys with their certificates (PKCS#12, or PEM with keys).
    kind: "pem", "der", "pkcs7" or "pkcs12", for messages.
    """

    path: str
    kind: str
    certificates: tuple[x509.Certificate, ...]
    pairs: tuple[KeyPair, ...] = ()


_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"CMS", b"PKCS #7 SIGNED DATA"}
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"}
MAX_SIZE = 16 * 1024 * 1024  # a certificate file is kilobytes; refuse to read a disk image


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _cert_public_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pair_keys(
    keys: tuple[Any, ...], certs: tuple[x509.Certificate, ...], path: str
) -> tuple[KeyPair, ...]:
    """Match each key to the certificates whose public key it is.

    A key may fit several certificates (a renewed certificate over the same key): each becomes
    a pair. Raises CertFileError for a key that fits none of them.
    """
    pairs: list[KeyPair] = []
    for key in keys:
        public = _public_der(key)
        matching = [c for c in certs if _cert_public_der(c) == public]
        if not matching:
            raise CertFileError(f"{path}: a private key in the file has no certificate in it")
        pairs.extend(KeyPair(key, c) for c in matching)
    return tuple(pairs)


def _unique(certs: list[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
    return tuple(seen.values())


def _read_pem(data: bytes, path: str) -> CertFile:
    certs: list[x509.Certificate] = []
    keys: list[Any] = []
    bundle = False
    for match in _PEM_BLOCK.finditer(data):
        label, body = match.group(1), match.group(2)
        try:
            der = base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except binascii.Error:
            raise CertFileError(f"{path}: bad base64 in a PEM {label.decode()} block") from None
        try:
            if label in _CERT_LABELS:
                if label == b"TRUSTED CERTIFICATE":
                    # OpenSSL's form: the certificate followed by its trust settings (X509_AUX).
                    der = _first_element(der)
                certs.append(x509.load_der_x509_certificate(der))
            elif label in _PKCS7_LABELS:
                bundle = True
                certs.extend(pkcs7.load_der_pkcs7_certificates(der))
            elif label in _KEY_LABELS:
                keys.append(serialization.load_der_private_key(_pkcs8(label, der), None))
            elif label == b"ENCRYPTED PRIVATE KEY":
                raise CertFileError(
                    f"{path}: encrypted PEM private keys are not read; import a PKCS#12 file "
                    "or decrypt the key first (openssl pkey)"
                )
        except (ValueError, TypeError) as exc:
            raise CertFileError(f"{path}: bad PEM {label.decode()} block: {exc}") from None
    if not certs:
        raise CertFileError(f"{path}: no certificate in this PEM file")
    unique = _unique(certs)
    return CertFile(path, "pkcs7" if bundle else "pem", unique, pair_keys(tuple(keys), unique,
                                                                           path))


def _pkcs8(label: bytes, der: bytes) -> bytes:
    if label == b"PRIVATE KEY":
        return der
    # Traditional RSA / SEC 1 keys: let cryptography read the PEM form.
    pem = b"-----BEGIN " + label + b"-----\n" + base64.encodebytes(der) + b"-----END " + label
    key = serialization.load_pem_private_key(pem + b"-----\n", None)
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _first_element(der: bytes) -> bytes:
    """The first DER element of der (its tag, length and contents)."""
    if len(der) < 2:
        raise ValueError("truncated")
    length = der[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[2 : 2 + count], "big")
        offset += count
    return der[: offset + length]


def _read_der(data: bytes, path: str, password: str | None) -> CertFile:
    try:
        return CertFile(path, "der", (x509.load_der_x509_certificate(data),))
    except ValueError:
        pass
    if pfxread.looks_like_pfx(data):
        return _read_pkcs12(data, path, password)
    try:
        with warnings.catch_warnings():
            # cryptography falls back to BER (indefinite lengths, as NSS and Windows write
            # them; X.690 8.1.3.6) with a UserWarning: a legitimate form, not news to an admin.
            warnings.simplefilter("ignore", UserWarning)
            certs = pkcs7.load_der_pkcs7_certificates(data)
    except ValueError:
        certs = []
    if certs:
        return CertFile(path, "pkcs7", _unique(certs))
    raise CertFileError(
        f"{path}: not a certificate, PKCS#7 bundle or PKCS#12 file (PEM or DER)"
    )


def _read_pkcs12(data: bytes, path: str, password: str | None) -> CertFile:
    try:
        pfx = pfxread.load_pfx(data, password)
    except pfxread.WrongPassword:
        if password is None:
            raise NeedsPassword(
                f"{path}: PKCS#12 file is password-protected; give --password or "
                "--password-file"
            ) from None
        raise WrongPassword(f"{path}: wrong password for this PKCS#12 file") from None
    except pfxread.Pkcs12Error as exc:
        raise CertFileError(f"{path}: cannot read PKCS#12: {exc}") from None
    certs = _unique(list(pfx.certificates))
    if not certs:
        raise CertFileError(f"{path}: PKCS#12 file holds no certificate")
    return CertFile(path, "pkcs12", certs, pair_keys(pfx.keys, certs, path))


def parse(data: bytes, path: str = "<data>", password: str | None = None) -> CertFile:
    """Read data (the content of path, named in messages) in any supported format.

    Raises NeedsPassword, WrongPassword or CertFileError.
    """
    if b"-----BEGIN " in data[:MAX_SIZE]:
        return _read_pem(data, path)
    return _read_der(data, path, password)


def read_file(path: str | os.PathLike[str], password: str | None = None) -> CertFile:
    """Read the file at path. Raises CertFileError (missing or unreadable file, unknown
    content), NeedsPassword or WrongPassword; every message names the file.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read(MAX_SIZE + 1)
    except FileNotFoundError:
        raise CertFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CertFileError(f"{name}: is a directory") from None
    except OSError as exc:
        raise CertFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_SIZE:
        raise CertFileError(f"{name}: larger than {MAX_SIZE // (1024 * 1024)} MiB")
    if not data.strip():
        raise CertFileError(f"{name}: empty file")
    return parse(data, name, password)
