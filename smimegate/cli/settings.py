"""``smimegate settings``: global policy properties.

    smimegate settings show [--json]          every property, its value and where it comes from
    smimegate settings set PROPERTY VALUE     validated by smimegate.policy (normal form stored)
    smimegate settings unset PROPERTY         back to the built-in default
"""

from __future__ import annotations

import argparse
from typing import Any

from smimegate.cli import props
from smimegate.cli.context import open_store
from smimegate.cli.propcmds import add_property_actions
from smimegate.service import settings
from smimegate.service.actor import cli_actor
from smimegate.service.properties import checked, checked_name


def register(sub: Any) -> None:
    parser = sub.add_parser("settings", help="show or set global policy properties")
    commands = parser.add_subparsers(dest="settings_command", metavar="ACTION", required=True)
    add_property_actions(commands, "the global settings", None, set_=_set, unset=_unset,
                         show=_show, unset_help="(use the default)")


def _show(args: argparse.Namespace) -> int:
    with open_store(args) as ctx:
        policy = settings.show(ctx.store)
    props.print_policy(policy, args.json, "global settings:")
    return 0


def _set(args: argparse.Namespace) -> int:
    checked(args.property, args.value, "global")  # refused before the store is opened
    with open_store(args) as ctx:
        value = settings.set_property(ctx.store, cli_actor(), args.property, args.value)
    print(f"global {args.property} = {value}")
    return 0


def _unset(args: argparse.Namespace) -> int:
    checked_name(args.property, "global")
    with open_store(args) as ctx:
        was_set = settings.unset_property(ctx.store, cli_actor(), args.property)
    if not was_set:
        print(f"global {args.property} was not set")
        return 0
    print(f"global {args.property} unset (default applies)")
    return 0
