-- A subscription whose receiver answered 410 Gone is disabled until a policy-admin enables it
-- again: nothing is sent to it meanwhile, and it gets no new deliveries.
ALTER TABLE webhooks ADD COLUMN state TEXT NOT NULL DEFAULT 'enabled';
ALTER TABLE webhooks ADD COLUMN disabled_at BIGINT;
ALTER TABLE webhooks ADD COLUMN disabled_reason TEXT;

-- A delivery need not come from an audit event (a checkpoint of the audit log is none), so a
-- delivery is kept unique by `source`, what it tells of (`event:<seq>`, `checkpoint:<seq>`),
-- instead of by its event. `event_seq` stays the audit sequence number it is about, which
-- orders the deliveries. SQLite changes a table's constraints only by building it anew; on
-- PostgreSQL the new table's constraints keep the names they got under its first name, which
-- nothing refers to.
CREATE TABLE webhook_deliveries_next (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
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
    UNIQUE (webhook_id, source)
);
INSERT INTO webhook_deliveries_next (id, webhook_id, source, event_seq, event_type, ordering_key,
    payload, state, attempts, created_at, next_attempt_at, give_up_at, lease_until, claimed_by,
    last_status, last_error, delivered_at)
SELECT id, webhook_id, 'event:' || event_seq, event_seq, event_type, ordering_key, payload, state,
    attempts, created_at, next_attempt_at, give_up_at, lease_until, claimed_by, last_status,
    last_error, delivered_at
FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_next RENAME TO webhook_deliveries;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, state, event_seq);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, ordering_key, state, event_seq);
