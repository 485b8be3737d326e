-- Every provider (issue 3).  A GoHighLevel contact id names one lead per workspace, so leads can
-- be found or created by it race-safely (ON CONFLICT needs a unique index).  messages.delivery_id
-- remembers a provider's per-delivery id (GoHighLevel webhookId) to refuse replays.

DROP INDEX leads_ghl_contact;
CREATE UNIQUE INDEX leads_ghl_contact ON leads (workspace_id, ghl_contact_id);

ALTER TABLE messages ADD COLUMN delivery_id TEXT;
CREATE UNIQUE INDEX messages_delivery_id ON messages (workspace_id, delivery_id);
