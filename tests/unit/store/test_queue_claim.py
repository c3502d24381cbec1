"""Store.claim_item (`queue retry ID`): the item is claimed before it is tried, so a worker
never takes it too; on SQLite and on PostgreSQL (FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from smimegate.store import NotFound, SqlStore

ITEMS = 40


def test_claim_item_takes_failed_or_future_items_and_keeps_workers_off(store: SqlStore) -> None:
    now = dt.datetime.now(dt.UTC)
    failed = store.enqueue("sms", b"failed one", at=now - dt.timedelta(seconds=5))
    later = store.enqueue("sms", b"not due", at=now + dt.timedelta(hours=1))
    [item] = store.claim()
    store.fail(item.id, "refused for good", None)
    assert store.get_queue_item(failed).status == "failed"

    taken = store.claim_item(failed)
    assert taken is not None and (taken.id, taken.status, taken.payload) == (
        failed, "running", b"failed one")
    assert store.claim_item(later) is not None  # due or not: an admin asked for it
    store.enqueue("sms", b"due", at=now - dt.timedelta(seconds=1))
    # A worker sees only the third item; the two retried ones are leased.
    assert [i.payload for i in store.claim(limit=10)] == [b"due"]
    assert store.claim_item(failed) is None  # a second `queue retry` while the first runs
    with pytest.raises(NotFound):
        store.claim_item(999_999)


def test_claim_item_leaves_an_item_a_worker_holds(store: SqlStore) -> None:
    item_id = store.enqueue("sms", b"x")
    assert [i.id for i in store.claim()] == [item_id]
    assert store.claim_item(item_id) is None
    store.fail(item_id, "deferred", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert store.claim_item(item_id) is not None  # released by the worker: ours now
    # A lease that ran out (the claimer died) may be taken over, as claim() does.
    other = store.enqueue("sms", b"y")
    assert store.claim_item(other, lease=-10) is not None
    assert [i.id for i in store.claim()] == [other]


def test_retry_and_worker_race_never_share_an_item(open_store: Callable[..., SqlStore]) -> None:
    """A `queue retry` of every item and a worker start together, each on its own store (two
    processes): every item is taken by exactly one of them."""
    setup = open_store()
    setup.migrate()
    ids = [setup.enqueue("sms", f"item {n}".encode()) for n in range(ITEMS)]
    admin, worker = open_store(), open_store()
    barrier = threading.Barrier(2)

    def retry_all() -> list[int]:
        barrier.wait(timeout=30)
        return [i for i in ids if admin.claim_item(i) is not None]

    def work() -> list[int]:
        barrier.wait(timeout=30)
        got: list[int] = []
        while batch := worker.claim(limit=1):
            got += [i.id for i in batch]
        return got

    with ThreadPoolExecutor(2) as pool:
        by_admin, by_worker = pool.submit(retry_all), pool.submit(work)
        a, w = by_admin.result(timeout=120), by_worker.result(timeout=120)
    assert not set(a) & set(w)
    assert sorted(a + w) == ids
    assert {i.status for i in setup.list_queue()} == {"running"}


def test_postgresql_row_being_claimed_is_skipped_not_waited_for(
    pg_url: str, master_key_path: Path
) -> None:
    """While a worker's claim transaction holds the row lock, claim_item skips it at once
    (SKIP LOCKED) instead of waiting and then sending it a second time."""
    store = SqlStore.open(pg_url, master_key_path, check_schema=False)
    try:
        store.migrate()
        item_id = store.enqueue("sms", b"locked")
        with psycopg.connect(pg_url) as conn:
            with conn.transaction():
                row = conn.execute("SELECT id FROM queue WHERE id = %s FOR UPDATE",
                                   (item_id,)).fetchone()
                assert row == (item_id,)
                assert store.claim_item(item_id) is None
            # The lock is gone and nobody claimed it: now it is ours.
            assert store.claim_item(item_id) is not None
    finally:
        store.close()
