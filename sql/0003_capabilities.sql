-- 0003: SMIMECapabilities harvested from signed inbound mail (RFC 8551 2.5.2), per signer
-- certificate. Shared by SQLite and PostgreSQL.
-- names: the announced algorithms, space-separated, most preferred first, as
-- smimegate.smime.verify names them (aes256-gcm, rsaes-oaep ...; dotted OIDs for unknown ones).
-- signing_time: the signingTime of the message they came from (seconds, UTC; never later than
-- its receipt): a message signed later (or at the same time) replaces them, an older one
-- does not.
CREATE TABLE certificate_capabilities (
    fingerprint  TEXT PRIMARY KEY REFERENCES certificates (fingerprint) ON DELETE CASCADE,
    names        TEXT NOT NULL,
    signing_time BIGINT NOT NULL,
    updated      BIGINT NOT NULL
);
