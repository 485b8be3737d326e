-- The admin token a first `hookgate serve` makes on the embedded default when
-- HOOKGATE_ADMIN_TOKEN is unset (issue 16): one row, the token's SHA-256 only (the token itself
-- is printed once and kept nowhere).  `hookgate admin reset-token` replaces it.

CREATE TABLE admin_token (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
