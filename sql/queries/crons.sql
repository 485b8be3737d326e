-- Cron leases: one replica runs each cron tick (scheduler/crons.py).  The database keeps the
-- clock: leases are taken, renewed and compared with now() and now_plus(seconds), never with a
-- replica's clock, so a replica whose clock is off neither runs a tick twice nor steals a run.

-- name: take_cron_lease
-- The one atomic statement a tick starts with.  It wins when the lease has expired (its holder
-- finished its tick, or died), when this process holds it already, or, for a manual run, when
-- the last run has finished.  A run in progress on another replica keeps it.  The row that comes
-- back names the run: its holder and last_started_at.
INSERT INTO cron_leases (name, holder, expires_at, last_started_at)
VALUES (:name, :holder, now_plus(:lease_s), now())
ON CONFLICT (name) DO UPDATE SET
    holder          = excluded.holder,
    expires_at      = excluded.expires_at,
    last_started_at = excluded.last_started_at
WHERE cron_leases.expires_at IS NULL
   OR cron_leases.expires_at < now()
   OR cron_leases.holder = :holder
   OR (:manual AND cron_leases.last_finished_at >= cron_leases.last_started_at)
RETURNING name, holder, expires_at, last_started_at;

-- name: renew_cron_lease
-- While a run goes on: the lease reaches at least :window_s from now and never shrinks (a
-- scheduled tick's hold stays).  No row back means another replica took the lease over.
UPDATE cron_leases SET
    expires_at = CASE WHEN expires_at > now_plus(:window_s) THEN expires_at
                      ELSE now_plus(:window_s) END
WHERE name = :name AND holder = :holder AND last_started_at = :started_at
RETURNING name;

-- name: finish_cron_run
-- Only the run that started last writes its end (a late writer whose lease was taken over
-- changes nothing).  breaker_opened_at keeps the last time a breaker opened.  :finished_at and
-- :expires_at are the database's start time plus the run's measured duration, so an end written
-- late (after an outage) still says when the run ended.
UPDATE cron_leases SET
    last_finished_at  = :finished_at,
    last_outcome      = :outcome,
    last_error        = :error,
    breaker_opened_at = COALESCE(:breaker_opened_at, breaker_opened_at),
    expires_at        = :expires_at
WHERE name = :name AND holder = :holder AND last_started_at = :started_at;

-- name: list_cron_runs
SELECT name, holder, expires_at, last_started_at, last_finished_at, last_outcome, last_error,
       breaker_opened_at
FROM cron_leases ORDER BY name;

-- name: unipile_workspaces
-- The workspaces whose LinkedIn account the unipile_health cron checks.
SELECT id, name, unipile_account_id FROM workspaces
WHERE unipile_account_id IS NOT NULL AND unipile_account_id <> ''
ORDER BY id
LIMIT :limit;
