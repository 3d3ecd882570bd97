-- The merchant chat's paid-order message of an order, so it can be edited when the order
-- moves elsewhere (a step from /order, a refund, a cancel, a review outcome).
ALTER TABLE orders ADD COLUMN merchant_message_id BIGINT;
