"""smimegate.store: keys, certificates, CRLs, CAs, policy rows and the delivery queue.

``open_store(url, master_key_path)`` opens SQLite (``sqlite:////abs/path.db``) or PostgreSQL
(``postgresql://user@host:port/db``); see base.Store for what it offers.
"""

from smimegate.store.base import (
    Capabilities,
    CaRecord,
    CertificateRecord,
    Conflict,
    CrlRecord,
    Domain,
    InvalidData,
    MasterKeyError,
    NotFound,
    PolicyRows,
    QueueItem,
    Revocation,
    SchemaError,
    Store,
    StoreError,
    StoreUnavailable,
    User,
)
from smimegate.store.initdb import InitResult, init_database
from smimegate.store.sql import SqlStore

open_store = SqlStore.open

__all__ = [
    "CaRecord",
    "Capabilities",
    "CertificateRecord",
    "Conflict",
    "CrlRecord",
    "Domain",
    "InitResult",
    "InvalidData",
    "MasterKeyError",
    "NotFound",
    "PolicyRows",
    "QueueItem",
    "Revocation",
    "SchemaError",
    "SqlStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "User",
    "init_database",
    "open_store",
]
