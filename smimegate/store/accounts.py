"""Tables of the web admin and the REST API: admin accounts, API tokens, web sessions, failed
sign-ins and the audit log (sql/0004_admin*.sql).

Kept apart from SqlStore, over the same connections (SqlStore.backend): these rows serve the
admin front ends only, never the milter. Secrets never reach this module in clear: passwords
come as Argon2id hashes, tokens and session ids as their SHA-256 (smimegate.service.accounts
and smimegate.service.sessions make them). Times are whole seconds since the epoch, UTC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from smimegate.store.base import Conflict, NotFound, Store, StoreError
from smimegate.store.dialect import Backend, Row
from smimegate.store.sql import SqlStore


def now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Admin:
    name: str
    role: str  # admin | auditor
    password_hash: str | None
    created: int
    password_changed: int | None


@dataclass(frozen=True)
class Token:
    digest: str
    admin: str
    role: str  # the token's own role: never above its admin's
    created: int
    last_used: int | None


@dataclass(frozen=True)
class Session:
    digest: str
    admin: str
    role: str  # the admin's role, read with the session so a demoted admin loses it at once
    csrf: str
    address: str
    created: int
    last_seen: int
    reauth: int | None = None  # when the password was last given again (0007)


@dataclass(frozen=True)
class Totp:
    """An admin's TOTP enrolment: the secret sealed with the master key (key_id names it)
    and the last time step accepted (None: none yet)."""

    sealed: bytes
    key_id: str
    last_step: int | None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: int
    actor: str
    role: str
    via: str  # cli | web | api
    address: str
    action: str
    target: str
    detail: str


def accounts_of(store: Store) -> AccountStore:
    """The account tables of an SQL store. Raises StoreError for any other kind of store."""
    if not isinstance(store, SqlStore):
        raise StoreError("this store keeps no admin accounts or audit log")
    return AccountStore(store.backend)


class AccountStore:
    """The account, session and audit rows of one store. Every method may raise
    StoreUnavailable; those naming a row raise NotFound when it is absent."""

    def __init__(self, backend: Backend) -> None:
        self._db = backend

    # -- admins ---------------------------------------------------------------------------
    _ADMIN_SELECT = "SELECT name, role, password_hash, created, password_changed FROM admins"

    @staticmethod
    def _admin(row: Row) -> Admin:
        return Admin(row[0], row[1], row[2], int(row[3]),
                     int(row[4]) if row[4] is not None else None)

    def add_admin(self, name: str, role: str, password_hash: str | None) -> Admin:
        """Raises Conflict when the name is taken."""
        at = now()
        with self._db.transaction() as cur:
            if cur.one("SELECT 1 FROM admins WHERE name = ?", (name,)):
                raise Conflict(f"admin {name} already exists")
            cur.run(
                "INSERT INTO admins (name, role, password_hash, created, password_changed)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, role, password_hash, at, at if password_hash else None),
            )
        return Admin(name, role, password_hash, at, at if password_hash else None)

    def get_admin(self, name: str) -> Admin:
        with self._db.connection() as cur:
            row = cur.one(f"{self._ADMIN_SELECT} WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no admin {name}")
        return self._admin(row)

    def find_admin(self, name: str) -> Admin | None:
        try:
            return self.get_admin(name)
        except NotFound:
            return None

    def list_admins(self) -> list[Admin]:
        with self._db.connection() as cur:
            return [self._admin(r) for r in cur.all(f"{self._ADMIN_SELECT} ORDER BY name")]

    def remove_admin(self, name: str) -> None:
        """Its tokens and sessions go with it (ON DELETE CASCADE)."""
        with self._db.connection() as cur:
            if not cur.run("DELETE FROM admins WHERE name = ?", (name,)):
                raise NotFound(f"no admin {name}")

    def set_password(self, name: str, password_hash: str) -> None:
        """Replace the hash and end the admin's sessions (ASVS 3.3.3: a changed password
        signs out everywhere)."""
        with self._db.transaction() as cur:
            if not cur.run(
                "UPDATE admins SET password_hash = ?, password_changed = ? WHERE name = ?",
                (password_hash, now(), name),
            ):
                raise NotFound(f"no admin {name}")
            cur.run("DELETE FROM web_sessions WHERE admin = ?", (name,))

    def rehash_password(self, name: str, password_hash: str) -> None:
        """Store a hash made with newer parameters for the same password (no sign-out)."""
        with self._db.connection() as cur:
            cur.run("UPDATE admins SET password_hash = ? WHERE name = ?", (password_hash, name))

    # -- API tokens -----------------------------------------------------------------------
    def add_token(self, digest: str, admin: str, role: str) -> Token:
        at = now()
        with self._db.transaction() as cur:
            if not cur.one("SELECT 1 FROM admins WHERE name = ?", (admin,)):
                raise NotFound(f"no admin {admin}")
            cur.run(
                "INSERT INTO api_tokens (digest, admin, role, created) VALUES (?, ?, ?, ?)",
                (digest, admin, role, at),
            )
        return Token(digest, admin, role, at, None)

    def use_token(self, digest: str) -> tuple[Token, Admin] | None:
        """The token with this digest and its admin, its last use set to now; None if none."""
        with self._db.connection() as cur:
            row = cur.one(
                "SELECT t.digest, t.admin, t.role, t.created, t.last_used,"
                " a.name, a.role, a.password_hash, a.created, a.password_changed"
                " FROM api_tokens t JOIN admins a ON a.name = t.admin WHERE t.digest = ?",
                (digest,),
            )
            if row is None:
                return None
            cur.run("UPDATE api_tokens SET last_used = ? WHERE digest = ?", (now(), digest))
        token = Token(row[0], row[1], row[2], int(row[3]),
                      int(row[4]) if row[4] is not None else None)
        return token, self._admin(row[5:])

    def tokens(self, admin: str) -> list[Token]:
        with self._db.connection() as cur:
            rows = cur.all(
                "SELECT digest, admin, role, created, last_used FROM api_tokens"
                " WHERE admin = ? ORDER BY created, digest",
                (admin,),
            )
        return [Token(r[0], r[1], r[2], int(r[3]), int(r[4]) if r[4] is not None else None)
                for r in rows]

    def remove_tokens(self, admin: str) -> int:
        with self._db.connection() as cur:
            return cur.run("DELETE FROM api_tokens WHERE admin = ?", (admin,))

    # -- web sessions ---------------------------------------------------------------------
    def add_session(self, digest: str, admin: str, csrf: str, address: str) -> Session:
        at = now()
        with self._db.transaction() as cur:
            row = cur.one("SELECT role FROM admins WHERE name = ?", (admin,))
            if row is None:
                raise NotFound(f"no admin {admin}")
            cur.run(
                "INSERT INTO web_sessions (digest, admin, csrf, address, created, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (digest, admin, csrf, address, at, at),
            )
        return Session(digest, admin, row[0], csrf, address, at, at)

    def session(self, digest: str) -> Session | None:
        with self._db.connection() as cur:
            row = cur.one(
                "SELECT s.digest, s.admin, a.role, s.csrf, s.address, s.created, s.last_seen,"
                " s.reauth FROM web_sessions s JOIN admins a ON a.name = s.admin"
                " WHERE s.digest = ?",
                (digest,),
            )
        if row is None:
            return None
        return Session(row[0], row[1], row[2], row[3], row[4], int(row[5]), int(row[6]),
                       int(row[7]) if row[7] is not None else None)

    def renew_session(self, digest: str, new_digest: str, reauth: int) -> None:
        """The session's admin gave the password (and code) again at ``reauth``: the session
        gets a new id; its creation time, and so its absolute end, stays."""
        with self._db.connection() as cur:
            cur.run("UPDATE web_sessions SET digest = ?, reauth = ? WHERE digest = ?",
                    (new_digest, reauth, digest))

    def sessions(self, admin: str) -> list[Session]:
        """The admin's sessions, newest first."""
        with self._db.connection() as cur:
            rows = cur.all(
                "SELECT s.digest, s.admin, a.role, s.csrf, s.address, s.created, s.last_seen"
                " FROM web_sessions s JOIN admins a ON a.name = s.admin WHERE s.admin = ?"
                " ORDER BY s.created DESC, s.digest",
                (admin,),
            )
        return [Session(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6])) for r in rows]

    def touch_session(self, digest: str) -> None:
        with self._db.connection() as cur:
            cur.run("UPDATE web_sessions SET last_seen = ? WHERE digest = ?", (now(), digest))

    def delete_session(self, digest: str) -> None:
        with self._db.connection() as cur:
            cur.run("DELETE FROM web_sessions WHERE digest = ?", (digest,))

    def delete_sessions(self, admin: str) -> int:
        with self._db.connection() as cur:
            return cur.run("DELETE FROM web_sessions WHERE admin = ?", (admin,))

    def expire_sessions(self, idle_since: int, created_since: int) -> int:
        """Delete sessions unused since idle_since or created before created_since."""
        with self._db.connection() as cur:
            return cur.run(
                "DELETE FROM web_sessions WHERE last_seen < ? OR created < ?",
                (idle_since, created_since),
            )

    # -- TOTP second factor ---------------------------------------------------------------
    def totp(self, name: str) -> Totp | None:
        """The admin's TOTP enrolment, None when it has none. Raises NotFound."""
        with self._db.connection() as cur:
            row = cur.one("SELECT totp_sealed, totp_key_id, totp_last FROM admins"
                          " WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no admin {name}")
        if row[0] is None:
            return None
        return Totp(bytes(row[0]), str(row[1]), int(row[2]) if row[2] is not None else None)

    def set_totp(self, name: str, sealed: bytes | None, key_id: str | None) -> None:
        """Enrol (sealed secret and its key id) or, with None, remove the second factor."""
        with self._db.connection() as cur:
            if not cur.run("UPDATE admins SET totp_sealed = ?, totp_key_id = ?, totp_last = NULL"
                           " WHERE name = ?", (sealed, key_id, name)):
                raise NotFound(f"no admin {name}")

    def use_totp_step(self, name: str, step: int) -> bool:
        """Record ``step`` as used, only if it is later than the last one used: False when
        it is not (a replayed code, RFC 6238 5.2). One statement, so two sign-ins racing with
        the same code cannot both win."""
        with self._db.connection() as cur:
            return cur.run("UPDATE admins SET totp_last = ? WHERE name = ?"
                           " AND (totp_last IS NULL OR totp_last < ?)", (step, name, step)) == 1

    # -- failed sign-ins ------------------------------------------------------------------
    def add_failure(self, kind: str, name: str) -> None:
        with self._db.connection() as cur:
            cur.run("INSERT INTO login_failures (kind, name, at) VALUES (?, ?, ?)",
                    (kind, name, now()))

    def count_failures(self, kind: str, name: str, since: int) -> int:
        with self._db.connection() as cur:
            row = cur.one(
                "SELECT COUNT(*) FROM login_failures WHERE kind = ? AND name = ? AND at >= ?",
                (kind, name, since),
            )
        return int(row[0]) if row else 0

    def clear_failures(self, kind: str, name: str) -> None:
        with self._db.connection() as cur:
            cur.run("DELETE FROM login_failures WHERE kind = ? AND name = ?", (kind, name))

    def prune_failures(self, before: int) -> None:
        with self._db.connection() as cur:
            cur.run("DELETE FROM login_failures WHERE at < ?", (before,))

    # -- audit log ------------------------------------------------------------------------
    def add_audit(self, actor: str, role: str, via: str, address: str, action: str,
                  target: str, detail: str) -> None:
        with self._db.connection() as cur:
            cur.run(
                "INSERT INTO audit_log (at, actor, role, via, address, action, target, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now(), actor, role, via, address, action, target, detail),
            )

    def audit(self, *, limit: int = 100, offset: int = 0, search: str = "") -> list[AuditEntry]:
        """Entries newest first; search: a substring of actor, action, target or detail."""
        where, params = _audit_search(search)
        with self._db.connection() as cur:
            rows = cur.all(
                "SELECT id, at, actor, role, via, address, action, target, detail FROM audit_log"
                f"{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            )
        return [AuditEntry(int(r[0]), int(r[1]), *r[2:]) for r in rows]

    def audit_count(self, search: str = "") -> int:
        """How many entries audit() pages through for this search."""
        where, params = _audit_search(search)
        with self._db.connection() as cur:
            row = cur.one(f"SELECT COUNT(*) FROM audit_log{where}", tuple(params))
        return int(row[0]) if row else 0


def _audit_search(search: str) -> tuple[str, list[str]]:
    """The WHERE clause and parameters of an audit-log search (substring, any case)."""
    if not search:
        return "", []
    like = "LIKE ? ESCAPE '!'"
    where = (f" WHERE LOWER(actor) {like} OR LOWER(action) {like} OR LOWER(target) {like}"
             f" OR LOWER(detail) {like} OR address {like}")
    escaped = search.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return where, [f"%{escaped}%"] * 5
