"""Fixtures of the delivery tests: an SQLite store with a master key, a configuration written
as a user would write it, and a PKCS#12 made from a throwaway CA."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smimegate import config as cfg
from smimegate.pki.pkcs12 import make_pkcs12
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from tests.helpers.testpki import TestCA

PASSWORD = "XyKw7JhT3eRnCa4MpLfA"  # looks generated; must never show up where it should not
EMAIL = "alice@partner.test"
PHONE = "+4917612345678"


@pytest.fixture(scope="session")
def pfx() -> bytes:
    ca = TestCA()
    alice = ca.issue(EMAIL, "ec-p256")
    return make_pkcs12(alice.key, alice.cert, [ca.cert], PASSWORD, friendly_name=EMAIL)


@pytest.fixture
def store_files(tmp_path: Path) -> tuple[str, Path]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    key = tmp_path / "master.key"
    ensure_master_key(key)
    store = SqlStore.open(url, key, create=True, check_schema=False)
    store.migrate()
    store.close()
    return url, key


@pytest.fixture
def store(store_files: tuple[str, Path]) -> Iterator[SqlStore]:
    url, key = store_files
    s = SqlStore.open(url, key)
    yield s
    s.close()


MakeConfig = Callable[..., Path]


@pytest.fixture
def make_config(tmp_path: Path, store_files: tuple[str, Path]) -> MakeConfig:
    """Write smimegate.toml: the store, [smtp] relay on relay_port, and extra TOML lines."""
    url, key = store_files

    def make(relay_port: int, *extra: str) -> Path:
        path = tmp_path / "smimegate.toml"
        path.write_text(
            f'[store]\nurl = "{url}"\nmaster_key_file = "{key}"\n\n'
            f'[smtp]\nrelay = "127.0.0.1:{relay_port}"\nsender = "ca@gateway.test"\n'
            "timeout = 5\n\n"
            # The PKCS#12 mail carries the marker keyed by this file (smimegate.marker).
            f'[milter]\nreinject_secret_file = "{tmp_path / "reinject.key"}"\n\n'
            + "\n".join(extra) + "\n"
        )
        return path

    return make


def load(path: Path) -> cfg.Config:
    return cfg.load(path)
