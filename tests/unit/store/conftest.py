"""Store fixtures: the same tests run on SQLite and on PostgreSQL (a fresh database each)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from tests.helpers.testpki import TestCA


@pytest.fixture(scope="session")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def master_key_path(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    ensure_master_key(path)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def open_store(store_url: str, master_key_path: Path) -> Iterator[Callable[..., SqlStore]]:
    """Open (and later close) stores on store_url; keyword arguments go to SqlStore.open."""
    opened: list[SqlStore] = []

    def _open(**kwargs: object) -> SqlStore:
        kwargs.setdefault("master_key_path", master_key_path)
        kwargs.setdefault("check_schema", False)
        kwargs.setdefault("create", True)
        s = SqlStore.open(store_url, **kwargs)  # type: ignore[arg-type]
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Callable[..., SqlStore]) -> SqlStore:
    """A migrated, empty store of each backend."""
    s = open_store()
    s.migrate()
    return s
