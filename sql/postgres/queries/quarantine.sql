-- name: quarantine_lock
-- Held until the quarantine transaction ends: one workspace's quarantine inserts run one after
-- another, so the flood-guard count and the insert cannot interleave.  The two-key form keeps
-- this lock space apart from the migration lock's single key.
SELECT pg_advisory_xact_lock(1903518066, hashtext(:workspace_id));
