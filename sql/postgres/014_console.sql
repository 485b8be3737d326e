-- The operator console's charts (issue 16).  job_queue_samples: the queue's depth by job type,
-- one row per minute and type, written by whichever replica's scheduler samples that minute
-- first (scheduler/queue_samples.py); the charts read it across replicas and restarts.  The two
-- indexes serve the charts' time ranges over dead jobs and AI calls; neither table is written on
-- the webhook path.

CREATE TABLE job_queue_samples (
    minute   timestamptz NOT NULL,
    type     text NOT NULL,
    pending  integer NOT NULL,
    running  integer NOT NULL,
    PRIMARY KEY (minute, type)
);

CREATE INDEX background_jobs_dead ON background_jobs (finished_at) WHERE status = 'dead';
CREATE INDEX ai_interactions_created ON ai_interactions (created_at);
