"""``smimegate message ...``: look at a message offline.

``message inspect FILE`` unwraps every S/MIME layer of FILE (smimegate.smime.unwrap) with the
keys given on the command line and prints the result headers exactly as the milter adds them
(``Name: value`` lines, CONTRACT.md "Result headers"), or with ``--json`` the layers with all
their fields. Signers are checked against the configured store's roots, CA certificates and
CRLs, plus the ``--trust`` roots (smimegate.cli.inspecttrust); with neither, "no trusted roots".

Keys: ``--key`` takes a private key in PEM or DER (PKCS#8 or traditional OpenSSL/PKCS#1/SEC1),
a PEM file holding both key and certificate, or a PKCS#12 file (key + certificate inside);
``--password`` / ``--password-file`` open encrypted ones. A key without its own certificate
takes the next ``--cert`` in command-line order.

Exit codes (CONTRACT.md): 0 the message could be inspected (also when a layer could not be
decrypted: that is part of the answer, noted on stderr); 1 FILE is unreadable, malformed or
uses something unsupported (one line on stderr); 2 usage: bad options, unreadable or
mismatched key/certificate files.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.serialization import pkcs12

from smimegate.cli import message_process
from smimegate.cli.common import OperationFailed, UsageError, print_json
from smimegate.cli.inspecttrust import (
    InspectTrust,
    apply_inspect_trust,
    load_inspect_trust,
    trust_report,
)
from smimegate.smime import mime
from smimegate.smime.cms import name_to_str, to_asn1
from smimegate.smime.errors import Malformed, Unsupported
from smimegate.smime.results import Layer, SignerResult, Unwrapped, result_headers, serial_hex
from smimegate.smime.unwrap import DEFAULT_MAX_DEPTH, unwrap

# Until the configuration table exists this is milter.header_prefix's default (CONTRACT.md).
DEFAULT_HEADER_PREFIX = "X-Smimegate-Info-"

# Key types the engine can decrypt or sign with (DESIGN.md "Choices").
_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    x25519.X25519PrivateKey,
    ed25519.Ed25519PrivateKey,
)


@dataclass(frozen=True)
class _KeyFile:
    path: str
    key: Any
    certificate: x509.Certificate | None


def register(subparsers: Any) -> None:
    """Add the ``message`` command group to the top-level parser."""
    group = subparsers.add_parser("message", help="inspect S/MIME messages offline")
    sub = group.add_subparsers(dest="message_command", metavar="COMMAND",
                               parser_class=type(group))
    inspect = sub.add_parser(
        "inspect",
        help="unwrap and verify a message; print the result headers",
        description="Unwrap every S/MIME layer of FILE (an RFC 5322 message or a MIME entity), "
        "verify signatures, decrypt with the given keys, and print the result headers exactly "
        "as the milter adds them.",
    )
    inspect.add_argument("file", metavar="FILE", help="the message (- for standard input)")
    inspect.add_argument(
        "--key", action="append", default=[], metavar="KEY",
        help="private key for decryption: PEM/DER (PKCS#8 or traditional), PEM with key and "
        "certificate, or PKCS#12; repeatable",
    )
    inspect.add_argument(
        "--cert", action="append", default=[], metavar="CERT",
        help="certificate (PEM/DER) of the next --key that has none of its own; repeatable",
    )
    inspect.add_argument(
        "--trust", action="append", default=[], metavar="CA",
        help="trusted root certificate(s) (PEM/DER) added to the store's for this run; "
        "repeatable",
    )
    secret = inspect.add_mutually_exclusive_group()
    secret.add_argument("--password", help="password of encrypted keys and PKCS#12 files")
    secret.add_argument("--password-file", metavar="F", help="read that password from F")
    inspect.add_argument(
        "--max-depth", type=int, default=DEFAULT_MAX_DEPTH, metavar="N",
        help=f"refuse messages with more than N S/MIME layers (default {DEFAULT_MAX_DEPTH})",
    )
    inspect.add_argument("--json", action="store_true", help="print the layers as JSON")
    inspect.set_defaults(func=cmd_inspect)
    message_process.register(sub)


def cmd_inspect(args: argparse.Namespace) -> int:
    """Handler of ``message inspect``; raises UsageError (exit 2) or OperationFailed (exit 1)."""
    if args.max_depth < 1:
        raise UsageError("--max-depth must be at least 1")
    password = _password(args.password, args.password_file)
    keys = _pair_keys([_load_key_file(p, password) for p in args.key],
                      [_load_certificate(p) for p in args.cert])
    roots = [cert for path in args.trust for cert in _load_certificates(path)]
    trust = load_inspect_trust(args, roots)
    message = _read_message(args.file)
    try:
        result = unwrap(message, keys, max_depth=args.max_depth)
    except (Malformed, Unsupported) as exc:
        raise OperationFailed(f"{args.file}: {exc}") from exc
    result = dataclasses.replace(result, layers=apply_inspect_trust(result.layers, trust.anchors))
    headers = result_headers(result.layers, trust.header_prefix)
    if args.json:
        print_json(_report(args.file, result, headers, trust))
    else:
        for name, value in headers:
            sys.stdout.write(f"{name}: {value}\n")
    if result.error:
        print(f"smimegate: note: {args.file}: {result.error}", file=sys.stderr)
    return 0


# --- reading files -------------------------------------------------------------------------


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from exc


def _read_message(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OperationFailed(f"{path}: {exc.strerror or exc}") from exc


def _password(password: str | None, password_file: str | None) -> bytes | None:
    if password is not None:
        return password.encode("utf-8")
    if password_file is not None:
        text = _read(password_file, "--password-file").decode("utf-8", "replace")
        return text.rstrip("\r\n").encode("utf-8")
    return None


def _load_key_file(path: str, password: bytes | None) -> _KeyFile:
    """A --key file: PEM/DER private key (with a certificate when the PEM holds one) or
    PKCS#12. Raises UsageError naming the file when it cannot be read or opened."""
    data = _read(path, "--key")
    if b"-----BEGIN PKCS12-----" in data:
        # PEM-armoured PKCS#12, as some tools write it (protected-headers' bob.p12).
        data = _pem_body(data, "PKCS12", path)
        return _load_pkcs12(path, data, password)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password)
            certs = x509.load_pem_x509_certificates(data) if b"CERTIFICATE-----" in data else []
            return _KeyFile(path, _check_key_type(path, key), certs[0] if certs else None)
        try:
            key = serialization.load_der_private_key(data, password)
        except ValueError:
            return _load_pkcs12(path, data, password)
        return _KeyFile(path, _check_key_type(path, key), None)
    except TypeError as exc:
        # cryptography: TypeError when the key is encrypted and no password was given, or
        # a password was given for an unencrypted key.
        raise UsageError(f"--key {path}: {exc} (use --password or --password-file)") from exc
    except ValueError as exc:
        raise UsageError(f"--key {path}: not a private key we can read ({exc})") from exc


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


