"""``smimegate ldap sync``: provision users, their directory policy and their certificates into
the store.

For each directory entry with a mail address (DirectoryUsers.all_users):
- a user the store lacks is added with the entry's policy values;
- an existing user gets the values of the *managed* properties (those mapped in
  ``[ldap.attributes]`` or set by a ``[[ldap.groups]]`` rule) as the directory has them: changed
  values are written, managed values the directory no longer gives are deleted, so the user
  inherits again; properties set with ``smimegate user set`` that the directory does not manage
  are left alone. A disabled user found again is enabled. ``enabled`` from the directory goes to
  the store's enabled column, as ``user set EMAIL enabled`` does (smimegate.service.users);
- certificates found in the entry are imported (no keys; source "ldap"), once.

Users gone from the directory are disabled (``enabled`` column false: the gateway treats them as
unknown), or removed with ``remove=True``. Only store users of the domains the directory serves
(the domains of the addresses it returned) are considered gone: a partner added by hand under
another domain is never touched, and a directory that returns nobody (a wrong base DN) changes
nothing. A store user whose address is a directory user's alternate address is not gone.

Running it twice changes nothing the second time. ``dry_run`` reports the same changes and
writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.config import LdapConfig
from smimegate.policy import PolicyError, check_level
from smimegate.policy.properties import YES
from smimegate.store.base import NotFound, Store, User
from smimegate.store.ldap import ALTERNATE_MAIL, CERTIFICATES, MAIL, DirectoryUser

Action = Literal["add", "change", "disable", "remove"]
ENABLED = "enabled"


@dataclass(frozen=True)
class SyncChange:
    """One user's change; details say what, e.g. ``encrypt_mode: allow -> mandatory``."""

    email: str
    action: Action
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncReport:
    changes: tuple[SyncChange, ...]
    unchanged: int
    certificates: int  # certificates imported (or, in a dry run, that would be)
    dry_run: bool

    def count(self, action: Action) -> int:
        """How many users had this action."""
        return sum(1 for c in self.changes if c.action == action)

    def summary(self) -> str:
        """One line: ``added 2, changed 1, disabled 0, removed 0, unchanged 5, certificates 3``."""
        text = (
            f"added {self.count('add')}, changed {self.count('change')}, "
            f"disabled {self.count('disable')}, removed {self.count('remove')}, "
            f"unchanged {self.unchanged}, certificates imported {self.certificates}"
        )
        return f"dry run, nothing written: {text}" if self.dry_run else text

    def as_dict(self) -> dict[str, object]:
        """For ``--json``."""
        return {
            "dry_run": self.dry_run,
            "added": self.count("add"),
            "changed": self.count("change"),
            "disabled": self.count("disable"),
            "removed": self.count("remove"),
            "unchanged": self.unchanged,
            "certificates_imported": self.certificates,
            "changes": [
                {"email": c.email, "action": c.action, "details": list(c.details)}
                for c in self.changes
            ],
        }


def managed_properties(config: LdapConfig) -> frozenset[str]:
    """The user-level properties the directory manages: mapped attributes and group rule
    values (names that are not user-level properties are ignored, as the reader does)."""
    names = {k for k, v in config.attributes.items() if v} - {MAIL, ALTERNATE_MAIL, CERTIFICATES}
    for rule in config.groups:
        names.update(rule.properties)
    good = set()
    for name in names:
        try:
            check_level(name, "user")
        except PolicyError:
            continue
        good.add(name)
    return frozenset(good)


def sync(
    store: Store,
    users: Sequence[DirectoryUser],
    managed: Iterable[str],
    *,
    remove: bool = False,
    dry_run: bool = False,
) -> SyncReport:
    """Bring the store's users in line with the directory (see the module docstring).

    Raises StoreError from the store; nothing is written when dry_run.
    """
    managed = frozenset(managed)
    stored = {u.email: u for u in store.list_users()}
    changes: list[SyncChange] = []
    unchanged = 0
    certificates = 0
    for user in users:
        wanted = {k: v for k, v in user.properties.items() if k in managed and k != ENABLED}
        enable = user.properties.get(ENABLED, YES) == YES
        current = stored.get(user.email)
        if current is None:
            details = tuple(f"{k}={v}" for k, v in sorted(wanted.items()))
            if not enable:
                details += ("disabled by the directory",)
            if not dry_run:
                store.add_user(user.email, wanted, enabled=enable)
            changes.append(SyncChange(user.email, "add", details))
        else:
            details = _update(store, user.email, current.properties, current.enabled, wanted,
                              enable, managed, dry_run)
            if details:
                changes.append(SyncChange(user.email, "change", details))
            else:
                unchanged += 1
        certificates += _import_certificates(store, user, dry_run)
    changes += _gone(store, stored, users, remove, dry_run)
    return SyncReport(tuple(changes), unchanged, certificates, dry_run)


def _update(
    store: Store,
    email: str,
    have: Mapping[str, str],
    enabled: bool,
    wanted: Mapping[str, str],
    enable: bool,
    managed: frozenset[str],
    dry_run: bool,
) -> tuple[str, ...]:
    details: list[str] = []
    for name in sorted(managed - {ENABLED}):
        old, new = have.get(name), wanted.get(name)
        if old == new:
            continue
        if new is None:
            details.append(f"{name}: {old} -> (inherited)")
            if not dry_run:
                store.delete_user_property(email, name)
        else:
            details.append(f"{name}: {old if old is not None else '(inherited)'} -> {new}")
            if not dry_run:
                store.set_user_property(email, name, new)
    if enabled != enable:
        details.append("enabled" if enable else "disabled by the directory")
        if not dry_run:
            store.set_user_enabled(email, enable)
    return tuple(details)


def _import_certificates(store: Store, user: DirectoryUser, dry_run: bool) -> int:
    added = 0
    for cert in user.certificates:
        fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
        try:
            store.get_certificate(fingerprint)
            continue
        except NotFound:
            added += 1
        if not dry_run:
            store.add_certificate(cert, source="ldap")
    return added


def _gone(
    store: Store,
    stored: Mapping[str, User],
    users: Sequence[DirectoryUser],
    remove: bool,
    dry_run: bool,
) -> list[SyncChange]:
    present = {a for u in users for a in (u.email, *u.addresses)}
    domains = {u.email.rpartition("@")[2] for u in users}
    changes: list[SyncChange] = []
    for email in sorted(stored):
        if email in present or email.rpartition("@")[2] not in domains:
            continue
        if remove:
            if not dry_run:
                store.remove_user(email)
            changes.append(SyncChange(email, "remove", ("gone from the directory",)))
        elif stored[email].enabled:
            if not dry_run:
                store.set_user_enabled(email, False)
            changes.append(SyncChange(email, "disable", ("gone from the directory",)))
    return changes
