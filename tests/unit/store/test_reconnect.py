"""SqlStore.reconnect: a forked milter worker opens connections of its own in place of the
ones its supervisor closed before the fork, keeping the master key read before it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from smimegate.store import SqlStore, StoreUnavailable
from smimegate.store.dialect import backend_for_url
from smimegate.store.keys import load_master_key
from tests.helpers.testpki import TestCA


def test_reconnect_after_close_in_a_forked_child(
    open_store: Callable[..., SqlStore], master_key_path: Path, ca: TestCA
) -> None:
    store = open_store()
    store.migrate()
    alice = ca.issue("alice@a.test", "ec-p256")
    store.add_certificate(alice.cert, source="import", key=alice.key)
    store.close()
    assert threading.active_count() == 1  # the pool's threads ended: fork() is safe
    # The key file is gone, as a root-only file is to the dropped worker: the key read at
    # open() stays in the store.
    master_key_path.unlink()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            store.reconnect(pool_size=2)
            keys = store.keys_for_email("alice@a.test")
            code = 0 if len(keys) == 1 and keys[0][0].fingerprint else 3
            store.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.reconnect(pool_size=1)  # and in this process too
    assert len(store.keys_for_email("alice@a.test")) == 1


def test_reconnect_needs_a_store_made_by_open(tmp_path: Path, master_key_path: Path) -> None:
    backend = backend_for_url(f"sqlite:///{tmp_path / 'x.db'}", connect_timeout=1,
                              statement_timeout=1, pool_size=1, create=True)
    store = SqlStore(backend, load_master_key(master_key_path))
    with pytest.raises(StoreUnavailable, match="cannot reconnect"):
        store.reconnect(pool_size=1)
    store.close()