def _load_pkcs12(path: str, data: bytes, password: bytes | None) -> _KeyFile:
    try:
        with warnings.catch_warnings():
            # RFC 7292 allows BER and NSS (Thunderbird, Firefox) exports it; cryptography reads
            # it after a warning that would only confuse the user here.
            warnings.filterwarnings("ignore", message="PKCS#12 bundle could not be parsed as DER")
            key, cert, _chain = pkcs12.load_key_and_certificates(data, password)
    except (ValueError, TypeError) as exc:
        hint = "" if password else " (a PKCS#12 file usually needs --password)"
        raise UsageError(f"--key {path}: cannot open as key or PKCS#12: {exc}{hint}") from exc
    if key is None:
        raise UsageError(f"--key {path}: the PKCS#12 file holds no private key")
    return _KeyFile(path, _check_key_type(path, key), cert)


def _check_key_type(path: str, key: object) -> Any:
    if not isinstance(key, _KEY_TYPES):
        raise UsageError(f"--key {path}: {type(key).__name__} keys are not supported")
    return key


def _load_certificates(path: str) -> list[x509.Certificate]:
    data = _read(path, "certificate file")
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise UsageError(f"{path}: not a certificate we can read ({exc})") from exc
    if not certs:
        raise UsageError(f"{path}: holds no certificate")
    return certs


def _load_certificate(path: str) -> x509.Certificate:
    return _load_certificates(path)[0]


