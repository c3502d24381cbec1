"""``smimegate domain``: domain rules and their policy properties.

    smimegate domain add DOMAIN [--locality internal|external] [--encrypt-mode none|allow|mandatory]
                                [--smime allow|deny]
    smimegate domain set DOMAIN PROPERTY VALUE | unset DOMAIN PROPERTY
    smimegate domain show DOMAIN [--json] | list [--json] | remove DOMAIN

A rule ``example.com`` covers the domain and its subdomains; ``*.example.com`` only the
subdomains (smimegate.policy.resolve). Names are stored lower case, internationalised labels as
A-labels.
"""

from __future__ import annotations

import argparse
from typing import Any

from smimegate.cli import props
from smimegate.cli.common import print_json
from smimegate.cli.context import open_store
from smimegate.cli.propcmds import add_property_actions, print_entries
from smimegate.service import domains
from smimegate.service.actor import cli_actor
from smimegate.service.properties import checked, domain_arg


def register(sub: Any) -> None:
    parser = sub.add_parser("domain", help="manage domain rules and their properties")
    commands = parser.add_subparsers(dest="domain_command", metavar="ACTION", required=True)

    add = commands.add_parser("add", help="add a domain rule")
    add.add_argument("domain", metavar="DOMAIN", help="example.com or *.example.com")
    add.add_argument("--locality", metavar="internal|external")
    add.add_argument("--encrypt-mode", metavar="none|allow|mandatory")
    add.add_argument("--smime", metavar="allow|deny")
    add.set_defaults(func=_add)

    add_property_actions(commands, "a domain rule", ("domain", "DOMAIN"),
                         set_=_set, unset=_unset, show=_show)

    lst = commands.add_parser("list", help="list the domain rules")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    remove = commands.add_parser("remove", help="remove a domain rule")
    remove.add_argument("domain", metavar="DOMAIN")
    remove.set_defaults(func=_remove)


def _add(args: argparse.Namespace) -> int:
    given = {"locality": args.locality, "encrypt_mode": args.encrypt_mode, "smime": args.smime}
    with open_store(args) as ctx:
        added = domains.add(ctx.store, cli_actor(), args.domain, given)
    extra = "".join(f" {k}={v}" for k, v in added.properties.items())
    print(f"domain {added.name} added{extra}")
    return 0


def _set(args: argparse.Namespace) -> int:
    domain = domain_arg(args.domain)
    checked(args.property, args.value, "domain")  # refused before the store is opened
    with open_store(args) as ctx:
        value = domains.set_property(ctx.store, cli_actor(), domain, args.property, args.value)
    print(f"domain {domain} {args.property} = {value}")
    return 0


def _unset(args: argparse.Namespace) -> int:
    domain = domain_arg(args.domain)
    with open_store(args) as ctx:
        domains.unset_property(ctx.store, cli_actor(), domain, args.property)
    print(f"domain {domain} {args.property} unset (inherited)")
    return 0


def _show(args: argparse.Namespace) -> int:
    domain = domain_arg(args.domain)
    with open_store(args) as ctx:
        policy = domains.show(ctx.store, domain)
    props.print_policy(policy, args.json, f"domain {domain}:")
    return 0


def _list(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        rows = domains.listing(ctx.store)
    if args.json:
        print_json(rows)
        return 0
    print_entries(((d["name"], d["properties"]) for d in rows),
                  "no domain rules (add one with `smimegate domain add`)")
    return 0


def _remove(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        domain = domains.remove(ctx.store, cli_actor(), args.domain)
    print(f"domain {domain} removed")
    return 0
