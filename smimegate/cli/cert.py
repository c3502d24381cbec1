"""``smimegate cert``: certificates and the private keys that go with them.

    smimegate cert import FILE [--password PW | --password-file F]
    smimegate cert list [--email EMAIL] [--json]
    smimegate cert show FINGERPRINT [--json]
    smimegate cert export FINGERPRINT --out FILE [--format pem|der|pfx]
                          [--password PW | --password-file F] [--pfx-profile modern|legacy]
    smimegate cert issue ... | revoke ...      (smimegate.cli.cert_pki)
    smimegate cert smimea EMAIL [--usage 3] [--selector 0] [--matching 0]

``import`` reads PEM or DER certificates, PKCS#7 bundles and PKCS#12 files (every key and the
whole chain; keys are stored wrapped by the master key). Importing a certificate that is
already stored is not an error: it is stored once, and a key that was missing is added. Of a
bundle, every certificate that can be read is imported; each one that cannot is named on
stderr (its place in the file, its subject when readable, why) and the exit status is 1.
``smimea`` prints the SMIMEA zone file lines (RFC 8162) of an internal user's current
certificates: those with a key in escrow, not blocked, not expired.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from smimegate.cli import cert_pki, certview
from smimegate.cli.common import OperationFailed, UsageError, print_json
from smimegate.cli.context import open_store, read_password_file, write_output
from smimegate.pki.pkcs12 import DEFAULT_PROFILE, PROFILES
from smimegate.service import certificates
from smimegate.service.actor import cli_actor
from smimegate.store import NotFound

MAX_CHAIN = 8  # no real S/MIME chain is longer; stops a loop of cross-certificates


def register(sub: Any) -> None:
    parser = sub.add_parser("cert", help="import, list, show, export, issue, revoke certificates")
    commands = parser.add_subparsers(dest="cert_command", metavar="ACTION", required=True)

    imp = commands.add_parser("import", help="import certificates and keys from FILE")
    imp.add_argument("file", metavar="FILE")
    _password_options(imp, "password of a PKCS#12 file")
    imp.set_defaults(func=_import)

    lst = commands.add_parser("list", help="list certificates")
    lst.add_argument("--email", help="only certificates for this address")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    show = commands.add_parser("show", help="show one certificate")
    show.add_argument("fingerprint", metavar="FINGERPRINT")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)

    export = commands.add_parser("export", help="write a certificate (or key and chain)")
    export.add_argument("fingerprint", metavar="FINGERPRINT")
    export.add_argument("--out", required=True, metavar="FILE", help="file to write, - for stdout")
    export.add_argument("--format", choices=("pem", "der", "pfx"), default="pem",
                        help="pem or der: the certificate; pfx: PKCS#12 with key and chain")
    _password_options(export, "password of the PKCS#12 (--format pfx)")
    export.add_argument("--pfx-profile", choices=tuple(PROFILES), default=DEFAULT_PROFILE,
                        help="modern (AES-256, default) or legacy (3DES, for old clients)")
    export.set_defaults(func=_export)

    cert_pki.register_issue(commands)
    cert_pki.register_revoke(commands)

    smimea = commands.add_parser("smimea", help="print SMIMEA zone file lines (RFC 8162) for "
                                                "an internal user's current certificates")
    smimea.add_argument("email", metavar="EMAIL")
    smimea.add_argument("--usage", type=int, choices=(0, 1, 2, 3), default=3,
                        help="certificate usage: 1 PKIX-EE (also checked against a CA), "
                             "3 DANE-EE (trusted by DNSSEC alone; default)")
    smimea.add_argument("--selector", type=int, choices=(0, 1), default=0,
                        help="0 the whole certificate (default), 1 its SubjectPublicKeyInfo")
    smimea.add_argument("--matching", type=int, choices=(0, 1, 2), default=0,
                        help="0 the data itself (default: the only form a sender without the "
                             "certificate can use), 1 SHA-256, 2 SHA-512")
    smimea.set_defaults(func=_smimea)


def _password_options(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password", metavar="PW", help=what)
    group.add_argument("--password-file", metavar="F", help=f"read the {what} from F")


def _password(args: argparse.Namespace) -> str | None:
    if args.password_file:
        return read_password_file(args.password_file)
    return args.password  # type: ignore[no-any-return]


def _import(args: argparse.Namespace) -> int:
    from smimegate.pki import certfile

    try:
        found = certfile.read_file(args.file, _password(args))
    except certfile.NeedsPassword as exc:
        raise UsageError(str(exc)) from None
    except certfile.CertFileError as exc:
        raise OperationFailed(str(exc)) from None
    with open_store(args, keys=bool(found.pairs)) as ctx:
        report = certificates.import_parsed(ctx.store, cli_actor(), found, args.file)
    for item in report.items:
        print(item.line())
    certview.report_unreadable(args.file, found.unreadable)
    print(report.summary())
    return 1 if report.unreadable else 0


def _list(args: argparse.Namespace) -> int:
    email = args.email.strip().lower() if args.email else None
    with open_store(args) as ctx:
        items = certificates.listing(ctx.store, email, ctx.config.crl.revocation_mode)
    if args.json:
        print_json(items)
        return 0
    for item in items:
        print(certview.line(item))
    if not items:
        print("no certificates" + (f" for {email}" if email else ""), file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        item = certificates.show(ctx.store, args.fingerprint, ctx.config.crl.revocation_mode)
    if args.json:
        print_json(item)
        return 0
    labels = (
        ("fingerprint", "sha256"), ("subject", "subject"), ("issuer", "issuer"),
        ("serial", "serial"), ("emails", "emails"), ("not_before", "not before"),
        ("not_after", "not after"), ("ski", "key id"), ("is_ca", "CA"),
        ("has_key", "private key"), ("trusted_root", "trusted root"), ("trusted", "trusted"),
        ("trust_info", "why not"), ("source", "source"), ("blocked", "blocked"),
    )
    for key, label in labels:
        value = item[key]
        if key == "trust_info" and value is None:
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        print(f"{label + ':':<14}{value if value is not None else '-'}")
    return 0


def _smimea(args: argparse.Namespace) -> int:
    import datetime as dt

    from smimegate.pki.smimea import SmimeaError, zone_line
    from smimegate.store.base import InvalidData
    from smimegate.store.policyrows import address_policy

    email = args.email.strip()
    now = dt.datetime.now(dt.UTC)
    with open_store(args) as ctx:
        # Only our own users: publishing into a zone we do not run would be wrong, and an
        # external recipient's key in escrow (PKCS#12 delivery) is not theirs to announce.
        try:
            ctx.store.get_user(email.lower())
            policy = address_policy(ctx.store.policy_rows([email.lower()]), email.lower())
        except (NotFound, InvalidData):
            raise OperationFailed(f"{email} is not an internal user") from None
        if policy.value("locality") != "internal":
            raise OperationFailed(f"{email} is not an internal user (locality "
                                  f"{policy.value('locality')})")
        records = [r for r in ctx.store.list_certificates(email.lower())
                   if r.has_key and not r.blocked and not r.is_ca
                   and r.not_before <= now < r.not_after]
    if not records:
        raise OperationFailed(f"no current certificate with a key for {email}")
    try:
        for record in records:
            print(f"; {record.fingerprint} {record.subject} until {record.not_after:%Y-%m-%d}")
            print(zone_line(email, record.certificate(), args.usage, args.selector,
                            args.matching))
    except SmimeaError as exc:
        raise UsageError(str(exc)) from None
    return 0


issuer_chain = certificates.issuer_chain  # moved to the service layer


def _export(args: argparse.Namespace) -> int:
    password = _password(args)
    certificates.check_export(args.format, password, args.pfx_profile)
    with open_store(args, keys=args.format == "pfx") as ctx:
        fingerprint, data = certificates.export(ctx.store, cli_actor(), args.fingerprint,
                                                args.format, password, args.pfx_profile)
    write_output(args.out, data, secret=args.format == "pfx")
    if args.out != "-":
        print(f"{args.format} of {fingerprint} written to {args.out}")
    return 0
