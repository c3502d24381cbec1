"""`smimegate db init`: create the master key when absent, create or migrate the schema."""

from __future__ import annotations

import os
from dataclasses import dataclass

from smimegate.store.keys import ensure_master_key
from smimegate.store.sql import SqlStore


@dataclass(frozen=True)
class InitResult:
    key_created: bool
    applied: tuple[int, ...]  # migrations applied by this run (empty: already current)
    version: int


def init_database(
    url: str,
    master_key_path: str | os.PathLike[str],
    *,
    connect_timeout: float = 10.0,
    statement_timeout: float = 60.0,
) -> InitResult:
    """Create the master key file (0600) if absent and bring the schema to the newest version.

    Idempotent. For SQLite the file and its directory are created when missing. Raises
    MasterKeyError (unsafe key file, or a key that does not match the stored keys),
    StoreUnavailable, SchemaError (database newer than this smimegate), InvalidData (bad URL).
    """
    _, created = ensure_master_key(master_key_path)
    if url.startswith("sqlite:///"):
        parent = os.path.dirname(url[len("sqlite:///") :])
        if parent:
            os.makedirs(parent, mode=0o750, exist_ok=True)
    store = SqlStore.open(
        url,
        master_key_path,
        connect_timeout=connect_timeout,
        statement_timeout=statement_timeout,
        pool_size=1,
        check_schema=False,
        create=True,
    )
    try:
        applied = store.migrate()
        store.verify_master_key()
        return InitResult(created, tuple(applied), store.schema_version())
    finally:
        store.close()
