-- The sweep finishes refunds left pending by a crash or an outage; it finds them by age.
CREATE INDEX refunds_pending ON refunds (updated_at) WHERE state = 'pending';
