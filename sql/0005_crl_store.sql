-- 0005: the CRL store keeps every well-formed CRL (issue 10). Shared by SQLite and PostgreSQL.
-- verified: whether a CA certificate of the store whose subject is the CRL's issuer signed it
-- (RFC 5280 6.3.3 (f)); NULL while no CA of that name is known (checked when a certificate
-- path needs it or its issuer arrives, then the result is kept).
-- scope: '' for a complete CRL without issuingDistributionPoint; otherwise what tells apart
-- CRLs of one issuer and key that stand side by side (RFC 5280 5.2.5 partitions and indirect
-- CRLs: a hash of the extension; 5.2.4 delta CRLs: prefixed "delta"). Only an older CRL of
-- the same issuer, key and scope is ever replaced.
-- delta_base: a delta CRL's BaseCRLNumber (decimal text, as crl_number); NULL for a complete
-- CRL. entries: how many revoked certificates it lists (NULL for rows stored before 0005).
ALTER TABLE crls ADD COLUMN verified BOOLEAN;
ALTER TABLE crls ADD COLUMN scope TEXT NOT NULL DEFAULT '';
ALTER TABLE crls ADD COLUMN delta_base TEXT;
ALTER TABLE crls ADD COLUMN entries BIGINT;
-- Rows stored before 0005 were accepted only when a CA of the store had signed them.
UPDATE crls SET verified = TRUE;
CREATE INDEX crls_group ON crls (issuer, authority_key_id, scope);
