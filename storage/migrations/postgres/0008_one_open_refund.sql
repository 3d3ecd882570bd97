-- At most one refund of an order in flight: a second admin question pressed while the first
-- refund is still pending (or at the same moment) cannot make a second request for the money.
-- Rejected, unknown and done refunds do not count: a rejected refund may be tried again.
CREATE UNIQUE INDEX refunds_one_open ON refunds (order_id) WHERE state = 'pending';
