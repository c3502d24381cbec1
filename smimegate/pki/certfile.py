"""Reading the files an admin hands us: certificates, PKCS#7 bundles, PKCS#12 key files.

``read_file(path, password)`` recognises, by content and not by file name:

- PEM with any number of ``CERTIFICATE`` / ``X509 CERTIFICATE`` / ``TRUSTED CERTIFICATE``
  blocks, ``PKCS7`` / ``CMS`` certs-only bundles (RFC 8551 3.8; RFC 7468 sections 5 and 8),
  and unencrypted ``PRIVATE KEY`` blocks that belong to one of the certificates;
- DER: one certificate, a PKCS#7 SignedData (certs-only bundle ``.p7b`` / ``.p7c``, or the
  certificates of a ``.p7s``), or a PKCS#12 file (RFC 7292; every key and certificate, see
  smimegate.pki.pfxread).

A bundle (several certificates in PEM, a PKCS#7 bundle) is read certificate by certificate:
one that cannot be read (e.g. a DSA key whose parameters are inherited from the issuer, which
cryptography refuses) does not hide the others. It is listed in CertFile.unreadable with its
position in the file, its subject when that can be read, and why.

Every error is a CertFileError whose message names the file and fits on one line.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms as acms
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate import dn
from smimegate.pki import pfxread
from smimegate.smime import mlkem512
from smimegate.x509errors import X509_ERRORS, check_readable


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
class Unreadable:
    """A certificate in a file that could not be read.

    index: its position among the certificates of the file, from 1; subject: its RFC 4514
    subject when the name itself can be read, else None; reason: why, in a few words.
    """

    index: int
    subject: str | None
    reason: str

    def describe(self, path: str) -> str:
        """One line naming the certificate: ``FILE: certificate 2 (CN=x): reason``."""
        who = f" ({self.subject})" if self.subject else ""
        return f"{path}: certificate {self.index}{who}: {self.reason}"


@dataclass(frozen=True)
class CertFile:
    """What one file held.

    certificates: every certificate, each once, in file order (those of pairs included).
    pairs: the private keys with their certificates (PKCS#12, or PEM with keys).
    kind: "pem", "der", "pkcs7" or "pkcs12", for messages.
    unreadable: the certificates that could not be read, in file order.
    """

    path: str
    kind: str
    certificates: tuple[x509.Certificate, ...]
    pairs: tuple[KeyPair, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()


_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"CMS", b"PKCS #7 SIGNED DATA"}
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"}
MAX_SIZE = 16 * 1024 * 1024  # a certificate file is kilobytes; refuse to read a disk image


def key_spki(key: Any) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key's public key."""
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def certificate_spki(cert: x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo of cert's key as a key object writes it (ML-KEM-512 too,
    which cryptography cannot load). Raises UnsupportedAlgorithm or ValueError."""
    return bytes(mlkem512.certificate_public_key(cert).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ))


def pair_keys(
    keys: tuple[Any, ...], certs: tuple[x509.Certificate, ...], path: str
) -> tuple[KeyPair, ...]:
    """Match each key to the certificates whose public key it is.

    A key may fit several certificates (a renewed certificate over the same key): each becomes
    a pair. Raises CertFileError for a key that fits none of them.
    """
    pairs: list[KeyPair] = []
    for key in keys:
        public = key_spki(key)
        matching = [c for c in certs if certificate_spki(c) == public]
        if not matching:
            raise CertFileError(f"{path}: a private key in the file has no certificate in it")
        pairs.extend(KeyPair(key, c) for c in matching)
    return tuple(pairs)


def _unique(certs: list[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
    return tuple(seen.values())


class _Items:
    """The certificates of one file as they are met: read ones and unreadable ones, numbered
    together in file order."""

    def __init__(self) -> None:
        self.certs: list[x509.Certificate] = []
        self.unreadable: list[Unreadable] = []
        self.count = 0

    def add(self, der: bytes) -> None:
        self.count += 1
        try:
            # Read whole (x509errors.check_readable): a bad extension or name would otherwise
            # surface later, in the store, without the certificate's place in the file.
            cert = check_readable(x509.load_der_x509_certificate(der))
        except X509_ERRORS as exc:
            self.unreadable.append(Unreadable(self.count, _subject_of(der), _why(der, exc)))
        else:
            self.certs.append(cert)

    def add_other(self, what: str) -> None:
        """A CertificateChoices entry that is not an X.509 certificate (RFC 5652 10.2.2)."""
        self.count += 1
        self.unreadable.append(Unreadable(self.count, None, f"{what}, not an X.509 certificate"))

    def add_pkcs7(self, der: bytes, path: str) -> None:
        """Every certificate of a PKCS#7 / CMS SignedData (BER allowed, as NSS and Windows
        write it: X.690 8.1.3.6). Raises CertFileError when der is no SignedData."""
        for kind, item in _pkcs7_certificates(der, path):
            if kind == "certificate":
                self.add(item)
            else:
                self.add_other(kind)


def _pkcs7_certificates(der: bytes, path: str) -> list[tuple[str, bytes]]:
    """(choice name, DER) of each entry of a SignedData's certificates, in order."""
    try:
        info = acms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            raise CertFileError(f"{path}: a PKCS#7 of type {info['content_type'].native}, "
                                "not a certificate bundle (SignedData)")
        found = [(choice.name, choice.chosen.dump()) for choice in info["content"]["certificates"]]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CertFileError(f"{path}: malformed PKCS#7 bundle: {_first_line(exc)}") from None
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _subject_of(der: bytes) -> str | None:
    """The subject of a certificate cryptography refused, if asn1crypto can read the name."""
    try:
        return dn.asn1_name(ax509.Certificate.load(der)["tbs_certificate"]["subject"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _why(der: bytes, exc: Exception) -> str:
    """Why a certificate cannot be used, in words where the cause is known."""
    try:
        algorithm = ax509.Certificate.load(der)["tbs_certificate"][
            "subject_public_key_info"]["algorithm"]
        if algorithm["algorithm"].native == "dsa" and algorithm["parameters"].native is None:
            # RFC 3279 2.3.2: a DSA key may leave its parameters to the issuer's certificate;
            # cryptography (and so smimegate) cannot read such a key.
            return ("its DSA public key inherits its parameters from the issuer "
                    "(RFC 3279 2.3.2), which is not supported")
    except (ValueError, TypeError, KeyError, AttributeError):
        return f"not a well-formed certificate: {_first_line(exc)}"
    return f"cannot be read: {_first_line(exc)}"


def _read_pem(data: bytes, path: str) -> CertFile:
    items = _Items()
    keys: list[Any] = []
    bundle = False
    for match in _PEM_BLOCK.finditer(data):
        label, body = match.group(1), match.group(2)
        try:
            der = base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except binascii.Error:
            if label in _CERT_LABELS:  # one bad block of a bundle: name it, read the rest
                items.count += 1
                items.unreadable.append(Unreadable(items.count, None, "bad base64 in its PEM block"))
                continue
            raise CertFileError(f"{path}: bad base64 in a PEM {label.decode()} block") from None
        try:
            if label in _CERT_LABELS:
                if label == b"TRUSTED CERTIFICATE":
                    # OpenSSL's form: the certificate followed by its trust settings (X509_AUX).
                    der = _first_element(der)
                items.add(der)
            elif label in _PKCS7_LABELS:
                bundle = True
                items.add_pkcs7(der, path)
            elif label in _KEY_LABELS:
                keys.append(mlkem512.load_der_private_key(_pkcs8(label, der), None))
            elif label == b"ENCRYPTED PRIVATE KEY":
                raise CertFileError(
                    f"{path}: encrypted PEM private keys are not read; import a PKCS#12 file "
                    "or decrypt the key first (openssl pkey)"
                )
        except (ValueError, TypeError) as exc:
            raise CertFileError(f"{path}: bad PEM {label.decode()} block: {exc}") from None
    if not items.certs and not items.unreadable:
        raise CertFileError(f"{path}: no certificate in this PEM file")
    unique = _unique(items.certs)
    return CertFile(path, "pkcs7" if bundle else "pem", unique,
                    pair_keys(tuple(keys), unique, path), tuple(items.unreadable))


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
    except X509_ERRORS:
        pass
    if pfxread.looks_like_pfx(data):
        return _read_pkcs12(data, path, password)
    items, kind = _Items(), "pkcs7"
    try:
        items.add_pkcs7(data, path)
    except CertFileError:
        if _subject_of(data) is None:
            raise CertFileError(
                f"{path}: not a certificate, PKCS#7 bundle or PKCS#12 file (PEM or DER)"
            ) from None
        # Shaped like a certificate, yet cryptography refused it: name it and say why.
        items, kind = _Items(), "der"
        items.add(data)
    if not items.count:
        raise CertFileError(f"{path}: PKCS#7 bundle holds no certificate")
    return CertFile(path, kind, _unique(items.certs), unreadable=tuple(items.unreadable))


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
