-- Job wake-ups (issue 13): every transaction that makes a background job pending and due —
-- a webhook's enqueue, a dedupe hit that revives a dead job, an operator's retry, a draft send,
-- a lease that expired, a shutdown that hands runs back — notifies channel hookgate_jobs, and
-- each replica's listener (scheduler/wakeups.py) wakes its runner.  A trigger, so no code path
-- can forget it and the enqueue costs no extra round trip.  PostgreSQL delivers a NOTIFY at
-- commit (never for a rollback), once per transaction for a constant payload, so a group of
-- deliveries stored together wakes the replicas once.  A job due later (a retry's backoff, a
-- delayed send) is not announced: polling finds it.  The WHEN clauses run without calling the
-- function, so claims, renewals and finishes pay nothing.

CREATE FUNCTION notify_job_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hookgate_jobs', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER background_jobs_due_on_insert
    AFTER INSERT ON background_jobs
    FOR EACH ROW
    WHEN (NEW.status = 'pending' AND NEW.run_at <= clock_timestamp())
    EXECUTE FUNCTION notify_job_due();

CREATE TRIGGER background_jobs_due_on_update
    AFTER UPDATE OF status, run_at ON background_jobs
    FOR EACH ROW
    WHEN (NEW.status = 'pending' AND NEW.run_at <= clock_timestamp()
          AND (OLD.status <> 'pending' OR OLD.run_at > clock_timestamp()))
    EXECUTE FUNCTION notify_job_due();
