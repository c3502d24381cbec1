"""The audit log: one row per change, whoever made it and through which front end (OWASP ASVS
7.1.3: who, what, when, from where). Written after the change succeeded; a change refused or
failed leaves no row."""

from __future__ import annotations

from smimegate.service.actor import Actor
from smimegate.store import Store
from smimegate.store.accounts import AuditEntry, accounts_of


def record(store: Store, actor: Actor, action: str, target: str, detail: str = "") -> None:
    """Add one row. action: a dotted verb ("domain.set"); target: what it was done to.
    Raises StoreError."""
    accounts_of(store).add_audit(
        actor.name, actor.role, actor.via, actor.address, action, target, detail
    )


def entries(store: Store, *, limit: int = 100, offset: int = 0,
            search: str = "") -> list[AuditEntry]:
    """The newest entries first. Raises StoreError."""
    return accounts_of(store).audit(limit=limit, offset=offset, search=search)
