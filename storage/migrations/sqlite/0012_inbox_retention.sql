-- The inbox keeps an event for INBOX_KEEP_DAYS after it arrived; once it is processed too, the
-- sweep forgets it, oldest first, a batch a pass: the processed events in the order they arrived,
-- so a pass reads only what it deletes (an index that grows at its end, as the events arrive).
CREATE INDEX inbound_settled ON inbound_events (received_at) WHERE processed_at IS NOT NULL;
