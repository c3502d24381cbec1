"""``smimegate message ...``: look at a message offline.

``message inspect FILE`` unwraps every S/MIME layer of FILE (smimegate.smime.unwrap) and prints
the result headers exactly as the milter adds them (``Name: value`` lines, CONTRACT.md "Result
headers"), or with ``--json`` the layers with all their fields. Signers are checked against the
configured store's roots, CA certificates and CRLs, plus the ``--trust`` roots
(smimegate.cli.inspecttrust); with neither, "no trusted roots".

Keys: with ``--key`` only the keys given are used (files read by smimegate.cli.keyfiles;
``--password`` / ``--password-file`` open encrypted ones, a key without its own certificate
takes the next ``--cert``). Without ``--key`` and with a configured store, each encrypted layer
is opened with the keys the store holds for the recipients it names
(smimegate.cli.inspectkeys).

Exit codes (CONTRACT.md): 0 the message could be inspected (also when a layer could not be
decrypted: that is part of the answer, noted on stderr); 1 FILE is unreadable, malformed or
uses something unsupported (one line on stderr); 2 usage: bad options, unreadable or
mismatched key/certificate files.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate.cli import message_process
from smimegate.cli.common import OperationFailed, UsageError, print_json
from smimegate.cli.context import read_input, read_password_file
from smimegate.cli.inspectkeys import unwrap_with_store_keys
from smimegate.cli.inspecttrust import (
    InspectTrust,
    apply_inspect_trust,
    open_inspect_store,
    trust_report,
)
from smimegate.cli.keyfiles import load_certificates, load_key_file, pair_keys
from smimegate.pki.addresses import certificate_addresses
from smimegate.smime import hprotect, mime
from smimegate.smime.cms import name_to_str, to_asn1
from smimegate.smime.errors import Malformed, Unsupported
from smimegate.smime.results import Layer, SignerResult, Unwrapped, result_headers, serial_hex
from smimegate.smime.unwrap import DEFAULT_MAX_DEPTH, unwrap


def register(subparsers: Any) -> None:
    """Add the ``message`` command group to the top-level parser."""
    group = subparsers.add_parser("message", help="inspect S/MIME messages offline")
    sub = group.add_subparsers(dest="message_command", metavar="COMMAND",
                               parser_class=type(group))
    inspect = sub.add_parser(
        "inspect",
        help="unwrap and verify a message; print the result headers",
        description="Unwrap every S/MIME layer of FILE (an RFC 5322 message or a MIME entity), "
        "verify signatures, decrypt with the given keys (without --key: with the store's keys "
        "for the recipients), and print the result headers exactly as the milter adds them.",
    )
    inspect.add_argument("file", metavar="FILE", help="the message (- for standard input)")
    inspect.add_argument(
        "--key", action="append", default=[], metavar="KEY",
        help="private key for decryption: PEM/DER (PKCS#8 or traditional), PEM with key and "
        "certificate, or PKCS#12; RSA, EC, X25519, ML-KEM-512/768/1024 (and the signing kinds "
        "a PKCS#12 may also hold); repeatable",
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
    password = args.password
    if args.password_file is not None:
        password = read_password_file(args.password_file)
    key_files = [found for path in args.key for found in load_key_file(path, password)]
    keys = pair_keys(key_files, [load_certificates(path)[0] for path in args.cert])
    roots = [cert for path in args.trust for cert in load_certificates(path)]
    message = read_input(args.file)
    # The store's keys only when none are given (CONTRACT.md: "with the store's keys and
    # roots, or with the given ones").
    store_keys = not args.key
    with open_inspect_store(args, keys=store_keys) as found:
        trust = found.trust(roots)
        try:
            if found.store is not None and store_keys and found.keys_problem is None:
                result = unwrap_with_store_keys(message, found.store, max_depth=args.max_depth)
            else:
                result = unwrap(message, keys, max_depth=args.max_depth)
        except (Malformed, Unsupported) as exc:
            raise OperationFailed(f"{args.file}: {exc}") from exc
    result = dataclasses.replace(result, layers=apply_inspect_trust(result.layers, trust.anchors))
    headers = result_headers(result.layers, trust.header_prefix)
    if trust.header_protection and not result.error:
        headers += _protected_headers(message, result, trust.header_prefix)
    if args.json:
        print_json(_report(args.file, result, headers, trust))
    else:
        for name, value in headers:
            sys.stdout.write(f"{name}: {value}\n")
    if result.error:
        print(f"smimegate: note: {args.file}: {result.error}", file=sys.stderr)
        if store_keys and found.keys_problem is not None:
            print(f"smimegate: note: the store's keys were not tried: {found.keys_problem}",
                  file=sys.stderr)
    return 0


def _protected_headers(message: bytes, result: Unwrapped, prefix: str) -> list[tuple[str, str]]:
    """The RFC 9788 Protected-Headers result headers the milter adds (smime.hprotect)."""
    try:
        outer = [(n, v.decode("utf-8", "surrogateescape"))
                 for n, v in mime.split_message(message)[0]]
    except Malformed:
        return []
    restored = hprotect.restore_layers(outer, result.content, result.layers, result.opened)
    return hprotect.result_headers(restored, prefix) if restored is not None else []


# --- JSON report ---------------------------------------------------------------------------


def _cert_summary(cert: x509.Certificate) -> dict[str, Any]:
    asn1 = to_asn1(cert)
    return {
        "subject": name_to_str(asn1.subject),
        "issuer": name_to_str(asn1.issuer),
        "serial": serial_hex(cert.serial_number),
        "emails": list(certificate_addresses(cert)),
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
        "countersigns": signer.countersigns,
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
