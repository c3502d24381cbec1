"""``smimegate cert issue`` and ``smimegate cert revoke``, added to the cert group by
smimegate.cli.cert through ``register_issue(cert_sub)`` and ``register_revoke(cert_sub)``.

    smimegate cert issue EMAIL [--ca NAME] [--days 1825] [--key-type rsa2048]
                         [--signature-algorithm ALG] [--cn CN] [--org O] [--given-name G]
                         [--surname S] [--crl-dp URL]... [--pfx-out FILE]
                         [--password PW | --password-file F | --generate-password]
                         [--pfx-profile modern|legacy] [--send-pfx] [--sms-password]
    smimegate cert revoke SERIAL [--ca NAME] [--reason REASON] [--next-update-days 365]

``issue`` keeps the new key in escrow and creates the user when missing; with --pfx-out (or
--send-pfx) it writes a PKCS#12 protected by the given or a generated password, and prints a
generated password unless --sms-password sends it. ``revoke`` records the revocation and issues
a new CRL that keeps the earlier entries.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from smimegate.cli.common import OperationFailed, UsageError
from smimegate.cli.context import open_store, read_password_file, write_output
from smimegate.cli.crl import days_arg, print_summary, reason_arg, serial_arg
from smimegate.pki.ca import DEFAULT_DAYS
from smimegate.pki.crl import DEFAULT_NEXT_UPDATE_DAYS, REASONS
from smimegate.pki.pkcs12 import DEFAULT_PROFILE, PROFILES
from smimegate.pki.signing import ISSUE_KEY_TYPES, ML_DSA_TYPES, ML_KEM_TYPES, SIGNATURE_ALGORITHMS


def register_issue(cert_sub: Any) -> None:
    """Add ``issue`` to the subparsers of the cert group."""
    p = cert_sub.add_parser("issue", help="issue a certificate from a built-in CA")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--ca", help="CA name (default: the default CA)")
    p.add_argument("--days", type=days_arg, default=DEFAULT_DAYS,
                   help=f"validity in days (default {DEFAULT_DAYS}; never beyond the CA's)")
    p.add_argument("--key-type", choices=ISSUE_KEY_TYPES, default="rsa2048",
                   help="key type of the new key (default rsa2048; ml-dsa-*: signing only, "
                        "ml-kem-*: encryption only; both in a PKCS#12 with the modern "
                        "profile only; ml-kem-512 is computed in pure Python, slower than "
                        "768/1024)")
    p.add_argument("--signature-algorithm", choices=SIGNATURE_ALGORITHMS,
                   help="how the CA signs (default: the usual one for the CA key)")
    p.add_argument("--cn", help="subject common name (default: EMAIL)")
    p.add_argument("--org", help="subject organizationName")
    p.add_argument("--given-name", help="subject givenName")
    p.add_argument("--surname", help="subject surname")
    p.add_argument("--crl-dp", action="append", default=[], metavar="URL",
                   help="CRL distribution point URL; repeatable")
    p.add_argument("--pfx-out", metavar="FILE", help="write key and chain as PKCS#12 to FILE")
    pw = p.add_mutually_exclusive_group()
    pw.add_argument("--password", metavar="PW", help="password of the PKCS#12")
    pw.add_argument("--password-file", metavar="F", help="read the PKCS#12 password from F")
    pw.add_argument("--generate-password", action="store_true",
                    help="generate the PKCS#12 password (printed unless --sms-password)")
    p.add_argument("--pfx-profile", choices=tuple(PROFILES), default=DEFAULT_PROFILE,
                   help="modern (AES-256, SHA-256; default) or legacy (3DES, SHA-1: older "
                        "Windows and macOS, gpgsm)")
    p.add_argument("--send-pfx", action="store_true",
                   help="mail the PKCS#12 to EMAIL through [smtp] relay")
    p.add_argument("--sms-password", action="store_true",
                   help="send the password by SMS to the user's phone through [sms]")
    p.set_defaults(func=_issue)


def register_revoke(cert_sub: Any) -> None:
    """Add ``revoke`` to the subparsers of the cert group."""
    p = cert_sub.add_parser("revoke", help="revoke a certificate of a built-in CA")
    p.add_argument("serial", type=serial_arg, metavar="SERIAL",
                   help="serial in hex, as `openssl x509 -serial` prints it")
    p.add_argument("--ca", help="CA name (default: the default CA)")
    p.add_argument("--reason", type=reason_arg, metavar="REASON",
                   help=f"one of {', '.join(REASONS)}")
    p.add_argument("--next-update-days", type=days_arg, default=DEFAULT_NEXT_UPDATE_DAYS,
                   metavar="DAYS", help="days until the new CRL's nextUpdate")
    p.set_defaults(func=_revoke)


def _password(args: argparse.Namespace, wants_pfx: bool) -> str | None:
    """The PKCS#12 password the options ask for (None when no PKCS#12 is made)."""
    given = args.password is not None or args.password_file or args.generate_password
    if not wants_pfx:
        if given or args.sms_password:
            raise UsageError("a PKCS#12 password needs --pfx-out FILE or --send-pfx")
        return None
    if args.generate_password:
        from smimegate.pki.passwords import generate_password

        return generate_password()
    if args.password_file:
        password = read_password_file(args.password_file)
    elif args.password is not None:
        password = args.password
    else:
        raise UsageError("the PKCS#12 needs --password PW, --password-file F or "
                         "--generate-password")
    if not password:
        raise UsageError("the PKCS#12 password must not be empty")
    return password


