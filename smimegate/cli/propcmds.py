"""The command shape ``settings``, ``domain`` and ``user`` share.

Each level of policy properties has ``set [KEY] PROPERTY VALUE``, ``unset [KEY] PROPERTY`` and
``show [KEY] [--json]`` (KEY: the domain rule or the user; none for the global settings), and
the keyed levels list their entries as ``NAME  prop=value ...`` lines. The handlers stay in each
group's module: what they validate and print differs per level (smimegate.service.properties).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def add_property_actions(
    commands: Any,
    what: str,
    key: tuple[str, str] | None,
    *,
    set_: Handler,
    unset: Handler,
    show: Handler,
    unset_help: str = "(inherit it)",
) -> None:
    """Add ``set``, ``unset`` and ``show`` to a group's subparsers.

    what: the thing the properties belong to in help texts ("a domain rule", "a user");
    key: (dest, METAVAR) of the positional naming it, None for the global settings.
    """
    def keyed(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        if key is not None:
            parser.add_argument(key[0], metavar=key[1])
        return parser

    set_parser = keyed(commands.add_parser("set", help=f"set a property of {what}"))
    set_parser.add_argument("property", metavar="PROPERTY")
    set_parser.add_argument("value", metavar="VALUE")
    set_parser.set_defaults(func=set_)

    unset_parser = keyed(commands.add_parser(
        "unset", help=f"drop a property of {what} {unset_help}"))
    unset_parser.add_argument("property", metavar="PROPERTY")
    unset_parser.set_defaults(func=unset)

    show_parser = keyed(commands.add_parser(
        "show", help=f"the effective properties of {what}" if key else
        "every property, its value and its level"))
    show_parser.add_argument("--json", action="store_true", help="print JSON")
    show_parser.set_defaults(func=show)


def print_entries(entries: Iterable[tuple[str, Mapping[str, str]]], empty: str) -> None:
    """One ``NAME  prop=value ...`` line per entry, properties sorted; ``empty`` on stderr when
    there is none (a hint, so that stdout stays empty for scripts)."""
    count = 0
    for name, values in entries:
        shown = " ".join(f"{k}={v}" for k, v in sorted(values.items()))
        print(f"{name}  {shown}".rstrip())
        count += 1
    if not count:
        print(empty, file=sys.stderr)
