-- Job re-runs and revivals (issue 14 items 11 and 15).
--
-- background_jobs.rerun: news reached a job while it ran (a late LEAD_INTERESTED for a message
-- whose post-process job was running, queries/ingest.sql rerun_job), which that run may have
-- read too early; its success then puts the job back to pending, due now, instead of
-- succeeded (queries/jobs.sql succeed_job, still fenced by claim_token).  Every claim clears it:
-- a run that starts reads everything committed before it.
--
-- background_jobs_revive: the one place that says what reviving a job means.  Whenever a job
-- moves from dead or succeeded back to pending (a dedupe hit, `hookgate jobs retry`, a re-run)
-- it starts afresh: no attempts, no last error, not finished, unlocked, no re-run owed.  The
-- callers only say status = 'pending' and when it is due.  SQLite triggers cannot change NEW,
-- so this one updates the row after the fact, in the same statement; its own UPDATE does not
-- name status, so it cannot fire itself (nor would it, with recursive_triggers off, the
-- default the port keeps).  RETURNING shows the values before it ran: the callers return ids.

ALTER TABLE background_jobs ADD COLUMN rerun BOOLEAN NOT NULL DEFAULT 0;

CREATE TRIGGER background_jobs_revive
AFTER UPDATE OF status ON background_jobs
FOR EACH ROW
WHEN OLD.status IN ('dead', 'succeeded') AND NEW.status = 'pending'
BEGIN
    UPDATE background_jobs
    SET attempts = 0, last_error = NULL, finished_at = NULL, locked_by = NULL,
        locked_until = NULL, rerun = 0
    WHERE id = NEW.id;
END;
