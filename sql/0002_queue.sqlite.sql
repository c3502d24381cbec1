-- 0002, SQLite: AUTOINCREMENT so ids of deleted rows are never reused (an admin's
-- `queue retry ID` must not hit a newer item).
CREATE TABLE queue (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    payload       BYTEA NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending',
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  BIGINT NOT NULL,
    claimed_until BIGINT,
    last_error    TEXT,
    created       BIGINT NOT NULL
);
