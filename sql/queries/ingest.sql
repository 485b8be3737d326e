-- The webhook hot path: one transaction per delivery, no check-then-create anywhere.

-- Leads: found or created by the channel's primary identity, one statement per identity column
-- (each is unique per workspace), returning the identities the lead already has.

-- name: find_lead_by_key
-- The lead by the one identity given (the others are NULL and match nothing): a plain read,
-- so deliveries of a lead that bring nothing new do not queue on its row lock.
SELECT id, email, phone, linkedin_id, ghl_contact_id, first_name, last_name, company, title,
       status, interested
FROM leads
WHERE workspace_id = :workspace_id
  AND (email = :email OR phone = :phone OR linkedin_id = :linkedin_id
       OR ghl_contact_id = :ghl_contact_id);

-- name: upsert_lead_by_email
INSERT INTO leads (workspace_id, email, first_name, last_name, company, title, status,
                   interested, created_at, updated_at)
VALUES (:workspace_id, :value, :first_name, :last_name, :company, :title, :status,
        :interested, :now, :now)
ON CONFLICT (workspace_id, email) DO UPDATE SET
    first_name = COALESCE(excluded.first_name, leads.first_name),
    last_name  = COALESCE(excluded.last_name, leads.last_name),
    company    = COALESCE(excluded.company, leads.company),
    title      = COALESCE(excluded.title, leads.title),
    status     = COALESCE(excluded.status, leads.status),
    interested = leads.interested OR excluded.interested,
    updated_at = excluded.updated_at
RETURNING id, email, phone, linkedin_id, ghl_contact_id;

-- name: upsert_lead_by_phone
INSERT INTO leads (workspace_id, phone, first_name, last_name, company, title, status,
                   interested, created_at, updated_at)
VALUES (:workspace_id, :value, :first_name, :last_name, :company, :title, :status,
        :interested, :now, :now)
ON CONFLICT (workspace_id, phone) DO UPDATE SET
    first_name = COALESCE(excluded.first_name, leads.first_name),
    last_name  = COALESCE(excluded.last_name, leads.last_name),
    company    = COALESCE(excluded.company, leads.company),
    title      = COALESCE(excluded.title, leads.title),
    status     = COALESCE(excluded.status, leads.status),
    interested = leads.interested OR excluded.interested,
    updated_at = excluded.updated_at
RETURNING id, email, phone, linkedin_id, ghl_contact_id;

-- name: upsert_lead_by_linkedin_id
INSERT INTO leads (workspace_id, linkedin_id, first_name, last_name, company, title, status,
                   interested, created_at, updated_at)
VALUES (:workspace_id, :value, :first_name, :last_name, :company, :title, :status,
        :interested, :now, :now)
ON CONFLICT (workspace_id, linkedin_id) DO UPDATE SET
    first_name = COALESCE(excluded.first_name, leads.first_name),
    last_name  = COALESCE(excluded.last_name, leads.last_name),
    company    = COALESCE(excluded.company, leads.company),
    title      = COALESCE(excluded.title, leads.title),
    status     = COALESCE(excluded.status, leads.status),
    interested = leads.interested OR excluded.interested,
    updated_at = excluded.updated_at
RETURNING id, email, phone, linkedin_id, ghl_contact_id;

-- name: upsert_lead_by_ghl_contact_id
INSERT INTO leads (workspace_id, ghl_contact_id, first_name, last_name, company, title, status,
                   interested, created_at, updated_at)
VALUES (:workspace_id, :value, :first_name, :last_name, :company, :title, :status,
        :interested, :now, :now)
ON CONFLICT (workspace_id, ghl_contact_id) DO UPDATE SET
    first_name = COALESCE(excluded.first_name, leads.first_name),
    last_name  = COALESCE(excluded.last_name, leads.last_name),
    company    = COALESCE(excluded.company, leads.company),
    title      = COALESCE(excluded.title, leads.title),
    status     = COALESCE(excluded.status, leads.status),
    interested = leads.interested OR excluded.interested,
    updated_at = excluded.updated_at
RETURNING id, email, phone, linkedin_id, ghl_contact_id;

-- name: attach_lead_identities
-- Each identity goes to this lead only if it has none and no other lead holds it.  Exact on
-- SQLite (one writer); on PostgreSQL a concurrent transaction can still win the race, which the
-- caller catches under the savepoint below.
UPDATE leads SET
    email = COALESCE(leads.email, (SELECT CAST(:email AS text) WHERE NOT EXISTS (
        SELECT 1 FROM leads other WHERE other.workspace_id = :workspace_id
                                    AND other.email = CAST(:email AS text)))),
    phone = COALESCE(leads.phone, (SELECT CAST(:phone AS text) WHERE NOT EXISTS (
        SELECT 1 FROM leads other WHERE other.workspace_id = :workspace_id
                                    AND other.phone = CAST(:phone AS text)))),
    linkedin_id = COALESCE(leads.linkedin_id, (SELECT CAST(:linkedin_id AS text) WHERE NOT EXISTS (
        SELECT 1 FROM leads other WHERE other.workspace_id = :workspace_id
                                    AND other.linkedin_id = CAST(:linkedin_id AS text)))),
    ghl_contact_id = COALESCE(leads.ghl_contact_id, (SELECT CAST(:ghl_contact_id AS text) WHERE NOT EXISTS (
        SELECT 1 FROM leads other WHERE other.workspace_id = :workspace_id
                                    AND other.ghl_contact_id = CAST(:ghl_contact_id AS text))))
