"""Connections for the two SQL dialects, and everything in which they differ.

SqlStore writes each query once with ``?`` placeholders; a Backend turns it into its own
parameter style, hands out autocommit connections (a pool for each dialect: psycopg_pool for
PostgreSQL, a small one of our own for sqlite3), runs transactions, and turns driver exceptions
into the store's errors. Nothing outside this module imports sqlite3 or psycopg.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from smimegate.store.base import (
    Conflict,
    InvalidData,
    SchemaError,
    StoreUnavailable,
)

Params = Sequence[Any]
Row = tuple[Any, ...]


class Cursor:
    """The three ways SqlStore runs a statement, over either driver's connection."""

    def __init__(self, conn: Any, backend: Backend) -> None:
        self._conn = conn
        self._backend = backend

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        cur = self._conn.execute(self._backend.sql(sql), tuple(params))
        return [tuple(r) for r in cur.fetchall()] if cur.description else []

    def one(self, sql: str, params: Params = ()) -> Row | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def run(self, sql: str, params: Params = ()) -> int:
        """Execute; return the number of rows changed."""
        cur = self._conn.execute(self._backend.sql(sql), tuple(params))
        return int(cur.rowcount)

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        """Execute once per parameter row (bulk loads: psycopg pipelines them)."""
        self._conn.cursor().executemany(self._backend.sql(sql), [tuple(r) for r in rows])


class Backend(Protocol):
    name: str  # "sqlite" | "postgresql": the suffix of dialect migration files
    for_update_skip_locked: str  # appended to a queue claim's inner SELECT
    string_agg: str  # aggregate function name: string_agg / group_concat
    # A FROM item with one row (column "value") per string of a single list parameter, made
    # by text_list(): bulk writes in one statement instead of one per row.
    text_rows: str

    def text_list(self, values: Sequence[str]) -> Any: ...

    def sql(self, query: str) -> str: ...
    def connection(self) -> contextlib.AbstractContextManager[Cursor]: ...
    def transaction(self) -> contextlib.AbstractContextManager[Cursor]: ...
    def atomic(self) -> contextlib.AbstractContextManager[Cursor]: ...
    def lock_schema(self, cur: Cursor) -> None: ...
    def close(self) -> None: ...


class _Ambient(threading.local):
    """The cursor of the atomic() block this thread is in, if any."""

    cursor: Cursor | None = None


@contextlib.contextmanager
def _joined(ambient: _Ambient, open_: contextlib.AbstractContextManager[Cursor]
            ) -> Iterator[Cursor]:
    """The cursor of the thread's atomic() block when there is one, else open_'s own."""
    if ambient.cursor is not None:
        yield ambient.cursor
        return
    with open_ as cur:
        yield cur


@contextlib.contextmanager
def _atomic(ambient: _Ambient, open_: Callable[[], contextlib.AbstractContextManager[Cursor]]
            ) -> Iterator[Cursor]:
    """One transaction that every store call of this thread joins until the block ends: a
    change and its audit-log row commit together or not at all. Nested blocks join the
    outer one."""
    if ambient.cursor is not None:
        yield ambient.cursor
        return
    with open_() as cur:
        ambient.cursor = cur
        try:
            yield cur
        finally:
            ambient.cursor = None


