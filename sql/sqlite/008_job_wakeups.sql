-- Job wake-ups (issue 13).  SQLite has no NOTIFY: a scheduler watches PRAGMA data_version for
-- commits by other processes (scheduler/wakeups.py); nothing to create here.  The version is
-- kept so both dialects number their migrations alike.
SELECT 1;
