-- (order_id, kind) never made a row that belongs to no order unique: both databases take
-- NULL as distinct from every other NULL. The daily report is such a row and must go out once
-- per day, whichever replica queues it and however often it restarts: its key carries the day,
-- and this index holds it to one. (Other rows of no order keep their old rule.)
CREATE UNIQUE INDEX outbox_daily_report_once ON outbox (kind)
    WHERE order_id IS NULL AND substr(kind, 1, 22) = 'merchant_daily_report:';

-- The figures' windows (/today, /stats, the daily report, the chart) read sales by the time they
-- were paid and refunds by the time they were done.
CREATE INDEX orders_by_paid ON orders (paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX refunds_done ON refunds (updated_at) WHERE state = 'done';
