-- The due messages are read oldest first, a few at a time: the rows still to send in id order,
-- so a read stops after the first few instead of walking every message ever sent (SQLite
-- without statistics) or sorting every one still queued (a backlog of thousands).
CREATE INDEX outbox_pending_order ON outbox (id) WHERE sent_at IS NULL AND failed_at IS NULL;
