"""Store records as policy inputs: the one mapping from PolicyRows to an EffectivePolicy.

smimegate.policy is pure and knows nothing of the store; this module is where stored rows
become its inputs, so the milter (smimegate.milter.services) and the CLI (``user show``,
``user set``) resolve a user's policy the same way.

``enabled`` at the user level: the users table has an ``enabled`` column (what ``ldap sync``,
``user add --disabled`` and ``user set EMAIL enabled no`` write), and smimegate.policy has an
``enabled`` property. The column is the one source of truth for a disabled user: a cleared
column is the user-level value ``no``, whatever the user's properties say. An explicitly
enabled user also carries ``enabled = yes`` as a property, so that it overrides a domain or
global ``enabled = no`` (smimegate.service.users keeps column and property in step). Every
user-level view of the policy must go through user_values(), or a disabled user would count
as enabled.
"""

from __future__ import annotations

from collections.abc import Mapping

from smimegate.policy import EffectivePolicy, resolve_for_address
from smimegate.policy.properties import NO
from smimegate.store.base import PolicyRows, User
from smimegate.store.certinfo import normalize_email

ENABLED = "enabled"


def user_values(user: User) -> dict[str, str]:
    """The user-level property values of a stored user, the enabled column folded in."""
    values = dict(user.properties)
    if not user.enabled:
        values[ENABLED] = NO
    return values


def domain_rules(rows: PolicyRows) -> dict[str, Mapping[str, str]]:
    """Each stored domain rule's name and its properties, as policy.resolve_for_address takes
    them."""
    return {name: domain.properties for name, domain in rows.domains.items()}


def address_policy(rows: PolicyRows, address: str,
                   directory_values: Mapping[str, str] | None = None) -> EffectivePolicy:
    """The effective policy of ``address`` from rows fetched for it (Store.policy_rows):
    defaults, global settings, its most specific domain rule, its user row when stored, and
    the directory's values (smimegate.store.ldap, level "ldap") when given.

    Raises InvalidData for a malformed address, PolicyError for a bad stored value.
    """
    user = rows.users.get(normalize_email(address))
    values = user_values(user) if user is not None else None
    return resolve_for_address(address, rows.settings, domain_rules(rows), values,
                               directory_values)
