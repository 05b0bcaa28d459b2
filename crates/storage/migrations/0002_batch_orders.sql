-- Batch orders (Issue multiple temporary cards), their items and every production attempt.

CREATE TABLE batch_orders (
    id TEXT PRIMARY KEY,
    process TEXT NOT NULL,
    state TEXT NOT NULL,
    operator_id TEXT NOT NULL REFERENCES operators (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX batch_orders_state_id ON batch_orders (state, id);

CREATE TABLE batch_order_items (
    order_id TEXT NOT NULL REFERENCES batch_orders (id),
    card_id TEXT NOT NULL REFERENCES cards (id),
    position BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    error TEXT,
    station TEXT,
    queued_at BIGINT,
    claimed_at BIGINT,
    PRIMARY KEY (order_id, card_id)
);
CREATE INDEX batch_order_items_queue ON batch_order_items (status, queued_at, position);
CREATE INDEX batch_order_items_card ON batch_order_items (card_id);
CREATE INDEX batch_order_items_order_status ON batch_order_items (order_id, status);

CREATE TABLE production_attempts (
    order_id TEXT NOT NULL REFERENCES batch_orders (id),
    card_id TEXT NOT NULL REFERENCES cards (id),
    attempt BIGINT NOT NULL,
    station TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (order_id, card_id, attempt)
);
