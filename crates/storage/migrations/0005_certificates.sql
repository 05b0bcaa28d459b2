-- Chip encoding: the PUK kept encrypted with the card, and every certificate issued for a card.

ALTER TABLE cards ADD COLUMN puk_sealed TEXT;

CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    card_id TEXT NOT NULL REFERENCES cards (id),
    profile TEXT NOT NULL,
    kind TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    holder_id TEXT REFERENCES persons (id),
    der TEXT NOT NULL,
    status TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX certificates_card_status ON certificates (card_id, status);
CREATE INDEX certificates_status_revoked ON certificates (status, revoked_at);