WHERE id = :id;

-- name: savepoint_attach_identities
SAVEPOINT attach_identities;

-- name: rollback_to_attach_identities
ROLLBACK TO SAVEPOINT attach_identities;

-- name: insert_message
INSERT INTO messages (workspace_id, lead_id, channel, direction, provider, event, subject, body,
                      sent_at, interested, created_at, email_bison_reply_id,
                      inboxxia_scheduled_email_id, ghl_id, ai_draft_id, unipile_message_id,
                      webhook_dedupe_key, delivery_id, provider_thread_id)
VALUES (:workspace_id, :lead_id, :channel, :direction, :provider, :event, :subject, :body,
        :sent_at, :interested, :now, :email_bison_reply_id, :inboxxia_scheduled_email_id,
        :ghl_id, :ai_draft_id, :unipile_message_id, :webhook_dedupe_key, :delivery_id,
        :provider_thread_id)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: find_message_by_key
SELECT id, lead_id, interested FROM messages
WHERE workspace_id = :workspace_id
  AND (email_bison_reply_id = :email_bison_reply_id
       OR inboxxia_scheduled_email_id = :inboxxia_scheduled_email_id
       OR ghl_id = :ghl_id
       OR ai_draft_id = :ai_draft_id
       OR unipile_message_id = :unipile_message_id
       OR webhook_dedupe_key = :webhook_dedupe_key);

-- name: set_message_lead
UPDATE messages SET lead_id = :lead_id WHERE id = :id;

-- name: requeue_dead_job
-- A dedupe hit's reset semantics: a dead job goes back to pending, afresh (migration 010's
-- trigger resets its attempts, error, finish and lock); pending, running and succeeded jobs are
-- left alone — and, unlike an upsert, not even locked, so the copies of a storm do not queue
-- behind each other on the job row.  Job times are the database's (sql/queries/jobs.sql).
UPDATE background_jobs SET status = 'pending', run_at = now(), updated_at = now()
WHERE dedupe_key = :dedupe_key AND status = 'dead';

-- name: rerun_job
-- A dedupe hit that brings news the job must act on (interest new to the message, issue 14
-- item 11): the job runs once more after this transaction commits, whatever its state.  Dead or
-- succeeded: pending afresh, due now (the revive trigger of migration 010).  Running: rerun, so
-- that the run's success puts it back to pending (succeed_job) — the run may have read the
-- message before this commit.  Pending: its next run starts after this commit anyway; the row
-- is still written, so that on PostgreSQL it stays locked until then (a claim skips locked
-- rows) and no run can start, and read the message, in between.  Only the one copy that turns
-- the message interested gets here: the others find it interested already.
UPDATE background_jobs SET
    status = CASE WHEN status IN ('dead', 'succeeded') THEN 'pending' ELSE status END,
    run_at = CASE WHEN status IN ('dead', 'succeeded') THEN now() ELSE run_at END,
    rerun = (status = 'running'),
    updated_at = now()
WHERE dedupe_key = :dedupe_key;

-- name: mark_message_interested
UPDATE messages SET interested = true WHERE id = :id AND NOT interested;

-- name: mark_lead_interested
UPDATE leads SET interested = true, updated_at = :now WHERE id = :id AND NOT interested;

-- name: enqueue_job
-- A new job starts pending.  Enqueued again (the scheduler's own enqueue), the same statement
-- gives reset semantics: a dead job goes back to pending, afresh (migration 010's trigger);
-- pending, running and succeeded jobs are left alone (the WHERE makes the DO UPDATE a no-op for
-- them, and RETURNING then gives no row).  Due now by the database's clock, which every claim
-- compares run_at with: a replica whose clock runs ahead must not enqueue jobs that wait for it.
INSERT INTO background_jobs (type, dedupe_key, workspace_id, message_id, payload, status, run_at,
                             attempts, max_attempts, created_at, updated_at)
VALUES (:type, :dedupe_key, :workspace_id, :message_id, :payload, 'pending', now(), 0,
        :max_attempts, now(), now())
ON CONFLICT (dedupe_key) DO UPDATE SET
    status = 'pending', run_at = excluded.run_at, updated_at = excluded.updated_at
WHERE background_jobs.status = 'dead'
RETURNING id;
