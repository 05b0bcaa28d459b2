-- Telling people and systems. The audit log is the outbox: every event is written in the
-- transaction of its change, and a fan-out step turns events after `notify_cursor.seq` into
-- webhook deliveries and mails, in one transaction that also moves the cursor. Events from before
-- this migration are not announced.

CREATE TABLE notify_cursor (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO notify_cursor (id, seq) SELECT 1, seq FROM audit_head WHERE id = 1;

-- A subscription of a URL to event types (a JSON array of names). Its signing secret is sealed
-- under the master key, as PUKs are. It hears of events after `since_seq`, the audit log's head
-- when it was made.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    since_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

-- One event for one subscription. `ordering_key` (the card, or the batch order) keeps a card's
-- deliveries in order: a delivery waits while an earlier one with the same key is pending.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    give_up_at BIGINT NOT NULL,
    lease_until BIGINT,
    claimed_by TEXT,
    last_status BIGINT,
    last_error TEXT,
    delivered_at BIGINT,
    UNIQUE (webhook_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, state, event_seq);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, ordering_key, state, event_seq);

-- A mail to send, rendered when it was decided. `dedupe_key` names the event it tells of
-- (`assigned:<seq>`, `expired:<seq>`, `reminder:<card>:<valid until>`), so each is sent once.
CREATE TABLE mails (
    id TEXT PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    card_id TEXT,
    recipients TEXT NOT NULL,
    copy_to TEXT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    give_up_at BIGINT NOT NULL,
    lease_until BIGINT,
    claimed_by TEXT,
    last_error TEXT,
    sent_at BIGINT
);
CREATE INDEX mails_due ON mails (state, next_attempt_at);

-- Message texts an admin changed; the others are the built-in ones.
CREATE TABLE mail_templates (
    kind TEXT NOT NULL,
    language TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (kind, language)
);
