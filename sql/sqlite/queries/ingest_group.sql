-- The ingest path's group write (gateway/ingest_store.py), SQLite's form of
-- sql/postgres/queries/ingest_group.sql: :rows is the group as one JSON array of objects,
-- unpacked by json_each.  (An INSERT … SELECT takes `WHERE true` before ON CONFLICT, which
-- SQLite would otherwise read as a join's ON.)

-- name: insert_messages
INSERT INTO messages (workspace_id, channel, direction, provider, event, subject, body, sent_at,
                      interested, created_at, email_bison_reply_id, inboxxia_scheduled_email_id,
                      ghl_id, unipile_message_id, webhook_dedupe_key, delivery_id,
                      provider_thread_id, lead_id)
SELECT value ->> 'workspace_id', value ->> 'channel', value ->> 'direction',
       value ->> 'provider', value ->> 'event', value ->> 'subject', value ->> 'body',
       value ->> 'sent_at', value ->> 'interested', value ->> 'now',
       value ->> 'email_bison_reply_id', value ->> 'inboxxia_scheduled_email_id',
       value ->> 'ghl_id', value ->> 'unipile_message_id', value ->> 'webhook_dedupe_key',
       value ->> 'delivery_id', value ->> 'provider_thread_id', value ->> 'lead_id'
FROM json_each(:rows) WHERE true
ON CONFLICT DO NOTHING
RETURNING id, workspace_id, email_bison_reply_id, inboxxia_scheduled_email_id, ghl_id,
          unipile_message_id, webhook_dedupe_key;

-- name: find_messages_by_{key}
-- keys: email_bison_reply_id, inboxxia_scheduled_email_id, ghl_id, unipile_message_id, webhook_dedupe_key
-- As on PostgreSQL, with whether the message's post-process job is dead.
SELECT m.id, m.workspace_id, m.{key} AS key_value, m.lead_id,
       EXISTS (SELECT 1 FROM background_jobs j
               WHERE j.dedupe_key = (r.value ->> 'job_type') || ':' || m.id
                 AND j.status = 'dead') AS job_dead
FROM json_each(:rows) AS r
JOIN messages m ON m.workspace_id = r.value ->> 'workspace_id'
               AND m.{key} = r.value ->> 'key_value';

-- name: enqueue_post_process_jobs
INSERT INTO background_jobs (type, dedupe_key, workspace_id, message_id, payload, status, run_at,
                             attempts, max_attempts, created_at, updated_at)
SELECT value ->> 'type', (value ->> 'type') || ':' || (value ->> 'message_id'),
       value ->> 'workspace_id', value ->> 'message_id', value ->> 'payload', 'pending', now(),
       0, value ->> 'max_attempts', now(), now()
FROM json_each(:rows) WHERE true
ON CONFLICT (dedupe_key) DO NOTHING;

-- name: find_leads_by_{key}
-- keys: email, phone, linkedin_id, ghl_contact_id
SELECT l.id, l.workspace_id, l.{key} AS key_value, l.email, l.phone, l.linkedin_id,
       l.ghl_contact_id, l.first_name, l.last_name, l.company, l.title, l.status, l.interested
FROM json_each(:rows) AS r
JOIN leads l ON l.workspace_id = r.value ->> 'workspace_id' AND l.{key} = r.value ->> 'key_value';

-- name: upsert_leads_by_{key}
-- keys: email, phone, linkedin_id, ghl_contact_id
INSERT INTO leads (workspace_id, {key}, first_name, last_name, company, title, status,
                   interested, created_at, updated_at)
SELECT value ->> 'workspace_id', value ->> 'key_value', value ->> 'first_name',
       value ->> 'last_name', value ->> 'company', value ->> 'title', value ->> 'status',
       value ->> 'interested', value ->> 'now', value ->> 'now'
FROM json_each(:rows) WHERE true
ON CONFLICT (workspace_id, {key}) DO UPDATE SET
    first_name = COALESCE(excluded.first_name, leads.first_name),
    last_name  = COALESCE(excluded.last_name, leads.last_name),
    company    = COALESCE(excluded.company, leads.company),
    title      = COALESCE(excluded.title, leads.title),
    status     = COALESCE(excluded.status, leads.status),
    interested = leads.interested OR excluded.interested,
    updated_at = excluded.updated_at
RETURNING id, workspace_id, {key} AS key_value, email, phone, linkedin_id, ghl_contact_id;

-- name: mark_messages_interested
UPDATE messages SET interested = true
WHERE id IN (SELECT value FROM json_each(:ids)) AND NOT interested
RETURNING id;

-- name: mark_leads_interested
WITH r AS (SELECT value ->> 'id' AS lead_id, value ->> 'now' AS now FROM json_each(:rows))
UPDATE leads SET interested = true, updated_at = r.now
FROM r WHERE leads.id = r.lead_id AND NOT leads.interested;

-- name: requeue_dead_jobs
UPDATE background_jobs SET status = 'pending', run_at = now(), updated_at = now()
WHERE status = 'dead' AND dedupe_key IN (SELECT value FROM json_each(:dedupe_keys))
RETURNING dedupe_key;

-- name: rerun_jobs
UPDATE background_jobs SET
    status = CASE WHEN status IN ('dead', 'succeeded') THEN 'pending' ELSE status END,
    run_at = CASE WHEN status IN ('dead', 'succeeded') THEN now() ELSE run_at END,
    rerun = (status = 'running'),
    updated_at = now()
WHERE dedupe_key IN (SELECT value FROM json_each(:dedupe_keys))
RETURNING dedupe_key;
