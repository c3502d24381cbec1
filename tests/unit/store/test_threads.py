"""16 threads importing and looking up at once, on each backend, without an error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from smimegate.store import SqlStore
from tests.helpers.testpki import TestCA

THREADS = 16
PER_THREAD = 6


def test_sixteen_threads(store: SqlStore, ca: TestCA) -> None:
    shared = [ca.issue(f"shared{i}@x.test", "ec-p256") for i in range(3)]
    own = [[ca.issue(f"t{t}-{i}@x.test", "ec-p256") for i in range(PER_THREAD)]
           for t in range(THREADS)]
    store.add_domain("x.test", {"locality": "internal"})
    barrier = threading.Barrier(THREADS)

    def work(t: int) -> None:
        barrier.wait(timeout=30)
        for i, ident in enumerate(own[t]):
            # Everyone imports the same shared certificates too: stored once, no error.
            store.add_certificate(shared[i % len(shared)].cert)
            store.add_certificate(ident.cert, key=ident.key)
            store.add_user(ident.email, {"phone": str(i)})
            store.set_user_property(ident.email, "encrypt_mode", "mandatory")
            neighbour = own[(t + 1) % THREADS][i].email
            store.find_certificates(neighbour)
            store.policy_rows([ident.email, neighbour])
            assert [c.has_key for c in store.find_certificates(ident.email)] == [True]
            assert len(store.keys_for_email(ident.email)) == 1
            store.enqueue("sms", f"{t}-{i}".encode())
            for item in store.claim(limit=2):
                store.complete(item.id)

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(work, t) for t in range(THREADS)]
        for future in futures:
            future.result(timeout=120)  # re-raises the thread's error here
    assert len(store.list_users()) == THREADS * PER_THREAD
    assert len(store.list_certificates()) == THREADS * PER_THREAD + len(shared)
    for ident in shared:
        assert len(store.find_certificates(ident.email)) == 1
    # Every queued item was claimed by exactly one worker or is still pending.
    assert all(i.status == "pending" for i in store.list_queue())


def test_threads_share_nothing_broken(open_store: Callable[..., SqlStore]) -> None:
    """Two store objects on one database (two milter processes) see each other's writes."""
    a = open_store()
    a.migrate()
    b = open_store()
    a.add_user("x@y.test")
    assert b.get_user("x@y.test").email == "x@y.test"
