-- The console's charts, PostgreSQL (the same statements as sql/sqlite/queries/console.sql, but
-- for how a time falls into its bucket): each row is one bucket of :bucket_s seconds since
-- :since, named by its start in epoch seconds.

-- name: chart_ai_calls
SELECT CAST(floor(extract(epoch FROM created_at) / CAST(:bucket_s AS integer)) AS bigint)
           * CAST(:bucket_s AS integer) AS bucket,
       source, count(*) AS calls,
       sum(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)) AS tokens,
       sum(latency_ms) AS latency_ms
FROM ai_interactions
WHERE created_at >= :since
GROUP BY 1, source;

-- name: chart_dead_jobs
SELECT CAST(floor(extract(epoch FROM finished_at) / CAST(:bucket_s AS integer)) AS bigint)
           * CAST(:bucket_s AS integer) AS bucket,
       type, count(*) AS jobs
FROM background_jobs
WHERE status = 'dead' AND finished_at >= :since
GROUP BY 1, type;

-- name: chart_queue_depth
-- A bucket of several minutes shows its deepest sample.
SELECT CAST(floor(extract(epoch FROM minute) / CAST(:bucket_s AS integer)) AS bigint)
           * CAST(:bucket_s AS integer) AS bucket,
       type, max(pending + running) AS depth
FROM job_queue_samples
WHERE minute >= :since
GROUP BY 1, type;

-- name: chart_alerts
-- Alerts by the bucket they were raised in, by what became of them.
SELECT CAST(floor(extract(epoch FROM created_at) / CAST(:bucket_s AS integer)) AS bigint)
           * CAST(:bucket_s AS integer) AS bucket,
       sum(CASE WHEN outcome = 'sent' THEN 1 ELSE 0 END) AS sent,
       sum(suppressed) AS suppressed,
       sum(CASE WHEN outcome = 'unknown' THEN 1 ELSE 0 END) AS unknown
FROM alerts
WHERE created_at >= :since
GROUP BY 1;

-- name: sample_queue_depth
-- This minute's depth by type (the counts of queue_depth), unless a replica sampled it already.
INSERT INTO job_queue_samples (minute, type, pending, running)
SELECT date_trunc('minute', now()), type, count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'running')
FROM background_jobs
WHERE status = 'pending' OR status = 'running'
GROUP BY type
ON CONFLICT (minute, type) DO NOTHING;
