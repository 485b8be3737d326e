-- hookgate schema, SQLite (timestamps are UTC TEXT that sorts like time).  Every table DESIGN.md names; later migrations add columns.

CREATE TABLE workspaces (
    id                      TEXT PRIMARY KEY,
    name                    TEXT NOT NULL,
    emailbison_token_hash   TEXT NOT NULL,
    ghl_token_hash          TEXT NOT NULL,
    unipile_token_hash      TEXT NOT NULL,
    smartlead_token_hash    TEXT NOT NULL,
    instantly_token_hash    TEXT NOT NULL,
    emailbison_workspace_id TEXT,
    emailbison_api_key      TEXT,
    emailbison_base_url     TEXT,
    ghl_location_id         TEXT,
    ghl_public_key          TEXT,
    unipile_account_id      TEXT,
    unipile_secret_hash     TEXT,
    smartlead_secret_hash   TEXT,
    instantly_secret_hash   TEXT,
    slack_channel           TEXT,
    auto_send               BOOLEAN NOT NULL DEFAULT 0,
    created_at              TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now'))
);

CREATE TABLE leads (
    id              INTEGER PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email           TEXT,
    phone           TEXT,
    linkedin_id     TEXT,
    ghl_contact_id  TEXT,
    first_name      TEXT,
    last_name       TEXT,
    company         TEXT,
    title           TEXT,
    status          TEXT,
    interested      BOOLEAN NOT NULL DEFAULT 0,
    sentiment       TEXT,
    enriched_at     TIMESTAMP,
    created_at      TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    updated_at      TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    UNIQUE (workspace_id, email),
    UNIQUE (workspace_id, phone),
    UNIQUE (workspace_id, linkedin_id)
);
CREATE INDEX leads_ghl_contact ON leads (workspace_id, ghl_contact_id);

CREATE TABLE messages (
    id                          INTEGER PRIMARY KEY,
    workspace_id                TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    lead_id                     INTEGER REFERENCES leads (id) ON DELETE SET NULL,
    channel                     TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'linkedin')),
    direction                   TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    provider                    TEXT NOT NULL,
    event                       TEXT NOT NULL,
    subject                     TEXT,
    body                        TEXT,
    sent_at                     TIMESTAMP,
    created_at                  TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    sentiment                   TEXT,
    interested                  BOOLEAN NOT NULL DEFAULT 0,
    email_bison_reply_id        TEXT,
    inboxxia_scheduled_email_id TEXT,
    ghl_id                      TEXT,
    ai_draft_id                 INTEGER,
    unipile_message_id          TEXT,
    webhook_dedupe_key          TEXT,
    UNIQUE (workspace_id, email_bison_reply_id),
    UNIQUE (workspace_id, inboxxia_scheduled_email_id),
    UNIQUE (workspace_id, ghl_id),
    UNIQUE (workspace_id, ai_draft_id),
    UNIQUE (workspace_id, unipile_message_id),
    UNIQUE (workspace_id, webhook_dedupe_key)
);
CREATE INDEX messages_lead ON messages (lead_id, created_at);

CREATE TABLE background_jobs (
    id            INTEGER PRIMARY KEY,
    type          TEXT NOT NULL,
    dedupe_key    TEXT NOT NULL UNIQUE,
    workspace_id  TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    message_id    INTEGER REFERENCES messages (id) ON DELETE CASCADE,
    payload       TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'succeeded', 'dead')),
    run_at        TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 5,
    locked_by     TEXT,
    locked_until  TIMESTAMP,
    last_error    TEXT,
    created_at    TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    updated_at    TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    started_at    TIMESTAMP,
    finished_at   TIMESTAMP
);
CREATE INDEX background_jobs_due ON background_jobs (run_at) WHERE status = 'pending';
CREATE INDEX background_jobs_leased ON background_jobs (locked_until) WHERE status = 'running';

CREATE TABLE ai_interactions (
    id                 INTEGER PRIMARY KEY,
    workspace_id       TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    source             TEXT NOT NULL,
    model              TEXT NOT NULL,
    purpose            TEXT NOT NULL,
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    latency_ms         INTEGER NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('ok', 'timeout', 'error')),
    error              TEXT,
    created_at         TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now'))
);

CREATE TABLE ai_drafts (
    id            INTEGER PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    message_id    INTEGER NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    lead_id       INTEGER REFERENCES leads (id) ON DELETE SET NULL,
    body          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'draft',
    created_at    TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    sent_at       TIMESTAMP
);

CREATE TABLE integration_health (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    integration   TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT,
    since         TIMESTAMP NOT NULL,
    last_error    TEXT,
    checked_at    TIMESTAMP NOT NULL,
    UNIQUE (workspace_id, integration)
);

CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    day           TEXT NOT NULL,  -- YYYY-MM-DD (UTC)
    message       TEXT,
    suppressed    INTEGER NOT NULL DEFAULT 0,
    sent_at       TIMESTAMP,
    created_at    TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    UNIQUE (workspace_id, kind, day)
);

CREATE TABLE context_packs (
    id            INTEGER PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    status        TEXT NOT NULL DEFAULT 'pending',
    leads_total   INTEGER,
    leads_done    INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    started_at    TIMESTAMP,
    finished_at   TIMESTAMP
);

CREATE TABLE context_pack_items (
    id          INTEGER PRIMARY KEY,
    pack_id     INTEGER NOT NULL REFERENCES context_packs (id) ON DELETE CASCADE,
    lead_id     INTEGER NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    summary     TEXT,
    error       TEXT,
    created_at  TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    UNIQUE (pack_id, lead_id)
);

CREATE TABLE cron_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT,
    expires_at  TIMESTAMP
);

CREATE TABLE webhook_quarantine (
    id                   INTEGER PRIMARY KEY,
    workspace_id         TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider             TEXT NOT NULL,
    body_hash            TEXT NOT NULL,
    raw_body             BLOB NOT NULL,
    headers              TEXT NOT NULL DEFAULT '{}',
    error                TEXT NOT NULL,
    status               TEXT NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'replayed', 'discarded')),
    received_at          TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    updated_at           TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    replayed_message_id  INTEGER,
    UNIQUE (workspace_id, body_hash)
);
