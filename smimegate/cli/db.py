"""``smimegate db init``: create the master key file (0600) when absent and create or migrate
the schema to the newest version. Idempotent: a second run changes nothing.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from smimegate.cli.common import OperationFailed
from smimegate.cli.config import load_from_args
from smimegate.store import StoreError, init_database


def register(sub: Any) -> None:
    parser = sub.add_parser("db", help="create or upgrade the database")
    commands = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    init = commands.add_parser(
        "init", help="create or migrate the schema and the master key file; idempotent"
    )
    init.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    key_dir = os.path.dirname(config.store.master_key_file)
    try:
        # A fresh install (`make run`, a new /etc/smimegate) may not have the directory yet;
        # the key file itself is created 0600 by init_database.
        if key_dir:
            os.makedirs(key_dir, mode=0o750, exist_ok=True)
        result = init_database(
            config.store.url,
            config.store.master_key_file,
            connect_timeout=config.store.connect_timeout,
            statement_timeout=max(config.store.query_timeout, 60.0),  # DDL may be slow
        )
    except StoreError as exc:
        raise OperationFailed(str(exc)) from None
    except OSError as exc:
        raise OperationFailed(f"{key_dir}: {exc.strerror or exc}") from None
    if result.key_created:
        print(f"master key created: {config.store.master_key_file} (mode 0600)")
    if result.applied:
        applied = ", ".join(str(v) for v in result.applied)
        print(f"schema migrated to version {result.version} (applied {applied})")
    else:
        print(f"schema is current (version {result.version})")
    return 0
