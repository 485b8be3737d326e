-- Job wake-ups, SQLite (scheduler/wakeups.py).

-- name: data_version
-- Moves whenever another connection commits a change to the file (this process's writer or
-- another process), never for a write transaction that changed nothing.  A SELECT, so the
-- port runs it on the reader connection, which never writes and never waits for the writer.
SELECT data_version FROM pragma_data_version();
