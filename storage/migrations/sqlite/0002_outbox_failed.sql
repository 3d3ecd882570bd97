-- A message Telegram will never take (bot blocked, chat gone, retries spent) is marked failed,
-- not sent, so the record says what happened and admins can count it.
ALTER TABLE outbox ADD COLUMN failed_at TEXT;
DROP INDEX outbox_due;
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
