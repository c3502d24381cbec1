"""``smimegate root``: trusted root certificates (trust anchors).

    smimegate root add FILE             PEM, DER or PKCS#7 bundle; every CA certificate in it
                                        (one that is not a CA or cannot be read is named, and
                                        the exit status is 1; the others are still trusted)
    smimegate root list [--json]
    smimegate root remove FINGERPRINT   the certificate stays stored, it is no longer trusted
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cryptography import x509

from smimegate.cli import certview
from smimegate.cli.common import OperationFailed, print_json
from smimegate.cli.context import open_store


def register(sub: Any) -> None:
    parser = sub.add_parser("root", help="manage trusted root certificates")
    commands = parser.add_subparsers(dest="root_command", metavar="ACTION", required=True)
    add = commands.add_parser("add", help="trust the CA certificates in FILE")
    add.add_argument("file", metavar="FILE")
    add.set_defaults(func=_add)
    lst = commands.add_parser("list", help="list trusted roots")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)
    remove = commands.add_parser("remove", help="stop trusting a root")
    remove.add_argument("fingerprint", metavar="FINGERPRINT")
    remove.set_defaults(func=_remove)


def _may_be_root(cert: x509.Certificate) -> bool:
    """A CA certificate (RFC 5280 4.2.1.9), or a self-issued v1-style one without the extension."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return cert.subject == cert.issuer


def _add(args: argparse.Namespace) -> int:
    from smimegate.pki import certfile

    try:
        found = certfile.read_file(args.file)
    except certfile.CertFileError as exc:
        raise OperationFailed(str(exc)) from None
    if found.pairs:
        raise OperationFailed(f"{args.file}: holds a private key; a root needs the certificate "
                              "only")
    from smimegate.dn import name_string

    roots = [c for c in found.certificates if _may_be_root(c)]
    not_ca = [f"{args.file}: {name_string(c.subject)} is not a CA certificate; import "
              "end-entity certificates with `smimegate cert import`"
              for c in found.certificates if not _may_be_root(c)]
    # Each root is its own transaction (add_root): the good ones of a bundle are trusted
    # whole even when another one is refused or the store fails part way.
    with open_store(args) as ctx:
        for cert in roots:
            record = ctx.store.add_root(cert)
            print(f"trusted root {record.fingerprint}  {record.subject}")
    for line in not_ca:
        print(f"smimegate: error: {line}", file=sys.stderr)
    failed = len(not_ca) + certview.report_unreadable(args.file, found.unreadable)
    return 1 if failed else 0


def _list(args: argparse.Namespace) -> int:
    from smimegate.pki.anchors import load_anchors

    with open_store(args) as ctx:
        anchors = load_anchors(ctx.store, revocation_mode=ctx.config.crl.revocation_mode)
        items = [certview.describe(r, anchors) for r in ctx.store.list_roots()]
    if args.json:
        print_json(items)
        return 0
    for item in items:
        print(certview.line(item))
    if not items:
        print("no trusted roots (add one with `smimegate root add FILE`)", file=sys.stderr)
    return 0


def _remove(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        fingerprint = certview.pick(ctx.store.list_roots(), args.fingerprint, "trusted root")
        ctx.store.remove_root(fingerprint)
    print(f"root {fingerprint} no longer trusted")
    return 0
