-- The ingest path's group write (gateway/ingest_store.py): one statement per step for every
-- delivery of a group.  :rows is the group as one JSON array of objects, unpacked here by
-- jsonb_to_recordset (SQLite: json_each, sql/sqlite/queries/ingest_group.sql).  Timestamps come
-- as UTC text without an offset ('YYYY-MM-DD HH:MM:SS.ffffff', SQLite's stored form).
--
-- A lookup by the group's keys is written as one probe per row (a LATERAL subquery behind
-- OFFSET 0, which the planner does not flatten into a join).  Flattened, the planner guesses 100
-- rows for the JSON array and, below tens of thousands of rows in the table, plans a hash join
-- over a scan of the whole table; a prepared statement keeps that plan as the table grows.

-- name: insert_messages
-- The group's new messages (one row per distinct key).  A conflict on any unique key (a copy
-- stored earlier, or a GoHighLevel webhookId replayed with another message) inserts nothing and
-- returns nothing; the caller maps the rows returned back by workspace and key.  Each comes with
-- its lead, upserted first (gateway/ingest_store.py).
INSERT INTO messages (workspace_id, channel, direction, provider, event, subject, body, sent_at,
                      interested, created_at, email_bison_reply_id, inboxxia_scheduled_email_id,
                      ghl_id, unipile_message_id, webhook_dedupe_key, delivery_id,
                      provider_thread_id, lead_id)
SELECT workspace_id, channel, direction, provider, event, subject, body,
       sent_at AT TIME ZONE 'UTC', interested, now AT TIME ZONE 'UTC', email_bison_reply_id,
       inboxxia_scheduled_email_id, ghl_id, unipile_message_id, webhook_dedupe_key,
       delivery_id, provider_thread_id, lead_id
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
    workspace_id text, channel text, direction text, provider text, event text, subject text,
    body text, sent_at timestamp, interested boolean, now timestamp, email_bison_reply_id text,
    inboxxia_scheduled_email_id text, ghl_id text, unipile_message_id text,
    webhook_dedupe_key text, delivery_id text, provider_thread_id text, lead_id bigint)
ON CONFLICT DO NOTHING
RETURNING id, workspace_id, email_bison_reply_id, inboxxia_scheduled_email_id, ghl_id,
          unipile_message_id, webhook_dedupe_key;

-- name: find_messages_by_{key}
-- keys: email_bison_reply_id, inboxxia_scheduled_email_id, ghl_id, unipile_message_id, webhook_dedupe_key
-- The stored messages of a dedupe hit, by the one key column their deliveries use, and whether
-- the message's post-process job (job_type, NULL for none) is dead: only then does the group
-- run requeue_dead_jobs.  A job that dies after this read and before the commit is not revived
-- by this copy, as one that dies just after the commit would not be.
SELECT m.id, m.workspace_id, m.key_value, m.lead_id,
       EXISTS (SELECT 1 FROM background_jobs j
               WHERE j.dedupe_key = r.job_type || ':' || m.id AND j.status = 'dead') AS job_dead
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(workspace_id text, key_value text, job_type text)
CROSS JOIN LATERAL (
    SELECT m.id, m.workspace_id, m.{key} AS key_value, m.lead_id FROM messages m
    WHERE m.workspace_id = r.workspace_id AND m.{key} = r.key_value OFFSET 0) AS m;

-- name: enqueue_post_process_jobs
-- The new inbound messages' jobs, pending and due now by the database's clock (as enqueue_job
-- in sql/queries/jobs.sql).  The messages are new, so no job can hold these dedupe keys yet.
INSERT INTO background_jobs (type, dedupe_key, workspace_id, message_id, payload, status, run_at,
                             attempts, max_attempts, created_at, updated_at)
SELECT type, type || ':' || message_id, workspace_id, message_id, payload, 'pending', now(), 0,
       max_attempts, now(), now()
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
    type text, workspace_id text, message_id bigint, payload jsonb, max_attempts integer)
