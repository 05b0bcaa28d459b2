-- Cardwright schema, version 1. Portable SQL: it runs unchanged on SQLite and PostgreSQL.
-- Times are microseconds since the Unix epoch (BIGINT); ids are UUID strings (TEXT).

CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE login_throttle (
    username TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    locked_until BIGINT
);

CREATE TABLE persons (
    id TEXT PRIMARY KEY,
    employee_number TEXT NOT NULL UNIQUE,
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    email TEXT,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE card_templates (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    serial_prefix TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    next_serial BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE cards (
    id TEXT PRIMARY KEY,
    serial TEXT NOT NULL UNIQUE,
    template_id TEXT NOT NULL REFERENCES card_templates (id),
    state TEXT NOT NULL,
    holder_id TEXT REFERENCES persons (id),
    valid_until BIGINT,
    encoded BIGINT NOT NULL,
    batch_order_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX cards_state_id ON cards (state, id);
CREATE INDEX cards_template_state_id ON cards (template_id, state, id);
CREATE INDEX cards_holder_state ON cards (holder_id, state);
CREATE INDEX cards_state_valid_until ON cards (state, valid_until);

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    operator TEXT NOT NULL,
    process TEXT NOT NULL,
    card_id TEXT,
    order_id TEXT,
    old_state TEXT,
    new_state TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_card ON audit_events (card_id, seq);
CREATE INDEX audit_events_order ON audit_events (order_id, seq);

-- The head of the audit hash chain: one row, updated with every appended event. Updating it first
-- serialises writers, so sequence numbers have no gaps and every event names its true predecessor.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
