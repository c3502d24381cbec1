"""Key and certificate files named on the command line (``message inspect --key/--cert/--trust``).

``--key`` takes a private key in PEM or DER (PKCS#8, or traditional OpenSSL/PKCS#1/SEC1, also
encrypted PEM with a password; ML-KEM-512 unencrypted PKCS#8 only, as smimegate.smime.mlkem512
reads it), a PEM file holding both key and certificate, or a PKCS#12 file
(DER, or PEM-armoured as some tools write it). PKCS#12 files are read by smimegate.pki.certfile
like ``cert import`` reads them, so every key they hold is used (RFC 9216's files hold a signing
and an encryption key). A key without its own certificate takes the next ``--cert``.

Every problem is a UsageError (exit 2) whose one line names the option and the file, except a
PKCS#12 file that does not open with the password given (wrong password, damaged file): that is
OperationFailed (exit 1), as in ``cert import``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, rsa, x25519

from smimegate.cli.common import OperationFailed, UsageError
from smimegate.pki import certfile
from smimegate.smime import mlkem512
from smimegate.smime.cms import name_to_str, to_asn1

# Key types the engine can decrypt or sign with (DESIGN.md "Choices"): the post-quantum ones
# too (issue 14), ML-KEM-512 by smimegate.smime.mlkem512 since cryptography has none, so that
# a PKCS#12 file from ``cert issue --key-type ml-kem-768`` or ``ml-dsa-65`` opens here as well.
_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    x25519.X25519PrivateKey,
    ed25519.Ed25519PrivateKey,
    mlkem.MLKEM768PrivateKey,
    mlkem.MLKEM1024PrivateKey,
    mlkem512.MLKEM512PrivateKey,
    mldsa.MLDSA44PrivateKey,
    mldsa.MLDSA65PrivateKey,
    mldsa.MLDSA87PrivateKey,
)


@dataclass(frozen=True)
class KeyFile:
    """One private key read from ``path``, with its certificate when the file held it."""

    path: str
    key: Any
    certificate: x509.Certificate | None


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from exc


def load_key_file(path: str, password: str | None) -> list[KeyFile]:
    """The keys of a --key file (see the module docstring): one, or each of a PKCS#12's.

    Raises UsageError naming the file when it cannot be read or opened, OperationFailed when
    a PKCS#12 file does not open with the password.
    """
    data = _read(path, "--key")
    if b"-----BEGIN PKCS12-----" in data:
        # PEM-armoured PKCS#12, as some tools write it (protected-headers' bob.p12).
        return _load_pkcs12(path, _pem_body(data, "PKCS12", path), password)
    secret = password.encode("utf-8") if password is not None else None
    try:
        if b"-----BEGIN" in data:
            key = mlkem512.load_pem_private_key(data, secret)
            certs = x509.load_pem_x509_certificates(data) if b"CERTIFICATE-----" in data else []
            return [KeyFile(path, _check_key_type(path, key), certs[0] if certs else None)]
        try:
            key = mlkem512.load_der_private_key(data, secret)
        except ValueError:
            return _load_pkcs12(path, data, password)
        return [KeyFile(path, _check_key_type(path, key), None)]
    except TypeError as exc:
        # cryptography: TypeError when the key is encrypted and no password was given, or
        # a password was given for an unencrypted key.
        raise UsageError(f"--key {path}: {exc} (use --password or --password-file)") from exc
    except ValueError as exc:
        raise UsageError(f"--key {path}: not a private key we can read ({exc})") from exc
    except UnsupportedAlgorithm as exc:
        raise UsageError(f"--key {path}: a key algorithm we do not read ({exc})") from exc


def _pem_body(data: bytes, label: str, path: str) -> bytes:
    begin, end = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    start = data.find(begin)
    stop = data.find(end, start)
    if start < 0 or stop < 0:
        raise UsageError(f"--key {path}: PEM block {label} is not terminated")
    try:
        return base64.b64decode(b"".join(data[start + len(begin) : stop].split()), validate=True)
    except binascii.Error as exc:
        raise UsageError(f"--key {path}: bad base64 in PEM block {label}") from exc


def _load_pkcs12(path: str, data: bytes, password: str | None) -> list[KeyFile]:
    try:
        found = certfile.parse(data, path, password)
    except certfile.NeedsPassword as exc:
        # The messages name the file and say when a password is missing or wrong.
        raise UsageError(f"--key {exc}") from exc
    except certfile.CertFileError as exc:
        # Like ``cert import``: a password that does not open the file is a failed operation
        # (CONTRACT.md exit 1), not a usage error.
        raise OperationFailed(f"--key {exc}") from exc
    if not found.pairs:
        raise UsageError(f"--key {path}: the file holds no private key")
    return [KeyFile(path, _check_key_type(path, p.key), p.certificate) for p in found.pairs]


def _check_key_type(path: str, key: object) -> Any:
    if not isinstance(key, _KEY_TYPES):
        raise UsageError(f"--key {path}: {type(key).__name__} keys are not supported")
    return key


def load_certificates(path: str) -> list[x509.Certificate]:
    """Every certificate of a --cert or --trust file (PEM, DER or a PKCS#7 bundle).

    Raises UsageError naming the file.
    """
    try:
        return list(certfile.read_file(path).certificates)
    except certfile.CertFileError as exc:
        raise UsageError(str(exc)) from exc


def _certificate_spki(cert: x509.Certificate) -> bytes:
    """certfile.certificate_spki, or b"" when cert's key is of a kind no loader here reads
    (it then matches no key)."""
    try:
        return certfile.certificate_spki(cert)
    except (UnsupportedAlgorithm, ValueError):
        return b""


def pair_keys(
    key_files: Sequence[KeyFile], certs: Sequence[x509.Certificate]
) -> list[tuple[x509.Certificate, Any]]:
    """(certificate, key) pairs: a key keeps its own certificate, else takes the next --cert.

    Raises UsageError for a key without certificate, a spare --cert, or a key that does not
    belong to its certificate.
    """
    spare = list(certs)
    pairs: list[tuple[x509.Certificate, Any]] = []
    for item in key_files:
        cert = item.certificate
        if cert is None:
            if not spare:
                raise UsageError(f"--key {item.path} has no certificate: add a --cert for it")
            cert = spare.pop(0)
        if certfile.key_spki(item.key) != _certificate_spki(cert):
            raise UsageError(
                f"--key {item.path} does not belong to certificate "
                f"{name_to_str(to_asn1(cert).subject)}"
            )
        pairs.append((cert, item.key))
    if spare:
        raise UsageError(f"{len(spare)} --cert without a --key to go with")
    return pairs
