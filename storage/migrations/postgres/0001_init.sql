-- Orders and everything that hangs off them; the same schema as sqlite/0001 in PostgreSQL
-- types. Amounts are integer minor units (bigint); times are timestamptz.

CREATE TABLE orders (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    provider TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    locale TEXT NOT NULL DEFAULT 'en',
    description TEXT NOT NULL DEFAULT '',
    provider_payment_id TEXT,
    pay_url TEXT,
    expires_at TIMESTAMPTZ,
    paid_at TIMESTAMPTZ,
    paid_amount BIGINT,
    refunded_amount BIGINT NOT NULL DEFAULT 0,
    next_check_at TIMESTAMPTZ,
    check_attempts INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (provider, provider_payment_id)
);
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC);
CREATE INDEX orders_due ON orders (next_check_at) WHERE state = 'awaiting_payment';

CREATE TABLE order_items (
    order_id BIGINT NOT NULL REFERENCES orders (id),
    position INTEGER NOT NULL,
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_amount BIGINT NOT NULL,
    PRIMARY KEY (order_id, position)
);

CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id BIGINT NOT NULL REFERENCES orders (id),
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_by_order ON audit (order_id, id);

CREATE TABLE inbound_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider TEXT NOT NULL,
    event_key TEXT NOT NULL,
    order_id BIGINT REFERENCES orders (id),
    body BYTEA NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    processed_at TIMESTAMPTZ,
    UNIQUE (provider, event_key)
);
CREATE INDEX inbound_unprocessed ON inbound_events (id) WHERE processed_at IS NULL;

CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id BIGINT REFERENCES orders (id),
    kind TEXT NOT NULL,
    chat_id BIGINT NOT NULL,
    payload JSONB NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (order_id, kind)
);
CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);

CREATE TABLE refunds (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id BIGINT NOT NULL REFERENCES orders (id),
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    actor TEXT NOT NULL,
    provider_code TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX refunds_by_order ON refunds (order_id);

CREATE TABLE saved_cards (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL,
    provider TEXT NOT NULL,
    card_id TEXT NOT NULL,
    card_name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, provider, card_id)
);

CREATE TABLE user_prefs (
    user_id BIGINT PRIMARY KEY,
    locale TEXT NOT NULL
);
