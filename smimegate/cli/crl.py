"""``smimegate crl``: revocation lists of the built-in CAs and of others.

    smimegate crl create [--ca NAME] [--revoke SERIAL...]... [--revoke-file FILE] [--reason R]
                         [--next-update-days 365] [--update-existing] [--signature-algorithm ALG]
    smimegate crl list [--json]
    smimegate crl export [--ca NAME] --out FILE [--format der|pem]
    smimegate crl import FILE            DER, PEM or a PEM bundle: every CRL it can read
    smimegate crl fetch [--url URL]...   download the CRLs of the distribution points

SERIAL is hex as ``openssl x509 -serial`` prints it (colons and leading zeros allowed).
``create`` records the serials of --revoke and --revoke-file (in one transaction), then lists
every revocation recorded for the CA (``cert revoke`` and earlier ``--revoke``); --update-existing
also keeps entries of the current CRL that are not recorded (e.g. from an imported CRL).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cryptography import x509

from smimegate.cli.common import OperationFailed, UsageError, print_json
from smimegate.cli.context import open_store, write_output
from smimegate.cli.crlfetch import register_fetch
from smimegate.pki.crl import DEFAULT_NEXT_UPDATE_DAYS, REASONS, parse_reason
from smimegate.pki.signing import SIGNATURE_ALGORITHMS
from smimegate.service import crls
from smimegate.service.actor import cli_actor
from smimegate.store import CrlRecord, InvalidData
from smimegate.store.certinfo import parse_serial


def serial_arg(text: str) -> int:
    """argparse type for SERIAL. Raises ArgumentTypeError (a usage error)."""
    try:
        serial = parse_serial(text)
    except InvalidData as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if serial <= 0:
        raise argparse.ArgumentTypeError(f"serial {text!r}: must be positive")
    return serial


def reason_arg(text: str) -> str | None:
    """argparse type for --reason (key-compromise, keyCompromise ...)."""
    try:
        return parse_reason(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def days_arg(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {days}")
    return days


def register(sub: Any) -> None:
    parser = sub.add_parser("crl", help="create, list, export and import CRLs")
    commands = parser.add_subparsers(dest="crl_command", metavar="ACTION", required=True)

    create = commands.add_parser(
        "create", help="issue a new CRL of a built-in CA",
        description="Issue a new CRL of a built-in CA. It lists every revocation recorded for "
                    "the CA (cert revoke, earlier --revoke) plus the serials of --revoke.")
    create.add_argument("--ca", help="CA name (default: the default CA)")
    # nargs="+" with extend: `--revoke A B C` is one option. argparse takes time quadratic in
    # the number of options (20,000 `--revoke S` took 20 s to parse); --revoke-file is the
    # way for many serials (a command line cannot hold 100,000 of them anyway).
    create.add_argument("--revoke", action="extend", nargs="+", type=serial_arg, default=[],
                        metavar="SERIAL", help="serial(s) to revoke (hex); repeatable")
    create.add_argument("--revoke-file", metavar="FILE",
                        help="serials to revoke, one per line (hex as `openssl x509 -serial` "
                             "prints them; blank lines and # comments skipped); - for stdin")
    create.add_argument("--reason", type=reason_arg, metavar="REASON",
                        help=f"reason for the serials of --revoke: {', '.join(REASONS)}")
    create.add_argument("--next-update-days", type=days_arg, default=DEFAULT_NEXT_UPDATE_DAYS,
                        metavar="DAYS",
                        help=f"days until nextUpdate (default {DEFAULT_NEXT_UPDATE_DAYS})")
    create.add_argument("--update-existing", action="store_true",
                        help="also keep entries of the CA's current CRL that the store has "
                             "no record of (e.g. from an imported CRL)")
    create.add_argument("--signature-algorithm", choices=SIGNATURE_ALGORITHMS,
                        help="default: the usual one for the CA key")
    create.set_defaults(func=_create)

    lst = commands.add_parser("list", help="list the stored CRLs")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    export = commands.add_parser("export", help="write the current CRL of a built-in CA")
    export.add_argument("--ca", help="CA name (default: the default CA)")
    export.add_argument("--out", required=True, metavar="FILE", help="file to write, - for stdout")
    export.add_argument("--format", choices=("der", "pem"), default="der",
                        help="der (default, what HTTP distribution points serve) or pem")
    export.set_defaults(func=_export)

    imp = commands.add_parser(
        "import", help="store the CRLs of a file (DER, PEM or a PEM bundle)",
        description="Store every CRL of FILE that can be read, also one whose issuer is not "
                    "(yet) a CA of the store: it is checked when a certificate path needs it. "
                    "Each CRL that cannot be read is named; the exit status is 1 then.")
    imp.add_argument("file", metavar="FILE")
    imp.set_defaults(func=_import)

    register_fetch(commands)  # smimegate.cli.crlfetch (issue 4, item 8)


def read_serials(path: str) -> list[int]:
    """The serials of a --revoke-file (- for stdin). Raises UsageError naming the file and
    the line of a bad serial, OperationFailed when the file cannot be read."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OperationFailed(f"--revoke-file {path}: {detail}") from None
    serials = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            serials.append(serial_arg(line))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--revoke-file {path} line {number}: {exc}") from None
    return serials


def _create(args: argparse.Namespace) -> int:
    revoke = list(args.revoke)
    if args.revoke_file is not None:
        revoke += read_serials(args.revoke_file)
    with open_store(args, keys=True) as ctx:
        record = crls.create(
            ctx.store, cli_actor(), args.ca, revoke=revoke, reason=args.reason,
            update_existing=args.update_existing, next_update_days=args.next_update_days,
            signature_algorithm=args.signature_algorithm,
        )
    print_summary(record)
    return 0


def print_summary(record: CrlRecord, note: str = "") -> None:
    """One line about a CRL just made or imported."""
    entries = record.entries
    if entries is None:
        entries = len(x509.load_der_x509_crl(record.der))
    nxt = record.next_update.isoformat() if record.next_update else "-"
    print(f"CRL {record.crl_number if record.crl_number is not None else '-'} of "
          f"{record.issuer}: {entries} revoked, next update {nxt}{note}")


_VERIFIED_TEXT = {True: "", False: "  (signature NOT verified)", None: "  (issuer unknown)"}


def _list(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        rows = crls.crl_rows(ctx.store)
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        ca = f"  (CA {row['ca']})" if row["ca"] else ""
        scope = f"  {row['scope']}" if row["scope"] != "complete" else ""
        print(f"{row['issuer']}  #{row['number'] if row['number'] is not None else '-'}"
              f"  {row['entries']} revoked  next {row['next_update'] or '-'}{scope}{ca}"
              f"{_VERIFIED_TEXT[row['verified']]}")
    if not rows:
        print("no CRLs", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        _, data = crls.export(ctx.store, args.ca, args.format)
    write_output(args.out, data)
    return 0


def _import(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise OperationFailed(f"{args.file}: {exc.strerror or exc}") from None
    with open_store(args) as ctx:
        done = crls.import_data(ctx.store, cli_actor(), data, args.file)
    failed = 0
    for item in done:
        if item.record is None:
            print(f"smimegate: {item.label}: {item.note}", file=sys.stderr)
            failed += 1
        else:
            print_summary(item.record, item.note)
    if failed:
        raise OperationFailed(f"{failed} of {len(done)} CRLs in {args.file} could not be "
                              "imported")
    return 0
