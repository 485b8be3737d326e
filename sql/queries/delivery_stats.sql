-- Webhook deliveries per minute (gateway/delivery_stats.py).  The upsert and the charts' time
-- buckets are written each dialect's way (sql/<dialect>/queries/delivery_stats.sql).

-- name: purge_delivery_stats
DELETE FROM delivery_stats WHERE minute < now_plus(-CAST(:keep_s AS double precision));

-- name: delivery_totals
-- Deliveries by provider and outcome since :since (the overview's table under the charts).
SELECT provider, outcome, sum(deliveries) AS deliveries
FROM delivery_stats
WHERE minute >= :since
GROUP BY provider, outcome;
