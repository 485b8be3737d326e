-- name: quarantine_lock
-- Nothing to take: the quarantine transaction opened with BEGIN IMMEDIATE already holds
-- SQLite's only write lock, so the flood-guard count and the insert cannot interleave.
SELECT 1 AS locked;
