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
    domain = props.domain_arg(args.domain)
    given = {"locality": args.locality, "encrypt_mode": args.encrypt_mode, "smime": args.smime}
    values = {name: props.checked(name, value, "domain")
              for name, value in given.items() if value is not None}
    with open_store(args) as ctx:
        ctx.store.add_domain(domain, values)
    extra = "".join(f" {k}={v}" for k, v in values.items())
    print(f"domain {domain} added{extra}")
    return 0


def _set(args: argparse.Namespace) -> int:
    domain = props.domain_arg(args.domain)
    value = props.checked(args.property, args.value, "domain")
    with open_store(args) as ctx:
        ctx.store.set_domain_property(domain, args.property, value)
    print(f"domain {domain} {args.property} = {value}")
    return 0


def _unset(args: argparse.Namespace) -> int:
    domain = props.domain_arg(args.domain)
    props.checked_name(args.property, "domain")
    with open_store(args) as ctx:
        ctx.store.delete_domain_property(domain, args.property)
    print(f"domain {domain} {args.property} unset (inherited)")
    return 0


def _show(args: argparse.Namespace) -> int:
    domain = props.domain_arg(args.domain)
    with open_store(args) as ctx:
        policy = props.effective_domain(ctx.store, domain)
    props.print_policy(policy, args.json, f"domain {domain}:")
    return 0


def _list(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        domains = ctx.store.list_domains()
    if args.json:
        print_json([{"name": d.name, "properties": dict(d.properties)} for d in domains])
        return 0
    print_entries(((d.name, d.properties) for d in domains),
                  "no domain rules (add one with `smimegate domain add`)")
    return 0


def _remove(args: argparse.Namespace) -> int:
    domain = props.domain_arg(args.domain)
    with open_store(args) as ctx:
        ctx.store.remove_domain(domain)
    print(f"domain {domain} removed")
    return 0
