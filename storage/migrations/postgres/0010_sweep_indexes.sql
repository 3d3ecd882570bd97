-- The reconcile sweep reads only what is due, however many orders there are (issue 26).
-- Confirming an order that has no payment id yet (Redoya before the return) or whose status
-- lives in its callbacks (KTWidget) reads that order's stored events: by order, not the inbox.
CREATE INDEX inbound_by_order ON inbound_events (order_id, id);
-- The in-chat ledger's paid orders of one provider in its window, already in paid order.
CREATE INDEX orders_paid_by_provider ON orders (provider, paid_at) WHERE paid_at IS NOT NULL;
