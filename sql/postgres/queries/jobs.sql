-- Job claiming, PostgreSQL: SKIP LOCKED lets replicas claim side by side without waiting on
-- (or double-claiming) each other's rows.

-- name: claim_jobs
-- Due pending jobs, oldest first, walking the partial index on pending jobs' run_at (expired
-- leases are turned back into pending jobs by reclaim_expired_jobs).
UPDATE background_jobs SET
    status = 'running', locked_by = :worker, locked_until = :lease_until,
    attempts = attempts + 1, started_at = :now, updated_at = :now
WHERE id IN (
    SELECT id FROM background_jobs
    WHERE status = 'pending' AND run_at <= :now
    ORDER BY run_at
    LIMIT :n
    FOR UPDATE SKIP LOCKED
)
RETURNING id, type, dedupe_key, workspace_id, message_id, payload, attempts, max_attempts;
