-- The database keeps the clock (issue 13): every lease, expiry and cron comparison is written
-- with now() and now_plus(seconds), never with a replica's time.  PostgreSQL has now(); this
-- adds now_plus, which SQLite's port registers under the same name, so those statements are
-- written once for both dialects.

CREATE OR REPLACE FUNCTION now_plus(seconds double precision) RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT now() + seconds * interval '1 second' $$;
