-- Persons get a photo: one JPEG per person, re-encoded by Cardwright from what the directory
-- gave or an operator uploaded (base64, as every other binary value here). `source` says
-- which ('directory' or 'upload'); `source_sha256` is the hash of the bytes as received, so a
-- sync sees whether the directory's photo changed without decoding it again.
CREATE TABLE person_photos (
    person_id TEXT PRIMARY KEY REFERENCES persons (id),
    jpeg TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    source TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Operators who sign in through the organisation's OpenID provider: the issuer and subject
-- of their ID token. Such an operator has no Cardwright password.
ALTER TABLE operators ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX operators_oidc_subject ON operators (oidc_subject);
