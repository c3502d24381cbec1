"""Web sessions and sign-in throttling, kept in the store so that several web processes share
them and an admin can end them (OWASP ASVS 3.3).

The session id is 32 random bytes in the cookie; the store keeps its SHA-256 only. A new id is
made at every sign-in (ASVS 3.2.1), so an id planted before it is worthless. A session ends
after ``idle`` seconds without a request or ``absolute`` seconds after sign-in, whichever is
first (ASVS 3.3.2), and at sign-out. Each session has its own CSRF token (synchronizer token
pattern) that every form posts back.

Throttling (ASVS 2.2.1): sign-ins are refused for a client address with ``per_address`` or a
user name with ``per_user`` failures in the last ``window`` seconds, before the password is
checked, so a throttled guesser learns nothing.

An account with a second factor (smimegate.service.totp) signs in with its code as well; a
wrong code is a failed sign-in like a wrong password, with the same message.

Re-authentication (ASVS 3.7.1): before exporting a private key or creating a CA the session's
admin gives the password (and code) again; ``reauthenticate`` checks them (throttled like
sign-ins) and stamps the session, ``reauth_fresh`` says whether that was within the window.
The web front end wraps both in smimegate.web.reauth.require_reauth.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from dataclasses import dataclass
from typing import cast

from smimegate.service import accounts as admin_accounts
from smimegate.service import audit, totp
from smimegate.service.actor import Actor, Role
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.store import NotFound, Store
from smimegate.store.accounts import Session, accounts_of, now


class Throttled(OperationFailed):
    """Too many failed sign-ins from this address or for this user name."""


@dataclass(frozen=True)
class Limits:
    idle: int = 1800
    absolute: int = 43200
    window: int = 900
    per_address: int = 20
    per_user: int = 5


def _throttle(store: Store, user_key: str, address: str, limits: Limits) -> None:
    accounts = accounts_of(store)
    since = now() - limits.window
    accounts.prune_failures(since)
    if (accounts.count_failures("address", address, since) >= limits.per_address
            or accounts.count_failures("user", user_key, since) >= limits.per_user):
        raise Throttled("too many failed sign-ins: wait a few minutes and try again")


def _failed(store: Store, user_key: str, address: str, via: str, action: str) -> None:
    """Count a wrong password or code for the throttle, and put it in the audit log (ASVS
    7.2.1: every authentication decision), naming the account only when one has that name:
    what was typed as a user name is sometimes a password."""
    accounts = accounts_of(store)
    accounts.add_failure("address", address)
    accounts.add_failure("user", user_key)
    known = accounts.find_admin(user_key)
    name = known.name if known is not None else "-"
    accounts.add_audit(name, known.role if known is not None else "-", via, address, action,
                       known.name if known is not None else "(no such account)",
                       "wrong password or code")


def sign_in(store: Store, name: str, password: str, address: str,
            limits: Limits, code: str = "") -> tuple[str, Session]:
    """Check the credentials (and the TOTP code of an account that has a second factor) and
    open a session; returns (session id for the cookie, session).

    Raises Throttled, InvalidInput (one message for a wrong name, password or code, field
    "password"), StoreError (MasterKeyError: the code cannot be checked here).
    """
    accounts = accounts_of(store)
    user_key = name.strip().lower()[:64]
    _throttle(store, user_key, address, limits)
    admin = admin_accounts.check_credentials(store, name, password)
    if admin is None or not totp.check(store, admin.name, code):
        _failed(store, user_key, address, "web", "session.sign-in-failed")
        raise InvalidInput("wrong user name, password or code", "password")
    accounts.clear_failures("user", user_key)
    session_id = secrets.token_urlsafe(32)
    session = accounts.add_session(admin_accounts.token_digest(session_id), admin.name,
                                   secrets.token_urlsafe(32), address)
    audit.record(store, actor_of(session, address), "session.sign-in", admin.name)
    return session_id, session


def current(store: Store, session_id: str, limits: Limits, *,
            touch: bool = True) -> Session | None:
    """The live session with this id, None when there is none or it expired (an expired one is
    deleted). Raises StoreError.

    touch: the request is the admin's own, so its last use is set to now. A request a page
    makes by itself (the Logs tab's live tail, every few seconds) passes False: an unattended
    browser must still reach the idle timeout (ASVS 3.3.2)."""
    if not session_id or len(session_id) > 100:
        return None
    accounts = accounts_of(store)
    at = now()
    accounts.expire_sessions(at - limits.idle, at - limits.absolute)
    session = accounts.session(admin_accounts.token_digest(session_id))
    if session is None:
        return None
    if touch:
        accounts.touch_session(session.digest)
    return session


def reauth_fresh(session: Session, window: int, at: int | None = None) -> bool:
    """Whether the session's admin re-authenticated within the last ``window`` seconds."""
    moment = now() if at is None else at
    return session.reauth is not None and 0 <= moment - session.reauth <= window


def reauthenticate(store: Store, session: Session, password: str, code: str, address: str,
                   limits: Limits) -> tuple[str, Session]:
    """Check the session admin's password (and TOTP code if enrolled) again and stamp the
    session; returns (its new id for the cookie, the session). Failures count as failed
    sign-ins (throttled the same way). Raises Throttled, InvalidInput (field
    "reauth_password"), StoreError.

    The session gets a new id here, as at sign-in (ASVS 3.2.1, 3.7.1): for the next few
    minutes it may export private keys, and an id seen before (in a log, a proxy, a copied
    cookie) must not carry that power. The CSRF token stays: it proves a form came from our
    pages, not who holds the session, and the page a PKCS#12 was downloaded from keeps
    working."""
    _check_again(store, session.admin, password, code, address, "web", limits)
    session_id = secrets.token_urlsafe(32)
    renewed = dataclasses.replace(session, digest=admin_accounts.token_digest(session_id),
                                  reauth=now())
    _renew(store, session, renewed, address)
    return session_id, renewed


@audit.atomic
def _renew(store: Store, old: Session, renewed: Session, address: str) -> None:
    assert renewed.reauth is not None
    accounts_of(store).renew_session(old.digest, renewed.digest, renewed.reauth)
    audit.record(store, actor_of(renewed, address), "session.reauth", renewed.admin)


def reauthenticate_token(store: Store, actor: Actor, password: str, code: str,
                         limits: Limits) -> None:
    """An API token's re-authentication: the password (and TOTP code) of the token's account
    given in the request that exports a key or creates a CA, checked like a session's
    (throttled, failures counted) and recorded. A token has no session to stamp, so every
    such request carries them: a stolen token alone never yields a private key.
    Raises Throttled, InvalidInput (field "reauth_password"), StoreError."""
    _check_again(store, actor.name, password, code, actor.address, actor.via, limits)
    audit.record(store, actor, "session.reauth", actor.name, "api token")


def _check_again(store: Store, name: str, password: str, code: str, address: str, via: str,
                 limits: Limits) -> None:
    _throttle(store, name, address, limits)
    admin = admin_accounts.check_credentials(store, name, password)
    if admin is None or not totp.check(store, admin.name, code):
        _failed(store, name, address, via, "session.reauth-failed")
        raise InvalidInput("wrong password or code", "reauth_password")


def sign_out(store: Store, session_id: str) -> None:
    """End the session with this id, if there is one. Raises StoreError."""
    accounts_of(store).delete_session(admin_accounts.token_digest(session_id))


def csrf_ok(session: Session, token: str) -> bool:
    """Whether a posted CSRF token is the session's (constant-time compare)."""
    return hmac.compare_digest(session.csrf.encode(), token.encode())


def actor_of(session: Session, address: str) -> Actor:
    return Actor(session.admin, cast(Role, session.role), "web", address)


def list_own(store: Store, admin: str) -> list[Session]:
    """The admin's live sessions, newest first (ASVS 3.3.4). Raises StoreError."""
    return accounts_of(store).sessions(admin)


@audit.atomic
def end(store: Store, actor: Actor, digest: str) -> None:
    """End one of the actor's own sessions, named by its digest; auditors may too (it changes
    nothing but their own access). Raises NotFound for a session that is not the actor's."""
    accounts = accounts_of(store)
    if digest not in {s.digest for s in accounts.sessions(actor.name)}:
        raise NotFound("no such session of yours")
    accounts.delete_session(digest)
    audit.record(store, actor, "session.end", actor.name)


def change_own_password(store: Store, actor: Actor, current_password: str,
                        new_password: str, limits: Limits) -> None:
    """Change the actor's own password after checking the current one (ASVS 2.1.6); every
    session of the account ends. Auditors may change their own password. The current
    password is checked as a sign-in's is, throttled and counted (ASVS 2.2.1): else a stolen
    session could guess it without limit, then sign in anywhere and outlive the session.
    Raises Throttled, InvalidInput (field "current" or "password"), StoreError."""
    _throttle(store, actor.name, actor.address, limits)
    if admin_accounts.check_credentials(store, actor.name, current_password) is None:
        _failed(store, actor.name, actor.address, actor.via, "admin.password-failed")
        raise InvalidInput("the current password is wrong", "current")
    admin_accounts.check_password(new_password)
    _set_own_password(store, actor, new_password)


@audit.atomic
def _set_own_password(store: Store, actor: Actor, new_password: str) -> None:
    accounts_of(store).set_password(actor.name, admin_accounts.hash_password(new_password))
    audit.record(store, actor, "admin.password", actor.name, "own")
