"""TrustAnchors from the store (smimegate.pki.anchors): roots, stored CA certificates as
intermediates, CRLs; the per-process cache and its refresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimegate.pki.anchors import CachedAnchors, load_anchors
from smimegate.pki.trust import check
from smimegate.store import SqlStore, StoreUnavailable
from tests.unit.pki import fetch_support as fs
from tests.unit.pki.ca_support import ca_pair


def _store(tmp_path: Path) -> SqlStore:
    store = SqlStore.open(f"sqlite:///{tmp_path / 's.db'}", None, create=True,
                          check_schema=False)
    store.migrate()
    return store


def test_load_anchors_reads_roots_ca_certificates_and_crls(tmp_path):
    pair, other = ca_pair(), ca_pair("ec-p256")
    leaf = fs.leaf(pair, "a@example.org")
    store = _store(tmp_path)
    try:
        assert load_anchors(store) == load_anchors(None)  # empty
        store.add_root(pair.root)
        store.add_certificate(pair.intermediate)
        store.add_certificate(other.intermediate)  # a CA whose root we do not trust
        store.add_certificate(leaf.cert)  # end entities are never anchors
        blocked = store.add_certificate(other.root)
        store.set_certificate_blocked(blocked.fingerprint, True)
        store.add_crl(fs.crl(revoked=[leaf.cert.serial_number]))

        anchors = load_anchors(store)
        assert anchors.roots == (pair.root,)
        assert set(anchors.intermediates) == {pair.intermediate, other.intermediate}
        assert len(anchors.crls) == 1
        result = check(leaf.cert, anchors, purpose="sign")
        assert not result.trusted and result.revocation == "revoked"

        # --trust style extra roots: added; a stored CA given as a root is a root only.
        extra = load_anchors(store, [other.intermediate])
        assert extra.roots == (pair.root, other.intermediate)
        assert extra.intermediates == (pair.intermediate,)
        assert load_anchors(None, [pair.root]).roots == (pair.root,)
    finally:
        store.close()


def test_cached_anchors_reload_on_refresh_and_after_max_age(tmp_path):
    pair = ca_pair()
    store = _store(tmp_path)
    now = [100.0]
    cached = CachedAnchors(store, max_age=60, clock=lambda: now[0])
    try:
        first = cached.get()
        assert first.roots == ()
        store.add_root(pair.root)
        assert cached.get() is first  # cached: the store is not asked again
        assert cached.refresh().roots == (pair.root,)
        assert cached.get().roots == (pair.root,)

        store.add_certificate(pair.intermediate)
        now[0] += 59
        assert cached.get().intermediates == ()
        now[0] += 1
        assert cached.get().intermediates == (pair.intermediate,)  # max_age reached
    finally:
        store.close()


def test_cached_anchors_keep_the_last_value_through_a_store_outage(tmp_path):
    pair = ca_pair()
    store = _store(tmp_path)
    store.add_root(pair.root)
    now = [0.0]
    cached = CachedAnchors(store, max_age=1, clock=lambda: now[0])
    loaded = cached.get()
    store.close()  # every query now raises StoreUnavailable
    now[0] += 5
    assert cached.get() is loaded  # stale but usable beats failing every trust decision
    with pytest.raises(StoreUnavailable):
        cached.refresh()  # an explicit reload says it failed
    with pytest.raises(StoreUnavailable):
        CachedAnchors(store).get()  # nothing loaded yet: nothing to fall back on
    with pytest.raises(ValueError, match="max_age"):
        CachedAnchors(store, max_age=0)


def test_cached_anchors_invalidate_reloads_on_the_next_get(tmp_path):
    pair = ca_pair()
    store = _store(tmp_path)
    cached = CachedAnchors(store)  # no max_age: only invalidate() or refresh() reload
    try:
        assert cached.get().roots == ()
        store.add_root(pair.root)
        assert cached.get().roots == ()
        cached.invalidate()
        assert cached.get().roots == (pair.root,)
    finally:
        store.close()


def test_background_reload_never_makes_a_caller_wait(tmp_path):
    # Issue 10 items 2 and 6: the milter's anchors (background=True) answer a stale get() at
    # once with the value they have and reload in a thread; a reload signal (invalidate) loads
    # in the signalling thread, reusing every CRL parsed before.
    import time

    pair = ca_pair()
    store = _store(tmp_path)
    now = [0.0]
    cached = CachedAnchors(store, max_age=60, clock=lambda: now[0], background=True)
    try:
        store.add_crl(fs.crl(), verified=True)
        first = cached.get()
        assert first.roots == () and len(first.crls) == 1
        store.add_root(pair.root)
        now[0] += 61
        assert cached.get() is first  # stale: answered at once, reloaded behind
        deadline = time.monotonic() + 30
        while cached.get().roots != (pair.root,) and time.monotonic() < deadline:
            time.sleep(0.02)
        second = cached.get()
        assert second.roots == (pair.root,)
        assert second.crls[0] is first.crls[0]  # parsed once, reused

        store.add_certificate(pair.intermediate)
        cached.invalidate()  # loads here, before returning
        third = cached.get()
        assert third.intermediates == (pair.intermediate,) and third.crls[0] is first.crls[0]
    finally:
        store.close()
