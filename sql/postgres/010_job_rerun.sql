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
-- callers only say status = 'pending' and when it is due.  Claims and finishes never move a
-- job out of dead or succeeded, so the WHEN clause (evaluated without calling the function)
-- is all they pay.

ALTER TABLE background_jobs ADD COLUMN rerun boolean NOT NULL DEFAULT false;

CREATE FUNCTION revive_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.attempts := 0;
    NEW.last_error := NULL;
    NEW.finished_at := NULL;
    NEW.locked_by := NULL;
    NEW.locked_until := NULL;
    NEW.rerun := false;
    RETURN NEW;
END
$$;

CREATE TRIGGER background_jobs_revive
    BEFORE UPDATE OF status ON background_jobs
    FOR EACH ROW
    WHEN (OLD.status IN ('dead', 'succeeded') AND NEW.status = 'pending')
    EXECUTE FUNCTION revive_job();
