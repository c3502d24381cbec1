-- 0008: change counters shared by every process that uses the store.
-- generations: one row per kind of data that readers cache. 'policy' goes up by one in the
-- transaction of every write to settings, domains, users and their properties
-- (smimegate.store.sql._policy_write, before the write itself, so concurrent writers queue on
-- this row in one order and never deadlock). A milter worker caches policy rows for minutes
-- at most; it reads this row about once a second (smimegate.milter.services POLICY_CHECK) and
-- drops its cache when the value moved, so a change made with the CLI or the web admin, on
-- this node or another, is used within about a second, not after the cache's expiry: mail
-- that a new "mandatory" must encrypt is not sent in clear meanwhile.
CREATE TABLE generations (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO generations (name, value) VALUES ('policy', 0);
