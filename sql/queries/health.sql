-- name: ping
SELECT 1 AS ok;

-- name: database_now
-- The database's clock (leases, expiries and the queue's timestamps follow it, never a
-- replica's): PostgreSQL's built-in now(), SQLite's registered by the port.
SELECT now() AS now;
