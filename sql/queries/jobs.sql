-- Background jobs: finishing, leases and operations.  Claiming, renewing and releasing differ
-- per dialect (sql/<dialect>/queries/jobs.sql).  Every statement that ends or extends a run
-- checks id AND claim_token (the fencing token the claim wrote), so a run whose claim was
-- superseded cannot overwrite the next claim's result, whichever worker holds it.
-- The database keeps the clock: every time here is now() or now_plus(seconds), never a
-- replica's clock, so a replica whose clock is off neither reclaims live runs nor delays jobs.

-- name: reclaim_expired_jobs
-- A running job whose lease expired lost its worker (killed, or stalled past the lease): it goes
-- back to pending, due now, or dead if that was its last attempt.  Replicas may run this at the
-- same time: row locks serialise them and the second finds the rows no longer running.
UPDATE background_jobs SET
    status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
    last_error = 'lease expired: worker ' || locked_by || ' stopped during attempt '
                 || CAST(attempts AS TEXT),
    finished_at = CASE WHEN attempts >= max_attempts THEN now() ELSE finished_at END,
    run_at = now(), locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE status = 'running' AND locked_until < now();

-- name: retry_job_later
UPDATE background_jobs SET
    status = 'pending', run_at = now_plus(:delay_s), last_error = :error, locked_by = NULL,
    locked_until = NULL, updated_at = now()
WHERE id = :id AND claim_token = :claim_token AND status = 'running';

-- name: bury_job
UPDATE background_jobs SET
    status = 'dead', last_error = :error, locked_by = NULL, locked_until = NULL,
    finished_at = now(), updated_at = now()
WHERE id = :id AND claim_token = :claim_token AND status = 'running';

-- name: list_jobs
SELECT id, type, status, attempts, max_attempts, run_at, locked_by, locked_until, last_error,
       workspace_id, message_id, created_at, updated_at
FROM background_jobs
WHERE (CAST(:status AS TEXT) IS NULL OR status = :status)
  AND (CAST(:type AS TEXT) IS NULL OR type = :type)
  AND (CAST(:workspace_id AS TEXT) IS NULL OR workspace_id = :workspace_id)
  AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: job_counts
SELECT type, status, count(*) AS n FROM background_jobs GROUP BY type, status ORDER BY type, status;

-- name: retry_job_now
-- Operator retry: a dead job goes back to pending, afresh (migration 010's trigger); a pending
-- one waiting out its backoff becomes due now.  Running and succeeded jobs are left alone.
UPDATE background_jobs SET status = 'pending', run_at = now(), updated_at = now()
WHERE id = :id AND status IN ('dead', 'pending')
RETURNING id;

-- name: retry_dead_jobs
UPDATE background_jobs SET status = 'pending', run_at = now(), updated_at = now()
WHERE status = 'dead';

-- name: queue_depth
-- Written as an OR so each arm can use its partial index: finished jobs are not scanned.
SELECT type, status, count(*) AS n FROM background_jobs
WHERE status = 'pending' OR status = 'running'
GROUP BY type, status;
