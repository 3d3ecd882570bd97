-- A payment we did not expect (after the order expired or was cancelled, or a second payment
-- for an order already paid) is kept here, once per provider payment, until an admin refunds it.
CREATE TABLE unexpected_payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    provider TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    payment_data TEXT NOT NULL DEFAULT '{}',
    amount INTEGER,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (provider, payment_id)
);
CREATE INDEX unexpected_by_order ON unexpected_payments (order_id);

-- The chat message that shows the order with its Pay button, edited once the order is paid.
ALTER TABLE orders ADD COLUMN message_id INTEGER;
