-- The operator console's charts (issue 16): see sql/postgres/014_console.sql.

CREATE TABLE job_queue_samples (
    minute   TIMESTAMP NOT NULL,
    type     TEXT NOT NULL,
    pending  INTEGER NOT NULL,
    running  INTEGER NOT NULL,
    PRIMARY KEY (minute, type)
);

CREATE INDEX background_jobs_dead ON background_jobs (finished_at) WHERE status = 'dead';
CREATE INDEX ai_interactions_created ON ai_interactions (created_at);
