-- Job wake-ups, SQLite (scheduler/wakeups.py).

-- name: data_version
-- Changes whenever another connection commits a change to the file, never for this
-- connection's own commits (nor for a write transaction that changed nothing).  Not a SELECT,
-- so the port runs it on the writer connection, and only other processes move it: the one
-- connection in this process that could, the reader, never writes.
PRAGMA data_version;
