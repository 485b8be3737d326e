-- The webhook hot path's statements that both dialects share; the group write's own (one
-- statement per step for a whole group of deliveries) are in sql/<dialect>/queries/ingest_group.sql.

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

-- name: savepoint_own_write
-- An ingest group's write with statements of its own (gateway/ingest_store.py OwnWrite).
SAVEPOINT own_write;

-- name: rollback_to_own_write
ROLLBACK TO SAVEPOINT own_write;

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
