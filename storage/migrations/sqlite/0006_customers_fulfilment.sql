-- Who bought (as Telegram names them), where it goes (for products that need delivery), and
-- the merchant's fulfilment beside the payment state: new -> shipped -> delivered | cancelled.
ALTER TABLE orders ADD COLUMN buyer_name TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN buyer_username TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN delivery_name TEXT;
ALTER TABLE orders ADD COLUMN delivery_phone TEXT;
ALTER TABLE orders ADD COLUMN delivery_address TEXT;
ALTER TABLE orders ADD COLUMN delivery_comment TEXT;
ALTER TABLE orders ADD COLUMN fulfilment TEXT NOT NULL DEFAULT 'new';
ALTER TABLE orders ADD COLUMN tracking TEXT NOT NULL DEFAULT '';
-- names, @username, phone digits, casefolded in Python (both dialects' lower() differ on
-- non-ASCII letters), for the staff's /find
ALTER TABLE orders ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
-- the staff's lists: by state, by provider, by time (newest first)
CREATE INDEX orders_by_state ON orders (state, id);
CREATE INDEX orders_by_provider ON orders (provider, id);
CREATE INDEX orders_by_created ON orders (created_at, id);
