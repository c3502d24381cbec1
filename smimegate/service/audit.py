"""The audit log: one row per change, whoever made it and through which front end (OWASP ASVS
7.1.3: who, what, when, from where). Written in the change's own transaction (``atomic``): the
change and its row commit together, so a change refused or failed leaves no row and a row that
cannot be written undoes the change. Failed password and code checks are recorded too (ASVS
7.2.1), by smimegate.service.sessions, outside any transaction: there is no change to undo."""


from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from smimegate.service.actor import Actor
from smimegate.store import Store
from smimegate.store.accounts import AuditEntry, accounts_of

P = ParamSpec("P")
R = TypeVar("R")


def atomic(change: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """Decorator of a service function whose first argument is the store: the whole function,
    its store changes and its audit row, is one transaction (Store.atomic)."""

    @functools.wraps(change)
    def in_one_transaction(store: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with store.atomic():
            return change(store, *args, **kwargs)

    return in_one_transaction


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


def count(store: Store, search: str = "") -> int:
    """How many entries entries() pages through for this search. Raises StoreError."""
    return accounts_of(store).audit_count(search)
