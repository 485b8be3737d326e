-- The interested-lead notification (scheduler/lead_notifications.py): one Slack message per
-- message.  messages.notified_at is the claim, stamped with the database clock when it is taken;
-- the same stamp fences the claim's verdict.  notify_outcome is NULL until a verdict, then 'sent'
-- or 'unknown' (with notify_error); an unknown one is re-sent only by an operator.

-- name: claim_lead_notification
-- Taken before the post, so that of two runs only one posts; no row back: claimed before.
UPDATE messages SET notified_at = now() WHERE id = :id AND notified_at IS NULL
RETURNING notified_at;

-- name: settle_abandoned_lead_notification
-- Claimed by an earlier run that recorded no verdict (it died, was cancelled, or could not write
-- it) after it may have posted: unknown, never posted again automatically.
UPDATE messages
SET notify_outcome = 'unknown',
    notify_error = 'an earlier run claimed it and stopped before it recorded what Slack answered'
WHERE id = :id AND notified_at IS NOT NULL AND notify_outcome IS NULL;

-- name: record_lead_notification
UPDATE messages SET notify_outcome = :outcome, notify_error = :error
WHERE id = :id AND notified_at = :notified_at;

-- name: release_lead_notification
-- Slack certainly did not post it: the claim is given back for the job's retry.
UPDATE messages SET notified_at = NULL, notify_outcome = NULL, notify_error = :error
WHERE id = :id AND notified_at = :notified_at;

-- name: claim_lead_notification_resend
-- An operator's resend takes a notification of unknown outcome, and only such a one.
UPDATE messages SET notified_at = now(), notify_outcome = NULL
WHERE id = :id AND notify_outcome = 'unknown'
RETURNING notified_at;

-- name: unknown_lead_notifications
SELECT m.id AS message_id, m.workspace_id, w.name AS workspace_name, m.lead_id,
       l.email AS lead_email, m.channel, m.notified_at, m.notify_error
FROM messages m
JOIN workspaces w ON w.id = m.workspace_id
LEFT JOIN leads l ON l.id = m.lead_id
WHERE m.notify_outcome = 'unknown'
  AND (CAST(:workspace_id AS text) IS NULL OR m.workspace_id = :workspace_id)
ORDER BY m.id DESC
LIMIT :limit;
