-- The unique indexes on a message's or a lead's provider keys hold only the rows that have that
-- key (issue 15).  Uniqueness is unchanged: rows without the key never conflicted.
--
-- Why: a lookup by one key (the group write's find_messages_by_{key} and find_leads_by_{key},
-- sql/postgres/queries/ingest_group.sql) implies that key is not null, so it can use that key's
-- index and no other.  With every index starting (workspace_id, …) and holding every row, a
-- statement prepared while the tables were small, before any ANALYZE, could plan its probe on
-- another key's index, matching only the workspace, and then walk all of the workspace's rows
-- per probe for as long as the connection kept the plan.  And a message is now entered in the
-- indexes of the keys it has (usually one) rather than in all seven, a lead in those of its
-- identities rather than in all four.
--
-- The indexes keep the constraints' names, which error messages quote.

ALTER TABLE messages
    DROP CONSTRAINT messages_workspace_id_email_bison_reply_id_key,
    DROP CONSTRAINT messages_workspace_id_inboxxia_scheduled_email_id_key,
    DROP CONSTRAINT messages_workspace_id_ghl_id_key,
    DROP CONSTRAINT messages_workspace_id_ai_draft_id_key,
    DROP CONSTRAINT messages_workspace_id_unipile_message_id_key,
    DROP CONSTRAINT messages_workspace_id_webhook_dedupe_key_key;
DROP INDEX messages_delivery_id;
CREATE UNIQUE INDEX messages_workspace_id_email_bison_reply_id_key
    ON messages (workspace_id, email_bison_reply_id) WHERE email_bison_reply_id IS NOT NULL;
CREATE UNIQUE INDEX messages_workspace_id_inboxxia_scheduled_email_id_key
    ON messages (workspace_id, inboxxia_scheduled_email_id)
    WHERE inboxxia_scheduled_email_id IS NOT NULL;
CREATE UNIQUE INDEX messages_workspace_id_ghl_id_key
    ON messages (workspace_id, ghl_id) WHERE ghl_id IS NOT NULL;
CREATE UNIQUE INDEX messages_workspace_id_ai_draft_id_key
    ON messages (workspace_id, ai_draft_id) WHERE ai_draft_id IS NOT NULL;
CREATE UNIQUE INDEX messages_workspace_id_unipile_message_id_key
    ON messages (workspace_id, unipile_message_id) WHERE unipile_message_id IS NOT NULL;
CREATE UNIQUE INDEX messages_workspace_id_webhook_dedupe_key_key
    ON messages (workspace_id, webhook_dedupe_key) WHERE webhook_dedupe_key IS NOT NULL;
CREATE UNIQUE INDEX messages_delivery_id
    ON messages (workspace_id, delivery_id) WHERE delivery_id IS NOT NULL;

ALTER TABLE leads
    DROP CONSTRAINT leads_workspace_id_email_key,
    DROP CONSTRAINT leads_workspace_id_phone_key,
    DROP CONSTRAINT leads_workspace_id_linkedin_id_key;
DROP INDEX leads_ghl_contact;
CREATE UNIQUE INDEX leads_workspace_id_email_key
    ON leads (workspace_id, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX leads_workspace_id_phone_key
    ON leads (workspace_id, phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX leads_workspace_id_linkedin_id_key
    ON leads (workspace_id, linkedin_id) WHERE linkedin_id IS NOT NULL;
CREATE UNIQUE INDEX leads_ghl_contact
    ON leads (workspace_id, ghl_contact_id) WHERE ghl_contact_id IS NOT NULL;
