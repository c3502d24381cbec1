"""Policy properties on the command line: validating what an admin sets, showing what applies.

Values are checked and normalised by smimegate.policy before they reach the store, so the store
only ever holds normal forms (``true`` becomes ``yes``). A bad name or value typed on the
command line is a usage error (exit 2) whose one line lists the allowed names or values. A bad
row already in the store, met while resolving, is an operation failure (exit 1).

``enabled`` at the user level lives in the users table's enabled column
(smimegate.store.policyrows explains how it folds into the policy): ``user set EMAIL enabled no``
clears the column; ``user set EMAIL enabled yes`` sets the column and also records
``enabled = yes`` as a user property, so that an explicitly enabled user overrides a domain or
global ``enabled = no``; ``user unset EMAIL enabled`` sets the column and drops the property, so
the user inherits again.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from smimegate.cli.common import OperationFailed, UsageError, print_json
from smimegate.policy import (
    EffectivePolicy,
    Level,
    PolicyError,
    check_level,
    normalise_rule,
    resolve,
    validate,
)
from smimegate.policy.properties import YES
from smimegate.store import Store
from smimegate.store.base import InvalidData
from smimegate.store.certinfo import normalize_email
from smimegate.store.policyrows import ENABLED, address_policy


def checked(name: str, value: str, level: Level) -> str:
    """The normal form of value for property name at level. Raises UsageError (exit 2)."""
    try:
        return validate(name, value, level)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None


def checked_name(name: str, level: Level) -> None:
    """Refuse an unknown property or one not settable at level. Raises UsageError."""
    try:
        check_level(name, level)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None


def domain_arg(text: str) -> str:
    """A domain rule as typed (``example.com``, ``*.example.com``) in normal form.

    Raises UsageError for a malformed name.
    """
    try:
        return normalise_rule(text)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None


def email_arg(text: str) -> str:
    """An address in the store's normal form. Raises UsageError for a malformed one."""
    try:
        return normalize_email(text)
    except InvalidData as exc:
        raise UsageError(str(exc)) from None


def set_user_property(store: Store, email: str, name: str, value: str) -> str:
    """Store a validated user property; ``enabled`` goes to the column. Returns the value
    stored. Raises UsageError, StoreError (NotFound when the user does not exist).
    """
    normal = checked(name, value, "user")
    if name == ENABLED:
        store.set_user_enabled(email, normal == YES)
        if normal == YES:
            store.set_user_property(email, ENABLED, YES)
        elif ENABLED in store.get_user(email).properties:
            store.delete_user_property(email, ENABLED)
        return normal
    store.set_user_property(email, name, normal)
    return normal


def unset_user_property(store: Store, email: str, name: str) -> None:
    """Drop a user-level value so the user inherits it. Raises UsageError, StoreError."""
    checked_name(name, "user")
    if name == ENABLED:
        store.set_user_enabled(email, True)
        if ENABLED in store.get_user(email).properties:
            store.delete_user_property(email, ENABLED)
        return
    store.delete_user_property(email, name)


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


def print_policy(policy: EffectivePolicy, as_json: bool, title: str | None = None) -> None:
    """Print each property's value and the level it came from (CONTRACT.md ``show``)."""
    if as_json:
        print_json(policy.as_dict())
        return
    if title:
        print(title)
    width = max(len(name) for name, _ in policy.items)
    for name, resolved in policy.items:
        value = resolved.value if resolved.value != "" else '""'
        print(f"  {name:<{width}}  {value}  ({resolved.source})")
    sys.stdout.flush()
