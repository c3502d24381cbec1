-- 0002: the delivery queue (PFX mail, SMS). The table differs per dialect (its id column) and
-- is created by 0002_queue.sqlite.sql / 0002_queue.postgresql.sql, which run first.
CREATE INDEX queue_due ON queue (status, next_attempt);
