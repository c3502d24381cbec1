"""The ``smimegate`` console script: argparse front end.

Each command group lives in its own module with ``register(subparsers)``; handlers are set with
``set_defaults(func=...)`` and receive the parsed namespace. Exit codes (CONTRACT.md): 0 done,
1 the operation failed, 2 usage or configuration error.

Start-up stays quick because only the command group on the command line is imported: a first
pass with a stub parser per group (name and help from GROUPS) finds the group, then its module
registers the real parser. ``smimegate --help`` imports no command module at all, and command
modules import the heavy libraries (pyhanko, ldap3, psycopg, pymilter) inside the handlers
that use them (issue 9; bench/startup_bench.py prints the figures).
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

# Command-group modules under smimegate.cli with their one-line help, in help order. The help
# must be the one the module's register() gives (tests/unit/cli/test_startup.py checks it).
GROUPS: tuple[tuple[str, str], ...] = (
    ("db", "create or upgrade the database"),
    ("settings", "show or set global policy properties"),
    ("domain", "manage domain rules and their properties"),
    ("user", "manage users and their properties"),
    ("policy", "explain what the milter would do with a message"),
    ("root", "manage trusted root certificates"),
    ("cert", "import, list, show, export, issue, revoke certificates"),
    ("config", "sample, check or show the configuration"),
    ("message", "inspect S/MIME messages offline"),
    ("ca", "create, list and export the built-in CAs"),
    ("crl", "create, list, export and import CRLs"),
    ("queue", "list, retry and delete queued deliveries"),
    ("ldap", "users, policy and certificates from the directory"),
    ("milter", "run the milter in the foreground (-n: check the configuration)"),
    ("admin", "accounts of the web admin and the REST API"),
    ("web", "run the admin web interface and REST API"),
)

DEFAULT_CONFIG = "/etc/smimegate/smimegate.toml"


_PROG = "smimegate"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # main() prints "smimegate: " before every usage error, so name only the subcommand
        # here ("crl create: ..."), not the program again.
        where = self.prog.removeprefix(_PROG).strip()
        raise UsageError(f"{where}: {message}" if where else message)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command group registered, or (``command`` given) only that one:
    the other groups are listed by name and help without importing their modules."""
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
    parser.add_argument(
        "--debug", action="store_true",
        help="show tracebacks on errors, library warnings and debug messages",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, text in GROUPS:
        if command is None or name == command:
            importlib.import_module(f"smimegate.cli.{name}").register(sub)
        else:
            sub.add_parser(name, help=text, add_help=False)
    return parser


def _command(argv: Sequence[str] | None) -> str | None:
    """The command group named on the command line ("" for none), found by argparse with stub groups (a
    top-level --help or usage error ends here, as it would with the full parser)."""
    args, _ = build_parser("").parse_known_args(argv)
    return args.command or ""


def config_path(args: argparse.Namespace) -> tuple[str, bool]:
    """The configuration file to read and whether the user named it explicitly."""
    if args.config:
        return args.config, True
    env = os.environ.get("SMIMEGATE_CONFIG")
    if env:
        return env, True
    return DEFAULT_CONFIG, False


def _config_error() -> type[Exception]:
    # Imported when an exception is being matched only: --help does not need the table.
    from smimegate.config import ConfigError

    return ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        parser = build_parser(_command(argv))
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        # Set up here, not before parsing: --help and usage errors need no logging module.
        from smimegate.cli import clilog

        clilog.setup(debug=debug)
        result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the BrokenPipeError handler
        return int(result or 0)
    except SystemExit:
        raise  # --help, --version: argparse's own exit
    except (UsageError, _config_error()) as exc:
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
    except Exception as exc:  # noqa: BLE001 - the boundary: a failure no command mapped
        # Still one line (CONTRACT.md: no traceback unless --debug), naming the exception so
        # that a report of it can be searched for; --debug shows where it came from.
        if debug:
            traceback.print_exc()
        detail = " ".join(str(exc).split())
        print(f"smimegate: error: {type(exc).__name__}" + (f": {detail}" if detail else "")
              + ("" if debug else " (--debug shows the traceback)"), file=sys.stderr)
        return 1
