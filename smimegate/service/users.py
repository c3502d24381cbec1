"""Users and their policy properties.

``enabled`` at the user level lives in the users table's enabled column
(smimegate.store.policyrows explains how it folds into the policy): setting ``enabled no``
clears the column; ``enabled yes`` sets the column and also records ``enabled = yes`` as a user
property, so that an explicitly enabled user overrides a domain or global ``enabled = no``;
unsetting ``enabled`` sets the column and drops the property, so the user inherits again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smimegate.policy import EffectivePolicy
from smimegate.policy.properties import YES
from smimegate.service import audit
from smimegate.service.actor import Actor
from smimegate.service.properties import (
    checked,
    checked_name,
    domain_arg,
    effective_user,
    email_arg,
)
from smimegate.store import Store, User
from smimegate.store.policyrows import ENABLED


@audit.atomic
def add(store: Store, actor: Actor, email: str,
        values: Mapping[str, str | None] | None = None, *, enabled: bool = True) -> User:
    """Add a user with the given properties (None values are left out).
    Raises InvalidInput, Forbidden, StoreError (Conflict when it exists)."""
    actor.require_change()
    address = email_arg(email)
    normal = {k: checked(k, v, "user", field=k)
              for k, v in (values or {}).items() if v is not None}
    added = store.add_user(address, normal, enabled=enabled)
    detail = " ".join([*(f"{k}={v}" for k, v in normal.items()),
                       *([] if enabled else ["disabled"])])
    audit.record(store, actor, "user.add", added.email, detail)
    return added


def show(store: Store, email: str,
         directory_values: Mapping[str, str] | None = None) -> EffectivePolicy:
    """The user's effective properties (with the directory's, level "ldap", when given).
    Raises InvalidInput, OperationFailed, StoreError (NotFound)."""
    return effective_user(store, email_arg(email), directory_values)


def listing(store: Store, domain: str | None = None) -> list[dict[str, Any]]:
    """Users (of one domain) as ``user list --json`` prints them. Raises InvalidInput."""
    rule = domain_arg(domain) if domain else None
    return [{"email": u.email, "enabled": u.enabled, "properties": dict(u.properties)}
            for u in store.list_users(rule)]


@audit.atomic
def set_property(store: Store, actor: Actor, email: str, name: str,
                 value: str | bool) -> str:
    """Validate and store one user value (``enabled`` goes to the column); returns the normal
    form stored. Raises InvalidInput, Forbidden, StoreError (NotFound)."""
    actor.require_change()
    address = email_arg(email)
    normal = checked(name, value, "user")
    if name == ENABLED:
        store.set_user_enabled(address, normal == YES)
        if normal == YES:
            store.set_user_property(address, ENABLED, YES)
        elif ENABLED in store.get_user(address).properties:
            store.delete_user_property(address, ENABLED)
    else:
        store.set_user_property(address, name, normal)
    audit.record(store, actor, "user.set", address, f"{name}={normal}")
    return normal


@audit.atomic
def unset_property(store: Store, actor: Actor, email: str, name: str) -> None:
    """Drop a user-level value so the user inherits it.
    Raises InvalidInput, Forbidden, StoreError (NotFound)."""
    actor.require_change()
    address = email_arg(email)
    checked_name(name, "user")
    if name == ENABLED:
        store.set_user_enabled(address, True)
        if ENABLED in store.get_user(address).properties:
            store.delete_user_property(address, ENABLED)
    else:
        store.delete_user_property(address, name)
    audit.record(store, actor, "user.unset", address, name)


@audit.atomic
def remove(store: Store, actor: Actor, email: str) -> str:
    """Remove a user (its certificates stay); returns its normal address.
    Raises InvalidInput, Forbidden, StoreError."""
    actor.require_change()
    address = email_arg(email)
    store.remove_user(address)
    audit.record(store, actor, "user.remove", address)
    return address
