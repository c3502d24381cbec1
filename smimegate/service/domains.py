"""Domain rules and their policy properties. A rule ``example.com`` covers the domain and its
subdomains, ``*.example.com`` only the subdomains (smimegate.policy.resolve)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smimegate.policy import EffectivePolicy
from smimegate.service import audit
from smimegate.service.actor import Actor
from smimegate.service.properties import checked, checked_name, domain_arg, effective_domain
from smimegate.store import Domain, Store


def _details(values: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


@audit.atomic
def add(store: Store, actor: Actor, domain: str,
        values: Mapping[str, str | None] | None = None) -> Domain:
    """Add a rule with the given properties (None values are left out).
    Raises InvalidInput, Forbidden, StoreError (Conflict when it exists)."""
    actor.require_change()
    name = domain_arg(domain)
    normal = {k: checked(k, v, "domain", field=k)
              for k, v in (values or {}).items() if v is not None}
    added = store.add_domain(name, normal)
    audit.record(store, actor, "domain.add", added.name, _details(normal))
    return added


def show(store: Store, domain: str) -> EffectivePolicy:
    """The rule's effective properties. Raises InvalidInput, OperationFailed, StoreError
    (NotFound)."""
    return effective_domain(store, domain_arg(domain))


def listing(store: Store) -> list[dict[str, Any]]:
    """Every rule as ``domain list --json`` prints it."""
    return [{"name": d.name, "properties": dict(d.properties)} for d in store.list_domains()]


@audit.atomic
def set_property(store: Store, actor: Actor, domain: str, name: str,
                 value: str | bool) -> str:
    """Validate and store one value of a rule; returns the normal form.
    Raises InvalidInput, Forbidden, StoreError (NotFound)."""
    actor.require_change()
    rule = domain_arg(domain)
    normal = checked(name, value, "domain")
    store.set_domain_property(rule, name, normal)
    audit.record(store, actor, "domain.set", rule, f"{name}={normal}")
    return normal


@audit.atomic
def unset_property(store: Store, actor: Actor, domain: str, name: str) -> None:
    """Drop one value of a rule so it inherits. Raises InvalidInput, Forbidden, StoreError
    (NotFound when the rule or the value is absent)."""
    actor.require_change()
    rule = domain_arg(domain)
    checked_name(name, "domain")
    store.delete_domain_property(rule, name)
    audit.record(store, actor, "domain.unset", rule, name)


@audit.atomic
def remove(store: Store, actor: Actor, domain: str) -> str:
    """Remove a rule; returns its normal name. Raises InvalidInput, Forbidden, StoreError."""
    actor.require_change()
    rule = domain_arg(domain)
    store.remove_domain(rule)
    audit.record(store, actor, "domain.remove", rule)
    return rule
