-- hookgate schema, PostgreSQL.  Every table DESIGN.md names; later migrations add columns.

CREATE TABLE workspaces (
    id                      text PRIMARY KEY,
    name                    text NOT NULL,
    emailbison_token_hash   text NOT NULL,
    ghl_token_hash          text NOT NULL,
    unipile_token_hash      text NOT NULL,
    smartlead_token_hash    text NOT NULL,
    instantly_token_hash    text NOT NULL,
    emailbison_workspace_id text,
    emailbison_api_key      text,
    emailbison_base_url     text,
    ghl_location_id         text,
    ghl_public_key          text,
    unipile_account_id      text,
    unipile_secret_hash     text,
    smartlead_secret_hash   text,
    instantly_secret_hash   text,
    slack_channel           text,
    auto_send               boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leads (
    id              bigserial PRIMARY KEY,
    workspace_id    text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email           text,
    phone           text,
    linkedin_id     text,
    ghl_contact_id  text,
    first_name      text,
    last_name       text,
    company         text,
    title           text,
    status          text,
    interested      boolean NOT NULL DEFAULT false,
    sentiment       text,
    enriched_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, email),
    UNIQUE (workspace_id, phone),
    UNIQUE (workspace_id, linkedin_id)
);
CREATE INDEX leads_ghl_contact ON leads (workspace_id, ghl_contact_id);

CREATE TABLE messages (
    id                          bigserial PRIMARY KEY,
    workspace_id                text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    lead_id                     bigint REFERENCES leads (id) ON DELETE SET NULL,
    channel                     text NOT NULL CHECK (channel IN ('email', 'sms', 'linkedin')),
    direction                   text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    provider                    text NOT NULL,
    event                       text NOT NULL,
    subject                     text,
    body                        text,
    sent_at                     timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    sentiment                   text,
    interested                  boolean NOT NULL DEFAULT false,
    email_bison_reply_id        text,
    inboxxia_scheduled_email_id text,
    ghl_id                      text,
    ai_draft_id                 bigint,
    unipile_message_id          text,
    webhook_dedupe_key          text,
    UNIQUE (workspace_id, email_bison_reply_id),
    UNIQUE (workspace_id, inboxxia_scheduled_email_id),
    UNIQUE (workspace_id, ghl_id),
    UNIQUE (workspace_id, ai_draft_id),
    UNIQUE (workspace_id, unipile_message_id),
    UNIQUE (workspace_id, webhook_dedupe_key)
);
CREATE INDEX messages_lead ON messages (lead_id, created_at);

CREATE TABLE background_jobs (
    id            bigserial PRIMARY KEY,
    type          text NOT NULL,
    dedupe_key    text NOT NULL UNIQUE,
    workspace_id  text REFERENCES workspaces (id) ON DELETE CASCADE,
    message_id    bigint REFERENCES messages (id) ON DELETE CASCADE,
    payload       jsonb NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'succeeded', 'dead')),
    run_at        timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 5,
    locked_by     text,
    locked_until  timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX background_jobs_due ON background_jobs (run_at) WHERE status = 'pending';
CREATE INDEX background_jobs_leased ON background_jobs (locked_until) WHERE status = 'running';

CREATE TABLE ai_interactions (
    id                 bigserial PRIMARY KEY,
    workspace_id       text REFERENCES workspaces (id) ON DELETE CASCADE,
    source             text NOT NULL,
    model              text NOT NULL,
    purpose            text NOT NULL,
    prompt_tokens      integer,
    completion_tokens  integer,
    latency_ms         integer NOT NULL,
    status             text NOT NULL CHECK (status IN ('ok', 'timeout', 'error')),
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ai_drafts (
    id            bigserial PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    message_id    bigint NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    lead_id       bigint REFERENCES leads (id) ON DELETE SET NULL,
    body          text NOT NULL,
    status        text NOT NULL DEFAULT 'draft',
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz
);

CREATE TABLE integration_health (
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    integration   text NOT NULL,
    status        text NOT NULL,
    reason        text,
    since         timestamptz NOT NULL,
    last_error    text,
    checked_at    timestamptz NOT NULL,
    UNIQUE (workspace_id, integration)
);

CREATE TABLE alerts (
    id            bigserial PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    day           text NOT NULL,  -- YYYY-MM-DD (UTC)
    message       text,
    suppressed    integer NOT NULL DEFAULT 0,
    sent_at       timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, kind, day)
);

CREATE TABLE context_packs (
    id            bigserial PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    status        text NOT NULL DEFAULT 'pending',
    leads_total   integer,
    leads_done    integer NOT NULL DEFAULT 0,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);

CREATE TABLE context_pack_items (
    id          bigserial PRIMARY KEY,
    pack_id     bigint NOT NULL REFERENCES context_packs (id) ON DELETE CASCADE,
    lead_id     bigint NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    status      text NOT NULL,
    summary     text,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pack_id, lead_id)
);

CREATE TABLE cron_leases (
    name        text PRIMARY KEY,
    holder      text,
    expires_at  timestamptz
);

CREATE TABLE webhook_quarantine (
    id                   bigserial PRIMARY KEY,
    workspace_id         text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider             text NOT NULL,
    body_hash            text NOT NULL,
    raw_body             bytea NOT NULL,
    headers              jsonb NOT NULL DEFAULT '{}',
    error                text NOT NULL,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'replayed', 'discarded')),
    received_at          timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    replayed_message_id  bigint,
    UNIQUE (workspace_id, body_hash)
);
