"""The ``smimegate`` console script: argparse front end.

Each command group lives in its own module with ``register(subparsers)``; handlers are set with
``set_defaults(func=...)`` and receive the parsed namespace. Exit codes (CONTRACT.md): 0 done,
1 the operation failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from smimegate import __version__
from smimegate.cli.common import OperationFailed, UsageError
from smimegate.config import ConfigError

# Command-group modules under smimegate.cli, in help order.
GROUPS: tuple[str, ...] = (
    "db", "settings", "domain", "user", "root", "cert", "config", "message", "ca", "crl", "queue",
    "ldap", "milter", "admin",
)

DEFAULT_CONFIG = "/etc/smimegate/smimegate.toml"


_PROG = "smimegate"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # main() prints "smimegate: " before every usage error, so name only the subcommand
        # here ("crl create: ..."), not the program again.
        where = self.prog.removeprefix(_PROG).strip()
        raise UsageError(f"{where}: {message}" if where else message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=_PROG,
        description="S/MIME encryption gateway for Postfix and Sendmail (milter).",
    )
    parser.add_argument("--version", action="version", version=f"smimegate {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        help=f"configuration file (default: $SMIMEGATE_CONFIG, else {DEFAULT_CONFIG})",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in GROUPS:
        module = importlib.import_module(f"smimegate.cli.{name}")
        module.register(sub)
    return parser


def config_path(args: argparse.Namespace) -> tuple[str, bool]:
    """The configuration file to read and whether the user named it explicitly."""
    if args.config:
        return args.config, True
    env = os.environ.get("SMIMEGATE_CONFIG")
    if env:
        return env, True
    return DEFAULT_CONFIG, False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the BrokenPipeError handler
        return int(result or 0)
    except (UsageError, ConfigError) as exc:
        if debug:
            traceback.print_exc()
        print(f"smimegate: {exc}", file=sys.stderr)
        return 2
    except OperationFailed as exc:
        if debug:
            traceback.print_exc()
        print(f"smimegate: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
    except BrokenPipeError:
        # The reader went away (`smimegate cert list --json | head`): stop quietly. Point
        # stdout at /dev/null so the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
