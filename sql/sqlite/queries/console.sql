-- The console's charts, SQLite (see sql/postgres/queries/console.sql): a stored time is UTC text,
-- strftime('%s', …) its epoch second.

-- name: chart_ai_calls
SELECT CAST(strftime('%s', created_at) AS INTEGER) / :bucket_s * :bucket_s AS bucket,
       source, count(*) AS calls,
       sum(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)) AS tokens,
       sum(latency_ms) AS latency_ms
FROM ai_interactions
WHERE created_at >= :since
GROUP BY 1, source;

-- name: chart_dead_jobs
SELECT CAST(strftime('%s', finished_at) AS INTEGER) / :bucket_s * :bucket_s AS bucket,
       type, count(*) AS jobs
FROM background_jobs
WHERE status = 'dead' AND finished_at >= :since
GROUP BY 1, type;

-- name: chart_queue_depth
SELECT CAST(strftime('%s', minute) AS INTEGER) / :bucket_s * :bucket_s AS bucket,
       type, max(pending + running) AS depth
FROM job_queue_samples
WHERE minute >= :since
GROUP BY 1, type;

-- name: chart_alerts
SELECT CAST(strftime('%s', created_at) AS INTEGER) / :bucket_s * :bucket_s AS bucket,
       sum(CASE WHEN outcome = 'sent' THEN 1 ELSE 0 END) AS sent,
       sum(suppressed) AS suppressed,
       sum(CASE WHEN outcome = 'unknown' THEN 1 ELSE 0 END) AS unknown
FROM alerts
WHERE created_at >= :since
GROUP BY 1;

-- name: sample_queue_depth
INSERT INTO job_queue_samples (minute, type, pending, running)
SELECT strftime('%Y-%m-%d %H:%M:00.000000', now()), type, sum(status = 'pending'),
       sum(status = 'running')
FROM background_jobs
WHERE status = 'pending' OR status = 'running'
GROUP BY type
ON CONFLICT (minute, type) DO NOTHING;
