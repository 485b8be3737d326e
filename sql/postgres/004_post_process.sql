-- Post-process and draft send (issue 4).  messages.provider_thread_id keeps the provider's
-- conversation id a reply must go to (Unipile chat_id); messages.notified_at is the durable
-- claim on a message's Slack notification (set before the post, cleared when Slack refuses it),
-- so a retried job never notifies twice; ai_drafts.last_error says why a send failed or why its
-- outcome is unknown.

ALTER TABLE messages ADD COLUMN provider_thread_id text;
ALTER TABLE messages ADD COLUMN notified_at timestamptz;

ALTER TABLE ai_drafts ADD COLUMN last_error text;
