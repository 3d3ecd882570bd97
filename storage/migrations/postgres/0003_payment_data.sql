-- The adapter's opaque data about a payment (the ERP's invoice number and bank, Payture's
-- wallet flag, a Stars user id), handed back to it for status and refunds. JSON text.
ALTER TABLE orders ADD COLUMN payment_data TEXT NOT NULL DEFAULT '{}';
