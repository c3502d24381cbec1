"""``smimegate milter [--socket SPEC] [-n]``: run the milter in the foreground, or check.

- Without ``-n``: smimegate.milter.runner.run (socket, privileges, background jobs, signals:
  SIGTERM/SIGINT/SIGHUP stop after the messages in progress finished, within [milter]
  stop_timeout; SIGUSR1 reloads). Exit 0 after a clean stop; 1 when it cannot start (one
  line).
- ``-n``: load the configuration, check the socket spec, the user and group to run as and the
  log target (an unreachable syslog socket is a warning, as at start), open the store (as the milter would: pools, master key), print ``OK`` and exit 0;
  or exit 2 with one line naming what is wrong.
"""

from __future__ import annotations

import argparse
from typing import Any

from smimegate.cli.common import OperationFailed, UsageError


def register(sub: Any) -> None:
    """Add the ``milter`` command to the top-level parser."""
    parser = sub.add_parser(
        "milter",
        help="run the milter in the foreground (-n: check the configuration)",
        description="Run the S/MIME milter in the foreground, with its background jobs (CRL "
        "download, delivery queue). SIGTERM, SIGINT or SIGHUP stop it (no new connections; "
        "messages in progress finish, within [milter] stop_timeout), SIGUSR1 reloads the "
        "configuration and caches.",
    )
    parser.add_argument(
        "--socket", metavar="SPEC",
        help="inet:PORT@HOST, inet6:PORT@HOST, unix:/PATH or fd:N (default: [milter] socket)",
    )
    parser.add_argument(
        "-n", dest="check", action="store_true",
        help="check the configuration, the socket spec and the store, then exit",
    )
    parser.set_defaults(func=_milter)


def _milter(args: argparse.Namespace) -> int:
    from smimegate.cli.config import load_from_args
    from smimegate.cli.main import config_path

    config = load_from_args(args)
    if args.check:
        return _check(config, args.socket)
    from smimegate.milter import runner
    from smimegate.store.base import StoreError

    path, explicit = config_path(args)
    try:
        return runner.run(config, config_path=path, explicit=explicit, socket_spec=args.socket)
    except (runner.RunnerError, StoreError, OSError) as exc:
        raise OperationFailed(str(exc) or type(exc).__name__) from exc


def _check(config: Any, socket_spec: str | None) -> int:
    """``milter -n``. Raises UsageError (exit 2) with one line."""
    from smimegate import log
    from smimegate.milter import runner
    from smimegate.milter.gateway import Gateway
    from smimegate.store.base import StoreError

    try:
        spec = runner.parse_socket(socket_spec or config.milter.socket)
        runner.check_socket(spec)
        runner.resolve_identity(config)
    except (ValueError, runner.RunnerError) as exc:
        raise UsageError(str(exc)) from None
    # An unreachable syslog socket is a warning on stderr, not an error: the milter starts and
    # logs to stderr until it answers (smimegate.log.SyslogWithFallback).
    log.setup_logging(config)
    try:
        gateway = Gateway.create(config)
    except (StoreError, OSError) as exc:
        raise UsageError(f"[store] {type(exc).__name__}: {exc}") from None
    runner.close_gateway(gateway)
    print("OK")
    return 0
