-- The reconcile sweep reads only what is due, however many orders there are (issue 26).
-- Confirming an order that has no payment id yet (Redoya before the return) or whose status
-- lives in its callbacks (KTWidget) reads that order's stored events: by order, not the inbox.
CREATE INDEX inbound_by_order ON inbound_events (order_id, id);
-- The inbox replay reads the events not processed yet, in order: an index of those alone (as
-- PostgreSQL's since 0001), so the plan never depends on what SQLite guesses of processed_at.
DROP INDEX inbound_unprocessed;
CREATE INDEX inbound_unprocessed ON inbound_events (id) WHERE processed_at IS NULL;
-- The in-chat ledger's paid orders of one provider in its window, already in paid order.
CREATE INDEX orders_paid_by_provider ON orders (provider, paid_at) WHERE paid_at IS NOT NULL;