def _issue(args: argparse.Namespace) -> int:
    # Imported here: `cert list` builds this parser too and needs none of them (issue 9).
    from smimegate.service import certificates
    from smimegate.service.actor import cli_actor

    wants_pfx = bool(args.pfx_out or args.send_pfx)
    if wants_pfx and args.key_type in (*ML_DSA_TYPES, *ML_KEM_TYPES) \
            and args.pfx_profile != "modern":
        # Refused before a key is made: ML-DSA / ML-KEM keys go into a PKCS#12 with the modern
        # profile only (smimegate.pki.pfxwrite).
        raise UsageError(f"--key-type {args.key_type}: a PKCS#12 of an ML-DSA or ML-KEM key "
                         "needs --pfx-profile modern")
    password = _password(args, wants_pfx)
    opts = certificates.IssueOptions(
        email=args.email, ca=args.ca, days=args.days, key_type=args.key_type,
        signature_algorithm=args.signature_algorithm, cn=args.cn, org=args.org,
        given_name=args.given_name, surname=args.surname, crl_dp=tuple(args.crl_dp),
        password=password, pfx_profile=args.pfx_profile, send_pfx=args.send_pfx,
        sms_password=args.sms_password)
    with open_store(args, keys=True) as ctx:
        result = certificates.issue(ctx.store, ctx.config, cli_actor(), opts)
        if args.pfx_out and result.pfx is not None:
            write_output(args.pfx_out, result.pfx, secret=True)
    for line in result.lines():
        print(line)
    if args.pfx_out:
        print(f"  PKCS#12 ({args.pfx_profile}) written to {args.pfx_out}")
    for line in result.report.lines() if result.report else ():
        print(f"  {line}")
    if args.generate_password and not args.sms_password:
        print(f"password: {password}")
    published = result.published
    if published is not None and published.error is None:
        print(f"  {published.line()}")
    elif published is not None:
        print(f"smimegate: the certificate was issued and stored, but not published: "
              f"{published.error}", file=sys.stderr)
        raise OperationFailed(f"publishing to the directory failed: {published.error}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from smimegate.service import certificates
    from smimegate.service.actor import cli_actor

    with open_store(args, keys=True) as ctx:
        record = certificates.revoke(ctx.store, cli_actor(), args.serial, ca=args.ca,
                                     reason=args.reason, next_update_days=args.next_update_days)
    print(f"revoked serial {args.serial:X}")
    print_summary(record)
    return 0