def _public_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _pair_keys(
    key_files: Sequence[_KeyFile], certs: Sequence[x509.Certificate]
) -> list[tuple[x509.Certificate, Any]]:
    """(certificate, key) pairs: a key keeps its own certificate, else takes the next --cert.
    Raises UsageError for a key without certificate, a spare --cert, or a key that does not
    belong to its certificate."""
    spare = list(certs)
    pairs: list[tuple[x509.Certificate, Any]] = []
    for item in key_files:
        cert = item.certificate
        if cert is None:
            if not spare:
                raise UsageError(f"--key {item.path} has no certificate: add a --cert for it")
            cert = spare.pop(0)
        if _public_der(item.key.public_key()) != _public_der(cert.public_key()):
            raise UsageError(
                f"--key {item.path} does not belong to certificate "
                f"{name_to_str(to_asn1(cert).subject)}"
            )
        pairs.append((cert, item.key))
    if spare:
        raise UsageError(f"{len(spare)} --cert without a --key to go with")
    return pairs


# --- JSON report ---------------------------------------------------------------------------


def _emails(cert: x509.Certificate) -> list[str]:
    """rfc822Name SANs, then emailAddress subject attributes (older certificates)."""
    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        found.extend(san.value.get_values_for_type(x509.RFC822Name))
    except (x509.ExtensionNotFound, ValueError):
        pass
    for attr in cert.subject.get_attributes_for_oid(x509.NameOID.EMAIL_ADDRESS):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("ascii", "replace")
        if value.lower() not in (e.lower() for e in found):
            found.append(value)
    return found


def _cert_summary(cert: x509.Certificate) -> dict[str, Any]:
    asn1 = to_asn1(cert)
    return {
        "subject": name_to_str(asn1.subject),
        "issuer": name_to_str(asn1.issuer),
        "serial": serial_hex(cert.serial_number),
        "emails": _emails(cert),
        "sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    }


def _signer(index: int, signer: SignerResult) -> dict[str, Any]:
    sid = signer.signer_id
    return {
        "index": index,
        "id": sid.header_value(),
        "issuer": sid.issuer,
        "serial": serial_hex(sid.serial) if sid.serial is not None else None,
        "ski": sid.ski.hex().upper() if sid.ski is not None else None,
        "certificate": _cert_summary(signer.certificate) if signer.certificate else None,
        "valid": signer.valid,
        "reason": signer.reason,
        "digest_algorithm": signer.digest_algorithm,
        "signature_algorithm": signer.signature_algorithm,
        "signing_time": signer.signing_time.isoformat() if signer.signing_time else None,
        "capabilities": list(signer.capabilities),
        "trusted": signer.trusted,
        "trust_info": signer.trust_info,
    }


def _layer(level: int, layer: Layer) -> dict[str, Any]:
    out: dict[str, Any] = {"level": level, "kind": layer.kind}
    if layer.kind == "signed":
        out["detached"] = layer.detached
        out["signers"] = [_signer(i, s) for i, s in enumerate(layer.signers)]
        out["certificates"] = [_cert_summary(c) for c in layer.certificates]
    else:
        out["cipher"] = layer.cipher
        out["key_size"] = layer.key_size
        out["decrypted"] = layer.decrypted
        out["recipients"] = [
            {
                "index": i,
                "id": r.header_value(),
                "issuer": r.recipient_id.issuer,
                "serial": serial_hex(r.recipient_id.serial)
                if r.recipient_id.serial is not None else None,
                "ski": r.recipient_id.ski.hex().upper()
                if r.recipient_id.ski is not None else None,
                "key_encryption_oid": r.key_encryption_oid,
            }
            for i, r in enumerate(layer.recipients)
        ]
    return out


def _content_type(content: bytes) -> str | None:
    try:
        return mime.content_type(mime.parse_entity(content))[0]
    except Malformed:
        return None


def _report(
    path: str,
    result: Unwrapped,
    headers: Sequence[tuple[str, str]],
    trust: InspectTrust,
) -> dict[str, Any]:
    return {
        "file": path,
        "layers": [_layer(level, layer) for level, layer in enumerate(result.layers)],
        "headers": [{"name": name, "value": value} for name, value in headers],
        "error": result.error,
        "content_type": _content_type(result.content),
        "content_bytes": len(result.content),
        "trust": trust_report(trust, _cert_summary),
    }
