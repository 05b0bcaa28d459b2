-- The installation's keys, found by every server: the certificate authority's (one row per CA
-- certificate, the newest current), the master keys that seal PUKs (versioned, for rotation) and
-- the audit log's key. With the key store "database" each row holds its key sealed under the
-- key-encryption key every server is given; with "pkcs11" the key stays on the token and the row
-- names it by its label. A CA row also carries its certificate.

CREATE TABLE pki_keys (
    name TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    version BIGINT NOT NULL,
    store TEXT NOT NULL,
    sealed TEXT,
    token_label TEXT,
    certificate TEXT,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX pki_keys_purpose_state ON pki_keys (purpose, state);
