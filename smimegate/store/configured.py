"""Opening the store a configuration's ``[store]`` table names.

Every process that works from a configuration (the milter's Gateway, the CLI's commands,
``message inspect``) opens its store here, so the timeouts, the pool and the master key are
taken from the configuration the same way everywhere.
"""

from __future__ import annotations

from smimegate.config import StoreConfig
from smimegate.store.sql import SqlStore


def open_configured(
    settings: StoreConfig, *, keys: bool = True, pool_size: int | None = None
) -> SqlStore:
    """The store at ``settings.url`` with the configured timeouts.

    keys: load the master key of ``settings.master_key_file`` (needed for private keys and the
    delivery queue). Without it the store opens without the master key, so an admin who may
    not read the key can still use what needs none.
    pool_size: connections at most; default ``settings.pool_max`` (a long-running process);
    one-shot commands pass 1.

    Raises what SqlStore.open raises: InvalidData (bad URL), MasterKeyError, StoreUnavailable,
    SchemaError.
    """
    return SqlStore.open(
        settings.url,
        settings.master_key_file if keys else None,
        connect_timeout=settings.connect_timeout,
        statement_timeout=settings.query_timeout,
        pool_size=settings.pool_max if pool_size is None else pool_size,
    )
