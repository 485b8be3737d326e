-- Job claiming, SQLite: one UPDATE … RETURNING, atomic because the port runs every write on its
-- single writer connection (and SQLite has one writer per file anyway).  Renewing and releasing
-- name the claims they mean as a JSON array of [id, claim_token] pairs (:claims), expanded here
-- with json_each.

-- name: claim_jobs
-- Due pending jobs, oldest first, walking the partial index on pending jobs' run_at (expired
-- leases are turned back into pending jobs by reclaim_expired_jobs).  Each claim increments the
-- job's claim_token: the fencing token of the run it starts.  A re-run owed (rerun, migration
-- 010) is owed no more: the run starting reads everything committed before it.
UPDATE background_jobs SET
    status = 'running', locked_by = :worker, locked_until = now_plus(:lease_s),
    claim_token = claim_token + 1, attempts = attempts + 1, rerun = false, started_at = now(),
    updated_at = now()
WHERE id IN (
    SELECT id FROM background_jobs
    WHERE status = 'pending' AND run_at <= now()
    ORDER BY run_at
    LIMIT :n
)
RETURNING id, type, dedupe_key, workspace_id, message_id, payload, attempts, max_attempts,
          claim_token;

-- name: renew_leases
-- Extends exactly the claims in flight; the pairs that come back are the ones still held (a
-- claim missing from them was superseded: its lease lapsed and the job was reclaimed).
UPDATE background_jobs SET locked_until = now_plus(:lease_s), updated_at = now()
WHERE status = 'running'
  AND (id, claim_token) IN (
      SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:claims))
RETURNING id, claim_token;

-- name: release_jobs
-- Shutdown: the claims this runner had to cut short go back to pending, and the interrupted
-- attempt is not counted against the job.
UPDATE background_jobs SET
    status = 'pending', run_at = now(), locked_by = NULL, locked_until = NULL,
    attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = now()
WHERE status = 'running'
  AND (id, claim_token) IN (
      SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:claims));

-- name: succeed_jobs
-- The runs that succeeded meanwhile, in one statement (scheduler/queue.py), each by its claim;
-- the pairs that come back still held theirs.  Succeeded — unless news reached the job while it
-- ran (rerun, migration 010): then it is pending afresh, due now, for a run that reads it.
UPDATE background_jobs SET
    status = CASE WHEN rerun THEN 'pending' ELSE 'succeeded' END,
    run_at = CASE WHEN rerun THEN now() ELSE run_at END,
    attempts = CASE WHEN rerun THEN 0 ELSE attempts END,
    finished_at = CASE WHEN rerun THEN NULL ELSE now() END,
    rerun = false, locked_by = NULL, locked_until = NULL, last_error = NULL, updated_at = now()
WHERE status = 'running'
  AND (id, claim_token) IN (
      SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:claims))
RETURNING id, claim_token;
