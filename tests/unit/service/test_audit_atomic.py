"""A change and its audit-log row are one transaction: when the row cannot be written the
change is undone, and a change that fails leaves no row (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from smimegate.service import audit, domains, settings, users
from smimegate.store import NotFound, SqlStore, StoreUnavailable
from smimegate.store.accounts import AccountStore
from tests.unit.service.conftest import ADMIN


def _broken_audit(*args: object, **kwargs: object) -> None:
    raise StoreUnavailable("audit log not writable (test)")


def test_no_change_without_its_audit_row(store: SqlStore,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    domains.add(store, ADMIN, "example.com")
    monkeypatch.setattr(AccountStore, "add_audit", _broken_audit)
    with pytest.raises(StoreUnavailable):
        domains.add(store, ADMIN, "example.org", {"locality": "internal"})
    with pytest.raises(StoreUnavailable):
        settings.set_property(store, ADMIN, "encrypt_mode", "mandatory")
    with pytest.raises(StoreUnavailable):
        domains.remove(store, ADMIN, "example.com")
    monkeypatch.undo()
    assert [d["name"] for d in domains.listing(store)] == ["example.com"]
    assert "encrypt_mode" not in store.settings()
    # The store is usable afterwards: the connection went back clean.
    users.add(store, ADMIN, "bob@example.com")
    assert [e.action for e in audit.entries(store)] == ["user.add", "domain.add"]


def test_a_failed_change_leaves_no_row(store: SqlStore) -> None:
    with pytest.raises(NotFound):
        domains.remove(store, ADMIN, "example.net")
    assert audit.entries(store) == []


def test_nested_blocks_join_the_outer_one(store: SqlStore) -> None:
    with pytest.raises(RuntimeError), store.atomic():
        domains.add(store, ADMIN, "example.com")
        users.add(store, ADMIN, "bob@example.com")
        raise RuntimeError("undo both")
    assert domains.listing(store) == [] and users.listing(store) == []
    assert audit.entries(store) == []
