"""Admin accounts of the web admin and the REST API: names, roles, passwords, API tokens.

Passwords are hashed with Argon2id (RFC 9106; argon2-cffi's PasswordHasher, whose defaults are
RFC 9106's second recommended option) and checked for length only, as OWASP ASVS 2.1 asks:
12 to 128 characters, any characters. API tokens are 32 random bytes (ASVS 3.5.2: 256 bits);
only their SHA-256 is stored, so the token is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from smimegate.service import audit
from smimegate.service.actor import ROLES, Actor, Role
from smimegate.service.errors import InvalidInput
from smimegate.store import Store
from smimegate.store.accounts import Admin, accounts_of

MIN_PASSWORD = 12  # ASVS 2.1.1
MAX_PASSWORD = 128  # ASVS 2.1.2 allows at most 128; Argon2 itself takes any length
TOKEN_PREFIX = "sgw_"  # tells a leaked token apart in logs and secret scanners

_NAME = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,63}")
_hasher = PasswordHasher()
# Verified when the user name is unknown, so that a wrong name takes as long as a wrong
# password and the answer time does not tell which names exist (ASVS 2.2.x, 3.x enumeration).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def name_arg(text: str) -> str:
    """An admin name: 1 to 64 of lower-case letters, digits and ``. _ @ + -``.
    Raises InvalidInput (field "name")."""
    name = text.strip().lower()
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"bad admin name {text!r}: 1 to 64 lower-case letters, digits and . _ @ + -, "
            "starting with a letter or digit", "name")
    return name


def role_arg(text: str) -> Role:
    """admin or auditor. Raises InvalidInput (field "role")."""
    role = text.strip().lower()
    if role not in ROLES:
        raise InvalidInput(f"bad role {text!r}: allowed roles are {', '.join(ROLES)}", "role")
    return role


def check_password(password: str) -> str:
    """The password unchanged if its length is allowed. Raises InvalidInput (field
    "password")."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(
            f"the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters "
            f"(it has {len(password)})", "password")
    return password


def generate_password() -> str:
    """A random password of 20 URL-safe characters (120 bits)."""
    return secrets.token_urlsafe(15)


def hash_password(password: str) -> str:
    """The Argon2id hash (PHC string) of a password."""
    return _hasher.hash(password)


def token_digest(token: str) -> str:
    """What the store keeps of an API token or a session id."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@audit.atomic
def add(store: Store, actor: Actor, name: str, role: str, password: str) -> Admin:
    """Add an account. Raises InvalidInput, Forbidden, StoreError (Conflict)."""
    actor.require_change()
    name, role = name_arg(name), role_arg(role)
    check_password(password)
    added = accounts_of(store).add_admin(name, role, hash_password(password))
    audit.record(store, actor, "admin.add", name, f"role={role}")
    return added


def listing(store: Store) -> list[dict[str, Any]]:
    """Every account as ``admin list --json`` prints it (never a hash)."""
    accounts = accounts_of(store)
    return [{"name": a.name, "role": a.role, "created": a.created,
             "password_changed": a.password_changed,
             "tokens": len(accounts.tokens(a.name)),
             "totp": accounts.totp(a.name) is not None}
            for a in accounts.list_admins()]


@audit.atomic
def remove(store: Store, actor: Actor, name: str) -> str:
    """Remove an account with its tokens and sessions; never the last one with the admin role
    (nobody could change anything then). Raises InvalidInput, Forbidden, StoreError
    (NotFound)."""
    actor.require_change()
    name = name_arg(name)
    accounts = accounts_of(store)
    if [a.name for a in accounts.list_admins() if a.role == "admin"] == [name]:
        raise InvalidInput(f"{name} is the last account with the admin role: add another "
                           "before removing it", "name")
    accounts.remove_admin(name)
    audit.record(store, actor, "admin.remove", name)
    return name


@audit.atomic
def set_password(store: Store, actor: Actor, name: str, password: str) -> None:
    """Replace an account's password; its web sessions end. Raises InvalidInput, Forbidden,
    StoreError (NotFound)."""
    actor.require_change()
    name = name_arg(name)
    check_password(password)
    accounts_of(store).set_password(name, hash_password(password))
    audit.record(store, actor, "admin.password", name)


@audit.atomic
def new_token(store: Store, actor: Actor, name: str, role: str | None = None) -> str:
    """Make an API token for an account and return it (the only time it is seen). role: the
    token's, at most the account's own (default). Raises InvalidInput, Forbidden, StoreError
    (NotFound)."""
    actor.require_change()
    name = name_arg(name)
    wanted = role_arg(role) if role is not None else None
    accounts = accounts_of(store)
    admin = accounts.get_admin(name)
    if wanted == "admin" and admin.role != "admin":
        raise InvalidInput(f"{name} is an auditor: its tokens can only be auditor tokens",
                           "role")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    accounts.add_token(token_digest(token), name, wanted or admin.role)
    audit.record(store, actor, "admin.token", name, f"role={wanted or admin.role}")
    return token


@audit.atomic
def revoke_tokens(store: Store, actor: Actor, name: str) -> int:
    """Revoke every API token of an account (a leaked one cannot be told apart: only
    digests are kept); returns how many. They fail from the next request on, since every
    request looks its token up. Raises InvalidInput, Forbidden, StoreError (NotFound)."""
    actor.require_change()
    name = name_arg(name)
    accounts = accounts_of(store)
    accounts.get_admin(name)  # NotFound for no such account
    revoked = accounts.remove_tokens(name)
    audit.record(store, actor, "admin.token-revoke", name, f"{revoked} revoked")
    return revoked


def check_credentials(store: Store, name: str, password: str) -> Admin | None:
    """The account if name and password match, else None; the same work either way.
    A hash made with older Argon2 parameters is replaced. Raises StoreError."""
    accounts = accounts_of(store)
    try:
        admin = accounts.find_admin(name_arg(name))
    except InvalidInput:
        admin = None
    stored = admin.password_hash if admin is not None and admin.password_hash else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if admin is None:
        return None
    if _hasher.check_needs_rehash(stored):
        accounts.rehash_password(admin.name, hash_password(password))
    return admin


def token_actor(store: Store, token: str, address: str) -> Actor | None:
    """The actor an API token stands for (its own role), None for an unknown token.
    Raises StoreError."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    found = accounts_of(store).use_token(token_digest(token))
    if found is None:
        return None
    token_row, admin = found
    # A token never outranks its account: an admin demoted to auditor keeps read access only.
    role = "admin" if token_row.role == "admin" and admin.role == "admin" else "auditor"
    return Actor(admin.name, cast(Role, role), "api", address)
