-- The operator console's lists and detail views (gateway/console_data.py).  Its charts bucket
-- times, which each dialect writes its own way (sql/<dialect>/queries/console.sql).  Lists are
-- newest first, paged by id (:before_id), each filter NULL for "any".

-- name: console_messages
SELECT m.id, m.workspace_id, w.name AS workspace_name, m.provider, m.channel, m.direction,
       m.event, m.subject, substr(m.body, 1, 160) AS body_start, m.sent_at, m.created_at,
       m.interested, m.lead_id, l.email AS lead_email, l.phone AS lead_phone,
       l.linkedin_id AS lead_linkedin_id, l.first_name AS lead_first_name,
       l.last_name AS lead_last_name, m.email_bison_reply_id, m.inboxxia_scheduled_email_id,
       m.ghl_id, m.ai_draft_id, m.unipile_message_id, m.webhook_dedupe_key,
       COALESCE(c.copies, 0) AS deduped_copies
FROM messages m
JOIN workspaces w ON w.id = m.workspace_id
LEFT JOIN leads l ON l.id = m.lead_id
LEFT JOIN message_copies c ON c.message_id = m.id
WHERE (CAST(:workspace_id AS TEXT) IS NULL OR m.workspace_id = :workspace_id)
  AND (CAST(:provider AS TEXT) IS NULL OR m.provider = :provider)
  AND (CAST(:direction AS TEXT) IS NULL OR m.direction = :direction)
  AND (CAST(:lead_id AS BIGINT) IS NULL OR m.lead_id = :lead_id)
  AND m.id < :before_id
ORDER BY m.id DESC
LIMIT :limit;

-- name: console_message
SELECT m.*, w.name AS workspace_name, l.email AS lead_email, l.phone AS lead_phone,
       l.linkedin_id AS lead_linkedin_id, l.first_name AS lead_first_name,
       l.last_name AS lead_last_name, l.company AS lead_company, l.status AS lead_status,
       COALESCE(c.copies, 0) AS deduped_copies
FROM messages m
JOIN workspaces w ON w.id = m.workspace_id
LEFT JOIN leads l ON l.id = m.lead_id
LEFT JOIN message_copies c ON c.message_id = m.id
WHERE m.id = :id;

-- name: console_message_jobs
-- No index on message_id: a detail view may scan, the hot path's inserts stay cheap.
SELECT id, type, status, attempts, max_attempts, run_at, last_error, updated_at
FROM background_jobs WHERE message_id = :message_id ORDER BY id;

-- name: console_message_drafts
SELECT id, status, body, created_at, sent_at, last_error
FROM ai_drafts WHERE message_id = :message_id ORDER BY id;

-- name: console_job
SELECT j.*, w.name AS workspace_name
FROM background_jobs j LEFT JOIN workspaces w ON w.id = j.workspace_id
WHERE j.id = :id;

-- name: purge_queue_samples
DELETE FROM job_queue_samples WHERE minute < now_plus(-CAST(:keep_s AS double precision));
