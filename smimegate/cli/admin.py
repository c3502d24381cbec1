"""``smimegate admin``: accounts of the web admin and the REST API.

    smimegate admin add NAME --role admin|auditor [--password-file F]
    smimegate admin list [--json] | remove NAME | password NAME [--password-file F]
    smimegate admin token NAME [--role admin|auditor | --revoke]
    smimegate admin totp NAME [--disable]

``totp`` gives the account a second factor (RFC 6238): it prints the otpauth:// URI once (first line), for
an authenticator app (type it in, or make a QR code of it: ``qrencode -t ansiutf8 URI``);
from then on signing in to the web admin asks for the app's code too. Running it again
replaces the secret; ``--disable`` removes it. The secret is sealed with the master key.

Without --password-file, ``add`` and ``password`` make a random password and print it once.
``token`` prints a new API token once, alone on stdout (``Authorization: Bearer TOKEN``); the
store keeps only its SHA-256. An auditor reads everything and changes nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from smimegate.cli.common import print_json
from smimegate.cli.context import open_store, read_password_file
from smimegate.service import accounts, totp
from smimegate.service.actor import ROLES, cli_actor


def register(sub: Any) -> None:
    parser = sub.add_parser("admin", help="accounts of the web admin and the REST API")
    commands = parser.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    roles = "|".join(ROLES)

    add = commands.add_parser("add", help="add an account (auditor: reads, never changes)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", metavar=roles, required=True)
    add.add_argument("--password-file", metavar="F",
                     help="first line is the password (default: make one and print it)")
    add.set_defaults(func=_add)

    lst = commands.add_parser("list", help="list the accounts")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    remove = commands.add_parser("remove", help="remove an account, its tokens and sessions")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=_remove)

    password = commands.add_parser("password", help="set a new password (ends its sessions)")
    password.add_argument("name", metavar="NAME")
    password.add_argument("--password-file", metavar="F",
                          help="first line is the password (default: make one and print it)")
    password.set_defaults(func=_password)

    token = commands.add_parser("token", help="print a new API token once, or --revoke "
                                              "every token of the account")
    token.add_argument("name", metavar="NAME")
    which = token.add_mutually_exclusive_group()
    which.add_argument("--role", metavar=roles,
                       help="the token's role, at most the account's (default: the account's)")
    which.add_argument("--revoke", action="store_true",
                       help="revoke every API token of the account (they fail at once)")
    token.set_defaults(func=_token)

    second = commands.add_parser(
        "totp", help="enrol a TOTP second factor and print its otpauth:// URI once, "
                     "or --disable it")
    second.add_argument("name", metavar="NAME")
    second.add_argument("--disable", action="store_true",
                        help="remove the account's second factor")
    second.set_defaults(func=_totp)


def _new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password to set and whether it was made here (then it is printed)."""
    if args.password_file:
        return accounts.check_password(read_password_file(args.password_file)), False
    return accounts.generate_password(), True


def _add(args: argparse.Namespace) -> int:
    name, role = accounts.name_arg(args.name), accounts.role_arg(args.role)
    password, made = _new_password(args)
    with open_store(args) as ctx:
        accounts.add(ctx.store, cli_actor(), name, role, password)
    print(f"admin {name} added (role {role})")
    if made:
        print(f"password: {password}  (shown once)")
    return 0


def _list(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        rows = accounts.listing(ctx.store)
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        created = dt.datetime.fromtimestamp(row["created"], dt.UTC).isoformat(timespec="seconds")
        print(f"{row['name']}  {row['role']}  created {created}  tokens {row['tokens']}"
              f"{'  totp' if row['totp'] else ''}")
    if not rows:
        print("no admin accounts (add one with `smimegate admin add`)", file=sys.stderr)
    return 0


def _remove(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        name = accounts.remove(ctx.store, cli_actor(), args.name)
    print(f"admin {name} removed")
    return 0


def _password(args: argparse.Namespace) -> int:
    name = accounts.name_arg(args.name)
    password, made = _new_password(args)
    with open_store(args) as ctx:
        accounts.set_password(ctx.store, cli_actor(), name, password)
    print(f"admin {name}: password changed, its web sessions ended")
    if made:
        print(f"password: {password}  (shown once)")
    return 0


def _token(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        if args.revoke:
            revoked = accounts.revoke_tokens(ctx.store, cli_actor(), args.name)
            print(f"admin {accounts.name_arg(args.name)}: {revoked} API token(s) revoked")
            return 0
        token = accounts.new_token(ctx.store, cli_actor(), args.name, args.role)
    print(token)
    return 0


def _totp(args: argparse.Namespace) -> int:
    name = accounts.name_arg(args.name)
    with open_store(args, keys=not args.disable) as ctx:
        if args.disable:
            totp.disable(ctx.store, cli_actor(), name)
            print(f"admin {name}: second factor removed")
            return 0
        uri = totp.enrol(ctx.store, cli_actor(), name)
    print(uri)
    print(f"admin {name}: second factor enrolled; add the URI above to an authenticator app "
          "(shown once)")
    return 0
