-- 0004: accounts of the web admin and the REST API, their sessions and tokens, sign-in
-- throttling, and the audit log of changes. Shared by SQLite and PostgreSQL; audit_log differs
-- per dialect (its id column) and is created by 0004_admin.sqlite.sql / .postgresql.sql first.

-- Admin accounts (`smimegate admin add`). role: admin (changes) | auditor (reads only).
-- password_hash: Argon2id in PHC string form (argon2-cffi), NULL while no password is set.
CREATE TABLE admins (
    name             TEXT PRIMARY KEY,
    role             TEXT NOT NULL,
    password_hash    TEXT,
    created          BIGINT NOT NULL,
    password_changed BIGINT
);

-- API tokens (`smimegate admin token`): only the SHA-256 of the token (lower-case hex) is
-- kept, so a copy of the database cannot be used to call the API. role may be below the
-- admin's own (an admin's read-only token).
CREATE TABLE api_tokens (
    digest    TEXT PRIMARY KEY,
    admin     TEXT NOT NULL REFERENCES admins (name) ON DELETE CASCADE,
    role      TEXT NOT NULL,
    created   BIGINT NOT NULL,
    last_used BIGINT
);
CREATE INDEX api_tokens_admin ON api_tokens (admin);

-- Web sessions, server side (OWASP ASVS 3.3): the cookie holds a random id, the table its
-- SHA-256, so a session can be revoked by deleting its row. csrf is the synchronizer token
-- every form posts back. created and last_seen give the absolute and the idle timeout.
CREATE TABLE web_sessions (
    digest    TEXT PRIMARY KEY,
    admin     TEXT NOT NULL REFERENCES admins (name) ON DELETE CASCADE,
    csrf      TEXT NOT NULL,
    address   TEXT NOT NULL,
    created   BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX web_sessions_admin ON web_sessions (admin);

-- Failed sign-ins, for throttling by client address and by user name (ASVS 2.2.1).
-- kind: "address" | "user"; rows older than the throttling window are deleted as they go.
CREATE TABLE login_failures (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    at   BIGINT NOT NULL
);
CREATE INDEX login_failures_name ON login_failures (kind, name, at);

CREATE INDEX audit_log_at ON audit_log (at);
