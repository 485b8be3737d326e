-- Integration alerts: at most one Slack alert per (workspace, kind, day), sent off the webhook
-- path by the scheduler (scheduler/alerts.py).  kind is '<integration>_disconnected' or
-- '<integration>_reconnected'; day is the UTC date.

-- name: count_suppressed_alert
-- A repeated report of a state whose alert went out today already: the claim held it back.
UPDATE alerts SET suppressed = suppressed + 1
WHERE workspace_id = :workspace_id AND kind = :kind AND day = :day AND sent_at IS NOT NULL;

-- name: due_integration_alerts
-- What a workspace's channel has not been told yet: an account disconnected with no alert sent
-- (or being sent) today, or back to ok after the channel heard it was disconnected.
SELECT h.workspace_id, h.integration, h.status, h.reason, h.since, w.name AS workspace_name,
       w.slack_channel
FROM integration_health h JOIN workspaces w ON w.id = h.workspace_id
WHERE w.slack_channel IS NOT NULL AND w.slack_channel <> ''
  AND ((h.status = 'disconnected' AND NOT EXISTS (
            SELECT 1 FROM alerts a
            WHERE a.workspace_id = h.workspace_id AND a.kind = h.integration || '_disconnected'
              AND a.day = :day AND (a.sent_at IS NOT NULL OR a.claimed_at >= :stale_before)))
    OR (h.status = 'ok' AND h.notified_status = 'disconnected' AND NOT EXISTS (
            SELECT 1 FROM alerts a
            WHERE a.workspace_id = h.workspace_id AND a.kind = h.integration || '_reconnected'
              AND a.day = :day AND (a.sent_at IS NOT NULL OR a.claimed_at >= :stale_before))))
ORDER BY h.workspace_id, h.integration
LIMIT :limit;

-- name: claim_integration_alert
-- The claim: the row for (workspace, kind, day).  It is taken by inserting it, or by taking
-- over one that was given back (a failed send) or whose sender died (claimed before
-- :stale_before); never once it was sent.  No row back: someone else has it.
INSERT INTO alerts (workspace_id, kind, day, message, claimed_at, created_at)
VALUES (:workspace_id, :kind, :day, :message, :now, :now)
ON CONFLICT (workspace_id, kind, day) DO UPDATE SET
    claimed_at = excluded.claimed_at,
    message    = excluded.message
WHERE alerts.sent_at IS NULL
  AND (alerts.claimed_at IS NULL OR alerts.claimed_at < :stale_before)
RETURNING id;

-- name: mark_integration_alert_sent
UPDATE alerts SET sent_at = :now, attempts = attempts + 1, last_error = NULL WHERE id = :id;

-- name: set_notified_status
UPDATE integration_health SET notified_status = :status
WHERE workspace_id = :workspace_id AND integration = :integration;

-- name: release_integration_alert
-- A failed send gives the claim back, so a later tick retries.
UPDATE alerts SET claimed_at = NULL, attempts = attempts + 1, last_error = :error
WHERE id = :id AND sent_at IS NULL;

-- name: recent_alerts
SELECT a.workspace_id, w.name AS workspace_name, a.kind, a.day, a.sent_at, a.suppressed,
       a.attempts, a.last_error
FROM alerts a JOIN workspaces w ON w.id = a.workspace_id
WHERE a.day >= :since_day
ORDER BY a.day DESC, w.name, a.kind
LIMIT :limit;
