-- Production keeps requiring HOOKGATE_ADMIN_TOKEN: only the embedded default (SQLite) makes and
-- stores an admin token of its own (issue 16).  Nothing to create here; the version is kept so
-- both dialects number their migrations alike.
SELECT 1;
