"""``smimegate ca``: the built-in CAs.

    smimegate ca create --root-cn CN --intermediate-cn CN [--name NAME] [--days 1825]
                        [--key-type rsa2048] [--signature-algorithm ALG] [--email E] [--org O]
                        [--default]
    smimegate ca list [--json]
    smimegate ca export NAME --out FILE       the chain (intermediate, root) as PEM

A CA is named by --name, by default the intermediate's common name (what ``cert issue --ca``,
``crl create --ca`` and ``cert revoke --ca`` take). The first CA becomes the default one.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from smimegate.cli.common import print_json
from smimegate.cli.context import open_store, write_output
from smimegate.pki.ca import DEFAULT_DAYS
from smimegate.pki.signing import KEY_TYPES, SIGNATURE_ALGORITHMS
from smimegate.service import cas
from smimegate.service.actor import cli_actor
from smimegate.store.certinfo import cert_info


def register(sub: Any) -> None:
    parser = sub.add_parser("ca", help="create, list and export the built-in CAs")
    commands = parser.add_subparsers(dest="ca_command", metavar="ACTION", required=True)

    create = commands.add_parser("create", help="create a root and an issuing intermediate")
    create.add_argument("--root-cn", required=True, help="common name of the root")
    create.add_argument("--intermediate-cn", required=True, help="common name of the intermediate")
    create.add_argument("--name", help="name of the CA (default: the intermediate's CN)")
    create.add_argument("--days", type=int, default=DEFAULT_DAYS,
                        help=f"validity of both certificates (default {DEFAULT_DAYS})")
    create.add_argument("--key-type", choices=KEY_TYPES, default="rsa2048",
                        help="key type of both CA keys (default rsa2048)")
    create.add_argument("--signature-algorithm", choices=SIGNATURE_ALGORITHMS,
                        help="default: sha256-rsa for RSA keys, sha256/384-ecdsa for EC keys, "
                             "the key's own for ML-DSA keys")
    create.add_argument("--email", help="emailAddress in both subjects")
    create.add_argument("--org", help="organizationName in both subjects")
    create.add_argument("--default", action="store_true",
                        help="make it the default CA (the first CA always is)")
    create.set_defaults(func=_create)

    lst = commands.add_parser("list", help="list the CAs")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    export = commands.add_parser("export", help="write a CA's chain as PEM")
    export.add_argument("name", metavar="NAME")
    export.add_argument("--out", required=True, metavar="FILE", help="file to write, - for stdout")
    export.set_defaults(func=_export)


def _create(args: argparse.Namespace) -> int:
    opts = cas.CaOptions(
        args.root_cn, args.intermediate_cn, name=args.name, days=args.days,
        key_type=args.key_type, signature_algorithm=args.signature_algorithm, email=args.email,
        org=args.org, default=args.default)
    cas.check(opts)
    with open_store(args, keys=True) as ctx:
        ca = cas.create(ctx.store, cli_actor(), opts)
    root, inter = cert_info(ca.root), cert_info(ca.intermediate)
    print(f"CA {ca.name} created{' (default)' if ca.record.is_default else ''}")
    print(f"  root:         {root.subject}  sha256 {root.fingerprint}  (trusted)")
    print(f"  intermediate: {inter.subject}  sha256 {inter.fingerprint}")
    print(f"  valid until:  {inter.not_after.isoformat()}")
    return 0


_describe = cas.describe  # moved to the service layer


def _list(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        items = cas.listing(ctx.store)
    if args.json:
        print_json(items)
        return 0
    for ca in items:
        mark = "*" if ca["default"] else " "
        print(f"{mark} {ca['name']}  {ca['key_type']}  {ca['intermediate']['subject']}  "
              f"until {ca['intermediate']['not_after'][:10]}")
    if not items:
        print("no CAs (create one with `smimegate ca create`)", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        pem = cas.export_chain(ctx.store, args.name)
    write_output(args.out, pem)
    return 0

