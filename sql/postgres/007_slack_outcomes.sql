-- Slack outcomes (issue 13).  Every post ends sent, not_sent or unknown (clients/slack.py); an
-- unknown one is never posted again automatically, so it is recorded where an operator finds it
-- (`hookgate alerts list --unknown`, the status page) and re-sent on purpose
-- (`hookgate alerts resend`).  alerts.outcome: NULL while due or being sent, then 'sent' or
-- 'unknown' (claimed_at, stamped with the database clock when the claim is taken, also fences the
-- claim's own verdict).  messages.notify_outcome / notify_error do the same for the interested-lead
-- notification whose claim is messages.notified_at.  Notifications from before this migration
-- keep no outcome.

ALTER TABLE alerts ADD COLUMN outcome text CHECK (outcome IN ('sent', 'unknown'));
UPDATE alerts SET outcome = 'sent' WHERE sent_at IS NOT NULL;

ALTER TABLE messages ADD COLUMN notify_outcome text CHECK (notify_outcome IN ('sent', 'unknown'));
ALTER TABLE messages ADD COLUMN notify_error text;
CREATE INDEX messages_notify_unknown ON messages (id) WHERE notify_outcome = 'unknown';
