-- Orders and everything that hangs off them. Amounts are integer minor units; times are
-- ISO-8601 UTC text with microseconds (same width, so they sort and compare as text).

CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    provider TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    locale TEXT NOT NULL DEFAULT 'en',
    description TEXT NOT NULL DEFAULT '',
    provider_payment_id TEXT,
    pay_url TEXT,
    expires_at TEXT,
    paid_at TEXT,
    paid_amount INTEGER,
    refunded_amount INTEGER NOT NULL DEFAULT 0,
    next_check_at TEXT,
    check_attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (provider, provider_payment_id)
);
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC);
CREATE INDEX orders_due ON orders (state, next_check_at);

CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders (id),
    position INTEGER NOT NULL,
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_amount INTEGER NOT NULL,
    PRIMARY KEY (order_id, position)
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX audit_by_order ON audit (order_id, id);

CREATE TABLE inbound_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    event_key TEXT NOT NULL,
    order_id INTEGER REFERENCES orders (id),
    body BLOB NOT NULL,
    received_at TEXT NOT NULL,
    processed_at TEXT,
    UNIQUE (provider, event_key)
);
CREATE INDEX inbound_unprocessed ON inbound_events (processed_at, id);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER REFERENCES orders (id),
    kind TEXT NOT NULL,
    chat_id INTEGER NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (order_id, kind)
);
CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);

CREATE TABLE refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    actor TEXT NOT NULL,
    provider_code TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX refunds_by_order ON refunds (order_id);

CREATE TABLE saved_cards (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    provider TEXT NOT NULL,
    card_id TEXT NOT NULL,
    card_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (user_id, provider, card_id)
);

CREATE TABLE user_prefs (
    user_id INTEGER PRIMARY KEY,
    locale TEXT NOT NULL
);
