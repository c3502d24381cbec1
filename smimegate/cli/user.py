"""``smimegate user``: users and their policy properties.

    smimegate user add EMAIL [--phone NUMBER] [--smime allow|deny]
                             [--encrypt-mode none|allow|mandatory] [--disabled]
    smimegate user set EMAIL PROPERTY VALUE | unset EMAIL PROPERTY
    smimegate user show EMAIL [--json] | list [--domain DOMAIN] [--json] | remove EMAIL

``show`` includes the directory's values (level ``ldap``) when [ldap] is configured; a user
only the directory knows is shown too. A directory that cannot be asked gives a warning on
stderr and the store's values.

``enabled`` is kept in the users table's enabled column (see smimegate.store.policyrows); ``true`` and
``false`` are accepted and shown in normal form as ``yes`` and ``no``.
"""

from __future__ import annotations

import argparse
from typing import Any

from smimegate.cli import props
from smimegate.cli.common import print_json
from smimegate.cli.context import open_store
from smimegate.cli.ldap import directory_values
from smimegate.cli.propcmds import add_property_actions, print_entries
from smimegate.service import users
from smimegate.service.actor import cli_actor
from smimegate.service.properties import email_arg
from smimegate.store import User
from smimegate.store.policyrows import user_values


def register(sub: Any) -> None:
    parser = sub.add_parser("user", help="manage users and their properties")
    commands = parser.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    add = commands.add_parser("add", help="add a user")
    add.add_argument("email", metavar="EMAIL")
    add.add_argument("--phone", metavar="NUMBER", help="mobile number for PKCS#12 passwords")
    add.add_argument("--smime", metavar="allow|deny")
    add.add_argument("--encrypt-mode", metavar="none|allow|mandatory")
    add.add_argument("--disabled", action="store_true", help="add the user disabled")
    add.set_defaults(func=_add)

    add_property_actions(commands, "a user", ("email", "EMAIL"),
                         set_=_set, unset=_unset, show=_show)

    lst = commands.add_parser("list", help="list users")
    lst.add_argument("--domain", help="only users of this domain")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    remove = commands.add_parser("remove", help="remove a user (its certificates stay)")
    remove.add_argument("email", metavar="EMAIL")
    remove.set_defaults(func=_remove)


def _add(args: argparse.Namespace) -> int:
    given = {"phone": args.phone, "smime": args.smime, "encrypt_mode": args.encrypt_mode}
    with open_store(args) as ctx:
        added = users.add(ctx.store, cli_actor(), args.email, given, enabled=not args.disabled)
    extra = "".join(f" {k}={v}" for k, v in added.properties.items())
    print(f"user {added.email} added{' (disabled)' if args.disabled else ''}{extra}")
    return 0


def _set(args: argparse.Namespace) -> int:
    email = email_arg(args.email)
    with open_store(args) as ctx:
        value = users.set_property(ctx.store, cli_actor(), email, args.property, args.value)
        effective = users.show(ctx.store, email)[args.property]
    print(f"user {email} {args.property} = {value}")
    if effective.value != value:
        print(f"note: the effective value is {effective.value} (from {effective.source})")
    return 0


def _unset(args: argparse.Namespace) -> int:
    email = email_arg(args.email)
    with open_store(args) as ctx:
        users.unset_property(ctx.store, cli_actor(), email, args.property)
    print(f"user {email} {args.property} unset (inherited)")
    return 0


def _show(args: argparse.Namespace) -> int:
    email = email_arg(args.email)
    with open_store(args) as ctx:
        # With [ldap], the directory's live values too (level "ldap"), as the milter sees them.
        policy = users.show(ctx.store, email, directory_values(ctx.config, email))
    props.print_policy(policy, args.json, f"user {email}:")
    return 0


def _list(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        rows = users.listing(ctx.store, args.domain)
    if args.json:
        print_json(rows)
        return 0
    print_entries(((u["email"], user_values(User(u["email"], u["enabled"], u["properties"])))
                   for u in rows),
                  "no users (add one with `smimegate user add`)")
    return 0


def _remove(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        email = users.remove(ctx.store, cli_actor(), args.email)
    print(f"user {email} removed")
    return 0
