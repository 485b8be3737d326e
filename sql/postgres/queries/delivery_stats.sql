-- Webhook deliveries per minute, PostgreSQL (see sql/sqlite/queries/delivery_stats.sql).

-- name: add_delivery_stats
-- :rows is a JSON array of [epoch minute, provider, outcome, latency_le_ms, deliveries,
-- latency_ms_sum], each key once.  Added to the rows already there; inserted in key order, so
-- two replicas writing the same minutes lock its rows in the same order (no deadlock).
INSERT INTO delivery_stats AS s
       (minute, provider, outcome, latency_le_ms, deliveries, latency_ms_sum)
SELECT to_timestamp(CAST(r ->> 0 AS bigint) * 60), r ->> 1, r ->> 2, CAST(r ->> 3 AS integer),
       CAST(r ->> 4 AS bigint), CAST(r ->> 5 AS double precision)
FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
ORDER BY 1, 2, 3, 4
ON CONFLICT (minute, provider, outcome, latency_le_ms) DO UPDATE
SET deliveries = s.deliveries + excluded.deliveries,
    latency_ms_sum = s.latency_ms_sum + excluded.latency_ms_sum;

-- name: add_message_copies
-- :copies is a JSON array of [message id, copies], each id once, added in id order.
INSERT INTO message_copies AS c (message_id, copies)
SELECT CAST(r ->> 0 AS bigint), CAST(r ->> 1 AS bigint)
FROM jsonb_array_elements(CAST(:copies AS jsonb)) AS r
ORDER BY 1
ON CONFLICT (message_id) DO UPDATE SET copies = c.copies + excluded.copies;

-- name: chart_deliveries
-- Deliveries by bucket of :bucket_s seconds since :since (named by its start in epoch seconds),
-- outcome and latency bucket; :provider NULL for every provider.
SELECT CAST(floor(extract(epoch FROM minute) / CAST(:bucket_s AS integer)) AS bigint)
           * CAST(:bucket_s AS integer) AS bucket,
       outcome, latency_le_ms, CAST(sum(deliveries) AS bigint) AS deliveries,
       sum(latency_ms_sum) AS latency_ms_sum
FROM delivery_stats
WHERE minute >= :since AND (CAST(:provider AS TEXT) IS NULL OR provider = :provider)
GROUP BY 1, outcome, latency_le_ms;
