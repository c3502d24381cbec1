-- 0004, SQLite: the audit log (every change, who, from where). AUTOINCREMENT so ids are never
-- reused: an entry's id says where it stands in the log.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    role    TEXT NOT NULL,
    via     TEXT NOT NULL,
    address TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
