-- 0007: what the web admin shows of the running gateway, and its second factor (issue 12).
-- Shared by SQLite and PostgreSQL; message_log differs per dialect (its id column) and is
-- created by 0007_operations.sqlite.sql / .postgresql.sql first.

-- message_log: one row per line of the milter's message log (CONTRACT.md "Log line"), written
-- by the workers in batches (smimegate.milter.stats) and pruned by age and count. direction
-- and result are the line's fields ('' when it has none); sender and recipients the bare
-- addresses, lower case, recipients space-separated, so the Logs page can filter on them.
CREATE INDEX message_log_at ON message_log (at);
CREATE INDEX message_log_queue_id ON message_log (queue_id);

-- Messages per hour (hour: seconds since the epoch, a multiple of 3600, UTC), direction and
-- result. Workers add to these rows (INSERT ... ON CONFLICT DO UPDATE SET messages = messages
-- + excluded.messages), so the rows are sums over every worker of every node sharing the store.
-- duration_us: the summed processing time of those messages in microseconds (the latency
-- histogram's _sum).
CREATE TABLE message_counts (
    hour        BIGINT NOT NULL,
    direction   TEXT NOT NULL,
    result      TEXT NOT NULL,
    messages    BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    PRIMARY KEY (hour, direction, result)
);

-- The latency histogram per hour and direction: messages whose processing took at most le
-- seconds and more than the next lower bound (counts per bucket, not cumulative, so rows of
-- different workers add up; le is the bound as Prometheus writes it, "+Inf" the last).
CREATE TABLE message_latency (
    hour      BIGINT NOT NULL,
    direction TEXT NOT NULL,
    le        TEXT NOT NULL,
    messages  BIGINT NOT NULL,
    PRIMARY KEY (hour, direction, le)
);

-- A heartbeat per milter worker: written with every flush of the counters. node: the host
-- name; worker: its index ([milter] workers); every_s: its flush interval, so a reader can
-- tell a worker that stopped writing (not seen for 3 intervals) from one that is idle.
CREATE TABLE milter_workers (
    node    TEXT NOT NULL,
    worker  INTEGER NOT NULL,
    pid     INTEGER NOT NULL,
    started BIGINT NOT NULL,
    seen    BIGINT NOT NULL,
    every_s INTEGER NOT NULL,
    PRIMARY KEY (node, worker)
);

-- The last outcome of each CRL download URL (the milter's periodic download and `crl fetch`):
-- the dashboard and /metrics show URLs whose last attempt failed.
CREATE TABLE crl_downloads (
    url          TEXT PRIMARY KEY,
    last_attempt BIGINT NOT NULL,
    last_success BIGINT,
    failures     INTEGER NOT NULL,
    last_error   TEXT
);

-- TOTP second factor (RFC 6238) of an admin account: the secret sealed with the master key
-- (AES-256-GCM, the account name as associated data, like private keys), the master key's id,
-- and the last time step accepted, so that a code is never accepted twice (RFC 6238 5.2).
ALTER TABLE admins ADD COLUMN totp_sealed BYTEA;
ALTER TABLE admins ADD COLUMN totp_key_id TEXT;
ALTER TABLE admins ADD COLUMN totp_last BIGINT;

-- When the session's admin last gave the password (and code) again: key exports and CA
-- creation need it within [web] reauth_window seconds (OWASP ASVS 4.0 3.7.1).
ALTER TABLE web_sessions ADD COLUMN reauth BIGINT;
