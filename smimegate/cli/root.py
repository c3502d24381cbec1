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

from smimegate.cli import certview
from smimegate.cli.common import OperationFailed, print_json
from smimegate.cli.context import open_store
from smimegate.service import roots
from smimegate.service.actor import cli_actor


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


def _add(args: argparse.Namespace) -> int:
    from smimegate.pki import certfile

    try:
        found = certfile.read_file(args.file)
    except certfile.CertFileError as exc:
        raise OperationFailed(str(exc)) from None
    if found.pairs:
        raise OperationFailed(f"{args.file}: holds a private key; a root needs the certificate "
                              "only")
    with open_store(args) as ctx:
        report = roots.add_parsed(ctx.store, cli_actor(), found, args.file)
    for record in report.trusted:
        print(f"trusted root {record.fingerprint}  {record.subject}")
    for line in report.problems:
        print(f"smimegate: error: {line}", file=sys.stderr)
    return 1 if report.problems else 0


def _list(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        items = roots.listing(ctx.store, ctx.config.crl.revocation_mode)
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
        fingerprint = roots.remove(ctx.store, cli_actor(), args.fingerprint)
    print(f"root {fingerprint} no longer trusted")
    return 0
