"""Service fixtures: a migrated, empty store on SQLite and on PostgreSQL
(tests.fixtures.postgres), and the actors that call the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smimegate.service.actor import Actor
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key

ADMIN = Actor("alice", "admin", "web", "192.0.2.7")
AUDITOR = Actor("otto", "auditor", "api", "192.0.2.8")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    key = tmp_path / "master.key"
    ensure_master_key(key)
    s = SqlStore.open(url, key, check_schema=False, create=True)
    s.migrate()
    yield s
    s.close()
