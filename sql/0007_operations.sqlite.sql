-- 0007, SQLite: the milter's message log lines (see 0007_operations.sql), AUTOINCREMENT so an
-- id is never reused: the Logs page's live tail asks for the lines after the last id it saw.
CREATE TABLE message_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT NOT NULL,
    node       TEXT NOT NULL,
    queue_id   TEXT NOT NULL,
    direction  TEXT NOT NULL,
    result     TEXT NOT NULL,
    sender     TEXT NOT NULL,
    recipients TEXT NOT NULL,
    line       TEXT NOT NULL
);
