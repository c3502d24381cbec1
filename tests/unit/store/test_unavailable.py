"""Connection trouble becomes StoreUnavailable within the configured timeout, and the store
recovers when the database comes back."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from smimegate.store import SqlStore, StoreUnavailable
from tests.fixtures.pgcluster import PgCluster, create_database
from tests.helpers.ports import free_port

TIMEOUT = 1.5
SLACK = 2.0  # scheduling, the pool's own bookkeeping


def _wait_until_ok(call: object, deadline: float = 30.0) -> float:
    start = time.monotonic()
    while True:
        try:
            call()  # type: ignore[operator]
            return time.monotonic() - start
        except StoreUnavailable:
            if time.monotonic() - start > deadline:
                raise
            time.sleep(0.1)


def test_postgresql_stopped_mid_run_then_back(private_pg: PgCluster, master_key_path: Path) -> None:
    url = create_database(private_pg.url(), "outage")
    store = SqlStore.open(url, master_key_path, connect_timeout=TIMEOUT,
                          statement_timeout=TIMEOUT, check_schema=False)
    try:
        store.migrate()
        store.add_user("a@x.test")
        assert store.get_user("a@x.test").enabled

        private_pg.stop("fast")
        for call in (lambda: store.get_user("a@x.test"),
                     lambda: store.add_user("b@x.test"),
                     lambda: store.find_certificates("a@x.test")):
            start = time.monotonic()
            with pytest.raises(StoreUnavailable, match="PostgreSQL store"):
                call()
            assert time.monotonic() - start < TIMEOUT + SLACK
        assert "outage" in str(pytest.raises(StoreUnavailable, store.settings).value)

        private_pg.start()
        _wait_until_ok(lambda: store.get_user("a@x.test"))
        store.add_user("b@x.test")
        assert [u.email for u in store.list_users()] == ["a@x.test", "b@x.test"]
    finally:
        store.close()


def test_postgresql_not_listening_at_open(master_key_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"did not answer within 1\.5 s"):
        SqlStore.open(f"postgresql://nobody:secret@127.0.0.1:{free_port()}/db", master_key_path,
                      connect_timeout=TIMEOUT)
    assert time.monotonic() - start < TIMEOUT + SLACK


def test_postgresql_password_not_in_errors(master_key_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as info:
        SqlStore.open(f"postgresql://nobody:hunter2@127.0.0.1:{free_port()}/db",
                      master_key_path, connect_timeout=0.5)
    assert "hunter2" not in str(info.value)


def test_sqlite_locked_then_free(tmp_path: Path, master_key_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = SqlStore.open(url, master_key_path, statement_timeout=0.5, check_schema=False,
                          create=True)
    store.migrate()
    blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            store.add_user("a@x.test")
        assert time.monotonic() - start < 0.5 + SLACK
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.add_user("a@x.test")
    assert store.get_user("a@x.test").email == "a@x.test"
    store.close()


def test_sqlite_cannot_open(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreUnavailable, match="unable to open"):
        SqlStore.open(f"sqlite:///{tmp_path / 'dir.db'}", check_schema=True)
