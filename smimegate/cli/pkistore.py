"""Opening the configured store for the ca, crl and cert issue/revoke commands.

A stop-gap until smimegate.cli.context provides the shared helper: the configuration named by
-c/--config (smimegate.cli.config.load_from_args), the store at ``[store] url`` with the master
key of ``[store] master_key_file``, and store errors turned into the CLI's exit codes.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from smimegate.cli.common import OperationFailed
from smimegate.cli.config import load_from_args
from smimegate.config import Config
from smimegate.pki.authority import PkiError
from smimegate.store import SchemaError, SqlStore, Store, StoreError


@contextmanager
def opened_store(args: argparse.Namespace) -> Iterator[tuple[Store, Config]]:
    """The store and configuration for a command; closed afterwards.

    PkiError and StoreError raised inside (and while opening) become OperationFailed (exit 1)
    with their one-line message; ConfigError passes through (exit 2).
    """
    config = load_from_args(args)
    try:
        store = SqlStore.open(
            config.store.url,
            config.store.master_key_file,
            connect_timeout=config.store.connect_timeout,
            statement_timeout=config.store.query_timeout,
            pool_size=config.store.pool_max,
        )
    except SchemaError as exc:
        raise OperationFailed(f"{exc} (run `smimegate db init`)") from None
    except StoreError as exc:
        raise OperationFailed(str(exc)) from None
    try:
        yield store, config
    except (PkiError, StoreError) as exc:
        raise OperationFailed(str(exc)) from None
    finally:
        store.close()