def _redact(url: str) -> str:
    """The URL without a password, for error messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


# --------------------------------------------------------------------------------------------
# SQLite


_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o", "readonly", "disk is full")


class SqliteBackend:
    """sqlite3 with WAL and a busy timeout; a connection is used by one thread at a time.

    WAL lets readers run while one writer writes; writers queue on the busy timeout. Idle
    connections are kept in a LIFO so a busy milter reuses warm ones.
    """

    name = "sqlite"
    for_update_skip_locked = ""  # BEGIN IMMEDIATE already serialises writers
    string_agg = "group_concat"
    text_rows = "json_each(?)"  # JSON1, built into SQLite since 3.38

    @staticmethod
    def text_list(values: Sequence[str]) -> Any:
        return json.dumps(list(values))

    def __init__(self, path: str, *, busy_timeout: float, max_idle: int = 16) -> None:
        self.path = path
        self._timeout = busy_timeout
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._max_idle = max_idle
        self._closed = False
        self._ambient = _Ambient()

    def sql(self, query: str) -> str:
        return query

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        with contextlib.ExitStack() as on_failure:
            on_failure.callback(conn.close)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of the process
            conn.execute("PRAGMA foreign_keys=ON")
            on_failure.pop_all()
        return conn

    @contextlib.contextmanager
    def _checkout(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        with self.errors():
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
        healthy = False
        try:
            yield conn
            healthy = not conn.in_transaction
        finally:
            if healthy and not self._closed and self._idle.qsize() < self._max_idle:
                self._idle.put(conn)
            else:
                conn.close()

    def connection(self) -> contextlib.AbstractContextManager[Cursor]:
        return _joined(self._ambient, self._connection())

    def transaction(self) -> contextlib.AbstractContextManager[Cursor]:
        return _joined(self._ambient, self._transaction())

    def atomic(self) -> contextlib.AbstractContextManager[Cursor]:
        return _atomic(self._ambient, self._transaction)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Cursor]:
        with self._checkout() as conn, self.errors():
            yield Cursor(conn, self)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        with self._checkout() as conn, self.errors():
            # IMMEDIATE takes the write lock now, so two writers never deadlock upgrading
            # their read locks; the second one waits on busy_timeout instead.
            conn.execute("BEGIN IMMEDIATE")
            committed = False
            try:
                yield Cursor(conn, self)
                conn.execute("COMMIT")
                committed = True
            finally:
                if not committed:
                    conn.execute("ROLLBACK")

    def lock_schema(self, cur: Cursor) -> None:
        """BEGIN IMMEDIATE already excludes other writers."""

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "no such table" in text or "no such column" in text:
                raise SchemaError(
                    f"store {self.path} has no schema or an old one ({exc}): "
                    "run `smimegate db init`"
                ) from exc
            if any(t in text for t in _SQLITE_TRANSIENT):
                raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc
            raise
        except sqlite3.DatabaseError as exc:
            if type(exc) is sqlite3.DatabaseError:  # "file is not a database" and similar
                raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc
            raise

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


# --------------------------------------------------------------------------------------------
# PostgreSQL


class PostgresBackend:
    """psycopg 3 over psycopg_pool: autocommit connections, connect and statement timeouts.

    Connections are checked before they are handed out, so after a server restart the pool
    replaces dead ones instead of failing the next query.
    """

    name = "postgresql"
    for_update_skip_locked = " FOR UPDATE SKIP LOCKED"
    string_agg = "string_agg"
    text_rows = "unnest(?::text[]) AS t(value)"

    @staticmethod
    def text_list(values: Sequence[str]) -> Any:
        return list(values)  # psycopg sends a list as an array
    # pg_advisory_xact_lock key for schema migrations: "smig" as an integer.
    _SCHEMA_LOCK = 0x736D6967

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float,
        statement_timeout: float,
        pool_size: int,
        wait: bool = True,
    ) -> None:
        # Imported here: a command on an SQLite store starts without psycopg (issue 9).
        import psycopg_pool

        self.url = url
        self._timeout = connect_timeout
        self._ambient = _Ambient()
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            open=False,
            timeout=connect_timeout,
            check=psycopg_pool.ConnectionPool.check_connection,
            # Keep trying in the background for as long as the process runs.
            reconnect_timeout=3600.0,
            kwargs={
                "autocommit": True,
                # libpq takes whole seconds; 0 would mean "wait forever".
                "connect_timeout": max(1, math.ceil(connect_timeout)),
                "options": f"-c statement_timeout={max(1, int(statement_timeout * 1000))}",
            },
            name="smimegate",
        )
        try:
            self._pool.open(wait=wait, timeout=connect_timeout)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close(timeout=0)
            raise StoreUnavailable(
                f"PostgreSQL store {_redact(url)} did not answer within {connect_timeout:g} s"
            ) from exc

    def sql(self, query: str) -> str:
        return query.replace("?", "%s")

    def connection(self) -> contextlib.AbstractContextManager[Cursor]:
        return _joined(self._ambient, self._connection())

    def transaction(self) -> contextlib.AbstractContextManager[Cursor]:
        return _joined(self._ambient, self._transaction())

    def atomic(self) -> contextlib.AbstractContextManager[Cursor]:
        return _atomic(self._ambient, self._transaction)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Cursor]:
        with self.errors(), self._pool.connection(timeout=self._timeout) as conn:
            yield Cursor(conn, self)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        with (
            self.errors(),
            self._pool.connection(timeout=self._timeout) as conn,
            conn.transaction(),
        ):
            yield Cursor(conn, self)

    def lock_schema(self, cur: Cursor) -> None:
        """Serialise `db init` across nodes sharing the database."""
        cur.all("SELECT pg_advisory_xact_lock(?)", (self._SCHEMA_LOCK,))

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        import psycopg.errors
        import psycopg_pool

        try:
            yield
        except psycopg.errors.UndefinedTable as exc:
            raise SchemaError(
                f"store {_redact(self.url)} has no schema or an old one: run `smimegate db init`"
            ) from exc
        except psycopg.IntegrityError as exc:
            raise Conflict(str(exc).strip()) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # Connection refused or lost, server shutting down, statement_timeout
            # (QueryCanceled is an OperationalError): all transient for the caller.
            raise StoreUnavailable(
                f"PostgreSQL store {_redact(self.url)}: {str(exc).strip()}"
            ) from exc
        except (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
            raise StoreUnavailable(
                f"PostgreSQL store {_redact(self.url)}: no connection within "
                f"{self._timeout:g} s ({exc})"
            ) from exc

    def close(self) -> None:
        self._pool.close(timeout=self._timeout)


def backend_for_url(
    url: str,
    *,
    connect_timeout: float,
    statement_timeout: float,
    pool_size: int,
    wait: bool = True,
    create: bool = False,
) -> Backend:
    """A backend for ``sqlite:////abs/path.db``, ``sqlite:///rel.db`` or ``postgresql://...``.

    Raises InvalidData for another scheme, SchemaError for a missing SQLite file unless create,
    StoreUnavailable when PostgreSQL does not answer within connect_timeout (and wait).
    """
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise InvalidData(f"store URL {url!r} names no file")
        if not create and not os.path.exists(path):
            raise SchemaError(f"store {path} does not exist: run `smimegate db init`")
        return SqliteBackend(path, busy_timeout=statement_timeout)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(
            url,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            pool_size=pool_size,
            wait=wait,
        )
    raise InvalidData(
        f"unsupported store URL {_redact(url)!r}: use sqlite:////path/to/file.db or "
        "postgresql://user@host:port/dbname"
    )

