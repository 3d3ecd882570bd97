-- (order_id, kind) never made a row that belongs to no order unique: both databases take
-- NULL as distinct from every other NULL. The daily report is such a row and must go out once
-- per day, whichever replica queues it and however often it restarts: its key carries the day,
-- and this index holds it to one. (Other rows of no order keep their old rule.)
CREATE UNIQUE INDEX outbox_daily_report_once ON outbox (kind)
    WHERE order_id IS NULL AND substr(kind, 1, 22) = 'merchant_daily_report:';
