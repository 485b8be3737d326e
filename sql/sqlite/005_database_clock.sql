-- The database keeps the clock (issue 13).  SQLite's now() and now_plus(seconds) are functions
-- the port registers on every connection (sql/sqlite.py); nothing to create here.  The version
-- is kept so both dialects number their migrations alike.
SELECT 1;
