-- Webhook deliveries per minute, SQLite (see sql/postgres/queries/delivery_stats.sql): :rows
-- expanded with json_each, a minute stored as UTC text.

-- name: add_delivery_stats
-- (The WHERE lets SQLite read ON CONFLICT as the upsert's, not a join's.)
INSERT INTO delivery_stats (minute, provider, outcome, latency_le_ms, deliveries, latency_ms_sum)
SELECT strftime('%Y-%m-%d %H:%M:%S.000000', json_extract(value, '$[0]') * 60, 'unixepoch'),
       json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
       json_extract(value, '$[4]'), json_extract(value, '$[5]')
FROM json_each(:rows)
WHERE true
ON CONFLICT (minute, provider, outcome, latency_le_ms) DO UPDATE
SET deliveries = deliveries + excluded.deliveries,
    latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum;

-- name: add_message_copies
INSERT INTO message_copies (message_id, copies)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
FROM json_each(:copies)
WHERE true
ON CONFLICT (message_id) DO UPDATE SET copies = copies + excluded.copies;

-- name: chart_deliveries
SELECT CAST(strftime('%s', minute) AS INTEGER) / :bucket_s * :bucket_s AS bucket,
       outcome, latency_le_ms, sum(deliveries) AS deliveries,
       sum(latency_ms_sum) AS latency_ms_sum
FROM delivery_stats
WHERE minute >= :since AND (:provider IS NULL OR provider = :provider)
GROUP BY 1, outcome, latency_le_ms;