ON CONFLICT (dedupe_key) DO NOTHING;

-- name: find_leads_by_{key}
-- keys: email, phone, linkedin_id, ghl_contact_id
-- The group's leads by the one identity each is keyed on: a plain read, so deliveries that bring
-- a lead nothing new do not queue on its row lock.
SELECT l.*
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(workspace_id text, key_value text)
CROSS JOIN LATERAL (
    SELECT l.id, l.workspace_id, l.{key} AS key_value, l.email, l.phone, l.linkedin_id,
           l.ghl_contact_id, l.first_name, l.last_name, l.company, l.title, l.status,
           l.interested
    FROM leads l WHERE l.workspace_id = r.workspace_id AND l.{key} = r.key_value OFFSET 0) AS l;

-- name: upsert_leads_by_{key}
-- keys: email, phone, linkedin_id, ghl_contact_id
-- Create or update the group's new and changed leads, each once (the caller merges the
-- deliveries of one lead) and in key order, so concurrent groups lock leads in the same order.
INSERT INTO leads (workspace_id, {key}, first_name, last_name, company, title, status,
                   interested, created_at, updated_at)
SELECT workspace_id, key_value, first_name, last_name, company, title, status, interested,
       now AT TIME ZONE 'UTC', now AT TIME ZONE 'UTC'
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
    workspace_id text, key_value text, first_name text, last_name text, company text,
    title text, status text, interested boolean, now timestamp)
ON CONFLICT (workspace_id, {key}) WHERE {key} IS NOT NULL DO UPDATE SET
    first_name = COALESCE(excluded.first_name, leads.first_name),
    last_name  = COALESCE(excluded.last_name, leads.last_name),
    company    = COALESCE(excluded.company, leads.company),
    title      = COALESCE(excluded.title, leads.title),
    status     = COALESCE(excluded.status, leads.status),
    interested = leads.interested OR excluded.interested,
    updated_at = excluded.updated_at
RETURNING id, workspace_id, {key} AS key_value, email, phone, linkedin_id, ghl_contact_id;

-- name: mark_messages_interested
-- Interest a dedupe hit brings.  Returns the messages it is new to: their jobs run once more
-- (rerun_jobs).  The row lock makes that exact: a concurrent group's update waits, re-reads the
-- row and finds it interested already.
UPDATE messages SET interested = true
WHERE id IN (SELECT CAST(jsonb_array_elements_text(CAST(:ids AS jsonb)) AS bigint))
  AND NOT interested
RETURNING id;

-- name: mark_leads_interested
UPDATE leads l SET interested = true, updated_at = r.now AT TIME ZONE 'UTC'
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id bigint, now timestamp)
WHERE l.id = r.id AND NOT l.interested;

-- name: requeue_dead_jobs
-- A dedupe hit's reset semantics: a dead job goes back to pending, afresh (migration 010's
-- trigger); pending, running and succeeded jobs are left alone, and not even locked.
UPDATE background_jobs SET status = 'pending', run_at = now(), updated_at = now()
WHERE status = 'dead'
  AND dedupe_key IN (SELECT jsonb_array_elements_text(CAST(:dedupe_keys AS jsonb)))
RETURNING dedupe_key;

-- name: rerun_jobs
-- The jobs of messages a dedupe hit made interested (issue 14 item 11) run once more after this
-- transaction commits, whatever their state: dead or succeeded, pending afresh and due now; a
-- running one is marked rerun (its success makes it pending, succeed_jobs); a pending one is only
-- written, so it stays locked (a claim skips locked rows) until the commit.
UPDATE background_jobs SET
    status = CASE WHEN status IN ('dead', 'succeeded') THEN 'pending' ELSE status END,
    run_at = CASE WHEN status IN ('dead', 'succeeded') THEN now() ELSE run_at END,
    rerun = (status = 'running'),
    updated_at = now()
WHERE dedupe_key IN (SELECT jsonb_array_elements_text(CAST(:dedupe_keys AS jsonb)))
RETURNING dedupe_key;
