-- 0001: policy rows, certificates, keys, roots, CRLs, CAs. Shared by SQLite and PostgreSQL.

-- Global properties (scope "global"); names and values are validated by smimegate.policy.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Domains: lower-case names, a leading "*." marks a wildcard rule.
CREATE TABLE domains (
    name    TEXT PRIMARY KEY,
    created BIGINT NOT NULL
);

CREATE TABLE domain_properties (
    domain TEXT NOT NULL REFERENCES domains (name) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (domain, name)
);

-- Users: lower-case address; domain is the part after "@", for listing by domain.
CREATE TABLE users (
    email   TEXT PRIMARY KEY,
    domain  TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created BIGINT NOT NULL
);
CREATE INDEX users_domain ON users (domain);

CREATE TABLE user_properties (
    email TEXT NOT NULL REFERENCES users (email) ON DELETE CASCADE,
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (email, name)
);

-- Certificates, keyed by the SHA-256 fingerprint (lower-case hex) of the DER.
-- issuer/subject are RFC 4514 strings; serial is upper-case hex without leading zeros;
-- ski is lower-case hex of the subjectKeyIdentifier extension, NULL when absent.
-- blocked: the administrator distrusts this certificate whatever its path says.
CREATE TABLE certificates (
    fingerprint TEXT PRIMARY KEY,
    der         BYTEA NOT NULL,
    subject     TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    serial      TEXT NOT NULL,
    ski         TEXT,
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    is_ca       BOOLEAN NOT NULL,
    source      TEXT NOT NULL,
    blocked     BOOLEAN NOT NULL DEFAULT FALSE,
    created     BIGINT NOT NULL
);
CREATE INDEX certificates_issuer_serial ON certificates (issuer, serial);
CREATE INDEX certificates_ski ON certificates (ski);

-- Addresses of a certificate (SAN rfc822Name and subject emailAddress), lower-case.
CREATE TABLE certificate_emails (
    email       TEXT NOT NULL,
    fingerprint TEXT NOT NULL REFERENCES certificates (fingerprint) ON DELETE CASCADE,
    PRIMARY KEY (email, fingerprint)
);
CREATE INDEX certificate_emails_fingerprint ON certificate_emails (fingerprint);

-- Private keys: PKCS#8 DER sealed with AES-256-GCM under the master key (smimegate.store.keys);
-- key_id names the master key that sealed it.
CREATE TABLE private_keys (
    fingerprint TEXT PRIMARY KEY REFERENCES certificates (fingerprint) ON DELETE CASCADE,
    key_id      TEXT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created     BIGINT NOT NULL
);
CREATE INDEX private_keys_key_id ON private_keys (key_id);

-- Trust anchors: certificates the administrator trusts as roots.
CREATE TABLE trusted_roots (
    fingerprint TEXT PRIMARY KEY REFERENCES certificates (fingerprint) ON DELETE CASCADE,
    added       BIGINT NOT NULL
);

-- CRLs, keyed by the SHA-256 fingerprint of the DER. authority_key_id is lower-case hex.
-- crl_number is decimal text: it may have up to 20 octets (RFC 5280 5.2.3), more than BIGINT.
CREATE TABLE crls (
    fingerprint      TEXT PRIMARY KEY,
    issuer           TEXT NOT NULL,
    authority_key_id TEXT,
    der              BYTEA NOT NULL,
    this_update      BIGINT NOT NULL,
    next_update      BIGINT,
    crl_number       TEXT,
    source           TEXT,
    added            BIGINT NOT NULL
);
CREATE INDEX crls_issuer ON crls (issuer);

-- The built-in CAs: a root and the intermediate that issues end-user certificates.
CREATE TABLE cas (
    name                     TEXT PRIMARY KEY,
    root_fingerprint         TEXT NOT NULL REFERENCES certificates (fingerprint),
    intermediate_fingerprint TEXT NOT NULL REFERENCES certificates (fingerprint),
    is_default               BOOLEAN NOT NULL DEFAULT FALSE,
    next_crl_number          BIGINT NOT NULL DEFAULT 1,
    created                  BIGINT NOT NULL
);
-- At most one default CA.
CREATE UNIQUE INDEX cas_one_default ON cas (is_default) WHERE is_default;

-- Certificates a built-in CA has revoked, for its next CRL. serial as in certificates.
CREATE TABLE revocations (
    ca         TEXT NOT NULL REFERENCES cas (name) ON DELETE CASCADE,
    serial     TEXT NOT NULL,
    reason     TEXT,
    revoked_at BIGINT NOT NULL,
    PRIMARY KEY (ca, serial)
);
