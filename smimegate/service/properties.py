"""Policy property names and values as every front end checks them, and the effective policy.

Values are checked and normalised by smimegate.policy before they reach the store, so the store
only ever holds normal forms (``true`` becomes ``yes``). A bad name or value is InvalidInput
whose one line lists the allowed names or values; a bad row already in the store, met while
resolving, is OperationFailed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smimegate.policy import (
    PROPERTIES,
    EffectivePolicy,
    Level,
    PolicyError,
    check_level,
    normalise_rule,
    resolve,
    validate,
)
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.store import Store
from smimegate.store.base import InvalidData
from smimegate.store.certinfo import normalize_email
from smimegate.store.policyrows import address_policy


def checked(name: str, value: str | bool, level: Level, field: str = "value") -> str:
    """The normal form of value for property name at level. Raises InvalidInput (field
    "property" for a name unknown or not settable at level, else "value")."""
    checked_name(name, level)
    try:
        return validate(name, value, level)
    except PolicyError as exc:
        raise InvalidInput(str(exc), field) from None


def checked_name(name: str, level: Level) -> None:
    """Refuse an unknown property or one not settable at level. Raises InvalidInput."""
    try:
        check_level(name, level)
    except PolicyError as exc:
        raise InvalidInput(str(exc), "property") from None


def domain_arg(text: str) -> str:
    """A domain rule as typed (``example.com``, ``*.example.com``) in normal form.

    Raises InvalidInput (field "domain") for a malformed name.
    """
    try:
        return normalise_rule(text)
    except PolicyError as exc:
        raise InvalidInput(str(exc), "domain") from None


def email_arg(text: str) -> str:
    """An address in the store's normal form. Raises InvalidInput (field "email")."""
    try:
        return normalize_email(text)
    except InvalidData as exc:
        raise InvalidInput(str(exc), "email") from None


def effective_global(store: Store) -> EffectivePolicy:
    """Defaults overlaid with the global settings. Raises OperationFailed for a bad row."""
    try:
        return resolve(store.settings())
    except PolicyError as exc:
        raise OperationFailed(f"stored policy is invalid: {exc}") from None


def effective_domain(store: Store, domain: str) -> EffectivePolicy:
    """The policy of a domain rule: defaults, global, the rule's own values.

    Raises StoreError (NotFound), OperationFailed for a bad stored row.
    """
    rule = store.get_domain(domain)
    try:
        return resolve(store.settings(), rule.properties)
    except PolicyError as exc:
        raise OperationFailed(f"stored policy is invalid: {exc}") from None


def effective_user(
    store: Store, email: str, directory_values: Mapping[str, str] | None = None
) -> EffectivePolicy:
    """The policy of a user: defaults, global, the most specific domain rule, the user's row,
    then the directory's values (level "ldap") when given, as the milter resolves it.

    Raises StoreError (NotFound for a user neither stored nor given by the directory),
    OperationFailed for a bad stored row.
    """
    if directory_values is None:
        email = store.get_user(email).email  # only the directory may know a user we lack
    rows = store.policy_rows([email])
    try:
        return address_policy(rows, email, directory_values)
    except PolicyError as exc:
        raise OperationFailed(f"stored policy is invalid: {exc}") from None


@dataclass(frozen=True)
class PropertyInfo:
    """One property as a form or an API description shows it."""

    name: str
    doc: str
    default: str
    choices: tuple[str, ...]
    allowed: str


def settable(level: Level) -> list[PropertyInfo]:
    """The properties that may be set at level, in table order."""
    return [PropertyInfo(p.name, p.doc, p.default, p.choices, p.describe_allowed())
            for p in PROPERTIES.values() if level in p.levels]
