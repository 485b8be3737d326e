-- Webhook deliveries per minute (gateway/delivery_stats.py).  The upsert and the charts' time
-- buckets are written each dialect's way (sql/<dialect>/queries/delivery_stats.sql).

-- name: purge_delivery_stats
DELETE FROM delivery_stats WHERE minute < now_plus(-CAST(:keep_s AS double precision));
