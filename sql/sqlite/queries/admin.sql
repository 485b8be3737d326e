-- The embedded default's own admin token (gateway/admin_token.py): one row, its SHA-256 only.

-- name: get_admin_token
SELECT token_hash, created_at FROM admin_token WHERE id = 1;

-- name: insert_first_admin_token
-- The first start's token; a row there already (an earlier start) keeps it and returns nothing.
INSERT INTO admin_token (id, token_hash, created_at) VALUES (1, :token_hash, now())
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: replace_admin_token
INSERT INTO admin_token (id, token_hash, created_at) VALUES (1, :token_hash, now())
ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at;
