"""Global policy properties: show, set, unset (back to the built-in default)."""

from __future__ import annotations

from smimegate.policy import EffectivePolicy
from smimegate.service import audit
from smimegate.service.actor import Actor
from smimegate.service.properties import checked, checked_name, effective_global
from smimegate.store import NotFound, Store


def show(store: Store) -> EffectivePolicy:
    """Every property's global value and its level. Raises OperationFailed, StoreError."""
    return effective_global(store)


@audit.atomic
def set_property(store: Store, actor: Actor, name: str, value: str | bool) -> str:
    """Validate and store a global value; returns the normal form stored.
    Raises InvalidInput, Forbidden, StoreError."""
    actor.require_change()
    normal = checked(name, value, "global")
    store.set_setting(name, normal)
    audit.record(store, actor, "settings.set", name, normal)
    return normal


@audit.atomic
def unset_property(store: Store, actor: Actor, name: str) -> bool:
    """Drop a global value so the default applies; returns whether one was set.
    Raises InvalidInput, Forbidden, StoreError."""
    actor.require_change()
    checked_name(name, "global")
    try:
        store.delete_setting(name)
    except NotFound:
        return False
    audit.record(store, actor, "settings.unset", name)
    return True
